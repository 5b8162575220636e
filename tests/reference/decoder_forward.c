/* Decoder reference: the forward pass (decoder.h), with the model's and the
 * adapters' dropout when refd_options.dropout.
 * Activations are kept in m->acts for decoder_backward.c. The blocks differ
 * from model_forward.c's (pre-LN, causal GQA attention with RoPE, Conv1D
 * projections, the LM head); the delta modules they call are shared
 * (delta_ref_forward.c). */
#include "decoder.h"
#include "ref.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Activation buffers
 * ------------------------------------------------------------------------ */

#define ACTS_DOUBLES(a, n) ref_arena_doubles(&(a)->owned, (size_t)(n))

void refd_acts_free(struct refd_acts *a) {
    ref_arena_free(&a->owned);
    *a = (struct refd_acts){0};
}

static void alloc_layer_acts(struct refd *m, struct refd_layer_acts *la, int l, size_t N) {
    struct refd_acts *a = &m->acts;
    const size_t d = (size_t)m->arch.hidden, I = (size_t)m->arch.intermediate, hd = (size_t)m->arch.head_dim;
    const size_t qd = (size_t)m->arch.heads * hd, kvd = (size_t)m->arch.kv_heads * hd;
    double **nd[] = {&la->x, &la->a_in, &la->o, &la->h, &la->f_in, &la->dn, &la->out};
    for (size_t k = 0; k < sizeof nd / sizeof nd[0]; k++) *nd[k] = ACTS_DOUBLES(a, N * d);
    double **nq[] = {&la->q, &la->qh, &la->kh, &la->vh, &la->atth, &la->ctx};
    for (size_t k = 0; k < sizeof nq / sizeof nq[0]; k++) *nq[k] = ACTS_DOUBLES(a, N * qd);
    la->k = ACTS_DOUBLES(a, N * kvd);
    la->v = ACTS_DOUBLES(a, N * kvd);
    double **n1[] = {&la->norm1_mean, &la->norm1_rstd, &la->norm2_mean, &la->norm2_rstd};
    for (size_t k = 0; k < sizeof n1 / sizeof n1[0]; k++) *n1[k] = ACTS_DOUBLES(a, N);
    la->gpre = ACTS_DOUBLES(a, N * I);
    la->upre = ACTS_DOUBLES(a, N * I);
    la->u = ACTS_DOUBLES(a, N * I);
    const size_t Lp = (size_t)m->deltas.prefix_rows[l];
    if (Lp) {
        la->prefix_k = ACTS_DOUBLES(a, (size_t)m->arch.heads * Lp * hd);
        la->prefix_v = ACTS_DOUBLES(a, (size_t)m->arch.heads * Lp * hd);
    }
}

/* Sizes every activation for (B,T); a no-op when the shape is unchanged. */
static void ensure_acts(struct refd *m, int B, int T) {
    struct refd_acts *a = &m->acts;
    if (a->B == B && a->T == T) return;
    refd_acts_free(a);
    a->B = B;
    a->T = T;
    const size_t N = (size_t)B * T, d = (size_t)m->arch.hidden;
    a->ids = ref_arena_alloc(&a->owned, N, sizeof(int32_t));
    a->pos = ref_arena_alloc(&a->owned, (size_t)T, sizeof(int32_t));
    a->targets = ref_arena_alloc(&a->owned, N, sizeof(int32_t));
    a->keep = ref_arena_alloc(&a->owned, N, 1);
    a->x0 = ACTS_DOUBLES(a, N * d);
    a->layers = ref_arena_alloc(&a->owned, (size_t)m->arch.layers, sizeof *a->layers);
    for (int l = 0; l < m->arch.layers; l++) alloc_layer_acts(m, &a->layers[l], l, N);
    ref_deltas_alloc_acts(&m->deltas, &a->owned, N);
    a->normf_mean = ACTS_DOUBLES(a, N);
    a->normf_rstd = ACTS_DOUBLES(a, N);
    a->xf = ACTS_DOUBLES(a, N * d);
    a->logits = ACTS_DOUBLES(a, N * (size_t)m->arch.vocab_size);
}

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static void norm_forward(const struct refd *m, double *y, double *mean, double *rstd, const double *x,
                         const struct refm_tensor *w, const struct refm_tensor *b, int N) {
    const int d = m->arch.hidden;
    if (m->arch.norm == MODEL_NORM_RMSNORM) ref_rmsnorm_forward(y, rstd, x, w->data, N, d, m->arch.norm_eps);
    else ref_layernorm_forward(y, mean, rstd, x, w->data, b->data, N, d, m->arch.norm_eps);
}

/* HF repeat_kv: dst (B,H,T,D) head h = src (B,G,T,D) head h / (H/G). */
static void repeat_kv(double *dst, const double *src, int B, int G, int H, int T, int D) {
    const size_t head = (size_t)T * D;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            memcpy(dst + ((size_t)b * H + h) * head, src + ((size_t)b * G + h / (H / G)) * head,
                   head * sizeof(double));
}

