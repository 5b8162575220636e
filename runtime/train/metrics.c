#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

vp_status metrics_classify(const int32_t *labels, const int32_t *preds, size_t n, int classes,
                           struct metrics_classification *out) {
    memset(out, 0, sizeof *out);
    if (classes < 1) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "metrics: %d classes", classes);
    /* Confusion counts: true-class totals t_k, predicted totals p_k, correct c_k. */
    double *t = calloc((size_t)classes * 3, sizeof *t);
    if (!t) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory computing metrics");
    double *p = t + classes, *c = p + classes;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= classes || preds[i] < 0 || preds[i] >= classes) {
            free(t);
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "metrics: example %zu has label %d / prediction "
                           "%d outside 0..%d", i, labels[i], preds[i], classes - 1);
        }
        t[labels[i]]++;
        p[preds[i]]++;
        c[labels[i]] += labels[i] == preds[i];
    }
    double correct = 0, f1 = 0, tp = 0, tt = 0, pp = 0;
    for (int k = 0; k < classes; k++) {
        correct += c[k];
        double denom = t[k] + p[k];
        f1 += denom > 0 ? 2 * c[k] / denom : 0;
        tp += t[k] * p[k];
        tt += t[k] * t[k];
        pp += p[k] * p[k];
    }
    double s = (double)n;
    out->count = n;
    out->accuracy = n ? correct / s : 0;
    out->macro_f1 = f1 / classes;
    /* MCC = (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)); 0 when undefined. */
    double den = sqrt((s * s - pp) * (s * s - tt));
    out->matthews = den > 0 ? (correct * s - tp) / den : 0;
    free(t);
    return VP_OK;
}

double schedule_lr(const struct schedule *s, uint64_t step) {
    if (step < s->warmup) return s->lr * (double)step / (double)(s->warmup ? s->warmup : 1);
    if (s->kind == SCHEDULE_CONSTANT) return s->lr;
    uint64_t span = s->total > s->warmup ? s->total - s->warmup : 1;
    double progress = (double)(step - s->warmup) / (double)span;
    if (progress > 1) progress = 1;
    if (s->kind == SCHEDULE_LINEAR) return s->lr * (1.0 - progress);
    return s->lr * 0.5 * (1.0 + cos(M_PI * progress)); /* one half-cosine, HF's num_cycles = 0.5 */
}

vp_status schedule_parse_kind(const char *text, enum schedule_kind *out) {
    if (strcmp(text, "linear") == 0) *out = SCHEDULE_LINEAR;
    else if (strcmp(text, "cosine") == 0) *out = SCHEDULE_COSINE;
    else if (strcmp(text, "constant") == 0) *out = SCHEDULE_CONSTANT;
    else return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                        "--schedule '%s' is not a schedule; use linear, cosine or constant", text);
    return VP_OK;
}
