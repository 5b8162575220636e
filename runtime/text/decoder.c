/* Decoders: token strings -> text, as Hugging Face's decoders/ (decode_chain
 * on a list of tokens; the tokenizer joins the result). */
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum decoder_kind {
    DEC_BPE, DEC_BYTE_LEVEL, DEC_WORDPIECE, DEC_METASPACE, DEC_REPLACE, DEC_FUSE, DEC_STRIP, DEC_BYTE_FALLBACK,
    DEC_SEQUENCE
};

struct tx_decoder {
    enum decoder_kind kind;
    char *text;               /* BPE suffix, WordPiece prefix, Replace content */
    bool cleanup;             /* WordPiece */
    uint32_t ch;              /* Metaspace replacement, Strip content */
    bool prepend;             /* Metaspace: prepend_scheme != never */
    int64_t start, stop;      /* Strip */
    struct tx_pattern pattern; /* Replace */
    struct tx_decoder **seq;
    int n_seq;
};

static const char supported[] =
    "the decoders ByteLevel, WordPiece, Metaspace, BPEDecoder, ByteFallback, Fuse, Strip, Replace and Sequence";

void tx_decoder_free(struct tx_decoder *d) {
    if (!d) return;
    for (int i = 0; i < d->n_seq; i++) tx_decoder_free(d->seq[i]);
    free(d->seq);
    free(d->text);
    tx_pattern_free(&d->pattern);
    free(d);
}

static vp_status dup_str(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                         const char *def, char **out) {
    const char *s;
    vp_status st = tx_get_str(j, o, where, key, def == NULL, &s);
    if (st != VP_OK) return st;
    if (!(*out = strdup(s ? s : def))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    return VP_OK;
}

static vp_status parse_metaspace(const struct tx_json *j, const cJSON *o, const char *where, struct tx_decoder *d) {
    const char *scheme;
    bool add_prefix;
    vp_status s = tx_get_char(j, o, where, "replacement", &d->ch);
    if (s == VP_OK) s = tx_get_str(j, o, where, "prepend_scheme", false, &scheme);
    if (s == VP_OK) s = tx_get_bool(j, o, where, "add_prefix_space", true, &add_prefix);
    if (s != VP_OK) return s;
    if (scheme && strcmp(scheme, "always") && strcmp(scheme, "first") && strcmp(scheme, "never"))
        return tx_bad(j, where, "prepend_scheme", "is \"%s\"; expected always, first or never", scheme);
    d->prepend = scheme ? strcmp(scheme, "never") != 0 : add_prefix;
    return VP_OK;
}

static vp_status parse_sequence(const struct tx_json *j, const cJSON *o, const char *where, struct tx_decoder *d) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "decoders");
    if (!cJSON_IsArray(list)) return tx_bad(j, where, "decoders", "must be a list of decoders");
    int count = cJSON_GetArraySize(list);
    if (count && !(d->seq = calloc((size_t)count, sizeof *d->seq)))
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    char base[256], path[256];
    tx_path(base, sizeof base, where, "decoders", 0);
    for (const cJSON *e = list->child; e; e = e->next) {
        tx_path(path, sizeof path, base, NULL, d->n_seq);
        vp_status s = tx_decoder_parse(j, e, path, &d->seq[d->n_seq]);
        if (s != VP_OK) return s;
        d->n_seq++;
    }
    return VP_OK;
}

static vp_status parse_fields(const struct tx_json *j, const cJSON *o, const char *where, const char *type,
                              struct tx_decoder *d) {
    vp_status s;
    if (strcmp(type, "BPEDecoder") == 0) {
        d->kind = DEC_BPE;
        return dup_str(j, o, where, "suffix", "</w>", &d->text);
    }
    if (strcmp(type, "ByteLevel") == 0) d->kind = DEC_BYTE_LEVEL;
    else if (strcmp(type, "WordPiece") == 0) {
        d->kind = DEC_WORDPIECE;
        if ((s = dup_str(j, o, where, "prefix", "##", &d->text)) != VP_OK) return s;
        return tx_get_bool(j, o, where, "cleanup", true, &d->cleanup);
    } else if (strcmp(type, "Metaspace") == 0) {
        d->kind = DEC_METASPACE;
        return parse_metaspace(j, o, where, d);
    } else if (strcmp(type, "Replace") == 0) {
        d->kind = DEC_REPLACE;
        if ((s = tx_pattern_parse(j, o, where, "pattern", &d->pattern)) != VP_OK) return s;
        return dup_str(j, o, where, "content", NULL, &d->text);
    } else if (strcmp(type, "Fuse") == 0) d->kind = DEC_FUSE;
    else if (strcmp(type, "ByteFallback") == 0) d->kind = DEC_BYTE_FALLBACK;
    else if (strcmp(type, "Strip") == 0) {
        d->kind = DEC_STRIP;
        if ((s = tx_get_char(j, o, where, "content", &d->ch)) != VP_OK ||
            (s = tx_get_int(j, o, where, "start", true, 0, &d->start)) != VP_OK ||
            (s = tx_get_int(j, o, where, "stop", true, 0, &d->stop)) != VP_OK)
            return s;
        if (d->start < 0 || d->stop < 0) return tx_bad(j, where, "start", "and \"stop\" must not be negative");
    } else if (strcmp(type, "Sequence") == 0) {
        d->kind = DEC_SEQUENCE;
        return parse_sequence(j, o, where, d);
    } else {
        return tx_unsupported(j, "decoder", type, where, supported);
    }
    return VP_OK;
}

