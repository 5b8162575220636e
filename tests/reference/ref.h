/* Plain-C reference implementations of every vkpeft op, forward and backward.
 *
 * These are the ground truth that every GPU kernel is tested against and that
 * the whole-model reference is assembled from, so they favour being obviously
 * right over being fast: straight loops, double precision throughout, a fixed
 * order of accumulation (results are bit-for-bit reproducible), no global
 * state, no allocation except short-lived scratch rows.
 *
 * Conventions (llm.c style):
 *  - Every tensor is `double *`, row-major and contiguous unless a stride
 *    argument says otherwise. Callers convert float data to double.
 *  - Shapes are written beside each argument, e.g. `// (M,K)`; they name the
 *    dimension arguments of the same function.
 *  - Arguments come in the order: outputs, inputs, weights, dimensions, then
 *    options.
 *  - Backward functions OVERWRITE the gradients of activations (inputs) and
 *    ACCUMULATE (+=) into the gradients of parameters, as PyTorch accumulates
 *    into .grad. Each backward says which is which; a gradient pointer that
 *    may be NULL (not wanted) says so.
 *  - The math of every backward is written in one comment above it, with
 *    dy meaning dL/dy for a scalar loss L.
 *  - Definitions follow PyTorch and Hugging Face transformers exactly, so a
 *    model's reference output can be compared with theirs.
 *  - Preconditions (valid ids, 0 <= p <= 1, ...) are checked with assert(). */
#ifndef VKPEFT_TESTS_REFERENCE_REF_H
#define VKPEFT_TESTS_REFERENCE_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------
 * Matmul (matmul.c)
 * ------------------------------------------------------------------------ */

/* Linear layer with Hugging Face weight layout [out, in]:
 * Y = X·Wᵀ + b, i.e. y[m,n] = Σ_k x[m,k]·w[n,k] + b[n]. */
void ref_matmul_forward(double *y,       // (M,N)
                        const double *x, // (M,K)
                        const double *w, // (N,K)
                        const double *b, // (N) or NULL: no bias
                        int M, int K, int N);

/* dX = dY·W (overwrite); dW += dYᵀ·X; db += Σ_m dY[m,:].
 * Any of dx, dw, db may be NULL when that gradient is not wanted. */
void ref_matmul_backward(double *dx,       // (M,K) or NULL
                         double *dw,       // (N,K) or NULL
                         double *db,       // (N) or NULL
                         const double *dy, // (M,N)
                         const double *x,  // (M,K)
                         const double *w,  // (N,K)
                         int M, int K, int N);

/* Strided batched GEMM, BLAS semantics:
 *   C[i] = alpha · op(A[i]) · op(B[i]) + beta · C[i],   i in [0, batch)
 * where op(A[i]) is (M,K) and op(B[i]) is (K,N). Matrix i of each operand
 * starts at base + i·stride; each matrix is packed row-major as stored, i.e.
 * A[i] is (M,K), or (K,M) when trans_a; B[i] is (K,N), or (N,K) when trans_b.
 *
 * beta == 0 overwrites C without reading it (garbage or NaN there is
 * ignored). A stride of 0 broadcasts an operand across the batch; stride_c = 0
 * with beta = 1 sums every batch's product into one matrix, in batch order.
 *
 * Its backward is itself: for C = A·B, dA = dC·Bᵀ and dB = Aᵀ·dC, which are
 * this function with transposes flipped (beta = 1 to accumulate). */
void ref_matmul_batched(double *c,       // batch × (M,N), matrix i at c + i·stride_c
                        const double *a, // batch × (M,K), or (K,M) if trans_a
                        const double *b, // batch × (K,N), or (N,K) if trans_b
                        int batch, int M, int N, int K,
                        bool trans_a, bool trans_b,
                        size_t stride_a, size_t stride_b, size_t stride_c,
                        double alpha, double beta);

/* ------------------------------------------------------------------------
 * Normalisation (norm.c)
 * ------------------------------------------------------------------------ */

/* torch.nn.LayerNorm over the last dimension, biased variance:
 * μ = mean(x), σ² = mean((x-μ)²), rstd = 1/sqrt(σ² + eps),
 * y = (x-μ)·rstd·γ + β. Writes mean and rstd for the backward when non-NULL. */
