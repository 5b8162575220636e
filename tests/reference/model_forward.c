/* Whole-model reference: the forward pass (runtime/model/README.md), every
 * dropout at p = 0. Activations are kept in m->acts for model_backward.c. */
#include "model.h"
#include "ref.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Activation buffers
 * ------------------------------------------------------------------------ */

#define ACTS_DOUBLES(a, n) ref_arena_doubles(&(a)->owned, (size_t)(n))

void refm_acts_free(struct refm_acts *a) {
    ref_arena_free(&a->owned);
    *a = (struct refm_acts){0};
}

static void alloc_layer_acts(struct refm *m, struct refm_layer_acts *la, int l, size_t N) {
    struct refm_acts *a = &m->acts;
    const size_t d = (size_t)m->arch.hidden, I = (size_t)m->arch.intermediate;
    double **nd[] = {&la->x, &la->q, &la->k, &la->v, &la->qh, &la->kh, &la->vh, &la->atth, &la->ctx,
                     &la->o, &la->res1, &la->h, &la->dn, &la->res2, &la->out};
    for (size_t k = 0; k < sizeof nd / sizeof nd[0]; k++) *nd[k] = ACTS_DOUBLES(a, N * d);
    double **n1[] = {&la->ln1_mean, &la->ln1_rstd, &la->ln2_mean, &la->ln2_rstd};
    for (size_t k = 0; k < sizeof n1 / sizeof n1[0]; k++) *n1[k] = ACTS_DOUBLES(a, N);
    la->upre = ACTS_DOUBLES(a, N * I);
    la->u = ACTS_DOUBLES(a, N * I);
    const size_t Lp = (size_t)m->deltas.prefix_rows[l];
    if (Lp) {
        la->prefix_k = ACTS_DOUBLES(a, Lp * d);
        la->prefix_v = ACTS_DOUBLES(a, Lp * d);
    }
}

/* Sizes every activation for (B,T); a no-op when the shape is unchanged. */
static void ensure_acts(struct refm *m, int B, int T) {
    struct refm_acts *a = &m->acts;
    if (a->B == B && a->T == T) return;
    refm_acts_free(a);
    a->B = B;
    a->T = T;
    const size_t N = (size_t)B * T, d = (size_t)m->arch.hidden;
    a->ids = ref_arena_alloc(&a->owned, N, sizeof(int32_t));
    a->pos = ref_arena_alloc(&a->owned, N, sizeof(int32_t));
    a->types = ref_arena_alloc(&a->owned, N, sizeof(int32_t));
    a->labels = ref_arena_alloc(&a->owned, (size_t)B, sizeof(int32_t));
    a->keep = ref_arena_alloc(&a->owned, N, 1);
    a->emb = ACTS_DOUBLES(a, N * d);
    a->emb_mean = ACTS_DOUBLES(a, N);
    a->emb_rstd = ACTS_DOUBLES(a, N);
    a->x0 = ACTS_DOUBLES(a, N * d);
    a->layers = ref_arena_alloc(&a->owned, (size_t)m->arch.layers, sizeof *a->layers);
    for (int l = 0; l < m->arch.layers; l++) alloc_layer_acts(m, &a->layers[l], l, N);
    ref_deltas_alloc_acts(&m->deltas, &a->owned, N);
    a->cls = ACTS_DOUBLES(a, (size_t)B * d);
    a->pool_pre = ACTS_DOUBLES(a, (size_t)B * d);
    a->pool = ACTS_DOUBLES(a, (size_t)B * d);
    a->logits = ACTS_DOUBLES(a, (size_t)B * m->arch.num_labels);
}

static void model_act_forward(enum model_act act, double *y, const double *x, size_t n) {
    switch (act) {
    case MODEL_ACT_GELU: ref_gelu_forward(y, x, n); return;
    case MODEL_ACT_GELU_TANH: ref_gelu_tanh_forward(y, x, n); return;
    case MODEL_ACT_RELU: ref_relu_forward(y, x, n); return;
    case MODEL_ACT_SILU: ref_silu_forward(y, x, n); return;
    case MODEL_ACT_SWIGLU: break; /* rejected by refm_create */
    }
    assert(!"unsupported activation");
}

/* ------------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------------ */

