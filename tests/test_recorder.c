/* The command recorder: derived barriers, replay, timestamps, profiles. */
#include "vktest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    vp_context *ctx;
    struct vk_recorder *rec;
    struct vk_buffer a, b;
    size_t n;
};

static bool setup(struct fixture *f, const vp_context_options *o, size_t n, uint32_t flags) {
    memset(f, 0, sizeof *f);
    f->n = n;
    f->ctx = vt_context(o);
    if (!f->ctx) return false;
    return CHECK(vk_buffer_alloc(f->ctx, VP_POOL_ACTIVATIONS, n * 4, &f->a) == VP_OK) &&
           CHECK(vk_buffer_alloc(f->ctx, VP_POOL_ACTIVATIONS, n * 4, &f->b) == VP_OK) &&
           CHECK(vk_recorder_create(f->ctx, flags, &f->rec) == VP_OK);
}

static void teardown(struct fixture *f) {
    if (!f->ctx) return;
    vk_recorder_destroy(f->rec);
    vk_buffer_free(f->ctx, &f->a);
    vk_buffer_free(f->ctx, &f->b);
    vp_context_destroy(f->ctx);
}

/* 1000 dispatches, each adding 1 to the previous one's output (ping-pong
 * between two buffers): exact only if every barrier is right. */
static void dependent_chain_of_1000(void) {
    struct fixture f;
    if (!setup(&f, NULL, 4099, 0)) return teardown(&f);
    float *v = calloc(f.n, sizeof *v);
    CHECK(vk_buffer_write(f.ctx, &f.a, 0, v, f.n * 4) == VP_OK);
    const int steps = 1000;
    CHECK(vk_recorder_begin(f.rec) == VP_OK);
    for (int i = 0; i < steps; i++) {
        const struct vk_buffer *src = i % 2 ? &f.b : &f.a, *dst = i % 2 ? &f.a : &f.b;
        if (!CHECK(kernel_scale_add(f.ctx, f.rec, dst, src, f.n, 1.0f, 1.0f) == VP_OK)) break;
    }
    CHECK(vk_recorder_end(f.rec) == VP_OK);
    CHECK(vk_recorder_dispatch_count(f.rec) == (uint32_t)steps);
    CHECK(vk_recorder_barrier_count(f.rec) == (uint32_t)steps - 1);
    CHECK(vk_recorder_run(f.rec) == VP_OK);
    CHECK(vk_buffer_read(f.ctx, steps % 2 ? &f.b : &f.a, 0, v, f.n * 4) == VP_OK);
    size_t bad = 0;
    for (size_t i = 0; i < f.n; i++) bad += v[i] != (float)steps;
    CHECKF(bad == 0, "%zu of %zu values are not %d (first: %g)", bad, f.n, steps, (double)v[0]);
    /* Run the same recording again: it continues from the current data. */
    CHECK(vk_recorder_run(f.rec) == VP_OK);
    CHECK(vk_buffer_read(f.ctx, &f.a, 0, v, f.n * 4) == VP_OK);
    CHECKF(v[0] == 2.0f * steps && v[f.n - 1] == 2.0f * steps, "after replay %g", (double)v[0]);
    free(v);
    teardown(&f);
}

/* Dispatches that read one buffer and write disjoint slices of another need
 * no barrier between them. */
static void independent_dispatches_get_no_barrier(void) {
    struct fixture f;
    const size_t slice = 1000, count = 16;
    if (!setup(&f, NULL, slice * count, 0)) return teardown(&f);
    float *x = malloc(slice * 4), *y = malloc(slice * count * 4);
    vt_fill_ints(x, slice, 50, 3);
    CHECK(vk_buffer_write(f.ctx, &f.a, 0, x, slice * 4) == VP_OK);
    CHECK(vk_recorder_begin(f.rec) == VP_OK);
    for (size_t i = 0; i < count; i++) {
        struct vk_buffer out = f.b;
        out.offset += i * slice * 4; /* a view; 4000-byte slices stay aligned */
        out.size = slice * 4;
        out.host = NULL;
        CHECK(kernel_scale_add(f.ctx, f.rec, &out, &f.a, slice, (float)i, 0.0f) == VP_OK);
    }
    CHECK(vk_recorder_end(f.rec) == VP_OK);
    CHECK(vk_recorder_barrier_count(f.rec) == 0);
    CHECK(vk_recorder_run(f.rec) == VP_OK);
    CHECK(vk_buffer_read(f.ctx, &f.b, 0, y, slice * count * 4) == VP_OK);
    size_t bad = 0;
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < slice; j++) bad += y[i * slice + j] != (float)i * x[j];
    CHECKF(bad == 0, "%zu wrong values", bad);
    free(x);
    free(y);
    teardown(&f);
}

