/* vkpeft bench kernels: time every op family at transformer shapes and print
 * a table (or JSON). Families register in `families` below. */
#include "bench.h"
#include "cli.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    bench_family_fn fn;
} families[] = {
    {"attention", bench_attention},
    {"pointwise", bench_pointwise},
    {"matmul", bench_matmul},
    {NULL, NULL}, /* families are added above this line */
};

static const char help[] =
    "usage: vkpeft bench kernels [--json] [--device N|name] [--repeat N] [--quick] [--only FAMILY]\n"
    "                            [--matmul-variant auto|texel|tiled] [--no-blas]\n"
    "\n"
    "Times every GPU op at transformer shapes (tokens 4096, hidden 768, FFN 3072,\n"
    "12 heads): milliseconds, GFLOP/s or GB/s, and the variant chosen for this\n"
    "device. Matmul rows also time OpenBLAS sgemm on the same problem in the same\n"
    "run, so the ratio survives a noisy machine; their variant column names the\n"
    "tiles the tiled variant used (BMxBNxBKxTMxTN, 'vec' for four-element reads).\n"
    "VKPEFT_MATMUL_TILES=BMxBNxBKxTMxTN forces the tiles (tools/gpu/matmul_sweep.sh).\n"
    "\n"
    "examples:\n"
    "  vkpeft bench kernels\n"
    "  vkpeft bench kernels --only matmul --json\n"
    "  VKPEFT_MATMUL_TILES=128x64x8x8x4 vkpeft bench kernels --only matmul\n"
    "  VKPEFT_LIMITS=mobile vkpeft bench kernels --quick\n";

void bench_table_add(struct bench_table *t, const struct bench_row *row) {
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        struct bench_row *nr = realloc(t->rows, cap * sizeof *nr);
        if (!nr) return;
        t->rows = nr;
        t->cap = cap;
    }
    t->rows[t->count++] = *row;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

vp_status bench_time(struct vk_recorder *rec, uint32_t repeat, double *ms) {
    vp_status s = vk_recorder_run(rec);
    double t[64];
    if (repeat > 64) repeat = 64;
    if (repeat == 0) repeat = 1;
    for (uint32_t i = 0; i < repeat && s == VP_OK; i++) {
        double t0 = vp_now();
        s = vk_recorder_run(rec);
        t[i] = (vp_now() - t0) * 1e3;
    }
    if (s != VP_OK) return s;
    qsort(t, repeat, sizeof t[0], cmp_double);
    *ms = repeat % 2 ? t[repeat / 2] : 0.5 * (t[repeat / 2 - 1] + t[repeat / 2]);
    return VP_OK;
}

static void print_table(const vp_context *ctx, const struct bench_table *t) {
    printf("device: %s (limits: %s)\n", vp_context_device(ctx)->name,
           vp_context_limits(ctx)->profile == VP_LIMITS_MOBILE ? "mobile" : "native");
    printf("%-24s %-34s %-28s %10s %9s %9s %10s %7s\n", "op", "shape", "variant", "ms", "GFLOP/s",
           "GB/s", "BLAS GF/s", "ratio");
    for (size_t i = 0; i < t->count; i++) {
        const struct bench_row *r = &t->rows[i];
        printf("%-24s %-34s %-28s %10.3f ", r->op, r->shape, r->variant, r->ms);
        if (r->gflops > 0) printf("%9.2f ", r->gflops); else printf("%9s ", "-");
        if (r->gbps > 0) printf("%9.2f ", r->gbps); else printf("%9s ", "-");
        if (r->blas_gflops > 0) printf("%10.2f %7.3f\n", r->blas_gflops, r->gflops / r->blas_gflops);
        else printf("%10s %7s\n", "-", "-");
    }
}

static void print_json(const vp_context *ctx, const struct bench_table *t) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "device", vp_context_device(ctx)->name);
    cJSON_AddStringToObject(j, "limits",
                            vp_context_limits(ctx)->profile == VP_LIMITS_MOBILE ? "mobile" : "native");
    cJSON *rows = cJSON_AddArrayToObject(j, "rows");
    for (size_t i = 0; i < t->count; i++) {
        const struct bench_row *r = &t->rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", r->op);
        cJSON_AddStringToObject(o, "shape", r->shape);
        cJSON_AddStringToObject(o, "variant", r->variant);
        cJSON_AddNumberToObject(o, "ms", r->ms);
        cJSON_AddNumberToObject(o, "gflops", r->gflops);
        cJSON_AddNumberToObject(o, "gbps", r->gbps);
        if (r->blas_gflops > 0) {
            cJSON_AddNumberToObject(o, "blas_gflops", r->blas_gflops);
            cJSON_AddNumberToObject(o, "ratio_to_blas", r->gflops / r->blas_gflops);
        }
        cJSON_AddItemToArray(rows, o);
    }
    char *text = cJSON_Print(j);
    puts(text);
    free(text);
    cJSON_Delete(j);
}

int bench_kernels(int argc, char **argv) {
    struct cli_common common = {0};
    struct bench_kernel_opts o = {.repeat = 3};
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (cli_common_option(argc, argv, &i, &common)) continue;
        if (strcmp(a, "--quick") == 0) {
            o.quick = true;
        } else if (strcmp(a, "--no-blas") == 0) {
            o.no_blas = true;
        } else if (strcmp(a, "--matmul-variant") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "auto") == 0) o.matmul_variant = KERNEL_MATMUL_AUTO;
            else if (strcmp(v, "texel") == 0) o.matmul_variant = KERNEL_MATMUL_TEXEL;
            else if (strcmp(v, "tiled") == 0) o.matmul_variant = KERNEL_MATMUL_TILED;
            else
                return cli_usage_error("bench kernels",
                                       "--matmul-variant wants auto, texel or tiled, got '%s'", v);
        } else if (strcmp(a, "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(a, "--repeat") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 64)
                return cli_usage_error("bench kernels", "--repeat wants 1..64, got '%s'", argv[i]);
            o.repeat = (uint32_t)v;
        } else {
            return cli_usage_error("bench kernels", "unexpected argument '%s'", a);
        }
    }
    bool known = only == NULL;
    for (size_t f = 0; families[f].name && !known; f++) known = strcmp(families[f].name, only) == 0;
    if (!known) return cli_usage_error("bench kernels", "no op family named '%s'", only);
    vp_context_options opts = {.device = common.device};
    vp_context *ctx;
    vp_status s = vp_context_create(&opts, &ctx);
    if (s != VP_OK) return cli_fail(s);
    struct bench_table table = {0};
    for (size_t f = 0; families[f].name && s == VP_OK; f++) {
        if (only && strcmp(families[f].name, only) != 0) continue;
        if (!common.json) fprintf(stderr, "vkpeft bench: %s...\n", families[f].name);
        s = families[f].fn(ctx, &o, &table);
    }
    int code = EXIT_OK;
    if (s != VP_OK) code = cli_fail(s);
    else if (common.json) print_json(ctx, &table);
    else print_table(ctx, &table);
    free(table.rows);
    vp_context_destroy(ctx);
    return code;
}
