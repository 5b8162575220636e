/* Plain-C, double-precision reference of an encoder-decoder model (BART,
 * mBART) with the delta modules of the unified view, forward, backward and
 * greedy generation, assembled from the op references in ref.h, the tensor
 * registry and delta modules of delta_ref.h, and the linear layers of
 * decoder.h. It follows decoder.h's conventions: every dropout is p = 0
 * unless refs_options.dropout,
 * tensors are doubles keyed by Hugging Face names, gradients exist exactly
 * for the trainable tensors and accumulate.
 *
 *     struct refs *m;
 *     struct refs_options opt = {.seed = 1, .label_smoothing = 0.1};
 *     if (refs_create(&m, &arch, &spec, &opt) != VP_OK) fail(vp_last_error());
 *     struct refs_batch batch = {.ids = src, .mask = src_mask, .dec_ids = dec, .labels = labels,
 *                                .B = 2, .S = 6, .T = 5};
 *     double loss = refs_forward(m, logits, &batch);   // logits (B,T,V)
 *     refs_zero_grad(m);
 *     refs_backward(m);                                // every trainable tensor's grad +=
 *     refs_destroy(m);
 *
 * ------------------------------------------------------------------------
 * The model (B batch, S source tokens, T target tokens, d hidden, H heads,
 * hd = d/H, I FFN width, V vocabulary; LN = LayerNorm with eps 1e-5)
 * ------------------------------------------------------------------------
 *
 *   Both stacks embed the same way (table E = model.shared, shared):
 *     x0[b,t] = embed_scale·E[id] + W_pos[t + 2]     (offset 2; positions
 *                                                    never shift for prefixes)
 *     x       = LN_emb(x0)                           layernorm_embedding
 *   Encoder layer (one self-attention block, one FFN block):
 *     attention block, bidirectional, keys masked by the source mask
 *     FFN block
 *   Decoder layer:
 *     attention block, causal, keys masked by the decoder mask
 *     cross-attention block: queries from the decoder, keys and values from
 *       the encoder's output, keys masked by the source mask
 *     FFN block
 *   mBART ends each stack with its final LN (encoder.layer_norm,
 *   decoder.layer_norm); BART has none.
 *   logits = y_dec·Eᵀ + final_logits_bias    (tied head; lm_head.weight
 *                                             instead of E when untied)
 *
 *   Attention block (x its input, kv = a_in for self-attention, the
 *   encoder's output for cross-attention):
 *     a_in = x (BART, post-LN) or LN(x) (mBART, pre-LN)
 *     q = a_in·W_qᵀ + b_q (+ LoRA q), k, v = kv·W_{k,v}ᵀ + b (+ LoRA k, v)
 *     ctx  = attention of q over [prefix rows; k], [prefix rows; v], scale
 *            1/√hd, prefix rows always visible
 *     ctx += s·Δ_attn_par(a_in)
 *     o    = ctx·W_oᵀ + b_o (+ LoRA o);  o += s·Δ_attn_seq(o)
 *     h    = x + o;  out = LN(h) (BART) or h (mBART)
 *   FFN block: f_in = x (BART) or LN(x) (mBART); u = act(f_in·W_1ᵀ + b_1
 *     (+ LoRA up)) with the config's activation (gelu: exact erf form);
 *     dn = u·W_2ᵀ + b_2 (+ LoRA down); dn += s·Δ_ffn_seq(dn); dn +=
 *     s·Δ_ffn_par(f_in); h = x + dn; out = LN(h) (BART) or h (mBART).
 *   So a parallel module reads what the frozen sublayer reads (BART: the
 *   block input, which is the previous block's post-LN output; mBART: the
 *   normed input), as in model.h and decoder.h.
 *
 * Loss: logits of decoder position t are scored against labels[b,t] (the
 * decoder input is the labels shifted right, which the caller supplies as
 * dec_ids); exactly torch.nn.CrossEntropyLoss(ignore_index=-100,
 * label_smoothing=ε, reduction='mean') on (B·T, V) logits: per scored row
 * (1−ε)·(−log p_y) − (ε/V)·Σ_v log p_v, averaged over the rows whose label
 * is not −100 (0, not NaN, when there are none) — what Hugging Face's
 * BartForConditionalGeneration computes when given labels (fairseq's
 * label_smoothed_cross_entropy differs: ε/(V−1) per wrong class, summed).
 *
 * ------------------------------------------------------------------------
 * Names (Hugging Face)
 * ------------------------------------------------------------------------
 *
 *   model.shared.weight (V,d); final_logits_bias (1,V) (a buffer in HF:
 *   never trained, not even by full); lm_head.weight (V,d) only when untied.
 *   Per stack X in encoder, decoder:
 *     model.X.embed_positions.weight (max_positions + 2, d)
 *     model.X.layernorm_embedding.{weight,bias}
 *     model.X.layers.{l}.self_attn.{q,k,v,out}_proj.{weight (d,d), bias (d)}
 *     model.X.layers.{l}.self_attn_layer_norm.{weight,bias}
 *     model.decoder.layers.{l}.encoder_attn.{q,k,v,out}_proj, .encoder_attn_layer_norm
 *     model.X.layers.{l}.fc1 (I,d), .fc2 (d,I), .final_layer_norm
 *     model.X.layer_norm.{weight,bias} (mBART)
 *
 * Delta tensors. The spec's stacks place a module (delta/spec.h, count.c):
 * "encoder" puts it in the encoder's self-attention and FFN blocks,
 * "decoder" in the decoder's self-attention and FFN blocks, "cross" in the
 * cross-attention blocks (which have no FFN: modules at ffn, up or down skip
 * them). Each place has its own tensors, named as decoder.h's with the root
 *   encoder.layers.{l}.delta{i}.*   decoder.layers.{l}.delta{i}.*
 *   cross.layers.{l}.delta{i}.*     (LoRA k, v there read the encoder output)
 * so encoder self-attention, decoder self-attention and cross-attention get
 * separate prefixes (PAPER.md). A reparameterised prefix module has one
 * MLP, delta{i}.reparam.*, whose output (L, nb·2·d) holds one (P_k, P_v)
 * block per place, in the order encoder layers, decoder layers,
 * cross-attention layers (each ascending): nb is the number of places, as
 * count.c counts the module.
 *
 * Trainable: every delta tensor; bitfit (per stack the module names:
 * encoder, decoder): every bias of the layers it applies to — attention
 * projections and their LN β, the cross-attention block of a decoder layer,
 * fc1/fc2 and final_layer_norm β — plus, always, both layernorm_embedding βs
 * and (mBART) both final LN βs, as count.c counts it; full: every tensor
 * but final_logits_bias (the tied table's gradient sums both embedding
 * gathers and the head).
 *
 * Initial values: delta_ref.c's Philox draws, the frozen model first in HF
 * state_dict order (shared, encoder, decoder, final_logits_bias, lm_head),
 * then the delta modules in spec order; weights N(0, weight_std), LN
 * weights 1 + N(0, 0.1), biases (final_logits_bias too) N(0, weight_std).
 *
 * Generation (refs_generate_greedy): the encoder runs once; the decoder
 * re-runs on the whole prefix each step (no cache), starting from
 * decoder_start_token_id; step 1 takes forced_bos_token_id when the config
 * has one (mBART), every other step argmax of the last position's logits
 * (the first index on ties); a sequence that emits eos_token_id is done and
 * is padded with pad_token_id; decoding stops when all are done or after
 * max_new tokens. No other logits processing (HF's defaults for a config
 * without min_length, no_repeat_ngram_size, forced_eos_token_id).
 *
 * Storage: refs_create allocates everything; refs_destroy frees it.
 * Linking: like decoder.h, programs using this link vkpeft_internal_dep. */