/* Each hazard kind gets exactly one barrier; reads after reads get none. */
static void hazards_are_detected(void) {
    struct fixture f;
    if (!setup(&f, NULL, 1024, 0)) return teardown(&f);
    struct vk_buffer c;
    CHECK(vk_buffer_alloc(f.ctx, VP_POOL_ACTIVATIONS, f.n * 4, &c) == VP_OK);
    float *v = malloc(f.n * 4);
    vt_fill_ints(v, f.n, 9, 1);
    CHECK(vk_buffer_write(f.ctx, &f.a, 0, v, f.n * 4) == VP_OK);
    CHECK(vk_recorder_begin(f.rec) == VP_OK);
    CHECK(kernel_scale_add(f.ctx, f.rec, &f.b, &f.a, f.n, 2, 0) == VP_OK); /* b = 2a */
    CHECK(kernel_scale_add(f.ctx, f.rec, &c, &f.a, f.n, 3, 0) == VP_OK);   /* c = 3a: RAR on a */
    CHECK(vk_recorder_barrier_count(f.rec) == 0);
    CHECK(kernel_scale_add(f.ctx, f.rec, &f.a, &c, f.n, 1, 1) == VP_OK);   /* a = c+1: WAR on a, RAW on c */
    CHECK(vk_recorder_barrier_count(f.rec) == 1);
    CHECK(kernel_scale_add(f.ctx, f.rec, &f.a, &f.b, f.n, 1, 0) == VP_OK); /* a = b: WAW on a */
    CHECK(vk_recorder_barrier_count(f.rec) == 2);
    CHECK(vk_recorder_fill(f.rec, &c, 0, f.n * 4, 0) == VP_OK);           /* c = 0: independent */
    CHECK(vk_recorder_barrier_count(f.rec) == 2);
    CHECK(vk_recorder_copy(f.rec, &f.b, 0, &c, 0, f.n * 4) == VP_OK);     /* b = c: RAW, WAR */
    CHECK(vk_recorder_barrier_count(f.rec) == 3);
    CHECK(vk_recorder_end(f.rec) == VP_OK);
    CHECK(vk_recorder_run(f.rec) == VP_OK);
    float *a = malloc(f.n * 4), *b = malloc(f.n * 4);
    CHECK(vk_buffer_read(f.ctx, &f.a, 0, a, f.n * 4) == VP_OK);
    CHECK(vk_buffer_read(f.ctx, &f.b, 0, b, f.n * 4) == VP_OK);
    size_t bad = 0;
    for (size_t i = 0; i < f.n; i++) bad += a[i] != 2 * v[i] || b[i] != 0;
    CHECKF(bad == 0, "%zu wrong values", bad);
    vk_buffer_free(f.ctx, &c);
    free(v);
    free(a);
    free(b);
    teardown(&f);
}

/* One recording run with new inputs each time, on both memory paths. On the
 * discrete path the recording copies the input in from staging and the
 * result out to staging; the host only touches staging between runs. */
static void replay(vp_memory_path path) {
    vp_context_options o = {.memory = path};
    struct fixture f;
    if (!setup(&f, &o, 777, 0)) return teardown(&f);
    struct vk_buffer in, out;
    CHECK(vk_buffer_alloc(f.ctx, VP_POOL_STAGING, f.n * 4, &in) == VP_OK);
    CHECK(vk_buffer_alloc(f.ctx, VP_POOL_STAGING, f.n * 4, &out) == VP_OK);
    if (!CHECK(in.host && out.host)) return teardown(&f);
    CHECK(vk_recorder_begin(f.rec) == VP_OK);
    CHECK(vk_recorder_copy(f.rec, &f.a, 0, &in, 0, f.n * 4) == VP_OK);
    CHECK(kernel_scale_add(f.ctx, f.rec, &f.b, &f.a, f.n, 3.0f, -1.0f) == VP_OK);
    CHECK(vk_recorder_copy(f.rec, &out, 0, &f.b, 0, f.n * 4) == VP_OK);
    CHECK(vk_recorder_end(f.rec) == VP_OK);
    CHECK(vk_recorder_barrier_count(f.rec) == 2);
    float *x = in.host, *y = out.host;
    for (int run = 0; run < 3; run++) {
        vt_fill_ints(x, f.n, 100, 10 + run);
        CHECK(vk_recorder_run(f.rec) == VP_OK);
        size_t bad = 0;
        for (size_t i = 0; i < f.n; i++) bad += y[i] != 3.0f * x[i] - 1.0f;
        CHECKF(bad == 0, "run %d: %zu wrong values", run, bad);
    }
    vk_buffer_free(f.ctx, &in);
    vk_buffer_free(f.ctx, &out);
    teardown(&f);
}

