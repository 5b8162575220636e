/* GPU kernels: one C wrapper per shader family. Each wrapper records its
 * dispatches into a recorder, declaring what it reads and writes. Tensor
 * arguments carry a shape comment; outputs come first. */
#ifndef VKPEFT_KERNELS_H
#define VKPEFT_KERNELS_H

#include "vk.h"

/* Storage types of tensors in device memory. Arithmetic is always fp32:
 * f16 and bf16 values are read as packed 32-bit words and unpacked in the
 * shader (unpackHalf2x16, or a shift for bf16), so no 16-bit storage feature
 * is needed; where the limits allow 16-bit storage a kernel may use it. */
enum vp_dtype { VP_DTYPE_F32 = 0, VP_DTYPE_F16, VP_DTYPE_BF16 };

static inline size_t vp_dtype_size(enum vp_dtype t) { return t == VP_DTYPE_F32 ? 4 : 2; }
const char *vp_dtype_name(enum vp_dtype t);

/* y = a*x + b elementwise over n fp32 values. y and x may be the same piece.
 * Buffers longer than the binding range are processed in ranges that fit. */
vp_status kernel_scale_add(vp_context *ctx, struct vk_recorder *rec,
                           const struct vk_buffer *y, /* (n) fp32 */
                           const struct vk_buffer *x, /* (n) fp32 */
                           uint64_t n, float a, float b);

/* Workgroup size for 1-D elementwise kernels under the context's limits. */
uint32_t kernel_elementwise_workgroup(const vp_context *ctx);

/* Splits `groups` workgroups into a 2-D grid the device accepts. */
void kernel_grid_1d(const vp_context *ctx, uint64_t groups, uint32_t *gx, uint32_t *gy);

/* ---- matmul (matmul.c) -------------------------------------------------------------
 * The linear layer with Hugging Face weights W (N,K) = [out, in] stored f32,
 * f16 or bf16 (fp32 arithmetic), its gradients, and a strided-batched GEMM
 * (f32) for attention. Tensors start on the pool alignment; X, Y, dX, dY and
 * W, dW, b longer than one binding range are bound in row ranges (a split
 * reduction adds its chunks in a fixed order); one row must fit a range. */

/* TEXEL: register blocks read through uniform texel buffers, op(B) shared
 * by subgroup shuffles (CPU devices: lavapipe turns storage and shared
 * memory accesses into per-lane loops). TILED: shared-memory tiles sized to
 * the limits (GPUs). AUTO picks TEXEL on CPU devices that have subgroup
 * shuffles, else TILED. */
enum kernel_matmul_variant {
    KERNEL_MATMUL_AUTO = 0,
    KERNEL_MATMUL_TEXEL,
    KERNEL_MATMUL_TILED,
};
const char *kernel_matmul_variant_name(enum kernel_matmul_variant v);
/* The variant `forced` resolves to on this context (AUTO: the device's). */
enum kernel_matmul_variant kernel_matmul_choose(const vp_context *ctx,
                                                enum kernel_matmul_variant forced);

/* The TILED variant's workgroup tile: C tiles of bm x bn, bk-deep slices
 * of the reduction, tm x tn of C per invocation ((bm/tm)·(bn/tn)
 * invocations). All zero: chosen per GEMM shape (matmul.c, tiled_auto). */
struct kernel_matmul_tiles {
    uint32_t bm, bn, bk, tm, tn;
};

/* Zero means default; NULL is all defaults. */
struct kernel_matmul_opts {
    enum kernel_matmul_variant variant; /* force a variant (tests, benchmarks) */
    /* Force the TILED variant's tiles (tests); else VKPEFT_MATMUL_TILES,
     * else chosen per shape. */
    struct kernel_matmul_tiles tiles;
};

/* The tiles the TILED variant uses for a GEMM C (M,N) × batch under opts
 * (the forced ones, VKPEFT_MATMUL_TILES="BMxBNxBKxTMxTN", or the per-shape
 * choice). For the linear layer, forward is (M, N), dX is (M, K) and dW is
 * (N, K). Fails with a message when the forced tiles are malformed or do not
 * fit the device's limits. */
vp_status kernel_matmul_tiles_choose(const vp_context *ctx, const struct kernel_matmul_opts *opts,
                                     uint32_t M, uint32_t N, uint32_t batch,
                                     struct kernel_matmul_tiles *out);
/* "128x128x8x8x8" into buf. */
void kernel_matmul_tiles_name(const struct kernel_matmul_tiles *t, char *buf, size_t size);

/* Y = X·Wᵀ + b: y[m,n] = Σ_k x[m,k]·w[n,k] + b[n]. */
vp_status kernel_matmul_forward(vp_context *ctx, struct vk_recorder *rec,
                                const struct vk_buffer *y, /* (M,N) f32 */
                                const struct vk_buffer *x, /* (M,K) f32 */
                                const struct vk_buffer *w, /* (N,K) wtype */
                                enum vp_dtype wtype,
                                const struct vk_buffer *b, /* (N) f32, or NULL: no bias */
                                uint32_t M, uint32_t K, uint32_t N,
                                const struct kernel_matmul_opts *opts);

