/* PEFT folder export and LoRA import. */
#include "harness.h"
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

static struct model_arch arch(void) {
    struct model_arch a;
    if (model_arch_parse(tiny_roberta, strlen(tiny_roberta), "config.json", &a) != VP_OK)
        FAIL("%s", vp_last_error());
    return a;
}

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
    model_arch_finish(&a);
}

static void prefix_export(void) {
    struct model_arch a = arch();
    struct delta_spec s;
    CHECK(delta_spec_preset("prefix:l=3", &s) == VP_OK);
    struct delta_tensors t = {0};
    for (int l = 0; l < 2; l++)
        for (int kv = 0; kv < 2; kv++) {
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "encoder.layers.%d.delta0.%s", l, kv ? "prefix_v" : "prefix_k");
            struct delta_tensor *p = delta_tensors_add(&t, name, 2, (int64_t[]){3, 8});
            for (int k = 0; k < 24; k++) p->data[k] = (float)(1000 * l + 100 * kv + k);
        }
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

TH_MAIN(TH_CASE(lora_round_trip), TH_CASE(prefix_export), TH_CASE(import_errors))
