/* Fused scaled dot-product attention with prefix keys/values, padding and
 * causal masks and dropout (shaders/attention_*.comp).
 *
 * Forward: one dispatch per group of heads; each invocation owns a query row
 * and keeps a running max/sum (online softmax), so the probabilities are
 * never stored; the per-row log-sum-exp is. Backward recomputes P from it:
 * a query pass (dq, and delta = rowsum(dO ⊙ O)), then a key pass (dk, dv,
 * and per-batch prefix partials), then a fixed-order batch sum into the
 * prefix gradients. Nothing uses atomics, so results are bit-reproducible. */
#include "kernels.h"

#include <math.h>
#include <stdio.h>

enum { MAX_HEAD_DIM = 256, TILED_WORKGROUP = 64, TEXEL_WORKGROUP_MAX = 64 };

struct attention_push {
    uint32_t B, H, T, S;
    uint32_t L, bh0, causal, has_keep;
    float scale, keep_scale;
    uint32_t threshold, step;
    uint32_t seed_lo, seed_hi, stream, pad;
};
_Static_assert(sizeof(struct attention_push) == 64,
               "matches Push in shaders/attention_common.glsl");

struct prefix_reduce_push {
    uint32_t n, B, pad0, pad1;
};
_Static_assert(sizeof(struct prefix_reduce_push) == 16,
               "matches Push in shaders/attention_prefix_reduce.comp");

const char *kernel_attention_variant_name(enum kernel_attention_variant v) {
    switch (v) {
    case KERNEL_ATTENTION_AUTO: return "auto";
    case KERNEL_ATTENTION_TEXEL: return "texel";
    case KERNEL_ATTENTION_TILED: return "tiled";
    }
    return "unknown";
}

/* The texel variant shares rows between the lanes of a subgroup with
 * subgroupShuffle, so it needs shuffles and a workgroup of whole subgroups,
 * and it is compiled for the device's default subgroup size (a CPU device
 * has only one; GPUs with several take the tiled variant by default). */
static bool texel_supported(const vp_context *ctx) {
    const vp_device_info *d = vp_context_device(ctx);
    const uint32_t need = VP_SUBGROUP_BASIC | VP_SUBGROUP_SHUFFLE;
    return (d->subgroup_ops & need) == need && d->subgroup_size >= 1 && d->subgroup_size <= 64 &&
           (d->subgroup_size & (d->subgroup_size - 1)) == 0 &&
           vp_context_limits(ctx)->max_workgroup_invocations >= d->subgroup_size;
}

enum kernel_attention_variant kernel_attention_choose(const vp_context *ctx,
                                                      const struct kernel_attention_config *cfg) {
    if (cfg->variant != KERNEL_ATTENTION_AUTO) return cfg->variant;
    /* lavapipe scalarises storage-buffer and shared-memory loads in loops
     * and emulates barriers, but gathers texels as vectors. */
    return vp_context_device(ctx)->type == VP_DEVICE_CPU && texel_supported(ctx)
               ? KERNEL_ATTENTION_TEXEL
               : KERNEL_ATTENTION_TILED;
}

/* The three passes over (b, h) blocks. */
enum pass { PASS_FORWARD, PASS_DQ, PASS_DKV };

static const char *const pass_shader[2][3] = {
    {"attention_forward.comp", "attention_backward_dq.comp", "attention_backward_dkv.comp"},
    {"attention_texel_forward.comp", "attention_texel_backward_dq.comp",
     "attention_texel_backward_dkv.comp"},
};
static const uint32_t pass_bindings[] = {[PASS_FORWARD] = 8, [PASS_DQ] = 11, [PASS_DKV] = 12};

static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

static uint32_t next_pow2(uint32_t x) {
    uint32_t p = 1;
    while (p < x && p < (1u << 30)) p <<= 1;
    return p;
}

/* The texel format of a row of D floats: vec4 texels when D allows. */
static VkFormat row_format(const struct kernel_attention_config *cfg) {
    return cfg->D % 4 == 0 ? VK_FORMAT_R32G32B32A32_SFLOAT : VK_FORMAT_R32_SFLOAT;
}

