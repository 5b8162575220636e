/* Memory pools: both memory paths, exact accounting, budgets, binding ranges. */
#include "vktest.h"

#include <stdlib.h>
#include <string.h>

static VkDeviceSize align_up(VkDeviceSize v, VkDeviceSize a) { return (v + a - 1) / a * a; }

/* Upload -> y = 2x + 1 on the GPU -> download, for every pool but staging. */
static void round_trip(vp_memory_path path) {
    vp_context_options o = {.memory = path};
    vp_context *ctx = vt_context(&o);
    if (!ctx) return;
    CHECK(vp_context_limits(ctx)->unified_memory == (path == VP_MEMORY_UNIFIED));
    const size_t n = 100003; /* not a multiple of any workgroup size */
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    vt_fill_ints(x, n, 1000, 42);
    struct vk_recorder *rec = NULL;
    CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK);
    for (int p = VP_POOL_FROZEN; p <= VP_POOL_ACTIVATIONS && rec; p++) {
        struct vk_buffer bx, by;
        if (!CHECK(vk_buffer_alloc(ctx, (vp_pool)p, n * 4, &bx) == VP_OK)) break;
        if (!CHECK(vk_buffer_alloc(ctx, (vp_pool)p, n * 4, &by) == VP_OK)) break;
        /* The discrete path never maps device pools. */
        CHECK((bx.host != NULL) == (path == VP_MEMORY_UNIFIED));
        CHECK(vk_buffer_write(ctx, &bx, 0, x, n * 4) == VP_OK);
        CHECK(vk_recorder_begin(rec) == VP_OK);
        CHECK(kernel_scale_add(ctx, rec, &by, &bx, n, 2.0f, 1.0f) == VP_OK);
        CHECK(vk_recorder_end(rec) == VP_OK);
        CHECK(vk_recorder_run(rec) == VP_OK);
        memset(y, 0, n * 4);
        CHECK(vk_buffer_read(ctx, &by, 0, y, n * 4) == VP_OK);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += y[i] != 2.0f * x[i] + 1.0f;
        CHECKF(bad == 0, "pool %s: %zu of %zu values wrong", vp_pool_name((vp_pool)p), bad, n);
        /* Partial writes and reads at an offset. */
        float three[3] = {7, 8, 9}, back[3] = {0};
        CHECK(vk_buffer_write(ctx, &by, 40, three, 12) == VP_OK);
        CHECK(vk_buffer_read(ctx, &by, 40, back, 12) == VP_OK);
        CHECK(back[0] == 7 && back[1] == 8 && back[2] == 9);
        CHECK(vk_buffer_read(ctx, &by, n * 4 - 8, back, 12) == VP_ERROR_INVALID_ARGUMENT);
        vk_buffer_free(ctx, &bx);
        vk_buffer_free(ctx, &by);
    }
    vp_pool_stats st;
    vp_pool_stats_get(ctx, VP_POOL_STAGING, &st);
    CHECK(st.allocations == 0); /* transfers return their staging pieces */
    vk_recorder_destroy(rec);
    free(x);
    free(y);
    vp_context_destroy(ctx);
}

static void round_trip_unified(void) {
    if (!vt_has_unified()) {
        th_diag("skipped: this device has no unified memory");
        return;
    }
    round_trip(VP_MEMORY_UNIFIED);
}

static void round_trip_discrete(void) { round_trip(VP_MEMORY_DISCRETE); }

