/* What the two whole-model references share: the registry of named double
 * tensors with their Philox initialisation (struct ref_tensors), the delta
 * modules of the unified view — adapters (sequential, parallel, per head),
 * LoRA, prefixes with or without their reparameterisation — created, run
 * forward and backward (struct ref_deltas), and the arena both models keep
 * their activations and backward scratch in (struct ref_arena).
 *
 * model.h (the BERT/RoBERTa encoder) and decoder.h (GPT-2 and LLaMA-family
 * causal LMs) differ in everything around the modules — post-LN vs pre-LN
 * blocks, bidirectional vs causal attention, GQA and RoPE, the head and the
 * loss — so each model keeps its own block functions and calls these pieces
 * at the places its contract puts the modules: the model decides what a
 * parallel adapter reads and where a LoRA's output lands, this file computes
 * the module.
 *
 * Widths. A slot reads din and writes dout columns. Prefixes live in K/V
 * head space, kvd = kv_heads·head_dim wide, and a parallel attention adapter
 * writes ctx, heads·head_dim wide. The encoder reference only covers models
 * with kv_heads = heads and heads·head_dim = hidden (refm_create checks), so
 * both widths are d there and one code path serves both models.
 *
 *     struct ref_tensors ts;
 *     ref_tensors_init(&ts, seed, 0.02, false, "reference model");
 *     struct refm_tensor *w = ref_tensors_weight(&ts, d, d, "layer.%d.weight", l);
 *     struct ref_deltas dl;
 *     ref_deltas_init(&dl, &arch, &spec, &ts, DELTA_STACK_ENCODER, "encoder");
 *     for (int i = 0; i < spec.count; i++) ref_deltas_create_module(&dl, i, lora_in, lora_out);
 *     ...
 *     ref_deltas_finish(&dl);
 *     ref_tensors_finish(&ts);
 *
 * Storage: the caller owns both structs (init/finish); init allocates their
 * arrays, finish frees them and, for ref_tensors, every tensor. Host-memory
 * failures abort: these are test references and their sizes are tiny.
 *
 * Linking: this code calls the runtime's delta spec code (vp_fail,
 * delta_spec_parse), so a program using it links vkpeft_internal_dep. */
#ifndef VKPEFT_TESTS_REFERENCE_DELTA_REF_H
#define VKPEFT_TESTS_REFERENCE_DELTA_REF_H

