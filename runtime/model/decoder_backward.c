/* The decoder's backward pass: from the cross-entropy back through the LM
 * head, the final norm and every layer to the first layer's input,
 * accumulating (+=) the gradient of every LoRA module's A and B. Frozen
 * weights get no gradient; only the activation gradients the deltas need
 * are formed. The buffers (g_*) are shared across layers: g_x holds the
 * gradient of the current layer's output, then of its input. */
#include "decoder_lm.h"

static struct kernel_matrix mat(const struct vk_buffer *buf) { return (struct kernel_matrix){buf, 0, 0}; }

/* dx = dy·W (overwrite) for an [out, in] piece, frozen or trained. */
static vp_status linear_back(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *dx,
                             const struct vk_buffer *dy, const struct dec_weight *w, uint32_t N) {
    if (!w->param)
        return kernel_matmul_backward(m->ctx, rec, dx, NULL, NULL, dy, NULL, &w->frozen, w->dtype, N, (uint32_t)w->in,
                                      (uint32_t)w->out, NULL);
    return kernel_matmul_batched(m->ctx, rec, mat(dx), mat(dy), (struct kernel_matrix){&w->param->value, w->poff, 0},
                                 1, N, (uint32_t)w->in, (uint32_t)w->out, false, false, 1.0f, 0.0f, NULL);
}

/* Trained pieces (full): dW += dyᵀ·x, db += Σ_n dy, at the pieces' offsets. */
static vp_status weight_grads(struct decoder *m, struct vk_recorder *rec, const struct dec_weight *w,
                              const struct dec_weight *b, const struct vk_buffer *dy, const struct vk_buffer *x,
                              uint32_t N) {
    vp_status st = VP_OK;
    if (w->param)
        st = kernel_matmul_batched(m->ctx, rec, (struct kernel_matrix){&w->param->grad, w->poff, 0}, mat(dy), mat(x), 1,
                                   (uint32_t)w->out, (uint32_t)w->in, N, true, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK && b && b->param)
        st = kernel_matmul_batched(m->ctx, rec, (struct kernel_matrix){&b->param->grad, b->poff, 0},
                                   mat(&m->acts.ones), mat(dy), 1, 1, (uint32_t)b->out, N, true, false, 1.0f, 1.0f,
                                   NULL);
    return st;
}

/* For y += s·(x·Aᵀ)·Bᵀ with hpre = x·Aᵀ: dB += s·dyᵀ·hpre, dh = s·dy·B,
 * dA += dhᵀ·x, dx_acc += dh·A. */
static vp_status loras_backward(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                                const struct vk_buffer *dx_acc, const struct vk_buffer *dy, uint32_t N) {
    const char *site = vk_recorder_label(rec, "backward lora");
    struct dec_acts *a = &m->acts;
    vp_status st = VP_OK;
    for (int i = m->spec.count - 1; i >= 0 && st == VP_OK; i--) {
        const struct delta_module *d = &m->spec.modules[i];
        const struct dec_slot *s = dec_slot_at(m, i, l);
        if (!s->active || d->kind != DELTA_LORA || d->at != at) continue;
        const uint32_t r = (uint32_t)d->size, din = (uint32_t)s->din, dout = (uint32_t)s->dout;
        const float scale = (float)(d->alpha / d->size);
        st = kernel_matmul_batched(m->ctx, rec, mat(&a->g_r), mat(dy), mat(&s->lora_b->value), 1, N, r, dout, false,
                                   false, scale, 0.0f, NULL);
        if (st == VP_OK)
            st = kernel_matmul_batched(m->ctx, rec, mat(&s->lora_b->grad), mat(dy), mat(&s->hpre), 1, dout, r, N, true,
                                       false, scale, 1.0f, NULL);
        if (st == VP_OK)
            st = kernel_matmul_backward(m->ctx, rec, NULL, &s->lora_a->grad, NULL, &a->g_r, s->in, &s->lora_a->value,
                                        VP_DTYPE_F32, N, din, r, NULL);
        if (st == VP_OK)
            st = kernel_matmul_batched(m->ctx, rec, mat(dx_acc), mat(&a->g_r), mat(&s->lora_a->value), 1, N, din, r,
                                       false, false, 1.0f, 1.0f, NULL);
    }
    vk_recorder_label(rec, site);
    return st;
}

