/* Causal-LM and seq2seq examples from JSONL and the batches built from them
 * (conventions in lmdata.h): a chunked line reader, tokenization into
 * examples, a seeded shuffle window, and packed or padded batches. */
#define _POSIX_C_SOURCE 200809L
#include "lmdata.h"

#include "arch.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One tokenized example. Causal: ids/labels (n). Seq2seq: ids = encoder ids
 * (n), labels = target labels (nt). Owns its arrays. */
struct lm_example {
    int32_t *ids, *labels;
    int n, nt;
    size_t cap_ids, cap_labels;
    uint64_t line;
};

struct lm_data {
    struct lm_data_options o;
    char *path;
    FILE *f;
    /* line reader: the file is read read_chunk bytes at a time */
    char *chunk;
    size_t chunk_len, chunk_pos;
    char *line;
    size_t line_len, line_cap;
    uint64_t line_no;
    bool eof;
    struct lm_data_ids ids;
    struct tok_encoding enc, enc2;
    /* shuffle window: pool[0..pool_n) are read ahead; cur is the example
     * handed out last (packing reads it from cur_pos on) */
    struct lm_example *pool;
    int pool_n, window;
    struct lm_example cur;
    int cur_pos;
    bool have_cur;
    uint64_t rng;
    uint64_t skipped, examples;
    /* staging for padded batches: batch rows of max_len (and max_target_len) */
    struct lm_example *stage;
};

/* ------------------------------------------------------------------------
 * Line reader
 * ------------------------------------------------------------------------ */

static vp_status line_append(struct lm_data *d, const char *s, size_t n) {
    if (d->line_len + n + 1 > d->line_cap) {
        size_t cap = d->line_cap ? d->line_cap : 256;
        while (cap < d->line_len + n + 1) cap *= 2;
        char *l = realloc(d->line, cap);
        if (!l) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", d->path);
        d->line = l;
        d->line_cap = cap;
    }
    memcpy(d->line + d->line_len, s, n);
    d->line_len += n;
    d->line[d->line_len] = 0;
    return VP_OK;
}

/* The next line (without its newline) into d->line; *done at the end. */
static vp_status read_line(struct lm_data *d, bool *done) {
    d->line_len = 0;
    if (d->line) d->line[0] = 0;
    bool any = false;
    for (;;) {
        if (d->chunk_pos == d->chunk_len) {
            if (d->eof) break;
            errno = 0;
            d->chunk_len = fread(d->chunk, 1, d->o.read_chunk, d->f);
            d->chunk_pos = 0;
            if (d->chunk_len < d->o.read_chunk) {
                if (ferror(d->f)) return vp_fail(VP_ERROR_IO, "cannot read %s: %s", d->path, strerror(errno));
                d->eof = true;
            }
            if (d->chunk_len == 0) break;
        }
        any = true;
        const char *s = d->chunk + d->chunk_pos;
        const char *nl = memchr(s, '\n', d->chunk_len - d->chunk_pos);
        const size_t n = nl ? (size_t)(nl - s) : d->chunk_len - d->chunk_pos;
        vp_status st = line_append(d, s, n);
        if (st != VP_OK) return st;
        d->chunk_pos += n + (nl != NULL);
        if (nl) break;
    }
    *done = !any;
    if (any) d->line_no++;
    return VP_OK;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

/* ------------------------------------------------------------------------
 * Examples
 * ------------------------------------------------------------------------ */

static vp_status example_reserve(struct lm_data *d, struct lm_example *ex, int n, int nt) {
    if ((size_t)n > ex->cap_ids) {
        int32_t *p = realloc(ex->ids, (size_t)n * sizeof *p);
        if (!p) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", d->path);
        ex->ids = p;
        ex->cap_ids = (size_t)n;
    }
    if ((size_t)nt > ex->cap_labels) {
        int32_t *p = realloc(ex->labels, (size_t)nt * sizeof *p);
        if (!p) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", d->path);
        ex->labels = p;
        ex->cap_labels = (size_t)nt;
    }
    return VP_OK;
}

static void example_free(struct lm_example *ex) {
    free(ex->ids);
    free(ex->labels);
    memset(ex, 0, sizeof *ex);
}

static vp_status bad_field(const struct lm_data *d, const char *field, const char *what) {
    return vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: the field \"%s\" %s", d->path, (unsigned long long)d->line_no, field,
                   what);
}

