/* safetensors from bytes: the header's JSON, dtypes, shapes, offsets. A file
 * the reader accepts must describe tensors that lie inside it. */
#include "fuzz.h"

#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct io_safetensors *f = NULL;
    if (io_safetensors_parse(data, size, "fuzz.safetensors", &f) != VP_OK) return fuzz_rejected();
    const uint8_t *end = data + size;
    uint64_t sum = 0;
    for (size_t i = 0; i < io_safetensors_count(f); i++) {
        const struct io_tensor *t = io_safetensors_at(f, i);
        if (io_safetensors_find(f, t->name) == NULL) abort();
        if (t->nbytes != t->numel * io_dtype_size(t->dtype)) abort();
        const uint8_t *p = t->data;
        if (t->nbytes && (p < data || p > end || t->nbytes > (uint64_t)(end - p))) abort();
        /* Touch every byte: ASan catches a range outside the buffer. */
        for (uint64_t k = 0; k < t->nbytes; k++) sum += p[k];
    }
    (void)io_safetensors_metadata(f, "format");
    io_safetensors_close(f);
    return sum == 0xFFFFFFFFFFFFFFFFull; /* keeps the loop */
}