static struct kernel_matrix smat(const struct vk_buffer *buf, uint64_t stride) {
    return (struct kernel_matrix){buf, 0, stride};
}

/* dx = dy ⊙ the site's forward mask into `into` (returned), or dy itself
 * when the site does not drop. */
static const struct vk_buffer *dropout_back(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *into,
                                           const struct vk_buffer *dy, uint64_t n, double p, int layer, int site,
                                           vp_status *st) {
    if (*st != VP_OK || dec_dropout_p(m, p) <= 0.0) return dy;
    const struct kernel_dropout_key key = dec_dropout_key(m, layer, site);
    *st = kernel_dropout_backward(m->ctx, rec, into, dy, n, &key, p);
    return into;
}

/* From g_r = dL/d(the bottleneck after dropout) to dL/d(hpre): the mask
 * in place, then f' into g_r2; returns which holds it (n elements). */
static const struct vk_buffer *bottleneck_back(struct decoder *m, struct vk_recorder *rec, const struct dec_slot *s,
                                              uint64_t n, vp_status *st) {
    struct dec_acts *a = &m->acts;
    const struct delta_module *d = &m->spec.modules[s->module];
    dropout_back(m, rec, &a->g_r, &a->g_r, n, dec_adapter_p(m, d), s->layer, ENC_SITE_ADAPTER + s->module, st);
    if (d->act == DELTA_ACT_IDENTITY) return &a->g_r;
    if (*st == VP_OK)
        *st = kernel_activation_backward(m->ctx, rec, &a->g_r2, &a->g_r, &s->hpre, n,
                                         d->act == DELTA_ACT_GELU ? KERNEL_ACT_GELU : KERNEL_ACT_RELU);
    return &a->g_r2;
}

/* The buffer the forward kept the bottleneck in (adapters_forward). */
static const struct vk_buffer *bottleneck_of(const struct decoder *m, const struct dec_slot *s) {
    const struct delta_module *d = &m->spec.modules[s->module];
    const bool drops = dec_dropout_p(m, dec_adapter_p(m, d)) > 0;
    return d->act == DELTA_ACT_IDENTITY && !drops ? &s->hpre : &s->hact;
}

/* Per head (mh-pa), from g_t = s·dy (N,d): every head's gradients in
 * batched products over (H,N,·) slices; dx_acc += the input's gradient
 * merged back. Uses g_dh, g_dz, g_r, g_r2. */
static vp_status adapter_heads_backward(struct decoder *m, struct vk_recorder *rec, const struct dec_slot *s,
                                        const struct vk_buffer *dx_acc, uint32_t N) {
    struct dec_acts *a = &m->acts;
    const struct delta_module *d = &m->spec.modules[s->module];
    const uint32_t H = (uint32_t)m->arch.heads, hd = (uint32_t)m->arch.head_dim, r = (uint32_t)d->size;
    const uint64_t NH = (uint64_t)N * H, Nr = (uint64_t)N * r, Nhd = (uint64_t)N * hd;
    const struct vk_buffer *hact = bottleneck_of(m, s), *dh = &a->g_r;
    vp_status st = kernel_embedding_forward(m->ctx, rec, &a->g_dh, &a->ids_hsplit, &a->g_t, (uint32_t)NH,
                                            (uint32_t)NH, hd, VP_DTYPE_F32, false);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, smat(&s->up_w->grad, (uint64_t)hd * r), smat(&a->g_dh, Nhd),
                                   smat(hact, Nr), H, hd, r, N, true, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, smat(&s->up_b->grad, hd), smat(&a->ones, 0), smat(&a->g_dh, Nhd), H,
                                   1, hd, N, true, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, smat(&a->g_r, Nr), smat(&a->g_dh, Nhd),
                                   smat(&s->up_w->value, (uint64_t)hd * r), H, N, r, hd, false, false, 1.0f, 0.0f,
                                   NULL);
    if (st == VP_OK) dh = bottleneck_back(m, rec, s, NH * r, &st);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, smat(&s->down_w->grad, (uint64_t)r * hd), smat(dh, Nr),
                                   smat(&s->zh, Nhd), H, r, hd, N, true, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, smat(&s->down_b->grad, r), smat(&a->ones, 0), smat(dh, Nr), H, 1, r,
                                   N, true, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, smat(&a->g_dh, Nhd), smat(dh, Nr),
                                   smat(&s->down_w->value, (uint64_t)r * hd), H, N, hd, r, false, false, 1.0f, 0.0f,
                                   NULL);
    if (st == VP_OK)
        st = kernel_embedding_forward(m->ctx, rec, &a->g_dz, &a->ids_hmerge, &a->g_dh, (uint32_t)NH, (uint32_t)NH, hd,
                                      VP_DTYPE_F32, false);
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, dx_acc, dx_acc, &a->g_dz, Nhd * H);
    return st;
}

