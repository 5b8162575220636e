/* The trainable tensors of a delta on a model: every delta module's tensors,
 * the classification head, and the model tensors BitFit and full fine-tuning
 * train, each with a gradient and AdamW moments, all fp32 in the trainable
 * pool.
 *
 *     struct delta_params *p;
 *     delta_params_create(ctx, &arch, &spec, seed, &p);   // host only: names, shapes, layout
 *     uint64_t bytes = delta_params_plan_bytes(p);        // for the memory plan
 *     delta_params_alloc(p);                              // device memory + contract init
 *     delta_params_write(p, "encoder.layers.0.delta0.lora_A", values, n);
 *     struct kernel_opt_tensor list[...];
 *     uint32_t n = delta_params_opt_tensors(p, list, max); // for kernel_adamw_step
 *     delta_params_destroy(p);
 *
 * Names follow runtime/model/README.md and tests/reference/model.h:
 *   encoder.layers.{l}.delta{i}.down.weight (r,d) .down.bias (r) .up.weight (d,r)
 *   .up.bias (d) [.gate (1)]; per head (mh-pa) (H,r,hd) (H,r) (H,hd,r) (H,hd);
 *   encoder.layers.{l}.delta{i}.lora_A (r,in) .lora_B (out,r);
 *   encoder.layers.{l}.delta{i}.prefix_k / .prefix_v (L,d) (no reparameterisation);
 *   delta{i}.reparam.embedding (L,d) .0.weight (R,d) .0.bias (R) .2.weight (nl·2d,R)
 *   .2.bias (nl·2d);
 * Hugging Face names for the head (classifier.*) and for the model tensors
 * BitFit / full train (bert.encoder.layer.0.attention.self.query.bias, ...).
 *
 * Storage (who owns what): the params own four pieces of the trainable pool
 * ("arenas"): values, gradients, first and second moments, laid out alike;
 * every tensor is a view at the same aligned offset in each. Tensors with
 * weight decay come first, then those without, so consecutive tensors whose
 * sizes are multiples of the pool alignment are end to end and an optimiser
 * step merges them into one dispatch (kernel_opt_tensor). A tensor is
 * (s0, s1) row-major in the arenas, except a transposed one (GPT-2's Conv1D
 * weights), held (s1, s0) as the decoder multiplies it; delta_params_save
 * and _load convert, so saved deltas hold every tensor as its shape says.
 *
 * Initialisation (the contract, PAPER.md): Philox4x32-10 keyed by the run
 * seed, one stream per tensor numbered as the whole-model reference numbers
 * them (frozen model tensors first, then the head, then the delta modules in
 * spec order), counter = element index, so a tensor's initial values equal
 * the reference's for the same seed. The head starts as Hugging Face starts
 * a new classifier (weights N(0, 0.02), biases 0, the MLM head's LayerNorm γ 1) until the model file's
 * values replace it; BitFit / full model tensors start at 0 until the model
 * loader writes them. */
#ifndef VKPEFT_DELTA_PARAMS_H
#define VKPEFT_DELTA_PARAMS_H

#include "kernels.h"
#include "spec.h"
#include "tensors.h"
#include "vk.h"

enum delta_param_role {
    DELTA_PARAM_DELTA = 0, /* a delta module's tensor */
    DELTA_PARAM_HEAD,      /* the classification head (always trained) */
    DELTA_PARAM_MODEL,     /* a pretrained model tensor trained by bitfit / full */
};

/* What a delta module's tensor is (DELTA_PARAM_DELTA only). */
enum delta_param_part {
    DELTA_PART_NONE = 0,
    DELTA_PART_DOWN_W, DELTA_PART_DOWN_B, DELTA_PART_UP_W, DELTA_PART_UP_B, DELTA_PART_GATE,
    DELTA_PART_LORA_A, DELTA_PART_LORA_B,
    DELTA_PART_PREFIX_K, DELTA_PART_PREFIX_V,
    DELTA_PART_REPARAM_EMB, DELTA_PART_REPARAM_W0, DELTA_PART_REPARAM_B0, DELTA_PART_REPARAM_W2,
    DELTA_PART_REPARAM_B2,
};

enum { DELTA_ARENA_VALUE = 0, DELTA_ARENA_GRAD, DELTA_ARENA_M, DELTA_ARENA_V, DELTA_ARENA_COUNT };

struct delta_param {
    char name[DELTA_NAME_MAX];
    int ndim;
    int64_t shape[3];
    uint64_t n;                 /* elements */
    enum delta_param_role role;
    enum delta_param_part part;
    int module, layer;          /* delta tensors: spec module, encoder layer (-1: reparam) */
    bool decay;                 /* weight decay applies (not biases, LayerNorm, gates) */
    bool transposed;            /* the arenas hold this (s0, s1) tensor as its transpose, (s1, s0)
                                 * row-major: GPT-2's Conv1D weights, [in, out] in Hugging Face's
                                 * file, which the decoder multiplies as (out, in) */
    uint32_t stream;            /* Philox stream of its initial values */
    VkDeviceSize offset;        /* bytes from the start of every arena */
    /* Views into the arenas (valid after delta_params_alloc): fp32 (n). */
    struct vk_buffer value, grad, m, v;
};

