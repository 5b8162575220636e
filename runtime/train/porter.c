/* Porter stemmer, NLTK_EXTENSIONS mode (see porter.h for how that mode
 * departs from the paper). Written from the algorithm's description and NLTK's
 * documented behaviour; each step works in place on a buffer that never grows
 * past the word's length. */
#include "porter.h"

#include <stdbool.h>
#include <string.h>

struct word {
    char *s;
    size_t n;
};

/* Rule conditions. M is Porter's measure of the stem left once the suffix is
 * taken off: the number of vowel-run/consonant-run pairs. */
enum cond {
    COND_NONE,
    COND_M_GT0,
    COND_M_GT1,
    COND_ION,  /* m > 1 and the stem ends in s or t */
    COND_LOGI, /* m > 0 counted on the stem plus the 'l' of "logi" */
};

struct rule {
    const char *suffix, *replacement;
    enum cond cond;
};

static bool is_vowel_letter(char c) {
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

/* A 'y' is a consonant at the start of a word or after a vowel, and a vowel
 * after a consonant; a run of y's therefore alternates from the letter before
 * it. Walked back iteratively so a long run cannot recurse deeply. */
static bool is_consonant(const char *w, size_t i) {
    bool flip = false;
    while (w[i] == 'y') {
        if (i == 0) return !flip;
        flip = !flip;
        i--;
    }
    bool consonant = !is_vowel_letter(w[i]);
    return flip ? !consonant : consonant;
}

/* m in [C](VC)^m[V]: the number of vowel→consonant transitions. */
static int measure(const char *w, size_t n) {
    int m = 0;
    bool prev_vowel = false;
    for (size_t i = 0; i < n; i++) {
        bool c = is_consonant(w, i);
        if (c && prev_vowel) m++;
        prev_vowel = !c;
    }
    return m;
}

static bool has_vowel(const char *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_consonant(w, i)) return true;
    return false;
}

/* *d: ends in two equal consonants. */
static bool ends_double_consonant(const char *w, size_t n) {
    return n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1);
}

/* *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also
 * accepts a two-letter vowel-consonant word. */
static bool ends_cvc(const char *w, size_t n) {
    if (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1))
        return w[n - 1] != 'w' && w[n - 1] != 'x' && w[n - 1] != 'y';
    return n == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
}

static bool ends_with(const struct word *w, const char *suffix) {
    size_t k = strlen(suffix);
    return w->n >= k && memcmp(w->s + w->n - k, suffix, k) == 0;
}

/* Replaces the last `cut` bytes with `replacement` (never longer than what it
 * replaces plus the bytes removed earlier in the same step). */
static void replace_tail(struct word *w, size_t cut, const char *replacement) {
    size_t k = strlen(replacement);
    memcpy(w->s + w->n - cut, replacement, k);
    w->n = w->n - cut + k;
}

static bool cond_holds(const struct word *w, size_t stem_len, enum cond cond) {
    switch (cond) {
    case COND_NONE: return true;
    case COND_M_GT0: return measure(w->s, stem_len) > 0;
    case COND_M_GT1: return measure(w->s, stem_len) > 1;
    case COND_ION:
        return measure(w->s, stem_len) > 1 && (w->s[stem_len - 1] == 's' || w->s[stem_len - 1] == 't');
    case COND_LOGI: return measure(w->s, stem_len + 1) > 0;
    }
    return false;
}

/* The first rule whose suffix ends the word decides: the suffix is replaced
 * when its condition holds on the stem, and otherwise the word stays as it is
 * and no later rule is tried. Returns whether a rule matched at all. */
static bool apply_rules(struct word *w, const struct rule *rules, size_t count) {
    for (size_t r = 0; r < count; r++) {
        if (!ends_with(w, rules[r].suffix)) continue;
        size_t cut = strlen(rules[r].suffix);
        if (cond_holds(w, w->n - cut, rules[r].cond)) replace_tail(w, cut, rules[r].replacement);
        return true;
    }
    return false;
}

#define RULES(table) (table), sizeof(table) / sizeof((table)[0])

static void step1a(struct word *w) {
    static const struct rule rules[] = {
        {"sses", "ss", COND_NONE}, {"ies", "i", COND_NONE},
        {"ss", "ss", COND_NONE},   {"s", "", COND_NONE},
    };
    if (w->n == 4 && ends_with(w, "ies")) { /* dies → die, not di */
        replace_tail(w, 3, "ie");
        return;
    }
    apply_rules(w, RULES(rules));
}

/* After -ed or -ing came off: restore an e, or undouble a final consonant. */
static void step1b_tidy(struct word *w) {
    if (ends_with(w, "at") || ends_with(w, "bl") || ends_with(w, "iz")) {
        w->s[w->n++] = 'e';
    } else if (ends_double_consonant(w->s, w->n)) {
        char last = w->s[w->n - 1];
        if (last != 'l' && last != 's' && last != 'z') w->n--;
    } else if (measure(w->s, w->n) == 1 && ends_cvc(w->s, w->n)) {
        w->s[w->n++] = 'e';
    }
}

