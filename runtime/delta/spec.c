/* Delta specs: presets, JSON parsing with field-level messages, and back. */
#include "spec.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const kind_names[] = {"adapter", "lora", "prefix", "bitfit", "full"};
static const char *const at_names[] = {"none", "attn", "ffn", "q", "k", "v", "o", "up", "down"};
static const char *const insert_names[] = {"sequential", "parallel"};
static const char *const act_names[] = {"relu", "gelu", "identity"};
static const char *const compose_names[] = {"add", "scale", "gated"};
static const char *const init_names[] = {"lora", "bert"};

/* Limits shared by presets and JSON, so that a spec written by
 * delta_spec_to_json (a saved delta.json) always reads back. */
#define MAX_MODULE_SIZE 65536 /* bottleneck, rank, prefix length, reparam width */
#define MIN_SCALE 1e-6        /* scale and LoRA alpha */
#define MAX_SCALE 1e6

const char *delta_kind_name(enum delta_kind k) { return kind_names[k]; }
const char *delta_at_name(enum delta_at a) { return at_names[a]; }

const char *const delta_preset_names[] = {"adapter", "adapter-ffn", "prefix", "lora", "pa",
                                          "scaled-pa", "mh-pa", "mam", "bitfit", "full", NULL};

static struct delta_module module_defaults(enum delta_kind kind) {
    struct delta_module m = {
        .kind = kind,
        .act = DELTA_ACT_RELU,
        .compose = DELTA_COMPOSE_ADD,
        .scale = 1.0,
        .dropout = -1.0,
        .all_layers = true,
        .stacks = DELTA_STACK_ENCODER | DELTA_STACK_DECODER | DELTA_STACK_CROSS,
    };
    if (kind == DELTA_ADAPTER) m.size = 64;
    if (kind == DELTA_LORA) {
        m.size = 8;
        m.alpha = 16;
        m.scale = 2;
        m.act = DELTA_ACT_IDENTITY;
        m.compose = DELTA_COMPOSE_SCALE;
        m.insert = DELTA_PARALLEL;
    }
    if (kind == DELTA_PREFIX) {
        m.size = 30;
        m.at = DELTA_AT_ATTN;
        m.insert = DELTA_PARALLEL;
        m.compose = DELTA_COMPOSE_GATED; /* what concatenated prefixes compute */
        m.reparam = 800;
    }
    return m;
}

static struct delta_module adapter(enum delta_at at, enum delta_insert insert, int r,
                                   enum delta_compose compose, double s) {
    struct delta_module m = module_defaults(DELTA_ADAPTER);
    m.at = at;
    m.insert = insert;
    m.size = r;
    m.compose = compose;
    m.scale = s;
    return m;
}

static struct delta_module lora(enum delta_at at, int r, double alpha) {
    struct delta_module m = module_defaults(DELTA_LORA);
    m.at = at;
    m.size = r;
    m.alpha = alpha;
    m.scale = alpha / r;
    return m;
}

/* The paper's methods (PAPER.md). Sizes are the paper's where it gives
 * one; overridable with r=, l=, s=, a=. */
