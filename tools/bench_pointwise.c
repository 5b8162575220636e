/* vkpeft bench kernels --only pointwise: activations, residual/scale/gate,
 * LayerNorm/RMSNorm, softmax, embedding gather/scatter, RoPE, dropout and
 * storage conversion at transformer shapes (tokens 4096, hidden 768, FFN
 * 3072, 12 heads; --quick: tokens 256, hidden 128, FFN 512, 4 heads).
 *
 * GB/s counts each op's nominal traffic: every input read once and every
 * output written once (a kernel that sweeps a row twice still counts it
 * once), so the figure compares with the device's memory bandwidth. Row-wise
 * ops are timed in both variants; the row marked "(auto)" is the one
 * kernel_rows_choose picks here. Inputs are random; the tests check values. */
#include "bench.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pieces one measurement allocates, freed together. */
struct pieces {
    vp_context *ctx;
    struct vk_buffer items[16];
    uint32_t count;
};

static void pieces_free(struct pieces *p) {
    for (uint32_t i = 0; i < p->count; i++) vk_buffer_free(p->ctx, &p->items[i]);
    p->count = 0;
}

static uint64_t rng_next(uint64_t *st) {
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return *st;
}

enum fill { FILL_NONE, FILL_F32, FILL_F16, FILL_IDS };

/* Allocates n elements (4 bytes each, 2 for FILL_F16) and fills them:
 * uniform in [-1, 1), or ids in [0, range). */
static vp_status piece(struct pieces *p, vp_pool pool, uint64_t n, enum fill fill, uint32_t range,
                       struct vk_buffer **out) {
    if (p->count == sizeof p->items / sizeof p->items[0])
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "bench: too many buffers");
    uint64_t esize = fill == FILL_F16 ? 2 : 4, bytes = (n * esize + 3) & ~(uint64_t)3;
    struct vk_buffer *b = &p->items[p->count];
    vp_status s = vk_buffer_alloc(p->ctx, pool, bytes ? bytes : 4, b);
    if (s != VP_OK) return s;
    p->count++;
    *out = b;
    if (fill == FILL_NONE) return VP_OK;
    enum { SLICE = 1 << 20 };
    uint32_t *tmp = malloc(SLICE * 4);
    if (!tmp) return vp_fail(VP_ERROR_HOST_MEMORY, "bench: out of host memory");
    uint64_t st = 0x9E3779B97F4A7C15ull + p->count;
    uint64_t words = bytes / 4;
    for (uint64_t at = 0; at < words && s == VP_OK; at += SLICE) {
        uint64_t m = words - at < SLICE ? words - at : SLICE;
        for (uint64_t i = 0; i < m; i++) {
            uint64_t r = rng_next(&st);
            float f = (float)((r >> 40) * 0x1.0p-23) - 1.0f;
            float g = (float)(((r >> 16) & 0xFFFFFF) * 0x1.0p-23) - 1.0f;
            if (fill == FILL_F32) memcpy(&tmp[i], &f, 4);
            else if (fill == FILL_IDS) tmp[i] = (uint32_t)(r >> 33) % range;
            else tmp[i] = vp_f32_to_f16(f) | (uint32_t)vp_f32_to_f16(g) << 16;
        }
        s = vk_buffer_write(p->ctx, b, at * 4, tmp, m * 4);
    }
    free(tmp);
    return s;
}

/* Everything a recording needs; each op uses the fields it names. */
struct op {
    struct vk_buffer *x, *y, *dy, *dx, *x2, *dx2, *w, *w2, *dw, *dw2, *mean, *rstd, *scratch,
        *ids, *table, *groups, *pos;
    uint64_t n;
    uint32_t N, C, G, V, BH, T, D, P;
    enum kernel_activation act;
    enum kernel_rows_variant variant;
    enum vp_dtype dtype, dtype2;
    struct kernel_softmax_mask mask;
    struct kernel_dropout_key key;
};

typedef vp_status (*record_fn)(vp_context *, struct vk_recorder *, struct op *);

