/* PEFT folder export and import: LoRA (RoBERTa; GPT-2's fused c_attn split
 * into q, k, v; F16 tensors widened; BART's three stacks and their module
 * names), prefix tuning (RoBERTa export; a LLaMA with grouped kv heads:
 * export, import and the refusals). */
#include "harness.h"
#include "params.h"
#include "peft.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static const char *tiny_roberta =
    "{\"model_type\":\"roberta\",\"vocab_size\":40,\"hidden_size\":8,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":2,\"intermediate_size\":12,\"max_position_embeddings\":20,"
    "\"type_vocab_size\":1,\"pad_token_id\":1}";

static const char *tiny_gpt2 =
    "{\"model_type\":\"gpt2\",\"vocab_size\":40,\"n_embd\":8,\"n_layer\":2,\"n_head\":2,\"n_positions\":20}";
static const char *tiny_llama =
    "{\"model_type\":\"llama\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":24,"
    "\"max_position_embeddings\":20}";

/* Encoder and decoder of different depth and FFN width. */
static const char *tiny_bart =
    "{\"model_type\":\"bart\",\"vocab_size\":40,\"d_model\":8,\"encoder_layers\":2,\"decoder_layers\":3,"
    "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":12,\"decoder_ffn_dim\":16,"
    "\"max_position_embeddings\":20,\"pad_token_id\":1,\"bos_token_id\":0,\"eos_token_id\":2,"
    "\"decoder_start_token_id\":2}";

static struct model_arch arch_of(const char *config) {
    struct model_arch a;
    if (model_arch_parse(config, strlen(config), "config.json", &a) != VP_OK) FAIL("%s", vp_last_error());
    return a;
}
static struct model_arch arch(void) { return arch_of(tiny_roberta); }

/* Tensors for `spec` with recognisable values. */
static void fill_lora(const struct delta_spec *s, const struct model_arch *a, struct delta_tensors *t) {
    float v = 1;
    for (int l = 0; l < a->layers; l++)
        for (int i = 0; i < s->count; i++) {
            const struct delta_module *m = &s->modules[i];
            if (!delta_module_has_layer(m, l)) continue;
            int64_t in = m->at == DELTA_AT_DOWN ? a->intermediate : a->hidden;
            int64_t out = m->at == DELTA_AT_UP ? a->intermediate : a->hidden;
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "encoder.layers.%d.delta%d.lora_A", l, i);
            struct delta_tensor *A = delta_tensors_add(t, name, 2, (int64_t[]){m->size, in});
            snprintf(name, sizeof name, "encoder.layers.%d.delta%d.lora_B", l, i);
            struct delta_tensor *B = delta_tensors_add(t, name, 2, (int64_t[]){out, m->size});
            for (uint64_t k = 0; k < delta_tensor_numel(A); k++) A->data[k] = v++;
            for (uint64_t k = 0; k < delta_tensor_numel(B); k++) B->data[k] = -(v++);
        }
    struct delta_tensor *h = delta_tensors_add(t, "classifier.out_proj.weight", 2, (int64_t[]){2, a->hidden});
    for (int k = 0; k < 2 * a->hidden; k++) h->data[k] = 0.5f * (float)k;
}

static cJSON *read_json(const char *file) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    void *text;
    size_t size;
    if (vp_file_read(path, &text, &size) != VP_OK) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

/* dir's adapter_config.json has target_modules the regular expression
 * `want` and layers_to_transform null (PEFT refuses both at once). */
static void expect_regex(const char *want) {
    cJSON *cfg = read_json("adapter_config.json");
    const cJSON *tm = cfg ? cJSON_GetObjectItem(cfg, "target_modules") : NULL;
    CHECKF(cJSON_IsString(tm) && strcmp(tm->valuestring, want) == 0, "target_modules %s, want %s",
           cJSON_IsString(tm) ? tm->valuestring : "not a string", want);
    CHECK(cfg && cJSON_IsNull(cJSON_GetObjectItem(cfg, "layers_to_transform")));
    cJSON_Delete(cfg);
}

