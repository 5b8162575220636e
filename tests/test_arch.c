/* config.json -> architecture descriptor, and its error messages. */
#include "arch.h"
#include "harness.h"

#include <string.h>

static vp_status parse(const char *json, struct model_arch *a) {
    return model_arch_parse(json, strlen(json), "m/config.json", a);
}

static const char *roberta_base =
    "{\"architectures\":[\"RobertaForSequenceClassification\"],\"model_type\":\"roberta\","
    "\"vocab_size\":50265,\"hidden_size\":768,\"num_hidden_layers\":12,\"num_attention_heads\":12,"
    "\"intermediate_size\":3072,\"hidden_act\":\"gelu\",\"max_position_embeddings\":514,"
    "\"type_vocab_size\":1,\"layer_norm_eps\":1e-05,\"pad_token_id\":1,\"bos_token_id\":0,"
    "\"hidden_dropout_prob\":0.1,\"attention_probs_dropout_prob\":0.1,"
    "\"id2label\":{\"0\":\"negative\",\"1\":\"positive\"}}";

static void roberta_config(void) {
    struct model_arch a;
    if (!CHECKF(parse(roberta_base, &a) == VP_OK, "%s", vp_last_error())) return;
    CHECK(a.family == MODEL_FAMILY_ROBERTA && strcmp(a.model_type, "roberta") == 0);
    CHECK(a.vocab_size == 50265 && a.hidden == 768 && a.layers == 12 && a.heads == 12);
    CHECK(a.head_dim == 64 && a.kv_heads == 12 && a.intermediate == 3072);
    CHECK(a.max_positions == 514 && a.type_vocab_size == 1 && a.pad_token_id == 1);
    CHECK(a.norm_eps == 1e-5 && a.norm == MODEL_NORM_LAYERNORM && !a.pre_norm);
    CHECK(a.act == MODEL_ACT_GELU && a.roberta_positions);
    CHECK(a.num_labels == 2 && strcmp(a.labels[0], "negative") == 0 && strcmp(a.labels[1], "positive") == 0);
    CHECK(a.hidden_dropout == 0.1 && a.classifier_dropout == 0.1);
    model_arch_finish(&a);
}

static void bert_defaults(void) {
    struct model_arch a;
    const char *bert = "{\"model_type\":\"bert\",\"vocab_size\":30522,\"hidden_size\":64,"
                       "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":128,"
                       "\"hidden_act\":\"gelu_new\",\"num_labels\":3}";
    if (!CHECKF(parse(bert, &a) == VP_OK, "%s", vp_last_error())) return;
    CHECK(a.family == MODEL_FAMILY_BERT && !a.roberta_positions);
    CHECK(a.type_vocab_size == 2 && a.pad_token_id == 0 && a.max_positions == 512);
    CHECK(a.norm_eps == 1e-12 && a.act == MODEL_ACT_GELU_TANH);
    CHECK(a.num_labels == 3 && a.labels == NULL && a.head_dim == 16);
    model_arch_finish(&a);
}

static void expect_error(const char *json, const char *needle) {
    struct model_arch a;
    vp_status s = parse(json, &a);
    CHECKF(s == VP_ERROR_BAD_INPUT, "%s: status %s", json, vp_status_name(s));
    CHECKF(strstr(vp_last_error(), needle) != NULL, "message '%s' lacks '%s'", vp_last_error(), needle);
    CHECK(strstr(vp_last_error(), "m/config.json") != NULL);
}

#define BASE "\"vocab_size\":100,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":16"

