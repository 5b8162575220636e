/* The trainer (runtime/train/trainer.h) on tiny BERT and RoBERTa models
 * written as real folders: every preset learns a synthetic task, runs are
 * reproducible from their seed, the optimisers match host computations
 * (AdamW's decay mask, SGD, clipping, accumulation), the frozen pool is
 * untouched and the pools hold exactly the plan, the data index and
 * batches behave. */
#include "encoder.h"
#include "kerneltest.h"
#include "model.h"
#include "safetensors.h"
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static vp_context *g_ctx;
static char g_root[256];

static vp_context *ctx_get(void) {
    if (!g_ctx) g_ctx = vt_context(NULL);
    return g_ctx;
}

static bool root_dir(void) {
    if (g_root[0]) return true;
    snprintf(g_root, sizeof g_root, "/tmp/vkpeft-test-train-XXXXXX");
    return CHECK(mkdtemp(g_root) != NULL);
}

/* ------------------------------------------------------------------------
 * Model folders: config.json + model.safetensors from the reference's
 * random weights
 * ------------------------------------------------------------------------ */

struct model_shape {
    bool bert;
    int d, layers, heads, ffn, vocab, labels, positions;
    double weight_std;
};

static const struct model_shape TINY_BERT = {true, 32, 2, 2, 64, 40, 3, 40, 0.2};
static const struct model_shape TINY_ROBERTA = {false, 32, 2, 2, 64, 40, 3, 42, 0.2};

static int config_json(char *buf, size_t size, const struct model_shape *m) {
    return snprintf(buf, size,
                    "{\"model_type\":\"%s\",\"vocab_size\":%d,\"hidden_size\":%d,\"num_hidden_layers\":%d,"
                    "\"num_attention_heads\":%d,\"intermediate_size\":%d,\"max_position_embeddings\":%d,"
                    "\"type_vocab_size\":%d,\"pad_token_id\":%d,\"layer_norm_eps\":%s,\"num_labels\":%d,"
                    "\"hidden_dropout_prob\":0.1,\"attention_probs_dropout_prob\":0.1}",
                    m->bert ? "bert" : "roberta", m->vocab, m->d, m->layers, m->heads, m->ffn, m->positions,
                    m->bert ? 2 : 1, m->bert ? 0 : 1, m->bert ? "1e-12" : "1e-5", m->labels);
}

static bool is_file_tensor(const char *name) {
    return strncmp(name, "bert.", 5) == 0 || strncmp(name, "roberta.", 8) == 0 ||
           strncmp(name, "classifier.", 11) == 0;
}

/* Writes a model folder `dir` (created) with random weights from `seed`. */
static bool write_model(const char *dir, const struct model_shape *ms, uint64_t seed) {
    char json[1024], path[512];
    config_json(json, sizeof json, ms);
    struct model_arch arch;
    struct delta_spec spec;
    if (!CHECK(mkdir(dir, 0755) == 0 || access(dir, F_OK) == 0)) return false;
    if (!CHECKF(model_arch_parse(json, strlen(json), "config.json", &arch) == VP_OK, "%s", vp_last_error()))
        return false;
    CHECK(delta_spec_preset("bitfit", &spec) == VP_OK);
    struct refm *m;
    const struct refm_options ro = {.seed = seed, .weight_std = ms->weight_std};
    bool ok = CHECKF(refm_create(&m, &arch, &spec, &ro) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    if (!ok) return false;
    snprintf(path, sizeof path, "%s/config.json", dir);
    ok = CHECK(vp_file_write_atomic(path, json, strlen(json)) == VP_OK);
    const int count = refm_tensor_count(m);
    struct io_tensor_out *out = calloc((size_t)count, sizeof *out);
    float **data = calloc((size_t)count, sizeof *data);
    size_t n = 0;
    for (int k = 0; k < count; k++) {
        struct refm_tensor *t = refm_tensor_at(m, k);
        if (!is_file_tensor(t->name)) continue;
        data[n] = malloc(t->n * sizeof **data);
        for (size_t i = 0; i < t->n; i++) data[n][i] = (float)t->data[i];
        out[n] = (struct io_tensor_out){t->name, IO_DTYPE_F32, t->ndim, {0}, data[n]};
        for (int i = 0; i < t->ndim; i++) out[n].shape[i] = t->shape[i];
        n++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ok = ok && CHECKF(io_safetensors_write(path, out, n, NULL) == VP_OK, "%s", vp_last_error());
    for (size_t k = 0; k < n; k++) free(data[k]);
    free(data);
    free(out);
    refm_destroy(m);
    return ok;
}

static const char *model_dir(bool bert) {
    static char dirs[2][300];
    static bool made[2];
    char *dir = dirs[bert];
    if (!made[bert] && root_dir()) {
        snprintf(dir, sizeof dirs[0], "%s/%s", g_root, bert ? "bert" : "roberta");
        made[bert] = write_model(dir, bert ? &TINY_BERT : &TINY_ROBERTA, bert ? 11 : 12);
    }
    return made[bert] ? dir : NULL;
}

/* ------------------------------------------------------------------------
 * The synthetic task: the label is which of three marker tokens (3, 4, 5)
 * the sequence holds; the other tokens are random in 6..39.
 * ------------------------------------------------------------------------ */

static bool write_task(const char *path, int count, bool bert, uint64_t seed) {
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL)) return false;
    uint64_t st = seed;
    for (int i = 0; i < count; i++) {
        const int len = 6 + (int)(th_rand_u64(&st) % 11);
        const int label = (int)(th_rand_u64(&st) % 3);
        const int at = 1 + (int)(th_rand_u64(&st) % (uint64_t)(len - 1));
        fprintf(f, "{\"input_ids\": [%d", bert ? 2 : 0);
        for (int t = 1; t < len; t++)
            fprintf(f, ", %d", t == at ? 3 + label : 6 + (int)(th_rand_u64(&st) % 34));
        fprintf(f, "], \"label\": %d}\n", label);
    }
    return CHECK(fclose(f) == 0);
}

