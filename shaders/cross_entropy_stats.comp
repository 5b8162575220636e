#version 450
// Cross-entropy, pass 1: per (row, column chunk) statistics of the logits
//   m  = max z,  s = sum exp(z - m),  sz = sum z,  zy = z[target] if the
//   target column lies in this chunk, else 0,
// written as one vec4 per (row, chunk) for cross_entropy_finalize.comp.
// One workgroup per (row, chunk): each invocation keeps its own running
// (max, sum) over a strided set of columns, then a fixed-shape tree in
// shared memory merges them (deterministic). Ignored rows write zeros.
//
// A dispatch covers chunks first .. first + count - 1 in (row, chunk) order;
// its logits binding starts `base` floats before the first chunk's first
// column, so rows and chunks may straddle binding ranges freely.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer Z { float z[]; };          // logits span
layout(std430, binding = 1) readonly buffer Y { int targets[]; };      // (N)
layout(std430, binding = 2) writeonly buffer St { vec4 stats[]; };     // (N, chunks)

// C twin: struct ce_stats_push in runtime/kernels/cross_entropy.c
layout(push_constant) uniform Push {
    uint V;        // columns per row
    uint cols;     // columns per chunk (the last chunk of a row may be shorter)
    uint chunks;   // chunks per row
    uint first;    // first (row, chunk) index of this dispatch
    uint count;    // (row, chunk) pairs in this dispatch
    uint base;     // floats from the binding's start to the first chunk's start
    int ignore_index;
    uint pad;
} p;

shared float sh_m[VP_WG_X];
shared float sh_s[VP_WG_X];
shared float sh_z[VP_WG_X];
shared float sh_y[VP_WG_X];

void main() {
    const uint local = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (local >= p.count) return; // whole workgroup: uniform
    const uint id = p.first + local, row = id / p.chunks, chunk = id % p.chunks;
    const uint c0 = chunk * p.cols, c1 = min(c0 + p.cols, p.V);
    const int y = targets[row];
    const uint tid = gl_LocalInvocationID.x;
    // Where column c0 of `row` sits in the binding: rows before it in this
    // dispatch are whole, the first one started at chunk first % chunks.
    const uint first_row = p.first / p.chunks, first_col = (p.first % p.chunks) * p.cols;
    const uint at = p.base + (row - first_row) * p.V + c0 - first_col;

    float m = uintBitsToFloat(0xFF7FFFFFu), s = 0.0, sz = 0.0, zy = 0.0;
    if (y != p.ignore_index) {
        for (uint c = c0 + tid; c < c1; c += VP_WG_X) {
            float v = z[at + (c - c0)];
            if (v > m) {
                s *= exp(m - v);
                m = v;
            }
            s += exp(v - m);
            sz += v;
            if (int(c) == y) zy = v;
        }
    }
    sh_m[tid] = m;
    sh_s[tid] = s;
    sh_z[tid] = sz;
    sh_y[tid] = zy;
    barrier();
    for (uint half_ = VP_WG_X / 2u; half_ > 0u; half_ >>= 1) {
        if (tid < half_) {
            float m2 = sh_m[tid + half_], mm = max(sh_m[tid], m2);
            sh_s[tid] = sh_s[tid] * exp(sh_m[tid] - mm) + sh_s[tid + half_] * exp(m2 - mm);
            sh_m[tid] = mm;
            sh_z[tid] += sh_z[tid + half_];
            sh_y[tid] += sh_y[tid + half_];
        }
        barrier();
    }
    if (tid == 0u) stats[id] = vec4(sh_m[0], sh_s[0], sh_z[0], sh_y[0]);
}