/* ------------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------------ */

double refd_dropout_p(const struct refd *m, double p) { return m->opt.dropout ? p : 0.0; }

struct ref_dropout_key refd_dropout_key(const struct refd *m, int layer, int site) {
    return (struct ref_dropout_key){m->opt.dropout_seed, m->opt.dropout_step, ((uint32_t)(layer + 1) << 8) | (uint32_t)site};
}

struct ref_attention_config refd_attention_config(const struct refd *m, int l) {
    return (struct ref_attention_config){
        .B = m->acts.B, .H = m->arch.heads, .T = m->acts.T, .S = m->acts.T, .L = m->deltas.prefix_rows[l],
        .D = m->arch.head_dim, .causal = true, .scale = 0.0,
        .dropout_p = refd_dropout_p(m, m->arch.attention_dropout),
        .dropout = refd_dropout_key(m, l, REFD_SITE_ATTN_PROBS),
    };
}

/* x = dropout(x) at a site. */
static void dropout(const struct refd *m, double *x, size_t n, double p, int layer, int site) {
    const struct ref_dropout_key key = refd_dropout_key(m, layer, site);
    if (refd_dropout_p(m, p) > 0.0) ref_dropout_forward(x, x, &key, p, n);
}

/* (N,G·hd) → (B,H,T,hd): split heads, RoPE at positions P + t (LLaMA), then
 * repeat per group. tmp holds (B,G,T,hd) twice. */
static void heads_forward(const struct refd *m, double *dst, const double *src, int G, bool rotate, double *tmp) {
    const struct refd_acts *a = &m->acts;
    const int B = a->B, T = a->T, H = m->arch.heads, hd = m->arch.head_dim;
    const size_t n = (size_t)B * G * T * hd;
    ref_split_heads(tmp, src, B, T, G, hd);
    if (rotate) ref_rope_forward(tmp + n, tmp, a->pos, B, G, T, hd, 0, m->arch.rope_theta);
    else memcpy(tmp + n, tmp, n * sizeof(double));
    repeat_kv(dst, tmp + n, B, G, H, T, hd);
}

/* a_in = norm_1(x); q/k/v (+LoRA); RoPE; attention with the layer's
 * prefixes; parallel attention adapters on ctx; o (+LoRA); sequential
 * attention adapters; h = x + o. */
static void attention_block_forward(struct refd *m, int l, int N) {
    struct refd_layer_acts *la = &m->acts.layers[l];
    const struct refd_layer *w = &m->w.layers[l];
    const int B = m->acts.B, T = m->acts.T, H = m->arch.heads, G = m->arch.kv_heads, hd = m->arch.head_dim;
    const bool rotate = m->arch.positions == MODEL_POS_ROTARY;
    norm_forward(m, la->a_in, la->norm1_mean, la->norm1_rstd, la->x, w->norm1_w, w->norm1_b, N);
    refd_linear_forward(la->q, la->a_in, &w->q, N);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_Q, la->q, la->a_in, N);
    refd_linear_forward(la->k, la->a_in, &w->k, N);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_K, la->k, la->a_in, N);
    refd_linear_forward(la->v, la->a_in, &w->v, N);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_V, la->v, la->a_in, N);
    double *tmp = malloc(2 * (size_t)N * H * hd * sizeof(double));
    assert(tmp);
    heads_forward(m, la->qh, la->q, H, rotate, tmp);
    heads_forward(m, la->kh, la->k, G, rotate, tmp);
    heads_forward(m, la->vh, la->v, G, false, tmp);
    free(tmp);
    if (m->deltas.prefix_rows[l]) ref_deltas_gather_prefixes(&m->deltas, l, la->prefix_k, la->prefix_v);
    const struct ref_attention_config cfg = refd_attention_config(m, l);
    ref_attention_forward(la->atth, NULL, la->qh, la->kh, la->vh, la->prefix_k, la->prefix_v, m->acts.keep, &cfg);
    ref_merge_heads(la->ctx, la->atth, B, T, H, hd);
    ref_deltas_adapters_forward(&m->deltas, l, DELTA_AT_ATTN, DELTA_PARALLEL, la->ctx, la->a_in, N);
    refd_linear_forward(la->o, la->ctx, &w->o, N);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_O, la->o, la->ctx, N);
    dropout(m, la->o, (size_t)N * m->arch.hidden, m->arch.hidden_dropout, l, REFD_SITE_ATTN_OUT);
    ref_deltas_adapters_forward(&m->deltas, l, DELTA_AT_ATTN, DELTA_SEQUENTIAL, la->o, la->o, N);
    ref_add_forward(la->h, la->x, la->o, (size_t)N * m->arch.hidden);
}

/* f_in = norm_2(h); GPT-2 u = gelu_tanh(up), LLaMA u = silu(gate) ⊙ up;
 * dn = down(u) (+LoRA); sequential then parallel FFN adapters; out = h + dn. */
