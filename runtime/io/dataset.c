#define _POSIX_C_SOURCE 200809L
#include "dataset.h"

#include "csv.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct io_dataset {
    char *path;
    FILE *f;
    struct io_dataset_options o;
    enum io_format format;
    char *line;           /* JSONL: getline's buffer */
    size_t line_cap;
    struct io_csv_record rec; /* CSV, TSV */
    char **columns;       /* (ncols) the header's names, owned */
    int ncols;
    int col_text, col_pair, col_label; /* -1: none */
    uint64_t data_offset, data_line; /* where the first record after the header starts */
    uint64_t line_no;     /* lines consumed so far */
    uint64_t record_line; /* the current record's first line */
    uint64_t skipped;
    int32_t *ids, *types;
    size_t ids_cap;
    struct tok_encoding enc;
    char *label_text;     /* a string label handed back (collect_labels) */
    size_t label_cap;
};

/* Pairs tried, in order, when no text field is named (GLUE's layouts). */
static const char *const glue_pairs[][2] = {
    {"sentence1", "sentence2"}, {"question1", "question2"}, {"premise", "hypothesis"}, {"question", "sentence"},
};

static vp_status bad_line(struct io_dataset *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static vp_status bad_line(struct io_dataset *d, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: %s (fix the line, or pass --skip-bad to skip such lines)",
                   d->path, (unsigned long long)d->record_line, msg);
}

/* names joined with ", " into buf (cut with "..." when long). */
static const char *join_names(const char *const *names, int count, char *buf, size_t size) {
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < count && at + 1 < size; i++) {
        int n = snprintf(buf + at, size - at, "%s%s", i ? ", " : "", names[i]);
        if (n < 0 || (size_t)n >= size - at) {
            if (size > 4) snprintf(buf + size - 4, 4, "...");
            break;
        }
        at += (size_t)n;
    }
    return buf;
}

/* ------------------------------------------------------------------------
 * Formats and fields
 * ------------------------------------------------------------------------ */

vp_status io_format_parse(const char *name, enum io_format *out) {
    if (strcmp(name, "jsonl") == 0 || strcmp(name, "json") == 0) *out = IO_FORMAT_JSONL;
    else if (strcmp(name, "csv") == 0) *out = IO_FORMAT_CSV;
    else if (strcmp(name, "tsv") == 0) *out = IO_FORMAT_TSV;
    else return vp_fail(VP_ERROR_INVALID_ARGUMENT, "data format '%s': use jsonl, csv or tsv", name);
    return VP_OK;
}

const char *io_format_name(enum io_format f) {
    switch (f) {
    case IO_FORMAT_CSV: return "csv";
    case IO_FORMAT_TSV: return "tsv";
    default: return "jsonl";
    }
}

/* .csv and .tsv by name (any case); everything else is JSONL. */
static enum io_format format_from_path(const char *path) {
    const char *dot = strrchr(path, '.');
    if (dot && strchr(dot, '/') == NULL) {
        if (strcasecmp(dot, ".csv") == 0) return IO_FORMAT_CSV;
        if (strcasecmp(dot, ".tsv") == 0) return IO_FORMAT_TSV;
    }
    return IO_FORMAT_JSONL;
}

typedef bool (*has_field_fn)(const void *ctx, const char *name);

/* The text field and pair field (NULL: none) to read; false when no text
 * field is named and none of the defaults is there. */
static bool pick_text_fields(const struct io_dataset_options *o, has_field_fn has, const void *ctx,
                             const char **text, const char **pair) {
    *pair = o->text_pair_field;
    if (o->text_field) {
        *text = o->text_field;
        return true;
    }
    *text = "text";
    if (has(ctx, "text")) return true;
    for (size_t k = 0; !*pair && k < sizeof glue_pairs / sizeof glue_pairs[0]; k++)
        if (has(ctx, glue_pairs[k][0]) && has(ctx, glue_pairs[k][1])) {
            *text = glue_pairs[k][0];
            *pair = glue_pairs[k][1];
            return true;
        }
    static const char *const singles[] = {"sentence", "question"};
    for (size_t k = 0; k < 2; k++)
        if (has(ctx, singles[k])) {
            *text = singles[k];
            return true;
        }
    return false;
}

