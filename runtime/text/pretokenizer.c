/* Pre-tokenizers: split normalized pieces into words, as Hugging Face's
 * pre_tokenizers/ do. A split is a list of spans (matches and the text
 * between them) folded by a delimiter behaviour; empty pieces are dropped. */
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum pretok_kind {
    PT_BYTE_LEVEL, PT_WHITESPACE, PT_WHITESPACE_SPLIT, PT_BERT, PT_METASPACE, PT_SPLIT, PT_DIGITS,
    PT_PUNCTUATION, PT_DELIMITER, PT_FIXED_LENGTH, PT_SEQUENCE
};

enum behavior { B_REMOVED, B_ISOLATED, B_MERGED_WITH_PREVIOUS, B_MERGED_WITH_NEXT, B_CONTIGUOUS };
enum prepend { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

struct tx_pretok {
    enum pretok_kind kind;
    bool add_prefix_space, use_regex;   /* ByteLevel */
    uint32_t ch;                        /* Metaspace replacement, CharDelimiterSplit delimiter */
    enum prepend prepend;               /* Metaspace */
    bool split;                         /* Metaspace */
    struct tx_pattern pattern;          /* Split; ByteLevel and Whitespace regexes */
    enum behavior behavior;             /* Split, Punctuation */
    bool invert;                        /* Split */
    bool individual_digits;             /* Digits */
    int64_t length;                     /* FixedLength */
    struct tx_pretok **seq;
    int n_seq;
};

/* GPT-2's pattern, as tokenizers' ByteLevel compiles it. */
static const char gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char supported[] =
    "the pre-tokenizers ByteLevel, Whitespace, WhitespaceSplit, BertPreTokenizer, Metaspace, Split, Digits, "
    "Punctuation, CharDelimiterSplit, FixedLength and Sequence";

void tx_pretok_free(struct tx_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n_seq; i++) tx_pretok_free(p->seq[i]);
    free(p->seq);
    tx_pattern_free(&p->pattern);
    free(p);
}

static vp_status parse_behavior(const struct tx_json *j, const cJSON *o, const char *where, bool required,
                                enum behavior def, enum behavior *out) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *s;
    vp_status st = tx_get_str(j, o, where, "behavior", required, &s);
    *out = def;
    if (st != VP_OK || !s) return st;
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum behavior)i;
            return VP_OK;
        }
    return tx_bad(j, where, "behavior",
                  "is \"%s\"; expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous", s);
}

static vp_status compile_builtin(const char *pattern, struct tx_pattern *out) {
    char err[256];
    if (!(out->regex = rx_compile(pattern, err, sizeof err))) return vp_fail(VP_ERROR_HOST_MEMORY, "%s", err);
    return VP_OK;
}

static vp_status parse_metaspace(const struct tx_json *j, const cJSON *o, const char *where, struct tx_pretok *p) {
    vp_status s = tx_get_char(j, o, where, "replacement", &p->ch);
    const char *scheme;
    bool add_prefix = true;
    const cJSON *aps = cJSON_GetObjectItemCaseSensitive(o, "add_prefix_space");
    if (s == VP_OK) s = tx_get_bool(j, o, where, "split", true, &p->split);
    if (s == VP_OK) s = tx_get_bool(j, o, where, "add_prefix_space", true, &add_prefix);
    if (s == VP_OK) s = tx_get_str(j, o, where, "prepend_scheme", false, &scheme);
    if (s != VP_OK) return s;
    p->prepend = PREPEND_ALWAYS;
    if (scheme) {
        if (strcmp(scheme, "always") == 0) p->prepend = PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0) p->prepend = PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0) p->prepend = PREPEND_NEVER;
        else return tx_bad(j, where, "prepend_scheme", "is \"%s\"; expected always, first or never", scheme);
    }
    /* Older files: add_prefix_space instead of prepend_scheme. */
    if (aps && !cJSON_IsNull(aps) && !add_prefix) {
        if (p->prepend != PREPEND_NEVER && scheme)
            return tx_bad(j, where, "add_prefix_space", "is false but prepend_scheme is \"%s\"", scheme);
        p->prepend = PREPEND_NEVER;
    }
    return VP_OK;
}

static vp_status parse_sequence(const struct tx_json *j, const cJSON *o, const char *where, struct tx_pretok *p) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers");
    if (!cJSON_IsArray(list)) return tx_bad(j, where, "pretokenizers", "must be a list of pre-tokenizers");
    int count = cJSON_GetArraySize(list);
    if (count && !(p->seq = calloc((size_t)count, sizeof *p->seq)))
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    char base[256], path[256];
    tx_path(base, sizeof base, where, "pretokenizers", 0);
    for (const cJSON *e = list->child; e; e = e->next) {
        tx_path(path, sizeof path, base, NULL, p->n_seq);
        vp_status s = tx_pretok_parse(j, e, path, &p->seq[p->n_seq]);
        if (s != VP_OK) return s;
        p->n_seq++;
    }
    return VP_OK;
}

