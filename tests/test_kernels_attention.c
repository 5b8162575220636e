/* Attention kernels (runtime/kernels/attention.c) against
 * ref_attention_forward/backward: padding and causal masks, prefix keys and
 * values, dropout, fully masked rows, odd shapes, both variants, heads split
 * across binding ranges, accumulation into the prefix gradients and
 * bit-reproducibility. */
#include "kerneltest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct shape {
    uint32_t B, H, T, S, L, D;
    bool causal;
    int mask;  /* 0: none, 1: random padding, 2: random + batch 0 fully masked */
    double p;  /* dropout */
};

/* Host copies of every tensor, in double. */
struct host {
    size_t nq, nk, np;
    double *q, *k, *v, *pk, *pv, *dout, *dpk0, *dpv0;
    uint8_t *keep;
    double *o, *dq, *dk, *dv, *dpk, *dpv; /* reference results */
};

/* Device tensors with guards. */
struct dev {
    struct kt_tensor q, k, v, pk, pv, dout, o, lse, dq, dk, dv, dpk, dpv, scratch;
    struct vk_buffer keep;
    bool has_keep;
};

static double *rand_tensor(size_t n, uint64_t seed) {
    double *x = malloc((n ? n : 1) * sizeof *x);
    kt_random(x, n, -1.0, 1.0, VP_DTYPE_F32, seed);
    return x;
}

static struct ref_attention_config ref_config(const struct shape *s) {
    return (struct ref_attention_config){
        .B = (int)s->B, .H = (int)s->H, .T = (int)s->T, .S = (int)s->S, .L = (int)s->L,
        .D = (int)s->D, .causal = s->causal, .scale = 0.0, .dropout_p = s->p,
        .dropout = {.seed = 0x1234567887654321ull, .step = 7, .stream = 3},
    };
}

static struct kernel_attention_config kernel_config(const struct shape *s,
                                                    enum kernel_attention_variant var) {
    struct ref_attention_config r = ref_config(s);
    return (struct kernel_attention_config){
        .B = s->B, .H = s->H, .T = s->T, .S = s->S, .L = s->L, .D = s->D,
        .causal = s->causal, .scale = 0.0f, .dropout_p = s->p,
        .dropout_seed = r.dropout.seed, .dropout_step = r.dropout.step,
        .dropout_stream = r.dropout.stream, .variant = var,
    };
}

static void host_init(struct host *h, const struct shape *s, uint64_t seed) {
    memset(h, 0, sizeof *h);
    size_t bh = (size_t)s->B * s->H;
    h->nq = bh * s->T * s->D;
    h->nk = bh * s->S * s->D;
    h->np = (size_t)s->H * s->L * s->D;
    h->q = rand_tensor(h->nq, seed + 1);
    h->k = rand_tensor(h->nk, seed + 2);
    h->v = rand_tensor(h->nk, seed + 3);
    h->pk = rand_tensor(h->np, seed + 4);
    h->pv = rand_tensor(h->np, seed + 5);
    h->dout = rand_tensor(h->nq, seed + 6);
    h->dpk0 = rand_tensor(h->np, seed + 7); /* the prefix gradients accumulate onto these */
    h->dpv0 = rand_tensor(h->np, seed + 8);
    if (s->mask) {
        size_t n = (size_t)s->B * s->S;
        h->keep = malloc(n ? n : 1);
        uint64_t st = seed + 9;
        for (size_t i = 0; i < n; i++) h->keep[i] = th_rand_u64(&st) % 4 != 0;
        if (s->mask == 2)
            for (uint32_t i = 0; i < s->S; i++) h->keep[i] = 0;
    }
    h->o = malloc((h->nq ? h->nq : 1) * sizeof(double));
    h->dq = malloc((h->nq ? h->nq : 1) * sizeof(double));
    h->dk = malloc((h->nk ? h->nk : 1) * sizeof(double));
    h->dv = malloc((h->nk ? h->nk : 1) * sizeof(double));
    h->dpk = malloc((h->np ? h->np : 1) * sizeof(double));
    h->dpv = malloc((h->np ? h->np : 1) * sizeof(double));
    memcpy(h->dpk, h->dpk0, h->np * sizeof(double));
    memcpy(h->dpv, h->dpv0, h->np * sizeof(double));
    struct ref_attention_config rc = ref_config(s);
    ref_attention_forward(h->o, NULL, h->q, h->k, h->v, h->pk, h->pv, h->keep, &rc);
    ref_attention_backward(h->dq, h->dk, h->dv, h->dpk, h->dpv, h->dout, h->q, h->k, h->v,
                           h->pk, h->pv, h->keep, &rc);
}

