/* Whole-model reference: the forward pass (runtime/model/README.md), every
 * dropout at p = 0. Activations are kept in m->acts for model_backward.c. */
#include "model.h"
#include "ref.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Activation buffers
 * ------------------------------------------------------------------------ */

static void *acts_alloc(struct refm_acts *a, size_t count, size_t size) {
    if (a->owned_count == a->owned_cap) {
        a->owned_cap = a->owned_cap ? 2 * a->owned_cap : 256;
        a->owned = realloc(a->owned, (size_t)a->owned_cap * sizeof *a->owned);
        assert(a->owned);
    }
    void *p = calloc(count ? count : 1, size);
    assert(p);
    a->owned[a->owned_count++] = p;
    return p;
}

#define ACTS_DOUBLES(a, n) ((double *)acts_alloc((a), (size_t)(n), sizeof(double)))

void refm_acts_free(struct refm_acts *a) {
    for (int i = 0; i < a->owned_count; i++) free(a->owned[i]);
    free(a->owned);
    *a = (struct refm_acts){0};
}

static void alloc_layer_acts(struct refm *m, struct refm_layer_acts *la, int l, size_t N) {
    struct refm_acts *a = &m->acts;
    const size_t d = (size_t)m->arch.hidden, I = (size_t)m->arch.intermediate;
    double **nd[] = {&la->x, &la->q, &la->k, &la->v, &la->qh, &la->kh, &la->vh, &la->atth, &la->ctx,
                     &la->o, &la->res1, &la->h, &la->dn, &la->res2, &la->out};
    for (size_t k = 0; k < sizeof nd / sizeof nd[0]; k++) *nd[k] = ACTS_DOUBLES(a, N * d);
    double **n1[] = {&la->ln1_mean, &la->ln1_rstd, &la->ln2_mean, &la->ln2_rstd};
    for (size_t k = 0; k < sizeof n1 / sizeof n1[0]; k++) *n1[k] = ACTS_DOUBLES(a, N);
    la->upre = ACTS_DOUBLES(a, N * I);
    la->u = ACTS_DOUBLES(a, N * I);
    if (m->prefix_rows[l]) {
        la->prefix_k = ACTS_DOUBLES(a, (size_t)m->prefix_rows[l] * d);
        la->prefix_v = ACTS_DOUBLES(a, (size_t)m->prefix_rows[l] * d);
    }
}

static void alloc_slot_acts(struct refm *m, struct refm_slot *s, size_t N) {
    const struct delta_module *mod = &m->spec.modules[s->module];
    struct refm_acts *a = &m->acts;
    if (mod->kind != DELTA_ADAPTER && mod->kind != DELTA_LORA) return;
    size_t rows = mod->per_head ? (size_t)m->arch.heads : 1;
    s->in = ACTS_DOUBLES(a, N * (size_t)s->din);
    s->hpre = ACTS_DOUBLES(a, rows * N * (size_t)mod->size);
    s->hact = ACTS_DOUBLES(a, rows * N * (size_t)mod->size);
    s->delta = ACTS_DOUBLES(a, N * (size_t)s->dout);
}

/* Sizes every activation for (B,T); a no-op when the shape is unchanged. */
static void ensure_acts(struct refm *m, int B, int T) {
    struct refm_acts *a = &m->acts;
    if (a->B == B && a->T == T) return;
    refm_acts_free(a);
    a->B = B;
    a->T = T;
    const size_t N = (size_t)B * T, d = (size_t)m->arch.hidden;
    a->ids = acts_alloc(a, N, sizeof(int32_t));
    a->pos = acts_alloc(a, N, sizeof(int32_t));
    a->types = acts_alloc(a, N, sizeof(int32_t));
    a->labels = acts_alloc(a, (size_t)B, sizeof(int32_t));
    a->keep = acts_alloc(a, N, 1);
    a->emb = ACTS_DOUBLES(a, N * d);
    a->emb_mean = ACTS_DOUBLES(a, N);
    a->emb_rstd = ACTS_DOUBLES(a, N);
    a->x0 = ACTS_DOUBLES(a, N * d);
    a->layers = acts_alloc(a, (size_t)m->arch.layers, sizeof *a->layers);
    for (int l = 0; l < m->arch.layers; l++) alloc_layer_acts(m, &a->layers[l], l, N);
    for (int i = 0; i < m->spec.count; i++)
        for (int l = 0; l < m->arch.layers; l++)
            if (refm_slot_at(m, i, l)->active) alloc_slot_acts(m, refm_slot_at(m, i, l), N);
    a->cls = ACTS_DOUBLES(a, (size_t)B * d);
    a->pool_pre = ACTS_DOUBLES(a, (size_t)B * d);
    a->pool = ACTS_DOUBLES(a, (size_t)B * d);
    a->logits = ACTS_DOUBLES(a, (size_t)B * m->arch.num_labels);
}

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static void model_act_forward(enum model_act act, double *y, const double *x, size_t n) {
    switch (act) {
    case MODEL_ACT_GELU: ref_gelu_forward(y, x, n); return;
    case MODEL_ACT_GELU_TANH: ref_gelu_tanh_forward(y, x, n); return;
    case MODEL_ACT_RELU: ref_relu_forward(y, x, n); return;
    case MODEL_ACT_SILU: ref_silu_forward(y, x, n); return;
    case MODEL_ACT_SWIGLU: break; /* rejected by refm_create */
    }
    assert(!"unsupported activation");
}

