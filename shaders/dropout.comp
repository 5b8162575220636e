#version 450
// Dropout: y[i] = x[i]·scale if element i is kept, else 0, with the keep
// decision from Philox (philox.glsl, vp_dropout_keep) for the element's flat
// index in the whole tensor: a dispatch covering elements [first, first + n)
// adds `first` (64-bit, as lo/hi) to its local index. Used for the forward
// (x, y) and the backward (dy, dx) alike: the same mask. y may be x.
#include "common.glsl"
#include "philox.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };

// C twin: struct dropout_push in runtime/kernels/dropout.c
layout(push_constant) uniform Push {
    uint n;
    uint first_lo, first_hi;
    uint seed_lo, seed_hi;
    uint step;
    uint stream;
    uint threshold;  // ceil(p·2^24): keep iff Philox's top 24 bits >= it
    float scale;     // 1/(1 − p)
    uint pad0, pad1, pad2;
} p;

void main() {
    uint i = vp_flat_index();
    if (i >= p.n) return;
    uint lo = p.first_lo + i;
    uint hi = p.first_hi + (lo < i ? 1u : 0u);  // carry
    bool keep = vp_dropout_keep(uvec2(p.seed_lo, p.seed_hi), p.step, p.stream, lo, hi,
                                p.threshold);
    y[i] = keep ? x[i] * p.scale : 0.0;
}
