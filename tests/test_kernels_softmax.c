/* Masked softmax kernels against ref_softmax_forward/backward: no mask, key
 * padding masks shared by groups of rows, causal masks with offsets, both
 * together, fully masked rows (exact zeros), both row variants, rows split
 * across binding ranges, guards, and bit-reproducibility. */
#include "kerneltest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double U = KT_EPS_F32;


struct sm_case {
    uint32_t R, C;
    int keep;            /* 0: no keep mask; 1: random; 2: random, first keep row all zero */
    uint32_t keep_rows;  /* rows sharing one keep row */
    uint32_t causal_T;   /* 0: no causal mask */
    int32_t causal_offset;
    enum kernel_rows_variant variant;
    uint64_t binding_range;
};

struct args {
    const struct sm_case *c;
    struct kt_tensor *x, *y, *dy, *yin, *dx;
    struct vk_buffer *keep;
};

static vp_status record_softmax(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    const struct args *a = arg;
    const struct sm_case *c = a->c;
    struct kernel_softmax_mask mask = {a->keep, c->keep_rows, c->causal_T, c->causal_offset};
    bool masked = a->keep || c->causal_T;
    vp_status s = kernel_softmax_forward(ctx, rec, &a->y->buf, &a->x->buf, masked ? &mask : NULL,
                                         c->R, c->C, c->variant);
    if (s == VP_OK)
        s = kernel_softmax_backward(ctx, rec, &a->dx->buf, &a->dy->buf, &a->yin->buf, c->R, c->C,
                                    c->variant);
    return s;
}

/* Bounds (u = 2^-24), inputs in [-4, 4]: each visible y = e/Σe with e =
 * exp(x − max): the argument ≥ −8 carries ≤ 8u of rounding and exp ≤ 3 + 16
 * ulp (Vulkan), the sum of C positive terms ≤ C·u relative, the reciprocal
 * and product ≤ 3.5 ulp: (C + 64)·u·y. Masked entries and rows with nothing
 * visible must be exactly 0. Backward from the reference's y (as fp32):
 * dot = Σ y·dy errs ≤ C·u·Σ|y·dy|, so dx = y·(dy − dot) is within
 * y·((C + 2)·u·Σ|y·dy| + u·|dy − dot|) + 2u·|dx|. */
