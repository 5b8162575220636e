/* The GPU decoder (runtime/model/decoder_lm.h) against the double-precision
 * decoder reference (tests/reference/decoder.h) on tiny GPT-2, LLaMA (grouped
 * kv heads, untied head) and Qwen2 (q/k/v biases, one kv head, tied head)
 * models: loss and logits of the forward pass with fp32 and with f16 weight
 * storage, pool bytes equal to the plan, a recording replayed with a new
 * batch, tensors read back by name in the file's layout, and error
 * messages. The model is a real folder (config.json + model.safetensors)
 * written from the reference's random weights, so the loader (GPT-2's
 * Conv1D transposes and c_attn split) is exercised too.
 *
 * Deltas: LoRA at every site, parallel adapters (PA, scaled PA), plain and
 * reparameterised prefixes (PEFT positions), MAM, BitFit and full
 * fine-tuning (tied and untied heads): every trainable gradient after a
 * training pass, twice (the recording replayed with a second batch). */
#include "decoder_lm.h"
#include "reference/decoder.h"
#include "dectest.h"
#include "kerneltest.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Tiny models, 2 layers, vocabulary 40: GPT-2 d 16 with 2 heads, FFN 24;
 * LLaMA d 16 with 4 query heads over 2 kv heads (hd 4), FFN 20, untied;
 * Qwen2 d 12 with 3 query heads over 1 kv head, FFN 16, q/k/v biases, tied. */
static const char *const configs[] = {
    "{\"model_type\":\"gpt2\",\"vocab_size\":40,\"n_embd\":16,\"n_layer\":2,\"n_head\":2,\"n_inner\":24,"
    "\"n_positions\":16,\"layer_norm_epsilon\":1e-5}",
    "{\"model_type\":\"llama\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":20,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":100.0,\"tie_word_embeddings\":false}",
    "{\"model_type\":\"qwen2\",\"vocab_size\":40,\"hidden_size\":12,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":3,\"num_key_value_heads\":1,\"intermediate_size\":16,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":50.0,\"tie_word_embeddings\":true}",
};
enum { GPT2, LLAMA, QWEN2, FAMILIES };
/* The same models with dropout probabilities set apart (a site drawing
 * another's probability fails): GPT-2 embd 0.1, attn 0.2, resid 0.15;
 * LLaMA attention 0.25 (its only site). */
static const char *const dropout_configs[] = {
    "{\"model_type\":\"gpt2\",\"vocab_size\":40,\"n_embd\":16,\"n_layer\":2,\"n_head\":2,\"n_inner\":24,"
    "\"n_positions\":16,\"layer_norm_epsilon\":1e-5,\"embd_pdrop\":0.1,\"attn_pdrop\":0.2,\"resid_pdrop\":0.15}",
    "{\"model_type\":\"llama\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":20,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":100.0,\"tie_word_embeddings\":false,\"attention_dropout\":0.25}",
};
/* Set by the dropout cases: training passes drop on both sides (seed
 * DROPOUT_SEED, step = the batch's index), the eval pass on the GPU does not. */
static bool g_dropout;
enum { DROPOUT_SEED = 1234 };
static const char *config_of(int family) { return g_dropout ? dropout_configs[family] : configs[family]; }
static const char *const family_names[] = {"gpt2", "llama", "qwen2"};

/* ------------------------------------------------------------------------
 * Tolerance
 *
 * Both sides start from the same values: the reference's tensors are
 * rounded to fp32 (and its weight matrices to f16 for the f16 runs) before
 * the GPU model gets them, so the only difference left is fp32 arithmetic
 * against double. A length-K fp32 dot product or sum is off by at most
 * K·u·Σ|terms| (u = 2^-24, Higham's γ_K); the longest reductions of the
 * forward are K = 40 (the cross-entropy's log-sum-exp over the vocabulary;
 * the FFN widths are 16 .. 24, the norms 12 .. 16, the softmax ≤ 6 keys).
 * To first order the relative errors of the ~24 dependent reductions
 * between the input and the loss add (2 layers × 10: norm, q, k, v, scores,
 * softmax·V, o, norm, up/gate, down; then the final norm, the head and the
 * loss), and the norms and the softmax can amplify them by their condition
 * (a few with these weights): 24 · 40 · u · 4 ≈ 2.3e-4, measured normwise
 * per tensor (max|got − want| ≤ TOL · max|want|). A wrong term (a missing
 * bias, a mis-rotated head, a shifted target) is off by ≥ 1e-2 and fails.
 * ------------------------------------------------------------------------ */
