/* The encoder-decoder model's pretrained pieces (BART / mBART Hugging Face
 * names, every matrix [out, in] as the file has it) and its trainable
 * tensors: the params of the spec, the model tensors bitfit / full train,
 * and the delta slots of every block, on the inner decoder (seq2seq_lm.h). */
#include "seq2seq_lm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * The pieces
 * ------------------------------------------------------------------------ */

/* A whole file tensor of shape (s0[, s1]) as one piece: a matrix (out s0,
 * in s1) in the storage type, or an f32 vector of `out` values. */
static struct dec_weight *piece(struct decoder *c, bool matrix, int out, int64_t s0, int64_t s1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static struct dec_weight *piece(struct decoder *c, bool matrix, int out, int64_t s0, int64_t s1, const char *fmt,
                                ...) {
    struct dec_weight *w = &c->weights[c->weight_count++];
    memset(w, 0, sizeof *w);
    va_list ap;
    va_start(ap, fmt);
    model_tensor_name_shape(w->name, sizeof w->name, &w->ndim, w->shape, s0, s1, fmt, ap);
    va_end(ap);
    w->out = out;
    w->in = matrix ? (int)s1 : 0;
    w->matrix = matrix;
    w->n = (uint64_t)out * (uint64_t)(matrix ? s1 : 1);
    return w;
}

/* A Linear (out, in) with its bias, `stem`.weight and `stem`.bias. */
static void linear(struct decoder *c, struct dec_weight **w, struct dec_weight **b, int out, int in,
                   const char *stem) {
    *w = piece(c, true, out, out, in, "%s.weight", stem);
    *b = piece(c, false, out, out, 0, "%s.bias", stem);
}

static void norm(struct decoder *c, struct dec_weight **w, struct dec_weight **b, int d, const char *stem) {
    *w = piece(c, false, d, d, 0, "%s.weight", stem);
    *b = piece(c, false, d, d, 0, "%s.bias", stem);
}

/* self_attn / encoder_attn of one layer under `stem` (model.X.layers.l). */
static void attn(struct decoder *c, struct s2s_attn_w *w, int d, const char *stem, const char *which) {
    char s[160];
    static const char *const proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    struct dec_weight **ws[4] = {&w->wq, &w->wk, &w->wv, &w->wo}, **bs[4] = {&w->bq, &w->bk, &w->bv, &w->bo};
    for (int k = 0; k < 4; k++) {
        snprintf(s, sizeof s, "%s.%s.%s", stem, which, proj[k]);
        linear(c, ws[k], bs[k], d, d, s);
    }
    snprintf(s, sizeof s, "%s.%s_layer_norm", stem, which);
    norm(c, &w->ln_w, &w->ln_b, d, s);
}

static vp_status stack(struct seq2seq *m, struct s2s_stack_w *st, bool decoder) {
    const struct model_arch *a = &m->arch;
    struct decoder *c = &m->core;
    const int d = a->hidden, rows = a->max_positions + a->position_offset;
    const char *X = decoder ? "decoder" : "encoder";
    st->layers = decoder ? a->decoder_layers : a->layers;
    st->I = decoder ? a->decoder_intermediate : a->intermediate;
    st->layer = calloc((size_t)st->layers, sizeof *st->layer);
    if (!st->layer) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq: out of host memory");
    char s[160];
    st->pos = piece(c, true, rows, rows, d, "model.%s.embed_positions.weight", X);
    snprintf(s, sizeof s, "model.%s.layernorm_embedding", X);
    norm(c, &st->emb_w, &st->emb_b, d, s);
    for (int l = 0; l < st->layers; l++) {
        struct s2s_layer_w *w = &st->layer[l];
        char stem[128];
        snprintf(stem, sizeof stem, "model.%s.layers.%d", X, l);
        attn(c, &w->self, d, stem, "self_attn");
        if (decoder) attn(c, &w->cross, d, stem, "encoder_attn");
        snprintf(s, sizeof s, "%s.fc1", stem);
        linear(c, &w->ffn.w1, &w->ffn.b1, st->I, d, s);
        snprintf(s, sizeof s, "%s.fc2", stem);
        linear(c, &w->ffn.w2, &w->ffn.b2, d, st->I, s);
        snprintf(s, sizeof s, "%s.final_layer_norm", stem);
        norm(c, &w->ffn.ln_w, &w->ffn.ln_b, d, s);
    }
    if (a->final_norm) {
        snprintf(s, sizeof s, "model.%s.layer_norm", X);
        norm(c, &st->final_w, &st->final_b, d, s);
    }
    return VP_OK;
}

/* The piece list from the arch alone (no file), in state_dict order. */
vp_status s2s_weights_init(struct seq2seq *m) {
    const struct model_arch *a = &m->arch;
    struct decoder *c = &m->core;
    const int most = 16 + a->layers * 20 + a->decoder_layers * 30;
    c->weights = calloc((size_t)most, sizeof *c->weights);
    if (!c->weights) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq: out of host memory");
    const int V = a->vocab_size, d = a->hidden;
    m->shared = piece(c, true, V, V, d, "model.shared.weight");
    vp_status s = stack(m, &m->enc, false);
    if (s == VP_OK) s = stack(m, &m->dec, true);
    if (s != VP_OK) return s;
    m->logits_bias = piece(c, false, V, 1, V, "final_logits_bias");
    m->head = a->tie_word_embeddings ? m->shared : piece(c, true, V, V, d, "lm_head.weight");
    c->wtype = model_storage_dtype(c->opt.storage, IO_DTYPE_F32);
    for (int k = 0; k < c->weight_count; k++) c->weights[k].dtype = c->weights[k].matrix ? c->wtype : VP_DTYPE_F32;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Trainable tensors and delta slots
 * ------------------------------------------------------------------------ */

/* The reference's mark_model_trainable: full trains every tensor but
 * final_logits_bias; bitfit every bias of the layers it names in the
 * stacks it names (a decoder layer's cross-attention included), and always
 * both layernorm_embedding βs and mBART's final LN βs. */
static bool model_trained(const struct seq2seq *m, const struct dec_weight *w) {
    if (w == m->logits_bias) return false;
    const size_t len = strlen(w->name);
    const bool bias = len >= 5 && strcmp(w->name + len - 5, ".bias") == 0;
    int layer = -1;
    unsigned stack = 0;
    if (sscanf(w->name, "model.encoder.layers.%d.", &layer) == 1) stack = DELTA_STACK_ENCODER;
    else if (sscanf(w->name, "model.decoder.layers.%d.", &layer) == 1) stack = DELTA_STACK_DECODER;
    for (int i = 0; i < m->core.spec.count; i++) {
        const struct delta_module *d = &m->core.spec.modules[i];
        if (d->kind == DELTA_FULL) return true;
        if (d->kind == DELTA_BITFIT && bias && (!stack || ((d->stacks & stack) && delta_module_has_layer(d, layer))))
            return true;
    }
    return false;
}

static struct delta_param *find(struct delta_params *p, const char *root, int l, int i, const char *part) {
    char name[DELTA_NAME_MAX];
    snprintf(name, sizeof name, "%s.%d.delta%d.%s", root, l, i, part);
    return delta_params_find(p, name);
}

/* Module i's slot at block `blk` (stack layer l under `root`); `place` counts
 * the module's places before this one (its reparam block). */
static void setup_slot(struct seq2seq *m, int i, int blk, const char *root, int l, int place, uint64_t *src) {
    struct decoder *c = &m->core;
    const struct delta_module *dm = &c->spec.modules[i];
    struct delta_params *p = c->params;
    struct dec_slot *sl = dec_slot_at(c, i, blk);
    struct dec_reparam *rp = &c->reparam[i];
    const uint64_t d = (uint64_t)m->arch.hidden, ealign = vk_pool_alignment(m->ctx) / 4;
    if (dm->kind == DELTA_PREFIX) {
        if (rp->emb) {
            sl->src_k = rp->out + (uint64_t)place * 2 * d;
            sl->src_v = sl->src_k + d;
            sl->src_stride = rp->width;
        } else {
            sl->prefix_k = find(p, root, l, i, "prefix_k");
            sl->prefix_v = find(p, root, l, i, "prefix_v");
            if (!sl->prefix_k || !sl->prefix_v) return;
            sl->src_k = (*src + ealign - 1) / ealign * ealign;
            sl->src_v = (sl->src_k + (uint64_t)dm->size * d + ealign - 1) / ealign * ealign;
            *src = sl->src_v + (uint64_t)dm->size * d;
            sl->src_stride = d;
        }
        sl->prefix_offset = c->prefix_rows[blk];
        c->prefix_rows[blk] += dm->size;
        if (c->prefix_rows[blk] > c->prefix_max) c->prefix_max = c->prefix_rows[blk];
        sl->active = true;
        return;
    }
    if (dm->kind == DELTA_ADAPTER) {
        sl->down_w = find(p, root, l, i, "down.weight");
        sl->down_b = find(p, root, l, i, "down.bias");
        sl->up_w = find(p, root, l, i, "up.weight");
        sl->up_b = find(p, root, l, i, "up.bias");
        sl->gate = find(p, root, l, i, "gate");
        if (!sl->down_w || !sl->down_b || !sl->up_w || !sl->up_b) return;
        sl->din = dm->per_head ? (int)d : (int)sl->down_w->shape[1];
        sl->dout = dm->per_head ? (int)d : (int)sl->up_w->shape[0];
    } else if (dm->kind == DELTA_LORA) {
        sl->lora_a = find(p, root, l, i, "lora_A");
        sl->lora_b = find(p, root, l, i, "lora_B");
        if (!sl->lora_a || !sl->lora_b) return;
        sl->din = (int)sl->lora_a->shape[1];
        sl->dout = (int)sl->lora_b->shape[0];
    } else {
        return;
    }
    sl->active = true;
    const int width = dm->size * (dm->per_head ? m->arch.heads : 1);
    if (width > c->rank_max) c->rank_max = width;
}

/* A reparameterised prefix's MLP tensors and its region of prefix_src. */
static vp_status setup_reparam(struct seq2seq *m, int i, uint64_t *src) {
    struct decoder *c = &m->core;
    struct dec_reparam *rp = &c->reparam[i];
    static const char *const part[5] = {"embedding", "0.weight", "0.bias", "2.weight", "2.bias"};
    struct delta_param **dst[5] = {&rp->emb, &rp->w0, &rp->b0, &rp->w2, &rp->b2};
    for (int k = 0; k < 5; k++) {
        char name[DELTA_NAME_MAX];
        snprintf(name, sizeof name, "delta%d.reparam.%s", i, part[k]);
        *dst[k] = delta_params_find(c->params, name);
        if (!*dst[k]) return vp_fail(VP_ERROR_BAD_INPUT, "seq2seq: the params have no %s", name);
    }
    const uint64_t ealign = vk_pool_alignment(m->ctx) / 4;
    rp->width = (uint32_t)rp->b2->n;
    rp->out = (*src + ealign - 1) / ealign * ealign;
    *src = rp->out + (uint64_t)c->spec.modules[i].size * rp->width;
    return VP_OK;
}

vp_status s2s_setup_params(struct seq2seq *m) {
    struct decoder *c = &m->core;
    const struct delta_spec *spec = &c->spec;
    for (int i = 0; i < spec->count; i++) {
        const struct delta_module *d = &spec->modules[i];
        if (d->kind == DELTA_FULL) c->full = true;
        if (d->kind == DELTA_ADAPTER && d->per_head) c->per_head = true;
    }
    vp_status s = delta_params_create(m->ctx, &m->arch, spec, c->opt.seed, &c->params);
    if (s != VP_OK) return s;
    struct delta_params *p = c->params;
    for (int k = 0; k < c->weight_count; k++) {
        struct dec_weight *w = &c->weights[k];
        if (!model_trained(m, w) || delta_params_find(p, w->name)) continue;
        c->model_trains = true;
        const bool transposed = w->conv1d && w->ndim == 2; /* held [ld, in]: dec_weight.param */
        if ((s = delta_params_add_model(p, w->name, w->ndim, w->shape, transposed)) != VP_OK) return s;
    }
    c->trains = p->count > 0;
    const int blocks = c->arch.layers;
    c->slots = calloc((size_t)spec->count * blocks + 1, sizeof *c->slots);
    c->prefix_rows = calloc((size_t)blocks, sizeof *c->prefix_rows);
    c->reparam = calloc((size_t)spec->count + 1, sizeof *c->reparam);
    if (!c->slots || !c->prefix_rows || !c->reparam)
        return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq: out of host memory");
    static const char *const root[3] = {"encoder.layers", "decoder.layers", "cross.layers"};
    uint64_t src = 0;
    for (int i = 0; i < spec->count && s == VP_OK; i++) {
        const struct delta_module *dm = &spec->modules[i];
        if (dm->kind == DELTA_PREFIX && dm->reparam > 0) s = setup_reparam(m, i, &src);
        int place = 0;
        for (int k = 0; k < 3 && s == VP_OK; k++) {
            const unsigned bit = 1u << k;
            const int layers = bit == DELTA_STACK_ENCODER ? m->Le : m->Ld;
            for (int l = 0; l < layers; l++) {
                const int blk = s2s_block(m, bit, l);
                struct dec_slot *sl = dec_slot_at(c, i, blk);
                sl->module = i;
                sl->layer = blk;
                if (!delta_module_in_stack(dm, &m->arch, bit) || !delta_module_has_layer(dm, l)) continue;
                setup_slot(m, i, blk, root[k], l, place++, &src);
            }
        }
    }
    c->prefix_src_elems = src;
    for (int k = 0; c->model_trains && k < c->weight_count; k++) {
        struct dec_weight *w = &c->weights[k];
        w->param = delta_params_find(p, w->name);
        if (w->param) w->dtype = VP_DTYPE_F32;
    }
    return s;
}
