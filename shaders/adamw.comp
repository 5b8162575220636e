#version 450
// One AdamW step (torch.optim.AdamW, amsgrad off, single-tensor path) over a
// span of one or more fp32 tensors laid end to end:
//   p <- p (1 - lr wd)                      if `decay` (decoupled decay)
//   m <- lerp(m, g, 1 - b1)                 (PyTorch's m.lerp_(g, 1 - b1))
//   v <- v b2 + (1 - b2) g g
//   p <- p - step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps),  step_size = lr / (1 - b1^t)
// with g = grad, times the clip coefficient when `use_clip`, which also skips the update
// when the norm beside it is not finite. Hyperparameters
// come from a device buffer (struct kernel_adamw_hparams) that the host
// rewrites between runs of a recording; the scalars that depend on the
// step are computed there in double, as PyTorch does in Python.
#include "common.glsl"

layout(std430, binding = 0) buffer P { float prm[]; };
layout(std430, binding = 1) readonly buffer G { float grad[]; };
layout(std430, binding = 2) buffer M1 { float m1[]; };
layout(std430, binding = 3) buffer M2 { float m2[]; };
// C twin: struct kernel_adamw_hparams in runtime/kernels/kernels.h
layout(std430, binding = 4) readonly buffer Hp {
    float lr, beta1, beta2, eps, weight_decay;
    float decay_factor;          // 1 - lr wd
    float step_size;             // lr / (1 - b1^t)
    float bias_correction2_sqrt; // sqrt(1 - b2^t)
    float one_minus_beta1, one_minus_beta2;
    uint step, pad;
} h;
layout(std430, binding = 5) readonly buffer Clip { float clip_norm, clip_coef; };

// C twin: struct opt_push in runtime/kernels/optimizer.c
layout(push_constant) uniform Push {
    uint n;                          // elements in this dispatch
    uint base_p, base_g, base_m, base_v; // span offsets, in floats
    uint decay, use_clip, pad;
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
    if (p.decay != 0u) w *= h.decay_factor;
    float m = m1[p.base_m + i];
    // torch.lerp: weight < 0.5 ? m + wt (g - m) : g - (g - m)(1 - wt)
    m = h.one_minus_beta1 < 0.5 ? m + h.one_minus_beta1 * (g - m)
                                : g - (g - m) * (1.0 - h.one_minus_beta1);
    float v = m2[p.base_v + i] * h.beta2 + h.one_minus_beta2 * g * g;
    float denom = sqrt(v) / h.bias_correction2_sqrt + h.eps;
    w += -h.step_size * m / denom;
    prm[p.base_p + i] = w;
    m1[p.base_m + i] = m;
    m2[p.base_v + i] = v;
}
