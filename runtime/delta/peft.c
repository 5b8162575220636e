/* PEFT export (LoRA on encoders, prefix tuning on encoders and decoders)
 * and import (LoRA on every stack kind, decoder prefixes). */
#include "peft.h"

#include "params.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Module paths of the projections inside encoder.layer.{l}. */
static const char *site_path(enum delta_at at) {
    switch (at) {
    case DELTA_AT_Q: return "attention.self.query";
    case DELTA_AT_K: return "attention.self.key";
    case DELTA_AT_V: return "attention.self.value";
    case DELTA_AT_O: return "attention.output.dense";
    case DELTA_AT_UP: return "intermediate.dense";
    case DELTA_AT_DOWN: return "output.dense";
    default: return NULL;
    }
}

static const char *family_prefix(const struct model_arch *a) {
    return a->family == MODEL_FAMILY_ROBERTA ? "roberta" : "bert";
}

void delta_peft_module_name(const struct model_arch *a, const char *root, int layer, enum delta_at at, char *buf,
                            size_t size) {
    if (a->stack == MODEL_STACK_ENCODER_DECODER) delta_peft_seq2seq_module(root, layer, at, buf, size);
    else if (a->stack == MODEL_STACK_DECODER) delta_peft_decoder_module(a, layer, at, buf, size);
    else snprintf(buf, size, "%s.encoder.layer.%d.%s", family_prefix(a), layer, site_path(at) ? site_path(at) : "?");
}

static bool is_head(const char *name) { return strncmp(name, "classifier.", 11) == 0; }

static bool all_lora(const struct delta_spec *s) {
    for (int i = 0; i < s->count; i++)
        if (s->modules[i].kind != DELTA_LORA) return false;
    return true;
}

bool delta_peft_lora_uniform(const struct delta_spec *s, const char **why) {
    const struct delta_module *m0 = &s->modules[0];
    for (int i = 1; i < s->count; i++) {
        const struct delta_module *m = &s->modules[i];
        if (m->size != m0->size || m->alpha != m0->alpha || m->all_layers != m0->all_layers ||
            m->layer_count != m0->layer_count ||
            memcmp(m->layers, m0->layers, (size_t)m->layer_count * sizeof m->layers[0]) != 0) {
            *why = "PEFT's LoRA config has one rank, alpha and layer list for all targets";
            return false;
        }
        for (int j = 0; j < i; j++)
            if (s->modules[j].at == m->at && (s->modules[j].stacks & m->stacks)) {
                *why = "two LoRA modules on the same projection";
                return false;
            }
    }
    return true;
}

/* PEFT's prefix tuning is one prefix on every layer, alone in its adapter. */
static bool prefix_supported(const struct delta_spec *s, const char **why) {
    if (s->count != 1) {
        *why = "PEFT's prefix tuning is one prefix module alone in its adapter (no LoRA, adapter or second "
               "prefix beside it)";
        return false;
    }
    if (!s->modules[0].all_layers) {
        *why = "PEFT's prefix tuning covers every layer";
        return false;
    }
    return true;
}

static bool has_prefix(const struct delta_spec *s) {
    for (int i = 0; i < s->count; i++)
        if (s->modules[i].kind == DELTA_PREFIX) return true;
    return false;
}

bool delta_peft_supported(const struct delta_spec *s, const struct model_arch *arch, const char **why) {
    *why = NULL;
    if (arch->stack == MODEL_STACK_ENCODER_DECODER) return delta_peft_seq2seq_supported(s, arch, why);
    if (has_prefix(s) && (arch->stack == MODEL_STACK_DECODER || s->count == 1)) return prefix_supported(s, why);
    if (arch->stack == MODEL_STACK_DECODER) return delta_peft_decoder_supported(s, arch, why);
    if (s->count >= 1 && all_lora(s)) return delta_peft_lora_uniform(s, why);
    *why = "PEFT has only LoRA and prefix tuning (no bottleneck, parallel or MAM adapters)";
    return false;
}

vp_status delta_peft_write_files(const char *dir, const struct io_tensor_out *tensors, size_t count, char *config) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    vp_status s = config ? io_safetensors_write(path, tensors, count, (const char *const[]){"format", "pt", NULL})
                         : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory exporting");
    if (s == VP_OK) {
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        s = vp_file_write_atomic(path, config, strlen(config));
    }
    free(config);
    return s;
}

void delta_peft_layers_regex(const struct delta_module *m, char *buf, size_t size) {
    if (m->all_layers) {
        snprintf(buf, size, "\\d+");
        return;
    }
    size_t len = (size_t)snprintf(buf, size, "(");
    for (int k = 0; k < m->layer_count && len + 12 < size; k++)
        len += (size_t)snprintf(buf + len, size - len, "%s%d", k ? "|" : "", m->layers[k]);
    snprintf(buf + len, size - len, ")");
}

