/* Greedy search, sampling and beam search (runtime/model/search.c) against
 * hand-worked cases on a toy model whose next-token distribution is looked up
 * from the end of each row's history. The toy emulates a KV cache: it keeps
 * each row's ids, rebuilds them every call from `parent` and `tokens`, and
 * records them, so a wrong parent shows up as wrong logits (and wrong answers)
 * and every returned sequence can be traced to the rows the model was shown. */
#include "harness.h"
#include "search.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Vocabulary of the toy: PAD, EOS, three words, and S, the start token. */
enum { PAD = 0, EOS = 1, A = 2, B = 3, C = 4, S = 5, V = 6 };

/* A rule applies when the row's ids end with `suffix` (len 0: always); the
 * first rule that applies gives the probabilities of PAD, EOS, A, B, C, S. */
struct rule {
    int len;
    int32_t suffix[4];
    double p[V];
};

#define FALLBACK {0, {0}, {.005, .95, .015, .012, .01, .008}}

/* Greedy and beam disagree: greedy takes A (.5) then EOS (.4): p = .2; beam
 * finds B (.4) then EOS (.9): p = .36. */
static const struct rule model_fork[] = {
    {2, {S, A}, {.01, .4, .1, .3, .18, .01}},
    {2, {S, B}, {.01, .9, .03, .035, .015, .01}},
    {1, {S}, {.01, .05, .5, .4, .03, .01}},
    FALLBACK,
};

/* A short and a long ending: S A EOS (p = .9·.5 = .45, 2 tokens) against
 * S A C C EOS (p = .9·.45·.9·.95 = .346275, 4 tokens). */
static const struct rule model_long[] = {
    {3, {S, A, C}, {.01, .04, .03, .015, .9, .005}},
    {2, {S, A}, {.01, .5, .02, .015, .45, .005}},
    {1, {S}, {.01, .015, .9, .04, .03, .005}},
    FALLBACK,
};

/* A loop: after A comes B (.6), after B comes A (.6); after C, EOS (.9). */
static const struct rule model_loop[] = {
    {1, {S}, {.03, .05, .7, .12, .08, .02}},
    {1, {A}, {.03, .1, .05, .6, .2, .02}},
    {1, {B}, {.03, .1, .6, .05, .2, .02}},
    {1, {C}, {.01, .9, .04, .03, .015, .005}},
    FALLBACK,
};

/* One distribution whatever the history (no EOS option is set with it). */
static const double flat_p[V] = {.05, .1, .15, .2, .23, .27};
static const struct rule model_flat[] = {{0, {0}, {.05, .1, .15, .2, .23, .27}}};

#define TOY_ROWS 16
#define TOY_LEN 32
#define TOY_CALLS 32

struct toy {
    const struct rule *rules;
    int nrules;
    int batch;
    const int32_t *const *init;
    const int *lens;
    int calls, fail_at;         /* fail_at: a call that returns an error (0: none) */
    int rows[TOY_CALLS];        /* rows of each call, and their ids */
    int32_t ids[TOY_CALLS][TOY_ROWS][TOY_LEN];
    int len[TOY_CALLS][TOY_ROWS];
    bool ok;
    char why[160];
};

static struct toy toy;

static const double *toy_probs(const struct rule *rules, int nrules, const int32_t *ids, int len) {
    for (int i = 0; i < nrules; i++) {
        const struct rule *r = &rules[i];
        if (r->len <= len && memcmp(ids + len - r->len, r->suffix, (size_t)r->len * sizeof *ids) == 0)
            return r->p;
    }
    return rules[nrules - 1].p;
}

static vp_status toy_reject(struct toy *t, const char *why) {
    if (t->ok) snprintf(t->why, sizeof t->why, "call %d: %s", t->calls, why);
    t->ok = false;
    return vp_fail(VP_ERROR_BAD_INPUT, "toy model: %s", why);
}

/* Builds this call's rows from the last call's: the cache reorder. */
static vp_status toy_rows(struct toy *t, int rows, const int32_t *parent, const int32_t *tokens) {
    int k = t->calls;
    if (rows < 1 || rows > TOY_ROWS || k >= TOY_CALLS) return toy_reject(t, "too many rows or calls");
    if (!parent != !tokens || (!parent) != (k == 0)) return toy_reject(t, "parent/tokens NULL on the wrong call");
    if (!parent && rows != t->batch) return toy_reject(t, "first call is not one row per item");
    for (int r = 0; r < rows; r++) {
        if (!parent) {
            memcpy(t->ids[k][r], t->init[r], (size_t)t->lens[r] * sizeof(int32_t));
            t->len[k][r] = t->lens[r];
            continue;
        }
        int p = parent[r];
        if (p < 0 || p >= t->rows[k - 1]) return toy_reject(t, "parent out of range");
        if (tokens[r] < 0 || tokens[r] >= V) return toy_reject(t, "token out of range");
        if (t->len[k - 1][p] + 1 > TOY_LEN) return toy_reject(t, "row too long");
        memcpy(t->ids[k][r], t->ids[k - 1][p], (size_t)t->len[k - 1][p] * sizeof(int32_t));
        t->len[k][r] = t->len[k - 1][p] + 1;
        t->ids[k][r][t->len[k][r] - 1] = tokens[r];
    }
    t->rows[k] = rows;
    return VP_OK;
}

