/* Causal-LM and seq2seq batches from JSONL files the test writes, with a
 * tokenizer.json written beside them: a WordLevel vocabulary
 *     [PAD] 0, [UNK] 1, [BOS] 2, [EOS] 3, a 4, b 5, c 6, d 7, e 8, f 9, g 10, h 11
 * split at whitespace, in three variants: no template (GPT-2-like: HF adds no
 * BOS), "[BOS] $A" (LLaMA-like) and "[BOS] $A [EOS]" (BART-like). Every
 * expected row below is worked by hand from the rules in lmdata.h. */
#define _POSIX_C_SOURCE 200809L
#include "arch.h"
#include "harness.h"
#include "lmdata.h"
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { NONE = -100 }; /* LM_IGNORE_INDEX, spelled short for the tables */

static char dir[64];

static const char *temp_path(const char *name) {
    static char path[4][160];
    static int k;
    k = (k + 1) % 4;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/vkpeft-lmdata-%ld", (long)getpid());
        mkdir(dir, 0700);
    }
    snprintf(path[k], sizeof path[k], "%s/%s", dir, name);
    return path[k];
}

static const char *write_file(const char *name, const char *text) {
    const char *path = temp_path(name);
    FILE *f = fopen(path, "w");
    if (!f) {
        FAIL("cannot write %s", path);
        return path;
    }
    fputs(text, f);
    fclose(f);
    return path;
}

enum template { TPL_NONE, TPL_BOS, TPL_BOS_EOS };

#define ADDED(id, name) "{\"id\":" #id ",\"content\":\"" name "\",\"single_word\":false,\"lstrip\":false," \
                        "\"rstrip\":false,\"normalized\":false,\"special\":true}"
#define SPECIAL(name, id) "\"" name "\":{\"id\":\"" name "\",\"ids\":[" #id "],\"tokens\":[\"" name "\"]}"

/* Writes tokenizer.json and tokenizer_config.json into a folder of their own
 * and loads it. without_pad: no [PAD] token at all. */
static struct tok_tokenizer *tokenizer(enum template tpl, bool without_pad) {
    char sub[32];
    snprintf(sub, sizeof sub, "tok-%d-%d", (int)tpl, (int)without_pad);
    const char *folder = temp_path(sub);
    mkdir(folder, 0700);
    char path[200];
    snprintf(path, sizeof path, "%s/tokenizer.json", folder);
    FILE *f = fopen(path, "w");
    if (!f) {
        FAIL("cannot write %s", path);
        return NULL;
    }
    fprintf(f, "{\"version\":\"1.0\",\"added_tokens\":[%s" ADDED(1, "[UNK]") "," ADDED(2, "[BOS]") ","
            ADDED(3, "[EOS]") "],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"},",
            without_pad ? "" : ADDED(0, "[PAD]") ",");
    if (tpl == TPL_NONE)
        fputs("\"post_processor\":null,", f);
    else
        fprintf(f, "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
                "{\"SpecialToken\":{\"id\":\"[BOS]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}%s],"
                "\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
                "\"special_tokens\":{" SPECIAL("[BOS]", 2) "," SPECIAL("[EOS]", 3) "}},",
                tpl == TPL_BOS_EOS ? ",{\"SpecialToken\":{\"id\":\"[EOS]\",\"type_id\":0}}" : "");
    fprintf(f, "\"decoder\":null,\"model\":{\"type\":\"WordLevel\",\"unk_token\":\"[UNK]\",\"vocab\":{%s"
            "\"[UNK]\":1,\"[BOS]\":2,\"[EOS]\":3,\"a\":4,\"b\":5,\"c\":6,\"d\":7,\"e\":8,\"f\":9,\"g\":10,"
            "\"h\":11}}}", without_pad ? "" : "\"[PAD]\":0,");
    fclose(f);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", folder);
    f = fopen(path, "w");
    if (!f) {
        FAIL("cannot write %s", path);
        return NULL;
    }
    fprintf(f, "{\"bos_token\":\"[BOS]\",\"eos_token\":\"[EOS]\"%s}", without_pad ? "" : ",\"pad_token\":\"[PAD]\"");
    fclose(f);
    struct tok_tokenizer *tok = NULL;
    CHECKF(tok_tokenizer_load(folder, &tok) == VP_OK, "%s", vp_last_error());
    return tok;
}