static void delta_act_forward(enum delta_act act, double *y, const double *x, size_t n) {
    if (act == DELTA_ACT_RELU) ref_relu_forward(y, x, n);
    else if (act == DELTA_ACT_GELU) ref_gelu_forward(y, x, n);
    else memcpy(y, x, n * sizeof(double));
}

/* (B,T,H,D) → (B,H,T,D). */
void refm_split_heads(double *dst, const double *src, int B, int T, int H, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                memcpy(dst + (((size_t)b * H + h) * T + t) * D, src + (((size_t)b * T + t) * H + h) * D,
                       (size_t)D * sizeof(double));
}

/* (B,H,T,D) → (B,T,H,D). */
void refm_merge_heads(double *dst, const double *src, int B, int T, int H, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                memcpy(dst + (((size_t)b * T + t) * H + h) * D, src + (((size_t)b * H + h) * T + t) * D,
                       (size_t)D * sizeof(double));
}

/* dst (N,w) = columns c0 .. c0+w−1 of src (N,C). */
void refm_gather_cols(double *dst, const double *src, int N, int C, int c0, int w) {
    for (int n = 0; n < N; n++)
        memcpy(dst + (size_t)n * w, src + (size_t)n * C + c0, (size_t)w * sizeof(double));
}

/* Columns c0 .. c0+w−1 of dst (N,C) = src (N,w). */
static void scatter_cols(double *dst, const double *src, int N, int C, int c0, int w) {
    for (int n = 0; n < N; n++)
        memcpy(dst + (size_t)n * C + c0, src + (size_t)n * w, (size_t)w * sizeof(double));
}

/* s of h + s·Δh: 1 (add), the module's scale, or σ(g) (gated). */
static double compose_scale(const struct delta_module *mod, const struct refm_slot *s) {
    if (mod->compose == DELTA_COMPOSE_GATED) return 1.0 / (1.0 + exp(-s->gate->data[0]));
    return mod->compose == DELTA_COMPOSE_SCALE ? mod->scale : 1.0;
}

/* ------------------------------------------------------------------------
 * Delta modules
 * ------------------------------------------------------------------------ */

/* y += s·Δ(z), Δ(z) = f(z·W_downᵀ + b_down)·W_upᵀ + b_up; per head, Δ's
 * columns of head h come from z's columns of head h. z may be y (a
 * sequential adapter): it is copied to s->in first. */
static void adapter_forward(struct refm *m, struct refm_slot *s, double *y, // (N,d)
                            const double *z,                                 // (N,d)
                            int N) {
    const struct delta_module *mod = &m->spec.modules[s->module];
    const int d = m->arch.hidden, r = mod->size, H = m->arch.heads, hd = m->arch.head_dim;
    memcpy(s->in, z, (size_t)N * d * sizeof(double));
    if (!mod->per_head) {
        ref_matmul_forward(s->hpre, s->in, s->down_w->data, s->down_b->data, N, d, r);
        delta_act_forward(mod->act, s->hact, s->hpre, (size_t)N * r);
        ref_matmul_forward(s->delta, s->hact, s->up_w->data, s->up_b->data, N, r, d);
    } else {
        double *zh = malloc((size_t)N * hd * sizeof(double)), *dh = malloc((size_t)N * hd * sizeof(double));
        assert(zh && dh);
        for (int h = 0; h < H; h++) {
            double *hpre = s->hpre + (size_t)h * N * r, *hact = s->hact + (size_t)h * N * r;
            refm_gather_cols(zh, s->in, N, d, h * hd, hd);
            ref_matmul_forward(hpre, zh, s->down_w->data + (size_t)h * r * hd, s->down_b->data + (size_t)h * r,
                               N, hd, r);
            delta_act_forward(mod->act, hact, hpre, (size_t)N * r);
            ref_matmul_forward(dh, hact, s->up_w->data + (size_t)h * hd * r, s->up_b->data + (size_t)h * hd,
                               N, r, hd);
            scatter_cols(s->delta, dh, N, d, h * hd, hd);
        }
        free(zh);
        free(dh);
    }
    const double scale = compose_scale(mod, s);
    for (size_t i = 0; i < (size_t)N * d; i++) y[i] += scale * s->delta[i];
}