static void embeddings_forward(struct refm *m, int N) {
    struct refm_acts *a = &m->acts;
    const struct model_arch *ar = &m->arch;
    const int d = ar->hidden;
    if (ar->roberta_positions) ref_positions_roberta(a->pos, a->ids, a->B, a->T, ar->pad_token_id, 0);
    else ref_positions_offset(a->pos, a->B, a->T, 0);
    double *tmp = malloc((size_t)N * d * sizeof(double));
    assert(tmp);
    ref_embedding_forward(a->emb, a->ids, m->w.word->data, N, ar->vocab_size, d);
    ref_embedding_forward(tmp, a->pos, m->w.pos->data, N, ar->max_positions, d);
    ref_add_forward(a->emb, a->emb, tmp, (size_t)N * d);
    if (m->w.type) {
        ref_embedding_forward(tmp, a->types, m->w.type->data, N, ar->type_vocab_size, d);
        ref_add_forward(a->emb, a->emb, tmp, (size_t)N * d);
    }
    free(tmp);
    ref_layernorm_forward(a->x0, a->emb_mean, a->emb_rstd, a->emb, m->w.ln_emb_w->data, m->w.ln_emb_b->data,
                          N, d, ar->norm_eps);
}

static struct ref_attention_config attention_config(const struct refm *m, int l) {
    return (struct ref_attention_config){
        .B = m->acts.B, .H = m->arch.heads, .T = m->acts.T, .S = m->acts.T,
        .L = m->deltas.prefix_rows[l], .D = m->arch.head_dim,
        .causal = false, .scale = 0.0, .dropout_p = 0.0, /* dropout off: see model.h */
    };
}

/* Attention block: q/k/v (+LoRA), attention with the layer's prefixes,
 * parallel attention adapters on ctx, output projection (+LoRA), sequential
 * attention adapters, h = LayerNorm_attn(x + o). */
static void attention_block_forward(struct refm *m, int l, int N) {
    struct refm_layer_acts *la = &m->acts.layers[l];
    const struct refm_layer *w = &m->w.layers[l];
    const int B = m->acts.B, T = m->acts.T, d = m->arch.hidden, H = m->arch.heads, hd = m->arch.head_dim;
    ref_matmul_forward(la->q, la->x, w->wq->data, w->bq->data, N, d, d);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_Q, la->q, la->x, N);
    ref_matmul_forward(la->k, la->x, w->wk->data, w->bk->data, N, d, d);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_K, la->k, la->x, N);
    ref_matmul_forward(la->v, la->x, w->wv->data, w->bv->data, N, d, d);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_V, la->v, la->x, N);
    ref_split_heads(la->qh, la->q, B, T, H, hd);
    ref_split_heads(la->kh, la->k, B, T, H, hd);
    ref_split_heads(la->vh, la->v, B, T, H, hd);
    if (m->deltas.prefix_rows[l]) ref_deltas_gather_prefixes(&m->deltas, l, la->prefix_k, la->prefix_v);
    const struct ref_attention_config cfg = attention_config(m, l);
    ref_attention_forward(la->atth, NULL, la->qh, la->kh, la->vh, la->prefix_k, la->prefix_v, m->acts.keep,
                          &cfg);
    ref_merge_heads(la->ctx, la->atth, B, T, H, hd);
    ref_deltas_adapters_forward(&m->deltas, l, DELTA_AT_ATTN, DELTA_PARALLEL, la->ctx, la->x, N);
    ref_matmul_forward(la->o, la->ctx, w->wo->data, w->bo->data, N, d, d);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_O, la->o, la->ctx, N);
    ref_deltas_adapters_forward(&m->deltas, l, DELTA_AT_ATTN, DELTA_SEQUENTIAL, la->o, la->o, N);
    ref_add_forward(la->res1, la->x, la->o, (size_t)N * d);
    ref_layernorm_forward(la->h, la->ln1_mean, la->ln1_rstd, la->res1, w->ln1_w->data, w->ln1_b->data, N, d,
                          m->arch.norm_eps);
}

/* FFN block: u = act(h·W_upᵀ + b_up (+LoRA)), dn = u·W_downᵀ + b_down
 * (+LoRA), sequential then parallel FFN adapters, out = LayerNorm_out(h + dn). */
