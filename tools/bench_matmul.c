/* vkpeft bench kernels --only matmul: the linear layer (forward, dX, dW with
 * db) at transformer shapes (tokens 4096, hidden 768, FFN 3072) with f32 and
 * f16 weights, a 1024³ square, and (without --quick) the products of a 1.1B
 * LLaMA-shaped training step (2048 tokens, d 2048, kv 256, FFN 5632, LoRA
 * rank 8) and of a 4-row decode step. The variant column names the tiles
 * the tiled variant used, so a sweep over VKPEFT_MATMUL_TILES
 * (tools/gpu/matmul_sweep.sh) reads straight off it. Every row also times OpenBLAS sgemm on
 * the same problem (in f32: BLAS has no f16 weights) in the same run, with
 * as many threads as lavapipe runs (LP_NUM_THREADS, else the online CPUs),
 * so the ratio survives a noisy machine. Inputs are random; only time is
 * measured (tests/test_kernels_matmul.c checks the values). */
#include "bench.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum mm_op { MM_FORWARD, MM_DX, MM_DW };

static const char *const op_names[] = {"matmul_forward", "matmul_backward_dx",
                                       "matmul_backward_dw_db"};

struct mm_row {
    enum mm_op op;
    uint32_t M, K, N;
    enum vp_dtype wtype;
};

/* Host and device copies of one problem's tensors. */
struct mm_problem {
    struct mm_row r;
    float *x, *w, *dy, *out; /* host, f32: BLAS's operands and output */
    struct vk_buffer dx_, x_, w_, b_, y_, dy_, dw_, db_;
    bool allocated[8];
};

static void fill(float *v, size_t n, uint64_t seed) {
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        v[i] = (float)((st >> 40) * 0x1.0p-24) * 2.0f - 1.0f;
    }
}

static vp_status upload(vp_context *ctx, struct vk_buffer *buf, vp_pool pool, const float *v,
                        size_t n, enum vp_dtype t, bool *allocated) {
    size_t bytes = n * vp_dtype_size(t);
    vp_status s = vk_buffer_alloc(ctx, pool, bytes, buf);
    if (s != VP_OK) return s;
    *allocated = true;
    if (!v) return VP_OK;
    if (t == VP_DTYPE_F32) return vk_buffer_write(ctx, buf, 0, v, bytes);
    uint16_t *h = malloc(bytes);
    if (!h) return vp_fail(VP_ERROR_HOST_MEMORY, "bench: out of host memory");
    if (t == VP_DTYPE_F16) vp_f32_to_f16_array(h, v, n);
    else vp_f32_to_bf16_array(h, v, n);
    s = vk_buffer_write(ctx, buf, 0, h, bytes);
    free(h);
    return s;
}

static void problem_free(vp_context *ctx, struct mm_problem *p) {
    struct vk_buffer *bufs[8] = {&p->dx_, &p->x_, &p->w_, &p->b_, &p->y_, &p->dy_, &p->dw_, &p->db_};
    for (int i = 0; i < 8; i++)
        if (p->allocated[i]) vk_buffer_free(ctx, bufs[i]);
    free(p->x);
    free(p->w);
    free(p->dy);
    free(p->out);
}

static vp_status problem_init(vp_context *ctx, struct mm_problem *p, const struct mm_row *r) {
    memset(p, 0, sizeof *p);
    p->r = *r;
    size_t M = r->M, K = r->K, N = r->N;
    size_t out = r->op == MM_FORWARD ? M * N : r->op == MM_DX ? M * K : N * K;
    p->x = malloc(M * K * 4);
    p->w = malloc(N * K * 4);
    p->dy = malloc(M * N * 4);
    p->out = calloc(out, 4);
    if (!p->x || !p->w || !p->dy || !p->out)
        return vp_fail(VP_ERROR_HOST_MEMORY, "bench: out of host memory");
    fill(p->x, M * K, 1);
    fill(p->w, N * K, 2);
    fill(p->dy, M * N, 3);
    const vp_pool A = VP_POOL_ACTIVATIONS, T = VP_POOL_TRAINABLE;
    const enum vp_dtype F = VP_DTYPE_F32;
    bool *al = p->allocated;
    vp_status s = VP_OK;
    switch (r->op) {
    case MM_FORWARD:
        if ((s = upload(ctx, &p->x_, A, p->x, M * K, F, &al[1])) == VP_OK &&
            (s = upload(ctx, &p->w_, VP_POOL_FROZEN, p->w, N * K, r->wtype, &al[2])) == VP_OK &&
            (s = upload(ctx, &p->b_, T, p->w, N, F, &al[3])) == VP_OK)
            s = upload(ctx, &p->y_, A, NULL, M * N, F, &al[4]);
        break;
    case MM_DX:
        if ((s = upload(ctx, &p->dy_, A, p->dy, M * N, F, &al[5])) == VP_OK &&
            (s = upload(ctx, &p->w_, VP_POOL_FROZEN, p->w, N * K, r->wtype, &al[2])) == VP_OK)
            s = upload(ctx, &p->dx_, A, NULL, M * K, F, &al[0]);
        break;
    case MM_DW:
        if ((s = upload(ctx, &p->dy_, A, p->dy, M * N, F, &al[5])) == VP_OK &&
            (s = upload(ctx, &p->x_, A, p->x, M * K, F, &al[1])) == VP_OK &&
            (s = upload(ctx, &p->dw_, T, p->out, N * K, F, &al[6])) == VP_OK)
            s = upload(ctx, &p->db_, T, p->out, N, F, &al[7]);
        break;
    }
    return s;
}

