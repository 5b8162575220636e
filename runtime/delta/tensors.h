/* Host copies of a delta's tensors, for saving and loading. Names follow
 * runtime/model/README.md: encoder.layers.{l}.delta{i}.lora_A, ...,
 * delta{i}.reparam.*, Hugging Face names for bitfit/full and the head. */
#ifndef VKPEFT_DELTA_TENSORS_H
#define VKPEFT_DELTA_TENSORS_H

#include "util.h"

#define DELTA_NAME_MAX 160

struct delta_tensor {
    char name[DELTA_NAME_MAX];
    int ndim;
    int64_t shape[4];
    float *data; /* owned */
};

struct delta_tensors {
    struct delta_tensor *items;
    size_t count, cap;
};

/* Appends a zero-filled tensor; returns it (NULL on host OOM, with a message). */
struct delta_tensor *delta_tensors_add(struct delta_tensors *t, const char *name, int ndim,
                                       const int64_t *shape);
struct delta_tensor *delta_tensors_find(const struct delta_tensors *t, const char *name);
uint64_t delta_tensor_numel(const struct delta_tensor *t);
void delta_tensors_free(struct delta_tensors *t);

#endif