/* The string field `name` of obj; a missing or non-string field is a bad line. */
static vp_status string_field(const struct lm_data *d, const cJSON *obj, const char *name, const char **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it) return bad_field(d, name, "is missing");
    if (!cJSON_IsString(it)) return bad_field(d, name, "is not a string");
    *out = it->valuestring;
    return VP_OK;
}

static vp_status encode(struct lm_data *d, const char *text, const char *field, bool special, int max_len,
                        struct tok_encoding *e) {
    vp_status s = tok_encode(d->o.tokenizer, text, NULL, special, max_len, e);
    if (s != VP_OK)
        return vp_fail_context(s, "%s:%llu: field \"%s\"", d->path, (unsigned long long)d->line_no, field);
    int content = 0;
    for (int i = 0; i < e->len; i++) content += !e->special[i];
    return content ? VP_OK : bad_field(d, field, "is empty after tokenization");
}

/* [bos] prompt completion [eos] or [bos] text [eos]; labels -100 on the prompt. */
static vp_status causal_example(struct lm_data *d, const cJSON *obj, struct lm_example *ex) {
    const char *prompt = NULL, *text;
    const char *field = d->o.text_field;
    vp_status s;
    if (cJSON_GetObjectItemCaseSensitive(obj, d->o.prompt_field)) {
        s = string_field(d, obj, d->o.prompt_field, &prompt);
        if (s == VP_OK && (s = tok_encode(d->o.tokenizer, prompt, NULL, false, 0, &d->enc2)) != VP_OK)
            s = vp_fail_context(s, "%s:%llu: field \"%s\"", d->path, (unsigned long long)d->line_no,
                                d->o.prompt_field);
        if (s != VP_OK) return s;
        field = d->o.completion_field;
    } else {
        d->enc2.len = 0;
    }
    if (!prompt && !cJSON_GetObjectItemCaseSensitive(obj, field))
        return vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: the field \"%s\" (or \"%s\" and \"%s\") is missing",
                       d->path, (unsigned long long)d->line_no, field, d->o.prompt_field, d->o.completion_field);
    s = string_field(d, obj, field, &text);
    if (s == VP_OK) s = encode(d, text, field, false, 0, &d->enc);
    if (s != VP_OK) return s;
    const int np = d->enc2.len, nc = d->enc.len;
    int n = d->ids.add_bos + np + nc + d->ids.add_eos;
    s = example_reserve(d, ex, n, n);
    if (s != VP_OK) return s;
    int k = 0;
    if (d->ids.add_bos) {
        ex->ids[k] = d->ids.bos;
        ex->labels[k++] = prompt ? LM_IGNORE_INDEX : d->ids.bos;
    }
    for (int i = 0; i < np; i++, k++) {
        ex->ids[k] = d->enc2.ids[i];
        ex->labels[k] = LM_IGNORE_INDEX;
    }
    for (int i = 0; i < nc; i++, k++) ex->ids[k] = ex->labels[k] = d->enc.ids[i];
    if (d->ids.add_eos) ex->ids[k] = ex->labels[k] = d->ids.eos, k++;
    if (!d->o.pack && n > d->o.max_len) {
        n = d->o.max_len; /* right truncation */
        if (prompt && d->ids.add_bos + np >= n)
            return vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: the field \"%s\" is truncated away: the prompt takes %d of "
                           "max_len %d tokens; raise max_len or shorten the prompt", d->path,
                           (unsigned long long)d->line_no, field, d->ids.add_bos + np, d->o.max_len);
    }
    ex->n = n;
    ex->nt = 0;
    return VP_OK;
}

/* Encoder ids = encode(source) with the template; labels = encode(target)
 * with the template, its first special replaced by (or, without one,
 * preceded by) the target language id when set. */
