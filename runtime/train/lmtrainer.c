/* Causal-LM and seq2seq fine-tuning: the decoder or the encoder-decoder as
 * the trainer's model, lmdata batches, the LM evaluation and the loop. See
 * lmtrainer.h. */
#include "lmtrainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lm_trainer {
    vp_context *ctx;
    struct decoder *m;       /* owned by tr (its trainer_model's destroy); NULL for seq2seq */
    struct seq2seq *s2s;     /* likewise; NULL for a decoder-only model */
    struct trainer *tr;
    struct trainer_options o;
    int max_len;
    int src_len;             /* seq2seq: every batch's source length; 0: the target's */
};

/* ------------------------------------------------------------------------
 * The decoder as a trainer_model
 * ------------------------------------------------------------------------ */

static vp_status dec_zero(void *m, struct vk_recorder *rec) { return decoder_record_zero_grads(m, rec); }
static vp_status dec_train(void *m, struct vk_recorder *rec) { return decoder_record(m, rec, DECODER_PASS_TRAIN); }
static struct delta_params *dec_params(void *m) { return decoder_params(m); }
static void dec_shape(const void *m, int *B, int *T) { decoder_batch_shape(m, B, T); }
static vp_status dec_set(void *m, int B, int T) { return decoder_set_batch(m, B, T); }
static vp_status dec_plan(const void *m, int B, int T, uint64_t bytes[VP_POOL_COUNT]) {
    return decoder_plan(m, B, T, bytes);
}
static vp_status dec_load(void *m, int B, int T) { return decoder_load(m, B, T); }
static float dec_loss(const void *m) {
    float loss = 0;
    decoder_loss(m, &loss, NULL);
    return loss;
}
static void dec_destroy(void *m) { decoder_destroy(m); }
static void dec_set_step(void *m, uint32_t step) { decoder_set_step(m, step); }

/* The encoder-decoder as a trainer_model (self: the lm_trainer): the
 * trainer's one length T is the target length, and the source's too
 * (both padded to it) unless lm_trainer_set_source_len fixed the source's. */
static struct seq2seq *s2s_of(const void *t) { return ((const struct lm_trainer *)t)->s2s; }
static int s2s_src(const void *t, int T) {
    const int S = ((const struct lm_trainer *)t)->src_len;
    return S > 0 ? S : T;
}
static vp_status s2s_zero(void *t, struct vk_recorder *rec) { return seq2seq_record_zero_grads(s2s_of(t), rec); }
static vp_status s2s_train(void *t, struct vk_recorder *rec) {
    return seq2seq_record(s2s_of(t), rec, SEQ2SEQ_PASS_TRAIN);
}
static struct delta_params *s2s_params(void *t) { return seq2seq_params(s2s_of(t)); }
static void s2s_shape(const void *t, int *B, int *T) {
    int S;
    seq2seq_batch_shape(s2s_of(t), B, &S, T);
}
static vp_status s2s_set(void *t, int B, int T) { return seq2seq_set_batch(s2s_of(t), B, s2s_src(t, T), T); }
static vp_status s2s_plan(const void *t, int B, int T, uint64_t bytes[VP_POOL_COUNT]) {
    return seq2seq_plan(s2s_of(t), B, s2s_src(t, T), T, bytes);
}
static vp_status s2s_load(void *t, int B, int T) { return seq2seq_load(s2s_of(t), B, s2s_src(t, T), T); }
static float s2s_loss(const void *t) {
    float loss = 0;
    seq2seq_loss(s2s_of(t), &loss, NULL);
    return loss;
}
static void s2s_destroy(void *t) { seq2seq_destroy(s2s_of(t)); }
static void s2s_set_step(void *t, uint32_t step) { seq2seq_set_step(s2s_of(t), step); }