/* One adapter, out = target + s·Δ(in) with dy = dL/d(out): dW_up, db_up
 * from s·dy and dropout(f(hpre)) (σ(g)·dy and dg when gated); dh through
 * the mask and f;
 * dW_down, db_down from dh and in; dx_acc += dh·W_down. Uses g_t, g_r, g_r2. */
static vp_status adapter_backward(struct decoder *m, struct vk_recorder *rec, const struct dec_slot *s,
                                  const struct vk_buffer *dx_acc, const struct vk_buffer *dy, uint32_t N) {
    const char *site = vk_recorder_label(rec, "backward adapter");
    struct dec_acts *a = &m->acts;
    const struct delta_module *d = &m->spec.modules[s->module];
    const uint32_t r = (uint32_t)d->size, din = (uint32_t)s->din, dout = (uint32_t)s->dout;
    vp_status st;
    if (d->compose == DELTA_COMPOSE_GATED)
        st = kernel_sigmoid_gate_backward(m->ctx, rec, NULL, &a->g_t, &s->gate->grad, &a->gate_scratch, dy, &s->delta,
                                          &s->gate->value, N, dout, 1);
    else
        st = kernel_scale_forward(m->ctx, rec, &a->g_t, dy, d->compose == DELTA_COMPOSE_SCALE ? (float)d->scale : 1.0f,
                                  (uint64_t)N * dout);
    if (st == VP_OK && d->per_head) return adapter_heads_backward(m, rec, s, dx_acc, N);
    if (st == VP_OK)
        st = kernel_matmul_backward(m->ctx, rec, &a->g_r, &s->up_w->grad, &s->up_b->grad, &a->g_t,
                                    bottleneck_of(m, s), &s->up_w->value, VP_DTYPE_F32, N, r, dout, NULL);
    const struct vk_buffer *dh = bottleneck_back(m, rec, s, (uint64_t)N * r, &st);
    if (st == VP_OK)
        st = kernel_matmul_backward(m->ctx, rec, NULL, &s->down_w->grad, &s->down_b->grad, dh, s->in,
                                    &s->down_w->value, VP_DTYPE_F32, N, din, r, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, mat(dx_acc), mat(dh), mat(&s->down_w->value), 1, N, din, r, false,
                                   false, 1.0f, 1.0f, NULL);
    vk_recorder_label(rec, site);
    return st;
}

/* Parallel adapters at `at` of layer l: dy = dL/d(site output), dx_acc
 * their input's gradient (accumulated). */
static vp_status adapters_backward(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                                   const struct vk_buffer *dx_acc, const struct vk_buffer *dy, uint32_t N) {
    vp_status st = VP_OK;
    for (int i = m->spec.count - 1; i >= 0 && st == VP_OK; i--) {
        const struct delta_module *d = &m->spec.modules[i];
        const struct dec_slot *s = dec_slot_at(m, i, l);
        if (s->active && d->kind == DELTA_ADAPTER && d->at == at && d->insert == DELTA_PARALLEL)
            st = adapter_backward(m, rec, s, dx_acc, dy, N);
    }
    return st;
}

