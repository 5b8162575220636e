/* Decoding options, logits processors and warpers, and the greedy / sampling
 * loop (HF's GenerationMixin._sample). Beam search is in search_beam.c. */
#include "search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* HF's GenerationConfig.max_length default, which counts the prompt. */
#define SEARCH_DEFAULT_MAX_LENGTH 20

/* ---- Options ---------------------------------------------------------------- */

static vp_status check_token(const char *name, int i, int32_t id, int vocab) {
    if (id >= 0 && id < vocab) return VP_OK;
    if (i < 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: %s %d is outside the vocabulary 0..%d",
                       name, id, vocab - 1);
    return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: %s[%d] = %d is outside the vocabulary 0..%d",
                   name, i, id, vocab - 1);
}

static vp_status config_input(struct search_config *c, const struct search_model *m,
                              const struct search_input *in) {
    if (!m || !m->step) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: the model has no step function");
    if (m->vocab < 1) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: the model's vocab is %d", m->vocab);
    if (!in || in->batch < 1 || !in->ids || !in->lens)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "search: the input needs a batch of at least 1 item with ids and lens");
    c->vocab = m->vocab;
    c->batch = in->batch;
    c->prompt_len = 0;
    for (int b = 0; b < in->batch; b++) {
        if (in->lens[b] < 1 || !in->ids[b])
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: batch item %d has %d initial ids; it needs "
                           "at least 1 (its prompt, or the decoder start token)", b, in->lens[b]);
        for (int t = 0; t < in->lens[b]; t++)
            if (in->ids[b][t] < 0 || in->ids[b][t] >= m->vocab)
                return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: batch item %d: initial id %d at %d is "
                               "outside the vocabulary 0..%d", b, in->ids[b][t], t, m->vocab - 1);
        if (in->lens[b] > c->prompt_len) c->prompt_len = in->lens[b];
    }
    return VP_OK;
}

/* max_new_tokens wins over max_length; min_new_tokens and min_length both
 * apply (HF adds a processor for each), so the larger wins. */
static vp_status config_lengths(struct search_config *c, const struct search_options *o) {
    if (o->max_new_tokens < 0 || o->max_length < 0 || o->min_new_tokens < 0 || o->min_length < 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: max_new_tokens %d, max_length %d, "
                       "min_new_tokens %d, min_length %d: none may be negative", o->max_new_tokens,
                       o->max_length, o->min_new_tokens, o->min_length);
    if (o->max_new_tokens > 0) {
        c->max_new = o->max_new_tokens;
    } else {
        int max_length = o->max_length ? o->max_length : SEARCH_DEFAULT_MAX_LENGTH;
        c->max_new = max_length - c->prompt_len;
        if (c->max_new < 1)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: max_length %d leaves no room after the "
                           "%d-token prompt; raise it or set max_new_tokens", max_length, c->prompt_len);
    }
    c->min_new = o->min_new_tokens;
    if (o->min_length - c->prompt_len > c->min_new) c->min_new = o->min_length - c->prompt_len;
    if (c->min_new > c->max_new)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: min_new_tokens %d / min_length %d ask for %d "
                       "new tokens but at most %d may be generated", o->min_new_tokens, o->min_length,
                       c->min_new, c->max_new);
    return VP_OK;
}

static vp_status config_beams(struct search_config *c, const struct search_options *o) {
    if (o->num_beams < 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: num_beams %d is negative", o->num_beams);
    if (o->num_return_sequences < 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: num_return_sequences %d is negative",
                       o->num_return_sequences);
    c->num_beams = o->num_beams ? o->num_beams : 1;
    c->per_item = o->num_return_sequences ? o->num_return_sequences : 1;
    c->do_sample = o->do_sample;
    if (c->do_sample && c->num_beams > 1)
        return vp_fail(VP_ERROR_UNSUPPORTED, "search: beam sampling (do_sample with num_beams %d) is not "
                       "implemented; use num_beams 1 to sample or do_sample false for beam search",
                       c->num_beams);
    if (c->num_beams == 1 && !c->do_sample && c->per_item != 1)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: greedy search returns one sequence per item, "
                       "not num_return_sequences %d; use num_beams or do_sample", c->per_item);
    if (c->num_beams > 1 && c->per_item > c->num_beams)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: num_return_sequences %d is more than num_beams %d",
                       c->per_item, c->num_beams);
    c->length_penalty = o->length_penalty_set ? o->length_penalty : 1.0;
    if (!isfinite(c->length_penalty))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: length_penalty %g is not finite", c->length_penalty);
    if ((unsigned)o->early_stopping > SEARCH_EARLY_STOPPING_NEVER)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: early_stopping %d is not heuristic (0), true (1) "
                       "or never (2)", (int)o->early_stopping);
    c->early_stopping = o->early_stopping;
    /* Enough candidates that num_beams survive even if every eos id is among
     * the best of every beam (HF's beams_to_keep). */
    int keep_factor = 1 + o->eos_count > 2 ? 1 + o->eos_count : 2;
    c->beams_to_keep = keep_factor * c->num_beams;
    if (c->num_beams > 1 && (int64_t)c->num_beams * c->vocab < c->beams_to_keep)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: beam search keeps %d candidates a step but "
                       "num_beams %d times vocab %d is fewer", c->beams_to_keep, c->num_beams, c->vocab);
    return VP_OK;
}

