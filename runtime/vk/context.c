/* vp_context: one device, its queue, pools, pipelines and caches. */
#define _POSIX_C_SOURCE 200809L
#include "vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Resolved options: explicit fields win, then environment, then defaults. */
struct resolved {
    const char *device;
    bool validate;
    vp_limits_profile limits;
    vp_memory_path memory;
    uint64_t budget;
    bool cache;
};

static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0 && strcmp(v, "off") != 0;
}

static vp_status resolve_options(const vp_context_options *o, struct resolved *r) {
    memset(r, 0, sizeof *r);
    r->device = o->device ? o->device : getenv("VKPEFT_DEVICE");
    r->validate = o->validate == VP_TOGGLE_DEFAULT ? env_on("VKPEFT_VALIDATE")
                                                   : o->validate == VP_TOGGLE_ON;
    r->limits = o->limits;
    if (r->limits == VP_LIMITS_DEFAULT) {
        const char *v = getenv("VKPEFT_LIMITS");
        if (!v || !*v || strcmp(v, "native") == 0)
            r->limits = VP_LIMITS_NATIVE;
        else if (strcmp(v, "mobile") == 0)
            r->limits = VP_LIMITS_MOBILE;
        else
            return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                           "VKPEFT_LIMITS='%s' is not a limits profile; use 'native' or 'mobile'", v);
    }
    r->memory = o->memory;
    if (r->memory == VP_MEMORY_DEFAULT) {
        const char *v = getenv("VKPEFT_MEMORY");
        if (v && strcmp(v, "unified") == 0)
            r->memory = VP_MEMORY_UNIFIED;
        else if (v && strcmp(v, "discrete") == 0)
            r->memory = VP_MEMORY_DISCRETE;
        else if (v && *v && strcmp(v, "auto") != 0)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                           "VKPEFT_MEMORY='%s' is not a memory path; use 'unified', 'discrete' or "
                           "'auto'", v);
    }
    r->budget = o->budget_bytes;
    const char *b = getenv("VKPEFT_BUDGET");
    if (!r->budget && b && *b && !vp_parse_bytes(b, &r->budget))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "VKPEFT_BUDGET='%s' is not a byte count; use e.g. 512M or 2G", b);
    r->cache = o->shader_cache != VP_TOGGLE_OFF;
    return VP_OK;
}

static void apply_limits(vp_context *ctx, const struct resolved *r, uint64_t binding_range) {
    const vp_device_info *d = &ctx->info;
    vp_limits *l = &ctx->limits;
    l->profile = r->limits;
    l->shared_memory = d->shared_memory;
    l->max_workgroup_invocations = d->max_workgroup_invocations;
    l->storage_buffer_range = d->max_storage_buffer_range;
    l->subgroup_size = d->subgroup_size;
    l->subgroup_arithmetic = (d->subgroup_ops & VP_SUBGROUP_ARITHMETIC) != 0;
    l->storage_16bit = d->storage_16bit;
    l->fp16_arithmetic = d->fp16_arithmetic;
    l->int8_arithmetic = d->int8_arithmetic;
    l->cooperative_matrix = d->cooperative_matrix;
    if (r->limits == VP_LIMITS_MOBILE) {
        if (l->shared_memory > 16384) l->shared_memory = 16384;
        if (l->max_workgroup_invocations > 128) l->max_workgroup_invocations = 128;
        if (l->storage_buffer_range > (128u << 20)) l->storage_buffer_range = 128u << 20;
        l->subgroup_size = 8;
        l->subgroup_arithmetic = false;
        l->storage_16bit = false;
        l->fp16_arithmetic = false;
        l->int8_arithmetic = false;
        l->cooperative_matrix = false;
    }
    if (binding_range && binding_range < l->storage_buffer_range)
        l->storage_buffer_range = binding_range;
    /* Binding ranges start on the device's storage offset alignment and
     * hold whole 16-byte vectors, so every range is a multiple of both. */
    VkDeviceSize a = d->min_storage_offset_alignment;
    ctx->binding_alignment = a > 16 ? a : 16;
    l->storage_buffer_range -= l->storage_buffer_range % ctx->binding_alignment;
    bool unified = d->unified_memory;
    if (r->memory == VP_MEMORY_DISCRETE) unified = false;
    l->unified_memory = unified;
}

/* Defines every shader sees; part of the SPIR-V cache key. */
static void make_device_defines(vp_context *ctx) {
    const vp_limits *l = &ctx->limits;
    snprintf(ctx->device_defines, sizeof ctx->device_defines,
             "VP_SUBGROUP_SIZE=%u\nVP_SUBGROUP_ARITHMETIC=%d\nVP_STORAGE_16BIT=%d\n"
             "VP_FP16_ARITHMETIC=%d\nVP_SHARED_MEMORY=%u\nVP_MAX_INVOCATIONS=%u\n",
             l->subgroup_size, l->subgroup_arithmetic, l->storage_16bit, l->fp16_arithmetic,
             l->shared_memory, l->max_workgroup_invocations);
}