static void lora_round_trip(void) {
    snprintf(dir, sizeof dir, "/tmp/vkpeft-peft-XXXXXX");
    if (!CHECK(mkdtemp(dir) != NULL)) return;
    struct model_arch a = arch();
    struct delta_spec s;
    CHECK(delta_spec_preset("lora:r=2,a=4", &s) == VP_OK);
    struct delta_tensors t = {0};
    fill_lora(&s, &a, &t);
    CHECKF(delta_peft_export(dir, &s, &a, &t, "tiny-roberta") == VP_OK, "%s", vp_last_error());
    cJSON *cfg = read_json("adapter_config.json");
    CHECK(cfg && strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "LORA") == 0);
    CHECK(cfg && cJSON_GetObjectItem(cfg, "r")->valuedouble == 2);
    CHECK(cfg && cJSON_GetObjectItem(cfg, "lora_alpha")->valuedouble == 4);
    const cJSON *tm = cfg ? cJSON_GetObjectItem(cfg, "target_modules") : NULL;
    CHECK(cJSON_IsArray(tm) && cJSON_GetArraySize(tm) == 2 &&
          strcmp(cJSON_GetArrayItem(tm, 0)->valuestring, "query") == 0 &&
          strcmp(cJSON_GetArrayItem(tm, 1)->valuestring, "value") == 0);
    cJSON_Delete(cfg);
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    struct io_safetensors *f;
    if (CHECK(io_safetensors_open(path, &f) == VP_OK)) {
        const struct io_tensor *x =
            io_safetensors_find(f, "base_model.model.roberta.encoder.layer.1.attention.self.value.lora_B.weight");
        CHECK(x && x->shape[0] == 8 && x->shape[1] == 2);
        CHECK(io_safetensors_find(f, "base_model.model.classifier.out_proj.weight") != NULL);
        CHECK(io_safetensors_count(f) == 2 * 2 * 2 + 1);
        io_safetensors_close(f);
    }
    struct delta_spec back;
    struct delta_tensors bt;
    if (CHECKF(delta_peft_import(dir, &a, &back, &bt) == VP_OK, "%s", vp_last_error())) {
        CHECK(back.count == 2 && back.modules[0].at == DELTA_AT_Q && back.modules[1].at == DELTA_AT_V);
        CHECK(back.modules[0].size == 2 && back.modules[0].scale == 2 && back.modules[0].all_layers);
        CHECK(bt.count == t.count);
        for (size_t i = 0; i < t.count; i++) {
            const struct delta_tensor *x = delta_tensors_find(&bt, t.items[i].name);
            CHECKF(x && memcmp(x->data, t.items[i].data, delta_tensor_numel(x) * 4) == 0, "%s differs",
                   t.items[i].name);
        }
        delta_tensors_free(&bt);
    }
    delta_tensors_free(&t);
    /* LoRA on o and down needs a regular expression (".output.dense" is ambiguous). */
    const char *json = "{\"modules\":[{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2},"
                       "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2}]}";
    CHECK(delta_spec_parse(json, strlen(json), "s", &s) == VP_OK);
    fill_lora(&s, &a, &t);
    CHECK(delta_peft_export(dir, &s, &a, &t, NULL) == VP_OK);
    cfg = read_json("adapter_config.json");
    tm = cfg ? cJSON_GetObjectItem(cfg, "target_modules") : NULL;
    CHECK(cJSON_IsString(tm) &&
          strcmp(tm->valuestring,
                 ".*roberta\\.encoder\\.layer\\.\\d+\\.(attention\\.output\\.dense|output\\.dense)") == 0);
    cJSON_Delete(cfg);
    CHECK(delta_peft_import(dir, &a, &back, &bt) == VP_OK);
    CHECK(back.count == 2 && back.modules[0].at == DELTA_AT_O && back.modules[1].at == DELTA_AT_DOWN);
    delta_tensors_free(&bt);
    delta_tensors_free(&t);
    /* On layer 1 only: the layer goes into the expression (PEFT refuses
     * layers_to_transform beside one). */
    for (int i = 0; i < 2; i++) {
        s.modules[i].all_layers = false;
        s.modules[i].layer_count = 1;
        s.modules[i].layers[0] = 1;
    }
    fill_lora(&s, &a, &t);
    CHECK(delta_peft_export(dir, &s, &a, &t, NULL) == VP_OK);
    expect_regex(".*roberta\\.encoder\\.layer\\.(1)\\.(attention\\.output\\.dense|output\\.dense)");
    delta_tensors_free(&t);
    model_arch_finish(&a);
}

/* A 3-row prefix of width 8 on 2 layers of `stack`, value 1000·layer +
 * 100·(v) + element. */
static void fill_prefix(struct delta_tensors *t, const char *stack) {
    for (int l = 0; l < 2; l++)
        for (int kv = 0; kv < 2; kv++) {
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "%s.layers.%d.delta0.%s", stack, l, kv ? "prefix_v" : "prefix_k");
            struct delta_tensor *p = delta_tensors_add(t, name, 2, (int64_t[]){3, 8});
            for (int k = 0; k < 24; k++) p->data[k] = (float)(1000 * l + 100 * kv + k);
        }
}

