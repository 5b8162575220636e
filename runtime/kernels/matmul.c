/* The matmul family: the linear layer Y = X·Wᵀ + b, its gradients, and a
 * strided-batched GEMM for attention. Everything becomes one GEMM shape
 * (shaders/matmul.glsl) run by one of two variants:
 *
 *   TEXEL (CPU devices, lavapipe): matmul_texel.comp, register blocks fed
 *     through uniform texel buffers and subgroup shuffles;
 *   TILED (GPUs): matmul_tiled.comp, register-blocked shared-memory tiles
 *     (64x64 with 4x4 per invocation for big products, 32x32 when the
 *     grid would leave a GPU idle) chosen per GEMM shape within the
 *     limits profile, or forced with VKPEFT_MATMUL_TILES for tuning.
 *
 * Tensors longer than a binding range are bound in row ranges: X, Y, dX, dY
 * split by rows (M), W, dW and b by rows of W (N). A split reduction (dX over
 * N chunks, dW over M chunks) accumulates chunk after chunk in a fixed
 * order, so results stay deterministic. */
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct matmul_push {
    uint32_t M, N, K;
    uint32_t lda, ldb, ldc;
    uint32_t a_off, b_off, c_off, e_off;
    uint32_t sa, sb, sc;
    float alpha, beta;
    uint32_t flags;
};
_Static_assert(sizeof(struct matmul_push) == 64, "matches Push in shaders/matmul.glsl");

enum { MATMUL_ADD_ROWSUMS = 1, MATMUL_BIAS = 2 };

/* One operand of a GEMM as bound: a byte range of a buffer and, within it,
 * where matrix 0 starts (elements), its row pitch and batch stride. `buf`
 * is a copy of the tensor's piece whose size is rounded up to whole 32-bit
 * words: 16-bit tensors are read as words, and pieces are padded to the
 * pool alignment (at least 16 bytes), so the last word is inside the piece. */
struct operand {
    struct vk_buffer buf;
    VkDeviceSize offset, size;
    uint64_t first;
    uint32_t ld;
    uint64_t stride;
};

/* C = alpha·op(A)·op(B) (+ bias) + beta·C, batch times. e holds the bias
 * (by column of C; `bias`), or receives the row sums of op(A) (`rowsum`, a
 * pipeline of its own: its E is writable); without either it is unbound
 * (buffer NULL) and gemm_record binds a stand-in. The flags are run-time
 * switches, so a layer with and without bias shares one pipeline. */
struct gemm {
    struct operand a, b, c, e;
    enum vp_dtype btype;
    uint32_t batch, M, N, K;
    bool trans_a, trans_b;
    bool bias, rowsum, rowsum_only;
    float alpha, beta;
};

const char *kernel_matmul_variant_name(enum kernel_matmul_variant v) {
    switch (v) {
    case KERNEL_MATMUL_AUTO: return "auto";
    case KERNEL_MATMUL_TEXEL: return "texel";
    case KERNEL_MATMUL_TILED: return "tiled";
    }
    return "unknown";
}

/* The texel variant hands op(B) values between lanes with subgroupShuffle
 * and needs column blocks (multiples of the subgroup size) that are
 * multiples of 4. */
static bool texel_supported(const vp_context *ctx) {
    const vp_device_info *d = vp_context_device(ctx);
    uint32_t need = VP_SUBGROUP_BASIC | VP_SUBGROUP_SHUFFLE;
    return (d->subgroup_ops & need) == need && d->subgroup_size >= 4 && d->subgroup_size <= 64 &&
           d->subgroup_size % 4 == 0 &&
           vp_context_limits(ctx)->max_workgroup_invocations >= d->subgroup_size;
}

enum kernel_matmul_variant kernel_matmul_choose(const vp_context *ctx,
                                                enum kernel_matmul_variant forced) {
    if (forced != KERNEL_MATMUL_AUTO) return forced;
    if (vp_context_device(ctx)->type == VP_DEVICE_CPU && texel_supported(ctx))
        return KERNEL_MATMUL_TEXEL;
    return KERNEL_MATMUL_TILED;
}

/* How an API call's GEMMs run: the variant and, for TILED, the forced
 * tiles (all zero: chosen per GEMM). Resolved once per call, so a bad
 * VKPEFT_MATMUL_TILES fails before anything is recorded. */
struct matmul_how {
    enum kernel_matmul_variant variant;
    struct kernel_matmul_tiles forced;
};

static vp_status tiled_forced(const vp_context *ctx, const struct kernel_matmul_opts *o,
                              bool check_fit, struct kernel_matmul_tiles *out);

