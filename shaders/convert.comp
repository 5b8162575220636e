#version 450
// Storage conversion, bit-exact with round-to-nearest-even (convert.glsl):
//   SRC 0 → DST 1/2: f32 → f16/bf16. One invocation per output word (two
//     elements); for an odd n the last word keeps its upper half (the bytes
//     after the tensor) as it was.
//   SRC 1/2 → DST 0: f16/bf16 → f32, one invocation per element.
// Floats move as bit patterns: no float operation touches them.
// Bindings: 0 src, 1 dst (this dispatch's elements, as 32-bit words).
#include "common.glsl"
#include "convert.glsl"

#ifndef SRC
#define SRC 0
#endif
#ifndef DST
#define DST 1
#endif

layout(std430, binding = 0) readonly buffer S { uint src[]; };
layout(std430, binding = 1) buffer D { uint dst[]; };

// C twin: struct convert_push in runtime/kernels/convert.c
layout(push_constant) uniform Push {
    uint n;  // elements in this dispatch
    uint pad0, pad1, pad2;
} p;

uint narrow(uint bits) {
#if DST == 1
    return vp_f32_bits_to_f16(bits);
#else
    return vp_f32_bits_to_bf16(bits);
#endif
}

void main() {
    uint i = vp_flat_index();
#if SRC == 0
    uint e = 2u * i;
    if (e >= p.n) return;
    uint lo = narrow(src[e]);
    uint hi = e + 1u < p.n ? narrow(src[e + 1u]) : (dst[i] >> 16);
    dst[i] = lo | (hi << 16);
#else
    if (i >= p.n) return;
    uint h = vp_half_of(src[i >> 1], i);
#if SRC == 1
    dst[i] = vp_f16_bits_to_f32_bits(h);
#else
    dst[i] = h << 16;
#endif
#endif
}