static int column_index(const struct io_dataset *d, const char *name) {
    for (int k = 0; k < d->ncols; k++)
        if (strcmp(d->columns[k], name) == 0) return k;
    return -1;
}

static bool has_column(const void *ctx, const char *name) { return column_index(ctx, name) >= 0; }

static bool has_member(const void *ctx, const char *name) {
    return cJSON_GetObjectItemCaseSensitive(ctx, name) != NULL;
}

/* ------------------------------------------------------------------------
 * Opening: CSV and TSV read the header and find their columns
 * ------------------------------------------------------------------------ */

static vp_status csv_error(struct io_dataset *d, enum io_csv_result r);

static vp_status missing_column(struct io_dataset *d, const char *name, const char *flag) {
    char cols[512];
    return vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: no column \"%s\" in the header (its columns: %s); "
                   "name the right one with %s", d->path, (unsigned long long)d->record_line, name,
                   join_names((const char *const *)d->columns, d->ncols, cols, sizeof cols), flag);
}

static vp_status read_header(struct io_dataset *d) {
    const char sep = d->format == IO_FORMAT_CSV ? ',' : '\t';
    enum io_csv_result r;
    do {
        uint64_t lines;
        d->record_line = d->line_no + 1;
        r = io_csv_read(d->f, sep, d->format == IO_FORMAT_CSV, &d->rec, &lines);
        d->line_no += lines;
    } while (r == IO_CSV_OK && d->rec.blank);
    if (r == IO_CSV_EOF)
        return vp_fail(VP_ERROR_BAD_INPUT, "%s is empty: a %s file starts with a header row naming its columns",
                       d->path, io_format_name(d->format));
    if (r != IO_CSV_OK) return csv_error(d, r);
    d->columns = calloc((size_t)d->rec.count, sizeof *d->columns);
    if (!d->columns) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", d->path);
    for (int k = 0; k < d->rec.count; k++, d->ncols++)
        if (!(d->columns[k] = strdup(d->rec.fields[k])))
            return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", d->path);
    const char *text, *pair;
    if (!pick_text_fields(&d->o, has_column, d, &text, &pair)) {
        char cols[512];
        return vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: no text column in the header (its columns: %s); name "
                       "it with --text-field (and --text-pair-field for a pair)", d->path,
                       (unsigned long long)d->record_line,
                       join_names((const char *const *)d->columns, d->ncols, cols, sizeof cols));
    }
    if ((d->col_text = column_index(d, text)) < 0) return missing_column(d, text, "--text-field");
    d->col_pair = -1;
    if (pair && (d->col_pair = column_index(d, pair)) < 0) return missing_column(d, pair, "--text-pair-field");
    d->col_label = column_index(d, d->o.label_field);
    if (d->col_label < 0 && d->o.labels_required) return missing_column(d, d->o.label_field, "--label-field");
    long at = ftell(d->f);
    if (at < 0) return vp_fail(VP_ERROR_IO, "cannot read %s: %s", d->path, strerror(errno));
    d->data_offset = (uint64_t)at;
    d->data_line = d->line_no;
    return VP_OK;
}

vp_status io_dataset_open(const char *path, const struct io_dataset_options *o, struct io_dataset **out) {
    *out = NULL;
    struct io_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening %s", path);
    }
    d->o = *o;
    if (!d->o.ids_field) d->o.ids_field = "input_ids";
    if (!d->o.label_field) d->o.label_field = "label";
    if (!d->o.label_names_source) d->o.label_names_source = "the known labels";
    d->format = o->format != IO_FORMAT_AUTO ? o->format : format_from_path(path);
    d->col_text = d->col_pair = d->col_label = -1;
    vp_status s = VP_OK;
    d->f = fopen(path, "rb");
    if (!d->f) s = vp_fail(VP_ERROR_IO, "cannot open dataset %s: %s", path, strerror(errno));
    if (s == VP_OK && d->format != IO_FORMAT_JSONL) s = read_header(d);
    if (s != VP_OK) {
        io_dataset_close(d);
        return s;
    }
    *out = d;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Examples: ids, text, labels
 * ------------------------------------------------------------------------ */

