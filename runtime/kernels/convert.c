/* fp32 <-> fp16/bf16 storage conversion on the GPU (shaders/convert.comp),
 * bit-identical to the host's vp_f32_to_f16 and friends. */
#include "kernels.h"

#include <stdio.h>

struct convert_push {
    uint32_t n;
    uint32_t pad[3];
};
_Static_assert(sizeof(struct convert_push) == 16, "matches Push in shaders/convert.comp");

vp_status kernel_convert(vp_context *ctx, struct vk_recorder *rec, const struct vk_buffer *dst,
                         const struct vk_buffer *src, uint64_t n, enum vp_dtype dst_type,
                         enum vp_dtype src_type) {
    static const char op[] = "convert";
    if ((unsigned)dst_type > VP_DTYPE_BF16 || (unsigned)src_type > VP_DTYPE_BF16 ||
        (dst_type == VP_DTYPE_F32) == (src_type == VP_DTYPE_F32))
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: %s to %s; one side must be f32 and the other not",
                       op, vp_dtype_name(src_type), vp_dtype_name(dst_type));
    if (n == 0) return VP_OK;
    uint64_t sb = vp_dtype_size(src_type), db = vp_dtype_size(dst_type);
    vp_status st = kernel_check_tensor(ctx, dst, n * db, false, op, "dst");
    if (st == VP_OK) st = kernel_check_tensor(ctx, src, n * sb, false, op, "src");
    if (st != VP_OK) return st;
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    char defines[32];
    snprintf(defines, sizeof defines, "SRC=%d\nDST=%d\n", (int)src_type, (int)dst_type);
    struct vk_pipeline *pipe;
    st = kernel_pipeline(ctx, "convert.comp", defines, 2, sizeof(struct convert_push), wg, &pipe);
    /* Chunks start on the alignment for both sides, so on an even element:
     * no 32-bit word of a 16-bit tensor is shared by two dispatches. */
    const uint64_t rb[2] = {sb, db};
    uint64_t chunk = kernel_rows_per_dispatch(ctx, n, rb, 2, 2);
    bool narrowing = dst_type != VP_DTYPE_F32;
    for (uint64_t i0 = 0; i0 < n && st == VP_OK; i0 += chunk) {
        uint64_t m = n - i0 < chunk ? n - i0 : chunk;
        struct convert_push push = {(uint32_t)m, {0, 0, 0}};
        struct vk_bind binds[2] = {
            kernel_bind_rows(src, sb, i0, m, VK_ACCESS_READ),
            /* An odd tail word is read back to keep its upper half. */
            kernel_bind_rows(dst, db, i0, m,
                             narrowing && (m & 1) ? VK_ACCESS_READ_WRITE : VK_ACCESS_WRITE),
        };
        uint64_t invocations = narrowing ? (m + 1) / 2 : m;
        uint32_t gx, gy;
        kernel_grid_1d(ctx, (invocations + wg - 1) / wg, &gx, &gy);
        st = vk_recorder_dispatch(rec, pipe, binds, 2, &push, gx, gy, 1);
    }
    return st;
}
