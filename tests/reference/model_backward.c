/* Whole-model reference: the backward pass, the forward's list of calls
 * reversed, from the activations model_forward.c kept.
 *
 * Frozen tensors have grad == NULL, which the op references read as "this
 * gradient is not wanted", so weight gradients exist exactly for the
 * trainable tensors while input gradients flow through everything. */
#include "model.h"
#include "ref.h"

#include <assert.h>
#include <string.h>

static double *grad_of(const struct refm_tensor *t) { return t ? t->grad : NULL; }

static void model_act_backward(enum model_act act, double *dx, const double *dy, const double *x, size_t n) {
    switch (act) {
    case MODEL_ACT_GELU: ref_gelu_backward(dx, dy, x, n); return;
    case MODEL_ACT_GELU_TANH: ref_gelu_tanh_backward(dx, dy, x, n); return;
    case MODEL_ACT_RELU: ref_relu_backward(dx, dy, x, n); return;
    case MODEL_ACT_SILU: ref_silu_backward(dx, dy, x, n); return;
    case MODEL_ACT_SWIGLU: break;
    }
    assert(!"unsupported activation");
}

/* ------------------------------------------------------------------------
 * Layers
 * ------------------------------------------------------------------------ */

/* dout (the layer output's gradient) → dh, the gradient of h = LayerNorm_attn(x + o)
 * (overwritten). */
static void ffn_block_backward(struct refm *m, struct ref_arena *sc, int l, double *dh, const double *dout,
                               int N) {
    const struct refm_layer_acts *la = &m->acts.layers[l];
    const struct refm_layer *w = &m->w.layers[l];
    const int d = m->arch.hidden, I = m->arch.intermediate;
    const size_t Nd = (size_t)N * d, NI = (size_t)N * I;
    double *dres2 = ref_arena_doubles(sc, Nd), *ddn = ref_arena_doubles(sc, Nd), *tmp = ref_arena_doubles(sc, Nd);
    double *du = ref_arena_doubles(sc, NI), *dupre = ref_arena_doubles(sc, NI);
    ref_layernorm_backward(dres2, w->ln2_w->grad, w->ln2_b->grad, dout, la->res2, la->ln2_mean, la->ln2_rstd,
                           w->ln2_w->data, N, d);
    ref_add_backward(dh, ddn, dres2, Nd);
    ref_deltas_adapters_backward(&m->deltas, sc, l, DELTA_AT_FFN, DELTA_PARALLEL, dh, ddn, N);
    ref_deltas_adapters_backward(&m->deltas, sc, l, DELTA_AT_FFN, DELTA_SEQUENTIAL, ddn, ddn, N);
    ref_matmul_backward(du, w->wdown->grad, w->bdown->grad, ddn, la->u, w->wdown->data, N, I, d);
    ref_deltas_loras_backward(&m->deltas, sc, l, DELTA_AT_DOWN, du, ddn, N);
    model_act_backward(m->arch.act, dupre, du, la->upre, NI);
    ref_matmul_backward(tmp, w->wup->grad, w->bup->grad, dupre, la->h, w->wup->data, N, d, I);
    ref_add_into(dh, tmp, Nd);
    ref_deltas_loras_backward(&m->deltas, sc, l, DELTA_AT_UP, dh, dupre, N);
}

