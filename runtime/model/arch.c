/* config.json -> struct model_arch, for the families vkpeft supports. */
#include "arch.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *model_act_name(enum model_act act) {
    switch (act) {
    case MODEL_ACT_GELU: return "gelu";
    case MODEL_ACT_GELU_TANH: return "gelu_tanh";
    case MODEL_ACT_RELU: return "relu";
    case MODEL_ACT_SILU: return "silu";
    case MODEL_ACT_SWIGLU: return "swiglu";
    }
    return "?";
}

struct reader {
    const cJSON *root;
    const char *path;
    vp_status status;
    int vocab;                  /* for token id checks, once read */
};

/* Reads an integer field; `fallback` < 0 means required. */
static int get_int(struct reader *r, const char *key, int fallback, int min) {
    if (r->status != VP_OK) return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) {
        if (fallback >= 0) return fallback;
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: required field \"%s\" is missing", r->path, key);
        return 0;
    }
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble || v->valuedouble < min ||
        v->valuedouble > 1e9) {
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" must be an integer >= %d", r->path, key, min);
        return 0;
    }
    return (int)v->valuedouble;
}

static double get_double(struct reader *r, const char *key, double fallback, double min, double max) {
    if (r->status != VP_OK) return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) return fallback;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max)) {
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" must be a number in [%g, %g]", r->path,
                            key, min, max);
        return 0;
    }
    return v->valuedouble;
}

static bool get_bool(struct reader *r, const char *key, bool fallback) {
    if (r->status != VP_OK) return fallback;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) return fallback;
    if (!cJSON_IsBool(v)) {
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" must be true or false", r->path, key);
        return fallback;
    }
    return cJSON_IsTrue(v);
}

/* A token id field: absent or null gives -1; an id must be in the vocabulary. */
static int get_token(struct reader *r, const char *key, int fallback) {
    int id = get_int(r, key, fallback < 0 ? 0x7fffffff : fallback, 0);
    if (r->status != VP_OK) return -1;
    if (id == 0x7fffffff) return -1;
    if (id >= r->vocab)
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" %d is outside the vocabulary (%d)", r->path,
                            key, id, r->vocab);
    return id;
}

/* eos_token_id: one id, or a list of them (Llama 3, Qwen2 chat models end
 * on any of several). Fills a->eos_token_ids; eos_token_id is the first. */
static void get_eos_tokens(struct reader *r, struct model_arch *a, int fallback) {
    a->eos_count = 0;
    a->eos_token_id = -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, "eos_token_id");
    if (r->status != VP_OK) return;
    if (!cJSON_IsArray(v)) {
        a->eos_token_id = get_token(r, "eos_token_id", fallback);
        if (a->eos_token_id >= 0) a->eos_token_ids[a->eos_count++] = a->eos_token_id;
        return;
    }
    const int n = cJSON_GetArraySize(v);
    if (n < 1 || n > MODEL_MAX_EOS) {
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"eos_token_id\" lists %d ids (1 to %d are supported)",
                            r->path, n, MODEL_MAX_EOS);
        return;
    }
    for (const cJSON *e = v->child; e; e = e->next) {
        const double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(d >= 0 && d < r->vocab && d == (int)d)) {
            r->status = vp_fail(VP_ERROR_BAD_INPUT,
                                "%s: \"eos_token_id\" entry %d must be a token id in 0..%d", r->path,
                                a->eos_count, r->vocab - 1);
            return;
        }
        a->eos_token_ids[a->eos_count++] = (int)d;
    }
    a->eos_token_id = a->eos_token_ids[0];
}

static const char *get_string(struct reader *r, const char *key, const char *fallback) {
    if (r->status != VP_OK) return fallback;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) return fallback;
    if (!cJSON_IsString(v)) {
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" must be a string", r->path, key);
        return fallback;
    }
    return v->valuestring;
}

