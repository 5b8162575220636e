/* Activation checkpointing in the GPU encoder-decoder (seq2seq_options.
 * checkpoint_activations): a training pass that keeps only each layer's
 * output and recomputes the rest layer by layer in the backward (decoder
 * stack first, then the encoder's) gives the same loss, logits and
 * gradients as one that keeps everything, bit for bit (the same kernels on
 * the same inputs), on tiny 3 + 3-layer BART (post-LN) and mBART (pre-LN,
 * final norms, untied head) models with LoRA at every site, plain and
 * reparameterised prefixes in all three kinds of attention, PA, MAM,
 * sequential / gated / per-head adapters and (BART) full fine-tuning; the
 * recording replayed with a second batch of other lengths; with dropout on
 * at every site (two steps), the recomputed layers draw the forward's
 * masks. The planned
 * activations pool shrinks by exactly (layers − 1) × (a layer's
 * activations − its output) per stack, the pool holds what the plan says,
 * and a checkpointing model's generator steps give the plain model's
 * logits bit for bit. */
#include "seq2seq_lm.h"
#include "reference/seq2seq.h"
#include "dectest.h"
#include "kerneltest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* test_seq2seq.c's tiny models with %d encoder and %d decoder layers. */
static const char *const configs[] = {
    "{\"model_type\":\"bart\",\"vocab_size\":20,\"d_model\":8,\"encoder_layers\":%d,\"decoder_layers\":%d,"
    "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":12,\"decoder_ffn_dim\":12,"
    "\"max_position_embeddings\":16,\"activation_function\":\"gelu\",\"scale_embedding\":false,"
    "\"pad_token_id\":1,\"bos_token_id\":0,\"eos_token_id\":2,\"decoder_start_token_id\":2}",
    "{\"model_type\":\"mbart\",\"vocab_size\":20,\"d_model\":8,\"encoder_layers\":%d,\"decoder_layers\":%d,"
    "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":12,\"decoder_ffn_dim\":10,"
    "\"max_position_embeddings\":16,\"activation_function\":\"gelu\",\"scale_embedding\":true,"
    "\"tie_word_embeddings\":false,\"pad_token_id\":1,\"bos_token_id\":0,\"eos_token_id\":2,"
    "\"decoder_start_token_id\":2,\"forced_bos_token_id\":5}",
};
enum { BART, MBART, FAMILIES };
static const char *const family_names[] = {"bart", "mbart"};

enum { B = 2, S = 6, T = 5, NS = B * S, NT = B * T, V = 20, D = 8 };

/* Set by the dropout case: both models drop at p 0.2 everywhere. */
static bool g_dropout;

static vp_context *g_ctx;
static char g_dir[256];

static bool setup(void) {
    if (!g_ctx) g_ctx = vt_context(NULL);
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/vkpeft-test-seq2seq-ck-XXXXXX");
        if (!CHECK(mkdtemp(g_dir) != NULL)) g_dir[0] = 0;
    }
    return g_ctx && g_dir[0];
}

struct batch {
    int32_t ids[NS], dec_ids[NT], labels[NT];
    uint8_t mask[NS], dec_mask[NT];
};

/* Source lengths 6, 4 / 3, 6; targets 5, 3 / 4, 5; labels -100 at padding. */
static void batch_make(struct batch *b, int which) {
    const int src_len[2][B] = {{6, 4}, {3, 6}}, tgt_len[2][B] = {{5, 3}, {4, 5}};
    uint64_t st = 77 + (uint64_t)which;
    for (int s = 0; s < B; s++) {
        for (int t = 0; t < S; t++) {
            const int n = s * S + t;
            b->mask[n] = t < src_len[which][s];
            b->ids[n] = b->mask[n] ? (int32_t)(3 + th_rand_u64(&st) % (V - 3)) : 1;
        }
        for (int t = 0; t < T; t++) {
            const int n = s * T + t;
            b->dec_mask[n] = t < tgt_len[which][s];
            b->labels[n] = b->dec_mask[n] ? (int32_t)(3 + th_rand_u64(&st) % (V - 3)) : -100;
            b->dec_ids[n] = !b->dec_mask[n] ? 1 : t == 0 ? 2 : b->labels[n - 1];
        }
    }
}

/* A model folder (le + ld layers) written from the reference's random
 * weights, and the reference (its delta tensors randomised, zero-initialised
 * ones included, so every gradient is non-trivial). */