static void run_case(const struct sm_case *c, uint64_t seed) {
    size_t R = c->R, C = c->C, n = R * C;
    double *x = kt_dalloc(n), *y = kt_dalloc(n), *dy = kt_dalloc(n), *dx = kt_dalloc(n), *b = kt_dalloc(n),
           *got = kt_dalloc(n);
    kt_random(x, n, -4.0, 4.0, VP_DTYPE_F32, seed);
    kt_random(dy, n, -1.0, 1.0, VP_DTYPE_F32, seed + 1);
    size_t keep_n = c->keep ? (R + c->keep_rows - 1) / c->keep_rows * C : 0;
    uint8_t *keep = calloc(keep_n + 4, 1);
    uint64_t st = seed + 2;
    for (size_t i = 0; i < keep_n; i++) keep[i] = th_rand_u64(&st) % 3 != 0;
    if (c->keep == 2)
        for (size_t i = 0; i < C; i++) keep[i] = 0;
    struct ref_softmax_mask rm = {c->keep ? keep : NULL, (int)c->keep_rows, (int)c->causal_T,
                                  c->causal_offset};
    ref_softmax_forward(y, x, c->keep || c->causal_T ? &rm : NULL, (int)R, (int)C);
    kt_round(VP_DTYPE_F32, y, n);
    ref_softmax_backward(dx, dy, y, (int)R, (int)C);

    vp_context *ctx = kt_context(c->binding_range);
    struct kt_tensor tx = {0}, ty = {0}, tdy = {0}, tyin = {0}, tdx = {0};
    struct vk_buffer kb = {0};
    struct vk_recorder *rec = NULL;
    const vp_pool A = VP_POOL_ACTIVATIONS;
    const enum vp_dtype F = VP_DTYPE_F32;
    char tag[160];
    snprintf(tag, sizeof tag, "R=%u C=%u keep=%d/%u causal=%u%+d %s", c->R, c->C, c->keep,
             c->keep_rows, c->causal_T, c->causal_offset,
             ctx ? kernel_rows_variant_name(kernel_rows_choose(ctx, c->variant)) : "");
    bool ok = ctx && kt_upload(ctx, &tx, A, F, x, n) && kt_alloc(ctx, &ty, A, F, n, NAN) &&
              kt_upload(ctx, &tdy, A, F, dy, n) && kt_upload(ctx, &tyin, A, F, y, n) &&
              kt_alloc(ctx, &tdx, A, F, n, NAN) && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK);
    if (ok && c->keep) {
        size_t bytes = (keep_n + 3) / 4 * 4;
        ok = CHECK(vk_buffer_alloc(ctx, A, bytes, &kb) == VP_OK) &&
             CHECK(vk_buffer_write(ctx, &kb, 0, keep, bytes) == VP_OK);
    }
    struct args a = {c, &tx, &ty, &tdy, &tyin, &tdx, c->keep ? &kb : NULL};
    if (ok && kt_run(ctx, rec, record_softmax, &a)) {
        if (c->binding_range) th_diag("%s: %u dispatches", tag, vk_recorder_dispatch_count(rec));
        char what[200];
        if (kt_download(ctx, &ty, got)) {
            size_t zeros_bad = 0;
            for (size_t i = 0; i < n; i++) {
                b[i] = (C + 64.0) * U * y[i] + 1e-37;
                zeros_bad += y[i] == 0.0 && got[i] != 0.0;
            }
            CHECKF(zeros_bad == 0, "%s: %zu masked entries are not exactly 0", tag, zeros_bad);
            snprintf(what, sizeof what, "%s forward", tag);
            KT_CHECK_BOUND(got, y, b, n, what);
        }
        if (kt_download(ctx, &tdx, got)) {
            for (size_t r = 0; r < R; r++) {
                double dot = 0, abs = 0;
                for (size_t i = 0; i < C; i++) {
                    dot += y[r * C + i] * dy[r * C + i];
                    abs += fabs(y[r * C + i] * dy[r * C + i]);
                }
                for (size_t i = 0; i < C; i++) {
                    size_t k = r * C + i;
                    b[k] = y[k] * ((C + 2.0) * U * abs + U * fabs(dy[k] - dot)) +
                           2 * U * fabs(dx[k]) + 1e-37;
                }
            }
            snprintf(what, sizeof what, "%s backward", tag);
            KT_CHECK_BOUND(got, dx, b, n, what);
        }
        CHECK(kt_download(ctx, &tx, got)); /* input guards */
    }
    struct kt_tensor *all[] = {&tx, &ty, &tdy, &tyin, &tdx};
    for (size_t i = 0; i < 5; i++)
        if (all[i]->buf.buffer) kt_free(ctx, all[i]);
    if (kb.buffer) vk_buffer_free(ctx, &kb);
    vk_recorder_destroy(rec);
    free(x), free(y), free(dy), free(dx), free(b), free(got), free(keep);
}

static const enum kernel_rows_variant VARIANTS[] = {KERNEL_ROWS_WORKGROUP, KERNEL_ROWS_SERIAL};

static void unmasked(void) {
    static const uint32_t S[][2] = {{1, 1}, {3, 7}, {10, 64}, {37, 300}, {5, 1000}};
    for (int v = 0; v < 2; v++)
        for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
            struct sm_case c = {S[s][0], S[s][1], 0, 1, 0, 0, VARIANTS[v], 0};
            run_case(&c, 10 + s);
        }
}

/* Attention-shaped: rows (B=3, H=2, T=5) over S=9 keys, one keep row per
 * batch shared by its H·T rows; batch 0 is all padding (its rows are 0). */
