/* The decoder's pretrained tensors: the device pieces of every Hugging Face
 * tensor (GPT-2's Conv1D weights transposed to [out, in], c_attn split into
 * q, k, v), matching them with the model file, the upload into the frozen
 * pool, and reading them back by name in the file's layout. */
#include "decoder_lm.h"
#include "safetensors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * The pieces
 * ------------------------------------------------------------------------ */

struct lister {
    struct dec_weight *w;
    int count;
};

/* One piece: out × in (in = 0: a vector of out) of the file tensor `name`
 * whose shape is (s0[, s1]). */
static struct dec_weight *piece(struct lister *L, bool matrix, bool conv1d, int c0, int out, int in,
                                int64_t s0, int64_t s1, const char *fmt, ...)
    __attribute__((format(printf, 9, 10)));
static struct dec_weight *piece(struct lister *L, bool matrix, bool conv1d, int c0, int out, int in,
                                int64_t s0, int64_t s1, const char *fmt, ...) {
    struct dec_weight *w = &L->w[L->count++];
    memset(w, 0, sizeof *w);
    va_list ap;
    va_start(ap, fmt);
    model_tensor_name_shape(w->name, sizeof w->name, &w->ndim, w->shape, s0, s1, fmt, ap);
    va_end(ap);
    w->out = out;
    w->in = in;
    w->conv1d = conv1d;
    w->c0 = c0;
    w->matrix = matrix;
    w->n = (uint64_t)out * (uint64_t)(in > 0 ? in : 1);
    return w;
}

/* A Linear (LLaMA: [out, in] weight) or Conv1D (GPT-2: [in, ld] weight,
 * columns c0 .. c0+out) with an optional bias. */
static void linear(struct lister *L, struct dec_weight **w, struct dec_weight **b, bool conv1d, int c0, int ld,
                   int out, int in, bool bias, const char *stem) {
    *w = conv1d ? piece(L, true, true, c0, out, in, in, ld, "%s.weight", stem)
                : piece(L, true, false, 0, out, in, out, in, "%s.weight", stem);
    *b = bias ? piece(L, false, conv1d, c0, out, 0, conv1d ? ld : out, 0, "%s.bias", stem) : NULL;
}

static int list_gpt2(struct decoder *m, struct lister *L) {
    const struct model_arch *a = &m->arch;
    const int d = a->hidden, I = a->intermediate, V = a->vocab_size;
    m->w.embed = piece(L, true, false, 0, V, d, V, d, "transformer.wte.weight");
    m->w.pos = piece(L, true, false, 0, a->max_positions, d, a->max_positions, d, "transformer.wpe.weight");
    for (int l = 0; l < a->layers; l++) {
        struct dec_layer_weights *w = &m->w.layers[l];
        char stem[96];
        w->norm1_w = piece(L, false, false, 0, d, 0, d, 0, "transformer.h.%d.ln_1.weight", l);
        w->norm1_b = piece(L, false, false, 0, d, 0, d, 0, "transformer.h.%d.ln_1.bias", l);
        snprintf(stem, sizeof stem, "transformer.h.%d.attn.c_attn", l);
        linear(L, &w->wq, &w->bq, true, 0, 3 * d, d, d, true, stem);
        linear(L, &w->wk, &w->bk, true, d, 3 * d, d, d, true, stem);
        linear(L, &w->wv, &w->bv, true, 2 * d, 3 * d, d, d, true, stem);
        snprintf(stem, sizeof stem, "transformer.h.%d.attn.c_proj", l);
        linear(L, &w->wo, &w->bo, true, 0, d, d, d, true, stem);
        w->norm2_w = piece(L, false, false, 0, d, 0, d, 0, "transformer.h.%d.ln_2.weight", l);
        w->norm2_b = piece(L, false, false, 0, d, 0, d, 0, "transformer.h.%d.ln_2.bias", l);
        snprintf(stem, sizeof stem, "transformer.h.%d.mlp.c_fc", l);
        linear(L, &w->wup, &w->bup, true, 0, I, I, d, true, stem);
        snprintf(stem, sizeof stem, "transformer.h.%d.mlp.c_proj", l);
        linear(L, &w->wdown, &w->bdown, true, 0, d, d, I, true, stem);
    }
    m->w.normf_w = piece(L, false, false, 0, d, 0, d, 0, "transformer.ln_f.weight");
    m->w.normf_b = piece(L, false, false, 0, d, 0, d, 0, "transformer.ln_f.bias");
    m->w.head = a->tie_word_embeddings ? m->w.embed : piece(L, true, false, 0, V, d, V, d, "lm_head.weight");
    return L->count;
}

