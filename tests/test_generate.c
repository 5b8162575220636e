/* Generation with the GPU decoder's KV cache (runtime/model/decoder_lm.h,
 * decoder_generate.c) on tiny GPT-2 and LLaMA (grouped kv heads) models
 * written from the double-precision reference's random weights, with no
 * delta and with LoRA, prefix and MAM deltas (every delta tensor non-zero;
 * LLaMA also with per-head and sequential adapters):
 *
 *   - the prefill's and every cached step's logits equal the full-sequence
 *     forward's at the same position, on the GPU and in the C reference,
 *     for two prompts of different lengths, with the rows swapped (cache
 *     reordered) and then one row dropped on the way;
 *   - greedy generation returns exactly the tokens of a PyTorch greedy loop
 *     over tests/python/decoder_torch.py (float64, no cache);
 *   - beam search on the GPU equals search.c's beam search driven by the C
 *     reference's logits: the same tokens, lengths and scores;
 *   - sampling with a seed repeats itself and draws what the same sampler
 *     draws from the reference's logits;
 *   - bad shapes and inputs are refused with messages.
 *
 * argv[1]: decoder_torch.py. VKPEFT_TORCH_PYTHON names the interpreter
 * holding torch (default /usr/bin/python3). */
#include "decoder_lm.h"
#include "reference/decoder.h"
#include "dectest.h"
#include "kerneltest.h"
#include "safetensors.h"
#include "torchtest.h"
#include "vktest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const configs[] = {
    "{\"model_type\":\"gpt2\",\"vocab_size\":40,\"n_embd\":16,\"n_layer\":2,\"n_head\":2,\"n_inner\":24,"
    "\"n_positions\":16,\"layer_norm_epsilon\":1e-5}",
    "{\"model_type\":\"llama\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":20,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":100.0,\"tie_word_embeddings\":false}",
};
enum { GPT2, LLAMA, FAMILIES };
static const char *const family_names[] = {"gpt2", "llama"};
enum { V = 40 };

/* Tolerance: as tests/test_decoder.c argues, ~24 dependent fp32 reductions
 * of at most 40 terms, amplified by a few: 24·40·u·4 ≈ 2.3e-4 normwise
 * against the double reference. The cached step and the full forward are
 * both fp32 with different summation orders (the step's attention runs
 * over every cache slot with the unused ones masked), so the same bound
 * holds between them. A mis-rotated key, a wrong position or a stale cache
 * row is off by ≥ 1e-2. */
#define TOL (24.0 * 40.0 * KT_EPS_F32 * 4.0)

struct spec_case {
    const char *label, *preset, *json;
};
static const struct spec_case cases_none = {"no delta", NULL, NULL};
static const struct spec_case cases_lora = {"lora", NULL,
                                            "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4},"
                                            "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2},{\"kind\":\"lora\",\"at\":"
                                            "\"up\",\"rank\":2,\"alpha\":3}]}"};
static const struct spec_case cases_prefix = {"prefix", NULL,
                                              "{\"modules\":[{\"kind\":\"prefix\",\"length\":3,\"reparam\":0}]}"};
static const struct spec_case cases_mam = {"mam", "mam:l=2,r=3,s=2", NULL};
/* Per-head adapters read the step's own split/merge tables. */
static const struct spec_case cases_adapters = {
    "mh-pa + sequential adapters", NULL,
    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,"
    "\"per_head\":true,\"compose\":\"gated\",\"act\":\"gelu\"},{\"kind\":\"adapter\",\"at\":\"ffn\","
    "\"insert\":\"sequential\",\"bottleneck\":3}]}"};

static struct torch_run torch;
static vp_context *g_ctx;

static vp_context *ctx_get(void) {
    if (!g_ctx) g_ctx = vt_context(NULL);
    return g_ctx;
}

/* ------------------------------------------------------------------------
 * A model on both sides
 * ------------------------------------------------------------------------ */

struct pair {
    struct refd *ref;
    struct decoder *gpu;
    struct delta_spec spec;
    char dir[160];
    char what[96];
};

/* The GPU sees exactly the reference's values. */
static bool write_model(struct refd *m, const char *dir, int family) {
    for (int k = 0; k < refd_tensor_count(m); k++) {
        struct refm_tensor *t = refd_tensor_at(m, k);
        kt_round(VP_DTYPE_F32, t->data, t->n);
    }
    return dectest_write_model(m, dir, configs[family]);
}

