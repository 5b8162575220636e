/* vkpeft compare: trains several presets with the same budget on the same
 * data through the trainer library (one process, one fresh context per
 * preset so each peak is its own) and prints the paper's table in
 * miniature, as text, JSON and an HTML page. */
#include "cli.h"
#include "cli_data.h"
#include "report.h"
#include "save.h"
#include "trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char help[] =
    "usage: vkpeft compare --model DIR --data train.jsonl --eval dev.jsonl\n"
    "                      --presets all|P1,P2,... [--steps N | --epochs N] [--out DIR] [options]\n"
    "\n"
    "Trains every preset with the same budget (steps or epochs, batch, learning\n"
    "rate, seed) into DIR/<preset>/ (a delta, train.jsonl, train_args.json and\n"
    "metrics.json each, as 'vkpeft train' writes them), then prints the paper's\n"
    "table in miniature: method, trained parameters (count and share of the\n"
    "model), dev accuracy, macro-F1 and Matthews correlation, milliseconds per\n"
    "step and the peak memory per pool. DIR/compare.html holds the table and a\n"
    "loss curve per preset (one self-contained page).\n"
    "\n"
    "options:\n"
    "  --model DIR          Hugging Face model folder\n"
    "  --data FILE          training examples (JSONL, CSV or TSV; see the data options below)\n"
    "  --eval FILE          dev examples (same format)\n"
    "  --presets LIST       'all', or presets separated by commas; a preset's own\n"
    "                       settings follow a colon (lora:r=4,a=8,prefix:l=8)\n"
    "  --steps N            optimiser steps per preset\n"
    "  --epochs N           passes over the data per preset (default 1)\n"
    "  --batch B            sequences per batch (default 16)\n"
    "  --lr LR              peak learning rate (default 1e-4)\n"
    "  --max-len T          truncate sequences to T tokens\n"
    "  --seed S             (default 42)\n"
    "  --out DIR            output folder (default compare; new or empty unless --overwrite)\n"
    "  --overwrite          write into a non-empty --out\n"
    "  --quiet              no progress lines\n"
    "  --device N|name      Vulkan device\n"
    "  --json               print the table as JSON on stdout\n"
    "\n"
    "examples:\n"
    "  vkpeft compare --model models/roberta-base --data sst2/train.jsonl --eval sst2/dev.jsonl \\\n"
    "        --presets lora,prefix,mam --steps 500 --lr 5e-4 --out runs/compare\n"
    "  vkpeft compare --model models/roberta-base --data train.jsonl --eval dev.jsonl --presets all --json\n";

#define MAX_PRESETS 32

struct compare_args {
    struct cli_common common;
    const char *model, *data, *eval, *out, *presets;
    bool overwrite, quiet;
    struct trainer_options o;
    struct cli_data data_opt; /* --format, --text-field, ...; the model's tokenizer */
};

/* What one preset's run gives the table. */
struct compare_row {
    char preset[128];  /* as given */
    char folder[128];  /* DIR/<folder> */
    struct delta_counts counts;
    struct trainer_summary sum;
    uint64_t peak[VP_POOL_COUNT], plan[VP_POOL_COUNT];
};

/* ------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------ */

