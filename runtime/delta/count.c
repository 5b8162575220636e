/* Parameter counts of a delta on an architecture: what `vkpeft inspect`
 * prints and the paper's "% params". Counts follow the module shapes the
 * delta layer allocates (PAPER.md: adapter 2·r·d + biases, LoRA r·(in+out),
 * prefix 2·l·d per attention block). */
#include "spec.h"

#include <stdio.h>
#include <string.h>

/* The stacks a model has (DELTA_STACK_* bits). */
static unsigned model_stacks(const struct model_arch *a) {
    switch (a->stack) {
    case MODEL_STACK_ENCODER: return DELTA_STACK_ENCODER;
    case MODEL_STACK_DECODER: return DELTA_STACK_DECODER;
    case MODEL_STACK_ENCODER_DECODER: break;
    }
    return DELTA_STACK_ENCODER | DELTA_STACK_DECODER | DELTA_STACK_CROSS;
}

/* Layers of one stack; cross-attention blocks sit in the decoder's layers. */
static int stack_layers(const struct model_arch *a, unsigned bit) {
    return a->stack == MODEL_STACK_ENCODER_DECODER && bit != DELTA_STACK_ENCODER ? a->decoder_layers : a->layers;
}

static uint64_t stack_ffn(const struct model_arch *a, unsigned bit) {
    return (uint64_t)(a->stack == MODEL_STACK_ENCODER_DECODER && bit != DELTA_STACK_ENCODER ? a->decoder_intermediate
                                                                                          : a->intermediate);
}

static bool at_ffn(enum delta_at at) { return at == DELTA_AT_FFN || at == DELTA_AT_UP || at == DELTA_AT_DOWN; }

/* Input and output widths of a projection in one stack; the query and output
 * projections are H·hd wide (d unless config.json sets head_dim). */
static void proj_dims(const struct model_arch *a, unsigned bit, enum delta_at at, uint64_t *in, uint64_t *out) {
    uint64_t d = (uint64_t)a->hidden, kv = (uint64_t)a->kv_heads * (uint64_t)a->head_dim;
    uint64_t q = (uint64_t)a->heads * (uint64_t)a->head_dim;
    *in = d;
    *out = d;
    if (at == DELTA_AT_Q) *out = q;
    if (at == DELTA_AT_O) *in = q;
    if (at == DELTA_AT_K || at == DELTA_AT_V) *out = kv;
    if (at == DELTA_AT_UP) *out = stack_ffn(a, bit);
    if (at == DELTA_AT_DOWN) *in = stack_ffn(a, bit);
}

/* One attention block's weights and biases (q, k, v, o) and one FFN's
 * (SwiGLU has gate, up and down). */
static uint64_t attn_weights(const struct model_arch *a) {
    uint64_t d = (uint64_t)a->hidden, kv = (uint64_t)a->kv_heads * (uint64_t)a->head_dim;
    uint64_t q = (uint64_t)a->heads * (uint64_t)a->head_dim;
    return d * q + 2 * d * kv + q * d;
}

static uint64_t attn_biases(const struct model_arch *a) {
    uint64_t d = (uint64_t)a->hidden, kv = (uint64_t)a->kv_heads * (uint64_t)a->head_dim;
    uint64_t q = (uint64_t)a->heads * (uint64_t)a->head_dim;
    return (a->qkv_bias ? q + 2 * kv : 0) + (a->out_bias ? d : 0);
}

static uint64_t ffn_weights(const struct model_arch *a, uint64_t ffn) {
    return (a->act == MODEL_ACT_SWIGLU ? 3 : 2) * (uint64_t)a->hidden * ffn;
}

static uint64_t ffn_biases(const struct model_arch *a, uint64_t ffn) {
    return a->ffn_bias ? (a->act == MODEL_ACT_SWIGLU ? 2 : 1) * ffn + (uint64_t)a->hidden : 0;
}

/* A norm's parameters: LayerNorm γ and β, RMSNorm γ. */
static uint64_t norm_params(const struct model_arch *a) {
    return (a->norm == MODEL_NORM_LAYERNORM ? 2 : 1) * (uint64_t)a->hidden;
}

