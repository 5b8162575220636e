/* The trainer: options, the optimiser state, the recorded training step,
 * evaluation and the training loop. Data batching is in batcher.c, the
 * output files in checkpoint.c. */
#include "trainer.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Staging layout of the trainer's piece: the hyperparameters the host
 * writes, then the (norm, clip coefficient) pair a step copies back. */
enum { STAGE_HP = 0, STAGE_NORM = 64, STAGE_BYTES = 128, HP_BYTES = 48 };
_Static_assert(sizeof(struct kernel_adamw_hparams) <= HP_BYTES, "hyperparameters fit");
_Static_assert(sizeof(struct kernel_sgd_hparams) <= HP_BYTES, "hyperparameters fit");

/* One recording of a micro-batch: [zero] whether it zeroes the gradients
 * first, [update] whether the optimiser step follows. */
struct step_recording {
    struct vk_recorder *rec;
    bool valid;
    uint64_t gen;      /* the shape generation it was recorded for */
    uint32_t dropout_step;
    float scale;       /* 1/micro-batches, recorded into the update */
};

struct trainer {
    vp_context *ctx;
    struct encoder *e;       /* NULL when a trainer_model other than the encoder trains */
    struct trainer_model model;
    struct trainer_options o;
    bool dropout;            /* the encoder runs dropout (recordings depend on the step) */
    int max_len;
    struct kernel_opt_tensor *opt;
    uint32_t opt_count;
    /* Optimiser buffers (owned): trainable pool, then staging. */
    struct vk_buffer hp, clip, scratch, stage;
    bool loaded;
    uint64_t extra[VP_POOL_COUNT];
    struct step_recording rec[2][2];
    uint64_t gen;            /* bumped whenever the encoder's activations are reallocated */
    uint64_t steps;          /* optimiser steps done */
    uint64_t micro;          /* micro-batches run */
    int micro_in_step;
    double loss_sum;
    struct delta_counts counts;
};

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

void trainer_options_default(struct trainer_options *o) {
    *o = (struct trainer_options){
        .optimizer = TRAINER_ADAMW,
        .lr = 1e-4,
        .weight_decay = 0.01,
        .beta1 = 0.9,
        .beta2 = 0.999,
        .eps = 1e-8,
        .momentum = 0.0,
        .schedule = SCHEDULE_LINEAR,
        .clip = 1.0,
        .batch = 16,
        .accum = 1,
        .epochs = 3,
        .seed = 42,
        .dropout = -1.0,
        .mask_prob = 0.15,
    };
}

vp_status trainer_options_check(const struct trainer_options *o) {
#define BAD(...) return vp_fail(VP_ERROR_INVALID_ARGUMENT, __VA_ARGS__)
    if (!(o->lr >= 0 && o->lr < 1e3)) BAD("--lr %g must be a learning rate in [0, 1000)", o->lr);
    if (!(o->weight_decay >= 0 && o->weight_decay < 1e3))
        BAD("--weight-decay %g must be >= 0", o->weight_decay);
    if (!(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1))
        BAD("--betas %g,%g must each be in [0, 1)", o->beta1, o->beta2);
    if (!(o->eps > 0 && o->eps < 1)) BAD("--eps %g must be in (0, 1)", o->eps);
    if (!(o->momentum >= 0 && o->momentum < 1)) BAD("--momentum %g must be in [0, 1)", o->momentum);
    if (!(o->warmup_ratio >= 0 && o->warmup_ratio <= 1))
        BAD("--warmup %g%% must be a share of the steps between 0%% and 100%%", o->warmup_ratio * 100);
    if (!(o->clip >= 0 && isfinite(o->clip))) BAD("--clip %g must be >= 0 (0: no clipping)", o->clip);
    if (o->batch < 1 || o->batch > 65536) BAD("--batch %d must be in 1..65536", o->batch);
    if (o->accum < 1 || o->accum > 65536) BAD("--accum %d must be in 1..65536", o->accum);
    if (o->steps == 0 && (o->epochs < 1 || o->epochs > 100000))
        BAD("--epochs %d must be in 1..100000 (or give --steps)", o->epochs);
    if (o->max_len < 0) BAD("--max-len %d must be positive", o->max_len);
    if (o->pad_multiple < 0 || o->pad_multiple > 4096) BAD("pad multiple %d must be in 0..4096", o->pad_multiple);
    if (!(o->dropout < 1)) BAD("--dropout %g must be below 1", o->dropout);
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
        BAD("--label-smoothing %g must be in [0, 1]", o->label_smoothing);
    if (!(o->mask_prob > 0 && o->mask_prob <= 1)) BAD("--mask-prob %g must be in (0, 1]", o->mask_prob);
    if ((unsigned)o->head > MODEL_HEAD_MLM) BAD("unknown head %d", (int)o->head);
    if (o->optimizer != TRAINER_ADAMW && o->optimizer != TRAINER_SGD) BAD("unknown --optimizer");
#undef BAD
    return VP_OK;
}