/* dX = dY·W (overwrite); dW += dYᵀ·X; db += Σ_m dY[m,:] (accumulate; dW and
 * db in one pass). Any of dx, dw, db may be NULL; x may be NULL without dw,
 * w without dx. dW is f32 whatever wtype is. */
vp_status kernel_matmul_backward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *dx, /* (M,K) f32, or NULL */
                                 const struct vk_buffer *dw, /* (N,K) f32, or NULL */
                                 const struct vk_buffer *db, /* (N) f32, or NULL */
                                 const struct vk_buffer *dy, /* (M,N) f32 */
                                 const struct vk_buffer *x,  /* (M,K) f32 */
                                 const struct vk_buffer *w,  /* (N,K) wtype */
                                 enum vp_dtype wtype, uint32_t M, uint32_t K, uint32_t N,
                                 const struct kernel_matmul_opts *opts);

/* One operand of a batched matmul: matrix i starts at element
 * offset + i·stride of buf (stride 0: one matrix for every batch). */
struct kernel_matrix {
    const struct vk_buffer *buf;
    uint64_t offset; /* elements */
    uint64_t stride; /* elements */
};

/* C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i] for i < batch, f32, as
 * ref_matmul_batched: op(A[i]) is (M,K), stored (K,M) when trans_a; op(B[i])
 * is (K,N), stored (N,K) when trans_b; matrices packed row-major. beta = 0
 * does not read C. c.stride = 0 sums the batches into one C in batch order
 * (one dispatch per batch); other C strides must not overlap. Its backward
 * is itself with transposes flipped and beta = 1. */
vp_status kernel_matmul_batched(vp_context *ctx, struct vk_recorder *rec,
                                struct kernel_matrix c, /* batch × (M,N) */
                                struct kernel_matrix a, /* batch × (M,K), or (K,M) if trans_a */
                                struct kernel_matrix b, /* batch × (K,N), or (N,K) if trans_b */
                                uint32_t batch, uint32_t M, uint32_t N, uint32_t K,
                                bool trans_a, bool trans_b, float alpha, float beta,
                                const struct kernel_matmul_opts *opts);

/* ---- attention, cross-entropy, optimisers ----------------------------------------
 * (attention.c, cross_entropy.c, optimizer.c) */

/* A binding of bytes [begin, end) of `buf` for a tensor that may start at any
 * 4-byte offset: the bound range starts at the binding alignment at or below
 * `begin` (it may reach below the piece; the extra bytes are never touched
 * and only widen the declared access), and `base` is the number of 32-bit
 * words from the bound start to `begin`, which the shader adds to its
 * indices. Bind with {&span.view, 0, span.view.size, access}; end - begin plus
 * the alignment must not exceed the binding range. */
struct kernel_span {
    struct vk_buffer view;
    uint32_t base;
};
static inline void kernel_span_init(const vp_context *ctx, const struct vk_buffer *buf,
                                    VkDeviceSize begin, VkDeviceSize end, struct kernel_span *s) {
    VkDeviceSize at = buf->offset + begin, align = ctx->binding_alignment;
    s->view = *buf;
    s->view.host = NULL;
    s->view.offset = at - at % align;
    s->view.size = buf->offset + end - s->view.offset;
    s->base = (uint32_t)((at % align) / 4);
}

/* Attention kernels: TILED stages keys/values (or queries) in shared-memory
 * tiles (GPUs); TEXEL reads through uniform texel buffers and shares each row
 * between the lanes of a subgroup with subgroup shuffles (lavapipe, where
 * texel fetches are vector gathers but buffer and shared-memory loads in
 * loops are per-lane scalar loops; needs subgroup shuffles). AUTO picks
 * TEXEL on CPU devices that allow it, else TILED. */
enum kernel_attention_variant {
    KERNEL_ATTENTION_AUTO = 0,
    KERNEL_ATTENTION_TEXEL,
    KERNEL_ATTENTION_TILED,
};
const char *kernel_attention_variant_name(enum kernel_attention_variant v);

/* ref_attention_config's twin: scaled dot-product attention per (b, h) with
 * L prefix keys/values (shared across the batch) before the S keys, a key
 * padding mask, a causal mask aligned to the end (key s is visible to query t
 * iff s <= t + S - T; prefixes always are) and dropout on the probabilities
 * (element index = flat index into P (B,H,T,L+S)). Only fp32 tensors. The
 * dropout step is a push constant: re-record when it changes. */
struct kernel_attention_config {
    uint32_t B, H, T, S, L, D; /* D <= 256 */
    bool causal;
    float scale;          /* score = scale * q.k; 0 selects 1/sqrt(D) */
    double dropout_p;     /* 0 = off */
    uint64_t dropout_seed;
    uint32_t dropout_step, dropout_stream;
    enum kernel_attention_variant variant; /* AUTO: from the device */
};

/* The variant AUTO resolves to on this context. */
enum kernel_attention_variant kernel_attention_choose(const vp_context *ctx,
                                                      const struct kernel_attention_config *cfg);

