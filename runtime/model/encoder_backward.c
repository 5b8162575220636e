/* The encoder's backward pass: the forward's list of calls reversed
 * (tests/reference/model_backward.c step for step), from the activations
 * encoder_forward.c kept.
 *
 * Frozen tensors have no gradient buffer, so the kernels get NULL for their
 * dW and db and compute input gradients only; weight gradients exist exactly
 * for the delta params. Parameter gradients accumulate (+=, into the params'
 * gradient arena); activation gradients are overwritten, in buffers shared
 * by every layer. Where a tensor is read by two paths (a residual branch, a
 * parallel module's input, a projection with LoRA) the second path's
 * gradient is added into the first's: dx_acc += …, with a batched product
 * (beta = 1) where the weight is an fp32 param, else with an add. */
#include "encoder.h"

#include <stdio.h>
#include <string.h>

static struct kernel_matrix mat(const struct vk_buffer *buf, uint64_t stride) {
    return (struct kernel_matrix){buf, 0, stride};
}

static const struct vk_buffer *grad_of(const struct enc_weight *w) { return w ? w->grad : NULL; }

static vp_status dropout_back(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *dx, uint64_t n,
                              double p, int layer, int site) {
    if (p <= 0.0) return VP_OK;
    const struct kernel_dropout_key key = {e->opt.seed, e->step, enc_dropout_stream(layer, site)};
    return kernel_dropout_backward(e->ctx, rec, dx, dx, n, &key, p);
}

/* dX (M,K) = dY·W (overwrite), dW += dYᵀ·X, db += Σ dY for a model tensor
 * (weight gradients only when trained). */
static vp_status linear_back(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *dx,
                             const struct vk_buffer *dy, const struct vk_buffer *x, const struct enc_weight *w,
                             const struct enc_weight *b, uint32_t M, uint32_t K, uint32_t N) {
    return kernel_matmul_backward(e->ctx, rec, dx, grad_of(w), grad_of(b), dy, x, w->buf, w->dtype, M, K, N,
                                  NULL);
}

static vp_status linear_param_back(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *dx,
                                   const struct vk_buffer *dy, const struct vk_buffer *x,
                                   const struct delta_param *w, const struct delta_param *b, uint32_t M,
                                   uint32_t K, uint32_t N) {
    return kernel_matmul_backward(e->ctx, rec, dx, &w->grad, b ? &b->grad : NULL, dy, x, &w->value,
                                  VP_DTYPE_F32, M, K, N, NULL);
}

/* acc (M,N) += a (M,K) · W (K,N) with an fp32 param W stored (K,N). */
static vp_status accumulate_product(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *acc,
                                    const struct vk_buffer *a, const struct vk_buffer *w, uint32_t M, uint32_t N,
                                    uint32_t K) {
    return kernel_matmul_batched(e->ctx, rec, mat(acc, 0), mat(a, 0), mat(w, 0), 1, M, N, K, false, false, 1.0f,
                                 1.0f, NULL);
}

static vp_status gather(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *out,
                        const struct vk_buffer *ids, const struct vk_buffer *table, uint64_t N, uint32_t C) {
    return kernel_embedding_forward(e->ctx, rec, out, ids, table, (uint32_t)N, (uint32_t)N, C, VP_DTYPE_F32,
                                    false);
}

static enum kernel_activation delta_act(enum delta_act a) {
    return a == DELTA_ACT_GELU ? KERNEL_ACT_GELU : KERNEL_ACT_RELU;
}

static enum kernel_activation model_act(enum model_act a) {
    switch (a) {
    case MODEL_ACT_GELU_TANH: return KERNEL_ACT_GELU_TANH;
    case MODEL_ACT_RELU: return KERNEL_ACT_RELU;
    case MODEL_ACT_SILU: return KERNEL_ACT_SILU;
    default: return KERNEL_ACT_GELU;
    }
}

/* ------------------------------------------------------------------------
 * Delta modules
 * ------------------------------------------------------------------------ */