uint64_t trainer_total_steps(const struct trainer_options *o, uint64_t n) {
    if (o->steps) return o->steps;
    const uint64_t micro = (n + (uint64_t)o->batch - 1) / (uint64_t)o->batch;
    const uint64_t total = (uint64_t)o->epochs * micro;
    const uint64_t steps = (total + (uint64_t)o->accum - 1) / (uint64_t)o->accum;
    return steps ? steps : 1;
}

/* ------------------------------------------------------------------------
 * Open, load, destroy
 * ------------------------------------------------------------------------ */

static vp_status set_shape(struct trainer *t, int B, int T);

/* The encoder as the trainer's model. */
static vp_status enc_record_zero_grads(void *m, struct vk_recorder *rec) { return encoder_record_zero_grads(m, rec); }
static vp_status enc_record_train(void *m, struct vk_recorder *rec) { return encoder_record(m, rec, ENCODER_PASS_TRAIN); }
static struct delta_params *enc_params(void *m) { return encoder_params(m); }
static void enc_batch_shape(const void *m, int *B, int *T) { encoder_batch_shape(m, B, T); }
static vp_status enc_set_batch(void *m, int B, int T) { return encoder_set_batch(m, B, T); }
static vp_status enc_plan(const void *m, int B, int T, uint64_t bytes[VP_POOL_COUNT]) {
    return encoder_plan(m, B, T, bytes);
}
static vp_status enc_load(void *m, int B, int T) { return encoder_load(m, B, T); }
static float enc_loss(const void *m) {
    float loss = 0;
    encoder_loss(m, &loss, NULL);
    return loss;
}
static void enc_destroy(void *m) { encoder_destroy(m); }

struct trainer_model trainer_encoder_model(struct encoder *e) {
    return (struct trainer_model){e, enc_record_zero_grads, enc_record_train, enc_params, enc_batch_shape,
                                  enc_set_batch, enc_plan, enc_load, enc_loss, enc_destroy,
                                  NULL /* trainer_micro_step sets the encoder's step */};
}

vp_status trainer_open_model(vp_context *ctx, const struct trainer_model *model, const struct trainer_options *o,
                             int max_len, const struct delta_counts *counts, struct trainer **out) {
    *out = NULL;
    vp_status s = trainer_options_check(o);
    if (s != VP_OK) return s;
    struct trainer *t = calloc(1, sizeof *t);
    if (!t) return vp_fail(VP_ERROR_HOST_MEMORY, "trainer: out of host memory");
    t->ctx = ctx;
    t->o = *o;
    t->model = *model;
    t->dropout = model->set_step != NULL;
    t->max_len = max_len;
    if (counts) t->counts = *counts;
    *out = t;
    return VP_OK;
}

vp_status trainer_set_shape(struct trainer *t, int B, int T) { return set_shape(t, B, T); }

vp_status trainer_open(vp_context *ctx, const char *model_dir, const struct delta_spec *spec,
                       const struct trainer_options *o, struct trainer **out) {
    *out = NULL;
    vp_status s = trainer_options_check(o);
    if (s != VP_OK) return s;
    struct model_arch arch;
    s = model_arch_load_encoder(model_dir, &arch);
    if (s != VP_OK) return s;
    const bool model_dropout =
        arch.hidden_dropout > 0 || arch.attention_dropout > 0 || arch.classifier_dropout > 0;
    struct trainer *t = calloc(1, sizeof *t);
    /* A spec that does not fit the arch fails in encoder_open below, with
     * its message; the counts stay zero until then. */
    if (t && delta_count_params(spec, &arch, &t->counts) != VP_OK) memset(&t->counts, 0, sizeof t->counts);
    model_arch_finish(&arch);
    if (!t) return vp_fail(VP_ERROR_HOST_MEMORY, "trainer: out of host memory");
    t->ctx = ctx;
    t->o = *o;
    t->dropout = o->dropout > 0 || (o->dropout < 0 && model_dropout);
    const struct encoder_options eo = {
        .storage = o->storage,
        .dropout = t->dropout,
        .seed = o->seed,
        .label_smoothing = o->label_smoothing,
        .head = o->head,
        .checkpoint_activations = o->checkpoint_activations,
    };
    s = encoder_open(ctx, model_dir, spec, &eo, &t->e);
    if (s != VP_OK) {
        free(t);
        return s;
    }
    t->model = trainer_encoder_model(t->e);
    if (o->dropout > 0) {
        /* encoder_options has no probability of its own: the model's
         * config values are replaced before anything is recorded (the
         * forward and backward read them from the arch at recording). */
        t->e->arch.hidden_dropout = t->e->arch.attention_dropout = t->e->arch.classifier_dropout = o->dropout;
    }
    const struct model_arch *a = encoder_arch(t->e);
    const int limit = trainer_model_max_len(a);
    if (o->max_len > limit) {
        trainer_destroy(t);
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "--max-len %d is longer than %s allows (%d tokens: "
                       "max_position_embeddings %d)", o->max_len, model_dir, limit, a->max_positions);
    }
    t->max_len = o->max_len > 0 ? o->max_len : limit;
    *out = t;
    return VP_OK;
}

