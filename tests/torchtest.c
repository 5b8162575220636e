#include "torchtest.h"

#include "safetensors.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool torch_sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return CHECKF(rc == 0, "command failed (%d): %s", rc, cmd);
}

const char *torch_python(void) {
    const char *p = getenv("VKPEFT_TORCH_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

bool torch_close_normwise(const float *got, const double *want, size_t n, double tol, double floor,
                          const char *what, const char *file, int line, double *ratio) {
    double num = 0, den = 0, maxw = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
        if (fabs(want[i]) > maxw) maxw = fabs(want[i]);
    }
    double bound = tol * sqrt(den) + floor;
    *ratio = sqrt(num) / bound;
    return th_check(sqrt(num) <= bound, file, line, "%s: |error| %.3g > bound %.3g (|want| %.3g, max %.3g)",
                    what, sqrt(num), bound, sqrt(den), maxw);
}

bool torch_randomize_delta(struct encoder *enc, const struct delta_spec *spec, uint64_t seed,
                           const char *delta_path, const char *spec_path) {
    struct delta_params *p = encoder_params(enc);
    struct io_tensor_out *out = calloc((size_t)p->count, sizeof *out);
    float **vals = calloc((size_t)p->count, sizeof *vals);
    bool ok = out && vals;
    uint64_t st = seed;
    for (int i = 0; ok && i < p->count; i++) {
        const struct delta_param *t = &p->items[i];
        vals[i] = malloc(t->n * sizeof **vals);
        if (!(ok = vals[i] != NULL)) break;
        for (uint64_t k = 0; k < t->n; k++) vals[i][k] = (float)th_rand_uniform(&st, -0.5, 0.5);
        ok = CHECK(encoder_tensor_write(enc, t->name, vals[i], t->n) == VP_OK);
        out[i] = (struct io_tensor_out){t->name, IO_DTYPE_F32, t->ndim, {0}, vals[i]};
        for (int d = 0; d < t->ndim; d++) out[i].shape[d] = t->shape[d];
    }
    if (ok) ok = CHECKF(io_safetensors_write(delta_path, out, (size_t)p->count, NULL) == VP_OK, "%s", vp_last_error());
    for (int i = 0; vals && i < p->count; i++) free(vals[i]);
    free(vals);
    free(out);
    char *sj = delta_spec_to_json(spec);
    if (ok) ok = CHECK(sj && vp_file_write_atomic(spec_path, sj, strlen(sj)) == VP_OK);
    free(sj);
    return ok;
}

int torch_main(int argc, char **argv, const char *name, struct torch_run *run, const struct th_case *cases,
               size_t count) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT [CASE]\n", argv[0]);
        return 2;
    }
    run->script = argv[1];
    snprintf(run->dir, sizeof run->dir, "/tmp/vkpeft-%s-XXXXXX", name);
    if (!mkdtemp(run->dir)) return 1;
    int rc = th_main(cases, count, argc - 1, argv + 1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", run->dir);
    return rc;
}

bool torch_write_text(const char *path, const char *text) {
    return CHECKF(vp_file_write_atomic(path, text, strlen(text)) == VP_OK, "%s: %s", path, vp_last_error());
}

bool torch_write_ref_tensors(const struct ref_tensors *ts, const char *path, bool trainable_only) {
    struct io_tensor_out *out = calloc((size_t)ts->count, sizeof *out);
    size_t n = 0;
    for (int i = 0; out && i < ts->count; i++) {
        const struct refm_tensor *t = ref_tensors_at(ts, i);
        if (trainable_only && !t->grad) continue;
        out[n] = (struct io_tensor_out){t->name, IO_DTYPE_F64, t->ndim, {0}, t->data};
        for (int k = 0; k < t->ndim; k++) out[n].shape[k] = t->shape[k];
        n++;
    }
    bool ok = CHECKF(out && io_safetensors_write(path, out, n, NULL) == VP_OK, "%s: %s", path, vp_last_error());
    free(out);
    return ok;
}

void torch_add_job(char *jobs, size_t cap, const char *dir, size_t j, const struct delta_spec *spec,
                   const struct ref_tensors *ts, const char *batch) {
    char path[256];
    char *sj = delta_spec_to_json(spec);
    snprintf(path, sizeof path, "%s/spec-%zu.json", dir, j);
    if (CHECK(sj != NULL)) torch_write_text(path, sj);
    free(sj);
    snprintf(path, sizeof path, "%s/delta-%zu.safetensors", dir, j);
    torch_write_ref_tensors(ts, path, true);
    const size_t n = strlen(jobs);
    snprintf(jobs + n, cap - n,
             "%s{\"model\":\"%s\",\"spec\":\"%s/spec-%zu.json\",\"delta\":\"%s/delta-%zu.safetensors\","
             "\"batch\":\"%s\",\"out\":\"%s/out-%zu.safetensors\"}",
             n > 1 ? "," : "", dir, dir, j, dir, j, batch, dir, j);
}

bool torch_run_jobs(const struct torch_run *run, const char *dir, char *jobs, size_t cap) {
    const size_t n = strlen(jobs);
    snprintf(jobs + n, cap - n, "]");
    char path[256];
    snprintf(path, sizeof path, "%s/jobs.json", dir);
    return torch_write_text(path, jobs) && torch_sh("'%s' '%s' run-many '%s'", torch_python(), run->script, path);
}

double torch_worst_error(const double *got, const double *want, size_t n, double atol, double rtol) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) / (atol + rtol * fabs(want[i]));
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

void torch_compare_ref(const struct ref_tensors *ts, double loss, const double *logits, size_t n, const char *path,
                       double atol, double rtol, const char *what) {
    struct io_safetensors *f;
    if (!CHECKF(io_safetensors_open(path, &f) == VP_OK, "%s: %s", what, vp_last_error())) return;
    const struct io_tensor *tl = io_safetensors_find(f, "loss"), *tg = io_safetensors_find(f, "logits");
    if (CHECKF(tl && tg && tg->numel == n && tl->dtype == IO_DTYPE_F64 && tg->dtype == IO_DTYPE_F64,
               "%s: torch output lacks float64 loss/logits", what)) {
        double e = torch_worst_error(&loss, tl->data, 1, atol, rtol);
        CHECKF(e <= 1, "%s: loss %.15g, torch %.15g", what, loss, *(const double *)tl->data);
        e = torch_worst_error(logits, tg->data, n, atol, rtol);
        CHECKF(e <= 1, "%s: logits differ from torch (%.3g x tolerance)", what, e);
    }
    size_t grads = 0;
    double worst = 0;
    for (int i = 0; i < ts->count; i++) {
        const struct refm_tensor *t = ref_tensors_at(ts, i);
        if (!t->grad) continue;
        char name[160];
        snprintf(name, sizeof name, "grad.%s", t->name);
        const struct io_tensor *g = io_safetensors_find(f, name);
        if (!CHECKF(g && g->numel == t->n && g->dtype == IO_DTYPE_F64, "%s: torch has no %s", what, name)) continue;
        double e = torch_worst_error(t->grad, g->data, t->n, atol, rtol);
        CHECKF(e <= 1, "%s: %s differs from torch (%.3g x tolerance)", what, t->name, e);
        if (e > worst) worst = e;
        grads++;
    }
    th_diag("%-22s %3zu gradient tensors, worst %.3g x tolerance", what, grads, worst);
    CHECKF(grads > 0, "%s: nothing compared", what);
    io_safetensors_close(f);
}
