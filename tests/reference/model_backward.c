/* Whole-model reference: the backward pass, the forward's list of calls
 * reversed, from the activations model_forward.c kept.
 *
 * Frozen tensors have grad == NULL, which the op references read as "this
 * gradient is not wanted", so weight gradients exist exactly for the
 * trainable tensors while input gradients flow through everything. */
#include "model.h"
#include "ref.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Every scratch buffer of one backward, freed together. */
struct scratch {
    void **p;
    int count, cap;
};

static double *scratch_doubles(struct scratch *s, size_t n) {
    if (s->count == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->p = realloc(s->p, (size_t)s->cap * sizeof *s->p);
        assert(s->p);
    }
    double *d = calloc(n ? n : 1, sizeof(double));
    assert(d);
    s->p[s->count++] = d;
    return d;
}

static void scratch_free(struct scratch *s) {
    for (int i = 0; i < s->count; i++) free(s->p[i]);
    free(s->p);
    *s = (struct scratch){0};
}

static double *grad_of(const struct refm_tensor *t) { return t ? t->grad : NULL; }

static void add_into(double *y, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

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

static void delta_act_backward(enum delta_act act, double *dx, const double *dy, const double *x, size_t n) {
    if (act == DELTA_ACT_RELU) ref_relu_backward(dx, dy, x, n);
    else if (act == DELTA_ACT_GELU) ref_gelu_backward(dx, dy, x, n);
    else memcpy(dx, dy, n * sizeof(double));
}

/* Columns c0 .. c0+w−1 of dst (N,C) += src (N,w). */
static void add_cols(double *dst, const double *src, int N, int C, int c0, int w) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < w; c++) dst[(size_t)n * C + c0 + c] += src[(size_t)n * w + c];
}

/* ------------------------------------------------------------------------
 * Delta modules
 * ------------------------------------------------------------------------ */

/* y = y₀ + s·Δ(z), Δ(z) = f(z·W_dᵀ + b_d)·W_uᵀ + b_u, with dy given:
 *   dΔ = s·dy (add, scale), or for gated s = σ(g): dΔ = σ(g)·dy and
 *   dg += σ(g)(1−σ(g))·Σ dy ⊙ Δ;
 *   dW_u += dΔᵀ·a, db_u += Σ dΔ, da = dΔ·W_u, dp = da ⊙ f'(p),
 *   dW_d += dpᵀ·z, db_d += Σ dp, dz = dp·W_d   (a = f(p), p = z·W_dᵀ + b_d),
 * per head on each head's columns. dy₀ = dy is the caller's. dz is ADDED
 * into dz_acc: z is also read by the main path (a branch point), and for a
 * sequential adapter dz_acc is dy itself, read in full before it is added to. */
static void adapter_backward(struct refm *m, struct scratch *sc, struct refm_slot *s,
                             double *dz_acc,   // (N,d), accumulated
                             const double *dy, // (N,d)
                             int N) {
    const struct delta_module *mod = &m->spec.modules[s->module];
    const int d = m->arch.hidden, r = mod->size, H = m->arch.heads, hd = m->arch.head_dim;
    double *ddelta = scratch_doubles(sc, (size_t)N * d);
    if (mod->compose == DELTA_COMPOSE_GATED)
        ref_sigmoid_gate_backward(NULL, ddelta, s->gate->grad, dy, s->delta, s->gate->data, N, d, 1);
    else
        ref_scale_backward(ddelta, dy, mod->compose == DELTA_COMPOSE_SCALE ? mod->scale : 1.0, (size_t)N * d);
    double *dhact = scratch_doubles(sc, (size_t)N * r), *dhpre = scratch_doubles(sc, (size_t)N * r);
    if (!mod->per_head) {
        double *dz = scratch_doubles(sc, (size_t)N * d);
        ref_matmul_backward(dhact, s->up_w->grad, s->up_b->grad, ddelta, s->hact, s->up_w->data, N, r, d);
        delta_act_backward(mod->act, dhpre, dhact, s->hpre, (size_t)N * r);
        ref_matmul_backward(dz, s->down_w->grad, s->down_b->grad, dhpre, s->in, s->down_w->data, N, d, r);
        add_into(dz_acc, dz, (size_t)N * d);
        return;
    }
    double *ddh = scratch_doubles(sc, (size_t)N * hd), *zh = scratch_doubles(sc, (size_t)N * hd);
    double *dzh = scratch_doubles(sc, (size_t)N * hd);
    for (int h = 0; h < H; h++) {
        const size_t wo = (size_t)h * r * hd; /* head h's matrix in (H,r,hd) and (H,hd,r) */
        const double *hpre = s->hpre + (size_t)h * N * r, *hact = s->hact + (size_t)h * N * r;
        refm_gather_cols(ddh, ddelta, N, d, h * hd, hd);
        ref_matmul_backward(dhact, s->up_w->grad + wo, s->up_b->grad + (size_t)h * hd, ddh, hact,
                            s->up_w->data + wo, N, r, hd);
        delta_act_backward(mod->act, dhpre, dhact, hpre, (size_t)N * r);
        refm_gather_cols(zh, s->in, N, d, h * hd, hd);
        ref_matmul_backward(dzh, s->down_w->grad + wo, s->down_b->grad + (size_t)h * r, dhpre, zh,
                            s->down_w->data + wo, N, hd, r);
        add_cols(dz_acc, dzh, N, d, h * hd, hd);
    }
}

