/* Delta specs: presets, overrides, JSON parsing and errors, parameter counts
 * against published figures. */
#include "harness.h"
#include "spec.h"

#include <stdlib.h>
#include <string.h>

static struct model_arch arch_of(const char *json) {
    struct model_arch a;
    if (model_arch_parse(json, strlen(json), "config.json", &a) != VP_OK)
        FAIL("config: %s", vp_last_error());
    return a;
}

#define ROBERTA_BASE                                                                              \
    "{\"model_type\":\"roberta\",\"vocab_size\":50265,\"hidden_size\":768,\"num_hidden_layers\":12," \
    "\"num_attention_heads\":12,\"intermediate_size\":3072,\"max_position_embeddings\":514,"       \
    "\"type_vocab_size\":1,\"pad_token_id\":1,\"layer_norm_eps\":1e-5}"
#define BERT_BASE                                                                                 \
    "{\"model_type\":\"bert\",\"vocab_size\":30522,\"hidden_size\":768,\"num_hidden_layers\":12,"   \
    "\"num_attention_heads\":12,\"intermediate_size\":3072}"

static void every_preset_parses(void) {
    for (int i = 0; delta_preset_names[i]; i++) {
        struct delta_spec s;
        CHECKF(delta_spec_preset(delta_preset_names[i], &s) == VP_OK, "%s: %s", delta_preset_names[i],
               vp_last_error());
        CHECK(s.count >= 1 && strcmp(s.name, delta_preset_names[i]) == 0);
        /* The JSON form reads back to the same spec. */
        char *json = delta_spec_to_json(&s);
        struct delta_spec back;
        CHECKF(delta_spec_parse(json, strlen(json), "roundtrip", &back) == VP_OK, "%s: %s\n%s",
               delta_preset_names[i], vp_last_error(), json);
        char *again = delta_spec_to_json(&back);
        CHECKF(strcmp(json, again) == 0, "%s: JSON round trip differs:\n%s\n%s", delta_preset_names[i],
               json, again);
        CHECK(back.count == s.count && back.modules[0].size == s.modules[0].size &&
              back.modules[0].scale == s.modules[0].scale && back.modules[0].kind == s.modules[0].kind);
        free(again);
        free(json);
    }
}

static void presets_place_modules_as_the_paper(void) {
    struct delta_spec s;
    CHECK(delta_spec_preset("mam", &s) == VP_OK);
    CHECK(s.count == 2);
    CHECK(s.modules[0].kind == DELTA_PREFIX && s.modules[0].size == 30 && s.modules[0].at == DELTA_AT_ATTN);
    CHECK(s.modules[1].kind == DELTA_ADAPTER && s.modules[1].at == DELTA_AT_FFN);
    CHECK(s.modules[1].insert == DELTA_PARALLEL && s.modules[1].size == 512);
    CHECK(s.modules[1].compose == DELTA_COMPOSE_SCALE && s.modules[1].scale == 4);
    CHECK(s.modules[1].act == DELTA_ACT_RELU && s.modules[1].init == DELTA_INIT_LORA);
    CHECK(delta_spec_preset("adapter", &s) == VP_OK);
    CHECK(s.count == 2 && s.modules[0].insert == DELTA_SEQUENTIAL && s.modules[0].at == DELTA_AT_ATTN &&
          s.modules[1].at == DELTA_AT_FFN);
    CHECK(delta_spec_preset("adapter-ffn", &s) == VP_OK);
    CHECK(s.count == 1 && s.modules[0].insert == DELTA_SEQUENTIAL && s.modules[0].at == DELTA_AT_FFN);
    CHECK(delta_spec_preset("lora", &s) == VP_OK);
    CHECK(s.count == 2 && s.modules[0].at == DELTA_AT_Q && s.modules[1].at == DELTA_AT_V);
    CHECK(s.modules[0].size == 8 && s.modules[0].scale == 2.0);
    CHECK(delta_spec_preset("scaled-pa", &s) == VP_OK);
    CHECK(s.modules[0].insert == DELTA_PARALLEL && s.modules[0].scale == 4);
    CHECK(delta_spec_preset("mh-pa", &s) == VP_OK);
    CHECK(s.modules[0].per_head && s.modules[0].at == DELTA_AT_ATTN);
    CHECK(delta_spec_preset("prefix", &s) == VP_OK);
    CHECK(s.modules[0].reparam == 800 && s.modules[0].compose == DELTA_COMPOSE_GATED);
}

