/* The GPU decoder-only causal language model (GPT-2, and LLaMA / Mistral /
 * Qwen2), computing exactly what tests/reference/decoder.h specifies in
 * double precision: pre-norm layers, causal attention with grouped kv
 * heads, RoPE or learned positions, the final norm, the LM head (tied or
 * not) and HF's shifted mean cross-entropy.
 *
 *     struct decoder *m;
 *     struct decoder_options opt = {.storage = ENCODER_STORAGE_F32};
 *     decoder_create(ctx, "models/tiny-llama", &spec, &opt, 2, 8, &m);
 *     decoder_write_batch(m, &(struct decoder_batch){ids, mask, loss_mask});
 *     decoder_run(m, DECODER_PASS_EVAL);                 // recorded once, replayed after
 *     float loss; decoder_loss(m, &loss, NULL);
 *     decoder_logits(m, logits);                         // (B,T,V)
 *     decoder_destroy(m);
 *
 * Deltas: LoRA on q, k, v, o, up, down; adapters at attn and ffn,
 * sequential or parallel, per head (mh-pa), compose add, scale or gated;
 * prefixes, plain or reparameterised (sequence positions start at the
 * prefix length, as PEFT);
 * BitFit; full fine-tuning (a tied head's gradient sums the embedding
 * scatter and dlogitsᵀ·norm_f(x_L)). Dropout (decoder_options.dropout):
 * the model's sites and the adapters' bottlenecks, in training passes.
 *
 * The header is decoder_lm.h, not decoder.h: tests/reference/decoder.h
 * (the double-precision reference) already has that name, and runtime/model
 * comes first on the include path of the tests that include it.
 *
 * Memory (who owns what): the frozen pool holds every pretrained tensor the
 * delta does not train, weight matrices and embedding tables in the storage
 * type, norm weights and biases f32. Weight matrices are stored [out, in]
 * whatever the file's layout: GPT-2's Conv1D weights ([in, out]) are transposed at the upload
 * and c_attn is split into its q, k and v column blocks (three pieces); by
 * name they read back in the file's layout. The trainable pool holds the
 * params (delta/params.h's list for the spec, renamed decoder.layers.*,
 * without its classification head, plus the model tensors bitfit / full
 * train under their Hugging Face names, f32, Conv1D weights transposed like
 * the frozen ones; read and written by name in the file's layout), their
 * gradients and AdamW moments. The activations pool holds
 * every activation for the batch shape, the constant index tables and the
 * RoPE table; the staging pool the inputs the host writes (ids, positions,
 * targets, key mask) and the outputs a run copies back (loss words,
 * logits). The decoder owns all of them and frees them in decoder_destroy.
 *
 * Recording: one recording per pass and batch shape (eval: forward + loss;
 * train: + backward), made at the first run and replayed after it; a run
 * first copies the batch from staging, last copies loss and logits to
 * staging. Gradients accumulate (+=) over runs until decoder_zero_grads.
 *
 * Activation checkpointing (decoder_options.checkpoint_activations) trades
 * compute for memory: every layer keeps only its output (the next layer's
 * input); the rest of a layer's activations (norms, q/k/v and their heads,
 * attention, FFN, the deltas' bottlenecks) live in one set of buffers all
 * layers share. The training pass's backward re-records layer l's forward
 * from its kept input into that set right before layer l's backward (the
 * last layer's is still there from the forward), so a train step runs about
 * one forward more. The recomputation is the same kernels on the same
 * inputs, so losses and gradients are bit-identical to a run without it.
 * The generator (decoder_gen_create) needs every layer's K and V after the
 * prefill and refuses a checkpointing decoder. */
#ifndef VKPEFT_MODEL_DECODER_LM_H
#define VKPEFT_MODEL_DECODER_LM_H

#include "encoder.h"

/* Zero means default. Storage is the encoder's enum (f16 by default, bf16
 * for bf16 files). checkpoint_activations: activation checkpointing (see
 * "Activation checkpointing" below). */