static bool build_preset(const char *name, struct delta_spec *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    struct delta_module *m = s->modules;
    if (strcmp(name, "adapter") == 0) { /* Houlsby: sequential after attention and FFN */
        m[s->count++] = adapter(DELTA_AT_ATTN, DELTA_SEQUENTIAL, 64, DELTA_COMPOSE_ADD, 1);
        m[s->count++] = adapter(DELTA_AT_FFN, DELTA_SEQUENTIAL, 64, DELTA_COMPOSE_ADD, 1);
    } else if (strcmp(name, "adapter-ffn") == 0) { /* Pfeiffer: sequential after the FFN */
        m[s->count++] = adapter(DELTA_AT_FFN, DELTA_SEQUENTIAL, 64, DELTA_COMPOSE_ADD, 1);
    } else if (strcmp(name, "prefix") == 0) {
        m[s->count++] = module_defaults(DELTA_PREFIX);
    } else if (strcmp(name, "lora") == 0) { /* on W_q and W_v, s = alpha / r */
        m[s->count++] = lora(DELTA_AT_Q, 8, 16);
        m[s->count++] = lora(DELTA_AT_V, 8, 16);
    } else if (strcmp(name, "pa") == 0) { /* parallel adapter on the FFN */
        m[s->count++] = adapter(DELTA_AT_FFN, DELTA_PARALLEL, 512, DELTA_COMPOSE_ADD, 1);
    } else if (strcmp(name, "scaled-pa") == 0) {
        m[s->count++] = adapter(DELTA_AT_FFN, DELTA_PARALLEL, 512, DELTA_COMPOSE_SCALE, 4);
    } else if (strcmp(name, "mh-pa") == 0) { /* parallel adapter per attention head */
        m[s->count] = adapter(DELTA_AT_ATTN, DELTA_PARALLEL, 64, DELTA_COMPOSE_ADD, 1);
        m[s->count++].per_head = true;
    } else if (strcmp(name, "mam") == 0) { /* prefix l=30 + scaled PA r=512, s=4 */
        m[s->count++] = module_defaults(DELTA_PREFIX);
        m[s->count++] = adapter(DELTA_AT_FFN, DELTA_PARALLEL, 512, DELTA_COMPOSE_SCALE, 4);
    } else if (strcmp(name, "bitfit") == 0) {
        m[s->count++] = module_defaults(DELTA_BITFIT);
    } else if (strcmp(name, "full") == 0) {
        m[s->count++] = module_defaults(DELTA_FULL);
    } else {
        return false;
    }
    return true;
}

static vp_status apply_override(struct delta_spec *s, const char *key, const char *val) {
    char *end;
    double v = strtod(val, &end);
    if (end == val || *end || !isfinite(v) || v < MIN_SCALE || v > MAX_SCALE)
        return vp_fail(VP_ERROR_BAD_INPUT, "delta preset %s: '%s=%s' needs a number in [%g, %g]",
                       s->name, key, val, MIN_SCALE, MAX_SCALE);
    bool used = false;
    for (int i = 0; i < s->count; i++) {
        struct delta_module *m = &s->modules[i];
        bool integer = floor(v) == v && v >= 1 && v <= MAX_MODULE_SIZE;
        if (strcmp(key, "r") == 0 && (m->kind == DELTA_ADAPTER || m->kind == DELTA_LORA)) {
            if (!integer)
                return vp_fail(VP_ERROR_BAD_INPUT, "delta preset %s: r must be an integer in [1, %d]", s->name,
                               MAX_MODULE_SIZE);
            m->size = (int)v;
            if (m->kind == DELTA_LORA) m->scale = m->alpha / m->size;
            used = true;
        } else if (strcmp(key, "l") == 0 && m->kind == DELTA_PREFIX) {
            if (!integer)
                return vp_fail(VP_ERROR_BAD_INPUT, "delta preset %s: l must be an integer in [1, %d]", s->name,
                               MAX_MODULE_SIZE);
            m->size = (int)v;
            used = true;
        } else if (strcmp(key, "s") == 0 && m->kind == DELTA_ADAPTER) {
            m->scale = v;
            m->compose = DELTA_COMPOSE_SCALE;
            used = true;
        } else if (strcmp(key, "a") == 0 && m->kind == DELTA_LORA) {
            m->alpha = v;
            m->scale = v / m->size;
            used = true;
        }
    }
    if (!used)
        return vp_fail(VP_ERROR_BAD_INPUT,
                       "delta preset %s has nothing that '%s' sets (r: bottleneck or rank, "
                       "l: prefix length, s: adapter scale, a: LoRA alpha)", s->name, key);
    return VP_OK;
}

vp_status delta_spec_preset(const char *text, struct delta_spec *out) {
    char name[64];
    const char *colon = strchr(text, ':');
    size_t n = colon ? (size_t)(colon - text) : strlen(text);
    snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), text);
    if (!build_preset(name, out)) {
        char list[256] = "";
        for (int i = 0; delta_preset_names[i]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     delta_preset_names[i]);
        return vp_fail(VP_ERROR_BAD_INPUT,
                       "'%s' is not a delta preset (%s) nor a spec file or delta folder", name, list);
    }
    if (!colon) return VP_OK;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", colon + 1);
    for (char *save, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) return vp_fail(VP_ERROR_BAD_INPUT, "delta preset %s: '%s' should be key=value", name, kv);
        *eq = 0;
        vp_status s = apply_override(out, kv, eq + 1);
        if (s != VP_OK) return s;
    }
    return VP_OK;
}

