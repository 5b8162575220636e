/* Records of delimited text files, read one at a time from a stream: CSV
 * with RFC 4180 quoting (quoted fields, "" for a quote, separators and
 * line breaks inside quotes, so one record may span several lines) and TSV
 * as GLUE writes it (fields split at every tab, quotes taken literally).
 * A line ends at "\n" or "\r\n". Internal to io/dataset.c. */
#ifndef VKPEFT_IO_CSV_H
#define VKPEFT_IO_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The reader's buffers, reused from record to record: start from {0},
 * release with io_csv_record_free. */
struct io_csv_record {
    char **fields;      /* (count) NUL-terminated, valid until the next read */
    int count;
    bool blank;         /* an empty line (count 1, field "" unquoted) */
    char *text;         /* field bytes, NUL-separated */
    size_t text_cap;
    size_t *starts;     /* (count) where each field starts in text */
    int cap;
    char *line;         /* getline's buffer */
    size_t line_cap;
};

enum io_csv_result {
    IO_CSV_OK = 0,
    IO_CSV_EOF,            /* no record: the end of the file */
    IO_CSV_IO_ERROR,       /* errno says why */
    IO_CSV_NO_MEMORY,
    IO_CSV_UNTERMINATED,   /* a quoted field runs to the end of the file */
    IO_CSV_AFTER_QUOTE,    /* text between a closing quote and the next separator */
    IO_CSV_NUL,            /* a NUL byte: not a text file */
};

/* Reads the next record. `quoting` selects CSV (true) or TSV (false).
 * *lines gets the number of lines the record took (also on errors, so the
 * caller's line count stays right; a bad record's remaining lines are
 * consumed). */
enum io_csv_result io_csv_read(FILE *f, char separator, bool quoting, struct io_csv_record *r,
                               uint64_t *lines);
void io_csv_record_free(struct io_csv_record *r);

#endif