struct decoder_options {
    enum encoder_storage storage;
    uint64_t seed;
    double label_smoothing;
    bool checkpoint_activations;
    /* Training passes drop (never evaluation or generation), with the
     * arch's probabilities: GPT-2 embd_pdrop after the embeddings,
     * attn_pdrop on the attention probabilities, resid_pdrop after each
     * block's output projection (before the sequential adapters and the
     * residual); LLaMA family attention_dropout. Masks come from Philox
     * keyed by seed, the step (decoder_set_step) and the site (the
     * encoder's streams: enc_dropout_stream). false: every dropout off.
     * dropout_p > 0 replaces the probability of every site the family has. */
    bool dropout;
    double dropout_p;
};

enum decoder_pass { DECODER_PASS_EVAL = 0, DECODER_PASS_TRAIN, DECODER_PASS_COUNT };

/* One batch (right padding); B and T are the decoder's batch shape. The
 * label of token t is ids[t] where mask and loss_mask are 1, else ignored;
 * the logits of token t are scored against the label of token t+1. */
struct decoder_batch {
    const int32_t *ids;       /* (B,T) token ids in [0, vocab) */
    const uint8_t *mask;      /* (B,T) 1 = real token; NULL: all real */
    const uint8_t *loss_mask; /* (B,T) 1 = token is a target; NULL: all */
};

struct decoder;

/* Reads dir/config.json (a GPT-2 or LLaMA-family decoder), opens the
 * weights and checks every tensor the model needs. No device memory yet. */
vp_status decoder_open(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                       const struct decoder_options *opt, struct decoder **out);
/* Bytes each pool needs for batch shape (B,T). */
vp_status decoder_plan(const struct decoder *m, int B, int T, uint64_t bytes[VP_POOL_COUNT]);
/* The activations pool's bytes for (B,T) with or without activation
 * checkpointing, whatever the decoder's own option (what it saves). */
vp_status decoder_plan_activations(const struct decoder *m, int B, int T, bool checkpoint, uint64_t *bytes);
/* Reserves the plan, uploads the frozen tensors, allocates the activations. */
vp_status decoder_load(struct decoder *m, int B, int T);
vp_status decoder_create(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                         const struct decoder_options *opt, int B, int T, struct decoder **out);
void decoder_destroy(struct decoder *m);

const struct model_arch *decoder_arch(const struct decoder *m);
/* The trainable tensors (for an optimiser: delta_params_opt_tensors). */
struct delta_params *decoder_params(struct decoder *m);
enum vp_dtype decoder_weight_dtype(const struct decoder *m);

/* Writes a batch into staging (ids checked against the vocabulary). */
vp_status decoder_write_batch(struct decoder *m, const struct decoder_batch *batch);
/* Runs a pass on the batch last written, recording it first when needed. */
vp_status decoder_run(struct decoder *m, enum decoder_pass pass);
/* The training step dropout masks are keyed by; with dropout on, a new
 * step re-records the training pass at its next run. */
void decoder_set_step(struct decoder *m, uint32_t step);
/* Zeroes every gradient (they accumulate over training passes). */
vp_status decoder_zero_grads(struct decoder *m);
/* The last run's mean loss over scored positions and their count (either
 * may be NULL), and the logits (B,T,V). */
vp_status decoder_loss(const struct decoder *m, float *loss, uint32_t *count);
vp_status decoder_logits(const struct decoder *m, float *logits);

/* For a trainer (train/trainer.h's trainer_model, train/lmtrainer.h):
 * recording a pass or the gradient zeroing into the caller's recorder
 * (which must not outlive the batch shape), the batch shape, and a new
 * shape (reallocates the activations and staging; the decoder's own
 * recordings are made again at their next run). */
vp_status decoder_record(struct decoder *m, struct vk_recorder *rec, enum decoder_pass pass);
vp_status decoder_record_zero_grads(struct decoder *m, struct vk_recorder *rec);
void decoder_batch_shape(const struct decoder *m, int *B, int *T);
vp_status decoder_set_batch(struct decoder *m, int B, int T);

