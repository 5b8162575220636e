#version 450
// Rotary position embedding, Hugging Face rotate_half form: pair
// (x[j], x[j + D/2]) of row t rotates by angle p_t·f_j, with cos and sin read
// from a host-built table (kernel_rope_table: row p = [cos | sin], D values):
//   forward   y1 = x1·cos − x2·sin,  y2 = x2·cos + x1·sin
//   BACKWARD  the inverse rotation (sin negated)
// p_t = (HAS_POS ? pos[t] : t) + offset, t = global row mod T; a position
// outside [0, P) writes NaN so the mistake shows. One invocation per pair.
// Bindings: 0 x (this dispatch's rows), 1 table (P, D), 2 y (rows),
// 3 pos (T) int32 (without HAS_POS, any buffer). y may be x.
#include "common.glsl"

#ifndef HAS_POS
#define HAS_POS 0
#endif
#ifndef BACKWARD
#define BACKWARD 0
#endif

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer TABLE { float table[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer POS { int pos[]; };

// C twin: struct rope_push in runtime/kernels/rope.c
layout(push_constant) uniform Push {
    uint rows;  // rows in this dispatch
    uint row0;  // global index of its first row
    uint T;
    uint D;
    uint P;
    int offset;
    uint pad0, pad1;
} p;

void main() {
    uint half_ = p.D / 2u;
    uint i = vp_flat_index();
    if (i >= p.rows * half_) return;
    uint row = i / half_, j = i - row * half_;
    uint t = (p.row0 + row) % p.T;
#if HAS_POS
    int position = pos[t] + p.offset;
#else
    int position = int(t) + p.offset;
#endif
    uint a = row * p.D + j, b = a + half_;
    if (position < 0 || position >= int(p.P)) {
        y[a] = uintBitsToFloat(0x7FC00000u);
        y[b] = uintBitsToFloat(0x7FC00000u);
        return;
    }
    float c = table[uint(position) * p.D + j];
    float s = table[uint(position) * p.D + half_ + j];
#if BACKWARD
    s = -s;
#endif
    float x1 = x[a], x2 = x[b];
    y[a] = x1 * c - x2 * s;
    y[b] = x2 * c + x1 * s;
}
