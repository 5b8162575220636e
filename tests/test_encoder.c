/* The GPU encoder (runtime/model/encoder.h) and the delta params
 * (runtime/delta/params.h) against the double-precision whole-model
 * reference (tests/reference/model.h) on tiny BERT and RoBERTa classifiers:
 * for every delta preset, loss, logits and every trainable gradient with
 * fp32 and with f16 weights; the frozen pool untouched by a training step;
 * pool bytes equal to the plan; a recording replayed with a new batch; the
 * contract's initialisation; the budget check; dropout. The model is a real
 * folder (config.json + model.safetensors) written from the reference's
 * random weights, so the loader is exercised too. */
#include "encoder.h"
#include "kerneltest.h"
#include "model.h"
#include "params.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Tiny models: d 16, 2 heads, FFN 24, 2 layers, vocabulary 40, 3 labels. */
#define BERT_TINY                                                                                     \
    "{\"model_type\":\"bert\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"         \
    "\"num_attention_heads\":2,\"intermediate_size\":24,\"max_position_embeddings\":16,"             \
    "\"type_vocab_size\":2,\"pad_token_id\":0,\"layer_norm_eps\":1e-12,\"num_labels\":3}"
#define ROBERTA_TINY                                                                                  \
    "{\"model_type\":\"roberta\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"      \
    "\"num_attention_heads\":2,\"intermediate_size\":24,\"max_position_embeddings\":16,"             \
    "\"type_vocab_size\":1,\"pad_token_id\":1,\"layer_norm_eps\":1e-5,\"num_labels\":3}"

/* ------------------------------------------------------------------------
 * Tolerance
 *
 * Both sides start from the same values: the reference's tensors are
 * rounded to fp32 (and its frozen weight matrices to f16 for the f16 runs)
 * before the GPU model gets them, so the only difference left is fp32
 * arithmetic on the GPU against double in the reference. A length-K fp32
 * dot product or sum is off by at most K·u·Σ|terms| (u = 2^-24, Higham's
 * γ_K); the longest reductions here are K = 24 (the FFN width; also the
 * weight-gradient sums over B·T = 18 rows, LayerNorm over d = 16, softmax
 * over ≤ 6 + 9 keys). To first order the relative errors of the ~40
 * dependent reductions between an input and a gradient (2 layers × ~8 ops
 * forward, as many backward, head and loss) add, and LayerNorm and the
 * softmax can amplify them by their condition (≈ |γ|/σ, a few with these
 * weights): 40 · 24 · u · 4 ≈ 2.3e-4. Errors are measured normwise per
 * tensor, max|got − want| ≤ TOL · max|want|, so an element that cancels to
 * ~0 is judged against the tensor's scale, not its own. A wrong or missing
 * term in a backward is off by ≥ 1e-2 relative and fails it.
 *
 * A gradient can also be exactly zero in exact arithmetic while its terms
 * are not: the key bias (it shifts every score of a softmax row alike) gets
 * Σ_n dk[n] over the B·T rows, which cancels in the reference to ~1e-17 but
 * leaves fp32 rounding. That rounding is at most γ_K·Σ|terms| with K = B·T
 * terms no larger than the model's largest gradient element g_max, so every
 * gradient also gets the absolute allowance ZERO_ATOL · g_max with
 * ZERO_ATOL = K²·u (1.9e-5, about 1e-5 absolute here: far below the
 * gradients themselves, which are 1e-3 .. 1).
 * ------------------------------------------------------------------------ */
#define TOL (40.0 * 24.0 * KT_EPS_F32 * 4.0)
#define ZERO_ATOL (18.0 * 18.0 * KT_EPS_F32)

/* ------------------------------------------------------------------------
 * Shared state: one context for the whole program (pipelines compile once)
 * ------------------------------------------------------------------------ */

static vp_context *g_ctx;
static char g_dir[256];

static vp_context *ctx_get(void) {
    if (!g_ctx) g_ctx = vt_context(NULL);
    return g_ctx;
}

struct spec_case {
    const char *label;
    const char *preset; // or NULL: json
    const char *json;
    int reparam;        // ≥ 0: every prefix module's reparam width; −1: as given
};

