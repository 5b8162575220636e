/* vkpeft train and vkpeft eval on a decoder-only model (causal-LM
 * fine-tuning of a delta on JSONL text or prompt + completion) or an
 * encoder-decoder (seq2seq fine-tuning on JSONL source + target). Parsing,
 * validation order and printing; the work is runtime/train/lmtrainer.h. */
#include "cli.h"
#include "cli_lm.h"
#include "cli_checkpoint.h"
#include "cli_trainer.h"
#include "lmtrainer.h"
#include "peft.h"
#include "save.h"
#include "tokenizer.h"

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

static const char train_help[] =
    "usage: vkpeft train --model DIR --delta PRESET|SPEC.json|DIR --data FILE --out DIR\n"
    "                    [--eval FILE] [--pack] [--lora-targets LIST] [options]\n"
    "\n"
    "Causal-LM fine-tuning of a delta on a frozen decoder-only model (GPT-2, LLaMA,\n"
    "Mistral, Qwen2). Data is JSONL, one example per line:\n"
    "  {\"text\": \"...\"}                          loss on every token\n"
    "  {\"prompt\": \"...\", \"completion\": \"...\"}   loss on the completion only\n"
    "encoded with the model folder's tokenizer.json (BOS as its template puts it,\n"
    "EOS appended). Rows are padded per batch, or with --pack short examples are\n"
    "concatenated into rows of exactly --max-len tokens. Every line is checked\n"
    "before --out is created. --out receives the delta (delta.json,\n"
    "delta.safetensors, and PEFT's adapter files with task_type CAUSAL_LM, or\n"
    "SEQ_2_SEQ_LM on an encoder-decoder, when PEFT can express the delta),\n"
    "train.jsonl, train_args.json and, with --eval, metrics.json (loss,\n"
    "perplexity, token accuracy).\n"
    "\n"
    "On an encoder-decoder (BART, mBART) it is seq2seq fine-tuning with teacher\n"
    "forcing on lines {\"source\": \"...\", \"target\": \"...\"} (--source-field,\n"
    "--target-field), label smoothing 0.1 unless --label-smoothing says otherwise\n"
    "(He et al. 2022); --target-lang CODE starts the labels with that token\n"
    "(mBART-50's target language) and forces it first when eval generates. LoRA\n"
    "deltas get PEFT's files (SEQ_2_SEQ_LM); --lora-targets takes BART's names\n"
    "(q_proj, k_proj, v_proj, out_proj, fc1, fc2).\n"
    "\n"
    "options (as for encoder models, see below):\n"
    "  --model DIR          Hugging Face model folder (config.json, model.safetensors,\n"
    "                       tokenizer.json)\n"
    "  --delta X            a preset (lora, mam, prefix, pa, ...; e.g. mam:l=8,r=16,s=2),\n"
    "                       a spec JSON file or a delta folder\n"
    "  --init-delta DIR     start from a trained delta (its spec when --delta is absent)\n"
    "  --lora-targets LIST  the modules LoRA adapts, e.g. q_proj,v_proj (LLaMA's default),\n"
    "                       k_proj, o_proj, up_proj, down_proj; GPT-2: c_attn, attn.c_proj,\n"
    "                       c_fc, mlp.c_proj; BART/mBART: q_proj, k_proj, v_proj,\n"
    "                       out_proj, fc1, fc2 (every block of the kind)\n"
    "  --data FILE          training examples (JSONL)\n"
    "  --eval FILE          evaluation examples: loss, perplexity, token accuracy\n"
    "  --out DIR            output folder (new or empty unless --overwrite)\n"
    "  --pack               pack short examples into rows of --max-len tokens\n"
    "  --max-len T          tokens per row (default: the model's positions)\n"
    "  --text-field NAME, --prompt-field NAME, --completion-field NAME\n"
    "  --skip-bad           skip malformed data lines instead of failing\n"
    "  --optimizer, --lr, --weight-decay, --betas, --eps, --momentum, --schedule,\n"
    "  --warmup, --clip, --batch, --accum, --epochs, --steps, --seed, --eval-every,\n"
    "  --label-smoothing, --weights, --device, --overwrite, --quiet, --json\n"
    "  --dropout P          GPT-2: embedding, attention and residual dropout; LLaMA\n"
    "                       family: attention dropout; BART/mBART: dropout,\n"
    "                       attention_dropout and activation_dropout (default: the\n"
    "                       model's config; 0: off). Only training passes drop.\n"
    "  --checkpoint-activations\n"
    "                       keep only each layer's input and recompute the layer in\n"
    "                       the backward (both stacks of BART/mBART): far less\n"
    "                       activation memory for about one more forward per step;\n"
    "                       identical results\n"
    "  --checkpoint-every N, --no-checkpoint, --resume, --on-nonfinite skip|stop\n"
    "                       checkpoints and non-finite steps, as for encoder models\n"
    "\n"
    "examples:\n"
    "  vkpeft train --model models/tiny-llama --delta lora --data sft.jsonl --eval dev.jsonl \\\n"
    "        --out runs/sft-lora --lr 1e-3 --epochs 2 --batch 8 --max-len 512\n"
    "  vkpeft train --model models/tiny-llama --delta lora:r=16 --lora-targets q_proj,k_proj,v_proj,o_proj \\\n"
    "        --data corpus.jsonl --pack --max-len 256 --out runs/clm\n";

