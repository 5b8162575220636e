/* Device enumeration, probing, the default choice and limits profiles. */
#define _POSIX_C_SOURCE 200809L
#include "vktest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void probe_lists_devices(void) {
    vp_device_info *devs = NULL;
    uint32_t n = 0, chosen = 99;
    vp_status s = vp_devices_list(NULL, &devs, &n, &chosen);
    if (!CHECKF(s == VP_OK, "vp_devices_list: %s", vp_last_error())) return;
    CHECK(n >= 1);
    CHECK(chosen < n);
    for (uint32_t i = 0; i < n; i++) {
        const vp_device_info *d = &devs[i];
        th_diag("device %u: %s (%s, %s), subgroup %u, shared %u, range %llu", i, d->name, d->vendor,
                vp_device_type_name(d->type), d->subgroup_size, d->shared_memory,
                (unsigned long long)d->max_storage_buffer_range);
        CHECK(d->index == i);
        CHECK(d->name[0] != 0);
        CHECK(d->api_version >= VK_API_VERSION_1_1);
        CHECK(d->subgroup_size > 0 && (d->subgroup_size & (d->subgroup_size - 1)) == 0);
        CHECK(d->subgroup_size_min <= d->subgroup_size && d->subgroup_size <= d->subgroup_size_max);
        CHECK(d->shared_memory >= 16384); /* Vulkan's required minimum */
        CHECK(d->max_workgroup_invocations >= 128);
        CHECK(d->max_storage_buffer_range >= (1u << 27));
        CHECK(d->max_memory_allocation > 0);
        CHECK(d->heap_count >= 1);
        CHECK(d->heaps[0].size > 0 && d->heaps[0].budget > 0);
        CHECK(d->min_storage_offset_alignment > 0);
        if (strstr(d->name, "llvmpipe")) {
            /* lavapipe: one host-visible device-local heap, a CPU device. */
            CHECK(d->type == VP_DEVICE_CPU);
            CHECK(d->unified_memory);
            CHECK(d->timestamps);
        }
    }
    free(devs);
}

static void default_choice_prefers_discrete(void) {
    vp_device_info d[4] = {{0}};
    d[0].type = VP_DEVICE_CPU;
    d[1].type = VP_DEVICE_VIRTUAL;
    d[2].type = VP_DEVICE_INTEGRATED;
    d[3].type = VP_DEVICE_DISCRETE;
    strcpy(d[0].name, "llvmpipe (LLVM 15)");
    strcpy(d[3].name, "NVIDIA H100");
    uint32_t c = 99;
    CHECK(vk_device_choose(d, 4, NULL, &c) == VP_OK && c == 3);
    CHECK(vk_device_choose(d, 3, NULL, &c) == VP_OK && c == 2);
    CHECK(vk_device_choose(d, 2, NULL, &c) == VP_OK && c == 1);
    CHECK(vk_device_choose(d, 1, NULL, &c) == VP_OK && c == 0);
    CHECK(vk_device_choose(d, 4, "0", &c) == VP_OK && c == 0);
    CHECK(vk_device_choose(d, 4, "h100", &c) == VP_OK && c == 3);
    CHECK(vk_device_choose(d, 4, "LLVMPIPE", &c) == VP_OK && c == 0);
    CHECK(vk_device_choose(d, 4, "7", &c) == VP_ERROR_NO_DEVICE);
    CHECK(strstr(vp_last_error(), "vkpeft devices") != NULL);
    CHECK(vk_device_choose(d, 4, "radeon", &c) == VP_ERROR_NO_DEVICE);
    CHECK(strstr(vp_last_error(), "radeon") != NULL);
    CHECK(vk_device_choose(d, 0, NULL, &c) == VP_ERROR_NO_DEVICE);
}

static void context_uses_selected_device(void) {
    vp_device_info *devs;
    uint32_t n, chosen;
    if (!CHECK(vp_devices_list(NULL, &devs, &n, &chosen) == VP_OK)) return;
    char sel[16];
    snprintf(sel, sizeof sel, "%u", n - 1);
    vp_context_options o = {.device = sel};
    vp_context *ctx = vt_context(&o);
    if (ctx) {
        CHECK(strcmp(vp_context_device(ctx)->name, devs[n - 1].name) == 0);
        vp_context_destroy(ctx);
    }
    o.device = "no-such-gpu-anywhere";
    CHECK(vp_context_create(&o, &ctx) == VP_ERROR_NO_DEVICE);
    free(devs);
}

