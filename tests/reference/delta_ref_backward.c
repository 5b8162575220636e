/* The delta modules' backward (delta_ref.h), from what the forward kept in
 * the slots. Frozen tensors have grad == NULL, which the op references read
 * as "not wanted". Parameter gradients accumulate (+=); input gradients are
 * added into the caller's accumulator, which the main path also feeds. */
#include "delta_ref.h"
#include "ref.h"

#include <string.h>

/* Columns c0 .. c0+w−1 of dst (N,C) += src (N,w). */
static void add_cols(double *dst, const double *src, int N, int C, int c0, int w) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < w; c++) dst[(size_t)n * C + c0 + c] += src[(size_t)n * w + c];
}

static void delta_act_backward(enum delta_act act, double *dx, const double *dy, const double *x, size_t n) {
    if (act == DELTA_ACT_RELU) ref_relu_backward(dx, dy, x, n);
    else if (act == DELTA_ACT_GELU) ref_gelu_backward(dx, dy, x, n);
    else memcpy(dx, dy, n * sizeof(double));
}

/* ------------------------------------------------------------------------
 * Adapters and LoRA
 * ------------------------------------------------------------------------ */

/* y = y₀ + s·Δ(z), Δ(z) = m ⊙ f(z·W_dᵀ + b_d)·W_uᵀ + b_u (m: the dropout
 * mask, ones when off), with dy given:
 *   dΔ = s·dy (add, scale), or for gated s = σ(g): dΔ = σ(g)·dy and
 *   dg += σ(g)(1−σ(g))·Σ dy ⊙ Δ;
 *   dW_u += dΔᵀ·a, db_u += Σ dΔ, da = dΔ·W_u ⊙ m, dp = da ⊙ f'(p),
 *   dW_d += dpᵀ·z, db_d += Σ dp, dz = dp·W_d   (a = m ⊙ f(p), p = z·W_dᵀ + b_d),
 * per head on each head's columns. dy₀ = dy is the caller's. dz is ADDED
 * into dz_acc: z is also read by the main path (a branch point), and for a
 * sequential adapter dz_acc is dy itself, read in full before it is added to. */
static void adapter_backward(const struct ref_deltas *dl, struct ref_arena *sc, struct ref_slot *s,
                             double *dz_acc,   // (N,din), accumulated
                             const double *dy, // (N,dout)
                             int N) {
    const struct delta_module *mod = &dl->spec->modules[s->module];
    const int r = mod->size, H = dl->arch->heads, hd = dl->arch->head_dim, din = s->din, dout = s->dout;
    double *ddelta = ref_arena_doubles(sc, (size_t)N * dout);
    if (mod->compose == DELTA_COMPOSE_GATED)
        ref_sigmoid_gate_backward(NULL, ddelta, s->gate->grad, dy, s->delta, s->gate->data, N, dout, 1);
    else
        ref_scale_backward(ddelta, dy, mod->compose == DELTA_COMPOSE_SCALE ? mod->scale : 1.0, (size_t)N * dout);
    double *dhact = ref_arena_doubles(sc, (size_t)N * r), *dhpre = ref_arena_doubles(sc, (size_t)N * r);
    if (!mod->per_head) {
        double *dz = ref_arena_doubles(sc, (size_t)N * din);
        ref_matmul_backward(dhact, s->up_w->grad, s->up_b->grad, ddelta, s->hact, s->up_w->data, N, r, dout);
        for (size_t i = 0; i < (size_t)N * r; i++) dhact[i] *= ref_deltas_adapter_mask(dl, s, i);
        delta_act_backward(mod->act, dhpre, dhact, s->hpre, (size_t)N * r);
        ref_matmul_backward(dz, s->down_w->grad, s->down_b->grad, dhpre, s->in, s->down_w->data, N, din, r);
        ref_add_into(dz_acc, dz, (size_t)N * din);
        return;
    }
    double *ddh = ref_arena_doubles(sc, (size_t)N * hd), *zh = ref_arena_doubles(sc, (size_t)N * hd);
    double *dzh = ref_arena_doubles(sc, (size_t)N * hd);
    for (int h = 0; h < H; h++) {
        const size_t wo = (size_t)h * r * hd; /* head h's matrix in (H,r,hd) and (H,hd,r) */
        const double *hpre = s->hpre + (size_t)h * N * r, *hact = s->hact + (size_t)h * N * r;
        ref_gather_cols(ddh, ddelta, N, dout, h * hd, hd);
        ref_matmul_backward(dhact, s->up_w->grad + wo, s->up_b->grad + (size_t)h * hd, ddh, hact, s->up_w->data + wo,
                            N, r, hd);
        for (size_t i = 0; i < (size_t)N * r; i++) dhact[i] *= ref_deltas_adapter_mask(dl, s, (size_t)h * N * r + i);
        delta_act_backward(mod->act, dhpre, dhact, hpre, (size_t)N * r);
        ref_gather_cols(zh, s->in, N, din, h * hd, hd);
        ref_matmul_backward(dzh, s->down_w->grad + wo, s->down_b->grad + (size_t)h * r, dhpre, zh,
                            s->down_w->data + wo, N, hd, r);
        add_cols(dz_acc, dzh, N, din, h * hd, hd);
    }
}

