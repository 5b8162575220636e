/* The streaming dataset readers: JSONL, CSV (RFC 4180 quoting) and TSV,
 * text through a tokenizer, label names, and the training index's label
 * set. */
#include "csv.h"
#include "dataset.h"
#include "harness.h"
#include "tokenizer.h"
#include "trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static void write_named(const char *ext, const char *text) {
    snprintf(path, sizeof path, "/tmp/vkpeft-ds-%ld.%s", (long)getpid(), ext);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void write_file(const char *text) { write_named("jsonl", text); }

static const struct io_dataset_options opts = {.vocab_size = 100, .num_labels = 3, .labels_required = true};

static void reads_examples_in_order(void) {
    write_file("{\"input_ids\": [0, 5, 2], \"label\": 1}\n"
               "\n"
               "{\"label\": 2, \"input_ids\": [7], \"extra\": \"ignored\"}\n"
               "{\"input_ids\": [1,2,3,4,5,6], \"label\": 0}");  /* no final newline */
    struct io_dataset *d;
    if (!CHECK(io_dataset_open(path, &opts, &d) == VP_OK)) return;
    struct io_example ex;
    bool done = false;
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && !done);
    CHECK(ex.len == 3 && ex.ids[1] == 5 && ex.label == 1 && ex.line == 1);
    uint64_t off, line;
    io_dataset_position(d, &off, &line);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && !done);
    CHECK(ex.len == 1 && ex.ids[0] == 7 && ex.label == 2 && ex.line == 3);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && !done && ex.len == 6 && ex.line == 4);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && done);
    /* Seek back to after the first example. */
    CHECK(io_dataset_seek(d, off, line) == VP_OK);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && !done && ex.ids[0] == 7 && ex.line == 3);
    CHECK(io_dataset_rewind(d) == VP_OK);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ex.line == 1);
    io_dataset_close(d);
    struct io_dataset_options trunc = opts;
    trunc.max_len = 4;
    CHECK(io_dataset_open(path, &trunc, &d) == VP_OK);
    for (int i = 0; i < 3; i++) CHECK(io_dataset_next(d, &ex, &done) == VP_OK);
    CHECK(ex.len == 4);
    io_dataset_close(d);
    unlink(path);
}

static void expect_bad(const char *text, const char *needle) {
    write_file(text);
    struct io_dataset *d;
    if (!CHECK(io_dataset_open(path, &opts, &d) == VP_OK)) return;
    struct io_example ex;
    bool done = false;
    vp_status s = VP_OK;
    while (s == VP_OK && !done) s = io_dataset_next(d, &ex, &done);
    CHECKF(s == VP_ERROR_BAD_INPUT, "%s: %s", text, vp_status_name(s));
    CHECKF(strstr(vp_last_error(), needle) != NULL, "message '%s' lacks '%s'", vp_last_error(), needle);
    io_dataset_close(d);
}

static void bad_lines_name_file_and_line(void) {
    expect_bad("{\"input_ids\": [1], \"label\": 0}\nnot json\n", ".jsonl:2: not a JSON object");
    expect_bad("{\"input_ids\": [1], \"label\": 3}\n", ":1: \"label\" must be an integer class id in 0..2");
    expect_bad("{\"input_ids\": [1, 100], \"label\": 0}\n", "\"input_ids\"[1] must be a token id in 0..99");
    expect_bad("{\"input_ids\": [1.5], \"label\": 0}\n", "\"input_ids\"[0]");
    expect_bad("{\"input_ids\": [], \"label\": 0}\n", "non-empty list");
    expect_bad("{\"input_ids\": [1]}\n", "no \"label\" field");
    expect_bad("{\"input_ids\": [1], \"label\": \"pos\"}\n", "\"label\"");
    expect_bad("{\"input_ids\": [1], \"label\": 0}\n\n\n{\"input_ids\": \"1 2\", \"label\": 0}\n", ":4:");
    struct io_dataset *d;
    CHECK(io_dataset_open("/nonexistent.jsonl", &opts, &d) == VP_ERROR_IO);
    CHECK(strstr(vp_last_error(), "/nonexistent.jsonl") != NULL);
    unlink(path);
}