void delta_peft_lora_fields(cJSON *c, const struct delta_module *m, int r, double alpha, bool fan_in_fan_out,
                            cJSON *targets) {
    cJSON_AddStringToObject(c, "peft_type", "LORA");
    cJSON_AddNumberToObject(c, "r", r);
    cJSON_AddNumberToObject(c, "lora_alpha", alpha);
    cJSON_AddNumberToObject(c, "lora_dropout", m->dropout > 0 ? m->dropout : 0);
    cJSON_AddStringToObject(c, "bias", "none");
    cJSON_AddBoolToObject(c, "fan_in_fan_out", fan_in_fan_out);
    const bool regex = cJSON_IsString(targets);
    cJSON_AddItemToObject(c, "target_modules", targets);
    if (m->all_layers || regex) cJSON_AddNullToObject(c, "layers_to_transform");
    else cJSON_AddItemToObject(c, "layers_to_transform", cJSON_CreateIntArray(m->layers, m->layer_count));
}

/* target_modules: a list of names when they are unambiguous suffixes, else a
 * regular expression PEFT matches against the full module name (with the
 * layers in it). */
static cJSON *target_modules(const struct delta_spec *s, const struct model_arch *a) {
    bool plain = true;
    for (int i = 0; i < s->count; i++)
        plain &= s->modules[i].at == DELTA_AT_Q || s->modules[i].at == DELTA_AT_K ||
                 s->modules[i].at == DELTA_AT_V || s->modules[i].at == DELTA_AT_UP;
    if (plain) {
        cJSON *list = cJSON_CreateArray();
        for (int i = 0; i < s->count; i++) {
            const char *p = site_path(s->modules[i].at);
            const char *last = strrchr(p, '.');
            cJSON_AddItemToArray(list, cJSON_CreateString(s->modules[i].at == DELTA_AT_UP ? p : last + 1));
        }
        return list;
    }
    char re[1536], layers[1100]; /* 256 layers: "(0|1|…|255)" */
    delta_peft_layers_regex(&s->modules[0], layers, sizeof layers);
    size_t len = (size_t)snprintf(re, sizeof re, ".*%s\\.encoder\\.layer\\.%s\\.(", family_prefix(a), layers);
    for (int i = 0; i < s->count; i++) {
        const char *p = site_path(s->modules[i].at);
        len += (size_t)snprintf(re + len, sizeof re - len, "%s", i ? "|" : "");
        for (; *p && len + 2 < sizeof re; p++) {
            if (*p == '.') re[len++] = '\\';
            re[len++] = *p;
        }
        re[len] = 0;
    }
    snprintf(re + len, sizeof re - len, ")");
    return cJSON_CreateString(re);
}

static char *config_json(const struct delta_spec *s, const struct model_arch *a, const char *base) {
    const bool decoder = a->stack == MODEL_STACK_DECODER;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "base_model_name_or_path", base ? base : "");
    cJSON_AddStringToObject(c, "task_type", decoder ? "CAUSAL_LM" : "SEQ_CLS");
    cJSON_AddBoolToObject(c, "inference_mode", true);
    if (!decoder) {
        cJSON *save = cJSON_AddArrayToObject(c, "modules_to_save");
        cJSON_AddItemToArray(save, cJSON_CreateString("classifier"));
    }
    const struct delta_module *m = &s->modules[0];
    if (m->kind == DELTA_LORA) {
        delta_peft_lora_fields(c, m, m->size, m->alpha, false, target_modules(s, a));
    } else {
        /* token_dim and num_attention_heads describe the keys and values: a
         * decoder with grouped kv heads has kv_heads × head_dim of them, which
         * is what PEFT's _prepare_prompt_learning_config sets for models whose
         * config has num_key_value_heads (LLaMA family). */
        const int width = delta_params_prefix_width(a);
        cJSON_AddStringToObject(c, "peft_type", "PREFIX_TUNING");
        cJSON_AddNumberToObject(c, "num_virtual_tokens", m->size);
        cJSON_AddNumberToObject(c, "token_dim", width);
        cJSON_AddNumberToObject(c, "num_transformer_submodules", 1);
        cJSON_AddNumberToObject(c, "num_attention_heads", decoder ? a->kv_heads : a->heads);
        cJSON_AddNumberToObject(c, "num_layers", a->layers);
        cJSON_AddNumberToObject(c, "encoder_hidden_size", width);
        cJSON_AddBoolToObject(c, "prefix_projection", false);
    }
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    return text;
}