void ref_layernorm_forward(double *y,           // (N,C)
                           double *mean,        // (N) or NULL
                           double *rstd,        // (N) or NULL
                           const double *x,     // (N,C)
                           const double *gamma, // (C)
                           const double *beta,  // (C) or NULL: no bias
                           int N, int C, double eps);

/* x̂ = (x-μ)·rstd, g = dy ⊙ γ:
 * dx = rstd·(g − mean_c(g) − x̂·mean_c(g ⊙ x̂)) (overwrite);
 * dγ += Σ_n dy ⊙ x̂; dβ += Σ_n dy. dgamma, dbeta may be NULL. */
void ref_layernorm_backward(double *dx,          // (N,C)
                            double *dgamma,      // (C) or NULL
                            double *dbeta,       // (C) or NULL
                            const double *dy,    // (N,C)
                            const double *x,     // (N,C)
                            const double *mean,  // (N) from the forward
                            const double *rstd,  // (N) from the forward
                            const double *gamma, // (C)
                            int N, int C);

/* LLaMA RMSNorm: rstd = 1/sqrt(mean(x²) + eps), y = x·rstd·w. */
void ref_rmsnorm_forward(double *y,       // (N,C)
                         double *rstd,    // (N) or NULL
                         const double *x, // (N,C)
                         const double *w, // (C)
                         int N, int C, double eps);

/* x̂ = x·rstd, g = dy ⊙ w:
 * dx = rstd·(g − x̂·mean_c(g ⊙ x̂)) (overwrite); dw += Σ_n dy ⊙ x̂ (dw may be NULL). */
void ref_rmsnorm_backward(double *dx,         // (N,C)
                          double *dw,         // (C) or NULL
                          const double *dy,   // (N,C)
                          const double *x,    // (N,C)
                          const double *rstd, // (N) from the forward
                          const double *w,    // (C)
                          int N, int C);

/* ------------------------------------------------------------------------
 * Softmax (softmax.c)
 * ------------------------------------------------------------------------ */

/* Which entries of an (R,C) softmax input are visible. An entry is visible
 * when both masks allow it; invisible entries get probability exactly 0.
 *
 * Padding (key keep) mask: `keep` holds R/keep_rows rows of C bytes; row r of
 * the input uses keep row r / keep_rows (1 = visible, 0 = masked). For
 * attention scores (B,H,T,S) with a padding mask (B,S), keep_rows = H·T.
 *
 * Causal mask: when causal_T > 0 the rows form consecutive blocks of causal_T
 * rows, and row r, at t = r mod causal_T within its block, sees column c only
 * if c ≤ t + causal_offset (causal_offset = S − T aligns queries with the end
 * of the keys, as when decoding after a cache). */
struct ref_softmax_mask {
    const uint8_t *keep; // (R/keep_rows, C) or NULL: no padding mask
    int keep_rows;       // consecutive input rows sharing one keep row
    int causal_T;        // 0: no causal mask
    int causal_offset;
};

/* y[r,:] = softmax(x[r,:]) over the visible columns of row r; mask may be NULL.
 * A row with no visible column is all zeros (PyTorch would give NaN; zeros
 * keep padded query rows harmless). */
void ref_softmax_forward(double *y,       // (R,C)
                         const double *x, // (R,C)
                         const struct ref_softmax_mask *mask,
                         int R, int C);

/* dx = y ⊙ (dy − Σ_c y ⊙ dy) per row (overwrite). Masked entries have y = 0,
 * so their gradient is 0; no mask is needed. */
void ref_softmax_backward(double *dx,       // (R,C)
                          const double *dy, // (R,C)
                          const double *y,  // (R,C) from the forward
                          int R, int C);

/* ------------------------------------------------------------------------
 * Dropout and its counter-based generator (dropout.c)
 * ------------------------------------------------------------------------ */

/* Everything that selects a dropout mask besides the element index. The
 * Philox key is (seed low 32, seed high 32); the counter is
 * (index low 32, index high 32, step, stream). */
struct ref_dropout_key {
    uint64_t seed;   // per-run seed
    uint32_t step;   // training step, so each step draws a fresh mask
    uint32_t stream; // dropout site (layer and op), so sites are independent
};

