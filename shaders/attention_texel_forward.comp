#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
// Fused attention forward, CPU variant (lavapipe): the math of
// attention_forward.comp (one invocation per query row, online softmax,
// writes o and the per-row log-sum-exp), but inputs come through texel
// buffers, each key/value row is fetched once per subgroup (a slice per
// lane) and broadcast with subgroup shuffles, and the columns go in blocks
// of KB: scores first, one rescale per block, then the values. Visibility
// only selects values, so every lane runs the same code (lavapipe executes
// a subgroup as one SIMD vector and would run both sides of a branch).
// Grid: x = query blocks of VP_WG_X rows, y = heads of this dispatch.
#define ATTN_TEXEL 1
#include "attention_common.glsl"

layout(std430, binding = 6) writeonly buffer O { VEC o_out[]; };       // (heads,T,D)
layout(std430, binding = 7) writeonly buffer Lse { float lse_out[]; }; // (heads,T)

#define KB 8u // columns per block

void main() {
    const uint lbh = gl_WorkGroupID.y, bh = p.bh0 + lbh;
    const uint b = bh / p.H, h = bh % p.H;
    const uint t0 = gl_WorkGroupID.x * VP_WG_X;
    const uint t = t0 + gl_LocalInvocationID.x;
    const bool in_range = t < p.T;
    uint jend = p.L + p.S;
    if (p.causal != 0u) {
        int last = int(min(t0 + VP_WG_X, p.T)) - 1 + int(p.S) - int(p.T);
        jend = p.L + uint(clamp(last + 1, 0, int(p.S)));
    }

    VEC q[DV], acc[DV];
    const uint qrow = (lbh * p.T + min(t, p.T - 1u)) * DV;
    [[unroll]] for (uint d = 0u; d < DV; d++) {
        q[d] = q_in(qrow + d) * p.scale;
        acc[d] = VEC(0.0);
    }
    float m = VP_FLT_LOWEST, l = 0.0;

    for (uint j0 = 0u; j0 < jend; j0 += KB) {
        float s[KB];
        uint vis = 0u;
        float mb = m;
        [[unroll]] for (uint jj = 0u; jj < KB; jj++) {
            const uint j = min(j0 + jj, jend - 1u);
            VEC kp[NPART];
            attn_fetch_kv(j, h, lbh, false, kp);
            float sc = 0.0;
            [[unroll]] for (uint d = 0u; d < DV; d++) sc += dot(q[d], ATTN_PART(kp, d));
            const bool v = in_range && j0 + jj < jend && attn_visible(b, t, j);
            s[jj] = sc;
            vis |= v ? 1u << jj : 0u;
            mb = v ? max(mb, sc) : mb;
        }
        // One rescale per block (exp(0) = 1 while nothing was visible).
        const float c = exp(m - mb);
        l *= c;
        [[unroll]] for (uint d = 0u; d < DV; d++) acc[d] *= c;
        m = mb;
        [[unroll]] for (uint jj = 0u; jj < KB; jj++) {
            const uint j = min(j0 + jj, jend - 1u);
            VEC vp[NPART];
            attn_fetch_kv(j, h, lbh, true, vp);
            const float e = (vis & (1u << jj)) != 0u ? exp(s[jj] - m) : 0.0;
            l += e;
            const float w = e * attn_dropout(bh, t, j);
            [[unroll]] for (uint d = 0u; d < DV; d++) acc[d] += w * ATTN_PART(vp, d);
        }
    }

    if (!in_range) return;
    const float inv = l > 0.0 ? 1.0 / l : 0.0;
    [[unroll]] for (uint d = 0u; d < DV; d++) o_out[qrow + d] = acc[d] * inv;
    lse_out[lbh * p.T + t] = l > 0.0 ? m + log(l) : VP_INF;
}