static struct lm_data *open_data(const char *path, const struct lm_data_options *o) {
    struct lm_data *d = NULL;
    vp_status s = lm_data_open(path, o, &d);
    CHECKF(s == VP_OK, "open %s: %s: %s", path, vp_status_name(s), vp_last_error());
    return d;
}

static bool next_batch(struct lm_data *d, struct lm_batch *b, int line) {
    bool done = true;
    vp_status s = lm_data_next(d, b, &done);
    th_check(s == VP_OK, __FILE__, line, "next: %s: %s", vp_status_name(s), vp_last_error());
    th_check(!done, __FILE__, line, "next: done early");
    return s == VP_OK && !done;
}
#define NEXT(d, b) next_batch(d, b, __LINE__)

static void expect_done(struct lm_data *d, struct lm_batch *b, int line) {
    bool done = false;
    vp_status s = lm_data_next(d, b, &done);
    th_check(s == VP_OK && done && b->B == 0, __FILE__, line, "want the end: %s, done %d, B %d (%s)",
             vp_status_name(s), done, b->B, vp_last_error());
}
#define DONE(d, b) expect_done(d, b, __LINE__)

static void expect_ints(const char *what, const int32_t *got, const int32_t *want, int n, int line) {
    bool same = true;
    for (int i = 0; i < n; i++) same = same && got[i] == want[i];
    if (same) return;
    char g[600] = "", w[600] = "";
    for (int i = 0; i < n; i++) {
        snprintf(g + strlen(g), sizeof g - strlen(g), " %d", got[i]);
        snprintf(w + strlen(w), sizeof w - strlen(w), " %d", want[i]);
    }
    th_check(false, __FILE__, line, "%s: got [%s ], want [%s ]", what, g, w);
}

static void expect_mask(const char *what, const uint8_t *got, const char *want, int line) {
    const int n = (int)strlen(want);
    bool same = true;
    for (int i = 0; i < n; i++) same = same && got[i] == (uint8_t)(want[i] - '0');
    if (same) return;
    char g[300] = "";
    for (int i = 0; i < n && i < 299; i++) g[i] = (char)('0' + got[i]);
    th_check(false, __FILE__, line, "%s: got %s, want %s", what, g, want);
}

#define ROWS(...) (const int32_t[]){__VA_ARGS__}
/* One batch against (B,T) ids, labels and a mask string of B*T digits. */
#define EXPECT_CAUSAL(b, B_, T_, ids_, labels_, mask_)                                                   \
    do {                                                                                               \
        if (CHECKF((b)->B == (B_) && (b)->T == (T_), "shape %d x %d, want %d x %d", (b)->B, (b)->T, B_, T_)) { \
            expect_ints("ids", (b)->ids, ids_, (B_) * (T_), __LINE__);                                 \
            expect_ints("labels", (b)->labels, labels_, (B_) * (T_), __LINE__);                        \
            expect_mask("mask", (b)->mask, mask_, __LINE__);                                           \
        }                                                                                              \
    } while (0)

static void expect_error(const char *path, const struct lm_data_options *o, const char *needle1,
                         const char *needle2, int line) {
    struct lm_data *d = NULL;
    vp_status s = lm_data_open(path, o, &d);
    struct lm_batch b = {0};
    bool done = false;
    while (s == VP_OK && !done) s = lm_data_next(d, &b, &done);
    th_check(s == VP_ERROR_BAD_INPUT, __FILE__, line, "%s: %s, want VP_ERROR_BAD_INPUT", path, vp_status_name(s));
    char where[200];
    snprintf(where, sizeof where, "%s:%s", path, needle1);
    th_check(strstr(vp_last_error(), where) && strstr(vp_last_error(), needle2), __FILE__, line,
             "message \"%s\" lacks \"%s\" or \"%s\"", vp_last_error(), where, needle2);
    lm_batch_finish(&b);
    lm_data_close(d);
}
#define EXPECT_ERROR(path, o, at, needle) expect_error(path, o, at, needle, __LINE__)