/* 32×32 → 64-bit product as (hi, lo) using only 32-bit arithmetic, the
 * operation GLSL's umulExtended provides. */
void ref_mulhilo32(uint32_t *hi, uint32_t *lo, uint32_t a, uint32_t b);

/* Philox4x32-10 (Salmon et al., SC'11, "Parallel random numbers: as easy as
 * 1, 2, 3"), bit-identical to Random123's philox4x32(10 rounds). */
void ref_philox4x32_10(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]);

/* u = (word 0 of Philox(counter, key) >> 8) · 2^-24, uniform in [0, 1). */
double ref_dropout_uniform(const struct ref_dropout_key *key, uint64_t index);

/* ceil(p · 2^24): an element is kept iff (word 0 >> 8) ≥ this threshold,
 * which is exactly u ≥ p. Shaders receive this integer rather than p, so the
 * keep decision never depends on float rounding of p. */
uint32_t ref_dropout_threshold(double p);

/* 1/(1−p) if element `index` is kept, else 0. p = 1 drops everything. */
double ref_dropout_multiplier(const struct ref_dropout_key *key, double p, uint64_t index);

/* y[i] = x[i] · multiplier(i): element index i is the flat position. */
void ref_dropout_forward(double *y,       // (n)
                         const double *x, // (n)
                         const struct ref_dropout_key *key, double p, size_t n);

/* dx[i] = dy[i] · multiplier(i), the same mask as the forward (overwrite). */
void ref_dropout_backward(double *dx,       // (n)
                          const double *dy, // (n)
                          const struct ref_dropout_key *key, double p, size_t n);

/* ------------------------------------------------------------------------
 * Attention (attention.c)
 * ------------------------------------------------------------------------ */

struct ref_attention_config {
    int B, H;   // batch, heads
    int T;      // queries per sequence
    int S;      // keys per sequence
    int L;      // prefix keys (prefix-tuning), shared across the batch; 0 = none
    int D;      // head dimension
    bool causal; // query t sees key s only if s ≤ t + (S − T); prefixes always
    double scale;     // score = scale·q·k; 0 selects 1/sqrt(D)
    double dropout_p; // dropout on the probabilities; 0 = off
    struct ref_dropout_key dropout;
};

/* Scaled dot-product attention per (b, h), with the L prefix keys logically
 * before the S keys (column j < L is prefix j, column L + s is key s):
 *   score[t,j] = scale · q[t] · k_all[j]
 *   P[t,:]     = softmax over the visible columns (masked entries exactly 0):
 *                prefix columns are always visible; key s is visible iff
 *                keep[b,s] != 0 (keep may be NULL) and, if causal,
 *                s ≤ t + (S − T). A row with nothing visible is all zeros.
 *   O[t]       = Σ_j P̃[t,j] · v_all[j],  P̃ = dropout(P) with element index
 *                ((b·H + h)·T + t)·(L+S) + j, i.e. the flat index into P.
 * probs, when non-NULL, receives P before dropout; ref_dropout_forward on it
 * with the same key and p reproduces P̃. */
void ref_attention_forward(double *o,              // (B,H,T,D)
                           double *probs,          // (B,H,T,L+S) or NULL
                           const double *q,        // (B,H,T,D)
                           const double *k,        // (B,H,S,D)
                           const double *v,        // (B,H,S,D)
                           const double *prefix_k, // (H,L,D) or NULL when L = 0
                           const double *prefix_v, // (H,L,D) or NULL when L = 0
                           const uint8_t *keep,    // (B,S) or NULL: all keys kept
                           const struct ref_attention_config *cfg);

/* Recomputes P and the dropout mask m (0 or 1/(1−p)) from the inputs, then
 *   dP̃ = dO·v_allᵀ,  dv_all = P̃ᵀ·dO,  dP = dP̃ ⊙ m,
 *   dS = P ⊙ (dP − Σ_j P ⊙ dP),  dq = scale·dS·k_all,  dk_all = scale·dSᵀ·q.
 * dq, dk, dv are overwritten; dprefix_k, dprefix_v accumulate (+=) the sum
 * over the batch. Any gradient pointer may be NULL. */
