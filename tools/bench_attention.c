/* vkpeft bench kernels --only attention: fused attention forward and
 * backward (with and without a prefix), cross-entropy and the optimisers at
 * transformer shapes. Inputs are random; only time is measured (the tests
 * check the values). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pieces this family allocates, freed together. */
struct bench_buffers {
    vp_context *ctx;
    struct vk_buffer items[24];
    uint32_t count;
};

static vp_status buffers_alloc(struct bench_buffers *b, vp_pool pool, uint64_t bytes,
                               struct vk_buffer **out) {
    if (b->count == sizeof b->items / sizeof b->items[0])
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "bench: too many buffers");
    vp_status s = vk_buffer_alloc(b->ctx, pool, bytes ? bytes : 4, &b->items[b->count]);
    if (s != VP_OK) return s;
    *out = &b->items[b->count++];
    return VP_OK;
}

static void buffers_free(struct bench_buffers *b) {
    for (uint32_t i = 0; i < b->count; i++) vk_buffer_free(b->ctx, &b->items[i]);
    b->count = 0;
}

/* Fills a buffer with uniform values in [lo, hi), written in slices. */
static vp_status fill_random(vp_context *ctx, struct vk_buffer *buf, uint64_t n, float lo,
                             float hi, uint64_t seed) {
    enum { SLICE = 1 << 20 };
    float *tmp = malloc(SLICE * sizeof *tmp);
    if (!tmp) return vp_fail(VP_ERROR_HOST_MEMORY, "bench: out of host memory");
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
    vp_status s = VP_OK;
    for (uint64_t at = 0; at < n && s == VP_OK; at += SLICE) {
        uint64_t m = n - at < SLICE ? n - at : SLICE;
        for (uint64_t i = 0; i < m; i++) {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            tmp[i] = lo + (hi - lo) * (float)((st >> 40) * 0x1.0p-24);
        }
        s = vk_buffer_write(ctx, buf, at * 4, tmp, m * 4);
    }
    free(tmp);
    return s;
}

/* Records with `fn`, then times the recording. */
static vp_status time_recording(vp_context *ctx, const struct bench_kernel_opts *o,
                                vp_status (*fn)(vp_context *, struct vk_recorder *, void *),
                                void *arg, double *ms) {
    struct vk_recorder *rec;
    vp_status s = vk_recorder_create(ctx, 0, &rec);
    if (s != VP_OK) return s;
    s = vk_recorder_begin(rec);
    if (s == VP_OK) s = fn(ctx, rec, arg);
    if (s == VP_OK) s = vk_recorder_end(rec);
    if (s == VP_OK) s = bench_time(rec, o->repeat, ms);
    vk_recorder_destroy(rec);
    return s;
}

/* ---- attention ---------------------------------------------------------------- */

struct attention_bench {
    struct kernel_attention_config cfg;
    struct vk_buffer *q, *k, *v, *pk, *pv, *o, *lse, *dout, *dq, *dk, *dv, *dpk, *dpv, *scratch;
};

static vp_status record_attention_forward(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct attention_bench *a = arg;
    bool pre = a->cfg.L > 0;
    return kernel_attention_forward(ctx, rec, a->o, a->lse, a->q, a->k, a->v, pre ? a->pk : NULL,
                                    pre ? a->pv : NULL, NULL, &a->cfg);
}

static vp_status record_attention_backward(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct attention_bench *a = arg;
    bool pre = a->cfg.L > 0;
    return kernel_attention_backward(ctx, rec, a->dq, a->dk, a->dv, pre ? a->dpk : NULL,
                                     pre ? a->dpv : NULL, a->scratch, a->dout, a->o, a->lse, a->q,
                                     a->k, a->v, pre ? a->pk : NULL, pre ? a->pv : NULL, NULL,
                                     &a->cfg);
}