static void key_padding(void) {
    for (int v = 0; v < 2; v++) {
        struct sm_case c = {30, 9, 2, 10, 0, 0, VARIANTS[v], 0};
        run_case(&c, 20);
        struct sm_case d = {7, 130, 1, 1, 0, 0, VARIANTS[v], 0};
        run_case(&d, 21);
    }
}

/* Causal blocks of T rows: offset S − T (queries at the end of the keys),
 * 0, and negative (rows before the first key see nothing: all zeros). */
static void causal(void) {
    for (int v = 0; v < 2; v++) {
        struct sm_case a = {2 * 6, 11, 0, 1, 6, 5, VARIANTS[v], 0};
        run_case(&a, 30);
        struct sm_case b = {3 * 8, 8, 0, 1, 8, 0, VARIANTS[v], 0};
        run_case(&b, 31);
        struct sm_case c = {2 * 7, 4, 0, 1, 7, -3, VARIANTS[v], 0};
        run_case(&c, 32);
    }
}

static void causal_and_padding(void) {
    for (int v = 0; v < 2; v++) {
        struct sm_case c = {3 * 2 * 6, 11, 2, 12, 6, 5, VARIANTS[v], 0};
        run_case(&c, 40);
    }
}

/* 400 rows of 100 values with a 16 KiB binding range: many dispatches; the
 * masks must follow the global row index. */
static void rows_split_across_binding_ranges(void) {
    for (int v = 0; v < 2; v++) {
        struct sm_case c = {4 * 100, 100, 1, 100, 100, 0, VARIANTS[v], 16 << 10};
        run_case(&c, 50);
    }
}

/* The same recording run twice gives the same bits. */
static void deterministic(void) {
    const uint32_t R = 64, C = 777;
    size_t n = (size_t)R * C;
    double *x = kt_dalloc(n), *r1 = kt_dalloc(n), *r2 = kt_dalloc(n);
    kt_random(x, n, -4, 4, VP_DTYPE_F32, 60);
    vp_context *ctx = kt_context(0);
    struct kt_tensor tx = {0}, ty = {0};
    struct vk_recorder *rec = NULL;
    struct sm_case c = {R, C, 0, 1, 0, 0, KERNEL_ROWS_AUTO, 0};
    for (int v = 0; ctx && v < 2; v++) {
        c.variant = VARIANTS[v];
        if (kt_upload(ctx, &tx, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, x, n) &&
            kt_alloc(ctx, &ty, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, n, NAN) &&
            CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK) &&
            CHECK(vk_recorder_begin(rec) == VP_OK) &&
            CHECK(kernel_softmax_forward(ctx, rec, &ty.buf, &tx.buf, NULL, R, C, c.variant) ==
                  VP_OK) &&
            CHECK(vk_recorder_end(rec) == VP_OK) && CHECK(vk_recorder_run(rec) == VP_OK) &&
            kt_download(ctx, &ty, r1) && CHECK(vk_recorder_run(rec) == VP_OK) &&
            kt_download(ctx, &ty, r2))
            CHECKF(memcmp(r1, r2, n * sizeof *r1) == 0, "softmax differs run to run");
        vk_recorder_destroy(rec);
        rec = NULL;
        if (tx.buf.buffer) kt_free(ctx, &tx);
        if (ty.buf.buffer) kt_free(ctx, &ty);
    }
    free(x), free(r1), free(r2);
}

int main(int argc, char **argv) {
    static const struct th_case cases[] = {
        TH_CASE(unmasked),
        TH_CASE(key_padding),
        TH_CASE(causal),
        TH_CASE(causal_and_padding),
        TH_CASE(rows_split_across_binding_ranges),
        TH_CASE(deterministic)
    };
    int status = vt_main(cases, sizeof cases / sizeof cases[0], argc, argv);
    kt_contexts_destroy();
    return status;
}