void ref_attention_backward(double *dq,              // (B,H,T,D) or NULL
                            double *dk,              // (B,H,S,D) or NULL
                            double *dv,              // (B,H,S,D) or NULL
                            double *dprefix_k,       // (H,L,D) or NULL
                            double *dprefix_v,       // (H,L,D) or NULL
                            const double *dout,      // (B,H,T,D)
                            const double *q,         // (B,H,T,D)
                            const double *k,         // (B,H,S,D)
                            const double *v,         // (B,H,S,D)
                            const double *prefix_k,  // (H,L,D) or NULL when L = 0
                            const double *prefix_v,  // (H,L,D) or NULL when L = 0
                            const uint8_t *keep,     // (B,S) or NULL
                            const struct ref_attention_config *cfg);

/* ------------------------------------------------------------------------
 * Activations (activation.c). Elementwise over n = N·C values; every
 * backward overwrites dx and takes the forward's input x.
 * ------------------------------------------------------------------------ */

/* GELU, exact (erf) form: y = x·Φ(x) = 0.5·x·(1 + erf(x/√2)). */
void ref_gelu_forward(double *y,       // (n)
                      const double *x, // (n)
                      size_t n);
/* dx = dy·(Φ(x) + x·φ(x)), φ the standard normal density. */
void ref_gelu_backward(double *dx,       // (n)
                       const double *dy, // (n)
                       const double *x,  // (n)
                       size_t n);

/* GELU, tanh approximation ("gelu_new", approximate='tanh'):
 * y = 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³). */
void ref_gelu_tanh_forward(double *y,       // (n)
                           const double *x, // (n)
                           size_t n);
/* dx = dy·(0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²)). */
void ref_gelu_tanh_backward(double *dx,       // (n)
                            const double *dy, // (n)
                            const double *x,  // (n)
                            size_t n);

/* y = max(x, 0). */
void ref_relu_forward(double *y,       // (n)
                      const double *x, // (n)
                      size_t n);
/* dx = dy if x > 0 else 0 (derivative 0 at x = 0, as PyTorch). */
void ref_relu_backward(double *dx,       // (n)
                       const double *dy, // (n)
                       const double *x,  // (n)
                       size_t n);

/* SiLU / swish: y = x·σ(x). */
void ref_silu_forward(double *y,       // (n)
                      const double *x, // (n)
                      size_t n);
/* dx = dy·σ(x)·(1 + x·(1 − σ(x))). */
void ref_silu_backward(double *dx,       // (n)
                       const double *dy, // (n)
                       const double *x,  // (n)
                       size_t n);

/* y = tanh(x). */
void ref_tanh_forward(double *y,       // (n)
                      const double *x, // (n)
                      size_t n);
/* dx = dy·(1 − tanh² x). */
void ref_tanh_backward(double *dx,       // (n)
                       const double *dy, // (n)
                       const double *x,  // (n)
                       size_t n);

/* SwiGLU (LLaMA MLP): y = silu(gate) ⊙ up. */
void ref_swiglu_forward(double *y,          // (n)
                        const double *gate, // (n)
                        const double *up,   // (n)
                        size_t n);
/* dgate = dy ⊙ up ⊙ silu'(gate); dup = dy ⊙ silu(gate) (both overwrite). */
void ref_swiglu_backward(double *dgate,      // (n)
                         double *dup,        // (n)
                         const double *dy,   // (n)
                         const double *gate, // (n)
                         const double *up,   // (n)
                         size_t n);

/* ------------------------------------------------------------------------
 * Elementwise (elementwise.c)
 * ------------------------------------------------------------------------ */

/* Residual add: y = a + b. */
void ref_add_forward(double *y,       // (n)
                     const double *a, // (n)
                     const double *b, // (n)
                     size_t n);
/* da = dy, db = dy (overwrite; either may be NULL). */
void ref_add_backward(double *da,       // (n) or NULL
                      double *db,       // (n) or NULL
                      const double *dy, // (n)
                      size_t n);

/* Constant scale: y = s·x (s is not learned). */
void ref_scale_forward(double *y,       // (n)
                       const double *x, // (n)
                       double s, size_t n);
/* dx = s·dy (overwrite). */
void ref_scale_backward(double *dx,       // (n)
                        const double *dy, // (n)
                        double s, size_t n);