static const char eval_help[] =
    "usage: vkpeft eval --model DIR [--delta DIR] --data FILE [--batch B] [--max-len T] [--pack]\n"
    "                   [--max-new-tokens N] (encoder-decoders)\n"
    "                   [--weights f32|f16|bf16] [--json] [--device N|name]\n"
    "\n"
    "On a decoder-only model: the mean cross-entropy per scored token of the\n"
    "JSONL examples (text, or prompt + completion scoring the completion), the\n"
    "perplexity exp(loss) and the teacher-forced next-token accuracy.\n"
    "On an encoder-decoder (source + target lines): the same teacher-forced\n"
    "figures (label smoothing 0.1 unless --label-smoothing), then every source\n"
    "decoded greedily (--max-new-tokens N, default 128) and scored against its\n"
    "target: ROUGE-1/2/L F-measures and BLEU (×100) and the exact-match share.\n"
    "Without --delta the model is evaluated as it is (a base model, or one\n"
    "written by 'vkpeft merge').\n"
    "\n"
    "examples:\n"
    "  vkpeft eval --model models/tiny-llama --delta runs/sft-lora --data dev.jsonl --json\n"
    "  vkpeft eval --model runs/sft-merged --data dev.jsonl --json\n";

struct lm_args {
    const char *cmd;
    struct cli_common common;
    const char *model, *delta, *init, *data, *eval, *out, *targets;
    const char *text_field, *prompt_field, *completion_field, *source_field, *target_field, *target_lang;
    bool pack, skip_bad, overwrite, quiet, seq2seq;
    int max_new; /* eval on seq2seq: generated tokens at most (0: 128) */
    struct trainer_options o;
    struct cli_checkpoint ck;
};

/* ------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------ */

bool cli_model_is_decoder(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) dir = argv[i + 1];
        else if (strncmp(argv[i], "--model=", 8) == 0) dir = argv[i] + 8;
    }
    struct model_arch a;
    if (!dir || model_arch_load(dir, &a) != VP_OK) {
        vp_clear_error();
        return false;
    }
    const bool decoder = a.stack == MODEL_STACK_DECODER || a.stack == MODEL_STACK_ENCODER_DECODER;
    model_arch_finish(&a);
    return decoder;
}

