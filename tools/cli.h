/* Shared by the vkpeft subcommands: exit codes, option parsing helpers. */
#ifndef VKPEFT_CLI_H
#define VKPEFT_CLI_H

#include "vkpeft.h"

#include <stdbool.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* Prints "vkpeft: <message>" for a failed status; returns the exit code the
 * status maps to (bad input and bad arguments: 2, everything else: 1). */
int cli_fail(vp_status status);
/* Prints "vkpeft <cmd>: <message>" and a hint to --help; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Common options: --device, --json. Returns true when argv[*i] was one. */
struct cli_common {
    const char *device;
    bool json;
};
bool cli_common_option(int argc, char **argv, int *i, struct cli_common *c);

/* Checks that `dir` is a folder with a config.json; else prints why and
 * returns 2 (a model folder that is not there is bad input). */
int cli_check_model_dir(const char *cmd, const char *dir);

int cmd_devices(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_generate(int argc, char **argv);

#endif