static void free_optimizer(struct trainer *t) {
    vk_buffer_free(t->ctx, &t->hp);
    vk_buffer_free(t->ctx, &t->clip);
    vk_buffer_free(t->ctx, &t->scratch);
    vk_buffer_free(t->ctx, &t->stage);
    memset(t->extra, 0, sizeof t->extra);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

vp_status trainer_load(struct trainer *t, int longest) {
    if (t->loaded) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: already loaded");
    const int T = train_batch_length(longest < 1 ? 1 : longest, t->max_len, t->o.pad_multiple);
    vp_status s = t->model.load(t->model.self, t->o.batch, T);
    if (s != VP_OK) return s;
    struct delta_params *p = t->model.params(t->model.self);
    free(t->opt);
    t->opt = calloc((size_t)p->count + 1, sizeof *t->opt);
    if (!t->opt) return vp_fail(VP_ERROR_HOST_MEMORY, "trainer: out of host memory");
    t->opt_count = delta_params_opt_tensors(p, t->opt, (uint32_t)p->count);
    /* The optimiser's own buffers: planned, checked against the budget and
     * reserved as a whole, then allocated. */
    const uint64_t al = vk_pool_alignment(t->ctx);
    const uint64_t scratch = kernel_grad_norm_scratch_bytes(t->ctx, t->opt, t->opt_count);
    t->extra[VP_POOL_TRAINABLE] = align_up(HP_BYTES, al) + align_up(8, al) + align_up(scratch, al);
    t->extra[VP_POOL_STAGING] = align_up(STAGE_BYTES, al);
    s = vk_pools_reserve(t->ctx, t->extra);
    if (s == VP_OK) s = vk_buffer_alloc(t->ctx, VP_POOL_TRAINABLE, HP_BYTES, &t->hp);
    if (s == VP_OK) s = vk_buffer_alloc(t->ctx, VP_POOL_TRAINABLE, 8, &t->clip);
    if (s == VP_OK) s = vk_buffer_alloc(t->ctx, VP_POOL_TRAINABLE, scratch, &t->scratch);
    if (s == VP_OK) s = vk_buffer_alloc(t->ctx, VP_POOL_STAGING, STAGE_BYTES, &t->stage);
    if (s == VP_OK && !t->stage.host)
        s = vp_fail(VP_ERROR_UNSUPPORTED, "trainer: the staging pool is not mapped");
    if (s != VP_OK) {
        free_optimizer(t);
        return s;
    }
    memset(t->stage.host, 0, STAGE_BYTES);
    t->loaded = true;
    return VP_OK;
}

void trainer_destroy(struct trainer *t) {
    if (!t) return;
    for (int z = 0; z < 2; z++)
        for (int u = 0; u < 2; u++) vk_recorder_destroy(t->rec[z][u].rec);
    if (t->loaded) free_optimizer(t);
    free(t->opt);
    if (t->model.destroy) t->model.destroy(t->model.self);
    free(t);
}

struct encoder *trainer_encoder(struct trainer *t) { return t->e; }
const struct trainer_options *trainer_get_options(const struct trainer *t) { return &t->o; }
int trainer_max_len(const struct trainer *t) { return t->max_len; }

int trainer_model_max_len(const struct model_arch *a) {
    const int first = a->roberta_positions ? a->pad_token_id + 1 : 0;
    return a->max_positions - first;
}
uint64_t trainer_steps_done(const struct trainer *t) { return t->steps; }
uint64_t trainer_micro_done(const struct trainer *t) { return t->micro; }
void trainer_restore_counts(struct trainer *t, uint64_t steps, uint64_t micro) {
    t->steps = steps;
    t->micro = micro;
    t->micro_in_step = 0;
    t->loss_sum = 0;
}
void trainer_forget_recordings(struct trainer *t) { t->gen++; }

void trainer_counts(const struct trainer *t, struct delta_counts *out) { *out = t->counts; }

void trainer_plan(const struct trainer *t, uint64_t bytes[VP_POOL_COUNT]) {
    int B, T;
    t->model.batch_shape(t->model.self, &B, &T);
    if (t->model.plan(t->model.self, B, T, bytes) != VP_OK) memset(bytes, 0, VP_POOL_COUNT * sizeof *bytes);
    for (int p = 0; p < VP_POOL_COUNT; p++) bytes[p] += t->extra[p];
}

/* ------------------------------------------------------------------------
 * The recorded step
 * ------------------------------------------------------------------------ */

static vp_status record_step(struct trainer *t, struct vk_recorder *rec, bool zero, bool update,
                             float scale) {
    vp_context *ctx = t->ctx;
    vp_status s = VP_OK;
    if (update) s = vk_recorder_copy(rec, &t->hp, 0, &t->stage, STAGE_HP, HP_BYTES);
    const char *site = vk_recorder_label(rec, "zero gradients");
    if (s == VP_OK && zero) s = t->model.record_zero_grads(t->model.self, rec);
    vk_recorder_label(rec, site);
    if (s == VP_OK) s = t->model.record_train(t->model.self, rec);
    if (s != VP_OK || !update) return s;
    vk_recorder_label(rec, "optimizer");
    if (scale != 1.0f) {
        /* The mean over micro-batches (padding between tensors holds zeros). */
        const struct delta_params *p = t->model.params(t->model.self);
        const struct vk_buffer *g = &p->arena[DELTA_ARENA_GRAD];
        s = kernel_scale_add(ctx, rec, g, g, p->arena_bytes / 4, scale, 0.0f);
    }
    /* The norm is always reduced (it is logged) and the optimiser always
     * reads it: a non-finite norm skips the update on the device. With
     * clipping off the coefficient is exactly 1. */
    const float max_norm = t->o.clip > 0 ? (float)t->o.clip : FLT_MAX;
    const struct vk_buffer *clip = &t->clip;
    if (s == VP_OK) s = kernel_grad_norm(ctx, rec, &t->clip, &t->scratch, t->opt, t->opt_count, max_norm);
    if (s == VP_OK)
        s = t->o.optimizer == TRAINER_SGD ? kernel_sgd_step(ctx, rec, t->opt, t->opt_count, &t->hp, clip)
                                          : kernel_adamw_step(ctx, rec, t->opt, t->opt_count, &t->hp, clip);
    if (s == VP_OK) s = vk_recorder_copy(rec, &t->stage, STAGE_NORM, &t->clip, 0, 8);
    vk_recorder_label(rec, site);
    return s;
}

static vp_status recording(struct trainer *t, bool zero, bool update, float scale, struct vk_recorder **out) {
    struct step_recording *r = &t->rec[zero][update];
    const uint32_t dstep = (uint32_t)t->micro;
    vp_status s = VP_OK;
    if (!r->rec) s = vk_recorder_create(t->ctx, 0, &r->rec);
    if (s != VP_OK) return s;
    const bool fresh = r->valid && r->gen == t->gen && (!t->dropout || r->dropout_step == dstep) &&
                       (!update || r->scale == scale);
    if (!fresh) {
        r->valid = false;
        s = vk_recorder_begin(r->rec);
        if (s == VP_OK) s = record_step(t, r->rec, zero, update, scale);
        if (s == VP_OK) s = vk_recorder_end(r->rec);
        if (s != VP_OK) return s;
        *r = (struct step_recording){r->rec, true, t->gen, dstep, scale};
    }
    *out = r->rec;
    return VP_OK;
}

/* record_step of a whole step (zero, update, scale 1), for vk_profile_record. */
static vp_status record_whole_step(void *t, struct vk_recorder *rec) { return record_step(t, rec, true, true, 1.0f); }

vp_status trainer_profile_step(struct trainer *t, struct vk_profile *out) {
    memset(out, 0, sizeof *out);
    if (!t->loaded) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: not loaded (trainer_load)");
    if (t->model.set_step) t->model.set_step(t->model.self, (uint32_t)t->micro);
    return vk_profile_record(t->ctx, record_whole_step, t, out);
}

/* Sets the encoder's batch shape; a new shape reallocates the activations,
 * which every recording of the trainer refers to. */
static vp_status set_shape(struct trainer *t, int B, int T) {
    int b0, t0;
    t->model.batch_shape(t->model.self, &b0, &t0);
    if (b0 == B && t0 == T) return VP_OK;
    t->gen++;
    return t->model.set_batch(t->model.self, B, T);
}

static void write_hparams(struct trainer *t, double lr, uint64_t step) {
    char *hp = (char *)t->stage.host + STAGE_HP;
    if (t->o.optimizer == TRAINER_SGD) {
        struct kernel_sgd_hparams h = {(float)lr, (float)t->o.momentum, (float)t->o.weight_decay,
                                       (uint32_t)step};
        memcpy(hp, &h, sizeof h);
    } else {
        struct kernel_adamw_hparams h;
        kernel_adamw_hparams_set(&h, lr, t->o.beta1, t->o.beta2, t->o.eps, t->o.weight_decay,
                                 (uint32_t)step);
        memcpy(hp, &h, sizeof h);
    }
}

static struct schedule schedule_of(const struct trainer_options *o, uint64_t total) {
    uint64_t warmup = o->warmup_steps;
    if (!warmup && o->warmup_ratio > 0) warmup = (uint64_t)ceil(o->warmup_ratio * (double)total);
    return (struct schedule){o->schedule, o->lr, warmup, total};
}

vp_status trainer_micro_step(struct trainer *t, const struct train_batch *b, bool update,
                             uint64_t total_steps, struct trainer_step_result *r) {
    if (!t->loaded) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: not loaded (trainer_load)");
    if (!t->e) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: no encoder (write the batch, then trainer_micro_step_written)");
    if (b->B != t->o.batch)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: a batch of %d rows, the trainer's is %d", b->B,
                       t->o.batch);
    vp_status s = set_shape(t, b->B, b->T);
    /* Dropout masks are keyed by the micro-batch, so micro-batches of one
     * step draw different masks. */
    encoder_set_step(t->e, (uint32_t)t->micro);
    const struct encoder_batch view = train_batch_view(b);
    if (s == VP_OK) s = encoder_write_batch(t->e, &view);
    return s == VP_OK ? trainer_micro_step_written(t, update, total_steps, r) : s;
}

