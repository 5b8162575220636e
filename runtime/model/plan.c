/* The encoder's memory plan: bytes per pool for a batch shape, from an
 * opened model (encoder_plan) or from config.json's arch and a spec without
 * weight files (encoder_plan_arch, what `vkpeft inspect` prints). Both walk
 * the same host-side encoder (enc_setup) and the same activation layout
 * (enc_acts_layout, the walk that also allocates), so the plan is one
 * computation whichever way it is asked for. The head is arch->head (the
 * encoder's option): the MLM head's activations, (B·T, V) logits and their
 * gradient, (B·T) labels and log-sum-exps, and the logits' staging copy,
 * come from the same walk. */
#include "encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vp_status check_shape(const struct encoder *e, int B, int T) {
    if (B < 1 || T < 1 || (uint64_t)B * (uint64_t)T * (uint64_t)e->arch.heads > INT32_MAX)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: batch shape %d x %d is not usable", B, T);
    int first = e->arch.roberta_positions ? e->arch.pad_token_id + 1 : 0;
    if (first + T > e->arch.max_positions)
        return vp_fail(VP_ERROR_BAD_INPUT, "encoder: %d tokens need positions up to %d, but %s has "
                       "%d position embeddings; use a shorter --max-length", T, first + T - 1,
                       e->arch.model_type, e->arch.max_positions);
    return VP_OK;
}

vp_status encoder_plan(const struct encoder *e, int B, int T, uint64_t bytes[VP_POOL_COUNT]) {
    vp_status s = check_shape(e, B, T);
    if (s != VP_OK) return s;
    struct enc_acts tmp = {0};
    /* Sizing only (alloc = false): the walk reads the encoder, writes tmp. */
    s = enc_acts_layout((struct encoder *)e, &tmp, B, T, false, bytes);
    free(tmp.layers);
    free(tmp.slots);
    free(tmp.reparam);
    if (s != VP_OK) return s;
    bytes[VP_POOL_FROZEN] += enc_frozen_bytes(e);
    bytes[VP_POOL_TRAINABLE] += delta_params_plan_bytes(e->params);
    return VP_OK;
}

vp_status encoder_plan_activations(const struct encoder *e, int B, int T, bool checkpoint, uint64_t *bytes) {
    /* The layout walk reads the option; the encoder is the caller's, restored before returning. */
    struct encoder *m = (struct encoder *)e;
    const bool own = m->opt.checkpoint_activations;
    uint64_t plan[VP_POOL_COUNT];
    m->opt.checkpoint_activations = checkpoint;
    vp_status s = encoder_plan(m, B, T, plan);
    m->opt.checkpoint_activations = own;
    *bytes = s == VP_OK ? plan[VP_POOL_ACTIVATIONS] : 0;
    return s;
}

static vp_status plan_arch(vp_context *ctx, const struct model_arch *arch, const struct delta_spec *spec,
                           enum encoder_storage storage, bool checkpoint, int B, int T, uint64_t bytes[VP_POOL_COUNT]) {
    memset(bytes, 0, VP_POOL_COUNT * sizeof *bytes);
    struct encoder *e = calloc(1, sizeof *e);
    if (!e) return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
    e->ctx = ctx;
    e->arch = *arch;
    e->arch.labels = NULL; /* not ours; label names are not needed */
    e->spec = *spec;
    e->opt.storage = storage;
    e->opt.checkpoint_activations = checkpoint;
    snprintf(e->dir, sizeof e->dir, "config.json (%s)", arch->model_type);
    vp_status s = enc_setup(e);
    if (s == VP_OK) s = encoder_plan(e, B, T, bytes);
    encoder_destroy(e);
    return s;
}

vp_status encoder_plan_arch(vp_context *ctx, const struct model_arch *arch, const struct delta_spec *spec,
                            enum encoder_storage storage, int B, int T, uint64_t bytes[VP_POOL_COUNT]) {
    return plan_arch(ctx, arch, spec, storage, false, B, T, bytes);
}

vp_status encoder_plan_arch_activations(vp_context *ctx, const struct model_arch *arch, const struct delta_spec *spec,
                                        enum encoder_storage storage, int B, int T, bool checkpoint,
                                        uint64_t *bytes) {
    uint64_t plan[VP_POOL_COUNT];
    vp_status s = plan_arch(ctx, arch, spec, storage, checkpoint, B, T, plan);
    *bytes = s == VP_OK ? plan[VP_POOL_ACTIVATIONS] : 0;
    return s;
}
