/* ROUGE (rouge_score), corpus BLEU (sacreBLEU defaults) and the Porter
 * stemmer (NLTK's default mode) against hand-worked values. Each expected
 * number is derived in the comment beside it; they were also cross-checked
 * once against rouge_score's rules with NLTK 3.8's PorterStemmer and against
 * sacreBLEU 2.x, but the test needs neither. */
#include "harness.h"
#include "porter.h"
#include "textmetrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Results are ratios of small integers put through a few double operations:
 * they agree with the closed forms to within a few ulps. */
#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

static bool stems_to(const char *word, const char *want) {
    char out[64];
    size_t n = porter_stem(word, strlen(word), out);
    return th_check(n == strlen(want) && strcmp(out, want) == 0, __FILE__, __LINE__,
                    "porter_stem(%s) = '%s', want '%s'", word, out, want);
}

static void porter_paper_cases(void) {
    /* The examples of Porter's paper, step by step. */
    stems_to("caresses", "caress");  /* 1a sses → ss */
    stems_to("ponies", "poni");      /* 1a ies → i */
    stems_to("cats", "cat");         /* 1a s → */
    stems_to("feed", "feed");        /* 1b eed needs m > 0: m(f) = 0 */
    stems_to("plastered", "plaster"); /* 1b ed after a vowel */
    stems_to("motoring", "motor");
    stems_to("sing", "sing");        /* s has no vowel: ing stays */
    stems_to("hopping", "hop");      /* undouble pp */
    stems_to("falling", "fall");     /* ll stays doubled */
    stems_to("hissing", "hiss");
    stems_to("filing", "file");      /* m = 1 and *o: add e */
    stems_to("failing", "fail");     /* fail is not cvc */
    stems_to("sized", "size");       /* iz → ize */
    stems_to("happy", "happi");      /* 1c y → i */
    stems_to("relational", "relat"); /* 2 ational → ate (m(rel) = 1); 4 keeps ate (needs
                                        m > 1); 5a drops e (m(relat) = 2) */
    stems_to("conditional", "condit");
    stems_to("rational", "ration");  /* 2: ational matches first, m(r) = 0 fails, and no later
                                        rule is tried; 4: al off, m(ration) = 2 */
    stems_to("generalizations", "gener"); /* 1a s; 2 ization → ize; 3 alize → al; 4 al */
    stems_to("running", "run");
    stems_to("triplicate", "triplic"); /* 3 icate → ic */
    stems_to("formative", "form");   /* 3 ative → */
    stems_to("hopeful", "hope");     /* 3 ful → */
    stems_to("goodness", "good");
    stems_to("revival", "reviv");    /* 4 al, m > 1 */
    stems_to("allowance", "allow");
    stems_to("adoption", "adopt");   /* 4 ion after t */
    stems_to("effective", "effect");
    stems_to("probate", "probat");   /* 5a m > 1 */
    stems_to("rate", "rate");        /* 5a m = 1 and *o: keep e */
    stems_to("cease", "ceas");       /* 5a m = 1, not *o */
    stems_to("controlling", "control"); /* 5b ll → l with m > 1 */
    stems_to("roll", "roll");
}

static void porter_nltk_extensions(void) {
    /* The irregular-forms table comes first. */
    stems_to("dying", "die");
    stems_to("lying", "lie");
    stems_to("tying", "tie");
    stems_to("skies", "sky");
    stems_to("news", "news");        /* the paper's rules would give "new" */
    stems_to("innings", "inning");
    stems_to("proceed", "proceed");  /* not "proce" */
    /* Four-letter -ies / -ied keep "ie"; longer ones become "i". */
    stems_to("ties", "tie");         /* the paper: "ti" */
    stems_to("dies", "die");
    stems_to("died", "die");
    stems_to("spied", "spi");
    /* y → i only after a consonant that is not the first letter. */
    stems_to("enjoy", "enjoy");      /* the paper: "enjoi" */
    stems_to("spy", "spi");
    /* alli → al first, and logi measured with its 'l'. */
    stems_to("radically", "radic");
    stems_to("geology", "geolog");
    stems_to("agreed", "agre");      /* eed → ee, then 5a drops e: m(agr) = 1, not *o */
    /* One- and two-letter words are left alone ("as" would lose its s). */
    stems_to("as", "as");
    stems_to("is", "is");
}

