/* The references' shared pieces (delta_ref.h): the arena, the named-tensor
 * registry and its initialisation, delta-module creation, the placement
 * check and the prefix collapse. The modules' forward is in
 * delta_ref_forward.c, their backward in delta_ref_backward.c. */
#include "delta_ref.h"
#include "ref.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Arena
 * ------------------------------------------------------------------------ */

void *ref_arena_alloc(struct ref_arena *a, size_t count, size_t size) {
    if (a->count == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->items = realloc(a->items, (size_t)a->cap * sizeof *a->items);
        assert(a->items);
    }
    void *p = calloc(count ? count : 1, size);
    assert(p);
    a->items[a->count++] = p;
    return p;
}

double *ref_arena_doubles(struct ref_arena *a, size_t n) { return ref_arena_alloc(a, n, sizeof(double)); }

void ref_arena_free(struct ref_arena *a) {
    for (int i = 0; i < a->count; i++) free(a->items[i]);
    free(a->items);
    *a = (struct ref_arena){0};
}

/* ------------------------------------------------------------------------
 * Random numbers: Philox4x32-10 keyed by the seed, one stream per tensor,
 * counter = element index, so every value is reproducible on its own.
 * runtime/delta/params.c draws the runtime's initial values the same way;
 * the reference keeps its own copy (over ref.h's Philox) on purpose: the
 * encoder tests compare the two, and a reference must not run the code it
 * checks.
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

void ref_tensors_fill_normal(const struct ref_tensors *ts, struct refm_tensor *t, double mean, double std) {
    for (size_t i = 0; i < t->n; i++) t->data[i] = mean + std * rand_normal(ts->seed, t->stream, i);
}

void ref_tensors_fill_uniform(const struct ref_tensors *ts, struct refm_tensor *t, double bound) {
    for (size_t i = 0; i < t->n; i++) t->data[i] = rand_uniform(ts->seed, t->stream, i, bound);
}

void ref_tensors_fill_zero(const struct ref_tensors *ts, struct refm_tensor *t) {
    if (ts->randomise_zero_init) ref_tensors_fill_normal(ts, t, 0.0, ts->weight_std);
    else memset(t->data, 0, t->n * sizeof(double));
}

/* ------------------------------------------------------------------------
 * Tensor registry
 * ------------------------------------------------------------------------ */

void ref_tensors_init(struct ref_tensors *ts, uint64_t seed, double weight_std, bool randomise_zero_init,
                      const char *who) {
    *ts = (struct ref_tensors){.seed = seed, .weight_std = weight_std, .randomise_zero_init = randomise_zero_init,
                               .who = who};
}

static void tensor_free(struct refm_tensor *t) {
    if (!t) return;
    free(t->data);
    free(t->grad);
    free(t);
}

void ref_tensors_finish(struct ref_tensors *ts) {
    for (int i = 0; i < ts->count; i++) tensor_free(ts->items[i]);
    free(ts->items);
    ts->items = NULL;
    ts->count = ts->cap = 0;
}

void ref_tensor_make_trainable(struct refm_tensor *t) {
    if (t && !t->grad) {
        t->grad = calloc(t->n, sizeof(double));
        assert(t->grad);
    }
}

static struct refm_tensor *tensor_vnew(struct ref_tensors *ts, bool trainable, int s0, int s1, int s2,
                                       const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));
static struct refm_tensor *tensor_vnew(struct ref_tensors *ts, bool trainable, int s0, int s1, int s2,
                                       const char *fmt, va_list ap) {
    struct refm_tensor *t = calloc(1, sizeof *t);
    assert(t);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    const int shape[3] = {s0, s1, s2};
    t->n = 1;
    for (int k = 0; k < 3 && shape[k] > 0; k++) {
        t->shape[t->ndim++] = shape[k];
        t->n *= (size_t)shape[k];
    }
    t->data = calloc(t->n, sizeof(double));
    assert(t->data);
    if (trainable) ref_tensor_make_trainable(t);
    t->stream = ts->next_stream++;
    if (ts->count == ts->cap) {
        ts->cap = ts->cap ? 2 * ts->cap : 64;
        ts->items = realloc(ts->items, (size_t)ts->cap * sizeof *ts->items);
        assert(ts->items);
    }
    ts->items[ts->count++] = t;
    return t;
}

struct refm_tensor *ref_tensors_add(struct ref_tensors *ts, bool trainable, int s0, int s1, int s2,
                                    const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    struct refm_tensor *t = tensor_vnew(ts, trainable, s0, s1, s2, fmt, ap);
    va_end(ap);
    return t;
}

