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

TH_MAIN(TH_CASE(roberta_config), TH_CASE(bert_defaults), TH_CASE(bad_configs))