static bool parse_u64(const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    if (!*text || *text == '-') return false;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, struct compare_args *a) {
    memset(a, 0, sizeof *a);
    trainer_options_default(&a->o);
    a->o.epochs = 1;
    a->out = "compare";
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help, stdout);
            fputs(cli_data_help, stdout);
            return -1;
        }
        if (cli_common_option(argc, argv, &i, &a->common)) continue;
        if (strcmp(arg, "--overwrite") == 0) {
            a->overwrite = true;
            continue;
        }
        if (strcmp(arg, "--quiet") == 0 || strcmp(arg, "-q") == 0) {
            a->quiet = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) return cli_usage_error("compare", "unexpected argument '%s'", arg);
        if (i + 1 >= argc) return cli_usage_error("compare", "%s needs a value or is unknown", arg);
        const char *v = argv[++i];
        uint64_t n = 0;
        char *end;
        bool ok = true;
        if (strcmp(arg, "--model") == 0) a->model = v;
        else if (strcmp(arg, "--data") == 0) a->data = v;
        else if (strcmp(arg, "--eval") == 0) a->eval = v;
        else if (strcmp(arg, "--out") == 0) a->out = v;
        else if (strcmp(arg, "--presets") == 0) a->presets = v;
        else if (strcmp(arg, "--steps") == 0) ok = parse_u64(v, &a->o.steps) && a->o.steps > 0;
        else if (strcmp(arg, "--epochs") == 0) {
            ok = parse_u64(v, &n) && n > 0 && n < 1000000;
            a->o.epochs = (int)n;
            a->o.steps = 0;
        } else if (strcmp(arg, "--batch") == 0) {
            ok = parse_u64(v, &n) && n > 0 && n < 100000;
            a->o.batch = (int)n;
        } else if (strcmp(arg, "--max-len") == 0) {
            ok = parse_u64(v, &n) && n > 0 && n < 1000000;
            a->o.max_len = (int)n;
        } else if (strcmp(arg, "--seed") == 0) ok = parse_u64(v, &a->o.seed);
        else if (strcmp(arg, "--lr") == 0) {
            errno = 0;
            a->o.lr = strtod(v, &end);
            ok = !errno && end != v && !*end && isfinite(a->o.lr);
        } else {
            int rc = cli_data_option("compare", &a->data_opt, arg, v);
            if (rc > 0) return rc;
            if (rc < 0) return cli_usage_error("compare", "unknown option '%s'", arg);
        }
        if (!ok) return cli_usage_error("compare", "%s '%s' is not a valid value", arg, v);
    }
    if (!a->model) return cli_usage_error("compare", "--model is required");
    if (!a->data) return cli_usage_error("compare", "--data is required");
    if (!a->eval) return cli_usage_error("compare", "--eval is required");
    if (!a->presets) return cli_usage_error("compare", "--presets is required (all, or e.g. lora,prefix,mam)");
    if (trainer_options_check(&a->o) != VP_OK) return cli_usage_error("compare", "%s", vp_last_error());
    return 0;
}

/* Splits "lora:r=4,a=8,prefix,mam" into presets: a piece with '=' and no
 * ':' continues the previous preset's settings. Each is checked. */
static int split_presets(const char *list, struct compare_row *rows, int *count) {
    *count = 0;
    if (strcmp(list, "all") == 0) {
        for (int i = 0; delta_preset_names[i] && *count < MAX_PRESETS; i++)
            snprintf(rows[(*count)++].preset, sizeof rows->preset, "%s", delta_preset_names[i]);
    } else {
        char buf[2048];
        snprintf(buf, sizeof buf, "%s", list);
        for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
            if (strchr(p, '=') && !strchr(p, ':') && *count > 0) {
                char *prev = rows[*count - 1].preset;
                const size_t len = strlen(prev);
                snprintf(prev + len, sizeof rows->preset - len, ",%s", p);
                continue;
            }
            if (*count == MAX_PRESETS) return cli_usage_error("compare", "more than %d presets", MAX_PRESETS);
            snprintf(rows[(*count)++].preset, sizeof rows->preset, "%s", p);
        }
    }
    if (*count == 0) return cli_usage_error("compare", "--presets names no preset");
    for (int i = 0; i < *count; i++) {
        struct delta_spec spec;
        if (delta_spec_preset(rows[i].preset, &spec) != VP_OK)
            return cli_usage_error("compare", "--presets: %s", vp_last_error());
        /* The folder: the preset text with anything but [A-Za-z0-9.-] as '_'. */
        char *f = rows[i].folder;
        snprintf(f, sizeof rows->folder, "%s", rows[i].preset);
        for (; *f; f++)
            if (!((*f >= 'a' && *f <= 'z') || (*f >= 'A' && *f <= 'Z') || (*f >= '0' && *f <= '9') || *f == '.' ||
                  *f == '-'))
                *f = '_';
        for (int j = 0; j < i; j++)
            if (strcmp(rows[j].folder, rows[i].folder) == 0)
                return cli_usage_error("compare", "--presets names %s twice", rows[i].preset);
    }
    return 0;
}