/* PEFT's prompt_embeddings (L, layers·2·w), w the prefix width (hidden, or
 * a decoder's kv_heads·head_dim): for layer ℓ, keys in columns
 * [2ℓ·w, (2ℓ+1)·w) and values in the next w (PEFT's get_prompt views it as
 * (L, layers·2, heads, w/heads), permutes to (layers·2, heads, L, w/heads)
 * and splits it into (key, value) pairs per layer). */
static vp_status prompt_embeddings(const struct delta_tensors *t, const struct model_arch *a, int length,
                                   float **out) {
    size_t w = (size_t)delta_params_prefix_width(a), width = (size_t)a->layers * 2 * w;
    float *pe = calloc((size_t)length * width, sizeof *pe);
    if (!pe) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory exporting prefixes");
    for (int l = 0; l < a->layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "%s.%d.delta0.%s", delta_params_layers_name(a), l,
                     kv ? "prefix_v" : "prefix_k");
            const struct delta_tensor *p = delta_tensors_find(t, name);
            if (!p || delta_tensor_numel(p) != (uint64_t)length * w) {
                free(pe);
                return vp_fail(VP_ERROR_INVALID_ARGUMENT, "PEFT export: %s is missing or not (%d, %zu); "
                               "collapse the prefix reparameterisation first", name, length, w);
            }
            for (int i = 0; i < length; i++)
                memcpy(pe + (size_t)i * width + (2 * (size_t)l + (size_t)kv) * w, p->data + (size_t)i * w,
                       w * sizeof *pe);
        }
    *out = pe;
    return VP_OK;
}

/* "encoder.layers.3.delta1.lora_A" -> layer 3, module 1, "lora_A" (also
 * decoder.layers and an encoder-decoder's cross.layers). */
static bool parse_delta_name(const char *name, int *layer, int *module, const char **rest) {
    int n = 0;
    if ((sscanf(name, "encoder.layers.%d.delta%d.%n", layer, module, &n) != 2 &&
         sscanf(name, "decoder.layers.%d.delta%d.%n", layer, module, &n) != 2 &&
         sscanf(name, "cross.layers.%d.delta%d.%n", layer, module, &n) != 2) || n == 0)
        return false;
    *rest = name + n;
    return true;
}

vp_status delta_peft_export(const char *dir, const struct delta_spec *spec, const struct model_arch *arch,
                            const struct delta_tensors *t, const char *base_model) {
    if (arch->stack == MODEL_STACK_DECODER && !has_prefix(spec))
        return delta_peft_decoder_export(dir, spec, arch, t, base_model);
    if (arch->stack == MODEL_STACK_ENCODER_DECODER) return delta_peft_seq2seq_export(dir, spec, arch, t, base_model);
    const char *why;
    if (!delta_peft_supported(spec, arch, &why))
        return vp_fail(VP_ERROR_UNSUPPORTED, "delta '%s' cannot be written in PEFT's layout: %s", spec->name, why);
    struct io_tensor_out *out = calloc(t->count + 1, sizeof *out);
    char (*names)[DELTA_NAME_MAX + 64] = calloc(t->count + 1, sizeof *names);
    float *pe = NULL;
    vp_status s = out && names ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory exporting");
    size_t n = 0;
    bool prefix = spec->modules[0].kind == DELTA_PREFIX;
    for (size_t i = 0; i < t->count && s == VP_OK; i++) {
        const struct delta_tensor *d = &t->items[i];
        int layer, module;
        const char *rest;
        if (is_head(d->name)) {
            snprintf(names[n], sizeof names[n], "base_model.model.%s", d->name);
        } else if (!prefix && parse_delta_name(d->name, &layer, &module, &rest) && module < spec->count) {
            char path[128];
            delta_peft_module_name(arch, "encoder.layers", layer, spec->modules[module].at, path, sizeof path);
            snprintf(names[n], sizeof names[n], "base_model.model.%s.%s.weight", path, rest);
        } else {
            continue; /* prefix tensors go into prompt_embeddings below */
        }
        out[n] = (struct io_tensor_out){names[n], IO_DTYPE_F32, d->ndim, {0}, d->data};
        for (int k = 0; k < d->ndim; k++) out[n].shape[k] = d->shape[k];
        n++;
    }
    if (s == VP_OK && prefix) {
        s = prompt_embeddings(t, arch, spec->modules[0].size, &pe);
        if (s == VP_OK)
            out[n++] = (struct io_tensor_out){"prompt_embeddings", IO_DTYPE_F32, 2,
                                              {spec->modules[0].size,
                                               (int64_t)arch->layers * 2 * delta_params_prefix_width(arch)},
                                              pe};
    }
    if (s == VP_OK) s = delta_peft_write_files(dir, out, n, config_json(spec, arch, base_model));
    free(pe);
    free(names);
    free(out);
    return s;
}