static vp_status resolve_how(const vp_context *ctx, const struct kernel_matmul_opts *o,
                             struct matmul_how *out) {
    enum kernel_matmul_variant v = kernel_matmul_choose(ctx, o ? o->variant : KERNEL_MATMUL_AUTO);
    if (v == KERNEL_MATMUL_TEXEL && !texel_supported(ctx))
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "matmul: the texel variant needs subgroup shuffles and a subgroup size "
                       "that is a multiple of 4; device '%s' has size %u",
                       vp_context_device(ctx)->name, vp_context_device(ctx)->subgroup_size);
    if (v != KERNEL_MATMUL_TEXEL && v != KERNEL_MATMUL_TILED)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "matmul: unknown variant %d", (int)v);
    out->variant = v;
    /* A malformed VKPEFT_MATMUL_TILES fails under either variant, so a typo
     * shows on a CPU device too; only TILED needs the tiles to fit. */
    return tiled_forced(ctx, o, v == KERNEL_MATMUL_TILED, &out->forced);
}

/* ---- variants: tiles and pipelines --------------------------------------------- */

struct tiles {
    uint32_t wg;             /* invocations per workgroup */
    uint32_t tile_m, tile_n; /* C tile per workgroup */
    char defines[160];       /* variant-specific defines */
};

/* TEXEL: one subgroup per workgroup (lavapipe runs workgroups whole, one
 * per thread; 1 and 8 subgroups measured the same); TM = 4 rows per lane;
 * TN = 3 subgroup widths of columns (24 on lavapipe: at 1024³ as fast as
 * 32, 10% faster than 16, 50% faster than 8; reads 8 k deep before use)
 * when C is at least twice that wide, else one width (narrow C would waste
 * columns, and a 24-wide block costs lavapipe ~0.7 s of LLVM compile
 * against ~0.1 s). */
static void texel_tiles(const vp_context *ctx, uint32_t N, struct tiles *t) {
    uint32_t sg = vp_context_device(ctx)->subgroup_size;
    uint32_t tm = 4, kq = 2;
    uint32_t tn = N >= 6 * sg ? 3 * sg : sg;
    t->wg = sg;
    t->tile_m = sg * tm;
    t->tile_n = tn;
    snprintf(t->defines, sizeof t->defines, "TM=%u\nTN=%u\nSG=%u\nKQ=%u\n", tm, tn, sg, kq);
}

/* ---- TILED: the tiles ------------------------------------------------------------ */

/* Shared memory of a tile config: two buffers (the next slice is stored
 * while the current one is read) of BK rows of op(A) and op(B), each row
 * padded by one vec4 (shaders/matmul_tiled.comp). */
static uint32_t tiled_shared_bytes(const struct kernel_matmul_tiles *t) {
    return 2 * t->bk * (t->bm / 4 + 1 + t->bn / 4 + 1) * 16;
}

static uint32_t tiled_invocations(const struct kernel_matmul_tiles *t) {
    return (t->bm / t->tm) * (t->bn / t->tn);
}

/* Whether the shader can be built from t at all: 4 or 8 rows and columns
 * per invocation (read as vec4s), whole invocation grids, BK a multiple of
 * 4 (four-element reads along k stay inside a slice) and at most 32 (the
 * k loop is unrolled). Writes why not into why. */
static bool tiled_well_formed(const struct kernel_matmul_tiles *t, char *why, size_t size) {
    if ((t->tm != 4 && t->tm != 8) || (t->tn != 4 && t->tn != 8))
        return snprintf(why, size, "TM and TN must be 4 or 8"), false;
    if (t->bm == 0 || t->bn == 0 || t->bm % t->tm || t->bn % t->tn || t->bm > 256 || t->bn > 256)
        return snprintf(why, size, "BM and BN must be multiples of TM and TN, at most 256"), false;
    if (t->bk == 0 || t->bk % 4 || t->bk > 32)
        return snprintf(why, size, "BK must be 4, 8, ... 32"), false;
    return true;
}

/* Whether the device's limits (the profile's) allow t. */
static bool tiled_fits(const vp_context *ctx, const struct kernel_matmul_tiles *t) {
    const vp_limits *l = vp_context_limits(ctx);
    uint32_t inv = tiled_invocations(t);
    return inv <= l->max_workgroup_invocations &&
           inv <= vp_context_device(ctx)->max_workgroup_size[0] &&
           tiled_shared_bytes(t) <= l->shared_memory;
}

/* Shrinks t until it fits: halves BK (down to 4) for shared memory, then
 * doubles TM, then TN (up to 8) for invocations. False when it still does
 * not fit. */
static bool tiled_shrink_to_fit(const vp_context *ctx, struct kernel_matmul_tiles *t) {
    while (t->bk > 4 && tiled_shared_bytes(t) > vp_context_limits(ctx)->shared_memory) t->bk /= 2;
    while (!tiled_fits(ctx, t)) {
        if (t->tm < 8 && t->bm % (2 * t->tm) == 0) t->tm *= 2;
        else if (t->tn < 8 && t->bn % (2 * t->tn) == 0) t->tn *= 2;
        else return false;
    }
    return true;
}

