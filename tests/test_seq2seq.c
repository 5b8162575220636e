/* The GPU encoder-decoder model (runtime/model/seq2seq_lm.h) against the
 * double-precision seq2seq reference (tests/reference/seq2seq.h) on tiny
 * BART (post-LN, tied head, unscaled embeddings) and mBART (pre-LN with
 * final norms, scaled embeddings, an untied head, different encoder and
 * decoder FFN widths) models written to real folders: loss, scored count
 * and logits with f32 and f16 storage, pool bytes equal to the plan, every
 * trainable tensor's gradient after a training pass (twice: the recording
 * replayed with a second batch of other source and target lengths), label
 * smoothing 0 and 0.1, tensors read back by name, and error messages.
 *
 * Deltas: LoRA at every site (k and v of cross-attention read the encoder
 * output), plain and reparameterised prefixes in all three kinds of
 * attention, MAM, parallel / sequential / per-head / gated adapters,
 * BitFit, full fine-tuning.
 *
 * Dropout (training passes): every site Hugging Face's BART drops at
 * (embeddings, attention probabilities and outputs, FFN activation and
 * output) and the adapters' bottlenecks, with distinct probabilities, the
 * masks the reference draws for the same seed and step; the two passes
 * are two steps (other masks, the training pass recorded again).
 *
 * Generation (KV cache): every cached step's logits against the evaluation
 * pass's at that position, rows swapped between steps, with each kind of
 * delta; greedy against refs_generate_greedy (decoder start, mBART's forced
 * BOS, eos and padding), beam search against search.h driven by the
 * reference's own logits. */
#include "seq2seq_lm.h"
#include "reference/seq2seq.h"
#include "dectest.h"
#include "kerneltest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The reference test's tiny models (test_seq2seq_ref.c): 2 + 2 layers,
 * d 8, 2 heads, vocabulary 20; mBART's decoder FFN 10 against the
 * encoder's 12, scale_embedding, and here an untied lm_head. */
static const char *const configs[] = {
    "{\"model_type\":\"bart\",\"vocab_size\":20,\"d_model\":8,\"encoder_layers\":2,\"decoder_layers\":2,"
    "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":12,\"decoder_ffn_dim\":12,"
    "\"max_position_embeddings\":16,\"activation_function\":\"gelu\",\"scale_embedding\":false,"
    "\"pad_token_id\":1,\"bos_token_id\":0,\"eos_token_id\":2,\"decoder_start_token_id\":2}",
    "{\"model_type\":\"mbart\",\"vocab_size\":20,\"d_model\":8,\"encoder_layers\":2,\"decoder_layers\":2,"
    "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":12,\"decoder_ffn_dim\":10,"
    "\"max_position_embeddings\":16,\"activation_function\":\"gelu\",\"scale_embedding\":true,"
    "\"tie_word_embeddings\":false,\"pad_token_id\":1,\"bos_token_id\":0,\"eos_token_id\":2,"
    "\"decoder_start_token_id\":2,\"forced_bos_token_id\":5}",
};
enum { BART, MBART, FAMILIES };
static const char *const family_names[] = {"bart", "mbart"};

/* Set by the dropout cases: the configs gain distinct probabilities and
 * both sides drop in training passes. */
static bool g_dropout;
enum { DROPOUT_SEED = 99 };

/* The family's config.json (with the dropout cases' probabilities). */
static const char *config_of(int family) {
    static char text[1024];
    if (!g_dropout) return configs[family];
    snprintf(text, sizeof text, "{\"dropout\":0.2,\"attention_dropout\":0.15,\"activation_dropout\":0.25,%s",
             configs[family] + 1);
    return text;
}

/* ------------------------------------------------------------------------
 * Tolerance (test_decoder.c's argument)
 *
 * Both sides start from the same values (the reference rounded to fp32, its
 * matrices to f16 for the f16 runs), so what is left is fp32 arithmetic
 * against double. A length-K fp32 reduction is off by at most K·u·Σ|terms|
 * (u = 2^-24); the longest here are K = 20 (the vocabulary's log-sum-exp
 * and the head) and the FFN widths 10 .. 12. Between the input and the
 * loss lie ~40 dependent reductions (2 encoder layers × 9, 2 decoder layers
 * × 16 with cross-attention, the embedding norms, the head and the loss),
 * each amplified by the norms' and softmax's condition (a few with these
 * weights): 40 · 20 · u · 4 ≈ 1.9e-4 normwise per tensor. The backward adds
 * as many again: 80 · 20 · u · 4 ≈ 3.8e-4. A wrong term (a missing bias, a
 * wrong mask, a transposed head) is off by ≥ 1e-2. f16 storage only rounds
 * the inputs both sides share, so the same bounds hold.
 * ------------------------------------------------------------------------ */