static const struct spec_case cases[] = {
    {"adapter", "adapter:r=3", NULL, -1},
    {"adapter-ffn", "adapter-ffn:r=3", NULL, -1},
    {"prefix (reparam)", "prefix:l=3", NULL, 5},
    {"prefix (plain)", "prefix:l=3", NULL, 0},
    {"lora", "lora:r=2", NULL, -1},
    {"lora k/o/up/down", NULL,
     "{\"modules\":[{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"alpha\":4},"
     "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"alpha\":2},"
     "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":3,\"alpha\":6},"
     "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":8},"
     "{\"kind\":\"lora\",\"at\":\"q\",\"rank\":1,\"alpha\":1,\"layers\":[1]}]}",
     -1},
    {"pa", "pa:r=3", NULL, -1},
    {"scaled-pa", "scaled-pa:r=3,s=4", NULL, -1},
    {"mh-pa", "mh-pa:r=2", NULL, -1},
    {"mam", "mam:l=2,r=3,s=2", NULL, 4},
    {"bitfit", "bitfit", NULL, -1},
    {"full", "full", NULL, -1},
    {"gated adapters", NULL,
     "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,"
     "\"act\":\"gelu\",\"compose\":\"gated\"},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\",\"bottleneck\":2,"
     "\"compose\":\"gated\",\"layers\":[1]},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,"
     "\"per_head\":true,\"compose\":\"gated\"}]}",
     -1},
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
     -1},
    {"three prefixes", NULL,
     "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":4,\"layers\":[1]},"
     "{\"kind\":\"prefix\",\"length\":3,\"reparam\":0},"
     "{\"kind\":\"prefix\",\"length\":1,\"reparam\":3}]}",
     -1},
};
#define CASE_COUNT (sizeof cases / sizeof cases[0])

static const struct spec_case *case_named(const char *label) {
    for (size_t i = 0; i < CASE_COUNT; i++)
        if (strcmp(cases[i].label, label) == 0) return &cases[i];
    return NULL;
}

static bool spec_of(const struct spec_case *c, struct delta_spec *s) {
    vp_status st = c->json ? delta_spec_parse(c->json, strlen(c->json), c->label, s)
                           : delta_spec_preset(c->preset, s);
    if (!CHECKF(st == VP_OK, "%s: %s", c->label, vp_last_error())) return false;
    if (c->reparam >= 0)
        for (int i = 0; i < s->count; i++)
            if (s->modules[i].kind == DELTA_PREFIX) s->modules[i].reparam = c->reparam;
    return true;
}

/* ------------------------------------------------------------------------
 * Batches: B = 3, T = 6 with padding (and 2 × 4 for a shape change)
 * ------------------------------------------------------------------------ */

enum { B = 3, T = 6, N = B * T, C = 3 };

struct batch {
    int B, T;
    int32_t ids[N], types[N], labels[B];
    uint8_t mask[N];
};

/* Sequence lengths 6, 4, 2 (batch 0), 3, 6, 5 (batch 1, one label skipped)
 * or 4, 3 in a 2 × 4 batch (batch 2). */
static void batch_make(struct batch *b, bool bert, int which) {
    const int cls = bert ? 2 : 0, pad = bert ? 0 : 1;
    const int lens[3][B] = {{6, 4, 2}, {3, 6, 5}, {4, 3, 0}};
    const int32_t labels[3][B] = {{2, 0, 1}, {1, REFM_IGNORE_INDEX, 2}, {0, 2, 0}};
    uint64_t st = 1234 + (uint64_t)which;
    b->B = which == 2 ? 2 : B;
    b->T = which == 2 ? 4 : T;
    for (int s = 0; s < b->B; s++) {
        b->labels[s] = labels[which][s];
        for (int t = 0; t < b->T; t++) {
            int n = s * b->T + t;
            bool real = t < lens[which][s];
            b->mask[n] = real;
            b->ids[n] = !real ? pad : t == 0 ? cls : 3 + (int32_t)(th_rand_u64(&st) % 37);
            b->types[n] = bert && real && t >= lens[which][s] / 2 ? 1 : 0;
        }
    }
}

static struct refm_batch refm_batch_of(const struct batch *b, bool bert) {
    return (struct refm_batch){b->ids, b->mask, bert ? b->types : NULL, b->labels, b->B, b->T};
}

static struct encoder_batch enc_batch_of(const struct batch *b, bool bert) {
    return (struct encoder_batch){b->ids, b->mask, bert ? b->types : NULL, b->labels};
}

/* ------------------------------------------------------------------------
 * Model folders
 * ------------------------------------------------------------------------ */

static bool parse_arch(bool bert, struct model_arch *arch) {
    const char *json = bert ? BERT_TINY : ROBERTA_TINY;
    return CHECKF(model_arch_parse(json, strlen(json), "config.json", arch) == VP_OK, "%s", vp_last_error());
}

static bool is_file_tensor(const char *name) {
    return strncmp(name, "bert.", 5) == 0 || strncmp(name, "roberta.", 8) == 0 ||
           strncmp(name, "classifier.", 11) == 0;
}

/* The GPU model's frozen weight matrices and tables (stored in the
 * storage type): the reference's copies get the same rounding. */
static bool stored_16bit(const struct model_arch *arch, const struct refm_tensor *t) {
    if (t->grad) return false;
    struct encoder_tensor_desc desc[64];
    int n = encoder_model_tensors(arch, desc);
    for (int k = 0; k < n; k++)
        if (strcmp(desc[k].name, t->name) == 0) return desc[k].matrix;
    return false;
}

/* Rounds every reference tensor to what the GPU model holds: fp32, and f16
 * for frozen matrices when `f16`. */
