/* Training data: a record index built in one streaming pass (with the set
 * of string labels), seeded epoch permutations, and padded batches. */
#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct train_data {
    char *path;
    struct io_dataset *ds;
    uint64_t count, labelled;
    uint64_t *offset, *line; /* (count) where each example's line starts */
    int longest;
    uint64_t skipped;        /* bad lines the index pass skipped */
    uint64_t next;           /* the example the reader is positioned at */
    char **labels;           /* (nlabels) string labels the index pass collected, sorted */
    int nlabels;
    uint64_t int_line, name_line; /* first line with an integer label, with a label name */
};

static vp_status index_push(struct train_data *d, uint64_t *cap, uint64_t offset, uint64_t line) {
    if (d->count == *cap) {
        uint64_t n = *cap ? *cap * 2 : 1024;
        uint64_t *o = realloc(d->offset, n * sizeof *o);
        if (o) d->offset = o;
        uint64_t *l = o ? realloc(d->line, n * sizeof *l) : NULL;
        if (l) d->line = l;
        if (!o || !l) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory indexing %s", d->path);
        *cap = n;
    }
    d->offset[d->count] = offset;
    d->line[d->count] = line;
    d->count++;
    return VP_OK;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds a string label the index pass met to the set (collect_labels);
 * more distinct labels than the model has classes is an error. */
static vp_status collect_label(struct train_data *d, const struct io_dataset_options *o,
                               const struct io_example *ex) {
    if (!d->name_line) d->name_line = ex->line;
    for (int k = 0; k < d->nlabels; k++)
        if (strcmp(d->labels[k], ex->label_text) == 0) return VP_OK;
    if (o->num_labels > 0 && d->nlabels >= o->num_labels) {
        char seen[400];
        size_t at = 0;
        seen[0] = 0;
        for (int k = 0; k < d->nlabels && at < sizeof seen; k++)
            at += (size_t)snprintf(seen + at, sizeof seen - at, "%s, ", d->labels[k]);
        return vp_fail(VP_ERROR_BAD_INPUT, "%s:%llu: label \"%s\" is one more than the model's %d classes (%s"
                       "...): set \"num_labels\" (and \"id2label\") in the model's config.json to the number of "
                       "labels the data has", d->path, (unsigned long long)ex->line, ex->label_text,
                       o->num_labels, seen);
    }
    char **l = realloc(d->labels, (size_t)(d->nlabels + 1) * sizeof *l);
    if (l) d->labels = l;
    char *name = l ? strdup(ex->label_text) : NULL;
    if (!name) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory indexing %s", d->path);
    d->labels[d->nlabels++] = name;
    return VP_OK;
}

/* Integer class ids and label names in one file cannot be told apart
 * (is "1" the name "1" or class 1?), so a file holds one kind. */
static vp_status check_label_kinds(const struct train_data *d) {
    if (!d->int_line || !d->name_line) return VP_OK;
    return vp_fail(VP_ERROR_BAD_INPUT, "%s mixes integer class ids (line %llu) with label names (line %llu): "
                   "use one or the other", d->path, (unsigned long long)d->int_line,
                   (unsigned long long)d->name_line);
}

vp_status train_data_open(const char *path, const struct io_dataset_options *o,
                          struct train_data **out) {
    *out = NULL;
    struct train_data *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening %s", path);
    }
    vp_status s = io_dataset_open(path, o, &d->ds);
    uint64_t cap = 0;
    while (s == VP_OK) {
        uint64_t offset, line;
        io_dataset_position(d->ds, &offset, &line);
        struct io_example ex;
        bool done = false;
        s = io_dataset_next(d->ds, &ex, &done);
        if (s != VP_OK || done) break;
        s = index_push(d, &cap, offset, line);
        if (s == VP_OK && ex.label_text) s = collect_label(d, o, &ex);
        if (ex.label >= 0 && !d->int_line) d->int_line = ex.line;
        d->labelled += ex.label >= 0 || ex.label_text;
        if (ex.len > d->longest) d->longest = ex.len;
    }
    if (s == VP_OK && d->count == 0)
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s holds no examples", path);
    if (s == VP_OK && o->collect_labels) s = check_label_kinds(d);
    if (s == VP_OK && d->nlabels) {
        qsort(d->labels, (size_t)d->nlabels, sizeof *d->labels, compare_names);
        io_dataset_set_labels(d->ds, (const char *const *)d->labels, d->nlabels);
    }
    if (s == VP_OK) d->skipped = io_dataset_skipped(d->ds);
    if (s == VP_OK) s = io_dataset_rewind(d->ds);
    if (s != VP_OK) {
        train_data_close(d);
        return s;
    }
    *out = d;
    return VP_OK;
}

void train_data_close(struct train_data *d) {
    if (!d) return;
    io_dataset_close(d->ds);
    free(d->offset);
    free(d->line);
    for (int k = 0; k < d->nlabels; k++) free(d->labels[k]);
    free(d->labels);
    free(d->path);
    free(d);
}

uint64_t train_data_count(const struct train_data *d) { return d->count; }
uint64_t train_data_labelled(const struct train_data *d) { return d->labelled; }
int train_data_longest(const struct train_data *d) { return d->longest; }
uint64_t train_data_skipped(const struct train_data *d) { return d->skipped; }
const char *train_data_path(const struct train_data *d) { return d->path; }
int train_data_label_names(const struct train_data *d, const char *const **names) {
    *names = (const char *const *)d->labels;
    return d->nlabels;
}

