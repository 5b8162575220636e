/* Tests of the reference ops: every backward against central finite
 * differences, and forwards against values worked out by hand or taken from
 * published known answers (Philox) and from PyTorch's definitions.
 *
 * Gradient checks use the scalar loss L = Σ r ⊙ output for a fixed random r,
 * so dL/doutput = r is what each backward receives. */
#include "harness.h"
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* Finite-difference step, relative to max(1, |x|). Central differences have
 * truncation error ~h²·f'''/6 ≈ 1e-10 here and rounding error
 * ~ε·|L|/h ≈ 1e-16·10/1e-5 = 1e-10; 1e-5 balances the two. */
#define FD_STEP 1e-5
/* Gradient tolerance: |fd − analytic| ≤ FD_ATOL + FD_RTOL·|fd|. Both error
 * sources above are ~1e-10, so rtol 1e-6 and atol 1e-8 leave a margin of
 * 100-10000x while still catching any wrong term (errors ≥ 1e-3 relative). */
#define FD_RTOL 1e-6
#define FD_ATOL 1e-8
/* Forward values computed by hand in double: a few ulps of rounding apart. */
#define EXACT_TOL 1e-14

/* Every buffer a case allocates, freed together at its end. */
struct pool {
    void *ptrs[64];
    int count;
};

static void *pool_alloc(struct pool *p, size_t bytes) {
    if (p->count == (int)(sizeof p->ptrs / sizeof p->ptrs[0])) abort();
    void *ptr = calloc(bytes ? bytes : 1, 1);
    if (!ptr) abort();
    p->ptrs[p->count++] = ptr;
    return ptr;
}

static void pool_free(struct pool *p) {
    for (int i = 0; i < p->count; i++) free(p->ptrs[i]);
    p->count = 0;
}

static double *zeros(struct pool *p, size_t n) { return pool_alloc(p, n * sizeof(double)); }

static double *randoms(struct pool *p, size_t n, uint64_t *rng, double lo, double hi) {
    double *x = zeros(p, n);
    for (size_t i = 0; i < n; i++) x[i] = th_rand_uniform(rng, lo, hi);
    return x;
}

static double dot(const double *a, const double *b, size_t n) {
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

static double max_abs_diff(const double *a, const double *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= worst)) worst = d; /* NaN counts as worst */
    }
    return worst;
}

static bool close_to(double got, double want, double tol) { return fabs(got - want) <= tol; }

#define CHECK_NEAR(got, want, tol)                                                     \
    CHECKF(close_to((got), (want), (tol)), "%s = %.17g, want %.17g (tolerance %.3g)", \
           #got, (double)(got), (double)(want), (double)(tol))

#define CHECK_ARRAYS_NEAR(got, want, n, tol)                                                 \
    do {                                                                                     \
        double diff_ = max_abs_diff((got), (want), (n));                                     \
        CHECKF(diff_ <= (tol), "%s vs %s: max |difference| %.3g > %.3g", #got, #want, diff_, \
               (double)(tol));                                                               \
    } while (0)

/* Compares analytic[i] with the central difference of loss() w.r.t. param[i]
 * for every i, and reports the worst element. */
static void check_gradient_at(const char *what, double *param, const double *analytic, size_t n,
                              double (*loss)(void *ctx), void *ctx, const char *file,
                              int line) {
    double worst = 0.0, worst_fd = 0.0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        const double saved = param[i];
        const double h = FD_STEP * fmax(1.0, fabs(saved));
        const double plus = saved + h, minus = saved - h;
        param[i] = plus;
        const double loss_plus = loss(ctx);
        param[i] = minus;
        const double loss_minus = loss(ctx);
        param[i] = saved;
        /* Divide by the step actually taken, not 2h, which may differ by
         * rounding of saved ± h. */
        const double fd = (loss_plus - loss_minus) / (plus - minus);
        const double err = fabs(fd - analytic[i]) / (FD_ATOL + FD_RTOL * fabs(fd));
        if (!(err <= worst)) {
            worst = err;
            worst_i = i;
            worst_fd = fd;
        }
    }
    th_check(worst <= 1.0, file, line,
             "d%s[%zu]: analytic %.12g, finite difference %.12g (error %.3g x tolerance)", what,
             worst_i, n ? analytic[worst_i] : 0.0, worst_fd, worst);
}

#define CHECK_GRADIENT(what, param, analytic, n, loss, ctx) \
    check_gradient_at((what), (param), (analytic), (n), (loss), (ctx), __FILE__, __LINE__)

/* ------------------------------------------------------------------------
 * Dropout RNG
 * ------------------------------------------------------------------------ */

static void philox_known_answers(void) {
    /* Random123's kat_vectors for philox4x32_10. */
    static const struct {
        uint32_t counter[4], key[2], expect[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        ref_philox4x32_10(out, kat[i].counter, kat[i].key);
        for (int w = 0; w < 4; w++)
            CHECKF(out[w] == kat[i].expect[w], "vector %zu word %d: 0x%08x, want 0x%08x", i, w,
                   out[w], kat[i].expect[w]);
    }
}

static void mulhilo32_matches_64bit_product(void) {
    uint64_t rng = 1;
    const uint32_t edges[] = {0, 1, 0xffff, 0x10000, 0xffffffff, 0xD2511F53, 0xCD9E8D57};
    for (int i = 0; i < 10000; i++) {
        uint32_t a = i < 49 ? edges[i % 7] : (uint32_t)th_rand_u64(&rng);
        uint32_t b = i < 49 ? edges[i / 7] : (uint32_t)th_rand_u64(&rng);
        uint32_t hi, lo;
        ref_mulhilo32(&hi, &lo, a, b);
        uint64_t want = (uint64_t)a * b;
        if (!CHECKF(hi == (uint32_t)(want >> 32) && lo == (uint32_t)want,
                    "0x%08x * 0x%08x", a, b))
            return;
    }
}

static void dropout_mask_rules(void) {
    const struct ref_dropout_key key = {.seed = 0x0123456789abcdefull, .step = 7, .stream = 3};
    /* The integer threshold decides exactly like u ≥ p, including p values
     * that are not multiples of 2^-24. */
    const double ps[] = {0.0, 0.1, 0.25, 0.5, 1.0 / 3.0, 0.9, 1.0};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        for (uint64_t i = 0; i < 2000; i++) {
            double u = ref_dropout_uniform(&key, i);
            bool kept = ref_dropout_multiplier(&key, ps[k], i) != 0.0;
            if (!CHECKF(u >= 0.0 && u < 1.0 && kept == (u >= ps[k]), "p %g index %llu u %.9g",
                        ps[k], (unsigned long long)i, u))
                return;
        }
    }
    CHECK(ref_dropout_threshold(0.0) == 0);
    CHECK(ref_dropout_threshold(1.0) == (1u << 24));
    CHECK(ref_dropout_threshold(0.5) == (1u << 23));
    CHECK(ref_dropout_threshold(0.1) == 1677722); /* ceil(0.1·2^24 = 1677721.6) */
    CHECK(ref_dropout_multiplier(&key, 0.0, 5) == 1.0);
    CHECK(ref_dropout_multiplier(&key, 1.0, 5) == 0.0);

    /* u uses word 0 of Philox(counter = (index lo, index hi, step, stream),
     * key = (seed lo, seed hi)). */
    const uint64_t index = 0x100000002ull;
    const uint32_t counter[4] = {2, 1, 7, 3}, k2[2] = {0x89abcdef, 0x01234567};
    uint32_t out[4];
    ref_philox4x32_10(out, counter, k2);
    CHECK(ref_dropout_uniform(&key, index) == (out[0] >> 8) * 0x1.0p-24);

    /* Step and stream select different masks. */
    struct ref_dropout_key other_step = key, other_stream = key;
    other_step.step++;
    other_stream.stream++;
    int same_step = 0, same_stream = 0;
    for (uint64_t i = 0; i < 256; i++) {
        same_step += ref_dropout_uniform(&key, i) == ref_dropout_uniform(&other_step, i);
        same_stream += ref_dropout_uniform(&key, i) == ref_dropout_uniform(&other_stream, i);
    }
    CHECKF(same_step < 4 && same_stream < 4, "%d, %d equal draws of 256", same_step,
           same_stream);
}

static void dropout_keep_fraction(void) {
    const struct ref_dropout_key key = {.seed = 42, .step = 1, .stream = 0};
    const size_t n = 1u << 20;
    const double ps[] = {0.1, 0.5};
    for (size_t k = 0; k < 2; k++) {
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) kept += ref_dropout_multiplier(&key, ps[k], i) != 0.0;
        /* Binomial(n, 1−p): 6 standard deviations is a false alarm rate
         * of ~1e-9 for a correct generator. */
        double mean = n * (1.0 - ps[k]), sd = sqrt(n * ps[k] * (1.0 - ps[k]));
        CHECKF(fabs((double)kept - mean) <= 6.0 * sd, "p %g: kept %zu of %zu, expected %.0f±%.0f",
               ps[k], kept, n, mean, sd);
    }
}

struct dropout_ctx {
    double *x, *y, *r;
    struct ref_dropout_key key;
    double p;
    size_t n;
};

static double dropout_loss(void *c) {
    struct dropout_ctx *ctx = c;
    ref_dropout_forward(ctx->y, ctx->x, &ctx->key, ctx->p, ctx->n);
    return dot(ctx->r, ctx->y, ctx->n);
}

static void dropout_forward_and_backward(void) {
    struct pool pool = {0};
    uint64_t rng = 11;
    const size_t n = 257;
    struct dropout_ctx ctx = {
        .x = randoms(&pool, n, &rng, -1, 1),
        .y = zeros(&pool, n),
        .r = randoms(&pool, n, &rng, -1, 1),
        .key = {.seed = 9, .step = 2, .stream = 5},
        .p = 0.3,
        .n = n,
    };
    double *dx = zeros(&pool, n);
    ref_dropout_forward(ctx.y, ctx.x, &ctx.key, ctx.p, n);
    ref_dropout_backward(dx, ctx.r, &ctx.key, ctx.p, n);
    for (size_t i = 0; i < n; i++) {
        /* Kept values are scaled by exactly 1/(1−p); the backward uses the
         * same mask. */
        bool kept = ctx.y[i] != 0.0;
        CHECK_NEAR(ctx.y[i], kept ? ctx.x[i] / 0.7 : 0.0, EXACT_TOL);
        CHECK_NEAR(dx[i], kept ? ctx.r[i] / 0.7 : 0.0, EXACT_TOL);
    }
    CHECK_GRADIENT("x", ctx.x, dx, n, dropout_loss, &ctx);
    pool_free(&pool);
}

/* ------------------------------------------------------------------------
 * Matmul
 * ------------------------------------------------------------------------ */

static void matmul_forward_by_hand(void) {
    /* X (2,3), W (2,3) as [out, in]: Y = X·Wᵀ + b. */
    const double x[6] = {1, 2, 3, 4, 5, 6};
    const double w[6] = {1, 0, -1, 2, 1, 0};
    const double b[2] = {10, 20};
    double y[4];
    ref_matmul_forward(y, x, w, b, 2, 3, 2);
    const double want[4] = {1 - 3 + 10, 2 + 2 + 20, 4 - 6 + 10, 8 + 5 + 20};
    CHECK_ARRAYS_NEAR(y, want, 4, 0.0); /* small integers: exact */
    ref_matmul_forward(y, x, w, NULL, 2, 3, 2);
    const double want_nobias[4] = {-2, 4, -2, 13};
    CHECK_ARRAYS_NEAR(y, want_nobias, 4, 0.0);
}

struct matmul_ctx {
    double *y, *x, *w, *b, *r;
    int M, K, N;
};

static double matmul_loss(void *c) {
    struct matmul_ctx *ctx = c;
    ref_matmul_forward(ctx->y, ctx->x, ctx->w, ctx->b, ctx->M, ctx->K, ctx->N);
    return dot(ctx->r, ctx->y, (size_t)ctx->M * ctx->N);
}

static void matmul_backward_fd(void) {
    struct pool pool = {0};
    uint64_t rng = 21;
    const int M = 5, K = 4, N = 3;
    struct matmul_ctx ctx = {
        .y = zeros(&pool, M * N),
        .x = randoms(&pool, M * K, &rng, -1, 1),
        .w = randoms(&pool, N * K, &rng, -1, 1),
        .b = randoms(&pool, N, &rng, -1, 1),
        .r = randoms(&pool, M * N, &rng, -1, 1),
        .M = M, .K = K, .N = N,
    };
    double *dx = randoms(&pool, M * K, &rng, -1, 1); /* overwritten: garbage is fine */
    double *dw = zeros(&pool, N * K), *db = zeros(&pool, N);
    ref_matmul_backward(dx, dw, db, ctx.r, ctx.x, ctx.w, M, K, N);
    CHECK_GRADIENT("x", ctx.x, dx, M * K, matmul_loss, &ctx);
    CHECK_GRADIENT("w", ctx.w, dw, N * K, matmul_loss, &ctx);
    CHECK_GRADIENT("b", ctx.b, db, N, matmul_loss, &ctx);

    /* Parameter gradients accumulate: a second call adds the same again. */
    double *dw2 = zeros(&pool, N * K), *db2 = zeros(&pool, N);
    memcpy(dw2, dw, sizeof(double) * N * K);
    memcpy(db2, db, sizeof(double) * N);
    ref_matmul_backward(NULL, dw2, db2, ctx.r, ctx.x, ctx.w, M, K, N);
    for (int i = 0; i < N * K; i++) CHECK_NEAR(dw2[i], 2 * dw[i], EXACT_TOL);
    for (int i = 0; i < N; i++) CHECK_NEAR(db2[i], 2 * db[i], EXACT_TOL);
    pool_free(&pool);
}

/* op(X)[row, col] for X stored (rows, cols), or (cols, rows) when trans. */
static double op_elem(const double *x, bool trans, int rows, int cols, int row, int col) {
    return trans ? x[col * rows + row] : x[row * cols + col];
}

static void matmul_batched_matches_definition(void) {
    struct pool pool = {0};
    uint64_t rng = 31;
    const int batch = 3, M = 4, N = 5, K = 3;
    const size_t sa = M * K + 2, sb = K * N + 1, sc = M * N + 3; /* padded strides */
    double *a = randoms(&pool, batch * sa, &rng, -1, 1);
    double *b = randoms(&pool, batch * sb, &rng, -1, 1);
    double *c = zeros(&pool, batch * sc);
    for (int flags = 0; flags < 4; flags++) {
        bool ta = flags & 1, tb = flags & 2;
        for (size_t i = 0; i < batch * sc; i++) c[i] = NAN; /* beta = 0 must not read C */
        ref_matmul_batched(c, a, b, batch, M, N, K, ta, tb, sa, sb, sc, 2.0, 0.0);
        double worst = 0.0;
        for (int i = 0; i < batch; i++)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double want = 0.0;
                    for (int k = 0; k < K; k++)
                        want += op_elem(a + i * sa, ta, M, K, m, k) *
                                op_elem(b + i * sb, tb, K, N, k, n);
                    worst = fmax(worst, fabs(c[i * sc + m * N + n] - 2.0 * want));
                }
        CHECKF(worst <= EXACT_TOL, "trans_a %d trans_b %d: max error %.3g", ta, tb, worst);
    }
    /* stride 0 broadcasts B, stride_c 0 with beta 1 sums the batch. */
    double *sum = zeros(&pool, M * N), *one = zeros(&pool, M * N);
    ref_matmul_batched(sum, a, b, batch, M, N, K, false, false, sa, 0, 0, 1.0, 1.0);
    double *want = zeros(&pool, M * N);
    for (int i = 0; i < batch; i++) {
        ref_matmul_batched(one, a + i * sa, b, 1, M, N, K, false, false, 0, 0, 0, 1.0, 0.0);
        for (int j = 0; j < M * N; j++) want[j] += one[j];
    }
    CHECK_ARRAYS_NEAR(sum, want, M * N, EXACT_TOL);
    pool_free(&pool);
}

struct batched_ctx {
    double *c, *a, *b, *r;
    int batch, M, N, K;
    bool ta, tb;
    double alpha;
};

static double batched_loss(void *p) {
    struct batched_ctx *x = p;
    size_t sa = (size_t)x->M * x->K, sb = (size_t)x->K * x->N, sc = (size_t)x->M * x->N;
    ref_matmul_batched(x->c, x->a, x->b, x->batch, x->M, x->N, x->K, x->ta, x->tb, sa, sb, sc,
                       x->alpha, 0.0);
    return dot(x->r, x->c, x->batch * sc);
}

/* The backward of C = α·op(A)·op(B), written with ref_matmul_batched itself:
 *   d op(A) = α·dC·op(B)ᵀ,  d op(B) = α·op(A)ᵀ·dC,
 * transposed back when the operand is stored transposed. */
static void batched_backward(double *da, double *db, const struct batched_ctx *x) {
    const int M = x->M, N = x->N, K = x->K;
    const size_t sa = (size_t)M * K, sb = (size_t)K * N, sc = (size_t)M * N;
    if (!x->ta) /* dA (M,K) = dC (M,N) · op(B)ᵀ (N,K) */
        ref_matmul_batched(da, x->r, x->b, x->batch, M, K, N, false, !x->tb, sc, sb, sa,
                           x->alpha, 0.0);
    else /* dA (K,M) = op(B) (K,N) · dCᵀ (N,M) */
        ref_matmul_batched(da, x->b, x->r, x->batch, K, M, N, x->tb, true, sb, sc, sa,
                           x->alpha, 0.0);
    if (!x->tb) /* dB (K,N) = op(A)ᵀ (K,M) · dC (M,N) */
        ref_matmul_batched(db, x->a, x->r, x->batch, K, N, M, !x->ta, false, sa, sc, sb,
                           x->alpha, 0.0);
    else /* dB (N,K) = dCᵀ (N,M) · op(A) (M,K) */
        ref_matmul_batched(db, x->r, x->a, x->batch, N, K, M, true, x->ta, sc, sa, sb,
                           x->alpha, 0.0);
}

static void matmul_batched_backward_fd(void) {
    struct pool pool = {0};
    uint64_t rng = 32;
    const int batch = 2, M = 3, N = 4, K = 5;
    for (int flags = 0; flags < 4; flags++) {
        struct batched_ctx ctx = {
            .c = zeros(&pool, batch * M * N),
            .a = randoms(&pool, batch * M * K, &rng, -1, 1),
            .b = randoms(&pool, batch * K * N, &rng, -1, 1),
            .r = randoms(&pool, batch * M * N, &rng, -1, 1),
            .batch = batch, .M = M, .N = N, .K = K,
            .ta = flags & 1, .tb = flags & 2,
            .alpha = 0.75,
        };
        double *da = zeros(&pool, batch * M * K), *db = zeros(&pool, batch * K * N);
        batched_backward(da, db, &ctx);
        CHECK_GRADIENT(ctx.ta ? "A (transposed)" : "A", ctx.a, da, batch * M * K, batched_loss,
                       &ctx);
        CHECK_GRADIENT(ctx.tb ? "B (transposed)" : "B", ctx.b, db, batch * K * N, batched_loss,
                       &ctx);
    }
    pool_free(&pool);
}

/* ------------------------------------------------------------------------
 * Normalisation
 * ------------------------------------------------------------------------ */

static void layernorm_forward_by_hand(void) {
    /* x = [1,2,3,4]: μ = 2.5, σ² = 1.25 (biased), so x̂ = (x−2.5)/√1.25. */
    const double x[4] = {1, 2, 3, 4}, gamma[4] = {1, 2, 1, 1}, beta[4] = {0, 0, 0, 1};
    double y[4], mean, rstd;
    ref_layernorm_forward(y, &mean, &rstd, x, gamma, beta, 1, 4, 0.0);
    const double s = 1.0 / sqrt(1.25);
    const double want[4] = {-1.5 * s, 2 * -0.5 * s, 0.5 * s, 1.5 * s + 1};
    CHECK_ARRAYS_NEAR(y, want, 4, EXACT_TOL);
    CHECK_NEAR(mean, 2.5, 0.0);
    CHECK_NEAR(rstd, s, EXACT_TOL);
    /* eps enters under the square root: var 1.25 + eps 0.75 = 2. */
    ref_layernorm_forward(y, NULL, &rstd, x, gamma, NULL, 1, 4, 0.75);
    CHECK_NEAR(rstd, 1.0 / sqrt(2.0), EXACT_TOL);
    CHECK_NEAR(y[3], 1.5 / sqrt(2.0), EXACT_TOL);
}

struct layernorm_ctx {
    double *y, *x, *gamma, *beta, *r;
    int N, C;
    double eps;
};

static double layernorm_loss(void *c) {
    struct layernorm_ctx *ctx = c;
    ref_layernorm_forward(ctx->y, NULL, NULL, ctx->x, ctx->gamma, ctx->beta, ctx->N, ctx->C,
                          ctx->eps);
    return dot(ctx->r, ctx->y, (size_t)ctx->N * ctx->C);
}

static void layernorm_backward_fd(void) {
    struct pool pool = {0};
    uint64_t rng = 41;
    const int N = 4, C = 7;
    struct layernorm_ctx ctx = {
        .y = zeros(&pool, N * C),
        .x = randoms(&pool, N * C, &rng, -2, 2),
        .gamma = randoms(&pool, C, &rng, 0.5, 1.5),
        .beta = randoms(&pool, C, &rng, -1, 1),
        .r = randoms(&pool, N * C, &rng, -1, 1),
        .N = N, .C = C, .eps = 1e-5,
    };
    double *mean = zeros(&pool, N), *rstd = zeros(&pool, N);
    ref_layernorm_forward(ctx.y, mean, rstd, ctx.x, ctx.gamma, ctx.beta, N, C, ctx.eps);
    double *dx = zeros(&pool, N * C), *dgamma = zeros(&pool, C), *dbeta = zeros(&pool, C);
    ref_layernorm_backward(dx, dgamma, dbeta, ctx.r, ctx.x, mean, rstd, ctx.gamma, N, C);
    CHECK_GRADIENT("x", ctx.x, dx, N * C, layernorm_loss, &ctx);
    CHECK_GRADIENT("gamma", ctx.gamma, dgamma, C, layernorm_loss, &ctx);
    CHECK_GRADIENT("beta", ctx.beta, dbeta, C, layernorm_loss, &ctx);
    pool_free(&pool);
}

static void rmsnorm_forward_by_hand(void) {
    /* x = [3,4]: mean(x²) = 12.5, so y = x/√12.5 ⊙ w. */
    const double x[2] = {3, 4}, w[2] = {1, 0.5};
    double y[2], rstd;
    ref_rmsnorm_forward(y, &rstd, x, w, 1, 2, 0.0);
    CHECK_NEAR(rstd, 1.0 / sqrt(12.5), EXACT_TOL);
    CHECK_NEAR(y[0], 0.84852813742385702, EXACT_TOL);
    CHECK_NEAR(y[1], 0.5 * 1.1313708498984761, EXACT_TOL);
}

struct rmsnorm_ctx {
    double *y, *x, *w, *r;
    int N, C;
    double eps;
};

static double rmsnorm_loss(void *c) {
    struct rmsnorm_ctx *ctx = c;
    ref_rmsnorm_forward(ctx->y, NULL, ctx->x, ctx->w, ctx->N, ctx->C, ctx->eps);
    return dot(ctx->r, ctx->y, (size_t)ctx->N * ctx->C);
}

static void rmsnorm_backward_fd(void) {
    struct pool pool = {0};
    uint64_t rng = 42;
    const int N = 3, C = 8;
    struct rmsnorm_ctx ctx = {
        .y = zeros(&pool, N * C),
        .x = randoms(&pool, N * C, &rng, -2, 2),
        .w = randoms(&pool, C, &rng, 0.5, 1.5),
        .r = randoms(&pool, N * C, &rng, -1, 1),
        .N = N, .C = C, .eps = 1e-6,
    };
    double *rstd = zeros(&pool, N), *dx = zeros(&pool, N * C), *dw = zeros(&pool, C);
    ref_rmsnorm_forward(ctx.y, rstd, ctx.x, ctx.w, N, C, ctx.eps);
    ref_rmsnorm_backward(dx, dw, ctx.r, ctx.x, rstd, ctx.w, N, C);
    CHECK_GRADIENT("x", ctx.x, dx, N * C, rmsnorm_loss, &ctx);
    CHECK_GRADIENT("w", ctx.w, dw, C, rmsnorm_loss, &ctx);
    pool_free(&pool);
}

/* ------------------------------------------------------------------------
 * Softmax
 * ------------------------------------------------------------------------ */

static void softmax_forward_cases(void) {
    /* Equal logits: uniform, even when huge (the max shift avoids overflow). */
    const double equal[4] = {1000, 1000, 1000, 1000};
    double y[12];
    ref_softmax_forward(y, equal, NULL, 1, 4);
    for (int c = 0; c < 4; c++) CHECK_NEAR(y[c], 0.25, EXACT_TOL);

    /* softmax([0, log 3]) = [1/4, 3/4]. */
    const double two[2] = {0, log(3.0)};
    ref_softmax_forward(y, two, NULL, 1, 2);
    CHECK_NEAR(y[0], 0.25, EXACT_TOL);
    CHECK_NEAR(y[1], 0.75, EXACT_TOL);

    /* 2 groups of T = 3 causal rows over C = 4 columns, offset 1 (C − T),
     * and a keep row per group; group 1 masks everything. */
    const double x[24] = {0};
    const uint8_t keep[8] = {1, 0, 1, 1, 0, 0, 0, 0};
    const struct ref_softmax_mask mask = {.keep = keep, .keep_rows = 3, .causal_T = 3,
                                          .causal_offset = 1};
    double p[24];
    ref_softmax_forward(p, x, &mask, 6, 4);
    const double want[24] = {
        1, 0, 0, 0,               /* t=0 sees c ≤ 1, c=1 padded */
        0.5, 0, 0.5, 0,           /* t=1 sees c ≤ 2 */
        1. / 3, 0, 1. / 3, 1. / 3, /* t=2 sees all */
        0, 0, 0, 0,               /* fully masked rows: zeros */
        0, 0, 0, 0,
        0, 0, 0, 0,
    };
    CHECK_ARRAYS_NEAR(p, want, 24, EXACT_TOL);
    /* Masked entries are exactly zero, not tiny. */
    CHECK(p[1] == 0.0 && p[3] == 0.0 && p[12] == 0.0);
}

struct softmax_ctx {
    double *y, *x, *r;
    const struct ref_softmax_mask *mask;
    int R, C;
};

static double softmax_loss(void *c) {
    struct softmax_ctx *ctx = c;
    ref_softmax_forward(ctx->y, ctx->x, ctx->mask, ctx->R, ctx->C);
    return dot(ctx->r, ctx->y, (size_t)ctx->R * ctx->C);
}

static void softmax_backward_fd(void) {
    struct pool pool = {0};
    uint64_t rng = 51;
    const int R = 8, C = 5; /* 2 groups of 4 causal rows */
    const uint8_t keep[10] = {1, 1, 0, 1, 1, 0, 0, 0, 0, 0}; /* group 1 fully padded */
    const struct ref_softmax_mask mask = {.keep = keep, .keep_rows = 4, .causal_T = 4,
                                          .causal_offset = 1};
    const struct ref_softmax_mask *masks[2] = {NULL, &mask};
    for (int m = 0; m < 2; m++) {
        struct softmax_ctx ctx = {
            .y = zeros(&pool, R * C),
            .x = randoms(&pool, R * C, &rng, -3, 3),
            .r = randoms(&pool, R * C, &rng, -1, 1),
            .mask = masks[m],
            .R = R, .C = C,
        };
        double *dx = zeros(&pool, R * C);
        ref_softmax_forward(ctx.y, ctx.x, ctx.mask, R, C);
        ref_softmax_backward(dx, ctx.r, ctx.y, R, C);
        CHECK_GRADIENT(m ? "x (masked)" : "x", ctx.x, dx, R * C, softmax_loss, &ctx);
    }
    pool_free(&pool);
}

/* ------------------------------------------------------------------------
 * Attention
 * ------------------------------------------------------------------------ */

struct attention_data {
    struct ref_attention_config cfg;
    double *q, *k, *v, *pk, *pv, *o, *probs, *r;
    uint8_t *keep;
};

static struct attention_data attention_data(struct pool *pool, uint64_t *rng,
                                            struct ref_attention_config cfg, bool pad) {
    const int B = cfg.B, H = cfg.H, T = cfg.T, S = cfg.S, L = cfg.L, D = cfg.D;
    struct attention_data a = {
        .cfg = cfg,
        .q = randoms(pool, B * H * T * D, rng, -1, 1),
        .k = randoms(pool, B * H * S * D, rng, -1, 1),
        .v = randoms(pool, B * H * S * D, rng, -1, 1),
        .pk = L ? randoms(pool, H * L * D, rng, -1, 1) : NULL,
        .pv = L ? randoms(pool, H * L * D, rng, -1, 1) : NULL,
        .o = zeros(pool, B * H * T * D),
        .probs = zeros(pool, B * H * T * (L + S)),
        .r = randoms(pool, B * H * T * D, rng, -1, 1),
        .keep = NULL,
    };
    if (pad) {
        /* Sequence b has its last b keys padded (right padding). */
        a.keep = pool_alloc(pool, (size_t)B * S);
        for (int b = 0; b < B; b++)
            for (int s = 0; s < S; s++) a.keep[b * S + s] = s < S - b;
    }
    return a;
}

static void attention_run(struct attention_data *a) {
    ref_attention_forward(a->o, a->probs, a->q, a->k, a->v, a->pk, a->pv, a->keep, &a->cfg);
}

/* The same attention assembled from the other references: concatenate the
 * prefix before the keys, scores with a batched matmul, masked softmax, and
 * a second batched matmul. */
static void attention_composed(double *o, const struct attention_data *a, struct pool *pool) {
    const struct ref_attention_config *c = &a->cfg;
    const int B = c->B, H = c->H, T = c->T, S = c->S, L = c->L, D = c->D, J = L + S;
    double *kall = zeros(pool, B * H * J * D), *vall = zeros(pool, B * H * J * D);
    uint8_t *keep = pool_alloc(pool, (size_t)B * J);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            double *kd = kall + (b * H + h) * J * D, *vd = vall + (b * H + h) * J * D;
            memcpy(kd, a->pk + h * L * D, sizeof(double) * L * D);
            memcpy(vd, a->pv + h * L * D, sizeof(double) * L * D);
            memcpy(kd + L * D, a->k + (b * H + h) * S * D, sizeof(double) * S * D);
            memcpy(vd + L * D, a->v + (b * H + h) * S * D, sizeof(double) * S * D);
        }
        for (int j = 0; j < J; j++) keep[b * J + j] = j < L || !a->keep || a->keep[b * S + j - L];
    }
    double *scores = zeros(pool, B * H * T * J), *p = zeros(pool, B * H * T * J);
    ref_matmul_batched(scores, a->q, kall, B * H, T, J, D, false, true, T * D, J * D, T * J,
                       1.0 / sqrt(D), 0.0);
    /* Causal offset J − T: key column L + s is visible iff s ≤ t + S − T. */
    const struct ref_softmax_mask mask = {.keep = keep, .keep_rows = H * T,
                                          .causal_T = c->causal ? T : 0,
                                          .causal_offset = J - T};
    ref_softmax_forward(p, scores, &mask, B * H * T, J);
    ref_matmul_batched(o, p, vall, B * H, T, D, J, false, false, T * J, J * D, T * D, 1.0, 0.0);
}

static void attention_matches_composition(void) {
    struct pool pool = {0};
    uint64_t rng = 61;
    const struct ref_attention_config cfg = {.B = 3, .H = 2, .T = 3, .S = 5, .L = 2, .D = 4,
                                             .causal = true};
    struct attention_data a = attention_data(&pool, &rng, cfg, true);
    attention_run(&a);
    double *want = zeros(&pool, 3 * 2 * 3 * 4);
    attention_composed(want, &a, &pool);
    CHECK_ARRAYS_NEAR(a.o, want, 3 * 2 * 3 * 4, EXACT_TOL);
    pool_free(&pool);
}

static void attention_probabilities(void) {
    struct pool pool = {0};
    uint64_t rng = 62;
    const int B = 2, H = 2, T = 3, S = 4, L = 1, D = 4, J = L + S;
    struct ref_attention_config cfg = {.B = B, .H = H, .T = T, .S = S, .L = L, .D = D,
                                       .causal = true};
    struct attention_data a = attention_data(&pool, &rng, cfg, true);
    attention_run(&a);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *p = a.probs + ((b * H + h) * T + t) * J;
                double sum = 0.0;
                for (int j = 0; j < J; j++) sum += p[j];
                CHECK_NEAR(sum, 1.0, EXACT_TOL);
                CHECK(p[0] > 0.0); /* the prefix is always visible */
                for (int s = 0; s < S; s++) {
                    bool hidden = s >= S - b || s > t + S - T;
                    if (hidden) CHECKF(p[L + s] == 0.0, "b %d h %d t %d s %d", b, h, t, s);
                }
            }

    /* With dropout, O = dropout(P)·V where dropout uses P's flat index. */
    a.cfg.dropout_p = 0.4;
    a.cfg.dropout = (struct ref_dropout_key){.seed = 77, .step = 3, .stream = 2};
    attention_run(&a);
    double *dropped = zeros(&pool, B * H * T * J), *want = zeros(&pool, B * H * T * D);
    ref_dropout_forward(dropped, a.probs, &a.cfg.dropout, 0.4, (size_t)B * H * T * J);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++)
                for (int d = 0; d < D; d++) {
                    double acc = 0.0;
                    const double *p = dropped + ((b * H + h) * T + t) * J;
                    for (int j = 0; j < J; j++) {
                        const double *vj = j < L ? a.pv + (h * L + j) * D
                                                 : a.v + ((b * H + h) * S + j - L) * D;
                        acc += p[j] * vj[d];
                    }
                    want[((b * H + h) * T + t) * D + d] = acc;
                }
    CHECK_ARRAYS_NEAR(a.o, want, B * H * T * D, EXACT_TOL);

    /* No prefix and a fully padded sequence: zero probabilities and output. */
    cfg.L = 0;
    cfg.B = 1;
    struct attention_data z = attention_data(&pool, &rng, cfg, false);
    uint8_t none[4] = {0, 0, 0, 0};
    z.keep = none;
    attention_run(&z);
    for (int i = 0; i < H * T * D; i++) CHECK(z.o[i] == 0.0);
    /* ... and zero gradients everywhere. */
    double *dq = zeros(&pool, H * T * D), *dk = zeros(&pool, H * S * D);
    double *dv = zeros(&pool, H * S * D);
    ref_attention_backward(dq, dk, dv, NULL, NULL, z.r, z.q, z.k, z.v, NULL, NULL, z.keep,
                           &z.cfg);
    for (int i = 0; i < H * T * D; i++) CHECK(dq[i] == 0.0);
    for (int i = 0; i < H * S * D; i++) CHECK(dk[i] == 0.0 && dv[i] == 0.0);
    pool_free(&pool);
}

static double attention_loss(void *c) {
    struct attention_data *a = c;
    attention_run(a);
    const struct ref_attention_config *g = &a->cfg;
    return dot(a->r, a->o, (size_t)g->B * g->H * g->T * g->D);
}

static void attention_backward_case(struct ref_attention_config cfg, bool pad, uint64_t seed) {
    struct pool pool = {0};
    uint64_t rng = seed;
    struct attention_data a = attention_data(&pool, &rng, cfg, pad);
    const int B = cfg.B, H = cfg.H, T = cfg.T, S = cfg.S, L = cfg.L, D = cfg.D;
    double *dq = randoms(&pool, B * H * T * D, &rng, -1, 1); /* overwritten */
    double *dk = randoms(&pool, B * H * S * D, &rng, -1, 1);
    double *dv = randoms(&pool, B * H * S * D, &rng, -1, 1);
    double *dpk = L ? zeros(&pool, H * L * D) : NULL, *dpv = L ? zeros(&pool, H * L * D) : NULL;
    ref_attention_backward(dq, dk, dv, dpk, dpv, a.r, a.q, a.k, a.v, a.pk, a.pv, a.keep, &cfg);
    CHECK_GRADIENT("q", a.q, dq, B * H * T * D, attention_loss, &a);
    CHECK_GRADIENT("k", a.k, dk, B * H * S * D, attention_loss, &a);
    CHECK_GRADIENT("v", a.v, dv, B * H * S * D, attention_loss, &a);
    if (L) {
        CHECK_GRADIENT("prefix_k", a.pk, dpk, H * L * D, attention_loss, &a);
        CHECK_GRADIENT("prefix_v", a.pv, dpv, H * L * D, attention_loss, &a);
        /* Prefix gradients accumulate into what the buffers held. */
        double *dpk2 = zeros(&pool, H * L * D);
        for (int i = 0; i < H * L * D; i++) dpk2[i] = 1.0;
        ref_attention_backward(NULL, NULL, NULL, dpk2, NULL, a.r, a.q, a.k, a.v, a.pk, a.pv,
                               a.keep, &cfg);
        for (int i = 0; i < H * L * D; i++) CHECK_NEAR(dpk2[i], 1.0 + dpk[i], EXACT_TOL);
    }
    pool_free(&pool);
}

static void attention_backward_fd_plain(void) {
    attention_backward_case(
        (struct ref_attention_config){.B = 2, .H = 2, .T = 3, .S = 3, .D = 4}, false, 71);
}

static void attention_backward_fd_masked_prefix_dropout(void) {
    /* Causal with T < S, right padding (sequence b loses its last b keys),
     * two prefix rows, an explicit scale and dropout. */
    attention_backward_case(
        (struct ref_attention_config){.B = 3, .H = 2, .T = 2, .S = 4, .L = 2, .D = 3,
                                      .causal = true, .scale = 0.7, .dropout_p = 0.25,
                                      .dropout = {.seed = 5, .step = 1, .stream = 4}},
        true, 72);
}

/* ------------------------------------------------------------------------
 * Activations
 * ------------------------------------------------------------------------ */

static void activation_known_values(void) {
    const double x[3] = {0.0, 1.0, -1.0};
    double y[3];
    ref_gelu_forward(y, x, 3);
    CHECK(y[0] == 0.0);
    CHECK_NEAR(y[1], 0.8413447460685429, EXACT_TOL); /* Φ(1) */
    CHECK_NEAR(y[2], -0.15865525393145707, EXACT_TOL); /* −Φ(−1) */
    ref_gelu_tanh_forward(y, x, 3);
    CHECK(y[0] == 0.0);
    CHECK_NEAR(y[1], 0.8411919906082768, EXACT_TOL);
    ref_silu_forward(y, x, 3);
    CHECK(y[0] == 0.0);
    CHECK_NEAR(y[1], 0.7310585786300049, EXACT_TOL); /* 1/(1+e^-1) */
    ref_tanh_forward(y, x, 3);
    CHECK_NEAR(y[1], 0.7615941559557649, EXACT_TOL);
    ref_relu_forward(y, x, 3);
    CHECK(y[0] == 0.0 && y[1] == 1.0 && y[2] == 0.0);

    /* Derivatives at 0: GELU ½, GELU-tanh ½, SiLU ½, tanh 1, ReLU 0. */
    const double one = 1.0;
    double d;
    ref_gelu_backward(&d, &one, &x[0], 1);
    CHECK(d == 0.5);
    ref_gelu_tanh_backward(&d, &one, &x[0], 1);
    CHECK(d == 0.5);
    ref_silu_backward(&d, &one, &x[0], 1);
    CHECK(d == 0.5);
    ref_tanh_backward(&d, &one, &x[0], 1);
    CHECK(d == 1.0);
    ref_relu_backward(&d, &one, &x[0], 1);
    CHECK(d == 0.0);
}

struct activation_ctx {
    void (*forward)(double *, const double *, size_t);
    double *y, *x, *r;
    size_t n;
};

static double activation_loss(void *c) {
    struct activation_ctx *ctx = c;
    ctx->forward(ctx->y, ctx->x, ctx->n);
    return dot(ctx->r, ctx->y, ctx->n);
}

static void activation_backward_fd(void) {
    static const struct {
        const char *name;
        void (*forward)(double *, const double *, size_t);
        void (*backward)(double *, const double *, const double *, size_t);
    } ops[] = {
        {"gelu", ref_gelu_forward, ref_gelu_backward},
        {"gelu_tanh", ref_gelu_tanh_forward, ref_gelu_tanh_backward},
        {"relu", ref_relu_forward, ref_relu_backward},
        {"silu", ref_silu_forward, ref_silu_backward},
        {"tanh", ref_tanh_forward, ref_tanh_backward},
    };
    struct pool pool = {0};
    uint64_t rng = 81;
    const size_t n = 64;
    double *x = randoms(&pool, n, &rng, -4, 4);
    /* Keep clear of ReLU's kink at 0, where the finite difference would
     * straddle two slopes. */
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) < 0.01) x[i] = 0.5;
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        struct activation_ctx ctx = {ops[k].forward, zeros(&pool, n), x,
                                     randoms(&pool, n, &rng, -1, 1), n};
        double *dx = zeros(&pool, n);
        ops[k].backward(dx, ctx.r, x, n);
        CHECK_GRADIENT(ops[k].name, x, dx, n, activation_loss, &ctx);
    }
    pool_free(&pool);
}

struct swiglu_ctx {
    double *y, *gate, *up, *r;
    size_t n;
};

static double swiglu_loss(void *c) {
    struct swiglu_ctx *ctx = c;
    ref_swiglu_forward(ctx->y, ctx->gate, ctx->up, ctx->n);
    return dot(ctx->r, ctx->y, ctx->n);
}

static void swiglu_backward_fd(void) {
    struct pool pool = {0};
    uint64_t rng = 82;
    const size_t n = 3 * 11;
    struct swiglu_ctx ctx = {zeros(&pool, n), randoms(&pool, n, &rng, -4, 4),
                             randoms(&pool, n, &rng, -2, 2), randoms(&pool, n, &rng, -1, 1), n};
    /* silu(1)·2 by hand. */
    const double g1 = 1.0, u2 = 2.0;
    double y;
    ref_swiglu_forward(&y, &g1, &u2, 1);
    CHECK_NEAR(y, 2 * 0.7310585786300049, EXACT_TOL);
    double *dgate = zeros(&pool, n), *dup = zeros(&pool, n);
    ref_swiglu_backward(dgate, dup, ctx.r, ctx.gate, ctx.up, n);
    CHECK_GRADIENT("gate", ctx.gate, dgate, n, swiglu_loss, &ctx);
    CHECK_GRADIENT("up", ctx.up, dup, n, swiglu_loss, &ctx);
    pool_free(&pool);
}

/* ------------------------------------------------------------------------
 * Elementwise
 * ------------------------------------------------------------------------ */

static void add_and_scale(void) {
    const double a[3] = {1, 2, 3}, b[3] = {0.5, -2, 4}, dy[3] = {1, -1, 0.25};
    double y[3], da[3], db[3];
    ref_add_forward(y, a, b, 3);
    CHECK(y[0] == 1.5 && y[1] == 0.0 && y[2] == 7.0);
    ref_add_backward(da, db, dy, 3);
    CHECK_ARRAYS_NEAR(da, dy, 3, 0.0); /* identity: exact */
    CHECK_ARRAYS_NEAR(db, dy, 3, 0.0);
    ref_scale_forward(y, a, -0.5, 3);
    CHECK(y[0] == -0.5 && y[1] == -1.0 && y[2] == -1.5);
    ref_scale_backward(da, dy, -0.5, 3);
    CHECK(da[0] == -0.5 && da[1] == 0.5 && da[2] == -0.125);
}

struct gate_ctx {
    double *y, *h, *d, *g, *r;
    int N, C, G;
};

static double gate_loss(void *c) {
    struct gate_ctx *ctx = c;
    ref_sigmoid_gate_forward(ctx->y, ctx->h, ctx->d, ctx->g, ctx->N, ctx->C, ctx->G);
    return dot(ctx->r, ctx->y, (size_t)ctx->N * ctx->C);
}

static void sigmoid_gate(void) {
    /* σ(0) = ½: y = h + d/2. */
    const double h[2] = {1, 2}, d[2] = {4, -2}, g0 = 0.0;
    double y[2];
    ref_sigmoid_gate_forward(y, h, d, &g0, 1, 2, 1);
    CHECK(y[0] == 3.0 && y[1] == 1.0);

    struct pool pool = {0};
    uint64_t rng = 91;
    const int N = 4, C = 5;
    for (int G = 1; G <= C; G += C - 1) {
        struct gate_ctx ctx = {
            .y = zeros(&pool, N * C),
            .h = randoms(&pool, N * C, &rng, -1, 1),
            .d = randoms(&pool, N * C, &rng, -1, 1),
            .g = randoms(&pool, G, &rng, -2, 2),
            .r = randoms(&pool, N * C, &rng, -1, 1),
            .N = N, .C = C, .G = G,
        };
        double *dh = zeros(&pool, N * C), *dd = zeros(&pool, N * C), *dg = zeros(&pool, G);
        ref_sigmoid_gate_backward(dh, dd, dg, ctx.r, ctx.d, ctx.g, N, C, G);
        CHECK_GRADIENT(G == 1 ? "h (scalar gate)" : "h", ctx.h, dh, N * C, gate_loss, &ctx);
        CHECK_GRADIENT(G == 1 ? "d (scalar gate)" : "d", ctx.d, dd, N * C, gate_loss, &ctx);
        CHECK_GRADIENT(G == 1 ? "g (scalar gate)" : "g", ctx.g, dg, G, gate_loss, &ctx);
    }
    pool_free(&pool);
}

/* ------------------------------------------------------------------------
 * Embedding and positions
 * ------------------------------------------------------------------------ */

struct embedding_ctx {
    double *out, *table, *r;
    const int32_t *ids;
    int N, V, C;
};

static double embedding_loss(void *c) {
    struct embedding_ctx *ctx = c;
    ref_embedding_forward(ctx->out, ctx->ids, ctx->table, ctx->N, ctx->V, ctx->C);
    return dot(ctx->r, ctx->out, (size_t)ctx->N * ctx->C);
}

static void embedding_gather_scatter(void) {
    struct pool pool = {0};
    uint64_t rng = 101;
    const int N = 6, V = 5, C = 3;
    const int32_t ids[6] = {4, 0, 4, 2, 4, 0}; /* repeats must sum; 1 and 3 unused */
    struct embedding_ctx ctx = {
        .out = zeros(&pool, N * C),
        .table = randoms(&pool, V * C, &rng, -1, 1),
        .r = randoms(&pool, N * C, &rng, -1, 1),
        .ids = ids, .N = N, .V = V, .C = C,
    };
    ref_embedding_forward(ctx.out, ids, ctx.table, N, V, C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) CHECK(ctx.out[n * C + c] == ctx.table[ids[n] * C + c]);

    double *dtable = zeros(&pool, V * C);
    ref_embedding_backward(dtable, ctx.r, ids, N, V, C);
    for (int c = 0; c < C; c++) {
        /* Accumulated in order of n: exactly this sum. */
        CHECK(dtable[4 * C + c] == (ctx.r[0 * C + c] + ctx.r[2 * C + c]) + ctx.r[4 * C + c]);
        CHECK(dtable[1 * C + c] == 0.0 && dtable[3 * C + c] == 0.0);
    }
    CHECK_GRADIENT("table", ctx.table, dtable, V * C, embedding_loss, &ctx);
    pool_free(&pool);
}

static void position_ids(void) {
    int32_t pos[10];
    ref_positions_offset(pos, 2, 3, 2); /* BART: offset 2 */
    const int32_t want_offset[6] = {2, 3, 4, 2, 3, 4};
    CHECK(memcmp(pos, want_offset, sizeof want_offset) == 0);

    /* RoBERTa, pad = 1: <s> a b <pad> <pad> and a left-padded row. */
    const int32_t ids[10] = {0, 5, 6, 1, 1, 1, 1, 0, 7, 2};
    ref_positions_roberta(pos, ids, 2, 5, 1, 0);
    const int32_t want[10] = {2, 3, 4, 1, 1, 1, 1, 2, 3, 4};
    for (int i = 0; i < 10; i++) CHECKF(pos[i] == want[i], "pos[%d] = %d, want %d", i, pos[i],
                                        want[i]);
    ref_positions_roberta(pos, ids, 2, 5, 1, 2); /* with 2 cached tokens */
    const int32_t want_past[10] = {4, 5, 6, 1, 1, 1, 1, 4, 5, 6};
    for (int i = 0; i < 10; i++) CHECKF(pos[i] == want_past[i], "past: pos[%d] = %d, want %d",
                                        i, pos[i], want_past[i]);
}

/* ------------------------------------------------------------------------
 * RoPE
 * ------------------------------------------------------------------------ */

static void rope_forward_by_hand(void) {
    double inv_freq[2];
    ref_rope_inv_freq(inv_freq, 4, 10000.0);
    CHECK(inv_freq[0] == 1.0);
    CHECK_NEAR(inv_freq[1], 0.01, EXACT_TOL); /* 10000^(−2/4) */

    /* D = 4, position 3 via offset: pair (x[0], x[2]) turns by 3 rad,
     * pair (x[1], x[3]) by 0.03 rad. */
    const double x[4] = {1, 2, 3, 4};
    double y[4];
    ref_rope_forward(y, x, NULL, 1, 1, 1, 4, 3, 10000.0);
    const double c0 = cos(3.0), s0 = sin(3.0), c1 = cos(0.03), s1 = sin(0.03);
    const double want[4] = {1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1};
    CHECK_ARRAYS_NEAR(y, want, 4, EXACT_TOL);

    /* Position 0 is the identity; explicit positions are used per row. */
    const int32_t pos[2] = {0, 3};
    double x2[8] = {1, 2, 3, 4, 1, 2, 3, 4}, y2[8];
    ref_rope_forward(y2, x2, pos, 1, 1, 2, 4, 0, 10000.0);
    CHECK_ARRAYS_NEAR(y2, x, 4, 0.0);
    CHECK_ARRAYS_NEAR(y2 + 4, want, 4, EXACT_TOL);
}

struct rope_ctx {
    double *y, *x, *r;
    const int32_t *pos;
    int B, H, T, D, offset;
    double theta;
};

static double rope_loss(void *c) {
    struct rope_ctx *ctx = c;
    ref_rope_forward(ctx->y, ctx->x, ctx->pos, ctx->B, ctx->H, ctx->T, ctx->D, ctx->offset,
                     ctx->theta);
    return dot(ctx->r, ctx->y, (size_t)ctx->B * ctx->H * ctx->T * ctx->D);
}

static void rope_backward_fd(void) {
    struct pool pool = {0};
    uint64_t rng = 111;
    const int B = 2, H = 2, T = 3, D = 6, n = B * H * T * D;
    const int32_t pos[3] = {5, 0, 17};
    struct rope_ctx ctx = {zeros(&pool, n), randoms(&pool, n, &rng, -1, 1),
                           randoms(&pool, n, &rng, -1, 1), pos, B, H, T, D, 2, 500000.0};
    double *dx = zeros(&pool, n);
    ref_rope_backward(dx, ctx.r, pos, B, H, T, D, 2, 500000.0);
    CHECK_GRADIENT("x", ctx.x, dx, n, rope_loss, &ctx);
    /* The rotation is orthogonal: backward(forward(x)) = x. */
    double *back = zeros(&pool, n);
    ref_rope_forward(ctx.y, ctx.x, pos, B, H, T, D, 2, 500000.0);
    ref_rope_backward(back, ctx.y, pos, B, H, T, D, 2, 500000.0);
    CHECK_ARRAYS_NEAR(back, ctx.x, n, EXACT_TOL);
    pool_free(&pool);
}

/* ------------------------------------------------------------------------
 * Cross-entropy
 * ------------------------------------------------------------------------ */

static void cross_entropy_by_hand(void) {
    /* Uniform logits: −log p = log V for any target. */
    const double logits[8] = {0, 0, 0, 0, 0, log(2.0), log(3.0), log(4.0)};
    const int32_t targets[2] = {2, 3};
    double rows[2];
    double loss = ref_cross_entropy_forward(rows, logits, targets, 1, 4, -100, 0.0);
    CHECK_NEAR(loss, log(4.0), EXACT_TOL);
    /* Row 2: p = [1,2,3,4]/10, target 3: −log 0.4. */
    loss = ref_cross_entropy_forward(rows, logits, targets, 2, 4, -100, 0.0);
    CHECK_NEAR(rows[1], -log(0.4), EXACT_TOL);
    CHECK_NEAR(loss, (log(4.0) - log(0.4)) / 2, EXACT_TOL);
    /* Label smoothing 0.1 on row 2: 0.9·(−log 0.4) − 0.1/4·Σ log p_v. */
    loss = ref_cross_entropy_forward(rows, logits + 4, targets + 1, 1, 4, -100, 0.1);
    double sum_logp = log(0.1) + log(0.2) + log(0.3) + log(0.4);
    CHECK_NEAR(loss, 0.9 * -log(0.4) - 0.025 * sum_logp, EXACT_TOL);

    /* Ignored rows count for nothing, including in the mean's divisor. */
    const int32_t one_ignored[2] = {-100, 3};
    loss = ref_cross_entropy_forward(rows, logits, one_ignored, 2, 4, -100, 0.0);
    CHECK(rows[0] == 0.0);
    CHECK_NEAR(loss, -log(0.4), EXACT_TOL);

    /* All ignored: loss 0 and zero gradient (documented choice, not NaN). */
    const int32_t none[2] = {7, 7};
    double d[8];
    memset(d, 0xff, sizeof d); /* NaN garbage must be overwritten */
    CHECK(ref_cross_entropy_forward(NULL, logits, none, 2, 4, 7, 0.1) == 0.0);
    ref_cross_entropy_backward(d, 1.0, logits, none, 2, 4, 7, 0.1);
    for (int i = 0; i < 8; i++) CHECK(d[i] == 0.0);
}

struct ce_ctx {
    double *logits;
    const int32_t *targets;
    int N, V, ignore_index;
    double smoothing;
};

static double ce_loss(void *c) {
    struct ce_ctx *ctx = c;
    return ref_cross_entropy_forward(NULL, ctx->logits, ctx->targets, ctx->N, ctx->V,
                                     ctx->ignore_index, ctx->smoothing);
}

static void cross_entropy_backward_fd(void) {
    struct pool pool = {0};
    uint64_t rng = 121;
    const int N = 5, V = 7;
    const int32_t targets[5] = {3, -100, 0, 6, 3};
    const double smoothing[2] = {0.0, 0.2};
    for (int k = 0; k < 2; k++) {
        struct ce_ctx ctx = {randoms(&pool, N * V, &rng, -3, 3), targets, N, V, -100,
                             smoothing[k]};
        double *d = zeros(&pool, N * V);
        ref_cross_entropy_backward(d, 1.0, ctx.logits, targets, N, V, -100, smoothing[k]);
        CHECK_GRADIENT(k ? "logits (smoothed)" : "logits", ctx.logits, d, N * V, ce_loss, &ctx);
        /* dloss scales the gradient linearly. */
        double *d3 = zeros(&pool, N * V);
        ref_cross_entropy_backward(d3, 3.0, ctx.logits, targets, N, V, -100, smoothing[k]);
        for (int i = 0; i < N * V; i++) CHECK_NEAR(d3[i], 3.0 * d[i], EXACT_TOL);
    }
    pool_free(&pool);
}

/* ------------------------------------------------------------------------
 * Optimisers
 * ------------------------------------------------------------------------ */

static void adamw_one_step_by_hand(void) {
    /* PyTorch AdamW, step 1, p = 1, g = 0.5, lr 1e-3, betas (0.9, 0.999),
     * eps 1e-8, wd 0.01:
     *   p = 1·(1 − 1e-5) = 0.99999; m = 0.05; v = 0.00025
     *   m̂ = 0.05/0.1 = 0.5; √v̂ = √(0.00025/0.001) = 0.5
     *   p = 0.99999 − 1e-3·0.5/(0.5 + 1e-8) = 0.99899000001999999960… */
    const struct ref_adamw_hparams hp = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                         .weight_decay = 0.01};
    double p = 1.0, m = 0.0, v = 0.0;
    const double g = 0.5;
    ref_adamw_step(&p, &m, &v, &g, 1, 1, &hp, true);
    CHECK_NEAR(m, 0.05, EXACT_TOL);
    CHECK_NEAR(v, 0.00025, EXACT_TOL);
    CHECK_NEAR(p, 0.99899000002, EXACT_TOL);

    /* Without the decay flag the parameter is not shrunk. */
    p = 1.0;
    m = 0.0;
    v = 0.0;
    ref_adamw_step(&p, &m, &v, &g, 1, 1, &hp, false);
    CHECK_NEAR(p, 1.0 - 1e-3 / (1.0 + 2e-8), EXACT_TOL);

    /* Step 2 with g = −0.5 (t enters the bias corrections):
     * m = 0.9·0.05 − 0.05 = −0.005; v = 0.999·0.00025 + 0.00025·0.001;
     * m̂ = −0.005/0.19; v̂ = v/(1 − 0.999²). */
    const double g2 = -0.5;
    ref_adamw_step(&p, &m, &v, &g2, 1, 2, &hp, false);
    double v2 = 0.999 * 0.00025 + 0.001 * 0.25;
    double want = 1.0 - 1e-3 / (1.0 + 2e-8) -
                  1e-3 * (-0.005 / 0.19) / (sqrt(v2 / (1.0 - 0.999 * 0.999)) + 1e-8);
    CHECK_NEAR(m, -0.005, EXACT_TOL);
    CHECK_NEAR(p, want, EXACT_TOL);
}

static void sgd_momentum_by_hand(void) {
    /* lr 0.1, momentum 0.9, wd 0.1, p = 1, g = 0.5:
     * step 1: d = 0.5 + 0.1 = 0.6, buf = 0.6, p = 0.94;
     * step 2: d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134, p = 0.8266. */
    const struct ref_sgd_hparams hp = {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1};
    double p = 1.0, buf = 123.0; /* the first step must not read buf */
    const double g = 0.5;
    ref_sgd_step(&p, &buf, &g, 1, 1, &hp, true);
    CHECK_NEAR(buf, 0.6, EXACT_TOL);
    CHECK_NEAR(p, 0.94, EXACT_TOL);
    ref_sgd_step(&p, &buf, &g, 1, 2, &hp, true);
    CHECK_NEAR(buf, 1.134, EXACT_TOL);
    CHECK_NEAR(p, 0.8266, EXACT_TOL);

    /* Plain SGD: no buffer needed. */
    const struct ref_sgd_hparams plain = {.lr = 0.5};
    p = 1.0;
    ref_sgd_step(&p, NULL, &g, 1, 1, &plain, true);
    CHECK(p == 0.75);
}

static void grad_norm_and_clipping(void) {
    double a[2] = {3, 0}, b[1] = {4};
    const size_t sizes[2] = {2, 1};
    double *grads[2] = {a, b};
    CHECK(ref_grad_norm((const double *const *)grads, sizes, 2) == 5.0);
    CHECK(ref_clip_coef(5.0, 10.0) == 1.0);
    CHECK_NEAR(ref_clip_coef(5.0, 1.0), 1.0 / (5.0 + 1e-6), EXACT_TOL);
    CHECK(ref_clip_coef(0.0, 1.0) == 1.0);

    double norm = ref_clip_grad_norm(grads, sizes, 2, 1.0);
    CHECK(norm == 5.0); /* the norm before clipping */
    CHECK_NEAR(a[0], 3.0 / (5.0 + 1e-6), EXACT_TOL);
    CHECK_NEAR(b[0], 4.0 / (5.0 + 1e-6), EXACT_TOL);
    CHECK_NEAR(ref_grad_norm((const double *const *)grads, sizes, 2), 5.0 / (5.0 + 1e-6),
               EXACT_TOL);
}

/* ------------------------------------------------------------------------
 * Conversions
 * ------------------------------------------------------------------------ */

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void fp16_known_values(void) {
    static const struct {
        float x;
        uint16_t h;
    } cases[] = {
        {1.0f, 0x3C00},
        {-2.0f, 0xC000},
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {65504.0f, 0x7BFF},                /* largest finite */
        {65519.99f, 0x7BFF},               /* just below the rounding midpoint */
        {65520.0f, 0x7C00},                /* midpoint, 0x7BFF odd: ties up to Inf */
        {1e6f, 0x7C00},                    /* overflow */
        {0x1.0p-24f, 0x0001},              /* smallest subnormal */
        {0x1.0p-25f, 0x0000},              /* half of it: tie to even (0) */
        {0x1.8p-24f, 0x0002},              /* 1.5 subnormal ulps: tie to even (2) */
        {0x1.0p-14f, 0x0400},              /* smallest normal */
        {0x1.ff8p-15f, 0x03FF},            /* largest subnormal */
        {0x1.ffcp-15f, 0x0400},            /* halfway to 2^-14: ties up to even normal */
        {0.1f, 0x2E66},
        {1.0f + 0x1.0p-11f, 0x3C00},       /* tie between 1 and 1+2^-10: even 1 */
        {1.0f + 0x1.8p-10f, 0x3C02},       /* tie between odd 0x3C01 and 0x3C02 */
        {1.0f + 0x1.0p-11f + 0x1.0p-23f, 0x3C01}, /* just past the tie */
        {(float)INFINITY, 0x7C00},
        {-(float)INFINITY, 0xFC00},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = ref_f32_to_f16(cases[i].x);
        CHECKF(h == cases[i].h, "f16(%a) = 0x%04x, want 0x%04x", (double)cases[i].x, h,
               cases[i].h);
    }
    uint16_t nan = ref_f32_to_f16((float)NAN);
    CHECKF((nan & 0x7C00) == 0x7C00 && (nan & 0x03FF) != 0, "NaN -> 0x%04x", nan);
    /* A signalling NaN whose payload lives only in the low bits stays NaN. */
    uint32_t snan_bits = 0x7F800001u;
    float snan;
    memcpy(&snan, &snan_bits, sizeof snan);
    CHECK((ref_f32_to_f16(snan) & 0x7FFF) > 0x7C00);

    CHECK(ref_f16_to_f32(0x3C00) == 1.0f);
    CHECK(ref_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(ref_f16_to_f32(0x0001) == 0x1.0p-24f);
    CHECK(ref_f16_to_f32(0x03FF) == 0x1.ff8p-15f);
    CHECK(ref_f16_to_f32(0x2E66) == 0.0999755859375f);
    CHECK(isinf(ref_f16_to_f32(0xFC00)) && ref_f16_to_f32(0xFC00) < 0);
    CHECK(isnan(ref_f16_to_f32(0x7E00)));
    CHECK(bits_of(ref_f16_to_f32(0x8000)) == 0x80000000u);
}

/* Value of fp16 bits as a double, computed independently of convert.c. */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double mag = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return (h & 0x8000) ? -mag : mag;
}

static void fp16_exhaustive_and_rounding(void) {
    /* Every finite fp16 survives f16 → f32 → f16 and reads as its value. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        float f = ref_f16_to_f32((uint16_t)h);
        if (!CHECKF((double)f == f16_value((uint16_t)h) && ref_f32_to_f16(f) == h,
                    "0x%04x", h))
            return;
    }
    /* Random floats in the finite fp16 range round to the nearest fp16,
     * ties to the even pattern. */
    uint64_t rng = 131;
    for (int i = 0; i < 200000; i++) {
        float x = (float)ldexp(th_rand_uniform(&rng, -1, 1), (int)(th_rand_u64(&rng) % 42) - 26);
        uint16_t h = ref_f32_to_f16(x);
        uint16_t mag = h & 0x7FFF;
        double got = fabs(f16_value(h)), ax = fabs((double)x);
        double below = mag ? fabs(f16_value((uint16_t)(mag - 1))) : 0.0;
        double above = mag < 0x7BFF ? f16_value((uint16_t)(mag + 1)) : INFINITY;
        double err = fabs(got - ax);
        bool nearest = err <= fabs(below - ax) && err <= fabs(above - ax);
        bool tie_ok = (err != fabs(below - ax) && err != fabs(above - ax)) || !(mag & 1) ||
                      err == 0.0;
        if (!CHECKF(nearest && tie_ok && ((h >> 15) == (bits_of(x) >> 31) || x == 0.0f),
                    "f16(%a) = 0x%04x", (double)x, h))
            return;
    }
}

static void bf16_conversions(void) {
    CHECK(ref_f32_to_bf16(1.0f) == 0x3F80);
    CHECK(ref_f32_to_bf16(1.0f / 3.0f) == 0x3EAB); /* 0x3EAAAAAB rounds up */
    CHECK(ref_bf16_to_f32(0x3EAB) == 0.333984375f);
    CHECK(ref_f32_to_bf16(-2.0f) == 0xC000);
    /* Ties to even: 1 + 2^-8 is halfway between 0x3F80 and 0x3F81. */
    CHECK(ref_f32_to_bf16(1.0f + 0x1.0p-8f) == 0x3F80);
    CHECK(ref_f32_to_bf16(1.0f + 0x1.8p-7f) == 0x3F82); /* halfway 0x3F81/0x3F82 */
    CHECK(ref_f32_to_bf16(3.3895313892515355e38f) == 0x7F7F); /* largest finite bf16 */
    CHECK(ref_f32_to_bf16(0x1.fffffep127f) == 0x7F80);        /* FLT_MAX overflows */
    CHECK(ref_f32_to_bf16((float)INFINITY) == 0x7F80);
    CHECK(ref_f32_to_bf16(-(float)INFINITY) == 0xFF80);
    CHECK(ref_f32_to_bf16(0x1.0p-133f) == 0x0001); /* subnormal */
    /* NaN whose payload would be truncated away stays NaN. */
    uint32_t nan_bits = 0xFF800001u;
    float nan;
    memcpy(&nan, &nan_bits, sizeof nan);
    uint16_t b = ref_f32_to_bf16(nan);
    CHECKF((b & 0x7F80) == 0x7F80 && (b & 0x007F) && (b & 0x8000), "NaN -> 0x%04x", b);
    CHECK(isnan(ref_bf16_to_f32(0x7FC0)));

    double x[3] = {1.0 / 3.0, 0.1, 70000.0}, y[3];
    ref_round_bf16(y, x, 3);
    CHECK(y[0] == 0.333984375);
    ref_round_f16(y, x, 3);
    CHECK(y[0] == 0.333251953125 && y[1] == 0.0999755859375 && isinf(y[2]));
}

TH_MAIN(TH_CASE(philox_known_answers), TH_CASE(mulhilo32_matches_64bit_product),
        TH_CASE(dropout_mask_rules), TH_CASE(dropout_keep_fraction),
        TH_CASE(dropout_forward_and_backward), TH_CASE(matmul_forward_by_hand),
        TH_CASE(matmul_backward_fd), TH_CASE(matmul_batched_matches_definition),
        TH_CASE(matmul_batched_backward_fd), TH_CASE(layernorm_forward_by_hand),
        TH_CASE(layernorm_backward_fd), TH_CASE(rmsnorm_forward_by_hand),
        TH_CASE(rmsnorm_backward_fd), TH_CASE(softmax_forward_cases),
        TH_CASE(softmax_backward_fd), TH_CASE(attention_matches_composition),
        TH_CASE(attention_probabilities), TH_CASE(attention_backward_fd_plain),
        TH_CASE(attention_backward_fd_masked_prefix_dropout), TH_CASE(activation_known_values),
        TH_CASE(activation_backward_fd), TH_CASE(swiglu_backward_fd), TH_CASE(add_and_scale),
        TH_CASE(sigmoid_gate), TH_CASE(embedding_gather_scatter), TH_CASE(position_ids),
        TH_CASE(rope_forward_by_hand), TH_CASE(rope_backward_fd),
        TH_CASE(cross_entropy_by_hand), TH_CASE(cross_entropy_backward_fd),
        TH_CASE(adamw_one_step_by_hand), TH_CASE(sgd_momentum_by_hand),
        TH_CASE(grad_norm_and_clipping), TH_CASE(fp16_known_values),
        TH_CASE(fp16_exhaustive_and_rounding), TH_CASE(bf16_conversions))
