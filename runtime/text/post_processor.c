/* Post-processors: special tokens and type ids around the encoded text(s),
 * as Hugging Face's processors/ (BertProcessing, RobertaProcessing,
 * TemplateProcessing, ByteLevel, Sequence). */
#include "text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum post_kind { POST_BERT, POST_ROBERTA, POST_TEMPLATE, POST_BYTE_LEVEL, POST_SEQUENCE };

struct template_piece {
    bool is_sequence;
    int sequence;        /* 0: A, 1: B */
    int special;         /* index into specials */
    int32_t type_id;
};

struct special {
    char *name;
    int32_t *ids;
    int n;
};

struct tx_post {
    enum post_kind kind;
    int32_t cls, sep;                        /* Bert, Roberta */
    struct template_piece *single, *pair;    /* Template */
    int n_single, n_pair;
    struct special *specials;
    int n_specials;
    struct tx_post **seq;
    int n_seq;
};

static const char supported[] =
    "the post-processors TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel and Sequence";

void tx_post_free(struct tx_post *p) {
    if (!p) return;
    for (int i = 0; i < p->n_seq; i++) tx_post_free(p->seq[i]);
    free(p->seq);
    free(p->single);
    free(p->pair);
    for (int i = 0; i < p->n_specials; i++) {
        free(p->specials[i].name);
        free(p->specials[i].ids);
    }
    free(p->specials);
    free(p);
}

/* "cls": ["[CLS]", 101] */
static vp_status parse_token_pair(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                                  int32_t *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    const cJSON *num = cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 && cJSON_IsString(v->child) ? v->child->next : NULL;
    if (!cJSON_IsNumber(num) || num->valuedouble < 0 || floor(num->valuedouble) != num->valuedouble ||
        num->valuedouble > INT32_MAX)
        return tx_bad(j, where, key, "must be a [token, id] pair");
    *id = (int32_t)num->valuedouble;
    return VP_OK;
}

static vp_status parse_specials(const struct tx_json *j, const cJSON *o, const char *where, struct tx_post *p) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    if (!sp || cJSON_IsNull(sp)) return VP_OK;
    if (!cJSON_IsObject(sp)) return tx_bad(j, where, "special_tokens", "must be an object");
    int n = cJSON_GetArraySize(sp);
    if (n && !(p->specials = calloc((size_t)n, sizeof *p->specials)))
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    char base[256], path[256];
    tx_path(base, sizeof base, where, "special_tokens", 0);
    for (const cJSON *e = sp->child; e; e = e->next) {
        struct special *s = &p->specials[p->n_specials++];
        tx_path(path, sizeof path, base, e->string, 0);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(e, "ids");
        if (!cJSON_IsArray(ids)) return tx_bad(j, path, "ids", "must be a list of token ids");
        s->n = cJSON_GetArraySize(ids);
        if (!(s->name = strdup(e->string)) || (s->n && !(s->ids = malloc((size_t)s->n * sizeof *s->ids))))
            return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
        int k = 0;
        for (const cJSON *x = ids->child; x; x = x->next, k++) {
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || floor(x->valuedouble) != x->valuedouble ||
                x->valuedouble > INT32_MAX)
                return tx_bad(j, path, "ids", "must be a list of token ids");
            s->ids[k] = (int32_t)x->valuedouble;
        }
    }
    return VP_OK;
}

static vp_status parse_template(const struct tx_json *j, const cJSON *o, const char *where, const char *key,
                                struct tx_post *p, struct template_piece **out, int *count) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(t)) return tx_bad(j, where, key, "must be a list of template pieces");
    int n = cJSON_GetArraySize(t);
    if (n && !(*out = calloc((size_t)n, sizeof **out))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    char base[256], item[256], path[300];
    tx_path(base, sizeof base, where, key, 0);
    for (const cJSON *e = t->child; e; e = e->next) {
        struct template_piece *pc = &(*out)[*count];
        tx_path(item, sizeof item, base, NULL, (*count)++);
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        const cJSON *spt = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *body = seq ? seq : spt;
        const char *id;
        int64_t type;
        if (!cJSON_IsObject(body))
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" must be {\"Sequence\": ...} or {\"SpecialToken\": ...}",
                           j->file, item);
        tx_path(path, sizeof path, item, seq ? "Sequence" : "SpecialToken", 0);
        vp_status s = tx_get_str(j, body, path, "id", true, &id);
        if (s == VP_OK) s = tx_get_int(j, body, path, "type_id", false, 0, &type);
        if (s != VP_OK) return s;
        if (type < 0 || type > INT32_MAX) return tx_bad(j, path, "type_id", "must be a non-negative integer");
        pc->type_id = (int32_t)type;
        pc->is_sequence = seq != NULL;
        if (seq) {
            if (strcmp(id, "A") && strcmp(id, "B")) return tx_bad(j, path, "id", "must be \"A\" or \"B\"");
            pc->sequence = id[0] == 'B';
            continue;
        }
        pc->special = -1;
        for (int k = 0; k < p->n_specials; k++)
            if (strcmp(p->specials[k].name, id) == 0) pc->special = k;
        if (pc->special < 0)
            return tx_bad(j, path, "id", "names \"%s\", which is not in \"%s.special_tokens\"", id, where);
    }
    return VP_OK;
}

