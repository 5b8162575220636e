/* Beam search with the semantics of HF's GenerationMixin._beam_search (the
 * vectorised rewrite of transformers 4.50+), one batch item at a time:
 *
 *   per step, for every running beam: log_softmax(logits), the processors on
 *   the log-probs, plus the beam's running score; the top K = beams_to_keep
 *   candidates over (beams × vocab); a candidate that ends in eos, or any
 *   candidate at the last position, is "finished" — those among the top
 *   num_beams ranks may enter the item's num_beams best hypotheses with score
 *   sum_logprobs / generated_length^length_penalty; the best num_beams
 *   unfinished candidates run on. Then the early-stopping check.
 *
 * Scores are fp32 sums, as HF keeps them. */
#include "search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* HF's -1e9: the score of a beam or hypothesis slot that must lose (the
 * non-first beams of the first step, finished candidates pushed out of the
 * running beams, hypothesis slots not yet filled). */
#define BEAM_LOSE 1.0e9f

struct beam_cand {
    float score;     /* running score + log-prob */
    float adjusted;  /* score - 1e9 when finished: what competes for a running beam */
    int beam;        /* source beam of the item */
    int32_t token;
    bool hit;        /* ends in eos, or reaches max length */
};

struct beam_item {
    int finished;      /* hypotheses kept, ≤ num_beams */
    bool improvable;   /* HF's is_early_stop_heuristic_unsatisfied */
    bool frozen;       /* no kept hypothesis can change any more: the item is done */
};

/* Beam (b, j) is slot b · num_beams + j of every per-beam array. */
struct beam_state {
    int nb, stride, gen;          /* gen: tokens generated before this step */
    const int *lens;              /* (batch) initial ids per item */
    int32_t *ids, *ids_next;      /* (batch·nb, stride) initial ids, then generated */
    float *score, *score_next;    /* (batch·nb) running scores */
    int *row;                     /* (batch·nb) the beam's row in the last step call */
    int *src_row;                 /* (batch·nb) the row a new beam continues */
    int32_t *last;                /* (batch·nb) the token a new beam appended */
    float *hyp_score;             /* (batch·nb) kept hypotheses, best first */
    int *hyp_len;                 /* (batch·nb) */
    int32_t *hyp_tok;             /* (batch·nb, max_new) */
    struct beam_item *item;       /* (batch) */
    struct beam_cand *cand;       /* (beams_to_keep) */
    int *order;                   /* (beams_to_keep) */
    float *logits;                /* (batch·nb, vocab), written by the model */
    int32_t *parent, *tokens;     /* (batch·nb) the next call's rows */
};

static void beam_free(struct beam_state *s) {
    free(s->ids);
    free(s->ids_next);
    free(s->score);
    free(s->score_next);
    free(s->row);
    free(s->src_row);
    free(s->last);
    free(s->hyp_score);
    free(s->hyp_len);
    free(s->hyp_tok);
    free(s->item);
    free(s->cand);
    free(s->order);
    free(s->logits);
    free(s->parent);
    free(s->tokens);
}

