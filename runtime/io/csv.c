#define _POSIX_C_SOURCE 200809L
#include "csv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static bool text_push(struct io_csv_record *r, size_t *len, char c) {
    if (*len == r->text_cap) {
        size_t n = r->text_cap ? r->text_cap * 2 : 256;
        char *t = realloc(r->text, n);
        if (!t) return false;
        r->text = t;
        r->text_cap = n;
    }
    r->text[(*len)++] = c;
    return true;
}

static bool field_start(struct io_csv_record *r, size_t at) {
    if (r->count == r->cap) {
        int n = r->cap ? r->cap * 2 : 16;
        size_t *s = realloc(r->starts, (size_t)n * sizeof *s);
        if (s) r->starts = s;
        char **f = s ? realloc(r->fields, (size_t)n * sizeof *f) : NULL;
        if (f) r->fields = f;
        if (!s || !f) return false;
        r->cap = n;
    }
    r->starts[r->count++] = at;
    return true;
}

/* Lines come whole from getline, so a bad record returns with the rest of
 * its current line already consumed: the next read starts on a fresh line. */
enum io_csv_result io_csv_read(FILE *f, char separator, bool quoting, struct io_csv_record *r,
                               uint64_t *lines) {
    *lines = 0;
    r->count = 0;
    r->blank = false;
    size_t len = 0;
    bool in_quotes = false, quoted = false, after_quote = false, any_quoted = false;
    if (!field_start(r, 0)) return IO_CSV_NO_MEMORY;
    for (;;) {
        errno = 0;
        const ssize_t n = getline(&r->line, &r->line_cap, f);
        if (n < 0) {
            if (ferror(f)) return IO_CSV_IO_ERROR;
            return *lines == 0 ? IO_CSV_EOF : IO_CSV_UNTERMINATED;
        }
        ++*lines;
        const char *line = r->line;
        if (memchr(line, 0, (size_t)n)) return IO_CSV_NUL;
        bool end = false;
        for (ssize_t i = 0; i < n && !end; i++) {
            const char c = line[i];
            if (in_quotes) {
                if (c != '"') {
                    if (!text_push(r, &len, c)) return IO_CSV_NO_MEMORY;
                } else if (i + 1 < n && line[i + 1] == '"') {
                    if (!text_push(r, &len, '"')) return IO_CSV_NO_MEMORY;
                    i++;
                } else {
                    in_quotes = false;
                    after_quote = true;
                }
                continue;
            }
            if (c == '\n' || (c == '\r' && (i + 1 == n || line[i + 1] == '\n'))) {
                end = true;
            } else if (c == separator) {
                if (!text_push(r, &len, 0) || !field_start(r, len)) return IO_CSV_NO_MEMORY;
                quoted = after_quote = false;
            } else if (after_quote) {
                return IO_CSV_AFTER_QUOTE;
            } else if (quoting && c == '"' && !quoted && len == r->starts[r->count - 1]) {
                in_quotes = quoted = any_quoted = true;
            } else if (!text_push(r, &len, c)) {
                return IO_CSV_NO_MEMORY;
            }
        }
        if (!in_quotes) break;
    }
    if (!text_push(r, &len, 0)) return IO_CSV_NO_MEMORY;
    for (int k = 0; k < r->count; k++) r->fields[k] = r->text + r->starts[k];
    r->blank = r->count == 1 && r->fields[0][0] == 0 && !any_quoted;
    return IO_CSV_OK;
}

void io_csv_record_free(struct io_csv_record *r) {
    free(r->fields);
    free(r->starts);
    free(r->text);
    free(r->line);
    memset(r, 0, sizeof *r);
}
