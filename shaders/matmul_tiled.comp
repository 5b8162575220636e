#version 450
#extension GL_EXT_control_flow_attributes : require
// The matmul variant for GPUs, shaped like the well-known fast SGEMM
// kernels (register-blocked outer products fed from shared memory):
//
//   - a workgroup computes a BM x BN tile of C (64x64 for big products,
//     32x32 when the grid would be too small or mostly padding;
//     runtime/kernels/matmul.c chooses per shape and says why 128x128 is
//     not a choice; VKPEFT_MATMUL_TILES forces any valid tiles) from
//     BK-deep slices of op(A) and op(B);
//   - each invocation keeps a TM x TN block (8x8, 8x4 or 4x4) in
//     registers, so a k-step costs TM/4 + TN/4 vec4 shared-memory reads for
//     TM*TN fused multiply-adds (8x8: 4 reads for 64 FMAs);
//   - its rows and columns come in groups of 4 consecutive ones, the
//     groups strided by 4*BM/TM and 4*BN/TN: each vec4 read is one 16-byte
//     shared-memory access, neighbouring invocations read neighbouring
//     vec4s (conflict-free), and invocations of one row share theirs
//     (broadcast);
//   - both slices are stored k-major (as_[k][m], bs_[k][n]): op(A) is
//     transposed on the way in, so the inner loop reads contiguous vectors
//     whatever TRANS_A and TRANS_B are. Rows are padded by one vec4: the
//     transposing stores (4 k of one m) then hit distinct banks;
//   - global reads take 4 elements at a time along the operand's
//     contiguous dimension (VEC: vec4 for f32, uvec2 of packed halves for
//     f16/bf16) when matrix starts, pitches and batch strides are
//     multiples of 4 elements; otherwise (VEC 0) one element at a time,
//     consecutive invocations on consecutive elements. A vector that
//     crosses the edge of the matrix is read element by element;
//   - the next slice is read from global memory into registers while the
//     current one is multiplied, into the other of two shared buffers, so
//     the loads' latency hides behind the FMAs and one barrier per slice
//     suffices (iteration s reads buffer s&1 and fills buffer s&1^1; the
//     barrier that ends s orders both against iteration s+1).
//
// A and B are restrict: nothing writes what they read during a dispatch (they
// may alias each other, both read-only), which lets a GPU compiler use its
// read-only load path. A 16-bit B is read as packed words and unpacked, so no
// 16-bit storage feature is needed. Outside the matrices the slices hold 0, so any M, N,
// K works; K is summed in increasing order (fixed, so results are
// deterministic).
//
// Workgroup: VP_WG_X = (BM/TM) * (BN/TN) invocations (the wrapper passes
// that); grid (ceil(N/BN), ceil(M/BM), batch). TM and TN are 4 or 8; BK is
// a multiple of 4. Shared memory: 2 * BK * (BM/4 + 1 + BN/4 + 1) vec4s.
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
#ifndef VEC
#define VEC 0
#endif
#define RM (BM / TM) // invocations down the tile
#define RN (BN / TN) // invocations across the tile
#define NT (RM * RN) // invocations per workgroup (== VP_WG_X)
#if VEC
#define W 4 // elements per global read
#define UNIT vec4
#else
#define W 1
#define UNIT float
#endif
// Global reads per slice, and per invocation.
#define UA (BM * BK / W)
#define UB (BN * BK / W)
#define LA ((UA + NT - 1) / NT)
#define LB ((UB + NT - 1) / NT)

#if VEC
layout(std430, binding = 0) restrict readonly buffer A { vec4 a4[]; };
#define A1(i) a4[(i) >> 2][(i) & 3u]
#else
layout(std430, binding = 0) restrict readonly buffer A { float a[]; };
#define A1(i) a[i]
#endif
#if B_TYPE == 0 && VEC
layout(std430, binding = 1) restrict readonly buffer B { vec4 b4[]; };
#elif B_TYPE == 0
layout(std430, binding = 1) restrict readonly buffer B { float b[]; };
#elif VEC
layout(std430, binding = 1) restrict readonly buffer B { uvec2 bw2[]; };
#else
layout(std430, binding = 1) restrict readonly buffer B { uint bw[]; };
#endif
layout(std430, binding = 2) buffer C { float c[]; };

