/* Dropout with Philox4x32-10 masks (shaders/dropout.comp), bit-identical to
 * the reference: the mask is a function of (seed, step, stream, flat index),
 * so forward and backward draw the same one without storing it. */
#include "kernels.h"

#include <math.h>

struct dropout_push {
    uint32_t n, first_lo, first_hi, seed_lo, seed_hi, step, stream, threshold;
    float scale;
    uint32_t pad[3];
};
_Static_assert(sizeof(struct dropout_push) == 48, "matches Push in shaders/dropout.comp");

uint32_t kernel_dropout_threshold(double p) {
    if (!(p > 0.0)) return 0;
    if (p >= 1.0) return 1u << 24;
    /* p·2^24 is exact (a power-of-two scale): keep iff bits ≥ ceil(p·2^24),
     * which is exactly uniform ≥ p. */
    return (uint32_t)ceil(p * 16777216.0);
}

static vp_status dropout(vp_context *ctx, struct vk_recorder *rec, const char *op,
                         const struct vk_buffer *y, const struct vk_buffer *x, uint64_t n,
                         const struct kernel_dropout_key *key, double p) {
    if (n == 0) return VP_OK;
    if (!(p >= 0.0 && p <= 1.0))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: probability %g is outside [0, 1]", op, p);
    vp_status st = kernel_check_tensor(ctx, y, n * 4, false, op, "output");
    if (st == VP_OK) st = kernel_check_tensor(ctx, x, n * 4, false, op, "input");
    if (st != VP_OK) return st;
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_pipeline *pipe;
    st = kernel_pipeline(ctx, "dropout.comp", NULL, 2, sizeof(struct dropout_push), wg, &pipe);
    const uint64_t rb[1] = {4};
    uint64_t chunk = kernel_rows_per_dispatch(ctx, n, rb, 1, 0);
    /* p = 1 keeps nothing, so the (infinite) scale is never applied. */
    float scale = p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f;
    for (uint64_t i0 = 0; i0 < n && st == VP_OK; i0 += chunk) {
        uint64_t m = n - i0 < chunk ? n - i0 : chunk;
        struct dropout_push push = {
            .n = (uint32_t)m,
            .first_lo = (uint32_t)i0,
            .first_hi = (uint32_t)(i0 >> 32),
            .seed_lo = (uint32_t)key->seed,
            .seed_hi = (uint32_t)(key->seed >> 32),
            .step = key->step,
            .stream = key->stream,
            .threshold = kernel_dropout_threshold(p),
            .scale = scale,
        };
        struct vk_bind binds[2] = {
            kernel_bind_rows(x, 4, i0, m, VK_ACCESS_READ),
            kernel_bind_rows(y, 4, i0, m, VK_ACCESS_WRITE),
        };
        uint32_t gx, gy;
        kernel_grid_1d(ctx, (m + wg - 1) / wg, &gx, &gy);
        st = vk_recorder_dispatch(rec, pipe, binds, 2, &push, gx, gy, 1);
    }
    return st;
}

vp_status kernel_dropout_forward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *y, const struct vk_buffer *x, uint64_t n,
                                 const struct kernel_dropout_key *key, double p) {
    return dropout(ctx, rec, "dropout_forward", y, x, n, key, p);
}

vp_status kernel_dropout_backward(vp_context *ctx, struct vk_recorder *rec,
                                  const struct vk_buffer *dx, const struct vk_buffer *dy,
                                  uint64_t n, const struct kernel_dropout_key *key, double p) {
    return dropout(ctx, rec, "dropout_backward", dx, dy, n, key, p);
}
