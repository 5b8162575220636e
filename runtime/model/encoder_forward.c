/* The encoder's forward pass (runtime/model/README.md) recorded from the
 * kernels: embeddings, post-LN layers with every hook site, the head and the
 * loss. Every activation the backward reads stays in e->acts; each site's
 * final buffer is noted in the layer's acts (x, ctx_final, o_final,
 * dn_final) and each delta slot notes what it read (in) and added to
 * (target).
 *
 * Heads are split and merged, and mh-pa's inputs split by heads, with the
 * embedding gather and constant index tables (a permutation of rows), and
 * each layer's prefix rows are gathered element by element from prefix_src,
 * where every prefix module's rows live (a reparameterised module's MLP
 * writes its output there; a plain module's P_k, P_v are copied in). */
#include "encoder.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Small helpers shared by the sites
 * ------------------------------------------------------------------------ */

static vp_status linear(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *y, // (M,N)
                        const struct vk_buffer *x,                                             // (M,K)
                        const struct enc_weight *w, const struct enc_weight *b, uint32_t M, uint32_t K,
                        uint32_t N) {
    return kernel_matmul_forward(e->ctx, rec, y, x, w->buf, w->dtype, b ? b->buf : NULL, M, K, N, NULL);
}

/* y (M,N) = x·Wᵀ + b with delta params W, b (fp32). */
static vp_status linear_param(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *y,
                              const struct vk_buffer *x, const struct delta_param *w,
                              const struct delta_param *b, uint32_t M, uint32_t K, uint32_t N) {
    return kernel_matmul_forward(e->ctx, rec, y, x, &w->value, VP_DTYPE_F32, b ? &b->value : NULL, M, K, N,
                                 NULL);
}

/* out[n,:] = table[ids[n],:] for fp32 rows of C values. */
static vp_status gather(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *out,
                        const struct vk_buffer *ids, const struct vk_buffer *table, uint64_t N, uint64_t V,
                        uint32_t C) {
    return kernel_embedding_forward(e->ctx, rec, out, ids, table, (uint32_t)N, (uint32_t)V, C, VP_DTYPE_F32,
                                    false);
}

static vp_status dropout(struct encoder *e, struct vk_recorder *rec, const struct vk_buffer *x, uint64_t n,
                         double p, int layer, int site) {
    if (p <= 0.0) return VP_OK;
    const struct kernel_dropout_key key = {e->opt.seed, e->step, enc_dropout_stream(layer, site)};
    return kernel_dropout_forward(e->ctx, rec, x, x, n, &key, p);
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

static struct kernel_matrix mat(const struct vk_buffer *buf, uint64_t stride) {
    return (struct kernel_matrix){buf, 0, stride};
}

/* ------------------------------------------------------------------------
 * Delta modules
 * ------------------------------------------------------------------------ */

/* y += (α/r)·(x·Aᵀ)·Bᵀ: hpre = x·Aᵀ kept for the backward, the second
 * product accumulated into y (beta = 1). */
static vp_status lora_forward(struct encoder *e, struct vk_recorder *rec, struct enc_slot *s,
                              const struct vk_buffer *y, // (N,dout)
                              const struct vk_buffer *x, // (N,din)
                              uint32_t N) {
    const struct delta_module *m = &e->spec.modules[s->module];
    struct enc_slot_acts *sa = enc_slot_acts_at(e, s->module, s->layer);
    const uint32_t r = (uint32_t)m->size;
    sa->in = x;
    sa->target = y;
    vp_status st = linear_param(e, rec, &sa->hpre, x, s->lora_a, NULL, N, (uint32_t)s->din, r);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(y, 0), mat(&sa->hpre, 0), mat(&s->lora_b->value, 0), 1, N,
                                   (uint32_t)s->dout, r, false, true, (float)(m->alpha / m->size), 1.0f, NULL);
    return st;
}

