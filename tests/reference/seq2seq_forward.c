/* Seq2seq reference: the forward pass (seq2seq.h), dropout when
 * refs_options.dropout.
 * Activations are kept in m->acts for seq2seq_backward.c. One attention
 * block function serves encoder self-attention, decoder self-attention and
 * cross-attention, one FFN block function both stacks; post-LN (BART) and
 * pre-LN (mBART) differ only in where the block's LayerNorm sits. The delta
 * modules are delta_ref_forward.c's, at the block's delta slot. */
#include "seq2seq.h"
#include "ref.h"

#include <assert.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Activation buffers
 * ------------------------------------------------------------------------ */

#define ACTS_DOUBLES(a, n) ref_arena_doubles(&(a)->owned, (size_t)(n))

void refs_acts_free(struct refs_acts *a) {
    ref_arena_free(&a->owned);
    *a = (struct refs_acts){0};
}

/* Nq query rows over Nk key rows, Lp prefix rows. */
static void alloc_attn_acts(struct refs *m, struct refs_attn_acts *aa, size_t Nq, size_t Nk, size_t Lp) {
    struct refs_acts *a = &m->acts;
    const size_t d = (size_t)m->arch.hidden;
    double **nq[] = {&aa->x, &aa->a_in, &aa->q, &aa->qh, &aa->atth, &aa->ctx, &aa->o, &aa->h, &aa->out};
    for (size_t k = 0; k < sizeof nq / sizeof nq[0]; k++) *nq[k] = ACTS_DOUBLES(a, Nq * d);
    double **nk[] = {&aa->k, &aa->v, &aa->kh, &aa->vh};
    for (size_t k = 0; k < sizeof nk / sizeof nk[0]; k++) *nk[k] = ACTS_DOUBLES(a, Nk * d);
    aa->norm_mean = ACTS_DOUBLES(a, Nq);
    aa->norm_rstd = ACTS_DOUBLES(a, Nq);
    if (Lp) {
        aa->prefix_k = ACTS_DOUBLES(a, Lp * d);
        aa->prefix_v = ACTS_DOUBLES(a, Lp * d);
    }
}

static void alloc_ffn_acts(struct refs *m, struct refs_ffn_acts *fa, size_t N, size_t I) {
    struct refs_acts *a = &m->acts;
    const size_t d = (size_t)m->arch.hidden;
    double **nd[] = {&fa->x, &fa->f_in, &fa->dn, &fa->h, &fa->out};
    for (size_t k = 0; k < sizeof nd / sizeof nd[0]; k++) *nd[k] = ACTS_DOUBLES(a, N * d);
    fa->norm_mean = ACTS_DOUBLES(a, N);
    fa->norm_rstd = ACTS_DOUBLES(a, N);
    fa->upre = ACTS_DOUBLES(a, N * I);
    fa->u = ACTS_DOUBLES(a, N * I);
}