/* dh → dx for the attention block (dx overwritten). */
static void attention_block_backward(struct refm *m, struct ref_arena *sc, int l, double *dx, const double *dh,
                                     double *const *reparam_dout, int N) {
    const struct refm_layer_acts *la = &m->acts.layers[l];
    const struct refm_layer *w = &m->w.layers[l];
    const int B = m->acts.B, T = m->acts.T, d = m->arch.hidden, H = m->arch.heads, hd = m->arch.head_dim;
    const size_t Nd = (size_t)N * d, Lp = (size_t)m->deltas.prefix_rows[l];
    double *dres1 = ref_arena_doubles(sc, Nd), *dout = ref_arena_doubles(sc, Nd), *dctx = ref_arena_doubles(sc, Nd);
    double *datth = ref_arena_doubles(sc, Nd), *tmp = ref_arena_doubles(sc, Nd);
    double *dqh = ref_arena_doubles(sc, Nd), *dkh = ref_arena_doubles(sc, Nd), *dvh = ref_arena_doubles(sc, Nd);
    double *dq = ref_arena_doubles(sc, Nd), *dk = ref_arena_doubles(sc, Nd), *dv = ref_arena_doubles(sc, Nd);
    double *dpk = ref_arena_doubles(sc, Lp * d), *dpv = ref_arena_doubles(sc, Lp * d); /* zeroed: accumulated */
    ref_layernorm_backward(dres1, w->ln1_w->grad, w->ln1_b->grad, dh, la->res1, la->ln1_mean, la->ln1_rstd,
                           w->ln1_w->data, N, d);
    ref_add_backward(dx, dout, dres1, Nd);
    ref_deltas_adapters_backward(&m->deltas, sc, l, DELTA_AT_ATTN, DELTA_SEQUENTIAL, dout, dout, N);
    ref_matmul_backward(dctx, w->wo->grad, w->bo->grad, dout, la->ctx, w->wo->data, N, d, d);
    ref_deltas_loras_backward(&m->deltas, sc, l, DELTA_AT_O, dctx, dout, N);
    ref_deltas_adapters_backward(&m->deltas, sc, l, DELTA_AT_ATTN, DELTA_PARALLEL, dx, dctx, N);
    ref_split_heads(datth, dctx, B, T, H, hd);
    const struct ref_attention_config cfg = {
        .B = B, .H = H, .T = T, .S = T, .L = (int)Lp, .D = hd, .causal = false, .scale = 0.0, .dropout_p = 0.0,
    };
    ref_attention_backward(dqh, dkh, dvh, Lp ? dpk : NULL, Lp ? dpv : NULL, datth, la->qh, la->kh, la->vh,
                           la->prefix_k, la->prefix_v, m->acts.keep, &cfg);
    if (Lp) ref_deltas_scatter_prefix_grads(&m->deltas, l, dpk, dpv, reparam_dout);
    ref_merge_heads(dq, dqh, B, T, H, hd);
    ref_merge_heads(dk, dkh, B, T, H, hd);
    ref_merge_heads(dv, dvh, B, T, H, hd);
    const struct {
        const struct refm_tensor *w, *b;
        const double *dy;
        enum delta_at at;
    } proj[] = {{w->wq, w->bq, dq, DELTA_AT_Q}, {w->wk, w->bk, dk, DELTA_AT_K}, {w->wv, w->bv, dv, DELTA_AT_V}};
    for (size_t k = 0; k < sizeof proj / sizeof proj[0]; k++) {
        ref_matmul_backward(tmp, proj[k].w->grad, proj[k].b->grad, proj[k].dy, la->x, proj[k].w->data, N, d, d);
        ref_add_into(dx, tmp, Nd);
        ref_deltas_loras_backward(&m->deltas, sc, l, proj[k].at, dx, proj[k].dy, N);
    }
}

/* ------------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------------ */

/* Head: dlogits = CE'(logits); dpool = dlogits·W_cls, dW_cls += dlogitsᵀ·pool;
 * dpool_pre = dpool ⊙ (1 − pool²); dcls = dpool_pre·W1 (pooler or dense),
 * dW1 += dpool_preᵀ·cls; dx_L[b,0] = dcls[b], 0 at every other token. */