static void parse_act(struct reader *r, struct model_arch *a, const char *key, const char *fallback) {
    const char *act = get_string(r, key, fallback);
    static const struct {
        const char *name;
        enum model_act act;
    } acts[] = {{"gelu", MODEL_ACT_GELU},          {"gelu_new", MODEL_ACT_GELU_TANH},
                {"gelu_pytorch_tanh", MODEL_ACT_GELU_TANH}, {"gelu_fast", MODEL_ACT_GELU_TANH},
                {"gelu_python", MODEL_ACT_GELU},
                {"relu", MODEL_ACT_RELU},          {"silu", MODEL_ACT_SILU},
                {"swish", MODEL_ACT_SILU}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (strcmp(act, acts[i].name) == 0) {
            a->act = acts[i].act;
            return;
        }
    if (r->status == VP_OK)
        r->status = vp_fail(VP_ERROR_BAD_INPUT,
                            "%s: \"%s\": \"%s\" is not supported (gelu, gelu_new, "
                            "gelu_pytorch_tanh, gelu_fast, gelu_python, relu, silu)", r->path, key, act);
}

/* num_labels, or the size of id2label, with the label names. */
static void parse_labels(struct reader *r, struct model_arch *a) {
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(r->root, "id2label");
    int n = get_int(r, "num_labels", cJSON_IsObject(map) ? cJSON_GetArraySize(map) : 2, 1);
    if (r->status != VP_OK) return;
    if (n > MODEL_MAX_LABELS) {
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: %d labels (at most %d)", r->path, n, MODEL_MAX_LABELS);
        return;
    }
    a->num_labels = n;
    if (!cJSON_IsObject(map)) return;
    if (cJSON_GetArraySize(map) != n) {
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"id2label\" has %d entries but num_labels is %d",
                            r->path, cJSON_GetArraySize(map), n);
        return;
    }
    a->labels = calloc((size_t)n, sizeof *a->labels);
    if (!a->labels) {
        r->status = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", r->path);
        return;
    }
    for (const cJSON *e = map->child; e; e = e->next) {
        char *end;
        long id = strtol(e->string, &end, 10);
        if (*end || id < 0 || id >= n || !cJSON_IsString(e) || a->labels[id]) {
            r->status = vp_fail(VP_ERROR_BAD_INPUT,
                                "%s: \"id2label\" entry \"%s\" must map an unused id 0..%d to a name",
                                r->path, e->string, n - 1);
            return;
        }
        a->labels[id] = strdup(e->valuestring);
    }
}

static void parse_encoder(struct reader *r, struct model_arch *a) {
    a->vocab_size = get_int(r, "vocab_size", -1, 1);
    a->hidden = get_int(r, "hidden_size", -1, 1);
    a->layers = get_int(r, "num_hidden_layers", -1, 1);
    a->heads = get_int(r, "num_attention_heads", -1, 1);
    a->intermediate = get_int(r, "intermediate_size", -1, 1);
    a->max_positions = get_int(r, "max_position_embeddings", 512, 1);
    a->type_vocab_size = get_int(r, "type_vocab_size", 2, 0);
    a->pad_token_id = get_int(r, "pad_token_id", a->family == MODEL_FAMILY_ROBERTA ? 1 : 0, 0);
    a->norm_eps = get_double(r, "layer_norm_eps", 1e-12, 0, 1);
    a->hidden_dropout = get_double(r, "hidden_dropout_prob", 0.1, 0, 1);
    a->attention_dropout = get_double(r, "attention_probs_dropout_prob", 0.1, 0, 1);
    a->classifier_dropout = get_double(r, "classifier_dropout", a->hidden_dropout, 0, 1);
    const char *pos = get_string(r, "position_embedding_type", "absolute");
    if (r->status == VP_OK && strcmp(pos, "absolute") != 0)
        r->status = vp_fail(VP_ERROR_BAD_INPUT,
                            "%s: \"position_embedding_type\": \"%s\" is not supported (absolute)",
                            r->path, pos);
    parse_act(r, a, "hidden_act", "gelu");
    parse_labels(r, a);
    if (r->status != VP_OK) return;
    r->vocab = a->vocab_size;
    a->bos_token_id = get_token(r, "bos_token_id", -1);
    get_eos_tokens(r, a, -1);
    if (a->hidden % a->heads)
        r->status = vp_fail(VP_ERROR_BAD_INPUT,
                            "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                            r->path, a->hidden, a->heads);
    else if (a->pad_token_id >= a->vocab_size)
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: pad_token_id %d is outside the vocabulary (%d)",
                            r->path, a->pad_token_id, a->vocab_size);
    else if (a->family == MODEL_FAMILY_ROBERTA && a->max_positions <= a->pad_token_id + 1)
        r->status = vp_fail(VP_ERROR_BAD_INPUT,
                            "%s: max_position_embeddings %d leaves no positions after pad_token_id %d",
                            r->path, a->max_positions, a->pad_token_id);
    a->kv_heads = a->heads;
    a->head_dim = a->hidden / a->heads;
    a->norm = MODEL_NORM_LAYERNORM;
    a->pre_norm = false;
    a->positions = MODEL_POS_LEARNED;
    a->roberta_positions = a->family == MODEL_FAMILY_ROBERTA;
    a->stack = MODEL_STACK_ENCODER;
    a->qkv_bias = a->out_bias = a->ffn_bias = true;
    a->tie_word_embeddings = true;
    a->embed_norm = true;
    a->embed_scale = 1;
    a->decoder_start_token_id = a->forced_bos_token_id = a->forced_eos_token_id = -1;
}