static void host_free(struct host *h) {
    double *all[] = {h->q, h->k, h->v, h->pk, h->pv, h->dout, h->dpk0, h->dpv0,
                     h->o, h->dq, h->dk, h->dv, h->dpk, h->dpv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    free(h->keep);
}

static bool dev_init(vp_context *ctx, struct dev *d, const struct host *h, const struct shape *s) {
    memset(d, 0, sizeof *d);
    const vp_pool A = VP_POOL_ACTIVATIONS;
    const enum vp_dtype F = VP_DTYPE_F32;
    struct kernel_attention_config kc = kernel_config(s, KERNEL_ATTENTION_AUTO);
    size_t rows = (size_t)s->B * s->H * s->T;
    bool ok = kt_upload(ctx, &d->q, A, F, h->q, h->nq) &&
              kt_upload(ctx, &d->k, A, F, h->k, h->nk) &&
              kt_upload(ctx, &d->v, A, F, h->v, h->nk) &&
              kt_upload(ctx, &d->pk, VP_POOL_TRAINABLE, F, h->pk, h->np) &&
              kt_upload(ctx, &d->pv, VP_POOL_TRAINABLE, F, h->pv, h->np) &&
              kt_upload(ctx, &d->dout, A, F, h->dout, h->nq) &&
              kt_upload(ctx, &d->dpk, VP_POOL_TRAINABLE, F, h->dpk0, h->np) &&
              kt_upload(ctx, &d->dpv, VP_POOL_TRAINABLE, F, h->dpv0, h->np) &&
              /* Outputs start as NaN so anything left unwritten shows. */
              kt_alloc(ctx, &d->o, A, F, h->nq, NAN) && kt_alloc(ctx, &d->lse, A, F, rows, NAN) &&
              kt_alloc(ctx, &d->dq, A, F, h->nq, NAN) && kt_alloc(ctx, &d->dk, A, F, h->nk, NAN) &&
              kt_alloc(ctx, &d->dv, A, F, h->nk, NAN) &&
              kt_alloc(ctx, &d->scratch, A, F, kernel_attention_scratch_bytes(ctx, &kc) / 4, NAN);
    if (ok && h->keep) {
        size_t n = (size_t)s->B * s->S, padded = (n + 3) / 4 * 4;
        uint8_t *bytes = calloc(padded ? padded : 4, 1);
        memcpy(bytes, h->keep, n);
        ok = CHECK(vk_buffer_alloc(ctx, A, padded ? padded : 4, &d->keep) == VP_OK) &&
             CHECK(vk_buffer_write(ctx, &d->keep, 0, bytes, padded ? padded : 4) == VP_OK);
        d->has_keep = ok;
        free(bytes);
    }
    return ok;
}

static void dev_free(vp_context *ctx, struct dev *d) {
    struct kt_tensor *all[] = {&d->q, &d->k, &d->v, &d->pk, &d->pv, &d->dout, &d->o,
                               &d->lse, &d->dq, &d->dk, &d->dv, &d->dpk, &d->dpv, &d->scratch};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->buf.buffer) kt_free(ctx, all[i]);
    if (d->has_keep) vk_buffer_free(ctx, &d->keep);
}

struct record_args {
    struct dev *d;
    struct kernel_attention_config cfg;
};