static vp_status loras_forward(struct encoder *e, struct vk_recorder *rec, int l, enum delta_at at,
                               const struct vk_buffer *y, const struct vk_buffer *x, uint32_t N) {
    const char *site = vk_recorder_label(rec, "forward lora");
    vp_status st = VP_OK;
    for (int i = 0; i < e->spec.count && st == VP_OK; i++) {
        struct enc_slot *s = enc_slot_at(e, i, l);
        if (s->active && e->spec.modules[i].kind == DELTA_LORA && e->spec.modules[i].at == at)
            st = lora_forward(e, rec, s, y, x, N);
    }
    vk_recorder_label(rec, site);
    return st;
}

/* Per head: Δ's columns of head h from z's columns of head h, with every
 * head's matrices in one batched product over (H,N,·) slices. */
static vp_status adapter_heads_forward(struct encoder *e, struct vk_recorder *rec, struct enc_slot *s,
                                       struct enc_slot_acts *sa, const struct vk_buffer *hact, uint32_t N,
                                       bool train) {
    const struct delta_module *m = &e->spec.modules[s->module];
    struct enc_acts *a = &e->acts;
    const uint32_t H = (uint32_t)e->arch.heads, hd = (uint32_t)e->arch.head_dim, r = (uint32_t)m->size;
    const uint64_t NH = (uint64_t)N * H;
    vp_status st = gather(e, rec, &sa->zh, &a->ids_hsplit, sa->in, NH, NH, hd);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(&sa->hpre, (uint64_t)N * r), mat(&sa->zh, (uint64_t)N * hd),
                                   mat(&s->down_w->value, (uint64_t)r * hd), H, N, r, hd, false, true, 1.0f,
                                   0.0f, NULL);
    if (st == VP_OK) /* + b_down[h] on every row: ones (N,1) · b (1,r) */
        st = kernel_matmul_batched(e->ctx, rec, mat(&sa->hpre, (uint64_t)N * r), mat(&a->ones, 0),
                                   mat(&s->down_b->value, r), H, N, r, 1, false, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK && m->act != DELTA_ACT_IDENTITY)
        st = kernel_activation_forward(e->ctx, rec, hact, &sa->hpre, NH * r, delta_act(m->act));
    else if (st == VP_OK && hact != &sa->hpre)
        st = vk_recorder_copy(rec, hact, 0, &sa->hpre, 0, NH * r * 4);
    if (st == VP_OK)
        st = dropout(e, rec, hact, NH * r, enc_dropout_p(e, train, m->dropout >= 0 ? m->dropout : e->arch.hidden_dropout),
                     s->layer, ENC_SITE_ADAPTER + s->module);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(&sa->dh, (uint64_t)N * hd), mat(hact, (uint64_t)N * r),
                                   mat(&s->up_w->value, (uint64_t)hd * r), H, N, hd, r, false, true, 1.0f, 0.0f,
                                   NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(e->ctx, rec, mat(&sa->dh, (uint64_t)N * hd), mat(&a->ones, 0),
                                   mat(&s->up_b->value, hd), H, N, hd, 1, false, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK) st = gather(e, rec, &sa->delta, &a->ids_hmerge, &sa->dh, NH, NH, hd);
    return st;
}

/* out = target + s·Δ(in), Δ(z) = dropout(f(z·W_downᵀ + b_down))·W_upᵀ + b_up,
 * s = 1, the module's scale, or σ(g). */
