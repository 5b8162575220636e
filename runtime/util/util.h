/* Small helpers every layer uses: status messages, hashing, files, time. */
#ifndef VKPEFT_UTIL_H
#define VKPEFT_UTIL_H

#include "vkpeft.h"

#include <stddef.h>
#include <stdint.h>

/* Records the thread's last error message and returns `status`, so a failing
 * path reads `return vp_fail(VP_ERROR_IO, "cannot open %s: %s", path, ...)`. */
vp_status vp_fail(vp_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends context to the current message: "loading X: <old message>". */
vp_status vp_fail_context(vp_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void vp_clear_error(void);

/* 64-bit FNV-1a; `h` chains calls (start with VP_HASH_INIT). */
#define VP_HASH_INIT 0xcbf29ce484222325ull
uint64_t vp_hash_bytes(uint64_t h, const void *data, size_t size);
uint64_t vp_hash_str(uint64_t h, const char *s); /* includes the terminating 0 */

/* Reads a whole file into a malloc'd buffer (NUL-terminated, size excludes
 * the NUL). Returns VP_ERROR_IO with the path and errno text. */
vp_status vp_file_read(const char *path, void **data, size_t *size);
/* Writes atomically: temporary file in the same folder, fsync, rename. */
vp_status vp_file_write_atomic(const char *path, const void *data, size_t size);
/* from_dir/name copied to to_dir/name with vp_file_write_atomic. */
vp_status vp_file_copy_atomic(const char *from_dir, const char *to_dir, const char *name);
/* mkdir -p. */
vp_status vp_mkdir_p(const char *path);

/* Deterministic host randomness (random.c): splitmix64; a draw uniform in
 * [0, bound) without modulo bias (bound > 0); the shuffling state of an
 * epoch of a seeded run. */
uint64_t vp_splitmix64(uint64_t *state);
uint64_t vp_random_below(uint64_t *state, uint64_t bound);
uint64_t vp_epoch_rng(uint64_t seed, uint64_t epoch);

/* Monotonic seconds. */
double vp_now(void);

/* Parses "123", "64K", "1.5G" (binary units). Returns false on garbage. */
bool vp_parse_bytes(const char *text, uint64_t *out);
/* "1.50 GiB" into buf. */
const char *vp_format_bytes(uint64_t bytes, char *buf, size_t size);

/* ---- fp32 <-> fp16 / bf16 (half.c) ----------------------------------------
 * Round-to-nearest-even with integer operations only, bit-identical to the
 * GPU convert kernels: NaN stays a quiet NaN (sign and top payload bits kept),
 * overflow becomes ±Inf, fp16 subnormals are produced and read exactly. */
uint16_t vp_f32_to_f16(float x);
float vp_f16_to_f32(uint16_t h);
uint16_t vp_f32_to_bf16(float x);
float vp_bf16_to_f32(uint16_t h);
void vp_f32_to_f16_array(uint16_t *dst, const float *src, size_t n);
void vp_f16_to_f32_array(float *dst, const uint16_t *src, size_t n);
void vp_f32_to_bf16_array(uint16_t *dst, const float *src, size_t n);
void vp_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n);

#endif