/* ---- causal LM ------------------------------------------------------------------------- */

/* GPT-2-like (no template): no BOS, EOS appended, right padding with [PAD],
 * labels = ids with -100 on padding. */
static void text_examples(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_NONE, false);
    if (!tok) return;
    const char *path = write_file("text.jsonl", "{\"text\":\"a b c\"}\n{\"text\":\"d e\",\"other\":1}\n\n{\"text\":\"f\"}");
    struct lm_data_options o = {.tokenizer = tok, .max_len = 8, .batch = 2};
    struct lm_data *d = open_data(path, &o);
    struct lm_batch b = {0};
    if (d) {
        struct lm_data_ids ids = lm_data_ids(d);
        CHECK(!ids.add_bos && ids.add_eos && ids.bos == 2 && ids.eos == 3 && ids.pad == 0);
        if (NEXT(d, &b)) {
            EXPECT_CAUSAL(&b, 2, 4, ROWS(4, 5, 6, 3, /**/ 7, 8, 3, 0), ROWS(4, 5, 6, 3, /**/ 7, 8, 3, NONE),
                          "11111110");
            CHECK(b.loss_tokens == 7 && b.line[0] == 1 && b.line[1] == 2);
        }
        if (NEXT(d, &b)) { /* the short last batch; the blank line 3 is skipped */
            EXPECT_CAUSAL(&b, 1, 2, ROWS(9, 3), ROWS(9, 3), "11");
            CHECK(b.line[0] == 4);
        }
        DONE(d, &b);
        CHECK(lm_data_examples(d) == 3 && lm_data_skipped(d) == 0);
        /* a new epoch reads the same rows again */
        CHECK(lm_data_rewind(d, 1) == VP_OK);
        if (NEXT(d, &b)) CHECK(b.B == 2 && b.ids[0] == 4 && b.ids[4] == 7);
    }
    lm_data_close(d);
    /* add_eos off, add_bos on (GPT-2's <|endoftext|> as BOS on request) */
    o.add_eos = LM_OFF;
    o.add_bos = LM_ON;
    d = open_data(path, &o);
    if (d && NEXT(d, &b))
        EXPECT_CAUSAL(&b, 2, 4, ROWS(2, 4, 5, 6, /**/ 2, 7, 8, 0), ROWS(2, 4, 5, 6, /**/ 2, 7, 8, NONE), "11111110");
    lm_data_close(d);
    lm_batch_finish(&b);
    tok_tokenizer_free(tok);
}

/* LLaMA-like template "[BOS] $A": AUTO adds BOS; LM_OFF drops it. */
static void template_bos(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_BOS, false);
    if (!tok) return;
    const char *path = write_file("bos.jsonl", "{\"text\":\"a b c\"}\n");
    struct lm_data_options o = {.tokenizer = tok, .max_len = 8, .batch = 2};
    struct lm_batch b = {0};
    struct lm_data *d = open_data(path, &o);
    if (d) CHECK(lm_data_ids(d).add_bos);
    if (d && NEXT(d, &b)) EXPECT_CAUSAL(&b, 1, 5, ROWS(2, 4, 5, 6, 3), ROWS(2, 4, 5, 6, 3), "11111");
    lm_data_close(d);
    o.add_bos = LM_OFF;
    d = open_data(path, &o);
    if (d && NEXT(d, &b)) EXPECT_CAUSAL(&b, 1, 4, ROWS(4, 5, 6, 3), ROWS(4, 5, 6, 3), "1111");
    lm_data_close(d);
    /* config.json's ids win over the tokenizer's */
    struct model_arch arch = {.bos_token_id = 11, .eos_token_id = 10, .decoder_start_token_id = -1};
    o.add_bos = LM_ON;
    o.arch = &arch;
    d = open_data(path, &o);
    if (d && NEXT(d, &b)) EXPECT_CAUSAL(&b, 1, 5, ROWS(11, 4, 5, 6, 10), ROWS(11, 4, 5, 6, 10), "11111");
    lm_data_close(d);
    lm_batch_finish(&b);
    tok_tokenizer_free(tok);
}

