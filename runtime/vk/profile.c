/* Per-kernel GPU time of one run of a timestamped recording: each
 * command's time (vk_recorder_timings) summed per (site, kernel). */
#include "vk.h"

#include <stdlib.h>
#include <string.h>

static bool same(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static int by_total(const void *x, const void *y) {
    const struct vk_profile_row *a = x, *b = y;
    return (a->total_ns < b->total_ns) - (a->total_ns > b->total_ns);
}

/* Adds one command to its row (rows has room for every command). */
static void add(struct vk_profile *p, const struct vk_command_info *c, double ns) {
    for (uint32_t i = 0; i < p->count; i++) {
        struct vk_profile_row *r = &p->rows[i];
        if (same(r->site, c->site) && same(r->kernel, c->kernel)) {
            r->calls++;
            r->barriers += c->after_barrier;
            r->groups += c->groups;
            r->total_ns += ns;
            return;
        }
    }
    p->rows[p->count++] = (struct vk_profile_row){c->site, c->kernel, 1, c->after_barrier, c->groups, ns};
}

vp_status vk_profile_run(struct vk_recorder *rec, struct vk_profile *out) {
    memset(out, 0, sizeof *out);
    const struct vk_command_info *infos;
    const uint32_t n = vk_recorder_command_infos(rec, &infos);
    if (n == 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "profile: the recording has no commands or was made without timestamps");
    double *ns = malloc(n * sizeof *ns);
    out->rows = calloc(n, sizeof *out->rows);
    if (!ns || !out->rows) {
        free(ns);
        vk_profile_finish(out);
        return vp_fail(VP_ERROR_HOST_MEMORY, "profile: out of host memory for %u commands", n);
    }
    const double t0 = vp_now();
    vp_status s = vk_recorder_run(rec);
    out->wall_ns = (vp_now() - t0) * 1e9;
    if (s == VP_OK && vk_recorder_timings(rec, ns, n) != n)
        s = vp_fail(VP_ERROR_INVALID_ARGUMENT, "profile: the run gave no timestamp per command");
    for (uint32_t i = 0; i < n && s == VP_OK; i++) {
        add(out, &infos[i], ns[i]);
        out->gpu_ns += ns[i];
        if (infos[i].groups) out->dispatches++;
        else out->transfers++;
    }
    free(ns);
    if (s != VP_OK) {
        vk_profile_finish(out);
        return s;
    }
    out->commands = n;
    out->barriers = vk_recorder_barrier_count(rec);
    qsort(out->rows, out->count, sizeof *out->rows, by_total);
    return VP_OK;
}

vp_status vk_profile_check(const vp_context *ctx) {
    if (ctx->info.timestamps && ctx->info.timestamp_period_ns > 0) return VP_OK;
    return vp_fail(VP_ERROR_UNSUPPORTED,
                   "profile: device '%s' has no timestamps on its compute queue (timestampValidBits %u, "
                   "timestampPeriod %g ns); profile on another device (--device)",
                   ctx->info.name, ctx->feat.timestamp_valid_bits, (double)ctx->info.timestamp_period_ns);
}

vp_status vk_profile_record(vp_context *ctx, vp_status (*fn)(void *user, struct vk_recorder *rec), void *user,
                            struct vk_profile *out) {
    memset(out, 0, sizeof *out);
    vp_status s = vk_profile_check(ctx);
    if (s != VP_OK) return s;
    struct vk_recorder *rec = NULL;
    s = vk_recorder_create(ctx, VK_RECORDER_TIMESTAMPS, &rec);
    if (s == VP_OK) s = vk_recorder_begin(rec);
    if (s == VP_OK) s = fn(user, rec);
    if (s == VP_OK) s = vk_recorder_end(rec);
    if (s == VP_OK) s = vk_profile_run(rec, out);
    vk_recorder_destroy(rec);
    return s;
}

void vk_profile_finish(struct vk_profile *p) {
    free(p->rows);
    memset(p, 0, sizeof *p);
}
