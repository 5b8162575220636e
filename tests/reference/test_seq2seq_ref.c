/* Tests of the seq2seq reference (seq2seq.h) on tiny BART (post-LN) and
 * mBART (pre-LN, final norms, scaled embeddings) models: every trainable
 * gradient of every delta kind at every site kind (encoder self-attention,
 * decoder self-attention, cross-attention, both FFNs) against central finite
 * differences, with and without label smoothing; then what gradients cannot
 * pin: the loss's normalisation, causality, source padding, that cross-
 * attention reads the source, zero-initialised deltas, the prefix collapse,
 * placement by stack, parameter counts against count.c, names, and greedy
 * generation against teacher forcing. */
#include "harness.h"
#include "ref.h"
#include "reftest.h"
#include "seq2seq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tiny models, 2 encoder and 2 decoder layers, d = 8 with 2 heads,
 * vocabulary 20. BART: gelu, FFN 12; mBART: FFN 12 in the encoder, 10 in
 * the decoder (so a wrong stack's width shows), scale_embedding √8. */
static const char *const configs[] = {
    "{\"model_type\":\"bart\",\"vocab_size\":20,\"d_model\":8,\"encoder_layers\":2,\"decoder_layers\":2,"
    "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":12,\"decoder_ffn_dim\":12,"
    "\"max_position_embeddings\":16,\"activation_function\":\"gelu\",\"scale_embedding\":false,"
    "\"pad_token_id\":1,\"bos_token_id\":0,\"eos_token_id\":2,\"decoder_start_token_id\":2}",
    "{\"model_type\":\"mbart\",\"vocab_size\":20,\"d_model\":8,\"encoder_layers\":2,\"decoder_layers\":2,"
    "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":12,\"decoder_ffn_dim\":10,"
    "\"max_position_embeddings\":16,\"activation_function\":\"gelu\",\"scale_embedding\":true,"
    "\"pad_token_id\":1,\"bos_token_id\":0,\"eos_token_id\":2,\"decoder_start_token_id\":2,"
    "\"forced_bos_token_id\":5}",
};
enum { BART, MBART, FAMILIES };
static const char *const family_names[] = {"bart", "mbart"};

/* Step and tolerances as test_decoder_ref.c argues them (O(1) losses,
 * weights of std 0.3, LoRA s up to 8): truncation and rounding both stay
 * below ~5e-10, a ≥ 20x margin under FD_ATOL + FD_RTOL·|fd|, while a wrong
 * or missing term is off by ≥ 1e-3 relative. */
#define FD_STEP 3e-6
#define FD_RTOL 1e-6
#define FD_ATOL 1e-8
#define EXACT 0.0
/* Two orderings of the same sums: a few ulps of O(1) values. */
#define REORDER_TOL 1e-12

struct spec_case {
    const char *label;
    const char *preset; // or NULL: json
    const char *json;
    int reparam;        // ≥ 0: every prefix module's reparam width; −1: as given
};

static const struct spec_case cases[] = {
    {"lora", "lora:r=2", NULL, -1},
    {"lora every site", NULL,
     "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4},"
     "{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"alpha\":2},{\"kind\":\"lora\",\"at\":\"v\",\"rank\":1},"
     "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"alpha\":3},"
     "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":3,\"alpha\":6,\"stack\":[\"encoder\"]},"
     "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":8,\"layers\":[1],\"stack\":[\"encoder\"]}]}",
     -1},
    {"prefix (plain)", "prefix:l=3", NULL, 0},
    {"prefix (reparam)", "prefix:l=2", NULL, 5},
    {"pa", "pa:r=3", NULL, -1},
    {"mam", "mam:l=2,r=3,s=2", NULL, 0},
    {"mam (reparam)", "mam:l=2,r=3,s=4", NULL, 4},
    /* Every adapter form at every site; bottlenecks ≥ 3 keep some ReLU unit live. */
    {"adapters", NULL,
     "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":5},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,\"act\":\"gelu\","
     "\"compose\":\"scale\",\"scale\":2},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,\"per_head\":true,"
     "\"act\":\"gelu\",\"compose\":\"gated\"},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\",\"bottleneck\":3,\"init\":\"bert\","
     "\"act\":\"gelu\",\"compose\":\"gated\",\"layers\":[0]},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":4,\"act\":\"identity\"}]}",
     -1},
    /* One stack each: separate prefixes, and a cross-only LoRA on k/v (which read the encoder). */
    {"per-stack", NULL,
     "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"stack\":[\"encoder\"]},"
     "{\"kind\":\"prefix\",\"length\":3,\"stack\":[\"cross\"],\"layers\":[1]},"
     "{\"kind\":\"prefix\",\"length\":1,\"stack\":[\"decoder\"]},"
     "{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"stack\":[\"cross\"]},"
     "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2,\"stack\":[\"cross\"]},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":3,\"stack\":[\"decoder\"],"
     "\"act\":\"gelu\"}]}",
     0},
    {"bitfit", "bitfit", NULL, -1},
    {"full", "full", NULL, -1},
};
#define CASE_COUNT (sizeof cases / sizeof cases[0])
enum { CASE_LORA = 0, CASE_LORA_ALL = 1, CASE_PREFIX = 2, CASE_PREFIX_REPARAM = 3, CASE_PA = 4, CASE_MAM = 5,
       CASE_MAM_REPARAM = 6, CASE_ADAPTERS = 7, CASE_STACKS = 8, CASE_BITFIT = 9, CASE_FULL = 10 };

