/* Decoder reference: creation of the frozen model, its linear layers, and
 * the model's view of the tensor registry and delta modules (delta_ref.c).
 * The forward is in decoder_forward.c, the backward in decoder_backward.c. */
#include "decoder.h"
#include "ref.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------
 * Tensor registry
 * ------------------------------------------------------------------------ */

int refd_tensor_count(const struct refd *m) { return m->tensors.count; }
struct refm_tensor *refd_tensor_at(struct refd *m, int i) { return ref_tensors_at(&m->tensors, i); }
struct refm_tensor *refd_tensor_find(struct refd *m, const char *name) { return ref_tensors_find(&m->tensors, name); }

vp_status refd_tensor_set(struct refd *m, const char *name, const double *data, size_t n) {
    return ref_tensors_set(&m->tensors, name, data, n);
}

size_t refd_trainable_params(const struct refd *m) { return ref_tensors_trainable_params(&m->tensors); }
void refd_zero_grad(struct refd *m) { ref_tensors_zero_grad(&m->tensors); }

struct ref_slot *refd_slot_at(struct refd *m, int module, int layer) {
    return ref_deltas_slot(&m->deltas, module, layer);
}

int refd_position_offset(const struct refd *m) {
    if (m->opt.prefix_positions == REFD_PREFIX_POSITIONS_ZERO) return 0;
    int P = 0;
    for (int l = 0; l < m->arch.layers; l++)
        if (m->deltas.prefix_rows[l] > P) P = m->deltas.prefix_rows[l];
    return P;
}

/* ------------------------------------------------------------------------
 * Linear layers of the frozen model
 * ------------------------------------------------------------------------ */

void refd_linear_forward(double *y, const double *x, const struct refd_linear *lin, int N) {
    if (!lin->conv1d) {
        ref_matmul_forward(y, x, lin->w->data, lin->b ? lin->b->data : NULL, N, lin->in, lin->out);
        return;
    }
    const double *W = lin->w->data + lin->c0, *b = lin->b ? lin->b->data + lin->c0 : NULL;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < lin->out; o++) {
            double acc = 0.0;
            for (int i = 0; i < lin->in; i++) acc += x[(size_t)n * lin->in + i] * W[(size_t)i * lin->ld + o];
            y[(size_t)n * lin->out + o] = acc + (b ? b[o] : 0.0);
        }
}

/* Conv1D block y = x·W_blk + b_blk: dx = dy·W_blkᵀ, dW_blk += xᵀ·dy,
 * db_blk += Σ_n dy (W_blk = columns c0 .. c0+out−1 of W). */
void refd_linear_backward(double *dx, const double *dy, const double *x, const struct refd_linear *lin, int N) {
    double *dw = lin->w->grad, *db = lin->b ? lin->b->grad : NULL;
    if (!lin->conv1d) {
        ref_matmul_backward(dx, dw, db, dy, x, lin->w->data, N, lin->in, lin->out);
        return;
    }
    const double *W = lin->w->data + lin->c0;
    const int in = lin->in, out = lin->out;
    if (dx)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < in; i++) {
                double acc = 0.0;
                for (int o = 0; o < out; o++) acc += dy[(size_t)n * out + o] * W[(size_t)i * lin->ld + o];
                dx[(size_t)n * in + i] = acc;
            }
    if (dw)
        for (int i = 0; i < in; i++)
            for (int o = 0; o < out; o++) {
                double acc = 0.0;
                for (int n = 0; n < N; n++) acc += x[(size_t)n * in + i] * dy[(size_t)n * out + o];
                dw[(size_t)i * lin->ld + lin->c0 + o] += acc;
            }
    if (db)
        for (int o = 0; o < out; o++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++) acc += dy[(size_t)n * out + o];
            db[lin->c0 + o] += acc;
        }
}

/* ------------------------------------------------------------------------
 * The frozen model
 * ------------------------------------------------------------------------ */

/* A norm's weight near 1 (so the test model is not degenerate) and, for
 * LayerNorm, its bias; `prefix` ends with the module name and a dot. */
static void norm_tensors(struct refd *m, struct refm_tensor **w, struct refm_tensor **b, const char *prefix) {
    struct ref_tensors *ts = &m->tensors;
    int d = m->arch.hidden;
    *w = ref_tensors_add(ts, false, d, 0, 0, "%sweight", prefix);
    ref_tensors_fill_normal(ts, *w, 1.0, 0.1);
    *b = m->arch.norm == MODEL_NORM_LAYERNORM ? ref_tensors_weight(ts, d, 0, "%sbias", prefix) : NULL;
}

/* nn.Linear "{p}{name}.weight" (out,in) and, when `bias`, its bias. */
static struct refd_linear linear(struct refd *m, const char *p, const char *name, int in, int out, bool bias) {
    struct ref_tensors *ts = &m->tensors;
    struct refd_linear lin = {.in = in, .out = out};
    lin.w = ref_tensors_weight(ts, out, in, "%s%s.weight", p, name);
    if (bias) lin.b = ref_tensors_weight(ts, out, 0, "%s%s.bias", p, name);
    return lin;
}

