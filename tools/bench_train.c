/* vkpeft bench train: tokens/s and ms per optimiser step of a training
 * step (forward, backward, gradient norm, AdamW: one submission) on an
 * encoder (classification), decoder-only (causal LM) or encoder-decoder
 * (seq2seq LM) model folder, on random token ids of a fixed shape. The
 * first step (recording, shader compilation) is reported apart from the
 * steady steps. */
#include "bench.h"
#include "cli.h"
#include "cli_trainer.h"
#include "lmtrainer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: vkpeft bench train --model DIR [--delta PRESET] [--batch B] [--len T] [--steps N]\n"
    "                          [--target-len T] [--weights f32|f16|bf16] [--checkpoint-activations]\n"
    "                          [--profile] [--json] [--device N|name]\n"
    "\n"
    "Times training steps of the delta (default lora) on B random sequences of T\n"
    "tokens (default 4 x 32, 10 steps): an encoder trains its classification\n"
    "head and delta, a decoder-only model (GPT-2, LLaMA family) the causal-LM\n"
    "loss, an encoder-decoder (BART, mBART) the seq2seq loss with label\n"
    "smoothing 0.1 (vkpeft train's default for it) on B random sources of --len\n"
    "tokens and B random targets of --target-len tokens (default: --len), the\n"
    "decoder reading the targets shifted right behind decoder_start_token_id.\n"
    "Dropout is off. Prints the first step's time (recording and compiling),\n"
    "then, after two untimed steps, the mean of N timed steps as ms/step and\n"
    "tokens/s, and the device memory the trainer planned per pool. The tokens\n"
    "of a step are B·T, and for an encoder-decoder B·(source + target), as\n"
    "vkpeft train's tokens_per_second counts both sides (with --json:\n"
    "\"tokens_per_step\").\n"
    "--checkpoint-activations recomputes each layer in the backward instead of\n"
    "keeping its activations.\n"
    "--profile then runs one more step recorded with a GPU timestamp after every\n"
    "command and prints its GPU time per kernel (the shader and its defines),\n"
    "grouped by the site that recorded it (forward attention, backward lora,\n"
    "optimizer, ...), largest first: calls, calls right after a barrier,\n"
    "workgroups per call; and the step's dispatches and barriers\n"
    "(with --json: \"profile\" and \"profile_step\"). A kernel's time runs from\n"
    "the previous command's timestamp to its own: commands with no barrier\n"
    "between them overlap and share it. Needs timestamps on the compute queue.\n";

struct bench_train_args {
    struct cli_common common;
    const char *model, *delta;
    int len, target_len; /* target_len: encoder-decoders; 0: len */
    bool profile;
    struct trainer_options o;
};

/* A step's shape: B rows of len tokens, and for an encoder-decoder
 * (target_len > 0) the sources of len tokens and targets of target_len. */
struct bench_shape {
    int B, len, target_len;
};

/* Random ids below the vocabulary, avoiding the first 4 (specials). */
static void random_ids(int32_t *ids, size_t n, int vocab, uint64_t *state) {
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = vocab > 8 ? 4 + (int32_t)((*state >> 33) % (uint64_t)(vocab - 4)) : 0;
    }
}

/* One step on whatever model t trains; the caller has written the batch. */
typedef vp_status (*step_fn)(void *user, uint64_t step);
/* The trainer of a bench (for --profile). */
typedef struct trainer *(*trainer_fn)(void *user);

struct dec_bench {
    struct lm_trainer *t;
    int B, T;
    int32_t *ids;
};
static vp_status dec_step(void *user, uint64_t step) {
    struct dec_bench *d = user;
    struct trainer *tr = lm_trainer_trainer(d->t);
    uint64_t state = step + 1;
    random_ids(d->ids, (size_t)d->B * d->T, decoder_arch(lm_trainer_decoder(d->t))->vocab_size, &state);
    vp_status s = trainer_set_shape(tr, d->B, d->T);
    if (s == VP_OK) s = decoder_write_batch(lm_trainer_decoder(d->t), &(struct decoder_batch){d->ids, NULL, NULL});
    return s == VP_OK ? trainer_micro_step_written(tr, true, 1000000, NULL) : s;
}
static struct trainer *dec_trainer(void *user) { return lm_trainer_trainer(((struct dec_bench *)user)->t); }