/* Loss on the completion only: -100 on [BOS] and the prompt. */
static void prompt_completion(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_BOS, false);
    if (!tok) return;
    const char *path = write_file("pc.jsonl", "{\"prompt\":\"a b\",\"completion\":\"c d\"}\n{\"text\":\"e\"}\n"
                                              "{\"prompt\":\"\",\"completion\":\"f\"}\n");
    struct lm_data_options o = {.tokenizer = tok, .max_len = 16, .batch = 3};
    struct lm_batch b = {0};
    struct lm_data *d = open_data(path, &o);
    if (d && NEXT(d, &b)) {
        EXPECT_CAUSAL(&b, 3, 6,
                      ROWS(2, 4, 5, 6, 7, 3, /**/ 2, 8, 3, 0, 0, 0, /**/ 2, 9, 3, 0, 0, 0),
                      ROWS(NONE, NONE, NONE, 6, 7, 3, /**/ 2, 8, 3, NONE, NONE, NONE, /**/ NONE, 9, 3, NONE, NONE, NONE),
                      "111111111000111000");
        CHECK(b.loss_tokens == 8);
    }
    lm_data_close(d);
    /* field names are options */
    path = write_file("qa.jsonl", "{\"question\":\"a\",\"answer\":\"b\"}\n");
    o.prompt_field = "question";
    o.completion_field = "answer";
    o.add_bos = LM_OFF;
    d = open_data(path, &o);
    if (d && NEXT(d, &b)) EXPECT_CAUSAL(&b, 1, 3, ROWS(4, 5, 3), ROWS(NONE, 5, 3), "111");
    lm_data_close(d);
    lm_batch_finish(&b);
    tok_tokenizer_free(tok);
}

/* Right truncation to max_len (EOS cut); a completion cut away is a bad line. */
static void truncation(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_NONE, false);
    if (!tok) return;
    const char *path = write_file("trunc.jsonl", "{\"text\":\"a b c d e\"}\n{\"prompt\":\"a b\",\"completion\":\"c d\"}\n");
    struct lm_data_options o = {.tokenizer = tok, .max_len = 3, .batch = 2};
    struct lm_batch b = {0};
    struct lm_data *d = open_data(path, &o);
    if (d && NEXT(d, &b))
        EXPECT_CAUSAL(&b, 2, 3, ROWS(4, 5, 6, /**/ 4, 5, 6), ROWS(4, 5, 6, /**/ NONE, NONE, 6), "111111");
    lm_data_close(d);
    o.max_len = 2; /* the prompt fills the row: nothing to learn from line 2 */
    EXPECT_ERROR(path, &o, "2:", "\"completion\"");
    o.skip_bad = true;
    d = open_data(path, &o);
    if (d && NEXT(d, &b)) EXPECT_CAUSAL(&b, 1, 2, ROWS(4, 5), ROWS(4, 5), "11");
    if (d) DONE(d, &b);
    if (d) CHECK(lm_data_skipped(d) == 1 && lm_data_examples(d) == 1);
    lm_data_close(d);
    lm_batch_finish(&b);
    tok_tokenizer_free(tok);
}

/* Rows of exactly max_len across example boundaries, labels carried along:
 *   "a b c" -> 4 5 6 3 | "d e" -> 7 8 3 | f + "g h" -> 9 10 11 3 (-100 on 9) | "a" -> 4 3
 * stream 4 5 6 3 7 8 3 9 10 11 3 4 3 in rows of 4, the last padded. */
