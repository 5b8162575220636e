/* Seq2seq reference: the backward pass, the forward's list of calls
 * reversed, from the activations seq2seq_forward.c kept. Frozen tensors
 * have grad == NULL, which the op references read as "not wanted"; input
 * gradients flow through everything. Parameter gradients accumulate (+=),
 * activation gradients are overwritten — except the encoder output's, which
 * every cross-attention block adds into. */
#include "seq2seq.h"
#include "ref.h"

#include <assert.h>
#include <string.h>

/* dx = LN'(dy) (overwrite); dγ, dβ += when trainable. */
static void layernorm_backward(const struct refs *m, double *dx, const double *dy, const double *x, const double *mean,
                               const double *rstd, const struct refm_tensor *w, const struct refm_tensor *b, int N) {
    ref_layernorm_backward(dx, w->grad, b->grad, dy, x, mean, rstd, w->data, N, m->arch.hidden);
}

static void act_backward(const struct refs *m, double *dx, const double *dy, const double *x, size_t n) {
    if (m->arch.act == MODEL_ACT_RELU) ref_relu_backward(dx, dy, x, n);
    else if (m->arch.act == MODEL_ACT_GELU_TANH) ref_gelu_tanh_backward(dx, dy, x, n);
    else ref_gelu_backward(dx, dy, x, n);
}

/* dx = dropout'(dx) in place at a site (the forward's mask). */
static void dropout_backward(const struct refs *m, double *dx, size_t n, double p, int block, int site) {
    const struct ref_dropout_key key = refs_dropout_key(m, block, site);
    if (refs_dropout_p(m, p) > 0.0) ref_dropout_backward(dx, dx, &key, p, n);
}

/* ------------------------------------------------------------------------
 * Blocks
 * ------------------------------------------------------------------------ */

/* A block's input gradient from its residual's dh and its sublayer input's
 * ds: dx = dh + ds (post-LN: the sublayer reads x) or dh + LN'(ds) (pre-LN:
 * it reads LN(x); the LN's γ, β grads +=). tmp (N,d) is scratch. */
static void input_backward(const struct refs *m, double *dx, const double *dh, const double *ds, const double *x,
                           const double *mean, const double *rstd, const struct refm_tensor *w,
                           const struct refm_tensor *b, double *tmp, int N) {
    const size_t Nd = (size_t)N * m->arch.hidden;
    if (m->arch.pre_norm) layernorm_backward(m, tmp, ds, x, mean, rstd, w, b, N);
    else memcpy(tmp, ds, Nd * sizeof(double));
    for (size_t i = 0; i < Nd; i++) dx[i] = dh[i] + tmp[i];
}

/* The attention block of seq2seq.h reversed. With h = x + o and out = LN(h)
 * (post-LN) or a_in = LN(x), out = h (pre-LN):
 *   dh = LN'(dout) or dout; do = dh (+ the sequential adapters' input
 *   gradient); dctx = do·W_o (+ LoRA o); da_in = parallel adapters'
 *   input gradient + dq·W_q (+ LoRA q); attention'; dk, dv flow to kv:
 *   into da_in for self-attention, ADDED into dkv_acc (the encoder output's
 *   gradient) for cross-attention (kv_in non-NULL);
 *   dx = dh + da_in (post-LN) or dh + LN'(da_in) (pre-LN). */