#define TOL (24.0 * 40.0 * KT_EPS_F32 * 4.0)
/* Gradients: the backward adds as many dependent reductions again (the
 * head's dx sums over the 40 logits, the weight gradients over the 12 rows,
 * every layer's matmuls, norms, attention and activations): 48 · 40 · u · 4
 * ≈ 4.6e-4, measured normwise per tensor like the forward. */
#define GRAD_TOL (48.0 * 40.0 * KT_EPS_F32 * 4.0)

static vp_context *g_ctx;
static char g_dir[256];

static vp_context *ctx_get(void) {
    if (!g_ctx) g_ctx = vt_context(NULL);
    return g_ctx;
}

static bool make_dir(void) {
    if (g_dir[0]) return true;
    snprintf(g_dir, sizeof g_dir, "/tmp/vkpeft-test-decoder-XXXXXX");
    return CHECK(mkdtemp(g_dir) != NULL);
}

/* ------------------------------------------------------------------------
 * Batches: B = 2, T = 6, right padding, a completion-only loss mask
 * ------------------------------------------------------------------------ */

enum { B = 2, T = 6, N = B * T, V = 40 };

struct batch {
    int32_t ids[N];
    uint8_t mask[N], loss_mask[N];
};

/* Lengths 6, 4 (batch 0) or 5, 6 (batch 1); the second sequence's loss
 * covers tokens from 2 on (a prompt of 2). */
static void batch_make(struct batch *b, int which) {
    const int lens[2][B] = {{6, 4}, {5, 6}};
    uint64_t st = 977 + (uint64_t)which;
    for (int s = 0; s < B; s++)
        for (int t = 0; t < T; t++) {
            int n = s * T + t;
            b->mask[n] = t < lens[which][s];
            b->ids[n] = b->mask[n] ? (int32_t)(th_rand_u64(&st) % V) : 0;
            b->loss_mask[n] = s == 0 || t >= 2;
        }
}

/* ------------------------------------------------------------------------
 * Model folders
 * ------------------------------------------------------------------------ */

static bool parse_arch(int family, struct model_arch *arch) {
    const char *json = config_of(family);
    return CHECKF(model_arch_parse(json, strlen(json), "config.json", arch) == VP_OK, "%s", vp_last_error());
}

/* Weight matrices and tables (2-D) are what the GPU stores in the storage
 * type; norm weights and biases stay f32. */
static void round_reference(struct refd *m, bool f16) {
    for (int k = 0; k < refd_tensor_count(m); k++) {
        struct refm_tensor *t = refd_tensor_at(m, k);
        kt_round(f16 && t->ndim == 2 ? VP_DTYPE_F16 : VP_DTYPE_F32, t->data, t->n);
    }
}

static bool write_model(struct refd *m, int family) { return dectest_write_model(m, g_dir, config_of(family)); }

/* ------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------ */

/* One pass on both sides: loss, scored count and logits; a training pass
 * also every trainable gradient. */
