/* UTF-8, Unicode properties and normalization over the generated tables. */
#include "text_unicode.h"

#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------------ */

size_t uc_decode(const char *str, size_t i, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)str + i;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] < 0xE0) {
        *cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (s[0] < 0xF0) {
        *cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

size_t uc_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Unicode's table of well-formed sequences (Table 3-7): the allowed range of
 * the second byte depends on the first. */
size_t uc_utf8_next(const unsigned char *s, size_t len, size_t *bad) {
    *bad = 0;
    unsigned char b = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t k = 1; k < need; k++) {
        unsigned char c = k < len ? s[k] : 0;
        bool ok = k < len && (k == 1 ? c >= lo && c <= hi : c >= 0x80 && c <= 0xBF);
        if (!ok) {
            *bad = k;
            return 0;
        }
    }
    return need;
}

size_t uc_utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, bad;
    while (i < len) {
        size_t n = uc_utf8_next(u + i, len - i, &bad);
        if (!n) return i;
        i += n;
    }
    return len;
}

/* ---- properties --------------------------------------------------------------- */

enum uc_category uc_category(uint32_t cp) {
    if (cp < 256) return (enum uc_category)uc_latin1_category[cp];
    if (cp >= 0x110000) return UC_CN;
    size_t lo = 0, hi = uc_category_runs_count; /* last run with start <= cp */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (uc_category_runs[mid].start <= cp) lo = mid;
        else hi = mid;
    }
    return (enum uc_category)uc_category_runs[lo].category;
}

bool uc_is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

static const struct uc_map *map_find(const struct uc_map *map, size_t count, uint32_t cp) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (map[mid].from == cp) return &map[mid];
        if (map[mid].from < cp) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

size_t uc_lower(uint32_t cp, uint32_t out[3]) {
    if (cp < 0x80) {
        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        return 1;
    }
    for (size_t i = 0; i < uc_lower_multi_count; i++)
        if (uc_lower_multi[i].from == cp) {
            memcpy(out, uc_lower_multi[i].to, sizeof uc_lower_multi[i].to);
            return uc_lower_multi[i].n;
        }
    const struct uc_map *m = map_find(uc_lower_map, uc_lower_map_count, cp);
    out[0] = m ? m->to : cp;
    return 1;
}

uint8_t uc_ccc(uint32_t cp) {
    if (cp < 0x300) return 0;
    const struct uc_map *m = map_find(uc_ccc_map, uc_ccc_map_count, cp);
    return m ? (uint8_t)m->to : 0;
}

/* ---- normalization (UAX #15) --------------------------------------------------- */

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21,
       TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static const struct uc_decomp *decomp_find(uint32_t cp) {
    size_t lo = 0, hi = uc_decomp_map_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uc_decomp_map[mid].cp == cp) return &uc_decomp_map[mid];
        if (uc_decomp_map[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    size_t lo = 0, hi = uc_compose_map_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const struct uc_compose *c = &uc_compose_map[mid];
        if (c->first == a && c->second == b) return c->composite;
        if (c->first < a || (c->first == a && c->second < b)) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static bool push(uint32_t **v, size_t *n, size_t *cap, uint32_t cp) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        uint32_t *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return false;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = cp;
    return true;
}

/* Full decomposition followed by the canonical ordering of combining marks
 * (a stable insertion sort of each run of non-starters by class). */
static bool decompose(bool compat, const uint32_t *in, size_t n, uint32_t **out, size_t *on, size_t *ocap) {
    *on = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = in[i];
        if (cp >= SBASE && cp < SBASE + SCOUNT) {
            uint32_t s = cp - SBASE, t = s % TCOUNT;
            if (!push(out, on, ocap, LBASE + s / NCOUNT) || !push(out, on, ocap, VBASE + (s % NCOUNT) / TCOUNT))
                return false;
            if (t && !push(out, on, ocap, TBASE + t)) return false;
            continue;
        }
        const struct uc_decomp *d = cp < 0xA0 ? NULL : decomp_find(cp);
        size_t len = d ? (compat ? d->compat_len : d->canon_len) : 0;
        if (!len) {
            if (!push(out, on, ocap, cp)) return false;
            continue;
        }
        const uint32_t *seq = uc_decomp_pool + (compat ? d->compat_off : d->canon_off);
        for (size_t k = 0; k < len; k++)
            if (!push(out, on, ocap, seq[k])) return false;
    }
    uint32_t *v = *out;
    for (size_t i = 1; i < *on; i++) {
        uint8_t c = uc_ccc(v[i]);
        if (!c) continue;
        for (size_t j = i; j > 0; j--) {
            uint8_t p = uc_ccc(v[j - 1]);
            if (!p || p <= c) break;
            uint32_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    }
    return true;
}

/* Canonical composition: a mark joins the last starter unless blocked by an
 * earlier mark of the same or higher class (or by an uncomposed starter). */
static size_t compose(uint32_t *v, size_t n) {
    if (!n) return 0;
    size_t starter = 0, out = 1;
    int last_class = uc_ccc(v[0]) ? 256 : 0;
    for (size_t i = 1; i < n; i++) {
        uint32_t ch = v[i];
        int cls = uc_ccc(ch);
        uint32_t comp = compose_pair(v[starter], ch);
        if (comp && (last_class < cls || last_class == 0)) {
            v[starter] = comp;
            continue;
        }
        if (cls == 0) starter = out;
        last_class = cls;
        v[out++] = ch;
    }
    return out;
}

bool uc_normalize(enum uc_form form, uint32_t **cps, size_t *n, size_t *cap) {
    uint32_t *tmp = NULL;
    size_t tn = 0, tcap = 0;
    bool compat = form == UC_NFKC || form == UC_NFKD;
    if (!decompose(compat, *cps, *n, &tmp, &tn, &tcap)) {
        free(tmp);
        return false;
    }
    if (form == UC_NFC || form == UC_NFKC) tn = compose(tmp, tn);
    free(*cps);
    *cps = tmp;
    *n = tn;
    *cap = tcap;
    return true;
}
