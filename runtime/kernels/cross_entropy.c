/* Cross-entropy fused with log-softmax, with ignore_index and label
 * smoothing (shaders/cross_entropy_*.comp).
 *
 * Forward: pass 1 reduces each (row, column chunk) of the logits to
 * (max, Σexp, Σz, z_target); pass 2 (one workgroup) merges the chunks of each
 * row into its log-sum-exp and loss, then the mean over the rows that count,
 * and the count itself, all on the device. Backward is one elementwise pass
 * that reads lse and the count. The logits may be far longer than one
 * binding range: dispatches bind aligned spans of them, and a row longer than
 * a span is split into column chunks. */
#include "kernels.h"

struct ce_stats_push {
    uint32_t V, cols, chunks, first, count, base;
    int32_t ignore_index;
    uint32_t pad;
};
_Static_assert(sizeof(struct ce_stats_push) == 32, "matches Push in cross_entropy_stats.comp");

struct ce_finalize_push {
    uint32_t N, V, chunks;
    int32_t ignore_index;
    float eps;
    uint32_t pad[3];
};
_Static_assert(sizeof(struct ce_finalize_push) == 32,
               "matches Push in cross_entropy_finalize.comp");

struct ce_backward_push {
    uint32_t r0, c0, c1, V, base_z, base_dz, items;
    int32_t ignore_index;
    float eps, dloss;
    uint32_t pad0, pad1;
};
_Static_assert(sizeof(struct ce_backward_push) == 48,
               "matches Push in cross_entropy_backward.comp");

/* Columns each backward invocation handles. */
enum { BACKWARD_ITEMS = 4 };

/* Floats one dispatch may bind: a span plus up to one alignment of slack
 * below it must fit the binding range. */
static uint64_t span_floats(const vp_context *ctx) {
    return (ctx->limits.storage_buffer_range - ctx->binding_alignment) / 4;
}

/* Columns per chunk: whole rows when a row fits one span. */
static uint32_t chunk_cols(const vp_context *ctx, uint32_t V) {
    uint64_t f = span_floats(ctx);
    return V <= f ? V : (uint32_t)f;
}

static uint32_t chunks_per_row(const vp_context *ctx, uint32_t V) {
    uint32_t c = chunk_cols(ctx, V);
    return (V + c - 1) / c;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static uint64_t stats_bytes(const vp_context *ctx, const struct kernel_cross_entropy_config *c) {
    return (uint64_t)c->N * chunks_per_row(ctx, c->V) * 16;
}

uint64_t kernel_cross_entropy_scratch_bytes(const vp_context *ctx,
                                            const struct kernel_cross_entropy_config *cfg) {
    /* Chunk statistics, then room for the row losses when the caller does
     * not want them. */
    return align_up(stats_bytes(ctx, cfg), ctx->binding_alignment) + (uint64_t)cfg->N * 4 + 4;
}

/* Power-of-two workgroup for the reductions. */
static uint32_t reduce_workgroup(const vp_context *ctx, uint32_t want) {
    uint32_t lim = vp_context_limits(ctx)->max_workgroup_invocations;
    uint32_t dev = vp_context_device(ctx)->max_workgroup_size[0];
    uint32_t wg = 1;
    while (wg * 2 <= want && wg * 2 <= lim && wg * 2 <= dev) wg *= 2;
    return wg;
}

static vp_status get_pipeline(vp_context *ctx, const char *shader, uint32_t bindings,
                              uint32_t push, uint32_t wg, struct vk_pipeline **out) {
    struct vk_kernel_desc desc = {
        .shader = shader,
        .bindings = bindings,
        .push_size = push,
        .spec_count = 1,
        .spec = {wg},
    };
    return vk_pipeline_get(ctx, &desc, out);
}

static vp_status check_args(const vp_context *ctx, const struct kernel_cross_entropy_config *c,
                            const struct vk_buffer *logits, const struct vk_buffer *targets) {
    const uint64_t elems = (uint64_t)c->N * c->V;
    if (c->V == 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "cross_entropy: V = 0 columns");
    if (elems >= (1ull << 32))
        return vp_fail(VP_ERROR_UNSUPPORTED, "cross_entropy: N*V = %llu logits is 2^32 or more",
                       (unsigned long long)elems);
    if (!(c->label_smoothing >= 0.0f && c->label_smoothing <= 1.0f))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "cross_entropy: label smoothing %g is outside [0, 1]",
                       (double)c->label_smoothing);
    if (!logits || logits->size < elems * 4 || !targets || targets->size < (uint64_t)c->N * 4)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "cross_entropy: logits need %llu bytes and targets %llu",
                       (unsigned long long)elems * 4, (unsigned long long)c->N * 4);
    uint64_t per_row = stats_bytes(ctx, c);
    if (per_row > ctx->limits.storage_buffer_range)
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "cross_entropy: %u rows of chunk statistics (%llu bytes) exceed the "
                       "binding range; split the batch",
                       c->N, (unsigned long long)per_row);
    return VP_OK;
}