struct enc_bench {
    struct trainer *t;
    struct train_batch b;
};
static vp_status enc_step(void *user, uint64_t step) {
    struct enc_bench *e = user;
    uint64_t state = step + 1;
    random_ids(e->b.ids, (size_t)e->b.B * e->b.T, encoder_arch(trainer_encoder(e->t))->vocab_size, &state);
    return trainer_micro_step(e->t, &e->b, true, 1000000, NULL);
}
static struct trainer *enc_trainer(void *user) { return ((struct enc_bench *)user)->t; }

struct s2s_bench {
    struct lm_trainer *t;
    int B, S, T;
    int32_t start;                /* the decoder's first input */
    int32_t *src, *dec, *labels;  /* (B,S), (B,T), (B,T) */
};
/* Random sources and targets; the decoder reads the targets shifted right
 * behind the start token (lmdata.c's shift_tokens_right). Every token is
 * real and every target scored. */
static vp_status s2s_step(void *user, uint64_t step) {
    struct s2s_bench *d = user;
    struct trainer *tr = lm_trainer_trainer(d->t);
    struct seq2seq *m = lm_trainer_seq2seq(d->t);
    const int V = seq2seq_arch(m)->vocab_size;
    uint64_t state = step + 1;
    random_ids(d->src, (size_t)d->B * d->S, V, &state);
    random_ids(d->labels, (size_t)d->B * d->T, V, &state);
    for (int r = 0; r < d->B; r++)
        for (int k = 0; k < d->T; k++) {
            const size_t i = (size_t)r * d->T + k;
            d->dec[i] = k == 0 ? d->start : d->labels[i - 1];
        }
    vp_status s = trainer_set_shape(tr, d->B, d->T);
    if (s == VP_OK) s = seq2seq_write_batch(m, &(struct seq2seq_batch){d->src, NULL, d->dec, NULL, d->labels});
    return s == VP_OK ? trainer_micro_step_written(tr, true, 1000000, NULL) : s;
}
static struct trainer *s2s_trainer(void *user) { return lm_trainer_trainer(((struct s2s_bench *)user)->t); }

/* bytes: what the trainer planned per pool (model and optimiser). */
static int report(const struct bench_train_args *a, vp_context *ctx, step_fn fn, trainer_fn trainer, void *user,
                  const struct bench_shape *sh, const uint64_t bytes[VP_POOL_COUNT]) {
    /* The first step (recording, compiling), WARMUP untimed steps (a GPU
     * raises its clocks), then the timed steps. */
    enum { WARMUP = 2 };
    const int timed = a->o.steps > 0 ? (int)a->o.steps : 1, steps = 1 + WARMUP + timed;
    double t0 = vp_now(), first = 0;
    vp_status s = VP_OK;
    for (int i = 0; i < steps && s == VP_OK; i++) {
        s = fn(user, (uint64_t)i);
        if (i == 0) first = vp_now() - t0;
        if (i == WARMUP) t0 = vp_now();
    }
    const double tokens = (double)sh->B * (sh->len + sh->target_len);
    const double ms = (vp_now() - t0) * 1e3 / timed, tps = tokens / (ms / 1e3);
    struct vk_profile prof = {0};
    if (s == VP_OK && a->profile) s = trainer_profile_step(trainer(user), &prof);
    if (s != VP_OK) return cli_fail(s);
    if (a->common.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", a->model);
        cJSON_AddStringToObject(o, "delta", a->delta);
        cJSON_AddStringToObject(o, "device", vp_context_device(ctx)->name);
        cJSON_AddNumberToObject(o, "batch", sh->B);
        cJSON_AddNumberToObject(o, "len", sh->len);
        if (sh->target_len) cJSON_AddNumberToObject(o, "target_len", sh->target_len);
        cJSON_AddNumberToObject(o, "tokens_per_step", tokens);
        cJSON_AddNumberToObject(o, "steps", timed);
        cJSON_AddNumberToObject(o, "first_step_ms", first * 1e3);
        cJSON_AddNumberToObject(o, "ms_per_step", ms);
        cJSON_AddNumberToObject(o, "tokens_per_second", tps);
        cJSON *mem = cJSON_AddObjectToObject(o, "planned_bytes");
        uint64_t total = 0;
        for (int p = 0; p < VP_POOL_COUNT; p++) {
            cJSON_AddNumberToObject(mem, vp_pool_name((vp_pool)p), (double)bytes[p]);
            total += bytes[p];
        }
        cJSON_AddNumberToObject(mem, "total", (double)total);
        cJSON_AddBoolToObject(o, "checkpoint_activations", a->o.checkpoint_activations);
        if (a->profile) bench_profile_json(o, &prof);
        char *text = cJSON_Print(o);
        puts(text);
        free(text);
        cJSON_Delete(o);
    } else {
        printf("train %s with %s on %s: ", a->model, a->delta, vp_context_device(ctx)->name);
        if (sh->target_len)
            printf("%d x (%d source + %d target) tokens, %d steps\n", sh->B, sh->len, sh->target_len, timed);
        else
            printf("%d x %d tokens, %d steps\n", sh->B, sh->len, timed);
        printf("first step %.1f ms; then %.2f ms/step, %.0f tokens/s\n", first * 1e3, ms, tps);
        uint64_t total = 0;
        printf("device memory planned:");
        for (int p = 0; p < VP_POOL_COUNT; p++) {
            printf(" %s %.1f MiB,", vp_pool_name((vp_pool)p), bytes[p] / 1048576.0);
            total += bytes[p];
        }
        printf(" total %.1f MiB%s\n", total / 1048576.0, a->o.checkpoint_activations ? " (activations checkpointed)" : "");
        if (a->profile) bench_profile_print(&prof, "training step", ms);
    }
    vk_profile_finish(&prof);
    return EXIT_OK;
}

