// Philox4x32-10 (Salmon et al., SC'11), bit-identical to Random123 and to
// ref_philox4x32_10 in tests/reference/dropout.c. Dropout draws from it with
// counter = (element index lo, element index hi, step, stream) and key =
// (seed lo, seed hi), so a mask is reproducible from (seed, step, stream)
// and identical in forward and backward.
#ifndef VP_PHILOX_GLSL
#define VP_PHILOX_GLSL

const uint VP_PHILOX_M0 = 0xD2511F53u;
const uint VP_PHILOX_M1 = 0xCD9E8D57u;
const uint VP_PHILOX_W0 = 0x9E3779B9u;
const uint VP_PHILOX_W1 = 0xBB67AE85u;

uvec4 vp_philox4x32_10(uvec4 c, uvec2 k) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) k += uvec2(VP_PHILOX_W0, VP_PHILOX_W1);
        uint hi0, lo0, hi1, lo1;
        umulExtended(VP_PHILOX_M0, c.x, hi0, lo0);
        umulExtended(VP_PHILOX_M1, c.z, hi1, lo1);
        c = uvec4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

// True when element `index` (as lo/hi words) survives dropout: the top 24
// bits of Philox word 0 are >= threshold = ceil(p * 2^24)
// (ref_dropout_threshold). threshold 0 keeps everything.
bool vp_dropout_keep(uvec2 seed, uint step, uint stream, uint index_lo, uint index_hi,
                     uint threshold) {
    uvec4 r = vp_philox4x32_10(uvec4(index_lo, index_hi, step, stream), seed);
    return (r.x >> 8) >= threshold;
}

#endif