/* ---- import ---------------------------------------------------------------------------- */

/* PEFT's key prefix of a stack's layers (after base_model.model.). */
static const char *peft_layers_prefix(const struct model_arch *arch, char *buf, size_t size) {
    if (arch->family == MODEL_FAMILY_GPT2) snprintf(buf, size, "transformer.h.");
    else if (arch->stack == MODEL_STACK_DECODER) snprintf(buf, size, "model.layers.");
    else snprintf(buf, size, "%s.encoder.layer.", family_prefix(arch));
    return buf;
}

/* The projection a module path inside a layer names; *c_attn is set for
 * GPT-2's fused q, k, v Conv1D (the site is then DELTA_AT_Q). */
static enum delta_at site_of(const struct model_arch *arch, const char *path, bool *c_attn) {
    static const enum delta_at sites[] = {DELTA_AT_Q, DELTA_AT_K, DELTA_AT_V, DELTA_AT_O, DELTA_AT_UP,
                                          DELTA_AT_DOWN};
    static const char *const llama[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                        "self_attn.o_proj", "mlp.up_proj",      "mlp.down_proj"};
    static const char *const gpt2[] = {"", "", "", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
    *c_attn = arch->family == MODEL_FAMILY_GPT2 && strcmp(path, "attn.c_attn") == 0;
    if (*c_attn) return DELTA_AT_Q;
    for (size_t i = 0; i < sizeof sites / sizeof sites[0]; i++) {
        const char *name = arch->family == MODEL_FAMILY_GPT2 ? gpt2[i]
                           : arch->stack == MODEL_STACK_DECODER ? llama[i] : site_path(sites[i]);
        if (name[0] && strcmp(path, name) == 0) return sites[i];
    }
    return DELTA_AT_NONE;
}

/* Reads dir/adapter_config.json into *root (a JSON object; the caller
 * deletes it) and its path into `path`. */
static vp_status read_config(const char *dir, char *path, size_t size, cJSON **root) {
    snprintf(path, size, "%s/adapter_config.json", dir);
    void *text;
    size_t n;
    vp_status s = vp_file_read(path, &text, &n);
    if (s != VP_OK) return s;
    *root = cJSON_ParseWithLength(text, n);
    free(text);
    if (cJSON_IsObject(*root)) return VP_OK;
    cJSON_Delete(*root);
    *root = NULL;
    return vp_fail(VP_ERROR_BAD_INPUT, "%s is not a JSON object", path);
}

static bool nonempty_object(const cJSON *root, const char *key) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsObject(o) && o->child != NULL;
}

struct lora_config {
    int r;
    double alpha;
};

/* fan_in_fan_out is not checked: PEFT sets it from the layer it wraps (true
 * for GPT-2's Conv1D, false for nn.Linear) and it only changes how a merge
 * transposes B·A; lora_A (r, in) and lora_B (out, r) and the forward
 * x·Aᵀ·Bᵀ·α/r are the same either way. */
static vp_status read_lora_config(const cJSON *root, const char *path, struct lora_config *c) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 65536 || r->valuedouble != (int)r->valuedouble)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"r\" must be a positive integer", path);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "use_dora")) ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "use_rslora")))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: DoRA and rsLoRA adapters are not supported", path);
    if (nonempty_object(root, "rank_pattern") || nonempty_object(root, "alpha_pattern"))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"rank_pattern\" / \"alpha_pattern\" (a rank or alpha per module) "
                       "are not supported; vkpeft reads one r and lora_alpha", path);
    if (cJSON_IsString(bias) && strcmp(bias->valuestring, "none") != 0)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"bias\": \"%s\" is not supported (none)", path, bias->valuestring);
    if (alpha && (!cJSON_IsNumber(alpha) || alpha->valuedouble <= 0))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"lora_alpha\" must be a positive number", path);
    c->r = (int)r->valuedouble;
    c->alpha = alpha ? alpha->valuedouble : 8; /* PEFT's default */
    return VP_OK;
}

/* Adds the LoRA module for `at` to the spec (once); -1 when full. An
 * encoder-decoder's (stack: a DELTA_STACK_* bit, 0 otherwise) is in the
 * stacks its tensors are found in. */