static bool rouge_tokens_are(const char *text, bool stem, const char *want, int line) {
    char *got = NULL;
    vp_status st = textmetrics_rouge_tokenize(text, stem, &got);
    bool ok = th_check(st == VP_OK && got && strcmp(got, want) == 0, __FILE__, line,
                       "rouge tokens of '%s' = '%s', want '%s'", text, got ? got : "(null)", want);
    free(got);
    return ok;
}
#define ROUGE_TOKENS(text, stem, want) rouge_tokens_are((text), (stem), (want), __LINE__)

static void rouge_tokenizer(void) {
    /* Lowercase; everything outside [a-z0-9] separates, the é of café included. */
    ROUGE_TOKENS("The Quick-brown fox's 2nd caf\xc3\xa9!", false, "the quick brown fox s 2nd caf");
    ROUGE_TOKENS("  \t ", false, "");
    /* Stemming touches only tokens longer than 3: "was" and "has" would
     * otherwise lose their s. */
    ROUGE_TOKENS("was has dogs running", true, "was has dog run");
    ROUGE_TOKENS("was has dogs running", false, "was has dogs running");
    /* Python lowercases U+0130 to "i" + U+0307 and U+212A to 'k'. */
    ROUGE_TOKENS("\xc4\xb0stanbul \xe2\x84\xaa" "elvin", false, "i stanbul kelvin");
}

static void rouge_pair_by_hand(void) {
    /* pred "the cat was found under the bed" (7 tokens),
     * ref  "the cat was under the bed"       (6 tokens).
     * ROUGE-1: clipped overlap the 2, cat, was, under, bed = 6:
     *   P = 6/7, R = 6/6, F = 2·(6/7)·1 / (6/7 + 1) = 12/13.
     * ROUGE-2: pred bigrams the-cat cat-was was-found found-under under-the
     *   the-bed (6); ref the-cat cat-was was-under under-the the-bed (5);
     *   overlap 4: P = 4/6, R = 4/5, F = (16/15) / (22/15) = 8/11.
     * ROUGE-L: LCS "the cat was under the bed" = 6: same as ROUGE-1. */
    const char *pred[] = {"the cat was found under the bed"}, *ref[] = {"The cat was under the bed."};
    struct textmetrics_rouge r;
    struct textmetrics_rouge_pair p;
    CHECK(textmetrics_rouge(TEXTMETRICS_LINES(pred, 1), TEXTMETRICS_LINES(ref, 1), false, &r, &p) == VP_OK);
    CHECK(r.count == 1);
    CHECK(p.rouge1.precision == 6.0 / 7 && p.rouge1.recall == 1.0);
    CHECK(NEAR(p.rouge1.fmeasure, 12.0 / 13));
    CHECK(p.rouge2.precision == 4.0 / 6 && p.rouge2.recall == 4.0 / 5);
    CHECK(NEAR(p.rouge2.fmeasure, 8.0 / 11));
    CHECK(p.rougeL.precision == 6.0 / 7 && p.rougeL.recall == 1.0);
    CHECK(NEAR(p.rougeL.fmeasure, 12.0 / 13));
    CHECK(r.rouge1.fmeasure == p.rouge1.fmeasure && r.rouge2.recall == p.rouge2.recall);
}

static void rouge_lcs(void) {
    /* pred a b c d e, ref b a d c e: the same five unigrams (ROUGE-1 = 1),
     * no shared bigram (ab bc cd de vs ba ad dc ce: ROUGE-2 = 0), and an
     * LCS of 3 since a/b and c/d are swapped (e.g. "a c e"): P = R = F = 3/5. */
    const char *pred[] = {"a b c d e"}, *ref[] = {"b a d c e"};
    struct textmetrics_rouge r;
    struct textmetrics_rouge_pair p;
    CHECK(textmetrics_rouge(TEXTMETRICS_LINES(pred, 1), TEXTMETRICS_LINES(ref, 1), false, &r, &p) == VP_OK);
    CHECK(p.rouge1.fmeasure == 1.0);
    CHECK(p.rouge2.precision == 0 && p.rouge2.recall == 0 && p.rouge2.fmeasure == 0);
    CHECK(p.rougeL.precision == 0.6 && p.rougeL.recall == 0.6 && NEAR(p.rougeL.fmeasure, 0.6));
}

