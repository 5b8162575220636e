/* Added tokens (tokenizer.json "added_tokens"): found in the text before
 * normalization (normalized: false) or in each normalized piece
 * (normalized: true), leftmost-longest, as Hugging Face's AddedVocabulary. */
#include "text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vp_status parse_one(const struct tx_json *j, const cJSON *e, const char *where, struct tok_tokenizer *tok,
                           struct tx_added *a) {
    const char *content;
    int64_t id;
    vp_status s = tx_get_str(j, e, where, "content", true, &content);
    if (s == VP_OK) s = tx_get_int(j, e, where, "id", true, 0, &id);
    if (s == VP_OK) s = tx_get_bool(j, e, where, "special", false, &a->special);
    if (s == VP_OK) s = tx_get_bool(j, e, where, "single_word", false, &a->single_word);
    if (s == VP_OK) s = tx_get_bool(j, e, where, "lstrip", false, &a->lstrip);
    if (s == VP_OK) s = tx_get_bool(j, e, where, "rstrip", false, &a->rstrip);
    if (s == VP_OK) s = tx_get_bool(j, e, where, "normalized", !a->special, &a->normalized);
    if (s != VP_OK) return s;
    if (id < 0 || id >= INT32_MAX) return tx_bad(j, where, "id", "must be a token id");
    /* A token the model knows keeps the model's id, as in tokenizers. */
    int32_t model_id = tx_model_token_to_id(tok->model, content, strlen(content));
    a->id = model_id >= 0 ? model_id : (int32_t)id;
    if (!(a->content = strdup(content))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    struct tx_str norm = {0};
    if (a->normalized && tok->normalizer) {
        struct tx_scratch sc = {0};
        s = tx_normalizer_run(tok->normalizer, content, strlen(content), &norm, &sc);
        tx_scratch_free(&sc);
        if (s != VP_OK) return s;
        a->match = norm.s;
        a->match_len = norm.len;
        if (!a->match && !(a->match = strdup(""))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    } else {
        if (!(a->match = strdup(content))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
        a->match_len = strlen(content);
    }
    return VP_OK;
}

vp_status tx_added_parse(const struct tx_json *j, const cJSON *list, struct tok_tokenizer *tok) {
    if (list && !cJSON_IsNull(list) && !cJSON_IsArray(list))
        return tx_bad(j, "", "added_tokens", "must be a list of token objects");
    int n = list && cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
    if (n && !(tok->added = calloc((size_t)n, sizeof *tok->added)))
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    char where[64];
    int32_t max_id = -1;
    for (const cJSON *e = n ? list->child : NULL; e; e = e->next) {
        tx_path(where, sizeof where, "added_tokens", NULL, tok->n_added);
        struct tx_added *a = &tok->added[tok->n_added++];
        vp_status s = parse_one(j, e, where, tok, a);
        if (s != VP_OK) return s;
        if (!*a->content) continue; /* tokenizers ignores empty tokens */
        struct tx_trie *trie = a->normalized ? &tok->norm_trie : &tok->raw_trie;
        if ((a->match_len && !tx_trie_put(trie, a->match, a->match_len, tok->n_added - 1)) ||
            !tx_strmap_put(&tok->added_ids, a->content, strlen(a->content), a->id))
            return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
        if (a->id > max_id) max_id = a->id;
    }
    int32_t model_size = tx_model_vocab_size(tok->model);
    tok->vocab_size = max_id + 1 > model_size ? max_id + 1 : model_size;
    if (tok->vocab_size && !(tok->added_of_id = malloc((size_t)tok->vocab_size * sizeof *tok->added_of_id)))
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    for (int32_t i = 0; i < tok->vocab_size; i++) tok->added_of_id[i] = -1;
    for (int i = 0; i < tok->n_added; i++)
        if (*tok->added[i].content) tok->added_of_id[tok->added[i].id] = i;
    return VP_OK;
}

/* ---- matching --------------------------------------------------------------------------- */

/* Rust regex's \w, which tokenizers uses for single_word: alphabetic,
 * marks, decimal digits, connector punctuation, joiners. */
static bool is_word(uint32_t c) {
    return uc_in(c, UC_MASK_L | UC_MASK_M | UC_BIT(UC_ND) | UC_BIT(UC_NL) | UC_BIT(UC_PC)) || c == 0x200C ||
           c == 0x200D;
}

static size_t prev_char(const char *s, size_t at, uint32_t *c) {
    size_t b = at - 1;
    while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
    uc_decode(s, b, c);
    return b;
}

/* Longest token of the trie starting at s[pos]; its index or -1. */
static int longest_at(const struct tx_trie *t, const char *s, size_t len, size_t pos, size_t *end) {
    int best = -1;
    uint32_t node = 0;
    for (size_t k = pos; k < len; k++) {
        int64_t next = tx_trie_step(t, node, (unsigned char)s[k]);
        if (next < 0) break;
        node = (uint32_t)next;
        if (t->value[node] >= 0) {
            best = t->value[node];
            *end = k + 1;
        }
    }
    return best;
}

bool tx_added_split(const struct tok_tokenizer *tok, const struct tx_trie *trie, const char *s, size_t len,
                    bool at_start, struct tx_pieces *out) {
    size_t done = 0; /* text before this offset is already in out */
    for (size_t pos = 0; trie->n && pos < len;) {
        size_t mend = 0;
        int idx = longest_at(trie, s, len, pos, &mend);
        if (idx < 0) {
            pos++;
            continue;
        }
        const struct tx_added *a = &tok->added[idx];
        size_t start = pos, stop = mend;
        pos = mend; /* the search goes on after the match, whatever happens to it */
        uint32_t c;
        if (a->single_word) {
            bool word_before = start > 0 && (prev_char(s, start, &c), is_word(c));
            bool word_after = stop < len && (uc_decode(s, stop, &c), is_word(c));
            if (word_before || word_after) continue;
        }
        if (a->lstrip)
            while (start > done) {
                size_t b = prev_char(s, start, &c);
                if (!uc_is_white_space(c)) break;
                start = b;
            }
        if (a->rstrip)
            while (stop < len) {
                size_t l = uc_decode(s, stop, &c);
                if (!uc_is_white_space(c)) break;
                stop += l;
            }
        if (start < done) start = done;
        if (done < start && !tx_pieces_add(out, s + done, start - done, -1, at_start && done == 0)) return false;
        if (!tx_pieces_add(out, s + start, stop - start, a->id, at_start && start == 0)) return false;
        done = stop;
    }
    return done >= len || tx_pieces_add(out, s + done, len - done, -1, at_start && done == 0);
}
