/* Activation checkpointing in the GPU decoder (decoder_options.
 * checkpoint_activations): a training pass that keeps only each layer's
 * output and recomputes the rest layer by layer in the backward gives the
 * same loss, logits and gradients as one that keeps everything, bit for
 * bit (the same kernels on the same inputs), for 4-layer GPT-2 and LLaMA
 * models with LoRA, plain and reparameterised prefixes, MAM, sequential,
 * gated and per-head adapters and full fine-tuning; the recording replayed
 * with a second batch; with dropout on, the recomputed layers draw the
 * forward's masks. The planned activations pool shrinks by exactly
 * (layers − 1) layers' worth of shared buffers (the encoder's too), and the
 * pool holds what the plan says. A checkpointing decoder cannot feed the generator. */
#include "decoder_lm.h"
#include "reference/decoder.h"
#include "dectest.h"
#include "kerneltest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* GPT-2 d 16, 2 heads, FFN 24; LLaMA d 16, 4 heads over 2 kv heads, FFN 20,
 * untied. %d: the layers. */
static const char *const configs[] = {
    "{\"model_type\":\"gpt2\",\"vocab_size\":40,\"n_embd\":16,\"n_layer\":%d,\"n_head\":2,\"n_inner\":24,"
    "\"n_positions\":16,\"layer_norm_epsilon\":1e-5}",
    "{\"model_type\":\"llama\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":%d,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":20,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":100.0,\"tie_word_embeddings\":false,\"attention_dropout\":0.2}",
};
/* Set by the dropout case: both decoders drop (GPT-2's default 0.1 at every
 * site, LLaMA's attention 0.2), so the recomputed layers must draw the
 * forward's masks. */
static bool g_dropout;
enum { GPT2, LLAMA, FAMILIES };
static const char *const family_names[] = {"gpt2", "llama"};

enum { B = 2, T = 6, N = B * T, V = 40, D = 16 };

static vp_context *g_ctx;
static char g_dir[256];

static bool setup(void) {
    if (!g_ctx) g_ctx = vt_context(NULL);
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/vkpeft-test-decoder-ck-XXXXXX");
        if (!CHECK(mkdtemp(g_dir) != NULL)) g_dir[0] = 0;
    }
    return g_ctx && g_dir[0];
}

struct batch {
    int32_t ids[N];
    uint8_t mask[N], loss_mask[N];
};

/* Lengths 6, 4 or 5, 6; the second row's loss from token 2 on. */
static void batch_make(struct batch *b, int which) {
    const int lens[2][B] = {{6, 4}, {5, 6}};
    uint64_t st = 31 + (uint64_t)which;
    for (int s = 0; s < B; s++)
        for (int t = 0; t < T; t++) {
            const int n = s * T + t;
            b->mask[n] = t < lens[which][s];
            b->ids[n] = b->mask[n] ? (int32_t)(th_rand_u64(&st) % V) : 0;
            b->loss_mask[n] = s == 0 || t >= 2;
        }
}

/* A model folder of `layers` layers written from the reference's random
 * weights, and the reference (its delta tensors randomised, zero-initialised
 * ones included, so every gradient is non-trivial). */
