/* Seq2seq reference: creation of the frozen BART/mBART model, its delta
 * blocks and the model's view of the tensor registry (seq2seq.h). The
 * forward is in seq2seq_forward.c, the backward in seq2seq_backward.c,
 * greedy generation in seq2seq_generate.c. */
#include "seq2seq.h"
#include "ref.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------
 * Tensor registry
 * ------------------------------------------------------------------------ */

int refs_tensor_count(const struct refs *m) { return m->tensors.count; }
struct refm_tensor *refs_tensor_at(struct refs *m, int i) { return ref_tensors_at(&m->tensors, i); }
struct refm_tensor *refs_tensor_find(struct refs *m, const char *name) { return ref_tensors_find(&m->tensors, name); }

vp_status refs_tensor_set(struct refs *m, const char *name, const double *data, size_t n) {
    return ref_tensors_set(&m->tensors, name, data, n);
}

size_t refs_trainable_params(const struct refs *m) { return ref_tensors_trainable_params(&m->tensors); }
void refs_zero_grad(struct refs *m) { ref_tensors_zero_grad(&m->tensors); }

int refs_block(const struct refs *m, unsigned stack, int layer) {
    const int Le = m->arch.layers, Ld = m->arch.decoder_layers;
    if (stack == DELTA_STACK_ENCODER) return layer;
    return Le + layer + (stack == DELTA_STACK_CROSS ? Ld : 0);
}

struct ref_slot *refs_slot_at(struct refs *m, int module, int block) {
    return ref_deltas_slot(&m->deltas, module, block);
}

/* ------------------------------------------------------------------------
 * The frozen model, in Hugging Face's state_dict order
 * ------------------------------------------------------------------------ */

/* LayerNorm "{p}{name}.weight" near 1 (so the test model is not
 * degenerate) and "{p}{name}.bias". */
static void norm_tensors(struct refs *m, struct refm_tensor **w, struct refm_tensor **b, const char *p,
                         const char *name) {
    struct ref_tensors *ts = &m->tensors;
    *w = ref_tensors_add(ts, false, m->arch.hidden, 0, 0, "%s%s.weight", p, name);
    ref_tensors_fill_normal(ts, *w, 1.0, 0.1);
    *b = ref_tensors_weight(ts, m->arch.hidden, 0, "%s%s.bias", p, name);
}

/* nn.Linear "{p}{name}.weight" (out,in) + bias (out). */
static struct refd_linear linear(struct refs *m, const char *p, const char *name, int in, int out) {
    struct ref_tensors *ts = &m->tensors;
    struct refd_linear lin = {.in = in, .out = out};
    lin.w = ref_tensors_weight(ts, out, in, "%s%s.weight", p, name);
    lin.b = ref_tensors_weight(ts, out, 0, "%s%s.bias", p, name);
    return lin;
}

/* "{p}{name}.{q,k,v,out}_proj" and "{p}{name}_layer_norm". */
static void create_attn(struct refs *m, struct refs_attn *A, const char *p, const char *name) {
    const int d = m->arch.hidden;
    char q[96];
    snprintf(q, sizeof q, "%s.q_proj", name);
    A->q = linear(m, p, q, d, d);
    snprintf(q, sizeof q, "%s.k_proj", name);
    A->k = linear(m, p, q, d, d);
    snprintf(q, sizeof q, "%s.v_proj", name);
    A->v = linear(m, p, q, d, d);
    snprintf(q, sizeof q, "%s.out_proj", name);
    A->o = linear(m, p, q, d, d);
    snprintf(q, sizeof q, "%s_layer_norm", name);
    norm_tensors(m, &A->norm_w, &A->norm_b, p, q);
}

/* model.{encoder,decoder}: positions, layers (self-attention, cross-attention
 * for the decoder, fc1, fc2, final_layer_norm), layernorm_embedding, and
 * mBART's layer_norm — HF registers layernorm_embedding after the layers. */
static void create_stack(struct refs *m, struct refs_stack *st, bool decoder) {
    const struct model_arch *a = &m->arch;
    const int d = a->hidden, I = decoder ? a->decoder_intermediate : a->intermediate;
    const char *root = decoder ? "model.decoder." : "model.encoder.";
    char p[96];
    st->layers = decoder ? a->decoder_layers : a->layers;
    st->pos = ref_tensors_weight(&m->tensors, a->max_positions + a->position_offset, d, "%sembed_positions.weight",
                                 root);
    st->layer = calloc((size_t)st->layers, sizeof *st->layer);
    assert(st->layer);
    for (int l = 0; l < st->layers; l++) {
        struct refs_layer *L = &st->layer[l];
        snprintf(p, sizeof p, "%slayers.%d.", root, l);
        create_attn(m, &L->self, p, "self_attn");
        if (decoder) create_attn(m, &L->cross, p, "encoder_attn");
        L->ffn.up = linear(m, p, "fc1", d, I);
        L->ffn.down = linear(m, p, "fc2", I, d);
        norm_tensors(m, &L->ffn.norm_w, &L->ffn.norm_b, p, "final_layer_norm");
    }
    norm_tensors(m, &st->embnorm_w, &st->embnorm_b, root, "layernorm_embedding");
    if (a->final_norm) norm_tensors(m, &st->final_w, &st->final_b, root, "layer_norm");
}

