/* Saved deltas (runtime/delta/save.h) and LoRA merging (runtime/delta/merge.h):
 * save → load round trips bit-exact for every preset; delta.json's content;
 * PEFT files exactly for the methods PEFT has; the prefix collapse keeps the
 * GPU encoder's logits; a merged model without its delta gives the logits
 * of the base model with it; and bad input is refused with messages. The
 * models are tiny real folders (config.json + model.safetensors) with random
 * weights. */
#include "encoder.h"
#include "kerneltest.h"
#include "merge.h"
#include "params.h"
#include "safetensors.h"
#include "save.h"

#include <cjson/cJSON.h>
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
    "\"type_vocab_size\":1,\"pad_token_id\":1,\"layer_norm_eps\":1e-5,\"num_labels\":3,"             \
    "\"id2label\":{\"0\":\"a\",\"1\":\"b\",\"2\":\"c\"}}"
#define ROBERTA_WIDE /* another base model: hidden 32 */                                            \
    "{\"model_type\":\"roberta\",\"vocab_size\":40,\"hidden_size\":32,\"num_hidden_layers\":2,"      \
    "\"num_attention_heads\":2,\"intermediate_size\":24,\"max_position_embeddings\":16,"             \
    "\"type_vocab_size\":1,\"pad_token_id\":1,\"num_labels\":3}"

static const char *const label_names[3] = {"neg", "neu", "pos"};

/* ------------------------------------------------------------------------
 * Tolerances (normwise: max|got − want| ≤ TOL · max|want| over the logits)
 *
 * Collapse. The reparameterised run computes each prefix on the GPU in fp32
 * (E·W0ᵀ + b0: a length-d = 16 reduction, tanh, then ·W2ᵀ + b2: length
 * R ≤ 5); the collapsed run reads the same MLP computed in double and
 * rounded once. The prefixes therefore differ by at most (d + R + 4)·u ≈
 * 25u relative to the sums of their terms (Higham's γ_K, tanh's few ulps);
 * every later operation is the same fp32 computation on both sides, so the
 * logits differ by that perturbation times the model's condition from the
 * prefixes to the logits. As in test_encoder.c, a LayerNorm or softmax
 * stage amplifies a relative perturbation by at most ~4 with these weights;
 * between a prefix and the logits lie its layer's attention block, the
 * following layer and the head, budgeted 4 each: 4³ = 64, so
 * TOL = 25 · 64 · u ≈ 9.5e-5. (Observed: under 1% of it.)
 *
 * Merge. The merged run reads W' = W + s·B·A rounded once to fp32 and does
 * one length-K product (K ≤ 24, the FFN width); the delta run computes
 * x·Wᵀ and s·(x·Aᵀ)·Bᵀ in fp32 (K and r ≤ 3) and adds. Per adapted
 * projection the outputs differ by at most (2K + r + 3)·u ≈ 55u relative to
 * their terms; with the same amplification to the logits TOL = 55 · 64 · u
 * ≈ 2.1e-4. A missing scale, a transposed B·A or a skipped layer is off by
 * ≥ 1e-2 relative and fails either bound.
 * ------------------------------------------------------------------------ */
#define TOL_COLLAPSE (25.0 * 64.0 * KT_EPS_F32)
#define TOL_MERGE (55.0 * 64.0 * KT_EPS_F32)

static vp_context *g_ctx;
static char g_dir[256];

static vp_context *ctx_get(void) {
    if (!g_ctx) g_ctx = vt_context(NULL);
    return g_ctx;
}

static const char *dir_path(const char *name, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", g_dir, name);
    return buf;
}

static bool make_root(void) {
    if (g_dir[0]) return true;
    snprintf(g_dir, sizeof g_dir, "/tmp/vkpeft-test-save-XXXXXX");
    return CHECK(mkdtemp(g_dir) != NULL);
}

static bool parse_arch(const char *json, struct model_arch *arch) {
    return CHECKF(model_arch_parse(json, strlen(json), "config.json", arch) == VP_OK, "%s", vp_last_error());
}

static bool file_exists(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static cJSON *read_json(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *text;
    size_t size;
    if (!CHECKF(vp_file_read(path, &text, &size) == VP_OK, "%s", vp_last_error())) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, size);
    free(text);
    CHECKF(j != NULL, "%s is not JSON", path);
    return j;
}

/* ------------------------------------------------------------------------
 * Model folders with random weights
 * ------------------------------------------------------------------------ */

/* config.json, model.safetensors (every model and head tensor, F32 or F16)
 * and a tokenizer.json into `dir`. Matrices U(±0.5), LayerNorm γ 1 ± 0.2,
 * biases and β U(±0.1). */
