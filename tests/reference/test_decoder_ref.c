/* Tests of the decoder reference (decoder.h) on tiny GPT-2, LLaMA (grouped
 * query attention, untied head) and Qwen2 (q/k/v biases, tied head) causal
 * LMs: every trainable gradient of every delta preset against central
 * finite differences of the loss, on a batch with right padding and a loss
 * mask; then properties that pin what gradients cannot: the loss's
 * normalisation and masks, causality, padding invariance, the tied head's
 * two gradient terms, LoRA merged into its (Conv1D or Linear) projection,
 * GQA as MHA with repeated heads, the prefix's position offset, the prefix
 * collapse, stacks, parameter counts and names. */
#include "decoder.h"
#include "harness.h"
#include "ref.h"
#include "reftest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tiny models, 2 layers, vocabulary 30: GPT-2 d = 8 with 2 heads; LLaMA
 * d = 16 with 4 query heads over 2 kv heads (hd = 4); Qwen2 d = 12 with 3
 * query heads over 1 kv head (hd = 4), biases on q/k/v, tied head. */
static const char *const configs[] = {
    "{\"model_type\":\"gpt2\",\"vocab_size\":30,\"n_embd\":8,\"n_layer\":2,\"n_head\":2,\"n_inner\":16,"
    "\"n_positions\":16,\"layer_norm_epsilon\":1e-5}",
    "{\"model_type\":\"llama\",\"vocab_size\":30,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":20,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":100.0,\"tie_word_embeddings\":false}",
    "{\"model_type\":\"qwen2\",\"vocab_size\":30,\"hidden_size\":12,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":3,\"num_key_value_heads\":1,\"intermediate_size\":16,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":50.0,\"tie_word_embeddings\":true}",
};
enum { GPT2, LLAMA, QWEN2, FAMILIES };
static const char *const family_names[] = {"gpt2", "llama", "qwen2"};

/* Finite-difference step, relative to max(1, |θ|). Central differences have
 * truncation error h²·L'''/6 and rounding error ≈ δL/h, δL the forward's own
 * rounding, a few ulps of L ≈ log 30 ≈ 3.4, ~1e-15. The lora preset's
 * s = α/r = 8 lets L''' reach ~100 (the error at h = 1e-4 is 100x the one at
 * 1e-5: truncation), so h = 3e-6 balances the two: ~1.5e-10 + 3e-10. */
#define FD_STEP 3e-6
/* |fd − analytic| ≤ FD_ATOL + FD_RTOL·|fd|: both error sources stay below
 * ~5e-10 for these O(1) losses with weights of std 0.3, a ≥ 20x margin,
 * while a wrong or missing term is off by ≥ 1e-3 relative and fails it. */
#define FD_RTOL 1e-6
#define FD_ATOL 1e-8
/* Forwards whose rows do the same double operations on the same values. */
#define EXACT 0.0
/* Two orderings of the same sums (merged weights, a reordered gradient
 * sum): a few ulps of O(1) values, far below 1e-12, while a misplaced term
 * moves results by ≥ 1e-6. */
#define REORDER_TOL 1e-12

struct spec_case {
    const char *label;
    const char *preset; // or NULL: json
    const char *json;
    int reparam;        // ≥ 0: every prefix module's reparam width; −1: as given
    bool zero_positions; // REFD_PREFIX_POSITIONS_ZERO
};

static const struct spec_case cases[] = {
    {"lora", "lora:r=2", NULL, -1, false},
    {"lora every site", NULL,
     "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4},"
     "{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"alpha\":2},{\"kind\":\"lora\",\"at\":\"v\",\"rank\":1},"
     "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"alpha\":3},{\"kind\":\"lora\",\"at\":\"up\",\"rank\":3,\"alpha\":6},"
     "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":8,\"layers\":[1]}]}",
     -1, false},
    {"prefix (plain)", "prefix:l=3", NULL, 0, false},
    {"prefix (reparam)", "prefix:l=2", NULL, 5, false},
    {"prefix (zero positions)", "prefix:l=3", NULL, 0, true},
    {"pa", "pa:r=3", NULL, -1, false},
    {"mam", "mam:l=2,r=3,s=2", NULL, 0, false},
    {"mam (reparam)", "mam:l=2,r=3,s=4", NULL, 4, false},
    /* Bottlenecks ≥ 3 keep some ReLU unit live; the bert-init adapter uses
     * GELU (its tiny W_down would leave a ReLU dead wherever its bias is
     * negative, and its gradients vacuously 0). */
    {"adapters", NULL,
     "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":3},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,\"act\":\"gelu\","
     "\"compose\":\"scale\",\"scale\":2},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,\"per_head\":true,"
     "\"act\":\"gelu\",\"compose\":\"gated\"},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\",\"bottleneck\":3,\"init\":\"bert\","
     "\"act\":\"gelu\",\"compose\":\"gated\",\"layers\":[0]},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":4,\"act\":\"identity\"}]}",
     -1, false},
    {"bitfit", "bitfit", NULL, -1, false},
    {"full", "full", NULL, -1, false},
};
#define CASE_COUNT (sizeof cases / sizeof cases[0])
enum { CASE_LORA = 0, CASE_LORA_ALL = 1, CASE_PREFIX = 2, CASE_PREFIX_REPARAM = 3, CASE_PA = 5, CASE_MAM = 6,
       CASE_ADAPTERS = 8, CASE_FULL = 10 };

