/* Byte-pair encoding as Hugging Face's models/bpe: a word starts as one
 * symbol per character (unknown characters become byte tokens or the unknown
 * token), then the adjacent pair with the lowest merge rank is merged,
 * leftmost first, until no pair has a merge. */
#include "text_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vp_status merge_error(const struct tx_json *j, int rank, const char *what) {
    return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"model.merges\"[%d]: %s", j->file, rank, what);
}

/* One merge: "a b" (split on the single space) or ["a", "b"]. */
static vp_status parse_merge(const struct tx_json *j, const cJSON *e, int rank, const char *parts[2],
                             size_t lens[2]) {
    if (cJSON_IsString(e)) {
        const char *s = e->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return merge_error(j, rank, "must be two tokens separated by one space, like \"a b\"");
        parts[0] = s, lens[0] = (size_t)(sp - s);
        parts[1] = sp + 1, lens[1] = strlen(sp + 1);
        return VP_OK;
    }
    if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
        cJSON_IsString(e->child->next)) {
        parts[0] = e->child->valuestring, lens[0] = strlen(parts[0]);
        parts[1] = e->child->next->valuestring, lens[1] = strlen(parts[1]);
        return VP_OK;
    }
    return merge_error(j, rank, "must be a string \"a b\" or a pair [\"a\", \"b\"]");
}

static vp_status parse_merges(const struct tx_json *j, const cJSON *merges, struct tx_model *m) {
    size_t plen = m->prefix ? strlen(m->prefix) : 0;
    struct tx_str buf = {0};
    vp_status s = VP_OK;
    int rank = 0, index = 0;
    for (const cJSON *e = merges->child; e && s == VP_OK; e = e->next, index++) {
        if (cJSON_IsString(e) && strncmp(e->valuestring, "#version", 8) == 0) continue;
        const char *parts[2] = {NULL, NULL};
        size_t lens[2] = {0, 0};
        if ((s = parse_merge(j, e, index, parts, lens)) != VP_OK) break;
        int32_t a = tx_strmap_get(&m->vocab, parts[0], lens[0]), b = tx_strmap_get(&m->vocab, parts[1], lens[1]);
        char msg[256];
        if (a < 0 || b < 0) {
            snprintf(msg, sizeof msg, "token \"%.*s\" is not in \"model.vocab\"", (int)(a < 0 ? lens[0] : lens[1]),
                     a < 0 ? parts[0] : parts[1]);
            s = merge_error(j, index, msg);
            break;
        }
        /* The right part loses the continuing-subword prefix, as in tokenizers. */
        buf.len = 0;
        if (lens[1] < plen || !tx_str_add(&buf, parts[0], lens[0]) || !tx_str_add(&buf, parts[1] + plen, lens[1] - plen)) {
            s = lens[1] < plen ? merge_error(j, index, "the right token is shorter than the subword prefix")
                               : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
            break;
        }
        int32_t merged = tx_strmap_get(&m->vocab, buf.s, buf.len);
        if (merged < 0) {
            snprintf(msg, sizeof msg, "the merged token \"%.*s\" is not in \"model.vocab\"", (int)buf.len, buf.s);
            s = merge_error(j, index, msg);
            break;
        }
        if (!tx_u64map_put(&m->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b,
                           (uint64_t)(uint32_t)rank << 32 | (uint32_t)merged))
            s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
        rank++;
    }
    tx_str_free(&buf);
    return s;
}

vp_status model_bpe_parse(const struct tx_json *j, const cJSON *o, struct tx_model *m) {
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(o, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "%s: BPE \"model.dropout\" is not supported: vkpeft tokenizes deterministically. Set "
                       "\"dropout\" to null in tokenizer.json",
                       j->file);
    vp_status s = model_parse_vocab_object(j, o, m);
    const char *unk = NULL, *prefix = NULL, *suffix = NULL;
    if (s == VP_OK) s = tx_get_str(j, o, "model", "unk_token", false, &unk);
    if (s == VP_OK) s = tx_get_str(j, o, "model", "continuing_subword_prefix", false, &prefix);
    if (s == VP_OK) s = tx_get_str(j, o, "model", "end_of_word_suffix", false, &suffix);
    if (s == VP_OK) s = tx_get_bool(j, o, "model", "fuse_unk", false, &m->fuse_unk);
    if (s == VP_OK) s = tx_get_bool(j, o, "model", "byte_fallback", false, &m->byte_fallback);
    if (s == VP_OK) s = tx_get_bool(j, o, "model", "ignore_merges", false, &m->ignore_merges);
    if (s != VP_OK) return s;
    if ((unk && !(m->unk_token = strdup(unk))) || (prefix && !(m->prefix = strdup(prefix))) ||
        (suffix && !(m->suffix = strdup(suffix))))
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    if (unk) m->unk_id = tx_strmap_get(&m->vocab, unk, strlen(unk));
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(o, "merges");
    if (!cJSON_IsArray(merges))
        return tx_bad(j, "model", "merges", "must be a list of merges (\"a b\" strings or [\"a\", \"b\"] pairs)");
    if (m->byte_fallback) model_find_byte_ids(m);
    return parse_merges(j, merges, m);
}

/* ---- merging ----------------------------------------------------------------------- */

struct symbol {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    bool alive;
};

struct merge { uint32_t rank; int32_t pos; int32_t id; };

struct heap {
    struct merge *v;
    size_t n, cap;
};