static struct refs *model_make(int family, int le, int ld, const struct delta_spec *spec) {
    char config[1024];
    snprintf(config, sizeof config, configs[family], le, ld);
    struct model_arch arch;
    if (!CHECKF(model_arch_parse(config, strlen(config), "config.json", &arch) == VP_OK, "%s", vp_last_error()))
        return NULL;
    const struct refs_options ropt = {.seed = 13 + (uint64_t)family, .weight_std = 0.3, .randomise_zero_init = true,
                                      .label_smoothing = 0.1};
    struct refs *m = NULL;
    bool ok = CHECKF(refs_create(&m, &arch, spec, &ropt) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    if (ok && !dectest_write_tensors(&m->tensors, g_dir, config)) {
        refs_destroy(m);
        m = NULL;
    }
    return ok ? m : NULL;
}

static struct seq2seq *model_load(struct refs *m, const struct delta_spec *spec, bool checkpoint, int rows, int T_,
                                  const char *what) {
    const struct seq2seq_options opt = {.storage = ENCODER_STORAGE_F32, .label_smoothing = 0.1,
                                        .checkpoint_activations = checkpoint, .seed = 5, .dropout = g_dropout,
                                        .dropout_p = 0.2};
    struct seq2seq *g = NULL;
    if (!CHECKF(seq2seq_create(g_ctx, g_dir, spec, &opt, rows, S, T_, &g) == VP_OK, "%s: %s", what, vp_last_error()))
        return NULL;
    for (int k = 0; k < refs_tensor_count(m); k++) {
        const struct refm_tensor *t = refs_tensor_at(m, k);
        if (!t->grad) continue;
        float *f = malloc(t->n * sizeof *f);
        for (size_t i = 0; i < t->n; i++) f[i] = (float)t->data[i];
        CHECKF(seq2seq_tensor_write(g, t->name, f, t->n) == VP_OK, "%s: %s", what, vp_last_error());
        free(f);
    }
    return g;
}

/* One training pass on both models: loss, logits and every gradient
 * compared bit for bit. */
static void compare_pass(struct seq2seq *plain, struct seq2seq *ck, struct refs *m, const struct batch *b,
                         uint32_t step, const char *what) {
    const struct seq2seq_batch sb = {b->ids, b->mask, b->dec_ids, b->dec_mask, b->labels};
    struct seq2seq *gs[2] = {plain, ck};
    for (int i = 0; i < 2; i++) seq2seq_set_step(gs[i], step);
    for (int i = 0; i < 2; i++)
        if (!CHECKF(seq2seq_write_batch(gs[i], &sb) == VP_OK && seq2seq_zero_grads(gs[i]) == VP_OK &&
                        seq2seq_run(gs[i], SEQ2SEQ_PASS_TRAIN) == VP_OK,
                    "%s: %s", what, vp_last_error()))
            return;
    float loss[2], *logits[2];
    for (int i = 0; i < 2; i++) {
        logits[i] = malloc((size_t)NT * V * sizeof *logits[i]);
        seq2seq_loss(gs[i], &loss[i], NULL);
        seq2seq_logits(gs[i], logits[i]);
    }
    CHECKF(memcmp(&loss[0], &loss[1], sizeof loss[0]) == 0, "%s: loss %.9g without checkpointing, %.9g with", what,
           loss[0], loss[1]);
    CHECKF(memcmp(logits[0], logits[1], (size_t)NT * V * 4) == 0, "%s: the logits differ", what);
    free(logits[0]);
    free(logits[1]);
    int compared = 0;
    for (int k = 0; k < refs_tensor_count(m); k++) {
        const struct refm_tensor *t = refs_tensor_at(m, k);
        if (!t->grad) continue;
        float *g0 = malloc(t->n * sizeof *g0), *g1 = malloc(t->n * sizeof *g1);
        bool read = CHECKF(seq2seq_grad_read(plain, t->name, g0, t->n) == VP_OK &&
                               seq2seq_grad_read(ck, t->name, g1, t->n) == VP_OK,
                           "%s: %s", what, vp_last_error());
        /* a key projection's bias has gradient Σ_keys dk = 0 (test_seq2seq.c's grad_scale) */
        if (read) dectest_check_same_grad(g0, g1, t->n, what, t->name, !strstr(t->name, "k_proj.bias"));
        compared++;
        free(g0);
        free(g1);
    }
    CHECKF(compared > 0, "%s: no trainable tensor", what);
}

struct spec_case {
    const char *label, *preset, *json;
};

static bool spec_of(const struct spec_case *c, struct delta_spec *spec) {
    *spec = (struct delta_spec){0};
    if (c->preset && !CHECKF(delta_spec_preset(c->preset, spec) == VP_OK, "%s", vp_last_error())) return false;
    return !c->json ||
           CHECKF(delta_spec_parse(c->json, strlen(c->json), c->label, spec) == VP_OK, "%s", vp_last_error());
}

static void same_gradients(int family, const struct spec_case *c) {
    struct delta_spec spec;
    if (!spec_of(c, &spec) || !setup()) return;
    char what[128];
    snprintf(what, sizeof what, "%s %s", family_names[family], c->label);
    struct refs *m = model_make(family, 3, 3, &spec);
    if (!m) return;
    struct seq2seq *plain = model_load(m, &spec, false, B, T, what);
    struct seq2seq *ck = plain ? model_load(m, &spec, true, B, T, what) : NULL;
    if (ck) {
        struct batch b0, b1;
        batch_make(&b0, 0);
        batch_make(&b1, 1);
        compare_pass(plain, ck, m, &b0, 0, what);
        compare_pass(plain, ck, m, &b1, 1, what); /* the recordings replayed (dropout: re-recorded) */
    }
    seq2seq_destroy(ck);
    seq2seq_destroy(plain);
    refs_destroy(m);
}

static const struct spec_case lora_all = {
    "lora every site", NULL,
    "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4},"
    "{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"alpha\":2},{\"kind\":\"lora\",\"at\":\"v\",\"rank\":1},"
    "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"alpha\":3},"
    "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":3,\"alpha\":6,\"stack\":[\"decoder\"]},"
    "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":8,\"layers\":[1,2],\"stack\":[\"encoder\"]}]}"};
static const struct spec_case prefixes = {
    "prefixes (reparam + plain)", NULL,
    "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":5},"
    "{\"kind\":\"prefix\",\"length\":1,\"reparam\":0,\"layers\":[0,2],\"stack\":[\"cross\",\"encoder\"]}]}"};