static void packing(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_NONE, false);
    if (!tok) return;
    const char *path = write_file("pack.jsonl", "{\"text\":\"a b c\"}\n{\"text\":\"d e\"}\n"
                                                "{\"prompt\":\"f\",\"completion\":\"g h\"}\n{\"text\":\"a\"}\n");
    struct lm_data_options o = {.tokenizer = tok, .max_len = 4, .batch = 2, .pack = true};
    struct lm_batch b = {0};
    struct lm_data *d = open_data(path, &o);
    if (d && NEXT(d, &b)) {
        EXPECT_CAUSAL(&b, 2, 4, ROWS(4, 5, 6, 3, /**/ 7, 8, 3, 9), ROWS(4, 5, 6, 3, /**/ 7, 8, 3, NONE), "11111111");
        CHECK(b.line[0] == 1 && b.line[1] == 2 && b.loss_tokens == 7);
    }
    if (d && NEXT(d, &b)) {
        EXPECT_CAUSAL(&b, 2, 4, ROWS(10, 11, 3, 4, /**/ 3, 0, 0, 0), ROWS(10, 11, 3, 4, /**/ 3, NONE, NONE, NONE),
                      "11111000");
        CHECK(b.line[0] == 3 && b.line[1] == 4);
    }
    if (d) DONE(d, &b);
    lm_data_close(d);
    /* a row longer than any example: several examples per row, no truncation */
    o.max_len = 16;
    o.batch = 1;
    d = open_data(path, &o);
    if (d && NEXT(d, &b))
        EXPECT_CAUSAL(&b, 1, 16, ROWS(4, 5, 6, 3, 7, 8, 3, 9, 10, 11, 3, 4, 3, 0, 0, 0),
                      ROWS(4, 5, 6, 3, 7, 8, 3, NONE, 10, 11, 3, 4, 3, NONE, NONE, NONE), "1111111111111000");
    if (d) DONE(d, &b);
    lm_data_close(d);
    lm_batch_finish(&b);
    tok_tokenizer_free(tok);
}

/* Without a pad token, padding uses EOS (mask 0, labels -100). */
static void pad_with_eos(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_NONE, true);
    if (!tok) return;
    const char *path = write_file("nopad.jsonl", "{\"text\":\"a b c\"}\n{\"text\":\"d\"}\n");
    struct lm_data_options o = {.tokenizer = tok, .max_len = 8, .batch = 2};
    struct lm_batch b = {0};
    struct lm_data *d = open_data(path, &o);
    if (d) CHECK(lm_data_ids(d).pad == 3);
    if (d && NEXT(d, &b))
        EXPECT_CAUSAL(&b, 2, 4, ROWS(4, 5, 6, 3, /**/ 7, 3, 3, 3), ROWS(4, 5, 6, 3, /**/ 7, 3, NONE, NONE), "11111100");
    lm_data_close(d);
    lm_batch_finish(&b);
    tok_tokenizer_free(tok);
}

/* ---- seq2seq ------------------------------------------------------------------------------ */

#define EXPECT_ENC(b, S_, ids_, mask_)                                                                       \
    do {                                                                                                     \
        if (CHECKF((b)->S == (S_), "S %d, want %d", (b)->S, S_)) {                                         \
            expect_ints("encoder ids", (b)->enc_ids, ids_, (b)->B * (S_), __LINE__);                       \
            expect_mask("encoder mask", (b)->enc_mask, mask_, __LINE__);                                   \
        }                                                                                                    \
    } while (0)

/* BART-like: <s> x </s> on both sides, decoder input = shift_tokens_right(labels, pad 0, start).
 *   "a b c" -> 2 4 5 6 3        "d"     -> labels 2 7 3         decoder 3 2 7 | 3 0 (pad)
 *   "e"     -> 2 8 3 (pad 0 0)  "f g h" -> labels 2 9 10 11 3   decoder 3 2 9 10 11 */