#define TOL (40.0 * 20.0 * KT_EPS_F32 * 4.0)
#define GRAD_TOL (80.0 * 20.0 * KT_EPS_F32 * 4.0)

static vp_context *g_ctx;
static char g_dir[256];

static vp_context *ctx_get(void) {
    if (!g_ctx) g_ctx = vt_context(NULL);
    return g_ctx;
}

static bool make_dir(void) {
    if (g_dir[0]) return true;
    snprintf(g_dir, sizeof g_dir, "/tmp/vkpeft-test-seq2seq-XXXXXX");
    return CHECK(mkdtemp(g_dir) != NULL);
}

/* ------------------------------------------------------------------------
 * Batches: B = 2, S = 6 source and T = 5 target tokens, right padding
 * ------------------------------------------------------------------------ */

enum { B = 2, S = 6, T = 5, NS = B * S, NT = B * T, V = 20 };

struct batch {
    int32_t ids[NS], dec_ids[NT], labels[NT];
    uint8_t mask[NS], dec_mask[NT];
};

/* Source lengths 6, 4 / 3, 6; targets 5, 3 / 4, 5; labels -100 at padding
 * and (batch 1) at the first target token of sequence 0. The decoder input
 * is the labels shifted right after decoder_start_token_id 2. */
static void batch_make(struct batch *b, int which) {
    const int src_len[2][B] = {{6, 4}, {3, 6}}, tgt_len[2][B] = {{5, 3}, {4, 5}};
    uint64_t st = 4242 + (uint64_t)which;
    for (int s = 0; s < B; s++) {
        for (int t = 0; t < S; t++) {
            const int n = s * S + t;
            b->mask[n] = t < src_len[which][s];
            b->ids[n] = b->mask[n] ? (int32_t)(3 + th_rand_u64(&st) % (V - 3)) : 1;
        }
        int32_t y[T];
        for (int t = 0; t < T; t++) y[t] = (int32_t)(3 + th_rand_u64(&st) % (V - 3));
        for (int t = 0; t < T; t++) {
            const int n = s * T + t;
            b->dec_mask[n] = t < tgt_len[which][s];
            b->dec_ids[n] = !b->dec_mask[n] ? 1 : t == 0 ? 2 : y[t - 1];
            b->labels[n] = b->dec_mask[n] && !(which == 1 && s == 0 && t == 0) ? y[t] : -100;
        }
    }
}

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------ */

static bool parse_arch(int family, struct model_arch *arch) {
    const char *json = config_of(family);
    return CHECKF(model_arch_parse(json, strlen(json), "config.json", arch) == VP_OK, "%s", vp_last_error());
}

static void round_reference(struct refs *m, bool f16) {
    for (int k = 0; k < refs_tensor_count(m); k++) {
        struct refm_tensor *t = refs_tensor_at(m, k);
        kt_round(f16 && t->ndim == 2 && strcmp(t->name, "final_logits_bias") != 0 ? VP_DTYPE_F16 : VP_DTYPE_F32,
                 t->data, t->n);
    }
}

/* The scale a gradient's rounding error goes with. A key projection's
 * bias in a block without prefix rows has gradient Σ_keys dk = 0 exactly
 * (a shift of every key score of a query leaves its softmax unchanged), so
 * what fp32 leaves there is rounding of terms as large as the value
 * projection's bias gradient, Σ_keys dv, of the same block: that is its
 * scale. Every other gradient is its own. */
static double grad_scale(struct refs *m, const struct refm_tensor *t) {
    const char *at = strstr(t->name, "k_proj.bias");
    for (int i = 0; at && i < m->spec.count; i++)
        if (m->spec.modules[i].kind == DELTA_PREFIX) return 0.0;
    if (!at) return 0.0;
    char sibling[sizeof t->name];
    snprintf(sibling, sizeof sibling, "%.*sv_proj.bias", (int)(at - t->name), t->name);
    const struct refm_tensor *v = refs_tensor_find(m, sibling);
    double scale = 0.0;
    for (size_t i = 0; v && v->grad && i < v->n; i++)
        if (fabs(v->grad[i]) > scale) scale = fabs(v->grad[i]);
    return scale;
}