static void accounting_is_exact(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    const VkDeviceSize a = vk_pool_alignment(ctx);
    CHECK(a >= 16 && (a & (a - 1)) == 0);
    const VkDeviceSize sizes[] = {1, 100, 4096, 12345, 1 << 20, 3};
    enum { N = sizeof sizes / sizeof sizes[0] };
    struct vk_buffer b[N];
    VkDeviceSize in_use = 0, requested = 0;
    vp_pool_stats st;
    for (int i = 0; i < N; i++) {
        CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, sizes[i], &b[i]) == VP_OK);
        CHECK(b[i].offset % a == 0);
        in_use += align_up(sizes[i], a);
        requested += sizes[i];
    }
    vp_pool_stats_get(ctx, VP_POOL_TRAINABLE, &st);
    CHECK(st.in_use == in_use);
    CHECK(st.requested == requested);
    CHECK(st.allocations == N);
    CHECK(st.peak_in_use == in_use);
    CHECK(st.blocks == 1 && st.reserved >= in_use);
    /* Pieces never overlap. */
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            CHECK(b[i].offset + sizes[i] <= b[j].offset || b[j].offset + sizes[j] <= b[i].offset);
    const VkDeviceSize peak = in_use, reserved = st.reserved;
    /* Free the middle piece: its range is reused by an equal request. */
    VkDeviceSize hole = b[2].offset;
    vk_buffer_free(ctx, &b[2]);
    CHECK(b[2].buffer == VK_NULL_HANDLE);
    vp_pool_stats_get(ctx, VP_POOL_TRAINABLE, &st);
    CHECK(st.in_use == in_use - align_up(4096, a));
    CHECK(st.requested == requested - 4096);
    CHECK(st.allocations == N - 1);
    CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, 4000, &b[2]) == VP_OK);
    CHECK(b[2].offset == hole);
    for (int i = 0; i < N; i++) vk_buffer_free(ctx, &b[i]);
    vp_pool_stats_get(ctx, VP_POOL_TRAINABLE, &st);
    CHECK(st.in_use == 0 && st.requested == 0 && st.allocations == 0);
    CHECK(st.peak_in_use == peak);
    CHECK(st.reserved == reserved); /* blocks stay until trimmed */
    /* Coalescing: after freeing everything one allocation of the whole block fits. */
    struct vk_buffer whole;
    CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, reserved, &whole) == VP_OK);
    vp_pool_stats_get(ctx, VP_POOL_TRAINABLE, &st);
    CHECK(st.blocks == 1 && whole.offset == 0);
    vk_buffer_free(ctx, &whole);
    vk_pools_trim(ctx);
    vp_pool_stats_get(ctx, VP_POOL_TRAINABLE, &st);
    CHECK(st.reserved == 0 && st.blocks == 0);
    /* Other pools were untouched. */
    vp_pool_stats_get(ctx, VP_POOL_FROZEN, &st);
    CHECK(st.reserved == 0 && st.in_use == 0);
    CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, 0, &whole) == VP_ERROR_INVALID_ARGUMENT);
    vp_context_destroy(ctx);
}