static bool write_model(const char *dir, const char *config, bool f16, uint64_t seed) {
    struct model_arch arch;
    char path[512];
    if (!CHECK(vp_mkdir_p(dir) == VP_OK) || !parse_arch(config, &arch)) return false;
    snprintf(path, sizeof path, "%s/config.json", dir);
    bool ok = CHECK(vp_file_write_atomic(path, config, strlen(config)) == VP_OK);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ok = ok && CHECK(vp_file_write_atomic(path, "{\"model\":{}}", 12) == VP_OK);
    struct encoder_tensor_desc desc[128];
    int n = encoder_model_tensors(&arch, desc);
    n += encoder_head_tensors(&arch, desc + n);
    struct io_tensor_out out[128];
    void *data[128];
    uint64_t st = seed;
    for (int k = 0; k < n; k++) {
        const struct encoder_tensor_desc *d = &desc[k];
        const size_t count = (size_t)d->shape[0] * (size_t)(d->ndim > 1 ? d->shape[1] : 1);
        const bool gamma = strstr(d->name, "LayerNorm.weight") != NULL;
        float *f = malloc(count * sizeof *f);
        for (size_t i = 0; i < count; i++)
            f[i] = gamma ? (float)th_rand_uniform(&st, 0.8, 1.2)
                   : d->matrix ? (float)th_rand_uniform(&st, -0.5, 0.5) : (float)th_rand_uniform(&st, -0.1, 0.1);
        if (f16) {
            uint16_t *h = malloc(count * sizeof *h);
            vp_f32_to_f16_array(h, f, count);
            free(f);
            data[k] = h;
        } else {
            data[k] = f;
        }
        out[k] = (struct io_tensor_out){d->name, f16 ? IO_DTYPE_F16 : IO_DTYPE_F32, d->ndim, {d->shape[0], d->shape[1]},
                                        data[k]};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ok = ok && CHECKF(io_safetensors_write(path, out, (size_t)n, NULL) == VP_OK, "%s", vp_last_error());
    for (int k = 0; k < n; k++) free(data[k]);
    model_arch_finish(&arch);
    return ok;
}

/* Every trainable tensor U(±0.3): zero-initialised ones (LoRA B, adapter
 * up-projections) too, so every term of the delta shows. */
static bool randomise_params(struct delta_params *p, uint64_t seed) {
    uint64_t st = seed;
    bool ok = true;
    for (int k = 0; k < p->count && ok; k++) {
        const struct delta_param *t = &p->items[k];
        float *v = malloc(t->n * sizeof *v);
        for (uint64_t i = 0; i < t->n; i++) v[i] = (float)th_rand_uniform(&st, -0.3, 0.3);
        ok = CHECKF(delta_params_write(p, t->name, v, (size_t)t->n) == VP_OK, "%s", vp_last_error());
        free(v);
    }
    return ok;
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

static bool same_spec(const struct delta_spec *a, const struct delta_spec *b, const char *what) {
    char *ja = delta_spec_to_json(a), *jb = delta_spec_to_json(b);
    bool same = CHECKF(ja && jb && strcmp(ja, jb) == 0, "%s: specs differ:\n%s\nvs\n%s", what, ja, jb);
    free(ja);
    free(jb);
    return same;
}

/* delta.json says what was saved, on which model, with which labels. */
static void check_delta_json(const char *dir, const char *model_dir, const struct delta_spec *trained,
                             const struct delta_spec *saved, const struct model_arch *arch) {
    cJSON *j = read_json(dir, "delta.json");
    if (!j) return;
    const cJSON *v = cJSON_GetObjectItem(j, "vkpeft");
    CHECK(cJSON_IsString(v) && strcmp(v->valuestring, vp_version_string()) == 0);
    const cJSON *spec = cJSON_GetObjectItem(j, "spec");
    char *text = cJSON_Print(spec);
    struct delta_spec parsed;
    CHECKF(text && delta_spec_parse(text, strlen(text), "spec", &parsed) == VP_OK, "%s", vp_last_error());
    same_spec(&parsed, saved, "delta.json spec");
    free(text);
    for (int i = 0; i < saved->count; i++) CHECK(saved->modules[i].kind != DELTA_PREFIX || !saved->modules[i].reparam);
    const cJSON *base = cJSON_GetObjectItem(j, "base_model");
    CHECK(strcmp(cJSON_GetObjectItem(base, "path")->valuestring, model_dir) == 0);
    CHECK(strcmp(cJSON_GetObjectItem(base, "model_type")->valuestring, arch->model_type) == 0);
    CHECK(cJSON_GetObjectItem(base, "hidden_size")->valueint == arch->hidden);
    CHECK(cJSON_GetObjectItem(base, "num_hidden_layers")->valueint == arch->layers);
    CHECK(cJSON_GetObjectItem(base, "vocab_size")->valueint == arch->vocab_size);
    const cJSON *hash = cJSON_GetObjectItem(base, "config_hash");
    CHECK(cJSON_IsString(hash) && strlen(hash->valuestring) == 16);
    struct delta_counts c;
    CHECK(delta_count_params(trained, arch, &c) == VP_OK);
    uint64_t kept = 0;
    for (int i = 0; i < trained->count; i++) kept += c.module_saved[i];
    const cJSON *params = cJSON_GetObjectItem(j, "params");
    CHECK(cJSON_GetObjectItem(params, "trained")->valuedouble == (double)c.delta_params);
    CHECK(cJSON_GetObjectItem(params, "saved")->valuedouble == (double)kept);
    CHECK(cJSON_GetObjectItem(params, "head")->valuedouble == (double)c.head_params);
    CHECK(cJSON_GetObjectItem(params, "model")->valuedouble == (double)c.model_params);
    CHECK(cJSON_GetObjectItem(j, "num_labels")->valueint == 3);
    const cJSON *labels = cJSON_GetObjectItem(j, "labels");
    CHECK(cJSON_GetArraySize(labels) == 3);
    for (int i = 0; i < 3 && cJSON_GetArraySize(labels) == 3; i++)
        CHECK(strcmp(cJSON_GetArrayItem(labels, i)->valuestring, label_names[i]) == 0);
    cJSON_Delete(j);
}

/* Loads `dir` into fresh params and compares every tensor with `want`
 * (the saved params' values, prefixes collapsed on the host) bit for bit. */
static void check_loaded(const char *dir, const struct model_arch *arch, const struct delta_tensors *want,
                         const struct delta_spec *want_spec, const char *what) {
    struct delta_spec spec;
    struct delta_tensors got;
    if (!CHECKF(delta_load(dir, arch, &spec, &got) == VP_OK, "%s: %s", what, vp_last_error())) return;
    same_spec(&spec, want_spec, what);
    struct delta_params *q = NULL;
    if (CHECKF(delta_params_create(g_ctx, arch, &spec, 77, &q) == VP_OK, "%s", vp_last_error()) &&
        CHECK(delta_params_alloc(q) == VP_OK) &&
        CHECKF(delta_params_load(q, &got) == VP_OK, "%s: %s", what, vp_last_error())) {
        CHECKF((size_t)q->count == want->count, "%s: %d tensors, saved %zu", what, q->count, want->count);
        for (int k = 0; k < q->count; k++) {
            const struct delta_param *t = &q->items[k];
            const struct delta_tensor *w = delta_tensors_find(want, t->name);
            if (!CHECKF(w && delta_tensor_numel(w) == t->n, "%s: %s was not saved", what, t->name)) continue;
            float *v = malloc(t->n * sizeof *v);
            CHECK(delta_params_read(q, t->name, v, (size_t)t->n) == VP_OK);
            CHECKF(memcmp(v, w->data, t->n * sizeof *v) == 0, "%s: %s differs after the round trip", what, t->name);
            free(v);
        }
    }
    delta_params_destroy(q);
    delta_tensors_free(&got);
}

/* Every preset on both families: save, delta.json, PEFT files, load into
 * fresh params bit for bit, and the folder as a --delta spec. */
static void round_trip_every_preset(void) {
    vp_context *ctx = ctx_get();
    char model[512], dir[512];
    if (!ctx || !make_root() || !write_model(dir_path("roberta", model, sizeof model), ROBERTA_TINY, false, 1) ||
        !write_model(dir_path("bert", model, sizeof model), BERT_TINY, false, 2))
        return;
    for (int fam = 0; fam < 2; fam++) {
        struct model_arch arch;
        if (!parse_arch(fam ? BERT_TINY : ROBERTA_TINY, &arch)) return;
        dir_path(fam ? "bert" : "roberta", model, sizeof model);
        for (int k = 0; delta_preset_names[k]; k++) {
            const char *name = delta_preset_names[k];
            char what[96];
            snprintf(what, sizeof what, "%s on %s", name, arch.model_type);
            struct delta_spec spec;
            struct delta_params *p = NULL;
            CHECK(delta_spec_preset(name, &spec) == VP_OK);
            if (!CHECKF(delta_params_create(ctx, &arch, &spec, 5 + (uint64_t)k, &p) == VP_OK, "%s", vp_last_error()) ||
                !CHECK(delta_params_alloc(p) == VP_OK) || !randomise_params(p, 100 + (uint64_t)k)) {
                delta_params_destroy(p);
                continue;
            }
            snprintf(dir, sizeof dir, "%s/delta-%s-%s", g_dir, arch.model_type, name);
            const struct delta_save_info info = {model, label_names, 3};
            if (CHECKF(delta_save(dir, p, &info) == VP_OK, "%s: %s", what, vp_last_error())) {
                struct delta_tensors want = {0};
                struct delta_spec want_spec = spec;
                CHECK(delta_params_save(p, 0, &want) == VP_OK);
                CHECKF(delta_collapse_prefix(&want_spec, &arch, &want) == VP_OK, "%s", vp_last_error());
                check_delta_json(dir, model, &spec, &want_spec, &arch);
                const bool peft = strcmp(name, "lora") == 0 || strcmp(name, "prefix") == 0;
                CHECKF(file_exists(dir, "adapter_config.json") == peft &&
                           file_exists(dir, "adapter_model.safetensors") == peft,
                       "%s: PEFT files %s", what, peft ? "missing" : "present");
                check_loaded(dir, &arch, &want, &want_spec, what);
                struct delta_spec as_arg;
                CHECKF(delta_spec_load(dir, &as_arg) == VP_OK, "%s: %s", what, vp_last_error());
                same_spec(&as_arg, &want_spec, "delta_spec_load(folder)");
                delta_tensors_free(&want);
            }
            delta_params_destroy(p);
        }
        model_arch_finish(&arch);
    }
}

/* A folder re-saved with a method PEFT lacks loses the stale PEFT pair;
 * a PEFT LoRA folder (no delta.json) loads through the PEFT importer; a
 * plain spec file still reads. */
static void peft_folders(void) {
    vp_context *ctx = ctx_get();
    char model[512], dir[512];
    struct model_arch arch;
    if (!ctx || !make_root() || !parse_arch(ROBERTA_TINY, &arch)) return;
    dir_path("roberta", model, sizeof model);
    dir_path("delta-peft", dir, sizeof dir);
    struct delta_spec spec, mam;
    struct delta_params *p = NULL, *q = NULL;
    CHECK(delta_spec_preset("lora:r=2,a=8", &spec) == VP_OK);
    CHECK(delta_spec_preset("mam:l=2,r=3", &mam) == VP_OK);
    if (CHECK(delta_params_create(ctx, &arch, &spec, 3, &p) == VP_OK) && CHECK(delta_params_alloc(p) == VP_OK) &&
        randomise_params(p, 9) && CHECK(delta_params_create(ctx, &arch, &mam, 3, &q) == VP_OK) &&
        CHECK(delta_params_alloc(q) == VP_OK)) {
        const struct delta_save_info info = {model, NULL, 0};
        CHECK(delta_save(dir, q, &info) == VP_OK);
        CHECK(delta_save(dir, p, &info) == VP_OK);
        CHECK(file_exists(dir, "adapter_config.json"));
        struct delta_tensors want = {0};
        CHECK(delta_params_save(p, 0, &want) == VP_OK);
        char path[600];
        snprintf(path, sizeof path, "%s/delta.json", dir);
        CHECK(unlink(path) == 0);
        snprintf(path, sizeof path, "%s/delta.safetensors", dir);
        CHECK(unlink(path) == 0);
        struct delta_spec back;
        struct delta_tensors got;
        if (CHECKF(delta_load(dir, &arch, &back, &got) == VP_OK, "%s", vp_last_error())) {
            CHECK(back.count == 2 && back.modules[0].at == DELTA_AT_Q && back.modules[1].at == DELTA_AT_V);
            CHECK(back.modules[0].size == 2 && back.modules[0].scale == 4);
            CHECK(got.count == want.count);
            for (size_t k = 0; k < want.count; k++) {
                const struct delta_tensor *g = delta_tensors_find(&got, want.items[k].name);
                CHECKF(g && memcmp(g->data, want.items[k].data, delta_tensor_numel(g) * 4) == 0, "%s",
                       want.items[k].name);
            }
            delta_tensors_free(&got);
        }
        delta_tensors_free(&want);
        /* Saving mam over it removes the PEFT pair (PEFT has no MAM). */
        CHECK(delta_save(dir, q, &info) == VP_OK);
        CHECK(!file_exists(dir, "adapter_config.json") && !file_exists(dir, "adapter_model.safetensors"));
        /* A plain spec file. */
        char *json = delta_spec_to_json(&spec);
        snprintf(path, sizeof path, "%s/spec.json", g_dir);
        CHECK(json && vp_file_write_atomic(path, json, strlen(json)) == VP_OK);
        free(json);
        struct delta_spec plain;
        CHECKF(delta_spec_load(path, &plain) == VP_OK, "%s", vp_last_error());
        same_spec(&plain, &spec, "plain spec file");
    }
    delta_params_destroy(p);
    delta_params_destroy(q);
    model_arch_finish(&arch);
}

static void expect_bad(vp_status s, const char *needle, const char *what) {
    CHECKF(s == VP_ERROR_BAD_INPUT, "%s: status %s, want VP_ERROR_BAD_INPUT", what, vp_status_name(s));
    CHECKF(strstr(vp_last_error(), needle) != NULL, "%s: message lacks '%s': %s", what, needle, vp_last_error());
    th_diag("%s: %s", what, vp_last_error());
}

/* Another base model, malformed or incomplete folders. */
static void load_errors(void) {
    vp_context *ctx = ctx_get();
    char model[512], dir[512], path[600];
    struct model_arch arch, bert, wide;
    if (!ctx || !make_root() || !parse_arch(ROBERTA_TINY, &arch) || !parse_arch(BERT_TINY, &bert) ||
        !parse_arch(ROBERTA_WIDE, &wide))
        return;
    dir_path("roberta", model, sizeof model);
    dir_path("delta-errors", dir, sizeof dir);
    struct delta_spec spec, got_spec;
    struct delta_tensors got;
    struct delta_params *p = NULL;
    CHECK(delta_spec_preset("adapter:r=2", &spec) == VP_OK);
    const struct delta_save_info info = {model, NULL, 0};
    if (CHECK(delta_params_create(ctx, &arch, &spec, 3, &p) == VP_OK) && CHECK(delta_params_alloc(p) == VP_OK) &&
        CHECK(delta_save(dir, p, &info) == VP_OK)) {
        expect_bad(delta_load(dir, &bert, &got_spec, &got), "(roberta: hidden 16, 2 layers", "a bert model");
        CHECK(strstr(vp_last_error(), "but the model is bert (hidden 16, 2 layers") != NULL);
        expect_bad(delta_load(dir, &wide, &got_spec, &got), "hidden 16", "a wider roberta");
        CHECK(strstr(vp_last_error(), "hidden 32") != NULL);
        /* A tensor missing from delta.safetensors. */
        struct delta_tensors t = {0};
        CHECK(delta_params_save(p, 0, &t) == VP_OK);
        struct io_tensor_out out[64];
        size_t n = 0;
        for (size_t k = 0; k + 1 < t.count && n < 64; k++, n++) /* all but the last adapter tensor */
            out[n] = (struct io_tensor_out){t.items[k].name, IO_DTYPE_F32, t.items[k].ndim,
                                            {t.items[k].shape[0], t.items[k].shape[1], t.items[k].shape[2]},
                                            t.items[k].data};
        snprintf(path, sizeof path, "%s/delta.safetensors", dir);
        CHECK(io_safetensors_write(path, out, n, NULL) == VP_OK);
        expect_bad(delta_load(dir, &arch, &got_spec, &got), "missing or extra", "a missing tensor");
        delta_tensors_free(&t);
        /* Malformed delta.json. */
        snprintf(path, sizeof path, "%s/delta.json", dir);
        CHECK(vp_file_write_atomic(path, "{\"spec\": [1,", 12) == VP_OK);
        expect_bad(delta_load(dir, &arch, &got_spec, &got), "is not a vkpeft delta.json", "malformed delta.json");
        static const char bad_module[] =
            "{\"spec\":{\"modules\":[{\"kind\":\"lora\",\"at\":\"zz\"}]},\"base_model\":{\"model_type\":"
            "\"roberta\",\"hidden_size\":16,\"num_hidden_layers\":2,\"vocab_size\":40}}";
        CHECK(vp_file_write_atomic(path, bad_module, sizeof bad_module - 1) == VP_OK);
        expect_bad(delta_load(dir, &arch, &got_spec, &got), "modules[0].at", "a bad module in delta.json");
    }
    expect_bad(delta_load("/nonexistent/delta", &arch, &got_spec, &got), "/nonexistent/delta", "no folder");
    expect_bad(delta_load(g_dir, &arch, &got_spec, &got), "holds no delta", "an empty folder");
    delta_params_destroy(p);
    model_arch_finish(&arch);
    model_arch_finish(&bert);
    model_arch_finish(&wide);
}

/* ------------------------------------------------------------------------
 * GPU: collapse and merge keep the logits
 * ------------------------------------------------------------------------ */

enum { B = 3, T = 6 };

static void batch_make(bool bert, int32_t *ids, uint8_t *mask, int32_t *types) {
    const int cls = bert ? 2 : 0, pad = bert ? 0 : 1, lens[B] = {6, 4, 2};
    uint64_t st = 4321;
    for (int s = 0; s < B; s++)
        for (int t = 0; t < T; t++) {
            const int n = s * T + t;
            mask[n] = t < lens[s];
            ids[n] = !mask[n] ? pad : t == 0 ? cls : 3 + (int32_t)(th_rand_u64(&st) % 37);
            types[n] = bert && mask[n] && t >= lens[s] / 2;
        }
}

/* Eval logits (B,C) of a model folder with a delta: values from `t`, else
 * random from `seed`, else (seed 0) as loaded. Returns the encoder (the
 * caller destroys it). */
static struct encoder *run_logits(const char *model, bool bert, const struct delta_spec *spec,
                                  const struct delta_tensors *t, uint64_t seed, float *logits) {
    int32_t ids[B * T], types[B * T];
    uint8_t mask[B * T];
    batch_make(bert, ids, mask, types);
    const struct encoder_options eo = {.storage = ENCODER_STORAGE_F32, .seed = 1};
    const struct encoder_batch eb = {ids, mask, bert ? types : NULL, NULL};
    struct encoder *e = NULL;
    if (!CHECKF(encoder_create(g_ctx, model, spec, &eo, B, T, &e) == VP_OK, "%s", vp_last_error())) return NULL;
    bool ok = t      ? CHECKF(delta_params_load(encoder_params(e), t) == VP_OK, "%s", vp_last_error())
              : seed ? randomise_params(encoder_params(e), seed)
                     : true;
    ok = ok && CHECK(encoder_write_batch(e, &eb) == VP_OK) && CHECK(encoder_run(e, ENCODER_PASS_EVAL) == VP_OK) &&
         CHECK(encoder_logits(e, logits) == VP_OK);
    if (!ok) {
        encoder_destroy(e);
        return NULL;
    }
    return e;
}

static void check_normwise(const float *got, const float *want, size_t n, double tol, const char *what) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        err = fmax(err, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    th_diag("%s: max|diff| %.3g = %.3g of max|logit| %.3g (bound %.3g)", what, err, err / scale, scale, tol);
    CHECKF(scale > 0.05 && err <= tol * scale, "%s: max|diff| %.3g above %.3g · %.3g", what, err, tol, scale);
}

/* A reparameterised prefix spec and its collapsed, saved form give the same
 * logits on a fresh encoder. */
static void collapse_keeps_logits(void) {
    static const struct {
        const char *label, *spec;
        bool bert;
    } cases[] = {
        {"prefix", "{\"modules\":[{\"kind\":\"prefix\",\"length\":3,\"reparam\":5}]}", false},
        {"mam", "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":4},{\"kind\":\"adapter\",\"at\":"
                "\"ffn\",\"insert\":\"parallel\",\"bottleneck\":3,\"compose\":\"scale\",\"scale\":2}]}", true},
        {"three prefixes", "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":4,\"layers\":[1]},"
                           "{\"kind\":\"prefix\",\"length\":3,\"reparam\":0},"
                           "{\"kind\":\"prefix\",\"length\":1,\"reparam\":3}]}", false},
    };
    char model[512], dir[512];
    if (!ctx_get() || !make_root()) return;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct delta_spec spec, saved;
        struct delta_tensors t;
        struct model_arch arch;
        dir_path(cases[c].bert ? "bert" : "roberta", model, sizeof model);
        if (!write_model(model, cases[c].bert ? BERT_TINY : ROBERTA_TINY, false, 1 + cases[c].bert) ||
            !CHECK(delta_spec_parse(cases[c].spec, strlen(cases[c].spec), "spec", &spec) == VP_OK) ||
            !parse_arch(cases[c].bert ? BERT_TINY : ROBERTA_TINY, &arch))
            continue;
        float want[B * 3], got[B * 3];
        struct encoder *a = run_logits(model, cases[c].bert, &spec, NULL, 50 + c, want);
        snprintf(dir, sizeof dir, "%s/delta-collapse-%zu", g_dir, c);
        const struct delta_save_info info = {model, NULL, 0};
        if (a && CHECKF(delta_save(dir, encoder_params(a), &info) == VP_OK, "%s", vp_last_error()) &&
            CHECKF(delta_load(dir, &arch, &saved, &t) == VP_OK, "%s", vp_last_error())) {
            for (int i = 0; i < saved.count; i++) CHECK(saved.modules[i].reparam == 0);
            struct encoder *b = run_logits(model, cases[c].bert, &saved, &t, 0, got);
            if (b) check_normwise(got, want, B * 3, TOL_COLLAPSE, cases[c].label);
            encoder_destroy(b);
            delta_tensors_free(&t);
        }
        encoder_destroy(a);
        model_arch_finish(&arch);
    }
}

/* W' = W + s·B·A: the merged model with no delta gives the logits of the
 * base model with the LoRA delta (and with BitFit beside a LoRA);
 * config.json, tokenizer and dtypes. */
static void merge_keeps_logits(void) {
    /* Two modules on q (one on layer 0 only) check that merges accumulate. */
    static const char lora[] =
        "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4},"
        "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2,\"alpha\":2},"
        "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":3,\"alpha\":6},"
        "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":8,\"layers\":[1]},"
        "{\"kind\":\"lora\",\"at\":\"q\",\"rank\":1,\"alpha\":3,\"layers\":[0]}]}";
    char model[512], dir[512], out[512];
    struct delta_spec spec, none = {.name = "none"};
    if (!ctx_get() || !make_root() || !write_model(dir_path("roberta", model, sizeof model), ROBERTA_TINY, false, 1) ||
        !CHECK(delta_spec_parse(lora, sizeof lora - 1, "lora", &spec) == VP_OK))
        return;
    dir_path("delta-merge", dir, sizeof dir);
    dir_path("merged", out, sizeof out);
    float want[B * 3], got[B * 3];
    struct encoder *a = run_logits(model, false, &spec, NULL, 7, want);
    const struct delta_save_info info = {model, label_names, 3};
    struct delta_merge_info mi;
    if (a && CHECKF(delta_save(dir, encoder_params(a), &info) == VP_OK, "%s", vp_last_error()) &&
        CHECKF(delta_merge(model, dir, out, &mi) == VP_OK, "%s", vp_last_error())) {
        CHECKF(mi.merged == 2 + 2 + 2 + 1 + 1, "%d matrices merged", mi.merged);
        CHECK(mi.head_tensors == 4 && mi.num_labels == 3 && mi.dtype == IO_DTYPE_F32 && mi.copied_files == 1);
        /* No delta: the head comes from the merged file as loaded. */
        struct encoder *b = run_logits(out, false, &none, NULL, 0, got);
        if (b) check_normwise(got, want, B * 3, TOL_MERGE, "merged roberta");
        encoder_destroy(b);
        cJSON *cfg = read_json(out, "config.json");
        if (cfg) {
            CHECK(cJSON_GetObjectItem(cfg, "num_labels")->valueint == 3);
            const cJSON *id2label = cJSON_GetObjectItem(cfg, "id2label");
            CHECK(strcmp(cJSON_GetObjectItem(id2label, "2")->valuestring, "pos") == 0);
            CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "label2id"), "neu")->valueint == 1);
            CHECK(strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(cfg, "architectures"), 0)->valuestring,
                         "RobertaForSequenceClassification") == 0);
            CHECK(cJSON_GetObjectItem(cfg, "hidden_size")->valueint == 16);
            cJSON_Delete(cfg);
        }
        CHECK(file_exists(out, "tokenizer.json"));
    }
    encoder_destroy(a);
    /* BitFit beside a LoRA on BERT: the trained biases (the pooler's too)
     * replace the base's, the LoRA adds to its weight. */
    static const char bitfit[] =
        "{\"modules\":[{\"kind\":\"bitfit\"},{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2,\"alpha\":4}]}";
    if (!write_model(dir_path("bert-bitfit", model, sizeof model), BERT_TINY, false, 2) ||
        !CHECK(delta_spec_parse(bitfit, sizeof bitfit - 1, "bitfit", &spec) == VP_OK))
        return;
    dir_path("delta-merge-bitfit", dir, sizeof dir);
    dir_path("merged-bitfit", out, sizeof out);
    a = run_logits(model, true, &spec, NULL, 9, want);
    if (a && CHECKF(delta_save(dir, encoder_params(a), &info) == VP_OK, "%s", vp_last_error()) &&
        CHECKF(delta_merge(model, dir, out, &mi) == VP_OK, "%s", vp_last_error())) {
        /* 2 layers × 6 Linear biases + 2 LayerNorm β each, the embeddings' β, the pooler's bias */
        CHECKF(mi.merged == 2 && mi.model_tensors == 2 * 8 + 2, "%d matrices, %d model tensors", mi.merged,
               mi.model_tensors);
        struct encoder *b = run_logits(out, true, &none, NULL, 0, got);
        if (b) check_normwise(got, want, B * 3, TOL_MERGE, "merged bert bitfit + lora");
        encoder_destroy(b);
    }
    encoder_destroy(a);
}