static vp_status parse_sequence(const struct tx_json *j, const cJSON *o, const char *where, struct tx_post *p) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "processors");
    if (!cJSON_IsArray(list)) return tx_bad(j, where, "processors", "must be a list of post-processors");
    int n = cJSON_GetArraySize(list);
    if (n && !(p->seq = calloc((size_t)n, sizeof *p->seq))) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    char base[256], path[256];
    tx_path(base, sizeof base, where, "processors", 0);
    for (const cJSON *e = list->child; e; e = e->next) {
        tx_path(path, sizeof path, base, NULL, p->n_seq);
        vp_status s = tx_post_parse(j, e, path, &p->seq[p->n_seq]);
        if (s != VP_OK) return s;
        p->n_seq++;
    }
    return VP_OK;
}

static vp_status parse_fields(const struct tx_json *j, const cJSON *o, const char *where, const char *type,
                              struct tx_post *p) {
    vp_status s;
    p->cls = p->sep = -1;
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        p->kind = type[0] == 'B' ? POST_BERT : POST_ROBERTA;
        if ((s = parse_token_pair(j, o, where, "cls", &p->cls)) != VP_OK) return s;
        return parse_token_pair(j, o, where, "sep", &p->sep);
    }
    if (strcmp(type, "TemplateProcessing") == 0) {
        p->kind = POST_TEMPLATE;
        if ((s = parse_specials(j, o, where, p)) != VP_OK ||
            (s = parse_template(j, o, where, "single", p, &p->single, &p->n_single)) != VP_OK)
            return s;
        return parse_template(j, o, where, "pair", p, &p->pair, &p->n_pair);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        p->kind = POST_BYTE_LEVEL;
        return VP_OK;
    }
    if (strcmp(type, "Sequence") == 0) {
        p->kind = POST_SEQUENCE;
        return parse_sequence(j, o, where, p);
    }
    return tx_unsupported(j, "post-processor", type, where, supported);
}

vp_status tx_post_parse(const struct tx_json *j, const cJSON *o, const char *where, struct tx_post **out) {
    *out = NULL;
    const char *type;
    vp_status s = tx_get_type(j, o, where, &type);
    if (s != VP_OK) return s;
    struct tx_post *p = calloc(1, sizeof *p);
    if (!p) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    if ((s = parse_fields(j, o, where, type, p)) != VP_OK) {
        tx_post_free(p);
        return s;
    }
    *out = p;
    return VP_OK;
}

/* Every id the post-processor inserts must be a token of the vocabulary:
 * tokenizer.json may name any number, and an id past the embedding table
 * would be read out of bounds later. */
vp_status tx_post_check_ids(const struct tx_json *j, const struct tx_post *p, const char *where, int32_t vocab_size) {
    if ((p->kind == POST_BERT || p->kind == POST_ROBERTA) && (p->cls >= vocab_size || p->sep >= vocab_size))
        return tx_bad(j, where, p->cls >= vocab_size ? "cls" : "sep",
                      "names id %d, which is not in the vocabulary (ids 0..%d)",
                      p->cls >= vocab_size ? p->cls : p->sep, vocab_size - 1);
    char base[256], path[300];
    tx_path(base, sizeof base, where, "special_tokens", 0);
    for (int i = 0; i < p->n_specials; i++)
        for (int k = 0; k < p->specials[i].n; k++)
            if (p->specials[i].ids[k] >= vocab_size) {
                tx_path(path, sizeof path, base, p->specials[i].name, 0);
                return tx_bad(j, path, "ids", "names id %d, which is not in the vocabulary (ids 0..%d)",
                              p->specials[i].ids[k], vocab_size - 1);
            }
    tx_path(base, sizeof base, where, "processors", 0);
    for (int i = 0; i < p->n_seq; i++) {
        tx_path(path, sizeof path, base, NULL, i);
        vp_status s = tx_post_check_ids(j, p->seq[i], path, vocab_size);
        if (s != VP_OK) return s;
    }
    return VP_OK;
}

int tx_post_added(const struct tx_post *p, bool pair) {
    int n = 0;
    switch (p->kind) {
    case POST_BERT: return pair ? 3 : 2;
    case POST_ROBERTA: return pair ? 4 : 2;
    case POST_BYTE_LEVEL: return 0;
    case POST_TEMPLATE: {
        const struct template_piece *t = pair ? p->pair : p->single;
        for (int i = 0, count = pair ? p->n_pair : p->n_single; i < count; i++)
            if (!t[i].is_sequence) n += p->specials[t[i].special].n;
        return n;
    }
    case POST_SEQUENCE:
        for (int i = 0; i < p->n_seq; i++) n += tx_post_added(p->seq[i], pair);
        return n;
    }
    return 0;
}