/* Checks shared by the decoder families once sizes are read. */
static void check_heads(struct reader *r, const struct model_arch *a, int hidden, int heads, const char *what) {
    if (r->status == VP_OK && hidden % heads)
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: %s %d is not a multiple of its %d heads", r->path,
                            what, hidden, heads);
    (void)a;
}

/* Fields every family reads the same way. */
static void parse_common_tokens(struct reader *r, struct model_arch *a, int bos, int eos, int pad) {
    r->vocab = a->vocab_size;
    a->bos_token_id = get_token(r, "bos_token_id", bos);
    get_eos_tokens(r, a, eos);
    a->pad_token_id = get_token(r, "pad_token_id", pad);
    a->decoder_start_token_id = -1;
    a->forced_bos_token_id = get_token(r, "forced_bos_token_id", -1);
    a->forced_eos_token_id = get_token(r, "forced_eos_token_id", -1);
    a->embed_scale = 1;
    a->num_labels = 0;
}

/* GPT-2: pre-LN, learned positions, fused c_attn in Conv1D [in, out] layout,
 * final ln_f, LM head tied to wte. HF defaults where the field is absent. */
static void parse_gpt2(struct reader *r, struct model_arch *a) {
    a->stack = MODEL_STACK_DECODER;
    a->vocab_size = get_int(r, "vocab_size", -1, 1);
    a->hidden = get_int(r, "n_embd", -1, 1);
    a->layers = get_int(r, "n_layer", -1, 1);
    a->heads = get_int(r, "n_head", -1, 1);
    a->intermediate = get_int(r, "n_inner", a->hidden > 0 && a->hidden < (1 << 28) ? 4 * a->hidden : 0, 1);
    a->max_positions = get_int(r, "n_positions", 1024, 1);
    a->norm_eps = get_double(r, "layer_norm_epsilon", 1e-5, 0, 1);
    a->hidden_dropout = get_double(r, "resid_pdrop", 0.1, 0, 1);
    a->attention_dropout = get_double(r, "attn_pdrop", 0.1, 0, 1);
    a->embedding_dropout = get_double(r, "embd_pdrop", 0.1, 0, 1);
    parse_act(r, a, "activation_function", "gelu_new");
    if (get_bool(r, "scale_attn_by_inverse_layer_idx", false) || get_bool(r, "reorder_and_upcast_attn", false) ||
        !get_bool(r, "scale_attn_weights", true))
        if (r->status == VP_OK)
            r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: scale_attn_by_inverse_layer_idx, "
                                "reorder_and_upcast_attn and scale_attn_weights=false are not supported",
                                r->path);
    a->tie_word_embeddings = get_bool(r, "tie_word_embeddings", true);
    if (r->status != VP_OK) return;
    parse_common_tokens(r, a, 50256 < a->vocab_size ? 50256 : -1, 50256 < a->vocab_size ? 50256 : -1, -1);
    check_heads(r, a, a->hidden, a->heads, "n_embd");
    a->kv_heads = a->heads;
    a->head_dim = a->hidden / a->heads;
    a->norm = MODEL_NORM_LAYERNORM;
    a->pre_norm = true;
    a->positions = MODEL_POS_LEARNED;
    a->qkv_bias = a->out_bias = a->ffn_bias = true;
    a->final_norm = true;
}

/* LLaMA, Mistral, Qwen2: pre-RMSNorm, rotary positions, SwiGLU, grouped-query
 * attention; Qwen2 has q/k/v biases. rope_scaling is refused by name. */
