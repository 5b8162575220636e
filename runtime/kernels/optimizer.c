/* Optimisers (AdamW, SGD with momentum), the global gradient norm and
 * clipping (shaders/adamw.comp, sgd.comp, grad_norm_*.comp, clip_grads.comp).
 *
 * Every kernel walks a list of tensors. Consecutive tensors laid end to end
 * in the same buffers (and, for the steps, with the same decay flag) form one
 * run, processed by one dispatch per binding range, so a model whose
 * parameters, gradients and moments are each one block costs a few
 * dispatches per step. Hyperparameters live in a device buffer the host
 * rewrites between runs; the clip coefficient is produced and consumed on
 * the device. */
#include "kernels.h"

#include <math.h>

struct opt_push {
    uint32_t n, base_p, base_g, base_m, base_v, decay, use_clip, has_buf;
};
_Static_assert(sizeof(struct opt_push) == 32, "matches Push in shaders/adamw.comp and sgd.comp");

struct grad_norm_push {
    uint32_t n, base, slot, items;
};
_Static_assert(sizeof(struct grad_norm_push) == 16, "matches Push in grad_norm_partial.comp");

struct grad_norm_finalize_push {
    uint32_t count;
    float max_norm;
    uint32_t pad0, pad1;
};
_Static_assert(sizeof(struct grad_norm_finalize_push) == 16,
               "matches Push in grad_norm_finalize.comp");

struct clip_push {
    uint32_t n, base, pad0, pad1;
};
_Static_assert(sizeof(struct clip_push) == 16, "matches Push in clip_grads.comp");

_Static_assert(sizeof(struct kernel_adamw_hparams) == 48, "matches Hp in shaders/adamw.comp");
_Static_assert(sizeof(struct kernel_sgd_hparams) == 16, "matches Hp in shaders/sgd.comp");

/* Blocks of a workgroup's size each grad_norm_partial workgroup sums. */
enum { GRAD_NORM_ITEMS = 64 };

void kernel_adamw_hparams_set(struct kernel_adamw_hparams *hp, double lr, double beta1,
                              double beta2, double eps, double weight_decay, uint32_t step) {
    /* torch.optim.adamw._single_tensor_adamw computes these in Python
     * floats (double) and hands them to fp32 tensor ops. */
    const double t = step ? step : 1;
    *hp = (struct kernel_adamw_hparams){
        .lr = (float)lr,
        .beta1 = (float)beta1,
        .beta2 = (float)beta2,
        .eps = (float)eps,
        .weight_decay = (float)weight_decay,
        .decay_factor = (float)(1.0 - lr * weight_decay),
        .step_size = (float)(lr / (1.0 - pow(beta1, t))),
        .bias_correction2_sqrt = (float)sqrt(1.0 - pow(beta2, t)),
        .one_minus_beta1 = (float)(1.0 - beta1),
        .one_minus_beta2 = (float)(1.0 - beta2),
        .step = step,
    };
}

/* Which views of a tensor a kernel touches. */
enum run_kind { RUN_GRADS, RUN_SGD, RUN_ADAMW };

static bool follows(const struct vk_buffer *a, uint64_t n_a, const struct vk_buffer *b) {
    if (!a || !b) return a == b;
    return a->buffer == b->buffer && a->offset + n_a * 4 == b->offset;
}

/* One past the last tensor of the run that starts at `first`; *n is its
 * length in values. */
static uint32_t run_end(const struct kernel_opt_tensor *t, uint32_t count, uint32_t first,
                        enum run_kind kind, uint64_t *n) {
    uint64_t total = t[first].n;
    uint32_t i = first + 1;
    for (; i < count; i++) {
        /* The run so far (total values from the first tensor's views) ends
         * where tensor i starts, in every view the kernel touches. */
        const struct kernel_opt_tensor *a = &t[first], *b = &t[i];
        bool ok = follows(a->grad, total, b->grad);
        if (kind != RUN_GRADS)
            ok = ok && follows(a->param, total, b->param) && follows(a->m, total, b->m) &&
                 a->decay == b->decay;
        if (kind == RUN_ADAMW) ok = ok && follows(a->v, total, b->v);
        if (!ok) break;
        total += b->n;
    }
    *n = total;
    return i;
}

/* The view of a run: the first tensor's view stretched over n values. */
static struct vk_buffer run_view(const struct vk_buffer *first, uint64_t n) {
    struct vk_buffer v = *first;
    v.size = n * 4;
    v.host = NULL;
    return v;
}