enum { NB = 2, NT = 5, VOCAB = 30 };

/* Sequence 0: a 2-token prompt and a 3-token completion (loss on the
 * completion only); sequence 1: 3 real tokens and 2 padding tokens. */
struct fixture {
    struct model_arch arch;
    int32_t ids[NB * NT];
    uint8_t mask[NB * NT], loss_mask[NB * NT];
    struct refd_batch batch;
};

static bool fixture_init(struct fixture *f, int family) {
    const char *json = configs[family];
    if (model_arch_parse(json, strlen(json), "config.json", &f->arch) != VP_OK) {
        FAIL("%s config: %s", family_names[family], vp_last_error());
        return false;
    }
    const int32_t ids[NB * NT] = {3, 17, 9, 12, 25, 7, 3, 21, 0, 0};
    const uint8_t mask[NB * NT] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    const uint8_t loss_mask[NB * NT] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    memcpy(f->ids, ids, sizeof ids);
    memcpy(f->mask, mask, sizeof mask);
    memcpy(f->loss_mask, loss_mask, sizeof loss_mask);
    f->batch = (struct refd_batch){.ids = f->ids, .mask = f->mask, .loss_mask = f->loss_mask, .B = NB, .T = NT};
    return true;
}

static bool spec_of(const struct spec_case *c, struct delta_spec *s) {
    return reftest_spec(s, c->label, c->preset, c->json, c->reparam);
}

/* Weights of std 0.3 make attention, GELU and SwiGLU visibly nonlinear. */
static struct refd *model_of(const struct model_arch *arch, const struct spec_case *c, bool randomise, double eps) {
    struct delta_spec spec;
    if (!spec_of(c, &spec)) return NULL;
    const struct refd_options opt = {
        .seed = vp_hash_str(VP_HASH_INIT, c->label), .weight_std = 0.3, .randomise_zero_init = randomise,
        .label_smoothing = eps,
        .prefix_positions = c->zero_positions ? REFD_PREFIX_POSITIONS_ZERO : REFD_PREFIX_POSITIONS_PEFT};
    struct refd *m;
    if (refd_create(&m, arch, &spec, &opt) != VP_OK) {
        FAIL("%s: %s", c->label, vp_last_error());
        return NULL;
    }
    return m;
}

static struct refd *frozen_model(const struct model_arch *arch, uint64_t seed) {
    const struct delta_spec none = {.count = 0};
    const struct refd_options opt = {.seed = seed, .weight_std = 0.3};
    struct refd *m;
    if (!CHECKF(refd_create(&m, arch, &none, &opt) == VP_OK, "%s", vp_last_error())) return NULL;
    return m;
}

/* Not a delta tensor (decoder.layers.*, delta{i}.reparam.*). */
static bool is_model_tensor(const char *name) {
    return strncmp(name, "decoder.", 8) != 0 && strncmp(name, "delta", 5) != 0;
}

/* dst's tensors take src's values by name (only the frozen model's when
 * model_only); returns how many same-named tensors differ in size. */
static int copy_tensors(struct refd *dst, struct refd *src, bool model_only) {
    return reftest_copy_tensors(&dst->tensors, &src->tensors, model_only ? is_model_tensor : NULL);
}

/* ------------------------------------------------------------------------
 * Gradients against finite differences
 * ------------------------------------------------------------------------ */

static double forward_loss(void *m, const void *batch) { return refd_forward(m, NULL, batch); }
static void backward(void *m) { refd_backward(m); }

/* Checks every element of every trainable tensor; returns how many. */
static size_t check_gradients(struct refd *m, const struct refd_batch *batch, const char *what) {
    const struct reftest_model rm = {m, &m->tensors, forward_loss, backward};
    const struct reftest_fd fd = {FD_STEP, FD_RTOL, FD_ATOL, NULL, 32};
    return reftest_check_gradients(&rm, batch, &fd, what);
}

