#version 450
// Fused scaled dot-product attention forward (flash style; tiled variant,
// keys and values staged in shared memory): one invocation
// per query row walks the visible columns once with an online softmax, so
// the (T, L+S) probabilities are never stored. Per row it writes
//   o[t]   = sum_j dropout(P[t,j]) v_all[j]
//   lse[t] = log sum_j exp(score[t,j]) over the visible j (+Inf when the
//            row sees nothing; o[t] is then 0),
// which lets the backward recompute P = exp(score - lse) exactly.
// Grid: x = query blocks of VP_WG_X rows, y = heads of this dispatch.
#include "attention_common.glsl"

layout(std430, binding = 6) writeonly buffer O { VEC o_out[]; };    // (heads,T,D)
layout(std430, binding = 7) writeonly buffer Lse { float lse_out[]; }; // (heads,T)

shared VEC tile_k[TILE * DV];
shared VEC tile_v[TILE * DV];

void main() {
    const uint lbh = gl_WorkGroupID.y, bh = p.bh0 + lbh;
    const uint b = bh / p.H, h = bh % p.H;
    const uint t0 = gl_WorkGroupID.x * VP_WG_X;
    const uint t = t0 + gl_LocalInvocationID.x;
    const bool in_range = t < p.T;
    // One past the last column any query of this workgroup may see.
    uint jend = p.L + p.S;
    if (p.causal != 0u) {
        int last = int(min(t0 + VP_WG_X, p.T)) - 1 + int(p.S) - int(p.T);
        jend = p.L + uint(clamp(last + 1, 0, int(p.S)));
    }

    VEC q[DV], acc[DV];
    const uint qrow = (lbh * p.T + min(t, p.T - 1u)) * DV;
    for (uint d = 0u; d < DV; d++) {
        q[d] = q_in(qrow + d) * p.scale;
        acc[d] = VEC(0.0);
    }
    float m = VP_FLT_LOWEST, l = 0.0;

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
            bool vis = in_range && (j < p.L || (attn_key_kept(b, j - p.L) &&
                                              attn_causal_ok(t, j - p.L)));
            if (!vis) continue;
            float s = 0.0;
            const uint r = jj * DV;
            for (uint d = 0u; d < DV; d++) s += dot(q[d], tile_k[r + d]);
            if (s > m) {
                // New running maximum: rescale what was summed so far.
                float c = exp(m - s);
                l *= c;
                for (uint d = 0u; d < DV; d++) acc[d] *= c;
                m = s;
            }
            float e = exp(s - m);
            l += e;
            float w = e * attn_dropout(bh, t, j);
            if (w == 0.0) continue;
            for (uint d = 0u; d < DV; d++) acc[d] += w * tile_v[r + d];
        }
    }

    if (!in_range) return;
    const float inv = l > 0.0 ? 1.0 / l : 0.0;
    for (uint d = 0u; d < DV; d++) o_out[qrow + d] = acc[d] * inv;
    lse_out[lbh * p.T + t] = l > 0.0 ? m + log(l) : VP_INF;
}
