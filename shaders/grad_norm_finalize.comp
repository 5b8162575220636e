#version 450
// Global gradient norm, pass 2 (one workgroup): adds the partial sums of
// squares in a fixed order and writes
//   out = { norm = sqrt(sum), coef = min(1, max_norm / (norm + 1e-6)) },
// torch.nn.utils.clip_grad_norm_'s factor, computed in fp32 as PyTorch does
// on an fp32 norm. The coefficient stays on the device: clip_grads.comp or
// the optimiser steps read it, so a whole step is one submission.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer Part { float part[]; };
layout(std430, binding = 1) writeonly buffer Out { float norm, coef; };

// C twin: struct grad_norm_finalize_push in runtime/kernels/optimizer.c
layout(push_constant) uniform Push {
    uint count;
    float max_norm;
    uint pad0, pad1;
} p;

shared float sh[VP_WG_X];

void main() {
    const uint tid = gl_LocalInvocationID.x;
    float s = 0.0;
    for (uint i = tid; i < p.count; i += VP_WG_X) s += part[i];
    sh[tid] = s;
    barrier();
    for (uint half_ = VP_WG_X / 2u; half_ > 0u; half_ >>= 1) {
        if (tid < half_) sh[tid] += sh[tid + half_];
        barrier();
    }
    if (tid == 0u) {
        float nrm = sqrt(sh[0]);
        norm = nrm;
        coef = min(p.max_norm / (nrm + 1e-6), 1.0);
    }
}
