/* vkpeft train: fine-tune a delta on a classification set (JSONL, CSV or
 * TSV). Parsing, validation order and printing; the work is
 * runtime/train/trainer.h. */
#include "cli.h"
#include "cli_checkpoint.h"
#include "cli_trainer.h"
#include "cli_data.h"
#include "cli_lm.h"
#include "merge.h"
#include "save.h"
#include "trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char help[] =
    "usage: vkpeft train --model DIR --delta PRESET|SPEC.json|DIR --data FILE --out DIR\n"
    "                    [--eval FILE] [--init-delta DIR] [options]\n"
    "\n"
    "Trains a delta (and the classification head, which every preset trains) on\n"
    "a frozen BERT/RoBERTa model (a GPT-2 or LLaMA-family --model trains as a causal\n"
    "LM: 'vkpeft train --model DIR --help' lists its options). Data is JSONL, one\n"
    "example per line, with token ids or text:\n"
    "  {\"input_ids\": [0, 713, 16, 2], \"label\": 1}\n"
    "  {\"sentence1\": \"A man sleeps.\", \"sentence2\": \"He rests.\", \"label\": \"entailment\"}\n"
    "or CSV/TSV with a header row (GLUE's layout; CSV quoting as in RFC 4180).\n"
    "Text is encoded with the model folder's tokenizer.json (special tokens, type\n"
    "ids, truncation to --max-len, longest first for a pair). Labels are class\n"
    "ids, or names: the names in the training data are sorted, numbered from 0\n"
    "(at most the model's num_labels) and saved with the delta, which eval and\n"
    "predict then use.\n"
    "Sequences are padded per batch (to a multiple of 8, 16 or 32 tokens, capped\n"
    "by --max-len) with an attention mask. Everything is checked before --out is\n"
    "created: the model, the spec, every line of the data, labels against the\n"
    "model's num_labels. --out then receives the trained delta (delta.json,\n"
    "delta.safetensors, and PEFT's adapter files for LoRA and prefix tuning),\n"
    "train.jsonl (a line per step and per evaluation), train_args.json and,\n"
    "with --eval, metrics.json. Every file is written atomically. Ctrl-C stops\n"
    "after the current step, saves the delta, notes the step in train.jsonl and\n"
    "exits 130; a second Ctrl-C exits at once. 'vkpeft report DIR' shows a run.\n"
    "\n"
    "One optimiser step (forward, backward, gradient norm, clipping, update) is\n"
    "one GPU submission, recorded once and replayed; the same seed on the same\n"
    "device gives the same loss curve.\n"
    "\n"
    "model and data:\n"
    "  --model DIR          Hugging Face model folder (config.json, model.safetensors)\n"
    "  --delta X            a preset (adapter, adapter-ffn, prefix, lora, pa, scaled-pa,\n"
    "                       mh-pa, mam, bitfit, full; e.g. mam:l=16,r=16,s=2), a spec\n"
    "                       JSON file, or a delta folder (its spec, freshly initialised)\n"
    "  --lora-targets LIST  LoRA's projections: query,key,value,attention.output.dense,\n"
    "                       intermediate.dense,output.dense (or q,k,v,o,up,down)\n"
    "  --init-delta DIR     start from a trained delta (vkpeft's, or a PEFT folder: LoRA,\n"
    "                       a decoder's prefix); its spec is used when --delta is not given\n"
    "  --data FILE          training examples (.jsonl, .csv or .tsv)\n"
    "  --eval FILE          evaluation examples: accuracy, macro-F1, Matthews\n"
    "  --out DIR            output folder (must be new or empty unless --overwrite)\n"
    "  --max-len T          truncate sequences to T tokens (default: the model's limit)\n"
    "  --skip-bad           skip malformed data lines instead of failing\n";

