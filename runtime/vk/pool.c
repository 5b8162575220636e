/* Memory pools: a few large VkDeviceMemory blocks per pool, each bound to one
 * VkBuffer, sub-allocated with a first-fit free list. Every byte is counted
 * per pool, and a block is only allocated after the budget check passes. */
#include "vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const pool_names[VP_POOL_COUNT] = {"frozen", "trainable", "activations",
                                                      "staging"};

const char *vp_pool_name(vp_pool pool) {
    return (unsigned)pool < VP_POOL_COUNT ? pool_names[pool] : "unknown";
}

/* Default block sizes: big enough that a model needs few blocks, small
 * enough that a tiny model does not reserve much. */
static const VkDeviceSize default_block_size[VP_POOL_COUNT] = {
    256u << 20, 64u << 20, 256u << 20, 64u << 20,
};

static const VkBufferUsageFlags buffer_usage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
    VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
    VK_BUFFER_USAGE_STORAGE_TEXEL_BUFFER_BIT;

static VkDeviceSize align_up(VkDeviceSize v, VkDeviceSize a) { return (v + a - 1) / a * a; }

VkDeviceSize vk_pool_alignment(const vp_context *ctx) { return ctx->binding_alignment; }

static VkDeviceSize max_block(const vp_context *ctx) {
    VkDeviceSize m = ctx->info.max_memory_allocation;
    if (ctx->info.max_buffer_size && ctx->info.max_buffer_size < m) m = ctx->info.max_buffer_size;
    return m;
}

/* Picks the memory type: the first type in `allowed` with all `need` flags,
 * preferring one that has `prefer` flags and none of `avoid`. */
static int pick_type(const VkPhysicalDeviceMemoryProperties *mp, uint32_t allowed,
                     VkMemoryPropertyFlags need, VkMemoryPropertyFlags prefer,
                     VkMemoryPropertyFlags avoid) {
    int best = -1, best_score = -1;
    for (uint32_t t = 0; t < mp->memoryTypeCount; t++) {
        VkMemoryPropertyFlags f = mp->memoryTypes[t].propertyFlags;
        if (!(allowed & (1u << t)) || (f & need) != need) continue;
        int score = ((f & prefer) == prefer ? 2 : 0) + ((f & avoid) == 0 ? 1 : 0);
        if (score > best_score) {
            best = (int)t;
            best_score = score;
        }
    }
    return best;
}

