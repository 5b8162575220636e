#version 450
// Embedding scatter-add backward without atomics: one invocation per
// (distinct id u, channel c) adds the dout rows of that id to the table row,
// one by one in increasing position, exactly the reference's order:
//   acc = dtable[id, c]; for n in group u: acc += dout[n, c]; dtable[id, c] = acc
// The grouping is built on the host (kernel_embedding_groups_build):
//   groups[0] = U, groups[1 + u] = offset of group u (U + 1 entries),
//   groups[N + 2 + u] = id of group u, groups[2N + 2 + k] = positions.
// The table may be bound in ranges of rows [v0, v1); each dispatch handles
// the ids in its range.
// Bindings: 0 groups, 1 dout (N, C), 2 dtable rows [v0, v1).
#include "common.glsl"

layout(std430, binding = 0) readonly buffer GROUPS { uint groups[]; };
layout(std430, binding = 1) readonly buffer DOUT { float dout[]; };
layout(std430, binding = 2) buffer DTABLE { float dtable[]; };

// C twin: struct embedding_backward_push in runtime/kernels/embedding.c
layout(push_constant) uniform Push {
    uint N;
    uint C;
    uint v0, v1;
} p;

void main() {
    uint i = vp_flat_index();
    if (i >= p.N * p.C) return;
    uint u = i / p.C, c = i - u * p.C;
    if (u >= groups[0]) return;
    uint id = groups[p.N + 2u + u];
    if (id < p.v0 || id >= p.v1) return;
    uint at = (id - p.v0) * p.C + c;
    float acc = dtable[at];
    uint k1 = groups[2u + u];
    for (uint k = groups[1u + u]; k < k1; k++) acc += dout[groups[2u * p.N + 2u + k] * p.C + c];
    dtable[at] = acc;
}