/* Workgroup width and tile length of a pass. */
static void pass_shape(const vp_context *ctx, const struct kernel_attention_config *cfg,
                       enum kernel_attention_variant var, enum pass pass, uint32_t *wg,
                       uint32_t *tile) {
    const vp_limits *lim = vp_context_limits(ctx);
    uint32_t max_inv = min_u32(lim->max_workgroup_invocations,
                               vp_context_device(ctx)->max_workgroup_size[0]);
    if (var == KERNEL_ATTENTION_TILED) {
        *wg = min_u32(TILED_WORKGROUP, max_inv);
        /* Forward and dq stage K and V rows; dkv stages q and dO rows plus
         * two floats per row. The largest power of two that fits. */
        uint32_t row_bytes = 2 * cfg->D * 4 + (pass == PASS_DKV ? 8 : 0);
        uint32_t t = 64;
        while (t > 1 && t * row_bytes > lim->shared_memory) t >>= 1;
        *tile = t;
    } else {
        /* Invocations own rows (forward, dq) or columns (dkv); whole
         * subgroups, no wider than the work, so tiny shapes stay cheap. */
        uint32_t sg = vp_context_device(ctx)->subgroup_size;
        uint32_t items = pass == PASS_DKV ? cfg->L + cfg->S : cfg->T;
        uint32_t w = next_pow2(items);
        w = min_u32(min_u32(w, TEXEL_WORKGROUP_MAX), max_inv);
        *wg = w < sg ? sg : w / sg * sg;
        *tile = 1; /* unused */
    }
}

static vp_status pass_pipeline(vp_context *ctx, const struct kernel_attention_config *cfg,
                               enum kernel_attention_variant var, enum pass pass,
                               struct vk_pipeline **pipe, uint32_t *wg) {
    const bool texel = var == KERNEL_ATTENTION_TEXEL;
    if (texel && !texel_supported(ctx))
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "attention: the texel variant needs subgroup shuffles on '%s'",
                       vp_context_device(ctx)->name);
    uint32_t tile;
    pass_shape(ctx, cfg, var, pass, wg, &tile);
    char defines[64];
    snprintf(defines, sizeof defines, "HEAD_DIM=%u\nATTN_SG=%u\n", cfg->D,
             vp_context_device(ctx)->subgroup_size);
    struct vk_kernel_desc desc = {
        .shader = pass_shader[texel][pass],
        .defines = defines,
        .bindings = pass_bindings[pass],
        .push_size = sizeof(struct attention_push),
        .spec_count = 2,
        .spec = {*wg, tile},
    };
    if (texel) {
        /* q, k, v, the prefixes and the mask (and in the key pass dO, lse,
         * delta) are uniform texel buffers: see attention_common.glsl. */
        for (int i = 0; i < 5; i++) desc.texel[i] = row_format(cfg);
        desc.texel[5] = VK_FORMAT_R32_UINT;
        if (pass == PASS_DKV) {
            desc.texel[6] = row_format(cfg);
            desc.texel[7] = desc.texel[8] = VK_FORMAT_R32_SFLOAT;
        }
    }
    return vk_pipeline_get(ctx, &desc, pipe);
}

static double effective_scale(const struct kernel_attention_config *cfg) {
    return cfg->scale != 0.0f ? cfg->scale : 1.0 / sqrt((double)cfg->D);
}

