/* The Porter stemmer as NLTK's PorterStemmer() runs it by default
 * (mode NLTK_EXTENSIONS), which is the stemmer rouge_score uses.
 *
 * NLTK_EXTENSIONS differs from Porter's 1980 paper in these places, all
 * followed here:
 *   - a table of irregular forms is looked up first (dying → die,
 *     lying → lie, tying → tie, skies → sky, news, innings → inning, ...);
 *   - words of one or two letters are returned unchanged;
 *   - step 1a: a four-letter word ending in "ies" keeps "ie" (dies → die);
 *   - step 1b: "ied" → "ie" in four-letter words, else "i" (died → die,
 *     spied → spi), and *o also holds for a two-letter vowel-consonant stem;
 *   - step 1c: y → i only after a consonant that is not the first letter
 *     (happy → happi, enjoy → enjoy, sky stays by the table, spy → spi);
 *   - step 2: "alli" → "al" is tried first and step 2 rerun on the result;
 *     "bli" → "ble" replaces "abli" → "able"; "fulli" → "ful" and
 *     "logi" → "log" (measured with the "l") are added. */
#ifndef VKPEFT_TRAIN_PORTER_H
#define VKPEFT_TRAIN_PORTER_H

#include <stddef.h>

/* Stems word[0..len) into out, which must hold len + 1 bytes (a stem is never
 * longer than its word), NUL-terminated; returns the stem's length.
 *
 * The word is expected in lowercase ASCII letters and digits, as rouge_score's
 * tokenizer produces; NLTK's stem() also lowercases, which this does not. Any
 * other byte counts as a consonant, as any character other than a, e, i, o, u
 * (and y after a consonant) does in NLTK, but lengths are in bytes, where NLTK
 * counts code points. */
size_t porter_stem(const char *word, size_t len, char *out);

#endif
