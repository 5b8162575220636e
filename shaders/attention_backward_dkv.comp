#version 450
// Attention backward, key side (tiled variant): one invocation per column j of the
// concatenation [prefix; keys] walks the query rows that see it.
//   P[t,j] = exp(score[t,j] - lse[t]),  m = dropout multiplier
//   dv_all[j] = sum_t m P[t,j] dO[t]
//   dk_all[j] = scale sum_t P[t,j] (m dO[t].v_all[j] - delta[t]) q[t]
// Key columns overwrite dk, dv; prefix columns write this batch's share to
// `part` (2, B,H,L,D), which attention_prefix_reduce.comp sums over the
// batch in a fixed order (no atomics).
// Grid: x = column blocks of VP_WG_X columns, y = heads of this dispatch.
#include "attention_common.glsl"

layout(std430, binding = 6) readonly buffer DO { VEC do_in[]; };         // (heads,T,D)
layout(std430, binding = 7) readonly buffer Lse { float lse_in[]; };     // (heads,T)
layout(std430, binding = 8) readonly buffer Delta { float delta_in[]; }; // (heads,T)
layout(std430, binding = 9) writeonly buffer DK { VEC dk_out[]; };        // (heads,S,D)
layout(std430, binding = 10) writeonly buffer DVal { VEC dv_out[]; };     // (heads,S,D)
layout(std430, binding = 11) writeonly buffer Part { VEC part_out[]; };   // (2,B,H,L,D)

shared VEC tile_q[TILE * DV]; // q * scale
shared VEC tile_do[TILE * DV];
shared float tile_lse[TILE];
shared float tile_delta[TILE];

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
    for (uint d = 0u; d < DV; d++) {
        if (pre) {
            kj[d] = pk_in(r + d);
            vj[d] = pv_in(r + d);
        } else {
            kj[d] = k_in(r + d);
            vj[d] = v_in(r + d);
        }
        dk[d] = VEC(0.0);
        dv[d] = VEC(0.0);
    }
    const bool col_vis = in_range && (pre || attn_key_kept(b, j - p.L));
    // The first query that may see a column of this workgroup (the causal
    // limit grows with the column; prefix columns are seen by every query).
    uint tstart = 0u;
    if (p.causal != 0u && c0 >= p.L)
        tstart = uint(clamp(int(c0 - p.L) - int(p.S) + int(p.T), 0, int(p.T)));

    for (uint t0 = tstart; t0 < p.T; t0 += TILE) {
        const uint tn = min(TILE, p.T - t0);
        barrier();
        for (uint i = gl_LocalInvocationID.x; i < tn * DV; i += VP_WG_X) {
            uint at = (lbh * p.T + t0) * DV + i;
            tile_q[i] = q_in(at) * p.scale;
            tile_do[i] = do_in[at];
        }
        for (uint i = gl_LocalInvocationID.x; i < tn; i += VP_WG_X) {
            tile_lse[i] = lse_in[lbh * p.T + t0 + i];
            tile_delta[i] = delta_in[lbh * p.T + t0 + i];
        }
        barrier();
        for (uint tt = 0u; tt < tn; tt++) {
            const uint t = t0 + tt;
            if (!col_vis || !(pre || attn_causal_ok(t, j - p.L))) continue;
            const float lse = tile_lse[tt], delta = tile_delta[tt];
            if (isinf(lse)) continue; // the row saw nothing
#define QS(d) tile_q[tt * DV + (d)]
#define DOUT(d) tile_do[tt * DV + (d)]
            float s = 0.0, dp = 0.0;
            for (uint d = 0u; d < DV; d++) {
                s += dot(QS(d), kj[d]);
                dp += dot(DOUT(d), vj[d]);
            }
            const float prob = exp(s - lse), mult = attn_dropout(bh, t, j);
            const float pm = prob * mult, ds = prob * (dp * mult - delta);
            for (uint d = 0u; d < DV; d++) {
                dv[d] += pm * DOUT(d);
                dk[d] += ds * QS(d); // QS carries the scale of dk
            }
#undef QS
#undef DOUT
        }
    }

    if (!in_range) return;
    if (pre) {
        const uint at = (bh * p.L + j) * DV, half_ = p.B * p.H * p.L * DV;
        for (uint d = 0u; d < DV; d++) {
            part_out[at + d] = dk[d];
            part_out[half_ + at + d] = dv[d];
        }
    } else {
        for (uint d = 0u; d < DV; d++) {
            dk_out[r + d] = dk[d];
            dv_out[r + d] = dv[d];
        }
    }
}
