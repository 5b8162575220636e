/* vkpeft train, eval and predict as a user runs them, on a tiny RoBERTa
 * model folder the test writes: train → eval → predict on files,
 * --init-delta, --help, and every kind of bad input exiting 2 with a
 * message that names the file, field or line, before --out exists.
 * argv[1] is the path of the vkpeft binary. */
#include "clitest.h"
#include "model.h"
#include "safetensors.h"
#include "spec.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static bool setup_done;

static bool setup(void) {
    if (setup_done) return true;
    snprintf(root, sizeof root, "/tmp/vkpeft-test-cli-train-XXXXXX");
    if (!CHECK(mkdtemp(root) != NULL)) return false;
    setup_done = write_model("model", "roberta", NULL) && write_task("train.jsonl", 640, 78, true) &&
                 write_task("dev.jsonl", 150, 77, true) && write_task("test.jsonl", 25, 79, false);
    return setup_done;
}

/* ------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------ */

static void help_for_each_command(void) {
    const char *cmds[] = {"train --help", "eval --help", "predict --help"};
    for (int i = 0; i < 3; i++) {
        run(cmds[i]);
        EXPECT_EXIT(0);
        EXPECT_OUTPUT("usage: vkpeft");
        EXPECT_OUTPUT("examples:");
    }
    run("--help");
    EXPECT_OUTPUT("train");
    EXPECT_OUTPUT("predict");
}

/* Train with evaluation, then eval and predict the saved delta; the
 * metrics agree and the files are complete. */
static void train_eval_predict(void) {
    if (!setup()) return;
    run("train --model model --delta lora:r=4 --data train.jsonl --eval dev.jsonl --out run1 "
        "--lr 1e-2 --epochs 3 --batch 16 --dropout 0 --warmup 10% --json --quiet");
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const char *files[] = {"run1/delta.json", "run1/delta.safetensors", "run1/train.jsonl",
                           "run1/train_args.json", "run1/metrics.json", "run1/adapter_config.json"};
    for (int i = 0; i < 6; i++) CHECKF(exists(files[i]), "%s is missing", files[i]);
    double acc_train = NAN;
    if (j) {
        CHECK(json_number(j, "steps") == 120);
        CHECK(json_number(j, "final_loss") < 0.5 * json_number(j, "first_loss"));
        acc_train = json_number(cJSON_GetObjectItem(j, "eval"), "accuracy");
        CHECKF(acc_train > 0.7, "dev accuracy %.3f after training", acc_train);
        th_diag("trained: loss %.3f -> %.3f, dev accuracy %.3f, %.1f ms/step", json_number(j, "first_loss"),
                json_number(j, "final_loss"), acc_train, json_number(j, "step_ms"));
        cJSON_Delete(j);
    }
    run("eval --model model --delta run1 --data dev.jsonl --json");
    EXPECT_EXIT(0);
    j = output_json();
    if (j) {
        CHECKF(json_number(j, "accuracy") == acc_train, "eval accuracy %.6f, training's %.6f",
               json_number(j, "accuracy"), acc_train);
        CHECK(json_number(j, "count") == 150);
        CHECK(json_number(j, "macro_f1") > 0.5 && json_number(j, "matthews") > 0.5);
        cJSON_Delete(j);
    }
    run("eval --model model --delta run1 --data dev.jsonl");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("accuracy");
    EXPECT_OUTPUT("Matthews");
    run("predict --model model --delta run1 --data test.jsonl --out preds.jsonl");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("wrote 25 predictions");
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/preds.jsonl", root);
    FILE *f = fopen(path, "r");
    int lines = 0;
    while (f && fgets(line, sizeof line, f)) {
        cJSON *p = cJSON_Parse(line);
        const cJSON *logits = cJSON_GetObjectItem(p, "logits");
        const int pred = (int)json_number(p, "pred");
        bool ok = cJSON_IsArray(logits) && cJSON_GetArraySize(logits) == 3 && pred >= 0 && pred < 3 &&
                  !cJSON_GetObjectItem(p, "label");
        for (int k = 0; ok && k < 3; k++)
            ok = cJSON_GetArrayItem(logits, k)->valuedouble <= cJSON_GetArrayItem(logits, pred)->valuedouble;
        CHECKF(ok, "bad prediction line: %s", line);
        cJSON_Delete(p);
        lines++;
    }
    if (f) fclose(f);
    CHECK(lines == 25);
    /* With labels: "label" appears, and the metrics are printed. */
    run("predict --model model --delta run1 --data dev.jsonl --out dev-preds.jsonl --json");
    EXPECT_EXIT(0);
    j = output_json();
    if (j) {
        CHECK(json_number(j, "accuracy") == acc_train && json_number(j, "predictions") == 150);
        cJSON_Delete(j);
    }
    snprintf(path, sizeof path, "%s/dev-preds.jsonl", root);
    f = fopen(path, "r");
    CHECK(f && fgets(line, sizeof line, f) && strstr(line, "\"label\": ") != NULL);
    if (f) fclose(f);
}

