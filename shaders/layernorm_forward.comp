#version 450
// LayerNorm (RMS = 0) and RMSNorm (RMS = 1) forward over rows of C values:
//   LayerNorm: μ = mean(x), σ² = mean((x − μ)²) (two passes, biased),
//              rstd = 1/sqrt(σ² + eps), y = (x − μ)·rstd·γ + β
//   RMSNorm:   rstd = 1/sqrt(mean(x²) + eps), y = x·rstd·w
// SERIAL = 1: one invocation per row, plain loops. SERIAL = 0: one
// workgroup (WG invocations, a power of two) per row; invocation l sums
// columns l, l+WG, ... and a fixed tree combines them (reduce.glsl).
// Weights are stored as WDTYPE (0 f32, 1 f16, 2 bf16), read as 32-bit words.
//
// Bindings: 0 x, 1 y, 2 rstd, 3 γ (or w); LayerNorm adds 4 mean and, with
// HAS_BETA, 5 β.
#include "common.glsl"
#include "convert.glsl"

#ifndef RMS
#define RMS 0
#endif
#ifndef SERIAL
#define SERIAL 0
#endif
#ifndef WG // the kernels set it; this default lets the shader compile alone
#define WG 64
#endif
#ifndef WDTYPE
#define WDTYPE 0
#endif
#ifndef HAS_BETA
#define HAS_BETA 0
#endif

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(std430, binding = 2) writeonly buffer RSTD { float rstd_out[]; };
layout(std430, binding = 3) readonly buffer GAMMA { uint gamma_w[]; };
#if !RMS
layout(std430, binding = 4) writeonly buffer MEAN { float mean_out[]; };
#if HAS_BETA
layout(std430, binding = 5) readonly buffer BETA { uint beta_w[]; };
#endif
#endif

// C twin: struct norm_push in runtime/kernels/norm.c
layout(push_constant) uniform Push {
    uint rows;
    uint C;
    float eps;
    uint pad;
} p;

float gamma_at(uint c) { return vp_load_typed(gamma_w[WDTYPE == 0 ? c : c >> 1], c, WDTYPE); }
#if !RMS && HAS_BETA
float beta_at(uint c) { return vp_load_typed(beta_w[WDTYPE == 0 ? c : c >> 1], c, WDTYPE); }
#else
float beta_at(uint c) { return 0.0; }
#endif

#if SERIAL
void main() {
    uint r = vp_flat_index();
    if (r >= p.rows) return;
    uint base = r * p.C;
    float mean = 0.0, var = 0.0;
#if !RMS
    for (uint c = 0u; c < p.C; c++) mean += x[base + c];
    mean /= float(p.C);
#endif
    for (uint c = 0u; c < p.C; c++) {
        float d = x[base + c] - mean;
        var = fma(d, d, var);
    }
    float rs = 1.0 / sqrt(var / float(p.C) + p.eps);
    for (uint c = 0u; c < p.C; c++)
        y[base + c] = fma((x[base + c] - mean) * rs, gamma_at(c), beta_at(c));
    rstd_out[r] = rs;
#if !RMS
    mean_out[r] = mean;
#endif
}
#else
#define VP_RED_WG WG
#include "reduce.glsl"
void main() {
    uint r = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (r >= p.rows) return;  // uniform across the workgroup
    uint l = gl_LocalInvocationID.x;
    uint base = r * p.C;
    float mean = 0.0;
#if !RMS
    float s = 0.0;
    for (uint c = l; c < p.C; c += WG) s += x[base + c];
    mean = vp_wg_sum(s) / float(p.C);
#endif
    float v = 0.0;
    for (uint c = l; c < p.C; c += WG) {
        float d = x[base + c] - mean;
        v = fma(d, d, v);
    }
    float rs = 1.0 / sqrt(vp_wg_sum(v) / float(p.C) + p.eps);
    for (uint c = l; c < p.C; c += WG)
        y[base + c] = fma((x[base + c] - mean) * rs, gamma_at(c), beta_at(c));
    if (l == 0u) {
        rstd_out[r] = rs;
#if !RMS
        mean_out[r] = mean;
#endif
    }
}
#endif
