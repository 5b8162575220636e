/* The command recorder: dispatches are recorded with the buffer ranges they
 * read and write, and barriers are derived from those declarations. A
 * barrier is inserted only when a command touches a range that an earlier
 * command since the last barrier wrote (read-after-write, write-after-write)
 * or read (write-after-read); independent commands get none. One global
 * memory barrier covers all pending hazards at once, which is what drivers
 * execute for buffer barriers anyway. A recording is one command buffer,
 * submitted as one batch, and may be run again with new input data. */
#include "vk.h"

#include <stdlib.h>
#include <string.h>

#define SETS_PER_POOL 256u
#define QUERIES_PER_POOL 1024u

struct pending {
    VkBuffer buffer;
    VkDeviceSize begin, end;
    enum vk_access access;
};

/* A texel-buffer view made for a texel binding, kept (and shared by every
 * dispatch that binds the same range with the same format) until the
 * recording restarts: the command buffer refers to it until then. */
struct cached_view {
    VkBuffer buffer;
    VkDeviceSize offset, range;
    VkFormat format;
    VkBufferView view;
};

struct cached_set {
    uint64_t hash;
    VkDescriptorSetLayout layout;
    VkDescriptorBufferInfo info[VK_MAX_BINDINGS];
    uint32_t count;
    VkDescriptorSet set;
};

struct vk_recorder {
    vp_context *ctx;
    uint32_t flags;
    VkCommandBuffer cmd;
    bool recording, ready;

    VkDescriptorPool *desc_pools;
    uint32_t desc_pool_count, desc_pool_used, sets_in_pool;
    struct cached_set *sets;
    uint32_t set_count, set_cap;
    struct cached_view *views;
    uint32_t view_count, view_cap;

    struct pending *pending;
    uint32_t pending_count, pending_cap;

    uint32_t dispatches, barriers, commands;

    VkQueryPool *query_pools;
    uint32_t query_pool_count, queries;
    double *timings;
    uint32_t timing_count;

    /* With timestamps only: what each command was, for profiles. */
    const char *site;
    bool barrier_before; /* order_command put a barrier before the next command */
    struct vk_command_info *infos;
    uint32_t info_cap;
};

vp_status vk_recorder_create(vp_context *ctx, uint32_t flags, struct vk_recorder **out) {
    *out = NULL;
    if ((flags & VK_RECORDER_TIMESTAMPS) && !ctx->info.timestamps)
        return vp_fail(VP_ERROR_UNSUPPORTED, "device '%s' has no timestamps on its compute queue",
                       ctx->info.name);
    struct vk_recorder *rec = calloc(1, sizeof *rec);
    if (!rec) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory creating a recorder");
    rec->ctx = ctx;
    rec->flags = flags;
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = ctx->command_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VkResult r = ctx->fn->vkAllocateCommandBuffers(ctx->device, &ai, &rec->cmd);
    if (r != VK_SUCCESS) {
        free(rec);
        return VK_FAIL(r, "vkAllocateCommandBuffers");
    }
    *out = rec;
    return VP_OK;
}

static void destroy_views(struct vk_recorder *rec) {
    for (uint32_t i = 0; i < rec->view_count; i++)
        rec->ctx->fn->vkDestroyBufferView(rec->ctx->device, rec->views[i].view, NULL);
    rec->view_count = 0;
}

void vk_recorder_destroy(struct vk_recorder *rec) {
    if (!rec) return;
    vp_context *ctx = rec->ctx;
    struct vk_fns *fn = ctx->fn;
    destroy_views(rec);
    free(rec->views);
    for (uint32_t i = 0; i < rec->desc_pool_count; i++)
        fn->vkDestroyDescriptorPool(ctx->device, rec->desc_pools[i], NULL);
    for (uint32_t i = 0; i < rec->query_pool_count; i++)
        fn->vkDestroyQueryPool(ctx->device, rec->query_pools[i], NULL);
    fn->vkFreeCommandBuffers(ctx->device, ctx->command_pool, 1, &rec->cmd);
    free(rec->desc_pools);
    free(rec->query_pools);
    free(rec->sets);
    free(rec->pending);
    free(rec->timings);
    free(rec->infos);
    free(rec);
}

