/* GPU kernels: one C wrapper per shader family. Each wrapper records its
 * dispatches into a recorder, declaring what it reads and writes. Tensor
 * arguments carry a shape comment; outputs come first. */
#ifndef VKPEFT_KERNELS_H
#define VKPEFT_KERNELS_H

#include "vk.h"

/* Storage types of tensors in device memory. Arithmetic is always fp32:
 * f16 and bf16 values are read as packed 32-bit words and unpacked in the
 * shader (unpackHalf2x16, or a shift for bf16), so no 16-bit storage feature
 * is needed; where the limits allow 16-bit storage a kernel may use it. */
enum vp_dtype { VP_DTYPE_F32 = 0, VP_DTYPE_F16, VP_DTYPE_BF16 };

static inline size_t vp_dtype_size(enum vp_dtype t) { return t == VP_DTYPE_F32 ? 4 : 2; }
const char *vp_dtype_name(enum vp_dtype t);

/* y = a*x + b elementwise over n fp32 values. y and x may be the same piece.
 * Buffers longer than the binding range are processed in ranges that fit. */
vp_status kernel_scale_add(vp_context *ctx, struct vk_recorder *rec,
                           const struct vk_buffer *y, /* (n) fp32 */
                           const struct vk_buffer *x, /* (n) fp32 */
                           uint64_t n, float a, float b);

/* Workgroup size for 1-D elementwise kernels under the context's limits. */
uint32_t kernel_elementwise_workgroup(const vp_context *ctx);

/* Splits `groups` workgroups into a 2-D grid the device accepts. */
void kernel_grid_1d(const vp_context *ctx, uint64_t groups, uint32_t *gx, uint32_t *gy);

#endif