/* The per-shape choice, largest tiles first:
 *   64x64, 16 deep, 4x4 (256): 2 vec4 shared reads per 16 FMAs;
 *   32x32, 16 deep, 4x4 (64): for products too small to fill a GPU any
 *     other way (a LoRA rank-8 product, a decode step of 4 rows).
 * The largest one whose grid has TILED_FILL workgroups and computes at most
 * a quarter more products than it keeps (M, N rounded up to the tile) wins:
 * a big desktop GPU has 100-140 multiprocessors, and one left idle costs
 * more than a smaller tile's lower intensity; padding costs FMAs outright
 * (a decode step's 4 rows in 64-row tiles are 94% padding). Failing that
 * on every candidate, the one with the
 * most workgroups (the smallest, for a product that fits one workgroup of
 * every candidate). A limits profile that cannot run a candidate
 * gets it shrunk (mobile: 64x64x8 with 8x4 per invocation) or skipped.
 * VKPEFT_MATMUL_TILES overrides all of this; tools/gpu/matmul_sweep.sh
 * times candidates against each other. Split-K (for a small C with a long
 * reduction) is left out: deterministic, it needs a scratch buffer of
 * partial sums and a second pass in a fixed order, which the callers' memory
 * plans do not provide; the 32x32 tiles recover part of what it would. */
enum { TILED_FILL = 128 };

/* 128x128x8 with 8x8 is not a candidate: on an NVIDIA H200 (driver
 * 580.159.04) it ran the 1.1B model's products with k-contiguous A (forward,
 * dX) at about 2.2 TFLOP/s against 13.8 for 64x64x16 on the k/v projection,
 * and made a training step 8x slower (3.9 s against 0.49 s with the old
 * 64x64 shader); only its dW products (A transposed) were fast, 18.7 TFLOP/s.
 * It stays selectable through VKPEFT_MATMUL_TILES for the sweep. */
static const struct kernel_matmul_tiles tiled_candidates[] = {
    {64, 64, 16, 4, 4},
    {32, 32, 16, 4, 4},
};

static uint64_t tiled_groups(const struct kernel_matmul_tiles *t, uint32_t M, uint32_t N,
                             uint32_t batch) {
    return (uint64_t)((M + t->bm - 1) / t->bm) * ((N + t->bn - 1) / t->bn) * batch;
}

static vp_status tiled_auto(const vp_context *ctx, uint32_t M, uint32_t N, uint32_t batch,
                            struct kernel_matmul_tiles *out) {
    bool have = false;
    uint64_t best_groups = 0;
    for (size_t i = 0; i < sizeof tiled_candidates / sizeof tiled_candidates[0]; i++) {
        struct kernel_matmul_tiles t = tiled_candidates[i];
        if (!tiled_shrink_to_fit(ctx, &t)) continue;
        uint64_t groups = tiled_groups(&t, M, N, batch);
        uint64_t padded = groups * t.bm * t.bn, kept = (uint64_t)M * N * batch;
        if (groups >= TILED_FILL && 4 * padded <= 5 * kept) {
            *out = t;
            return VP_OK;
        }
        /* Ties go to the smaller tile: the same grid with less wasted work. */
        if (!have || groups >= best_groups) *out = t, best_groups = groups, have = true;
    }
    if (!have)
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "matmul: device '%s' allows %u invocations and %u bytes of shared memory "
                       "per workgroup, too few for any tiled matmul",
                       vp_context_device(ctx)->name,
                       vp_context_limits(ctx)->max_workgroup_invocations,
                       vp_context_limits(ctx)->shared_memory);
    return VP_OK;
}

void kernel_matmul_tiles_name(const struct kernel_matmul_tiles *t, char *buf, size_t size) {
    snprintf(buf, size, "%ux%ux%ux%ux%u", t->bm, t->bn, t->bk, t->tm, t->tn);
}

/* Forced tiles (opts, else VKPEFT_MATMUL_TILES) into *out; all zero when
 * none are forced. Fails when they are malformed or (check_fit) too big for
 * the device. */
static vp_status tiled_forced(const vp_context *ctx, const struct kernel_matmul_opts *o,
                              bool check_fit, struct kernel_matmul_tiles *out) {
    memset(out, 0, sizeof *out);
    const char *src = "opts.tiles", *env = NULL;
    if (o && (o->tiles.bm || o->tiles.bn || o->tiles.bk || o->tiles.tm || o->tiles.tn)) {
        *out = o->tiles;
    } else {
        env = getenv("VKPEFT_MATMUL_TILES");
        if (!env || !*env || strcmp(env, "auto") == 0) return VP_OK;
        src = "VKPEFT_MATMUL_TILES";
        char tail;
        if (sscanf(env, "%ux%ux%ux%ux%u%c", &out->bm, &out->bn, &out->bk, &out->tm, &out->tn,
                   &tail) != 5)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                           "VKPEFT_MATMUL_TILES='%s' is not BMxBNxBKxTMxTN (e.g. 128x128x8x8x8) "
                           "or 'auto'", env);
    }
    char why[96], name[64];
    kernel_matmul_tiles_name(out, name, sizeof name);
    if (!tiled_well_formed(out, why, sizeof why))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "matmul: %s=%s: %s", src, name, why);
    if (check_fit && !tiled_fits(ctx, out))
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "matmul: %s=%s needs %u invocations and %u bytes of shared memory per "
                       "workgroup; device '%s' allows %u and %u",
                       src, name, tiled_invocations(out), tiled_shared_bytes(out),
                       vp_context_device(ctx)->name,
                       vp_context_limits(ctx)->max_workgroup_invocations,
                       vp_context_limits(ctx)->shared_memory);
    return VP_OK;
}