static void rouge_with_stemmer(void) {
    /* pred "the dogs were running" → the dog were run ("were" stems to
     * itself: 5a keeps e after the cvc "wer"); ref "a dog runs" → a dog run.
     * Overlap dog, run = 2: P = 2/4, R = 2/3, F = (2/3) / (7/6) = 4/7; the
     * LCS is "dog run", the same. Without the stemmer nothing matches. */
    const char *pred[] = {"The dogs were running"}, *ref[] = {"a dog runs"};
    struct textmetrics_rouge r;
    struct textmetrics_rouge_pair p;
    CHECK(textmetrics_rouge(TEXTMETRICS_LINES(pred, 1), TEXTMETRICS_LINES(ref, 1), true, &r, &p) == VP_OK);
    CHECK(p.rouge1.precision == 0.5 && p.rouge1.recall == 2.0 / 3);
    CHECK(NEAR(p.rouge1.fmeasure, 4.0 / 7) && NEAR(p.rougeL.fmeasure, 4.0 / 7));
    CHECK(p.rouge2.fmeasure == 0); /* dog-were vs dog-run */
    CHECK(textmetrics_rouge(TEXTMETRICS_LINES(pred, 1), TEXTMETRICS_LINES(ref, 1), false, &r, &p) == VP_OK);
    CHECK(p.rouge1.fmeasure == 0 && p.rougeL.fmeasure == 0);
}

static void rouge_corpus(void) {
    /* Pair 0 is rouge_pair_by_hand's; pair 1 "x" vs "y" scores 0; pair 2 has an
     * empty prediction: every score 0 (rouge_score divides by max(count, 1)
     * and returns 0 for ROUGE-L when a side is empty). Means are over 3. */
    const char *pred[] = {"the cat was found under the bed", "x", ""};
    const char *ref[] = {"the cat was under the bed", "y", "something"};
    struct textmetrics_rouge r;
    struct textmetrics_rouge_pair p[3];
    CHECK(textmetrics_rouge(TEXTMETRICS_LINES(pred, 3), TEXTMETRICS_LINES(ref, 3), false, &r, p) == VP_OK);
    CHECK(r.count == 3);
    CHECK(p[1].rouge1.fmeasure == 0 && p[2].rouge1.precision == 0 && p[2].rougeL.recall == 0);
    CHECK(NEAR(r.rouge1.fmeasure, 12.0 / 13 / 3));
    CHECK(NEAR(r.rouge2.fmeasure, 8.0 / 11 / 3));
    CHECK(NEAR(r.rouge2.precision, 4.0 / 6 / 3) && NEAR(r.rougeL.recall, 1.0 / 3));
    /* Errors: counts that differ, a NULL string. An empty list is fine. */
    CHECK(textmetrics_rouge(TEXTMETRICS_LINES(pred, 3), TEXTMETRICS_LINES(ref, 2), false, &r, NULL) ==
          VP_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(vp_last_error(), "3 predictions but 2 references") != NULL);
    const char *null_ref[] = {"a", NULL};
    CHECK(textmetrics_rouge(TEXTMETRICS_LINES(pred, 2), TEXTMETRICS_LINES(null_ref, 2), false, &r, NULL) ==
          VP_ERROR_INVALID_ARGUMENT);
    CHECK(textmetrics_rouge(TEXTMETRICS_LINES(pred, 0), TEXTMETRICS_LINES(ref, 0), true, &r, NULL) == VP_OK &&
          r.count == 0 && r.rougeL.fmeasure == 0);
}

static bool tokens_13a_are(const char *line, const char *want, int at) {
    char *got = NULL;
    vp_status st = textmetrics_tokenize_13a(line, &got);
    bool ok = th_check(st == VP_OK && got && strcmp(got, want) == 0, __FILE__, at,
                       "13a('%s') = '%s', want '%s'", line, got ? got : "(null)", want);
    free(got);
    return ok;
}
#define TOKENS_13A(line, want) tokens_13a_are((line), (want), __LINE__)

static void tokenizer_13a(void) {
    TOKENS_13A("Hello, world!", "Hello , world !");
    /* Comma and period stay inside numbers; the final period is split. */
    TOKENS_13A("It costs $1,000.50.", "It costs $ 1,000.50 .");
    TOKENS_13A("1.5,2.5 x.5 5.x", "1.5,2.5 x . 5 5 . x");
    TOKENS_13A("U.S. policy", "U . S . policy");
    /* Entities unescape in turn, so &amp;lt; ends as '<'. */
    TOKENS_13A("&quot;Hi&quot; &amp; bye &amp;lt;", "\" Hi \" & bye <");
    /* A dash splits after a digit only; apostrophes are kept. */
    TOKENS_13A("3-4 years", "3 - 4 years");
    TOKENS_13A("well-known", "well-known");
    TOKENS_13A("'quoted' (x) [y] {z} a/b 5%", "'quoted' ( x ) [ y ] { z } a / b 5 %");
    /* <skipped> goes, "-\n" joins, "\n" is a space; sacreBLEU rstrip()s the
     * line first, so a trailing "-\n" keeps its dash. */
    TOKENS_13A("<skipped>foo-\nbar\nbaz", "foobar baz");
    TOKENS_13A("end-\n", "end-");
    /* Non-ASCII bytes pass through; U+3000 and U+00A0 are whitespace. */
    TOKENS_13A("na\xc3\xafve caf\xc3\xa9.", "na\xc3\xafve caf\xc3\xa9 .");
    TOKENS_13A("a\xe3\x80\x80" "b\xc2\xa0" "c", "a b c");
    TOKENS_13A("", "");
}

