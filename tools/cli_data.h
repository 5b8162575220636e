/* Data options shared by vkpeft train, eval and predict: --format,
 * --text-field, --text-pair-field, --label-field, and the model's
 * tokenizer for text data. */
#ifndef VKPEFT_CLI_DATA_H
#define VKPEFT_CLI_DATA_H

#include "dataset.h"

struct tok_tokenizer;

struct cli_data {
    enum io_format format;
    const char *text_field, *pair_field, *label_field;
    struct tok_tokenizer *tokenizer; /* loaded by cli_data_prepare, freed by cli_data_finish */
    char no_tokenizer[600];          /* why there is none */
};

/* The options' help lines. */
extern const char cli_data_help[];
/* Whether `name` is one of the data options (all take a value). */
bool cli_data_takes(const char *name);
/* Handles `name value`: 0 when handled, 2 (after printing the usage
 * error) for a bad value, -1 when `name` is not a data option. */
int cli_data_option(const char *cmd, struct cli_data *c, const char *name, const char *value);
/* Loads model_dir's tokenizer.json when there is one (a tokenizer that
 * does not load is only an error when the data is text: the reader then
 * says why) and fills the data fields of o. */
void cli_data_prepare(struct cli_data *c, const char *model_dir, struct io_dataset_options *o);
void cli_data_finish(struct cli_data *c);

#endif
