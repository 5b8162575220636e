/* Pointwise kernels against the reference: activations (forward and
 * backward) and the erf behind GELU, SwiGLU, residual add, scale, the
 * learned sigmoid gate (with its deterministic dg reduction), dropout (exact
 * masks) and storage conversion (bit-exact), on odd and edge sizes, with
 * guard regions, across binding ranges, and bit-reproducibly. */
#include "kerneltest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double U = KT_EPS_F32; /* unit roundoff of fp32, 2^-24 */


static bool bits_equal(const double *got, const double *want, size_t n, const char *what) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof got[i]) != 0 && !(isnan(got[i]) && isnan(want[i]))) {
            if (!bad) first = i;
            bad++;
        }
    return CHECKF(bad == 0, "%s: %zu of %zu differ; first [%zu] = %.9g, want %.9g", what, bad, n,
                  first, bad ? got[first] : 0.0, bad ? want[first] : 0.0);
}

/* A context (binding_range 0: the device's), a recorder, and tensors that
 * are freed together. */
struct fx {
    vp_context *ctx;
    struct vk_recorder *rec;
    struct kt_tensor t[12];
    int count;
};

static bool fx_open(struct fx *f, uint64_t binding_range) {
    memset(f, 0, sizeof *f);
    f->ctx = kt_context(binding_range);
    return f->ctx && CHECK(vk_recorder_create(f->ctx, 0, &f->rec) == VP_OK);
}

static struct kt_tensor *fx_upload(struct fx *f, const double *data, size_t n) {
    struct kt_tensor *t = &f->t[f->count++];
    if (!kt_upload(f->ctx, t, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, data, n)) return NULL;
    return t;
}

/* An output tensor filled with NaN, so anything left unwritten shows. */
static struct kt_tensor *fx_out(struct fx *f, size_t n) {
    struct kt_tensor *t = &f->t[f->count++];
    if (!kt_alloc(f->ctx, t, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, n, NAN)) return NULL;
    return t;
}

static double *fx_download(struct fx *f, const struct kt_tensor *t) {
    double *v = kt_dalloc(t->n);
    if (!kt_download(f->ctx, t, v)) {
        free(v);
        return NULL;
    }
    return v;
}

static void fx_close(struct fx *f) {
    if (!f->ctx) return;
    for (int i = 0; i < f->count; i++)
        if (f->t[i].buf.buffer) kt_free(f->ctx, &f->t[i]);
    vk_recorder_destroy(f->rec);
}

/* Records what `fn` records, runs it once. */
typedef vp_status (*record_fn)(vp_context *, struct vk_recorder *, void *);
static bool fx_run(struct fx *f, record_fn fn, void *arg) { return kt_run(f->ctx, f->rec, fn, arg); }

/* ---- activations -------------------------------------------------------------------- */

typedef void (*ref_fwd)(double *, const double *, size_t);
typedef void (*ref_bwd)(double *, const double *, const double *, size_t);

static const struct {
    enum kernel_activation act;
    ref_fwd fwd;
    ref_bwd bwd;
} ACTS[] = {
    {KERNEL_ACT_GELU, ref_gelu_forward, ref_gelu_backward},
    {KERNEL_ACT_GELU_TANH, ref_gelu_tanh_forward, ref_gelu_tanh_backward},
    {KERNEL_ACT_RELU, ref_relu_forward, ref_relu_backward},
    {KERNEL_ACT_SILU, ref_silu_forward, ref_silu_backward},
    {KERNEL_ACT_TANH, ref_tanh_forward, ref_tanh_backward},
};

struct act_args {
    const struct kt_tensor *x, *dy, *y, *dx;
    size_t n;
    enum kernel_activation act;
};

static vp_status record_act(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct act_args *a = arg;
    vp_status s = kernel_activation_forward(ctx, rec, &a->y->buf, &a->x->buf, a->n, a->act);
    if (s == VP_OK)
        s = kernel_activation_backward(ctx, rec, &a->dx->buf, &a->dy->buf, &a->x->buf, a->n,
                                       a->act);
    return s;
}

/* Inputs in [-4, 4] plus exact zero and values around it. */
static void act_inputs(double *x, size_t n, uint64_t seed) {
    kt_random(x, n, -4.0, 4.0, VP_DTYPE_F32, seed);
    const double special[] = {0.0, -0.0, 1e-4, -1e-4, 1.0, -1.0, 0.5, -0.5, 4.0, -4.0, 1e-20};
    for (size_t i = 0; i < n && i < sizeof special / sizeof special[0]; i++) x[i] = special[i];
    kt_round(VP_DTYPE_F32, x, n); /* what the GPU reads */
}

/* Tolerances for inputs in [-4, 4]. Each activation is a few fp32 operations
 * (≤ 1 ulp each; Vulkan allows 2.5 ulp for a division) around one exp, which
 * Vulkan allows 3 + 2|a| ulp for argument a: the largest argument here is
 * 2u(4) = 10.9 for GELU-tanh's σ, so ≤ 25 ulp = 50u relative. Through σ, 1 −
 * 2/(e+1) and Φ's erfc tail (whose exponent q ≈ −t² ≤ 9 also carries ≤ 36u
 * of rounding) that stays ≤ 128u of the result, plus an absolute 16u·|x|
 * where a difference such as 0.5 + 0.5·erf(z) or 1 − σ cancels. The
 * backward multiplies by dy and adds x·(1 − σ)-type terms: 64u·|dy|·(1 + |x|).
 * A wrong formula or index is off by far more. */
