#version 450
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
// The matmul variant for CPU devices (lavapipe). lavapipe runs a subgroup as
// one SIMD vector; it turns storage-buffer and shared-memory accesses into
// per-lane scalar loops, but a texel fetch is a vector gather, so:
//   - operands are read through uniform texel buffers, four elements per
//     fetch (VEC: RGBA32F views, RGBA32UI for packed 16-bit B),
//     or one (R32F / R32UI views) when rows are not 16-byte aligned;
//   - each lane keeps a TM x TN block of C in registers: TM rows of its own
//     and TN columns shared by the subgroup;
//   - the subgroup reads each k-step's op(B) panel (4 x TN) once, spread over
//     its lanes, and hands values around with subgroupShuffle at constant
//     lanes (a register broadcast), so a fetch feeds TM x SG multiply-adds.
// A k-step is 4*KQ deep; a tail of K shorter than that goes one k at a time.
//
// Workgroup: VP_WG_X = S subgroups of SG lanes (SG = the device's subgroup
// size; the wrapper uses S = 1); tile (S*SG*TM) x TN;
// grid (ceil(N/TN), ceil(M/(S*SG*TM)), batch).
#include "common.glsl"
#include "matmul.glsl"

#ifndef TM
#define TM 4 // rows per lane, a multiple of 4
#endif
#ifndef TN
#define TN 16 // columns per subgroup, a multiple of SG and of 4
#endif
#ifndef SG
#define SG 8 // the subgroup size
#endif
#ifndef VEC
#define VEC 1
#endif
#ifndef KQ
#define KQ 1 // quads of k fetched before they are used
#endif
#define NB (TN / SG) // op(B) panel vectors per lane per k-step

layout(binding = 0) uniform samplerBuffer ta;
#if B_TYPE == 0
layout(binding = 1) uniform samplerBuffer tb;
#else
layout(binding = 1) uniform usamplerBuffer tb;
#endif
layout(std430, binding = 2) buffer C { float c[]; };

int na, nb; // texels in each view; vector reads past the end are clamped

// Elements i..i+3 of A's binding (i a multiple of 4 when VEC).
vec4 a4(uint i) {
#if VEC
    return texelFetch(ta, min(int(i >> 2), na - 1));
#else
    int t = int(i);
    return vec4(texelFetch(ta, min(t, na - 1)).x, texelFetch(ta, min(t + 1, na - 1)).x,
                texelFetch(ta, min(t + 2, na - 1)).x, texelFetch(ta, min(t + 3, na - 1)).x);
#endif
}

float a1(uint i) {
#if VEC
    return texelFetch(ta, int(i >> 2))[i & 3u];
#else
    return texelFetch(ta, int(i)).x;
#endif
}

float b1(uint i) {
#if B_TYPE == 0 && VEC
    return texelFetch(tb, int(i >> 2))[i & 3u];
#elif B_TYPE == 0
    return texelFetch(tb, int(i)).x;
#else
#if VEC
    uint w = texelFetch(tb, int(i >> 3))[(i >> 1) & 3u];
#else
    uint w = texelFetch(tb, int(i >> 1)).x;
#endif
    return vp_unpack16x2((i & 1u) != 0u ? w >> 16 : w & 0xFFFFu).x;
#endif
}

// Elements i..i+3 of B's binding as fp32 (i a multiple of 4 when VEC).
vec4 b4(uint i) {
#if B_TYPE == 0 && VEC
    return texelFetch(tb, min(int(i >> 2), nb - 1));
#elif B_TYPE == 0
    int t = int(i);
    return vec4(texelFetch(tb, min(t, nb - 1)).x, texelFetch(tb, min(t + 1, nb - 1)).x,
                texelFetch(tb, min(t + 2, nb - 1)).x, texelFetch(tb, min(t + 3, nb - 1)).x);
#elif VEC
    // 8 halves per texel; the 4 wanted are one half of it.
    uvec4 t = texelFetch(tb, min(int(i >> 3), nb - 1));
    uvec2 w = (i & 4u) != 0u ? t.zw : t.xy;
    return vec4(vp_unpack16x2(w.x), vp_unpack16x2(w.y));
#else
    // 2 halves per texel; i may be odd.
    vec4 v;
    [[unroll]] for (uint q = 0u; q < 4u; q++) {
        uint j = i + q;
        uint w = texelFetch(tb, min(int(j >> 1), nb - 1)).x;
        v[q] = vp_unpack16x2((j & 1u) != 0u ? w >> 16 : w & 0xFFFFu).x;
    }
    return v;
#endif
}

// Where element (q, j) of the op(B) panel sits: panel vector u (held by lane
// u % SG in register u / SG), component `comp`. With TRANS_B a panel vector
// is one column's 4 k; without, 4 columns of one k.
uint panel_vector(uint q, uint j) { return TRANS_B != 0 ? j : q * (TN / 4u) + j / 4u; }
uint panel_comp(uint q, uint j) { return TRANS_B != 0 ? q : j % 4u; }

uint lane, m0, n0, abase, bbase;
uint ai[TM];
float acc[TM][TN];
#if ROWSUM
float rs[TM];
bool want_rs; // this workgroup adds the row sums (the first column of tiles)
#endif

