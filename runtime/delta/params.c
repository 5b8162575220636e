/* Delta parameters: the list of trainable tensors of a spec on a model, their
 * layout in the trainable pool's arenas, contract initialisation, and host
 * access by name. See params.h. */
#include "params.h"

#include "encoder.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Random numbers: Philox4x32-10 (Salmon et al., Random123's philox4x32 with
 * 10 rounds), keyed by the seed, counter (i lo, i hi, stream, 0) — the same
 * generator and draws as the whole-model reference (tests/reference/model.c),
 * so the same seed gives the same initial values.
 * ------------------------------------------------------------------------ */

static void philox4x32_10(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]) {
    uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k[0] += 0x9E3779B9u;
            k[1] += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t next[4] = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
        memcpy(c, next, sizeof c);
    }
    memcpy(out, c, sizeof c);
}

static void philox_words(uint32_t out[4], uint64_t seed, uint32_t stream, uint64_t i) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t counter[4] = {(uint32_t)i, (uint32_t)(i >> 32), stream, 0};
    philox4x32_10(out, counter, key);
}

/* Box–Muller on two 24-bit uniforms; u1 in (0, 1] keeps the log finite. */
static double rand_normal(uint64_t seed, uint32_t stream, uint64_t i) {
    uint32_t w[4];
    philox_words(w, seed, stream, i);
    double u1 = ((w[0] >> 8) + 1.0) * 0x1p-24, u2 = (w[1] >> 8) * 0x1p-24;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Uniform in [−bound, bound). */
static double rand_uniform(uint64_t seed, uint32_t stream, uint64_t i, double bound) {
    uint32_t w[4];
    philox_words(w, seed, stream, i);
    return bound * (2.0 * ((w[2] >> 8) * 0x1p-24) - 1.0);
}

/* ------------------------------------------------------------------------
 * The tensor list
 * ------------------------------------------------------------------------ */

struct builder {
    struct delta_params *p;
    int cap;
    uint32_t next_stream;
    vp_status status;
};

static struct delta_param *add(struct builder *b, enum delta_param_role role, enum delta_param_part part,
                               int module, int layer, int s0, int s1, int s2, const char *fmt, ...)
    __attribute__((format(printf, 9, 10)));
static struct delta_param *add(struct builder *b, enum delta_param_role role, enum delta_param_part part,
                               int module, int layer, int s0, int s1, int s2, const char *fmt, ...) {
    struct delta_params *p = b->p;
    uint32_t stream = b->next_stream++;
    if (b->status != VP_OK) return NULL;
    if (p->count == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        struct delta_param *ni = realloc(p->items, (size_t)cap * sizeof *ni);
        if (!ni) {
            b->status = vp_fail(VP_ERROR_HOST_MEMORY, "delta params: out of host memory");
            return NULL;
        }
        p->items = ni;
        b->cap = cap;
    }
    struct delta_param *t = &p->items[p->count++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    const int shape[3] = {s0, s1, s2};
    t->n = 1;
    for (int k = 0; k < 3 && shape[k] > 0; k++) {
        t->shape[t->ndim++] = shape[k];
        t->n *= (uint64_t)shape[k];
    }
    t->role = role;
    t->part = part;
    t->module = module;
    t->layer = layer;
    t->stream = stream;
    size_t len = strlen(t->name);
    bool bias = len >= 4 && strcmp(t->name + len - 4, "bias") == 0;
    t->decay = !bias && !strstr(t->name, "LayerNorm") && !strstr(t->name, "layer_norm") &&
               part != DELTA_PART_GATE;
    return t;
}

/* The model tensors bitfit / full train (tests/reference/model.c's
 * mark_model_trainable): BitFit every bias of the module's layers, the
 * embedding LayerNorm's β and BERT's pooler bias; full everything. Streams
 * are the tensors' indices in model order, as the reference numbers them. */
static void add_model_tensors(struct builder *b, const struct model_arch *a, const struct delta_spec *spec) {
    int count = encoder_model_tensors(a, NULL);
    struct encoder_tensor_desc *desc = calloc((size_t)count, sizeof *desc);
    if (!desc) {
        b->status = vp_fail(VP_ERROR_HOST_MEMORY, "delta params: out of host memory");
        return;
    }
    encoder_model_tensors(a, desc);
    for (int k = 0; k < count; k++) {
        bool train = false;
        for (int i = 0; i < spec->count; i++) {
            const struct delta_module *m = &spec->modules[i];
            if (m->kind == DELTA_FULL) train = true;
            if (m->kind == DELTA_BITFIT && desc[k].bias &&
                (desc[k].layer < 0 || delta_module_has_layer(m, desc[k].layer)))
                train = true;
        }
        b->next_stream = (uint32_t)k;
        if (train)
            add(b, DELTA_PARAM_MODEL, DELTA_PART_NONE, -1, desc[k].layer, (int)desc[k].shape[0],
                desc[k].ndim > 1 ? (int)desc[k].shape[1] : 0, 0, "%s", desc[k].name);
    }
    b->next_stream = (uint32_t)count;
    free(desc);
}

static void add_head(struct builder *b, const struct model_arch *a) {
    struct encoder_tensor_desc desc[ENCODER_HEAD_MAX];
    int count = encoder_head_tensors(a, desc);
    for (int k = 0; k < count; k++)
        add(b, DELTA_PARAM_HEAD, DELTA_PART_NONE, -1, -1, (int)desc[k].shape[0],
            desc[k].ndim > 1 ? (int)desc[k].shape[1] : 0, 0, "%s", desc[k].name);
}

/* One place's tensors of module i (layer l under root P): adapter, LoRA
 * (FFN width I, k/v width kvd) or plain prefix rows (kvd wide). */
static void add_place(struct builder *b, const struct delta_module *m, int i, const char *P, int l, int d, int H,
                      int hd, int I, int kvd) {
    const int r = m->size;
    if (m->kind == DELTA_ADAPTER) {
        const bool ph = m->per_head; /* (H,r,hd) (H,r) (H,hd,r) (H,hd), else (r,d) (r) (d,r) (d) */
        add(b, DELTA_PARAM_DELTA, DELTA_PART_DOWN_W, i, l, ph ? H : r, ph ? r : d, ph ? hd : 0,
            "%s.%d.delta%d.down.weight", P, l, i);
        add(b, DELTA_PARAM_DELTA, DELTA_PART_DOWN_B, i, l, ph ? H : r, ph ? r : 0, 0, "%s.%d.delta%d.down.bias",
            P, l, i);
        add(b, DELTA_PARAM_DELTA, DELTA_PART_UP_W, i, l, ph ? H : d, ph ? hd : r, ph ? r : 0,
            "%s.%d.delta%d.up.weight", P, l, i);
        add(b, DELTA_PARAM_DELTA, DELTA_PART_UP_B, i, l, ph ? H : d, ph ? hd : 0, 0, "%s.%d.delta%d.up.bias",
            P, l, i);
        if (m->compose == DELTA_COMPOSE_GATED)
            add(b, DELTA_PARAM_DELTA, DELTA_PART_GATE, i, l, 1, 0, 0, "%s.%d.delta%d.gate", P, l, i);
    } else if (m->kind == DELTA_LORA) {
        const int in = m->at == DELTA_AT_DOWN ? I : d;
        const int out = m->at == DELTA_AT_UP ? I : m->at == DELTA_AT_K || m->at == DELTA_AT_V ? kvd : d;
        add(b, DELTA_PARAM_DELTA, DELTA_PART_LORA_A, i, l, r, in, 0, "%s.%d.delta%d.lora_A", P, l, i);
        add(b, DELTA_PARAM_DELTA, DELTA_PART_LORA_B, i, l, out, r, 0, "%s.%d.delta%d.lora_B", P, l, i);
    } else if (m->kind == DELTA_PREFIX && m->reparam == 0) {
        add(b, DELTA_PARAM_DELTA, DELTA_PART_PREFIX_K, i, l, r, kvd, 0, "%s.%d.delta%d.prefix_k", P, l, i);
        add(b, DELTA_PARAM_DELTA, DELTA_PART_PREFIX_V, i, l, r, kvd, 0, "%s.%d.delta%d.prefix_v", P, l, i);
    }
}

/* A prefix module's reparameterisation MLP, writing W = places·2·kvd values
 * per row (one (P_k, P_v) block per place). */
static void add_reparam(struct builder *b, const struct delta_module *m, int i, int d, int W) {
    const int R = m->reparam, r = m->size;
    add(b, DELTA_PARAM_DELTA, DELTA_PART_REPARAM_EMB, i, -1, r, d, 0, "delta%d.reparam.embedding", i);
    add(b, DELTA_PARAM_DELTA, DELTA_PART_REPARAM_W0, i, -1, R, d, 0, "delta%d.reparam.0.weight", i);
    add(b, DELTA_PARAM_DELTA, DELTA_PART_REPARAM_B0, i, -1, R, 0, 0, "delta%d.reparam.0.bias", i);
    add(b, DELTA_PARAM_DELTA, DELTA_PART_REPARAM_W2, i, -1, W, R, 0, "delta%d.reparam.2.weight", i);
    add(b, DELTA_PARAM_DELTA, DELTA_PART_REPARAM_B2, i, -1, W, 0, 0, "delta%d.reparam.2.bias", i);
}

/* Encoder-only and decoder-only models: one stack, named by
 * delta_params_layers_name. An encoder-decoder model (tests/reference/
 * seq2seq.h): one set of tensors per place, {encoder,decoder,cross}.layers.
 * {l}.delta{i}.*, a LoRA's FFN width the stack's, prefixes d wide; a
 * reparameterised prefix's MLP writes one (P_k, P_v) block per place,
 * encoder, decoder, then cross-attention blocks. */
static void add_module(struct builder *b, const struct model_arch *a, const struct delta_module *m, int i) {
    const int d = a->hidden, H = a->heads, hd = a->head_dim, kvd = delta_params_prefix_width(a);
    const int places = delta_module_places(m, a);
    if (m->kind == DELTA_PREFIX && m->reparam > 0) add_reparam(b, m, i, d, places * 2 * kvd);
    for (int place = 0; place < places; place++) {
        const char *P;
        const int l = delta_params_place(a, m, place, &P);
        const bool enc = a->stack != MODEL_STACK_ENCODER_DECODER || strcmp(P, "encoder.layers") == 0;
        add_place(b, m, i, P, l, d, H, hd, enc ? a->intermediate : a->decoder_intermediate, kvd);
    }
}

int delta_params_place(const struct model_arch *a, const struct delta_module *m, int place, const char **root) {
    static const char *const roots[3] = {"encoder.layers", "decoder.layers", "cross.layers"};
    const bool s2s = a->stack == MODEL_STACK_ENCODER_DECODER;
    for (int k = 0; k < 3; k++) {
        const unsigned bit = 1u << k;
        if (s2s ? !delta_module_in_stack(m, a, bit) : k > 0) continue;
        *root = s2s ? roots[k] : delta_params_layers_name(a);
        for (int l = 0; l < (s2s ? delta_stack_layers(a, bit) : a->layers); l++)
            if (delta_module_has_layer(m, l) && place-- == 0) return l;
    }
    *root = NULL;
    return -1;
}

/* The placements the contract defines (runtime/model/README.md). */
static vp_status check_spec(const struct delta_spec *spec, const struct model_arch *a) {
    struct delta_counts counts;
    vp_status s = delta_count_params(spec, a, &counts); /* layers and stacks */
    if (s != VP_OK) return s;
    for (int i = 0; i < spec->count; i++) {
        const struct delta_module *m = &spec->modules[i];
        bool ok = m->kind == DELTA_BITFIT || m->kind == DELTA_FULL || m->size > 0;
        if (m->kind == DELTA_ADAPTER)
            ok = ok && (m->at == DELTA_AT_ATTN || m->at == DELTA_AT_FFN) &&
                 (!m->per_head || m->at == DELTA_AT_ATTN);
        if (m->kind == DELTA_LORA) ok = ok && m->at >= DELTA_AT_Q && m->at <= DELTA_AT_DOWN;
        if (m->kind == DELTA_PREFIX) ok = ok && m->reparam >= 0;
        if (!ok)
            return vp_fail(VP_ERROR_BAD_INPUT,
                           "delta module %d (%s at %s, size %d) is not a placement this model "
                           "supports (adapters at attn or ffn, per head only at attn; LoRA on "
                           "q, k, v, o, up or down; prefixes of length > 0)",
                           i, delta_kind_name(m->kind), delta_at_name(m->at), m->size);
    }
    return VP_OK;
}

static VkDeviceSize align_up(VkDeviceSize v, VkDeviceSize a) { return (v + a - 1) / a * a; }

/* Decay tensors first, then the rest, each on the pool alignment. */
static void layout(struct delta_params *p) {
    VkDeviceSize align = vk_pool_alignment(p->ctx), at = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < p->count; k++) {
            struct delta_param *t = &p->items[k];
            if (t->decay != (pass == 0)) continue;
            t->offset = at;
            at = align_up(at + t->n * 4, align);
        }
    p->arena_bytes = at ? at : align;
}

vp_status delta_params_create(vp_context *ctx, const struct model_arch *arch,
                              const struct delta_spec *spec, uint64_t seed,
                              struct delta_params **out) {
    *out = NULL;
    vp_status s = check_spec(spec, arch);
    if (s != VP_OK) return s;
    struct delta_params *p = calloc(1, sizeof *p);
    if (!p) return vp_fail(VP_ERROR_HOST_MEMORY, "delta params: out of host memory");
    p->ctx = ctx;
    p->arch = *arch;
    p->arch.labels = NULL;
    p->spec = *spec;
    p->seed = seed;
    struct builder b = {.p = p};
    /* Decoder-only and encoder-decoder models have no classification head,
     * and their loaders add the model tensors bitfit / full train
     * (delta_params_add_model). */
    if (arch->stack == MODEL_STACK_ENCODER) {
        add_model_tensors(&b, arch, spec);
        add_head(&b, arch);
    }
    for (int i = 0; i < spec->count && b.status == VP_OK; i++) add_module(&b, arch, &spec->modules[i], i);
    if (b.status != VP_OK) {
        delta_params_destroy(p);
        return b.status;
    }
    layout(p);
    *out = p;
    return VP_OK;
}

const char *delta_params_layers_name(const struct model_arch *a) {
    return a->stack == MODEL_STACK_DECODER ? "decoder.layers" : "encoder.layers";
}

int delta_params_prefix_width(const struct model_arch *a) {
    return a->stack == MODEL_STACK_DECODER ? a->kv_heads * a->head_dim : a->hidden;
}

vp_status delta_params_add_model(struct delta_params *p, const char *name, int ndim, const int64_t shape[2],
                                 bool transposed) {
    if (p->allocated)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "delta params: %s added after the arenas were allocated", name);
    if (transposed && ndim != 2)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "delta params: %s has %d dimensions; only a matrix is transposed",
                       name, ndim);
    struct builder b = {.p = p, .cap = p->count, .next_stream = (uint32_t)p->count};
    struct delta_param *t = add(&b, DELTA_PARAM_MODEL, DELTA_PART_NONE, -1, -1, (int)shape[0],
                                ndim > 1 ? (int)shape[1] : 0, 0, "%s", name);
    if (!t) return b.status;
    t->decay = ndim > 1; /* matrices decay; biases and norm weights do not */
    t->transposed = transposed;
    layout(p);
    return VP_OK;
}