static void prefix_export(void) {
    struct model_arch a = arch();
    struct delta_spec s;
    CHECK(delta_spec_preset("prefix:l=3", &s) == VP_OK);
    struct delta_tensors t = {0};
    fill_prefix(&t, "encoder");
    CHECKF(delta_peft_export(dir, &s, &a, &t, NULL) == VP_OK, "%s", vp_last_error());
    cJSON *cfg = read_json("adapter_config.json");
    CHECK(cfg && strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "PREFIX_TUNING") == 0);
    CHECK(cfg && cJSON_GetObjectItem(cfg, "num_virtual_tokens")->valuedouble == 3);
    cJSON_Delete(cfg);
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    struct io_safetensors *f;
    if (CHECK(io_safetensors_open(path, &f) == VP_OK)) {
        const struct io_tensor *pe = io_safetensors_find(f, "prompt_embeddings");
        CHECK(pe && pe->shape[0] == 3 && pe->shape[1] == 2 * 2 * 8);
        /* Row 1, layer 1's value block starts at column (2·1+1)·8. */
        const float *d = pe ? pe->data : NULL;
        CHECK(d && d[1 * 32 + 3 * 8 + 2] == 1000 + 100 + 8 + 2);
        CHECK(d && d[0 * 32 + 0 * 8 + 5] == 5);
        io_safetensors_close(f);
    }
    delta_tensors_free(&t);
    const char *why;
    CHECK(delta_spec_preset("mam", &s) == VP_OK);
    CHECK(!delta_peft_supported(&s, &a, &why) && strstr(why, "MAM"));
    CHECK(delta_peft_export(dir, &s, &a, &t, NULL) == VP_ERROR_UNSUPPORTED);
    model_arch_finish(&a);
}

static void write_config(const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    CHECK(vp_file_write_atomic(path, text, strlen(text)) == VP_OK);
}

static void write_weights(const struct io_tensor_out *t, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CHECK(io_safetensors_write(path, t, n, NULL) == VP_OK);
}

static const struct delta_tensor *find(const struct delta_tensors *t, const char *fmt, int l, int i) {
    char name[DELTA_NAME_MAX];
    snprintf(name, sizeof name, fmt, l, i);
    const struct delta_tensor *d = delta_tensors_find(t, name);
    CHECKF(d != NULL, "no %s", name);
    return d;
}

/* GPT-2's c_attn pair (A (r, d) stored F16, B (3d, r)) on layer 1 becomes
 * q, k, v pairs sharing A, with B's row blocks q | k | v; attn.c_proj maps
 * to o. A B without 3·d rows is refused. */
static void gpt2_c_attn_import(void) {
    struct model_arch a = arch_of(tiny_gpt2);
    enum { R = 2, D = 8 };
    uint16_t A16[R * D];
    float B[3 * D * R], Ao[R * D], Bo[D * R];
    for (int k = 0; k < R * D; k++) A16[k] = vp_f32_to_f16((float)k / 4), Ao[k] = (float)k;
    for (int k = 0; k < 3 * D * R; k++) B[k] = (float)(100 + k);
    for (int k = 0; k < D * R; k++) Bo[k] = -(float)k;
    const struct io_tensor_out t[] = {
        {"base_model.model.transformer.h.1.attn.c_attn.lora_A.weight", IO_DTYPE_F16, 2, {R, D}, A16},
        {"base_model.model.transformer.h.1.attn.c_attn.lora_B.weight", IO_DTYPE_F32, 2, {3 * D, R}, B},
        {"base_model.model.transformer.h.1.attn.c_proj.lora_A.weight", IO_DTYPE_F32, 2, {R, D}, Ao},
        {"base_model.model.transformer.h.1.attn.c_proj.lora_B.weight", IO_DTYPE_F32, 2, {D, R}, Bo},
    };
    write_weights(t, 4);
    write_config("{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":6,\"fan_in_fan_out\":true,"
                 "\"target_modules\":[\"c_attn\",\"c_proj\"],\"layers_to_transform\":[1]}");
    struct delta_spec s;
    struct delta_tensors got;
    if (CHECKF(delta_peft_import(dir, &a, &s, &got) == VP_OK, "%s", vp_last_error())) {
        CHECK(s.count == 4);
        for (int i = 0; i < s.count; i++) {
            const struct delta_module *m = &s.modules[i];
            CHECK(m->kind == DELTA_LORA && m->size == R && m->alpha == 6 && m->scale == 3);
            CHECK(!m->all_layers && m->layer_count == 1 && m->layers[0] == 1);
            const struct delta_tensor *ta = find(&got, "decoder.layers.%d.delta%d.lora_A", 1, i);
            const struct delta_tensor *tb = find(&got, "decoder.layers.%d.delta%d.lora_B", 1, i);
            if (!ta || !tb) continue;
            CHECK(tb->ndim == 2 && tb->shape[0] == D && tb->shape[1] == R);
            if (m->at == DELTA_AT_O) {
                CHECK(ta->data[5] == 5 && tb->data[3] == -3);
                continue;
            }
            const int block = m->at - DELTA_AT_Q; /* 0 q, 1 k, 2 v */
            CHECK(block >= 0 && block < 3 && ta->data[7] == 7.0f / 4);
            for (int k = 0; k < D * R; k++) CHECK(tb->data[k] == B[block * D * R + k]);
        }
        delta_tensors_free(&got);
    }
    /* (3d - 1, r) is no c_attn B. */
    struct io_tensor_out bad[2] = {t[0], t[1]};
    bad[1].shape[0] = 3 * D - 1;
    write_weights(bad, 2);
    CHECK(delta_peft_import(dir, &a, &s, &got) == VP_ERROR_BAD_INPUT);
    CHECKF(strstr(vp_last_error(), "has 23 rows; GPT-2's c_attn lora_B has 3 · 8") != NULL, "%s", vp_last_error());
    model_arch_finish(&a);
}

