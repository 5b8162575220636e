/* Tests of the whole-model reference (model.h) on tiny BERT and RoBERTa
 * classifiers: every trainable gradient of every delta preset against
 * central finite differences of the loss, Δh = 0 at the paper's
 * initialisation, padding invariance, the prefix collapse, tensor names and
 * parameter counts against delta_count_params, and equivalences with the
 * frozen model that pin where each delta attaches (LoRA and sequential
 * adapters merged into weights, mh-pa as a block-diagonal adapter, FFN PA as
 * extra FFN units, the gate as σ(g), a prefix as an extra token). */
#include "harness.h"
#include "model.h"
#include "ref.h"
#include "reftest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tiny models: d = 8 (BERT) and 16 (RoBERTa), 2 heads, FFN 24, 2 layers
 * (%d: 1 for one test), vocabulary 30, 3 labels. */
#define BERT_TINY                                                                                     \
    "{\"model_type\":\"bert\",\"vocab_size\":30,\"hidden_size\":8,\"num_hidden_layers\":%d,"         \
    "\"num_attention_heads\":2,\"intermediate_size\":24,\"max_position_embeddings\":16,"             \
    "\"type_vocab_size\":2,\"pad_token_id\":0,\"layer_norm_eps\":1e-12,\"num_labels\":3}"
#define ROBERTA_TINY                                                                                  \
    "{\"model_type\":\"roberta\",\"vocab_size\":30,\"hidden_size\":16,\"num_hidden_layers\":%d,"     \
    "\"num_attention_heads\":2,\"intermediate_size\":24,\"max_position_embeddings\":16,"             \
    "\"type_vocab_size\":1,\"pad_token_id\":1,\"layer_norm_eps\":1e-5,\"num_labels\":3}"

/* Finite-difference step, relative to max(1, |θ|). Central differences have
 * truncation error ~h²·L'''/6 ≈ 1e-10·L''' and rounding error ~ε·|L|/h ≈
 * 1e-16·1/1e-5 = 1e-11 (L ≈ log 3, the forward's own rounding a few ulps);
 * 1e-5 balances the two. */
#define FD_STEP 1e-5
/* |fd − analytic| ≤ FD_ATOL + FD_RTOL·|fd|: both error sources are ≤ ~1e-10
 * for these O(1) losses (L''' stays well below 100 with weights of std 0.3),
 * so the bound has a 100x margin, while a wrong or missing term in a
 * backward is off by ≥ 1e-3 relative and fails it. */
#define FD_RTOL 1e-6
#define FD_ATOL 1e-8

/* Same-size forwards over rows a change cannot reach compute the same
 * sequence of double operations on the same values: bit-for-bit equal. */
#define EXACT 0.0

/* ------------------------------------------------------------------------
 * Fixtures
 * ------------------------------------------------------------------------ */

struct spec_case {
    const char *label;
    const char *preset; // or NULL: json
    const char *json;
    int reparam;        // ≥ 0: every prefix module's reparam width; −1: as given
    bool zero_at_init;  // the contract's init makes Δh = 0
};

static const struct spec_case cases[] = {
    {"adapter", "adapter:r=3", NULL, -1, true},
    {"adapter-ffn", "adapter-ffn:r=3", NULL, -1, true},
    {"prefix (reparam)", "prefix:l=3", NULL, 5, false},
    {"prefix (plain)", "prefix:l=3", NULL, 0, false},
    {"lora", "lora:r=2", NULL, -1, true},
    {"lora k/o/up/down", NULL,
     "{\"modules\":[{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"alpha\":4},"
     "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"alpha\":2},"
     "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":3,\"alpha\":6},"
     "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":8},"
     "{\"kind\":\"lora\",\"at\":\"q\",\"rank\":1,\"alpha\":1,\"layers\":[1]}]}",
     -1, true},
    {"pa", "pa:r=3", NULL, -1, true},
    {"scaled-pa", "scaled-pa:r=3,s=4", NULL, -1, true},
    {"mh-pa", "mh-pa:r=2", NULL, -1, true},
    {"mam", "mam:l=2,r=3,s=2", NULL, 4, false},
    {"bitfit", "bitfit", NULL, -1, true},
    {"full", "full", NULL, -1, true},
    {"gated adapters", NULL,
     "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,"
     "\"act\":\"gelu\",\"compose\":\"gated\"},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\",\"bottleneck\":2,"
     "\"compose\":\"gated\",\"layers\":[1]},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,"
     "\"per_head\":true,\"compose\":\"gated\"}]}",
     -1, true},
    /* Bottlenecks of 4 keep some ReLU unit live at the [CLS] rows, the only
     * rows of the last layer the loss sees, and the bert-init adapter uses
     * GELU: its W_down ~ N(0, 0.02) is tiny next to the randomised biases, so
     * a ReLU there is dead whenever its biases are negative, and its
     * gradients would be vacuously 0. */
    {"sequential+parallel mix", NULL,
     "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":4},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,\"act\":\"identity\","
     "\"compose\":\"scale\",\"scale\":2},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":2,\"per_head\":true},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\",\"bottleneck\":2,\"init\":\"bert\","
     "\"act\":\"gelu\"},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\",\"bottleneck\":3,\"act\":\"gelu\"},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":4,\"compose\":\"scale\","
     "\"scale\":4},"
     "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2,\"alpha\":4,\"layers\":[0]}]}",
     -1, false /* the bert-init adapter's W_up is N(0, 0.02) */},
    {"three prefixes", NULL,
     "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":4,\"layers\":[1]},"
     "{\"kind\":\"prefix\",\"length\":3,\"reparam\":0},"
     "{\"kind\":\"prefix\",\"length\":1,\"reparam\":3}]}",
     -1, false},
};
#define CASE_COUNT (sizeof cases / sizeof cases[0])

