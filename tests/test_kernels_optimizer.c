/* Optimiser kernels (runtime/kernels/optimizer.c) against ref_adamw_step,
 * ref_sgd_step, ref_grad_norm, ref_clip_coef and ref_clip_grad_norm: decay
 * flags, hyperparameters changed between replays of one recording, tensors
 * merged into one dispatch when laid end to end, views at unaligned offsets,
 * tensors split across binding ranges, clipping fused into the step or in
 * place, a whole step in one submission, and bit-reproducibility. */
#include "kerneltest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- host and device state for a list of tensors ----------------------------- */

enum { MAX_T = 4 };

struct opt_case {
    uint32_t count;
    uint64_t n[MAX_T];
    bool decay[MAX_T];
    bool packed;   /* views into one block per role (llm.c style) instead of pieces */
    bool momentum; /* SGD: tensors get a momentum buffer */
};

struct opt_state {
    const struct opt_case *c;
    double *p[MAX_T], *g[MAX_T], *m[MAX_T], *v[MAX_T]; /* reference, in double */
    /* Device: either one kt tensor per role per tensor, or one block per role
     * with views into it. */
    struct kt_tensor dp[MAX_T], dg[MAX_T], dm[MAX_T], dv[MAX_T];
    struct kt_tensor block[4];
    struct vk_buffer views[4][MAX_T];
    struct kernel_opt_tensor t[MAX_T];
};

static uint64_t total_n(const struct opt_case *c) {
    uint64_t n = 0;
    for (uint32_t i = 0; i < c->count; i++) n += c->n[i];
    return n;
}

static void host_init(struct opt_state *s, const struct opt_case *c, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->c = c;
    for (uint32_t i = 0; i < c->count; i++) {
        size_t n = c->n[i] ? c->n[i] : 1;
        s->p[i] = malloc(n * sizeof(double));
        s->g[i] = malloc(n * sizeof(double));
        s->m[i] = malloc(n * sizeof(double));
        s->v[i] = malloc(n * sizeof(double));
        kt_random(s->p[i], c->n[i], -1.0, 1.0, VP_DTYPE_F32, seed + 10 * i);
        kt_random(s->g[i], c->n[i], -0.5, 0.5, VP_DTYPE_F32, seed + 10 * i + 1);
        /* Moments start at 0 (PyTorch's state before step 1). */
        memset(s->m[i], 0, n * sizeof(double));
        memset(s->v[i], 0, n * sizeof(double));
    }
}

/* Uploads every role; `packed` puts tensor i of a role right after tensor
 * i-1 in one block (views at any 4-byte offset). */
static bool dev_init(vp_context *ctx, struct opt_state *s) {
    const struct opt_case *c = s->c;
    const vp_pool P = VP_POOL_TRAINABLE;
    double **roles[4] = {s->p, s->g, s->m, s->v};
    struct kt_tensor *pieces[4] = {s->dp, s->dg, s->dm, s->dv};
    if (!c->packed) {
        for (int r = 0; r < 4; r++)
            for (uint32_t i = 0; i < c->count; i++)
                if (!kt_upload(ctx, &pieces[r][i], P, VP_DTYPE_F32, roles[r][i], c->n[i]))
                    return false;
    } else {
        const uint64_t n = total_n(c);
        double *all = malloc((n ? n : 1) * sizeof *all);
        for (int r = 0; r < 4; r++) {
            uint64_t at = 0;
            for (uint32_t i = 0; i < c->count; i++) {
                memcpy(all + at, roles[r][i], c->n[i] * sizeof *all);
                s->views[r][i] = (struct vk_buffer){0};
                at += c->n[i];
            }
            if (!kt_upload(ctx, &s->block[r], P, VP_DTYPE_F32, all, n)) {
                free(all);
                return false;
            }
            at = 0;
            for (uint32_t i = 0; i < c->count; i++) {
                struct vk_buffer *v = &s->views[r][i];
                *v = s->block[r].buf;
                v->offset += at * 4;
                v->size = c->n[i] * 4;
                v->host = NULL;
                at += c->n[i];
            }
        }
        free(all);
    }
    for (uint32_t i = 0; i < c->count; i++) {
        const struct vk_buffer *b[4];
        for (int r = 0; r < 4; r++) b[r] = c->packed ? &s->views[r][i] : &pieces[r][i].buf;
        s->t[i] = (struct kernel_opt_tensor){b[0], b[1], b[2], b[3], c->n[i], c->decay[i]};
    }
    return true;
}

