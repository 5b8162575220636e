/* PEFT LoRA files for encoder-decoders (BART, mBART): adapter_config.json
 * (task_type SEQ_2_SEQ_LM) and adapter_model.safetensors with the keys PEFT
 * gives BartForConditionalGeneration / MBartForConditionalGeneration, e.g.
 * base_model.model.model.encoder.layers.0.self_attn.q_proj.lora_A.weight.
 *
 * vkpeft's places map to Hugging Face's modules one to one:
 *   encoder.layers.{l}  q k v o up down -> model.encoder.layers.{l}.self_attn.{q,k,v,out}_proj, fc1, fc2
 *   decoder.layers.{l}  q k v o up down -> model.decoder.layers.{l}.self_attn.{q,k,v,out}_proj, fc1, fc2
 *   cross.layers.{l}    q k v o         -> model.decoder.layers.{l}.encoder_attn.{q,k,v,out}_proj
 * PEFT adds lora_B(lora_A(x))·α/r to each module's output, as vkpeft does.
 *
 * target_modules is the list of names ("q_proj", "fc1", ...) when every
 * module of that name in the model is adapted (PEFT matches a list entry
 * as a suffix), else a regular expression PEFT matches against the whole
 * module name; the layers go into layers_to_transform with a list, into
 * the expression with a regular expression (PEFT refuses both at once). */
#include "peft.h"

#include "params.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool attn_site(enum delta_at at) { return at >= DELTA_AT_Q && at <= DELTA_AT_O; }

/* The Linear's name inside its block (self_attn., encoder_attn. or none before it). */
static const char *site_name(enum delta_at at) {
    switch (at) {
    case DELTA_AT_Q: return "q_proj";
    case DELTA_AT_K: return "k_proj";
    case DELTA_AT_V: return "v_proj";
    case DELTA_AT_O: return "out_proj";
    case DELTA_AT_UP: return "fc1";
    case DELTA_AT_DOWN: return "fc2";
    default: return NULL;
    }
}

/* The stacks of a BART model in which a site exists (cross-attention
 * blocks have no FFN). */
static unsigned site_stacks(enum delta_at at) {
    return DELTA_STACK_ENCODER | DELTA_STACK_DECODER | (attn_site(at) ? DELTA_STACK_CROSS : 0);
}

/* "encoder.layers" / "decoder.layers" / "cross.layers" -> "self_attn." or
 * "encoder_attn." before an attention site's name, "" before fc1 / fc2. */
static const char *block_path(unsigned stack, enum delta_at at) {
    if (!attn_site(at)) return "";
    return stack == DELTA_STACK_CROSS ? "encoder_attn." : "self_attn.";
}

bool delta_peft_seq2seq_supported(const struct delta_spec *s, const struct model_arch *a, const char **why) {
    (void)a;
    *why = NULL;
    if (s->count < 1) {
        *why = "the delta has no module";
        return false;
    }
    for (int i = 0; i < s->count; i++)
        if (s->modules[i].kind != DELTA_LORA) {
            *why = "PEFT files for encoder-decoders (BART/mBART) hold LoRA only (adapters, prefixes, BitFit and "
                   "full fine-tuning are in delta.safetensors only)";
            return false;
        }
    return delta_peft_lora_uniform(s, why);
}

/* Does every module adapt its site in all the stacks that have it? Then the
 * site names alone say what is adapted. */
static bool plain_targets(const struct delta_spec *s) {
    for (int i = 0; i < s->count; i++) {
        const unsigned want = site_stacks(s->modules[i].at);
        if ((s->modules[i].stacks & want) != want) return false;
    }
    return true;
}

/* Appends `text` with its dots escaped. */
static size_t put_escaped(char *re, size_t len, size_t size, const char *text) {
    for (; *text && len + 3 < size; text++) {
        if (*text == '.') re[len++] = '\\';
        re[len++] = *text;
    }
    re[len] = 0;
    return len;
}

/* model\.(encoder|decoder)\.layers\.(L)\.(path|path...) per stack, joined
 * by |; L is \d+ or the layers (0|2). */
static cJSON *target_regex(const struct delta_spec *s) {
    char re[4096], layers[1100]; /* 256 layers: "(0|1|…|255)" */
    delta_peft_layers_regex(&s->modules[0], layers, sizeof layers);
    static const char *const stacks[2] = {"encoder", "decoder"};
    size_t len = 0;
    re[0] = 0;
    for (int k = 0; k < 2; k++) {
        int terms = 0;
        for (int i = 0; i < s->count; i++) {
            const struct delta_module *m = &s->modules[i];
            /* the decoder layer holds self-attention, cross-attention and the FFN */
            const unsigned here = k == 0 ? DELTA_STACK_ENCODER : DELTA_STACK_DECODER | DELTA_STACK_CROSS;
            for (unsigned bit = 1; bit <= DELTA_STACK_CROSS; bit <<= 1) {
                if (!(bit & here & m->stacks & site_stacks(m->at))) continue;
                if (terms++ == 0)
                    len += (size_t)snprintf(re + len, sizeof re - len, "%smodel\\.%s\\.layers\\.%s\\.(",
                                            len ? "|" : "", stacks[k], layers);
                else
                    len += (size_t)snprintf(re + len, sizeof re - len, "|");
                len = put_escaped(re, len, sizeof re, block_path(bit, m->at));
                len = put_escaped(re, len, sizeof re, site_name(m->at));
            }
        }
        if (terms) len += (size_t)snprintf(re + len, sizeof re - len, ")");
    }
    return cJSON_CreateString(re);
}