static int value_option(struct lm_args *a, const char *name, const char *v) {
    const char **slot = NULL;
    if (strcmp(name, "--model") == 0) slot = &a->model;
    else if (strcmp(name, "--delta") == 0) slot = &a->delta;
    else if (strcmp(name, "--init-delta") == 0) slot = &a->init;
    else if (strcmp(name, "--data") == 0) slot = &a->data;
    else if (strcmp(name, "--eval") == 0) slot = &a->eval;
    else if (strcmp(name, "--out") == 0) slot = &a->out;
    else if (strcmp(name, "--lora-targets") == 0) slot = &a->targets;
    else if (strcmp(name, "--text-field") == 0) slot = &a->text_field;
    else if (strcmp(name, "--prompt-field") == 0) slot = &a->prompt_field;
    else if (strcmp(name, "--completion-field") == 0) slot = &a->completion_field;
    else if (strcmp(name, "--source-field") == 0) slot = &a->source_field;
    else if (strcmp(name, "--target-field") == 0) slot = &a->target_field;
    else if (strcmp(name, "--target-lang") == 0) slot = &a->target_lang;
    if (slot) {
        *slot = v;
        return 0;
    }
    if (strcmp(name, "--max-new-tokens") == 0 && strcmp(a->cmd, "eval") == 0)
        return cli_parse_int(v, &a->max_new) && a->max_new > 0
                   ? 0
                   : cli_usage_error(a->cmd, "--max-new-tokens '%s' is not a positive count", v);
    const int ck = cli_checkpoint_option(a->cmd, &a->ck, name, v);
    if (ck) return ck == 1 ? 0 : ck;
    const int rc = cli_trainer_option(&a->o, name, v);
    if (rc < 0) return -1;
    return rc == 1 ? 0 : cli_usage_error(a->cmd, "%s '%s' is not a valid value", name, v);
}

static int parse(int argc, char **argv, struct lm_args *a, const char *help) {
    trainer_options_default(&a->o);
    a->o.batch = strcmp(a->cmd, "eval") == 0 ? 8 : a->o.batch;
    a->ck.argc = argc;
    a->ck.argv = argv;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help, stdout);
            return -1;
        }
        if (cli_common_option(argc, argv, &i, &a->common)) continue;
        if (strcmp(arg, "--pack") == 0) a->pack = true;
        else if (strcmp(arg, "--skip-bad") == 0) a->skip_bad = true;
        else if (strcmp(arg, "--overwrite") == 0) a->overwrite = true;
        else if (strcmp(a->cmd, "train") == 0 && cli_checkpoint_flag(&a->ck, arg)) continue;
        else if (strcmp(a->cmd, "train") == 0 && cli_trainer_flag(&a->o, arg)) continue;
        else if (strcmp(arg, "--quiet") == 0 || strcmp(arg, "-q") == 0) a->quiet = true;
        else if (strncmp(arg, "--", 2) != 0) return cli_usage_error(a->cmd, "unexpected argument '%s'", arg);
        else {
            char name[64];
            const char *eq = strchr(arg, '='), *value;
            if (eq && (size_t)(eq - arg) < sizeof name) {
                snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
                value = eq + 1;
            } else {
                snprintf(name, sizeof name, "%s", arg);
                value = i + 1 < argc ? argv[i + 1] : "";
            }
            const int rc = value_option(a, name, value);
            if (rc > 0) return rc;
            if (rc < 0) return cli_usage_error(a->cmd, "unknown option '%s'", arg);
            if (!eq && i + 1 >= argc) return cli_usage_error(a->cmd, "%s needs a value", name);
            if (!eq) i++;
        }
    }
    if (!a->model) return cli_usage_error(a->cmd, "--model is required");
    if (!a->data) return cli_usage_error(a->cmd, "--data is required");
    struct model_arch arch;
    if (model_arch_load(a->model, &arch) == VP_OK) {
        a->seq2seq = arch.stack == MODEL_STACK_ENCODER_DECODER;
        model_arch_finish(&arch);
    }
    vp_clear_error();
    bool smoothing = false; /* seq2seq's default is the paper's 0.1 */
    for (int i = 1; i < argc; i++) smoothing |= strncmp(argv[i], "--label-smoothing", 17) == 0;
    if (a->seq2seq && !smoothing) a->o.label_smoothing = 0.1;
    if (a->seq2seq && a->pack) return cli_usage_error(a->cmd, "--pack is for causal-LM data, not seq2seq");
    if (!a->seq2seq && (a->target_lang || a->source_field || a->target_field))
        return cli_usage_error(a->cmd, "--target-lang, --source-field and --target-field are for encoder-decoder "
                               "models (BART, mBART)");
    vp_status s = trainer_options_check(&a->o);
    if (s != VP_OK) return cli_usage_error(a->cmd, "%s", vp_last_error());
    return 0;
}

