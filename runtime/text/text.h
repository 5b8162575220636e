/* Internals shared by the tokenizer's parts (runtime/text/): growable strings
 * and piece lists, hash maps and a byte trie, JSON field helpers, and the
 * normalizer / pre-tokenizer / model / decoder / post-processor objects. The
 * public face is tokenizer.h. */
#ifndef VKPEFT_TEXT_TEXT_H
#define VKPEFT_TEXT_TEXT_H

#include "text_regex.h"
#include "tokenizer.h"
#include "text_unicode.h"

#include <cjson/cJSON.h>

/* ---- strings and pieces ------------------------------------------------------- */

/* A growable byte string; always NUL-terminated when s != NULL. */
struct tx_str {
    char *s;
    size_t len, cap;
};
bool tx_str_reserve(struct tx_str *t, size_t extra);
bool tx_str_add(struct tx_str *t, const char *s, size_t len);
bool tx_str_add_cp(struct tx_str *t, uint32_t cp);
void tx_str_free(struct tx_str *t);

/* A list of text pieces stored back to back in one buffer. A piece that is
 * an added token carries its id and is never split, normalized or modelled. */
struct tx_piece {
    size_t off, len;      /* bytes in buf */
    int32_t added_id;     /* -1: ordinary text */
    bool at_start;        /* begins at offset 0 of the original text */
};
struct tx_pieces {
    struct tx_str buf;
    struct tx_piece *v;
    size_t n, cap;
};
/* Appends a copy of s (which must not point into p's own buffer). */
bool tx_pieces_add(struct tx_pieces *p, const char *s, size_t len, int32_t added_id, bool at_start);
void tx_pieces_clear(struct tx_pieces *p);
void tx_pieces_free(struct tx_pieces *p);
static inline const char *tx_piece_text(const struct tx_pieces *p, size_t i) { return p->buf.s + p->v[i].off; }

struct tx_ids {
    int32_t *v;
    size_t n, cap;
};
bool tx_ids_add(struct tx_ids *ids, int32_t id);

/* ---- maps ----------------------------------------------------------------------- */

/* String -> int32 map that owns copies of its keys; put overwrites. */
struct tx_strmap {
    struct tx_strmap_entry { uint32_t off, len; int32_t value; } *slots; /* value -1: empty */
    uint32_t cap, count;
    struct tx_str keys;
};
bool tx_strmap_put(struct tx_strmap *m, const char *s, size_t len, int32_t value);
int32_t tx_strmap_get(const struct tx_strmap *m, const char *s, size_t len); /* -1 when absent */
void tx_strmap_free(struct tx_strmap *m);

/* uint64 -> uint64 map; the key UINT64_MAX is reserved. */
struct tx_u64map {
    uint64_t *keys, *values;
    uint32_t cap, count;
};
bool tx_u64map_put(struct tx_u64map *m, uint64_t key, uint64_t value);
bool tx_u64map_get(const struct tx_u64map *m, uint64_t key, uint64_t *value);
void tx_u64map_free(struct tx_u64map *m);

/* Byte trie: node 0 is the root; value[node] is -1 or the id of the string
 * ending there. */
struct tx_trie {
    struct tx_u64map edges; /* (node << 8 | byte) -> child */
    int32_t *value;
    uint32_t n, cap;
};
bool tx_trie_put(struct tx_trie *t, const char *s, size_t len, int32_t value);
/* Child of node along byte b, or -1. */
static inline int64_t tx_trie_step(const struct tx_trie *t, uint32_t node, unsigned char b) {
    uint64_t child;
    return tx_u64map_get(&t->edges, (uint64_t)node << 8 | b, &child) ? (int64_t)child : -1;
}
void tx_trie_free(struct tx_trie *t);

