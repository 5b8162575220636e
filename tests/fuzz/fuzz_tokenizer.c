/* tokenizer.json loading, then encoding and decoding a fuzzed text with it.
 * Input: tokenizer.json "\n\0\n" text ["\n\0\n" pair]. An input without a
 * separator is a text for the built-in WordPiece tokenizer. */
#include "fuzz.h"

#include "tokenizer.h"

#include <stdlib.h>

static void exercise(const struct tok_tokenizer *tok, const char *text, const char *pair, int max_len) {
    struct tok_encoding enc = {0};
    if (tok_encode(tok, text, pair, true, max_len, &enc) == VP_OK) {
        if (max_len > 0 && enc.len > max_len) abort();
        int32_t vocab = tok_vocab_size(tok);
        for (int i = 0; i < enc.len; i++)
            if (enc.ids[i] < 0 || enc.ids[i] >= vocab) abort();
        char *back = NULL;
        if (tok_decode(tok, enc.ids, enc.len, true, &back) == VP_OK) free(back);
        for (int i = 0; i < enc.len; i++) (void)tok_id_to_token(tok, enc.ids[i]);
    }
    (void)tok_encode(tok, text, NULL, false, 0, &enc);
    tok_encoding_free(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *rest, *pair_data;
    size_t rest_size, pair_size;
    size_t json_size = fuzz_split(data, size, &rest, &rest_size);
    if (json_size == size) {
        char *text = fuzz_strndup(data, size);
        exercise(fuzz_tokenizer(), text, NULL, (int)(size % 17));
        free(text);
        return 0;
    }
    size_t text_size = fuzz_split(rest, rest_size, &pair_data, &pair_size);
    char *json = fuzz_strndup(data, json_size);
    char *text = fuzz_strndup(rest, text_size);
    char *pair = text_size < rest_size ? fuzz_strndup(pair_data, pair_size) : NULL;
    struct tok_tokenizer *tok = NULL;
    if (tok_tokenizer_parse(json, NULL, "fuzz/tokenizer.json", &tok) == VP_OK) {
        exercise(tok, text, pair, (int)(text_size % 13));
        (void)tok_special_ids(tok);
        (void)tok_token_to_id(tok, text);
        tok_tokenizer_free(tok);
    } else {
        fuzz_rejected();
    }
    free(json);
    free(text);
    free(pair);
    return 0;
}
