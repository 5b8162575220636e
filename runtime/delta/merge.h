/* Merging a LoRA delta into its base model: W' = W + s·B·A for every
 * adapted projection, written as a new, complete Hugging Face model folder
 * that needs no delta to run.
 *
 *     struct delta_merge_info info;
 *     delta_merge("models/roberta-base", "runs/sst2/delta", "runs/sst2/merged", &info);
 *
 * Every model family vkpeft runs: BERT/RoBERTa sequence classification,
 * decoder-only (GPT-2, LLaMA/Mistral/Qwen2) and encoder-decoder (BART,
 * mBART: encoder and decoder self-attention, cross-attention, fc1/fc2).
 * The sums are in double, each merged tensor rounded to its own dtype (to
 * fp32, then to 16 bits for F16/BF16 files), one tensor at a time, after
 * every name and shape has been checked and before anything is written;
 * several modules on one weight add up, and a LoRA on GPT-2's q, k
 * or v adds into its column block of the fused Conv1D c_attn ([in, out]
 * layout, as c_proj and c_fc are). The delta is a vkpeft delta folder or a
 * PEFT LoRA folder (adapter_config.json), as --delta takes them.
 *
 * The output folder gets model.safetensors (every tensor of the base's
 * weights, one file or the shards of model.safetensors.index.json, in its
 * own dtype, the adapted projections merged; an encoder's trained head
 * tensors replacing or adding the classifier in the base's matrix dtype),
 * config.json (a language model's unchanged; an encoder's with num_labels,
 * id2label and label2id of the trained head and the sequence-classification
 * architecture), and the tokenizer files and generation_config.json the
 * base folder has. Every file is written atomically, config.json last.
 * A BitFit / full delta's trained tensors replace the base's (GPT-2's
 * Conv1D weights, which such a delta holds (out, in) as the decoder trains
 * them, transposed back), and LoRA in the same delta adds to them. Only
 * LoRA and those merge: adapters and prefixes add computation no weight can
 * hold (run them with --delta). */
#ifndef VKPEFT_DELTA_MERGE_H
#define VKPEFT_DELTA_MERGE_H

#include "safetensors.h"
#include "spec.h"

struct delta_merge_info {
    struct delta_spec spec;  /* the delta's (LoRA, BitFit and full modules only) */
    int merged;              /* projection matrices changed */
    int model_tensors;       /* BitFit / full trained tensors written from the delta */
    int head_tensors;        /* encoders: head tensors taken from the delta (0: the base's head kept) */
    int num_labels;          /* of the merged encoder (0 for language models) */
    enum io_dtype dtype;     /* of the base's weight matrices (its token embeddings; an encoder's new head) */
    int copied_files;        /* tokenizer files and generation_config.json copied */
    uint64_t tensors;        /* tensors in the merged model.safetensors */
};

/* VP_ERROR_BAD_INPUT for a delta with a non-LoRA module, a delta of another
 * base model (or a weight it adapts missing from the base's file), or
 * out_dir naming the base model's folder. info may be NULL. */
vp_status delta_merge(const char *model_dir, const char *delta_dir, const char *out_dir,
                      struct delta_merge_info *info);

/* The head's label names a vkpeft delta.json records ("labels"): *names
 * gets *count malloc'd strings (free with delta_labels_free), or NULL and 0
 * when the delta does not name them (PEFT folders, unnamed labels). */
vp_status delta_labels_load(const char *delta_dir, char ***names, int *count);
void delta_labels_free(char **names, int count);

#endif