struct refm_tensor *ref_tensors_weight(struct ref_tensors *ts, int rows, int cols, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    struct refm_tensor *t = tensor_vnew(ts, false, rows, cols, 0, fmt, ap);
    va_end(ap);
    ref_tensors_fill_normal(ts, t, 0.0, ts->weight_std);
    return t;
}

void ref_tensors_remove(struct ref_tensors *ts, struct refm_tensor *t) {
    for (int i = 0; i < ts->count; i++) {
        if (ts->items[i] != t) continue;
        memmove(ts->items + i, ts->items + i + 1, (size_t)(ts->count - i - 1) * sizeof *ts->items);
        ts->count--;
        tensor_free(t);
        return;
    }
}

struct refm_tensor *ref_tensors_at(const struct ref_tensors *ts, int i) {
    return i >= 0 && i < ts->count ? ts->items[i] : NULL;
}

struct refm_tensor *ref_tensors_find(const struct ref_tensors *ts, const char *name) {
    for (int i = 0; i < ts->count; i++)
        if (strcmp(ts->items[i]->name, name) == 0) return ts->items[i];
    return NULL;
}

vp_status ref_tensors_set(struct ref_tensors *ts, const char *name, const double *data, size_t n) {
    struct refm_tensor *t = ref_tensors_find(ts, name);
    if (!t) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: no tensor named %s", ts->who, name);
    if (n != t->n)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: %s holds %zu values, not %zu", ts->who, name, t->n, n);
    memcpy(t->data, data, n * sizeof(double));
    return VP_OK;
}

size_t ref_tensors_trainable_params(const struct ref_tensors *ts) {
    size_t n = 0;
    for (int i = 0; i < ts->count; i++)
        if (ts->items[i]->grad) n += ts->items[i]->n;
    return n;
}

void ref_tensors_zero_grad(struct ref_tensors *ts) {
    for (int i = 0; i < ts->count; i++)
        if (ts->items[i]->grad) memset(ts->items[i]->grad, 0, ts->items[i]->n * sizeof(double));
}

/* ------------------------------------------------------------------------
 * Delta modules: slots and checks
 * ------------------------------------------------------------------------ */

void ref_deltas_init(struct ref_deltas *dl, const struct model_arch *arch, struct delta_spec *spec,
                     struct ref_tensors *tensors, unsigned stack, const char *root) {
    *dl = (struct ref_deltas){.arch = arch, .spec = spec, .tensors = tensors, .stack = stack, .root = root};
    dl->slots = calloc((size_t)spec->count * arch->layers + 1, sizeof *dl->slots);
    dl->reparam = calloc((size_t)spec->count + 1, sizeof *dl->reparam);
    dl->prefix_rows = calloc((size_t)arch->layers, sizeof *dl->prefix_rows);
    assert(dl->slots && dl->reparam && dl->prefix_rows);
    for (int i = 0; i < spec->count; i++)
        for (int l = 0; l < arch->layers; l++) {
            ref_deltas_slot(dl, i, l)->module = i;
            ref_deltas_slot(dl, i, l)->layer = l;
        }
}

static void reparam_free(struct ref_reparam *rp) {
    free(rp->h0pre);
    free(rp->h0);
    free(rp->out);
    *rp = (struct ref_reparam){0};
}

/* The tensors are the registry's, freed with it. */
void ref_deltas_finish(struct ref_deltas *dl) {
    for (int i = 0; dl->reparam && i < dl->spec->count; i++) reparam_free(&dl->reparam[i]);
    free(dl->slots);
    free(dl->reparam);
    free(dl->prefix_rows);
    dl->slots = NULL;
    dl->reparam = NULL;
    dl->prefix_rows = NULL;
}

struct ref_slot *ref_deltas_slot(const struct ref_deltas *dl, int module, int layer) {
    return &dl->slots[(size_t)module * dl->arch->layers + layer];
}

/* The stack bit, layer and name root of slot layer l (a block with a map). */
static unsigned block_stack(const struct ref_deltas *dl, int l) { return dl->blocks ? dl->blocks[l].stack : dl->stack; }
static int block_layer(const struct ref_deltas *dl, int l) { return dl->blocks ? dl->blocks[l].layer : l; }
static const char *block_root(const struct ref_deltas *dl, int l) { return dl->blocks ? dl->blocks[l].root : dl->root; }