static void seq2seq(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_BOS_EOS, false);
    if (!tok) return;
    const char *path = write_file("s2s.jsonl", "{\"source\":\"a b c\",\"target\":\"d\"}\n"
                                               "{\"source\":\"e\",\"target\":\"f g h\"}\n");
    struct model_arch arch = {.bos_token_id = 2, .eos_token_id = 3, .decoder_start_token_id = 3};
    struct lm_data_options o = {.task = LM_TASK_SEQ2SEQ, .tokenizer = tok, .arch = &arch, .max_len = 8, .batch = 2};
    struct lm_batch b = {0};
    struct lm_data *d = open_data(path, &o);
    if (d && NEXT(d, &b)) {
        EXPECT_ENC(&b, 5, ROWS(2, 4, 5, 6, 3, /**/ 2, 8, 3, 0, 0), "1111111100");
        EXPECT_CAUSAL(&b, 2, 5, ROWS(3, 2, 7, 3, 0, /**/ 3, 2, 9, 10, 11),
                      ROWS(2, 7, 3, NONE, NONE, /**/ 2, 9, 10, 11, 3), "1110011111");
        CHECK(b.loss_tokens == 8);
    }
    if (d) DONE(d, &b);
    lm_data_close(d);
    /* another decoder start; targets truncated to 3 with specials kept */
    arch.decoder_start_token_id = 11;
    o.max_target_len = 3;
    d = open_data(path, &o);
    if (d && NEXT(d, &b))
        EXPECT_CAUSAL(&b, 2, 3, ROWS(11, 2, 7, /**/ 11, 2, 9), ROWS(2, 7, 3, /**/ 2, 9, 3), "111111");
    lm_data_close(d);
    /* mBART-50: the target language id replaces the leading <s>; without
     * config.json the decoder starts with EOS */
    o.arch = NULL;
    o.max_target_len = 0;
    o.target_lang = true;
    o.target_lang_id = 10;
    d = open_data(path, &o);
    if (d) CHECK(lm_data_ids(d).decoder_start == 3);
    if (d && NEXT(d, &b))
        EXPECT_CAUSAL(&b, 2, 5, ROWS(3, 10, 7, 3, 0, /**/ 3, 10, 9, 10, 11),
                      ROWS(10, 7, 3, NONE, NONE, /**/ 10, 9, 10, 11, 3), "1110011111");
    lm_data_close(d);
    /* a missing target */
    path = write_file("s2s-bad.jsonl", "{\"source\":\"a\",\"target\":\"b\"}\n{\"source\":\"a\",\"tgt\":\"b\"}\n");
    o.target_lang = false;
    EXPECT_ERROR(path, &o, "2:", "\"target\"");
    lm_batch_finish(&b);
    tok_tokenizer_free(tok);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void bad_lines(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_NONE, false);
    if (!tok) return;
    struct lm_data_options o = {.tokenizer = tok, .max_len = 8, .batch = 4};
    static const struct {
        const char *line, *field;
    } bad[] = {
        {"{\"txt\":\"a\"}", "field \"text\" (or \"prompt\" and \"completion\") is missing"},
        {"{\"text\":5}", "field \"text\" is not a string"},
        {"[\"a\"]", "not a JSON object"},
        {"{\"text\":\"a\"", "not a JSON object"},
        {"{\"text\":\"\"}", "field \"text\" is empty after tokenization"},
        {"{\"text\":\"  \"}", "field \"text\" is empty after tokenization"},
        {"{\"prompt\":\"a\"}", "field \"completion\" is missing"},
        {"{\"prompt\":\"a\",\"completion\":\"\"}", "field \"completion\" is empty after tokenization"},
        {"{\"prompt\":1,\"completion\":\"a\"}", "field \"prompt\" is not a string"},
        {"{\"text\":\"a \xff\"}", "\"text\""}, /* invalid UTF-8 */
    };
    char text[4096] = "{\"text\":\"a\"}\n";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char one[256];
        snprintf(one, sizeof one, "{\"text\":\"a\"}\n\n%s\n{\"text\":\"b\"}\n", bad[i].line);
        EXPECT_ERROR(write_file("bad.jsonl", one), &o, "3:", bad[i].field);
        strcat(text, bad[i].line);
        strcat(text, "\n");
    }
    strcat(text, "{\"text\":\"b c\"}\n");
    const char *path = write_file("bad-all.jsonl", text);
    o.skip_bad = true;
    struct lm_batch b = {0};
    struct lm_data *d = open_data(path, &o);
    if (d && NEXT(d, &b)) EXPECT_CAUSAL(&b, 2, 3, ROWS(4, 3, 0, /**/ 5, 6, 3), ROWS(4, 3, NONE, /**/ 5, 6, 3), "110111");
    if (d) DONE(d, &b);
    if (d) CHECKF(lm_data_skipped(d) == 10 && lm_data_examples(d) == 2, "skipped %llu, examples %llu",
                  (unsigned long long)lm_data_skipped(d), (unsigned long long)lm_data_examples(d));
    lm_data_close(d);
    /* options */
    o.max_len = 0;
    struct lm_data *none = NULL;
    CHECK(lm_data_open(path, &o, &none) == VP_ERROR_INVALID_ARGUMENT && !none);
    o.max_len = 8;
    CHECK(lm_data_open(temp_path("missing.jsonl"), &o, &none) == VP_ERROR_IO && !none);
    lm_batch_finish(&b);
    tok_tokenizer_free(tok);
}