/* Flash-style forward: never stores the (T, L+S) probabilities; keeps the
 * per-row log-sum-exp for the backward (+Inf for a row that sees nothing,
 * whose output is 0). Every tensor must start on the binding alignment (pool
 * pieces do); tensors longer than the binding range are processed in groups
 * of heads. keep holds B*S bytes (1 = key visible) in a piece of at least
 * B*S rounded up to 4 bytes. */
vp_status kernel_attention_forward(vp_context *ctx, struct vk_recorder *rec,
                                   const struct vk_buffer *o,        /* (B,H,T,D) fp32 */
                                   const struct vk_buffer *lse,      /* (B,H,T) fp32 */
                                   const struct vk_buffer *q,        /* (B,H,T,D) fp32 */
                                   const struct vk_buffer *k,        /* (B,H,S,D) fp32 */
                                   const struct vk_buffer *v,        /* (B,H,S,D) fp32 */
                                   const struct vk_buffer *prefix_k, /* (H,L,D) fp32 or NULL if L=0 */
                                   const struct vk_buffer *prefix_v, /* (H,L,D) fp32 or NULL if L=0 */
                                   const struct vk_buffer *keep,     /* (B,S) bytes or NULL */
                                   const struct kernel_attention_config *cfg);

/* Scratch the backward needs (delta rows and per-batch prefix partials). */
uint64_t kernel_attention_scratch_bytes(const vp_context *ctx,
                                        const struct kernel_attention_config *cfg);

/* With P = exp(score - lse) recomputed, m the dropout multiplier,
 * delta = rowsum(dO ⊙ O) (= Σ_j P dP):
 *   dv_all = (m⊙P)ᵀ·dO,  dS = P ⊙ (m ⊙ dO·v_allᵀ − delta),
 *   dq = scale·dS·k_all,  dk_all = scale·dSᵀ·q.
 * dq, dk, dv (required) are overwritten; dprefix_k, dprefix_v accumulate
 * (+=) the sum over the batch, in batch order (deterministic, no atomics);
 * pass both or neither (NULL: not wanted). Two dispatches per group of
 * heads (a query pass, then a key pass), plus one for the prefix sum. */
vp_status kernel_attention_backward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *dq,        /* (B,H,T,D) fp32 */
                                    const struct vk_buffer *dk,        /* (B,H,S,D) fp32 */
                                    const struct vk_buffer *dv,        /* (B,H,S,D) fp32 */
                                    const struct vk_buffer *dprefix_k, /* (H,L,D) fp32 or NULL */
                                    const struct vk_buffer *dprefix_v, /* (H,L,D) fp32 or NULL */
                                    const struct vk_buffer *scratch,   /* scratch_bytes */
                                    const struct vk_buffer *dout,      /* (B,H,T,D) fp32 */
                                    const struct vk_buffer *o,         /* (B,H,T,D) fp32 */
                                    const struct vk_buffer *lse,       /* (B,H,T) fp32 */
                                    const struct vk_buffer *q,         /* (B,H,T,D) fp32 */
                                    const struct vk_buffer *k,         /* (B,H,S,D) fp32 */
                                    const struct vk_buffer *v,         /* (B,H,S,D) fp32 */
                                    const struct vk_buffer *prefix_k,  /* (H,L,D) or NULL */
                                    const struct vk_buffer *prefix_v,  /* (H,L,D) or NULL */
                                    const struct vk_buffer *keep,      /* (B,S) bytes or NULL */
                                    const struct kernel_attention_config *cfg);

/* torch.nn.functional.cross_entropy(reduction='mean', ignore_index,
 * label_smoothing) on fp32 logits (N,V) and int32 targets (ref.h's
 * ref_cross_entropy_*). Targets must be ignore_index or in [0, V). */
struct kernel_cross_entropy_config {
    uint32_t N, V;
    int32_t ignore_index;
    float label_smoothing; /* ε in [0, 1] */
};

/* Scratch bytes kernel_cross_entropy_forward needs. */
uint64_t kernel_cross_entropy_scratch_bytes(const vp_context *ctx,
                                            const struct kernel_cross_entropy_config *cfg);

/* loss receives two 32-bit words: the mean loss over the rows whose target
 * is not ignore_index (fp32; 0 when there are none) and their count
 * (uint32), both computed on the device; lse the per-row log-sum-exp the
 * backward reads; row_losses (may be NULL) each row's loss (0 if ignored).
 * Two dispatches when the logits fit one binding range; longer logits take
 * more for the first pass (rows longer than a range are split in chunks). */
vp_status kernel_cross_entropy_forward(vp_context *ctx, struct vk_recorder *rec,
                                       const struct vk_buffer *loss,       /* (2) words */
                                       const struct vk_buffer *lse,        /* (N) fp32 */
                                       const struct vk_buffer *row_losses, /* (N) fp32 or NULL */
                                       const struct vk_buffer *scratch,    /* scratch_bytes */
                                       const struct vk_buffer *logits,     /* (N,V) fp32 */
                                       const struct vk_buffer *targets,    /* (N) int32 */
                                       const struct kernel_cross_entropy_config *cfg);

