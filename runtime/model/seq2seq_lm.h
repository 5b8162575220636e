/* The GPU encoder-decoder model (BART, mBART) for conditional generation,
 * computing exactly what tests/reference/seq2seq.h specifies in double
 * precision: embeddings scaled by embed_scale plus learned positions from
 * offset 2 and layernorm_embedding in both stacks; post-LN layers (BART) or
 * pre-LN layers with each stack's final LayerNorm (mBART); bidirectional
 * encoder self-attention and causal decoder self-attention, each masked by
 * its own padding mask; cross-attention of the decoder over the encoder's
 * output with the source mask; the tied head (lm_head.weight when untied)
 * plus final_logits_bias; Hugging Face's mean cross-entropy over the labels
 * that are not -100, with label smoothing.
 *
 *     struct seq2seq *m;
 *     struct seq2seq_options opt = {.storage = ENCODER_STORAGE_F32, .label_smoothing = 0.1};
 *     seq2seq_create(ctx, "models/tiny-bart", &spec, &opt, 2, 12, 8, &m);   // B, S, T
 *     seq2seq_write_batch(m, &(struct seq2seq_batch){src, src_mask, dec_ids, dec_mask, labels});
 *     seq2seq_run(m, SEQ2SEQ_PASS_TRAIN);
 *     float loss; seq2seq_loss(m, &loss, NULL);
 *     seq2seq_destroy(m);
 *
 * Deltas, at every block of the three kinds (encoder self-attention + FFN,
 * decoder self-attention + FFN, cross-attention), placed by each module's
 * stacks: LoRA on q, k, v, o, up, down (in cross-attention k and v read the
 * encoder output); adapters at attn and ffn, sequential or parallel, per
 * head (mh-pa) at attn, compose add, scale or gated; prefixes, plain or
 * reparameterised, with separate rows for encoder self-attention, decoder
 * self-attention and cross-attention (positions never shift); BitFit; full
 * fine-tuning (the tied table's gradient sums both embedding gathers and
 * the head; final_logits_bias never trains). Dropout
 * (seq2seq_options.dropout), as Hugging Face's BART in training passes.
 *
 * The header is seq2seq_lm.h: tests/reference/seq2seq.h already has the
 * plain name.
 *
 * How (who owns what): the model holds a decoder (decoder_lm.h) whose
 * "layers" are its delta blocks — encoder layers, decoder layers, then
 * cross-attention blocks, as the reference numbers them — and runs the
 * decoder's delta-site, linear and norm pieces on it, so LoRA, adapters and
 * prefixes are one implementation for both models. That inner decoder owns
 * the pretrained pieces (frozen pool; Hugging Face names, read back by
 * name), the params (trainable pool: delta/params.h's list, named
 * encoder.layers.*, decoder.layers.*, cross.layers.*, delta{i}.reparam.*,
 * plus the model tensors bitfit / full train), the delta slots and the
 * activations the delta pieces share; the seq2seq model owns the stacks'
 * activations, gradients and staging (activations / staging pools), all
 * freed by seq2seq_destroy. Slot buffers are sized for the longer of the
 * two stacks' token counts.
 *
 * Recording: one recording per pass and batch shape (eval: forward + loss;
 * train: + backward), made at the first run and replayed after it.
 * Gradients accumulate (+=) over runs until seq2seq_zero_grads.
 *
 * Activation checkpointing (seq2seq_options.checkpoint_activations), as
 * the decoder's (decoder_lm.h): every layer of both stacks keeps only its
 * output (the next layer's input; the encoder's last one is also what
 * cross-attention reads) and its blocks' prefix rows; the rest of a layer's
 * activations (norms, q/k/v and their heads, attention, cross-attention,
 * FFN) live in one set of buffers the layers of its stack share, and the
 * deltas' bottlenecks in one set per module and kind of block (encoder,
 * decoder, cross-attention). The training pass's backward re-records layer
 * l's forward from its kept input right before layer l's backward (each
 * stack's last layer's activations are still there from the forward: the
 * decoder's backward runs before the encoder's and touches none of the
 * encoder's buffers). Same kernels, same inputs: losses and gradients are
 * bit-identical to a run without it. The generator keeps its own copy of
 * each decoder layer's cross-attention K/V when the model checkpoints. */
#ifndef VKPEFT_MODEL_SEQ2SEQ_LM_H
#define VKPEFT_MODEL_SEQ2SEQ_LM_H

#include "decoder_lm.h"

/* Zero means default (storage: the encoder's enum). checkpoint_activations:
 * activation checkpointing (above). */