static struct attention_push make_push(const struct kernel_attention_config *cfg, bool has_keep) {
    struct attention_push p = {
        .B = cfg->B, .H = cfg->H, .T = cfg->T, .S = cfg->S, .L = cfg->L,
        .causal = cfg->causal,
        .has_keep = has_keep,
        .scale = (float)effective_scale(cfg),
        .step = cfg->dropout_step,
        .seed_lo = (uint32_t)cfg->dropout_seed,
        .seed_hi = (uint32_t)(cfg->dropout_seed >> 32),
        .stream = cfg->dropout_stream,
    };
    if (cfg->dropout_p > 0.0) {
        /* ref_dropout_threshold: keep iff the top 24 Philox bits >= ceil(p·2^24). */
        p.threshold = (uint32_t)ceil(cfg->dropout_p * 0x1.0p24);
        p.keep_scale = cfg->dropout_p < 1.0 ? (float)(1.0 / (1.0 - cfg->dropout_p)) : 0.0f;
    }
    return p;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Heads per dispatch: as many as every per-head tensor's binding range
 * allows, a multiple of the smallest count whose byte size is a multiple of
 * the binding alignment for each tensor, so every group starts aligned. */
static vp_status plan_heads(const vp_context *ctx, const struct kernel_attention_config *cfg,
                            uint32_t *chunk) {
    const uint64_t bh = (uint64_t)cfg->B * cfg->H, align = ctx->binding_alignment;
    const uint64_t per_head[3] = {(uint64_t)cfg->T * cfg->D * 4, (uint64_t)cfg->S * cfg->D * 4,
                                  (uint64_t)cfg->T * 4};
    uint64_t granule = 1, biggest = 0;
    for (int i = 0; i < 3; i++) {
        if (!per_head[i]) continue;
        uint64_t need = align / gcd_u64(align, per_head[i]);
        granule = granule / gcd_u64(granule, need) * need;
        if (per_head[i] > biggest) biggest = per_head[i];
    }
    uint64_t range = ctx->limits.storage_buffer_range;
    if (kernel_attention_choose(ctx, cfg) == KERNEL_ATTENTION_TEXEL) {
        /* Texel bindings may be shorter (maxTexelBufferElements). */
        uint64_t rows = vk_texel_range(ctx, row_format(cfg));
        uint64_t words = vk_texel_range(ctx, VK_FORMAT_R32_SFLOAT);
        if (rows < range) range = rows;
        if (words < range) range = words;
    }
    uint64_t fit = biggest ? range / biggest : bh;
    uint64_t maxy = vp_context_device(ctx)->max_workgroup_count[1];
    if (bh <= fit && bh <= maxy) {
        *chunk = (uint32_t)bh;
        return VP_OK;
    }
    if (fit > maxy) fit = maxy;
    fit -= fit % granule;
    if (fit == 0)
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "attention: one group of %llu heads (T=%u, S=%u, D=%u) does not fit the "
                       "binding range of %llu bytes",
                       (unsigned long long)granule, cfg->T, cfg->S, cfg->D,
                       (unsigned long long)range);
    *chunk = (uint32_t)fit;
    return VP_OK;
}

static bool too_small(const struct vk_buffer *b, uint64_t bytes) { return !b || b->size < bytes; }

static vp_status check_config(const vp_context *ctx, const struct kernel_attention_config *cfg,
                              const struct vk_buffer *q, const struct vk_buffer *k,
                              const struct vk_buffer *v, const struct vk_buffer *pk,
                              const struct vk_buffer *pv, const struct vk_buffer *keep) {
    if (cfg->D == 0 || cfg->D > MAX_HEAD_DIM)
        return vp_fail(VP_ERROR_UNSUPPORTED, "attention: head dimension %u is outside 1..%d",
                       cfg->D, MAX_HEAD_DIM);
    if (!(cfg->dropout_p >= 0.0 && cfg->dropout_p <= 1.0))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "attention: dropout p = %g is outside [0, 1]",
                       cfg->dropout_p);
    const uint64_t bh = (uint64_t)cfg->B * cfg->H;
    /* Shaders index query rows (b·H + h)·T + t in 32 bits (the dropout
     * element index itself is 64-bit). */
    if (bh * cfg->T >= (1ull << 32) || bh >= (1u << 24))
        return vp_fail(VP_ERROR_UNSUPPORTED, "attention: B*H*T = %llu query rows is too many",
                       (unsigned long long)(bh * cfg->T));
    const uint64_t qb = bh * cfg->T * cfg->D * 4, kb = bh * cfg->S * cfg->D * 4;
    const uint64_t pb = (uint64_t)cfg->H * cfg->L * cfg->D * 4;
    if (too_small(q, qb) || (kb && (too_small(k, kb) || too_small(v, kb))))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "attention: q needs %llu bytes, k and v %llu bytes each",
                       (unsigned long long)qb, (unsigned long long)kb);
    if (cfg->L && (too_small(pk, pb) || too_small(pv, pb)))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "attention: L = %u prefix rows need prefix_k and prefix_v of %llu bytes",
                       cfg->L, (unsigned long long)pb);
    const uint64_t keep_bytes = ((uint64_t)cfg->B * cfg->S + 3) / 4 * 4;
    if (keep && keep->size < keep_bytes)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "attention: the keep mask needs %llu bytes (B*S rounded up to 4)",
                       (unsigned long long)keep_bytes);
    const uint64_t range = ctx->limits.storage_buffer_range;
    if (pb > range || keep_bytes > range || 2 * bh * pb / cfg->H > range)
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "attention: the prefix tensors, their per-batch partials or the keep "
                       "mask exceed the binding range of %llu bytes",
                       (unsigned long long)range);
    return VP_OK;
}

