/* Helpers for GPU kernel tests: tensors uploaded from double arrays in a
 * storage type, guard regions after every tensor, downloads back to double,
 * and comparisons with tolerances.
 *
 * Every tensor is followed by KT_GUARD_BYTES of a known pattern; kt_download
 * fails the case if a kernel wrote past the tensor's end. */
#ifndef VKPEFT_TESTS_KERNELTEST_H
#define VKPEFT_TESTS_KERNELTEST_H

#include "ref.h"
#include "vktest.h"

#define KT_GUARD_BYTES 256u
#define KT_GUARD_WORD 0x7FBADBADu /* a NaN, so a kernel reading it shows too */

struct kt_tensor {
    struct vk_buffer buf; /* n elements + guard */
    size_t n;
    enum vp_dtype dtype;
};

/* Allocates a tensor of n elements in `pool` (guard included) and uploads
 * `data` (may be NULL: the data part is filled with `fill` instead) converted
 * to `dtype` with round-to-nearest-even. */
bool kt_upload(vp_context *ctx, struct kt_tensor *t, vp_pool pool, enum vp_dtype dtype,
               const double *data, size_t n);
bool kt_alloc(vp_context *ctx, struct kt_tensor *t, vp_pool pool, enum vp_dtype dtype, size_t n,
              double fill);
/* Downloads into out (n doubles) and checks the guard; false on failure. */
bool kt_download(vp_context *ctx, const struct kt_tensor *t, double *out);
void kt_free(vp_context *ctx, struct kt_tensor *t);

/* Rounds values to what `dtype` can hold (what the GPU will read). */
void kt_round(enum vp_dtype dtype, double *v, size_t n);

/* Random values uniform in [lo, hi), rounded to dtype. */
void kt_random(double *v, size_t n, double lo, double hi, enum vp_dtype dtype, uint64_t seed);

/* Checks |got - want| <= atol + rtol*|want| element-wise; reports the worst
 * element and its index. */
bool kt_check_close(const double *got, const double *want, size_t n, double atol, double rtol,
                    const char *what, const char *file, int line);
#define KT_CHECK_CLOSE(got, want, n, atol, rtol, what) \
    kt_check_close((got), (want), (n), (atol), (rtol), (what), __FILE__, __LINE__)

/* Unit roundoff of fp32 accumulation (2^-24) and of the storage types. */
#define KT_EPS_F32 5.9604644775390625e-08
#define KT_EPS_F16 4.8828125e-04   /* 2^-11 */
#define KT_EPS_BF16 3.90625e-03    /* 2^-8 */
double kt_eps(enum vp_dtype dtype);

/* Runs a recording built by `fn` once (begin, fn, end, run). */
bool kt_run(vp_context *ctx, struct vk_recorder *rec,
            vp_status (*fn)(vp_context *, struct vk_recorder *, void *), void *arg);

/* calloc'd doubles (at least one). */
double *kt_dalloc(size_t n);

/* A context per binding range (0 = the device's own), shared by the cases
 * of one program: creating one costs more than most cases, above all with
 * the allocator checks meson enables (MALLOC_PERTURB_). The program's main
 * calls kt_contexts_destroy after the last case. */
vp_context *kt_context(uint64_t binding_range);
void kt_contexts_destroy(void);

/* |got − want| ≤ bound[i] element-wise (equal infinities pass, a NaN on one
 * side only fails); prints the largest error/bound ratio as the margin. */
bool kt_check_bound(const double *got, const double *want, const double *bound, size_t n,
                    const char *what, const char *file, int line);
#define KT_CHECK_BOUND(got, want, bound, n, what) \
    kt_check_bound(got, want, bound, n, what, __FILE__, __LINE__)

#endif
