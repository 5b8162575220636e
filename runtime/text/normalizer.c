/* Normalizers: text -> text before pre-tokenization, as Hugging Face's
 * normalizers/ do (only the text; vkpeft keeps no offsets). */
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum norm_kind {
    NORM_BERT, NORM_STRIP, NORM_STRIP_ACCENTS, NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_SEQUENCE,
    NORM_LOWERCASE, NORM_NMT, NORM_REPLACE, NORM_PREPEND, NORM_BYTE_LEVEL
};

struct tx_normalizer {
    enum norm_kind kind;
    bool clean_text, chinese, strip_accents, lowercase; /* BertNormalizer */
    bool left, right;                                  /* Strip */
    struct tx_pattern pattern;                         /* Replace */
    char *content;                                     /* Replace content, Prepend text */
    struct tx_normalizer **seq;                        /* Sequence */
    int n_seq;
};

#define SUPPORTED_LIST                                                                                 \
    "BertNormalizer, Lowercase, Strip, StripAccents, NFC, NFD, NFKC, NFKD, Nmt, Replace, Prepend, ByteLevel " \
    "and Sequence"
static const char supported[] = "the normalizers " SUPPORTED_LIST;

void tx_normalizer_free(struct tx_normalizer *n) {
    if (!n) return;
    for (int i = 0; i < n->n_seq; i++) tx_normalizer_free(n->seq[i]);
    free(n->seq);
    tx_pattern_free(&n->pattern);
    free(n->content);
    free(n);
}

static vp_status parse_sequence(const struct tx_json *j, const cJSON *o, const char *where,
                                struct tx_normalizer *n) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "normalizers");
    if (!cJSON_IsArray(list)) return tx_bad(j, where, "normalizers", "must be a list of normalizers");
    int count = cJSON_GetArraySize(list);
    if (count && !(n->seq = calloc((size_t)count, sizeof *n->seq)))
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    char path[256], base[256];
    tx_path(base, sizeof base, where, "normalizers", 0);
    for (const cJSON *e = list->child; e; e = e->next) {
        tx_path(path, sizeof path, base, NULL, n->n_seq);
        vp_status s = tx_normalizer_parse(j, e, path, &n->seq[n->n_seq]);
        if (s != VP_OK) return s;
        n->n_seq++;
    }
    return VP_OK;
}