static vp_status toy_step(void *user, int rows, const int32_t *parent, const int32_t *tokens, float *logits) {
    struct toy *t = user;
    if (t->fail_at && t->calls == t->fail_at) return vp_fail(VP_ERROR_DEVICE_LOST, "toy device lost");
    vp_status st = toy_rows(t, rows, parent, tokens);
    if (st) return st;
    for (int r = 0; r < rows; r++) {
        const double *p = toy_probs(t->rules, t->nrules, t->ids[t->calls][r], t->len[t->calls][r]);
        for (int v = 0; v < V; v++) logits[r * V + v] = logf((float)p[v]);
    }
    t->calls++;
    return VP_OK;
}

static void toy_reset(const struct rule *rules, int nrules, int batch, const int32_t *const *init,
                      const int *lens) {
    memset(&toy, 0, sizeof toy);
    toy = (struct toy){.rules = rules, .nrules = nrules, .batch = batch, .init = init, .lens = lens, .ok = true};
}

#define RULES(m) (m), (int)(sizeof(m) / sizeof((m)[0]))

static const int32_t start_ids[] = {S};
static const int32_t *const start[] = {start_ids};
static const int one[] = {1};

/* Runs the search on the toy for `batch` items. */
static vp_status generate(const struct rule *rules, int nrules, const struct search_options *o, int batch,
                          const int32_t *const *ids, const int *lens, struct search_result *r) {
    toy_reset(rules, nrules, batch, ids, lens);
    struct search_model m = {toy_step, &toy, V};
    struct search_input in = {batch, ids, lens};
    vp_status st = search_run(o, &m, &in, r);
    if (st) th_diag("search_run: %s: %s", vp_status_name(st), vp_last_error());
    CHECKF(toy.ok, "toy model: %s", toy.why);
    return st;
}

static bool same_tokens(const struct search_result *r, int s, const int32_t *want, int n) {
    if (s >= r->count || r->lengths[s] != n) return false;
    return memcmp(r->tokens + (size_t)s * r->capacity, want, (size_t)n * sizeof *want) == 0;
}

#define SEQ(...) (const int32_t[]){__VA_ARGS__}, (int)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))
#define CHECK_SEQ(r, s, ...) check_seq_at((r), (s), SEQ(__VA_ARGS__), __LINE__)

static void check_seq_at(const struct search_result *r, int s, const int32_t *want, int n, int line) {
    char got[160] = "";
    size_t used = 0;
    for (int i = 0; s < r->count && i < r->lengths[s] && used + 12 < sizeof got; i++)
        used += (size_t)snprintf(got + used, sizeof got - used, " %d", r->tokens[(size_t)s * r->capacity + i]);
    th_check(same_tokens(r, s, want, n), __FILE__, line, "sequence %d is [%s ]", s, got);
}

/* fp32 scores against a double: a few ulps of a sum of a few log-probs. */
#define CHECK_SCORE(got, want) CHECKF(fabs((double)(got) - (want)) < 1e-5, "score %.7f, want %.7f", (double)(got), (double)(want))

/* Σ log p of seq after the item's ids, from the rules (no processors). */
static double toy_logprob(const struct rule *rules, int nrules, const int32_t *init, int ilen,
                          const int32_t *seq, int n) {
    int32_t ids[TOY_LEN];
    memcpy(ids, init, (size_t)ilen * sizeof *ids);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        sum += log(toy_probs(rules, nrules, ids, ilen + i)[seq[i]]);
        ids[ilen + i] = seq[i];
    }
    return sum;
}

/* Was the row whose logits chose the last token of sequence s shown to the
 * model (call n-1 holds rows with n-1 generated ids)? */
static bool toy_saw(const int32_t *init, int ilen, const struct search_result *r, int s) {
    int n = r->lengths[s];
    if (n < 1 || n > TOY_CALLS || n - 1 >= toy.calls) return false;
    for (int row = 0; row < toy.rows[n - 1]; row++) {
        const int32_t *ids = toy.ids[n - 1][row];
        if (toy.len[n - 1][row] == ilen + n - 1 && memcmp(ids, init, (size_t)ilen * sizeof *ids) == 0 &&
            memcmp(ids + ilen, r->tokens + (size_t)s * r->capacity, (size_t)(n - 1) * sizeof *ids) == 0)
            return true;
    }
    return false;
}

