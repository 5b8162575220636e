#version 450
// Embedding gather: out[n, c] = table[ids[n], c] (ACCUMULATE: +=), one
// element per invocation. The table is stored as TDTYPE (0 f32, 1 f16,
// 2 bf16) and may be bound in ranges of rows [v0, v1): a dispatch handles
// the ids that fall in its range, and the dispatch with FIRST set also
// writes zeros (ACCUMULATE: nothing) for ids outside [0, V).
// Bindings: 0 ids (int32, this dispatch's rows), 1 table rows [v0, v1)
// (32-bit words), 2 out (this dispatch's rows).
#include "common.glsl"
#include "convert.glsl"

#ifndef TDTYPE
#define TDTYPE 0
#endif
#ifndef ACCUMULATE
#define ACCUMULATE 0
#endif

layout(std430, binding = 0) readonly buffer IDS { int ids[]; };
layout(std430, binding = 1) readonly buffer TABLE { uint table_w[]; };
layout(std430, binding = 2) buffer OUT { float outv[]; };

// C twin: struct embedding_forward_push in runtime/kernels/embedding.c
layout(push_constant) uniform Push {
    uint rows;  // output rows in this dispatch
    uint C;
    uint v0, v1;
    uint V;
    uint first;
    uint pad0, pad1;
} p;

void main() {
    uint i = vp_flat_index();
    if (i >= p.rows * p.C) return;
    uint n = i / p.C, c = i - n * p.C;
    int id = ids[n];
    float v;
    if (id >= int(p.v0) && id < int(p.v1)) {
        uint e = (uint(id) - p.v0) * p.C + c;
        v = vp_load_typed(table_w[TDTYPE == 0 ? e : e >> 1], e, TDTYPE);
    } else if (p.first != 0u && (id < 0 || id >= int(p.V))) {
        v = 0.0;
    } else {
        return;
    }
#if ACCUMULATE
    outv[i] += v;
#else
    outv[i] = v;
#endif
}
