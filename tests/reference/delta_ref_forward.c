/* The delta modules' forward (delta_ref.h), adapter dropout when dl->dropout, and the
 * layout helpers both models use. What each module read and computed is
 * kept in its slot for delta_ref_backward.c. */
#include "delta_ref.h"
#include "ref.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Layout helpers
 * ------------------------------------------------------------------------ */

/* (B,T,H,D) → (B,H,T,D). */
void ref_split_heads(double *dst, const double *src, int B, int T, int H, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                memcpy(dst + (((size_t)b * H + h) * T + t) * D, src + (((size_t)b * T + t) * H + h) * D,
                       (size_t)D * sizeof(double));
}

/* (B,H,T,D) → (B,T,H,D). */
void ref_merge_heads(double *dst, const double *src, int B, int T, int H, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                memcpy(dst + (((size_t)b * T + t) * H + h) * D, src + (((size_t)b * H + h) * T + t) * D,
                       (size_t)D * sizeof(double));
}

void ref_gather_cols(double *dst, const double *src, int N, int C, int c0, int w) {
    for (int n = 0; n < N; n++) memcpy(dst + (size_t)n * w, src + (size_t)n * C + c0, (size_t)w * sizeof(double));
}

/* Columns c0 .. c0+w−1 of dst (N,C) = src (N,w). */
static void scatter_cols(double *dst, const double *src, int N, int C, int c0, int w) {
    for (int n = 0; n < N; n++) memcpy(dst + (size_t)n * C + c0, src + (size_t)n * w, (size_t)w * sizeof(double));
}