static vp_status bench_attention_shape(vp_context *ctx, const struct bench_kernel_opts *o,
                                       struct bench_table *out, uint32_t B, uint32_t H,
                                       uint32_t T, uint32_t L, uint32_t D) {
    struct attention_bench a = {.cfg = {.B = B, .H = H, .T = T, .S = T, .L = L, .D = D}};
    struct bench_buffers bufs = {.ctx = ctx};
    const uint64_t nq = (uint64_t)B * H * T * D, np = (uint64_t)H * (L ? L : 1) * D;
    struct {
        struct vk_buffer **slot;
        vp_pool pool;
        uint64_t n;
    } plan[] = {
        {&a.q, VP_POOL_ACTIVATIONS, nq},  {&a.k, VP_POOL_ACTIVATIONS, nq},
        {&a.v, VP_POOL_ACTIVATIONS, nq},  {&a.o, VP_POOL_ACTIVATIONS, nq},
        {&a.dout, VP_POOL_ACTIVATIONS, nq}, {&a.dq, VP_POOL_ACTIVATIONS, nq},
        {&a.dk, VP_POOL_ACTIVATIONS, nq}, {&a.dv, VP_POOL_ACTIVATIONS, nq},
        {&a.lse, VP_POOL_ACTIVATIONS, (uint64_t)B * H * T},
        {&a.pk, VP_POOL_TRAINABLE, np},   {&a.pv, VP_POOL_TRAINABLE, np},
        {&a.dpk, VP_POOL_TRAINABLE, np},  {&a.dpv, VP_POOL_TRAINABLE, np},
    };
    vp_status s = VP_OK;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0] && s == VP_OK; i++) {
        s = buffers_alloc(&bufs, plan[i].pool, plan[i].n * 4, plan[i].slot);
        if (s == VP_OK) s = fill_random(ctx, *plan[i].slot, plan[i].n, -1.0f, 1.0f, i + 1);
    }
    if (s == VP_OK)
        s = buffers_alloc(&bufs, VP_POOL_ACTIVATIONS, kernel_attention_scratch_bytes(ctx, &a.cfg),
                          &a.scratch);
    double fwd_ms = 0, bwd_ms = 0;
    if (s == VP_OK) s = time_recording(ctx, o, record_attention_forward, &a, &fwd_ms);
    if (s == VP_OK) s = time_recording(ctx, o, record_attention_backward, &a, &bwd_ms);
    if (s == VP_OK) {
        /* Nominal FLOPs: forward = 2 matmuls (QKᵀ, PV) = 4·B·H·T·(L+S)·D;
         * backward = 5 matmuls (2.5× forward), the usual convention, although
         * this backward recomputes QKᵀ and dO·Vᵀ in both of its passes. */
        double fwd_flops = 4.0 * B * H * T * (double)(L + T) * D;
        struct bench_row row = {.ms = fwd_ms, .gflops = fwd_flops / (fwd_ms * 1e6)};
        snprintf(row.op, sizeof row.op, "attention_forward");
        snprintf(row.shape, sizeof row.shape, "B=%u H=%u T=S=%u L=%u D=%u", B, H, T, L, D);
        snprintf(row.variant, sizeof row.variant, "%s",
                 kernel_attention_variant_name(kernel_attention_choose(ctx, &a.cfg)));
        bench_table_add(out, &row);
        snprintf(row.op, sizeof row.op, "attention_backward");
        row.ms = bwd_ms;
        row.gflops = 2.5 * fwd_flops / (bwd_ms * 1e6);
        bench_table_add(out, &row);
    }
    buffers_free(&bufs);
    return s;
}

static vp_status bench_attention_all(vp_context *ctx, const struct bench_kernel_opts *o,
                                     struct bench_table *out) {
    const uint32_t B = o->quick ? 2 : 8, H = o->quick ? 2 : 12, T = o->quick ? 64 : 512;
    vp_status s = bench_attention_shape(ctx, o, out, B, H, T, 0, 64);
    if (s == VP_OK) s = bench_attention_shape(ctx, o, out, B, H, T, o->quick ? 8 : 30, 64);
    return s;
}

/* ---- cross-entropy ------------------------------------------------------------ */

struct ce_bench {
    struct kernel_cross_entropy_config cfg;
    struct vk_buffer *logits, *targets, *lse, *loss, *scratch;
};

static vp_status record_ce_forward(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct ce_bench *c = arg;
    return kernel_cross_entropy_forward(ctx, rec, c->loss, c->lse, NULL, c->scratch, c->logits,
                                        c->targets, &c->cfg);
}

/* In place, as a trainer does: dlogits overwrite the logits. */
static vp_status record_ce_backward(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct ce_bench *c = arg;
    return kernel_cross_entropy_backward(ctx, rec, c->logits, c->logits, c->targets, c->lse,
                                         c->loss, 1.0f, &c->cfg);
}

