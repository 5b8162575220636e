/* Host-side fp32 <-> fp16 / bf16 conversions, round-to-nearest-even.
 *
 * Model loading converts checkpoints between storage types on the host, and
 * the GPU's convert kernels must agree with it bit for bit, so the rules are
 * written out with integer operations only: no dependence on the compiler's
 * _Float16, the FPU's rounding mode or flush-to-zero settings.
 *
 *   fp32: 1 sign, 8 exponent bits (bias 127), 23 fraction bits
 *   fp16: 1 sign, 5 exponent bits (bias 15),  10 fraction bits
 *   bf16: the upper half of an fp32
 *
 * NaN stays a quiet NaN with its sign and top payload bits, values past the
 * largest finite one round to ±Inf, and fp16 subnormals are produced and read
 * exactly. */
#include "util.h"

#include <string.h>

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* value / 2^shift rounded to nearest, ties to even (1 <= shift <= 31). */
static uint32_t round_shift(uint32_t value, unsigned shift) {
    uint32_t kept = value >> shift;
    uint32_t dropped = value & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    return kept + (dropped > half || (dropped == half && (kept & 1u)));
}

uint16_t vp_f32_to_f16(float x) {
    uint32_t u = bits_of(x);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7FFFFFFFu;
    if (abs >= 0x7F800000u) /* Inf stays Inf; NaN keeps 9 payload bits and is made quiet */
        return (uint16_t)(sign | 0x7C00u | (abs > 0x7F800000u ? 0x0200u | ((abs >> 13) & 0x03FFu) : 0));
    int exp = (int)(abs >> 23) - 127; /* unbiased exponent of a finite float */
    if (exp >= 16) return (uint16_t)(sign | 0x7C00u);
    if (exp >= -14) {
        /* Normal fp16. Rounding the 23-bit fraction to 10 bits may carry into
         * the exponent field, which is exactly the next binade (or Inf past
         * 65504: 65520 and up round to 2^16 = Inf). */
        uint32_t rebased = abs - (uint32_t)(127 - 15) * 0x00800000u;
        return (uint16_t)(sign | round_shift(rebased, 13));
    }
    if (exp < -25) return (uint16_t)sign; /* below half the smallest subnormal: ±0 */
    /* Subnormal fp16 (or exactly 2^-25, a tie that rounds to even 0): the
     * significand with its implicit bit, in units of 2^-24. A float
     * subnormal input has exp = -127 and was caught above. */
    uint32_t significand = (abs & 0x007FFFFFu) | 0x00800000u;
    return (uint16_t)(sign | round_shift(significand, (unsigned)(-exp - 1)));
}

float vp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t frac = h & 0x03FFu;
    if (exp == 0x1Fu) return float_of(sign | 0x7F800000u | (frac << 13));
    if (exp != 0) return float_of(sign | ((exp + 127u - 15u) << 23) | (frac << 13));
    /* Subnormal or zero: frac · 2^-24, exact in fp32 (frac < 2^10). */
    float magnitude = (float)frac * 0x1.0p-24f;
    return float_of(sign | bits_of(magnitude));
}

uint16_t vp_f32_to_bf16(float x) {
    uint32_t u = bits_of(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: rounding could turn it into Inf */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* Rounding the low 16 bits away; a carry into the exponent is the next
     * binade, or Inf past the largest finite bf16. */
    return (uint16_t)round_shift(u, 16);
}

float vp_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

void vp_f32_to_f16_array(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = vp_f32_to_f16(src[i]);
}

void vp_f16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = vp_f16_to_f32(src[i]);
}

void vp_f32_to_bf16_array(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = vp_f32_to_bf16(src[i]);
}

void vp_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = vp_bf16_to_f32(src[i]);
}