/* Values one dispatch may bind (a span plus alignment slack), whole blocks
 * of `block` values when the range holds at least one. */
static uint64_t chunk_values(const vp_context *ctx, uint64_t block) {
    uint64_t f = (ctx->limits.storage_buffer_range - ctx->binding_alignment) / 4;
    return f >= block ? f / block * block : f;
}

static vp_status check_tensors(const struct kernel_opt_tensor *t, uint32_t count,
                               enum run_kind kind, const char *what) {
    for (uint32_t i = 0; i < count; i++) {
        const uint64_t bytes = t[i].n * 4;
        bool ok = t[i].grad && t[i].grad->size >= bytes;
        if (kind != RUN_GRADS) ok = ok && t[i].param && t[i].param->size >= bytes;
        if (kind == RUN_ADAMW) ok = ok && t[i].m && t[i].v && t[i].v->size >= bytes;
        if (kind != RUN_GRADS && t[i].m) ok = ok && t[i].m->size >= bytes;
        if (!ok)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                           "%s: tensor %u of %llu values lacks a view or has one too small", what,
                           i, (unsigned long long)t[i].n);
    }
    return VP_OK;
}

static vp_status pipeline(vp_context *ctx, const char *shader, uint32_t bindings, uint32_t push,
                          uint32_t wg, struct vk_pipeline **out) {
    struct vk_kernel_desc desc = {
        .shader = shader,
        .bindings = bindings,
        .push_size = push,
        .spec_count = 1,
        .spec = {wg},
    };
    return vk_pipeline_get(ctx, &desc, out);
}

static vp_status record_step(vp_context *ctx, struct vk_recorder *rec,
                             const struct kernel_opt_tensor *t, uint32_t count,
                             const struct vk_buffer *hparams, const struct vk_buffer *clip,
                             enum run_kind kind) {
    const bool adamw = kind == RUN_ADAMW;
    const char *what = adamw ? "adamw_step" : "sgd_step";
    vp_status s = check_tensors(t, count, kind, what);
    if (s != VP_OK) return s;
    const uint64_t hp_bytes = adamw ? sizeof(struct kernel_adamw_hparams)
                                    : sizeof(struct kernel_sgd_hparams);
    if (!hparams || hparams->size < hp_bytes || (clip && clip->size < 8))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: the hyperparameter buffer needs %llu bytes, the clip buffer 8", what,
                       (unsigned long long)hp_bytes);
    const uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_pipeline *pipe;
    s = pipeline(ctx, adamw ? "adamw.comp" : "sgd.comp", adamw ? 6 : 5, sizeof(struct opt_push),
                 wg, &pipe);
    const uint64_t chunk = chunk_values(ctx, wg);
    for (uint32_t i = 0; i < count && s == VP_OK;) {
        uint64_t n;
        const uint32_t next = run_end(t, count, i, kind, &n);
        const struct vk_buffer pv = run_view(t[i].param, n), gv = run_view(t[i].grad, n);
        const bool has_m = t[i].m != NULL;
        const struct vk_buffer mv = has_m ? run_view(t[i].m, n) : pv;
        const struct vk_buffer vv = adamw ? run_view(t[i].v, n) : pv;
        for (uint64_t e = 0; e < n && s == VP_OK; e += chunk) {
            const uint64_t len = n - e < chunk ? n - e : chunk;
            struct kernel_span sp, sg, sm, sv;
            kernel_span_init(ctx, &pv, e * 4, (e + len) * 4, &sp);
            kernel_span_init(ctx, &gv, e * 4, (e + len) * 4, &sg);
            kernel_span_init(ctx, &mv, e * 4, (e + len) * 4, &sm);
            kernel_span_init(ctx, &vv, e * 4, (e + len) * 4, &sv);
            struct opt_push push = {
                .n = (uint32_t)len, .base_p = sp.base, .base_g = sg.base, .base_m = sm.base,
                .base_v = sv.base, .decay = t[i].decay, .use_clip = clip != NULL,
                .has_buf = has_m,
            };
            /* Without a momentum buffer, binding 2 repeats the parameters
             * (never touched through it). */
            struct vk_bind b[6] = {
                {&sp.view, 0, sp.view.size, VK_ACCESS_READ_WRITE},
                {&sg.view, 0, sg.view.size, VK_ACCESS_READ},
                {&sm.view, 0, sm.view.size, VK_ACCESS_READ_WRITE},
            };
            uint32_t nb = 3;
            if (adamw) b[nb++] = (struct vk_bind){&sv.view, 0, sv.view.size, VK_ACCESS_READ_WRITE};
            b[nb++] = (struct vk_bind){hparams, 0, hp_bytes, VK_ACCESS_READ};
            b[nb++] = clip ? (struct vk_bind){clip, 0, 8, VK_ACCESS_READ}
                           : (struct vk_bind){hparams, 0, hp_bytes, VK_ACCESS_READ};
            uint32_t gx, gy;
            kernel_grid_1d(ctx, (len + wg - 1) / wg, &gx, &gy);
            s = vk_recorder_dispatch(rec, pipe, b, nb, &push, gx, gy, 1);
        }
        i = next;
    }
    return s;
}