/* An F16 base gives an F16 merged model whose adapted matrices are exactly
 * f16(fp32(W + s·B·A)) computed in double; non-LoRA deltas, another base
 * model and --out on the base are refused. */
static void merge_f16_and_errors(void) {
    char model[512], dir[512], out[512], path[600];
    struct model_arch arch;
    struct delta_spec spec, mam;
    struct delta_params *p = NULL, *q = NULL;
    if (!ctx_get() || !make_root() || !write_model(dir_path("roberta16", model, sizeof model), ROBERTA_TINY, true, 3) ||
        !parse_arch(ROBERTA_TINY, &arch))
        return;
    dir_path("delta-merge16", dir, sizeof dir);
    dir_path("merged16", out, sizeof out);
    CHECK(delta_spec_preset("lora:r=2,a=6", &spec) == VP_OK);
    CHECK(delta_spec_preset("mam:l=2,r=3", &mam) == VP_OK);
    const struct delta_save_info info = {model, NULL, 0};
    if (CHECK(delta_params_create(g_ctx, &arch, &spec, 3, &p) == VP_OK) && CHECK(delta_params_alloc(p) == VP_OK) &&
        randomise_params(p, 31) && CHECK(delta_save(dir, p, &info) == VP_OK) &&
        CHECKF(delta_merge(model, dir, out, NULL) == VP_OK, "%s", vp_last_error())) {
        struct io_safetensors *base = NULL, *merged = NULL;
        snprintf(path, sizeof path, "%s/model.safetensors", model);
        CHECK(io_safetensors_open(path, &base) == VP_OK);
        snprintf(path, sizeof path, "%s/model.safetensors", out);
        CHECK(io_safetensors_open(path, &merged) == VP_OK);
        const char *wname = "roberta.encoder.layer.1.attention.self.value.weight";
        const struct io_tensor *w = base ? io_safetensors_find(base, wname) : NULL;
        const struct io_tensor *m = merged ? io_safetensors_find(merged, wname) : NULL;
        const struct io_tensor *h = merged ? io_safetensors_find(merged, "classifier.out_proj.weight") : NULL;
        float A[2 * 16], Bm[16 * 2];
        CHECK(delta_params_read(p, "encoder.layers.1.delta1.lora_A", A, 32) == VP_OK);
        CHECK(delta_params_read(p, "encoder.layers.1.delta1.lora_B", Bm, 32) == VP_OK);
        if (CHECK(w && m && h) && CHECK(m->dtype == IO_DTYPE_F16 && h->dtype == IO_DTYPE_F16)) {
            size_t bad = 0;
            for (int o = 0; o < 16; o++)
                for (int i = 0; i < 16; i++) {
                    uint16_t wh, mh;
                    memcpy(&wh, (const char *)w->data + (o * 16 + i) * 2, 2);
                    memcpy(&mh, (const char *)m->data + (o * 16 + i) * 2, 2);
                    double x = vp_f16_to_f32(wh);
                    for (int r = 0; r < 2; r++) x += 3.0 * Bm[o * 2 + r] * A[r * 16 + i];
                    bad += vp_f32_to_f16((float)x) != mh;
                }
            CHECKF(bad == 0, "%zu merged f16 values differ from f16(W + s·B·A)", bad);
        }
        /* Untouched tensors are copied bit for bit. */
        const char *kname = "roberta.encoder.layer.0.attention.self.key.weight";
        const struct io_tensor *k0 = base ? io_safetensors_find(base, kname) : NULL;
        const struct io_tensor *k1 = merged ? io_safetensors_find(merged, kname) : NULL;
        CHECK(k0 && k1 && k0->nbytes == k1->nbytes && memcmp(k0->data, k1->data, k0->nbytes) == 0);
        if (base) io_safetensors_close(base);
        if (merged) io_safetensors_close(merged);
        /* The base's label names stay (the delta names none, the count matches). */
        cJSON *cfg = read_json(out, "config.json");
        CHECK(cfg && strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "id2label"), "1")->valuestring, "b") == 0);
        cJSON_Delete(cfg);
        expect_bad(delta_merge(model, dir, model, NULL), "is the base model's folder", "--out on the base");
        char bert[512];
        if (write_model(dir_path("bert", bert, sizeof bert), BERT_TINY, false, 2))
            expect_bad(delta_merge(bert, dir, out, NULL), "the delta was trained on", "another base model");
    }
    dir_path("delta-mam", dir, sizeof dir);
    if (CHECK(delta_params_create(g_ctx, &arch, &mam, 3, &q) == VP_OK) && CHECK(delta_params_alloc(q) == VP_OK) &&
        CHECK(delta_save(dir, q, &info) == VP_OK))
        expect_bad(delta_merge(model, dir, out, NULL), "merge folds LoRA (and only LoRA)", "a mam delta");
    delta_params_destroy(p);
    delta_params_destroy(q);
    model_arch_finish(&arch);
}

