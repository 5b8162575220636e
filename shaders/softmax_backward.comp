#version 450
// Softmax backward over rows of C values: dx = y ⊙ (dy − Σ_c y ⊙ dy)
// (overwrite). Masked entries have y = 0 and get 0. SERIAL as in
// softmax_forward.comp. Bindings: 0 dy, 1 y, 2 dx; dx may be dy.
#include "common.glsl"

#ifndef SERIAL
#define SERIAL 0
#endif
#ifndef WG // the kernels set it; this default lets the shader compile alone
#define WG 64
#endif

layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer Y { float y[]; };
layout(std430, binding = 2) writeonly buffer DX { float dx[]; };

// C twin: struct softmax_push in runtime/kernels/softmax.c
layout(push_constant) uniform Push {
    uint rows;
    uint C;
    uint row0;
    uint keep_rows;
    uint causal_T;
    int causal_offset;
    uint pad0, pad1;
} p;

#if SERIAL
void main() {
    uint lr = vp_flat_index();
    if (lr >= p.rows) return;
    uint base = lr * p.C;
    float dot = 0.0;
    for (uint c = 0u; c < p.C; c++) dot = fma(y[base + c], dy[base + c], dot);
    for (uint c = 0u; c < p.C; c++) dx[base + c] = y[base + c] * (dy[base + c] - dot);
}
#else
#define VP_RED_WG WG
#include "reduce.glsl"
void main() {
    uint lr = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (lr >= p.rows) return;
    uint l = gl_LocalInvocationID.x;
    uint base = lr * p.C;
    float dot = 0.0;
    for (uint c = l; c < p.C; c += WG) dot = fma(y[base + c], dy[base + c], dot);
    dot = vp_wg_sum(dot);
    for (uint c = l; c < p.C; c += WG) dx[base + c] = y[base + c] * (dy[base + c] - dot);
}
#endif