static int check_file(const char *cmd, const char *flag, const char *path, bool folder) {
    struct stat st;
    if (stat(path, &st) != 0) return cli_usage_error(cmd, "%s %s: %s", flag, path, strerror(errno));
    if (folder != S_ISDIR(st.st_mode))
        return cli_usage_error(cmd, "%s %s is %s", flag, path, folder ? "not a folder" : "a folder");
    return 0;
}

static int check_out_dir(const struct lm_args *a) {
    if (a->ck.resume) return cli_checkpoint_check(a->cmd, &a->ck, a->out, a->overwrite);
    DIR *d = opendir(a->out);
    if (!d) {
        struct stat st;
        if (stat(a->out, &st) == 0) return cli_usage_error(a->cmd, "--out %s exists and is not a folder", a->out);
        return errno == ENOENT ? 0 : cli_usage_error(a->cmd, "--out %s: %s", a->out, strerror(errno));
    }
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));) entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    if (entries && !a->overwrite)
        return cli_usage_error(a->cmd, "--out %s is not empty; choose a new folder or pass --overwrite", a->out);
    return 0;
}

/* --target-lang CODE: the token labels start with (mBART-50), and the
 * token generation forces first; -1 when the tokenizer lacks it. */
static int32_t target_lang_id(const struct lm_args *a, const struct tok_tokenizer *tok) {
    return a->target_lang ? tok_token_to_id(tok, a->target_lang) : -1;
}

static struct lm_data_options data_options(const struct lm_args *a, const struct tok_tokenizer *tok) {
    return (struct lm_data_options){
        .target_lang = a->target_lang != NULL, .target_lang_id = target_lang_id(a, tok),
        .task = a->seq2seq ? LM_TASK_SEQ2SEQ : LM_TASK_CAUSAL, .tokenizer = tok, .text_field = a->text_field,
        .prompt_field = a->prompt_field, .completion_field = a->completion_field, .source_field = a->source_field,
        .target_field = a->target_field, .pack = a->pack, .skip_bad = a->skip_bad,
    };
}

/* ------------------------------------------------------------------------
 * Progress and Ctrl-C
 * ------------------------------------------------------------------------ */

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

static void on_event(const struct trainer_event *ev, void *user) {
    const struct lm_args *a = user;
    if (a->quiet) return;
    if (ev->kind == TRAINER_EVENT_EVAL) {
        fprintf(stderr, "eval @ step %llu: loss %.4f  perplexity %.3f  token accuracy %.4f (%llu tokens)\n",
                (unsigned long long)ev->step, ev->eval->loss, exp(ev->eval->loss), ev->eval->metrics.accuracy,
                (unsigned long long)ev->eval->labelled);
        return;
    }
    const uint64_t every = ev->total_steps >= 10 ? ev->total_steps / 10 : 1;
    if (ev->step != 1 && ev->step % every && ev->step != ev->total_steps) return;
    fprintf(stderr, "step %llu/%llu  epoch %.2f  loss %.4f  lr %.2e  |g| %.3g  %.0f tok/s\n",
            (unsigned long long)ev->step, (unsigned long long)ev->total_steps, ev->epoch, ev->last.loss,
            ev->last.lr, ev->last.grad_norm, ev->elapsed > 0 ? (double)ev->tokens / ev->elapsed : 0);
}

/* ------------------------------------------------------------------------
 * vkpeft train
 * ------------------------------------------------------------------------ */

struct lm_run {
    struct lm_args a;
    vp_context *ctx;
    struct tok_tokenizer *tok;
    struct lm_trainer *t;
    struct delta_spec spec;
    struct model_arch arch;
    bool arch_ok;
    struct lm_fit_config fc;
    struct lm_scan train, eval;
};

static void run_free(struct lm_run *r) {
    lm_trainer_destroy(r->t);
    tok_tokenizer_free(r->tok);
    if (r->arch_ok) model_arch_finish(&r->arch);
    vp_context_destroy(r->ctx);
}