#ifndef VKPEFT_TESTS_REFERENCE_SEQ2SEQ_H
#define VKPEFT_TESTS_REFERENCE_SEQ2SEQ_H

#include "decoder.h"

struct refs_options {
    uint64_t seed;            // Philox key of every initial value
    double weight_std;        // frozen weights ~ N(0, std); 0 selects 0.02
    bool randomise_zero_init; // zero-initialised delta tensors from N(0, weight_std) (gradient checks)
    double label_smoothing;   // cross-entropy ε
    // Dropout as the GPU model draws it (seq2seq_lm.h), Hugging Face's
    // sites: off unless set; masks keyed by (dropout_seed, dropout_step, the
    // site's stream ((block + 1) << 8 | site)): each stack's embeddings
    // after layernorm_embedding (arch hidden_dropout, site 0 at the stack's
    // first block: encoder 0, decoder Le), the attention probabilities of
    // every block (attention_dropout, site 1), the attention output o (with
    // its LoRA, before the sequential adapters and the residual; hidden
    // dropout, site 2), the FFN's activation output (activation_dropout,
    // site 6) and its output dn (hidden dropout, site 3); the adapters' as
    // delta_ref.h says (stream 16 + module, hidden dropout by default).
    bool dropout;
    uint64_t dropout_seed;
    uint32_t dropout_step;
};