/* ---- streaming and order -------------------------------------------------------------------- */

/* n random examples (text or prompt/completion over a..h); the ids and labels
 * each packs to go to want/want_labels (EOS appended, no BOS). */
static const char *random_file(const char *name, int n, int32_t *want, int32_t *want_labels, int *len) {
    static const char *const words[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    uint64_t rng = 42;
    const char *path = temp_path(name);
    FILE *f = fopen(path, "w");
    if (!f) return path;
    *len = 0;
    for (int i = 0; i < n; i++) {
        const int np = th_rand_u64(&rng) % 2 ? (int)(th_rand_u64(&rng) % 5) : -1;
        const int nc = 1 + (int)(th_rand_u64(&rng) % 12);
        fputs(np >= 0 ? "{\"prompt\":\"" : "{\"text\":\"", f);
        for (int k = 0; k < np; k++) {
            const int w = (int)(th_rand_u64(&rng) % 8);
            fprintf(f, "%s%s", k ? " " : "", words[w]);
            want[*len] = 4 + w, want_labels[(*len)++] = NONE;
        }
        if (np >= 0) fputs("\",\"completion\":\"", f);
        for (int k = 0; k < nc; k++) {
            const int w = (int)(th_rand_u64(&rng) % 8);
            fprintf(f, "%s%s", k ? " " : "", words[w]);
            want[*len] = want_labels[*len] = 4 + w, (*len)++;
        }
        fputs("\"}\n", f);
        want[*len] = want_labels[*len] = 3, (*len)++;
    }
    fclose(f);
    return path;
}

/* Packs the whole file into one stream of ids and labels (padding dropped). */
static int pack_all(const char *path, struct lm_data_options *o, int32_t *ids, int32_t *labels, int cap) {
    struct lm_data *d = open_data(path, o);
    struct lm_batch b = {0};
    int n = 0;
    bool done = false;
    while (d && !done) {
        vp_status s = lm_data_next(d, &b, &done);
        if (!CHECKF(s == VP_OK, "%s", vp_last_error())) break;
        for (int r = 0; r < b.B; r++)
            for (int t = 0; t < b.T && n < cap; t++) {
                const size_t i = (size_t)r * b.T + t;
                CHECK(b.mask[i] || t > 0); /* only a row's tail pads */
                if (b.mask[i]) ids[n] = b.ids[i], labels[n++] = b.labels[i];
            }
    }
    lm_batch_finish(&b);
    lm_data_close(d);
    return n;
}

/* A file much larger than the reader's buffer packs to the same rows read
 * 1 byte, 7 bytes or 64 KiB at a time, and those rows hold exactly the
 * concatenated examples. */
static void streaming(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_NONE, false);
    if (!tok) return;
    enum { N = 400, CAP = N * 20 };
    int32_t *want = malloc(CAP * sizeof *want), *want_labels = malloc(CAP * sizeof *want);
    int32_t *ids = malloc(CAP * sizeof *ids), *labels = malloc(CAP * sizeof *labels);
    int n_want = 0;
    const char *path = random_file("stream.jsonl", N, want, want_labels, &n_want);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size > 7 * 1000);
    static const size_t chunks[] = {1, 7, 0};
    for (size_t c = 0; c < 3; c++) {
        struct lm_data_options o = {.tokenizer = tok, .max_len = 13, .batch = 3, .pack = true,
                                    .read_chunk = chunks[c]};
        memset(ids, 0xff, CAP * sizeof *ids);
        const int n = pack_all(path, &o, ids, labels, CAP);
        CHECKF(n == n_want, "chunk %zu: %d tokens, want %d", chunks[c], n, n_want);
        if (n == n_want) {
            expect_ints("packed ids", ids, want, n, __LINE__);
            expect_ints("packed labels", labels, want_labels, n, __LINE__);
        }
    }
    free(want), free(want_labels), free(ids), free(labels);
    tok_tokenizer_free(tok);
}