static void act_bounds(double *fb, double *bb, const double *x, const double *dy,
                       const double *y, const double *dx, size_t n) {
    for (size_t i = 0; i < n; i++) {
        fb[i] = U * (128.0 * fabs(y[i]) + 16.0 * fabs(x[i])) + 1e-37;
        bb[i] = U * (128.0 * fabs(dx[i]) + 64.0 * fabs(dy[i]) * (1.0 + fabs(x[i]))) + 1e-37;
    }
}

static void activations_n(size_t n, uint64_t seed) {
    struct fx f;
    double *x = kt_dalloc(n), *dy = kt_dalloc(n), *y = kt_dalloc(n), *dx = kt_dalloc(n), *fb = kt_dalloc(n),
           *bb = kt_dalloc(n);
    act_inputs(x, n, seed);
    kt_random(dy, n, -1.0, 1.0, VP_DTYPE_F32, seed + 1);
    if (fx_open(&f, 0)) {
        struct act_args a = {fx_upload(&f, x, n), fx_upload(&f, dy, n), fx_out(&f, n),
                             fx_out(&f, n), n, 0};
        for (size_t k = 0; k < sizeof ACTS / sizeof ACTS[0] && a.dx; k++) {
            a.act = ACTS[k].act;
            ACTS[k].fwd(y, x, n);
            ACTS[k].bwd(dx, dy, x, n);
            if (!fx_run(&f, record_act, &a)) break;
            double *gy = fx_download(&f, a.y), *gdx = fx_download(&f, a.dx);
            char what[64];
            if (gy && gdx && a.act == KERNEL_ACT_RELU) {
                /* max(x, 0) and dy·[x > 0] are exact in fp32. */
                snprintf(what, sizeof what, "relu_forward n=%zu", n);
                bits_equal(gy, y, n, what);
                snprintf(what, sizeof what, "relu_backward n=%zu", n);
                bits_equal(gdx, dx, n, what);
            } else if (gy && gdx) {
                act_bounds(fb, bb, x, dy, y, dx, n);
                snprintf(what, sizeof what, "%s_forward n=%zu", kernel_activation_name(a.act), n);
                KT_CHECK_BOUND(gy, y, fb, n, what);
                snprintf(what, sizeof what, "%s_backward n=%zu", kernel_activation_name(a.act), n);
                KT_CHECK_BOUND(gdx, dx, bb, n, what);
            }
            free(gy);
            free(gdx);
        }
    }
    fx_close(&f);
    free(x), free(dy), free(y), free(dx), free(fb), free(bb);
}

static void activations_small_sizes(void) {
    activations_n(1, 11);
    activations_n(7, 12);
    activations_n(257, 13);
}

static void activations_4099(void) { activations_n(4099, 14); }

/* The shader's erf over a dense sweep of [-5, 5], in ulps of the true value.
 * Its pieces were fitted and measured on the host at ≤ 0.98 ulp (1.32 ulp
 * without fused multiply-add); the GPU's exp enters through 1 − exp(q) scaled
 * by erfc/erf ≤ 0.19, i.e. ≤ 0.25 ulp of erf per ulp of exp, and Vulkan
 * allows exp 3 + 2|q| ≤ 7 ulp at the |q| ≤ 2 where that matters. So ≤ 4 ulp
 * on any conforming device (≤ 2 ulp is the design target). */
static double ulp_of(double v) {
    int e;
    frexp(fabs(v), &e);
    double ulp = ldexp(1.0, e - 24);
    return ulp < 0x1.0p-149 ? 0x1.0p-149 : ulp;
}

static void erf_accuracy(void) {
    const size_t n = 200001;
    struct fx f;
    double *x = kt_dalloc(n), *want = kt_dalloc(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)(-5.0 + 10.0 * (double)i / (n - 1));
    x[n / 2] = 0.0;
    for (size_t i = 0; i < n; i++) want[i] = erf(x[i]);
    if (fx_open(&f, 0)) {
        struct kt_tensor *tx = fx_upload(&f, x, n), *ty = fx_out(&f, n);
        struct act_args a = {tx, tx, ty, ty, n, KERNEL_ACT_ERF};
        if (ty && CHECK(vk_recorder_begin(f.rec) == VP_OK) &&
            CHECK(kernel_activation_forward(f.ctx, f.rec, &ty->buf, &tx->buf, n, a.act) == VP_OK) &&
            CHECK(vk_recorder_end(f.rec) == VP_OK) && CHECK(vk_recorder_run(f.rec) == VP_OK)) {
            double *got = fx_download(&f, ty);
            double worst = 0, wx = 0;
            for (size_t i = 0; got && i < n; i++) {
                double e = fabs(got[i] - want[i]) / ulp_of(want[i]);
                if (e > worst) worst = e, wx = x[i];
            }
            th_diag("erf: max error %.3f ulp at x = %.9g over %zu points", worst, wx, n);
            CHECKF(got && worst <= 4.0, "erf error %.3f ulp at x = %.9g exceeds 4 ulp", worst, wx);
            free(got);
        }
    }
    fx_close(&f);
    free(x), free(want);
}