static void skip_bad_counts(void) {
    write_file("{\"input_ids\": [1], \"label\": 0}\nbroken\n{\"input_ids\": [2], \"label\": 9}\n"
               "{\"input_ids\": [3], \"label\": 1}\n");
    struct io_dataset_options o = opts;
    o.skip_bad = true;
    struct io_dataset *d;
    if (!CHECK(io_dataset_open(path, &o, &d) == VP_OK)) return;
    struct io_example ex;
    bool done = false;
    int n = 0;
    while (io_dataset_next(d, &ex, &done) == VP_OK && !done) n++;
    CHECK(n == 2 && io_dataset_skipped(d) == 2);
    io_dataset_close(d);
    unlink(path);
}

/* ------------------------------------------------------------------------
 * CSV and TSV
 * ------------------------------------------------------------------------ */

/* A mini BERT WordPiece: [CLS] A [SEP] (B [SEP] with type id 1), lower case. */
static struct tok_tokenizer *tokenizer(void) {
    static const char json[] =
        "{\"version\":\"1.0\",\"added_tokens\":["
        "{\"id\":0,\"content\":\"[PAD]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
        "{\"id\":1,\"content\":\"[UNK]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
        "{\"id\":2,\"content\":\"[CLS]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
        "{\"id\":3,\"content\":\"[SEP]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
        "\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
        "\"strip_accents\":null,\"lowercase\":true},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
        "\"post_processor\":{\"type\":\"TemplateProcessing\","
        "\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
        "{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}}],"
        "\"pair\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
        "{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}},"
        "{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":1}}],"
        "\"special_tokens\":{\"[CLS]\":{\"id\":\"[CLS]\",\"ids\":[2],\"tokens\":[\"[CLS]\"]},"
        "\"[SEP]\":{\"id\":\"[SEP]\",\"ids\":[3],\"tokens\":[\"[SEP]\"]}}},"
        "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
        "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
        "\"max_input_chars_per_word\":100,\"vocab\":{\"[PAD]\":0,\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3,"
        "\"hello\":4,\"world\":5,\"she\":6,\"said\":7,\"hi\":8,\"line\":9,\"one\":10,\"two\":11,\"plain\":12,"
        "\"quote\":13,\"inside\":14,\",\":15,\"\\\"\":16}}}";
    struct tok_tokenizer *tok = NULL;
    CHECKF(tok_tokenizer_parse(json, NULL, "test-tokenizer.json", &tok) == VP_OK, "%s", vp_last_error());
    return tok;
}

static bool ids_are(const struct io_example *ex, const int32_t *want, int n) {
    if (ex->len != n) return false;
    for (int i = 0; i < n; i++)
        if (ex->ids[i] != want[i]) return false;
    return true;
}

/* The record layer alone: quoted separators, doubled quotes, a line break
 * inside quotes, CRLF, and TSV taking quotes literally. */