vp_status vk_pools_init(vp_context *ctx) {
    struct vk_fns *fn = ctx->fn;
    /* The buffer's allowed memory types, from a throwaway buffer. */
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = 65536,
        .usage = buffer_usage,
    };
    VkBuffer probe;
    VK_TRY(fn->vkCreateBuffer(ctx->device, &bi, NULL, &probe));
    VkMemoryRequirements req;
    fn->vkGetBufferMemoryRequirements(ctx->device, probe, &req);
    fn->vkDestroyBuffer(ctx->device, probe, NULL);
    /* Pieces start on the buffer's alignment too, and binding ranges stay
     * multiples of whatever the alignment became. */
    if (req.alignment > ctx->binding_alignment) ctx->binding_alignment = req.alignment;
    /* ... and on the texel-view offset alignment, so any piece (and any
     * binding range that starts on the alignment) can be a texel binding. */
    VkPhysicalDeviceProperties props;
    fn->vkGetPhysicalDeviceProperties(ctx->phys, &props);
    if (props.limits.minTexelBufferOffsetAlignment > ctx->binding_alignment)
        ctx->binding_alignment = props.limits.minTexelBufferOffsetAlignment;
    ctx->texel_max_elements = props.limits.maxTexelBufferElements;
    ctx->texel_alignment = props.limits.minTexelBufferOffsetAlignment;
    ctx->limits.storage_buffer_range -= ctx->limits.storage_buffer_range % ctx->binding_alignment;

    VkPhysicalDeviceMemoryProperties mp;
    fn->vkGetPhysicalDeviceMemoryProperties(ctx->phys, &mp);
    const VkMemoryPropertyFlags DL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                                HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT,
                                HC = VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                CACHED = VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
    bool unified = ctx->limits.unified_memory;
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        struct vk_pool *pool = &ctx->pools[p];
        memset(pool, 0, sizeof *pool);
        pool->id = (vp_pool)p;
        pool->block_size = default_block_size[p];
        if (pool->block_size > max_block(ctx)) pool->block_size = max_block(ctx);
        int t;
        if (p == VP_POOL_STAGING) {
            t = pick_type(&mp, req.memoryTypeBits, HV | HC, CACHED, 0);
            pool->host_access = true;
        } else if (unified) {
            t = pick_type(&mp, req.memoryTypeBits, DL | HV | HC, CACHED, 0);
            pool->host_access = true;
        } else {
            /* Device-only memory; on a unified device forced to the discrete
             * path the type is host-visible, but the pool is never mapped. */
            t = pick_type(&mp, req.memoryTypeBits, DL, 0, HV);
            if (t < 0) t = pick_type(&mp, req.memoryTypeBits, 0, 0, HV);
        }
        if (t < 0)
            return vp_fail(VP_ERROR_UNSUPPORTED, "device '%s' has no memory type for the %s pool",
                           ctx->info.name, pool_names[p]);
        pool->memory_type = (uint32_t)t;
        pool->heap = mp.memoryTypes[t].heapIndex;
    }
    if (ctx->budget == 0) {
        vk_device_refresh_budget(&ctx->inst, ctx->phys, &ctx->info);
        ctx->budget = ctx->info.heaps[ctx->pools[VP_POOL_FROZEN].heap].budget;
    }
    return VP_OK;
}

/* Pools on the device-local heap share the budget. */
static bool counts_against_budget(const vp_context *ctx, const struct vk_pool *pool) {
    return pool->heap == ctx->pools[VP_POOL_FROZEN].heap;
}

static uint64_t budget_used(const vp_context *ctx) {
    uint64_t used = 0;
    for (int p = 0; p < VP_POOL_COUNT; p++)
        if (counts_against_budget(ctx, &ctx->pools[p])) used += ctx->pools[p].stats.reserved;
    return used;
}

static void describe_pools(const vp_context *ctx, const uint64_t *extra, char *buf, size_t size) {
    size_t len = 0;
    for (int p = 0; p < VP_POOL_COUNT && len < size; p++) {
        char a[32], b[32];
        len += (size_t)snprintf(buf + len, size - len, "%s%s %s reserved", p ? ", " : "",
                                pool_names[p],
                                vp_format_bytes(ctx->pools[p].stats.reserved, a, sizeof a));
        if (extra && extra[p] && len < size)
            len += (size_t)snprintf(buf + len, size - len, " + %s planned",
                                    vp_format_bytes(extra[p], b, sizeof b));
    }
}

static vp_status over_budget(const vp_context *ctx, const char *what, uint64_t need,
                             const uint64_t *plan) {
    char n[32], left[32], total[32], pools[512];
    uint64_t used = budget_used(ctx);
    describe_pools(ctx, plan, pools, sizeof pools);
    return vp_fail(VP_ERROR_OVER_BUDGET,
                   "%s needs %s more device memory, but only %s of the %s budget is left (%s); "
                   "lower --batch or --max-len, or use --weights f16, "
                   "or raise VKPEFT_BUDGET",
                   what, vp_format_bytes(need, n, sizeof n),
                   vp_format_bytes(ctx->budget > used ? ctx->budget - used : 0, left, sizeof left),
                   vp_format_bytes(ctx->budget, total, sizeof total), pools);
}