static void state_free(vp_context *ctx, struct opt_state *s) {
    for (uint32_t i = 0; i < MAX_T; i++) {
        free(s->p[i]);
        free(s->g[i]);
        free(s->m[i]);
        free(s->v[i]);
        struct kt_tensor *all[] = {&s->dp[i], &s->dg[i], &s->dm[i], &s->dv[i]};
        for (int r = 0; r < 4; r++)
            if (all[r]->buf.buffer) kt_free(ctx, all[r]);
    }
    for (int r = 0; r < 4; r++)
        if (s->block[r].buf.buffer) kt_free(ctx, &s->block[r]);
}

/* Downloads role r (0 p, 1 g, 2 m, 3 v) of every tensor and compares. */
static void check_role(vp_context *ctx, struct opt_state *s, int r, double atol, double rtol,
                       const char *what) {
    const struct opt_case *c = s->c;
    double **want = r == 0 ? s->p : r == 1 ? s->g : r == 2 ? s->m : s->v;
    if (c->packed) {
        const uint64_t n = total_n(c);
        double *got = malloc((n ? n : 1) * sizeof *got);
        if (kt_download(ctx, &s->block[r], got)) {
            uint64_t at = 0;
            for (uint32_t i = 0; i < c->count; i++) {
                KT_CHECK_CLOSE(got + at, want[i], c->n[i], atol, rtol, what);
                at += c->n[i];
            }
        }
        free(got);
        return;
    }
    struct kt_tensor *pieces = r == 0 ? s->dp : r == 1 ? s->dg : r == 2 ? s->dm : s->dv;
    for (uint32_t i = 0; i < c->count; i++) {
        double *got = malloc((c->n[i] ? c->n[i] : 1) * sizeof *got);
        if (kt_download(ctx, &pieces[i], got))
            KT_CHECK_CLOSE(got, want[i], c->n[i], atol, rtol, what);
        free(got);
    }
}

/* Tolerances. Each update is a handful of fp32 operations per element on
 * values of order 1 (the gradients are in [-0.5, 0.5], m̂/denom is at most a
 * few), so an element is off by a few ulp of its magnitude: rtol = 16·u,
 * and atol = 16·u·lr for the update of a parameter near 0. The hyperparameters
 * themselves are rounded to fp32, relative u each. */
#define STEP_RTOL (16 * KT_EPS_F32)
#define STEP_ATOL(lr) (16 * KT_EPS_F32 * (1.0 + (lr)))

/* ---- AdamW -------------------------------------------------------------------- */

struct adamw_args {
    struct opt_state *s;
    struct vk_buffer *hp, *clip, *scratch;
    float max_norm;
    int mode; /* 0: step only, 1: norm + fused clip + step, 2: norm + clip in place + step */
};

static vp_status record_adamw(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct adamw_args *a = arg;
    vp_status s = VP_OK;
    const uint32_t n = a->s->c->count;
    if (a->mode) s = kernel_grad_norm(ctx, rec, a->clip, a->scratch, a->s->t, n, a->max_norm);
    if (s == VP_OK && a->mode == 2) s = kernel_clip_grads(ctx, rec, a->s->t, n, a->clip);
    if (s == VP_OK)
        s = kernel_adamw_step(ctx, rec, a->s->t, n, a->hp, a->mode == 1 ? a->clip : NULL);
    return s;
}

static bool write_adamw_hparams(vp_context *ctx, struct vk_buffer *hp,
                                const struct ref_adamw_hparams *r, uint32_t step) {
    struct kernel_adamw_hparams k;
    kernel_adamw_hparams_set(&k, r->lr, r->beta1, r->beta2, r->eps, r->weight_decay, step);
    return CHECK(vk_buffer_write(ctx, hp, 0, &k, sizeof k) == VP_OK);
}

/* Runs `steps` replays of one recording (hyperparameters rewritten before
 * each) and compares p, m, v (and g when clipped in place) after every one. */