static void attn_backward(struct refs *m, struct ref_arena *sc, int blk, const struct refs_attn *w,
                          const struct refs_attn_acts *aa, double *dx, const double *dout, const double *kv_in,
                          double *dkv_acc, const uint8_t *keep, int Tq, int Tk, bool causal,
                          double *const *reparam_dout) {
    const int B = m->acts.B, H = m->arch.heads, hd = m->arch.head_dim, d = m->arch.hidden;
    const int Nq = B * Tq, Nk = B * Tk, Lp = m->deltas.prefix_rows[blk];
    const size_t Nqd = (size_t)Nq * d, Nkd = (size_t)Nk * d;
    struct ref_deltas *dl = &m->deltas;
    double *dh = ref_arena_doubles(sc, Nqd), *dO = ref_arena_doubles(sc, Nqd), *dctx = ref_arena_doubles(sc, Nqd);
    double *da_in = ref_arena_doubles(sc, Nqd), *datth = ref_arena_doubles(sc, Nqd), *dqh = ref_arena_doubles(sc, Nqd);
    double *dq = ref_arena_doubles(sc, Nqd), *tmpq = ref_arena_doubles(sc, Nqd);
    double *dkh = ref_arena_doubles(sc, Nkd), *dvh = ref_arena_doubles(sc, Nkd), *dk = ref_arena_doubles(sc, Nkd);
    double *dv = ref_arena_doubles(sc, Nkd), *tmpk = ref_arena_doubles(sc, Nkd);
    double *dpk = ref_arena_doubles(sc, (size_t)Lp * d), *dpv = ref_arena_doubles(sc, (size_t)Lp * d);
    if (m->arch.pre_norm) memcpy(dh, dout, Nqd * sizeof(double));
    else layernorm_backward(m, dh, dout, aa->h, aa->norm_mean, aa->norm_rstd, w->norm_w, w->norm_b, Nq);
    memcpy(dO, dh, Nqd * sizeof(double));
    ref_deltas_adapters_backward(dl, sc, blk, DELTA_AT_ATTN, DELTA_SEQUENTIAL, dO, dO, Nq);
    dropout_backward(m, dO, Nqd, m->arch.hidden_dropout, blk, REFS_SITE_ATTN_OUT);
    refd_linear_backward(dctx, dO, aa->ctx, &w->o, Nq);
    ref_deltas_loras_backward(dl, sc, blk, DELTA_AT_O, dctx, dO, Nq);
    ref_deltas_adapters_backward(dl, sc, blk, DELTA_AT_ATTN, DELTA_PARALLEL, da_in, dctx, Nq);
    ref_split_heads(datth, dctx, B, Tq, H, hd);
    const struct ref_attention_config cfg = {.B = B, .H = H, .T = Tq, .S = Tk, .L = Lp, .D = hd, .causal = causal,
                                             .dropout_p = refs_dropout_p(m, m->arch.attention_dropout),
                                             .dropout = refs_dropout_key(m, blk, REFS_SITE_ATTN_PROBS)};
    ref_attention_backward(dqh, dkh, dvh, Lp ? dpk : NULL, Lp ? dpv : NULL, datth, aa->qh, aa->kh, aa->vh,
                           aa->prefix_k, aa->prefix_v, keep, &cfg);
    if (Lp) ref_deltas_scatter_prefix_grads(dl, blk, dpk, dpv, reparam_dout);
    ref_merge_heads(dq, dqh, B, Tq, H, hd);
    ref_merge_heads(dk, dkh, B, Tk, H, hd);
    ref_merge_heads(dv, dvh, B, Tk, H, hd);
    refd_linear_backward(tmpq, dq, aa->a_in, &w->q, Nq);
    ref_add_into(da_in, tmpq, Nqd);
    ref_deltas_loras_backward(dl, sc, blk, DELTA_AT_Q, da_in, dq, Nq);
    const double *kv = kv_in ? kv_in : aa->a_in;
    double *dkv = kv_in ? dkv_acc : da_in;
    refd_linear_backward(tmpk, dk, kv, &w->k, Nk);
    ref_add_into(dkv, tmpk, Nkd);
    ref_deltas_loras_backward(dl, sc, blk, DELTA_AT_K, dkv, dk, Nk);
    refd_linear_backward(tmpk, dv, kv, &w->v, Nk);
    ref_add_into(dkv, tmpk, Nkd);
    ref_deltas_loras_backward(dl, sc, blk, DELTA_AT_V, dkv, dv, Nk);
    input_backward(m, dx, dh, da_in, aa->x, aa->norm_mean, aa->norm_rstd, w->norm_w, w->norm_b, tmpq, Nq);
}

/* The FFN block reversed: dh = LN'(dout) (post-LN) or dout; ddn = dh (+ the
 * sequential adapters' input gradient); du = ddn·W_2 (+ LoRA down);
 * dupre = act'(du); df_in = parallel adapters' input gradient + dupre·W_1
 * (+ LoRA up); dx = dh + df_in (post-LN) or dh + LN'(df_in) (pre-LN). */