/* After the data options (cli_data_help). */
static const char help_rest[] =
    "\n"
    "optimisation:\n"
    "  --optimizer adamw|sgd  (default adamw; AdamW exempts biases and LayerNorm from decay)\n"
    "  --lr LR              peak learning rate (default 1e-4)\n"
    "  --weight-decay WD    (default 0.01)\n"
    "  --betas B1,B2        AdamW betas (default 0.9,0.999)\n"
    "  --eps EPS            AdamW epsilon (default 1e-8)\n"
    "  --momentum M         SGD momentum (default 0)\n"
    "  --schedule linear|cosine|constant  after the warm-up (default linear)\n"
    "  --warmup N|P%        warm-up steps, or a share of the steps (default 0)\n"
    "  --clip NORM          clip the global gradient norm (default 1; 0: off)\n"
    "  --batch B            sequences per micro-batch (default 16)\n"
    "  --accum K            micro-batches per optimiser step (default 1)\n"
    "  --epochs E           passes over the data (default 3)\n"
    "  --steps N            optimiser steps (instead of --epochs)\n"
    "  --dropout P          hidden, attention and classifier dropout (default: the\n"
    "                       model's config; 0 turns it off)\n"
    "  --label-smoothing E  cross-entropy label smoothing (default 0)\n"
    "  --seed S             data order, initialisation, dropout (default 42)\n"
    "  --eval-every N       evaluate every N steps (default: after each epoch)\n"
    "  --checkpoint-activations\n"
    "                       keep only each layer's input and recompute the layer in\n"
    "                       the backward: far less activation memory for about one\n"
    "                       more forward per step; identical results\n"
    "\n"
    "device and output:\n"
    "  --weights f32|f16|bf16  storage of the frozen matrices (default: bf16 for bf16\n"
    "                       files, else f16)\n"
    "  --device N|name      Vulkan device\n"
    "  --overwrite          write into a non-empty --out\n"
    "  --quiet              no progress (else a bar on a terminal: step, loss, lr,\n"
    "                       tokens/s, ETA; plain lines every tenth of the run otherwise)\n"
    "  --json               print a JSON summary on stdout\n"
    "\n"
    "examples:\n"
    "  vkpeft train --model models/roberta-base --delta lora --data glue/RTE/train.tsv \\\n"
    "        --eval glue/RTE/dev.tsv --out runs/rte-lora --max-len 256   # sentence1, sentence2, label\n"
    "  vkpeft train --model models/roberta-base --delta lora --data sst2/train.jsonl \\\n"
    "        --eval sst2/dev.jsonl --out runs/sst2-lora --lr 5e-4 --epochs 3\n"
    "  vkpeft train --model models/roberta-base --delta mam:l=16,r=16,s=2 --data train.jsonl \\\n"
    "        --out runs/mam --lr 1e-4 --batch 32 --warmup 6% --weight-decay 0.1 --betas 0.9,0.98 --eps 1e-6\n"
    "  vkpeft train --model models/roberta-base --init-delta runs/sst2-lora --data more.jsonl \\\n"
    "        --out runs/sst2-lora-2 --steps 500\n";

struct train_args {
    struct cli_common common;
    const char *model, *delta, *init, *data, *eval, *out, *targets;
    bool skip_bad, overwrite, quiet;
    struct cli_checkpoint ck;
    struct trainer_options o;
    struct cli_data data_opt;
};

/* ------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------ */

/* One option with a value; returns 0 when handled, 2 on a bad value, -1
 * when `name` is not one of these. */
static int option_value(struct train_args *a, const char *name, const char *v) {
    struct trainer_options *o = &a->o;
    bool ok = true;
    int rc;
    if (strcmp(name, "--model") == 0) a->model = v;
    else if (strcmp(name, "--delta") == 0) a->delta = v;
    else if (strcmp(name, "--init-delta") == 0) a->init = v;
    else if (strcmp(name, "--data") == 0) a->data = v;
    else if (strcmp(name, "--eval") == 0) a->eval = v;
    else if (strcmp(name, "--out") == 0) a->out = v;
    else if (strcmp(name, "--lora-targets") == 0) a->targets = v;
    else if ((rc = cli_checkpoint_option("train", &a->ck, name, v)) != 0) return rc == 1 ? 0 : rc;
    else {
        rc = cli_trainer_option(o, name, v);
        if (rc < 0) return cli_data_option("train", &a->data_opt, name, v);
        ok = rc == 1;
    }
    return ok ? 0 : cli_usage_error("train", "%s '%s' is not a valid value", name, v);
}

