/* vkpeft score: ROUGE-1/2/L and corpus BLEU of generated text against
 * references, from plain-text files (runtime/train/textmetrics.h computes). */
#include "cli.h"
#include "textmetrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static const char help[] =
    "usage: vkpeft score --pred FILE --ref FILE [--ref FILE ...] [--metric rouge|bleu|all]\n"
    "                    [--stemmer] [--json]\n"
    "\n"
    "Scores generated text against references, one example per line (UTF-8;\n"
    "a final newline optional; \\r\\n line ends accepted):\n"
    "  ROUGE-1, ROUGE-2, ROUGE-L  F-measure, mean over the examples, as Google's\n"
    "                             rouge_score computes them (lowercase, letters and\n"
    "                             digits only; --stemmer: Porter stemmer on words\n"
    "                             longer than 3 characters); first --ref only\n"
    "  BLEU                       corpus BLEU as sacreBLEU's defaults compute it\n"
    "                             (13a tokenization, case-sensitive, 4-grams, 'exp'\n"
    "                             smoothing); every --ref is one reference stream\n"
    "Every file must have as many lines as --pred; a mismatch exits 2 naming the\n"
    "files and their line counts. Scores are printed ×100.\n"
    "\n"
    "options:\n"
    "  --pred FILE     the generated text (hypotheses), one per line\n"
    "  --ref FILE      references, one per line; repeat for more reference streams\n"
    "  --metric M      rouge, bleu or all (default all)\n"
    "  --stemmer       ROUGE with the Porter stemmer (what summarization papers report)\n"
    "  --json          print the scores as JSON\n"
    "\n"
    "examples:\n"
    "  vkpeft score --pred xsum.hyp --ref xsum.ref --metric rouge --stemmer\n"
    "  vkpeft score --pred wmt16.ro.hyp --ref wmt16.ro.ref --metric bleu\n";

#define SCORE_MAX_REFS 8

/* A file split into lines in place; owns the text. */
struct lines {
    char *text;
    char **line;
    size_t count;
};

static vp_status lines_read(const char *path, struct lines *out) {
    memset(out, 0, sizeof *out);
    size_t size;
    vp_status s = vp_file_read(path, (void **)&out->text, &size);
    if (s != VP_OK) return s;
    size_t n = 0;
    for (size_t i = 0; i < size; i++) n += out->text[i] == '\n';
    if (size && out->text[size - 1] != '\n') n++;
    out->line = calloc(n ? n : 1, sizeof *out->line);
    if (!out->line) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", path);
    char *p = out->text, *end = out->text + size;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        if (stop > p && stop[-1] == '\r') stop[-1] = 0;
        *stop = 0;
        out->line[out->count++] = p;
        p = nl ? nl + 1 : end;
    }
    return VP_OK;
}

static void lines_free(struct lines *l) {
    free(l->line);
    free(l->text);
}

struct score_args {
    const char *pred;
    const char *refs[SCORE_MAX_REFS];
    int ref_count;
    bool rouge, bleu, stemmer, json;
};

static int parse_args(int argc, char **argv, struct score_args *a, bool *help_shown) {
    a->rouge = a->bleu = true;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            fputs(help, stdout);
            *help_shown = true;
            return EXIT_OK;
        }
        if (strcmp(o, "--stemmer") == 0) { a->stemmer = true; continue; }
        if (strcmp(o, "--json") == 0) { a->json = true; continue; }
        if (strcmp(o, "--pred") != 0 && strcmp(o, "--ref") != 0 && strcmp(o, "--metric") != 0)
            return cli_usage_error("score", "unknown option '%s'", o);
        if (i + 1 >= argc) return cli_usage_error("score", "%s needs a value", o);
        const char *v = argv[++i];
        if (strcmp(o, "--pred") == 0) {
            a->pred = v;
        } else if (strcmp(o, "--ref") == 0) {
            if (a->ref_count == SCORE_MAX_REFS)
                return cli_usage_error("score", "at most %d --ref files", SCORE_MAX_REFS);
            a->refs[a->ref_count++] = v;
        } else {
            a->rouge = strcmp(v, "rouge") == 0 || strcmp(v, "all") == 0;
            a->bleu = strcmp(v, "bleu") == 0 || strcmp(v, "all") == 0;
            if (!a->rouge && !a->bleu)
                return cli_usage_error("score", "--metric wants rouge, bleu or all, got '%s'", v);
        }
    }
    if (!a->pred) return cli_usage_error("score", "--pred FILE is required");
    if (!a->ref_count) return cli_usage_error("score", "--ref FILE is required");
    return EXIT_OK;
}