static vp_status adapter_forward(struct encoder *e, struct vk_recorder *rec, struct enc_slot *s,
                                 const struct vk_buffer *in,     // (N,d)
                                 const struct vk_buffer *target, // (N,d)
                                 uint32_t N, bool train) {
    const struct delta_module *m = &e->spec.modules[s->module];
    struct enc_slot_acts *sa = enc_slot_acts_at(e, s->module, s->layer);
    const uint32_t d = (uint32_t)e->arch.hidden, r = (uint32_t)m->size;
    sa->in = in;
    sa->target = target;
    const struct vk_buffer *hact = sa->hact_own ? &sa->hact : &sa->hpre;
    vp_status st;
    if (m->per_head) {
        st = adapter_heads_forward(e, rec, s, sa, hact, N, train);
    } else {
        st = linear_param(e, rec, &sa->hpre, in, s->down_w, s->down_b, N, d, r);
        if (st == VP_OK && m->act != DELTA_ACT_IDENTITY)
            st = kernel_activation_forward(e->ctx, rec, hact, &sa->hpre, (uint64_t)N * r, delta_act(m->act));
        else if (st == VP_OK && hact != &sa->hpre)
            st = vk_recorder_copy(rec, hact, 0, &sa->hpre, 0, (uint64_t)N * r * 4);
        if (st == VP_OK)
            st = dropout(e, rec, hact, (uint64_t)N * r,
                         enc_dropout_p(e, train, m->dropout >= 0 ? m->dropout : e->arch.hidden_dropout), s->layer,
                         ENC_SITE_ADAPTER + s->module);
        if (st == VP_OK) st = linear_param(e, rec, &sa->delta, hact, s->up_w, s->up_b, N, r, d);
    }
    if (st != VP_OK) return st;
    const uint64_t n = (uint64_t)N * d;
    switch (m->compose) {
    case DELTA_COMPOSE_GATED:
        return kernel_sigmoid_gate_forward(e->ctx, rec, &sa->out, target, &sa->delta, &s->gate->value, N, d, 1);
    case DELTA_COMPOSE_SCALE:
        return kernel_add_scaled_forward(e->ctx, rec, &sa->out, target, &sa->delta, (float)m->scale, n);
    case DELTA_COMPOSE_ADD: break;
    }
    return kernel_add_forward(e->ctx, rec, &sa->out, target, &sa->delta, n);
}

/* Every adapter at (at, insert) of layer l in spec order; returns the
 * site's final buffer in *cur. Parallel adapters read `par_in`, sequential
 * ones the current buffer. */
static vp_status adapters_forward(struct encoder *e, struct vk_recorder *rec, int l, enum delta_at at,
                                  enum delta_insert insert, const struct vk_buffer **cur,
                                  const struct vk_buffer *par_in, uint32_t N, bool train) {
    const char *site = vk_recorder_label(rec, "forward adapter");
    vp_status st = VP_OK;
    for (int i = 0; i < e->spec.count && st == VP_OK; i++) {
        const struct delta_module *m = &e->spec.modules[i];
        struct enc_slot *s = enc_slot_at(e, i, l);
        if (!s->active || m->kind != DELTA_ADAPTER || m->at != at || m->insert != insert) continue;
        st = adapter_forward(e, rec, s, insert == DELTA_PARALLEL ? par_in : *cur, *cur, N, train);
        *cur = &enc_slot_acts_at(e, i, l)->out;
    }
    vk_recorder_label(rec, site);
    return st;
}

/* ------------------------------------------------------------------------
 * Prefixes
 * ------------------------------------------------------------------------ */

/* E → tanh(E·W0ᵀ + b0) → ·W2ᵀ + b2 into the module's prefix_src region. */
static vp_status reparam_forward(struct encoder *e, struct vk_recorder *rec, int i) {
    const struct delta_module *m = &e->spec.modules[i];
    struct enc_reparam_acts *ra = &e->acts.reparam[i];
    char name[DELTA_NAME_MAX];
    const struct delta_param *p[5];
    static const char *const parts[5] = {"embedding", "0.weight", "0.bias", "2.weight", "2.bias"};
    for (int k = 0; k < 5; k++) {
        snprintf(name, sizeof name, "delta%d.reparam.%s", i, parts[k]);
        p[k] = delta_params_find(e->params, name);
    }
    const uint32_t L = (uint32_t)m->size, d = (uint32_t)e->arch.hidden, R = (uint32_t)m->reparam;
    const uint32_t W = (uint32_t)p[4]->n;
    const struct vk_buffer out = enc_view(&e->acts.prefix_src, ra->out_offset * 4, (uint64_t)L * W * 4);
    vp_status st = linear_param(e, rec, &ra->h0pre, &p[0]->value, p[1], p[2], L, d, R);
    if (st == VP_OK) st = kernel_activation_forward(e->ctx, rec, &ra->h0, &ra->h0pre, (uint64_t)L * R, KERNEL_ACT_TANH);
    if (st == VP_OK) st = linear_param(e, rec, &out, &ra->h0, p[3], p[4], L, R, W);
    return st;
}