static vp_status parse_fields(const struct tx_json *j, const cJSON *o, const char *where, const char *type,
                              struct tx_normalizer *n) {
    vp_status s = VP_OK;
    const char *str;
    if (strcmp(type, "BertNormalizer") == 0) {
        n->kind = NORM_BERT;
        bool has_strip = false;
        const cJSON *sa = cJSON_GetObjectItemCaseSensitive(o, "strip_accents");
        has_strip = sa && !cJSON_IsNull(sa);
        if ((s = tx_get_bool(j, o, where, "clean_text", true, &n->clean_text)) != VP_OK ||
            (s = tx_get_bool(j, o, where, "handle_chinese_chars", true, &n->chinese)) != VP_OK ||
            (s = tx_get_bool(j, o, where, "lowercase", true, &n->lowercase)) != VP_OK ||
            (s = tx_get_bool(j, o, where, "strip_accents", false, &n->strip_accents)) != VP_OK)
            return s;
        if (!has_strip) n->strip_accents = n->lowercase; /* null follows lowercase */
    } else if (strcmp(type, "Strip") == 0) {
        n->kind = NORM_STRIP;
        if ((s = tx_get_bool(j, o, where, "strip_left", true, &n->left)) != VP_OK ||
            (s = tx_get_bool(j, o, where, "strip_right", true, &n->right)) != VP_OK)
            return s;
    } else if (strcmp(type, "StripAccents") == 0) n->kind = NORM_STRIP_ACCENTS;
    else if (strcmp(type, "NFC") == 0) n->kind = NORM_NFC;
    else if (strcmp(type, "NFD") == 0) n->kind = NORM_NFD;
    else if (strcmp(type, "NFKC") == 0) n->kind = NORM_NFKC;
    else if (strcmp(type, "NFKD") == 0) n->kind = NORM_NFKD;
    else if (strcmp(type, "Lowercase") == 0) n->kind = NORM_LOWERCASE;
    else if (strcmp(type, "Nmt") == 0) n->kind = NORM_NMT;
    else if (strcmp(type, "ByteLevel") == 0) n->kind = NORM_BYTE_LEVEL;
    else if (strcmp(type, "Sequence") == 0) {
        n->kind = NORM_SEQUENCE;
        return parse_sequence(j, o, where, n);
    } else if (strcmp(type, "Replace") == 0) {
        n->kind = NORM_REPLACE;
        if ((s = tx_pattern_parse(j, o, where, "pattern", &n->pattern)) != VP_OK ||
            (s = tx_get_str(j, o, where, "content", true, &str)) != VP_OK)
            return s;
        if (!(n->content = strdup(str))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    } else if (strcmp(type, "Prepend") == 0) {
        n->kind = NORM_PREPEND;
        if ((s = tx_get_str(j, o, where, "prepend", true, &str)) != VP_OK) return s;
        if (!(n->content = strdup(str))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    } else if (strcmp(type, "Precompiled") == 0) {
        /* An empty charsmap (SentencePiece's "identity" rule) changes nothing. */
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(o, "precompiled_charsmap");
        if (!map || cJSON_IsNull(map) || (cJSON_IsString(map) && !*map->valuestring)) {
            n->kind = NORM_SEQUENCE;
            return VP_OK;
        }
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "%s: normalizer \"Precompiled\" is not supported (at \"%s\"): vkpeft does not implement "
                       "SentencePiece's precompiled charsmap (T5, ALBERT, XLM-R style tokenizers). Use a "
                       "tokenizer.json whose normalizer is built from " SUPPORTED_LIST,
                       j->file, where);
    } else {
        return tx_unsupported(j, "normalizer", type, where, supported);
    }
    return VP_OK;
}

vp_status tx_normalizer_parse(const struct tx_json *j, const cJSON *o, const char *where,
                              struct tx_normalizer **out) {
    *out = NULL;
    const char *type;
    vp_status s = tx_get_type(j, o, where, &type);
    if (s != VP_OK) return s;
    struct tx_normalizer *n = calloc(1, sizeof *n);
    if (!n) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    if ((s = parse_fields(j, o, where, type, n)) != VP_OK) {
        tx_normalizer_free(n);
        return s;
    }
    *out = n;
    return VP_OK;
}

/* ---- running ------------------------------------------------------------------------ */

static bool is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* BERT: clean (drop NUL, U+FFFD and Cc/Cf/Co controls other than \t\n\r;
 * whitespace becomes ' '), space out CJK ideographs, strip accents (NFD, drop
 * Mn), lowercase. */
static bool run_bert(const struct tx_normalizer *n, const char *s, size_t len, struct tx_str *out,
                     struct tx_scratch *sc) {
    size_t cn = 0, cap = 0;
    uint32_t *cps = NULL;
    bool ok = true;
    for (size_t i = 0; i < len && ok;) {
        uint32_t c;
        i += uc_decode(s, i, &c);
        if (n->clean_text) {
            bool ws = c == '\t' || c == '\n' || c == '\r' || uc_is_white_space(c);
            if (c == 0 || c == 0xFFFD || (!ws && uc_in(c, UC_BIT(UC_CC) | UC_BIT(UC_CF) | UC_BIT(UC_CO)))) continue;
            if (ws) c = ' ';
        }
        if (cn + 3 > cap) {
            cap = cap ? cap * 2 : 64;
            uint32_t *nc = realloc(cps, cap * sizeof *nc);
            if (!nc) {
                ok = false;
                break;
            }
            cps = nc;
        }
        if (n->chinese && is_chinese(c)) {
            cps[cn++] = ' ';
            cps[cn++] = c;
            cps[cn++] = ' ';
        } else {
            cps[cn++] = c;
        }
    }
    if (ok && n->strip_accents && cn) {
        ok = uc_normalize(UC_NFD, &cps, &cn, &cap);
        size_t k = 0;
        for (size_t i = 0; ok && i < cn; i++)
            if (uc_category(cps[i]) != UC_MN) cps[k++] = cps[i];
        cn = k;
    }
    for (size_t i = 0; ok && i < cn; i++) {
        uint32_t low[3];
        size_t m = n->lowercase ? uc_lower(cps[i], low) : (low[0] = cps[i], 1);
        for (size_t k = 0; k < m && ok; k++) ok = tx_str_add_cp(out, low[k]);
    }
    free(cps);
    (void)sc;
    return ok;
}

static bool run_unicode(enum uc_form form, const char *s, size_t len, struct tx_str *out) {
    uint32_t *cps = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;
    if (len && (ok = (cps = malloc(len * sizeof *cps)) != NULL)) {
        cap = len;
        for (size_t i = 0; i < len; n++) i += uc_decode(s, i, &cps[n]);
        ok = uc_normalize(form, &cps, &n, &cap);
    }
    for (size_t i = 0; ok && i < n; i++) ok = tx_str_add_cp(out, cps[i]);
    free(cps);
    return ok;
}

static uint32_t nmt_map(uint32_t c) {
    if (c == 0x09 || c == 0x0A || c == 0x0C || c == 0x0D || c == 0x1680 || (c >= 0x200B && c <= 0x200F) ||
        c == 0x2028 || c == 0x2029 || c == 0x2581 || c == 0xFEFF || c == 0xFFFD)
        return ' ';
    if ((c >= 0x01 && c <= 0x08) || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || c == 0x8F || c == 0x9F)
        return UINT32_MAX; /* dropped */
    return c;
}

/* Character-wise normalizers. */
static bool run_chars(const struct tx_normalizer *n, const char *s, size_t len, struct tx_str *out) {
    size_t start = 0, end = len;
    if (n->kind == NORM_STRIP) {
        uint32_t c;
        size_t l;
        while (n->left && start < end && uc_is_white_space((l = uc_decode(s, start, &c), c))) start += l;
        while (n->right && end > start) {
            size_t b = end - 1;
            while (b > start && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
            uc_decode(s, b, &c);
            if (!uc_is_white_space(c)) break;
            end = b;
        }
        return tx_str_add(out, s + start, end - start);
    }
    bool ok = true;
    for (size_t i = 0; i < len && ok;) {
        uint32_t c, low[3];
        size_t l = uc_decode(s, i, &c);
        switch (n->kind) {
        case NORM_LOWERCASE: {
            size_t m = uc_lower(c, low);
            for (size_t k = 0; k < m && ok; k++) ok = tx_str_add_cp(out, low[k]);
            break;
        }
        case NORM_STRIP_ACCENTS:
            if (!uc_in(c, UC_MASK_M)) ok = tx_str_add(out, s + i, l);
            break;
        case NORM_NMT:
            if ((c = nmt_map(c)) != UINT32_MAX) ok = tx_str_add_cp(out, c);
            break;
        case NORM_BYTE_LEVEL:
            for (size_t k = 0; k < l && ok; k++) ok = tx_str_add_cp(out, tx_byte_to_char((uint8_t)s[i + k]));
            break;
        default:
            break;
        }
        i += l;
    }
    return ok;
}

static bool run_replace(const struct tx_normalizer *n, const char *s, size_t len, struct tx_str *out,
                        struct tx_scratch *sc) {
    long count = tx_pattern_spans(&n->pattern, s, len, sc);
    if (count < 0) return false;
    size_t content_len = strlen(n->content);
    for (long i = 0; i < count; i++) {
        const struct tx_span *sp = &sc->spans[i];
        bool ok = sp->match ? tx_str_add(out, n->content, content_len) : tx_str_add(out, s + sp->start, sp->end - sp->start);
        if (!ok) return false;
    }
    return true;
}

vp_status tx_normalizer_run(const struct tx_normalizer *n, const char *s, size_t len, struct tx_str *out,
                            struct tx_scratch *sc) {
    out->len = 0;
    if (!tx_str_reserve(out, len)) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory normalizing text");
    out->s[0] = 0;
    bool ok = true;
    switch (n->kind) {
    case NORM_BERT: ok = run_bert(n, s, len, out, sc); break;
    case NORM_NFC: ok = run_unicode(UC_NFC, s, len, out); break;
    case NORM_NFD: ok = run_unicode(UC_NFD, s, len, out); break;
    case NORM_NFKC: ok = run_unicode(UC_NFKC, s, len, out); break;
    case NORM_NFKD: ok = run_unicode(UC_NFKD, s, len, out); break;
    case NORM_REPLACE: ok = run_replace(n, s, len, out, sc); break;
    case NORM_PREPEND:
        ok = (!len || tx_str_add(out, n->content, strlen(n->content))) && tx_str_add(out, s, len);
        break;
    case NORM_SEQUENCE: {
        /* Ping-pong between out and a temporary. */
        struct tx_str tmp = {0};
        ok = tx_str_add(out, s, len);
        for (int i = 0; ok && i < n->n_seq; i++) {
            tmp.len = 0;
            if (!tx_str_add(&tmp, out->s, out->len)) {
                ok = false;
                break;
            }
            vp_status st = tx_normalizer_run(n->seq[i], tmp.s, tmp.len, out, sc);
            if (st != VP_OK) {
                tx_str_free(&tmp);
                return st;
            }
        }
        tx_str_free(&tmp);
        break;
    }
    default: ok = run_chars(n, s, len, out); break;
    }
    if (!ok) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory normalizing text");
    return VP_OK;
}
