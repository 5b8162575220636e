/* Model dispatch, vocabularies, WordPiece and WordLevel. BPE and Unigram
 * live in model_bpe.c and model_unigram.c. */
#include "text_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_VOCAB = 1 << 26 };

bool model_set_name(struct tx_model *m, int32_t id, const char *s, size_t len) {
    size_t off = m->names.len;
    if (off > UINT32_MAX - len - 1 || !tx_str_add(&m->names, s, len) || !tx_str_add(&m->names, "", 1)) return false;
    m->name_off[id] = (uint32_t)off;
    return true;
}

void model_find_byte_ids(struct tx_model *m) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_ids[b] = tx_strmap_get(&m->vocab, name, 6);
    }
}

/* {"token": id, ...}; ids need not be dense. */
vp_status model_parse_vocab_object(const struct tx_json *j, const cJSON *o, struct tx_model *m) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(o, "vocab");
    if (!cJSON_IsObject(vocab)) return tx_bad(j, "model", "vocab", "must be an object mapping each token to its id");
    int32_t max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(v >= 0 && v < MAX_VOCAB) || floor(v) != v)
            return tx_bad(j, "model.vocab", e->string, "must be a token id in 0..%d", MAX_VOCAB - 1);
        if ((int32_t)v > max_id) max_id = (int32_t)v;
    }
    m->n_ids = max_id + 1;
    if (m->n_ids && !(m->name_off = malloc((size_t)m->n_ids * sizeof *m->name_off)))
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", j->file);
    for (int32_t i = 0; i < m->n_ids; i++) m->name_off[i] = UINT32_MAX;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        size_t len = strlen(e->string);
        if (!tx_strmap_put(&m->vocab, e->string, len, id) || !model_set_name(m, id, e->string, len))
            return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", j->file);
    }
    return VP_OK;
}

static vp_status dup_opt(const struct tx_json *j, const cJSON *o, const char *key, const char *def, char **out) {
    const char *s;
    vp_status st = tx_get_str(j, o, "model", key, false, &s);
    if (st != VP_OK) return st;
    if (!s) s = def;
    if (s && !(*out = strdup(s))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    return VP_OK;
}

static vp_status parse_wordpiece(const struct tx_json *j, const cJSON *o, struct tx_model *m) {
    vp_status s = model_parse_vocab_object(j, o, m);
    char *unk = NULL;
    if (s == VP_OK) s = dup_opt(j, o, "unk_token", "[UNK]", &unk);
    if (s == VP_OK) s = dup_opt(j, o, "continuing_subword_prefix", "##", &m->prefix);
    if (s == VP_OK) s = tx_get_int(j, o, "model", "max_input_chars_per_word", false, 100, &m->max_chars);
    if (s == VP_OK) m->unk_id = tx_strmap_get(&m->vocab, unk, strlen(unk));
    free(unk);
    return s;
}

static vp_status parse_wordlevel(const struct tx_json *j, const cJSON *o, struct tx_model *m) {
    vp_status s = model_parse_vocab_object(j, o, m);
    char *unk = NULL;
    if (s == VP_OK) s = dup_opt(j, o, "unk_token", "<unk>", &unk);
    if (s == VP_OK) m->unk_id = tx_strmap_get(&m->vocab, unk, strlen(unk));
    free(unk);
    return s;
}

vp_status tx_model_parse(const struct tx_json *j, const cJSON *o, struct tx_model **out) {
    *out = NULL;
    if (!cJSON_IsObject(o)) return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"model\" is missing or not an object", j->file);
    const char *type;
    vp_status s = tx_get_str(j, o, "model", "type", false, &type);
    if (s != VP_OK) return s;
    if (!type) { /* files written before "type" existed */
        const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(o, "vocab");
        type = cJSON_GetObjectItemCaseSensitive(o, "merges") ? "BPE"
               : cJSON_IsArray(vocab)                          ? "Unigram"
               : cJSON_GetObjectItemCaseSensitive(o, "max_input_chars_per_word") ? "WordPiece"
                                                                                 : "WordLevel";
    }
    struct tx_model *m = calloc(1, sizeof *m);
    if (!m) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    m->unk_id = -1;
    for (int b = 0; b < 256; b++) m->byte_ids[b] = -1;
    if (strcmp(type, "BPE") == 0) m->kind = MODEL_BPE, s = model_bpe_parse(j, o, m);
    else if (strcmp(type, "WordPiece") == 0) m->kind = MODEL_WORDPIECE, s = parse_wordpiece(j, o, m);
    else if (strcmp(type, "WordLevel") == 0) m->kind = MODEL_WORDLEVEL, s = parse_wordlevel(j, o, m);
    else if (strcmp(type, "Unigram") == 0) m->kind = MODEL_UNIGRAM, s = model_unigram_parse(j, o, m);
    else s = tx_unsupported(j, "model", type, "model", "the models BPE, WordPiece, WordLevel and Unigram");
    if (s != VP_OK) {
        tx_model_free(m);
        return s;
    }
    *out = m;
    return VP_OK;
}

