/* Crash-safe checkpoints (vkpeft train --checkpoint-every, --resume): a
 * run killed with SIGKILL at random moments, some of them inside a
 * checkpoint write, always leaves a checkpoint that loads, and resuming
 * until it finishes gives the delta an uninterrupted run gives, byte for
 * byte (dropout on, so the random state must survive too). Also: the
 * settings a resume must share, non-finite steps (skip and stop), a lost
 * device and a failed allocation mid-run. */
#define _POSIX_C_SOURCE 200809L
#include "clitest.h"
#include "trainer.h"

#include <dirent.h>
#include <math.h>
#include <errno.h>
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
    snprintf(root, sizeof root, "/tmp/vkpeft-test-cli-resume-XXXXXX");
    if (!CHECK(mkdtemp(root) != NULL)) return false;
    setup_done = write_model("model", "roberta", NULL) && write_task("train.jsonl", 96, 78, true) &&
                 write_task("dev.jsonl", 24, 77, true);
    return setup_done;
}

/* 240 steps of 8 over 96 examples (20 epochs): evaluations at each
 * epoch's end, dropout on, a checkpoint every 2 steps. About 0.6 s to
 * start and 8 ms a step on lavapipe. */
#define TRAIN_ARGS                                                                                      \
    "train --model model --delta lora:r=4 --data train.jsonl --eval dev.jsonl --lr 1e-2 --epochs 20 "   \
    "--batch 8 --dropout 0.1 --warmup 4 --seed 7 --checkpoint-every 2 --quiet"

static bool read_file(const char *name, void **data, size_t *size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    return vp_file_read(path, data, size) == VP_OK;
}

static bool same_file(const char *a, const char *b) {
    void *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    const bool ok = read_file(a, &x, &nx) && read_file(b, &y, &ny) && nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return ok;
}

/* The "loss" values of the log's step lines, in order, as one string. */
static void step_losses(const char *name, char *out, size_t size) {
    void *data = NULL;
    size_t n = 0;
    out[0] = 0;
    if (!read_file(name, &data, &n)) return;
    size_t len = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "type"));
        if (type && (strcmp(type, "step") == 0 || strcmp(type, "eval") == 0) && len < size) {
            const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "loss");
            len += (size_t)snprintf(out + len, size - len, "%s %.17g;", type, cJSON_IsNumber(l) ? l->valuedouble : -1);
        }
        cJSON_Delete(o);
    }
    free(data);
}

static void kill_and_resume_is_bit_exact(void) {
    if (!setup()) return;
    struct kill_stats st;
    if (!kill_and_resume(TRAIN_ARGS, "ref", "k", 50, 20261204, &st)) return;
    CHECK(!exists("ref/checkpoint.vkpc")); /* a finished run's checkpoint is spent */
    CHECK(st.done && st.kills == 50 && st.resumes >= 10);
    CHECK(same_file("ref/delta.safetensors", "k/delta.safetensors"));
    CHECK(same_file("ref/adapter_model.safetensors", "k/adapter_model.safetensors"));
    CHECK(same_file("ref/metrics.json", "k/metrics.json"));
    char a[8192], b[8192];
    step_losses("ref/train.jsonl", a, sizeof a);
    step_losses("k/train.jsonl", b, sizeof b);
    CHECKF(a[0] && strcmp(a, b) == 0, "the resumed log differs:\n%s\n%s", a, b);
    /* No temporary file outlives the run that finished. */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/k", root);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        CHECKF(strstr(e->d_name, ".tmp.") == NULL, "left behind: k/%s", e->d_name);
    if (d) closedir(d);
    void *log = NULL;
    size_t n = 0;
    if (read_file("run.log", &log, &n))
        CHECKF(strstr(log, "vkpeft: validation") == NULL, "validation message:\n%s", (char *)log);
    free(log);
}

