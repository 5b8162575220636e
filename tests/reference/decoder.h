/* Plain-C, double-precision reference of a decoder-only causal language
 * model (GPT-2, and LLaMA / Mistral / Qwen2) with the delta modules of the
 * unified view, forward and backward, assembled from the op references in
 * ref.h and the tensor registry and delta modules it shares with model.h
 * (delta_ref.h). It is the decoder's counterpart of model.h (the encoder
 * reference) and follows its conventions (dropout, off by default, as
 * refd_options says), tensors are doubles
 * keyed by Hugging Face names, gradients exist exactly for the trainable
 * tensors and accumulate.
 *
 *     struct refd *m;
 *     struct refd_options opt = {.seed = 1};
 *     if (refd_create(&m, &arch, &spec, &opt) != VP_OK) fail(vp_last_error());
 *     struct refd_batch batch = {.ids = ids, .mask = mask, .loss_mask = completion, .B = 2, .T = 6};
 *     double loss = refd_forward(m, logits, &batch);   // logits (B,T,V)
 *     refd_zero_grad(m);
 *     refd_backward(m);                                // every trainable tensor's grad +=
 *     struct refm_tensor *t = refd_tensor_find(m, "decoder.layers.0.delta0.lora_A");
 *     refd_destroy(m);
 *
 * ------------------------------------------------------------------------
 * The model (B batch, T tokens, N = B·T, d hidden, H heads, G kv heads,
 * hd head width, qd = H·hd, kvd = G·hd, I FFN width, V vocabulary)
 * ------------------------------------------------------------------------
 *
 *   pos_t = P + t, P the position offset (below; 0 without prefixes)
 *   x0    = E[ids] (+ W_pos[pos] for GPT-2's learned positions)
 *   per layer (pre-norm):
 *     a_in = norm_1(x)                          "attention sublayer input"
 *     q    = a_in·W_q + b_q (+ LoRA q)          (N,qd)
 *     k, v = a_in·W_k + b_k, ... (+ LoRA)       (N,kvd)
 *     LLaMA: q, k rotated by RoPE at pos_t (rotate_half: pairs i, i+hd/2,
 *            inv_freq_i = θ^(−2i/hd)); GPT-2: no rotation
 *     ctx  = causal attention of q over [prefix rows; k] and [prefix rows; v],
 *            scale 1/√hd; query head h reads kv head h / (H/G) (HF repeat_kv);
 *            prefix rows are always visible and never rotated; key s is
 *            visible iff s ≤ t and mask[b,s] (padding keys hidden)
 *     ctx += s·Δ_attn_par(a_in)                 parallel attention adapters
 *     o    = ctx·W_o + b_o (+ LoRA o)
 *     o   += s·Δ_attn_seq(o)                    sequential attention adapters
 *     h    = x + o
 *     f_in = norm_2(h)                          "FFN sublayer input"
 *     GPT-2: u = gelu_tanh(f_in·W_fc + b_fc (+ LoRA up))
 *     LLaMA: u = silu(f_in·W_gate + b_gate) ⊙ (f_in·W_up + b_up (+ LoRA up))
 *     dn   = u·W_down + b_down (+ LoRA down, reading u)
 *     dn  += s·Δ_ffn_seq(dn)                    sequential FFN adapters
 *     dn  += s·Δ_ffn_par(f_in)                  parallel FFN adapters (PA, MAM)
 *     x'   = h + dn
 *   logits = norm_f(x_L)·W_headᵀ                (N,V), no bias
 *
 * With pre-norm, the "sublayer input" a parallel module reads is the
 * post-norm activation (a_in, f_in), the same tensor the frozen sublayer
 * reads: the encoder contract's x / h (runtime/model/README.md) adapted to
 * pre-LN. Everything a module adds lands before the residual add.
 * norm is LayerNorm (GPT-2, with bias) or RMSNorm (LLaMA: x·rsqrt(mean(x²)
 * + eps)·w), with the config's eps. "s" and Δ are as in the encoder
 * contract (compose add / scale / gated, LoRA s = α/r).
 *
 * Loss (HF causal LM): labels[b,t] = ids[b,t] where mask and loss_mask are 1,
 * −100 elsewhere (or the batch's own labels); the logits of token t are
 * scored against labels[b,t+1]; loss = mean cross-entropy over the scored
 * positions of the whole batch (PyTorch's label smoothing ε; 0 when nothing
 * is scored).
 *
 * ------------------------------------------------------------------------
 * Names (Hugging Face)
 * ------------------------------------------------------------------------
 *
 *   GPT-2  transformer.wte.weight (V,d), transformer.wpe.weight (P,d),
 *          transformer.h.{l}.ln_1.{weight,bias}, .attn.c_attn.{weight (d,3d),
 *          bias (3d)}, .attn.c_proj (d,d), .ln_2, .mlp.c_fc.weight (d,I),
 *          .mlp.c_proj.weight (I,d), transformer.ln_f; Conv1D weights are
 *          stored [in, out] (y = x·W + b); c_attn's out axis is q | k | v.
 *          Head tied to wte (lm_head.weight (V,d) only when untied).
 *   LLaMA  model.embed_tokens.weight, model.layers.{l}.input_layernorm.weight,
 *          .self_attn.{q,k,v,o}_proj.weight [out, in] (+ .bias on q/k/v with
 *          qkv_bias (Qwen2), on o with out_bias), .post_attention_layernorm,
 *          .mlp.{gate,up,down}_proj (+ .bias with ffn_bias), model.norm.weight,
 *          lm_head.weight (V,d) unless tie_word_embeddings.
 *
 * Delta tensors (the encoder's names with "decoder." for "encoder."):
 *   adapter   decoder.layers.{l}.delta{i}.down.weight (r,din) .down.bias (r)
 *             .up.weight (dout,r) .up.bias (dout) .gate (1) when gated;
 *             din = dout = d except a parallel attention adapter, which
 *             reads a_in (d) and writes ctx (qd); per head (mh-pa, needs
 *             qd = d) as the encoder's (H,r,hd), (H,r), (H,hd,r), (H,hd)
 *   LoRA      decoder.layers.{l}.delta{i}.lora_A (r,in) .lora_B (out,r), on
 *             the projection the `at` names: q (d→qd), k, v (d→kvd), o
 *             (qd→d), up (d→I: GPT-2 c_fc, LLaMA up_proj), down (I→d).
 *             LLaMA's gate_proj has no site in the spec and takes no LoRA.
 *             GPT-2's q, k, v are column slices of c_attn; PEFT instead
 *             targets c_attn whole (fan_in_fan_out): a q and a v LoRA of
 *             rank r are the c_attn LoRA of rank 2r with A = [A_q; A_v] and
 *             B block-diagonal on the q and v column blocks (k rows zero).
 *   prefix    decoder.layers.{l}.delta{i}.prefix_k / .prefix_v (L,kvd), the
 *             columns of kv head g being g·hd .. g·hd+hd−1 (GQA: prefixes
 *             live in K/V head space, as PEFT sizes them, and are repeated
 *             per group like k and v); with reparameterisation
 *             delta{i}.reparam.embedding (L,d), .0.weight (R,d), .0.bias (R),
 *             .2.weight (nl·2·kvd,R), .2.bias (nl·2·kvd): P_k of the
 *             module's ℓ-th layer is columns [ℓ·2·kvd, ℓ·2·kvd+kvd), P_v the
 *             next kvd (PEFT's prompt_embeddings layout).
 *
 * Prefixes and positions. A prefix row has no position: prefix keys are
 * never rotated (PEFT hands them to HF as past_key_values, which HF stores
 * already rotated) and GPT-2 adds no position embedding to them. The
 * sequence's positions start at P: with REFD_PREFIX_POSITIONS_PEFT (the
 * default) P is the prefix length (the most prefix rows any layer has), as
 * PEFT computes — HF derives position ids from the cache length, and PEFT's
 * _adjust_prompt_learning_kwargs offsets explicit position_ids by
 * num_virtual_tokens — so a prefix trained here behaves the same loaded into
 * PEFT; with REFD_PREFIX_POSITIONS_ZERO, P = 0. Under RoPE q·k of sequence
 * keys depends only on t − s, but q·P_k depends on q's absolute position,
 * and under GPT-2 every hidden state does, so the choice matters.
 *
 * Trainable: every delta tensor; bitfit: every bias of the module's layers
 * (q/k/v/o/FFN biases the arch has, LayerNorm β) and ln_f's β; full:
 * everything (a tied head is one tensor whose gradient sums the embedding
 * gather's scatter and the head's dlogitsᵀ·norm_f(x_L)). There is no
 * separate head: the LM head is part of the model.
 *
 * Initial values (Philox keyed by the seed, one stream per tensor in
 * creation order, counter = element index: delta_ref.c's draws, which
 * model.c uses too):
 * model weights N(0, weight_std), norm weights 1 + N(0, 0.1), biases
 * N(0, weight_std); the frozen model first (embeddings, positions, layers
 * in HF order, final norm, lm_head), then the delta modules in spec order,
 * a prefix's reparameterisation before its layers. Delta init as the
 * encoder contract (adapters, LoRA, prefixes).
 *
 * Storage: refd_create allocates everything; refd_destroy frees it.
 * Activations are sized for the last forward's (B,T).
 *
 * Linking: like model.h, programs using this link vkpeft_internal_dep. */
