/* vkpeft report, vkpeft compare and Ctrl-C during vkpeft train, as a user
 * runs them, on a tiny RoBERTa model folder the test writes: the report of
 * a real short run is one self-contained HTML page, a malformed log line
 * exits 2 naming file:line, compare prints a row per preset and valid
 * JSON, and SIGINT stops training with exit 130 and a delta that eval
 * loads. argv[1] is the path of the vkpeft binary. */
#include "clitest.h"
#include "model.h"
#include "safetensors.h"
#include "spec.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


static bool setup_done;

static bool setup(void) {
    if (setup_done) return true;
    snprintf(root, sizeof root, "/tmp/vkpeft-test-cli-report-XXXXXX");
    if (!CHECK(mkdtemp(root) != NULL)) return false;
    setup_done = write_model("model", "roberta", NULL) && write_task("train.jsonl", 320, 78, true) &&
                 write_task("dev.jsonl", 60, 77, true);
    return setup_done;
}

/* The whole of file `name` (malloc'd, NUL-terminated), or NULL. */
static char *read_text(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    const size_t got = text ? fread(text, 1, (size_t)n, f) : 0;
    fclose(f);
    if (text) text[got] = 0;
    return text;
}

/* The page stands alone: inline SVG, and no address of anything to fetch. */
static void check_page(const char *name) {
    char *html = read_text(name);
    if (!CHECKF(html != NULL, "%s is missing", name)) return;
    CHECKF(strncmp(html, "<!DOCTYPE html>", 15) == 0, "%s does not start as HTML", name);
    CHECKF(strstr(html, "<svg") != NULL, "%s has no SVG", name);
    CHECKF(strstr(html, "http") == NULL, "%s refers to a URL", name);
    CHECKF(strstr(html, "<script") == NULL, "%s has a script", name);
    CHECKF(strstr(html, "</html>") != NULL, "%s is cut short", name);
    free(html);
}

/* ------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------ */

static void help_for_each_command(void) {
    run("report --help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("usage: vkpeft report");
    run("compare --help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("usage: vkpeft compare");
    run("--help");
    EXPECT_OUTPUT("report");
    EXPECT_OUTPUT("compare");
}

/* A short real run: the log starts with the memory plan, and the report
 * names the metrics, the parameters and the pools. */
static void report_on_run(void) {
    if (!setup()) return;
    run("train --model model --delta lora:r=4 --data train.jsonl --eval dev.jsonl --out run1 "
        "--steps 30 --eval-every 10 --lr 1e-2 --batch 16 --dropout 0 --quiet");
    EXPECT_EXIT(0);
    char *log = read_text("run1/train.jsonl");
    if (CHECK(log != NULL)) {
        CHECKF(strncmp(log, "{\"type\":\"start\"", 15) == 0, "log does not open with the start line:\n%.300s", log);
        CHECK(strstr(log, "\"memory\":{\"frozen\"") != NULL);
        CHECK(strstr(log, "\"tokens\":") != NULL);
        free(log);
    }
    run("report run1");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("run1/report.html");
    check_page("run1/report.html");
    char *html = read_text("run1/report.html");
    const char *names[] = {"training loss", "learning rate", "accuracy", "macro_f1", "matthews",
                           "trainable (delta)", "% params", "activations", "staging", "lora"};
    for (size_t i = 0; html && i < sizeof names / sizeof names[0]; i++)
        CHECKF(strstr(html, names[i]) != NULL, "the report does not name '%s'", names[i]);
    free(html);
    run("report run1 --out elsewhere.html");
    EXPECT_EXIT(0);
    check_page("elsewhere.html");
    run("report nowhere");
    EXPECT_EXIT(2);
}

static void report_bad_input_exits_2(void) {
    if (!setup()) return;
    char path[512];
    snprintf(path, sizeof path, "%s/bad", root);
    if (!CHECK(mkdir(path, 0755) == 0)) return;
    write_text("bad/train.jsonl", "{\"type\":\"step\",\"step\":1,\"loss\":1.1,\"lr\":0.001}\n"
                                  "{\"type\":\"step\",\"step\":2,\"loss\":1.0,\"lr\":0.001}\n"
                                  "{\"type\":\"step\",\"step\":3,\"loss\n");
    run("report bad");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("bad/train.jsonl:3");
    CHECK(!exists("bad/report.html"));
    write_text("bad/train.jsonl", "{\"type\":\"step\",\"step\":1,\"loss\":1.1}\n{\"type\":\"eval\",\"loss\":1}\n");
    run("report bad");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("bad/train.jsonl:2");
    snprintf(path, sizeof path, "%s/empty", root);
    CHECK(mkdir(path, 0755) == 0);
    run("report empty");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("train.jsonl");
}

static void compare_presets(void) {
    if (!setup()) return;
    run("compare --model model --data train.jsonl --eval dev.jsonl --presets lora:r=4,a=8,bitfit,prefix:l=4 "
        "--steps 8 --lr 1e-2 --out cmp --json");
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const cJSON *presets = cJSON_GetObjectItem(j, "presets");
    CHECK(cJSON_GetArraySize(presets) == 3);
    const char *want[] = {"lora:r=4,a=8", "bitfit", "prefix:l=4"};
    for (int i = 0; i < 3 && cJSON_GetArraySize(presets) == 3; i++) {
        const cJSON *p = cJSON_GetArrayItem(presets, i);
        CHECKF(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(p, "preset")), want[i]) == 0, "row %d", i);
        CHECK(json_number(p, "trained_params") > 0);
        /* Not < 1: prefix tuning's training-time MLP outweighs this tiny model. */
        CHECK(json_number(p, "share_trained") > 0);
        CHECK(json_number(p, "saved_params") > 0 && json_number(p, "saved_params") <= json_number(p, "trained_params"));
        CHECK(json_number(p, "steps") == 8);
        const double acc = json_number(cJSON_GetObjectItem(p, "eval"), "accuracy");
        CHECK(acc >= 0 && acc <= 1);
        CHECK(isfinite(json_number(cJSON_GetObjectItem(p, "eval"), "matthews")));
        CHECK(json_number(cJSON_GetObjectItem(p, "peak_memory"), "frozen") > 0);
    }
    cJSON_Delete(j);
    CHECK(exists("cmp/lora_r_4_a_8/delta.json") && exists("cmp/bitfit/metrics.json"));
    check_page("cmp/compare.html");
    run("compare --model model --data train.jsonl --eval dev.jsonl --presets lora,bitfit --steps 4 --out cmp2");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("% params");
    EXPECT_OUTPUT("\nlora ");
    EXPECT_OUTPUT("\nbitfit ");
    run("compare --model model --data train.jsonl --eval dev.jsonl --presets lora,nosuch --steps 4 --out cmp3");
    EXPECT_EXIT(2);
    CHECK(!exists("cmp3"));
    run("compare --model model --data train.jsonl --eval dev.jsonl --presets lora --steps 4 --out cmp2");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("not empty");
}