static void over_budget_fails_cleanly(void) {
    const uint64_t budget = 8u << 20;
    vp_context_options o = {.budget_bytes = budget};
    vp_context *ctx = vt_context(&o);
    if (!ctx) return;
    CHECK(vp_context_budget(ctx) == budget);
    struct vk_buffer a, b;
    CHECK(vk_buffer_alloc(ctx, VP_POOL_FROZEN, 5u << 20, &a) == VP_OK);
    vp_pool_stats before[VP_POOL_COUNT], after;
    for (int p = 0; p < VP_POOL_COUNT; p++) vp_pool_stats_get(ctx, (vp_pool)p, &before[p]);
    vp_status s = vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, 4u << 20, &b);
    CHECK(s == VP_ERROR_OVER_BUDGET);
    th_diag("message: %s", vp_last_error());
    CHECK(strstr(vp_last_error(), "activations pool") != NULL);
    CHECK(strstr(vp_last_error(), "8.00 MiB budget") != NULL);
    CHECK(strstr(vp_last_error(), "frozen 5.00 MiB reserved") != NULL);
    CHECK(b.buffer == VK_NULL_HANDLE);
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        vp_pool_stats_get(ctx, (vp_pool)p, &after);
        CHECK(memcmp(&after, &before[p], sizeof after) == 0);
    }
    /* What fits still works: 3 MiB is within the 3 MiB left. */
    CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, 3u << 20, &b) == VP_OK);
    vk_buffer_free(ctx, &b);
    vk_buffer_free(ctx, &a);

    /* A whole plan is checked before any of it is allocated. */
    vk_pools_trim(ctx);
    uint64_t plan[VP_POOL_COUNT] = {4u << 20, 1u << 20, 6u << 20, 0};
    s = vk_pools_reserve(ctx, plan);
    CHECK(s == VP_ERROR_OVER_BUDGET);
    th_diag("message: %s", vp_last_error());
    CHECK(strstr(vp_last_error(), "the memory plan needs 11.00 MiB") != NULL);
    CHECK(strstr(vp_last_error(), "activations 0 B reserved + 6.00 MiB planned") != NULL);
    CHECK(strstr(vp_last_error(), "--batch") != NULL);
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        vp_pool_stats_get(ctx, (vp_pool)p, &after);
        CHECK(after.reserved == 0 && after.blocks == 0);
    }
    plan[2] = 2u << 20;
    CHECK(vk_pools_reserve(ctx, plan) == VP_OK);
    vp_pool_stats_get(ctx, VP_POOL_ACTIVATIONS, &after);
    CHECK(after.reserved == (2u << 20) && after.blocks == 1);
    /* The reserved block serves allocations without growing. */
    CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, 2u << 20, &b) == VP_OK);
    vp_pool_stats_get(ctx, VP_POOL_ACTIVATIONS, &after);
    CHECK(after.blocks == 1);
    vk_buffer_free(ctx, &b);
    vp_context_destroy(ctx);
}

static void ranges_cover_buffer(void) {
    vp_context_options o = {.binding_range = 1000}; /* deliberately not aligned */
    vp_context *ctx = vt_context(&o);
    if (!ctx) return;
    VkDeviceSize range = vp_context_limits(ctx)->storage_buffer_range;
    CHECK(range <= 1000 && range % vk_pool_alignment(ctx) == 0);
    struct vk_buffer fake = {.size = 10 * 1000 + 12};
    struct vk_range r[64];
    uint32_t n = vk_buffer_ranges(ctx, &fake, 12, r, 64); /* granule: vec3 of floats */
    CHECK(n >= 10 && n <= 64);
    VkDeviceSize next = 0;
    for (uint32_t i = 0; i < n && i < 64; i++) {
        CHECK(r[i].offset == next);
        CHECK(r[i].size <= range && r[i].size > 0);
        CHECK(r[i].offset % vk_pool_alignment(ctx) == 0);
        if (i + 1 < n) CHECK(r[i].size % 12 == 0);
        next += r[i].size;
    }
    CHECK(next == fake.size);
    vp_context_destroy(ctx);
}

/* A buffer longer than the binding range is processed range by range, and
 * the bytes after it stay untouched. */
static void oversized_buffer(uint64_t binding_range, size_t n) {
    vp_context_options o = {.binding_range = binding_range};
    vp_context *ctx = vt_context(&o);
    if (!ctx) return;
    const size_t guard = 64;
    CHECK((uint64_t)n * 4 > vp_context_limits(ctx)->storage_buffer_range);
    float *x = malloc((n + guard) * 4), *y = malloc((n + guard) * 4);
    vt_fill_ints(x, n + guard, 100, 7);
    struct vk_buffer bx, by;
    struct vk_recorder *rec = NULL;
    if (CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, (n + guard) * 4, &bx) == VP_OK) &&
        CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, (n + guard) * 4, &by) == VP_OK) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        CHECK(vk_buffer_write(ctx, &bx, 0, x, (n + guard) * 4) == VP_OK);
        CHECK(vk_buffer_write(ctx, &by, 0, x, (n + guard) * 4) == VP_OK);
        CHECK(vk_recorder_begin(rec) == VP_OK);
        CHECK(kernel_scale_add(ctx, rec, &by, &bx, n, -3.0f, 0.5f) == VP_OK);
        CHECK(vk_recorder_end(rec) == VP_OK);
        th_diag("%zu floats in %u dispatches (binding range %llu bytes)", n,
                vk_recorder_dispatch_count(rec),
                (unsigned long long)vp_context_limits(ctx)->storage_buffer_range);
        CHECK(vk_recorder_dispatch_count(rec) >= 2);
        CHECK(vk_recorder_run(rec) == VP_OK);
        CHECK(vk_buffer_read(ctx, &by, 0, y, (n + guard) * 4) == VP_OK);
        size_t bad = 0, guard_bad = 0;
        for (size_t i = 0; i < n; i++) bad += y[i] != -3.0f * x[i] + 0.5f;
        for (size_t i = n; i < n + guard; i++) guard_bad += y[i] != x[i];
        CHECKF(bad == 0, "%zu wrong values", bad);
        CHECKF(guard_bad == 0, "%zu guard values overwritten", guard_bad);
    }
    vk_recorder_destroy(rec);
    free(x);
    free(y);
    vp_context_destroy(ctx);
}