static vp_status config_tokens(struct search_config *c, const struct search_options *o) {
    if (o->no_repeat_ngram_size < 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: no_repeat_ngram_size %d is negative",
                       o->no_repeat_ngram_size);
    c->no_repeat_ngram_size = o->no_repeat_ngram_size;
    if (o->eos_count < 0 || o->eos_count > SEARCH_MAX_EOS || o->forced_eos_count < 0 ||
        o->forced_eos_count > SEARCH_MAX_EOS)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: eos_count %d / forced_eos_count %d must be in "
                       "0..%d", o->eos_count, o->forced_eos_count, SEARCH_MAX_EOS);
    vp_status st = VP_OK;
    c->eos_count = o->eos_count;
    for (int i = 0; i < o->eos_count && !st; i++)
        st = check_token("eos_token_ids", i, c->eos[i] = o->eos_token_ids[i], c->vocab);
    c->forced_eos_count = o->forced_eos_count;
    for (int i = 0; i < o->forced_eos_count && !st; i++)
        st = check_token("forced_eos_token_ids", i, c->forced_eos[i] = o->forced_eos_token_ids[i], c->vocab);
    if (st) return st;
    /* Without a pad id HF pads finished rows with the first eos id. */
    c->pad = o->pad_token_set ? o->pad_token_id : c->eos_count ? c->eos[0] : -1;
    if (o->pad_token_set && (st = check_token("pad_token_id", -1, c->pad, c->vocab))) return st;
    c->forced_bos = o->forced_bos_set ? o->forced_bos_token_id : -1;
    if (o->forced_bos_set && (st = check_token("forced_bos_token_id", -1, c->forced_bos, c->vocab))) return st;
    return VP_OK;
}

/* HF validates these only when sampling; so do we, so that a greedy run
 * keeps working with a model's sampling defaults left in the options. */
static vp_status config_sampling(struct search_config *c, const struct search_options *o) {
    c->seed = o->seed;
    c->temperature = o->temperature ? o->temperature : 1.0;
    c->top_k = o->top_k;
    c->top_p = o->top_p ? o->top_p : 1.0;
    if (!c->do_sample) return VP_OK;
    if (!(c->temperature > 0) || !isfinite(c->temperature))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: temperature %g must be a positive number "
                       "(0 means 1.0)", o->temperature);
    if (c->top_k < 0) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: top_k %d is negative (0 turns it off)",
                                     c->top_k);
    if (!(c->top_p >= 0 && c->top_p <= 1))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: top_p %g is outside [0, 1] (0 means 1.0, off)",
                       o->top_p);
    return VP_OK;
}

vp_status search_config_init(struct search_config *c, const struct search_options *o,
                             const struct search_model *model, const struct search_input *in) {
    memset(c, 0, sizeof *c);
    if (!o) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "search: no options");
    vp_status st = config_input(c, model, in);
    if (!st) st = config_lengths(c, o);
    if (!st) st = config_beams(c, o);
    if (!st) st = config_tokens(c, o);
    if (!st) st = config_sampling(c, o);
    return st;
}

bool search_is_eos(const struct search_config *c, int32_t token) {
    for (int i = 0; i < c->eos_count; i++)
        if (c->eos[i] == token) return true;
    return false;
}

/* ---- Logits processors (HF order: n-gram, min length, forced BOS, forced EOS) */

/* NoRepeatNGramLogitsProcessor: every earlier n-gram whose first n-1 ids equal
 * the row's last n-1 ids bans its last id. The row is all of input_ids, the
 * initial ids included; nothing is banned while len + 1 < n. */
static void ban_repeated_ngrams(int n, const int32_t *ids, int len, float *scores) {
    if (n <= 0 || len + 1 < n) return;
    const int32_t *tail = ids + len - (n - 1);
    for (int i = 0; i + n <= len; i++)
        if (memcmp(ids + i, tail, (size_t)(n - 1) * sizeof *ids) == 0) scores[ids[i + n - 1]] = -INFINITY;
}

