/* The decoder's forward pass (tests/reference/decoder.h) recorded from the
 * kernels: embeddings (+ GPT-2's learned positions), pre-norm layers with
 * causal grouped-query attention (RoPE for LLaMA), the final norm, the LM
 * head and the shifted cross-entropy. Heads are split (kv heads repeated
 * per group) and merged with the embedding gather and constant index
 * tables. */
#include "decoder_lm.h"

/* y = x·Wᵀ + b. A trained piece sits at an element offset of its param:
 * a batched product with offsets, the bias added as ones (M,1)·b (1,N). */
static vp_status linear(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *y, // (M,N)
                        const struct vk_buffer *x,                                             // (M,K)
                        const struct dec_weight *w, const struct dec_weight *b, uint32_t M, uint32_t K,
                        uint32_t N) {
    if (!w->param && (!b || !b->param))
        return kernel_matmul_forward(m->ctx, rec, y, x, &w->frozen, w->dtype, b ? &b->frozen : NULL, M, K, N, NULL);
    vp_status st = w->param ? kernel_matmul_batched(m->ctx, rec, (struct kernel_matrix){y, 0, 0},
                                                    (struct kernel_matrix){x, 0, 0},
                                                    (struct kernel_matrix){&w->param->value, w->poff, 0}, 1, M, N, K,
                                                    false, true, 1.0f, 0.0f, NULL)
                            : kernel_matmul_forward(m->ctx, rec, y, x, &w->frozen, w->dtype, NULL, M, K, N, NULL);
    if (st == VP_OK && b)
        st = kernel_matmul_batched(m->ctx, rec, (struct kernel_matrix){y, 0, 0},
                                   (struct kernel_matrix){&m->acts.ones, 0, 0},
                                   (struct kernel_matrix){b->param ? &b->param->value : &b->frozen, b->poff, 0}, 1, M,
                                   N, 1, false, false, 1.0f, 1.0f, NULL);
    return st;
}

/* y += (α/r)·(x·Aᵀ)·Bᵀ for every LoRA at `at` of layer l: hpre = x·Aᵀ kept
 * for the backward, the second product accumulated into y (beta = 1). */
static vp_status loras_forward(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                               const struct vk_buffer *y, const struct vk_buffer *x, uint32_t N) {
    const char *site = vk_recorder_label(rec, "forward lora");
    vp_status st = VP_OK;
    for (int i = 0; i < m->spec.count && st == VP_OK; i++) {
        const struct delta_module *d = &m->spec.modules[i];
        struct dec_slot *s = dec_slot_at(m, i, l);
        if (!s->active || d->kind != DELTA_LORA || d->at != at) continue;
        const uint32_t r = (uint32_t)d->size;
        s->in = x;
        st = kernel_matmul_forward(m->ctx, rec, &s->hpre, x, &s->lora_a->value, VP_DTYPE_F32, NULL, N,
                                   (uint32_t)s->din, r, NULL);
        if (st == VP_OK)
            st = kernel_matmul_batched(m->ctx, rec, (struct kernel_matrix){y, 0, 0},
                                       (struct kernel_matrix){&s->hpre, 0, 0},
                                       (struct kernel_matrix){&s->lora_b->value, 0, 0}, 1, N, (uint32_t)s->dout, r,
                                       false, true, (float)(d->alpha / d->size), 1.0f, NULL);
    }
    vk_recorder_label(rec, site);
    return st;
}

double dec_dropout_p(const struct decoder *m, double p) { return m->recording_train && m->opt.dropout ? p : 0.0; }

struct kernel_dropout_key dec_dropout_key(const struct decoder *m, int layer, int site) {
    return (struct kernel_dropout_key){m->opt.seed, m->step, enc_dropout_stream(layer, site)};
}

