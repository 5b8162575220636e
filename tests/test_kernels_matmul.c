/* Matmul kernels (runtime/kernels/matmul.c) against ref_matmul_forward,
 * ref_matmul_backward and ref_matmul_batched: odd shapes (M = 1, sizes that
 * are multiples of no tile, K in the thousands), f32/f16/bf16 weights, both
 * variants (forced, so lavapipe runs the GPU one too), tensors split across
 * binding ranges, accumulation into dW/db, batched transposes, strides,
 * broadcasting and alpha/beta, and bit-reproducibility.
 *
 * Tolerances. The inputs are rounded to their storage types before the
 * reference sees them, so a storage type adds no error of its own; what is
 * left is fp32 accumulation. A sum of n terms formed by n fused
 * multiply-adds in any fixed order is within γ_n·Σ|terms| of the exact sum,
 * γ_n = n·u/(1 − n·u), u = 2^-24 (Higham, Accuracy and Stability of
 * Numerical Algorithms, §3.1); a bias, alpha, beta or the final "+=" adds at
 * most two more roundings. Each check uses that bound with n = the
 * reduction length + 2 and Σ|terms| taken as the largest over the outputs
 * (the reference run on absolute values). The bound is rigorous, so it
 * never flakes; to catch a wrong index that a loose bound might hide, the
 * exact_* cases use small integers, for which every partial sum is exact in
 * fp32 and the GPU must match the reference bit for bit. */
#include "kerneltest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const enum kernel_matmul_variant variants[] = {KERNEL_MATMUL_TEXEL, KERNEL_MATMUL_TILED};
static const enum vp_dtype dtypes[] = {VP_DTYPE_F32, VP_DTYPE_F16, VP_DTYPE_BF16};

static double gamma_n(double n) {
    double nu = (n + 2) * KT_EPS_F32;
    return nu / (1 - nu);
}

static double max_abs(const double *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m;
}

static double *dup_abs(const double *v, size_t n) {
    double *a = malloc((n ? n : 1) * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = fabs(v[i]);
    return a;
}

static double *alloc_d(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

/* Values uniform in [-1, 1), or integers in [-3, 3] (exact cases), rounded
 * to dtype. */
static double *values(size_t n, enum vp_dtype dtype, bool ints, uint64_t seed) {
    double *v = alloc_d(n);
    if (ints) {
        uint64_t st = seed;
        for (size_t i = 0; i < n; i++) v[i] = (double)(int)(th_rand_u64(&st) % 7) - 3;
    } else {
        kt_random(v, n, -1.0, 1.0, dtype, seed);
    }
    return v;
}

/* Exact comparison for the integer cases. */
static bool check_exact(const double *got, const double *want, size_t n, const char *what) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ == 0) first = i;
    return CHECKF(bad == 0, "%s: %zu of %zu elements differ; first [%zu] = %.9g, want %.9g", what,
                  bad, n, first, bad ? got[first] : 0.0, bad ? want[first] : 0.0);
}

static bool compare(const double *got, const double *want, size_t n, double atol, bool exact,
                    const char *what) {
    return exact ? check_exact(got, want, n, what) : KT_CHECK_CLOSE(got, want, n, atol, 0.0, what);
}

/* ---- the linear layer ------------------------------------------------------------------ */

struct linear {
    uint32_t M, K, N;
    bool bias;
    enum vp_dtype wtype;
    enum kernel_matmul_variant variant;
    bool ints;
    uint64_t seed;
    struct kernel_matmul_tiles tiles; /* TILED: forced tiles; zero: chosen per shape */
};

struct linear_host {
    double *x, *w, *b, *dy, *dw0, *db0; /* inputs */
    double *y, *dx, *dw, *db;           /* reference outputs */
    double tol_y, tol_dx, tol_dw, tol_db;
};

