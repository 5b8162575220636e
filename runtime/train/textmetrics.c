/* ROUGE-1/2/L (rouge_score) and corpus BLEU (sacreBLEU defaults). See
 * textmetrics.h for what is matched and how non-ASCII text is treated.
 *
 * Both metrics reduce to the same work per example: tokenize each side into a
 * string of space-separated tokens, give every distinct n-gram of the example
 * a small dense id, and count clipped matches with arrays indexed by id. The
 * ids are made by sorting, so the counts are exact (no hashing). */
#include "textmetrics.h"

#include "porter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared text helpers -------------------------------------------------- */

/* Length of the whitespace character (as Python's str.isspace() sees it) that
 * starts at s, or 0. s has n bytes left. */
static size_t py_space_len(const unsigned char *s, size_t n) {
    if ((s[0] >= 0x09 && s[0] <= 0x0d) || (s[0] >= 0x1c && s[0] <= 0x20)) return 1;
    if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (n < 3) return 0;
    if (s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80) return 3; /* U+1680 */
    if (s[0] == 0xe2 && s[1] == 0x80 &&
        ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
        return 3; /* U+2000-200A, U+2028, U+2029, U+202F */
    if (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) return 3; /* U+205F */
    if (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80) return 3; /* U+3000 */
    return 0;
}

/* Python's " ".join(s.split()): in place, returns the new length. */
static size_t squeeze_spaces(char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t w = 0, i = 0;
    bool pending = false;
    while (i < n) {
        size_t k = py_space_len(u + i, n - i);
        if (k) {
            pending = w > 0;
            i += k;
            continue;
        }
        if (pending) s[w++] = ' ';
        pending = false;
        s[w++] = s[i++];
    }
    s[w] = 0;
    return w;
}

/* Python's rstrip(): the length without trailing whitespace. */
static size_t py_rstrip_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t end = 0, i = 0;
    while (i < n) {
        size_t k = py_space_len(u + i, n - i);
        if (k) {
            i += k;
        } else {
            end = ++i;
        }
    }
    return end;
}

static vp_status out_of_memory(void) {
    return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory computing text metrics");
}

/* ---- rouge_score's tokenizer -------------------------------------------------- */

/* Lowercases, keeps [a-z0-9] and turns everything else into spaces; out gets
 * at most n bytes (see textmetrics.h for U+0130 and U+212A). */
static size_t rouge_fold(const char *text, size_t n, char *out) {
    const unsigned char *u = (const unsigned char *)text;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            out[w++] = (char)c;
        } else if (c >= 'A' && c <= 'Z') {
            out[w++] = (char)(c - 'A' + 'a');
        } else if (c == 0xc4 && i + 1 < n && u[i + 1] == 0xb0) { /* İ → i + U+0307 */
            out[w++] = 'i';
            out[w++] = ' ';
            i++;
        } else if (c == 0xe2 && i + 2 < n && u[i + 1] == 0x84 && u[i + 2] == 0xaa) { /* K → k */
            out[w++] = 'k';
            i += 2;
        } else {
            out[w++] = ' ';
        }
    }
    return w;
}

/* Joins the folded tokens with single spaces, stemming those longer than 3.
 * A token is written straight to its place in out (a stem is never longer
 * than its word), so out needs n + 2 bytes. */
static size_t rouge_join(const char *folded, size_t n, bool use_stemmer, char *out) {
    size_t w = 0, i = 0;
    while (i < n) {
        if (folded[i] == ' ') {
            i++;
            continue;
        }
        size_t len = strcspn(folded + i, " ");
        char *dst = out + w + (w > 0);
        size_t k = len;
        if (use_stemmer && len > 3) k = porter_stem(folded + i, len, dst);
        else memcpy(dst, folded + i, len);
        if (k > 0) { /* rouge_score drops empty tokens */
            if (w > 0) out[w] = ' ';
            w += (w > 0) + k;
        }
        i += len;
    }
    out[w] = 0;
    return w;
}

vp_status textmetrics_rouge_tokenize(const char *text, bool use_stemmer, char **out) {
    *out = NULL;
    if (!text) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "rouge: NULL text");
    size_t n = strlen(text);
    char *folded = malloc(n + 1), *joined = malloc(n + 2);
    if (!folded || !joined) {
        free(folded);
        free(joined);
        return out_of_memory();
    }
    size_t m = rouge_fold(text, n, folded);
    folded[m] = 0;
    rouge_join(folded, m, use_stemmer, joined);
    free(folded);
    *out = joined;
    return VP_OK;
}