/* x = dropout(x) in place at a site (nothing when its p is 0). */
static vp_status dropout(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *x, uint64_t n, double p,
                         int layer, int site) {
    if (dec_dropout_p(m, p) <= 0.0) return VP_OK;
    const struct kernel_dropout_key key = dec_dropout_key(m, layer, site);
    return kernel_dropout_forward(m->ctx, rec, x, x, n, &key, p);
}

vp_status dec_record_dropout(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *x, uint64_t n,
                             double p, int layer, int site) {
    return dropout(m, rec, x, n, p, layer, site);
}

/* out[n,:] = table[ids[n],:] for fp32 rows of C values. */
static vp_status gather(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *out,
                        const struct vk_buffer *ids, const struct vk_buffer *table, uint64_t N, uint64_t V,
                        uint32_t C) {
    return kernel_embedding_forward(m->ctx, rec, out, ids, table, (uint32_t)N, (uint32_t)V, C, VP_DTYPE_F32,
                                    false);
}

static struct kernel_matrix mat(const struct vk_buffer *buf, uint64_t stride) {
    return (struct kernel_matrix){buf, 0, stride};
}

/* hact = dropout(f(hpre)) (n elements); identity without dropout: hact is
 * hpre itself. */
static vp_status bottleneck_act(struct decoder *m, struct vk_recorder *rec, const struct dec_slot *s,
                                const struct vk_buffer *hact, uint64_t n) {
    const struct delta_module *d = &m->spec.modules[s->module];
    vp_status st = VP_OK;
    if (d->act != DELTA_ACT_IDENTITY)
        st = kernel_activation_forward(m->ctx, rec, hact, &s->hpre, n,
                                       d->act == DELTA_ACT_GELU ? KERNEL_ACT_GELU : KERNEL_ACT_RELU);
    else if (hact != &s->hpre)
        st = vk_recorder_copy(rec, hact, 0, &s->hpre, 0, n * 4);
    return st == VP_OK ? dropout(m, rec, hact, n, dec_adapter_p(m, d), s->layer, ENC_SITE_ADAPTER + s->module) : st;
}

/* Per head (mh-pa): Δ's columns of head h from in's columns of head h,
 * every head's matrices in one batched product over (H,N,·) slices; biases
 * added as ones (N,1)·b[h] (1,·). */
static vp_status adapter_heads_forward(struct decoder *m, struct vk_recorder *rec, struct dec_slot *s,
                                       const struct vk_buffer *hact, uint32_t N) {
    const struct delta_module *d = &m->spec.modules[s->module];
    struct dec_acts *a = &m->acts;
    const uint32_t H = (uint32_t)m->arch.heads, hd = (uint32_t)m->arch.head_dim, r = (uint32_t)d->size;
    const uint64_t NH = (uint64_t)N * H;
    vp_status st = gather(m, rec, &s->zh, &a->ids_hsplit, s->in, NH, NH, hd);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, mat(&s->hpre, (uint64_t)N * r), mat(&s->zh, (uint64_t)N * hd),
                                   mat(&s->down_w->value, (uint64_t)r * hd), H, N, r, hd, false, true, 1.0f, 0.0f,
                                   NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, mat(&s->hpre, (uint64_t)N * r), mat(&a->ones, 0),
                                   mat(&s->down_b->value, r), H, N, r, 1, false, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK) st = bottleneck_act(m, rec, s, hact, NH * r);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, mat(&s->dh, (uint64_t)N * hd), mat(hact, (uint64_t)N * r),
                                   mat(&s->up_w->value, (uint64_t)hd * r), H, N, hd, r, false, true, 1.0f, 0.0f, NULL);
    if (st == VP_OK)
        st = kernel_matmul_batched(m->ctx, rec, mat(&s->dh, (uint64_t)N * hd), mat(&a->ones, 0),
                                   mat(&s->up_b->value, hd), H, N, hd, 1, false, false, 1.0f, 1.0f, NULL);
    if (st == VP_OK) st = gather(m, rec, &s->delta, &a->ids_hmerge, &s->dh, NH, NH, hd);
    return st;
}