enum { B = 2, T = 5 };

struct fixture {
    struct model_arch arch;
    int32_t ids[B * T], types[B * T], labels[B];
    uint8_t mask[B * T];
    struct refm_batch batch;
};

/* Sequence 0 is full; sequence 1 has 3 real tokens and 2 padding tokens. */
static bool fixture_init_layers(struct fixture *f, bool bert, int layers) {
    char json[512];
    snprintf(json, sizeof json, bert ? BERT_TINY : ROBERTA_TINY, layers);
    if (model_arch_parse(json, strlen(json), "config.json", &f->arch) != VP_OK) {
        FAIL("config: %s", vp_last_error());
        return false;
    }
    const int pad = f->arch.pad_token_id;
    const int32_t ids[B * T] = {bert ? 2 : 0, 5, 9, 12, 3, bert ? 2 : 0, 7, 3, pad, pad};
    const int32_t types[B * T] = {0, 0, 0, 1, 1, 0, 0, 1, 0, 0};
    const uint8_t mask[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    memcpy(f->ids, ids, sizeof ids);
    memcpy(f->types, types, sizeof types);
    memcpy(f->mask, mask, sizeof mask);
    f->labels[0] = 2;
    f->labels[1] = 0;
    f->batch = (struct refm_batch){.ids = f->ids, .mask = f->mask, .type_ids = bert ? f->types : NULL,
                                   .labels = f->labels, .B = B, .T = T};
    return true;
}

static bool fixture_init(struct fixture *f, bool bert) { return fixture_init_layers(f, bert, 2); }

static bool spec_of(const struct spec_case *c, struct delta_spec *s) {
    return reftest_spec(s, c->label, c->preset, c->json, c->reparam);
}

/* A model for the case; randomise: zero-initialised delta tensors random, as
 * gradient checks want. Weights of std 0.3 make attention and GELU visibly
 * nonlinear at d = 8..16. */
static struct refm *model_of(const struct fixture *f, const struct spec_case *c, bool randomise,
                             double label_smoothing) {
    struct delta_spec spec;
    if (!spec_of(c, &spec)) return NULL;
    const struct refm_options opt = {.seed = vp_hash_str(VP_HASH_INIT, c->label), .weight_std = 0.3,
                                     .randomise_zero_init = randomise, .label_smoothing = label_smoothing};
    struct refm *m;
    if (refm_create(&m, &f->arch, &spec, &opt) != VP_OK) {
        FAIL("%s: %s", c->label, vp_last_error());
        return NULL;
    }
    return m;
}

static bool is_model_tensor(const char *name) {
    return strncmp(name, "bert.", 5) == 0 || strncmp(name, "roberta.", 8) == 0 ||
           strncmp(name, "classifier.", 11) == 0;
}

/* ------------------------------------------------------------------------
 * Gradients against finite differences
 * ------------------------------------------------------------------------ */

static double forward_loss(void *m, const void *batch) { return refm_forward(m, NULL, batch); }
static void backward(void *m) { refm_backward(m); }

/* Checks every element of every trainable tensor; returns how many. The key
 * bias is the one gradient that may be 0: softmax is shift-invariant, so
 * without prefix keys dL/db_k = 0 (up to rounding). */
static size_t check_gradients(struct refm *m, const struct refm_batch *batch, const char *what) {
    const struct reftest_model rm = {m, &m->tensors, forward_loss, backward};
    const struct reftest_fd fd = {FD_STEP, FD_RTOL, FD_ATOL, "attention.self.key.bias", 34};
    return reftest_check_gradients(&rm, batch, &fd, what);
}

static void gradients_for(bool bert) {
    struct fixture f;
    if (!fixture_init(&f, bert)) return;
    for (size_t c = 0; c < CASE_COUNT; c++) {
        /* RoBERTa runs with label smoothing, so its gradient is checked too. */
        struct refm *m = model_of(&f, &cases[c], true, bert ? 0.0 : 0.1);
        if (!m) continue;
        char what[96];
        snprintf(what, sizeof what, "%s %s", bert ? "bert" : "roberta", cases[c].label);
        CHECKF(check_gradients(m, &f.batch, what) == refm_trainable_params(m), "%s", what);
        refm_destroy(m);
    }
    model_arch_finish(&f.arch);
}

static void bert_gradients_match_finite_differences(void) { gradients_for(true); }
static void roberta_gradients_match_finite_differences(void) { gradients_for(false); }

/* Parameter gradients accumulate: two backwards give twice one. */
static void backward_accumulates(void) {
    struct fixture f;
    if (!fixture_init(&f, false)) return;
    struct refm *m = model_of(&f, &cases[9] /* mam */, true, 0.0);
    if (!m) return;
    refm_forward(m, NULL, &f.batch);
    refm_zero_grad(m);
    refm_backward(m);
    struct refm_tensor *t = refm_tensor_find(m, "encoder.layers.1.delta1.down.weight");
    struct refm_tensor *e = refm_tensor_find(m, "delta0.reparam.embedding");
    if (!CHECK(t && e)) goto done;
    double *once = malloc(t->n * sizeof(double)), *twice = malloc(t->n * sizeof(double));
    for (size_t i = 0; i < t->n; i++) once[i] = 2.0 * t->grad[i];
    double e0 = e->grad[0];
    refm_backward(m);
    memcpy(twice, t->grad, t->n * sizeof(double));
    CHECK(reftest_max_abs_diff(twice, once, t->n) == EXACT); /* g + g = 2g exactly */
    CHECK(e->grad[0] == 2.0 * e0 && e0 != 0.0);
    refm_zero_grad(m);
    CHECK(t->grad[0] == 0.0 && e->grad[0] == 0.0);
    free(once);
    free(twice);
done:
    refm_destroy(m);
    model_arch_finish(&f.arch);
}

/* ------------------------------------------------------------------------
 * Forward properties
 * ------------------------------------------------------------------------ */

/* With the paper's initialisation (zero up-projections, zero LoRA B) Δh is
 * exactly 0.0, so every sum the deltas add to is unchanged: the logits are
 * bit-for-bit the frozen model's. Prefixes (and bert-init adapters) change
 * them from step 0. */
static void zero_init_keeps_frozen_logits(void) {
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam == 0)) return;
        struct delta_spec none = {.count = 0};
        struct refm *frozen;
        const struct refm_options opt = {.seed = 7, .weight_std = 0.3};
        if (!CHECKF(refm_create(&frozen, &f.arch, &none, &opt) == VP_OK, "%s", vp_last_error())) return;
        double want[B * 3], got[B * 3];
        refm_forward(frozen, want, &f.batch);
        for (size_t c = 0; c < CASE_COUNT; c++) {
            struct refm *m = model_of(&f, &cases[c], false, 0.0);
            if (!m) continue;
            /* The same frozen model and head, by name. */
            for (int k = 0; k < refm_tensor_count(frozen); k++) {
                const struct refm_tensor *t = refm_tensor_at(frozen, k);
                CHECKF(refm_tensor_set(m, t->name, t->data, t->n) == VP_OK, "%s", vp_last_error());
            }
            refm_forward(m, got, &f.batch);
            double diff = reftest_max_abs_diff(got, want, B * 3);
            if (cases[c].zero_at_init)
                CHECKF(diff == EXACT, "%s %s: logits differ from the frozen model's by %.3g",
                       f.arch.model_type, cases[c].label, diff);
            else
                CHECKF(diff > 1e-9, "%s %s: a delta that is not zero at init left the logits unchanged",
                       f.arch.model_type, cases[c].label);
            refm_destroy(m);
        }
        refm_destroy(frozen);
        model_arch_finish(&f.arch);
    }
}