/* Fills prefix_src: reparameterisations run, plain prefixes copied in. */
static vp_status prefixes_forward(struct encoder *e, struct vk_recorder *rec) {
    const char *site = vk_recorder_label(rec, "forward prefix");
    vp_status st = VP_OK;
    for (int i = 0; i < e->spec.count && st == VP_OK; i++) {
        const struct delta_module *m = &e->spec.modules[i];
        if (m->kind != DELTA_PREFIX) continue;
        if (m->reparam > 0) {
            st = reparam_forward(e, rec, i);
            continue;
        }
        for (int l = 0; l < e->arch.layers && st == VP_OK; l++) {
            const struct enc_slot *s = enc_slot_at(e, i, l);
            if (!s->active) continue;
            const uint64_t bytes = s->prefix_k->n * 4;
            st = vk_recorder_copy(rec, &e->acts.prefix_src, s->src_k * 4, &s->prefix_k->value, 0, bytes);
            if (st == VP_OK)
                st = vk_recorder_copy(rec, &e->acts.prefix_src, s->src_v * 4, &s->prefix_v->value, 0, bytes);
        }
    }
    vk_recorder_label(rec, site);
    return st;
}

/* ------------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------------ */

static vp_status embeddings_forward(struct encoder *e, struct vk_recorder *rec, uint32_t N, bool train) {
    struct enc_acts *a = &e->acts;
    const struct model_arch *ar = &e->arch;
    const uint32_t d = (uint32_t)ar->hidden;
    vp_status st = kernel_embedding_forward(e->ctx, rec, &a->emb, &a->ids, e->w.word->buf, N,
                                            (uint32_t)ar->vocab_size, d, e->w.word->dtype, false);
    if (st == VP_OK)
        st = kernel_embedding_forward(e->ctx, rec, &a->emb, &a->pos, e->w.pos->buf, N,
                                      (uint32_t)ar->max_positions, d, e->w.pos->dtype, true);
    if (st == VP_OK && e->w.type)
        st = kernel_embedding_forward(e->ctx, rec, &a->emb, &a->types, e->w.type->buf, N,
                                      (uint32_t)ar->type_vocab_size, d, e->w.type->dtype, true);
    if (st == VP_OK)
        st = kernel_layernorm_forward(e->ctx, rec, &a->x0, &a->emb_mean, &a->emb_rstd, &a->emb, e->w.ln_emb_w->buf,
                                      e->w.ln_emb_b->buf, N, d, (float)ar->norm_eps, VP_DTYPE_F32, KERNEL_ROWS_AUTO);
    if (st == VP_OK)
        st = dropout(e, rec, &a->x0, (uint64_t)N * d, enc_dropout_p(e, train, ar->hidden_dropout), -1, ENC_SITE_EMB);
    return st;
}

/* q, k or v: x·Wᵀ + b (+LoRA) into proj, split into heads. */
static vp_status projection_forward(struct encoder *e, struct vk_recorder *rec, int l, const struct vk_buffer *qh,
                                    const struct enc_weight *w, const struct enc_weight *b, enum delta_at at,
                                    const struct vk_buffer *x, uint32_t N) {
    struct enc_acts *a = &e->acts;
    const uint32_t d = (uint32_t)e->arch.hidden;
    const uint64_t NH = (uint64_t)N * (uint64_t)e->arch.heads;
    vp_status st = linear(e, rec, &a->proj, x, w, b, N, d, d);
    if (st == VP_OK) st = loras_forward(e, rec, l, at, &a->proj, x, N);
    if (st == VP_OK) st = gather(e, rec, qh, &a->ids_split, &a->proj, NH, NH, (uint32_t)e->arch.head_dim);
    return st;
}