/* Every adapter at (at, insert) of layer l in spec order, with Δ(z) =
 * dropout(f(z·W_downᵀ + b_down))·W_upᵀ + b_up and s = 1, the module's
 * scale or σ(g): a parallel one adds s·Δ(par_in) to *cur in place (a gated
 * one through its out buffer), a sequential one writes *cur + s·Δ(*cur)
 * into its out buffer, which becomes *cur. */
static vp_status adapters_forward(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                                  enum delta_insert insert, const struct vk_buffer **cur,
                                  const struct vk_buffer *par_in, uint32_t N) {
    const char *site = vk_recorder_label(rec, "forward adapter");
    vp_status st = VP_OK;
    for (int i = 0; i < m->spec.count && st == VP_OK; i++) {
        const struct delta_module *d = &m->spec.modules[i];
        struct dec_slot *s = dec_slot_at(m, i, l);
        if (!s->active || d->kind != DELTA_ADAPTER || d->at != at || d->insert != insert) continue;
        const uint32_t r = (uint32_t)d->size;
        const uint64_t n = (uint64_t)N * (uint64_t)s->dout;
        const bool drops = dec_dropout_p(m, dec_adapter_p(m, d)) > 0;
        const struct vk_buffer *hact = d->act == DELTA_ACT_IDENTITY && !drops ? &s->hpre : &s->hact;
        const struct vk_buffer *in = insert == DELTA_PARALLEL ? par_in : *cur, *target = *cur;
        s->in = in;
        st = d->per_head ? adapter_heads_forward(m, rec, s, hact, N)
                         : kernel_matmul_forward(m->ctx, rec, &s->hpre, in, &s->down_w->value, VP_DTYPE_F32,
                                                 &s->down_b->value, N, (uint32_t)s->din, r, NULL);
        if (st == VP_OK && !d->per_head) st = bottleneck_act(m, rec, s, hact, (uint64_t)N * r);
        if (st == VP_OK && !d->per_head)
            st = kernel_matmul_forward(m->ctx, rec, &s->delta, hact, &s->up_w->value, VP_DTYPE_F32, &s->up_b->value,
                                       N, r, (uint32_t)s->dout, NULL);
        const bool own = insert == DELTA_SEQUENTIAL || d->compose == DELTA_COMPOSE_GATED;
        const struct vk_buffer *out = own ? &s->out : target;
        if (st == VP_OK && d->compose == DELTA_COMPOSE_GATED)
            st = kernel_sigmoid_gate_forward(m->ctx, rec, out, target, &s->delta, &s->gate->value, N,
                                             (uint32_t)s->dout, 1);
        else if (st == VP_OK)
            st = kernel_add_scaled_forward(m->ctx, rec, out, target, &s->delta,
                                           d->compose == DELTA_COMPOSE_SCALE ? (float)d->scale : 1.0f, n);
        if (st == VP_OK && insert == DELTA_PARALLEL && out != target)
            st = vk_recorder_copy(rec, target, 0, out, 0, n * 4);
        if (insert == DELTA_SEQUENTIAL) *cur = out;
    }
    vk_recorder_label(rec, site);
    return st;
}


/* LayerNorm (with β when the model has it) or RMSNorm. */
static vp_status norm(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *y,
                      const struct vk_buffer *mean, const struct vk_buffer *rstd, const struct vk_buffer *x,
                      const struct dec_weight *w, const struct dec_weight *b, uint32_t N) {
    const uint32_t d = (uint32_t)m->arch.hidden;
    const float eps = (float)m->arch.norm_eps;
    if (m->arch.norm == MODEL_NORM_RMSNORM)
        return kernel_rmsnorm_forward(m->ctx, rec, y, rstd, x, dec_wbuf(w), N, d, eps, VP_DTYPE_F32,
                                      KERNEL_ROWS_AUTO);
    return kernel_layernorm_forward(m->ctx, rec, y, mean, rstd, x, dec_wbuf(w), b ? dec_wbuf(b) : NULL, N, d, eps,
                                    VP_DTYPE_F32, KERNEL_ROWS_AUTO);
}

