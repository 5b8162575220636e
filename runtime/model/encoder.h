/* The GPU encoder model: a BERT/RoBERTa sequence classifier with every delta
 * module of the unified view, forward and backward on the GPU, computing
 * exactly runtime/model/README.md (the contract tests/reference/model.c
 * implements in double precision).
 *
 *     struct encoder *e;
 *     struct encoder_options opt = {.seed = 1};          // f16 weights, dropout off
 *     encoder_open(ctx, "models/roberta-base", &spec, &opt, &e);   // host only
 *     uint64_t plan[VP_POOL_COUNT];
 *     encoder_plan(e, 32, 128, plan);                     // bytes per pool
 *     encoder_load(e, 32, 128);   // checks the whole plan against the budget, then uploads
 *     encoder_write_batch(e, &batch);                     // ids, mask, labels into staging
 *     encoder_zero_grads(e);
 *     encoder_run(e, ENCODER_PASS_TRAIN);                 // recorded once, replayed after
 *     float loss; encoder_loss(e, &loss, NULL);
 *     encoder_destroy(e);
 *
 * Memory (who owns what): the frozen pool holds the pretrained tensors the
 * delta does not train (one piece each, weights and embedding tables in the
 * storage type, LayerNorm parameters and biases f32), never written after the
 * upload and never given gradients; the trainable pool holds the delta
 * params (delta/params.h: delta modules, head, and the model tensors bitfit /
 * full train, moved there in f32); the activations pool holds every
 * activation and gradient buffer for the batch shape and the constant index
 * tables built for it; the staging pool holds the inputs the host writes
 * each step and the loss and logits a run copies back. The encoder owns all
 * of them and frees them in encoder_destroy.
 *
 * Recording: one recording per pass (eval: forward + loss; train: forward +
 * loss + backward) and batch shape, made at the first run and replayed after
 * it; a run first copies the batch from staging, last copies loss and logits
 * to staging. Gradients accumulate (+=) over runs until encoder_zero_grads.
 *
 * Layering note: the encoder is where the model and the delta meet; it uses
 * delta/params.h for the trainable tensors, and params use
 * encoder_model_tensors for the names bitfit / full train. */
#ifndef VKPEFT_MODEL_ENCODER_H
#define VKPEFT_MODEL_ENCODER_H

#include "arch.h"
#include "kernels.h"
#include "model_common.h"
#include "params.h"
#include "spec.h"
#include "vk.h"

/* enum encoder_storage (the decoder stores its weights the same way): model_common.h. */

/* Zero means default. */
struct encoder_options {
    enum encoder_storage storage;
    /* Training-time dropout (hidden, attention, classifier, adapter) from
     * Philox with `seed`, the step (encoder_set_step) and one stream per
     * site. false: every dropout is off (evaluation, tests). */
    bool dropout;
    uint64_t seed;          /* run seed: delta initialisation and dropout */
    double label_smoothing; /* cross-entropy ε */
    /* MODEL_HEAD_CLASSIFY (default): the sequence classifier; MODEL_HEAD_MLM:
     * the masked-LM head (README.md), labels per token, logits (B·T, V). */
    enum model_head head;
    /* Activation checkpointing, as the decoder's (decoder_lm.h): each layer
     * keeps only its output, the rest lives in one set all layers share and
     * the training pass's backward recomputes layer l's forward (same
     * dropout masks) right before its backward. Bit-identical results. */
    bool checkpoint_activations;
};

enum encoder_pass { ENCODER_PASS_EVAL = 0, ENCODER_PASS_TRAIN, ENCODER_PASS_COUNT };

/* One batch as the host has it; B and T are the encoder's batch shape. */
struct encoder_batch {
    const int32_t *ids;      /* (B,T) token ids in [0, vocab) */
    const uint8_t *mask;     /* (B,T) 1 = real token; NULL: all real */
    const int32_t *type_ids; /* (B,T) or NULL: all 0 */
    const int32_t *labels;   /* (B) class ids or -100 (skipped); MLM head: (B,T) token ids in
                                [0, vocab) or -100; NULL: no loss (all skipped) */
};
#define ENCODER_IGNORE_INDEX (-100)

struct encoder;

/* Reads dir/config.json, opens the weights (model.safetensors or shards),
 * checks every tensor the model needs (names, shapes, dtypes) and the spec
 * against the arch, and lays out the delta params. No device memory yet. */
