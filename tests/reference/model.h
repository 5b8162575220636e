/* Plain-C, double-precision whole-model reference: a BERT/RoBERTa sequence
 * classifier with every delta module of the unified view (adapters, mh-pa,
 * LoRA, prefixes with or without their reparameterisation, BitFit, full),
 * forward and backward, assembled from the op references in ref.h and the
 * tensor registry and delta modules it shares with the decoder reference
 * (delta_ref.h).
 *
 * It computes exactly runtime/model/README.md (the contract the GPU model and
 * the PyTorch parity script share), with one deliberate difference: every
 * dropout (hidden, attention, classifier, adapter) is treated as p = 0. The
 * GPU model is compared with it with dropout off.
 *
 *     struct refm *m;
 *     struct refm_options opt = {.seed = 1};
 *     if (refm_create(&m, &arch, &spec, &opt) != VP_OK) fail(vp_last_error());
 *     struct refm_batch batch = {.ids = ids, .mask = mask, .labels = labels, .B = 2, .T = 5};
 *     double loss = refm_forward(m, logits, &batch);   // logits (B,C)
 *     refm_zero_grad(m);
 *     refm_backward(m);                                // every trainable tensor's grad +=
 *     struct refm_tensor *t = refm_tensor_find(m, "encoder.layers.0.delta0.lora_A");
 *     refm_destroy(m);
 *
 * Tensors are double arrays keyed by name: the frozen model's under its
 * Hugging Face names (`roberta.encoder.layer.0.attention.self.query.weight`,
 * `bert.pooler.dense.bias`, `classifier.out_proj.weight`, ...) and the delta
 * modules' as
 *   adapter   encoder.layers.{l}.delta{i}.down.weight (r,d)  .down.bias (r)
 *             .up.weight (d,r)  .up.bias (d)  .gate (1) when gated;
 *             per head (mh-pa): down.weight (H,r,hd) down.bias (H,r)
 *             up.weight (H,hd,r) up.bias (H,hd)
 *   LoRA      encoder.layers.{l}.delta{i}.lora_A (r,in)  .lora_B (out,r)
 *   prefix    with reparameterisation: delta{i}.reparam.embedding (L,d),
 *             delta{i}.reparam.0.weight (R,d) .0.bias (R),
 *             delta{i}.reparam.2.weight (nl·2·d,R) .2.bias (nl·2·d), nl the
 *             number of layers the module applies to (block ℓ of the output
 *             is the module's ℓ-th layer: P_k = cols [ℓ·2d, ℓ·2d+d), P_v the
 *             next d); without it (or after refm_collapse_prefix):
 *             encoder.layers.{l}.delta{i}.prefix_k / .prefix_v (L,d), the
 *             columns of head h being h·hd .. h·hd+hd−1.
 * A tensor is trainable iff its grad is non-NULL: every delta tensor, the
 * classification head always, the model's biases under bitfit (in the
 * module's layers, plus the embedding LayerNorm's and BERT's pooler's) and
 * everything under full.
 *
 * Storage: refm_create allocates everything (tensors, gradients, activation
 * buffers); refm_destroy frees it. Activations are sized for the last
 * forward's (B,T) and reallocated when that changes.
 *
 * Linking: this file's code calls the runtime's delta/arch code (vp_fail,
 * delta_count_params), so a program using it links vkpeft_internal_dep too. */
#ifndef VKPEFT_TESTS_REFERENCE_MODEL_H
#define VKPEFT_TESTS_REFERENCE_MODEL_H

#include "delta_ref.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REFM_IGNORE_INDEX (-100) /* labels equal to this are skipped, as PyTorch */

struct refm_options {
    uint64_t seed;            // Philox key of every initial value
    double weight_std;        // frozen weights and embeddings ~ N(0, std); 0 selects 0.02
    /* The contract starts adapters' up-projections and biases, LoRA's B and
     * gates at zero. Gradient checks want them random (with W_up = 0 every
     * W_down gradient is 0): true draws them from N(0, weight_std). */
    bool randomise_zero_init;
    double label_smoothing;   // cross-entropy ε
};

/* One forward's input. */
struct refm_batch {
    const int32_t *ids;      // (B,T) token ids
    const uint8_t *mask;     // (B,T) attention mask, 1 = real token; NULL: all real
    const int32_t *type_ids; // (B,T) token type ids, or NULL: all 0
    const int32_t *labels;   // (B) class ids or REFM_IGNORE_INDEX; NULL: no loss
    int B, T;
};

/* The frozen model's tensors of one encoder layer. */
struct refm_layer {
    struct refm_tensor *wq, *bq, *wk, *bk, *wv, *bv; // (d,d), (d)
    struct refm_tensor *wo, *bo;                     // (d,d), (d)
    struct refm_tensor *ln1_w, *ln1_b;               // (d) attention.output.LayerNorm
    struct refm_tensor *wup, *bup;                   // (I,d), (I)
    struct refm_tensor *wdown, *bdown;               // (d,I), (d)
    struct refm_tensor *ln2_w, *ln2_b;               // (d) output.LayerNorm
};

