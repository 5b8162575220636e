/* What the GPU encoder and decoder share: the storage rule and file checks
 * of their pretrained tensors, the walk that sizes the activation plan and
 * allocates it (so the plan is exactly what is allocated) with the list of
 * buffers it allocated, freed together, and reading frozen pieces back. */
#ifndef VKPEFT_MODEL_COMMON_H
#define VKPEFT_MODEL_COMMON_H

#include "kernels.h"
#include "safetensors.h"
#include "vk.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Storage of both models' frozen weight matrices and embedding tables. */
enum encoder_storage {
    ENCODER_STORAGE_DEFAULT = 0, /* bf16 when the file's matrices are bf16, else f16 */
    ENCODER_STORAGE_F32,
    ENCODER_STORAGE_F16,
    ENCODER_STORAGE_BF16,
};

/* The device dtype of frozen matrices for `storage` and the file's dtype. */
enum vp_dtype model_storage_dtype(enum encoder_storage storage, enum io_dtype file);
/* VP_OK when the file tensor t is F32, F16 or BF16 and has the shape
 * (ndim, shape) config.json implies; else VP_ERROR_BAD_INPUT naming dir. */
vp_status model_check_file_tensor(const char *dir, const struct io_tensor *t, int ndim, const int64_t shape[2]);

/* Every activation piece model_take allocated; the model owns them and
 * frees them together with model_owned_free. */
struct model_owned {
    struct vk_buffer **bufs;
    int count, cap;
};

/* One layout walk: alloc false only sums the bytes per pool (the plan);
 * alloc true also allocates each piece and records it in `owned`. The
 * first failure is kept in `status` and later takes do nothing. */
struct model_taker {
    vp_context *ctx;
    struct model_owned *owned;
    const char *who; /* "encoder" or "decoder", for messages */
    bool alloc;
    uint64_t bytes[VP_POOL_COUNT];
    vp_status status;
};

/* Takes `size` bytes (0 counts as 4; rounded up to 4) from `pool` into buf. */
void model_take(struct model_taker *t, vp_pool pool, struct vk_buffer *buf, uint64_t size);
/* Frees every owned piece and the list; leaves `o` empty. */
void model_owned_free(vp_context *ctx, struct model_owned *o);
/* vk_pools_reserve(plan); over the budget with `checkpointed` > 0 (the
 * activations a training run would plan with activation checkpointing),
 * the message adds that remedy with both figures. */
vp_status model_reserve(vp_context *ctx, const uint64_t plan[VP_POOL_COUNT], uint64_t checkpointed);

/* Reads the n values of a frozen piece stored as dtype (f32, f16 or bf16)
 * into out (n) as f32. */
vp_status model_frozen_read(vp_context *ctx, const struct vk_buffer *buf, enum vp_dtype dtype, uint64_t n,
                            float *out, const char *who);

/* Fills a tensor descriptor's name (printf-style from fmt, ap) and its shape
 * (s0[, s1]; s1 <= 0: a vector of s0), for both models' tensor listers. */
void model_tensor_name_shape(char *name, size_t cap, int *ndim, int64_t shape[2], int64_t s0, int64_t s1,
                             const char *fmt, va_list ap) __attribute__((format(printf, 7, 0)));

#endif
