/* The architecture descriptor: one transformer implementation is
 * parameterised by this, read from a Hugging Face config.json. Families
 * (BERT, RoBERTa, ...) are weight-name maps onto it. */
#ifndef VKPEFT_MODEL_ARCH_H
#define VKPEFT_MODEL_ARCH_H

#include "util.h"

/* Families are weight-name maps. LLAMA covers llama, mistral and qwen2
 * (model_type keeps which); BART and MBART differ in norm placement. */
enum model_family {
    MODEL_FAMILY_BERT = 0,
    MODEL_FAMILY_ROBERTA,
    MODEL_FAMILY_GPT2,
    MODEL_FAMILY_LLAMA,
    MODEL_FAMILY_BART,
    MODEL_FAMILY_MBART,
};
/* Which stacks the model has: an encoder (bidirectional self-attention), a
 * decoder (causal self-attention), or both with cross-attention. */
enum model_stack { MODEL_STACK_ENCODER = 0, MODEL_STACK_DECODER, MODEL_STACK_ENCODER_DECODER };
enum model_norm { MODEL_NORM_LAYERNORM = 0, MODEL_NORM_RMSNORM };
enum model_act { MODEL_ACT_GELU = 0, MODEL_ACT_GELU_TANH, MODEL_ACT_RELU, MODEL_ACT_SILU, MODEL_ACT_SWIGLU };
enum model_positions { MODEL_POS_LEARNED = 0, MODEL_POS_ROTARY };
/* The head on the encoder (not read from config.json: the encoder's option
 * sets it): sequence classification, or the masked-language-model head. */
enum model_head { MODEL_HEAD_CLASSIFY = 0, MODEL_HEAD_MLM };

#define MODEL_MAX_LABELS 1024
#define MODEL_MAX_EOS 8 /* ids in a list-valued eos_token_id (search.h: SEARCH_MAX_EOS) */

struct model_arch {
    enum model_family family;
    char model_type[32];        /* as config.json spells it */
    int vocab_size;
    int hidden;                 /* d */
    enum model_stack stack;
    int layers;                 /* encoder layers, or decoder layers of a decoder-only model */
    int heads, kv_heads, head_dim;
    int intermediate;           /* FFN width */
    /* Encoder-decoder only: the decoder stack's sizes (BART's decoder_*). */
    int decoder_layers, decoder_heads, decoder_intermediate;
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
    int position_offset;        /* BART/mBART: 2; others 0 */
    double rope_theta;          /* rotary positions */
    int sliding_window;         /* Mistral/Qwen2 local attention span; 0: none */
    /* Which linear layers carry a bias: BERT, GPT-2, BART all; LLaMA none;
     * Qwen2 q/k/v only. */
    bool qkv_bias, out_bias, ffn_bias;
    bool tie_word_embeddings;   /* LM head = word embeddings */
    bool embed_norm;            /* LayerNorm after the embeddings (BERT, BART layernorm_embedding) */
    bool final_norm;            /* norm after the last layer (GPT-2 ln_f, LLaMA norm, mBART) */
    double embed_scale;         /* BART scale_embedding: sqrt(d); otherwise 1 */
    int pad_token_id;
    /* Token ids generation needs; -1 when the config has none. */
    int bos_token_id, eos_token_id, decoder_start_token_id;
    int eos_count;                        /* ids in eos_token_ids (config.json may list several) */
    int eos_token_ids[MODEL_MAX_EOS];     /* eos_token_id is the first */
    int forced_bos_token_id, forced_eos_token_id;
    double hidden_dropout, attention_dropout, classifier_dropout;
    double activation_dropout;  /* BART: dropout after the FFN activation */
    double embedding_dropout;   /* GPT-2 embd_pdrop: after the token + position embeddings */
    int num_labels;
    char **labels;              /* id2label names, num_labels entries (may be NULL) */
    enum model_head head;       /* set by the encoder (encoder_options.head); parsing leaves 0 */
};

/* Parses and validates config.json text. `path` names the file in messages.
 * Errors are VP_ERROR_BAD_INPUT naming the field and what to do. */
vp_status model_arch_parse(const char *text, size_t size, const char *path, struct model_arch *out);
/* Reads `dir`/config.json. */
vp_status model_arch_load(const char *dir, struct model_arch *out);
/* model_arch_load, for the commands that so far run only encoders: a decoder
 * or encoder-decoder model fails with VP_ERROR_BAD_INPUT naming its type. */
vp_status model_arch_load_encoder(const char *dir, struct model_arch *out);
void model_arch_finish(struct model_arch *arch);

const char *model_act_name(enum model_act act);
const char *model_family_name(enum model_family family);
/* Decoder-only or encoder-decoder: the model has a causal LM head. */
static inline bool model_arch_generates(const struct model_arch *a) { return a->stack != MODEL_STACK_ENCODER; }

#endif