/* ---- JSON ------------------------------------------------------------------------ */

struct field_reader {
    const char *path;
    int index;
    vp_status status;
};

static vp_status field_error(struct field_reader *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static vp_status field_error(struct field_reader *r, const char *field, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->status = vp_fail(VP_ERROR_BAD_INPUT, "%s: modules[%d].%s: %s", r->path, r->index, field, msg);
    return r->status;
}

static int enum_field(struct field_reader *r, const cJSON *o, const char *field,
                      const char *const *names, int count, int fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!v || r->status != VP_OK) return fallback;
    if (cJSON_IsString(v))
        for (int i = 0; i < count; i++)
            if (strcmp(v->valuestring, names[i]) == 0) return i;
    char list[256] = "";
    for (int i = 0; i < count; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    field_error(r, field, "must be one of %s", list);
    return fallback;
}

static double number_field(struct field_reader *r, const cJSON *o, const char *field, double fallback,
                           double min, double max, bool integer) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!v || r->status != VP_OK) return fallback;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max) ||
        (integer && floor(v->valuedouble) != v->valuedouble)) {
        field_error(r, field, "must be %s in [%g, %g]", integer ? "an integer" : "a number", min, max);
        return fallback;
    }
    return v->valuedouble;
}

static void parse_layers(struct field_reader *r, const cJSON *o, struct delta_module *m) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "layers");
    if (!v || r->status != VP_OK) return;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "all") == 0) return;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0 || cJSON_GetArraySize(v) > DELTA_MAX_LAYERS) {
        field_error(r, "layers", "must be \"all\" or a list of layer indices");
        return;
    }
    m->all_layers = false;
    for (const cJSON *e = v->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= DELTA_MAX_LAYERS ||
            floor(e->valuedouble) != e->valuedouble) {
            field_error(r, "layers", "entries must be layer indices 0..%d", DELTA_MAX_LAYERS - 1);
            return;
        }
        m->layers[m->layer_count++] = (int)e->valuedouble;
    }
}

static void parse_stacks(struct field_reader *r, const cJSON *o, struct delta_module *m) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "stack");
    if (!v || r->status != VP_OK) return;
    static const char *const names[] = {"encoder", "decoder", "cross"};
    unsigned bits = 0;
    const cJSON *items = cJSON_IsArray(v) ? v->child : v;
    for (const cJSON *e = items; e; e = cJSON_IsArray(v) ? e->next : NULL) {
        int found = -1;
        for (int i = 0; i < 3 && cJSON_IsString(e); i++)
            if (strcmp(e->valuestring, names[i]) == 0) found = i;
        if (found < 0) {
            field_error(r, "stack", "must be encoder, decoder, cross or a list of them");
            return;
        }
        bits |= 1u << found;
    }
    if (!bits) field_error(r, "stack", "must name at least one stack");
    m->stacks = bits;
}

static const enum delta_at adapter_sites[] = {DELTA_AT_ATTN, DELTA_AT_FFN};
static const enum delta_at lora_sites[] = {DELTA_AT_Q, DELTA_AT_K, DELTA_AT_V, DELTA_AT_O,
                                           DELTA_AT_UP, DELTA_AT_DOWN};

static bool site_allowed(enum delta_kind k, enum delta_at at) {
    if (k == DELTA_ADAPTER) return at == adapter_sites[0] || at == adapter_sites[1];
    if (k == DELTA_LORA)
        for (size_t i = 0; i < sizeof lora_sites / sizeof lora_sites[0]; i++)
            if (at == lora_sites[i]) return true;
    if (k == DELTA_PREFIX) return at == DELTA_AT_ATTN;
    return at == DELTA_AT_NONE;
}

