/* vkpeft pretrain: masked-LM training from a plain-text corpus. Parsing,
 * validation order and output; the work is runtime/train/trainer.h with
 * options.head = MODEL_HEAD_MLM. */
#include "cli.h"
#include "cli_checkpoint.h"
#include "cli_trainer.h"
#include "safetensors.h"
#include "save.h"
#include "trainer.h"

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
    "usage: vkpeft pretrain --model DIR --data CORPUS.txt --out DIR [--eval HELD.txt]\n"
    "                       [--delta full|PRESET] [--mask-prob P] [options]\n"
    "\n"
    "Masked-LM training (BERT's recipe) from plain text, one example per line\n"
    "(blank lines skipped). Every line is encoded with the model folder's\n"
    "tokenizer.json (special tokens, truncated to --max-len); of its non-special\n"
    "tokens a share --mask-prob is chosen, of those 80% become the mask token,\n"
    "10% a random token and 10% stay; the loss is the cross-entropy on the\n"
    "chosen tokens. Masks come from a generator keyed by (seed, epoch, line), so\n"
    "a run is reproducible whatever the batch. The masked-LM head is read from\n"
    "the model file, or initialised (N(0, 0.02), LayerNorm 1/0) when it has none;\n"
    "its decoder is tied to the word embeddings. Everything is checked before\n"
    "--out is created.\n"
    "\n"
    "With --delta full (the default) --out becomes a complete model folder:\n"
    "config.json and the tokenizer files copied, model.safetensors with every\n"
    "trained tensor (masked-LM head included, f32), ready for\n"
    "'vkpeft train --model OUT'. With another preset --out holds the delta (and\n"
    "the head) as 'vkpeft train' writes it. Both get train.jsonl (a line per step\n"
    "and per evaluation) and train_args.json; with --eval, metrics.json (masked-LM\n"
    "loss and masked-token accuracy). Ctrl-C stops after the current step and\n"
    "saves what was trained (exit 130).\n"
    "\n"
    "options:\n"
    "  --model DIR          model folder (config.json, model.safetensors, tokenizer.json)\n"
    "  --data FILE          training text, one example per line\n"
    "  --eval FILE          held-out text: masked-LM loss and masked-token accuracy\n"
    "  --out DIR            output folder (must be new or empty unless --overwrite)\n"
    "  --delta X            full (default) or a preset / spec as for 'vkpeft train'\n"
    "  --mask-prob P        share of non-special tokens chosen (default 0.15)\n"
    "  --max-len T          truncate lines to T tokens (default: the model's limit)\n"
    "  --optimizer adamw|sgd, --lr LR (default 1e-4), --weight-decay WD (0.01),\n"
    "  --betas B1,B2, --eps EPS, --momentum M, --schedule linear|cosine|constant,\n"
    "  --warmup N|P%, --clip NORM (1), --batch B (16), --accum K (1), --epochs E (3),\n"
    "  --steps N, --dropout P, --seed S (42), --eval-every N, --weights f32|f16|bf16,\n"
    "  --checkpoint-activations, --device N|name, --overwrite, --quiet, --json\n"
    "                       as for 'vkpeft train'\n"
    "\n"
    "example:\n"
    "  vkpeft pretrain --model models/tiny-bert --data corpus.txt --eval held.txt \\\n"
    "        --out runs/tiny-mlm --max-len 64 --batch 32 --lr 5e-4 --steps 2000 --warmup 5%\n"
    "  vkpeft train --model runs/tiny-mlm --delta lora --data task/train.jsonl --out runs/task\n";

struct pretrain_args {
    struct cli_common common;
    const char *model, *delta, *data, *eval, *out;
    bool overwrite, quiet;
    struct trainer_options o;
    struct cli_checkpoint ck;
};

static int option_value(struct pretrain_args *a, const char *name, const char *v) {
    struct trainer_options *o = &a->o;
    bool ok = true;
    if (strcmp(name, "--model") == 0) a->model = v;
    else if (strcmp(name, "--delta") == 0) a->delta = v;
    else if (strcmp(name, "--data") == 0) a->data = v;
    else if (strcmp(name, "--eval") == 0) a->eval = v;
    else if (strcmp(name, "--out") == 0) a->out = v;
    else if (strcmp(name, "--mask-prob") == 0) ok = cli_parse_double(v, &o->mask_prob);
    else if (cli_checkpoint_takes(name)) {
        const int rc = cli_checkpoint_option("pretrain", &a->ck, name, v);
        return rc == 1 ? 0 : 2;
    } else {
        int rc = cli_trainer_option(o, name, v);
        if (rc < 0) return -1;
        ok = rc == 1;
    }
    return ok ? 0 : cli_usage_error("pretrain", "%s '%s' is not a valid value", name, v);
}