#ifndef VKPEFT_TESTS_REFERENCE_DECODER_H
#define VKPEFT_TESTS_REFERENCE_DECODER_H

#include "model.h"

enum refd_prefix_positions {
    REFD_PREFIX_POSITIONS_PEFT = 0, // sequence positions start at the prefix length
    REFD_PREFIX_POSITIONS_ZERO,     // sequence positions start at 0
};

enum { REFD_SITE_EMB = 0, REFD_SITE_ATTN_PROBS, REFD_SITE_ATTN_OUT, REFD_SITE_FFN_OUT };

struct refd_options {
    uint64_t seed;            // Philox key of every initial value
    double weight_std;        // frozen weights ~ N(0, std); 0 selects 0.02
    bool randomise_zero_init; // zero-initialised delta tensors from N(0, weight_std) (gradient checks)
    double label_smoothing;   // cross-entropy ε
    enum refd_prefix_positions prefix_positions;
    // Dropout as the GPU decoder draws it (decoder_lm.h): off unless set;
    // masks keyed by (dropout_seed, dropout_step, the site's stream
    // ((layer + 1) << 8 | site; site 0 the embeddings at layer −1, 1 the
    // attention probabilities, 2 the attention output, 3 the FFN output)),
    // probabilities from the arch (embedding, attention, hidden dropout);
    // the adapters' as delta_ref.h says (stream 16 + module).
    bool dropout;
    uint64_t dropout_seed;
    uint32_t dropout_step;
};