static vp_status beam_init(struct beam_state *s, const struct search_config *c, const struct search_input *in) {
    memset(s, 0, sizeof *s);
    s->nb = c->num_beams;
    s->lens = in->lens;
    s->stride = c->prompt_len + c->max_new;
    size_t n = (size_t)c->batch * (size_t)s->nb, k = (size_t)c->beams_to_keep;
    s->ids = malloc(n * (size_t)s->stride * sizeof *s->ids);
    s->ids_next = malloc(n * (size_t)s->stride * sizeof *s->ids_next);
    s->score = malloc(n * sizeof *s->score);
    s->score_next = malloc(n * sizeof *s->score_next);
    s->row = malloc(n * sizeof *s->row);
    s->src_row = malloc(n * sizeof *s->src_row);
    s->last = malloc(n * sizeof *s->last);
    s->hyp_score = malloc(n * sizeof *s->hyp_score);
    s->hyp_len = calloc(n, sizeof *s->hyp_len);
    s->hyp_tok = malloc(n * (size_t)c->max_new * sizeof *s->hyp_tok);
    s->item = calloc((size_t)c->batch, sizeof *s->item);
    s->cand = malloc(k * sizeof *s->cand);
    s->order = malloc(k * sizeof *s->order);
    s->logits = malloc(n * (size_t)c->vocab * sizeof *s->logits);
    s->parent = malloc(n * sizeof *s->parent);
    s->tokens = malloc(n * sizeof *s->tokens);
    if (!s->ids || !s->ids_next || !s->score || !s->score_next || !s->row || !s->src_row || !s->last ||
        !s->hyp_score || !s->hyp_len || !s->hyp_tok || !s->item || !s->cand || !s->order || !s->logits ||
        !s->parent || !s->tokens)
        return vp_fail(VP_ERROR_HOST_MEMORY, "search: out of host memory for %d beams over a vocabulary "
                       "of %d", (int)n, c->vocab);
    for (int b = 0; b < c->batch; b++) {
        s->item[b].improvable = true;
        for (int j = 0; j < s->nb; j++) {
            size_t slot = (size_t)b * s->nb + j;
            memcpy(s->ids + slot * s->stride, in->ids[b], (size_t)in->lens[b] * sizeof *s->ids);
            /* Every beam starts as the item's prompt; only beam 0 may expand at
             * first (the others sit at -1e9), so the first step does not pick
             * the same token num_beams times. All read the item's first-call
             * row: the prompt is computed once, not num_beams times. */
            s->score[slot] = j == 0 ? 0.0f : -BEAM_LOSE;
            s->row[slot] = b;
        }
    }
    return VP_OK;
}

/* log_softmax, then the processors, in place on the rows of item b. At the
 * first step all beams share one row, processed once. */
static vp_status beam_prepare(struct beam_state *s, const struct search_config *c, int b) {
    int beams = s->gen == 0 ? 1 : s->nb;
    for (int j = 0; j < beams; j++) {
        size_t slot = (size_t)b * s->nb + j;
        float *lp = s->logits + (size_t)s->row[slot] * (size_t)c->vocab;
        double lse = search_logsumexp(lp, c->vocab);
        if (!isfinite(lse))
            return vp_fail(VP_ERROR_BAD_INPUT, "search: the model's logits for item %d, beam %d at token %d "
                           "are NaN, +inf or all -inf", b, j, s->gen);
        for (int t = 0; t < c->vocab; t++) lp[t] = (float)((double)lp[t] - lse);
        search_process(c, s->ids + slot * s->stride, s->lens[b] + s->gen, s->gen, lp);
    }
    return VP_OK;
}

/* Inserts into the best-first list (n of k filled); an equal score ranks
 * after what is there, so the earlier candidate (lower beam · vocab + token)
 * wins a tie. torch.topk leaves ties unordered. */
static void cand_insert(struct beam_cand *list, int *n, int k, float score, int beam, int32_t token) {
    if (*n == k && !(score > list[k - 1].score)) return;
    int i = *n < k ? (*n)++ : k - 1;
    for (; i > 0 && list[i - 1].score < score; i--) list[i] = list[i - 1];
    list[i] = (struct beam_cand){.score = score, .beam = beam, .token = token};
}

/* The top beams_to_keep continuations of item b over (beams × vocab). */
static void beam_collect(struct beam_state *s, const struct search_config *c, int b) {
    int n = 0;
    for (int j = 0; j < s->nb; j++) {
        size_t slot = (size_t)b * s->nb + j;
        const float *lp = s->logits + (size_t)s->row[slot] * (size_t)c->vocab;
        float base = s->score[slot];
        for (int t = 0; t < c->vocab; t++) cand_insert(s->cand, &n, c->beams_to_keep, lp[t] + base, j, t);
    }
}