/* With p = softmax(logits[n,:]) = exp(z − lse[n]) and count from `loss`:
 *   dlogits[n,v] = dloss/count · (p_v − (1−ε)·[v = y_n] − ε/V),
 * 0 for ignored rows (overwrite). dlogits may be the logits piece itself
 * (in place). dloss is a push constant (re-record to change it). */
vp_status kernel_cross_entropy_backward(vp_context *ctx, struct vk_recorder *rec,
                                        const struct vk_buffer *dlogits, /* (N,V) fp32 */
                                        const struct vk_buffer *logits,  /* (N,V) fp32 */
                                        const struct vk_buffer *targets, /* (N) int32 */
                                        const struct vk_buffer *lse,     /* (N) from forward */
                                        const struct vk_buffer *loss,    /* (2) from forward */
                                        float dloss,
                                        const struct kernel_cross_entropy_config *cfg);

/* One fp32 tensor an optimiser updates, as views (pool pieces or ranges of
 * one; any 4-byte offset). Consecutive tensors whose param, grad, m (and v)
 * views are each laid end to end in one VkBuffer, with the same decay flag,
 * are updated by one dispatch: lay out parameters by decay flag, llm.c style,
 * and a whole step is a handful of dispatches. Tensors longer than a binding
 * range are processed in ranges. */
struct kernel_opt_tensor {
    const struct vk_buffer *param; /* (n) fp32, updated */
    const struct vk_buffer *grad;  /* (n) fp32 */
    const struct vk_buffer *m;     /* (n) AdamW first moment / SGD momentum buffer (or NULL) */
    const struct vk_buffer *v;     /* (n) AdamW second moment; unused by SGD */
    uint64_t n;
    bool decay; /* weight decay applies (biases and norms usually not) */
};

/* The AdamW hyperparameter buffer (48 bytes, read by adamw.comp). The host
 * fills it with kernel_adamw_hparams_set and writes it before each run, so
 * a recorded step replays with a new lr and step; everything that depends on
 * the step is computed here in double, as PyTorch computes it in Python. */
struct kernel_adamw_hparams {
    float lr, beta1, beta2, eps, weight_decay;
    float decay_factor;          /* 1 − lr·wd */
    float step_size;             /* lr / (1 − β1^t) */
    float bias_correction2_sqrt; /* sqrt(1 − β2^t) */
    float one_minus_beta1, one_minus_beta2;
    uint32_t step, pad;
};
void kernel_adamw_hparams_set(struct kernel_adamw_hparams *hp, double lr, double beta1,
                              double beta2, double eps, double weight_decay, uint32_t step);

/* The SGD hyperparameter buffer (16 bytes, read by sgd.comp). */
struct kernel_sgd_hparams {
    float lr, momentum, weight_decay;
    uint32_t step; /* counted from 1; step 1 initialises the momentum buffer */
};

/* One AdamW step over every tensor (ref_adamw_step). clip, when not NULL, is
 * kernel_grad_norm's output: gradients are multiplied by its coefficient as
 * they are read (they stay unclipped in memory), and when its norm is not
 * finite the step writes nothing (a skipped step). */
vp_status kernel_adamw_step(vp_context *ctx, struct vk_recorder *rec,
                            const struct kernel_opt_tensor *tensors, uint32_t count,
                            const struct vk_buffer *hparams, /* struct kernel_adamw_hparams */
                            const struct vk_buffer *clip);   /* (2) fp32 or NULL */

/* One SGD-with-momentum step (ref_sgd_step); m may be NULL when momentum is
 * 0 (a tensor without a buffer never uses momentum). */
vp_status kernel_sgd_step(vp_context *ctx, struct vk_recorder *rec,
                          const struct kernel_opt_tensor *tensors, uint32_t count,
                          const struct vk_buffer *hparams, /* struct kernel_sgd_hparams */
                          const struct vk_buffer *clip);   /* (2) fp32 or NULL */

/* Scratch bytes kernel_grad_norm needs for these tensors. */
uint64_t kernel_grad_norm_scratch_bytes(const vp_context *ctx,
                                        const struct kernel_opt_tensor *tensors, uint32_t count);

/* out = { sqrt(Σ grad²) over every tensor's grad, min(1, max_norm/(norm + 1e-6)) }
 * (fp32), a deterministic two-pass reduction (partials per workgroup, then
 * one workgroup adds them in order). max_norm is a push constant. */
vp_status kernel_grad_norm(vp_context *ctx, struct vk_recorder *rec,
                           const struct vk_buffer *out,     /* (2) fp32: norm, clip coefficient */
                           const struct vk_buffer *scratch, /* grad_norm_scratch_bytes */
                           const struct kernel_opt_tensor *tensors, uint32_t count,
                           float max_norm);

/* clip_grad_norm_'s in-place scaling: grad *= coefficient from `clip`. */
vp_status kernel_clip_grads(vp_context *ctx, struct vk_recorder *rec,
                            const struct kernel_opt_tensor *tensors, uint32_t count,
                            const struct vk_buffer *clip); /* (2) fp32 from kernel_grad_norm */