static void create_model(struct refs *m) {
    const struct model_arch *a = &m->arch;
    struct ref_tensors *ts = &m->tensors;
    m->w.shared = ref_tensors_weight(ts, a->vocab_size, a->hidden, "model.shared.weight");
    create_stack(m, &m->w.enc, false);
    create_stack(m, &m->w.dec, true);
    m->w.logits_bias = ref_tensors_add(ts, false, 1, a->vocab_size, 0, "final_logits_bias");
    ref_tensors_fill_normal(ts, m->w.logits_bias, 0.0, ts->weight_std);
    m->w.head = a->tie_word_embeddings ? m->w.shared
                                       : ref_tensors_weight(ts, a->vocab_size, a->hidden, "lm_head.weight");
}

/* ------------------------------------------------------------------------
 * BitFit and full
 * ------------------------------------------------------------------------ */

static void attn_trainable(struct refs_attn *A, bool full) {
    struct refd_linear *lins[] = {&A->q, &A->k, &A->v, &A->o};
    for (size_t k = 0; k < sizeof lins / sizeof lins[0]; k++) {
        ref_tensor_make_trainable(lins[k]->b);
        if (full) ref_tensor_make_trainable(lins[k]->w);
    }
    ref_tensor_make_trainable(A->norm_b);
    if (full) ref_tensor_make_trainable(A->norm_w);
}

/* One stack's layers that `module` names (every layer for full) and the
 * stack's outer norms' β (γ too for full). */
static void stack_trainable(struct refs *m, struct refs_stack *st, unsigned stack, int module, bool full) {
    const struct delta_module *mod = &m->spec.modules[module];
    ref_tensor_make_trainable(st->embnorm_b);
    ref_tensor_make_trainable(st->final_b);
    if (full) {
        ref_tensor_make_trainable(st->pos);
        ref_tensor_make_trainable(st->embnorm_w);
        ref_tensor_make_trainable(st->final_w);
    }
    for (int l = 0; l < st->layers; l++) {
        if (!full && !((mod->stacks & stack) && delta_module_has_layer(mod, l))) continue;
        struct refs_layer *L = &st->layer[l];
        attn_trainable(&L->self, full);
        if (stack == DELTA_STACK_DECODER) attn_trainable(&L->cross, full);
        ref_tensor_make_trainable(L->ffn.up.b);
        ref_tensor_make_trainable(L->ffn.down.b);
        ref_tensor_make_trainable(L->ffn.norm_b);
        if (full) {
            ref_tensor_make_trainable(L->ffn.up.w);
            ref_tensor_make_trainable(L->ffn.down.w);
            ref_tensor_make_trainable(L->ffn.norm_w);
        }
    }
}

static void mark_model_trainable(struct refs *m, int module) {
    const bool full = m->spec.modules[module].kind == DELTA_FULL;
    stack_trainable(m, &m->w.enc, DELTA_STACK_ENCODER, module, full);
    stack_trainable(m, &m->w.dec, DELTA_STACK_DECODER, module, full);
    if (full) {
        ref_tensor_make_trainable(m->w.shared);
        ref_tensor_make_trainable(m->w.head);
    }
}

/* ------------------------------------------------------------------------
 * Delta modules
 * ------------------------------------------------------------------------ */

/* Encoder layers, decoder layers, cross-attention blocks. */
static void create_blocks(struct refs *m) {
    const int Le = m->arch.layers, Ld = m->arch.decoder_layers;
    m->blocks_arch = m->arch;
    m->blocks_arch.layers = Le + 2 * Ld;
    m->blocks = calloc((size_t)m->blocks_arch.layers, sizeof *m->blocks);
    assert(m->blocks);
    for (int l = 0; l < Le; l++) m->blocks[l] = (struct ref_block){DELTA_STACK_ENCODER, l, "encoder"};
    for (int l = 0; l < Ld; l++) {
        m->blocks[Le + l] = (struct ref_block){DELTA_STACK_DECODER, l, "decoder"};
        m->blocks[Le + Ld + l] = (struct ref_block){DELTA_STACK_CROSS, l, "cross"};
    }
}

/* A LoRA's projection widths: q, k, v, o d → d; up d → I, down I → d, I
 * the FFN width of the stacks it sits in (one width: check_spec). */
static void lora_dims(const struct model_arch *a, const struct delta_module *mod, int *in, int *out) {
    const int I = mod->stacks & DELTA_STACK_ENCODER ? a->intermediate : a->decoder_intermediate;
    *in = *out = a->hidden;
    if (mod->at == DELTA_AT_UP) *out = I;
    if (mod->at == DELTA_AT_DOWN) *in = I;
}