static vp_status parse_fields(const struct tx_json *j, const cJSON *o, const char *where, const char *type,
                              struct tx_pretok *p) {
    vp_status s = VP_OK;
    if (strcmp(type, "ByteLevel") == 0) {
        p->kind = PT_BYTE_LEVEL;
        if ((s = tx_get_bool(j, o, where, "add_prefix_space", true, &p->add_prefix_space)) != VP_OK ||
            (s = tx_get_bool(j, o, where, "use_regex", true, &p->use_regex)) != VP_OK)
            return s;
        return p->use_regex ? compile_builtin(gpt2_pattern, &p->pattern) : VP_OK;
    }
    if (strcmp(type, "Whitespace") == 0) {
        p->kind = PT_WHITESPACE;
        return compile_builtin("\\w+|[^\\w\\s]+", &p->pattern);
    }
    if (strcmp(type, "WhitespaceSplit") == 0) p->kind = PT_WHITESPACE_SPLIT;
    else if (strcmp(type, "BertPreTokenizer") == 0) p->kind = PT_BERT;
    else if (strcmp(type, "Metaspace") == 0) {
        p->kind = PT_METASPACE;
        return parse_metaspace(j, o, where, p);
    } else if (strcmp(type, "Split") == 0) {
        p->kind = PT_SPLIT;
        if ((s = tx_pattern_parse(j, o, where, "pattern", &p->pattern)) != VP_OK ||
            (s = parse_behavior(j, o, where, true, B_REMOVED, &p->behavior)) != VP_OK ||
            (s = tx_get_bool(j, o, where, "invert", false, &p->invert)) != VP_OK)
            return s;
    } else if (strcmp(type, "Digits") == 0) {
        p->kind = PT_DIGITS;
        return tx_get_bool(j, o, where, "individual_digits", false, &p->individual_digits);
    } else if (strcmp(type, "Punctuation") == 0) {
        p->kind = PT_PUNCTUATION;
        return parse_behavior(j, o, where, false, B_ISOLATED, &p->behavior);
    } else if (strcmp(type, "CharDelimiterSplit") == 0) {
        p->kind = PT_DELIMITER;
        return tx_get_char(j, o, where, "delimiter", &p->ch);
    } else if (strcmp(type, "FixedLength") == 0) {
        p->kind = PT_FIXED_LENGTH;
        if ((s = tx_get_int(j, o, where, "length", false, 5, &p->length)) != VP_OK) return s;
        if (p->length < 1) return tx_bad(j, where, "length", "must be at least 1");
    } else if (strcmp(type, "Sequence") == 0) {
        p->kind = PT_SEQUENCE;
        return parse_sequence(j, o, where, p);
    } else {
        return tx_unsupported(j, "pre-tokenizer", type, where, supported);
    }
    return VP_OK;
}

vp_status tx_pretok_parse(const struct tx_json *j, const cJSON *o, const char *where, struct tx_pretok **out) {
    *out = NULL;
    const char *type;
    vp_status s = tx_get_type(j, o, where, &type);
    if (s != VP_OK) return s;
    struct tx_pretok *p = calloc(1, sizeof *p);
    if (!p) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    if ((s = parse_fields(j, o, where, type, p)) != VP_OK) {
        tx_pretok_free(p);
        return s;
    }
    *out = p;
    return VP_OK;
}

/* ---- spans -------------------------------------------------------------------------- */

enum char_class { CC_WHITESPACE, CC_PUNCT, CC_NUMERIC, CC_EQUAL };

static bool char_is(enum char_class cc, uint32_t c, uint32_t ch) {
    switch (cc) {
    case CC_WHITESPACE: return uc_is_white_space(c);
    case CC_PUNCT:
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E) || uc_in(c, UC_MASK_P);
    case CC_NUMERIC: return uc_in(c, UC_MASK_N);
    case CC_EQUAL: return c == ch;
    }
    return false;
}

static bool add_span(struct tx_scratch *sc, long *n, size_t start, size_t end, bool match) {
    if ((size_t)*n == sc->spans_cap) {
        size_t nc = sc->spans_cap ? sc->spans_cap * 2 : 32;
        struct tx_span *ns = realloc(sc->spans, nc * sizeof *ns);
        if (!ns) return false;
        sc->spans = ns;
        sc->spans_cap = nc;
    }
    sc->spans[(*n)++] = (struct tx_span){start, end, match};
    return true;
}