/* y = y₀ + s·(x·Aᵀ)·Bᵀ, z = x·Aᵀ, s = α/r:
 *   dB += (s·dy)ᵀ·z, dz = (s·dy)·B, dA += dzᵀ·x, dx = dz·A (ADDED into dx_acc:
 *   x is also read by the frozen projection). */
static void lora_backward(const struct ref_deltas *dl, struct ref_arena *sc, struct ref_slot *s,
                          double *dx_acc,   // (N,din), accumulated
                          const double *dy, // (N,dout)
                          int N) {
    const struct delta_module *mod = &dl->spec->modules[s->module];
    const int r = mod->size;
    double *dt = ref_arena_doubles(sc, (size_t)N * s->dout), *dz = ref_arena_doubles(sc, (size_t)N * r);
    double *dx = ref_arena_doubles(sc, (size_t)N * s->din);
    ref_scale_backward(dt, dy, mod->alpha / mod->size, (size_t)N * s->dout);
    ref_matmul_backward(dz, s->lora_b->grad, NULL, dt, s->hpre, s->lora_b->data, N, r, s->dout);
    ref_matmul_backward(dx, s->lora_a->grad, NULL, dz, s->in, s->lora_a->data, N, s->din, r);
    ref_add_into(dx_acc, dx, (size_t)N * s->din);
}

void ref_deltas_loras_backward(struct ref_deltas *dl, struct ref_arena *scratch, int l, enum delta_at at,
                               double *dx_acc, const double *dy, int N) {
    for (int i = dl->spec->count - 1; i >= 0; i--) {
        struct ref_slot *s = ref_deltas_slot(dl, i, l);
        if (s->active && dl->spec->modules[i].kind == DELTA_LORA && dl->spec->modules[i].at == at)
            lora_backward(dl, scratch, s, dx_acc, dy, N);
    }
}

void ref_deltas_adapters_backward(struct ref_deltas *dl, struct ref_arena *scratch, int l, enum delta_at at,
                                  enum delta_insert insert, double *dz_acc, const double *dy, int N) {
    for (int i = dl->spec->count - 1; i >= 0; i--) {
        const struct delta_module *mod = &dl->spec->modules[i];
        struct ref_slot *s = ref_deltas_slot(dl, i, l);
        if (s->active && mod->kind == DELTA_ADAPTER && mod->at == at && mod->insert == insert)
            adapter_backward(dl, scratch, s, dz_acc, dy, N);
    }
}

/* ------------------------------------------------------------------------
 * Prefixes
 * ------------------------------------------------------------------------ */