static void full_barrier(struct vk_recorder *rec, VkPipelineStageFlags src, VkAccessFlags src_access,
                         VkPipelineStageFlags dst, VkAccessFlags dst_access) {
    VkMemoryBarrier b = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = src_access,
        .dstAccessMask = dst_access,
    };
    rec->ctx->fn->vkCmdPipelineBarrier(rec->cmd, src, dst, 0, 1, &b, 0, NULL, 0, NULL);
}

static const VkPipelineStageFlags work_stages =
    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
static const VkAccessFlags work_reads = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT;
static const VkAccessFlags work_writes = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;

vp_status vk_recorder_begin(struct vk_recorder *rec) {
    vp_context *ctx = rec->ctx;
    struct vk_fns *fn = ctx->fn;
    VK_TRY(fn->vkResetCommandBuffer(rec->cmd, 0));
    for (uint32_t i = 0; i < rec->desc_pool_count; i++)
        VK_TRY(fn->vkResetDescriptorPool(ctx->device, rec->desc_pools[i], 0));
    rec->desc_pool_used = 0;
    rec->sets_in_pool = SETS_PER_POOL; /* forces the first pool into use */
    rec->set_count = 0;
    destroy_views(rec);
    rec->pending_count = 0;
    rec->dispatches = rec->barriers = rec->commands = 0;
    rec->queries = 0;
    rec->timing_count = 0;
    rec->site = NULL;
    rec->barrier_before = false;
    rec->ready = false;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VK_TRY(fn->vkBeginCommandBuffer(rec->cmd, &bi));
    rec->recording = true;
    /* Work submitted before this recording (an earlier run, another
     * recorder) is ordered before it, and its writes made visible. */
    full_barrier(rec, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_ACCESS_MEMORY_WRITE_BIT, work_stages,
                 work_reads | work_writes);
    return VP_OK;
}

static bool overlaps(const struct pending *p, VkBuffer b, VkDeviceSize begin, VkDeviceSize end) {
    return p->buffer == b && p->begin < end && begin < p->end;
}

/* Declares one access; inserts the barrier first if it conflicts. */
static bool conflicts(const struct vk_recorder *rec, VkBuffer b, VkDeviceSize begin,
                      VkDeviceSize end, enum vk_access access) {
    for (uint32_t i = 0; i < rec->pending_count; i++) {
        const struct pending *p = &rec->pending[i];
        if (overlaps(p, b, begin, end) && ((p->access | access) & VK_ACCESS_WRITE)) return true;
    }
    return false;
}

static vp_status add_pending(struct vk_recorder *rec, VkBuffer b, VkDeviceSize begin,
                             VkDeviceSize end, enum vk_access access) {
    if (rec->pending_count == rec->pending_cap) {
        uint32_t cap = rec->pending_cap ? rec->pending_cap * 2 : 64;
        struct pending *np = realloc(rec->pending, cap * sizeof *np);
        if (!np) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory recording");
        rec->pending = np;
        rec->pending_cap = cap;
    }
    rec->pending[rec->pending_count++] = (struct pending){b, begin, end, access};
    return VP_OK;
}

struct access {
    VkBuffer buffer;
    VkDeviceSize begin, end;
    enum vk_access access;
};

/* Orders a command after every earlier one it conflicts with. */
static vp_status order_command(struct vk_recorder *rec, const struct access *acc, uint32_t n) {
    bool need = false;
    for (uint32_t i = 0; i < n && !need; i++)
        need = conflicts(rec, acc[i].buffer, acc[i].begin, acc[i].end, acc[i].access);
    if (need) {
        full_barrier(rec, work_stages, work_writes, work_stages, work_reads | work_writes);
        rec->barriers++;
        rec->barrier_before = true;
        rec->ctx->stats.barriers_recorded++;
        rec->pending_count = 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        vp_status s = add_pending(rec, acc[i].buffer, acc[i].begin, acc[i].end, acc[i].access);
        if (s != VP_OK) return s;
    }
    return VP_OK;
}

