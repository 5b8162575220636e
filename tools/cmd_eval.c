/* vkpeft eval and vkpeft predict: a trained delta on a data set (JSONL,
 * CSV, TSV), with classification metrics, or predictions written to a
 * JSONL file; eval also scores a model with its own trained head (no
 * --delta: a fine-tuned or merged folder). */
#include "cli.h"
#include "cli_data.h"
#include "cli_lm.h"
#include "merge.h"
#include "save.h"
#include "trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char eval_help[] =
    "usage: vkpeft eval --model DIR [--delta DIR] --data FILE [--batch B] [--max-len T]\n"
    "                   [--weights f32|f16|bf16] [--json] [--device N|name]\n"
    "\n"
    "Runs the model with a trained delta (a folder written by 'vkpeft train', or a\n"
    "PEFT LoRA or decoder prefix-tuning folder) over labelled examples and reports accuracy,\n"
    "macro-F1, Matthews correlation and the mean cross-entropy. Dropout is off.\n"
    "Without --delta the model is scored as it is, with the classification head its\n"
    "folder holds (a fine-tuned checkpoint, or one written by 'vkpeft merge'); a\n"
    "folder without one (a bare pretrained BERT/RoBERTa) is an error.\n"
    "Data is JSONL ({\"input_ids\": [...], \"label\": k}, or text fields), CSV or\n"
    "TSV with a header row; text is encoded with the model's tokenizer.json.\n"
    "Label names map through the names saved with the delta (without --delta:\n"
    "config.json's id2label); a name they do not know is an error.\n"
    "\n"
    "options:\n"
    "  --model DIR        the base model the delta was trained on (no --delta: the\n"
    "                     model with its head)\n"
    "  --delta DIR        the trained delta (optional)\n"
    "  --data FILE        the examples (.jsonl, .csv or .tsv)\n"
    "  --batch B          sequences per batch (default 32)\n"
    "  --max-len T        truncate sequences to T tokens (default: the model's limit)\n"
    "  --weights TYPE     storage of the frozen matrices: f32, f16 or bf16\n"
    "  --skip-bad         skip malformed lines instead of failing\n"
    "  --json             machine-readable output\n"
    "  (and --format, --text-field, --text-pair-field, --label-field as for train)\n"
    "\n"
    "examples:\n"
    "  vkpeft eval --model models/roberta-base --delta runs/rte-lora --data glue/RTE/dev.tsv\n"
    "  vkpeft eval --model models/roberta-base --delta runs/sst2-lora --data sst2/dev.jsonl\n"
    "  vkpeft eval --model models/roberta-base --delta runs/sst2-lora --data dev.jsonl --json\n"
    "  vkpeft eval --model runs/sst2-merged --data dev.jsonl --json\n";

static const char predict_help[] =
    "usage: vkpeft predict --model DIR --delta DIR --data FILE --out preds.jsonl [--batch B]\n"
    "                      [--max-len T] [--weights f32|f16|bf16] [--json] [--device N|name]\n"
    "\n"
    "Writes one JSON line per example, in the input's order:\n"
    "  {\"logits\": [-1.2, 2.3], \"pred\": 1, \"pred_name\": \"positive\", \"label\": 1,\n"
    "   \"label_name\": \"positive\"}\n"
    "(\"label\" only when the example has one; the names when the delta saved\n"
    "them: label names from the training data, or the model's id2label). Data is\n"
    "JSONL, CSV or TSV as for eval. The file appears whole when done\n"
    "(written to a temporary file, then renamed). With labelled examples the\n"
    "metrics are printed too.\n"
    "\n"
    "options:\n"
    "  --model DIR        the base model the delta was trained on\n"
    "  --delta DIR        the trained delta\n"
    "  --data FILE        the examples (.jsonl, .csv or .tsv; labels optional)\n"
    "  --out FILE         where the predictions go\n"
    "  --batch B          sequences per batch (default 32)\n"
    "  --max-len T        truncate sequences to T tokens (default: the model's limit)\n"
    "  --weights TYPE     storage of the frozen matrices: f32, f16 or bf16\n"
    "  --skip-bad         skip malformed lines instead of failing\n"
    "  --json             print the summary as JSON\n"
    "  (and --format, --text-field, --text-pair-field, --label-field as for train)\n"
    "\n"
    "examples:\n"
    "  vkpeft predict --model models/roberta-base --delta runs/rte-lora --data glue/RTE/test.tsv \\\n"
    "        --out runs/rte-lora/test-preds.jsonl\n"
    "  vkpeft predict --model models/roberta-base --delta runs/sst2-lora --data test.jsonl \\\n"
    "        --out runs/sst2-lora/test-preds.jsonl\n";

struct eval_args {
    const char *cmd;
    bool predict;
    struct cli_common common;
    const char *model, *delta, *data, *out;
    int batch, max_len;
    bool skip_bad;
    enum encoder_storage storage;
    struct cli_data data_opt;
};