/* Sequential adapters at `at` of layer l, last first: from dy = dL/d(the
 * chain's output) to dL/d(its input), returned (dy itself when there are
 * none; else g_s0 or g_s1, which alternate). */
static vp_status seq_backward(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                              const struct vk_buffer *dy, const struct vk_buffer **dx, uint32_t N) {
    struct dec_acts *a = &m->acts;
    const struct vk_buffer *cur = dy;
    vp_status st = VP_OK;
    for (int i = m->spec.count - 1; i >= 0 && st == VP_OK; i--) {
        const struct delta_module *d = &m->spec.modules[i];
        const struct dec_slot *s = dec_slot_at(m, i, l);
        if (!s->active || d->kind != DELTA_ADAPTER || d->at != at || d->insert != DELTA_SEQUENTIAL) continue;
        const struct vk_buffer *next = cur == &a->g_s0 ? &a->g_s1 : &a->g_s0;
        st = vk_recorder_copy(rec, next, 0, cur, 0, (uint64_t)N * (uint64_t)s->dout * 4);
        if (st == VP_OK) st = adapter_backward(m, rec, s, next, cur, N);
        cur = next;
    }
    *dx = cur;
    return st;
}

/* dx = norm'(x)ᵀ·dy (overwrite), no weight gradients. */
static vp_status norm_back(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *dx,
                           const struct vk_buffer *dy, const struct vk_buffer *x, const struct vk_buffer *mean,
                           const struct vk_buffer *rstd, const struct dec_weight *w, const struct dec_weight *b,
                           uint32_t N) {
    const uint32_t d = (uint32_t)m->arch.hidden;
    const struct vk_buffer *dw = w->param ? &w->param->grad : NULL, *db = b && b->param ? &b->param->grad : NULL;
    const struct vk_buffer *scratch = dw || db ? &m->acts.norm_scratch : NULL;
    if (m->arch.norm == MODEL_NORM_RMSNORM)
        return kernel_rmsnorm_backward(m->ctx, rec, dx, dw, scratch, dy, x, rstd, dec_wbuf(w), N, d, VP_DTYPE_F32,
                                       KERNEL_ROWS_AUTO);
    return kernel_layernorm_backward(m->ctx, rec, dx, dw, db, scratch, dy, x, mean, rstd, dec_wbuf(w), N, d,
                                     VP_DTYPE_F32, KERNEL_ROWS_AUTO);
}

