/* vkpeft bench generate: prefill and decode throughput of the GPU decoder's
 * KV-cache generator (runtime/model/decoder_generate.c), or of the
 * encoder-decoder's (seq2seq_generate.c), on random prompts (sources).
 * One untimed round records both passes and compiles their shaders; the
 * timed rounds prefill B prompts of P tokens (encode B sources of P tokens
 * and run the first decoder step), then run N decode steps of B rows (each
 * appending the greedy token), and report the medians. For an
 * encoder-decoder it also times one full evaluation pass of the same shape:
 * what a step cost without the cache (each step re-ran the whole model). */
#include "bench.h"
#include "cli.h"
#include "cli_trainer.h"
#include "seq2seq_lm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

static const char help[] =
    "usage: vkpeft bench generate --model DIR [--batch B] [--prompt-len P] [--new-tokens N]\n"
    "                             [--repeat R] [--weights f32|f16|bf16] [--profile] [--json]\n"
    "                             [--device N|name]\n"
    "\n"
    "Measures generation with the KV cache on a decoder-only or encoder-decoder (BART,\n"
    "mBART) model folder (config.json and weights; no tokenizer needed: prompts are\n"
    "random token ids). Prints prefill tokens/s (B·P prompt tokens through the full\n"
    "forward; encoder-decoder: B sources of P tokens through the encoder and the first\n"
    "decoder step) and decode tokens/s (B new tokens per step over the cache), medians\n"
    "of R rounds after an untimed one. For an encoder-decoder it adds the decode rate\n"
    "without the cache (B tokens per full forward of B × P sources and 1 + N decoder\n"
    "positions, what each step cost before the cache).\n"
    "\n"
    "options:\n"
    "  --batch B        prompts (rows) at once (default 4)\n"
    "  --prompt-len P   tokens per prompt (default 32)\n"
    "  --new-tokens N   decode steps (default 32)\n"
    "  --repeat R       timed rounds (default 3)\n"
    "  --weights T      frozen weight storage (default f16)\n"
    "  --profile        then one more round whose first decode step is recorded with a\n"
    "                   GPU timestamp after every command: its GPU time per kernel and\n"
    "                   recording site, largest first, with its dispatches and barriers\n"
    "                   (as bench train --profile; with --json \"profile\", \"profile_step\")\n";

struct bench_gen_args {
    struct cli_common common;
    const char *model;
    int batch, prompt_len, new_tokens, repeat;
    enum encoder_storage storage;
    bool profile;
};

static int parse(int argc, char **argv, struct bench_gen_args *a) {
    static const char cmd[] = "bench generate";
    *a = (struct bench_gen_args){.batch = 4, .prompt_len = 32, .new_tokens = 32, .repeat = 3};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help, stdout);
            return -1;
        }
        if (cli_common_option(argc, argv, &i, &a->common)) continue;
        if (strcmp(arg, "--profile") == 0) {
            a->profile = true;
            continue;
        }
        int *n = strcmp(arg, "--batch") == 0        ? &a->batch
                 : strcmp(arg, "--prompt-len") == 0 ? &a->prompt_len
                 : strcmp(arg, "--new-tokens") == 0 ? &a->new_tokens
                 : strcmp(arg, "--repeat") == 0     ? &a->repeat
                                                    : NULL;
        if (!n && strcmp(arg, "--model") != 0 && strcmp(arg, "--weights") != 0)
            return cli_usage_error(cmd, "unknown option '%s'", arg);
        if (!v) return cli_usage_error(cmd, "%s needs a value", arg);
        i++;
        if (strcmp(arg, "--model") == 0) a->model = v;
        else if (strcmp(arg, "--weights") == 0) {
            if (strcmp(v, "f32") == 0) a->storage = ENCODER_STORAGE_F32;
            else if (strcmp(v, "f16") == 0) a->storage = ENCODER_STORAGE_F16;
            else if (strcmp(v, "bf16") == 0) a->storage = ENCODER_STORAGE_BF16;
            else return cli_usage_error(cmd, "--weights '%s': use f32, f16 or bf16", v);
        } else if (!cli_parse_int(v, n) || *n < 1)
            return cli_usage_error(cmd, "%s '%s' must be an integer ≥ 1", arg, v);
    }
    if (!a->model) return cli_usage_error(cmd, "--model is required");
    return cli_check_model_dir(cmd, a->model);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* One round: the prefill, then `steps` greedy steps; seconds of each part.
 * The first decode step is profiled into *prof when prof is not NULL. */