static void compare_forward(struct decoder *g, struct refd *m, const struct batch *b, uint32_t step,
                            const char *what, bool train, double *worst) {
    const struct refd_batch rb = {b->ids, b->mask, b->loss_mask, NULL, B, T};
    m->opt.dropout = g_dropout && train;
    m->opt.dropout_step = step;
    decoder_set_step(g, step);
    double *want = malloc((size_t)N * V * sizeof *want);
    float *got = malloc((size_t)N * V * sizeof *got);
    double want_loss = refd_forward(m, want, &rb);
    if (train) {
        refd_zero_grad(m);
        refd_backward(m);
    }
    const struct decoder_batch db = {b->ids, b->mask, b->loss_mask};
    bool ok = CHECKF(decoder_write_batch(g, &db) == VP_OK, "%s", vp_last_error()) &&
              CHECKF(decoder_zero_grads(g) == VP_OK, "%s", vp_last_error()) &&
              CHECKF(decoder_run(g, train ? DECODER_PASS_TRAIN : DECODER_PASS_EVAL) == VP_OK, "%s: %s", what,
                     vp_last_error());
    if (ok) {
        float loss;
        uint32_t count;
        char label[256];
        decoder_loss(g, &loss, &count);
        decoder_logits(g, got);
        uint32_t scored = 0;
        for (int n = 0; n < N; n++) scored += m->acts.targets[n] != REFM_IGNORE_INDEX;
        CHECKF(count == scored, "%s: %u scored positions, want %u", what, count, scored);
        snprintf(label, sizeof label, "%s: loss", what);
        dectest_check_normwise(&loss, &want_loss, 1, TOL, label, worst, 0.0);
        snprintf(label, sizeof label, "%s: logits", what);
        dectest_check_normwise(got, want, (size_t)N * V, TOL, label, worst, 0.0);
        for (int k = 0; train && k < refd_tensor_count(m); k++) {
            struct refm_tensor *t = refd_tensor_at(m, k);
            if (!t->grad) continue;
            float *gr = malloc(t->n * sizeof *gr);
            snprintf(label, sizeof label, "%s: d %s", what, t->name);
            if (CHECKF(decoder_grad_read(g, t->name, gr, t->n) == VP_OK, "%s: %s", label, vp_last_error()))
                dectest_check_normwise(gr, t->grad, t->n, GRAD_TOL, label, worst, 0.0);
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

static void forward_case(int family, bool f16, const struct spec_case *c) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    struct delta_spec spec = {0};
    if (c && c->preset && !CHECKF(delta_spec_preset(c->preset, &spec) == VP_OK, "%s", vp_last_error())) return;
    if (c && c->json && !CHECKF(delta_spec_parse(c->json, strlen(c->json), c->label, &spec) == VP_OK, "%s",
                                vp_last_error()))
        return;
    if (!ctx || !make_dir() || !parse_arch(family, &arch)) return;
    const struct refd_options ropt = {.seed = 11 + (uint64_t)family, .weight_std = 0.3,
                                      .randomise_zero_init = true, .dropout_seed = DROPOUT_SEED};
    struct refd *m;
    if (!CHECKF(refd_create(&m, &arch, &spec, &ropt) == VP_OK, "%s", vp_last_error())) {
        model_arch_finish(&arch);
        return;
    }
    model_arch_finish(&arch);
    round_reference(m, f16);
    char what[96];
    snprintf(what, sizeof what, "%s%s%s%s", family_names[family], c ? " " : "", c ? c->label : "",
             f16 ? " (f16)" : "");
    const struct decoder_options opt = {.storage = f16 ? ENCODER_STORAGE_F16 : ENCODER_STORAGE_F32,
                                        .seed = DROPOUT_SEED, .dropout = g_dropout};
    struct decoder *g = NULL;
    uint64_t plan[VP_POOL_COUNT];
    vp_pool_stats before[VP_POOL_COUNT], after;
    bool ok = write_model(m, family) &&
              CHECKF(decoder_open(ctx, g_dir, &spec, &opt, &g) == VP_OK, "%s: open: %s", what, vp_last_error()) &&
              CHECKF(decoder_plan(g, B, T, plan) == VP_OK, "%s", vp_last_error());
    for (int p = 0; ok && p < VP_POOL_COUNT; p++) vp_pool_stats_get(ctx, (vp_pool)p, &before[p]);
    ok = ok && CHECKF(decoder_load(g, B, T) == VP_OK, "%s: load: %s", what, vp_last_error());
    if (ok) {
        CHECK(decoder_weight_dtype(g) == (f16 ? VP_DTYPE_F16 : VP_DTYPE_F32));
        for (int p = 0; p < VP_POOL_COUNT; p++) {
            vp_pool_stats_get(ctx, (vp_pool)p, &after);
            CHECKF(after.in_use - before[p].in_use == plan[p], "%s: %s pool holds %llu bytes, the plan says %llu",
                   what, vp_pool_name((vp_pool)p), (unsigned long long)(after.in_use - before[p].in_use),
                   (unsigned long long)plan[p]);
        }
        /* Every trainable tensor of the reference by name. */
        size_t trainable = 0;
        for (int k = 0; k < refd_tensor_count(m); k++) {
            struct refm_tensor *t = refd_tensor_at(m, k);
            if (!t->grad) continue;
            trainable++;
            float *f = malloc(t->n * sizeof *f);
            for (size_t i = 0; i < t->n; i++) f[i] = (float)t->data[i];
            CHECKF(decoder_tensor_write(g, t->name, f, t->n) == VP_OK, "%s: %s", what, vp_last_error());
            free(f);
        }
        CHECKF((size_t)decoder_params(g)->count == trainable, "%s: %d trainable tensors, the reference has %zu",
               what, decoder_params(g)->count, trainable);
        CHECK(delta_params_numel(decoder_params(g)) == refd_trainable_params(m));
        double worst = 0.0;
        struct batch b0, b1;
        batch_make(&b0, 0);
        batch_make(&b1, 1);
        compare_forward(g, m, &b0, 0, what, c != NULL, &worst);
        compare_forward(g, m, &b1, 1, what, c != NULL, &worst); /* replayed with a new batch (dropout: re-recorded) */
        if (g_dropout) compare_forward(g, m, &b0, 1, what, false, &worst); /* evaluation never drops */
        th_diag("%s: worst error %.3f of its tolerance (forward %.3g, gradients %.3g)", what, worst, TOL, GRAD_TOL);
        /* Every tensor reads back by name in the file's layout, exactly
         * (the reference holds the stored values). */
        bool exact = true;
        for (int k = 0; k < refd_tensor_count(m); k++) {
            struct refm_tensor *t = refd_tensor_at(m, k);
            float *v = malloc(t->n * sizeof *v);
            bool read = CHECKF(decoder_tensor_read(g, t->name, v, t->n) == VP_OK, "%s: %s", t->name, vp_last_error());
            for (size_t i = 0; read && i < t->n; i++) exact &= (double)v[i] == t->data[i];
            free(v);
            if (!CHECKF(exact, "%s: %s does not read back as written", what, t->name)) break;
        }
    }
    decoder_destroy(g);
    refd_destroy(m);
}

static const struct spec_case lora_qv = {"lora", "lora:r=2", NULL};
static const struct spec_case lora_all = {
    "lora every site", NULL,
    "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4},"
    "{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"alpha\":2},{\"kind\":\"lora\",\"at\":\"v\",\"rank\":1},"
    "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"alpha\":3},{\"kind\":\"lora\",\"at\":\"up\",\"rank\":3,"
    "\"alpha\":6},{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":8,\"layers\":[1]}]}"};

static const struct spec_case pa = {"pa", "pa:r=3", NULL};
static const struct spec_case scaled_pa = {"scaled-pa", "scaled-pa:r=3,s=4", NULL};
static const struct spec_case adapters_mix = {
    "parallel adapters + lora", NULL,
    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,"
    "\"act\":\"gelu\"},{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":2,"
    "\"act\":\"identity\",\"compose\":\"scale\",\"scale\":2,\"layers\":[1]},"
    "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2,\"alpha\":4,\"layers\":[0]}]}"};

static const struct spec_case prefix = {"prefix (plain)", NULL,
                                        "{\"modules\":[{\"kind\":\"prefix\",\"length\":3,\"reparam\":0}]}"};
static const struct spec_case prefix_two = {
    "two prefixes", NULL,
    "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":0,\"layers\":[1]},"
    "{\"kind\":\"prefix\",\"length\":1,\"reparam\":0}]}"};
static const struct spec_case mam = {
    "mam (plain prefix)", NULL,
    "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":0},{\"kind\":\"adapter\",\"at\":\"ffn\","
    "\"insert\":\"parallel\",\"bottleneck\":3,\"compose\":\"scale\",\"scale\":2}]}"};

static const struct spec_case prefix_reparam = {
    "prefix (reparam)", NULL, "{\"modules\":[{\"kind\":\"prefix\",\"length\":3,\"reparam\":5}]}"};
static const struct spec_case prefix_three = {
    "three prefixes", NULL,
    "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":4,\"layers\":[1]},"
    "{\"kind\":\"prefix\",\"length\":3,\"reparam\":0},{\"kind\":\"prefix\",\"length\":1,\"reparam\":3}]}"};
static const struct spec_case mam_preset = {"mam", "mam:l=2,r=3,s=2", NULL};

static const struct spec_case full = {"full", "full", NULL};
static const struct spec_case adapter = {"adapter", "adapter:r=3", NULL};
static const struct spec_case mh_pa = {"mh-pa", "mh-pa:r=2", NULL};
static const struct spec_case mh_pa_gated = {
    "gated mh-pa + sequential", NULL,
    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,"
    "\"per_head\":true,\"compose\":\"gated\",\"act\":\"gelu\"},{\"kind\":\"adapter\",\"at\":\"attn\","
    "\"insert\":\"sequential\",\"bottleneck\":2,\"per_head\":true,\"act\":\"identity\",\"layers\":[1]}]}"};
static const struct spec_case adapters_seq = {
    "sequential+gated adapters", NULL,
    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":4},"
    "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,\"act\":\"gelu\","
    "\"compose\":\"gated\"},{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\",\"bottleneck\":2,"
    "\"compose\":\"gated\",\"layers\":[1]},{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\","
    "\"bottleneck\":3,\"act\":\"gelu\"},{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\","
    "\"bottleneck\":4,\"compose\":\"scale\",\"scale\":4},"
    "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"alpha\":4,\"layers\":[0]}]}"};
static const struct spec_case bitfit = {"bitfit", "bitfit", NULL};
static const struct spec_case bitfit_lora = {
    "bitfit layer 1 + lora", NULL,
    "{\"modules\":[{\"kind\":\"bitfit\",\"layers\":[1]},{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4}]}"};

static void gpt2_fp32(void) { forward_case(GPT2, false, NULL); }
static void llama_fp32(void) { forward_case(LLAMA, false, NULL); }
static void qwen2_fp32(void) { forward_case(QWEN2, false, NULL); }
static void gpt2_f16(void) { forward_case(GPT2, true, NULL); }
static void llama_f16(void) { forward_case(LLAMA, true, NULL); }
static void lora_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &lora_qv);
}
static void lora_every_site_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &lora_all);
}
static void pa_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &pa);
}
static void scaled_pa_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &scaled_pa);
}
static void adapters_mix_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &adapters_mix);
}
static void prefix_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &prefix);
}
static void prefix_two_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &prefix_two);
}
static void mam_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &mam);
}
static void prefix_reparam_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &prefix_reparam);
}
static void prefix_three_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &prefix_three);
}
static void mam_preset_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &mam_preset);
}
static void full_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &full);
}
static void bitfit_fp32(void) {
    forward_case(GPT2, false, &bitfit);
    forward_case(QWEN2, false, &bitfit);
    forward_case(GPT2, false, &bitfit_lora);
    forward_case(QWEN2, false, &bitfit_lora);
}
static void adapter_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &adapter);
}
static void adapters_seq_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &adapters_seq);
}
static void mh_pa_fp32(void) {
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &mh_pa);
    for (int f = 0; f < FAMILIES; f++) forward_case(f, false, &mh_pa_gated);
}
static void deltas_f16(void) {
    forward_case(GPT2, true, &lora_all);
    forward_case(LLAMA, true, &lora_all);
    forward_case(QWEN2, true, &adapters_mix);
    forward_case(LLAMA, true, &mam);
    forward_case(GPT2, true, &mam_preset);
    forward_case(QWEN2, true, &bitfit_lora); /* f16 frozen weights with trained biases */
}