/* Learned sigmoid gate for gated composition: y = h + σ(g) ⊙ d, where g has
 * G = 1 value (one scalar gate) or G = C values (one per channel, broadcast
 * over rows). */
void ref_sigmoid_gate_forward(double *y,       // (N,C)
                              const double *h, // (N,C)
                              const double *d, // (N,C)
                              const double *g, // (G), G = 1 or C
                              int N, int C, int G);
/* dh = dy, dd = σ(g) ⊙ dy (overwrite; either may be NULL);
 * dg += Σ σ(g)(1 − σ(g)) · dy ⊙ d, summed over rows (and channels if G = 1). */
void ref_sigmoid_gate_backward(double *dh,       // (N,C) or NULL
                               double *dd,       // (N,C) or NULL
                               double *dg,       // (G) or NULL
                               const double *dy, // (N,C)
                               const double *d,  // (N,C)
                               const double *g,  // (G)
                               int N, int C, int G);

/* ------------------------------------------------------------------------
 * Embedding and positions (embedding.c)
 * ------------------------------------------------------------------------ */

/* Gather: out[n,:] = table[ids[n],:], 0 ≤ ids[n] < V. */
void ref_embedding_forward(double *out,          // (N,C)
                           const int32_t *ids,   // (N)
                           const double *table,  // (V,C)
                           int N, int V, int C);

/* Scatter-add: dtable[ids[n],:] += dout[n,:], in increasing n, so repeated ids
 * sum in a fixed order (deterministic; a GPU version must match this order
 * or be compared with a tolerance). */
void ref_embedding_backward(double *dtable,      // (V,C), accumulated
                            const double *dout,  // (N,C)
                            const int32_t *ids,  // (N)
                            int N, int V, int C);

/* Learned absolute positions with an offset: pos[b,t] = offset + t
 * (BART: offset = 2 + cache length; GPT-2: offset = cache length). */
void ref_positions_offset(int32_t *pos, // (B,T)
                          int B, int T, int offset);

/* RoBERTa's create_position_ids_from_input_ids: with m = (ids != pad),
 * pos = (cumsum_t(m) + past_length) · m + pad, so real tokens count from
 * pad + 1 + past_length and padding tokens get pad. */
void ref_positions_roberta(int32_t *pos,       // (B,T)
                           const int32_t *ids, // (B,T)
                           int B, int T, int pad_token_id, int past_length);

/* ------------------------------------------------------------------------
 * Rotary position embedding (rope.c), Hugging Face LLaMA rotate_half form
 * ------------------------------------------------------------------------ */

/* inv_freq[i] = θ^(−2i/D) for i < D/2 (D even). */
void ref_rope_inv_freq(double *inv_freq, // (D/2)
                       int D, double theta);

/* Position of row t is p_t = (pos ? pos[t] : t) + offset; angle_i = p_t·inv_freq[i]
 * and cos/sin of it are used for both halves, so with x = [x1, x2]:
 *   y = x·cos + rotate_half(x)·sin,  rotate_half(x) = [−x2, x1],
 * i.e. y1 = x1·cos − x2·sin, y2 = x2·cos + x1·sin. */
void ref_rope_forward(double *y,            // (B,H,T,D)
                      const double *x,      // (B,H,T,D)
                      const int32_t *pos,   // (T) or NULL: positions t
                      int B, int H, int T, int D, int offset, double theta);

/* The rotation is orthogonal, so dx is dy rotated by the opposite angle:
 * dx1 = dy1·cos + dy2·sin, dx2 = dy2·cos − dy1·sin (overwrite). */
void ref_rope_backward(double *dx,          // (B,H,T,D)
                       const double *dy,    // (B,H,T,D)
                       const int32_t *pos,  // (T) or NULL
                       int B, int H, int T, int D, int offset, double theta);

/* ------------------------------------------------------------------------
 * Cross-entropy fused with log-softmax (cross_entropy.c)
 * ------------------------------------------------------------------------ */

