/* Rotary position embeddings (shaders/rope.comp) with a host-built cos/sin
 * table. */
#include "kernels.h"

#include <math.h>
#include <stdio.h>

struct rope_push {
    uint32_t rows, row0, T, D, P;
    int32_t offset;
    uint32_t pad[2];
};
_Static_assert(sizeof(struct rope_push) == 32, "matches Push in shaders/rope.comp");

void kernel_rope_table(float *table, uint32_t P, uint32_t D, double theta) {
    uint32_t half = D / 2;
    for (uint32_t p = 0; p < P; p++) {
        for (uint32_t i = 0; i < half; i++) {
            /* The angle in double: p·θ^(−2i/D) exactly as the reference. */
            double angle = (double)p * pow(theta, -2.0 * i / D);
            table[(size_t)p * D + i] = (float)cos(angle);
            table[(size_t)p * D + half + i] = (float)sin(angle);
        }
    }
}

static vp_status rope(vp_context *ctx, struct vk_recorder *rec, bool backward, const char *op,
                      const struct vk_buffer *y, const struct vk_buffer *x,
                      const struct vk_buffer *table, const struct vk_buffer *pos, uint32_t BH,
                      uint32_t T, uint32_t D, uint32_t P, int32_t offset) {
    uint64_t rows = (uint64_t)BH * T;
    if (rows == 0 || D == 0) return VP_OK;
    if (D % 2) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: head dimension %u is odd", op, D);
    if (!pos && ((int64_t)offset < 0 || (int64_t)offset + T > (int64_t)P))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: positions %d..%lld are outside the table's %u rows", op, offset,
                       (long long)offset + T - 1, P);
    uint64_t row = (uint64_t)D * 4;
    vp_status st = kernel_check_tensor(ctx, y, rows * row, false, op, "y");
    if (st == VP_OK) st = kernel_check_tensor(ctx, x, rows * row, false, op, "x");
    if (st == VP_OK) st = kernel_check_tensor(ctx, table, (uint64_t)P * row, true, op, "table");
    if (st == VP_OK && pos) st = kernel_check_tensor(ctx, pos, (uint64_t)T * 4, true, op, "pos");
    if (st != VP_OK) return st;
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    char defines[48];
    snprintf(defines, sizeof defines, "HAS_POS=%d\nBACKWARD=%d\n", pos != NULL, backward);
    struct vk_pipeline *pipe;
    st = kernel_pipeline(ctx, "rope.comp", defines, 4, sizeof(struct rope_push), wg, &pipe);
    const uint64_t per_row[2] = {row, row};
    uint64_t chunk = kernel_rows_per_dispatch(ctx, rows, per_row, 2, 0);
    if (st == VP_OK && chunk == 0)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: a row of %u values does not fit the binding range",
                       op, D);
    for (uint64_t r0 = 0; r0 < rows && st == VP_OK; r0 += chunk) {
        uint64_t m = rows - r0 < chunk ? rows - r0 : chunk;
        struct rope_push push = {(uint32_t)m, (uint32_t)r0, T, D, P, offset, {0, 0}};
        struct vk_bind binds[4] = {
            kernel_bind_rows(x, row, r0, m, VK_ACCESS_READ),
            {table, 0, (uint64_t)P * row, VK_ACCESS_READ},
            kernel_bind_rows(y, row, r0, m, VK_ACCESS_WRITE),
            /* Without positions binding 3 is never read: the table stands in. */
            pos ? (struct vk_bind){pos, 0, (uint64_t)T * 4, VK_ACCESS_READ}
                : (struct vk_bind){table, 0, 4, VK_ACCESS_READ},
        };
        uint32_t gx, gy;
        kernel_grid_1d(ctx, (m * (D / 2) + wg - 1) / wg, &gx, &gy);
        st = vk_recorder_dispatch(rec, pipe, binds, 4, &push, gx, gy, 1);
    }
    return st;
}

vp_status kernel_rope_forward(vp_context *ctx, struct vk_recorder *rec, const struct vk_buffer *y,
                              const struct vk_buffer *x, const struct vk_buffer *table,
                              const struct vk_buffer *pos, uint32_t BH, uint32_t T, uint32_t D,
                              uint32_t P, int32_t offset) {
    return rope(ctx, rec, false, "rope_forward", y, x, table, pos, BH, T, D, P, offset);
}

vp_status kernel_rope_backward(vp_context *ctx, struct vk_recorder *rec,
                               const struct vk_buffer *dx, const struct vk_buffer *dy,
                               const struct vk_buffer *table, const struct vk_buffer *pos,
                               uint32_t BH, uint32_t T, uint32_t D, uint32_t P, int32_t offset) {
    return rope(ctx, rec, true, "rope_backward", dx, dy, table, pos, BH, T, D, P, offset);
}