/* LLaMA, 4 heads sharing 2 kv heads of width 4: a prefix exports with
 * token_dim 8 and num_attention_heads 2 (PEFT's sizes for grouped-query
 * attention) and imports back to the same prefix_k / prefix_v; a prefix
 * sized by all heads, two submodules or a stray tensor are refused; an
 * encoder does not import prefixes. */
static void decoder_prefix_round_trip(void) {
    struct model_arch a = arch_of(tiny_llama);
    struct delta_spec s;
    CHECK(delta_spec_preset("prefix:l=3", &s) == VP_OK);
    s.modules[0].reparam = 0;
    struct delta_tensors t = {0};
    fill_prefix(&t, "decoder");
    const char *why;
    CHECK(delta_peft_supported(&s, &a, &why));
    CHECKF(delta_peft_export(dir, &s, &a, &t, NULL) == VP_OK, "%s", vp_last_error());
    cJSON *cfg = read_json("adapter_config.json");
    CHECK(cfg && strcmp(cJSON_GetObjectItem(cfg, "task_type")->valuestring, "CAUSAL_LM") == 0);
    CHECK(cfg && cJSON_GetObjectItem(cfg, "token_dim")->valuedouble == 8);
    CHECK(cfg && cJSON_GetObjectItem(cfg, "num_attention_heads")->valuedouble == 2);
    CHECK(cfg && !cJSON_GetObjectItem(cfg, "modules_to_save"));
    cJSON_Delete(cfg);
    struct delta_spec back;
    struct delta_tensors bt;
    if (CHECKF(delta_peft_import(dir, &a, &back, &bt) == VP_OK, "%s", vp_last_error())) {
        CHECK(back.count == 1 && back.modules[0].kind == DELTA_PREFIX && back.modules[0].size == 3);
        CHECK(back.modules[0].reparam == 0 && back.modules[0].all_layers);
        CHECK(bt.count == t.count);
        for (size_t i = 0; i < t.count; i++) {
            const struct delta_tensor *x = delta_tensors_find(&bt, t.items[i].name);
            CHECKF(x && x->shape[0] == 3 && x->shape[1] == 8 && memcmp(x->data, t.items[i].data, 24 * 4) == 0,
                   "%s differs", t.items[i].name);
        }
        delta_tensors_free(&bt);
    }
    /* MAM: refused with the reason. */
    CHECK(delta_spec_preset("mam", &s) == VP_OK);
    CHECK(!delta_peft_supported(&s, &a, &why) && strstr(why, "one prefix module alone"));
    static const struct {
        const char *config, *message;
    } bad[] = {
        {"{\"peft_type\":\"PREFIX_TUNING\",\"num_virtual_tokens\":3,\"token_dim\":16,\"num_layers\":2,"
         "\"num_attention_heads\":4}", "token_dim 16, num_attention_heads 4"},
        {"{\"peft_type\":\"PREFIX_TUNING\",\"num_virtual_tokens\":3,\"token_dim\":8,\"num_layers\":2,"
         "\"num_transformer_submodules\":2}", "\"num_transformer_submodules\" is 2"},
        {"{\"peft_type\":\"PREFIX_TUNING\",\"num_virtual_tokens\":4,\"token_dim\":8,\"num_layers\":2}",
         "prompt_embeddings has shape (3, 32), want (num_virtual_tokens, num_layers · 2 · token_dim) = (4, 32)"},
        {"{\"peft_type\":\"PREFIX_TUNING\",\"token_dim\":8,\"num_layers\":2}", "\"num_virtual_tokens\" must be"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_config(bad[k].config);
        CHECK(delta_peft_import(dir, &a, &back, &bt) == VP_ERROR_BAD_INPUT);
        CHECKF(strstr(vp_last_error(), bad[k].message) != NULL, "%s", vp_last_error());
    }
    struct model_arch enc = arch();
    CHECK(delta_peft_import(dir, &enc, &back, &bt) == VP_ERROR_UNSUPPORTED);
    CHECK(strstr(vp_last_error(), "decoder-only") != NULL);
    model_arch_finish(&enc);
    delta_tensors_free(&t);
    model_arch_finish(&a);
}

static void import_errors(void) {
    struct model_arch a = arch();
    struct delta_spec s;
    struct delta_tensors t;
    write_config("{\"peft_type\":\"IA3\"}");
    CHECK(delta_peft_import(dir, &a, &s, &t) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "\"peft_type\" is IA3") != NULL);
    write_config("{\"peft_type\":\"LORA\",\"r\":2,\"use_dora\":true}");
    CHECK(delta_peft_import(dir, &a, &s, &t) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "DoRA") != NULL);
    /* A rank-3 config with rank-2 tensors. */
    struct delta_tensors good = {0};
    CHECK(delta_spec_preset("lora:r=2", &s) == VP_OK);
    fill_lora(&s, &a, &good);
    CHECK(delta_peft_export(dir, &s, &a, &good, NULL) == VP_OK);
    delta_tensors_free(&good);
    write_config("{\"peft_type\":\"LORA\",\"r\":3,\"lora_alpha\":6,\"target_modules\":[\"query\"]}");
    CHECK(delta_peft_import(dir, &a, &s, &t) == VP_ERROR_BAD_INPUT);
    CHECKF(strstr(vp_last_error(), "has shape (2, 8), want (3, 8)") != NULL, "%s", vp_last_error());
    /* A missing B. */
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    float w[16] = {0};
    struct io_tensor_out only_a = {"base_model.model.roberta.encoder.layer.0.attention.self.query.lora_A.weight",
                                   IO_DTYPE_F32, 2, {2, 8}, w};
    CHECK(io_safetensors_write(path, &only_a, 1, NULL) == VP_OK);
    write_config("{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4}");
    CHECK(delta_peft_import(dir, &a, &s, &t) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "has no lora_B") != NULL);
    struct io_tensor_out bad_layer = only_a;
    bad_layer.name = "base_model.model.roberta.encoder.layer.7.attention.self.query.lora_A.weight";
    CHECK(io_safetensors_write(path, &bad_layer, 1, NULL) == VP_OK);
    CHECK(delta_peft_import(dir, &a, &s, &t) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "names no layer") != NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    model_arch_finish(&a);
}