static struct refd *model_make(int family, int layers, const struct delta_spec *spec) {
    char config[512];
    snprintf(config, sizeof config, configs[family], layers);
    struct model_arch arch;
    if (!CHECKF(model_arch_parse(config, strlen(config), "config.json", &arch) == VP_OK, "%s", vp_last_error()))
        return NULL;
    const struct refd_options ropt = {.seed = 5 + (uint64_t)family, .weight_std = 0.3, .randomise_zero_init = true};
    struct refd *m = NULL;
    bool ok = CHECKF(refd_create(&m, &arch, spec, &ropt) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    if (ok && !dectest_write_model(m, g_dir, config)) {
        refd_destroy(m);
        m = NULL;
    }
    return ok ? m : NULL;
}

static struct decoder *decoder_make(const struct refd *m, const struct delta_spec *spec, bool checkpoint,
                                    const char *what) {
    const struct decoder_options opt = {.storage = ENCODER_STORAGE_F32, .checkpoint_activations = checkpoint,
                                        .seed = 99, .dropout = g_dropout};
    struct decoder *g = NULL;
    if (!CHECKF(decoder_create(g_ctx, g_dir, spec, &opt, B, T, &g) == VP_OK, "%s: %s", what, vp_last_error()))
        return NULL;
    for (int k = 0; k < refd_tensor_count((struct refd *)m); k++) {
        const struct refm_tensor *t = refd_tensor_at((struct refd *)m, k);
        if (!t->grad) continue;
        float *f = malloc(t->n * sizeof *f);
        for (size_t i = 0; i < t->n; i++) f[i] = (float)t->data[i];
        CHECKF(decoder_tensor_write(g, t->name, f, t->n) == VP_OK, "%s: %s", what, vp_last_error());
        free(f);
    }
    return g;
}

/* One training pass on both decoders: loss, logits and every gradient
 * compared bit for bit. */
static void compare_pass(struct decoder *plain, struct decoder *ck, const struct refd *m, const struct batch *b,
                         uint32_t step, const char *what) {
    const struct decoder_batch db = {b->ids, b->mask, b->loss_mask};
    struct decoder *gs[2] = {plain, ck};
    for (int i = 0; i < 2; i++) decoder_set_step(gs[i], step);
    for (int i = 0; i < 2; i++)
        if (!CHECKF(decoder_write_batch(gs[i], &db) == VP_OK && decoder_zero_grads(gs[i]) == VP_OK &&
                        decoder_run(gs[i], DECODER_PASS_TRAIN) == VP_OK,
                    "%s: %s", what, vp_last_error()))
            return;
    float loss[2], *logits[2];
    for (int i = 0; i < 2; i++) {
        logits[i] = malloc((size_t)N * V * sizeof *logits[i]);
        decoder_loss(gs[i], &loss[i], NULL);
        decoder_logits(gs[i], logits[i]);
    }
    CHECKF(memcmp(&loss[0], &loss[1], sizeof loss[0]) == 0, "%s: loss %.9g without checkpointing, %.9g with",
           what, loss[0], loss[1]);
    CHECKF(memcmp(logits[0], logits[1], (size_t)N * V * 4) == 0, "%s: the logits differ", what);
    free(logits[0]);
    free(logits[1]);
    int compared = 0;
    for (int k = 0; k < refd_tensor_count((struct refd *)m); k++) {
        const struct refm_tensor *t = refd_tensor_at((struct refd *)m, k);
        if (!t->grad) continue;
        float *g0 = malloc(t->n * sizeof *g0), *g1 = malloc(t->n * sizeof *g1);
        bool read = CHECKF(decoder_grad_read(plain, t->name, g0, t->n) == VP_OK &&
                               decoder_grad_read(ck, t->name, g1, t->n) == VP_OK,
                           "%s: %s", what, vp_last_error());
        if (read) dectest_check_same_grad(g0, g1, t->n, what, t->name, true);
        compared++;
        free(g0);
        free(g1);
    }
    CHECKF(compared > 0, "%s: no trainable tensor", what);
}

struct spec_case {
    const char *label, *preset, *json;
};

static void same_gradients(int family, const struct spec_case *c) {
    struct delta_spec spec = {0};
    if (c->preset && !CHECKF(delta_spec_preset(c->preset, &spec) == VP_OK, "%s", vp_last_error())) return;
    if (c->json && !CHECKF(delta_spec_parse(c->json, strlen(c->json), c->label, &spec) == VP_OK, "%s",
                           vp_last_error()))
        return;
    if (!setup()) return;
    char what[128];
    snprintf(what, sizeof what, "%s %s", family_names[family], c->label);
    struct refd *m = model_make(family, 4, &spec);
    if (!m) return;
    struct decoder *plain = decoder_make(m, &spec, false, what), *ck = plain ? decoder_make(m, &spec, true, what) : NULL;
    if (ck) {
        struct batch b0, b1;
        batch_make(&b0, 0);
        batch_make(&b1, 1);
        compare_pass(plain, ck, m, &b0, 0, what);
        compare_pass(plain, ck, m, &b1, 1, what); /* the recordings replayed (dropout: re-recorded) */
    }
    decoder_destroy(ck);
    decoder_destroy(plain);
    refd_destroy(m);
}

static const struct spec_case lora_all = {
    "lora every site", NULL,
    "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4},"
    "{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2},{\"kind\":\"lora\",\"at\":\"v\",\"rank\":1},"
    "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"alpha\":3},{\"kind\":\"lora\",\"at\":\"up\",\"rank\":3},"
    "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":8,\"layers\":[1,3]}]}"};
static const struct spec_case prefixes = {
    "prefixes (plain + reparam)", NULL,
    "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":0,\"layers\":[0,2]},"
    "{\"kind\":\"prefix\",\"length\":3,\"reparam\":4}]}"};
static const struct spec_case mam = {"mam", "mam:l=2,r=3,s=2", NULL};
static const struct spec_case adapters = {
    "sequential, gated and per-head adapters", NULL,
    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":3,\"act\":\"gelu\"},"
    "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,\"per_head\":true,"
    "\"compose\":\"gated\",\"act\":\"gelu\",\"layers\":[1,2]},{\"kind\":\"adapter\",\"at\":\"ffn\","
    "\"insert\":\"sequential\",\"bottleneck\":2,\"compose\":\"gated\"},{\"kind\":\"adapter\",\"at\":\"ffn\","
    "\"insert\":\"parallel\",\"bottleneck\":4,\"compose\":\"scale\",\"scale\":2,\"layers\":[3]}]}"};
static const struct spec_case full = {"full", "full", NULL};

static void lora_same_gradients(void) {
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &lora_all);
}
static void prefix_same_gradients(void) {
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &prefixes);
}
static void mam_same_gradients(void) {
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &mam);
}
static void adapters_same_gradients(void) {
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &adapters);
}
static void full_same_gradients(void) { same_gradients(GPT2, &full); }
static void dropout_same_gradients(void) {
    g_dropout = true;
    for (int f = 0; f < FAMILIES; f++) same_gradients(f, &mam);
    same_gradients(GPT2, &full);
    same_gradients(GPT2, &adapters); /* the adapters drop at GPT-2's resid_pdrop */
    g_dropout = false;
}