/* Forced*TokenLogitsProcessor: every score -inf, the forced ids 0. */
static void force_tokens(float *scores, int vocab, const int32_t *ids, int count) {
    for (int t = 0; t < vocab; t++) scores[t] = -INFINITY;
    for (int i = 0; i < count; i++) scores[ids[i]] = 0;
}

void search_process(const struct search_config *c, const int32_t *ids, int len, int gen, float *scores) {
    ban_repeated_ngrams(c->no_repeat_ngram_size, ids, len, scores);
    /* MinLength / MinNewTokensLength: eos ids are -inf while too short. */
    if (gen < c->min_new)
        for (int i = 0; i < c->eos_count; i++) scores[c->eos[i]] = -INFINITY;
    /* ForcedBOS fires when input_ids is one token long: HF counts the padded
     * row, prompt_len + gen, so only a lone decoder start token qualifies. */
    if (c->forced_bos >= 0 && c->prompt_len + gen == 1) force_tokens(scores, c->vocab, &c->forced_bos, 1);
    /* ForcedEOS fires at cur_len == max_length - 1: the last token allowed. */
    if (c->forced_eos_count && gen == c->max_new - 1)
        force_tokens(scores, c->vocab, c->forced_eos, c->forced_eos_count);
}

/* ---- Warpers ------------------------------------------------------------------- */

/* Best first; equal scores rank the lower id first, so ties resolve the same
 * way every run (torch leaves the order of ties unspecified). */