/* Opens the model dir holds (a decoder, or BART/mBART) into t. */
static vp_status open_model(struct lm_trainer *t, const char *model_dir, const struct delta_spec *spec,
                            const struct trainer_options *o, struct trainer_model *model, int *limit) {
    struct model_arch a;
    vp_status s = model_arch_load(model_dir, &a);
    if (s != VP_OK) return s;
    const bool s2s = a.stack == MODEL_STACK_ENCODER_DECODER;
    model_arch_finish(&a);
    if (s2s) {
        const struct seq2seq_options sopt = {.storage = o->storage, .seed = o->seed,
                                             .label_smoothing = o->label_smoothing,
                                             .checkpoint_activations = o->checkpoint_activations,
                                             .dropout = o->dropout != 0, .dropout_p = o->dropout};
        s = seq2seq_open(t->ctx, model_dir, spec, &sopt, &t->s2s);
        if (s != VP_OK) return s;
        /* --dropout unset: the config's dropout, attention_dropout and
         * activation_dropout; P: all three; and the adapters' own */
        const struct model_arch *sa = seq2seq_arch(t->s2s);
        bool drops = sopt.dropout && (sa->hidden_dropout > 0 || sa->attention_dropout > 0 || sa->activation_dropout > 0);
        for (int i = 0; sopt.dropout && i < spec->count; i++) drops |= spec->modules[i].dropout > 0;
        *model = (struct trainer_model){t, s2s_zero, s2s_train, s2s_params, s2s_shape, s2s_set, s2s_plan,
                                        s2s_load, s2s_loss, s2s_destroy, drops ? s2s_set_step : NULL};
        *limit = seq2seq_arch(t->s2s)->max_positions;
        return VP_OK;
    }
    const struct decoder_options dopt = {.storage = o->storage, .seed = o->seed,
                                         .label_smoothing = o->label_smoothing,
                                         .checkpoint_activations = o->checkpoint_activations,
                                         .dropout = o->dropout != 0, .dropout_p = o->dropout};
    s = decoder_open(t->ctx, model_dir, spec, &dopt, &t->m);
    if (s != VP_OK) return s;
    const struct model_arch *d = decoder_arch(t->m);
    /* --dropout unset: the config's probabilities (GPT-2 0.1 unless it says; LLaMA's attention_dropout). */
    const bool drops = o->dropout > 0 || (o->dropout < 0 && (d->embedding_dropout > 0 || d->attention_dropout > 0 ||
                                                              (d->family == MODEL_FAMILY_GPT2 && d->hidden_dropout > 0)));
    *model = (struct trainer_model){t->m,     dec_zero, dec_train, dec_params,  dec_shape, dec_set,
                                    dec_plan, dec_load, dec_loss,  dec_destroy, drops ? dec_set_step : NULL};
    *limit = decoder_arch(t->m)->max_positions - t->m->position_offset;
    return VP_OK;
}

static const struct model_arch *model_arch_of(const struct lm_trainer *t) {
    return t->s2s ? seq2seq_arch(t->s2s) : decoder_arch(t->m);
}

vp_status lm_trainer_open(vp_context *ctx, const char *model_dir, const struct delta_spec *spec,
                          const struct trainer_options *o, struct lm_trainer **out) {
    *out = NULL;
    vp_status s = trainer_options_check(o);
    if (s != VP_OK) return s;
    struct lm_trainer *t = calloc(1, sizeof *t);
    if (!t) return vp_fail(VP_ERROR_HOST_MEMORY, "trainer: out of host memory");
    t->ctx = ctx;
    t->o = *o;
    struct trainer_model model;
    int limit = 0;
    s = open_model(t, model_dir, spec, o, &model, &limit);
    if (s != VP_OK) {
        free(t);
        return s;
    }
    const struct model_arch *a = model_arch_of(t);
    if (o->max_len > limit) {
        s = vp_fail(VP_ERROR_INVALID_ARGUMENT, "--max-len %d is longer than %s allows (%d tokens: "
                    "max_position_embeddings %d less %d prefix rows)", o->max_len, model_dir, limit,
                    a->max_positions, a->max_positions - limit);
        model.destroy(model.self);
        free(t);
        return s;
    }
    t->max_len = o->max_len > 0 ? o->max_len : limit;
    struct delta_counts counts;
    if (delta_count_params(spec, a, &counts) != VP_OK) memset(&counts, 0, sizeof counts);
    s = trainer_open_model(ctx, &model, o, t->max_len, &counts, &t->tr);
    if (s != VP_OK) {
        model.destroy(model.self);
        free(t);
        return s;
    }
    *out = t;
    return VP_OK;
}

void lm_trainer_destroy(struct lm_trainer *t) {
    if (!t) return;
    trainer_destroy(t->tr); /* destroys the decoder */
    free(t);
}