static void round_reference(struct refm *m, const struct model_arch *arch, bool f16) {
    for (int k = 0; k < refm_tensor_count(m); k++) {
        struct refm_tensor *t = refm_tensor_at(m, k);
        kt_round(f16 && stored_16bit(arch, t) ? VP_DTYPE_F16 : VP_DTYPE_F32, t->data, t->n);
    }
}

/* Writes config.json and model.safetensors (the reference's model and head
 * tensors, in F32 or F16) into g_dir. */
static bool write_model(struct refm *m, bool bert, bool f16_file) {
    char path[512];
    const char *json = bert ? BERT_TINY : ROBERTA_TINY;
    snprintf(path, sizeof path, "%s/config.json", g_dir);
    if (!CHECK(vp_file_write_atomic(path, json, strlen(json)) == VP_OK)) return false;
    int count = refm_tensor_count(m);
    struct io_tensor_out *out = calloc((size_t)count, sizeof *out);
    void **data = calloc((size_t)count, sizeof *data);
    size_t n = 0;
    for (int k = 0; k < count; k++) {
        struct refm_tensor *t = refm_tensor_at(m, k);
        if (!is_file_tensor(t->name)) continue;
        if (f16_file) {
            uint16_t *h = malloc(t->n * 2);
            for (size_t i = 0; i < t->n; i++) h[i] = vp_f32_to_f16((float)t->data[i]);
            data[n] = h;
        } else {
            float *f = malloc(t->n * 4);
            for (size_t i = 0; i < t->n; i++) f[i] = (float)t->data[i];
            data[n] = f;
        }
        out[n] = (struct io_tensor_out){t->name, f16_file ? IO_DTYPE_F16 : IO_DTYPE_F32, t->ndim, {0}, data[n]};
        for (int i = 0; i < t->ndim; i++) out[n].shape[i] = t->shape[i];
        n++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
    bool ok = CHECKF(io_safetensors_write(path, out, n, NULL) == VP_OK, "%s", vp_last_error());
    for (size_t k = 0; k < n; k++) free(data[k]);
    free(data);
    free(out);
    return ok;
}

static bool make_dir(void) {
    if (g_dir[0]) return true;
    snprintf(g_dir, sizeof g_dir, "/tmp/vkpeft-test-encoder-XXXXXX");
    return CHECK(mkdtemp(g_dir) != NULL);
}

/* ------------------------------------------------------------------------
 * Comparisons
 * ------------------------------------------------------------------------ */

/* max|got − want| ≤ tol · max|want| + atol (see TOL); reports the worst
 * element. */
static bool check_normwise(const float *got, const double *want, size_t n, double tol, double atol,
                           const char *what, double *worst_used) {
    double err = 0.0, scale = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= err)) {
            err = e;
            at = i;
        }
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    double rel = scale > 0 ? err / scale : err, used = err / (tol * scale + atol);
    if (worst_used && !(used <= *worst_used)) *worst_used = used;
    return CHECKF(err <= tol * scale + atol,
                  "%s: |got - want| = %.3g at %zu (got %.9g, want %.9g), %.3g of max|want| = %.3g, above %.3g "
                  "(+ %.3g)", what, err, at, n ? (double)got[at] : 0.0, n ? want[at] : 0.0, rel, scale, tol, atol);
}

struct run_opts {
    bool bert;
    bool f16;      /* frozen matrices stored f16 */
    bool f16_file; /* the model file holds F16 */
};

/* The model for a case, both sides: the reference with random delta values
 * (so every gradient is non-trivial), rounded as the GPU stores it; the
 * GPU model loaded from the folder, its trainable tensors set by name. */