static vp_status seq2seq_example(struct lm_data *d, const cJSON *obj, struct lm_example *ex) {
    const char *source, *target;
    const int max_t = d->o.max_target_len;
    vp_status s = string_field(d, obj, d->o.source_field, &source);
    if (s == VP_OK) s = string_field(d, obj, d->o.target_field, &target);
    if (s == VP_OK) s = encode(d, source, d->o.source_field, true, d->o.max_len, &d->enc);
    if (s == VP_OK) s = encode(d, target, d->o.target_field, true, max_t, &d->enc2);
    if (s == VP_OK) s = example_reserve(d, ex, d->enc.len, d->enc2.len + 1);
    if (s != VP_OK) return s;
    memcpy(ex->ids, d->enc.ids, (size_t)d->enc.len * sizeof *ex->ids);
    ex->n = d->enc.len;
    int nt = 0;
    const bool lead = d->enc2.len > 0 && d->enc2.special[0];
    if (d->o.target_lang) ex->labels[nt++] = d->o.target_lang_id;
    for (int i = d->o.target_lang && lead ? 1 : 0; i < d->enc2.len; i++) ex->labels[nt++] = d->enc2.ids[i];
    if (nt > max_t) { /* the language id made it one too long: drop the token before the last (EOS) */
        ex->labels[nt - 2] = ex->labels[nt - 1];
        nt--;
    }
    ex->nt = nt;
    return VP_OK;
}

/* Reads lines until one makes an example (bad ones counted and skipped with
 * skip_bad); *done at the end of the file. */
static vp_status read_example(struct lm_data *d, struct lm_example *ex, bool *done) {
    for (;;) {
        vp_status s = read_line(d, done);
        if (s != VP_OK || *done) return s;
        if (blank(d->line, d->line_len)) continue;
        cJSON *obj = cJSON_ParseWithLength(d->line, d->line_len);
        if (!cJSON_IsObject(obj))
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: not a JSON object (one object per line)", d->path,
                        (unsigned long long)d->line_no);
        else if (d->o.task == LM_TASK_CAUSAL)
            s = causal_example(d, obj, ex);
        else
            s = seq2seq_example(d, obj, ex);
        cJSON_Delete(obj);
        if (s == VP_OK) {
            ex->line = d->line_no;
            d->examples++;
            return VP_OK;
        }
        if (s != VP_ERROR_BAD_INPUT || !d->o.skip_bad) return s;
        d->skipped++;
    }
}

/* Hands the next example out as d->cur, drawn from the shuffle window. */
static vp_status next_example(struct lm_data *d, bool *done) {
    *done = false;
    bool eof = false;
    while (d->pool_n < d->window && !eof) {
        vp_status s = read_example(d, &d->pool[d->pool_n], &eof);
        if (s != VP_OK) return s;
        if (!eof) d->pool_n++;
    }
    if (d->pool_n == 0) {
        *done = true;
        d->have_cur = false;
        return VP_OK;
    }
    const int pick = d->o.shuffle_window > 0 ? (int)vp_random_below(&d->rng, (uint64_t)d->pool_n) : 0;
    struct lm_example t = d->cur;
    d->cur = d->pool[pick];
    d->pool[pick] = d->pool[d->pool_n - 1]; /* file order (window 1): pick is 0 = pool_n - 1 */
    d->pool[d->pool_n - 1] = t;
    d->pool_n--;
    d->cur_pos = 0;
    d->have_cur = true;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Opening
 * ------------------------------------------------------------------------ */

/* What HF's tokenizer(text) does: BOS first exactly when the template puts it there. */
static bool template_adds_bos(struct lm_data *d) {
    if (d->ids.bos < 0) return false;
    vp_status s = tok_encode(d->o.tokenizer, "", NULL, true, 0, &d->enc);
    return s == VP_OK && d->enc.len > 0 && d->enc.special[0] && d->enc.ids[0] == d->ids.bos;
}

static vp_status resolve_ids(struct lm_data *d) {
    const struct tok_special_ids sp = tok_special_ids(d->o.tokenizer);
    const struct model_arch *a = d->o.arch;
    struct lm_data_ids *ids = &d->ids;
    ids->bos = a && a->bos_token_id >= 0 ? a->bos_token_id : sp.bos;
    ids->eos = a && a->eos_token_id >= 0 ? a->eos_token_id : sp.eos;
    ids->pad = sp.pad >= 0 ? sp.pad : ids->eos;
    ids->decoder_start = a && a->decoder_start_token_id >= 0 ? a->decoder_start_token_id : ids->eos;
    if (d->o.task == LM_TASK_SEQ2SEQ) {
        if (ids->decoder_start < 0)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: no decoder_start_token_id in config.json and no EOS token "
                           "in the tokenizer to start the decoder with", d->path);
    } else {
        ids->add_bos = d->o.add_bos == LM_ON || (d->o.add_bos == LM_AUTO && template_adds_bos(d));
        ids->add_eos = d->o.add_eos != LM_OFF;
        if (ids->add_bos && ids->bos < 0)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: add_bos is on but the model and tokenizer have no BOS "
                           "token", d->path);
        if (ids->add_eos && ids->eos < 0)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: the model and tokenizer have no EOS token to end "
                           "examples with; turn add_eos off", d->path);
    }
    if (ids->pad < 0 && !(d->o.task == LM_TASK_CAUSAL && d->o.pack))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: no pad token and no EOS token to pad batches with", d->path);
    return VP_OK;
}