static int spec_module_for(struct delta_spec *spec, enum delta_at at, unsigned stack, const struct lora_config *c) {
    for (int i = 0; i < spec->count; i++)
        if (spec->modules[i].at == at) {
            spec->modules[i].stacks |= stack;
            return i;
        }
    if (spec->count == DELTA_MAX_MODULES) return -1;
    struct delta_spec tmp;
    delta_spec_preset("lora", &tmp);
    struct delta_module m = tmp.modules[0];
    m.at = at;
    m.size = c->r;
    m.alpha = c->alpha;
    m.scale = c->alpha / c->r;
    m.all_layers = false;
    m.layer_count = 0;
    if (stack) m.stacks = stack;
    spec->modules[spec->count] = m;
    return spec->count++;
}

/* Rows [r0, r0 + nr) and columns [c0, c0 + nc) of the 2-D tensor `it`
 * (F32, F16 or BF16: PEFT saves in the training dtype) as a new f32
 * tensor `name` (nr, nc) of t; nr = 0 takes the whole tensor, any shape. */
static vp_status add_block(struct delta_tensors *t, const char *name, const struct io_tensor *it, int64_t r0,
                           int64_t nr, int64_t c0, int64_t nc) {
    const bool whole = nr == 0;
    const int64_t width = it->ndim == 2 ? it->shape[1] : (int64_t)it->numel;
    if (whole) {
        nr = it->ndim == 2 ? it->shape[0] : 1;
        c0 = 0;
        nc = width;
    }
    struct delta_tensor *d = whole ? delta_tensors_add(t, name, it->ndim, it->shape)
                                   : delta_tensors_add(t, name, 2, (const int64_t[]){nr, nc});
    if (!d) return VP_ERROR_HOST_MEMORY;
    for (int64_t i = 0; i < nr; i++) {
        const size_t at = (size_t)((r0 + i) * width + c0);
        float *dst = d->data + (size_t)(i * nc);
        if (it->dtype == IO_DTYPE_F32) memcpy(dst, (const float *)it->data + at, (size_t)nc * sizeof *dst);
        else if (it->dtype == IO_DTYPE_F16) vp_f16_to_f32_array(dst, (const uint16_t *)it->data + at, (size_t)nc);
        else vp_bf16_to_f32_array(dst, (const uint16_t *)it->data + at, (size_t)nc);
    }
    return VP_OK;
}

static vp_status check_dtype(const struct io_tensor *it, const char *file) {
    if ((it->dtype == IO_DTYPE_F32 || it->dtype == IO_DTYPE_F16 || it->dtype == IO_DTYPE_BF16) && it->ndim >= 1 &&
        it->ndim <= 4)
        return VP_OK;
    return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' is %s with %d dimensions; vkpeft reads F32, F16 or BF16 "
                   "adapters", file, it->name, io_dtype_name(it->dtype), it->ndim);
}

/* Where a LoRA pair sits: site, layer and (encoder-decoders) stack bit. */
struct lora_site {
    enum delta_at at;
    int layer;
    unsigned stack;
};

static const char *stack_root(const struct model_arch *arch, unsigned stack) {
    return stack == DELTA_STACK_CROSS     ? "cross.layers"
           : stack == DELTA_STACK_DECODER ? "decoder.layers"
           : stack == DELTA_STACK_ENCODER ? "encoder.layers"
                                          : delta_params_layers_name(arch);
}

/* lora_A or (rows [r0, r0 + nr) of) lora_B of the LoRA at `w`. */
static vp_status add_lora(struct delta_spec *spec, struct delta_tensors *t, const struct lora_config *c,
                          const struct model_arch *arch, const char *file, struct lora_site w, bool a,
                          const struct io_tensor *it, int64_t r0, int64_t nr) {
    const enum delta_at at = w.at;
    const int layer = w.layer;
    const int mod = spec_module_for(spec, at, w.stack, c);
    if (mod < 0) return vp_fail(VP_ERROR_BAD_INPUT, "%s: more than %d adapted projections", file, DELTA_MAX_MODULES);
    struct delta_module *m = &spec->modules[mod];
    if (!delta_module_has_layer(m, layer)) m->layers[m->layer_count++] = layer;
    char name[DELTA_NAME_MAX];
    snprintf(name, sizeof name, "%s.%d.delta%d.%s", stack_root(arch, w.stack), layer, mod, a ? "lora_A" : "lora_B");
    if (delta_tensors_find(t, name))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' repeats layer %d's %s", file, it->name, layer,
                       a ? "lora_A" : "lora_B");
    return add_block(t, name, it, r0, nr, 0, it->ndim == 2 ? it->shape[1] : 0);
}

/* "<module path>.lora_A.weight" or ".lora_B.weight": the path's length
 * and which of the two. */