static struct encoder *model_pair(const struct spec_case *c, const struct run_opts *o, struct refm **ref_out,
                                  uint64_t plan[VP_POOL_COUNT], vp_pool_stats before[VP_POOL_COUNT]) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    struct delta_spec spec;
    *ref_out = NULL;
    if (!ctx || !make_dir() || !parse_arch(o->bert, &arch) || !spec_of(c, &spec)) return NULL;
    const struct refm_options ropt = {.seed = vp_hash_str(VP_HASH_INIT, c->label), .weight_std = 0.3,
                                      .randomise_zero_init = true};
    struct refm *m;
    if (!CHECKF(refm_create(&m, &arch, &spec, &ropt) == VP_OK, "%s", vp_last_error())) {
        model_arch_finish(&arch);
        return NULL;
    }
    round_reference(m, &arch, o->f16 || o->f16_file);
    if (o->f16_file) /* every tensor of an F16 file is f16 */
        for (int k = 0; k < refm_tensor_count(m); k++)
            if (is_file_tensor(refm_tensor_at(m, k)->name))
                kt_round(VP_DTYPE_F16, refm_tensor_at(m, k)->data, refm_tensor_at(m, k)->n);
    struct encoder *e = NULL;
    struct encoder_options eo = {.storage = o->f16_file ? ENCODER_STORAGE_DEFAULT
                                            : o->f16    ? ENCODER_STORAGE_F16
                                                        : ENCODER_STORAGE_F32,
                                 .seed = 7};
    bool ok = write_model(m, o->bert, o->f16_file) &&
              CHECKF(encoder_open(ctx, g_dir, &spec, &eo, &e) == VP_OK, "%s: open: %s", c->label, vp_last_error()) &&
              CHECKF(encoder_plan(e, B, T, plan) == VP_OK, "%s", vp_last_error());
    for (int p = 0; ok && p < VP_POOL_COUNT; p++) vp_pool_stats_get(ctx, (vp_pool)p, &before[p]);
    ok = ok && CHECKF(encoder_load(e, B, T) == VP_OK, "%s: load: %s", c->label, vp_last_error());
    if (ok) CHECK(encoder_weight_dtype(e) == (o->f16 || o->f16_file ? VP_DTYPE_F16 : VP_DTYPE_F32));
    /* Every trainable tensor of the reference by name (the head and the
     * bitfit / full tensors came from the file already: same values). */
    size_t ref_trainable = 0;
    for (int k = 0; ok && k < refm_tensor_count(m); k++) {
        struct refm_tensor *t = refm_tensor_at(m, k);
        if (!t->grad) continue;
        ref_trainable++;
        float *f = malloc(t->n * sizeof *f);
        for (size_t i = 0; i < t->n; i++) f[i] = (float)t->data[i];
        ok = CHECKF(encoder_tensor_write(e, t->name, f, t->n) == VP_OK, "%s: %s", c->label, vp_last_error());
        free(f);
    }
    if (ok) {
        CHECKF((size_t)encoder_params(e)->count == ref_trainable, "%s: %d trainable tensors, the reference has %zu",
               c->label, encoder_params(e)->count, ref_trainable);
        CHECK(delta_params_numel(encoder_params(e)) == refm_trainable_params(m));
    }
    model_arch_finish(&arch);
    if (!ok) {
        encoder_destroy(e);
        refm_destroy(m);
        return NULL;
    }
    *ref_out = m;
    return e;
}

/* One training step on both sides; compares loss, logits and every
 * trainable gradient. */
static bool compare_step(struct encoder *e, struct refm *m, const struct batch *b, bool bert, const char *what,
                         double *worst) {
    struct refm_batch rb = refm_batch_of(b, bert);
    struct encoder_batch eb = enc_batch_of(b, bert);
    double want_logits[B * C];
    double want_loss = refm_forward(m, want_logits, &rb);
    refm_zero_grad(m);
    refm_backward(m);
    bool ok = CHECKF(encoder_write_batch(e, &eb) == VP_OK, "%s", vp_last_error()) &&
              CHECKF(encoder_zero_grads(e) == VP_OK, "%s", vp_last_error()) &&
              CHECKF(encoder_run(e, ENCODER_PASS_TRAIN) == VP_OK, "%s: %s", what, vp_last_error());
    if (!ok) return false;
    float loss, logits[B * C];
    uint32_t count;
    encoder_loss(e, &loss, &count);
    encoder_logits(e, logits);
    char label[256];
    snprintf(label, sizeof label, "%s: loss", what);
    ok &= check_normwise(&loss, &want_loss, 1, TOL, 0.0, label, worst);
    int labelled = 0;
    for (int i = 0; i < b->B; i++) labelled += b->labels[i] != REFM_IGNORE_INDEX;
    ok &= CHECKF(count == (uint32_t)labelled, "%s: %u labelled rows, want %d", what, count, labelled);
    snprintf(label, sizeof label, "%s: logits", what);
    ok &= check_normwise(logits, want_logits, (size_t)b->B * C, TOL, 0.0, label, worst);
    double gmax = 0.0;
    for (int k = 0; k < refm_tensor_count(m); k++) {
        struct refm_tensor *t = refm_tensor_at(m, k);
        for (size_t i = 0; t->grad && i < t->n; i++)
            if (fabs(t->grad[i]) > gmax) gmax = fabs(t->grad[i]);
    }
    for (int k = 0; k < refm_tensor_count(m); k++) {
        struct refm_tensor *t = refm_tensor_at(m, k);
        if (!t->grad) continue;
        float *g = malloc(t->n * sizeof *g);
        snprintf(label, sizeof label, "%s: d %s", what, t->name);
        if (CHECKF(encoder_grad_read(e, t->name, g, t->n) == VP_OK, "%s: %s", label, vp_last_error()))
            ok &= check_normwise(g, t->grad, t->n, TOL, ZERO_ATOL * gmax, label, worst);
        free(g);
    }
    return ok;
}

