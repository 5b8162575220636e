/* float ↔ fp16 / bf16 conversions with round-to-nearest-even, written as
 * integer bit manipulation so they do not depend on compiler or hardware
 * half-precision support, and so a shader author can read the exact rules.
 *
 * Formats: float  = 1 sign, 8 exponent (bias 127), 23 mantissa bits;
 *          fp16   = 1 sign, 5 exponent (bias 15),  10 mantissa bits;
 *          bf16   = the top 16 bits of a float. */
#include "ref.h"

#include <string.h>

static uint32_t float_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_float(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* v >> shift rounded to nearest, ties to even; 1 ≤ shift ≤ 31. */
static uint32_t shift_right_rne(uint32_t v, int shift) {
    uint32_t q = v >> shift;
    uint32_t rest = v & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (q & 1u))) q++;
    return q;
}

uint16_t ref_f32_to_f16(float x) {
    const uint32_t u = float_bits(x);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t mag = u & 0x7FFFFFFFu;
    if (mag > 0x7F800000u) /* NaN: force quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7E00u | ((mag >> 13) & 0x03FFu));
    if (mag >= 0x477FF000u) /* ≥ 65520 = halfway past 65504 (odd): rounds to Inf */
        return (uint16_t)(sign | 0x7C00u);
    if (mag >= 0x38800000u) { /* ≥ 2^-14: normal fp16 */
        /* Rebias the exponent (127 → 15) and round away 13 mantissa bits; a
         * mantissa carry correctly bumps the exponent. */
        return (uint16_t)(sign | shift_right_rne(mag - ((127u - 15u) << 23), 13));
    }
    if (mag <= 0x33000000u) /* ≤ 2^-25, half the smallest subnormal: ties to 0 */
        return sign;
    /* fp16 subnormal: value / 2^-24 rounded. The float is m·2^(e−150) with
     * the implicit bit in m, so value / 2^-24 = m >> (126 − e). */
    const uint32_t e = mag >> 23;
    const uint32_t m = (mag & 0x007FFFFFu) | 0x00800000u;
    return (uint16_t)(sign | shift_right_rne(m, (int)(126u - e)));
}

float ref_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1Fu;
    uint32_t m = h & 0x03FFu;
    if (e == 0x1Fu) /* Inf, or NaN with its payload */
        return bits_float(sign | 0x7F800000u | (m << 13));
    if (e != 0) /* normal */
        return bits_float(sign | ((e + 127u - 15u) << 23) | (m << 13));
    if (m == 0) return bits_float(sign); /* ±0 */
    /* Subnormal m·2^-24: normalise so the leading 1 becomes the implicit bit. */
    uint32_t exp = 127u - 14u;
    while (!(m & 0x0400u)) {
        m <<= 1;
        exp--;
    }
    return bits_float(sign | (exp << 23) | ((m & 0x03FFu) << 13));
}

uint16_t ref_f32_to_bf16(float x) {
    const uint32_t u = float_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: truncation could give Inf */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* Same exponent range as float, so only the mantissa is rounded; the
     * carry handles overflow to Inf and subnormals need no special case. */
    return (uint16_t)shift_right_rne(u, 16);
}

float ref_bf16_to_f32(uint16_t h) { return bits_float((uint32_t)h << 16); }

void ref_round_f16(double *y, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = ref_f16_to_f32(ref_f32_to_f16((float)x[i]));
}

void ref_round_bf16(double *y, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = ref_bf16_to_f32(ref_f32_to_bf16((float)x[i]));
}