struct delta_params {
    vp_context *ctx;
    struct model_arch arch; /* copy; labels not kept */
    struct delta_spec spec;
    uint64_t seed;
    struct delta_param *items; /* creation (= stream) order */
    int count;
    VkDeviceSize arena_bytes;  /* bytes of each arena */
    bool allocated;
    struct vk_buffer arena[DELTA_ARENA_COUNT]; /* owned pieces of the trainable pool */
};

/* Lists every trainable tensor of `spec` on `arch` and lays out the arenas
 * for ctx's pool alignment (host only: no device memory yet). Fails with
 * VP_ERROR_BAD_INPUT for a spec that does not fit the arch. */
vp_status delta_params_create(vp_context *ctx, const struct model_arch *arch,
                              const struct delta_spec *spec, uint64_t seed,
                              struct delta_params **out);
/* Decoder-only models (arch stack MODEL_STACK_DECODER) have no head; their
 * delta tensors are named decoder.layers.{l}.delta{i}.* and their prefixes
 * live in K/V head space, (L, kv_heads·head_dim). These give the layer
 * name prefix ("encoder.layers" / "decoder.layers") and the prefix width. */
const char *delta_params_layers_name(const struct model_arch *arch);
int delta_params_prefix_width(const struct model_arch *arch);
/* The place-th (from 0) place module m occupies, in the order its tensors
 * and a reparameterised prefix's (P_k, P_v) blocks take: its layer, and in
 * *root the tensor names' root (delta_params_layers_name's; encoder-decoder
 * models: encoder.layers, decoder.layers, cross.layers for encoder,
 * decoder self-attention and cross-attention blocks, in that order). -1
 * past the last. */
int delta_params_place(const struct model_arch *arch, const struct delta_module *m, int place, const char **root);
/* Appends a pretrained model tensor bitfit / full train (role
 * DELTA_PARAM_MODEL, Hugging Face name and shape, decay for matrices;
 * transposed: a matrix the arenas hold as its transpose, delta_param) and
 * lays the arenas out again; before delta_params_alloc only. */
vp_status delta_params_add_model(struct delta_params *p, const char *name, int ndim, const int64_t shape[2],
                                 bool transposed);
/* Frees the arenas (when allocated) and the list. NULL is fine. */
void delta_params_destroy(struct delta_params *p);

/* Bytes the trainable pool needs: the four arenas, each rounded up to the
 * pool alignment (what vp_pool_stats.in_use will count). */
uint64_t delta_params_plan_bytes(const struct delta_params *p);

/* Allocates the arenas (reserve the plan first), writes every tensor's
 * initial values and zeroes the gradients and moments. */
vp_status delta_params_alloc(struct delta_params *p);

/* Frees the arenas (the list stays; delta_params_alloc may run again). */
void delta_params_free_device(struct delta_params *p);

/* NULL when no trainable tensor has that name. */
struct delta_param *delta_params_find(const struct delta_params *p, const char *name);
/* Σ n over every tensor. */
uint64_t delta_params_numel(const struct delta_params *p);

/* Copies a tensor's values (or its gradient) to or from host floats in the
 * arenas' layout (a transposed tensor as its transpose); n must be the
 * tensor's size. VP_ERROR_INVALID_ARGUMENT for an unknown name. */
vp_status delta_params_read(const struct delta_params *p, const char *name, float *out, size_t n);
vp_status delta_params_read_grad(const struct delta_params *p, const char *name, float *out,
                                 size_t n);
vp_status delta_params_write(struct delta_params *p, const char *name, const float *data,
                             size_t n);

/* Writes every tensor of `t` into the params (--init-delta, --delta): each
 * must name a trainable tensor with the same shape, its values in that
 * shape's row-major order (a transposed tensor is transposed into the
 * arenas); tensors `t` lacks keep their values. */
vp_status delta_params_load(struct delta_params *p, const struct delta_tensors *t);
/* Appends a host copy of every tensor (role filter: a bit mask of
 * 1u << DELTA_PARAM_*; 0 = all) to `out`, each in its shape's row-major
 * order (Hugging Face's layout for model tensors: a transposed tensor is
 * transposed back), as delta.safetensors and model files hold them. */
vp_status delta_params_save(const struct delta_params *p, unsigned roles, struct delta_tensors *out);

/* The tensors as an optimiser sees them, in arena order; writes at most
 * `max` and returns the count (delta_params_count entries at most). */
uint32_t delta_params_opt_tensors(const struct delta_params *p, struct kernel_opt_tensor *out,
                                  uint32_t max);

/* Records zeroing every gradient (one fill of the gradient arena). */
vp_status delta_params_record_zero_grads(const struct delta_params *p, struct vk_recorder *rec);

/* The initial value the contract gives element i of a tensor: exposed so
 * tests can compare with the reference's generator. */
double delta_params_init_value(const struct delta_params *p, const struct delta_param *t,
                               uint64_t i);

#endif