static void compare_pass(struct seq2seq *g, struct refs *m, const struct batch *b, const char *what, bool train,
                         double *worst) {
    const struct refs_batch rb = {b->ids, b->mask, b->dec_ids, b->dec_mask, b->labels, B, S, T};
    double *want = malloc((size_t)NT * V * sizeof *want);
    float *got = malloc((size_t)NT * V * sizeof *got);
    const double want_loss = refs_forward(m, want, &rb);
    if (train) {
        refs_zero_grad(m);
        refs_backward(m);
    }
    const struct seq2seq_batch sb = {b->ids, b->mask, b->dec_ids, b->dec_mask, b->labels};
    const bool ok = CHECKF(seq2seq_write_batch(g, &sb) == VP_OK, "%s", vp_last_error()) &&
                    CHECKF(seq2seq_zero_grads(g) == VP_OK, "%s", vp_last_error()) &&
                    CHECKF(seq2seq_run(g, train ? SEQ2SEQ_PASS_TRAIN : SEQ2SEQ_PASS_EVAL) == VP_OK, "%s: %s", what,
                           vp_last_error());
    if (ok) {
        float loss;
        uint32_t count, scored = 0;
        char label[256];
        seq2seq_loss(g, &loss, &count);
        seq2seq_logits(g, got);
        for (int n = 0; n < NT; n++) scored += b->labels[n] != -100;
        CHECKF(count == scored, "%s: %u scored positions, want %u", what, count, scored);
        snprintf(label, sizeof label, "%s: loss", what);
        dectest_check_normwise(&loss, &want_loss, 1, TOL, label, worst, 0.0);
        snprintf(label, sizeof label, "%s: logits", what);
        dectest_check_normwise(got, want, (size_t)NT * V, TOL, label, worst, 0.0);
        for (int k = 0; train && k < refs_tensor_count(m); k++) {
            struct refm_tensor *t = refs_tensor_at(m, k);
            if (!t->grad) continue;
            float *gr = malloc(t->n * sizeof *gr);
            snprintf(label, sizeof label, "%s: d %s", what, t->name);
            if (CHECKF(seq2seq_grad_read(g, t->name, gr, t->n) == VP_OK, "%s: %s", label, vp_last_error()))
                dectest_check_normwise(gr, t->grad, t->n, GRAD_TOL, label, worst, grad_scale(m, t));
            free(gr);
        }
    }
    free(want);
    free(got);
}

/* A delta case: a preset or a JSON spec; NULL both: no delta. */
struct spec_case {
    const char *label, *preset, *json;
};

/* Writes every trainable tensor of the reference into g; checks the count. */
static void copy_trainable(struct seq2seq *g, struct refs *m, const char *what) {
    size_t trainable = 0;
    for (int k = 0; k < refs_tensor_count(m); k++) {
        struct refm_tensor *t = refs_tensor_at(m, k);
        if (!t->grad) continue;
        trainable++;
        float *f = malloc(t->n * sizeof *f);
        for (size_t i = 0; i < t->n; i++) f[i] = (float)t->data[i];
        CHECKF(seq2seq_tensor_write(g, t->name, f, t->n) == VP_OK, "%s: %s", what, vp_last_error());
        free(f);
    }
    CHECKF((size_t)seq2seq_params(g)->count == trainable, "%s: %d trainable tensors, the reference has %zu", what,
           seq2seq_params(g)->count, trainable);
    CHECKF(delta_params_numel(seq2seq_params(g)) == refs_trainable_params(m), "%s: %llu trainable values, the "
           "reference has %zu", what, (unsigned long long)delta_params_numel(seq2seq_params(g)),
           refs_trainable_params(m));
}

/* The case's spec (none: no delta). */
static bool spec_of(const struct spec_case *c, struct delta_spec *spec) {
    if (c && c->preset && !CHECKF(delta_spec_preset(c->preset, spec) == VP_OK, "%s", vp_last_error())) return false;
    return !c || !c->json ||
           CHECKF(delta_spec_parse(c->json, strlen(c->json), c->label, spec) == VP_OK, "%s", vp_last_error());
}

