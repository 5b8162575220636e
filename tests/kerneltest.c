#include "kerneltest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double kt_eps(enum vp_dtype dtype) {
    switch (dtype) {
    case VP_DTYPE_F16: return KT_EPS_F16;
    case VP_DTYPE_BF16: return KT_EPS_BF16;
    default: return KT_EPS_F32;
    }
}

void kt_round(enum vp_dtype dtype, double *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float f = (float)v[i];
        if (dtype == VP_DTYPE_F16) f = ref_f16_to_f32(ref_f32_to_f16(f));
        if (dtype == VP_DTYPE_BF16) f = ref_bf16_to_f32(ref_f32_to_bf16(f));
        v[i] = f;
    }
}

void kt_random(double *v, size_t n, double lo, double hi, enum vp_dtype dtype, uint64_t seed) {
    uint64_t st = seed;
    for (size_t i = 0; i < n; i++) v[i] = th_rand_uniform(&st, lo, hi);
    kt_round(dtype, v, n);
}

/* Packs n doubles as dtype into bytes (size n*esize). */
static void pack(enum vp_dtype dtype, const double *v, size_t n, unsigned char *out) {
    for (size_t i = 0; i < n; i++) {
        float f = (float)v[i];
        if (dtype == VP_DTYPE_F32) {
            memcpy(out + 4 * i, &f, 4);
        } else {
            uint16_t h = dtype == VP_DTYPE_F16 ? ref_f32_to_f16(f) : ref_f32_to_bf16(f);
            memcpy(out + 2 * i, &h, 2);
        }
    }
}

static bool upload(vp_context *ctx, struct kt_tensor *t, vp_pool pool, enum vp_dtype dtype,
                   const double *data, size_t n, double fill) {
    memset(t, 0, sizeof *t);
    t->n = n;
    t->dtype = dtype;
    size_t bytes = n * vp_dtype_size(dtype);
    size_t total = bytes + KT_GUARD_BYTES;
    if (!CHECKF(vk_buffer_alloc(ctx, pool, total, &t->buf) == VP_OK, "alloc: %s", vp_last_error()))
        return false;
    unsigned char *host = malloc(total);
    if (data) {
        pack(dtype, data, n, host);
    } else {
        double *f = malloc((n ? n : 1) * sizeof *f);
        for (size_t i = 0; i < n; i++) f[i] = fill;
        pack(dtype, f, n, host);
        free(f);
    }
    for (size_t i = 0; i < KT_GUARD_BYTES / 4; i++) {
        uint32_t g = KT_GUARD_WORD;
        memcpy(host + bytes + 4 * i, &g, 4);
    }
    bool ok = CHECKF(vk_buffer_write(ctx, &t->buf, 0, host, total) == VP_OK, "write: %s",
                     vp_last_error());
    free(host);
    return ok;
}

bool kt_upload(vp_context *ctx, struct kt_tensor *t, vp_pool pool, enum vp_dtype dtype,
               const double *data, size_t n) {
    return upload(ctx, t, pool, dtype, data, n, 0.0);
}

bool kt_alloc(vp_context *ctx, struct kt_tensor *t, vp_pool pool, enum vp_dtype dtype, size_t n,
              double fill) {
    return upload(ctx, t, pool, dtype, NULL, n, fill);
}

bool kt_download(vp_context *ctx, const struct kt_tensor *t, double *out) {
    size_t bytes = t->n * vp_dtype_size(t->dtype);
    size_t total = bytes + KT_GUARD_BYTES;
    unsigned char *host = malloc(total);
    if (!CHECKF(vk_buffer_read(ctx, &t->buf, 0, host, total) == VP_OK, "read: %s", vp_last_error())) {
        free(host);
        return false;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (t->dtype == VP_DTYPE_F32) {
            float f;
            memcpy(&f, host + 4 * i, 4);
            out[i] = f;
        } else {
            uint16_t h;
            memcpy(&h, host + 2 * i, 2);
            out[i] = t->dtype == VP_DTYPE_F16 ? ref_f16_to_f32(h) : ref_bf16_to_f32(h);
        }
    }
    size_t bad = 0;
    for (size_t i = 0; i < KT_GUARD_BYTES / 4; i++) {
        uint32_t g;
        memcpy(&g, host + bytes + 4 * i, 4);
        bad += g != KT_GUARD_WORD;
    }
    free(host);
    return CHECKF(bad == 0, "%zu guard words after a tensor of %zu elements were overwritten", bad,
                  t->n);
}

void kt_free(vp_context *ctx, struct kt_tensor *t) {
    vk_buffer_free(ctx, &t->buf);
    memset(t, 0, sizeof *t);
}

bool kt_check_close(const double *got, const double *want, size_t n, double atol, double rtol,
                    const char *what, const char *file, int line) {
    double worst = 0;
    size_t wi = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - want[i]) / (atol + rtol * fabs(want[i]));
        if (isnan(got[i]) || isnan(err)) err = INFINITY;
        if (err > 1.0) bad++;
        if (err > worst) {
            worst = err;
            wi = i;
        }
    }
    if (bad == 0) return true;
    return th_check(false, file, line,
                    "%s: %zu of %zu elements off; worst [%zu] = %.9g, want %.9g "
                    "(atol %.3g, rtol %.3g: %.3g x tolerance)",
                    what, bad, n, wi, got[wi], want[wi], atol, rtol, worst);
}

bool kt_run(vp_context *ctx, struct vk_recorder *rec,
            vp_status (*fn)(vp_context *, struct vk_recorder *, void *), void *arg) {
    vp_status s = vk_recorder_begin(rec);
    if (s == VP_OK) s = fn(ctx, rec, arg);
    if (s == VP_OK) s = vk_recorder_end(rec);
    if (s == VP_OK) s = vk_recorder_run(rec);
    return CHECKF(s == VP_OK, "recording failed: %s: %s", vp_status_name(s), vp_last_error());
}

double *kt_dalloc(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

static struct {
    uint64_t range;
    vp_context *ctx;
} contexts[4];

void kt_contexts_destroy(void) {
    for (int i = 0; i < 4; i++) vp_context_destroy(contexts[i].ctx);
}

vp_context *kt_context(uint64_t binding_range) {
    for (int i = 0; i < 4; i++)
        if (contexts[i].ctx && contexts[i].range == binding_range) return contexts[i].ctx;
    for (int i = 0; i < 4; i++) {
        if (contexts[i].ctx) continue;
        vp_context_options o = {.binding_range = binding_range};
        contexts[i].range = binding_range;
        contexts[i].ctx = vt_context(&o);
        return contexts[i].ctx;
    }
    FAIL("more than 4 binding ranges");
    return NULL;
}

bool kt_check_bound(const double *got, const double *want, const double *bound, size_t n,
                    const char *what, const char *file, int line) {
    size_t bad = 0, wi = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs(got[i] - want[i]) / bound[i];
        if (isnan(r) || (isnan(got[i]) != isnan(want[i]))) r = INFINITY;
        if (got[i] == want[i]) r = 0.0; /* equal infinities */
        if (r > 1.0) bad++;
        if (r > worst || (isnan(worst))) {
            worst = r;
            wi = i;
        }
    }
    if (bad == 0) {
        th_diag("%s: worst error %.3g of its bound", what, worst);
        return true;
    }
    return th_check(false, file, line, "%s: %zu of %zu off; worst [%zu] = %.9g, want %.9g, bound %.3g",
                    what, bad, n, wi, got[wi], want[wi], bound[wi]);
}