static void ffn_backward(struct refs *m, struct ref_arena *sc, int blk, const struct refs_ffn *w,
                         const struct refs_ffn_acts *fa, double *dx, const double *dout, int N, int I) {
    const size_t Nd = (size_t)N * m->arch.hidden, NI = (size_t)N * I;
    struct ref_deltas *dl = &m->deltas;
    double *dh = ref_arena_doubles(sc, Nd), *ddn = ref_arena_doubles(sc, Nd), *df_in = ref_arena_doubles(sc, Nd);
    double *tmp = ref_arena_doubles(sc, Nd), *du = ref_arena_doubles(sc, NI), *dupre = ref_arena_doubles(sc, NI);
    if (m->arch.pre_norm) memcpy(dh, dout, Nd * sizeof(double));
    else layernorm_backward(m, dh, dout, fa->h, fa->norm_mean, fa->norm_rstd, w->norm_w, w->norm_b, N);
    memcpy(ddn, dh, Nd * sizeof(double));
    ref_deltas_adapters_backward(dl, sc, blk, DELTA_AT_FFN, DELTA_PARALLEL, df_in, ddn, N);
    ref_deltas_adapters_backward(dl, sc, blk, DELTA_AT_FFN, DELTA_SEQUENTIAL, ddn, ddn, N);
    dropout_backward(m, ddn, Nd, m->arch.hidden_dropout, blk, REFS_SITE_FFN_OUT);
    refd_linear_backward(du, ddn, fa->u, &w->down, N);
    ref_deltas_loras_backward(dl, sc, blk, DELTA_AT_DOWN, du, ddn, N);
    dropout_backward(m, du, NI, m->arch.activation_dropout, blk, REFS_SITE_FFN_ACT);
    act_backward(m, dupre, du, fa->upre, NI);
    refd_linear_backward(tmp, dupre, fa->f_in, &w->up, N);
    ref_add_into(df_in, tmp, Nd);
    ref_deltas_loras_backward(dl, sc, blk, DELTA_AT_UP, df_in, dupre, N);
    input_backward(m, dx, dh, df_in, fa->x, fa->norm_mean, fa->norm_rstd, w->norm_w, w->norm_b, tmp, N);
}

/* ------------------------------------------------------------------------
 * Stacks
 * ------------------------------------------------------------------------ */

/* The stack's output gradient dout to its last layer's: mBART's final LN'. */
static void final_backward(const struct refs *m, const struct refs_stack *st, const struct refs_stack_acts *sa,
                           double *dlast, const double *dout) {
    const int N = m->acts.B * sa->T;
    if (st->final_w)
        layernorm_backward(m, dlast, dout, sa->layer[st->layers - 1].ffn.out, sa->final_mean, sa->final_rstd,
                           st->final_w, st->final_b, N);
    else memcpy(dlast, dout, (size_t)N * m->arch.hidden * sizeof(double));
}

/* x = dropout(LN_emb(x0)), x0 = embed_scale·E[ids] + W_pos[pos]:
 * dx0 = LN_emb'(dropout'(dx)); dE[ids] += embed_scale·dx0; dW_pos[pos] +=
 * dx0. dx is overwritten. */
static void embed_backward(struct refs *m, struct ref_arena *sc, const struct refs_stack *st,
                           const struct refs_stack_acts *sa, double *dx, int first) {
    const int N = m->acts.B * sa->T, d = m->arch.hidden;
    double *dx0 = ref_arena_doubles(sc, (size_t)N * d);
    dropout_backward(m, dx, (size_t)N * d, m->arch.hidden_dropout, first, REFS_SITE_EMB);
    layernorm_backward(m, dx0, dx, sa->x0, sa->emb_mean, sa->emb_rstd, st->embnorm_w, st->embnorm_b, N);
    if (st->pos->grad) ref_embedding_backward(st->pos->grad, dx0, sa->pos, N, st->pos->shape[0], d);
    if (m->w.shared->grad) {
        double *de = ref_arena_doubles(sc, (size_t)N * d);
        for (size_t i = 0; i < (size_t)N * d; i++) de[i] = m->arch.embed_scale * dx0[i];
        ref_embedding_backward(m->w.shared->grad, de, sa->ids, N, m->arch.vocab_size, d);
    }
}

/* dout (B·T,d) is the decoder output's gradient; the encoder output's is
 * ADDED into denc (B·S,d). */