static int parse_args(int argc, char **argv, struct eval_args *a) {
    a->batch = 32;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(a->predict ? predict_help : eval_help, stdout);
            return -1;
        }
        if (cli_common_option(argc, argv, &i, &a->common)) continue;
        if (strcmp(arg, "--skip-bad") == 0) {
            a->skip_bad = true;
            continue;
        }
        const char *const takes[] = {"--model", "--delta", "--data", "--out", "--batch", "--max-len",
                                     "--max-length", "--weights"};
        bool known = cli_data_takes(arg);
        for (size_t k = 0; k < sizeof takes / sizeof takes[0]; k++)
            known |= strcmp(arg, takes[k]) == 0 && (a->predict || strcmp(arg, "--out") != 0);
        if (!known) return cli_usage_error(a->cmd, "unknown option '%s'", arg);
        if (!next) return cli_usage_error(a->cmd, "%s needs a value", arg);
        i++;
        char *end;
        const int d = cli_data_option(a->cmd, &a->data_opt, arg, next);
        if (d > 0) return d;
        if (d == 0) continue;
        if (strcmp(arg, "--model") == 0) a->model = next;
        else if (strcmp(arg, "--delta") == 0) a->delta = next;
        else if (strcmp(arg, "--data") == 0) a->data = next;
        else if (strcmp(arg, "--out") == 0) a->out = next;
        else if (strcmp(arg, "--weights") == 0) {
            if (strcmp(next, "f32") == 0) a->storage = ENCODER_STORAGE_F32;
            else if (strcmp(next, "f16") == 0) a->storage = ENCODER_STORAGE_F16;
            else if (strcmp(next, "bf16") == 0) a->storage = ENCODER_STORAGE_BF16;
            else return cli_usage_error(a->cmd, "--weights '%s': use f32, f16 or bf16", next);
        } else {
            errno = 0;
            long v = strtol(next, &end, 10);
            if (errno || *end || end == next || v < 1 || v > 1 << 20)
                return cli_usage_error(a->cmd, "%s '%s' must be a positive integer", arg, next);
            if (strcmp(arg, "--batch") == 0) a->batch = (int)v;
            else a->max_len = (int)v;
        }
    }
    if (!a->model) return cli_usage_error(a->cmd, "--model is required");
    if (a->predict && !a->delta) return cli_usage_error(a->cmd, "--delta is required");
    if (!a->data) return cli_usage_error(a->cmd, "--data is required");
    if (a->predict && !a->out) return cli_usage_error(a->cmd, "--out is required");
    return 0;
}

/* Predictions stream into a file published at the end. */
struct writer {
    struct train_file file;
    bool open;
    uint64_t lines;
    char **names; /* (count) the delta's label names (owned), or config.json's (the arch's), or NULL */
    int count;
};

/* `"key": "value"` with the value escaped as JSON. */
static vp_status write_name(struct writer *w, const char *key, int id) {
    if (!w->names || id < 0 || id >= w->count) return VP_OK;
    cJSON *item = cJSON_CreateString(w->names[id]);
    char *quoted = item ? cJSON_PrintUnformatted(item) : NULL;
    cJSON_Delete(item);
    vp_status s = quoted ? train_file_printf(&w->file, ", \"%s\": %s", key, quoted)
                         : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    free(quoted);
    return s;
}

static vp_status write_prediction(void *user, uint64_t index, const float *logits, int classes, int pred,
                                  int32_t label) {
    struct writer *w = user;
    (void)index;
    vp_status s = train_file_printf(&w->file, "{\"logits\": [");
    for (int k = 0; k < classes && s == VP_OK; k++) {
        if (isfinite(logits[k])) s = train_file_printf(&w->file, "%s%.9g", k ? ", " : "", (double)logits[k]);
        else s = train_file_printf(&w->file, "%snull", k ? ", " : "");
    }
    if (s == VP_OK) s = train_file_printf(&w->file, "], \"pred\": %d", pred);
    if (s == VP_OK) s = write_name(w, "pred_name", pred);
    if (s == VP_OK && label >= 0) s = train_file_printf(&w->file, ", \"label\": %d", label);
    if (s == VP_OK && label >= 0) s = write_name(w, "label_name", label);
    if (s == VP_OK) s = train_file_printf(&w->file, "}\n");
    w->lines++;
    return s;
}

static void print_result(const struct eval_args *a, const struct trainer_eval_result *r, const struct writer *w) {
    if (a->common.json) {
        char *text = train_eval_json(r);
        cJSON *o = text ? cJSON_Parse(text) : NULL;
        free(text);
        if (!o) return;
        if (a->predict) {
            cJSON_AddStringToObject(o, "out", a->out);
            cJSON_AddNumberToObject(o, "predictions", (double)w->lines);
        }
        if (!r->labelled) {
            cJSON_DeleteItemFromObject(o, "accuracy");
            cJSON_DeleteItemFromObject(o, "macro_f1");
            cJSON_DeleteItemFromObject(o, "matthews");
            cJSON_DeleteItemFromObject(o, "loss");
        }
        char *out = cJSON_Print(o);
        puts(out);
        free(out);
        cJSON_Delete(o);
        return;
    }
    if (a->predict) printf("wrote %llu predictions to %s\n", (unsigned long long)w->lines, a->out);
    if (r->labelled)
        printf("accuracy %.4f  macro-F1 %.4f  Matthews %.4f  loss %.4f  (%llu labelled examples)\n",
               r->metrics.accuracy, r->metrics.macro_f1, r->metrics.matthews, r->loss,
               (unsigned long long)r->labelled);
}