static vp_status split_lora_key(const char *key, const char *file, const char *name, size_t *path_len, bool *a) {
    const char *ab = strstr(key, ".lora_");
    if (!ab || (strcmp(ab, ".lora_A.weight") != 0 && strcmp(ab, ".lora_B.weight") != 0))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' is not a LoRA A/B weight", file, name);
    *path_len = (size_t)(ab - key);
    *a = ab[6] == 'A';
    return VP_OK;
}

/* BART / mBART: model.{encoder,decoder}.layers.N.<module>.lora_{A,B}.weight. */
static vp_status import_seq2seq_tensor(const struct io_tensor *it, const char *key, const struct model_arch *arch,
                                       const char *file, const struct lora_config *c, struct delta_spec *spec,
                                       struct delta_tensors *t) {
    size_t len;
    bool a;
    vp_status s = split_lora_key(key, file, it->name, &len, &a);
    if (s != VP_OK) return s;
    char module[256];
    snprintf(module, sizeof module, "%.*s", (int)len, key);
    struct lora_site w;
    s = delta_peft_seq2seq_site(module, arch, file, it->name, &w.stack, &w.layer, &w.at);
    return s == VP_OK ? add_lora(spec, t, c, arch, file, w, a, it, 0, 0) : s;
}

static vp_status import_tensor(const struct io_tensor *it, const struct model_arch *arch, const char *file,
                               const struct lora_config *c, struct delta_spec *spec, struct delta_tensors *t) {
    const char *key = it->name;
    if (strncmp(key, "base_model.model.", 17) == 0) key += 17;
    char prefix[64];
    peft_layers_prefix(arch, prefix, sizeof prefix);
    vp_status s = check_dtype(it, file);
    if (s != VP_OK) return s;
    if (arch->stack == MODEL_STACK_ENCODER && is_head(key)) return add_block(t, key, it, 0, 0, 0, 0);
    if (arch->stack == MODEL_STACK_ENCODER_DECODER) return import_seq2seq_tensor(it, key, arch, file, c, spec, t);
    if (strncmp(key, prefix, strlen(prefix)) != 0)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' is not part of a %s LoRA adapter", file, it->name,
                       arch->model_type);
    int layer = -1, n = 0;
    if (sscanf(key + strlen(prefix), "%d.%n", &layer, &n) != 1 || n == 0 || layer < 0 || layer >= arch->layers)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' names no layer of this model (0..%d)", file, it->name,
                       arch->layers - 1);
    char path[128];
    const char *p = key + strlen(prefix) + n;
    size_t len;
    bool a;
    if ((s = split_lora_key(p, file, it->name, &len, &a)) != VP_OK) return s;
    snprintf(path, sizeof path, "%.*s", (int)len, p);
    bool c_attn;
    const enum delta_at at = site_of(arch, path, &c_attn);
    if (at == DELTA_AT_NONE)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' targets '%s', which vkpeft does not adapt", file,
                       it->name, path);
    if (!c_attn) return add_lora(spec, t, c, arch, file, (struct lora_site){at, layer, 0}, a, it, 0, 0);
    /* c_attn's output columns are q | k | v, d each (HF GPT-2 splits its
     * output in that order), and PEFT's forward adds x·Aᵀ·Bᵀ·α/r to them:
     * one rank-r pair on c_attn is three on q, k, v that share A, B's rows
     * split into the three blocks. */
    const int64_t d = arch->hidden;
    if (!a && (it->ndim != 2 || it->shape[0] != 3 * d))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' has %lld rows; GPT-2's c_attn lora_B has 3 · %lld",
                       file, it->name, (long long)it->shape[0], (long long)d);
    for (int b = 0; b < 3 && s == VP_OK; b++)
        s = add_lora(spec, t, c, arch, file, (struct lora_site){(enum delta_at)(DELTA_AT_Q + b), layer, 0}, a, it,
                     a ? 0 : b * d, a ? 0 : d);
    return s;
}

/* Checks A (r, in) and B (out, r) against the model (an encoder-decoder's
 * decoder FFN has its own width). */