static vp_status embeddings_forward(struct decoder *m, struct vk_recorder *rec, uint32_t N) {
    struct dec_acts *a = &m->acts;
    const struct model_arch *ar = &m->arch;
    const uint32_t d = (uint32_t)ar->hidden;
    vp_status st = kernel_embedding_forward(m->ctx, rec, &a->x0, &a->ids, dec_wbuf(m->w.embed), N,
                                            (uint32_t)ar->vocab_size, d, m->w.embed->dtype, false);
    if (st == VP_OK && m->w.pos)
        st = kernel_embedding_forward(m->ctx, rec, &a->x0, &a->pos, dec_wbuf(m->w.pos), N,
                                      (uint32_t)ar->max_positions, d, m->w.pos->dtype, true);
    if (st == VP_OK) st = dropout(m, rec, &a->x0, (uint64_t)N * d, ar->embedding_dropout, -1, ENC_SITE_EMB);
    return st;
}

struct kernel_attention_config dec_attention_config(const struct decoder *m, int l) {
    const struct dec_acts *a = &m->acts;
    const double p = dec_dropout_p(m, m->arch.attention_dropout);
    return (struct kernel_attention_config){
        .B = (uint32_t)a->B, .H = (uint32_t)m->arch.heads, .T = (uint32_t)a->T, .S = (uint32_t)a->T,
        .L = (uint32_t)m->prefix_rows[l], .D = (uint32_t)m->arch.head_dim, .causal = true, .dropout_p = p,
        .dropout_seed = m->opt.seed, .dropout_step = m->step,
        .dropout_stream = enc_dropout_stream(l, ENC_SITE_ATTN_PROBS)};
}

/* The attention over the batch's own tokens: q, k, v split into heads (kv
 * heads repeated per group), rotated, attended with the layer's prefix rows
 * and merged into ctx. The generator swaps in its cached attention. */
static vp_status attention_core(struct decoder *m, struct vk_recorder *rec, int l, uint32_t N) {
    struct dec_acts *a = &m->acts;
    struct dec_layer_acts *la = &a->layers[l];
    const struct model_arch *ar = &m->arch;
    const uint32_t H = (uint32_t)ar->heads, G = (uint32_t)ar->kv_heads, hd = (uint32_t)ar->head_dim;
    const uint32_t B = (uint32_t)a->B, T = (uint32_t)a->T;
    const uint64_t NH = (uint64_t)N * H, NG = (uint64_t)N * G;
    vp_status st = gather(m, rec, &la->qh, &a->ids_split_q, &la->q, NH, NH, hd);
    if (st == VP_OK) st = gather(m, rec, &la->kh, &a->ids_split_kv, &la->k, NH, NG, hd);
    if (st == VP_OK) st = gather(m, rec, &la->vh, &a->ids_split_kv, &la->v, NH, NG, hd);
    if (st == VP_OK && ar->positions == MODEL_POS_ROTARY) {
        const uint32_t P = (uint32_t)ar->max_positions;
        st = kernel_rope_forward(m->ctx, rec, &la->qh, &la->qh, &a->rope, NULL, B * H, T, hd, P, m->position_offset);
        if (st == VP_OK)
            st = kernel_rope_forward(m->ctx, rec, &la->kh, &la->kh, &a->rope, NULL, B * H, T, hd, P,
                                     m->position_offset);
    }
    const uint32_t Lp = (uint32_t)m->prefix_rows[l];
    if (st == VP_OK && Lp) { /* P_k, P_v from prefix_src, never rotated */
        const uint64_t n = (uint64_t)Lp * H * hd;
        st = gather(m, rec, &la->pk, &la->ids_pk, &a->prefix_src, n, m->prefix_src_elems, 1);
        if (st == VP_OK) st = gather(m, rec, &la->pv, &la->ids_pv, &a->prefix_src, n, m->prefix_src_elems, 1);
    }
    const struct kernel_attention_config cfg = dec_attention_config(m, l);
    if (st == VP_OK)
        st = kernel_attention_forward(m->ctx, rec, &la->atth, &la->lse, &la->qh, &la->kh, &la->vh,
                                      Lp ? &la->pk : NULL, Lp ? &la->pv : NULL, &a->keep, &cfg);
    if (st == VP_OK) st = gather(m, rec, &la->ctx, &a->ids_merge, &la->atth, NH, NH, hd);
    return st;
}