/* Every beam hypothesis of item b traces to a row the model saw, and its score
 * is the sum of the model's log-probs over length^penalty. */
static void check_beams(const struct rule *rules, int nrules, const struct search_result *r, int b,
                        const int32_t *init, int ilen, double length_penalty) {
    for (int i = 0; i < r->per_item; i++) {
        int s = b * r->per_item + i;
        CHECKF(toy_saw(init, ilen, r, s), "item %d hypothesis %d was never a model row", b, i);
        double want = toy_logprob(rules, nrules, init, ilen, r->tokens + (size_t)s * r->capacity, r->lengths[s]) /
                      pow(r->lengths[s], length_penalty);
        CHECK_SCORE(r->scores[s], want);
        if (i > 0) CHECK(r->scores[s] <= r->scores[s - 1]);
    }
}

static struct search_options eos_options(int max_new) {
    return (struct search_options){.max_new_tokens = max_new, .eos_count = 1, .eos_token_ids = {EOS},
                                   .pad_token_set = true, .pad_token_id = PAD};
}

static void greedy_vs_beam(void) {
    struct search_result r;
    struct search_options o = eos_options(5);
    /* Greedy: S → A (.5), S A → EOS (.4); score ln .5 + ln .4 = ln .2. Padding follows. */
    CHECK(generate(RULES(model_fork), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, EOS);
    CHECK_SCORE(r.scores[0], log(.2));
    CHECK(r.tokens[2] == PAD && r.tokens[4] == PAD && r.steps == 2);
    search_result_free(&r);
    /* Beam, 2 beams, K = 4. Step 1 (log-probs): A -.693, B -.916, EOS -2.996 (rank 2: not
     * a hypothesis), C -3.507; A and B run. Step 2: S B EOS -.916-.105 = -1.022 → -0.511
     * after /2; S A EOS -.693-.916 = -1.609 → -0.805; S A B -1.897, S A C -2.408 run.
     * Done (early_stopping false): best running -1.897/2 = -0.949 cannot beat -0.805. */
    o.num_beams = 2;
    o.num_return_sequences = 2;
    CHECK(generate(RULES(model_fork), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, B, EOS);
    CHECK_SCORE(r.scores[0], log(.4 * .9) / 2);
    CHECK_SEQ(&r, 1, A, EOS);
    CHECK_SCORE(r.scores[1], log(.2) / 2);
    CHECK(r.steps == 2);
    check_beams(RULES(model_fork), &r, 0, start_ids, 1, 1.0);
    search_result_free(&r);
}

/* model_long, 2 beams (K = 4), worked once for both penalties:
 *   step 1: A -.105 and B -3.219 run (EOS -4.2 ranks 4th).
 *   step 2: S A EOS -.799 (rank 0: kept), S A C -.904, S B EOS -3.270 (rank 2: dropped),
 *           S A A -4.017; S A C and S A A run.
 *   step 3: S A C C -1.009, S A A EOS -4.069 (rank 1: kept), S A C EOS -4.123, S A C A -4.410.
 *   step 4: S A C C EOS -1.061 (kept), S A C A EOS -4.462; running best -5.209.
 * length_penalty 1: S A EOS -.399, S A A EOS -1.356, then S A C C EOS -1.061/4 = -.265 wins.
 * length_penalty 0: S A EOS -.799 beats S A C C EOS -1.061. */
static void length_penalty(void) {
    struct search_result r;
    struct search_options o = eos_options(6);
    o.num_beams = 2;
    o.num_return_sequences = 2;
    CHECK(generate(RULES(model_long), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, C, C, EOS);
    CHECK_SCORE(r.scores[0], log(.9 * .45 * .9 * .95) / 4);
    CHECK_SEQ(&r, 1, A, EOS);
    CHECK_SCORE(r.scores[1], log(.45) / 2);
    /* After step 4 the best running beam, -5.209/4 = -1.302, cannot beat -.399. */
    CHECK(r.steps == 4);
    check_beams(RULES(model_long), &r, 0, start_ids, 1, 1.0);
    search_result_free(&r);

    o.length_penalty_set = true;
    o.length_penalty = 0;
    CHECK(generate(RULES(model_long), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, EOS);
    CHECK_SCORE(r.scores[0], log(.45));
    CHECK_SEQ(&r, 1, A, C, C, EOS);
    CHECK_SCORE(r.scores[1], log(.9 * .45 * .9 * .95));
    check_beams(RULES(model_long), &r, 0, start_ids, 1, 0.0);
    search_result_free(&r);
}

/* Same model and penalty 1. early_stopping true stops once 2 hypotheses are
 * kept (after step 3: S A EOS, S A A EOS), so the better long one is never
 * found. "never" with max_new 20 bounds the running beams by their score
 * over 20 tokens: after step 4 -5.209/20 = -.260 > -.399 still might win, so
 * it runs a 5th step (then -9.409/20 = -.470 cannot). */
static void early_stopping_modes(void) {
    struct search_result r;
    struct search_options o = eos_options(6);
    o.num_beams = 2;
    o.early_stopping = SEARCH_EARLY_STOPPING_TRUE;
    CHECK(generate(RULES(model_long), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, EOS);
    CHECK_SCORE(r.scores[0], log(.45) / 2);
    CHECK(r.steps == 3);
    search_result_free(&r);

    o.early_stopping = SEARCH_EARLY_STOPPING_HEURISTIC;
    CHECK(generate(RULES(model_long), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, C, C, EOS);
    CHECK(r.steps == 4);
    search_result_free(&r);

    o.early_stopping = SEARCH_EARLY_STOPPING_NEVER;
    o.max_new_tokens = 20;
    CHECK(generate(RULES(model_long), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, C, C, EOS);
    CHECK_SCORE(r.scores[0], log(.9 * .45 * .9 * .95) / 4);
    CHECK(r.steps == 5);
    search_result_free(&r);
}

/* model_fork, greedy, EOS suppressed for 3 tokens: S → A; S A → B (EOS .4 is
 * -inf); S A B (fallback) → A (.015, EOS .95 is -inf); then EOS. Each score is
 * the log-prob after renormalising without EOS. min_length counts the prompt. */
static void min_length(void) {
    struct search_result r;
    struct search_options o = eos_options(8);
    double want = log(.5 / .95) + log(.3 / .6) + log(.015 / .05) + log(.95);
    for (int form = 0; form < 2; form++) {
        o.min_new_tokens = form ? 0 : 3;
        o.min_length = form ? 4 : 0;
        CHECK(generate(RULES(model_fork), &o, 1, start, one, &r) == VP_OK);
        CHECK_SEQ(&r, 0, A, B, A, EOS);
        CHECK_SCORE(r.scores[0], want);
        search_result_free(&r);
    }
}

/* model_loop, greedy. Unbanned it loops A B A B A B. With bigrams banned:
 * S A B A, then (A, B) was seen, so B is banned after A: C (.2), then EOS.
 * With the prompt A B the ban sees the prompt's (A, B), its first ids, at
 * once: A, C, EOS (without the prompt's bigram it would be A B C EOS). */
static void no_repeat_ngram(void) {
    struct search_result r;
    struct search_options o = eos_options(6);
    CHECK(generate(RULES(model_loop), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, B, A, B, A, B);
    search_result_free(&r);
    o.no_repeat_ngram_size = 2;
    CHECK(generate(RULES(model_loop), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, B, A, C, EOS);
    CHECK_SCORE(r.scores[0], log(.7) + log(.6) + log(.6) + log(.2 / .4) + log(.9));
    search_result_free(&r);
    static const int32_t prompt_ids[] = {A, B};
    const int32_t *const prompt[] = {prompt_ids};
    const int two[] = {2};
    CHECK(generate(RULES(model_loop), &o, 1, prompt, two, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, C, EOS);
    search_result_free(&r);
    /* Beam search obeys it too: no hypothesis repeats a bigram, the prompt's included. */
    o.num_beams = 3;
    o.num_return_sequences = 3;
    CHECK(generate(RULES(model_loop), &o, 1, prompt, two, &r) == VP_OK);
    for (int s = 0; s < 3; s++) {
        int32_t ids[8] = {A, B};
        int n = 2 + r.lengths[s];
        memcpy(ids + 2, r.tokens + (size_t)s * r.capacity, (size_t)r.lengths[s] * sizeof *ids);
        for (int i = 0; i + 1 < n; i++)
            for (int j = i + 1; j + 1 < n; j++)
                CHECKF(ids[i] != ids[j] || ids[i + 1] != ids[j + 1], "hypothesis %d repeats a bigram", s);
    }
    check_beams(RULES(model_loop), &r, 0, prompt_ids, 2, 1.0);
    search_result_free(&r);
}

/* Forced BOS: after a lone start token, C is forced (log-prob 0), then EOS (.9).
 * HF forces it only when input_ids is one token long: a 2-token prompt is
 * not forced. Forced EOS takes the last allowed position. */
static void forced_tokens(void) {
    struct search_result r;
    struct search_options o = eos_options(4);
    o.forced_bos_set = true;
    o.forced_bos_token_id = C;
    CHECK(generate(RULES(model_loop), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, C, EOS);
    CHECK_SCORE(r.scores[0], log(.9));
    search_result_free(&r);
    /* Beam: [C EOS] at (0 + ln .9)/2; the other hypotheses end at max length, far below. */
    o.num_beams = 2;
    CHECK(generate(RULES(model_loop), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, C, EOS);
    CHECK_SCORE(r.scores[0], log(.9) / 2);
    CHECK(r.steps == 4);
    search_result_free(&r);
    o.num_beams = 0;
    static const int32_t two_ids[] = {S, A};
    const int32_t *const two[] = {two_ids};
    const int two_len[] = {2};
    CHECK(generate(RULES(model_loop), &o, 1, two, two_len, &r) == VP_OK);
    CHECK_SEQ(&r, 0, B, A, B, A);
    search_result_free(&r);

    o.forced_bos_set = false;
    o.max_new_tokens = 3;
    o.forced_eos_count = 1;
    o.forced_eos_token_ids[0] = EOS;
    CHECK(generate(RULES(model_loop), &o, 1, start, one, &r) == VP_OK);
    CHECK_SEQ(&r, 0, A, B, EOS);
    CHECK_SCORE(r.scores[0], log(.7) + log(.6));
    search_result_free(&r);
}

/* Batched runs give each item exactly its single-item result: the search
 * sends only unfinished rows (greedy) and beams of unfinished items, so the
 * parents must map across calls whose row sets shrink. */
static void batch_matches_single(void) {
    static const int32_t i0[] = {S}, i1[] = {S, C}, i2[] = {S, B};
    const int32_t *const items[] = {i0, i1, i2};
    const int lens[] = {1, 2, 2};
    struct search_options o = eos_options(6);
    o.no_repeat_ngram_size = 2;
    for (int beams = 1; beams <= 2; beams++) {
        o.num_beams = beams;
        o.early_stopping = beams > 1 ? SEARCH_EARLY_STOPPING_TRUE : SEARCH_EARLY_STOPPING_HEURISTIC;
        struct search_result all, single;
        CHECK(generate(RULES(model_loop), &o, 3, items, lens, &all) == VP_OK);
        if (beams == 1) {
            CHECK_SEQ(&all, 0, A, B, A, C, EOS);
            CHECK_SEQ(&all, 1, EOS);
            CHECK_SEQ(&all, 2, A, B, C, EOS);
            /* The rules see only the last id, so it is the rows the toy rebuilt
             * from `parent` that show whether the cache followed each item. */
            for (int b = 0; b < 3; b++) CHECKF(toy_saw(items[b], lens[b], &all, b), "item %d was never a model row", b);
        }
        for (int b = 0; beams > 1 && b < 3; b++) check_beams(RULES(model_loop), &all, b, items[b], lens[b], 1.0);
        for (int b = 0; b < 3; b++) {
            CHECK(generate(RULES(model_loop), &o, 1, items + b, lens + b, &single) == VP_OK);
            CHECKF(all.lengths[b] == single.lengths[0] && all.scores[b] == single.scores[0] &&
                   memcmp(all.tokens + (size_t)b * all.capacity, single.tokens,
                          (size_t)single.lengths[0] * sizeof(int32_t)) == 0,
                   "beams %d item %d: batch and single runs differ", beams, b);
            search_result_free(&single);
        }
        search_result_free(&all);
    }
}

static void sampling_top_k_1_is_greedy(void) {
    struct search_result greedy, r;
    struct search_options o = eos_options(6);
    for (int m = 0; m < 2; m++) {
        const struct rule *rules = m ? model_loop : model_fork;
        int n = m ? (int)(sizeof model_loop / sizeof *model_loop) : (int)(sizeof model_fork / sizeof *model_fork);
        o.do_sample = false;
        o.top_k = 0;
        CHECK(generate(rules, n, &o, 1, start, one, &greedy) == VP_OK);
        o.do_sample = true;
        o.top_k = 1;
        for (uint64_t seed = 0; seed < 4; seed++) {
            o.seed = seed;
            CHECK(generate(rules, n, &o, 1, start, one, &r) == VP_OK);
            CHECKF(r.lengths[0] == greedy.lengths[0] &&
                   memcmp(r.tokens, greedy.tokens, (size_t)greedy.lengths[0] * sizeof(int32_t)) == 0,
                   "model %d seed %d: top-k 1 sample differs from greedy", m, (int)seed);
            CHECK(r.scores[0] == 0); /* one token left: each is drawn with probability 1 */
            search_result_free(&r);
        }
        search_result_free(&greedy);
    }
}

static bool same_result(const struct search_result *a, const struct search_result *b) {
    if (a->count != b->count || a->capacity != b->capacity) return false;
    return memcmp(a->tokens, b->tokens, (size_t)a->count * a->capacity * sizeof(int32_t)) == 0 &&
           memcmp(a->lengths, b->lengths, (size_t)a->count * sizeof(int)) == 0 &&
           memcmp(a->scores, b->scores, (size_t)a->count * sizeof(float)) == 0;
}

/* 4 samples of 8 tokens from model_flat (no eos). The chance that two seeds
 * agree on all 32 draws is (Σp²)^32 = .1888^32 ≈ 1e-23. */
static void seeds(void) {
    struct search_options o = {.max_new_tokens = 8, .do_sample = true, .seed = 42, .num_return_sequences = 4};
    struct search_result first, again;
    CHECK(generate(RULES(model_flat), &o, 1, start, one, &first) == VP_OK);
    CHECK(generate(RULES(model_flat), &o, 1, start, one, &again) == VP_OK);
    CHECK(first.count == 4 && same_result(&first, &again));
    search_result_free(&again);
    CHECK(!same_tokens(&first, 1, first.tokens, 8)); /* the 4 sequences draw from their own streams */
    for (uint64_t seed = 1; seed <= 5; seed++) {
        o.seed = seed;
        CHECK(generate(RULES(model_flat), &o, 1, start, one, &again) == VP_OK);
        CHECKF(!same_result(&first, &again), "seed %d sampled exactly what seed 42 did", (int)seed);
        search_result_free(&again);
    }
    search_result_free(&first);
}

/* A model whose logits never change: log p of model_flat. */
static vp_status flat_step(void *user, int rows, const int32_t *parent, const int32_t *tokens, float *logits) {
    (void)user, (void)parent, (void)tokens;
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < V; v++) logits[r * V + v] = logf((float)flat_p[v]);
    return VP_OK;
}

/* N one-token samples; each token's frequency against q[] with a bound of
 * 5 binomial standard deviations, 5·sqrt(q(1-q)/N) (a correct sampler fails it
 * with probability < 6e-7 per token; N = 20000 puts it under 0.016). Also
 * every sample's score must be log q of its token. */
static void check_frequencies(struct search_options o, const double *q, const char *what) {
    enum { N = 20000 };
    o.max_new_tokens = 1;
    o.num_return_sequences = N;
    struct search_model m = {flat_step, NULL, V};
    struct search_input in = {1, start, one};
    struct search_result r;
    CHECK(search_run(&o, &m, &in, &r) == VP_OK);
    int count[V] = {0};
    bool scores_ok = true;
    for (int s = 0; s < r.count; s++) {
        int32_t t = r.tokens[s];
        count[t]++;
        scores_ok &= q[t] > 0 && fabs(r.scores[s] - log(q[t])) < 1e-5;
    }
    CHECKF(scores_ok && r.count == N, "%s: sample scores are not log q", what);
    for (int v = 0; v < V; v++) {
        double f = (double)count[v] / N, bound = 5 * sqrt(q[v] * (1 - q[v]) / N);
        CHECKF(fabs(f - q[v]) <= bound, "%s: token %d frequency %.4f, want %.4f ± %.4f", what, v, f, q[v], bound);
    }
    search_result_free(&r);
}

static void sampling_frequencies(void) {
    struct search_options o = {.do_sample = true, .seed = 7};
    check_frequencies(o, flat_p, "plain");
    /* Temperature 2: q ∝ p^(1/2). */
    double q[V], z = 0;
    for (int v = 0; v < V; v++) z += q[v] = sqrt(flat_p[v]);
    for (int v = 0; v < V; v++) q[v] /= z;
    o.temperature = 2;
    check_frequencies(o, q, "temperature 2");
    /* Temperature 0.5: q ∝ p² = .0025 .01 .0225 .04 .0529 .0729 (Σ .2008), so
     * .0125 .0498 .1121 .1992 .2634 .3631. top_p .6 keeps .3631 and .2634 (they
     * reach .6264) and drops .1992 onwards: q = .3631/.6264, .2634/.6264. */
    z = flat_p[4] * flat_p[4] + flat_p[5] * flat_p[5];
    for (int v = 0; v < V; v++) q[v] = v >= 4 ? flat_p[v] * flat_p[v] / z : 0;
    o.temperature = 0.5;
    o.top_p = 0.6;
    check_frequencies(o, q, "temperature 0.5, top_p 0.6");
    /* top_k 3 keeps .27 .23 .2 (Σ .7). */
    o.temperature = 0;
    o.top_p = 0;
    o.top_k = 3;
    for (int v = 0; v < V; v++) q[v] = v >= 3 ? flat_p[v] / .7 : 0;
    check_frequencies(o, q, "top_k 3");
}

static void set_of_kept(const float *scores, int n, bool *kept) {
    for (int i = 0; i < n; i++) kept[i] = scores[i] > -INFINITY;
}

/* p = .05 .1 .4 .25 .2. Best first: .4 .25 .2 .1 .05 with mass before each
 * 0 .4 .65 .85 .95; a token stays while the mass before it is < top_p.
 * (HF's form: ascending cumulative .05 .15 .35 .6 1 — drop those ≤ 1 - top_p.) */
static void top_p_filter(void) {
    const double p[5] = {.05, .1, .4, .25, .2};
    const struct {
        double top_p;
        bool kept[5];
    } cases[] = {
        {0.7, {false, false, true, true, true}},    /* .4+.25 = .65 < .7: .2 needed */
        {0.6, {false, false, true, true, false}},   /* .65 ≥ .6 */
        {0.3, {false, false, true, false, false}},
        {1e-9, {false, false, true, false, false}}, /* at least one token stays */
        {0.99, {true, true, true, true, true}},     /* .95 < .99: the last is needed */
    };
    struct search_ranked scratch[5];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float scores[5];
        bool kept[5];
        for (int i = 0; i < 5; i++) scores[i] = logf((float)p[i]);
        search_top_p(scores, 5, cases[c].top_p, scratch);
        set_of_kept(scores, 5, kept);
        CHECKF(memcmp(kept, cases[c].kept, sizeof kept) == 0, "top_p %g keeps the wrong set", cases[c].top_p);
        for (int i = 0; i < 5; i++)
            if (kept[i]) CHECK(scores[i] == logf((float)p[i])); /* kept scores are untouched */
    }
    /* The distribution left by top_p .6: .4/.65 and .25/.65. */
    float scores[5];
    for (int i = 0; i < 5; i++) scores[i] = logf((float)p[i]);
    search_top_p(scores, 5, 0.6, scratch);
    double lse = search_logsumexp(scores, 5);
    CHECK(fabs(exp(scores[2] - lse) - .4 / .65) < 1e-6 && fabs(exp(scores[3] - lse) - .25 / .65) < 1e-6);
}

static void top_k_and_temperature(void) {
    struct search_ranked scratch[5];
    /* Ties at the k-th largest all stay, as HF's scores < kth_value test keeps them. */
    float s[5] = {2, 3, 2, 1, 0};
    bool kept[5];
    search_top_k(s, 5, 2, scratch);
    set_of_kept(s, 5, kept);
    CHECK(kept[0] && kept[1] && kept[2] && !kept[3] && !kept[4]);
    float t[5] = {2, 3, 2, 1, 0};
    search_top_k(t, 5, 1, scratch);
    set_of_kept(t, 5, kept);
    CHECK(!kept[0] && kept[1] && !kept[2] && !kept[3] && !kept[4]);
    float u[5] = {2, 3, 2, 1, 0};
    search_top_k(u, 5, 9, scratch); /* more than the vocabulary: nothing removed */
    set_of_kept(u, 5, kept);
    CHECK(kept[0] && kept[1] && kept[2] && kept[3] && kept[4]);
    float w[3] = {1, -2, 4};
    search_temperature(w, 3, 2.0);
    CHECK(w[0] == 0.5f && w[1] == -1.0f && w[2] == 2.0f);
}

/* splitmix64's first outputs from state 0 (Vigna's reference splitmix64.c). */
static void generator(void) {
    uint64_t st = 0;
    CHECK(search_rng_next(&st) == 0xE220A8397B1DCDAFull);
    CHECK(search_rng_next(&st) == 0x6E789E6AA1B965F4ull);
    uint64_t a = search_rng_seed(5, 0), b = search_rng_seed(5, 1);
    CHECK(a != b);
    double u = search_rng_uniform(&a);
    CHECK(u >= 0 && u < 1);
}

static void expect_invalid(struct search_options o, vp_status want, const char *needle) {
    struct search_result r;
    struct search_model m = {flat_step, NULL, V};
    struct search_input in = {1, start, one};
    vp_status st = search_run(&o, &m, &in, &r);
    CHECKF(st == want && strstr(vp_last_error(), needle), "%s: got %s \"%s\"", needle, vp_status_name(st),
           vp_last_error());
    search_result_free(&r);
}

static void invalid_options(void) {
    struct search_options ok = eos_options(4), o;
#define BAD(field_expr, status, needle) (o = ok, field_expr, expect_invalid(o, status, needle))
    BAD(o.num_beams = -1, VP_ERROR_INVALID_ARGUMENT, "num_beams");
    BAD((o.num_beams = 2, o.num_return_sequences = 3), VP_ERROR_INVALID_ARGUMENT, "num_return_sequences 3");
    BAD(o.num_return_sequences = 2, VP_ERROR_INVALID_ARGUMENT, "greedy");
    BAD((o.num_beams = 2, o.do_sample = true), VP_ERROR_UNSUPPORTED, "beam sampling");
    BAD((o.do_sample = true, o.top_p = 1.5), VP_ERROR_INVALID_ARGUMENT, "top_p");
    BAD((o.do_sample = true, o.temperature = -1), VP_ERROR_INVALID_ARGUMENT, "temperature");
    BAD((o.do_sample = true, o.top_k = -3), VP_ERROR_INVALID_ARGUMENT, "top_k");
    BAD(o.eos_token_ids[0] = V, VP_ERROR_INVALID_ARGUMENT, "eos_token_ids[0]");
    BAD(o.pad_token_id = -2, VP_ERROR_INVALID_ARGUMENT, "pad_token_id");
    BAD((o.forced_bos_set = true, o.forced_bos_token_id = 99), VP_ERROR_INVALID_ARGUMENT, "forced_bos_token_id");
    BAD((o.max_new_tokens = 0, o.max_length = 1), VP_ERROR_INVALID_ARGUMENT, "max_length 1");
    BAD(o.max_new_tokens = -1, VP_ERROR_INVALID_ARGUMENT, "max_new_tokens");
    BAD(o.min_new_tokens = 9, VP_ERROR_INVALID_ARGUMENT, "min_new_tokens");
    BAD(o.no_repeat_ngram_size = -1, VP_ERROR_INVALID_ARGUMENT, "no_repeat_ngram_size");
    BAD(o.early_stopping = (enum search_early_stopping)7, VP_ERROR_INVALID_ARGUMENT, "early_stopping");
    BAD((o.length_penalty_set = true, o.length_penalty = NAN), VP_ERROR_INVALID_ARGUMENT, "length_penalty");
    /* Every id an eos: beam search wants (1 + 6)·2 candidates of 6·2. */
    BAD((o.num_beams = 2, o.eos_count = 6, memcpy(o.eos_token_ids, (int32_t[]){0, 1, 2, 3, 4, 5}, 6 * sizeof(int32_t))),
        VP_ERROR_INVALID_ARGUMENT, "candidates");
#undef BAD
    /* Sampling options are checked only when sampling, as HF does. */
    o = ok;
    o.top_p = 7;
    struct search_result r;
    struct search_model m = {flat_step, NULL, V};
    struct search_input in = {1, start, one};
    CHECK(search_run(&o, &m, &in, &r) == VP_OK);
    search_result_free(&r);
    /* Bad input: an initial id outside the vocabulary; no initial ids. */
    static const int32_t bad_ids[] = {V + 3};
    const int32_t *const bad[] = {bad_ids};
    in.ids = bad;
    CHECK(search_run(&ok, &m, &in, &r) == VP_ERROR_INVALID_ARGUMENT && strstr(vp_last_error(), "initial id"));
    search_result_free(&r);
    const int zero[] = {0};
    in = (struct search_input){1, start, zero};
    CHECK(search_run(&ok, &m, &in, &r) == VP_ERROR_INVALID_ARGUMENT && strstr(vp_last_error(), "at least 1"));
    search_result_free(&r);
}

static vp_status nan_step(void *user, int rows, const int32_t *parent, const int32_t *tokens, float *logits) {
    (void)user, (void)parent, (void)tokens;
    for (int i = 0; i < rows * V; i++) logits[i] = i == 2 ? NAN : 0;
    return VP_OK;
}

/* The model's own failures stop the search with the model's status. */
static void model_errors(void) {
    struct search_result r;
    struct search_options o = eos_options(6);
    toy_reset(RULES(model_loop), 1, start, one);
    toy.fail_at = 2;
    struct search_model m = {toy_step, &toy, V};
    struct search_input in = {1, start, one};
    for (int beams = 1; beams <= 2; beams++) {
        o.num_beams = beams;
        toy.calls = 0;
        vp_status st = search_run(&o, &m, &in, &r);
        CHECKF(st == VP_ERROR_DEVICE_LOST && strstr(vp_last_error(), "decoding step 2: toy device lost"),
               "beams %d: %s \"%s\"", beams, vp_status_name(st), vp_last_error());
        search_result_free(&r);
    }
    m.step = nan_step;
    for (int beams = 1; beams <= 2; beams++) {
        o.num_beams = beams;
        CHECK(search_run(&o, &m, &in, &r) == VP_ERROR_BAD_INPUT && strstr(vp_last_error(), "NaN"));
        search_result_free(&r);
    }
}

TH_MAIN(TH_CASE(greedy_vs_beam), TH_CASE(length_penalty), TH_CASE(early_stopping_modes), TH_CASE(min_length),
        TH_CASE(no_repeat_ngram), TH_CASE(forced_tokens), TH_CASE(batch_matches_single),
        TH_CASE(sampling_top_k_1_is_greedy), TH_CASE(seeds), TH_CASE(sampling_frequencies),
        TH_CASE(top_p_filter), TH_CASE(top_k_and_temperature), TH_CASE(generator), TH_CASE(invalid_options),
        TH_CASE(model_errors))