/* GPT-2 Conv1D "{p}{name}.weight" (in,out) + bias (out). */
static struct refd_linear conv1d(struct refd *m, const char *p, const char *name, int in, int out) {
    struct ref_tensors *ts = &m->tensors;
    struct refd_linear lin = {.in = in, .out = out, .conv1d = true, .c0 = 0, .ld = out};
    lin.w = ref_tensors_weight(ts, in, out, "%s%s.weight", p, name);
    lin.b = ref_tensors_weight(ts, out, 0, "%s%s.bias", p, name);
    return lin;
}

static void create_gpt2_layer(struct refd *m, struct refd_layer *L, int l) {
    const int d = m->arch.hidden, I = m->arch.intermediate;
    char p[96], q[128];
    snprintf(p, sizeof p, "transformer.h.%d.", l);
    snprintf(q, sizeof q, "%sln_1.", p);
    norm_tensors(m, &L->norm1_w, &L->norm1_b, q);
    struct refd_linear qkv = conv1d(m, p, "attn.c_attn", d, 3 * d);
    L->q = L->k = L->v = qkv;
    L->q.out = L->k.out = L->v.out = d;
    L->k.c0 = d;
    L->v.c0 = 2 * d;
    L->o = conv1d(m, p, "attn.c_proj", d, d);
    snprintf(q, sizeof q, "%sln_2.", p);
    norm_tensors(m, &L->norm2_w, &L->norm2_b, q);
    L->up = conv1d(m, p, "mlp.c_fc", d, I);
    L->down = conv1d(m, p, "mlp.c_proj", I, d);
}

static void create_llama_layer(struct refd *m, struct refd_layer *L, int l) {
    const struct model_arch *a = &m->arch;
    const int d = a->hidden, I = a->intermediate, qd = a->heads * a->head_dim, kvd = a->kv_heads * a->head_dim;
    char p[96], q[128];
    snprintf(p, sizeof p, "model.layers.%d.", l);
    L->q = linear(m, p, "self_attn.q_proj", d, qd, a->qkv_bias);
    L->k = linear(m, p, "self_attn.k_proj", d, kvd, a->qkv_bias);
    L->v = linear(m, p, "self_attn.v_proj", d, kvd, a->qkv_bias);
    L->o = linear(m, p, "self_attn.o_proj", qd, d, a->out_bias);
    L->gate = linear(m, p, "mlp.gate_proj", d, I, a->ffn_bias);
    L->up = linear(m, p, "mlp.up_proj", d, I, a->ffn_bias);
    L->down = linear(m, p, "mlp.down_proj", I, d, a->ffn_bias);
    snprintf(q, sizeof q, "%sinput_layernorm.", p);
    norm_tensors(m, &L->norm1_w, &L->norm1_b, q);
    snprintf(q, sizeof q, "%spost_attention_layernorm.", p);
    norm_tensors(m, &L->norm2_w, &L->norm2_b, q);
}

/* In Hugging Face's state_dict order. */
static void create_model(struct refd *m) {
    const struct model_arch *a = &m->arch;
    const bool gpt2 = a->family == MODEL_FAMILY_GPT2;
    const int d = a->hidden;
    struct ref_tensors *ts = &m->tensors;
    m->w.embed = ref_tensors_weight(ts, a->vocab_size, d, gpt2 ? "transformer.wte.weight"
                                                               : "model.embed_tokens.weight");
    if (a->positions == MODEL_POS_LEARNED)
        m->w.pos = ref_tensors_weight(ts, a->max_positions, d, "transformer.wpe.weight");
    m->w.layers = calloc((size_t)a->layers, sizeof *m->w.layers);
    assert(m->w.layers);
    for (int l = 0; l < a->layers; l++) {
        if (gpt2) create_gpt2_layer(m, &m->w.layers[l], l);
        else create_llama_layer(m, &m->w.layers[l], l);
    }
    norm_tensors(m, &m->w.normf_w, &m->w.normf_b, gpt2 ? "transformer.ln_f." : "model.norm.");
    m->w.head = a->tie_word_embeddings ? m->w.embed : ref_tensors_weight(ts, a->vocab_size, d, "lm_head.weight");
}

/* BitFit: every bias of the module's layers and the final norm's β; full:
 * everything. */