void delta_params_destroy(struct delta_params *p) {
    if (!p) return;
    delta_params_free_device(p);
    free(p->items);
    free(p);
}

void delta_params_free_device(struct delta_params *p) {
    for (int k = 0; k < DELTA_ARENA_COUNT; k++) vk_buffer_free(p->ctx, &p->arena[k]);
    for (int k = 0; k < p->count; k++) {
        struct delta_param *t = &p->items[k];
        memset(&t->value, 0, sizeof t->value);
        memset(&t->grad, 0, sizeof t->grad);
        memset(&t->m, 0, sizeof t->m);
        memset(&t->v, 0, sizeof t->v);
    }
    p->allocated = false;
}

uint64_t delta_params_plan_bytes(const struct delta_params *p) {
    return DELTA_ARENA_COUNT * align_up(p->arena_bytes, vk_pool_alignment(p->ctx));
}

struct delta_param *delta_params_find(const struct delta_params *p, const char *name) {
    for (int k = 0; k < p->count; k++)
        if (strcmp(p->items[k].name, name) == 0) return &p->items[k];
    return NULL;
}

uint64_t delta_params_numel(const struct delta_params *p) {
    uint64_t n = 0;
    for (int k = 0; k < p->count; k++) n += p->items[k].n;
    return n;
}