void tx_model_free(struct tx_model *m) {
    if (!m) return;
    tx_strmap_free(&m->vocab);
    tx_str_free(&m->names);
    free(m->name_off);
    tx_u64map_free(&m->merges);
    free(m->prefix);
    free(m->unk_token);
    free(m->suffix);
    free(m->scores);
    tx_trie_free(&m->trie);
    free(m);
}

/* ---- WordPiece and WordLevel ------------------------------------------------------------ */

static vp_status missing_unk(const struct tx_model *m) {
    return vp_fail(VP_ERROR_BAD_INPUT,
                   "the %s model met a word it cannot tokenize and its unknown token is not in the vocabulary; "
                   "fix \"model.unk_token\" in tokenizer.json",
                   tx_model_type(m));
}

/* Greedy longest match from the left; continuing pieces carry the prefix;
 * one unmatched position makes the whole word unknown. */
static vp_status wordpiece_tokenize(const struct tx_model *m, const char *s, size_t len, struct tx_ids *out) {
    size_t chars = 0;
    for (size_t i = 0; i < len; i++) chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    size_t first = out->n;
    bool bad = chars > (size_t)(m->max_chars < 0 ? 0 : m->max_chars);
    struct tx_str buf = {0};
    size_t plen = strlen(m->prefix);
    for (size_t start = 0; start < len && !bad;) {
        size_t end = len;
        int32_t id = -1;
        while (start < end) {
            buf.len = 0;
            if ((start > 0 && !tx_str_add(&buf, m->prefix, plen)) || !tx_str_add(&buf, s + start, end - start)) {
                tx_str_free(&buf);
                return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
            }
            if ((id = tx_strmap_get(&m->vocab, buf.s, buf.len)) >= 0) break;
            do end--;
            while (end > start && ((unsigned char)s[end] & 0xC0) == 0x80);
        }
        if (id < 0) bad = true;
        else if (!tx_ids_add(out, id)) {
            tx_str_free(&buf);
            return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
        }
        start = end;
    }
    tx_str_free(&buf);
    if (!bad) return VP_OK;
    out->n = first;
    if (m->unk_id < 0) return missing_unk(m);
    return tx_ids_add(out, m->unk_id) ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
}

vp_status tx_model_tokenize(const struct tx_model *m, const char *s, size_t len, struct tx_ids *out) {
    if (!len) return VP_OK;
    switch (m->kind) {
    case MODEL_BPE: return model_bpe_tokenize(m, s, len, out);
    case MODEL_UNIGRAM: return model_unigram_tokenize(m, s, len, out);
    case MODEL_WORDPIECE: return wordpiece_tokenize(m, s, len, out);
    case MODEL_WORDLEVEL: {
        int32_t id = tx_strmap_get(&m->vocab, s, len);
        if (id < 0 && (id = m->unk_id) < 0) return missing_unk(m);
        return tx_ids_add(out, id) ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    }
    }
    return VP_OK;
}

int32_t tx_model_token_to_id(const struct tx_model *m, const char *s, size_t len) {
    return tx_strmap_get(&m->vocab, s, len);
}

const char *tx_model_id_to_token(const struct tx_model *m, int32_t id) {
    if (id < 0 || id >= m->n_ids || m->name_off[id] == UINT32_MAX) return NULL;
    return m->names.s + m->name_off[id];
}

int32_t tx_model_vocab_size(const struct tx_model *m) { return m->n_ids; }
int32_t tx_model_unk_id(const struct tx_model *m) { return m->unk_id; }

const char *tx_model_type(const struct tx_model *m) {
    static const char *const names[] = {"BPE", "WordPiece", "WordLevel", "Unigram"};
    return names[m->kind];
}