/* RoBERTa's <s> is 0 where BERT's [CLS] is 2: both files hold the same
 * examples with the first token set for the model. */
static const char *task_for(bool bert, bool dev) {
    static const char *files[2][2];
    if (!files[bert][dev]) {
        char name[64];
        snprintf(name, sizeof name, "%s-%s", bert ? "bert" : "roberta", dev ? "dev" : "train");
        static char paths[2][2][300];
        if (!root_dir()) return NULL;
        snprintf(paths[bert][dev], sizeof paths[0][0], "%s/%s.jsonl", g_root, name);
        if (write_task(paths[bert][dev], dev ? 150 : 640, bert, dev ? 77 : 78)) files[bert][dev] = paths[bert][dev];
    }
    return files[bert][dev];
}

static struct io_dataset_options data_options(struct trainer *t, bool labels_required) {
    const struct model_arch *a = encoder_arch(trainer_encoder(t));
    return (struct io_dataset_options){.vocab_size = a->vocab_size, .num_labels = a->num_labels,
                                       .labels_required = labels_required, .max_len = trainer_max_len(t)};
}

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static struct trainer *open_trainer(bool bert, const char *preset, const struct trainer_options *o) {
    vp_context *ctx = ctx_get();
    const char *dir = model_dir(bert);
    struct delta_spec spec;
    if (!ctx || !dir || !CHECKF(delta_spec_preset(preset, &spec) == VP_OK, "%s", vp_last_error())) return NULL;
    struct trainer *t = NULL;
    if (!CHECKF(trainer_open(ctx, dir, &spec, o, &t) == VP_OK, "%s: %s", preset, vp_last_error())) return NULL;
    return t;
}

struct curve {
    double loss[4096], lr[4096];
    int n;
    bool eval_seen;
};

static void on_event(const struct trainer_event *ev, void *user) {
    struct curve *c = user;
    if (ev->kind == TRAINER_EVENT_STEP && c->n < 4096) {
        c->lr[c->n] = ev->last.lr;
        c->loss[c->n++] = ev->last.loss;
    }
    if (ev->kind == TRAINER_EVENT_EVAL) c->eval_seen = true;
}

static double mean(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return n ? s / n : 0;
}

/* ------------------------------------------------------------------------
 * Every preset learns the task
 * ------------------------------------------------------------------------ */

struct preset_case {
    const char *preset;
    bool bert;
    double lr;
};

/* BERT's head reads the frozen pooler (tanh of a random projection), which
 * hides much of the signal a tiny random encoder carries; RoBERTa's head
 * trains its dense layer too. The presets that learn the task on a BERT
 * head run on BERT (so both families train), the others on RoBERTa. */
static const struct preset_case presets[] = {
    {"adapter:r=8", false, 1e-2},   {"adapter-ffn:r=8", false, 1e-2}, {"prefix:l=4", false, 1e-2},
    {"lora:r=4", true, 1e-2},       {"pa:r=8", false, 1e-2},          {"scaled-pa:r=8,s=4", false, 1e-2},
    {"mh-pa:r=4", false, 1e-2},     {"mam:l=4,r=8,s=2", true, 1e-2},  {"bitfit", false, 1e-2},
    {"full", true, 1e-3},
};

/* Under the mobile limits profile every other preset runs: the kernels'
 * profile-dependent paths are covered by the kernel and model tests in
 * both profiles, and this case is the suite's slowest. */