static void gradients_for(int family) {
    struct fixture f;
    if (!fixture_init(&f, family)) return;
    for (size_t c = 0; c < CASE_COUNT; c++) {
        /* LLaMA runs with label smoothing, so its gradient is checked too. */
        struct refd *m = model_of(&f.arch, &cases[c], true, family == LLAMA ? 0.1 : 0.0);
        if (!m) continue;
        char what[96];
        snprintf(what, sizeof what, "%s %s", family_names[family], cases[c].label);
        const size_t n = check_gradients(m, &f.batch, what);
        /* LLaMA has no bias anywhere (RMSNorm has no β): bitfit trains nothing. */
        const bool none = family == LLAMA && c == CASE_FULL - 1;
        CHECKF(n == refd_trainable_params(m) && (n > 0) != none, "%s: %zu of %zu", what, n, refd_trainable_params(m));
        refd_destroy(m);
    }
    model_arch_finish(&f.arch);
}

static void gpt2_gradients_match_finite_differences(void) { gradients_for(GPT2); }
static void llama_gqa_gradients_match_finite_differences(void) { gradients_for(LLAMA); }
static void qwen2_gradients_match_finite_differences(void) { gradients_for(QWEN2); }

/* With dropout on (GPT-2: embeddings, attention probabilities, residuals
 * and adapters at the config's 0.1; LLaMA: attention at 0.2, adapters at
 * their own 0.3), the masks fixed by (seed, step) across the finite
 * differences' forwards: the backward applies the forward's masks. */
static void gradients_with_dropout(void) {
    static const size_t which[] = {CASE_LORA_ALL, CASE_MAM, CASE_ADAPTERS, CASE_FULL};
    for (int family = GPT2; family <= LLAMA; family++) {
        struct fixture f;
        if (!fixture_init(&f, family)) return;
        if (family == LLAMA) f.arch.attention_dropout = 0.2;
        for (size_t k = 0; k < sizeof which / sizeof which[0]; k++) {
            struct refd *m = model_of(&f.arch, &cases[which[k]], true, 0.0);
            if (!m) continue;
            for (int i = 0; family == LLAMA && i < m->spec.count; i++) m->spec.modules[i].dropout = 0.3;
            char what[96];
            snprintf(what, sizeof what, "%s %s with dropout", family_names[family], cases[which[k]].label);
            const double plain = refd_forward(m, NULL, &f.batch);
            m->opt.dropout = true;
            m->opt.dropout_seed = 77;
            m->opt.dropout_step = 5;
            CHECKF(refd_forward(m, NULL, &f.batch) != plain, "%s: dropout leaves the loss at %.17g", what, plain);
            const size_t n = check_gradients(m, &f.batch, what);
            CHECKF(n == refd_trainable_params(m), "%s: %zu of %zu", what, n, refd_trainable_params(m));
            refd_destroy(m);
        }
        model_arch_finish(&f.arch);
    }
}

/* The same checks on a batch without padding or loss mask, and on one whose
 * explicit labels score a single position. */