/* A binding of heads [h0, h0+n) of a (B·H, per_head bytes) tensor. */
static struct vk_bind heads_bind(const struct vk_buffer *b, uint64_t per_head, uint32_t h0,
                                 uint32_t n, enum vk_access access) {
    return (struct vk_bind){b, (VkDeviceSize)h0 * per_head, (VkDeviceSize)n * per_head, access};
}

static struct vk_bind whole_bind(const struct vk_buffer *b, uint64_t bytes,
                                 enum vk_access access) {
    return (struct vk_bind){b, 0, bytes, access};
}

/* Bindings 0..5, shared by the three passes: q, k, v, prefix_k, prefix_v,
 * keep. Missing tensors (S = 0, L = 0, no mask) are replaced by q, which the
 * shader then never reads through them. */
static void input_binds(struct vk_bind *b, const struct kernel_attention_config *cfg,
                        const struct vk_buffer *q, const struct vk_buffer *k,
                        const struct vk_buffer *v, const struct vk_buffer *pk,
                        const struct vk_buffer *pv, const struct vk_buffer *keep, uint32_t h0,
                        uint32_t n) {
    const uint64_t qh = (uint64_t)cfg->T * cfg->D * 4, kh = (uint64_t)cfg->S * cfg->D * 4;
    const uint64_t pb = (uint64_t)cfg->H * cfg->L * cfg->D * 4;
    b[0] = heads_bind(q, qh, h0, n, VK_ACCESS_READ);
    b[1] = kh ? heads_bind(k, kh, h0, n, VK_ACCESS_READ) : b[0];
    b[2] = kh ? heads_bind(v, kh, h0, n, VK_ACCESS_READ) : b[0];
    b[3] = pb ? whole_bind(pk, pb, VK_ACCESS_READ) : b[0];
    b[4] = pb ? whole_bind(pv, pb, VK_ACCESS_READ) : b[0];
    const uint64_t keep_bytes = ((uint64_t)cfg->B * cfg->S + 3) / 4 * 4;
    b[5] = keep && keep_bytes ? whole_bind(keep, keep_bytes, VK_ACCESS_READ) : b[0];
}

static uint32_t groups_of(uint32_t items, uint32_t wg) { return (items + wg - 1) / wg; }

vp_status kernel_attention_forward(vp_context *ctx, struct vk_recorder *rec,
                                   const struct vk_buffer *o, const struct vk_buffer *lse,
                                   const struct vk_buffer *q, const struct vk_buffer *k,
                                   const struct vk_buffer *v, const struct vk_buffer *prefix_k,
                                   const struct vk_buffer *prefix_v,
                                   const struct vk_buffer *keep,
                                   const struct kernel_attention_config *cfg) {
    if ((uint64_t)cfg->B * cfg->H * cfg->T == 0) return VP_OK;
    vp_status s = check_config(ctx, cfg, q, k, v, prefix_k, prefix_v, keep);
    if (s != VP_OK) return s;
    const uint64_t bh = (uint64_t)cfg->B * cfg->H;
    const uint64_t qh = (uint64_t)cfg->T * cfg->D * 4, lh = (uint64_t)cfg->T * 4;
    if (too_small(o, bh * qh) || too_small(lse, bh * lh))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "attention_forward: o or lse is too small");
    const enum kernel_attention_variant var = kernel_attention_choose(ctx, cfg);
    struct vk_pipeline *pipe;
    uint32_t wg, chunk;
    if ((s = pass_pipeline(ctx, cfg, var, PASS_FORWARD, &pipe, &wg)) != VP_OK) return s;
    if ((s = plan_heads(ctx, cfg, &chunk)) != VP_OK) return s;
    struct attention_push push = make_push(cfg, keep != NULL);
    for (uint32_t h0 = 0; h0 < bh && s == VP_OK; h0 += chunk) {
        uint32_t n = min_u32(chunk, (uint32_t)(bh - h0));
        struct vk_bind b[8];
        input_binds(b, cfg, q, k, v, prefix_k, prefix_v, keep, h0, n);
        b[6] = heads_bind(o, qh, h0, n, VK_ACCESS_WRITE);
        b[7] = heads_bind(lse, lh, h0, n, VK_ACCESS_WRITE);
        push.bh0 = h0;
        s = vk_recorder_dispatch(rec, pipe, b, 8, &push, groups_of(cfg->T, wg), n, 1);
    }
    return s;
}