/* A character pattern: every matching character is a match of its own. */
static long char_spans(enum char_class cc, uint32_t ch, const char *s, size_t len, struct tx_scratch *sc) {
    long n = 0;
    size_t prev = 0;
    if (!len) return add_span(sc, &n, 0, 0, false) ? 1 : -1;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t l = uc_decode(s, i, &c);
        if (char_is(cc, c, ch)) {
            if (prev != i && !add_span(sc, &n, prev, i, false)) return -1;
            if (!add_span(sc, &n, i, i + l, true)) return -1;
            prev = i + l;
        }
        i += l;
    }
    if (prev != len && !add_span(sc, &n, prev, len, false)) return -1;
    return n;
}

/* Folds spans by behaviour (NormalizedString::split), in place, and appends
 * the non-empty pieces to out. `map_bytes` applies the byte-level alphabet. */
static bool emit_spans(struct tx_span *v, long n, enum behavior b, const char *s, bool at_start,
                       bool map_bytes, struct tx_pieces *out) {
    long k = 0;
    bool prev_match = false;
    if (b == B_MERGED_WITH_NEXT) {
        /* Walk backwards: a match joins the piece after it. */
        long w = n;
        for (long i = n - 1; i >= 0; i--) {
            struct tx_span sp = v[i];
            if (sp.match && !prev_match && w < n) v[w].start = sp.start;
            else v[--w] = (struct tx_span){sp.start, sp.end, false};
            prev_match = sp.match;
        }
        memmove(v, v + w, (size_t)(n - w) * sizeof *v);
        k = n - w;
    } else {
        for (long i = 0; i < n; i++) {
            struct tx_span sp = v[i];
            bool remove = false;
            if (b == B_REMOVED) remove = sp.match;
            if ((b == B_CONTIGUOUS && sp.match == prev_match && k > 0) ||
                (b == B_MERGED_WITH_PREVIOUS && sp.match && !prev_match && k > 0)) {
                v[k - 1].end = sp.end;
            } else {
                v[k++] = (struct tx_span){sp.start, sp.end, remove};
            }
            prev_match = sp.match;
        }
    }
    for (long i = 0; i < k; i++) {
        if (v[i].match || v[i].end == v[i].start) continue; /* removed, or empty */
        bool first = at_start && v[i].start == 0;
        if (!map_bytes) {
            if (!tx_pieces_add(out, s + v[i].start, v[i].end - v[i].start, -1, first)) return false;
            continue;
        }
        /* Map into the buffer behind a new empty piece, then set its length. */
        if (!tx_pieces_add(out, "", 0, -1, first)) return false;
        for (size_t q = v[i].start; q < v[i].end; q++)
            if (!tx_str_add_cp(&out->buf, tx_byte_to_char((uint8_t)s[q]))) return false;
        out->v[out->n - 1].len = out->buf.len - out->v[out->n - 1].off;
    }
    return true;
}

/* ---- running ---------------------------------------------------------------------------- */