static vp_status record_both(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct record_args *a = arg;
    struct dev *d = a->d;
    const struct vk_buffer *keep = d->has_keep ? &d->keep : NULL;
    const struct vk_buffer *pk = a->cfg.L ? &d->pk.buf : NULL, *pv = a->cfg.L ? &d->pv.buf : NULL;
    vp_status s = kernel_attention_forward(ctx, rec, &d->o.buf, &d->lse.buf, &d->q.buf, &d->k.buf,
                                           &d->v.buf, pk, pv, keep, &a->cfg);
    if (s != VP_OK) return s;
    return kernel_attention_backward(ctx, rec, &d->dq.buf, &d->dk.buf, &d->dv.buf,
                                     a->cfg.L ? &d->dpk.buf : NULL, a->cfg.L ? &d->dpv.buf : NULL,
                                     &d->scratch.buf, &d->dout.buf, &d->o.buf, &d->lse.buf,
                                     &d->q.buf, &d->k.buf, &d->v.buf, pk, pv, keep, &a->cfg);
}

/* Tolerances. Every result is a chain of fp32 sums: a score is a D-term dot
 * product of values in [-1, 1] times 1/sqrt(D) (error ~ D·u·|s|max with
 * |s| <= sqrt(D)), a softmax or output sums J = L+S terms, and dk, dv sum T
 * rows. Each fp32 sum of n terms errs by at most n·u·Σ|terms|, and with these
 * inputs Σ|terms| stays within a few times the largest result, so the bound
 * is 8·u·(D·sqrt(D) + J + T)·(largest |result|, at least 1), scaled by the
 * dropout multiplier 1/(1-p). A real indexing or masking bug is off by the
 * size of a term, orders of magnitude above this. */
static double tolerance(const struct shape *s, const double *want, size_t n) {
    double mx = 1.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(want[i]) > mx) mx = fabs(want[i]);
    double mult = s->p > 0 && s->p < 1 ? 1.0 / (1.0 - s->p) : 1.0;
    return 8.0 * KT_EPS_F32 * (s->D * sqrt((double)s->D) + s->L + s->S + s->T) * mx * mult;
}

static bool check_tensor(vp_context *ctx, const struct kt_tensor *t, const double *want,
                         const struct shape *s, const char *what) {
    double *got = malloc((t->n ? t->n : 1) * sizeof *got);
    bool ok = kt_download(ctx, t, got);
    if (ok) {
        double tol = tolerance(s, want, t->n);
        ok = KT_CHECK_CLOSE(got, want, t->n, tol, 0.0, what);
    }
    free(got);
    return ok;
}

/* Runs forward and backward on `s` with `var` in one recording and checks
 * every output and guard. Returns the number of dispatches recorded. */
static uint32_t run_shape(const vp_context_options *opts, const struct shape *s,
                      enum kernel_attention_variant var, uint64_t seed) {
    vp_context *ctx = vt_context(opts);
    if (!ctx) return 0;
    uint32_t dispatches = 0;
    struct host h;
    host_init(&h, s, seed);
    struct dev d;
    struct vk_recorder *rec = NULL;
    if (dev_init(ctx, &d, &h, s) && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct record_args a = {&d, kernel_config(s, var)};
        if (kt_run(ctx, rec, record_both, &a)) {
            dispatches = vk_recorder_dispatch_count(rec);
            th_diag("B=%u H=%u T=%u S=%u L=%u D=%u causal=%d mask=%d p=%g variant=%s", s->B, s->H,
                    s->T, s->S, s->L, s->D, s->causal, s->mask, s->p,
                    kernel_attention_variant_name(kernel_attention_choose(ctx, &a.cfg)));
            check_tensor(ctx, &d.o, h.o, s, "o");
            check_tensor(ctx, &d.dq, h.dq, s, "dq");
            check_tensor(ctx, &d.dk, h.dk, s, "dk");
            check_tensor(ctx, &d.dv, h.dv, s, "dv");
            check_tensor(ctx, &d.dpk, h.dpk, s, "dprefix_k");
            check_tensor(ctx, &d.dpv, h.dpv, s, "dprefix_v");
            double *lse = malloc(d.lse.n * sizeof *lse);
            CHECK(kt_download(ctx, &d.lse, lse));
            free(lse);
        }
    }
    vk_recorder_destroy(rec);
    dev_free(ctx, &d);
    host_free(&h);
    vp_context_destroy(ctx);
    return dispatches;
}