static void check_mobile(const vp_limits *l) {
    CHECK(l->profile == VP_LIMITS_MOBILE);
    CHECK(l->shared_memory <= 16384);
    CHECK(l->max_workgroup_invocations <= 128);
    CHECK(l->storage_buffer_range <= (128u << 20));
    CHECK(l->subgroup_size == 8);
    CHECK(!l->subgroup_arithmetic);
    CHECK(!l->storage_16bit);
    CHECK(!l->fp16_arithmetic);
}

static void limits_profile_from_api(void) {
    vp_context_options o = {.limits = VP_LIMITS_MOBILE};
    vp_context *ctx = vt_context(&o);
    if (!ctx) return;
    check_mobile(vp_context_limits(ctx));
    vp_context_destroy(ctx);
    o.limits = VP_LIMITS_NATIVE;
    ctx = vt_context(&o);
    if (!ctx) return;
    const vp_limits *l = vp_context_limits(ctx);
    const vp_device_info *d = vp_context_device(ctx);
    CHECK(l->profile == VP_LIMITS_NATIVE);
    CHECK(l->shared_memory == d->shared_memory);
    CHECK(l->max_workgroup_invocations == d->max_workgroup_invocations);
    CHECK(l->storage_16bit == d->storage_16bit);
    vp_context_destroy(ctx);
}

static void limits_profile_from_environment(void) {
    const char *env = getenv("VKPEFT_LIMITS");
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    if (env && strcmp(env, "mobile") == 0)
        check_mobile(vp_context_limits(ctx));
    else
        CHECK(vp_context_limits(ctx)->profile == VP_LIMITS_NATIVE);
    vp_context_destroy(ctx);
}

static void bad_environment_is_reported(void) {
    char *saved = getenv("VKPEFT_LIMITS") ? strdup(getenv("VKPEFT_LIMITS")) : NULL;
    setenv("VKPEFT_LIMITS", "tiny", 1);
    vp_context *ctx = NULL;
    CHECK(vp_context_create(NULL, &ctx) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(ctx == NULL);
    CHECK(strstr(vp_last_error(), "VKPEFT_LIMITS='tiny'") != NULL);
    if (saved) setenv("VKPEFT_LIMITS", saved, 1);
    else unsetenv("VKPEFT_LIMITS");
    free(saved);
    setenv("VKPEFT_BUDGET", "lots", 1);
    CHECK(vp_context_create(NULL, &ctx) == VP_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(vp_last_error(), "VKPEFT_BUDGET") != NULL);
    unsetenv("VKPEFT_BUDGET");
}

static void validation_layer_is_on(void) {
    /* The suite's promise that validation runs: a context created with
     * validation requested must have the layer (else creation fails). */
    vp_context_options o = {.validate = VP_TOGGLE_ON};
    vp_context *ctx = vt_context(&o);
    if (!ctx) return;
    /* Provoke one finding: a buffer of size 0 is invalid usage. */
    uint64_t before = vp_validation_message_count();
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = 0,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
    };
    VkBuffer b = VK_NULL_HANDLE;
    VkResult r = ctx->fn->vkCreateBuffer(ctx->device, &bi, NULL, &b);
    CHECKF(vp_validation_message_count() > before, "the layer reported nothing for size 0");
    if (r == VK_SUCCESS && b) ctx->fn->vkDestroyBuffer(ctx->device, b, NULL);
    vt_accept_validation_messages();
    vp_context_destroy(ctx);
}

/* Many contexts, one after another, in one process (as every test program
 * makes): on an H200 with NVIDIA's 580 driver the 12th failed before the
 * drivers were kept loaded (vk_loader_pin_drivers). */
static void many_contexts_in_one_process(void) {
    for (int i = 0; i < 16; i++) {
        vp_context *ctx = vt_context(NULL);
        if (!CHECKF(ctx != NULL, "context %d", i + 1)) return;
        vp_context_destroy(ctx);
    }
}

VT_MAIN(TH_CASE(many_contexts_in_one_process), TH_CASE(probe_lists_devices), TH_CASE(default_choice_prefers_discrete),
        TH_CASE(context_uses_selected_device), TH_CASE(limits_profile_from_api),
        TH_CASE(limits_profile_from_environment), TH_CASE(bad_environment_is_reported),
        TH_CASE(validation_layer_is_on))