/* ---- sacreBLEU's tokenizer_13a ---------------------------------------------- */

/* Python's str.replace(from, to) in place; `to` is never longer than `from`. */
static size_t replace_all(char *s, size_t n, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to), w = 0, i = 0;
    while (i < n) {
        if (n - i >= fl && memcmp(s + i, from, fl) == 0) {
            memcpy(s + w, to, tl);
            w += tl;
            i += fl;
        } else {
            s[w++] = s[i++];
        }
    }
    s[w] = 0;
    return w;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_dot_comma(char c) { return c == '.' || c == ','; }

/* [\{-\~\[-\` -\&\(-\+\:-\@\/]: ASCII punctuation and space, except ' , - . */
static bool is_13a_symbol(char c) {
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
           (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

/* The four substitutions, each a left-to-right pass whose matches do not
 * overlap (re.sub). Every pass writes at most 3 bytes per input byte. */
enum pass_13a { PASS_SYMBOL, PASS_DOT_AFTER, PASS_DOT_BEFORE, PASS_DASH };

/* Whether the pattern of `pass` matches at in[i..]; sets its length. */
static bool match_13a(const char *in, size_t n, size_t i, enum pass_13a pass, size_t *len) {
    char a = in[i], b = i + 1 < n ? in[i + 1] : 0;
    *len = pass == PASS_SYMBOL ? 1 : 2;
    switch (pass) {
    case PASS_SYMBOL: return is_13a_symbol(a);
    case PASS_DOT_AFTER: return i + 1 < n && !is_digit(a) && is_dot_comma(b);
    case PASS_DOT_BEFORE: return i + 1 < n && is_dot_comma(a) && !is_digit(b);
    case PASS_DASH: return i + 1 < n && is_digit(a) && b == '-';
    }
    return false;
}

static size_t pass_13a(const char *in, size_t n, char *out, enum pass_13a pass) {
    /* Replacements, '1' and '2' standing for the groups. */
    static const char *const replacement[] = {
        [PASS_SYMBOL] = " 1 ",
        [PASS_DOT_AFTER] = "1 2 ",
        [PASS_DOT_BEFORE] = " 1 2",
        [PASS_DASH] = "1 2 ",
    };
    size_t w = 0, i = 0, len;
    while (i < n) {
        if (!match_13a(in, n, i, pass, &len)) {
            out[w++] = in[i++];
            continue;
        }
        for (const char *r = replacement[pass]; *r; r++)
            out[w++] = *r == ' ' ? ' ' : in[i + (size_t)(*r - '1')];
        i += len;
    }
    return w;
}

/* The language-independent part: markup removal, line joins, entities. */
static size_t clean_13a(char *s, size_t n) {
    n = replace_all(s, n, "<skipped>", "");
    n = replace_all(s, n, "-\n", "");
    n = replace_all(s, n, "\n", " ");
    if (memchr(s, '&', n)) {
        n = replace_all(s, n, "&quot;", "\"");
        n = replace_all(s, n, "&amp;", "&");
        n = replace_all(s, n, "&lt;", "<");
        n = replace_all(s, n, "&gt;", ">");
    }
    return n;
}

vp_status textmetrics_tokenize_13a(const char *line, char **out) {
    *out = NULL;
    if (!line) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "bleu: NULL segment");
    size_t n = py_rstrip_len(line, strlen(line));
    /* Padding adds 2 bytes and the symbol pass at most triples the line; the
     * later passes add 2 bytes per match, and each '.', ',' or '-' ends up in
     * at most two matches: 3·(n+2) + 4·n bytes bound every intermediate. */
    size_t cap = 7 * (n + 2) + 1;
    char *a = malloc(cap), *b = malloc(cap);
    if (!a || !b) {
        free(a);
        free(b);
        return out_of_memory();
    }
    memcpy(a + 1, line, n);
    a[1 + n] = 0;
    n = clean_13a(a + 1, n);
    a[0] = ' ', a[n + 1] = ' ';
    n += 2;
    n = pass_13a(a, n, b, PASS_SYMBOL);
    n = pass_13a(b, n, a, PASS_DOT_AFTER);
    n = pass_13a(a, n, b, PASS_DOT_BEFORE);
    n = pass_13a(b, n, a, PASS_DASH);
    squeeze_spaces(a, n);
    free(b);
    *out = a;
    return VP_OK;
}

/* ---- n-gram ids for one example -------------------------------------------- */

/* Sentence 0 is the prediction / hypothesis, sentences 1.. its references. */
struct example {
    size_t sentences;
    char **text;          /* (sentences) space-joined tokens, owned */
    size_t *first;        /* (sentences + 1) index of each sentence's first token */
    size_t tokens;
    const char **tok;     /* (tokens) into text */
    uint32_t *tok_len;    /* (tokens) */
    uint32_t *word;       /* (tokens) unigram id of each token */
    uint32_t *gram;       /* (tokens) id of the n-gram starting at each token, current order */
    uint32_t ids;         /* distinct n-grams of the current order */
    uint32_t *count[3];   /* (tokens) scratch counts indexed by id */
};

static void example_free(struct example *e) {
    if (e->text)
        for (size_t s = 0; s < e->sentences; s++) free(e->text[s]);
    free(e->text);
    free(e->first);
    free(e->tok);
    free(e->tok_len);
    free(e->word);
    free(e->gram);
    for (int k = 0; k < 3; k++) free(e->count[k]);
    memset(e, 0, sizeof *e);
}

static size_t count_tokens(const char *s) {
    size_t n = 0;
    for (bool in = false; *s; s++) {
        if (*s != ' ' && !in) n++;
        in = *s != ' ';
    }
    return n;
}

/* Takes ownership of text, an array of `sentences` malloc'd token strings,
 * and indexes the tokens. The caller calls example_free afterwards whether or
 * not this succeeded; that frees text too. */
static vp_status example_init(struct example *e, char **text, size_t sentences) {
    memset(e, 0, sizeof *e);
    e->sentences = sentences;
    e->text = text;
    e->first = malloc((sentences + 1) * sizeof *e->first);
    if (!e->first) return out_of_memory();
    e->first[0] = 0;
    for (size_t s = 0; s < sentences; s++) e->first[s + 1] = e->first[s] + count_tokens(text[s]);
    e->tokens = e->first[sentences];
    if (e->tokens >= UINT32_MAX)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "text metrics: %zu tokens in one example", e->tokens);
    size_t n = e->tokens ? e->tokens : 1;
    e->tok = malloc(n * sizeof *e->tok);
    e->tok_len = malloc(n * sizeof *e->tok_len);
    e->word = malloc(n * sizeof *e->word);
    e->gram = malloc(n * sizeof *e->gram);
    for (int k = 0; k < 3; k++) e->count[k] = malloc(n * sizeof *e->count[k]);
    if (!e->tok || !e->tok_len || !e->word || !e->gram || !e->count[0] || !e->count[1] || !e->count[2])
        return out_of_memory();
    size_t t = 0;
    for (size_t s = 0; s < sentences; s++) {
        for (const char *p = text[s]; *p;) {
            if (*p == ' ') {
                p++;
                continue;
            }
            size_t len = strcspn(p, " ");
            e->tok[t] = p;
            e->tok_len[t++] = (uint32_t)len;
            p += len;
        }
    }
    return VP_OK;
}