static int run(struct eval_args *a) {
    vp_context *ctx = NULL;
    struct model_arch arch;
    bool arch_ok = false;
    struct delta_spec spec = {.name = "none"}; /* no --delta: the model alone */
    struct delta_tensors tensors = {0};
    struct encoder *e = NULL;
    struct train_data *d = NULL;
    struct writer w = {0};
    struct trainer_eval_result r;
    const vp_context_options co = {.device = a->common.device};
    vp_status s = vp_context_create(&co, &ctx);
    if (s == VP_OK) arch_ok = (s = model_arch_load_encoder(a->model, &arch)) == VP_OK;
    if (s == VP_OK && a->delta && (s = delta_load(a->delta, &arch, &spec, &tensors)) != VP_OK)
        vp_fail_context(s, "--delta %s", a->delta);
    const int limit = arch_ok ? trainer_model_max_len(&arch) : 0;
    if (s == VP_OK && a->max_len > limit)
        s = vp_fail(VP_ERROR_INVALID_ARGUMENT, "--max-len %d is longer than %s allows (%d tokens)", a->max_len,
                    a->model, limit);
    const int max_len = a->max_len ? a->max_len : limit;
    const struct encoder_options eo = {.storage = a->storage};
    if (s == VP_OK) s = encoder_open(ctx, a->model, &spec, &eo, &e);
    if (s == VP_OK && !a->delta) s = encoder_check_head(e);
    char source[4200];
    if (a->delta)
        snprintf(source, sizeof source, "the labels the delta was trained with (%s/delta.json)", a->delta);
    else
        snprintf(source, sizeof source, "the labels of %s/config.json's id2label", a->model);
    if (s == VP_OK && a->delta) s = delta_labels_load(a->delta, &w.names, &w.count);
    if (s == VP_OK && !a->delta && arch.labels) {
        w.names = arch.labels;
        w.count = arch.num_labels;
    }
    if (s == VP_OK) {
        struct io_dataset_options dopt = {
            .vocab_size = arch.vocab_size, .num_labels = arch.num_labels, .labels_required = !a->predict,
            .skip_bad = a->skip_bad, .max_len = max_len, .label_names = (const char *const *)w.names,
            .label_count = w.count, .label_names_source = source,
        };
        cli_data_prepare(&a->data_opt, a->model, &dopt);
        s = train_data_open(a->data, &dopt, &d);
    }
    if (s == VP_OK && train_data_skipped(d))
        fprintf(stderr, "vkpeft: skipped %llu bad line(s) of %s (--skip-bad)\n",
                (unsigned long long)train_data_skipped(d), a->data);
    if (s == VP_OK) s = encoder_load(e, a->batch, train_batch_length(train_data_longest(d), max_len, 0));
    if (s == VP_OK && a->delta && (s = delta_params_load(encoder_params(e), &tensors)) != VP_OK)
        vp_fail_context(s, "--delta %s", a->delta);
    /* Inputs are valid: the predictions file is opened only now. */
    if (s == VP_OK && a->predict) w.open = (s = train_file_open(&w.file, a->out)) == VP_OK;
    if (s == VP_OK)
        s = trainer_evaluate(e, d, a->batch, max_len, 0, a->predict ? write_prediction : NULL, &w, &r);
    if (w.open) {
        if (s == VP_OK) s = train_file_commit(&w.file);
        else train_file_abort(&w.file);
    }
    int rc = EXIT_OK;
    if (s == VP_OK) print_result(a, &r, &w);
    else rc = cli_fail(s);
    train_data_close(d);
    cli_data_finish(&a->data_opt);
    if (a->delta) delta_labels_free(w.names, w.count);
    encoder_destroy(e);
    delta_tensors_free(&tensors);
    if (arch_ok) model_arch_finish(&arch);
    vp_context_destroy(ctx);
    return rc;
}

static int command(int argc, char **argv, bool predict) {
    struct eval_args a = {.cmd = predict ? "predict" : "eval", .predict = predict};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    if ((rc = cli_check_model_dir(a.cmd, a.model)) != 0) return rc;
    struct stat st;
    if (a.delta && (stat(a.delta, &st) != 0 || !S_ISDIR(st.st_mode)))
        return cli_usage_error(a.cmd, "--delta %s is not a folder (a delta written by 'vkpeft train')", a.delta);
    if (access(a.data, R_OK) != 0) return cli_usage_error(a.cmd, "--data %s: %s", a.data, strerror(errno));
    return run(&a);
}

int cmd_eval(int argc, char **argv) {
    if (cli_model_is_decoder(argc, argv)) return cmd_eval_lm(argc, argv); /* causal LM: cmd_train_lm.c */
    return command(argc, argv, false);
}
int cmd_predict(int argc, char **argv) { return command(argc, argv, true); }
