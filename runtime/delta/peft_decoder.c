/* PEFT export of a decoder-only model's LoRA (GPT-2, LLaMA family):
 * adapter_config.json (task_type CAUSAL_LM) and adapter_model.safetensors
 * with the keys PEFT gives LlamaForCausalLM / GPT2LMHeadModel, e.g.
 * base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight and
 * base_model.model.transformer.h.0.attn.c_attn.lora_A.weight.
 *
 * GPT-2's q, k and v are one fused Conv1D (c_attn, out = 3d) in Hugging
 * Face, and vkpeft keeps one LoRA pair per projection. n of them (rank r,
 * scale α/r each) are exactly one c_attn LoRA of rank n·r: A = the A's
 * stacked (n·r, d), B (3d, n·r) block-diagonal, the block of q, k or v in
 * its rows, zero elsewhere, lora_alpha n·α (so PEFT's α'/r' = α/r). PEFT's
 * config has one r for every target, so that export cannot sit beside LoRA
 * on another GPT-2 module (rank r): such a delta is refused with a
 * message, and stays in vkpeft's own delta.safetensors. A prefix alone is
 * written by peft.c (PEFT's PREFIX_TUNING); adapters, and prefixes beside
 * other modules, are not exported. */
#include "peft.h"

#include "params.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool gpt2(const struct model_arch *a) { return a->family == MODEL_FAMILY_GPT2; }
static bool fused(enum delta_at at) { return at == DELTA_AT_Q || at == DELTA_AT_K || at == DELTA_AT_V; }

/* The module path inside a layer, and the layers' path. */
static const char *module_path(const struct model_arch *a, enum delta_at at) {
    static const char *const llama[] = {[DELTA_AT_Q] = "self_attn.q_proj", [DELTA_AT_K] = "self_attn.k_proj",
                                        [DELTA_AT_V] = "self_attn.v_proj", [DELTA_AT_O] = "self_attn.o_proj",
                                        [DELTA_AT_UP] = "mlp.up_proj", [DELTA_AT_DOWN] = "mlp.down_proj"};
    static const char *const gpt[] = {[DELTA_AT_Q] = "attn.c_attn", [DELTA_AT_K] = "attn.c_attn",
                                      [DELTA_AT_V] = "attn.c_attn", [DELTA_AT_O] = "attn.c_proj",
                                      [DELTA_AT_UP] = "mlp.c_fc", [DELTA_AT_DOWN] = "mlp.c_proj"};
    if (at < DELTA_AT_Q || at > DELTA_AT_DOWN) return NULL;
    return gpt2(a) ? gpt[at] : llama[at];
}
static const char *layers_path(const struct model_arch *a) { return gpt2(a) ? "transformer.h" : "model.layers"; }

void delta_peft_decoder_module(const struct model_arch *a, int layer, enum delta_at at, char *buf, size_t size) {
    const char *p = module_path(a, at);
    snprintf(buf, size, "%s.%d.%s", layers_path(a), layer, p ? p : "?");
}

bool delta_peft_decoder_supported(const struct delta_spec *s, const struct model_arch *a, const char **why) {
    *why = NULL;
    if (s->count < 1) {
        *why = "the delta has no module";
        return false;
    }
    int qkv = 0;
    for (int i = 0; i < s->count; i++) {
        if (s->modules[i].kind != DELTA_LORA) {
            *why = "PEFT files for decoder-only models hold LoRA or one prefix alone (adapters, and prefixes "
                   "beside other modules, are in delta.safetensors only)";
            return false;
        }
        qkv += fused(s->modules[i].at);
    }
    if (!delta_peft_lora_uniform(s, why)) return false;
    if (gpt2(a) && qkv && qkv != s->count) {
        *why = "GPT-2's c_attn is one fused Conv1D in Hugging Face: LoRA on q, k, v inside it exports as one "
               "c_attn LoRA of rank n·r, and PEFT's single r cannot also hold LoRA (rank r) on attn.c_proj, "
               "mlp.c_fc or mlp.c_proj; train c_attn alone or the others alone to get PEFT files";
        return false;
    }
    return true;
}

static char *config_json(const struct delta_spec *s, const struct model_arch *a, const char *base, int r,
                         double alpha) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "base_model_name_or_path", base ? base : "");
    cJSON_AddStringToObject(c, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(c, "inference_mode", true);
    /* PEFT matches a target when a module's name ends with "." + it. */
    cJSON *targets = cJSON_CreateArray();
    for (int i = 0; i < s->count; i++) {
        const char *p = module_path(a, s->modules[i].at);
        if (gpt2(a) && i > 0 && fused(s->modules[i].at)) continue; /* one c_attn */
        cJSON_AddItemToArray(targets, cJSON_CreateString(gpt2(a) ? p : strchr(p, '.') + 1));
    }
    /* fan_in_fan_out: GPT-2's Conv1D weights are [in, out] */
    delta_peft_lora_fields(c, &s->modules[0], r, alpha, gpt2(a), targets);
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    return text;
}

