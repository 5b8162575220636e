// Shared by the matmul variants (matmul_texel.comp, matmul_tiled.comp): the
// push-constant block and the reading of 16-bit storage types.
//
// Every variant computes one strided-batched GEMM per dispatch:
//   C[z] = alpha * op(A[z]) * op(B[z]) (+ bias) + beta * C[z]
// with op(A) (M,K) and op(B) (K,N). A is stored (M,K), or (K,M) with
// TRANS_A; B is stored (K,N), or (N,K) with TRANS_B (the Hugging Face weight
// layout is B = W, TRANS_B = 1). Matrix z of each operand starts at
// off + z * stride elements of its binding. beta == 0 writes C without
// reading it. The linear layer and its gradients are special cases:
//   forward  Y  = X W^T + b      A = X,    B = W (TRANS_B), bias
//   dX       dX = dY W           A = dY,   B = W
//   dW, db   dW += dY^T X        A = dY (TRANS_A), B = X, beta = 1,
//            db += rows of dY^T   ROWSUM (fused: the row sums of op(A))
#ifndef VP_MATMUL_GLSL
#define VP_MATMUL_GLSL

#ifndef TRANS_A
#define TRANS_A 0
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif
#ifndef B_TYPE
#define B_TYPE 0 // 0 f32, 1 f16, 2 bf16 (enum vp_dtype); A and C are always f32
#endif
// Binding 3, E, is always bound. With ROWSUM = 0 it is a read-only bias,
// C[m][n] += e[e_off + n] when flags has MATMUL_BIAS; with ROWSUM = 1 it
// receives the row sums, e[e_off + m] += sum_k op(A)(m, k), when flags has
// MATMUL_ADD_ROWSUMS (set for the first column of tiles only). Unused, it is
// bound to some other range of the dispatch.
#ifndef ROWSUM
#define ROWSUM 0
#endif
#ifndef ROWSUM_ONLY
#define ROWSUM_ONLY 0 // only the row sums: B and C are bound but not touched
#endif

// C twin: struct matmul_push in runtime/kernels/matmul.c
layout(push_constant) uniform Push {
    uint M, N, K;
    uint lda, ldb, ldc;        // row pitch of each stored matrix, in elements
    uint a_off, b_off, c_off;  // matrix 0 of each operand, in elements of its binding
    uint e_off;                // bias or row sums, in elements of binding 3
    uint sa, sb, sc;           // batch strides in elements
    float alpha, beta;
    uint flags;                // MATMUL_*
} p;

const uint MATMUL_ADD_ROWSUMS = 1u;
const uint MATMUL_BIAS = 2u;

#if ROWSUM
layout(std430, binding = 3) buffer E { float e[]; };
#else
layout(std430, binding = 3) readonly buffer E { float e[]; };
#endif

// Two 16-bit values packed in a word (low half first) to fp32.
vec2 vp_unpack16x2(uint w) {
#if B_TYPE == 2
    return vec2(uintBitsToFloat(w << 16), uintBitsToFloat(w & 0xFFFF0000u));
#else
    return unpackHalf2x16(w);
#endif
}

#endif
