/* Masked-LM data: a plain-text corpus indexed by line, and BERT's masking
 * from a counter-based generator. */
#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct train_corpus {
    char *path;
    FILE *f;
    const struct tok_tokenizer *tok;
    int max_len, vocab, longest;
    uint64_t count, cap, *offset, *line;
    char *buf;
    size_t buf_cap;
    struct tok_encoding enc;
};

/* Strips the line end; true when anything but white space remains. */
static bool trim_line(char *s, ssize_t *n) {
    while (*n > 0 && (s[*n - 1] == '\n' || s[*n - 1] == '\r')) s[--*n] = 0;
    for (ssize_t i = 0; i < *n; i++)
        if (s[i] != ' ' && s[i] != '\t') return true;
    return false;
}

static vp_status encode_line(struct train_corpus *c, uint64_t line) {
    vp_status s = tok_encode(c->tok, c->buf, NULL, true, c->max_len, &c->enc);
    if (s != VP_OK) return vp_fail_context(s, "%s:%llu", c->path, (unsigned long long)line + 1);
    for (int k = 0; k < c->enc.len; k++)
        if (c->enc.ids[k] < 0 || c->enc.ids[k] >= c->vocab)
            return vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: token id %d is outside the model's vocabulary of %d",
                           c->path, (unsigned long long)line + 1, c->enc.ids[k], c->vocab);
    return VP_OK;
}

vp_status train_corpus_open(const char *path, const struct tok_tokenizer *tok, int max_len, int vocab_size,
                            struct train_corpus **out) {
    *out = NULL;
    struct train_corpus *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening %s", path);
    }
    c->tok = tok;
    c->max_len = max_len;
    c->vocab = vocab_size;
    vp_status s = VP_OK;
    if (!(c->f = fopen(path, "rb"))) s = vp_fail(VP_ERROR_IO, "cannot open %s", path);
    uint64_t offset = 0, line = 0;
    while (s == VP_OK) {
        ssize_t n = getline(&c->buf, &c->buf_cap, c->f);
        if (n < 0) break;
        const uint64_t start = offset;
        offset += (uint64_t)n;
        const uint64_t here = line++;
        if (!trim_line(c->buf, &n)) continue;
        if ((s = encode_line(c, here)) != VP_OK) break;
        if (c->count == c->cap) {
            uint64_t cap = c->cap ? c->cap * 2 : 1024;
            uint64_t *o = realloc(c->offset, cap * sizeof *o);
            if (o) c->offset = o;
            uint64_t *l = o ? realloc(c->line, cap * sizeof *l) : NULL;
            if (l) c->line = l;
            if (!o || !l) {
                s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory indexing %s", path);
                break;
            }
            c->cap = cap;
        }
        c->offset[c->count] = start;
        c->line[c->count++] = here;
        if (c->enc.len > c->longest) c->longest = c->enc.len;
    }
    if (s == VP_OK && c->f && ferror(c->f)) s = vp_fail(VP_ERROR_IO, "reading %s failed", path);
    if (s == VP_OK && c->count == 0) s = vp_fail(VP_ERROR_BAD_INPUT, "%s holds no text (one example per line)", path);
    if (s != VP_OK) {
        train_corpus_close(c);
        return s;
    }
    *out = c;
    return VP_OK;
}

void train_corpus_close(struct train_corpus *c) {
    if (!c) return;
    if (c->f) fclose(c->f);
    free(c->offset);
    free(c->line);
    free(c->buf);
    tok_encoding_free(&c->enc);
    free(c->path);
    free(c);
}

uint64_t train_corpus_count(const struct train_corpus *c) { return c->count; }
int train_corpus_longest(const struct train_corpus *c) { return c->longest; }
const char *train_corpus_path(const struct train_corpus *c) { return c->path; }

/* Example i, tokenized into c->enc. */
static vp_status corpus_get(struct train_corpus *c, uint64_t i) {
    if (i >= c->count)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: example %llu of %llu", c->path, (unsigned long long)i,
                       (unsigned long long)c->count);
    if (fseeko(c->f, (off_t)c->offset[i], SEEK_SET) != 0) return vp_fail(VP_ERROR_IO, "seeking in %s failed", c->path);
    ssize_t n = getline(&c->buf, &c->buf_cap, c->f);
    if (n < 0 || !trim_line(c->buf, &n))
        return vp_fail(VP_ERROR_IO, "%s changed while training: line %llu is gone", c->path,
                       (unsigned long long)c->line[i] + 1);
    return encode_line(c, c->line[i]);
}

/* ------------------------------------------------------------------------
 * Masking
 * ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Draw `k` of the stream keyed by (key, position): a uniform double in [0, 1). */