bool ref_deltas_applies(const struct ref_deltas *dl, int module, int layer) {
    const struct delta_module *mod = &dl->spec->modules[module];
    const unsigned stack = block_stack(dl, layer);
    const bool ffn = mod->at == DELTA_AT_FFN || mod->at == DELTA_AT_UP || mod->at == DELTA_AT_DOWN;
    if (stack == DELTA_STACK_CROSS && ffn) return false;
    return (mod->stacks & stack) && delta_module_has_layer(mod, block_layer(dl, layer));
}

vp_status ref_deltas_check_spec(const struct delta_spec *spec, const struct model_arch *a, unsigned stack,
                                const char *who) {
    for (int i = 0; i < spec->count; i++) {
        const struct delta_module *mod = &spec->modules[i];
        if (!(mod->stacks & stack)) continue;
        for (int k = 0; k < mod->layer_count; k++)
            if (!mod->all_layers && (mod->layers[k] < 0 || mod->layers[k] >= a->layers))
                return vp_fail(VP_ERROR_BAD_INPUT, "%s: delta module %d names layer %d, but the model has "
                               "layers 0..%d", who, i, mod->layers[k], a->layers - 1);
        bool ok = mod->kind == DELTA_BITFIT || mod->kind == DELTA_FULL || mod->size > 0;
        if (mod->kind == DELTA_ADAPTER)
            ok = ok && (mod->at == DELTA_AT_ATTN || mod->at == DELTA_AT_FFN) &&
                 (!mod->per_head || (mod->at == DELTA_AT_ATTN && a->heads * a->head_dim == a->hidden));
        if (mod->kind == DELTA_LORA) ok = ok && mod->at >= DELTA_AT_Q && mod->at <= DELTA_AT_DOWN;
        if (mod->kind == DELTA_PREFIX) ok = ok && mod->reparam >= 0;
        if (!ok)
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: delta module %d (%s at %s, size %d) is not a placement the "
                           "contract defines", who, i, delta_kind_name(mod->kind), delta_at_name(mod->at),
                           mod->size);
    }
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Delta modules: creation
 * ------------------------------------------------------------------------ */

static int kv_width(const struct ref_deltas *dl) { return dl->arch->kv_heads * dl->arch->head_dim; }

/* Adapter init (PAPER.md): `lora` W_down Kaiming-uniform (a = √5: bound
 * 1/√fan_in), W_up and biases zero; `bert` weights N(0, 0.02), biases zero.
 * A parallel attention adapter writes ctx (heads·head_dim); the others write
 * the hidden width. */
static void create_adapter(struct ref_deltas *dl, struct ref_slot *s, const struct delta_module *mod) {
    const struct model_arch *a = dl->arch;
    struct ref_tensors *ts = dl->tensors;
    const int r = mod->size, H = a->heads, hd = a->head_dim, i = s->module, l = block_layer(dl, s->layer);
    const char *p = block_root(dl, s->layer);
    s->din = a->hidden;
    s->dout = mod->at == DELTA_AT_ATTN && mod->insert == DELTA_PARALLEL ? H * hd : a->hidden;
    if (mod->per_head) {
        s->down_w = ref_tensors_add(ts, true, H, r, hd, "%s.layers.%d.delta%d.down.weight", p, l, i);
        s->down_b = ref_tensors_add(ts, true, H, r, 0, "%s.layers.%d.delta%d.down.bias", p, l, i);
        s->up_w = ref_tensors_add(ts, true, H, hd, r, "%s.layers.%d.delta%d.up.weight", p, l, i);
        s->up_b = ref_tensors_add(ts, true, H, hd, 0, "%s.layers.%d.delta%d.up.bias", p, l, i);
    } else {
        s->down_w = ref_tensors_add(ts, true, r, s->din, 0, "%s.layers.%d.delta%d.down.weight", p, l, i);
        s->down_b = ref_tensors_add(ts, true, r, 0, 0, "%s.layers.%d.delta%d.down.bias", p, l, i);
        s->up_w = ref_tensors_add(ts, true, s->dout, r, 0, "%s.layers.%d.delta%d.up.weight", p, l, i);
        s->up_b = ref_tensors_add(ts, true, s->dout, 0, 0, "%s.layers.%d.delta%d.up.bias", p, l, i);
    }
    const int fan_in = mod->per_head ? hd : s->din;
    if (mod->init == DELTA_INIT_LORA) {
        ref_tensors_fill_uniform(ts, s->down_w, 1.0 / sqrt((double)fan_in));
        ref_tensors_fill_zero(ts, s->up_w);
    } else {
        ref_tensors_fill_normal(ts, s->down_w, 0.0, 0.02);
        ref_tensors_fill_normal(ts, s->up_w, 0.0, 0.02);
    }
    ref_tensors_fill_zero(ts, s->down_b);
    ref_tensors_fill_zero(ts, s->up_b);
    if (mod->compose == DELTA_COMPOSE_GATED) {
        s->gate = ref_tensors_add(ts, true, 1, 0, 0, "%s.layers.%d.delta%d.gate", p, l, i);
        ref_tensors_fill_zero(ts, s->gate);
    }
}