static void linear_host_init(struct linear_host *h, const struct linear *c) {
    size_t M = c->M, K = c->K, N = c->N;
    h->x = values(M * K, VP_DTYPE_F32, c->ints, c->seed + 1);
    h->w = values(N * K, c->wtype, c->ints, c->seed + 2);
    h->b = c->bias ? values(N, VP_DTYPE_F32, c->ints, c->seed + 3) : NULL;
    h->dy = values(M * N, VP_DTYPE_F32, c->ints, c->seed + 4);
    h->dw0 = values(N * K, VP_DTYPE_F32, c->ints, c->seed + 5); /* dW and db accumulate onto these */
    h->db0 = values(N, VP_DTYPE_F32, c->ints, c->seed + 6);
    h->y = alloc_d(M * N);
    h->dx = alloc_d(M * K);
    h->dw = alloc_d(N * K);
    h->db = alloc_d(N);
    memcpy(h->dw, h->dw0, N * K * sizeof(double));
    memcpy(h->db, h->db0, N * sizeof(double));
    ref_matmul_forward(h->y, h->x, h->w, h->b, (int)M, (int)K, (int)N);
    ref_matmul_backward(h->dx, h->dw, h->db, h->dy, h->x, h->w, (int)M, (int)K, (int)N);
    /* The same products on absolute values give Σ|terms| for the bounds. */
    double *ax = dup_abs(h->x, M * K), *aw = dup_abs(h->w, N * K), *ady = dup_abs(h->dy, M * N);
    double *ab = h->b ? dup_abs(h->b, N) : NULL, *adw = dup_abs(h->dw0, N * K),
           *adb = dup_abs(h->db0, N);
    double *sy = alloc_d(M * N), *sdx = alloc_d(M * K);
    ref_matmul_forward(sy, ax, aw, ab, (int)M, (int)K, (int)N);
    ref_matmul_backward(sdx, adw, adb, ady, ax, aw, (int)M, (int)K, (int)N);
    h->tol_y = gamma_n(K) * max_abs(sy, M * N);
    h->tol_dx = gamma_n(N) * max_abs(sdx, M * K);
    h->tol_dw = gamma_n(M) * max_abs(adw, N * K);
    h->tol_db = gamma_n(M) * max_abs(adb, N);
    double *tmp[] = {ax, aw, ady, ab, adw, adb, sy, sdx};
    for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++) free(tmp[i]);
}