static void ffn_block_forward(struct refd *m, int l, int N) {
    struct refd_layer_acts *la = &m->acts.layers[l];
    const struct refd_layer *w = &m->w.layers[l];
    const size_t NI = (size_t)N * m->arch.intermediate;
    norm_forward(m, la->f_in, la->norm2_mean, la->norm2_rstd, la->h, w->norm2_w, w->norm2_b, N);
    refd_linear_forward(la->upre, la->f_in, &w->up, N);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_UP, la->upre, la->f_in, N);
    if (m->arch.act == MODEL_ACT_SWIGLU) {
        refd_linear_forward(la->gpre, la->f_in, &w->gate, N);
        ref_swiglu_forward(la->u, la->gpre, la->upre, NI);
    } else {
        ref_gelu_tanh_forward(la->u, la->upre, NI);
    }
    refd_linear_forward(la->dn, la->u, &w->down, N);
    ref_deltas_loras_forward(&m->deltas, l, DELTA_AT_DOWN, la->dn, la->u, N);
    dropout(m, la->dn, (size_t)N * m->arch.hidden, m->arch.hidden_dropout, l, REFD_SITE_FFN_OUT);
    ref_deltas_adapters_forward(&m->deltas, l, DELTA_AT_FFN, DELTA_SEQUENTIAL, la->dn, la->dn, N);
    ref_deltas_adapters_forward(&m->deltas, l, DELTA_AT_FFN, DELTA_PARALLEL, la->dn, la->f_in, N);
    ref_add_forward(la->out, la->h, la->dn, (size_t)N * m->arch.hidden);
}

/* x0 = dropout(E[ids] (+ W_pos[P + t])). */
static void embeddings_forward(struct refd *m, int N) {
    struct refd_acts *a = &m->acts;
    const int d = m->arch.hidden;
    ref_embedding_forward(a->x0, a->ids, m->w.embed->data, N, m->arch.vocab_size, d);
    for (int n = 0; m->w.pos && n < N; n++) {
        const double *p = m->w.pos->data + (size_t)a->pos[n % a->T] * d;
        for (int c = 0; c < d; c++) a->x0[(size_t)n * d + c] += p[c];
    }
    dropout(m, a->x0, (size_t)N * d, m->arch.embedding_dropout, -1, REFD_SITE_EMB);
}

/* targets[b,t] = labels[b,t+1] (−100 at t = T−1), labels from the batch or
 * ids where mask and loss_mask are 1. */
static void make_targets(struct refd *m, const struct refd_batch *batch) {
    const int B = batch->B, T = batch->T;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t y = REFM_IGNORE_INDEX;
            if (t + 1 < T) {
                const size_t n = (size_t)b * T + t + 1;
                if (batch->labels) y = batch->labels[n];
                else if ((!batch->mask || batch->mask[n]) && (!batch->loss_mask || batch->loss_mask[n]))
                    y = batch->ids[n];
            }
            m->acts.targets[(size_t)b * T + t] = y;
        }
}

double refd_forward(struct refd *m, double *logits, const struct refd_batch *batch) {
    const int B = batch->B, T = batch->T, N = B * T, V = m->arch.vocab_size, d = m->arch.hidden;
    const int P = refd_position_offset(m);
    assert(B > 0 && T > 0);
    assert(!m->w.pos || P + T <= m->arch.max_positions);
    assert(m->arch.sliding_window == 0 || P + T <= m->arch.sliding_window);
    ensure_acts(m, B, T);
    struct refd_acts *a = &m->acts;
    memcpy(a->ids, batch->ids, (size_t)N * sizeof(int32_t));
    for (int n = 0; n < N; n++) a->keep[n] = batch->mask ? batch->mask[n] != 0 : 1;
    for (int t = 0; t < T; t++) a->pos[t] = P + t;
    make_targets(m, batch);

    /* the adapters' dropout, as the model's (refd_backward reuses it) */
    m->deltas.dropout = m->opt.dropout;
    m->deltas.hidden_p = m->arch.hidden_dropout;
    m->deltas.dropout_seed = m->opt.dropout_seed;
    m->deltas.dropout_step = m->opt.dropout_step;
    ref_deltas_reparams_forward(&m->deltas);
    embeddings_forward(m, N);
    for (int l = 0; l < m->arch.layers; l++) {
        struct refd_layer_acts *la = &a->layers[l];
        memcpy(la->x, l ? a->layers[l - 1].out : a->x0, (size_t)N * d * sizeof(double));
        attention_block_forward(m, l, N);
        ffn_block_forward(m, l, N);
    }
    norm_forward(m, a->xf, a->normf_mean, a->normf_rstd, a->layers[m->arch.layers - 1].out, m->w.normf_w,
                 m->w.normf_b, N);
    ref_matmul_forward(a->logits, a->xf, m->w.head->data, NULL, N, d, V);
    if (logits) memcpy(logits, a->logits, (size_t)N * V * sizeof(double));
    a->loss = ref_cross_entropy_forward(NULL, a->logits, a->targets, N, V, REFM_IGNORE_INDEX,
                                        m->opt.label_smoothing);
    return a->loss;
}