static void decoder_backward(struct refs *m, struct ref_arena *sc, const double *dout, double *denc,
                             double *const *reparam_dout) {
    const struct refs_stack *st = &m->w.dec;
    const struct refs_stack_acts *sa = &m->acts.dec;
    const int T = sa->T, S = m->acts.S, N = m->acts.B * T;
    const size_t Nd = (size_t)N * m->arch.hidden;
    double *dnext = ref_arena_doubles(sc, Nd), *dcross = ref_arena_doubles(sc, Nd), *dself = ref_arena_doubles(sc, Nd);
    final_backward(m, st, sa, dnext, dout);
    for (int l = st->layers - 1; l >= 0; l--) {
        const struct refs_layer *w = &st->layer[l];
        const struct refs_layer_acts *la = &sa->layer[l];
        struct ref_arena lsc = {0};
        ffn_backward(m, &lsc, refs_block(m, DELTA_STACK_DECODER, l), &w->ffn, &la->ffn, dcross, dnext, N,
                     m->arch.decoder_intermediate);
        attn_backward(m, &lsc, refs_block(m, DELTA_STACK_CROSS, l), &w->cross, &la->cross, dself, dcross,
                      m->acts.enc.out, denc, m->acts.enc.keep, T, S, false, reparam_dout);
        attn_backward(m, &lsc, refs_block(m, DELTA_STACK_DECODER, l), &w->self, &la->self, dnext, dself, NULL, NULL,
                      sa->keep, T, T, true, reparam_dout);
        ref_arena_free(&lsc);
    }
    embed_backward(m, sc, st, sa, dnext, refs_block(m, DELTA_STACK_DECODER, 0));
}

static void encoder_backward(struct refs *m, struct ref_arena *sc, const double *dout, double *const *reparam_dout) {
    const struct refs_stack *st = &m->w.enc;
    const struct refs_stack_acts *sa = &m->acts.enc;
    const int S = sa->T, N = m->acts.B * S;
    const size_t Nd = (size_t)N * m->arch.hidden;
    double *dnext = ref_arena_doubles(sc, Nd), *dattn = ref_arena_doubles(sc, Nd);
    final_backward(m, st, sa, dnext, dout);
    for (int l = st->layers - 1; l >= 0; l--) {
        const int blk = refs_block(m, DELTA_STACK_ENCODER, l);
        struct ref_arena lsc = {0};
        ffn_backward(m, &lsc, blk, &st->layer[l].ffn, &sa->layer[l].ffn, dattn, dnext, N, m->arch.intermediate);
        attn_backward(m, &lsc, blk, &st->layer[l].self, &sa->layer[l].self, dnext, dattn, NULL, NULL, sa->keep, S, S,
                      false, reparam_dout);
        ref_arena_free(&lsc);
    }
    embed_backward(m, sc, st, sa, dnext, refs_block(m, DELTA_STACK_ENCODER, 0));
}

/* The forward reversed: dlogits = CE'; dW_head += dlogitsᵀ·y_dec (the
 * shared table's grad when tied; final_logits_bias is frozen), dy_dec =
 * dlogits·W_head; the decoder, collecting the encoder output's gradient
 * from every cross-attention block; the encoder; each prefix
 * reparameterisation. */
void refs_backward(struct refs *m) {
    struct refs_acts *a = &m->acts;
    assert(a->B > 0); /* needs a forward */
    const int N = a->B * a->T, d = m->arch.hidden, V = m->arch.vocab_size;
    struct ref_arena sc = {0};
    double *dlogits = ref_arena_doubles(&sc, (size_t)N * V), *dy = ref_arena_doubles(&sc, (size_t)N * d);
    double *denc = ref_arena_doubles(&sc, (size_t)a->B * a->S * d);
    double **reparam_dout = ref_deltas_reparam_grads(&m->deltas, &sc);
    ref_cross_entropy_backward(dlogits, 1.0, a->logits, a->targets, N, V, REFM_IGNORE_INDEX, m->opt.label_smoothing);
    ref_matmul_backward(dy, m->w.head->grad, NULL, dlogits, a->dec.out, m->w.head->data, N, d, V);
    decoder_backward(m, &sc, dy, denc, reparam_dout);
    encoder_backward(m, &sc, denc, reparam_dout);
    ref_deltas_reparams_backward(&m->deltas, &sc, reparam_dout);
    ref_arena_free(&sc);
}
