/* vkpeft generate: text generation with a decoder-only model on the GPU
 * (runtime/model/decoder_lm.h's KV-cache generator driven by search.h's
 * greedy, beam and sampling strategies) or an encoder-decoder (BART,
 * mBART: runtime/model/seq2seq_lm.h, prompts are the sources), prompts
 * from a file or stdin, tokenised and decoded with the model's
 * tokenizer.json. */
#include "cli.h"
#include "cli_trainer.h"
#include "decoder_lm.h"
#include "seq2seq_lm.h"
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

static const char help[] =
    "usage: vkpeft generate --model DIR --prompts FILE|- [options]\n"
    "\n"
    "Generates a continuation of every prompt with a decoder-only model (GPT-2,\n"
    "LLaMA, Mistral, Qwen2) and its tokenizer.json, on the GPU with a KV cache.\n"
    "Prompts: one per line, or JSONL objects with a \"prompt\" string; '-' reads\n"
    "stdin. Output: the generated text of each returned sequence, one line each\n"
    "(newlines in it written as \\n), num-return-sequences lines per prompt in\n"
    "prompt order; --json: one JSON object per line with the prompt's index, the\n"
    "sequence's rank, text, token ids and score. Generation stops at the config's\n"
    "eos_token_id (else the tokenizer's eos) or after --max-new-tokens, and never\n"
    "runs past the model's positions. Decoding follows Hugging Face generate().\n"
    "With an encoder-decoder (BART, mBART) each prompt is a source: generation\n"
    "starts from decoder_start_token_id, with the config's forced_bos_token_id\n"
    "(mBART's target language) first; it runs without a KV cache for now.\n"
    "\n"
    "options:\n"
    "  --model DIR                 the model folder (config.json, weights, tokenizer.json)\n"
    "  --prompts FILE|-            the prompts\n"
    "  --delta DIR                 a delta trained on this model (vkpeft train's --out, or a\n"
    "                              PEFT LoRA or prefix-tuning folder)\n"
    "  --out FILE                  write there instead of stdout\n"
    "  --max-new-tokens N          tokens to generate at most (default 20)\n"
    "  --min-length N              eos suppressed until sequences (prompt included) are N long\n"
    "  --num-beams K               beam search with K beams (default 1: greedy or sampling)\n"
    "  --length-penalty X          beam score = log-probability / length^X (default 1)\n"
    "  --no-repeat-ngram-size N    never repeat an n-gram of this size\n"
    "  --early-stopping V          beam search: true, false (HF's heuristic, default) or never\n"
    "  --num-return-sequences N    sequences per prompt (beam search: at most K; greedy: 1)\n"
    "  --do-sample                 sample instead of taking the most likely token\n"
    "  --temperature T             sampling temperature (default 1)\n"
    "  --top-k K                   sample from the K most likely tokens (default 50, 0: off)\n"
    "  --top-p P                   nucleus sampling with mass P in (0, 1] (default 1: off)\n"
    "  --seed S                    sampling seed (default 0)\n"
    "  --batch B                   prompts generated together (default 8)\n"
    "  --weights f32|f16|bf16      storage of the frozen weights (default f16, bf16 files bf16)\n"
    "  --device NAME|INDEX         the GPU (see vkpeft devices)\n"
    "  --json                      JSON lines\n"
    "\n"
    "examples:\n"
    "  vkpeft generate --model models/tiny-llama --prompts prompts.txt --max-new-tokens 32\n"
    "  echo 'Once upon a time' | vkpeft generate --model models/gpt2 --prompts - --num-beams 4\n"
    "  vkpeft generate --model models/gpt2 --prompts p.jsonl --do-sample --top-p 0.9 --seed 7 --json\n";

struct gen_args {
    struct cli_common common;
    const char *model, *prompts, *out, *delta;
    int batch;
    enum encoder_storage storage;
    struct search_options search;
};

static bool parse_early_stopping(const char *v, enum search_early_stopping *out) {
    if (strcmp(v, "true") == 0) *out = SEARCH_EARLY_STOPPING_TRUE;
    else if (strcmp(v, "false") == 0) *out = SEARCH_EARLY_STOPPING_HEURISTIC;
    else if (strcmp(v, "never") == 0) *out = SEARCH_EARLY_STOPPING_NEVER;
    else return false;
    return true;
}