static void adamw_case(const vp_context_options *opts, const struct opt_case *c, int mode,
                       double max_norm, uint32_t steps, uint32_t *dispatches) {
    vp_context *ctx = vt_context(opts);
    if (!ctx) return;
    struct opt_state s;
    host_init(&s, c, 100 + mode);
    struct vk_buffer hp = {0}, clip = {0}, scratch = {0};
    struct vk_recorder *rec = NULL;
    if (dev_init(ctx, &s) &&
        CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, sizeof(struct kernel_adamw_hparams), &hp) ==
              VP_OK) &&
        CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, 8, &clip) == VP_OK) &&
        CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS,
                              kernel_grad_norm_scratch_bytes(ctx, s.t, c->count), &scratch) ==
              VP_OK) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct adamw_args a = {&s, &hp, &clip, &scratch, (float)max_norm, mode};
        bool recorded = false;
        for (uint32_t t = 1; t <= steps; t++) {
            /* A learning-rate schedule: every replay sees its own lr and step. */
            const struct ref_adamw_hparams r = {1e-3 * t, 0.9, 0.999, 1e-8, 0.01 * t};
            if (!write_adamw_hparams(ctx, &hp, &r, t)) break;
            if (!recorded) {
                if (!kt_run(ctx, rec, record_adamw, &a)) break;
                recorded = true;
                if (dispatches) *dispatches = vk_recorder_dispatch_count(rec);
            } else if (!CHECK(vk_recorder_run(rec) == VP_OK)) {
                break;
            }
            if (mode) {
                size_t sizes[MAX_T];
                for (uint32_t i = 0; i < c->count; i++) sizes[i] = c->n[i];
                /* The reference clips in double: the same coefficient, then
                 * the step on the clipped gradient. Mode 1 leaves the device
                 * gradients unclipped, so it clips a copy. */
                double *gc[MAX_T];
                for (uint32_t i = 0; i < c->count; i++) {
                    gc[i] = malloc((c->n[i] ? c->n[i] : 1) * sizeof(double));
                    memcpy(gc[i], s.g[i], c->n[i] * sizeof(double));
                }
                ref_clip_grad_norm(mode == 1 ? gc : s.g, sizes, (int)c->count, max_norm);
                for (uint32_t i = 0; i < c->count; i++)
                    ref_adamw_step(s.p[i], s.m[i], s.v[i], mode == 1 ? gc[i] : s.g[i], c->n[i],
                                   (int)t, &r, c->decay[i]);
                for (uint32_t i = 0; i < c->count; i++) free(gc[i]);
            } else {
                for (uint32_t i = 0; i < c->count; i++)
                    ref_adamw_step(s.p[i], s.m[i], s.v[i], s.g[i], c->n[i], (int)t, &r,
                                   c->decay[i]);
            }
            check_role(ctx, &s, 0, STEP_ATOL(r.lr), STEP_RTOL, "param");
            check_role(ctx, &s, 2, STEP_ATOL(0), STEP_RTOL, "m");
            check_role(ctx, &s, 3, STEP_ATOL(0), STEP_RTOL, "v");
            if (mode == 2) check_role(ctx, &s, 1, 1e-30, STEP_RTOL, "clipped grad");
            if (mode == 1) check_role(ctx, &s, 1, 1e-30, 0, "grad (must stay unclipped)");
        }
    }
    vk_recorder_destroy(rec);
    if (hp.buffer) vk_buffer_free(ctx, &hp);
    if (clip.buffer) vk_buffer_free(ctx, &clip);
    if (scratch.buffer) vk_buffer_free(ctx, &scratch);
    state_free(ctx, &s);
    vp_context_destroy(ctx);
}

static void adamw_separate_tensors(void) {
    const struct opt_case c = {3, {1, 1000, 4097}, {true, false, true}, false, false};
    uint32_t dispatches = 0;
    adamw_case(NULL, &c, 0, 0, 3, &dispatches);
    CHECKF(dispatches == 3, "%u dispatches for three separate pieces", dispatches);
}

/* Views laid end to end in one block per role: tensors 0 and 1 (decay) share
 * a dispatch, 2 (no decay) breaks the run, 3 (decay) starts another; their
 * offsets (3, 8, 15 floats) are not 16-byte aligned. */
static void adamw_packed_views(void) {
    const struct opt_case c = {4, {3, 5, 7, 1030}, {true, true, false, true}, true, false};
    uint32_t dispatches = 0;
    adamw_case(NULL, &c, 0, 0, 2, &dispatches);
    CHECKF(dispatches == 3, "%u dispatches, want 3 runs", dispatches);
}

