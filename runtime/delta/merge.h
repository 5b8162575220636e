/* Merging a LoRA delta into its base model: W' = W + s·B·A for every
 * adapted projection, written as a new, complete Hugging Face model folder
 * that needs no delta to run.
 *
 *     struct delta_merge_info info;
 *     delta_merge("models/roberta-base", "runs/sst2/delta", "runs/sst2/merged", &info);
 *
 * The output folder gets config.json (the base's, with num_labels, id2label
 * and label2id of the trained head, and the sequence-classification
 * architecture), model.safetensors (every tensor of the base file in its own
 * dtype, the adapted projections merged, the trained head tensors replacing
 * or adding the classifier in the base's matrix dtype) and the tokenizer
 * files the base folder has. Every file is written atomically. Only LoRA
 * merges: adapters and prefixes add computation no weight can hold. */
#ifndef VKPEFT_DELTA_MERGE_H
#define VKPEFT_DELTA_MERGE_H

#include "safetensors.h"
#include "spec.h"

struct delta_merge_info {
    struct delta_spec spec;  /* the delta's (LoRA modules only) */
    int merged;              /* projection matrices changed */
    int head_tensors;        /* head tensors taken from the delta (0: the base's head kept) */
    int num_labels;          /* of the merged model */
    enum io_dtype dtype;     /* of the base's weight matrices (and the new head) */
    int copied_files;        /* tokenizer files copied */
    uint64_t tensors;        /* tensors in the merged model.safetensors */
};

/* VP_ERROR_BAD_INPUT for a delta with a non-LoRA module, a delta of another
 * base model, or out_dir naming the base model's folder. info may be NULL. */
vp_status delta_merge(const char *model_dir, const char *delta_dir, const char *out_dir,
                      struct delta_merge_info *info);

/* The head's label names a vkpeft delta.json records ("labels"): *names
 * gets *count malloc'd strings (free with delta_labels_free), or NULL and 0
 * when the delta does not name them (PEFT folders, unnamed labels). */
vp_status delta_labels_load(const char *delta_dir, char ***names, int *count);
void delta_labels_free(char **names, int count);

#endif