/* y += (α/r)·(x·Aᵀ)·Bᵀ. */
static void lora_forward(struct refm *m, struct refm_slot *s, double *y, // (N,dout)
                         const double *x,                               // (N,din)
                         int N) {
    const struct delta_module *mod = &m->spec.modules[s->module];
    const int r = mod->size;
    memcpy(s->in, x, (size_t)N * s->din * sizeof(double));
    ref_matmul_forward(s->hpre, s->in, s->lora_a->data, NULL, N, s->din, r);
    ref_matmul_forward(s->delta, s->hpre, s->lora_b->data, NULL, N, r, s->dout);
    const double scale = mod->alpha / mod->size;
    for (size_t i = 0; i < (size_t)N * s->dout; i++) y[i] += scale * s->delta[i];
}

/* Every LoRA on projection `at` of layer l, in spec order. */
static void loras_forward(struct refm *m, int l, enum delta_at at, double *y, const double *x, int N) {
    for (int i = 0; i < m->spec.count; i++) {
        struct refm_slot *s = refm_slot_at(m, i, l);
        if (s->active && m->spec.modules[i].kind == DELTA_LORA && m->spec.modules[i].at == at)
            lora_forward(m, s, y, x, N);
    }
}

/* Every adapter at (at, insert) of layer l, in spec order, reading z. */
static void adapters_forward(struct refm *m, int l, enum delta_at at, enum delta_insert insert, double *y,
                             const double *z, int N) {
    for (int i = 0; i < m->spec.count; i++) {
        const struct delta_module *mod = &m->spec.modules[i];
        struct refm_slot *s = refm_slot_at(m, i, l);
        if (s->active && mod->kind == DELTA_ADAPTER && mod->at == at && mod->insert == insert)
            adapter_forward(m, s, y, z, N);
    }
}

void refm_reparam_forward(struct refm *m, int module) {
    const struct delta_module *mod = &m->spec.modules[module];
    struct refm_reparam *rp = &m->reparam[module];
    const int L = mod->size, d = m->arch.hidden, R = mod->reparam, W = rp->w2->shape[0];
    ref_matmul_forward(rp->h0pre, rp->emb->data, rp->w0->data, rp->b0->data, L, d, R);
    ref_tanh_forward(rp->h0, rp->h0pre, (size_t)L * R);
    ref_matmul_forward(rp->out, rp->h0, rp->w2->data, rp->b2->data, L, R, W);
}

/* Fills the layer's prefix rows (H,Lp,hd): module i's rows start at its
 * prefix_offset; head h takes columns h·hd .. h·hd+hd−1 of P (L,d). */
static void gather_prefixes(struct refm *m, int l) {
    struct refm_layer_acts *la = &m->acts.layers[l];
    const int d = m->arch.hidden, H = m->arch.heads, hd = m->arch.head_dim, Lp = m->prefix_rows[l];
    for (int i = 0; i < m->spec.count; i++) {
        const struct delta_module *mod = &m->spec.modules[i];
        const struct refm_slot *s = refm_slot_at(m, i, l);
        if (!s->active || mod->kind != DELTA_PREFIX) continue;
        const double *pk, *pv;
        size_t stride;
        if (s->prefix_k) {
            pk = s->prefix_k->data;
            pv = s->prefix_v->data;
            stride = (size_t)d;
        } else {
            const struct refm_reparam *rp = &m->reparam[i];
            stride = (size_t)rp->w2->shape[0];
            pk = rp->out + (size_t)s->prefix_block * 2 * d;
            pv = pk + d;
        }
        for (int h = 0; h < H; h++)
            for (int j = 0; j < mod->size; j++) {
                size_t dst = ((size_t)h * Lp + s->prefix_offset + j) * hd;
                memcpy(la->prefix_k + dst, pk + j * stride + (size_t)h * hd, (size_t)hd * sizeof(double));
                memcpy(la->prefix_v + dst, pv + j * stride + (size_t)h * hd, (size_t)hd * sizeof(double));
            }
    }
}

