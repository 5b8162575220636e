#include "fuzz.h"

#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *fuzz_strndup(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

int fuzz_rejected(void) {
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "rejected: %s\n", vp_last_error());
    return 0;
}

static char temp_dir[64];
static char temp_file[128];

static void remove_temp_dir(void) {
    if (temp_file[0]) unlink(temp_file);
    rmdir(temp_dir);
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size) {
    if (!temp_dir[0]) {
        snprintf(temp_dir, sizeof temp_dir, "/tmp/vkpeft-fuzz-XXXXXX");
        if (!mkdtemp(temp_dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_temp_dir);
    }
    if (temp_file[0]) unlink(temp_file);
    snprintf(temp_file, sizeof temp_file, "%s/%s", temp_dir, name);
    FILE *f = fopen(temp_file, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(temp_file);
        abort();
    }
    return temp_file;
}

size_t fuzz_split(const uint8_t *data, size_t size, const uint8_t **rest, size_t *rest_size) {
    static const uint8_t sep[3] = {'\n', 0, '\n'};
    for (size_t i = 0; i + 3 <= size; i++)
        if (memcmp(data + i, sep, 3) == 0) {
            *rest = data + i + 3;
            *rest_size = size - i - 3;
            return i;
        }
    *rest = data + size;
    *rest_size = 0;
    return size;
}

#define ADDED(id, name)                                                                            \
    "{\"id\":" #id ",\"content\":\"" name "\",\"single_word\":false,\"lstrip\":false,"             \
    "\"rstrip\":false,\"normalized\":false,\"special\":true}"

static struct tok_tokenizer *shared_tokenizer;

static void free_tokenizer(void) { tok_tokenizer_free(shared_tokenizer); }

const struct tok_tokenizer *fuzz_tokenizer(void) {
    static const char json[] =
        "{\"version\":\"1.0\",\"added_tokens\":[" ADDED(0, "[PAD]") "," ADDED(1, "[UNK]") ","
        ADDED(2, "[CLS]") "," ADDED(3, "[SEP]") "," ADDED(4, "[MASK]") "," ADDED(5, "<s>") ","
        ADDED(6, "</s>") "],"
        "\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
        "\"strip_accents\":null,\"lowercase\":true},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
        "\"post_processor\":{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",3],\"cls\":[\"[CLS]\",2]},"
        "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
        "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
        "\"max_input_chars_per_word\":100,\"vocab\":{\"[PAD]\":0,\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3,"
        "\"[MASK]\":4,\"<s>\":5,\"</s>\":6,\"a\":7,\"b\":8,\"c\":9,\"the\":10,\"cat\":11,\"sat\":12,"
        "\"##s\":13,\"##at\":14,\"pos\":15,\"neg\":16,\",\":17,\".\":18,\"\\\"\":19}}}";
    if (!shared_tokenizer) {
        if (tok_tokenizer_parse(json, NULL, "fuzz-tokenizer.json", &shared_tokenizer) != VP_OK) {
            fprintf(stderr, "fuzz: built-in tokenizer: %s\n", vp_last_error());
            abort();
        }
        atexit(free_tokenizer);
    }
    return shared_tokenizer;
}