vp_status kernel_matmul_tiles_choose(const vp_context *ctx, const struct kernel_matmul_opts *opts,
                                     uint32_t M, uint32_t N, uint32_t batch,
                                     struct kernel_matmul_tiles *out) {
    vp_status s = tiled_forced(ctx, opts, true, out);
    if (s != VP_OK || out->bm) return s;
    return tiled_auto(ctx, M, N, batch ? batch : 1, out);
}

static void tiled_tiles(const struct kernel_matmul_tiles *k, struct tiles *t) {
    t->wg = tiled_invocations(k);
    t->tile_m = k->bm;
    t->tile_n = k->bn;
    snprintf(t->defines, sizeof t->defines, "BM=%u\nBN=%u\nBK=%u\nTM=%u\nTN=%u\n", k->bm, k->bn,
             k->bk, k->tm, k->tn);
}

/* Four-element reads need matrix starts, row pitches and batch strides
 * that are multiples of 4 elements, in both variants: TEXEL's RGBA views,
 * TILED's vec4 (f32) and uvec2 (four packed halves) storage reads. TILED
 * reads a vector that crosses the matrix's edge element by element, so the
 * matrix's extent does not matter. */
static bool vec4_ok(const struct operand *o, uint32_t batch) {
    return o->first % 4 == 0 && o->ld % 4 == 0 && (batch <= 1 || o->stride % 4 == 0);
}

static vp_status gemm_pipeline(vp_context *ctx, const struct matmul_how *how, const struct gemm *g,
                               struct tiles *t, struct vk_pipeline **pipe) {
    bool texel = how->variant == KERNEL_MATMUL_TEXEL;
    if (texel) {
        texel_tiles(ctx, g->N, t);
    } else {
        struct kernel_matmul_tiles k = how->forced;
        /* Batches that sum into one C run one dispatch each. */
        uint32_t grid_batch = g->c.stride == 0 ? 1 : g->batch;
        if (!k.bm) {
            vp_status s = tiled_auto(ctx, g->M, g->N, grid_batch, &k);
            if (s != VP_OK) return s;
        }
        tiled_tiles(&k, t);
    }
    /* One switch for both operands: half the pipelines, and only odd
     * shapes (a vocabulary-sized N) lose the four-element reads. */
    bool vec = vec4_ok(&g->a, g->batch) && vec4_ok(&g->b, g->batch);
    char defines[400];
    snprintf(defines, sizeof defines,
             "TRANS_A=%d\nTRANS_B=%d\nB_TYPE=%d\nROWSUM=%d\nROWSUM_ONLY=%d\n"
             "VEC=%d\n%s",
             g->trans_a, g->trans_b, (int)g->btype, g->rowsum || g->rowsum_only, g->rowsum_only,
             vec, t->defines);
    struct vk_kernel_desc desc = {
        .shader = texel ? "matmul_texel.comp" : "matmul_tiled.comp",
        .defines = defines,
        .bindings = 4,
        .push_size = sizeof(struct matmul_push),
        .spec_count = 1,
        .spec = {t->wg},
    };
    if (texel) {
        bool f32 = g->btype == VP_DTYPE_F32;
        desc.texel[0] = vec ? VK_FORMAT_R32G32B32A32_SFLOAT : VK_FORMAT_R32_SFLOAT;
        desc.texel[1] = vec ? (f32 ? VK_FORMAT_R32G32B32A32_SFLOAT : VK_FORMAT_R32G32B32A32_UINT)
                            : (f32 ? VK_FORMAT_R32_SFLOAT : VK_FORMAT_R32_UINT);
    }
    return vk_pipeline_get(ctx, &desc, pipe);
}

/* ---- recording one GEMM ---------------------------------------------------------- */

static uint32_t min_u32(uint64_t a, uint64_t b) { return (uint32_t)(a < b ? a : b); }

/* Records g (every operand already bound within a binding range), split
 * into as many dispatches as the workgroup-count limits need. Batches run
 * one dispatch each when they all write the same C (stride 0). */