/* ---- BART ----------------------------------------------------------------------------- */

/* Every place of every module of `s` on a BART, shapes by stack (the
 * decoder's FFN is 16 wide, the encoder's 12), values counting up. */
static void fill_bart(const struct delta_spec *s, const struct model_arch *a, struct delta_tensors *t) {
    float v = 1;
    for (int i = 0; i < s->count; i++) {
        const struct delta_module *m = &s->modules[i];
        const char *root;
        for (int place = 0, l; (l = delta_params_place(a, m, place, &root)) >= 0; place++) {
            const int64_t I = strcmp(root, "encoder.layers") == 0 ? a->intermediate : a->decoder_intermediate;
            const int64_t in = m->at == DELTA_AT_DOWN ? I : a->hidden, out = m->at == DELTA_AT_UP ? I : a->hidden;
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "%s.%d.delta%d.lora_A", root, l, i);
            struct delta_tensor *A = delta_tensors_add(t, name, 2, (int64_t[]){m->size, in});
            snprintf(name, sizeof name, "%s.%d.delta%d.lora_B", root, l, i);
            struct delta_tensor *B = delta_tensors_add(t, name, 2, (int64_t[]){out, m->size});
            for (uint64_t k = 0; k < delta_tensor_numel(A); k++) A->data[k] = v++;
            for (uint64_t k = 0; k < delta_tensor_numel(B); k++) B->data[k] = -(v++);
        }
    }
}

/* A PEFT key that holds the vkpeft tensor `name`, shaped (rows, cols). */
struct key_case {
    const char *key, *name;
    int64_t rows, cols;
};