/* g_x: dL/d(out) of layer l in, dL/d(x) of its input out. */
static vp_status layer_backward(struct decoder *m, struct vk_recorder *rec, int l, uint32_t N) {
    const char *site = vk_recorder_label(rec, "backward layer");
    struct dec_acts *a = &m->acts;
    struct dec_layer_acts *la = &a->layers[l];
    const struct dec_layer_weights *w = &m->w.layers[l];
    const struct model_arch *ar = &m->arch;
    const struct vk_buffer *x = l > 0 ? &a->layers[l - 1].out : &a->x0;
    const uint32_t d = (uint32_t)ar->hidden, H = (uint32_t)ar->heads, G = (uint32_t)ar->kv_heads;
    const uint32_t hd = (uint32_t)ar->head_dim, kvd = G * hd, I = (uint32_t)ar->intermediate;
    const uint32_t B = (uint32_t)a->B, T = (uint32_t)a->T;
    const uint64_t nd = (uint64_t)N * d, NH = (uint64_t)N * H, NG = (uint64_t)N * G;
    /* FFN: out = h + dn(u(f_in)), f_in = norm_2(h). */
    const struct vk_buffer *ddn = &a->g_x, *dout = &a->g_h;
    vp_status st = seq_backward(m, rec, l, DELTA_AT_FFN, &a->g_x, &ddn, N);
    /* through the resid dropout into g_t (free until the gate's product) */
    ddn = dropout_back(m, rec, &a->g_t, ddn, nd, ar->hidden_dropout, l, ENC_SITE_FFN_OUT, &st);
    if (st == VP_OK) st = linear_back(m, rec, &a->g_u, ddn, w->wdown, N);
    if (st == VP_OK) st = weight_grads(m, rec, w->wdown, w->bdown, ddn, &la->u, N);
    if (st == VP_OK) st = loras_backward(m, rec, l, DELTA_AT_DOWN, &a->g_u, ddn, N);
    if (ar->family == MODEL_FAMILY_LLAMA) {
        if (st == VP_OK)
            st = kernel_swiglu_backward(m->ctx, rec, &a->g_gate, &a->g_up, &a->g_u, &la->gpre, &la->upre,
                                        (uint64_t)N * I);
    } else if (st == VP_OK) {
        st = kernel_activation_backward(m->ctx, rec, &a->g_up, &a->g_u, &la->upre, (uint64_t)N * I,
                                        KERNEL_ACT_GELU_TANH);
    }
    if (st == VP_OK) st = linear_back(m, rec, &a->g_a, &a->g_up, w->wup, N);
    if (st == VP_OK) st = weight_grads(m, rec, w->wup, w->bup, &a->g_up, &la->f_in, N);
    if (st == VP_OK) st = loras_backward(m, rec, l, DELTA_AT_UP, &a->g_a, &a->g_up, N);
    if (ar->family == MODEL_FAMILY_LLAMA) {
        if (st == VP_OK) st = linear_back(m, rec, &a->g_t, &a->g_gate, w->wgate, N);
        if (st == VP_OK) st = weight_grads(m, rec, w->wgate, w->bgate, &a->g_gate, &la->f_in, N);
        if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &a->g_a, &a->g_a, &a->g_t, nd);
    }
    if (st == VP_OK) st = adapters_backward(m, rec, l, DELTA_AT_FFN, &a->g_a, &a->g_x, N);
    if (st == VP_OK)
        st = norm_back(m, rec, &a->g_t, &a->g_a, &la->h, &la->mean2, &la->rstd2, w->norm2_w, w->norm2_b, N);
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &a->g_h, &a->g_x, &a->g_t, nd);
    /* Attention: h = x + o(ctx), ctx from q, k, v of a_in = norm_1(x). */
    if (st == VP_OK) st = seq_backward(m, rec, l, DELTA_AT_ATTN, &a->g_h, &dout, N);
    dout = dropout_back(m, rec, &a->g_t, dout, nd, ar->hidden_dropout, l, ENC_SITE_ATTN_OUT, &st);
    if (st == VP_OK) st = linear_back(m, rec, &a->g_ctx, dout, w->wo, N);
    if (st == VP_OK) st = weight_grads(m, rec, w->wo, w->bo, dout, &la->ctx, N);
    if (st == VP_OK) st = loras_backward(m, rec, l, DELTA_AT_O, &a->g_ctx, dout, N);
    if (st == VP_OK)
        st = kernel_embedding_forward(m->ctx, rec, &a->g_atth, &a->ids_split_q, &a->g_ctx, (uint32_t)NH,
                                      (uint32_t)NH, hd, VP_DTYPE_F32, false);
    const uint32_t Lp = (uint32_t)m->prefix_rows[l];
    const uint64_t np = (uint64_t)Lp * H * hd;
    if (st == VP_OK && Lp) st = vk_recorder_fill(rec, &a->g_pk, 0, np * 4, 0);
    if (st == VP_OK && Lp) st = vk_recorder_fill(rec, &a->g_pv, 0, np * 4, 0);
    const struct kernel_attention_config cfg = dec_attention_config(m, l);
    if (st == VP_OK)
        st = kernel_attention_backward(m->ctx, rec, &a->g_qh, &a->g_kh, &a->g_vh, Lp ? &a->g_pk : NULL,
                                       Lp ? &a->g_pv : NULL, &a->attn_scratch, &a->g_atth, &la->atth, &la->lse,
                                       &la->qh, &la->kh, &la->vh, Lp ? &la->pk : NULL, Lp ? &la->pv : NULL, &a->keep,
                                       &cfg);
    if (st == VP_OK && Lp) { /* += into dprefix_src, summed over each kv group */
        const uint32_t elems = (uint32_t)m->prefix_src_elems;
        st = kernel_embedding_backward(m->ctx, rec, &a->dprefix_src, &a->g_pk, &la->groups_pk, (uint32_t)np, elems, 1);
        if (st == VP_OK)
            st = kernel_embedding_backward(m->ctx, rec, &a->dprefix_src, &a->g_pv, &la->groups_pv, (uint32_t)np, elems,
                                           1);
    }
    if (st == VP_OK && ar->positions == MODEL_POS_ROTARY) {
        const uint32_t P = (uint32_t)ar->max_positions;
        st = kernel_rope_backward(m->ctx, rec, &a->g_qh, &a->g_qh, &a->rope, NULL, B * H, T, hd, P,
                                  m->position_offset);
        if (st == VP_OK)
            st = kernel_rope_backward(m->ctx, rec, &a->g_kh, &a->g_kh, &a->rope, NULL, B * H, T, hd, P,
                                      m->position_offset);
    }
    /* Unsplit: q by the inverse permutation; k, v summed over each group. */
    if (st == VP_OK)
        st = kernel_embedding_forward(m->ctx, rec, &a->g_q, &a->ids_merge, &a->g_qh, (uint32_t)NH, (uint32_t)NH, hd,
                                      VP_DTYPE_F32, false);
    if (st == VP_OK) st = vk_recorder_fill(rec, &a->g_k, 0, (uint64_t)N * kvd * 4, 0);
    if (st == VP_OK) st = vk_recorder_fill(rec, &a->g_v, 0, (uint64_t)N * kvd * 4, 0);
    if (st == VP_OK)
        st = kernel_embedding_backward(m->ctx, rec, &a->g_k, &a->g_kh, &a->groups_kv, (uint32_t)NH, (uint32_t)NG, hd);
    if (st == VP_OK)
        st = kernel_embedding_backward(m->ctx, rec, &a->g_v, &a->g_vh, &a->groups_kv, (uint32_t)NH, (uint32_t)NG, hd);
    if (st == VP_OK) st = linear_back(m, rec, &a->g_a, &a->g_q, w->wq, N);
    if (st == VP_OK) st = weight_grads(m, rec, w->wq, w->bq, &a->g_q, &la->a_in, N);
    if (st == VP_OK) st = weight_grads(m, rec, w->wk, w->bk, &a->g_k, &la->a_in, N);
    if (st == VP_OK) st = weight_grads(m, rec, w->wv, w->bv, &a->g_v, &la->a_in, N);
    if (st == VP_OK) st = loras_backward(m, rec, l, DELTA_AT_Q, &a->g_a, &a->g_q, N);
    if (st == VP_OK) st = linear_back(m, rec, &a->g_t, &a->g_k, w->wk, N);
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &a->g_a, &a->g_a, &a->g_t, nd);
    if (st == VP_OK) st = loras_backward(m, rec, l, DELTA_AT_K, &a->g_a, &a->g_k, N);
    if (st == VP_OK) st = linear_back(m, rec, &a->g_t, &a->g_v, w->wv, N);
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &a->g_a, &a->g_a, &a->g_t, nd);
    if (st == VP_OK) st = loras_backward(m, rec, l, DELTA_AT_V, &a->g_a, &a->g_v, N);
    if (st == VP_OK) st = adapters_backward(m, rec, l, DELTA_AT_ATTN, &a->g_a, &a->g_ctx, N);
    if (st == VP_OK) st = norm_back(m, rec, &a->g_t, &a->g_a, x, &la->mean1, &la->rstd1, w->norm1_w, w->norm1_b, N);
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &a->g_x, &a->g_h, &a->g_t, nd);
    vk_recorder_label(rec, site);
    return st;
}