static int check_out(const struct compare_args *a) {
    struct stat st;
    if (stat(a->out, &st) != 0)
        return errno == ENOENT ? 0 : cli_usage_error("compare", "--out %s: %s", a->out, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return cli_usage_error("compare", "--out %s exists and is not a folder", a->out);
    DIR *d = opendir(a->out);
    if (!d) return cli_usage_error("compare", "--out %s: %s", a->out, strerror(errno));
    bool empty = true;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = false;
    closedir(d);
    if (!empty && !a->overwrite)
        return cli_usage_error("compare", "--out %s is not empty; choose a new folder or pass --overwrite", a->out);
    return 0;
}

/* ------------------------------------------------------------------------
 * One preset
 * ------------------------------------------------------------------------ */

struct preset_run {
    vp_context *ctx;
    struct trainer *t;
    struct train_data *train, *eval;
};

static void preset_run_free(struct preset_run *p) {
    train_data_close(p->train);
    train_data_close(p->eval);
    trainer_destroy(p->t);
    vp_context_destroy(p->ctx);
}

static vp_status write_metrics(const char *dir, const struct trainer_eval_result *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    char *text = train_eval_json(e);
    vp_status s = text ? vp_file_write_atomic(path, text, strlen(text))
                       : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    free(text);
    return s;
}

static vp_status train_preset(struct compare_args *a, const struct model_arch *arch, struct compare_row *row) {
    struct preset_run p = {0};
    struct delta_spec spec;
    const vp_context_options co = {.device = a->common.device};
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", a->out, row->folder);
    vp_status s = delta_spec_preset(row->preset, &spec);
    if (s == VP_OK) s = vp_context_create(&co, &p.ctx);
    if (s == VP_OK) s = trainer_open(p.ctx, a->model, &spec, &a->o, &p.t);
    struct io_dataset_options dopt = {
        .vocab_size = arch->vocab_size, .num_labels = arch->num_labels, .labels_required = true,
        .collect_labels = true,
    };
    cli_data_prepare(&a->data_opt, a->model, &dopt);
    const char *const *names = NULL;
    int named = 0;
    if (s == VP_OK) {
        dopt.max_len = trainer_max_len(p.t);
        s = train_data_open(a->data, &dopt, &p.train);
    }
    /* The dev set maps label names through the training data's (sorted)
     * names, or the model's id2label when training used class ids. */
    if (s == VP_OK) {
        named = train_data_label_names(p.train, &names);
        dopt.collect_labels = false;
        dopt.label_names = named ? names : (const char *const *)arch->labels;
        dopt.label_count = named ? named : (arch->labels ? arch->num_labels : 0);
        dopt.label_names_source = named ? "the labels of the training data" : "the model's id2label names";
        s = train_data_open(a->eval, &dopt, &p.eval);
    }
    if (s == VP_OK) {
        int longest = train_data_longest(p.train);
        if (train_data_longest(p.eval) > longest) longest = train_data_longest(p.eval);
        s = trainer_load(p.t, longest);
    }
    const uint64_t total = s == VP_OK ? trainer_total_steps(&a->o, train_data_count(p.train)) : 0;
    if (s == VP_OK) s = vp_mkdir_p(dir);
    snprintf(path, sizeof path, "%s/train_args.json", dir);
    if (s == VP_OK) s = train_write_args(path, &a->o, a->model, &spec, a->data, a->eval, total);
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    const struct trainer_fit_config fc = {.train = p.train, .eval = p.eval, .log_path = path};
    if (s == VP_OK) {
        trainer_plan(p.t, row->plan);
        trainer_counts(p.t, &row->counts);
        s = trainer_fit(p.t, &fc, &row->sum);
    }
    if (s == VP_OK && row->sum.diverged)
        s = vp_fail(VP_ERROR_BAD_INPUT, "training diverged at step %llu (see %s); lower --lr",
                    (unsigned long long)row->sum.diverged_step, path);
    /* Label names as train saves them: the data's, padded to num_labels. */
    char **saved = named ? calloc((size_t)arch->num_labels, sizeof *saved) : NULL;
    for (int k = 0; saved && k < arch->num_labels; k++) {
        char fallback[32];
        snprintf(fallback, sizeof fallback, "LABEL_%d", k);
        saved[k] = strdup(k < named ? names[k] : fallback);
    }
    const struct delta_save_info info = {
        .model_dir = a->model,
        .labels = saved ? (const char *const *)saved : (const char *const *)arch->labels,
        .num_labels = saved || arch->labels ? arch->num_labels : 0,
    };
    if (s == VP_OK) s = delta_save(dir, encoder_params(trainer_encoder(p.t)), &info);
    for (int k = 0; saved && k < arch->num_labels; k++) free(saved[k]);
    free(saved);
    if (s == VP_OK && row->sum.has_eval) s = write_metrics(dir, &row->sum.eval);
    for (int k = 0; s == VP_OK && k < VP_POOL_COUNT; k++) {
        vp_pool_stats st;
        vp_pool_stats_get(p.ctx, (vp_pool)k, &st);
        row->peak[k] = st.peak_in_use;
    }
    preset_run_free(&p);
    if (s != VP_OK) return vp_fail_context(s, "preset %s", row->preset);
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------ */

static double share(const struct compare_row *r) {
    return r->counts.model_params ? 100.0 * (double)r->counts.delta_params / (double)r->counts.model_params : 0;
}

static void print_text(const struct compare_row *rows, int n) {
    char b[VP_POOL_COUNT][32];
    printf("%-20s %12s %9s %9s %9s %9s %9s", "method", "trained", "% params", "accuracy", "macro-F1", "Matthews",
           "ms/step");
    for (int k = 0; k < VP_POOL_COUNT; k++) printf(" %11s", vp_pool_name((vp_pool)k));
    printf("\n");
    for (int i = 0; i < n; i++) {
        const struct compare_row *r = &rows[i];
        const struct metrics_classification *m = &r->sum.eval.metrics;
        printf("%-20s %12llu %8.4f%% %9.4f %9.4f %9.4f %9.2f", r->preset, (unsigned long long)r->counts.delta_params,
               share(r), m->accuracy, m->macro_f1, m->matthews, r->sum.step_seconds * 1e3);
        for (int k = 0; k < VP_POOL_COUNT; k++) printf(" %11s", vp_format_bytes(r->peak[k], b[k], sizeof b[k]));
        printf("\n");
    }
    printf("(peak memory per pool; trained = delta parameters, the head excluded)\n");
}

static cJSON *pools_json(const uint64_t bytes[VP_POOL_COUNT]) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < VP_POOL_COUNT; k++) cJSON_AddNumberToObject(o, vp_pool_name((vp_pool)k), (double)bytes[k]);
    return o;
}