/* One option with a value; 0 when taken, 2 on a bad value, -1 unknown. */
static int parse_valued(const char *arg, const char *v, struct gen_args *a) {
    static const char cmd[] = "generate";
    struct search_options *o = &a->search;
    int n = 0;
    double x = 0;
    if (strcmp(arg, "--model") == 0) a->model = v;
    else if (strcmp(arg, "--prompts") == 0) a->prompts = v;
    else if (strcmp(arg, "--delta") == 0) a->delta = v;
    else if (strcmp(arg, "--out") == 0) a->out = v;
    else if (strcmp(arg, "--weights") == 0) {
        if (strcmp(v, "f32") == 0) a->storage = ENCODER_STORAGE_F32;
        else if (strcmp(v, "f16") == 0) a->storage = ENCODER_STORAGE_F16;
        else if (strcmp(v, "bf16") == 0) a->storage = ENCODER_STORAGE_BF16;
        else return cli_usage_error(cmd, "--weights '%s': use f32, f16 or bf16", v);
    } else if (strcmp(arg, "--early-stopping") == 0) {
        if (!parse_early_stopping(v, &o->early_stopping))
            return cli_usage_error(cmd, "--early-stopping '%s': use true, false or never", v);
    } else if (strcmp(arg, "--seed") == 0) {
        if (!cli_parse_u64(v, &o->seed)) return cli_usage_error(cmd, "--seed '%s' must be an integer ≥ 0", v);
    } else if (strcmp(arg, "--length-penalty") == 0 || strcmp(arg, "--temperature") == 0 ||
               strcmp(arg, "--top-p") == 0) {
        if (!cli_parse_double(v, &x)) return cli_usage_error(cmd, "%s '%s' must be a number", arg, v);
        if (strcmp(arg, "--length-penalty") == 0) o->length_penalty = x, o->length_penalty_set = true;
        else if (strcmp(arg, "--temperature") == 0) {
            if (!(x > 0)) return cli_usage_error(cmd, "--temperature %s must be above 0", v);
            o->temperature = x;
        } else {
            if (!(x > 0 && x <= 1)) return cli_usage_error(cmd, "--top-p %s must be in (0, 1]", v);
            o->top_p = x;
        }
    } else if (strcmp(arg, "--max-new-tokens") == 0 || strcmp(arg, "--min-length") == 0 ||
               strcmp(arg, "--num-beams") == 0 || strcmp(arg, "--no-repeat-ngram-size") == 0 ||
               strcmp(arg, "--num-return-sequences") == 0 || strcmp(arg, "--top-k") == 0 ||
               strcmp(arg, "--batch") == 0) {
        const bool zero_ok = strcmp(arg, "--min-length") == 0 || strcmp(arg, "--no-repeat-ngram-size") == 0 ||
                             strcmp(arg, "--top-k") == 0;
        if (!cli_parse_int(v, &n) || (n == 0 && !zero_ok))
            return cli_usage_error(cmd, "%s '%s' must be an integer ≥ %d", arg, v, zero_ok ? 0 : 1);
        if (strcmp(arg, "--max-new-tokens") == 0) o->max_new_tokens = n;
        else if (strcmp(arg, "--min-length") == 0) o->min_length = n;
        else if (strcmp(arg, "--num-beams") == 0) o->num_beams = n;
        else if (strcmp(arg, "--no-repeat-ngram-size") == 0) o->no_repeat_ngram_size = n;
        else if (strcmp(arg, "--num-return-sequences") == 0) o->num_return_sequences = n;
        else if (strcmp(arg, "--top-k") == 0) o->top_k = n;
        else a->batch = n;
    } else return -1;
    return 0;
}

