/* Residual add, constant scale and the learned sigmoid gate. */
#include "ref.h"

#include <assert.h>
#include <math.h>

void ref_add_forward(double *y, const double *a, const double *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void ref_add_backward(double *da, double *db, const double *dy, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (da) da[i] = dy[i];
        if (db) db[i] = dy[i];
    }
}

void ref_scale_forward(double *y, const double *x, double s, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = s * x[i];
}

void ref_scale_backward(double *dx, const double *dy, double s, size_t n) {
    for (size_t i = 0; i < n; i++) dx[i] = s * dy[i];
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Index into g for channel c: 0 for a scalar gate, c for a per-channel one. */
static int gate_index(int G, int c) { return G == 1 ? 0 : c; }

void ref_sigmoid_gate_forward(double *y, const double *h, const double *d, const double *g,
                              int N, int C, int G) {
    assert(G == 1 || G == C);
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)n * C + c;
            y[i] = h[i] + sigmoid(g[gate_index(G, c)]) * d[i];
        }
    }
}

void ref_sigmoid_gate_backward(double *dh, double *dd, double *dg, const double *dy,
                               const double *d, const double *g, int N, int C, int G) {
    assert(G == 1 || G == C);
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)n * C + c;
            if (dh) dh[i] = dy[i];
            if (dd) dd[i] = sigmoid(g[gate_index(G, c)]) * dy[i];
        }
    }
    if (!dg) return;
    /* Gate k covers channel k, or every channel when G = 1. Its dy ⊙ d terms
     * are summed in row-major order, scaled by σ'(g) = σ(1−σ), added once. */
    for (int k = 0; k < G; k++) {
        int c_begin = G == 1 ? 0 : k, c_end = G == 1 ? C : k + 1;
        double sum = 0.0;
        for (int n = 0; n < N; n++)
            for (int c = c_begin; c < c_end; c++)
                sum += dy[(size_t)n * C + c] * d[(size_t)n * C + c];
        double s = sigmoid(g[k]);
        dg[k] += s * (1.0 - s) * sum;
    }
}