struct seq2seq_options {
    enum encoder_storage storage;
    uint64_t seed;
    double label_smoothing;
    bool checkpoint_activations;
    /* Training passes drop (never evaluation or generation), as Hugging
     * Face's BART: the config's `dropout` on each stack's embeddings after
     * layernorm_embedding and on every block's output o and FFN output dn
     * (with their LoRAs, before the sequential adapters and the residual),
     * `attention_dropout` on the attention probabilities (self and cross),
     * `activation_dropout` after the FFN's activation, the adapters on
     * their bottleneck (decoder_lm.h). Masks: Philox keyed by seed, the
     * step (seq2seq_set_step) and the site (the encoder's streams at the
     * delta block; a stack's embeddings at its first block), as
     * tests/reference/seq2seq.h draws them. false: every dropout off.
     * dropout_p > 0 replaces the three probabilities. */
    bool dropout;
    double dropout_p;
};

enum seq2seq_pass { SEQ2SEQ_PASS_EVAL = 0, SEQ2SEQ_PASS_TRAIN, SEQ2SEQ_PASS_COUNT };

/* One batch (right padding); (B,S) source and (B,T) target side. */
struct seq2seq_batch {
    const int32_t *ids;      /* (B,S) source ids */
    const uint8_t *mask;     /* (B,S) 1 = real source token; NULL: all real */
    const int32_t *dec_ids;  /* (B,T) decoder input ids (the labels shifted right) */
    const uint8_t *dec_mask; /* (B,T) 1 = real decoder token; NULL: all real */
    const int32_t *labels;   /* (B,T) targets, -100 not scored; NULL: none scored */
};

struct seq2seq;

vp_status seq2seq_open(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                       const struct seq2seq_options *opt, struct seq2seq **out);
vp_status seq2seq_plan(const struct seq2seq *m, int B, int S, int T, uint64_t bytes[VP_POOL_COUNT]);
/* The activations pool's bytes for (B,S,T) with or without activation
 * checkpointing, whatever the model's own option (what it saves). */
vp_status seq2seq_plan_activations(const struct seq2seq *m, int B, int S, int T, bool checkpoint, uint64_t *bytes);
vp_status seq2seq_load(struct seq2seq *m, int B, int S, int T);
vp_status seq2seq_create(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                         const struct seq2seq_options *opt, int B, int S, int T, struct seq2seq **out);
void seq2seq_destroy(struct seq2seq *m);

const struct model_arch *seq2seq_arch(const struct seq2seq *m);
struct delta_params *seq2seq_params(struct seq2seq *m);
enum vp_dtype seq2seq_weight_dtype(const struct seq2seq *m);

vp_status seq2seq_write_batch(struct seq2seq *m, const struct seq2seq_batch *batch);
vp_status seq2seq_run(struct seq2seq *m, enum seq2seq_pass pass);
/* The training step dropout masks are keyed by; with dropout on, a new
 * step re-records the training pass at its next run. */
void seq2seq_set_step(struct seq2seq *m, uint32_t step);
vp_status seq2seq_zero_grads(struct seq2seq *m);
/* The last run's mean loss and scored count (either may be NULL), and the
 * logits (B,T,V). */
vp_status seq2seq_loss(const struct seq2seq *m, float *loss, uint32_t *count);
vp_status seq2seq_logits(const struct seq2seq *m, float *logits);

/* For a trainer: recording into the caller's recorder, the batch shape and
 * a new one (reallocates the activations and staging). */
vp_status seq2seq_record(struct seq2seq *m, struct vk_recorder *rec, enum seq2seq_pass pass);
vp_status seq2seq_record_zero_grads(struct seq2seq *m, struct vk_recorder *rec);
void seq2seq_batch_shape(const struct seq2seq *m, int *B, int *S, int *T);
vp_status seq2seq_set_batch(struct seq2seq *m, int B, int S, int T);

/* A saved delta's tensors into a loaded model whose spec trains them; or
 * the model opened with a saved delta's spec, loaded for (B,S,T), with the
 * delta's tensors written (delta_dir NULL: the model alone, no delta). */
vp_status seq2seq_load_delta(struct seq2seq *m, const char *delta_dir);
vp_status seq2seq_create_with_delta(vp_context *ctx, const char *dir, const char *delta_dir,
                                    const struct seq2seq_options *opt, int B, int S, int T, struct seq2seq **out);