static int parse_args(int argc, char **argv, struct gen_args *a) {
    static const char cmd[] = "generate";
    a->batch = 8;
    a->search.max_new_tokens = 20;
    a->search.top_k = 50; /* HF's GenerationConfig default (sampling only) */
    bool top_k_given = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help, stdout);
            return -1;
        }
        if (cli_common_option(argc, argv, &i, &a->common)) continue;
        if (strcmp(arg, "--do-sample") == 0) {
            a->search.do_sample = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) return cli_usage_error(cmd, "unexpected argument '%s'", arg);
        if (i + 1 >= argc) {
            struct gen_args probe = *a;
            if (parse_valued(arg, "1", &probe) < 0) return cli_usage_error(cmd, "unknown option '%s'", arg);
            return cli_usage_error(cmd, "%s needs a value", arg);
        }
        const int rc = parse_valued(arg, argv[i + 1], a);
        if (rc < 0) return cli_usage_error(cmd, "unknown option '%s'", arg);
        if (rc > 0) return rc;
        top_k_given |= strcmp(arg, "--top-k") == 0;
        i++;
    }
    if (!a->model) return cli_usage_error(cmd, "--model is required");
    if (!a->prompts) return cli_usage_error(cmd, "--prompts is required (a file, or - for stdin)");
    const struct search_options *o = &a->search;
    if (!o->do_sample && (o->temperature || o->top_p || top_k_given))
        return cli_usage_error(cmd, "--temperature, --top-k and --top-p need --do-sample");
    if (o->num_beams > 1 && o->do_sample)
        return cli_usage_error(cmd, "--do-sample with --num-beams %d: beam sampling is not supported", o->num_beams);
    if (o->num_return_sequences > 1 && o->num_beams <= 1 && !o->do_sample)
        return cli_usage_error(cmd, "--num-return-sequences %d needs --num-beams or --do-sample (greedy search "
                               "returns one sequence)", o->num_return_sequences);
    if (o->num_beams > 1 && o->num_return_sequences > o->num_beams)
        return cli_usage_error(cmd, "--num-return-sequences %d exceeds --num-beams %d", o->num_return_sequences,
                               o->num_beams);
    if (!o->do_sample) a->search.top_k = 0;
    return 0;
}

/* ------------------------------------------------------------------------
 * Prompts
 * ------------------------------------------------------------------------ */

struct prompts {
    int count;
    int32_t **ids;
    int *lens;
    int longest;
};

static void prompts_free(struct prompts *p) {
    for (int i = 0; i < p->count; i++) free(p->ids[i]);
    free(p->ids);
    free(p->lens);
    memset(p, 0, sizeof *p);
}

static vp_status read_all(const char *path, char **text, size_t *size) {
    if (strcmp(path, "-") != 0) return vp_file_read(path, (void **)text, size);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, stdin)) > 0;) {
        n += got;
        if (cap - n < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading stdin");
    buf[n] = 0;
    *text = buf;
    *size = n;
    return VP_OK;
}

/* The text of one line: the line, or a JSON object's "prompt". */
static vp_status prompt_text(char *line, const char *name, int lineno, char **out, cJSON **json) {
    *json = NULL;
    *out = line;
    const char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p != '{') return VP_OK;
    *json = cJSON_Parse(line);
    const cJSON *s = *json ? cJSON_GetObjectItemCaseSensitive(*json, "prompt") : NULL;
    if (!*json) return vp_fail(VP_ERROR_BAD_INPUT, "%s:%d: the line starts with '{' but is not JSON", name, lineno);
    if (!cJSON_IsString(s))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s:%d: the JSON object has no \"prompt\" string", name, lineno);
    *out = s->valuestring;
    return VP_OK;
}

