/* Saving and loading trained deltas; see save.h for the folder layout.
 *
 * The saved form is the inference form: a prefix module trained through its
 * reparameterisation MLP is stored as the prefixes the MLP produces (the
 * paper keeps only those after training), so delta.json's spec says
 * reparam 0 and a loaded delta runs without the MLP. */
#include "save.h"

#include "peft.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool file_exists(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* ------------------------------------------------------------------------
 * Prefix collapse: P = MLP(E) per runtime/model/README.md
 * ------------------------------------------------------------------------ */

static struct delta_tensor *reparam_tensor(const struct delta_tensors *t, int module, const char *part,
                                           int64_t s0, int64_t s1, vp_status *status) {
    char name[DELTA_NAME_MAX];
    snprintf(name, sizeof name, "delta%d.reparam.%s", module, part);
    struct delta_tensor *x = delta_tensors_find(t, name);
    bool ok = x && x->ndim == (s1 ? 2 : 1) && x->shape[0] == s0 && (!s1 || x->shape[1] == s1);
    if (!ok && *status == VP_OK)
        *status = vp_fail(VP_ERROR_BAD_INPUT, "collapsing prefix module %d: %s is %s, want (%lld%s%lld)", module,
                          name, x ? "another shape" : "missing", (long long)s0, s1 ? ", " : "",
                          s1 ? (long long)s1 : 0LL);
    return ok ? x : NULL;
}

/* out (L, W) = tanh(E·W0ᵀ + b0)·W2ᵀ + b2, in double, rounded once to fp32. */
static void reparam_mlp(const float *E, const float *W0, const float *b0, const float *W2, const float *b2,
                        int L, int d, int R, int64_t W, float *out, double *h) {
    for (int j = 0; j < L; j++) {
        for (int r = 0; r < R; r++) {
            double acc = b0[r];
            for (int c = 0; c < d; c++) acc += (double)E[(size_t)j * d + c] * W0[(size_t)r * d + c];
            h[r] = tanh(acc);
        }
        for (int64_t w = 0; w < W; w++) {
            double acc = b2[w];
            for (int r = 0; r < R; r++) acc += h[r] * W2[(size_t)w * R + r];
            out[(size_t)j * W + w] = (float)acc;
        }
    }
}

/* Removes every tensor whose name starts with `prefix`. */
static void remove_prefixed(struct delta_tensors *t, const char *prefix) {
    size_t keep = 0, n = strlen(prefix);
    for (size_t k = 0; k < t->count; k++) {
        if (strncmp(t->items[k].name, prefix, n) == 0) {
            free(t->items[k].data);
            continue;
        }
        t->items[keep++] = t->items[k];
    }
    t->count = keep;
}

static vp_status collapse_module(const struct delta_module *m, int i, const struct model_arch *a,
                                 struct delta_tensors *t) {
    const int L = m->size, d = a->hidden, R = m->reparam, kvd = delta_params_prefix_width(a);
    const int nl = delta_module_places(m, a);
    /* Per applied layer ℓ (in order), P_k is the column block [ℓ·2w, ℓ·2w+w) and P_v the next w
     * (w = d, or a decoder's kv_heads·head_dim). */
    const int64_t W = (int64_t)nl * 2 * kvd;
    vp_status s = VP_OK;
    const struct delta_tensor *E = reparam_tensor(t, i, "embedding", L, d, &s);
    const struct delta_tensor *W0 = reparam_tensor(t, i, "0.weight", R, d, &s);
    const struct delta_tensor *b0 = reparam_tensor(t, i, "0.bias", R, 0, &s);
    const struct delta_tensor *W2 = reparam_tensor(t, i, "2.weight", W, R, &s);
    const struct delta_tensor *b2 = reparam_tensor(t, i, "2.bias", W, 0, &s);
    if (s != VP_OK) return s;
    float *out = malloc((size_t)L * (size_t)W * sizeof *out);
    double *h = malloc((size_t)R * sizeof *h);
    if (!out || !h) {
        free(out);
        free(h);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory collapsing prefix module %d", i);
    }
    reparam_mlp(E->data, W0->data, b0->data, W2->data, b2->data, L, d, R, W, out, h);
    free(h);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "delta%d.reparam.", i);
    remove_prefixed(t, prefix); /* E..b2 are gone from here on */
    int block = 0;
    for (int place = 0; place < nl && s == VP_OK; place++) {
        const char *root;
        const int l = delta_params_place(a, m, place, &root);
        for (int kv = 0; kv < 2 && s == VP_OK; kv++) {
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "%s.%d.delta%d.%s", root, l, i, kv ? "prefix_v" : "prefix_k");
            struct delta_tensor *p = delta_tensors_add(t, name, 2, (const int64_t[]){L, kvd});
            if (!p) {
                s = VP_ERROR_HOST_MEMORY;
                break;
            }
            for (int j = 0; j < L; j++)
                memcpy(p->data + (size_t)j * kvd, out + (size_t)j * W + ((size_t)2 * block + kv) * kvd,
                       (size_t)kvd * sizeof *out);
        }
        block++;
    }
    free(out);
    return s;
}