static void parse_module(struct field_reader *r, const cJSON *o, struct delta_module *m) {
    if (!cJSON_IsObject(o)) {
        field_error(r, "kind", "the module is not a JSON object");
        return;
    }
    if (!cJSON_GetObjectItemCaseSensitive(o, "kind")) {
        field_error(r, "kind", "is missing (adapter, lora, prefix, bitfit, full)");
        return;
    }
    enum delta_kind kind = (enum delta_kind)enum_field(r, o, "kind", kind_names, 5, 0);
    *m = module_defaults(kind);
    m->at = (enum delta_at)enum_field(r, o, "at", at_names, 9, m->at);
    if (r->status == VP_OK && m->at == DELTA_AT_NONE && (kind == DELTA_ADAPTER || kind == DELTA_LORA))
        field_error(r, "at", "is missing: say where the %s goes (%s)", kind_names[kind],
                    kind == DELTA_ADAPTER ? "attn, ffn" : "q, k, v, o, up, down");
    if (r->status == VP_OK && !site_allowed(kind, m->at))
        field_error(r, "at", "\"%s\" is not a place for a %s module%s", at_names[m->at], kind_names[kind],
                    kind == DELTA_ADAPTER ? " (attn, ffn)"
                    : kind == DELTA_LORA  ? " (q, k, v, o, up, down)"
                    : kind == DELTA_PREFIX ? " (attn)" : " (leave it out)");
    m->insert = (enum delta_insert)enum_field(r, o, "insert", insert_names, 2, m->insert);
    if (r->status == VP_OK && kind != DELTA_ADAPTER && cJSON_GetObjectItemCaseSensitive(o, "insert") &&
        m->insert != DELTA_PARALLEL)
        field_error(r, "insert", "%s modules are always parallel", kind_names[kind]);
    const char *size_field = kind == DELTA_ADAPTER ? "bottleneck" : kind == DELTA_LORA ? "rank" : "length";
    if (kind <= DELTA_PREFIX) m->size = (int)number_field(r, o, size_field, m->size, 1, MAX_MODULE_SIZE, true);
    m->act = (enum delta_act)enum_field(r, o, "act", act_names, 3, m->act);
    m->compose = (enum delta_compose)enum_field(r, o, "compose", compose_names, 3, m->compose);
    m->scale = number_field(r, o, "scale", m->scale, MIN_SCALE, MAX_SCALE, false);
    if (kind == DELTA_LORA) {
        m->alpha = number_field(r, o, "alpha", m->alpha, MIN_SCALE, MAX_SCALE, false);
        m->scale = m->alpha / m->size;
    }
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(o, "per_head");
    if (heads && !cJSON_IsBool(heads) && r->status == VP_OK) field_error(r, "per_head", "must be true or false");
    m->per_head = cJSON_IsTrue(heads);
    if (m->per_head && m->at != DELTA_AT_ATTN && r->status == VP_OK)
        field_error(r, "per_head", "only an adapter at attn can be per head");
    m->init = (enum delta_init)enum_field(r, o, "init", init_names, 2, m->init);
    if (kind == DELTA_PREFIX) m->reparam = (int)number_field(r, o, "reparam", m->reparam, 0, MAX_MODULE_SIZE, true);
    m->dropout = number_field(r, o, "dropout", m->dropout, -1, 0.99, false);
    parse_layers(r, o, m);
    parse_stacks(r, o, m);
}

vp_status delta_spec_parse(const char *json, size_t size, const char *path, struct delta_spec *out) {
    memset(out, 0, sizeof *out);
    cJSON *doc = cJSON_ParseWithLength(json, size);
    /* A saved delta's delta.json holds the spec under "spec" (delta/save.h). */
    const cJSON *root = doc, *wrapped = cJSON_GetObjectItemCaseSensitive(doc, "spec");
    if (cJSON_IsObject(doc) && !cJSON_GetObjectItemCaseSensitive(doc, "modules") && cJSON_IsObject(wrapped))
        root = wrapped;
    const cJSON *mods = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "modules") : NULL;
    vp_status s = VP_OK;
    if (!cJSON_IsObject(root))
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s is not a JSON object; a delta spec looks like "
                    "{\"modules\": [{\"kind\": \"lora\", \"at\": \"q\", \"rank\": 8}]}", path);
    else if (!cJSON_IsArray(mods) || cJSON_GetArraySize(mods) == 0)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"modules\" must be a non-empty list", path);
    else if (cJSON_GetArraySize(mods) > DELTA_MAX_MODULES)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s: %d modules (at most %d)", path,
                    cJSON_GetArraySize(mods), DELTA_MAX_MODULES);
    if (s == VP_OK) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
        snprintf(out->name, sizeof out->name, "%s", cJSON_IsString(name) ? name->valuestring : "custom");
        struct field_reader r = {path, 0, VP_OK};
        for (const cJSON *e = mods->child; e && r.status == VP_OK; e = e->next, r.index++)
            parse_module(&r, e, &out->modules[out->count++]);
        s = r.status;
    }
    cJSON_Delete(doc);
    return s;
}