vp_status kernel_adamw_step(vp_context *ctx, struct vk_recorder *rec,
                            const struct kernel_opt_tensor *tensors, uint32_t count,
                            const struct vk_buffer *hparams, const struct vk_buffer *clip) {
    return record_step(ctx, rec, tensors, count, hparams, clip, RUN_ADAMW);
}

vp_status kernel_sgd_step(vp_context *ctx, struct vk_recorder *rec,
                          const struct kernel_opt_tensor *tensors, uint32_t count,
                          const struct vk_buffer *hparams, const struct vk_buffer *clip) {
    return record_step(ctx, rec, tensors, count, hparams, clip, RUN_SGD);
}

/* ---- global gradient norm and clipping ---------------------------------------- */

static uint32_t reduce_workgroup(const vp_context *ctx) {
    uint32_t lim = kernel_elementwise_workgroup(ctx), wg = 1;
    while (wg * 2 <= lim) wg *= 2; /* the trees need a power of two */
    return wg;
}

/* Walks the grad runs in chunks; calls `fn` for each (if not NULL) and
 * returns the number of partial sums. */
typedef vp_status (*chunk_fn)(void *arg, const struct vk_buffer *view, uint64_t begin,
                              uint64_t len, uint32_t slot);

static vp_status walk_grad_chunks(const vp_context *ctx, const struct kernel_opt_tensor *t,
                                  uint32_t count, chunk_fn fn, void *arg, uint32_t *partials) {
    const uint64_t block = (uint64_t)reduce_workgroup(ctx) * GRAD_NORM_ITEMS;
    const uint64_t chunk = chunk_values(ctx, block);
    uint64_t slots = 0;
    vp_status s = VP_OK;
    for (uint32_t i = 0; i < count && s == VP_OK;) {
        uint64_t n;
        const uint32_t next = run_end(t, count, i, RUN_GRADS, &n);
        const struct vk_buffer gv = run_view(t[i].grad, n);
        for (uint64_t e = 0; e < n && s == VP_OK; e += chunk) {
            const uint64_t len = n - e < chunk ? n - e : chunk;
            if (fn) s = fn(arg, &gv, e, len, (uint32_t)slots);
            slots += (len + block - 1) / block;
        }
        i = next;
    }
    if (slots >= (1ull << 32)) return vp_fail(VP_ERROR_UNSUPPORTED, "grad_norm: too many values");
    *partials = (uint32_t)slots;
    return s;
}

uint64_t kernel_grad_norm_scratch_bytes(const vp_context *ctx,
                                        const struct kernel_opt_tensor *tensors, uint32_t count) {
    uint32_t partials = 0;
    walk_grad_chunks(ctx, tensors, count, NULL, NULL, &partials);
    return partials ? (uint64_t)partials * 4 : 4;
}

struct norm_walk {
    vp_context *ctx;
    struct vk_recorder *rec;
    struct vk_pipeline *pipe;
    const struct vk_buffer *scratch;
    uint64_t scratch_bytes;
    uint32_t wg;
};