static void bleu_perfect(void) {
    /* Every n-gram matches and the lengths agree: BP 1, p_n = 100, score
     * exp(4·log 100 / 4) = 100 (to the last ulp or so, as in sacreBLEU). */
    const char *hyp[] = {"The cat sat on the mat.", "It was a good day, all things considered."};
    struct textmetrics_lines refs[] = {TEXTMETRICS_LINES(hyp, 2)};
    struct textmetrics_bleu b;
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(hyp, 2), refs, 1, &b) == VP_OK);
    CHECK(NEAR(b.score, 100.0) && b.bp == 1.0);
    /* 7 + 10 tokens (13a splits the periods and the comma). */
    CHECK(b.sys_len == 17 && b.ref_len == 17 && b.ratio == 1.0);
    CHECK(b.counts[0] == 17 && b.totals[3] == 11 && b.precisions[3] == 100.0);
}

static void bleu_hand_corpus(void) {
    /* hyp "the cat sat with a mat"  vs ref "the cat sat on the mat today":
     *   1-grams the cat sat mat match: 4/6     2-grams the-cat cat-sat: 2/5
     *   3-grams the-cat-sat: 1/4               4-grams: 0/3
     * hyp "dogs run" vs "dogs run fast": 2/2, 1/1, 0/0, 0/0.
     * Sums: counts 6 3 1 0, totals 8 6 4 3; sys_len 8, ref_len 7 + 3 = 10.
     * BP = exp(1 − 10/8) = exp(−1/4).
     * p = 75, 50, 25, and order 4 has no match: 100 / (2·3) = 50/3.
     * score = e^{−1/4} · (75·50·25·50/3)^{1/4} = e^{−1/4} · 1562500^{1/4}
     *       = e^{−1/4} · √1250. */
    const char *hyp[] = {"the cat sat with a mat", "dogs run"};
    const char *ref[] = {"the cat sat on the mat today", "dogs run fast"};
    struct textmetrics_lines refs[] = {TEXTMETRICS_LINES(ref, 2)};
    struct textmetrics_bleu b;
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(hyp, 2), refs, 1, &b) == VP_OK);
    const uint64_t counts[] = {6, 3, 1, 0}, totals[] = {8, 6, 4, 3};
    CHECK(memcmp(b.counts, counts, sizeof counts) == 0 && memcmp(b.totals, totals, sizeof totals) == 0);
    CHECK(b.sys_len == 8 && b.ref_len == 10 && b.ratio == 0.8);
    CHECK(b.bp == exp(-0.25));
    CHECK(b.precisions[0] == 75 && b.precisions[1] == 50 && b.precisions[2] == 25);
    CHECK(b.precisions[3] == 100.0 / 6);
    CHECKF(NEAR(b.score, exp(-0.25) * sqrt(1250.0)), "score %.17g", b.score);
}

static void bleu_exp_smoothing(void) {
    /* Three orders without a match: k = 1, 2, 3 along them.
     * counts 3 0 0 0, totals 4 3 2 1: p = 75, 100/(2·3), 100/(4·2), 100/(8·1)
     * product 75 · 50/3 · 12.5 · 12.5 = 390625/2, fourth root 25 / 2^{1/4}. */
    const uint64_t counts[] = {3, 0, 0, 0}, totals[] = {4, 3, 2, 1};
    struct textmetrics_bleu b;
    textmetrics_bleu_compute(counts, totals, 4, 4, &b);
    CHECK(b.precisions[0] == 75 && b.precisions[1] == 100.0 / 6 && b.precisions[2] == 12.5 &&
          b.precisions[3] == 12.5);
    CHECKF(NEAR(b.score, 25 / pow(2, 0.25)), "score %.17g", b.score);
    /* No match at all: sacreBLEU stops early with every precision 0. */
    const uint64_t none[] = {0, 0, 0, 0};
    textmetrics_bleu_compute(none, totals, 4, 4, &b);
    CHECK(b.score == 0 && b.precisions[0] == 0 && b.bp == 1);
    /* A perfect 2-token corpus: no 3-grams, so p3 = p4 = 0, log floored to
     * −9999999999, score 0 even though what exists matches. */
    const char *two[] = {"the cat"};
    struct textmetrics_lines refs[] = {TEXTMETRICS_LINES(two, 1)};
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(two, 1), refs, 1, &b) == VP_OK);
    CHECK(b.score == 0 && b.precisions[0] == 100 && b.precisions[1] == 100 && b.precisions[2] == 0);
}