static vp_status check_shapes(const struct delta_spec *spec, const struct model_arch *arch,
                              const struct delta_tensors *t, const char *file) {
    for (size_t i = 0; i < t->count; i++) {
        int layer, mod;
        const char *rest;
        const struct delta_tensor *d = &t->items[i];
        if (!parse_delta_name(d->name, &layer, &mod, &rest)) continue;
        const struct delta_module *m = &spec->modules[mod];
        int64_t in = arch->hidden, out = arch->hidden;
        const int64_t qd = (int64_t)arch->heads * arch->head_dim;
        const bool s2s_decoder = arch->stack == MODEL_STACK_ENCODER_DECODER && strncmp(d->name, "decoder.", 8) == 0;
        const int64_t ffn = s2s_decoder ? arch->decoder_intermediate : arch->intermediate;
        if (m->at == DELTA_AT_Q) out = qd;
        if (m->at == DELTA_AT_O) in = qd;
        if (m->at == DELTA_AT_UP) out = ffn;
        if (m->at == DELTA_AT_DOWN) in = ffn;
        if (m->at == DELTA_AT_K || m->at == DELTA_AT_V) out = (int64_t)arch->kv_heads * arch->head_dim;
        bool a = strcmp(rest, "lora_A") == 0;
        int64_t want0 = a ? m->size : out, want1 = a ? in : m->size;
        if (d->ndim != 2 || d->shape[0] != want0 || d->shape[1] != want1)
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: %s of layer %d on %s (%s) has shape (%lld, %lld), want (%lld, "
                           "%lld)", file, a ? "lora_A" : "lora_B", layer, delta_at_name(m->at), d->name,
                           (long long)d->shape[0], (long long)(d->ndim > 1 ? d->shape[1] : 0),
                           (long long)want0, (long long)want1);
    }
    return VP_OK;
}

/* Every place of a module (layer; an encoder-decoder's stacks) needs both
 * lora_A and lora_B: vkpeft's module covers the same layers in each of its
 * stacks. */
static vp_status check_pairs(const struct delta_spec *spec, const struct model_arch *arch,
                             const struct delta_tensors *t, const char *file) {
    for (int i = 0; i < spec->count; i++) {
        const char *root;
        for (int place = 0, l; (l = delta_params_place(arch, &spec->modules[i], place, &root)) >= 0; place++)
            for (int ab = 0; ab < 2; ab++) {
                char name[DELTA_NAME_MAX];
                snprintf(name, sizeof name, "%s.%d.delta%d.%s", root, l, i, ab ? "lora_B" : "lora_A");
                if (delta_tensors_find(t, name)) continue;
                if (arch->stack == MODEL_STACK_ENCODER_DECODER)
                    return vp_fail(VP_ERROR_BAD_INPUT, "%s: layer %d's %s LoRA in %s has no %s (vkpeft reads LoRA "
                                   "that covers the same layers in every stack it is in)", file, l,
                                   delta_at_name(spec->modules[i].at), root, ab ? "lora_B" : "lora_A");
                return vp_fail(VP_ERROR_BAD_INPUT, "%s: layer %d's %s LoRA has no %s", file, l,
                               delta_at_name(spec->modules[i].at), ab ? "lora_B" : "lora_A");
            }
    }
    return VP_OK;
}

/* A module on every layer of its stacks is "all layers". */
static void mark_all_layers(struct delta_spec *spec, const struct model_arch *arch) {
    for (int i = 0; i < spec->count; i++) {
        struct delta_module *m = &spec->modules[i];
        int most = 0;
        for (unsigned bit = 1; bit <= DELTA_STACK_CROSS; bit <<= 1)
            if (delta_module_in_stack(m, arch, bit) && delta_stack_layers(arch, bit) > most)
                most = delta_stack_layers(arch, bit);
        if (m->layer_count == most) {
            m->all_layers = true;
            m->layer_count = 0;
        }
    }
}

static vp_status import_lora(const char *dir, const cJSON *root, const char *config_path,
                             const struct model_arch *arch, struct delta_spec *spec, struct delta_tensors *t) {
    snprintf(spec->name, sizeof spec->name, "lora");
    struct lora_config c;
    vp_status s = read_lora_config(root, config_path, &c);
    if (s != VP_OK) return s;
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    struct io_safetensors *f;
    s = io_safetensors_open(path, &f);
    if (s != VP_OK) return s;
    for (size_t i = 0; i < io_safetensors_count(f) && s == VP_OK; i++)
        s = import_tensor(io_safetensors_at(f, i), arch, path, &c, spec, t);
    io_safetensors_close(f);
    if (s == VP_OK && spec->count == 0)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s holds no LoRA weights", path);
    if (s == VP_OK) mark_all_layers(spec, arch);
    if (s == VP_OK) s = check_shapes(spec, arch, t, path);
    if (s == VP_OK) s = check_pairs(spec, arch, t, path);
    return s;
}

/* A positive integer field, or `fallback` when absent (-1: required). */
static vp_status config_int(const cJSON *root, const char *path, const char *key, int fallback, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v && fallback >= 0) {
        *out = fallback;
        return VP_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1 << 24 || v->valuedouble != (int)v->valuedouble)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" must be a positive integer", path, key);
    *out = (int)v->valuedouble;
    return VP_OK;
}