static int parse_args(int argc, char **argv, struct pretrain_args *a) {
    memset(a, 0, sizeof *a);
    trainer_options_default(&a->o);
    a->o.head = MODEL_HEAD_MLM;
    a->delta = "full";
    a->ck.argc = argc;
    a->ck.argv = argv;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help, stdout);
            fputs("\ncheckpoints:\n", stdout);
            fputs(cli_checkpoint_help, stdout);
            return -1;
        }
        if (cli_common_option(argc, argv, &i, &a->common)) continue;
        if (strcmp(arg, "--overwrite") == 0) a->overwrite = true;
        else if (cli_checkpoint_flag(&a->ck, arg)) continue;
        else if (cli_trainer_flag(&a->o, arg)) continue;
        else if (strcmp(arg, "--quiet") == 0 || strcmp(arg, "-q") == 0) a->quiet = true;
        else {
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
                if (option_value(a, name, "\x01") >= 0) return cli_usage_error("pretrain", "%s needs a value", name);
                return cli_usage_error("pretrain", "unknown option '%s'", arg);
            }
            const int r = option_value(a, name, value);
            if (r > 0) return r;
            if (r < 0) return cli_usage_error("pretrain", "unknown option '%s'", arg);
            if (!eq) i++;
        }
    }
    if (!a->model) return cli_usage_error("pretrain", "--model is required");
    if (!a->data) return cli_usage_error("pretrain", "--data is required");
    if (!a->out) return cli_usage_error("pretrain", "--out is required");
    vp_status s = trainer_options_check(&a->o);
    if (s != VP_OK) return cli_usage_error("pretrain", "%s", vp_last_error());
    return 0;
}

