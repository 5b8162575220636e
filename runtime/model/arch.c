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

static void parse_act(struct reader *r, struct model_arch *a) {
    const char *act = get_string(r, "hidden_act", "gelu");
    static const struct {
        const char *name;
        enum model_act act;
    } acts[] = {{"gelu", MODEL_ACT_GELU},          {"gelu_new", MODEL_ACT_GELU_TANH},
                {"gelu_pytorch_tanh", MODEL_ACT_GELU_TANH}, {"gelu_fast", MODEL_ACT_GELU_TANH},
                {"relu", MODEL_ACT_RELU},          {"silu", MODEL_ACT_SILU},
                {"swish", MODEL_ACT_SILU}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (strcmp(act, acts[i].name) == 0) {
            a->act = acts[i].act;
            return;
        }
    if (r->status == VP_OK)
        r->status = vp_fail(VP_ERROR_BAD_INPUT,
                            "%s: \"hidden_act\": \"%s\" is not supported (gelu, gelu_new, "
                            "gelu_pytorch_tanh, gelu_fast, relu, silu)", r->path, act);
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
    parse_act(r, a);
    parse_labels(r, a);
    if (r->status != VP_OK) return;
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
}

vp_status model_arch_parse(const char *text, size_t size, const char *path, struct model_arch *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(text, size);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vp_fail(VP_ERROR_BAD_INPUT, "%s is not a JSON object; is it a Hugging Face config.json?",
                       path);
    }
    struct reader r = {root, path, VP_OK};
    const char *type = get_string(&r, "model_type", NULL);
    if (r.status == VP_OK && !type)
        r.status = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"model_type\" is missing", path);
    if (r.status == VP_OK) {
        snprintf(out->model_type, sizeof out->model_type, "%s", type);
        if (strcmp(type, "bert") == 0) {
            out->family = MODEL_FAMILY_BERT;
        } else if (strcmp(type, "roberta") == 0) {
            out->family = MODEL_FAMILY_ROBERTA;
        } else {
            r.status = vp_fail(VP_ERROR_BAD_INPUT,
                               "%s: \"model_type\": \"%s\" is not supported; vkpeft trains bert "
                               "and roberta models", path, type);
        }
    }
    if (r.status == VP_OK) parse_encoder(&r, out);
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

void model_arch_finish(struct model_arch *a) {
    if (a->labels)
        for (int i = 0; i < a->num_labels; i++) free(a->labels[i]);
    free(a->labels);
    a->labels = NULL;
}