/* A 1 KiB binding range: every tensor goes in spans of 252 values. */
static void adamw_across_binding_ranges(void) {
    vp_context_options o = {.binding_range = 1024};
    const struct opt_case c = {2, {5000, 777}, {true, false}, true, false};
    uint32_t dispatches = 0;
    adamw_case(&o, &c, 0, 0, 2, &dispatches);
    CHECKF(dispatches >= 5000 / 252 + 777 / 252, "%u dispatches", dispatches);
    adamw_case(&o, &c, 2, 1.0, 2, NULL);
}

/* Global norm and clipping on the device, in one submission with the step:
 * fused (gradients read times the coefficient) and in place (PyTorch's
 * clip_grad_norm_ then the step). max_norm 1 clips (the norm is ~ 20); 1e9
 * leaves the coefficient at 1. */
static void adamw_with_clipping(void) {
    const struct opt_case c = {3, {1, 70000, 333}, {false, true, true}, false, false};
    adamw_case(NULL, &c, 1, 1.0, 2, NULL);
    adamw_case(NULL, &c, 2, 1.0, 2, NULL);
    adamw_case(NULL, &c, 2, 1e9, 1, NULL);
}

/* A NaN or Inf gradient makes the global norm non-finite, and an optimiser
 * step given that norm changes nothing: parameters and moments (AdamW), or
 * parameters and the momentum buffer (SGD), keep every bit. */
static bool read_role(vp_context *ctx, const struct opt_state *s, int r, float *out) {
    const struct opt_case *c = s->c;
    const struct kt_tensor *pieces[4] = {s->dp, s->dg, s->dm, s->dv};
    for (uint32_t i = 0; i < c->count; i++) {
        if (!CHECK(vk_buffer_read(ctx, &pieces[r][i].buf, 0, out, c->n[i] * 4) == VP_OK)) return false;
        out += c->n[i];
    }
    return true;
}

static vp_status record_sgd_clipped(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct adamw_args *a = arg;
    vp_status s = kernel_grad_norm(ctx, rec, a->clip, a->scratch, a->s->t, a->s->c->count, a->max_norm);
    return s == VP_OK ? kernel_sgd_step(ctx, rec, a->s->t, a->s->c->count, a->hp, a->clip) : s;
}

static void steps_skip_on_nonfinite_norm(void) {
    static const struct opt_case c = {2, {1000, 333}, {true, false}, false, true};
    for (int sgd = 0; sgd < 2; sgd++) {
        vp_context *ctx = vt_context(NULL);
        if (!ctx) return;
        struct opt_state s;
        host_init(&s, &c, 700 + sgd);
        s.g[1][7] = sgd ? INFINITY : NAN;
        struct vk_buffer hp = {0}, clip = {0}, scratch = {0};
        struct vk_recorder *rec = NULL;
        float *before = calloc(4 * 1333, sizeof(float)), *after = calloc(4 * 1333, sizeof(float));
        if (dev_init(ctx, &s) && CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, 64, &hp) == VP_OK) &&
            CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, 8, &clip) == VP_OK) &&
            CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, kernel_grad_norm_scratch_bytes(ctx, s.t, 2),
                                  &scratch) == VP_OK) &&
            CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
            struct adamw_args a = {&s, &hp, &clip, &scratch, 1e9f, 1};
            bool ok = true;
            if (sgd) {
                struct kernel_sgd_hparams k = {0.1f, 0.9f, 1e-2f, 2};
                ok = CHECK(vk_buffer_write(ctx, &hp, 0, &k, sizeof k) == VP_OK);
            } else {
                const struct ref_adamw_hparams r = {1e-3, 0.9, 0.999, 1e-8, 0.01};
                ok = write_adamw_hparams(ctx, &hp, &r, 3);
            }
            for (int role = 0; ok && role < 4; role++) ok = read_role(ctx, &s, role, before + role * 1333);
            if (ok && kt_run(ctx, rec, sgd ? record_sgd_clipped : record_adamw, &a)) {
                float norm[2];
                CHECK(vk_buffer_read(ctx, &clip, 0, norm, sizeof norm) == VP_OK);
                CHECKF(!isfinite(norm[0]), "norm %g", norm[0]);
                for (int role = 0; role < 4; role++) read_role(ctx, &s, role, after + role * 1333);
                CHECKF(memcmp(before, after, 4 * 1333 * sizeof(float)) == 0,
                       "%s changed something after a non-finite norm", sgd ? "sgd" : "adamw");
            }
        }
        free(before);
        free(after);
        vk_recorder_destroy(rec);
        if (hp.buffer) vk_buffer_free(ctx, &hp);
        if (clip.buffer) vk_buffer_free(ctx, &clip);
        if (scratch.buffer) vk_buffer_free(ctx, &scratch);
        state_free(ctx, &s);
        vp_context_destroy(ctx);
    }
}

