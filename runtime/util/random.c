/* The host's deterministic randomness: splitmix64 and unbiased bounded draws,
 * shared by data shuffling (train/batcher.c, train/lmdata.c) and sampling
 * (model/search.c). */
#include "util.h"

/* splitmix64 (Steele, Lea & Flood, 2014): the state walks by the golden-ratio
 * increment and each output is a bijective mix of it. */
uint64_t vp_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias (rejection). */
uint64_t vp_random_below(uint64_t *state, uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = vp_splitmix64(state);
    while (r >= limit);
    return r % bound;
}

uint64_t vp_epoch_rng(uint64_t seed, uint64_t epoch) {
    uint64_t state = seed ^ (0x632be59bd9b4e019ull * (epoch + 1));
    vp_splitmix64(&state);
    return state;
}