/* ------------------------------------------------------------------------
 * Equivalences the contract implies, checked against the frozen model: they
 * pin where each delta attaches, which gradient checks cannot (a module in
 * the wrong place still has consistent gradients).
 * ------------------------------------------------------------------------ */

/* dst's tensors take src's values, by name: only the frozen model and head,
 * or every tensor both have. Returns how many same-named tensors differ in
 * size (and were left alone). */
static int copy_tensors(struct refm *dst, struct refm *src, bool model_only) {
    return reftest_copy_tensors(&dst->tensors, &src->tensors, model_only ? is_model_tensor : NULL);
}

/* A model with m's frozen weights and head and no delta. */
static struct refm *frozen_copy(struct refm *m, const struct model_arch *arch) {
    struct delta_spec none = {.count = 0};
    struct refm *f;
    if (!CHECKF(refm_create(&f, arch, &none, NULL) == VP_OK, "%s", vp_last_error())) return NULL;
    CHECK(copy_tensors(f, m, true) == 0);
    return f;
}

/* Merged and unmerged forms compute the same logits with sums in another
 * order: a few ulps of O(1) values apart, far below 1e-12, while a misplaced
 * delta moves them by ≥ 1e-6. */
#define MERGE_TOL 1e-12

static void check_same_logits(struct refm *a, const struct refm_batch *ba, struct refm *b,
                              const struct refm_batch *bb, struct refm *unchanged, const char *what) {
    const int n = ba->B * 3;
    double la[B * 3], lb[B * 3], lu[B * 3];
    refm_forward(a, la, ba);
    refm_forward(b, lb, bb);
    refm_forward(unchanged, lu, bb);
    CHECKF(reftest_max_abs_diff(la, lb, (size_t)n) <= MERGE_TOL, "%s: logits differ by %.3g", what,
           reftest_max_abs_diff(la, lb, (size_t)n));
    CHECKF(reftest_max_abs_diff(lb, lu, (size_t)n) > 1e-6, "%s: the delta changes nothing; the check is vacuous", what);
}

static struct refm_tensor *projection_of(struct refm *m, int l, enum delta_at at) {
    struct refm_layer *L = &m->w.layers[l];
    switch (at) {
    case DELTA_AT_Q: return L->wq;
    case DELTA_AT_K: return L->wk;
    case DELTA_AT_V: return L->wv;
    case DELTA_AT_O: return L->wo;
    case DELTA_AT_UP: return L->wup;
    case DELTA_AT_DOWN: return L->wdown;
    default: return NULL;
    }
}