static void bad_configs(void) {
    expect_error("not json", "not a JSON object");
    expect_error("{\"model_type\":\"xlnet\"," BASE "}", "\"xlnet\" is not supported");
    expect_error("{" BASE "}", "\"model_type\" is missing");
    expect_error("{\"model_type\":\"bert\",\"hidden_size\":8}", "\"vocab_size\" is missing");
    expect_error("{\"model_type\":\"bert\"," BASE ",\"hidden_act\":\"mish\"}", "\"mish\" is not supported");
    expect_error("{\"model_type\":\"bert\",\"vocab_size\":100,\"hidden_size\":9,\"num_hidden_layers\":1,"
                 "\"num_attention_heads\":2,\"intermediate_size\":16}", "not a multiple");
    expect_error("{\"model_type\":\"bert\"," BASE ",\"layer_norm_eps\":\"small\"}", "\"layer_norm_eps\"");
    expect_error("{\"model_type\":\"bert\",\"vocab_size\":100,\"hidden_size\":8,\"num_hidden_layers\":1.5,"
                 "\"num_attention_heads\":2,\"intermediate_size\":16}", "\"num_hidden_layers\" must be an integer");
    expect_error("{\"model_type\":\"bert\"," BASE ",\"pad_token_id\":100}", "outside the vocabulary");
    expect_error("{\"model_type\":\"bert\"," BASE ",\"position_embedding_type\":\"relative_key\"}",
                 "relative_key");
    expect_error("{\"model_type\":\"bert\"," BASE ",\"num_labels\":3,\"id2label\":{\"0\":\"a\",\"1\":\"b\"}}",
                 "has 2 entries but num_labels is 3");
    expect_error("{\"model_type\":\"bert\"," BASE ",\"id2label\":{\"0\":\"a\",\"5\":\"b\"}}",
                 "entry \"5\"");
}

/* gpt2's own config.json (Hugging Face hub), trimmed of task fields. */
static void gpt2_config(void) {
    struct model_arch a;
    const char *gpt2 = "{\"activation_function\":\"gelu_new\",\"architectures\":[\"GPT2LMHeadModel\"],"
                       "\"attn_pdrop\":0.1,\"bos_token_id\":50256,\"embd_pdrop\":0.1,\"eos_token_id\":50256,"
                       "\"initializer_range\":0.02,\"layer_norm_epsilon\":1e-05,\"model_type\":\"gpt2\","
                       "\"n_ctx\":1024,\"n_embd\":768,\"n_head\":12,\"n_layer\":12,\"n_positions\":1024,"
                       "\"resid_pdrop\":0.1,\"vocab_size\":50257}";
    if (!CHECKF(parse(gpt2, &a) == VP_OK, "%s", vp_last_error())) return;
    CHECK(a.family == MODEL_FAMILY_GPT2 && a.stack == MODEL_STACK_DECODER && model_arch_generates(&a));
    CHECK(a.hidden == 768 && a.layers == 12 && a.heads == 12 && a.head_dim == 64 && a.intermediate == 3072);
    CHECK(a.max_positions == 1024 && a.pre_norm && a.final_norm && a.norm == MODEL_NORM_LAYERNORM);
    CHECK(a.act == MODEL_ACT_GELU_TANH && a.tie_word_embeddings && a.qkv_bias && a.ffn_bias);
    CHECK(a.bos_token_id == 50256 && a.eos_token_id == 50256 && a.pad_token_id == -1);
    CHECK(a.norm_eps == 1e-5 && a.positions == MODEL_POS_LEARNED && a.position_offset == 0);
    model_arch_finish(&a);
}

#define LLAMA_SIZES "\"vocab_size\":32000,\"hidden_size\":4096,\"num_hidden_layers\":32," \
                    "\"num_attention_heads\":32,\"intermediate_size\":11008"

