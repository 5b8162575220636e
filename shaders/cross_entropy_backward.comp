#version 450
// Cross-entropy backward over a block of the (N,V) logits:
//   dz[n,v] = dloss/count (exp(z[n,v] - lse[n]) - (1-eps)[v = y_n] - eps/V)
// and 0 for ignored rows (overwrite). count comes from the forward's loss
// buffer, so nothing makes a round trip through the host. dz may be the
// logits themselves (each invocation reads its element before writing it).
// A dispatch covers rows r0 .. r0 + gl_NumWorkGroups.y - 1 (one per
// workgroup row, so the row's target and lse are workgroup-uniform loads)
// and columns c0 .. c1 - 1 of each; both spans are bound from an aligned
// offset `base_*` floats before element (r0, c0). Every invocation handles
// ITEMS columns VP_WG_X apart.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer Z { float z[]; };        // logits span
layout(std430, binding = 1) writeonly buffer DZ { float dz[]; };     // dlogits span
layout(std430, binding = 2) readonly buffer Y { int targets[]; };    // (N)
layout(std430, binding = 3) readonly buffer Lse { float lse[]; };    // (N)
layout(std430, binding = 4) readonly buffer Loss {
    float loss_mean;
    uint loss_count;
};

// C twin: struct ce_backward_push in runtime/kernels/cross_entropy.c
layout(push_constant) uniform Push {
    uint r0, c0, c1, V;
    uint base_z, base_dz, items;
    int ignore_index;
    float eps;
    float dloss;
    uint pad0, pad1;
} p;

void main() {
    const uint row = p.r0 + gl_WorkGroupID.y;
    const int y = targets[row];
    const float l = lse[row], count = float(loss_count);
    const bool ignored = y == p.ignore_index;
    const float scale = ignored ? 0.0 : p.dloss / count;
    const float spread = p.eps / float(p.V);
    // Element (row, c) sits (row - r0)·V + c - c0 floats into the spans.
    const uint at = gl_WorkGroupID.y * p.V - p.c0;
    const uint first = p.c0 + gl_WorkGroupID.x * VP_WG_X * p.items + gl_LocalInvocationID.x;
    for (uint k = 0u; k < p.items; k++) {
        const uint c = first + k * VP_WG_X;
        if (c >= p.c1) break;
        float g = 0.0;
        if (!ignored) {
            const float target = (int(c) == y ? 1.0 - p.eps : 0.0) + spread;
            g = scale * (exp(z[p.base_z + at + c] - l) - target);
        }
        dz[p.base_dz + at + c] = g;
    }
}
