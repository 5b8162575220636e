/* Shared by the tests of the GPU decoder (test_decoder.c, test_generate.c):
 * a model folder written from the double-precision decoder reference. */
#ifndef VKPEFT_TESTS_DECTEST_H
#define VKPEFT_TESTS_DECTEST_H

#include "reference/decoder.h"

#include <stdbool.h>

/* Writes dir/config.json (`config`) and dir/model.safetensors: every tensor
 * of m as F32 under its Hugging Face name. A failure fails the case. */
bool dectest_write_model(const struct refd *m, const char *dir, const char *config);
/* Removes what dectest_write_model wrote and the folder (when dir is set). */
void dectest_remove_model(const char *dir);

#endif