/* ReLU bottlenecks wide enough (or GELU ones) that none is dead for a whole
 * batch with these random weights: every gradient is non-zero. */
static const struct spec_case pa = {"pa", "pa:r=16", NULL};
static const struct spec_case mam = {"mam", "mam:l=2,r=3,s=2", NULL};
static const struct spec_case adapters = {
    "sequential, gated and per-head adapters", NULL,
    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":2,\"act\":\"gelu\"},"
    "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\",\"bottleneck\":3,\"compose\":\"gated\","
    "\"act\":\"gelu\"},"
    "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,\"per_head\":true,"
    "\"act\":\"gelu\",\"layers\":[1,2]}]}"};
static const struct spec_case full = {"full", "full", NULL};

static void lora_same_gradients(void) {
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &lora_all);
}
static void prefix_same_gradients(void) {
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &prefixes);
}
static void pa_same_gradients(void) {
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &pa);
}
static void mam_same_gradients(void) {
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &mam);
}
static void adapters_same_gradients(void) {
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &adapters);
}
static void full_same_gradients(void) { same_gradients(BART, &full); }
static void dropout_same_gradients(void) {
    g_dropout = true;
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &mam);
    same_gradients(MBART, &adapters); /* the adapters drop at the hidden dropout */
    same_gradients(BART, &full);
    g_dropout = false;
}

/* The activations pool for (2,2), (4,2) and (2,4) layers, with and without
 * checkpointing, for parallel adapters (per-block bottleneck buffers): an
 * encoder layer without checkpointing costs Pe bytes, a decoder layer Pd;
 * with it one output, (N,d) f32 aligned, Oe = (B·S, d) and Od = (B·T, d).
 * So plain(4,2) − plain(2,2) = 2·Pe, ck(4,2) − ck(2,2) = 2·Oe (likewise the
 * decoder), and plain(Le,Ld) − ck(Le,Ld) = (Le − 1)(Pe − Oe) + (Ld − 1)(Pd − Od). */