/* Everything one case checks; see the file comment. */
static void run_case(const struct spec_case *c, const struct run_opts *o, double *worst) {
    struct refm *m;
    uint64_t plan[VP_POOL_COUNT];
    vp_pool_stats before[VP_POOL_COUNT], after;
    struct encoder *e = model_pair(c, o, &m, plan, before);
    if (!e) return;
    char what[160];
    snprintf(what, sizeof what, "%s %s%s", o->bert ? "bert" : "roberta", c->label,
             o->f16_file ? " (f16 file)" : o->f16 ? " (f16)" : "");
    /* Pool bytes equal the plan. */
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        vp_pool_stats_get(g_ctx, (vp_pool)p, &after);
        CHECKF(after.in_use - before[p].in_use == plan[p], "%s: %s pool holds %llu bytes, the plan says %llu", what,
               vp_pool_name((vp_pool)p), (unsigned long long)(after.in_use - before[p].in_use),
               (unsigned long long)plan[p]);
    }
    uint64_t hash0 = 0, hash1 = 1;
    CHECK(encoder_frozen_hash(e, &hash0) == VP_OK);
    struct batch b0, b1;
    batch_make(&b0, o->bert, 0);
    batch_make(&b1, o->bert, 1);
    compare_step(e, m, &b0, o->bert, what, worst);
    /* The frozen pool is byte-for-byte what was uploaded. */
    CHECK(encoder_frozen_hash(e, &hash1) == VP_OK);
    CHECKF(hash0 == hash1, "%s: the frozen tensors changed", what);
    /* Replay: the same recording with the second batch. */
    vp_stats s0, s1;
    vp_context_stats(g_ctx, &s0);
    char what2[192];
    snprintf(what2, sizeof what2, "%s, replayed", what);
    compare_step(e, m, &b1, o->bert, what2, worst);
    vp_context_stats(g_ctx, &s1);
    CHECKF(s1.dispatches_recorded == s0.dispatches_recorded, "%s: the replay recorded %llu dispatches", what,
           (unsigned long long)(s1.dispatches_recorded - s0.dispatches_recorded));
    /* The eval pass gives the same logits. */
    double want_logits[B * C];
    struct refm_batch rb = refm_batch_of(&b1, o->bert);
    refm_forward(m, want_logits, &rb);
    float logits[B * C];
    if (CHECK(encoder_run(e, ENCODER_PASS_EVAL) == VP_OK)) {
        encoder_logits(e, logits);
        snprintf(what2, sizeof what2, "%s, eval logits", what);
        check_normwise(logits, want_logits, B * C, TOL, 0.0, what2, worst);
    }
    encoder_destroy(e);
    refm_destroy(m);
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        vp_pool_stats_get(g_ctx, (vp_pool)p, &after);
        CHECKF(after.in_use == before[p].in_use, "%s: %s pool leaked %llu bytes", what, vp_pool_name((vp_pool)p),
               (unsigned long long)(after.in_use - before[p].in_use));
    }
}

static void run_all(bool bert) {
    double worst = 0.0;
    for (size_t i = 0; i < CASE_COUNT; i++) {
        const struct run_opts o = {.bert = bert};
        run_case(&cases[i], &o, &worst);
    }
    th_diag("worst error %.3g of its bound (TOL %.3g)", worst, TOL);
}

static void bert_fp32_every_preset(void) { run_all(true); }
static void roberta_fp32_every_preset(void) { run_all(false); }

/* f16 storage of the frozen matrices, against a reference holding the same
 * f16 values, so the tolerance stays fp32's: storage from an F32 file, and
 * the default storage of an F16 file (every tensor f16 in the file; biases
 * and LayerNorm converted to f32 exactly). */
static void f16_weights(void) {
    double worst = 0.0;
    const char *labels[] = {"mam", "lora k/o/up/down", "gated adapters", "bitfit", "three prefixes"};
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        const struct run_opts o = {.bert = i % 2 == 0, .f16 = true};
        run_case(case_named(labels[i]), &o, &worst);
    }
    const struct run_opts file_bert = {.bert = true, .f16_file = true};
    const struct run_opts file_roberta = {.bert = false, .f16_file = true};
    run_case(case_named("sequential+parallel mix"), &file_bert, &worst);
    run_case(case_named("pa"), &file_roberta, &worst);
    th_diag("worst error %.3g of its bound (TOL %.3g)", worst, TOL);
}

/* A new batch shape re-plans the activations (exactly the plan again) and
 * re-records; results follow the reference for each shape. */