/* ------------------------------------------------------------------------
 * Generation (seq2seq_generate.c)
 *
 *     seq2seq_load(m, batch * num_beams, S, 1 + max_new);   // rows, source, decoder positions
 *     struct search_options o = {.max_new_tokens = 32, .num_beams = 4};
 *     seq2seq_search_defaults(seq2seq_arch(m), &o);
 *     seq2seq_generate(m, &o, src, src_mask, batch, S, &result);   // search.h
 *
 * Every sequence starts from decoder_start_token_id (else eos); the
 * config's forced_bos_token_id (mBART's target language) is forced at the
 * first step and forced_eos_token_id at the last, as HF's generate() does.
 * With a KV cache, as the decoder's (decoder_lm.h): the first step runs
 * the encoder once over the sources and projects each decoder layer's
 * cross-attention K and V from its output (LoRA on k and v included);
 * every step then runs one new token per row through the decoder stack,
 * attending over the cached self-attention K/V (rows, H, positions, hd)
 * reordered by the rows' parents in one gather, every delta applied
 * (prefix rows of all three kinds kept). A generator's two recordings
 * (encode, step) are made once and replayed. New tokens are capped by the
 * loaded decoder positions; the model's batch rows must hold batch × beams
 * (× return sequences when sampling). The evaluation pass's activations and
 * logits are overwritten.
 * ------------------------------------------------------------------------ */

/* The config's eos ids, pad id and forced bos / eos ids into o. */
void seq2seq_search_defaults(const struct model_arch *a, struct search_options *o);
/* Generates for `batch` sources (batch, src_len) (mask NULL: all real):
 * seq2seq_gen_create, seq2seq_gen_run, seq2seq_gen_destroy. */
vp_status seq2seq_generate(struct seq2seq *m, const struct search_options *o, const int32_t *src,
                           const uint8_t *src_mask, int batch, int src_len, struct search_result *out);

/* A generator for a loaded model (the cache and the step's buffers in the
 * activations pool, sized by the model's batch shape; it does not own m).
 * seq2seq_gen_sources sets the sources the next first step (parent NULL)
 * encodes; seq2seq_gen_step is search.h's step with user = the generator,
 * logits (rows, V); seq2seq_gen_run is both and search_run. The encoding
 * keeps the cross K/V and prefix rows in the model's activations: a pass
 * (seq2seq_run) between a generation's steps overwrites them, one between
 * generations does not matter (each first step encodes again). A generator
 * holds the model's batch shape: destroy it before seq2seq_set_batch. */
struct seq2seq_gen;
/* What a generator is made for: `rows` sequences alive at once (batch ×
 * num_beams; sampling: × return sequences), sources of up to src_len
 * tokens, up to max_new_tokens new tokens. */
struct seq2seq_gen_shape {
    int rows, src_len, max_new_tokens;
};
/* The model's batch shape for s: B = rows, S = src_len, T = 1 +
 * max_new_tokens (the start token's position, then one per new token). */
void seq2seq_gen_load_shape(const struct seq2seq_gen_shape *s, int *B, int *S, int *T);
/* Bytes per pool the generator adds to the model's plan at that shape
 * (seq2seq_plan): each decoder layer's self-attention KV cache (with the
 * step's new rows), the gathered K/V a step attends over, every row's
 * cross-attention K/V, the step's tables and masks (activations pool) and
 * its staging. What seq2seq_gen_create allocates on a model loaded at
 * seq2seq_gen_load_shape's shape; m need only be open. */
vp_status seq2seq_gen_plan(const struct seq2seq *m, const struct seq2seq_gen_shape *s,
                           uint64_t bytes[VP_POOL_COUNT]);
vp_status seq2seq_gen_create(struct seq2seq *m, struct seq2seq_gen **out);
void seq2seq_gen_destroy(struct seq2seq_gen *g);
vp_status seq2seq_gen_sources(struct seq2seq_gen *g, const int32_t *src, const uint8_t *src_mask, int batch,
                              int src_len);
vp_status seq2seq_gen_step(void *gen, int rows, const int32_t *parent, const int32_t *tokens, float *logits);
/* The next step is profiled as decoder_gen_profile_next's is. */
void seq2seq_gen_profile_next(struct seq2seq_gen *g, struct vk_profile *out);
vp_status seq2seq_gen_run(struct seq2seq_gen *g, const struct search_options *o, const int32_t *src,
                          const uint8_t *src_mask, int batch, int src_len, struct search_result *out);

/* Any tensor by name (Hugging Face names for the model's, in the file's
 * layout; the delta's by their delta names); as decoder_lm.h's. */