/* Saved deltas (delta/save.h: a vkpeft delta folder or a PEFT LoRA or prefix-tuning one).
 * decoder_load_delta writes a saved delta's tensors into a loaded decoder
 * whose spec trains them (same names and shapes); decoder_create_with_delta
 * opens the model with the saved delta's spec, loads it for (B,T) and
 * writes the tensors (delta_dir NULL: the model alone, no delta). */
vp_status decoder_load_delta(struct decoder *m, const char *delta_dir);
vp_status decoder_create_with_delta(vp_context *ctx, const char *dir, const char *delta_dir,
                                    const struct decoder_options *opt, int B, int T, struct decoder **out);

/* Any tensor by name: the model's (Hugging Face names, in the file's
 * layout, converted from the storage type) and the delta's
 * (decoder.layers.{l}.delta{i}.*, delta{i}.reparam.*); n must be its size.
 * Gradients exist for trainable tensors only; frozen tensors cannot be
 * written (VP_ERROR_INVALID_ARGUMENT). */
vp_status decoder_tensor_numel(const struct decoder *m, const char *name, uint64_t *n);
vp_status decoder_tensor_read(const struct decoder *m, const char *name, float *out, size_t n);
vp_status decoder_grad_read(const struct decoder *m, const char *name, float *out, size_t n);
vp_status decoder_tensor_write(struct decoder *m, const char *name, const float *data, size_t n);

/* ------------------------------------------------------------------------
 * Generation with a KV cache (decoder_generate.c)
 *
 *     struct decoder_gen_shape sh = {.batch = 2, .prompt_len = 7, .rows = 2 * 4, .max_len = 7 + 20};
 *     int B, T;
 *     decoder_gen_batch_shape(&sh, &B, &T);
 *     decoder_open(ctx, dir, &spec, &opt, &m);
 *     decoder_load(m, B, T);                          // the prefill's batch shape
 *     decoder_gen_create(m, &sh, &gen);
 *     decoder_generate(gen, &search_opts, &prompts, &result);   // search.h
 *     decoder_gen_destroy(gen);                       // before decoder_destroy
 *
 * The first step prefills the prompts right-padded to the longest as the
 * full forward does (positions P + t, P the prefix length), keeps the last
 * real token's logits and fills the cache; each later step runs the new
 * token of every row over its cache. The cache holds, per layer, K and V
 * rotated and repeated per kv group, (rows, H, max_len, hd), in the
 * activations pool; a step gathers every row's cache from its parent row
 * with the new token appended (beam search's reorder) in one gather and
 * attends over all max_len slots with a key mask, so the step's recording
 * is made once and replayed. Prefix rows stay in the layers' pk, pv.
 * ------------------------------------------------------------------------ */

#include "search.h"

struct decoder_gen_shape {
    int batch;      /* prompts one call prefills, at most */
    int prompt_len; /* tokens of the longest prompt */
    int rows;       /* sequences alive at once, at most: batch × num_beams (sampling: × return sequences) */
    int max_len;    /* tokens a sequence holds, prompt included, at most */
};
struct decoder_gen;

/* The decoder batch shape (B, T) to load the decoder with for `s`. */
void decoder_gen_batch_shape(const struct decoder_gen_shape *s, int *B, int *T);
/* Bytes per pool the generator adds to the decoder's plan. */
vp_status decoder_gen_plan(const struct decoder *m, const struct decoder_gen_shape *s,
                           uint64_t bytes[VP_POOL_COUNT]);
/* Allocates the cache and the step's buffers for a decoder loaded with
 * decoder_gen_batch_shape's shape. The generator does not own m. */
vp_status decoder_gen_create(struct decoder *m, const struct decoder_gen_shape *s, struct decoder_gen **out);
void decoder_gen_destroy(struct decoder_gen *g);
/* The prompts the next first step (tokens NULL) prefills; copied. */
vp_status decoder_gen_prompts(struct decoder_gen *g, const struct search_input *in);
/* search_step_fn with user = the generator; logits (rows, V). */
vp_status decoder_gen_step(void *gen, int rows, const int32_t *parent, const int32_t *tokens, float *logits);
/* The next decode step (tokens not NULL) is profiled: recorded again with
 * a timestamp after every command and run once in place of the step's own
 * recording (same results), its GPU time per (site, kernel) written to
 * *out (the caller's; vk_profile_finish frees it). For benchmarks. */