static vp_status bench_cross_entropy(vp_context *ctx, const struct bench_kernel_opts *o,
                                     struct bench_table *out) {
    struct ce_bench c = {.cfg = {o->quick ? 64 : 4096, o->quick ? 1000 : 50265, -100, 0.1f}};
    struct bench_buffers bufs = {.ctx = ctx};
    const uint64_t elems = (uint64_t)c.cfg.N * c.cfg.V;
    struct bench_row row = {0};
    snprintf(row.shape, sizeof row.shape, "N=%u V=%u", c.cfg.N, c.cfg.V);
    vp_status s = buffers_alloc(&bufs, VP_POOL_ACTIVATIONS, elems * 4, &c.logits);
    if (s == VP_ERROR_OVER_BUDGET) {
        /* Say so in the table rather than fail the whole family. */
        snprintf(row.op, sizeof row.op, "cross_entropy");
        snprintf(row.variant, sizeof row.variant, "skipped: over budget");
        bench_table_add(out, &row);
        return VP_OK;
    }
    if (s == VP_OK) s = fill_random(ctx, c.logits, elems, -8.0f, 8.0f, 99);
    if (s == VP_OK) s = buffers_alloc(&bufs, VP_POOL_ACTIVATIONS, c.cfg.N * 4ull, &c.targets);
    if (s == VP_OK) {
        int32_t *y = malloc(c.cfg.N * sizeof *y);
        if (!y) s = vp_fail(VP_ERROR_HOST_MEMORY, "bench: out of host memory");
        for (uint32_t i = 0; y && i < c.cfg.N; i++) y[i] = (int32_t)((i * 7919u) % c.cfg.V);
        if (y) s = vk_buffer_write(ctx, c.targets, 0, y, c.cfg.N * 4ull);
        free(y);
    }
    if (s == VP_OK) s = buffers_alloc(&bufs, VP_POOL_ACTIVATIONS, c.cfg.N * 4ull, &c.lse);
    if (s == VP_OK) s = buffers_alloc(&bufs, VP_POOL_ACTIVATIONS, 8, &c.loss);
    if (s == VP_OK)
        s = buffers_alloc(&bufs, VP_POOL_ACTIVATIONS,
                          kernel_cross_entropy_scratch_bytes(ctx, &c.cfg), &c.scratch);
    double fwd = 0, bwd = 0;
    if (s == VP_OK) s = time_recording(ctx, o, record_ce_forward, &c, &fwd);
    /* The backward overwrites the logits: time it last. */
    if (s == VP_OK) s = time_recording(ctx, o, record_ce_backward, &c, &bwd);
    if (s == VP_OK) {
        snprintf(row.variant, sizeof row.variant, "chunks/row=%u",
                 (uint32_t)((kernel_cross_entropy_scratch_bytes(ctx, &c.cfg) - c.cfg.N * 4ull - 4) /
                            16 / c.cfg.N));
        snprintf(row.op, sizeof row.op, "cross_entropy_forward");
        row.ms = fwd;
        row.gbps = elems * 4.0 / (fwd * 1e6);
        bench_table_add(out, &row);
        snprintf(row.op, sizeof row.op, "cross_entropy_backward");
        row.ms = bwd;
        row.gbps = elems * 8.0 / (bwd * 1e6); /* read and write every logit */
        bench_table_add(out, &row);
    }
    buffers_free(&bufs);
    return s;
}

/* ---- optimisers ----------------------------------------------------------------- */

struct opt_bench {
    struct kernel_opt_tensor t;
    struct vk_buffer *hp, *sgd_hp, *clip, *scratch;
};

static vp_status record_adamw(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct opt_bench *b = arg;
    return kernel_adamw_step(ctx, rec, &b->t, 1, b->hp, NULL);
}

static vp_status record_sgd(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct opt_bench *b = arg;
    return kernel_sgd_step(ctx, rec, &b->t, 1, b->sgd_hp, NULL);
}

static vp_status record_norm(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct opt_bench *b = arg;
    return kernel_grad_norm(ctx, rec, b->clip, b->scratch, &b->t, 1, 1.0f);
}