/* Per head, on (H,N,·) slices: dh_act = dΔ_h·W_up[h], dW_up[h] += dΔ_hᵀ·a_h,
 * db_up[h] += 1ᵀ·dΔ_h; then (after f') dW_down[h] += dp_hᵀ·z_h,
 * db_down[h] += 1ᵀ·dp_h, dz_h = dp_h·W_down[h], merged and added into dz_acc. */
static vp_status adapter_heads_back_up(struct encoder *e, struct vk_recorder *rec, const struct enc_slot *s,
                                       const struct vk_buffer *hact, const struct vk_buffer *ddelta, uint32_t N) {
    struct enc_acts *a = &e->acts;
    const uint32_t H = (uint32_t)e->arch.heads, hd = (uint32_t)e->arch.head_dim, r = (uint32_t)s->rank;
    const uint64_t NH = (uint64_t)N * H, Nr = (uint64_t)N * r, Nhd = (uint64_t)N * hd;
    vp_status st = gather(e, rec, &a->g_ddh, &a->ids_hsplit, ddelta, NH, hd);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(&a->g_hact, Nr), mat(&a->g_ddh, Nhd),
                                   mat(&s->up_w->value, (uint64_t)hd * r), H, N, r, hd, false, false, 1.0f, 0.0f,
                                   NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(&s->up_w->grad, (uint64_t)hd * r), mat(&a->g_ddh, Nhd),
                                   mat(hact, Nr), H, hd, r, N, true, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(&s->up_b->grad, hd), mat(&a->ones, 0), mat(&a->g_ddh, Nhd), H,
                                   1, hd, N, true, false, 1.0f, 1.0f, NULL);
    return st;
}

static vp_status adapter_heads_back_down(struct encoder *e, struct vk_recorder *rec, const struct enc_slot *s,
                                         const struct enc_slot_acts *sa, const struct vk_buffer *dz_acc,
                                         uint32_t N) {
    struct enc_acts *a = &e->acts;
    const uint32_t H = (uint32_t)e->arch.heads, hd = (uint32_t)e->arch.head_dim, r = (uint32_t)s->rank;
    const uint64_t NH = (uint64_t)N * H, Nr = (uint64_t)N * r, Nhd = (uint64_t)N * hd;
    vp_status st = kernel_matmul_batched(e->ctx, rec, mat(&s->down_w->grad, (uint64_t)r * hd), mat(&a->g_hact, Nr),
                                         mat(&sa->zh, Nhd), H, r, hd, N, true, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(&s->down_b->grad, r), mat(&a->ones, 0), mat(&a->g_hact, Nr),
                                   H, 1, r, N, true, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(&a->g_dzh, Nhd), mat(&a->g_hact, Nr),
                                   mat(&s->down_w->value, (uint64_t)r * hd), H, N, hd, r, false, false, 1.0f, 0.0f,
                                   NULL);
    if (st == VP_OK) st = gather(e, rec, &a->g_dz, &a->ids_hmerge, &a->g_dzh, NH, hd);
    if (st == VP_OK) st = kernel_add_forward(e->ctx, rec, dz_acc, dz_acc, &a->g_dz, (uint64_t)N * e->arch.hidden);
    return st;
}

/* out = t + s·Δ(z), dy given:
 *   dΔ = s·dy (add: dy itself; scale), or for gated s = σ(g): dΔ = σ(g)·dy,
 *   dg += σ(g)(1−σ(g))·Σ dy ⊙ Δ;
 *   dW_u += dΔᵀ·a, db_u += Σ dΔ, da = dΔ·W_u, dp = dropout'(da) ⊙ f'(p),
 *   dW_d += dpᵀ·z, db_d += Σ dp, dz_acc += dp·W_d.
 * dt = dy needs nothing (the target's gradient is dy). For a sequential
 * adapter dz_acc is dy itself: dΔ and the up-projection's gradients read it
 * before the last product adds into it. */
