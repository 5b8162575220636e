/* The data side of the bundled encoder: tools/make-corpus.py writes a small
 * corpus and the plausibility task, tools/make-tokenizer.py builds a WordPiece
 * tokenizer.json from the corpus, and vkpeft's own tokenizer must read it:
 * every corpus line encodes without [UNK] and decodes back to its lowercase
 * text, the template adds [CLS]/[SEP], and the task splits have their sizes,
 * balanced labels and dev pairs that train never uses.
 *
 * argv[1]: make-corpus.py, argv[2]: make-tokenizer.py; python3 from PATH. */
#include "harness.h"
#include "tokenizer.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SENTENCES = 3000, TRAIN = 2000, DEV = 500, MAX_ROWS = 2000 };

static const char *corpus_script, *tokenizer_script;
static char dir[64];
static bool made;

static bool sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return CHECKF(rc == 0, "command failed (%d): %s", rc, cmd);
}

/* Runs both scripts once; every case needs their output. */
static bool make_data(void) {
    if (made) return true;
    made = sh("python3 '%s' --corpus '%s/corpus.txt' --task '%s/task' --sentences %d --seed 5 --train %d --dev %d",
              corpus_script, dir, dir, SENTENCES, TRAIN, DEV) &&
           sh("python3 '%s' '%s/corpus.txt' '%s/tok' --vocab-size 4096 --max-length 64 > /dev/null",
              tokenizer_script, dir, dir);
    return made;
}

static struct tok_tokenizer *load(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/tok", dir);
    struct tok_tokenizer *tok = NULL;
    if (!CHECKF(tok_tokenizer_load(path, &tok) == VP_OK, "%s", vp_last_error())) return NULL;
    return tok;
}

/* Lowercase text without whitespace: the decoder's cleanup moves spaces
 * around punctuation, so the round trip is compared modulo whitespace. */
static void squeeze(const char *s, char *out, size_t cap) {
    size_t n = 0;
    for (; *s && n + 1 < cap; s++)
        if (!isspace((unsigned char)*s)) out[n++] = (char)tolower((unsigned char)*s);
    out[n] = 0;
}

static void test_tokenizer_shape(void) {
    if (!make_data()) return;
    struct tok_tokenizer *tok = load();
    if (!tok) return;
    CHECK(strcmp(tok_model_type(tok), "WordPiece") == 0);
    const char *names[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++) {
        CHECKF(tok_token_to_id(tok, names[i]) == i, "%s has id %d", names[i], tok_token_to_id(tok, names[i]));
        CHECKF(tok_is_special(tok, i), "%s is not special", names[i]);
    }
    struct tok_special_ids sp = tok_special_ids(tok);
    CHECK(sp.pad == 0 && sp.unk == 1 && sp.cls == 2 && sp.sep == 3 && sp.mask == 4);
    int32_t v = tok_vocab_size(tok);
    th_diag("vocabulary %d tokens", (int)v);
    CHECK(v > 100 && v <= 4096);
    CHECK(tok_token_to_id(tok, "goat") > 4);

    struct tok_encoding e = {0};
    if (CHECK(tok_encode(tok, "The goat ate hay.", NULL, true, 0, &e) == VP_OK)) {
        CHECK(e.len == 7 && e.ids[0] == 2 && e.ids[e.len - 1] == 3);
        CHECK(e.special[0] && e.special[e.len - 1] && !e.special[1]);
    }
    if (CHECK(tok_encode(tok, "The goat ate hay.", "It was calm.", true, 0, &e) == VP_OK)) {
        /* [CLS] the goat ate hay . [SEP] it was calm . [SEP] */
        CHECK(e.len == 12 && e.ids[0] == 2 && e.ids[6] == 3 && e.ids[11] == 3);
        CHECK(e.type_ids[6] == 0 && e.type_ids[7] == 1 && e.type_ids[11] == 1);
    }
    tok_encoding_free(&e);
    tok_tokenizer_free(tok);
}

static void test_corpus_round_trip(void) {
    if (!make_data()) return;
    struct tok_tokenizer *tok = load();
    if (!tok) return;
    char path[128];
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    FILE *f = fopen(path, "r");
    if (!CHECKF(f != NULL, "cannot open %s", path)) {
        tok_tokenizer_free(tok);
        return;
    }
    struct tok_encoding e = {0};
    char line[1024], want[1024], got[1024];
    int lines = 0, unk = 0, bad = 0, tokens = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        if (!CHECKF(tok_encode(tok, line, NULL, false, 0, &e) == VP_OK, "line %d: %s", lines, vp_last_error()))
            break;
        tokens += e.len;
        for (int i = 0; i < e.len; i++) unk += e.ids[i] == 1;
        char *text = NULL;
        if (!CHECK(tok_decode(tok, e.ids, e.len, true, &text) == VP_OK)) break;
        squeeze(line, want, sizeof want);
        squeeze(text, got, sizeof got);
        if (strcmp(want, got) != 0 && bad++ == 0) th_diag("line %d decodes to \"%s\"", lines, text);
        free(text);
    }
    fclose(f);
    th_diag("%d lines, %d tokens", lines, tokens);
    CHECK(lines == SENTENCES);
    CHECKF(unk == 0, "%d [UNK] tokens in the corpus", unk);
    CHECKF(bad == 0, "%d lines do not decode to their lowercase text", bad);
    tok_encoding_free(&e);
    tok_tokenizer_free(tok);
}

