/* Matrix products: the Hugging Face linear layer and a strided batched GEMM. */
#include "ref.h"

#include <assert.h>

void ref_matmul_forward(double *y, const double *x, const double *w, const double *b,
                        int M, int K, int N) {
    for (int m = 0; m < M; m++) {
        const double *xm = x + (size_t)m * K;
        for (int n = 0; n < N; n++) {
            const double *wn = w + (size_t)n * K;
            double acc = b ? b[n] : 0.0;
            for (int k = 0; k < K; k++) acc += xm[k] * wn[k];
            y[(size_t)m * N + n] = acc;
        }
    }
}

/* dX[m,k] = Σ_n dY[m,n]·W[n,k]. */
static void linear_input_grad(double *dx, const double *dy, const double *w, int M, int K, int N) {
    for (int m = 0; m < M; m++) {
        for (int k = 0; k < K; k++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++) acc += dy[(size_t)m * N + n] * w[(size_t)n * K + k];
            dx[(size_t)m * K + k] = acc;
        }
    }
}

/* dW[n,k] += Σ_m dY[m,n]·X[m,k]: the sum is formed first, then added, so the
 * result does not depend on what dW held. */
static void linear_weight_grad(double *dw, const double *dy, const double *x, int M, int K, int N) {
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++) {
            double acc = 0.0;
            for (int m = 0; m < M; m++) acc += dy[(size_t)m * N + n] * x[(size_t)m * K + k];
            dw[(size_t)n * K + k] += acc;
        }
    }
}

static void linear_bias_grad(double *db, const double *dy, int M, int N) {
    for (int n = 0; n < N; n++) {
        double acc = 0.0;
        for (int m = 0; m < M; m++) acc += dy[(size_t)m * N + n];
        db[n] += acc;
    }
}

void ref_matmul_backward(double *dx, double *dw, double *db, const double *dy, const double *x,
                         const double *w, int M, int K, int N) {
    if (dx) linear_input_grad(dx, dy, w, M, K, N);
    if (dw) linear_weight_grad(dw, dy, x, M, K, N);
    if (db) linear_bias_grad(db, dy, M, N);
}

/* Element (row, col) of op(X) where op(X) has `cols` columns; X is stored
 * transposed when trans, i.e. as (cols, rows). */
static double op_at(const double *x, bool trans, int rows, int cols, int row, int col) {
    return trans ? x[(size_t)col * rows + row] : x[(size_t)row * cols + col];
}

void ref_matmul_batched(double *c, const double *a, const double *b, int batch, int M, int N,
                        int K, bool trans_a, bool trans_b, size_t stride_a, size_t stride_b,
                        size_t stride_c, double alpha, double beta) {
    assert(batch >= 0 && M >= 0 && N >= 0 && K >= 0);
    for (int i = 0; i < batch; i++) {
        const double *ai = a + (size_t)i * stride_a;
        const double *bi = b + (size_t)i * stride_b;
        double *ci = c + (size_t)i * stride_c;
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                double acc = 0.0;
                for (int k = 0; k < K; k++)
                    acc += op_at(ai, trans_a, M, K, m, k) * op_at(bi, trans_b, K, N, k, n);
                double *out = &ci[(size_t)m * N + n];
                /* BLAS rule: beta = 0 must not read C, which may be garbage. */
                *out = alpha * acc + (beta == 0.0 ? 0.0 : beta * *out);
            }
        }
    }
}
