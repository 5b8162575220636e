#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
// Attention backward, query side, CPU variant: the math of
// attention_backward_dq.comp (delta = dO.O, dq = scale sum_j dS k_all[j])
// with key/value rows fetched once per subgroup through texel buffers and
// broadcast with subgroup shuffles (see attention_texel_forward.comp).
// Grid: x = query blocks of VP_WG_X rows, y = heads of this dispatch.
#define ATTN_TEXEL 1
#include "attention_common.glsl"

layout(std430, binding = 6) readonly buffer O { VEC o_in[]; };             // (heads,T,D)
layout(std430, binding = 7) readonly buffer DO { VEC do_in[]; };           // (heads,T,D)
layout(std430, binding = 8) readonly buffer Lse { float lse_in[]; };       // (heads,T)
layout(std430, binding = 9) writeonly buffer Delta { float delta_out[]; }; // (heads,T)
layout(std430, binding = 10) writeonly buffer DQ { VEC dq_out[]; };        // (heads,T,D)

#define KB 4u // columns per unrolled block

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

    const uint row = lbh * p.T + min(t, p.T - 1u);
    VEC q[DV], dout[DV], dq[DV];
    float delta = 0.0;
    [[unroll]] for (uint d = 0u; d < DV; d++) {
        q[d] = q_in(row * DV + d) * p.scale;
        dout[d] = do_in[row * DV + d];
        delta += dot(dout[d], o_in[row * DV + d]);
        dq[d] = VEC(0.0);
    }
    const float lse = lse_in[row];
    const bool live = in_range && !isinf(lse); // a row that saw nothing has no gradient

    for (uint j0 = 0u; j0 < jend; j0 += KB) {
        [[unroll]] for (uint jj = 0u; jj < KB; jj++) {
            const uint j = min(j0 + jj, jend - 1u);
            VEC kp[NPART], vp[NPART];
            attn_fetch_kv(j, h, lbh, false, kp);
            attn_fetch_kv(j, h, lbh, true, vp);
            float s = 0.0, dp = 0.0;
            [[unroll]] for (uint d = 0u; d < DV; d++) {
                s += dot(q[d], ATTN_PART(kp, d));
                dp += dot(dout[d], ATTN_PART(vp, d));
            }
            const bool v = live && j0 + jj < jend && attn_visible(b, t, j);
            const float prob = v ? exp(s - lse) : 0.0;
            const float ds = prob * (dp * attn_dropout(bh, t, j) - delta);
            [[unroll]] for (uint d = 0u; d < DV; d++) dq[d] += ds * ATTN_PART(kp, d);
        }
    }

    if (!in_range) return;
    delta_out[row] = delta;
    [[unroll]] for (uint d = 0u; d < DV; d++) dq_out[row * DV + d] = dq[d] * p.scale;
}