struct row {
    char label[16], relation[16], pair[64];
};

/* The value of "key": "..." in a JSONL line (json.dumps writes the words of
 * this task without escapes). */
static bool field(const char *line, const char *key, char *out, size_t cap) {
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *s = strstr(line, pat);
    if (!s) return false;
    s += strlen(pat);
    const char *end = strchr(s, '"');
    if (!end || (size_t)(end - s) >= cap) return false;
    memcpy(out, s, (size_t)(end - s));
    out[end - s] = 0;
    return true;
}

static int read_split(const char *name, struct row *rows) {
    char path[128], line[1024], text[512];
    snprintf(path, sizeof path, "%s/task/%s.jsonl", dir, name);
    FILE *f = fopen(path, "r");
    if (!CHECKF(f != NULL, "cannot open %s", path)) return -1;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (!CHECKF(n < MAX_ROWS, "%s has more than %d rows", name, MAX_ROWS)) break;
        struct row *r = &rows[n];
        if (!CHECKF(field(line, "text", text, sizeof text) && field(line, "label", r->label, sizeof r->label) &&
                        field(line, "relation", r->relation, sizeof r->relation) &&
                        field(line, "pair", r->pair, sizeof r->pair),
                    "%s line %d lacks text/label/relation/pair: %s", name, n + 1, line))
            break;
        n++;
    }
    fclose(f);
    return n;
}

static void check_balance(const char *name, const struct row *rows, int n) {
    static const char *const relations[] = {"eat", "tool", "weather", "habitat"};
    int plausible = 0;
    for (int i = 0; i < n; i++) {
        bool yes = strcmp(rows[i].label, "plausible") == 0;
        CHECKF(yes || strcmp(rows[i].label, "implausible") == 0, "%s: label \"%s\"", name, rows[i].label);
        plausible += yes;
    }
    /* The script alternates labels within each relation: balance is exact
     * up to rounding. */
    CHECKF(abs(2 * plausible - n) <= 4, "%s: %d of %d plausible", name, plausible, n);
    for (int k = 0; k < 4; k++) {
        int count = 0, yes = 0;
        for (int i = 0; i < n; i++)
            if (strcmp(rows[i].relation, relations[k]) == 0)
                count++, yes += strcmp(rows[i].label, "plausible") == 0;
        CHECKF(count >= n / 5 && abs(2 * yes - count) <= 2, "%s: relation %s has %d rows, %d plausible", name,
               relations[k], count, yes);
    }
}

static void test_task_splits(void) {
    if (!make_data()) return;
    struct row *train = calloc(MAX_ROWS, sizeof *train), *dev = calloc(MAX_ROWS, sizeof *dev);
    int nt = read_split("train", train), nd = read_split("dev", dev);
    CHECKF(nt == TRAIN, "train has %d rows", nt);
    CHECKF(nd == DEV, "dev has %d rows", nd);
    if (nt == TRAIN && nd == DEV) {
        check_balance("train", train, nt);
        check_balance("dev", dev, nd);
        int shared = 0;
        for (int i = 0; i < nd; i++)
            for (int k = 0; k < nt; k++)
                if (strcmp(dev[i].pair, train[k].pair) == 0 && shared++ == 0)
                    th_diag("dev pair %s is in train", dev[i].pair);
        CHECKF(shared == 0, "%d dev rows use a pair that train uses", shared);
    }
    free(train);
    free(dev);
}

static void test_deterministic(void) {
    if (!make_data()) return;
    sh("python3 '%s' --corpus '%s/again.txt' --task '%s/again' --sentences %d --seed 5 --train %d --dev %d && "
       "cmp -s '%s/corpus.txt' '%s/again.txt' && cmp -s '%s/task/dev.jsonl' '%s/again/dev.jsonl' && "
       "cmp -s '%s/task/train.jsonl' '%s/again/train.jsonl'",
       corpus_script, dir, dir, SENTENCES, TRAIN, DEV, dir, dir, dir, dir, dir, dir);
    sh("python3 '%s' '%s/again.txt' '%s/tok2' > /dev/null && cmp -s '%s/tok/tokenizer.json' '%s/tok2/tokenizer.json'",
       tokenizer_script, dir, dir, dir, dir);
}

int main(int argc, char **argv) {
    static const struct th_case cases[] = {
        TH_CASE(test_tokenizer_shape),
        TH_CASE(test_corpus_round_trip),
        TH_CASE(test_task_splits),
        TH_CASE(test_deterministic),
    };
    if (argc < 3) {
        fprintf(stderr, "usage: %s make-corpus.py make-tokenizer.py [case]\n", argv[0]);
        return 2;
    }
    corpus_script = argv[1];
    tokenizer_script = argv[2];
    snprintf(dir, sizeof dir, "/tmp/vkpeft-bundled-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    argv[2] = argv[0];
    int rc = th_main(cases, sizeof cases / sizeof cases[0], argc - 2, argv + 2);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