/* dprefix_src into the prefixes' params: a plain module's rows added to
 * its P_k, P_v gradients, a reparameterised module's region back through
 * its MLP (E's gradient through a scratch, added). */
static vp_status prefixes_backward(struct decoder *m, struct vk_recorder *rec) {
    const char *site = vk_recorder_label(rec, "backward prefix");
    struct dec_acts *a = &m->acts;
    const uint64_t kvd = (uint64_t)m->arch.kv_heads * m->arch.head_dim;
    vp_status st = VP_OK;
    for (int i = 0; i < m->spec.count && st == VP_OK; i++) {
        const struct delta_module *d = &m->spec.modules[i];
        struct dec_reparam *rp = &m->reparam[i];
        if (d->kind != DELTA_PREFIX) continue;
        const uint32_t L = (uint32_t)d->size, R = (uint32_t)d->reparam, dm = (uint32_t)m->arch.hidden;
        if (rp->emb) {
            const struct vk_buffer dout = dec_view(&a->dprefix_src, rp->out * 4, (uint64_t)L * rp->width * 4);
            st = kernel_matmul_backward(m->ctx, rec, &rp->g_h0, &rp->w2->grad, &rp->b2->grad, &dout, &rp->h0,
                                        &rp->w2->value, VP_DTYPE_F32, L, R, rp->width, NULL);
            if (st == VP_OK) /* through tanh at h0pre */
                st = kernel_activation_backward(m->ctx, rec, &rp->g_h0, &rp->g_h0, &rp->h0pre, (uint64_t)L * R,
                                                KERNEL_ACT_TANH);
            if (st == VP_OK)
                st = kernel_matmul_backward(m->ctx, rec, &rp->g_e, &rp->w0->grad, &rp->b0->grad, &rp->g_h0,
                                            &rp->emb->value, &rp->w0->value, VP_DTYPE_F32, L, dm, R, NULL);
            if (st == VP_OK)
                st = kernel_add_forward(m->ctx, rec, &rp->emb->grad, &rp->emb->grad, &rp->g_e, (uint64_t)L * dm);
            continue;
        }
        for (int l = 0; l < m->arch.layers && st == VP_OK; l++) {
            const struct dec_slot *s = dec_slot_at(m, i, l);
            if (!s->active) continue;
            const uint64_t n = (uint64_t)L * kvd;
            const struct vk_buffer gk = dec_view(&a->dprefix_src, s->src_k * 4, n * 4);
            const struct vk_buffer gv = dec_view(&a->dprefix_src, s->src_v * 4, n * 4);
            st = kernel_add_forward(m->ctx, rec, &s->prefix_k->grad, &s->prefix_k->grad, &gk, n);
            if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &s->prefix_v->grad, &s->prefix_v->grad, &gv, n);
        }
    }
    vk_recorder_label(rec, site);
    return st;
}