/* LoRA: A (r,in) Kaiming-uniform, B (out,r) zero. */
static void create_lora(struct ref_deltas *dl, struct ref_slot *s, const struct delta_module *mod, int in, int out) {
    struct ref_tensors *ts = dl->tensors;
    s->din = in;
    s->dout = out;
    s->lora_a = ref_tensors_add(ts, true, mod->size, in, 0, "%s.layers.%d.delta%d.lora_A",
                                block_root(dl, s->layer), block_layer(dl, s->layer), s->module);
    s->lora_b = ref_tensors_add(ts, true, out, mod->size, 0, "%s.layers.%d.delta%d.lora_B",
                                block_root(dl, s->layer), block_layer(dl, s->layer), s->module);
    ref_tensors_fill_uniform(ts, s->lora_a, 1.0 / sqrt((double)in));
    ref_tensors_fill_zero(ts, s->lora_b);
}

static void create_plain_prefix(struct ref_deltas *dl, struct ref_slot *s, const struct delta_module *mod) {
    const int L = mod->size, kvd = kv_width(dl);
    s->prefix_k = ref_tensors_add(dl->tensors, true, L, kvd, 0, "%s.layers.%d.delta%d.prefix_k",
                                  block_root(dl, s->layer), block_layer(dl, s->layer), s->module);
    s->prefix_v = ref_tensors_add(dl->tensors, true, L, kvd, 0, "%s.layers.%d.delta%d.prefix_v",
                                  block_root(dl, s->layer), block_layer(dl, s->layer), s->module);
}

/* Number of layers module i applies to. */
static int module_layers(const struct ref_deltas *dl, int module) {
    int n = 0;
    for (int l = 0; l < dl->arch->layers; l++) n += ref_deltas_applies(dl, module, l);
    return n;
}

/* E ~ N(0,1)·0.02 (the contract); both Linears as torch.nn.Linear's default:
 * weight and bias U(±1/√fan_in). */
static void create_reparam(struct ref_deltas *dl, int i, const struct delta_module *mod) {
    struct ref_reparam *rp = &dl->reparam[i];
    struct ref_tensors *ts = dl->tensors;
    const int L = mod->size, d = dl->arch->hidden, R = mod->reparam, W = module_layers(dl, i) * 2 * kv_width(dl);
    rp->emb = ref_tensors_add(ts, true, L, d, 0, "delta%d.reparam.embedding", i);
    rp->w0 = ref_tensors_add(ts, true, R, d, 0, "delta%d.reparam.0.weight", i);
    rp->b0 = ref_tensors_add(ts, true, R, 0, 0, "delta%d.reparam.0.bias", i);
    rp->w2 = ref_tensors_add(ts, true, W, R, 0, "delta%d.reparam.2.weight", i);
    rp->b2 = ref_tensors_add(ts, true, W, 0, 0, "delta%d.reparam.2.bias", i);
    ref_tensors_fill_normal(ts, rp->emb, 0.0, 0.02);
    ref_tensors_fill_uniform(ts, rp->w0, 1.0 / sqrt((double)d));
    ref_tensors_fill_uniform(ts, rp->b0, 1.0 / sqrt((double)d));
    ref_tensors_fill_uniform(ts, rp->w2, 1.0 / sqrt((double)R));
    ref_tensors_fill_uniform(ts, rp->b2, 1.0 / sqrt((double)R));
    rp->h0pre = calloc((size_t)L * R, sizeof(double));
    rp->h0 = calloc((size_t)L * R, sizeof(double));
    rp->out = calloc((size_t)L * W, sizeof(double));
    assert(rp->h0pre && rp->h0 && rp->out);
}

