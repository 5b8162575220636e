/* Shared by the tests of the GPU decoder (test_decoder.c, test_generate.c,
 * test_decoder_checkpoint.c) and the encoder-decoder (test_seq2seq*.c):
 * a model folder written from the double-precision decoder reference. */
#ifndef VKPEFT_TESTS_DECTEST_H
#define VKPEFT_TESTS_DECTEST_H

#include "reference/decoder.h"
#include "vkpeft.h"

#include <stdbool.h>
#include <stddef.h>

/* Writes dir/config.json (`config`) and dir/model.safetensors: every tensor
 * of m as F32 under its Hugging Face name. A failure fails the case. */
bool dectest_write_model(const struct refd *m, const char *dir, const char *config);
/* The same for any reference's tensors (the seq2seq reference's too). */
bool dectest_write_tensors(const struct ref_tensors *ts, const char *dir, const char *config);

/* max|got − want| ≤ tol · max(max|want|, floor) (floor 0 but where a
 * gradient cancels exactly and its error goes with other terms); reports
 * the worst element and keeps the largest share of the tolerance used in
 * *worst_used (may be NULL). A failure fails the case. */
bool dectest_check_normwise(const float *got, const double *want, size_t n, double tol, const char *what,
                            double *worst_used, double floor);
/* A gradient of a run without activation checkpointing (plain) and with it
 * (ck), n values: equal bit for bit, and (want_nonzero) not all zero, so
 * the comparison tests something. A failure fails the case. */
bool dectest_check_same_grad(const float *plain, const float *ck, size_t n, const char *what, const char *name,
                             bool want_nonzero);
/* Each pool's bytes in use now (vp_pool_stats.in_use). */
void dectest_pools_in_use(vp_context *ctx, uint64_t in_use[VP_POOL_COUNT]);
/* Each pool grew by exactly plan[p] since `before` (dectest_pools_in_use):
 * what was planned is what was allocated. A failure names the pool and
 * `what`, and fails the case. */
bool dectest_pools_grew_by(vp_context *ctx, const uint64_t before[VP_POOL_COUNT], const uint64_t plan[VP_POOL_COUNT],
                           const char *what);
/* Removes dir/config.json, dir/model.safetensors and dir. */
bool dectest_remove_model(const char *dir);

#endif