/* Adapters that drop with their own probability (LLaMA has no hidden
 * dropout to inherit): identity, relu and gelu bottlenecks, per head too. */
static const struct spec_case adapters_dropout = {
    "adapters with their own dropout", NULL,
    "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":2,"
    "\"per_head\":true,\"act\":\"identity\",\"dropout\":0.3},{\"kind\":\"adapter\",\"at\":\"ffn\","
    "\"insert\":\"sequential\",\"bottleneck\":3,\"act\":\"gelu\",\"dropout\":0.2,\"compose\":\"gated\"},"
    "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":4,\"act\":\"identity\","
    "\"dropout\":0.25,\"compose\":\"scale\",\"scale\":2}]}"};

/* Dropout at every site the model has and in the adapters, the same masks
 * on both sides. */
static void dropout_fp32(void) {
    g_dropout = true;
    for (int f = GPT2; f <= LLAMA; f++) {
        forward_case(f, false, &lora_all);
        forward_case(f, false, &mam);
        forward_case(f, false, &full); /* the embeddings' dropout reaches their gradient */
        forward_case(f, false, &adapters_seq);
        forward_case(f, false, &mh_pa_gated);
        forward_case(f, false, &adapters_dropout);
    }
    g_dropout = false;
}

/* Bad inputs give messages, not crashes. */
static void errors_are_reported(void) {
    vp_context *ctx = ctx_get();
    struct model_arch arch;
    const struct delta_spec none = {0};
    if (!ctx || !make_dir() || !parse_arch(GPT2, &arch)) return;
    const struct refd_options ropt = {.seed = 3};
    struct refd *m;
    bool ok = CHECK(refd_create(&m, &arch, &none, &ropt) == VP_OK);
    model_arch_finish(&arch);
    if (!ok) return;
    ok = write_model(m, GPT2);
    refd_destroy(m);
    struct decoder *g = NULL;
    if (ok && CHECK(decoder_create(ctx, g_dir, &none, NULL, B, T, &g) == VP_OK)) {
        CHECK(decoder_weight_dtype(g) == VP_DTYPE_F16); /* the default for an F32 file */
        struct batch b;
        batch_make(&b, 0);
        b.ids[3] = V;
        const struct decoder_batch db = {b.ids, b.mask, b.loss_mask};
        CHECK(decoder_write_batch(g, &db) == VP_ERROR_BAD_INPUT);
        th_diag("message: %s", vp_last_error());
        float v[16];
        CHECK(decoder_tensor_write(g, "transformer.ln_f.bias", v, 16) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(decoder_grad_read(g, "transformer.ln_f.bias", v, 16) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(decoder_tensor_read(g, "transformer.ln_f.bias", v, 16) == VP_OK);
        CHECK(decoder_tensor_read(g, "no.such.tensor", v, 16) == VP_ERROR_INVALID_ARGUMENT);
    }
    decoder_destroy(g);
    g = NULL;
    uint64_t plan[VP_POOL_COUNT];
    if (ok && CHECK(decoder_open(ctx, g_dir, &none, NULL, &g) == VP_OK)) {
        CHECK(decoder_plan(g, 1, 17, plan) == VP_ERROR_INVALID_ARGUMENT); /* past n_positions */
        th_diag("message: %s", vp_last_error());
    }
    decoder_destroy(g);
    struct delta_spec bad;
    g = NULL;
    if (ok && CHECK(delta_spec_preset("adapter:r=2", &bad) == VP_OK)) { /* a layer the model lacks */
        bad.modules[0].layers[0] = 5;
        bad.modules[0].all_layers = false;
        bad.modules[0].layer_count = 1;
        CHECK(decoder_open(ctx, g_dir, &bad, NULL, &g) == VP_ERROR_BAD_INPUT);
        th_diag("message: %s", vp_last_error());
        decoder_destroy(g);
    }
}

static void teardown(void) {
    vp_context_destroy(g_ctx);
    g_ctx = NULL;
    if (g_dir[0]) dectest_remove_model(g_dir);
}

VT_MAIN(TH_CASE(gpt2_fp32), TH_CASE(llama_fp32), TH_CASE(qwen2_fp32), TH_CASE(gpt2_f16), TH_CASE(llama_f16),
        TH_CASE(lora_fp32), TH_CASE(lora_every_site_fp32),
        TH_CASE(pa_fp32), TH_CASE(scaled_pa_fp32), TH_CASE(adapters_mix_fp32), TH_CASE(prefix_fp32),
        TH_CASE(prefix_two_fp32), TH_CASE(mam_fp32), TH_CASE(prefix_reparam_fp32),
        TH_CASE(prefix_three_fp32), TH_CASE(mam_preset_fp32), TH_CASE(full_fp32), TH_CASE(bitfit_fp32),
        TH_CASE(adapter_fp32), TH_CASE(adapters_seq_fp32), TH_CASE(mh_pa_fp32),
        TH_CASE(deltas_f16), TH_CASE(dropout_fp32),
        TH_CASE(errors_are_reported), TH_CASE(teardown))
