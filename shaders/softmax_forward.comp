#version 450
// Masked softmax over rows of C values: y = exp(x − max)/Σ exp(x − max) over
// the visible entries, 0 elsewhere; a row with nothing visible is all zeros.
// Entry (r, c) (r the global row) is visible when
//   HAS_KEEP: byte (r / keep_rows)·C + c of `keep` is non-zero, and
//   causal_T > 0: c <= r mod causal_T + causal_offset.
// Three sweeps per row: max, then y = exp(x − max) with the sum, then y/sum.
// A row is treated as having nothing visible when its visible maximum is
// −Inf (the reference would give NaN if every visible x were −Inf).
// SERIAL = 1: one invocation per row; SERIAL = 0: one workgroup of WG
// invocations per row with fixed-tree reductions (reduce.glsl).
// Bindings: 0 x, 1 y, 2 keep (bytes as 32-bit words; without HAS_KEEP, any
// buffer). y may be x.
#include "common.glsl"

#ifndef SERIAL
#define SERIAL 0
#endif
#ifndef WG // the kernels set it; this default lets the shader compile alone
#define WG 64
#endif
#ifndef HAS_KEEP
#define HAS_KEEP 0
#endif

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Y { float y[]; };
layout(std430, binding = 2) readonly buffer KEEP { uint keep[]; };

// C twin: struct softmax_push in runtime/kernels/softmax.c
layout(push_constant) uniform Push {
    uint rows;       // rows in this dispatch
    uint C;
    uint row0;       // global index of the dispatch's first row
    uint keep_rows;
    uint causal_T;
    int causal_offset;
    uint pad0, pad1;
} p;

#define NEG_INF uintBitsToFloat(0xFF800000u)

bool visible(uint r, uint c) {
#if HAS_KEEP
    uint b = (r / p.keep_rows) * p.C + c;
    if (((keep[b >> 2] >> (8u * (b & 3u))) & 0xFFu) == 0u) return false;
#endif
    if (p.causal_T > 0u && int(c) > int(r % p.causal_T) + p.causal_offset) return false;
    return true;
}

#if SERIAL
void main() {
    uint lr = vp_flat_index();
    if (lr >= p.rows) return;
    uint r = p.row0 + lr, base = lr * p.C;
    float m = NEG_INF;
    for (uint c = 0u; c < p.C; c++)
        if (visible(r, c)) m = max(m, x[base + c]);
    bool any = m > NEG_INF;
    float sum = 0.0;
    for (uint c = 0u; c < p.C; c++) {
        float e = visible(r, c) ? exp(x[base + c] - m) : 0.0;
        y[base + c] = e;
        sum += e;
    }
    if (!any) return;  // all zeros already
    float inv = 1.0 / sum;
    for (uint c = 0u; c < p.C; c++) y[base + c] *= inv;
}
#else
#define VP_RED_WG WG
#include "reduce.glsl"
void main() {
    uint lr = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (lr >= p.rows) return;  // uniform across the workgroup
    uint l = gl_LocalInvocationID.x;
    uint r = p.row0 + lr, base = lr * p.C;
    float m = NEG_INF;
    for (uint c = l; c < p.C; c += WG)
        if (visible(r, c)) m = max(m, x[base + c]);
    m = vp_wg_max(m);
    bool any = m > NEG_INF;
    float sum = 0.0;
    for (uint c = l; c < p.C; c += WG) {
        float e = visible(r, c) ? exp(x[base + c] - m) : 0.0;
        y[base + c] = e;
        sum += e;
    }
    sum = vp_wg_sum(sum);
    if (!any) return;
    float inv = 1.0 / sum;
    for (uint c = l; c < p.C; c += WG) y[base + c] *= inv;
}
#endif
