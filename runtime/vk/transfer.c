/* Moving bytes between the host and pool buffers. On the unified path the
 * pool is mapped and coherent, so a transfer is a memcpy (the queue is idle
 * between runs, and vkQueueSubmit makes host writes visible). On the
 * discrete path bytes go through a staging piece and a copy command, in
 * chunks so a large tensor never needs a staging buffer as large as itself. */
#include "vk.h"

#include <string.h>

#define STAGING_CHUNK ((VkDeviceSize)32 << 20)

struct copy_args {
    const struct vk_buffer *dst, *src;
    VkDeviceSize dst_offset, src_offset, size;
};

static vp_status record_copy(struct vk_recorder *rec, void *arg) {
    struct copy_args *a = arg;
    return vk_recorder_copy(rec, a->dst, a->dst_offset, a->src, a->src_offset, a->size);
}

static vp_status check(const struct vk_buffer *b, VkDeviceSize offset, VkDeviceSize size,
                       const char *what) {
    if (!b || !b->buffer || offset > b->size || size > b->size - offset)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: %llu bytes at %llu do not fit a buffer of %llu bytes", what,
                       (unsigned long long)size, (unsigned long long)offset,
                       (unsigned long long)(b ? b->size : 0));
    return VP_OK;
}

/* Moves `size` bytes between host memory and `buf` through staging, in chunks. */
static vp_status staged(vp_context *ctx, const struct vk_buffer *buf, VkDeviceSize offset,
                        void *host, VkDeviceSize size, bool to_device) {
    struct vk_buffer staging;
    VkDeviceSize chunk = size < STAGING_CHUNK ? size : STAGING_CHUNK;
    vp_status s = vk_buffer_alloc(ctx, VP_POOL_STAGING, chunk, &staging);
    for (VkDeviceSize done = 0; s == VP_OK && done < size; done += chunk) {
        VkDeviceSize n = size - done < chunk ? size - done : chunk;
        char *h = (char *)host + done;
        struct copy_args a = {buf, &staging, offset + done, 0, n};
        if (to_device) {
            memcpy(staging.host, h, n);
        } else {
            a = (struct copy_args){&staging, buf, 0, offset + done, n};
        }
        s = vk_run_once(ctx, record_copy, &a);
        if (s == VP_OK && !to_device) memcpy(h, staging.host, n);
    }
    vk_buffer_free(ctx, &staging);
    return s;
}

vp_status vk_buffer_write(vp_context *ctx, const struct vk_buffer *dst, VkDeviceSize offset,
                          const void *data, VkDeviceSize size) {
    vp_status s = check(dst, offset, size, "vk_buffer_write");
    if (s != VP_OK || size == 0) return s;
    if (!dst->host) return staged(ctx, dst, offset, (void *)data, size, true);
    memcpy((char *)dst->host + offset, data, size);
    return VP_OK;
}

vp_status vk_buffer_read(vp_context *ctx, const struct vk_buffer *src, VkDeviceSize offset,
                         void *data, VkDeviceSize size) {
    vp_status s = check(src, offset, size, "vk_buffer_read");
    if (s != VP_OK || size == 0) return s;
    if (!src->host) return staged(ctx, src, offset, data, size, false);
    memcpy(data, (const char *)src->host + offset, size);
    return VP_OK;
}
