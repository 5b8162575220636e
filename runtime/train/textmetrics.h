/* Sequence-to-sequence evaluation metrics: ROUGE-1, ROUGE-2 and ROUGE-L as
 * Google's rouge_score computes them, and corpus BLEU as sacreBLEU's
 * corpus_bleu(hyps, [refs]) computes it by default.
 *
 *     const char *pred[] = {"the cat sat"}, *ref[] = {"the cat sat down"};
 *     struct textmetrics_rouge r;
 *     vp_status s = textmetrics_rouge(TEXTMETRICS_LINES(pred, 1),
 *                                     TEXTMETRICS_LINES(ref, 1), true, &r, NULL);
 *     // r.rouge1.fmeasure == 2 * 1 * 0.75 / 1.75
 *
 *     const char *hyp[] = {"The cat sat on the mat."};
 *     struct textmetrics_lines refs[] = {TEXTMETRICS_LINES(ref, 1)};
 *     struct textmetrics_bleu b;
 *     s = textmetrics_bleu(TEXTMETRICS_LINES(hyp, 1), refs, 1, &b);
 *
 * Every string is NUL-terminated UTF-8. Nothing here keeps a pointer to the
 * caller's strings after returning. */
#ifndef VKPEFT_TRAIN_TEXTMETRICS_H
#define VKPEFT_TRAIN_TEXTMETRICS_H

#include "util.h"

#include <stdbool.h>

/* count strings; a list of segments, one per example. */
struct textmetrics_lines {
    const char *const *text;
    size_t count;
};
#define TEXTMETRICS_LINES(array, n) ((struct textmetrics_lines){(const char *const *)(array), (n)})

/* ---- ROUGE ------------------------------------------------------------------
 * Tokens as rouge_score's default tokenizer makes them: lowercase, every
 * character other than a-z and 0-9 becomes a space, split on spaces; with
 * use_stemmer, tokens longer than 3 characters go through the Porter stemmer
 * (porter.h, NLTK's default mode).
 *
 * Non-ASCII: Python's lower() runs first over all of Unicode, and only two
 * non-ASCII characters lowercase to ASCII letters: U+0130 'İ' (to "i" and a
 * combining dot, which then splits the token) and U+212A KELVIN SIGN (to 'k');
 * both are mapped so. Every other non-ASCII byte separates tokens, as the
 * character it belongs to does in rouge_score (so "café" gives "caf"). Bytes
 * that are not valid UTF-8 are treated the same way.
 *
 * n-grams count with clipping: overlap = Σ min(count in pred, count in ref);
 * precision = overlap / max(pred n-grams, 1), recall = overlap / max(ref
 * n-grams, 1). ROUGE-L uses the longest common subsequence of the two token
 * lists (per pair, not rougeLsum's per-sentence union), and is 0 when either
 * side has no tokens. F = 2PR / (P + R), 0 when P + R is 0. */

struct textmetrics_prf {
    double precision, recall, fmeasure;
};

struct textmetrics_rouge_pair {
    struct textmetrics_prf rouge1, rouge2, rougeL;
};

struct textmetrics_rouge {
    /* Means over the pairs of each pair's precision, recall and F, summed in
     * order and divided by count (Python's sum()/len; numpy.mean's pairwise
     * sum may differ in the last bits for more than 8 pairs). This is
     * rouge_score's mean, not BootstrapAggregator's resampled "mid". */
    struct textmetrics_prf rouge1, rouge2, rougeL;
    uint64_t count; /* pairs */
};

/* Scores preds.text[i] against refs.text[i] (rouge_score's score(target =
 * ref, prediction = pred)). pairs, when not NULL, receives preds.count
 * entries. Fails when the counts differ or a string is NULL; an empty list
 * gives zeros and count 0. */
vp_status textmetrics_rouge(struct textmetrics_lines preds, struct textmetrics_lines refs,
                            bool use_stemmer, struct textmetrics_rouge *out,
                            struct textmetrics_rouge_pair *pairs);

/* The tokens rouge_score would score, joined by single spaces, in a malloc'd
 * string the caller frees. */
vp_status textmetrics_rouge_tokenize(const char *text, bool use_stemmer, char **out);