vp_status encoder_open(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                       const struct encoder_options *opt, struct encoder **out);
/* Bytes each pool needs for batch shape (B,T): frozen and trainable for the
 * model, activations and staging for the shape. */
vp_status encoder_plan(const struct encoder *e, int B, int T, uint64_t bytes[VP_POOL_COUNT]);
/* The same plan without weight files (plan.c): from config.json's arch and
 * the spec alone, frozen bytes in `storage` (ENCODER_STORAGE_DEFAULT plans
 * f16, what an F32 or F16 file gets; a BF16 file would get bf16, the same
 * size), for the head arch->head. encoder_plan is this plan for an opened
 * model. The context gives the device's alignment and kernel scratch sizes;
 * nothing is allocated. */
vp_status encoder_plan_arch(vp_context *ctx, const struct model_arch *arch, const struct delta_spec *spec,
                            enum encoder_storage storage, int B, int T, uint64_t bytes[VP_POOL_COUNT]);
/* The activations pool's bytes with or without activation checkpointing,
 * whatever the encoder's own option: of an opened encoder, and from
 * config.json's arch as encoder_plan_arch. */
vp_status encoder_plan_activations(const struct encoder *e, int B, int T, bool checkpoint, uint64_t *bytes);
vp_status encoder_plan_arch_activations(vp_context *ctx, const struct model_arch *arch, const struct delta_spec *spec,
                                        enum encoder_storage storage, int B, int T, bool checkpoint,
                                        uint64_t *bytes);
/* Reserves the whole plan (VP_ERROR_OVER_BUDGET with the numbers when it
 * does not fit, before anything is allocated), uploads the frozen tensors,
 * allocates and initialises the params (model-file values for the head and
 * the bitfit / full tensors) and the activations for (B,T). */
vp_status encoder_load(struct encoder *e, int B, int T);
/* encoder_open + encoder_load. */
vp_status encoder_create(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                         const struct encoder_options *opt, int B, int T, struct encoder **out);
void encoder_destroy(struct encoder *e);
/* Whether an opened model carries a trained head: VP_OK when its weights
 * hold every head tensor (a fine-tuned checkpoint, or a folder 'vkpeft
 * merge' wrote), checked against config.json's num_labels when opened;
 * VP_ERROR_BAD_INPUT naming the folder and the tensors it lacks otherwise
 * (a bare pretrained checkpoint, whose head would start from random
 * values). Between encoder_open and encoder_load (the file is closed
 * after the load: VP_ERROR_INVALID_ARGUMENT). */
vp_status encoder_check_head(const struct encoder *e);

const struct model_arch *encoder_arch(const struct encoder *e);
struct delta_params *encoder_params(struct encoder *e);
enum vp_dtype encoder_weight_dtype(const struct encoder *e);
void encoder_batch_shape(const struct encoder *e, int *B, int *T);

/* Reallocates the activations for a new batch shape (checked against the
 * budget first); recordings are made again at the next run. */
vp_status encoder_set_batch(struct encoder *e, int B, int T);
/* The training step number dropout masks are keyed by; with dropout on, a
 * new step re-records the training pass at the next run. */
void encoder_set_step(struct encoder *e, uint32_t step);

/* Writes a batch into the staging inputs (ids checked against the vocab). */
vp_status encoder_write_batch(struct encoder *e, const struct encoder_batch *batch);
/* Appends a pass to a recording the caller began (and ends and runs): input
 * copies, forward, loss, backward (train), output copies. */
vp_status encoder_record(struct encoder *e, struct vk_recorder *rec, enum encoder_pass pass);
/* Runs a pass on the batch last written, recording it first when needed. */
vp_status encoder_run(struct encoder *e, enum encoder_pass pass);
/* Appends zeroing every gradient; encoder_zero_grads runs it on its own. */
vp_status encoder_record_zero_grads(struct encoder *e, struct vk_recorder *rec);
vp_status encoder_zero_grads(struct encoder *e);

/* The last run's mean loss over labelled rows and their count (either may
 * be NULL), and logits (B,C), MLM head (B·T,V), from staging. */
vp_status encoder_loss(const struct encoder *e, float *loss, uint32_t *count);
vp_status encoder_logits(const struct encoder *e, float *logits);

