#version 450
// Residual add y[i] = a[i] + s·b[i] (s = 1: plain add; scaled parallel
// adapters use s). y may be the same range as a or b.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

// C twin: struct residual_push in runtime/kernels/elementwise.c
layout(push_constant) uniform Push {
    uint n;
    float s;
    uint pad0, pad1;
} p;

void main() {
    uint i = vp_flat_index();
    if (i < p.n) y[i] = fma(p.s, b[i], a[i]);
}
