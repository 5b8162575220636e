/* Saving and loading trained deltas.
 *
 * A delta folder holds:
 *   delta.safetensors   every trained tensor (vkpeft names, fp32; prefixes
 *                       collapsed from their training-time MLP to plain
 *                       prefix_k / prefix_v), its data in its shape's
 *                       row-major order; a model tensor BitFit / full train
 *                       has the name, shape and layout of the Hugging Face
 *                       tensor it replaces (GPT-2's Conv1D weights [in, out]),
 *                       so it goes into that model's state dict as it is
 *   delta.json          {"vkpeft": version, "format": DELTA_FORMAT,
 *                       "spec": <delta spec JSON with the
 *                       collapsed form>, "params": counts {"trained", "saved",
 *                       "head", "model", "file_values"}, "base_model":
 *                       {"path", "model_type", "hidden_size", "num_hidden_layers",
 *                       "num_attention_heads", "intermediate_size", "vocab_size",
 *                       "config_hash" (FNV-1a of its config.json)}, "num_labels",
 *                       "labels": [names] (when known)}
 *   adapter_config.json + adapter_model.safetensors   PEFT's layout, when PEFT
 *                       has the method (LoRA, one prefix on every layer)
 * Every file is written atomically (temporary file, fsync, rename).
 *
 * Formats ("format" in delta.json; one with none is format 1):
 *   1  vkpeft before "format": as 2, except that a GPT-2 full delta's Conv1D
 *      weights (transformer.h.N.attn.c_attn / attn.c_proj / mlp.c_fc /
 *      mlp.c_proj .weight) hold (out, in) data under their [in, out] header,
 *      as the decoder holds them; delta_load transposes them to format 2's
 *   2  every tensor in its shape's order, as above
 * A later format is refused (written by a newer vkpeft). */
#ifndef VKPEFT_DELTA_SAVE_H
#define VKPEFT_DELTA_SAVE_H

#include "arch.h"
#include "params.h"
#include "spec.h"
#include "tensors.h"

#define DELTA_FORMAT 2 /* what delta_save writes; delta_load reads 1 and 2 */

struct delta_save_info {
    const char *model_dir;      /* the base model folder (identity recorded in delta.json) */
    const char *const *labels;  /* num_labels names, or NULL */
    int num_labels;
};

/* Writes `params` (values; prefix reparameterisations collapsed) into `dir`,
 * creating it. */
vp_status delta_save(const char *dir, const struct delta_params *params,
                     const struct delta_save_info *info);

/* Reads a delta folder: vkpeft's (delta.json + delta.safetensors, format 1
 * or 2) or a PEFT folder (adapter_config.json + adapter_model.safetensors:
 * LoRA, or prefix tuning on decoders; peft.h). The spec is the saved
 * (collapsed) one; tensors use vkpeft names and format 2's layout (what
 * delta_params_load takes). Checks the base model identity against `arch`
 * (model_type, sizes) and reports a mismatch. */
vp_status delta_load(const char *dir, const struct model_arch *arch, struct delta_spec *spec,
                     struct delta_tensors *tensors);
/* delta_load against the model in model_dir (its config.json). */
vp_status delta_load_for_model(const char *delta_dir, const char *model_dir, struct delta_spec *spec,
                               struct delta_tensors *out);
/* delta_load, then its tensors written into `params`, a loaded model's
 * trainable tensors whose spec trains the same names and shapes; a failure
 * names the delta and the model folder. */
vp_status delta_load_into(const char *dir, const struct model_arch *arch, struct delta_params *params,
                          const char *model_dir);

/* Replaces every prefix module's reparameterisation tensors in `t` by the
 * plain prefix_k / prefix_v of each layer it applies to (computed in double
 * from the MLP, exactly as the forward does), and sets those modules'
 * reparam to 0 in `spec`. */
vp_status delta_collapse_prefix(struct delta_spec *spec, const struct model_arch *arch,
                                struct delta_tensors *t);

#endif