static vp_status attention_forward(struct decoder *m, struct vk_recorder *rec, int l, const struct vk_buffer *x,
                                   uint32_t N, const struct dec_attention_core *core) {
    const char *site = vk_recorder_label(rec, "forward attention");
    struct dec_layer_acts *la = &m->acts.layers[l];
    const struct dec_layer_weights *w = &m->w.layers[l];
    const struct model_arch *ar = &m->arch;
    const uint32_t d = (uint32_t)ar->hidden, qd = (uint32_t)(ar->heads * ar->head_dim);
    const uint32_t kvd = (uint32_t)(ar->kv_heads * ar->head_dim);
    vp_status st = norm(m, rec, &la->a_in, &la->mean1, &la->rstd1, x, w->norm1_w, w->norm1_b, N);
    if (st == VP_OK) st = linear(m, rec, &la->q, &la->a_in, w->wq, w->bq, N, d, qd);
    if (st == VP_OK) st = loras_forward(m, rec, l, DELTA_AT_Q, &la->q, &la->a_in, N);
    if (st == VP_OK) st = linear(m, rec, &la->k, &la->a_in, w->wk, w->bk, N, d, kvd);
    if (st == VP_OK) st = loras_forward(m, rec, l, DELTA_AT_K, &la->k, &la->a_in, N);
    if (st == VP_OK) st = linear(m, rec, &la->v, &la->a_in, w->wv, w->bv, N, d, kvd);
    if (st == VP_OK) st = loras_forward(m, rec, l, DELTA_AT_V, &la->v, &la->a_in, N);
    if (st == VP_OK) st = core ? core->record(m, rec, l, N, core->user) : attention_core(m, rec, l, N);
    const struct vk_buffer *cur = &la->ctx;
    if (st == VP_OK) st = adapters_forward(m, rec, l, DELTA_AT_ATTN, DELTA_PARALLEL, &cur, &la->a_in, N);
    if (st == VP_OK) st = linear(m, rec, &la->o, &la->ctx, w->wo, w->bo, N, qd, d);
    if (st == VP_OK) st = loras_forward(m, rec, l, DELTA_AT_O, &la->o, &la->ctx, N);
    if (st == VP_OK) st = dropout(m, rec, &la->o, (uint64_t)N * d, ar->hidden_dropout, l, ENC_SITE_ATTN_OUT);
    cur = &la->o;
    if (st == VP_OK) st = adapters_forward(m, rec, l, DELTA_AT_ATTN, DELTA_SEQUENTIAL, &cur, NULL, N);
    la->o_final = cur;
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &la->h, x, cur, (uint64_t)N * d);
    vk_recorder_label(rec, site);
    return st;
}