static int ranked_cmp(const void *pa, const void *pb) {
    const struct search_ranked *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

void search_temperature(float *scores, int vocab, double temperature) {
    /* HF divides the fp32 scores by the fp32-rounded temperature. */
    float t = (float)temperature;
    if (t == 1.0f) return;
    for (int i = 0; i < vocab; i++) scores[i] /= t;
}

void search_top_k(float *scores, int vocab, int top_k, struct search_ranked *scratch) {
    if (top_k <= 0 || top_k >= vocab) return;
    for (int i = 0; i < vocab; i++) scratch[i] = (struct search_ranked){scores[i], i};
    qsort(scratch, (size_t)vocab, sizeof *scratch, ranked_cmp);
    /* HF removes scores < the k-th largest, so ties at the k-th all stay. */
    float kth = scratch[top_k - 1].score;
    for (int i = 0; i < vocab; i++)
        if (scores[i] < kth) scores[i] = -INFINITY;
}

void search_top_p(float *scores, int vocab, double top_p, struct search_ranked *scratch) {
    if (top_p >= 1.0) return;
    int n = 0; /* -inf entries have probability 0: they never change a cumulative sum */
    for (int i = 0; i < vocab; i++)
        if (scores[i] > -INFINITY) scratch[n++] = (struct search_ranked){scores[i], i};
    if (n == 0) return;
    qsort(scratch, (size_t)n, sizeof *scratch, ranked_cmp);
    double z = 0;
    for (int i = 0; i < n; i++) z += exp((double)scratch[i].score - scratch[0].score);
    /* HF sorts ascending and removes every token whose cumulative probability
     * (its own and all less probable ones) is ≤ 1 - top_p, except the most
     * probable token (min_tokens_to_keep = 1). What stays is the smallest
     * best-first set whose probability reaches top_p. */
    double tail = 0;
    for (int i = n - 1; i >= 1; i--) {
        tail += exp((double)scratch[i].score - scratch[0].score) / z;
        if (tail <= 1.0 - top_p) scores[scratch[i].id] = -INFINITY;
    }
}

void search_warp(const struct search_config *c, float *scores, struct search_ranked *scratch) {
    search_temperature(scores, c->vocab, c->temperature);
    search_top_k(scores, c->vocab, c->top_k, scratch);
    search_top_p(scores, c->vocab, c->top_p, scratch);
}

/* ---- Normalisation, choice, randomness ---------------------------------------- */

double search_logsumexp(const float *scores, int vocab) {
    float max = -INFINITY;
    for (int i = 0; i < vocab; i++)
        if (scores[i] > max) max = scores[i];
    if (max == -INFINITY) return -INFINITY;
    double sum = 0;
    for (int i = 0; i < vocab; i++) sum += exp((double)scores[i] - max);
    return max + log(sum);
}

int search_argmax(const float *scores, int vocab) {
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (scores[i] > scores[best]) best = i;
    return best;
}

uint64_t search_rng_next(uint64_t *state) { return vp_splitmix64(state); }

uint64_t search_rng_seed(uint64_t seed, uint64_t stream) {
    /* The stream number goes through one mix so neighbouring streams start
     * far apart on the generator's cycle. */
    uint64_t s = stream;
    return seed ^ search_rng_next(&s);
}

double search_rng_uniform(uint64_t *state) { return (double)(search_rng_next(state) >> 11) * 0x1.0p-53; }

int search_draw(const float *scores, int vocab, uint64_t *rng, double *logprob) {
    double lse = search_logsumexp(scores, vocab);
    if (!isfinite(lse)) return -1;
    double u = search_rng_uniform(rng), cum = 0;
    int last = -1;
    for (int i = 0; i < vocab; i++) {
        double p = exp((double)scores[i] - lse);
        if (p <= 0) continue;
        last = i;
        cum += p;
        if (cum > u) break;
    }
    /* When rounding leaves Σp just under u, the last possible token is drawn. */
    if (last >= 0) *logprob = (double)scores[last] - lse;
    return last;
}

/* ---- Results ---------------------------------------------------------------- */

vp_status search_result_alloc(struct search_result *r, const struct search_config *c) {
    memset(r, 0, sizeof *r);
    r->per_item = c->per_item;
    r->count = c->batch * c->per_item;
    r->capacity = c->max_new;
    size_t cells = (size_t)r->count * (size_t)r->capacity;
    r->tokens = malloc(cells * sizeof *r->tokens);
    r->lengths = calloc((size_t)r->count, sizeof *r->lengths);
    r->scores = calloc((size_t)r->count, sizeof *r->scores);
    if (!r->tokens || !r->lengths || !r->scores)
        return vp_fail(VP_ERROR_HOST_MEMORY, "search: out of host memory for %d sequences of %d tokens",
                       r->count, r->capacity);
    for (size_t i = 0; i < cells; i++) r->tokens[i] = c->pad;
    return VP_OK;
}

void search_result_free(struct search_result *r) {
    if (!r) return;
    free(r->tokens);
    free(r->lengths);
    free(r->scores);
    memset(r, 0, sizeof *r);
}

/* ---- Greedy search and sampling (HF's _sample) ----------------------------- */

/* Sequence s is row s / per_item of the first call (HF repeats each item
 * num_return_sequences times, item-major); afterwards only unfinished
 * sequences are sent to the model, which changes nothing in the result: HF
 * keeps finished rows running but overwrites their tokens with pad. */
struct greedy {
    int count, stride;
    int32_t *ids;                   /* (count, stride) initial ids, then generated */
    int *len;                       /* (count) ids in each row of `ids` */
    int *row;                       /* (count) the sequence's row in the last step call */
    bool *done;                     /* (count) */
    double *score;                  /* (count) */
    uint64_t *rng;                  /* (count) */
    float *logits;                  /* (batch · per_item, vocab), written by the model */
    float *work;                    /* (vocab) the row being processed */
    struct search_ranked *scratch;  /* (vocab) */
    int32_t *parent, *tokens;       /* (count) the next call's rows */
};

static void greedy_free(struct greedy *g) {
    free(g->ids);
    free(g->len);
    free(g->row);
    free(g->done);
    free(g->score);
    free(g->rng);
    free(g->logits);
    free(g->work);
    free(g->scratch);
    free(g->parent);
    free(g->tokens);
}

static vp_status greedy_init(struct greedy *g, const struct search_config *c, const struct search_input *in) {
    memset(g, 0, sizeof *g);
    g->count = c->batch * c->per_item;
    g->stride = c->prompt_len + c->max_new;
    size_t n = (size_t)g->count, v = (size_t)c->vocab;
    g->ids = malloc(n * (size_t)g->stride * sizeof *g->ids);
    g->len = calloc(n, sizeof *g->len);
    g->row = calloc(n, sizeof *g->row);
    g->done = calloc(n, sizeof *g->done);
    g->score = calloc(n, sizeof *g->score);
    g->rng = calloc(n, sizeof *g->rng);
    g->logits = malloc(n * v * sizeof *g->logits);
    g->work = malloc(v * sizeof *g->work);
    g->scratch = malloc(v * sizeof *g->scratch);
    g->parent = malloc(n * sizeof *g->parent);
    g->tokens = malloc(n * sizeof *g->tokens);
    if (!g->ids || !g->len || !g->row || !g->done || !g->score || !g->rng || !g->logits || !g->work ||
        !g->scratch || !g->parent || !g->tokens)
        return vp_fail(VP_ERROR_HOST_MEMORY, "search: out of host memory for %d sequences over a "
                       "vocabulary of %d", g->count, c->vocab);
    for (int s = 0; s < g->count; s++) {
        int b = s / c->per_item;
        memcpy(g->ids + (size_t)s * g->stride, in->ids[b], (size_t)in->lens[b] * sizeof *g->ids);
        g->len[s] = in->lens[b];
        g->rng[s] = search_rng_seed(c->seed, (uint64_t)s);
    }
    return VP_OK;
}

static bool row_has_nan(const float *row, int vocab) {
    for (int i = 0; i < vocab; i++)
        if (isnan(row[i])) return true;
    return false;
}

/* Chooses sequence s's token `gen` from the model's logits row: processors,
 * then (sampling) warpers and a draw, or (greedy) argmax. */
static vp_status greedy_choose(const struct search_config *c, struct greedy *g, int s, const float *logits,
                               int gen, int32_t *token) {
    if (row_has_nan(logits, c->vocab))
        return vp_fail(VP_ERROR_BAD_INPUT, "search: the model's logits for sequence %d, token %d hold NaN",
                       s, gen);
    memcpy(g->work, logits, (size_t)c->vocab * sizeof *g->work);
    search_process(c, g->ids + (size_t)s * g->stride, g->len[s], gen, g->work);
    double logprob;
    if (c->do_sample) {
        search_warp(c, g->work, g->scratch);
        *token = search_draw(g->work, c->vocab, &g->rng[s], &logprob);
        if (*token < 0)
            return vp_fail(VP_ERROR_BAD_INPUT, "search: sequence %d has no token left to sample at %d "
                           "(every score is -inf after the processors and warpers)", s, gen);
    } else {
        *token = search_argmax(g->work, c->vocab);
        logprob = (double)g->work[*token] - search_logsumexp(g->work, c->vocab);
    }
    g->score[s] += logprob;
    return VP_OK;
}

/* One generation position for every unfinished sequence; *rows gets the
 * number of sequences that go on (the next call's rows). */
static vp_status greedy_position(const struct search_config *c, struct greedy *g, struct search_result *out,
                                 int gen, int *rows) {
    int next = 0;
    for (int s = 0; s < g->count; s++) {
        if (g->done[s]) continue;
        int src = gen == 0 ? s / c->per_item : g->row[s];
        int32_t token = -1;
        vp_status st = greedy_choose(c, g, s, g->logits + (size_t)src * (size_t)c->vocab, gen, &token);
        if (st) return st;
        g->ids[(size_t)s * g->stride + (size_t)g->len[s]++] = token;
        out->tokens[(size_t)s * out->capacity + (size_t)gen] = token;
        out->lengths[s] = gen + 1;
        /* A sequence that emitted eos is finished: HF's EosTokenCriteria. */
        if (search_is_eos(c, token)) {
            g->done[s] = true;
            continue;
        }
        g->parent[next] = src;
        g->tokens[next] = token;
        g->row[s] = next++;
    }
    *rows = next;
    return VP_OK;
}

vp_status search_greedy_run(const struct search_config *c, const struct search_model *m,
                            const struct search_input *in, struct search_result *out) {
    vp_status st = search_result_alloc(out, c);
    struct greedy g;
    if (!st) st = greedy_init(&g, c, in);
    else memset(&g, 0, sizeof g);
    if (!st) {
        out->steps = 1;
        if ((st = m->step(m->user, c->batch, NULL, NULL, g.logits)))
            vp_fail_context(st, "search: decoding step 0");
    }
    for (int gen = 0; !st; gen++) {
        int rows;
        st = greedy_position(c, &g, out, gen, &rows);
        /* Stop at max length (HF's MaxLengthCriteria) or when all are done. */
        if (st || gen + 1 == c->max_new || rows == 0) break;
        if ((st = m->step(m->user, rows, g.parent, g.tokens, g.logits)))
            vp_fail_context(st, "search: decoding step %d", out->steps);
        out->steps++;
    }
    for (int s = 0; !st && s < g.count; s++) out->scores[s] = (float)g.score[s];
    greedy_free(&g);
    return st;
}

vp_status search_run(const struct search_options *opts, const struct search_model *model,
                     const struct search_input *in, struct search_result *out) {
    memset(out, 0, sizeof *out);
    struct search_config c;
    vp_status st = search_config_init(&c, opts, model, in);
    if (st) return st;
    if (c.num_beams > 1) return search_beam_run(&c, model, in, out);
    return search_greedy_run(&c, model, in, out);
}