void decoder_gen_profile_next(struct decoder_gen *g, struct vk_profile *out);
/* The prompts, then search_run with the generator's step. */
vp_status decoder_generate(struct decoder_gen *g, const struct search_options *o, const struct search_input *in,
                           struct search_result *out);

/* Shared with the encoder-decoder's generation (seq2seq_generate.c): the
 * per-head adapters' split (N,H,hd) → (H,N,hd) and merge tables for N rows;
 * one (row, head)'s cache gather row of S slots, for a sequence of L
 * cached tokens (−1: a dead row, all zero) — slot s < L from row from + s,
 * slot L the new row self, the rest zero (−1). */
vp_status dec_write_head_tables(vp_context *ctx, const struct vk_buffer *hsplit, const struct vk_buffer *hmerge,
                                int N, int H);
void dec_cache_table_row(int32_t *row, int S, int L, int32_t from, int32_t self);
/* Records fn(user, rec) into rec at the first call (*recorded false), then
 * replays rec. */
vp_status dec_run_recording(struct vk_recorder *rec, bool *recorded,
                            vp_status (*fn)(void *user, struct vk_recorder *rec), void *user);

/* ------------------------------------------------------------------------
 * Shared between the decoder's own files (decoder*.c); not for callers.
 * ------------------------------------------------------------------------ */

/* A device piece of a pretrained tensor, [out, in] (or a vector of `out`):
 * the file tensor `name`, or for a Conv1D weight stored [in, ld] its
 * columns c0 .. c0+out transposed (a bias: its elements c0 .. c0+out). */
struct dec_weight {
    char name[96];
    int ndim;              /* of the file tensor */
    int64_t shape[2];      /* of the file tensor */
    int out, in;           /* the device piece: (out, in), or (out) when in == 0 */
    bool conv1d;           /* the file stores [in, ld] */
    int c0;                /* Conv1D: first column (bias: element) of this piece */
    bool matrix;           /* stored in the storage type; else f32 */
    uint64_t n;            /* elements of the piece */
    enum vp_dtype dtype;
    struct vk_buffer frozen;
    const struct io_tensor *file;
    /* Trained (full): the param of the whole file tensor, held in the device
     * layout (Conv1D weights transposed to [ld, in]), and this piece's
     * first element in it. NULL: frozen. */
    struct delta_param *param;
    uint64_t poff;
};

struct dec_layer_weights {
    struct dec_weight *norm1_w, *norm1_b, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
    struct dec_weight *norm2_w, *norm2_b, *wgate, *bgate, *wup, *bup, *wdown, *bdown;
};

/* A LoRA or parallel adapter module in one layer. */
struct dec_slot {
    bool active;
    int module, layer, din, dout;
    struct delta_param *lora_a, *lora_b;                 /* LoRA */
    struct delta_param *down_w, *down_b, *up_w, *up_b, *gate; /* adapter (gate when gated) */
    struct delta_param *prefix_k, *prefix_v;             /* plain prefix (rank, kvd) */
    int prefix_offset;              /* first row of this module among the layer's prefix rows */
    /* Where this layer's P_k, P_v rows of the module sit in prefix_src:
     * element offsets of row 0 and the row stride (elements). */
    uint64_t src_k, src_v, src_stride;
    struct vk_buffer hpre;          /* (N,r) x·Aᵀ, or the adapter's bottleneck before f */
    struct vk_buffer hact, delta;   /* adapter: (N,r) dropout(f(hpre)) (identity without dropout:
                                       unused), (N,dout) Δ */
    struct vk_buffer out;           /* sequential or gated adapter: (N,dout) target + s·Δ */
    struct vk_buffer zh, dh;        /* per head (mh-pa): (H,N,hd) the input and Δ split by heads */
    const struct vk_buffer *in;     /* what it read (set while recording) */
};