/* f holds `count` tensors, among them the n keys of k; closes f. */
static void expect_keys(struct io_safetensors *f, const struct delta_tensors *t, size_t count,
                        const struct key_case *k, size_t n) {
    if (!f) return;
    CHECKF(io_safetensors_count(f) == count, "%zu tensors, want %zu", io_safetensors_count(f), count);
    for (size_t i = 0; i < n; i++) {
        const struct io_tensor *x = io_safetensors_find(f, k[i].key);
        const struct delta_tensor *d = delta_tensors_find(t, k[i].name);
        if (!CHECKF(x && d, "no %s or %s", k[i].key, k[i].name)) continue;
        CHECKF(x->ndim == 2 && x->shape[0] == k[i].rows && x->shape[1] == k[i].cols,
               "%s: (%lld, %lld), want (%lld, %lld)", k[i].key, (long long)x->shape[0], (long long)x->shape[1],
               (long long)k[i].rows, (long long)k[i].cols);
        CHECKF(x->numel == delta_tensor_numel(d) && memcmp(x->data, d->data, x->numel * 4) == 0,
               "%s does not hold %s", k[i].key, k[i].name);
    }
    io_safetensors_close(f);
}

/* Exports t (spec s) into dir and opens its adapter_model.safetensors
 * (NULL on failure); *cfg is its adapter_config.json. */
static struct io_safetensors *export_bart(const struct delta_spec *s, const struct model_arch *a,
                                          const struct delta_tensors *t, cJSON **cfg) {
    *cfg = NULL;
    if (!CHECKF(delta_peft_export(dir, s, a, t, "tiny-bart") == VP_OK, "%s", vp_last_error())) return NULL;
    *cfg = read_json("adapter_config.json");
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    struct io_safetensors *f = NULL;
    CHECKF(io_safetensors_open(path, &f) == VP_OK, "%s", vp_last_error());
    return f;
}

/* Imports the folder and compares spec and tensors with what was exported. */
static void expect_import(const struct model_arch *a, const struct delta_spec *s, const struct delta_tensors *t) {
    struct delta_spec back;
    struct delta_tensors bt;
    if (!CHECKF(delta_peft_import(dir, a, &back, &bt) == VP_OK, "%s", vp_last_error())) return;
    CHECKF(back.count == s->count, "%d modules back, %d exported", back.count, s->count);
    for (int i = 0; i < back.count && i < s->count; i++) {
        const struct delta_module *m = &back.modules[i], *w = &s->modules[i];
        CHECKF(m->kind == DELTA_LORA && m->at == w->at && m->size == w->size && m->alpha == w->alpha &&
                   m->scale == w->alpha / w->size && m->all_layers == w->all_layers &&
                   m->layer_count == w->layer_count,
               "module %d differs", i);
        CHECKF((m->stacks & (delta_module_in_stack(w, a, DELTA_STACK_CROSS) ? 7u : 3u)) ==
                   (w->stacks & (delta_module_in_stack(w, a, DELTA_STACK_CROSS) ? 7u : 3u)),
               "module %d: stacks %u, exported %u", i, m->stacks, w->stacks);
    }
    CHECKF(bt.count == t->count, "%zu tensors back, %zu exported", bt.count, t->count);
    for (size_t i = 0; i < t->count; i++) {
        const struct delta_tensor *x = delta_tensors_find(&bt, t->items[i].name);
        CHECKF(x && x->ndim == 2 && x->shape[0] == t->items[i].shape[0] && x->shape[1] == t->items[i].shape[1] &&
                   memcmp(x->data, t->items[i].data, delta_tensor_numel(x) * 4) == 0,
               "%s differs", t->items[i].name);
    }
    delta_tensors_free(&bt);
}

/* LoRA on q and v of all three stacks is target_modules ["q_proj",
 * "v_proj"], keys under model.encoder / model.decoder (self_attn,
 * encoder_attn), and imports back; LoRA on some stacks only (o in
 * cross-attention, down in both FFNs, layers 0 and 2) is a regular
 * expression with the layers in it. */
