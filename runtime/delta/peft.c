/* PEFT export (LoRA, prefix tuning) and LoRA import. */
#include "peft.h"

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
            if (s->modules[j].at == m->at) {
                *why = "two LoRA modules on the same projection";
                return false;
            }
    }
    return true;
}

bool delta_peft_supported(const struct delta_spec *s, const struct model_arch *arch, const char **why) {
    if (arch->stack == MODEL_STACK_DECODER) return delta_peft_decoder_supported(s, arch, why);
    if (arch->stack == MODEL_STACK_ENCODER_DECODER) {
        *why = "PEFT export of encoder-decoder (BART/mBART) deltas is not written yet (their keys name "
               "model.encoder/decoder.layers.N.self_attn/encoder_attn); the vkpeft delta has everything";
        return false;
    }
    *why = NULL;
    if (s->count >= 1 && all_lora(s)) return delta_peft_lora_uniform(s, why);
    if (s->count == 1 && s->modules[0].kind == DELTA_PREFIX) {
        if (!s->modules[0].all_layers) {
            *why = "PEFT's prefix tuning covers every layer";
            return false;
        }
        return true;
    }
    *why = "PEFT has only LoRA and prefix tuning (no bottleneck, parallel or MAM adapters)";
    return false;
}

/* target_modules: a list of names when they are unambiguous suffixes, else a
 * regular expression PEFT matches against the full module name. */
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
    char re[512];
    size_t len = (size_t)snprintf(re, sizeof re, ".*%s\\.encoder\\.layer\\.\\d+\\.(", family_prefix(a));
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
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "base_model_name_or_path", base ? base : "");
    cJSON_AddStringToObject(c, "task_type", "SEQ_CLS");
    cJSON_AddBoolToObject(c, "inference_mode", true);
    cJSON *save = cJSON_AddArrayToObject(c, "modules_to_save");
    cJSON_AddItemToArray(save, cJSON_CreateString("classifier"));
    const struct delta_module *m = &s->modules[0];
    if (m->kind == DELTA_LORA) {
        cJSON_AddStringToObject(c, "peft_type", "LORA");
        cJSON_AddNumberToObject(c, "r", m->size);
        cJSON_AddNumberToObject(c, "lora_alpha", m->alpha);
        cJSON_AddNumberToObject(c, "lora_dropout", m->dropout > 0 ? m->dropout : 0);
        cJSON_AddStringToObject(c, "bias", "none");
        cJSON_AddBoolToObject(c, "fan_in_fan_out", false);
        cJSON_AddItemToObject(c, "target_modules", target_modules(s, a));
        if (m->all_layers) cJSON_AddNullToObject(c, "layers_to_transform");
        else cJSON_AddItemToObject(c, "layers_to_transform", cJSON_CreateIntArray(m->layers, m->layer_count));
    } else {
        cJSON_AddStringToObject(c, "peft_type", "PREFIX_TUNING");
        cJSON_AddNumberToObject(c, "num_virtual_tokens", m->size);
        cJSON_AddNumberToObject(c, "token_dim", a->hidden);
        cJSON_AddNumberToObject(c, "num_transformer_submodules", 1);
        cJSON_AddNumberToObject(c, "num_attention_heads", a->heads);
        cJSON_AddNumberToObject(c, "num_layers", a->layers);
        cJSON_AddNumberToObject(c, "encoder_hidden_size", a->hidden);
        cJSON_AddBoolToObject(c, "prefix_projection", false);
    }
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    return text;
}

/* PEFT's prompt_embeddings (L, layers·2·d): for layer ℓ, keys in columns
 * [2ℓ·d, (2ℓ+1)·d) and values in the next d (PEFT reshapes to
 * (L, layers·2, H, hd) and splits key/value pairs per layer). */
static vp_status prompt_embeddings(const struct delta_tensors *t, const struct model_arch *a, int length,
                                   float **out) {
    size_t d = (size_t)a->hidden, width = (size_t)a->layers * 2 * d;
    float *pe = calloc((size_t)length * width, sizeof *pe);
    if (!pe) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory exporting prefixes");
    for (int l = 0; l < a->layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "encoder.layers.%d.delta0.%s", l, kv ? "prefix_v" : "prefix_k");
            const struct delta_tensor *p = delta_tensors_find(t, name);
            if (!p || delta_tensor_numel(p) != (uint64_t)length * d) {
                free(pe);
                return vp_fail(VP_ERROR_INVALID_ARGUMENT, "PEFT export: %s is missing or not (%d, %zu); "
                               "collapse the prefix reparameterisation first", name, length, d);
            }
            for (int i = 0; i < length; i++)
                memcpy(pe + (size_t)i * width + (2 * (size_t)l + (size_t)kv) * d, p->data + (size_t)i * d,
                       d * sizeof *pe);
        }
    *out = pe;
    return VP_OK;
}

/* "encoder.layers.3.delta1.lora_A" -> layer 3, module 1, "lora_A". */
static bool parse_delta_name(const char *name, int *layer, int *module, const char **rest) {
    int n = 0;
    if ((sscanf(name, "encoder.layers.%d.delta%d.%n", layer, module, &n) != 2 &&
         sscanf(name, "decoder.layers.%d.delta%d.%n", layer, module, &n) != 2) || n == 0)
        return false;
    *rest = name + n;
    return true;
}