void ref_add_into(double *y, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* ------------------------------------------------------------------------
 * Adapters and LoRA
 * ------------------------------------------------------------------------ */

static void delta_act_forward(enum delta_act act, double *y, const double *x, size_t n) {
    if (act == DELTA_ACT_RELU) ref_relu_forward(y, x, n);
    else if (act == DELTA_ACT_GELU) ref_gelu_forward(y, x, n);
    else memcpy(y, x, n * sizeof(double));
}

double ref_deltas_adapter_mask(const struct ref_deltas *dl, const struct ref_slot *s, size_t index) {
    const struct delta_module *mod = &dl->spec->modules[s->module];
    const double p = mod->dropout >= 0 ? mod->dropout : dl->hidden_p;
    if (!dl->dropout || p <= 0.0) return 1.0;
    const struct ref_dropout_key key = {dl->dropout_seed, dl->dropout_step,
                                        ((uint32_t)(s->layer + 1) << 8) | (uint32_t)(16 + s->module)};
    return ref_dropout_multiplier(&key, p, index);
}

/* a[i] ·= the mask of bottleneck element offset + i. */
static void adapter_dropout(const struct ref_deltas *dl, const struct ref_slot *s, double *a, size_t n,
                            size_t offset) {
    for (size_t i = 0; i < n; i++) a[i] *= ref_deltas_adapter_mask(dl, s, offset + i);
}

/* s of h + s·Δh: 1 (add), the module's scale, or σ(g) (gated). */
static double compose_scale(const struct delta_module *mod, const struct ref_slot *s) {
    if (mod->compose == DELTA_COMPOSE_GATED) return 1.0 / (1.0 + exp(-s->gate->data[0]));
    return mod->compose == DELTA_COMPOSE_SCALE ? mod->scale : 1.0;
}

/* y += s·Δ(z), Δ(z) = dropout(f(z·W_downᵀ + b_down))·W_upᵀ + b_up; per head, Δ's
 * columns of head h come from z's columns of head h. z may be y (a
 * sequential adapter): it is copied to s->in first. */
static void adapter_forward(const struct ref_deltas *dl, struct ref_slot *s, double *y, // (N,dout)
                            const double *z,                                          // (N,din)
                            int N) {
    const struct delta_module *mod = &dl->spec->modules[s->module];
    const int r = mod->size, H = dl->arch->heads, hd = dl->arch->head_dim, din = s->din, dout = s->dout;
    memcpy(s->in, z, (size_t)N * din * sizeof(double));
    if (!mod->per_head) {
        ref_matmul_forward(s->hpre, s->in, s->down_w->data, s->down_b->data, N, din, r);
        delta_act_forward(mod->act, s->hact, s->hpre, (size_t)N * r);
        adapter_dropout(dl, s, s->hact, (size_t)N * r, 0);
        ref_matmul_forward(s->delta, s->hact, s->up_w->data, s->up_b->data, N, r, dout);
    } else {
        double *zh = malloc((size_t)N * hd * sizeof(double)), *dh = malloc((size_t)N * hd * sizeof(double));
        assert(zh && dh);
        for (int h = 0; h < H; h++) {
            double *hpre = s->hpre + (size_t)h * N * r, *hact = s->hact + (size_t)h * N * r;
            ref_gather_cols(zh, s->in, N, din, h * hd, hd);
            ref_matmul_forward(hpre, zh, s->down_w->data + (size_t)h * r * hd, s->down_b->data + (size_t)h * r, N,
                               hd, r);
            delta_act_forward(mod->act, hact, hpre, (size_t)N * r);
            adapter_dropout(dl, s, hact, (size_t)N * r, (size_t)h * N * r);
            ref_matmul_forward(dh, hact, s->up_w->data + (size_t)h * hd * r, s->up_b->data + (size_t)h * hd, N, r,
                               hd);
            scatter_cols(s->delta, dh, N, dout, h * hd, hd);
        }
        free(zh);
        free(dh);
    }
    const double scale = compose_scale(mod, s);
    for (size_t i = 0; i < (size_t)N * dout; i++) y[i] += scale * s->delta[i];
}

/* y += (α/r)·(x·Aᵀ)·Bᵀ. */
static void lora_forward(const struct ref_deltas *dl, struct ref_slot *s, double *y, // (N,dout)
                         const double *x,                                          // (N,din)
                         int N) {
    const struct delta_module *mod = &dl->spec->modules[s->module];
    const int r = mod->size;
    memcpy(s->in, x, (size_t)N * s->din * sizeof(double));
    ref_matmul_forward(s->hpre, s->in, s->lora_a->data, NULL, N, s->din, r);
    ref_matmul_forward(s->delta, s->hpre, s->lora_b->data, NULL, N, r, s->dout);
    const double scale = mod->alpha / mod->size;
    for (size_t i = 0; i < (size_t)N * s->dout; i++) y[i] += scale * s->delta[i];
}

void ref_deltas_loras_forward(struct ref_deltas *dl, int l, enum delta_at at, double *y, const double *x, int N) {
    for (int i = 0; i < dl->spec->count; i++) {
        struct ref_slot *s = ref_deltas_slot(dl, i, l);
        if (s->active && dl->spec->modules[i].kind == DELTA_LORA && dl->spec->modules[i].at == at)
            lora_forward(dl, s, y, x, N);
    }
}

void ref_deltas_adapters_forward(struct ref_deltas *dl, int l, enum delta_at at, enum delta_insert insert, double *y,
                                 const double *z, int N) {
    for (int i = 0; i < dl->spec->count; i++) {
        const struct delta_module *mod = &dl->spec->modules[i];
        struct ref_slot *s = ref_deltas_slot(dl, i, l);
        if (s->active && mod->kind == DELTA_ADAPTER && mod->at == at && mod->insert == insert)
            adapter_forward(dl, s, y, z, N);
    }
}

/* ------------------------------------------------------------------------
 * Prefixes
 * ------------------------------------------------------------------------ */

void ref_deltas_reparam_forward(struct ref_deltas *dl, int module) {
    const struct delta_module *mod = &dl->spec->modules[module];
    struct ref_reparam *rp = &dl->reparam[module];
    const int L = mod->size, d = dl->arch->hidden, R = mod->reparam, W = rp->w2->shape[0];
    ref_matmul_forward(rp->h0pre, rp->emb->data, rp->w0->data, rp->b0->data, L, d, R);
    ref_tanh_forward(rp->h0, rp->h0pre, (size_t)L * R);
    ref_matmul_forward(rp->out, rp->h0, rp->w2->data, rp->b2->data, L, R, W);
}

void ref_deltas_reparams_forward(struct ref_deltas *dl) {
    for (int i = 0; i < dl->spec->count; i++)
        if (dl->spec->modules[i].kind == DELTA_PREFIX && dl->reparam[i].emb) ref_deltas_reparam_forward(dl, i);
}

/* P (L,kvd) is the plain prefix_k/prefix_v or the module's block ℓ of the
 * reparameterisation output (columns [ℓ·2·kvd, ℓ·2·kvd+kvd) and the next
 * kvd); kv head g is columns g·hd .. g·hd+hd−1. */
void ref_deltas_gather_prefixes(const struct ref_deltas *dl, int l, double *prefix_k, double *prefix_v) {
    const int H = dl->arch->heads, G = dl->arch->kv_heads, hd = dl->arch->head_dim, kvd = G * hd;
    const int Lp = dl->prefix_rows[l];
    for (int i = 0; i < dl->spec->count; i++) {
        const struct delta_module *mod = &dl->spec->modules[i];
        const struct ref_slot *s = ref_deltas_slot(dl, i, l);
        if (!s->active || mod->kind != DELTA_PREFIX) continue;
        const double *pk, *pv;
        size_t stride;
        if (s->prefix_k) {
            pk = s->prefix_k->data;
            pv = s->prefix_v->data;
            stride = (size_t)kvd;
        } else {
            const struct ref_reparam *rp = &dl->reparam[i];
            stride = (size_t)rp->w2->shape[0];
            pk = rp->out + (size_t)s->prefix_block * 2 * kvd;
            pv = pk + kvd;
        }
        for (int h = 0; h < H; h++)
            for (int j = 0; j < mod->size; j++) {
                const size_t dst = ((size_t)h * Lp + s->prefix_offset + j) * hd;
                const size_t src = j * stride + (size_t)(h / (H / G)) * hd;
                memcpy(prefix_k + dst, pk + src, (size_t)hd * sizeof(double));
                memcpy(prefix_v + dst, pv + src, (size_t)hd * sizeof(double));
            }
    }
}
