#version 450
#extension GL_EXT_control_flow_attributes : require
// The matmul variant for GPUs: a workgroup computes a BM x BN tile of C,
// staging BK-deep slices of op(A) and op(B) in shared memory; each
// invocation keeps a TM x TN block of the tile in registers. Operands are
// storage buffers; a 16-bit B is read as packed words and unpacked, so no
// 16-bit storage feature is needed. Rows and columns of an invocation's
// block are strided by BM/TM and BN/TN so neighbouring invocations read
// neighbouring shared-memory words.
//
// Workgroup: VP_WG_X = (BM/TM) * (BN/TN) invocations;
// grid (ceil(N/BN), ceil(M/BM), batch). Shared memory: (BM + BN + 2) * BK
// floats.
#include "common.glsl"
#include "matmul.glsl"

#ifndef BM
#define BM 64
#endif
#ifndef BN
#define BN 64
#endif
#ifndef BK
#define BK 16
#endif
#ifndef TM
#define TM 4
#endif
#ifndef TN
#define TN 4
#endif
#define RM (BM / TM) // invocations down the tile
#define RN (BN / TN) // invocations across the tile

layout(std430, binding = 0) readonly buffer A { float a[]; };
#if B_TYPE == 0
layout(std430, binding = 1) readonly buffer B { float b[]; };
#else
layout(std430, binding = 1) readonly buffer B { uint bw[]; };
#endif
layout(std430, binding = 2) buffer C { float c[]; };

// One padding column: a k-contiguous operand is staged with consecutive
// invocations on consecutive k, i.e. a row apart, which would otherwise
// land every one of them in the same bank.
shared float as_[BK][BM + 1]; // as_[k][m] = op(A)(m0 + m, k0 + k)
shared float bs_[BK][BN + 1]; // bs_[k][n] = op(B)(k0 + k, n0 + n)

float load_b(uint i) {
#if B_TYPE == 0
    return b[i];
#else
    uint w = bw[i >> 1];
    return vp_unpack16x2((i & 1u) != 0u ? w >> 16 : w & 0xFFFFu).x;
#endif
}

void main() {
    uint t = gl_LocalInvocationID.x;
    uint tm = t / RN, tn = t % RN;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint z = gl_WorkGroupID.z;
    uint abase = p.a_off + z * p.sa, bbase = p.b_off + z * p.sb;

    float acc[TM][TN];
    [[unroll]] for (uint i = 0u; i < TM; i++)
        [[unroll]] for (uint j = 0u; j < TN; j++) acc[i][j] = 0.0;
#if ROWSUM
    float rs[TM];
    [[unroll]] for (uint i = 0u; i < TM; i++) rs[i] = 0.0;
    // The first column of tiles adds the row sums, once per row.
    bool want_rs = gl_WorkGroupID.x == 0u && (p.flags & MATMUL_ADD_ROWSUMS) != 0u;
#endif

    for (uint k0 = 0u; k0 < p.K; k0 += BK) {
        // Stage the slices; consecutive invocations take consecutive
        // elements along each operand's contiguous dimension. Outside the
        // matrices the slices hold 0.
        for (uint idx = t; idx < BM * BK; idx += VP_WG_X) {
#if TRANS_A
            uint k = idx / BM, m = idx % BM;
#else
            uint m = idx / BK, k = idx % BK;
#endif
            uint gm = m0 + m, gk = k0 + k;
            float v = 0.0;
            if (gm < p.M && gk < p.K)
                v = a[abase + (TRANS_A != 0 ? gk * p.lda + gm : gm * p.lda + gk)];
            as_[k][m] = v;
        }
#if !ROWSUM_ONLY
        for (uint idx = t; idx < BN * BK; idx += VP_WG_X) {
#if TRANS_B
            uint n = idx / BK, k = idx % BK;
#else
            uint k = idx / BN, n = idx % BN;
#endif
            uint gn = n0 + n, gk = k0 + k;
            float v = 0.0;
            if (gn < p.N && gk < p.K)
                v = load_b(bbase + (TRANS_B != 0 ? gn * p.ldb + gk : gk * p.ldb + gn));
            bs_[k][n] = v;
        }
#endif
        barrier();
        [[unroll]] for (uint k = 0u; k < BK; k++) {
            float ra[TM];
            [[unroll]] for (uint i = 0u; i < TM; i++) ra[i] = as_[k][tm + i * RM];
#if !ROWSUM_ONLY
            float rb[TN];
            [[unroll]] for (uint j = 0u; j < TN; j++) rb[j] = bs_[k][tn + j * RN];
            [[unroll]] for (uint i = 0u; i < TM; i++)
                [[unroll]] for (uint j = 0u; j < TN; j++) acc[i][j] = fma(ra[i], rb[j], acc[i][j]);
#endif
#if ROWSUM
            if (want_rs) [[unroll]] for (uint i = 0u; i < TM; i++) rs[i] += ra[i];
#endif
        }
        barrier();
    }

    uint cbase = p.c_off + z * p.sc;
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint m = m0 + tm + i * RM;
        if (m >= p.M) continue;
#if !ROWSUM_ONLY
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            uint n = n0 + tn + j * RN;
            if (n >= p.N) continue;
            float v = p.alpha * acc[i][j];
#if !ROWSUM
            if ((p.flags & MATMUL_BIAS) != 0u) v += e[p.e_off + n];
#endif
            uint at = cbase + m * p.ldc + n;
            if (p.beta != 0.0) v += p.beta * c[at];
            c[at] = v;
        }
#endif
#if ROWSUM
        if (want_rs && tn == 0u) e[p.e_off + m] += rs[i];
#endif
    }
}