/* ------------------------------------------------------------------------
 * Initialisation
 * ------------------------------------------------------------------------ */

enum init_kind { INIT_ZERO, INIT_NORMAL, INIT_UNIFORM, INIT_ONE };

/* The contract's rule for a tensor: N(0, a), U(±a) or zero. */
static enum init_kind init_rule(const struct delta_params *p, const struct delta_param *t, double *a) {
    const struct model_arch *ar = &p->arch;
    if (t->role == DELTA_PARAM_MODEL) return INIT_ZERO; /* the model file's values replace it */
    if (t->role == DELTA_PARAM_HEAD) {
        *a = 0.02; /* Hugging Face's initializer_range for a new classifier */
        if (t->ndim == 1 && !t->decay && (strstr(t->name, "LayerNorm.weight") || strstr(t->name, "layer_norm.weight")))
            return INIT_ONE; /* the MLM head's LayerNorm γ */
        return t->decay ? INIT_NORMAL : INIT_ZERO;
    }
    const struct delta_module *m = &p->spec.modules[t->module];
    switch (t->part) {
    case DELTA_PART_DOWN_W:
        if (m->init == DELTA_INIT_BERT) {
            *a = 0.02;
            return INIT_NORMAL;
        }
        *a = 1.0 / sqrt((double)(m->per_head ? ar->head_dim : ar->hidden)); /* Kaiming, a = √5 */
        return INIT_UNIFORM;
    case DELTA_PART_UP_W:
        *a = 0.02;
        return m->init == DELTA_INIT_BERT ? INIT_NORMAL : INIT_ZERO;
    case DELTA_PART_LORA_A:
        *a = 1.0 / sqrt((double)t->shape[1]);
        return INIT_UNIFORM;
    case DELTA_PART_PREFIX_K:
    case DELTA_PART_PREFIX_V:
    case DELTA_PART_REPARAM_EMB:
        *a = 0.02;
        return INIT_NORMAL;
    case DELTA_PART_REPARAM_W0:
    case DELTA_PART_REPARAM_B0: /* torch.nn.Linear's default: U(±1/√fan_in) */
        *a = 1.0 / sqrt((double)ar->hidden);
        return INIT_UNIFORM;
    case DELTA_PART_REPARAM_W2:
    case DELTA_PART_REPARAM_B2:
        *a = 1.0 / sqrt((double)m->reparam);
        return INIT_UNIFORM;
    default: /* biases, gates, LoRA B */
        return INIT_ZERO;
    }
}

