#version 450
// Sigmoid gate backward, deterministic two-pass reduction for dg:
//   PASS 1: one invocation per (channel c, block of RB rows): walks the
//           block's rows in order, writes dd = σ(g)·dy when HAS_DD and the
//           block's partial Σ dy·d of channel c to partial[block, c] when
//           HAS_DG. Bindings dy, d, g, dd, partial.
//   PASS 2: dg[k] += σ'(g_k)·Σ partials in a fixed order. G = C: one
//           invocation per channel sums its blocks in order. G = 1: one
//           workgroup; invocation l sums channels l, l+WG, ... (each over
//           blocks in order), then a fixed tree. Bindings partial, g, dg.
// No atomics: the result depends only on N, C and the workgroup width.
#include "common.glsl"

#ifndef PASS
#define PASS 1
#endif
#ifndef HAS_DD
#define HAS_DD 1
#endif
#ifndef HAS_DG
#define HAS_DG 1
#endif
#ifndef RB
#define RB 64
#endif
#ifndef SCALAR_GATE
#define SCALAR_GATE 0
#endif

float sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }

#if PASS == 1
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer D { float d[]; };
layout(std430, binding = 2) readonly buffer G { float g[]; };
layout(std430, binding = 3) writeonly buffer DD { float dd[]; };
layout(std430, binding = 4) writeonly buffer PART { float partial[]; };

// C twin: struct gate_pass1_push in runtime/kernels/elementwise.c
layout(push_constant) uniform Push {
    uint rows;   // rows in this dispatch
    uint C;
    uint G;
    uint block0; // global index of this dispatch's first block
} p;

void main() {
    uint c = gl_WorkGroupID.x * VP_WG_X + gl_LocalInvocationID.x;
    uint block = gl_WorkGroupID.y;
    if (c >= p.C) return;
    uint r0 = block * RB, r1 = min(r0 + RB, p.rows);
#if HAS_DD
    float s = sigmoid(g[p.G == 1u ? 0u : c]);
#endif
    float sum = 0.0;
    for (uint r = r0; r < r1; r++) {
        uint i = r * p.C + c;
        float v = dy[i];
#if HAS_DD
        dd[i] = s * v;
#endif
        sum = fma(v, d[i], sum);
    }
#if HAS_DG
    partial[(p.block0 + block) * p.C + c] = sum;
#endif
}

#else
layout(std430, binding = 0) readonly buffer PART { float partial[]; };
layout(std430, binding = 1) readonly buffer G { float g[]; };
layout(std430, binding = 2) buffer DG { float dg[]; };

// C twin: struct gate_pass2_push in runtime/kernels/elementwise.c
layout(push_constant) uniform Push {
    uint blocks;
    uint C;
    uint G;
    uint pad;
} p;

#if SCALAR_GATE
#define VP_RED_WG WG
#include "reduce.glsl"
void main() {
    uint l = gl_LocalInvocationID.x;
    float sum = 0.0;
    for (uint c = l; c < p.C; c += VP_WG_X)
        for (uint b = 0u; b < p.blocks; b++) sum += partial[b * p.C + c];
    sum = vp_wg_sum(sum);
    if (l == 0u) {
        float s = sigmoid(g[0]);
        dg[0] += s * (1.0 - s) * sum;
    }
}
#else
void main() {
    uint c = vp_flat_index();
    if (c >= p.C) return;
    float sum = 0.0;
    for (uint b = 0u; b < p.blocks; b++) sum += partial[b * p.C + c];
    float s = sigmoid(g[c]);
    dg[c] += s * (1.0 - s) * sum;
}
#endif
#endif
