/* Merging a LoRA delta into a copy of its base model; see merge.h. */
#include "merge.h"

#include "params.h"
#include "peft.h"
#include "save.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Labels recorded in delta.json
 * ------------------------------------------------------------------------ */

void delta_labels_free(char **names, int count) {
    for (int i = 0; names && i < count; i++) free(names[i]);
    free(names);
}

vp_status delta_labels_load(const char *delta_dir, char ***names, int *count) {
    *names = NULL;
    *count = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/delta.json", delta_dir);
    if (access(path, F_OK) != 0) return VP_OK; /* a PEFT folder: no names */
    void *text;
    size_t size;
    vp_status s = vp_file_read(path, &text, &size);
    if (s != VP_OK) return s;
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(root, "labels");
    if (!cJSON_IsObject(root)) s = vp_fail(VP_ERROR_BAD_INPUT, "%s is not a JSON object", path);
    int n = cJSON_IsArray(labels) ? cJSON_GetArraySize(labels) : 0;
    char **out = n > 0 && s == VP_OK ? calloc((size_t)n, sizeof *out) : NULL;
    for (int i = 0; out && i < n && s == VP_OK; i++) {
        const cJSON *e = cJSON_GetArrayItem(labels, i);
        if (!cJSON_IsString(e))
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s: \"labels\"[%d] is not a string", path, i);
        else if (!(out[i] = strdup(e->valuestring)))
            s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", path);
    }
    cJSON_Delete(root);
    if (s != VP_OK || !out) {
        delta_labels_free(out, n);
        return s;
    }
    *names = out;
    *count = n;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Tensor values
 * ------------------------------------------------------------------------ */

static bool float_dtype(enum io_dtype t) { return t == IO_DTYPE_F32 || t == IO_DTYPE_F16 || t == IO_DTYPE_BF16; }

/* File values (at any byte offset) as doubles. */
static void file_to_f64(const struct io_tensor *t, double *out) {
    const char *p = t->data;
    for (uint64_t i = 0; i < t->numel; i++) {
        if (t->dtype == IO_DTYPE_F32) {
            float f;
            memcpy(&f, p + i * 4, 4);
            out[i] = f;
        } else {
            uint16_t h;
            memcpy(&h, p + i * 2, 2);
            out[i] = t->dtype == IO_DTYPE_F16 ? vp_f16_to_f32(h) : vp_bf16_to_f32(h);
        }
    }
}

