/* Shared by the `vkpeft bench kernels` families: a table of result rows and
 * a timer for recordings. Each op family has its own bench_<family>.c. */
#ifndef VKPEFT_TOOLS_BENCH_H
#define VKPEFT_TOOLS_BENCH_H

#include "kernels.h"
#include "vk.h"

#include <cjson/cJSON.h>

struct bench_row {
    char op[48];      /* "matmul_forward" */
    char shape[64];   /* "M=4096 K=768 N=3072 w=f16" */
    char variant[48]; /* the kernel variant the runtime chose */
    double ms;        /* median wall time of one run of the recording */
    double gflops;    /* 0 when not meaningful */
    double gbps;      /* bytes moved / time, 0 when not meaningful */
    double blas_gflops; /* OpenBLAS on the same problem, 0 when not measured */
};

struct bench_table {
    struct bench_row *rows;
    size_t count, cap;
};

struct bench_kernel_opts {
    uint32_t repeat;  /* timed runs per measurement (median) */
    bool quick;       /* smaller shapes (for smoke tests) */
    enum kernel_matmul_variant matmul_variant; /* --matmul-variant; AUTO: the device's */
    bool no_blas;     /* --no-blas: matmul rows skip the OpenBLAS comparison */
};

/* Appends a row (copied). */
void bench_table_add(struct bench_table *t, const struct bench_row *row);

/* Runs `rec` (ended) once to warm up, then `repeat` times; median ms. */
vp_status bench_time(struct vk_recorder *rec, uint32_t repeat, double *ms);

/* A family adds its rows; returns a status with vp_last_error on failure. */
typedef vp_status (*bench_family_fn)(vp_context *ctx, const struct bench_kernel_opts *o,
                                     struct bench_table *out);

/* Families (tools/bench_<family>.c). */
vp_status bench_attention(vp_context *ctx, const struct bench_kernel_opts *o,
                          struct bench_table *out);

vp_status bench_pointwise(vp_context *ctx, const struct bench_kernel_opts *o,
                          struct bench_table *out);

vp_status bench_matmul(vp_context *ctx, const struct bench_kernel_opts *o,
                       struct bench_table *out);

int bench_kernels(int argc, char **argv);

/* --profile (bench_profile.c): the table of a vk_profile of one `what`
 * ("training step"), with the mean wall time of an ordinary step when known
 * (> 0); and the same into o as "profile" (rows) and "profile_step". */
void bench_profile_print(const struct vk_profile *p, const char *what, double step_ms);
void bench_profile_json(cJSON *o, const struct vk_profile *p);
/* vkpeft bench train (bench_train.c). */
int bench_train(int argc, char **argv);
/* vkpeft bench generate (bench_generate.c). */
int bench_generate(int argc, char **argv);

#endif