static void create_module(struct refs *m, int i) {
    const struct delta_module *mod = &m->spec.modules[i];
    if (mod->kind == DELTA_BITFIT || mod->kind == DELTA_FULL) {
        mark_model_trainable(m, i);
        return;
    }
    int in = 0, out = 0;
    if (mod->kind == DELTA_LORA) lora_dims(&m->arch, mod, &in, &out);
    ref_deltas_create_module(&m->deltas, i, in, out);
}

/* ------------------------------------------------------------------------
 * Create / destroy
 * ------------------------------------------------------------------------ */

static vp_status check_arch(const struct model_arch *a) {
    const bool bart = a->family == MODEL_FAMILY_BART, mbart = a->family == MODEL_FAMILY_MBART;
    if (!bart && !mbart)
        return vp_fail(VP_ERROR_BAD_INPUT, "seq2seq reference: %s is not a BART or mBART model", a->model_type);
    const bool ok = a->stack == MODEL_STACK_ENCODER_DECODER && a->norm == MODEL_NORM_LAYERNORM && a->embed_norm &&
                    a->positions == MODEL_POS_LEARNED && a->pre_norm == mbart && a->final_norm == mbart &&
                    a->kv_heads == a->heads && a->decoder_heads == a->heads && a->heads * a->head_dim == a->hidden &&
                    (a->act == MODEL_ACT_GELU || a->act == MODEL_ACT_GELU_TANH || a->act == MODEL_ACT_RELU);
    if (!ok)
        return vp_fail(VP_ERROR_BAD_INPUT, "seq2seq reference: %s's config is outside what the reference covers "
                       "(LayerNorm, learned positions, equal encoder and decoder heads, gelu/gelu_new/relu)",
                       a->model_type);
    return VP_OK;
}

/* The placements of delta_ref's check, over the deeper stack's layers, and
 * a LoRA at up/down in both stacks only when their FFNs have one width. */
static vp_status check_spec(const struct delta_spec *spec, const struct model_arch *a) {
    struct model_arch deepest = *a;
    if (a->decoder_layers > deepest.layers) deepest.layers = a->decoder_layers;
    const unsigned all = DELTA_STACK_ENCODER | DELTA_STACK_DECODER | DELTA_STACK_CROSS;
    vp_status s = ref_deltas_check_spec(spec, &deepest, all, "seq2seq reference");
    for (int i = 0; s == VP_OK && i < spec->count; i++) {
        const struct delta_module *mod = &spec->modules[i];
        const unsigned both = DELTA_STACK_ENCODER | DELTA_STACK_DECODER;
        if (mod->kind == DELTA_LORA && (mod->at == DELTA_AT_UP || mod->at == DELTA_AT_DOWN) &&
            (mod->stacks & both) == both && a->intermediate != a->decoder_intermediate)
            s = vp_fail(VP_ERROR_BAD_INPUT, "seq2seq reference: delta module %d is a LoRA at %s, but the encoder's "
                        "and decoder's FFN widths differ (%d, %d)", i, delta_at_name(mod->at), a->intermediate,
                        a->decoder_intermediate);
    }
    return s;
}

vp_status refs_create(struct refs **out, const struct model_arch *arch, const struct delta_spec *spec,
                      const struct refs_options *opt) {
    *out = NULL;
    vp_status s = check_arch(arch);
    if (s == VP_OK) s = check_spec(spec, arch);
    if (s != VP_OK) return s;
    struct refs *m = calloc(1, sizeof *m);
    if (!m) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq reference: out of host memory");
    m->arch = *arch;
    m->arch.labels = NULL; /* the caller owns the names */
    m->spec = *spec;
    m->opt = opt ? *opt : (struct refs_options){0};
    if (m->opt.weight_std == 0.0) m->opt.weight_std = 0.02;
    ref_tensors_init(&m->tensors, m->opt.seed, m->opt.weight_std, m->opt.randomise_zero_init, "seq2seq reference");
    create_blocks(m);
    ref_deltas_init(&m->deltas, &m->blocks_arch, &m->spec, &m->tensors, 0, NULL);
    m->deltas.blocks = m->blocks;
    create_model(m);
    for (int i = 0; i < spec->count; i++) create_module(m, i);
    *out = m;
    return VP_OK;
}

void refs_destroy(struct refs *m) {
    if (!m) return;
    refs_acts_free(&m->acts);
    ref_deltas_finish(&m->deltas);
    ref_tensors_finish(&m->tensors);
    free(m->w.enc.layer);
    free(m->w.dec.layer);
    free(m->blocks);
    free(m);
}

vp_status refs_collapse_prefix(struct refs *m) { return ref_deltas_collapse_prefix(&m->deltas); }