vp_status tx_decoder_parse(const struct tx_json *j, const cJSON *o, const char *where, struct tx_decoder **out) {
    *out = NULL;
    const char *type;
    vp_status s = tx_get_type(j, o, where, &type);
    if (s != VP_OK) return s;
    struct tx_decoder *d = calloc(1, sizeof *d);
    if (!d) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    if ((s = parse_fields(j, o, where, type, d)) != VP_OK) {
        tx_decoder_free(d);
        return s;
    }
    *out = d;
    return VP_OK;
}

/* ---- running ---------------------------------------------------------------------------- */

/* Appends s with every occurrence of `from` replaced by `to` (left to right,
 * non-overlapping, like Rust's str::replace). */
static bool add_replaced(struct tx_str *out, const char *s, size_t len, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to), i = 0;
    while (i < len) {
        const char *at = fl ? memmem(s + i, len - i, from, fl) : NULL;
        if (!at) break;
        if (!tx_str_add(out, s + i, (size_t)(at - (s + i))) || !tx_str_add(out, to, tl)) return false;
        i = (size_t)(at - s) + fl;
    }
    return tx_str_add(out, s + i, len - i);
}

/* tokenizers' wordpiece::cleanup: undo the spaces the decoder put before
 * punctuation and English contractions. */
static bool cleanup(struct tx_str *t) {
    static const char *const rules[][2] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"}, {" 'm", "'m"},
        {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    struct tx_str tmp = {0};
    bool ok = true;
    for (size_t r = 0; r < sizeof rules / sizeof rules[0] && ok; r++) {
        tmp.len = 0;
        if (!(ok = tx_str_add(&tmp, "", 0) && add_replaced(&tmp, t->s, t->len, rules[r][0], rules[r][1]))) break;
        t->len = 0;
        ok = tx_str_add(t, tmp.s, tmp.len);
    }
    tx_str_free(&tmp);
    return ok;
}

static bool byte_token(const char *s, size_t len, uint8_t *b) {
    /* "<0xNN>", read as Rust's u8::from_str_radix does (a leading '+' is allowed). */
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    int v = 0, digits = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (x < 0 && !(c == '+' && i == 3)) return false;
        if (x >= 0) v = v * 16 + x, digits++;
    }
    *b = (uint8_t)v;
    return digits > 0;
}

static bool flush_bytes(struct tx_pieces *out, struct tx_str *bytes) {
    bool ok = true;
    if (!bytes->len) return true;
    if (uc_utf8_valid(bytes->s, bytes->len) == bytes->len) ok = tx_pieces_add(out, bytes->s, bytes->len, -1, false);
    else
        for (size_t i = 0; i < bytes->len && ok; i++) ok = tx_pieces_add(out, "\xEF\xBF\xBD", 3, -1, false);
    bytes->len = 0;
    return ok;
}