double delta_params_init_value(const struct delta_params *p, const struct delta_param *t, uint64_t i) {
    double a = 0.0;
    switch (init_rule(p, t, &a)) {
    case INIT_NORMAL: return a * rand_normal(p->seed, t->stream, i);
    case INIT_UNIFORM: return rand_uniform(p->seed, t->stream, i, a);
    case INIT_ONE: return 1.0;
    case INIT_ZERO: break;
    }
    return 0.0;
}

static vp_status record_zero_arenas(struct vk_recorder *rec, void *arg) {
    const struct delta_params *p = arg;
    vp_status s = VP_OK;
    for (int k = DELTA_ARENA_GRAD; k < DELTA_ARENA_COUNT && s == VP_OK; k++)
        s = vk_recorder_fill(rec, &p->arena[k], 0, p->arena_bytes, 0);
    return s;
}

static struct vk_buffer view(const struct vk_buffer *arena, VkDeviceSize offset, VkDeviceSize size) {
    struct vk_buffer v = *arena;
    v.offset += offset;
    v.size = size;
    v.host = arena->host ? (char *)arena->host + offset : NULL;
    return v;
}

vp_status delta_params_alloc(struct delta_params *p) {
    if (p->allocated) return VP_OK;
    vp_status s = VP_OK;
    for (int k = 0; k < DELTA_ARENA_COUNT && s == VP_OK; k++)
        s = vk_buffer_alloc(p->ctx, VP_POOL_TRAINABLE, p->arena_bytes, &p->arena[k]);
    float *host = s == VP_OK ? calloc(p->arena_bytes / 4, sizeof *host) : NULL;
    if (s == VP_OK && !host) s = vp_fail(VP_ERROR_HOST_MEMORY, "delta params: out of host memory");
    if (s != VP_OK) {
        for (int k = 0; k < DELTA_ARENA_COUNT; k++) vk_buffer_free(p->ctx, &p->arena[k]);
        return s;
    }
    for (int k = 0; k < p->count; k++) {
        struct delta_param *t = &p->items[k];
        VkDeviceSize bytes = t->n * 4;
        t->value = view(&p->arena[DELTA_ARENA_VALUE], t->offset, bytes);
        t->grad = view(&p->arena[DELTA_ARENA_GRAD], t->offset, bytes);
        t->m = view(&p->arena[DELTA_ARENA_M], t->offset, bytes);
        t->v = view(&p->arena[DELTA_ARENA_V], t->offset, bytes);
        float *dst = host + t->offset / 4;
        for (uint64_t i = 0; i < t->n; i++) dst[i] = (float)delta_params_init_value(p, t, i);
    }
    s = vk_buffer_write(p->ctx, &p->arena[DELTA_ARENA_VALUE], 0, host, p->arena_bytes);
    free(host);
    if (s == VP_OK) s = vk_run_once(p->ctx, record_zero_arenas, p);
    if (s == VP_OK) p->allocated = true;
    return s;
}