/* Each model's bench: opened, loaded at the bench's shape (so the plan is
 * the shape's), timed. */
static int run_decoder(const struct bench_train_args *a, vp_context *ctx, const struct delta_spec *spec) {
    const int B = a->o.batch, T = a->len;
    struct dec_bench d = {.B = B, .T = T, .ids = malloc((size_t)B * T * sizeof(int32_t))};
    vp_status s = d.ids ? lm_trainer_open(ctx, a->model, spec, &a->o, &d.t)
                        : vp_fail(VP_ERROR_HOST_MEMORY, "bench: out of host memory");
    if (s == VP_OK) s = lm_trainer_load(d.t, T);
    if (s == VP_OK) s = trainer_set_shape(lm_trainer_trainer(d.t), B, T);
    uint64_t bytes[VP_POOL_COUNT] = {0};
    if (s == VP_OK) trainer_plan(lm_trainer_trainer(d.t), bytes);
    const int rc = s == VP_OK ? report(a, ctx, dec_step, dec_trainer, &d, &(struct bench_shape){B, T, 0}, bytes)
                              : cli_fail(s);
    lm_trainer_destroy(d.t);
    free(d.ids);
    return rc;
}

static int run_seq2seq(const struct bench_train_args *a, vp_context *ctx, const struct delta_spec *spec) {
    struct trainer_options o = a->o;
    o.label_smoothing = 0.1;
    const int B = o.batch, S = a->len, T = a->target_len ? a->target_len : a->len;
    struct s2s_bench d = {.B = B, .S = S, .T = T};
    d.src = malloc((size_t)B * S * sizeof *d.src);
    d.dec = malloc((size_t)B * T * sizeof *d.dec);
    d.labels = malloc((size_t)B * T * sizeof *d.labels);
    vp_status s = d.src && d.dec && d.labels ? lm_trainer_open(ctx, a->model, spec, &o, &d.t)
                                             : vp_fail(VP_ERROR_HOST_MEMORY, "bench: out of host memory");
    if (s == VP_OK) {
        const struct model_arch *arch = seq2seq_arch(lm_trainer_seq2seq(d.t));
        d.start = arch->decoder_start_token_id >= 0 ? arch->decoder_start_token_id : arch->eos_token_id;
        if (d.start < 0)
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s: config.json has no decoder_start_token_id or eos_token_id to start "
                        "the decoder with", a->model);
    }
    if (s == VP_OK) s = lm_trainer_set_source_len(d.t, S);
    if (s == VP_OK) s = lm_trainer_load(d.t, T);
    if (s == VP_OK) s = trainer_set_shape(lm_trainer_trainer(d.t), B, T);
    uint64_t bytes[VP_POOL_COUNT] = {0};
    if (s == VP_OK) trainer_plan(lm_trainer_trainer(d.t), bytes);
    const int rc = s == VP_OK ? report(a, ctx, s2s_step, s2s_trainer, &d, &(struct bench_shape){B, S, T}, bytes)
                              : cli_fail(s);
    lm_trainer_destroy(d.t);
    free(d.src);
    free(d.dec);
    free(d.labels);
    return rc;
}