static void llama_family_configs(void) {
    struct model_arch a;
    if (!CHECKF(parse("{\"model_type\":\"llama\"," LLAMA_SIZES ",\"rms_norm_eps\":1e-05}", &a) == VP_OK, "%s",
                vp_last_error()))
        return;
    CHECK(a.family == MODEL_FAMILY_LLAMA && a.stack == MODEL_STACK_DECODER && a.kv_heads == 32);
    CHECK(a.norm == MODEL_NORM_RMSNORM && a.pre_norm && a.final_norm && a.act == MODEL_ACT_SWIGLU);
    CHECK(a.positions == MODEL_POS_ROTARY && a.rope_theta == 10000 && a.head_dim == 128);
    CHECK(!a.qkv_bias && !a.out_bias && !a.ffn_bias && !a.tie_word_embeddings && a.sliding_window == 0);
    CHECK(a.bos_token_id == 1 && a.eos_token_id == 2 && a.norm_eps == 1e-5);
    model_arch_finish(&a);

    const char *mistral = "{\"model_type\":\"mistral\"," LLAMA_SIZES ",\"num_key_value_heads\":8,"
                          "\"rope_theta\":1000000.0,\"sliding_window\":null}";
    if (CHECKF(parse(mistral, &a) == VP_OK, "%s", vp_last_error())) {
        CHECK(a.kv_heads == 8 && a.rope_theta == 1e6 && a.sliding_window == 4096);
        model_arch_finish(&a);
    }
    const char *qwen2 = "{\"model_type\":\"qwen2\",\"vocab_size\":151936,\"hidden_size\":896,"
                        "\"num_hidden_layers\":24,\"num_attention_heads\":14,\"num_key_value_heads\":2,"
                        "\"intermediate_size\":4864,\"tie_word_embeddings\":true,\"bos_token_id\":151643,"
                        "\"eos_token_id\":151643,\"use_sliding_window\":false,\"sliding_window\":32768}";
    if (CHECKF(parse(qwen2, &a) == VP_OK, "%s", vp_last_error())) {
        CHECK(a.qkv_bias && !a.out_bias && !a.ffn_bias && a.tie_word_embeddings && a.sliding_window == 0);
        CHECK(a.head_dim == 64 && a.kv_heads == 2 && a.bos_token_id == 151643);
        CHECK(a.eos_count == 1 && a.eos_token_ids[0] == 151643);
        model_arch_finish(&a);
    }
    /* Llama 3 and Qwen2 chat configs list several end tokens. */
    const char *llama3 = "{\"model_type\":\"llama\",\"vocab_size\":128256,\"hidden_size\":2048,"
                         "\"num_hidden_layers\":16,\"num_attention_heads\":32,\"num_key_value_heads\":8,"
                         "\"intermediate_size\":8192,\"bos_token_id\":128000,"
                         "\"eos_token_id\":[128001,128008,128009]}";
    if (CHECKF(parse(llama3, &a) == VP_OK, "%s", vp_last_error())) {
        CHECK(a.eos_count == 3 && a.eos_token_id == 128001 && a.eos_token_ids[1] == 128008 &&
              a.eos_token_ids[2] == 128009);
        model_arch_finish(&a);
    }
    expect_error("{\"model_type\":\"llama\"," LLAMA_SIZES ",\"eos_token_id\":[2,32000]}",
                 "\"eos_token_id\" entry 1 must be a token id in 0..31999");
    expect_error("{\"model_type\":\"llama\"," LLAMA_SIZES ",\"eos_token_id\":[]}",
                 "\"eos_token_id\" lists 0 ids");
    expect_error("{\"model_type\":\"llama\"," LLAMA_SIZES ",\"eos_token_id\":[2,\"x\"]}", "entry 1");
}

#define BART_SIZES "\"d_model\":1024,\"encoder_layers\":12,\"decoder_layers\":12," \
                   "\"encoder_ffn_dim\":4096," \
                   "\"decoder_ffn_dim\":4096"
#define BART_HEADS(n) "\"encoder_attention_heads\":16,\"decoder_attention_heads\":" #n

static void bart_family_configs(void) {
    struct model_arch a;
    const char *bart = "{\"model_type\":\"bart\",\"vocab_size\":50265," BART_SIZES "," BART_HEADS(16) ",\"scale_embedding\":false,"
                       "\"forced_eos_token_id\":2,\"forced_bos_token_id\":0,\"dropout\":0.1}";
    if (!CHECKF(parse(bart, &a) == VP_OK, "%s", vp_last_error())) return;
    CHECK(a.family == MODEL_FAMILY_BART && a.stack == MODEL_STACK_ENCODER_DECODER);
    CHECK(a.layers == 12 && a.decoder_layers == 12 && a.decoder_heads == 16 && a.decoder_intermediate == 4096);
    CHECK(!a.pre_norm && !a.final_norm && a.embed_norm && a.position_offset == 2 && a.embed_scale == 1);
    CHECK(a.pad_token_id == 1 && a.bos_token_id == 0 && a.eos_token_id == 2 && a.decoder_start_token_id == 2);
    CHECK(a.forced_eos_token_id == 2 && a.forced_bos_token_id == 0 && a.act == MODEL_ACT_GELU);
    model_arch_finish(&a);
    const char *mbart = "{\"model_type\":\"mbart\"," BART_SIZES "," BART_HEADS(16) ",\"vocab_size\":250027,\"scale_embedding\":true,"
                        "\"max_position_embeddings\":1024,\"decoder_start_token_id\":250020}";
    if (CHECKF(parse(mbart, &a) == VP_OK, "%s", vp_last_error())) {
        CHECK(a.family == MODEL_FAMILY_MBART && a.pre_norm && a.final_norm && a.embed_scale == 32);
        CHECK(a.decoder_start_token_id == 250020 && a.forced_bos_token_id == -1);
        model_arch_finish(&a);
    }
}