/* ---- SGD ---------------------------------------------------------------------- */

struct sgd_args {
    struct opt_state *s;
    struct vk_buffer *hp;
};

static vp_status record_sgd(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct sgd_args *a = arg;
    return kernel_sgd_step(ctx, rec, a->s->t, a->s->c->count, a->hp, NULL);
}

static void sgd_case(const struct opt_case *c, double momentum) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    struct opt_state s;
    host_init(&s, c, 300);
    struct vk_buffer hp = {0};
    struct vk_recorder *rec = NULL;
    if (dev_init(ctx, &s) && CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, 16, &hp) == VP_OK) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        if (!c->momentum)
            for (uint32_t i = 0; i < c->count; i++) s.t[i].m = NULL;
        struct sgd_args a = {&s, &hp};
        for (uint32_t t = 1; t <= 3; t++) {
            const struct ref_sgd_hparams r = {0.1 / t, momentum, 1e-2};
            struct kernel_sgd_hparams k = {(float)r.lr, (float)r.momentum,
                                           (float)r.weight_decay, t};
            if (!CHECK(vk_buffer_write(ctx, &hp, 0, &k, sizeof k) == VP_OK)) break;
            if (t == 1 ? !kt_run(ctx, rec, record_sgd, &a) : !CHECK(vk_recorder_run(rec) == VP_OK))
                break;
            for (uint32_t i = 0; i < c->count; i++)
                ref_sgd_step(s.p[i], c->momentum ? s.m[i] : NULL, s.g[i], c->n[i], (int)t, &r,
                             c->decay[i]);
            check_role(ctx, &s, 0, STEP_ATOL(r.lr), STEP_RTOL, "param");
            if (c->momentum) check_role(ctx, &s, 2, STEP_ATOL(0), STEP_RTOL, "momentum buffer");
        }
    }
    vk_recorder_destroy(rec);
    if (hp.buffer) vk_buffer_free(ctx, &hp);
    state_free(ctx, &s);
    vp_context_destroy(ctx);
}

static void sgd_momentum(void) {
    sgd_case(&(struct opt_case){3, {1, 999, 4096}, {true, false, true}, false, true}, 0.9);
    sgd_case(&(struct opt_case){2, {17, 31}, {true, true}, true, true}, 0.9);
}

/* No momentum buffer: plain SGD whatever the momentum says. */
static void sgd_plain(void) {
    sgd_case(&(struct opt_case){2, {10, 2049}, {true, false}, false, false}, 0.0);
}

/* ---- gradient norm ------------------------------------------------------------- */

struct norm_args {
    struct opt_state *s;
    struct vk_buffer *out, *scratch;
    float max_norm;
};

static vp_status record_norm(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct norm_args *a = arg;
    return kernel_grad_norm(ctx, rec, a->out, a->scratch, a->s->t, a->s->c->count, a->max_norm);
}

/* The norm sums squares (all positive, so the relative error bound holds):
 * GRAD_NORM_ITEMS = 64 values per invocation, a tree of log2(WG) <= 8
 * levels, the partials (<= 16 here) added by 128+ invocations then a tree
 * again: under 64 + 8 + 1 + 8 roundings of a running sum, so 96·u relative
 * (sqrt halves it). The coefficient adds a division and an addition. */
#define NORM_RTOL (96 * KT_EPS_F32)