/* Times `fn` and adds a row with its nominal traffic in bytes. */
static vp_status measure(vp_context *ctx, const struct bench_kernel_opts *o,
                         struct bench_table *out, record_fn fn, struct op *op, const char *opname,
                         const char *shape, const char *variant, double bytes) {
    struct vk_recorder *rec;
    vp_status s = vk_recorder_create(ctx, 0, &rec);
    if (s != VP_OK) return s;
    double ms = 0;
    s = vk_recorder_begin(rec);
    if (s == VP_OK) s = fn(ctx, rec, op);
    if (s == VP_OK) s = vk_recorder_end(rec);
    if (s == VP_OK) s = bench_time(rec, o->repeat, &ms);
    vk_recorder_destroy(rec);
    if (s != VP_OK) return vp_fail_context(s, "bench %s", opname);
    struct bench_row row = {.ms = ms, .gbps = bytes / (ms * 1e6)};
    snprintf(row.op, sizeof row.op, "%s", opname);
    snprintf(row.shape, sizeof row.shape, "%s", shape);
    snprintf(row.variant, sizeof row.variant, "%s", variant);
    bench_table_add(out, &row);
    return VP_OK;
}

/* Shapes of one run. */
struct dims {
    uint32_t tokens, hidden, ffn, heads, vocab, batch;
};

/* ---- activations ------------------------------------------------------------------- */

static vp_status rec_act_fwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_activation_forward(c, r, o->y, o->x, o->n, o->act);
}
static vp_status rec_act_bwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_activation_backward(c, r, o->dx, o->dy, o->x, o->n, o->act);
}
static vp_status rec_swiglu_fwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_swiglu_forward(c, r, o->y, o->x, o->x2, o->n);
}
static vp_status rec_swiglu_bwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_swiglu_backward(c, r, o->dx, o->dx2, o->dy, o->x, o->x2, o->n);
}

static vp_status bench_activations(vp_context *ctx, const struct bench_kernel_opts *o,
                                   struct bench_table *out, const struct dims *d) {
    struct pieces p = {.ctx = ctx};
    struct op op = {.n = (uint64_t)d->tokens * d->ffn};
    const vp_pool A = VP_POOL_ACTIVATIONS;
    vp_status s = piece(&p, A, op.n, FILL_F32, 0, &op.x);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_F32, 0, &op.x2);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_F32, 0, &op.dy);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.y);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.dx);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.dx2);
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%u", d->tokens, d->ffn);
    static const enum kernel_activation acts[] = {KERNEL_ACT_GELU, KERNEL_ACT_GELU_TANH,
                                                  KERNEL_ACT_RELU, KERNEL_ACT_SILU, KERNEL_ACT_TANH};
    const double f = 4.0 * (double)op.n; /* bytes of one fp32 tensor */
    for (size_t i = 0; i < sizeof acts / sizeof acts[0] && s == VP_OK; i++) {
        char name[48];
        op.act = acts[i];
        snprintf(name, sizeof name, "%s_forward", kernel_activation_name(op.act));
        s = measure(ctx, o, out, rec_act_fwd, &op, name, shape, "1 elem/inv", 2 * f);
        snprintf(name, sizeof name, "%s_backward", kernel_activation_name(op.act));
        if (s == VP_OK) s = measure(ctx, o, out, rec_act_bwd, &op, name, shape, "1 elem/inv", 3 * f);
    }
    if (s == VP_OK)
        s = measure(ctx, o, out, rec_swiglu_fwd, &op, "swiglu_forward", shape, "1 elem/inv", 3 * f);
    if (s == VP_OK)
        s = measure(ctx, o, out, rec_swiglu_bwd, &op, "swiglu_backward", shape, "1 elem/inv", 5 * f);
    pieces_free(&p);
    return s;
}

/* ---- residual, scale, gate, dropout, convert ---------------------------------------- */