static vp_status block_create(vp_context *ctx, struct vk_pool *pool, VkDeviceSize size) {
    struct vk_fns *fn = ctx->fn;
    if (pool->block_count == pool->block_cap) {
        uint32_t cap = pool->block_cap ? pool->block_cap * 2 : 4;
        struct vk_block *nb = realloc(pool->blocks, cap * sizeof *nb);
        if (!nb) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory growing a pool");
        pool->blocks = nb;
        pool->block_cap = cap;
    }
    struct vk_block blk = {.size = size};
    blk.free = malloc(4 * sizeof *blk.free);
    if (!blk.free) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory growing a pool");
    blk.free_cap = 4;
    blk.free_count = 1;
    blk.free[0] = (struct vk_free_range){0, size};
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = buffer_usage,
    };
    VkResult r = fn->vkCreateBuffer(ctx->device, &bi, NULL, &blk.buffer);
    if (r != VK_SUCCESS) goto fail;
    VkMemoryRequirements req;
    fn->vkGetBufferMemoryRequirements(ctx->device, blk.buffer, &req);
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = pool->memory_type,
    };
    r = vk_test_fault("alloc", VK_ERROR_OUT_OF_DEVICE_MEMORY);
    if (r == VK_SUCCESS) r = fn->vkAllocateMemory(ctx->device, &ai, NULL, &blk.memory);
    if (r != VK_SUCCESS) goto fail;
    r = fn->vkBindBufferMemory(ctx->device, blk.buffer, blk.memory, 0);
    if (r != VK_SUCCESS) goto fail;
    if (pool->host_access) {
        r = fn->vkMapMemory(ctx->device, blk.memory, 0, VK_WHOLE_SIZE, 0, &blk.mapped);
        if (r != VK_SUCCESS) goto fail;
    }
    pool->blocks[pool->block_count++] = blk;
    pool->stats.reserved += size;
    pool->stats.blocks++;
    return VP_OK;
fail:
    if (blk.memory) fn->vkFreeMemory(ctx->device, blk.memory, NULL);
    if (blk.buffer) fn->vkDestroyBuffer(ctx->device, blk.buffer, NULL);
    free(blk.free);
    char sz[32];
    vk_fail_result(r, "allocating a pool block", __FILE__, __LINE__);
    return vp_fail_context(r == VK_ERROR_DEVICE_LOST ? VP_ERROR_DEVICE_LOST : VP_ERROR_VULKAN,
                           "%s pool: a %s block", pool_names[pool->id],
                           vp_format_bytes(size, sz, sizeof sz));
}

static void block_destroy(vp_context *ctx, struct vk_pool *pool, uint32_t i) {
    struct vk_block *b = &pool->blocks[i];
    if (b->mapped) ctx->fn->vkUnmapMemory(ctx->device, b->memory);
    ctx->fn->vkDestroyBuffer(ctx->device, b->buffer, NULL);
    ctx->fn->vkFreeMemory(ctx->device, b->memory, NULL);
    free(b->free);
    pool->stats.reserved -= b->size;
    pool->stats.blocks--;
    memset(b, 0, sizeof *b);
}

/* Takes `size` (aligned) from the block's first fitting free range. */
static bool block_take(struct vk_block *b, VkDeviceSize size, VkDeviceSize *offset) {
    for (uint32_t i = 0; i < b->free_count; i++) {
        struct vk_free_range *r = &b->free[i];
        if (r->size < size) continue;
        *offset = r->offset;
        r->offset += size;
        r->size -= size;
        if (r->size == 0) {
            memmove(r, r + 1, (b->free_count - i - 1) * sizeof *r);
            b->free_count--;
        }
        return true;
    }
    return false;
}

