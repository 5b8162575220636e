/* Dataset files (JSONL, CSV, TSV) read to the end with the built-in
 * tokenizer, then rewound and resumed from a remembered position: the second
 * pass must give the same examples. The first input byte picks the format
 * and options; the rest is the file. */
#include "fuzz.h"

#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXAMPLES 4096

struct pass {
    uint64_t count, ids_sum, labels_sum;
    vp_status status;
};

/* Reads up to MAX_EXAMPLES, checking every example against the options;
 * remembers where example `mark` starts. */
static struct pass read_all(struct io_dataset *d, const struct io_dataset_options *o, uint64_t mark,
                            uint64_t *mark_offset, uint64_t *mark_line) {
    struct pass p = {0};
    for (;;) {
        if (p.count == mark && mark_offset) io_dataset_position(d, mark_offset, mark_line);
        struct io_example ex;
        bool done = false;
        p.status = io_dataset_next(d, &ex, &done);
        if (p.status != VP_OK || done || p.count == MAX_EXAMPLES) break;
        if (ex.len < 0 || (o->max_len > 0 && ex.len > o->max_len)) abort();
        for (int i = 0; i < ex.len; i++) {
            if (ex.ids[i] < 0 || ex.ids[i] >= o->vocab_size) abort();
            p.ids_sum = p.ids_sum * 31 + (uint64_t)ex.ids[i] + (ex.type_ids ? (uint64_t)ex.type_ids[i] : 0);
        }
        if (ex.label >= 0 && o->num_labels > 0 && ex.label >= o->num_labels) abort();
        if (ex.label_text) p.labels_sum += strlen(ex.label_text);
        p.labels_sum = p.labels_sum * 7 + (uint64_t)(ex.label + 1);
        p.count++;
    }
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const char *const names[] = {"fuzz.jsonl", "fuzz.csv", "fuzz.tsv", "fuzz.json"};
    static const char *const label_names[] = {"neg", "pos"};
    const uint8_t flags = data[0];
    const char *path = fuzz_write_file(names[flags & 3], data + 1, size - 1);
    struct io_dataset_options o = {
        .tokenizer = fuzz_tokenizer(),
        .vocab_size = 20,
        .num_labels = flags & 4 ? 2 : 0,
        .skip_bad = flags & 8,
        .labels_required = flags & 16,
        .max_len = (int)(flags >> 6) * 3, /* 0 (no limit), 3, 6, 9 */
    };
    if (flags & 32) {
        o.label_names = label_names;
        o.label_count = 2;
        o.label_names_source = "fuzz";
    } else {
        o.collect_labels = true;
    }
    struct io_dataset *d = NULL;
    if (io_dataset_open(path, &o, &d) != VP_OK) return fuzz_rejected();
    uint64_t offset = 0, line = 0;
    struct pass first = read_all(d, &o, 1, &offset, &line);
    if (io_dataset_rewind(d) == VP_OK) {
        struct pass again = read_all(d, &o, UINT64_MAX, NULL, NULL);
        if (again.status != first.status || again.count != first.count || again.ids_sum != first.ids_sum ||
            again.labels_sum != first.labels_sum) {
            fprintf(stderr, "second pass differs: %llu vs %llu examples\n",
                    (unsigned long long)again.count, (unsigned long long)first.count);
            abort();
        }
    }
    if (first.count > 1 && io_dataset_seek(d, offset, line) == VP_OK)
        (void)read_all(d, &o, UINT64_MAX, NULL, NULL);
    io_dataset_close(d);
    return 0;
}
