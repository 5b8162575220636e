/* Reading tokenizer.json fields with messages that name the file and the
 * JSON path; String/Regex patterns and their match spans. */
#include "text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tx_path(char *buf, size_t size, const char *where, const char *key, int index) {
    if (key) snprintf(buf, size, "%s%s%s", where, *where ? "." : "", key);
    else snprintf(buf, size, "%s[%d]", where, index);
}

vp_status tx_bad(const struct tx_json *j, const char *where, const char *key, const char *fmt, ...) {
    char path[256], msg[512];
    tx_path(path, sizeof path, where, key, 0);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" %s", j->file, path, msg);
}

vp_status tx_unsupported(const struct tx_json *j, const char *what, const char *name, const char *where,
                         const char *supported) {
    return vp_fail(VP_ERROR_UNSUPPORTED,
                   "%s: %s \"%s\" is not supported (at \"%s\"); vkpeft supports %s. Use a tokenizer.json "
                   "without it, or convert the tokenizer with one of these",
                   j->file, what, name, where, supported);
}

vp_status tx_get_bool(const struct tx_json *j, const cJSON *o, const char *where, const char *key, bool def,
                      bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return VP_OK;
    }
    if (!cJSON_IsBool(v)) return tx_bad(j, where, key, "must be true or false");
    *out = cJSON_IsTrue(v);
    return VP_OK;
}

vp_status tx_get_str(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                     bool required, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return required ? tx_bad(j, where, key, "is missing (a string is required)") : VP_OK;
    if (!cJSON_IsString(v)) return tx_bad(j, where, key, "must be a string");
    *out = v->valuestring;
    return VP_OK;
}

vp_status tx_get_int(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                     bool required, int64_t def, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = def;
    if (!v || cJSON_IsNull(v)) return required ? tx_bad(j, where, key, "is missing (an integer is required)") : VP_OK;
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble || fabs(v->valuedouble) > 9e15)
        return tx_bad(j, where, key, "must be an integer");
    *out = (int64_t)v->valuedouble;
    return VP_OK;
}

vp_status tx_get_char(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                      uint32_t *out) {
    const char *s;
    vp_status st = tx_get_str(j, o, where, key, true, &s);
    if (st != VP_OK) return st;
    size_t len = strlen(s);
    if (!len || uc_utf8_valid(s, len) != len || uc_decode(s, 0, out) != len)
        return tx_bad(j, where, key, "must be a single character");
    return VP_OK;
}

vp_status tx_get_type(const struct tx_json *j, const cJSON *o, const char *where, const char **type) {
    if (!cJSON_IsObject(o)) return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" must be an object", j->file, where);
    return tx_get_str(j, o, where, "type", true, type);
}

/* ---- patterns ---------------------------------------------------------------------- */

vp_status tx_pattern_parse(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                           struct tx_pattern *out) {
    *out = (struct tx_pattern){0};
    char path[256];
    tx_path(path, sizeof path, where, key, 0);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsObject(p)) return tx_bad(j, where, key, "must be {\"String\": ...} or {\"Regex\": ...}");
    const char *lit, *rx;
    vp_status s = tx_get_str(j, p, path, "String", false, &lit);
    if (s == VP_OK) s = tx_get_str(j, p, path, "Regex", false, &rx);
    if (s != VP_OK) return s;
    if (!lit == !rx) return tx_bad(j, where, key, "must hold exactly one of \"String\" and \"Regex\"");
    if (lit) {
        out->literal_len = strlen(lit);
        if (!out->literal_len) return tx_bad(j, path, "String", "must not be empty");
        if (!(out->literal = strdup(lit))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
        return VP_OK;
    }
    char err[512];
    if (!(out->regex = rx_compile(rx, err, sizeof err)))
        return vp_fail(strstr(err, "not supported") ? VP_ERROR_UNSUPPORTED : VP_ERROR_BAD_INPUT,
                       "%s: \"%s.Regex\": %s", j->file, path, err);
    return VP_OK;
}

void tx_pattern_free(struct tx_pattern *p) {
    free(p->literal);
    rx_free(p->regex);
    *p = (struct tx_pattern){0};
}

void tx_scratch_free(struct tx_scratch *sc) {
    rx_scratch_free(&sc->rx);
    free(sc->m);
    free(sc->spans);
    *sc = (struct tx_scratch){0};
}

static bool add_span(struct tx_scratch *sc, size_t *n, size_t start, size_t end, bool match) {
    if (*n == sc->spans_cap) {
        size_t nc = sc->spans_cap ? sc->spans_cap * 2 : 32;
        struct tx_span *ns = realloc(sc->spans, nc * sizeof *ns);
        if (!ns) return false;
        sc->spans = ns;
        sc->spans_cap = nc;
    }
    sc->spans[(*n)++] = (struct tx_span){start, end, match};
    return true;
}

long tx_pattern_spans(const struct tx_pattern *p, const char *s, size_t len, struct tx_scratch *sc) {
    size_t n = 0, prev = 0, count = 0;
    if (!len) return add_span(sc, &n, 0, 0, false) ? 1 : -1;
    if (p->regex) {
        if (!rx_find_all(p->regex, s, len, &sc->rx, &sc->m, &count, &sc->m_cap)) return -1;
    } else {
        for (const char *at = s; (at = memmem(at, len - (size_t)(at - s), p->literal, p->literal_len));
             at += p->literal_len) {
            if (count == sc->m_cap) {
                size_t nc = sc->m_cap ? sc->m_cap * 2 : 16;
                struct rx_match *nm = realloc(sc->m, nc * sizeof *nm);
                if (!nm) return -1;
                sc->m = nm;
                sc->m_cap = nc;
            }
            sc->m[count++] = (struct rx_match){(size_t)(at - s), (size_t)(at - s) + p->literal_len};
        }
    }
    for (size_t i = 0; i < count; i++) {
        if (prev != sc->m[i].start && !add_span(sc, &n, prev, sc->m[i].start, false)) return -1;
        if (!add_span(sc, &n, sc->m[i].start, sc->m[i].end, true)) return -1;
        prev = sc->m[i].end;
    }
    if (prev != len && !add_span(sc, &n, prev, len, false)) return -1;
    return (long)n;
}