static vp_status record(vp_context *ctx, struct vk_recorder *rec, const struct mm_problem *p,
                        const struct kernel_matmul_opts *o) {
    const struct mm_row *r = &p->r;
    switch (r->op) {
    case MM_FORWARD:
        return kernel_matmul_forward(ctx, rec, &p->y_, &p->x_, &p->w_, r->wtype, &p->b_, r->M,
                                     r->K, r->N, o);
    case MM_DX:
        return kernel_matmul_backward(ctx, rec, &p->dx_, NULL, NULL, &p->dy_, NULL, &p->w_,
                                      r->wtype, r->M, r->K, r->N, o);
    case MM_DW:
        return kernel_matmul_backward(ctx, rec, NULL, &p->dw_, &p->db_, &p->dy_, &p->x_, NULL,
                                      r->wtype, r->M, r->K, r->N, o);
    }
    return VP_OK;
}

/* The same product with sgemm (row-major): forward X·Wᵀ, dX = dY·W,
 * dW += dYᵀ·X. */
static void blas_run(struct mm_problem *p) {
    const struct mm_row *r = &p->r;
    int M = (int)r->M, K = (int)r->K, N = (int)r->N;
    switch (r->op) {
    case MM_FORWARD:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, p->x, K, p->w, K,
                    0.0f, p->out, N);
        break;
    case MM_DX:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, p->dy, N, p->w, K,
                    0.0f, p->out, K);
        break;
    case MM_DW:
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, p->dy, N, p->x, K,
                    1.0f, p->out, K);
        break;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, uint32_t n) {
    qsort(t, n, sizeof t[0], cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Median ms of the recording and of sgemm over `repeat` runs each after a
 * warm-up, the two alternating so that both see the same machine load;
 * without BLAS (--no-blas) *blas_ms is 0. The process's first row warms up
 * for 300 ms of runs: on an NVIDIA H200 the first sweep config's rows ran
 * at a fifth of the speed later processes got from the same tiles, the GPU
 * still at idle clocks after one warm-up run. */
static vp_status time_both(struct vk_recorder *rec, struct mm_problem *p, uint32_t repeat,
                           bool blas, double *ms, double *blas_ms) {
    static bool warm;
    double t[64], b[64];
    if (repeat > 64) repeat = 64;
    if (repeat == 0) repeat = 1;
    vp_status s = vk_recorder_run(rec);
    for (double t0 = vp_now(); !warm && s == VP_OK && vp_now() - t0 < 0.3;) s = vk_recorder_run(rec);
    warm = true;
    if (blas) blas_run(p);
    for (uint32_t i = 0; i < repeat && s == VP_OK; i++) {
        double t0 = vp_now();
        s = vk_recorder_run(rec);
        double t1 = vp_now();
        if (blas) blas_run(p);
        t[i] = (t1 - t0) * 1e3;
        b[i] = (vp_now() - t1) * 1e3;
    }
    if (s != VP_OK) return s;
    *ms = median(t, repeat);
    *blas_ms = blas ? median(b, repeat) : 0.0;
    return VP_OK;
}

/* Threads lavapipe runs compute on: LP_NUM_THREADS, else one per online CPU. */
static int cpu_threads(void) {
    const char *e = getenv("LP_NUM_THREADS");
    if (e && atoi(e) > 0) return atoi(e);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* "texel", or "tiled" with the tiles of the row's GEMM (C is (M,N) forward,
 * (M,K) for dX, (N,K) for dW) and "vec" when it reads four elements at a
 * time: its operands' row pitches are multiples of 4 (forward: X and W, K;
 * dX and dW: dY, N, and W or X, K). */
static vp_status variant_label(vp_context *ctx, const struct kernel_matmul_opts *mo,
                               const struct mm_row *r, char *buf, size_t size) {
    enum kernel_matmul_variant v = kernel_matmul_choose(ctx, mo->variant);
    if (v != KERNEL_MATMUL_TILED) {
        snprintf(buf, size, "%s", kernel_matmul_variant_name(v));
        return VP_OK;
    }
    uint32_t cm = r->op == MM_DW ? r->N : r->M, cn = r->op == MM_FORWARD ? r->N : r->K;
    struct kernel_matmul_tiles t;
    vp_status s = kernel_matmul_tiles_choose(ctx, mo, cm, cn, 1, &t);
    if (s != VP_OK) return s;
    char name[64];
    kernel_matmul_tiles_name(&t, name, sizeof name);
    bool vec = r->K % 4 == 0 && (r->op == MM_FORWARD || r->N % 4 == 0);
    snprintf(buf, size, "tiled %s%s", name, vec ? " vec" : "");
    return VP_OK;
}

static vp_status bench_row(vp_context *ctx, const struct bench_kernel_opts *o,
                           const struct mm_row *r, struct bench_table *out) {
    struct kernel_matmul_opts mo = {.variant = o->matmul_variant};
    struct mm_problem p;
    struct vk_recorder *rec = NULL;
    struct bench_row row = {0};
    vp_status s = problem_init(ctx, &p, r);
    if (s == VP_OK) s = variant_label(ctx, &mo, r, row.variant, sizeof row.variant);
    if (s == VP_OK) s = vk_recorder_create(ctx, 0, &rec);
    if (s == VP_OK) s = vk_recorder_begin(rec);
    if (s == VP_OK) s = record(ctx, rec, &p, &mo);
    if (s == VP_OK) s = vk_recorder_end(rec);
    double blas_ms = 0;
    if (s == VP_OK) s = time_both(rec, &p, o->repeat, !o->no_blas, &row.ms, &blas_ms);
    if (s == VP_OK) {
        double flops = 2.0 * r->M * r->N * r->K;
        snprintf(row.op, sizeof row.op, "%s", op_names[r->op]);
        snprintf(row.shape, sizeof row.shape, "M=%u K=%u N=%u w=%s", r->M, r->K, r->N,
                 vp_dtype_name(r->wtype));
        row.gflops = flops / (row.ms * 1e6);
        row.blas_gflops = blas_ms > 0 ? flops / (blas_ms * 1e6) : 0.0;
        bench_table_add(out, &row);
    }
    vk_recorder_destroy(rec);
    problem_free(ctx, &p);
    return s;
}

vp_status bench_matmul(vp_context *ctx, const struct bench_kernel_opts *o,
                       struct bench_table *out) {
    openblas_set_num_threads(cpu_threads());
    uint32_t tokens = o->quick ? 256 : 4096, hidden = o->quick ? 128 : 768,
             ffn = o->quick ? 512 : 3072, square = o->quick ? 256 : 1024;
    const enum vp_dtype F = VP_DTYPE_F32, H = VP_DTYPE_F16;
    const struct mm_row rows[] = {
        {MM_FORWARD, tokens, hidden, hidden, F}, {MM_FORWARD, tokens, hidden, hidden, H},
        {MM_DX, tokens, hidden, hidden, F},      {MM_DX, tokens, hidden, hidden, H},
        {MM_DW, tokens, hidden, hidden, F},      {MM_FORWARD, tokens, hidden, ffn, F},
        {MM_FORWARD, tokens, hidden, ffn, H},    {MM_DX, tokens, hidden, ffn, F},
        {MM_DX, tokens, hidden, ffn, H},         {MM_DW, tokens, hidden, ffn, F},
        {MM_FORWARD, square, square, square, F}, {MM_FORWARD, square, square, square, H},
    };
    /* A 1.1B LLaMA-shaped step (TinyLlama: 4 x 512 tokens, d 2048, 4 kv
     * heads of 64, FFN 5632, f16 frozen weights, LoRA r 8 in f32): the
     * projections, the FFN both ways, the LoRA products (C 2048x8 and
     * 8x2048 with K 2048), and a decode step of 4 rows. */
    const struct mm_row llama[] = {
        {MM_FORWARD, 2048, 2048, 2048, H}, {MM_FORWARD, 2048, 2048, 256, H},
        {MM_FORWARD, 2048, 2048, 5632, H}, {MM_FORWARD, 2048, 5632, 2048, H},
        {MM_DX, 2048, 2048, 5632, H},      {MM_DX, 2048, 5632, 2048, H},
        {MM_FORWARD, 2048, 2048, 8, F},    {MM_DW, 2048, 2048, 8, F},
        {MM_FORWARD, 4, 2048, 2048, H},
    };
    vp_status s = VP_OK;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && s == VP_OK; i++)
        s = bench_row(ctx, o, &rows[i], out);
    for (size_t i = 0; i < sizeof llama / sizeof llama[0] && s == VP_OK && !o->quick; i++)
        s = bench_row(ctx, o, &llama[i], out);
    return s;
}