static void csv_records(void) {
    write_named("csv", "a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\"two\nlines\",\n\n\"\",z\n");
    FILE *f = fopen(path, "rb");
    if (!CHECK(f != NULL)) return;
    struct io_csv_record r = {0};
    uint64_t lines;
    CHECK(io_csv_read(f, ',', true, &r, &lines) == IO_CSV_OK && lines == 1 && r.count == 2);
    CHECK(strcmp(r.fields[0], "a") == 0 && strcmp(r.fields[1], "b") == 0);
    CHECK(io_csv_read(f, ',', true, &r, &lines) == IO_CSV_OK && lines == 1 && r.count == 2);
    CHECK(strcmp(r.fields[0], "x, y") == 0 && strcmp(r.fields[1], "say \"hi\"") == 0);
    CHECK(io_csv_read(f, ',', true, &r, &lines) == IO_CSV_OK && lines == 2 && r.count == 2);
    CHECK(strcmp(r.fields[0], "two\nlines") == 0 && r.fields[1][0] == 0);
    CHECK(io_csv_read(f, ',', true, &r, &lines) == IO_CSV_OK && lines == 1 && r.blank);
    CHECK(io_csv_read(f, ',', true, &r, &lines) == IO_CSV_OK && !r.blank && r.count == 2 && r.fields[0][0] == 0);
    CHECK(io_csv_read(f, ',', true, &r, &lines) == IO_CSV_EOF);
    fclose(f);
    write_named("tsv", "say \"hi\tthere\"\tx,y\n\"open\n");
    f = fopen(path, "rb");
    CHECK(io_csv_read(f, '\t', false, &r, &lines) == IO_CSV_OK && r.count == 3);
    CHECK(strcmp(r.fields[0], "say \"hi") == 0 && strcmp(r.fields[1], "there\"") == 0 &&
          strcmp(r.fields[2], "x,y") == 0);
    CHECK(io_csv_read(f, '\t', false, &r, &lines) == IO_CSV_OK && strcmp(r.fields[0], "\"open") == 0);
    fclose(f);
    write_named("csv", "\"ok\"x,1\n\"never closed,1\nmore\n");
    f = fopen(path, "rb");
    CHECK(io_csv_read(f, ',', true, &r, &lines) == IO_CSV_AFTER_QUOTE && lines == 1);
    CHECK(io_csv_read(f, ',', true, &r, &lines) == IO_CSV_UNTERMINATED && lines == 2);
    fclose(f);
    io_csv_record_free(&r);
    unlink(path);
}

/* CSV through the reader: text tokenized, label names handed back, the
 * record's first line, positions that survive a multi-line record. */
static void csv_examples(void) {
    struct tok_tokenizer *tok = tokenizer();
    if (!tok) return;
    write_named("csv", "id,sentence,label\r\n"
                       "1,\"Hello, world\",pos\r\n"
                       "2,\"She said \"\"hi\"\"\",neg\n"
                       "3,\"line one\nline two\",pos\n"
                       "\n"
                       "4,plain \"quote\" inside,neg\n");
    struct io_dataset_options o = {.vocab_size = 17, .num_labels = 2, .labels_required = true,
                                   .tokenizer = tok, .collect_labels = true};
    struct io_dataset *d;
    if (!CHECKF(io_dataset_open(path, &o, &d) == VP_OK, "%s", vp_last_error())) goto out;
    CHECK(io_dataset_format(d) == IO_FORMAT_CSV);
    struct io_example ex;
    bool done = false;
    CHECKF(io_dataset_next(d, &ex, &done) == VP_OK && !done, "%s", vp_last_error());
    CHECK(ids_are(&ex, (const int32_t[]){2, 4, 15, 5, 3}, 5) && ex.line == 2 && ex.type_ids == NULL);
    CHECK(ex.label == -1 && ex.label_text && strcmp(ex.label_text, "pos") == 0);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ex.line == 3);
    CHECK(ids_are(&ex, (const int32_t[]){2, 6, 7, 16, 8, 16, 3}, 7) && strcmp(ex.label_text, "neg") == 0);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ex.line == 4);
    CHECK(ids_are(&ex, (const int32_t[]){2, 9, 10, 9, 11, 3}, 6));
    uint64_t off, line;
    io_dataset_position(d, &off, &line);
    CHECK(line == 5);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ex.line == 7 && !done);
    CHECK(ids_are(&ex, (const int32_t[]){2, 12, 16, 13, 16, 14, 3}, 7));
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && done);
    CHECK(io_dataset_seek(d, off, line) == VP_OK);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ex.line == 7 && ex.len == 7);
    CHECK(io_dataset_rewind(d) == VP_OK);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ex.line == 2 && ex.len == 5);
    /* With names, labels map to their index. */
    static const char *const names[] = {"neg", "pos"};
    io_dataset_set_labels(d, names, 2);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ex.label == 0 && ex.label_text == NULL);
    io_dataset_close(d);
    /* Truncation keeps the special tokens. */
    o.max_len = 4;
    CHECK(io_dataset_open(path, &o, &d) == VP_OK);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ids_are(&ex, (const int32_t[]){2, 4, 15, 3}, 4));
    io_dataset_close(d);