static void print_json(const struct compare_args *a, const struct compare_row *rows, int n) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", a->model);
    cJSON_AddStringToObject(root, "out", a->out);
    cJSON *arr = cJSON_AddArrayToObject(root, "presets");
    for (int i = 0; i < n; i++) {
        const struct compare_row *r = &rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "preset", r->preset);
        cJSON_AddStringToObject(o, "dir", r->folder);
        cJSON_AddNumberToObject(o, "trained_params", (double)r->counts.delta_params);
        uint64_t saved = 0;
        for (int k = 0; k < DELTA_MAX_MODULES; k++) saved += r->counts.module_saved[k];
        cJSON_AddNumberToObject(o, "saved_params", (double)saved);
        cJSON_AddNumberToObject(o, "head_params", (double)r->counts.head_params);
        cJSON_AddNumberToObject(o, "model_params", (double)r->counts.model_params);
        cJSON_AddNumberToObject(o, "share_trained", share(r) / 100);
        cJSON_AddNumberToObject(o, "steps", (double)r->sum.steps);
        cJSON_AddNumberToObject(o, "step_ms", r->sum.step_seconds * 1e3);
        cJSON_AddNumberToObject(o, "first_loss", r->sum.first_loss);
        cJSON_AddNumberToObject(o, "final_loss", r->sum.final_loss);
        char *e = train_eval_json(&r->sum.eval);
        cJSON *ej = e ? cJSON_Parse(e) : NULL;
        free(e);
        if (ej) cJSON_AddItemToObject(o, "eval", ej);
        cJSON_AddItemToObject(o, "peak_memory", pools_json(r->peak));
        cJSON_AddItemToObject(o, "planned_memory", pools_json(r->plan));
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_Print(root);
    if (text) puts(text);
    free(text);
    cJSON_Delete(root);
}

