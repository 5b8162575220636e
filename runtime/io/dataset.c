#define _POSIX_C_SOURCE 200809L
#include "dataset.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct io_dataset {
    char *path;
    FILE *f;
    struct io_dataset_options o;
    char *line;
    size_t line_cap;
    uint64_t line_no;     /* lines consumed so far */
    uint64_t skipped;
    int32_t *ids;
    size_t ids_cap;
};

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
    d->f = fopen(path, "rb");
    if (!d->f) {
        vp_status s = vp_fail(VP_ERROR_IO, "cannot open dataset %s: %s", path, strerror(errno));
        io_dataset_close(d);
        return s;
    }
    *out = d;
    return VP_OK;
}

static vp_status bad_line(struct io_dataset *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static vp_status bad_line(struct io_dataset *d, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: %s (fix the line, or pass --skip-bad to skip such lines)",
                   d->path, (unsigned long long)d->line_no, msg);
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return false;
    return true;
}

/* Parses the current line into ex; VP_ERROR_BAD_INPUT for a bad line. */
static vp_status parse_line(struct io_dataset *d, struct io_example *ex) {
    cJSON *root = cJSON_Parse(d->line);
    vp_status s = VP_OK;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return bad_line(d, "not a JSON object");
    }
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, d->o.ids_field);
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(root, d->o.label_field);
    int n = cJSON_IsArray(ids) ? cJSON_GetArraySize(ids) : -1;
    if (n <= 0) {
        s = bad_line(d, "\"%s\" must be a non-empty list of token ids", d->o.ids_field);
        goto done;
    }
    if ((size_t)n > d->ids_cap) {
        int32_t *ni = realloc(d->ids, (size_t)n * sizeof *ni);
        if (!ni) {
            s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", d->path);
            goto done;
        }
        d->ids = ni;
        d->ids_cap = (size_t)n;
    }
    int i = 0;
    for (const cJSON *e = ids->child; e; e = e->next, i++) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(v >= 0 && v < d->o.vocab_size) || floor(v) != v) {
            s = bad_line(d, "\"%s\"[%d] must be a token id in 0..%d", d->o.ids_field, i, d->o.vocab_size - 1);
            goto done;
        }
        d->ids[i] = (int32_t)v;
    }
    ex->ids = d->ids;
    ex->len = d->o.max_len > 0 && n > d->o.max_len ? d->o.max_len : n;
    ex->label = -1;
    ex->line = d->line_no;
    if (label && !cJSON_IsNull(label)) {
        double v = cJSON_IsNumber(label) ? label->valuedouble : -1;
        int hi = d->o.num_labels > 0 ? d->o.num_labels : 1 << 30;
        if (!(v >= 0 && v < hi) || floor(v) != v) {
            s = d->o.num_labels > 0
                    ? bad_line(d, "\"%s\" must be an integer class id in 0..%d", d->o.label_field, hi - 1)
                    : bad_line(d, "\"%s\" must be a non-negative integer", d->o.label_field);
            goto done;
        }
        ex->label = (int32_t)v;
    } else if (d->o.labels_required) {
        s = bad_line(d, "no \"%s\" field", d->o.label_field);
    }
done:
    cJSON_Delete(root);
    return s;
}

vp_status io_dataset_next(struct io_dataset *d, struct io_example *ex, bool *done) {
    for (;;) {
        errno = 0;
        ssize_t n = getline(&d->line, &d->line_cap, d->f);
        if (n < 0) {
            if (ferror(d->f))
                return vp_fail(VP_ERROR_IO, "cannot read %s: %s", d->path, strerror(errno));
            *done = true;
            return VP_OK;
        }
        d->line_no++;
        if (memchr(d->line, 0, (size_t)n)) {
            vp_status s = bad_line(d, "the line holds a NUL byte; is this a text file?");
            if (!d->o.skip_bad) return s;
            d->skipped++;
            continue;
        }
        if (blank(d->line)) continue;
        vp_status s = parse_line(d, ex);
        if (s == VP_ERROR_BAD_INPUT && d->o.skip_bad) {
            d->skipped++;
            vp_clear_error();
            continue;
        }
        *done = false;
        return s;
    }
}

vp_status io_dataset_rewind(struct io_dataset *d) { return io_dataset_seek(d, 0, 0); }

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

void io_dataset_close(struct io_dataset *d) {
    if (!d) return;
    if (d->f) fclose(d->f);
    free(d->line);
    free(d->ids);
    free(d->path);
    free(d);
}