/* Everything that can be wrong is found before --out exists. */
static int prepare(struct lm_run *r) {
    struct lm_args *a = &r->a;
    vp_status s;
    if ((s = model_arch_load(a->model, &r->arch)) != VP_OK) return cli_fail(s);
    r->arch_ok = true;
    if (a->delta && (s = delta_spec_load(a->delta, &r->spec)) != VP_OK) return cli_fail(s);
    if (a->init && !a->delta) {
        struct delta_tensors init = {0};
        s = delta_load(a->init, &r->arch, &r->spec, &init);
        delta_tensors_free(&init);
        if (s != VP_OK) return cli_fail(vp_fail_context(s, "--init-delta %s", a->init));
    }
    if (a->targets && (s = delta_spec_set_lora_targets(&r->spec, a->targets, &r->arch)) != VP_OK) return cli_fail(s);
    char tok_path[4200];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", a->model);
    if (access(tok_path, R_OK) != 0)
        return cli_usage_error(a->cmd, "--model %s has no tokenizer.json: causal-LM data is text, encoded with the "
                               "model's tokenizer; copy it from the model's Hugging Face folder", a->model);
    if ((s = tok_tokenizer_load(a->model, &r->tok)) != VP_OK)
        return cli_fail(vp_fail_context(s, "--model %s (its tokenizer)", a->model));
    if (a->target_lang && target_lang_id(a, r->tok) < 0)
        return cli_usage_error(a->cmd, "--target-lang %s: %s/tokenizer.json has no such token", a->target_lang,
                               a->model);
    const vp_context_options co = {.device = a->common.device};
    if ((s = vp_context_create(&co, &r->ctx)) != VP_OK) return cli_fail(s);
    if ((s = lm_trainer_open(r->ctx, a->model, &r->spec, &a->o, &r->t)) != VP_OK) return cli_fail(s);
    r->fc = (struct lm_fit_config){.train = a->data, .eval = a->eval, .data = data_options(a, r->tok),
                                   .on_event = on_event, .should_stop = should_stop, .user = a};
    if ((s = lm_trainer_scan(r->t, &r->fc, a->data, &r->train)) != VP_OK) return cli_fail(s);
    if (a->eval && (s = lm_trainer_scan(r->t, &r->fc, a->eval, &r->eval)) != VP_OK) return cli_fail(s);
    for (int k = 0; k < 2 && !a->quiet; k++) {
        const struct lm_scan *sc = k ? &r->eval : &r->train;
        if (sc->skipped)
            fprintf(stderr, "vkpeft: skipped %llu bad line(s) of %s (--skip-bad)\n", (unsigned long long)sc->skipped,
                    k ? a->eval : a->data);
    }
    const int longest = r->eval.longest > r->train.longest ? r->eval.longest : r->train.longest;
    if ((s = lm_trainer_load(r->t, longest)) != VP_OK) return cli_fail(s);
    if (a->init) {
        s = a->seq2seq ? seq2seq_load_delta(lm_trainer_seq2seq(r->t), a->init)
                       : decoder_load_delta(lm_trainer_decoder(r->t), a->init);
        if (s != VP_OK) return cli_fail(s);
    }
    return 0;
}

