/* Masked softmax over the last dimension and its backward
 * (shaders/softmax_*.comp). Row-wise: one row must fit a binding range; the
 * keep mask is bound whole. */
#include "kernels.h"

#include <stdio.h>

struct softmax_push {
    uint32_t rows, C, row0, keep_rows, causal_T;
    int32_t causal_offset;
    uint32_t pad[2];
};
_Static_assert(sizeof(struct softmax_push) == 32, "matches Push in shaders/softmax_forward.comp");

static uint32_t workgroup(const vp_context *ctx, enum kernel_rows_variant v) {
    uint32_t wg = kernel_elementwise_workgroup(ctx), p = 1;
    if (v == KERNEL_ROWS_SERIAL) return wg < 64 ? wg : 64;
    while (p * 2 <= wg) p *= 2; /* reduce.glsl wants a power of two */
    return p;
}

/* Dispatches a softmax shader over R rows of (bindings 0, 1 [, 2]) split by
 * rows; `extra` is bound whole as binding 2 when set. */
static vp_status record(vp_context *ctx, struct vk_recorder *rec, const char *op,
                        const char *shader, const char *defines, enum kernel_rows_variant v,
                        const struct vk_buffer *const *rowbufs, const enum vk_access *access,
                        uint32_t rowcount, const struct vk_bind *extra,
                        const struct kernel_softmax_mask *mask, uint32_t R, uint32_t C) {
    uint32_t wg = workgroup(ctx, v);
    char all[160];
    snprintf(all, sizeof all, "%sSERIAL=%d\nWG=%u\n", defines, v == KERNEL_ROWS_SERIAL, wg);
    uint32_t count = rowcount + (extra ? 1 : 0);
    struct vk_pipeline *pipe;
    vp_status st = kernel_pipeline(ctx, shader, all, count, sizeof(struct softmax_push), wg, &pipe);
    const uint64_t per_row[3] = {(uint64_t)C * 4, (uint64_t)C * 4, (uint64_t)C * 4};
    uint64_t chunk = kernel_rows_per_dispatch(ctx, R, per_row, rowcount, 0);
    if (st == VP_OK && chunk == 0)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: a row of %u values does not fit the binding range",
                       op, C);
    for (uint64_t r0 = 0; r0 < R && st == VP_OK; r0 += chunk) {
        uint64_t rows = R - r0 < chunk ? R - r0 : chunk;
        struct softmax_push push = {(uint32_t)rows, C, (uint32_t)r0, 1, 0, 0, {0, 0}};
        if (mask) {
            push.keep_rows = mask->keep_rows ? mask->keep_rows : 1;
            push.causal_T = mask->causal_T;
            push.causal_offset = mask->causal_offset;
        }
        struct vk_bind binds[4];
        for (uint32_t i = 0; i < rowcount; i++)
            binds[i] = kernel_bind_rows(rowbufs[i], (uint64_t)C * 4, r0, rows, access[i]);
        if (extra) binds[rowcount] = *extra;
        uint32_t gx, gy;
        kernel_grid_1d(ctx, v == KERNEL_ROWS_SERIAL ? (rows + wg - 1) / wg : rows, &gx, &gy);
        st = vk_recorder_dispatch(rec, pipe, binds, count, &push, gx, gy, 1);
    }
    return st;
}

vp_status kernel_softmax_forward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *y, const struct vk_buffer *x,
                                 const struct kernel_softmax_mask *mask, uint32_t R, uint32_t C,
                                 enum kernel_rows_variant variant) {
    static const char op[] = "softmax_forward";
    if (R == 0) return VP_OK;
    if (C == 0) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: C = 0", op);
    uint64_t n = (uint64_t)R * C;
    vp_status st = kernel_check_tensor(ctx, y, n * 4, false, op, "y");
    if (st == VP_OK) st = kernel_check_tensor(ctx, x, n * 4, false, op, "x");
    const struct vk_buffer *keep = mask ? mask->keep : NULL;
    uint64_t keep_bytes = 0;
    if (st == VP_OK && keep) {
        if (mask->keep_rows == 0)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: keep_rows is 0", op);
        keep_bytes = ((R + (uint64_t)mask->keep_rows - 1) / mask->keep_rows) * C;
        st = kernel_check_tensor(ctx, keep, keep_bytes, true, op, "keep");
    }
    if (st != VP_OK) return st;
    const struct vk_buffer *bufs[2] = {x, y};
    const enum vk_access access[2] = {VK_ACCESS_READ, VK_ACCESS_WRITE};
    /* Without a keep mask binding 2 is never read: x stands in for it. */
    struct vk_bind extra = keep ? (struct vk_bind){keep, 0, (keep_bytes + 3) & ~(uint64_t)3,
                                                   VK_ACCESS_READ}
                                : (struct vk_bind){x, 0, 4, VK_ACCESS_READ};
    char defines[32];
    snprintf(defines, sizeof defines, "HAS_KEEP=%d\n", keep != NULL);
    return record(ctx, rec, op, "softmax_forward.comp", defines, kernel_rows_choose(ctx, variant),
                  bufs, access, 2, &extra, mask, R, C);
}

vp_status kernel_softmax_backward(vp_context *ctx, struct vk_recorder *rec,
                                  const struct vk_buffer *dx, const struct vk_buffer *dy,
                                  const struct vk_buffer *y, uint32_t R, uint32_t C,
                                  enum kernel_rows_variant variant) {
    static const char op[] = "softmax_backward";
    if (R == 0) return VP_OK;
    if (C == 0) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: C = 0", op);
    uint64_t n = (uint64_t)R * C;
    vp_status st = kernel_check_tensor(ctx, dx, n * 4, false, op, "dx");
    if (st == VP_OK) st = kernel_check_tensor(ctx, dy, n * 4, false, op, "dy");
    if (st == VP_OK) st = kernel_check_tensor(ctx, y, n * 4, false, op, "y");
    if (st != VP_OK) return st;
    const struct vk_buffer *bufs[3] = {dy, y, dx};
    const enum vk_access access[3] = {VK_ACCESS_READ, VK_ACCESS_READ, VK_ACCESS_WRITE};
    return record(ctx, rec, op, "softmax_backward.comp", "", kernel_rows_choose(ctx, variant), bufs,
                  access, 3, NULL, NULL, R, C);
}