/* y = y₀ + s·(x·Aᵀ)·Bᵀ, z = x·Aᵀ, s = α/r:
 *   dB += (s·dy)ᵀ·z, dz = (s·dy)·B, dA += dzᵀ·x, dx = dz·A (ADDED into dx_acc:
 *   x is also read by the frozen projection). */
static void lora_backward(struct refm *m, struct scratch *sc, struct refm_slot *s,
                          double *dx_acc,   // (N,din), accumulated
                          const double *dy, // (N,dout)
                          int N) {
    const struct delta_module *mod = &m->spec.modules[s->module];
    const int r = mod->size;
    double *dt = scratch_doubles(sc, (size_t)N * s->dout), *dz = scratch_doubles(sc, (size_t)N * r);
    double *dx = scratch_doubles(sc, (size_t)N * s->din);
    ref_scale_backward(dt, dy, mod->alpha / mod->size, (size_t)N * s->dout);
    ref_matmul_backward(dz, s->lora_b->grad, NULL, dt, s->hpre, s->lora_b->data, N, r, s->dout);
    ref_matmul_backward(dx, s->lora_a->grad, NULL, dz, s->in, s->lora_a->data, N, s->din, r);
    add_into(dx_acc, dx, (size_t)N * s->din);
}

static void loras_backward(struct refm *m, struct scratch *sc, int l, enum delta_at at, double *dx_acc,
                           const double *dy, int N) {
    for (int i = m->spec.count - 1; i >= 0; i--) {
        struct refm_slot *s = refm_slot_at(m, i, l);
        if (s->active && m->spec.modules[i].kind == DELTA_LORA && m->spec.modules[i].at == at)
            lora_backward(m, sc, s, dx_acc, dy, N);
    }
}

/* The adapters at (at, insert) of layer l in reverse spec order. */
static void adapters_backward(struct refm *m, struct scratch *sc, int l, enum delta_at at,
                              enum delta_insert insert, double *dz_acc, const double *dy, int N) {
    for (int i = m->spec.count - 1; i >= 0; i--) {
        const struct delta_module *mod = &m->spec.modules[i];
        struct refm_slot *s = refm_slot_at(m, i, l);
        if (s->active && mod->kind == DELTA_ADAPTER && mod->at == at && mod->insert == insert)
            adapter_backward(m, sc, s, dz_acc, dy, N);
    }
}

/* Routes the layer's prefix gradients (H,Lp,hd) to each module: its
 * prefix_k/prefix_v grads, or its block of the reparameterisation output's
 * gradient dout[module] (L, nl·2d). */
static void scatter_prefix_grads(struct refm *m, int l, const double *dpk, const double *dpv,
                                 double *const *reparam_dout) {
    const int d = m->arch.hidden, H = m->arch.heads, hd = m->arch.head_dim, Lp = m->prefix_rows[l];
    for (int i = 0; i < m->spec.count; i++) {
        const struct delta_module *mod = &m->spec.modules[i];
        const struct refm_slot *s = refm_slot_at(m, i, l);
        if (!s->active || mod->kind != DELTA_PREFIX) continue;
        double *gk, *gv;
        size_t stride;
        if (s->prefix_k) {
            gk = s->prefix_k->grad;
            gv = s->prefix_v->grad;
            stride = (size_t)d;
        } else {
            stride = (size_t)m->reparam[i].w2->shape[0];
            gk = reparam_dout[i] + (size_t)s->prefix_block * 2 * d;
            gv = gk + d;
        }
        for (int h = 0; h < H; h++)
            for (int j = 0; j < mod->size; j++) {
                const size_t src = ((size_t)h * Lp + s->prefix_offset + j) * hd;
                for (int e = 0; e < hd; e++) {
                    gk[j * stride + (size_t)h * hd + e] += dpk[src + e];
                    gv[j * stride + (size_t)h * hd + e] += dpv[src + e];
                }
            }
    }
}