static int parse_args(int argc, char **argv, struct train_args *a) {
    memset(a, 0, sizeof *a);
    a->ck.argc = argc;
    a->ck.argv = argv;
    trainer_options_default(&a->o);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help, stdout);
            fputs(cli_data_help, stdout);
            fputs(help_rest, stdout);
            fputs("\ncheckpoints (vkpeft train on any model):\n", stdout);
            fputs(cli_checkpoint_help, stdout);
            return -1;
        }
        if (cli_common_option(argc, argv, &i, &a->common)) continue;
        if (strcmp(arg, "--skip-bad") == 0) a->skip_bad = true;
        else if (strcmp(arg, "--overwrite") == 0) a->overwrite = true;
        else if (cli_checkpoint_flag(&a->ck, arg)) continue;
        else if (cli_trainer_flag(&a->o, arg)) continue;
        else if (strcmp(arg, "--quiet") == 0 || strcmp(arg, "-q") == 0) a->quiet = true;
        else {
            /* --name value or --name=value */
            char name[64];
            const char *eq = strchr(arg, '='), *value = NULL;
            if (eq && strncmp(arg, "--", 2) == 0 && (size_t)(eq - arg) < sizeof name) {
                snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
                value = eq + 1;
            } else {
                snprintf(name, sizeof name, "%s", arg);
                value = i + 1 < argc ? argv[i + 1] : NULL;
            }
            if (!value) {
                /* Every value option, to tell "needs a value" from "unknown". */
                static const char *const takes[] = {
                    "--model", "--delta", "--init-delta", "--data", "--eval", "--out", "--optimizer", "--lr",
                    "--weight-decay", "--betas", "--eps", "--momentum", "--schedule", "--warmup", "--clip",
                    "--batch", "--accum", "--epochs", "--steps", "--max-len", "--max-length", "--dropout",
                    "--label-smoothing", "--seed", "--eval-every", "--weights", "--lora-targets"};
                bool known = cli_data_takes(name) || cli_checkpoint_takes(name);
                for (size_t k = 0; k < sizeof takes / sizeof takes[0]; k++) known |= strcmp(name, takes[k]) == 0;
                if (known) return cli_usage_error("train", "%s needs a value", name);
                return cli_usage_error("train", "unknown option '%s'", arg);
            }
            const int r = option_value(a, name, value);
            if (r > 0) return r;
            if (r < 0) return cli_usage_error("train", "unknown option '%s'", arg);
            if (!eq) i++;
        }
    }
    if (!a->model) return cli_usage_error("train", "--model is required");
    if (!a->data) return cli_usage_error("train", "--data is required");
    if (!a->out) return cli_usage_error("train", "--out is required");
    if (!a->delta && !a->init) return cli_usage_error("train", "--delta (or --init-delta) is required");
    vp_status s = trainer_options_check(&a->o);
    if (s != VP_OK) return cli_usage_error("train", "%s", vp_last_error());
    return 0;
}