static bool run_one(const struct tx_decoder *d, const struct tx_pieces *in, struct tx_pieces *out,
                    struct tx_scratch *sc) {
    struct tx_str t = {0};
    bool ok = true;
    switch (d->kind) {
    case DEC_BYTE_LEVEL: case DEC_FUSE: {
        /* Everything becomes one token. */
        struct tx_str raw = {0};
        for (size_t i = 0; i < in->n && ok; i++) {
            const char *s = tx_piece_text(in, i);
            size_t len = in->v[i].len, mark = raw.len;
            if (d->kind == DEC_FUSE) {
                ok = tx_str_add(&raw, s, len);
                continue;
            }
            bool all = true;
            for (size_t k = 0; k < len && all && ok;) {
                uint32_t c;
                k += uc_decode(s, k, &c);
                int b = tx_char_to_byte(c);
                char byte = (char)b;
                all = b >= 0;
                if (all) ok = tx_str_add(&raw, &byte, 1);
            }
            if (!all) { /* a character outside the byte alphabet: the token's own bytes */
                raw.len = mark;
                ok = tx_str_add(&raw, s, len);
            }
        }
        if (ok) ok = d->kind == DEC_FUSE ? tx_str_add(&t, raw.s ? raw.s : "", raw.len) : tx_add_lossy(&t, raw.s, raw.len);
        if (ok) ok = tx_pieces_add(out, t.s ? t.s : "", t.len, -1, false);
        tx_str_free(&raw);
        break;
    }
    case DEC_BYTE_FALLBACK: {
        struct tx_str bytes = {0};
        for (size_t i = 0; i < in->n && ok; i++) {
            uint8_t b;
            char c;
            if (byte_token(tx_piece_text(in, i), in->v[i].len, &b)) {
                c = (char)b;
                ok = tx_str_add(&bytes, &c, 1);
                continue;
            }
            ok = flush_bytes(out, &bytes) && tx_pieces_add(out, tx_piece_text(in, i), in->v[i].len, -1, false);
        }
        if (ok) ok = flush_bytes(out, &bytes);
        tx_str_free(&bytes);
        break;
    }
    default:
        for (size_t i = 0; i < in->n && ok; i++) {
            const char *s = tx_piece_text(in, i);
            size_t len = in->v[i].len;
            t.len = 0;
            ok = tx_str_add(&t, "", 0);
            if (d->kind == DEC_BPE) {
                ok = ok && add_replaced(&t, s, len, d->text, i + 1 == in->n ? "" : " ");
            } else if (d->kind == DEC_WORDPIECE) {
                size_t pl = strlen(d->text);
                if (i > 0 && len >= pl && memcmp(s, d->text, pl) == 0) s += pl, len -= pl;
                else if (i > 0) ok = tx_str_add(&t, " ", 1);
                ok = ok && tx_str_add(&t, s, len) && (!d->cleanup || cleanup(&t));
            } else if (d->kind == DEC_METASPACE) {
                for (size_t k = 0; k < len && ok;) {
                    uint32_t c;
                    size_t l = uc_decode(s, k, &c);
                    if (c != d->ch) ok = tx_str_add(&t, s + k, l);
                    else if (!(i == 0 && d->prepend)) ok = tx_str_add(&t, " ", 1);
                    k += l;
                }
            } else if (d->kind == DEC_REPLACE) {
                long n = tx_pattern_spans(&d->pattern, s, len, sc);
                ok = n >= 0;
                for (long k = 0; k < n && ok; k++) {
                    const struct tx_span *sp = &sc->spans[k];
                    ok = sp->match ? tx_str_add(&t, d->text, strlen(d->text)) : tx_str_add(&t, s + sp->start, sp->end - sp->start);
                }
            } else if (d->kind == DEC_STRIP) {
                /* Cut up to `start` leading and `stop` trailing copies of the character. */
                size_t a = 0, b = len;
                uint32_t c;
                for (int64_t k = 0; k < d->start && a < b; k++) {
                    size_t l = uc_decode(s, a, &c);
                    if (c != d->ch) break;
                    a += l;
                }
                for (int64_t k = 0; k < d->stop && b > a; k++) {
                    size_t q = b - 1;
                    while (q > a && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                    uc_decode(s, q, &c);
                    if (c != d->ch) break;
                    b = q;
                }
                ok = ok && tx_str_add(&t, s + a, b - a);
            }
            if (ok) ok = tx_pieces_add(out, t.s, t.len, -1, false);
        }
        break;
    }
    tx_str_free(&t);
    return ok;
}

vp_status tx_decoder_run(const struct tx_decoder *d, const struct tx_pieces *in, struct tx_pieces *out,
                         struct tx_scratch *sc) {
    tx_pieces_clear(out);
    bool ok = true;
    if (d->kind != DEC_SEQUENCE) {
        ok = run_one(d, in, out, sc);
    } else {
        struct tx_pieces a = {0};
        for (size_t i = 0; i < in->n && ok; i++) ok = tx_pieces_add(out, tx_piece_text(in, i), in->v[i].len, -1, false);
        for (int k = 0; k < d->n_seq && ok; k++) {
            struct tx_pieces t = a;
            a = *out;
            *out = t;
            vp_status s = tx_decoder_run(d->seq[k], &a, out, sc);
            if (s != VP_OK) {
                tx_pieces_free(&a);
                return s;
            }
        }
        tx_pieces_free(&a);
    }
    return ok ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory decoding");
}