/* ------------------------------------------------------------------------
 * Host access
 * ------------------------------------------------------------------------ */

static vp_status lookup(const struct delta_params *p, const char *name, size_t n, struct delta_param **out) {
    struct delta_param *t = delta_params_find(p, name);
    if (!t) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "delta params: no trainable tensor named %s", name);
    if (n != t->n)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "delta params: %s holds %llu values, not %zu", name,
                       (unsigned long long)t->n, n);
    if (!p->allocated)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "delta params: %s has no device memory yet", name);
    *out = t;
    return VP_OK;
}

vp_status delta_params_read(const struct delta_params *p, const char *name, float *out, size_t n) {
    struct delta_param *t;
    vp_status s = lookup(p, name, n, &t);
    return s == VP_OK ? vk_buffer_read(p->ctx, &p->arena[DELTA_ARENA_VALUE], t->offset, out, n * 4) : s;
}

vp_status delta_params_read_grad(const struct delta_params *p, const char *name, float *out, size_t n) {
    struct delta_param *t;
    vp_status s = lookup(p, name, n, &t);
    return s == VP_OK ? vk_buffer_read(p->ctx, &p->arena[DELTA_ARENA_GRAD], t->offset, out, n * 4) : s;
}

vp_status delta_params_write(struct delta_params *p, const char *name, const float *data, size_t n) {
    struct delta_param *t;
    vp_status s = lookup(p, name, n, &t);
    return s == VP_OK ? vk_buffer_write(p->ctx, &p->arena[DELTA_ARENA_VALUE], t->offset, data, n * 4) : s;
}