static vp_status gemm_record(vp_context *ctx, struct vk_recorder *rec, const struct matmul_how *how,
                             const struct gemm *g) {
    struct tiles t;
    struct vk_pipeline *pipe;
    vp_status s = gemm_pipeline(ctx, how, g, &t, &pipe);
    if (s != VP_OK) return s;
    const uint32_t *maxg = vp_context_device(ctx)->max_workgroup_count;
    uint64_t step_m = (uint64_t)maxg[1] * t.tile_m, step_n = (uint64_t)maxg[0] * t.tile_n;
    uint32_t step_z = g->c.stride == 0 && g->batch > 1 ? 1 : maxg[2];
    enum vk_access caccess = g->beta != 0.0f ? VK_ACCESS_READ_WRITE : VK_ACCESS_WRITE;
    if (g->rowsum_only) caccess = VK_ACCESS_READ; /* bound, never touched */
    /* E's stand-in: A for a bias pipeline (read-only there), C for a
     * row-sum one (its E is writable, and C is read and written anyway). */
    bool has_e = g->e.buf.buffer != VK_NULL_HANDLE;
    const struct operand *e = has_e ? &g->e : g->rowsum ? &g->c : &g->a;
    struct vk_bind binds[4] = {
        {&g->a.buf, g->a.offset, g->a.size, VK_ACCESS_READ},
        {&g->b.buf, g->b.offset, g->b.size, VK_ACCESS_READ},
        {&g->c.buf, g->c.offset, g->c.size, caccess},
        {&e->buf, e->offset, e->size, g->rowsum ? VK_ACCESS_READ_WRITE : VK_ACCESS_READ},
    };
    for (uint32_t z0 = 0; z0 < g->batch && s == VP_OK; z0 += step_z) {
        uint32_t nz = min_u32(g->batch - z0, step_z);
        for (uint64_t m0 = 0; m0 < g->M && s == VP_OK; m0 += step_m) {
            uint32_t nm = min_u32(g->M - m0, step_m);
            for (uint64_t n0 = 0; n0 < g->N && s == VP_OK; n0 += step_n) {
                uint32_t nn = min_u32(g->N - n0, step_n);
                struct matmul_push p = {
                    .M = nm, .N = nn, .K = g->K,
                    .lda = g->a.ld, .ldb = g->b.ld, .ldc = g->c.ld,
                    .a_off = (uint32_t)(g->a.first + z0 * g->a.stride +
                                        m0 * (g->trans_a ? 1 : g->a.ld)),
                    .b_off = (uint32_t)(g->b.first + z0 * g->b.stride +
                                        n0 * (g->trans_b ? g->b.ld : 1)),
                    .c_off = (uint32_t)(g->c.first + z0 * g->c.stride + m0 * g->c.ld + n0),
                    .e_off = (uint32_t)(g->e.first + (g->bias ? n0 : m0)),
                    .sa = (uint32_t)g->a.stride, .sb = (uint32_t)g->b.stride,
                    .sc = (uint32_t)g->c.stride,
                    .alpha = g->alpha, .beta = g->beta,
                    .flags = (has_e && g->rowsum && n0 == 0 ? MATMUL_ADD_ROWSUMS : 0) |
                             (has_e && g->bias ? MATMUL_BIAS : 0),
                };
                uint32_t gx = (uint32_t)((nn + t.tile_n - 1) / t.tile_n);
                uint32_t gy = (uint32_t)((nm + t.tile_m - 1) / t.tile_m);
                s = vk_recorder_dispatch(rec, pipe, binds, 4, &p, gx, gy, nz);
            }
        }
    }
    return s;
}

/* ---- binding ranges ---------------------------------------------------------------- */

/* The longest binding the matmul kernels make: a storage range, or a texel
 * range of single-element texels (the smallest texel range). */
static VkDeviceSize binding_limit(const vp_context *ctx) {
    VkDeviceSize lim = vp_context_limits(ctx)->storage_buffer_range;
    VkDeviceSize tex = vk_texel_range(ctx, VK_FORMAT_R32_SFLOAT);
    return tex < lim ? tex : lim;
}

/* How many rows of `row_bytes` one binding holds (a multiple of 8 when it
 * can be, so that later chunks keep four-element alignment); 0 when not even
 * one row fits. */
static uint64_t rows_per_binding(const vp_context *ctx, uint64_t row_bytes) {
    VkDeviceSize lim = binding_limit(ctx), align = ctx->binding_alignment;
    if (lim <= align) return 0;
    uint64_t rows = (lim - align) / row_bytes;
    return rows >= 8 ? rows / 8 * 8 : rows;
}

/* Binds rows [r0, r1) of a row-major matrix of `cols` columns and pitch
 * `ld` that starts at element `first` of buf: the range starts on the
 * binding alignment at or below the first row. */
static struct operand bind_range(const vp_context *ctx, const struct vk_buffer *buf, size_t esize,
                                 VkDeviceSize start, VkDeviceSize end, uint32_t ld,
                                 uint64_t stride) {
    VkDeviceSize at = start - (buf->offset + start) % ctx->binding_alignment;
    struct operand o = {*buf, at, (end - at + 3) / 4 * 4, (start - at) / esize, ld, stride};
    o.buf.size = (buf->size + 3) / 4 * 4;
    o.buf.host = NULL;
    return o;
}