static vp_status attention_block_forward(struct encoder *e, struct vk_recorder *rec, int l,
                                         const struct vk_buffer *x, uint32_t N, bool train) {
    const char *site = vk_recorder_label(rec, "forward attention");
    struct enc_acts *a = &e->acts;
    struct enc_layer_acts *la = &a->layers[l];
    const struct enc_layer_weights *w = &e->w.layers[l];
    const struct model_arch *ar = &e->arch;
    const uint32_t d = (uint32_t)ar->hidden, Lp = (uint32_t)e->prefix_rows[l];
    const uint64_t NH = (uint64_t)N * (uint64_t)ar->heads;
    la->x = x;
    vp_status st = projection_forward(e, rec, l, &la->qh, w->wq, w->bq, DELTA_AT_Q, x, N);
    if (st == VP_OK) st = projection_forward(e, rec, l, &la->kh, w->wk, w->bk, DELTA_AT_K, x, N);
    if (st == VP_OK) st = projection_forward(e, rec, l, &la->vh, w->wv, w->bv, DELTA_AT_V, x, N);
    if (st == VP_OK && Lp) {
        st = gather(e, rec, &la->pk, &la->ids_pk, &a->prefix_src, (uint64_t)Lp * d, e->prefix_src_elems, 1);
        if (st == VP_OK)
            st = gather(e, rec, &la->pv, &la->ids_pv, &a->prefix_src, (uint64_t)Lp * d, e->prefix_src_elems, 1);
    }
    struct kernel_attention_config cfg = {
        .B = (uint32_t)a->B, .H = (uint32_t)ar->heads, .T = (uint32_t)a->T, .S = (uint32_t)a->T, .L = Lp,
        .D = (uint32_t)ar->head_dim, .dropout_p = enc_dropout_p(e, train, ar->attention_dropout),
        .dropout_seed = e->opt.seed, .dropout_step = e->step,
        .dropout_stream = enc_dropout_stream(l, ENC_SITE_ATTN_PROBS),
    };
    if (st == VP_OK)
        st = kernel_attention_forward(e->ctx, rec, &la->atth, &la->lse, &la->qh, &la->kh, &la->vh,
                                      Lp ? &la->pk : NULL, Lp ? &la->pv : NULL, &a->keep, &cfg);
    if (st == VP_OK) st = gather(e, rec, &la->ctx, &a->ids_merge, &la->atth, NH, NH, (uint32_t)ar->head_dim);
    const struct vk_buffer *cur = &la->ctx;
    if (st == VP_OK) st = adapters_forward(e, rec, l, DELTA_AT_ATTN, DELTA_PARALLEL, &cur, x, N, train);
    la->ctx_final = cur;
    if (st == VP_OK) st = linear(e, rec, &la->o, cur, w->wo, w->bo, N, d, d);
    if (st == VP_OK) st = loras_forward(e, rec, l, DELTA_AT_O, &la->o, cur, N);
    if (st == VP_OK)
        st = dropout(e, rec, &la->o, (uint64_t)N * d, enc_dropout_p(e, train, ar->hidden_dropout), l,
                     ENC_SITE_ATTN_OUT);
    cur = &la->o;
    if (st == VP_OK) st = adapters_forward(e, rec, l, DELTA_AT_ATTN, DELTA_SEQUENTIAL, &cur, NULL, N, train);
    la->o_final = cur;
    if (st == VP_OK) st = kernel_add_forward(e->ctx, rec, &la->res1, x, cur, (uint64_t)N * d);
    if (st == VP_OK)
        st = kernel_layernorm_forward(e->ctx, rec, &la->h, &la->mean1, &la->rstd1, &la->res1, w->ln1_w->buf,
                                      w->ln1_b->buf, N, d, (float)ar->norm_eps, VP_DTYPE_F32, KERNEL_ROWS_AUTO);
    vk_recorder_label(rec, site);
    return st;
}

