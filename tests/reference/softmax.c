/* Masked softmax over the last dimension and its backward. */
#include "ref.h"

#include <assert.h>
#include <math.h>

static bool visible(const struct ref_softmax_mask *mask, int r, int c, int C) {
    if (!mask) return true;
    if (mask->keep && !mask->keep[(size_t)(r / mask->keep_rows) * C + c]) return false;
    if (mask->causal_T > 0 && c > r % mask->causal_T + mask->causal_offset) return false;
    return true;
}

static void softmax_row(double *y, const double *x, const struct ref_softmax_mask *mask, int r,
                        int C) {
    /* Subtracting the visible maximum keeps exp() from overflowing and does
     * not change the result. */
    double max = -INFINITY;
    for (int c = 0; c < C; c++)
        if (visible(mask, r, c, C) && x[c] > max) max = x[c];
    double sum = 0.0;
    for (int c = 0; c < C; c++) {
        y[c] = visible(mask, r, c, C) ? exp(x[c] - max) : 0.0;
        sum += y[c];
    }
    if (sum == 0.0) return; /* nothing visible: the row stays all zeros */
    for (int c = 0; c < C; c++) y[c] /= sum;
}

void ref_softmax_forward(double *y, const double *x, const struct ref_softmax_mask *mask, int R,
                         int C) {
    assert(!mask || !mask->keep || mask->keep_rows > 0);
    for (int r = 0; r < R; r++) softmax_row(y + (size_t)r * C, x + (size_t)r * C, mask, r, C);
}

void ref_softmax_backward(double *dx, const double *dy, const double *y, int R, int C) {
    for (int r = 0; r < R; r++) {
        const double *yr = y + (size_t)r * C;
        const double *dyr = dy + (size_t)r * C;
        double dot = 0.0;
        for (int c = 0; c < C; c++) dot += yr[c] * dyr[c];
        for (int c = 0; c < C; c++) dx[(size_t)r * C + c] = yr[c] * (dyr[c] - dot);
    }
}