/* Reads the order of lines with batch 1, unpacked. */
static void line_order(const char *path, struct lm_data_options *o, uint64_t epoch, uint64_t *lines, int n) {
    struct lm_data *d = open_data(path, o);
    struct lm_batch b = {0};
    if (d && epoch) CHECK(lm_data_rewind(d, epoch) == VP_OK);
    for (int i = 0; d && i < n; i++) lines[i] = NEXT(d, &b) ? b.line[0] : 0;
    if (d) DONE(d, &b);
    lm_batch_finish(&b);
    lm_data_close(d);
}

/* A seeded shuffle window: a permutation, the same for the same seed and
 * epoch, another for another epoch; window 0 keeps file order. */
static void shuffle(void) {
    struct tok_tokenizer *tok = tokenizer(TPL_NONE, false);
    if (!tok) return;
    enum { N = 24 };
    char text[N * 20] = "";
    for (int i = 0; i < N; i++) strcat(text, "{\"text\":\"a b\"}\n");
    const char *path = write_file("shuffle.jsonl", text);
    struct lm_data_options o = {.tokenizer = tok, .max_len = 8, .batch = 1};
    uint64_t a[N], b[N], c[N], plain[N];
    line_order(path, &o, 0, plain, N);
    o.shuffle_window = 5;
    o.seed = 7;
    line_order(path, &o, 0, a, N);
    line_order(path, &o, 0, b, N);
    line_order(path, &o, 1, c, N);
    bool seen[N + 1] = {false}, same_ab = true, same_ac = true, file_order = true, plain_order = true;
    for (int i = 0; i < N; i++) {
        if (a[i] >= 1 && a[i] <= N) seen[a[i]] = true;
        same_ab = same_ab && a[i] == b[i];
        same_ac = same_ac && a[i] == c[i];
        file_order = file_order && a[i] == (uint64_t)i + 1;
        plain_order = plain_order && plain[i] == (uint64_t)i + 1;
        /* a window of 5 never hands out a line more than 4 places early */
        CHECKF(a[i] <= (uint64_t)i + 5, "line %llu at %d", (unsigned long long)a[i], i);
    }
    for (int i = 1; i <= N; i++) CHECKF(seen[i], "line %d never came", i);
    CHECK(same_ab && !same_ac && !file_order && plain_order);
    tok_tokenizer_free(tok);
}

static void cleanup(void) {
    if (!dir[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

TH_MAIN(TH_CASE(text_examples), TH_CASE(template_bos), TH_CASE(prompt_completion), TH_CASE(truncation),
        TH_CASE(packing), TH_CASE(pad_with_eos), TH_CASE(seq2seq), TH_CASE(bad_lines), TH_CASE(streaming),
        TH_CASE(shuffle), TH_CASE(cleanup))