vp_status delta_collapse_prefix(struct delta_spec *spec, const struct model_arch *arch,
                                struct delta_tensors *t) {
    for (int i = 0; i < spec->count; i++) {
        struct delta_module *m = &spec->modules[i];
        if (m->kind != DELTA_PREFIX || m->reparam <= 0) continue;
        vp_status s = collapse_module(m, i, arch, t);
        if (s != VP_OK) return s;
        m->reparam = 0;
    }
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------------ */

static vp_status write_tensors(const char *dir, const struct delta_tensors *t) {
    struct io_tensor_out *out = calloc(t->count + 1, sizeof *out);
    if (!out) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory saving a delta");
    for (size_t k = 0; k < t->count; k++) {
        const struct delta_tensor *d = &t->items[k];
        out[k] = (struct io_tensor_out){d->name, IO_DTYPE_F32, d->ndim, {0}, d->data};
        for (int i = 0; i < d->ndim; i++) out[k].shape[i] = d->shape[i];
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/delta.safetensors", dir);
    vp_status s = io_safetensors_write(path, out, t->count, (const char *const[]){"format", "pt", NULL});
    free(out);
    return s;
}

/* FNV-1a of the base model's config.json, as 16 hex digits ("" when unreadable). */
static void config_hash(const char *model_dir, char hex[17]) {
    char path[4096];
    void *text;
    size_t size;
    hex[0] = 0;
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    if (vp_file_read(path, &text, &size) != VP_OK) {
        vp_clear_error();
        return;
    }
    snprintf(hex, 17, "%016llx", (unsigned long long)vp_hash_bytes(VP_HASH_INIT, text, size));
    free(text);
}

static cJSON *base_model_json(const struct model_arch *a, const char *model_dir) {
    cJSON *b = cJSON_CreateObject();
    if (model_dir) cJSON_AddStringToObject(b, "path", model_dir);
    cJSON_AddStringToObject(b, "model_type", a->model_type);
    cJSON_AddNumberToObject(b, "hidden_size", a->hidden);
    cJSON_AddNumberToObject(b, "num_hidden_layers", a->layers);
    cJSON_AddNumberToObject(b, "num_attention_heads", a->heads);
    cJSON_AddNumberToObject(b, "intermediate_size", a->intermediate);
    cJSON_AddNumberToObject(b, "vocab_size", a->vocab_size);
    if (model_dir) {
        char hex[17];
        config_hash(model_dir, hex);
        if (hex[0]) cJSON_AddStringToObject(b, "config_hash", hex);
    }
    return b;
}

static cJSON *params_json(const struct delta_params *p, const struct delta_spec *saved,
                          const struct delta_tensors *t) {
    struct delta_counts c;
    cJSON *o = cJSON_CreateObject();
    if (delta_count_params(&p->spec, &p->arch, &c) == VP_OK) {
        uint64_t kept = 0;
        for (int i = 0; i < saved->count; i++) kept += c.module_saved[i];
        cJSON_AddNumberToObject(o, "trained", (double)c.delta_params);
        cJSON_AddNumberToObject(o, "saved", (double)kept);
        cJSON_AddNumberToObject(o, "head", (double)c.head_params);
        cJSON_AddNumberToObject(o, "model", (double)c.model_params);
    }
    uint64_t values = 0;
    for (size_t k = 0; k < t->count; k++) values += delta_tensor_numel(&t->items[k]);
    cJSON_AddNumberToObject(o, "file_values", (double)values);
    return o;
}

static vp_status write_json(const char *dir, const struct delta_params *p, const struct delta_spec *saved,
                            const struct delta_tensors *t, const struct delta_save_info *info) {
    char *spec_text = delta_spec_to_json(saved);
    cJSON *root = cJSON_CreateObject(), *spec = spec_text ? cJSON_Parse(spec_text) : NULL;
    free(spec_text);
    if (!root || !spec) {
        cJSON_Delete(root);
        cJSON_Delete(spec);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory saving a delta");
    }
    cJSON_AddStringToObject(root, "vkpeft", vp_version_string());
    cJSON_AddNumberToObject(root, "format", DELTA_FORMAT);
    cJSON_AddItemToObject(root, "spec", spec);
    cJSON_AddItemToObject(root, "params", params_json(p, saved, t));
    cJSON_AddItemToObject(root, "base_model", base_model_json(&p->arch, info ? info->model_dir : NULL));
    cJSON_AddNumberToObject(root, "num_labels", p->arch.num_labels);
    if (info && info->labels) {
        cJSON *labels = cJSON_AddArrayToObject(root, "labels");
        for (int i = 0; i < info->num_labels; i++)
            cJSON_AddItemToArray(labels, cJSON_CreateString(info->labels[i] ? info->labels[i] : ""));
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory saving a delta");
    char path[4096];
    snprintf(path, sizeof path, "%s/delta.json", dir);
    vp_status s = vp_file_write_atomic(path, text, strlen(text));
    free(text);
    return s;
}

/* A PEFT pair left by an earlier save of another delta would describe the
 * wrong weights. */
static vp_status remove_stale_peft(const char *dir) {
    static const char *const names[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int k = 0; k < 2; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        if (unlink(path) != 0 && errno != ENOENT)
            return vp_fail(VP_ERROR_IO, "cannot remove the stale %s: %s", path, strerror(errno));
    }
    return VP_OK;
}

vp_status delta_save(const char *dir, const struct delta_params *params, const struct delta_save_info *info) {
    if (info && info->labels && info->num_labels != params->arch.num_labels)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "delta_save: %d label names for a %d-label head",
                       info->num_labels, params->arch.num_labels);
    vp_status s = vp_mkdir_p(dir);
    if (s != VP_OK) return s;
    struct delta_tensors t = {0};
    struct delta_spec spec = params->spec;
    struct model_arch arch = params->arch;
    s = delta_params_save(params, 0, &t);
    if (s == VP_OK) s = delta_collapse_prefix(&spec, &arch, &t);
    if (s == VP_OK) s = write_tensors(dir, &t);
    const char *why;
    if (s == VP_OK)
        s = delta_peft_supported(&spec, &arch, &why)
                ? delta_peft_export(dir, &spec, &arch, &t, info ? info->model_dir : NULL)
                : remove_stale_peft(dir);
    /* delta.json last: a folder with it has every other file in place. */
    if (s == VP_OK) s = write_json(dir, params, &spec, &t, info);
    delta_tensors_free(&t);
    if (s != VP_OK) vp_fail_context(s, "saving the delta to %s", dir);
    return s;
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

static int json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
}

/* The delta runs only on the model it was trained on: same family and sizes. */
static vp_status check_base(const cJSON *root, const struct model_arch *a, const char *path) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "base_model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "model_type");
    if (!cJSON_IsObject(b) || !cJSON_IsString(type))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"base_model\" with \"model_type\" is missing", path);
    const int hidden = json_int(b, "hidden_size"), layers = json_int(b, "num_hidden_layers");
    const int vocab = json_int(b, "vocab_size"), heads = json_int(b, "num_attention_heads");
    const int ffn = json_int(b, "intermediate_size");
    bool same = strcmp(type->valuestring, a->model_type) == 0 && hidden == a->hidden && layers == a->layers &&
                vocab == a->vocab_size && (heads < 0 || heads == a->heads) && (ffn < 0 || ffn == a->intermediate);
    if (same) return VP_OK;
    const cJSON *where = cJSON_GetObjectItemCaseSensitive(b, "path");
    return vp_fail(VP_ERROR_BAD_INPUT,
                   "%s: the delta was trained on %s%s%s (%s: hidden %d, %d layers, %d heads, FFN %d, vocab %d), "
                   "but the model is %s (hidden %d, %d layers, %d heads, FFN %d, vocab %d); a delta only "
                   "runs on its base model",
                   path, cJSON_IsString(where) ? "'" : "", cJSON_IsString(where) ? where->valuestring : "a model",
                   cJSON_IsString(where) ? "'" : "", type->valuestring, hidden, layers, heads, ffn, vocab,
                   a->model_type, a->hidden, a->layers, a->heads, a->intermediate, a->vocab_size);
}

