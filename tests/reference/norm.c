/* LayerNorm (PyTorch) and RMSNorm (LLaMA) over the last dimension. */
#include "ref.h"

#include <math.h>

static double row_mean(const double *x, int C) {
    double sum = 0.0;
    for (int c = 0; c < C; c++) sum += x[c];
    return sum / C;
}

void ref_layernorm_forward(double *y, double *mean, double *rstd, const double *x,
                           const double *gamma, const double *beta, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const double *xn = x + (size_t)n * C;
        double *yn = y + (size_t)n * C;
        double mu = row_mean(xn, C);
        /* Two-pass variance: exact enough in double and free of the
         * cancellation E[x²] − μ² suffers from. Divided by C (biased), as
         * PyTorch does. */
        double var = 0.0;
        for (int c = 0; c < C; c++) var += (xn[c] - mu) * (xn[c] - mu);
        var /= C;
        double rs = 1.0 / sqrt(var + eps);
        for (int c = 0; c < C; c++)
            yn[c] = (xn[c] - mu) * rs * gamma[c] + (beta ? beta[c] : 0.0);
        if (mean) mean[n] = mu;
        if (rstd) rstd[n] = rs;
    }
}

void ref_layernorm_backward(double *dx, double *dgamma, double *dbeta, const double *dy,
                            const double *x, const double *mean, const double *rstd,
                            const double *gamma, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *xn = x + (size_t)n * C;
        const double *dyn = dy + (size_t)n * C;
        double *dxn = dx + (size_t)n * C;
        double mu = mean[n], rs = rstd[n];
        /* g = dy ⊙ γ is the gradient w.r.t. x̂; the two means are the
         * projections removed by the centring and the scaling. */
        double mean_g = 0.0, mean_gx = 0.0;
        for (int c = 0; c < C; c++) {
            double xhat = (xn[c] - mu) * rs;
            double g = dyn[c] * gamma[c];
            mean_g += g;
            mean_gx += g * xhat;
        }
        mean_g /= C;
        mean_gx /= C;
        for (int c = 0; c < C; c++) {
            double xhat = (xn[c] - mu) * rs;
            dxn[c] = rs * (dyn[c] * gamma[c] - mean_g - xhat * mean_gx);
        }
    }
    /* Parameter gradients: rows are summed in order n = 0.. for each channel,
     * then added once, so the result is independent of prior contents. */
    for (int c = 0; c < C; c++) {
        double sum_dg = 0.0, sum_db = 0.0;
        for (int n = 0; n < N; n++) {
            double dyv = dy[(size_t)n * C + c];
            sum_dg += dyv * (x[(size_t)n * C + c] - mean[n]) * rstd[n];
            sum_db += dyv;
        }
        if (dgamma) dgamma[c] += sum_dg;
        if (dbeta) dbeta[c] += sum_db;
    }
}

void ref_rmsnorm_forward(double *y, double *rstd, const double *x, const double *w, int N, int C,
                         double eps) {
    for (int n = 0; n < N; n++) {
        const double *xn = x + (size_t)n * C;
        double *yn = y + (size_t)n * C;
        double ms = 0.0;
        for (int c = 0; c < C; c++) ms += xn[c] * xn[c];
        ms /= C;
        double rs = 1.0 / sqrt(ms + eps);
        for (int c = 0; c < C; c++) yn[c] = xn[c] * rs * w[c];
        if (rstd) rstd[n] = rs;
    }
}

void ref_rmsnorm_backward(double *dx, double *dw, const double *dy, const double *x,
                          const double *rstd, const double *w, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *xn = x + (size_t)n * C;
        const double *dyn = dy + (size_t)n * C;
        double *dxn = dx + (size_t)n * C;
        double rs = rstd[n];
        /* Only the scaling is differentiated (no centring), so one mean. */
        double mean_gx = 0.0;
        for (int c = 0; c < C; c++) mean_gx += dyn[c] * w[c] * xn[c] * rs;
        mean_gx /= C;
        for (int c = 0; c < C; c++) dxn[c] = rs * (dyn[c] * w[c] - xn[c] * rs * mean_gx);
    }
    if (!dw) return;
    for (int c = 0; c < C; c++) {
        double sum = 0.0;
        for (int n = 0; n < N; n++) sum += dy[(size_t)n * C + c] * x[(size_t)n * C + c] * rstd[n];
        dw[c] += sum;
    }
}
