/* vkpeft bench: programs that print figures. Never run by the test suite's
 * assertions; numbers go to the closing notes and to --json consumers. */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"
#include "cli.h"
#include "kernels.h"
#include "util.h"
#include "vk.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "usage: vkpeft bench <what> [--json] [--device N|name] [--count N] [--repeat N]\n"
    "\n"
    "what:\n"
    "  kernels    every GPU op at transformer shapes (see 'vkpeft bench kernels --help')\n"
    "  train      ms/step and tokens/s of a training step (see 'vkpeft bench train --help')\n"
    "  generate   prefill and decode tokens/s with the KV cache (see 'vkpeft bench generate --help')\n"
    "  dispatch   µs per dispatch in one recording of N dependent dispatches (each\n"
    "             reads the previous result, so every one needs a barrier) and of N\n"
    "             independent ones; wall time of a whole run and GPU timestamps\n"
    "  startup    context creation plus compiling every shader, with an empty\n"
    "             shader cache (cold) and again with it filled (warm)\n"
    "\n"
    "examples:\n"
    "  vkpeft bench dispatch --count 1000\n"
    "  vkpeft bench startup --json\n";

struct bench_opts {
    struct cli_common common;
    uint32_t count, repeat;
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, uint32_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Records `count` scale_add dispatches: dependent ones ping-pong between two
 * buffers, independent ones each write their own slice. */
static vp_status record_chain(vp_context *ctx, struct vk_recorder *rec, struct vk_buffer *a,
                              struct vk_buffer *b, uint32_t count, bool dependent, uint32_t n) {
    vp_status s = vk_recorder_begin(rec);
    for (uint32_t i = 0; i < count && s == VP_OK; i++) {
        if (dependent) {
            s = kernel_scale_add(ctx, rec, i % 2 ? a : b, i % 2 ? b : a, n, 1.0f, 1.0f);
        } else {
            struct vk_buffer slice = *b;
            slice.offset += (VkDeviceSize)i * n * 4;
            slice.size = (VkDeviceSize)n * 4;
            if (slice.host) slice.host = (char *)b->host + (size_t)i * n * 4;
            s = kernel_scale_add(ctx, rec, &slice, a, n, 1.0f, 1.0f);
        }
    }
    if (s == VP_OK) s = vk_recorder_end(rec);
    return s;
}

static int bench_dispatch(const struct bench_opts *o) {
    vp_context_options opts = {.device = o->common.device};
    vp_context *ctx;
    vp_status s = vp_context_create(&opts, &ctx);
    if (s != VP_OK) return cli_fail(s);
    const uint32_t n = 256; /* one workgroup: the figure is overhead, not bandwidth */
    struct vk_buffer a = {0}, b = {0};
    struct vk_recorder *rec = NULL;
    s = vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, (VkDeviceSize)n * 4, &a);
    if (s == VP_OK) s = vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, (VkDeviceSize)n * 4 * o->count, &b);
    bool ts = vp_context_device(ctx)->timestamps;
    if (s == VP_OK) s = vk_recorder_create(ctx, ts ? VK_RECORDER_TIMESTAMPS : 0, &rec);
    double wall_us[2] = {0}, gpu_us[2] = {0};
    uint32_t barriers[2] = {0};
    double *walls = calloc(o->repeat, sizeof *walls);
    double *ns = calloc(o->count * 2 + 4, sizeof *ns);
    for (int mode = 0; mode < 2 && s == VP_OK; mode++) {
        s = record_chain(ctx, rec, &a, &b, o->count, mode == 0, n);
        if (s == VP_OK) s = vk_recorder_run(rec); /* warm-up */
        for (uint32_t r = 0; r < o->repeat && s == VP_OK; r++) {
            double t0 = vp_now();
            s = vk_recorder_run(rec);
            walls[r] = vp_now() - t0;
        }
        if (s != VP_OK) break;
        wall_us[mode] = median(walls, o->repeat) * 1e6 / o->count;
        barriers[mode] = vk_recorder_barrier_count(rec);
        if (ts) {
            uint32_t m = vk_recorder_timings(rec, ns, o->count * 2 + 4);
            double sum = 0;
            for (uint32_t i = 0; i < m; i++) sum += ns[i];
            gpu_us[mode] = sum / 1e3 / o->count;
        }
    }
    free(walls);
    free(ns);
    if (s != VP_OK) {
        int code = cli_fail(s);
        vk_recorder_destroy(rec);
        vp_context_destroy(ctx);
        return code;
    }
    const char *dev = vp_context_device(ctx)->name;
    if (o->common.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "device", dev);
        cJSON_AddNumberToObject(j, "dispatches", o->count);
        cJSON_AddNumberToObject(j, "dependent_us_per_dispatch", wall_us[0]);
        cJSON_AddNumberToObject(j, "dependent_barriers", barriers[0]);
        cJSON_AddNumberToObject(j, "independent_us_per_dispatch", wall_us[1]);
        cJSON_AddNumberToObject(j, "independent_barriers", barriers[1]);
        if (ts) {
            cJSON_AddNumberToObject(j, "dependent_gpu_us_per_dispatch", gpu_us[0]);
            cJSON_AddNumberToObject(j, "independent_gpu_us_per_dispatch", gpu_us[1]);
        }
        char *t = cJSON_Print(j);
        puts(t);
        free(t);
        cJSON_Delete(j);
    } else {
        printf("device: %s\n", dev);
        printf("%-12s %10s %9s %14s %14s\n", "recording", "dispatches", "barriers", "wall us/disp",
               "gpu us/disp");
        const char *names[2] = {"dependent", "independent"};
        for (int m = 0; m < 2; m++)
            printf("%-12s %10u %9u %14.2f %14.2f\n", names[m], o->count, barriers[m], wall_us[m],
                   gpu_us[m]);
        printf("(median of %u runs of one submission each; scale_add on %u floats)\n", o->repeat, n);
    }
    vk_buffer_free(ctx, &a);
    vk_buffer_free(ctx, &b);
    vk_recorder_destroy(rec);
    vp_context_destroy(ctx);
    return EXIT_OK;
}