/* Far outside [-4, 4]: the right limits, no NaN or overflow. */
static void activations_extreme_inputs(void) {
    const double xs[] = {-100.0, -30.0, -10.0, 10.0, 30.0, 100.0, 1e30, -1e30};
    const size_t n = sizeof xs / sizeof xs[0];
    struct fx f;
    double ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    if (fx_open(&f, 0)) {
        struct act_args a = {fx_upload(&f, xs, n), fx_upload(&f, ones, n), fx_out(&f, n),
                             fx_out(&f, n), n, 0};
        for (size_t k = 0; k < sizeof ACTS / sizeof ACTS[0] && a.dx; k++) {
            a.act = ACTS[k].act;
            if (!fx_run(&f, record_act, &a)) break;
            double *y = fx_download(&f, a.y), *dx = fx_download(&f, a.dx);
            double want_y[8], want_dx[8];
            ACTS[k].fwd(want_y, xs, n);
            ACTS[k].bwd(want_dx, ones, xs, n);
            for (size_t i = 0; y && dx && i < n; i++) {
                /* Within 1e-6 of the result's size: the asymptotes are exact. */
                double tol = 1e-6 * fmax(1.0, fabs(want_y[i]));
                CHECKF(fabs(y[i] - want_y[i]) <= tol, "%s(%g) = %g, want %g",
                       kernel_activation_name(a.act), xs[i], y[i], want_y[i]);
                CHECKF(fabs(dx[i] - want_dx[i]) <= 1e-6, "%s'(%g) = %g, want %g",
                       kernel_activation_name(a.act), xs[i], dx[i], want_dx[i]);
            }
            free(y);
            free(dx);
        }
    }
    fx_close(&f);
}

/* ---- SwiGLU ------------------------------------------------------------------------ */

struct swiglu_args {
    const struct kt_tensor *gate, *up, *dy, *y, *dgate, *dup;
    size_t n;
};

static vp_status record_swiglu(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct swiglu_args *a = arg;
    vp_status s = kernel_swiglu_forward(ctx, rec, &a->y->buf, &a->gate->buf, &a->up->buf, a->n);
    if (s == VP_OK)
        s = kernel_swiglu_backward(ctx, rec, &a->dgate->buf, &a->dup->buf, &a->dy->buf,
                                   &a->gate->buf, &a->up->buf, a->n);
    return s;
}

/* SwiGLU is SiLU times a factor: the activation bounds apply with that
 * factor (|up|, and for dup |silu(gate)|) in the scale. */
static void swiglu(void) {
    const size_t sizes[] = {1, 33, 3001};
    for (size_t s = 0; s < 3; s++) {
        size_t n = sizes[s];
        double *g = kt_dalloc(n), *u = kt_dalloc(n), *dy = kt_dalloc(n), *y = kt_dalloc(n), *dg = kt_dalloc(n),
               *du = kt_dalloc(n), *b1 = kt_dalloc(n), *b2 = kt_dalloc(n), *b3 = kt_dalloc(n);
        act_inputs(g, n, 20 + s);
        kt_random(u, n, -2.0, 2.0, VP_DTYPE_F32, 30 + s);
        kt_random(dy, n, -1.0, 1.0, VP_DTYPE_F32, 40 + s);
        ref_swiglu_forward(y, g, u, n);
        ref_swiglu_backward(dg, du, dy, g, u, n);
        for (size_t i = 0; i < n; i++) {
            b1[i] = U * (128.0 * fabs(y[i]) + 16.0 * fabs(g[i] * u[i])) + 1e-37;
            b2[i] = U * (128.0 * fabs(dg[i]) + 64.0 * fabs(dy[i] * u[i]) * (1.0 + fabs(g[i]))) +
                    1e-37;
            b3[i] = U * (128.0 * fabs(du[i]) + 16.0 * fabs(dy[i] * g[i])) + 1e-37;
        }
        struct fx f;
        if (fx_open(&f, 0)) {
            struct swiglu_args a = {fx_upload(&f, g, n), fx_upload(&f, u, n), fx_upload(&f, dy, n),
                                    fx_out(&f, n),       fx_out(&f, n),       fx_out(&f, n), n};
            if (a.dup && fx_run(&f, record_swiglu, &a)) {
                double *gy = fx_download(&f, a.y), *gdg = fx_download(&f, a.dgate),
                       *gdu = fx_download(&f, a.dup);
                if (gy && gdg && gdu) {
                    KT_CHECK_BOUND(gy, y, b1, n, "swiglu_forward");
                    KT_CHECK_BOUND(gdg, dg, b2, n, "swiglu dgate");
                    KT_CHECK_BOUND(gdu, du, b3, n, "swiglu dup");
                }
                free(gy), free(gdg), free(gdu);
            }
        }
        fx_close(&f);
        free(g), free(u), free(dy), free(y), free(dg), free(du), free(b1), free(b2), free(b3);
    }
}