/* Returns [offset, offset+size) to the block, merging with neighbours. */
static vp_status block_give(struct vk_block *b, VkDeviceSize offset, VkDeviceSize size) {
    uint32_t i = 0;
    while (i < b->free_count && b->free[i].offset < offset) i++;
    bool merge_prev = i > 0 && b->free[i - 1].offset + b->free[i - 1].size == offset;
    bool merge_next = i < b->free_count && offset + size == b->free[i].offset;
    if (merge_prev && merge_next) {
        b->free[i - 1].size += size + b->free[i].size;
        memmove(&b->free[i], &b->free[i + 1], (b->free_count - i - 1) * sizeof *b->free);
        b->free_count--;
    } else if (merge_prev) {
        b->free[i - 1].size += size;
    } else if (merge_next) {
        b->free[i].offset = offset;
        b->free[i].size += size;
    } else {
        if (b->free_count == b->free_cap) {
            uint32_t cap = b->free_cap * 2;
            struct vk_free_range *nf = realloc(b->free, cap * sizeof *nf);
            if (!nf) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory freeing a buffer");
            b->free = nf;
            b->free_cap = cap;
        }
        memmove(&b->free[i + 1], &b->free[i], (b->free_count - i) * sizeof *b->free);
        b->free[i] = (struct vk_free_range){offset, size};
        b->free_count++;
    }
    return VP_OK;
}

static vp_status grow_pool(vp_context *ctx, struct vk_pool *pool, VkDeviceSize need) {
    char a[32], b[32];
    if (need > max_block(ctx))
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "%s pool: one buffer of %s exceeds the device's largest allocation (%s)",
                       pool_names[pool->id], vp_format_bytes(need, a, sizeof a),
                       vp_format_bytes(max_block(ctx), b, sizeof b));
    VkDeviceSize size = need > pool->block_size ? need : pool->block_size;
    if (counts_against_budget(ctx, pool)) {
        uint64_t used = budget_used(ctx);
        uint64_t left = ctx->budget > used ? ctx->budget - used : 0;
        /* A smaller block that still fits beats failing. */
        if (size > left) size = need;
        if (size > left) {
            char what[64];
            snprintf(what, sizeof what, "the %s pool", pool_names[pool->id]);
            return over_budget(ctx, what, need, NULL);
        }
    }
    return block_create(ctx, pool, size);
}

vp_status vk_buffer_alloc(vp_context *ctx, vp_pool id, VkDeviceSize size, struct vk_buffer *out) {
    memset(out, 0, sizeof *out);
    if ((unsigned)id >= VP_POOL_COUNT || size == 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "vk_buffer_alloc: bad pool %d or size 0", (int)id);
    struct vk_pool *pool = &ctx->pools[id];
    VkDeviceSize padded = align_up(size, vk_pool_alignment(ctx));
    VkDeviceSize offset = 0;
    uint32_t bi = 0;
    for (; bi < pool->block_count; bi++)
        if (block_take(&pool->blocks[bi], padded, &offset)) break;
    if (bi == pool->block_count) {
        vp_status s = grow_pool(ctx, pool, padded);
        if (s != VP_OK) return s;
        block_take(&pool->blocks[bi], padded, &offset);
    }
    struct vk_block *b = &pool->blocks[bi];
    out->buffer = b->buffer;
    out->offset = offset;
    out->size = size;
    out->host = b->mapped ? (char *)b->mapped + offset : NULL;
    out->pool = id;
    out->block = bi;
    pool->stats.in_use += padded;
    pool->stats.requested += size;
    pool->stats.allocations++;
    if (pool->stats.in_use > pool->stats.peak_in_use) pool->stats.peak_in_use = pool->stats.in_use;
    return VP_OK;
}

void vk_buffer_free(vp_context *ctx, struct vk_buffer *buf) {
    if (!buf || !buf->buffer) return;
    struct vk_pool *pool = &ctx->pools[buf->pool];
    VkDeviceSize padded = align_up(buf->size, vk_pool_alignment(ctx));
    /* A failed merge leaks the range (host OOM); accounting stays exact. */
    block_give(&pool->blocks[buf->block], buf->offset, padded);
    pool->stats.in_use -= padded;
    pool->stats.requested -= buf->size;
    pool->stats.allocations--;
    memset(buf, 0, sizeof *buf);
}