/* The dropout sites' numbers (the GPU's ENC_SITE_*). */
enum { REFS_SITE_EMB = 0, REFS_SITE_ATTN_PROBS = 1, REFS_SITE_ATTN_OUT = 2, REFS_SITE_FFN_OUT = 3,
       REFS_SITE_FFN_ACT = 6 };

/* One forward's input; right padding. */
struct refs_batch {
    const int32_t *ids;      // (B,S) source ids
    const uint8_t *mask;     // (B,S) 1 = real source token; NULL: all real
    const int32_t *dec_ids;  // (B,T) decoder input ids (labels shifted right)
    const uint8_t *dec_mask; // (B,T) decoder attention mask; NULL: all real
    const int32_t *labels;   // (B,T) targets, −100 not scored; NULL: nothing scored
    int B, S, T;
};

struct refs_attn {
    struct refd_linear q, k, v, o;
    struct refm_tensor *norm_w, *norm_b; // self_attn_layer_norm / encoder_attn_layer_norm
};

struct refs_ffn {
    struct refd_linear up, down;         // fc1, fc2
    struct refm_tensor *norm_w, *norm_b; // final_layer_norm
};

struct refs_layer {
    struct refs_attn self, cross; // cross: decoder layers only
    struct refs_ffn ffn;
};

struct refs_stack {
    int layers;
    struct refm_tensor *pos;                   // embed_positions (max_positions + 2, d)
    struct refm_tensor *embnorm_w, *embnorm_b; // layernorm_embedding
    struct refm_tensor *final_w, *final_b;     // layer_norm (mBART), else NULL
    struct refs_layer *layer;                  // (layers)
};

struct refs_weights {
    struct refm_tensor *shared;      // (V,d)
    struct refm_tensor *logits_bias; // final_logits_bias (1,V)
    struct refm_tensor *head;        // shared when tied, else lm_head.weight
    struct refs_stack enc, dec;
};

/* Activations of one attention block (Nq query rows, Nk key rows). */
struct refs_attn_acts {
    double *x;                     // (Nq,d) block input
    double *norm_mean, *norm_rstd; // (Nq) the block's LN (of x pre-LN, of h post-LN)
    double *a_in;                  // (Nq,d) what q and the parallel adapters read
    double *q, *k, *v;             // (Nq,d), (Nk,d), (Nk,d) (LoRA included)
    double *qh, *kh, *vh;          // (B,H,Tq,hd), (B,H,Tk,hd) x2
    double *prefix_k, *prefix_v;   // (H,Lp,hd) or NULL
    double *atth;                  // (B,H,Tq,hd)
    double *ctx, *o, *h, *out;     // (Nq,d)
};

struct refs_ffn_acts {
    double *x, *norm_mean, *norm_rstd, *f_in; // (N,d), (N), (N), (N,d)
    double *upre, *u;                         // (N,I)
    double *dn, *h, *out;                     // (N,d)
};

struct refs_layer_acts {
    struct refs_attn_acts self, cross;
    struct refs_ffn_acts ffn;
};

struct refs_stack_acts {
    int T;                          // tokens per sequence
    int32_t *ids, *pos;             // (B,T), (B,T) positions t + 2
    uint8_t *keep;                  // (B,T) mask
    double *x0;                     // (N,d) scaled embedding + positions
    double *emb_mean, *emb_rstd;    // (N)
    double *x;                      // (N,d) LN_emb(x0)
    struct refs_layer_acts *layer;  // (layers)
    double *final_mean, *final_rstd; // (N) mBART
    double *out;                    // (N,d) the stack's output
};