/* LoRA: W·x + s·B·(A·x) = (W + s·B·A)·x, s = α/r, on every projection. */
static void lora_merges_into_its_projection(void) {
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam == 0)) return;
        const struct spec_case *loras[] = {&cases[4], &cases[5]};
        for (size_t c = 0; c < 2; c++) {
            struct refm *m = model_of(&f, loras[c], true, 0.0);
            struct refm *merged = m ? frozen_copy(m, &f.arch) : NULL;
            struct refm *plain = m ? frozen_copy(m, &f.arch) : NULL;
            for (int i = 0; merged && i < m->spec.count; i++) {
                const struct delta_module *mod = &m->spec.modules[i];
                for (int l = 0; l < f.arch.layers; l++) {
                    const struct ref_slot *s = refm_slot_at(m, i, l);
                    if (!s->active) continue;
                    struct refm_tensor *w = projection_of(merged, l, mod->at);
                    const int out = w->shape[0], in = w->shape[1], r = mod->size;
                    for (int o = 0; o < out; o++)
                        for (int x = 0; x < in; x++) {
                            double acc = 0.0;
                            for (int k = 0; k < r; k++)
                                acc += s->lora_b->data[o * r + k] * s->lora_a->data[k * in + x];
                            w->data[o * in + x] += mod->alpha / mod->size * acc;
                        }
                }
            }
            char what[96];
            snprintf(what, sizeof what, "%s %s merged", f.arch.model_type, loras[c]->label);
            if (merged && plain) check_same_logits(m, &f.batch, merged, &f.batch, plain, what);
            refm_destroy(plain);
            refm_destroy(merged);
            refm_destroy(m);
        }
        model_arch_finish(&f.arch);
    }
}

/* A sequential identity-act adapter on a projection's output y = W·u + b:
 * y + s·(W_u·(W_d·y + b_d) + b_u) = M·W·u + M·b + s·(W_u·b_d + b_u),
 * M = I + s·W_u·W_d. Pins the attention adapter after W_o and the FFN one
 * after W_down, both before the residual add. */
static void merge_sequential(struct refm_tensor *w, struct refm_tensor *b, const struct ref_slot *s,
                             double scale, int d, int r) {
    const int in = w->shape[1];
    double *M = calloc((size_t)d * d, sizeof(double)), *W = malloc(w->n * sizeof(double));
    double *bias = malloc((size_t)d * sizeof(double));
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double acc = 0.0;
            for (int k = 0; k < r; k++) acc += s->up_w->data[i * r + k] * s->down_w->data[k * d + j];
            M[i * d + j] = (i == j) + scale * acc;
        }
    for (int i = 0; i < d; i++) {
        double acc = s->up_b->data[i];
        for (int k = 0; k < r; k++) acc += s->up_w->data[i * r + k] * s->down_b->data[k];
        bias[i] = scale * acc;
        for (int j = 0; j < d; j++) bias[i] += M[i * d + j] * b->data[j];
        for (int x = 0; x < in; x++) {
            double wx = 0.0;
            for (int j = 0; j < d; j++) wx += M[i * d + j] * w->data[j * in + x];
            W[i * in + x] = wx;
        }
    }
    memcpy(w->data, W, w->n * sizeof(double));
    memcpy(b->data, bias, (size_t)d * sizeof(double));
    free(M);
    free(W);
    free(bias);
}

static void sequential_adapters_merge_into_their_projection(void) {
    const struct spec_case seq = {
        "sequential identity adapters", NULL,
        "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"bottleneck\":2,\"act\":\"identity\"},"
        "{\"kind\":\"adapter\",\"at\":\"ffn\",\"bottleneck\":3,\"act\":\"identity\",\"compose\":\"scale\","
        "\"scale\":1.5}]}",
        -1, true};
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam == 0)) return;
        struct refm *m = model_of(&f, &seq, true, 0.0);
        struct refm *merged = m ? frozen_copy(m, &f.arch) : NULL;
        struct refm *plain = m ? frozen_copy(m, &f.arch) : NULL;
        for (int l = 0; merged && l < f.arch.layers; l++) {
            struct refm_layer *L = &merged->w.layers[l];
            merge_sequential(L->wo, L->bo, refm_slot_at(m, 0, l), 1.0, f.arch.hidden, 2);
            merge_sequential(L->wdown, L->bdown, refm_slot_at(m, 1, l), 1.5, f.arch.hidden, 3);
        }
        char what[96];
        snprintf(what, sizeof what, "%s %s", f.arch.model_type, seq.label);
        if (merged && plain) check_same_logits(m, &f.batch, merged, &f.batch, plain, what);
        refm_destroy(plain);
        refm_destroy(merged);
        refm_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* mh-pa, H adapters of width r on head slices, is one parallel attention
 * adapter of width H·r with block-diagonal W_down (H·r,d) and W_up (d,H·r):
 * pins head h to columns h·hd .. h·hd+hd−1 of both a_in and ctx. */
