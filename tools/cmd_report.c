/* vkpeft report: a self-contained HTML page on a training run's folder
 * (runtime/train/report.h does the work). */
#include "cli.h"
#include "report.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char help[] =
    "usage: vkpeft report DIR [--out FILE]\n"
    "\n"
    "Writes one HTML page on the training run in DIR (the --out folder of\n"
    "'vkpeft train'): plots of the training loss, the learning rate and the\n"
    "evaluation metrics over the steps, the final metrics, the trainable\n"
    "parameters and their share of the model, the memory plan per pool, and the\n"
    "run's settings. It reads DIR/train.jsonl and, where present, metrics.json,\n"
    "train_args.json and delta.json. The page has no scripts, fonts or images\n"
    "from elsewhere (inline CSS and SVG only), so it opens from disk. It is\n"
    "written atomically. A malformed line in train.jsonl exits 2 naming it.\n"
    "\n"
    "options:\n"
    "  --out FILE   where to write the page (default DIR/report.html)\n"
    "\n"
    "examples:\n"
    "  vkpeft report runs/sst2-lora\n"
    "  vkpeft report runs/sst2-lora --out sst2-lora.html\n";

int cmd_report(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (strcmp(a, "--out") == 0) {
            if (i + 1 >= argc) return cli_usage_error("report", "--out needs a value");
            out = argv[++i];
        } else if (strncmp(a, "--out=", 6) == 0) {
            out = a + 6;
        } else if (a[0] == '-') {
            return cli_usage_error("report", "unknown option '%s'", a);
        } else if (!dir) {
            dir = a;
        } else {
            return cli_usage_error("report", "unexpected argument '%s'", a);
        }
    }
    if (!dir) return cli_usage_error("report", "a run folder is required");
    struct stat st;
    if (stat(dir, &st) != 0) return cli_usage_error("report", "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return cli_usage_error("report", "%s is not a folder", dir);
    char path[4096];
    if (!out) {
        snprintf(path, sizeof path, "%s/report.html", dir);
        out = path;
    }
    vp_status s = train_report_write(dir, out);
    if (s != VP_OK) return cli_fail(s);
    printf("report written to %s\n", out);
    return EXIT_OK;
}