static vp_status adapter_backward(struct encoder *e, struct vk_recorder *rec, const struct enc_slot *s,
                                  const struct vk_buffer *dz_acc, // (N,d) accumulated
                                  const struct vk_buffer *dy,     // (N,d)
                                  uint32_t N) {
    const struct delta_module *m = &e->spec.modules[s->module];
    const struct enc_slot_acts *sa = enc_slot_acts_at(e, s->module, s->layer);
    struct enc_acts *a = &e->acts;
    const uint32_t d = (uint32_t)e->arch.hidden, r = (uint32_t)m->size;
    const uint64_t rows = m->per_head ? (uint64_t)N * e->arch.heads : N;
    const struct vk_buffer *ddelta = dy;
    vp_status st = VP_OK;
    if (m->compose == DELTA_COMPOSE_GATED) {
        ddelta = &a->g_delta;
        st = kernel_sigmoid_gate_backward(e->ctx, rec, NULL, &a->g_delta, &s->gate->grad, &a->gate_scratch, dy,
                                          &sa->delta, &s->gate->value, N, d, 1);
    } else if (m->compose == DELTA_COMPOSE_SCALE) {
        ddelta = &a->g_delta;
        st = kernel_scale_backward(e->ctx, rec, &a->g_delta, dy, (float)m->scale, (uint64_t)N * d);
    }
    const struct vk_buffer *hact = sa->hact_own ? &sa->hact : &sa->hpre;
    if (st == VP_OK) {
        if (m->per_head) st = adapter_heads_back_up(e, rec, s, hact, ddelta, N);
        else st = linear_param_back(e, rec, &a->g_hact, ddelta, hact, s->up_w, s->up_b, N, r, d);
    }
    if (st == VP_OK)
        st = dropout_back(e, rec, &a->g_hact, rows * r,
                          enc_dropout_p(e, true, m->dropout >= 0 ? m->dropout : e->arch.hidden_dropout), s->layer,
                          ENC_SITE_ADAPTER + s->module);
    if (st == VP_OK && m->act != DELTA_ACT_IDENTITY)
        st = kernel_activation_backward(e->ctx, rec, &a->g_hact, &a->g_hact, &sa->hpre, rows * r, delta_act(m->act));
    if (st != VP_OK) return st;
    if (m->per_head) return adapter_heads_back_down(e, rec, s, sa, dz_acc, N);
    st = linear_param_back(e, rec, NULL, &a->g_hact, sa->in, s->down_w, s->down_b, N, d, r);
    if (st == VP_OK) st = accumulate_product(e, rec, dz_acc, &a->g_hact, &s->down_w->value, N, d, r);
    return st;
}

/* y = y₀ + s·(x·Aᵀ)·Bᵀ, z = x·Aᵀ, s = α/r:
 *   dz = s·dy·B, dB += s·dyᵀ·z, dA += dzᵀ·x, dx_acc += dz·A. */
static vp_status lora_backward(struct encoder *e, struct vk_recorder *rec, const struct enc_slot *s,
                               const struct vk_buffer *dx_acc, // (N,din) accumulated
                               const struct vk_buffer *dy,     // (N,dout)
                               uint32_t N) {
    const struct delta_module *m = &e->spec.modules[s->module];
    const struct enc_slot_acts *sa = enc_slot_acts_at(e, s->module, s->layer);
    struct enc_acts *a = &e->acts;
    const uint32_t r = (uint32_t)m->size, din = (uint32_t)s->din, dout = (uint32_t)s->dout;
    const float scale = (float)(m->alpha / m->size);
    vp_status st = kernel_matmul_batched(e->ctx, rec, mat(&a->g_hact, 0), mat(dy, 0), mat(&s->lora_b->value, 0), 1,
                                         N, r, dout, false, false, scale, 0.0f, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(&s->lora_b->grad, 0), mat(dy, 0), mat(&sa->hpre, 0), 1, dout,
                                   r, N, true, false, scale, 1.0f, NULL);
    if (st == VP_OK) st = linear_param_back(e, rec, NULL, &a->g_hact, sa->in, s->lora_a, NULL, N, din, r);
    if (st == VP_OK) st = accumulate_product(e, rec, dx_acc, &a->g_hact, &s->lora_a->value, N, din, r);
    return st;
}

