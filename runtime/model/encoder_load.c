/* The encoder's pretrained tensors: their Hugging Face names and shapes,
 * matching them with the model file, uploading them into the frozen pool
 * (or into the params, for the tensors bitfit / full train), and access to
 * every tensor by name. */
#include "encoder.h"
#include "safetensors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Names and shapes
 * ------------------------------------------------------------------------ */

struct lister {
    struct encoder_tensor_desc *out;
    int count;
};

static void emit(struct lister *L, int layer, bool bias, bool matrix, int64_t s0, int64_t s1,
                 const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void emit(struct lister *L, int layer, bool bias, bool matrix, int64_t s0, int64_t s1,
                 const char *fmt, ...) {
    if (L->out) {
        struct encoder_tensor_desc *d = &L->out[L->count];
        memset(d, 0, sizeof *d);
        va_list ap;
        va_start(ap, fmt);
        model_tensor_name_shape(d->name, sizeof d->name, &d->ndim, d->shape, s0, s1, fmt, ap);
        va_end(ap);
        d->layer = layer;
        d->bias = bias;
        d->matrix = matrix;
    }
    L->count++;
}

static const char *root_of(const struct model_arch *a) {
    return a->family == MODEL_FAMILY_BERT ? "bert." : "roberta.";
}

int encoder_model_tensors(const struct model_arch *a, struct encoder_tensor_desc *out) {
    struct lister L = {out, 0};
    const char *r = root_of(a);
    const int64_t d = a->hidden, kv = (int64_t)a->kv_heads * a->head_dim, I = a->intermediate;
    emit(&L, -1, false, true, a->vocab_size, d, "%sembeddings.word_embeddings.weight", r);
    emit(&L, -1, false, true, a->max_positions, d, "%sembeddings.position_embeddings.weight", r);
    if (a->type_vocab_size > 0)
        emit(&L, -1, false, true, a->type_vocab_size, d, "%sembeddings.token_type_embeddings.weight", r);
    emit(&L, -1, false, false, d, 0, "%sembeddings.LayerNorm.weight", r);
    emit(&L, -1, true, false, d, 0, "%sembeddings.LayerNorm.bias", r);
    for (int l = 0; l < a->layers; l++) {
        static const char *const proj[3] = {"query", "key", "value"};
        for (int k = 0; k < 3; k++) {
            int64_t rows = k == 0 ? d : kv;
            emit(&L, l, false, true, rows, d, "%sencoder.layer.%d.attention.self.%s.weight", r, l, proj[k]);
            emit(&L, l, true, false, rows, 0, "%sencoder.layer.%d.attention.self.%s.bias", r, l, proj[k]);
        }
        emit(&L, l, false, true, d, d, "%sencoder.layer.%d.attention.output.dense.weight", r, l);
        emit(&L, l, true, false, d, 0, "%sencoder.layer.%d.attention.output.dense.bias", r, l);
        emit(&L, l, false, false, d, 0, "%sencoder.layer.%d.attention.output.LayerNorm.weight", r, l);
        emit(&L, l, true, false, d, 0, "%sencoder.layer.%d.attention.output.LayerNorm.bias", r, l);
        emit(&L, l, false, true, I, d, "%sencoder.layer.%d.intermediate.dense.weight", r, l);
        emit(&L, l, true, false, I, 0, "%sencoder.layer.%d.intermediate.dense.bias", r, l);
        emit(&L, l, false, true, d, I, "%sencoder.layer.%d.output.dense.weight", r, l);
        emit(&L, l, true, false, d, 0, "%sencoder.layer.%d.output.dense.bias", r, l);
        emit(&L, l, false, false, d, 0, "%sencoder.layer.%d.output.LayerNorm.weight", r, l);
        emit(&L, l, true, false, d, 0, "%sencoder.layer.%d.output.LayerNorm.bias", r, l);
    }
    if (a->family == MODEL_FAMILY_BERT) {
        emit(&L, -1, false, true, d, d, "bert.pooler.dense.weight");
        emit(&L, -1, true, false, d, 0, "bert.pooler.dense.bias");
    }
    return L.count;
}

int encoder_head_tensors(const struct model_arch *a, struct encoder_tensor_desc *out) {
    struct lister L = {out, 0};
    const int64_t d = a->hidden, C = a->num_labels;
    if (a->head == MODEL_HEAD_MLM) {
        const bool bert = a->family == MODEL_FAMILY_BERT;
        const char *r = bert ? "cls.predictions." : "lm_head.";
        const char *t = bert ? "transform." : "";
        emit(&L, -1, false, true, d, d, "%s%sdense.weight", r, t);
        emit(&L, -1, true, false, d, 0, "%s%sdense.bias", r, t);
        emit(&L, -1, false, false, d, 0, "%s%s.weight", r, bert ? "transform.LayerNorm" : "layer_norm");
        emit(&L, -1, true, false, d, 0, "%s%s.bias", r, bert ? "transform.LayerNorm" : "layer_norm");
        emit(&L, -1, true, false, a->vocab_size, 0, "%sbias", r);
    } else if (a->family == MODEL_FAMILY_BERT) {
        emit(&L, -1, false, true, C, d, "classifier.weight");
        emit(&L, -1, true, false, C, 0, "classifier.bias");
    } else {
        emit(&L, -1, false, true, d, d, "classifier.dense.weight");
        emit(&L, -1, true, false, d, 0, "classifier.dense.bias");
        emit(&L, -1, false, true, C, d, "classifier.out_proj.weight");
        emit(&L, -1, true, false, C, 0, "classifier.out_proj.bias");
    }
    return L.count;
}

/* ------------------------------------------------------------------------
 * Matching the file
 * ------------------------------------------------------------------------ */

/* The file's tensor for `name`, also without the family prefix (bare
 * BertModel / RobertaModel checkpoints). */
static const struct io_tensor *find_in_file(const struct encoder *e, const char *name) {
    const struct io_tensor *t = io_weights_find(e->file, name);
    const char *root = root_of(&e->arch);
    size_t n = strlen(root);
    if (!t && strncmp(name, root, n) == 0) t = io_weights_find(e->file, name + n);
    return t;
}

/* Each tensor's dtype on the device: trained tensors and vectors f32,
 * frozen matrices and tables the storage type. */
static void set_dtypes(struct encoder *e) {
    for (int k = 0; k < e->weight_count; k++) {
        struct enc_weight *w = &e->weights[k];
        w->dtype = w->param || !w->desc.matrix ? VP_DTYPE_F32 : e->wtype;
    }
}

/* The model's tensor list from the arch alone, each bound to a param when
 * trained; the storage type is the chosen one (the default plans f16 until
 * a file says bf16). */
vp_status enc_weights_init(struct encoder *e) {
    e->weight_count = encoder_model_tensors(&e->arch, NULL);
    e->weights = calloc((size_t)e->weight_count, sizeof *e->weights);
    struct encoder_tensor_desc *desc = calloc((size_t)e->weight_count, sizeof *desc);
    if (!e->weights || !desc) {
        free(desc);
        return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
    }
    encoder_model_tensors(&e->arch, desc);
    for (int k = 0; k < e->weight_count; k++) {
        struct enc_weight *w = &e->weights[k];
        w->desc = desc[k];
        w->n = (uint64_t)desc[k].shape[0] * (uint64_t)(desc[k].ndim > 1 ? desc[k].shape[1] : 1);
        w->param = delta_params_find(e->params, w->desc.name);
    }
    free(desc);
    e->wtype = model_storage_dtype(e->opt.storage, IO_DTYPE_F32);
    set_dtypes(e);
    e->head_count = encoder_head_tensors(&e->arch, e->head_desc);
    return VP_OK;
}

/* Opens the weights and binds every model tensor (enc_weights_init) and
 * head tensor to its file tensor. */
vp_status enc_open_weights(struct encoder *e) {
    vp_status s = io_weights_open(e->dir, &e->file);
    if (s != VP_OK) return s;
    for (int k = 0; k < e->weight_count && s == VP_OK; k++) {
        struct enc_weight *w = &e->weights[k];
        w->file = find_in_file(e, w->desc.name);
        if (!w->file)
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s: the weights have no tensor %s (a %s checkpoint "
                        "names every tensor of the model)", e->dir, w->desc.name, e->arch.model_type);
        else
            s = model_check_file_tensor(e->dir, w->file, w->desc.ndim, w->desc.shape);
    }
    if (s != VP_OK) return s;
    e->wtype = model_storage_dtype(e->opt.storage, e->weights[0].file->dtype);
    set_dtypes(e);
    for (int k = 0; k < e->head_count && s == VP_OK; k++) {
        e->head_file[k] = io_weights_find(e->file, e->head_desc[k].name);
        if (e->head_file[k]) s = model_check_file_tensor(e->dir, e->head_file[k], e->head_desc[k].ndim, e->head_desc[k].shape);
    }
    return s;
}

vp_status encoder_check_head(const struct encoder *e) {
    if (!e->file)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: the head of %s is checked before encoder_load", e->dir);
    char missing[512] = "";
    int lacking = 0;
    for (int k = 0; k < e->head_count; k++) {
        if (e->head_file[k]) continue;
        const size_t n = strlen(missing);
        snprintf(missing + n, sizeof missing - n, "%s%s", lacking++ ? ", " : "", e->head_desc[k].name);
    }
    if (!lacking) return VP_OK;
    return vp_fail(VP_ERROR_BAD_INPUT, "%s has no trained classification head: its weights lack %s (config.json "
                   "says %d labels); a bare pretrained %s checkpoint has none: evaluate it with the delta trained on "
                   "it (--delta DIR), or the folder 'vkpeft merge' writes from the two",
                   e->dir, missing, e->arch.num_labels, e->arch.model_type);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint64_t enc_frozen_bytes(const struct encoder *e) {
    uint64_t bytes = 0, a = vk_pool_alignment(e->ctx);
    for (int k = 0; k < e->weight_count; k++)
        if (!e->weights[k].param) bytes += align_up(e->weights[k].n * vp_dtype_size(e->weights[k].dtype), a);
    return bytes;
}

/* ------------------------------------------------------------------------
 * Uploading
 * ------------------------------------------------------------------------ */

/* The file's values as floats (file data may sit at any byte offset). */
static void file_to_f32(const struct io_tensor *t, float *out) {
    if (t->dtype == IO_DTYPE_F32) {
        memcpy(out, t->data, t->numel * 4);
        return;
    }
    uint16_t *h = (uint16_t *)out + t->numel; /* the upper half of out, read before written */
    memcpy(h, t->data, t->numel * 2);
    for (uint64_t i = 0; i < t->numel; i++)
        out[i] = t->dtype == IO_DTYPE_F16 ? vp_f16_to_f32(h[i]) : vp_bf16_to_f32(h[i]);
}

/* Converts a file tensor to `dtype` bytes: returns `f` (n floats) for f32,
 * else `h` (n 16-bit values). */
static const void *file_to_storage(const struct io_tensor *t, enum vp_dtype dtype, float *f,
                                   uint16_t *h) {
    bool same = (dtype == VP_DTYPE_F16 && t->dtype == IO_DTYPE_F16) ||
                (dtype == VP_DTYPE_BF16 && t->dtype == IO_DTYPE_BF16);
    if (same) {
        memcpy(h, t->data, t->numel * 2);
        return h;
    }
    file_to_f32(t, f);
    if (dtype == VP_DTYPE_F16) vp_f32_to_f16_array(h, f, t->numel);
    if (dtype == VP_DTYPE_BF16) vp_f32_to_bf16_array(h, f, t->numel);
    return dtype == VP_DTYPE_F32 ? (const void *)f : h;
}

vp_status enc_upload_frozen(struct encoder *e) {
    uint64_t largest = 1;
    for (int k = 0; k < e->weight_count; k++)
        if (e->weights[k].n > largest) largest = e->weights[k].n;
    float *host = malloc(largest * sizeof *host);
    uint16_t *half = malloc(largest * sizeof *half);
    if (!host || !half) {
        free(host);
        free(half);
        return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory for the upload");
    }
    vp_status s = VP_OK;
    for (int k = 0; k < e->weight_count && s == VP_OK; k++) {
        struct enc_weight *w = &e->weights[k];
        if (w->param) {
            w->buf = &w->param->value;
            w->grad = &w->param->grad;
            continue;
        }
        s = vk_buffer_alloc(e->ctx, VP_POOL_FROZEN, w->n * vp_dtype_size(w->dtype), &w->frozen);
        if (s != VP_OK) break;
        w->buf = &w->frozen;
        w->grad = NULL;
        const void *bytes = file_to_storage(w->file, w->dtype, host, half);
        s = vk_buffer_write(e->ctx, &w->frozen, 0, bytes, w->n * vp_dtype_size(w->dtype));
    }
    free(host);
    free(half);
    if (s != VP_OK) vp_fail_context(s, "uploading %s", e->dir);
    return s;
}

/* Model-file values for the params that have them: bitfit / full tensors
 * (always) and the head (when the checkpoint has one). */
vp_status enc_load_params(struct encoder *e) {
    vp_status s = VP_OK;
    for (int k = 0; k < e->weight_count && s == VP_OK; k++) {
        struct enc_weight *w = &e->weights[k];
        if (!w->param) continue;
        float *v = malloc(w->n * sizeof *v);
        if (!v) return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
        file_to_f32(w->file, v);
        s = delta_params_write(e->params, w->desc.name, v, (size_t)w->n);
        free(v);
    }
    for (int k = 0; k < e->head_count && s == VP_OK; k++) {
        const struct io_tensor *t = e->head_file[k];
        if (!t) continue;
        float *v = malloc(t->numel * sizeof *v);
        if (!v) return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
        file_to_f32(t, v);
        s = delta_params_write(e->params, e->head_desc[k].name, v, (size_t)t->numel);
        free(v);
    }
    return s;
}

void enc_free_weights(struct encoder *e) {
    for (int k = 0; k < e->weight_count; k++) vk_buffer_free(e->ctx, &e->weights[k].frozen);
    free(e->weights);
    e->weights = NULL;
    e->weight_count = 0;
}

/* ------------------------------------------------------------------------
 * Tensors by name
 * ------------------------------------------------------------------------ */

static const struct enc_weight *weight_named(const struct encoder *e, const char *name) {
    for (int k = 0; k < e->weight_count; k++)
        if (strcmp(e->weights[k].desc.name, name) == 0) return &e->weights[k];
    return NULL;
}

vp_status encoder_tensor_numel(const struct encoder *e, const char *name, uint64_t *n) {
    const struct delta_param *p = delta_params_find(e->params, name);
    const struct enc_weight *w = p ? NULL : weight_named(e, name);
    if (!p && !w) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: no tensor named %s", name);
    *n = p ? p->n : w->n;
    return VP_OK;
}

vp_status encoder_tensor_read(const struct encoder *e, const char *name, float *out, size_t n) {
    if (delta_params_find(e->params, name)) return delta_params_read(e->params, name, out, n);
    const struct enc_weight *w = weight_named(e, name);
    if (!w) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: no tensor named %s", name);
    if (n != w->n || !w->frozen.buffer)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: %s holds %llu values (not %zu) or is not "
                       "loaded", name, (unsigned long long)w->n, n);
    return model_frozen_read(e->ctx, &w->frozen, w->dtype, n, out, "encoder");
}

vp_status encoder_grad_read(const struct encoder *e, const char *name, float *out, size_t n) {
    if (!delta_params_find(e->params, name))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: %s is %s", name,
                       weight_named(e, name) ? "frozen (it has no gradient)" : "not a tensor of this model");
    return delta_params_read_grad(e->params, name, out, n);
}

vp_status encoder_tensor_write(struct encoder *e, const char *name, const float *data, size_t n) {
    if (!delta_params_find(e->params, name))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: %s is %s", name,
                       weight_named(e, name) ? "frozen (the frozen model is never written)"
                                             : "not a tensor of this model");
    return delta_params_write(e->params, name, data, n);
}

vp_status encoder_frozen_hash(const struct encoder *e, uint64_t *hash) {
    uint64_t h = VP_HASH_INIT;
    vp_status s = VP_OK;
    for (int k = 0; k < e->weight_count && s == VP_OK; k++) {
        const struct enc_weight *w = &e->weights[k];
        if (!w->frozen.buffer) continue;
        void *bytes = malloc(w->frozen.size);
        if (!bytes) return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
        s = vk_buffer_read(e->ctx, &w->frozen, 0, bytes, w->frozen.size);
        h = vp_hash_bytes(h, bytes, w->frozen.size);
        free(bytes);
    }
    *hash = h;
    return s;
}
