/* Streaming dataset reading: one example at a time, so a dataset larger
 * than memory is never loaded whole. JSONL for now: one JSON object per line
 * with a token-id list and an integer label. Every bad line is reported with
 * the file and the line number. */
#ifndef VKPEFT_IO_DATASET_H
#define VKPEFT_IO_DATASET_H

#include "util.h"

struct io_dataset_options {
    const char *ids_field;    /* default "input_ids" */
    const char *label_field;  /* default "label" */
    int vocab_size;           /* ids must be in [0, vocab_size) */
    int num_labels;           /* labels must be in [0, num_labels); 0: no label check */
    bool labels_required;     /* training: every example needs a label */
    bool skip_bad;            /* count and skip bad lines instead of failing */
    int max_len;              /* truncate longer sequences (0: no limit) */
};

struct io_example {
    int32_t *ids;             /* owned by the reader, valid until the next call */
    int len;
    int32_t label;            /* -1 when absent */
    uint64_t line;            /* 1-based line in the file */
};

struct io_dataset;

vp_status io_dataset_open(const char *path, const struct io_dataset_options *o, struct io_dataset **out);
/* Next example; *done is set at the end of the file. */
vp_status io_dataset_next(struct io_dataset *d, struct io_example *ex, bool *done);
/* Back to the first line (a new epoch). */
vp_status io_dataset_rewind(struct io_dataset *d);
/* Byte offset and line of the next example, for resuming; and seeking back. */
void io_dataset_position(const struct io_dataset *d, uint64_t *offset, uint64_t *line);
vp_status io_dataset_seek(struct io_dataset *d, uint64_t offset, uint64_t line);
uint64_t io_dataset_skipped(const struct io_dataset *d);
void io_dataset_close(struct io_dataset *d);

#endif
