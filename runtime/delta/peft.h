/* The Hugging Face PEFT folder layout: adapter_config.json +
 * adapter_model.safetensors with PEFT's key names, e.g.
 * base_model.model.roberta.encoder.layer.0.attention.self.query.lora_A.weight,
 * base_model.model.model.decoder.layers.0.encoder_attn.q_proj.lora_B.weight (BART),
 * or one "prompt_embeddings" tensor for prefix tuning. PEFT has LoRA and
 * prefix tuning (not bottleneck, parallel or MAM adapters), so only specs
 * made of those can be exported: LoRA modules, or one prefix module on
 * every layer (a reparameterised one collapsed first, written with
 * prefix_projection false: exact at inference); on encoder-decoders LoRA
 * only.
 *
 * Decoder prefixes and positions: PEFT passes the prefixes as
 * past_key_values of length L (per layer (kv_heads, L, head_dim): recent
 * PEFT sizes token_dim and num_attention_heads by num_key_value_heads), and
 * Hugging Face's GPT-2 and LLaMA then number the tokens from L in a
 * forward pass (cache_position, hence position_ids and RoPE angles, start
 * at the cache length; PEFT offsets explicit position_ids by L too).
 * The cached keys are used as they are, never rotated. vkpeft's decoder
 * does the same (positions from the prefix length, prefixes not rotated),
 * so the exported folder computes what vkpeft computed; with several
 * prefix modules (not exportable) vkpeft starts at the longest layer's. */
#ifndef VKPEFT_DELTA_PEFT_H
#define VKPEFT_DELTA_PEFT_H

#include "spec.h"
#include "tensors.h"

#include <stddef.h>

struct cJSON;

/* Can `spec` be written in PEFT's layout? If not, *why says why. */
bool delta_peft_supported(const struct delta_spec *spec, const struct model_arch *arch, const char **why);

/* Writes adapter_config.json and adapter_model.safetensors into `dir`
 * (atomically each). `tensors` uses vkpeft's names (prefixes collapsed). */
vp_status delta_peft_export(const char *dir, const struct delta_spec *spec, const struct model_arch *arch,
                            const struct delta_tensors *tensors, const char *base_model);

/* A LoRA spec PEFT's config can hold: one rank, alpha and layer list, at
 * most one module per projection (else false and *why). */
bool delta_peft_lora_uniform(const struct delta_spec *spec, const char **why);
/* The same for LoRA on decoder-only models (peft_decoder.c): task_type
 * CAUSAL_LM, LLaMA-family and GPT-2 key names (GPT-2's q/k/v LoRA fused
 * into one c_attn LoRA). delta_peft_supported/export dispatch to these;
 * prefixes of any stack are written by peft.c. */
bool delta_peft_decoder_supported(const struct delta_spec *spec, const struct model_arch *arch, const char **why);
vp_status delta_peft_decoder_export(const char *dir, const struct delta_spec *spec, const struct model_arch *arch,
                                    const struct delta_tensors *tensors, const char *base_model);

/* The same for LoRA on encoder-decoders (peft_seq2seq.c): task_type
 * SEQ_2_SEQ_LM, BART/mBART key names (model.encoder.layers.N.self_attn.*,
 * model.decoder.layers.N.self_attn.* / encoder_attn.*, fc1, fc2). */
bool delta_peft_seq2seq_supported(const struct delta_spec *spec, const struct model_arch *arch, const char **why);
vp_status delta_peft_seq2seq_export(const char *dir, const struct delta_spec *spec, const struct model_arch *arch,
                                    const struct delta_tensors *tensors, const char *base_model);
/* A BART/mBART module path (after base_model.model.), e.g.
 * "model.decoder.layers.1.encoder_attn.q_proj", as a stack (DELTA_STACK_*),
 * layer and site; VP_ERROR_BAD_INPUT naming `file` and the tensor `key`
 * for a layer out of range or a module vkpeft does not adapt. */
vp_status delta_peft_seq2seq_site(const char *module, const struct model_arch *arch, const char *file,
                                  const char *key, unsigned *stack, int *layer, enum delta_at *at);

/* The Hugging Face module (PEFT's key stem after base_model.model.) of
 * the projection `at` in layer `layer` of the blocks `root` names
 * (delta_params_place's roots): roberta.encoder.layer.0.attention.self.query,
 * model.layers.1.self_attn.k_proj, transformer.h.0.attn.c_attn (GPT-2's q, k
 * and v alike), model.decoder.layers.1.encoder_attn.v_proj (root
 * cross.layers). Its ".weight" is the tensor that LoRA's B·A adds to.
 * The per-stack-kind forms are in peft_decoder.c and peft_seq2seq.c. */
void delta_peft_module_name(const struct model_arch *arch, const char *root, int layer, enum delta_at at, char *buf,
                            size_t size);
void delta_peft_decoder_module(const struct model_arch *arch, int layer, enum delta_at at, char *buf, size_t size);
void delta_peft_seq2seq_module(const char *root, int layer, enum delta_at at, char *buf, size_t size);

/* For the three exporters: adds peft_type LORA, r, lora_alpha,
 * lora_dropout, bias, fan_in_fan_out, target_modules (`targets`, taken)
 * and layers_to_transform (m's layers; null for all, and always null when
 * `targets` is a regular expression string, which must then hold the
 * layers: PEFT refuses both) to config object c. */
void delta_peft_lora_fields(struct cJSON *c, const struct delta_module *m, int r, double alpha, bool fan_in_fan_out,
                            struct cJSON *targets);
/* Writes dir/adapter_model.safetensors (`tensors`) and then
 * dir/adapter_config.json (`config`, JSON text the call frees; NULL: out
 * of memory), each atomically. */
struct io_tensor_out;
vp_status delta_peft_write_files(const char *dir, const struct io_tensor_out *tensors, size_t count, char *config);
/* m's layers for such a regular expression: "\\d+", or "(0|2)". */
void delta_peft_layers_regex(const struct delta_module *m, char *buf, size_t size);

/* Reads a PEFT folder into a spec and tensors with vkpeft's names: LoRA
 * (BERT, RoBERTa, LLaMA family, GPT-2: a c_attn pair becomes q, k and v
 * pairs sharing A, B's rows split; BART/mBART: one module per site whose
 * stacks are those the file adapts it in, covering the same layers in
 * each) or, on decoder-only models, prefix tuning (one prefix module,
 * reparam 0). F16 and BF16 files are widened to f32. */
vp_status delta_peft_import(const char *dir, const struct model_arch *arch, struct delta_spec *spec,
                            struct delta_tensors *tensors);

#endif