/* Offers a finished candidate to item b's hypotheses. generated_length is
 * HF's cur_len + 1 - decoder_prompt_len: the generated tokens, the new one
 * (eos included) counted, no initial id. A hypothesis must beat an unfilled
 * slot's -1e9, and a tie with a kept one keeps the older. */
static void beam_offer(struct beam_state *s, const struct search_config *c, int b, const struct beam_cand *k) {
    int len = s->gen + 1;
    float norm = k->score / (float)pow((double)len, c->length_penalty);
    struct beam_item *it = &s->item[b];
    size_t base = (size_t)b * s->nb, cap = (size_t)c->max_new;
    if (!(norm > -BEAM_LOSE) || (it->finished == s->nb && !(norm > s->hyp_score[base + s->nb - 1]))) return;
    int i = it->finished < s->nb ? it->finished++ : s->nb - 1;
    for (; i > 0 && s->hyp_score[base + i - 1] < norm; i--) {
        s->hyp_score[base + i] = s->hyp_score[base + i - 1];
        s->hyp_len[base + i] = s->hyp_len[base + i - 1];
        memcpy(s->hyp_tok + (base + i) * cap, s->hyp_tok + (base + i - 1) * cap, cap * sizeof *s->hyp_tok);
    }
    const int32_t *generated = s->ids + (base + (size_t)k->beam) * s->stride + s->lens[b];
    int32_t *dst = s->hyp_tok + (base + i) * cap;
    memcpy(dst, generated, (size_t)s->gen * sizeof *dst);
    dst[s->gen] = k->token;
    s->hyp_score[base + i] = norm;
    s->hyp_len[base + i] = len;
}

/* HF's _check_early_stop_heuristic, then whether item b is done. The best
 * running score over a hypothetical length — the current generated length,
 * or for "never" with a positive length penalty the longest possible — is
 * compared with the worst kept hypothesis (-1e9 while a slot is empty). Once
 * no improvement is possible, or with early_stopping true once num_beams
 * hypotheses are kept, HF masks every later candidate of the item with -1e9:
 * its hypotheses are final, so its beams need not run any more. */
static void beam_check_done(struct beam_state *s, const struct search_config *c, int b) {
    struct beam_item *it = &s->item[b];
    size_t base = (size_t)b * s->nb;
    int len = c->early_stopping == SEARCH_EARLY_STOPPING_NEVER && c->length_penalty > 0 ? c->max_new
                                                                                          : s->gen + 1;
    float best = s->score_next[base] / (float)pow((double)len, c->length_penalty);
    bool full = it->finished == s->nb;
    float worst = full ? s->hyp_score[base + s->nb - 1] : -BEAM_LOSE;
    it->improvable = it->improvable && best > worst;
    it->frozen = !it->improvable || (c->early_stopping == SEARCH_EARLY_STOPPING_TRUE && full);
}

/* Item b's step after its candidates are collected: finished candidates among
 * the top num_beams ranks go to the hypotheses; the num_beams best by
 * adjusted score (finished ones sink by 1e9, as in HF) run on. Returns
 * whether any candidate is unfinished. */
static bool beam_advance(struct beam_state *s, const struct search_config *c, int b) {
    int k = c->beams_to_keep;
    bool last = s->gen + 1 == c->max_new, open = false;
    for (int r = 0; r < k; r++) {
        struct beam_cand *x = &s->cand[r];
        x->hit = last || search_is_eos(c, x->token);
        x->adjusted = x->score + (x->hit ? -BEAM_LOSE : 0.0f);
        open |= !x->hit;
        if (x->hit && r < s->nb) beam_offer(s, c, b, x);
    }
    /* Stable: the candidate list is best first, so equal adjusted scores keep rank order. */
    for (int r = 0; r < k; r++) {
        int i = r;
        for (; i > 0 && s->cand[s->order[i - 1]].adjusted < s->cand[r].adjusted; i--) s->order[i] = s->order[i - 1];
        s->order[i] = r;
    }
    for (int j = 0; j < s->nb; j++) {
        const struct beam_cand *x = &s->cand[s->order[j]];
        size_t slot = (size_t)b * s->nb + j, src = (size_t)b * s->nb + (size_t)x->beam;
        int len = s->lens[b] + s->gen;
        memcpy(s->ids_next + slot * s->stride, s->ids + src * s->stride, (size_t)len * sizeof *s->ids);
        s->ids_next[slot * s->stride + (size_t)len] = x->token;
        s->score_next[slot] = x->adjusted;
        s->src_row[slot] = s->row[src];
        s->last[slot] = x->token;
    }
    beam_check_done(s, c, b);
    return open;
}