static int run_encoder(const struct bench_train_args *a, vp_context *ctx, const struct delta_spec *spec) {
    const int B = a->o.batch, T = a->len;
    struct enc_bench e = {0};
    vp_status s = trainer_open(ctx, a->model, spec, &a->o, &e.t);
    if (s == VP_OK) s = trainer_load(e.t, T);
    if (s == VP_OK) s = train_batch_init(&e.b, B, T);
    if (s == VP_OK) s = trainer_set_shape(e.t, B, T);
    if (s == VP_OK) {
        e.b.B = e.b.rows = B;
        e.b.T = T;
        memset(e.b.mask, 1, (size_t)B * T);
        memset(e.b.types, 0, (size_t)B * T * sizeof *e.b.types);
        for (int r = 0; r < B; r++) {
            e.b.labels[r] = 0;
            e.b.lens[r] = T;
            e.b.index[r] = (uint64_t)r;
        }
    }
    uint64_t bytes[VP_POOL_COUNT] = {0};
    if (s == VP_OK) trainer_plan(e.t, bytes);
    const int rc = s == VP_OK ? report(a, ctx, enc_step, enc_trainer, &e, &(struct bench_shape){B, T, 0}, bytes)
                              : cli_fail(s);
    train_batch_finish(&e.b);
    trainer_destroy(e.t);
    return rc;
}

static int run(const struct bench_train_args *a, enum model_stack stack) {
    struct delta_spec spec;
    vp_status s = delta_spec_load(a->delta, &spec);
    if (s != VP_OK) return cli_fail(s);
    vp_context *ctx = NULL;
    const vp_context_options co = {.device = a->common.device};
    if ((s = vp_context_create(&co, &ctx)) != VP_OK) return cli_fail(s);
    int rc;
    if (a->profile && (s = vk_profile_check(ctx)) != VP_OK) rc = cli_fail(s);
    else if (stack == MODEL_STACK_DECODER) rc = run_decoder(a, ctx, &spec);
    else if (stack == MODEL_STACK_ENCODER_DECODER) rc = run_seq2seq(a, ctx, &spec);
    else rc = run_encoder(a, ctx, &spec);
    vp_context_destroy(ctx);
    return rc;
}

int bench_train(int argc, char **argv) {
    struct bench_train_args a = {.delta = "lora", .len = 32};
    trainer_options_default(&a.o);
    a.o.batch = 4;
    a.o.steps = 10;
    a.o.dropout = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (cli_common_option(argc, argv, &i, &a.common)) continue;
        if (cli_trainer_flag(&a.o, arg)) continue;
        if (strcmp(arg, "--profile") == 0) {
            a.profile = true;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("bench", "unexpected argument '%s' (or it needs a value)", arg);
        const char *v = argv[++i];
        bool ok = true;
        if (strcmp(arg, "--model") == 0) a.model = v;
        else if (strcmp(arg, "--delta") == 0) a.delta = v;
        else if (strcmp(arg, "--len") == 0) ok = cli_parse_int(v, &a.len) && a.len > 0;
        else if (strcmp(arg, "--target-len") == 0) ok = cli_parse_int(v, &a.target_len) && a.target_len > 0;
        else if (strcmp(arg, "--batch") == 0 || strcmp(arg, "--steps") == 0 || strcmp(arg, "--weights") == 0)
            ok = cli_trainer_option(&a.o, arg, v) == 1;
        else return cli_usage_error("bench", "unknown option '%s'", arg);
        if (!ok) return cli_usage_error("bench", "%s '%s' is not a valid value", arg, v);
    }
    if (!a.model) return cli_usage_error("bench", "bench train needs --model DIR");
    int rc = cli_check_model_dir("bench", a.model);
    if (rc) return rc;
    struct model_arch arch;
    vp_status s = model_arch_load(a.model, &arch);
    if (s != VP_OK) return cli_fail(s);
    const enum model_stack stack = arch.stack;
    model_arch_finish(&arch);
    if (a.target_len && stack != MODEL_STACK_ENCODER_DECODER)
        return cli_usage_error("bench", "--target-len is for an encoder-decoder model (BART, mBART); %s has one "
                               "sequence per row (--len)", a.model);
    return run(&a, stack);
}