struct refm_weights {
    struct refm_tensor *word, *pos, *type;   // (V,d), (P,d), (TV,d) or NULL when TV = 0
    struct refm_tensor *ln_emb_w, *ln_emb_b; // (d)
    struct refm_layer *layers;               // (layers)
    struct refm_tensor *pool_w, *pool_b;     // BERT pooler (d,d), (d); NULL for RoBERTa
    struct refm_tensor *dense_w, *dense_b;   // RoBERTa classifier.dense (d,d), (d); NULL for BERT
    struct refm_tensor *cls_w, *cls_b;       // classifier (BERT) / classifier.out_proj: (C,d), (C)
};

/* Activations of one encoder layer from the last forward; N = B·T. */
struct refm_layer_acts {
    double *x;                  // (N,d) layer input
    double *q, *k, *v;          // (N,d) projections (LoRA included)
    double *qh, *kh, *vh;       // (B,H,T,hd)
    double *prefix_k, *prefix_v; // (H,Lp,hd) every prefix row of the layer, or NULL
    double *atth;               // (B,H,T,hd) attention output
    double *ctx;                // (N,d) merged heads + parallel attention adapters
    double *o;                  // (N,d) output projection + sequential attention adapters
    double *res1;               // (N,d) x + o
    double *ln1_mean, *ln1_rstd; // (N)
    double *h;                  // (N,d) LayerNorm_attn(x + o)
    double *upre, *u;           // (N,I) before and after act
    double *dn;                 // (N,d) FFN output + FFN adapters
    double *res2;               // (N,d) h + dn
    double *ln2_mean, *ln2_rstd; // (N)
    double *out;                // (N,d) the layer's output
};

struct refm_acts {
    int B, T;          // shape the buffers are sized for; 0 before the first forward
    int32_t *ids, *pos, *types, *labels; // (B,T), (B,T), (B,T), (B)
    uint8_t *keep;     // (B,T)
    bool has_labels;
    double *emb;       // (N,d) word + position + type
    double *emb_mean, *emb_rstd; // (N)
    double *x0;        // (N,d) LayerNorm_emb(emb)
    struct refm_layer_acts *layers; // (layers)
    double *cls;       // (B,d) x_L[:,0]
    double *pool_pre, *pool; // (B,d) BERT pooler / RoBERTa dense, before and after tanh
    double *logits;    // (B,C)
    double loss;
    struct ref_arena owned; // every buffer above, freed together
};

struct refm {
    struct model_arch arch;      // copy (labels not kept)
    struct delta_spec spec;      // copy; refm_collapse_prefix sets reparam = 0
    struct refm_options opt;
    struct ref_tensors tensors;  // every tensor, in creation order
    struct ref_deltas deltas;    // the delta modules, over arch, spec and tensors
    struct refm_weights w;
    struct refm_acts acts;
};

/* Builds the model for `arch` with the delta `spec`: random frozen weights
 * (N(0, weight_std), LayerNorm γ = 1 + N(0, 0.1)), delta tensors initialised
 * as the contract says (unless opt->randomise_zero_init). Fails with
 * VP_ERROR_BAD_INPUT for a spec that does not fit the arch or an arch this
 * reference does not cover (only post-LN LayerNorm encoders). */
vp_status refm_create(struct refm **out, const struct model_arch *arch, const struct delta_spec *spec,
                      const struct refm_options *opt);
void refm_destroy(struct refm *m);

/* Tensors in creation order; i in [0, refm_tensor_count). */
int refm_tensor_count(const struct refm *m);
struct refm_tensor *refm_tensor_at(struct refm *m, int i);
/* NULL when no tensor has that name. */
struct refm_tensor *refm_tensor_find(struct refm *m, const char *name);
/* Copies n values into the named tensor; VP_ERROR_INVALID_ARGUMENT when the
 * name is unknown or n is not its size. */
vp_status refm_tensor_set(struct refm *m, const char *name, const double *data, size_t n);
/* Σ n over the trainable tensors (those with a grad). */
size_t refm_trainable_params(const struct refm *m);

/* Runs the model on `batch` and keeps its activations for refm_backward.
 * Writes logits (B,C) when non-NULL; returns the mean cross-entropy over the
 * labelled rows (0 without labels). */
double refm_forward(struct refm *m, double *logits, const struct refm_batch *batch);
/* The last forward's hidden states (B,T,d): layer −1 is the embeddings'
 * output x0, layer l the output of encoder layer l. */
const double *refm_hidden(const struct refm *m, int layer);

/* dL/dθ of the last forward's loss (which needs labels), ACCUMULATED (+=)
 * into every trainable tensor's grad, as PyTorch's .grad. */
void refm_backward(struct refm *m);
/* Sets every grad to 0. */
void refm_zero_grad(struct refm *m);

/* Module `module` in layer `layer`: its tensors and last activations
 * (active is false where the module does not apply, and for bitfit/full). */
struct ref_slot *refm_slot_at(struct refm *m, int module, int layer);

/* Replaces each reparameterised prefix module by the plain prefix_k/prefix_v
 * tensors it currently produces (what is saved after training); the forward
 * computes the same thing afterwards. The MLP tensors are removed (pointers
 * to them become invalid); the new tensors are trainable. */
vp_status refm_collapse_prefix(struct refm *m);

/* ------------------------------------------------------------------------
 * Shared between the model's own files (model.c, model_forward.c,
 * model_backward.c); not for tests.
 * ------------------------------------------------------------------------ */

void refm_acts_free(struct refm_acts *a);

#endif
