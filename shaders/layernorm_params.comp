#version 450
// Norm parameter gradients, deterministic two-pass reduction (no atomics):
//   PASS 1: one invocation per (channel c, block of RB rows) sums the block's
//           rows in order: partial[block, c] = Σ dy·x̂ (x̂ = (x − μ)·rstd,
//           RMSNorm μ = 0) and, for LayerNorm, partial[blocks + block, c] =
//           Σ dy. Bindings 0 dy, 1 x, 2 rstd, 3 partial; LayerNorm 4 mean.
//   PASS 2: one invocation per channel sums the blocks in order and adds
//           once: dγ[c] += Σ_b partial[b, c], dβ[c] += Σ_b partial[blocks + b, c].
//           Bindings 0 partial, 1 dγ, 2 dβ; a missing gradient (HAS_DG or
//           HAS_DB 0) is bound to the partials and left alone.
// RMS = 1 for RMSNorm (dw only).
#include "common.glsl"

#ifndef RMS
#define RMS 0
#endif
#ifndef PASS
#define PASS 1
#endif
#ifndef RB
#define RB 64
#endif
#ifndef HAS_DG
#define HAS_DG 1
#endif
#ifndef HAS_DB
#define HAS_DB 0
#endif

// C twin: struct norm_params_push in runtime/kernels/norm.c
layout(push_constant) uniform Push {
    uint rows;    // PASS 1: rows in this dispatch
    uint C;
    uint block0;  // PASS 1: global index of the dispatch's first block
    uint blocks;  // all blocks (the partials' row count)
} p;

#if PASS == 1
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer RSTD { float rstd_in[]; };
layout(std430, binding = 3) writeonly buffer PART { float partial[]; };
#if !RMS
layout(std430, binding = 4) readonly buffer MEAN { float mean_in[]; };
#endif

void main() {
    uint c = gl_WorkGroupID.x * VP_WG_X + gl_LocalInvocationID.x;
    uint block = gl_WorkGroupID.y;
    if (c >= p.C) return;
    uint r1 = min(block * RB + RB, p.rows);
    float sum_gx = 0.0, sum_g = 0.0;
    for (uint r = block * RB; r < r1; r++) {
        float d = dy[r * p.C + c];
#if RMS
        float xhat = x[r * p.C + c] * rstd_in[r];
#else
        float xhat = (x[r * p.C + c] - mean_in[r]) * rstd_in[r];
        sum_g += d;
#endif
        sum_gx = fma(d, xhat, sum_gx);
    }
    uint b = p.block0 + block;
    partial[b * p.C + c] = sum_gx;
#if !RMS
    partial[(p.blocks + b) * p.C + c] = sum_g;
#endif
}

#else
layout(std430, binding = 0) readonly buffer PART { float partial[]; };
layout(std430, binding = 1) buffer DG { float dgamma[]; };
layout(std430, binding = 2) buffer DB { float dbeta[]; };

void main() {
    uint c = vp_flat_index();
    if (c >= p.C) return;
#if HAS_DG
    float s = 0.0;
    for (uint b = 0u; b < p.blocks; b++) s += partial[b * p.C + c];
    dgamma[c] += s;
#endif
#if HAS_DB
    float t = 0.0;
    for (uint b = 0u; b < p.blocks; b++) t += partial[(p.blocks + b) * p.C + c];
    dbeta[c] += t;
#endif
}
#endif