static vp_status round_once(struct decoder_gen *gen, const struct search_input *in, int vocab, int steps,
                            float *logits, double *prefill_s, double *decode_s, struct vk_profile *prof) {
    const int rows = in->batch;
    int32_t *parent = malloc((size_t)rows * sizeof *parent), *tokens = malloc((size_t)rows * sizeof *tokens);
    if (!parent || !tokens) {
        free(parent);
        free(tokens);
        return vp_fail(VP_ERROR_HOST_MEMORY, "bench generate: out of host memory");
    }
    double t0 = now_s();
    vp_status s = decoder_gen_prompts(gen, in);
    if (s == VP_OK) s = decoder_gen_step(gen, rows, NULL, NULL, logits);
    double t1 = now_s();
    if (prof) decoder_gen_profile_next(gen, prof);
    for (int k = 0; s == VP_OK && k < steps; k++) {
        for (int r = 0; r < rows; r++) parent[r] = r, tokens[r] = search_argmax(logits + (size_t)r * vocab, vocab);
        s = decoder_gen_step(gen, rows, parent, tokens, logits);
    }
    *prefill_s = t1 - t0;
    *decode_s = now_s() - t1;
    free(parent);
    free(tokens);
    return s;
}

static vp_status measure(vp_context *ctx, const struct bench_gen_args *a, double *prefill, double *decode,
                         struct model_arch *arch_out, struct vk_profile *prof) {
    const struct delta_spec none = {0};
    const struct decoder_options opt = {.storage = a->storage};
    const struct decoder_gen_shape shape = {.batch = a->batch, .prompt_len = a->prompt_len, .rows = a->batch,
                                            .max_len = a->prompt_len + a->new_tokens};
    struct decoder *m = NULL;
    struct decoder_gen *gen = NULL;
    int B, T;
    decoder_gen_batch_shape(&shape, &B, &T);
    vp_status s = decoder_open(ctx, a->model, &none, &opt, &m);
    if (s == VP_OK) s = decoder_load(m, B, T);
    if (s == VP_OK) s = decoder_gen_create(m, &shape, &gen);
    const int V = s == VP_OK ? decoder_arch(m)->vocab_size : 1;
    if (s == VP_OK) *arch_out = *decoder_arch(m), arch_out->labels = NULL;
    int32_t *ids = malloc((size_t)a->batch * a->prompt_len * sizeof *ids);
    const int32_t **rows = malloc((size_t)a->batch * sizeof *rows);
    int *lens = malloc((size_t)a->batch * sizeof *lens);
    float *logits = malloc((size_t)a->batch * V * sizeof *logits);
    double *pre = calloc((size_t)a->repeat, sizeof *pre), *dec = calloc((size_t)a->repeat, sizeof *dec);
    if (s == VP_OK && (!ids || !rows || !lens || !logits || !pre || !dec))
        s = vp_fail(VP_ERROR_HOST_MEMORY, "bench generate: out of host memory");
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int b = 0; s == VP_OK && b < a->batch; b++) {
        for (int t = 0; t < a->prompt_len; t++) ids[b * a->prompt_len + t] = (int32_t)(search_rng_next(&rng) % (uint64_t)V);
        rows[b] = ids + (size_t)b * a->prompt_len;
        lens[b] = a->prompt_len;
    }
    const struct search_input in = {a->batch, rows, lens};
    double p0, d0;
    if (s == VP_OK) s = round_once(gen, &in, V, a->new_tokens, logits, &p0, &d0, NULL); /* records, compiles */
    for (int k = 0; s == VP_OK && k < a->repeat; k++)
        s = round_once(gen, &in, V, a->new_tokens, logits, &pre[k], &dec[k], NULL);
    if (s == VP_OK && a->profile) s = round_once(gen, &in, V, 1, logits, &p0, &d0, prof);
    if (s == VP_OK) {
        qsort(pre, (size_t)a->repeat, sizeof *pre, cmp_double);
        qsort(dec, (size_t)a->repeat, sizeof *dec, cmp_double);
        *prefill = (double)a->batch * a->prompt_len / pre[a->repeat / 2];
        *decode = (double)a->batch * a->new_tokens / dec[a->repeat / 2];
    }
    free(ids);
    free(rows);
    free(lens);
    free(logits);
    free(pre);
    free(dec);
    decoder_gen_destroy(gen);
    decoder_destroy(m);
    return s;
}