struct refs_acts {
    int B, S, T;            // shape the buffers are sized for; 0 before the first forward
    struct refs_stack_acts enc, dec;
    int32_t *targets;       // (B,T) labels, −100 where not scored
    double *logits;         // (B·T,V)
    double loss;
    struct ref_arena owned; // every buffer above, freed together
};

struct refs {
    struct model_arch arch;       // copy (labels not kept)
    struct model_arch blocks_arch; // arch with layers = the delta blocks (encoder + 2·decoder layers)
    struct delta_spec spec;       // copy; refs_collapse_prefix sets reparam = 0
    struct refs_options opt;
    struct ref_tensors tensors;   // every tensor, in creation order
    struct ref_block *blocks;     // (blocks_arch.layers) encoder, decoder, cross-attention blocks
    struct ref_deltas deltas;     // over blocks_arch, spec, tensors and blocks
    struct refs_weights w;
    struct refs_acts acts;
};

/* Builds the model for a BART or mBART `arch` with `spec`. Fails with
 * VP_ERROR_BAD_INPUT for another arch, a module naming a layer neither stack
 * has, a placement the contract does not define, or a LoRA at up/down in
 * both stacks when the encoder's and decoder's FFN widths differ. */
vp_status refs_create(struct refs **out, const struct model_arch *arch, const struct delta_spec *spec,
                      const struct refs_options *opt);
void refs_destroy(struct refs *m);

int refs_tensor_count(const struct refs *m);
struct refm_tensor *refs_tensor_at(struct refs *m, int i);
struct refm_tensor *refs_tensor_find(struct refs *m, const char *name);
/* VP_ERROR_INVALID_ARGUMENT when the name is unknown or n is not its size. */
vp_status refs_tensor_set(struct refs *m, const char *name, const double *data, size_t n);
size_t refs_trainable_params(const struct refs *m);
void refs_zero_grad(struct refs *m);

/* The delta block of a stack's layer: DELTA_STACK_ENCODER / _DECODER (the
 * layer's self-attention and FFN) or _CROSS (its cross-attention). */
int refs_block(const struct refs *m, unsigned stack, int layer);
/* Module `module` at block `block` (active false where it does not apply). */
struct ref_slot *refs_slot_at(struct refs *m, int module, int block);

/* Runs the model and keeps its activations for refs_backward. Writes
 * logits (B,T,V) when non-NULL; returns the loss. Asserts S, T ≤
 * max_positions. */
double refs_forward(struct refs *m, double *logits, const struct refs_batch *batch);
/* dL/dθ of the last forward's loss ACCUMULATED (+=) into every trainable grad. */
void refs_backward(struct refs *m);

/* Greedy decoding (see the header comment) of B sources (B,S) with mask
 * (NULL: all real) into out (B,max_new), padded with pad_token_id; returns
 * the number of steps run (≤ max_new). Overwrites the kept activations. */
int refs_generate_greedy(struct refs *m, int32_t *out, const int32_t *ids, const uint8_t *mask, int B, int S,
                         int max_new);

/* Replaces each reparameterised prefix by the prefix_k/prefix_v it now
 * produces; the MLP tensors are removed. */
vp_status refs_collapse_prefix(struct refs *m);

/* ------------------------------------------------------------------------
 * Shared between seq2seq.c, seq2seq_forward.c and seq2seq_backward.c.
 * ------------------------------------------------------------------------ */

void refs_acts_free(struct refs_acts *a);
/* The encoder over ids/mask (B,S) into m->acts.enc (sized by the caller). */
void refs_encoder_forward(struct refs *m);
/* The decoder and head over m->acts.dec, reading enc_out (B·S,d) and the
 * source mask enc_keep (B,S); writes m->acts.logits. */
void refs_decoder_forward(struct refs *m, const double *enc_out, const uint8_t *enc_keep);
/* y = act(x) with the config's activation (gelu, gelu_new, relu). */
void refs_act_forward(const struct refs *m, double *y, const double *x, size_t n);
/* A dropout site's probability (0 with dropout off) and its mask's key. */
double refs_dropout_p(const struct refs *m, double p);
struct ref_dropout_key refs_dropout_key(const struct refs *m, int block, int site);
/* Sizes m->acts for (B,S,T), keeping the buffers when the shape is unchanged. */
void refs_ensure_acts(struct refs *m, int B, int S, int T);

#endif
