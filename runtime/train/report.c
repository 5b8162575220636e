/* A run's log read back, and the HTML pages that show runs (report.h). */
#include "report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * The log
 * ------------------------------------------------------------------------ */

static double number_or_nan(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Grows *p (elements of `size` bytes) to hold n + 1. */
static bool grow(void **p, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : 64;
    void *q = realloc(*p, c * size);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static vp_status read_line(struct train_run *r, const char *line, const char *path, size_t lineno,
                           size_t caps[2]) {
    cJSON *o = cJSON_Parse(line);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return vp_fail(VP_ERROR_BAD_INPUT, "%s:%zu: not a JSON object", path, lineno);
    }
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "type"));
    const double step = number_or_nan(o, "step");
    vp_status s = VP_OK;
    if (!type) {
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s:%zu: no \"type\" string", path, lineno);
    } else if ((strcmp(type, "step") == 0 || strcmp(type, "eval") == 0 || strcmp(type, "interrupted") == 0) &&
               !isfinite(step)) {
        s = vp_fail(VP_ERROR_BAD_INPUT, "%s:%zu: a \"%s\" line without a numeric \"step\"", path, lineno, type);
    } else if (strcmp(type, "step") == 0) {
        if (!grow((void **)&r->steps, &caps[0], r->n_steps, sizeof *r->steps))
            s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", path);
        else
            r->steps[r->n_steps++] = (struct train_run_step){
                step, number_or_nan(o, "epoch"), number_or_nan(o, "loss"), number_or_nan(o, "lr"),
                number_or_nan(o, "grad_norm"), number_or_nan(o, "tokens"), number_or_nan(o, "elapsed")};
    } else if (strcmp(type, "eval") == 0) {
        if (!grow((void **)&r->evals, &caps[1], r->n_evals, sizeof *r->evals))
            s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", path);
        else
            r->evals[r->n_evals++] = (struct train_run_eval){
                step, number_or_nan(o, "loss"), number_or_nan(o, "accuracy"), number_or_nan(o, "macro_f1"),
                number_or_nan(o, "matthews")};
    } else if (strcmp(type, "start") == 0) {
        r->has_start = true;
        r->total_steps = number_or_nan(o, "total_steps");
        r->batch = number_or_nan(o, "batch");
        r->trainable_params = number_or_nan(o, "trainable_params");
        r->head_params = number_or_nan(o, "head_params");
        r->model_params = number_or_nan(o, "model_params");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "memory");
        for (int p = 0; p < VP_POOL_COUNT; p++) r->memory[p] = number_or_nan(m, vp_pool_name((vp_pool)p));
    } else if (strcmp(type, "interrupted") == 0) {
        r->interrupted = true;
        r->interrupted_step = step;
    }
    cJSON_Delete(o);
    return s;
}

vp_status train_run_read(const char *path, struct train_run *out) {
    memset(out, 0, sizeof *out);
    for (int p = 0; p < VP_POOL_COUNT; p++) out->memory[p] = NAN;
    FILE *f = fopen(path, "r");
    if (!f) return vp_fail(errno == ENOENT ? VP_ERROR_BAD_INPUT : VP_ERROR_IO, "cannot open %s: %s", path,
                           strerror(errno));
    char *line = NULL;
    size_t cap = 0, caps[2] = {0, 0}, lineno = 0;
    vp_status s = VP_OK;
    for (ssize_t n; s == VP_OK && (n = getline(&line, &cap, f)) >= 0;) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
        if (n == 0) continue;
        s = read_line(out, line, path, lineno, caps);
    }
    if (s == VP_OK && ferror(f)) s = vp_fail(VP_ERROR_IO, "cannot read %s: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (s != VP_OK) train_run_finish(out);
    return s;
}

void train_run_finish(struct train_run *r) {
    free(r->steps);
    free(r->evals);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------
 * HTML
 * ------------------------------------------------------------------------ */

static void put(struct train_file *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct train_file *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f->f, fmt, ap);
    va_end(ap);
}

