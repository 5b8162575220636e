/* Decoder reference: the backward pass, the forward's list of calls
 * reversed, from the activations decoder_forward.c kept. Frozen tensors have
 * grad == NULL, which the op references read as "not wanted"; input
 * gradients flow through everything. Parameter gradients accumulate (+=),
 * activation gradients are overwritten.
 *
 * The blocks follow model_backward.c's order but not its content (pre-LN
 * residuals, causal GQA attention with RoPE, Conv1D projections, the LM
 * head), so only the delta modules' backward (delta_ref_backward.c) is
 * shared with it. */
#include "decoder.h"
#include "ref.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* dx = norm'(dy) (overwrite); dγ (and dβ) += when trainable. */
static void norm_backward(const struct refd *m, double *dx, const double *dy, const double *x, const double *mean,
                          const double *rstd, const struct refm_tensor *w, const struct refm_tensor *b, int N) {
    const int d = m->arch.hidden;
    if (m->arch.norm == MODEL_NORM_RMSNORM) ref_rmsnorm_backward(dx, w->grad, dy, x, rstd, w->data, N, d);
    else ref_layernorm_backward(dx, w->grad, b->grad, dy, x, mean, rstd, w->data, N, d);
}

/* ------------------------------------------------------------------------
 * Layers
 * ------------------------------------------------------------------------ */

/* dx = dx ⊙ the forward's mask at a site. */
static void dropout_backward(const struct refd *m, double *dx, size_t n, double p, int layer, int site) {
    const struct ref_dropout_key key = refd_dropout_key(m, layer, site);
    if (refd_dropout_p(m, p) > 0.0) ref_dropout_backward(dx, dx, &key, p, n);
}

/* out = h + dn, dn = down(u) + adapters, u = act(up(f_in)) or
 * silu(gate(f_in)) ⊙ up(f_in), f_in = norm_2(h):
 * dh = dout + norm_2'(df_in) (overwritten), df_in summing the parallel
 * adapters', up's and gate's (and their LoRAs') input gradients. */
static void ffn_block_backward(struct refd *m, struct ref_arena *sc, int l, double *dh, const double *dout, int N) {
    const struct refd_layer_acts *la = &m->acts.layers[l];
    const struct refd_layer *w = &m->w.layers[l];
    const size_t Nd = (size_t)N * m->arch.hidden, NI = (size_t)N * m->arch.intermediate;
    double *ddn = ref_arena_doubles(sc, Nd), *df_in = ref_arena_doubles(sc, Nd), *tmp = ref_arena_doubles(sc, Nd);
    double *du = ref_arena_doubles(sc, NI), *dupre = ref_arena_doubles(sc, NI), *dgpre = ref_arena_doubles(sc, NI);
    memcpy(ddn, dout, Nd * sizeof(double));
    ref_deltas_adapters_backward(&m->deltas, sc, l, DELTA_AT_FFN, DELTA_PARALLEL, df_in, ddn, N);
    ref_deltas_adapters_backward(&m->deltas, sc, l, DELTA_AT_FFN, DELTA_SEQUENTIAL, ddn, ddn, N);
    dropout_backward(m, ddn, Nd, m->arch.hidden_dropout, l, REFD_SITE_FFN_OUT);
    refd_linear_backward(du, ddn, la->u, &w->down, N);
    ref_deltas_loras_backward(&m->deltas, sc, l, DELTA_AT_DOWN, du, ddn, N);
    if (m->arch.act == MODEL_ACT_SWIGLU) {
        ref_swiglu_backward(dgpre, dupre, du, la->gpre, la->upre, NI);
        refd_linear_backward(tmp, dgpre, la->f_in, &w->gate, N);
        ref_add_into(df_in, tmp, Nd);
    } else {
        ref_gelu_tanh_backward(dupre, du, la->upre, NI);
    }
    refd_linear_backward(tmp, dupre, la->f_in, &w->up, N);
    ref_add_into(df_in, tmp, Nd);
    ref_deltas_loras_backward(&m->deltas, sc, l, DELTA_AT_UP, df_in, dupre, N);
    norm_backward(m, tmp, df_in, la->h, la->norm2_mean, la->norm2_rstd, w->norm2_w, w->norm2_b, N);
    for (size_t i = 0; i < Nd; i++) dh[i] = dout[i] + tmp[i];
}