/* One forward's input; right padding. */
struct refd_batch {
    const int32_t *ids;       // (B,T) token ids
    const uint8_t *mask;      // (B,T) attention mask, 1 = real token; NULL: all real
    const uint8_t *loss_mask; // (B,T) 1 = token t is a target (e.g. the completion); NULL: all
    const int32_t *labels;    // (B,T) HF labels (−100 = not scored); NULL: ids where mask and
                              // loss_mask are 1. Given labels override both masks for the loss.
    int B, T;
};

/* A linear layer of the frozen model. [out, in] weights (nn.Linear) or a
 * column block of a Conv1D weight stored [in, ld] (GPT-2): y = x·W[:, c0 :
 * c0+out] + b[c0 : c0+out]. */
struct refd_linear {
    struct refm_tensor *w, *b; // b NULL: no bias
    int in, out;
    bool conv1d;
    int c0, ld; // Conv1D only: first column and the stored width
};

struct refd_layer {
    struct refm_tensor *norm1_w, *norm1_b; // ln_1 / input_layernorm (b NULL for RMSNorm)
    struct refd_linear q, k, v, o;         // GPT-2: q, k, v slices of c_attn
    struct refm_tensor *norm2_w, *norm2_b; // ln_2 / post_attention_layernorm
    struct refd_linear gate;               // LLaMA only (w NULL for GPT-2)
    struct refd_linear up, down;           // c_fc / up_proj, c_proj / down_proj
};

struct refd_weights {
    struct refm_tensor *embed;            // wte / embed_tokens (V,d)
    struct refm_tensor *pos;              // wpe (P,d), NULL with rotary positions
    struct refd_layer *layers;            // (layers)
    struct refm_tensor *normf_w, *normf_b; // ln_f / model.norm (b NULL for RMSNorm)
    struct refm_tensor *head;             // lm_head.weight (V,d), or embed when tied
};

/* Activations of one layer from the last forward; N = B·T. */
struct refd_layer_acts {
    double *x;                      // (N,d) layer input
    double *norm1_mean, *norm1_rstd; // (N)
    double *a_in;                   // (N,d) norm_1(x)
    double *q, *k, *v;              // (N,qd), (N,kvd), (N,kvd) projections (LoRA included)
    double *qh;                     // (B,H,T,hd) rotated
    double *kh, *vh;                // (B,H,T,hd) rotated and repeated per group
    double *prefix_k, *prefix_v;    // (H,Lp,hd) every prefix row of the layer, or NULL
    double *atth;                   // (B,H,T,hd)
    double *ctx;                    // (N,qd) merged heads + parallel attention adapters
    double *o;                      // (N,d) output projection + sequential attention adapters
    double *h;                      // (N,d) x + o
    double *norm2_mean, *norm2_rstd; // (N)
    double *f_in;                   // (N,d) norm_2(h)
    double *gpre;                   // (N,I) LLaMA gate projection
    double *upre;                   // (N,I) up projection (LoRA included)
    double *u;                      // (N,I) act(upre) or silu(gpre) ⊙ upre
    double *dn;                     // (N,d) FFN output + FFN adapters
    double *out;                    // (N,d) h + dn
};