/* ---- pointwise, normalisation, embedding ------------------------------------------
 * (elementwise.c, activation.c, norm.c, softmax.c, embedding.c, rope.c, dropout.c,
 * convert.c). Activations and gradients are fp32; weights that may be frozen
 * (norm weights, embedding tables) may be stored f32, f16 or bf16. Tensors
 * longer than the binding range are split across dispatches: elementwise ops
 * at any length; row-wise ops (norms, softmax, RoPE, embedding rows) need one
 * row of every tensor to fit a binding range, and the small side tensors
 * (norm weights, ids, masks, the RoPE table, embedding groups and the
 * embedding backward's dout) to fit one whole. Every tensor starts on the
 * binding alignment (pool pieces do). 16-bit tensors are read as 32-bit words: a piece holding an odd
 * number of them must be allocated with its size rounded up to 4 bytes. */

/* Helpers the wrappers of this section share (elementwise.c). */

/* Rows per dispatch for an op over `rows` rows whose tensors hold
 * row_bytes[i] bytes per row (0: that tensor is not split): every dispatch's
 * bindings fit the binding range and start aligned, and the count is a
 * multiple of `multiple` (0 or 1: any). Returns `rows` when one dispatch
 * covers everything, 0 when not even one aligned step of rows fits. */
uint64_t kernel_rows_per_dispatch(const vp_context *ctx, uint64_t rows, const uint64_t *row_bytes,
                                  uint32_t count, uint64_t multiple);
/* The binding of rows [r0, r0 + rows) of a tensor with row_bytes per row,
 * its size rounded up to whole 32-bit words (packed 16-bit tensors). */
struct vk_bind kernel_bind_rows(const struct vk_buffer *buf, uint64_t row_bytes, uint64_t r0,
                                uint64_t rows, enum vk_access access);
/* Fails naming `op` and `what` unless buf is set and holds `bytes` rounded
 * up to 4 (and, when whole_binding, fits one binding range). */
vp_status kernel_check_tensor(const vp_context *ctx, const struct vk_buffer *buf, uint64_t bytes,
                              bool whole_binding, const char *op, const char *what);
/* vk_pipeline_get for a kernel whose workgroup width is spec constant 0. */
vp_status kernel_pipeline(vp_context *ctx, const char *shader, const char *defines,
                          uint32_t bindings, uint32_t push_size, uint32_t workgroup,
                          struct vk_pipeline **out);

/* Row-wise kernels (norms, softmax) come in two variants: WORKGROUP gives
 * each row a workgroup that reduces in shared memory (GPUs); SERIAL gives
 * each row one invocation with a plain loop (lavapipe, where barriers are
 * emulated and scalar loops vectorise across rows). AUTO: SERIAL on CPU
 * devices, else WORKGROUP. Each variant sums in a fixed order, so results
 * are bit-reproducible for a given device, variant and shape. */
enum kernel_rows_variant {
    KERNEL_ROWS_AUTO = 0,
    KERNEL_ROWS_WORKGROUP,
    KERNEL_ROWS_SERIAL,
};
enum kernel_rows_variant kernel_rows_choose(const vp_context *ctx, enum kernel_rows_variant v);
const char *kernel_rows_variant_name(enum kernel_rows_variant v);

/* Residual add y = a + b, and y = a + s·b (scaled parallel adapters). y may
 * be a or b. */
vp_status kernel_add_forward(vp_context *ctx, struct vk_recorder *rec,
                             const struct vk_buffer *y, /* (n) fp32 */
                             const struct vk_buffer *a, /* (n) fp32 */
                             const struct vk_buffer *b, /* (n) fp32 */
                             uint64_t n);
vp_status kernel_add_scaled_forward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *y, /* (n) fp32 */
                                    const struct vk_buffer *a, /* (n) fp32 */
                                    const struct vk_buffer *b, /* (n) fp32 */
                                    float s, uint64_t n);
/* da = dy, db = dy (copies; either may be NULL). For y = a + s·b use
 * kernel_scale_backward for db. */
vp_status kernel_add_backward(vp_context *ctx, struct vk_recorder *rec,
                              const struct vk_buffer *da, /* (n) fp32 or NULL */
                              const struct vk_buffer *db, /* (n) fp32 or NULL */
                              const struct vk_buffer *dy, /* (n) fp32 */
                              uint64_t n);

/* Constant scale y = s·x; its backward dx = s·dy (overwrite). */
vp_status kernel_scale_forward(vp_context *ctx, struct vk_recorder *rec,
                               const struct vk_buffer *y, /* (n) fp32 */
                               const struct vk_buffer *x, /* (n) fp32 */
                               float s, uint64_t n);
vp_status kernel_scale_backward(vp_context *ctx, struct vk_recorder *rec,
                                const struct vk_buffer *dx, /* (n) fp32 */
                                const struct vk_buffer *dy, /* (n) fp32 */
                                float s, uint64_t n);

/* Learned sigmoid gate: y = h + σ(g) ⊙ d with G = 1 (one scalar) or G = C
 * gate values broadcast over rows. */
vp_status kernel_sigmoid_gate_forward(vp_context *ctx, struct vk_recorder *rec,
                                      const struct vk_buffer *y, /* (N,C) fp32 */
                                      const struct vk_buffer *h, /* (N,C) fp32 */
                                      const struct vk_buffer *d, /* (N,C) fp32 */
                                      const struct vk_buffer *g, /* (G) fp32 */
                                      uint32_t N, uint32_t C, uint32_t G);