/* Spawns vkpeft train into `out`, waits for its first step line, sends
 * `signals` SIGINTs and returns the exit code (-1 on a failure of the test
 * itself); the output goes to r.out. */
static int interrupt_training(const char *out, int signals) {
    int fds[2];
    if (!CHECK(pipe(fds) == 0)) return -1;
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (chdir(root) != 0) _exit(127);
        execl(vkpeft, vkpeft, "train", "--model", "model", "--delta", "lora:r=4", "--data", "train.jsonl",
              "--eval", "dev.jsonl", "--out", out, "--steps", "100000", "--batch", "16", "--lr", "1e-2", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    bool sent = false;
    const time_t start = time(NULL);
    for (;;) {
        const ssize_t got = read(fds[0], r.out + n, sizeof r.out - 1 - n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        n += (size_t)got;
        r.out[n] = 0;
        if (!sent && strstr(r.out, "step 1/")) {
            for (int k = 0; k < signals; k++) {
                if (k) usleep(20000); /* two signals at once would merge into one */
                kill(pid, SIGINT);
            }
            sent = true;
        }
        if (time(NULL) - start > 120) {
            kill(pid, SIGKILL);
            FAIL("no interruption after 120 s:\n%s", r.out);
            break;
        }
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECKF(sent, "no first step line:\n%s", r.out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Every line of a log parses: nothing is left half-written. want_interrupted:
 * 1 or 0 when the log must (not) end with an "interrupted" line, -1 either. */
static void check_log_lines(const char *name, int want_interrupted) {
    char *log = read_text(name);
    if (!CHECKF(log != NULL, "%s is missing", name)) return;
    bool interrupted = false;
    for (char *save = NULL, *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(line);
        CHECKF(cJSON_IsObject(o), "a bad line in %s: %s", name, line);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(o, "type"));
        if (type && strcmp(type, "interrupted") == 0) interrupted = json_number(o, "step") >= 1;
        cJSON_Delete(o);
    }
    if (want_interrupted >= 0) CHECK(interrupted == (want_interrupted == 1));
    free(log);
}

static void sigint_saves_delta(void) {
    if (!setup()) return;
    r.code = interrupt_training("intr", 1);
    EXPECT_EXIT(130);
    EXPECT_OUTPUT("interrupted at step");
    EXPECT_OUTPUT("intr");
    CHECK(exists("intr/delta.json") && exists("intr/delta.safetensors") && exists("intr/train_args.json"));
    check_log_lines("intr/train.jsonl", 1);
    run("eval --model model --delta intr --data dev.jsonl --json");
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    CHECK(json_number(j, "count") == 60);
    cJSON_Delete(j);
    run("report intr");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("report written");
    char *html = read_text("intr/report.html");
    CHECK(html && strstr(html, "interrupted after step"));
    free(html);
}

/* Two Ctrl-C: out at once with 130, and what was written is whole. (The
 * second signal may land after the trainer saw the first and stopped on
 * its own, so the log may or may not end with "interrupted".) */
static void second_sigint_exits_at_once(void) {
    if (!setup()) return;
    r.code = interrupt_training("intr2", 2);
    EXPECT_EXIT(130);
    check_log_lines("intr2/train.jsonl", -1);
    CHECK(exists("intr2/train_args.json"));
    char *args = read_text("intr2/train_args.json");
    cJSON *j = args ? cJSON_Parse(args) : NULL;
    CHECK(cJSON_IsObject(j));
    cJSON_Delete(j);
    free(args);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli_report PATH-TO-VKPEFT\n");
        return 2;
    }
    static char full[4096];
    vkpeft = realpath(argv[1], full) ? full : argv[1];
    static const struct th_case cases[] = {
        TH_CASE(help_for_each_command),  TH_CASE(report_on_run),       TH_CASE(report_bad_input_exits_2),
        TH_CASE(compare_presets),        TH_CASE(sigint_saves_delta),  TH_CASE(second_sigint_exits_at_once),
        TH_CASE(teardown),
    };
    return th_main(cases, sizeof cases / sizeof cases[0], argc - 1, argv + 1);
}
