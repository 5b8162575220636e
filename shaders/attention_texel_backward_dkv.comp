#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
// Attention backward, key side, CPU variant: the math of
// attention_backward_dkv.comp (one invocation per column of [prefix; keys];
// dk, dv overwritten, prefix columns into per-batch partials) with each
// query's q and dO rows fetched once per subgroup through texel buffers and
// broadcast with subgroup shuffles (see attention_texel_forward.comp).
// Grid: x = column blocks of VP_WG_X columns, y = heads of this dispatch.
#define ATTN_TEXEL 1
#include "attention_common.glsl"

layout(binding = 6) uniform samplerBuffer do_tex;    // (heads,T,D)
layout(binding = 7) uniform samplerBuffer lse_tex;   // (heads,T)
layout(binding = 8) uniform samplerBuffer delta_tex; // (heads,T)
layout(std430, binding = 9) writeonly buffer DK { VEC dk_out[]; };      // (heads,S,D)
layout(std430, binding = 10) writeonly buffer DVal { VEC dv_out[]; };   // (heads,S,D)
layout(std430, binding = 11) writeonly buffer Part { VEC part_out[]; }; // (2,B,H,L,D)

void main() {
    const uint lbh = gl_WorkGroupID.y, bh = p.bh0 + lbh;
    const uint b = bh / p.H, h = bh % p.H;
    const uint J = p.L + p.S;
    const uint c0 = gl_WorkGroupID.x * VP_WG_X;
    const uint j = min(c0 + gl_LocalInvocationID.x, J - 1u);
    const bool in_range = c0 + gl_LocalInvocationID.x < J;

    bool pre;
    const uint r = attn_kv_row(j, h, lbh, pre);
    VEC kj[DV], vj[DV], dk[DV], dv[DV];
    [[unroll]] for (uint d = 0u; d < DV; d++) {
        kj[d] = pre ? pk_in(r + d) : k_in(r + d);
        vj[d] = pre ? pv_in(r + d) : v_in(r + d);
        dk[d] = VEC(0.0);
        dv[d] = VEC(0.0);
    }
    const bool col_vis = in_range && (pre || attn_key_kept(b, j - p.L));
    uint tstart = 0u;
    if (p.causal != 0u && c0 >= p.L)
        tstart = uint(clamp(int(c0 - p.L) - int(p.S) + int(p.T), 0, int(p.T)));

    for (uint t = tstart; t < p.T; t++) {
        const uint row = lbh * p.T + t;
        VEC qp[NPART], dop[NPART];
        [[unroll]] for (uint i = 0u; i < NPART; i++) {
            const uint d = min(gl_SubgroupInvocationID + i * SG, DV - 1u);
            qp[i] = q_in(row * DV + d) * p.scale;
            dop[i] = ATTN_FETCH(do_tex, row * DV + d);
        }
        const float lse = texelFetch(lse_tex, int(row)).x;
        const float delta = texelFetch(delta_tex, int(row)).x;
        float s = 0.0, dp = 0.0;
        [[unroll]] for (uint d = 0u; d < DV; d++) {
            s += dot(ATTN_PART(qp, d), kj[d]);
            dp += dot(ATTN_PART(dop, d), vj[d]);
        }
        const bool v = col_vis && !isinf(lse) && (pre || attn_causal_ok(t, j - p.L));
        const float prob = v ? exp(s - lse) : 0.0, mult = attn_dropout(bh, t, j);
        const float pm = prob * mult, ds = prob * (dp * mult - delta);
        [[unroll]] for (uint d = 0u; d < DV; d++) {
            dv[d] += pm * ATTN_PART(dop, d);
            dk[d] += ds * ATTN_PART(qp, d); // qp carries the scale of dk
        }
    }

    if (!in_range) return;
    if (pre) {
        const uint at = (bh * p.L + j) * DV, half_ = p.B * p.H * p.L * DV;
        [[unroll]] for (uint d = 0u; d < DV; d++) {
            part_out[at + d] = dk[d];
            part_out[half_ + at + d] = dv[d];
        }
    } else {
        [[unroll]] for (uint d = 0u; d < DV; d++) {
            dk_out[r + d] = dk[d];
            dv_out[r + d] = dv[d];
        }
    }
}