enum { NB = 2, NS = 5, NT = 4, VOCAB = 20 };

/* Source 0: 5 tokens; source 1: 3 tokens and 2 padding. Targets: sequence
 * 0 scores all 4 positions, sequence 1 three (the last is −100). */
struct fixture {
    struct model_arch arch;
    int32_t ids[NB * NS], dec_ids[NB * NT], labels[NB * NT];
    uint8_t mask[NB * NS];
    struct refs_batch batch;
};

static bool fixture_init(struct fixture *f, int family) {
    const char *json = configs[family];
    if (model_arch_parse(json, strlen(json), "config.json", &f->arch) != VP_OK) {
        FAIL("%s config: %s", family_names[family], vp_last_error());
        return false;
    }
    const int32_t ids[NB * NS] = {0, 7, 12, 9, 2, 0, 15, 2, 1, 1};
    const uint8_t mask[NB * NS] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    const int32_t labels[NB * NT] = {11, 4, 17, 2, 8, 13, 2, -100};
    const int32_t dec_ids[NB * NT] = {2, 11, 4, 17, 2, 8, 13, 2}; /* shift_tokens_right, start 2 */
    memcpy(f->ids, ids, sizeof ids);
    memcpy(f->mask, mask, sizeof mask);
    memcpy(f->labels, labels, sizeof labels);
    memcpy(f->dec_ids, dec_ids, sizeof dec_ids);
    f->batch = (struct refs_batch){.ids = f->ids, .mask = f->mask, .dec_ids = f->dec_ids, .labels = f->labels,
                                   .B = NB, .S = NS, .T = NT};
    return true;
}

/* Weights of std 0.3 make attention and GELU visibly nonlinear. */
static struct refs *model_of(const struct model_arch *arch, const struct spec_case *c, bool randomise, double eps) {
    struct delta_spec spec;
    if (!reftest_spec(&spec, c->label, c->preset, c->json, c->reparam)) return NULL;
    const struct refs_options opt = {.seed = vp_hash_str(VP_HASH_INIT, c->label), .weight_std = 0.3,
                                     .randomise_zero_init = randomise, .label_smoothing = eps};
    struct refs *m;
    if (refs_create(&m, arch, &spec, &opt) != VP_OK) {
        FAIL("%s: %s", c->label, vp_last_error());
        return NULL;
    }
    return m;
}

static struct refs *frozen_model(const struct model_arch *arch, uint64_t seed) {
    const struct delta_spec none = {.count = 0};
    const struct refs_options opt = {.seed = seed, .weight_std = 0.3};
    struct refs *m;
    if (!CHECKF(refs_create(&m, arch, &none, &opt) == VP_OK, "%s", vp_last_error())) return NULL;
    return m;
}

/* The frozen model's tensors (model.*, final_logits_bias, lm_head). */
static bool is_model_tensor(const char *name) {
    return strncmp(name, "model.", 6) == 0 || strcmp(name, "final_logits_bias") == 0 ||
           strcmp(name, "lm_head.weight") == 0;
}

/* ------------------------------------------------------------------------
 * Gradients against finite differences
 * ------------------------------------------------------------------------ */

static double forward_loss(void *m, const void *batch) { return refs_forward(m, NULL, batch); }
static void backward(void *m) { refs_backward(m); }