static void batch_shape_change(void) {
    double worst = 0.0;
    const char *labels[] = {"mh-pa", "three prefixes"};
    for (int k = 0; k < 2; k++) {
        const struct run_opts o = {.bert = k == 1};
        struct refm *m;
        uint64_t plan[VP_POOL_COUNT], plan2[VP_POOL_COUNT];
        vp_pool_stats before[VP_POOL_COUNT], now;
        struct encoder *e = model_pair(case_named(labels[k]), &o, &m, plan, before);
        if (!e) continue;
        struct batch b0, b2;
        batch_make(&b0, o.bert, 0);
        batch_make(&b2, o.bert, 2);
        compare_step(e, m, &b0, o.bert, labels[k], &worst);
        if (CHECK(encoder_plan(e, b2.B, b2.T, plan2) == VP_OK) &&
            CHECKF(encoder_set_batch(e, b2.B, b2.T) == VP_OK, "%s", vp_last_error())) {
            int Bn, Tn;
            encoder_batch_shape(e, &Bn, &Tn);
            CHECK(Bn == b2.B && Tn == b2.T);
            for (int p = 0; p < VP_POOL_COUNT; p++) {
                vp_pool_stats_get(g_ctx, (vp_pool)p, &now);
                CHECKF(now.in_use - before[p].in_use == plan2[p], "%s pool: %llu bytes for 2 x 4, plan %llu",
                       vp_pool_name((vp_pool)p), (unsigned long long)(now.in_use - before[p].in_use),
                       (unsigned long long)plan2[p]);
            }
            compare_step(e, m, &b2, o.bert, "2 x 4", &worst);
            CHECK(encoder_set_batch(e, B, T) == VP_OK);
            compare_step(e, m, &b0, o.bert, "3 x 6 again", &worst);
        }
        encoder_destroy(e);
        refm_destroy(m);
    }
    th_diag("worst error %.3g of its bound (TOL %.3g)", worst, TOL);
}

/* ------------------------------------------------------------------------
 * Params: names, shapes and initial values against the reference
 * ------------------------------------------------------------------------ */

/* With the same seed and the contract's init (no randomisation), every
 * delta tensor's initial values equal the reference's exactly (same Philox
 * streams and draws, in double), and the allocated values equal their fp32
 * rounding. */
static void params_init_matches_reference(void) {
    vp_context *ctx = ctx_get();
    if (!ctx) return;
    for (int bert = 0; bert < 2; bert++) {
        struct model_arch arch;
        if (!parse_arch(bert, &arch)) return;
        for (size_t c = 0; c < CASE_COUNT; c++) {
            struct delta_spec spec;
            if (!spec_of(&cases[c], &spec)) continue;
            const uint64_t seed = 99 + c;
            const struct refm_options ropt = {.seed = seed};
            struct refm *m;
            struct delta_params *p;
            if (!CHECK(refm_create(&m, &arch, &spec, &ropt) == VP_OK)) continue;
            if (!CHECKF(delta_params_create(ctx, &arch, &spec, seed, &p) == VP_OK, "%s", vp_last_error())) {
                refm_destroy(m);
                continue;
            }
            int ref_trainable = 0;
            for (int k = 0; k < refm_tensor_count(m); k++) ref_trainable += refm_tensor_at(m, k)->grad != NULL;
            CHECKF(p->count == ref_trainable, "%s: %d tensors, reference %d", cases[c].label, p->count, ref_trainable);
            uint64_t plan = delta_params_plan_bytes(p);
            vp_pool_stats before, after;
            vp_pool_stats_get(ctx, VP_POOL_TRAINABLE, &before);
            bool alloc = CHECKF(delta_params_alloc(p) == VP_OK, "%s", vp_last_error());
            vp_pool_stats_get(ctx, VP_POOL_TRAINABLE, &after);
            CHECK(after.in_use - before.in_use == plan);
            for (int k = 0; alloc && k < p->count; k++) {
                const struct delta_param *t = &p->items[k];
                struct refm_tensor *r = refm_tensor_find(m, t->name);
                if (!CHECKF(r && r->grad, "%s: %s is not trainable in the reference", cases[c].label, t->name)) continue;
                bool shape = r->ndim == t->ndim;
                for (int i = 0; shape && i < t->ndim; i++) shape = r->shape[i] == t->shape[i];
                CHECKF(shape && r->n == t->n, "%s: %s has another shape", cases[c].label, t->name);
                if (t->role != DELTA_PARAM_DELTA || r->n != t->n) continue;
                float *v = malloc(t->n * sizeof *v);
                size_t bad = 0, bad_device = 0;
                CHECK(delta_params_read(p, t->name, v, t->n) == VP_OK);
                for (size_t i = 0; i < t->n; i++) {
                    bad += delta_params_init_value(p, t, i) != r->data[i];
                    bad_device += v[i] != (float)r->data[i];
                }
                CHECKF(bad == 0 && bad_device == 0, "%s: %s: %zu initial values differ (%zu on the device)",
                       cases[c].label, t->name, bad, bad_device);
                free(v);
            }
            /* Grads start at zero; the optimiser view covers every tensor. */
            struct kernel_opt_tensor opt[256];
            uint32_t n = delta_params_opt_tensors(p, opt, 256);
            CHECK(n == (uint32_t)p->count);
            for (uint32_t k = 1; k < n; k++) CHECK(opt[k].param->offset > opt[k - 1].param->offset);
            delta_params_destroy(p);
            refm_destroy(m);
        }
        model_arch_finish(&arch);
    }
}

/* Save → load through struct delta_tensors gives the same values; unknown
 * names are refused. */