static char *config_json(const struct delta_spec *s, const char *base) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "base_model_name_or_path", base ? base : "");
    cJSON_AddStringToObject(c, "task_type", "SEQ_2_SEQ_LM");
    cJSON_AddBoolToObject(c, "inference_mode", true);
    cJSON *targets;
    if (plain_targets(s)) {
        targets = cJSON_CreateArray();
        for (int i = 0; i < s->count; i++)
            cJSON_AddItemToArray(targets, cJSON_CreateString(site_name(s->modules[i].at)));
    } else {
        targets = target_regex(s);
    }
    delta_peft_lora_fields(c, &s->modules[0], s->modules[0].size, s->modules[0].alpha, false, targets);
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    return text;
}

static unsigned root_stack(const char *root) {
    return strcmp(root, "encoder.layers") == 0   ? DELTA_STACK_ENCODER
           : strcmp(root, "decoder.layers") == 0 ? DELTA_STACK_DECODER
                                                 : DELTA_STACK_CROSS;
}

void delta_peft_seq2seq_module(const char *root, int layer, enum delta_at at, char *buf, size_t size) {
    const unsigned stack = root_stack(root);
    const char *site = site_name(at);
    snprintf(buf, size, "model.%s.layers.%d.%s%s", stack == DELTA_STACK_ENCODER ? "encoder" : "decoder", layer,
             block_path(stack, at), site ? site : "?");
}

vp_status delta_peft_seq2seq_export(const char *dir, const struct delta_spec *s, const struct model_arch *a,
                                    const struct delta_tensors *t, const char *base_model) {
    const char *why;
    if (!delta_peft_seq2seq_supported(s, a, &why))
        return vp_fail(VP_ERROR_UNSUPPORTED, "delta '%s' cannot be written in PEFT's layout: %s", s->name, why);
    size_t cap = 0;
    for (int i = 0; i < s->count; i++) cap += 2 * (size_t)delta_module_places(&s->modules[i], a);
    struct io_tensor_out *out = calloc(cap + 1, sizeof *out);
    char (*names)[160] = calloc(cap + 1, sizeof *names);
    vp_status st = out && names ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory exporting");
    size_t k = 0;
    for (int i = 0; i < s->count && st == VP_OK; i++) {
        const struct delta_module *m = &s->modules[i];
        const char *root;
        for (int place = 0, l; st == VP_OK && (l = delta_params_place(a, m, place, &root)) >= 0; place++)
            for (int ab = 0; ab < 2; ab++) {
                char name[DELTA_NAME_MAX];
                snprintf(name, sizeof name, "%s.%d.delta%d.lora_%c", root, l, i, ab ? 'B' : 'A');
                const struct delta_tensor *d = delta_tensors_find(t, name);
                if (!d || d->ndim != 2) {
                    st = vp_fail(VP_ERROR_INVALID_ARGUMENT, "PEFT export: %s is missing or not 2-D", name);
                    break;
                }
                char module[128];
                delta_peft_seq2seq_module(root, l, m->at, module, sizeof module);
                snprintf(names[k], sizeof names[k], "base_model.model.%s.lora_%c.weight", module, ab ? 'B' : 'A');
                out[k] = (struct io_tensor_out){names[k], IO_DTYPE_F32, 2, {d->shape[0], d->shape[1]}, d->data};
                k++;
            }
    }
    if (st == VP_OK) st = delta_peft_write_files(dir, out, k, config_json(s, base_model));
    free(names);
    free(out);
    return st;
}

vp_status delta_peft_seq2seq_site(const char *module, const struct model_arch *a, const char *file,
                                  const char *key, unsigned *stack, int *layer, enum delta_at *at) {
    int n = 0;
    bool enc = true;
    *layer = -1;
    if (sscanf(module, "model.encoder.layers.%d.%n", layer, &n) != 1 || n == 0) {
        enc = false;
        n = 0;
        if (sscanf(module, "model.decoder.layers.%d.%n", layer, &n) != 1 || n == 0)
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' is not in model.encoder.layers or "
                           "model.decoder.layers of a %s", file, key, a->model_type);
    }
    const int layers = enc ? a->layers : a->decoder_layers;
    if (*layer < 0 || *layer >= layers)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' names no %s layer of this model (0..%d)", file, key,
                       enc ? "encoder" : "decoder", layers - 1);
    const char *path = module + n;
    for (int k = DELTA_AT_Q; k <= DELTA_AT_DOWN; k++)
        for (unsigned bit = 1; bit <= DELTA_STACK_CROSS; bit <<= 1) {
            const enum delta_at s = (enum delta_at)k;
            if (!(site_stacks(s) & bit) || (bit == DELTA_STACK_ENCODER) != enc) continue;
            const char *pre = block_path(bit, s);
            if (strncmp(path, pre, strlen(pre)) == 0 && strcmp(path + strlen(pre), site_name(s)) == 0) {
                *stack = bit;
                *at = s;
                return VP_OK;
            }
        }
    return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor '%s' targets '%s', which vkpeft does not adapt (LoRA on "
                   "self_attn / encoder_attn q_proj, k_proj, v_proj, out_proj, and fc1, fc2)", file, key, path);
}
