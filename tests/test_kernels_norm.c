/* LayerNorm and RMSNorm kernels against ref_layernorm_* / ref_rmsnorm_*:
 * forward (with the saved mean and rstd) and backward (dx overwritten,
 * dγ/dβ accumulated through the two-pass reduction), both row variants,
 * weights stored f32/f16/bf16, with and without bias, odd shapes, rows
 * split across binding ranges, guards, and bit-reproducibility. */
#include "kerneltest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double U = KT_EPS_F32; /* fp32 unit roundoff */
static const float EPS = 1e-3f;     /* large enough that a misplaced eps shows */


static bool bits_equal(const double *a, const double *b, size_t n, const char *what) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof a[i]) != 0;
    return CHECKF(bad == 0, "%s: %zu of %zu values differ", what, bad, n);
}

struct norm_case {
    uint32_t N, C;
    bool rms, beta;      /* RMSNorm; LayerNorm with a bias */
    bool dgamma, dbeta;  /* parameter gradients wanted */
    enum vp_dtype wtype;
    enum kernel_rows_variant variant;
    uint64_t binding_range; /* 0: the device's */
};

/* Host tensors and reference results. */
struct host {
    size_t n;
    double *x, *gamma, *beta, *dy, *dg0, *db0;  /* inputs; dγ, dβ start at dg0, db0 */
    double *y, *mean, *rstd;                    /* forward (mean, rstd rounded to fp32) */
    double *dx, *dg, *db;                       /* backward from the rounded mean, rstd */
};

static void host_init(struct host *h, const struct norm_case *c, uint64_t seed) {
    size_t N = c->N, C = c->C, n = N * C;
    h->n = n;
    h->x = kt_dalloc(n), h->gamma = kt_dalloc(C), h->beta = kt_dalloc(C), h->dy = kt_dalloc(n);
    h->dg0 = kt_dalloc(C), h->db0 = kt_dalloc(C);
    h->y = kt_dalloc(n), h->mean = kt_dalloc(N), h->rstd = kt_dalloc(N);
    h->dx = kt_dalloc(n), h->dg = kt_dalloc(C), h->db = kt_dalloc(C);
    /* Rows with offsets, so centring matters. */
    kt_random(h->x, n, -1.0, 1.0, VP_DTYPE_F32, seed);
    uint64_t st = seed + 1;
    for (size_t r = 0; r < N; r++) {
        double off = th_rand_uniform(&st, -2.0, 2.0);
        for (size_t i = 0; i < C; i++) h->x[r * C + i] += off;
    }
    kt_round(VP_DTYPE_F32, h->x, n);
    kt_random(h->gamma, C, 0.5, 1.5, c->wtype, seed + 2);
    kt_random(h->beta, C, -0.5, 0.5, c->wtype, seed + 3);
    kt_random(h->dy, n, -1.0, 1.0, VP_DTYPE_F32, seed + 4);
    kt_random(h->dg0, C, -1.0, 1.0, VP_DTYPE_F32, seed + 5);
    kt_random(h->db0, C, -1.0, 1.0, VP_DTYPE_F32, seed + 6);
    memcpy(h->dg, h->dg0, C * sizeof(double));
    memcpy(h->db, h->db0, C * sizeof(double));
    if (c->rms) {
        ref_rmsnorm_forward(h->y, h->rstd, h->x, h->gamma, (int)N, (int)C, EPS);
    } else {
        ref_layernorm_forward(h->y, h->mean, h->rstd, h->x, h->gamma, c->beta ? h->beta : NULL,
                              (int)N, (int)C, EPS);
    }
    /* The backward is tested on its own: it gets the reference's mean and
     * rstd as fp32, and the reference backward uses those same values. */
    kt_round(VP_DTYPE_F32, h->mean, N);
    kt_round(VP_DTYPE_F32, h->rstd, N);
    if (c->rms)
        ref_rmsnorm_backward(h->dx, c->dgamma ? h->dg : NULL, h->dy, h->x, h->rstd, h->gamma,
                             (int)N, (int)C);
    else
        ref_layernorm_backward(h->dx, c->dgamma ? h->dg : NULL, c->dbeta ? h->db : NULL, h->dy,
                               h->x, h->mean, h->rstd, h->gamma, (int)N, (int)C);
}