static void every_preset_learns(void) {
    const char *limits = getenv("VKPEFT_LIMITS");
    const size_t stride = limits && strcmp(limits, "mobile") == 0 ? 2 : 1;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i += stride) {
        const struct preset_case *pc = &presets[i];
        struct trainer_options o;
        trainer_options_default(&o);
        o.lr = pc->lr;
        o.batch = 16;
        o.epochs = 6;
        o.dropout = 0;
        o.warmup_steps = 5;
        o.weight_decay = 0.0;
        o.seed = 5;
        const bool bert = pc->bert;
        struct trainer *t = open_trainer(bert, pc->preset, &o);
        if (!t) continue;
        struct io_dataset_options dopt = data_options(t, true);
        struct train_data *train = NULL, *dev = NULL;
        struct trainer_summary sum;
        struct curve c = {0};
        double t0 = vp_now();
        if (CHECKF(train_data_open(task_for(bert, false), &dopt, &train) == VP_OK, "%s", vp_last_error()) &&
            CHECKF(train_data_open(task_for(bert, true), &dopt, &dev) == VP_OK, "%s", vp_last_error()) &&
            CHECKF(trainer_load(t, train_data_longest(train)) == VP_OK, "%s", vp_last_error())) {
            const struct trainer_fit_config fc = {.train = train, .eval = dev, .on_event = on_event, .user = &c};
            /* The head trains with every preset. */
            const char *head = bert ? "classifier.weight" : "classifier.out_proj.weight";
            float head0[3 * 32], head1[3 * 32];
            const struct delta_params *params = encoder_params(trainer_encoder(t));
            CHECKF(delta_params_read(params, head, head0, 3 * 32) == VP_OK, "%s: %s", pc->preset, vp_last_error());
            if (CHECKF(trainer_fit(t, &fc, &sum) == VP_OK, "%s: %s", pc->preset, vp_last_error())) {
                const int k = c.n / 5;
                const double first = mean(c.loss, k), last = mean(c.loss + c.n - k, k);
                th_diag("%-18s %s: %3llu steps, loss %.3f -> %.3f, dev accuracy %.3f (best %.3f), %.1f ms/step, "
                        "%.1f s", pc->preset, bert ? "bert   " : "roberta", (unsigned long long)sum.steps, first,
                        last, sum.eval.metrics.accuracy, sum.best.metrics.accuracy, sum.step_seconds * 1e3,
                        vp_now() - t0);
                CHECKF(last < 0.6 * first, "%s: the loss went from %.3f to %.3f", pc->preset, first, last);
                CHECKF(sum.eval.metrics.accuracy > 0.7, "%s: dev accuracy %.3f (chance 0.33)", pc->preset,
                       sum.eval.metrics.accuracy);
                CHECK(!sum.diverged && c.eval_seen);
                CHECK(delta_params_read(params, head, head1, 3 * 32) == VP_OK);
                CHECKF(memcmp(head0, head1, sizeof head0) != 0, "%s: the head did not train", pc->preset);
            }
        }
        train_data_close(train);
        train_data_close(dev);
        trainer_destroy(t);
    }
}

/* ------------------------------------------------------------------------
 * Reproducibility
 * ------------------------------------------------------------------------ */

/* Trains `steps` steps of `preset` with the model's dropout on (so the
 * recordings depend on the step) and returns the loss curve. */
static bool curve_of(uint64_t seed, int steps, const char *log, struct curve *c) {
    struct trainer_options o;
    trainer_options_default(&o);
    o.lr = 5e-3;
    o.batch = 8;
    o.steps = (uint64_t)steps;
    o.seed = seed;
    o.warmup_ratio = 0.2;
    o.schedule = SCHEDULE_COSINE;
    struct trainer *t = open_trainer(false, "mam:l=2,r=4,s=2", &o);
    if (!t) return false;
    struct io_dataset_options dopt = data_options(t, true);
    struct train_data *train = NULL;
    struct trainer_summary sum;
    memset(c, 0, sizeof *c);
    bool ok = CHECKF(train_data_open(task_for(false, false), &dopt, &train) == VP_OK, "%s", vp_last_error()) &&
              CHECKF(trainer_load(t, train_data_longest(train)) == VP_OK, "%s", vp_last_error());
    if (ok) {
        const struct trainer_fit_config fc = {.train = train, .log_path = log, .on_event = on_event, .user = c};
        ok = CHECKF(trainer_fit(t, &fc, &sum) == VP_OK, "%s", vp_last_error()) && CHECK(c->n == steps);
        if (ok) th_diag("seed %llu: %d steps with dropout, %.1f ms/step (each step records again)",
                        (unsigned long long)seed, steps, sum.step_seconds * 1e3);
    }
    train_data_close(train);
    trainer_destroy(t);
    return ok;
}