static struct operand bind_rows(const vp_context *ctx, const struct vk_buffer *buf, size_t esize,
                                uint64_t first, uint32_t ld, uint32_t cols, uint64_t r0,
                                uint64_t r1) {
    return bind_range(ctx, buf, esize, (first + r0 * ld) * esize,
                      (first + (r1 - 1) * ld + cols) * esize, ld, 0);
}

/* Tensors start on the pool alignment (every vk_buffer_alloc piece does),
 * so any row's binding can start at or below it inside the piece. */
static vp_status check_tensor(const vp_context *ctx, const struct vk_buffer *buf, uint64_t elems,
                              size_t esize, const char *op, const char *name) {
    if (!buf || !buf->buffer)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: %s has no buffer", op, name);
    if (buf->offset % ctx->binding_alignment)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: %s starts at offset %llu, not on the pool alignment %llu", op, name,
                       (unsigned long long)buf->offset,
                       (unsigned long long)ctx->binding_alignment);
    if (buf->size < elems * esize)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: %s holds %llu bytes, the shape needs %llu", op, name,
                       (unsigned long long)buf->size, (unsigned long long)(elems * esize));
    return VP_OK;
}

/* Row chunk sizes for a set of matrices split together by the same rows. */
static vp_status chunk_rows(const vp_context *ctx, const uint64_t *row_bytes, int n, const char *op,
                            uint64_t *out) {
    uint64_t rows = UINT64_MAX;
    for (int i = 0; i < n; i++) {
        uint64_t r = rows_per_binding(ctx, row_bytes[i]);
        if (r < rows) rows = r;
    }
    if (rows == 0)
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "%s: one row does not fit a binding range of %llu bytes", op,
                       (unsigned long long)binding_limit(ctx));
    *out = rows;
    return VP_OK;
}

static vp_status check_dims(uint32_t M, uint32_t K, uint32_t N, const char *op) {
    if (K == 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: M=%u K=%u N=%u (K must be > 0)", op, M, K,
                       N);
    return VP_OK;
}

/* ---- the linear layer ----------------------------------------------------------------- */

vp_status kernel_matmul_forward(vp_context *ctx, struct vk_recorder *rec,
                                const struct vk_buffer *y, const struct vk_buffer *x,
                                const struct vk_buffer *w, enum vp_dtype wtype,
                                const struct vk_buffer *b, uint32_t M, uint32_t K, uint32_t N,
                                const struct kernel_matmul_opts *opts) {
    const char *op = "matmul_forward";
    struct matmul_how how;
    size_t ws = vp_dtype_size(wtype);
    vp_status s = check_dims(M, K, N, op);
    if (s == VP_OK) s = resolve_how(ctx, opts, &how);
    if (s != VP_OK || M == 0 || N == 0) return s;
    if ((s = check_tensor(ctx, y, (uint64_t)M * N, 4, op, "y")) != VP_OK ||
        (s = check_tensor(ctx, x, (uint64_t)M * K, 4, op, "x")) != VP_OK ||
        (s = check_tensor(ctx, w, (uint64_t)N * K, ws, op, "w")) != VP_OK ||
        (b && (s = check_tensor(ctx, b, N, 4, op, "b")) != VP_OK))
        return s;
    uint64_t mc, nc;
    uint64_t xy_rows[2] = {(uint64_t)K * 4, (uint64_t)N * 4}, w_rows[1] = {(uint64_t)K * ws};
    if ((s = chunk_rows(ctx, xy_rows, 2, op, &mc)) != VP_OK ||
        (s = chunk_rows(ctx, w_rows, 1, op, &nc)) != VP_OK)
        return s;
    for (uint64_t m0 = 0; m0 < M && s == VP_OK; m0 += mc) {
        uint64_t m1 = m0 + mc < M ? m0 + mc : M;
        for (uint64_t n0 = 0; n0 < N && s == VP_OK; n0 += nc) {
            uint64_t n1 = n0 + nc < N ? n0 + nc : N;
            struct gemm g = {
                .a = bind_rows(ctx, x, 4, 0, K, K, m0, m1),
                .b = bind_rows(ctx, w, ws, 0, K, K, n0, n1),
                .c = bind_rows(ctx, y, 4, 0, N, N, m0, m1),
                .btype = wtype,
                .batch = 1, .M = (uint32_t)(m1 - m0), .N = (uint32_t)(n1 - n0), .K = K,
                .trans_b = true, .bias = b != NULL,
                .alpha = 1.0f, .beta = 0.0f,
            };
            g.c.first += n0;
            if (b) g.e = bind_rows(ctx, b, 4, 0, 1, 1, n0, n1);
            s = gemm_record(ctx, rec, &how, &g);
        }
    }
    return s;
}

/* dX = dY·W: rows of dX by rows of dY; a W too long for one binding splits
 * the reduction, and later chunks add to the first (beta = 1). */
