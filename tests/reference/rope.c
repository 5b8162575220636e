/* Rotary position embedding, Hugging Face LLaMA convention: the head
 * dimension is split into halves [x1, x2] (rotate_half), not interleaved
 * pairs; pair (x1[i], x2[i]) rotates by angle pos·inv_freq[i].
 * HF computes the angles in float32; the reference uses double. */
#include "ref.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

void ref_rope_inv_freq(double *inv_freq, int D, double theta) {
    assert(D % 2 == 0);
    for (int i = 0; i < D / 2; i++) inv_freq[i] = pow(theta, -2.0 * i / D);
}

/* Rotates every pair by sign·angle: sign +1 is the forward, −1 its inverse
 * (and transpose), which is the backward. */
static void rotate(double *y, const double *x, const int32_t *pos, int B, int H, int T, int D,
                   int offset, double theta, double sign) {
    const int half = D / 2;
    double *inv_freq = malloc((size_t)(half > 0 ? half : 1) * sizeof(double));
    assert(inv_freq);
    ref_rope_inv_freq(inv_freq, D, theta);
    for (size_t bh = 0; bh < (size_t)B * H; bh++) {
        for (int t = 0; t < T; t++) {
            double p = (double)(pos ? pos[t] : t) + offset;
            const double *xr = x + (bh * T + t) * D;
            double *yr = y + (bh * T + t) * D;
            for (int i = 0; i < half; i++) {
                double angle = p * inv_freq[i];
                double c = cos(angle), s = sign * sin(angle);
                double x1 = xr[i], x2 = xr[i + half];
                yr[i] = x1 * c - x2 * s;
                yr[i + half] = x2 * c + x1 * s;
            }
        }
    }
    free(inv_freq);
}

void ref_rope_forward(double *y, const double *x, const int32_t *pos, int B, int H, int T, int D,
                      int offset, double theta) {
    rotate(y, x, pos, B, H, T, D, offset, theta, 1.0);
}

void ref_rope_backward(double *dx, const double *dy, const int32_t *pos, int B, int H, int T,
                       int D, int offset, double theta) {
    rotate(dx, dy, pos, B, H, T, D, offset, theta, -1.0);
}
