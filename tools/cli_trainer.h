/* Options of the trainer that vkpeft train and vkpeft pretrain share:
 * --optimizer, --lr, --weight-decay, --betas, --eps, --momentum, --schedule,
 * --warmup, --clip, --batch, --accum, --epochs, --steps, --max-len,
 * --dropout, --label-smoothing, --seed, --eval-every, --weights,
 * --checkpoint-activations. */
#ifndef VKPEFT_TOOLS_CLI_TRAINER_H
#define VKPEFT_TOOLS_CLI_TRAINER_H

#include "trainer.h"

#include <stdbool.h>
#include <stdint.h>

bool cli_parse_double(const char *text, double *out); /* finite */
bool cli_parse_u64(const char *text, uint64_t *out);
bool cli_parse_int(const char *text, int *out);       /* 0 .. 10^9 */

/* `name value` for one of the options above: 1 when it was one and the
 * value is good, 0 for a bad value, -1 when `name` is not one of them. */
int cli_trainer_option(struct trainer_options *o, const char *name, const char *v);
/* A valueless trainer flag (--checkpoint-activations): true when `arg` was one. */
bool cli_trainer_flag(struct trainer_options *o, const char *arg);

#endif