static void overrides(void) {
    struct delta_spec s;
    CHECK(delta_spec_preset("mam:l=16,r=16,s=2", &s) == VP_OK);
    CHECK(s.modules[0].size == 16 && s.modules[1].size == 16 && s.modules[1].scale == 2);
    CHECK(delta_spec_preset("lora:r=16,a=32", &s) == VP_OK);
    CHECK(s.modules[0].size == 16 && s.modules[0].alpha == 32 && s.modules[0].scale == 2);
    CHECK(delta_spec_preset("lora:r=4", &s) == VP_OK);
    CHECK(s.modules[1].scale == 4); /* alpha 16 / rank 4 */
    CHECK(delta_spec_preset("lora:l=4", &s) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "nothing that 'l' sets") != NULL);
    CHECK(delta_spec_preset("mam:r=1.5", &s) == VP_ERROR_BAD_INPUT);
    CHECK(delta_spec_preset("mam:r", &s) == VP_ERROR_BAD_INPUT);
    CHECK(delta_spec_preset("mam:r=-3", &s) == VP_ERROR_BAD_INPUT);
    CHECK(delta_spec_preset("ia3", &s) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "'ia3' is not a delta preset") != NULL);
    CHECK(strstr(vp_last_error(), "mam") != NULL);
}

static void expect_error(const char *json, const char *needle) {
    struct delta_spec s;
    vp_status st = delta_spec_parse(json, strlen(json), "spec.json", &s);
    CHECKF(st == VP_ERROR_BAD_INPUT, "%s: %s", json, vp_status_name(st));
    CHECKF(strstr(vp_last_error(), needle) != NULL, "message '%s' lacks '%s'", vp_last_error(), needle);
}

static void json_spec(void) {
    const char *json = "{\"modules\":[{\"kind\":\"lora\",\"at\":\"up\",\"rank\":4,\"alpha\":8,"
                       "\"layers\":[0,2]},{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\","
                       "\"bottleneck\":32,\"act\":\"gelu\",\"compose\":\"gated\",\"init\":\"bert\","
                       "\"stack\":\"encoder\"}]}";
    struct delta_spec s;
    if (!CHECKF(delta_spec_parse(json, strlen(json), "spec.json", &s) == VP_OK, "%s", vp_last_error()))
        return;
    CHECK(strcmp(s.name, "custom") == 0 && s.count == 2);
    CHECK(s.modules[0].kind == DELTA_LORA && s.modules[0].at == DELTA_AT_UP && s.modules[0].scale == 2);
    CHECK(!s.modules[0].all_layers && s.modules[0].layer_count == 2 && s.modules[0].layers[1] == 2);
    CHECK(delta_module_has_layer(&s.modules[0], 2) && !delta_module_has_layer(&s.modules[0], 1));
    CHECK(s.modules[1].act == DELTA_ACT_GELU && s.modules[1].compose == DELTA_COMPOSE_GATED);
    CHECK(s.modules[1].init == DELTA_INIT_BERT && s.modules[1].stacks == DELTA_STACK_ENCODER);
    expect_error("[]", "not a JSON object");
    expect_error("{\"modules\":[]}", "non-empty list");
    expect_error("{\"modules\":[{\"at\":\"q\"}]}", "modules[0].kind: is missing");
    expect_error("{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\"},{\"kind\":\"ia3\"}]}",
                 "modules[1].kind: must be one of adapter, lora");
    expect_error("{\"modules\":[{\"kind\":\"adapter\",\"at\":\"q\"}]}", "modules[0].at: \"q\" is not a place");
    expect_error("{\"modules\":[{\"kind\":\"adapter\"}]}", "modules[0].at: is missing");
    expect_error("{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":0}]}", "modules[0].rank: must be an integer");
    expect_error("{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"insert\":\"sequential\"}]}", "always parallel");
    expect_error("{\"modules\":[{\"kind\":\"prefix\",\"layers\":[1,\"x\"]}]}", "modules[0].layers");
    expect_error("{\"modules\":[{\"kind\":\"prefix\",\"stack\":\"middle\"}]}", "modules[0].stack");
    expect_error("{\"modules\":[{\"kind\":\"adapter\",\"at\":\"ffn\",\"per_head\":true}]}", "per_head");
    expect_error("{\"modules\":[{\"kind\":\"adapter\",\"at\":\"ffn\",\"dropout\":2}]}", "modules[0].dropout");
}

static uint64_t count_of(const char *preset, const struct model_arch *a, struct delta_counts *c) {
    struct delta_spec s;
    if (delta_spec_preset(preset, &s) != VP_OK || delta_count_params(&s, a, c) != VP_OK) {
        FAIL("%s: %s", preset, vp_last_error());
        return 0;
    }
    return c->delta_params;
}