/* Creates a context on `cache_dir` and builds the pipeline of every kernel
 * shader; returns seconds and the context's counters. */
static vp_status startup_once(const struct bench_opts *o, const char *cache_dir, double *seconds,
                              vp_stats *stats) {
    double t0 = vp_now();
    vp_context_options opts = {.device = o->common.device, .cache_dir = cache_dir};
    vp_context *ctx;
    vp_status s = vp_context_create(&opts, &ctx);
    if (s != VP_OK) return s;
    for (unsigned i = 0; i < vk_shader_source_count && s == VP_OK; i++) {
        const char *name = vk_shader_sources[i].name;
        if (!strstr(name, ".comp")) continue;
        uint32_t *spirv = NULL;
        size_t words = 0;
        s = vk_shader_compile(ctx, name, vk_shader_sources[i].text, NULL, &spirv, &words);
        free(spirv);
    }
    vp_context_stats(ctx, stats);
    vp_context_destroy(ctx);
    *seconds = vp_now() - t0;
    return s;
}

static int bench_startup(const struct bench_opts *o) {
    char dir[] = "/tmp/vkpeft-bench-cache-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("vkpeft bench: mkdtemp");
        return EXIT_RUNTIME;
    }
    double cold = 0, warm = 0;
    vp_stats sc, sw;
    vp_status s = startup_once(o, dir, &cold, &sc);
    if (s == VP_OK) s = startup_once(o, dir, &warm, &sw);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "vkpeft bench: could not remove %s\n", dir);
    if (s != VP_OK) return cli_fail(s);
    if (o->common.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "cold_seconds", cold);
        cJSON_AddNumberToObject(j, "cold_compiled", (double)sc.shaders_compiled);
        cJSON_AddNumberToObject(j, "cold_compile_seconds", sc.compile_seconds);
        cJSON_AddNumberToObject(j, "warm_seconds", warm);
        cJSON_AddNumberToObject(j, "warm_compiled", (double)sw.shaders_compiled);
        cJSON_AddNumberToObject(j, "warm_cache_hits", (double)sw.spirv_cache_hits);
        char *t = cJSON_Print(j);
        puts(t);
        free(t);
        cJSON_Delete(j);
    } else {
        printf("%-6s %10s %9s %11s %14s\n", "start", "seconds", "compiled", "cache hits",
               "glslang secs");
        printf("%-6s %10.3f %9llu %11llu %14.3f\n", "cold", cold,
               (unsigned long long)sc.shaders_compiled, (unsigned long long)sc.spirv_cache_hits,
               sc.compile_seconds);
        printf("%-6s %10.3f %9llu %11llu %14.3f\n", "warm", warm,
               (unsigned long long)sw.shaders_compiled, (unsigned long long)sw.spirv_cache_hits,
               sw.compile_seconds);
    }
    return EXIT_OK;
}

int cmd_bench(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "kernels") == 0) return bench_kernels(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "train") == 0) return bench_train(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "generate") == 0) return bench_generate(argc - 1, argv + 1);
    struct bench_opts o = {.count = 1000, .repeat = 5};
    const char *what = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (cli_common_option(argc, argv, &i, &o.common)) continue;
        if ((strcmp(a, "--count") == 0 || strcmp(a, "--repeat") == 0) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000000)
                return cli_usage_error("bench", "%s wants a number from 1 to 1000000, got '%s'", a,
                                       argv[i]);
            if (a[2] == 'c') o.count = (uint32_t)v;
            else o.repeat = (uint32_t)v;
            continue;
        }
        if (a[0] == '-' || what) return cli_usage_error("bench", "unexpected argument '%s'", a);
        what = a;
    }
    if (!what) return cli_usage_error("bench", "say what to measure: kernels, dispatch, startup, train or generate");
    if (strcmp(what, "dispatch") == 0) return bench_dispatch(&o);
    if (strcmp(what, "startup") == 0) return bench_startup(&o);
    return cli_usage_error("bench", "unknown benchmark '%s' (kernels, dispatch, startup, train, generate)", what);
}