vp_status trainer_micro_step_written(struct trainer *t, bool update, uint64_t total_steps,
                                     struct trainer_step_result *r) {
    vp_status s = t->loaded ? VP_OK : vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: not loaded (trainer_load)");
    double lr = 0;
    if (update) {
        const struct schedule sch = schedule_of(&t->o, total_steps);
        lr = schedule_lr(&sch, t->steps);
        write_hparams(t, lr, t->steps + 1);
    }
    struct vk_recorder *rec = NULL;
    const float scale = 1.0f / (float)(t->micro_in_step + 1);
    if (t->model.set_step) t->model.set_step(t->model.self, (uint32_t)t->micro);
    if (s == VP_OK) s = recording(t, t->micro_in_step == 0, update, scale, &rec);
    if (s == VP_OK) s = vk_recorder_run(rec);
    if (s != VP_OK) return s;
    const float loss = t->model.loss(t->model.self);
    t->loss_sum += loss;
    t->micro++;
    t->micro_in_step++;
    if (!update) return VP_OK;
    float norm[2];
    memcpy(norm, (const char *)t->stage.host + STAGE_NORM, sizeof norm);
    /* The device skipped the update when the norm was not finite: the step
     * count (the schedule's and AdamW's t) stays too. */
    const bool applied = isfinite(norm[0]);
    if (applied) t->steps++;
    if (r) *r = (struct trainer_step_result){t->loss_sum / t->micro_in_step, norm[0], lr, t->steps, applied};
    t->loss_sum = 0;
    t->micro_in_step = 0;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------ */

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

vp_status trainer_evaluate(struct encoder *e, struct train_data *d, int batch, int max_len,
                           int pad_multiple, trainer_example_fn fn, void *user,
                           struct trainer_eval_result *out) {
    memset(out, 0, sizeof *out);
    const int C = encoder_arch(e)->num_labels;
    const uint64_t n = train_data_count(d);
    struct train_batch b;
    const int cap_T = train_batch_length(train_data_longest(d), max_len, pad_multiple);
    vp_status s = train_batch_init(&b, batch, cap_T);
    if (s != VP_OK) return s;
    const uint64_t labelled = train_data_labelled(d);
    int32_t *labels = malloc((labelled + 1) * sizeof *labels);
    int32_t *preds = malloc((labelled + 1) * sizeof *preds);
    float *logits = malloc((size_t)batch * (size_t)C * sizeof *logits);
    uint64_t *idx = malloc((size_t)batch * sizeof *idx);
    if (!labels || !preds || !logits || !idx) s = vp_fail(VP_ERROR_HOST_MEMORY, "evaluation: out of host memory");
    double loss_sum = 0;
    uint64_t m = 0;
    for (uint64_t first = 0; s == VP_OK && first < n; first += (uint64_t)batch) {
        const int count = n - first < (uint64_t)batch ? (int)(n - first) : batch;
        for (int r = 0; r < count; r++) idx[r] = first + (uint64_t)r;
        s = train_batch_fill(&b, d, idx, count, encoder_arch(e)->pad_token_id, max_len, pad_multiple);
        if (s == VP_OK) s = encoder_set_batch(e, batch, b.T);
        const struct encoder_batch view = train_batch_view(&b);
        if (s == VP_OK) s = encoder_write_batch(e, &view);
        if (s == VP_OK) s = encoder_run(e, ENCODER_PASS_EVAL);
        if (s != VP_OK) break;
        float loss;
        uint32_t cnt;
        encoder_loss(e, &loss, &cnt);
        encoder_logits(e, logits);
        loss_sum += (double)loss * cnt;
        for (int r = 0; r < count && s == VP_OK; r++) {
            const int pred = argmax(logits + (size_t)r * C, C);
            const int32_t label = b.labels[r] == ENCODER_IGNORE_INDEX ? -1 : b.labels[r];
            if (label >= 0 && m < labelled) {
                labels[m] = label;
                preds[m++] = pred;
            }
            if (fn) s = fn(user, b.index[r], logits + (size_t)r * C, C, pred, label);
        }
    }
    if (s == VP_OK) {
        out->count = n;
        out->labelled = m;
        out->loss = m ? loss_sum / (double)m : 0;
        if (m) s = metrics_classify(labels, preds, m, C, &out->metrics);
    }
    free(labels);
    free(preds);
    free(logits);
    free(idx);
    train_batch_finish(&b);
    return s;
}

vp_status trainer_evaluate_mlm(struct encoder *e, struct train_corpus *c, int batch, int max_len,
                               int pad_multiple, const struct mlm_masking *m,
                               struct trainer_eval_result *out) {
    memset(out, 0, sizeof *out);
    const int V = encoder_arch(e)->vocab_size;
    const uint64_t n = train_corpus_count(c);
    struct train_batch b;
    const int cap_T = train_batch_length(train_corpus_longest(c), max_len, pad_multiple);
    vp_status s = train_batch_init(&b, batch, cap_T);
    if (s != VP_OK) return s;
    float *logits = malloc((size_t)batch * (size_t)cap_T * (size_t)V * sizeof *logits);
    uint64_t *idx = malloc((size_t)batch * sizeof *idx);
    if (!logits || !idx) s = vp_fail(VP_ERROR_HOST_MEMORY, "evaluation: out of host memory");
    double loss_sum = 0;
    uint64_t masked = 0, correct = 0;
    for (uint64_t first = 0; s == VP_OK && first < n; first += (uint64_t)batch) {
        const int count = n - first < (uint64_t)batch ? (int)(n - first) : batch;
        for (int r = 0; r < count; r++) idx[r] = first + (uint64_t)r;
        s = train_batch_fill_mlm(&b, c, idx, count, encoder_arch(e)->pad_token_id, max_len, pad_multiple, m, 0);
        if (s == VP_OK) s = encoder_set_batch(e, batch, b.T);
        const struct encoder_batch view = train_batch_view(&b);
        if (s == VP_OK) s = encoder_write_batch(e, &view);
        if (s == VP_OK) s = encoder_run(e, ENCODER_PASS_EVAL);
        if (s != VP_OK) break;
        float loss;
        uint32_t cnt;
        encoder_loss(e, &loss, &cnt);
        if (cnt) loss_sum += (double)loss * cnt;
        encoder_logits(e, logits);
        for (int r = 0; r < count; r++)
            for (int k = 0; k < b.T; k++) {
                const size_t row = (size_t)r * (size_t)b.T + (size_t)k;
                if (b.labels[row] == ENCODER_IGNORE_INDEX) continue;
                masked++;
                correct += argmax(logits + row * (size_t)V, V) == b.labels[row];
            }
    }
    if (s == VP_OK) {
        out->count = n;
        out->labelled = masked;
        out->loss = masked ? loss_sum / (double)masked : 0;
        out->metrics.accuracy = masked ? (double)correct / (double)masked : 0;
    }
    free(logits);
    free(idx);
    train_batch_finish(&b);
    return s;
}

/* ------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------ */

struct fit_state {
    struct trainer *t;
    const struct trainer_fit_config *c;
    struct train_log *log;
    uint64_t n, total, *perm, pos, epoch, tokens;
    double t0;
    struct trainer_summary *sum;
    struct mlm_masking masking;
};

static void emit(struct fit_state *f, struct trainer_event *ev) {
    if (f->c->on_event) f->c->on_event(ev, f->c->user);
}

static vp_status evaluate(struct fit_state *f, const struct trainer_step_result *last) {
    struct trainer *t = f->t;
    struct trainer_eval_result r;
    vp_status s;
    if (f->c->eval_corpus) {
        struct mlm_masking m;
        s = train_corpus_masking(f->c->eval_corpus, t->o.mask_prob, t->o.seed, &m);
        if (s == VP_OK)
            s = trainer_evaluate_mlm(t->e, f->c->eval_corpus, t->o.batch, t->max_len, t->o.pad_multiple, &m, &r);
    } else {
        s = trainer_evaluate(t->e, f->c->eval, t->o.batch, t->max_len, t->o.pad_multiple, NULL, NULL, &r);
    }
    trainer_forget_recordings(t); /* the evaluation changed the encoder's shape */
    if (s != VP_OK)
        return vp_fail_context(s, "evaluating on %s", f->c->eval_corpus ? train_corpus_path(f->c->eval_corpus)
                                                                        : train_data_path(f->c->eval));
    struct trainer_summary *sum = f->sum;
    if (!sum->has_eval || r.metrics.accuracy > sum->best.metrics.accuracy) {
        sum->best = r;
        sum->best_step = t->steps;
    }
    sum->has_eval = true;
    sum->eval = r;
    struct trainer_event ev = {
        .kind = TRAINER_EVENT_EVAL, .step = t->steps, .total_steps = f->total,
        .epoch = (double)f->epoch + (double)f->pos / (double)f->n, .elapsed = vp_now() - f->t0,
        .tokens = f->tokens, .last = *last, .eval = &r,
    };
    if (f->log) s = train_log_eval(f->log, &ev);
    emit(f, &ev);
    return s;
}

/* One optimiser step of `accum` micro-batches drawn from the epoch order;
 * *epoch_done is set when an epoch ended during it. */
static vp_status fit_step(struct fit_state *f, struct train_batch *b, struct trainer_step_result *r,
                          bool *epoch_done) {
    struct trainer *t = f->t;
    const int B = t->o.batch;
    vp_status s = VP_OK;
    for (int k = 0; k < t->o.accum && s == VP_OK; k++) {
        if (f->pos == f->n) {
            f->epoch++;
            f->pos = 0;
            train_permutation(f->perm, f->n, t->o.seed, f->epoch);
        }
        const int count = f->n - f->pos < (uint64_t)B ? (int)(f->n - f->pos) : B;
        if (f->c->corpus)
            s = train_batch_fill_mlm(b, f->c->corpus, f->perm + f->pos, count, encoder_arch(t->e)->pad_token_id,
                                     t->max_len, t->o.pad_multiple, &f->masking, f->epoch);
        else
            s = train_batch_fill(b, f->c->train, f->perm + f->pos, count, encoder_arch(t->e)->pad_token_id,
                                 t->max_len, t->o.pad_multiple);
        f->pos += (uint64_t)count;
        if (f->pos == f->n) *epoch_done = true;
        f->sum->examples += (uint64_t)count;
        for (int i = 0; s == VP_OK && i < count; i++) f->tokens += (uint64_t)b->lens[i];
        if (s == VP_OK) s = trainer_micro_step(t, b, k == t->o.accum - 1, f->total, r);
    }
    return s;
}

/* Where the fit stands now (between steps). */
static struct trainer_position position_of(const struct fit_state *f, double elapsed) {
    const struct trainer_summary *sum = f->sum;
    return (struct trainer_position){
        .steps = f->t->steps, .micro = f->t->micro, .epoch = f->epoch, .pos = f->pos, .tokens = f->tokens,
        .examples = sum->examples, .log_bytes = train_log_bytes(f->log), .skipped = sum->skipped,
        .elapsed = elapsed, .first_loss = sum->first_loss, .has_eval = sum->has_eval, .eval = sum->eval,
        .best = sum->best, .best_step = sum->best_step,
    };
}

static vp_status checkpoint(struct fit_state *f, double elapsed) {
    const struct trainer_position pos = position_of(f, elapsed);
    vp_status s = train_checkpoint_save(f->c->checkpoint_path, f->t->model.params(f->t->model.self), &pos,
                                        f->c->checkpoint_settings);
    if (s == VP_OK) f->sum->checkpoints++;
    return s;
}

vp_status trainer_check_step(struct trainer *t, struct train_log *log, uint64_t step,
                             const struct trainer_step_result *r, enum trainer_nonfinite mode,
                             struct trainer_summary *out, bool *stop) {
    *stop = false;
    if (isfinite(r->loss) && r->applied) return VP_OK;
    vp_status s = VP_OK;
    if (!out->nonfinite_step) {
        out->nonfinite_step = step + 1;
        s = trainer_find_nonfinite(t, out->nonfinite_tensor, sizeof out->nonfinite_tensor);
    }
    if (s == VP_OK && log) s = train_log_nonfinite(log, step + 1, r->applied, out->nonfinite_tensor);
    if (!r->applied) out->skipped++;
    if (mode == TRAINER_NONFINITE_STOP) {
        out->diverged = true;
        out->diverged_step = step + 1;
        *stop = true;
    }
    return s;
}

vp_status trainer_find_nonfinite(struct trainer *t, char *name, size_t size) {
    name[0] = 0;
    const struct delta_params *p = t->model.params(t->model.self);
    float *g = malloc(p->arena_bytes ? (size_t)p->arena_bytes : 1);
    if (!g) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading the gradients");
    vp_status s = vk_buffer_read(t->ctx, &p->arena[DELTA_ARENA_GRAD], 0, g, p->arena_bytes);
    for (int i = 0; s == VP_OK && i < p->count && !name[0]; i++) {
        const struct delta_param *d = &p->items[i];
        const float *v = g + d->offset / sizeof *g;
        for (uint64_t k = 0; k < d->n; k++)
            if (!isfinite(v[k])) {
                snprintf(name, size, "%s", d->name);
                break;
            }
    }
    free(g);
    return s;
}

vp_status trainer_fit(struct trainer *t, const struct trainer_fit_config *c, struct trainer_summary *out) {
    memset(out, 0, sizeof *out);
    if (!t->loaded) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: not loaded (trainer_load)");
    if ((t->o.head == MODEL_HEAD_MLM) != (c->corpus != NULL))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: a masked-LM fit takes a corpus (and only it does)");
    struct fit_state f = {.t = t, .c = c, .sum = out,
                          .n = c->corpus ? train_corpus_count(c->corpus) : train_data_count(c->train)};
    if (c->corpus) {
        vp_status ms = train_corpus_masking(c->corpus, t->o.mask_prob, t->o.seed, &f.masking);
        if (ms != VP_OK) return ms;
    }
    const int longest = c->corpus ? train_corpus_longest(c->corpus) : train_data_longest(c->train);
    f.total = trainer_total_steps(&t->o, f.n);
    const struct trainer_position *rp = c->resume;
    if (rp && (rp->steps + rp->skipped > f.total || rp->pos > f.n))
        return vp_fail(VP_ERROR_BAD_INPUT, "the checkpoint is at step %llu of %llu, past this run's end",
                       (unsigned long long)(rp->steps + rp->skipped), (unsigned long long)f.total);
    f.perm = malloc(f.n * sizeof *f.perm);
    if (!f.perm) return vp_fail(VP_ERROR_HOST_MEMORY, "trainer: out of host memory for %llu examples",
                                (unsigned long long)f.n);
    uint64_t first_step = 0;
    double elapsed0 = 0;
    if (rp) {
        /* The random state is (seed, epoch) for the data order and the
         * micro-batch count for dropout: restoring the counters restores it. */
        trainer_restore_counts(t, rp->steps, rp->micro);
        f.epoch = rp->epoch;
        f.pos = rp->pos;
        f.tokens = rp->tokens;
        out->examples = rp->examples;
        out->skipped = rp->skipped;
        out->first_loss = rp->first_loss;
        out->steps = rp->steps;
        out->has_eval = rp->has_eval;
        out->eval = rp->eval;
        out->best = rp->best;
        out->best_step = rp->best_step;
        first_step = rp->steps + rp->skipped;
        elapsed0 = rp->elapsed;
    }
    train_permutation(f.perm, f.n, t->o.seed, f.epoch);
    struct train_batch b;
    vp_status s = train_batch_init(&b, t->o.batch, train_batch_length(longest, t->max_len, t->o.pad_multiple));
    if (s == VP_OK && c->log_path)
        s = rp ? train_log_reopen(c->log_path, rp->log_bytes, &f.log) : train_log_open(c->log_path, &f.log);
    if (s == VP_OK && f.log && !rp) {
        uint64_t plan[VP_POOL_COUNT];
        trainer_plan(t, plan);
        uint64_t uncheckpointed = 0;
        int B, T;
        t->model.batch_shape(t->model.self, &B, &T);
        if (t->e && t->o.checkpoint_activations &&
            encoder_plan_activations(t->e, B, T, false, &uncheckpointed) != VP_OK)
            uncheckpointed = 0;
        s = train_log_start(f.log, f.total, t->o.batch, &t->counts, plan, uncheckpointed);
    }
    f.t0 = vp_now() - elapsed0;
    double first_seconds = 0, rest_seconds = 0;
    uint64_t timed = 0;
    struct trainer_step_result r = {0};
    bool evaluated_last = false;
    for (uint64_t step = first_step; s == VP_OK && step < f.total; step++) {
        bool epoch_done = false;
        const double t_step = vp_now();
        s = fit_step(&f, &b, &r, &epoch_done);
        if (s != VP_OK) break;
        /* The first step records and may compile; later ones replay. */
        if (step == 0) out->first_loss = r.loss;
        if (step == first_step) {
            first_seconds = vp_now() - t_step;
        } else {
            rest_seconds += vp_now() - t_step;
            timed++;
        }
        out->steps = t->steps;
        out->final_loss = r.loss;
        struct trainer_event ev = {
            .kind = TRAINER_EVENT_STEP, .step = step + 1, .total_steps = f.total,
            .epoch = (double)f.epoch + (double)f.pos / (double)f.n, .elapsed = vp_now() - f.t0,
            .tokens = f.tokens, .last = r,
        };
        if (epoch_done) ev.epoch = (double)(f.epoch + 1);
        if (f.log) s = train_log_step(f.log, &ev);
        emit(&f, &ev);
        bool diverged = false;
        if (s == VP_OK) s = trainer_check_step(t, f.log, step, &r, c->on_nonfinite, out, &diverged);
        if (diverged) break;
        const bool due = t->o.eval_every ? t->steps % t->o.eval_every == 0 : epoch_done;
        evaluated_last = false;
        if (s == VP_OK && (c->eval || c->eval_corpus) && due) {
            s = evaluate(&f, &r);
            evaluated_last = true;
        }
        const bool stop = s == VP_OK && step + 1 < f.total && c->should_stop && c->should_stop(c->user);
        const bool ckpt_due = c->checkpoint_every ? (step + 1) % c->checkpoint_every == 0 : epoch_done;
        if (s == VP_OK && c->checkpoint_path && step + 1 < f.total && (ckpt_due || stop))
            s = checkpoint(&f, vp_now() - f.t0);
        if (stop) {
            out->interrupted = true;
            if (f.log) s = train_log_interrupted(f.log, step + 1, vp_now() - f.t0);
            break;
        }
    }
    out->tokens = f.tokens;
    if (s == VP_OK && (c->eval || c->eval_corpus) && !evaluated_last && !out->diverged && !out->interrupted && out->steps)
        s = evaluate(&f, &r);
    out->seconds = vp_now() - f.t0;
    out->step_seconds = timed ? rest_seconds / (double)timed : first_seconds;
    if (f.log) {
        vp_status cs = train_log_close(f.log);
        if (s == VP_OK) s = cs;
    }
    train_batch_finish(&b);
    free(f.perm);
    return s;
}