double **ref_deltas_reparam_grads(struct ref_deltas *dl, struct ref_arena *scratch) {
    double **dout = ref_arena_alloc(scratch, (size_t)dl->spec->count + 1, sizeof *dout);
    for (int i = 0; i < dl->spec->count; i++)
        if (dl->reparam[i].emb)
            dout[i] = ref_arena_doubles(scratch, (size_t)dl->spec->modules[i].size * dl->reparam[i].w2->shape[0]);
    return dout;
}

/* ref_deltas_gather_prefixes' loop run backwards, line for line: it reads
 * values where this adds gradients (kept as a mirror, like every forward
 * and backward pair here, rather than one loop with a direction flag). */
void ref_deltas_scatter_prefix_grads(struct ref_deltas *dl, int l, const double *dpk, const double *dpv,
                                     double *const *reparam_dout) {
    const int H = dl->arch->heads, G = dl->arch->kv_heads, hd = dl->arch->head_dim, kvd = G * hd;
    const int Lp = dl->prefix_rows[l];
    for (int i = 0; i < dl->spec->count; i++) {
        const struct delta_module *mod = &dl->spec->modules[i];
        const struct ref_slot *s = ref_deltas_slot(dl, i, l);
        if (!s->active || mod->kind != DELTA_PREFIX) continue;
        double *gk, *gv;
        size_t stride;
        if (s->prefix_k) {
            gk = s->prefix_k->grad;
            gv = s->prefix_v->grad;
            stride = (size_t)kvd;
        } else {
            stride = (size_t)dl->reparam[i].w2->shape[0];
            gk = reparam_dout[i] + (size_t)s->prefix_block * 2 * kvd;
            gv = gk + kvd;
        }
        for (int h = 0; h < H; h++)
            for (int j = 0; j < mod->size; j++) {
                const size_t src = ((size_t)h * Lp + s->prefix_offset + j) * hd;
                const size_t dst = j * stride + (size_t)(h / (H / G)) * hd;
                for (int e = 0; e < hd; e++) {
                    gk[dst + e] += dpk[src + e];
                    gv[dst + e] += dpv[src + e];
                }
            }
    }
}

/* out = tanh(E·W0ᵀ + b0)·W2ᵀ + b2: dW2 += doutᵀ·h0, db2 += Σ dout,
 * dh0 = dout·W2, dh0pre = dh0 ⊙ (1 − h0²), dW0 += dh0preᵀ·E, db0 += Σ dh0pre,
 * dE += dh0pre·W0. */
static void reparam_backward(struct ref_deltas *dl, struct ref_arena *sc, int i, const double *dout) {
    const struct delta_module *mod = &dl->spec->modules[i];
    struct ref_reparam *rp = &dl->reparam[i];
    const int L = mod->size, d = dl->arch->hidden, R = mod->reparam, W = rp->w2->shape[0];
    double *dh0 = ref_arena_doubles(sc, (size_t)L * R), *dh0pre = ref_arena_doubles(sc, (size_t)L * R);
    double *demb = ref_arena_doubles(sc, (size_t)L * d);
    ref_matmul_backward(dh0, rp->w2->grad, rp->b2->grad, dout, rp->h0, rp->w2->data, L, R, W);
    ref_tanh_backward(dh0pre, dh0, rp->h0pre, (size_t)L * R);
    ref_matmul_backward(demb, rp->w0->grad, rp->b0->grad, dh0pre, rp->emb->data, rp->w0->data, L, d, R);
    ref_add_into(rp->emb->grad, demb, (size_t)L * d);
}

void ref_deltas_reparams_backward(struct ref_deltas *dl, struct ref_arena *scratch, double *const *reparam_dout) {
    for (int i = 0; i < dl->spec->count; i++)
        if (dl->reparam[i].emb) reparam_backward(dl, scratch, i, reparam_dout[i]);
}