static void alloc_stack_acts(struct refs *m, struct refs_stack_acts *sa, bool decoder, int B, int T, int S) {
    struct refs_acts *a = &m->acts;
    const struct refs_stack *st = decoder ? &m->w.dec : &m->w.enc;
    const size_t N = (size_t)B * T, d = (size_t)m->arch.hidden;
    const size_t I = (size_t)(decoder ? m->arch.decoder_intermediate : m->arch.intermediate);
    const unsigned stack = decoder ? DELTA_STACK_DECODER : DELTA_STACK_ENCODER;
    sa->T = T;
    sa->ids = ref_arena_alloc(&a->owned, N, sizeof(int32_t));
    sa->pos = ref_arena_alloc(&a->owned, N, sizeof(int32_t));
    sa->keep = ref_arena_alloc(&a->owned, N, 1);
    double **nd[] = {&sa->x0, &sa->x, &sa->out};
    for (size_t k = 0; k < sizeof nd / sizeof nd[0]; k++) *nd[k] = ACTS_DOUBLES(a, N * d);
    double **n1[] = {&sa->emb_mean, &sa->emb_rstd, &sa->final_mean, &sa->final_rstd};
    for (size_t k = 0; k < sizeof n1 / sizeof n1[0]; k++) *n1[k] = ACTS_DOUBLES(a, N);
    sa->layer = ref_arena_alloc(&a->owned, (size_t)st->layers, sizeof *sa->layer);
    for (int l = 0; l < st->layers; l++) {
        struct refs_layer_acts *la = &sa->layer[l];
        const int self = refs_block(m, stack, l);
        alloc_attn_acts(m, &la->self, N, N, (size_t)m->deltas.prefix_rows[self]);
        if (decoder)
            alloc_attn_acts(m, &la->cross, N, (size_t)B * S,
                            (size_t)m->deltas.prefix_rows[refs_block(m, DELTA_STACK_CROSS, l)]);
        alloc_ffn_acts(m, &la->ffn, N, I);
    }
}

void refs_ensure_acts(struct refs *m, int B, int S, int T) {
    struct refs_acts *a = &m->acts;
    if (a->B == B && a->S == S && a->T == T) return;
    refs_acts_free(a);
    a->B = B;
    a->S = S;
    a->T = T;
    alloc_stack_acts(m, &a->enc, false, B, S, S);
    alloc_stack_acts(m, &a->dec, true, B, T, S);
    a->targets = ref_arena_alloc(&a->owned, (size_t)B * T, sizeof(int32_t));
    a->logits = ACTS_DOUBLES(a, (size_t)B * T * m->arch.vocab_size);
    /* LoRA slots of a cross-attention block read B·S encoder rows. */
    ref_deltas_alloc_acts(&m->deltas, &a->owned, (size_t)B * (S > T ? S : T));
}

/* ------------------------------------------------------------------------
 * Blocks
 * ------------------------------------------------------------------------ */

double refs_dropout_p(const struct refs *m, double p) { return m->opt.dropout ? p : 0.0; }

struct ref_dropout_key refs_dropout_key(const struct refs *m, int block, int site) {
    return (struct ref_dropout_key){m->opt.dropout_seed, m->opt.dropout_step,
                                    ((uint32_t)(block + 1) << 8) | (uint32_t)site};
}

/* x = dropout(x) at a site. */
static void dropout(const struct refs *m, double *x, size_t n, double p, int block, int site) {
    const struct ref_dropout_key key = refs_dropout_key(m, block, site);
    if (refs_dropout_p(m, p) > 0.0) ref_dropout_forward(x, x, &key, p, n);
}

/* Block blk's attention config (dropout on the probabilities when on). */
static struct ref_attention_config attn_config(const struct refs *m, int blk, int Tq, int Tk, bool causal) {
    return (struct ref_attention_config){.B = m->acts.B, .H = m->arch.heads, .T = Tq, .S = Tk,
                                         .L = m->deltas.prefix_rows[blk], .D = m->arch.head_dim, .causal = causal,
                                         .dropout_p = refs_dropout_p(m, m->arch.attention_dropout),
                                         .dropout = refs_dropout_key(m, blk, REFS_SITE_ATTN_PROBS)};
}

static void layernorm(const struct refs *m, double *y, double *mean, double *rstd, const double *x,
                      const struct refm_tensor *w, const struct refm_tensor *b, int N) {
    ref_layernorm_forward(y, mean, rstd, x, w->data, b->data, N, m->arch.hidden, m->arch.norm_eps);
}

/* The attention block of seq2seq.h at delta block `blk`: Tq queries per
 * sequence over Tk keys, read from kv (B·Tk,d) or, when kv is NULL, from
 * a_in; key s of sequence b visible iff keep[b,s] (and s ≤ t when causal). */
