/* Encoder-decoder generation (seq2seq_lm.h): search.h's strategies driven
 * by a step that re-runs the whole model on every row's decoder prefix. No
 * KV cache yet: each step is one evaluation pass of (rows, S) sources and
 * (rows, T) decoder prefixes, of which only each row's last position's
 * logits are kept — simple and exact, quadratic in the generated length. */
#include "seq2seq_lm.h"

#include <stdlib.h>
#include <string.h>

struct s2s_gen {
    struct seq2seq *m;
    int B, S, T, V;             /* the model's batch shape */
    int batch, src_len;         /* the sources */
    const int32_t *src;         /* (batch, src_len) */
    const uint8_t *src_mask;    /* (batch, src_len) or NULL */
    int32_t start;              /* decoder_start_token_id */
    int rows;                   /* rows of the last call */
    int32_t *prefix, *prev;     /* (B, T) each row's decoder ids; the last call's */
    int *len, *prev_len;        /* (B) */
    int *item, *prev_item;      /* (B) the batch item a row generates for */
    int32_t *enc_ids, *dec_ids, *labels; /* the batch written */
    uint8_t *enc_mask, *dec_mask;
    float *logits;              /* (B, T, V) */
};

static void gen_free(struct s2s_gen *g) {
    void *p[] = {g->prefix, g->prev, g->len, g->prev_len, g->item, g->prev_item, g->enc_ids, g->dec_ids,
                 g->labels, g->enc_mask, g->dec_mask, g->logits};
    for (size_t k = 0; k < sizeof p / sizeof p[0]; k++) free(p[k]);
}

/* Rows past `rows` repeat item 0's source with the start token alone, so
 * every attention row sees a key. */
static vp_status run_rows(struct s2s_gen *g, int rows, float *out) {
    const int B = g->B, S = g->S, T = g->T, V = g->V;
    for (int r = 0; r < B; r++) {
        const int item = r < rows ? g->item[r] : 0, len = r < rows ? g->len[r] : 1;
        for (int s = 0; s < S; s++) {
            const bool real = s < g->src_len && (!g->src_mask || g->src_mask[(size_t)item * g->src_len + s]);
            g->enc_ids[(size_t)r * S + s] = s < g->src_len ? g->src[(size_t)item * g->src_len + s] : 0;
            g->enc_mask[(size_t)r * S + s] = real;
        }
        for (int t = 0; t < T; t++) {
            g->dec_ids[(size_t)r * T + t] = r < rows && t < len ? g->prefix[(size_t)r * T + t] : g->start;
            g->dec_mask[(size_t)r * T + t] = t < len;
            g->labels[(size_t)r * T + t] = ENCODER_IGNORE_INDEX;
        }
    }
    const struct seq2seq_batch b = {g->enc_ids, g->enc_mask, g->dec_ids, g->dec_mask, g->labels};
    vp_status s = seq2seq_write_batch(g->m, &b);
    if (s == VP_OK) s = seq2seq_run(g->m, SEQ2SEQ_PASS_EVAL);
    if (s == VP_OK) s = seq2seq_logits(g->m, g->logits);
    for (int r = 0; s == VP_OK && r < rows; r++)
        memcpy(out + (size_t)r * V, g->logits + ((size_t)r * T + (size_t)(g->len[r] - 1)) * V, (size_t)V * 4);
    return s;
}

/* search_step_fn: row r continues row parent[r] of the last call with
 * tokens[r] (the first call: item r from the start token). */
static vp_status gen_step(void *user, int rows, const int32_t *parent, const int32_t *tokens, float *logits) {
    struct s2s_gen *g = user;
    if (rows > g->B)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: %d rows, the model is loaded for %d", rows, g->B);
    if (!parent) {
        for (int r = 0; r < rows; r++) {
            g->prefix[(size_t)r * g->T] = g->start;
            g->len[r] = 1;
            g->item[r] = r;
        }
    } else {
        memcpy(g->prev, g->prefix, (size_t)g->B * g->T * sizeof *g->prev);
        memcpy(g->prev_len, g->len, (size_t)g->B * sizeof *g->len);
        memcpy(g->prev_item, g->item, (size_t)g->B * sizeof *g->item);
        for (int r = 0; r < rows; r++) {
            const int p = parent[r], n = g->prev_len[p];
            if (n + 1 > g->T)
                return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: a sequence outgrew the %d decoder "
                               "positions the model is loaded for", g->T);
            memcpy(g->prefix + (size_t)r * g->T, g->prev + (size_t)p * g->T, (size_t)n * sizeof *g->prefix);
            g->prefix[(size_t)r * g->T + n] = tokens[r];
            g->len[r] = n + 1;
            g->item[r] = g->prev_item[p];
        }
    }
    g->rows = rows;
    return run_rows(g, rows, logits);
}

