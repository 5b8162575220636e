/* Shared by the tests that compare vkpeft with the PyTorch implementation
 * in tests/python/vkpeft_torch.py (Debian's python3-torch). */
#ifndef VKPEFT_TESTS_TORCHTEST_H
#define VKPEFT_TESTS_TORCHTEST_H

#include "encoder.h"
#include "harness.h"

/* Runs a shell command; a non-zero exit fails the case (and returns false). */
bool torch_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The interpreter that has torch: VKPEFT_TORCH_PYTHON, else /usr/bin/python3
 * (where Debian installs python3-torch). */
const char *torch_python(void);

/* Normwise agreement ||got − want|| ≤ tol·||want|| + floor; *ratio is the
 * error as a share of the bound (for the margin the tests print). */
bool torch_close_normwise(const float *got, const double *want, size_t n, double tol, double floor,
                          const char *what, const char *file, int line, double *ratio);

/* Gives every trainable tensor of `enc` random values in [-0.5, 0.5) from
 * `seed` (zero-initialised ones too, or many gradients would be trivially
 * zero) and writes them to `delta_path` (safetensors, vkpeft names) and the
 * spec to `spec_path`, for the PyTorch side to load. */
bool torch_randomize_delta(struct encoder *enc, const struct delta_spec *spec, uint64_t seed,
                           const char *delta_path, const char *spec_path);

#endif