static vp_status rec_add(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_add_forward(c, r, o->y, o->x, o->x2, o->n);
}
static vp_status rec_add_scaled(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_add_scaled_forward(c, r, o->y, o->x, o->x2, 0.5f, o->n);
}
static vp_status rec_scale(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_scale_forward(c, r, o->y, o->x, 0.5f, o->n);
}
static vp_status rec_gate_fwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_sigmoid_gate_forward(c, r, o->y, o->x, o->x2, o->w, o->N, o->C, o->G);
}
static vp_status rec_gate_bwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_sigmoid_gate_backward(c, r, o->dx, o->dx2, o->dw, o->scratch, o->dy, o->x2, o->w,
                                        o->N, o->C, o->G);
}
static vp_status rec_dropout_fwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_dropout_forward(c, r, o->y, o->x, o->n, &o->key, 0.1);
}
static vp_status rec_dropout_bwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_dropout_backward(c, r, o->dx, o->dy, o->n, &o->key, 0.1);
}
static vp_status rec_convert(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_convert(c, r, o->y, o->x, o->n, o->dtype2, o->dtype);
}

static vp_status bench_elementwise(vp_context *ctx, const struct bench_kernel_opts *o,
                                   struct bench_table *out, const struct dims *d) {
    struct pieces p = {.ctx = ctx};
    struct op op = {.n = (uint64_t)d->tokens * d->hidden, .N = d->tokens, .C = d->hidden,
                    .G = d->hidden, .key = {0x5eed, 1, 0}};
    const vp_pool A = VP_POOL_ACTIVATIONS, T = VP_POOL_TRAINABLE;
    vp_status s = piece(&p, A, op.n, FILL_F32, 0, &op.x);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_F32, 0, &op.x2);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_F32, 0, &op.dy);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.y);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.dx);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.dx2);
    if (s == VP_OK) s = piece(&p, T, d->hidden, FILL_F32, 0, &op.w);
    if (s == VP_OK) s = piece(&p, T, d->hidden, FILL_F32, 0, &op.dw);
    if (s == VP_OK)
        s = piece(&p, A, kernel_sigmoid_gate_scratch_bytes(op.N, op.C) / 4, FILL_NONE, 0,
                  &op.scratch);
    char shape[64], variant[48];
    snprintf(shape, sizeof shape, "%ux%u", d->tokens, d->hidden);
    const double f = 4.0 * (double)op.n;
    if (s == VP_OK) s = measure(ctx, o, out, rec_add, &op, "add_forward", shape, "1 elem/inv", 3 * f);
    if (s == VP_OK)
        s = measure(ctx, o, out, rec_add_scaled, &op, "add_scaled_forward", shape, "1 elem/inv",
                    3 * f);
    if (s == VP_OK)
        s = measure(ctx, o, out, rec_scale, &op, "scale_forward", shape, "scale_add", 2 * f);
    snprintf(shape, sizeof shape, "%ux%u G=%u", d->tokens, d->hidden, op.G);
    if (s == VP_OK)
        s = measure(ctx, o, out, rec_gate_fwd, &op, "sigmoid_gate_forward", shape, "1 elem/inv",
                    3 * f);
    /* dh copy, dd and the dg partials in one pass, then the partial sums. */
    if (s == VP_OK)
        s = measure(ctx, o, out, rec_gate_bwd, &op, "sigmoid_gate_backward", shape,
                    "copy+2-pass", 4 * f + 2 * f);
    snprintf(shape, sizeof shape, "%ux%u p=0.1", d->tokens, d->hidden);
    if (s == VP_OK)
        s = measure(ctx, o, out, rec_dropout_fwd, &op, "dropout_forward", shape, "philox", 2 * f);
    if (s == VP_OK)
        s = measure(ctx, o, out, rec_dropout_bwd, &op, "dropout_backward", shape, "philox", 2 * f);
    static const struct {
        enum vp_dtype from, to;
    } conv[] = {{VP_DTYPE_F32, VP_DTYPE_F16}, {VP_DTYPE_F16, VP_DTYPE_F32},
                {VP_DTYPE_F32, VP_DTYPE_BF16}, {VP_DTYPE_BF16, VP_DTYPE_F32}};
    for (size_t i = 0; i < 4 && s == VP_OK; i++) {
        op.dtype = conv[i].from;
        op.dtype2 = conv[i].to;
        snprintf(shape, sizeof shape, "%ux%u %s->%s", d->tokens, d->hidden,
                 vp_dtype_name(op.dtype), vp_dtype_name(op.dtype2));
        snprintf(variant, sizeof variant, "%s", op.dtype == VP_DTYPE_F32 ? "2 elem/inv" : "1 elem/inv");
        s = measure(ctx, o, out, rec_convert, &op, "convert", shape, variant, 6.0 * op.n);
    }
    pieces_free(&p);
    return s;
}

