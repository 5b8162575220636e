#version 450
// Prefix gradients: dprefix_k[h,l,:] += sum_b part[0,b,h,l,:] and
// dprefix_v likewise from part[1], summed in batch order so the result is
// the same every run (attention_backward_dkv.comp wrote the parts).
#include "common.glsl"

layout(std430, binding = 0) readonly buffer Part { float part[]; };  // (2,B,H,L,D)
layout(std430, binding = 1) buffer DPK { float dpk[]; };             // (H,L,D)
layout(std430, binding = 2) buffer DPV { float dpv[]; };             // (H,L,D)

// C twin: struct prefix_reduce_push in runtime/kernels/attention.c
layout(push_constant) uniform Push {
    uint n; // H*L*D
    uint B;
    uint pad0, pad1;
} p;

void main() {
    const uint i = vp_flat_index();
    if (i >= p.n) return;
    float sk = 0.0, sv = 0.0;
    const uint half_ = p.B * p.n;
    for (uint b = 0u; b < p.B; b++) {
        sk += part[b * p.n + i];
        sv += part[half_ + b * p.n + i];
    }
    dpk[i] += sk;
    dpv[i] += sv;
}