/* ---- BLEU -------------------------------------------------------------------
 * sacreBLEU 2.x defaults: tokenizer '13a', case-sensitive, n-grams of order
 * 1..4, smoothing 'exp', no effective order. */

#define TEXTMETRICS_BLEU_ORDER 4

struct textmetrics_bleu {
    double score;                                /* 0..100 */
    double precisions[TEXTMETRICS_BLEU_ORDER];   /* percent, after smoothing */
    uint64_t counts[TEXTMETRICS_BLEU_ORDER];     /* clipped matches, corpus sums */
    uint64_t totals[TEXTMETRICS_BLEU_ORDER];     /* hypothesis n-grams, corpus sums */
    double bp;                                   /* brevity penalty */
    uint64_t sys_len, ref_len;                   /* tokens: hypotheses, chosen references */
    double ratio;                                /* sys_len / ref_len, 0 when ref_len is 0 */
};

/* Corpus BLEU of hyps against `streams` reference streams, each parallel to
 * hyps (sacreBLEU's refs argument: refs[k].text[i] is the k-th reference of
 * hypothesis i). A NULL reference is skipped, as sacreBLEU skips None, to
 * allow a varying number of references; each hypothesis needs at least one.
 *
 * Per hypothesis: each n-gram's count is clipped by its largest count in any
 * one reference; the reference length is the one closest to the hypothesis
 * length, the shorter on a tie. Counts and lengths are summed over the corpus,
 * then textmetrics_bleu_compute applies.
 *
 * Fails (VP_ERROR_INVALID_ARGUMENT) when a stream's count differs from
 * hyps.count (sacreBLEU silently truncates to the shortest), when there is no
 * stream, or on a NULL hypothesis or a hypothesis with no reference. */
vp_status textmetrics_bleu(struct textmetrics_lines hyps, const struct textmetrics_lines *refs,
                           size_t streams, struct textmetrics_bleu *out);

/* BLEU from corpus statistics, sacreBLEU's compute_bleu with smoothing 'exp':
 * BP = exp(1 − ref_len/sys_len) when sys_len < ref_len (0 when sys_len is 0),
 * else 1. When no n-gram matched at all, the score and every precision are 0.
 * Otherwise p_n = 100·counts/totals; an order with no match gets
 * 100 / (2^k · totals), k counting such orders so far; orders from the first
 * with totals 0 on keep p_n = 0, whose log is taken as −9999999999 (so the
 * score is 0). score = BP · exp((Σ log p_n) / 4). */
void textmetrics_bleu_compute(const uint64_t counts[TEXTMETRICS_BLEU_ORDER],
                              const uint64_t totals[TEXTMETRICS_BLEU_ORDER], uint64_t sys_len,
                              uint64_t ref_len, struct textmetrics_bleu *out);

/* sacreBLEU's tokenizer_13a (mteval-v13a) applied to one segment, after the
 * rstrip() sacreBLEU does first, into a malloc'd string the caller frees:
 * tokens separated by single spaces, no leading or trailing space.
 *
 * Steps: drop "<skipped>", join "-\n", newline → space, unescape &quot;
 * &amp; &lt; &gt; (in that order, each over the whole line), pad with a
 * space each side, then the four substitutions of mteval-v13a, each one pass
 * left to right without overlapping matches as Python's re.sub runs them:
 *   [{-~[-`space-&(-+:-@/]  → " \1 "
 *   ([^0-9])([.,])          → "\1 \2 "
 *   ([.,])([^0-9])          → " \1 \2"
 *   ([0-9])(-)              → "\1 \2 "
 * and finally split on whitespace and join with single spaces.
 *
 * Non-ASCII: bytes ≥ 0x80 are copied unchanged (they are [^0-9], which
 * matters only next to '.' or ','), except that the whitespace Python's
 * str.split() and rstrip() recognise is honoured: ASCII \t \n \v \f \r,
 * 0x1c-0x1f and space, and, UTF-8 encoded, U+0085, U+00A0, U+1680,
 * U+2000-U+200A, U+2028, U+2029, U+202F, U+205F and U+3000. */
vp_status textmetrics_tokenize_13a(const char *line, char **out);

#endif