vp_status delta_spec_load(const char *arg, struct delta_spec *out) {
    struct stat st;
    char path[4096];
    if (stat(arg, &st) != 0) return delta_spec_preset(arg, out);
    if (S_ISDIR(st.st_mode))
        snprintf(path, sizeof path, "%s/delta.json", arg);
    else
        snprintf(path, sizeof path, "%s", arg);
    void *text;
    size_t size;
    vp_status s = vp_file_read(path, &text, &size);
    if (s != VP_OK) return s;
    s = delta_spec_parse(text, size, path, out);
    free(text);
    return s;
}

char *delta_spec_to_json(const struct delta_spec *spec) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", spec->name);
    cJSON *mods = cJSON_AddArrayToObject(root, "modules");
    for (int i = 0; i < spec->count; i++) {
        const struct delta_module *m = &spec->modules[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", kind_names[m->kind]);
        if (m->at != DELTA_AT_NONE) cJSON_AddStringToObject(o, "at", at_names[m->at]);
        if (m->kind <= DELTA_PREFIX) {
            cJSON_AddStringToObject(o, "insert", insert_names[m->insert]);
            cJSON_AddNumberToObject(o, m->kind == DELTA_ADAPTER ? "bottleneck"
                                       : m->kind == DELTA_LORA  ? "rank" : "length", m->size);
            cJSON_AddStringToObject(o, "act", act_names[m->act]);
            cJSON_AddStringToObject(o, "compose", compose_names[m->compose]);
            if (m->kind == DELTA_LORA) cJSON_AddNumberToObject(o, "alpha", m->alpha);
            else cJSON_AddNumberToObject(o, "scale", m->scale);
            cJSON_AddStringToObject(o, "init", init_names[m->init]);
            cJSON_AddNumberToObject(o, "dropout", m->dropout);
        }
        if (m->per_head) cJSON_AddBoolToObject(o, "per_head", true);
        if (m->kind == DELTA_PREFIX) cJSON_AddNumberToObject(o, "reparam", m->reparam);
        if (m->all_layers) cJSON_AddStringToObject(o, "layers", "all");
        else cJSON_AddItemToObject(o, "layers", cJSON_CreateIntArray(m->layers, m->layer_count));
        cJSON *stacks = cJSON_AddArrayToObject(o, "stack");
        static const char *const names[] = {"encoder", "decoder", "cross"};
        for (int b = 0; b < 3; b++)
            if (m->stacks & (1u << b)) cJSON_AddItemToArray(stacks, cJSON_CreateString(names[b]));
        cJSON_AddItemToArray(mods, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

bool delta_module_has_layer(const struct delta_module *m, int layer) {
    if (m->all_layers) return true;
    for (int i = 0; i < m->layer_count; i++)
        if (m->layers[i] == layer) return true;
    return false;
}

/* ------------------------------------------------------------------------
 * --lora-targets: module names per family
 * ------------------------------------------------------------------------ */

struct lora_target {
    const char *name;
    enum delta_at at[3];
};

/* GPT-2's c_attn is one fused Conv1D holding q, k and v: naming it puts
 * LoRA on all three (vkpeft keeps one A, B pair per projection). */
static const struct lora_target gpt2_targets[] = {
    {"c_attn", {DELTA_AT_Q, DELTA_AT_K, DELTA_AT_V}}, {"attn.c_attn", {DELTA_AT_Q, DELTA_AT_K, DELTA_AT_V}},
    {"attn.c_proj", {DELTA_AT_O}}, {"c_fc", {DELTA_AT_UP}}, {"mlp.c_fc", {DELTA_AT_UP}},
    {"mlp.c_proj", {DELTA_AT_DOWN}}, {NULL, {0}}};
static const struct lora_target llama_targets[] = {
    {"q_proj", {DELTA_AT_Q}}, {"k_proj", {DELTA_AT_K}}, {"v_proj", {DELTA_AT_V}}, {"o_proj", {DELTA_AT_O}},
    {"up_proj", {DELTA_AT_UP}}, {"down_proj", {DELTA_AT_DOWN}}, {NULL, {0}}};
/* BART and mBART name the attention output out_proj and the FFN fc1, fc2;
 * a name reaches every block of that kind (encoder and decoder
 * self-attention and cross-attention), as PEFT's target_modules does. */
static const struct lora_target bart_targets[] = {
    {"q_proj", {DELTA_AT_Q}}, {"k_proj", {DELTA_AT_K}}, {"v_proj", {DELTA_AT_V}}, {"out_proj", {DELTA_AT_O}},
    {"fc1", {DELTA_AT_UP}}, {"fc2", {DELTA_AT_DOWN}}, {NULL, {0}}};
static const struct lora_target encoder_targets[] = {
    {"query", {DELTA_AT_Q}}, {"key", {DELTA_AT_K}}, {"value", {DELTA_AT_V}},
    {"attention.output.dense", {DELTA_AT_O}}, {"intermediate.dense", {DELTA_AT_UP}},
    {"output.dense", {DELTA_AT_DOWN}}, {NULL, {0}}};
static const struct lora_target generic_targets[] = {
    {"q", {DELTA_AT_Q}}, {"k", {DELTA_AT_K}}, {"v", {DELTA_AT_V}}, {"o", {DELTA_AT_O}},
    {"up", {DELTA_AT_UP}}, {"down", {DELTA_AT_DOWN}}, {NULL, {0}}};

static const struct lora_target *family_targets(const struct model_arch *a) {
    if (a->family == MODEL_FAMILY_GPT2) return gpt2_targets;
    if (a->family == MODEL_FAMILY_LLAMA) return llama_targets;
    if (a->family == MODEL_FAMILY_BART || a->family == MODEL_FAMILY_MBART) return bart_targets;
    if (a->family == MODEL_FAMILY_BERT || a->family == MODEL_FAMILY_ROBERTA) return encoder_targets;
    return NULL;
}

static const struct lora_target *find_target(const struct lora_target *list, const char *name) {
    for (int i = 0; list && list[i].name; i++)
        if (strcmp(list[i].name, name) == 0) return &list[i];
    return NULL;
}

vp_status delta_spec_set_lora_targets(struct delta_spec *spec, const char *list, const struct model_arch *a) {
    const struct lora_target *fam = family_targets(a);
    char valid[256] = "";
    for (int i = 0; fam && fam[i].name; i++)
        snprintf(valid + strlen(valid), sizeof valid - strlen(valid), "%s%s", i ? ", " : "", fam[i].name);
    int lora = -1;
    for (int i = 0; i < spec->count && lora < 0; i++)
        if (spec->modules[i].kind == DELTA_LORA) lora = i;
    if (lora < 0)
        return vp_fail(VP_ERROR_BAD_INPUT, "--lora-targets: delta '%s' has no LoRA module to place (use --delta "
                       "lora, or a spec with one)", spec->name);
    const struct delta_module tmpl = spec->modules[lora];
    struct delta_spec out = *spec;
    out.count = 0;
    for (int i = 0; i < spec->count; i++)
        if (spec->modules[i].kind != DELTA_LORA) out.modules[out.count++] = spec->modules[i];
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    int named = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        const struct lora_target *t = find_target(fam, tok);
        if (!t) t = find_target(generic_targets, tok);
        if (!t)
            return vp_fail(VP_ERROR_BAD_INPUT, "--lora-targets: '%s' is not a module LoRA can target in a %s "
                           "model; valid: %s%s(or q, k, v, o, up, down)", tok, a->model_type, valid,
                           valid[0] ? " " : "");
        named++;
        for (int k = 0; k < 3 && t->at[k] != DELTA_AT_NONE; k++) {
            bool dup = false;
            for (int i = 0; i < out.count; i++)
                dup |= out.modules[i].kind == DELTA_LORA && out.modules[i].at == t->at[k];
            if (dup) continue;
            if (out.count == DELTA_MAX_MODULES)
                return vp_fail(VP_ERROR_BAD_INPUT, "--lora-targets: more than %d modules", DELTA_MAX_MODULES);
            out.modules[out.count] = tmpl;
            out.modules[out.count++].at = t->at[k];
        }
    }
    if (!named)
        return vp_fail(VP_ERROR_BAD_INPUT, "--lora-targets: give module names separated by commas (valid: %s)",
                       valid);
    *spec = out;
    return VP_OK;
}
