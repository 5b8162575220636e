#version 450
// Gradient clipping: g <- g coef over a span, coef from grad_norm_finalize
// (PyTorch multiplies even when coef is 1; so does this).
#include "common.glsl"

layout(std430, binding = 0) buffer G { float grad[]; };
layout(std430, binding = 1) readonly buffer Clip { float clip_norm, clip_coef; };

// C twin: struct clip_push in runtime/kernels/optimizer.c
layout(push_constant) uniform Push {
    uint n, base, pad0, pad1;
} p;

void main() {
    const uint i = vp_flat_index();
    if (i < p.n) grad[p.base + i] *= clip_coef;
}