static double uniform(uint64_t key, uint64_t pos, uint64_t k) {
    const uint64_t r = mix64(key ^ mix64((pos << 2 | k) + 0x9e3779b97f4a7c15ull));
    return (double)(r >> 11) * 0x1.0p-53;
}

int mlm_mask_row(const struct mlm_masking *m, uint64_t epoch, uint64_t example, int32_t *ids,
                 const uint8_t *special, int len, int32_t *labels) {
    const uint64_t key = mix64(mix64(mix64(m->seed ^ 0x5bd1e9955bd1e995ull) ^ epoch) ^ example);
    int chosen = 0;
    for (int k = 0; k < len; k++) {
        labels[k] = ENCODER_IGNORE_INDEX;
        if (special[k] || uniform(key, (uint64_t)k, 0) >= m->prob) continue;
        labels[k] = ids[k];
        chosen++;
        const double how = uniform(key, (uint64_t)k, 1);
        if (how < 0.8) {
            ids[k] = m->mask_id;
        } else if (how < 0.9) {
            /* A random non-special token: draws until one is found (a
             * vocabulary of only special tokens keeps the original). */
            for (uint64_t t = 0; t < 64; t++) {
                const int32_t id = (int32_t)(uniform(key ^ mix64(t + 1), (uint64_t)k, 2) * m->vocab);
                if (!m->tok || !tok_is_special(m->tok, id)) {
                    ids[k] = id;
                    break;
                }
            }
        }
    }
    return chosen;
}

vp_status train_corpus_masking(const struct train_corpus *c, double prob, uint64_t seed,
                               struct mlm_masking *out) {
    const int32_t mask = tok_special_ids(c->tok).mask;
    if (mask < 0 || mask >= c->vocab)
        return vp_fail(VP_ERROR_BAD_INPUT, "the tokenizer for %s has no mask token ([MASK] or <mask>) in the "
                       "model's vocabulary", c->path);
    int32_t v = tok_vocab_size(c->tok);
    if (v > c->vocab) v = c->vocab;
    *out = (struct mlm_masking){.prob = prob, .seed = seed, .mask_id = mask, .vocab = v, .tok = c->tok};
    return VP_OK;
}

vp_status train_batch_fill_mlm(struct train_batch *b, struct train_corpus *c, const uint64_t *indices,
                               int count, int pad_id, int max_len, int pad_multiple,
                               const struct mlm_masking *m, uint64_t epoch) {
    if (count < 1 || count > b->B)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "a batch of %d rows holds %d examples", b->B, count);
    int longest = 1;
    for (int r = 0; r < count; r++) {
        vp_status s = corpus_get(c, indices[r]);
        if (s != VP_OK) return s;
        b->lens[r] = c->enc.len < b->cap_T ? c->enc.len : b->cap_T;
        if (b->lens[r] > longest) longest = b->lens[r];
    }
    const int T = train_batch_length(longest, max_len, pad_multiple);
    if (T > b->cap_T)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "a batch of length %d is longer than the %d planned", T, b->cap_T);
    b->T = T;
    b->rows = count;
    for (int r = 0; r < count; r++) {
        vp_status s = corpus_get(c, indices[r]); /* sequential after the first: cheap re-read */
        if (s != VP_OK) return s;
        int len = c->enc.len < T ? c->enc.len : T;
        b->lens[r] = len;
        int32_t *ids = b->ids + (size_t)r * T, *types = b->types + (size_t)r * T, *labels = b->labels + (size_t)r * T;
        uint8_t *mask = b->mask + (size_t)r * T;
        memcpy(ids, c->enc.ids, (size_t)len * sizeof *ids);
        mlm_mask_row(m, epoch, indices[r], ids, c->enc.special, len, labels);
        for (int k = 0; k < T; k++) {
            types[k] = k < len && c->enc.type_ids ? c->enc.type_ids[k] : 0;
            mask[k] = k < len;
            if (k >= len) ids[k] = pad_id, labels[k] = ENCODER_IGNORE_INDEX;
        }
        b->index[r] = indices[r];
    }
    for (int r = count; r < b->B; r++) {
        memcpy(b->ids + (size_t)r * T, b->ids, (size_t)T * sizeof *b->ids);
        memcpy(b->types + (size_t)r * T, b->types, (size_t)T * sizeof *b->types);
        memcpy(b->mask + (size_t)r * T, b->mask, (size_t)T);
        for (int k = 0; k < T; k++) b->labels[(size_t)r * T + k] = ENCODER_IGNORE_INDEX;
        b->index[r] = UINT64_MAX;
        b->lens[r] = b->lens[0];
    }
    return VP_OK;
}