static void parameter_counts(void) {
    struct model_arch roberta = arch_of(ROBERTA_BASE), bert = arch_of(BERT_BASE);
    struct delta_counts c;
    /* Published sizes: roberta-base without pooler 124,055,040; bert-base-uncased
     * 109,482,240; PEFT reports 294,912 LoRA parameters (r=8 on q, v) and a
     * 592,130-parameter RoBERTa classification head for 2 labels. */
    CHECK(count_of("lora", &roberta, &c) == 294912);
    CHECK(c.model_params == 124055040ull);
    CHECK(c.head_params == 592130);
    CHECK(count_of("lora", &bert, &c) == 294912);
    CHECK(c.model_params == 109482240ull);
    CHECK(c.head_params == 768 * 2 + 2);
    /* Adapter / PA: 2·r·d + r + d per site per layer. */
    CHECK(count_of("pa", &roberta, &c) == 12ull * (2 * 512 * 768 + 512 + 768));
    CHECK(count_of("adapter", &roberta, &c) == 2ull * 12 * (2 * 64 * 768 + 64 + 768));
    /* Prefix: 2·l·d per layer saved; the reparameterisation trains more. */
    CHECK(count_of("prefix:l=16", &roberta, &c) > 0);
    CHECK(c.module_saved[0] == 12ull * 2 * 16 * 768);
    CHECK(c.module_params[0] == 16ull * 768 + 768ull * 800 + 800 + 800ull * 12 * 2 * 768 + 12 * 2 * 768);
    CHECK(count_of("mh-pa", &roberta, &c) == 12ull * 12 * (2 * 64 * 64 + 64 + 64));
    CHECK(count_of("full", &roberta, &c) == 124055040ull);
    /* BitFit: every bias (q,k,v,o, two LayerNorms, FFN) + embedding LayerNorm. */
    CHECK(count_of("bitfit", &roberta, &c) == 12ull * (4 * 768 + 2 * 768 + 3072 + 768) + 768);
    CHECK(count_of("bitfit", &bert, &c) == 12ull * (4 * 768 + 2 * 768 + 3072 + 768) + 768 + 768);
    /* A module that does not fit the model. */
    struct delta_spec s;
    const char *json = "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"layers\":[12]}]}";
    CHECK(delta_spec_parse(json, strlen(json), "s.json", &s) == VP_OK);
    CHECK(delta_count_params(&s, &roberta, &c) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "layer 12") != NULL);
    json = "{\"modules\":[{\"kind\":\"prefix\",\"stack\":\"cross\"}]}";
    CHECK(delta_spec_parse(json, strlen(json), "s.json", &s) == VP_OK);
    CHECK(delta_count_params(&s, &roberta, &c) == VP_ERROR_BAD_INPUT);
    model_arch_finish(&roberta);
    model_arch_finish(&bert);
}

#define GPT2 "{\"model_type\":\"gpt2\",\"vocab_size\":50257,\"n_embd\":768,\"n_layer\":12,\"n_head\":12}"
#define BART_LARGE "{\"model_type\":\"bart\",\"vocab_size\":50265,\"d_model\":1024,\"encoder_layers\":12," \
    "\"decoder_layers\":12,\"encoder_attention_heads\":16,\"decoder_attention_heads\":16," \
    "\"encoder_ffn_dim\":4096,\"decoder_ffn_dim\":4096,\"max_position_embeddings\":1024}"
#define TINYLLAMA "{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":2048,\"num_hidden_layers\":22," \
    "\"num_attention_heads\":32,\"num_key_value_heads\":4,\"intermediate_size\":5632}"
#define QWEN2_05B "{\"model_type\":\"qwen2\",\"vocab_size\":151936,\"hidden_size\":896,\"num_hidden_layers\":24," \
    "\"num_attention_heads\":14,\"num_key_value_heads\":2,\"intermediate_size\":4864,\"tie_word_embeddings\":true}"

/* Decoder and encoder-decoder models: Hugging Face's num_parameters() for
 * gpt2 (124,439,808), facebook/bart-large (406,291,456), TinyLlama-1.1B
 * (1,100,048,384) and Qwen2-0.5B (494,032,768); the paper's MAM on BART. */