/* ---- residual add and scale -------------------------------------------------------- */

struct add_args {
    const struct kt_tensor *a, *b, *y, *ys, *s2, *da, *db, *dxs;
    size_t n;
    float s;
};

static vp_status record_add(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct add_args *a = arg;
    vp_status s = kernel_add_forward(ctx, rec, &a->y->buf, &a->a->buf, &a->b->buf, a->n);
    if (s == VP_OK)
        s = kernel_add_scaled_forward(ctx, rec, &a->ys->buf, &a->a->buf, &a->b->buf, a->s, a->n);
    if (s == VP_OK) s = kernel_scale_forward(ctx, rec, &a->s2->buf, &a->a->buf, a->s, a->n);
    /* The backward takes a as dy. */
    if (s == VP_OK) s = kernel_add_backward(ctx, rec, &a->da->buf, &a->db->buf, &a->a->buf, a->n);
    if (s == VP_OK) s = kernel_scale_backward(ctx, rec, &a->dxs->buf, &a->a->buf, a->s, a->n);
    /* A gradient that is dy itself: nothing to copy (and no invalid
     * self-copy for validation to report). */
    if (s == VP_OK) s = kernel_add_backward(ctx, rec, &a->a->buf, NULL, &a->a->buf, a->n);
    return s;
}

/* One fp32 rounding per result for a + b and s·x: within u of it. a + s·b
 * is an fma, which Vulkan lets round twice (s·b, then the sum): within
 * u·(|s·b| + |y|). The backward copies are exact. */
static void add_and_scale_n(size_t n, uint64_t binding_range, uint64_t seed) {
    double *a = kt_dalloc(n), *b = kt_dalloc(n), *y = kt_dalloc(n), *ys = kt_dalloc(n), *s2 = kt_dalloc(n),
           *bound = kt_dalloc(n), *sb = kt_dalloc(n);
    kt_random(a, n, -3.0, 3.0, VP_DTYPE_F32, seed);
    kt_random(b, n, -3.0, 3.0, VP_DTYPE_F32, seed + 1);
    const float s = 0.3f;
    ref_add_forward(y, a, b, n);
    ref_scale_forward(sb, b, s, n);
    ref_add_forward(ys, a, sb, n);
    ref_scale_forward(s2, a, s, n);
    struct fx f;
    if (fx_open(&f, binding_range)) {
        struct add_args g = {fx_upload(&f, a, n), fx_upload(&f, b, n), fx_out(&f, n),
                             fx_out(&f, n),       fx_out(&f, n),       fx_out(&f, n),
                             fx_out(&f, n),       fx_out(&f, n),       n, s};
        if (g.dxs && fx_run(&f, record_add, &g)) {
            if (binding_range)
                th_diag("n=%zu in %u dispatches (binding range %llu)", n,
                        vk_recorder_dispatch_count(f.rec),
                        (unsigned long long)vp_context_limits(f.ctx)->storage_buffer_range);
            double *gy = fx_download(&f, g.y), *gys = fx_download(&f, g.ys),
                   *gs2 = fx_download(&f, g.s2), *gda = fx_download(&f, g.da),
                   *gdb = fx_download(&f, g.db), *gdx = fx_download(&f, g.dxs);
            if (gy && gys && gs2 && gda && gdb && gdx) {
                for (size_t i = 0; i < n; i++) bound[i] = U * fabs(y[i]) + 1e-37;
                KT_CHECK_BOUND(gy, y, bound, n, "add_forward");
                for (size_t i = 0; i < n; i++)
                    bound[i] = U * (fabs(ys[i]) + fabs(sb[i])) * (1 + 4 * U) + 1e-37;
                KT_CHECK_BOUND(gys, ys, bound, n, "add_scaled_forward");
                for (size_t i = 0; i < n; i++) bound[i] = U * fabs(s2[i]) + 1e-37;
                KT_CHECK_BOUND(gs2, s2, bound, n, "scale_forward");
                KT_CHECK_BOUND(gdx, s2, bound, n, "scale_backward");
                bits_equal(gda, a, n, "add_backward da");
                bits_equal(gdb, a, n, "add_backward db");
            }
            free(gy), free(gys), free(gs2), free(gda), free(gdb), free(gdx);
        }
    }
    fx_close(&f);
    free(a), free(b), free(y), free(ys), free(s2), free(bound), free(sb);
}

static void add_and_scale(void) {
    add_and_scale_n(1, 0, 50);
    add_and_scale_n(1031, 0, 51);
}

/* ---- sigmoid gate ------------------------------------------------------------------ */

struct gate_args {
    const struct kt_tensor *h, *d, *g, *dy, *y, *dh, *dd, *dg, *scratch;
    uint32_t N, C, G;
    bool want_dh, want_dd, want_dg;
};

static vp_status record_gate(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct gate_args *a = arg;
    vp_status s = kernel_sigmoid_gate_forward(ctx, rec, &a->y->buf, &a->h->buf, &a->d->buf,
                                              &a->g->buf, a->N, a->C, a->G);
    if (s == VP_OK)
        s = kernel_sigmoid_gate_backward(
            ctx, rec, a->want_dh ? &a->dh->buf : NULL, a->want_dd ? &a->dd->buf : NULL,
            a->want_dg ? &a->dg->buf : NULL, a->want_dg ? &a->scratch->buf : NULL, &a->dy->buf,
            &a->d->buf, &a->g->buf, a->N, a->C, a->G);
    return s;
}