static void bart_lora_round_trip(void) {
    struct model_arch a = arch_of(tiny_bart);
    struct delta_spec s;
    CHECK(delta_spec_preset("lora:r=2,a=4", &s) == VP_OK);
    struct delta_tensors t = {0};
    fill_bart(&s, &a, &t);
    const char *why;
    CHECKF(delta_peft_supported(&s, &a, &why), "%s", why);
    cJSON *cfg;
    struct io_safetensors *f = export_bart(&s, &a, &t, &cfg);
    CHECK(cfg && strcmp(cJSON_GetObjectItem(cfg, "task_type")->valuestring, "SEQ_2_SEQ_LM") == 0);
    CHECK(cfg && strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "LORA") == 0);
    CHECK(cfg && cJSON_GetObjectItem(cfg, "r")->valuedouble == 2 &&
          cJSON_GetObjectItem(cfg, "lora_alpha")->valuedouble == 4);
    const cJSON *tm = cfg ? cJSON_GetObjectItem(cfg, "target_modules") : NULL;
    CHECK(cJSON_IsArray(tm) && cJSON_GetArraySize(tm) == 2 &&
          strcmp(cJSON_GetArrayItem(tm, 0)->valuestring, "q_proj") == 0 &&
          strcmp(cJSON_GetArrayItem(tm, 1)->valuestring, "v_proj") == 0);
    CHECK(cfg && cJSON_IsNull(cJSON_GetObjectItem(cfg, "layers_to_transform")));
    cJSON_Delete(cfg);
    static const struct key_case qv[] = {
        {"base_model.model.model.encoder.layers.1.self_attn.q_proj.lora_A.weight", "encoder.layers.1.delta0.lora_A",
         2, 8},
        {"base_model.model.model.decoder.layers.2.self_attn.v_proj.lora_B.weight", "decoder.layers.2.delta1.lora_B",
         8, 2},
        {"base_model.model.model.decoder.layers.0.encoder_attn.q_proj.lora_B.weight", "cross.layers.0.delta0.lora_B",
         8, 2},
        {"base_model.model.model.decoder.layers.2.encoder_attn.v_proj.lora_A.weight", "cross.layers.2.delta1.lora_A",
         2, 8},
    };
    /* 2 projections × (2 encoder + 3 decoder + 3 cross-attention blocks) × A, B */
    expect_keys(f, &t, 32, qv, sizeof qv / sizeof qv[0]);
    expect_import(&a, &s, &t);
    delta_tensors_free(&t);

    const char *json = "{\"modules\":[{\"kind\":\"lora\",\"at\":\"o\",\"rank\":2,\"layers\":[0,2],"
                       "\"stack\":[\"cross\"]},{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,"
                       "\"layers\":[0,2],\"stack\":[\"encoder\",\"decoder\"]}]}";
    CHECK(delta_spec_parse(json, strlen(json), "s", &s) == VP_OK);
    fill_bart(&s, &a, &t);
    f = export_bart(&s, &a, &t, &cfg);
    cJSON_Delete(cfg);
    expect_regex("model\\.encoder\\.layers\\.(0|2)\\.(fc2)|"
                 "model\\.decoder\\.layers\\.(0|2)\\.(encoder_attn\\.out_proj|fc2)");
    static const struct key_case od[] = {
        {"base_model.model.model.decoder.layers.2.encoder_attn.out_proj.lora_A.weight",
         "cross.layers.2.delta0.lora_A", 2, 8},
        {"base_model.model.model.decoder.layers.0.fc2.lora_A.weight", "decoder.layers.0.delta1.lora_A", 2, 16},
        {"base_model.model.model.encoder.layers.0.fc2.lora_A.weight", "encoder.layers.0.delta1.lora_A", 2, 12},
    };
    /* o: cross 0, 2; down: encoder 0, decoder 0, 2 */
    expect_keys(f, &t, 10, od, sizeof od / sizeof od[0]);
    expect_import(&a, &s, &t);
    delta_tensors_free(&t);
    /* not LoRA: refused with the reason */
    CHECK(delta_spec_preset("mam", &s) == VP_OK);
    CHECK(!delta_peft_supported(&s, &a, &why) && strstr(why, "LoRA only"));
    CHECK(delta_peft_export(dir, &s, &a, &t, NULL) == VP_ERROR_UNSUPPORTED);
    model_arch_finish(&a);
}

/* BART PEFT folders that do not fit: a lora_B of the wrong width, a module
 * vkpeft does not adapt, a decoder layer past the last, a module covering
 * other layers in one stack than in another, rank_pattern, a prefix. */
