/* Unigram language model as Hugging Face's models/unigram (and
 * SentencePiece's Model::EncodeOptimized): Viterbi over every vocabulary
 * piece matching at each character boundary, scores summed as log
 * probabilities. A character no single piece covers becomes the unknown
 * token with score min_score - 10; consecutive unknowns fuse into one, which
 * byte_fallback then spells as <0xNN> tokens. */
#include "text_model.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

static const double unk_penalty = 10.0; /* tokenizers' K_UNK_PENALTY, SentencePiece's kUnkPenalty */

vp_status model_unigram_parse(const struct tx_json *j, const cJSON *o, struct tx_model *m) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(o, "vocab");
    if (!cJSON_IsArray(vocab)) return tx_bad(j, "model", "vocab", "must be a list of [piece, score] pairs");
    int n = cJSON_GetArraySize(vocab);
    int64_t unk;
    vp_status s = tx_get_int(j, o, "model", "unk_id", false, -1, &unk);
    if (s == VP_OK) s = tx_get_bool(j, o, "model", "byte_fallback", false, &m->byte_fallback);
    if (s != VP_OK) return s;
    if (unk >= 0 && unk >= n) return tx_bad(j, "model", "unk_id", "is %lld but the vocabulary has %d pieces", (long long)unk, n);
    m->unk_id = unk >= 0 ? (int32_t)unk : -1;
    m->n_ids = n;
    if (n && (!(m->name_off = malloc((size_t)n * sizeof *m->name_off)) || !(m->scores = malloc((size_t)n * sizeof *m->scores))))
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", j->file);
    m->min_score = DBL_MAX;
    int id = 0;
    for (const cJSON *e = vocab->child; e; e = e->next, id++) {
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(e->child) ||
            !cJSON_IsNumber(e->child->next)) {
            char where[64];
            tx_path(where, sizeof where, "model.vocab", NULL, id);
            return vp_fail(VP_ERROR_BAD_INPUT, "%s: \"%s\" must be a [piece, score] pair", j->file, where);
        }
        const char *piece = e->child->valuestring;
        size_t len = strlen(piece);
        m->scores[id] = e->child->next->valuedouble;
        if (m->scores[id] < m->min_score) m->min_score = m->scores[id];
        if (!tx_strmap_put(&m->vocab, piece, len, id) || !model_set_name(m, id, piece, len) ||
            !tx_trie_put(&m->trie, piece, len, id))
            return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", j->file);
    }
    if (m->byte_fallback) model_find_byte_ids(m);
    return VP_OK;
}

struct node {
    double score;     /* best path score ending here */
    int64_t start;    /* where that path's last piece starts; -1: none yet */
    int32_t id;
};

static vp_status missing_unk(void) {
    return vp_fail(VP_ERROR_BAD_INPUT,
                   "the Unigram model met a character no piece covers and has no unknown token; set "
                   "\"model.unk_id\" in tokenizer.json");
}

/* Appends the ids for the piece s[0..len): its own id, else its bytes
 * (byte_fallback), else the unknown token. */
static vp_status piece_ids(const struct tx_model *m, const char *s, size_t len, struct tx_ids *out) {
    int32_t id = tx_strmap_get(&m->vocab, s, len);
    bool ok = true;
    if (id < 0 && m->byte_fallback) {
        bool all = true;
        for (size_t k = 0; k < len && all; k++) all = m->byte_ids[(unsigned char)s[k]] >= 0;
        if (all) {
            for (size_t k = 0; k < len && ok; k++) ok = tx_ids_add(out, m->byte_ids[(unsigned char)s[k]]);
            return ok ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
        }
    }
    if (id < 0 && (id = m->unk_id) < 0) return missing_unk();
    return tx_ids_add(out, id) ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
}

static vp_status viterbi(const struct tx_model *m, const char *s, size_t len, struct node *nodes) {
    double unk_score = m->min_score - unk_penalty;
    for (size_t i = 0; i <= len; i++) nodes[i] = (struct node){.score = 0, .start = -1, .id = 0};
    for (size_t start = 0; start < len;) {
        uint32_t c;
        size_t mblen = uc_decode(s, start, &c);
        double here = nodes[start].score;
        bool single = false;
        uint32_t node = 0;
        for (size_t k = start; m->trie.n && k < len; k++) {
            int64_t next = tx_trie_step(&m->trie, node, (unsigned char)s[k]);
            if (next < 0) break;
            node = (uint32_t)next;
            int32_t id = m->trie.value[node];
            if (id < 0) continue;
            struct node *t = &nodes[k + 1];
            double cand = m->scores[id] + here;
            if (t->start < 0 || cand > t->score) *t = (struct node){.score = cand, .start = (int64_t)start, .id = id};
            if (k + 1 - start == mblen) single = true;
        }
        if (!single) {
            if (m->unk_id < 0) return missing_unk();
            struct node *t = &nodes[start + mblen];
            double cand = unk_score + here;
            if (t->start < 0 || cand > t->score)
                *t = (struct node){.score = cand, .start = (int64_t)start, .id = m->unk_id};
        }
        start += mblen;
    }
    return VP_OK;
}

vp_status model_unigram_tokenize(const struct tx_model *m, const char *s, size_t len, struct tx_ids *out) {
    struct node *nodes = malloc((len + 1) * sizeof *nodes);
    size_t *bounds = malloc((len + 1) * sizeof *bounds);
    if (!nodes || !bounds) {
        free(nodes);
        free(bounds);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    }
    vp_status st = viterbi(m, s, len, nodes);
    /* Backtrack into piece boundaries, fusing runs of unknown pieces. */
    size_t nb = 0;
    bool prev_unk = false;
    for (size_t end = len; st == VP_OK && end > 0;) {
        const struct node *nd = &nodes[end];
        bool unk = nd->id == m->unk_id;
        if (!(unk && prev_unk)) bounds[nb++] = end;
        prev_unk = unk;
        end = (size_t)nd->start;
    }
    for (size_t i = nb; st == VP_OK && i > 0; i--) {
        size_t start = i < nb ? bounds[i] : 0, end = bounds[i - 1];
        st = piece_ids(m, s + start, end - start, out);
    }
    free(nodes);
    free(bounds);
    return st;
}
