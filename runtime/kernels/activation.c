/* Pointwise activations and SwiGLU: shaders/activation.comp, one element per
 * invocation, split into dispatches that fit the binding range. */
#include "kernels.h"

#include <stdio.h>

struct activation_push {
    uint32_t n;
    uint32_t pad[3];
};
_Static_assert(sizeof(struct activation_push) == 16, "matches Push in shaders/activation.comp");

const char *kernel_activation_name(enum kernel_activation act) {
    switch (act) {
    case KERNEL_ACT_GELU: return "gelu";
    case KERNEL_ACT_GELU_TANH: return "gelu_tanh";
    case KERNEL_ACT_RELU: return "relu";
    case KERNEL_ACT_SILU: return "silu";
    case KERNEL_ACT_TANH: return "tanh";
    case KERNEL_ACT_ERF: return "erf";
    }
    return "unknown";
}

/* Records activation.comp over n elements: bufs[i] (named names[i]) are
 * the bindings in shader order, each n fp32 values. */
static vp_status record(vp_context *ctx, struct vk_recorder *rec, const char *op,
                        const char *defines, const struct vk_buffer *const *bufs,
                        const char *const *names, const enum vk_access *access, uint32_t count,
                        uint64_t n) {
    if (n == 0) return VP_OK;
    vp_status st = VP_OK;
    for (uint32_t i = 0; i < count && st == VP_OK; i++)
        st = kernel_check_tensor(ctx, bufs[i], n * 4, false, op, names[i]);
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_pipeline *pipe = NULL;
    if (st == VP_OK)
        st = kernel_pipeline(ctx, "activation.comp", defines, count,
                             sizeof(struct activation_push), wg, &pipe);
    const uint64_t rb[1] = {4};
    uint64_t chunk = kernel_rows_per_dispatch(ctx, n, rb, 1, 0);
    for (uint64_t i0 = 0; i0 < n && st == VP_OK; i0 += chunk) {
        uint64_t m = n - i0 < chunk ? n - i0 : chunk;
        struct activation_push push = {(uint32_t)m, {0, 0, 0}};
        struct vk_bind binds[5];
        for (uint32_t i = 0; i < count; i++) binds[i] = kernel_bind_rows(bufs[i], 4, i0, m, access[i]);
        uint32_t gx, gy;
        kernel_grid_1d(ctx, (m + wg - 1) / wg, &gx, &gy);
        st = vk_recorder_dispatch(rec, pipe, binds, count, &push, gx, gy, 1);
    }
    return st;
}

static vp_status check_act(enum kernel_activation act, const char *op) {
    if ((unsigned)act > KERNEL_ACT_ERF)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: unknown activation %d", op, (int)act);
    return VP_OK;
}

vp_status kernel_activation_forward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *y, const struct vk_buffer *x,
                                    uint64_t n, enum kernel_activation act) {
    static const char op[] = "activation_forward";
    vp_status st = check_act(act, op);
    if (st != VP_OK) return st;
    char defines[48];
    snprintf(defines, sizeof defines, "ACT=%d\nBACKWARD=0\n", (int)act);
    const struct vk_buffer *bufs[2] = {x, y};
    const char *const names[2] = {"x", "y"};
    const enum vk_access access[2] = {VK_ACCESS_READ, VK_ACCESS_WRITE};
    return record(ctx, rec, op, defines, bufs, names, access, 2, n);
}

vp_status kernel_activation_backward(vp_context *ctx, struct vk_recorder *rec,
                                     const struct vk_buffer *dx, const struct vk_buffer *dy,
                                     const struct vk_buffer *x, uint64_t n,
                                     enum kernel_activation act) {
    static const char op[] = "activation_backward";
    vp_status st = check_act(act, op);
    if (st != VP_OK) return st;
    char defines[48];
    snprintf(defines, sizeof defines, "ACT=%d\nBACKWARD=1\n", (int)act);
    const struct vk_buffer *bufs[3] = {dy, x, dx};
    const char *const names[3] = {"dy", "x", "dx"};
    const enum vk_access access[3] = {VK_ACCESS_READ, VK_ACCESS_READ, VK_ACCESS_WRITE};
    return record(ctx, rec, op, defines, bufs, names, access, 3, n);
}

vp_status kernel_swiglu_forward(vp_context *ctx, struct vk_recorder *rec,
                                const struct vk_buffer *y, const struct vk_buffer *gate,
                                const struct vk_buffer *up, uint64_t n) {
    const struct vk_buffer *bufs[3] = {gate, up, y};
    const char *const names[3] = {"gate", "up", "y"};
    const enum vk_access access[3] = {VK_ACCESS_READ, VK_ACCESS_READ, VK_ACCESS_WRITE};
    return record(ctx, rec, "swiglu_forward", "SWIGLU=1\nBACKWARD=0\n", bufs, names, access, 3, n);
}

vp_status kernel_swiglu_backward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *dgate, const struct vk_buffer *dup,
                                 const struct vk_buffer *dy, const struct vk_buffer *gate,
                                 const struct vk_buffer *up, uint64_t n) {
    const struct vk_buffer *bufs[5] = {dy, gate, up, dgate, dup};
    const char *const names[5] = {"dy", "gate", "up", "dgate", "dup"};
    const enum vk_access access[5] = {VK_ACCESS_READ, VK_ACCESS_READ, VK_ACCESS_READ,
                                      VK_ACCESS_WRITE, VK_ACCESS_WRITE};
    return record(ctx, rec, "swiglu_backward", "SWIGLU=1\nBACKWARD=1\n", bufs, names, access, 5, n);
}
