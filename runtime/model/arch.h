/* The architecture descriptor: one transformer implementation is
 * parameterised by this, read from a Hugging Face config.json. Families
 * (BERT, RoBERTa, ...) are weight-name maps onto it. */
#ifndef VKPEFT_MODEL_ARCH_H
#define VKPEFT_MODEL_ARCH_H

#include "util.h"

enum model_family { MODEL_FAMILY_BERT = 0, MODEL_FAMILY_ROBERTA };
enum model_norm { MODEL_NORM_LAYERNORM = 0, MODEL_NORM_RMSNORM };
enum model_act { MODEL_ACT_GELU = 0, MODEL_ACT_GELU_TANH, MODEL_ACT_RELU, MODEL_ACT_SILU, MODEL_ACT_SWIGLU };
enum model_positions { MODEL_POS_LEARNED = 0, MODEL_POS_ROTARY };
/* The head on the encoder (not read from config.json: the encoder's option
 * sets it): sequence classification, or the masked-language-model head. */
enum model_head { MODEL_HEAD_CLASSIFY = 0, MODEL_HEAD_MLM };

#define MODEL_MAX_LABELS 1024

struct model_arch {
    enum model_family family;
    char model_type[32];        /* as config.json spells it */
    int vocab_size;
    int hidden;                 /* d */
    int layers;
    int heads, kv_heads, head_dim;
    int intermediate;           /* FFN width */
    int max_positions;
    int type_vocab_size;        /* 0: no token-type embeddings */
    enum model_norm norm;
    bool pre_norm;              /* false: post-LN (BERT) */
    double norm_eps;
    enum model_act act;
    enum model_positions positions;
    /* Learned positions: position id of token t is position_offset + t, or for
     * RoBERTa pad_token_id + 1 + (index among non-padding tokens). */
    bool roberta_positions;
    int pad_token_id;
    double hidden_dropout, attention_dropout, classifier_dropout;
    int num_labels;
    char **labels;              /* id2label names, num_labels entries (may be NULL) */
    enum model_head head;       /* set by the encoder (encoder_options.head); parsing leaves 0 */
};

/* Parses and validates config.json text. `path` names the file in messages.
 * Errors are VP_ERROR_BAD_INPUT naming the field and what to do. */
vp_status model_arch_parse(const char *text, size_t size, const char *path, struct model_arch *out);
/* Reads `dir`/config.json. */
vp_status model_arch_load(const char *dir, struct model_arch *out);
void model_arch_finish(struct model_arch *arch);

const char *model_act_name(enum model_act act);

#endif