/* The reference model (every delta tensor random, none zero) written to a
 * folder of its own and opened on the GPU (not loaded yet). */
static bool pair_open(struct pair *p, int family, const struct spec_case *c, const char *sub) {
    memset(p, 0, sizeof *p);
    struct model_arch arch;
    const char *json = configs[family];
    snprintf(p->what, sizeof p->what, "%s %s", family_names[family], c->label);
    snprintf(p->dir, sizeof p->dir, "%s/%s", torch.dir, sub);
    if ((c->preset || c->json) &&
        !CHECKF(ref_spec_load(&p->spec, c->label, c->preset, c->json, -1) == VP_OK, "%s: %s", p->what,
                vp_last_error()))
        return false;
    if (!ctx_get() || !CHECK(vp_mkdir_p(p->dir) == VP_OK) ||
        !CHECKF(model_arch_parse(json, strlen(json), "config.json", &arch) == VP_OK, "%s", vp_last_error()))
        return false;
    const struct refd_options ropt = {.seed = 31 + (uint64_t)family, .weight_std = 0.3, .randomise_zero_init = true};
    bool ok = CHECKF(refd_create(&p->ref, &arch, &p->spec, &ropt) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    const struct decoder_options opt = {.storage = ENCODER_STORAGE_F32};
    return ok && write_model(p->ref, p->dir, family) &&
           CHECKF(decoder_open(g_ctx, p->dir, &p->spec, &opt, &p->gpu) == VP_OK, "%s: %s", p->what, vp_last_error());
}

/* Every trainable tensor of the reference into the loaded GPU model. */
static bool pair_write_delta(struct pair *p) {
    bool ok = true;
    for (int k = 0; ok && k < refd_tensor_count(p->ref); k++) {
        struct refm_tensor *t = refd_tensor_at(p->ref, k);
        if (!t->grad) continue;
        float *f = malloc(t->n * sizeof *f);
        for (size_t i = 0; i < t->n; i++) f[i] = (float)t->data[i];
        ok = CHECKF(decoder_tensor_write(p->gpu, t->name, f, t->n) == VP_OK, "%s: %s", p->what, vp_last_error());
        free(f);
    }
    return ok;
}

/* Loads the GPU model for `shape` and creates its generator. */
/* Loads the decoder for `shape` and makes its generator, which takes from
 * each pool exactly what decoder_gen_plan says. */
static bool pair_generator(struct pair *p, const struct decoder_gen_shape *shape, struct decoder_gen **gen) {
    int B, T;
    decoder_gen_batch_shape(shape, &B, &T);
    uint64_t plan[VP_POOL_COUNT], before[VP_POOL_COUNT];
    if (!CHECKF(decoder_load(p->gpu, B, T) == VP_OK, "%s: %s", p->what, vp_last_error()) || !pair_write_delta(p) ||
        !CHECKF(decoder_gen_plan(p->gpu, shape, plan) == VP_OK, "%s: %s", p->what, vp_last_error()))
        return false;
    dectest_pools_in_use(g_ctx, before);
    if (!CHECKF(decoder_gen_create(p->gpu, shape, gen) == VP_OK, "%s: %s", p->what, vp_last_error())) return false;
    char what[160];
    snprintf(what, sizeof what, "%s: the generator", p->what);
    return dectest_pools_grew_by(g_ctx, before, plan, what);
}

static void pair_close(struct pair *p) {
    decoder_destroy(p->gpu);
    refd_destroy(p->ref);
    p->gpu = NULL;
    p->ref = NULL;
}

/* max|got − want| ≤ tol · max|want|. */
static bool close_normwise(const float *got, const double *want, size_t n, const char *what, int step, int row,
                           double *worst) {
    double err = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= err)) err = e;
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    if (scale > 0 && !(err / (TOL * scale) <= *worst)) *worst = err / (TOL * scale);
    return CHECKF(err <= TOL * scale, "%s: step %d row %d: |got - want| = %.3g, max|want| = %.3g, tolerance %.3g "
                  "relative", what, step, row, err, scale, TOL);
}