/* The activations pool for 4 and 8 layers, with and without, for parallel
 * adapters (per-layer bottleneck buffers) in every layer: a layer without
 * checkpointing costs P bytes, with it one (N,d) f32 output (aligned), and
 * the shared set is one layer's P less that output. So plain(8) − plain(4)
 * = 4·P, ck(8) − ck(4) = 4·out, and plain(L) − ck(L) = (L − 1)·(P − out). */
static void plan_shrinks(void) {
    struct delta_spec spec;
    if (!CHECK(delta_spec_preset("pa:r=3", &spec) == VP_OK) || !setup()) return;
    const uint64_t align = vk_pool_alignment(g_ctx);
    const uint64_t out = ((uint64_t)N * D * 4 + align - 1) / align * align;
    for (int f = 0; f < FAMILIES; f++) {
        uint64_t plain[2] = {0}, ck[2] = {0};
        for (int i = 0; i < 2; i++) {
            const int layers = 4 + 4 * i;
            struct refd *m = model_make(f, layers, &spec);
            struct decoder *g = NULL;
            if (m && CHECKF(decoder_open(g_ctx, g_dir, &spec, NULL, &g) == VP_OK, "%s", vp_last_error())) {
                CHECK(decoder_plan_activations(g, B, T, false, &plain[i]) == VP_OK);
                CHECK(decoder_plan_activations(g, B, T, true, &ck[i]) == VP_OK);
                uint64_t bytes[VP_POOL_COUNT];
                CHECK(decoder_plan(g, B, T, bytes) == VP_OK && bytes[VP_POOL_ACTIVATIONS] == plain[i]);
            }
            decoder_destroy(g);
            refd_destroy(m);
        }
        const uint64_t per_layer = (plain[1] - plain[0]) / 4;
        th_diag("%s, pa, batch %d x %d: activations 4 layers %llu bytes, checkpointed %llu; 8 layers %llu, "
                "checkpointed %llu", family_names[f], B, T, (unsigned long long)plain[0], (unsigned long long)ck[0],
                (unsigned long long)plain[1], (unsigned long long)ck[1]);
        CHECKF(plain[1] - plain[0] == 4 * per_layer && per_layer > 4 * out, "%s: %llu bytes per layer", family_names[f],
               (unsigned long long)per_layer);
        CHECKF(ck[1] - ck[0] == 4 * out, "%s: checkpointed, 4 more layers add %llu bytes, want 4 outputs (%llu)",
               family_names[f], (unsigned long long)(ck[1] - ck[0]), (unsigned long long)(4 * out));
        for (int i = 0; i < 2; i++) {
            const uint64_t layers = 4 + 4 * (uint64_t)i;
            CHECKF(plain[i] - ck[i] == (layers - 1) * (per_layer - out), "%s, %llu layers: checkpointing saves %llu "
                   "bytes, want %llu", family_names[f], (unsigned long long)layers,
                   (unsigned long long)(plain[i] - ck[i]), (unsigned long long)((layers - 1) * (per_layer - out)));
        }
    }
}

/* The encoder's plan (from config.json alone) shrinks by the same rule:
 * plain(8) − plain(4) = 4·P, ck(8) − ck(4) = 4·out, plain(L) − ck(L) =
 * (L − 1)·(P − out), for a RoBERTa-shaped model with parallel adapters. */
