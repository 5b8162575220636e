/* The --profile table of `vkpeft bench train` and `bench generate`: one
 * recorded step's GPU time per (site, kernel), as text or JSON. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double percent(const struct vk_profile *p, double ns) { return p->gpu_ns > 0 ? 100.0 * ns / p->gpu_ns : 0; }

struct site_total {
    const char *site;
    uint32_t calls, barriers;
    double ns;
};

static int by_ns(const void *x, const void *y) {
    const struct site_total *a = x, *b = y;
    return (a->ns < b->ns) - (a->ns > b->ns);
}

/* The rows summed per site, largest first. */
static void print_sites(const struct vk_profile *p) {
    struct site_total *t = calloc(p->count ? p->count : 1, sizeof *t);
    if (!t) return;
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->count; i++) {
        const struct vk_profile_row *r = &p->rows[i];
        uint32_t k = 0;
        while (k < n && !(t[k].site == r->site || (t[k].site && r->site && strcmp(t[k].site, r->site) == 0))) k++;
        if (k == n) t[n++].site = r->site;
        t[k].calls += r->calls;
        t[k].barriers += r->barriers;
        t[k].ns += r->total_ns;
    }
    qsort(t, n, sizeof *t, by_ns);
    printf("by site:\n");
    for (uint32_t k = 0; k < n; k++)
        printf("%10.1f %6.2f %6u %9s %6u %8s  %s\n", t[k].ns / 1e3, percent(p, t[k].ns), t[k].calls, "",
               t[k].barriers, "", t[k].site ? t[k].site : "(no site)");
    free(t);
}

void bench_profile_print(const struct vk_profile *p, const char *what, double step_ms) {
    printf("\nprofile of one %s (a timestamp after every command): %u dispatches, %u copies and fills, "
           "%u barriers\n",
           what, p->dispatches, p->transfers, p->barriers);
    printf("GPU time %.3f ms (first timestamp to last); the profiled run took %.3f ms wall", p->gpu_ns / 1e6,
           p->wall_ns / 1e6);
    if (step_ms > 0) printf(", an untimestamped step %.3f ms", step_ms);
    printf("\n%10s %6s %6s %9s %6s %8s  %s\n", "total us", "%", "calls", "mean us", "after", "groups",
           "site: kernel");
    printf("%10s %6s %6s %9s %6s %8s\n", "", "", "", "", "barrier", "per call");
    for (uint32_t i = 0; i < p->count; i++) {
        const struct vk_profile_row *r = &p->rows[i];
        printf("%10.1f %6.2f %6u %9.2f %6u %8.0f  %s%s%s\n", r->total_ns / 1e3, percent(p, r->total_ns), r->calls,
               r->total_ns / 1e3 / r->calls, r->barriers, (double)r->groups / r->calls, r->site ? r->site : "",
               r->site ? ": " : "", r->kernel);
    }
    print_sites(p);
    printf("(after barrier: calls that waited for a barrier before them; groups: workgroups per call, 0 for "
           "copies and fills)\n");
}

void bench_profile_json(cJSON *o, const struct vk_profile *p) {
    cJSON *step = cJSON_AddObjectToObject(o, "profile_step");
    cJSON_AddNumberToObject(step, "dispatches", p->dispatches);
    cJSON_AddNumberToObject(step, "transfers", p->transfers);
    cJSON_AddNumberToObject(step, "barriers", p->barriers);
    cJSON_AddNumberToObject(step, "gpu_us", p->gpu_ns / 1e3);
    cJSON_AddNumberToObject(step, "wall_us", p->wall_ns / 1e3);
    cJSON *rows = cJSON_AddArrayToObject(o, "profile");
    for (uint32_t i = 0; i < p->count; i++) {
        const struct vk_profile_row *r = &p->rows[i];
        cJSON *row = cJSON_CreateObject();
        if (r->site) cJSON_AddStringToObject(row, "site", r->site);
        else cJSON_AddNullToObject(row, "site");
        cJSON_AddStringToObject(row, "kernel", r->kernel);
        cJSON_AddNumberToObject(row, "calls", r->calls);
        cJSON_AddNumberToObject(row, "after_barrier", r->barriers);
        cJSON_AddNumberToObject(row, "workgroups", (double)r->groups);
        cJSON_AddNumberToObject(row, "total_us", r->total_ns / 1e3);
        cJSON_AddNumberToObject(row, "percent", percent(p, r->total_ns));
        cJSON_AddNumberToObject(row, "mean_us", r->total_ns / 1e3 / r->calls);
        cJSON_AddItemToArray(rows, row);
    }
}