out:
    tok_tokenizer_free(tok);
    unlink(path);
}

/* TSV as GLUE writes it: a pair found by its column names, type ids, quotes
 * as plain characters, integer labels from digits; --format over the
 * extension. */
static void tsv_pairs(void) {
    struct tok_tokenizer *tok = tokenizer();
    if (!tok) return;
    write_named("txt", "index\tquestion\tsentence\tlabel\n"
                       "0\thello\t\"hi\" world\t1\n"
                       "1\tshe said\tline\t0\n");
    struct io_dataset_options o = {.vocab_size = 17, .num_labels = 2, .labels_required = true,
                                   .tokenizer = tok, .format = IO_FORMAT_TSV};
    struct io_dataset *d;
    if (!CHECKF(io_dataset_open(path, &o, &d) == VP_OK, "%s", vp_last_error())) goto out;
    struct io_example ex;
    bool done = false;
    CHECKF(io_dataset_next(d, &ex, &done) == VP_OK, "%s", vp_last_error());
    CHECK(ids_are(&ex, (const int32_t[]){2, 4, 3, 16, 8, 16, 5, 3}, 8) && ex.label == 1 && ex.line == 2);
    CHECK(ex.type_ids && ex.type_ids[2] == 0 && ex.type_ids[3] == 1 && ex.type_ids[7] == 1);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ex.label == 0 && ex.len == 6 && ex.line == 3);
    io_dataset_close(d);
    /* Without labels required, a missing label column is no labels. */
    write_named("tsv", "sentence\n\"hello\n");
    o = (struct io_dataset_options){.vocab_size = 17, .num_labels = 2, .tokenizer = tok};
    CHECK(io_dataset_open(path, &o, &d) == VP_OK);
    CHECK(io_dataset_next(d, &ex, &done) == VP_OK && ex.label == -1 && ids_are(&ex, (const int32_t[]){2, 16, 4, 3}, 4));
    io_dataset_close(d);
out:
    tok_tokenizer_free(tok);
    unlink(path);
}

/* Opening fails with a message naming the column that is missing. */
static void expect_open_fails(const char *ext, const char *text, const struct io_dataset_options *o,
                              const char *needle) {
    write_named(ext, text);
    struct io_dataset *d = NULL;
    vp_status s = io_dataset_open(path, o, &d);
    CHECKF(s == VP_ERROR_BAD_INPUT, "%s: %s", text, vp_status_name(s));
    CHECKF(strstr(vp_last_error(), needle) != NULL, "message '%s' lacks '%s'", vp_last_error(), needle);
    io_dataset_close(d);
}

static void header_columns(void) {
    struct io_dataset_options o = {.vocab_size = 17, .num_labels = 2, .labels_required = true};
    expect_open_fails("tsv", "sentence\tgold\nhello\t1\n", &o, "no column \"label\" in the header (its columns: sentence, gold)");
    o.label_field = "gold";
    o.text_field = "text_a";
    expect_open_fails("tsv", "sentence\tgold\nhello\t1\n", &o, "no column \"text_a\"");
    o.text_field = NULL;
    o.text_pair_field = "hypothesis";
    expect_open_fails("csv", "sentence,gold\nhello,1\n", &o, "no column \"hypothesis\"");
    o.text_pair_field = NULL;
    expect_open_fails("csv", "id,gold\n1,1\n", &o, "no text column in the header (its columns: id, gold)");
    expect_open_fails("csv", "", &o, "is empty");
    expect_open_fails("csv", "\"id,gold\n1,1\n", &o, ":1: a quoted field that starts here is never closed");
    unlink(path);
}