static cJSON *eval_json(const struct lm_eval_result *e) {
    char *text = lm_eval_json(e);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

static void print_summary(const struct lm_run *r, const struct lm_summary *sum, uint64_t trainable) {
    const struct lm_args *a = &r->a;
    const struct trainer_summary *b = &sum->base;
    if (a->common.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "out", a->out);
        cJSON_AddStringToObject(o, "device", vp_context_device(r->ctx)->name);
        cJSON_AddStringToObject(o, "task", a->seq2seq ? "seq2seq" : "causal-lm");
        cJSON_AddNumberToObject(o, "trainable_params", (double)trainable);
        cJSON_AddNumberToObject(o, "steps", (double)b->steps);
        cJSON_AddNumberToObject(o, "examples", (double)b->examples);
        cJSON_AddNumberToObject(o, "tokens", (double)b->tokens);
        cJSON_AddNumberToObject(o, "seconds", b->seconds);
        cJSON_AddNumberToObject(o, "step_ms", b->step_seconds * 1e3);
        cJSON_AddNumberToObject(o, "tokens_per_second", b->seconds > 0 ? (double)b->tokens / b->seconds : 0);
        cJSON_AddNumberToObject(o, "first_loss", b->first_loss);
        cJSON_AddNumberToObject(o, "final_loss", b->final_loss);
        if (sum->has_eval) {
            cJSON *e = eval_json(&sum->eval), *best = eval_json(&sum->best);
            if (best) cJSON_AddNumberToObject(best, "step", (double)sum->best_step);
            if (e) cJSON_AddItemToObject(o, "eval", e);
            if (best) cJSON_AddItemToObject(o, "best", best);
        }
        char *text = cJSON_Print(o);
        puts(text);
        free(text);
        cJSON_Delete(o);
        return;
    }
    if (a->quiet) return;
    printf("trained %llu steps (%llu examples, %llu tokens) in %.1f s, %.1f ms/step on %s\n",
           (unsigned long long)b->steps, (unsigned long long)b->examples, (unsigned long long)b->tokens, b->seconds,
           b->step_seconds * 1e3, vp_context_device(r->ctx)->name);
    printf("loss %.4f -> %.4f; %llu trainable parameters\n", b->first_loss, b->final_loss,
           (unsigned long long)trainable);
    if (sum->has_eval)
        printf("eval: loss %.4f  perplexity %.3f  token accuracy %.4f (best loss %.4f at step %llu)\n",
               sum->eval.loss, sum->eval.perplexity, sum->eval.accuracy, sum->best.loss,
               (unsigned long long)sum->best_step);
    printf("delta written to %s\n", a->out);
}

static int train(struct lm_run *r) {
    struct lm_args *a = &r->a;
    int rc = prepare(r);
    if (rc) return rc;
    char path[4096], ckpt[4200];
    const uint64_t total = trainer_total_steps(&a->o, r->train.batches * (uint64_t)a->o.batch);
    struct delta_params *params = lm_trainer_params(r->t);
    /* The run's identity for its checkpoints: the settings, the data and
     * the LM data options that shape the batches. */
    char *args = train_args_json(&a->o, a->model, &r->spec, a->data, a->eval, total), *settings = NULL;
    cJSON *aj = args ? cJSON_Parse(args) : NULL;
    free(args);
    args = NULL;
    if (aj) {
        cJSON_AddBoolToObject(aj, "pack", a->pack);
        cJSON_AddStringToObject(aj, "text_field", a->text_field ? a->text_field : "");
        cJSON_AddStringToObject(aj, "prompt_field", a->prompt_field ? a->prompt_field : "");
        cJSON_AddStringToObject(aj, "completion_field", a->completion_field ? a->completion_field : "");
        cJSON_AddStringToObject(aj, "source_field", a->source_field ? a->source_field : "");
        cJSON_AddStringToObject(aj, "target_field", a->target_field ? a->target_field : "");
        cJSON_AddNumberToObject(aj, "label_smoothing", a->o.label_smoothing);
        args = cJSON_Print(aj);
        cJSON_Delete(aj);
    }
    const struct cli_run_files files = {a->model, a->data, a->eval, a->init, a->out};
    struct trainer_position resume;
    rc = cli_checkpoint_begin("train", &a->ck, &files, params, args, &settings, &resume, ckpt, sizeof ckpt);
    free(args);
    if (rc) return rc;
    vp_status s;
    snprintf(path, sizeof path, "%s/metrics.json", a->out);
    if (!a->eval) unlink(path); /* an earlier run's (--overwrite) would not match */
    r->fc.checkpoint_path = a->ck.off ? NULL : ckpt;
    r->fc.checkpoint_every = a->ck.every;
    r->fc.checkpoint_settings = settings;
    r->fc.resume = a->ck.resume ? &resume : NULL;
    r->fc.on_nonfinite = a->ck.on_nonfinite;
    if (!a->quiet)
        fprintf(stderr, "training %s (%llu parameters) on %s: %llu examples in %llu batches, %llu steps of %d x %d\n",
                r->spec.name, (unsigned long long)delta_params_numel(params), vp_context_device(r->ctx)->name,
                (unsigned long long)r->train.examples, (unsigned long long)r->train.batches,
                (unsigned long long)total, a->o.batch, a->o.accum);
    snprintf(path, sizeof path, "%s/train.jsonl", a->out);
    r->fc.log_path = path;
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART}, old_sa;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    struct lm_summary sum;
    s = lm_trainer_fit(r->t, &r->fc, &r->train, &sum);
    sigaction(SIGINT, &old_sa, NULL);
    free(settings);
    r->fc.checkpoint_settings = NULL;
    if (s == VP_ERROR_DEVICE_LOST) return cli_report_device_lost(&a->ck, ckpt);
    if (s != VP_OK) return cli_fail(s);
    cli_report_nonfinite(&sum.base, path, false);
    if (sum.base.diverged) {
        fprintf(stderr, "vkpeft: training stopped at step %llu; lower --lr, or set --clip; no delta was written\n",
                (unsigned long long)sum.base.diverged_step);
        cli_report_resume(&a->ck, ckpt);
        return EXIT_RUNTIME;
    }
    const struct delta_save_info info = {.model_dir = a->model};
    if ((s = delta_save(a->out, params, &info)) != VP_OK) return cli_fail(s);
    const char *why;
    if (!a->quiet && !delta_peft_supported(&r->spec, &r->arch, &why))
        fprintf(stderr, "vkpeft: no PEFT adapter files (adapter_config.json): %s\n", why);
    if (sum.base.interrupted) {
        fprintf(stderr, "vkpeft: interrupted at step %llu of %llu; delta written to %s\n",
                (unsigned long long)sum.base.steps, (unsigned long long)total, a->out);
        cli_report_resume(&a->ck, ckpt);
        return 128 + SIGINT;
    }
    if (sum.has_eval) {
        char *text = lm_eval_json(&sum.eval);
        snprintf(path, sizeof path, "%s/metrics.json", a->out);
        s = text ? vp_file_write_atomic(path, text, strlen(text)) : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
        free(text);
        if (s != VP_OK) return cli_fail(s);
    }
    unlink(ckpt); /* the run is complete: its checkpoint (an earlier step) is spent */
    print_summary(r, &sum, delta_params_numel(params));
    return EXIT_OK;
}