/* Values in `dtype` (malloc'd): each rounded to fp32 first, then to 16 bits. */
static void *f64_to_dtype(const double *v, uint64_t n, enum io_dtype dtype) {
    void *out = malloc(n * io_dtype_size(dtype) + 1);
    if (!out) return NULL;
    for (uint64_t i = 0; i < n; i++) {
        float f = (float)v[i];
        if (dtype == IO_DTYPE_F32) ((float *)out)[i] = f;
        else ((uint16_t *)out)[i] = dtype == IO_DTYPE_F16 ? vp_f32_to_f16(f) : vp_f32_to_bf16(f);
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Where each LoRA lands: the file tensor the model loaders read for a
 * (stack, layer, projection), as the loaders (runtime/model/decoder_load.c,
 * seq2seq_load.c, encoder_load.c) name them
 * ------------------------------------------------------------------------ */

/* A tensor name in the file: name[0] (else name[1], a bare BertModel /
 * RobertaModel checkpoint's name; empty when none). */
struct merge_name {
    char name[2][192];
};

static const char *root_of(const struct model_arch *a) {
    return a->family == MODEL_FAMILY_ROBERTA ? "roberta." : "bert.";
}

static void merge_name_of(const struct model_arch *a, const char *name, struct merge_name *n) {
    memset(n, 0, sizeof *n);
    snprintf(n->name[0], sizeof n->name[0], "%s", name);
    const size_t family = strlen(root_of(a));
    if (a->stack == MODEL_STACK_ENCODER && strncmp(name, root_of(a), family) == 0)
        snprintf(n->name[1], sizeof n->name[1], "%s", name + family);
}

/* ------------------------------------------------------------------------
 * The merge: a plan of what changes which file tensor (every name and
 * shape checked before anything is written), then one tensor at a time
 * summed in double and rounded once to its dtype
 * ------------------------------------------------------------------------ */

/* One LoRA place: module i in layer l of the blocks `root` names
 * (delta_params_place's: encoder.layers, decoder.layers, cross.layers),
 * adding s·B·A to file tensor k, an (out, in) Linear weight or the columns
 * c0 .. c0+out of a Conv1D [in, ld] weight (GPT-2: c_attn holds q, k, v
 * side by side; c_proj and c_fc are [in, out] too). */
struct merge_lora {
    long k;
    const struct delta_module *m;
    const struct delta_tensor *A, *B; /* (r, in), (out, r) */
    bool conv1d;
    int64_t c0;
};

/* A BitFit / full tensor replacing file tensor k's values (GPT-2's Conv1D
 * weights transposed: the decoder holds and trains them (out, in), and a
 * full delta keeps them that way). */
struct merge_model {
    long k;
    const struct delta_tensor *d;
    bool transposed;
};

struct merger {
    const struct model_arch *arch;
    const struct delta_spec *spec;
    const struct delta_tensors *t;
    struct io_weights *w;
    const char *model_dir;
    struct merge_lora *lora;   /* (merged) */
    struct merge_model *model; /* (model_tensors) */
    struct io_tensor_out *out; /* one per file tensor, then the added head tensors */
    void **owned;              /* data we allocated, per out entry */
    size_t count;
    enum io_dtype dtype;
    int merged, head, model_tensors;
};

/* LoRA folds into the weights, and BitFit / full deltas are model tensors
 * already; adapters and prefixes are computation no weight can hold. */
static vp_status check_mergeable(const struct delta_spec *spec, const char *delta_dir) {
    for (int i = 0; i < spec->count; i++) {
        const struct delta_module *m = &spec->modules[i];
        if (m->kind != DELTA_LORA && m->kind != DELTA_BITFIT && m->kind != DELTA_FULL)
            return vp_fail(VP_ERROR_BAD_INPUT,
                           "%s: module %d is %s%s%s; merge folds LoRA (and only LoRA) into the weights (and "
                           "writes BitFit / full tensors): adapters and prefixes add computation that no weight "
                           "can hold, so run that delta on the base model instead (--delta)",
                           delta_dir, i, delta_kind_name(m->kind), m->at != DELTA_AT_NONE ? " at " : "",
                           m->at != DELTA_AT_NONE ? delta_at_name(m->at) : "");
    }
    return VP_OK;
}

/* The index of the file tensor `n` names, or -1. */
static long file_tensor(const struct merger *mg, const struct merge_name *n) {
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; n->name[i][0] && k < io_weights_count(mg->w); k++)
            if (strcmp(io_weights_at(mg->w, k)->name, n->name[i]) == 0) return (long)k;
    return -1;
}

/* Module i's LoRA at place (root, l): the weight of the module PEFT would
 * adapt (peft.h), its A and B, their shapes against it. */
static vp_status plan_lora(struct merger *mg, int i, const char *root, int l) {
    const struct delta_module *m = &mg->spec->modules[i];
    const struct model_arch *a = mg->arch;
    char module[160], na[DELTA_NAME_MAX], nb[DELTA_NAME_MAX];
    struct merge_name name;
    delta_peft_module_name(a, root, l, m->at, module, sizeof module);
    strcat(module, ".weight");
    merge_name_of(a, module, &name);
    snprintf(na, sizeof na, "%s.%d.delta%d.lora_A", root, l, i);
    snprintf(nb, sizeof nb, "%s.%d.delta%d.lora_B", root, l, i);
    struct merge_lora *p = &mg->lora[mg->merged];
    *p = (struct merge_lora){file_tensor(mg, &name), m, delta_tensors_find(mg->t, na), delta_tensors_find(mg->t, nb),
                             a->family == MODEL_FAMILY_GPT2, 0};
    if (p->conv1d) p->c0 = m->at == DELTA_AT_K ? a->hidden : m->at == DELTA_AT_V ? 2 * (int64_t)a->hidden : 0;
    if (p->k < 0)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: the weights have no tensor %s, which the LoRA on %s of %s.%d adapts; "
                       "is it the delta's base model?", mg->model_dir, module, delta_at_name(m->at), root, l);
    const struct io_tensor *it = io_weights_at(mg->w, (size_t)p->k);
    const struct delta_tensor *A = p->A, *B = p->B;
    const int64_t r = m->size, out = B ? B->shape[0] : 0, in = A && A->ndim == 2 ? A->shape[1] : 0;
    const int64_t rows = it->ndim == 2 ? it->shape[0] : 0, cols = it->ndim == 2 ? it->shape[1] : 0;
    const bool fits = p->conv1d ? rows == in && p->c0 + out <= cols : rows == out && cols == in;
    if (!A || !B || A->ndim != 2 || B->ndim != 2 || A->shape[0] != r || B->shape[1] != r || !fits ||
        !float_dtype(it->dtype))
        return vp_fail(VP_ERROR_BAD_INPUT, "merging the LoRA on %s of %s.%d: %s (%s, %lld × %lld) does not take "
                       "A %s and B %s of rank %d", delta_at_name(m->at), root, l, it->name, io_dtype_name(it->dtype),
                       (long long)rows, (long long)cols, A ? "(r, in)" : "(missing)", B ? "(out, r)" : "(missing)",
                       m->size);
    mg->merged++;
    return VP_OK;
}