static void params_save_load(void) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    struct delta_spec spec;
    if (!ctx || !parse_arch(false, &arch) || !spec_of(case_named("mam"), &spec)) return;
    struct delta_params *p, *q;
    if (!CHECK(delta_params_create(ctx, &arch, &spec, 5, &p) == VP_OK)) return;
    if (!CHECK(delta_params_create(ctx, &arch, &spec, 6, &q) == VP_OK)) return;
    struct delta_tensors t = {0};
    if (CHECK(delta_params_alloc(p) == VP_OK) && CHECK(delta_params_alloc(q) == VP_OK) &&
        CHECK(delta_params_save(p, 1u << DELTA_PARAM_DELTA, &t) == VP_OK)) {
        CHECK(t.count > 0);
        CHECK(delta_params_load(q, &t) == VP_OK);
        for (size_t k = 0; k < t.count; k++) {
            float *v = malloc(delta_tensor_numel(&t.items[k]) * sizeof *v);
            CHECK(delta_params_read(q, t.items[k].name, v, delta_tensor_numel(&t.items[k])) == VP_OK);
            CHECKF(memcmp(v, t.items[k].data, delta_tensor_numel(&t.items[k]) * 4) == 0, "%s", t.items[k].name);
            free(v);
        }
        int64_t shape[1] = {3};
        delta_tensors_add(&t, "encoder.layers.0.delta9.lora_A", 1, shape);
        CHECK(delta_params_load(q, &t) == VP_ERROR_BAD_INPUT);
        th_diag("message: %s", vp_last_error());
    }
    delta_tensors_free(&t);
    delta_params_destroy(p);
    delta_params_destroy(q);
    model_arch_finish(&arch);
}

/* ------------------------------------------------------------------------
 * Budget, dropout, errors
 * ------------------------------------------------------------------------ */

/* A plan over the budget fails before anything is allocated, with the
 * numbers in the message. */
static void over_budget(void) {
    struct model_arch arch;
    struct delta_spec spec;
    if (!make_dir() || !parse_arch(true, &arch) || !spec_of(case_named("lora"), &spec)) return;
    struct refm *m;
    const struct refm_options ropt = {.seed = 3};
    if (!CHECK(refm_create(&m, &arch, &spec, &ropt) == VP_OK)) return;
    bool ok = write_model(m, true, false);
    refm_destroy(m);
    model_arch_finish(&arch);
    vp_context_options co = {.budget_bytes = 2u << 20};
    vp_context *ctx = ok ? vt_context(&co) : NULL;
    if (!ctx) return;
    struct encoder *e = NULL;
    struct encoder_options eo = {.storage = ENCODER_STORAGE_F32};
    uint64_t plan[VP_POOL_COUNT];
    if (CHECK(encoder_open(ctx, g_dir, &spec, &eo, &e) == VP_OK) &&
        CHECK(encoder_plan(e, 128, 16, plan) == VP_OK)) {
        CHECK(plan[VP_POOL_ACTIVATIONS] > (2u << 20));
        CHECK(encoder_load(e, 128, 16) == VP_ERROR_OVER_BUDGET);
        th_diag("message: %s", vp_last_error());
        CHECK(strstr(vp_last_error(), "the memory plan needs") != NULL);
        CHECK(strstr(vp_last_error(), "activations") != NULL);
        for (int p = 0; p < VP_POOL_COUNT; p++) {
            vp_pool_stats st;
            vp_pool_stats_get(ctx, (vp_pool)p, &st);
            CHECKF(st.in_use == 0 && st.reserved == 0, "%s pool: %llu bytes", vp_pool_name((vp_pool)p),
                   (unsigned long long)st.reserved);
        }
        /* A smaller batch fits. */
        CHECKF(encoder_load(e, 2, 4) == VP_OK, "%s", vp_last_error());
    }
    encoder_destroy(e);
    vp_context_destroy(ctx);
}

/* Dropout on: a training pass differs from the dropout-free one and from
 * another step's, the same step repeats exactly, and evaluation ignores it. */