vp_status train_data_get(struct train_data *d, uint64_t i, struct io_example *ex) {
    if (i >= d->count)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: example %llu of %llu", d->path,
                       (unsigned long long)i, (unsigned long long)d->count);
    vp_status s = VP_OK;
    if (i != d->next) s = io_dataset_seek(d->ds, d->offset[i], d->line[i]);
    bool done = false;
    if (s == VP_OK) s = io_dataset_next(d->ds, ex, &done);
    if (s == VP_OK && done)
        s = vp_fail(VP_ERROR_IO, "%s changed while training: example %llu (line %llu) is gone",
                    d->path, (unsigned long long)i, (unsigned long long)d->line[i] + 1);
    d->next = s == VP_OK ? i + 1 : UINT64_MAX;
    return s;
}

/* ------------------------------------------------------------------------
 * Permutations
 * ------------------------------------------------------------------------ */

void train_permutation(uint64_t *perm, uint64_t n, uint64_t seed, uint64_t epoch) {
    uint64_t state = vp_epoch_rng(seed, epoch);
    for (uint64_t i = 0; i < n; i++) perm[i] = i;
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = vp_random_below(&state, i);
        uint64_t tmp = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = tmp;
    }
}

/* ------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------ */

vp_status train_batch_init(struct train_batch *b, int B, int cap_T) {
    memset(b, 0, sizeof *b);
    if (B < 1 || cap_T < 1)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "batch shape %d x %d", B, cap_T);
    const size_t n = (size_t)B * (size_t)cap_T;
    b->ids = malloc(n * sizeof *b->ids);
    b->types = malloc(n * sizeof *b->types);
    b->mask = malloc(n);
    b->labels = malloc(n * sizeof *b->labels); /* per token for the masked LM */
    b->index = malloc((size_t)B * sizeof *b->index);
    b->lens = malloc((size_t)B * sizeof *b->lens);
    if (!b->ids || !b->types || !b->mask || !b->labels || !b->index || !b->lens) {
        train_batch_finish(b);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for a batch of %d x %d", B, cap_T);
    }
    b->B = B;
    b->cap_T = cap_T;
    return VP_OK;
}

void train_batch_finish(struct train_batch *b) {
    free(b->ids);
    free(b->types);
    free(b->mask);
    free(b->labels);
    free(b->index);
    free(b->lens);
    memset(b, 0, sizeof *b);
}

int train_batch_length(int longest, int max_len, int pad_multiple) {
    int m = pad_multiple;
    if (m <= 0) m = longest <= 64 ? 8 : longest <= 256 ? 16 : 32;
    int T = (longest + m - 1) / m * m;
    if (max_len > 0 && T > max_len) T = max_len;
    return T < 1 ? 1 : T;
}

vp_status train_batch_fill(struct train_batch *b, struct train_data *d, const uint64_t *indices,
                           int count, int pad_id, int max_len, int pad_multiple) {
    if (count < 1 || count > b->B)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "a batch of %d rows holds %d examples", b->B, count);
    /* Each example is read once into a row of cap_T tokens; the rows are
     * then packed to the batch's length T <= cap_T (row r moves down from
     * r·cap_T to r·T, so packing in row order never overwrites a row not
     * yet moved). */
    int longest = 1;
    for (int r = 0; r < count; r++) {
        struct io_example ex;
        vp_status s = train_data_get(d, indices[r], &ex);
        if (s != VP_OK) return s;
        const int len = ex.len < b->cap_T ? ex.len : b->cap_T;
        memcpy(b->ids + (size_t)r * b->cap_T, ex.ids, (size_t)len * sizeof *ex.ids);
        int32_t *types = b->types + (size_t)r * b->cap_T;
        if (ex.type_ids) memcpy(types, ex.type_ids, (size_t)len * sizeof *types);
        else memset(types, 0, (size_t)len * sizeof *types);
        b->labels[r] = ex.label >= 0 ? ex.label : ENCODER_IGNORE_INDEX;
        b->index[r] = indices[r];
        b->lens[r] = len;
        if (len > longest) longest = len;
    }
    const int T = train_batch_length(longest, max_len, pad_multiple);
    if (T > b->cap_T)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "a batch of length %d is longer than the %d planned",
                       T, b->cap_T);
    b->T = T;
    b->rows = count;
    for (int r = 0; r < count; r++) {
        if (b->lens[r] > T) b->lens[r] = T;
        int32_t *ids = b->ids + (size_t)r * T, *types = b->types + (size_t)r * T;
        uint8_t *mask = b->mask + (size_t)r * T;
        memmove(ids, b->ids + (size_t)r * b->cap_T, (size_t)b->lens[r] * sizeof *ids);
        memmove(types, b->types + (size_t)r * b->cap_T, (size_t)b->lens[r] * sizeof *types);
        for (int k = 0; k < T; k++) {
            if (k >= b->lens[r]) ids[k] = pad_id, types[k] = 0;
            mask[k] = k < b->lens[r];
        }
    }
    /* Filler rows repeat row 0 (a real sequence, so no row is all padding)
     * and are left out of the loss. */
    for (int r = count; r < b->B; r++) {
        memcpy(b->ids + (size_t)r * T, b->ids, (size_t)T * sizeof *b->ids);
        memcpy(b->types + (size_t)r * T, b->types, (size_t)T * sizeof *b->types);
        memcpy(b->mask + (size_t)r * T, b->mask, (size_t)T);
        b->labels[r] = ENCODER_IGNORE_INDEX;
        b->index[r] = UINT64_MAX;
        b->lens[r] = b->lens[0];
    }
    return VP_OK;
}

struct encoder_batch train_batch_view(const struct train_batch *b) {
    return (struct encoder_batch){b->ids, b->mask, b->types, b->labels};
}