/* y = h + σ(g)·d: σ costs ≤ 2.5 + 1 ulp of division and one exp of |g| ≤ 2
 * (≤ 7 ulp), the fma one more rounding: ≤ 16u·(|h| + |d|). dd = σ(g)·dy:
 * ≤ 16u·|dy|. dg: L = N·C/G terms of dy·d summed in fp32 (per block then
 * across blocks, ≤ L roundings of partial sums bounded by Σ|dy·d|), times
 * σ'(g) with ≤ 16u: |error| ≤ (L + 16)·u·σ'·Σ|dy·d| + u·|dg|. */
static void gate_case(uint32_t N, uint32_t C, uint32_t G, bool dh, bool dd, bool dg,
                      uint64_t binding_range, uint64_t seed) {
    size_t n = (size_t)N * C;
    double *h = kt_dalloc(n), *d = kt_dalloc(n), *g = kt_dalloc(G), *dy = kt_dalloc(n), *y = kt_dalloc(n),
           *rdh = kt_dalloc(n), *rdd = kt_dalloc(n), *rdg = kt_dalloc(G), *dg0 = kt_dalloc(G),
           *b = kt_dalloc(n), *bg = kt_dalloc(G);
    kt_random(h, n, -2.0, 2.0, VP_DTYPE_F32, seed);
    kt_random(d, n, -2.0, 2.0, VP_DTYPE_F32, seed + 1);
    kt_random(g, G, -2.0, 2.0, VP_DTYPE_F32, seed + 2);
    kt_random(dy, n, -1.0, 1.0, VP_DTYPE_F32, seed + 3);
    kt_random(dg0, G, -1.0, 1.0, VP_DTYPE_F32, seed + 4); /* dg accumulates onto this */
    memcpy(rdg, dg0, G * sizeof *rdg);
    ref_sigmoid_gate_forward(y, h, d, g, (int)N, (int)C, (int)G);
    ref_sigmoid_gate_backward(rdh, rdd, rdg, dy, d, g, (int)N, (int)C, (int)G);
    struct fx f;
    if (fx_open(&f, binding_range)) {
        struct gate_args a = {
            fx_upload(&f, h, n), fx_upload(&f, d, n), fx_upload(&f, g, G), fx_upload(&f, dy, n),
            fx_out(&f, n),       fx_out(&f, n),       fx_out(&f, n),       fx_upload(&f, dg0, G),
            NULL,                N, C, G, dh, dd, dg};
        struct kt_tensor *scratch = &f.t[f.count++];
        a.scratch = scratch;
        if (a.dg &&
            kt_alloc(f.ctx, scratch, VP_POOL_ACTIVATIONS, VP_DTYPE_F32,
                     kernel_sigmoid_gate_scratch_bytes(N, C) / 4, NAN) &&
            fx_run(&f, record_gate, &a)) {
            double *gy = fx_download(&f, a.y), *gdh = fx_download(&f, a.dh),
                   *gdd = fx_download(&f, a.dd), *gdg = fx_download(&f, a.dg);
            char what[96];
            if (gy && gdh && gdd && gdg) {
                for (size_t i = 0; i < n; i++) b[i] = 16.0 * U * (fabs(h[i]) + fabs(d[i])) + 1e-37;
                snprintf(what, sizeof what, "gate_forward N=%u C=%u G=%u", N, C, G);
                KT_CHECK_BOUND(gy, y, b, n, what);
                if (dh) bits_equal(gdh, rdh, n, "gate dh");
                else CHECK(isnan(gdh[0])); /* not asked for: untouched */
                for (size_t i = 0; i < n; i++) b[i] = 16.0 * U * fabs(dy[i]) + 1e-37;
                if (dd) KT_CHECK_BOUND(gdd, rdd, b, n, "gate dd");
                else CHECK(isnan(gdd[0]));
                double L = (double)n / G;
                for (uint32_t k = 0; k < G; k++) {
                    double s = 1.0 / (1.0 + exp(-g[k])), abs_sum = 0.0;
                    for (size_t i = 0; i < n; i++)
                        if (G == 1 || i % C == k) abs_sum += fabs(dy[i] * d[i]);
                    bg[k] = (L + 16.0) * U * s * (1 - s) * abs_sum + U * fabs(rdg[k]) + 1e-37;
                }
                snprintf(what, sizeof what, "gate dg N=%u C=%u G=%u", N, C, G);
                if (dg) KT_CHECK_BOUND(gdg, rdg, bg, G, what);
                else bits_equal(gdg, dg0, G, "gate dg untouched");
            }
            free(gy), free(gdh), free(gdd), free(gdg);
        }
    }
    fx_close(&f);
    free(h), free(d), free(g), free(dy), free(y), free(rdh), free(rdd), free(rdg), free(dg0),
        free(b), free(bg);
}