static size_t check_gradients(struct refs *m, const struct refs_batch *batch, const char *what) {
    const struct reftest_model rm = {m, &m->tensors, forward_loss, backward};
    /* k_proj's bias adds q·b_k to every key's score of a query: softmax
     * cancels it, so its gradient is 0 (up to rounding) by construction. */
    const struct reftest_fd fd = {FD_STEP, FD_RTOL, FD_ATOL, "k_proj.bias", 36};
    return reftest_check_gradients(&rm, batch, &fd, what);
}

/* BART without label smoothing, mBART with ε = 0.1; then mam the other way. */
static void gradients_for(int family) {
    struct fixture f;
    if (!fixture_init(&f, family)) return;
    const double eps = family == MBART ? 0.1 : 0.0;
    for (size_t c = 0; c < CASE_COUNT; c++) {
        struct refs *m = model_of(&f.arch, &cases[c], true, eps);
        if (!m) continue;
        char what[96];
        snprintf(what, sizeof what, "%s %s (eps %.1f)", family_names[family], cases[c].label, eps);
        const size_t n = check_gradients(m, &f.batch, what);
        CHECKF(n == refs_trainable_params(m) && n > 0, "%s: %zu of %zu", what, n, refs_trainable_params(m));
        refs_destroy(m);
    }
    struct refs *m = model_of(&f.arch, &cases[CASE_MAM], true, 0.1 - eps);
    if (m) {
        char what[96];
        snprintf(what, sizeof what, "%s mam (eps %.1f)", family_names[family], 0.1 - eps);
        check_gradients(m, &f.batch, what);
        /* A decoder mask (right padding of the decoder input) and no source mask. */
        const uint8_t dec_mask[NB * NT] = {1, 1, 1, 1, 1, 1, 1, 0};
        struct refs_batch b = f.batch;
        b.dec_mask = dec_mask;
        b.mask = NULL;
        snprintf(what, sizeof what, "%s mam, decoder mask", family_names[family]);
        check_gradients(m, &b, what);
        refs_destroy(m);
    }
    model_arch_finish(&f.arch);
}

static void bart_gradients_match_finite_differences(void) { gradients_for(BART); }
static void mbart_gradients_match_finite_differences(void) { gradients_for(MBART); }

/* With dropout at every site (embeddings, attention probabilities and
 * output, FFN activation and output, adapter bottlenecks; distinct
 * probabilities), the masks fixed by (seed, step): the loss is a smooth
 * function of the weights again, and the backward matches finite
 * differences; the dropped loss differs from the undropped one, and
 * another step draws other masks. */
static void dropout_gradients_match_finite_differences(void) {
    for (int family = 0; family < FAMILIES; family++) {
        struct fixture f;
        if (!fixture_init(&f, family)) continue;
        f.arch.hidden_dropout = 0.2;
        f.arch.attention_dropout = 0.15;
        f.arch.activation_dropout = 0.25;
        const size_t which[] = {CASE_FULL, CASE_ADAPTERS, CASE_MAM};
        for (size_t k = 0; k < sizeof which / sizeof which[0]; k++) {
            const struct spec_case *c = &cases[which[k]];
            struct delta_spec spec;
            if (!reftest_spec(&spec, c->label, c->preset, c->json, c->reparam)) continue;
            struct refs_options opt = {.seed = vp_hash_str(VP_HASH_INIT, c->label), .weight_std = 0.3,
                                       .randomise_zero_init = true, .label_smoothing = 0.1};
            struct refs *plain = NULL, *m = NULL;
            if (!CHECKF(refs_create(&plain, &f.arch, &spec, &opt) == VP_OK, "%s", vp_last_error())) continue;
            opt.dropout = true;
            opt.dropout_seed = 7;
            opt.dropout_step = 3;
            if (!CHECKF(refs_create(&m, &f.arch, &spec, &opt) == VP_OK, "%s", vp_last_error())) {
                refs_destroy(plain);
                continue;
            }
            char what[96];
            snprintf(what, sizeof what, "%s %s with dropout", family_names[family], c->label);
            const double l0 = refs_forward(plain, NULL, &f.batch), l1 = refs_forward(m, NULL, &f.batch);
            m->opt.dropout_step = 4;
            const double l2 = refs_forward(m, NULL, &f.batch);
            m->opt.dropout_step = 3;
            CHECKF(l0 != l1 && l1 != l2, "%s: loss %.12g without dropout, %.12g at step 3, %.12g at step 4", what, l0,
                   l1, l2);
            const size_t n = check_gradients(m, &f.batch, what);
            CHECKF(n == refs_trainable_params(m) && n > 0, "%s: %zu of %zu", what, n, refs_trainable_params(m));
            refs_destroy(m);
            refs_destroy(plain);
        }
        model_arch_finish(&f.arch);
    }
}