static bool split_piece(const struct tx_pretok *p, const char *s, size_t len, bool at_start, struct tx_pieces *out,
                        struct tx_scratch *sc, struct tx_str *tmp) {
    long n;
    switch (p->kind) {
    case PT_WHITESPACE_SPLIT:
        return (n = char_spans(CC_WHITESPACE, 0, s, len, sc)) >= 0 &&
               emit_spans(sc->spans, n, B_REMOVED, s, at_start, false, out);
    case PT_BERT: {
        /* Whitespace removed, then punctuation isolated within each word. */
        struct tx_pieces words = {0};
        bool ok = (n = char_spans(CC_WHITESPACE, 0, s, len, sc)) >= 0 &&
                  emit_spans(sc->spans, n, B_REMOVED, s, at_start, false, &words);
        for (size_t i = 0; ok && i < words.n; i++) {
            const char *w = tx_piece_text(&words, i);
            ok = (n = char_spans(CC_PUNCT, 0, w, words.v[i].len, sc)) >= 0 &&
                 emit_spans(sc->spans, n, B_ISOLATED, w, words.v[i].at_start, false, out);
        }
        tx_pieces_free(&words);
        return ok;
    }
    case PT_DIGITS:
        return (n = char_spans(CC_NUMERIC, 0, s, len, sc)) >= 0 &&
               emit_spans(sc->spans, n, p->individual_digits ? B_ISOLATED : B_CONTIGUOUS, s, at_start, false, out);
    case PT_PUNCTUATION:
        return (n = char_spans(CC_PUNCT, 0, s, len, sc)) >= 0 && emit_spans(sc->spans, n, p->behavior, s, at_start, false, out);
    case PT_DELIMITER:
        return (n = char_spans(CC_EQUAL, p->ch, s, len, sc)) >= 0 &&
               emit_spans(sc->spans, n, B_REMOVED, s, at_start, false, out);
    case PT_WHITESPACE:
        if ((n = tx_pattern_spans(&p->pattern, s, len, sc)) < 0) return false;
        for (long i = 0; i < n; i++) sc->spans[i].match = !sc->spans[i].match; /* keep the matches */
        return emit_spans(sc->spans, n, B_REMOVED, s, at_start, false, out);
    case PT_SPLIT:
        if ((n = tx_pattern_spans(&p->pattern, s, len, sc)) < 0) return false;
        if (p->invert)
            for (long i = 0; i < n; i++) sc->spans[i].match = !sc->spans[i].match;
        return emit_spans(sc->spans, n, p->behavior, s, at_start, false, out);
    case PT_FIXED_LENGTH: {
        size_t start = 0, chars = 0;
        for (size_t i = 0; i < len;) {
            uint32_t c;
            i += uc_decode(s, i, &c);
            if (++chars == (size_t)p->length || i == len) {
                if (!tx_pieces_add(out, s + start, i - start, -1, at_start && start == 0)) return false;
                start = i;
                chars = 0;
            }
        }
        return true;
    }
    case PT_BYTE_LEVEL: {
        tmp->len = 0;
        if (p->add_prefix_space && (!len || s[0] != ' ') && !tx_str_add(tmp, " ", 1)) return false;
        if (!tx_str_add(tmp, s, len)) return false;
        if (p->use_regex) {
            if ((n = tx_pattern_spans(&p->pattern, tmp->s, tmp->len, sc)) < 0) return false;
        } else if (n = 0, !add_span(sc, &n, 0, tmp->len, false)) {
            return false;
        }
        return emit_spans(sc->spans, n, B_ISOLATED, tmp->s, at_start, true, out);
    }
    case PT_METASPACE: {
        tmp->len = 0;
        char rep[4];
        size_t rl = uc_encode(p->ch, rep);
        bool starts = len >= rl && memcmp(s, rep, rl) == 0; /* replacement already in front */
        bool space = len && s[0] == ' ';
        bool prepend = !(starts || space) && (p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && at_start));
        if (prepend && !tx_str_add(tmp, rep, rl)) return false;
        for (size_t i = 0; i < len; i++)
            if (!(s[i] == ' ' ? tx_str_add(tmp, rep, rl) : tx_str_add(tmp, s + i, 1))) return false;
        if (!p->split) return !tmp->len || tx_pieces_add(out, tmp->s, tmp->len, -1, at_start);
        return (n = char_spans(CC_EQUAL, p->ch, tmp->s, tmp->len, sc)) >= 0 &&
               emit_spans(sc->spans, n, B_MERGED_WITH_NEXT, tmp->s, at_start, false, out);
    }
    case PT_SEQUENCE:
        break;
    }
    return false;
}

vp_status tx_pretok_run(const struct tx_pretok *p, const struct tx_pieces *in, struct tx_pieces *out,
                        struct tx_scratch *sc) {
    tx_pieces_clear(out);
    if (p->kind == PT_SEQUENCE) {
        struct tx_pieces a = {0};
        vp_status s = VP_OK;
        bool ok = true;
        for (size_t i = 0; i < in->n && ok; i++)
            ok = tx_pieces_add(out, tx_piece_text(in, i), in->v[i].len, in->v[i].added_id, in->v[i].at_start);
        for (int k = 0; k < p->n_seq && ok && s == VP_OK; k++) {
            struct tx_pieces t = a;
            a = *out;
            *out = t;
            s = tx_pretok_run(p->seq[k], &a, out, sc);
        }
        tx_pieces_free(&a);
        return !ok ? vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory pre-tokenizing") : s;
    }
    struct tx_str tmp = {0};
    bool ok = true;
    for (size_t i = 0; i < in->n && ok; i++) {
        const struct tx_piece *pc = &in->v[i];
        if (pc->added_id >= 0) ok = tx_pieces_add(out, tx_piece_text(in, i), pc->len, pc->added_id, pc->at_start);
        else ok = split_piece(p, tx_piece_text(in, i), pc->len, pc->at_start, out, sc, &tmp);
    }
    tx_str_free(&tmp);
    return ok ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory pre-tokenizing");
}
