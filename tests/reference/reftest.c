#include "reftest.h"

#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

bool reftest_spec(struct delta_spec *s, const char *label, const char *preset, const char *json, int reparam) {
    if (ref_spec_load(s, label, preset, json, reparam) == VP_OK) return true;
    FAIL("%s: %s", label, vp_last_error());
    return false;
}

double reftest_max_abs_diff(const double *a, const double *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= worst)) worst = d; /* NaN counts as worst */
    }
    return worst;
}

int reftest_copy_tensors(struct ref_tensors *dst, const struct ref_tensors *src, bool (*wanted)(const char *name)) {
    int skipped = 0;
    for (int k = 0; k < dst->count; k++) {
        struct refm_tensor *t = ref_tensors_at(dst, k);
        const struct refm_tensor *from = !wanted || wanted(t->name) ? ref_tensors_find(src, t->name) : NULL;
        if (from && from->n != t->n) skipped++;
        else if (from) memcpy(t->data, from->data, t->n * sizeof(double));
    }
    return skipped;
}

void reftest_expect_module_counts(const struct ref_tensors *ts, int modules, const struct delta_counts *counts,
                                  const char *what) {
    for (int i = 0; i < modules; i++) {
        char a[32], b[32];
        snprintf(a, sizeof a, ".delta%d.", i);
        snprintf(b, sizeof b, "delta%d.", i);
        uint64_t n = 0;
        for (int k = 0; k < ts->count; k++) {
            const struct refm_tensor *t = ref_tensors_at(ts, k);
            if (strstr(t->name, a) || strncmp(t->name, b, strlen(b)) == 0) n += t->n;
        }
        CHECKF(n == counts->module_params[i], "%s module %d: %llu values, count.c %llu", what, i,
               (unsigned long long)n, (unsigned long long)counts->module_params[i]);
    }
}

void reftest_expect_tensor(const struct ref_tensors *ts, const char *name, int ndim, int s0, int s1, int s2,
                           bool trainable) {
    const struct refm_tensor *t = ref_tensors_find(ts, name);
    if (!CHECKF(t != NULL, "no tensor %s", name)) return;
    const int want[3] = {s0, s1, s2};
    bool same = t->ndim == ndim;
    for (int k = 0; k < ndim && same; k++) same = t->shape[k] == want[k];
    CHECKF(same, "%s has %d dims (%d,%d,%d), want (%d,%d,%d)", name, t->ndim, t->shape[0], t->shape[1], t->shape[2],
           s0, s1, s2);
    CHECKF((t->grad != NULL) == trainable, "%s should be %s", name, trainable ? "trainable" : "frozen");
}

size_t reftest_check_gradients(const struct reftest_model *m, const void *batch, const struct reftest_fd *fd,
                               const char *what) {
    m->forward(m->model, batch);
    ref_tensors_zero_grad(m->tensors);
    m->backward(m->model);
    size_t checked = 0;
    double worst_all = 0.0;
    for (int k = 0; k < m->tensors->count; k++) {
        struct refm_tensor *t = ref_tensors_at(m->tensors, k);
        if (!t->grad) continue;
        double worst = 0.0, worst_fd = 0.0, largest = 0.0;
        size_t worst_i = 0;
        for (size_t i = 0; i < t->n; i++) {
            const double saved = t->data[i];
            const double h = fd->step * fmax(1.0, fabs(saved));
            const double plus = saved + h, minus = saved - h;
            t->data[i] = plus;
            const double loss_plus = m->forward(m->model, batch);
            t->data[i] = minus;
            const double loss_minus = m->forward(m->model, batch);
            t->data[i] = saved;
            const double fdiff = (loss_plus - loss_minus) / (plus - minus);
            const double err = fabs(fdiff - t->grad[i]) / (fd->atol + fd->rtol * fabs(fdiff));
            if (!(err <= worst)) {
                worst = err;
                worst_i = i;
                worst_fd = fdiff;
            }
            largest = fmax(largest, fabs(t->grad[i]));
        }
        checked += t->n;
        worst_all = fmax(worst_all, worst);
        CHECKF(worst <= 1.0, "%s: d%s[%zu]: analytic %.12g, finite difference %.12g (error %.3g x tolerance)", what,
               t->name, worst_i, t->grad[worst_i], worst_fd, worst);
        /* An all-zero gradient would pass vacuously. */
        if (!fd->may_be_zero || !strstr(t->name, fd->may_be_zero))
            CHECKF(largest > 1e-6, "%s: d%s is 0 everywhere (largest %.3g): the check is vacuous", what, t->name,
                   largest);
    }
    th_diag("%-*s %5zu gradients, worst %.3g x tolerance", fd->label_width, what, checked, worst_all);
    return checked;
}

double reftest_token_loss(const double *z, int V, int y, double eps) {
    double mx = z[0], sum = 0.0, mean_logp = 0.0;
    for (int v = 1; v < V; v++) mx = fmax(mx, z[v]);
    for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
    const double lse = mx + log(sum);
    for (int v = 0; v < V; v++) mean_logp += (z[v] - lse) / V;
    return (1.0 - eps) * (lse - z[y]) - eps * mean_logp;
}