/* Any tensor by name: the model's (Hugging Face names) and the delta's.
 * Values are converted from the storage type; n must be the tensor's size.
 * Gradients exist for trainable tensors only; frozen tensors cannot be
 * written. */
vp_status encoder_tensor_numel(const struct encoder *e, const char *name, uint64_t *n);
vp_status encoder_tensor_read(const struct encoder *e, const char *name, float *out, size_t n);
vp_status encoder_grad_read(const struct encoder *e, const char *name, float *out, size_t n);
vp_status encoder_tensor_write(struct encoder *e, const char *name, const float *data, size_t n);
/* FNV-1a over the bytes of every frozen piece, in model order. */
vp_status encoder_frozen_hash(const struct encoder *e, uint64_t *hash);

/* ---- the pretrained model's tensors (encoder_load.c) -------------------------------- */

/* One tensor of the pretrained model (head excluded), as the file names it. */
struct encoder_tensor_desc {
    char name[96];
    int ndim;
    int64_t shape[2];
    int layer;   /* encoder layer, or -1 (embeddings, pooler) */
    bool bias;   /* trained by bitfit: a bias or a LayerNorm β */
    bool matrix; /* a weight matrix or embedding table: stored in the storage type */
};
/* The model's tensors in Hugging Face order (the whole-model reference's
 * order): embeddings, layers, BERT's pooler. Writes them to `out` when not
 * NULL; returns the count. */
int encoder_model_tensors(const struct model_arch *arch, struct encoder_tensor_desc *out);
/* The head's tensors (BERT: classifier.weight/bias; RoBERTa:
 * classifier.dense.*, classifier.out_proj.*; with arch->head MLM, BERT
 * cls.predictions.transform.{dense,LayerNorm}.*, cls.predictions.bias,
 * RoBERTa lm_head.{dense,layer_norm}.*, lm_head.bias; the decoder is tied to
 * the word embeddings). At most ENCODER_HEAD_MAX. */
#define ENCODER_HEAD_MAX 5
int encoder_head_tensors(const struct model_arch *arch, struct encoder_tensor_desc *out);

/* ------------------------------------------------------------------------
 * Shared between the encoder's own files (encoder*.c); not for callers.
 * ------------------------------------------------------------------------ */

/* A pretrained tensor as the kernels see it. */
struct enc_weight {
    struct encoder_tensor_desc desc;
    uint64_t n;
    enum vp_dtype dtype;          /* of *buf */
    struct vk_buffer frozen;      /* its frozen-pool piece (owned), or unused when trained */
    const struct vk_buffer *buf;  /* what the kernels read: &frozen or the param's value */
    const struct vk_buffer *grad; /* the param's gradient, NULL when frozen */
    struct delta_param *param;    /* when trained (bitfit / full) */
    const struct io_tensor *file; /* while the file is open */
};

struct enc_layer_weights {
    struct enc_weight *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *ln1_w, *ln1_b;
    struct enc_weight *wup, *bup, *wdown, *bdown, *ln2_w, *ln2_b;
};

/* A head tensor: a param, or the file's values. */
struct enc_head {
    struct delta_param *dense_w, *dense_b; /* RoBERTa classifier.dense; NULL for BERT */
    struct delta_param *cls_w, *cls_b;     /* classifier / classifier.out_proj */
    /* MLM head: transform dense, LayerNorm, decoder bias (the decoder weight
     * is the word embedding table). */
    struct delta_param *mlm_w, *mlm_b, *mlm_ln_w, *mlm_ln_b, *mlm_bias;
};

/* One delta module in one layer. */
struct enc_slot {
    bool active;
    int module, layer;
    int din, dout, rank;
    struct delta_param *down_w, *down_b, *up_w, *up_b, *gate; /* adapter */
    struct delta_param *lora_a, *lora_b;                      /* LoRA */
    struct delta_param *prefix_k, *prefix_v;                  /* plain prefix */
    int prefix_block;  /* reparameterised prefix: this layer's block of the MLP output */
    int prefix_offset; /* first row of this module among the layer's prefix rows */
    /* Where this layer's P_k, P_v rows of the module sit in prefix_src:
     * element offsets of row 0 and the row stride (elements). */
    uint64_t src_k, src_v, src_stride;
};