/* The encoder-decoder: one round encodes, runs `steps` greedy steps. */
static vp_status s2s_round(struct seq2seq_gen *gen, const int32_t *src, int batch, int src_len, int vocab, int steps,
                           float *logits, double *prefill_s, double *decode_s, struct vk_profile *prof) {
    int32_t *parent = malloc((size_t)batch * sizeof *parent), *tokens = malloc((size_t)batch * sizeof *tokens);
    vp_status s = parent && tokens ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "bench generate: out of host memory");
    double t0 = now_s();
    if (s == VP_OK) s = seq2seq_gen_sources(gen, src, NULL, batch, src_len);
    if (s == VP_OK) s = seq2seq_gen_step(gen, batch, NULL, NULL, logits);
    double t1 = now_s();
    if (prof) seq2seq_gen_profile_next(gen, prof);
    for (int k = 0; s == VP_OK && k < steps; k++) {
        for (int r = 0; r < batch; r++) parent[r] = r, tokens[r] = search_argmax(logits + (size_t)r * vocab, vocab);
        s = seq2seq_gen_step(gen, batch, parent, tokens, logits);
    }
    *prefill_s = t1 - t0;
    *decode_s = now_s() - t1;
    free(parent);
    free(tokens);
    return s;
}

/* One full evaluation pass of (B, P, 1 + N), its logits read back: the
 * uncached step. */
static vp_status s2s_full_pass(struct seq2seq *m, const int32_t *src, int32_t *dec_ids, float *all, double *secs) {
    const double t0 = now_s();
    const struct seq2seq_batch b = {src, NULL, dec_ids, NULL, NULL};
    vp_status s = seq2seq_write_batch(m, &b);
    if (s == VP_OK) s = seq2seq_run(m, SEQ2SEQ_PASS_EVAL);
    if (s == VP_OK) s = seq2seq_logits(m, all);
    *secs = now_s() - t0;
    return s;
}

static vp_status measure_seq2seq(vp_context *ctx, const struct bench_gen_args *a, double rates[3],
                                 struct model_arch *arch_out, struct vk_profile *prof) {
    const struct delta_spec none = {0};
    const struct seq2seq_options opt = {.storage = a->storage};
    const int B = a->batch, P = a->prompt_len, T = 1 + a->new_tokens;
    struct seq2seq *m = NULL;
    struct seq2seq_gen *gen = NULL;
    vp_status s = seq2seq_create(ctx, a->model, &none, &opt, B, P, T, &m);
    if (s == VP_OK) s = seq2seq_gen_create(m, &gen);
    const int V = s == VP_OK ? seq2seq_arch(m)->vocab_size : 1;
    if (s == VP_OK) *arch_out = *seq2seq_arch(m), arch_out->labels = NULL;
    int32_t *src = malloc((size_t)B * P * sizeof *src), *dec_ids = calloc((size_t)B * T, sizeof *dec_ids);
    float *logits = malloc((size_t)B * V * sizeof *logits), *all = malloc((size_t)B * T * V * sizeof *all);
    double *pre = calloc((size_t)a->repeat, sizeof *pre), *dec = calloc((size_t)a->repeat, sizeof *dec);
    double *full = calloc((size_t)a->repeat, sizeof *full);
    if (s == VP_OK && (!src || !dec_ids || !logits || !all || !pre || !dec || !full))
        s = vp_fail(VP_ERROR_HOST_MEMORY, "bench generate: out of host memory");
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int n = 0; s == VP_OK && n < B * P; n++) src[n] = (int32_t)(search_rng_next(&rng) % (uint64_t)V);
    for (int n = 0; s == VP_OK && n < B * T; n++) dec_ids[n] = (int32_t)(search_rng_next(&rng) % (uint64_t)V);
    double p0, d0;
    if (s == VP_OK) s = s2s_round(gen, src, B, P, V, a->new_tokens, logits, &p0, &d0, NULL); /* records, compiles */
    for (int k = 0; s == VP_OK && k < a->repeat; k++)
        s = s2s_round(gen, src, B, P, V, a->new_tokens, logits, &pre[k], &dec[k], NULL);
    if (s == VP_OK && a->profile) s = s2s_round(gen, src, B, P, V, 1, logits, &p0, &d0, prof);
    if (s == VP_OK) s = s2s_full_pass(m, src, dec_ids, all, &p0); /* records, compiles */
    for (int k = 0; s == VP_OK && k < a->repeat; k++) s = s2s_full_pass(m, src, dec_ids, all, &full[k]);
    if (s == VP_OK) {
        qsort(pre, (size_t)a->repeat, sizeof *pre, cmp_double);
        qsort(dec, (size_t)a->repeat, sizeof *dec, cmp_double);
        qsort(full, (size_t)a->repeat, sizeof *full, cmp_double);
        rates[0] = (double)B * P / pre[a->repeat / 2];
        rates[1] = (double)B * a->new_tokens / dec[a->repeat / 2];
        rates[2] = (double)B / full[a->repeat / 2];
    }
    free(src);
    free(dec_ids);
    free(logits);
    free(all);
    free(pre);
    free(dec);
    free(full);
    seq2seq_gen_destroy(gen);
    seq2seq_destroy(m);
    return s;
}