/* dst (cols, rows) = srcᵀ, src (rows, cols) row-major. */
static void transpose(float *dst, const float *src, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
}

/* Values in the tensor's own layout (s0, s1) written into the arenas. */
static vp_status write_own_layout(struct delta_params *p, const struct delta_param *t, const float *data) {
    if (!t->transposed) return delta_params_write(p, t->name, data, (size_t)t->n);
    float *held = malloc((size_t)t->n * sizeof *held);
    if (!held) return vp_fail(VP_ERROR_HOST_MEMORY, "delta params: out of host memory for %s", t->name);
    transpose(held, data, t->shape[0], t->shape[1]); /* (s0, s1) -> (s1, s0) */
    vp_status s = delta_params_write(p, t->name, held, (size_t)t->n);
    free(held);
    return s;
}

/* The arenas' values of a tensor in its own layout (s0, s1). */
static vp_status read_own_layout(const struct delta_params *p, const struct delta_param *t, float *out) {
    if (!t->transposed) return delta_params_read(p, t->name, out, (size_t)t->n);
    float *held = malloc((size_t)t->n * sizeof *held);
    if (!held) return vp_fail(VP_ERROR_HOST_MEMORY, "delta params: out of host memory for %s", t->name);
    vp_status s = delta_params_read(p, t->name, held, (size_t)t->n);
    if (s == VP_OK) transpose(out, held, t->shape[1], t->shape[0]); /* (s1, s0) -> (s0, s1) */
    free(held);
    return s;
}