static void dropout_steps(void) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    struct delta_spec spec;
    if (!ctx || !make_dir() || !parse_arch(false, &arch) || !spec_of(case_named("mam"), &spec)) return;
    struct refm *m;
    const struct refm_options ropt = {.seed = 11, .weight_std = 0.3, .randomise_zero_init = true};
    if (!CHECK(refm_create(&m, &arch, &spec, &ropt) == VP_OK)) return;
    bool ok = write_model(m, false, false);
    refm_destroy(m);
    model_arch_finish(&arch);
    struct encoder *on = NULL, *off = NULL;
    const struct encoder_options o_on = {.storage = ENCODER_STORAGE_F32, .dropout = true, .seed = 3};
    const struct encoder_options o_off = {.storage = ENCODER_STORAGE_F32, .seed = 3};
    struct batch b;
    batch_make(&b, false, 0);
    struct encoder_batch eb = enc_batch_of(&b, false);
    if (ok && CHECK(encoder_create(ctx, g_dir, &spec, &o_on, B, T, &on) == VP_OK) &&
        CHECK(encoder_create(ctx, g_dir, &spec, &o_off, B, T, &off) == VP_OK) &&
        CHECK(encoder_write_batch(on, &eb) == VP_OK) && CHECK(encoder_write_batch(off, &eb) == VP_OK)) {
        float l_off, l1, l1again, l2, e_on, e_off;
        CHECK(encoder_run(off, ENCODER_PASS_TRAIN) == VP_OK);
        encoder_loss(off, &l_off, NULL);
        encoder_set_step(on, 1);
        CHECK(encoder_run(on, ENCODER_PASS_TRAIN) == VP_OK);
        encoder_loss(on, &l1, NULL);
        CHECK(encoder_run(on, ENCODER_PASS_TRAIN) == VP_OK);
        encoder_loss(on, &l1again, NULL);
        encoder_set_step(on, 2);
        CHECK(encoder_run(on, ENCODER_PASS_TRAIN) == VP_OK);
        encoder_loss(on, &l2, NULL);
        CHECK(encoder_run(on, ENCODER_PASS_EVAL) == VP_OK);
        encoder_loss(on, &e_on, NULL);
        CHECK(encoder_run(off, ENCODER_PASS_EVAL) == VP_OK);
        encoder_loss(off, &e_off, NULL);
        th_diag("loss without dropout %.6f, step 1 %.6f, step 2 %.6f", l_off, l1, l2);
        CHECK(isfinite(l1) && isfinite(l2));
        CHECK(l1 != l_off && l2 != l1);
        CHECK(l1 == l1again);
        CHECK(e_on == e_off && e_off == l_off);
        /* Gradients stay finite. */
        float g[3 * 16];
        CHECK(encoder_grad_read(on, "classifier.out_proj.weight", g, 3 * 16) == VP_OK);
        bool finite = true;
        for (int i = 0; i < 3 * 16; i++) finite &= isfinite(g[i]) != 0;
        CHECK(finite);
    }
    encoder_destroy(on);
    encoder_destroy(off);
}

/* Bad inputs give messages, not crashes. */
static void errors_are_reported(void) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    struct delta_spec spec;
    if (!ctx || !make_dir() || !parse_arch(true, &arch) || !spec_of(case_named("lora"), &spec)) return;
    struct refm *m;
    const struct refm_options ropt = {.seed = 4};
    if (!CHECK(refm_create(&m, &arch, &spec, &ropt) == VP_OK)) return;
    bool ok = write_model(m, true, false);
    refm_destroy(m);
    model_arch_finish(&arch);
    struct encoder *e = NULL;
    if (ok && CHECK(encoder_create(ctx, g_dir, &spec, NULL, B, T, &e) == VP_OK)) {
        CHECK(encoder_weight_dtype(e) == VP_DTYPE_F16); /* the default for an F32 file */
        struct batch b;
        batch_make(&b, true, 0);
        b.ids[4] = 40;
        struct encoder_batch eb = enc_batch_of(&b, true);
        CHECK(encoder_write_batch(e, &eb) == VP_ERROR_BAD_INPUT);
        th_diag("message: %s", vp_last_error());
        float v[16];
        CHECK(encoder_tensor_write(e, "bert.encoder.layer.0.attention.self.query.bias", v, 16) ==
              VP_ERROR_INVALID_ARGUMENT);
        CHECK(encoder_grad_read(e, "bert.embeddings.LayerNorm.bias", v, 16) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(encoder_tensor_read(e, "bert.embeddings.LayerNorm.bias", v, 16) == VP_OK);
        CHECK(encoder_tensor_read(e, "no.such.tensor", v, 16) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(encoder_set_batch(e, 2, 17) == VP_ERROR_BAD_INPUT); /* past max_position_embeddings */
    }
    encoder_destroy(e);
    struct delta_spec bad;
    if (spec_of(case_named("adapter"), &bad)) {
        bad.modules[0].layers[0] = 5;
        bad.modules[0].all_layers = false;
        bad.modules[0].layer_count = 1;
        e = NULL;
        CHECK(encoder_open(ctx, g_dir, &bad, NULL, &e) == VP_ERROR_BAD_INPUT);
        th_diag("message: %s", vp_last_error());
        encoder_destroy(e);
    }
}

static void teardown(void) {
    vp_context_destroy(g_ctx);
    g_ctx = NULL;
    if (g_dir[0]) {
        char path[512];
        snprintf(path, sizeof path, "%s/config.json", g_dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
        unlink(path);
        CHECK(rmdir(g_dir) == 0);
    }
}

VT_MAIN(TH_CASE(params_init_matches_reference), TH_CASE(params_save_load), TH_CASE(bert_fp32_every_preset),
        TH_CASE(roberta_fp32_every_preset), TH_CASE(f16_weights), TH_CASE(batch_shape_change),
        TH_CASE(over_budget), TH_CASE(dropout_steps),
        TH_CASE(errors_are_reported), TH_CASE(teardown))