/* Per slot activations (for the batch shape). */
struct enc_slot_acts {
    struct vk_buffer zh;    /* per head: (H,N,hd) the input split by heads */
    struct vk_buffer hpre;  /* (N,r) or (H,N,r): bottleneck before f; LoRA: x·Aᵀ */
    struct vk_buffer hact;  /* f(hpre) (after adapter dropout), or unused: hpre itself */
    struct vk_buffer dh;    /* per head: (H,N,hd) Δ by heads */
    struct vk_buffer delta; /* (N,d) Δ before composition */
    struct vk_buffer out;   /* (N,d) target + s·Δ */
    bool hact_own;
    const struct vk_buffer *in;     /* what the module read (set while recording) */
    const struct vk_buffer *target; /* what it added to (set while recording) */
};

struct enc_layer_acts {
    struct vk_buffer qh, kh, vh;      /* (B,H,T,hd) */
    struct vk_buffer pk, pv;          /* (H,Lp,hd) the layer's prefix rows, when Lp > 0 */
    struct vk_buffer ids_pk, ids_pv;  /* (Lp·d) int32: gather of pk, pv from prefix_src */
    struct vk_buffer groups_pk, groups_pv; /* their scatter groups */
    struct vk_buffer atth, lse;       /* (B,H,T,hd), (B,H,T) */
    struct vk_buffer ctx;             /* (N,d) merged heads */
    struct vk_buffer o;               /* (N,d) output projection (+LoRA, dropout) */
    struct vk_buffer res1, mean1, rstd1, h; /* (N,d), (N), (N), (N,d) */
    struct vk_buffer upre, u;         /* (N,I) */
    struct vk_buffer dn;              /* (N,d) down projection (+LoRA, dropout) */
    struct vk_buffer res2, mean2, rstd2, out;
    /* Set while recording: the layer input and each site's final buffer. */
    const struct vk_buffer *x, *ctx_final, *o_final, *dn_final;
};

struct enc_reparam_acts {
    struct vk_buffer h0pre, h0, dh0; /* (L,R) */
    uint64_t out_offset;             /* element offset of its output in prefix_src */
};

/* Every activation-pool buffer for one batch shape. */
struct enc_acts {
    int B, T;
    /* Inputs, copied from staging by each run. */
    struct vk_buffer ids, pos, types, keep, labels, groups_word, groups_pos, groups_type;
    /* Constant index tables for the shape: split/merge heads, split/merge
     * by heads for mh-pa, [CLS] rows, ones for per-head biases. */
    struct vk_buffer ids_split, ids_merge, ids_hsplit, ids_hmerge, ids_cls, groups_cls, ones;
    struct vk_buffer emb, emb_mean, emb_rstd, x0; /* (N,d), (N), (N), (N,d) */
    struct vk_buffer proj;                         /* (N,d) q, k, v before the split */
    struct enc_layer_acts *layers;
    struct enc_slot_acts *slots;      /* (spec.count, layers) */
    struct enc_reparam_acts *reparam; /* (spec.count) */
    struct vk_buffer prefix_src, dprefix_src;      /* every prefix's source rows */
    struct vk_buffer cls, pool_pre, pool, logits;  /* (B,d), (B,d), (B,d), (R,C) */
    /* MLM head: dense output, its activation, LayerNorm statistics and output. */
    struct vk_buffer mlm_pre, mlm_act, mlm_mean, mlm_rstd, mlm_h; /* (N,d), (N,d), (N), (N), (N,d) */
    struct vk_buffer loss, ce_lse, ce_scratch;
    /* Backward (shared across layers). */
    struct vk_buffer g_cur, g_next, g_res, g_h, g_tmp, g_ctx, g_q; /* (N,d) */
    struct vk_buffer g_u;                                           /* (N,I) */
    struct vk_buffer g_atth, g_qh, g_kh, g_vh;                      /* (B,H,T,hd) */
    struct vk_buffer g_pk, g_pv, attn_scratch, norm_scratch, gate_scratch;
    struct vk_buffer g_delta, g_dz, g_ddh, g_dzh;                   /* (N,d) */
    struct vk_buffer g_hact;                                        /* (H·N·rmax) */
    struct vk_buffer g_logits, g_pool, g_cls;                       /* (R,C), (B,d), (B,d) */
    /* Staging: inputs (host-written) and outputs (loss words, logits). */
    struct vk_buffer stage_in, stage_out;
    uint64_t in_ids, in_pos, in_types, in_labels, in_keep, in_gword, in_gpos, in_gtype;
    /* Every piece above that was allocated, for freeing. */
    struct model_owned owned;
};