static uint64_t norm_biases(const struct model_arch *a) {
    return a->norm == MODEL_NORM_LAYERNORM ? (uint64_t)a->hidden : 0;
}

/* Biases of one layer of a stack: its attention blocks (cross-attention in
 * an encoder-decoder's decoder), its FFN and the norms' β. */
static uint64_t layer_biases(const struct model_arch *a, unsigned bit) {
    uint64_t blocks = bit == DELTA_STACK_DECODER && a->stack == MODEL_STACK_ENCODER_DECODER ? 2 : 1;
    return blocks * (attn_biases(a) + norm_biases(a)) + ffn_biases(a, stack_ffn(a, bit)) + norm_biases(a);
}

static uint64_t layer_params(const struct model_arch *a, unsigned bit) {
    uint64_t blocks = bit == DELTA_STACK_DECODER && a->stack == MODEL_STACK_ENCODER_DECODER ? 2 : 1;
    return blocks * (attn_weights(a) + norm_params(a)) + ffn_weights(a, stack_ffn(a, bit)) + norm_params(a) +
           layer_biases(a, bit) - blocks * norm_biases(a) - norm_biases(a);
}

static bool bert_pooler(const struct model_arch *a) { return a->family == MODEL_FAMILY_BERT; }

/* Parameters outside the layers that bitfit trains: the embedding LayerNorm's
 * β (BERT, RoBERTa, both of BART's), BERT's pooler bias, the final norms' β
 * (GPT-2's ln_f, mBART's two). */
static uint64_t outer_biases(const struct model_arch *a) {
    uint64_t d = (uint64_t)a->hidden, stacks = a->stack == MODEL_STACK_ENCODER_DECODER ? 2 : 1;
    return (a->embed_norm ? stacks * d : 0) + (bert_pooler(a) ? d : 0) + (a->final_norm ? stacks * norm_biases(a) : 0);
}

/* The pretrained model, Hugging Face's num_parameters(): tied tables once,
 * BART's final_logits_bias (a buffer) not at all. */
static uint64_t model_params(const struct model_arch *a) {
    uint64_t d = (uint64_t)a->hidden, v = (uint64_t)a->vocab_size;
    uint64_t stacks = a->stack == MODEL_STACK_ENCODER_DECODER ? 2 : 1;
    uint64_t n = v * d;
    if (a->positions == MODEL_POS_LEARNED)
        n += stacks * ((uint64_t)a->max_positions + (uint64_t)a->position_offset) * d;
    n += (uint64_t)a->type_vocab_size * d;
    if (a->embed_norm) n += stacks * 2 * d;
    if (a->final_norm) n += stacks * norm_params(a);
    if (bert_pooler(a)) n += d * d + d;
    if (a->stack != MODEL_STACK_ENCODER && !a->tie_word_embeddings) n += v * d;
    if (a->stack == MODEL_STACK_ENCODER_DECODER)
        return n + (uint64_t)a->layers * layer_params(a, DELTA_STACK_ENCODER) +
               (uint64_t)a->decoder_layers * layer_params(a, DELTA_STACK_DECODER);
    return n + (uint64_t)a->layers * layer_params(a, model_stacks(a));
}

/* The classification head an encoder trains with every preset (a decoder's
 * LM head is part of the model). */
static uint64_t head_params(const struct model_arch *a) {
    if (a->stack != MODEL_STACK_ENCODER) return 0;
    uint64_t d = (uint64_t)a->hidden, c = (uint64_t)a->num_labels;
    /* BERT: classifier on the pooled output; RoBERTa: dense -> tanh -> out_proj. */
    return (a->family == MODEL_FAMILY_ROBERTA ? d * d + d : 0) + d * c + c;
}

/* Counts one module in the blocks of one stack: n_blocks is the number of
 * (layer, block) places it occupies there. */