void ref_deltas_create_module(struct ref_deltas *dl, int i, int lora_in, int lora_out) {
    const struct delta_module *mod = &dl->spec->modules[i];
    assert(mod->kind != DELTA_BITFIT && mod->kind != DELTA_FULL);
    if (mod->kind == DELTA_PREFIX && mod->reparam > 0) create_reparam(dl, i, mod);
    int block = 0;
    for (int l = 0; l < dl->arch->layers; l++) {
        struct ref_slot *s = ref_deltas_slot(dl, i, l);
        if (!ref_deltas_applies(dl, i, l)) continue;
        s->active = true;
        if (mod->kind == DELTA_ADAPTER) create_adapter(dl, s, mod);
        if (mod->kind == DELTA_LORA) create_lora(dl, s, mod, lora_in, lora_out);
        if (mod->kind == DELTA_PREFIX) {
            s->prefix_block = block++;
            s->prefix_offset = dl->prefix_rows[l];
            dl->prefix_rows[l] += mod->size;
            if (mod->reparam == 0) {
                create_plain_prefix(dl, s, mod);
                ref_tensors_fill_normal(dl->tensors, s->prefix_k, 0.0, 0.02);
                ref_tensors_fill_normal(dl->tensors, s->prefix_v, 0.0, 0.02);
            }
        }
    }
}

void ref_deltas_alloc_acts(struct ref_deltas *dl, struct ref_arena *arena, size_t N) {
    for (int i = 0; i < dl->spec->count; i++) {
        const struct delta_module *mod = &dl->spec->modules[i];
        if (mod->kind != DELTA_ADAPTER && mod->kind != DELTA_LORA) continue;
        const size_t rows = mod->per_head ? (size_t)dl->arch->heads : 1;
        for (int l = 0; l < dl->arch->layers; l++) {
            struct ref_slot *s = ref_deltas_slot(dl, i, l);
            if (!s->active) continue;
            s->in = ref_arena_doubles(arena, N * (size_t)s->din);
            s->hpre = ref_arena_doubles(arena, rows * N * (size_t)mod->size);
            s->hact = ref_arena_doubles(arena, rows * N * (size_t)mod->size);
            s->delta = ref_arena_doubles(arena, N * (size_t)s->dout);
        }
    }
}

/* ------------------------------------------------------------------------
 * Prefix collapse
 * ------------------------------------------------------------------------ */

/* t (L,w) = the columns col .. col+w−1 of the (L,W) reparameterisation output. */
static void copy_block(struct refm_tensor *t, const double *out, int L, int W, int col, int w) {
    for (int j = 0; j < L; j++)
        memcpy(t->data + (size_t)j * w, out + (size_t)j * W + col, (size_t)w * sizeof(double));
}

vp_status ref_deltas_collapse_prefix(struct ref_deltas *dl) {
    const int kvd = kv_width(dl);
    for (int i = 0; i < dl->spec->count; i++) {
        struct delta_module *mod = &dl->spec->modules[i];
        struct ref_reparam *rp = &dl->reparam[i];
        if (mod->kind != DELTA_PREFIX || !rp->emb) continue;
        ref_deltas_reparam_forward(dl, i);
        const int W = rp->w2->shape[0];
        for (int l = 0; l < dl->arch->layers; l++) {
            struct ref_slot *s = ref_deltas_slot(dl, i, l);
            if (!s->active) continue;
            create_plain_prefix(dl, s, mod);
            copy_block(s->prefix_k, rp->out, mod->size, W, s->prefix_block * 2 * kvd, kvd);
            copy_block(s->prefix_v, rp->out, mod->size, W, s->prefix_block * 2 * kvd + kvd, kvd);
        }
        struct refm_tensor *mlp[] = {rp->emb, rp->w0, rp->b0, rp->w2, rp->b2};
        for (size_t k = 0; k < sizeof mlp / sizeof mlp[0]; k++) ref_tensors_remove(dl->tensors, mlp[k]);
        reparam_free(rp);
        mod->reparam = 0;
    }
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Test fixtures
 * ------------------------------------------------------------------------ */

vp_status ref_spec_load(struct delta_spec *s, const char *label, const char *preset, const char *json, int reparam) {
    vp_status st = json ? delta_spec_parse(json, strlen(json), label, s) : delta_spec_preset(preset, s);
    if (st != VP_OK) return st;
    if (reparam >= 0)
        for (int i = 0; i < s->count; i++)
            if (s->modules[i].kind == DELTA_PREFIX) s->modules[i].reparam = reparam;
    return VP_OK;
}