/* ------------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------------ */

static void embeddings_forward(struct refm *m, int N) {
    struct refm_acts *a = &m->acts;
    const struct model_arch *ar = &m->arch;
    const int d = ar->hidden;
    if (ar->roberta_positions) ref_positions_roberta(a->pos, a->ids, a->B, a->T, ar->pad_token_id, 0);
    else ref_positions_offset(a->pos, a->B, a->T, 0);
    double *tmp = malloc((size_t)N * d * sizeof(double));
    assert(tmp);
    ref_embedding_forward(a->emb, a->ids, m->w.word->data, N, ar->vocab_size, d);
    ref_embedding_forward(tmp, a->pos, m->w.pos->data, N, ar->max_positions, d);
    ref_add_forward(a->emb, a->emb, tmp, (size_t)N * d);
    if (m->w.type) {
        ref_embedding_forward(tmp, a->types, m->w.type->data, N, ar->type_vocab_size, d);
        ref_add_forward(a->emb, a->emb, tmp, (size_t)N * d);
    }
    free(tmp);
    ref_layernorm_forward(a->x0, a->emb_mean, a->emb_rstd, a->emb, m->w.ln_emb_w->data, m->w.ln_emb_b->data,
                          N, d, ar->norm_eps);
}

static struct ref_attention_config attention_config(const struct refm *m, int l) {
    return (struct ref_attention_config){
        .B = m->acts.B, .H = m->arch.heads, .T = m->acts.T, .S = m->acts.T,
        .L = m->prefix_rows[l], .D = m->arch.head_dim,
        .causal = false, .scale = 0.0, .dropout_p = 0.0, /* dropout off: see model.h */
    };
}

/* Attention block: q/k/v (+LoRA), attention with the layer's prefixes,
 * parallel attention adapters on ctx, output projection (+LoRA), sequential
 * attention adapters, h = LayerNorm_attn(x + o). */
static void attention_block_forward(struct refm *m, int l, int N) {
    struct refm_layer_acts *la = &m->acts.layers[l];
    const struct refm_layer *w = &m->w.layers[l];
    const int B = m->acts.B, T = m->acts.T, d = m->arch.hidden, H = m->arch.heads, hd = m->arch.head_dim;
    ref_matmul_forward(la->q, la->x, w->wq->data, w->bq->data, N, d, d);
    loras_forward(m, l, DELTA_AT_Q, la->q, la->x, N);
    ref_matmul_forward(la->k, la->x, w->wk->data, w->bk->data, N, d, d);
    loras_forward(m, l, DELTA_AT_K, la->k, la->x, N);
    ref_matmul_forward(la->v, la->x, w->wv->data, w->bv->data, N, d, d);
    loras_forward(m, l, DELTA_AT_V, la->v, la->x, N);
    refm_split_heads(la->qh, la->q, B, T, H, hd);
    refm_split_heads(la->kh, la->k, B, T, H, hd);
    refm_split_heads(la->vh, la->v, B, T, H, hd);
    if (m->prefix_rows[l]) gather_prefixes(m, l);
    const struct ref_attention_config cfg = attention_config(m, l);
    ref_attention_forward(la->atth, NULL, la->qh, la->kh, la->vh, la->prefix_k, la->prefix_v, m->acts.keep,
                          &cfg);
    refm_merge_heads(la->ctx, la->atth, B, T, H, hd);
    adapters_forward(m, l, DELTA_AT_ATTN, DELTA_PARALLEL, la->ctx, la->x, N);
    ref_matmul_forward(la->o, la->ctx, w->wo->data, w->bo->data, N, d, d);
    loras_forward(m, l, DELTA_AT_O, la->o, la->ctx, N);
    adapters_forward(m, l, DELTA_AT_ATTN, DELTA_SEQUENTIAL, la->o, la->o, N);
    ref_add_forward(la->res1, la->x, la->o, (size_t)N * d);
    ref_layernorm_forward(la->h, la->ln1_mean, la->ln1_rstd, la->res1, w->ln1_w->data, w->ln1_b->data, N, d,
                          m->arch.norm_eps);
}

/* FFN block: u = act(h·W_upᵀ + b_up (+LoRA)), dn = u·W_downᵀ + b_down
 * (+LoRA), sequential then parallel FFN adapters, out = LayerNorm_out(h + dn). */