/* --init-delta starts from the saved values: with lr 0 the delta comes
 * out unchanged, so it evaluates exactly as the original. */
static void init_delta_continues(void) {
    if (!setup() || !exists("run1/delta.json")) return;
    run("train --model model --init-delta run1 --data train.jsonl --out run2 --lr 0 --steps 2 --quiet");
    EXPECT_EXIT(0);
    run("eval --model model --delta run1 --data dev.jsonl --json");
    cJSON *a = output_json();
    run("eval --model model --delta run2 --data dev.jsonl --json");
    cJSON *b = output_json();
    if (a && b) {
        CHECK(json_number(a, "accuracy") == json_number(b, "accuracy"));
        CHECK(json_number(a, "loss") == json_number(b, "loss"));
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    /* A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors,
     * the classifier in modules_to_save) starts training just as well. */
    const char *peft[] = {"adapter_config.json", "adapter_model.safetensors"};
    char peft_dir[600];
    snprintf(peft_dir, sizeof peft_dir, "%s/peft", root);
    bool copied = CHECK(mkdir(peft_dir, 0755) == 0);
    for (int k = 0; copied && k < 2; k++) {
        char from[600], to[600];
        void *data;
        size_t size;
        snprintf(from, sizeof from, "%s/run1/%s", root, peft[k]);
        snprintf(to, sizeof to, "%s/%s", peft_dir, peft[k]);
        copied = CHECK(vp_file_read(from, &data, &size) == VP_OK) && CHECK(vp_file_write_atomic(to, data, size) == VP_OK);
        if (copied) free(data);
    }
    if (copied) {
        run("train --model model --init-delta peft --data train.jsonl --out run4 --lr 0 --steps 1 --quiet");
        EXPECT_EXIT(0);
        run("eval --model model --delta run4 --data dev.jsonl --json");
        cJSON *c = output_json();
        run("eval --model model --delta run1 --data dev.jsonl --json");
        cJSON *d = output_json();
        if (c && d) CHECK(json_number(c, "loss") == json_number(d, "loss"));
        cJSON_Delete(c);
        cJSON_Delete(d);
    }
    /* A spec that does not match the saved tensors is refused before --out. */
    run("train --model model --delta adapter:r=2 --init-delta run1 --data train.jsonl --out run3 --steps 1");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--init-delta run1");
    CHECK(!exists("run3"));
}

/* The same seed gives the same loss curve from the command line too. */
static void same_seed_same_log(void) {
    if (!setup()) return;
    char a[1 << 14], b[1 << 14];
    const char *outs[2] = {"seed-a", "seed-b"};
    char *logs[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        char args[512], path[512];
        snprintf(args, sizeof args, "train --model model --delta mam:l=2,r=4 --data train.jsonl --out %s "
                 "--steps 15 --batch 8 --seed 3 --quiet", outs[k]);
        run(args);
        EXPECT_EXIT(0);
        snprintf(path, sizeof path, "%s/%s/train.jsonl", root, outs[k]);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(logs[k], 1, sizeof a - 1, f) : 0;
        logs[k][n] = 0;
        if (f) fclose(f);
    }
    /* Lines differ only in "elapsed": compare the losses. */
    int same = 0, lines = 0;
    const char *pa = a, *pb = b;
    while ((pa = strstr(pa, "\"loss\":")) && (pb = strstr(pb, "\"loss\":"))) {
        same += strtod(pa + 7, NULL) == strtod(pb + 7, NULL);
        lines++;
        pa++;
        pb++;
    }
    CHECKF(lines == 15 && same == 15, "%d of %d losses equal", same, lines);
}

/* Every bad input: exit 2, a message naming what is wrong and where, and
 * no --out. */
static void bad_input_exits_2(void) {
    if (!setup()) return;
    /* A truncated weights file. */
    if (write_model("truncated", "roberta", NULL)) {
        char path[512];
        snprintf(path, sizeof path, "%s/truncated/model.safetensors", root);
        struct stat st;
        CHECK(stat(path, &st) == 0 && truncate(path, st.st_size - 100) == 0);
    }
    run("train --model truncated --delta lora --data train.jsonl --out bad1");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("truncated/model.safetensors");
    EXPECT_OUTPUT("truncated");
    CHECK(!exists("bad1"));
    /* A header whose offsets do not match the tensor's size. */
    if (write_model("lying", "roberta", NULL)) {
        char path[512];
        snprintf(path, sizeof path, "%s/lying/model.safetensors", root);
        void *data;
        size_t size;
        if (CHECK(vp_file_read(path, &data, &size) == VP_OK)) {
            uint64_t n;
            memcpy(&n, data, 8);
            char *h = (char *)data + 8;
            char saved = h[n];
            h[n] = 0;
            cJSON *hdr = cJSON_Parse(h);
            h[n] = saved;
            cJSON *t = cJSON_GetObjectItem(hdr, "roberta.embeddings.LayerNorm.bias");
            cJSON *offs = cJSON_GetObjectItem(t, "data_offsets");
            if (CHECK(cJSON_IsArray(offs))) {
                cJSON *end = cJSON_GetArrayItem(offs, 1);
                cJSON_SetNumberValue(end, end->valuedouble + 8);
                char *text = cJSON_PrintUnformatted(hdr);
                size_t len = strlen(text);
                FILE *f = fopen(path, "wb");
                uint64_t len64 = len;
                fwrite(&len64, 8, 1, f);
                fwrite(text, 1, len, f);
                fwrite((char *)data + 8 + n, 1, size - 8 - n, f);
                fclose(f);
                free(text);
            }
            cJSON_Delete(hdr);
            free(data);
        }
    }
    run("train --model lying --delta lora --data train.jsonl --out bad2");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("lying/model.safetensors");
    EXPECT_OUTPUT("roberta.embeddings.LayerNorm.bias");
    CHECK(!exists("bad2"));
    /* A missing tensor. */
    write_model("missing", "roberta", "roberta.encoder.layer.1.output.dense.bias");
    run("train --model missing --delta lora --data train.jsonl --out bad3");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("roberta.encoder.layer.1.output.dense.bias");
    CHECK(!exists("bad3"));
    /* An unknown model_type. */
    write_model("gpt9", "gpt9", NULL);
    run("train --model gpt9 --delta lora --data train.jsonl --out bad4");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("gpt9/config.json");
    EXPECT_OUTPUT("model_type");
    CHECK(!exists("bad4"));
    /* A malformed spec: the field is named. */
    write_text("spec.json", "{\"modules\": [{\"kind\": \"adapter\", \"at\": \"nowhere\"}]}");
    run("train --model model --delta spec.json --data train.jsonl --out bad5");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("spec.json");
    EXPECT_OUTPUT("modules[0].at");
    CHECK(!exists("bad5"));
    run("train --model model --delta nosuchpreset --data train.jsonl --out bad5");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("not a delta preset");
    CHECK(!exists("bad5"));
    /* A label out of range, in the training and in the evaluation data. */
    write_text("badlabel.jsonl", "{\"input_ids\": [0, 3, 7], \"label\": 0}\n{\"input_ids\": [0, 4], \"label\": 1}\n"
                                 "{\"input_ids\": [0, 5, 9], \"label\": 3}\n");
    run("train --model model --delta lora --data badlabel.jsonl --out bad6");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("badlabel.jsonl:3:");
    EXPECT_OUTPUT("\"label\"");
    CHECK(!exists("bad6"));
    run("train --model model --delta lora --data train.jsonl --eval badlabel.jsonl --out bad7");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("badlabel.jsonl:3:");
    CHECK(!exists("bad7"));
    /* A token id outside the vocabulary, and a line that is not JSON. */
    write_text("badids.jsonl", "{\"input_ids\": [0, 3], \"label\": 0}\n{\"input_ids\": [0, 40], \"label\": 1}\n");
    run("train --model model --delta lora --data badids.jsonl --out bad8");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("badids.jsonl:2:");
    EXPECT_OUTPUT("input_ids");
    write_text("notjson.jsonl", "{\"input_ids\": [0, 3], \"label\": 0}\n{\"input_ids\": [0, 3\n");
    run("train --model model --delta lora --data notjson.jsonl --out bad8");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("notjson.jsonl:2:");
    CHECK(!exists("bad8"));
    /* Usage: missing or unknown options, bad values, files that are not there. */
    run("train --model model --delta lora --data train.jsonl");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--out is required");
    run("train --model model --delta lora --data train.jsonl --out bad9 --lr fast");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--lr 'fast'");
    run("train --model model --delta lora --data train.jsonl --out bad9 --frobnicate 3");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("unknown option '--frobnicate'");
    run("train --model model --delta lora --data nothere.jsonl --out bad9");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("nothere.jsonl");
    run("train --model nomodel --delta lora --data train.jsonl --out bad9");
    EXPECT_EXIT(2);
    run("train --model model --delta lora --data train.jsonl --out bad9 --max-len 100");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--max-len 100");
    run("train --model model --delta lora --data train.jsonl --out bad9 --optimizer adam");
    EXPECT_EXIT(2);
    CHECK(!exists("bad9"));
    /* A non-empty --out is refused unless --overwrite. */
    run("train --model model --delta lora --data train.jsonl --out run1 --steps 1");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--overwrite");
    /* eval and predict: the same checks, and predict leaves no file. */
    run("eval --model model --delta run1 --data badlabel.jsonl");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("badlabel.jsonl:3:");
    run("predict --model model --delta run1 --data badids.jsonl --out p.jsonl");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("badids.jsonl:2:");
    CHECK(!exists("p.jsonl"));
    run("eval --model model --delta nodelta --data dev.jsonl");
    EXPECT_EXIT(2);
    run("predict --model model --delta run1 --data dev.jsonl");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--out is required");
}

/* A plan over the memory budget fails before --out exists (exit 1: the
 * inputs are fine, the device is too small). */
static void over_budget_leaves_no_out(void) {
    if (!setup()) return;
    run_env("VKPEFT_BUDGET=1M", "train --model model --delta lora --data train.jsonl --out small --batch 64");
    EXPECT_EXIT(1);
    EXPECT_OUTPUT("memory plan");
    EXPECT_OUTPUT("or train with --checkpoint-activations (activations ");
    CHECK(!exists("small"));
}

/* bench train --profile on an encoder: MAM's step (prefixes, parallel
 * adapters) timed per kernel under its sites, the rows adding up to the
 * step (profile_consistent). */
static void bench_train_profile(void) {
    if (!setup()) return;
    run("bench train --model model --delta mam:l=4,r=8,s=2 --batch 2 --len 8 --steps 1 --profile --json");
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const cJSON *rows = j ? cJSON_GetObjectItemCaseSensitive(j, "profile") : NULL;
    if (j && profile_consistent(j))
        CHECKF(profile_has(rows, "forward attention", "attention_") && profile_has(rows, "backward ffn", "matmul_") &&
                   profile_has(rows, "forward adapter", "matmul_") && profile_has(rows, "backward adapter", "matmul_") &&
                   profile_has(rows, "forward prefix", "matmul_") && profile_has(rows, "backward prefix", "matmul_") &&
                   profile_has(rows, "optimizer", "adamw"),
               "%s", r.out);
    cJSON_Delete(j);
}

/* --checkpoint-activations on the encoder: the same delta byte for byte
 * (the model's dropout on: recomputed layers draw the forward's masks) for
 * LoRA, MAM (prefix + parallel adapter) and sequential adapters; the log's
 * start line has both activation figures; inspect plans both. */
static void checkpoint_activations_same_delta(void) {
    if (!setup()) return;
    static const char *const deltas[] = {"lora:r=4", "mam:l=2,r=4", "adapter:r=3"};
    for (size_t k = 0; k < sizeof deltas / sizeof deltas[0]; k++) {
        char args[512], a[64], b[64];
        for (int ck = 0; ck < 2; ck++) {
            snprintf(args, sizeof args, "train --model model --delta %s --data train.jsonl --out ck%zu-%d --steps 4 "
                     "--batch 8 --seed 5 --quiet%s", deltas[k], k, ck, ck ? " --checkpoint-activations" : "");
            run(args);
            EXPECT_EXIT(0);
        }
        snprintf(a, sizeof a, "ck%zu-0/delta.safetensors", k);
        snprintf(b, sizeof b, "ck%zu-1/delta.safetensors", k);
        CHECKF(same_bytes(a, b), "%s: the deltas differ", deltas[k]);
    }
    double with, without;
    CHECKF(log_activations("ck0-1/train.jsonl", &with, &without), "activations %g, without checkpointing %g", with,
           without);
    th_diag("roberta (2 layers), lora, batch 8: activations %.0f bytes checkpointed, %.0f without", with, without);
    run("inspect --model model --delta lora --batch 8 --max-len 16 --json");
    EXPECT_EXIT(0);
    cJSON *j = output_json(), *plan = cJSON_GetObjectItem(j, "plan");
    CHECKF(json_number(plan, "activations_checkpointed") > 0 &&
               json_number(plan, "activations_checkpointed") < json_number(plan, "activations"),
           "inspect: activations %g, checkpointed %g", json_number(plan, "activations"),
           json_number(plan, "activations_checkpointed"));
    cJSON_Delete(j);
}

int main(int argc, char **argv) {
    static const struct th_case cases[] = {
        TH_CASE(help_for_each_command), TH_CASE(train_eval_predict), TH_CASE(init_delta_continues),
        TH_CASE(same_seed_same_log),   TH_CASE(bad_input_exits_2),  TH_CASE(over_budget_leaves_no_out),
        TH_CASE(checkpoint_activations_same_delta), TH_CASE(bench_train_profile),
        TH_CASE(teardown),
    };
    return clitest_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