vp_status dec_record_backward(struct decoder *m, struct vk_recorder *rec) {
    const char *site = vk_recorder_label(rec, "backward");
    struct dec_acts *a = &m->acts;
    const struct model_arch *ar = &m->arch;
    const uint32_t N = (uint32_t)(a->B * a->T), d = (uint32_t)ar->hidden, V = (uint32_t)ar->vocab_size;
    const struct kernel_cross_entropy_config ce = {N, V, ENCODER_IGNORE_INDEX, (float)m->opt.label_smoothing};
    vp_status st = kernel_cross_entropy_backward(m->ctx, rec, &a->g_logits, &a->logits, &a->targets, &a->ce_lse,
                                                 &a->loss, 1.0f, &ce);
    if (st == VP_OK) /* the head, and dW_head += dlogitsᵀ·norm_f(x_L) when trained (tied: the embedding's) */
        st = kernel_matmul_backward(m->ctx, rec, &a->g_t, m->w.head->param ? &m->w.head->param->grad : NULL, NULL,
                                    &a->g_logits, &a->xf, dec_wbuf(m->w.head), m->w.head->dtype, N, d, V, NULL);
    const struct vk_buffer *xl = &a->layers[ar->layers - 1].out;
    if (st == VP_OK) st = norm_back(m, rec, &a->g_x, &a->g_t, xl, &a->meanf, &a->rstdf, m->w.normf_w, m->w.normf_b, N);
    if (st == VP_OK && m->prefix_max) st = vk_recorder_fill(rec, &a->dprefix_src, 0, m->prefix_src_elems * 4, 0);
    /* Checkpointing: layer l's activations again from its kept input, into
     * the buffers the layers share (the last layer's are still there). */
    const bool recompute = m->opt.checkpoint_activations;
    for (int l = ar->layers - 1; l >= 0 && st == VP_OK; l--) {
        if (recompute && l < ar->layers - 1) st = dec_record_layer(m, rec, l, N);
        if (st == VP_OK) st = layer_backward(m, rec, l, N);
    }
    if (st == VP_OK && m->prefix_max) st = prefixes_backward(m, rec);
    if (m->w.embed->param || (m->w.pos && m->w.pos->param)) /* g_x is dL/dx0 now; through embd dropout */
        dropout_back(m, rec, &a->g_x, &a->g_x, (uint64_t)N * d, ar->embedding_dropout, -1, ENC_SITE_EMB, &st);
    if (st == VP_OK && m->w.embed->param)
        st = kernel_embedding_backward(m->ctx, rec, &m->w.embed->param->grad, &a->g_x, &a->groups_word, N, V, d);
    if (st == VP_OK && m->w.pos && m->w.pos->param)
        st = kernel_embedding_backward(m->ctx, rec, &m->w.pos->param->grad, &a->g_x, &a->groups_pos, N,
                                       (uint32_t)ar->max_positions, d);
    vk_recorder_label(rec, site);
    return st;
}