/* A reparameterised prefix module: E (L,d) → tanh(E·W0ᵀ + b0) → ·W2ᵀ + b2
 * into its region of prefix_src (L, nl·2·kvd). */
struct dec_reparam {
    struct delta_param *emb, *w0, *b0, *w2, *b2;
    uint64_t out;                       /* element offset of its output in prefix_src */
    uint32_t width;                     /* nl·2·kvd */
    struct vk_buffer h0pre, h0, g_h0, g_e; /* (L,R) ×3, (L,d) */
};

struct dec_layer_acts {
    struct vk_buffer mean1, rstd1, a_in;  /* (N), (N), (N,d) */
    struct vk_buffer q, k, v;             /* (N,qd), (N,kvd), (N,kvd) */
    struct vk_buffer qh, kh, vh;          /* (B,H,T,hd): rotated, kv repeated per group */
    struct vk_buffer atth, lse, ctx;      /* (B,H,T,hd), (B,H,T), (N,qd) */
    struct vk_buffer o, h;                /* (N,d) */
    struct vk_buffer mean2, rstd2, f_in;  /* (N), (N), (N,d) */
    struct vk_buffer gpre, upre, u;       /* (N,I) */
    struct vk_buffer dn, out;             /* (N,d) */
    const struct vk_buffer *o_final, *dn_final; /* after sequential adapters (set while recording) */
    /* The layer's Lp prefix rows (H,Lp,hd), gathered element by element
     * from the params' value arena (kv heads repeated per group), and the
     * scatter groups their gradients take back into the gradient arena. */
    struct vk_buffer pk, pv, ids_pk, ids_pv, groups_pk, groups_pv;
};

struct dec_acts {
    int B, T;
    struct vk_buffer ids, pos, targets, keep;          /* inputs, copied from staging */
    struct vk_buffer groups_word, groups_pos, ones;    /* full: embedding scatter groups, ones (N) */
    struct vk_buffer ids_split_q, ids_split_kv, ids_merge, rope; /* constants */
    struct vk_buffer x0;                               /* (N,d) */
    struct dec_layer_acts *layers;
    struct vk_buffer meanf, rstdf, xf, logits;         /* (N), (N), (N,d), (N,V) */
    struct vk_buffer loss, ce_lse, ce_scratch;
    /* Backward (shared across layers), when something trains. */
    struct vk_buffer groups_kv;                        /* scatter of ids_split_kv */
    struct vk_buffer g_logits, g_x, g_h, g_a, g_t;     /* (N,V), (N,d) ×4 */
    struct vk_buffer g_u, g_up, g_gate;                /* (N,I) */
    struct vk_buffer g_ctx, g_q, g_k, g_v;             /* (N,qd), (N,qd), (N,kvd) ×2 */
    struct vk_buffer g_atth, g_qh, g_kh, g_vh;         /* (B,H,T,hd) */
    struct vk_buffer g_r, g_r2, attn_scratch, norm_scratch; /* (N,rmax) ×2 */
    struct vk_buffer g_pk, g_pv;                       /* (H,Lp,hd) of the widest layer */
    struct vk_buffer g_s0, g_s1, gate_scratch;         /* sequential adapters: (N,d) ×2; gates */
    struct vk_buffer ids_hsplit, ids_hmerge, g_dh, g_dz; /* per-head adapters: (N·H) ×2, (N,d) ×2 */
    /* Every prefix module's rows (plain ones copied from their params each
     * run, reparameterised ones written by their MLP) and their gradient. */
    struct vk_buffer prefix_src, dprefix_src;
    struct vk_buffer stage_in, stage_out;
    uint64_t in_ids, in_pos, in_targets, in_keep, in_gword, in_gpos;
    struct model_owned owned;
};