struct decoder *lm_trainer_decoder(struct lm_trainer *t) { return t->m; }
struct seq2seq *lm_trainer_seq2seq(struct lm_trainer *t) { return t->s2s; }
struct delta_params *lm_trainer_params(struct lm_trainer *t) {
    return t->s2s ? seq2seq_params(t->s2s) : decoder_params(t->m);
}
struct trainer *lm_trainer_trainer(struct lm_trainer *t) { return t->tr; }
int lm_trainer_max_len(const struct lm_trainer *t) { return t->max_len; }

vp_status lm_trainer_load(struct lm_trainer *t, int longest) { return trainer_load(t->tr, longest); }

vp_status lm_trainer_set_source_len(struct lm_trainer *t, int S) {
    if (!t->s2s) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: a source length is for an encoder-decoder model");
    if (t->s2s->loaded) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: set the source length before loading");
    if (S < 0 || S > t->max_len)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: %d source tokens exceed the %d the trainer takes "
                       "(the model's positions, or --max-len)", S, t->max_len);
    t->src_len = S;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------ */

/* A decoder batch of B rows of T tokens from an lmdata batch (fewer rows,
 * shorter): padding is mask 0 and scores nothing. */
struct lm_dev_batch {
    int B, T;
    int32_t *ids;
    uint8_t *mask, *loss_mask;
    size_t cap;
    /* seq2seq: the source (B,T) and the labels (B,T), -100 unscored */
    int32_t *enc_ids, *labels;
    uint8_t *enc_mask;
    size_t s2s_cap;
};

static vp_status dev_batch_fill(struct lm_dev_batch *d, const struct lm_batch *b, int B, int T, int32_t pad) {
    const size_t n = (size_t)B * (size_t)T;
    if (n > d->cap) {
        int32_t *ids = realloc(d->ids, n * sizeof *ids);
        if (ids) d->ids = ids;
        uint8_t *mask = realloc(d->mask, n), *lm = mask ? realloc(d->loss_mask, n) : NULL;
        if (mask) d->mask = mask;
        if (lm) d->loss_mask = lm;
        if (!ids || !mask || !lm) return vp_fail(VP_ERROR_HOST_MEMORY, "trainer: out of host memory for a batch");
        d->cap = n;
    }
    d->B = B;
    d->T = T;
    for (int r = 0; r < B; r++)
        for (int k = 0; k < T; k++) {
            const size_t o = (size_t)r * T + k, i = (size_t)r * b->T + k;
            const bool real = r < b->B && k < b->T && b->mask[i];
            d->ids[o] = real ? b->ids[i] : pad;
            d->mask[o] = real;
            d->loss_mask[o] = real && b->labels[i] != LM_IGNORE_INDEX;
        }
    return VP_OK;
}

/* A seq2seq batch of B rows, source and target both padded to T: padding
 * is pad with mask 0, its labels -100. */
static vp_status dev_batch_fill_s2s(struct lm_dev_batch *d, const struct lm_batch *b, int B, int T, int32_t pad) {
    vp_status s = dev_batch_fill(d, b, B, T, pad);
    const size_t n = (size_t)B * (size_t)T;
    if (s == VP_OK && n > d->s2s_cap) {
        int32_t *e = realloc(d->enc_ids, n * sizeof *e);
        if (e) d->enc_ids = e;
        int32_t *l = e ? realloc(d->labels, n * sizeof *l) : NULL;
        if (l) d->labels = l;
        uint8_t *m = l ? realloc(d->enc_mask, n) : NULL;
        if (m) d->enc_mask = m;
        if (!m) return vp_fail(VP_ERROR_HOST_MEMORY, "trainer: out of host memory for a batch");
        d->s2s_cap = n;
    }
    for (int r = 0; s == VP_OK && r < B; r++)
        for (int k = 0; k < T; k++) {
            const size_t o = (size_t)r * T + k, i = (size_t)r * b->T + k, j = (size_t)r * b->S + k;
            const bool src = r < b->B && k < b->S && b->enc_mask[j];
            d->enc_ids[o] = src ? b->enc_ids[j] : pad;
            d->enc_mask[o] = src;
            d->labels[o] = d->mask[o] ? b->labels[i] : LM_IGNORE_INDEX;
        }
    return s;
}