vp_status seq2seq_tensor_numel(const struct seq2seq *m, const char *name, uint64_t *n);
vp_status seq2seq_tensor_read(const struct seq2seq *m, const char *name, float *out, size_t n);
vp_status seq2seq_grad_read(const struct seq2seq *m, const char *name, float *out, size_t n);
vp_status seq2seq_tensor_write(struct seq2seq *m, const char *name, const float *data, size_t n);

/* ------------------------------------------------------------------------
 * Shared between seq2seq*.c; not for callers.
 * ------------------------------------------------------------------------ */

struct s2s_attn_w {
    struct dec_weight *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *ln_w, *ln_b;
};
struct s2s_ffn_w {
    struct dec_weight *w1, *b1, *w2, *b2, *ln_w, *ln_b;
};
struct s2s_layer_w {
    struct s2s_attn_w self, cross; /* cross: decoder layers only */
    struct s2s_ffn_w ffn;
};
struct s2s_stack_w {
    int layers, I;
    struct dec_weight *pos, *emb_w, *emb_b, *final_w, *final_b; /* final: mBART */
    struct s2s_layer_w *layer;
};

/* One attention block's activations (Nq query rows over Nk key rows). */
struct s2s_attn_acts {
    struct vk_buffer mean, rstd, a_in;   /* (Nq), (Nq), (Nq,d) pre-LN's normed input */
    struct vk_buffer q, k, v;            /* (Nq,d), (Nk,d), (Nk,d) */
    struct vk_buffer qh, kh, vh;         /* (B,H,Tq,hd), (B,H,Tk,hd) ×2 */
    struct vk_buffer atth, lse, ctx;     /* (B,H,Tq,hd), (B,H,Tq), (Nq,d) */
    struct vk_buffer o, h, out;          /* (Nq,d); out: post-LN's LN(h) */
    struct vk_buffer pk, pv, ids_pk, ids_pv, groups_pk, groups_pv; /* (H,Lp,hd) prefix rows, tables */
    const struct vk_buffer *x, *in, *kv, *o_final, *y; /* set while recording */
};

struct s2s_ffn_acts {
    struct vk_buffer mean, rstd, f_in;   /* pre-LN's normed input */
    struct vk_buffer upre, u;            /* (N,I) */
    struct vk_buffer dn, h, out;         /* (N,d) */
    const struct vk_buffer *x, *in, *y;  /* set while recording */
};

struct s2s_layer_acts {
    struct s2s_attn_acts self, cross;
    struct s2s_ffn_acts ffn;
};

/* One stack's inputs, constant tables and activations. */
struct s2s_stack_acts {
    int T;                                        /* tokens per sequence */
    struct vk_buffer ids, pos, keep;              /* (B,T) inputs copied from staging */
    struct vk_buffer groups_word, groups_pos;     /* full: embedding scatter groups */
    struct vk_buffer ids_split, ids_merge;        /* (B,T,H,hd) ↔ (B,H,T,hd) */
    struct vk_buffer ids_hsplit, ids_hmerge;      /* per-head adapters: (N,H,hd) ↔ (H,N,hd) */
    struct vk_buffer x0, emb_mean, emb_rstd, x;   /* (N,d), (N), (N), (N,d) */
    struct vk_buffer final_mean, final_rstd, final_out; /* mBART */
    struct s2s_layer_acts *layer;
    const struct vk_buffer *out;                  /* the stack's output (set while recording) */
    uint64_t in_ids, in_pos, in_keep, in_gword, in_gpos; /* staging offsets */
};

struct s2s_acts {
    int B, S, T;
    struct s2s_stack_acts enc, dec;
    struct vk_buffer targets, logits, loss, ce_lse, ce_scratch;
    /* Backward (when something trains), shared across blocks, sized for the
     * longer stack. */
    struct vk_buffer g_logits, g_x, g_h, g_a, g_t, g_enc;  /* (N_dec,V), (N,d) ×4, (N_enc,d) */
    struct vk_buffer g_ctx, g_q, g_k, g_v, g_atth, g_qh, g_kh, g_vh; /* (N,d) */
    struct vk_buffer g_u, g_up;                            /* (N,I) */
    struct vk_buffer g_pk, g_pv, attn_scratch;
    struct vk_buffer stage_in, stage_out;
    uint64_t in_targets;
    struct model_owned owned;
};

