/* A small backtracking regex engine for the patterns tokenizer.json files use
 * (GPT-2's ByteLevel pattern, LLaMA-3/Qwen Split patterns, Replace patterns).
 *
 * Semantics follow Oniguruma, which Hugging Face tokenizers uses for these
 * patterns: Perl-style leftmost-first alternation, greedy quantifiers that
 * backtrack, matching over code points.
 *
 * Supported: literals and escapes (\t \n \r \f \v \e \0 \xHH \x{H..} \uHHHH,
 * escaped punctuation), . (not \n), classes [...] with ranges, negation and
 * nesting, \s \S \d \D \w \W \h \H, \p{..} \P{..} \pL with general categories
 * (L, Lu, ..., N, Nd, ..., P, S, Z, M, C and their long names), groups (...),
 * (?:...), (?i:...) and (?i) (simple case folding), lookahead (?=...) (?!...),
 * alternation, * + ? {n} {n,} {n,m} and their lazy forms, ^ $ \A \z.
 * Anything else (backreferences, lookbehind, possessive quantifiers, class
 * intersection) fails to compile with a message naming it. */
#ifndef VKPEFT_TEXT_REGEX_H
#define VKPEFT_TEXT_REGEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rx_regex;

/* Compiles `pattern` (UTF-8). On failure returns NULL and writes a message
 * (naming what is unsupported or malformed, and where) into err. */
struct rx_regex *rx_compile(const char *pattern, char *err, size_t err_size);
void rx_free(struct rx_regex *re);

/* Scratch space for matching; one per thread. rx_scratch_free releases it. */
struct rx_scratch {
    uint32_t *cps;      /* (n) code points of the subject */
    size_t *offs;       /* (n+1) byte offset of each code point */
    size_t cap;
    int32_t *stack;     /* backtracking stack, (pc, pos) pairs */
    size_t stack_len, stack_cap;
};
void rx_scratch_free(struct rx_scratch *sc);

/* One match, as byte offsets into the subject. */
struct rx_match { size_t start, end; };

/* Finds every non-overlapping match in s[0..len) (valid UTF-8) from left to
 * right, as Oniguruma's search loop does: an empty match moves on by one code
 * point. *matches is grown with realloc; returns false when out of memory. */
bool rx_find_all(const struct rx_regex *re, const char *s, size_t len, struct rx_scratch *sc,
                 struct rx_match **matches, size_t *count, size_t *cap);

#endif