static void linear_host_free(struct linear_host *h) {
    double *all[] = {h->x, h->w, h->b, h->dy, h->dw0, h->db0, h->y, h->dx, h->dw, h->db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

struct linear_dev {
    struct kt_tensor x, w, b, dy, y, dx, dw, db;
    const struct linear *c;
};

static bool linear_dev_init(vp_context *ctx, struct linear_dev *d, const struct linear_host *h,
                            const struct linear *c) {
    memset(d, 0, sizeof *d);
    d->c = c;
    size_t M = c->M, K = c->K, N = c->N;
    const vp_pool A = VP_POOL_ACTIVATIONS, T = VP_POOL_TRAINABLE;
    const enum vp_dtype F = VP_DTYPE_F32;
    return kt_upload(ctx, &d->x, A, F, h->x, M * K) &&
           kt_upload(ctx, &d->w, VP_POOL_FROZEN, c->wtype, h->w, N * K) &&
           (!c->bias || kt_upload(ctx, &d->b, T, F, h->b, N)) &&
           kt_upload(ctx, &d->dy, A, F, h->dy, M * N) &&
           kt_upload(ctx, &d->dw, T, F, h->dw0, N * K) && kt_upload(ctx, &d->db, T, F, h->db0, N) &&
           /* Overwritten outputs start as NaN, so anything left unwritten shows. */
           kt_alloc(ctx, &d->y, A, F, M * N, NAN) && kt_alloc(ctx, &d->dx, A, F, M * K, NAN);
}

static void linear_dev_free(vp_context *ctx, struct linear_dev *d) {
    struct kt_tensor *all[] = {&d->x, &d->w, &d->b, &d->dy, &d->y, &d->dx, &d->dw, &d->db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->buf.buffer) kt_free(ctx, all[i]);
}

/* Forward and the full backward in one recording. */
static vp_status record_linear(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct linear_dev *d = arg;
    const struct linear *c = d->c;
    struct kernel_matmul_opts o = {.variant = c->variant, .tiles = c->tiles};
    vp_status s = kernel_matmul_forward(ctx, rec, &d->y.buf, &d->x.buf, &d->w.buf, c->wtype,
                                        c->bias ? &d->b.buf : NULL, c->M, c->K, c->N, &o);
    if (s == VP_OK)
        s = kernel_matmul_backward(ctx, rec, &d->dx.buf, &d->dw.buf, &d->db.buf, &d->dy.buf,
                                   &d->x.buf, &d->w.buf, c->wtype, c->M, c->K, c->N, &o);
    return s;
}

static bool linear_check(vp_context *ctx, const struct linear_dev *d, const struct linear_host *h,
                         const struct linear *c) {
    size_t M = c->M, K = c->K, N = c->N;
    char what[160];
    size_t most = M * N > M * K ? M * N : M * K;
    double *g = alloc_d(most > N * K ? most : N * K);
    bool ok = true;
    char tiles[64] = "";
    if (c->tiles.bm) {
        tiles[0] = ' ';
        kernel_matmul_tiles_name(&c->tiles, tiles + 1, sizeof tiles - 1);
    }
    snprintf(what, sizeof what, "%s%s w=%s M=%zu K=%zu N=%zu%s",
             kernel_matmul_variant_name(c->variant), tiles, vp_dtype_name(c->wtype), M, K, N,
             c->bias ? " bias" : "");
    char w2[200];
    ok &= kt_download(ctx, &d->y, g);
    snprintf(w2, sizeof w2, "y (%s)", what);
    ok &= compare(g, h->y, M * N, h->tol_y, c->ints, w2);
    ok &= kt_download(ctx, &d->dx, g);
    snprintf(w2, sizeof w2, "dx (%s)", what);
    ok &= compare(g, h->dx, M * K, h->tol_dx, c->ints, w2);
    ok &= kt_download(ctx, &d->dw, g);
    snprintf(w2, sizeof w2, "dw (%s)", what);
    ok &= compare(g, h->dw, N * K, h->tol_dw, c->ints, w2);
    ok &= kt_download(ctx, &d->db, g);
    snprintf(w2, sizeof w2, "db (%s)", what);
    ok &= compare(g, h->db, N, h->tol_db, c->ints, w2);
    free(g);
    return ok;
}

static bool run_linear(vp_context *ctx, struct vk_recorder *rec, const struct linear *c) {
    struct linear_host h;
    struct linear_dev d;
    linear_host_init(&h, c);
    bool ok = linear_dev_init(ctx, &d, &h, c) && kt_run(ctx, rec, record_linear, &d) &&
              linear_check(ctx, &d, &h, c);
    linear_dev_free(ctx, &d);
    linear_host_free(&h);
    return ok;
}

struct mkn {
    uint32_t M, K, N;
};

/* Shapes that are multiples of no tile, M = 1, K = 1, narrow and wide, rows
 * 16-byte aligned or not. f16 and bf16 weights change only how B is read
 * (four-element reads or single ones, W as the forward's transposed B or
 * dX's plain one), so they run on the first two shapes, one of each kind:
 * every pipeline costs a compile on lavapipe, and the suite has a time
 * budget. */
static const struct mkn odd_shapes[] = {
    {33, 65, 17}, {20, 40, 36}, {1, 5, 3},   {100, 40, 70}, {3, 2053, 9},  {2, 4, 4},
    {1, 1, 1},    {7, 13, 11},  {64, 64, 64}, {1, 96, 40},  {130, 8, 24}, {9, 3, 130},
};

static void run_linear_shapes(bool ints, uint64_t seed) {
    vp_context *ctx = vt_context(NULL);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    for (size_t v = 0; v < 2; v++)
        for (size_t t = 0; t < 3; t++)
            for (size_t i = 0; i < (t == 0 ? sizeof odd_shapes / sizeof odd_shapes[0] : 2); i++) {
                const struct mkn *s = &odd_shapes[i];
                struct linear c = {s->M, s->K, s->N, (i + t) % 2 == 0, dtypes[t], variants[v], ints,
                                   seed + 100 * i + 10 * t + v, {0}};
                if (!run_linear(ctx, rec, &c)) goto out;
            }
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

static void linear_odd_shapes(void) { run_linear_shapes(false, 1000); }

/* Small integers: every partial sum is exact, so any missing, repeated or
 * misplaced term shows as a difference. */
static void exact_linear_odd_shapes(void) { run_linear_shapes(true, 2000); }

/* K and N in the thousands (a transformer's FFN, a vocabulary-sized head
 * slice) with few rows, exact. */
static void exact_linear_long_reductions(void) {
    vp_context *ctx = vt_context(NULL);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    for (size_t v = 0; v < 2; v++) {
        struct linear a = {5, 3072, 19, true, VP_DTYPE_F16, variants[v], true, 31, {0}};
        struct linear b = {3, 37, 1500, false, VP_DTYPE_F32, variants[v], true, 37, {0}};
        if (!run_linear(ctx, rec, &a) || !run_linear(ctx, rec, &b)) break;
    }
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

/* A binding range of 4 KiB splits X, Y, dX, dY by rows, W, dW and b by rows
 * of W, and both reductions (dX over N, dW over M) into chunks. */
static void linear_split_across_binding_ranges(void) {
    vp_context_options o = {.binding_range = 4096};
    vp_context *ctx = vt_context(&o);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    CHECK(vp_context_limits(ctx)->storage_buffer_range == 4096);
    for (size_t v = 0; v < 2; v++)
        for (size_t t = 0; t < 2; t++) {
            /* x: 200 rows of 96 B in ~40-row ranges; w: 70 rows of 96 B (f32). */
            struct linear a = {200, 24, 70, true, dtypes[t], variants[v], false, 41 + t, {0}};
            struct linear b = {200, 24, 70, true, dtypes[t], variants[v], true, 43 + t, {0}};
            /* Odd K: row starts are not 16-byte aligned in any range. */
            struct linear e = {61, 27, 45, false, dtypes[t], variants[v], true, 47 + t, {0}};
            if (!run_linear(ctx, rec, &a) || !run_linear(ctx, rec, &b) || !run_linear(ctx, rec, &e))
                goto out;
        }
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

/* Only some gradients: dx alone (frozen W), db alone (BitFit-like: the
 * row-sum-only pass), dw alone. */
struct partial {
    struct linear_dev *d;
    int which; /* 0: dx, 1: db, 2: dw */
};

static vp_status record_partial(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct partial *p = arg;
    struct linear_dev *d = p->d;
    const struct linear *c = d->c;
    struct kernel_matmul_opts o = {.variant = c->variant};
    return kernel_matmul_backward(ctx, rec, p->which == 0 ? &d->dx.buf : NULL,
                                  p->which == 2 ? &d->dw.buf : NULL,
                                  p->which == 1 ? &d->db.buf : NULL, &d->dy.buf,
                                  p->which == 2 ? &d->x.buf : NULL,
                                  p->which == 0 ? &d->w.buf : NULL, c->wtype, c->M, c->K, c->N,
                                  &o);
}

static void backward_partial_gradients(void) {
    vp_context *ctx = vt_context(NULL);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    for (size_t v = 0; v < 2; v++)
        for (int which = 0; which < 3; which++) {
            struct linear c = {37, 21, 29, false, which == 0 ? VP_DTYPE_BF16 : VP_DTYPE_F32,
                               variants[v], true, 51 + (uint64_t)which, {0}};
            struct linear_host h;
            struct linear_dev d;
            linear_host_init(&h, &c);
            struct partial p = {&d, which};
            bool ok = linear_dev_init(ctx, &d, &h, &c) && kt_run(ctx, rec, record_partial, &p);
            double *g = alloc_d(c.M * c.K > c.N * c.K ? c.M * c.K : c.N * c.K);
            /* What was not asked for keeps its initial contents. */
            if (ok) {
                ok &= kt_download(ctx, &d.dx, g);
                if (which == 0) ok &= check_exact(g, h.dx, c.M * c.K, "dx alone");
                else ok &= CHECK(isnan(g[0]) && isnan(g[c.M * c.K - 1]));
                ok &= kt_download(ctx, &d.db, g);
                ok &= check_exact(g, which == 1 ? h.db : h.db0, c.N, "db alone");
                ok &= kt_download(ctx, &d.dw, g);
                ok &= check_exact(g, which == 2 ? h.dw : h.dw0, c.N * c.K, "dw alone");
            }
            free(g);
            linear_dev_free(ctx, &d);
            linear_host_free(&h);
            if (!ok) goto out;
        }
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

/* ---- strided batched --------------------------------------------------------------------- */

struct batched {
    uint32_t batch, M, N, K;
    bool ta, tb;
    int64_t sa, sb, sc; /* -1: packed (one matrix after the other) */
    uint32_t a_off;     /* elements before A's matrix 0 */
    double alpha, beta;
    enum kernel_matmul_variant variant;
    bool ints;
    uint64_t seed;
    struct kernel_matmul_tiles tiles; /* TILED: forced tiles; zero: chosen per shape */
};

struct batched_dev {
    struct kt_tensor a, b, c;
    const struct batched *bc;
    size_t sa, sb, sc;
};

static vp_status record_batched(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct batched_dev *d = arg;
    const struct batched *c = d->bc;
    struct kernel_matmul_opts o = {.variant = c->variant, .tiles = c->tiles};
    return kernel_matmul_batched(ctx, rec, (struct kernel_matrix){&d->c.buf, 0, d->sc},
                                 (struct kernel_matrix){&d->a.buf, c->a_off, d->sa},
                                 (struct kernel_matrix){&d->b.buf, 0, d->sb}, c->batch, c->M, c->N,
                                 c->K, c->ta, c->tb, (float)c->alpha, (float)c->beta, &o);
}

static bool run_batched(vp_context *ctx, struct vk_recorder *rec, const struct batched *c) {
    size_t ma = (size_t)c->M * c->K, mb = (size_t)c->K * c->N, mc = (size_t)c->M * c->N;
    struct batched_dev d = {.bc = c};
    d.sa = c->sa < 0 ? ma : (size_t)c->sa;
    d.sb = c->sb < 0 ? mb : (size_t)c->sb;
    d.sc = c->sc < 0 ? mc : (size_t)c->sc;
    size_t na = c->a_off + (c->batch - 1) * d.sa + ma, nb = (c->batch - 1) * d.sb + mb,
           nc = (c->batch - 1) * d.sc + mc;
    double *a = values(na, VP_DTYPE_F32, c->ints, c->seed + 1);
    double *b = values(nb, VP_DTYPE_F32, c->ints, c->seed + 2);
    double *c0 = values(nc, VP_DTYPE_F32, c->ints, c->seed + 3);
    if (c->beta == 0)
        for (size_t i = 0; i < nc; i++) c0[i] = NAN; /* must not be read */
    double *want = alloc_d(nc), *got = alloc_d(nc);
    memcpy(want, c0, nc * sizeof(double));
    ref_matmul_batched(want, a + c->a_off, b, (int)c->batch, (int)c->M, (int)c->N, (int)c->K, c->ta,
                       c->tb, d.sa, d.sb, d.sc, c->alpha, c->beta);
    /* Bound: Σ|terms| from the same product on absolute values; with
     * stride_c = 0 the batches chain, so the reduction is batch·K long. */
    double *aa = dup_abs(a, na), *ab = dup_abs(b, nb), *ac = dup_abs(c0, nc);
    if (c->beta == 0) memset(ac, 0, nc * sizeof(double));
    ref_matmul_batched(ac, aa + c->a_off, ab, (int)c->batch, (int)c->M, (int)c->N, (int)c->K, c->ta,
                       c->tb, d.sa, d.sb, d.sc, fabs(c->alpha), fabs(c->beta));
    double n = (double)c->K * (d.sc == 0 ? c->batch : 1) + 2 * c->batch;
    double tol = gamma_n(n) * max_abs(ac, nc);
    bool ok = kt_upload(ctx, &d.a, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, a, na) &&
              kt_upload(ctx, &d.b, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, b, nb) &&
              kt_upload(ctx, &d.c, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, c0, nc) &&
              kt_run(ctx, rec, record_batched, &d) && kt_download(ctx, &d.c, got);
    if (ok) {
        char what[200];
        snprintf(what, sizeof what,
                 "batched %s %ux%ux%ux%ux%u batch=%u M=%u N=%u K=%u ta=%d tb=%d strides "
                 "%zu/%zu/%zu alpha=%g beta=%g",
                 kernel_matmul_variant_name(c->variant), c->tiles.bm, c->tiles.bn, c->tiles.bk,
                 c->tiles.tm, c->tiles.tn, c->batch, c->M, c->N, c->K, c->ta, c->tb,
                 d.sa, d.sb, d.sc, c->alpha, c->beta);
        ok = compare(got, want, nc, tol, c->ints, what);
    }
    if (d.a.buf.buffer) kt_free(ctx, &d.a);
    if (d.b.buf.buffer) kt_free(ctx, &d.b);
    if (d.c.buf.buffer) kt_free(ctx, &d.c);
    double *all[] = {a, b, c0, want, got, aa, ab, ac};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    return ok;
}

static void run_batched_cases(bool ints, uint64_t seed) {
    vp_context *ctx = vt_context(NULL);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    static const struct {
        uint32_t batch, M, N, K;
    } shapes[] = {{3, 5, 7, 9}, {2, 16, 8, 64}, {4, 1, 3, 1}, {2, 33, 17, 12}, {1, 64, 64, 64}};
    for (size_t v = 0; v < 2; v++)
        for (int t = 0; t < 4; t++)
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
                struct batched c = {shapes[i].batch, shapes[i].M, shapes[i].N, shapes[i].K,
                                    t & 1, (t >> 1) & 1, -1, -1, -1, 4,
                                    ints ? 1.0 : 0.5, (double)(int)(i % 3) - 1.0, /* beta -1, 0, 1 */
                                    variants[v], ints, seed + 16 * i + 4 * (uint64_t)t + v, {0}};
                if (!run_batched(ctx, rec, &c)) goto out;
            }
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

static void batched_transposes(void) { run_batched_cases(false, 3000); }
static void exact_batched_transposes(void) { run_batched_cases(true, 4000); }

/* Stride 0 broadcasts an operand; stride_c = 0 with beta = 1 sums the
 * batches into one matrix; strides larger than a matrix leave gaps. */
static void batched_strides_and_broadcast(void) {
    vp_context *ctx = vt_context(NULL);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    for (size_t v = 0; v < 2; v++)
        for (int ints = 0; ints < 2; ints++) {
            /* The last: A's matrix 0 three elements in (unaligned). */
            struct batched cases[] = {
                {3, 6, 5, 7, false, true, -1, 0, -1, 0, 1.0, 0.0, variants[v], ints, 5, {0}},
                {3, 6, 5, 7, true, false, 0, -1, -1, 0, 1.0, 1.0, variants[v], ints, 6, {0}},
                {4, 9, 10, 11, false, false, -1, -1, 0, 0, 1.0, 1.0, variants[v], ints, 7, {0}},
                {3, 8, 4, 8, true, true, 72, 44, 48, 3, ints ? 2.0 : 0.75, 1.0, variants[v], ints, 8,
                 {0}},
            };
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                if (!run_batched(ctx, rec, &cases[i])) goto out;
        }
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

/* Batches split across 1 KiB binding ranges, a few matrices per range. */
static void batched_split_across_binding_ranges(void) {
    vp_context_options o = {.binding_range = 1024};
    vp_context *ctx = vt_context(&o);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    for (size_t v = 0; v < 2; v++) {
        struct batched a = {7, 9, 8, 12, false, true, -1, -1, -1, 0, 1.0, 1.0, variants[v], true, 9,
                            {0}};
        struct batched b = {5, 12, 12, 4, true, false, -1, -1, 0, 0, 1.0, 1.0, variants[v], true, 10,
                            {0}};
        if (!run_batched(ctx, rec, &a) || !run_batched(ctx, rec, &b)) break;
    }
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

/* ---- the tiled variant's tiles ------------------------------------------------------- */

/* The other tiles the TILED variant can run (the cases above get the
 * per-shape choice, 32x32x16 with 4x4 per invocation at their sizes, with
 * four-element and single reads, every dtype and transpose): 128x128 with
 * 8x8 per invocation (big products); 64x64 with 8x4, 8 deep (the mid
 * choice under mobile limits); 32x64 with 4x8, 4 deep, where a slice has
 * fewer four-element reads of op(A) than invocations. Each runs a linear
 * layer (forward, dX, dW with db: B transposed, plain, A transposed) with
 * four-element reads and f16 W, at sizes that cross tile edges, and 128x128
 * a batched product with both operands transposed and single reads too.
 * Only what changes with the tiles runs here: each pipeline costs lavapipe
 * ~2 s of LLVM at its first dispatch. Tiles the profile cannot run (128x128
 * needs 256 invocations) must be refused, and are skipped. */
static void tiled_tile_configs(void) {
    static const struct kernel_matmul_tiles configs[] = {
        {128, 128, 8, 8, 8}, {64, 64, 8, 8, 4}, {32, 64, 4, 4, 8}};
    vp_context *ctx = vt_context(NULL);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    const enum kernel_matmul_variant T = KERNEL_MATMUL_TILED;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        struct kernel_matmul_opts o = {.variant = T, .tiles = configs[i]};
        struct kernel_matmul_tiles got;
        uint32_t inv = (configs[i].bm / configs[i].tm) * (configs[i].bn / configs[i].tn);
        vp_status s = kernel_matmul_tiles_choose(ctx, &o, 1, 1, 1, &got);
        if (s == VP_ERROR_UNSUPPORTED && vp_context_limits(ctx)->max_workgroup_invocations < inv) {
            th_diag("tiles %ux%u (%u invocations) skipped: %s", configs[i].bm, configs[i].bn, inv,
                    vp_last_error());
            vp_clear_error();
            continue;
        }
        if (!CHECK(s == VP_OK && memcmp(&got, &configs[i], sizeof got) == 0)) break;
        uint64_t seed = 5000 + 10 * i;
        struct linear vec = {130, 72, 136, true, VP_DTYPE_F16, T, true, seed, configs[i]};
        /* A's matrix 0 one element in: single reads. */
        struct batched bt = {2, 36, 40, 20, true, true, -1, -1, -1, 1, 1.0, 1.0, T, true, seed + 2,
                             configs[i]};
        if (!run_linear(ctx, rec, &vec) || (i == 0 && !run_batched(ctx, rec, &bt))) break;
    }
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

static bool tiles_are(const struct kernel_matmul_tiles *t, uint32_t bm, uint32_t bn, uint32_t bk,
                      uint32_t tm, uint32_t tn) {
    return CHECKF(t->bm == bm && t->bn == bn && t->bk == bk && t->tm == tm && t->tn == tn,
                  "tiles %ux%ux%ux%ux%u, want %ux%ux%ux%ux%u", t->bm, t->bn, t->bk, t->tm, t->tn,
                  bm, bn, bk, tm, tn);
}

/* The per-shape choice (big tiles for big products, small ones when the
 * grid would be small), its fit to the limits profile, and
 * VKPEFT_MATMUL_TILES: taken when valid, refused with a message naming it
 * when malformed or too big for the device; opts.tiles wins over it. */
static void tiled_tile_choice(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    const vp_limits *l = vp_context_limits(ctx);
    struct kernel_matmul_tiles t;
    unsetenv("VKPEFT_MATMUL_TILES");
    bool big = l->max_workgroup_invocations >= 256 && l->shared_memory >= 17408;
    bool mobile = l->profile == VP_LIMITS_MOBILE;
    if (big && CHECK(kernel_matmul_tiles_choose(ctx, NULL, 2048, 2048, 1, &t) == VP_OK))
        tiles_are(&t, 64, 64, 16, 4, 4); /* 1024 workgroups; 128x128 is no candidate (matmul.c) */
    if (big && CHECK(kernel_matmul_tiles_choose(ctx, NULL, 2048, 256, 1, &t) == VP_OK))
        tiles_are(&t, 64, 64, 16, 4, 4);
    /* Batches count: 8 of 256x256 fill 128 workgroups of 64x64, one does not. */
    if (big && CHECK(kernel_matmul_tiles_choose(ctx, NULL, 256, 256, 8, &t) == VP_OK))
        tiles_are(&t, 64, 64, 16, 4, 4);
    if (CHECK(kernel_matmul_tiles_choose(ctx, NULL, 256, 256, 1, &t) == VP_OK))
        tiles_are(&t, 32, 32, 16, 4, 4);
    if (mobile && CHECK(kernel_matmul_tiles_choose(ctx, NULL, 2048, 2048, 1, &t) == VP_OK))
        tiles_are(&t, 64, 64, 8, 8, 4); /* 64x64x16 4x4 shrunk to 16 KiB, 128 invocations */
    if (CHECK(kernel_matmul_tiles_choose(ctx, NULL, 2048, 8, 1, &t) == VP_OK)) /* LoRA rank 8 */
        tiles_are(&t, 32, 32, 16, 4, 4);
    if (CHECK(kernel_matmul_tiles_choose(ctx, NULL, 4, 2048, 1, &t) == VP_OK)) /* decode */
        tiles_are(&t, 32, 32, 16, 4, 4);
    /* Attention's P·V, 32 heads x 4 sequences. */
    if (big && CHECK(kernel_matmul_tiles_choose(ctx, NULL, 512, 64, 128, &t) == VP_OK))
        tiles_are(&t, 64, 64, 16, 4, 4);
    /* A decode step's LM head: 4 rows in 64-row tiles would be 94% padding. */
    if (CHECK(kernel_matmul_tiles_choose(ctx, NULL, 4, 32000, 1, &t) == VP_OK))
        tiles_are(&t, 32, 32, 16, 4, 4);
    if (CHECK(kernel_matmul_tiles_choose(ctx, NULL, 1, 1, 1, &t) == VP_OK))
        tiles_are(&t, 32, 32, 16, 4, 4);

    setenv("VKPEFT_MATMUL_TILES", "64x32x8x8x4", 1);
    if (CHECK(kernel_matmul_tiles_choose(ctx, NULL, 2048, 2048, 1, &t) == VP_OK))
        tiles_are(&t, 64, 32, 8, 8, 4);
    struct kernel_matmul_opts forced = {.tiles = {32, 32, 16, 4, 4}};
    if (CHECK(kernel_matmul_tiles_choose(ctx, &forced, 2048, 2048, 1, &t) == VP_OK))
        tiles_are(&t, 32, 32, 16, 4, 4);
    static const char *const malformed[] = {"128x128x8", "128x128x8x8x8x", "big", "128x128x8x3x8",
                                            "128x128x6x8x8", "100x64x8x8x8", "512x64x8x8x8"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        setenv("VKPEFT_MATMUL_TILES", malformed[i], 1);
        CHECKF(kernel_matmul_tiles_choose(ctx, NULL, 64, 64, 1, &t) ==
                       VP_ERROR_INVALID_ARGUMENT &&
                   strstr(vp_last_error(), "VKPEFT_MATMUL_TILES"),
               "'%s' accepted", malformed[i]);
    }
    /* Well formed, but 4096 invocations and 66 KiB of shared memory. */
    setenv("VKPEFT_MATMUL_TILES", "256x256x32x4x4", 1);
    CHECK(kernel_matmul_tiles_choose(ctx, NULL, 64, 64, 1, &t) == VP_ERROR_UNSUPPORTED &&
          strstr(vp_last_error(), "needs 4096 invocations"));
    setenv("VKPEFT_MATMUL_TILES", "auto", 1);
    if (CHECK(kernel_matmul_tiles_choose(ctx, NULL, 1, 1, 1, &t) == VP_OK))
        tiles_are(&t, 32, 32, 16, 4, 4);
    unsetenv("VKPEFT_MATMUL_TILES");
    vp_clear_error();
    vp_context_destroy(ctx);
}

/* ---- determinism, variant choice, misuse ------------------------------------------------- */

/* The same inputs twice give bit-identical outputs (no float atomics; the
 * reductions, dW's over 300 rows included, run in a fixed order). */
static void deterministic(void) {
    vp_context *ctx = vt_context(NULL);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    for (size_t v = 0; v < 2; v++) {
        struct linear c = {300, 77, 50, true, VP_DTYPE_F16, variants[v], false, 61, {0}};
        struct linear_host h;
        struct linear_dev d;
        linear_host_init(&h, &c);
        size_t ny = (size_t)c.M * c.N, ndx = (size_t)c.M * c.K, ndw = (size_t)c.N * c.K;
        double *r[2][4];
        for (int run = 0; run < 2; run++) {
            r[run][0] = alloc_d(ny), r[run][1] = alloc_d(ndx), r[run][2] = alloc_d(ndw);
            r[run][3] = alloc_d(c.N);
        }
        bool ok = linear_dev_init(ctx, &d, &h, &c);
        for (int run = 0; run < 2 && ok; run++) {
            /* dW and db restart from the same initial values. */
            kt_free(ctx, &d.dw);
            kt_free(ctx, &d.db);
            ok = kt_upload(ctx, &d.dw, VP_POOL_TRAINABLE, VP_DTYPE_F32, h.dw0, ndw) &&
                 kt_upload(ctx, &d.db, VP_POOL_TRAINABLE, VP_DTYPE_F32, h.db0, c.N) &&
                 kt_run(ctx, rec, record_linear, &d) && kt_download(ctx, &d.y, r[run][0]) &&
                 kt_download(ctx, &d.dx, r[run][1]) && kt_download(ctx, &d.dw, r[run][2]) &&
                 kt_download(ctx, &d.db, r[run][3]);
        }
        if (ok) {
            CHECKF(memcmp(r[0][0], r[1][0], ny * sizeof(double)) == 0, "y differs between runs");
            CHECKF(memcmp(r[0][1], r[1][1], ndx * sizeof(double)) == 0, "dx differs between runs");
            CHECKF(memcmp(r[0][2], r[1][2], ndw * sizeof(double)) == 0, "dw differs between runs");
            CHECKF(memcmp(r[0][3], r[1][3], c.N * sizeof(double)) == 0, "db differs between runs");
        }
        for (int run = 0; run < 2; run++)
            for (int i = 0; i < 4; i++) free(r[run][i]);
        linear_dev_free(ctx, &d);
        linear_host_free(&h);
        if (!ok) break;
    }
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

/* CPU devices (lavapipe) get the texel variant; the forced variants are
 * what they say. */
static void variant_choice(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    enum kernel_matmul_variant v = kernel_matmul_choose(ctx, KERNEL_MATMUL_AUTO);
    th_diag("device '%s': matmul variant %s", vp_context_device(ctx)->name,
            kernel_matmul_variant_name(v));
    if (vp_context_device(ctx)->type == VP_DEVICE_CPU) CHECK(v == KERNEL_MATMUL_TEXEL);
    else CHECK(v == KERNEL_MATMUL_TILED);
    CHECK(kernel_matmul_choose(ctx, KERNEL_MATMUL_TILED) == KERNEL_MATMUL_TILED);
    CHECK(kernel_matmul_choose(ctx, KERNEL_MATMUL_TEXEL) == KERNEL_MATMUL_TEXEL);
    vp_context_destroy(ctx);
}

static vp_status record_misuse(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct linear_dev *d = arg;
    vp_status s1 = kernel_matmul_forward(ctx, rec, &d->y.buf, &d->x.buf, &d->w.buf, VP_DTYPE_F32,
                                         NULL, 8, 8, 100, NULL); /* y, w too small */
    CHECK(s1 == VP_ERROR_INVALID_ARGUMENT && strstr(vp_last_error(), "y holds"));
    vp_status s2 = kernel_matmul_forward(ctx, rec, &d->y.buf, &d->x.buf, &d->w.buf, VP_DTYPE_F32,
                                         NULL, 8, 0, 8, NULL);
    CHECK(s2 == VP_ERROR_INVALID_ARGUMENT);
    vp_status s3 = kernel_matmul_batched(ctx, rec, (struct kernel_matrix){&d->y.buf, 0, 4},
                                         (struct kernel_matrix){&d->x.buf, 0, 0},
                                         (struct kernel_matrix){&d->w.buf, 0, 0}, 2, 2, 4, 2,
                                         false, false, 1.0f, 0.0f, NULL); /* C overlaps */
    CHECK(s3 == VP_ERROR_INVALID_ARGUMENT && strstr(vp_last_error(), "overlap"));
    /* A malformed VKPEFT_MATMUL_TILES fails every call, whatever the variant. */
    setenv("VKPEFT_MATMUL_TILES", "64x64", 1);
    vp_status s4 = kernel_matmul_forward(ctx, rec, &d->y.buf, &d->x.buf, &d->w.buf, VP_DTYPE_F32,
                                         NULL, 8, 8, 8, NULL);
    unsetenv("VKPEFT_MATMUL_TILES");
    CHECK(s4 == VP_ERROR_INVALID_ARGUMENT && strstr(vp_last_error(), "VKPEFT_MATMUL_TILES"));
    vp_clear_error();
    return VP_OK;
}

static void rejects_bad_arguments(void) {
    vp_context *ctx = vt_context(NULL);
    struct vk_recorder *rec = NULL;
    if (!ctx || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) goto out;
    struct linear c = {8, 8, 8, false, VP_DTYPE_F32, KERNEL_MATMUL_AUTO, true, 71, {0}};
    struct linear_host h;
    struct linear_dev d;
    linear_host_init(&h, &c);
    if (linear_dev_init(ctx, &d, &h, &c)) kt_run(ctx, rec, record_misuse, &d);
    CHECK(vk_recorder_dispatch_count(rec) == 0);
    linear_dev_free(ctx, &d);
    linear_host_free(&h);
out:
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
}

VT_MAIN(TH_CASE(variant_choice), TH_CASE(linear_odd_shapes), TH_CASE(exact_linear_odd_shapes),
        TH_CASE(exact_linear_long_reductions), TH_CASE(linear_split_across_binding_ranges),
        TH_CASE(backward_partial_gradients), TH_CASE(batched_transposes),
        TH_CASE(exact_batched_transposes), TH_CASE(batched_strides_and_broadcast),
        TH_CASE(batched_split_across_binding_ranges), TH_CASE(tiled_tile_configs),
        TH_CASE(tiled_tile_choice), TH_CASE(deterministic),
        TH_CASE(rejects_bad_arguments))