void report_html_text(struct train_file *f, const char *text) {
    for (const char *c = text; *c; c++) {
        switch (*c) {
        case '&': put(f, "&amp;"); break;
        case '<': put(f, "&lt;"); break;
        case '>': put(f, "&gt;"); break;
        case '"': put(f, "&quot;"); break;
        default: fputc(*c, f->f);
        }
    }
}

void report_html_begin(struct train_file *f, const char *title) {
    put(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
    report_html_text(f, title);
    put(f, "</title>\n<style>\n"
           "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}\n"
           "table{border-collapse:collapse;margin:0.5em 0 1.5em}\n"
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\n"
           "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
           "svg{display:block;margin:0.5em 0 1.5em}\n"
           "svg text{font:11px sans-serif;fill:#333}\n"
           ".note{color:#a40}\n"
           "</style>\n</head>\n<body>\n<h1>");
    report_html_text(f, title);
    put(f, "</h1>\n");
}

static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static double at(const double *v, size_t i, size_t stride) { return v[i * stride]; }

void report_html_plot(struct train_file *f, const char *title, const char *x_label,
                      const struct report_series *series, int count) {
    const double W = 720, H = 260, L = 70, R = 150, T = 28, B = 36;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < count; k++) {
        const struct report_series *s = &series[k];
        for (size_t i = 0; i < s->n; i++) {
            const double x = at(s->x, i, s->stride), y = at(s->y, i, s->stride);
            if (!isfinite(x) || !isfinite(y)) continue;
            x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
        }
    }
    put(f, "<svg width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" "
           "role=\"img\">\n<text x=\"%g\" y=\"16\" style=\"font-weight:bold;font-size:13px\">",
        W, H, W, H, L);
    report_html_text(f, title);
    put(f, "</text>\n");
    if (!isfinite(x0)) {
        put(f, "<text x=\"%g\" y=\"%g\">no data</text>\n</svg>\n", L, H / 2);
        return;
    }
    if (x1 == x0) x0 -= 1, x1 += 1;
    if (y1 == y0) {
        const double d = y0 ? fabs(y0) * 0.1 : 1;
        y0 -= d, y1 += d;
    }
    const double pw = W - L - R, ph = H - T - B;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (T + ph - ((y) - y0) / (y1 - y0) * ph)
    put(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#999\"/>\n", L, T, pw, ph);
    for (int i = 0; i <= 4; i++) {
        const double yv = y0 + (y1 - y0) * i / 4, xv = x0 + (x1 - x0) * i / 4;
        put(f, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#eee\"/>"
               "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n",
            L, PY(yv), L + pw, PY(yv), L - 4, PY(yv) + 4, yv);
        put(f, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%.4g</text>\n", PX(xv), T + ph + 14, xv);
    }
    put(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">", L + pw / 2, H - 4);
    report_html_text(f, x_label);
    put(f, "</text>\n");
    for (int k = 0; k < count; k++) {
        const struct report_series *s = &series[k];
        const char *color = colors[k % (int)(sizeof colors / sizeof colors[0])];
        put(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
        for (size_t i = 0; i < s->n; i++) {
            const double x = at(s->x, i, s->stride), y = at(s->y, i, s->stride);
            if (isfinite(x) && isfinite(y)) put(f, "%.1f,%.1f ", PX(x), PY(y));
        }
        put(f, "\"/>\n");
        for (size_t i = 0; s->markers && i < s->n; i++) {
            const double x = at(s->x, i, s->stride), y = at(s->y, i, s->stride);
            if (isfinite(x) && isfinite(y))
                put(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(x), PY(y), color);
        }
        put(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" stroke-width=\"3\"/>"
               "<text x=\"%g\" y=\"%g\">",
            L + pw + 10, T + 10 + 16.0 * k, L + pw + 28, T + 10 + 16.0 * k, color, L + pw + 32, T + 14 + 16.0 * k);
        report_html_text(f, s->name);
        put(f, "</text>\n");
    }
#undef PX
#undef PY
    put(f, "</svg>\n");
}

vp_status report_html_end(struct train_file *f) {
    put(f, "</body>\n</html>\n");
    if (ferror((FILE *)f->f)) {
        train_file_abort(f);
        return vp_fail(VP_ERROR_IO, "cannot write %s", f->path);
    }
    return train_file_commit(f);
}

/* ------------------------------------------------------------------------
 * The run report
 * ------------------------------------------------------------------------ */

/* A JSON file of the run folder, or NULL when it is absent. A file that is
 * there but not JSON fails. */
static vp_status read_json(const char *dir, const char *name, cJSON **out) {
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *data;
    size_t size;
    FILE *probe = fopen(path, "r");
    if (!probe) return VP_OK;
    fclose(probe);
    vp_status s = vp_file_read(path, &data, &size);
    if (s != VP_OK) return s;
    *out = cJSON_ParseWithLength(data, size);
    free(data);
    if (!*out) return vp_fail(VP_ERROR_BAD_INPUT, "%s is not valid JSON", path);
    return VP_OK;
}

/* A two-column table of an object's members; nested values as compact JSON. */
static void object_table(struct train_file *f, const cJSON *o) {
    put(f, "<table>\n");
    for (const cJSON *v = o ? o->child : NULL; v; v = v->next) {
        put(f, "<tr><th>");
        report_html_text(f, v->string ? v->string : "");
        put(f, "</th><td%s>", cJSON_IsNumber(v) ? " class=\"n\"" : "");
        if (cJSON_IsString(v)) {
            report_html_text(f, v->valuestring);
        } else if (cJSON_IsNumber(v)) {
            put(f, "%.6g", v->valuedouble);
        } else {
            char *text = cJSON_PrintUnformatted(v);
            report_html_text(f, text ? text : "");
            free(text);
        }
        put(f, "</td></tr>\n");
    }
    put(f, "</table>\n");
}

static void bytes_cell(struct train_file *f, double bytes) {
    if (!isfinite(bytes)) {
        put(f, "<td class=\"n\">-</td>");
        return;
    }
    char buf[32];
    put(f, "<td class=\"n\">%s</td><td class=\"n\">%.0f</td>", vp_format_bytes((uint64_t)bytes, buf, sizeof buf),
        bytes);
}

static void run_sections(struct train_file *f, const struct train_run *run, const cJSON *metrics,
                         const cJSON *args, const cJSON *delta) {
    if (run->interrupted)
        put(f, "<p class=\"note\">Training was interrupted after step %.0f.</p>\n", run->interrupted_step);
    put(f, "<h2>Final metrics</h2>\n");
    if (metrics) object_table(f, metrics);
    else if (run->n_evals) {
        const struct train_run_eval *e = &run->evals[run->n_evals - 1];
        put(f, "<table><tr><th>step</th><td class=\"n\">%.0f</td></tr><tr><th>loss</th><td class=\"n\">%.6g</td></tr>"
               "<tr><th>accuracy</th><td class=\"n\">%.6g</td></tr><tr><th>macro_f1</th><td class=\"n\">%.6g</td></tr>"
               "<tr><th>matthews</th><td class=\"n\">%.6g</td></tr></table>\n",
            e->step, e->loss, e->accuracy, e->macro_f1, e->matthews);
    } else {
        put(f, "<p>No evaluation in this run (train with --eval).</p>\n");
    }
    if (run->n_steps)
        put(f, "<p>%zu steps; training loss %.6g &rarr; %.6g.</p>\n", run->n_steps, run->steps[0].loss,
            run->steps[run->n_steps - 1].loss);
    put(f, "<h2>Parameters</h2>\n");
    if (run->has_start) {
        put(f, "<table><tr><th>trainable (delta)</th><td class=\"n\">%.0f</td></tr>"
               "<tr><th>classification head</th><td class=\"n\">%.0f</td></tr>"
               "<tr><th>pretrained model</th><td class=\"n\">%.0f</td></tr>"
               "<tr><th>%% params (delta / model)</th><td class=\"n\">%.4f%%</td></tr></table>\n",
            run->trainable_params, run->head_params, run->model_params,
            run->model_params > 0 ? 100 * run->trainable_params / run->model_params : 0);
    } else {
        put(f, "<p>The log has no start line (written by an older vkpeft).</p>\n");
    }
    const cJSON *saved = delta ? cJSON_GetObjectItemCaseSensitive(delta, "params") : NULL;
    if (saved) {
        put(f, "<p>Saved delta (delta.json):</p>\n");
        object_table(f, saved);
    }
    put(f, "<h2>Memory plan per pool</h2>\n");
    if (run->has_start) {
        put(f, "<table><tr><th>pool</th><th>size</th><th>bytes</th></tr>\n");
        double total = 0;
        for (int p = 0; p < VP_POOL_COUNT; p++) {
            put(f, "<tr><th>%s</th>", vp_pool_name((vp_pool)p));
            bytes_cell(f, run->memory[p]);
            put(f, "</tr>\n");
            if (isfinite(run->memory[p])) total += run->memory[p];
        }
        put(f, "<tr><th>total</th>");
        bytes_cell(f, total);
        put(f, "</tr></table>\n");
    } else {
        put(f, "<p>Not recorded.</p>\n");
    }
    put(f, "<h2>Settings</h2>\n");
    if (args) object_table(f, args);
    else put(f, "<p>No train_args.json.</p>\n");
}

static void run_plots(struct train_file *f, const struct train_run *run) {
    const size_t ss = sizeof(struct train_run_step) / sizeof(double);
    const size_t es = sizeof(struct train_run_eval) / sizeof(double);
    const struct train_run_step *st = run->steps;
    const struct train_run_eval *ev = run->evals;
    static const double none = NAN;
    /* Empty series point at a NaN so that nothing dereferences NULL. */
    const double *sx = st ? &st->step : &none, *ex = ev ? &ev->step : &none;
    put(f, "<h2>Curves</h2>\n");
    const struct report_series loss[] = {
        {"training loss", sx, st ? &st->loss : &none, run->n_steps, ss, false},
        {"eval loss", ex, ev ? &ev->loss : &none, run->n_evals, es, true},
    };
    report_html_plot(f, "loss", "step", loss, run->n_evals ? 2 : 1);
    const struct report_series lr[] = {{"learning rate", sx, st ? &st->lr : &none, run->n_steps, ss, false}};
    report_html_plot(f, "learning rate", "step", lr, 1);
    if (run->n_evals) {
        const struct report_series m[] = {
            {"accuracy", ex, &ev->accuracy, run->n_evals, es, true},
            {"macro_f1", ex, &ev->macro_f1, run->n_evals, es, true},
            {"matthews", ex, &ev->matthews, run->n_evals, es, true},
        };
        report_html_plot(f, "eval metrics", "step", m, 3);
    }
}

vp_status train_report_write(const char *dir, const char *out_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    struct train_run run;
    vp_status s = train_run_read(path, &run);
    if (s != VP_OK) return s;
    cJSON *metrics = NULL, *args = NULL, *delta = NULL;
    s = read_json(dir, "metrics.json", &metrics);
    if (s == VP_OK) s = read_json(dir, "train_args.json", &args);
    if (s == VP_OK) s = read_json(dir, "delta.json", &delta);
    struct train_file f;
    if (s == VP_OK) s = train_file_open(&f, out_path);
    if (s == VP_OK) {
        char title[4200];
        const char *name = delta ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(delta, "name")) : NULL;
        snprintf(title, sizeof title, "vkpeft run %s%s%s", dir, name ? " — " : "", name ? name : "");
        report_html_begin(&f, title);
        run_plots(&f, &run);
        run_sections(&f, &run, metrics, args, delta);
        s = report_html_end(&f);
    }
    cJSON_Delete(metrics);
    cJSON_Delete(args);
    cJSON_Delete(delta);
    train_run_finish(&run);
    return s;
}