struct decoder {
    vp_context *ctx;
    struct model_arch arch;
    struct delta_spec spec;
    struct decoder_options opt;
    char dir[1024];
    struct io_weights *file;
    enum vp_dtype wtype;
    struct dec_weight *weights;
    int weight_count;
    struct {
        struct dec_weight *embed, *pos, *normf_w, *normf_b, *head;
        struct dec_layer_weights *layers;
    } w;
    struct delta_params *params; /* the trainable tensors (decoder.layers.{l}.delta{i}.*) */
    struct dec_slot *slots;       /* (spec.count, layers) */
    int rank_max;
    bool trains;                  /* some tensor has a gradient */
    bool full;                    /* every model tensor trains (full fine-tuning) */
    bool model_trains;            /* some model tensor trains (full, bitfit) */
    bool per_head;                /* some adapter is per head (mh-pa) */
    int *prefix_rows;             /* (layers) Lp */
    struct dec_reparam *reparam;  /* (spec.count) */
    uint64_t prefix_src_elems;
    int prefix_max;
    int position_offset; /* P: the first token's position (PEFT: the most prefix rows of a layer) */
    bool loaded;
    struct dec_acts acts;
    struct vk_recorder *rec[DECODER_PASS_COUNT];
    bool recorded[DECODER_PASS_COUNT];
    struct vk_recorder *zero_rec;
    bool zero_recorded;
    uint32_t step;                /* dropout masks' step (decoder_set_step) */
    uint32_t recorded_step;       /* the step the train recording drew its masks for */
    bool recording_train;         /* set while a training pass records: the dropout sites drop */
};

/* decoder_load.c */
vp_status dec_weights_init(struct decoder *m);
vp_status dec_open_weights(struct decoder *m);
vp_status dec_upload_frozen(struct decoder *m);
uint64_t dec_frozen_bytes(const struct decoder *m);
void dec_free_weights(struct decoder *m);
/* What the kernels read for a whole (unsliced) tensor: its frozen piece or
 * its param's value. */
static inline const struct vk_buffer *dec_wbuf(const struct dec_weight *w) {
    return w->param ? &w->param->value : &w->frozen;
}

static inline struct dec_slot *dec_slot_at(struct decoder *m, int module, int layer) {
    return &m->slots[(size_t)module * m->arch.layers + layer];
}

/* Takes an active LoRA or adapter slot's activations for N rows from the
 * activations pool (decoder.c): the bottleneck (per head: N·H rows), f of
 * it when f is not the identity or the adapter drops, per-head splits, Δ,
 * and the sequential or gated output. */
void dec_take_slot(const struct decoder *m, struct model_taker *t, struct dec_slot *sl, uint64_t N);
/* Activation checkpointing: slot sl records into owner's bottleneck buffers
 * (a slot of the same module in a layer run before it; the owner keeps
 * them in its model's activations). */
static inline void dec_slot_share_buffers(struct dec_slot *sl, const struct dec_slot *owner) {
    sl->hpre = owner->hpre;
    sl->hact = owner->hact;
    sl->zh = owner->zh;
    sl->dh = owner->dh;
    sl->delta = owner->delta;
    sl->out = owner->out;
}

/* decoder_forward.c */
vp_status dec_record_forward(struct decoder *m, struct vk_recorder *rec);
/* A view of `len` bytes at `offset` (aligned) of a piece. */
struct vk_buffer dec_view(const struct vk_buffer *buf, uint64_t offset, uint64_t len);
/* The generator's pieces of the forward: every prefix module's rows into
 * prefix_src, and embeddings → layers → final norm (a->xf) for the first
 * N tokens, with `core` (NULL: the batch's own causal attention) in place
 * of the attention between the q, k, v projections and ctx (N,qd). */
struct dec_attention_core {
    vp_status (*record)(struct decoder *m, struct vk_recorder *rec, int l, uint32_t N, void *user);
    void *user;
};
vp_status dec_record_prefixes(struct decoder *m, struct vk_recorder *rec);
vp_status dec_record_trunk(struct decoder *m, struct vk_recorder *rec, uint32_t N,
                           const struct dec_attention_core *core);
/* Layer l's forward (attention and FFN) from its input (x0 or layer l-1's
 * out) into its activations, with the batch's own attention. */