/* Parameter gradients accumulate: two backwards give twice one, exactly. */
static void backward_accumulates(void) {
    struct fixture f;
    if (!fixture_init(&f, MBART)) return;
    struct refs *m = model_of(&f.arch, &cases[CASE_MAM_REPARAM], true, 0.0);
    if (!m) return;
    refs_forward(m, NULL, &f.batch);
    refs_zero_grad(m);
    refs_backward(m);
    const char *names[] = {"delta0.reparam.2.weight", "decoder.layers.1.delta1.up.weight"};
    double *once[2] = {NULL, NULL};
    for (size_t k = 0; k < 2; k++) {
        const struct refm_tensor *t = refs_tensor_find(m, names[k]);
        if (CHECKF(t != NULL, "%s", names[k])) {
            once[k] = malloc(t->n * sizeof(double));
            for (size_t i = 0; i < t->n; i++) once[k][i] = 2.0 * t->grad[i];
        }
    }
    refs_backward(m);
    for (size_t k = 0; k < 2; k++) {
        const struct refm_tensor *t = refs_tensor_find(m, names[k]);
        if (once[k]) CHECKF(reftest_max_abs_diff(t->grad, once[k], t->n) == EXACT, "%s", names[k]);
        free(once[k]);
    }
    refs_zero_grad(m);
    CHECK(refs_tensor_find(m, "delta0.reparam.2.weight")->grad[0] == 0.0);
    refs_destroy(m);
    model_arch_finish(&f.arch);
}

/* ------------------------------------------------------------------------
 * Loss, masks, attention
 * ------------------------------------------------------------------------ */

/* loss = mean over positions whose label is not −100 of CE(logits[b,t],
 * labels[b,t]) — no shift; no labels: 0 and zero gradients. */