static void gradients_without_masks_and_with_labels(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        /* Two scored rows: with one, a ReLU unit of GPT-2's layer-1 FFN
         * adapter happens to be dead everywhere and its gradient is 0. */
        const int32_t labels[NB * NT] = {-100, -100, -100, 12, -100, -100, 29, -100, -100, -100};
        const struct refd_batch plain = {.ids = f.ids, .B = NB, .T = NT};
        const struct refd_batch one = {.ids = f.ids, .mask = f.mask, .labels = labels, .B = NB, .T = NT};
        struct refd *m = model_of(&f.arch, &cases[CASE_MAM], true, 0.0);
        if (m) {
            char what[96];
            snprintf(what, sizeof what, "%s mam, no masks", family_names[fam]);
            check_gradients(m, &plain, what);
            snprintf(what, sizeof what, "%s mam, two labels", family_names[fam]);
            check_gradients(m, &one, what);
        }
        refd_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* Parameter gradients accumulate: two backwards give twice one, exactly. */
static void backward_accumulates(void) {
    struct fixture f;
    if (!fixture_init(&f, LLAMA)) return;
    struct refd *m = model_of(&f.arch, &cases[CASE_ADAPTERS], true, 0.0);
    if (!m) return;
    refd_forward(m, NULL, &f.batch);
    refd_zero_grad(m);
    refd_backward(m);
    struct refm_tensor *t = refd_tensor_find(m, "decoder.layers.1.delta4.down.weight");
    if (CHECK(t != NULL)) {
        double *twice = malloc(t->n * sizeof(double));
        for (size_t i = 0; i < t->n; i++) twice[i] = 2.0 * t->grad[i];
        refd_backward(m);
        CHECK(reftest_max_abs_diff(t->grad, twice, t->n) == EXACT);
        refd_zero_grad(m);
        CHECK(t->grad[0] == 0.0);
        free(twice);
    }
    refd_destroy(m);
    model_arch_finish(&f.arch);
}

/* ------------------------------------------------------------------------
 * The loss and the masks
 * ------------------------------------------------------------------------ */

/* loss = mean over (b, t < T−1) with label ids[b,t+1] scored (mask and
 * loss_mask 1) of CE(logits[b,t], ids[b,t+1]); given labels override. The
 * sums differ in order from the reference's: REORDER_TOL. */
static void loss_is_the_mean_over_scored_next_tokens(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        const double eps = fam == LLAMA ? 0.1 : 0.0;
        struct refd *m = model_of(&f.arch, &cases[CASE_LORA], true, eps);
        if (!m) continue;
        static double logits[NB * NT * VOCAB];
        const double loss = refd_forward(m, logits, &f.batch);
        double want = 0.0;
        int count = 0;
        int32_t labels[NB * NT];
        for (int b = 0; b < NB; b++)
            for (int t = 0; t < NT; t++) {
                const int n = b * NT + t;
                labels[n] = f.mask[n] && f.loss_mask[n] ? f.ids[n] : -100;
                if (t + 1 < NT && f.mask[n + 1] && f.loss_mask[n + 1]) {
                    want += reftest_token_loss(logits + (size_t)n * VOCAB, VOCAB, f.ids[n + 1], eps);
                    count++;
                }
            }
        CHECK(count == 5); /* the completion 9, 12, 25 of sequence 0; 3, 21 of sequence 1 */
        want /= count;
        CHECKF(fabs(loss - want) <= REORDER_TOL, "%s: loss %.15g, by hand %.15g", family_names[fam], loss, want);
        const struct refd_batch with_labels = {.ids = f.ids, .mask = f.mask, .labels = labels, .B = NB, .T = NT};
        CHECK(refd_forward(m, NULL, &with_labels) == loss);
        /* Nothing scored: loss 0 and zero gradients. */
        const uint8_t none[NB * NT] = {0};
        const struct refd_batch unscored = {.ids = f.ids, .mask = f.mask, .loss_mask = none, .B = NB, .T = NT};
        CHECK(refd_forward(m, NULL, &unscored) == 0.0);
        refd_zero_grad(m);
        refd_backward(m);
        double gmax = 0.0;
        for (int k = 0; k < refd_tensor_count(m); k++) {
            const struct refm_tensor *t = refd_tensor_at(m, k);
            for (size_t i = 0; t->grad && i < t->n; i++) gmax = fmax(gmax, fabs(t->grad[i]));
        }
        CHECK(gmax == 0.0);
        refd_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* Causal: changing token t changes no logits of earlier tokens (exactly)
 * and does change its own. */
static void attention_is_causal(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        struct refd *m = model_of(&f.arch, &cases[CASE_MAM], true, 0.0);
        if (!m) continue;
        static double a[NB * NT * VOCAB], b[NB * NT * VOCAB];
        refd_forward(m, a, &f.batch);
        f.ids[3] = 28;
        refd_forward(m, b, &f.batch);
        CHECKF(reftest_max_abs_diff(a, b, 3 * VOCAB) == EXACT, "%s: a later token changed earlier logits", family_names[fam]);
        CHECKF(reftest_max_abs_diff(a + 3 * VOCAB, b + 3 * VOCAB, VOCAB) > 1e-6, "%s: token 3 changed nothing",
               family_names[fam]);
        CHECK(reftest_max_abs_diff(a + NT * VOCAB, b + NT * VOCAB, NT * VOCAB) == EXACT); /* the other sequence */
        refd_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* A right-padded sequence's real tokens get the logits the sequence gets
 * alone: padding keys have probability exactly 0, so every sum over them
 * adds exact zeros. With prefixes too (they are visible to every query). */
static void padding_does_not_change_logits(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        const size_t cs[] = {CASE_LORA_ALL, CASE_MAM, CASE_PREFIX_REPARAM};
        for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
            struct refd *m = model_of(&f.arch, &cases[cs[c]], true, 0.0);
            if (!m) continue;
            static double padded[NB * NT * VOCAB], alone[3 * VOCAB];
            refd_forward(m, padded, &f.batch);
            const struct refd_batch single = {.ids = f.ids + NT, .B = 1, .T = 3};
            refd_forward(m, alone, &single);
            const double diff = reftest_max_abs_diff(padded + NT * VOCAB, alone, 3 * VOCAB);
            CHECKF(diff == EXACT, "%s %s: padded logits differ by %.3g", family_names[fam], cases[cs[c]].label, diff);
            refd_destroy(m);
        }
        model_arch_finish(&f.arch);
    }
}

/* ------------------------------------------------------------------------
 * The head, GQA, LoRA placement, positions
 * ------------------------------------------------------------------------ */

/* A tied head under full: its one gradient is the untied model's embedding
 * gradient plus its lm_head gradient (same weights in both places). */
static void tied_head_gradient_sums_both_uses(void) {
    struct fixture f;
    if (!fixture_init(&f, QWEN2)) return;
    struct model_arch untied_arch = f.arch;
    untied_arch.tie_word_embeddings = false;
    struct refd *tied = model_of(&f.arch, &cases[CASE_FULL], false, 0.0);
    struct refd *untied = model_of(&untied_arch, &cases[CASE_FULL], false, 0.0);
    if (tied && untied) {
        CHECK(refd_tensor_find(tied, "lm_head.weight") == NULL);
        CHECK(copy_tensors(untied, tied, false) == 0);
        const struct refm_tensor *e = refd_tensor_find(tied, "model.embed_tokens.weight");
        struct refm_tensor *ue = refd_tensor_find(untied, "model.embed_tokens.weight");
        struct refm_tensor *uh = refd_tensor_find(untied, "lm_head.weight");
        if (CHECK(e && ue && uh && e->grad)) {
            memcpy(uh->data, e->data, e->n * sizeof(double));
            const double lt = refd_forward(tied, NULL, &f.batch), lu = refd_forward(untied, NULL, &f.batch);
            CHECKF(lt == lu, "tied loss %.17g, untied %.17g", lt, lu);
            refd_zero_grad(tied);
            refd_backward(tied);
            refd_zero_grad(untied);
            refd_backward(untied);
            double *sum = malloc(e->n * sizeof(double));
            double head_max = 0.0, gather_max = 0.0;
            for (size_t i = 0; i < e->n; i++) {
                sum[i] = ue->grad[i] + uh->grad[i];
                head_max = fmax(head_max, fabs(uh->grad[i]));
                gather_max = fmax(gather_max, fabs(ue->grad[i]));
            }
            CHECKF(reftest_max_abs_diff(e->grad, sum, e->n) <= REORDER_TOL, "tied grad differs from the sum by %.3g",
                   reftest_max_abs_diff(e->grad, sum, e->n));
            CHECKF(head_max > 1e-3 && gather_max > 1e-3, "both terms should matter (%.3g, %.3g)", head_max,
                   gather_max);
            free(sum);
        }
    }
    refd_destroy(tied);
    refd_destroy(untied);
    model_arch_finish(&f.arch);
}

/* GQA is MHA whose query head h reads kv head h / (H/G): an MHA model with
 * k_proj/v_proj rows (and biases, and prefix columns) copied per group
 * computes the same logits. Pins HF's repeat_kv head order. */
static void gqa_is_mha_with_repeated_kv_heads(void) {
    for (int fam = LLAMA; fam <= QWEN2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        struct model_arch mha_arch = f.arch;
        mha_arch.kv_heads = f.arch.heads;
        const int H = f.arch.heads, G = f.arch.kv_heads, hd = f.arch.head_dim, rep = H / G;
        struct refd *gqa = model_of(&f.arch, &cases[CASE_PREFIX], true, 0.0);
        struct refd *mha = model_of(&mha_arch, &cases[CASE_PREFIX], true, 0.0);
        if (gqa && mha) {
            CHECK(copy_tensors(mha, gqa, false) > 0); /* k, v and prefixes differ in size */
            for (int k = 0; k < refd_tensor_count(mha); k++) {
                struct refm_tensor *t = refd_tensor_at(mha, k);
                const struct refm_tensor *g = refd_tensor_find(gqa, t->name);
                if (!g || g->n == t->n) continue;
                /* (rows, cols): k/v weights (kvd, d) and biases (kvd) repeat rows;
                 * prefixes (L, kvd) repeat columns. */
                const bool by_cols = strstr(t->name, "prefix_") != NULL;
                const int rows = t->shape[0], cols = t->ndim > 1 ? t->shape[1] : 1;
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < cols; j++) {
                        const int gi = by_cols ? i : (i / hd) / rep * hd + i % hd;
                        const int gj = by_cols ? (j / hd) / rep * hd + j % hd : j;
                        const int gcols = by_cols ? g->shape[1] : cols;
                        t->data[(size_t)i * cols + j] = g->data[(size_t)gi * gcols + gj];
                    }
            }
            static double a[NB * NT * VOCAB], b[NB * NT * VOCAB];
            refd_forward(gqa, a, &f.batch);
            refd_forward(mha, b, &f.batch);
            const double diff = reftest_max_abs_diff(a, b, NB * NT * VOCAB);
            CHECKF(diff <= REORDER_TOL, "%s: GQA and repeated-head MHA differ by %.3g", family_names[fam], diff);
        }
        refd_destroy(gqa);
        refd_destroy(mha);
        model_arch_finish(&f.arch);
    }
}