static void attn_forward(struct refs *m, int blk, const struct refs_attn *w, struct refs_attn_acts *aa,
                         const double *kv, const uint8_t *keep, int Tq, int Tk, bool causal) {
    const int B = m->acts.B, H = m->arch.heads, hd = m->arch.head_dim, d = m->arch.hidden;
    const int Nq = B * Tq, Nk = B * Tk;
    struct ref_deltas *dl = &m->deltas;
    if (m->arch.pre_norm) layernorm(m, aa->a_in, aa->norm_mean, aa->norm_rstd, aa->x, w->norm_w, w->norm_b, Nq);
    else memcpy(aa->a_in, aa->x, (size_t)Nq * d * sizeof(double));
    if (!kv) kv = aa->a_in;
    refd_linear_forward(aa->q, aa->a_in, &w->q, Nq);
    ref_deltas_loras_forward(dl, blk, DELTA_AT_Q, aa->q, aa->a_in, Nq);
    refd_linear_forward(aa->k, kv, &w->k, Nk);
    ref_deltas_loras_forward(dl, blk, DELTA_AT_K, aa->k, kv, Nk);
    refd_linear_forward(aa->v, kv, &w->v, Nk);
    ref_deltas_loras_forward(dl, blk, DELTA_AT_V, aa->v, kv, Nk);
    ref_split_heads(aa->qh, aa->q, B, Tq, H, hd);
    ref_split_heads(aa->kh, aa->k, B, Tk, H, hd);
    ref_split_heads(aa->vh, aa->v, B, Tk, H, hd);
    const int Lp = dl->prefix_rows[blk];
    if (Lp) ref_deltas_gather_prefixes(dl, blk, aa->prefix_k, aa->prefix_v);
    const struct ref_attention_config cfg = attn_config(m, blk, Tq, Tk, causal);
    ref_attention_forward(aa->atth, NULL, aa->qh, aa->kh, aa->vh, aa->prefix_k, aa->prefix_v, keep, &cfg);
    ref_merge_heads(aa->ctx, aa->atth, B, Tq, H, hd);
    ref_deltas_adapters_forward(dl, blk, DELTA_AT_ATTN, DELTA_PARALLEL, aa->ctx, aa->a_in, Nq);
    refd_linear_forward(aa->o, aa->ctx, &w->o, Nq);
    ref_deltas_loras_forward(dl, blk, DELTA_AT_O, aa->o, aa->ctx, Nq);
    dropout(m, aa->o, (size_t)Nq * d, m->arch.hidden_dropout, blk, REFS_SITE_ATTN_OUT);
    ref_deltas_adapters_forward(dl, blk, DELTA_AT_ATTN, DELTA_SEQUENTIAL, aa->o, aa->o, Nq);
    ref_add_forward(aa->h, aa->x, aa->o, (size_t)Nq * d);
    if (m->arch.pre_norm) memcpy(aa->out, aa->h, (size_t)Nq * d * sizeof(double));
    else layernorm(m, aa->out, aa->norm_mean, aa->norm_rstd, aa->h, w->norm_w, w->norm_b, Nq);
}

void refs_act_forward(const struct refs *m, double *y, const double *x, size_t n) {
    if (m->arch.act == MODEL_ACT_RELU) ref_relu_forward(y, x, n);
    else if (m->arch.act == MODEL_ACT_GELU_TANH) ref_gelu_tanh_forward(y, x, n);
    else ref_gelu_forward(y, x, n);
}