static vp_status reserve_ids(struct io_dataset *d, int n) {
    if ((size_t)n <= d->ids_cap) return VP_OK;
    int32_t *ni = realloc(d->ids, (size_t)n * sizeof *ni);
    if (ni) d->ids = ni;
    int32_t *nt = ni ? realloc(d->types, (size_t)n * sizeof *nt) : NULL;
    if (nt) d->types = nt;
    if (!ni || !nt) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", d->path);
    d->ids_cap = (size_t)n;
    return VP_OK;
}

/* Tokenizes text (and pair) into ex: truncated to max_len, special tokens
 * and type ids from the tokenizer's post-processor. */
static vp_status encode_text(struct io_dataset *d, const char *text, const char *pair, struct io_example *ex) {
    if (!d->o.tokenizer)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s:%llu: the example is text, and there is no tokenizer to "
                       "encode it%s%s", d->path, (unsigned long long)d->record_line,
                       d->o.no_tokenizer_hint ? ": " : "", d->o.no_tokenizer_hint ? d->o.no_tokenizer_hint : "");
    vp_status s = tok_encode(d->o.tokenizer, text, pair, true, d->o.max_len, &d->enc);
    if (s == VP_ERROR_BAD_INPUT) return bad_line(d, "%s", vp_last_error());
    if (s != VP_OK) return s;
    if (d->enc.len == 0) return bad_line(d, "the text is empty");
    if ((s = reserve_ids(d, d->enc.len)) != VP_OK) return s;
    bool typed = false;
    for (int i = 0; i < d->enc.len; i++) {
        const int32_t id = d->enc.ids[i];
        if (id < 0 || id >= d->o.vocab_size)
            return bad_line(d, "the tokenizer gave id %d, outside the model's vocabulary 0..%d: does "
                            "tokenizer.json belong to this model?", id, d->o.vocab_size - 1);
        d->ids[i] = id;
        d->types[i] = d->enc.type_ids ? d->enc.type_ids[i] : 0;
        typed |= d->types[i] != 0;
    }
    ex->ids = d->ids;
    ex->type_ids = typed ? d->types : NULL;
    ex->len = d->enc.len;
    return VP_OK;
}

static vp_status label_number(struct io_dataset *d, double v, struct io_example *ex) {
    const int hi = d->o.num_labels > 0 ? d->o.num_labels : 1 << 30;
    if (!(v >= 0 && v < hi) || floor(v) != v)
        return d->o.num_labels > 0
                   ? bad_line(d, "\"%s\" must be an integer class id in 0..%d", d->o.label_field, hi - 1)
                   : bad_line(d, "\"%s\" must be a non-negative integer", d->o.label_field);
    ex->label = (int32_t)v;
    return VP_OK;
}

static vp_status label_absent(struct io_dataset *d) {
    return d->o.labels_required ? bad_line(d, "no \"%s\" field", d->o.label_field) : VP_OK;
}

/* A label given as text: digits are a class id, anything else a name. */
static vp_status label_text(struct io_dataset *d, const char *t, struct io_example *ex) {
    if (!*t) return label_absent(d);
    size_t digits = strspn(t, "0123456789");
    if (t[digits] == 0 && digits <= 9) return label_number(d, atof(t), ex);
    for (int k = 0; k < d->o.label_count; k++)
        if (strcmp(d->o.label_names[k], t) == 0) {
            if (d->o.num_labels > 0 && k >= d->o.num_labels) break;
            ex->label = k;
            return VP_OK;
        }
    char names[400];
    if (d->o.label_names)
        return bad_line(d, "\"%s\" \"%s\" is not one of %s (%s)", d->o.label_field, t, d->o.label_names_source,
                        join_names(d->o.label_names, d->o.label_count, names, sizeof names));
    if (!d->o.collect_labels)
        return bad_line(d, "\"%s\" \"%s\" is not an integer class id, and no label names are known to map it",
                        d->o.label_field, t);
    const size_t n = strlen(t) + 1;
    if (n > d->label_cap) {
        char *b = realloc(d->label_text, n);
        if (!b) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", d->path);
        d->label_text = b;
        d->label_cap = n;
    }
    memcpy(d->label_text, t, n);
    ex->label_text = d->label_text;
    return VP_OK;
}