static void replay_unified(void) {
    if (!vt_has_unified()) {
        th_diag("skipped: this device has no unified memory");
        return;
    }
    replay(VP_MEMORY_UNIFIED);
}

static void replay_discrete(void) { replay(VP_MEMORY_DISCRETE); }

static void timestamps_per_dispatch(void) {
    struct fixture f;
    if (!setup(&f, NULL, 65536, VK_RECORDER_TIMESTAMPS)) return teardown(&f);
    CHECK(vk_recorder_begin(f.rec) == VP_OK);
    for (int i = 0; i < 10; i++) CHECK(kernel_scale_add(f.ctx, f.rec, &f.b, &f.a, f.n, 1, 0) == VP_OK);
    CHECK(vk_recorder_end(f.rec) == VP_OK);
    CHECK(vk_recorder_run(f.rec) == VP_OK);
    double ns[16] = {0};
    CHECK(vk_recorder_timings(f.rec, ns, 16) == 10);
    double total = 0;
    for (int i = 0; i < 10; i++) total += ns[i];
    th_diag("10 dispatches took %.1f us of GPU time", total / 1e3);
    CHECK(total > 0);
    teardown(&f);
}

static vp_status record_one_scale_add(void *user, struct vk_recorder *rec) {
    struct fixture *f = user;
    return kernel_scale_add(f->ctx, rec, &f->b, &f->a, f->n, 1, 0);
}

/* A profile groups commands by (site, kernel): 3 scale_add under "first",
 * 2 under "second", a copy and a fill with no site; calls add up to the
 * commands, times to the GPU span, barriers to the recorder's. A device
 * without timestamps is refused by name; a recorder without them keeps no
 * command list. */