/* LoRA: x·W + s·(x·Aᵀ)·Bᵀ = x·(W + s·(B·A)ᵀ) in Conv1D layout (GPT-2's q, k,
 * v are column blocks of c_attn) and W + s·B·A for [out, in] weights. */
static void lora_merges_into_its_projection(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        struct refd *m = model_of(&f.arch, &cases[CASE_LORA_ALL], true, 0.0);
        struct refd *merged = frozen_model(&f.arch, 1), *plain = frozen_model(&f.arch, 1);
        if (m && merged && plain) {
            CHECK(copy_tensors(merged, m, true) == 0 && copy_tensors(plain, m, true) == 0);
            for (int i = 0; i < m->spec.count; i++) {
                const struct delta_module *mod = &m->spec.modules[i];
                for (int l = 0; l < f.arch.layers; l++) {
                    const struct ref_slot *s = refd_slot_at(m, i, l);
                    if (!s->active) continue;
                    const struct refd_layer *L = &merged->w.layers[l];
                    const struct refd_linear *lin = mod->at == DELTA_AT_Q ? &L->q : mod->at == DELTA_AT_K ? &L->k
                                                  : mod->at == DELTA_AT_V ? &L->v : mod->at == DELTA_AT_O ? &L->o
                                                  : mod->at == DELTA_AT_UP ? &L->up : &L->down;
                    const int r = mod->size;
                    for (int o = 0; o < lin->out; o++)
                        for (int x = 0; x < lin->in; x++) {
                            double acc = 0.0;
                            for (int k = 0; k < r; k++) acc += s->lora_b->data[o * r + k] * s->lora_a->data[k * lin->in + x];
                            const size_t at = lin->conv1d ? (size_t)x * lin->ld + lin->c0 + o : (size_t)o * lin->in + x;
                            lin->w->data[at] += mod->alpha / r * acc;
                        }
                }
            }
            static double a[NB * NT * VOCAB], b[NB * NT * VOCAB], u[NB * NT * VOCAB];
            refd_forward(m, a, &f.batch);
            refd_forward(merged, b, &f.batch);
            refd_forward(plain, u, &f.batch);
            const double diff = reftest_max_abs_diff(a, b, NB * NT * VOCAB);
            CHECKF(diff <= REORDER_TOL, "%s: merged LoRA logits differ by %.3g", family_names[fam], diff);
            CHECKF(reftest_max_abs_diff(b, u, NB * NT * VOCAB) > 1e-6, "%s: the LoRAs change nothing", family_names[fam]);
        }
        refd_destroy(m);
        refd_destroy(merged);
        refd_destroy(plain);
        model_arch_finish(&f.arch);
    }
}