/* The FFN block of seq2seq.h at delta block `blk`, N rows, width I. */
static void ffn_forward(struct refs *m, int blk, const struct refs_ffn *w, struct refs_ffn_acts *fa, int N, int I) {
    const int d = m->arch.hidden;
    struct ref_deltas *dl = &m->deltas;
    if (m->arch.pre_norm) layernorm(m, fa->f_in, fa->norm_mean, fa->norm_rstd, fa->x, w->norm_w, w->norm_b, N);
    else memcpy(fa->f_in, fa->x, (size_t)N * d * sizeof(double));
    refd_linear_forward(fa->upre, fa->f_in, &w->up, N);
    ref_deltas_loras_forward(dl, blk, DELTA_AT_UP, fa->upre, fa->f_in, N);
    refs_act_forward(m, fa->u, fa->upre, (size_t)N * I);
    dropout(m, fa->u, (size_t)N * I, m->arch.activation_dropout, blk, REFS_SITE_FFN_ACT);
    refd_linear_forward(fa->dn, fa->u, &w->down, N);
    ref_deltas_loras_forward(dl, blk, DELTA_AT_DOWN, fa->dn, fa->u, N);
    dropout(m, fa->dn, (size_t)N * d, m->arch.hidden_dropout, blk, REFS_SITE_FFN_OUT);
    ref_deltas_adapters_forward(dl, blk, DELTA_AT_FFN, DELTA_SEQUENTIAL, fa->dn, fa->dn, N);
    ref_deltas_adapters_forward(dl, blk, DELTA_AT_FFN, DELTA_PARALLEL, fa->dn, fa->f_in, N);
    ref_add_forward(fa->h, fa->x, fa->dn, (size_t)N * d);
    if (m->arch.pre_norm) memcpy(fa->out, fa->h, (size_t)N * d * sizeof(double));
    else layernorm(m, fa->out, fa->norm_mean, fa->norm_rstd, fa->h, w->norm_w, w->norm_b, N);
}

/* x0 = embed_scale·E[ids] + W_pos[pos]; x = dropout(LN_emb(x0)), keyed at
 * the stack's first block. */
static void embed_forward(struct refs *m, const struct refs_stack *st, struct refs_stack_acts *sa, int first) {
    const int N = m->acts.B * sa->T, d = m->arch.hidden;
    ref_embedding_forward(sa->x0, sa->ids, m->w.shared->data, N, m->arch.vocab_size, d);
    for (int n = 0; n < N; n++) {
        const double *p = st->pos->data + (size_t)sa->pos[n] * d;
        for (int c = 0; c < d; c++) sa->x0[(size_t)n * d + c] = m->arch.embed_scale * sa->x0[(size_t)n * d + c] + p[c];
    }
    layernorm(m, sa->x, sa->emb_mean, sa->emb_rstd, sa->x0, st->embnorm_w, st->embnorm_b, N);
    dropout(m, sa->x, (size_t)N * d, m->arch.hidden_dropout, first, REFS_SITE_EMB);
}

/* The stack's output: mBART's final LN of the last layer's, else a copy. */
static void final_forward(struct refs *m, const struct refs_stack *st, struct refs_stack_acts *sa) {
    const int N = m->acts.B * sa->T, d = m->arch.hidden;
    const double *last = sa->layer[st->layers - 1].ffn.out;
    if (st->final_w) layernorm(m, sa->out, sa->final_mean, sa->final_rstd, last, st->final_w, st->final_b, N);
    else memcpy(sa->out, last, (size_t)N * d * sizeof(double));
}

void refs_encoder_forward(struct refs *m) {
    struct refs_stack_acts *sa = &m->acts.enc;
    const struct refs_stack *st = &m->w.enc;
    const int S = sa->T, N = m->acts.B * S, d = m->arch.hidden;
    embed_forward(m, st, sa, refs_block(m, DELTA_STACK_ENCODER, 0));
    for (int l = 0; l < st->layers; l++) {
        struct refs_layer_acts *la = &sa->layer[l];
        const int blk = refs_block(m, DELTA_STACK_ENCODER, l);
        memcpy(la->self.x, l ? sa->layer[l - 1].ffn.out : sa->x, (size_t)N * d * sizeof(double));
        attn_forward(m, blk, &st->layer[l].self, &la->self, NULL, sa->keep, S, S, false);
        memcpy(la->ffn.x, la->self.out, (size_t)N * d * sizeof(double));
        ffn_forward(m, blk, &st->layer[l].ffn, &la->ffn, N, m->arch.intermediate);
    }
    final_forward(m, st, sa);
}

