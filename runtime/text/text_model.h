/* The tokenization models (private to runtime/text/model*.c). */
#ifndef VKPEFT_TEXT_MODEL_H
#define VKPEFT_TEXT_MODEL_H

#include "text.h"

enum model_kind { MODEL_BPE, MODEL_WORDPIECE, MODEL_WORDLEVEL, MODEL_UNIGRAM };

struct tx_model {
    enum model_kind kind;
    struct tx_strmap vocab;     /* token -> id */
    struct tx_str names;        /* id -> token: NUL-terminated strings ... */
    uint32_t *name_off;         /* (n_ids) ... at these offsets, UINT32_MAX for a hole */
    int32_t n_ids;              /* largest id + 1 */
    int32_t unk_id;             /* -1: none */

    /* BPE */
    struct tx_u64map merges;    /* (left << 32 | right) -> (rank << 32 | merged id) */
    char *unk_token;            /* BPE: NULL when the model has none */
    char *prefix, *suffix;      /* continuing_subword_prefix (also WordPiece's), end_of_word_suffix */
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256];      /* "<0xNN>" ids for byte fallback, -1 when absent */

    /* WordPiece */
    int64_t max_chars;

    /* Unigram */
    double *scores;             /* (n_ids) */
    double min_score;
    struct tx_trie trie;        /* every piece */
};

/* Records id -> token (the vocab map is filled by the caller). */
bool model_set_name(struct tx_model *m, int32_t id, const char *s, size_t len);
/* "vocab": {"token": id, ...} into vocab, names and n_ids. */
vp_status model_parse_vocab_object(const struct tx_json *j, const cJSON *o, struct tx_model *m);
/* Resolves every "<0xNN>" token into byte_ids. */
void model_find_byte_ids(struct tx_model *m);

vp_status model_bpe_parse(const struct tx_json *j, const cJSON *o, struct tx_model *m);
vp_status model_bpe_tokenize(const struct tx_model *m, const char *s, size_t len, struct tx_ids *out);
vp_status model_unigram_parse(const struct tx_json *j, const cJSON *o, struct tx_model *m);
vp_status model_unigram_tokenize(const struct tx_model *m, const char *s, size_t len, struct tx_ids *out);

#endif