static void loss_is_the_mean_over_labelled_positions(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        const double eps = fam == MBART ? 0.1 : 0.0;
        struct refs *m = model_of(&f.arch, &cases[CASE_LORA], true, eps);
        if (!m) continue;
        static double logits[NB * NT * VOCAB];
        const double loss = refs_forward(m, logits, &f.batch);
        double want = 0.0;
        int count = 0;
        for (int n = 0; n < NB * NT; n++)
            if (f.labels[n] != -100) {
                want += reftest_token_loss(logits + (size_t)n * VOCAB, VOCAB, f.labels[n], eps);
                count++;
            }
        CHECK(count == 7);
        want /= count;
        CHECKF(fabs(loss - want) <= REORDER_TOL, "%s: loss %.15g, by hand %.15g", family_names[fam], loss, want);
        struct refs_batch unscored = f.batch;
        unscored.labels = NULL;
        CHECK(refs_forward(m, NULL, &unscored) == 0.0);
        refs_zero_grad(m);
        refs_backward(m);
        double gmax = 0.0;
        for (int k = 0; k < refs_tensor_count(m); k++) {
            const struct refm_tensor *t = refs_tensor_at(m, k);
            for (size_t i = 0; t->grad && i < t->n; i++) gmax = fmax(gmax, fabs(t->grad[i]));
        }
        CHECK(gmax == 0.0);
        refs_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* The decoder is causal (a later decoder token changes no earlier logits,
 * exactly); every decoder position reads the source through
 * cross-attention; padded source tokens change nothing, exactly. With
 * prefixes everywhere (mam) so their rows take part. */
static void decoder_causal_cross_reads_source_padding_ignored(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        struct refs *m = model_of(&f.arch, &cases[CASE_MAM], true, 0.0);
        if (!m) continue;
        static double a[NB * NT * VOCAB], b[NB * NT * VOCAB];
        refs_forward(m, a, &f.batch);
        f.dec_ids[2] = 19;
        refs_forward(m, b, &f.batch);
        CHECKF(reftest_max_abs_diff(a, b, 2 * VOCAB) == EXACT, "%s: a later token changed earlier logits",
               family_names[fam]);
        CHECK(reftest_max_abs_diff(a + 2 * VOCAB, b + 2 * VOCAB, VOCAB) > 1e-6);
        CHECK(reftest_max_abs_diff(a + NT * VOCAB, b + NT * VOCAB, NT * VOCAB) == EXACT); /* the other sequence */
        f.dec_ids[2] = 4;
        f.ids[3] = 18; /* a real source token of sequence 0 */
        refs_forward(m, b, &f.batch);
        for (int t = 0; t < NT; t++)
            CHECKF(reftest_max_abs_diff(a + t * VOCAB, b + t * VOCAB, VOCAB) > 1e-6,
                   "%s: decoder position %d does not see the source", family_names[fam], t);
        CHECK(reftest_max_abs_diff(a + NT * VOCAB, b + NT * VOCAB, NT * VOCAB) == EXACT);
        f.ids[3] = 9;
        f.ids[8] = 14; /* padding of sequence 1 */
        f.ids[9] = 3;
        refs_forward(m, b, &f.batch);
        CHECKF(reftest_max_abs_diff(a, b, NB * NT * VOCAB) == EXACT, "%s: source padding changed the logits",
               family_names[fam]);
        refs_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* ------------------------------------------------------------------------
 * Initialisation, collapse, stacks, counts, names
 * ------------------------------------------------------------------------ */

/* Zero-initialised up-projections and LoRA B leave the frozen model's
 * logits bit-for-bit; prefixes change them from step 0. */
static void zero_init_keeps_frozen_logits(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        struct refs *frozen = frozen_model(&f.arch, 7);
        static double want[NB * NT * VOCAB], got[NB * NT * VOCAB];
        if (frozen) refs_forward(frozen, want, &f.batch);
        const size_t cs[] = {CASE_LORA, CASE_LORA_ALL, CASE_PA, CASE_PREFIX};
        for (size_t c = 0; frozen && c < sizeof cs / sizeof cs[0]; c++) {
            struct refs *m = model_of(&f.arch, &cases[cs[c]], false, 0.0);
            if (!m) continue;
            CHECK(reftest_copy_tensors(&m->tensors, &frozen->tensors, is_model_tensor) == 0);
            refs_forward(m, got, &f.batch);
            const double diff = reftest_max_abs_diff(got, want, NB * NT * VOCAB);
            if (cs[c] == CASE_PREFIX) CHECKF(diff > 1e-9, "%s prefix: logits unchanged", family_names[fam]);
            else CHECKF(diff == EXACT, "%s %s: logits differ by %.3g", family_names[fam], cases[cs[c]].label, diff);
            refs_destroy(m);
        }
        refs_destroy(frozen);
        model_arch_finish(&f.arch);
    }
}

/* Collapsing the one reparameterisation into per-block prefixes keeps the
 * forward exactly. */
static void collapse_prefix_keeps_forward(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        struct refs *m = model_of(&f.arch, &cases[CASE_MAM_REPARAM], true, 0.0);
        if (!m) continue;
        static double a[NB * NT * VOCAB], b[NB * NT * VOCAB];
        refs_forward(m, a, &f.batch);
        CHECK(refs_collapse_prefix(m) == VP_OK);
        CHECK(refs_tensor_find(m, "delta0.reparam.embedding") == NULL);
        const char *names[] = {"encoder.layers.1.delta0.prefix_k", "decoder.layers.0.delta0.prefix_v",
                               "cross.layers.1.delta0.prefix_k"};
        for (size_t k = 0; k < 3; k++) {
            const struct refm_tensor *t = refs_tensor_find(m, names[k]);
            CHECKF(t && t->grad && t->shape[0] == 2 && t->shape[1] == 8, "%s", names[k]);
        }
        refs_forward(m, b, &f.batch);
        CHECKF(reftest_max_abs_diff(a, b, NB * NT * VOCAB) == EXACT, "%s: collapse changed the logits",
               family_names[fam]);
        refs_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* Trainable values per module = delta_count_params' module_params, for
 * every case (bitfit's outer βs and full's whole model included). */
static void trainable_counts_match_delta_count_params(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        for (size_t c = 0; c < CASE_COUNT; c++) {
            struct refs *m = model_of(&f.arch, &cases[c], false, 0.0);
            if (!m) continue;
            struct delta_counts counts;
            if (CHECKF(delta_count_params(&m->spec, &f.arch, &counts) == VP_OK, "%s", vp_last_error())) {
                if (c == CASE_BITFIT || c == CASE_FULL) {
                    CHECKF(refs_trainable_params(m) == counts.module_params[0], "%s %s: %zu trainable, count.c %llu",
                           family_names[fam], cases[c].label, refs_trainable_params(m),
                           (unsigned long long)counts.module_params[0]);
                    refs_destroy(m);
                    continue;
                }
                char what[96];
                snprintf(what, sizeof what, "%s %s", family_names[fam], cases[c].label);
                reftest_expect_module_counts(&m->tensors, m->spec.count, &counts, what);
            }
            refs_destroy(m);
        }
        model_arch_finish(&f.arch);
    }
}

static void expect_tensor(struct refs *m, const char *name, int ndim, int s0, int s1, bool trainable) {
    reftest_expect_tensor(&m->tensors, name, ndim, s0, s1, 0, trainable);
}

/* Hugging Face names and shapes; where each stack's modules go. */
static void tensor_names_shapes_and_stacks(void) {
    struct fixture f;
    if (!fixture_init(&f, MBART)) return;
    struct refs *m = model_of(&f.arch, &cases[CASE_BITFIT], false, 0.0);
    if (m) {
        expect_tensor(m, "model.shared.weight", 2, 20, 8, false);
        expect_tensor(m, "model.encoder.embed_positions.weight", 2, 18, 8, false);
        expect_tensor(m, "model.decoder.layernorm_embedding.bias", 1, 8, 0, true);
        expect_tensor(m, "model.encoder.layers.1.self_attn.out_proj.bias", 1, 8, 0, true);
        expect_tensor(m, "model.decoder.layers.0.encoder_attn.k_proj.weight", 2, 8, 8, false);
        expect_tensor(m, "model.decoder.layers.0.encoder_attn_layer_norm.bias", 1, 8, 0, true);
        expect_tensor(m, "model.decoder.layers.1.fc1.weight", 2, 10, 8, false);
        expect_tensor(m, "model.encoder.layers.1.fc2.weight", 2, 8, 12, false);
        expect_tensor(m, "model.decoder.layer_norm.bias", 1, 8, 0, true);
        expect_tensor(m, "model.encoder.layer_norm.weight", 1, 8, 0, false);
        expect_tensor(m, "final_logits_bias", 2, 1, 20, false);
        CHECK(refs_tensor_find(m, "lm_head.weight") == NULL);
        refs_destroy(m);
    }
    m = model_of(&f.arch, &cases[CASE_STACKS], false, 0.0);
    if (m) {
        expect_tensor(m, "encoder.layers.0.delta0.prefix_k", 2, 2, 8, true);
        CHECK(refs_tensor_find(m, "decoder.layers.0.delta0.prefix_k") == NULL);
        expect_tensor(m, "cross.layers.1.delta1.prefix_v", 2, 3, 8, true);
        CHECK(refs_tensor_find(m, "cross.layers.0.delta1.prefix_v") == NULL);
        expect_tensor(m, "decoder.layers.1.delta2.prefix_k", 2, 1, 8, true);
        expect_tensor(m, "cross.layers.0.delta3.lora_A", 2, 2, 8, true);
        CHECK(refs_tensor_find(m, "decoder.layers.0.delta3.lora_A") == NULL);
        expect_tensor(m, "decoder.layers.0.delta5.up.weight", 2, 8, 3, true);
        CHECK(refs_tensor_find(m, "encoder.layers.0.delta5.up.weight") == NULL);
        CHECK(m->deltas.prefix_rows[refs_block(m, DELTA_STACK_CROSS, 1)] == 3);
        refs_destroy(m);
    }
    /* mam: FFN modules skip cross-attention blocks; the reparam covers 6 blocks. */
    m = model_of(&f.arch, &cases[CASE_MAM_REPARAM], false, 0.0);
    if (m) {
        expect_tensor(m, "delta0.reparam.2.weight", 2, 6 * 2 * 8, 4, true);
        expect_tensor(m, "encoder.layers.0.delta1.down.weight", 2, 3, 8, true);
        CHECK(refs_tensor_find(m, "cross.layers.0.delta1.down.weight") == NULL);
        refs_destroy(m);
    }
    /* A LoRA on fc1 of both stacks needs one FFN width; a decoder-only model is not this reference's. */
    struct delta_spec spec;
    struct refs *bad = NULL;
    if (reftest_spec(&spec, "lora up", NULL, "{\"modules\":[{\"kind\":\"lora\",\"at\":\"up\",\"rank\":2}]}", -1))
        CHECK(refs_create(&bad, &f.arch, &spec, NULL) == VP_ERROR_BAD_INPUT && bad == NULL);
    struct model_arch gpt2;
    const char *gj = "{\"model_type\":\"gpt2\",\"vocab_size\":30,\"n_embd\":8,\"n_layer\":1,\"n_head\":2}";
    if (CHECK(model_arch_parse(gj, strlen(gj), "config.json", &gpt2) == VP_OK)) {
        const struct delta_spec none = {.count = 0};
        CHECK(refs_create(&bad, &gpt2, &none, NULL) == VP_ERROR_BAD_INPUT && bad == NULL);
        model_arch_finish(&gpt2);
    }
    model_arch_finish(&f.arch);
}

/* ------------------------------------------------------------------------
 * Generation
 * ------------------------------------------------------------------------ */

/* Greedy tokens are the argmax of a teacher-forced forward over
 * [start, tokens...] at every position (but the forced BOS), and stop after
 * eos. Weights of std 1 so the argmax is not flat. */
static void greedy_matches_teacher_forcing(void) {
    enum { MAX_NEW = 6 };
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        struct delta_spec spec;
        if (!reftest_spec(&spec, "mam", "mam:l=2,r=3,s=2", NULL, 0)) continue;
        const struct refs_options opt = {.seed = 11, .weight_std = 1.0, .randomise_zero_init = true};
        struct refs *m;
        if (!CHECKF(refs_create(&m, &f.arch, &spec, &opt) == VP_OK, "%s", vp_last_error())) continue;
        int32_t out[NB * MAX_NEW];
        const int steps = refs_generate_greedy(m, out, f.ids, f.mask, NB, NS, MAX_NEW);
        CHECK(steps >= 1 && steps <= MAX_NEW);
        int32_t dec[NB * MAX_NEW];
        for (int b = 0; b < NB; b++) {
            dec[b * MAX_NEW] = f.arch.decoder_start_token_id;
            for (int t = 1; t < MAX_NEW; t++) dec[b * MAX_NEW + t] = out[b * MAX_NEW + t - 1];
        }
        static double logits[NB * MAX_NEW * VOCAB];
        const struct refs_batch b = {.ids = f.ids, .mask = f.mask, .dec_ids = dec, .B = NB, .S = NS, .T = MAX_NEW};
        refs_forward(m, logits, &b);
        for (int s = 0; s < NB; s++) {
            bool ended = false;
            for (int t = 0; t < MAX_NEW; t++) {
                const int32_t y = out[s * MAX_NEW + t];
                if (ended || t >= steps) {
                    CHECKF(y == f.arch.pad_token_id, "%s seq %d step %d: %d after the end", family_names[fam], s, t, y);
                    continue;
                }
                const double *z = logits + ((size_t)s * MAX_NEW + t) * VOCAB;
                int best = 0;
                for (int v = 1; v < VOCAB; v++)
                    if (z[v] > z[best]) best = v;
                const int want = t == 0 && f.arch.forced_bos_token_id >= 0 ? f.arch.forced_bos_token_id : best;
                CHECKF(y == want, "%s seq %d step %d: generated %d, teacher-forced argmax %d", family_names[fam], s, t,
                       y, want);
                ended = y == f.arch.eos_token_id;
            }
        }
        refs_destroy(m);
        model_arch_finish(&f.arch);
    }
}

TH_MAIN(TH_CASE(bart_gradients_match_finite_differences), TH_CASE(mbart_gradients_match_finite_differences),
        TH_CASE(dropout_gradients_match_finite_differences),
        TH_CASE(backward_accumulates), TH_CASE(loss_is_the_mean_over_labelled_positions),
        TH_CASE(decoder_causal_cross_reads_source_padding_ignored), TH_CASE(zero_init_keeps_frozen_logits),
        TH_CASE(collapse_prefix_keeps_forward), TH_CASE(trainable_counts_match_delta_count_params),
        TH_CASE(tensor_names_shapes_and_stacks), TH_CASE(greedy_matches_teacher_forcing))