static vp_status write_timestamp(struct vk_recorder *rec, VkPipelineStageFlagBits stage) {
    if (!(rec->flags & VK_RECORDER_TIMESTAMPS)) return VP_OK;
    vp_context *ctx = rec->ctx;
    uint32_t pool = rec->queries / QUERIES_PER_POOL, slot = rec->queries % QUERIES_PER_POOL;
    if (pool == rec->query_pool_count) {
        VkQueryPool *np = realloc(rec->query_pools, (pool + 1) * sizeof *np);
        if (!np) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory recording");
        rec->query_pools = np;
        VkQueryPoolCreateInfo qi = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = QUERIES_PER_POOL,
        };
        VK_TRY(ctx->fn->vkCreateQueryPool(ctx->device, &qi, NULL, &rec->query_pools[pool]));
        rec->query_pool_count++;
    }
    if (slot == 0) ctx->fn->vkCmdResetQueryPool(rec->cmd, rec->query_pools[pool], 0, QUERIES_PER_POOL);
    ctx->fn->vkCmdWriteTimestamp(rec->cmd, stage, rec->query_pools[pool], slot);
    rec->queries++;
    return VP_OK;
}

/* Keeps what command `rec->commands` is (before it is counted; groups:
 * its workgroups, 0 for a transfer), with timestamps only: a recording
 * without them stores nothing. */
static vp_status note_command(struct vk_recorder *rec, const char *kernel, uint64_t groups) {
    const bool after_barrier = rec->barrier_before;
    rec->barrier_before = false;
    if (!(rec->flags & VK_RECORDER_TIMESTAMPS)) return VP_OK;
    if (rec->commands == rec->info_cap) {
        uint32_t cap = rec->info_cap ? rec->info_cap * 2 : 256;
        struct vk_command_info *ni = realloc(rec->infos, cap * sizeof *ni);
        if (!ni) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory recording");
        rec->infos = ni;
        rec->info_cap = cap;
    }
    rec->infos[rec->commands] = (struct vk_command_info){kernel, rec->site, groups, after_barrier};
    return VP_OK;
}

static vp_status new_descriptor_pool(struct vk_recorder *rec) {
    vp_context *ctx = rec->ctx;
    if (rec->desc_pool_used < rec->desc_pool_count) {
        rec->desc_pool_used++;
        rec->sets_in_pool = 0;
        return VP_OK;
    }
    VkDescriptorPool *np = realloc(rec->desc_pools, (rec->desc_pool_count + 1) * sizeof *np);
    if (!np) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory recording");
    rec->desc_pools = np;
    VkDescriptorPoolSize sizes[2] = {
        {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, SETS_PER_POOL * VK_MAX_BINDINGS},
        {VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, SETS_PER_POOL * VK_MAX_BINDINGS},
    };
    VkDescriptorPoolCreateInfo pi = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = SETS_PER_POOL,
        .poolSizeCount = 2,
        .pPoolSizes = sizes,
    };
    VK_TRY(ctx->fn->vkCreateDescriptorPool(ctx->device, &pi, NULL,
                                           &rec->desc_pools[rec->desc_pool_count]));
    rec->desc_pool_count++;
    rec->desc_pool_used++;
    rec->sets_in_pool = 0;
    return VP_OK;
}