vp_status vk_pools_reserve(vp_context *ctx, const uint64_t bytes[VP_POOL_COUNT]) {
    uint64_t extra[VP_POOL_COUNT] = {0}, need = 0;
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        extra[p] = bytes[p] ? align_up(bytes[p], vk_pool_alignment(ctx)) : 0;
        if (counts_against_budget(ctx, &ctx->pools[p])) need += extra[p];
    }
    if (budget_used(ctx) + need > ctx->budget) return over_budget(ctx, "the memory plan", need, extra);
    /* A plan larger than one allocation may be (4 GiB on many GPUs) is
     * reserved as that many equal blocks; each buffer still lives in one. */
    const VkDeviceSize most = max_block(ctx), align = vk_pool_alignment(ctx);
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        if (!extra[p]) continue;
        const uint64_t n = (extra[p] + most - 1) / most;
        VkDeviceSize size = align_up((extra[p] + n - 1) / n, align);
        if (size > most) size = most / align * align;
        for (VkDeviceSize left = extra[p]; left > 0;) {
            const VkDeviceSize b = left < size ? left : size;
            vp_status s = block_create(ctx, &ctx->pools[p], b);
            if (s != VP_OK) return s;
            left -= b;
        }
    }
    return VP_OK;
}

void vk_pools_trim(vp_context *ctx) {
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        struct vk_pool *pool = &ctx->pools[p];
        for (uint32_t i = 0; i < pool->block_count; i++) {
            struct vk_block *b = &pool->blocks[i];
            /* Blocks keep their index (pieces refer to it), so an empty block
             * in the middle is freed and left as a hole. */
            if (b->buffer && b->free_count == 1 && b->free[0].size == b->size)
                block_destroy(ctx, pool, i);
        }
        while (pool->block_count && !pool->blocks[pool->block_count - 1].buffer) pool->block_count--;
    }
}

void vk_pools_finish(vp_context *ctx) {
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        struct vk_pool *pool = &ctx->pools[p];
        for (uint32_t i = 0; i < pool->block_count; i++)
            if (pool->blocks[i].buffer) block_destroy(ctx, pool, i);
        free(pool->blocks);
        memset(pool, 0, sizeof *pool);
    }
}

void vp_pool_stats_get(const vp_context *ctx, vp_pool pool, vp_pool_stats *out) {
    memset(out, 0, sizeof *out);
    if ((unsigned)pool < VP_POOL_COUNT) *out = ctx->pools[pool].stats;
}

uint32_t vk_buffer_ranges(const vp_context *ctx, const struct vk_buffer *buf, VkDeviceSize granule,
                          struct vk_range *ranges, uint32_t max) {
    /* Step: a multiple of both the granule and the binding alignment, so every
     * range but the last starts aligned and holds whole elements. */
    VkDeviceSize a = ctx->binding_alignment, step = granule;
    while (step % a) step += granule;
    VkDeviceSize chunk = ctx->limits.storage_buffer_range / step * step;
    uint32_t n = 0;
    for (VkDeviceSize off = 0; off < buf->size; off += chunk, n++) {
        if (n < max) {
            ranges[n].offset = off;
            ranges[n].size = buf->size - off < chunk ? buf->size - off : chunk;
        }
    }
    return n;
}

uint32_t vk_texel_format_size(VkFormat format) {
    switch (format) {
    case VK_FORMAT_R32G32B32A32_SFLOAT:
    case VK_FORMAT_R32G32B32A32_UINT: return 16;
    case VK_FORMAT_R32_SFLOAT:
    case VK_FORMAT_R32_UINT: return 4;
    default: return 0;
    }
}

VkDeviceSize vk_texel_range(const vp_context *ctx, VkFormat format) {
    VkDeviceSize range = ctx->limits.storage_buffer_range;
    VkDeviceSize texels = (VkDeviceSize)ctx->texel_max_elements * vk_texel_format_size(format);
    if (texels < range) range = texels - texels % ctx->binding_alignment;
    return range;
}