/* Scratch layout: delta (B·H·T floats), then the prefix partials
 * (2, B,H,L,D) from the next aligned offset. */
static uint64_t partials_offset(const vp_context *ctx, const struct kernel_attention_config *cfg) {
    uint64_t delta = (uint64_t)cfg->B * cfg->H * cfg->T * 4, a = ctx->binding_alignment;
    return (delta + a - 1) / a * a;
}

static uint64_t partials_bytes(const struct kernel_attention_config *cfg) {
    return 2ull * cfg->B * cfg->H * cfg->L * cfg->D * 4;
}

uint64_t kernel_attention_scratch_bytes(const vp_context *ctx,
                                        const struct kernel_attention_config *cfg) {
    uint64_t bytes = partials_offset(ctx, cfg) + partials_bytes(cfg);
    return bytes ? bytes : 4;
}

static vp_status record_prefix_reduce(vp_context *ctx, struct vk_recorder *rec,
                                      const struct vk_buffer *dpk, const struct vk_buffer *dpv,
                                      const struct vk_buffer *scratch,
                                      const struct kernel_attention_config *cfg) {
    uint64_t n = (uint64_t)cfg->H * cfg->L * cfg->D;
    if (too_small(dpk, n * 4) || too_small(dpv, n * 4))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "attention_backward: dprefix_k/v too small");
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_kernel_desc desc = {
        .shader = "attention_prefix_reduce.comp",
        .bindings = 3,
        .push_size = sizeof(struct prefix_reduce_push),
        .spec_count = 1,
        .spec = {wg},
    };
    struct vk_pipeline *pipe;
    vp_status s = vk_pipeline_get(ctx, &desc, &pipe);
    if (s != VP_OK) return s;
    struct prefix_reduce_push push = {(uint32_t)n, cfg->B, 0, 0};
    struct vk_bind b[3] = {
        {scratch, partials_offset(ctx, cfg), partials_bytes(cfg), VK_ACCESS_READ},
        whole_bind(dpk, n * 4, VK_ACCESS_READ_WRITE),
        whole_bind(dpv, n * 4, VK_ACCESS_READ_WRITE),
    };
    uint32_t gx, gy;
    kernel_grid_1d(ctx, (n + wg - 1) / wg, &gx, &gy);
    return vk_recorder_dispatch(rec, pipe, b, 3, &push, gx, gy, 1);
}