static void plan_shrinks(void) {
    struct delta_spec spec;
    if (!CHECK(delta_spec_preset("pa:r=3", &spec) == VP_OK) || !setup()) return;
    const uint64_t align = vk_pool_alignment(g_ctx);
    const uint64_t oe = ((uint64_t)NS * D * 4 + align - 1) / align * align;
    const uint64_t od = ((uint64_t)NT * D * 4 + align - 1) / align * align;
    static const int shapes[3][2] = {{2, 2}, {4, 2}, {2, 4}};
    for (int f = 0; f < FAMILIES; f++) {
        uint64_t plain[3] = {0}, ck[3] = {0};
        for (int i = 0; i < 3; i++) {
            struct refs *m = model_make(f, shapes[i][0], shapes[i][1], &spec);
            struct seq2seq *g = NULL;
            if (m && CHECKF(seq2seq_open(g_ctx, g_dir, &spec, NULL, &g) == VP_OK, "%s", vp_last_error())) {
                CHECK(seq2seq_plan_activations(g, B, S, T, false, &plain[i]) == VP_OK);
                CHECK(seq2seq_plan_activations(g, B, S, T, true, &ck[i]) == VP_OK);
                uint64_t bytes[VP_POOL_COUNT];
                CHECK(seq2seq_plan(g, B, S, T, bytes) == VP_OK && bytes[VP_POOL_ACTIVATIONS] == plain[i]);
            }
            seq2seq_destroy(g);
            refs_destroy(m);
        }
        const uint64_t pe = (plain[1] - plain[0]) / 2, pd = (plain[2] - plain[0]) / 2;
        th_diag("%s, pa, batch %d x (%d, %d): activations (2,2) %llu bytes, checkpointed %llu; (4,2) %llu / %llu; "
                "(2,4) %llu / %llu", family_names[f], B, S, T, (unsigned long long)plain[0], (unsigned long long)ck[0],
                (unsigned long long)plain[1], (unsigned long long)ck[1], (unsigned long long)plain[2],
                (unsigned long long)ck[2]);
        CHECKF(plain[1] - plain[0] == 2 * pe && pe > 4 * oe && plain[2] - plain[0] == 2 * pd && pd > 4 * od,
               "%s: %llu bytes per encoder layer, %llu per decoder layer", family_names[f], (unsigned long long)pe,
               (unsigned long long)pd);
        CHECKF(ck[1] - ck[0] == 2 * oe, "%s: checkpointed, 2 more encoder layers add %llu bytes, want %llu",
               family_names[f], (unsigned long long)(ck[1] - ck[0]), (unsigned long long)(2 * oe));
        CHECKF(ck[2] - ck[0] == 2 * od, "%s: checkpointed, 2 more decoder layers add %llu bytes, want %llu",
               family_names[f], (unsigned long long)(ck[2] - ck[0]), (unsigned long long)(2 * od));
        for (int i = 0; i < 3; i++) {
            const uint64_t le = (uint64_t)shapes[i][0], ld = (uint64_t)shapes[i][1];
            const uint64_t want = (le - 1) * (pe - oe) + (ld - 1) * (pd - od);
            CHECKF(plain[i] - ck[i] == want, "%s, (%llu,%llu) layers: checkpointing saves %llu bytes, want %llu",
                   family_names[f], (unsigned long long)le, (unsigned long long)ld,
                   (unsigned long long)(plain[i] - ck[i]), (unsigned long long)want);
        }
    }
}

/* The pool holds the checkpointed plan; the checkpointing model generates:
 * its cached steps (rows swapped on odd steps) give the plain model's
 * logits bit for bit, with prefixes and LoRA on cross-attention's k and v
 * (each decoder layer's cross K/V kept by the generator, which plans and
 * takes more than the plain model's: seq2seq_gen_plan's bytes). */