/* --out must be new, or an empty folder, or --overwrite. */
static int check_out(const struct train_args *a) {
    if (a->ck.resume) return cli_checkpoint_check("train", &a->ck, a->out, a->overwrite);
    struct stat st;
    if (stat(a->out, &st) != 0) return errno == ENOENT ? 0 : cli_usage_error("train", "--out %s: %s", a->out, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return cli_usage_error("train", "--out %s exists and is not a folder", a->out);
    DIR *d = opendir(a->out);
    if (!d) return cli_usage_error("train", "--out %s: %s", a->out, strerror(errno));
    bool empty = true;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = false;
    closedir(d);
    if (!empty && !a->overwrite)
        return cli_usage_error("train", "--out %s is not empty; choose a new folder or pass --overwrite", a->out);
    return 0;
}

/* ------------------------------------------------------------------------
 * Progress
 * ------------------------------------------------------------------------ */

struct progress {
    bool quiet, tty;
    double last_print;
    uint64_t last_step_printed;
};

static void format_eta(double seconds, char *buf, size_t size) {
    if (!isfinite(seconds) || seconds < 0) seconds = 0;
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

static void on_event(const struct trainer_event *ev, void *user) {
    struct progress *p = user;
    if (p->quiet) return;
    if (ev->kind == TRAINER_EVENT_EVAL) {
        const struct trainer_eval_result *r = ev->eval;
        fprintf(stderr, "%seval @ step %llu (epoch %.2f): loss %.4f  accuracy %.4f  macro-F1 %.4f  Matthews %.4f\n",
                p->tty ? "\r\033[K" : "", (unsigned long long)ev->step, ev->epoch, r->loss, r->metrics.accuracy,
                r->metrics.macro_f1, r->metrics.matthews);
        return;
    }
    const double now = ev->elapsed;
    const bool last = ev->step == ev->total_steps;
    /* A terminal gets a redrawn line ten times a second; a log gets a line
     * per tenth of the run. */
    if (p->tty ? (now - p->last_print < 0.1 && !last && ev->step > 1)
               : (ev->step != 1 && !last && ev->step * 10 / ev->total_steps == p->last_step_printed * 10 / ev->total_steps))
        return;
    p->last_print = now;
    p->last_step_printed = ev->step;
    const double rate = now > 0 ? (double)ev->step / now : 0;
    const double tok_rate = now > 0 ? (double)ev->tokens / now : 0;
    char eta[32];
    format_eta(rate > 0 ? (double)(ev->total_steps - ev->step) / rate : 0, eta, sizeof eta);
    char bar[21];
    const int fill = (int)(20 * ev->step / (ev->total_steps ? ev->total_steps : 1));
    for (int i = 0; i < 20; i++) bar[i] = i < fill ? '=' : ' ';
    bar[20] = 0;
    fprintf(stderr, "%sstep %llu/%llu [%s] epoch %.2f  loss %.4f  lr %.2e  |g| %.3g  %.2f steps/s  %.0f tok/s  ETA %s%s",
            p->tty ? "\r\033[K" : "", (unsigned long long)ev->step, (unsigned long long)ev->total_steps, bar,
            ev->epoch, ev->last.loss, ev->last.lr, ev->last.grad_norm, rate, tok_rate, eta, p->tty && !last ? "" : "\n");
    fflush(stderr);
}

/* ------------------------------------------------------------------------
 * Ctrl-C
 * ------------------------------------------------------------------------ */

/* The first SIGINT asks the trainer to stop after the current step (it
 * polls the flag); a second exits at once. Every file is published whole
 * (temporary file and rename, or one write per log line), so exiting at
 * any point leaves the previous version or the new one, never a mix. */
static volatile sig_atomic_t interrupt_requested;

static void on_sigint(int sig) {
    (void)sig;
    if (interrupt_requested) _exit(128 + SIGINT);
    interrupt_requested = 1;
}

static bool should_stop(void *user) {
    (void)user;
    return interrupt_requested != 0;
}

/* ------------------------------------------------------------------------
 * The command
 * ------------------------------------------------------------------------ */

struct run {
    struct train_args a;
    vp_context *ctx;
    struct model_arch arch;
    bool arch_ok;
    struct delta_spec spec;
    struct delta_tensors init;
    struct trainer *t;
    struct train_data *train, *eval;
    char **labels; /* (num_labels) the training data's label names, padded with LABEL_k; or NULL */
    char **init_labels; /* (init_count) the names --init-delta was saved with */
    int init_count;
    char init_source[4200];
};

static void run_free(struct run *r) {
    train_data_close(r->train);
    train_data_close(r->eval);
    if (r->labels)
        for (int k = 0; k < r->arch.num_labels; k++) free(r->labels[k]);
    free(r->labels);
    delta_labels_free(r->init_labels, r->init_count);
    cli_data_finish(&r->a.data_opt);
    trainer_destroy(r->t);
    delta_tensors_free(&r->init);
    if (r->arch_ok) model_arch_finish(&r->arch);
    vp_context_destroy(r->ctx);
}

/* The label names the delta is saved with, and the evaluation data's
 * mapping: the training data's names when it has them (padded to the
 * model's classes with LABEL_k), else --init-delta's names, else the
 * model's id2label. */
static int name_labels(struct run *r, struct io_dataset_options *eval_opt) {
    const char *const *names;
    const int n = train_data_label_names(r->train, &names);
    eval_opt->collect_labels = false;
    if (n == 0 && r->init_count) return 0; /* eval_opt already maps through them */
    if (n == 0) {
        eval_opt->label_names = (const char *const *)r->arch.labels;
        eval_opt->label_count = r->arch.labels ? r->arch.num_labels : 0;
        eval_opt->label_names_source = "the model's id2label names";
        return 0;
    }
    const int C = r->arch.num_labels;
    r->labels = calloc((size_t)C, sizeof *r->labels);
    for (int k = 0; r->labels && k < C; k++) {
        char fallback[32];
        snprintf(fallback, sizeof fallback, "LABEL_%d", k);
        if (!(r->labels[k] = strdup(k < n ? names[k] : fallback)))
            return cli_fail(vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory"));
    }
    if (!r->labels) return cli_fail(vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory"));
    eval_opt->label_names = names;
    eval_opt->label_count = n;
    eval_opt->label_names_source = "the labels of the training data";
    if (!r->a.quiet) {
        fprintf(stderr, "labels:");
        for (int k = 0; k < n; k++) fprintf(stderr, " %d = %s%s", k, names[k], k + 1 < n ? "," : "\n");
    }
    return 0;
}

/* Everything that can be wrong with the inputs is found here, before
 * --out exists: model, spec, initial delta, every data line, the memory
 * plan. */
static int prepare(struct run *r) {
    struct train_args *a = &r->a;
    vp_status s;
    int rc;
    if (a->delta && (s = delta_spec_load(a->delta, &r->spec)) != VP_OK) return cli_fail(s);
    const vp_context_options co = {.device = a->common.device};
    if ((s = vp_context_create(&co, &r->ctx)) != VP_OK) return cli_fail(s);
    if ((s = model_arch_load_encoder(a->model, &r->arch)) != VP_OK) return cli_fail(s);
    r->arch_ok = true;
    if (a->init) {
        struct delta_spec saved;
        if ((s = delta_load(a->init, &r->arch, &saved, &r->init)) != VP_OK)
            return cli_fail(vp_fail_context(s, "--init-delta %s", a->init));
        if (!a->delta) r->spec = saved;
    }
    if (a->targets && (s = delta_spec_set_lora_targets(&r->spec, a->targets, &r->arch)) != VP_OK) return cli_fail(s);
    if ((s = trainer_open(r->ctx, a->model, &r->spec, &a->o, &r->t)) != VP_OK) return cli_fail(s);
    struct io_dataset_options dopt = {
        .vocab_size = r->arch.vocab_size, .num_labels = r->arch.num_labels, .labels_required = true,
        .skip_bad = a->skip_bad, .max_len = trainer_max_len(r->t), .collect_labels = true,
    };
    cli_data_prepare(&a->data_opt, a->model, &dopt);
    /* Continuing a delta keeps its label numbering: names map through it
     * rather than being collected afresh (which a subset would renumber). */
    if (a->init && (s = delta_labels_load(a->init, &r->init_labels, &r->init_count)) != VP_OK)
        return cli_fail(vp_fail_context(s, "--init-delta %s", a->init));
    if (r->init_count && r->init_count == r->arch.num_labels) {
        snprintf(r->init_source, sizeof r->init_source, "the labels of --init-delta %s", a->init);
        dopt.collect_labels = false;
        dopt.label_names = (const char *const *)r->init_labels;
        dopt.label_count = r->init_count;
        dopt.label_names_source = r->init_source;
    } else {
        delta_labels_free(r->init_labels, r->init_count);
        r->init_labels = NULL;
        r->init_count = 0;
    }
    if ((s = train_data_open(a->data, &dopt, &r->train)) != VP_OK) return cli_fail(s);
    if ((rc = name_labels(r, &dopt)) != 0) return rc;
    if (a->eval && (s = train_data_open(a->eval, &dopt, &r->eval)) != VP_OK) return cli_fail(s);
    for (int k = 0; k < 2 && !a->quiet; k++) {
        const struct train_data *d = k ? r->eval : r->train;
        if (d && train_data_skipped(d))
            fprintf(stderr, "vkpeft: skipped %llu bad line(s) of %s (--skip-bad)\n",
                    (unsigned long long)train_data_skipped(d), train_data_path(d));
    }
    int longest = train_data_longest(r->train);
    if (r->eval && train_data_longest(r->eval) > longest) longest = train_data_longest(r->eval);
    if ((s = trainer_load(r->t, longest)) != VP_OK) return cli_fail(s);
    if (a->init && (s = delta_params_load(encoder_params(trainer_encoder(r->t)), &r->init)) != VP_OK)
        return cli_fail(vp_fail_context(s, "--init-delta %s", a->init));
    return 0;
}

static void print_summary(const struct run *r, const struct trainer_summary *sum, uint64_t trainable) {
    const struct train_args *a = &r->a;
    if (a->common.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "out", a->out);
        cJSON_AddStringToObject(o, "device", vp_context_device(r->ctx)->name);
        cJSON_AddNumberToObject(o, "trainable_params", (double)trainable);
        cJSON_AddNumberToObject(o, "steps", (double)sum->steps);
        cJSON_AddNumberToObject(o, "examples", (double)sum->examples);
        cJSON_AddNumberToObject(o, "seconds", sum->seconds);
        cJSON_AddNumberToObject(o, "step_ms", sum->step_seconds * 1e3);
        cJSON_AddNumberToObject(o, "first_loss", sum->first_loss);
        cJSON_AddNumberToObject(o, "final_loss", sum->final_loss);
        if (sum->has_eval) {
            char *e = train_eval_json(&sum->eval), *b = train_eval_json(&sum->best);
            cJSON *ej = e ? cJSON_Parse(e) : NULL, *bj = b ? cJSON_Parse(b) : NULL;
            if (bj) cJSON_AddNumberToObject(bj, "step", (double)sum->best_step);
            if (ej) cJSON_AddItemToObject(o, "eval", ej);
            if (bj) cJSON_AddItemToObject(o, "best", bj);
            free(e);
            free(b);
        }
        char *text = cJSON_Print(o);
        puts(text);
        free(text);
        cJSON_Delete(o);
        return;
    }
    if (a->quiet) return;
    printf("trained %llu steps (%llu examples) in %.1f s, %.1f ms/step on %s\n", (unsigned long long)sum->steps,
           (unsigned long long)sum->examples, sum->seconds, sum->step_seconds * 1e3,
           vp_context_device(r->ctx)->name);
    printf("loss %.4f -> %.4f; %llu trainable parameters\n", sum->first_loss, sum->final_loss,
           (unsigned long long)trainable);
    if (sum->has_eval)
        printf("eval: accuracy %.4f  macro-F1 %.4f  Matthews %.4f  loss %.4f (best accuracy %.4f at step %llu)\n",
               sum->eval.metrics.accuracy, sum->eval.metrics.macro_f1, sum->eval.metrics.matthews, sum->eval.loss,
               sum->best.metrics.accuracy, (unsigned long long)sum->best_step);
    printf("delta written to %s\n", a->out);
}

static int train(struct run *r) {
    struct train_args *a = &r->a;
    int rc = prepare(r);
    if (rc) return rc;
    struct delta_params *params = encoder_params(trainer_encoder(r->t));
    const uint64_t total = trainer_total_steps(&a->o, train_data_count(r->train));
    char path[4096], ckpt[4200];
    /* The run's settings (train_args.json) and its identity for
     * checkpoints. Inputs are valid (and, with --resume, the checkpoint
     * matches): from here on --out is written. */
    char *args = train_args_json(&a->o, a->model, &r->spec, a->data, a->eval, total), *settings = NULL;
    const struct cli_run_files files = {a->model, a->data, a->eval, a->init, a->out};
    struct trainer_position resume;
    rc = cli_checkpoint_begin("train", &a->ck, &files, params, args, &settings, &resume, ckpt, sizeof ckpt);
    free(args);
    if (rc) return rc;
    vp_status s;
    if (!r->eval) {
        /* A metrics.json from an earlier run (--overwrite) would not match. */
        snprintf(path, sizeof path, "%s/metrics.json", a->out);
        unlink(path);
    }
    if (!a->quiet) {
        fprintf(stderr, "training %s (%llu parameters) on %s: %llu examples, %llu steps of %d x %d\n",
                r->spec.name, (unsigned long long)delta_params_numel(params),
                vp_context_device(r->ctx)->name, (unsigned long long)train_data_count(r->train),
                (unsigned long long)total, a->o.batch, a->o.accum);
        if (a->ck.resume)
            fprintf(stderr, "resuming after step %llu (epoch %llu, example %llu of its order)\n",
                    (unsigned long long)(resume.steps + resume.skipped), (unsigned long long)resume.epoch,
                    (unsigned long long)resume.pos);
    }
    struct progress p = {.quiet = a->quiet, .tty = isatty(2) == 1};
    snprintf(path, sizeof path, "%s/train.jsonl", a->out);
    const struct trainer_fit_config fc = {
        .train = r->train, .eval = r->eval, .log_path = path, .on_event = on_event, .should_stop = should_stop,
        .user = &p, .checkpoint_path = a->ck.off ? NULL : ckpt, .checkpoint_every = a->ck.every,
        .checkpoint_settings = settings, .resume = a->ck.resume ? &resume : NULL, .on_nonfinite = a->ck.on_nonfinite,
    };
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART}, old_sa;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    struct trainer_summary sum;
    s = trainer_fit(r->t, &fc, &sum);
    free(settings);
    if (s == VP_ERROR_DEVICE_LOST) return cli_report_device_lost(&a->ck, ckpt);
    if (s != VP_OK) return cli_fail(s);
    cli_report_nonfinite(&sum, path, p.tty);
    if (sum.diverged) {
        fprintf(stderr, "vkpeft: training stopped at step %llu; lower --lr or set --clip; no delta was written\n",
                (unsigned long long)sum.diverged_step);
        cli_report_resume(&a->ck, ckpt);
        return EXIT_RUNTIME;
    }
    char **labels = r->labels ? r->labels : r->init_count ? r->init_labels : r->arch.labels;
    const struct delta_save_info info = {
        .model_dir = a->model, .labels = (const char *const *)labels,
        .num_labels = labels ? r->arch.num_labels : 0,
    };
    if ((s = delta_save(a->out, params, &info)) != VP_OK) return cli_fail(s);
    if (sum.interrupted) {
        sigaction(SIGINT, &old_sa, NULL);
        fprintf(stderr, "%svkpeft: interrupted at step %llu of %llu; delta written to %s, log %s\n",
                p.tty ? "\r\033[K" : "", (unsigned long long)sum.steps, (unsigned long long)total, a->out, path);
        cli_report_resume(&a->ck, ckpt);
        return 128 + SIGINT;
    }
    if (sum.has_eval) {
        char *text = train_eval_json(&sum.eval);
        snprintf(path, sizeof path, "%s/metrics.json", a->out);
        s = text ? vp_file_write_atomic(path, text, strlen(text))
                 : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
        free(text);
        if (s != VP_OK) return cli_fail(s);
    }
    /* The run is complete: its checkpoint (an earlier step) is spent. */
    unlink(ckpt);
    print_summary(r, &sum, delta_params_numel(params));
    return EXIT_OK;
}

/* A path given on the command line that is not there is bad usage (2),
 * not a runtime failure. */
static int check_readable(const char *flag, const char *path, bool folder) {
    struct stat st;
    if (stat(path, &st) != 0) return cli_usage_error("train", "%s %s: %s", flag, path, strerror(errno));
    if (folder != S_ISDIR(st.st_mode))
        return cli_usage_error("train", "%s %s is %s", flag, path, folder ? "not a folder" : "a folder");
    if (access(path, R_OK) != 0) return cli_usage_error("train", "%s %s: %s", flag, path, strerror(errno));
    return 0;
}

int cmd_train(int argc, char **argv) {
    if (cli_model_is_decoder(argc, argv)) return cmd_train_lm(argc, argv); /* causal LM: cmd_train_lm.c */
    struct run r;
    memset(&r, 0, sizeof r);
    int rc = parse_args(argc, argv, &r.a);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    if ((rc = cli_check_model_dir("train", r.a.model)) != 0) return rc;
    if ((rc = check_readable("--data", r.a.data, false)) != 0) return rc;
    if (r.a.eval && (rc = check_readable("--eval", r.a.eval, false)) != 0) return rc;
    if (r.a.init && (rc = check_readable("--init-delta", r.a.init, true)) != 0) return rc;
    if ((rc = check_out(&r.a)) != 0) return rc;
    rc = train(&r);
    run_free(&r);
    return rc;
}