/* GPT-2's Conv1D weights, [in, out] in the file. */
static bool gpt2_conv1d(const struct model_arch *a, const struct io_tensor *it) {
    static const char *const ends[] = {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight",
                                       ".mlp.c_proj.weight"};
    const size_t n = strlen(it->name);
    if (a->family != MODEL_FAMILY_GPT2 || it->ndim != 2 || strncmp(it->name, "transformer.h.", 14) != 0) return false;
    for (size_t k = 0; k < sizeof ends / sizeof ends[0]; k++)
        if (n > strlen(ends[k]) && strcmp(it->name + n - strlen(ends[k]), ends[k]) == 0) return true;
    return false;
}

/* A model tensor BitFit / full trained (a Hugging Face name), not a
 * module's (…layers.{l}.delta{i}.*, delta{i}.reparam.*) or the head. */
static bool model_tensor(const char *name) {
    return !strstr(name, ".delta") && strncmp(name, "delta", 5) != 0 && strncmp(name, "classifier.", 11) != 0;
}

/* Every trained model tensor must be in the file with its size. */
static vp_status plan_model(struct merger *mg, const struct delta_tensor *d) {
    struct merge_name name;
    merge_name_of(mg->arch, d->name, &name);
    const long k = file_tensor(mg, &name);
    const struct io_tensor *it = k >= 0 ? io_weights_at(mg->w, (size_t)k) : NULL;
    if (!it || it->numel != delta_tensor_numel(d) || !float_dtype(it->dtype))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: the weights have no float tensor %s of %llu values, which the "
                       "delta trains; is it the delta's base model?", mg->model_dir, d->name,
                       (unsigned long long)delta_tensor_numel(d));
    mg->model[mg->model_tensors++] = (struct merge_model){k, d, gpt2_conv1d(mg->arch, it)};
    return VP_OK;
}

static vp_status plan(struct merger *mg) {
    int places = 0;
    for (int i = 0; i < mg->spec->count; i++)
        if (mg->spec->modules[i].kind == DELTA_LORA) places += delta_module_places(&mg->spec->modules[i], mg->arch);
    mg->lora = calloc((size_t)places + 1, sizeof *mg->lora);
    mg->model = calloc(mg->t->count + 1, sizeof *mg->model);
    if (!mg->lora || !mg->model) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory merging");
    vp_status s = VP_OK;
    for (size_t j = 0; j < mg->t->count && s == VP_OK; j++)
        if (model_tensor(mg->t->items[j].name)) s = plan_model(mg, &mg->t->items[j]);
    for (int i = 0; i < mg->spec->count && s == VP_OK; i++) {
        const char *root;
        if (mg->spec->modules[i].kind != DELTA_LORA) continue;
        for (int place = 0, l; s == VP_OK && (l = delta_params_place(mg->arch, &mg->spec->modules[i], place,
                                                                      &root)) >= 0; place++)
            s = plan_lora(mg, i, root, l);
    }
    return s;
}