/* ---- norms and softmax ------------------------------------------------------------- */

static vp_status rec_ln_fwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_layernorm_forward(c, r, o->y, o->mean, o->rstd, o->x, o->w, o->w2, o->N, o->C,
                                    1e-5f, o->dtype, o->variant);
}
static vp_status rec_ln_bwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_layernorm_backward(c, r, o->dx, o->dw, o->dw2, o->scratch, o->dy, o->x, o->mean,
                                     o->rstd, o->w, o->N, o->C, o->dtype, o->variant);
}
static vp_status rec_rms_fwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_rmsnorm_forward(c, r, o->y, o->rstd, o->x, o->w, o->N, o->C, 1e-5f, o->dtype,
                                  o->variant);
}
static vp_status rec_rms_bwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_rmsnorm_backward(c, r, o->dx, o->dw, o->scratch, o->dy, o->x, o->rstd, o->w,
                                   o->N, o->C, o->dtype, o->variant);
}
static vp_status rec_softmax_fwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_softmax_forward(c, r, o->y, o->x, &o->mask, o->N, o->C, o->variant);
}
static vp_status rec_softmax_bwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_softmax_backward(c, r, o->dx, o->dy, o->y, o->N, o->C, o->variant);
}

static const enum kernel_rows_variant ROW_VARIANTS[] = {KERNEL_ROWS_WORKGROUP, KERNEL_ROWS_SERIAL};

static void variant_label(vp_context *ctx, enum kernel_rows_variant v, char *buf, size_t size) {
    snprintf(buf, size, "%s%s", kernel_rows_variant_name(v),
             kernel_rows_choose(ctx, KERNEL_ROWS_AUTO) == v ? " (auto)" : "");
}

static vp_status bench_norms(vp_context *ctx, const struct bench_kernel_opts *o,
                             struct bench_table *out, const struct dims *d) {
    struct pieces p = {.ctx = ctx};
    struct op op = {.n = (uint64_t)d->tokens * d->hidden, .N = d->tokens, .C = d->hidden,
                    .dtype = VP_DTYPE_F16};
    const vp_pool A = VP_POOL_ACTIVATIONS;
    vp_status s = piece(&p, A, op.n, FILL_F32, 0, &op.x);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_F32, 0, &op.dy);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.y);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.dx);
    if (s == VP_OK) s = piece(&p, A, op.N, FILL_NONE, 0, &op.mean);
    if (s == VP_OK) s = piece(&p, A, op.N, FILL_NONE, 0, &op.rstd);
    if (s == VP_OK) s = piece(&p, VP_POOL_FROZEN, op.C, FILL_F16, 0, &op.w);
    if (s == VP_OK) s = piece(&p, VP_POOL_FROZEN, op.C, FILL_F16, 0, &op.w2);
    if (s == VP_OK) s = piece(&p, VP_POOL_TRAINABLE, op.C, FILL_F32, 0, &op.dw);
    if (s == VP_OK) s = piece(&p, VP_POOL_TRAINABLE, op.C, FILL_F32, 0, &op.dw2);
    if (s == VP_OK)
        s = piece(&p, A, kernel_norm_scratch_bytes(op.N, op.C) / 4, FILL_NONE, 0, &op.scratch);
    char shape[64], variant[48];
    snprintf(shape, sizeof shape, "%ux%u w=f16", d->tokens, d->hidden);
    const double f = 4.0 * (double)op.n, stats = 8.0 * op.N;
    for (int v = 0; v < 2 && s == VP_OK; v++) {
        op.variant = ROW_VARIANTS[v];
        variant_label(ctx, op.variant, variant, sizeof variant);
        s = measure(ctx, o, out, rec_ln_fwd, &op, "layernorm_forward", shape, variant,
                    2 * f + stats);
        /* Including dγ and dβ (two extra passes over dy and x). */
        if (s == VP_OK)
            s = measure(ctx, o, out, rec_ln_bwd, &op, "layernorm_backward", shape, variant,
                        3 * f + stats);
        if (s == VP_OK)
            s = measure(ctx, o, out, rec_rms_fwd, &op, "rmsnorm_forward", shape, variant,
                        2 * f + stats / 2);
        if (s == VP_OK)
            s = measure(ctx, o, out, rec_rms_bwd, &op, "rmsnorm_backward", shape, variant,
                        3 * f + stats / 2);
    }
    pieces_free(&p);
    return s;
}

