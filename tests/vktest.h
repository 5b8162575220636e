/* Helpers for tests that use the device: context creation with diagnostics,
 * and the rule that any validation message fails the case that caused it. */
#ifndef VKPEFT_TESTS_VKTEST_H
#define VKPEFT_TESTS_VKTEST_H

#include "harness.h"
#include "kernels.h"
#include "vk.h"

/* Creates a context (options may be NULL); on failure records a failed
 * check with the library's message and returns NULL. */
vp_context *vt_context(const vp_context_options *options);

/* Like TH_MAIN, but every case must leave the validation-message count
 * unchanged, and the suite requires VKPEFT_VALIDATE to be set. */
int vt_main(const struct th_case *cases, size_t count, int argc, char **argv);
#define VT_MAIN(...)                                                            \
    int main(int argc, char **argv) {                                           \
        static const struct th_case cases_[] = { __VA_ARGS__ };                 \
        return vt_main(cases_, sizeof cases_ / sizeof cases_[0], argc, argv);   \
    }

/* For a case that provokes validation messages on purpose: the messages so
 * far do not fail it. */
void vt_accept_validation_messages(void);

/* Fills `n` floats with integers in [-range, range] (exact in fp32 math). */
void vt_fill_ints(float *v, size_t n, int range, uint64_t seed);

/* True when the device can use the unified memory path. */
bool vt_has_unified(void);

#endif