/* A resume must run the same settings on the same data. */
static void resume_refuses_other_settings(void) {
    if (!setup()) return;
    run_env("VKPEFT_TEST_FAULT=submit:9", TRAIN_ARGS " --out s");
    CHECK(r.code == 1 && exists("s/checkpoint.vkpc"));
    run(TRAIN_ARGS " --out s --resume --lr 2e-2");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--resume: the checkpoint's run has lr 0.01, this one 0.02");
    run(TRAIN_ARGS " --out s --resume --seed 8");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("seed");
    write_text("train2.jsonl", "");
    void *data = NULL;
    size_t size = 0;
    if (CHECK(read_file("train.jsonl", &data, &size))) {
        ((char *)data)[10] = ((char *)data)[10] == '1' ? '2' : '1';
        char path[512];
        snprintf(path, sizeof path, "%s/train2.jsonl", root);
        CHECK(vp_file_write_atomic(path, data, size) == VP_OK);
    }
    free(data);
    run("train --model model --delta lora:r=4 --data train2.jsonl --eval dev.jsonl --lr 1e-2 --epochs 20 "
        "--batch 8 --dropout 0.1 --warmup 4 --seed 7 --checkpoint-every 2 --quiet --out s --resume");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("train");
    run(TRAIN_ARGS " --out nothing-here --resume");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("has no checkpoint");
    run(TRAIN_ARGS " --out s --resume --overwrite");
    EXPECT_EXIT(2);
    /* A damaged checkpoint is named, not trusted. */
    char path[512];
    snprintf(path, sizeof path, "%s/s/checkpoint.vkpc", root);
    FILE *f = fopen(path, "r+b");
    if (CHECK(f != NULL)) {
        fseek(f, 200, SEEK_SET);
        fputc(0x5a, f);
        fclose(f);
    }
    run(TRAIN_ARGS " --out s --resume");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("checksum does not match");
}

/* VKPEFT_TEST_FAULT=submit:k loses the device at the k-th submission: the
 * message names the last checkpoint and the command that resumes, and the
 * resumed run ends where an uninterrupted one does. */
static void device_lost_names_the_checkpoint(void) {
    if (!setup()) return;
    run_env("VKPEFT_TEST_FAULT=submit:20", TRAIN_ARGS " --out lost");
    EXPECT_EXIT(1);
    EXPECT_OUTPUT("the device was lost during training");
    EXPECT_OUTPUT("VK_ERROR_DEVICE_LOST");
    EXPECT_OUTPUT("the last checkpoint is lost/checkpoint.vkpc (after step");
    EXPECT_OUTPUT("--out lost --resume");
    run(TRAIN_ARGS " --out lost --resume");
    EXPECT_EXIT(0);
    if (exists("ref/delta.safetensors")) CHECK(same_file("ref/delta.safetensors", "lost/delta.safetensors"));
}

/* An allocation failure mid-run is reported with its pool and size. */
static void allocation_failure_is_reported(void) {
    if (!setup()) return;
    run_env("VKPEFT_TEST_FAULT=alloc:3", TRAIN_ARGS " --out oom");
    EXPECT_EXIT(1);
    EXPECT_OUTPUT("VK_ERROR_OUT_OF_DEVICE_MEMORY");
    EXPECT_OUTPUT("pool: a ");
}

/* A copy of "model" whose word embedding for token 39 is NaN: every batch
 * holding that token has a NaN loss and NaN gradients. nf.jsonl has 62
 * examples without it and 2 with it. */
static bool write_poisoned(void) {
    if (exists("nanmodel/config.json")) return true;
    if (!write_model("nanmodel", "roberta", NULL)) return false;
    void *data = NULL;
    size_t size = 0;
    if (!CHECK(read_file("nanmodel/model.safetensors", &data, &size))) return false;
    uint64_t hlen;
    memcpy(&hlen, data, 8);
    cJSON *h = cJSON_ParseWithLength((const char *)data + 8, (size_t)hlen);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, "roberta.embeddings.word_embeddings.weight");
    const cJSON *off = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "data_offsets"), 0);
    const char *dtype = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "dtype"));
    bool ok = CHECK(cJSON_IsNumber(off) && dtype && strcmp(dtype, "F32") == 0);
    if (ok) {
        float *row = (float *)((char *)data + 8 + hlen + (size_t)off->valuedouble) + 39 * 32;
        for (int k = 0; k < 32; k++) row[k] = NAN;
        char path[512];
        snprintf(path, sizeof path, "%s/nanmodel/model.safetensors", root);
        ok = CHECK(vp_file_write_atomic(path, data, size) == VP_OK);
    }
    cJSON_Delete(h);
    free(data);
    char path[512];
    snprintf(path, sizeof path, "%s/nf.jsonl", root);
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL)) return false;
    uint64_t st = 5;
    for (int i = 0; i < 64; i++) {
        fprintf(f, "{\"input_ids\": [0");
        for (int k = 0; k < 8; k++) fprintf(f, ", %d", (i == 20 || i == 50) && k == 3 ? 39 : 6 + (int)(th_rand_u64(&st) % 33));
        fprintf(f, "], \"label\": %d}\n", i % 3);
    }
    return CHECK(fclose(f) == 0) && ok;
}