/* dst (B,G,T,hd) = Σ over the query heads of each group of src (B,H,T,hd),
 * then RoPE's inverse rotation when `rotate`; merged to (N,G·hd). */
static void heads_backward(const struct refd *m, double *dst, const double *src, int G, bool rotate, double *tmp) {
    const struct refd_acts *a = &m->acts;
    const int B = a->B, T = a->T, H = m->arch.heads, hd = m->arch.head_dim;
    const size_t head = (size_t)T * hd, n = (size_t)B * G * head;
    memset(tmp, 0, n * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            ref_add_into(tmp + ((size_t)b * G + h / (H / G)) * head, src + ((size_t)b * H + h) * head, head);
    if (rotate) ref_rope_backward(tmp + n, tmp, a->pos, B, G, T, hd, 0, m->arch.rope_theta);
    else memcpy(tmp + n, tmp, n * sizeof(double));
    ref_merge_heads(dst, tmp + n, B, T, G, hd);
}

/* h = x + o, o = W_o(ctx) + adapters, ctx = attention(q, k, v) + parallel
 * adapters(a_in), q/k/v = W(a_in) + LoRA, a_in = norm_1(x):
 * dx = dh + norm_1'(da_in) (overwritten). */
static void attention_block_backward(struct refd *m, struct ref_arena *sc, int l, double *dx, const double *dh,
                                     double *const *reparam_dout, int N) {
    const struct refd_layer_acts *la = &m->acts.layers[l];
    const struct refd_layer *w = &m->w.layers[l];
    const int B = m->acts.B, T = m->acts.T, H = m->arch.heads, G = m->arch.kv_heads, hd = m->arch.head_dim;
    const bool rotate = m->arch.positions == MODEL_POS_ROTARY;
    const size_t Nd = (size_t)N * m->arch.hidden, Nq = (size_t)N * H * hd, Nkv = (size_t)N * G * hd;
    const size_t Lp = (size_t)m->deltas.prefix_rows[l];
    double *dout = ref_arena_doubles(sc, Nd), *da_in = ref_arena_doubles(sc, Nd), *tmp = ref_arena_doubles(sc, Nd);
    double *dctx = ref_arena_doubles(sc, Nq), *datth = ref_arena_doubles(sc, Nq), *dqh = ref_arena_doubles(sc, Nq);
    double *dkh = ref_arena_doubles(sc, Nq), *dvh = ref_arena_doubles(sc, Nq), *htmp = ref_arena_doubles(sc, 2 * Nq);
    double *dq = ref_arena_doubles(sc, Nq), *dk = ref_arena_doubles(sc, Nkv), *dv = ref_arena_doubles(sc, Nkv);
    double *dpk = ref_arena_doubles(sc, (size_t)H * Lp * hd), *dpv = ref_arena_doubles(sc, (size_t)H * Lp * hd);
    memcpy(dout, dh, Nd * sizeof(double));
    ref_deltas_adapters_backward(&m->deltas, sc, l, DELTA_AT_ATTN, DELTA_SEQUENTIAL, dout, dout, N);
    dropout_backward(m, dout, Nd, m->arch.hidden_dropout, l, REFD_SITE_ATTN_OUT);
    refd_linear_backward(dctx, dout, la->ctx, &w->o, N);
    ref_deltas_loras_backward(&m->deltas, sc, l, DELTA_AT_O, dctx, dout, N);
    ref_deltas_adapters_backward(&m->deltas, sc, l, DELTA_AT_ATTN, DELTA_PARALLEL, da_in, dctx, N);
    ref_split_heads(datth, dctx, B, T, H, hd);
    const struct ref_attention_config cfg = refd_attention_config(m, l);
    ref_attention_backward(dqh, dkh, dvh, Lp ? dpk : NULL, Lp ? dpv : NULL, datth, la->qh, la->kh, la->vh,
                           la->prefix_k, la->prefix_v, m->acts.keep, &cfg);
    if (Lp) ref_deltas_scatter_prefix_grads(&m->deltas, l, dpk, dpv, reparam_dout);
    heads_backward(m, dq, dqh, H, rotate, htmp);
    heads_backward(m, dk, dkh, G, rotate, htmp);
    heads_backward(m, dv, dvh, G, false, htmp);
    const struct {
        const struct refd_linear *lin;
        const double *dy;
        enum delta_at at;
    } proj[] = {{&w->q, dq, DELTA_AT_Q}, {&w->k, dk, DELTA_AT_K}, {&w->v, dv, DELTA_AT_V}};
    for (size_t k = 0; k < sizeof proj / sizeof proj[0]; k++) {
        refd_linear_backward(tmp, proj[k].dy, la->a_in, proj[k].lin, N);
        ref_add_into(da_in, tmp, Nd);
        ref_deltas_loras_backward(&m->deltas, sc, l, proj[k].at, da_in, proj[k].dy, N);
    }
    norm_backward(m, tmp, da_in, la->x, la->norm1_mean, la->norm1_rstd, w->norm1_w, w->norm1_b, N);
    for (size_t i = 0; i < Nd; i++) dx[i] = dh[i] + tmp[i];
}

/* ------------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------------ */

/* x0 = E[ids] + W_pos[P + t]: dE[ids] += dx0, dW_pos[P + t] += dx0. */
static void embeddings_backward(struct refd *m, const double *dx0, int N) {
    const struct refd_acts *a = &m->acts;
    const int d = m->arch.hidden;
    if (m->w.embed->grad) ref_embedding_backward(m->w.embed->grad, dx0, a->ids, N, m->arch.vocab_size, d);
    if (m->w.pos && m->w.pos->grad) {
        int32_t *pos = malloc((size_t)N * sizeof *pos);
        assert(pos);
        for (int n = 0; n < N; n++) pos[n] = a->pos[n % a->T];
        ref_embedding_backward(m->w.pos->grad, dx0, pos, N, m->arch.max_positions, d);
        free(pos);
    }
}

/* The forward reversed: dlogits = CE'; dW_head += dlogitsᵀ·xf (the tied
 * table's grad when tied), dxf = dlogits·W_head; norm_f'; per layer, last
 * first, the FFN block then the attention block; then the embeddings (a tied
 * table's grad adds the gather's scatter to the head's term) and each prefix
 * reparameterisation. */
void refd_backward(struct refd *m) {
    struct refd_acts *a = &m->acts;
    assert(a->B > 0); /* needs a forward */
    const int N = a->B * a->T, d = m->arch.hidden, V = m->arch.vocab_size;
    struct ref_arena sc = {0};
    double *dlogits = ref_arena_doubles(&sc, (size_t)N * V), *dxf = ref_arena_doubles(&sc, (size_t)N * d);
    double *dnext = ref_arena_doubles(&sc, (size_t)N * d), *dh = ref_arena_doubles(&sc, (size_t)N * d);
    double *dx = ref_arena_doubles(&sc, (size_t)N * d);
    double **reparam_dout = ref_deltas_reparam_grads(&m->deltas, &sc);

    ref_cross_entropy_backward(dlogits, 1.0, a->logits, a->targets, N, V, REFM_IGNORE_INDEX, m->opt.label_smoothing);
    ref_matmul_backward(dxf, m->w.head->grad, NULL, dlogits, a->xf, m->w.head->data, N, d, V);
    norm_backward(m, dnext, dxf, a->layers[m->arch.layers - 1].out, a->normf_mean, a->normf_rstd, m->w.normf_w,
                  m->w.normf_b, N);
    for (int l = m->arch.layers - 1; l >= 0; l--) {
        struct ref_arena layer_sc = {0};
        ffn_block_backward(m, &layer_sc, l, dh, dnext, N);
        attention_block_backward(m, &layer_sc, l, dx, dh, reparam_dout, N);
        memcpy(dnext, dx, (size_t)N * d * sizeof(double));
        ref_arena_free(&layer_sc);
    }
    dropout_backward(m, dnext, (size_t)N * d, m->arch.embedding_dropout, -1, REFD_SITE_EMB);
    embeddings_backward(m, dnext, N);
    ref_deltas_reparams_backward(&m->deltas, &sc, reparam_dout);
    ref_arena_free(&sc);
}