static vp_status input_grad(vp_context *ctx, struct vk_recorder *rec, const struct matmul_how *how,
                            const struct vk_buffer *dx, const struct vk_buffer *dy,
                            const struct vk_buffer *w, enum vp_dtype wtype, uint32_t M,
                            uint32_t K, uint32_t N) {
    const char *op = "matmul_backward (dx)";
    size_t ws = vp_dtype_size(wtype);
    uint64_t mc, nc;
    uint64_t rows[2] = {(uint64_t)N * 4, (uint64_t)K * 4}, w_rows[1] = {(uint64_t)K * ws};
    vp_status s = chunk_rows(ctx, rows, 2, op, &mc);
    if (s == VP_OK) s = chunk_rows(ctx, w_rows, 1, op, &nc);
    for (uint64_t m0 = 0; m0 < M && s == VP_OK; m0 += mc) {
        uint64_t m1 = m0 + mc < M ? m0 + mc : M;
        for (uint64_t n0 = 0; n0 < N && s == VP_OK; n0 += nc) {
            uint64_t n1 = n0 + nc < N ? n0 + nc : N;
            struct gemm g = {
                .a = bind_rows(ctx, dy, 4, 0, N, N, m0, m1),
                .b = bind_rows(ctx, w, ws, 0, K, K, n0, n1),
                .c = bind_rows(ctx, dx, 4, 0, K, K, m0, m1),
                .btype = wtype,
                .batch = 1, .M = (uint32_t)(m1 - m0), .N = K, .K = (uint32_t)(n1 - n0),
                .alpha = 1.0f, .beta = n0 == 0 ? 0.0f : 1.0f,
            };
            g.a.first += n0;
            s = gemm_record(ctx, rec, how, &g);
        }
    }
    return s;
}

/* dW += dYᵀ·X and db += Σ_m dY (the row sums of dYᵀ, fused into the same
 * dispatch; alone when dw is NULL): rows of dW by rows of W, the reduction
 * over M in binding-sized chunks added in order. */
static vp_status weight_grad(vp_context *ctx, struct vk_recorder *rec, const struct matmul_how *how,
                             const struct vk_buffer *dw, const struct vk_buffer *db,
                             const struct vk_buffer *dy, const struct vk_buffer *x, uint32_t M,
                             uint32_t K, uint32_t N) {
    const char *op = "matmul_backward (dw, db)";
    uint64_t mc, nc;
    uint64_t rows[2] = {(uint64_t)N * 4, (uint64_t)K * 4}, w_rows[1] = {(uint64_t)K * 4};
    vp_status s = chunk_rows(ctx, rows, dw ? 2 : 1, op, &mc);
    if (s == VP_OK) s = chunk_rows(ctx, w_rows, 1, op, &nc);
    for (uint64_t n0 = 0; n0 < N && s == VP_OK; n0 += nc) {
        uint64_t n1 = n0 + nc < N ? n0 + nc : N;
        for (uint64_t m0 = 0; m0 < M && s == VP_OK; m0 += mc) {
            uint64_t m1 = m0 + mc < M ? m0 + mc : M;
            struct gemm g = {
                .a = bind_rows(ctx, dy, 4, 0, N, N, m0, m1),
                .btype = VP_DTYPE_F32,
                .batch = 1, .M = (uint32_t)(n1 - n0), .N = K, .K = (uint32_t)(m1 - m0),
                .trans_a = true, .rowsum = true,
                .alpha = 1.0f, .beta = 1.0f,
            };
            g.a.first += n0;
            if (db) g.e = bind_rows(ctx, db, 4, 0, 1, 1, n0, n1);
            if (dw) {
                g.b = bind_rows(ctx, x, 4, 0, K, K, m0, m1);
                g.c = bind_rows(ctx, dw, 4, 0, K, K, n0, n1);
            } else {
                /* Row sums only: B and C are bound (to dY and db) but unused. */
                g.rowsum_only = true;
                g.N = 1;
                g.b = g.a;
                g.c = g.e;
            }
            s = gemm_record(ctx, rec, how, &g);
        }
    }
    return s;
}