static void step1b(struct word *w) {
    if (ends_with(w, "ied")) { /* died → die, spied → spi */
        replace_tail(w, 3, w->n == 4 ? "ie" : "i");
        return;
    }
    if (ends_with(w, "eed")) {
        if (measure(w->s, w->n - 3) > 0) w->n--;
        return;
    }
    size_t cut = ends_with(w, "ed") ? 2 : ends_with(w, "ing") ? 3 : 0;
    if (cut == 0 || !has_vowel(w->s, w->n - cut)) return;
    w->n -= cut;
    step1b_tidy(w);
}

/* y → i after a consonant that is not the word's first letter. */
static void step1c(struct word *w) {
    if (w->n > 2 && w->s[w->n - 1] == 'y' && is_consonant(w->s, w->n - 2)) w->s[w->n - 1] = 'i';
}

static void step2(struct word *w) {
    static const struct rule rules[] = {
        {"ational", "ate", COND_M_GT0}, {"tional", "tion", COND_M_GT0},
        {"enci", "ence", COND_M_GT0},   {"anci", "ance", COND_M_GT0},
        {"izer", "ize", COND_M_GT0},    {"bli", "ble", COND_M_GT0},
        {"alli", "al", COND_M_GT0},     {"entli", "ent", COND_M_GT0},
        {"eli", "e", COND_M_GT0},       {"ousli", "ous", COND_M_GT0},
        {"ization", "ize", COND_M_GT0}, {"ation", "ate", COND_M_GT0},
        {"ator", "ate", COND_M_GT0},    {"alism", "al", COND_M_GT0},
        {"iveness", "ive", COND_M_GT0}, {"fulness", "ful", COND_M_GT0},
        {"ousness", "ous", COND_M_GT0}, {"aliti", "al", COND_M_GT0},
        {"iviti", "ive", COND_M_GT0},   {"biliti", "ble", COND_M_GT0},
        {"fulli", "ful", COND_M_GT0},   {"logi", "log", COND_LOGI},
    };
    /* "alli" → "al" first, then the whole step on the result (which ends in
     * "al", so this cannot repeat). */
    if (ends_with(w, "alli") && measure(w->s, w->n - 4) > 0) w->n -= 2;
    apply_rules(w, RULES(rules));
}

static void step3(struct word *w) {
    static const struct rule rules[] = {
        {"icate", "ic", COND_M_GT0}, {"ative", "", COND_M_GT0}, {"alize", "al", COND_M_GT0},
        {"iciti", "ic", COND_M_GT0}, {"ical", "ic", COND_M_GT0}, {"ful", "", COND_M_GT0},
        {"ness", "", COND_M_GT0},
    };
    apply_rules(w, RULES(rules));
}

static void step4(struct word *w) {
    static const struct rule rules[] = {
        {"al", "", COND_M_GT1},   {"ance", "", COND_M_GT1}, {"ence", "", COND_M_GT1},
        {"er", "", COND_M_GT1},   {"ic", "", COND_M_GT1},   {"able", "", COND_M_GT1},
        {"ible", "", COND_M_GT1}, {"ant", "", COND_M_GT1},  {"ement", "", COND_M_GT1},
        {"ment", "", COND_M_GT1}, {"ent", "", COND_M_GT1},  {"ion", "", COND_ION},
        {"ou", "", COND_M_GT1},   {"ism", "", COND_M_GT1},  {"ate", "", COND_M_GT1},
        {"iti", "", COND_M_GT1},  {"ous", "", COND_M_GT1},  {"ive", "", COND_M_GT1},
        {"ize", "", COND_M_GT1},
    };
    apply_rules(w, RULES(rules));
}

/* Unlike the rule lists, both conditions on a final e are tried. */
static void step5(struct word *w) {
    if (ends_with(w, "e")) {
        int m = measure(w->s, w->n - 1);
        if (m > 1 || (m == 1 && !ends_cvc(w->s, w->n - 1))) w->n--;
    }
    if (ends_with(w, "ll") && measure(w->s, w->n - 1) > 1) w->n--;
}

/* NLTK_EXTENSIONS' irregular forms, looked up before any step. */
static const char *irregular_stem(const char *word, size_t len) {
    static const char *const forms[][2] = {
        {"sky", "sky"},         {"skies", "sky"},     {"dying", "die"},   {"lying", "lie"},
        {"tying", "tie"},       {"news", "news"},     {"innings", "inning"},
        {"inning", "inning"},   {"outings", "outing"}, {"outing", "outing"},
        {"cannings", "canning"}, {"canning", "canning"}, {"howe", "howe"},
        {"proceed", "proceed"}, {"exceed", "exceed"}, {"succeed", "succeed"},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        if (strlen(forms[i][0]) == len && memcmp(forms[i][0], word, len) == 0) return forms[i][1];
    return NULL;
}

size_t porter_stem(const char *word, size_t len, char *out) {
    const char *irregular = irregular_stem(word, len);
    if (irregular) {
        size_t k = strlen(irregular); /* never longer than the word */
        memcpy(out, irregular, k + 1);
        return k;
    }
    memcpy(out, word, len);
    struct word w = {out, len};
    if (len > 2) {
        step1a(&w);
        step1b(&w);
        step1c(&w);
        step2(&w);
        step3(&w);
        step4(&w);
        step5(&w);
    }
    out[w.n] = 0;
    return w.n;
}