vp_status delta_params_load(struct delta_params *p, const struct delta_tensors *src) {
    for (size_t k = 0; k < src->count; k++) {
        const struct delta_tensor *in = &src->items[k];
        struct delta_param *t = delta_params_find(p, in->name);
        if (!t)
            return vp_fail(VP_ERROR_BAD_INPUT,
                           "delta tensor %s is not trained by this spec (%s); a saved delta "
                           "holds collapsed prefixes (prefix_k/prefix_v), which need a spec "
                           "without reparameterisation",
                           in->name, p->spec.name);
        bool same = in->ndim == t->ndim;
        for (int i = 0; same && i < t->ndim; i++) same = in->shape[i] == t->shape[i];
        if (!same)
            return vp_fail(VP_ERROR_BAD_INPUT, "delta tensor %s has %d dimensions (%lld, ...), the "
                           "spec needs %d (%lld, ...)", in->name, in->ndim,
                           (long long)(in->ndim ? in->shape[0] : 0), t->ndim, (long long)t->shape[0]);
        vp_status s = write_own_layout(p, t, in->data);
        if (s != VP_OK) return s;
    }
    return VP_OK;
}

vp_status delta_params_save(const struct delta_params *p, unsigned roles, struct delta_tensors *out) {
    for (int k = 0; k < p->count; k++) {
        const struct delta_param *t = &p->items[k];
        if (roles && !(roles & (1u << t->role))) continue;
        struct delta_tensor *d = delta_tensors_add(out, t->name, t->ndim, t->shape);
        if (!d) return VP_ERROR_HOST_MEMORY;
        vp_status s = read_own_layout(p, t, d->data);
        if (s != VP_OK) return s;
    }
    return VP_OK;
}

uint32_t delta_params_opt_tensors(const struct delta_params *p, struct kernel_opt_tensor *out, uint32_t max) {
    uint32_t n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < p->count; k++) {
            const struct delta_param *t = &p->items[k];
            if (t->decay != (pass == 0)) continue;
            if (n < max)
                out[n] = (struct kernel_opt_tensor){&t->value, &t->grad, &t->m, &t->v, t->n, t->decay};
            n++;
        }
    return n < max ? n : max;
}

vp_status delta_params_record_zero_grads(const struct delta_params *p, struct vk_recorder *rec) {
    if (!p->allocated)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "delta params: no device memory to zero yet");
    return vk_recorder_fill(rec, &p->arena[DELTA_ARENA_GRAD], 0, p->arena_bytes, 0);
}