/* The view of a texel binding's range, made on first use in this recording. */
static vp_status get_view(struct vk_recorder *rec, const VkDescriptorBufferInfo *info,
                          VkFormat format, VkBufferView *out) {
    for (uint32_t i = 0; i < rec->view_count; i++) {
        const struct cached_view *v = &rec->views[i];
        if (v->buffer == info->buffer && v->offset == info->offset && v->range == info->range &&
            v->format == format) {
            *out = v->view;
            return VP_OK;
        }
    }
    if (rec->view_count == rec->view_cap) {
        uint32_t cap = rec->view_cap ? rec->view_cap * 2 : 32;
        struct cached_view *nv = realloc(rec->views, cap * sizeof *nv);
        if (!nv) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory recording");
        rec->views = nv;
        rec->view_cap = cap;
    }
    vp_context *ctx = rec->ctx;
    VkBufferViewCreateInfo vi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
        .buffer = info->buffer,
        .format = format,
        .offset = info->offset,
        .range = info->range,
    };
    VkBufferView view;
    VK_TRY(ctx->fn->vkCreateBufferView(ctx->device, &vi, NULL, &view));
    rec->views[rec->view_count++] =
        (struct cached_view){info->buffer, info->offset, info->range, format, view};
    *out = view;
    return VP_OK;
}

/* The descriptor set for these bindings, shared by every dispatch in this
 * recording that binds the same ranges with the same layout. */
static vp_status get_set(struct vk_recorder *rec, const struct vk_pipeline *pipe,
                         const VkDescriptorBufferInfo *info, uint32_t n, VkDescriptorSet *out) {
    uint64_t h = vp_hash_bytes(VP_HASH_INIT, &pipe->set_layout, sizeof pipe->set_layout);
    h = vp_hash_bytes(h, info, n * sizeof *info);
    for (uint32_t i = 0; i < rec->set_count; i++) {
        struct cached_set *c = &rec->sets[i];
        if (c->hash == h && c->layout == pipe->set_layout && c->count == n &&
            memcmp(c->info, info, n * sizeof *info) == 0) {
            *out = c->set;
            return VP_OK;
        }
    }
    vp_context *ctx = rec->ctx;
    if (rec->sets_in_pool == SETS_PER_POOL) {
        vp_status s = new_descriptor_pool(rec);
        if (s != VP_OK) return s;
    }
    VkDescriptorSetAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = rec->desc_pools[rec->desc_pool_used - 1],
        .descriptorSetCount = 1,
        .pSetLayouts = &pipe->set_layout,
    };
    VkDescriptorSet set;
    VK_TRY(ctx->fn->vkAllocateDescriptorSets(ctx->device, &ai, &set));
    rec->sets_in_pool++;
    VkWriteDescriptorSet writes[VK_MAX_BINDINGS];
    VkBufferView views[VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < n; i++) {
        writes[i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = i,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = &info[i],
        };
        if (pipe->texel[i]) {
            vp_status s = get_view(rec, &info[i], pipe->texel[i], &views[i]);
            if (s != VP_OK) return s;
            writes[i].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
            writes[i].pBufferInfo = NULL;
            writes[i].pTexelBufferView = &views[i];
        }
    }
    ctx->fn->vkUpdateDescriptorSets(ctx->device, n, writes, 0, NULL);
    if (rec->set_count == rec->set_cap) {
        uint32_t cap = rec->set_cap ? rec->set_cap * 2 : 64;
        struct cached_set *ns = realloc(rec->sets, cap * sizeof *ns);
        if (!ns) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory recording");
        rec->sets = ns;
        rec->set_cap = cap;
    }
    struct cached_set *c = &rec->sets[rec->set_count++];
    memset(c, 0, sizeof *c);
    c->hash = h;
    c->layout = pipe->set_layout;
    c->count = n;
    memcpy(c->info, info, n * sizeof *info);
    c->set = set;
    *out = set;
    return VP_OK;
}

static vp_status check_recording(const struct vk_recorder *rec, const char *what) {
    if (!rec->recording)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s outside vk_recorder_begin/end", what);
    return VP_OK;
}

/* Checks a texel binding and rounds its size up to whole texels (the view's
 * range; it stays inside the piece's block). */