static vp_status ffn_block_forward(struct encoder *e, struct vk_recorder *rec, int l, uint32_t N, bool train) {
    const char *site = vk_recorder_label(rec, "forward ffn");
    struct enc_layer_acts *la = &e->acts.layers[l];
    const struct enc_layer_weights *w = &e->w.layers[l];
    const struct model_arch *ar = &e->arch;
    const uint32_t d = (uint32_t)ar->hidden, I = (uint32_t)ar->intermediate;
    vp_status st = linear(e, rec, &la->upre, &la->h, w->wup, w->bup, N, d, I);
    if (st == VP_OK) st = loras_forward(e, rec, l, DELTA_AT_UP, &la->upre, &la->h, N);
    if (st == VP_OK)
        st = kernel_activation_forward(e->ctx, rec, &la->u, &la->upre, (uint64_t)N * I, model_act(ar->act));
    if (st == VP_OK) st = linear(e, rec, &la->dn, &la->u, w->wdown, w->bdown, N, I, d);
    if (st == VP_OK) st = loras_forward(e, rec, l, DELTA_AT_DOWN, &la->dn, &la->u, N);
    if (st == VP_OK)
        st = dropout(e, rec, &la->dn, (uint64_t)N * d, enc_dropout_p(e, train, ar->hidden_dropout), l,
                     ENC_SITE_FFN_OUT);
    const struct vk_buffer *cur = &la->dn;
    if (st == VP_OK) st = adapters_forward(e, rec, l, DELTA_AT_FFN, DELTA_SEQUENTIAL, &cur, NULL, N, train);
    if (st == VP_OK) st = adapters_forward(e, rec, l, DELTA_AT_FFN, DELTA_PARALLEL, &cur, &la->h, N, train);
    la->dn_final = cur;
    if (st == VP_OK) st = kernel_add_forward(e->ctx, rec, &la->res2, &la->h, cur, (uint64_t)N * d);
    if (st == VP_OK)
        st = kernel_layernorm_forward(e->ctx, rec, &la->out, &la->mean2, &la->rstd2, &la->res2, w->ln2_w->buf,
                                      w->ln2_b->buf, N, d, (float)ar->norm_eps, VP_DTYPE_F32, KERNEL_ROWS_AUTO);
    vk_recorder_label(rec, site);
    return st;
}

/* The MLM head on every token: h = LayerNorm(act(x_L·W_tᵀ + b_t)),
 * logits (N,V) = h·Wordᵀ + bias with the word embedding table as the tied
 * decoder (act: BERT the config's hidden_act, RoBERTa exact GELU); loss the
 * mean cross-entropy over the labelled tokens. No dropout in the head. */
static enum kernel_activation mlm_act(const struct encoder *e) {
    return e->arch.family == MODEL_FAMILY_BERT ? model_act(e->arch.act) : KERNEL_ACT_GELU;
}

static vp_status mlm_head_forward(struct encoder *e, struct vk_recorder *rec) {
    struct enc_acts *a = &e->acts;
    const struct model_arch *ar = &e->arch;
    const struct enc_head *h = &e->head;
    const uint32_t N = (uint32_t)(a->B * a->T), d = (uint32_t)ar->hidden, V = (uint32_t)ar->vocab_size;
    vp_status st = linear_param(e, rec, &a->mlm_pre, &a->layers[ar->layers - 1].out, h->mlm_w, h->mlm_b, N, d, d);
    if (st == VP_OK) st = kernel_activation_forward(e->ctx, rec, &a->mlm_act, &a->mlm_pre, (uint64_t)N * d, mlm_act(e));
    if (st == VP_OK)
        st = kernel_layernorm_forward(e->ctx, rec, &a->mlm_h, &a->mlm_mean, &a->mlm_rstd, &a->mlm_act,
                                      &h->mlm_ln_w->value, &h->mlm_ln_b->value, N, d, (float)ar->norm_eps,
                                      VP_DTYPE_F32, KERNEL_ROWS_AUTO);
    if (st == VP_OK)
        st = kernel_matmul_forward(e->ctx, rec, &a->logits, &a->mlm_h, e->w.word->buf, e->w.word->dtype,
                                   &h->mlm_bias->value, N, d, V, NULL);
    const struct kernel_cross_entropy_config ce = {N, V, ENCODER_IGNORE_INDEX, (float)e->opt.label_smoothing};
    if (st == VP_OK)
        st = kernel_cross_entropy_forward(e->ctx, rec, &a->loss, &a->ce_lse, NULL, &a->ce_scratch, &a->logits,
                                          &a->labels, &ce);
    return st;
}