vp_status kernel_matmul_backward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *dx, const struct vk_buffer *dw,
                                 const struct vk_buffer *db, const struct vk_buffer *dy,
                                 const struct vk_buffer *x, const struct vk_buffer *w,
                                 enum vp_dtype wtype, uint32_t M, uint32_t K, uint32_t N,
                                 const struct kernel_matmul_opts *opts) {
    const char *op = "matmul_backward";
    struct matmul_how how;
    vp_status s = check_dims(M, K, N, op);
    if (s == VP_OK) s = resolve_how(ctx, opts, &how);
    if (s != VP_OK) return s;
    if (M == 0) return VP_OK;
    if ((N && (s = check_tensor(ctx, dy, (uint64_t)M * N, 4, op, "dy")) != VP_OK) ||
        (dx && (s = check_tensor(ctx, dx, (uint64_t)M * K, 4, op, "dx")) != VP_OK) ||
        (dx && (s = check_tensor(ctx, w, (uint64_t)N * K, vp_dtype_size(wtype), op, "w")) != VP_OK) ||
        (dw && (s = check_tensor(ctx, dw, (uint64_t)N * K, 4, op, "dw")) != VP_OK) ||
        (dw && (s = check_tensor(ctx, x, (uint64_t)M * K, 4, op, "x")) != VP_OK) ||
        (db && (s = check_tensor(ctx, db, N, 4, op, "db")) != VP_OK))
        return s;
    if (N == 0) /* an empty sum: dX = 0, dW and db gain nothing */
        return dx ? vk_recorder_fill(rec, dx, 0, (VkDeviceSize)M * K * 4, 0) : VP_OK;
    if (dx) s = input_grad(ctx, rec, &how, dx, dy, w, wtype, M, K, N);
    if (s == VP_OK && (dw || db)) s = weight_grad(ctx, rec, &how, dw, db, dy, x, M, K, N);
    return s;
}

/* ---- strided batched ------------------------------------------------------------------ */

/* Elements matrix z of an operand spans from its start. */
static uint64_t matrix_span(uint32_t rows, uint32_t cols) { return (uint64_t)rows * cols; }

/* How many consecutive batches of an operand one binding holds. */
static uint64_t batches_per_binding(const vp_context *ctx, const struct kernel_matrix *m,
                                    uint64_t span) {
    VkDeviceSize lim = binding_limit(ctx), align = ctx->binding_alignment;
    if (lim <= align || (lim - align) / 4 < span) return 0;
    if (m->stride == 0) return UINT64_MAX;
    return ((lim - align) / 4 - span) / m->stride + 1;
}

static struct operand bind_batches(const vp_context *ctx, const struct kernel_matrix *m,
                                   uint32_t ld, uint64_t span, uint64_t z0, uint64_t z1) {
    return bind_range(ctx, m->buf, 4, (m->offset + z0 * m->stride) * 4,
                      (m->offset + (z1 - 1) * m->stride + span) * 4, ld, m->stride);
}

vp_status kernel_matmul_batched(vp_context *ctx, struct vk_recorder *rec, struct kernel_matrix c,
                                struct kernel_matrix a, struct kernel_matrix b, uint32_t batch,
                                uint32_t M, uint32_t N, uint32_t K, bool trans_a, bool trans_b,
                                float alpha, float beta, const struct kernel_matmul_opts *opts) {
    const char *op = "matmul_batched";
    struct matmul_how how;
    vp_status s = check_dims(M, K, N, op);
    if (s == VP_OK) s = resolve_how(ctx, opts, &how);
    if (s != VP_OK || batch == 0 || M == 0 || N == 0) return s;
    uint64_t spans[3] = {matrix_span(M, N), matrix_span(trans_a ? K : M, trans_a ? M : K),
                         matrix_span(trans_b ? N : K, trans_b ? K : N)};
    const struct kernel_matrix *mats[3] = {&c, &a, &b};
    const char *names[3] = {"c", "a", "b"};
    uint64_t per = UINT64_MAX;
    for (int i = 0; i < 3; i++) {
        uint64_t extent = mats[i]->offset + (uint64_t)(batch - 1) * mats[i]->stride + spans[i];
        if ((s = check_tensor(ctx, mats[i]->buf, extent, 4, op, names[i])) != VP_OK) return s;
        uint64_t p = batches_per_binding(ctx, mats[i], spans[i]);
        if (p == 0)
            return vp_fail(VP_ERROR_UNSUPPORTED,
                           "%s: one matrix of %s does not fit a binding range of %llu bytes", op,
                           names[i], (unsigned long long)binding_limit(ctx));
        if (p < per) per = p;
    }
    if (c.stride != 0 && c.stride < spans[0] && batch > 1)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: C matrices overlap (stride %llu < M*N = %llu); use stride 0 to sum "
                       "batches into one matrix",
                       op, (unsigned long long)c.stride, (unsigned long long)spans[0]);
    for (uint64_t z0 = 0; z0 < batch && s == VP_OK; z0 += per) {
        uint64_t z1 = batch - z0 < per ? batch : z0 + per;
        struct gemm g = {
            .a = bind_batches(ctx, &a, trans_a ? M : K, spans[1], z0, z1),
            .b = bind_batches(ctx, &b, trans_b ? K : N, spans[2], z0, z1),
            .c = bind_batches(ctx, &c, N, spans[0], z0, z1),
            .btype = VP_DTYPE_F32,
            .batch = (uint32_t)(z1 - z0), .M = M, .N = N, .K = K,
            .trans_a = trans_a, .trans_b = trans_b,
            .alpha = alpha, .beta = beta,
        };
        s = gemm_record(ctx, rec, &how, &g);
    }
    return s;
}