// A full k-step: op(A)(m0+i, k0+q) x op(B)(k0+q, n0+j) for q < 4*KQ, all
// reads first, then the multiply-adds.
void kstep(uint k0) {
    vec4 pa[KQ][TM]; // pa[h][i][q] = op(A)(m0+i, k0+4h+q)
    vec4 vb[KQ][NB]; // this lane's panel vectors r*SG + lane
    [[unroll]] for (uint h = 0u; h < KQ; h++) {
        uint k = k0 + 4u * h;
#if TRANS_A
        [[unroll]] for (uint q = 0u; q < 4u; q++)
            [[unroll]] for (uint i = 0u; i < TM; i += 4u) {
                vec4 v = a4(abase + (k + q) * p.lda + m0 + i);
                pa[h][i][q] = v.x; pa[h][i + 1u][q] = v.y; pa[h][i + 2u][q] = v.z; pa[h][i + 3u][q] = v.w;
            }
#else
        [[unroll]] for (uint i = 0u; i < TM; i++) pa[h][i] = a4(ai[i] + k);
#endif
#if !ROWSUM_ONLY
        [[unroll]] for (uint r = 0u; r < NB; r++) {
            uint u = r * SG + lane;
#if TRANS_B
            vb[h][r] = b4(bbase + min(n0 + u, p.N - 1u) * p.ldb + k);
#else
            uint q = u / (TN / 4u), jv = u % (TN / 4u);
            vb[h][r] = b4(bbase + (k + q) * p.ldb + n0 + 4u * jv);
#endif
        }
#endif
    }
#if !ROWSUM_ONLY
    [[unroll]] for (uint h = 0u; h < KQ; h++)
        [[unroll]] for (uint q = 0u; q < 4u; q++)
            [[unroll]] for (uint j = 0u; j < TN; j++) {
                uint u = panel_vector(q, j);
                float bv = subgroupShuffle(vb[h][u / SG][panel_comp(q, j)], u % SG);
                [[unroll]] for (uint i = 0u; i < TM; i++)
                    acc[i][j] = fma(pa[h][i][q], bv, acc[i][j]);
            }
#endif
#if ROWSUM
    if (want_rs)
        [[unroll]] for (uint h = 0u; h < KQ; h++)
            [[unroll]] for (uint q = 0u; q < 4u; q++)
                [[unroll]] for (uint i = 0u; i < TM; i++) rs[i] += pa[h][i][q];
#endif
}

// One k of the tail (K not a multiple of the step): scalar reads, lane l
// reading columns n0 + r*SG + l.
void kstep1(uint k) {
    float sa[TM];
    [[unroll]] for (uint i = 0u; i < TM; i++)
        sa[i] = a1(TRANS_A != 0 ? abase + k * p.lda + min(m0 + i, p.M - 1u) : ai[i] + k);
#if !ROWSUM_ONLY
    float sb[NB];
    [[unroll]] for (uint r = 0u; r < NB; r++) {
        uint n = min(n0 + r * SG + lane, p.N - 1u);
        sb[r] = b1(bbase + (TRANS_B != 0 ? n * p.ldb + k : k * p.ldb + n));
    }
    [[unroll]] for (uint j = 0u; j < TN; j++) {
        float bv = subgroupShuffle(sb[j / SG], j % SG);
        [[unroll]] for (uint i = 0u; i < TM; i++) acc[i][j] = fma(sa[i], bv, acc[i][j]);
    }
#endif
#if ROWSUM
    if (want_rs) [[unroll]] for (uint i = 0u; i < TM; i++) rs[i] += sa[i];
#endif
}

void main() {
    const uint S = VP_WG_X / SG;
    lane = gl_SubgroupInvocationID;
    m0 = ((gl_WorkGroupID.y * S + gl_SubgroupID) * SG + lane) * TM;
    n0 = gl_WorkGroupID.x * TN;
    uint z = gl_WorkGroupID.z;
    abase = p.a_off + z * p.sa;
    bbase = p.b_off + z * p.sb;
    na = textureSize(ta);
    nb = textureSize(tb);
#if ROWSUM
    want_rs = gl_WorkGroupID.x == 0u && (p.flags & MATMUL_ADD_ROWSUMS) != 0u;
#endif
    // Rows past M read the last row (valid memory) and store nothing.
    [[unroll]] for (uint i = 0u; i < TM; i++) ai[i] = abase + min(m0 + i, p.M - 1u) * p.lda;
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        [[unroll]] for (uint j = 0u; j < TN; j++) acc[i][j] = 0.0;
#if ROWSUM
        rs[i] = 0.0;
#endif
    }

    uint kfull = p.K / (4u * KQ) * (4u * KQ);
    for (uint k = 0u; k < kfull; k += 4u * KQ) kstep(k);
    for (uint k = kfull; k < p.K; k++) kstep1(k);

    uint cbase = p.c_off + z * p.sc;
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint m = m0 + i;
        if (m >= p.M) break;
#if !ROWSUM_ONLY
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            uint n = n0 + j;
            if (n >= p.N) break;
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
        if (want_rs) e[p.e_off + m] += rs[i];
#endif
    }
}