/* ---- JSON helpers -------------------------------------------------------------------
 * `file` names the tokenizer.json in messages; `where` is the JSON path of the
 * object being read ("model", "normalizer.normalizers[1]"). A missing
 * optional field (or null) takes the default; a field of the wrong type is
 * VP_ERROR_BAD_INPUT naming file and path. */
struct tx_json {
    const char *file;
};
vp_status tx_bad(const struct tx_json *j, const char *where, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* VP_ERROR_UNSUPPORTED: `<what> "<name>" is not supported`, with the path
 * and the list of what is supported. */
vp_status tx_unsupported(const struct tx_json *j, const char *what, const char *name, const char *where,
                         const char *supported);
vp_status tx_get_bool(const struct tx_json *j, const cJSON *o, const char *where, const char *key, bool def,
                      bool *out);
/* *out points into the JSON (NULL when missing and not required). */
vp_status tx_get_str(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                     bool required, const char **out);
vp_status tx_get_int(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                     bool required, int64_t def, int64_t *out);
/* A single character field (Metaspace replacement, Strip content). */
vp_status tx_get_char(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                      uint32_t *out);
/* "type" of a component object; NULL and an error when missing. */
vp_status tx_get_type(const struct tx_json *j, const cJSON *o, const char *where, const char **type);
void tx_path(char *buf, size_t size, const char *where, const char *key, int index);

/* ---- patterns (Split, Replace) --------------------------------------------------------
 * {"String": "..."} matches the literal text; {"Regex": "..."} a regex. */
struct tx_pattern {
    char *literal;           /* owned; NULL for a regex */
    size_t literal_len;
    struct rx_regex *regex;  /* owned */
};
vp_status tx_pattern_parse(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                           struct tx_pattern *out);
void tx_pattern_free(struct tx_pattern *p);

/* One split of a string: byte range and whether it was a pattern match. */
struct tx_span { size_t start, end; bool match; };
struct tx_scratch {
    struct rx_scratch rx;
    struct rx_match *m;
    size_t m_cap;
    struct tx_span *spans;
    size_t spans_cap;
};
void tx_scratch_free(struct tx_scratch *sc);
/* Hugging Face's Pattern::find_matches: spans covering s, matches flagged;
 * returns the count or -1 when out of memory. */
long tx_pattern_spans(const struct tx_pattern *p, const char *s, size_t len, struct tx_scratch *sc);

/* ---- components ------------------------------------------------------------------------ */

struct tx_normalizer;
vp_status tx_normalizer_parse(const struct tx_json *j, const cJSON *o, const char *where,
                              struct tx_normalizer **out);
/* out = normalize(s); out is cleared first. */
vp_status tx_normalizer_run(const struct tx_normalizer *n, const char *s, size_t len, struct tx_str *out,
                            struct tx_scratch *sc);
void tx_normalizer_free(struct tx_normalizer *n);

struct tx_pretok;
vp_status tx_pretok_parse(const struct tx_json *j, const cJSON *o, const char *where, struct tx_pretok **out);
/* Splits every ordinary piece of `in` into `out` (cleared first); added
 * tokens pass through. */
vp_status tx_pretok_run(const struct tx_pretok *p, const struct tx_pieces *in, struct tx_pieces *out,
                        struct tx_scratch *sc);
void tx_pretok_free(struct tx_pretok *p);

struct tx_model;
vp_status tx_model_parse(const struct tx_json *j, const cJSON *o, struct tx_model **out);
/* Appends the ids of one pre-token. */
vp_status tx_model_tokenize(const struct tx_model *m, const char *s, size_t len, struct tx_ids *out);
int32_t tx_model_token_to_id(const struct tx_model *m, const char *s, size_t len);
const char *tx_model_id_to_token(const struct tx_model *m, int32_t id);
int32_t tx_model_vocab_size(const struct tx_model *m); /* largest id + 1 */
int32_t tx_model_unk_id(const struct tx_model *m);
const char *tx_model_type(const struct tx_model *m);
void tx_model_free(struct tx_model *m);

struct tx_decoder;
vp_status tx_decoder_parse(const struct tx_json *j, const cJSON *o, const char *where, struct tx_decoder **out);
/* Hugging Face's decode_chain: tokens in, tokens out (out cleared first). */
vp_status tx_decoder_run(const struct tx_decoder *d, const struct tx_pieces *in, struct tx_pieces *out,
                         struct tx_scratch *sc);
void tx_decoder_free(struct tx_decoder *d);

/* Post-processors work on "runs": consecutive ids sharing a type id. An
 * encoding is a list of runs, and a processor maps the list of encodings
 * (the text and the pair) to a new list, as Hugging Face's
 * process_encodings does; the tokenizer concatenates the result. */
struct tx_post;
struct tx_run {
    const int32_t *ids;
    int n;
    int32_t type_id;
    bool special;
};
enum { TX_MAX_RUNS = 16, TX_MAX_ENCODINGS = 32 };
struct tx_encoding {
    struct tx_run runs[TX_MAX_RUNS];
    int n;
};
struct tx_encodings {
    struct tx_encoding v[TX_MAX_ENCODINGS];
    int n;
};
vp_status tx_post_parse(const struct tx_json *j, const cJSON *o, const char *where, struct tx_post **out);
/* VP_ERROR_BAD_INPUT when an id it inserts is >= vocab_size. */
vp_status tx_post_check_ids(const struct tx_json *j, const struct tx_post *p, const char *where, int32_t vocab_size);
/* Number of special tokens the processor adds (used by truncation). */
int tx_post_added(const struct tx_post *p, bool pair);
vp_status tx_post_run(const struct tx_post *p, struct tx_encodings *e, bool add_special_tokens);
/* The [CLS]/[SEP]-like ids the processor uses, and the template's first and
 * last special tokens; -1 when it has none. */
void tx_post_special_ids(const struct tx_post *p, int32_t *cls, int32_t *sep, int32_t *first, int32_t *last);
void tx_post_free(struct tx_post *p);

/* ---- the tokenizer ----------------------------------------------------------------------- */

/* An entry of "added_tokens": matched in the text before the model runs. */
struct tx_added {
    char *content;       /* as written in tokenizer.json */
    char *match;         /* what is searched for: content, normalized when `normalized` */
    size_t match_len;
    int32_t id;
    bool special, single_word, lstrip, rstrip, normalized;
};

struct tok_tokenizer {
    char *name;                         /* the file, for messages */
    struct tx_normalizer *normalizer;   /* NULL: none (likewise below) */
    struct tx_pretok *pretok;
    struct tx_model *model;
    struct tx_post *post;
    struct tx_decoder *decoder;
    struct tx_added *added;
    int n_added;
    struct tx_trie raw_trie, norm_trie; /* added tokens (index into added) by match text */
    struct tx_strmap added_ids;         /* content -> id */
    int32_t *added_of_id;               /* (vocab_size) index into added, -1 */
    int32_t vocab_size;
    struct tok_special_ids special_ids;
};

/* Reads "added_tokens" (after the normalizer and model are loaded). */
vp_status tx_added_parse(const struct tx_json *j, const cJSON *list, struct tok_tokenizer *tok);
/* Cuts the added tokens of `trie` out of s: pieces for the text between
 * them (added_id -1) and for each token, appended to out. */
bool tx_added_split(const struct tok_tokenizer *tok, const struct tx_trie *trie, const char *s, size_t len,
                    bool at_start, struct tx_pieces *out);

/* GPT-2's byte <-> printable character table (ByteLevel). */
uint32_t tx_byte_to_char(uint8_t b);
int tx_char_to_byte(uint32_t cp); /* -1 for a character outside the table */

/* Appends s to out, replacing each maximal invalid UTF-8 subpart by U+FFFD. */
bool tx_add_lossy(struct tx_str *out, const char *s, size_t len);

#endif