/* torch.nn.functional.cross_entropy(reduction='mean', ignore_index,
 * label_smoothing=ε). With log p = log_softmax(logits[n,:]):
 *   loss_n = (1−ε)·(−log p_y) − (ε/V)·Σ_v log p_v   for y = targets[n],
 * rows with targets[n] == ignore_index contribute nothing, and the result is
 * Σ loss_n / (number of non-ignored rows). If every row is ignored the result
 * is 0 (PyTorch returns NaN; 0 keeps an all-padding micro-batch harmless).
 * row_losses, when non-NULL, receives loss_n (0 for ignored rows). */
double ref_cross_entropy_forward(double *row_losses,     // (N) or NULL
                                 const double *logits,   // (N,V)
                                 const int32_t *targets, // (N)
                                 int N, int V, int ignore_index, double label_smoothing);

/* With count the number of non-ignored rows and p = softmax(logits[n,:]):
 *   dlogits[n,v] = dloss/count · (p_v − (1−ε)·[v = y] − ε/V),
 * and 0 for ignored rows (overwrite; all 0 when count = 0). */
void ref_cross_entropy_backward(double *dlogits,        // (N,V)
                                double dloss,           // dL/d(mean loss), usually 1
                                const double *logits,   // (N,V)
                                const int32_t *targets, // (N)
                                int N, int V, int ignore_index, double label_smoothing);

/* ------------------------------------------------------------------------
 * Optimisers (optimizer.c), torch.optim semantics
 * ------------------------------------------------------------------------ */

struct ref_adamw_hparams {
    double lr, beta1, beta2, eps, weight_decay;
};

/* One torch.optim.AdamW step (amsgrad off), step t counted from 1:
 *   p ← p·(1 − lr·wd)          only if decay (tensors such as biases and
 *                               norms are usually excluded)
 *   m ← β1·m + (1−β1)·g
 *   v ← β2·v + (1−β2)·g²
 *   p ← p − (lr/(1−β1^t)) · m / (sqrt(v)/sqrt(1−β2^t) + eps)
 * m and v start at 0 before step 1. */
void ref_adamw_step(double *param,      // (n), updated
                    double *m,          // (n), updated
                    double *v,          // (n), updated
                    const double *grad, // (n)
                    size_t n, int t, const struct ref_adamw_hparams *hp, bool decay);

struct ref_sgd_hparams {
    double lr, momentum, weight_decay;
};

/* One torch.optim.SGD step (dampening 0, nesterov off):
 *   d ← g + wd·p               weight decay only if decay
 *   buf ← d at t = 1, else momentum·buf + d   (only if momentum ≠ 0)
 *   p ← p − lr·(momentum ≠ 0 ? buf : d)
 * momentum_buf may be NULL when momentum is 0. */
void ref_sgd_step(double *param,        // (n), updated
                  double *momentum_buf, // (n), updated, or NULL
                  const double *grad,   // (n)
                  size_t n, int t, const struct ref_sgd_hparams *hp, bool decay);

/* sqrt(Σ_i Σ_j grads[i][j]²) over `count` tensors of sizes[i] values each,
 * summed in order. */
double ref_grad_norm(const double *const *grads, const size_t *sizes, int count);

/* torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)). */
double ref_clip_coef(double norm, double max_norm);

/* clip_grad_norm_: scales every gradient by ref_clip_coef(norm, max_norm) and
 * returns the norm before clipping. */
double ref_clip_grad_norm(double *const *grads, const size_t *sizes, int count, double max_norm);

/* ------------------------------------------------------------------------
 * Storage conversions (convert.c): round-to-nearest-even, integer bit
 * manipulation only. NaN stays NaN (quiet, sign and top payload bits kept),
 * overflow becomes ±Inf, subnormals are produced and read exactly.
 * ------------------------------------------------------------------------ */

uint16_t ref_f32_to_f16(float x);
float ref_f16_to_f32(uint16_t h);
uint16_t ref_f32_to_bf16(float x);
float ref_bf16_to_f32(uint16_t h);

/* y = the value x takes when a GPU computing in fp32 stores it as fp16 (or
 * bf16): x is rounded to float first, then to the 16-bit format. */
void ref_round_f16(double *y,       // (n)
                   const double *x, // (n)
                   size_t n);
void ref_round_bf16(double *y,       // (n)
                    const double *x, // (n)
                    size_t n);

#endif