static void dev_batch_finish(struct lm_dev_batch *d) {
    free(d->enc_ids);
    free(d->labels);
    free(d->enc_mask);
    free(d->ids);
    free(d->mask);
    free(d->loss_mask);
    memset(d, 0, sizeof *d);
}

static int32_t pad_of(const struct lm_data *d) {
    const struct lm_data_ids ids = lm_data_ids(d);
    return ids.pad >= 0 ? ids.pad : ids.eos >= 0 ? ids.eos : 0;
}

static struct lm_data_options data_options(const struct lm_trainer *t, const struct lm_data_options *base) {
    struct lm_data_options o = *base;
    o.task = t->s2s ? LM_TASK_SEQ2SEQ : LM_TASK_CAUSAL;
    o.arch = model_arch_of(t);
    o.batch = t->o.batch;
    o.max_len = t->max_len;
    if (t->s2s && (!o.max_target_len || o.max_target_len > t->max_len)) o.max_target_len = t->max_len;
    o.seed = t->o.seed;
    if (!o.shuffle_window) o.shuffle_window = 4096; /* training order: a streaming shuffle */
    return o;
}

vp_status lm_trainer_scan(const struct lm_trainer *t, const struct lm_fit_config *c, const char *path,
                          struct lm_scan *out) {
    memset(out, 0, sizeof *out);
    const struct lm_data_options o = data_options(t, &c->data);
    struct lm_data *d;
    vp_status s = lm_data_open(path, &o, &d);
    if (s != VP_OK) return s;
    struct lm_batch b = {0};
    bool done = false;
    while (s == VP_OK && (s = lm_data_next(d, &b, &done)) == VP_OK && !done) {
        out->batches++;
        out->loss_tokens += b.loss_tokens;
        if (b.T > out->longest) out->longest = b.T;
        if (b.S > out->longest) out->longest = b.S;
        for (size_t i = 0; i < (size_t)b.B * (size_t)b.T; i++) out->tokens += b.mask[i];
        for (size_t i = 0; b.enc_mask && i < (size_t)b.B * (size_t)b.S; i++) out->tokens += b.enc_mask[i];
    }
    out->examples = lm_data_examples(d);
    out->skipped = lm_data_skipped(d);
    if (s == VP_OK && out->loss_tokens == 0)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: no token to train on (%llu examples)", path,
                    (unsigned long long)out->examples);
    lm_batch_finish(&b);
    lm_data_close(d);
    return s;
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

/* The evaluation pass of either model (dm: a decoder, else sm: the
 * encoder-decoder) over every example of `path` in file order. */