/* Pass 1: as many consecutive (row, chunk) pairs per dispatch as one
 * logits span holds. */
static vp_status record_stats(vp_context *ctx, struct vk_recorder *rec,
                              const struct vk_buffer *scratch, const struct vk_buffer *logits,
                              const struct vk_buffer *targets,
                              const struct kernel_cross_entropy_config *c) {
    const uint32_t cols = chunk_cols(ctx, c->V), chunks = chunks_per_row(ctx, c->V);
    const uint64_t total = (uint64_t)c->N * chunks, fmax = span_floats(ctx);
    uint32_t wg = reduce_workgroup(ctx, cols >= 4096 ? 256 : 64);
    struct vk_pipeline *pipe;
    vp_status s = get_pipeline(ctx, "cross_entropy_stats.comp", 3, sizeof(struct ce_stats_push),
                               wg, &pipe);
    /* Flat element range of pair id: [row·V + chunk·cols, ... + chunk length). */
#define PAIR_BEGIN(id) ((id) / chunks * (uint64_t)c->V + (id) % chunks * (uint64_t)cols)
#define PAIR_END(id) ((id) / chunks * (uint64_t)c->V + \
                      ((id) % chunks + 1 == chunks ? c->V : ((id) % chunks + 1) * (uint64_t)cols))
    for (uint64_t id = 0; id < total && s == VP_OK;) {
        uint64_t last = id, begin = PAIR_BEGIN(id);
        while (last + 1 < total && PAIR_END(last + 1) - begin <= fmax) last++;
        struct kernel_span span;
        kernel_span_init(ctx, logits, begin * 4, PAIR_END(last) * 4, &span);
        struct ce_stats_push push = {
            .V = c->V, .cols = cols, .chunks = chunks, .first = (uint32_t)id,
            .count = (uint32_t)(last - id + 1), .base = span.base,
            .ignore_index = c->ignore_index,
        };
        struct vk_bind b[3] = {
            {&span.view, 0, span.view.size, VK_ACCESS_READ},
            {targets, 0, (VkDeviceSize)c->N * 4, VK_ACCESS_READ},
            {scratch, 0, stats_bytes(ctx, c), VK_ACCESS_WRITE},
        };
        uint32_t gx, gy;
        kernel_grid_1d(ctx, push.count, &gx, &gy);
        s = vk_recorder_dispatch(rec, pipe, b, 3, &push, gx, gy, 1);
        id = last + 1;
    }
#undef PAIR_BEGIN
#undef PAIR_END
    return s;
}

vp_status kernel_cross_entropy_forward(vp_context *ctx, struct vk_recorder *rec,
                                       const struct vk_buffer *loss,
                                       const struct vk_buffer *lse,
                                       const struct vk_buffer *row_losses,
                                       const struct vk_buffer *scratch,
                                       const struct vk_buffer *logits,
                                       const struct vk_buffer *targets,
                                       const struct kernel_cross_entropy_config *cfg) {
    vp_status s = check_args(ctx, cfg, logits, targets);
    if (s != VP_OK) return s;
    const uint64_t rows = (uint64_t)cfg->N * 4;
    if (!loss || loss->size < 8 || (cfg->N && (!lse || lse->size < rows)) ||
        (row_losses && row_losses->size < rows) || !scratch ||
        scratch->size < kernel_cross_entropy_scratch_bytes(ctx, cfg))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "cross_entropy_forward: loss needs 8 bytes, lse and row_losses %llu, the "
                       "scratch %llu",
                       (unsigned long long)rows,
                       (unsigned long long)kernel_cross_entropy_scratch_bytes(ctx, cfg));
    if (cfg->N == 0) return vk_recorder_fill(rec, loss, 0, 8, 0); /* mean 0, count 0 */
    s = record_stats(ctx, rec, scratch, logits, targets, cfg);
    if (s != VP_OK) return s;
    uint32_t wg = reduce_workgroup(ctx, 256);
    struct vk_pipeline *pipe;
    s = get_pipeline(ctx, "cross_entropy_finalize.comp", 5, sizeof(struct ce_finalize_push), wg,
                     &pipe);
    if (s != VP_OK) return s;
    struct ce_finalize_push push = {
        .N = cfg->N, .V = cfg->V, .chunks = chunks_per_row(ctx, cfg->V),
        .ignore_index = cfg->ignore_index, .eps = cfg->label_smoothing,
    };
    const uint64_t row_loss_at = align_up(stats_bytes(ctx, cfg), ctx->binding_alignment);
    struct vk_bind b[5] = {
        {scratch, 0, stats_bytes(ctx, cfg), VK_ACCESS_READ},
        {targets, 0, rows, VK_ACCESS_READ},
        {lse, 0, rows, VK_ACCESS_WRITE},
        row_losses ? (struct vk_bind){row_losses, 0, rows, VK_ACCESS_WRITE}
                   : (struct vk_bind){scratch, row_loss_at, rows, VK_ACCESS_WRITE},
        {loss, 0, 8, VK_ACCESS_WRITE},
    };
    return vk_recorder_dispatch(rec, pipe, b, 5, &push, 1, 1, 1);
}