/* ------------------------------------------------------------------------
 * (a) Cached logits against the full forward
 * ------------------------------------------------------------------------ */

enum { CB = 2, CT = 8 };
/* Sequence 0: 8 tokens, its prompt 3; sequence 1: 6 tokens, its prompt 2. */
static const int32_t seq_ids[CB * CT] = {5, 17, 9, 12, 25, 39, 7, 3, 21, 30, 1, 11, 6, 33, 0, 0};
static const uint8_t seq_mask[CB * CT] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
static const int seq_len[CB] = {8, 6}, prompt_len[CB] = {3, 2};

static void cached_case(int family, const struct spec_case *c) {
    struct pair p;
    struct decoder_gen *gen = NULL;
    struct decoder *full = NULL;
    const struct decoder_gen_shape shape = {.batch = CB, .prompt_len = 3, .rows = CB, .max_len = CT};
    if (!pair_open(&p, family, c, family_names[family]) || !pair_generator(&p, &shape, &gen)) {
        decoder_gen_destroy(gen);
        pair_close(&p);
        return;
    }
    /* The full forward: the reference and a second GPU model on the batch. */
    double *want = malloc((size_t)CB * CT * V * sizeof *want);
    float *got_full = malloc((size_t)CB * CT * V * sizeof *got_full), *got = malloc((size_t)CB * V * sizeof *got);
    const struct decoder_options opt = {.storage = ENCODER_STORAGE_F32};
    const struct refd_batch rb = {seq_ids, seq_mask, NULL, NULL, CB, CT};
    refd_forward(p.ref, want, &rb);
    struct pair q = p;
    bool ok = CHECKF(decoder_create(g_ctx, p.dir, &p.spec, &opt, CB, CT, &full) == VP_OK, "%s", vp_last_error());
    q.gpu = full;
    ok = ok && pair_write_delta(&q) &&
         CHECKF(decoder_write_batch(full, &(struct decoder_batch){seq_ids, seq_mask, NULL}) == VP_OK, "%s",
                vp_last_error()) &&
         CHECKF(decoder_run(full, DECODER_PASS_EVAL) == VP_OK, "%s", vp_last_error()) &&
         CHECK(decoder_logits(full, got_full) == VP_OK);
    /* Prefill, then one token per step; rows swap at step 2 (the cache is
     * reordered), sequence 1 ends after step 4 and step 5 runs one row. */
    const int32_t *prompts[CB] = {seq_ids, seq_ids + CT};
    const struct search_input in = {CB, prompts, prompt_len};
    int which[CB] = {0, 1}; /* the sequence each row holds */
    int at[CB] = {prompt_len[0], prompt_len[1]};
    double worst_gpu = 0.0, worst_ref = 0.0;
    ok = ok && CHECKF(decoder_gen_prompts(gen, &in) == VP_OK, "%s", vp_last_error());
    for (int step = 0; ok && step <= 5; step++) {
        int rows = step == 5 ? 1 : CB;
        int32_t parent[CB], tokens[CB];
        if (step > 0) {
            for (int r = 0; r < rows; r++) parent[r] = step == 2 ? 1 - r : r;
            if (step == 2) {
                int t = which[0];
                which[0] = which[1], which[1] = t;
                t = at[0], at[0] = at[1], at[1] = t;
            }
            if (step == 5 && which[0] != 0) parent[0] = 1, which[0] = 0, at[0] = at[1];
            for (int r = 0; r < rows; r++) tokens[r] = seq_ids[which[r] * CT + at[r]++];
        }
        ok = CHECKF(decoder_gen_step(gen, rows, step ? parent : NULL, step ? tokens : NULL, got) == VP_OK,
                    "%s: step %d: %s", p.what, step, vp_last_error());
        for (int r = 0; ok && r < rows; r++) {
            const size_t n = (size_t)which[r] * CT + (size_t)at[r] - 1;
            CHECK(at[r] <= seq_len[which[r]]);
            double *full_gpu = malloc((size_t)V * sizeof *full_gpu);
            for (int v = 0; v < V; v++) full_gpu[v] = got_full[n * V + (size_t)v];
            close_normwise(got + (size_t)r * V, full_gpu, V, p.what, step, r, &worst_gpu);
            close_normwise(got + (size_t)r * V, want + n * V, V, p.what, step, r, &worst_ref);
            free(full_gpu);
        }
    }
    th_diag("%s: cached logits within %.3f (GPU full forward) and %.3f (reference) of the tolerance %.3g", p.what,
            worst_gpu, worst_ref, TOL);
    free(want);
    free(got_full);
    free(got);
    decoder_destroy(full);
    decoder_gen_destroy(gen);
    pair_close(&p);
}