vp_status dec_record_layer(struct decoder *m, struct vk_recorder *rec, int l, uint32_t N);
/* A dropout site of the pass being recorded: its probability (0 unless a
 * training pass with dropout on) and its mask's key (layer −1: the
 * embeddings; site: ENC_SITE_*). */
double dec_dropout_p(const struct decoder *m, double p);
/* An adapter's dropout on its bottleneck f(·): the module's, else the
 * model's hidden dropout (before dec_dropout_p). */
static inline double dec_adapter_p(const struct decoder *m, const struct delta_module *d) {
    return d->dropout >= 0 ? d->dropout : m->arch.hidden_dropout;
}
struct kernel_dropout_key dec_dropout_key(const struct decoder *m, int layer, int site);
/* Layer l's causal attention over the batch (B,H,T,T) with its prefix
 * rows and, in a training pass, dropout on the probabilities. */
struct kernel_attention_config dec_attention_config(const struct decoder *m, int l);
/* decoder_backward.c */
vp_status dec_record_backward(struct decoder *m, struct vk_recorder *rec);

/* The delta sites, linear pieces and norms of one layer l (forward and
 * backward), for the encoder-decoder model (seq2seq_lm.h), which runs them
 * on a decoder whose layers are its delta blocks. As the decoder's own:
 * linear y = x·Wᵀ + b; LoRAs at `at` add into y; adapters at (at, insert)
 * update *cur (sequential: *cur becomes the chain's output); the backward
 * ones overwrite dx, accumulate dx_acc and every parameter gradient;
 * seq_back returns the sequential chain's input gradient in *dx. */
vp_status dec_record_linear(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *y,
                            const struct vk_buffer *x, const struct dec_weight *w, const struct dec_weight *b,
                            uint32_t M, uint32_t K, uint32_t N);
vp_status dec_record_loras(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                           const struct vk_buffer *y, const struct vk_buffer *x, uint32_t N);
vp_status dec_record_adapters(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                              enum delta_insert insert, const struct vk_buffer **cur, const struct vk_buffer *par_in,
                              uint32_t N);
vp_status dec_record_norm(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *y,
                          const struct vk_buffer *mean, const struct vk_buffer *rstd, const struct vk_buffer *x,
                          const struct dec_weight *w, const struct dec_weight *b, uint32_t N);
vp_status dec_record_linear_back(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *dx,
                                 const struct vk_buffer *dy, const struct dec_weight *w, uint32_t N);
vp_status dec_record_weight_grads(struct decoder *m, struct vk_recorder *rec, const struct dec_weight *w,
                                  const struct dec_weight *b, const struct vk_buffer *dy, const struct vk_buffer *x,
                                  uint32_t N);
vp_status dec_record_loras_back(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                                const struct vk_buffer *dx_acc, const struct vk_buffer *dy, uint32_t N);
vp_status dec_record_adapters_back(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                                   const struct vk_buffer *dx_acc, const struct vk_buffer *dy, uint32_t N);
vp_status dec_record_seq_back(struct decoder *m, struct vk_recorder *rec, int l, enum delta_at at,
                              const struct vk_buffer *dy, const struct vk_buffer **dx, uint32_t N);
vp_status dec_record_norm_back(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *dx,
                               const struct vk_buffer *dy, const struct vk_buffer *x, const struct vk_buffer *mean,
                               const struct vk_buffer *rstd, const struct dec_weight *w, const struct dec_weight *b,
                               uint32_t N);
/* The prefix rows' gradients (dprefix_src) into their params. */
vp_status dec_record_prefixes_back(struct decoder *m, struct vk_recorder *rec);
/* A dropout site (layer, site: dec_dropout_key) in a training pass with
 * dropout on, nothing otherwise: x = dropout(x) in place (n elements); the
 * backward writes dy ⊙ the forward's mask into `into` and returns it, or
 * returns dy when the site does not drop (a failure lands in *st). */
vp_status dec_record_dropout(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *x, uint64_t n,
                             double p, int layer, int site);
const struct vk_buffer *dec_record_dropout_back(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *into,
                                               const struct vk_buffer *dy, uint64_t n, double p, int layer, int site,
                                               vp_status *st);

#endif