static vp_status json_ids(struct io_dataset *d, const cJSON *ids, struct io_example *ex) {
    const int n = cJSON_IsArray(ids) ? cJSON_GetArraySize(ids) : -1;
    if (n <= 0) return bad_line(d, "\"%s\" must be a non-empty list of token ids", d->o.ids_field);
    vp_status s = reserve_ids(d, n);
    if (s != VP_OK) return s;
    int i = 0;
    for (const cJSON *e = ids->child; e; e = e->next, i++) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(v >= 0 && v < d->o.vocab_size) || floor(v) != v)
            return bad_line(d, "\"%s\"[%d] must be a token id in 0..%d", d->o.ids_field, i, d->o.vocab_size - 1);
        d->ids[i] = (int32_t)v;
    }
    ex->ids = d->ids;
    ex->len = d->o.max_len > 0 && n > d->o.max_len ? d->o.max_len : n;
    return VP_OK;
}

static vp_status json_text(struct io_dataset *d, const cJSON *root, struct io_example *ex) {
    const char *text_name, *pair_name;
    if (!pick_text_fields(&d->o, has_member, root, &text_name, &pair_name))
        return bad_line(d, "no \"%s\" list and no text field (\"text\", \"sentence\", a GLUE pair such as "
                        "\"sentence1\"/\"sentence2\"; or name one with --text-field)", d->o.ids_field);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, text_name);
    const cJSON *pair = pair_name ? cJSON_GetObjectItemCaseSensitive(root, pair_name) : NULL;
    if (!text) return bad_line(d, "no \"%s\" field", text_name);
    if (!cJSON_IsString(text)) return bad_line(d, "\"%s\" must be a string", text_name);
    if (pair_name && !pair) return bad_line(d, "no \"%s\" field", pair_name);
    if (pair && !cJSON_IsString(pair)) return bad_line(d, "\"%s\" must be a string", pair_name);
    return encode_text(d, text->valuestring, pair ? pair->valuestring : NULL, ex);
}

/* Parses the current JSONL line into ex; VP_ERROR_BAD_INPUT for a bad line. */
static vp_status parse_json(struct io_dataset *d, struct io_example *ex) {
    cJSON *root = cJSON_Parse(d->line);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return bad_line(d, "not a JSON object");
    }
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, d->o.ids_field);
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(root, d->o.label_field);
    vp_status s = ids ? json_ids(d, ids, ex) : json_text(d, root, ex);
    if (s == VP_OK) {
        if (!label || cJSON_IsNull(label)) s = label_absent(d);
        else if (cJSON_IsNumber(label)) s = label_number(d, label->valuedouble, ex);
        else if (cJSON_IsString(label)) s = label_text(d, label->valuestring, ex);
        else s = bad_line(d, "\"%s\" must be an integer class id or a label name", d->o.label_field);
    }
    cJSON_Delete(root);
    return s;
}

static vp_status parse_record(struct io_dataset *d, struct io_example *ex) {
    const struct io_csv_record *r = &d->rec;
    if (r->count != d->ncols)
        return bad_line(d, "%d field%s where the header has %d%s", r->count, r->count == 1 ? "" : "s", d->ncols,
                        d->format == IO_FORMAT_CSV ? " (a field holding a comma needs double quotes)"
                                                   : " (fields are separated by tabs)");
    vp_status s = encode_text(d, r->fields[d->col_text], d->col_pair >= 0 ? r->fields[d->col_pair] : NULL, ex);
    if (s != VP_OK) return s;
    return d->col_label >= 0 ? label_text(d, r->fields[d->col_label], ex) : label_absent(d);
}

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return false;
    return true;
}

