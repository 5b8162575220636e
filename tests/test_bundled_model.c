/* The bundled model (models/mini-bert) and task (models/plausibility) as
 * shipped, and the job `make run` runs on them:
 * - the folder is complete: config.json, tokenizer.json and the weights agree
 *   and `vkpeft inspect` plans the make-run delta on it;
 * - every task line encodes without [UNK], the splits have their sizes and
 *   balanced labels;
 * - the weights are pretrained: on a corpus freshly generated with a seed the
 *   pretraining never saw, the masked-LM head predicts masked tokens far
 *   above what a random model does (measured 0.58; random init gives 0);
 * - the make-run training command, shortened, trains, saves and reports.
 *
 * argv[1]: vkpeft, argv[2]: the models/ folder, argv[3]: make-corpus.py. */
#include "clitest.h"
#include "tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *models, *make_corpus;
/* The delta `make run` trains (the Makefile's RUN_ARGS). */
#define RUN_DELTA "mam:l=16,r=128,s=4"

static bool setup(void) {
    if (root[0]) return true;
    snprintf(root, sizeof root, "/tmp/vkpeft-test-bundled-XXXXXX");
    return CHECK(mkdtemp(root) != NULL);
}

static const char *model_dir(void) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s/mini-bert", models);
    return dir;
}

static void model_folder_is_complete(void) {
    if (!setup()) return;
    struct tok_tokenizer *tok;
    if (!CHECKF(tok_tokenizer_load(model_dir(), &tok) == VP_OK, "%s", vp_last_error())) return;
    const int32_t vocab = tok_vocab_size(tok);
    tok_tokenizer_free(tok);
    char args[8192];
    snprintf(args, sizeof args, "inspect --model '%s' --delta " RUN_DELTA " --batch 32 --max-len 32 --json",
             model_dir());
    run(args);
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const cJSON *model = cJSON_GetObjectItem(j, "model");
    CHECKF(model && json_number(model, "vocab_size") == vocab, "vocabulary: tokenizer %d, inspect %s", (int)vocab,
           r.out);
    CHECKF(json_number(j, "model_params") > 1e6 && model && cJSON_IsTrue(cJSON_GetObjectItem(model, "weights")), "model parameters: %s", r.out);
    cJSON_Delete(j);
}

/* Reads one split: every line's text encodes without [UNK]; counts labels. */
static void check_split(struct tok_tokenizer *tok, const char *name, int want_lines) {
    char path[4096];
    snprintf(path, sizeof path, "%s/plausibility/%s", models, name);
    FILE *f = fopen(path, "r");
    if (!CHECKF(f != NULL, "cannot open %s", path)) return;
    const int32_t unk = tok_special_ids(tok).unk;
    char line[4096];
    int lines = 0, plausible = 0, unknown = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *text = cJSON_GetObjectItem(o, "text"), *label = cJSON_GetObjectItem(o, "label");
        if (!CHECKF(cJSON_IsString(text) && cJSON_IsString(label), "%s:%d: no text or label", path, lines + 1)) {
            cJSON_Delete(o);
            break;
        }
        struct tok_encoding e = {0};
        if (CHECKF(tok_encode(tok, text->valuestring, NULL, true, 64, &e) == VP_OK, "%s", vp_last_error()))
            for (int i = 0; i < e.len; i++) unknown += e.ids[i] == unk;
        tok_encoding_free(&e);
        plausible += strcmp(label->valuestring, "plausible") == 0;
        lines++;
        cJSON_Delete(o);
    }
    fclose(f);
    CHECKF(lines == want_lines, "%s: %d lines, want %d", path, lines, want_lines);
    CHECKF(unknown == 0, "%s: %d [UNK] tokens", path, unknown);
    /* Labels are drawn with probability 1/2 each: within 3 binomial standard
     * deviations (3·√n/2) of half. */
    CHECKF(fabs(plausible - lines / 2.0) <= 1.5 * sqrt(lines), "%s: %d of %d plausible, want about half", path,
           plausible, lines);
}

static void task_encodes_without_unknowns(void) {
    struct tok_tokenizer *tok;
    if (!CHECKF(tok_tokenizer_load(model_dir(), &tok) == VP_OK, "%s", vp_last_error())) return;
    check_split(tok, "train.jsonl", 2000);
    check_split(tok, "dev.jsonl", 500);
    tok_tokenizer_free(tok);
}

/* One pretraining step at learning rate 0 changes nothing and evaluates the
 * shipped masked-LM head on text from a corpus seed pretraining never used.
 * Bound: a random model scores ~1/vocab (0 measured); the shipped one 0.58. */
static void model_is_pretrained(void) {
    if (!setup()) return;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 '%s' --corpus held.txt --task unused --sentences 500 --seed 9 "
             "--train 10 --dev 10", root, make_corpus);
    if (!CHECKF(system(cmd) == 0, "failed: %s", cmd)) return;
    snprintf(cmd, sizeof cmd, "pretrain --model '%s' --data held.txt --eval held.txt --out mlm --steps 1 --lr 0 "
             "--weight-decay 0 --batch 8 --max-len 32 --quiet --json", model_dir());
    run(cmd);
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const cJSON *ev = cJSON_GetObjectItem(j, "eval");
    const double acc = ev ? json_number(ev, "masked_accuracy") : NAN;
    CHECKF(acc > 0.45, "masked-token accuracy %g on unseen text, want > 0.45: %s", acc, r.out);
    cJSON_Delete(j);
}

/* `make run`'s command with a step budget instead of epochs. */
static void make_run_job_trains(void) {
    if (!setup()) return;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "train --model '%s' --data '%s/plausibility/train.jsonl' --eval "
             "'%s/plausibility/dev.jsonl' --out run --delta " RUN_DELTA " --batch 32 --steps 8 --lr 2e-3 "
             "--warmup 6%% --max-len 32 --seed 1", model_dir(), models, models);
    run(cmd);
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("eval: accuracy");
    static const char *const files[] = {"run/delta.safetensors", "run/delta.json", "run/train.jsonl",
                                        "run/metrics.json"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) CHECKF(exists(files[k]), "%s missing", files[k]);
    run("report run");
    EXPECT_EXIT(0);
    CHECK(exists("run/report.html"));
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: test_bundled_model VKPEFT MODELS-DIR MAKE-CORPUS.py [CASE]\n");
        return 2;
    }
    static char full[4096];
    vkpeft = realpath(argv[1], full) ? full : argv[1];
    static char models_full[4096], corpus_full[4096];
    models = realpath(argv[2], models_full) ? models_full : argv[2];
    make_corpus = realpath(argv[3], corpus_full) ? corpus_full : argv[3];
    static const struct th_case cases[] = {
        TH_CASE(model_folder_is_complete), TH_CASE(task_encodes_without_unknowns), TH_CASE(model_is_pretrained),
        TH_CASE(make_run_job_trains), TH_CASE(teardown),
    };
    return th_main(cases, sizeof cases / sizeof cases[0], argc - 3, argv + 3);
}