struct seq2seq {
    vp_context *ctx;
    struct model_arch arch;  /* the model's (layers: the encoder's) */
    struct decoder core;     /* arch.layers = delta blocks; the pieces, params, slots */
    struct s2s_stack_w enc, dec;
    struct dec_weight *shared, *head, *logits_bias;
    int Le, Ld;              /* layers per stack */
    bool loaded;
    struct s2s_acts acts;
    struct vk_recorder *rec[SEQ2SEQ_PASS_COUNT];
    bool recorded[SEQ2SEQ_PASS_COUNT];
    struct vk_recorder *zero_rec;
    bool zero_recorded;
    /* dropout: the step is core.step; core.recording_train is set while a
     * training pass records */
    uint32_t recorded_step;  /* the step the train recording drew its masks for */
};

/* The delta block of a stack's layer (DELTA_STACK_*), the reference's
 * numbering. */
static inline int s2s_block(const struct seq2seq *m, unsigned stack, int layer) {
    if (stack == DELTA_STACK_ENCODER) return layer;
    return m->Le + layer + (stack == DELTA_STACK_CROSS ? m->Ld : 0);
}

/* The first delta block of a stack (its embeddings' dropout key). */
static inline int s2s_first_block(const struct seq2seq *m, const struct s2s_stack_w *w) {
    return w == &m->enc ? 0 : m->Le;
}

/* The FFN activation (check_arch admits gelu, gelu_new and relu). */
static inline enum kernel_activation s2s_act(const struct seq2seq *m) {
    return m->arch.act == MODEL_ACT_RELU ? KERNEL_ACT_RELU
           : m->arch.act == MODEL_ACT_GELU_TANH ? KERNEL_ACT_GELU_TANH : KERNEL_ACT_GELU;
}

/* seq2seq_load.c */
vp_status s2s_weights_init(struct seq2seq *m);
vp_status s2s_setup_params(struct seq2seq *m);
/* seq2seq_forward.c: the forward, and the pieces generation's step
 * (seq2seq_generate.c) runs on its own rows. */
vp_status s2s_record_forward(struct seq2seq *m, struct vk_recorder *rec);
/* A stack over the batch (sets sa->out); the decoder's reads enc. */
vp_status s2s_stack_forward(struct seq2seq *m, struct vk_recorder *rec, const struct s2s_stack_w *w,
                            struct s2s_stack_acts *sa, const struct s2s_stack_acts *enc);
/* Layer l of a stack from its input (sa->x or layer l-1's output). */
vp_status s2s_layer_forward(struct seq2seq *m, struct vk_recorder *rec, const struct s2s_stack_w *w,
                            struct s2s_stack_acts *sa, const struct s2s_stack_acts *enc, int l);
/* x0 = embed_scale·E[ids] + W_pos[pos], x = LN_emb(x0) for sa's first N tokens. */
vp_status s2s_embed_forward(struct seq2seq *m, struct vk_recorder *rec, const struct s2s_stack_w *w,
                            struct s2s_stack_acts *sa, uint32_t N);
/* An attention block in pieces: pre-LN and q (Nq rows) with its LoRAs; k
 * and v (Nk rows of kv_src, NULL: the block's input) with theirs; k and v
 * split into kh, vh by stack ks; the block's prefix rows; from ctx (Nq,d)
 * to the block's output aa->y. */
vp_status s2s_attn_project(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_attn_w *w,
                           struct s2s_attn_acts *aa, const struct vk_buffer *x, uint32_t Nq);
vp_status s2s_attn_kv(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_attn_w *w,
                      struct s2s_attn_acts *aa, const struct vk_buffer *kv_src, uint32_t Nk);
vp_status s2s_attn_split_kv(struct seq2seq *m, struct vk_recorder *rec, struct s2s_attn_acts *aa,
                            const struct s2s_stack_acts *ks, uint32_t Nk);
vp_status s2s_attn_prefix(struct seq2seq *m, struct vk_recorder *rec, int blk, struct s2s_attn_acts *aa);
vp_status s2s_attn_output(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_attn_w *w,
                          struct s2s_attn_acts *aa, const struct vk_buffer *ctx, uint32_t Nq);
/* An FFN block over N rows of width I (sets fa->y). */
vp_status s2s_ffn_forward(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_ffn_w *w,
                          struct s2s_ffn_acts *fa, const struct vk_buffer *x, uint32_t N, uint32_t I);
/* Block blk's attention config (Tq queries over Tk keys; its prefix rows;
 * in a training pass with dropout on, dropout on the probabilities). */
struct kernel_attention_config s2s_attention_config(const struct seq2seq *m, int blk, uint32_t Tq, uint32_t Tk,
                                                    bool causal);
/* seq2seq_backward.c */
vp_status s2s_record_backward(struct seq2seq *m, struct vk_recorder *rec);

#endif
