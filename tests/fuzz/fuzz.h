/* Shared by the libFuzzer harnesses in tests/fuzz: each harness feeds one
 * parser of untrusted files (safetensors, config.json, tokenizer.json, delta
 * specs, datasets) and lets ASan/UBSan and libFuzzer judge. A harness must
 * free everything it was given on every path: leaks fail the run. */
#ifndef VKPEFT_TESTS_FUZZ_H
#define VKPEFT_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

struct tok_tokenizer;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A malloc'd NUL-terminated copy of data (aborts when out of memory: a
 * harness bug, not the parser's). */
char *fuzz_strndup(const uint8_t *data, size_t size);

/* Writes data to `name` in this process's own temporary folder (made on
 * first use, removed at exit) and returns the path, for parsers that only
 * read files. The path stays valid until the next call. */
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);

/* A small BERT-like WordPiece tokenizer (lower case, BertProcessing's
 * [CLS] A [SEP] B [SEP], added tokens [PAD] [UNK] [CLS] [SEP] [MASK] <s> </s>),
 * parsed once and kept for the process, for the harnesses whose input is
 * text. */
const struct tok_tokenizer *fuzz_tokenizer(void);

/* Splits data at the first "\n\x00\n" (or not at all): the harnesses that
 * take two inputs (a file and a text, a file and options) use it. Returns
 * the length of the first part; *rest and *rest_size get the second. */
size_t fuzz_split(const uint8_t *data, size_t size, const uint8_t **rest, size_t *rest_size);

/* Returns 0 (the value a harness returns for an input the parser
 * rejected); with FUZZ_VERBOSE set prints the parser's message first, to
 * check by hand that seed files are accepted or fail where intended. */
int fuzz_rejected(void);

#endif