/* out = E·… : dW2 += doutᵀ·h0, db2 += Σ dout, dh0 = dout·W2,
 * dh0pre = dh0 ⊙ (1 − h0²), dW0 += dh0preᵀ·E, db0 += Σ dh0pre, dE += dh0pre·W0. */
static void reparam_backward(struct refm *m, struct scratch *sc, int i, const double *dout) {
    const struct delta_module *mod = &m->spec.modules[i];
    struct refm_reparam *rp = &m->reparam[i];
    const int L = mod->size, d = m->arch.hidden, R = mod->reparam, W = rp->w2->shape[0];
    double *dh0 = scratch_doubles(sc, (size_t)L * R), *dh0pre = scratch_doubles(sc, (size_t)L * R);
    double *demb = scratch_doubles(sc, (size_t)L * d);
    ref_matmul_backward(dh0, rp->w2->grad, rp->b2->grad, dout, rp->h0, rp->w2->data, L, R, W);
    ref_tanh_backward(dh0pre, dh0, rp->h0pre, (size_t)L * R);
    ref_matmul_backward(demb, rp->w0->grad, rp->b0->grad, dh0pre, rp->emb->data, rp->w0->data, L, d, R);
    add_into(rp->emb->grad, demb, (size_t)L * d);
}

/* ------------------------------------------------------------------------
 * Layers
 * ------------------------------------------------------------------------ */

/* dout (the layer output's gradient) → dh, the gradient of h = LayerNorm_attn(x + o)
 * (overwritten). */
static void ffn_block_backward(struct refm *m, struct scratch *sc, int l, double *dh, const double *dout,
                               int N) {
    const struct refm_layer_acts *la = &m->acts.layers[l];
    const struct refm_layer *w = &m->w.layers[l];
    const int d = m->arch.hidden, I = m->arch.intermediate;
    const size_t Nd = (size_t)N * d, NI = (size_t)N * I;
    double *dres2 = scratch_doubles(sc, Nd), *ddn = scratch_doubles(sc, Nd), *tmp = scratch_doubles(sc, Nd);
    double *du = scratch_doubles(sc, NI), *dupre = scratch_doubles(sc, NI);
    ref_layernorm_backward(dres2, w->ln2_w->grad, w->ln2_b->grad, dout, la->res2, la->ln2_mean, la->ln2_rstd,
                           w->ln2_w->data, N, d);
    ref_add_backward(dh, ddn, dres2, Nd);
    adapters_backward(m, sc, l, DELTA_AT_FFN, DELTA_PARALLEL, dh, ddn, N);
    adapters_backward(m, sc, l, DELTA_AT_FFN, DELTA_SEQUENTIAL, ddn, ddn, N);
    ref_matmul_backward(du, w->wdown->grad, w->bdown->grad, ddn, la->u, w->wdown->data, N, I, d);
    loras_backward(m, sc, l, DELTA_AT_DOWN, du, ddn, N);
    model_act_backward(m->arch.act, dupre, du, la->upre, NI);
    ref_matmul_backward(tmp, w->wup->grad, w->bup->grad, dupre, la->h, w->wup->data, N, d, I);
    add_into(dh, tmp, Nd);
    loras_backward(m, sc, l, DELTA_AT_UP, dh, dupre, N);
}