static void bleu_multiple_references(void) {
    /* Papineni's example: "the" ×7 against "the cat is on the mat" and "there
     * is a cat on the mat". "the" is clipped to its largest count in one
     * reference, 2 (not 2 + 1): p1 = 200/7. No longer n-gram matches:
     * p2 = 100/(2·6), p3 = 100/(4·5), p4 = 100/(8·4). Reference lengths 6 and
     * 7, hypothesis 7: the closest is 7, BP 1.
     * score = (200/7 · 25/3 · 5 · 25/8)^{1/4} = (78125/21)^{1/4}. */
    const char *hyp[] = {"the the the the the the the"};
    const char *r1[] = {"the cat is on the mat"}, *r2[] = {"there is a cat on the mat"};
    struct textmetrics_lines refs[] = {TEXTMETRICS_LINES(r1, 1), TEXTMETRICS_LINES(r2, 1)};
    struct textmetrics_bleu b;
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(hyp, 1), refs, 2, &b) == VP_OK);
    CHECK(b.counts[0] == 2 && b.counts[1] == 0 && b.totals[0] == 7 && b.totals[3] == 4);
    CHECK(b.ref_len == 7 && b.bp == 1);
    CHECKF(NEAR(b.score, pow(78125.0 / 21, 0.25)), "score %.17g", b.score);
    /* A tie in length difference takes the shorter reference: hypothesis of
     * 5 tokens, references of 4 and 6 → ref_len 4. Segment 1 has its second
     * reference missing (NULL), as sacreBLEU allows with None. */
    const char *h2[] = {"a b c d e", "x y"};
    const char *s1[] = {"a b c d", "x y z"}, *s2[] = {"a b c d e f", NULL};
    struct textmetrics_lines refs2[] = {TEXTMETRICS_LINES(s1, 2), TEXTMETRICS_LINES(s2, 2)};
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(h2, 2), refs2, 2, &b) == VP_OK);
    CHECK(b.sys_len == 7 && b.ref_len == 4 + 3);
    CHECK(b.counts[0] == 5 + 2 && b.counts[3] == 2); /* a-b-c-d and b-c-d-e, via either reference */
}

static void bleu_empty_and_errors(void) {
    /* An empty hypothesis: no n-grams, sys_len 0 < ref_len 2, BP 0, score 0. */
    const char *empty[] = {""}, *ref[] = {"the cat"};
    struct textmetrics_lines refs[] = {TEXTMETRICS_LINES(ref, 1)};
    struct textmetrics_bleu b;
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(empty, 1), refs, 1, &b) == VP_OK);
    CHECK(b.score == 0 && b.bp == 0 && b.sys_len == 0 && b.ref_len == 2 && b.totals[0] == 0);
    /* Mismatched counts are refused (sacreBLEU would silently truncate). */
    const char *two[] = {"a", "b"};
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(two, 2), refs, 1, &b) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(vp_last_error(), "2 hypotheses but reference stream 0 has 1") != NULL);
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(empty, 1), refs, 0, &b) == VP_ERROR_INVALID_ARGUMENT);
    const char *none[] = {NULL};
    struct textmetrics_lines no_refs[] = {TEXTMETRICS_LINES(none, 1)};
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(empty, 1), no_refs, 1, &b) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(none, 1), refs, 1, &b) == VP_ERROR_INVALID_ARGUMENT);
    /* An empty corpus scores 0 without failing. */
    struct textmetrics_lines zero[] = {TEXTMETRICS_LINES(ref, 0)};
    CHECK(textmetrics_bleu(TEXTMETRICS_LINES(empty, 0), zero, 1, &b) == VP_OK && b.score == 0);
}

TH_MAIN(TH_CASE(porter_paper_cases), TH_CASE(porter_nltk_extensions), TH_CASE(rouge_tokenizer),
        TH_CASE(rouge_pair_by_hand), TH_CASE(rouge_lcs), TH_CASE(rouge_with_stemmer),
        TH_CASE(rouge_corpus), TH_CASE(tokenizer_13a), TH_CASE(bleu_perfect),
        TH_CASE(bleu_hand_corpus), TH_CASE(bleu_exp_smoothing), TH_CASE(bleu_multiple_references),
        TH_CASE(bleu_empty_and_errors))