static void bart_import_errors(void) {
    struct model_arch a = arch_of(tiny_bart);
    float w[2 * 16] = {0};
    static const struct {
        const char *key_a, *key_b;
        int64_t b_rows;
        const char *message;
    } bad[] = {
        {"base_model.model.model.decoder.layers.1.fc1.lora_A.weight",
         "base_model.model.model.decoder.layers.1.fc1.lora_B.weight", 12,
         "lora_B of layer 1 on up (decoder.layers.1.delta0.lora_B) has shape (12, 2), want (16, 2)"},
        {"base_model.model.model.decoder.layers.1.self_attn.qkv_proj.lora_A.weight",
         "base_model.model.model.decoder.layers.1.self_attn.qkv_proj.lora_B.weight", 8,
         "targets 'self_attn.qkv_proj', which vkpeft does not adapt"},
        {"base_model.model.model.encoder.layers.0.encoder_attn.q_proj.lora_A.weight",
         "base_model.model.model.encoder.layers.0.encoder_attn.q_proj.lora_B.weight", 8,
         "targets 'encoder_attn.q_proj', which vkpeft does not adapt"},
        {"base_model.model.model.decoder.layers.3.self_attn.q_proj.lora_A.weight",
         "base_model.model.model.decoder.layers.3.self_attn.q_proj.lora_B.weight", 8,
         "names no decoder layer of this model (0..2)"},
        {"base_model.model.model.shared.lora_A.weight", "base_model.model.model.shared.lora_B.weight", 8,
         "is not in model.encoder.layers or model.decoder.layers"},
    };
    write_config("{\"peft_type\":\"LORA\",\"task_type\":\"SEQ_2_SEQ_LM\",\"r\":2,\"lora_alpha\":4}");
    struct delta_spec s;
    struct delta_tensors t;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const int64_t in = strstr(bad[k].key_a, "fc2") ? 16 : 8;
        const struct io_tensor_out pair[2] = {{bad[k].key_a, IO_DTYPE_F32, 2, {2, in}, w},
                                              {bad[k].key_b, IO_DTYPE_F32, 2, {bad[k].b_rows, 2}, w}};
        write_weights(pair, 2);
        CHECK(delta_peft_import(dir, &a, &s, &t) == VP_ERROR_BAD_INPUT);
        CHECKF(strstr(vp_last_error(), bad[k].message) != NULL, "%s", vp_last_error());
    }
    /* q on encoder layer 0 and decoder layer 1: one module would be on both layers in both stacks */
    const struct io_tensor_out uneven[4] = {
        {"base_model.model.model.encoder.layers.0.self_attn.q_proj.lora_A.weight", IO_DTYPE_F32, 2, {2, 8}, w},
        {"base_model.model.model.encoder.layers.0.self_attn.q_proj.lora_B.weight", IO_DTYPE_F32, 2, {8, 2}, w},
        {"base_model.model.model.decoder.layers.1.self_attn.q_proj.lora_A.weight", IO_DTYPE_F32, 2, {2, 8}, w},
        {"base_model.model.model.decoder.layers.1.self_attn.q_proj.lora_B.weight", IO_DTYPE_F32, 2, {8, 2}, w},
    };
    write_weights(uneven, 4);
    CHECK(delta_peft_import(dir, &a, &s, &t) == VP_ERROR_BAD_INPUT);
    CHECKF(strstr(vp_last_error(), "layer 1's q LoRA in encoder.layers has no lora_A") != NULL, "%s",
           vp_last_error());
    /* the even half of it loads: q in the encoder only */
    write_weights(uneven, 2);
    if (CHECKF(delta_peft_import(dir, &a, &s, &t) == VP_OK, "%s", vp_last_error())) {
        CHECK(s.count == 1 && s.modules[0].at == DELTA_AT_Q && s.modules[0].stacks == DELTA_STACK_ENCODER);
        CHECK(!s.modules[0].all_layers && s.modules[0].layer_count == 1 && s.modules[0].layers[0] == 0);
        CHECK(t.count == 2 && delta_tensors_find(&t, "encoder.layers.0.delta0.lora_B") != NULL);
        delta_tensors_free(&t);
    }
    write_config("{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4,\"rank_pattern\":{\"q_proj\":4}}");
    CHECK(delta_peft_import(dir, &a, &s, &t) == VP_ERROR_BAD_INPUT);
    CHECKF(strstr(vp_last_error(), "\"rank_pattern\"") != NULL, "%s", vp_last_error());
    write_config("{\"peft_type\":\"PREFIX_TUNING\",\"num_virtual_tokens\":3,\"token_dim\":8,\"num_layers\":2}");
    CHECK(delta_peft_import(dir, &a, &s, &t) == VP_ERROR_UNSUPPORTED);
    model_arch_finish(&a);
}

TH_MAIN(TH_CASE(lora_round_trip), TH_CASE(prefix_export), TH_CASE(gpt2_c_attn_import),
        TH_CASE(decoder_prefix_round_trip), TH_CASE(bart_lora_round_trip), TH_CASE(bart_import_errors),
        TH_CASE(import_errors))