static void encoder_plan_shrinks(void) {
    struct delta_spec spec;
    if (!CHECK(delta_spec_preset("pa:r=3", &spec) == VP_OK) || !setup()) return;
    const uint64_t align = vk_pool_alignment(g_ctx);
    const uint64_t out = ((uint64_t)N * D * 4 + align - 1) / align * align;
    uint64_t plain[2] = {0}, ck[2] = {0};
    for (int i = 0; i < 2; i++) {
        char config[512];
        snprintf(config, sizeof config, "{\"model_type\":\"roberta\",\"vocab_size\":50,\"hidden_size\":%d,"
                 "\"num_hidden_layers\":%d,\"num_attention_heads\":2,\"intermediate_size\":32,"
                 "\"max_position_embeddings\":20,\"pad_token_id\":1,\"num_labels\":3}", D, 4 + 4 * i);
        struct model_arch arch;
        if (!CHECKF(model_arch_parse(config, strlen(config), "config.json", &arch) == VP_OK, "%s", vp_last_error()))
            return;
        CHECK(encoder_plan_arch_activations(g_ctx, &arch, &spec, ENCODER_STORAGE_F32, B, T, false, &plain[i]) == VP_OK);
        CHECK(encoder_plan_arch_activations(g_ctx, &arch, &spec, ENCODER_STORAGE_F32, B, T, true, &ck[i]) == VP_OK);
        model_arch_finish(&arch);
    }
    const uint64_t per_layer = (plain[1] - plain[0]) / 4;
    th_diag("roberta, pa, batch %d x %d: activations 4 layers %llu bytes, checkpointed %llu; 8 layers %llu, "
            "checkpointed %llu", B, T, (unsigned long long)plain[0], (unsigned long long)ck[0],
            (unsigned long long)plain[1], (unsigned long long)ck[1]);
    CHECKF(plain[1] - plain[0] == 4 * per_layer && per_layer > 4 * out, "%llu bytes per layer",
           (unsigned long long)per_layer);
    CHECKF(ck[1] - ck[0] == 4 * out, "checkpointed, 4 more layers add %llu bytes, want %llu",
           (unsigned long long)(ck[1] - ck[0]), (unsigned long long)(4 * out));
    for (int i = 0; i < 2; i++)
        CHECKF(plain[i] - ck[i] == (uint64_t)(3 + 4 * i) * (per_layer - out), "%d layers: saves %llu bytes", 4 + 4 * i,
               (unsigned long long)(plain[i] - ck[i]));
}

/* The pool holds the checkpointed plan; the generator refuses the decoder. */
static void load_matches_plan(void) {
    struct delta_spec spec;
    if (!CHECK(delta_spec_preset("lora:r=2", &spec) == VP_OK) || !setup()) return;
    struct refd *m = model_make(LLAMA, 4, &spec);
    const struct decoder_options opt = {.storage = ENCODER_STORAGE_F32, .checkpoint_activations = true};
    struct decoder *g = NULL;
    uint64_t plan[VP_POOL_COUNT];
    vp_pool_stats before, after;
    bool ok = m && CHECKF(decoder_open(g_ctx, g_dir, &spec, &opt, &g) == VP_OK, "%s", vp_last_error()) &&
              CHECK(decoder_plan(g, B, T, plan) == VP_OK);
    if (ok) vp_pool_stats_get(g_ctx, VP_POOL_ACTIVATIONS, &before);
    if (ok && CHECKF(decoder_load(g, B, T) == VP_OK, "%s", vp_last_error())) {
        vp_pool_stats_get(g_ctx, VP_POOL_ACTIVATIONS, &after);
        CHECKF(after.in_use - before.in_use == plan[VP_POOL_ACTIVATIONS], "activations pool holds %llu bytes, the "
               "plan says %llu", (unsigned long long)(after.in_use - before.in_use),
               (unsigned long long)plan[VP_POOL_ACTIVATIONS]);
        const struct decoder_gen_shape sh = {.batch = 1, .prompt_len = T, .rows = 1, .max_len = T + 2};
        struct decoder_gen *gen = NULL;
        CHECK(decoder_gen_create(g, &sh, &gen) == VP_ERROR_INVALID_ARGUMENT && gen == NULL);
        th_diag("message: %s", vp_last_error());
    }
    decoder_destroy(g);
    refd_destroy(m);
}

static void teardown(void) {
    vp_context_destroy(g_ctx);
    g_ctx = NULL;
    dectest_remove_model(g_dir);
}

VT_MAIN(TH_CASE(lora_same_gradients), TH_CASE(prefix_same_gradients), TH_CASE(mam_same_gradients),
        TH_CASE(adapters_same_gradients), TH_CASE(full_same_gradients), TH_CASE(dropout_same_gradients),
        TH_CASE(plan_shrinks), TH_CASE(encoder_plan_shrinks),
        TH_CASE(load_matches_plan), TH_CASE(teardown))