shared vec4 as_[2][BK][BM / 4 + 1]; // as_[s][k][m/4][m%4] = op(A)(m0 + m, k0 + k)
shared vec4 bs_[2][BK][BN / 4 + 1]; // bs_[s][k][n/4][n%4] = op(B)(k0 + k, n0 + n)

// Element i of B's binding as fp32.
float b1(uint i) {
#if B_TYPE == 0 && VEC
    return b4[i >> 2][i & 3u];
#elif B_TYPE == 0
    return b[i];
#else
#if VEC
    uint w = bw2[i >> 2][(i >> 1) & 1u];
#else
    uint w = bw[i >> 1];
#endif
    return vp_unpack16x2((i & 1u) != 0u ? w >> 16 : w & 0xFFFFu).x;
#endif
}

#if VEC
// Elements i..i+3 of B's binding (i a multiple of 4).
vec4 b4v(uint i) {
#if B_TYPE == 0
    return b4[i >> 2];
#else
    uvec2 w = bw2[i >> 2];
    return vec4(vp_unpack16x2(w.x), vp_unpack16x2(w.y));
#endif
}
#endif

// Read u of a slice: which row of the stored matrix (r, within the tile),
// and where along its contiguous dimension (c, a multiple of W). For A,
// rows are m (k with TRANS_A); for B, rows are k (n with TRANS_B).
void a_unit(uint u, out uint r, out uint c) {
#if TRANS_A
    r = u / (BM / W), c = u % (BM / W) * W;
#else
    r = u / (BK / W), c = u % (BK / W) * W;
#endif
}

void b_unit(uint u, out uint r, out uint c) {
#if TRANS_B
    r = u / (BK / W), c = u % (BK / W) * W;
#else
    r = u / (BN / W), c = u % (BN / W) * W;
#endif
}

// Read u of A's slice at (m0, k0); zero outside the matrix.
UNIT a_read(uint u, uint m0, uint k0, uint base) {
    uint r, c;
    a_unit(u, r, c);
#if TRANS_A
    uint gr = k0 + r, gc = m0 + c, rows = p.K, cols = p.M;
#else
    uint gr = m0 + r, gc = k0 + c, rows = p.M, cols = p.K;
#endif
    uint at = base + gr * p.lda + gc;
#if VEC
    vec4 v = vec4(0.0);
    if (gr < rows) {
        if (gc + 4u <= cols) {
            v = a4[at >> 2];
        } else {
            [[unroll]] for (uint q = 0u; q < 4u; q++)
                if (gc + q < cols) v[q] = A1(at + q);
        }
    }
    return v;
#else
    return gr < rows && gc < cols ? A1(at) : 0.0;
#endif
}

UNIT b_read(uint u, uint n0, uint k0, uint base) {
    uint r, c;
    b_unit(u, r, c);
#if TRANS_B
    uint gr = n0 + r, gc = k0 + c, rows = p.N, cols = p.K;
#else
    uint gr = k0 + r, gc = n0 + c, rows = p.K, cols = p.N;
#endif
    uint at = base + gr * p.ldb + gc;
#if VEC
    vec4 v = vec4(0.0);
    if (gr < rows) {
        if (gc + 4u <= cols) {
            v = b4v(at);
        } else {
            [[unroll]] for (uint q = 0u; q < 4u; q++)
                if (gc + q < cols) v[q] = b1(at + q);
        }
    }
    return v;
#else
    return gr < rows && gc < cols ? b1(at) : 0.0;
#endif
}

// Stores read u into buffer s, k-major. A k-contiguous read (A plain, B
// transposed) spreads over W rows of k.
void a_store(uint s, uint u, UNIT v) {
    uint r, c;
    a_unit(u, r, c);
#if TRANS_A && VEC
    as_[s][r][c >> 2] = v;
#elif TRANS_A
    as_[s][r][c >> 2][c & 3u] = v;
#elif VEC
    [[unroll]] for (uint q = 0u; q < 4u; q++) as_[s][c + q][r >> 2][r & 3u] = v[q];
#else
    as_[s][c][r >> 2][r & 3u] = v;
#endif
}