static void oversized_buffer_small_range(void) { oversized_buffer(1 << 20, 3 * (1 << 18) + 77); }

/* Larger than the device's own maxStorageBufferRange (128 MiB on lavapipe). */
static void oversized_buffer_device_range(void) {
    vp_device_info *devs;
    uint32_t n, chosen;
    if (!CHECK(vp_devices_list(NULL, &devs, &n, &chosen) == VP_OK)) return;
    uint64_t range = devs[chosen].max_storage_buffer_range;
    free(devs);
    if (range > (256u << 20)) {
        th_diag("skipped: binding range %llu too large to exceed cheaply", (unsigned long long)range);
        return;
    }
    oversized_buffer(0, (size_t)(range / 4) + (1u << 20) + 5);
}

/* A pool's plan larger than the device's largest allocation (4 GiB on
 * NVIDIA; lowered to 1 MiB here) is reserved as several equal blocks; every
 * buffer that fits one allocation is served from them without growing, and a
 * buffer larger than one allocation is refused with the numbers. */
static void plan_larger_than_one_allocation(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    ctx->info.max_memory_allocation = 1u << 20;
    const VkDeviceSize align = vk_pool_alignment(ctx);
    uint64_t plan[VP_POOL_COUNT] = {0, 0, (5u << 19) + 3, 0}; /* 2.5 MiB + 3 B */
    if (CHECK(vk_pools_reserve(ctx, plan) == VP_OK)) {
        vp_pool_stats st;
        vp_pool_stats_get(ctx, VP_POOL_ACTIVATIONS, &st);
        CHECKF(st.blocks == 3 && st.reserved >= plan[2] && st.reserved < plan[2] + 3 * align,
               "%u blocks, %llu bytes reserved", st.blocks, (unsigned long long)st.reserved);
        /* Pieces up to a block each: two of 800 KiB and one of 700 KiB. */
        struct vk_buffer b[3];
        const VkDeviceSize sizes[3] = {800u << 10, 800u << 10, 700u << 10};
        for (int i = 0; i < 3; i++) CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, sizes[i], &b[i]) == VP_OK);
        vp_pool_stats_get(ctx, VP_POOL_ACTIVATIONS, &st);
        CHECK(st.blocks == 3);
        for (int i = 0; i < 3; i++) vk_buffer_free(ctx, &b[i]);
        struct vk_buffer big;
        CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, (1u << 20) + 1, &big) == VP_ERROR_UNSUPPORTED);
        CHECK(strstr(vp_last_error(), "exceeds the device's largest allocation (1.00 MiB)") != NULL);
    }
    vp_context_destroy(ctx);
}

VT_MAIN(TH_CASE(plan_larger_than_one_allocation), TH_CASE(round_trip_unified), TH_CASE(round_trip_discrete), TH_CASE(accounting_is_exact),
        TH_CASE(over_budget_fails_cleanly), TH_CASE(ranges_cover_buffer),
        TH_CASE(oversized_buffer_small_range), TH_CASE(oversized_buffer_device_range))