static int check_readable(const char *flag, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return cli_usage_error("pretrain", "%s %s: %s", flag, path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return cli_usage_error("pretrain", "%s %s is a folder", flag, path);
    if (access(path, R_OK) != 0) return cli_usage_error("pretrain", "%s %s: %s", flag, path, strerror(errno));
    return 0;
}

static int check_out(const struct pretrain_args *a) {
    if (a->ck.resume) return cli_checkpoint_check("pretrain", &a->ck, a->out, a->overwrite);
    struct stat st;
    if (stat(a->out, &st) != 0)
        return errno == ENOENT ? 0 : cli_usage_error("pretrain", "--out %s: %s", a->out, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return cli_usage_error("pretrain", "--out %s exists and is not a folder", a->out);
    DIR *d = opendir(a->out);
    if (!d) return cli_usage_error("pretrain", "--out %s: %s", a->out, strerror(errno));
    bool empty = true;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = false;
    closedir(d);
    if (!empty && !a->overwrite)
        return cli_usage_error("pretrain", "--out %s is not empty; choose a new folder or pass --overwrite", a->out);
    return 0;
}

/* ---- progress and Ctrl-C ---------------------------------------------------------- */

struct progress {
    bool quiet;
    uint64_t last_printed;
};

static void on_event(const struct trainer_event *ev, void *user) {
    struct progress *p = user;
    if (p->quiet) return;
    if (ev->kind == TRAINER_EVENT_EVAL) {
        fprintf(stderr, "eval @ step %llu: masked-LM loss %.4f  masked-token accuracy %.4f (%llu tokens)\n",
                (unsigned long long)ev->step, ev->eval->loss, ev->eval->metrics.accuracy,
                (unsigned long long)ev->eval->labelled);
        return;
    }
    const bool last = ev->step == ev->total_steps;
    if (ev->step != 1 && !last && ev->step * 10 / ev->total_steps == p->last_printed * 10 / ev->total_steps) return;
    p->last_printed = ev->step;
    fprintf(stderr, "step %llu/%llu  epoch %.2f  loss %.4f  lr %.2e  |g| %.3g  %.0f tok/s\n",
            (unsigned long long)ev->step, (unsigned long long)ev->total_steps, ev->epoch, ev->last.loss,
            ev->last.lr, ev->last.grad_norm, ev->elapsed > 0 ? (double)ev->tokens / ev->elapsed : 0);
}

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

/* ---- output ------------------------------------------------------------------------ */

static vp_status copy_file(const char *model_dir, const char *out_dir, const char *name, bool required) {
    char src[4096];
    snprintf(src, sizeof src, "%s/%s", model_dir, name);
    if (!required && access(src, F_OK) != 0) return VP_OK;
    return vp_file_copy_atomic(model_dir, out_dir, name);
}

/* A complete model folder: config and tokenizer files copied, every
 * trained tensor (the model's and the masked-LM head's) in f32. */
static vp_status save_model(const char *model_dir, const char *out_dir, const struct delta_params *p) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json"};
    vp_status s = copy_file(model_dir, out_dir, "config.json", true);
    for (size_t k = 0; s == VP_OK && k < sizeof files / sizeof files[0]; k++)
        s = copy_file(model_dir, out_dir, files[k], false);
    struct delta_tensors t = {0};
    if (s == VP_OK) s = delta_params_save(p, (1u << DELTA_PARAM_MODEL) | (1u << DELTA_PARAM_HEAD), &t);
    struct io_tensor_out *out = s == VP_OK ? calloc(t.count + 1, sizeof *out) : NULL;
    if (s == VP_OK && !out) s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory saving the model");
    for (size_t k = 0; s == VP_OK && k < t.count; k++) {
        const struct delta_tensor *x = &t.items[k];
        out[k] = (struct io_tensor_out){.name = x->name, .dtype = IO_DTYPE_F32, .ndim = x->ndim, .data = x->data};
        for (int d = 0; d < x->ndim; d++) out[k].shape[d] = x->shape[d];
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    static const char *const meta[] = {"format", "pt", NULL};
    if (s == VP_OK) s = io_safetensors_write(path, out, t.count, meta);
    free(out);
    delta_tensors_free(&t);
    return s;
}

/* ---- the command ------------------------------------------------------------------- */

struct run {
    struct pretrain_args a;
    vp_context *ctx;
    struct delta_spec spec;
    struct tok_tokenizer *tok;
    struct trainer *t;
    struct train_corpus *train, *eval;
};

static int prepare(struct run *r) {
    struct pretrain_args *a = &r->a;
    vp_status s;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", a->model);
    if (access(path, R_OK) != 0)
        return cli_usage_error("pretrain", "%s: %s (pretraining encodes text with the model's tokenizer)", path,
                               strerror(errno));
    if ((s = delta_spec_load(a->delta, &r->spec)) != VP_OK) return cli_fail(s);
    const vp_context_options co = {.device = a->common.device};
    if ((s = vp_context_create(&co, &r->ctx)) != VP_OK) return cli_fail(s);
    if ((s = trainer_open(r->ctx, a->model, &r->spec, &a->o, &r->t)) != VP_OK) return cli_fail(s);
    if ((s = tok_tokenizer_load(a->model, &r->tok)) != VP_OK) return cli_fail(s);
    const int vocab = encoder_arch(trainer_encoder(r->t))->vocab_size;
    if ((s = train_corpus_open(a->data, r->tok, trainer_max_len(r->t), vocab, &r->train)) != VP_OK) return cli_fail(s);
    struct mlm_masking m;
    if ((s = train_corpus_masking(r->train, a->o.mask_prob, a->o.seed, &m)) != VP_OK) return cli_fail(s);
    if (a->eval && (s = train_corpus_open(a->eval, r->tok, trainer_max_len(r->t), vocab, &r->eval)) != VP_OK)
        return cli_fail(s);
    int longest = train_corpus_longest(r->train);
    if (r->eval && train_corpus_longest(r->eval) > longest) longest = train_corpus_longest(r->eval);
    if ((s = trainer_load(r->t, longest)) != VP_OK) return cli_fail(s);
    return 0;
}

static int pretrain(struct run *r) {
    struct pretrain_args *a = &r->a;
    int rc = prepare(r);
    if (rc) return rc;
    char path[4096], ckpt[4200];
    const uint64_t total = trainer_total_steps(&a->o, train_corpus_count(r->train));
    struct delta_params *params = encoder_params(trainer_encoder(r->t));
    char *args = train_args_json(&a->o, a->model, &r->spec, a->data, a->eval, total), *settings = NULL;
    const struct cli_run_files files = {a->model, a->data, a->eval, NULL, a->out};
    struct trainer_position resume;
    rc = cli_checkpoint_begin("pretrain", &a->ck, &files, params, args, &settings, &resume, ckpt, sizeof ckpt);
    free(args);
    if (rc) return rc;
    vp_status s;
    if (!a->quiet)
        fprintf(stderr, "pretraining %s (%llu parameters) on %s: %llu lines, %llu steps of %d x %d\n", r->spec.name,
                (unsigned long long)delta_params_numel(params), vp_context_device(r->ctx)->name,
                (unsigned long long)train_corpus_count(r->train), (unsigned long long)total, a->o.batch, a->o.accum);
    struct progress p = {.quiet = a->quiet};
    snprintf(path, sizeof path, "%s/train.jsonl", a->out);
    const struct trainer_fit_config fc = {
        .corpus = r->train, .eval_corpus = r->eval, .log_path = path, .on_event = on_event,
        .should_stop = should_stop, .user = &p, .checkpoint_path = a->ck.off ? NULL : ckpt,
        .checkpoint_every = a->ck.every, .checkpoint_settings = settings, .resume = a->ck.resume ? &resume : NULL,
        .on_nonfinite = a->ck.on_nonfinite,
    };
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART}, old_sa;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    struct trainer_summary sum;
    s = trainer_fit(r->t, &fc, &sum);
    free(settings);
    if (s == VP_ERROR_DEVICE_LOST) return cli_report_device_lost(&a->ck, ckpt);
    if (s != VP_OK) return cli_fail(s);
    cli_report_nonfinite(&sum, path, false);
    if (sum.diverged) {
        fprintf(stderr, "vkpeft: pretraining stopped at step %llu (see %s); lower --lr; nothing was saved\n",
                (unsigned long long)sum.diverged_step, path);
        cli_report_resume(&a->ck, ckpt);
        return EXIT_RUNTIME;
    }
    const bool full = strcmp(r->spec.name, "full") == 0;
    if (full) s = save_model(a->model, a->out, params);
    else {
        const struct delta_save_info info = {.model_dir = a->model};
        s = delta_save(a->out, params, &info);
    }
    if (s != VP_OK) return cli_fail(s);
    if (sum.interrupted) {
        sigaction(SIGINT, &old_sa, NULL);
        fprintf(stderr, "vkpeft: interrupted at step %llu of %llu; saved to %s\n", (unsigned long long)sum.steps,
                (unsigned long long)total, a->out);
        cli_report_resume(&a->ck, ckpt);
        return 128 + SIGINT;
    }
    if (sum.has_eval) {
        char text[256];
        snprintf(text, sizeof text, "{\"mlm_loss\": %.6g, \"masked_accuracy\": %.6g, \"masked_tokens\": %llu, "
                 "\"count\": %llu}\n", sum.eval.loss, sum.eval.metrics.accuracy,
                 (unsigned long long)sum.eval.labelled, (unsigned long long)sum.eval.count);
        snprintf(path, sizeof path, "%s/metrics.json", a->out);
        if ((s = vp_file_write_atomic(path, text, strlen(text))) != VP_OK) return cli_fail(s);
    }
    if (a->common.json) {
        printf("{\"out\": \"%s\", \"steps\": %llu, \"step_ms\": %.3f, \"first_loss\": %.6g, \"final_loss\": %.6g",
               a->out, (unsigned long long)sum.steps, sum.step_seconds * 1e3, sum.first_loss, sum.final_loss);
        if (sum.has_eval)
            printf(", \"eval\": {\"mlm_loss\": %.6g, \"masked_accuracy\": %.6g}", sum.eval.loss,
                   sum.eval.metrics.accuracy);
        printf("}\n");
    } else if (!a->quiet) {
        printf("pretrained %llu steps in %.1f s, %.1f ms/step on %s; loss %.4f -> %.4f\n",
               (unsigned long long)sum.steps, sum.seconds, sum.step_seconds * 1e3, vp_context_device(r->ctx)->name,
               sum.first_loss, sum.final_loss);
        if (sum.has_eval)
            printf("eval: masked-LM loss %.4f, masked-token accuracy %.4f\n", sum.eval.loss, sum.eval.metrics.accuracy);
        printf("%s written to %s\n", full ? "model" : "delta", a->out);
    }
    unlink(ckpt); /* the run is complete: its checkpoint (an earlier step) is spent */
    return EXIT_OK;
}

int cmd_pretrain(int argc, char **argv) {
    struct run r;
    memset(&r, 0, sizeof r);
    int rc = parse_args(argc, argv, &r.a);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    if ((rc = cli_check_model_dir("pretrain", r.a.model)) != 0) return rc;
    if ((rc = check_readable("--data", r.a.data)) != 0) return rc;
    if (r.a.eval && (rc = check_readable("--eval", r.a.eval)) != 0) return rc;
    if ((rc = check_out(&r.a)) != 0) return rc;
    rc = pretrain(&r);
    train_corpus_close(r.train);
    train_corpus_close(r.eval);
    trainer_destroy(r.t);
    tok_tokenizer_free(r.tok);
    vp_context_destroy(r.ctx);
    return rc;
}
