/* Classification metrics and learning-rate schedules. */
#ifndef VKPEFT_TRAIN_METRICS_H
#define VKPEFT_TRAIN_METRICS_H

#include "util.h"

struct metrics_classification {
    double accuracy;
    double macro_f1;    /* mean over classes of F1; a class with no true and no
                           predicted examples counts F1 = 0, as scikit-learn's
                           zero_division=0 default does for labels it is given */
    double matthews;    /* multiclass Matthews correlation (Gorodkin's R_K) */
    uint64_t count;
};

/* labels and preds in [0, classes). Fails on an out-of-range value. */
vp_status metrics_classify(const int32_t *labels, const int32_t *preds, size_t n, int classes,
                           struct metrics_classification *out);

enum schedule_kind { SCHEDULE_LINEAR = 0, SCHEDULE_COSINE, SCHEDULE_CONSTANT };

struct schedule {
    enum schedule_kind kind;
    double lr;            /* peak learning rate */
    uint64_t warmup;      /* steps of linear warm-up from 0 */
    uint64_t total;       /* total optimiser steps */
};

/* The learning rate for optimiser step `step` (0-based), as Hugging Face's
 * get_{linear,cosine,constant}_schedule_with_warmup compute it. */
double schedule_lr(const struct schedule *s, uint64_t step);
vp_status schedule_parse_kind(const char *text, enum schedule_kind *out);

#endif
