#include "cli_data.h"

#include "cli.h"
#include "tokenizer.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char cli_data_help[] =
    "  --format F           jsonl, csv or tsv (default: from the extension; others are JSONL)\n"
    "  --text-field NAME    the text column or field (default: text, else a GLUE pair:\n"
    "                       sentence1/sentence2, question1/question2, premise/hypothesis,\n"
    "                       question/sentence, else sentence, else question)\n"
    "  --text-pair-field NAME  the second text of a pair (e.g. sentence2)\n"
    "  --label-field NAME   the label column or field (default label): class ids, or\n"
    "                       label names (mapped in sorted order, saved with the delta)\n";

static const char *const names[] = {"--format", "--text-field", "--text-pair-field", "--label-field"};

bool cli_data_takes(const char *name) {
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(name, names[k]) == 0) return true;
    return false;
}

int cli_data_option(const char *cmd, struct cli_data *c, const char *name, const char *value) {
    if (strcmp(name, "--format") == 0) {
        if (io_format_parse(value, &c->format) != VP_OK)
            return cli_usage_error(cmd, "--format '%s': use jsonl, csv or tsv", value);
    } else if (strcmp(name, "--text-field") == 0) c->text_field = value;
    else if (strcmp(name, "--text-pair-field") == 0) c->pair_field = value;
    else if (strcmp(name, "--label-field") == 0) c->label_field = value;
    else return -1;
    return 0;
}

void cli_data_prepare(struct cli_data *c, const char *model_dir, struct io_dataset_options *o) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    if (c->tokenizer || c->no_tokenizer[0]) {
        /* Loaded (or found missing) by an earlier call: compare trains
         * several presets on the same data. */
    } else if (access(path, F_OK) != 0)
        snprintf(c->no_tokenizer, sizeof c->no_tokenizer, "%s has no tokenizer.json (pre-tokenize the data into "
                 "\"input_ids\", or add the model's tokenizer.json)", model_dir);
    else if (tok_tokenizer_load(model_dir, &c->tokenizer) != VP_OK)
        snprintf(c->no_tokenizer, sizeof c->no_tokenizer, "%s", vp_last_error());
    o->format = c->format;
    o->text_field = c->text_field;
    o->text_pair_field = c->pair_field;
    o->label_field = c->label_field;
    o->tokenizer = c->tokenizer;
    o->no_tokenizer_hint = c->tokenizer ? NULL : c->no_tokenizer;
}

void cli_data_finish(struct cli_data *c) {
    tok_tokenizer_free(c->tokenizer);
    c->tokenizer = NULL;
}