static void gate_per_channel(void) {
    gate_case(1, 1, 1, true, true, true, 0, 60);
    gate_case(5, 7, 7, true, true, true, 0, 61);
    gate_case(130, 33, 33, true, true, true, 0, 62); /* three row blocks, the last partial */
}

static void gate_scalar(void) {
    gate_case(3, 5, 1, true, true, true, 0, 70);
    gate_case(129, 300, 1, true, true, true, 0, 71); /* channels beyond one workgroup */
}

static void gate_partial_gradients(void) {
    gate_case(70, 9, 9, false, false, true, 0, 80);
    gate_case(70, 9, 1, false, true, false, 0, 81);
    gate_case(70, 9, 9, true, false, false, 0, 82);
}

/* ---- dropout ----------------------------------------------------------------------- */

struct dropout_args {
    const struct kt_tensor *x, *y, *dx;
    size_t n;
    struct kernel_dropout_key key;
    double p;
    bool in_place;
};

static vp_status record_dropout(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct dropout_args *a = arg;
    vp_status s = kernel_dropout_forward(ctx, rec, &a->y->buf, &a->x->buf, a->n, &a->key, a->p);
    /* The backward takes x as dy, in place on dx when asked. */
    if (s == VP_OK && a->in_place) s = vk_recorder_copy(rec, &a->dx->buf, 0, &a->x->buf, 0, a->n * 4);
    if (s == VP_OK)
        s = kernel_dropout_backward(ctx, rec, &a->dx->buf, a->in_place ? &a->dx->buf : &a->x->buf,
                                    a->n, &a->key, a->p);
    return s;
}

/* Kept or dropped must match the reference exactly (x is never 0, so y = 0
 * iff dropped); kept values are x·fl(1/(1−p)), within 2u of x/(1−p). The
 * kept fraction must lie within 5 standard deviations of 1 − p. */
static void dropout_case(size_t n, double p, bool in_place, uint64_t binding_range) {
    double *x = kt_dalloc(n), *y = kt_dalloc(n), *b = kt_dalloc(n);
    kt_random(x, n, 0.5, 2.0, VP_DTYPE_F32, 90);
    for (size_t i = 0; i < n; i += 2) x[i] = -x[i];
    struct ref_dropout_key rk = {0x0123456789ABCDEFull, 42, 7};
    ref_dropout_forward(y, x, &rk, p, n);
    CHECK(kernel_dropout_threshold(p) == ref_dropout_threshold(p));
    struct fx f;
    if (fx_open(&f, binding_range)) {
        struct dropout_args a = {fx_upload(&f, x, n), fx_out(&f, n), fx_out(&f, n), n,
                                 {rk.seed, rk.step, rk.stream}, p, in_place};
        if (a.dx && fx_run(&f, record_dropout, &a)) {
            double *gy = fx_download(&f, a.y), *gdx = fx_download(&f, a.dx);
            if (gy && gdx) {
                size_t mask_bad = 0, kept = 0;
                for (size_t i = 0; i < n; i++) {
                    mask_bad += (gy[i] == 0.0) != (y[i] == 0.0);
                    kept += y[i] != 0.0;
                    b[i] = 2.0 * U * fabs(y[i]) + 1e-37;
                }
                CHECKF(mask_bad == 0, "p=%g n=%zu: %zu elements kept/dropped unlike the reference",
                       p, n, mask_bad);
                KT_CHECK_BOUND(gy, y, b, n, "dropout_forward");
                bits_equal(gdx, gy, n, "dropout_backward = forward's mask");
                double frac = (double)kept / n, sd = sqrt(p * (1 - p) / n);
                CHECKF(fabs(frac - (1 - p)) <= 5 * sd + 1e-12, "p=%g: kept %.4f, want %.4f ± %.4f",
                       p, frac, 1 - p, 5 * sd);
            }
            free(gy), free(gdx);
        }
    }
    fx_close(&f);
    free(x), free(y), free(b);
}

static void dropout_masks(void) {
    dropout_case(1, 0.5, false, 0);
    dropout_case(20011, 0.1, false, 0);
    dropout_case(20011, 0.5, true, 0);
    dropout_case(20011, 0.9, false, 0);
    dropout_case(1000, 0.0, false, 0);
    dropout_case(1000, 1.0, false, 0);
}

/* ---- storage conversion ------------------------------------------------------------ */

static uint32_t fbits(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

/* Raw device bytes with a guard after them. */
static bool raw_upload(vp_context *ctx, struct vk_buffer *b, const void *data, size_t bytes) {
    unsigned char *host = malloc(bytes + KT_GUARD_BYTES);
    memcpy(host, data, bytes);
    memset(host + bytes, 0xA5, KT_GUARD_BYTES);
    bool ok = CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, bytes + KT_GUARD_BYTES, b) == VP_OK) &&
              CHECK(vk_buffer_write(ctx, b, 0, host, bytes + KT_GUARD_BYTES) == VP_OK);
    free(host);
    return ok;
}