static vp_status prompts_read(const char *path, const struct tok_tokenizer *tok, int vocab, struct prompts *out) {
    memset(out, 0, sizeof *out);
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    char *text = NULL;
    size_t size = 0;
    vp_status s = read_all(path, &text, &size);
    if (s != VP_OK) return s;
    int lines = 0;
    for (size_t i = 0; i < size; i++) lines += text[i] == '\n';
    lines += size && text[size - 1] != '\n';
    out->ids = calloc((size_t)lines + 1, sizeof *out->ids);
    out->lens = calloc((size_t)lines + 1, sizeof *out->lens);
    if (!out->ids || !out->lens) s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    struct tok_encoding enc = {0};
    char *p = text, *end = text + size;
    for (int lineno = 1; s == VP_OK && p < end; lineno++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        if (stop > p && stop[-1] == '\r') stop[-1] = 0;
        *stop = 0;
        char *prompt;
        cJSON *json;
        s = prompt_text(p, name, lineno, &prompt, &json);
        if (s == VP_OK) s = tok_encode(tok, prompt, NULL, true, 0, &enc);
        if (s == VP_OK && enc.len == 0)
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s:%d: the prompt has no tokens; every prompt needs at least one",
                        name, lineno);
        for (int t = 0; s == VP_OK && t < enc.len; t++)
            if (enc.ids[t] >= vocab)
                s = vp_fail(VP_ERROR_BAD_INPUT, "%s:%d: token id %d is outside the model's vocabulary of %d "
                            "(is tokenizer.json from this model?)", name, lineno, enc.ids[t], vocab);
        cJSON_Delete(json);
        if (s == VP_OK) {
            out->ids[out->count] = malloc((size_t)enc.len * sizeof(int32_t));
            if (!out->ids[out->count]) s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
            else memcpy(out->ids[out->count], enc.ids, (size_t)enc.len * sizeof(int32_t));
            out->lens[out->count++] = enc.len;
            if (enc.len > out->longest) out->longest = enc.len;
        }
        p = nl ? nl + 1 : end;
    }
    if (s == VP_OK && out->count == 0) s = vp_fail(VP_ERROR_BAD_INPUT, "%s: no prompts", name);
    tok_encoding_free(&enc);
    free(text);
    if (s != VP_OK) prompts_free(out);
    return s;
}

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */

static vp_status write_sequence(FILE *f, const struct gen_args *a, const struct tok_tokenizer *tok, int prompt,
                                int rank, const int32_t *ids, int n, float score) {
    char *text = NULL;
    vp_status s = tok_decode(tok, ids, n, true, &text);
    if (s != VP_OK) return s;
    if (a->common.json) {
        cJSON *o = cJSON_CreateObject(), *t = cJSON_CreateArray();
        cJSON_AddNumberToObject(o, "prompt", prompt);
        cJSON_AddNumberToObject(o, "sequence", rank);
        cJSON_AddStringToObject(o, "text", text);
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(t, cJSON_CreateNumber(ids[i]));
        cJSON_AddItemToObject(o, "tokens", t);
        cJSON_AddNumberToObject(o, "score", score);
        char *line = cJSON_PrintUnformatted(o);
        if (line) fprintf(f, "%s\n", line);
        free(line);
        cJSON_Delete(o);
    } else {
        for (const char *c = text; *c; c++) {
            if (*c == '\n') fputs("\\n", f);
            else if (*c != '\r') fputc(*c, f);
        }
        fputc('\n', f);
    }
    free(text);
    return ferror(f) ? vp_fail(VP_ERROR_IO, "writing %s failed", a->out ? a->out : "stdout") : VP_OK;
}

/* ------------------------------------------------------------------------
 * The run
 * ------------------------------------------------------------------------ */

/* The model and its generator for `shape`. A trained delta (--delta) is
 * loaded here once the decoders' delta loader exists: its spec instead of
 * the empty one, then its tensors into the loaded decoder. */
static vp_status open_model(vp_context *ctx, const struct gen_args *a, const struct decoder_gen_shape *shape,
                            struct decoder **m, struct decoder_gen **gen) {
    const struct delta_spec none = {0};
    const struct decoder_options opt = {.storage = a->storage};
    int B, T;
    decoder_gen_batch_shape(shape, &B, &T);
    vp_status s;
    if (a->delta) {
        s = decoder_create_with_delta(ctx, a->model, a->delta, &opt, B, T, m);
        if (s != VP_OK) s = vp_fail_context(s, "--delta %s", a->delta);
    } else {
        s = decoder_open(ctx, a->model, &none, &opt, m);
        if (s == VP_OK) s = decoder_load(*m, B, T);
    }
    if (s == VP_OK) s = decoder_gen_create(*m, shape, gen);
    return s;
}

/* Search options for the model: its eos and pad ids, new tokens capped by
 * its positions. */