static void mh_pa_is_a_block_diagonal_adapter(void) {
    const struct spec_case wide = {"wide pa", NULL,
                                   "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\","
                                   "\"bottleneck\":4}]}",
                                   -1, true};
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam == 0)) return;
        const int H = f.arch.heads, hd = f.arch.head_dim, d = f.arch.hidden, r = 2, R = H * r;
        struct refm *m = model_of(&f, &cases[8] /* mh-pa:r=2 */, true, 0.0);
        struct refm *full = model_of(&f, &wide, false, 0.0);
        struct refm *plain = m ? frozen_copy(m, &f.arch) : NULL;
        if (m && full && plain) {
            CHECK(copy_tensors(full, m, true) == 0);
            for (int l = 0; l < f.arch.layers; l++) {
                const struct ref_slot *s = refm_slot_at(m, 0, l);
                struct ref_slot *w = refm_slot_at(full, 0, l);
                memset(w->down_w->data, 0, w->down_w->n * sizeof(double));
                memset(w->up_w->data, 0, w->up_w->n * sizeof(double));
                for (int h = 0; h < H; h++)
                    for (int k = 0; k < r; k++)
                        for (int e = 0; e < hd; e++) {
                            const int row = h * r + k, col = h * hd + e; /* in the wide adapter */
                            w->down_w->data[row * d + col] = s->down_w->data[row * hd + e];
                            w->up_w->data[col * R + row] = s->up_w->data[col * r + k];
                        }
                memcpy(w->down_b->data, s->down_b->data, (size_t)R * sizeof(double));
                memcpy(w->up_b->data, s->up_b->data, (size_t)d * sizeof(double));
            }
            char what[96];
            snprintf(what, sizeof what, "%s mh-pa as a block-diagonal pa", f.arch.model_type);
            check_same_logits(m, &f.batch, full, &f.batch, plain, what);
        }
        refm_destroy(plain);
        refm_destroy(full);
        refm_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* With a ReLU FFN, a ReLU parallel FFN adapter (reading h, added to the FFN
 * output before the residual) is r more FFN units: W_up gains rows W_d and
 * b_up entries b_d, W_down gains columns s·W_u, b_down gains s·b_u. */
static void ffn_pa_is_extra_ffn_units(void) {
    const int r = 3;
    const double scale = 2.0;
    const struct spec_case pa = {"scaled-pa r=3 s=2", "scaled-pa:r=3,s=2", NULL, -1, true};
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam == 0)) return;
        f.arch.act = MODEL_ACT_RELU;
        struct model_arch wide_arch = f.arch;
        const int I = f.arch.intermediate, W = I + r, d = f.arch.hidden;
        wide_arch.intermediate = W;
        struct refm *m = model_of(&f, &pa, true, 0.0);
        struct refm *plain = m ? frozen_copy(m, &f.arch) : NULL;
        struct delta_spec none = {.count = 0};
        struct refm *wide = NULL;
        if (m && plain && CHECKF(refm_create(&wide, &wide_arch, &none, NULL) == VP_OK, "%s", vp_last_error())) {
            /* Every tensor but W_up, b_up, W_down of each layer. */
            CHECK(copy_tensors(wide, m, true) == 3 * f.arch.layers);
            for (int l = 0; l < f.arch.layers; l++) {
                const struct ref_slot *s = refm_slot_at(m, 0, l);
                const struct refm_layer *from = &m->w.layers[l];
                struct refm_layer *to = &wide->w.layers[l];
                memcpy(to->wup->data, from->wup->data, from->wup->n * sizeof(double));
                memcpy(to->wup->data + from->wup->n, s->down_w->data, s->down_w->n * sizeof(double));
                memcpy(to->bup->data, from->bup->data, (size_t)I * sizeof(double));
                memcpy(to->bup->data + I, s->down_b->data, (size_t)r * sizeof(double));
                for (int i = 0; i < d; i++) {
                    for (int j = 0; j < I; j++) to->wdown->data[i * W + j] = from->wdown->data[i * I + j];
                    for (int k = 0; k < r; k++) to->wdown->data[i * W + I + k] = scale * s->up_w->data[i * r + k];
                    to->bdown->data[i] = from->bdown->data[i] + scale * s->up_b->data[i];
                }
            }
            char what[96];
            snprintf(what, sizeof what, "%s ffn pa as extra FFN units", f.arch.model_type);
            check_same_logits(m, &f.batch, wide, &f.batch, plain, what);
        }
        refm_destroy(wide);
        refm_destroy(plain);
        refm_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* Gated composition is h + σ(g)·Δh: the same adapter composed with the
 * fixed scale σ(g) gives the same logits. */
static void gate_scales_by_its_sigmoid(void) {
    const double g = 0.7, sigma = 1.0 / (1.0 + exp(-g));
    char scaled_json[256];
    snprintf(scaled_json, sizeof scaled_json,
             "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":3,"
             "\"compose\":\"scale\",\"scale\":%.17g}]}", sigma);
    const struct spec_case gated = {"gated pa", NULL,
                                    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\","
                                    "\"bottleneck\":3,\"compose\":\"gated\"}]}", -1, true};
    const struct spec_case scaled = {"scaled pa", NULL, scaled_json, -1, true};
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam == 0)) return;
        struct refm *m = model_of(&f, &gated, true, 0.0);
        struct refm *s = model_of(&f, &scaled, false, 0.0);
        struct refm *plain = m ? frozen_copy(m, &f.arch) : NULL;
        if (m && s && plain) {
            for (int l = 0; l < f.arch.layers; l++) refm_slot_at(m, 0, l)->gate->data[0] = g;
            CHECK(copy_tensors(s, m, false) == 0);
            char what[96];
            snprintf(what, sizeof what, "%s gated as scale sigma(g)", f.arch.model_type);
            check_same_logits(m, &f.batch, s, &f.batch, plain, what);
        }
        refm_destroy(plain);
        refm_destroy(s);
        refm_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* In a one-layer model, a prefix of length 1 holding the key and value an
 * extra token would have is that token: [CLS] attends to the same keys and
 * values, so the logits of (3 tokens + prefix) equal those of the 4 tokens
 * without it. Pins the prefix rows' head layout (P[:, h·hd..]) and their
 * visibility. */
