/* Helpers the tests of the two whole-model references share
 * (test_model_ref.c, test_decoder_ref.c): a case's spec, the largest
 * difference of two arrays, copying tensors between two models by name, a
 * tensor's expected shape, and the finite-difference check of every
 * trainable gradient. Each test keeps its own step and tolerances, chosen
 * for its models, next to its cases. */
#ifndef VKPEFT_TESTS_REFERENCE_REFTEST_H
#define VKPEFT_TESTS_REFERENCE_REFTEST_H

#include "delta_ref.h"

#include <stdbool.h>
#include <stddef.h>

/* ref_spec_load, failing the case (and returning false) on an error. */
bool reftest_spec(struct delta_spec *s, const char *label, const char *preset, const char *json, int reparam);

/* max |a − b|; a NaN counts as the worst. */
double reftest_max_abs_diff(const double *a, const double *b, size_t n);

/* Every tensor of dst takes the values of src's tensor of the same name,
 * only those whose name `wanted` accepts when it is not NULL. Returns how
 * many same-named tensors differ in size (and were left alone). */
int reftest_copy_tensors(struct ref_tensors *dst, const struct ref_tensors *src, bool (*wanted)(const char *name));

/* The tensor exists with shape (s0[,s1[,s2]]) (ndim values) and is
 * trainable (has a grad) or frozen as `trainable` says. */
void reftest_expect_tensor(const struct ref_tensors *ts, const char *name, int ndim, int s0, int s1, int s2,
                           bool trainable);

/* Checks that the values of module i's tensors (named "*.delta{i}.*" or
 * "delta{i}.*") add up to count.c's counts->module_params[i] for every
 * module of the spec; `what` labels the messages. */
void reftest_expect_module_counts(const struct ref_tensors *ts, int modules, const struct delta_counts *counts,
                                  const char *what);

/* −log softmax(z)[y] with label smoothing ε (z (V) one row of logits),
 * written out independently of cross_entropy.c, for the loss tests. */
double reftest_token_loss(const double *z, int V, int y, double eps);

/* A model as the gradient check drives it. */
struct reftest_model {
    void *model;
    struct ref_tensors *tensors;                       // the model's
    double (*forward)(void *model, const void *batch); // runs the model, returns the loss
    void (*backward)(void *model);                     // accumulates every trainable gradient
};

/* Central differences, h = step·max(1, |θ|), against the analytic gradient:
 * |fd − g| ≤ atol + rtol·|fd| for every element. */
struct reftest_fd {
    double step, rtol, atol;
    const char *may_be_zero; // tensors whose name contains this may have an all-zero gradient; or NULL
    int label_width;         // of `what` in the summary line
};

/* Checks every element of every trainable tensor of `m` on `batch` (a
 * gradient that is 0 everywhere fails as vacuous); prints one summary line
 * with the worst error as a share of the tolerance. Returns how many
 * elements it checked. */
size_t reftest_check_gradients(const struct reftest_model *m, const void *batch, const struct reftest_fd *fd,
                               const char *what);

#endif
