// Storage-type helpers for the pointwise, norm and embedding kernels:
// bit-exact fp16/bf16 <-> fp32 with integer operations only, matching
// vp_f32_to_f16 & co. (runtime/util/half.c) and the reference. Floats are
// handled as their bit patterns (uint), so no float operation can flush a
// subnormal or quieten a NaN on the way.
//
// 16-bit tensors are read as packed 32-bit words: element i is the low half
// of word i/2 when i is even, the high half when odd.
#ifndef VP_CONVERT_GLSL
#define VP_CONVERT_GLSL

// Bits of the fp32 value of fp16 `h` (low 16 bits).
uint vp_f16_bits_to_f32_bits(uint h) {
    uint sign = (h & 0x8000u) << 16;
    uint e = (h >> 10) & 0x1Fu;
    uint m = h & 0x03FFu;
    if (e == 0x1Fu) return sign | 0x7F800000u | (m << 13);
    if (e != 0u) return sign | ((e + 112u) << 23) | (m << 13);
    if (m == 0u) return sign;
    // Subnormal m·2^-24: normalise so the leading one becomes the implicit bit.
    int lead = findMSB(m);  // 0..9
    uint shifted = (m << uint(10 - lead)) & 0x03FFu;
    return sign | (uint(lead + 103) << 23) | (shifted << 13);
}

float vp_f16_to_f32(uint h) { return uintBitsToFloat(vp_f16_bits_to_f32_bits(h)); }
float vp_bf16_to_f32(uint h) { return uintBitsToFloat(h << 16); }

// value >> shift rounded to nearest, ties to even (1 <= shift <= 31).
uint vp_round_shift(uint value, uint shift) {
    uint kept = value >> shift;
    uint dropped = value & ((1u << shift) - 1u);
    uint half_ = 1u << (shift - 1u);
    return kept + ((dropped > half_ || (dropped == half_ && (kept & 1u) != 0u)) ? 1u : 0u);
}

// fp16 bits (low 16) of the fp32 with bits `u`, round-to-nearest-even.
uint vp_f32_bits_to_f16(uint u) {
    uint sign = (u >> 16) & 0x8000u;
    uint a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u)  // Inf, or NaN made quiet with its top payload bits
        return sign | 0x7C00u | (a > 0x7F800000u ? (0x0200u | ((a >> 13) & 0x03FFu)) : 0u);
    int e = int(a >> 23) - 127;
    if (e >= 16) return sign | 0x7C00u;
    if (e >= -14) return sign | vp_round_shift(a - 0x38000000u, 13u);  // rebias 127 -> 15
    if (e < -25) return sign;
    uint significand = (a & 0x007FFFFFu) | 0x00800000u;
    return sign | vp_round_shift(significand, uint(-e - 1));
}

// bf16 bits (low 16) of the fp32 with bits `u`, round-to-nearest-even.
uint vp_f32_bits_to_bf16(uint u) {
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u >> 16) | 0x0040u;
    return vp_round_shift(u, 16u);
}

// Half `i & 1` of a packed word.
uint vp_half_of(uint word, uint i) { return (i & 1u) != 0u ? word >> 16 : word & 0xFFFFu; }

// The fp32 value of a stored element of type T (0 f32 bits, 1 f16, 2 bf16),
// given the 32-bit word that holds it.
float vp_load_typed(uint word, uint i, uint T) {
    if (T == 0u) return uintBitsToFloat(word);
    uint h = vp_half_of(word, i);
    return T == 1u ? vp_f16_to_f32(h) : vp_bf16_to_f32(h);
}

#endif