static vp_status loras_backward(struct encoder *e, struct vk_recorder *rec, int l, enum delta_at at,
                                const struct vk_buffer *dx_acc, const struct vk_buffer *dy, uint32_t N) {
    const char *site = vk_recorder_label(rec, "backward lora");
    vp_status st = VP_OK;
    for (int i = e->spec.count - 1; i >= 0 && st == VP_OK; i--) {
        const struct enc_slot *s = enc_slot_at(e, i, l);
        if (s->active && e->spec.modules[i].kind == DELTA_LORA && e->spec.modules[i].at == at)
            st = lora_backward(e, rec, s, dx_acc, dy, N);
    }
    vk_recorder_label(rec, site);
    return st;
}

static vp_status adapters_backward(struct encoder *e, struct vk_recorder *rec, int l, enum delta_at at,
                                   enum delta_insert insert, const struct vk_buffer *dz_acc,
                                   const struct vk_buffer *dy, uint32_t N) {
    const char *site = vk_recorder_label(rec, "backward adapter");
    vp_status st = VP_OK;
    for (int i = e->spec.count - 1; i >= 0 && st == VP_OK; i--) {
        const struct delta_module *m = &e->spec.modules[i];
        const struct enc_slot *s = enc_slot_at(e, i, l);
        if (s->active && m->kind == DELTA_ADAPTER && m->at == at && m->insert == insert)
            st = adapter_backward(e, rec, s, dz_acc, dy, N);
    }
    vk_recorder_label(rec, site);
    return st;
}

/* ------------------------------------------------------------------------
 * Layers
 * ------------------------------------------------------------------------ */

static vp_status layernorm_back(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *dx,
                                const struct vk_buffer *dy, const struct vk_buffer *x, const struct vk_buffer *mean,
                                const struct vk_buffer *rstd, const struct enc_weight *w, const struct enc_weight *b,
                                uint32_t N) {
    const bool params = w->grad || b->grad;
    return kernel_layernorm_backward(e->ctx, rec, dx, w->grad, b->grad, params ? &e->acts.norm_scratch : NULL, dy, x,
                                     mean, rstd, w->buf, N, (uint32_t)e->arch.hidden, VP_DTYPE_F32, KERNEL_ROWS_AUTO);
}

/* dout (the layer output's gradient) → g_h, the gradient of h. */
static vp_status ffn_block_backward(struct encoder *e, struct vk_recorder *rec, int l, const struct vk_buffer *dout,
                                    uint32_t N) {
    const char *site = vk_recorder_label(rec, "backward ffn");
    struct enc_acts *a = &e->acts;
    const struct enc_layer_acts *la = &a->layers[l];
    const struct enc_layer_weights *w = &e->w.layers[l];
    const uint32_t d = (uint32_t)e->arch.hidden, I = (uint32_t)e->arch.intermediate;
    const uint64_t Nd = (uint64_t)N * d;
    const struct vk_buffer *ddn = &a->g_res;
    vp_status st = layernorm_back(e, rec, &a->g_res, dout, &la->res2, &la->mean2, &la->rstd2, w->ln2_w, w->ln2_b, N);
    if (st == VP_OK) st = vk_recorder_copy(rec, &a->g_h, 0, &a->g_res, 0, Nd * 4);
    if (st == VP_OK) st = adapters_backward(e, rec, l, DELTA_AT_FFN, DELTA_PARALLEL, &a->g_h, ddn, N);
    if (st == VP_OK) st = adapters_backward(e, rec, l, DELTA_AT_FFN, DELTA_SEQUENTIAL, ddn, ddn, N);
    if (st == VP_OK)
        st = dropout_back(e, rec, ddn, Nd, enc_dropout_p(e, true, e->arch.hidden_dropout), l, ENC_SITE_FFN_OUT);
    if (st == VP_OK) st = linear_back(e, rec, &a->g_u, ddn, &la->u, w->wdown, w->bdown, N, I, d);
    if (st == VP_OK) st = loras_backward(e, rec, l, DELTA_AT_DOWN, &a->g_u, ddn, N);
    if (st == VP_OK)
        st = kernel_activation_backward(e->ctx, rec, &a->g_u, &a->g_u, &la->upre, (uint64_t)N * I,
                                        model_act(e->arch.act));
    if (st == VP_OK) st = linear_back(e, rec, &a->g_tmp, &a->g_u, &la->h, w->wup, w->bup, N, d, I);
    if (st == VP_OK) st = kernel_add_forward(e->ctx, rec, &a->g_h, &a->g_h, &a->g_tmp, Nd);
    if (st == VP_OK) st = loras_backward(e, rec, l, DELTA_AT_UP, &a->g_h, &a->g_u, N);
    vk_recorder_label(rec, site);
    return st;
}

