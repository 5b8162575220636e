/* Whole-model reference: creation, the named-tensor registry, initialisation
 * and the prefix collapse. The forward is in model_forward.c, the backward in
 * model_backward.c. */
#include "model.h"
#include "ref.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Random numbers: Philox4x32-10 keyed by the seed, one stream per tensor,
 * counter = element index, so every value is reproducible on its own.
 * ------------------------------------------------------------------------ */

static void philox_words(uint32_t out[4], uint64_t seed, uint32_t stream, uint64_t i) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t counter[4] = {(uint32_t)i, (uint32_t)(i >> 32), stream, 0};
    ref_philox4x32_10(out, counter, key);
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

static void init_normal(const struct refm *m, struct refm_tensor *t, double mean, double std) {
    for (size_t i = 0; i < t->n; i++) t->data[i] = mean + std * rand_normal(m->opt.seed, t->stream, i);
}

static void init_uniform(const struct refm *m, struct refm_tensor *t, double bound) {
    for (size_t i = 0; i < t->n; i++) t->data[i] = rand_uniform(m->opt.seed, t->stream, i, bound);
}

/* A tensor the contract starts at zero: zero, or N(0, weight_std) when the
 * options ask for it (gradient checks). */
static void init_zero(const struct refm *m, struct refm_tensor *t) {
    if (m->opt.randomise_zero_init) init_normal(m, t, 0.0, m->opt.weight_std);
    else memset(t->data, 0, t->n * sizeof(double));
}

/* ------------------------------------------------------------------------
 * Tensor registry
 * ------------------------------------------------------------------------ */

static void tensor_free(struct refm_tensor *t) {
    if (!t) return;
    free(t->data);
    free(t->grad);
    free(t);
}

static void make_trainable(struct refm_tensor *t) {
    if (t && !t->grad) {
        t->grad = calloc(t->n, sizeof(double));
        assert(t->grad);
    }
}

/* Adds a zero tensor of shape (s0[,s1[,s2]]) (trailing 0s end the shape) named
 * by the format, with the next Philox stream. Aborts on host-memory failure:
 * this is a test reference and its sizes are tiny. */
static struct refm_tensor *tensor_new(struct refm *m, bool trainable, int s0, int s1, int s2,
                                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static struct refm_tensor *tensor_new(struct refm *m, bool trainable, int s0, int s1, int s2,
                                      const char *fmt, ...) {
    struct refm_tensor *t = calloc(1, sizeof *t);
    assert(t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    const int shape[3] = {s0, s1, s2};
    t->n = 1;
    for (int k = 0; k < 3 && shape[k] > 0; k++) {
        t->shape[t->ndim++] = shape[k];
        t->n *= (size_t)shape[k];
    }
    t->data = calloc(t->n, sizeof(double));
    assert(t->data);
    if (trainable) make_trainable(t);
    t->stream = m->next_stream++;
    if (m->tensor_count == m->tensor_cap) {
        m->tensor_cap = m->tensor_cap ? 2 * m->tensor_cap : 64;
        m->tensors = realloc(m->tensors, (size_t)m->tensor_cap * sizeof *m->tensors);
        assert(m->tensors);
    }
    m->tensors[m->tensor_count++] = t;
    return t;
}

static void tensor_remove(struct refm *m, struct refm_tensor *t) {
    for (int i = 0; i < m->tensor_count; i++) {
        if (m->tensors[i] != t) continue;
        memmove(m->tensors + i, m->tensors + i + 1, (size_t)(m->tensor_count - i - 1) * sizeof *m->tensors);
        m->tensor_count--;
        tensor_free(t);
        return;
    }
}

int refm_tensor_count(const struct refm *m) { return m->tensor_count; }

struct refm_tensor *refm_tensor_at(struct refm *m, int i) {
    return i >= 0 && i < m->tensor_count ? m->tensors[i] : NULL;
}

struct refm_tensor *refm_tensor_find(struct refm *m, const char *name) {
    for (int i = 0; i < m->tensor_count; i++)
        if (strcmp(m->tensors[i]->name, name) == 0) return m->tensors[i];
    return NULL;
}

vp_status refm_tensor_set(struct refm *m, const char *name, const double *data, size_t n) {
    struct refm_tensor *t = refm_tensor_find(m, name);
    if (!t) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "reference model: no tensor named %s", name);
    if (n != t->n)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "reference model: %s holds %zu values, not %zu", name,
                       t->n, n);
    memcpy(t->data, data, n * sizeof(double));
    return VP_OK;
}