static void run_case(int family, bool f16, double smoothing, const struct spec_case *c) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    struct delta_spec spec = {0};
    if (!spec_of(c, &spec)) return;
    if (!ctx || !make_dir() || !parse_arch(family, &arch)) return;
    const struct refs_options ropt = {.seed = 21 + (uint64_t)family, .weight_std = 0.3, .randomise_zero_init = true,
                                      .label_smoothing = smoothing, .dropout = g_dropout,
                                      .dropout_seed = DROPOUT_SEED};
    struct refs *m;
    const bool made = CHECKF(refs_create(&m, &arch, &spec, &ropt) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    if (!made) return;
    round_reference(m, f16);
    char what[128];
    snprintf(what, sizeof what, "%s %s%s, ε %.1f%s", family_names[family], c ? c->label : "no delta",
             f16 ? " (f16)" : "", smoothing, g_dropout ? ", dropout" : "");
    const struct seq2seq_options opt = {.storage = f16 ? ENCODER_STORAGE_F16 : ENCODER_STORAGE_F32,
                                        .label_smoothing = smoothing, .seed = DROPOUT_SEED, .dropout = g_dropout};
    struct seq2seq *g = NULL;
    uint64_t plan[VP_POOL_COUNT];
    vp_pool_stats before[VP_POOL_COUNT], after;
    bool ok = dectest_write_tensors(&m->tensors, g_dir, config_of(family)) &&
              CHECKF(seq2seq_open(ctx, g_dir, &spec, &opt, &g) == VP_OK, "%s: open: %s", what, vp_last_error()) &&
              CHECKF(seq2seq_plan(g, B, S, T, plan) == VP_OK, "%s", vp_last_error());
    for (int p = 0; ok && p < VP_POOL_COUNT; p++) vp_pool_stats_get(ctx, (vp_pool)p, &before[p]);
    ok = ok && CHECKF(seq2seq_load(g, B, S, T) == VP_OK, "%s: load: %s", what, vp_last_error());
    if (ok) {
        CHECK(seq2seq_weight_dtype(g) == (f16 ? VP_DTYPE_F16 : VP_DTYPE_F32));
        for (int p = 0; p < VP_POOL_COUNT; p++) {
            vp_pool_stats_get(ctx, (vp_pool)p, &after);
            CHECKF(after.in_use - before[p].in_use == plan[p], "%s: %s pool holds %llu bytes, the plan says %llu",
                   what, vp_pool_name((vp_pool)p), (unsigned long long)(after.in_use - before[p].in_use),
                   (unsigned long long)plan[p]);
        }
        copy_trainable(g, m, what);
        double worst = 0.0;
        struct batch b0, b1;
        batch_make(&b0, 0);
        batch_make(&b1, 1);
        for (uint32_t step = 0; step < 2; step++) { /* dropout: other masks at the second step */
            m->opt.dropout_step = step;
            seq2seq_set_step(g, step);
            compare_pass(g, m, step ? &b1 : &b0, what, c != NULL, &worst);
        }
        th_diag("%s: worst error %.3f of its tolerance (forward %.3g, gradients %.3g)", what, worst, TOL, GRAD_TOL);
        bool exact = true; /* every tensor reads back as the reference holds it */
        for (int k = 0; k < refs_tensor_count(m) && exact; k++) {
            struct refm_tensor *t = refs_tensor_at(m, k);
            float *v = malloc(t->n * sizeof *v);
            const bool read = CHECKF(seq2seq_tensor_read(g, t->name, v, t->n) == VP_OK, "%s: %s", t->name,
                                     vp_last_error());
            for (size_t i = 0; read && i < t->n; i++) exact &= (double)v[i] == t->data[i];
            free(v);
            CHECKF(exact, "%s: %s does not read back as written", what, t->name);
        }
    }
    seq2seq_destroy(g);
    refs_destroy(m);
}

static const struct spec_case lora_all = {
    "lora every site", NULL,
    "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4},"
    "{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"alpha\":2},{\"kind\":\"lora\",\"at\":\"v\",\"rank\":1},"
    "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"alpha\":3,\"stack\":[\"cross\"]},"
    "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":3,\"alpha\":6,\"stack\":[\"decoder\"]},"
    "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":8,\"layers\":[1],\"stack\":[\"encoder\"]}]}"};
static const struct spec_case prefix = {"prefix (plain)", NULL,
                                        "{\"modules\":[{\"kind\":\"prefix\",\"length\":3,\"reparam\":0}]}"};
static const struct spec_case prefix_reparam = {
    "prefix (reparam) + plain", NULL,
    "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":5},"
    "{\"kind\":\"prefix\",\"length\":1,\"reparam\":0,\"layers\":[1],\"stack\":[\"cross\",\"encoder\"]}]}"};
static const struct spec_case mam = {"mam", "mam:l=2,r=3,s=2", NULL};
static const struct spec_case pa = {"pa + gated", NULL,
                                    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\","
                                    "\"bottleneck\":3,\"act\":\"gelu\"},{\"kind\":\"adapter\",\"at\":\"ffn\","
                                    "\"insert\":\"parallel\",\"bottleneck\":2,\"compose\":\"gated\"}]}"};
static const struct spec_case adapters_seq = {
    "sequential adapters", NULL,
    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":2},"
    "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\",\"bottleneck\":3,\"compose\":\"scale\","
    "\"scale\":2,\"act\":\"identity\"}]}"};