static vp_status texel_binding(const vp_context *ctx, const struct vk_pipeline *pipe, uint32_t i,
                               const struct vk_bind *b, VkDeviceSize *size) {
    VkFormat format = pipe->texel[i];
    VkDeviceSize texel = vk_texel_format_size(format);
    VkDeviceSize at = b->buf->offset + b->offset;
    VkDeviceSize range = (*size + texel - 1) / texel * texel;
    const struct vk_block *block = &ctx->pools[b->buf->pool].blocks[b->buf->block];
    if (b->access != VK_ACCESS_READ)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: binding %u is a uniform texel buffer, which is read-only", pipe->name, i);
    if (range > vk_texel_range(ctx, format))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: texel binding %u spans %llu bytes, more than the texel range %llu; "
                       "split it",
                       pipe->name, i, (unsigned long long)range,
                       (unsigned long long)vk_texel_range(ctx, format));
    if (at % ctx->texel_alignment || at % texel)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: texel binding %u offset %llu is not a multiple of %llu and of the "
                       "texel size %llu",
                       pipe->name, i, (unsigned long long)at,
                       (unsigned long long)ctx->texel_alignment, (unsigned long long)texel);
    if (at + range > block->size)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: texel binding %u rounded to whole texels runs past its block",
                       pipe->name, i);
    *size = range;
    return VP_OK;
}

vp_status vk_recorder_dispatch(struct vk_recorder *rec, struct vk_pipeline *pipe,
                               const struct vk_bind *binds, uint32_t bind_count, const void *push,
                               uint32_t gx, uint32_t gy, uint32_t gz) {
    vp_status s = check_recording(rec, "dispatch");
    if (s != VP_OK) return s;
    vp_context *ctx = rec->ctx;
    if (bind_count != pipe->bindings)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s takes %u bindings, got %u", pipe->name,
                       pipe->bindings, bind_count);
    const uint32_t *maxg = ctx->info.max_workgroup_count;
    if (gx == 0 || gy == 0 || gz == 0 || gx > maxg[0] || gy > maxg[1] || gz > maxg[2])
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: %u x %u x %u workgroups is outside the device's 1..%u x %u x %u",
                       pipe->name, gx, gy, gz, maxg[0], maxg[1], maxg[2]);
    VkDescriptorBufferInfo info[VK_MAX_BINDINGS];
    struct access acc[VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < bind_count; i++) {
        const struct vk_bind *b = &binds[i];
        if (!b->buf || !b->buf->buffer || b->offset >= b->buf->size)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: binding %u has no buffer", pipe->name, i);
        VkDeviceSize size = b->size ? b->size : b->buf->size - b->offset;
        if (b->offset + size > b->buf->size)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: binding %u is outside its buffer",
                           pipe->name, i);
        if (pipe->texel[i]) {
            s = texel_binding(ctx, pipe, i, b, &size);
            if (s != VP_OK) return s;
            VkDeviceSize at = b->buf->offset + b->offset;
            info[i] = (VkDescriptorBufferInfo){b->buf->buffer, at, size};
            acc[i] = (struct access){b->buf->buffer, at, at + size, b->access};
            continue;
        }
        if (size > ctx->limits.storage_buffer_range)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                           "%s: binding %u spans %llu bytes, more than the binding range %llu; "
                           "split it with vk_buffer_ranges",
                           pipe->name, i, (unsigned long long)size,
                           (unsigned long long)ctx->limits.storage_buffer_range);
        VkDeviceSize at = b->buf->offset + b->offset;
        if (at % ctx->info.min_storage_offset_alignment)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: binding %u offset %llu is misaligned",
                           pipe->name, i, (unsigned long long)at);
        info[i] = (VkDescriptorBufferInfo){b->buf->buffer, at, size};
        acc[i] = (struct access){b->buf->buffer, at, at + size, b->access};
    }
    s = order_command(rec, acc, bind_count);
    if (s != VP_OK) return s;
    VkDescriptorSet set;
    s = get_set(rec, pipe, info, bind_count, &set);
    if (s != VP_OK) return s;
    struct vk_fns *fn = ctx->fn;
    if (rec->commands == 0) s = write_timestamp(rec, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT);
    if (s == VP_OK) s = note_command(rec, pipe->label, (uint64_t)gx * gy * gz);
    if (s != VP_OK) return s;
    fn->vkCmdBindPipeline(rec->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe->pipeline);
    fn->vkCmdBindDescriptorSets(rec->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe->layout, 0, 1, &set,
                                0, NULL);
    if (pipe->push_size)
        fn->vkCmdPushConstants(rec->cmd, pipe->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                               pipe->push_size, push);
    fn->vkCmdDispatch(rec->cmd, gx, gy, gz);
    rec->dispatches++;
    rec->commands++;
    ctx->stats.dispatches_recorded++;
    return write_timestamp(rec, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT);
}