size_t refm_trainable_params(const struct refm *m) {
    size_t n = 0;
    for (int i = 0; i < m->tensor_count; i++)
        if (m->tensors[i]->grad) n += m->tensors[i]->n;
    return n;
}

void refm_zero_grad(struct refm *m) {
    for (int i = 0; i < m->tensor_count; i++)
        if (m->tensors[i]->grad) memset(m->tensors[i]->grad, 0, m->tensors[i]->n * sizeof(double));
}

struct refm_slot *refm_slot_at(struct refm *m, int module, int layer) {
    return &m->slots[(size_t)module * m->arch.layers + layer];
}

/* ------------------------------------------------------------------------
 * The frozen model and the head
 * ------------------------------------------------------------------------ */

/* A weight (rows, cols) or vector (rows) of the pretrained model. */
static struct refm_tensor *model_tensor(struct refm *m, int rows, int cols, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static struct refm_tensor *model_tensor(struct refm *m, int rows, int cols, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    struct refm_tensor *t = tensor_new(m, false, rows, cols, 0, "%s", name);
    init_normal(m, t, 0.0, m->opt.weight_std);
    return t;
}

/* LayerNorm γ near 1 (so the test model is not degenerate), β like a bias. */
static void layernorm_tensors(struct refm *m, struct refm_tensor **w, struct refm_tensor **b,
                              const char *prefix) {
    int d = m->arch.hidden;
    *w = tensor_new(m, false, d, 0, 0, "%sLayerNorm.weight", prefix);
    init_normal(m, *w, 1.0, 0.1);
    *b = model_tensor(m, d, 0, "%sLayerNorm.bias", prefix);
}

static void create_layer(struct refm *m, struct refm_layer *L, const char *root, int l) {
    int d = m->arch.hidden, I = m->arch.intermediate;
    char p[96];
    snprintf(p, sizeof p, "%sencoder.layer.%d.", root, l);
    L->wq = model_tensor(m, d, d, "%sattention.self.query.weight", p);
    L->bq = model_tensor(m, d, 0, "%sattention.self.query.bias", p);
    L->wk = model_tensor(m, d, d, "%sattention.self.key.weight", p);
    L->bk = model_tensor(m, d, 0, "%sattention.self.key.bias", p);
    L->wv = model_tensor(m, d, d, "%sattention.self.value.weight", p);
    L->bv = model_tensor(m, d, 0, "%sattention.self.value.bias", p);
    L->wo = model_tensor(m, d, d, "%sattention.output.dense.weight", p);
    L->bo = model_tensor(m, d, 0, "%sattention.output.dense.bias", p);
    char q[128];
    snprintf(q, sizeof q, "%sattention.output.", p);
    layernorm_tensors(m, &L->ln1_w, &L->ln1_b, q);
    L->wup = model_tensor(m, I, d, "%sintermediate.dense.weight", p);
    L->bup = model_tensor(m, I, 0, "%sintermediate.dense.bias", p);
    L->wdown = model_tensor(m, d, I, "%soutput.dense.weight", p);
    L->bdown = model_tensor(m, d, 0, "%soutput.dense.bias", p);
    snprintf(q, sizeof q, "%soutput.", p);
    layernorm_tensors(m, &L->ln2_w, &L->ln2_b, q);
}

static void create_model(struct refm *m) {
    const struct model_arch *a = &m->arch;
    const char *root = a->family == MODEL_FAMILY_BERT ? "bert." : "roberta.";
    int d = a->hidden;
    m->w.word = model_tensor(m, a->vocab_size, d, "%sembeddings.word_embeddings.weight", root);
    m->w.pos = model_tensor(m, a->max_positions, d, "%sembeddings.position_embeddings.weight", root);
    if (a->type_vocab_size > 0)
        m->w.type = model_tensor(m, a->type_vocab_size, d, "%sembeddings.token_type_embeddings.weight", root);
    char p[64];
    snprintf(p, sizeof p, "%sembeddings.", root);
    layernorm_tensors(m, &m->w.ln_emb_w, &m->w.ln_emb_b, p);
    m->w.layers = calloc((size_t)a->layers, sizeof *m->w.layers);
    assert(m->w.layers);
    for (int l = 0; l < a->layers; l++) create_layer(m, &m->w.layers[l], root, l);
    if (a->family == MODEL_FAMILY_BERT) {
        m->w.pool_w = model_tensor(m, d, d, "bert.pooler.dense.weight");
        m->w.pool_b = model_tensor(m, d, 0, "bert.pooler.dense.bias");
    }
}

/* The classification head, trainable with every preset. */
static void create_head(struct refm *m) {
    int d = m->arch.hidden, C = m->arch.num_labels;
    bool bert = m->arch.family == MODEL_FAMILY_BERT;
    if (!bert) {
        m->w.dense_w = model_tensor(m, d, d, "classifier.dense.weight");
        m->w.dense_b = model_tensor(m, d, 0, "classifier.dense.bias");
        make_trainable(m->w.dense_w);
        make_trainable(m->w.dense_b);
    }
    m->w.cls_w = model_tensor(m, C, d, bert ? "classifier.weight" : "classifier.out_proj.weight");
    m->w.cls_b = model_tensor(m, C, 0, bert ? "classifier.bias" : "classifier.out_proj.bias");
    make_trainable(m->w.cls_w);
    make_trainable(m->w.cls_b);
}

/* BitFit: every bias of the module's layers, plus the embedding LayerNorm's
 * and the pooler's (delta/count.c counts the same). Full: everything. */
static void mark_model_trainable(struct refm *m, const struct delta_module *mod) {
    struct refm_weights *w = &m->w;
    bool full = mod->kind == DELTA_FULL;
    make_trainable(w->ln_emb_b);
    make_trainable(w->pool_b);
    if (full) {
        make_trainable(w->word);
        make_trainable(w->pos);
        make_trainable(w->type);
        make_trainable(w->ln_emb_w);
        make_trainable(w->pool_w);
    }
    for (int l = 0; l < m->arch.layers; l++) {
        if (!full && !delta_module_has_layer(mod, l)) continue;
        struct refm_layer *L = &w->layers[l];
        struct refm_tensor *biases[] = {L->bq, L->bk, L->bv, L->bo, L->ln1_b, L->bup, L->bdown, L->ln2_b};
        struct refm_tensor *weights[] = {L->wq, L->wk, L->wv, L->wo, L->ln1_w, L->wup, L->wdown, L->ln2_w};
        for (size_t k = 0; k < sizeof biases / sizeof biases[0]; k++) {
            make_trainable(biases[k]);
            if (full) make_trainable(weights[k]);
        }
    }
}

/* ------------------------------------------------------------------------
 * Delta modules
 * ------------------------------------------------------------------------ */

/* Projection widths (in, out) a LoRA at `at` reads and writes. */
static void lora_dims(const struct model_arch *a, enum delta_at at, int *in, int *out) {
    *in = a->hidden;
    *out = a->hidden;
    if (at == DELTA_AT_UP) *out = a->intermediate;
    if (at == DELTA_AT_DOWN) *in = a->intermediate;
}

/* Adapter init (PAPER.md): `lora` W_down Kaiming-uniform (a = √5: bound
 * 1/√fan_in), W_up and biases zero; `bert` weights N(0, 0.02), biases zero. */
static void create_adapter(struct refm *m, struct refm_slot *s, const struct delta_module *mod) {
    const struct model_arch *a = &m->arch;
    int r = mod->size, H = a->heads, hd = a->head_dim, d = a->hidden;
    int i = s->module, l = s->layer;
    const char *p = "encoder.layers";
    s->din = s->dout = d;
    if (mod->per_head) {
        s->down_w = tensor_new(m, true, H, r, hd, "%s.%d.delta%d.down.weight", p, l, i);
        s->down_b = tensor_new(m, true, H, r, 0, "%s.%d.delta%d.down.bias", p, l, i);
        s->up_w = tensor_new(m, true, H, hd, r, "%s.%d.delta%d.up.weight", p, l, i);
        s->up_b = tensor_new(m, true, H, hd, 0, "%s.%d.delta%d.up.bias", p, l, i);
    } else {
        s->down_w = tensor_new(m, true, r, d, 0, "%s.%d.delta%d.down.weight", p, l, i);
        s->down_b = tensor_new(m, true, r, 0, 0, "%s.%d.delta%d.down.bias", p, l, i);
        s->up_w = tensor_new(m, true, d, r, 0, "%s.%d.delta%d.up.weight", p, l, i);
        s->up_b = tensor_new(m, true, d, 0, 0, "%s.%d.delta%d.up.bias", p, l, i);
    }
    int fan_in = mod->per_head ? hd : d;
    if (mod->init == DELTA_INIT_LORA) {
        init_uniform(m, s->down_w, 1.0 / sqrt((double)fan_in));
        init_zero(m, s->up_w);
    } else {
        init_normal(m, s->down_w, 0.0, 0.02);
        init_normal(m, s->up_w, 0.0, 0.02);
    }
    init_zero(m, s->down_b);
    init_zero(m, s->up_b);
    if (mod->compose == DELTA_COMPOSE_GATED) {
        s->gate = tensor_new(m, true, 1, 0, 0, "%s.%d.delta%d.gate", p, l, i);
        init_zero(m, s->gate);
    }
}

/* LoRA: A (r,in) Kaiming-uniform, B (out,r) zero. */
static void create_lora(struct refm *m, struct refm_slot *s, const struct delta_module *mod) {
    lora_dims(&m->arch, mod->at, &s->din, &s->dout);
    int r = mod->size;
    s->lora_a = tensor_new(m, true, r, s->din, 0, "encoder.layers.%d.delta%d.lora_A", s->layer, s->module);
    s->lora_b = tensor_new(m, true, s->dout, r, 0, "encoder.layers.%d.delta%d.lora_B", s->layer, s->module);
    init_uniform(m, s->lora_a, 1.0 / sqrt((double)s->din));
    init_zero(m, s->lora_b);
}

static void create_plain_prefix(struct refm *m, struct refm_slot *s, const struct delta_module *mod) {
    int L = mod->size, d = m->arch.hidden;
    s->prefix_k = tensor_new(m, true, L, d, 0, "encoder.layers.%d.delta%d.prefix_k", s->layer, s->module);
    s->prefix_v = tensor_new(m, true, L, d, 0, "encoder.layers.%d.delta%d.prefix_v", s->layer, s->module);
}

/* Number of layers module `mod` applies to. */
static int module_layers(const struct refm *m, const struct delta_module *mod) {
    int n = 0;
    for (int l = 0; l < m->arch.layers; l++) n += delta_module_has_layer(mod, l);
    return n;
}

/* E ~ N(0,1)·0.02 (the contract); both Linears as torch.nn.Linear's default:
 * weight and bias U(±1/√fan_in). */
static void create_reparam(struct refm *m, int i, const struct delta_module *mod) {
    struct refm_reparam *rp = &m->reparam[i];
    int L = mod->size, d = m->arch.hidden, R = mod->reparam, W = module_layers(m, mod) * 2 * d;
    rp->emb = tensor_new(m, true, L, d, 0, "delta%d.reparam.embedding", i);
    rp->w0 = tensor_new(m, true, R, d, 0, "delta%d.reparam.0.weight", i);
    rp->b0 = tensor_new(m, true, R, 0, 0, "delta%d.reparam.0.bias", i);
    rp->w2 = tensor_new(m, true, W, R, 0, "delta%d.reparam.2.weight", i);
    rp->b2 = tensor_new(m, true, W, 0, 0, "delta%d.reparam.2.bias", i);
    init_normal(m, rp->emb, 0.0, 0.02);
    init_uniform(m, rp->w0, 1.0 / sqrt((double)d));
    init_uniform(m, rp->b0, 1.0 / sqrt((double)d));
    init_uniform(m, rp->w2, 1.0 / sqrt((double)R));
    init_uniform(m, rp->b2, 1.0 / sqrt((double)R));
    rp->h0pre = calloc((size_t)L * R, sizeof(double));
    rp->h0 = calloc((size_t)L * R, sizeof(double));
    rp->out = calloc((size_t)L * W, sizeof(double));
    assert(rp->h0pre && rp->h0 && rp->out);
}

static void create_module(struct refm *m, int i) {
    const struct delta_module *mod = &m->spec.modules[i];
    if (mod->kind == DELTA_BITFIT || mod->kind == DELTA_FULL) {
        mark_model_trainable(m, mod);
        return;
    }
    if (mod->kind == DELTA_PREFIX && mod->reparam > 0) create_reparam(m, i, mod);
    int block = 0;
    for (int l = 0; l < m->arch.layers; l++) {
        struct refm_slot *s = refm_slot_at(m, i, l);
        s->module = i;
        s->layer = l;
        if (!delta_module_has_layer(mod, l)) continue;
        s->active = true;
        if (mod->kind == DELTA_ADAPTER) create_adapter(m, s, mod);
        if (mod->kind == DELTA_LORA) create_lora(m, s, mod);
        if (mod->kind == DELTA_PREFIX) {
            s->prefix_block = block++;
            s->prefix_offset = m->prefix_rows[l];
            m->prefix_rows[l] += mod->size;
            if (mod->reparam == 0) {
                create_plain_prefix(m, s, mod);
                init_normal(m, s->prefix_k, 0.0, 0.02);
                init_normal(m, s->prefix_v, 0.0, 0.02);
            }
        }
    }
}

/* ------------------------------------------------------------------------
 * Create / destroy
 * ------------------------------------------------------------------------ */

static vp_status check_arch(const struct model_arch *a) {
    if (a->family != MODEL_FAMILY_BERT && a->family != MODEL_FAMILY_ROBERTA)
        return vp_fail(VP_ERROR_BAD_INPUT, "reference model: only BERT and RoBERTa are covered");
    if (a->norm != MODEL_NORM_LAYERNORM || a->pre_norm || a->positions != MODEL_POS_LEARNED ||
        a->act == MODEL_ACT_SWIGLU || a->kv_heads != a->heads || a->heads * a->head_dim != a->hidden)
        return vp_fail(VP_ERROR_BAD_INPUT, "reference model: %s is not a post-LN LayerNorm encoder "
                       "with learned positions and full multi-head attention", a->model_type);
    if (a->num_labels < 1)
        return vp_fail(VP_ERROR_BAD_INPUT, "reference model: %s has no labels", a->model_type);
    return VP_OK;
}

static vp_status check_spec(const struct delta_spec *spec, const struct model_arch *a) {
    struct delta_counts counts;
    vp_status s = delta_count_params(spec, a, &counts); /* layers and stacks */
    if (s != VP_OK) return s;
    for (int i = 0; i < spec->count; i++) {
        const struct delta_module *mod = &spec->modules[i];
        bool ok = mod->kind == DELTA_BITFIT || mod->kind == DELTA_FULL || mod->size > 0;
        if (mod->kind == DELTA_ADAPTER)
            ok = ok && (mod->at == DELTA_AT_ATTN || mod->at == DELTA_AT_FFN) &&
                 (!mod->per_head || mod->at == DELTA_AT_ATTN);
        if (mod->kind == DELTA_LORA) ok = ok && mod->at >= DELTA_AT_Q && mod->at <= DELTA_AT_DOWN;
        if (mod->kind == DELTA_PREFIX) ok = ok && mod->reparam >= 0;
        if (!ok)
            return vp_fail(VP_ERROR_BAD_INPUT, "reference model: delta module %d (%s at %s, size %d) "
                           "is not a placement the contract defines", i, delta_kind_name(mod->kind),
                           delta_at_name(mod->at), mod->size);
    }
    return VP_OK;
}

vp_status refm_create(struct refm **out, const struct model_arch *arch, const struct delta_spec *spec,
                      const struct refm_options *opt) {
    *out = NULL;
    vp_status s = check_arch(arch);
    if (s == VP_OK) s = check_spec(spec, arch);
    if (s != VP_OK) return s;
    struct refm *m = calloc(1, sizeof *m);
    if (!m) return vp_fail(VP_ERROR_HOST_MEMORY, "reference model: out of host memory");
    m->arch = *arch;
    m->arch.labels = NULL; /* the caller owns the names */
    m->spec = *spec;
    m->opt = opt ? *opt : (struct refm_options){0};
    if (m->opt.weight_std == 0.0) m->opt.weight_std = 0.02;
    m->slots = calloc((size_t)spec->count * arch->layers + 1, sizeof *m->slots);
    m->reparam = calloc((size_t)spec->count + 1, sizeof *m->reparam);
    m->prefix_rows = calloc((size_t)arch->layers, sizeof *m->prefix_rows);
    assert(m->slots && m->reparam && m->prefix_rows);
    /* The head before the deltas: the frozen model and the head then take
     * the same Philox streams whatever the spec. */
    create_model(m);
    create_head(m);
    for (int i = 0; i < spec->count; i++) create_module(m, i);
    *out = m;
    return VP_OK;
}

static void reparam_free(struct refm_reparam *rp) {
    free(rp->h0pre);
    free(rp->h0);
    free(rp->out);
    *rp = (struct refm_reparam){0};
}

void refm_destroy(struct refm *m) {
    if (!m) return;
    refm_acts_free(&m->acts);
    for (int i = 0; i < m->tensor_count; i++) tensor_free(m->tensors[i]);
    for (int i = 0; i < m->spec.count; i++) reparam_free(&m->reparam[i]);
    free(m->tensors);
    free(m->w.layers);
    free(m->slots);
    free(m->reparam);
    free(m->prefix_rows);
    free(m);
}

/* ------------------------------------------------------------------------
 * Prefix collapse
 * ------------------------------------------------------------------------ */

/* Copies the (L,d) block at column `col` of the (L,W) reparameterisation
 * output into t. */
static void copy_block(struct refm_tensor *t, const double *out, int L, int W, int col, int d) {
    for (int j = 0; j < L; j++)
        memcpy(t->data + (size_t)j * d, out + (size_t)j * W + col, (size_t)d * sizeof(double));
}

vp_status refm_collapse_prefix(struct refm *m) {
    int d = m->arch.hidden;
    for (int i = 0; i < m->spec.count; i++) {
        struct delta_module *mod = &m->spec.modules[i];
        struct refm_reparam *rp = &m->reparam[i];
        if (mod->kind != DELTA_PREFIX || !rp->emb) continue;
        refm_reparam_forward(m, i);
        int W = module_layers(m, mod) * 2 * d;
        for (int l = 0; l < m->arch.layers; l++) {
            struct refm_slot *s = refm_slot_at(m, i, l);
            if (!s->active) continue;
            create_plain_prefix(m, s, mod);
            copy_block(s->prefix_k, rp->out, mod->size, W, s->prefix_block * 2 * d, d);
            copy_block(s->prefix_v, rp->out, mod->size, W, s->prefix_block * 2 * d + d, d);
        }
        struct refm_tensor *mlp[] = {rp->emb, rp->w0, rp->b0, rp->w2, rp->b2};
        for (size_t k = 0; k < sizeof mlp / sizeof mlp[0]; k++) tensor_remove(m, mlp[k]);
        reparam_free(rp);
        mod->reparam = 0;
    }
    return VP_OK;
}