static bool raw_download(vp_context *ctx, const struct vk_buffer *b, void *data, size_t bytes) {
    unsigned char *host = malloc(bytes + KT_GUARD_BYTES);
    bool ok = CHECK(vk_buffer_read(ctx, b, 0, host, bytes + KT_GUARD_BYTES) == VP_OK);
    size_t bad = 0;
    for (size_t i = 0; i < KT_GUARD_BYTES; i++) bad += host[bytes + i] != 0xA5;
    ok = ok && CHECKF(bad == 0, "%zu guard bytes after %zu bytes overwritten", bad, bytes);
    memcpy(data, host, bytes);
    free(host);
    return ok;
}

struct convert_args {
    struct vk_buffer *f32, *h16, *b16, *f16back, *bf16back;
    size_t n;
};

static vp_status record_convert(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct convert_args *a = arg;
    vp_status s = kernel_convert(ctx, rec, a->h16, a->f32, a->n, VP_DTYPE_F16, VP_DTYPE_F32);
    if (s == VP_OK) s = kernel_convert(ctx, rec, a->b16, a->f32, a->n, VP_DTYPE_BF16, VP_DTYPE_F32);
    if (s == VP_OK) s = kernel_convert(ctx, rec, a->f16back, a->h16, a->n, VP_DTYPE_F32, VP_DTYPE_F16);
    if (s == VP_OK)
        s = kernel_convert(ctx, rec, a->bf16back, a->b16, a->n, VP_DTYPE_F32, VP_DTYPE_BF16);
    return s;
}

/* f32 → f16/bf16 → f32 on the GPU, bit for bit against the reference, for
 * floats around every fp16 value (the value, the tie to the next, ±1 ulp),
 * around bf16 ties, and random bit patterns (NaN, Inf, subnormals). n is odd,
 * so the last 16-bit word is half a tensor and half guard. */
static void convert_case(size_t n, uint64_t binding_range) {
    float *src = malloc(n * 4), *back16 = malloc(n * 4), *backb = malloc(n * 4);
    uint16_t *h16 = malloc(n * 2 + 2), *b16 = malloc(n * 2 + 2);
    uint64_t st = 99;
    for (size_t i = 0; i < n; i++) {
        uint32_t h = (uint32_t)(i / 6) & 0xFFFFu, u;
        float v = ref_f16_to_f32((uint16_t)h), next = ref_f16_to_f32((uint16_t)(h + 1));
        switch (i % 6) {
        case 0: u = fbits(v); break;
        case 1: u = fbits(0.5f * (v + next)); break;
        case 2: u = fbits(0.5f * (v + next)) + 1; break;
        case 3: u = fbits(0.5f * (v + next)) - 1; break;
        case 4: u = (uint32_t)th_rand_u64(&st); break;
        default: u = (uint32_t)th_rand_u64(&st) & 0xFFFF0000u; u |= 0x8000u | (i & 1); break;
        }
        memcpy(&src[i], &u, 4);
    }
    struct vk_buffer b[5] = {0};
    vp_context *ctx = kt_context(binding_range);
    struct vk_recorder *rec = NULL;
    size_t hb = (n * 2 + 3) / 4 * 4; /* 16-bit tensors occupy whole words */
    if (ctx && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK) &&
        raw_upload(ctx, &b[0], src, n * 4) && raw_upload(ctx, &b[1], src, n * 2) &&
        raw_upload(ctx, &b[2], src, n * 2) && raw_upload(ctx, &b[3], src, n * 4) &&
        raw_upload(ctx, &b[4], src, n * 4)) {
        struct convert_args a = {&b[0], &b[1], &b[2], &b[3], &b[4], n};
        (void)hb;
        if (kt_run(ctx, rec, record_convert, &a) && raw_download(ctx, &b[1], h16, n * 2) &&
            raw_download(ctx, &b[2], b16, n * 2) && raw_download(ctx, &b[3], back16, n * 4) &&
            raw_download(ctx, &b[4], backb, n * 4)) {
            if (binding_range) th_diag("n=%zu: %u dispatches", n, vk_recorder_dispatch_count(rec));
            size_t bad16 = 0, badb = 0, badback = 0;
            for (size_t i = 0; i < n; i++) {
                bad16 += h16[i] != ref_f32_to_f16(src[i]);
                badb += b16[i] != ref_f32_to_bf16(src[i]);
                badback += fbits(back16[i]) != fbits(ref_f16_to_f32(h16[i]));
                badback += fbits(backb[i]) != fbits(ref_bf16_to_f32(b16[i]));
            }
            CHECKF(bad16 == 0, "f32 -> f16: %zu of %zu differ from the reference", bad16, n);
            CHECKF(badb == 0, "f32 -> bf16: %zu of %zu differ from the reference", badb, n);
            CHECKF(badback == 0, "16-bit -> f32: %zu of %zu differ from the reference", badback,
                   2 * n);
        }
    }
    for (int i = 0; i < 5; i++)
        if (b[i].buffer) vk_buffer_free(ctx, &b[i]);
    vk_recorder_destroy(rec);
    free(src), free(back16), free(backb), free(h16), free(b16);
}

/* 6 probes for each of the 65536 fp16 patterns: every fp16 value (and so
 * every fp16 pattern read back) is covered. */
static void convert_bit_exact(void) {
    convert_case(1, 0);
    convert_case(6 * 65536 + 1, 0);
}

