/* The streaming JSONL dataset reader. */
#include "dataset.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static void write_file(const char *text) {
    snprintf(path, sizeof path, "/tmp/vkpeft-ds-%ld.jsonl", (long)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

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

TH_MAIN(TH_CASE(reads_examples_in_order), TH_CASE(bad_lines_name_file_and_line), TH_CASE(skip_bad_counts))