static vp_status record_partial(void *arg, const struct vk_buffer *view, uint64_t begin,
                                uint64_t len, uint32_t slot) {
    struct norm_walk *w = arg;
    struct kernel_span sp;
    kernel_span_init(w->ctx, view, begin * 4, (begin + len) * 4, &sp);
    struct grad_norm_push push = {(uint32_t)len, sp.base, slot, GRAD_NORM_ITEMS};
    struct vk_bind b[2] = {
        {&sp.view, 0, sp.view.size, VK_ACCESS_READ},
        {w->scratch, 0, w->scratch_bytes, VK_ACCESS_WRITE},
    };
    const uint64_t block = (uint64_t)w->wg * GRAD_NORM_ITEMS;
    uint32_t gx, gy;
    kernel_grid_1d(w->ctx, (len + block - 1) / block, &gx, &gy);
    return vk_recorder_dispatch(w->rec, w->pipe, b, 2, &push, gx, gy, 1);
}

vp_status kernel_grad_norm(vp_context *ctx, struct vk_recorder *rec, const struct vk_buffer *out,
                           const struct vk_buffer *scratch,
                           const struct kernel_opt_tensor *tensors, uint32_t count,
                           float max_norm) {
    vp_status s = check_tensors(tensors, count, RUN_GRADS, "grad_norm");
    if (s != VP_OK) return s;
    const uint64_t need = kernel_grad_norm_scratch_bytes(ctx, tensors, count);
    if (!out || out->size < 8 || !scratch || scratch->size < need)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "grad_norm: out needs 8 bytes and the scratch %llu",
                       (unsigned long long)need);
    if (need > ctx->limits.storage_buffer_range)
        return vp_fail(VP_ERROR_UNSUPPORTED, "grad_norm: %llu bytes of partial sums exceed the "
                       "binding range", (unsigned long long)need);
    const uint32_t wg = reduce_workgroup(ctx);
    struct norm_walk w = {ctx, rec, NULL, scratch, need, wg};
    struct vk_pipeline *fin;
    s = pipeline(ctx, "grad_norm_partial.comp", 2, sizeof(struct grad_norm_push), wg, &w.pipe);
    if (s == VP_OK)
        s = pipeline(ctx, "grad_norm_finalize.comp", 2, sizeof(struct grad_norm_finalize_push),
                     wg, &fin);
    uint32_t partials = 0;
    if (s == VP_OK) s = walk_grad_chunks(ctx, tensors, count, record_partial, &w, &partials);
    if (s != VP_OK) return s;
    struct grad_norm_finalize_push push = {partials, max_norm, 0, 0};
    if (partials == 0) {
        /* No gradients: write a zero sum for the finalize pass to read. */
        s = vk_recorder_fill(rec, scratch, 0, 4, 0);
        push.count = 1;
        if (s != VP_OK) return s;
    }
    struct vk_bind b[2] = {
        {scratch, 0, push.count * 4ull, VK_ACCESS_READ},
        {out, 0, 8, VK_ACCESS_WRITE},
    };
    return vk_recorder_dispatch(rec, fin, b, 2, &push, 1, 1, 1);
}

vp_status kernel_clip_grads(vp_context *ctx, struct vk_recorder *rec,
                            const struct kernel_opt_tensor *tensors, uint32_t count,
                            const struct vk_buffer *clip) {
    vp_status s = check_tensors(tensors, count, RUN_GRADS, "clip_grads");
    if (s != VP_OK) return s;
    if (!clip || clip->size < 8)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "clip_grads: the clip buffer needs 8 bytes");
    const uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_pipeline *pipe;
    s = pipeline(ctx, "clip_grads.comp", 2, sizeof(struct clip_push), wg, &pipe);
    const uint64_t chunk = chunk_values(ctx, wg);
    for (uint32_t i = 0; i < count && s == VP_OK;) {
        uint64_t n;
        const uint32_t next = run_end(tensors, count, i, RUN_GRADS, &n);
        const struct vk_buffer gv = run_view(tensors[i].grad, n);
        for (uint64_t e = 0; e < n && s == VP_OK; e += chunk) {
            const uint64_t len = n - e < chunk ? n - e : chunk;
            struct kernel_span sp;
            kernel_span_init(ctx, &gv, e * 4, (e + len) * 4, &sp);
            struct clip_push push = {(uint32_t)len, sp.base, 0, 0};
            struct vk_bind b[2] = {
                {&sp.view, 0, sp.view.size, VK_ACCESS_READ_WRITE},
                {clip, 0, 8, VK_ACCESS_READ},
            };
            uint32_t gx, gy;
            kernel_grid_1d(ctx, (len + wg - 1) / wg, &gx, &gy);
            s = vk_recorder_dispatch(rec, pipe, b, 2, &push, gx, gy, 1);
        }
        i = next;
    }
    return s;
}
