/* Shared by the tests that compare vkpeft and its C references with the
 * PyTorch implementations in tests/python/ (vkpeft_torch.py, decoder_torch.py;
 * Debian's python3-torch). */
#ifndef VKPEFT_TESTS_TORCHTEST_H
#define VKPEFT_TESTS_TORCHTEST_H

#include "delta_ref.h"
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

/* A test that drives a PyTorch script: the script and a fresh folder for
 * the files both sides exchange. */
struct torch_run {
    const char *script;
    char dir[64];
};

/* main() of such a test: argv[1] is the script, argv[2] an optional case
 * filter; makes run->dir (/tmp/vkpeft-<name>-XXXXXX), runs the cases with
 * th_main and removes the folder. */
int torch_main(int argc, char **argv, const char *name, struct torch_run *run, const struct th_case *cases,
               size_t count);

/* Writes text to path; a failure fails the case (and returns false). */
bool torch_write_text(const char *path, const char *text);

/* Every tensor of a reference model (only the trainable ones when
 * trainable_only) as float64 safetensors, for the PyTorch side to load. */
bool torch_write_ref_tensors(const struct ref_tensors *ts, const char *path, bool trainable_only);

/* Adds job j to a run-many list: writes the spec (dir/spec-J.json) and the
 * trainable tensors of ts (dir/delta-J.safetensors) and appends
 * {"model": dir, "spec", "delta", "batch": batch, "out": dir/out-J.safetensors}
 * to `jobs`, a JSON array being built ("[" before the first job). */
void torch_add_job(char *jobs, size_t cap, const char *dir, size_t j, const struct delta_spec *spec,
                   const struct ref_tensors *ts, const char *batch);
/* Closes the list, writes it to dir/jobs.json and runs `script run-many` on it. */
bool torch_run_jobs(const struct torch_run *run, const char *dir, char *jobs, size_t cap);

/* Largest |got − want| / (atol + rtol·|want|) over n values (NaN is the worst). */
double torch_worst_error(const double *got, const double *want, size_t n, double atol, double rtol);

/* Compares a reference model's loss, logits (n values) and every trainable
 * gradient with a PyTorch output file ("loss", "logits", "grad.<name>",
 * float64), each within torch_worst_error ≤ 1, and prints the worst. */
void torch_compare_ref(const struct ref_tensors *ts, double loss, const double *logits, size_t n, const char *path,
                       double atol, double rtol, const char *what);

#endif