/* ---- processing ----------------------------------------------------------------------- */

static vp_status too_many(void) {
    return vp_fail(VP_ERROR_UNSUPPORTED, "the post-processor produces more pieces than vkpeft supports (%d)",
                   TX_MAX_RUNS);
}

static bool add_run(struct tx_encoding *e, const int32_t *ids, int n, int32_t type, bool special) {
    if (e->n == TX_MAX_RUNS) return false;
    e->runs[e->n++] = (struct tx_run){ids, n, type, special};
    return true;
}

/* Wraps encoding e in `before` and `after` special tokens (NULL: none). */
static bool wrap(struct tx_encoding *e, const int32_t *before, const int32_t *after, int32_t type_after) {
    struct tx_encoding old = *e;
    e->n = 0;
    if (before && !add_run(e, before, 1, 0, true)) return false;
    for (int r = 0; r < old.n; r++)
        if (!add_run(e, old.runs[r].ids, old.runs[r].n, old.runs[r].type_id, old.runs[r].special)) return false;
    return !after || add_run(e, after, 1, type_after, true);
}

static vp_status run_template(const struct tx_post *p, struct tx_encodings *e, bool add_special) {
    if (e->n != 1 && e->n != 2)
        return vp_fail(VP_ERROR_UNSUPPORTED, "TemplateProcessing got %d encodings; it takes 1 or 2", e->n);
    const struct template_piece *t = e->n == 2 ? p->pair : p->single;
    int count = e->n == 2 ? p->n_pair : p->n_single;
    struct tx_encodings in = *e;
    e->n = 0;
    for (int i = 0; i < count; i++) {
        if (!t[i].is_sequence && !add_special) continue;
        if (e->n == TX_MAX_ENCODINGS) return too_many();
        struct tx_encoding *out = &e->v[e->n++];
        if (!t[i].is_sequence) {
            const struct special *s = &p->specials[t[i].special];
            out->n = 0;
            add_run(out, s->ids, s->n, t[i].type_id, true);
            continue;
        }
        if (t[i].sequence >= in.n)
            return vp_fail(VP_ERROR_BAD_INPUT, "the single-sequence template refers to sequence B");
        *out = in.v[t[i].sequence];
        for (int r = 0; r < out->n; r++) out->runs[r].type_id = t[i].type_id;
    }
    return VP_OK;
}

static vp_status process(const struct tx_post *p, struct tx_encodings *e, bool add_special) {
    switch (p->kind) {
    case POST_BYTE_LEVEL: return VP_OK;
    case POST_SEQUENCE:
        for (int i = 0; i < p->n_seq; i++) {
            vp_status s = process(p->seq[i], e, add_special);
            if (s != VP_OK) return s;
        }
        return VP_OK;
    case POST_TEMPLATE: return run_template(p, e, add_special);
    case POST_ROBERTA:
        /* RoBERTa sets every type id to 0, special tokens or not. */
        for (int i = 0; i < e->n; i++)
            for (int r = 0; r < e->v[i].n; r++) e->v[i].runs[r].type_id = 0;
        if (!add_special) return VP_OK;
        for (int i = 0; i < e->n; i++)
            if (!wrap(&e->v[i], i == 0 ? &p->cls : &p->sep, &p->sep, 0)) return too_many();
        return VP_OK;
    case POST_BERT:
        if (!add_special) return VP_OK;
        for (int i = 0; i < e->n; i++)
            if (!wrap(&e->v[i], i == 0 ? &p->cls : NULL, &p->sep, i == 0 ? 0 : 1)) return too_many();
        return VP_OK;
    }
    return VP_OK;
}

vp_status tx_post_run(const struct tx_post *p, struct tx_encodings *e, bool add_special_tokens) {
    return process(p, e, add_special_tokens);
}

void tx_post_special_ids(const struct tx_post *p, int32_t *cls, int32_t *sep, int32_t *first, int32_t *last) {
    if (p->kind == POST_SEQUENCE) {
        for (int i = 0; i < p->n_seq; i++) tx_post_special_ids(p->seq[i], cls, sep, first, last);
        return;
    }
    if (p->kind == POST_BERT || p->kind == POST_ROBERTA) {
        *cls = p->cls;
        *sep = p->sep;
        return;
    }
    if (p->kind != POST_TEMPLATE || !p->n_single) return;
    const struct template_piece *a = &p->single[0], *z = &p->single[p->n_single - 1];
    if (!a->is_sequence && p->specials[a->special].n == 1) *first = p->specials[a->special].ids[0];
    if (!z->is_sequence && p->specials[z->special].n == 1) *last = p->specials[z->special].ids[0];
}
