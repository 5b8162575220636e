#version 450
// Global gradient norm, pass 1: each workgroup sums the squares of ITEMS
// blocks of VP_WG_X consecutive values of a span (invocation t takes
// t, t + WG, ...), merges its invocations with a fixed-shape tree and writes
// one partial sum; grad_norm_finalize.comp adds the partials in order. No
// atomics: the same gradients always give the same bits.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer G { float grad[]; };
layout(std430, binding = 1) writeonly buffer Part { float part[]; };

// C twin: struct grad_norm_push in runtime/kernels/optimizer.c
layout(push_constant) uniform Push {
    uint n;     // values in this dispatch
    uint base;  // span offset, in floats
    uint slot;  // partial index of this dispatch's first workgroup
    uint items; // blocks per workgroup
} p;

shared float sh[VP_WG_X];

void main() {
    const uint group = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    const uint per_group = VP_WG_X * p.items, tid = gl_LocalInvocationID.x;
    const uint begin = group * per_group;
    if (begin >= p.n) return; // whole workgroup
    float s = 0.0;
    for (uint k = 0u; k < p.items; k++) {
        uint i = begin + k * VP_WG_X + tid;
        if (i < p.n) {
            float g = grad[p.base + i];
            s += g * g;
        }
    }
    sh[tid] = s;
    barrier();
    for (uint half_ = VP_WG_X / 2u; half_ > 0u; half_ >>= 1) {
        if (tid < half_) sh[tid] += sh[tid + half_];
        barrier();
    }
    if (tid == 0u) part[p.slot + group] = sh[0];
}
