/* Checkpoint flags and resume checks that vkpeft train shares between its
 * encoder path (cmd_train.c) and its causal-LM path (cmd_train_lm.c):
 * --checkpoint-every N, --no-checkpoint, --resume, --on-nonfinite. */
#ifndef VKPEFT_TOOLS_CLI_CHECKPOINT_H
#define VKPEFT_TOOLS_CLI_CHECKPOINT_H

#include "trainer.h"

#include <stdbool.h>
#include <stdint.h>

struct cli_checkpoint {
    bool resume, off;             /* --resume, --no-checkpoint */
    uint64_t every;               /* --checkpoint-every (0: each epoch) */
    enum trainer_nonfinite on_nonfinite;
    int argc;                     /* the command line, for the resume command */
    char **argv;
};

/* The help lines of these flags. */
extern const char cli_checkpoint_help[];

/* A flag without a value (--resume, --no-checkpoint): true when taken. */
bool cli_checkpoint_flag(struct cli_checkpoint *c, const char *arg);
/* `name value`: 1 taken, 2 bad value (message printed), 0 not one of these. */
int cli_checkpoint_option(const char *cmd, struct cli_checkpoint *c, const char *name, const char *v);
bool cli_checkpoint_takes(const char *name);
/* Checks flags against each other and --out (which must hold a
 * checkpoint for --resume); returns an exit code or 0. */
int cli_checkpoint_check(const char *cmd, const struct cli_checkpoint *c, const char *out, bool overwrite);

/* The run's identity stored with its checkpoints: args_json (train_args)
 * without the version, plus the size and hash of the data files and the
 * model's config.json. */
vp_status cli_run_settings(const char *args_json, const char *model, const char *data, const char *eval,
                           const char *init, char **out);
/* --resume: the checkpoint's settings against this run's, naming the first
 * that differs; returns an exit code or 0. */
int cli_compare_settings(const char *cmd, const char *path, const char *saved, const char *now);
/* Prints "  vkpeft <the same arguments> --resume" on stderr. */
void cli_print_resume_command(const struct cli_checkpoint *c);
/* Removes NAME.tmp.PID files a killed run left in `dir`. */
void cli_remove_stale_temporaries(const char *dir);

/* The files a run reads and writes (eval and init may be NULL). */
struct cli_run_files {
    const char *model, *data, *eval, *init, *out;
};
/* Before the fit: the run's identity (args_json, train_args, with the
 * files' contents: cli_run_settings) into *settings (malloc'd; the fit
 * stores it with every checkpoint); with --resume, reads
 * OUT/checkpoint.vkpc into p and pos and checks its settings; then creates
 * --out, removes temporary files a killed run left there and, for a fresh
 * run, an earlier run's checkpoint, and writes args_json as
 * OUT/train_args.json. Returns an exit code or 0; path receives the
 * checkpoint's path. */
int cli_checkpoint_begin(const char *cmd, const struct cli_checkpoint *c, const struct cli_run_files *files,
                         struct delta_params *p, const char *args_json, char **settings,
                         struct trainer_position *pos, char *path, size_t size);
/* After the fit. A lost device: the message, the last checkpoint and the
 * command that resumes (returns EXIT_RUNTIME). Non-finite steps: what
 * happened and where. A stopped run: how to continue from the checkpoint. */
int cli_report_device_lost(const struct cli_checkpoint *c, const char *path);
void cli_report_nonfinite(const struct trainer_summary *sum, const char *log_path, bool tty);
void cli_report_resume(const struct cli_checkpoint *c, const char *path);

#endif