static void swap_buffers(struct beam_state *s) {
    int32_t *ids = s->ids;
    s->ids = s->ids_next;
    s->ids_next = ids;
    float *score = s->score;
    s->score = s->score_next;
    s->score_next = score;
}

/* The next call's rows: the beams of items that are not done, item-major.
 * parent is the row each continues (HF's _reorder_cache beam_idx). */
static int beam_rows(struct beam_state *s, const struct search_config *c) {
    int rows = 0;
    for (int b = 0; b < c->batch; b++) {
        if (s->item[b].frozen) continue;
        for (int j = 0; j < s->nb; j++) {
            size_t slot = (size_t)b * s->nb + j;
            s->parent[rows] = s->src_row[slot];
            s->tokens[rows] = s->last[slot];
            s->row[slot] = rows++;
        }
    }
    return rows;
}

/* One position for every item not done; *go_on says whether to continue. */
static vp_status beam_position(struct beam_state *s, const struct search_config *c, bool *go_on) {
    bool open = false;
    for (int b = 0; b < c->batch; b++) {
        if (s->item[b].frozen) continue;
        vp_status st = beam_prepare(s, c, b);
        if (st) return st;
        beam_collect(s, c, b);
        open |= beam_advance(s, c, b);
    }
    swap_buffers(s);
    /* HF stops at max length (every candidate finished), when no candidate
     * is unfinished, and when every item is done. */
    *go_on = s->gen + 1 < c->max_new && open;
    return VP_OK;
}

/* The kept hypotheses, best first. An item with fewer than
 * num_return_sequences (possible only when scores reach -1e9) returns empty
 * sequences scored -1e9 in their place, as HF returns the bare prompt from
 * an unfilled slot. */
static void beam_output(const struct beam_state *s, const struct search_config *c, struct search_result *out) {
    size_t cap = (size_t)c->max_new;
    for (int b = 0; b < c->batch; b++)
        for (int i = 0; i < c->per_item; i++) {
            size_t q = (size_t)b * c->per_item + i, h = (size_t)b * s->nb + i;
            if (i >= s->item[b].finished) {
                out->lengths[q] = 0;
                out->scores[q] = -BEAM_LOSE;
                continue;
            }
            out->lengths[q] = s->hyp_len[h];
            out->scores[q] = s->hyp_score[h];
            memcpy(out->tokens + q * cap, s->hyp_tok + h * cap, (size_t)s->hyp_len[h] * sizeof *out->tokens);
        }
}

vp_status search_beam_run(const struct search_config *c, const struct search_model *m,
                          const struct search_input *in, struct search_result *out) {
    vp_status st = search_result_alloc(out, c);
    struct beam_state s;
    if (!st) st = beam_init(&s, c, in);
    else memset(&s, 0, sizeof s);
    if (!st) {
        out->steps = 1;
        if ((st = m->step(m->user, c->batch, NULL, NULL, s.logits)))
            vp_fail_context(st, "search: decoding step 0");
    }
    for (; !st; s.gen++) {
        bool go_on;
        if ((st = beam_position(&s, c, &go_on)) || !go_on) break;
        int rows = beam_rows(&s, c);
        if (rows == 0) break;
        if ((st = m->step(m->user, rows, s.parent, s.tokens, s.logits)))
            vp_fail_context(st, "search: decoding step %d", out->steps);
        out->steps++;
    }
    if (!st) beam_output(&s, c, out);
    beam_free(&s);
    return st;
}