static void ffn_block_forward(struct refm *m, int l, int N) {
    struct refm_layer_acts *la = &m->acts.layers[l];
    const struct refm_layer *w = &m->w.layers[l];
    const int d = m->arch.hidden, I = m->arch.intermediate;
    ref_matmul_forward(la->upre, la->h, w->wup->data, w->bup->data, N, d, I);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_UP, la->upre, la->h, N);
    model_act_forward(m->arch.act, la->u, la->upre, (size_t)N * I);
    ref_matmul_forward(la->dn, la->u, w->wdown->data, w->bdown->data, N, I, d);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_DOWN, la->dn, la->u, N);
    ref_deltas_adapters_forward(&m->deltas, l, DELTA_AT_FFN, DELTA_SEQUENTIAL, la->dn, la->dn, N);
    ref_deltas_adapters_forward(&m->deltas, l, DELTA_AT_FFN, DELTA_PARALLEL, la->dn, la->h, N);
    ref_add_forward(la->res2, la->h, la->dn, (size_t)N * d);
    ref_layernorm_forward(la->out, la->ln2_mean, la->ln2_rstd, la->res2, w->ln2_w->data, w->ln2_b->data, N, d,
                          m->arch.norm_eps);
}

/* BERT: logits = tanh(x_L[:,0]·W_poolᵀ + b_pool)·W_clsᵀ + b_cls; RoBERTa the
 * same shape with classifier.dense and classifier.out_proj. */
static void head_forward(struct refm *m) {
    struct refm_acts *a = &m->acts;
    const int B = a->B, T = a->T, d = m->arch.hidden, C = m->arch.num_labels;
    const double *xL = a->layers[m->arch.layers - 1].out;
    for (int b = 0; b < B; b++) memcpy(a->cls + (size_t)b * d, xL + (size_t)b * T * d, (size_t)d * sizeof(double));
    const struct refm_tensor *w1 = m->w.pool_w ? m->w.pool_w : m->w.dense_w;
    const struct refm_tensor *b1 = m->w.pool_w ? m->w.pool_b : m->w.dense_b;
    ref_matmul_forward(a->pool_pre, a->cls, w1->data, b1->data, B, d, d);
    ref_tanh_forward(a->pool, a->pool_pre, (size_t)B * d);
    ref_matmul_forward(a->logits, a->pool, m->w.cls_w->data, m->w.cls_b->data, B, d, C);
}

double refm_forward(struct refm *m, double *logits, const struct refm_batch *batch) {
    const int B = batch->B, T = batch->T, N = B * T;
    assert(B > 0 && T > 0);
    ensure_acts(m, B, T);
    struct refm_acts *a = &m->acts;
    memcpy(a->ids, batch->ids, (size_t)N * sizeof(int32_t));
    for (int n = 0; n < N; n++) {
        a->types[n] = batch->type_ids ? batch->type_ids[n] : 0;
        a->keep[n] = batch->mask ? batch->mask[n] != 0 : 1;
    }
    a->has_labels = batch->labels != NULL;
    if (a->has_labels) memcpy(a->labels, batch->labels, (size_t)B * sizeof(int32_t));

    ref_deltas_reparams_forward(&m->deltas);
    embeddings_forward(m, N);
    for (int l = 0; l < m->arch.layers; l++) {
        struct refm_layer_acts *la = &a->layers[l];
        memcpy(la->x, l ? a->layers[l - 1].out : a->x0, (size_t)N * m->arch.hidden * sizeof(double));
        attention_block_forward(m, l, N);
        ffn_block_forward(m, l, N);
    }
    head_forward(m);
    if (logits) memcpy(logits, a->logits, (size_t)B * m->arch.num_labels * sizeof(double));
    a->loss = a->has_labels ? ref_cross_entropy_forward(NULL, a->logits, a->labels, B, m->arch.num_labels,
                                                         REFM_IGNORE_INDEX, m->opt.label_smoothing)
                            : 0.0;
    return a->loss;
}

const double *refm_hidden(const struct refm *m, int layer) {
    if (m->acts.B == 0 || layer < -1 || layer >= m->arch.layers) return NULL;
    return layer < 0 ? m->acts.x0 : m->acts.layers[layer].out;
}