static void prefix_is_an_extra_key(void) {
    const struct spec_case one = {"prefix l=1", "prefix:l=1", NULL, 0, false};
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init_layers(&f, fam == 0, 1)) return;
        const int d = f.arch.hidden;
        struct refm *m = model_of(&f, &one, true, 0.0);
        struct refm *plain = m ? frozen_copy(m, &f.arch) : NULL;
        if (m && plain) {
            const uint8_t ones[4] = {1, 1, 1, 1};
            const struct refm_batch four = {.ids = f.ids, .mask = ones,
                                            .type_ids = f.batch.type_ids ? f.types : NULL, .B = 1, .T = 4};
            const struct refm_batch three = {.ids = f.ids, .mask = ones,
                                             .type_ids = f.batch.type_ids ? f.types : NULL, .B = 1, .T = 3};
            refm_forward(plain, NULL, &four);
            const double *x3 = refm_hidden(plain, -1) + 3 * d; /* token 3's layer input */
            double k3[16], v3[16];
            const struct refm_layer *L = &plain->w.layers[0];
            ref_matmul_forward(k3, x3, L->wk->data, L->bk->data, 1, d, d);
            ref_matmul_forward(v3, x3, L->wv->data, L->bv->data, 1, d, d);
            CHECK(refm_tensor_set(m, "encoder.layers.0.delta0.prefix_k", k3, (size_t)d) == VP_OK);
            CHECK(refm_tensor_set(m, "encoder.layers.0.delta0.prefix_v", v3, (size_t)d) == VP_OK);
            char what[96];
            snprintf(what, sizeof what, "%s prefix as token 3", f.arch.model_type);
            check_same_logits(plain, &four, m, &three, plain, what);
        }
        refm_destroy(plain);
        refm_destroy(m);
        model_arch_finish(&f.arch);
    }
}

/* Padding tokens are masked as keys, so changing a padded token's id (and
 * type) reaches no other token: both sequences' logits are bit-for-bit
 * unchanged. The padded sequence also gives, within rounding, the logits it
 * gives alone and unpadded (softmax over the same visible keys; the sums'
 * order may differ, hence 1e-12 on O(1) values). */
static void padding_does_not_change_logits(void) {
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam == 0)) return;
        for (size_t c = 0; c < CASE_COUNT; c++) {
            struct refm *m = model_of(&f, &cases[c], true, 0.0);
            if (!m) continue;
            double before[B * 3], after[B * 3], alone[3];
            refm_forward(m, before, &f.batch);
            struct fixture g = f;
            g.ids[8] = 17;
            g.ids[9] = 23;
            g.types[8] = g.types[9] = 1;
            g.batch.ids = g.ids;
            g.batch.type_ids = f.batch.type_ids ? g.types : NULL;
            g.batch.mask = g.mask;
            g.batch.labels = g.labels;
            refm_forward(m, after, &g.batch);
            CHECKF(reftest_max_abs_diff(after, before, B * 3) == EXACT, "%s %s: padding changed the logits by %.3g",
                   f.arch.model_type, cases[c].label, reftest_max_abs_diff(after, before, B * 3));
            const struct refm_batch one = {.ids = f.ids + T, .mask = f.mask + T,
                                           .type_ids = f.batch.type_ids ? f.types + T : NULL,
                                           .labels = f.labels + 1, .B = 1, .T = 3};
            refm_forward(m, alone, &one);
            CHECKF(reftest_max_abs_diff(alone, before + 3, 3) <= 1e-12,
                   "%s %s: unpadded sequence's logits differ by %.3g", f.arch.model_type, cases[c].label,
                   reftest_max_abs_diff(alone, before + 3, 3));
            refm_destroy(m);
        }
        model_arch_finish(&f.arch);
    }
}

/* Collapsing the prefix MLP into plain prefix_k/prefix_v copies the values
 * the MLP produced, so the forward is bit-for-bit the same; the collapsed
 * model's gradients are checked too. */
static void collapse_prefix_keeps_forward(void) {
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam == 0)) return;
        for (size_t c = 0; c < CASE_COUNT; c++) {
            struct delta_spec spec;
            if (!spec_of(&cases[c], &spec)) continue;
            bool reparam = false;
            for (int i = 0; i < spec.count; i++)
                reparam |= spec.modules[i].kind == DELTA_PREFIX && spec.modules[i].reparam > 0;
            if (!reparam) continue;
            struct refm *m = model_of(&f, &cases[c], true, 0.0);
            if (!m) continue;
            double before[B * 3], after[B * 3];
            double loss_before = refm_forward(m, before, &f.batch);
            CHECK(refm_collapse_prefix(m) == VP_OK);
            double loss_after = refm_forward(m, after, &f.batch);
            CHECKF(reftest_max_abs_diff(after, before, B * 3) == EXACT && loss_after == loss_before,
                   "%s %s: collapse changed the logits by %.3g", f.arch.model_type, cases[c].label,
                   reftest_max_abs_diff(after, before, B * 3));
            for (int k = 0; k < refm_tensor_count(m); k++)
                CHECKF(!strstr(refm_tensor_at(m, k)->name, "reparam"), "%s left after collapse",
                       refm_tensor_at(m, k)->name);
            struct delta_counts counts;
            CHECK(delta_count_params(&spec, &f.arch, &counts) == VP_OK);
            uint64_t saved = counts.head_params;
            for (int i = 0; i < spec.count; i++) saved += counts.module_saved[i];
            CHECKF(refm_trainable_params(m) == saved, "%s %s: %zu trainable after collapse, saved count %llu",
                   f.arch.model_type, cases[c].label, refm_trainable_params(m), (unsigned long long)saved);
            char what[96];
            snprintf(what, sizeof what, "%s %s (collapsed)", f.arch.model_type, cases[c].label);
            check_gradients(m, &f.batch, what);
            refm_destroy(m);
        }
        model_arch_finish(&f.arch);
    }
}