vp_status kernel_attention_backward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *dq, const struct vk_buffer *dk,
                                    const struct vk_buffer *dv, const struct vk_buffer *dprefix_k,
                                    const struct vk_buffer *dprefix_v,
                                    const struct vk_buffer *scratch, const struct vk_buffer *dout,
                                    const struct vk_buffer *o, const struct vk_buffer *lse,
                                    const struct vk_buffer *q, const struct vk_buffer *k,
                                    const struct vk_buffer *v, const struct vk_buffer *prefix_k,
                                    const struct vk_buffer *prefix_v,
                                    const struct vk_buffer *keep,
                                    const struct kernel_attention_config *cfg) {
    const uint64_t bh = (uint64_t)cfg->B * cfg->H;
    if (bh == 0) return VP_OK;
    vp_status s = check_config(ctx, cfg, q, k, v, prefix_k, prefix_v, keep);
    if (s != VP_OK) return s;
    const uint64_t qh = (uint64_t)cfg->T * cfg->D * 4, kh = (uint64_t)cfg->S * cfg->D * 4;
    const uint64_t lh = (uint64_t)cfg->T * 4;
    if (too_small(dq, bh * qh) || too_small(dout, bh * qh) || too_small(o, bh * qh) ||
        too_small(lse, bh * lh) || (kh && (too_small(dk, bh * kh) || too_small(dv, bh * kh))) ||
        too_small(scratch, kernel_attention_scratch_bytes(ctx, cfg)))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "attention_backward: a gradient, dout, o, lse or the scratch (%llu bytes) "
                       "is too small",
                       (unsigned long long)kernel_attention_scratch_bytes(ctx, cfg));
    if (cfg->T == 0) {
        /* No query: every key gradient is 0 and the prefixes get nothing. */
        if (kh) s = vk_recorder_fill(rec, dk, 0, bh * kh, 0);
        if (kh && s == VP_OK) s = vk_recorder_fill(rec, dv, 0, bh * kh, 0);
        return s;
    }
    const enum kernel_attention_variant var = kernel_attention_choose(ctx, cfg);
    struct vk_pipeline *dq_pipe, *dkv_pipe;
    uint32_t dq_wg, dkv_wg, chunk;
    if ((s = pass_pipeline(ctx, cfg, var, PASS_DQ, &dq_pipe, &dq_wg)) != VP_OK) return s;
    if ((s = pass_pipeline(ctx, cfg, var, PASS_DKV, &dkv_pipe, &dkv_wg)) != VP_OK) return s;
    if ((s = plan_heads(ctx, cfg, &chunk)) != VP_OK) return s;
    struct attention_push push = make_push(cfg, keep != NULL);
    const uint32_t J = cfg->L + cfg->S;

    for (uint32_t h0 = 0; h0 < bh && s == VP_OK; h0 += chunk) {
        uint32_t n = min_u32(chunk, (uint32_t)(bh - h0));
        struct vk_bind b[11];
        input_binds(b, cfg, q, k, v, prefix_k, prefix_v, keep, h0, n);
        b[6] = heads_bind(o, qh, h0, n, VK_ACCESS_READ);
        b[7] = heads_bind(dout, qh, h0, n, VK_ACCESS_READ);
        b[8] = heads_bind(lse, lh, h0, n, VK_ACCESS_READ);
        b[9] = heads_bind(scratch, lh, h0, n, VK_ACCESS_WRITE); /* delta */
        b[10] = heads_bind(dq, qh, h0, n, VK_ACCESS_WRITE);
        push.bh0 = h0;
        s = vk_recorder_dispatch(rec, dq_pipe, b, 11, &push, groups_of(cfg->T, dq_wg), n, 1);
    }
    for (uint32_t h0 = 0; h0 < bh && s == VP_OK && J; h0 += chunk) {
        uint32_t n = min_u32(chunk, (uint32_t)(bh - h0));
        struct vk_bind b[12];
        input_binds(b, cfg, q, k, v, prefix_k, prefix_v, keep, h0, n);
        struct vk_bind part = {scratch, partials_offset(ctx, cfg), partials_bytes(cfg),
                               VK_ACCESS_WRITE};
        b[6] = heads_bind(dout, qh, h0, n, VK_ACCESS_READ);
        b[7] = heads_bind(lse, lh, h0, n, VK_ACCESS_READ);
        b[8] = heads_bind(scratch, lh, h0, n, VK_ACCESS_READ);
        /* With S = 0 every column is a prefix: dk, dv are never written. */
        b[9] = kh ? heads_bind(dk, kh, h0, n, VK_ACCESS_WRITE) : part;
        b[10] = kh ? heads_bind(dv, kh, h0, n, VK_ACCESS_WRITE) : part;
        b[11] = cfg->L ? part : b[9];
        push.bh0 = h0;
        s = vk_recorder_dispatch(rec, dkv_pipe, b, 12, &push, groups_of(J, dkv_wg), n, 1);
    }
    if (s == VP_OK && cfg->L && dprefix_k && dprefix_v)
        s = record_prefix_reduce(ctx, rec, dprefix_k, dprefix_v, scratch, cfg);
    return s;
}