/* The steps the log marks non-finite. */
static int nonfinite_steps_of(const char *name, uint64_t *steps, int max) {
    void *data = NULL;
    size_t n = 0;
    int count = 0;
    if (!read_file(name, &data, &n)) return 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "type"));
        if (type && strcmp(type, "nonfinite") == 0 && count < max)
            steps[count++] = (uint64_t)json_number(o, "step");
        cJSON_Delete(o);
    }
    free(data);
    return count;
}

#define NF_ARGS                                                                                          \
    "train --model nanmodel --delta lora:r=4 --data nf.jsonl --lr 1e-2 --batch 8 --dropout 0 "          \
    "--schedule constant --seed 3 --quiet"

/* skip: the run goes on past the NaN batches, names the first tensor whose
 * gradient went non-finite, and a skipped step changes nothing (the delta
 * after it is the delta before it, byte for byte; the next step changes
 * it); stop: exit 1 at the first one, no delta. */
static void nonfinite_steps(void) {
    if (!setup() || !write_poisoned()) return;
    run(NF_ARGS " --steps 16 --out nf-skip");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("its update skipped");
    EXPECT_OUTPUT("first non-finite gradient: ");
    uint64_t bad[16];
    const int nbad = nonfinite_steps_of("nf-skip/train.jsonl", bad, 16);
    CHECKF(nbad >= 1 && nbad <= 4, "%d non-finite steps", nbad);
    if (nbad < 1) return;
    th_diag("non-finite steps: %d, the first at step %llu", nbad, (unsigned long long)bad[0]);
    const uint64_t k = bad[0];
    char cmd[1024];
    /* With a constant schedule a shorter run is a prefix of a longer one. */
    if (k > 1) {
        snprintf(cmd, sizeof cmd, NF_ARGS " --steps %llu --out nf-before", (unsigned long long)(k - 1));
        run(cmd);
        EXPECT_EXIT(0);
        snprintf(cmd, sizeof cmd, NF_ARGS " --steps %llu --out nf-at", (unsigned long long)k);
        run(cmd);
        EXPECT_EXIT(0);
        CHECKF(same_file("nf-before/delta.safetensors", "nf-at/delta.safetensors"),
               "the skipped step %llu changed the delta", (unsigned long long)k);
        if (nbad == 1 || bad[1] != k + 1) {
            snprintf(cmd, sizeof cmd, NF_ARGS " --steps %llu --out nf-after", (unsigned long long)(k + 1));
            run(cmd);
            EXPECT_EXIT(0);
            CHECK(!same_file("nf-at/delta.safetensors", "nf-after/delta.safetensors"));
        }
    }
    run(NF_ARGS " --steps 16 --out nf-stop --on-nonfinite stop");
    EXPECT_EXIT(1);
    EXPECT_OUTPUT("stopped there (--on-nonfinite stop)");
    CHECK(!exists("nf-stop/delta.safetensors"));
    run("train --model model --delta lora --data train.jsonl --out x --on-nonfinite maybe");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--on-nonfinite wants skip or stop");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli_resume PATH-TO-VKPEFT\n");
        return 2;
    }
    static char full[4096];
    vkpeft = realpath(argv[1], full) ? full : argv[1];
    static const struct th_case cases[] = {
        TH_CASE(kill_and_resume_is_bit_exact), TH_CASE(resume_refuses_other_settings),
        TH_CASE(device_lost_names_the_checkpoint), TH_CASE(allocation_failure_is_reported),
        TH_CASE(nonfinite_steps), TH_CASE(teardown),
    };
    return th_main(cases, sizeof cases / sizeof cases[0], argc - 1, argv + 1);
}