/* ------------------------------------------------------------------------
 * Names and counts
 * ------------------------------------------------------------------------ */

/* Trainable parameters = delta_count_params' delta + head, for every case
 * (gates of gated adapters included: one scalar per module and layer). */
static void trainable_counts_match_delta_count_params(void) {
    for (int fam = 0; fam < 2; fam++) {
        struct fixture f;
        if (!fixture_init(&f, fam == 0)) return;
        for (size_t c = 0; c < CASE_COUNT; c++) {
            struct delta_spec spec;
            struct delta_counts counts;
            if (!spec_of(&cases[c], &spec)) continue;
            if (!CHECKF(delta_count_params(&spec, &f.arch, &counts) == VP_OK, "%s", vp_last_error())) continue;
            struct refm *m = model_of(&f, &cases[c], false, 0.0);
            if (!m) continue;
            uint64_t want = counts.delta_params + counts.head_params;
            CHECKF(refm_trainable_params(m) == want, "%s %s: %zu trainable, delta_count_params says %llu",
                   f.arch.model_type, cases[c].label, refm_trainable_params(m), (unsigned long long)want);
            /* Frozen + trainable model tensors = the whole model. */
            size_t model = 0;
            for (int k = 0; k < refm_tensor_count(m); k++)
                if (is_model_tensor(refm_tensor_at(m, k)->name)) model += refm_tensor_at(m, k)->n;
            CHECKF(model == counts.model_params + counts.head_params, "%s: model tensors hold %zu values, want %llu",
                   f.arch.model_type, model, (unsigned long long)(counts.model_params + counts.head_params));
            refm_destroy(m);
        }
        model_arch_finish(&f.arch);
    }
}

static void expect_tensor(struct refm *m, const char *name, int ndim, int s0, int s1, int s2, bool trainable) {
    reftest_expect_tensor(&m->tensors, name, ndim, s0, s1, s2, trainable);
}

/* The names and shapes model.h promises. */
static void tensor_names_and_shapes(void) {
    struct fixture f;
    if (!fixture_init(&f, false)) return;
    struct refm *m = model_of(&f, &cases[9] /* mam:l=2,r=3, reparam 4 */, false, 0.0);
    if (m) {
        expect_tensor(m, "roberta.embeddings.word_embeddings.weight", 2, 30, 16, 0, false);
        expect_tensor(m, "roberta.embeddings.token_type_embeddings.weight", 2, 1, 16, 0, false);
        expect_tensor(m, "roberta.encoder.layer.1.attention.self.query.weight", 2, 16, 16, 0, false);
        expect_tensor(m, "roberta.encoder.layer.0.attention.output.LayerNorm.weight", 1, 16, 0, 0, false);
        expect_tensor(m, "roberta.encoder.layer.0.intermediate.dense.weight", 2, 24, 16, 0, false);
        expect_tensor(m, "roberta.encoder.layer.0.output.dense.weight", 2, 16, 24, 0, false);
        expect_tensor(m, "roberta.encoder.layer.1.output.LayerNorm.bias", 1, 16, 0, 0, false);
        expect_tensor(m, "classifier.dense.weight", 2, 16, 16, 0, true);
        expect_tensor(m, "classifier.out_proj.weight", 2, 3, 16, 0, true);
        expect_tensor(m, "classifier.out_proj.bias", 1, 3, 0, 0, true);
        expect_tensor(m, "delta0.reparam.embedding", 2, 2, 16, 0, true);
        expect_tensor(m, "delta0.reparam.0.weight", 2, 4, 16, 0, true);
        expect_tensor(m, "delta0.reparam.2.weight", 2, 2 * 2 * 16, 4, 0, true);
        expect_tensor(m, "delta0.reparam.2.bias", 1, 2 * 2 * 16, 0, 0, true);
        expect_tensor(m, "encoder.layers.1.delta1.down.weight", 2, 3, 16, 0, true);
        expect_tensor(m, "encoder.layers.1.delta1.up.weight", 2, 16, 3, 0, true);
        expect_tensor(m, "encoder.layers.0.delta1.up.bias", 1, 16, 0, 0, true);
        CHECK(refm_tensor_find(m, "bert.pooler.dense.weight") == NULL);
        if (CHECK(refm_collapse_prefix(m) == VP_OK)) {
            expect_tensor(m, "encoder.layers.1.delta0.prefix_k", 2, 2, 16, 0, true);
            expect_tensor(m, "encoder.layers.0.delta0.prefix_v", 2, 2, 16, 0, true);
        }
        double x[3] = {0};
        CHECK(refm_tensor_set(m, "classifier.out_proj.bias", x, 3) == VP_OK);
        CHECK(refm_tensor_set(m, "classifier.out_proj.bias", x, 2) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(refm_tensor_set(m, "no.such.tensor", x, 3) == VP_ERROR_INVALID_ARGUMENT);
        refm_destroy(m);
    }
    model_arch_finish(&f.arch);
    if (!fixture_init(&f, true)) return;
    const struct spec_case *specs[] = {&cases[8] /* mh-pa */, &cases[5] /* lora k/o/up/down */,
                                       &cases[12] /* gated */, &cases[10] /* bitfit */};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        m = model_of(&f, specs[k], false, 0.0);
        if (!m) continue;
        expect_tensor(m, "bert.pooler.dense.weight", 2, 8, 8, 0, false);
        expect_tensor(m, "classifier.weight", 2, 3, 8, 0, true);
        expect_tensor(m, "bert.embeddings.position_embeddings.weight", 2, 16, 8, 0, false);
        if (k == 0) {
            expect_tensor(m, "encoder.layers.0.delta0.down.weight", 3, 2, 2, 4, true);
            expect_tensor(m, "encoder.layers.0.delta0.down.bias", 2, 2, 2, 0, true);
            expect_tensor(m, "encoder.layers.1.delta0.up.weight", 3, 2, 4, 2, true);
            expect_tensor(m, "encoder.layers.1.delta0.up.bias", 2, 2, 4, 0, true);
        } else if (k == 1) {
            expect_tensor(m, "encoder.layers.0.delta2.lora_A", 2, 3, 8, 0, true);
            expect_tensor(m, "encoder.layers.0.delta2.lora_B", 2, 24, 3, 0, true);
            expect_tensor(m, "encoder.layers.1.delta3.lora_A", 2, 2, 24, 0, true);
            expect_tensor(m, "encoder.layers.1.delta3.lora_B", 2, 8, 2, 0, true);
            CHECK(refm_tensor_find(m, "encoder.layers.0.delta4.lora_A") == NULL); /* layers [1] */
        } else if (k == 2) {
            expect_tensor(m, "encoder.layers.0.delta0.gate", 1, 1, 0, 0, true);
            expect_tensor(m, "encoder.layers.1.delta1.gate", 1, 1, 0, 0, true);
            CHECK(refm_tensor_find(m, "encoder.layers.0.delta1.gate") == NULL);
        } else {
            expect_tensor(m, "bert.encoder.layer.0.attention.self.key.bias", 1, 8, 0, 0, true);
            expect_tensor(m, "bert.encoder.layer.0.attention.self.key.weight", 2, 8, 8, 0, false);
            expect_tensor(m, "bert.embeddings.LayerNorm.bias", 1, 8, 0, 0, true);
            expect_tensor(m, "bert.embeddings.LayerNorm.weight", 1, 8, 0, 0, false);
            expect_tensor(m, "bert.pooler.dense.bias", 1, 8, 0, 0, true);
        }
        refm_destroy(m);
    }
    model_arch_finish(&f.arch);
}

