/* Dropout driven by the counter-based Philox4x32-10 generator.
 *
 * A counter-based generator makes the mask a pure function of
 * (seed, step, stream, element index), so the forward and the backward, the
 * CPU and the GPU, all agree without storing the mask. Only 32-bit integer
 * operations are used, so a GLSL shader reproduces every bit. */
#include "ref.h"

#include <assert.h>
#include <math.h>

/* Philox4x32 round multipliers and Weyl key increments (Salmon et al.). */
static const uint32_t PHILOX_M0 = 0xD2511F53u;
static const uint32_t PHILOX_M1 = 0xCD9E8D57u;
static const uint32_t PHILOX_W0 = 0x9E3779B9u; /* golden ratio */
static const uint32_t PHILOX_W1 = 0xBB67AE85u; /* sqrt(3) - 1 */

void ref_mulhilo32(uint32_t *hi, uint32_t *lo, uint32_t a, uint32_t b) {
    /* Schoolbook product on 16-bit halves; every partial product and the
     * middle sum fit in 32 bits. */
    uint32_t a_lo = a & 0xFFFFu, a_hi = a >> 16;
    uint32_t b_lo = b & 0xFFFFu, b_hi = b >> 16;
    uint32_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
    uint32_t mid = (ll >> 16) + (lh & 0xFFFFu) + (hl & 0xFFFFu); /* < 3·2^16 */
    *lo = (mid << 16) | (ll & 0xFFFFu);
    *hi = hh + (lh >> 16) + (hl >> 16) + (mid >> 16);
}

static void philox_round(uint32_t c[4], const uint32_t k[2]) {
    uint32_t hi0, lo0, hi1, lo1;
    ref_mulhilo32(&hi0, &lo0, PHILOX_M0, c[0]);
    ref_mulhilo32(&hi1, &lo1, PHILOX_M1, c[2]);
    uint32_t next[4] = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    for (int i = 0; i < 4; i++) c[i] = next[i];
}

void ref_philox4x32_10(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]) {
    uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
    uint32_t k[2] = {key[0], key[1]};
    /* Ten rounds with the key bumped between rounds (nine bumps), exactly
     * as Random123's philox4x32_R(10, ...). */
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    for (int i = 0; i < 4; i++) out[i] = c[i];
}

/* The top 24 bits of the first output word for element `index`. */
static uint32_t dropout_bits24(const struct ref_dropout_key *key, uint64_t index) {
    const uint32_t counter[4] = {(uint32_t)index, (uint32_t)(index >> 32), key->step,
                                 key->stream};
    const uint32_t k[2] = {(uint32_t)key->seed, (uint32_t)(key->seed >> 32)};
    uint32_t out[4];
    ref_philox4x32_10(out, counter, k);
    return out[0] >> 8;
}

double ref_dropout_uniform(const struct ref_dropout_key *key, uint64_t index) {
    return dropout_bits24(key, index) * 0x1.0p-24;
}

uint32_t ref_dropout_threshold(double p) {
    assert(p >= 0.0 && p <= 1.0);
    /* p·2^24 is exact (a power-of-two scale), so u ≥ p ⇔ bits ≥ ceil(p·2^24). */
    const double threshold = ceil(p * 0x1.0p24);
    return (uint32_t)threshold;
}

double ref_dropout_multiplier(const struct ref_dropout_key *key, double p, uint64_t index) {
    /* p = 1 gives threshold 2^24, above every 24-bit value: nothing is kept,
     * and 1/(1−p) = Inf is never multiplied into anything. */
    if (dropout_bits24(key, index) < ref_dropout_threshold(p)) return 0.0;
    return 1.0 / (1.0 - p);
}

void ref_dropout_forward(double *y, const double *x, const struct ref_dropout_key *key, double p,
                         size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] * ref_dropout_multiplier(key, p, i);
}

void ref_dropout_backward(double *dx, const double *dy, const struct ref_dropout_key *key,
                          double p, size_t n) {
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * ref_dropout_multiplier(key, p, i);
}