static void mark_model_trainable(struct refd *m, int module) {
    struct refd_weights *w = &m->w;
    const bool full = m->spec.modules[module].kind == DELTA_FULL;
    ref_tensor_make_trainable(w->normf_b);
    if (full) {
        ref_tensor_make_trainable(w->embed);
        ref_tensor_make_trainable(w->pos);
        ref_tensor_make_trainable(w->normf_w);
        ref_tensor_make_trainable(w->head);
    }
    for (int l = 0; l < m->arch.layers; l++) {
        if (!full && !ref_deltas_applies(&m->deltas, module, l)) continue;
        struct refd_layer *L = &w->layers[l];
        struct refd_linear *lins[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
        for (size_t k = 0; k < sizeof lins / sizeof lins[0]; k++) {
            ref_tensor_make_trainable(lins[k]->b);
            if (full) ref_tensor_make_trainable(lins[k]->w);
        }
        ref_tensor_make_trainable(L->norm1_b);
        ref_tensor_make_trainable(L->norm2_b);
        if (full) {
            ref_tensor_make_trainable(L->norm1_w);
            ref_tensor_make_trainable(L->norm2_w);
        }
    }
}

/* ------------------------------------------------------------------------
 * Delta modules
 * ------------------------------------------------------------------------ */

/* The projection a LoRA at `at` wraps in layer 0 (every layer has the same
 * widths). */
static const struct refd_linear *lora_target(const struct refd *m, enum delta_at at) {
    const struct refd_layer *L = &m->w.layers[0];
    switch (at) {
    case DELTA_AT_Q: return &L->q;
    case DELTA_AT_K: return &L->k;
    case DELTA_AT_V: return &L->v;
    case DELTA_AT_O: return &L->o;
    case DELTA_AT_UP: return &L->up;
    case DELTA_AT_DOWN: return &L->down;
    default: return NULL;
    }
}

static void create_module(struct refd *m, int i) {
    const struct delta_module *mod = &m->spec.modules[i];
    if (!(mod->stacks & DELTA_STACK_DECODER)) return;
    if (mod->kind == DELTA_BITFIT || mod->kind == DELTA_FULL) {
        mark_model_trainable(m, i);
        return;
    }
    const struct refd_linear *target = mod->kind == DELTA_LORA ? lora_target(m, mod->at) : NULL;
    ref_deltas_create_module(&m->deltas, i, target ? target->in : 0, target ? target->out : 0);
}

/* ------------------------------------------------------------------------
 * Create / destroy
 * ------------------------------------------------------------------------ */

static vp_status check_arch(const struct model_arch *a) {
    const bool gpt2 = a->family == MODEL_FAMILY_GPT2, llama = a->family == MODEL_FAMILY_LLAMA;
    if (!gpt2 && !llama)
        return vp_fail(VP_ERROR_BAD_INPUT, "decoder reference: %s is not a GPT-2 or LLaMA-family model",
                       a->model_type);
    bool ok = a->stack == MODEL_STACK_DECODER && a->pre_norm && a->final_norm && !a->embed_norm &&
              a->embed_scale == 1.0 && a->heads % a->kv_heads == 0;
    if (gpt2)
        ok = ok && a->norm == MODEL_NORM_LAYERNORM && a->act == MODEL_ACT_GELU_TANH &&
             a->positions == MODEL_POS_LEARNED && a->kv_heads == a->heads && a->heads * a->head_dim == a->hidden;
    else
        ok = ok && a->norm == MODEL_NORM_RMSNORM && a->act == MODEL_ACT_SWIGLU && a->positions == MODEL_POS_ROTARY &&
             a->head_dim % 2 == 0;
    if (!ok)
        return vp_fail(VP_ERROR_BAD_INPUT, "decoder reference: %s's config is outside what the reference "
                       "covers (GPT-2: pre-LN, gelu_new, learned positions; LLaMA: RMSNorm, SwiGLU, RoPE)",
                       a->model_type);
    return VP_OK;
}

vp_status refd_create(struct refd **out, const struct model_arch *arch, const struct delta_spec *spec,
                      const struct refd_options *opt) {
    *out = NULL;
    vp_status s = check_arch(arch);
    if (s == VP_OK) s = ref_deltas_check_spec(spec, arch, DELTA_STACK_DECODER, "decoder reference");
    if (s != VP_OK) return s;
    struct refd *m = calloc(1, sizeof *m);
    if (!m) return vp_fail(VP_ERROR_HOST_MEMORY, "decoder reference: out of host memory");
    m->arch = *arch;
    m->arch.labels = NULL; /* the caller owns the names */
    m->spec = *spec;
    m->opt = opt ? *opt : (struct refd_options){0};
    if (m->opt.weight_std == 0.0) m->opt.weight_std = 0.02;
    ref_tensors_init(&m->tensors, m->opt.seed, m->opt.weight_std, m->opt.randomise_zero_init, "decoder reference");
    ref_deltas_init(&m->deltas, &m->arch, &m->spec, &m->tensors, DELTA_STACK_DECODER, "decoder");
    /* The frozen model first: it takes the same streams whatever the spec. */
    create_model(m);
    for (int i = 0; i < spec->count; i++) create_module(m, i);
    *out = m;
    return VP_OK;
}

void refd_destroy(struct refd *m) {
    if (!m) return;
    refd_acts_free(&m->acts);
    ref_deltas_finish(&m->deltas);
    ref_tensors_finish(&m->tensors);
    free(m->w.layers);
    free(m);
}

vp_status refd_collapse_prefix(struct refd *m) { return ref_deltas_collapse_prefix(&m->deltas); }