/* PEFT's prefix tuning on a decoder: prompt_embeddings (L, layers·2·w) as
 * prompt_embeddings() writes it; the saved values are the prefixes
 * themselves whether or not prefix_projection trained them through an MLP
 * (PEFT saves the prompt encoder's output). */
static vp_status import_prefix(const char *dir, const cJSON *root, const char *config_path,
                               const struct model_arch *arch, struct delta_spec *spec, struct delta_tensors *t) {
    if (arch->stack != MODEL_STACK_DECODER)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: PEFT prefix-tuning folders load for decoder-only models; for %s "
                       "use the vkpeft delta folder (delta.json)", config_path, arch->model_type);
    const int w = delta_params_prefix_width(arch);
    int L = 0, layers = 0, dim = 0, heads = 0, subs = 0;
    vp_status s = config_int(root, config_path, "num_virtual_tokens", -1, &L);
    if (s == VP_OK) s = config_int(root, config_path, "num_layers", -1, &layers);
    if (s == VP_OK) s = config_int(root, config_path, "token_dim", -1, &dim);
    if (s == VP_OK) s = config_int(root, config_path, "num_attention_heads", arch->kv_heads, &heads);
    if (s == VP_OK) s = config_int(root, config_path, "num_transformer_submodules", 1, &subs);
    if (s != VP_OK) return s;
    if (L > 65536) return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"num_virtual_tokens\" %d is too many", config_path, L);
    if (subs != 1)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"num_transformer_submodules\" is %d; a decoder-only model's "
                       "prefix has 1", config_path, subs);
    if (layers != arch->layers || dim != w || heads != arch->kv_heads)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: num_layers %d, token_dim %d, num_attention_heads %d, but %s's keys "
                       "and values are %d layers of %d heads × %d (PEFT sizes prefixes by num_key_value_heads "
                       "for grouped-query attention)", config_path, layers, dim, heads, arch->model_type,
                       arch->layers, arch->kv_heads, arch->head_dim);
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    struct io_safetensors *f;
    s = io_safetensors_open(path, &f);
    if (s != VP_OK) return s;
    const struct io_tensor *pe = io_safetensors_find(f, "prompt_embeddings");
    const int64_t width = (int64_t)layers * 2 * w;
    if (!pe)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s has no tensor 'prompt_embeddings'", path);
    else if (io_safetensors_count(f) != 1)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: a prefix-tuning adapter holds only 'prompt_embeddings' (%zu tensors "
                    "here)", path, io_safetensors_count(f));
    else if ((s = check_dtype(pe, path)) == VP_OK && (pe->ndim != 2 || pe->shape[0] != L || pe->shape[1] != width))
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: prompt_embeddings has shape (%lld, %lld), want (num_virtual_tokens, "
                    "num_layers · 2 · token_dim) = (%d, %lld)", path, (long long)pe->shape[0],
                    (long long)(pe->ndim > 1 ? pe->shape[1] : 0), L, (long long)width);
    for (int l = 0; l < arch->layers && s == VP_OK; l++)
        for (int kv = 0; kv < 2 && s == VP_OK; kv++) {
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "%s.%d.delta0.%s", delta_params_layers_name(arch), l,
                     kv ? "prefix_v" : "prefix_k");
            s = add_block(t, name, pe, 0, L, (2 * (int64_t)l + kv) * w, w);
        }
    io_safetensors_close(f);
    if (s != VP_OK) return s;
    s = delta_spec_preset("prefix", spec);
    if (s != VP_OK) return s;
    spec->modules[0].size = L;
    spec->modules[0].reparam = 0;
    return VP_OK;
}

vp_status delta_peft_import(const char *dir, const struct model_arch *arch, struct delta_spec *spec,
                            struct delta_tensors *t) {
    memset(spec, 0, sizeof *spec);
    memset(t, 0, sizeof *t);
    char path[4096];
    cJSON *root = NULL;
    vp_status s = read_config(dir, path, sizeof path, &root);
    if (s != VP_OK) return s;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "LORA") == 0)
        s = import_lora(dir, root, path, arch, spec, t);
    else if (cJSON_IsString(type) && strcmp(type->valuestring, "PREFIX_TUNING") == 0)
        s = import_prefix(dir, root, path, arch, spec, t);
    else
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"peft_type\" is %s; vkpeft loads LoRA and (on decoder-only models) "
                    "PREFIX_TUNING adapters from PEFT folders (its own delta folders hold the other methods)", path,
                    cJSON_IsString(type) ? type->valuestring : "missing");
    cJSON_Delete(root);
    if (s != VP_OK) delta_tensors_free(t);
    return s;
}