/* acc += s·B·A over the projection's elements (o, c). */
static void add_lora(double *acc, const struct merge_lora *p, int64_t cols) {
    const int64_t r = p->m->size, out = p->B->shape[0], in = p->A->shape[1];
    const int64_t row_step = p->conv1d ? 1 : cols, col_step = p->conv1d ? cols : 1;
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < r; j++) {
            const double sb = p->m->scale * p->B->data[o * r + j];
            const float *a = p->A->data + j * in;
            double *w = acc + p->c0 + o * row_step;
            for (int64_t c = 0; c < in; c++) w[c * col_step] += sb * a[c];
        }
}

/* File tensor k's new values, when the plan changes it: the trained
 * tensor's (or the file's), plus every LoRA on it in spec order, in
 * double, rounded once to the tensor's dtype into owned[k]. */
static vp_status merge_tensor(struct merger *mg, long k) {
    const struct merge_model *model = NULL;
    bool lora = false;
    for (int j = 0; j < mg->model_tensors; j++)
        if (mg->model[j].k == k) model = &mg->model[j];
    for (int j = 0; j < mg->merged; j++) lora |= mg->lora[j].k == k;
    if (!model && !lora) return VP_OK;
    const struct io_tensor *it = io_weights_at(mg->w, (size_t)k);
    double *acc = malloc((size_t)it->numel * sizeof *acc);
    if (!acc) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory merging %s", it->name);
    const int64_t rows = it->ndim == 2 ? it->shape[0] : 1, cols = (int64_t)it->numel / rows;
    if (model)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                acc[r * cols + c] = model->d->data[model->transposed ? c * rows + r : r * cols + c];
    else
        file_to_f64(it, acc);
    for (int j = 0; j < mg->merged; j++)
        if (mg->lora[j].k == k) add_lora(acc, &mg->lora[j], cols);
    mg->owned[k] = f64_to_dtype(acc, it->numel, it->dtype);
    free(acc);
    if (!mg->owned[k]) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory merging %s", it->name);
    mg->out[k].data = mg->owned[k];
    return VP_OK;
}

/* The delta's head tensors replace the file's (or are added), in the
 * base's matrix dtype. */
static vp_status take_head(struct merger *mg) {
    for (size_t k = 0; k < mg->t->count; k++) {
        const struct delta_tensor *h = &mg->t->items[k];
        if (strncmp(h->name, "classifier.", 11) != 0) continue;
        size_t at = mg->count;
        for (size_t j = 0; j < io_weights_count(mg->w); j++)
            if (strcmp(io_weights_at(mg->w, j)->name, h->name) == 0) at = j;
        if (at == mg->count) mg->count++;
        const uint64_t n = delta_tensor_numel(h);
        double *v = malloc(n * sizeof *v + 1);
        if (!v) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory merging the head");
        for (uint64_t i = 0; i < n; i++) v[i] = h->data[i];
        free(mg->owned[at]);
        mg->owned[at] = f64_to_dtype(v, n, mg->dtype);
        free(v);
        if (!mg->owned[at]) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory merging the head");
        mg->out[at] = (struct io_tensor_out){h->name, mg->dtype, h->ndim, {0}, mg->owned[at]};
        for (int i = 0; i < h->ndim; i++) mg->out[at].shape[i] = h->shape[i];
        mg->head++;
    }
    return VP_OK;
}