void b_store(uint s, uint u, UNIT v) {
    uint r, c;
    b_unit(u, r, c);
#if !TRANS_B && VEC
    bs_[s][r][c >> 2] = v;
#elif !TRANS_B
    bs_[s][r][c >> 2][c & 3u] = v;
#elif VEC
    [[unroll]] for (uint q = 0u; q < 4u; q++) bs_[s][c + q][r >> 2][r & 3u] = v[q];
#else
    bs_[s][c][r >> 2][r & 3u] = v;
#endif
}

UNIT pa[LA]; // the next slice, in flight
#if !ROWSUM_ONLY
UNIT pb[LB];
#endif

void fetch(uint t, uint m0, uint n0, uint k0, uint abase, uint bbase) {
    [[unroll]] for (uint i = 0u; i < LA; i++) {
        uint u = t + i * NT;
        if (UA % NT == 0u || u < UA) pa[i] = a_read(u, m0, k0, abase);
    }
#if !ROWSUM_ONLY
    [[unroll]] for (uint i = 0u; i < LB; i++) {
        uint u = t + i * NT;
        if (UB % NT == 0u || u < UB) pb[i] = b_read(u, n0, k0, bbase);
    }
#endif
}

void stash(uint t, uint s) {
    [[unroll]] for (uint i = 0u; i < LA; i++) {
        uint u = t + i * NT;
        if (UA % NT == 0u || u < UA) a_store(s, u, pa[i]);
    }
#if !ROWSUM_ONLY
    [[unroll]] for (uint i = 0u; i < LB; i++) {
        uint u = t + i * NT;
        if (UB % NT == 0u || u < UB) b_store(s, u, pb[i]);
    }
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
    vec4 rs[TM / 4];
    [[unroll]] for (uint i = 0u; i < TM / 4u; i++) rs[i] = vec4(0.0);
    // The first column of tiles adds the row sums, once per row.
    bool want_rs = gl_WorkGroupID.x == 0u && (p.flags & MATMUL_ADD_ROWSUMS) != 0u;
#endif

    uint slices = (p.K + BK - 1u) / BK;
    fetch(t, m0, n0, 0u, abase, bbase);
    stash(t, 0u);
    barrier();
    for (uint sl = 0u; sl < slices; sl++) {
        uint cur = sl & 1u;
        bool more = sl + 1u < slices;
        if (more) fetch(t, m0, n0, (sl + 1u) * BK, abase, bbase);
        [[unroll]] for (uint k = 0u; k < BK; k++) {
            vec4 ra[TM / 4];
            [[unroll]] for (uint i = 0u; i < TM / 4u; i++) ra[i] = as_[cur][k][tm + i * RM];
#if !ROWSUM_ONLY
            vec4 rb[TN / 4];
            [[unroll]] for (uint j = 0u; j < TN / 4u; j++) rb[j] = bs_[cur][k][tn + j * RN];
            [[unroll]] for (uint i = 0u; i < TM; i++)
                [[unroll]] for (uint j = 0u; j < TN; j++)
                    acc[i][j] = fma(ra[i / 4u][i % 4u], rb[j / 4u][j % 4u], acc[i][j]);
#endif
#if ROWSUM
            if (want_rs) [[unroll]] for (uint i = 0u; i < TM / 4u; i++) rs[i] += ra[i];
#endif
        }
        if (more) stash(t, cur ^ 1u);
        barrier();
    }

    // Row i of the block is tile row (tm + i/4 * RM) * 4 + i%4, column j
    // tile column (tn + j/4 * RN) * 4 + j%4.
    uint cbase = p.c_off + z * p.sc;
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint m = m0 + (tm + i / 4u * RM) * 4u + i % 4u;
        if (m >= p.M) continue;
#if !ROWSUM_ONLY
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            uint n = n0 + (tn + j / 4u * RN) * 4u + j % 4u;
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
        if (want_rs && tn == 0u) e[p.e_off + m] += rs[i / 4u][i % 4u];
#endif
    }
}
