/* Elementwise kernels. */
#include "kernels.h"

struct scale_add_push {
    uint32_t n;
    float a, b;
    uint32_t pad;
};
_Static_assert(sizeof(struct scale_add_push) == 16, "matches Push in shaders/scale_add.comp");

const char *vp_dtype_name(enum vp_dtype t) {
    switch (t) {
    case VP_DTYPE_F32: return "f32";
    case VP_DTYPE_F16: return "f16";
    case VP_DTYPE_BF16: return "bf16";
    }
    return "unknown";
}

uint32_t kernel_elementwise_workgroup(const vp_context *ctx) {
    uint32_t wg = 256;
    uint32_t lim = vp_context_limits(ctx)->max_workgroup_invocations;
    uint32_t dev = vp_context_device(ctx)->max_workgroup_size[0];
    if (wg > lim) wg = lim;
    if (wg > dev) wg = dev;
    return wg;
}

void kernel_grid_1d(const vp_context *ctx, uint64_t groups, uint32_t *gx, uint32_t *gy) {
    uint32_t maxx = vp_context_device(ctx)->max_workgroup_count[0];
    if (groups == 0) groups = 1;
    *gx = groups < maxx ? (uint32_t)groups : maxx;
    *gy = (uint32_t)((groups + *gx - 1) / *gx);
}

vp_status kernel_scale_add(vp_context *ctx, struct vk_recorder *rec, const struct vk_buffer *y,
                           const struct vk_buffer *x, uint64_t n, float a, float b) {
    if (n == 0) return VP_OK;
    if (x->size < n * 4 || y->size < n * 4)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "scale_add: %llu floats do not fit the buffers",
                       (unsigned long long)n);
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_kernel_desc desc = {
        .shader = "scale_add.comp",
        .bindings = 2,
        .push_size = sizeof(struct scale_add_push),
        .spec_count = 1,
        .spec = {wg},
    };
    struct vk_pipeline *pipe;
    vp_status s = vk_pipeline_get(ctx, &desc, &pipe);
    if (s != VP_OK) return s;
    /* x and y are both fp32 arrays of n: the same relative ranges fit both. */
    struct vk_buffer span = *x;
    span.size = n * 4;
    struct vk_range ranges[64];
    uint32_t count = vk_buffer_ranges(ctx, &span, 4, ranges, 64);
    if (count > 64) return vp_fail(VP_ERROR_UNSUPPORTED, "scale_add: tensor too large to split");
    for (uint32_t i = 0; i < count && s == VP_OK; i++) {
        uint64_t elems = ranges[i].size / 4;
        struct scale_add_push push = {(uint32_t)elems, a, b, 0};
        struct vk_bind binds[2] = {
            {x, ranges[i].offset, ranges[i].size, VK_ACCESS_READ},
            {y, ranges[i].offset, ranges[i].size, VK_ACCESS_WRITE},
        };
        uint32_t gx, gy;
        kernel_grid_1d(ctx, (elems + wg - 1) / wg, &gx, &gy);
        s = vk_recorder_dispatch(rec, pipe, binds, 2, &push, gx, gy, 1);
    }
    return s;
}