static void run_both_variants(const struct shape *s, uint64_t seed) {
    run_shape(NULL, s, KERNEL_ATTENTION_TEXEL, seed);
    run_shape(NULL, s, KERNEL_ATTENTION_TILED, seed);
}

static void plain_d16(void) {
    run_both_variants(&(struct shape){2, 3, 5, 7, 0, 16, false, 0, 0.0}, 10);
}

static void causal_padding_prefix_d8(void) {
    run_both_variants(&(struct shape){2, 2, 6, 9, 3, 8, true, 1, 0.0}, 20);
}

static void causal_padding_prefix_d64(void) {
    run_both_variants(&(struct shape){2, 2, 11, 13, 5, 64, true, 1, 0.0}, 30);
}

/* One query (decoding) against an odd number of keys and a prefix. */
static void single_query(void) {
    run_both_variants(&(struct shape){3, 2, 1, 17, 2, 16, true, 1, 0.0}, 40);
}

/* D not a multiple of 4 takes the scalar path; 20 and 36 the vec4 one with
 * rows that do not split evenly over the lanes of a subgroup (5 and 9
 * vectors) in the texel variant. */
static void odd_head_dims(void) {
    run_both_variants(&(struct shape){1, 3, 7, 5, 1, 5, false, 1, 0.0}, 50);
    run_both_variants(&(struct shape){2, 1, 3, 4, 2, 20, true, 0, 0.0}, 51);
    run_both_variants(&(struct shape){1, 2, 5, 6, 3, 36, false, 1, 0.0}, 52);
}

/* More queries than keys with a causal mask and no prefix leaves the first
 * T-S rows with nothing visible, and batch 0 is all padding: those rows
 * must give exactly zero output and no gradient. */
static void fully_masked_rows(void) {
    run_both_variants(&(struct shape){2, 2, 7, 3, 0, 8, true, 2, 0.0}, 60);
    /* With a prefix every row sees something again. */
    run_both_variants(&(struct shape){2, 2, 7, 3, 2, 8, true, 2, 0.0}, 61);
}

/* Rows longer than one workgroup or tile (T, S > 64), so the loops over
 * blocks and the causal workgroup bounds are exercised. */
static void long_rows(void) {
    run_both_variants(&(struct shape){1, 2, 67, 71, 4, 16, true, 1, 0.0}, 70);
}

static void dropout(void) {
    run_both_variants(&(struct shape){2, 2, 9, 11, 3, 16, true, 1, 0.25}, 80);
    run_both_variants(&(struct shape){1, 2, 4, 6, 0, 8, false, 0, 0.5}, 81);
}

/* p = 1 drops everything: o = 0, and only the softmax's own term remains. */
static void dropout_everything(void) {
    run_both_variants(&(struct shape){1, 2, 3, 5, 2, 8, false, 0, 1.0}, 90);
}

/* A 1 KiB binding range holds two heads of q (8×16 floats): the six heads
 * go in three dispatches per pass (forward, dq, dkv), plus the prefix sum. */
static void heads_split_across_binding_ranges(void) {
    vp_context_options o = {.binding_range = 1024};
    const struct shape s = {3, 2, 8, 8, 1, 16, true, 1, 0.1};
    CHECK(run_shape(&o, &s, KERNEL_ATTENTION_TEXEL, 100) == 3 * 3 + 1);
    CHECK(run_shape(&o, &s, KERNEL_ATTENTION_TILED, 100) == 3 * 3 + 1);
}

