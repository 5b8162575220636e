/* Shared by the CLI tests (test_cli_train.c, test_cli_lm.c, test_cli_seq2seq.c, test_cli_merge.c,
 * test_cli_report.c): running vkpeft in a test folder and checking its exit
 * code and output, and writing a tiny RoBERTa model folder and a synthetic
 * classification task into that folder. */
#ifndef VKPEFT_TESTS_CLITEST_H
#define VKPEFT_TESTS_CLITEST_H

#include "harness.h"

#include <cjson/cJSON.h>

extern const char *vkpeft; /* the binary under test (argv[1]) */

/* A CLI test's main: argv[1] is the vkpeft binary (made absolute, since the
 * commands run in the test's folder), the rest select cases (th_main). */
int clitest_main(int argc, char **argv, const struct th_case *cases, size_t count);
extern char root[256];     /* the test's folder; commands run there */

struct result {
    int code;
    char out[1 << 17]; /* stdout and stderr together */
};
extern struct result r;    /* the last command's */

/* Runs "env <env> vkpeft <args>" in root through the shell; a validation
 * message in the output fails the case. */
void run_env(const char *env, const char *args);
void run(const char *args);

#define EXPECT_EXIT(want) CHECKF(r.code == (want), "exit code %d, want %d; output:\n%s", r.code, (want), r.out)
#define EXPECT_OUTPUT(text) CHECKF(strstr(r.out, (text)) != NULL, "output lacks '%s':\n%s", (text), r.out)

bool exists(const char *name);                       /* root/name */
/* "root/name" in one of four rotating static buffers (up to four in use at once). */
char *path_in(const char *name);
/* root/a and root/b exist, are not empty and hold the same bytes (not a check by itself). */
bool same_bytes(const char *a, const char *b);
/* The start line of the training log root/name: the activations planned
 * with checkpointing and without; true when both are there and with < without. */
bool log_activations(const char *name, double *with, double *without);
/* The last case of every CLI test: removes root (when it was made). */
void teardown(void);
bool write_text(const char *name, const char *text); /* root/name */
cJSON *output_json(void);                            /* the JSON object in r.out */
/* root/dir/tokenizer.json (+ tokenizer_config.json): WordLevel over [PAD] 0,
 * [UNK] 1, <s> 2, </s> 3, x0..x7 4..11, y0..y7 12..19, split on spaces;
 * bos_eos: the template <s> A </s>, else none. */
bool write_xy_tokenizer(const char *dir, bool bos_eos);
double json_number(const cJSON *o, const char *key); /* NaN when absent */
/* The --profile output of a bench command's JSON j ("profile" rows and
 * "profile_step"): the rows' calls add up to the step's commands (those of
 * kernels to its dispatches), their times (each ≥ 0, largest first) to its
 * GPU span, their shares to 100%, their calls after a barrier to its
 * barriers (a barrier or more, fewer than commands); kernels have a
 * workgroup or more per call, copies and fills none.
 * Checks each (failing the case) and returns whether all held. */
bool profile_consistent(const cJSON *j);
/* inspect --json's "generation" in j: `rows` rows and `new_tokens` new
 * tokens; each pool's total the model's plus the generator's; the
 * generator only in the activations pool (at least `cache_bytes`, what
 * its caches alone take) and staging; with same_shape (the generation
 * loads the model at the memory plan's shape) the model's bytes are
 * "plan"'s. Checks each (failing the case); true when all held. */
bool generation_plan_consistent(const cJSON *j, int rows, int new_tokens, double cache_bytes, bool same_shape);
/* A row of "profile" rows whose kernel starts with `kernel` and whose site
 * is `site` (NULL: any). */
bool profile_has(const cJSON *rows, const char *site, const char *kernel);

/* Writes folder root/name: config.json of a tiny roberta-shaped model
 * (model_type as given, vocab 40, d 32, 2 layers, 3 labels) and
 * model.safetensors with random weights; `skip` names a tensor to leave
 * out (NULL: none). */
bool write_model(const char *name, const char *model_type, const char *skip);
struct refm;
/* Writes a reference model's tensors whose names start with one of
 * `prefixes` (NULL-terminated), except `skip` (may be NULL), as F32
 * safetensors at `path`. */
bool write_reference_weights(const char *path, struct refm *m, const char *const *prefixes, const char *skip);
/* root/name: JSONL where the label is which marker (3, 4, 5) a sequence holds. */
bool write_task(const char *name, int count, uint64_t seed, bool labels);

/* Kill-and-resume (SIGKILL at random moments): spawn_vkpeft starts
 * "vkpeft <args>" in root with output appended to root/run.log (env: one
 * VAR=value or NULL); checkpoint_loads checks that dir/checkpoint.vkpc, if
 * there, loads (false when absent); kill_and_resume first runs `args --out
 * ref` whole (timed; false, with a failed check, when it fails), then runs
 * `args --out out` (fresh, then --resume) until it has been killed
 * kill_trials times, each run at a random moment from 5% to 25% of the
 * whole run's time (so the kills land inside runs on a fast GPU and on a
 * loaded CPU alike; a third of the runs pause inside checkpoint writes),
 * then lets it finish. A run that finishes first is followed by a fresh
 * one. */
struct kill_stats {
    int kills, inside_write, resumes, fresh;
    uint64_t last; /* the last checkpoint's step */
    bool done;     /* a run finished with exit 0 */
};
int spawn_vkpeft(const char *env, const char *args);
bool checkpoint_loads(const char *dir, uint64_t *step);
bool kill_and_resume(const char *args, const char *ref, const char *out, int kill_trials, uint64_t seed,
                     struct kill_stats *st);

#endif
