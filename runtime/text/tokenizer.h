/* Tokenizers read from Hugging Face tokenizer.json files.
 *
 *     struct tok_tokenizer *tok;
 *     if (tok_tokenizer_load("models/roberta-base", &tok) != VP_OK) ... vp_last_error()
 *     struct tok_encoding enc = {0};
 *     tok_encode(tok, "Hello world", NULL, true, 128, &enc);   // enc.ids[0..enc.len)
 *     char *text;
 *     tok_decode(tok, enc.ids, enc.len, true, &text);            // "Hello world"
 *     free(text);
 *     tok_encoding_free(&enc);
 *     tok_tokenizer_free(tok);
 *
 * The pipeline is Hugging Face's: added tokens are cut out of the raw text,
 * each remaining piece is normalized, normalized added tokens are cut out,
 * the pre-tokenizer splits the pieces into words, the model (BPE, WordPiece,
 * WordLevel, Unigram) turns each word into ids, the pair is truncated
 * (longest first) and the post-processor adds the special tokens and type ids.
 * Decoding maps ids to tokens, drops special tokens on request and runs the
 * decoder.
 *
 * Loading fails with VP_ERROR_BAD_INPUT for malformed JSON or fields (the
 * message names the file and the JSON path) and VP_ERROR_UNSUPPORTED for a
 * component vkpeft does not implement (the message names it, e.g.
 * `normalizer "Precompiled" is not supported`). A loaded tokenizer is
 * read-only: several threads may encode with it at once. */
#ifndef VKPEFT_TEXT_TOKENIZER_H
#define VKPEFT_TEXT_TOKENIZER_H

#include "util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tok_tokenizer;

/* `path` is a tokenizer.json or a folder holding one. A tokenizer_config.json
 * beside it, when present, names the bos/eos/pad/... tokens. */
vp_status tok_tokenizer_load(const char *path, struct tok_tokenizer **out);
/* The same from tokenizer.json text in memory; `name` stands for the file in
 * messages. `config_json` (tokenizer_config.json text) may be NULL. */
vp_status tok_tokenizer_parse(const char *json, const char *config_json, const char *name,
                              struct tok_tokenizer **out);
void tok_tokenizer_free(struct tok_tokenizer *tok);

/* Output of tok_encode, owned by the caller and reused across calls: start
 * from {0}, release with tok_encoding_free. */
struct tok_encoding {
    int32_t *ids;       /* (len) token ids */
    int32_t *type_ids;  /* (len) segment ids, as the post-processor sets them */
    uint8_t *special;   /* (len) 1 for tokens the post-processor added */
    int len, cap;
};
void tok_encoding_free(struct tok_encoding *e);

/* Encodes `text` (UTF-8) and, when text_pair is not NULL, the pair.
 * add_special_tokens runs the post-processor's template ([CLS] A [SEP] ...).
 * max_len > 0 truncates (longest first for a pair) so the result, special
 * tokens included, holds at most max_len ids; max_len <= 0 does not truncate.
 * Invalid UTF-8 is VP_ERROR_BAD_INPUT. */
vp_status tok_encode(const struct tok_tokenizer *tok, const char *text, const char *text_pair,
                     bool add_special_tokens, int max_len, struct tok_encoding *out);

/* Decodes ids into a malloc'd, NUL-terminated string (*text; the caller frees
 * it). Unknown ids are skipped, as Hugging Face does; skip_special_tokens
 * drops added tokens marked special. */
vp_status tok_decode(const struct tok_tokenizer *tok, const int32_t *ids, int n, bool skip_special_tokens,
                     char **text);

/* -1 when the token is not in the vocabulary (added tokens included). */
int32_t tok_token_to_id(const struct tok_tokenizer *tok, const char *token);
/* NULL when no token has this id. The string lives as long as tok. */
const char *tok_id_to_token(const struct tok_tokenizer *tok, int32_t id);
/* Largest id + 1 over the model's vocabulary and the added tokens: the
 * number of rows an embedding table needs. */
int32_t tok_vocab_size(const struct tok_tokenizer *tok);
/* Whether id is an added token marked special. */
bool tok_is_special(const struct tok_tokenizer *tok, int32_t id);
/* "BPE", "WordPiece", "WordLevel" or "Unigram". */
const char *tok_model_type(const struct tok_tokenizer *tok);

/* Ids of the usual special tokens, -1 when unknown. They come from
 * tokenizer_config.json when present, else from the model (unk), the
 * post-processor (cls, sep; bos/eos from a template), tokenizer.json's
 * padding (pad), and finally the usual names ("[PAD]", "<pad>", "<s>",
 * "</s>", "[MASK]", "<mask>", ...) among the special added tokens. */
struct tok_special_ids {
    int32_t pad, unk, cls, sep, bos, eos, mask;
};
struct tok_special_ids tok_special_ids(const struct tok_tokenizer *tok);

#endif