static void profile_groups_by_site(void) {
    struct fixture f;
    if (!setup(&f, NULL, 65536, VK_RECORDER_TIMESTAMPS)) return teardown(&f);
    CHECK(vk_recorder_begin(f.rec) == VP_OK);
    CHECK(vk_recorder_fill(f.rec, &f.a, 0, f.n * 4, 0) == VP_OK);
    const char *outer = vk_recorder_label(f.rec, "first");
    CHECK(outer == NULL);
    for (int i = 0; i < 3; i++) CHECK(kernel_scale_add(f.ctx, f.rec, &f.b, &f.a, f.n, 1, 0) == VP_OK);
    CHECK(vk_recorder_label(f.rec, "second") != NULL);
    for (int i = 0; i < 2; i++) CHECK(kernel_scale_add(f.ctx, f.rec, &f.a, &f.b, f.n, 1, 1) == VP_OK);
    vk_recorder_label(f.rec, outer);
    CHECK(vk_recorder_copy(f.rec, &f.b, 0, &f.a, 0, f.n * 4) == VP_OK);
    CHECK(vk_recorder_end(f.rec) == VP_OK);
    struct vk_profile p;
    if (CHECKF(vk_profile_run(f.rec, &p) == VP_OK, "%s", vp_last_error())) {
        CHECK(p.commands == 7 && p.dispatches == 5 && p.transfers == 2 && p.count == 4);
        CHECK(p.barriers == vk_recorder_barrier_count(f.rec) && p.barriers > 0);
        uint32_t calls = 0, barriers = 0, gx, gy;
        const uint32_t wg = kernel_elementwise_workgroup(f.ctx);
        kernel_grid_1d(f.ctx, (f.n + wg - 1) / wg, &gx, &gy);
        const uint64_t per_call = (uint64_t)gx * gy;
        double sum = 0;
        for (uint32_t i = 0; i < p.count; i++) {
            const struct vk_profile_row *r = &p.rows[i];
            calls += r->calls;
            barriers += r->barriers;
            sum += r->total_ns;
            CHECK(r->total_ns >= 0 && (i == 0 || r->total_ns <= p.rows[i - 1].total_ns));
            const bool scale = strcmp(r->kernel, "scale_add") == 0;
            CHECKF(scale ? r->groups == r->calls * per_call : r->groups == 0, "%s: %llu workgroups", r->kernel,
                   (unsigned long long)r->groups);
            if (r->site && strcmp(r->site, "first") == 0) CHECK(scale && r->calls == 3);
            else if (r->site && strcmp(r->site, "second") == 0) CHECK(scale && r->calls == 2);
            else CHECKF(!r->site && !scale && r->calls == 1, "row %s", r->kernel);
        }
        CHECK(calls == 7 && barriers == p.barriers);
        CHECKF(sum <= p.gpu_ns * (1 + 1e-9) && sum >= p.gpu_ns * (1 - 1e-9), "%g of %g ns", sum, p.gpu_ns);
        CHECK(p.gpu_ns > 0 && p.wall_ns > 0);
        vk_profile_finish(&p);
    }
    teardown(&f);
    /* A device without timestamps on its queue: refused, naming the device. */
    if (!setup(&f, NULL, 64, 0)) return teardown(&f);
    f.ctx->info.timestamps = false;
    CHECK(vk_profile_record(f.ctx, record_one_scale_add, &f, &p) == VP_ERROR_UNSUPPORTED);
    CHECKF(strstr(vp_last_error(), f.ctx->info.name) && strstr(vp_last_error(), "timestampValidBits"), "%s",
           vp_last_error());
    CHECK(p.count == 0 && p.rows == NULL);
    f.ctx->info.timestamps = true;
    CHECK(vk_profile_record(f.ctx, record_one_scale_add, &f, &p) == VP_OK && p.dispatches == 1 && p.count == 1);
    vk_profile_finish(&p);
    teardown(&f);
    /* Without timestamps: labels cost a pointer, nothing is kept. */
    if (!setup(&f, NULL, 64, 0)) return teardown(&f);
    CHECK(vk_recorder_begin(f.rec) == VP_OK);
    vk_recorder_label(f.rec, "first");
    CHECK(kernel_scale_add(f.ctx, f.rec, &f.b, &f.a, f.n, 1, 0) == VP_OK);
    CHECK(vk_recorder_end(f.rec) == VP_OK);
    const struct vk_command_info *infos;
    CHECK(vk_recorder_command_infos(f.rec, &infos) == 0);
    CHECK(vk_profile_run(f.rec, &p) == VP_ERROR_INVALID_ARGUMENT);
    teardown(&f);
}