static void decoder_parameter_counts(void) {
    struct model_arch gpt2 = arch_of(GPT2), bart = arch_of(BART_LARGE), llama = arch_of(TINYLLAMA),
                      qwen = arch_of(QWEN2_05B);
    struct delta_counts c;
    CHECK(count_of("full", &gpt2, &c) == 124439808ull && c.model_params == 124439808ull && c.head_params == 0);
    CHECK(count_of("full", &bart, &c) == 406291456ull);
    CHECK(count_of("full", &llama, &c) == 1100048384ull);
    CHECK(count_of("full", &qwen, &c) == 494032768ull);
    /* LoRA r=8 on q and v: PEFT reports 1,126,400 for TinyLlama (22 layers ·
     * 8 · ((2048+2048) + (2048+256))) and 540,672 for Qwen2-0.5B. */
    CHECK(count_of("lora", &llama, &c) == 1126400ull);
    CHECK(count_of("lora", &qwen, &c) == 540672ull);
    /* GPT-2 q and v slices of c_attn: 12 · 8 · (768+768) · 2. */
    CHECK(count_of("lora", &gpt2, &c) == 294912ull);
    /* BART: LoRA on q, v of every attention block (encoder self, decoder
     * self, cross): 36 blocks · 2 · 8 · 2048. */
    CHECK(count_of("lora", &bart, &c) == 36ull * 2 * 8 * 2048);
    /* MAM as the paper places it on BART-large: prefix l=30 on all 36
     * attention blocks (2·30·1024 each) and scaled PA r=512 on all 24 FFNs:
     * 27,414,528 saved, the paper's 6.7% of 406M. */
    CHECK(count_of("mam", &bart, &c) > 0);
    CHECK(c.module_saved[0] == 36ull * 2 * 30 * 1024);
    CHECK(c.module_saved[1] == 24ull * (2 * 512 * 1024 + 512 + 1024));
    const double share = (double)(c.module_saved[0] + c.module_saved[1]) / (double)c.model_params;
    CHECKF(share > 0.0670 && share < 0.0680, "MAM share %.4f", share);
    /* BitFit: LLaMA has no biases; Qwen2 q/k/v only (24 · (896 + 2·128)). */
    CHECK(count_of("bitfit", &llama, &c) == 0);
    CHECK(count_of("bitfit", &qwen, &c) == 24ull * (896 + 2 * 128));
    /* GPT-2: c_attn 3d, c_proj d, c_fc I, mlp c_proj d, ln_1/ln_2 β, + ln_f β. */
    CHECK(count_of("bitfit", &gpt2, &c) == 12ull * (3 * 768 + 768 + 3072 + 768 + 2 * 768) + 768);
    /* A module only for the encoder does not fit a decoder-only model. */
    struct delta_spec s;
    const char *json = "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"stack\":\"encoder\"}]}";
    CHECK(delta_spec_parse(json, strlen(json), "s.json", &s) == VP_OK);
    CHECK(delta_count_params(&s, &llama, &c) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "encoder stack") != NULL);
    model_arch_finish(&gpt2);
    model_arch_finish(&bart);
    model_arch_finish(&llama);
    model_arch_finish(&qwen);
}

/* Found by tests/fuzz/fuzz_delta_spec: presets took sizes and scales that the
 * JSON reader refuses, so a saved delta.json of such a run did not load. */
static void preset_overrides_stay_within_what_json_reads(void) {
    struct delta_spec s, back;
    CHECK(delta_spec_preset("mam:l=1000000", &s) == VP_ERROR_BAD_INPUT);
    CHECKF(strstr(vp_last_error(), "l must be an integer in [1, 65536]") != NULL, "%s", vp_last_error());
    CHECK(delta_spec_preset("adapter:r=65537", &s) == VP_ERROR_BAD_INPUT);
    CHECK(delta_spec_preset("mam:s=1e9", &s) == VP_ERROR_BAD_INPUT);
    CHECKF(strstr(vp_last_error(), "'s=1e9' needs a number in [1e-06, 1e+06]") != NULL, "%s", vp_last_error());
    CHECK(delta_spec_preset("lora:a=1e-7", &s) == VP_ERROR_BAD_INPUT);
    const char *edges[] = {"mam:l=65536,r=65536,s=1e6", "lora:r=1,a=1e-6", "lora:r=65536,a=1e6"};
    for (int i = 0; i < 3; i++) {
        if (!CHECKF(delta_spec_preset(edges[i], &s) == VP_OK, "%s: %s", edges[i], vp_last_error())) continue;
        char *json = delta_spec_to_json(&s);
        CHECKF(json && delta_spec_parse(json, strlen(json), "delta.json", &back) == VP_OK, "%s: %s", edges[i],
               vp_last_error());
        free(json);
    }
}

TH_MAIN(TH_CASE(every_preset_parses), TH_CASE(presets_place_modules_as_the_paper), TH_CASE(overrides),
        TH_CASE(json_spec), TH_CASE(parameter_counts), TH_CASE(decoder_parameter_counts),
        TH_CASE(preset_overrides_stay_within_what_json_reads))