/* Bytes of scratch kernel_sigmoid_gate_backward needs for dg. */
uint64_t kernel_sigmoid_gate_scratch_bytes(uint32_t N, uint32_t C);
/* dh = dy, dd = σ(g) ⊙ dy (overwrite; either may be NULL);
 * dg += σ(g)(1 − σ(g)) · Σ dy ⊙ d over rows (and channels when G = 1), in
 * two passes: per-block column partials into scratch, then a fixed-order sum
 * (dg may be NULL, and then scratch too). */
vp_status kernel_sigmoid_gate_backward(vp_context *ctx, struct vk_recorder *rec,
                                       const struct vk_buffer *dh,      /* (N,C) fp32 or NULL */
                                       const struct vk_buffer *dd,      /* (N,C) fp32 or NULL */
                                       const struct vk_buffer *dg,      /* (G) fp32 or NULL */
                                       const struct vk_buffer *scratch, /* scratch_bytes or NULL */
                                       const struct vk_buffer *dy,      /* (N,C) fp32 */
                                       const struct vk_buffer *d,       /* (N,C) fp32 */
                                       const struct vk_buffer *g,       /* (G) fp32 */
                                       uint32_t N, uint32_t C, uint32_t G);

/* Pointwise activations (activation.c). KERNEL_ACT_ERF (y = erf(x)) exposes
 * the shader's erf to tests; the models use the others. */
enum kernel_activation {
    KERNEL_ACT_GELU = 0,  /* x·Φ(x), exact (erf) form */
    KERNEL_ACT_GELU_TANH, /* 0.5·x·(1 + tanh(√(2/π)(x + 0.044715·x³))) */
    KERNEL_ACT_RELU,
    KERNEL_ACT_SILU,
    KERNEL_ACT_TANH,
    KERNEL_ACT_ERF,
};
const char *kernel_activation_name(enum kernel_activation act);
/* y = act(x); y may be x. */
vp_status kernel_activation_forward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *y, /* (n) fp32 */
                                    const struct vk_buffer *x, /* (n) fp32 */
                                    uint64_t n, enum kernel_activation act);
/* dx = dy ⊙ act'(x) (overwrite); dx may be dy. */
vp_status kernel_activation_backward(vp_context *ctx, struct vk_recorder *rec,
                                     const struct vk_buffer *dx, /* (n) fp32 */
                                     const struct vk_buffer *dy, /* (n) fp32 */
                                     const struct vk_buffer *x,  /* (n) fp32 */
                                     uint64_t n, enum kernel_activation act);
/* SwiGLU: y = silu(gate) ⊙ up. */
vp_status kernel_swiglu_forward(vp_context *ctx, struct vk_recorder *rec,
                                const struct vk_buffer *y,    /* (n) fp32 */
                                const struct vk_buffer *gate, /* (n) fp32 */
                                const struct vk_buffer *up,   /* (n) fp32 */
                                uint64_t n);
/* dgate = dy ⊙ up ⊙ silu'(gate), dup = dy ⊙ silu(gate) (both overwrite). */
vp_status kernel_swiglu_backward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *dgate, /* (n) fp32 */
                                 const struct vk_buffer *dup,   /* (n) fp32 */
                                 const struct vk_buffer *dy,    /* (n) fp32 */
                                 const struct vk_buffer *gate,  /* (n) fp32 */
                                 const struct vk_buffer *up,    /* (n) fp32 */
                                 uint64_t n);

/* LayerNorm over the last dimension (norm.c), biased variance, two-pass
 * mean/variance in fp32: y = (x − μ)·rstd·γ + β; saves μ and rstd. */
vp_status kernel_layernorm_forward(vp_context *ctx, struct vk_recorder *rec,
                                   const struct vk_buffer *y,     /* (N,C) fp32 */
                                   const struct vk_buffer *mean,  /* (N) fp32 */
                                   const struct vk_buffer *rstd,  /* (N) fp32 */
                                   const struct vk_buffer *x,     /* (N,C) fp32 */
                                   const struct vk_buffer *gamma, /* (C) wtype */
                                   const struct vk_buffer *beta,  /* (C) wtype or NULL */
                                   uint32_t N, uint32_t C, float eps, enum vp_dtype wtype,
                                   enum kernel_rows_variant variant);
/* Bytes of scratch the norm backwards need for parameter gradients. */
uint64_t kernel_norm_scratch_bytes(uint32_t N, uint32_t C);
/* x̂ = (x − μ)·rstd, g = dy ⊙ γ:
 * dx = rstd·(g − mean_c(g) − x̂·mean_c(g ⊙ x̂)) (overwrite);
 * dγ += Σ_n dy ⊙ x̂, dβ += Σ_n dy: per-block partials into scratch, then a
 * fixed-order sum (no atomics). dgamma, dbeta may be NULL; scratch may be
 * NULL when both are. */
