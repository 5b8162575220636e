#version 450
// Attention backward, query side (tiled variant): one invocation per query
// row t; keys and values staged in shared memory.
//   delta[t] = dO[t] . O[t]            (= sum_j P dP, written for the key pass)
//   P[t,j]   = exp(score[t,j] - lse[t]),  m = dropout multiplier
//   dS[t,j]  = P (m dO[t].v_all[j] - delta[t])
//   dq[t]    = scale sum_j dS[t,j] k_all[j]           (overwrite)
// Grid: x = query blocks of VP_WG_X rows, y = heads of this dispatch.
#include "attention_common.glsl"

layout(std430, binding = 6) readonly buffer O { VEC o_in[]; };        // (heads,T,D)
layout(std430, binding = 7) readonly buffer DO { VEC do_in[]; };      // (heads,T,D)
layout(std430, binding = 8) readonly buffer Lse { float lse_in[]; };  // (heads,T)
layout(std430, binding = 9) writeonly buffer Delta { float delta_out[]; }; // (heads,T)
layout(std430, binding = 10) writeonly buffer DQ { VEC dq_out[]; };   // (heads,T,D)

shared VEC tile_k[TILE * DV];
shared VEC tile_v[TILE * DV];

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
    for (uint d = 0u; d < DV; d++) {
        q[d] = q_in(row * DV + d) * p.scale;
        dout[d] = do_in[row * DV + d];
        delta += dot(dout[d], o_in[row * DV + d]);
        dq[d] = VEC(0.0);
    }
    const float lse = lse_in[row];
    // A row that saw nothing has P = 0 everywhere: no gradient.
    const bool live = in_range && !isinf(lse);

    for (uint j0 = 0u; j0 < jend; j0 += TILE) {
        const uint jn = min(TILE, jend - j0);
        barrier();
        for (uint i = gl_LocalInvocationID.x; i < jn * DV; i += VP_WG_X) {
            bool pre;
            uint r = attn_kv_row(j0 + i / DV, h, lbh, pre) + i % DV;
            if (pre) {
                tile_k[i] = pk_in(r);
                tile_v[i] = pv_in(r);
            } else {
                tile_k[i] = k_in(r);
                tile_v[i] = v_in(r);
            }
        }
        barrier();
        for (uint jj = 0u; jj < jn; jj++) {
            const uint j = j0 + jj;
            bool vis = live && (j < p.L || (attn_key_kept(b, j - p.L) &&
                                            attn_causal_ok(t, j - p.L)));
            if (!vis) continue;
            float s = 0.0, dp = 0.0;
            const uint r = jj * DV;
            for (uint d = 0u; d < DV; d++) {
                s += dot(q[d], tile_k[r + d]);
                dp += dot(dout[d], tile_v[r + d]);
            }
            float prob = exp(s - lse);
            float ds = prob * (dp * attn_dropout(bh, t, j) - delta);
            for (uint d = 0u; d < DV; d++) dq[d] += ds * tile_k[r + d];
        }
    }

    if (!in_range) return;
    delta_out[row] = delta;
    for (uint d = 0u; d < DV; d++) dq_out[row * DV + d] = dq[d] * p.scale;
}