void seq2seq_search_defaults(const struct model_arch *a, struct search_options *o) {
    for (int k = 0; k < a->eos_count && k < SEARCH_MAX_EOS; k++) o->eos_token_ids[o->eos_count++] = a->eos_token_ids[k];
    o->pad_token_set = true;
    o->pad_token_id = a->pad_token_id;
    if (a->forced_bos_token_id >= 0) {
        o->forced_bos_set = true;
        o->forced_bos_token_id = a->forced_bos_token_id;
    }
    if (a->forced_eos_token_id >= 0) {
        o->forced_eos_count = 1;
        o->forced_eos_token_ids[0] = a->forced_eos_token_id;
    }
}

vp_status seq2seq_generate(struct seq2seq *m, const struct search_options *o, const int32_t *src,
                           const uint8_t *src_mask, int batch, int src_len, struct search_result *out) {
    memset(out, 0, sizeof *out);
    vp_status s = m->loaded ? VP_OK : vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: load the model first");
    const struct model_arch *a = &m->arch;
    struct s2s_gen g = {.m = m, .B = m->acts.B, .S = m->acts.S, .T = m->acts.T, .V = a->vocab_size, .batch = batch,
                        .src_len = src_len, .src = src, .src_mask = src_mask};
    g.start = a->decoder_start_token_id >= 0 ? a->decoder_start_token_id : a->eos_token_id;
    if (s == VP_OK && (batch < 1 || batch > g.B || src_len < 1 || src_len > g.S || g.start < 0))
        s = vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: %d sources of %d tokens for a model loaded for %d "
                    "× %d (decoder start %d)", batch, src_len, g.B, g.S, g.start);
    const size_t BT = (size_t)g.B * g.T, BS = (size_t)g.B * g.S;
    if (s == VP_OK) {
        g.prefix = malloc(BT * sizeof *g.prefix);
        g.prev = malloc(BT * sizeof *g.prev);
        g.dec_ids = malloc(BT * sizeof *g.dec_ids);
        g.labels = malloc(BT * sizeof *g.labels);
        g.dec_mask = malloc(BT);
        g.enc_ids = malloc(BS * sizeof *g.enc_ids);
        g.enc_mask = malloc(BS);
        g.len = calloc((size_t)g.B, sizeof *g.len);
        g.prev_len = calloc((size_t)g.B, sizeof *g.prev_len);
        g.item = calloc((size_t)g.B, sizeof *g.item);
        g.prev_item = calloc((size_t)g.B, sizeof *g.prev_item);
        g.logits = malloc(BT * (size_t)g.V * sizeof *g.logits);
        if (!g.prefix || !g.prev || !g.dec_ids || !g.labels || !g.dec_mask || !g.enc_ids || !g.enc_mask || !g.len ||
            !g.prev_len || !g.item || !g.prev_item || !g.logits)
            s = vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq generate: out of host memory");
    }
    if (s == VP_OK) {
        int32_t **ids = malloc((size_t)batch * sizeof *ids);
        int *lens = malloc((size_t)batch * sizeof *lens);
        if (!ids || !lens) s = vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq generate: out of host memory");
        for (int b = 0; s == VP_OK && b < batch; b++) {
            ids[b] = &g.start;
            lens[b] = 1;
        }
        struct search_options so = *o;
        /* HF's lengths (max_length counts the start token; 20 by default),
         * at most the decoder positions loaded */
        if (!so.max_new_tokens) so.max_new_tokens = (so.max_length ? so.max_length : 20) - 1;
        if (so.max_new_tokens > g.T - 1) so.max_new_tokens = g.T - 1;
        const struct search_model sm = {gen_step, &g, g.V};
        const struct search_input in = {batch, (const int32_t *const *)ids, lens};
        if (s == VP_OK) s = search_run(&so, &sm, &in, out);
        free(ids);
        free(lens);
    }
    gen_free(&g);
    return s;
}