vp_status kernel_cross_entropy_backward(vp_context *ctx, struct vk_recorder *rec,
                                        const struct vk_buffer *dlogits,
                                        const struct vk_buffer *logits,
                                        const struct vk_buffer *targets,
                                        const struct vk_buffer *lse,
                                        const struct vk_buffer *loss, float dloss,
                                        const struct kernel_cross_entropy_config *cfg) {
    vp_status s = check_args(ctx, cfg, logits, targets);
    if (s != VP_OK) return s;
    const uint64_t elems = (uint64_t)cfg->N * cfg->V;
    if (elems == 0) return VP_OK;
    if (!dlogits || dlogits->size < elems * 4 || !lse || lse->size < (uint64_t)cfg->N * 4 ||
        !loss || loss->size < 8)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "cross_entropy_backward: dlogits needs %llu bytes, lse %llu, loss 8",
                       (unsigned long long)elems * 4, (unsigned long long)cfg->N * 4);
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_pipeline *pipe;
    s = get_pipeline(ctx, "cross_entropy_backward.comp", 5, sizeof(struct ce_backward_push), wg,
                     &pipe);
    /* Blocks of whole rows when a row fits a span, else one row in column
     * chunks; at most max_workgroup_count[1] rows per dispatch. */
    const uint64_t fmax = span_floats(ctx);
    const uint32_t cols = chunk_cols(ctx, cfg->V);
    uint64_t rows_per = cols == cfg->V ? fmax / cfg->V : 1;
    const uint32_t maxy = vp_context_device(ctx)->max_workgroup_count[1];
    if (rows_per > maxy) rows_per = maxy;
    const bool in_place = dlogits->buffer == logits->buffer && dlogits->offset == logits->offset;
    for (uint32_t r0 = 0; r0 < cfg->N && s == VP_OK; r0 += (uint32_t)rows_per) {
        const uint32_t rows = (uint32_t)(cfg->N - r0 < rows_per ? cfg->N - r0 : rows_per);
        for (uint32_t c0 = 0; c0 < cfg->V && s == VP_OK; c0 += cols) {
            const uint32_t c1 = cfg->V - c0 < cols ? cfg->V : c0 + cols;
            const uint64_t begin = (uint64_t)r0 * cfg->V + c0;
            const uint64_t end = (uint64_t)(r0 + rows - 1) * cfg->V + c1;
            struct kernel_span zs, dzs;
            kernel_span_init(ctx, logits, begin * 4, end * 4, &zs);
            kernel_span_init(ctx, dlogits, begin * 4, end * 4, &dzs);
            struct ce_backward_push push = {
                .r0 = r0, .c0 = c0, .c1 = c1, .V = cfg->V, .base_z = zs.base,
                .base_dz = dzs.base, .items = BACKWARD_ITEMS, .ignore_index = cfg->ignore_index,
                .eps = cfg->label_smoothing, .dloss = dloss,
            };
            /* In place, one READ_WRITE binding declares both accesses. */
            struct vk_bind b[5] = {
                {&zs.view, 0, zs.view.size, in_place ? VK_ACCESS_READ_WRITE : VK_ACCESS_READ},
                {&dzs.view, 0, dzs.view.size, in_place ? VK_ACCESS_READ_WRITE : VK_ACCESS_WRITE},
                {targets, 0, (VkDeviceSize)cfg->N * 4, VK_ACCESS_READ},
                {lse, 0, (VkDeviceSize)cfg->N * 4, VK_ACCESS_READ},
                {loss, 0, 8, VK_ACCESS_READ},
            };
            /* More columns per invocation if a chunk would need more
             * workgroups across than the device allows. */
            const uint64_t maxx = vp_context_device(ctx)->max_workgroup_count[0];
            const uint64_t per_wg = (uint64_t)wg * maxx;
            if ((c1 - c0 + per_wg - 1) / per_wg > push.items)
                push.items = (uint32_t)((c1 - c0 + per_wg - 1) / per_wg);
            const uint64_t per_group = (uint64_t)wg * push.items;
            s = vk_recorder_dispatch(rec, pipe, b, 5, &push,
                                     (uint32_t)((c1 - c0 + per_group - 1) / per_group), rows, 1);
        }
    }
    return s;
}