static void cached_gpt2(void) {
    cached_case(GPT2, &cases_none);
    cached_case(GPT2, &cases_lora);
    cached_case(GPT2, &cases_prefix);
    cached_case(GPT2, &cases_mam);
}
static void cached_llama(void) {
    cached_case(LLAMA, &cases_none);
    cached_case(LLAMA, &cases_lora);
    cached_case(LLAMA, &cases_prefix);
    cached_case(LLAMA, &cases_mam);
    cached_case(LLAMA, &cases_adapters);
}

/* ------------------------------------------------------------------------
 * The reference as a search model: every step re-runs each row's whole
 * sequence (no cache), reordered by parent on the host
 * ------------------------------------------------------------------------ */

enum { SEQ_CAP = 16, ROW_CAP = 16 };

struct ref_stepper {
    struct refd *m;
    int32_t seq[ROW_CAP][SEQ_CAP], next[ROW_CAP][SEQ_CAP];
    int len[ROW_CAP], next_len[ROW_CAP];
    const struct search_input *in;
};

static vp_status ref_step(void *user, int rows, const int32_t *parent, const int32_t *tokens, float *logits) {
    struct ref_stepper *s = user;
    if (rows > ROW_CAP) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "ref_step: %d rows", rows);
    for (int r = 0; r < rows; r++) {
        const int32_t *src = tokens ? s->seq[parent[r]] : s->in->ids[r];
        const int n = tokens ? s->len[parent[r]] : s->in->lens[r];
        if (n + (tokens != NULL) > SEQ_CAP) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "ref_step: sequence too long");
        memcpy(s->next[r], src, (size_t)n * sizeof(int32_t));
        if (tokens) s->next[r][n] = tokens[r];
        s->next_len[r] = n + (tokens != NULL);
    }
    int T = 0;
    for (int r = 0; r < rows; r++) {
        memcpy(s->seq[r], s->next[r], sizeof s->seq[r]);
        s->len[r] = s->next_len[r];
        if (s->len[r] > T) T = s->len[r];
    }
    int32_t *ids = calloc((size_t)rows * T, sizeof *ids);
    uint8_t *mask = calloc((size_t)rows * T, 1);
    double *out = malloc((size_t)rows * T * V * sizeof *out);
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < s->len[r]; t++) ids[r * T + t] = s->seq[r][t], mask[r * T + t] = 1;
    const struct refd_batch rb = {ids, mask, NULL, NULL, rows, T};
    refd_forward(s->m, out, &rb);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < V; v++) logits[(size_t)r * V + v] = (float)out[((size_t)r * T + s->len[r] - 1) * V + v];
    free(ids);
    free(mask);
    free(out);
    return VP_OK;
}

/* Runs a search with the GPU generator and with the reference and
 * compares: the same tokens and lengths, scores within the tolerance
 * (a score sums ≤ 8 log-probabilities, each as close as the logits). */