/* The whole clipped step as one submission: norm, then AdamW reading the
 * gradients times the coefficient. */
static vp_status record_clipped_adamw(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct opt_bench *b = arg;
    vp_status s = kernel_grad_norm(ctx, rec, b->clip, b->scratch, &b->t, 1, 1.0f);
    return s == VP_OK ? kernel_adamw_step(ctx, rec, &b->t, 1, b->hp, b->clip) : s;
}

static vp_status bench_optimizer_size(vp_context *ctx, const struct bench_kernel_opts *o,
                                      struct bench_table *out, uint64_t n, bool all) {
    struct opt_bench b = {.t = {.n = n, .decay = true}};
    struct bench_buffers bufs = {.ctx = ctx};
    struct vk_buffer *p, *g, *m, *v;
    vp_status s = VP_OK;
    struct vk_buffer **roles[4] = {&p, &g, &m, &v};
    for (int r = 0; r < 4 && s == VP_OK; r++) {
        s = buffers_alloc(&bufs, VP_POOL_TRAINABLE, n * 4, roles[r]);
        if (s == VP_OK) s = fill_random(ctx, *roles[r], n, r == 3 ? 0.0f : -1.0f, 1.0f, 7 + r);
    }
    b.t.param = p;
    b.t.grad = g;
    b.t.m = m;
    b.t.v = v;
    if (s == VP_OK) s = buffers_alloc(&bufs, VP_POOL_TRAINABLE, 48, &b.hp);
    if (s == VP_OK) s = buffers_alloc(&bufs, VP_POOL_TRAINABLE, 16, &b.sgd_hp);
    if (s == VP_OK) s = buffers_alloc(&bufs, VP_POOL_TRAINABLE, 8, &b.clip);
    if (s == VP_OK)
        s = buffers_alloc(&bufs, VP_POOL_ACTIVATIONS, kernel_grad_norm_scratch_bytes(ctx, &b.t, 1),
                          &b.scratch);
    if (s == VP_OK) {
        struct kernel_adamw_hparams hp;
        kernel_adamw_hparams_set(&hp, 1e-4, 0.9, 0.999, 1e-8, 0.01, 10);
        s = vk_buffer_write(ctx, b.hp, 0, &hp, sizeof hp);
    }
    if (s == VP_OK) {
        struct kernel_sgd_hparams hp = {1e-3f, 0.9f, 0.0f, 10};
        s = vk_buffer_write(ctx, b.sgd_hp, 0, &hp, sizeof hp);
    }
    struct {
        const char *op;
        vp_status (*fn)(vp_context *, struct vk_recorder *, void *);
        double bytes_per_value; /* moved per parameter */
        bool always;
    } runs[] = {
        {"adamw_step", record_adamw, 28, true},          /* read p g m v, write p m v */
        {"sgd_momentum_step", record_sgd, 20, false},    /* read p g buf, write p buf */
        {"grad_norm", record_norm, 4, false},            /* read g */
        {"grad_norm+adamw_step", record_clipped_adamw, 32, false}, /* clip fused */
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0] && s == VP_OK; i++) {
        if (!runs[i].always && !all) continue;
        double ms = 0;
        s = time_recording(ctx, o, runs[i].fn, &b, &ms);
        if (s != VP_OK) break;
        struct bench_row row = {.ms = ms, .gbps = runs[i].bytes_per_value * n / (ms * 1e6)};
        snprintf(row.op, sizeof row.op, "%s", runs[i].op);
        snprintf(row.shape, sizeof row.shape, "n=%.3gM fp32", n / 1e6);
        snprintf(row.variant, sizeof row.variant, "1-D wg=%u", kernel_elementwise_workgroup(ctx));
        bench_table_add(out, &row);
    }
    buffers_free(&bufs);
    return s;
}

vp_status bench_attention(vp_context *ctx, const struct bench_kernel_opts *o,
                          struct bench_table *out) {
    vp_status s = bench_attention_all(ctx, o, out);
    if (s == VP_OK) s = bench_cross_entropy(ctx, o, out);
    if (s == VP_OK) s = bench_optimizer_size(ctx, o, out, o->quick ? 1u << 16 : 1000000, false);
    if (s == VP_OK) s = bench_optimizer_size(ctx, o, out, o->quick ? 1u << 20 : 10000000, true);
    return s;
}