static const struct delta_tensor *find(const struct delta_tensors *t, const struct model_arch *a, int l, int i,
                                       const char *part) {
    char name[DELTA_NAME_MAX];
    snprintf(name, sizeof name, "%s.%d.delta%d.%s", delta_params_layers_name(a), l, i, part);
    return delta_tensors_find(t, name);
}

/* GPT-2's fused c_attn pair of layer l (see the top of the file). */
static vp_status fuse_c_attn(const struct delta_spec *s, const struct model_arch *a, const struct delta_tensors *t,
                             int l, float *A, float *B) {
    const int n = s->count, r = s->modules[0].size, d = a->hidden, rn = n * r;
    memset(B, 0, (size_t)3 * d * rn * sizeof *B);
    for (int i = 0; i < n; i++) {
        const struct delta_tensor *ta = find(t, a, l, i, "lora_A"), *tb = find(t, a, l, i, "lora_B");
        if (!ta || !tb || delta_tensor_numel(ta) != (uint64_t)r * d || delta_tensor_numel(tb) != (uint64_t)d * r)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "PEFT export: layer %d's LoRA %d is missing or not (%d, %d)",
                           l, i, r, d);
        const int block = s->modules[i].at - DELTA_AT_Q; /* q, k, v column blocks of c_attn */
        memcpy(A + (size_t)i * r * d, ta->data, (size_t)r * d * sizeof *A);
        for (int o = 0; o < d; o++)
            memcpy(B + ((size_t)block * d + o) * rn + (size_t)i * r, tb->data + (size_t)o * r, (size_t)r * sizeof *B);
    }
    return VP_OK;
}

vp_status delta_peft_decoder_export(const char *dir, const struct delta_spec *s, const struct model_arch *a,
                                    const struct delta_tensors *t, const char *base_model) {
    const char *why;
    if (!delta_peft_decoder_supported(s, a, &why))
        return vp_fail(VP_ERROR_UNSUPPORTED, "delta '%s' cannot be written in PEFT's layout: %s", s->name, why);
    const bool fuse = gpt2(a) && fused(s->modules[0].at);
    const int n = fuse ? 1 : s->count, r = s->modules[0].size * (fuse ? s->count : 1);
    const size_t cap = (size_t)a->layers * n * 2;
    struct io_tensor_out *out = calloc(cap + 1, sizeof *out);
    char (*names)[160] = calloc(cap + 1, sizeof *names);
    float **owned = calloc(cap + 1, sizeof *owned);
    vp_status s_ = out && names && owned ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory exporting");
    size_t k = 0;
    for (int l = 0; l < a->layers && s_ == VP_OK; l++) {
        if (!delta_module_has_layer(&s->modules[0], l)) continue;
        for (int i = 0; i < n && s_ == VP_OK; i++)
            for (int ab = 0; ab < 2 && s_ == VP_OK; ab++) {
                char module[128];
                delta_peft_decoder_module(a, l, s->modules[i].at, module, sizeof module);
                snprintf(names[k], sizeof names[k], "base_model.model.%s.lora_%c.weight", module, ab ? 'B' : 'A');
                out[k] = (struct io_tensor_out){names[k], IO_DTYPE_F32, 2, {0}, NULL};
                if (fuse) {
                    if (ab == 0) {
                        owned[k] = malloc((size_t)r * a->hidden * sizeof **owned);
                        owned[k + 1] = malloc((size_t)3 * a->hidden * r * sizeof **owned);
                        s_ = owned[k] && owned[k + 1] ? fuse_c_attn(s, a, t, l, owned[k], owned[k + 1])
                                                      : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory exporting");
                    }
                    out[k].data = owned[k];
                    out[k].shape[0] = ab ? 3 * a->hidden : r;
                    out[k].shape[1] = ab ? r : a->hidden;
                } else {
                    const struct delta_tensor *d = find(t, a, l, i, ab ? "lora_B" : "lora_A");
                    if (!d) {
                        s_ = vp_fail(VP_ERROR_INVALID_ARGUMENT, "PEFT export: layer %d has no LoRA %d", l, i);
                        break;
                    }
                    out[k].data = d->data;
                    out[k].shape[0] = d->shape[0];
                    out[k].shape[1] = d->shape[1];
                }
                k++;
            }
    }
    const double alpha = s->modules[0].alpha * (fuse ? s->count : 1);
    if (s_ == VP_OK) s_ = delta_peft_write_files(dir, out, k, config_json(s, a, base_model, r, alpha));
    for (size_t i = 0; owned && i < cap; i++) free(owned[i]);
    free(owned);
    free(names);
    free(out);
    return s_;
}
