/* Parameter counts of a delta on an architecture: what `vkpeft inspect`
 * prints and the paper's "% params". Counts follow the module shapes the
 * delta layer allocates (PAPER.md: adapter 2·r·d + biases, LoRA r·(in+out),
 * prefix 2·l·d per attention block). */
#include "spec.h"

#include <stdio.h>
#include <string.h>

/* Input and output widths of a projection. */
static void proj_dims(const struct model_arch *a, enum delta_at at, uint64_t *in, uint64_t *out) {
    uint64_t d = (uint64_t)a->hidden, kv = (uint64_t)a->kv_heads * (uint64_t)a->head_dim;
    uint64_t ffn = (uint64_t)a->intermediate;
    *in = d;
    *out = d;
    if (at == DELTA_AT_K || at == DELTA_AT_V) *out = kv;
    if (at == DELTA_AT_UP) *out = ffn;
    if (at == DELTA_AT_DOWN) *in = ffn;
}

/* Biases of one encoder layer: q, k, v, o, attention LayerNorm, FFN up and
 * down, output LayerNorm. */
static uint64_t layer_biases(const struct model_arch *a) {
    uint64_t d = (uint64_t)a->hidden, kv = (uint64_t)a->kv_heads * (uint64_t)a->head_dim;
    return d + 2 * kv + d + d + (uint64_t)a->intermediate + d + d;
}

static uint64_t layer_params(const struct model_arch *a) {
    uint64_t d = (uint64_t)a->hidden, kv = (uint64_t)a->kv_heads * (uint64_t)a->head_dim;
    uint64_t ffn = (uint64_t)a->intermediate;
    uint64_t attn = d * d + 2 * d * kv + d * d;
    uint64_t mlp = 2 * d * ffn;
    return attn + mlp + 2 * d /* LayerNorm weights */ + layer_biases(a);
}

static bool bert_pooler(const struct model_arch *a) { return a->family == MODEL_FAMILY_BERT; }

static uint64_t model_params(const struct model_arch *a) {
    uint64_t d = (uint64_t)a->hidden;
    uint64_t emb = ((uint64_t)a->vocab_size + (uint64_t)a->max_positions + (uint64_t)a->type_vocab_size) * d +
                   2 * d;
    uint64_t pooler = bert_pooler(a) ? d * d + d : 0;
    return emb + (uint64_t)a->layers * layer_params(a) + pooler;
}

static uint64_t head_params(const struct model_arch *a) {
    uint64_t d = (uint64_t)a->hidden, c = (uint64_t)a->num_labels;
    /* BERT: classifier on the pooled output; RoBERTa: dense -> tanh -> out_proj. */
    return (a->family == MODEL_FAMILY_ROBERTA ? d * d + d : 0) + d * c + c;
}

static vp_status count_module(const struct delta_module *m, const struct model_arch *a, int index,
                              uint64_t *trained, uint64_t *saved) {
    if (!(m->stacks & DELTA_STACK_ENCODER))
        return vp_fail(VP_ERROR_BAD_INPUT, "delta module %d (%s) is for the %s stack, which a %s "
                       "model does not have", index, delta_kind_name(m->kind),
                       m->stacks & DELTA_STACK_DECODER ? "decoder" : "cross-attention", a->model_type);
    uint64_t layers = 0;
    for (int l = 0; l < m->layer_count; l++)
        if (m->layers[l] >= a->layers)
            return vp_fail(VP_ERROR_BAD_INPUT, "delta module %d (%s) names layer %d, but the model "
                           "has layers 0..%d", index, delta_kind_name(m->kind), m->layers[l], a->layers - 1);
    for (int l = 0; l < a->layers; l++) layers += delta_module_has_layer(m, l);
    uint64_t d = (uint64_t)a->hidden, r = (uint64_t)m->size;
    switch (m->kind) {
    case DELTA_ADAPTER:
        if (m->per_head) {
            uint64_t hd = (uint64_t)a->head_dim;
            *saved = layers * (uint64_t)a->heads * (2 * r * hd + r + hd);
        } else {
            *saved = layers * (2 * r * d + r + d);
        }
        if (m->compose == DELTA_COMPOSE_GATED) *saved += layers; /* one gate g per layer */
        *trained = *saved;
        break;
    case DELTA_LORA: {
        uint64_t in, out;
        proj_dims(a, m->at, &in, &out);
        *trained = *saved = layers * r * (in + out);
        break;
    }
    case DELTA_PREFIX: {
        uint64_t kv = (uint64_t)a->kv_heads * (uint64_t)a->head_dim;
        *saved = layers * 2 * r * kv;
        /* Training-time reparameterisation: embedding (l, d) -> Linear(d, R)
         * -> tanh -> Linear(R, layers·2·kv). */
        uint64_t R = (uint64_t)m->reparam, outw = layers * 2 * kv;
        *trained = R ? r * d + d * R + R + R * outw + outw : *saved;
        break;
    }
    case DELTA_BITFIT:
        *trained = *saved = layers * layer_biases(a) + d /* embedding LayerNorm */ +
                            (bert_pooler(a) ? d : 0);
        break;
    case DELTA_FULL:
        *trained = *saved = model_params(a);
        break;
    }
    return VP_OK;
}

vp_status delta_count_params(const struct delta_spec *spec, const struct model_arch *arch,
                             struct delta_counts *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < spec->count; i++) {
        vp_status s = count_module(&spec->modules[i], arch, i, &out->module_params[i],
                                   &out->module_saved[i]);
        if (s != VP_OK) return s;
        out->delta_params += out->module_params[i];
    }
    out->head_params = head_params(arch);
    out->model_params = model_params(arch);
    return VP_OK;
}