/* dh → dx for the attention block (dx overwritten). */
static void attention_block_backward(struct refm *m, struct scratch *sc, int l, double *dx, const double *dh,
                                     double *const *reparam_dout, int N) {
    const struct refm_layer_acts *la = &m->acts.layers[l];
    const struct refm_layer *w = &m->w.layers[l];
    const int B = m->acts.B, T = m->acts.T, d = m->arch.hidden, H = m->arch.heads, hd = m->arch.head_dim;
    const size_t Nd = (size_t)N * d, Lp = (size_t)m->prefix_rows[l];
    double *dres1 = scratch_doubles(sc, Nd), *dout = scratch_doubles(sc, Nd), *dctx = scratch_doubles(sc, Nd);
    double *datth = scratch_doubles(sc, Nd), *tmp = scratch_doubles(sc, Nd);
    double *dqh = scratch_doubles(sc, Nd), *dkh = scratch_doubles(sc, Nd), *dvh = scratch_doubles(sc, Nd);
    double *dq = scratch_doubles(sc, Nd), *dk = scratch_doubles(sc, Nd), *dv = scratch_doubles(sc, Nd);
    double *dpk = scratch_doubles(sc, Lp * d), *dpv = scratch_doubles(sc, Lp * d); /* zeroed: accumulated */
    ref_layernorm_backward(dres1, w->ln1_w->grad, w->ln1_b->grad, dh, la->res1, la->ln1_mean, la->ln1_rstd,
                           w->ln1_w->data, N, d);
    ref_add_backward(dx, dout, dres1, Nd);
    adapters_backward(m, sc, l, DELTA_AT_ATTN, DELTA_SEQUENTIAL, dout, dout, N);
    ref_matmul_backward(dctx, w->wo->grad, w->bo->grad, dout, la->ctx, w->wo->data, N, d, d);
    loras_backward(m, sc, l, DELTA_AT_O, dctx, dout, N);
    adapters_backward(m, sc, l, DELTA_AT_ATTN, DELTA_PARALLEL, dx, dctx, N);
    refm_split_heads(datth, dctx, B, T, H, hd);
    const struct ref_attention_config cfg = {
        .B = B, .H = H, .T = T, .S = T, .L = (int)Lp, .D = hd, .causal = false, .scale = 0.0, .dropout_p = 0.0,
    };
    ref_attention_backward(dqh, dkh, dvh, Lp ? dpk : NULL, Lp ? dpv : NULL, datth, la->qh, la->kh, la->vh,
                           la->prefix_k, la->prefix_v, m->acts.keep, &cfg);
    if (Lp) scatter_prefix_grads(m, l, dpk, dpv, reparam_dout);
    refm_merge_heads(dq, dqh, B, T, H, hd);
    refm_merge_heads(dk, dkh, B, T, H, hd);
    refm_merge_heads(dv, dvh, B, T, H, hd);
    const struct {
        const struct refm_tensor *w, *b;
        const double *dy;
        enum delta_at at;
    } proj[] = {{w->wq, w->bq, dq, DELTA_AT_Q}, {w->wk, w->bk, dk, DELTA_AT_K}, {w->wv, w->bv, dv, DELTA_AT_V}};
    for (size_t k = 0; k < sizeof proj / sizeof proj[0]; k++) {
        ref_matmul_backward(tmp, proj[k].w->grad, proj[k].b->grad, proj[k].dy, la->x, proj[k].w->data, N, d, d);
        add_into(dx, tmp, Nd);
        loras_backward(m, sc, l, proj[k].at, dx, proj[k].dy, N);
    }
}

/* ------------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------------ */

/* Head: dlogits = CE'(logits); dpool = dlogits·W_cls, dW_cls += dlogitsᵀ·pool;
 * dpool_pre = dpool ⊙ (1 − pool²); dcls = dpool_pre·W1 (pooler or dense),
 * dW1 += dpool_preᵀ·cls; dx_L[b,0] = dcls[b], 0 at every other token. */
static void head_backward(struct refm *m, struct scratch *sc, double *dxL) {
    const struct refm_acts *a = &m->acts;
    const int B = a->B, T = a->T, d = m->arch.hidden, C = m->arch.num_labels;
    double *dlogits = scratch_doubles(sc, (size_t)B * C), *dpool = scratch_doubles(sc, (size_t)B * d);
    double *dpool_pre = scratch_doubles(sc, (size_t)B * d), *dcls = scratch_doubles(sc, (size_t)B * d);
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
static void embeddings_backward(struct refm *m, struct scratch *sc, const double *dx0, int N) {
    const struct refm_weights *w = &m->w;
    const struct refm_acts *a = &m->acts;
    const int d = m->arch.hidden;
    if (!w->ln_emb_w->grad && !w->ln_emb_b->grad && !w->word->grad && !w->pos->grad && !grad_of(w->type))
        return;
    double *de = scratch_doubles(sc, (size_t)N * d);
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
    struct scratch sc = {0};
    double *dnext = scratch_doubles(&sc, (size_t)N * d), *dh = scratch_doubles(&sc, (size_t)N * d);
    double *dx = scratch_doubles(&sc, (size_t)N * d);
    double **reparam_dout = calloc((size_t)m->spec.count + 1, sizeof *reparam_dout);
    assert(reparam_dout);
    for (int i = 0; i < m->spec.count; i++)
        if (m->reparam[i].emb)
            reparam_dout[i] = scratch_doubles(&sc, (size_t)m->spec.modules[i].size * m->reparam[i].w2->shape[0]);

    head_backward(m, &sc, dnext);
    for (int l = m->arch.layers - 1; l >= 0; l--) {
        struct scratch layer_sc = {0};
        ffn_block_backward(m, &layer_sc, l, dh, dnext, N);
        attention_block_backward(m, &layer_sc, l, dx, dh, reparam_dout, N);
        memcpy(dnext, dx, (size_t)N * d * sizeof(double));
        scratch_free(&layer_sc);
    }
    embeddings_backward(m, &sc, dnext, N);
    for (int i = 0; i < m->spec.count; i++)
        if (m->reparam[i].emb) reparam_backward(m, &sc, i, reparam_dout[i]);
    free(reparam_dout);
    scratch_free(&sc);
}
