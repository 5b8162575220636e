#version 450
// One SGD step (torch.optim.SGD, dampening 0, nesterov off) over a span of
// one or more fp32 tensors laid end to end:
//   d <- g + wd p                         if `decay` (coupled L2 decay)
//   buf <- d at step 1, else momentum buf + d   (when there is a buffer and
//                                                momentum != 0)
//   p <- p - lr (buf or d)
// g = grad, times the clip coefficient when `use_clip`, which also skips the update
// when the norm beside it is not finite. Hyperparameters come
// from a device buffer (struct kernel_sgd_hparams) rewritten between runs.
#include "common.glsl"

layout(std430, binding = 0) buffer P { float prm[]; };
layout(std430, binding = 1) readonly buffer G { float grad[]; };
layout(std430, binding = 2) buffer Buf { float mom[]; };
// C twin: struct kernel_sgd_hparams in runtime/kernels/kernels.h
layout(std430, binding = 3) readonly buffer Hp {
    float lr, momentum, weight_decay;
    uint step;
} h;
layout(std430, binding = 4) readonly buffer Clip { float clip_norm, clip_coef; };

// C twin: struct opt_push in runtime/kernels/optimizer.c (base_v unused)
layout(push_constant) uniform Push {
    uint n;
    uint base_p, base_g, base_m, base_v;
    uint decay, use_clip;
    uint has_buf;
} p;

void main() {
    const uint i = vp_flat_index();
    if (i >= p.n) return;
    float g = grad[p.base_g + i];
    if (p.use_clip != 0u) {
        // A non-finite global norm (a NaN or Inf gradient somewhere) skips
        // the whole update: parameters and moments stay as they were.
        if (isnan(clip_norm) || isinf(clip_norm)) return;
        g *= clip_coef;
    }
    float w = prm[p.base_p + i];
    float d = p.decay != 0u ? g + h.weight_decay * w : g;
    if (p.has_buf != 0u && h.momentum != 0.0) {
        float b = h.step <= 1u ? d : h.momentum * mom[p.base_m + i] + d;
        mom[p.base_m + i] = b;
        d = b;
    }
    prm[p.base_p + i] = w + -h.lr * d;
}