static vp_status check_options(const char *path, const struct lm_data_options *o) {
    if (!o->tokenizer) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: text needs a tokenizer", path);
    if (o->max_len < 1) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: max_len %d", path, o->max_len);
    if (o->batch < 0 || o->shuffle_window < 0 || o->max_target_len < 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: batch %d, shuffle_window %d, max_target_len %d", path,
                       o->batch, o->shuffle_window, o->max_target_len);
    if (o->task == LM_TASK_SEQ2SEQ && o->pack)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: packing is for causal LM data only", path);
    return VP_OK;
}

vp_status lm_data_open(const char *path, const struct lm_data_options *o, struct lm_data **out) {
    *out = NULL;
    vp_status s = check_options(path, o);
    if (s != VP_OK) return s;
    struct lm_data *d = calloc(1, sizeof *d);
    if (!d) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening %s", path);
    d->o = *o;
    struct lm_data_options *opt = &d->o;
    if (!opt->text_field) opt->text_field = "text";
    if (!opt->prompt_field) opt->prompt_field = "prompt";
    if (!opt->completion_field) opt->completion_field = "completion";
    if (!opt->source_field) opt->source_field = "source";
    if (!opt->target_field) opt->target_field = "target";
    if (!opt->max_target_len) opt->max_target_len = opt->max_len;
    if (!opt->batch) opt->batch = 1;
    if (!opt->read_chunk) opt->read_chunk = 64 * 1024;
    d->window = opt->shuffle_window > 1 ? opt->shuffle_window : 1;
    d->path = strdup(path);
    d->chunk = malloc(opt->read_chunk);
    d->pool = calloc((size_t)d->window, sizeof *d->pool);
    d->stage = calloc((size_t)opt->batch, sizeof *d->stage);
    if (!d->path || !d->chunk || !d->pool || !d->stage)
        s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening %s", path);
    if (s == VP_OK && !(d->f = fopen(path, "rb")))
        s = vp_fail(VP_ERROR_IO, "cannot open %s: %s", path, strerror(errno));
    if (s == VP_OK) s = resolve_ids(d);
    if (s == VP_OK) s = lm_data_rewind(d, 0);
    if (s != VP_OK) {
        lm_data_close(d);
        return s;
    }
    *out = d;
    return VP_OK;
}

