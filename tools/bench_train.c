/* vkpeft bench train: tokens/s and ms per optimiser step of a training
 * step (forward, backward, gradient norm, AdamW: one submission) on an
 * encoder (classification) or decoder-only (causal LM) model folder, on
 * random token ids of a fixed shape. The first step (recording, shader
 * compilation) is reported apart from the steady steps. */
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
    "                          [--weights f32|f16|bf16] [--checkpoint-activations] [--profile]\n"
    "                          [--json] [--device N|name]\n"
    "\n"
    "Times training steps of the delta (default lora) on B random sequences of T\n"
    "tokens (default 4 x 32, 10 steps): an encoder trains its classification\n"
    "head and delta, a decoder-only model (GPT-2, LLaMA family) the causal-LM\n"
    "loss. Prints the first step's time (recording and compiling), then, after\n"
    "two untimed steps, the mean of N timed steps as ms/step and tokens/s (B·T\n"
    "per step), and the device memory the trainer planned per pool.\n"
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
    int len;
    bool profile;
    struct trainer_options o;
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

/* bytes: what the trainer planned per pool (model and optimiser). */
static int report(const struct bench_train_args *a, vp_context *ctx, step_fn fn, trainer_fn trainer, void *user,
                  int B, int T, const uint64_t bytes[VP_POOL_COUNT]) {
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
    const double ms = (vp_now() - t0) * 1e3 / timed, tps = (double)B * T / (ms / 1e3);
    struct vk_profile prof = {0};
    if (s == VP_OK && a->profile) s = trainer_profile_step(trainer(user), &prof);
    if (s != VP_OK) return cli_fail(s);
    if (a->common.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", a->model);
        cJSON_AddStringToObject(o, "delta", a->delta);
        cJSON_AddStringToObject(o, "device", vp_context_device(ctx)->name);
        cJSON_AddNumberToObject(o, "batch", B);
        cJSON_AddNumberToObject(o, "len", T);
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
        printf("train %s with %s on %s: %d x %d tokens, %d steps\n", a->model, a->delta, vp_context_device(ctx)->name,
               B, T, timed);
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

static int run(const struct bench_train_args *a, bool decoder) {
    struct delta_spec spec;
    vp_status s = delta_spec_load(a->delta, &spec);
    if (s != VP_OK) return cli_fail(s);
    vp_context *ctx = NULL;
    const vp_context_options co = {.device = a->common.device};
    if ((s = vp_context_create(&co, &ctx)) != VP_OK) return cli_fail(s);
    if (a->profile && (s = vk_profile_check(ctx)) != VP_OK) {
        const int rc = cli_fail(s);
        vp_context_destroy(ctx);
        return rc;
    }
    const int B = a->o.batch, T = a->len;
    int rc;
    if (decoder) {
        struct dec_bench d = {.B = B, .T = T, .ids = malloc((size_t)B * T * sizeof(int32_t))};
        s = lm_trainer_open(ctx, a->model, &spec, &a->o, &d.t);
        if (s == VP_OK) s = lm_trainer_load(d.t, T);
        uint64_t bytes[VP_POOL_COUNT] = {0};
        if (s == VP_OK) trainer_plan(lm_trainer_trainer(d.t), bytes);
        rc = s == VP_OK ? report(a, ctx, dec_step, dec_trainer, &d, B, T, bytes) : cli_fail(s);
        lm_trainer_destroy(d.t);
        free(d.ids);
    } else {
        struct enc_bench e = {0};
        s = trainer_open(ctx, a->model, &spec, &a->o, &e.t);
        if (s == VP_OK) s = trainer_load(e.t, T);
        if (s == VP_OK) s = train_batch_init(&e.b, B, T);
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
        rc = s == VP_OK ? report(a, ctx, enc_step, enc_trainer, &e, B, T, bytes) : cli_fail(s);
        train_batch_finish(&e.b);
        trainer_destroy(e.t);
    }
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
    const bool decoder = arch.stack == MODEL_STACK_DECODER;
    model_arch_finish(&arch);
    return run(&a, decoder);
}