/* PEFT positions: with a prefix of length L the sequence sits at positions
 * L.. . For GPT-2 that is the ZERO-positions model with wpe shifted up by
 * L rows, exactly. Under RoPE the two conventions differ (q·P_k depends on
 * q's absolute position), and without prefixes P = 0 in both. */
static void prefix_shifts_positions_as_peft(void) {
    struct fixture f;
    if (!fixture_init(&f, GPT2)) return;
    struct refd *peft = model_of(&f.arch, &cases[CASE_PREFIX], true, 0.0);
    struct refd *zero = model_of(&f.arch, &cases[CASE_PREFIX + 2], true, 0.0); /* zero positions */
    if (peft && zero) {
        CHECK(refd_position_offset(peft) == 3 && refd_position_offset(zero) == 0);
        CHECK(copy_tensors(zero, peft, false) == 0);
        struct refm_tensor *wpe = refd_tensor_find(zero, "transformer.wpe.weight");
        const int d = f.arch.hidden;
        if (CHECK(wpe != NULL))
            memmove(wpe->data, wpe->data + 3 * d, (size_t)(f.arch.max_positions - 3) * d * sizeof(double));
        static double a[NB * NT * VOCAB], b[NB * NT * VOCAB];
        refd_forward(peft, a, &f.batch);
        refd_forward(zero, b, &f.batch);
        CHECKF(reftest_max_abs_diff(a, b, NB * NT * VOCAB) == EXACT, "gpt2: PEFT positions are not wpe shifted by L (%.3g)",
               reftest_max_abs_diff(a, b, NB * NT * VOCAB));
    }
    refd_destroy(peft);
    refd_destroy(zero);
    model_arch_finish(&f.arch);
    if (!fixture_init(&f, LLAMA)) return;
    peft = model_of(&f.arch, &cases[CASE_PREFIX], true, 0.0);
    zero = model_of(&f.arch, &cases[CASE_PREFIX + 2], true, 0.0);
    struct refd *lora = model_of(&f.arch, &cases[CASE_LORA], true, 0.0);
    if (peft && zero && lora) {
        CHECK(refd_position_offset(lora) == 0);
        CHECK(copy_tensors(zero, peft, false) == 0);
        static double a[NB * NT * VOCAB], b[NB * NT * VOCAB];
        refd_forward(peft, a, &f.batch);
        refd_forward(zero, b, &f.batch);
        CHECKF(reftest_max_abs_diff(a, b, NB * NT * VOCAB) > 1e-6, "llama: the prefix's position offset changes nothing");
    }
    refd_destroy(peft);
    refd_destroy(zero);
    refd_destroy(lora);
    model_arch_finish(&f.arch);
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
        struct refd *frozen = frozen_model(&f.arch, 7);
        static double want[NB * NT * VOCAB], got[NB * NT * VOCAB];
        if (frozen) refd_forward(frozen, want, &f.batch);
        const size_t cs[] = {CASE_LORA, CASE_LORA_ALL, CASE_PA, CASE_PREFIX};
        for (size_t c = 0; frozen && c < sizeof cs / sizeof cs[0]; c++) {
            struct refd *m = model_of(&f.arch, &cases[cs[c]], false, 0.0);
            if (!m) continue;
            CHECK(copy_tensors(m, frozen, true) == 0);
            refd_forward(m, got, &f.batch);
            const double diff = reftest_max_abs_diff(got, want, NB * NT * VOCAB);
            if (cs[c] == CASE_PREFIX)
                CHECKF(diff > 1e-9, "%s prefix: logits unchanged", family_names[fam]);
            else
                CHECKF(diff == EXACT, "%s %s: logits differ from the frozen model's by %.3g", family_names[fam],
                       cases[cs[c]].label, diff);
            refd_destroy(m);
        }
        refd_destroy(frozen);
        model_arch_finish(&f.arch);
    }
}