/* Where a stack's layers and delta tensors are named: PEFT's key prefix
 * (after base_model.model.) and vkpeft's. LLaMA-family decoders only: GPT-2's
 * fused c_attn LoRA (fan_in_fan_out) is not imported. */
static const char *peft_layers_prefix(const struct model_arch *arch, char *buf, size_t size) {
    if (arch->stack == MODEL_STACK_DECODER) snprintf(buf, size, "model.layers.");
    else snprintf(buf, size, "%s.encoder.layer.", family_prefix(arch));
    return buf;
}
static const char *delta_layers_name(const struct model_arch *arch) {
    return arch->stack == MODEL_STACK_DECODER ? "decoder.layers" : "encoder.layers";
}

vp_status delta_peft_export(const char *dir, const struct delta_spec *spec, const struct model_arch *arch,
                            const struct delta_tensors *t, const char *base_model) {
    if (arch->stack == MODEL_STACK_DECODER) return delta_peft_decoder_export(dir, spec, arch, t, base_model);
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
            snprintf(names[n], sizeof names[n], "base_model.model.%s.encoder.layer.%d.%s.%s.weight",
                     family_prefix(arch), layer, site_path(spec->modules[module].at), rest);
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
                                              {spec->modules[0].size, (int64_t)arch->layers * 2 * arch->hidden},
                                              pe};
    }
    char path[4096];
    if (s == VP_OK) {
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
        s = io_safetensors_write(path, out, n, (const char *const[]){"format", "pt", NULL});
    }
    if (s == VP_OK) {
        char *cfg = config_json(spec, arch, base_model);
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        s = cfg ? vp_file_write_atomic(path, cfg, strlen(cfg))
                : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory exporting");
        free(cfg);
    }
    free(pe);
    free(names);
    free(out);
    return s;
}

/* ---- import ---------------------------------------------------------------------------- */

static enum delta_at site_of(const struct model_arch *arch, const char *path) {
    static const enum delta_at sites[] = {DELTA_AT_Q, DELTA_AT_K, DELTA_AT_V, DELTA_AT_O, DELTA_AT_UP,
                                          DELTA_AT_DOWN};
    static const char *const llama[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                        "self_attn.o_proj", "mlp.up_proj",      "mlp.down_proj"};
    const bool decoder = arch->stack == MODEL_STACK_DECODER;
    for (size_t i = 0; i < sizeof sites / sizeof sites[0]; i++)
        if (strcmp(path, decoder ? llama[i] : site_path(sites[i])) == 0) return sites[i];
    return DELTA_AT_NONE;
}

struct lora_config {
    int r;
    double alpha;
};

static vp_status read_lora_config(const char *dir, struct lora_config *c) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    void *text;
    size_t size;
    vp_status s = vp_file_read(path, &text, &size);
    if (s != VP_OK) return s;
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (!cJSON_IsObject(root))
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s is not a JSON object", path);
    else if (!cJSON_IsString(type) || strcmp(type->valuestring, "LORA") != 0)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"peft_type\" is %s; vkpeft loads LoRA adapters from PEFT "
                    "folders (its own delta folders hold the other methods)", path,
                    cJSON_IsString(type) ? type->valuestring : "missing");
    else if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 65536)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"r\" must be a positive integer", path);
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "fan_in_fan_out")) ||
             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "use_dora")) ||
             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "use_rslora")))
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: fan_in_fan_out, DoRA and rsLoRA adapters are not supported", path);
    else if (cJSON_IsString(bias) && strcmp(bias->valuestring, "none") != 0)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"bias\": \"%s\" is not supported (none)", path, bias->valuestring);
    if (s == VP_OK) {
        c->r = (int)r->valuedouble;
        c->alpha = cJSON_IsNumber(alpha) ? alpha->valuedouble : 8; /* PEFT's default */
    }
    cJSON_Delete(root);
    return s;
}

/* Adds the LoRA module for `at` to the spec (once) and notes layer l. */
static int spec_module_for(struct delta_spec *spec, enum delta_at at, const struct lora_config *c) {
    for (int i = 0; i < spec->count; i++)
        if (spec->modules[i].at == at) return i;
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
    spec->modules[spec->count] = m;
    return spec->count++;
}