/* Values the spec's modules keep on `arch` (head excluded: its size follows
 * the labels, and loading it into params checks its shape), or 0 when
 * overlapping bitfit / full modules make the count ambiguous. */
static uint64_t expected_values(const struct delta_spec *spec, const struct delta_counts *c) {
    int full = 0, bitfit = 0;
    uint64_t n = 0;
    for (int i = 0; i < spec->count; i++) {
        full += spec->modules[i].kind == DELTA_FULL;
        bitfit += spec->modules[i].kind == DELTA_BITFIT;
    }
    if (full > 1 || (!full && bitfit > 1)) return 0;
    for (int i = 0; i < spec->count; i++)
        if (!(full && spec->modules[i].kind == DELTA_BITFIT)) n += c->module_saved[i];
    return n;
}

static vp_status read_tensors(const char *dir, const struct delta_spec *spec, const struct model_arch *arch,
                              struct delta_tensors *t) {
    char path[4096];
    snprintf(path, sizeof path, "%s/delta.safetensors", dir);
    struct io_safetensors *f;
    vp_status s = io_safetensors_open(path, &f);
    if (s != VP_OK) return s;
    uint64_t values = 0;
    for (size_t k = 0; k < io_safetensors_count(f) && s == VP_OK; k++) {
        const struct io_tensor *it = io_safetensors_at(f, k);
        if (it->dtype != IO_DTYPE_F32 || it->ndim < 1 || it->ndim > 4) {
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s: tensor %s is %s with %d dimensions; a delta holds F32 "
                        "tensors of 1 to 4 dimensions", path, it->name, io_dtype_name(it->dtype), it->ndim);
            break;
        }
        struct delta_tensor *d = delta_tensors_add(t, it->name, it->ndim, it->shape);
        if (!d) {
            s = VP_ERROR_HOST_MEMORY;
            break;
        }
        memcpy(d->data, it->data, it->nbytes);
        if (strncmp(it->name, "classifier.", 11) != 0) values += it->numel;
    }
    io_safetensors_close(f);
    struct delta_counts c;
    if (s == VP_OK) s = delta_count_params(spec, arch, &c);
    if (s == VP_OK) {
        uint64_t want = expected_values(spec, &c);
        if (want && want != values)
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s holds %llu delta values, but its spec ('%s') needs %llu on "
                        "this model: a tensor is missing or extra", path, (unsigned long long)values, spec->name,
                        (unsigned long long)want);
    }
    return s;
}

