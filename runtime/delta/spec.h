/* The unified delta spec: a list of modules, each a learned change Δh placed
 * by the paper's design dimensions (PAPER.md): functional form (kind, act),
 * insertion (sequential or parallel), modified representation (at), and
 * composition (add, scale, gated). Presets reproduce the paper's methods.
 *
 * JSON form (every field but "kind" optional):
 *   {"modules": [{"kind": "adapter", "at": "ffn", "insert": "parallel",
 *                 "bottleneck": 512, "act": "relu", "compose": "scale",
 *                 "scale": 4, "layers": "all", "stack": ["encoder"]}]}
 */
#ifndef VKPEFT_DELTA_SPEC_H
#define VKPEFT_DELTA_SPEC_H

#include "arch.h"
#include "util.h"

enum delta_kind { DELTA_ADAPTER = 0, DELTA_LORA, DELTA_PREFIX, DELTA_BITFIT, DELTA_FULL };
/* Where a module reads/writes: a sublayer (attn, ffn) or a projection. */
enum delta_at { DELTA_AT_NONE = 0, DELTA_AT_ATTN, DELTA_AT_FFN, DELTA_AT_Q, DELTA_AT_K, DELTA_AT_V,
                DELTA_AT_O, DELTA_AT_UP, DELTA_AT_DOWN };
enum delta_insert { DELTA_SEQUENTIAL = 0, DELTA_PARALLEL };
enum delta_act { DELTA_ACT_RELU = 0, DELTA_ACT_GELU, DELTA_ACT_IDENTITY };
enum delta_compose { DELTA_COMPOSE_ADD = 0, DELTA_COMPOSE_SCALE, DELTA_COMPOSE_GATED };
enum delta_init { DELTA_INIT_LORA = 0, DELTA_INIT_BERT };
/* Which stacks of a model a module goes into (bits). */
enum { DELTA_STACK_ENCODER = 1, DELTA_STACK_DECODER = 2, DELTA_STACK_CROSS = 4 };

#define DELTA_MAX_MODULES 32
#define DELTA_MAX_LAYERS 256

struct delta_module {
    enum delta_kind kind;
    enum delta_at at;
    enum delta_insert insert;
    int size;                 /* adapter bottleneck, LoRA rank, prefix length */
    enum delta_act act;
    enum delta_compose compose;
    double scale;             /* compose = scale: s; LoRA: alpha / rank */
    double alpha;             /* LoRA alpha (scale = alpha / rank) */
    bool per_head;            /* adapter on attention, one bottleneck per head (mh-pa) */
    enum delta_init init;
    int reparam;              /* prefix: hidden width of the training-time MLP, 0 = none */
    double dropout;           /* < 0: the model's hidden dropout */
    bool all_layers;
    int layer_count;
    int layers[DELTA_MAX_LAYERS];
    unsigned stacks;          /* DELTA_STACK_* bits */
};

struct delta_spec {
    char name[64];            /* preset name, or "custom" */
    int count;
    struct delta_module modules[DELTA_MAX_MODULES];
};

/* "mam", "lora:r=16,a=32", "mam:l=16,r=16,s=2" ... Keys: r (bottleneck or
 * rank), l (prefix length), s (scale), a (LoRA alpha). */
vp_status delta_spec_preset(const char *text, struct delta_spec *out);
/* Parses spec JSON, or a saved delta's delta.json (the spec under "spec");
 * `path` names it in messages (field paths like modules[1].at). */
vp_status delta_spec_parse(const char *json, size_t size, const char *path, struct delta_spec *out);
/* PRESET[:k=v,...], a .json file, or a folder holding delta.json. */
vp_status delta_spec_load(const char *arg, struct delta_spec *out);
/* JSON text of the spec (malloc'd), which delta_spec_parse reads back. */
char *delta_spec_to_json(const struct delta_spec *spec);
/* The preset names, NULL-terminated. */
extern const char *const delta_preset_names[];

const char *delta_kind_name(enum delta_kind k);
const char *delta_at_name(enum delta_at a);

/* --lora-targets: replaces the spec's LoRA modules by one per projection
 * `list` names (comma-separated), each a copy of its first LoRA module
 * (rank, alpha, layers). Names are the family's module names (LLaMA:
 * q_proj, k_proj, v_proj, o_proj, up_proj, down_proj; GPT-2: c_attn (q, k
 * and v), attn.c_proj, c_fc, mlp.c_proj; BERT/RoBERTa: query, key, value,
 * attention.output.dense, intermediate.dense, output.dense) or q, k, v, o,
 * up, down. VP_ERROR_BAD_INPUT naming the flag and the valid names. */
vp_status delta_spec_set_lora_targets(struct delta_spec *spec, const char *list, const struct model_arch *arch);

/* Does module m apply to layer `layer` of an arch with `layers` layers? */
bool delta_module_has_layer(const struct delta_module *m, int layer);

/* The (layer, attention block or FFN) places module m occupies in a model:
 * its layers, in every stack of the model it is for (encoder self-attention,
 * decoder self-attention, cross-attention; FFN sites in encoder and decoder). */
int delta_module_places(const struct delta_module *m, const struct model_arch *a);
/* Does module m go into the blocks of stack `bit` (DELTA_STACK_*) of a, and
 * how many layers has that stack (cross-attention: the decoder's)? */
bool delta_module_in_stack(const struct delta_module *m, const struct model_arch *a, unsigned bit);
int delta_stack_layers(const struct model_arch *a, unsigned bit);
/* Parameter counts for a spec on an architecture. */
struct delta_counts {
    uint64_t module_params[DELTA_MAX_MODULES]; /* trained during training */
    uint64_t module_saved[DELTA_MAX_MODULES];  /* kept in the saved delta (prefix MLP collapsed) */
    uint64_t delta_params;                     /* Σ module_params */
    uint64_t head_params;                      /* the classification head, always trained */
    uint64_t model_params;                     /* the pretrained model, head excluded */
};
/* Fails with VP_ERROR_BAD_INPUT when a module does not fit the arch (a
 * layer out of range, a stack the model lacks, ...). */
vp_status delta_count_params(const struct delta_spec *spec, const struct model_arch *arch,
                             struct delta_counts *out);

#endif