static vp_status check_range(const struct vk_buffer *b, VkDeviceSize off, VkDeviceSize size,
                             const char *what) {
    if (!b || !b->buffer || size == 0 || off + size > b->size)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: range outside its buffer", what);
    return VP_OK;
}

vp_status vk_recorder_copy(struct vk_recorder *rec, const struct vk_buffer *dst,
                           VkDeviceSize dst_offset, const struct vk_buffer *src,
                           VkDeviceSize src_offset, VkDeviceSize size) {
    vp_status s = check_recording(rec, "copy");
    if (s == VP_OK) s = check_range(dst, dst_offset, size, "copy destination");
    if (s == VP_OK) s = check_range(src, src_offset, size, "copy source");
    if (s != VP_OK) return s;
    VkDeviceSize d = dst->offset + dst_offset, so = src->offset + src_offset;
    struct access acc[2] = {
        {src->buffer, so, so + size, VK_ACCESS_READ},
        {dst->buffer, d, d + size, VK_ACCESS_WRITE},
    };
    s = order_command(rec, acc, 2);
    if (s != VP_OK) return s;
    if (rec->commands == 0) s = write_timestamp(rec, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT);
    if (s == VP_OK) s = note_command(rec, "copy", 0);
    if (s != VP_OK) return s;
    VkBufferCopy region = {so, d, size};
    rec->ctx->fn->vkCmdCopyBuffer(rec->cmd, src->buffer, dst->buffer, 1, &region);
    rec->commands++;
    return write_timestamp(rec, VK_PIPELINE_STAGE_TRANSFER_BIT);
}

vp_status vk_recorder_fill(struct vk_recorder *rec, const struct vk_buffer *dst,
                           VkDeviceSize offset, VkDeviceSize size, uint32_t value) {
    vp_status s = check_recording(rec, "fill");
    if (s == VP_OK) s = check_range(dst, offset, size, "fill");
    if (s != VP_OK) return s;
    if (size % 4 || offset % 4)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "fill: offset and size must be multiples of 4");
    VkDeviceSize d = dst->offset + offset;
    struct access acc = {dst->buffer, d, d + size, VK_ACCESS_WRITE};
    s = order_command(rec, &acc, 1);
    if (s != VP_OK) return s;
    if (rec->commands == 0) s = write_timestamp(rec, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT);
    if (s == VP_OK) s = note_command(rec, "fill", 0);
    if (s != VP_OK) return s;
    rec->ctx->fn->vkCmdFillBuffer(rec->cmd, dst->buffer, d, size, value);
    rec->commands++;
    return write_timestamp(rec, VK_PIPELINE_STAGE_TRANSFER_BIT);
}

vp_status vk_recorder_end(struct vk_recorder *rec) {
    vp_status s = check_recording(rec, "end");
    if (s != VP_OK) return s;
    /* Results become visible to the host once the run's fence signals. */
    full_barrier(rec, work_stages, work_writes, VK_PIPELINE_STAGE_HOST_BIT,
                 VK_ACCESS_HOST_READ_BIT);
    rec->recording = false;
    VK_TRY(rec->ctx->fn->vkEndCommandBuffer(rec->cmd));
    rec->ready = true;
    return VP_OK;
}