/* g_h → dx for the attention block (overwritten). */
static vp_status attention_block_backward(struct encoder *e, struct vk_recorder *rec, int l,
                                          const struct vk_buffer *dx, uint32_t N) {
    const char *site = vk_recorder_label(rec, "backward attention");
    struct enc_acts *a = &e->acts;
    const struct enc_layer_acts *la = &a->layers[l];
    const struct enc_layer_weights *w = &e->w.layers[l];
    const struct model_arch *ar = &e->arch;
    const uint32_t d = (uint32_t)ar->hidden, hd = (uint32_t)ar->head_dim, Lp = (uint32_t)e->prefix_rows[l];
    const uint64_t Nd = (uint64_t)N * d, NH = (uint64_t)N * ar->heads;
    const struct vk_buffer *dout = &a->g_res;
    vp_status st = layernorm_back(e, rec, &a->g_res, &a->g_h, &la->res1, &la->mean1, &la->rstd1, w->ln1_w, w->ln1_b, N);
    if (st == VP_OK) st = vk_recorder_copy(rec, dx, 0, &a->g_res, 0, Nd * 4);
    if (st == VP_OK) st = adapters_backward(e, rec, l, DELTA_AT_ATTN, DELTA_SEQUENTIAL, dout, dout, N);
    if (st == VP_OK)
        st = dropout_back(e, rec, dout, Nd, enc_dropout_p(e, true, ar->hidden_dropout), l, ENC_SITE_ATTN_OUT);
    if (st == VP_OK) st = linear_back(e, rec, &a->g_ctx, dout, la->ctx_final, w->wo, w->bo, N, d, d);
    if (st == VP_OK) st = loras_backward(e, rec, l, DELTA_AT_O, &a->g_ctx, dout, N);
    if (st == VP_OK) st = adapters_backward(e, rec, l, DELTA_AT_ATTN, DELTA_PARALLEL, dx, &a->g_ctx, N);
    if (st == VP_OK) st = gather(e, rec, &a->g_atth, &a->ids_split, &a->g_ctx, NH, hd);
    if (st == VP_OK && Lp) {
        st = vk_recorder_fill(rec, &a->g_pk, 0, (uint64_t)Lp * d * 4, 0);
        if (st == VP_OK) st = vk_recorder_fill(rec, &a->g_pv, 0, (uint64_t)Lp * d * 4, 0);
    }
    struct kernel_attention_config cfg = {
        .B = (uint32_t)a->B, .H = (uint32_t)ar->heads, .T = (uint32_t)a->T, .S = (uint32_t)a->T, .L = Lp, .D = hd,
        .dropout_p = enc_dropout_p(e, true, ar->attention_dropout), .dropout_seed = e->opt.seed,
        .dropout_step = e->step, .dropout_stream = enc_dropout_stream(l, ENC_SITE_ATTN_PROBS),
    };
    if (st == VP_OK)
        st = kernel_attention_backward(e->ctx, rec, &a->g_qh, &a->g_kh, &a->g_vh, Lp ? &a->g_pk : NULL,
                                       Lp ? &a->g_pv : NULL, &a->attn_scratch, &a->g_atth, &la->atth, &la->lse,
                                       &la->qh, &la->kh, &la->vh, Lp ? &la->pk : NULL, Lp ? &la->pv : NULL, &a->keep,
                                       &cfg);
    if (st == VP_OK && Lp) {
        const uint32_t n = Lp * d, V = (uint32_t)e->prefix_src_elems;
        st = kernel_embedding_backward(e->ctx, rec, &a->dprefix_src, &a->g_pk, &la->groups_pk, n, V, 1);
        if (st == VP_OK) st = kernel_embedding_backward(e->ctx, rec, &a->dprefix_src, &a->g_pv, &la->groups_pv, n, V, 1);
    }
    const struct {
        const struct vk_buffer *dh;
        const struct enc_weight *w, *b;
        enum delta_at at;
    } proj[3] = {{&a->g_qh, w->wq, w->bq, DELTA_AT_Q}, {&a->g_kh, w->wk, w->bk, DELTA_AT_K},
                 {&a->g_vh, w->wv, w->bv, DELTA_AT_V}};
    for (int k = 0; k < 3 && st == VP_OK; k++) {
        st = gather(e, rec, &a->g_q, &a->ids_merge, proj[k].dh, NH, hd);
        if (st == VP_OK) st = linear_back(e, rec, &a->g_tmp, &a->g_q, la->x, proj[k].w, proj[k].b, N, d, d);
        if (st == VP_OK) st = kernel_add_forward(e->ctx, rec, dx, dx, &a->g_tmp, Nd);
        if (st == VP_OK) st = loras_backward(e, rec, l, proj[k].at, dx, &a->g_q, N);
    }
    vk_recorder_label(rec, site);
    return st;
}