vp_status kernel_layernorm_backward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *dx,      /* (N,C) fp32 */
                                    const struct vk_buffer *dgamma,  /* (C) fp32 or NULL */
                                    const struct vk_buffer *dbeta,   /* (C) fp32 or NULL */
                                    const struct vk_buffer *scratch, /* scratch_bytes or NULL */
                                    const struct vk_buffer *dy,      /* (N,C) fp32 */
                                    const struct vk_buffer *x,       /* (N,C) fp32 */
                                    const struct vk_buffer *mean,    /* (N) fp32 */
                                    const struct vk_buffer *rstd,    /* (N) fp32 */
                                    const struct vk_buffer *gamma,   /* (C) wtype */
                                    uint32_t N, uint32_t C, enum vp_dtype wtype,
                                    enum kernel_rows_variant variant);
/* RMSNorm (LLaMA): rstd = 1/sqrt(mean(x²) + eps), y = x·rstd·w; saves rstd. */
vp_status kernel_rmsnorm_forward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *y,    /* (N,C) fp32 */
                                 const struct vk_buffer *rstd, /* (N) fp32 */
                                 const struct vk_buffer *x,    /* (N,C) fp32 */
                                 const struct vk_buffer *w,    /* (C) wtype */
                                 uint32_t N, uint32_t C, float eps, enum vp_dtype wtype,
                                 enum kernel_rows_variant variant);
/* x̂ = x·rstd, g = dy ⊙ w: dx = rstd·(g − x̂·mean_c(g ⊙ x̂)) (overwrite);
 * dw += Σ_n dy ⊙ x̂ in two passes through scratch (dw, scratch may be NULL). */
vp_status kernel_rmsnorm_backward(vp_context *ctx, struct vk_recorder *rec,
                                  const struct vk_buffer *dx,      /* (N,C) fp32 */
                                  const struct vk_buffer *dw,      /* (C) fp32 or NULL */
                                  const struct vk_buffer *scratch, /* scratch_bytes or NULL */
                                  const struct vk_buffer *dy,      /* (N,C) fp32 */
                                  const struct vk_buffer *x,       /* (N,C) fp32 */
                                  const struct vk_buffer *rstd,    /* (N) fp32 */
                                  const struct vk_buffer *w,       /* (C) wtype */
                                  uint32_t N, uint32_t C, enum vp_dtype wtype,
                                  enum kernel_rows_variant variant);

/* Softmax masks, ref_softmax_mask's twin: an entry is visible when the key
 * keep mask (byte (r / keep_rows, c) != 0) and the causal mask (c ≤ r mod
 * causal_T + causal_offset, when causal_T > 0) both allow it. */
struct kernel_softmax_mask {
    const struct vk_buffer *keep; /* (R/keep_rows, C) bytes or NULL */
    uint32_t keep_rows;
    uint32_t causal_T;            /* 0: no causal mask */
    int32_t causal_offset;
};
/* y[r,:] = softmax of the visible x[r,:], masked entries 0; a row with
 * nothing visible is all zeros (softmax.c). mask may be NULL. */
vp_status kernel_softmax_forward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *y, /* (R,C) fp32 */
                                 const struct vk_buffer *x, /* (R,C) fp32 */
                                 const struct kernel_softmax_mask *mask, uint32_t R, uint32_t C,
                                 enum kernel_rows_variant variant);
/* dx = y ⊙ (dy − Σ_c y ⊙ dy) (overwrite; masked entries have y = 0). */
vp_status kernel_softmax_backward(vp_context *ctx, struct vk_recorder *rec,
                                  const struct vk_buffer *dx, /* (R,C) fp32 */
                                  const struct vk_buffer *dy, /* (R,C) fp32 */
                                  const struct vk_buffer *y,  /* (R,C) fp32 */
                                  uint32_t R, uint32_t C, enum kernel_rows_variant variant);

/* Embedding gather (embedding.c): out[n,:] = table[ids[n],:], or
 * out[n,:] += table[ids[n],:] when accumulate (adding position embeddings
 * to token embeddings). An id outside [0, V) gives a zero row (accumulate:
 * adds nothing). Tables longer than the binding range are gathered range by
 * range. */
vp_status kernel_embedding_forward(vp_context *ctx, struct vk_recorder *rec,
                                   const struct vk_buffer *out,   /* (N,C) fp32 */
                                   const struct vk_buffer *ids,   /* (N) int32 */
                                   const struct vk_buffer *table, /* (V,C) ttype */
                                   uint32_t N, uint32_t V, uint32_t C, enum vp_dtype ttype,
                                   bool accumulate);
/* The token ids of a batch grouped by id, built on the host for the
 * deterministic backward: 32-bit words
 *   [0]                 U, the number of distinct ids
 *   [1 .. N+1]          offsets: group u is positions[offsets[u] .. offsets[u+1])
 *   [N+2 .. 2N+1]       ids[u], increasing
 *   [2N+2 .. 3N+1]      positions n, grouped by id, increasing within a group
 * Its size depends only on N, so a recording can be replayed with a new
 * batch's groups. Fails on an id outside [0, V). */