vp_status lm_data_rewind(struct lm_data *d, uint64_t epoch) {
    if (fseek(d->f, 0, SEEK_SET) != 0)
        return vp_fail(VP_ERROR_IO, "cannot rewind %s: %s", d->path, strerror(errno));
    clearerr(d->f);
    d->chunk_len = d->chunk_pos = 0;
    d->eof = false;
    d->line_no = 0;
    d->pool_n = 0;
    d->have_cur = false;
    d->skipped = d->examples = 0;
    d->rng = vp_epoch_rng(d->o.seed, epoch);
    return VP_OK;
}

void lm_data_close(struct lm_data *d) {
    if (!d) return;
    if (d->f) fclose(d->f);
    for (int i = 0; d->pool && i < d->window; i++) example_free(&d->pool[i]);
    for (int i = 0; d->stage && i < d->o.batch; i++) example_free(&d->stage[i]);
    example_free(&d->cur);
    tok_encoding_free(&d->enc);
    tok_encoding_free(&d->enc2);
    free(d->pool);
    free(d->stage);
    free(d->chunk);
    free(d->line);
    free(d->path);
    free(d);
}

uint64_t lm_data_skipped(const struct lm_data *d) { return d->skipped; }
uint64_t lm_data_examples(const struct lm_data *d) { return d->examples; }
struct lm_data_ids lm_data_ids(const struct lm_data *d) { return d->ids; }

/* ------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------ */

void lm_batch_finish(struct lm_batch *b) {
    free(b->ids);
    free(b->mask);
    free(b->labels);
    free(b->enc_ids);
    free(b->enc_mask);
    free(b->line);
    memset(b, 0, sizeof *b);
}

static vp_status batch_reserve(struct lm_batch *b, int B, int T, int S) {
    const size_t n = (size_t)B * (size_t)T, ns = (size_t)B * (size_t)S;
    if (n > b->cap) {
        free(b->ids), free(b->mask), free(b->labels);
        b->ids = malloc(n * sizeof *b->ids);
        b->mask = malloc(n);
        b->labels = malloc(n * sizeof *b->labels);
        b->cap = b->ids && b->mask && b->labels ? n : 0;
        if (!b->cap) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for a %d x %d batch", B, T);
    }
    if (ns > b->enc_cap) {
        free(b->enc_ids), free(b->enc_mask);
        b->enc_ids = malloc(ns * sizeof *b->enc_ids);
        b->enc_mask = malloc(ns);
        b->enc_cap = b->enc_ids && b->enc_mask ? ns : 0;
        if (!b->enc_cap) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for a %d x %d batch", B, S);
    }
    if ((size_t)B > b->row_cap) {
        free(b->line);
        b->line = malloc((size_t)B * sizeof *b->line);
        b->row_cap = b->line ? (size_t)B : 0;
        if (!b->row_cap) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for a batch of %d rows", B);
    }
    b->B = B, b->T = T, b->S = S;
    return VP_OK;
}

/* Packing: row r takes examples (and the rest of a split one) until it
 * holds T tokens; a row the file ends in is right-padded. */
static vp_status fill_packed(struct lm_data *d, struct lm_batch *b, bool *done) {
    const int B = d->o.batch, T = d->o.max_len;
    vp_status s = batch_reserve(b, B, T, 0);
    int rows = 0;
    for (; s == VP_OK && rows < B; rows++) {
        int32_t *ids = b->ids + (size_t)rows * T, *labels = b->labels + (size_t)rows * T;
        int k = 0;
        bool end = false;
        while (k < T) {
            if (!d->have_cur || d->cur_pos == d->cur.n) {
                s = next_example(d, &end);
                if (s != VP_OK || end) break;
            }
            if (k == 0) b->line[rows] = d->cur.line;
            int take = d->cur.n - d->cur_pos < T - k ? d->cur.n - d->cur_pos : T - k;
            memcpy(ids + k, d->cur.ids + d->cur_pos, (size_t)take * sizeof *ids);
            memcpy(labels + k, d->cur.labels + d->cur_pos, (size_t)take * sizeof *labels);
            k += take;
            d->cur_pos += take;
        }
        if (s != VP_OK || k == 0) break;
        memset(b->mask + (size_t)rows * T, 1, (size_t)k);
        memset(b->mask + (size_t)rows * T + k, 0, (size_t)(T - k));
        for (int t = k; t < T; t++) ids[t] = d->ids.pad >= 0 ? d->ids.pad : 0, labels[t] = LM_IGNORE_INDEX;
        if (end) {
            rows++;
            break;
        }
    }
    b->B = rows;
    *done = s == VP_OK && rows == 0;
    return s;
}