void refs_decoder_forward(struct refs *m, const double *enc_out, const uint8_t *enc_keep) {
    struct refs_stack_acts *sa = &m->acts.dec;
    const struct refs_stack *st = &m->w.dec;
    const int T = sa->T, S = m->acts.S, N = m->acts.B * T, d = m->arch.hidden, V = m->arch.vocab_size;
    embed_forward(m, st, sa, refs_block(m, DELTA_STACK_DECODER, 0));
    for (int l = 0; l < st->layers; l++) {
        struct refs_layer_acts *la = &sa->layer[l];
        memcpy(la->self.x, l ? sa->layer[l - 1].ffn.out : sa->x, (size_t)N * d * sizeof(double));
        attn_forward(m, refs_block(m, DELTA_STACK_DECODER, l), &st->layer[l].self, &la->self, NULL, sa->keep, T, T,
                     true);
        memcpy(la->cross.x, la->self.out, (size_t)N * d * sizeof(double));
        attn_forward(m, refs_block(m, DELTA_STACK_CROSS, l), &st->layer[l].cross, &la->cross, enc_out, enc_keep, T, S,
                     false);
        memcpy(la->ffn.x, la->cross.out, (size_t)N * d * sizeof(double));
        ffn_forward(m, refs_block(m, DELTA_STACK_DECODER, l), &st->layer[l].ffn, &la->ffn, N,
                    m->arch.decoder_intermediate);
    }
    final_forward(m, st, sa);
    ref_matmul_forward(m->acts.logits, sa->out, m->w.head->data, m->w.logits_bias->data, N, d, V);
}

/* ------------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------------ */

/* ids, keep (mask or all 1) and positions t + offset of one stack. */
static void stack_inputs(const struct refs *m, struct refs_stack_acts *sa, const int32_t *ids, const uint8_t *mask) {
    const int B = m->acts.B, T = sa->T;
    memcpy(sa->ids, ids, (size_t)B * T * sizeof(int32_t));
    for (int n = 0; n < B * T; n++) sa->keep[n] = mask ? mask[n] != 0 : 1;
    ref_positions_offset(sa->pos, B, T, m->arch.position_offset);
}

double refs_forward(struct refs *m, double *logits, const struct refs_batch *batch) {
    const int B = batch->B, S = batch->S, T = batch->T, N = B * T, V = m->arch.vocab_size;
    assert(B > 0 && S > 0 && T > 0 && S <= m->arch.max_positions && T <= m->arch.max_positions);
    refs_ensure_acts(m, B, S, T);
    struct refs_acts *a = &m->acts;
    stack_inputs(m, &a->enc, batch->ids, batch->mask);
    stack_inputs(m, &a->dec, batch->dec_ids, batch->dec_mask);
    for (int n = 0; n < N; n++) a->targets[n] = batch->labels ? batch->labels[n] : REFM_IGNORE_INDEX;

    /* the adapters' dropout, as the model's (refs_backward reuses it) */
    m->deltas.dropout = m->opt.dropout;
    m->deltas.hidden_p = m->arch.hidden_dropout;
    m->deltas.dropout_seed = m->opt.dropout_seed;
    m->deltas.dropout_step = m->opt.dropout_step;
    ref_deltas_reparams_forward(&m->deltas);
    refs_encoder_forward(m);
    refs_decoder_forward(m, a->enc.out, a->enc.keep);
    if (logits) memcpy(logits, a->logits, (size_t)N * V * sizeof(double));
    a->loss = ref_cross_entropy_forward(NULL, a->logits, a->targets, N, V, REFM_IGNORE_INDEX, m->opt.label_smoothing);
    return a->loss;
}