static const struct spec_case mh_pa = {
    "per-head adapters", NULL,
    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,"
    "\"per_head\":true,\"act\":\"gelu\"},{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\","
    "\"bottleneck\":1,\"per_head\":true,\"compose\":\"gated\",\"stack\":[\"cross\"]}]}"};
static const struct spec_case bitfit = {"bitfit", "bitfit", NULL};
static const struct spec_case bitfit_lora = {
    "bitfit decoder layer 1 + lora", NULL,
    "{\"modules\":[{\"kind\":\"bitfit\",\"layers\":[1],\"stack\":[\"decoder\"]},"
    "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2,\"alpha\":4}]}"};
static const struct spec_case full = {"full", "full", NULL};

static void no_delta(void) {
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.0, NULL);
}
static void no_delta_f16(void) {
    for (int f = 0; f < FAMILIES; f++) run_case(f, true, 0.1, NULL);
}
static void lora(void) {
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.1, &lora_all);
}
static void prefixes(void) {
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.0, &prefix);
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.1, &prefix_reparam);
}
static void mam_preset(void) {
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.1, &mam);
}
static void adapters(void) {
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.0, &pa);
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.1, &adapters_seq);
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.0, &mh_pa);
}
static void bitfit_full(void) {
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.1, &bitfit);
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.0, &bitfit_lora);
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.1, &full);
}
/* Dropout everywhere, against the reference's masks. */
static void dropout(void) {
    g_dropout = true;
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.1, &lora_all);
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.0, &mam);
    for (int f = 0; f < FAMILIES; f++) run_case(f, false, 0.1, &adapters_seq);
    run_case(MBART, false, 0.0, &mh_pa);
    run_case(BART, false, 0.1, &full);
    g_dropout = false;
}

static void deltas_f16(void) {
    run_case(BART, true, 0.1, &mam);
    run_case(MBART, true, 0.0, &lora_all);
    run_case(MBART, true, 0.1, &bitfit_lora); /* f16 frozen weights with trained biases */
}

/* ------------------------------------------------------------------------
 * Generation
 * ------------------------------------------------------------------------ */

enum { MAXNEW = 6, ROWS = 4 };
static const double EOS_BIAS = 1.5; /* sequences of 1 to 6 tokens in the cases below */

/* search.h's step on the reference: every row run alone on its source and
 * whole decoder prefix, the last position's logits (double → float). */
struct ref_gen {
    struct refs *m;
    const struct batch *b;
    int32_t prefix[ROWS][MAXNEW + 1], prev[ROWS][MAXNEW + 1];
    int len[ROWS], prev_len[ROWS], item[ROWS], prev_item[ROWS];
};

static vp_status ref_step(void *user, int rows, const int32_t *parent, const int32_t *tokens, float *logits) {
    struct ref_gen *g = user;
    const int32_t start = (int32_t)g->m->arch.decoder_start_token_id;
    memcpy(g->prev, g->prefix, sizeof g->prev);
    memcpy(g->prev_len, g->len, sizeof g->len);
    memcpy(g->prev_item, g->item, sizeof g->item);
    double *z = malloc((size_t)(MAXNEW + 1) * V * sizeof *z);
    for (int r = 0; r < rows; r++) {
        const int p = parent ? parent[r] : r, n = parent ? g->prev_len[p] : 0;
        memcpy(g->prefix[r], g->prev[p], sizeof g->prefix[r]);
        g->prefix[r][n] = parent ? tokens[r] : start;
        g->len[r] = n + 1;
        g->item[r] = parent ? g->prev_item[p] : r;
        const int i = g->item[r];
        const struct refs_batch rb = {g->b->ids + i * S, g->b->mask + i * S, g->prefix[r], NULL, NULL, 1, S, g->len[r]};
        refs_forward(g->m, z, &rb);
        for (int v = 0; v < V; v++) logits[(size_t)r * V + v] = (float)z[(size_t)(g->len[r] - 1) * V + v];
    }
    free(z);
    return VP_OK;
}

/* Greedy against refs_generate_greedy (mBART: forced BOS first), beam
 * search (2 beams) against search.h driven by the reference's logits: the
 * same tokens, lengths and (within TOL) scores. */