static void print_text(const struct score_args *a, const struct textmetrics_rouge *r,
                       const struct textmetrics_bleu *b) {
    if (a->rouge)
        printf("ROUGE-1 %.2f  ROUGE-2 %.2f  ROUGE-L %.2f  (F-measure x100, mean over %llu examples%s)\n",
               100 * r->rouge1.fmeasure, 100 * r->rouge2.fmeasure, 100 * r->rougeL.fmeasure,
               (unsigned long long)r->count, a->stemmer ? ", Porter stemmer" : "");
    if (a->bleu)
        printf("BLEU %.2f  %.1f/%.1f/%.1f/%.1f  (BP %.3f, ratio %.3f, hyp_len %llu, ref_len %llu; 13a, exp "
               "smoothing, %d reference%s)\n", b->score, b->precisions[0], b->precisions[1], b->precisions[2],
               b->precisions[3], b->bp, b->ratio, (unsigned long long)b->sys_len, (unsigned long long)b->ref_len,
               a->ref_count, a->ref_count == 1 ? "" : "s");
}

static void print_json(const struct score_args *a, const struct textmetrics_rouge *r,
                       const struct textmetrics_bleu *b) {
    cJSON *root = cJSON_CreateObject();
    if (a->rouge) {
        cJSON *o = cJSON_AddObjectToObject(root, "rouge");
        cJSON_AddNumberToObject(o, "rouge1", 100 * r->rouge1.fmeasure);
        cJSON_AddNumberToObject(o, "rouge2", 100 * r->rouge2.fmeasure);
        cJSON_AddNumberToObject(o, "rougeL", 100 * r->rougeL.fmeasure);
        cJSON_AddNumberToObject(o, "count", (double)r->count);
        cJSON_AddBoolToObject(o, "stemmer", a->stemmer);
    }
    if (a->bleu) {
        cJSON *o = cJSON_AddObjectToObject(root, "bleu");
        cJSON_AddNumberToObject(o, "score", b->score);
        cJSON *p = cJSON_AddArrayToObject(o, "precisions");
        for (int k = 0; k < TEXTMETRICS_BLEU_ORDER; k++) cJSON_AddItemToArray(p, cJSON_CreateNumber(b->precisions[k]));
        cJSON_AddNumberToObject(o, "bp", b->bp);
        cJSON_AddNumberToObject(o, "sys_len", (double)b->sys_len);
        cJSON_AddNumberToObject(o, "ref_len", (double)b->ref_len);
    }
    char *text = cJSON_Print(root);
    if (text) puts(text);
    free(text);
    cJSON_Delete(root);
}

/* A file the user named that cannot be read is bad input (exit 2). */
static vp_status read_input(const char *path, struct lines *out) {
    vp_status s = lines_read(path, out);
    if (s != VP_ERROR_IO) return s;
    char why[1024];
    snprintf(why, sizeof why, "%s", vp_last_error());
    return vp_fail(VP_ERROR_BAD_INPUT, "%s", why);
}

/* Reads every file and checks the line counts match --pred's. */
static vp_status read_all(const struct score_args *a, struct lines *pred, struct lines *refs) {
    vp_status s = read_input(a->pred, pred);
    for (int k = 0; k < a->ref_count && s == VP_OK; k++) {
        s = read_input(a->refs[k], &refs[k]);
        if (s == VP_OK && refs[k].count != pred->count)
            s = vp_fail(VP_ERROR_BAD_INPUT, "%s has %zu lines but %s has %zu; every --ref needs one line per "
                        "--pred line", a->refs[k], refs[k].count, a->pred, pred->count);
    }
    return s;
}

int cmd_score(int argc, char **argv) {
    struct score_args a = {0};
    bool help_shown = false;
    int rc = parse_args(argc, argv, &a, &help_shown);
    if (rc != EXIT_OK || help_shown) return rc;
    struct lines pred, refs[SCORE_MAX_REFS];
    memset(refs, 0, sizeof refs);
    vp_status s = read_all(&a, &pred, refs);
    struct textmetrics_rouge r = {0};
    struct textmetrics_bleu b = {0};
    struct textmetrics_lines hyps = TEXTMETRICS_LINES(pred.line, pred.count), streams[SCORE_MAX_REFS];
    for (int k = 0; k < a.ref_count; k++) streams[k] = TEXTMETRICS_LINES(refs[k].line, refs[k].count);
    if (s == VP_OK && a.rouge) s = textmetrics_rouge(hyps, streams[0], a.stemmer, &r, NULL);
    if (s == VP_OK && a.bleu) s = textmetrics_bleu(hyps, streams, (size_t)a.ref_count, &b);
    if (s == VP_OK) {
        if (a.json) print_json(&a, &r, &b);
        else print_text(&a, &r, &b);
    }
    lines_free(&pred);
    for (int k = 0; k < a.ref_count; k++) lines_free(&refs[k]);
    return s == VP_OK ? EXIT_OK : cli_fail(s);
}