/* ------------------------------------------------------------------------
 * The weight-free plan is the opened model's plan
 * ------------------------------------------------------------------------ */

/* encoder_plan_arch from config.json alone equals encoder_plan of the
 * opened model, pool by pool, for every preset, storage and two shapes. */
static void plan_without_weights(void) {
    char model[512];
    struct model_arch arch;
    if (!ctx_get() || !make_root() || !write_model(dir_path("roberta-plan", model, sizeof model), ROBERTA_TINY, true, 4) ||
        !parse_arch(ROBERTA_TINY, &arch))
        return;
    static const enum encoder_storage storages[] = {ENCODER_STORAGE_DEFAULT, ENCODER_STORAGE_F32,
                                                    ENCODER_STORAGE_F16, ENCODER_STORAGE_BF16};
    static const int shapes[2][2] = {{3, 6}, {8, 14}};
    for (int k = 0; delta_preset_names[k]; k++) {
        struct delta_spec spec;
        CHECK(delta_spec_preset(delta_preset_names[k], &spec) == VP_OK);
        for (size_t st = 0; st < sizeof storages / sizeof storages[0]; st++) {
            struct encoder *e = NULL;
            const struct encoder_options eo = {.storage = storages[st]};
            if (!CHECKF(encoder_open(g_ctx, model, &spec, &eo, &e) == VP_OK, "%s", vp_last_error())) continue;
            for (int sh = 0; sh < 2; sh++) {
                uint64_t opened[VP_POOL_COUNT], planned[VP_POOL_COUNT];
                CHECK(encoder_plan(e, shapes[sh][0], shapes[sh][1], opened) == VP_OK);
                CHECKF(encoder_plan_arch(g_ctx, &arch, &spec, storages[st], shapes[sh][0], shapes[sh][1], planned) ==
                           VP_OK, "%s", vp_last_error());
                for (int p = 0; p < VP_POOL_COUNT; p++)
                    CHECKF(opened[p] == planned[p], "%s, storage %zu, %d x %d: %s pool %llu opened, %llu planned",
                           delta_preset_names[k], st, shapes[sh][0], shapes[sh][1], vp_pool_name((vp_pool)p),
                           (unsigned long long)opened[p], (unsigned long long)planned[p]);
                CHECK(opened[VP_POOL_ACTIVATIONS] > 0 && opened[VP_POOL_TRAINABLE] > 0);
            }
            encoder_destroy(e);
        }
    }
    uint64_t bytes[VP_POOL_COUNT];
    struct delta_spec lora;
    CHECK(delta_spec_preset("lora", &lora) == VP_OK);
    CHECK(encoder_plan_arch(g_ctx, &arch, &lora, ENCODER_STORAGE_DEFAULT, 2, 15, bytes) == VP_ERROR_BAD_INPUT);
    th_diag("message: %s", vp_last_error());
    model_arch_finish(&arch);
}

static void teardown(void) {
    vp_context_destroy(g_ctx);
    g_ctx = NULL;
    if (g_dir[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        CHECK(system(cmd) == 0);
    }
}

VT_MAIN(TH_CASE(round_trip_every_preset), TH_CASE(peft_folders), TH_CASE(load_errors),
        TH_CASE(collapse_keeps_logits), TH_CASE(merge_keeps_logits), TH_CASE(merge_f16_and_errors),
        TH_CASE(plan_without_weights), TH_CASE(teardown))