/* Attention-shaped softmax: (batch, heads, T, T) with T = tokens/batch and a
 * causal mask. */
static vp_status bench_softmax(vp_context *ctx, const struct bench_kernel_opts *o,
                               struct bench_table *out, const struct dims *d) {
    struct pieces p = {.ctx = ctx};
    uint32_t T = d->tokens / d->batch;
    struct op op = {.N = d->batch * d->heads * T, .C = T, .mask = {NULL, 1, T, 0}};
    op.n = (uint64_t)op.N * op.C;
    const vp_pool A = VP_POOL_ACTIVATIONS;
    vp_status s = piece(&p, A, op.n, FILL_F32, 0, &op.x);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_F32, 0, &op.dy);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.y);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.dx);
    char shape[64], variant[48];
    snprintf(shape, sizeof shape, "B=%u H=%u T=%u causal", d->batch, d->heads, T);
    const double f = 4.0 * (double)op.n;
    for (int v = 0; v < 2 && s == VP_OK; v++) {
        op.variant = ROW_VARIANTS[v];
        variant_label(ctx, op.variant, variant, sizeof variant);
        s = measure(ctx, o, out, rec_softmax_fwd, &op, "softmax_forward", shape, variant, 2 * f);
        if (s == VP_OK)
            s = measure(ctx, o, out, rec_softmax_bwd, &op, "softmax_backward", shape, variant,
                        3 * f);
    }
    pieces_free(&p);
    return s;
}

/* ---- embedding and RoPE ------------------------------------------------------------ */

static vp_status rec_gather(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_embedding_forward(c, r, o->y, o->ids, o->table, o->N, o->V, o->C, o->dtype,
                                    false);
}
static vp_status rec_scatter(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_embedding_backward(c, r, o->table, o->dy, o->groups, o->N, o->V, o->C);
}
static vp_status rec_rope_fwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_rope_forward(c, r, o->y, o->x, o->table, NULL, o->BH, o->T, o->D, o->P, 0);
}
static vp_status rec_rope_bwd(vp_context *c, struct vk_recorder *r, struct op *o) {
    return kernel_rope_backward(c, r, o->dx, o->dy, o->table, NULL, o->BH, o->T, o->D, o->P, 0);
}