/* The contract's initialisation: adapters' W_down within the Kaiming bound
 * 1/√fan_in and W_up, biases, LoRA B and gates exactly 0; LayerNorm γ near 1. */
static void initialisation_follows_the_contract(void) {
    struct fixture f;
    if (!fixture_init(&f, true)) return;
    struct refm *m = model_of(&f, &cases[12] /* gated adapters */, false, 0.0);
    if (m) {
        const struct refm_tensor *down = refm_tensor_find(m, "encoder.layers.0.delta0.down.weight");
        const struct refm_tensor *up = refm_tensor_find(m, "encoder.layers.0.delta0.up.weight");
        const struct refm_tensor *gate = refm_tensor_find(m, "encoder.layers.0.delta0.gate");
        const struct refm_tensor *ln = refm_tensor_find(m, "bert.encoder.layer.0.output.LayerNorm.weight");
        if (CHECK(down && up && gate && ln)) {
            double big = 0.0, upmax = 0.0;
            for (size_t i = 0; i < down->n; i++) big = fmax(big, fabs(down->data[i]));
            for (size_t i = 0; i < up->n; i++) upmax = fmax(upmax, fabs(up->data[i]));
            CHECKF(big > 0.0 && big <= 1.0 / sqrt(8.0), "W_down max %.3g", big);
            CHECK(upmax == 0.0 && gate->data[0] == 0.0);
            for (size_t i = 0; i < ln->n; i++) CHECKF(fabs(ln->data[i] - 1.0) < 0.5, "gamma %g", ln->data[i]);
        }
        refm_destroy(m);
    }
    m = model_of(&f, &cases[4] /* lora */, false, 0.0);
    if (m) {
        const struct refm_tensor *b = refm_tensor_find(m, "encoder.layers.1.delta1.lora_B");
        double bmax = 0.0;
        if (CHECK(b != NULL))
            for (size_t i = 0; i < b->n; i++) bmax = fmax(bmax, fabs(b->data[i]));
        CHECK(bmax == 0.0);
        refm_destroy(m);
    }
    model_arch_finish(&f.arch);
}

TH_MAIN(TH_CASE(bert_gradients_match_finite_differences), TH_CASE(roberta_gradients_match_finite_differences),
        TH_CASE(backward_accumulates), TH_CASE(zero_init_keeps_frozen_logits),
        TH_CASE(padding_does_not_change_logits), TH_CASE(collapse_prefix_keeps_forward),
        TH_CASE(trainable_counts_match_delta_count_params), TH_CASE(tensor_names_and_shapes),
        TH_CASE(initialisation_follows_the_contract), TH_CASE(lora_merges_into_its_projection),
        TH_CASE(sequential_adapters_merge_into_their_projection), TH_CASE(mh_pa_is_a_block_diagonal_adapter),
        TH_CASE(ffn_pa_is_extra_ffn_units), TH_CASE(gate_scales_by_its_sigmoid), TH_CASE(prefix_is_an_extra_key))