static bool merge_less(const struct merge *a, const struct merge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static bool heap_push(struct heap *h, struct merge m) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 32;
        struct merge *nv = realloc(h->v, nc * sizeof *nv);
        if (!nv) return false;
        h->v = nv;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0 && merge_less(&m, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = m;
    return true;
}

static struct merge heap_pop(struct heap *h) {
    struct merge top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && merge_less(&h->v[c + 1], &h->v[c])) c++;
        if (!merge_less(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

static bool find_merge(const struct tx_model *m, int32_t a, int32_t b, struct merge *out, int32_t pos) {
    uint64_t v;
    if (!tx_u64map_get(&m->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v)) return false;
    *out = (struct merge){.rank = (uint32_t)(v >> 32), .pos = pos, .id = (int32_t)(uint32_t)v};
    return true;
}

static bool push_pair(const struct tx_model *m, struct heap *h, const struct symbol *sym, int32_t pos) {
    struct merge mg;
    if (pos < 0 || sym[pos].next < 0 || !find_merge(m, sym[pos].id, sym[sym[pos].next].id, &mg, pos)) return true;
    return heap_push(h, mg);
}

static bool merge_all(const struct tx_model *m, struct symbol *sym, size_t n) {
    struct heap h = {0};
    bool ok = true;
    for (size_t i = 0; i + 1 < n && ok; i++) ok = push_pair(m, &h, sym, (int32_t)i);
    while (ok && h.n) {
        struct merge top = heap_pop(&h), cur;
        struct symbol *s = &sym[top.pos];
        if (!s->alive || s->next < 0) continue;
        /* A stale entry: the pair at this position changed since it was queued. */
        if (!find_merge(m, s->id, sym[s->next].id, &cur, top.pos) || cur.id != top.id) continue;
        struct symbol *right = &sym[s->next];
        s->id = top.id;
        right->alive = false;
        s->next = right->next;
        if (right->next >= 0) sym[right->next].prev = top.pos;
        ok = push_pair(m, &h, sym, s->prev) && push_pair(m, &h, sym, top.pos);
    }
    free(h.v);
    return ok;
}

/* ---- initial symbols ----------------------------------------------------------------- */

struct word {
    struct symbol *v;
    size_t n, cap;
};

static bool word_add(struct word *w, int32_t id) {
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 32;
        struct symbol *nv = realloc(w->v, nc * sizeof *nv);
        if (!nv) return false;
        w->v = nv;
        w->cap = nc;
    }
    w->v[w->n] = (struct symbol){.id = id, .prev = (int32_t)w->n - 1, .next = -1, .alive = true};
    if (w->n) w->v[w->n - 1].next = (int32_t)w->n;
    w->n++;
    return true;
}

/* BPE::merge_word up to merge_all. A pending unknown token is flushed when
 * a known character follows, but not before byte-fallback tokens, exactly as
 * tokenizers does. */
static vp_status initial_symbols(const struct tx_model *m, const char *s, size_t len, struct word *w) {
    struct tx_str buf = {0};
    size_t plen = m->prefix ? strlen(m->prefix) : 0, slen = m->suffix ? strlen(m->suffix) : 0;
    bool pending = false, ok = true;
    vp_status st = VP_OK;
    for (size_t i = 0; i < len && ok;) {
        uint32_t c;
        size_t cl = uc_decode(s, i, &c);
        bool first = i == 0, last = i + cl == len;
        buf.len = 0;
        ok = (first || !plen || tx_str_add(&buf, m->prefix, plen)) && tx_str_add(&buf, s + i, cl) &&
             (!last || !slen || tx_str_add(&buf, m->suffix, slen));
        i += cl;
        if (!ok) break;
        int32_t id = tx_strmap_get(&m->vocab, buf.s, buf.len);
        if (id >= 0) {
            if (pending) ok = word_add(w, m->unk_id), pending = false;
            if (ok) ok = word_add(w, id);
            continue;
        }
        if (m->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < buf.len && all; k++) all = m->byte_ids[(unsigned char)buf.s[k]] >= 0;
            if (all) {
                for (size_t k = 0; k < buf.len && ok; k++) ok = word_add(w, m->byte_ids[(unsigned char)buf.s[k]]);
                continue;
            }
        }
        if (!m->unk_token) continue; /* no unknown token: the character is dropped */
        if (m->unk_id < 0) {
            st = vp_fail(VP_ERROR_BAD_INPUT,
                         "the BPE model's unknown token \"%s\" is not in its vocabulary; fix \"model.unk_token\" "
                         "in tokenizer.json",
                         m->unk_token);
            break;
        }
        if (pending && !m->fuse_unk) ok = word_add(w, m->unk_id);
        pending = true;
    }
    if (ok && st == VP_OK && pending) ok = word_add(w, m->unk_id);
    tx_str_free(&buf);
    if (!ok) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    return st;
}

vp_status model_bpe_tokenize(const struct tx_model *m, const char *s, size_t len, struct tx_ids *out) {
    if (m->ignore_merges) {
        int32_t id = tx_strmap_get(&m->vocab, s, len);
        if (id >= 0) return tx_ids_add(out, id) ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    }
    struct word w = {0};
    vp_status st = initial_symbols(m, s, len, &w);
    if (st == VP_OK && !merge_all(m, w.v, w.n)) st = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    for (size_t i = 0; st == VP_OK && i < w.n; i++)
        if (w.v[i].alive && !tx_ids_add(out, w.v[i].id)) st = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    free(w.v);
    return st;
}