static int count_lines(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Same seed, same device: the same loss curve bit for bit (dropout,
 * shuffling, initialisation and every reduction are deterministic); another
 * seed gives another curve. */
static void same_seed_same_curve(void) {
    static struct curve a, b, c;
    char log[400];
    if (!root_dir()) return;
    snprintf(log, sizeof log, "%s/determinism.jsonl", g_root);
    if (!curve_of(1, 24, log, &a) || !curve_of(1, 24, NULL, &b) || !curve_of(2, 24, NULL, &c)) return;
    CHECK(memcmp(a.loss, b.loss, sizeof a.loss[0] * (size_t)a.n) == 0);
    int same = 0;
    for (int i = 0; i < a.n; i++) same += a.loss[i] == c.loss[i];
    CHECKF(same < a.n / 4, "seed 2 repeats %d of %d losses of seed 1", same, a.n);
    th_diag("seed 1: %.6f .. %.6f; seed 2: %.6f .. %.6f", a.loss[0], a.loss[a.n - 1], c.loss[0], c.loss[c.n - 1]);
    /* The learning rate follows the schedule: 20% warm-up (5 steps), then
     * a half cosine, step by step as Hugging Face computes it. */
    const struct schedule sch = {SCHEDULE_COSINE, 5e-3, 5, 24};
    int lr_ok = 0;
    for (int i = 0; i < a.n; i++) lr_ok += a.lr[i] == schedule_lr(&sch, (uint64_t)i);
    CHECKF(lr_ok == a.n && a.lr[0] == 0 && a.lr[5] == 5e-3, "%d of %d learning rates follow the schedule", lr_ok,
           a.n);
    /* The log has a line per step, each valid JSON. */
    CHECK(count_lines(log, "\"type\":\"step\"") == 24);
    CHECK(count_lines(log, "\"loss\":") == 24);
}

/* ------------------------------------------------------------------------
 * Optimisers against host computations
 * ------------------------------------------------------------------------ */

struct host_params {
    int count;
    char (*name)[DELTA_NAME_MAX];
    bool *decay;
    double **value, **grad;
    size_t *n;
};

static void host_params_free(struct host_params *h) {
    for (int k = 0; k < h->count; k++) {
        free(h->value[k]);
        free(h->grad[k]);
    }
    free(h->name);
    free(h->decay);
    free(h->value);
    free(h->grad);
    free(h->n);
    memset(h, 0, sizeof *h);
}

/* Every trainable tensor's values (and gradients when `grads`). */
static bool host_params_read(struct trainer *t, bool grads, struct host_params *h) {
    const struct delta_params *p = encoder_params(trainer_encoder(t));
    h->count = p->count;
    h->name = calloc((size_t)p->count, sizeof *h->name);
    h->decay = calloc((size_t)p->count, sizeof *h->decay);
    h->value = calloc((size_t)p->count, sizeof *h->value);
    h->grad = calloc((size_t)p->count, sizeof *h->grad);
    h->n = calloc((size_t)p->count, sizeof *h->n);
    bool ok = true;
    for (int k = 0; ok && k < p->count; k++) {
        const struct delta_param *q = &p->items[k];
        snprintf(h->name[k], sizeof h->name[k], "%s", q->name);
        h->decay[k] = q->decay;
        h->n[k] = q->n;
        float *f = malloc(q->n * sizeof *f);
        h->value[k] = malloc(q->n * sizeof **h->value);
        ok = CHECK(delta_params_read(p, q->name, f, q->n) == VP_OK);
        for (size_t i = 0; i < q->n; i++) h->value[k][i] = f[i];
        if (grads) {
            h->grad[k] = malloc(q->n * sizeof **h->grad);
            ok = ok && CHECK(delta_params_read_grad(p, q->name, f, q->n) == VP_OK);
            for (size_t i = 0; i < q->n; i++) h->grad[k][i] = f[i];
        }
        free(f);
    }
    return ok;
}

/* The first `count` training examples as a batch of t's shape. */
static bool first_batch(struct trainer *t, struct train_data *d, uint64_t first, int count, struct train_batch *b) {
    uint64_t idx[64];
    for (int i = 0; i < count; i++) idx[i] = first + (uint64_t)i;
    return CHECK(train_batch_init(b, trainer_get_options(t)->batch, 64) == VP_OK) &&
           CHECKF(train_batch_fill(b, d, idx, count, encoder_arch(trainer_encoder(t))->pad_token_id, 64, 0) == VP_OK,
                  "%s", vp_last_error());
}

/* The gradients of one batch, by the model alone (zeroed first). */
static bool grads_of(struct trainer *t, const struct train_batch *b) {
    struct encoder *e = trainer_encoder(t);
    const struct encoder_batch view = train_batch_view(b);
    bool ok = CHECK(encoder_set_batch(e, b->B, b->T) == VP_OK) && CHECK(encoder_zero_grads(e) == VP_OK) &&
              CHECK(encoder_write_batch(e, &view) == VP_OK) && CHECK(encoder_run(e, ENCODER_PASS_TRAIN) == VP_OK);
    trainer_forget_recordings(t);
    return ok;
}

/* A trainer on a loaded tiny model with the training file open. */
static struct trainer *loaded_trainer(bool bert, const char *preset, const struct trainer_options *o,
                                      struct train_data **train) {
    struct trainer *t = open_trainer(bert, preset, o);
    *train = NULL;
    if (!t) return NULL;
    struct io_dataset_options dopt = data_options(t, true);
    if (!CHECKF(train_data_open(task_for(bert, false), &dopt, train) == VP_OK, "%s", vp_last_error()) ||
        !CHECKF(trainer_load(t, 16) == VP_OK, "%s", vp_last_error())) {
        train_data_close(*train);
        *train = NULL;
        trainer_destroy(t);
        return NULL;
    }
    return t;
}

/* Whether a tensor is exempt from weight decay, by its name alone (the
 * recipe: biases and LayerNorm parameters are not decayed). */
static bool exempt_by_name(const char *name) {
    size_t n = strlen(name);
    return (n >= 4 && strcmp(name + n - 4, "bias") == 0) || strstr(name, "LayerNorm") != NULL;
}

/* One AdamW step of full fine-tuning (every kind of tensor: matrices,
 * embeddings, biases, LayerNorm γ and β, the head) against torch.optim.AdamW
 * computed in double on the host from the same gradients, with a large
 * weight decay so that decaying an exempt tensor would show. fp32 on the
 * device: the update is lr·m̂/(√v̂+ε) ≈ lr per element, so 1e-6 absolute
 * (1e-4 of lr) bounds its rounding; the decay term is lr·wd·|p| = 5e-3·|p|,
 * far above that for any |p| > 1e-3. */
static void adamw_decay_mask(void) {
    struct trainer_options o;
    trainer_options_default(&o);
    o.lr = 1e-2;
    o.weight_decay = 0.5;
    o.beta1 = 0.8;
    o.beta2 = 0.95;
    o.eps = 1e-6;
    o.clip = 0;
    o.batch = 8;
    o.dropout = 0;
    o.schedule = SCHEDULE_CONSTANT;
    struct train_data *train;
    struct trainer *t = loaded_trainer(true, "full", &o, &train);
    if (!t) return;
    struct train_batch b;
    struct host_params before = {0}, after = {0};
    struct trainer_step_result r;
    if (first_batch(t, train, 0, 8, &b) && grads_of(t, &b) && host_params_read(t, true, &before) &&
        CHECKF(trainer_micro_step(t, &b, true, 10, &r) == VP_OK, "%s", vp_last_error()) &&
        host_params_read(t, false, &after)) {
        CHECK(r.step == 1 && r.lr == o.lr);
        int exempt = 0, decayed = 0, bad = 0, telling = 0;
        double worst = 0;
        for (int k = 0; k < before.count; k++) {
            const bool decay = !exempt_by_name(before.name[k]);
            CHECKF(before.decay[k] == decay, "%s: decay flag %d", before.name[k], before.decay[k]);
            exempt += !decay;
            decayed += decay;
            for (size_t i = 0; i < before.n[k]; i++) {
                const double g = before.grad[k][i], p = before.value[k][i];
                const double m = (1 - o.beta1) * g, v = (1 - o.beta2) * g * g;
                double want = decay ? p * (1 - o.lr * o.weight_decay) : p;
                want -= o.lr / (1 - o.beta1) * m / (sqrt(v) / sqrt(1 - o.beta2) + o.eps);
                const double err = fabs(after.value[k][i] - want);
                /* Exempt values whose decay would be 10x the tolerance. */
                telling += !decay && o.lr * o.weight_decay * fabs(p) > 1e-5;
                if (err > worst) worst = err;
                if (err > 1e-6 && bad++ < 5)
                    th_diag("%s[%zu]: %.9g, want %.9g (before %.9g, grad %.3g)", before.name[k], i,
                            after.value[k][i], want, p, g);
            }
        }
        CHECKF(bad == 0, "%d values differ from the host AdamW step", bad);
        CHECK(exempt > 10 && decayed > 10);
        CHECKF(telling > 100, "only %d exempt values would show a decay", telling);
        th_diag("%d tensors decayed, %d exempt (%d exempt values large enough to show a decay); worst error %.3g",
                decayed, exempt, telling, worst);
    }
    host_params_free(&before);
    host_params_free(&after);
    train_batch_finish(&b);
    train_data_close(train);
    trainer_destroy(t);
}

/* SGD with weight decay and clipping against torch: the gradients scaled
 * by min(1, c/(‖g‖+1e-6)), then d = g + wd·p for decayed tensors, p -= lr·d;
 * the reported norm is ‖g‖ before clipping. */
static void sgd_with_clipping(void) {
    struct trainer_options o;
    trainer_options_default(&o);
    o.optimizer = TRAINER_SGD;
    o.lr = 0.5;
    o.weight_decay = 0.1;
    o.clip = 1e-3;
    o.batch = 8;
    o.dropout = 0;
    o.schedule = SCHEDULE_CONSTANT;
    struct train_data *train;
    struct trainer *t = loaded_trainer(false, "lora:r=2", &o, &train);
    if (!t) return;
    struct train_batch b;
    struct host_params before = {0}, after = {0};
    struct trainer_step_result r;
    if (first_batch(t, train, 8, 8, &b) && grads_of(t, &b) && host_params_read(t, true, &before) &&
        CHECKF(trainer_micro_step(t, &b, true, 10, &r) == VP_OK, "%s", vp_last_error()) &&
        host_params_read(t, false, &after)) {
        double norm2 = 0;
        for (int k = 0; k < before.count; k++)
            for (size_t i = 0; i < before.n[k]; i++) norm2 += before.grad[k][i] * before.grad[k][i];
        const double norm = sqrt(norm2), coef = fmin(1.0, o.clip / (norm + 1e-6));
        CHECKF(fabs(r.grad_norm - norm) <= 1e-5 * norm, "norm %.9g, host %.9g", r.grad_norm, norm);
        CHECKF(coef < 0.1, "the norm %.3g should be well above the clip %g", norm, o.clip);
        int bad = 0;
        for (int k = 0; k < before.count; k++)
            for (size_t i = 0; i < before.n[k]; i++) {
                const double p = before.value[k][i];
                const double d = before.grad[k][i] * coef + (before.decay[k] ? o.weight_decay * p : 0);
                const double want = p - o.lr * d;
                if (fabs(after.value[k][i] - want) > 1e-6 + 1e-6 * fabs(want) && bad++ < 5)
                    th_diag("%s[%zu]: %.9g, want %.9g", before.name[k], i, after.value[k][i], want);
            }
        CHECKF(bad == 0, "%d values differ from the host SGD step", bad);
        th_diag("grad norm %.4g clipped to %g (coefficient %.3g)", norm, o.clip, coef);
    }
    host_params_free(&before);
    host_params_free(&after);
    train_batch_finish(&b);
    train_data_close(train);
    trainer_destroy(t);
}

/* Two micro-batches of 4 accumulated give the step one batch of 8 gives:
 * the same loss, gradient norm and updated parameters (to fp32 rounding of
 * sums taken in another order: 1e-5 relative). */
static void accumulation_equals_double_batch(void) {
    struct trainer_options o;
    trainer_options_default(&o);
    o.optimizer = TRAINER_SGD;
    o.lr = 0.5;
    o.weight_decay = 0;
    o.clip = 0;
    o.dropout = 0;
    o.schedule = SCHEDULE_CONSTANT;
    o.batch = 8;
    struct train_data *d1, *d2;
    struct trainer *one = loaded_trainer(false, "pa:r=4", &o, &d1);
    o.batch = 4;
    o.accum = 2;
    struct trainer *two = loaded_trainer(false, "pa:r=4", &o, &d2);
    struct train_batch b8, b4a, b4b;
    struct host_params p1 = {0}, p2 = {0};
    struct trainer_step_result r1, r2;
    if (one && two && first_batch(one, d1, 16, 8, &b8) && first_batch(two, d2, 16, 4, &b4a) &&
        first_batch(two, d2, 20, 4, &b4b) && CHECK(trainer_micro_step(one, &b8, true, 1, &r1) == VP_OK) &&
        CHECK(trainer_micro_step(two, &b4a, false, 1, NULL) == VP_OK) &&
        CHECK(trainer_micro_step(two, &b4b, true, 1, &r2) == VP_OK) && host_params_read(one, false, &p1) &&
        host_params_read(two, false, &p2) && CHECK(p1.count == p2.count)) {
        th_diag("batch 8: loss %.7f norm %.7f; 2 x 4: loss %.7f norm %.7f", r1.loss, r1.grad_norm, r2.loss,
                r2.grad_norm);
        CHECK(fabs(r1.loss - r2.loss) <= 1e-5 * r1.loss);
        CHECK(fabs(r1.grad_norm - r2.grad_norm) <= 1e-5 * r1.grad_norm);
        CHECK(trainer_steps_done(two) == 1);
        int bad = 0;
        for (int k = 0; k < p1.count; k++)
            for (size_t i = 0; i < p1.n[k]; i++)
                if (fabs(p1.value[k][i] - p2.value[k][i]) > 1e-6 + 1e-5 * fabs(p1.value[k][i]) && bad++ < 5)
                    th_diag("%s[%zu]: %.9g vs %.9g", p1.name[k], i, p1.value[k][i], p2.value[k][i]);
        CHECKF(bad == 0, "%d values differ", bad);
    }
    if (one) {
        train_batch_finish(&b8);
        train_data_close(d1);
    }
    if (two) {
        train_batch_finish(&b4a);
        train_batch_finish(&b4b);
        train_data_close(d2);
    }
    host_params_free(&p1);
    host_params_free(&p2);
    trainer_destroy(one);
    trainer_destroy(two);
}

/* A step is one submission, replayed: after the first step (which
 * records), steps on new batches of the same shape submit once each and
 * record nothing; with --accum 2 a step is two submissions. */
static void one_submission_per_step(void) {
    for (int accum = 1; accum <= 2; accum++) {
        struct trainer_options o;
        trainer_options_default(&o);
        o.batch = 8;
        o.accum = accum;
        o.dropout = 0;
        o.lr = 1e-3;
        struct train_data *train;
        struct trainer *t = loaded_trainer(false, "pa:r=4", &o, &train);
        if (!t) return;
        struct train_batch b;
        struct trainer_step_result r;
        vp_stats s0, s1;
        int steps = 0;
        bool ok = CHECK(train_batch_init(&b, 8, 16) == VP_OK);
        for (uint64_t first = 0; ok && steps < 6 && first + 8 <= train_data_count(train); first += 8) {
            uint64_t idx[8];
            for (int i = 0; i < 8; i++) idx[i] = first + (uint64_t)i;
            ok = CHECK(train_batch_fill(&b, train, idx, 8, 1, 16, 0) == VP_OK);
            if (!ok || b.T != 16) continue; /* one shape only */
            for (int k = 0; ok && k < accum; k++)
                ok = CHECKF(trainer_micro_step(t, &b, k == accum - 1, 100, &r) == VP_OK, "%s", vp_last_error());
            if (++steps == 1) vp_context_stats(g_ctx, &s0);
        }
        vp_context_stats(g_ctx, &s1);
        if (ok && CHECK(steps == 6)) {
            CHECKF(s1.submissions - s0.submissions == (uint64_t)(5 * accum), "accum %d: %llu submissions for 5 steps",
                   accum, (unsigned long long)(s1.submissions - s0.submissions));
            CHECKF(s1.dispatches_recorded == s0.dispatches_recorded, "accum %d: %llu dispatches recorded again",
                   accum, (unsigned long long)(s1.dispatches_recorded - s0.dispatches_recorded));
            CHECK(trainer_steps_done(t) == 6 && r.step == 6);
        }
        train_batch_finish(&b);
        train_data_close(train);
        trainer_destroy(t);
    }
}

/* ------------------------------------------------------------------------
 * Memory: the plan, the frozen pool
 * ------------------------------------------------------------------------ */

static void pools_and_frozen_weights(void) {
    vp_context *ctx = ctx_get();
    if (!ctx) return;
    vp_pool_stats before[VP_POOL_COUNT], now;
    for (int p = 0; p < VP_POOL_COUNT; p++) vp_pool_stats_get(ctx, (vp_pool)p, &before[p]);
    struct trainer_options o;
    trainer_options_default(&o);
    o.batch = 8;
    o.steps = 12;
    o.lr = 1e-2;
    struct train_data *train;
    struct trainer *t = loaded_trainer(false, "mam:l=2,r=4,s=2", &o, &train);
    if (!t) return;
    uint64_t plan[VP_POOL_COUNT];
    trainer_plan(t, plan);
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        vp_pool_stats_get(ctx, (vp_pool)p, &now);
        CHECKF(now.in_use - before[p].in_use == plan[p], "%s pool holds %llu bytes, the plan says %llu",
               vp_pool_name((vp_pool)p), (unsigned long long)(now.in_use - before[p].in_use),
               (unsigned long long)plan[p]);
    }
    uint64_t h0 = 0, h1 = 1;
    vp_pool_stats tr0, tr1;
    vp_pool_stats_get(ctx, VP_POOL_TRAINABLE, &tr0);
    struct trainer_summary sum;
    const struct trainer_fit_config fc = {.train = train};
    CHECK(encoder_frozen_hash(trainer_encoder(t), &h0) == VP_OK);
    CHECKF(trainer_fit(t, &fc, &sum) == VP_OK, "%s", vp_last_error());
    CHECK(encoder_frozen_hash(trainer_encoder(t), &h1) == VP_OK);
    CHECKF(h0 == h1, "the frozen pool changed: %016llx -> %016llx", (unsigned long long)h0,
           (unsigned long long)h1);
    vp_pool_stats_get(ctx, VP_POOL_TRAINABLE, &tr1);
    CHECK(tr1.in_use == tr0.in_use);
    CHECK(sum.steps == 12 && isfinite(sum.final_loss));
    /* The trainable tensors did change. */
    trainer_plan(t, plan);
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        vp_pool_stats_get(ctx, (vp_pool)p, &now);
        CHECKF(now.in_use - before[p].in_use == plan[p], "after training, %s pool holds %llu bytes, the plan %llu",
               vp_pool_name((vp_pool)p), (unsigned long long)(now.in_use - before[p].in_use),
               (unsigned long long)plan[p]);
    }
    train_data_close(train);
    trainer_destroy(t);
    vk_pools_trim(ctx);
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        vp_pool_stats_get(ctx, (vp_pool)p, &now);
        CHECKF(now.in_use == before[p].in_use, "%s pool leaked %llu bytes", vp_pool_name((vp_pool)p),
               (unsigned long long)(now.in_use - before[p].in_use));
    }
}