static vp_status bench_embedding(vp_context *ctx, const struct bench_kernel_opts *o,
                                 struct bench_table *out, const struct dims *d) {
    struct op op = {.N = d->tokens, .V = d->vocab, .C = d->hidden};
    op.n = (uint64_t)op.N * op.C;
    const vp_pool A = VP_POOL_ACTIVATIONS;
    char shape[64];
    vp_status s = VP_OK;
    /* Gather from an f16 and an f32 table (the f32 GPT-2-sized table is
     * longer than lavapipe's 128 MiB binding range: two ranges). */
    static const enum vp_dtype types[] = {VP_DTYPE_F16, VP_DTYPE_F32};
    for (int t = 0; t < 2 && s == VP_OK; t++) {
        struct pieces p = {.ctx = ctx};
        op.dtype = types[t];
        s = piece(&p, A, op.N, FILL_IDS, op.V, &op.ids);
        if (s == VP_OK)
            s = piece(&p, VP_POOL_FROZEN, (uint64_t)op.V * op.C,
                      op.dtype == VP_DTYPE_F16 ? FILL_F16 : FILL_F32, 0, &op.table);
        if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.y);
        snprintf(shape, sizeof shape, "N=%u V=%u C=%u table=%s", op.N, op.V, op.C,
                 vp_dtype_name(op.dtype));
        double bytes = 4.0 * op.n + (double)op.n * vp_dtype_size(op.dtype) + 4.0 * op.N;
        if (s == VP_OK)
            s = measure(ctx, o, out, rec_gather, &op, "embedding_forward", shape,
                        "1 elem/inv", bytes);
        pieces_free(&p);
    }
    /* Scatter-add into an f32 table, grouped on the host. */
    struct pieces p = {.ctx = ctx};
    int32_t *ids = malloc(op.N * sizeof *ids);
    uint32_t *words = malloc(kernel_embedding_groups_words(op.N) * 4);
    if (!ids || !words) s = vp_fail(VP_ERROR_HOST_MEMORY, "bench: out of host memory");
    uint64_t st = 77;
    for (uint32_t i = 0; s == VP_OK && i < op.N; i++) ids[i] = (int32_t)(rng_next(&st) % op.V);
    if (s == VP_OK) s = kernel_embedding_groups_build(words, ids, op.N, op.V);
    if (s == VP_OK) s = piece(&p, VP_POOL_TRAINABLE, (uint64_t)op.V * op.C, FILL_F32, 0, &op.table);
    if (s == VP_OK) s = piece(&p, A, op.n, FILL_F32, 0, &op.dy);
    if (s == VP_OK) s = piece(&p, A, kernel_embedding_groups_words(op.N), FILL_NONE, 0, &op.groups);
    if (s == VP_OK)
        s = vk_buffer_write(ctx, op.groups, 0, words, kernel_embedding_groups_words(op.N) * 4);
    snprintf(shape, sizeof shape, "N=%u V=%u C=%u", op.N, op.V, op.C);
    /* dout read once; each touched table row read and written. */
    if (s == VP_OK)
        s = measure(ctx, o, out, rec_scatter, &op, "embedding_backward", shape,
                    "host-grouped", 4.0 * op.n + 8.0 * words[0] * op.C);
    pieces_free(&p);
    free(ids);
    free(words);
    /* RoPE on (tokens, heads, head dim) with a table of `tokens` positions. */
    if (s == VP_OK) {
        op.BH = d->heads, op.T = d->tokens, op.D = d->hidden / d->heads, op.P = d->tokens;
        op.n = (uint64_t)op.BH * op.T * op.D;
        float *table = malloc((uint64_t)op.P * op.D * 4);
        if (!table) s = vp_fail(VP_ERROR_HOST_MEMORY, "bench: out of host memory");
        if (s == VP_OK) kernel_rope_table(table, op.P, op.D, 10000.0);
        if (s == VP_OK) s = piece(&p, VP_POOL_FROZEN, (uint64_t)op.P * op.D, FILL_NONE, 0, &op.table);
        if (s == VP_OK) s = vk_buffer_write(ctx, op.table, 0, table, (uint64_t)op.P * op.D * 4);
        free(table);
        if (s == VP_OK) s = piece(&p, A, op.n, FILL_F32, 0, &op.x);
        if (s == VP_OK) s = piece(&p, A, op.n, FILL_F32, 0, &op.dy);
        if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.y);
        if (s == VP_OK) s = piece(&p, A, op.n, FILL_NONE, 0, &op.dx);
        snprintf(shape, sizeof shape, "H=%u T=%u D=%u", op.BH, op.T, op.D);
        const double f = 4.0 * (double)op.n;
        if (s == VP_OK)
            s = measure(ctx, o, out, rec_rope_fwd, &op, "rope_forward", shape, "cos/sin table",
                        2 * f);
        if (s == VP_OK)
            s = measure(ctx, o, out, rec_rope_bwd, &op, "rope_backward", shape, "cos/sin table",
                        2 * f);
        pieces_free(&p);
    }
    return s;
}

vp_status bench_pointwise(vp_context *ctx, const struct bench_kernel_opts *o,
                          struct bench_table *out) {
    const struct dims full = {4096, 768, 3072, 12, 50257, 8};
    const struct dims quick = {256, 128, 512, 4, 1000, 2};
    const struct dims *d = o->quick ? &quick : &full;
    vp_status s = bench_activations(ctx, o, out, d);
    if (s == VP_OK) s = bench_elementwise(ctx, o, out, d);
    if (s == VP_OK) s = bench_norms(ctx, o, out, d);
    if (s == VP_OK) s = bench_softmax(ctx, o, out, d);
    if (s == VP_OK) s = bench_embedding(ctx, o, out, d);
    return s;
}