static void host_free(struct host *h) {
    double *all[] = {h->x, h->gamma, h->beta, h->dy, h->dg0, h->db0,
                     h->y, h->mean, h->rstd, h->dx, h->dg, h->db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* Device tensors: inputs, outputs (NaN-filled), the saved statistics the
 * backward reads (the reference's), and scratch. */
struct dev {
    struct kt_tensor x, gamma, beta, dy, y, mean, rstd, mean_in, rstd_in, dx, dg, db, scratch;
};

struct args {
    struct dev *d;
    const struct norm_case *c;
};

static vp_status record_norm(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    const struct args *a = arg;
    struct dev *d = a->d;
    const struct norm_case *c = a->c;
    vp_status s;
    if (c->rms) {
        s = kernel_rmsnorm_forward(ctx, rec, &d->y.buf, &d->rstd.buf, &d->x.buf, &d->gamma.buf,
                                   c->N, c->C, EPS, c->wtype, c->variant);
        if (s == VP_OK)
            s = kernel_rmsnorm_backward(ctx, rec, &d->dx.buf, c->dgamma ? &d->dg.buf : NULL,
                                        c->dgamma ? &d->scratch.buf : NULL, &d->dy.buf, &d->x.buf,
                                        &d->rstd_in.buf, &d->gamma.buf, c->N, c->C, c->wtype,
                                        c->variant);
        return s;
    }
    s = kernel_layernorm_forward(ctx, rec, &d->y.buf, &d->mean.buf, &d->rstd.buf, &d->x.buf,
                                 &d->gamma.buf, c->beta ? &d->beta.buf : NULL, c->N, c->C, EPS,
                                 c->wtype, c->variant);
    bool params = c->dgamma || c->dbeta;
    if (s == VP_OK)
        s = kernel_layernorm_backward(ctx, rec, &d->dx.buf, c->dgamma ? &d->dg.buf : NULL,
                                      c->dbeta ? &d->db.buf : NULL,
                                      params ? &d->scratch.buf : NULL, &d->dy.buf, &d->x.buf,
                                      &d->mean_in.buf, &d->rstd_in.buf, &d->gamma.buf, c->N, c->C,
                                      c->wtype, c->variant);
    return s;
}

static bool dev_init(vp_context *ctx, struct dev *d, const struct host *h,
                     const struct norm_case *c) {
    memset(d, 0, sizeof *d);
    const vp_pool A = VP_POOL_ACTIVATIONS, P = VP_POOL_TRAINABLE;
    const enum vp_dtype F = VP_DTYPE_F32;
    size_t N = c->N, C = c->C;
    return kt_upload(ctx, &d->x, A, F, h->x, h->n) &&
           kt_upload(ctx, &d->gamma, VP_POOL_FROZEN, c->wtype, h->gamma, C) &&
           kt_upload(ctx, &d->beta, VP_POOL_FROZEN, c->wtype, h->beta, C) &&
           kt_upload(ctx, &d->dy, A, F, h->dy, h->n) && kt_alloc(ctx, &d->y, A, F, h->n, NAN) &&
           kt_alloc(ctx, &d->mean, A, F, N, NAN) && kt_alloc(ctx, &d->rstd, A, F, N, NAN) &&
           kt_upload(ctx, &d->mean_in, A, F, h->mean, N) &&
           kt_upload(ctx, &d->rstd_in, A, F, h->rstd, N) &&
           kt_alloc(ctx, &d->dx, A, F, h->n, NAN) && kt_upload(ctx, &d->dg, P, F, h->dg0, C) &&
           kt_upload(ctx, &d->db, P, F, h->db0, C) &&
           kt_alloc(ctx, &d->scratch, A, F, kernel_norm_scratch_bytes(c->N, c->C) / 4, NAN);
}

static void dev_free(vp_context *ctx, struct dev *d) {
    struct kt_tensor *all[] = {&d->x,   &d->gamma,   &d->beta,    &d->dy, &d->y,
                               &d->mean, &d->rstd,   &d->mean_in, &d->rstd_in,
                               &d->dx,  &d->dg,      &d->db,      &d->scratch};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->buf.buffer) kt_free(ctx, all[i]);
}

/* Error bounds (u = 2^-24), from the fp32 operations the kernels perform.
 * Sums of L terms err by at most L·u·Σ|terms| (either order: serial or a
 * strided tree). Per row with A = max|x|, x̂ = (x − μ)·rstd:
 *   μ:    δμ ≤ C·u·A (+ u|μ|);
 *   σ²:   the first-order effect of δμ cancels (Σ(x − μ) = 0), so
 *         δσ² ≤ (C + 4)·u·(σ² + eps); rstd adds sqrt and division (Vulkan:
 *         ≤ 2 + 2.5 ulp): δrstd ≤ (C/2 + 10)·u·rstd;
 *   y:    δy ≤ |γ|·rstd·δμ + (C/2 + 13)·u·|x̂γ| + 2u·|y| (two roundings of
 *         the fma, and |β|'s contribution is inside |y| + |x̂γ|).
 * Backward, from exact fp32 mean/rstd, g = dy·γ, G = max|g|,
 * GX = max|g·x̂| over the row:
 *   dx:   rstd·((C + 4)·u·(G + |x̂|·GX) + 4u·|g|) + 4u·|dx|;
 *   dγ:   N + 4 roundings of partial sums ≤ Σ_n|dy·x̂|, plus u·|dγ| for the
 *         accumulation; dβ likewise with Σ_n|dy|.
 * Weights stored as f16/bf16 are exact on the host side too (the
 * reference gets the rounded values), so the storage type adds nothing. */
static void check_results(vp_context *ctx, const struct dev *d, const struct host *h,
                          const struct norm_case *c, const char *tag) {
    size_t N = c->N, C = c->C, n = h->n;
    double *got = kt_dalloc(n), *bound = kt_dalloc(n), *rb = kt_dalloc(N);
    char what[160];
    /* Forward. */
    if (kt_download(ctx, &d->y, got)) {
        for (size_t r = 0; r < N; r++) {
            double A = 0;
            for (size_t i = 0; i < C; i++) A = fmax(A, fabs(h->x[r * C + i]));
            double dmu = c->rms ? 0.0 : (double)C * U * A;
            for (size_t i = 0; i < C; i++) {
                size_t k = r * C + i;
                double xhat = (h->x[k] - (c->rms ? 0.0 : h->mean[r])) * h->rstd[r];
                bound[k] = fabs(h->gamma[i]) * h->rstd[r] * dmu +
                           (C / 2.0 + 13) * U * fabs(xhat * h->gamma[i]) + 2 * U * fabs(h->y[k]) +
                           1e-37;
            }
        }
        snprintf(what, sizeof what, "%s y", tag);
        KT_CHECK_BOUND(got, h->y, bound, n, what);
    }
    if (kt_download(ctx, &d->rstd, got)) {
        for (size_t r = 0; r < N; r++) rb[r] = (C / 2.0 + 10) * U * h->rstd[r];
        snprintf(what, sizeof what, "%s rstd", tag);
        KT_CHECK_BOUND(got, h->rstd, rb, N, what);
    }
    if (!c->rms && kt_download(ctx, &d->mean, got)) {
        for (size_t r = 0; r < N; r++) {
            double A = 0;
            for (size_t i = 0; i < C; i++) A = fmax(A, fabs(h->x[r * C + i]));
            rb[r] = (C + 1.0) * U * A + 1e-37;
        }
        snprintf(what, sizeof what, "%s mean", tag);
        KT_CHECK_BOUND(got, h->mean, rb, N, what);
    }
    /* Backward. */
    if (kt_download(ctx, &d->dx, got)) {
        for (size_t r = 0; r < N; r++) {
            double G = 0, GX = 0, mu = c->rms ? 0.0 : h->mean[r];
            for (size_t i = 0; i < C; i++) {
                double g = h->dy[r * C + i] * h->gamma[i];
                G = fmax(G, fabs(g));
                GX = fmax(GX, fabs(g * (h->x[r * C + i] - mu) * h->rstd[r]));
            }
            for (size_t i = 0; i < C; i++) {
                size_t k = r * C + i;
                double xhat = (h->x[k] - mu) * h->rstd[r], g = h->dy[k] * h->gamma[i];
                bound[k] = h->rstd[r] * ((C + 4.0) * U * (G + fabs(xhat) * GX) + 4 * U * fabs(g)) +
                           4 * U * fabs(h->dx[k]) + 1e-37;
            }
        }
        snprintf(what, sizeof what, "%s dx", tag);
        KT_CHECK_BOUND(got, h->dx, bound, n, what);
    }
    double *pb = kt_dalloc(C), *pg = kt_dalloc(C);
    if (kt_download(ctx, &d->dg, pg)) {
        for (size_t i = 0; i < C; i++) {
            double s = 0;
            for (size_t r = 0; r < N; r++) {
                size_t k = r * C + i;
                s += fabs(h->dy[k] * (h->x[k] - (c->rms ? 0.0 : h->mean[r])) * h->rstd[r]);
            }
            pb[i] = (N + 4.0) * U * s + U * fabs(h->dg[i]) + 1e-37;
        }
        snprintf(what, sizeof what, "%s dgamma", tag);
        if (c->dgamma) KT_CHECK_BOUND(pg, h->dg, pb, C, what);
        else bits_equal(pg, h->dg0, C, "dgamma untouched");
    }
    if (!c->rms && kt_download(ctx, &d->db, pg)) {
        for (size_t i = 0; i < C; i++) {
            double s = 0;
            for (size_t r = 0; r < N; r++) s += fabs(h->dy[r * C + i]);
            pb[i] = (N + 4.0) * U * s + U * fabs(h->db[i]) + 1e-37;
        }
        snprintf(what, sizeof what, "%s dbeta", tag);
        if (c->dbeta) KT_CHECK_BOUND(pg, h->db, pb, C, what);
        else bits_equal(pg, h->db0, C, "dbeta untouched");
    }
    /* Inputs and unused tensors keep their guards too. */
    CHECK(kt_download(ctx, &d->gamma, pg));
    double *scratch = kt_dalloc(d->scratch.n);
    CHECK(kt_download(ctx, &d->scratch, scratch));
    free(scratch);
    free(got), free(bound), free(rb), free(pb), free(pg);
}

static void run_case(const struct norm_case *c, uint64_t seed) {
    vp_context *ctx = kt_context(c->binding_range);
    if (!ctx) return;
    struct host h;
    host_init(&h, c, seed);
    struct dev d;
    struct vk_recorder *rec = NULL;
    char tag[128];
    snprintf(tag, sizeof tag, "%s N=%u C=%u w=%s %s%s", c->rms ? "rmsnorm" : "layernorm", c->N,
             c->C, vp_dtype_name(c->wtype),
             kernel_rows_variant_name(kernel_rows_choose(ctx, c->variant)),
             !c->rms && !c->beta ? " no-bias" : "");
    if (dev_init(ctx, &d, &h, c) && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct args a = {&d, c};
        if (kt_run(ctx, rec, record_norm, &a)) {
            if (c->binding_range) th_diag("%s: %u dispatches", tag, vk_recorder_dispatch_count(rec));
            check_results(ctx, &d, &h, c, tag);
        }
    }
    vk_recorder_destroy(rec);
    dev_free(ctx, &d);
    host_free(&h);
}

static const enum kernel_rows_variant VARIANTS[] = {KERNEL_ROWS_WORKGROUP, KERNEL_ROWS_SERIAL};

/* Every shape with both variants, LayerNorm with a bias and RMSNorm. */
static void shapes(enum vp_dtype wtype, uint64_t seed) {
    static const uint32_t S[][2] = {{1, 1}, {1, 7}, {5, 32}, {67, 100}, {130, 257}, {3, 768}};
    for (size_t v = 0; v < 2; v++)
        for (size_t s = 0; s < sizeof S / sizeof S[0]; s++)
            for (int rms = 0; rms < 2; rms++) {
                struct norm_case c = {S[s][0], S[s][1], rms, !rms, true, !rms, wtype, VARIANTS[v], 0};
                run_case(&c, seed + 10 * s + rms);
            }
}

static void weights_f32(void) { shapes(VP_DTYPE_F32, 100); }
static void weights_f16(void) { shapes(VP_DTYPE_F16, 200); }
static void weights_bf16(void) { shapes(VP_DTYPE_BF16, 300); }

/* No bias; only some parameter gradients (the others stay untouched). */
static void optional_tensors(void) {
    for (size_t v = 0; v < 2; v++) {
        struct norm_case c1 = {9, 33, false, false, true, false, VP_DTYPE_F32, VARIANTS[v], 0};
        run_case(&c1, 400);
        struct norm_case c2 = {9, 33, false, true, false, true, VP_DTYPE_F16, VARIANTS[v], 0};
        run_case(&c2, 401);
        struct norm_case c3 = {9, 33, false, true, false, false, VP_DTYPE_BF16, VARIANTS[v], 0};
        run_case(&c3, 402);
        struct norm_case c4 = {9, 33, true, false, false, false, VP_DTYPE_F32, VARIANTS[v], 0};
        run_case(&c4, 403);
    }
}

/* A 16 KiB binding range splits 300 rows of 100 values into several
 * dispatches (and the parameter pass into blocks of 64 rows). */
static void rows_split_across_binding_ranges(void) {
    for (size_t v = 0; v < 2; v++)
        for (int rms = 0; rms < 2; rms++) {
            struct norm_case c = {300, 100, rms, !rms, true, !rms, VP_DTYPE_F16, VARIANTS[v],
                                  64 << 10};
            run_case(&c, 500 + rms);
        }
}

/* Two runs of one recording on the same inputs give the same bits. */
static void deterministic(void) {
    struct norm_case c = {200, 300, false, true, true, true, VP_DTYPE_F32, KERNEL_ROWS_AUTO, 0};
    vp_context *ctx = kt_context(0);
    if (!ctx) return;
    struct host h;
    host_init(&h, &c, 600);
    struct dev d;
    struct vk_recorder *rec = NULL;
    double *first[4] = {0}, *again[4] = {0};
    for (int variant = 0; variant < 2; variant++) {
        c.variant = VARIANTS[variant];
        if (!dev_init(ctx, &d, &h, &c) || !CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) break;
        struct args a = {&d, &c};
        struct kt_tensor *outs[4] = {&d.y, &d.dx, &d.dg, &d.db};
        for (int run = 0; run < 2; run++) {
            /* dγ, dβ accumulate: both runs start them from zero. */
            CHECK(vk_buffer_write(ctx, &d.dg.buf, 0, (float[300]){0}, c.C * 4) == VP_OK);
            CHECK(vk_buffer_write(ctx, &d.db.buf, 0, (float[300]){0}, c.C * 4) == VP_OK);
            if (!kt_run(ctx, rec, record_norm, &a)) break;
            for (int k = 0; k < 4; k++) {
                double **dst = run ? &again[k] : &first[k];
                *dst = kt_dalloc(outs[k]->n);
                CHECK(kt_download(ctx, outs[k], *dst));
            }
        }
        static const char *names[4] = {"y", "dx", "dgamma", "dbeta"};
        for (int k = 0; k < 4; k++) {
            if (first[k] && again[k]) bits_equal(again[k], first[k], outs[k]->n, names[k]);
            free(first[k]), free(again[k]);
            first[k] = again[k] = NULL;
        }
        vk_recorder_destroy(rec);
        rec = NULL;
        dev_free(ctx, &d);
    }
    host_free(&h);
}

int main(int argc, char **argv) {
    static const struct th_case cases[] = {
        TH_CASE(weights_f32),
        TH_CASE(weights_f16),
        TH_CASE(weights_bf16),
        TH_CASE(optional_tensors),
        TH_CASE(rows_split_across_binding_ranges),
        TH_CASE(deterministic)
    };
    int status = vt_main(cases, sizeof cases / sizeof cases[0], argc, argv);
    kt_contexts_destroy();
    return status;
}