/* delta.json's "format" (save.h): 1 when absent; *s set for one this build
 * does not read. */
static int file_format(const cJSON *root, const char *path, vp_status *s) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!f) return 1;
    const bool known = cJSON_IsNumber(f) && (f->valuedouble == 1 || f->valuedouble == 2);
    if (!known && cJSON_IsNumber(f) && f->valuedouble > DELTA_FORMAT)
        *s = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"format\" is %g, from a newer vkpeft; this one (%s) reads delta "
                     "formats 1 to %d: update vkpeft", path, f->valuedouble, vp_version_string(), DELTA_FORMAT);
    else if (!known)
        *s = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"format\" must be 1 or %d (the delta file format)", path,
                     DELTA_FORMAT);
    return known ? (int)f->valuedouble : 0;
}

/* GPT-2's Conv1D weights: [in, out] in Hugging Face's file. */
static bool gpt2_conv1d(const struct model_arch *a, const struct delta_tensor *t) {
    static const char *const ends[] = {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight",
                                       ".mlp.c_proj.weight"};
    const size_t n = strlen(t->name);
    if (a->family != MODEL_FAMILY_GPT2 || t->ndim != 2 || strncmp(t->name, "transformer.h.", 14) != 0) return false;
    for (size_t k = 0; k < sizeof ends / sizeof ends[0]; k++)
        if (n > strlen(ends[k]) && strcmp(t->name + n - strlen(ends[k]), ends[k]) == 0) return true;
    return false;
}