struct refd_acts {
    int B, T;                 // shape the buffers are sized for; 0 before the first forward
    int32_t *ids, *pos;       // (B,T), (T) positions P + t
    int32_t *targets;         // (B,T) label of token t+1, −100 where not scored
    uint8_t *keep;            // (B,T)
    double *x0;               // (N,d)
    struct refd_layer_acts *layers;
    double *normf_mean, *normf_rstd; // (N)
    double *xf;               // (N,d) norm_f(x_L)
    double *logits;           // (N,V)
    double loss;
    struct ref_arena owned;   // every buffer above, freed together
};

struct refd {
    struct model_arch arch;       // copy (labels not kept)
    struct delta_spec spec;       // copy; refd_collapse_prefix sets reparam = 0
    struct refd_options opt;
    struct ref_tensors tensors;   // every tensor, in creation order
    struct ref_deltas deltas;     // the delta modules (decoder stack), over arch, spec and tensors
    struct refd_weights w;
    struct refd_acts acts;
};

/* Builds the model for a decoder-only `arch` (GPT-2 or LLaMA family) with
 * `spec`: modules whose stacks lack DELTA_STACK_DECODER do not apply (they
 * get no tensors). Fails with VP_ERROR_BAD_INPUT for another arch, a module
 * naming a layer the model lacks, or a placement the contract does not
 * define (LoRA at attn/ffn, an adapter at a projection, mh-pa with qd ≠ d). */
vp_status refd_create(struct refd **out, const struct model_arch *arch, const struct delta_spec *spec,
                      const struct refd_options *opt);
void refd_destroy(struct refd *m);

int refd_tensor_count(const struct refd *m);
struct refm_tensor *refd_tensor_at(struct refd *m, int i);
struct refm_tensor *refd_tensor_find(struct refd *m, const char *name);
/* VP_ERROR_INVALID_ARGUMENT when the name is unknown or n is not its size. */
vp_status refd_tensor_set(struct refd *m, const char *name, const double *data, size_t n);
size_t refd_trainable_params(const struct refd *m);
/* Module `module` in layer `layer` (active false where it does not apply). */
struct ref_slot *refd_slot_at(struct refd *m, int module, int layer);
/* P, the position of the first token (see "Prefixes and positions"). */
int refd_position_offset(const struct refd *m);

/* Runs the model and keeps its activations for refd_backward. Writes
 * logits (B,T,V) when non-NULL; returns the loss. Asserts P + T ≤
 * max_positions for learned positions and T within any sliding window
 * (which the reference does not model otherwise). */
/* A dropout site's probability (0 with dropout off) and its mask's key. */
double refd_dropout_p(const struct refd *m, double p);
struct ref_dropout_key refd_dropout_key(const struct refd *m, int layer, int site);
/* Layer l's causal attention, with dropout on the probabilities. */
struct ref_attention_config refd_attention_config(const struct refd *m, int l);
double refd_forward(struct refd *m, double *logits, const struct refd_batch *batch);
/* dL/dθ of the last forward's loss ACCUMULATED (+=) into every trainable grad. */
void refd_backward(struct refd *m);
void refd_zero_grad(struct refd *m);

/* Replaces each reparameterised prefix by the prefix_k/prefix_v it now
 * produces (what is saved after training); the MLP tensors are removed. */
vp_status refd_collapse_prefix(struct refd *m);

/* ------------------------------------------------------------------------
 * Shared between decoder.c, decoder_forward.c and decoder_backward.c.
 * ------------------------------------------------------------------------ */

void refd_acts_free(struct refd_acts *a);
/* y (N,out) = x (N,in) through the layer. */
void refd_linear_forward(double *y, const double *x, const struct refd_linear *lin, int N);
/* dx = dy·Wᵀ (overwrite, may be NULL); dW, db += when the tensors are trainable. */
void refd_linear_backward(double *dx, const double *dy, const double *x, const struct refd_linear *lin, int N);

#endif