static void convert_rejects_bad_types(void) {
    struct fx f;
    if (fx_open(&f, 0)) {
        struct kt_tensor *t = fx_out(&f, 4);
        CHECK(vk_recorder_begin(f.rec) == VP_OK);
        CHECK(kernel_convert(f.ctx, f.rec, &t->buf, &t->buf, 4, VP_DTYPE_F32, VP_DTYPE_F32) ==
              VP_ERROR_UNSUPPORTED);
        CHECK(kernel_convert(f.ctx, f.rec, &t->buf, &t->buf, 4, VP_DTYPE_F16, VP_DTYPE_BF16) ==
              VP_ERROR_UNSUPPORTED);
        CHECK(vk_recorder_end(f.rec) == VP_OK);
    }
    fx_close(&f);
}

/* ---- across binding ranges, determinism -------------------------------------------- */

/* A 64 KiB binding range splits every op here into several dispatches;
 * results must be as if it were one. */
static void split_across_binding_ranges(void) {
    const uint64_t range = 64 << 10;
    add_and_scale_n(40001, range, 100);
    gate_case(1000, 37, 37, true, true, true, range, 101);
    gate_case(1000, 37, 1, true, true, true, range, 102);
    dropout_case(50001, 0.3, false, range);
    convert_case(70001, range);
    /* Activations, split: compare against the unsplit context bit for bit. */
    const size_t n = 40001;
    double *x = kt_dalloc(n), *dy = kt_dalloc(n), *y[2], *dx[2];
    act_inputs(x, n, 103);
    kt_random(dy, n, -1, 1, VP_DTYPE_F32, 104);
    for (int k = 0; k < 2; k++) {
        struct fx f;
        y[k] = dx[k] = NULL;
        if (fx_open(&f, k ? range : 0)) {
            struct act_args a = {fx_upload(&f, x, n), fx_upload(&f, dy, n), fx_out(&f, n),
                                 fx_out(&f, n), n, KERNEL_ACT_GELU};
            if (a.dx && fx_run(&f, record_act, &a)) {
                if (k) CHECK(vk_recorder_dispatch_count(f.rec) >= 6);
                y[k] = fx_download(&f, a.y);
                dx[k] = fx_download(&f, a.dx);
            }
        }
        fx_close(&f);
    }
    if (y[0] && y[1] && dx[0] && dx[1]) {
        bits_equal(y[1], y[0], n, "gelu split");
        bits_equal(dx[1], dx[0], n, "gelu backward split");
    }
    free(x), free(dy), free(y[0]), free(y[1]), free(dx[0]), free(dx[1]);
}

/* The same inputs twice, in two runs of a recording: bit-identical gate
 * gradients (the only reduction here) and activations. */
static void deterministic(void) {
    const uint32_t N = 300, C = 50;
    size_t n = (size_t)N * C;
    double *h = kt_dalloc(n), *g = kt_dalloc(C), *zero = kt_dalloc(C);
    kt_random(h, n, -2, 2, VP_DTYPE_F32, 110);
    kt_random(g, C, -2, 2, VP_DTYPE_F32, 111);
    struct fx f;
    if (fx_open(&f, 0)) {
        struct gate_args a = {fx_upload(&f, h, n), fx_upload(&f, h, n), fx_upload(&f, g, C),
                              fx_upload(&f, h, n), fx_out(&f, n),       fx_out(&f, n),
                              fx_out(&f, n),       fx_upload(&f, zero, C), NULL, N, C, C,
                              true, true, true};
        struct kt_tensor *scratch = &f.t[f.count++];
        a.scratch = scratch;
        double *first = NULL;
        for (int run = 0; run < 2 && a.dg; run++) {
            /* dg accumulates: start from zero each run. */
            if (!kt_alloc(f.ctx, scratch, VP_POOL_ACTIVATIONS, VP_DTYPE_F32,
                          kernel_sigmoid_gate_scratch_bytes(N, C) / 4, NAN))
                break;
            CHECK(vk_buffer_write(f.ctx, &a.dg->buf, 0, (float[64]){0}, C * 4) == VP_OK);
            if (!fx_run(&f, record_gate, &a)) break;
            double *got = fx_download(&f, a.dg);
            if (run == 0) first = got;
            else if (got && first) {
                bits_equal(got, first, C, "dg run to run");
                free(got);
            }
            kt_free(f.ctx, scratch);
        }
        free(first);
    }
    fx_close(&f);
    free(h), free(g), free(zero);
}

int main(int argc, char **argv) {
    static const struct th_case cases[] = {
        TH_CASE(activations_small_sizes),
        TH_CASE(activations_4099),
        TH_CASE(erf_accuracy),
        TH_CASE(activations_extreme_inputs),
        TH_CASE(swiglu),
        TH_CASE(add_and_scale),
        TH_CASE(gate_per_channel),
        TH_CASE(gate_scalar),
        TH_CASE(gate_partial_gradients),
        TH_CASE(dropout_masks),
        TH_CASE(convert_bit_exact),
        TH_CASE(convert_rejects_bad_types),
        TH_CASE(split_across_binding_ranges),
        TH_CASE(deterministic)
    };
    int status = vt_main(cases, sizeof cases / sizeof cases[0], argc, argv);
    kt_contexts_destroy();
    return status;
}