/* Without packing: up to B examples moved (not copied) into the staging rows. */
static vp_status stage_rows(struct lm_data *d, int *rows) {
    *rows = 0;
    for (int r = 0; r < d->o.batch; r++) {
        bool end = false;
        vp_status s = next_example(d, &end);
        if (s != VP_OK) return s;
        if (end) break;
        struct lm_example t = d->stage[r];
        d->stage[r] = d->cur;
        d->cur = t;
        d->have_cur = false;
        *rows = r + 1;
    }
    return VP_OK;
}

/* Right padding to the longest row: ids pad (mask 0), labels -100. */
static vp_status fill_padded(struct lm_data *d, struct lm_batch *b, int rows) {
    int T = 1;
    for (int r = 0; r < rows; r++) T = d->stage[r].n > T ? d->stage[r].n : T;
    vp_status s = batch_reserve(b, rows, T, 0);
    for (int r = 0; s == VP_OK && r < rows; r++) {
        const struct lm_example *ex = &d->stage[r];
        for (int t = 0; t < T; t++) {
            const size_t i = (size_t)r * T + t;
            b->ids[i] = t < ex->n ? ex->ids[t] : d->ids.pad;
            b->labels[i] = t < ex->n ? ex->labels[t] : LM_IGNORE_INDEX;
            b->mask[i] = t < ex->n;
        }
        b->line[r] = ex->line;
    }
    return s;
}

/* Encoder ids padded to the longest source S; labels padded with -100 to the
 * longest target T; decoder inputs shift_tokens_right(labels, pad, start). */
static vp_status fill_seq2seq(struct lm_data *d, struct lm_batch *b, int rows) {
    int S = 1, T = 1;
    for (int r = 0; r < rows; r++) {
        S = d->stage[r].n > S ? d->stage[r].n : S;
        T = d->stage[r].nt > T ? d->stage[r].nt : T;
    }
    vp_status s = batch_reserve(b, rows, T, S);
    for (int r = 0; s == VP_OK && r < rows; r++) {
        const struct lm_example *ex = &d->stage[r];
        for (int t = 0; t < S; t++) {
            b->enc_ids[(size_t)r * S + t] = t < ex->n ? ex->ids[t] : d->ids.pad;
            b->enc_mask[(size_t)r * S + t] = t < ex->n;
        }
        for (int t = 0; t < T; t++) {
            const size_t i = (size_t)r * T + t;
            b->labels[i] = t < ex->nt ? ex->labels[t] : LM_IGNORE_INDEX;
            b->ids[i] = t == 0 ? d->ids.decoder_start : t - 1 < ex->nt ? ex->labels[t - 1] : d->ids.pad;
            b->mask[i] = t < ex->nt;
        }
        b->line[r] = ex->line;
    }
    return s;
}

vp_status lm_data_next(struct lm_data *d, struct lm_batch *b, bool *done) {
    *done = false;
    vp_status s;
    if (d->o.task == LM_TASK_CAUSAL && d->o.pack) {
        s = fill_packed(d, b, done);
    } else {
        int rows = 0;
        s = stage_rows(d, &rows);
        if (s == VP_OK && rows == 0) *done = true;
        else if (s == VP_OK) s = d->o.task == LM_TASK_CAUSAL ? fill_padded(d, b, rows) : fill_seq2seq(d, b, rows);
    }
    if (s != VP_OK || *done) {
        b->B = 0;
        b->loss_tokens = 0;
        return s;
    }
    b->loss_tokens = 0;
    for (size_t i = 0; i < (size_t)b->B * (size_t)b->T; i++) b->loss_tokens += b->labels[i] != LM_IGNORE_INDEX;
    return VP_OK;
}