/* ------------------------------------------------------------------------
 * Head, embeddings, prefixes
 * ------------------------------------------------------------------------ */

/* The MLM head (encoder_forward.c): dlogits = CE'; dh = dlogits·Word,
 * dWord += dlogitsᵀ·h (the tied decoder, when the table is trained: added
 * to the gather's scatter the embeddings' backward adds later), dbias;
 * LayerNorm' (dγ, dβ); act'; dx_L = dpre·W_t (dW_t, db_t). */
static vp_status mlm_head_backward(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *dxL) {
    struct enc_acts *a = &e->acts;
    const struct model_arch *ar = &e->arch;
    const struct enc_head *h = &e->head;
    const uint32_t N = (uint32_t)(a->B * a->T), d = (uint32_t)ar->hidden, V = (uint32_t)ar->vocab_size;
    const struct kernel_cross_entropy_config ce = {N, V, ENCODER_IGNORE_INDEX, (float)e->opt.label_smoothing};
    vp_status st = kernel_cross_entropy_backward(e->ctx, rec, &a->g_logits, &a->logits, &a->labels, &a->ce_lse,
                                                 &a->loss, 1.0f, &ce);
    if (st == VP_OK)
        st = kernel_matmul_backward(e->ctx, rec, &a->g_tmp, e->w.word->grad, &h->mlm_bias->grad, &a->g_logits,
                                    &a->mlm_h, e->w.word->buf, e->w.word->dtype, N, d, V, NULL);
    if (st == VP_OK)
        st = kernel_layernorm_backward(e->ctx, rec, &a->g_res, &h->mlm_ln_w->grad, &h->mlm_ln_b->grad,
                                       &a->norm_scratch, &a->g_tmp, &a->mlm_act, &a->mlm_mean, &a->mlm_rstd,
                                       &h->mlm_ln_w->value, N, d, VP_DTYPE_F32, KERNEL_ROWS_AUTO);
    if (st == VP_OK)
        st = kernel_activation_backward(e->ctx, rec, &a->g_res, &a->g_res, &a->mlm_pre, (uint64_t)N * d,
                                        ar->family == MODEL_FAMILY_BERT ? model_act(ar->act) : KERNEL_ACT_GELU);
    if (st == VP_OK)
        st = linear_param_back(e, rec, dxL, &a->g_res, &a->layers[ar->layers - 1].out, h->mlm_w, h->mlm_b, N, d, d);
    return st;
}

/* dlogits = CE'; dpool = dlogits·W_cls (dW_cls, db_cls); dropout'; tanh';
 * dcls = dpool_pre·W1 (pooler / dense: dW1, db1 when trained); RoBERTa's
 * dropout'; dx_L = dcls at each sequence's [CLS] row, 0 elsewhere. */