static void generation_case(int family, const struct spec_case *c) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    struct delta_spec spec = {0};
    if (c && !CHECKF(delta_spec_preset(c->preset, &spec) == VP_OK, "%s", vp_last_error())) return;
    if (!ctx || !make_dir() || !parse_arch(family, &arch)) return;
    const struct refs_options ropt = {.seed = 31 + (uint64_t)family, .weight_std = 0.3, .randomise_zero_init = true};
    struct refs *m;
    const bool made = CHECKF(refs_create(&m, &arch, &spec, &ropt) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    if (!made) return;
    /* eos made likelier (final_logits_bias), so some sequences end early
     * and are padded */
    m->w.logits_bias->data[m->arch.eos_token_id] += EOS_BIAS;
    round_reference(m, false);
    char what[96];
    snprintf(what, sizeof what, "%s %s generation", family_names[family], c ? c->label : "no delta");
    const struct seq2seq_options opt = {.storage = ENCODER_STORAGE_F32};
    struct seq2seq *g = NULL;
    struct batch b;
    batch_make(&b, 0);
    if (dectest_write_tensors(&m->tensors, g_dir, configs[family]) &&
        CHECKF(seq2seq_create(ctx, g_dir, &spec, &opt, ROWS, S, MAXNEW + 1, &g) == VP_OK, "%s: %s", what,
               vp_last_error())) {
        copy_trainable(g, m, what);
        int32_t want[B * MAXNEW];
        const int steps = refs_generate_greedy(m, want, b.ids, b.mask, B, S, MAXNEW);
        struct search_options so = {.max_new_tokens = MAXNEW};
        seq2seq_search_defaults(seq2seq_arch(g), &so);
        struct search_result got;
        if (CHECKF(seq2seq_generate(g, &so, b.ids, b.mask, B, S, &got) == VP_OK, "%s: %s", what, vp_last_error())) {
            CHECKF(got.steps == steps, "%s: %d steps, the reference took %d", what, got.steps, steps);
            for (int i = 0; i < B; i++)
                for (int t = 0; t < MAXNEW; t++) {
                    const int32_t y = t < got.lengths[i] ? got.tokens[(size_t)i * got.capacity + t]
                                                         : (int32_t)m->arch.pad_token_id;
                    CHECKF(y == want[i * MAXNEW + t], "%s: source %d token %d is %d, the reference's %d", what, i, t,
                           y, want[i * MAXNEW + t]);
                }
            th_diag("%s: greedy %d steps, %d and %d tokens", what, got.steps, got.lengths[0], got.lengths[1]);
        }
        search_result_free(&got);
        so.num_beams = 2;
        so.num_return_sequences = 2;
        struct ref_gen rg = {.m = m, .b = &b};
        struct search_result ref;
        const struct search_model rm = {ref_step, &rg, V};
        const int32_t start = (int32_t)m->arch.decoder_start_token_id, *starts[B] = {&start, &start};
        const int lens[B] = {1, 1};
        const struct search_input in = {B, starts, lens};
        const bool ok = CHECKF(seq2seq_generate(g, &so, b.ids, b.mask, B, S, &got) == VP_OK, "%s: %s", what,
                               vp_last_error()) &&
                        CHECK(search_run(&so, &rm, &in, &ref) == VP_OK);
        for (int k = 0; ok && k < ref.count; k++) {
            CHECKF(got.lengths[k] == ref.lengths[k], "%s: beam sequence %d has %d tokens, want %d", what, k,
                   got.lengths[k], ref.lengths[k]);
            for (int t = 0; t < ref.lengths[k] && t < got.lengths[k]; t++)
                CHECKF(got.tokens[(size_t)k * got.capacity + t] == ref.tokens[(size_t)k * ref.capacity + t],
                       "%s: beam sequence %d token %d", what, k, t);
            const double want_score = ref.scores[k];
            dectest_check_normwise(&got.scores[k], &want_score, 1, TOL, what, NULL, 0.0);
        }
        if (ok) CHECK(got.count == B * 2);
        search_result_free(&got);
        if (ok) search_result_free(&ref);
    }
    seq2seq_destroy(g);
    refs_destroy(m);
}

/* The cached step against the full forward: the batch's decoder inputs fed
 * one token per step (all real), the rows swapped between steps so the
 * cache follows its parents as beam search's reorder does (the last step
 * keeps one row), f32 or f16 storage alike on both sides, each step's
 * logits against the evaluation pass's at that position. Both sides are
 * the same fp32 kernels over the same values, and masked keys add exact
 * zeros, so what is left is summation order: CACHE_TOL, a tenth of the
 * reference bound. A cache slot taken from the wrong row or position, a
 * stale cross K/V or a missed delta is off by ≥ 1e-2. */
#define CACHE_TOL (TOL / 10.0)

/* seq2seq_gen_create on g (loaded for rows × src_len sources and 1 +
 * new_tokens decoder positions) takes from each pool exactly what
 * seq2seq_gen_plan says for that shape, whose load shape is g's. */