/* ------------------------------------------------------------------------
 * Data, batches, evaluation
 * ------------------------------------------------------------------------ */

static bool write_text(const char *path, const char *text) {
    return CHECK(vp_file_write_atomic(path, text, strlen(text)) == VP_OK);
}

static void data_index_and_errors(void) {
    char path[400];
    if (!root_dir()) return;
    const struct io_dataset_options o = {.vocab_size = 40, .num_labels = 3, .labels_required = true, .max_len = 5};
    struct train_data *d = NULL;
    snprintf(path, sizeof path, "%s/data.jsonl", g_root);
    write_text(path, "{\"input_ids\": [2, 7, 8], \"label\": 1}\n\n"
                     "{\"input_ids\": [2, 9, 10, 11, 12, 13, 14], \"label\": 0}\n"
                     "{\"input_ids\": [2, 15], \"label\": 2}\n");
    if (CHECKF(train_data_open(path, &o, &d) == VP_OK, "%s", vp_last_error())) {
        CHECK(train_data_count(d) == 3 && train_data_labelled(d) == 3);
        CHECK(train_data_longest(d) == 5); /* truncated to max_len */
        struct io_example ex;
        CHECK(train_data_get(d, 2, &ex) == VP_OK && ex.len == 2 && ex.ids[1] == 15 && ex.line == 4);
        CHECK(train_data_get(d, 0, &ex) == VP_OK && ex.len == 3 && ex.label == 1 && ex.line == 1);
        CHECK(train_data_get(d, 1, &ex) == VP_OK && ex.len == 5 && ex.ids[4] == 12);
        /* A batch of 4 rows from 3 examples: row 3 repeats row 0, ignored. */
        struct train_batch b;
        const uint64_t idx[3] = {2, 0, 1};
        if (CHECK(train_batch_init(&b, 4, 16) == VP_OK) && CHECK(train_batch_fill(&b, d, idx, 3, 0, 16, 4) == VP_OK)) {
            CHECK(b.T == 8 && b.rows == 3); /* 5 rounded up to a multiple of 4 */
            CHECK(b.ids[0] == 2 && b.ids[1] == 15 && b.ids[2] == 0 && b.mask[1] == 1 && b.mask[2] == 0);
            CHECK(b.ids[8 + 2] == 8 && b.mask[8 + 2] == 1 && b.mask[8 + 3] == 0);
            CHECK(b.mask[16 + 4] == 1 && b.mask[16 + 5] == 0);
            CHECK(b.labels[0] == 2 && b.labels[1] == 1 && b.labels[2] == 0 && b.labels[3] == ENCODER_IGNORE_INDEX);
            CHECK(memcmp(b.ids + 24, b.ids, 8 * sizeof *b.ids) == 0);
        }
        train_batch_finish(&b);
        train_data_close(d);
    }
    CHECK(train_batch_length(5, 128, 0) == 8 && train_batch_length(65, 128, 0) == 80 &&
          train_batch_length(300, 512, 0) == 320 && train_batch_length(100, 90, 0) == 90 &&
          train_batch_length(9, 128, 16) == 16);
    /* A label outside the model's labels, on line 3. */
    write_text(path, "{\"input_ids\": [2, 7], \"label\": 1}\n{\"input_ids\": [2, 7], \"label\": 0}\n"
                     "{\"input_ids\": [2, 7], \"label\": 3}\n");
    CHECK(train_data_open(path, &o, &d) == VP_ERROR_BAD_INPUT && d == NULL);
    th_diag("message: %s", vp_last_error());
    char where[420];
    snprintf(where, sizeof where, "%s:3:", path);
    CHECK(strstr(vp_last_error(), where) != NULL);
    write_text(path, "\n\n");
    CHECK(train_data_open(path, &o, &d) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "no examples") != NULL);
    /* Permutations: every index once, another order each epoch, the same
     * for the same seed. */
    uint64_t p1[100], p2[100], p3[100];
    train_permutation(p1, 100, 7, 0);
    train_permutation(p2, 100, 7, 1);
    train_permutation(p3, 100, 7, 0);
    bool seen[100] = {0};
    int moved = 0;
    for (int i = 0; i < 100; i++) {
        if (p1[i] < 100) seen[p1[i]] = true;
        moved += p1[i] != p2[i];
    }
    int all = 0;
    for (int i = 0; i < 100; i++) all += seen[i];
    CHECK(all == 100 && moved > 80 && memcmp(p1, p3, sizeof p1) == 0);
}

