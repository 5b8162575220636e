/* vkpeft train and eval on decoder-only models (GPT-2, LLaMA / Mistral /
 * Qwen2): causal-LM fine-tuning, and on encoder-decoders (BART, mBART):
 * seq2seq fine-tuning (cmd_train_lm.c). cmd_train and cmd_eval hand over
 * when --model's config.json is one of those. */
#ifndef VKPEFT_TOOLS_CLI_LM_H
#define VKPEFT_TOOLS_CLI_LM_H

#include <stdbool.h>

/* Whether argv's --model (--model DIR or --model=DIR) is a decoder-only or
 * an encoder-decoder model; false when absent or unreadable (the caller
 * reports those). */
bool cli_model_is_decoder(int argc, char **argv);
int cmd_train_lm(int argc, char **argv);
int cmd_eval_lm(int argc, char **argv);

#endif