static void parse_llama(struct reader *r, struct model_arch *a) {
    const bool qwen2 = strcmp(a->model_type, "qwen2") == 0, mistral = strcmp(a->model_type, "mistral") == 0;
    a->stack = MODEL_STACK_DECODER;
    a->vocab_size = get_int(r, "vocab_size", -1, 1);
    a->hidden = get_int(r, "hidden_size", -1, 1);
    a->layers = get_int(r, "num_hidden_layers", -1, 1);
    a->heads = get_int(r, "num_attention_heads", -1, 1);
    a->kv_heads = get_int(r, "num_key_value_heads", a->heads > 0 ? a->heads : 1, 1);
    a->intermediate = get_int(r, "intermediate_size", -1, 1);
    a->max_positions = get_int(r, "max_position_embeddings", 2048, 1);
    a->norm_eps = get_double(r, "rms_norm_eps", 1e-6, 0, 1);
    a->rope_theta = get_double(r, "rope_theta", 10000, 1, 1e12);
    a->attention_dropout = get_double(r, "attention_dropout", 0, 0, 1);
    a->tie_word_embeddings = get_bool(r, "tie_word_embeddings", false);
    bool bias = get_bool(r, "attention_bias", false);
    a->ffn_bias = get_bool(r, "mlp_bias", false);
    a->qkv_bias = qwen2 || bias;
    a->out_bias = bias;
    bool window = mistral || (qwen2 && get_bool(r, "use_sliding_window", false));
    if (window) a->sliding_window = get_int(r, "sliding_window", 4096, 0);
    const char *act = get_string(r, "hidden_act", "silu");
    if (r->status == VP_OK && strcmp(act, "silu") != 0)
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"hidden_act\": \"%s\" is not supported for %s "
                            "(silu: SwiGLU)", r->path, act, a->model_type);
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(r->root, "rope_scaling");
    if (r->status == VP_OK && scaling && !cJSON_IsNull(scaling))
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"rope_scaling\" is not supported; remove it to "
                            "use plain RoPE with rope_theta", r->path);
    if (r->status != VP_OK) return;
    parse_common_tokens(r, a, qwen2 ? -1 : 1 < a->vocab_size ? 1 : -1, qwen2 ? -1 : 2 < a->vocab_size ? 2 : -1, -1);
    check_heads(r, a, a->hidden, a->heads, "hidden_size");
    a->head_dim = get_int(r, "head_dim", a->heads > 0 ? a->hidden / a->heads : 1, 1);
    if (r->status == VP_OK && a->heads % a->kv_heads)
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: num_attention_heads %d is not a multiple of "
                            "num_key_value_heads %d", r->path, a->heads, a->kv_heads);
    if (r->status == VP_OK && a->head_dim % 2)
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: rotary positions need an even head_dim (%d)", r->path,
                            a->head_dim);
    a->norm = MODEL_NORM_RMSNORM;
    a->pre_norm = true;
    a->act = MODEL_ACT_SWIGLU;
    a->positions = MODEL_POS_ROTARY;
    a->final_norm = true;
}

/* BART (post-LN) and mBART (pre-LN with final encoder and decoder norms):
 * learned positions offset by 2, layernorm_embedding, scale_embedding,
 * cross-attention, LM head tied to the shared embeddings plus
 * final_logits_bias. */
static void parse_bart(struct reader *r, struct model_arch *a) {
    a->stack = MODEL_STACK_ENCODER_DECODER;
    a->vocab_size = get_int(r, "vocab_size", -1, 1);
    a->hidden = get_int(r, "d_model", -1, 1);
    a->layers = get_int(r, "encoder_layers", -1, 1);
    a->heads = get_int(r, "encoder_attention_heads", -1, 1);
    a->intermediate = get_int(r, "encoder_ffn_dim", -1, 1);
    a->decoder_layers = get_int(r, "decoder_layers", -1, 1);
    a->decoder_heads = get_int(r, "decoder_attention_heads", -1, 1);
    a->decoder_intermediate = get_int(r, "decoder_ffn_dim", -1, 1);
    a->max_positions = get_int(r, "max_position_embeddings", 1024, 1);
    a->hidden_dropout = get_double(r, "dropout", 0.1, 0, 1);
    a->attention_dropout = get_double(r, "attention_dropout", 0, 0, 1);
    a->activation_dropout = get_double(r, "activation_dropout", 0, 0, 1);
    a->classifier_dropout = get_double(r, "classifier_dropout", 0, 0, 1);
    bool scale = get_bool(r, "scale_embedding", false);
    a->tie_word_embeddings = get_bool(r, "tie_word_embeddings", true);
    parse_act(r, a, "activation_function", "gelu");
    if (r->status != VP_OK) return;
    parse_common_tokens(r, a, 0, 2, 1);
    a->decoder_start_token_id = get_token(r, "decoder_start_token_id", 2);
    check_heads(r, a, a->hidden, a->heads, "d_model");
    check_heads(r, a, a->hidden, a->decoder_heads, "d_model");
    a->embed_scale = scale ? sqrt((double)a->hidden) : 1;
    a->kv_heads = a->heads;
    a->head_dim = a->hidden / a->heads;
    a->norm = MODEL_NORM_LAYERNORM;
    a->norm_eps = 1e-5;             /* nn.LayerNorm's default; BART has no eps field */
    a->pre_norm = a->family == MODEL_FAMILY_MBART;
    a->final_norm = a->pre_norm;
    a->embed_norm = true;
    a->positions = MODEL_POS_LEARNED;
    a->position_offset = 2;
    a->qkv_bias = a->out_bias = a->ffn_bias = true;
    if (r->status == VP_OK && a->decoder_heads != a->heads)
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: encoder_attention_heads %d and decoder_attention_heads "
                            "%d differ; vkpeft needs them equal", r->path, a->heads, a->decoder_heads);
}