static void misuse_is_reported(void) {
    struct fixture f;
    if (!setup(&f, NULL, 64, 0)) return teardown(&f);
    /* Recording outside begin/end, running an unended recording. */
    CHECK(kernel_scale_add(f.ctx, f.rec, &f.b, &f.a, f.n, 1, 0) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(vk_recorder_run(f.rec) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(vk_recorder_begin(f.rec) == VP_OK);
    CHECK(kernel_scale_add(f.ctx, f.rec, &f.b, &f.a, 1000, 1, 0) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(vk_recorder_copy(f.rec, &f.b, 8, &f.a, 0, f.n * 4) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(vk_recorder_fill(f.rec, &f.b, 0, 6, 0) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(vk_recorder_end(f.rec) == VP_OK);
    CHECK(vk_recorder_run(f.rec) == VP_OK); /* an empty recording runs */
    teardown(&f);
}

/* stderr into a temporary file, to read back what the validation layer said
 * (the library's messenger prints every message there). */
struct captured_stderr {
    FILE *file;
    int saved;
};

static bool capture_stderr(struct captured_stderr *c) {
    fflush(stderr);
    c->file = tmpfile();
    c->saved = c->file ? dup(STDERR_FILENO) : -1;
    if (c->saved < 0 || dup2(fileno(c->file), STDERR_FILENO) < 0) {
        if (c->file) fclose(c->file);
        return false;
    }
    return true;
}

/* Restores stderr, echoes the captured text there, returns it (malloc'd). */
static char *release_stderr(struct captured_stderr *c) {
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    long size = ftell(c->file);
    char *text = calloc(1, size > 0 ? (size_t)size + 1 : 1);
    rewind(c->file);
    if (text && size > 0 && fread(text, 1, (size_t)size, c->file) != (size_t)size) text[0] = 0;
    fclose(c->file);
    if (text) fputs(text, stderr);
    return text;
}

struct scale_add_push {
    uint32_t n;
    float a, b;
    uint32_t pad;
};
_Static_assert(sizeof(struct scale_add_push) == 16, "matches Push in shaders/scale_add.comp");

/* Records b = a (a dispatch declaring its use of b as `declared`), then a
 * copy of b into c, and runs it. */
static void record_write_then_copy(struct fixture *f, struct vk_pipeline *pipe, enum vk_access declared,
                                   const struct vk_buffer *c) {
    struct scale_add_push push = {(uint32_t)f->n, 1.0f, 0.0f, 0};
    uint32_t groups = ((uint32_t)f->n + 255) / 256; /* the 256-wide workgroup of the desc */
    struct vk_bind binds[2] = {{&f->a, 0, 0, VK_ACCESS_READ}, {&f->b, 0, 0, declared}};
    CHECK(vk_recorder_begin(f->rec) == VP_OK);
    CHECK(vk_recorder_dispatch(f->rec, pipe, binds, 2, &push, groups, 1, 1) == VP_OK);
    CHECK(vk_recorder_copy(f->rec, c, 0, &f->b, 0, f->n * 4) == VP_OK);
    CHECK(vk_recorder_end(f->rec) == VP_OK);
    CHECK(vk_recorder_run(f->rec) == VP_OK);
}

/* Synchronization validation is really on under VKPEFT_VALIDATE=sync: a
 * dispatch that writes b, declared as a mere read so that the recorder
 * derives no barrier before the copy that reads b, is reported by the layer
 * as a read-after-write hazard; declared honestly, the recorder puts a
 * barrier between them and the layer is silent. The hazard's messages are
 * expected here, so they do not fail the case. */
static void sync_validation_reports_a_missing_barrier(void) {
    const char *validate = getenv("VKPEFT_VALIDATE");
    if (!validate || strcmp(validate, "sync") != 0) {
        th_diag("skipped: synchronization validation needs VKPEFT_VALIDATE=sync");
        return;
    }
    struct fixture f;
    if (!setup(&f, NULL, 4096, 0)) return teardown(&f);
    struct vk_buffer c;
    struct vk_kernel_desc desc = {
        .shader = "scale_add.comp",
        .bindings = 2,
        .push_size = sizeof(struct scale_add_push),
        .spec_count = 1,
        .spec = {256},
    };
    struct vk_pipeline *pipe;
    if (!CHECK(vk_buffer_alloc(f.ctx, VP_POOL_ACTIVATIONS, f.n * 4, &c) == VP_OK)) return teardown(&f);
    if (!CHECK(vk_pipeline_get(f.ctx, &desc, &pipe) == VP_OK)) {
        vk_buffer_free(f.ctx, &c);
        return teardown(&f);
    }

    uint64_t before = vp_validation_message_count();
    record_write_then_copy(&f, pipe, VK_ACCESS_WRITE, &c);
    CHECK(vk_recorder_barrier_count(f.rec) == 1);
    CHECKF(vp_validation_message_count() == before, "%llu message(s) for a correctly ordered recording",
           (unsigned long long)(vp_validation_message_count() - before));

    struct captured_stderr captured;
    if (CHECK(capture_stderr(&captured))) {
        record_write_then_copy(&f, pipe, VK_ACCESS_READ, &c);
        uint64_t reported = vp_validation_message_count() - before;
        char *text = release_stderr(&captured);
        vt_accept_validation_messages();
        CHECK(vk_recorder_barrier_count(f.rec) == 0);
        CHECKF(reported > 0, "the layer reported nothing for a copy racing a dispatch: is synchronization "
                             "validation enabled (runtime/vk/instance.c)?");
        CHECKF(text && strstr(text, "SYNC-HAZARD-READ-AFTER-WRITE"),
               "no SYNC-HAZARD-READ-AFTER-WRITE among the %llu message(s)", (unsigned long long)reported);
        free(text);
    }
    vk_buffer_free(f.ctx, &c);
    teardown(&f);
}

VT_MAIN(TH_CASE(dependent_chain_of_1000), TH_CASE(independent_dispatches_get_no_barrier),
        TH_CASE(hazards_are_detected), TH_CASE(replay_unified), TH_CASE(replay_discrete),
        TH_CASE(timestamps_per_dispatch), TH_CASE(profile_groups_by_site), TH_CASE(misuse_is_reported),
        TH_CASE(sync_validation_reports_a_missing_barrier))