static size_t sentence_len(const struct example *e, size_t s) { return e->first[s + 1] - e->first[s]; }

/* Number of n-grams in sentence s. */
static size_t sentence_grams(const struct example *e, size_t s, int n) {
    size_t len = sentence_len(e, s);
    return len >= (size_t)n ? len - (size_t)n + 1 : 0;
}

struct token_key {
    const char *s;
    uint32_t len, pos;
};

static int token_key_cmp(const void *pa, const void *pb) {
    const struct token_key *a = pa, *b = pb;
    int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

struct gram_key {
    uint64_t key;
    uint32_t pos;
};

static int gram_key_cmp(const void *pa, const void *pb) {
    const struct gram_key *a = pa, *b = pb;
    return (a->key > b->key) - (a->key < b->key);
}

/* Dense ids for the distinct tokens; they also serve as the unigram ids. */
static vp_status example_unigrams(struct example *e) {
    struct token_key *k = malloc((e->tokens ? e->tokens : 1) * sizeof *k);
    if (!k) return out_of_memory();
    for (size_t t = 0; t < e->tokens; t++) k[t] = (struct token_key){e->tok[t], e->tok_len[t], (uint32_t)t};
    qsort(k, e->tokens, sizeof *k, token_key_cmp);
    uint32_t id = 0;
    for (size_t t = 0; t < e->tokens; t++) {
        if (t > 0 && token_key_cmp(&k[t - 1], &k[t]) != 0) id++;
        e->word[k[t].pos] = e->gram[k[t].pos] = id;
    }
    e->ids = e->tokens ? id + 1 : 0;
    free(k);
    return VP_OK;
}

/* Moves e->gram from order n-1 to order n: the n-gram at i is the pair
 * (id of the (n-1)-gram at i, token i+n-1), and distinct pairs get dense ids. */
static vp_status example_next_order(struct example *e, int n) {
    struct gram_key *k = malloc((e->tokens ? e->tokens : 1) * sizeof *k);
    if (!k) return out_of_memory();
    size_t m = 0;
    for (size_t s = 0; s < e->sentences; s++) {
        size_t start = e->first[s], grams = sentence_grams(e, s, n);
        for (size_t i = start; i < start + grams; i++)
            k[m++] = (struct gram_key){(uint64_t)e->gram[i] << 32 | e->word[i + (size_t)n - 1], (uint32_t)i};
    }
    qsort(k, m, sizeof *k, gram_key_cmp);
    uint32_t id = 0;
    for (size_t j = 0; j < m; j++) {
        if (j > 0 && k[j].key != k[j - 1].key) id++;
        e->gram[k[j].pos] = id;
    }
    e->ids = m ? id + 1 : 0;
    free(k);
    return VP_OK;
}

/* Clipped matches of the current order n: Σ over the hypothesis's distinct
 * n-grams of min(its count, its largest count in any one reference). */
static uint64_t example_matches(struct example *e, int n) {
    uint32_t *hyp = e->count[0], *best = e->count[1], *cur = e->count[2];
    memset(hyp, 0, e->ids * sizeof *hyp);
    memset(best, 0, e->ids * sizeof *best);
    memset(cur, 0, e->ids * sizeof *cur);
    for (size_t i = 0; i < sentence_grams(e, 0, n); i++) hyp[e->gram[e->first[0] + i]]++;
    for (size_t s = 1; s < e->sentences; s++) {
        const uint32_t *g = e->gram + e->first[s];
        size_t grams = sentence_grams(e, s, n);
        for (size_t i = 0; i < grams; i++) cur[g[i]]++;
        for (size_t i = 0; i < grams; i++) {
            if (cur[g[i]] > best[g[i]]) best[g[i]] = cur[g[i]];
            cur[g[i]] = 0;
        }
    }
    uint64_t matches = 0;
    for (uint32_t id = 0; id < e->ids; id++) matches += hyp[id] < best[id] ? hyp[id] : best[id];
    return matches;
}

/* ---- ROUGE ------------------------------------------------------------------ */

static double fmeasure(double p, double r) {
    /* rouge_score: 2 * precision * recall / (precision + recall), evaluated
     * left to right, so the same double comes out. */
    return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
}

static struct textmetrics_prf prf(uint64_t overlap, uint64_t pred, uint64_t ref) {
    struct textmetrics_prf s;
    s.precision = (double)overlap / (double)(pred > 1 ? pred : 1);
    s.recall = (double)overlap / (double)(ref > 1 ? ref : 1);
    s.fmeasure = fmeasure(s.precision, s.recall);
    return s;
}

/* Longest common subsequence of the token ids of sentences 0 and 1. */
static vp_status lcs_length(const struct example *e, uint64_t *out) {
    const uint32_t *a = e->word + e->first[0], *b = e->word + e->first[1];
    size_t na = sentence_len(e, 0), nb = sentence_len(e, 1);
    uint32_t *row = calloc(nb + 1, sizeof *row);
    if (!row) return out_of_memory();
    for (size_t i = 0; i < na; i++) {
        uint32_t diag = 0; /* row[j] of the previous i */
        for (size_t j = 1; j <= nb; j++) {
            uint32_t up = row[j];
            row[j] = a[i] == b[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    *out = row[nb];
    free(row);
    return VP_OK;
}

static vp_status rouge_scores(struct example *e, struct textmetrics_rouge_pair *out) {
    vp_status st = example_unigrams(e);
    if (st != VP_OK) return st;
    size_t np = sentence_len(e, 0), nr = sentence_len(e, 1);
    out->rouge1 = prf(example_matches(e, 1), np, nr);
    uint64_t lcs = 0;
    if ((st = lcs_length(e, &lcs)) != VP_OK) return st;
    /* rouge_score's _score_lcs returns zeros when either side is empty. */
    out->rougeL = np && nr ? prf(lcs, np, nr) : (struct textmetrics_prf){0, 0, 0};
    if ((st = example_next_order(e, 2)) != VP_OK) return st;
    out->rouge2 = prf(example_matches(e, 2), sentence_grams(e, 0, 2), sentence_grams(e, 1, 2));
    return VP_OK;
}

static vp_status rouge_pair(const char *pred, const char *ref, bool use_stemmer,
                            struct textmetrics_rouge_pair *out) {
    char **text = calloc(2, sizeof *text);
    if (!text) return out_of_memory();
    vp_status st = textmetrics_rouge_tokenize(pred, use_stemmer, &text[0]);
    if (st == VP_OK) st = textmetrics_rouge_tokenize(ref, use_stemmer, &text[1]);
    if (st != VP_OK) {
        free(text[0]);
        free(text);
        return st;
    }
    struct example e;
    st = example_init(&e, text, 2);
    if (st == VP_OK) st = rouge_scores(&e, out);
    example_free(&e);
    return st;
}

static void prf_add(struct textmetrics_prf *sum, struct textmetrics_prf x) {
    sum->precision += x.precision;
    sum->recall += x.recall;
    sum->fmeasure += x.fmeasure;
}

static void prf_div(struct textmetrics_prf *sum, double n) {
    sum->precision /= n;
    sum->recall /= n;
    sum->fmeasure /= n;
}

vp_status textmetrics_rouge(struct textmetrics_lines preds, struct textmetrics_lines refs,
                            bool use_stemmer, struct textmetrics_rouge *out,
                            struct textmetrics_rouge_pair *pairs) {
    memset(out, 0, sizeof *out);
    if (preds.count != refs.count)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "rouge: %zu predictions but %zu references; "
                       "give one reference per prediction", preds.count, refs.count);
    for (size_t i = 0; i < preds.count; i++) {
        if (!preds.text[i] || !refs.text[i])
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "rouge: pair %zu has a NULL %s", i,
                           preds.text[i] ? "reference" : "prediction");
        struct textmetrics_rouge_pair p;
        vp_status st = rouge_pair(preds.text[i], refs.text[i], use_stemmer, &p);
        if (st != VP_OK) return vp_fail_context(st, "rouge: pair %zu", i);
        if (pairs) pairs[i] = p;
        prf_add(&out->rouge1, p.rouge1);
        prf_add(&out->rouge2, p.rouge2);
        prf_add(&out->rougeL, p.rougeL);
    }
    out->count = preds.count;
    if (preds.count) {
        prf_div(&out->rouge1, (double)preds.count);
        prf_div(&out->rouge2, (double)preds.count);
        prf_div(&out->rougeL, (double)preds.count);
    }
    return VP_OK;
}

/* ---- BLEU ------------------------------------------------------------------- */

/* sacreBLEU's my_log: log, with log(0) taken as -9999999999. */
static double floored_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

void textmetrics_bleu_compute(const uint64_t counts[TEXTMETRICS_BLEU_ORDER],
                              const uint64_t totals[TEXTMETRICS_BLEU_ORDER], uint64_t sys_len,
                              uint64_t ref_len, struct textmetrics_bleu *out) {
    memset(out, 0, sizeof *out);
    memcpy(out->counts, counts, sizeof out->counts);
    memcpy(out->totals, totals, sizeof out->totals);
    out->sys_len = sys_len;
    out->ref_len = ref_len;
    out->ratio = ref_len ? (double)sys_len / (double)ref_len : 0.0;
    out->bp = 1.0;
    if (sys_len < ref_len) out->bp = sys_len > 0 ? exp(1.0 - (double)ref_len / (double)sys_len) : 0.0;
    bool any = false;
    for (int n = 0; n < TEXTMETRICS_BLEU_ORDER; n++) any |= counts[n] != 0;
    if (!any) return; /* sacreBLEU's early stop: score and precisions 0 */
    double smooth = 1.0;
    for (int n = 0; n < TEXTMETRICS_BLEU_ORDER && totals[n] != 0; n++) {
        if (counts[n] == 0) {
            smooth *= 2;
            out->precisions[n] = 100.0 / (smooth * (double)totals[n]);
        } else {
            out->precisions[n] = 100.0 * (double)counts[n] / (double)totals[n];
        }
    }
    double sum = 0;
    for (int n = 0; n < TEXTMETRICS_BLEU_ORDER; n++) sum += floored_log(out->precisions[n]);
    out->score = out->bp * exp(sum / TEXTMETRICS_BLEU_ORDER);
}

/* The reference length closest to hyp_len, the shorter on a tie. */
static size_t closest_ref_len(const struct example *e, size_t hyp_len) {
    size_t best = 0, best_diff = SIZE_MAX;
    for (size_t s = 1; s < e->sentences; s++) {
        size_t len = sentence_len(e, s), diff = len > hyp_len ? len - hyp_len : hyp_len - len;
        if (diff < best_diff || (diff == best_diff && len < best)) best = len, best_diff = diff;
    }
    return best;
}

struct bleu_stats {
    uint64_t counts[TEXTMETRICS_BLEU_ORDER], totals[TEXTMETRICS_BLEU_ORDER];
    uint64_t sys_len, ref_len;
};

/* Tokenizes hypothesis i and its references; text[0] is the hypothesis. */
static vp_status bleu_tokenize(struct textmetrics_lines hyps, const struct textmetrics_lines *refs,
                               size_t streams, size_t i, char **text, size_t *sentences) {
    vp_status st = textmetrics_tokenize_13a(hyps.text[i], &text[0]);
    size_t s = 1;
    for (size_t k = 0; st == VP_OK && k < streams; k++)
        if (refs[k].text[i]) st = textmetrics_tokenize_13a(refs[k].text[i], &text[s++]);
    *sentences = s;
    return st;
}

static vp_status bleu_add_example(struct example *e, struct bleu_stats *stats) {
    vp_status st = example_unigrams(e);
    size_t hyp_len = sentence_len(e, 0);
    stats->sys_len += hyp_len;
    stats->ref_len += closest_ref_len(e, hyp_len);
    for (int n = 1; st == VP_OK && n <= TEXTMETRICS_BLEU_ORDER; n++) {
        if (n > 1 && (st = example_next_order(e, n)) != VP_OK) break;
        stats->counts[n - 1] += example_matches(e, n);
        stats->totals[n - 1] += sentence_grams(e, 0, n);
    }
    return st;
}

static vp_status bleu_example(struct textmetrics_lines hyps, const struct textmetrics_lines *refs,
                              size_t streams, size_t i, struct bleu_stats *stats) {
    char **text = calloc(streams + 1, sizeof *text);
    if (!text) return out_of_memory();
    size_t sentences = 0;
    vp_status st = bleu_tokenize(hyps, refs, streams, i, text, &sentences);
    if (st != VP_OK) {
        for (size_t s = 0; s <= streams; s++) free(text[s]);
        free(text);
        return st;
    }
    struct example e;
    st = example_init(&e, text, sentences);
    if (st == VP_OK) st = bleu_add_example(&e, stats);
    example_free(&e);
    return st;
}

static vp_status bleu_check(struct textmetrics_lines hyps, const struct textmetrics_lines *refs,
                            size_t streams) {
    if (streams == 0) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "bleu: no reference stream");
    for (size_t k = 0; k < streams; k++)
        if (refs[k].count != hyps.count)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "bleu: %zu hypotheses but reference stream %zu "
                           "has %zu segments; every stream needs one per hypothesis",
                           hyps.count, k, refs[k].count);
    for (size_t i = 0; i < hyps.count; i++) {
        if (!hyps.text[i]) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "bleu: hypothesis %zu is NULL", i);
        size_t have = 0;
        for (size_t k = 0; k < streams; k++) have += refs[k].text[i] != NULL;
        if (!have) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "bleu: hypothesis %zu has no reference", i);
    }
    return VP_OK;
}

vp_status textmetrics_bleu(struct textmetrics_lines hyps, const struct textmetrics_lines *refs,
                           size_t streams, struct textmetrics_bleu *out) {
    memset(out, 0, sizeof *out);
    vp_status st = bleu_check(hyps, refs, streams);
    if (st != VP_OK) return st;
    struct bleu_stats stats = {0};
    for (size_t i = 0; i < hyps.count; i++)
        if ((st = bleu_example(hyps, refs, streams, i, &stats)) != VP_OK)
            return vp_fail_context(st, "bleu: hypothesis %zu", i);
    textmetrics_bleu_compute(stats.counts, stats.totals, stats.sys_len, stats.ref_len, out);
    return VP_OK;
}