static vp_status head_backward(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *dxL) {
    struct enc_acts *a = &e->acts;
    const struct model_arch *ar = &e->arch;
    const uint32_t B = (uint32_t)a->B, N = (uint32_t)(a->B * a->T), d = (uint32_t)ar->hidden;
    const uint32_t C = (uint32_t)ar->num_labels;
    const double p = enc_dropout_p(e, true, ar->classifier_dropout);
    const struct kernel_cross_entropy_config ce = {B, C, ENCODER_IGNORE_INDEX, (float)e->opt.label_smoothing};
    vp_status st = kernel_cross_entropy_backward(e->ctx, rec, &a->g_logits, &a->logits, &a->labels, &a->ce_lse,
                                                 &a->loss, 1.0f, &ce);
    if (st == VP_OK) st = linear_param_back(e, rec, &a->g_pool, &a->g_logits, &a->pool, e->head.cls_w, e->head.cls_b, B, d, C);
    if (st == VP_OK) st = dropout_back(e, rec, &a->g_pool, (uint64_t)B * d, p, -1, ENC_SITE_HEAD_POOL);
    if (st == VP_OK)
        st = kernel_activation_backward(e->ctx, rec, &a->g_pool, &a->g_pool, &a->pool_pre, (uint64_t)B * d,
                                        KERNEL_ACT_TANH);
    if (ar->family == MODEL_FAMILY_BERT) {
        if (st == VP_OK) st = linear_back(e, rec, &a->g_cls, &a->g_pool, &a->cls, e->w.pool_w, e->w.pool_b, B, d, d);
    } else {
        if (st == VP_OK)
            st = linear_param_back(e, rec, &a->g_cls, &a->g_pool, &a->cls, e->head.dense_w, e->head.dense_b, B, d, d);
        if (st == VP_OK) st = dropout_back(e, rec, &a->g_cls, (uint64_t)B * d, p, -1, ENC_SITE_HEAD_CLS);
    }
    if (st == VP_OK) st = vk_recorder_fill(rec, dxL, 0, (uint64_t)N * d * 4, 0);
    if (st == VP_OK) st = kernel_embedding_backward(e->ctx, rec, dxL, &a->g_cls, &a->groups_cls, B, N, d);
    return st;
}

/* x0 = dropout(LayerNorm_emb(word[ids] + pos[pos] + type[types])):
 * de = LN'(dropout'(dx0)), dword[ids] += de, dpos[pos] += de, dtype[types] += de. */
static vp_status embeddings_backward(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *dx0,
                                     uint32_t N) {
    struct enc_acts *a = &e->acts;
    const struct model_arch *ar = &e->arch;
    const uint32_t d = (uint32_t)ar->hidden;
    if (!e->embeddings_trained) return VP_OK;
    vp_status st = dropout_back(e, rec, dx0, (uint64_t)N * d, enc_dropout_p(e, true, ar->hidden_dropout), -1,
                                ENC_SITE_EMB);
    if (st == VP_OK)
        st = layernorm_back(e, rec, &a->g_res, dx0, &a->emb, &a->emb_mean, &a->emb_rstd, e->w.ln_emb_w, e->w.ln_emb_b, N);
    if (st == VP_OK && e->w.word->grad)
        st = kernel_embedding_backward(e->ctx, rec, e->w.word->grad, &a->g_res, &a->groups_word, N,
                                       (uint32_t)ar->vocab_size, d);
    if (st == VP_OK && e->w.pos->grad)
        st = kernel_embedding_backward(e->ctx, rec, e->w.pos->grad, &a->g_res, &a->groups_pos, N,
                                       (uint32_t)ar->max_positions, d);
    if (st == VP_OK && e->w.type && e->w.type->grad)
        st = kernel_embedding_backward(e->ctx, rec, e->w.type->grad, &a->g_res, &a->groups_type, N,
                                       (uint32_t)ar->type_vocab_size, d);
    return st;
}

/* The prefix rows' gradients gathered in dprefix_src go to their params: a
 * plain module's P_k, P_v grads (+=), a reparameterised module's MLP:
 *   dW2 += doutᵀ·h0, db2 += Σ dout, dh0 = dout·W2, dh0pre = dh0 ⊙ tanh'(h0pre),
 *   dW0 += dh0preᵀ·E, db0 += Σ dh0pre, dE += dh0pre·W0. */