static void norm_case(const vp_context_options *opts, const struct opt_case *c, double max_norm,
                      bool twice) {
    vp_context *ctx = vt_context(opts);
    if (!ctx) return;
    struct opt_state s;
    host_init(&s, c, 500);
    struct vk_buffer out = {0}, scratch = {0};
    struct vk_recorder *rec = NULL;
    if (dev_init(ctx, &s) && CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, 8, &out) == VP_OK) &&
        CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS,
                              kernel_grad_norm_scratch_bytes(ctx, s.t, c->count), &scratch) ==
              VP_OK) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct norm_args a = {&s, &out, &scratch, (float)max_norm};
        float got[2], again[2];
        if (kt_run(ctx, rec, record_norm, &a) &&
            CHECK(vk_buffer_read(ctx, &out, 0, got, 8) == VP_OK)) {
            size_t sizes[MAX_T];
            for (uint32_t i = 0; i < c->count; i++) sizes[i] = c->n[i];
            double norm = ref_grad_norm((const double *const *)s.g, sizes, (int)c->count);
            double coef = ref_clip_coef(norm, max_norm);
            double g0 = got[0], g1 = got[1];
            KT_CHECK_CLOSE(&g0, &norm, 1, 1e-30, NORM_RTOL, "norm");
            KT_CHECK_CLOSE(&g1, &coef, 1, 1e-30, NORM_RTOL + 4 * KT_EPS_F32, "clip coefficient");
            if (twice && CHECK(vk_recorder_run(rec) == VP_OK) &&
                CHECK(vk_buffer_read(ctx, &out, 0, again, 8) == VP_OK))
                CHECK(memcmp(got, again, sizeof got) == 0);
        }
    }
    vk_recorder_destroy(rec);
    if (out.buffer) vk_buffer_free(ctx, &out);
    if (scratch.buffer) vk_buffer_free(ctx, &scratch);
    state_free(ctx, &s);
    vp_context_destroy(ctx);
}

static void grad_norm(void) {
    norm_case(NULL, &(struct opt_case){4, {1, 3, 70001, 4096}, {0}, false, false}, 1.0, true);
    norm_case(NULL, &(struct opt_case){3, {5, 6, 7}, {0}, true, false}, 1e9, true);
    vp_context_options o = {.binding_range = 1024};
    norm_case(&o, &(struct opt_case){2, {3000, 11}, {0}, true, false}, 0.5, true);
}

/* No tensors: norm 0, coefficient min(1, max_norm / 1e-6) = 1. */
static void grad_norm_of_nothing(void) {
    norm_case(NULL, &(struct opt_case){0, {0}, {0}, false, false}, 1.0, false);
    norm_case(NULL, &(struct opt_case){1, {0}, {0}, false, false}, 1.0, false);
}

static void rejects_bad_arguments(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    struct vk_buffer small;
    struct vk_recorder *rec = NULL;
    if (CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, 64, &small) == VP_OK) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK) &&
        CHECK(vk_recorder_begin(rec) == VP_OK)) {
        struct kernel_opt_tensor t = {&small, &small, &small, &small, 100, true};
        CHECK(kernel_adamw_step(ctx, rec, &t, 1, &small, NULL) == VP_ERROR_INVALID_ARGUMENT);
        t.n = 4;
        t.v = NULL;
        CHECK(kernel_adamw_step(ctx, rec, &t, 1, &small, NULL) == VP_ERROR_INVALID_ARGUMENT);
        t.v = &small;
        struct vk_buffer tiny = small;
        tiny.size = 8; /* too short for the 48-byte hyperparameters */
        CHECK(kernel_adamw_step(ctx, rec, &t, 1, &tiny, NULL) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(kernel_grad_norm(ctx, rec, &small, &tiny, &t, 1, 1.0f) == VP_OK); /* 1 partial fits */
        CHECK(vk_recorder_end(rec) == VP_OK);
    }
    vk_recorder_destroy(rec);
    vk_buffer_free(ctx, &small);
    vp_context_destroy(ctx);
}

VT_MAIN(TH_CASE(adamw_separate_tensors), TH_CASE(adamw_packed_views),
        TH_CASE(adamw_across_binding_ranges), TH_CASE(adamw_with_clipping),
        TH_CASE(steps_skip_on_nonfinite_norm), TH_CASE(sgd_momentum),
        TH_CASE(sgd_plain), TH_CASE(grad_norm), TH_CASE(grad_norm_of_nothing),
        TH_CASE(rejects_bad_arguments))