static void expect_bad_with(const char *ext, const char *text, const struct io_dataset_options *o,
                            const char *needle) {
    write_named(ext, text);
    struct io_dataset *d;
    if (!CHECKF(io_dataset_open(path, o, &d) == VP_OK, "%s", vp_last_error())) return;
    struct io_example ex;
    bool done = false;
    vp_status s = VP_OK;
    while (s == VP_OK && !done) s = io_dataset_next(d, &ex, &done);
    CHECKF(s == VP_ERROR_BAD_INPUT, "%s: %s", text, vp_status_name(s));
    CHECKF(strstr(vp_last_error(), needle) != NULL, "message '%s' lacks '%s'", vp_last_error(), needle);
    io_dataset_close(d);
}

static void bad_records_name_lines(void) {
    struct tok_tokenizer *tok = tokenizer();
    if (!tok) return;
    static const char *const names[] = {"neg", "pos"};
    const struct io_dataset_options o = {.vocab_size = 17, .num_labels = 2, .labels_required = true,
                                         .tokenizer = tok, .label_names = names, .label_count = 2,
                                         .label_names_source = "the delta's labels"};
    expect_bad_with("csv", "sentence,label\nhello,pos\n\"a\nb\",pos,extra\n", &o,
                    ".csv:3: 3 fields where the header has 2");
    expect_bad_with("tsv", "sentence\tlabel\nhello\tpos\nhello pos\n", &o, ".tsv:3: 1 field where the header has 2");
    expect_bad_with("csv", "sentence,label\nhello,pos\nsay \"hi\" there,pos\n\"x\"y,neg\n", &o,
                    ":4: text after a closing quote");
    expect_bad_with("csv", "sentence,label\nhello,pos\n\"unclosed,neg\nhello,pos\n", &o,
                    ":3: a quoted field that starts here is never closed");
    expect_bad_with("tsv", "sentence\tlabel\nhello\tpos\nworld\tmeh\n", &o,
                    ":3: \"label\" \"meh\" is not one of the delta's labels (neg, pos)");
    expect_bad_with("tsv", "sentence\tlabel\nhello\t2\n", &o, ":2: \"label\" must be an integer class id in 0..1");
    expect_bad_with("tsv", "sentence\tlabel\nhello\t\n", &o, ":2: no \"label\" field");
    expect_bad_with("jsonl", "{\"text\": \"hello\", \"label\": \"pos\"}\n{\"text\": 5, \"label\": \"pos\"}\n", &o,
                    ":2: \"text\" must be a string");
    expect_bad_with("jsonl", "{\"sentence1\": \"hello\", \"label\": 1}\n", &o, ":1: no \"input_ids\" list and no text field");
    struct io_dataset_options no_tok = o;
    no_tok.tokenizer = NULL;
    no_tok.no_tokenizer_hint = "model/ has no tokenizer.json";
    write_named("tsv", "sentence\tlabel\nhello\tpos\n");
    struct io_dataset *d;
    struct io_example ex;
    bool done;
    if (CHECK(io_dataset_open(path, &no_tok, &d) == VP_OK)) {
        CHECK(io_dataset_next(d, &ex, &done) == VP_ERROR_INVALID_ARGUMENT);
        CHECKF(strstr(vp_last_error(), ":2: the example is text, and there is no tokenizer to encode it: model/ has "
                      "no tokenizer.json") != NULL, "%s", vp_last_error());
        io_dataset_close(d);
    }
    /* JSONL text with label names. */
    write_named("jsonl", "{\"sentence1\": \"hello\", \"sentence2\": \"world\", \"label\": \"pos\"}\n");
    if (CHECK(io_dataset_open(path, &o, &d) == VP_OK)) {
        CHECKF(io_dataset_next(d, &ex, &done) == VP_OK, "%s", vp_last_error());
        CHECK(ids_are(&ex, (const int32_t[]){2, 4, 3, 5, 3}, 5) && ex.label == 1 && ex.type_ids && ex.type_ids[3] == 1);
        io_dataset_close(d);
    }
    tok_tokenizer_free(tok);
    unlink(path);
}