static vp_status read_timings(struct vk_recorder *rec) {
    vp_context *ctx = rec->ctx;
    uint64_t *stamps = malloc((rec->queries ? rec->queries : 1) * sizeof *stamps);
    double *t = realloc(rec->timings, (rec->queries ? rec->queries : 1) * sizeof *t);
    if (!stamps || !t) {
        free(stamps);
        if (t) rec->timings = t;
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading timestamps");
    }
    rec->timings = t;
    for (uint32_t q = 0; q < rec->queries; q += QUERIES_PER_POOL) {
        uint32_t n = rec->queries - q < QUERIES_PER_POOL ? rec->queries - q : QUERIES_PER_POOL;
        VkResult r = ctx->fn->vkGetQueryPoolResults(
            ctx->device, rec->query_pools[q / QUERIES_PER_POOL], 0, n, n * sizeof(uint64_t),
            stamps + q, sizeof(uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
        if (r != VK_SUCCESS) {
            free(stamps);
            return VK_FAIL(r, "vkGetQueryPoolResults");
        }
    }
    uint32_t bits = ctx->feat.timestamp_valid_bits;
    uint64_t mask = bits >= 64 ? ~0ull : (1ull << bits) - 1;
    rec->timing_count = rec->queries ? rec->queries - 1 : 0;
    for (uint32_t i = 0; i < rec->timing_count; i++)
        t[i] = (double)((stamps[i + 1] - stamps[i]) & mask) * ctx->info.timestamp_period_ns;
    free(stamps);
    return VP_OK;
}

vp_status vk_recorder_run(struct vk_recorder *rec) {
    if (!rec->ready)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "vk_recorder_run: nothing recorded (call end)");
    vp_context *ctx = rec->ctx;
    struct vk_fns *fn = ctx->fn;
    VK_TRY(fn->vkResetFences(ctx->device, 1, &ctx->fence));
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &rec->cmd,
    };
    const VkResult fault = vk_test_fault("submit", VK_ERROR_DEVICE_LOST);
    if (fault != VK_SUCCESS) return VK_FAIL(fault, "vkQueueSubmit (VKPEFT_TEST_FAULT)");
    VK_TRY(fn->vkQueueSubmit(ctx->queue, 1, &si, ctx->fence));
    ctx->stats.submissions++;
    VK_TRY(fn->vkWaitForFences(ctx->device, 1, &ctx->fence, VK_TRUE, UINT64_MAX));
    if (rec->flags & VK_RECORDER_TIMESTAMPS) return read_timings(rec);
    return VP_OK;
}

uint32_t vk_recorder_barrier_count(const struct vk_recorder *rec) { return rec->barriers; }
uint32_t vk_recorder_dispatch_count(const struct vk_recorder *rec) { return rec->dispatches; }

const char *vk_recorder_label(struct vk_recorder *rec, const char *site) {
    const char *old = rec->site;
    rec->site = site;
    return old;
}

uint32_t vk_recorder_command_infos(const struct vk_recorder *rec, const struct vk_command_info **infos) {
    *infos = rec->infos;
    return rec->flags & VK_RECORDER_TIMESTAMPS ? rec->commands : 0;
}

uint32_t vk_recorder_timings(const struct vk_recorder *rec, double *ns, uint32_t max) {
    uint32_t n = rec->timing_count < max ? rec->timing_count : max;
    memcpy(ns, rec->timings, n * sizeof *ns);
    return rec->timing_count;
}

vp_status vk_run_once(vp_context *ctx, vp_status (*fn)(struct vk_recorder *, void *), void *arg) {
    struct vk_recorder *rec = ctx->transfer;
    vp_status s = vk_recorder_begin(rec);
    if (s == VP_OK) s = fn(rec, arg);
    if (s == VP_OK) s = vk_recorder_end(rec);
    else if (rec->recording) {
        rec->recording = false;
        ctx->fn->vkEndCommandBuffer(rec->cmd);
    }
    if (s == VP_OK) s = vk_recorder_run(rec);
    return s;
}