/* The dtype of the base's matrices: its token embedding table's. */
static enum io_dtype model_dtype(const struct io_weights *w, const struct model_arch *a) {
    char name[128];
    switch (a->family) {
    case MODEL_FAMILY_GPT2: snprintf(name, sizeof name, "transformer.wte.weight"); break;
    case MODEL_FAMILY_LLAMA: snprintf(name, sizeof name, "model.embed_tokens.weight"); break;
    case MODEL_FAMILY_BART:
    case MODEL_FAMILY_MBART: snprintf(name, sizeof name, "model.shared.weight"); break;
    default: snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight", root_of(a)); break;
    }
    const struct io_tensor *t = io_weights_find(w, name);
    if (!t && !model_arch_generates(a)) t = io_weights_find(w, name + strlen(root_of(a))); /* bare */
    return t && float_dtype(t->dtype) ? t->dtype : IO_DTYPE_F32;
}

/* The output list (every file tensor as it is) and the plan. */
static vp_status prepare(struct merger *mg) {
    const size_t n = io_weights_count(mg->w), cap = n + mg->t->count + 1;
    mg->out = calloc(cap, sizeof *mg->out);
    mg->owned = calloc(cap, sizeof *mg->owned);
    if (!mg->out || !mg->owned) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory merging");
    mg->count = n;
    mg->dtype = model_dtype(mg->w, mg->arch);
    for (size_t k = 0; k < n; k++) {
        const struct io_tensor *it = io_weights_at(mg->w, k);
        mg->out[k] = (struct io_tensor_out){it->name, it->dtype, it->ndim, {0}, it->data};
        for (int i = 0; i < it->ndim; i++) mg->out[k].shape[i] = it->shape[i];
    }
    return plan(mg);
}

static vp_status write_weights(struct merger *mg, const char *out_dir) {
    vp_status s = VP_OK;
    for (size_t k = 0; k < io_weights_count(mg->w) && s == VP_OK; k++) s = merge_tensor(mg, (long)k);
    if (s == VP_OK && !model_arch_generates(mg->arch)) s = take_head(mg);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    if (s == VP_OK)
        s = io_safetensors_write(path, mg->out, mg->count, (const char *const[]){"format", "pt", NULL});
    return s;
}

/* ------------------------------------------------------------------------
 * config.json and the tokenizer
 * ------------------------------------------------------------------------ */

static void set_item(cJSON *o, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else cJSON_AddItemToObject(o, key, v);
}

/* The base's config.json with the head's labels: names from delta.json,
 * else the base's own when the count matches, else LABEL_i (Hugging Face's
 * default). */
static vp_status write_config(const char *model_dir, const char *delta_dir, const char *out_dir,
                              const struct model_arch *a, int num_labels) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    void *text;
    size_t size;
    vp_status s = vp_file_read(path, &text, &size);
    if (s != VP_OK) return s;
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vp_fail(VP_ERROR_BAD_INPUT, "%s is not a JSON object", path);
    }
    char **names = NULL;
    int count = 0;
    s = delta_labels_load(delta_dir, &names, &count);
    cJSON *arch = cJSON_CreateArray();
    cJSON_AddItemToArray(arch, cJSON_CreateString(a->family == MODEL_FAMILY_ROBERTA
                                                      ? "RobertaForSequenceClassification"
                                                      : "BertForSequenceClassification"));
    set_item(root, "architectures", arch);
    const bool keep = count != num_labels && num_labels == a->num_labels && a->labels;
    if (s == VP_OK && !keep) {
        cJSON *id2label = cJSON_CreateObject(), *label2id = cJSON_CreateObject();
        for (int i = 0; i < num_labels; i++) {
            char id[16], fallback[32];
            snprintf(id, sizeof id, "%d", i);
            snprintf(fallback, sizeof fallback, "LABEL_%d", i);
            const char *name = count == num_labels && names[i][0] ? names[i] : fallback;
            cJSON_AddItemToObject(id2label, id, cJSON_CreateString(name));
            if (!cJSON_GetObjectItemCaseSensitive(label2id, name)) cJSON_AddNumberToObject(label2id, name, i);
        }
        set_item(root, "num_labels", cJSON_CreateNumber(num_labels));
        set_item(root, "id2label", id2label);
        set_item(root, "label2id", label2id);
    }
    delta_labels_free(names, count);
    char *out = s == VP_OK ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (s != VP_OK) return s;
    if (!out) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory writing config.json");
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    s = vp_file_write_atomic(path, out, strlen(out));
    free(out);
    return s;
}