/* Collapsing the reparameterisation keeps the forward (the same values
 * through a copy) and leaves trainable (L,kvd) prefixes. */
static void collapse_prefix_keeps_forward(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        struct refd *m = model_of(&f.arch, &cases[CASE_PREFIX_REPARAM], true, 0.0);
        if (!m) continue;
        static double a[NB * NT * VOCAB], b[NB * NT * VOCAB];
        refd_forward(m, a, &f.batch);
        CHECK(refd_collapse_prefix(m) == VP_OK);
        CHECK(refd_tensor_find(m, "delta0.reparam.embedding") == NULL);
        const struct refm_tensor *pk = refd_tensor_find(m, "decoder.layers.1.delta0.prefix_k");
        CHECK(pk && pk->grad && pk->shape[0] == 2 && pk->shape[1] == f.arch.kv_heads * f.arch.head_dim);
        refd_forward(m, b, &f.batch);
        CHECKF(reftest_max_abs_diff(a, b, NB * NT * VOCAB) == EXACT, "%s: collapse changed the logits", family_names[fam]);
        refd_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* Modules whose stacks lack the decoder do not apply: no tensors, the
 * frozen logits; "stack": ["decoder"] applies. */
static void only_decoder_stack_modules_apply(void) {
    struct fixture f;
    if (!fixture_init(&f, LLAMA)) return;
    const char *enc = "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":2,"
                      "\"stack\":[\"encoder\"]},{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"stack\":[\"decoder\"]}]}";
    struct delta_spec spec;
    if (!CHECKF(delta_spec_parse(enc, strlen(enc), "stacks", &spec) == VP_OK, "%s", vp_last_error())) return;
    const struct refd_options opt = {.seed = 3, .weight_std = 0.3};
    struct refd *m;
    if (CHECKF(refd_create(&m, &f.arch, &spec, &opt) == VP_OK, "%s", vp_last_error())) {
        CHECK(refd_tensor_find(m, "decoder.layers.0.delta0.down.weight") == NULL);
        CHECK(refd_tensor_find(m, "decoder.layers.0.delta1.lora_A") != NULL);
        CHECK(refd_trainable_params(m) == 2u * 2 * (16 + 16)); /* 2 layers × r·(in + out) */
        refd_destroy(m);
    }
    /* An encoder is not this reference's. */
    struct model_arch bert;
    const char *bj = "{\"model_type\":\"bert\",\"vocab_size\":30,\"hidden_size\":8,\"num_hidden_layers\":1,"
                     "\"num_attention_heads\":2,\"intermediate_size\":16,\"num_labels\":2}";
    if (CHECK(model_arch_parse(bj, strlen(bj), "config.json", &bert) == VP_OK)) {
        const struct delta_spec none = {.count = 0};
        m = NULL;
        CHECK(refd_create(&m, &bert, &none, &opt) == VP_ERROR_BAD_INPUT && m == NULL);
        model_arch_finish(&bert);
    }
    model_arch_finish(&f.arch);
}

/* Trainable values per module = delta_count_params' module_params (it
 * counts LoRA on k/v and prefixes in K/V width kv_heads·hd). */
static void trainable_counts_match_delta_count_params(void) {
    for (int fam = 0; fam < FAMILIES; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam)) return;
        for (size_t c = 0; c < CASE_COUNT; c++) {
            if (c == CASE_FULL || c == CASE_FULL - 1) continue; /* bitfit/full count encoder tensors */
            struct refd *m = model_of(&f.arch, &cases[c], false, 0.0);
            if (!m) continue;
            struct delta_counts counts;
            if (CHECKF(delta_count_params(&m->spec, &f.arch, &counts) == VP_OK, "%s", vp_last_error())) {
                char what[96];
                snprintf(what, sizeof what, "%s %s", family_names[fam], cases[c].label);
                reftest_expect_module_counts(&m->tensors, m->spec.count, &counts, what);
            }
            refd_destroy(m);
        }
        model_arch_finish(&f.arch);
    }
}