struct encoder {
    vp_context *ctx;
    struct model_arch arch; /* labels not kept */
    struct delta_spec spec;
    struct encoder_options opt;
    char dir[1024];
    struct io_weights *file; /* open from encoder_open until encoder_load is done */
    enum vp_dtype wtype;
    struct enc_weight *weights; /* encoder_model_tensors order */
    int weight_count;
    struct {
        struct enc_weight *word, *pos, *type, *ln_emb_w, *ln_emb_b, *pool_w, *pool_b;
        struct enc_layer_weights *layers;
    } w;
    struct encoder_tensor_desc head_desc[ENCODER_HEAD_MAX];
    const struct io_tensor *head_file[ENCODER_HEAD_MAX];
    int head_count;
    struct enc_head head;
    struct delta_params *params;
    struct enc_slot *slots; /* (spec.count, layers): slot i·layers + l */
    int *prefix_rows;       /* (layers) */
    uint64_t prefix_src_elems;
    bool embeddings_trained; /* some embedding-side tensor has a gradient */
    bool tables_trained;     /* word / position / type tables have gradients (full) */
    int rank_max;            /* widest bottleneck or rank, per head multiplied by H */
    bool loaded;
    struct enc_acts acts;
    struct vk_recorder *rec[ENCODER_PASS_COUNT];
    bool recorded[ENCODER_PASS_COUNT];
    uint32_t recorded_step[ENCODER_PASS_COUNT];
    struct vk_recorder *zero_rec;
    bool zero_recorded;
    uint32_t step;
};

static inline struct enc_slot *enc_slot_at(struct encoder *e, int module, int layer) {
    return &e->slots[(size_t)module * e->arch.layers + layer];
}
static inline struct enc_slot_acts *enc_slot_acts_at(struct encoder *e, int module, int layer) {
    return &e->acts.slots[(size_t)module * e->arch.layers + layer];
}

/* Loss rows and classes: (B, num_labels) for the classifier, (B·T, vocab)
 * for the MLM head. */
static inline void enc_loss_shape(const struct encoder *e, int B, int T, uint32_t *rows, uint32_t *classes) {
    const bool mlm = e->arch.head == MODEL_HEAD_MLM;
    *rows = (uint32_t)(mlm ? B * T : B);
    *classes = (uint32_t)(mlm ? e->arch.vocab_size : e->arch.num_labels);
}

/* encoder.c: host setup from arch and spec (params, slots, tensor list). */
vp_status enc_setup(struct encoder *e);
/* encoder_load.c */
vp_status enc_weights_init(struct encoder *e);
vp_status enc_open_weights(struct encoder *e);
vp_status enc_upload_frozen(struct encoder *e);
vp_status enc_load_params(struct encoder *e);
uint64_t enc_frozen_bytes(const struct encoder *e);
void enc_free_weights(struct encoder *e);
/* encoder.c: sizes (plan) or allocates (alloc) every activation buffer. */
vp_status enc_acts_layout(struct encoder *e, struct enc_acts *a, int B, int T, bool alloc,
                          uint64_t bytes[VP_POOL_COUNT]);
/* encoder_forward.c / encoder_backward.c */
vp_status enc_record_forward(struct encoder *e, struct vk_recorder *rec, bool train);
/* Layer l's forward from its input (x0 or layer l-1's out). */
vp_status enc_record_layer(struct encoder *e, struct vk_recorder *rec, int l, bool train);
vp_status enc_record_backward(struct encoder *e, struct vk_recorder *rec);
/* Dropout probability of a site when training with dropout on, else 0. */
double enc_dropout_p(const struct encoder *e, bool train, double p);
/* The Philox stream of a dropout site: layer −1 for embeddings and head. */
uint32_t enc_dropout_stream(int layer, int site);
enum { ENC_SITE_EMB = 0, ENC_SITE_ATTN_PROBS, ENC_SITE_ATTN_OUT, ENC_SITE_FFN_OUT,
       ENC_SITE_HEAD_CLS, ENC_SITE_HEAD_POOL, ENC_SITE_FFN_ACT /* BART's activation_dropout */,
       ENC_SITE_ADAPTER = 16 };
/* A view of `len` bytes at `offset` (aligned) of a piece. */
struct vk_buffer enc_view(const struct vk_buffer *buf, uint64_t offset, uint64_t len);

#endif