static vp_status create_device(vp_context *ctx) {
    struct vk_fns *fn = ctx->fn;
    if (ctx->feat.compute_queue_family == UINT32_MAX)
        return vp_fail(VP_ERROR_UNSUPPORTED, "device '%s' has no compute queue", ctx->info.name);
    float priority = 1.0f;
    VkDeviceQueueCreateInfo queue = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = ctx->feat.compute_queue_family,
        .queueCount = 1,
        .pQueuePriorities = &priority,
    };
    /* Enable only what the limits profile lets kernels use, so a shader that
     * strays beyond the profile is caught by validation. */
    const vp_limits *l = &ctx->limits;
    bool v12 = ctx->info.api_version >= VK_API_VERSION_1_2;
    VkPhysicalDeviceShaderFloat16Int8Features f16i8 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
        .shaderFloat16 = l->fp16_arithmetic,
        .shaderInt8 = l->int8_arithmetic,
    };
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
        .pNext = v12 ? &f16i8 : NULL,
        .storageBuffer16BitAccess = l->storage_16bit,
    };
    VkPhysicalDeviceFeatures2 features = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &s16,
        .features.shaderInt64 = ctx->feat.int64,
    };
    const char *exts[2];
    uint32_t ext_count = 0;
    if (ctx->feat.memory_budget_ext) exts[ext_count++] = VK_EXT_MEMORY_BUDGET_EXTENSION_NAME;
    VkDeviceCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &features,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &queue,
        .enabledExtensionCount = ext_count,
        .ppEnabledExtensionNames = exts,
    };
    VK_TRY(fn->vkCreateDevice(ctx->phys, &info, NULL, &ctx->device));
    vp_status s = vk_loader_load_device(fn, ctx->device);
    if (s != VP_OK) return s;
    fn->vkGetDeviceQueue(ctx->device, ctx->feat.compute_queue_family, 0, &ctx->queue);
    VkCommandPoolCreateInfo pool = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = ctx->feat.compute_queue_family,
    };
    VK_TRY(fn->vkCreateCommandPool(ctx->device, &pool, NULL, &ctx->command_pool));
    VkFenceCreateInfo fence = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VK_TRY(fn->vkCreateFence(ctx->device, &fence, NULL, &ctx->fence));
    return VP_OK;
}

static vp_status pick_physical_device(vp_context *ctx, const char *selector) {
    struct vk_device_list list;
    vp_status s = vk_devices_probe_all(&ctx->inst, &list);
    if (s != VP_OK) return s;
    uint32_t pick = 0;
    s = vk_device_choose(list.infos, list.count, selector, &pick);
    if (s == VP_OK) {
        ctx->phys = list.phys[pick];
        ctx->info = list.infos[pick];
        ctx->feat = list.feats[pick];
        if (ctx->info.api_version < VK_API_VERSION_1_1)
            s = vp_fail(VP_ERROR_UNSUPPORTED, "device '%s' supports only Vulkan 1.0; vkpeft needs 1.1",
                        ctx->info.name);
    }
    vk_device_list_free(&list);
    return s;
}

static void set_cache_dir(vp_context *ctx, const char *dir) {
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (dir && *dir)
        snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s", dir);
    else if (xdg && *xdg)
        snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s/vkpeft", xdg);
    else if (home && *home)
        snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s/.cache/vkpeft", home);
    else
        ctx->use_cache = false;
}

vp_status vp_context_create(const vp_context_options *options, vp_context **out) {
    static const vp_context_options defaults;
    if (!out) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "vp_context_create: out is NULL");
    *out = NULL;
    if (!options) options = &defaults;
    struct resolved r;
    vp_status s = resolve_options(options, &r);
    if (s != VP_OK) return s;
    vp_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory creating a context");
    ctx->fn = &ctx->inst.fn;
    ctx->use_cache = r.cache;
    set_cache_dir(ctx, options->cache_dir);

    s = vk_instance_create(&ctx->inst, r.validate);
    if (s == VP_OK) s = pick_physical_device(ctx, r.device);
    if (s == VP_OK) {
        if (r.memory == VP_MEMORY_UNIFIED && !ctx->info.unified_memory)
            s = vp_fail(VP_ERROR_UNSUPPORTED,
                        "VKPEFT_MEMORY=unified, but device '%s' has no host-visible device-local "
                        "memory; use 'discrete' or 'auto'", ctx->info.name);
    }
    if (s == VP_OK) {
        apply_limits(ctx, &r, options->binding_range);
        make_device_defines(ctx);
        s = create_device(ctx);
    }
    if (s == VP_OK) s = vk_pipeline_cache_load(ctx);
    if (s == VP_OK) {
        ctx->budget = r.budget;
        s = vk_pools_init(ctx);
    }
    if (s == VP_OK) s = vk_recorder_create(ctx, 0, &ctx->transfer);
    if (s != VP_OK) {
        vp_context_destroy(ctx);
        return s;
    }
    *out = ctx;
    return VP_OK;
}

void vp_context_destroy(vp_context *ctx) {
    if (!ctx) return;
    struct vk_fns *fn = ctx->fn;
    if (ctx->device) {
        fn->vkDeviceWaitIdle(ctx->device);
        vk_recorder_destroy(ctx->transfer);
        vk_pipeline_cache_save(ctx);
        vk_pipelines_finish(ctx);
        vk_pools_finish(ctx);
        if (ctx->pipeline_cache) fn->vkDestroyPipelineCache(ctx->device, ctx->pipeline_cache, NULL);
        if (ctx->fence) fn->vkDestroyFence(ctx->device, ctx->fence, NULL);
        if (ctx->command_pool) fn->vkDestroyCommandPool(ctx->device, ctx->command_pool, NULL);
        fn->vkDestroyDevice(ctx->device, NULL);
    }
    vk_instance_destroy(&ctx->inst);
    free(ctx);
}

const vp_device_info *vp_context_device(const vp_context *ctx) { return &ctx->info; }
const vp_limits *vp_context_limits(const vp_context *ctx) { return &ctx->limits; }
void vp_context_stats(const vp_context *ctx, vp_stats *out) { *out = ctx->stats; }
uint64_t vp_context_budget(const vp_context *ctx) { return ctx->budget; }