static void count_in_stack(const struct delta_module *m, const struct model_arch *a, unsigned bit, uint64_t blocks,
                           uint64_t *saved, uint64_t *prefix_out) {
    uint64_t d = (uint64_t)a->hidden, r = (uint64_t)m->size, kv = (uint64_t)a->kv_heads * (uint64_t)a->head_dim;
    switch (m->kind) {
    case DELTA_ADAPTER:
        if (m->per_head) {
            uint64_t hd = (uint64_t)a->head_dim;
            *saved += blocks * (uint64_t)a->heads * (2 * r * hd + r + hd);
        } else {
            *saved += blocks * (2 * r * d + r + d);
        }
        if (m->compose == DELTA_COMPOSE_GATED) *saved += blocks; /* one gate g per block */
        break;
    case DELTA_LORA: {
        uint64_t in, out;
        proj_dims(a, bit, m->at, &in, &out);
        *saved += blocks * r * (in + out);
        break;
    }
    case DELTA_PREFIX:
        *saved += blocks * 2 * r * kv;
        *prefix_out += blocks * 2 * kv;
        break;
    case DELTA_BITFIT:
        *saved += blocks * layer_biases(a, bit);
        break;
    case DELTA_FULL:
        break;
    }
}

/* Does module m go into the blocks of stack `bit`? Cross-attention blocks have
 * no FFN, and bitfit counts a decoder layer's cross-attention with it. */
static bool in_stack(const struct delta_module *m, const struct model_arch *a, unsigned bit) {
    if (!(m->stacks & model_stacks(a) & bit)) return false;
    return !(bit == DELTA_STACK_CROSS && (at_ffn(m->at) || m->kind == DELTA_BITFIT));
}

bool delta_module_in_stack(const struct delta_module *m, const struct model_arch *a, unsigned bit) {
    return in_stack(m, a, bit);
}

int delta_stack_layers(const struct model_arch *a, unsigned bit) { return stack_layers(a, bit); }

int delta_module_places(const struct delta_module *m, const struct model_arch *a) {
    int n = 0;
    for (unsigned bit = 1; bit <= DELTA_STACK_CROSS; bit <<= 1)
        if (in_stack(m, a, bit))
            for (int l = 0; l < stack_layers(a, bit); l++) n += delta_module_has_layer(m, l);
    return n;
}

static vp_status count_module(const struct delta_module *m, const struct model_arch *a, int index,
                              uint64_t *trained, uint64_t *saved) {
    const unsigned stacks = m->stacks & model_stacks(a);
    if (!stacks)
        return vp_fail(VP_ERROR_BAD_INPUT, "delta module %d (%s) is for the %s stack, which a %s "
                       "model does not have", index, delta_kind_name(m->kind),
                       m->stacks & DELTA_STACK_ENCODER ? "encoder"
                       : m->stacks & DELTA_STACK_DECODER ? "decoder" : "cross-attention", a->model_type);
    int most = 0;
    for (unsigned bit = 1; bit <= DELTA_STACK_CROSS; bit <<= 1)
        if (stacks & bit && stack_layers(a, bit) > most) most = stack_layers(a, bit);
    for (int l = 0; l < m->layer_count; l++)
        if (m->layers[l] >= most)
            return vp_fail(VP_ERROR_BAD_INPUT, "delta module %d (%s) names layer %d, but the model "
                           "has layers 0..%d", index, delta_kind_name(m->kind), m->layers[l], most - 1);
    *saved = 0;
    uint64_t prefix_out = 0;
    for (unsigned bit = 1; bit <= DELTA_STACK_CROSS; bit <<= 1) {
        if (!in_stack(m, a, bit)) continue;
        uint64_t blocks = 0;
        for (int l = 0; l < stack_layers(a, bit); l++) blocks += delta_module_has_layer(m, l);
        count_in_stack(m, a, bit, blocks, saved, &prefix_out);
    }
    if (m->kind == DELTA_BITFIT) *saved += outer_biases(a);
    if (m->kind == DELTA_FULL) *saved = model_params(a);
    *trained = *saved;
    /* Training-time prefix reparameterisation: embedding (l, d) -> Linear(d, R)
     * -> tanh -> Linear(R, blocks·2·kv), one MLP for all the module's blocks. */
    const uint64_t R = (uint64_t)m->reparam, d = (uint64_t)a->hidden, l = (uint64_t)m->size;
    if (m->kind == DELTA_PREFIX && R) *trained = l * d + d * R + R + R * prefix_out + prefix_out;
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