/* The backward pieces the encoder-decoder model (seq2seq_backward.c) runs
 * on a decoder whose layers are its delta blocks. */
vp_status dec_record_linear_back(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *dx,
                                 const struct vk_buffer *dy, const struct dec_weight *w, uint32_t N) {
    return linear_back(m, rec, dx, dy, w, N);
}
vp_status dec_record_weight_grads(struct decoder *m, struct vk_recorder *rec, const struct dec_weight *w,
                                  const struct dec_weight *b, const struct vk_buffer *dy, const struct vk_buffer *x,
                                  uint32_t N) {
    return weight_grads(m, rec, w, b, dy, x, N);
}
vp_status dec_record_loras_back(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                                const struct vk_buffer *dx_acc, const struct vk_buffer *dy, uint32_t N) {
    return loras_backward(m, rec, l, at, dx_acc, dy, N);
}
vp_status dec_record_adapters_back(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                                   const struct vk_buffer *dx_acc, const struct vk_buffer *dy, uint32_t N) {
    return adapters_backward(m, rec, l, at, dx_acc, dy, N);
}
vp_status dec_record_seq_back(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                              const struct vk_buffer *dy, const struct vk_buffer **dx, uint32_t N) {
    return seq_backward(m, rec, l, at, dy, dx, N);
}
vp_status dec_record_norm_back(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *dx,
                               const struct vk_buffer *dy, const struct vk_buffer *x, const struct vk_buffer *mean,
                               const struct vk_buffer *rstd, const struct dec_weight *w, const struct dec_weight *b,
                               uint32_t N) {
    return norm_back(m, rec, dx, dy, x, mean, rstd, w, b, N);
}
vp_status dec_record_prefixes_back(struct decoder *m, struct vk_recorder *rec) { return prefixes_backward(m, rec); }
const struct vk_buffer *dec_record_dropout_back(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *into,
                                               const struct vk_buffer *dy, uint64_t n, double p, int layer, int site,
                                               vp_status *st) {
    return dropout_back(m, rec, into, dy, n, p, layer, site, st);
}