static vp_status ffn_forward(struct decoder *m, struct vk_recorder *rec, int l, uint32_t N) {
    const char *site = vk_recorder_label(rec, "forward ffn");
    struct dec_layer_acts *la = &m->acts.layers[l];
    const struct dec_layer_weights *w = &m->w.layers[l];
    const struct model_arch *ar = &m->arch;
    const uint32_t d = (uint32_t)ar->hidden, I = (uint32_t)ar->intermediate;
    const uint64_t nI = (uint64_t)N * I;
    vp_status st = norm(m, rec, &la->f_in, &la->mean2, &la->rstd2, &la->h, w->norm2_w, w->norm2_b, N);
    if (st == VP_OK) st = linear(m, rec, &la->upre, &la->f_in, w->wup, w->bup, N, d, I);
    if (st == VP_OK) st = loras_forward(m, rec, l, DELTA_AT_UP, &la->upre, &la->f_in, N);
    if (ar->family == MODEL_FAMILY_LLAMA) {
        if (st == VP_OK) st = linear(m, rec, &la->gpre, &la->f_in, w->wgate, w->bgate, N, d, I);
        if (st == VP_OK) st = kernel_swiglu_forward(m->ctx, rec, &la->u, &la->gpre, &la->upre, nI);
    } else if (st == VP_OK) {
        st = kernel_activation_forward(m->ctx, rec, &la->u, &la->upre, nI, KERNEL_ACT_GELU_TANH);
    }
    if (st == VP_OK) st = linear(m, rec, &la->dn, &la->u, w->wdown, w->bdown, N, I, d);
    if (st == VP_OK) st = loras_forward(m, rec, l, DELTA_AT_DOWN, &la->dn, &la->u, N);
    if (st == VP_OK) st = dropout(m, rec, &la->dn, (uint64_t)N * d, ar->hidden_dropout, l, ENC_SITE_FFN_OUT);
    const struct vk_buffer *cur = &la->dn;
    if (st == VP_OK) st = adapters_forward(m, rec, l, DELTA_AT_FFN, DELTA_SEQUENTIAL, &cur, NULL, N);
    if (st == VP_OK) st = adapters_forward(m, rec, l, DELTA_AT_FFN, DELTA_PARALLEL, &cur, &la->f_in, N);
    la->dn_final = cur;
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &la->out, &la->h, cur, (uint64_t)N * d);
    vk_recorder_label(rec, site);
    return st;
}

/* Every prefix module's rows into prefix_src: a plain module's P_k, P_v
 * copied from its params, a reparameterised module's MLP output written
 * into its region. */
static vp_status prefixes_forward(struct decoder *m, struct vk_recorder *rec) {
    const char *site = vk_recorder_label(rec, "forward prefix");
    struct dec_acts *a = &m->acts;
    const uint64_t kvd = (uint64_t)m->arch.kv_heads * m->arch.head_dim;
    vp_status st = VP_OK;
    for (int i = 0; i < m->spec.count && st == VP_OK; i++) {
        const struct delta_module *d = &m->spec.modules[i];
        struct dec_reparam *rp = &m->reparam[i];
        if (d->kind != DELTA_PREFIX) continue;
        const uint32_t L = (uint32_t)d->size, R = (uint32_t)d->reparam, dm = (uint32_t)m->arch.hidden;
        if (rp->emb) {
            const struct vk_buffer out = dec_view(&a->prefix_src, rp->out * 4, (uint64_t)L * rp->width * 4);
            st = kernel_matmul_forward(m->ctx, rec, &rp->h0pre, &rp->emb->value, &rp->w0->value, VP_DTYPE_F32,
                                       &rp->b0->value, L, dm, R, NULL);
            if (st == VP_OK)
                st = kernel_activation_forward(m->ctx, rec, &rp->h0, &rp->h0pre, (uint64_t)L * R, KERNEL_ACT_TANH);
            if (st == VP_OK)
                st = kernel_matmul_forward(m->ctx, rec, &out, &rp->h0, &rp->w2->value, VP_DTYPE_F32, &rp->b2->value, L,
                                           R, rp->width, NULL);
            continue;
        }
        for (int l = 0; l < m->arch.layers && st == VP_OK; l++) {
            const struct dec_slot *s = dec_slot_at(m, i, l);
            if (!s->active) continue;
            st = vk_recorder_copy(rec, &a->prefix_src, s->src_k * 4, &s->prefix_k->value, 0, (uint64_t)L * kvd * 4);
            if (st == VP_OK)
                st = vk_recorder_copy(rec, &a->prefix_src, s->src_v * 4, &s->prefix_v->value, 0, (uint64_t)L * kvd * 4);
        }
    }
    vk_recorder_label(rec, site);
    return st;
}