static bool gen_create_as_planned(vp_context *ctx, struct seq2seq *g, int rows, int src_len, int new_tokens,
                                  struct seq2seq_gen **gen, const char *what) {
    const struct seq2seq_gen_shape shape = {rows, src_len, new_tokens};
    int lb, ls, lt;
    seq2seq_gen_load_shape(&shape, &lb, &ls, &lt);
    CHECKF(lb == rows && ls == src_len && lt == 1 + new_tokens, "%s: load shape %d × %d, %d", what, lb, ls, lt);
    uint64_t plan[VP_POOL_COUNT], before[VP_POOL_COUNT];
    if (!CHECKF(seq2seq_gen_plan(g, &shape, plan) == VP_OK, "%s: %s", what, vp_last_error())) return false;
    dectest_pools_in_use(ctx, before);
    if (!CHECKF(seq2seq_gen_create(g, gen) == VP_OK, "%s: %s", what, vp_last_error())) return false;
    char label[160];
    snprintf(label, sizeof label, "%s: the generator", what);
    return CHECKF(plan[VP_POOL_ACTIVATIONS] > 0 && plan[VP_POOL_STAGING] > 0, "%s: the plan is empty", what) &&
           dectest_pools_grew_by(ctx, before, plan, label);
}

static void cached_case(int family, bool f16, const struct spec_case *c) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    struct delta_spec spec = {0};
    if (!spec_of(c, &spec)) return;
    if (!ctx || !make_dir() || !parse_arch(family, &arch)) return;
    const struct refs_options ropt = {.seed = 57 + (uint64_t)family, .weight_std = 0.3, .randomise_zero_init = true};
    struct refs *m;
    const bool made = CHECKF(refs_create(&m, &arch, &spec, &ropt) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    if (!made) return;
    round_reference(m, f16);
    char what[96];
    snprintf(what, sizeof what, "%s %s%s cached step", family_names[family], c ? c->label : "no delta",
             f16 ? " (f16)" : "");
    const struct seq2seq_options opt = {.storage = f16 ? ENCODER_STORAGE_F16 : ENCODER_STORAGE_F32};
    struct seq2seq *g = NULL;
    struct seq2seq_gen *gen = NULL;
    struct batch b;
    batch_make(&b, 0);
    float *whole = malloc((size_t)NT * V * sizeof *whole), *got = malloc((size_t)NT * V * sizeof *got);
    double want[B * V];
    int seq[T][B]; /* the batch row each generator row continues at each step */
    /* the last step keeps one row, continuing the other: a finished row
     * drops out */
    const int rows[T] = {B, B, B, B, 1};
    if (dectest_write_tensors(&m->tensors, g_dir, configs[family]) &&
        CHECKF(seq2seq_create(ctx, g_dir, &spec, &opt, B, S, T, &g) == VP_OK, "%s: %s", what, vp_last_error())) {
        copy_trainable(g, m, what);
        /* generation first, so nothing it reads was left by the full pass */
        bool ok = gen_create_as_planned(ctx, g, B, S, T - 1, &gen, what) &&
                  CHECKF(seq2seq_gen_sources(gen, b.ids, b.mask, B, S) == VP_OK, "%s: %s", what, vp_last_error());
        for (int t = 0; ok && t < T; t++) {
            int32_t parent[B], tokens[B];
            for (int r = 0; r < rows[t]; r++) {
                parent[r] = t % 2 || rows[t] < B ? B - 1 - r : r; /* odd steps swap the rows */
                seq[t][r] = t ? seq[t - 1][parent[r]] : r;
                tokens[r] = b.dec_ids[seq[t][r] * T + t];
            }
            ok = CHECKF(seq2seq_gen_step(gen, rows[t], t ? parent : NULL, t ? tokens : NULL, got + (size_t)t * B * V) ==
                            VP_OK, "%s: %s", what, vp_last_error());
        }
        const struct seq2seq_batch sb = {b.ids, b.mask, b.dec_ids, NULL, NULL};
        ok = ok && CHECKF(seq2seq_write_batch(g, &sb) == VP_OK && seq2seq_run(g, SEQ2SEQ_PASS_EVAL) == VP_OK &&
                              seq2seq_logits(g, whole) == VP_OK,
                          "%s: %s", what, vp_last_error());
        double worst = 0.0;
        for (int t = 0; ok && t < T; t++) {
            for (int r = 0; r < rows[t]; r++)
                for (int v = 0; v < V; v++) want[r * V + v] = whole[((size_t)seq[t][r] * T + t) * V + v];
            char label[128];
            snprintf(label, sizeof label, "%s: position %d", what, t);
            ok = dectest_check_normwise(got + (size_t)t * B * V, want, (size_t)rows[t] * V, CACHE_TOL, label, &worst,
                                        0.0);
        }
        th_diag("%s: worst error %.3g of its tolerance %.3g", what, worst, CACHE_TOL);
    }
    free(got);
    free(whole);
    seq2seq_gen_destroy(gen);
    seq2seq_destroy(g);
    refs_destroy(m);
}

