/* Growable strings, piece lists, id lists, hash maps and the byte trie. */
#include "text.h"

#include <stdlib.h>
#include <string.h>

/* ---- strings ------------------------------------------------------------------ */

bool tx_str_reserve(struct tx_str *t, size_t extra) {
    if (t->len + extra + 1 <= t->cap) return true;
    size_t nc = t->cap ? t->cap : 64;
    while (nc < t->len + extra + 1) nc *= 2;
    char *ns = realloc(t->s, nc);
    if (!ns) return false;
    t->s = ns;
    t->cap = nc;
    return true;
}

bool tx_str_add(struct tx_str *t, const char *s, size_t len) {
    if (!tx_str_reserve(t, len)) return false;
    if (len) memcpy(t->s + t->len, s, len);
    t->len += len;
    t->s[t->len] = 0;
    return true;
}

bool tx_str_add_cp(struct tx_str *t, uint32_t cp) {
    char b[4];
    return tx_str_add(t, b, uc_encode(cp, b));
}

void tx_str_free(struct tx_str *t) {
    free(t->s);
    *t = (struct tx_str){0};
}

/* ---- pieces and ids --------------------------------------------------------------- */

bool tx_pieces_add(struct tx_pieces *p, const char *s, size_t len, int32_t added_id, bool at_start) {
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 16;
        struct tx_piece *nv = realloc(p->v, nc * sizeof *nv);
        if (!nv) return false;
        p->v = nv;
        p->cap = nc;
    }
    size_t off = p->buf.len;
    if (!tx_str_add(&p->buf, s, len)) return false;
    p->v[p->n++] = (struct tx_piece){.off = off, .len = len, .added_id = added_id, .at_start = at_start};
    return true;
}

void tx_pieces_clear(struct tx_pieces *p) {
    p->n = 0;
    p->buf.len = 0;
    if (p->buf.s) p->buf.s[0] = 0;
}

void tx_pieces_free(struct tx_pieces *p) {
    tx_str_free(&p->buf);
    free(p->v);
    *p = (struct tx_pieces){0};
}

bool tx_ids_add(struct tx_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t nc = ids->cap ? ids->cap * 2 : 64;
        int32_t *nv = realloc(ids->v, nc * sizeof *nv);
        if (!nv) return false;
        ids->v = nv;
        ids->cap = nc;
    }
    ids->v[ids->n++] = id;
    return true;
}

/* ---- string map (open addressing, linear probing, FNV-1a) ---------------------------- */

static uint32_t str_hash(const char *s, size_t len) { return (uint32_t)vp_hash_bytes(VP_HASH_INIT, s, len); }

static bool strmap_grow(struct tx_strmap *m) {
    uint32_t nc = m->cap ? m->cap * 2 : 64;
    struct tx_strmap_entry *ns = malloc((size_t)nc * sizeof *ns);
    if (!ns) return false;
    for (uint32_t i = 0; i < nc; i++) ns[i].value = -1;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->slots[i].value < 0) continue;
        uint32_t h = str_hash(m->keys.s + m->slots[i].off, m->slots[i].len) & (nc - 1);
        while (ns[h].value >= 0) h = (h + 1) & (nc - 1);
        ns[h] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = nc;
    return true;
}

static struct tx_strmap_entry *strmap_slot(const struct tx_strmap *m, const char *s, size_t len) {
    uint32_t h = str_hash(s, len) & (m->cap - 1);
    for (;; h = (h + 1) & (m->cap - 1)) {
        struct tx_strmap_entry *e = &m->slots[h];
        if (e->value < 0 || (e->len == len && memcmp(m->keys.s + e->off, s, len) == 0)) return e;
    }
}

bool tx_strmap_put(struct tx_strmap *m, const char *s, size_t len, int32_t value) {
    if ((m->count + 1) * 4 > m->cap * 3 && !strmap_grow(m)) return false;
    struct tx_strmap_entry *e = strmap_slot(m, s, len);
    if (e->value >= 0) {
        e->value = value;
        return true;
    }
    size_t off = m->keys.len;
    if (off > UINT32_MAX - len || !tx_str_add(&m->keys, s, len)) return false;
    *e = (struct tx_strmap_entry){.off = (uint32_t)off, .len = (uint32_t)len, .value = value};
    m->count++;
    return true;
}

int32_t tx_strmap_get(const struct tx_strmap *m, const char *s, size_t len) {
    if (!m->cap) return -1;
    return strmap_slot(m, s, len)->value;
}

void tx_strmap_free(struct tx_strmap *m) {
    free(m->slots);
    tx_str_free(&m->keys);
    *m = (struct tx_strmap){0};
}

/* ---- u64 map --------------------------------------------------------------------------- */

static uint32_t u64_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static bool u64map_grow(struct tx_u64map *m) {
    uint32_t nc = m->cap ? m->cap * 2 : 64;
    uint64_t *nk = malloc((size_t)nc * sizeof *nk), *nv = malloc((size_t)nc * sizeof *nv);
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return false;
    }
    memset(nk, 0xFF, (size_t)nc * sizeof *nk);
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == UINT64_MAX) continue;
        uint32_t h = u64_hash(m->keys[i]) & (nc - 1);
        while (nk[h] != UINT64_MAX) h = (h + 1) & (nc - 1);
        nk[h] = m->keys[i];
        nv[h] = m->values[i];
    }
    free(m->keys);
    free(m->values);
    m->keys = nk;
    m->values = nv;
    m->cap = nc;
    return true;
}

bool tx_u64map_put(struct tx_u64map *m, uint64_t key, uint64_t value) {
    if ((m->count + 1) * 4 > m->cap * 3 && !u64map_grow(m)) return false;
    uint32_t h = u64_hash(key) & (m->cap - 1);
    while (m->keys[h] != UINT64_MAX && m->keys[h] != key) h = (h + 1) & (m->cap - 1);
    if (m->keys[h] == UINT64_MAX) m->count++;
    m->keys[h] = key;
    m->values[h] = value;
    return true;
}

bool tx_u64map_get(const struct tx_u64map *m, uint64_t key, uint64_t *value) {
    if (!m->cap) return false;
    uint32_t h = u64_hash(key) & (m->cap - 1);
    for (; m->keys[h] != UINT64_MAX; h = (h + 1) & (m->cap - 1))
        if (m->keys[h] == key) {
            *value = m->values[h];
            return true;
        }
    return false;
}

void tx_u64map_free(struct tx_u64map *m) {
    free(m->keys);
    free(m->values);
    *m = (struct tx_u64map){0};
}

/* ---- trie ------------------------------------------------------------------------------ */

static int64_t trie_node(struct tx_trie *t) {
    if (t->n == t->cap) {
        uint32_t nc = t->cap ? t->cap * 2 : 256;
        int32_t *nv = realloc(t->value, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        t->value = nv;
        t->cap = nc;
    }
    t->value[t->n] = -1;
    return t->n++;
}

bool tx_trie_put(struct tx_trie *t, const char *s, size_t len, int32_t value) {
    if (!t->n && trie_node(t) < 0) return false;
    uint32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        int64_t child = tx_trie_step(t, node, (unsigned char)s[i]);
        if (child < 0) {
            if ((child = trie_node(t)) < 0) return false;
            if (!tx_u64map_put(&t->edges, (uint64_t)node << 8 | (unsigned char)s[i], (uint64_t)child)) return false;
        }
        node = (uint32_t)child;
    }
    t->value[node] = value;
    return true;
}

void tx_trie_free(struct tx_trie *t) {
    tx_u64map_free(&t->edges);
    free(t->value);
    *t = (struct tx_trie){0};
}