static vp_status write_html(const struct compare_args *a, const struct compare_row *rows, int n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/compare.html", a->out);
    struct train_file f;
    vp_status s = train_file_open(&f, path);
    if (s != VP_OK) return s;
    FILE *fp = f.f;
    report_html_begin(&f, "vkpeft compare");
    fprintf(fp, "<p>model ");
    report_html_text(&f, a->model);
    fprintf(fp, ", train ");
    report_html_text(&f, a->data);
    fprintf(fp, ", dev ");
    report_html_text(&f, a->eval);
    fprintf(fp, "; the same budget for every preset.</p>\n<table>\n<tr><th>method</th><th>trained params</th>"
                "<th>%% params</th><th>accuracy</th><th>macro-F1</th><th>Matthews</th><th>ms/step</th>");
    for (int k = 0; k < VP_POOL_COUNT; k++) fprintf(fp, "<th>peak %s</th>", vp_pool_name((vp_pool)k));
    fprintf(fp, "</tr>\n");
    for (int i = 0; i < n; i++) {
        const struct compare_row *r = &rows[i];
        const struct metrics_classification *m = &r->sum.eval.metrics;
        fprintf(fp, "<tr><th>");
        report_html_text(&f, r->preset);
        fprintf(fp, "</th><td class=\"n\">%llu</td><td class=\"n\">%.4f%%</td><td class=\"n\">%.4f</td>"
                    "<td class=\"n\">%.4f</td><td class=\"n\">%.4f</td><td class=\"n\">%.2f</td>",
                (unsigned long long)r->counts.delta_params, share(r), m->accuracy, m->macro_f1, m->matthews,
                r->sum.step_seconds * 1e3);
        for (int k = 0; k < VP_POOL_COUNT; k++) {
            char b[32];
            fprintf(fp, "<td class=\"n\">%s</td>", vp_format_bytes(r->peak[k], b, sizeof b));
        }
        fprintf(fp, "</tr>\n");
    }
    fprintf(fp, "</table>\n<h2>Training loss</h2>\n");
    for (int i = 0; s == VP_OK && i < n; i++) {
        char log[4400];
        snprintf(log, sizeof log, "%s/%s/train.jsonl", a->out, rows[i].folder);
        struct train_run run;
        s = train_run_read(log, &run);
        if (s != VP_OK) break;
        static const double none = NAN;
        const struct report_series loss = {
            "training loss", run.steps ? &run.steps->step : &none, run.steps ? &run.steps->loss : &none,
            run.n_steps, sizeof(struct train_run_step) / sizeof(double), false,
        };
        report_html_plot(&f, rows[i].preset, "step", &loss, 1);
        train_run_finish(&run);
    }
    if (s != VP_OK) {
        train_file_abort(&f);
        return s;
    }
    return report_html_end(&f);
}

/* ------------------------------------------------------------------------
 * The command
 * ------------------------------------------------------------------------ */

int cmd_compare(int argc, char **argv) {
    struct compare_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    static struct compare_row rows[MAX_PRESETS];
    memset(rows, 0, sizeof rows);
    int n = 0;
    if ((rc = split_presets(a.presets, rows, &n)) != 0) return rc;
    if ((rc = cli_check_model_dir("compare", a.model)) != 0) return rc;
    if ((rc = check_out(&a)) != 0) return rc;
    struct model_arch arch;
    vp_status s = model_arch_load_encoder(a.model, &arch);
    if (s != VP_OK) return cli_fail(s);
    for (int i = 0; i < n && s == VP_OK; i++) {
        if (!a.quiet && !a.common.json) fprintf(stderr, "[%d/%d] training %s\n", i + 1, n, rows[i].preset);
        s = train_preset(&a, &arch, &rows[i]);
        if (s == VP_OK && !a.quiet && !a.common.json)
            fprintf(stderr, "[%d/%d] %s: %llu steps, loss %.4f -> %.4f, accuracy %.4f\n", i + 1, n, rows[i].preset,
                    (unsigned long long)rows[i].sum.steps, rows[i].sum.first_loss, rows[i].sum.final_loss,
                    rows[i].sum.eval.metrics.accuracy);
    }
    model_arch_finish(&arch);
    cli_data_finish(&a.data_opt);
    if (s == VP_OK) s = write_html(&a, rows, n);
    if (s != VP_OK) return cli_fail(s);
    if (a.common.json) {
        print_json(&a, rows, n);
    } else {
        print_text(rows, n);
        printf("runs in %s/<preset>/, table and loss curves in %s/compare.html\n", a.out, a.out);
    }
    return EXIT_OK;
}