static void search_both(struct pair *p, struct decoder_gen *gen, const struct search_options *o,
                        const struct search_input *in, const char *what) {
    struct search_result a, b;
    struct ref_stepper *rs = calloc(1, sizeof *rs);
    rs->m = p->ref;
    rs->in = in;
    const struct search_model rm = {ref_step, rs, V};
    bool ok = CHECKF(decoder_generate(gen, o, in, &a) == VP_OK, "%s: %s: %s", p->what, what, vp_last_error());
    ok = CHECKF(search_run(o, &rm, in, &b) == VP_OK, "%s: %s: reference: %s", p->what, what, vp_last_error()) && ok;
    if (ok && CHECK(a.count == b.count)) {
        int same = 0;
        for (int s = 0; s < a.count; s++) {
            bool eq = a.lengths[s] == b.lengths[s] &&
                      memcmp(a.tokens + (size_t)s * a.capacity, b.tokens + (size_t)s * b.capacity,
                             (size_t)a.lengths[s] * sizeof(int32_t)) == 0;
            same += eq;
            CHECKF(eq, "%s: %s: sequence %d differs (%d vs %d tokens, first %d vs %d)", p->what, what, s,
                   a.lengths[s], b.lengths[s], a.tokens[(size_t)s * a.capacity], b.tokens[(size_t)s * b.capacity]);
            CHECKF(fabs((double)a.scores[s] - b.scores[s]) <= 8 * TOL * (1.0 + fabs((double)b.scores[s])),
                   "%s: %s: sequence %d scores %.9g, the reference %.9g", p->what, what, s, a.scores[s], b.scores[s]);
        }
        th_diag("%s: %s: %d sequences, %d steps, first: %d tokens, score %.6f (reference %.6f)", p->what, what,
                a.count, a.steps, a.lengths[0], a.scores[0], b.scores[0]);
    }
    search_result_free(&a);
    search_result_free(&b);
    free(rs);
}

/* ------------------------------------------------------------------------
 * (c) beam search, (d) sampling
 * ------------------------------------------------------------------------ */

static const int32_t prompt0[] = {4, 19}, prompt1[] = {27};
static const int32_t *const prompt_ids[] = {prompt0, prompt1};
static const int prompt_lens[] = {2, 1};

static void beam_case(int family, const struct spec_case *c) {
    struct pair p;
    struct decoder_gen *gen = NULL;
    /* 2 prompts × 3 beams: 6 rows over a 2-token prefill (one pad-only row
     * is added to the decoder's batch). */
    const struct decoder_gen_shape shape = {.batch = 2, .prompt_len = 2, .rows = 6, .max_len = 2 + 7};
    const struct search_input in = {2, prompt_ids, prompt_lens};
    if (pair_open(&p, family, c, family_names[family]) && pair_generator(&p, &shape, &gen)) {
        struct search_options o = {.max_new_tokens = 7, .num_beams = 3, .num_return_sequences = 2,
                                   .length_penalty = 0.7, .length_penalty_set = true, .eos_count = 1,
                                   .eos_token_ids = {7}};
        search_both(&p, gen, &o, &in, "beam search");
        o = (struct search_options){.max_new_tokens = 6, .num_beams = 3, .no_repeat_ngram_size = 2, .min_new_tokens = 2,
                                    .early_stopping = SEARCH_EARLY_STOPPING_TRUE, .eos_count = 1,
                                    .eos_token_ids = {3}};
        search_both(&p, gen, &o, &in, "beam search, no-repeat 2, early stopping");
    }
    decoder_gen_destroy(gen);
    pair_close(&p);
}

static void beam_gpt2(void) { beam_case(GPT2, &cases_lora); }
static void beam_llama(void) {
    beam_case(LLAMA, &cases_none);
    beam_case(LLAMA, &cases_mam);
}

static void sampling_case(int family, const struct spec_case *c) {
    struct pair p;
    struct decoder_gen *gen = NULL;
    const struct decoder_gen_shape shape = {.batch = 2, .prompt_len = 2, .rows = 4, .max_len = 2 + 8};
    const struct search_input in = {2, prompt_ids, prompt_lens};
    if (pair_open(&p, family, c, family_names[family]) && pair_generator(&p, &shape, &gen)) {
        struct search_options o = {.max_new_tokens = 8, .do_sample = true, .temperature = 1.3, .top_k = 20,
                                   .top_p = 0.95, .seed = 1234, .num_return_sequences = 2};
        struct search_result a, b;
        bool ok = CHECKF(decoder_generate(gen, &o, &in, &a) == VP_OK, "%s", vp_last_error()) &&
                  CHECKF(decoder_generate(gen, &o, &in, &b) == VP_OK, "%s", vp_last_error());
        if (ok) {
            CHECK(a.count == 4 && b.count == 4);
            CHECKF(memcmp(a.tokens, b.tokens, (size_t)a.count * a.capacity * sizeof(int32_t)) == 0 &&
                       memcmp(a.scores, b.scores, (size_t)a.count * sizeof(float)) == 0,
                   "%s: sampling with seed 1234 did not repeat itself", p.what);
            bool differ = false; /* 4 × 8 draws from ~20 tokens: the sequences differ */
            for (int s = 1; s < a.count; s++)
                differ |= memcmp(a.tokens, a.tokens + (size_t)s * a.capacity, 8 * sizeof(int32_t)) != 0;
            CHECKF(differ, "%s: every sampled sequence is the same", p.what);
        }
        search_result_free(&a);
        search_result_free(&b);
        search_both(&p, gen, &o, &in, "sampling against the reference");
    }
    decoder_gen_destroy(gen);
    pair_close(&p);
}

