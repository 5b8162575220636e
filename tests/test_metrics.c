/* Classification metrics and learning-rate schedules against hand-worked
 * values (and scikit-learn / Hugging Face definitions). */
#include "harness.h"
#include "metrics.h"

#include <math.h>
#include <string.h>

#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

static void binary_metrics(void) {
    /* labels 1,1,1,0,0,0,0,0; preds 1,1,0,1,0,0,0,0:
     * TP 2, FN 1, FP 1, TN 4. acc 6/8; F1(1) = 4/6, F1(0) = 8/10;
     * MCC = (2·4 − 1·1) / sqrt(3·3·5·5) = 7/15. */
    const int32_t y[] = {1, 1, 1, 0, 0, 0, 0, 0}, p[] = {1, 1, 0, 1, 0, 0, 0, 0};
    struct metrics_classification m;
    CHECK(metrics_classify(y, p, 8, 2, &m) == VP_OK);
    CHECK(NEAR(m.accuracy, 0.75));
    CHECK(NEAR(m.macro_f1, (4.0 / 6 + 8.0 / 10) / 2));
    CHECK(NEAR(m.matthews, 7.0 / 15));
    CHECK(m.count == 8);
}

static void multiclass_metrics(void) {
    /* 3 classes, worked by hand: confusion rows = true, cols = pred
     *   [2 1 0]
     *   [0 1 1]
     *   [1 0 2]   s = 8, c = 5, t = (3,2,3), p = (3,2,3)
     * MCC = (5·8 − (9+4+9)) / sqrt((64−22)(64−22)) = 18/42.
     * F1: class0 2·2/(3+3), class1 2·1/(2+2), class2 2·2/(3+3). */
    const int32_t y[] = {0, 0, 0, 1, 1, 2, 2, 2}, p[] = {0, 0, 1, 1, 2, 0, 2, 2};
    struct metrics_classification m;
    CHECK(metrics_classify(y, p, 8, 3, &m) == VP_OK);
    CHECK(NEAR(m.accuracy, 5.0 / 8));
    CHECK(NEAR(m.matthews, 18.0 / 42));
    CHECK(NEAR(m.macro_f1, (4.0 / 6 + 2.0 / 4 + 4.0 / 6) / 3));
}

static void degenerate_metrics(void) {
    const int32_t y[] = {1, 1, 1}, p[] = {1, 1, 1};
    struct metrics_classification m;
    CHECK(metrics_classify(y, p, 3, 2, &m) == VP_OK);
    CHECK(m.accuracy == 1 && m.matthews == 0); /* undefined MCC reported as 0, as scikit-learn */
    CHECK(NEAR(m.macro_f1, 0.5));              /* class 0 absent: F1 0 */
    const int32_t bad[] = {2};
    CHECK(metrics_classify(bad, p, 1, 2, &m) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(metrics_classify(y, p, 0, 2, &m) == VP_OK && m.accuracy == 0);
}

static void schedules(void) {
    struct schedule s = {SCHEDULE_LINEAR, 1e-3, 10, 110};
    CHECK(schedule_lr(&s, 0) == 0);
    CHECK(NEAR(schedule_lr(&s, 5), 5e-4));
    CHECK(NEAR(schedule_lr(&s, 10), 1e-3));
    CHECK(NEAR(schedule_lr(&s, 60), 5e-4));
    CHECK(schedule_lr(&s, 110) == 0 && schedule_lr(&s, 500) == 0);
    s.kind = SCHEDULE_COSINE;
    CHECK(NEAR(schedule_lr(&s, 10), 1e-3));
    CHECK(NEAR(schedule_lr(&s, 60), 5e-4));
    CHECK(NEAR(schedule_lr(&s, 35), 1e-3 * 0.5 * (1 + cos(M_PI * 0.25))));
    CHECK(schedule_lr(&s, 110) < 1e-18);
    s.kind = SCHEDULE_CONSTANT;
    CHECK(NEAR(schedule_lr(&s, 3), 3e-4) && schedule_lr(&s, 100) == 1e-3);
    enum schedule_kind k;
    CHECK(schedule_parse_kind("cosine", &k) == VP_OK && k == SCHEDULE_COSINE);
    CHECK(schedule_parse_kind("poly", &k) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(vp_last_error(), "'poly'") != NULL);
}

TH_MAIN(TH_CASE(binary_metrics), TH_CASE(multiclass_metrics), TH_CASE(degenerate_metrics),
        TH_CASE(schedules))