static void bad_decoder_configs(void) {
    expect_error("{\"model_type\":\"gpt2\",\"n_embd\":8,\"n_head\":2,\"n_layer\":1}", "\"vocab_size\" is missing");
    expect_error("{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":9,\"n_head\":2,\"n_layer\":1}",
                 "not a multiple of its 2 heads");
    expect_error("{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_head\":2,\"n_layer\":1,"
                 "\"scale_attn_by_inverse_layer_idx\":true}", "scale_attn_by_inverse_layer_idx");
    expect_error("{\"model_type\":\"llama\"," LLAMA_SIZES ",\"rope_scaling\":{\"type\":\"linear\"}}", "rope_scaling");
    expect_error("{\"model_type\":\"llama\"," LLAMA_SIZES ",\"num_key_value_heads\":5}", "not a multiple of");
    expect_error("{\"model_type\":\"llama\"," LLAMA_SIZES ",\"hidden_act\":\"gelu\"}", "\"gelu\" is not supported");
    expect_error("{\"model_type\":\"llama\"," LLAMA_SIZES ",\"eos_token_id\":32000}", "outside the vocabulary");
    expect_error("{\"model_type\":\"llama\"," LLAMA_SIZES ",\"tie_word_embeddings\":1}", "true or false");
    expect_error("{\"model_type\":\"bart\",\"vocab_size\":99," BART_SIZES "," BART_HEADS(16) ",\"pad_token_id\":99}",
                 "outside the vocabulary");
    expect_error("{\"model_type\":\"bart\",\"vocab_size\":99," BART_SIZES "," BART_HEADS(8) "}", "differ");
    expect_error("{\"model_type\":\"mbart\",\"vocab_size\":10,\"d_model\":8}", "\"encoder_layers\" is missing");
}

/* Found by tests/fuzz/fuzz_arch: a config claiming a million layers made the
 * delta planner's per-layer loops run for seconds (minutes at 1e9). */
static void absurd_depth_is_refused(void) {
    expect_error("{\"model_type\":\"bert\",\"vocab_size\":100,\"hidden_size\":8,\"num_hidden_layers\":1000000,"
                 "\"num_attention_heads\":2,\"intermediate_size\":16}",
                 "1000000 layers is more than vkpeft supports (4096)");
    expect_error("{\"model_type\":\"bart\",\"vocab_size\":100,\"d_model\":8,\"encoder_layers\":1,"
                 "\"decoder_layers\":5000,\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,"
                 "\"encoder_ffn_dim\":16,\"decoder_ffn_dim\":16,\"max_position_embeddings\":16}",
                 "5000 layers is more than vkpeft supports");
    struct model_arch a;
    const char *deep = "{\"model_type\":\"bert\",\"vocab_size\":100,\"hidden_size\":8,\"num_hidden_layers\":4096,"
                       "\"num_attention_heads\":2,\"intermediate_size\":16}";
    CHECKF(model_arch_parse(deep, strlen(deep), "m/config.json", &a) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&a);
}

TH_MAIN(TH_CASE(roberta_config), TH_CASE(bert_defaults), TH_CASE(bad_configs), TH_CASE(gpt2_config),
        TH_CASE(llama_family_configs), TH_CASE(bart_family_configs), TH_CASE(bad_decoder_configs),
        TH_CASE(absurd_depth_is_refused))