static vp_status resolve(const struct gen_args *a, const struct model_arch *arch, const struct tok_tokenizer *tok,
                         const struct prompts *p, struct search_options *o) {
    *o = a->search;
    /* config.json's eos ids (Llama 3 lists several), else the tokenizer's. */
    for (int k = 0; k < arch->eos_count && k < SEARCH_MAX_EOS; k++) o->eos_token_ids[o->eos_count++] = arch->eos_token_ids[k];
    const int32_t eos = tok_special_ids(tok).eos;
    if (!o->eos_count && eos >= 0 && eos < arch->vocab_size) o->eos_count = 1, o->eos_token_ids[0] = eos;
    if (arch->pad_token_id >= 0 && arch->pad_token_id < arch->vocab_size)
        o->pad_token_set = true, o->pad_token_id = arch->pad_token_id;
    const int room = arch->max_positions - p->longest;
    if (room < 1)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: the longest prompt has %d tokens; the model takes %d positions, "
                       "which leaves no room to generate", a->prompts, p->longest, arch->max_positions);
    if (o->max_new_tokens > room) {
        fprintf(stderr, "vkpeft generate: --max-new-tokens %d lowered to %d: the longest prompt (%d tokens) and the "
                "model's %d positions leave no more\n", o->max_new_tokens, room, p->longest, arch->max_positions);
        o->max_new_tokens = room;
    }
    return VP_OK;
}

/* Every sequence of a batch whose first prompt is prompt b0. */
static vp_status write_result(FILE *f, const struct gen_args *a, const struct tok_tokenizer *tok, int b0,
                              const struct search_result *r) {
    vp_status s = VP_OK;
    for (int k = 0; s == VP_OK && k < r->count; k++)
        s = write_sequence(f, a, tok, b0 + k / r->per_item, k % r->per_item, r->tokens + (size_t)k * r->capacity,
                           r->lengths[k], r->scores[k]);
    return s;
}

/* An encoder-decoder: each batch of prompts is a batch of sources, padded
 * to the longest; the model is loaded for the rows, the longest source and
 * the decoder start plus max_new_tokens. */
static vp_status generate_seq2seq(vp_context *ctx, const struct gen_args *a, const struct model_arch *arch,
                                  const struct tok_tokenizer *tok, const struct prompts *p, struct search_options *o,
                                  FILE *f) {
    seq2seq_search_defaults(arch, o);
    if (!o->max_new_tokens) o->max_new_tokens = (o->max_length ? o->max_length : 20) - 1;
    if (o->max_new_tokens > arch->max_positions - 1) o->max_new_tokens = arch->max_positions - 1;
    const int batch = a->batch < p->count ? a->batch : p->count, S = p->longest;
    const int per_row = o->num_beams > 1 ? o->num_beams : o->num_return_sequences > 1 ? o->num_return_sequences : 1;
    if (S > arch->max_positions)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: the longest source has %d tokens; the model takes %d", a->prompts, S,
                       arch->max_positions);
    const struct seq2seq_options opt = {.storage = a->storage};
    struct seq2seq *m = NULL;
    const struct delta_spec none = {0};
    vp_status s = a->delta ? seq2seq_create_with_delta(ctx, a->model, a->delta, &opt, batch * per_row, S,
                                                       1 + o->max_new_tokens, &m)
                           : seq2seq_create(ctx, a->model, &none, &opt, batch * per_row, S, 1 + o->max_new_tokens, &m);
    struct seq2seq_gen *gen = NULL; /* one cache for every batch of prompts */
    if (s == VP_OK) s = seq2seq_gen_create(m, &gen);
    int32_t *src = calloc((size_t)batch * S, sizeof *src);
    uint8_t *mask = calloc((size_t)batch * S, 1);
    if (s == VP_OK && (!src || !mask)) s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    for (int b0 = 0; s == VP_OK && b0 < p->count; b0 += batch) {
        const int n = p->count - b0 < batch ? p->count - b0 : batch;
        for (int i = 0; i < n; i++)
            for (int t = 0; t < S; t++) {
                const bool real = t < p->lens[b0 + i];
                src[(size_t)i * S + t] = real ? p->ids[b0 + i][t] : arch->pad_token_id;
                mask[(size_t)i * S + t] = real;
            }
        struct search_result r;
        s = seq2seq_gen_run(gen, o, src, mask, n, S, &r);
        if (s == VP_OK) s = write_result(f, a, tok, b0, &r);
        search_result_free(&r);
    }
    free(src);
    free(mask);
    seq2seq_gen_destroy(gen);
    seq2seq_destroy(m);
    return s;
}

