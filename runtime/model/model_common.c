#include "model_common.h"
#include <stdio.h>
#include <stdlib.h>

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

enum vp_dtype model_storage_dtype(enum encoder_storage s, enum io_dtype file) {
    switch (s) {
    case ENCODER_STORAGE_F32: return VP_DTYPE_F32;
    case ENCODER_STORAGE_F16: return VP_DTYPE_F16;
    case ENCODER_STORAGE_BF16: return VP_DTYPE_BF16;
    case ENCODER_STORAGE_DEFAULT: break;
    }
    /* bf16 files stay bf16 (lossless); everything else is stored f16, which
     * every device reads (kernels unpack packed words, no 16-bit storage
     * feature needed). */
    return file == IO_DTYPE_BF16 ? VP_DTYPE_BF16 : VP_DTYPE_F16;
}

vp_status model_check_file_tensor(const char *dir, const struct io_tensor *t, int ndim, const int64_t shape[2]) {
    if (t->dtype != IO_DTYPE_F32 && t->dtype != IO_DTYPE_F16 && t->dtype != IO_DTYPE_BF16)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor %s is %s; vkpeft reads F32, F16 and BF16",
                       dir, t->name, io_dtype_name(t->dtype));
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same)
        return vp_fail(VP_ERROR_BAD_INPUT,
                       "%s: tensor %s has shape (%lld%s%lld), config.json implies (%lld%s%lld); "
                       "is config.json from the same model?",
                       dir, t->name, (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                       t->ndim > 1 ? (long long)t->shape[1] : 0LL, (long long)shape[0],
                       ndim > 1 ? ", " : "", ndim > 1 ? (long long)shape[1] : 0LL);
    return VP_OK;
}

void model_take(struct model_taker *t, vp_pool pool, struct vk_buffer *buf, uint64_t size) {
    if (t->status != VP_OK) return;
    size = align_up(size ? size : 4, 4);
    t->bytes[pool] += align_up(size, vk_pool_alignment(t->ctx));
    if (!t->alloc) return;
    struct model_owned *o = t->owned;
    if (o->count == o->cap) {
        int cap = o->cap ? 2 * o->cap : 128;
        struct vk_buffer **no = realloc(o->bufs, (size_t)cap * sizeof *no);
        if (!no) {
            t->status = vp_fail(VP_ERROR_HOST_MEMORY, "%s: out of host memory", t->who);
            return;
        }
        o->bufs = no;
        o->cap = cap;
    }
    t->status = vk_buffer_alloc(t->ctx, pool, size, buf);
    if (t->status == VP_OK) o->bufs[o->count++] = buf;
}

void model_owned_free(vp_context *ctx, struct model_owned *o) {
    for (int k = 0; k < o->count; k++) vk_buffer_free(ctx, o->bufs[k]);
    free(o->bufs);
    *o = (struct model_owned){0};
}

vp_status model_frozen_read(vp_context *ctx, const struct vk_buffer *buf, enum vp_dtype dtype, uint64_t n,
                            float *out, const char *who) {
    if (dtype == VP_DTYPE_F32) return vk_buffer_read(ctx, buf, 0, out, n * 4);
    uint16_t *h = malloc(n * 2 + 2);
    if (!h) return vp_fail(VP_ERROR_HOST_MEMORY, "%s: out of host memory", who);
    vp_status s = vk_buffer_read(ctx, buf, 0, h, n * 2);
    if (s == VP_OK && dtype == VP_DTYPE_F16) vp_f16_to_f32_array(out, h, n);
    if (s == VP_OK && dtype == VP_DTYPE_BF16) vp_bf16_to_f32_array(out, h, n);
    free(h);
    return s;
}

void model_tensor_name_shape(char *name, size_t cap, int *ndim, int64_t shape[2], int64_t s0, int64_t s1,
                             const char *fmt, va_list ap) {
    vsnprintf(name, cap, fmt, ap);
    shape[0] = s0;
    shape[1] = s1;
    *ndim = s1 > 0 ? 2 : 1;
}

vp_status model_reserve(vp_context *ctx, const uint64_t plan[VP_POOL_COUNT], uint64_t checkpointed) {
    vp_status s = vk_pools_reserve(ctx, plan);
    if (s != VP_ERROR_OVER_BUDGET || !checkpointed) return s;
    char why[1024], a[32], b[32];
    snprintf(why, sizeof why, "%s", vp_last_error());
    return vp_fail(s, "%s; or train with --checkpoint-activations (activations %s instead of %s)", why,
                   vp_format_bytes(checkpointed, a, sizeof a), vp_format_bytes(plan[VP_POOL_ACTIVATIONS], b, sizeof b));
}