#include "spec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------
 * Arena: every buffer of one lifetime (a forward's activations, one
 * backward's scratch), zeroed at allocation and freed together.
 * ------------------------------------------------------------------------ */

struct ref_arena {
    void **items;
    int count, cap;
};

void *ref_arena_alloc(struct ref_arena *a, size_t count, size_t size); // calloc(count ? count : 1, size)
double *ref_arena_doubles(struct ref_arena *a, size_t n);
void ref_arena_free(struct ref_arena *a); // frees every buffer; *a becomes empty

/* ------------------------------------------------------------------------
 * Named tensors
 * ------------------------------------------------------------------------ */

/* One named tensor, owned by its registry. (Named refm_ for the encoder
 * reference it came from; the tests of both models use it by that name.) */
struct refm_tensor {
    char name[128];
    int ndim;
    int shape[3];
    size_t n;        // number of values, the product of shape
    double *data;    // (n)
    double *grad;    // (n), or NULL: the tensor is frozen
    uint32_t stream; // Philox stream its initial values came from
};

/* Tensors in creation order. Initial values are Philox4x32-10 keyed by the
 * seed, one stream per tensor in creation order, counter = element index,
 * so every value depends only on (seed, stream, index). */
struct ref_tensors {
    struct refm_tensor **items;
    int count, cap;
    uint32_t next_stream;
    uint64_t seed;
    double weight_std;        // ref_tensors_weight's N(0, std)
    bool randomise_zero_init; // ref_tensors_fill_zero draws N(0, weight_std) instead (gradient checks)
    const char *who;          // names the model in error messages
};

void ref_tensors_init(struct ref_tensors *ts, uint64_t seed, double weight_std, bool randomise_zero_init,
                      const char *who);
void ref_tensors_finish(struct ref_tensors *ts);

/* A zero tensor of shape (s0[,s1[,s2]]) (trailing 0s end the shape) named by
 * the format, with the next Philox stream; trainable: it has a grad. */
struct refm_tensor *ref_tensors_add(struct ref_tensors *ts, bool trainable, int s0, int s1, int s2,
                                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* A frozen weight (rows, cols) or vector (rows) ~ N(0, weight_std). */
struct refm_tensor *ref_tensors_weight(struct ref_tensors *ts, int rows, int cols, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Removes and frees t. */
void ref_tensors_remove(struct ref_tensors *ts, struct refm_tensor *t);

struct refm_tensor *ref_tensors_at(const struct ref_tensors *ts, int i);          // NULL out of range
struct refm_tensor *ref_tensors_find(const struct ref_tensors *ts, const char *name); // NULL: no such name
/* VP_ERROR_INVALID_ARGUMENT when the name is unknown or n is not its size. */
vp_status ref_tensors_set(struct ref_tensors *ts, const char *name, const double *data, size_t n);
size_t ref_tensors_trainable_params(const struct ref_tensors *ts); // Σ n over tensors with a grad
void ref_tensors_zero_grad(struct ref_tensors *ts);

/* Initial values: N(mean, std); U[−bound, bound); a tensor the contract
 * starts at zero (zero, or N(0, weight_std) with randomise_zero_init). */
void ref_tensors_fill_normal(const struct ref_tensors *ts, struct refm_tensor *t, double mean, double std);
void ref_tensors_fill_uniform(const struct ref_tensors *ts, struct refm_tensor *t, double bound);
void ref_tensors_fill_zero(const struct ref_tensors *ts, struct refm_tensor *t);
/* Gives t (may be NULL) a zero grad if it has none. */
void ref_tensor_make_trainable(struct refm_tensor *t);

/* ------------------------------------------------------------------------
 * Delta modules
 * ------------------------------------------------------------------------ */

/* One delta module in one layer: its tensors and the activations of the
 * last forward (sized for N = B·T rows). */
struct ref_slot {
    bool active; // the module applies to this layer
    int module, layer;
    int din, dout; // widths the module reads and writes (LoRA: the projection's in, out)
    struct refm_tensor *down_w, *down_b, *up_w, *up_b, *gate; // adapter
    struct refm_tensor *lora_a, *lora_b;                      // LoRA
    struct refm_tensor *prefix_k, *prefix_v; // prefix without reparameterisation
    int prefix_block;  // ℓ: this layer's block of the reparameterisation's output
    int prefix_offset; // first row of this module's prefix among the layer's prefix rows
    double *in;    // (N,din) what the module read
    double *hpre;  // adapter: (N,r), per head (H,N,r), bottleneck before f; LoRA: x·Aᵀ (N,r)
    double *hact;  // adapter: f(hpre), same shape
    double *delta; // (N,dout) Δ before composition (LoRA: (x·Aᵀ)·Bᵀ before s)
};

/* A prefix module's training-time MLP: E → Linear(d,R) → tanh → Linear(R, nl·2·kvd). */
struct ref_reparam {
    struct refm_tensor *emb, *w0, *b0, *w2, *b2; // all NULL when absent or collapsed
    double *h0pre, *h0; // (L,R)
    double *out;        // (L, nl·2·kvd)
};

/* A model with several stacks (the seq2seq reference) runs one ref_deltas
 * over all its blocks — encoder layers, decoder layers, cross-attention
 * blocks — so a prefix module's one reparameterisation spans them all (as
 * count.c counts it). Slot "layer" b is then block b: layer `layer` of
 * `stack` (one DELTA_STACK_* bit), its tensors named
 * {root}.layers.{layer}.delta{i}.*. A cross-attention block has no FFN:
 * modules at ffn, up or down do not apply there. */
struct ref_block {
    unsigned stack;
    int layer;
    const char *root;
};

struct ref_deltas {
    const struct model_arch *arch; // the model's
    struct delta_spec *spec;       // the model's; ref_deltas_collapse_prefix sets reparam = 0
    struct ref_tensors *tensors;   // the model's registry, which the delta tensors join
    unsigned stack;                // DELTA_STACK_*: modules without this bit do not apply
    const char *root;              // delta tensors are named {root}.layers.{l}.delta{i}.*
    struct ref_slot *slots;        // (spec->count, layers): slot i·layers + l
    struct ref_reparam *reparam;   // (spec->count)
    int *prefix_rows;              // (layers) prefix rows of every module in the layer
    const struct ref_block *blocks; // (arch->layers) set after init; NULL: layer l of `stack` under `root`
    // Adapter dropout, off unless `dropout` (the decoder reference sets it):
    // a = dropout(f(p)) on each adapter's bottleneck, p = the module's
    // dropout or hidden_p when it sets none, masks keyed by (seed, step) and
    // the stream ((layer + 1) << 8) | (16 + module), the GPU models'
    // ENC_SITE_ADAPTER + module; element index = the flat (H,)N,r position.
    bool dropout;
    double hidden_p;
    uint64_t dropout_seed;
    uint32_t dropout_step;
};

void ref_deltas_init(struct ref_deltas *dl, const struct model_arch *arch, struct delta_spec *spec,
                     struct ref_tensors *tensors, unsigned stack, const char *root);
void ref_deltas_finish(struct ref_deltas *dl);
/* The adapter dropout multiplier of element `index` of slot s's bottleneck
 * (1 when it does not drop). */
double ref_deltas_adapter_mask(const struct ref_deltas *dl, const struct ref_slot *s, size_t index);

struct ref_slot *ref_deltas_slot(const struct ref_deltas *dl, int module, int layer);
/* The module has the stack bit and names the layer. */
bool ref_deltas_applies(const struct ref_deltas *dl, int module, int layer);

/* VP_ERROR_BAD_INPUT when a module of `stack` names a layer the model lacks
 * or a placement the contract does not define (LoRA at attn/ffn, an adapter
 * at a projection, mh-pa off attn or with heads·head_dim ≠ hidden). */
vp_status ref_deltas_check_spec(const struct delta_spec *spec, const struct model_arch *a, unsigned stack,
                                const char *who);

/* Creates module i's tensors in every layer it applies to, initialised as
 * the contract says: adapters (`lora` init: W_down Kaiming-uniform, W_up,
 * biases and gates zero; `bert`: weights N(0, 0.02)), LoRA (A
 * Kaiming-uniform, B zero; lora_in/lora_out: the widths of the projection
 * it wraps), prefixes (N(0, 0.02), or the reparameterisation's E ~ N(0,
 * 0.02) and nn.Linear's default U(±1/√fan_in), created before the layers'
 * slots). Not for bitfit and full, which train the model's own tensors. */
void ref_deltas_create_module(struct ref_deltas *dl, int module, int lora_in, int lora_out);

/* Replaces each reparameterised prefix module by the plain prefix_k/prefix_v
 * tensors it currently produces; the MLP tensors are removed. */
vp_status ref_deltas_collapse_prefix(struct ref_deltas *dl);

/* Sizes every active adapter and LoRA slot's activations for N rows. */
void ref_deltas_alloc_acts(struct ref_deltas *dl, struct ref_arena *arena, size_t N);

/* Forward (delta_ref_forward.c). Modules run in spec order. */

/* E → tanh(E·W0ᵀ + b0) → ·W2ᵀ + b2 into reparam[module].out. */
void ref_deltas_reparam_forward(struct ref_deltas *dl, int module);
/* The same for every reparameterised prefix module: first in a forward. */
void ref_deltas_reparams_forward(struct ref_deltas *dl);
/* y += (α/r)·(x·Aᵀ)·Bᵀ for every LoRA on projection `at` of layer l. */
void ref_deltas_loras_forward(struct ref_deltas *dl, int l, enum delta_at at,
                              double *y,       // (N,dout)
                              const double *x, // (N,din)
                              int N);
/* y += s·Δ(z) for every adapter at (at, insert) of layer l; z may be y (a
 * sequential adapter reads what it adds to). */
void ref_deltas_adapters_forward(struct ref_deltas *dl, int l, enum delta_at at, enum delta_insert insert,
                                 double *y,       // (N,dout)
                                 const double *z, // (N,din)
                                 int N);
/* Layer l's prefix rows in query-head layout: module i's rows start at its
 * prefix_offset; query head h takes the columns of kv head h / (H/G). */
void ref_deltas_gather_prefixes(const struct ref_deltas *dl, int l,
                                double *prefix_k, // (H,Lp,hd)
                                double *prefix_v); // (H,Lp,hd)

/* Backward (delta_ref_backward.c): the forward's calls in reverse spec
 * order. Parameter gradients accumulate (+=); the input gradient is ADDED
 * into dx_acc / dz_acc (the input is also read by the main path). */

void ref_deltas_loras_backward(struct ref_deltas *dl, struct ref_arena *scratch, int l, enum delta_at at,
                               double *dx_acc,   // (N,din), accumulated
                               const double *dy, // (N,dout)
                               int N);
void ref_deltas_adapters_backward(struct ref_deltas *dl, struct ref_arena *scratch, int l, enum delta_at at,
                                  enum delta_insert insert,
                                  double *dz_acc,   // (N,din), accumulated
                                  const double *dy, // (N,dout)
                                  int N);
/* A zeroed gradient buffer (L, nl·2·kvd) for each reparameterised prefix
 * module's output, NULL for the others; (spec->count) entries, in scratch. */
double **ref_deltas_reparam_grads(struct ref_deltas *dl, struct ref_arena *scratch);
/* Routes layer l's prefix-row gradients to each module's prefix_k/prefix_v
 * grads or its block of reparam_dout; query heads of a group sum into their
 * kv head's columns. */
void ref_deltas_scatter_prefix_grads(struct ref_deltas *dl, int l,
                                     const double *dpk, // (H,Lp,hd)
                                     const double *dpv, // (H,Lp,hd)
                                     double *const *reparam_dout);
/* Every reparameterisation's backward from its output's gradient: last in a backward. */
void ref_deltas_reparams_backward(struct ref_deltas *dl, struct ref_arena *scratch, double *const *reparam_dout);

/* ------------------------------------------------------------------------
 * Layout helpers both models use
 * ------------------------------------------------------------------------ */

/* (B,T,H,D) → (B,H,T,D) and back. */
void ref_split_heads(double *dst, const double *src, int B, int T, int H, int D);
void ref_merge_heads(double *dst, const double *src, int B, int T, int H, int D);
/* dst (N,w) = columns c0 .. c0+w−1 of src (N,C). */
void ref_gather_cols(double *dst, const double *src, int N, int C, int c0, int w);
/* y += x. */
void ref_add_into(double *y, const double *x, size_t n);

/* ------------------------------------------------------------------------
 * Test fixtures
 * ------------------------------------------------------------------------ */

/* The spec a test case names: `json` parsed (errors name it `label`), else
 * the preset; reparam ≥ 0 then sets every prefix module's reparameterisation
 * width (0: plain prefixes). */
vp_status ref_spec_load(struct delta_spec *s, const char *label, const char *preset, const char *json, int reparam);

#endif