static void ffn_block_forward(struct refm *m, int l, int N) {
    struct refm_layer_acts *la = &m->acts.layers[l];
    const struct refm_layer *w = &m->w.layers[l];
    const int d = m->arch.hidden, I = m->arch.intermediate;
    ref_matmul_forward(la->upre, la->h, w->wup->data, w->bup->data, N, d, I);
    loras_forward(m, l, DELTA_AT_UP, la->upre, la->h, N);
    model_act_forward(m->arch.act, la->u, la->upre, (size_t)N * I);
    ref_matmul_forward(la->dn, la->u, w->wdown->data, w->bdown->data, N, I, d);
    loras_forward(m, l, DELTA_AT_DOWN, la->dn, la->u, N);
    adapters_forward(m, l, DELTA_AT_FFN, DELTA_SEQUENTIAL, la->dn, la->dn, N);
    adapters_forward(m, l, DELTA_AT_FFN, DELTA_PARALLEL, la->dn, la->h, N);
    ref_add_forward(la->res2, la->h, la->dn, (size_t)N * d);
    ref_layernorm_forward(la->out, la->ln2_mean, la->ln2_rstd, la->res2, w->ln2_w->data, w->ln2_b->data, N, d,
                          m->arch.norm_eps);
}

/* BERT: logits = tanh(x_L[:,0]·W_poolᵀ + b_pool)·W_clsᵀ + b_cls; RoBERTa the
 * same shape with classifier.dense and classifier.out_proj. */
static void head_forward(struct refm *m) {
    struct refm_acts *a = &m->acts;
    const int B = a->B, T = a->T, d = m->arch.hidden, C = m->arch.num_labels;
    const double *xL = a->layers[m->arch.layers - 1].out;
    for (int b = 0; b < B; b++) memcpy(a->cls + (size_t)b * d, xL + (size_t)b * T * d, (size_t)d * sizeof(double));
    const struct refm_tensor *w1 = m->w.pool_w ? m->w.pool_w : m->w.dense_w;
    const struct refm_tensor *b1 = m->w.pool_w ? m->w.pool_b : m->w.dense_b;
    ref_matmul_forward(a->pool_pre, a->cls, w1->data, b1->data, B, d, d);
    ref_tanh_forward(a->pool, a->pool_pre, (size_t)B * d);
    ref_matmul_forward(a->logits, a->pool, m->w.cls_w->data, m->w.cls_b->data, B, d, C);
}

double refm_forward(struct refm *m, double *logits, const struct refm_batch *batch) {
    const int B = batch->B, T = batch->T, N = B * T;
    assert(B > 0 && T > 0);
    ensure_acts(m, B, T);
    struct refm_acts *a = &m->acts;
    memcpy(a->ids, batch->ids, (size_t)N * sizeof(int32_t));
    for (int n = 0; n < N; n++) {
        a->types[n] = batch->type_ids ? batch->type_ids[n] : 0;
        a->keep[n] = batch->mask ? batch->mask[n] != 0 : 1;
    }
    a->has_labels = batch->labels != NULL;
    if (a->has_labels) memcpy(a->labels, batch->labels, (size_t)B * sizeof(int32_t));

    for (int i = 0; i < m->spec.count; i++)
        if (m->spec.modules[i].kind == DELTA_PREFIX && m->reparam[i].emb) refm_reparam_forward(m, i);
    embeddings_forward(m, N);
    for (int l = 0; l < m->arch.layers; l++) {
        struct refm_layer_acts *la = &a->layers[l];
        memcpy(la->x, l ? a->layers[l - 1].out : a->x0, (size_t)N * m->arch.hidden * sizeof(double));
        attention_block_forward(m, l, N);
        ffn_block_forward(m, l, N);
    }
    head_forward(m);
    if (logits) memcpy(logits, a->logits, (size_t)B * m->arch.num_labels * sizeof(double));
    a->loss = a->has_labels ? ref_cross_entropy_forward(NULL, a->logits, a->labels, B, m->arch.num_labels,
                                                         REFM_IGNORE_INDEX, m->opt.label_smoothing)
                            : 0.0;
    return a->loss;
}

const double *refm_hidden(const struct refm *m, int layer) {
    if (m->acts.B == 0 || layer < -1 || layer >= m->arch.layers) return NULL;
    return layer < 0 ? m->acts.x0 : m->acts.layers[layer].out;
}