static vp_status generate_all(vp_context *ctx, const struct gen_args *a, const struct tok_tokenizer *tok,
                              const struct model_arch *arch, const struct prompts *p, FILE *f) {
    struct search_options o;
    if (arch->stack == MODEL_STACK_ENCODER_DECODER) {
        o = a->search;
        return generate_seq2seq(ctx, a, arch, tok, p, &o, f);
    }
    vp_status s = resolve(a, arch, tok, p, &o);
    if (s != VP_OK) return s;
    const int batch = a->batch < p->count ? a->batch : p->count;
    const int per_row = o.num_beams > 1 ? o.num_beams : o.num_return_sequences > 1 ? o.num_return_sequences : 1;
    const struct decoder_gen_shape shape = {.batch = batch, .prompt_len = p->longest, .rows = batch * per_row,
                                            .max_len = p->longest + o.max_new_tokens};
    struct decoder *m = NULL;
    struct decoder_gen *gen = NULL;
    s = open_model(ctx, a, &shape, &m, &gen);
    for (int b0 = 0; s == VP_OK && b0 < p->count; b0 += batch) {
        const int n = p->count - b0 < batch ? p->count - b0 : batch;
        const struct search_input in = {n, (const int32_t *const *)p->ids + b0, p->lens + b0};
        struct search_result r;
        s = decoder_generate(gen, &o, &in, &r);
        if (s == VP_OK) s = write_result(f, a, tok, b0, &r);
        search_result_free(&r);
    }
    decoder_gen_destroy(gen);
    decoder_destroy(m);
    return s;
}

int cmd_generate(int argc, char **argv) {
    struct gen_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    if ((rc = cli_check_model_dir("generate", a.model))) return rc;
    if (a.delta && access(a.delta, R_OK) != 0)
        return cli_usage_error("generate", "--delta %s: %s", a.delta, strerror(errno));
    if (strcmp(a.prompts, "-") != 0 && access(a.prompts, R_OK) != 0)
        return cli_usage_error("generate", "--prompts %s: %s", a.prompts, strerror(errno));
    struct model_arch arch;
    vp_status s = model_arch_load(a.model, &arch);
    if (s != VP_OK) return cli_fail(s);
    if (arch.stack == MODEL_STACK_ENCODER) {
        model_arch_finish(&arch);
        return cli_usage_error("generate", "%s is a %s model; generate runs decoder-only models (GPT-2, LLaMA, "
                               "Mistral, Qwen2) and encoder-decoders (BART, mBART)", a.model, arch.model_type);
    }
    struct tok_tokenizer *tok = NULL;
    struct prompts p = {0};
    vp_context *ctx = NULL;
    FILE *f = NULL;
    s = tok_tokenizer_load(a.model, &tok);
    if (s == VP_OK) s = prompts_read(a.prompts, tok, arch.vocab_size, &p);
    if (s == VP_OK) {
        const vp_context_options co = {.device = a.common.device};
        s = vp_context_create(&co, &ctx);
    }
    if (s == VP_OK) {
        f = a.out ? fopen(a.out, "w") : stdout;
        if (!f) s = vp_fail(VP_ERROR_IO, "--out %s: cannot open for writing", a.out);
    }
    if (s == VP_OK) s = generate_all(ctx, &a, tok, &arch, &p, f);
    if (f && f != stdout && fclose(f) != 0 && s == VP_OK) s = vp_fail(VP_ERROR_IO, "--out %s: write failed", a.out);
    vp_context_destroy(ctx);
    prompts_free(&p);
    tok_tokenizer_free(tok);
    model_arch_finish(&arch);
    return s == VP_OK ? EXIT_OK : cli_fail(s);
}