static void sampling_llama(void) { sampling_case(LLAMA, &cases_lora); }

/* ------------------------------------------------------------------------
 * (b) greedy against PyTorch
 * ------------------------------------------------------------------------ */

static void greedy_torch(void) {
    static const struct {
        int family;
        const struct spec_case *c;
    } runs[] = {{GPT2, &cases_none}, {GPT2, &cases_prefix}, {LLAMA, &cases_lora}, {LLAMA, &cases_mam}};
    enum { RUNS = sizeof runs / sizeof runs[0], NEW = 9 };
    struct search_result got[RUNS] = {0};
    char jobs[8192], path[512];
    size_t n = (size_t)snprintf(jobs, sizeof jobs, "[");
    bool ok = true;
    for (int j = 0; ok && j < RUNS; j++) {
        struct pair p;
        struct decoder_gen *gen = NULL;
        char sub[32];
        snprintf(sub, sizeof sub, "greedy-%d", j);
        const struct decoder_gen_shape shape = {.batch = 2, .prompt_len = 2, .rows = 2, .max_len = 2 + NEW};
        const struct search_input in = {2, prompt_ids, prompt_lens};
        const struct search_options o = {.max_new_tokens = NEW, .eos_count = 1, .eos_token_ids = {2}};
        ok = pair_open(&p, runs[j].family, runs[j].c, sub) && pair_generator(&p, &shape, &gen) &&
             CHECKF(decoder_generate(gen, &o, &in, &got[j]) == VP_OK, "%s: %s", p.what, vp_last_error());
        if (ok) {
            snprintf(path, sizeof path, "%s/spec.json", p.dir);
            char *spec = delta_spec_to_json(&p.spec);
            ok = CHECK(spec != NULL) && torch_write_text(path, spec);
            free(spec);
            snprintf(path, sizeof path, "%s/delta.safetensors", p.dir);
            ok = ok && torch_write_ref_tensors(&p.ref->tensors, path, true);
            n += (size_t)snprintf(jobs + n, sizeof jobs - n,
                                  "%s{\"model\":\"%s\",\"spec\":\"%s/spec.json\",\"delta\":\"%s/delta.safetensors\","
                                  "\"prompts\":[[4,19],[27]],\"max_new_tokens\":%d,\"eos_token_id\":2,"
                                  "\"out\":\"%s/greedy.json\"}",
                                  j ? "," : "", p.dir, p.dir, p.dir, NEW, p.dir);
        }
        decoder_gen_destroy(gen);
        pair_close(&p);
    }
    snprintf(path, sizeof path, "%s/greedy-jobs.json", torch.dir);
    n += (size_t)snprintf(jobs + n, sizeof jobs - n, "]");
    ok = ok && torch_write_text(path, jobs) &&
         torch_sh("'%s' '%s' greedy-many '%s'", torch_python(), torch.script, path);
    for (int j = 0; ok && j < RUNS; j++) {
        snprintf(path, sizeof path, "%s/greedy-%d/greedy.json", torch.dir, j);
        void *data = NULL;
        size_t len = 0;
        if (!CHECKF(vp_file_read(path, &data, &len) == VP_OK, "%s", vp_last_error())) break;
        char *text = realloc(data, len + 1);
        text[len] = 0;
        /* {"tokens": [[...], [...]]}: compare as text with the GPU's ids. */
        char want[512];
        size_t w = (size_t)snprintf(want, sizeof want, "{\"tokens\": [");
        for (int s = 0; s < got[j].count; s++) {
            w += (size_t)snprintf(want + w, sizeof want - w, "%s[", s ? ", " : "");
            for (int t = 0; t < got[j].lengths[s]; t++)
                w += (size_t)snprintf(want + w, sizeof want - w, "%s%d", t ? ", " : "",
                                      got[j].tokens[(size_t)s * got[j].capacity + t]);
            w += (size_t)snprintf(want + w, sizeof want - w, "]");
        }
        snprintf(want + w, sizeof want - w, "]}");
        CHECKF(strcmp(text, want) == 0, "%s %s: PyTorch greedy %s, the GPU %s", family_names[runs[j].family],
               runs[j].c->label, text, want);
        th_diag("%s %s: greedy %s", family_names[runs[j].family], runs[j].c->label, want);
        free(text);
    }
    for (int j = 0; j < RUNS; j++) search_result_free(&got[j]);
}

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