/* Writes n doubles as fp32 into the start of a tensor (its guard untouched). */
static bool reset_tensor(vp_context *ctx, const struct kt_tensor *t, const double *x, size_t n) {
    float *f = malloc((n ? n : 1) * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
    bool ok = n == 0 || CHECK(vk_buffer_write(ctx, &t->buf, 0, f, n * sizeof *f) == VP_OK);
    free(f);
    return ok;
}

/* The same recording run twice gives bit-identical outputs. */
static void deterministic(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    const struct shape s = {2, 3, 13, 15, 4, 16, true, 1, 0.2};
    struct host h;
    host_init(&h, &s, 110);
    struct dev d;
    struct vk_recorder *rec = NULL;
    enum { OUTS = 6 };
    double *first[OUTS] = {0};
    const struct kt_tensor *outs[OUTS] = {&d.o, &d.dq, &d.dk, &d.dv, &d.dpk, &d.dpv};
    if (dev_init(ctx, &d, &h, &s) && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct record_args a = {&d, kernel_config(&s, KERNEL_ATTENTION_AUTO)};
        for (int run = 0; run < 2; run++) {
            /* The prefix gradients accumulate: both runs start from dpk0, dpv0. */
            if (!reset_tensor(ctx, &d.dpk, h.dpk0, h.np) ||
                !reset_tensor(ctx, &d.dpv, h.dpv0, h.np))
                break;
            if (!kt_run(ctx, rec, record_both, &a)) break;
            for (int i = 0; i < OUTS; i++) {
                size_t n = outs[i]->n;
                double *got = malloc(n * sizeof *got);
                CHECK(kt_download(ctx, outs[i], got));
                if (run == 0) {
                    first[i] = got;
                    continue;
                }
                CHECKF(memcmp(got, first[i], n * sizeof *got) == 0,
                       "output %d differs between two runs", i);
                free(got);
            }
        }
        if (first[0]) check_tensor(ctx, &d.o, h.o, &s, "o");
    }
    for (int i = 0; i < OUTS; i++) free(first[i]);
    vk_recorder_destroy(rec);
    dev_free(ctx, &d);
    host_free(&h);
    vp_context_destroy(ctx);
}

/* Bad arguments fail with a message instead of recording garbage. */
static void rejects_bad_arguments(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    struct vk_buffer small;
    struct vk_recorder *rec = NULL;
    if (CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, 64, &small) == VP_OK) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK) &&
        CHECK(vk_recorder_begin(rec) == VP_OK)) {
        struct kernel_attention_config c = {.B = 1, .H = 1, .T = 4, .S = 4, .D = 8};
        CHECK(kernel_attention_forward(ctx, rec, &small, &small, &small, &small, &small, NULL,
                                       NULL, NULL, &c) == VP_ERROR_INVALID_ARGUMENT);
        c.D = 300;
        CHECK(kernel_attention_forward(ctx, rec, &small, &small, &small, &small, &small, NULL,
                                       NULL, NULL, &c) == VP_ERROR_UNSUPPORTED);
        c = (struct kernel_attention_config){.B = 1, .H = 1, .T = 1, .S = 1, .D = 4,
                                             .dropout_p = 1.5};
        CHECK(kernel_attention_forward(ctx, rec, &small, &small, &small, &small, &small, NULL,
                                       NULL, NULL, &c) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(vk_recorder_end(rec) == VP_OK);
    }
    vk_recorder_destroy(rec);
    vk_buffer_free(ctx, &small);
    vp_context_destroy(ctx);
}

VT_MAIN(TH_CASE(plain_d16), TH_CASE(causal_padding_prefix_d8), TH_CASE(causal_padding_prefix_d64),
        TH_CASE(single_query), TH_CASE(odd_head_dims), TH_CASE(fully_masked_rows),
        TH_CASE(long_rows), TH_CASE(dropout), TH_CASE(dropout_everything),
        TH_CASE(heads_split_across_binding_ranges), TH_CASE(deterministic),
        TH_CASE(rejects_bad_arguments))