static void expect_tensor(struct refd *m, const char *name, int ndim, int s0, int s1, bool trainable) {
    reftest_expect_tensor(&m->tensors, name, ndim, s0, s1, 0, trainable);
}

/* Hugging Face names and shapes, what full and bitfit train. */
static void tensor_names_and_shapes(void) {
    struct fixture f;
    if (!fixture_init(&f, GPT2)) return;
    struct refd *m = model_of(&f.arch, &cases[CASE_FULL - 1], false, 0.0); /* bitfit */
    if (m) {
        expect_tensor(m, "transformer.wte.weight", 2, 30, 8, false);
        expect_tensor(m, "transformer.wpe.weight", 2, 16, 8, false);
        expect_tensor(m, "transformer.h.1.attn.c_attn.weight", 2, 8, 24, false);
        expect_tensor(m, "transformer.h.1.attn.c_attn.bias", 1, 24, 0, true);
        expect_tensor(m, "transformer.h.0.mlp.c_fc.weight", 2, 8, 16, false);
        expect_tensor(m, "transformer.h.0.mlp.c_proj.weight", 2, 16, 8, false);
        expect_tensor(m, "transformer.h.0.ln_2.bias", 1, 8, 0, true);
        expect_tensor(m, "transformer.ln_f.bias", 1, 8, 0, true);
        expect_tensor(m, "transformer.ln_f.weight", 1, 8, 0, false);
        CHECK(refd_tensor_find(m, "lm_head.weight") == NULL);
        refd_destroy(m);
    }
    model_arch_finish(&f.arch);
    if (!fixture_init(&f, LLAMA)) return;
    m = model_of(&f.arch, &cases[CASE_LORA_ALL], false, 0.0);
    if (m) {
        expect_tensor(m, "model.layers.0.self_attn.k_proj.weight", 2, 8, 16, false);
        expect_tensor(m, "model.layers.0.mlp.gate_proj.weight", 2, 20, 16, false);
        expect_tensor(m, "model.layers.1.post_attention_layernorm.weight", 1, 16, 0, false);
        expect_tensor(m, "lm_head.weight", 2, 30, 16, false);
        CHECK(refd_tensor_find(m, "model.layers.0.self_attn.q_proj.bias") == NULL);
        expect_tensor(m, "decoder.layers.0.delta1.lora_A", 2, 2, 16, true);
        expect_tensor(m, "decoder.layers.0.delta1.lora_B", 2, 8, 2, true); /* k: kvd = 8 */
        expect_tensor(m, "decoder.layers.1.delta4.lora_B", 2, 20, 3, true);
        expect_tensor(m, "decoder.layers.1.delta5.lora_A", 2, 2, 20, true);
        CHECK(refd_tensor_find(m, "decoder.layers.0.delta5.lora_A") == NULL); /* layers [1] */
        refd_destroy(m);
    }
    model_arch_finish(&f.arch);
    if (!fixture_init(&f, QWEN2)) return;
    m = model_of(&f.arch, &cases[CASE_PREFIX_REPARAM], false, 0.0);
    if (m) {
        expect_tensor(m, "model.layers.1.self_attn.v_proj.bias", 1, 4, 0, false);
        CHECK(refd_tensor_find(m, "model.layers.1.self_attn.o_proj.bias") == NULL);
        expect_tensor(m, "delta0.reparam.embedding", 2, 2, 12, true);
        expect_tensor(m, "delta0.reparam.2.weight", 2, 2 * 2 * 4, 5, true); /* nl·2·kvd */
        refd_destroy(m);
    }
    model_arch_finish(&f.arch);
}

TH_MAIN(TH_CASE(gpt2_gradients_match_finite_differences), TH_CASE(llama_gqa_gradients_match_finite_differences),
        TH_CASE(qwen2_gradients_match_finite_differences), TH_CASE(gradients_with_dropout),
        TH_CASE(gradients_without_masks_and_with_labels),
        TH_CASE(backward_accumulates), TH_CASE(loss_is_the_mean_over_scored_next_tokens),
        TH_CASE(attention_is_causal), TH_CASE(padding_does_not_change_logits),
        TH_CASE(tied_head_gradient_sums_both_uses), TH_CASE(gqa_is_mha_with_repeated_kv_heads),
        TH_CASE(lora_merges_into_its_projection), TH_CASE(prefix_shifts_positions_as_peft),
        TH_CASE(zero_init_keeps_frozen_logits), TH_CASE(collapse_prefix_keeps_forward),
        TH_CASE(only_decoder_stack_modules_apply), TH_CASE(trainable_counts_match_delta_count_params),
        TH_CASE(tensor_names_and_shapes))