static vp_status evaluate_model(struct decoder *dm, struct seq2seq *sm, const char *path,
                                const struct lm_data_options *o, int pad_multiple, struct lm_eval_result *out) {
    memset(out, 0, sizeof *out);
    struct lm_data_options dopt = *o;
    dopt.task = sm ? LM_TASK_SEQ2SEQ : LM_TASK_CAUSAL;
    dopt.shuffle_window = 0;
    const int B = dopt.batch > 0 ? dopt.batch : 1;
    const int V = sm ? seq2seq_arch(sm)->vocab_size : decoder_arch(dm)->vocab_size;
    struct lm_data *d;
    vp_status s = lm_data_open(path, &dopt, &d);
    if (s != VP_OK) return s;
    struct lm_batch b = {0};
    struct lm_dev_batch db = {0};
    float *logits = NULL;
    size_t logits_cap = 0;
    double loss_sum = 0;
    uint64_t correct = 0;
    bool done = false;
    while (s == VP_OK && (s = lm_data_next(d, &b, &done)) == VP_OK && !done) {
        const int longest = b.S > b.T ? b.S : b.T;
        const int T = train_batch_length(longest, dopt.max_len > 0 ? dopt.max_len : longest, pad_multiple);
        if (sm) {
            s = dev_batch_fill_s2s(&db, &b, B, T, pad_of(d));
            if (s == VP_OK) s = seq2seq_set_batch(sm, B, T, T);
            if (s == VP_OK)
                s = seq2seq_write_batch(sm, &(struct seq2seq_batch){db.enc_ids, db.enc_mask, db.ids, db.mask,
                                                                    db.labels});
            if (s == VP_OK) s = seq2seq_run(sm, SEQ2SEQ_PASS_EVAL);
        } else {
            s = dev_batch_fill(&db, &b, B, T, pad_of(d));
            if (s == VP_OK) s = decoder_set_batch(dm, B, T);
            if (s == VP_OK) s = decoder_write_batch(dm, &(struct decoder_batch){db.ids, db.mask, db.loss_mask});
            if (s == VP_OK) s = decoder_run(dm, DECODER_PASS_EVAL);
        }
        const size_t n = (size_t)B * T * V;
        if (s == VP_OK && n > logits_cap) {
            free(logits);
            logits_cap = n;
            if (!(logits = malloc(n * sizeof *logits)))
                s = vp_fail(VP_ERROR_HOST_MEMORY, "evaluation: out of host memory");
        }
        if (s != VP_OK) break;
        float loss;
        uint32_t count;
        if (sm) {
            seq2seq_loss(sm, &loss, &count);
            seq2seq_logits(sm, logits);
        } else {
            decoder_loss(dm, &loss, &count);
            decoder_logits(dm, logits);
        }
        if (count) loss_sum += (double)loss * count;
        out->tokens += count;
        for (int r = 0; r < B; r++)
            for (int k = 0; k < T; k++) {
                const size_t i = (size_t)r * T + k;
                if (sm) { /* teacher forcing: position t scores labels[t] */
                    if (db.labels[i] != LM_IGNORE_INDEX) correct += argmax(logits + i * V, V) == db.labels[i];
                    continue;
                }
                /* The decoder's rule: position t scores the token at t+1
                 * when that one is real and a target. */
                if (k + 1 == T || !db.mask[i + 1] || !db.loss_mask[i + 1]) continue;
                correct += argmax(logits + i * V, V) == db.ids[i + 1];
            }
    }
    if (s == VP_OK) {
        out->examples = lm_data_examples(d);
        out->loss = out->tokens ? loss_sum / (double)out->tokens : 0;
        out->perplexity = exp(out->loss);
        out->accuracy = out->tokens ? (double)correct / (double)out->tokens : 0;
        if (!out->tokens) s = vp_fail(VP_ERROR_BAD_INPUT, "%s: no token to evaluate", path);
    } else {
        vp_fail_context(s, "evaluating on %s", path);
    }
    free(logits);
    dev_batch_finish(&db);
    lm_batch_finish(&b);
    lm_data_close(d);
    return s;
}

vp_status lm_evaluate(struct decoder *m, const char *path, const struct lm_data_options *o, int pad_multiple,
                      struct lm_eval_result *out) {
    return evaluate_model(m, NULL, path, o, pad_multiple, out);
}

vp_status lm_evaluate_seq2seq(struct seq2seq *m, const char *path, const struct lm_data_options *o, int pad_multiple,
                              struct lm_eval_result *out) {
    return evaluate_model(NULL, m, path, o, pad_multiple, out);
}

static cJSON *eval_object(const struct lm_eval_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "loss", r->loss);
    if (isfinite(r->perplexity)) cJSON_AddNumberToObject(o, "perplexity", r->perplexity);
    else cJSON_AddNullToObject(o, "perplexity");
    cJSON_AddNumberToObject(o, "accuracy", r->accuracy);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "examples", (double)r->examples);
    return o;
}