static void head_backward(struct refm *m, struct ref_arena *sc, double *dxL) {
    const struct refm_acts *a = &m->acts;
    const int B = a->B, T = a->T, d = m->arch.hidden, C = m->arch.num_labels;
    double *dlogits = ref_arena_doubles(sc, (size_t)B * C), *dpool = ref_arena_doubles(sc, (size_t)B * d);
    double *dpool_pre = ref_arena_doubles(sc, (size_t)B * d), *dcls = ref_arena_doubles(sc, (size_t)B * d);
    ref_cross_entropy_backward(dlogits, 1.0, a->logits, a->labels, B, C, REFM_IGNORE_INDEX,
                               m->opt.label_smoothing);
    ref_matmul_backward(dpool, m->w.cls_w->grad, m->w.cls_b->grad, dlogits, a->pool, m->w.cls_w->data, B, d, C);
    ref_tanh_backward(dpool_pre, dpool, a->pool_pre, (size_t)B * d);
    const struct refm_tensor *w1 = m->w.pool_w ? m->w.pool_w : m->w.dense_w;
    const struct refm_tensor *b1 = m->w.pool_w ? m->w.pool_b : m->w.dense_b;
    ref_matmul_backward(dcls, w1->grad, b1->grad, dpool_pre, a->cls, w1->data, B, d, d);
    memset(dxL, 0, (size_t)B * T * d * sizeof(double));
    for (int b = 0; b < B; b++) memcpy(dxL + (size_t)b * T * d, dcls + (size_t)b * d, (size_t)d * sizeof(double));
}

/* e = word[ids] + pos[pos] + type[types], x0 = LayerNorm_emb(e):
 * de = LN'(dx0), dword[ids] += de, dpos[pos] += de, dtype[types] += de. */
static void embeddings_backward(struct refm *m, struct ref_arena *sc, const double *dx0, int N) {
    const struct refm_weights *w = &m->w;
    const struct refm_acts *a = &m->acts;
    const int d = m->arch.hidden;
    if (!w->ln_emb_w->grad && !w->ln_emb_b->grad && !w->word->grad && !w->pos->grad && !grad_of(w->type))
        return;
    double *de = ref_arena_doubles(sc, (size_t)N * d);
    ref_layernorm_backward(de, w->ln_emb_w->grad, w->ln_emb_b->grad, dx0, a->emb, a->emb_mean, a->emb_rstd,
                           w->ln_emb_w->data, N, d);
    if (w->word->grad) ref_embedding_backward(w->word->grad, de, a->ids, N, m->arch.vocab_size, d);
    if (w->pos->grad) ref_embedding_backward(w->pos->grad, de, a->pos, N, m->arch.max_positions, d);
    if (grad_of(w->type)) ref_embedding_backward(w->type->grad, de, a->types, N, m->arch.type_vocab_size, d);
}

/* The model's gradient, the forward reversed: head; then per layer, last
 * first, LayerNorm_out' splits into dh and ddn (residual), the FFN adapters
 * (parallel ones add Δ'ᵀ into dh, sequential ones into ddn), down (+LoRA),
 * act', up (+LoRA) add into dh; LayerNorm_attn' splits into dx and do,
 * sequential attention adapters, out projection (+LoRA) give dctx, parallel
 * attention adapters add into dx, attention' gives dq, dk, dv and the
 * prefix rows' gradients, and the q/k/v projections (+LoRA) add into dx;
 * then the embeddings and each prefix reparameterisation. Parameter
 * gradients accumulate (+=); activation gradients are overwritten. */
void refm_backward(struct refm *m) {
    struct refm_acts *a = &m->acts;
    assert(a->B > 0 && a->has_labels); /* needs a forward with labels */
    const int N = a->B * a->T, d = m->arch.hidden;
    struct ref_arena sc = {0};
    double *dnext = ref_arena_doubles(&sc, (size_t)N * d), *dh = ref_arena_doubles(&sc, (size_t)N * d);
    double *dx = ref_arena_doubles(&sc, (size_t)N * d);
    double **reparam_dout = ref_deltas_reparam_grads(&m->deltas, &sc);

    head_backward(m, &sc, dnext);
    for (int l = m->arch.layers - 1; l >= 0; l--) {
        struct ref_arena layer_sc = {0};
        ffn_block_backward(m, &layer_sc, l, dh, dnext, N);
        attention_block_backward(m, &layer_sc, l, dx, dh, reparam_dout, N);
        memcpy(dnext, dx, (size_t)N * d * sizeof(double));
        ref_arena_free(&layer_sc);
    }
    embeddings_backward(m, &sc, dnext, N);
    ref_deltas_reparams_backward(&m->deltas, &sc, reparam_dout);
    ref_arena_free(&sc);
}
