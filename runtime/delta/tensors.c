#include "tensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t delta_tensor_numel(const struct delta_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

struct delta_tensor *delta_tensors_add(struct delta_tensors *t, const char *name, int ndim,
                                       const int64_t *shape) {
    if (ndim < 0 || ndim > 4 || strlen(name) >= DELTA_NAME_MAX) {
        vp_fail(VP_ERROR_INVALID_ARGUMENT, "delta tensor '%s': bad name or %d dimensions", name, ndim);
        return NULL;
    }
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct delta_tensor *ni = realloc(t->items, cap * sizeof *ni);
        if (!ni) {
            vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for delta tensors");
            return NULL;
        }
        t->items = ni;
        t->cap = cap;
    }
    struct delta_tensor *d = &t->items[t->count];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->ndim = ndim;
    for (int i = 0; i < ndim; i++) d->shape[i] = shape[i];
    uint64_t n = delta_tensor_numel(d);
    d->data = calloc(n ? n : 1, sizeof *d->data);
    if (!d->data) {
        vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for delta tensor %s", name);
        return NULL;
    }
    t->count++;
    return d;
}

struct delta_tensor *delta_tensors_find(const struct delta_tensors *t, const char *name) {
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->items[i].name, name) == 0) return &t->items[i];
    return NULL;
}

void delta_tensors_free(struct delta_tensors *t) {
    for (size_t i = 0; i < t->count; i++) free(t->items[i].data);
    free(t->items);
    memset(t, 0, sizeof *t);
}