/* Format 1 to 2: a GPT-2 full delta's Conv1D weights hold (out, in) data
 * under their [in, out] header; transposed in place to [in, out]. */
static vp_status upgrade_format1(const struct model_arch *a, struct delta_tensors *t) {
    for (size_t k = 0; k < t->count; k++) {
        struct delta_tensor *d = &t->items[k];
        if (!gpt2_conv1d(a, d)) continue;
        const int64_t in = d->shape[0], out = d->shape[1];
        float *data = malloc((size_t)(in * out) * sizeof *data);
        if (!data) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory converting %s", d->name);
        for (int64_t o = 0; o < out; o++)
            for (int64_t i = 0; i < in; i++) data[i * out + o] = d->data[o * in + i];
        free(d->data);
        d->data = data;
    }
    return VP_OK;
}

static vp_status load_vkpeft(const char *dir, const struct model_arch *arch, struct delta_spec *spec,
                             struct delta_tensors *t) {
    char path[4096];
    snprintf(path, sizeof path, "%s/delta.json", dir);
    void *text;
    size_t size;
    vp_status s = vp_file_read(path, &text, &size);
    if (s != VP_OK) return s;
    cJSON *root = cJSON_ParseWithLength(text, size);
    if (!cJSON_IsObject(root) || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "spec")))
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s is not a vkpeft delta.json (a JSON object with \"spec\" and "
                    "\"base_model\"); was the folder written by another tool?", path);
    const int format = s == VP_OK ? file_format(root, path, &s) : 0;
    if (s == VP_OK) s = check_base(root, arch, path);
    if (s == VP_OK) s = delta_spec_parse(text, size, path, spec);
    cJSON_Delete(root);
    free(text);
    if (s == VP_OK) s = read_tensors(dir, spec, arch, t);
    if (s == VP_OK && format == 1) s = upgrade_format1(arch, t);
    return s;
}

vp_status delta_load(const char *dir, const struct model_arch *arch, struct delta_spec *spec,
                     struct delta_tensors *tensors) {
    memset(spec, 0, sizeof *spec);
    memset(tensors, 0, sizeof *tensors);
    struct stat st;
    if (stat(dir, &st) != 0)
        return vp_fail(VP_ERROR_BAD_INPUT, "delta folder %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s is a file, not a delta folder", dir);
    vp_status s;
    if (file_exists(dir, "delta.json"))
        s = load_vkpeft(dir, arch, spec, tensors);
    else if (file_exists(dir, "adapter_config.json"))
        s = delta_peft_import(dir, arch, spec, tensors);
    else
        return vp_fail(VP_ERROR_BAD_INPUT, "%s holds no delta: neither delta.json (vkpeft) nor "
                       "adapter_config.json (PEFT)", dir);
    if (s != VP_OK) delta_tensors_free(tensors);
    return s;
}

vp_status delta_load_for_model(const char *delta_dir, const char *model_dir, struct delta_spec *spec,
                               struct delta_tensors *out) {
    struct model_arch arch;
    vp_status s = model_arch_load(model_dir, &arch);
    if (s != VP_OK) return s;
    s = delta_load(delta_dir, &arch, spec, out);
    model_arch_finish(&arch);
    return s;
}

vp_status delta_load_into(const char *dir, const struct model_arch *arch, struct delta_params *params,
                          const char *model_dir) {
    struct delta_spec spec;
    struct delta_tensors t = {0};
    vp_status s = delta_load(dir, arch, &spec, &t);
    if (s == VP_OK) s = delta_params_load(params, &t);
    delta_tensors_free(&t);
    if (s != VP_OK) vp_fail_context(s, "loading the delta %s into %s", dir, model_dir);
    return s;
}
