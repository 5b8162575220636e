/* Streaming dataset reading: one example at a time, so a dataset larger
 * than memory is never loaded whole. Every bad line is reported with the
 * file and the line number (a CSV record that spans lines: its first line).
 *
 * Formats, chosen by the file's extension (.jsonl/.json, .csv, .tsv) or
 * by options.format:
 *   JSONL  one JSON object per line: pre-tokenized ("input_ids": [...]) or
 *          text ("text", or a text field and a pair field), and a label.
 *   CSV    a header row naming the columns, then one record per row, with
 *          RFC 4180 quoting: a record may span lines inside quotes.
 *   TSV    GLUE's layout: a header row, fields split at tabs, quotes taken
 *          literally.
 * Text goes through options.tokenizer (the model's tokenizer.json):
 * truncation to max_len (longest first for a pair), the post-processor's
 * special tokens and type ids.
 *
 * Text fields, unless named: "text"; else the first GLUE pair present
 * (sentence1/sentence2, question1/question2, premise/hypothesis,
 * question/sentence); else "sentence"; else "question".
 *
 * Labels: an integer (a JSON number, or digits in a JSON string or a
 * column) is a class id. Any other string is a label name: mapped through
 * options.label_names when given, else (collect_labels) returned as
 * example.label_text for the caller to collect; else it is a bad line. */
#ifndef VKPEFT_IO_DATASET_H
#define VKPEFT_IO_DATASET_H

#include "util.h"

struct tok_tokenizer;

enum io_format { IO_FORMAT_AUTO = 0, IO_FORMAT_JSONL, IO_FORMAT_CSV, IO_FORMAT_TSV };

struct io_dataset_options {
    enum io_format format;    /* AUTO: from the file name's extension */
    const char *ids_field;    /* default "input_ids" */
    const char *label_field;  /* default "label" */
    const char *text_field;   /* NULL: see above */
    const char *text_pair_field; /* NULL: none, or the GLUE pair's second field */
    const struct tok_tokenizer *tokenizer; /* NULL: text is an error */
    const char *no_tokenizer_hint; /* why there is no tokenizer, for that error (may be NULL) */
    int vocab_size;           /* ids must be in [0, vocab_size) */
    int num_labels;           /* labels must be in [0, num_labels); 0: no label check */
    bool labels_required;     /* training: every example needs a label */
    bool skip_bad;            /* count and skip bad lines instead of failing */
    int max_len;              /* truncate longer sequences (0: no limit) */
    const char *const *label_names; /* label_count names: string labels map to their index */
    int label_count;
    const char *label_names_source; /* where the names come from, for messages */
    bool collect_labels;      /* without label_names: hand string labels back as label_text */
};

struct io_example {
    int32_t *ids;             /* owned by the reader, valid until the next call */
    int32_t *type_ids;        /* (len) segment ids, or NULL: all 0 */
    int len;
    int32_t label;            /* -1 when absent, or a string label not mapped */
    const char *label_text;   /* a string label not mapped (collect_labels), else NULL */
    uint64_t line;            /* 1-based line in the file (a record's first) */
};

struct io_dataset;

vp_status io_dataset_open(const char *path, const struct io_dataset_options *o, struct io_dataset **out);
/* Next example; *done is set at the end of the file. */
vp_status io_dataset_next(struct io_dataset *d, struct io_example *ex, bool *done);
/* Back to the first example (a new epoch). */
vp_status io_dataset_rewind(struct io_dataset *d);
/* Byte offset and line of the next record, for resuming; and seeking back. */
void io_dataset_position(const struct io_dataset *d, uint64_t *offset, uint64_t *line);
vp_status io_dataset_seek(struct io_dataset *d, uint64_t offset, uint64_t line);
uint64_t io_dataset_skipped(const struct io_dataset *d);
/* From now on string labels map through names[0..count) (which must
 * outlive the reader) and collect_labels is off. */
void io_dataset_set_labels(struct io_dataset *d, const char *const *names, int count);
enum io_format io_dataset_format(const struct io_dataset *d);
void io_dataset_close(struct io_dataset *d);

/* "jsonl", "csv", "tsv" (and "json" for JSONL); VP_ERROR_INVALID_ARGUMENT
 * otherwise. */
vp_status io_format_parse(const char *name, enum io_format *out);
const char *io_format_name(enum io_format f);

#endif
