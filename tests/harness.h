/* Minimal TAP test harness shared by every test program.
 *
 * A test program lists its cases in a table and calls th_main(); each case
 * runs in order, prints "ok N - name" or "not ok N - name" with '#' diagnostic
 * lines, and the program exits non-zero if any case failed. Meson runs the
 * programs with protocol 'tap'; tools/test-summary.py totals the cases.
 *
 * Checks never stop a case early unless the case returns itself: a failed
 * check records the file, line and message and the case goes on, so one run
 * shows every broken expectation. */
#ifndef VKPEFT_TESTS_HARNESS_H
#define VKPEFT_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct th_case {
    const char *name;
    void (*fn)(void);
};

/* Runs the cases; argv[1], when given, runs only cases whose name contains it.
 * Returns the process exit status (0 when every case passed). */
int th_main(const struct th_case *cases, size_t count, int argc, char **argv);

/* Called after every case; returning false fails that case (used by Vulkan
 * tests to fail the case that caused a validation message). */
void th_set_after_each(bool (*fn)(const char *case_name));

bool th_check(bool ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void th_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Marks the current case failed without a check (e.g. setup failed). */
void th_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Largest |a-b| / (atol + rtol*|b|) over n values; reports the worst index. */
bool th_check_close_f32(const float *got, const double *want, size_t n, double atol,
                        double rtol, const char *what, const char *file, int line);

#define CHECK(cond) th_check((cond), __FILE__, __LINE__, "%s", #cond)
#define CHECKF(cond, ...) th_check((cond), __FILE__, __LINE__, __VA_ARGS__)
#define FAIL(...) th_fail(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK_CLOSE(got, want, n, atol, rtol, what) \
    th_check_close_f32((got), (want), (n), (atol), (rtol), (what), __FILE__, __LINE__)

#define TH_CASE(fn) { #fn, fn }
#define TH_MAIN(...)                                                            \
    int main(int argc, char **argv) {                                           \
        static const struct th_case cases_[] = { __VA_ARGS__ };                 \
        return th_main(cases_, sizeof cases_ / sizeof cases_[0], argc, argv);   \
    }

/* Deterministic test randomness: splitmix64 stream seeded per case. */
uint64_t th_rand_u64(uint64_t *state);
double th_rand_uniform(uint64_t *state, double lo, double hi);

#endif