int cmd_train_lm(int argc, char **argv) {
    struct lm_run r;
    memset(&r, 0, sizeof r);
    r.a.cmd = "train";
    int rc = parse(argc, argv, &r.a, train_help);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    if (!r.a.out) return cli_usage_error("train", "--out is required");
    if (!r.a.delta && !r.a.init) return cli_usage_error("train", "--delta (or --init-delta) is required");
    if ((rc = cli_check_model_dir("train", r.a.model)) != 0) return rc;
    if ((rc = check_file("train", "--data", r.a.data, false)) != 0) return rc;
    if (r.a.eval && (rc = check_file("train", "--eval", r.a.eval, false)) != 0) return rc;
    if (r.a.init && (rc = check_file("train", "--init-delta", r.a.init, true)) != 0) return rc;
    if ((rc = check_out_dir(&r.a)) != 0) return rc;
    rc = train(&r);
    run_free(&r);
    return rc;
}

/* ------------------------------------------------------------------------
 * vkpeft eval
 * ------------------------------------------------------------------------ */

static int evaluate(const struct lm_args *a) {
    struct tok_tokenizer *tok = NULL;
    vp_context *ctx = NULL;
    struct decoder *m = NULL;
    struct model_arch arch;
    bool arch_ok = false;
    vp_status s = model_arch_load(a->model, &arch);
    arch_ok = s == VP_OK;
    if (s == VP_OK && (s = tok_tokenizer_load(a->model, &tok)) != VP_OK)
        vp_fail_context(s, "--model %s (its tokenizer)", a->model);
    if (s == VP_OK && a->target_lang && target_lang_id(a, tok) < 0) {
        tok_tokenizer_free(tok);
        model_arch_finish(&arch);
        return cli_usage_error(a->cmd, "--target-lang %s: %s/tokenizer.json has no such token", a->target_lang,
                               a->model);
    }
    const vp_context_options co = {.device = a->common.device};
    if (s == VP_OK) s = vp_context_create(&co, &ctx);
    const struct decoder_options dopt = {.storage = a->o.storage};
    const int T = a->o.max_len > 0 ? a->o.max_len : 8;
    struct lm_eval_result res;
    struct lm_text_metrics gen = {0};
    if (s == VP_OK && a->seq2seq) {
        const struct seq2seq_options sopt = {.storage = a->o.storage, .label_smoothing = a->o.label_smoothing};
        struct seq2seq *sm = NULL;
        s = seq2seq_create_with_delta(ctx, a->model, a->delta, &sopt, a->o.batch, T, T, &sm);
        struct lm_data_options o = data_options(a, tok);
        o.arch = &arch;
        o.batch = a->o.batch;
        o.max_len = a->o.max_len > 0 ? a->o.max_len : arch.max_positions;
        if (s == VP_OK) s = lm_evaluate_seq2seq(sm, a->data, &o, a->o.pad_multiple, &res);
        /* then greedy generation of every source: --max-new-tokens (128,
         * run_summarization's default target length) at most, within the
         * model's positions; the decoder is loaded for start + those */
        int max_new = a->max_new ? a->max_new : 128;
        if (max_new > arch.max_positions - 1) max_new = arch.max_positions - 1;
        struct search_options so = {.max_new_tokens = max_new};
        seq2seq_search_defaults(&arch, &so);
        if (a->target_lang) { /* the language code the labels start with comes first */
            so.forced_bos_set = true;
            so.forced_bos_token_id = target_lang_id(a, tok);
        }
        if (s == VP_OK) s = seq2seq_set_batch(sm, o.batch, o.max_len, 1 + max_new);
        if (s == VP_OK) s = lm_generate_metrics(sm, tok, a->data, &o, &so, &gen);
        seq2seq_destroy(sm);
    } else if (s == VP_OK) {
        s = decoder_create_with_delta(ctx, a->model, a->delta, &dopt, a->o.batch, T, &m);
    }
    if (s == VP_OK && !a->seq2seq) {
        struct lm_data_options o = data_options(a, tok);
        o.arch = decoder_arch(m);
        o.batch = a->o.batch;
        o.max_len = a->o.max_len > 0 ? a->o.max_len : arch.max_positions - m->position_offset;
        s = lm_evaluate(m, a->data, &o, a->o.pad_multiple, &res);
    }
    int rc = EXIT_OK;
    if (s != VP_OK) rc = cli_fail(s);
    else if (a->common.json) {
        char *text = lm_eval_json(&res);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        if (j && a->seq2seq) {
            cJSON_AddNumberToObject(j, "rouge1", gen.rouge1);
            cJSON_AddNumberToObject(j, "rouge2", gen.rouge2);
            cJSON_AddNumberToObject(j, "rougeL", gen.rougeL);
            cJSON_AddNumberToObject(j, "bleu", gen.bleu);
            cJSON_AddNumberToObject(j, "exact_match", gen.exact_match);
        }
        char *out = j ? cJSON_Print(j) : NULL;
        puts(out ? out : "{}");
        free(out);
        cJSON_Delete(j);
        free(text);
    } else {
        printf("loss %.4f  perplexity %.4f  token accuracy %.4f  (%llu tokens, %llu examples)\n", res.loss,
               res.perplexity, res.accuracy, (unsigned long long)res.tokens, (unsigned long long)res.examples);
        if (a->seq2seq)
            printf("generated (greedy): ROUGE-1 %.2f  ROUGE-2 %.2f  ROUGE-L %.2f  BLEU %.2f  exact match %.4f\n",
                   gen.rouge1, gen.rouge2, gen.rougeL, gen.bleu, gen.exact_match);
    }
    decoder_destroy(m);
    vp_context_destroy(ctx);
    tok_tokenizer_free(tok);
    if (arch_ok) model_arch_finish(&arch);
    return rc;
}

int cmd_eval_lm(int argc, char **argv) {
    struct lm_args a;
    memset(&a, 0, sizeof a);
    a.cmd = "eval";
    int rc = parse(argc, argv, &a, eval_help);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    if ((rc = cli_check_model_dir("eval", a.model)) != 0) return rc;
    if (a.delta && (rc = check_file("eval", "--delta", a.delta, true)) != 0) return rc;
    if ((rc = check_file("eval", "--data", a.data, false)) != 0) return rc;
    return evaluate(&a);
}
