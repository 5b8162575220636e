#version 450
// Cross-entropy, pass 2 (one workgroup): merges each row's chunk statistics
// in chunk order into
//   lse[n]      = m + log(sum_c s_c exp(m_c - m)),  m = max_c m_c
//   row_loss[n] = (1-eps)(lse - z_y) + eps (lse - (sum z)/V)
//               = (1-eps)(-log p_y) - (eps/V) sum_v log p_v
// (0 for ignored rows), then sums the row losses and counts the rows that
// are not ignored: each invocation takes rows tid, tid + WG, ... in order and
// a fixed-shape tree merges the invocations, so the mean is reproducible.
// loss = { mean (0 when every row is ignored), count }.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer St { vec4 stats[]; };      // (N, chunks)
layout(std430, binding = 1) readonly buffer Y { int targets[]; };      // (N)
layout(std430, binding = 2) writeonly buffer Lse { float lse[]; };     // (N)
layout(std430, binding = 3) writeonly buffer RowLoss { float row_loss[]; }; // (N)
layout(std430, binding = 4) writeonly buffer Loss {
    float loss_mean;
    uint loss_count;
};

// C twin: struct ce_finalize_push in runtime/kernels/cross_entropy.c
layout(push_constant) uniform Push {
    uint N, V, chunks;
    int ignore_index;
    float eps; // label smoothing
    uint pad0, pad1, pad2;
} p;

shared float sh_sum[VP_WG_X];
shared uint sh_count[VP_WG_X];

void main() {
    const uint tid = gl_LocalInvocationID.x;
    float sum = 0.0;
    uint count = 0u;
    for (uint n = tid; n < p.N; n += VP_WG_X) {
        if (targets[n] == p.ignore_index) {
            lse[n] = 0.0;
            row_loss[n] = 0.0;
            continue;
        }
        const uint at = n * p.chunks;
        float m = stats[at].x;
        for (uint c = 1u; c < p.chunks; c++) m = max(m, stats[at + c].x);
        float s = 0.0, sz = 0.0, zy = 0.0;
        for (uint c = 0u; c < p.chunks; c++) {
            vec4 st = stats[at + c];
            s += st.y * exp(st.x - m);
            sz += st.z;
            zy += st.w;
        }
        const float l = m + log(s);
        const float loss = (1.0 - p.eps) * (l - zy) + p.eps * (l - sz / float(p.V));
        lse[n] = l;
        row_loss[n] = loss;
        sum += loss;
        count++;
    }
    sh_sum[tid] = sum;
    sh_count[tid] = count;
    barrier();
    for (uint half_ = VP_WG_X / 2u; half_ > 0u; half_ >>= 1) {
        if (tid < half_) {
            sh_sum[tid] += sh_sum[tid + half_];
            sh_count[tid] += sh_count[tid + half_];
        }
        barrier();
    }
    if (tid == 0u) {
        loss_count = sh_count[0];
        loss_mean = sh_count[0] > 0u ? sh_sum[0] / float(sh_count[0]) : 0.0;
    }
}