static void cached_step(void) {
    const struct spec_case *cases[] = {NULL, &lora_all, &prefix, &prefix_reparam, &mam, &pa, &adapters_seq, &mh_pa};
    for (int f = 0; f < FAMILIES; f++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) cached_case(f, false, cases[k]);
    cached_case(BART, true, &lora_all); /* f16 frozen weights on both sides */
    cached_case(MBART, true, &mam);
}

static const struct spec_case lora_gen = {"lora", "lora:r=2", NULL};
static void generation(void) {
    generation_case(BART, NULL);
    generation_case(MBART, NULL);
    generation_case(BART, &lora_gen);
    generation_case(MBART, &mam);
}

/* Bad inputs give messages, not crashes. */
static void errors_are_reported(void) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    const struct delta_spec none = {0};
    if (!ctx || !make_dir() || !parse_arch(BART, &arch)) return;
    const struct refs_options ropt = {.seed = 3};
    struct refs *m;
    bool ok = CHECK(refs_create(&m, &arch, &none, &ropt) == VP_OK);
    model_arch_finish(&arch);
    if (!ok) return;
    ok = dectest_write_tensors(&m->tensors, g_dir, configs[BART]);
    refs_destroy(m);
    struct seq2seq *g = NULL;
    if (ok && CHECK(seq2seq_create(ctx, g_dir, &none, NULL, B, S, T, &g) == VP_OK)) {
        CHECK(seq2seq_weight_dtype(g) == VP_DTYPE_F16); /* the default for an F32 file */
        struct batch b;
        batch_make(&b, 0);
        b.dec_ids[3] = V;
        const struct seq2seq_batch sb = {b.ids, b.mask, b.dec_ids, b.dec_mask, b.labels};
        CHECK(seq2seq_write_batch(g, &sb) == VP_ERROR_BAD_INPUT);
        th_diag("message: %s", vp_last_error());
        b.dec_ids[3] = 4;
        b.labels[2] = -7;
        CHECK(seq2seq_write_batch(g, &sb) == VP_ERROR_BAD_INPUT);
        th_diag("message: %s", vp_last_error());
        float v[8];
        CHECK(seq2seq_tensor_write(g, "model.encoder.layernorm_embedding.bias", v, 8) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(seq2seq_grad_read(g, "model.encoder.layernorm_embedding.bias", v, 8) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(seq2seq_tensor_read(g, "model.encoder.layernorm_embedding.bias", v, 8) == VP_OK);
        CHECK(seq2seq_tensor_read(g, "no.such.tensor", v, 8) == VP_ERROR_INVALID_ARGUMENT);
        uint64_t plan[VP_POOL_COUNT];
        CHECK(seq2seq_plan(g, 1, 17, 4, plan) == VP_ERROR_INVALID_ARGUMENT); /* past max_position_embeddings */
        CHECK(seq2seq_gen_plan(g, &(struct seq2seq_gen_shape){1, 4, 16}, plan) == VP_ERROR_INVALID_ARGUMENT);
        th_diag("message: %s", vp_last_error());
        CHECK(seq2seq_gen_plan(g, &(struct seq2seq_gen_shape){1, 4, 0}, plan) == VP_ERROR_INVALID_ARGUMENT);
        th_diag("message: %s", vp_last_error());
    }
    seq2seq_destroy(g);
    g = NULL;
    struct delta_spec bad;
    if (ok && CHECK(delta_spec_preset("adapter:r=2", &bad) == VP_OK)) { /* a layer the model lacks */
        bad.modules[0].layers[0] = 5;
        bad.modules[0].all_layers = false;
        bad.modules[0].layer_count = 1;
        CHECK(seq2seq_open(ctx, g_dir, &bad, NULL, &g) == VP_ERROR_BAD_INPUT);
        th_diag("message: %s", vp_last_error());
        seq2seq_destroy(g);
    }
}

static void teardown(void) {
    vp_context_destroy(g_ctx);
    g_ctx = NULL;
    if (g_dir[0]) dectest_remove_model(g_dir);
}

VT_MAIN(TH_CASE(no_delta), TH_CASE(no_delta_f16), TH_CASE(lora), TH_CASE(prefixes), TH_CASE(mam_preset),
        TH_CASE(adapters), TH_CASE(bitfit_full), TH_CASE(dropout), TH_CASE(deltas_f16), TH_CASE(cached_step), TH_CASE(generation),
        TH_CASE(errors_are_reported), TH_CASE(teardown))