static inline uint64_t kernel_embedding_groups_words(uint32_t N) { return 3ull * N + 2; }
vp_status kernel_embedding_groups_build(uint32_t *words, /* (3N+2) */
                                        const int32_t *ids, /* (N) */
                                        uint32_t N, uint32_t V);
/* dtable[id,:] += Σ dout[n,:] over the positions n holding id, added to the
 * row one by one in increasing n, as the reference does: one invocation per
 * (id, channel), no atomics. dout must fit one binding range. */
vp_status kernel_embedding_backward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *dtable, /* (V,C) fp32, accumulated */
                                    const struct vk_buffer *dout,   /* (N,C) fp32 */
                                    const struct vk_buffer *groups, /* (3N+2) uint32 */
                                    uint32_t N, uint32_t V, uint32_t C);
/* Position ids on the host, to gather learned position embeddings with
 * kernel_embedding_forward: offset + t (GPT-2, BART with offset 2), and
 * RoBERTa's (cumsum of non-pad tokens + past_length)·mask + pad. */
void kernel_positions_offset(int32_t *pos, /* (B,T) */
                             uint32_t B, uint32_t T, int32_t offset);
void kernel_positions_roberta(int32_t *pos,       /* (B,T) */
                              const int32_t *ids, /* (B,T) */
                              uint32_t B, uint32_t T, int32_t pad_token_id, int32_t past_length);

/* Rotary embeddings, Hugging Face rotate_half form (rope.c). Angles come from
 * a table built once on the host in double precision: GLSL's sin and cos are
 * only specified to 2^-11 absolute error on [-π, π], and an fp32 angle p·f
 * loses |p·f|·2^-24 before they even see it. Row p of the table is
 * [cos(p·f_i) for i < D/2 | sin(p·f_i) for i < D/2], f_i = θ^(−2i/D). */
void kernel_rope_table(float *table, /* (P,D) */
                       uint32_t P, uint32_t D, double theta);
/* y = x·cos + rotate_half(x)·sin with position p_t = (pos ? pos[t] : t) +
 * offset for row t of every (b, h); p_t must be in [0, P) (rows with a
 * position outside are written as NaN). y may be x. */
vp_status kernel_rope_forward(vp_context *ctx, struct vk_recorder *rec,
                              const struct vk_buffer *y,     /* (BH,T,D) fp32 */
                              const struct vk_buffer *x,     /* (BH,T,D) fp32 */
                              const struct vk_buffer *table, /* (P,D) fp32 */
                              const struct vk_buffer *pos,   /* (T) int32 or NULL */
                              uint32_t BH, uint32_t T, uint32_t D, uint32_t P, int32_t offset);
/* The rotation is orthogonal: dx is dy rotated back,
 * dx1 = dy1·cos + dy2·sin, dx2 = dy2·cos − dy1·sin (overwrite; dx may be dy). */
vp_status kernel_rope_backward(vp_context *ctx, struct vk_recorder *rec,
                               const struct vk_buffer *dx,    /* (BH,T,D) fp32 */
                               const struct vk_buffer *dy,    /* (BH,T,D) fp32 */
                               const struct vk_buffer *table, /* (P,D) fp32 */
                               const struct vk_buffer *pos,   /* (T) int32 or NULL */
                               uint32_t BH, uint32_t T, uint32_t D, uint32_t P, int32_t offset);

/* Dropout from Philox4x32-10 (dropout.c), bit-identical to ref_dropout_*:
 * element i (the flat index) is kept iff the top 24 bits of Philox word 0
 * for counter (i lo, i hi, step, stream) and key (seed lo, seed hi) are ≥
 * kernel_dropout_threshold(p); kept elements are scaled by 1/(1 − p). */
struct kernel_dropout_key {
    uint64_t seed;
    uint32_t step;   /* training step: a fresh mask each step */
    uint32_t stream; /* dropout site */
};
uint32_t kernel_dropout_threshold(double p); /* ceil(p·2^24), 0 ≤ p ≤ 1 */
/* y = x ⊙ mask/(1 − p); y may be x. */
vp_status kernel_dropout_forward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *y, /* (n) fp32 */
                                 const struct vk_buffer *x, /* (n) fp32 */
                                 uint64_t n, const struct kernel_dropout_key *key, double p);
/* dx = dy ⊙ mask/(1 − p), the forward's mask (overwrite; dx may be dy). */
vp_status kernel_dropout_backward(vp_context *ctx, struct vk_recorder *rec,
                                  const struct vk_buffer *dx, /* (n) fp32 */
                                  const struct vk_buffer *dy, /* (n) fp32 */
                                  uint64_t n, const struct kernel_dropout_key *key, double p);

/* Storage conversion on the GPU (convert.c): f32 → f16/bf16 with
 * round-to-nearest-even and f16/bf16 → f32, bit-identical to vp_f32_to_f16
 * and friends (NaN kept quiet, overflow to Inf, subnormals exact). One side
 * must be f32. */
vp_status kernel_convert(vp_context *ctx, struct vk_recorder *rec,
                         const struct vk_buffer *dst, /* (n) dst_type */
                         const struct vk_buffer *src, /* (n) src_type */
                         uint64_t n, enum vp_dtype dst_type, enum vp_dtype src_type);

#endif