/* --skip-bad over CSV: bad records are counted, and reading resumes at the
 * next record (after a multi-line one too). */
static void csv_skip_bad_counts(void) {
    struct tok_tokenizer *tok = tokenizer();
    if (!tok) return;
    write_named("csv", "sentence,label\n"
                       "hello,0\n"
                       "\"x\"y,1\n"
                       "\"two\nlines\",1,extra\n"
                       "world,7\n"
                       "she said,1\n");
    const struct io_dataset_options o = {.vocab_size = 17, .num_labels = 2, .labels_required = true,
                                         .tokenizer = tok, .skip_bad = true};
    struct io_dataset *d;
    if (CHECKF(io_dataset_open(path, &o, &d) == VP_OK, "%s", vp_last_error())) {
        struct io_example ex;
        bool done = false;
        uint64_t lines[4];
        int n = 0;
        while (io_dataset_next(d, &ex, &done) == VP_OK && !done && n < 4) lines[n++] = ex.line;
        CHECK(n == 2 && lines[0] == 2 && lines[1] == 7 && io_dataset_skipped(d) == 3);
        io_dataset_close(d);
    }
    tok_tokenizer_free(tok);
    unlink(path);
}

/* The training index collects label names, sorted; more names than the
 * model has classes, or names mixed with class ids, are errors. */
static void train_data_label_set(void) {
    struct tok_tokenizer *tok = tokenizer();
    if (!tok) return;
    write_named("tsv", "sentence\tlabel\nhello\tpos\nworld\tneg\nhi\tmid\nshe\tpos\n");
    struct io_dataset_options o = {.vocab_size = 17, .num_labels = 3, .labels_required = true,
                                   .tokenizer = tok, .collect_labels = true};
    struct train_data *td;
    if (CHECKF(train_data_open(path, &o, &td) == VP_OK, "%s", vp_last_error())) {
        const char *const *names;
        CHECK(train_data_label_names(td, &names) == 3);
        CHECK(strcmp(names[0], "mid") == 0 && strcmp(names[1], "neg") == 0 && strcmp(names[2], "pos") == 0);
        CHECK(train_data_count(td) == 4 && train_data_labelled(td) == 4);
        struct io_example ex;
        const int32_t want[] = {2, 1, 0, 2};
        for (uint64_t i = 0; i < 4; i++)
            CHECKF(train_data_get(td, 3 - i, &ex) == VP_OK && ex.label == want[3 - i], "example %llu",
                   (unsigned long long)(3 - i));
        train_data_close(td);
    }
    o.num_labels = 2;
    CHECK(train_data_open(path, &o, &td) == VP_ERROR_BAD_INPUT);
    CHECKF(strstr(vp_last_error(), ":4: label \"mid\" is one more than the model's 2 classes (pos, neg, ...)") &&
               strstr(vp_last_error(), "num_labels"),
           "%s", vp_last_error());
    o.num_labels = 3;
    write_named("tsv", "sentence\tlabel\nhello\t1\nworld\tneg\n");
    CHECK(train_data_open(path, &o, &td) == VP_ERROR_BAD_INPUT);
    CHECKF(strstr(vp_last_error(), "mixes integer class ids (line 2) with label names (line 3)"), "%s",
           vp_last_error());
    tok_tokenizer_free(tok);
    unlink(path);
}

TH_MAIN(TH_CASE(reads_examples_in_order), TH_CASE(bad_lines_name_file_and_line), TH_CASE(skip_bad_counts),
        TH_CASE(csv_records), TH_CASE(csv_examples), TH_CASE(tsv_pairs), TH_CASE(header_columns),
        TH_CASE(bad_records_name_lines), TH_CASE(csv_skip_bad_counts), TH_CASE(train_data_label_set))