/* BERT: logits = dropout(tanh(x_L[:,0]·W_poolᵀ + b_pool))·W_clsᵀ + b_cls;
 * RoBERTa: logits = dropout(tanh(dropout(x_L[:,0])·W_denseᵀ + b))·W_outᵀ + b. */
static vp_status head_forward(struct encoder *e, struct vk_recorder *rec, bool train) {
    struct enc_acts *a = &e->acts;
    const struct model_arch *ar = &e->arch;
    const uint32_t B = (uint32_t)a->B, N = (uint32_t)(a->B * a->T), d = (uint32_t)ar->hidden;
    const uint32_t C = (uint32_t)ar->num_labels;
    const double p = enc_dropout_p(e, train, ar->classifier_dropout);
    vp_status st = gather(e, rec, &a->cls, &a->ids_cls, &a->layers[ar->layers - 1].out, B, N, d);
    if (ar->family == MODEL_FAMILY_BERT) {
        if (st == VP_OK) st = linear(e, rec, &a->pool_pre, &a->cls, e->w.pool_w, e->w.pool_b, B, d, d);
    } else {
        if (st == VP_OK) st = dropout(e, rec, &a->cls, (uint64_t)B * d, p, -1, ENC_SITE_HEAD_CLS);
        if (st == VP_OK)
            st = linear_param(e, rec, &a->pool_pre, &a->cls, e->head.dense_w, e->head.dense_b, B, d, d);
    }
    if (st == VP_OK) st = kernel_activation_forward(e->ctx, rec, &a->pool, &a->pool_pre, (uint64_t)B * d, KERNEL_ACT_TANH);
    if (st == VP_OK) st = dropout(e, rec, &a->pool, (uint64_t)B * d, p, -1, ENC_SITE_HEAD_POOL);
    if (st == VP_OK) st = linear_param(e, rec, &a->logits, &a->pool, e->head.cls_w, e->head.cls_b, B, d, C);
    const struct kernel_cross_entropy_config ce = {B, C, ENCODER_IGNORE_INDEX, (float)e->opt.label_smoothing};
    if (st == VP_OK)
        st = kernel_cross_entropy_forward(e->ctx, rec, &a->loss, &a->ce_lse, NULL, &a->ce_scratch, &a->logits,
                                          &a->labels, &ce);
    return st;
}

vp_status enc_record_layer(struct encoder *e, struct vk_recorder *rec, int l, bool train) {
    struct enc_acts *a = &e->acts;
    const uint32_t N = (uint32_t)(a->B * a->T);
    vp_status st = attention_block_forward(e, rec, l, l > 0 ? &a->layers[l - 1].out : &a->x0, N, train);
    return st == VP_OK ? ffn_block_forward(e, rec, l, N, train) : st;
}

vp_status enc_record_forward(struct encoder *e, struct vk_recorder *rec, bool train) {
    const char *site = vk_recorder_label(rec, "forward");
    struct enc_acts *a = &e->acts;
    const uint32_t N = (uint32_t)(a->B * a->T);
    vp_status st = prefixes_forward(e, rec);
    if (st == VP_OK) st = embeddings_forward(e, rec, N, train);
    for (int l = 0; l < e->arch.layers && st == VP_OK; l++) st = enc_record_layer(e, rec, l, train);
    if (st == VP_OK) st = e->arch.head == MODEL_HEAD_MLM ? mlm_head_forward(e, rec) : head_forward(e, rec, train);
    vk_recorder_label(rec, site);
    return st;
}