static vp_status prefixes_backward(struct encoder *e, struct vk_recorder *rec) {
    const char *site = vk_recorder_label(rec, "backward prefix");
    struct enc_acts *a = &e->acts;
    const uint32_t d = (uint32_t)e->arch.hidden;
    vp_status st = VP_OK;
    for (int i = 0; i < e->spec.count && st == VP_OK; i++) {
        const struct delta_module *m = &e->spec.modules[i];
        if (m->kind != DELTA_PREFIX) continue;
        if (m->reparam == 0) {
            for (int l = 0; l < e->arch.layers && st == VP_OK; l++) {
                const struct enc_slot *s = enc_slot_at(e, i, l);
                if (!s->active) continue;
                const uint64_t n = s->prefix_k->n;
                struct vk_buffer gk = enc_view(&a->dprefix_src, s->src_k * 4, n * 4);
                struct vk_buffer gv = enc_view(&a->dprefix_src, s->src_v * 4, n * 4);
                st = kernel_add_forward(e->ctx, rec, &s->prefix_k->grad, &s->prefix_k->grad, &gk, n);
                if (st == VP_OK) st = kernel_add_forward(e->ctx, rec, &s->prefix_v->grad, &s->prefix_v->grad, &gv, n);
            }
            continue;
        }
        const struct enc_reparam_acts *ra = &a->reparam[i];
        const struct delta_param *p[5];
        static const char *const parts[5] = {"embedding", "0.weight", "0.bias", "2.weight", "2.bias"};
        for (int k = 0; k < 5; k++) {
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "delta%d.reparam.%s", i, parts[k]);
            p[k] = delta_params_find(e->params, name);
        }
        const uint32_t L = (uint32_t)m->size, R = (uint32_t)m->reparam, W = (uint32_t)p[4]->n;
        struct vk_buffer dout = enc_view(&a->dprefix_src, ra->out_offset * 4, (uint64_t)L * W * 4);
        st = linear_param_back(e, rec, &ra->dh0, &dout, &ra->h0, p[3], p[4], L, R, W);
        if (st == VP_OK)
            st = kernel_activation_backward(e->ctx, rec, &ra->dh0, &ra->dh0, &ra->h0pre, (uint64_t)L * R, KERNEL_ACT_TANH);
        if (st == VP_OK) st = linear_param_back(e, rec, NULL, &ra->dh0, &p[0]->value, p[1], p[2], L, d, R);
        if (st == VP_OK) st = accumulate_product(e, rec, &p[0]->grad, &ra->dh0, &p[1]->value, L, d, R);
    }
    vk_recorder_label(rec, site);
    return st;
}

vp_status enc_record_backward(struct encoder *e, struct vk_recorder *rec) {
    const char *site = vk_recorder_label(rec, "backward");
    struct enc_acts *a = &e->acts;
    const uint32_t N = (uint32_t)(a->B * a->T);
    const struct vk_buffer *dcur = &a->g_cur, *dnext = &a->g_next;
    vp_status st = VP_OK;
    if (e->prefix_src_elems) st = vk_recorder_fill(rec, &a->dprefix_src, 0, e->prefix_src_elems * 4, 0);
    if (st == VP_OK)
        st = e->arch.head == MODEL_HEAD_MLM ? mlm_head_backward(e, rec, dcur) : head_backward(e, rec, dcur);
    for (int l = e->arch.layers - 1; l >= 0 && st == VP_OK; l--) {
        /* checkpointing: layer l again into the shared buffers (the last one's are there) */
        if (e->opt.checkpoint_activations && l < e->arch.layers - 1) st = enc_record_layer(e, rec, l, true);
        if (st == VP_OK) st = ffn_block_backward(e, rec, l, dcur, N);
        if (st == VP_OK) st = attention_block_backward(e, rec, l, dnext, N);
        const struct vk_buffer *t = dcur;
        dcur = dnext;
        dnext = t;
    }
    if (st == VP_OK) st = embeddings_backward(e, rec, dcur, N);
    if (st == VP_OK) st = prefixes_backward(e, rec);
    vk_recorder_label(rec, site);
    return st;
}
