/* safetensors: Hugging Face's tensor file format.
 *
 *   [8 bytes: little-endian u64 N][N bytes: JSON header][data bytes]
 *
 * The header maps tensor names to {"dtype", "shape", "data_offsets": [begin,
 * end)} (offsets relative to the data section) plus an optional
 * "__metadata__" object of string values. Files come from the internet, so
 * everything is validated before use: header size, JSON, dtypes, shapes,
 * shape × dtype size = byte length, offsets inside the data and tensors
 * neither overlapping nor leaving holes. */
#ifndef VKPEFT_IO_SAFETENSORS_H
#define VKPEFT_IO_SAFETENSORS_H

#include "util.h"

#include <stddef.h>
#include <stdint.h>

enum io_dtype {
    IO_DTYPE_F32 = 0,
    IO_DTYPE_F16,
    IO_DTYPE_BF16,
    IO_DTYPE_F64,
    IO_DTYPE_I64,
    IO_DTYPE_I32,
    IO_DTYPE_I16,
    IO_DTYPE_I8,
    IO_DTYPE_U8,
    IO_DTYPE_BOOL,
    IO_DTYPE_COUNT
};

const char *io_dtype_name(enum io_dtype t); /* "F32" */
size_t io_dtype_size(enum io_dtype t);

#define IO_MAX_DIMS 8

struct io_tensor {
    char *name;
    enum io_dtype dtype;
    int ndim;
    int64_t shape[IO_MAX_DIMS];
    uint64_t numel;
    uint64_t nbytes;
    const void *data; /* inside the mapping (or the buffer given to parse) */
};

struct io_safetensors;

/* Maps and validates `path`. Failures: VP_ERROR_IO (cannot read) or
 * VP_ERROR_BAD_INPUT with the file, the tensor and what is wrong. */
vp_status io_safetensors_open(const char *path, struct io_safetensors **out);
/* Validates an in-memory file; `data` must outlive the result. `name` is
 * used in messages. */
vp_status io_safetensors_parse(const void *data, size_t size, const char *name,
                               struct io_safetensors **out);
void io_safetensors_close(struct io_safetensors *f);

size_t io_safetensors_count(const struct io_safetensors *f);
/* Tensors in data-offset order. */
const struct io_tensor *io_safetensors_at(const struct io_safetensors *f, size_t i);
const struct io_tensor *io_safetensors_find(const struct io_safetensors *f, const char *name);
/* A "__metadata__" string value, or NULL. */
const char *io_safetensors_metadata(const struct io_safetensors *f, const char *key);
const char *io_safetensors_path(const struct io_safetensors *f);

/* One tensor to write. */
struct io_tensor_out {
    const char *name;
    enum io_dtype dtype;
    int ndim;
    int64_t shape[IO_MAX_DIMS];
    const void *data; /* numel × dtype size bytes */
};

/* Writes a safetensors file atomically (temporary file, fsync, rename).
 * metadata: NULL-terminated key, value, key, value, ... list, or NULL. */
vp_status io_safetensors_write(const char *path, const struct io_tensor_out *tensors, size_t count,
                               const char *const *metadata);

/* A model's weights: one file, or shards listed by model.safetensors.index.json. */
struct io_weights;
/* Opens `dir`/model.safetensors, else the index and every shard it names
 * (each validated, and every index entry must exist in its shard). */
vp_status io_weights_open(const char *dir, struct io_weights **out);
void io_weights_close(struct io_weights *w);
const struct io_tensor *io_weights_find(const struct io_weights *w, const char *name);
size_t io_weights_count(const struct io_weights *w);
const struct io_tensor *io_weights_at(const struct io_weights *w, size_t i);

#endif