vp_status dec_record_prefixes(struct decoder *m, struct vk_recorder *rec) { return prefixes_forward(m, rec); }

/* Layer l from its input (x0 or layer l-1's out) to its out. */
static vp_status layer_forward(struct decoder *m, struct vk_recorder *rec, int l, uint32_t N,
                               const struct dec_attention_core *core) {
    const struct vk_buffer *x = l > 0 ? &m->acts.layers[l - 1].out : &m->acts.x0;
    vp_status st = attention_forward(m, rec, l, x, N, core);
    return st == VP_OK ? ffn_forward(m, rec, l, N) : st;
}

vp_status dec_record_trunk(struct decoder *m, struct vk_recorder *rec, uint32_t N,
                           const struct dec_attention_core *core) {
    struct dec_acts *a = &m->acts;
    const struct model_arch *ar = &m->arch;
    const char *site = vk_recorder_label(rec, "forward");
    vp_status st = embeddings_forward(m, rec, N);
    for (int l = 0; l < ar->layers && st == VP_OK; l++) st = layer_forward(m, rec, l, N, core);
    const struct vk_buffer *x = &a->layers[ar->layers - 1].out;
    if (st == VP_OK) st = norm(m, rec, &a->xf, &a->meanf, &a->rstdf, x, m->w.normf_w, m->w.normf_b, N);
    vk_recorder_label(rec, site);
    return st;
}

vp_status dec_record_layer(struct decoder *m, struct vk_recorder *rec, int l, uint32_t N) {
    return layer_forward(m, rec, l, N, NULL);
}

vp_status dec_record_forward(struct decoder *m, struct vk_recorder *rec) {
    const char *site = vk_recorder_label(rec, "forward");
    struct dec_acts *a = &m->acts;
    const struct model_arch *ar = &m->arch;
    const uint32_t N = (uint32_t)(a->B * a->T), d = (uint32_t)ar->hidden, V = (uint32_t)ar->vocab_size;
    vp_status st = prefixes_forward(m, rec);
    if (st == VP_OK) st = dec_record_trunk(m, rec, N, NULL);
    if (st == VP_OK)
        st = kernel_matmul_forward(m->ctx, rec, &a->logits, &a->xf, dec_wbuf(m->w.head), m->w.head->dtype, NULL, N,
                                   d, V, NULL);
    const struct kernel_cross_entropy_config ce = {N, V, ENCODER_IGNORE_INDEX, (float)m->opt.label_smoothing};
    if (st == VP_OK)
        st = kernel_cross_entropy_forward(m->ctx, rec, &a->loss, &a->ce_lse, NULL, &a->ce_scratch, &a->logits,
                                          &a->targets, &ce);
    vk_recorder_label(rec, site);
    return st;
}

/* The delta sites and linear pieces for the encoder-decoder model
 * (seq2seq_forward.c), which runs them on a decoder whose layers are its
 * delta blocks. */
vp_status dec_record_linear(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *y,
                            const struct vk_buffer *x, const struct dec_weight *w, const struct dec_weight *b,
                            uint32_t M, uint32_t K, uint32_t N) {
    return linear(m, rec, y, x, w, b, M, K, N);
}
vp_status dec_record_loras(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                           const struct vk_buffer *y, const struct vk_buffer *x, uint32_t N) {
    return loras_forward(m, rec, l, at, y, x, N);
}
vp_status dec_record_adapters(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                              enum delta_insert insert, const struct vk_buffer **cur, const struct vk_buffer *par_in,
                              uint32_t N) {
    return adapters_forward(m, rec, l, at, insert, cur, par_in, N);
}
vp_status dec_record_norm(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *y,
                          const struct vk_buffer *mean, const struct vk_buffer *rstd, const struct vk_buffer *x,
                          const struct dec_weight *w, const struct dec_weight *b, uint32_t N) {
    return norm(m, rec, y, mean, rstd, x, w, b, N);
}