char *lm_eval_json(const struct lm_eval_result *r) {
    cJSON *o = eval_object(r);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

/* ------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------ */

struct lm_fit {
    struct lm_trainer *t;
    const struct lm_fit_config *c;
    struct lm_data *data;
    struct lm_batch b;
    struct lm_dev_batch db;
    struct train_log *log;
    uint64_t epoch, batches_in_epoch, batches_per_epoch, total, tokens;
    double t0;
    struct lm_summary *sum;
};

static vp_status evaluate(struct lm_fit *f, const struct trainer_step_result *last) {
    struct lm_trainer *t = f->t;
    struct lm_data_options o = data_options(t, &f->c->data);
    struct lm_eval_result r;
    vp_status s = t->s2s ? lm_evaluate_seq2seq(t->s2s, f->c->eval, &o, t->o.pad_multiple, &r)
                         : lm_evaluate(t->m, f->c->eval, &o, t->o.pad_multiple, &r);
    trainer_forget_recordings(t->tr); /* the evaluation changed the decoder's shape */
    if (s != VP_OK) return s;
    struct lm_summary *sum = f->sum;
    const uint64_t step = trainer_steps_done(t->tr);
    if (!sum->has_eval || r.loss < sum->best.loss) {
        sum->best = r;
        sum->best_step = step;
    }
    sum->has_eval = true;
    sum->eval = r;
    const double epoch = (double)f->epoch + (double)f->batches_in_epoch / (double)f->batches_per_epoch;
    if (f->log) {
        cJSON *line = eval_object(&r);
        cJSON_AddStringToObject(line, "type", "eval");
        cJSON_AddNumberToObject(line, "step", (double)step);
        cJSON_AddNumberToObject(line, "epoch", epoch);
        cJSON_AddNumberToObject(line, "elapsed", vp_now() - f->t0);
        s = train_log_object(f->log, line);
    }
    /* The event's eval holds the LM figures in the classification fields:
     * loss, accuracy (token accuracy) and labelled (scored tokens). */
    struct trainer_eval_result er = {.loss = r.loss, .count = r.examples, .labelled = r.tokens};
    er.metrics.accuracy = r.accuracy;
    struct trainer_event ev = {.kind = TRAINER_EVENT_EVAL, .step = step, .total_steps = f->total, .epoch = epoch,
                               .elapsed = vp_now() - f->t0, .tokens = f->tokens, .last = *last, .eval = &er};
    if (f->c->on_event) f->c->on_event(&ev, f->c->user);
    return s;
}

/* The next micro-batch, into the decoder; a new epoch rewinds the data. */
static vp_status next_micro(struct lm_fit *f, bool *epoch_done) {
    struct lm_trainer *t = f->t;
    bool done = false;
    vp_status s = lm_data_next(f->data, &f->b, &done);
    if (s == VP_OK && done) {
        f->epoch++;
        f->batches_in_epoch = 0;
        s = lm_data_rewind(f->data, f->epoch);
        if (s == VP_OK) s = lm_data_next(f->data, &f->b, &done);
        if (s == VP_OK && done) s = vp_fail(VP_ERROR_BAD_INPUT, "%s holds no example", f->c->train);
    }
    if (s != VP_OK) return s;
    if (++f->batches_in_epoch == f->batches_per_epoch) *epoch_done = true;
    const int T = train_batch_length(f->b.S > f->b.T ? f->b.S : f->b.T, t->max_len, t->o.pad_multiple);
    s = t->s2s ? dev_batch_fill_s2s(&f->db, &f->b, t->o.batch, T, pad_of(f->data))
               : dev_batch_fill(&f->db, &f->b, t->o.batch, T, pad_of(f->data));
    for (int r = 0; r < f->b.B; r++) f->sum->base.examples++;
    for (size_t i = 0; i < (size_t)f->b.B * (size_t)f->b.T; i++) f->tokens += f->b.mask[i];
    for (size_t i = 0; t->s2s && i < (size_t)f->b.B * (size_t)f->b.S; i++) f->tokens += f->b.enc_mask[i];
    if (s == VP_OK) s = trainer_set_shape(t->tr, t->o.batch, T);
    if (s == VP_OK && t->s2s)
        s = seq2seq_write_batch(t->s2s, &(struct seq2seq_batch){f->db.enc_ids, f->db.enc_mask, f->db.ids, f->db.mask,
                                                                f->db.labels});
    else if (s == VP_OK)
        s = decoder_write_batch(t->m, &(struct decoder_batch){f->db.ids, f->db.mask, f->db.loss_mask});
    return s;
}

static vp_status fit_step(struct lm_fit *f, struct trainer_step_result *r, bool *epoch_done) {
    struct lm_trainer *t = f->t;
    vp_status s = VP_OK;
    for (int k = 0; k < t->o.accum && s == VP_OK; k++) {
        s = next_micro(f, epoch_done);
        if (s == VP_OK) s = trainer_micro_step_written(t->tr, k == t->o.accum - 1, f->total, r);
    }
    return s;
}

static vp_status checkpoint(struct lm_fit *f) {
    const struct lm_summary *sum = f->sum;
    const struct trainer_position pos = {
        .steps = trainer_steps_done(f->t->tr), .micro = trainer_micro_done(f->t->tr), .epoch = f->epoch,
        .pos = f->batches_in_epoch, .tokens = f->tokens, .examples = sum->base.examples,
        .log_bytes = train_log_bytes(f->log), .skipped = sum->base.skipped, .elapsed = vp_now() - f->t0,
        .first_loss = sum->base.first_loss, .has_eval = sum->has_eval,
        .eval = {.loss = sum->eval.loss, .count = sum->eval.examples, .labelled = sum->eval.tokens,
                 .metrics = {.accuracy = sum->eval.accuracy}},
        .best = {.loss = sum->best.loss, .count = sum->best.examples, .labelled = sum->best.tokens,
                 .metrics = {.accuracy = sum->best.accuracy}},
        .best_step = sum->best_step,
    };
    vp_status s = train_checkpoint_save(f->c->checkpoint_path, lm_trainer_params(f->t), &pos,
                                        f->c->checkpoint_settings);
    if (s == VP_OK) f->sum->base.checkpoints++;
    return s;
}

/* Continues from a checkpoint: the counters, the summary so far, and the
 * data at the epoch's batch where it was taken (the epoch's order comes
 * from the seed; the batches before are read and dropped on the host). */
static vp_status restore(struct lm_fit *f, const struct trainer_position *p) {
    struct lm_summary *sum = f->sum;
    trainer_restore_counts(f->t->tr, p->steps, p->micro);
    f->epoch = p->epoch;
    f->batches_in_epoch = p->pos;
    f->tokens = p->tokens;
    sum->base.examples = p->examples;
    sum->base.skipped = p->skipped;
    sum->base.first_loss = p->first_loss;
    sum->base.steps = p->steps;
    sum->has_eval = p->has_eval;
    sum->eval = (struct lm_eval_result){.loss = p->eval.loss, .examples = p->eval.count, .tokens = p->eval.labelled,
                                        .accuracy = p->eval.metrics.accuracy};
    sum->best = (struct lm_eval_result){.loss = p->best.loss, .examples = p->best.count, .tokens = p->best.labelled,
                                        .accuracy = p->best.metrics.accuracy};
    sum->best_step = p->best_step;
    if (isfinite(sum->eval.loss)) sum->eval.perplexity = exp(sum->eval.loss);
    if (isfinite(sum->best.loss)) sum->best.perplexity = exp(sum->best.loss);
    vp_status s = lm_data_rewind(f->data, f->epoch);
    for (uint64_t k = 0; s == VP_OK && k < p->pos; k++) {
        bool done = false;
        s = lm_data_next(f->data, &f->b, &done);
        if (s == VP_OK && done)
            s = vp_fail(VP_ERROR_BAD_INPUT, "the checkpoint is at batch %llu of epoch %llu, past the data's end",
                        (unsigned long long)p->pos, (unsigned long long)p->epoch);
    }
    return s;
}

static vp_status fit_loop(struct lm_fit *f) {
    struct lm_trainer *t = f->t;
    const struct lm_fit_config *c = f->c;
    struct trainer_summary *out = &f->sum->base;
    double first_seconds = 0, rest_seconds = 0;
    uint64_t timed = 0;
    struct trainer_step_result r = {0};
    bool evaluated_last = false;
    vp_status s = VP_OK;
    uint64_t first_step = 0;
    f->t0 = vp_now();
    if (c->resume) {
        first_step = c->resume->steps + c->resume->skipped;
        f->t0 -= c->resume->elapsed;
        if (first_step > f->total)
            return vp_fail(VP_ERROR_BAD_INPUT, "the checkpoint is at step %llu of %llu, past this run's end",
                           (unsigned long long)first_step, (unsigned long long)f->total);
    }
    for (uint64_t step = first_step; s == VP_OK && step < f->total; step++) {
        bool epoch_done = false;
        const double t_step = vp_now();
        s = fit_step(f, &r, &epoch_done);
        if (s != VP_OK) break;
        if (step == 0) out->first_loss = r.loss;
        if (step == first_step) {
            first_seconds = vp_now() - t_step;
        } else {
            rest_seconds += vp_now() - t_step;
            timed++;
        }
        out->steps = r.step;
        out->final_loss = r.loss;
        struct trainer_event ev = {
            .kind = TRAINER_EVENT_STEP, .step = step + 1, .total_steps = f->total,
            .epoch = epoch_done ? (double)(f->epoch + 1)
                                : (double)f->epoch + (double)f->batches_in_epoch / (double)f->batches_per_epoch,
            .elapsed = vp_now() - f->t0, .tokens = f->tokens, .last = r,
        };
        if (f->log) s = train_log_step(f->log, &ev);
        if (c->on_event) c->on_event(&ev, c->user);
        bool diverged = false;
        if (s == VP_OK) s = trainer_check_step(t->tr, f->log, step, &r, c->on_nonfinite, out, &diverged);
        if (diverged) break;
        const bool due = t->o.eval_every ? r.step % t->o.eval_every == 0 : epoch_done;
        evaluated_last = false;
        if (s == VP_OK && c->eval && due) {
            s = evaluate(f, &r);
            evaluated_last = true;
        }
        const bool stop = s == VP_OK && step + 1 < f->total && c->should_stop && c->should_stop(c->user);
        const bool ckpt_due = c->checkpoint_every ? (step + 1) % c->checkpoint_every == 0 : epoch_done;
        if (s == VP_OK && c->checkpoint_path && step + 1 < f->total && (ckpt_due || stop)) s = checkpoint(f);
        if (stop) {
            out->interrupted = true;
            if (f->log) s = train_log_interrupted(f->log, step + 1, vp_now() - f->t0);
            break;
        }
    }
    out->tokens = f->tokens;
    if (s == VP_OK && c->eval && !evaluated_last && !out->diverged && !out->interrupted && out->steps)
        s = evaluate(f, &r);
    out->seconds = vp_now() - f->t0;
    out->step_seconds = timed ? rest_seconds / (double)timed : first_seconds;
    return s;
}

vp_status lm_trainer_fit(struct lm_trainer *t, const struct lm_fit_config *c, const struct lm_scan *train,
                         struct lm_summary *out) {
    memset(out, 0, sizeof *out);
    if (t->src_len)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "trainer: a fit pads sources and targets to one length; this "
                       "trainer has a fixed source length (lm_trainer_set_source_len)");
    struct lm_fit f = {.t = t, .c = c, .sum = out, .batches_per_epoch = train->batches ? train->batches : 1};
    /* trainer_total_steps counts micro-batches as ceil(n / batch). */
    f.total = trainer_total_steps(&t->o, f.batches_per_epoch * (uint64_t)t->o.batch);
    struct lm_data_options o = data_options(t, &c->data);
    vp_status s = lm_data_open(c->train, &o, &f.data);
    if (s == VP_OK && c->resume) s = restore(&f, c->resume);
    if (s == VP_OK && c->log_path)
        s = c->resume ? train_log_reopen(c->log_path, c->resume->log_bytes, &f.log)
                      : train_log_open(c->log_path, &f.log);
    if (s == VP_OK && f.log && !c->resume) {
        uint64_t plan[VP_POOL_COUNT];
        struct delta_counts counts;
        uint64_t uncheckpointed = 0;
        trainer_plan(t->tr, plan);
        trainer_counts(t->tr, &counts);
        if (t->o.checkpoint_activations) {
            int B, S, T;
            vp_status ps;
            if (t->s2s) {
                seq2seq_batch_shape(t->s2s, &B, &S, &T);
                ps = seq2seq_plan_activations(t->s2s, B, S, T, false, &uncheckpointed);
            } else {
                decoder_batch_shape(t->m, &B, &T);
                ps = decoder_plan_activations(t->m, B, T, false, &uncheckpointed);
            }
            if (ps != VP_OK) uncheckpointed = 0;
        }
        s = train_log_start(f.log, f.total, t->o.batch, &counts, plan, uncheckpointed);
    }
    if (s == VP_OK) s = fit_loop(&f);
    if (f.log) {
        vp_status cs = train_log_close(f.log);
        if (s == VP_OK) s = cs;
    }
    lm_batch_finish(&f.b);
    dev_batch_finish(&f.db);
    lm_data_close(f.data);
    return s;
}