int bench_generate(int argc, char **argv) {
    struct bench_gen_args a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    vp_context *ctx = NULL;
    const vp_context_options co = {.device = a.common.device};
    vp_status s = vp_context_create(&co, &ctx);
    if (s == VP_OK && a.profile) s = vk_profile_check(ctx); /* before the rounds, not after */
    double prefill = 0, decode = 0, rates[3] = {0};
    struct model_arch arch = {0}, peek;
    bool encdec = false;
    if (s == VP_OK && model_arch_load(a.model, &peek) == VP_OK) {
        encdec = peek.stack == MODEL_STACK_ENCODER_DECODER;
        model_arch_finish(&peek);
    }
    struct vk_profile prof = {0};
    if (s == VP_OK && encdec) s = measure_seq2seq(ctx, &a, rates, &arch, &prof);
    else if (s == VP_OK) s = measure(ctx, &a, &prefill, &decode, &arch, &prof);
    if (encdec) prefill = rates[0], decode = rates[1];
    if (s != VP_OK) {
        vk_profile_finish(&prof);
        vp_context_destroy(ctx);
        return cli_fail(s);
    }
    const char *device = vp_context_device(ctx)->name;
    if (a.common.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "device", device);
        cJSON_AddStringToObject(j, "model", a.model);
        cJSON_AddStringToObject(j, "model_type", arch.model_type);
        cJSON_AddNumberToObject(j, "batch", a.batch);
        cJSON_AddNumberToObject(j, "prompt_len", a.prompt_len);
        cJSON_AddNumberToObject(j, "new_tokens", a.new_tokens);
        cJSON_AddNumberToObject(j, "prefill_tokens_per_s", prefill);
        cJSON_AddNumberToObject(j, "decode_tokens_per_s", decode);
        if (encdec) cJSON_AddNumberToObject(j, "uncached_decode_tokens_per_s", rates[2]);
        if (a.profile) bench_profile_json(j, &prof);
        char *text = cJSON_Print(j);
        puts(text);
        free(text);
        cJSON_Delete(j);
    } else {
        printf("device %s, model %s (%s, %d layers, d %d, %d heads / %d kv heads, vocab %d)\n", device, a.model,
               arch.model_type, arch.layers, arch.hidden, arch.heads, arch.kv_heads, arch.vocab_size);
        printf("batch %d, prompt %d tokens, %d new tokens\n", a.batch, a.prompt_len, a.new_tokens);
        printf("prefill  %10.1f tokens/s\n", prefill);
        printf("decode   %10.1f tokens/s\n", decode);
        if (encdec) printf("decode without the cache (one full pass per step) %10.1f tokens/s\n", rates[2]);
        if (a.profile) bench_profile_print(&prof, "decode step", a.batch / decode * 1e3);
    }
    vk_profile_finish(&prof);
    vp_context_destroy(ctx);
    return EXIT_OK;
}