struct collected {
    int32_t labels[256], preds[256];
    uint64_t next;
    int n;
    bool in_order;
};

static vp_status collect(void *user, uint64_t index, const float *logits, int classes, int pred, int32_t label) {
    struct collected *c = user;
    c->in_order &= index == c->next++;
    int best = 0;
    for (int k = 1; k < classes; k++)
        if (logits[k] > logits[best]) best = k;
    c->in_order &= best == pred;
    if (label >= 0 && c->n < 256) {
        c->labels[c->n] = label;
        c->preds[c->n++] = pred;
    }
    return VP_OK;
}

/* Evaluation visits every example once in file order (batches with a
 * short last one) and its metrics are those of the predictions it reports. */
static void evaluation_reports_every_example(void) {
    struct trainer_options o;
    trainer_options_default(&o);
    o.batch = 16;
    struct train_data *train, *dev = NULL;
    struct trainer *t = loaded_trainer(false, "lora:r=2", &o, &train);
    if (!t) return;
    struct io_dataset_options dopt = data_options(t, true);
    struct collected c = {.in_order = true};
    struct trainer_eval_result r;
    if (CHECK(train_data_open(task_for(false, true), &dopt, &dev) == VP_OK) &&
        CHECKF(trainer_evaluate(trainer_encoder(t), dev, 16, 64, 0, collect, &c, &r) == VP_OK, "%s",
               vp_last_error())) {
        struct metrics_classification m;
        CHECK(c.in_order && c.next == 150 && c.n == 150 && r.count == 150 && r.labelled == 150);
        CHECK(metrics_classify(c.labels, c.preds, (size_t)c.n, 3, &m) == VP_OK);
        CHECK(m.accuracy == r.metrics.accuracy && m.macro_f1 == r.metrics.macro_f1 && m.matthews == r.metrics.matthews);
        CHECK(r.loss > 0.5 && r.loss < 2.0);
        th_diag("untrained: loss %.4f accuracy %.3f", r.loss, r.metrics.accuracy);
    }
    train_data_close(dev);
    train_data_close(train);
    trainer_destroy(t);
}

static void teardown(void) {
    vp_context_destroy(g_ctx);
    g_ctx = NULL;
    if (g_root[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
        CHECK(system(cmd) == 0);
    }
}

VT_MAIN(TH_CASE(data_index_and_errors), TH_CASE(adamw_decay_mask), TH_CASE(sgd_with_clipping),
        TH_CASE(accumulation_equals_double_batch), TH_CASE(one_submission_per_step),
        TH_CASE(pools_and_frozen_weights),
        TH_CASE(evaluation_reports_every_example), TH_CASE(same_seed_same_curve), TH_CASE(every_preset_learns),
        TH_CASE(teardown))