static void errors_are_reported(void) {
    struct pair p;
    struct decoder_gen *gen = NULL;
    if (!pair_open(&p, GPT2, &cases_prefix, "errors")) {
        pair_close(&p);
        return;
    }
    uint64_t plan[VP_POOL_COUNT];
    /* n_positions 16, a prefix of 3: at most 13 tokens per sequence. */
    const struct decoder_gen_shape too_long = {.batch = 1, .prompt_len = 2, .rows = 1, .max_len = 14};
    CHECK(decoder_gen_plan(p.gpu, &too_long, plan) == VP_ERROR_INVALID_ARGUMENT);
    th_diag("message: %s", vp_last_error());
    const struct decoder_gen_shape shape = {.batch = 2, .prompt_len = 2, .rows = 2, .max_len = 4};
    CHECK(decoder_gen_create(p.gpu, &shape, &gen) == VP_ERROR_INVALID_ARGUMENT); /* not loaded */
    if (pair_generator(&p, &shape, &gen)) {
        const int32_t bad[] = {4, 40};
        const int32_t *ids[] = {bad, prompt1};
        const struct search_input in = {2, ids, prompt_lens};
        struct search_result r;
        CHECK(decoder_generate(gen, &(struct search_options){.max_new_tokens = 2}, &in, &r) == VP_ERROR_BAD_INPUT);
        th_diag("message: %s", vp_last_error());
        search_result_free(&r);
        const int lens3[] = {3, 1};
        const struct search_input in3 = {2, prompt_ids, lens3};
        CHECK(decoder_gen_prompts(gen, &in3) == VP_ERROR_INVALID_ARGUMENT);
        th_diag("message: %s", vp_last_error());
        /* A sequence past max_len is refused, not written out of bounds. */
        const struct search_input ok_in = {2, prompt_ids, prompt_lens};
        float logits[2 * V];
        const int32_t parent[] = {0, 1}, tokens[] = {1, 1};
        bool ok = CHECK(decoder_gen_prompts(gen, &ok_in) == VP_OK) &&
                  CHECK(decoder_gen_step(gen, 2, NULL, NULL, logits) == VP_OK) &&
                  CHECK(decoder_gen_step(gen, 2, parent, tokens, logits) == VP_OK) &&
                  CHECK(decoder_gen_step(gen, 2, parent, tokens, logits) == VP_OK);
        if (ok) {
            CHECK(decoder_gen_step(gen, 2, parent, tokens, logits) == VP_ERROR_INVALID_ARGUMENT);
            th_diag("message: %s", vp_last_error());
        }
    }
    decoder_gen_destroy(gen);
    pair_close(&p);
}

static void teardown(void) {
    vp_context_destroy(g_ctx);
    g_ctx = NULL;
}

int main(int argc, char **argv) {
    static const struct th_case cases[] = {
        TH_CASE(cached_gpt2), TH_CASE(cached_llama), TH_CASE(beam_gpt2),           TH_CASE(beam_llama),
        TH_CASE(sampling_llama), TH_CASE(greedy_torch), TH_CASE(errors_are_reported), TH_CASE(teardown),
    };
    if (argc < 2) {
        fprintf(stderr, "usage: %s decoder_torch.py [CASE]\n", argv[0]);
        return 2;
    }
    torch.script = argv[1];
    snprintf(torch.dir, sizeof torch.dir, "/tmp/vkpeft-generate-XXXXXX");
    if (!mkdtemp(torch.dir)) return 1;
    int rc = vt_main(cases, sizeof cases / sizeof cases[0], argc - 1, argv + 1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", torch.dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", torch.dir);
    return rc;
}