static vp_status csv_error(struct io_dataset *d, enum io_csv_result r) {
    switch (r) {
    case IO_CSV_IO_ERROR: return vp_fail(VP_ERROR_IO, "cannot read %s: %s", d->path, strerror(errno));
    case IO_CSV_NO_MEMORY: return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", d->path);
    case IO_CSV_UNTERMINATED: return bad_line(d, "a quoted field that starts here is never closed");
    case IO_CSV_AFTER_QUOTE:
        return bad_line(d, "text after a closing quote (a quote inside a quoted field is written \"\")");
    default: return bad_line(d, "the line holds a NUL byte; is this a text file?");
    }
}

/* Reads the next non-blank record or line into the reader; *done at the
 * end. A bad one returns VP_ERROR_BAD_INPUT with everything it spans
 * consumed. */
static vp_status read_record(struct io_dataset *d, struct io_example *ex, bool *done) {
    *done = false;
    for (;;) {
        d->record_line = d->line_no + 1;
        if (d->format != IO_FORMAT_JSONL) {
            uint64_t lines;
            const enum io_csv_result r =
                io_csv_read(d->f, d->format == IO_FORMAT_CSV ? ',' : '\t', d->format == IO_FORMAT_CSV, &d->rec, &lines);
            d->line_no += lines;
            if (r == IO_CSV_EOF) break;
            if (r != IO_CSV_OK) return csv_error(d, r);
            if (d->rec.blank) continue;
            return parse_record(d, ex);
        }
        errno = 0;
        ssize_t n = getline(&d->line, &d->line_cap, d->f);
        if (n < 0) {
            if (ferror(d->f)) return vp_fail(VP_ERROR_IO, "cannot read %s: %s", d->path, strerror(errno));
            break;
        }
        d->line_no++;
        if (memchr(d->line, 0, (size_t)n)) return bad_line(d, "the line holds a NUL byte; is this a text file?");
        if (blank(d->line)) continue;
        return parse_json(d, ex);
    }
    *done = true;
    return VP_OK;
}

vp_status io_dataset_next(struct io_dataset *d, struct io_example *ex, bool *done) {
    for (;;) {
        *ex = (struct io_example){.label = -1};
        vp_status s = read_record(d, ex, done);
        if (s == VP_ERROR_BAD_INPUT && d->o.skip_bad) {
            d->skipped++;
            vp_clear_error();
            continue;
        }
        ex->line = d->record_line;
        return s;
    }
}

vp_status io_dataset_rewind(struct io_dataset *d) { return io_dataset_seek(d, d->data_offset, d->data_line); }

void io_dataset_position(const struct io_dataset *d, uint64_t *offset, uint64_t *line) {
    long at = ftell(d->f);
    *offset = at < 0 ? 0 : (uint64_t)at;
    *line = d->line_no;
}

vp_status io_dataset_seek(struct io_dataset *d, uint64_t offset, uint64_t line) {
    if (fseek(d->f, (long)offset, SEEK_SET) != 0)
        return vp_fail(VP_ERROR_IO, "cannot seek in %s: %s", d->path, strerror(errno));
    d->line_no = line;
    return VP_OK;
}

uint64_t io_dataset_skipped(const struct io_dataset *d) { return d->skipped; }

void io_dataset_set_labels(struct io_dataset *d, const char *const *names, int count) {
    d->o.label_names = names;
    d->o.label_count = count;
    d->o.collect_labels = false;
}

enum io_format io_dataset_format(const struct io_dataset *d) { return d->format; }

void io_dataset_close(struct io_dataset *d) {
    if (!d) return;
    if (d->f) fclose(d->f);
    free(d->line);
    io_csv_record_free(&d->rec);
    for (int k = 0; k < d->ncols; k++) free(d->columns[k]);
    free(d->columns);
    free(d->ids);
    free(d->types);
    tok_encoding_free(&d->enc);
    free(d->label_text);
    free(d->path);
    free(d);
}