static int list_llama(struct decoder *m, struct lister *L) {
    const struct model_arch *a = &m->arch;
    const int d = a->hidden, I = a->intermediate, V = a->vocab_size;
    const int qd = a->heads * a->head_dim, kvd = a->kv_heads * a->head_dim;
    m->w.embed = piece(L, true, false, 0, V, d, V, d, "model.embed_tokens.weight");
    for (int l = 0; l < a->layers; l++) {
        struct dec_layer_weights *w = &m->w.layers[l];
        char stem[96];
        w->norm1_w = piece(L, false, false, 0, d, 0, d, 0, "model.layers.%d.input_layernorm.weight", l);
        static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
        struct dec_weight **ws[3] = {&w->wq, &w->wk, &w->wv}, **bs[3] = {&w->bq, &w->bk, &w->bv};
        for (int k = 0; k < 3; k++) {
            snprintf(stem, sizeof stem, "model.layers.%d.self_attn.%s", l, qkv[k]);
            linear(L, ws[k], bs[k], false, 0, 0, k == 0 ? qd : kvd, d, a->qkv_bias, stem);
        }
        snprintf(stem, sizeof stem, "model.layers.%d.self_attn.o_proj", l);
        linear(L, &w->wo, &w->bo, false, 0, 0, d, qd, a->out_bias, stem);
        w->norm2_w = piece(L, false, false, 0, d, 0, d, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        snprintf(stem, sizeof stem, "model.layers.%d.mlp.gate_proj", l);
        linear(L, &w->wgate, &w->bgate, false, 0, 0, I, d, a->ffn_bias, stem);
        snprintf(stem, sizeof stem, "model.layers.%d.mlp.up_proj", l);
        linear(L, &w->wup, &w->bup, false, 0, 0, I, d, a->ffn_bias, stem);
        snprintf(stem, sizeof stem, "model.layers.%d.mlp.down_proj", l);
        linear(L, &w->wdown, &w->bdown, false, 0, 0, d, I, a->ffn_bias, stem);
    }
    m->w.normf_w = piece(L, false, false, 0, d, 0, d, 0, "model.norm.weight");
    m->w.head = a->tie_word_embeddings ? m->w.embed : piece(L, true, false, 0, V, d, V, d, "lm_head.weight");
    return L->count;
}

static void set_dtypes(struct decoder *m) {
    for (int k = 0; k < m->weight_count; k++)
        m->weights[k].dtype = m->weights[k].matrix && !m->weights[k].param ? m->wtype : VP_DTYPE_F32;
}

/* The piece list from the arch alone (no file). */
vp_status dec_weights_init(struct decoder *m) {
    const int most = 5 + m->arch.layers * 24;
    m->weights = calloc((size_t)most, sizeof *m->weights);
    m->w.layers = calloc((size_t)m->arch.layers, sizeof *m->w.layers);
    if (!m->weights || !m->w.layers) return vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory");
    struct lister L = {m->weights, 0};
    m->weight_count = m->arch.family == MODEL_FAMILY_GPT2 ? list_gpt2(m, &L) : list_llama(m, &L);
    m->wtype = model_storage_dtype(m->opt.storage, IO_DTYPE_F32);
    set_dtypes(m);
    return VP_OK;
}

vp_status dec_open_weights(struct decoder *m) {
    vp_status s = io_weights_open(m->dir, &m->file);
    for (int k = 0; k < m->weight_count && s == VP_OK; k++) {
        struct dec_weight *w = &m->weights[k];
        const struct io_tensor *t = io_weights_find(m->file, w->name);
        if (!t) {
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s: the weights have no tensor %s (a %s checkpoint names every "
                        "tensor of the model)", m->dir, w->name, m->arch.model_type);
            break;
        }
        s = model_check_file_tensor(m->dir, t, w->ndim, w->shape);
        w->file = t;
    }
    if (s != VP_OK) return s;
    m->wtype = model_storage_dtype(m->opt.storage, m->weights[0].file->dtype);
    set_dtypes(m);
    return VP_OK;
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint64_t dec_frozen_bytes(const struct decoder *m) {
    uint64_t bytes = 0, a = vk_pool_alignment(m->ctx);
    for (int k = 0; k < m->weight_count; k++)
        if (!m->weights[k].param)
            bytes += align_up(align_up(m->weights[k].n * vp_dtype_size(m->weights[k].dtype), 4), a);
    return bytes;
}

/* ------------------------------------------------------------------------
 * Upload and read-back
 * ------------------------------------------------------------------------ */

static float file_value(const struct io_tensor *t, uint64_t i) {
    if (t->dtype == IO_DTYPE_F32) {
        float f;
        memcpy(&f, (const char *)t->data + i * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, (const char *)t->data + i * 2, 2);
    return t->dtype == IO_DTYPE_F16 ? vp_f16_to_f32(h) : vp_bf16_to_f32(h);
}

/* Element (o, i) of a piece (or o of a vector) in the file tensor's flat
 * index. */
static uint64_t file_index(const struct dec_weight *w, uint64_t o, uint64_t i) {
    if (w->in == 0) return (uint64_t)w->c0 + o;
    if (w->conv1d) return i * (uint64_t)w->shape[1] + (uint64_t)w->c0 + o;
    return o * (uint64_t)w->in + i;
}

/* A trained tensor's file values into its param, in the device layout. */
static vp_status upload_param(struct decoder *m, struct delta_param *p) {
    float *f = malloc(p->n * sizeof *f);
    if (!f) return vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory for the upload");
    for (int k = 0; k < m->weight_count; k++) {
        const struct dec_weight *w = &m->weights[k];
        const uint64_t in = w->in > 0 ? (uint64_t)w->in : 1;
        if (w->param != p) continue;
        for (uint64_t o = 0; o < (uint64_t)w->out; o++)
            for (uint64_t i = 0; i < in; i++) f[w->poff + o * in + i] = file_value(w->file, file_index(w, o, i));
    }
    vp_status s = delta_params_write(m->params, p->name, f, p->n);
    free(f);
    return s;
}

vp_status dec_upload_frozen(struct decoder *m) {
    vp_status s = VP_OK;
    for (int k = 0; k < m->params->count && s == VP_OK; k++)
        if (m->params->items[k].role == DELTA_PARAM_MODEL) s = upload_param(m, &m->params->items[k]);
    for (int k = 0; k < m->weight_count && s == VP_OK; k++) {
        struct dec_weight *w = &m->weights[k];
        if (w->param) continue;
        const uint64_t in = w->in > 0 ? (uint64_t)w->in : 1;
        float *f = malloc(w->n * sizeof *f);
        uint16_t *h = malloc(w->n * sizeof *h + 2);
        if (!f || !h) s = vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory for the upload");
        for (uint64_t o = 0; s == VP_OK && o < (uint64_t)w->out; o++)
            for (uint64_t i = 0; i < in; i++) f[o * in + i] = file_value(w->file, file_index(w, o, i));
        if (s == VP_OK) s = vk_buffer_alloc(m->ctx, VP_POOL_FROZEN, w->n * vp_dtype_size(w->dtype), &w->frozen);
        if (s == VP_OK && w->dtype == VP_DTYPE_F16) vp_f32_to_f16_array(h, f, w->n);
        if (s == VP_OK && w->dtype == VP_DTYPE_BF16) vp_f32_to_bf16_array(h, f, w->n);
        if (s == VP_OK)
            s = vk_buffer_write(m->ctx, &w->frozen, 0, w->dtype == VP_DTYPE_F32 ? (const void *)f : h,
                                w->n * vp_dtype_size(w->dtype));
        free(f);
        free(h);
    }
    if (s != VP_OK) vp_fail_context(s, "uploading %s", m->dir);
    return s;
}

void dec_free_weights(struct decoder *m) {
    for (int k = 0; k < m->weight_count; k++) vk_buffer_free(m->ctx, &m->weights[k].frozen);
}

static uint64_t file_numel(const struct dec_weight *w) {
    return (uint64_t)w->shape[0] * (uint64_t)(w->ndim > 1 ? w->shape[1] : 1);
}

/* A model param (device layout) to or from the file's layout. */
static void param_layout(const struct decoder *m, const struct delta_param *p, float *dev, float *file, bool to_file) {
    for (int k = 0; k < m->weight_count; k++) {
        const struct dec_weight *w = &m->weights[k];
        const uint64_t in = w->in > 0 ? (uint64_t)w->in : 1;
        if (w->param != p) continue;
        for (uint64_t o = 0; o < (uint64_t)w->out; o++)
            for (uint64_t i = 0; i < in; i++) {
                float *d = &dev[w->poff + o * in + i], *f = &file[file_index(w, o, i)];
                if (to_file) *f = *d;
                else *d = *f;
            }
    }
}

/* Read (value or gradient) or write a model param in the file's layout. */
static vp_status model_param_io(const struct decoder *m, const struct delta_param *p, float *data, size_t n, int op) {
    if (n != p->n)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: %s holds %llu values, not %zu", p->name,
                       (unsigned long long)p->n, n);
    float *dev = malloc(n * sizeof *dev);
    if (!dev) return vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory");
    vp_status s;
    if (op == 2) {
        param_layout(m, p, dev, data, false);
        s = delta_params_write(m->params, p->name, dev, n);
    } else {
        s = op ? delta_params_read_grad(m->params, p->name, dev, n) : delta_params_read(m->params, p->name, dev, n);
        if (s == VP_OK) param_layout(m, p, dev, data, true);
    }
    free(dev);
    return s;
}

vp_status decoder_tensor_numel(const struct decoder *m, const char *name, uint64_t *n) {
    const struct delta_param *p = m->params ? delta_params_find(m->params, name) : NULL;
    if (p) {
        *n = p->n;
        return VP_OK;
    }
    for (int k = 0; k < m->weight_count; k++)
        if (strcmp(m->weights[k].name, name) == 0) {
            *n = file_numel(&m->weights[k]);
            return VP_OK;
        }
    return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: no tensor named %s", name);
}

/* Every piece of the file tensor, read back and put where the file has it. */
vp_status decoder_tensor_read(const struct decoder *m, const char *name, float *out, size_t n) {
    const struct delta_param *p = m->params ? delta_params_find(m->params, name) : NULL;
    if (p && p->role == DELTA_PARAM_MODEL) return model_param_io(m, p, out, n, 0);
    if (p) return delta_params_read(m->params, name, out, n);
    uint64_t want;
    vp_status s = decoder_tensor_numel(m, name, &want);
    if (s != VP_OK) return s;
    if (n != want || !m->loaded)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: %s holds %llu values (not %zu) or is not loaded", name,
                       (unsigned long long)want, n);
    for (int k = 0; k < m->weight_count && s == VP_OK; k++) {
        const struct dec_weight *w = &m->weights[k];
        if (strcmp(w->name, name) != 0) continue;
        float *f = malloc(w->n * sizeof *f);
        s = f ? model_frozen_read(m->ctx, &w->frozen, w->dtype, w->n, f, "decoder")
              : vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory");
        const uint64_t in = w->in > 0 ? (uint64_t)w->in : 1;
        for (uint64_t o = 0; s == VP_OK && o < (uint64_t)w->out; o++)
            for (uint64_t i = 0; i < in; i++) out[file_index(w, o, i)] = f[o * in + i];
        free(f);
    }
    return s;
}

vp_status decoder_grad_read(const struct decoder *m, const char *name, float *out, size_t n) {
    const struct delta_param *p = m->params ? delta_params_find(m->params, name) : NULL;
    if (p && p->role == DELTA_PARAM_MODEL) return model_param_io(m, p, out, n, 1);
    if (p) return delta_params_read_grad(m->params, name, out, n);
    return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: %s is not trainable (no gradient)", name);
}

vp_status decoder_tensor_write(struct decoder *m, const char *name, const float *data, size_t n) {
    const struct delta_param *p = m->params ? delta_params_find(m->params, name) : NULL;
    if (p && p->role == DELTA_PARAM_MODEL) return model_param_io(m, p, (float *)data, n, 2);
    if (p) return delta_params_write(m->params, name, data, n);
    return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: %s is not trainable (frozen tensors cannot be written)",
                   name);
}