static void load_and_generate(void) {
    struct delta_spec spec;
    static const struct spec_case c = {
        "lora + prefix", NULL,
        "{\"modules\":[{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2},{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2},"
        "{\"kind\":\"prefix\",\"length\":2,\"reparam\":0}]}"};
    if (!spec_of(&c, &spec) || !setup()) return;
    for (int f = 0; f < FAMILIES; f++) {
        struct refs *m = model_make(f, 3, 3, &spec);
        if (!m) continue;
        const struct seq2seq_options opt = {.storage = ENCODER_STORAGE_F32, .checkpoint_activations = true};
        struct seq2seq *ck = NULL, *plain = NULL;
        uint64_t plan[VP_POOL_COUNT];
        vp_pool_stats before, after;
        bool ok = CHECKF(seq2seq_open(g_ctx, g_dir, &spec, &opt, &ck) == VP_OK, "%s", vp_last_error()) &&
                  CHECK(seq2seq_plan(ck, B, S, T, plan) == VP_OK);
        if (ok) vp_pool_stats_get(g_ctx, VP_POOL_ACTIVATIONS, &before);
        ok = ok && CHECKF(seq2seq_load(ck, B, S, T) == VP_OK, "%s", vp_last_error());
        if (ok) {
            vp_pool_stats_get(g_ctx, VP_POOL_ACTIVATIONS, &after);
            CHECKF(after.in_use - before.in_use == plan[VP_POOL_ACTIVATIONS], "%s: activations pool holds %llu "
                   "bytes, the plan says %llu", family_names[f], (unsigned long long)(after.in_use - before.in_use),
                   (unsigned long long)plan[VP_POOL_ACTIVATIONS]);
        }
        seq2seq_destroy(ck);
        ck = model_load(m, &spec, true, B, T, family_names[f]);
        plain = ck ? model_load(m, &spec, false, B, T, family_names[f]) : NULL;
        struct seq2seq_gen *gen[2] = {NULL, NULL};
        struct batch b;
        batch_make(&b, 0);
        float *logits[2] = {malloc((size_t)T * B * V * 4), malloc((size_t)T * B * V * 4)};
        struct seq2seq *gs[2] = {plain, ck};
        uint64_t gen_plan[2][VP_POOL_COUNT], held[VP_POOL_COUNT];
        for (int i = 0; plain && i < 2; i++) {
            /* each generator takes what seq2seq_gen_plan says */
            const struct seq2seq_gen_shape shape = {B, S, T - 1};
            char what[96];
            snprintf(what, sizeof what, "%s: the %s model's generator", family_names[f], i ? "checkpointing" : "plain");
            ok = CHECKF(seq2seq_gen_plan(gs[i], &shape, gen_plan[i]) == VP_OK, "%s: %s", what, vp_last_error());
            dectest_pools_in_use(g_ctx, held);
            ok = ok && CHECKF(seq2seq_gen_create(gs[i], &gen[i]) == VP_OK &&
                                  seq2seq_gen_sources(gen[i], b.ids, b.mask, B, S) == VP_OK,
                              "%s: %s", family_names[f], vp_last_error());
            ok = ok && dectest_pools_grew_by(g_ctx, held, gen_plan[i], what);
            for (int t = 0; ok && t < T; t++) {
                int32_t parent[B], tokens[B];
                for (int r = 0; r < B; r++) {
                    parent[r] = t % 2 ? B - 1 - r : r;
                    tokens[r] = b.dec_ids[r * T + t];
                }
                ok = CHECKF(seq2seq_gen_step(gen[i], B, t ? parent : NULL, t ? tokens : NULL,
                                             logits[i] + (size_t)t * B * V) == VP_OK,
                            "%s: %s", family_names[f], vp_last_error());
            }
        }
        if (ok && plain)
            CHECKF(memcmp(logits[0], logits[1], (size_t)T * B * V * 4) == 0, "%s: the checkpointing model's "
                   "generator steps differ from the plain model's", family_names[f]);
        if (ok && plain) /* the checkpointing model's generator keeps its own cross K/V */
            CHECKF(gen_plan[1][VP_POOL_ACTIVATIONS] > gen_plan[0][VP_POOL_ACTIVATIONS], "%s: generators plan %llu "
                   "and %llu activation bytes", family_names[f], (unsigned long long)gen_plan[1][VP_POOL_ACTIVATIONS],
                   (unsigned long long)gen_plan[0][VP_POOL_ACTIVATIONS]);
        free(logits[0]);
        free(logits[1]);
        for (int i = 0; i < 2; i++) seq2seq_gen_destroy(gen[i]);
        seq2seq_destroy(plain);
        seq2seq_destroy(ck);
        refs_destroy(m);
    }
}

static void teardown(void) {
    vp_context_destroy(g_ctx);
    g_ctx = NULL;
    if (g_dir[0]) dectest_remove_model(g_dir);
}

VT_MAIN(TH_CASE(lora_same_gradients), TH_CASE(prefix_same_gradients), TH_CASE(pa_same_gradients),
        TH_CASE(mam_same_gradients), TH_CASE(adapters_same_gradients), TH_CASE(full_same_gradients),
        TH_CASE(dropout_same_gradients),
        TH_CASE(plan_shrinks), TH_CASE(load_and_generate), TH_CASE(teardown))
