#version 450
// Learned sigmoid gate (gated composition): y = h + σ(g) ⊙ d over (N,C),
// g of length G = 1 (one scalar) or G = C (per channel). One element per
// invocation; a dispatch covers elements [first, first + n) of the tensor,
// and first mod C arrives as `col0` so channels stay right across ranges.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer H { float h[]; };
layout(std430, binding = 1) readonly buffer D { float d[]; };
layout(std430, binding = 2) readonly buffer G { float g[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

// C twin: struct gate_forward_push in runtime/kernels/elementwise.c
layout(push_constant) uniform Push {
    uint n;
    uint C;
    uint G;
    uint col0;
} p;

void main() {
    uint i = vp_flat_index();
    if (i >= p.n) return;
    uint c = (p.col0 + i) % p.C;
    float gv = g[p.G == 1u ? 0u : c];
    y[i] = fma(1.0 / (1.0 + exp(-gv)), d[i], h[i]);
}
