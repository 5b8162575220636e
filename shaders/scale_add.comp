#version 450
// y[i] = a * x[i] + b for i < n: residual scaling, "scale by s", constant
// fill (a = 0) and the runtime's own dispatch tests. x and y may be the same
// range (in place).
#include "common.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };

// C twin: struct scale_add_push in runtime/kernels/elementwise.c
layout(push_constant) uniform Push {
    uint n;
    float a;
    float b;
    uint pad;
} p;

void main() {
    uint i = vp_flat_index();
    if (i < p.n) y[i] = p.a * x[i] + p.b;
}