/* Every family: a tied head needs no extra check; a pad id inside the vocabulary. */
static void check_tokens(struct reader *r, const struct model_arch *a) {
    if (a->pad_token_id >= a->vocab_size)
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: pad_token_id %d is outside the vocabulary (%d)",
                            r->path, a->pad_token_id, a->vocab_size);
}

/* Far beyond any published model (about 130 at most); a config.json claiming
 * millions of layers would otherwise make per-layer planning loops run for
 * minutes before anything else fails. */
#define MAX_LAYERS 4096

static void check_depth(struct reader *r, const struct model_arch *a) {
    int most = a->layers > a->decoder_layers ? a->layers : a->decoder_layers;
    if (most > MAX_LAYERS)
        r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: %d layers is more than vkpeft supports (%d); is the "
                            "file corrupt?", r->path, most, MAX_LAYERS);
}

static const struct {
    const char *type;
    enum model_family family;
    void (*parse)(struct reader *r, struct model_arch *a);
} families[] = {
    {"bert", MODEL_FAMILY_BERT, parse_encoder},   {"roberta", MODEL_FAMILY_ROBERTA, parse_encoder},
    {"gpt2", MODEL_FAMILY_GPT2, parse_gpt2},      {"llama", MODEL_FAMILY_LLAMA, parse_llama},
    {"mistral", MODEL_FAMILY_LLAMA, parse_llama}, {"qwen2", MODEL_FAMILY_LLAMA, parse_llama},
    {"bart", MODEL_FAMILY_BART, parse_bart},      {"mbart", MODEL_FAMILY_MBART, parse_bart},
};

const char *model_family_name(enum model_family family) {
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (families[i].family == family) return families[i].type;
    return "?";
}

vp_status model_arch_parse(const char *text, size_t size, const char *path, struct model_arch *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(text, size);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vp_fail(VP_ERROR_BAD_INPUT, "%s is not a JSON object; is it a Hugging Face config.json?",
                       path);
    }
    struct reader r = {root, path, VP_OK, 0};
    const char *type = get_string(&r, "model_type", NULL);
    if (r.status == VP_OK && !type)
        r.status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"model_type\" is missing", path);
    if (r.status == VP_OK) {
        snprintf(out->model_type, sizeof out->model_type, "%s", type);
        size_t i = 0;
        while (i < sizeof families / sizeof families[0] && strcmp(type, families[i].type) != 0) i++;
        if (i == sizeof families / sizeof families[0]) {
            r.status = vp_fail(VP_ERROR_BAD_INPUT,
                               "%s: \"model_type\": \"%s\" is not supported; vkpeft reads bert, "
                               "roberta, gpt2, llama, mistral, qwen2, bart and mbart models", path, type);
        } else {
            out->family = families[i].family;
            families[i].parse(&r, out);
        }
    }
    if (r.status == VP_OK) check_tokens(&r, out);
    if (r.status == VP_OK) check_depth(&r, out);
    cJSON_Delete(root);
    if (r.status != VP_OK) model_arch_finish(out);
    return r.status;
}

vp_status model_arch_load(const char *dir, struct model_arch *out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    void *text;
    size_t size;
    vp_status s = vp_file_read(path, &text, &size);
    if (s != VP_OK) return s;
    s = model_arch_parse(text, size, path, out);
    free(text);
    return s;
}

vp_status model_arch_load_encoder(const char *dir, struct model_arch *out) {
    vp_status s = model_arch_load(dir, out);
    if (s != VP_OK || out->stack == MODEL_STACK_ENCODER) return s;
    model_arch_finish(out);
    return vp_fail(VP_ERROR_BAD_INPUT, "%s/config.json: %s is a %s model; this command runs BERT and RoBERTa "
                   "encoders only so far", dir, out->model_type,
                   out->stack == MODEL_STACK_DECODER ? "decoder-only" : "encoder-decoder");
}

void model_arch_finish(struct model_arch *a) {
    if (a->labels)
        for (int i = 0; i < a->num_labels; i++) free(a->labels[i]);
    free(a->labels);
    a->labels = NULL;
}
