#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool (*after_each)(const char *case_name);
static int case_failed;

void th_set_after_each(bool (*fn)(const char *case_name)) { after_each = fn; }

static void vdiag(const char *prefix, const char *fmt, va_list ap) {
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    /* Every diagnostic line starts with '#' so TAP parsers skip it. */
    const char *line = buf;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        printf("# %s%.*s\n", prefix, len, line);
        line = nl ? nl + 1 : NULL;
    }
    fflush(stdout);
}

void th_diag(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdiag("", fmt, ap);
    va_end(ap);
}

void th_fail(const char *file, int line, const char *fmt, ...) {
    case_failed = 1;
    printf("# FAILED at %s:%d\n", file, line);
    va_list ap;
    va_start(ap, fmt);
    vdiag("  ", fmt, ap);
    va_end(ap);
}

bool th_check(bool ok, const char *file, int line, const char *fmt, ...) {
    if (ok) return true;
    case_failed = 1;
    printf("# check failed at %s:%d\n", file, line);
    va_list ap;
    va_start(ap, fmt);
    vdiag("  ", fmt, ap);
    va_end(ap);
    return false;
}

bool th_check_close_f32(const float *got, const double *want, size_t n, double atol,
                        double rtol, const char *what, const char *file, int line) {
    double worst = 0.0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        double err = fabs(g - w) / (atol + rtol * fabs(w));
        if (!(err <= worst) || isnan(g)) { /* NaN compares false: always worst */
            worst = isnan(err) ? INFINITY : err;
            worst_i = i;
            if (isnan(g)) break;
        }
    }
    if (worst <= 1.0) return true;
    return th_check(false, file, line,
                    "%s: element %zu of %zu is %.9g, want %.9g (atol %.3g, rtol %.3g, "
                    "error %.3g x tolerance)",
                    what, worst_i, n, (double)got[worst_i], want[worst_i], atol, rtol, worst);
}

uint64_t th_rand_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double th_rand_uniform(uint64_t *state, double lo, double hi) {
    return lo + (hi - lo) * (double)(th_rand_u64(state) >> 11) * 0x1.0p-53;
}

int th_main(const struct th_case *cases, size_t count, int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    size_t selected = 0;
    for (size_t i = 0; i < count; i++)
        if (!filter || strstr(cases[i].name, filter)) selected++;
    printf("1..%zu\n", selected);
    fflush(stdout);
    int failures = 0;
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        if (filter && !strstr(cases[i].name, filter)) continue;
        case_failed = 0;
        cases[i].fn();
        if (after_each && !after_each(cases[i].name)) case_failed = 1;
        printf("%s %zu - %s\n", case_failed ? "not ok" : "ok", ++n, cases[i].name);
        fflush(stdout);
        failures += case_failed;
    }
    return failures ? 1 : 0;
}