/* The tokenizer's files (Hugging Face's and SentencePiece models) and
 * generation_config.json, those the base folder has. */
static vp_status copy_tokenizer(const char *model_dir, const char *out_dir, int *copied) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json",
                                        "tokenizer.model", "sentencepiece.bpe.model", "generation_config.json"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char src[4096];
        snprintf(src, sizeof src, "%s/%s", model_dir, files[k]);
        if (access(src, F_OK) != 0) continue;
        vp_status s = vp_file_copy_atomic(model_dir, out_dir, files[k]);
        if (s != VP_OK) return s;
        (*copied)++;
    }
    return VP_OK;
}

/* ------------------------------------------------------------------------ */

static bool same_folder(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && strcmp(ra, rb) == 0;
}

/* Labels of the merged head: the delta's head output rows, else the base's. */
static int head_labels(const struct delta_tensors *t, const struct model_arch *a) {
    const struct delta_tensor *h = delta_tensors_find(t, a->family == MODEL_FAMILY_ROBERTA
                                                             ? "classifier.out_proj.weight"
                                                             : "classifier.weight");
    return h && h->ndim == 2 ? (int)h->shape[0] : a->num_labels;
}

vp_status delta_merge(const char *model_dir, const char *delta_dir, const char *out_dir,
                      struct delta_merge_info *info) {
    struct model_arch arch;
    struct delta_spec spec;
    struct delta_tensors t = {0};
    vp_status s = model_arch_load(model_dir, &arch);
    if (s != VP_OK) return s;
    /* A vkpeft delta says what it holds before its tensors are read. */
    char path[4096];
    snprintf(path, sizeof path, "%s/delta.json", delta_dir);
    if (access(path, F_OK) == 0) {
        s = delta_spec_load(delta_dir, &spec);
        if (s == VP_OK) s = check_mergeable(&spec, delta_dir);
    }
    if (s == VP_OK) s = delta_load(delta_dir, &arch, &spec, &t);
    if (s == VP_OK) s = check_mergeable(&spec, delta_dir);
    if (s == VP_OK && same_folder(model_dir, out_dir))
        s = vp_fail(VP_ERROR_BAD_INPUT, "--out %s is the base model's folder; the frozen model is never "
                    "modified: write the merged model to a new folder", out_dir);
    const bool generates = model_arch_generates(&arch);
    struct merger mg = {.arch = &arch, .spec = &spec, .t = &t, .model_dir = model_dir};
    if (s == VP_OK) s = io_weights_open(model_dir, &mg.w);
    if (s == VP_OK) s = prepare(&mg); /* every name and shape checked before the folder is made */
    if (s == VP_OK) s = vp_mkdir_p(out_dir);
    if (s == VP_OK) s = write_weights(&mg, out_dir);
    const int labels = generates ? 0 : head_labels(&t, &arch);
    const int num_labels = mg.head ? labels : generates ? 0 : arch.num_labels;
    int copied = 0;
    if (s == VP_OK) s = copy_tokenizer(model_dir, out_dir, &copied);
    /* config.json last: a folder with it is a complete model. A language
     * model's is the base's as it is (no head changes). */
    if (s == VP_OK)
        s = generates ? vp_file_copy_atomic(model_dir, out_dir, "config.json")
                      : write_config(model_dir, delta_dir, out_dir, &arch, num_labels);
    if (s == VP_OK && info)
        *info = (struct delta_merge_info){spec,     mg.merged, mg.model_tensors, mg.head, num_labels,
                                          mg.dtype, copied,    mg.count};
    for (size_t k = 0; mg.owned && k < mg.count; k++) free(mg.owned[k]);
    free(mg.lora);
    free(mg.model);
    free(mg.owned);
    free(mg.out);
    if (mg.w) io_weights_close(mg.w);
    delta_tensors_free(&t);
    model_arch_finish(&arch);
    if (s != VP_OK) vp_fail_context(s, "merging %s into %s", delta_dir, model_dir);
    return s;
}
