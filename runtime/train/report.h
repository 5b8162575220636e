/* Reading a run's training log back, and the self-contained HTML pages that
 * show runs (vkpeft report, vkpeft compare): inline CSS and SVG only, no
 * scripts, fonts or images from anywhere, so a page opens from disk.
 *
 *     struct train_run run;
 *     train_run_read("runs/sst2/train.jsonl", &run);    // file:line on a bad line
 *     train_report_write("runs/sst2", "runs/sst2/report.html");
 *     train_run_finish(&run); */
#ifndef VKPEFT_TRAIN_REPORT_H
#define VKPEFT_TRAIN_REPORT_H

#include "trainer.h"

/* ---- the log (train.jsonl, as checkpoint.c writes it) ----------------------------- */

struct train_run_step {
    double step, epoch, loss, lr, grad_norm, tokens, elapsed; /* NaN where the line had null */
};

struct train_run_eval {
    double step, loss, accuracy, macro_f1, matthews;
};

struct train_run {
    struct train_run_step *steps; /* (n_steps) owned */
    struct train_run_eval *evals; /* (n_evals) owned */
    size_t n_steps, n_evals;
    bool has_start;               /* the "start" line: */
    double total_steps, batch, trainable_params, head_params, model_params;
    double memory[VP_POOL_COUNT]; /* plan per pool, bytes */
    bool interrupted;
    double interrupted_step;
};

/* Reads every line; a line that is not a JSON object, or a step or eval
 * line without a numeric "step", fails with VP_ERROR_BAD_INPUT naming
 * path:line. Lines of other types are skipped (later versions may add
 * some). */
vp_status train_run_read(const char *path, struct train_run *out);
void train_run_finish(struct train_run *r);

/* ---- HTML ------------------------------------------------------------------------ */

/* One line of a plot: n points (x[i], y[i]); non-finite y are skipped. */
struct report_series {
    const char *name;
    const double *x, *y;
    size_t n, stride; /* stride in doubles between points (1: packed arrays) */
    bool markers;     /* draw a dot on every point */
};

/* The page's head and inline style, the title as a heading. */
void report_html_begin(struct train_file *f, const char *title);
/* `text` with &, <, >, " escaped. */
void report_html_text(struct train_file *f, const char *text);
/* An SVG line plot with axes, ticks and a legend. */
void report_html_plot(struct train_file *f, const char *title, const char *x_label,
                      const struct report_series *series, int count);
/* Closes the page and publishes the file (VP_ERROR_IO on any failed write). */
vp_status report_html_end(struct train_file *f);

/* The report on one run folder: train.jsonl (required), and metrics.json,
 * train_args.json, delta.json where present; written atomically to
 * out_path. */
vp_status train_report_write(const char *dir, const char *out_path);

#endif
