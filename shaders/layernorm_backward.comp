#version 450
// LayerNorm (RMS = 0) and RMSNorm (RMS = 1) backward, the input gradient:
//   x̂ = (x − μ)·rstd (RMSNorm: μ = 0), g = dy ⊙ γ,
//   LayerNorm: dx = rstd·(g − mean_c(g) − x̂·mean_c(g ⊙ x̂))
//   RMSNorm:   dx = rstd·(g − x̂·mean_c(g ⊙ x̂))
// dx is overwritten. The parameter gradients are layernorm_params.comp.
// SERIAL and WG as in layernorm_forward.comp.
//
// Bindings: 0 dy, 1 x, 2 rstd, 3 γ (or w), 4 dx; LayerNorm adds 5 mean.
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

layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer RSTD { float rstd_in[]; };
layout(std430, binding = 3) readonly buffer GAMMA { uint gamma_w[]; };
layout(std430, binding = 4) writeonly buffer DX { float dx[]; };
#if !RMS
layout(std430, binding = 5) readonly buffer MEAN { float mean_in[]; };
#endif

// C twin: struct norm_push in runtime/kernels/norm.c
layout(push_constant) uniform Push {
    uint rows;
    uint C;
    float eps;
    uint pad;
} p;

float gamma_at(uint c) { return vp_load_typed(gamma_w[WDTYPE == 0 ? c : c >> 1], c, WDTYPE); }

#if SERIAL
void main() {
    uint r = vp_flat_index();
    if (r >= p.rows) return;
    uint base = r * p.C;
#if RMS
    float mean = 0.0;
#else
    float mean = mean_in[r];
#endif
    float rs = rstd_in[r];
    float sum_g = 0.0, sum_gx = 0.0;
    for (uint c = 0u; c < p.C; c++) {
        float g = dy[base + c] * gamma_at(c);
        sum_g += g;
        sum_gx = fma(g, (x[base + c] - mean) * rs, sum_gx);
    }
#else
#define VP_RED_WG WG
#include "reduce.glsl"
void main() {
    uint r = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (r >= p.rows) return;  // uniform across the workgroup
    uint l = gl_LocalInvocationID.x;
    uint base = r * p.C;
#if RMS
    float mean = 0.0;
#else
    float mean = mean_in[r];
#endif
    float rs = rstd_in[r];
    vec2 part = vec2(0.0);
    for (uint c = l; c < p.C; c += WG) {
        float g = dy[base + c] * gamma_at(c);
        part.x += g;
        part.y = fma(g, (x[base + c] - mean) * rs, part.y);
    }
    vec2 sums = vp_wg_sum2(part);
    float sum_g = sums.x, sum_gx = sums.y;
#endif
    float mean_gx = sum_gx / float(p.C);
#if RMS
    float mean_g = 0.0;
#else
    float mean_g = sum_g / float(p.C);
#endif
#if SERIAL
    for (uint c = 0u; c < p.C; c++) {
#else
    for (uint c = l; c < p.C; c += WG) {
#endif
        float xhat = (x[base + c] - mean) * rs;
        float g = dy[base + c] * gamma_at(c);
        dx[base + c] = rs * (g - mean_g - xhat * mean_gx);
    }
}