static vp_status import_tensor(const struct io_tensor *it, const struct model_arch *arch, const char *file,
                               const struct lora_config *c, struct delta_spec *spec, struct delta_tensors *t) {
    const char *key = it->name;
    if (strncmp(key, "base_model.model.", 17) == 0) key += 17;
    char name[DELTA_NAME_MAX];
    char prefix[64];
    peft_layers_prefix(arch, prefix, sizeof prefix);
    if (arch->stack != MODEL_STACK_DECODER && is_head(key)) {
        snprintf(name, sizeof name, "%s", key);
    } else if (strncmp(key, prefix, strlen(prefix)) == 0) {
        int layer = -1, n = 0;
        if (sscanf(key + strlen(prefix), "%d.%n", &layer, &n) != 1 || layer < 0 || layer >= arch->layers)
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' names no layer of this model (0..%d)", file,
                           it->name, arch->layers - 1);
        char path[128];
        const char *p = key + strlen(prefix) + n, *ab = strstr(p, ".lora_");
        if (!ab || (strcmp(ab, ".lora_A.weight") != 0 && strcmp(ab, ".lora_B.weight") != 0))
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' is not a LoRA A/B weight", file, it->name);
        snprintf(path, sizeof path, "%.*s", (int)(ab - p), p);
        enum delta_at at = site_of(arch, path);
        if (at == DELTA_AT_NONE)
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' targets '%s', which vkpeft does not adapt", file,
                           it->name, path);
        int mod = spec_module_for(spec, at, c);
        struct delta_module *m = &spec->modules[mod];
        if (!delta_module_has_layer(m, layer)) m->layers[m->layer_count++] = layer;
        snprintf(name, sizeof name, "%s.%d.delta%d.%s", delta_layers_name(arch), layer, mod,
                 ab[6] == 'A' ? "lora_A" : "lora_B");
    } else {
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' is not part of a %s LoRA adapter", file, it->name,
                       arch->model_type);
    }
    if (it->dtype != IO_DTYPE_F32 || it->ndim < 1 || it->ndim > 4)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' is %s with %d dimensions; vkpeft reads F32 adapters",
                       file, it->name, io_dtype_name(it->dtype), it->ndim);
    struct delta_tensor *d = delta_tensors_add(t, name, it->ndim, it->shape);
    if (!d) return VP_ERROR_HOST_MEMORY;
    memcpy(d->data, it->data, it->nbytes);
    return VP_OK;
}

/* Checks A (r, in) and B (out, r) against the model. */
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
        if (m->at == DELTA_AT_Q) out = qd;
        if (m->at == DELTA_AT_O) in = qd;
        if (m->at == DELTA_AT_UP) out = arch->intermediate;
        if (m->at == DELTA_AT_DOWN) in = arch->intermediate;
        if (m->at == DELTA_AT_K || m->at == DELTA_AT_V) out = (int64_t)arch->kv_heads * arch->head_dim;
        bool a = strcmp(rest, "lora_A") == 0;
        int64_t want0 = a ? m->size : out, want1 = a ? in : m->size;
        if (d->ndim != 2 || d->shape[0] != want0 || d->shape[1] != want1)
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: %s of layer %d on %s has shape (%lld, %lld), want (%lld, %lld)",
                           file, a ? "lora_A" : "lora_B", layer, delta_at_name(m->at),
                           (long long)d->shape[0], (long long)(d->ndim > 1 ? d->shape[1] : 0),
                           (long long)want0, (long long)want1);
    }
    return VP_OK;
}

/* Every (module, layer) needs both lora_A and lora_B. */
static vp_status check_pairs(const struct delta_spec *spec, const struct model_arch *arch,
                             const struct delta_tensors *t, const char *file) {
    for (int i = 0; i < spec->count; i++)
        for (int l = 0; l < arch->layers; l++) {
            if (!delta_module_has_layer(&spec->modules[i], l)) continue;
            for (int ab = 0; ab < 2; ab++) {
                char name[DELTA_NAME_MAX];
                snprintf(name, sizeof name, "%s.%d.delta%d.%s", delta_layers_name(arch), l, i,
                         ab ? "lora_B" : "lora_A");
                if (!delta_tensors_find(t, name))
                    return vp_fail(VP_ERROR_BAD_INPUT, "%s: layer %d's %s has no %s", file, l,
                                   site_path(spec->modules[i].at), ab ? "lora_B" : "lora_A");
            }
        }
    return VP_OK;
}

vp_status delta_peft_import_lora(const char *dir, const struct model_arch *arch, struct delta_spec *spec,
                                 struct delta_tensors *t) {
    memset(spec, 0, sizeof *spec);
    memset(t, 0, sizeof *t);
    if (arch->family == MODEL_FAMILY_GPT2)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: PEFT LoRA adapters for GPT-2 (a fused c_attn Conv1D, "
                       "fan_in_fan_out) are not imported yet; LLaMA-family, BERT and RoBERTa adapters are", dir);
    if (arch->stack == MODEL_STACK_ENCODER_DECODER)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: PEFT adapters for encoder-decoder models are not imported yet", dir);
    snprintf(spec->name, sizeof spec->name, "lora");
    struct lora_config c;
    vp_status s = read_lora_config(dir, &c);
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
    /* Modules on every layer are "all layers". */
    for (int i = 0; i < spec->count && s == VP_OK; i++)
        if (spec->modules[i].layer_count == arch->layers) {
            spec->modules[i].all_layers = true;
            spec->modules[i].layer_count = 0;
        }
    if (s == VP_OK) s = check_shapes(spec, arch, t, path);
    if (s == VP_OK) s = check_pairs(spec, arch, t, path);
    if (s != VP_OK) delta_tensors_free(t);
    return s;
}
