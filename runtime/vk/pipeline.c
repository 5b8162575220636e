/* Compute pipelines, built once per (shader, defines, specialization) and
 * kept by the context, plus the VkPipelineCache saved between runs. */
#define _POSIX_C_SOURCE 200809L
#include "vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t desc_key(const struct vk_kernel_desc *d) {
    uint64_t h = vp_hash_str(VP_HASH_INIT, d->shader);
    h = vp_hash_str(h, d->defines ? d->defines : "");
    h = vp_hash_bytes(h, &d->bindings, sizeof d->bindings);
    h = vp_hash_bytes(h, &d->push_size, sizeof d->push_size);
    h = vp_hash_bytes(h, &d->spec_count, sizeof d->spec_count);
    h = vp_hash_bytes(h, d->texel, d->bindings * sizeof d->texel[0]);
    return vp_hash_bytes(h, d->spec, d->spec_count * sizeof d->spec[0]);
}

static void pipeline_destroy(vp_context *ctx, struct vk_pipeline *p) {
    struct vk_fns *fn = ctx->fn;
    if (p->pipeline) fn->vkDestroyPipeline(ctx->device, p->pipeline, NULL);
    if (p->layout) fn->vkDestroyPipelineLayout(ctx->device, p->layout, NULL);
    if (p->set_layout) fn->vkDestroyDescriptorSetLayout(ctx->device, p->set_layout, NULL);
    if (p->module) fn->vkDestroyShaderModule(ctx->device, p->module, NULL);
    free(p);
}

static vp_status create_layouts(vp_context *ctx, const struct vk_kernel_desc *d,
                                struct vk_pipeline *p) {
    struct vk_fns *fn = ctx->fn;
    VkDescriptorSetLayoutBinding b[VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < d->bindings; i++)
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = d->texel[i] ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                          : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo li = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = d->bindings,
        .pBindings = b,
    };
    VK_TRY(fn->vkCreateDescriptorSetLayout(ctx->device, &li, NULL, &p->set_layout));
    VkPushConstantRange range = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        .size = d->push_size,
    };
    VkPipelineLayoutCreateInfo pi = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &p->set_layout,
        .pushConstantRangeCount = d->push_size ? 1 : 0,
        .pPushConstantRanges = &range,
    };
    VK_TRY(fn->vkCreatePipelineLayout(ctx->device, &pi, NULL, &p->layout));
    return VP_OK;
}

static vp_status create_pipeline(vp_context *ctx, const struct vk_kernel_desc *d,
                                 struct vk_pipeline *p) {
    const struct vk_shader_source *src = vk_shader_find(d->shader);
    if (!src) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "no shader named %s in shaders/", d->shader);
    uint32_t *spirv = NULL;
    size_t words = 0;
    vp_status s = vk_shader_compile(ctx, d->shader, src->text, d->defines, &spirv, &words);
    if (s != VP_OK) return s;
    struct vk_fns *fn = ctx->fn;
    VkShaderModuleCreateInfo mi = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = words * 4,
        .pCode = spirv,
    };
    VkResult r = fn->vkCreateShaderModule(ctx->device, &mi, NULL, &p->module);
    free(spirv);
    if (r != VK_SUCCESS) return VK_FAIL(r, "vkCreateShaderModule");
    s = create_layouts(ctx, d, p);
    if (s != VP_OK) return s;
    VkSpecializationMapEntry map[VK_MAX_SPEC];
    for (uint32_t i = 0; i < d->spec_count; i++)
        map[i] = (VkSpecializationMapEntry){i, i * 4, 4};
    VkSpecializationInfo spec = {
        .mapEntryCount = d->spec_count,
        .pMapEntries = map,
        .dataSize = d->spec_count * 4,
        .pData = d->spec,
    };
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage =
            {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = p->module,
                .pName = "main",
                .pSpecializationInfo = d->spec_count ? &spec : NULL,
            },
        .layout = p->layout,
    };
    VK_TRY(fn->vkCreateComputePipelines(ctx->device, ctx->pipeline_cache, 1, &ci, NULL,
                                        &p->pipeline));
    ctx->stats.pipelines_created++;
    return VP_OK;
}

/* "matmul_tiled TRANS_A=1 B_TYPE=1 ...": the shader without ".comp", then
 * each define, space-separated (cut at `size`). */
static void pipeline_label(const struct vk_kernel_desc *d, char *out, size_t size) {
    size_t n = strlen(d->shader), w = 0;
    if (n > 5 && strcmp(d->shader + n - 5, ".comp") == 0) n -= 5;
    for (size_t i = 0; i < n && w + 1 < size; i++) out[w++] = d->shader[i];
    if (d->defines && *d->defines && w + 1 < size) out[w++] = ' ';
    for (const char *c = d->defines; c && *c && w + 1 < size; c++)
        if (*c != '\n' || c[1]) out[w++] = *c == '\n' ? ' ' : *c;
    out[w] = '\0';
}

vp_status vk_pipeline_get(vp_context *ctx, const struct vk_kernel_desc *d, struct vk_pipeline **out) {
    for (uint32_t i = 0; i < d->bindings && i < VK_MAX_BINDINGS; i++)
        if (d->texel[i] && !vk_texel_format_size(d->texel[i]))
            return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                           "kernel %s: binding %u has texel format %d, not one of R32G32B32A32 "
                           "SFLOAT/UINT or R32 SFLOAT/UINT",
                           d->shader, i, (int)d->texel[i]);
    if (d->bindings > VK_MAX_BINDINGS || d->spec_count > VK_MAX_SPEC ||
        d->push_size > ctx->info.max_push_constants || d->push_size % 4)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "kernel %s: %u bindings (max %d), %u spec constants (max %d), %u push "
                       "bytes (max %u, multiple of 4)",
                       d->shader, d->bindings, VK_MAX_BINDINGS, d->spec_count, VK_MAX_SPEC,
                       d->push_size, ctx->info.max_push_constants);
    uint64_t key = desc_key(d);
    struct vk_pipeline_table *t = &ctx->pipelines;
    for (uint32_t i = 0; i < t->count; i++)
        if (t->items[i]->key == key) {
            *out = t->items[i];
            return VP_OK;
        }
    if (t->count == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 32;
        struct vk_pipeline **ni = realloc(t->items, cap * sizeof *ni);
        if (!ni) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for pipelines");
        t->items = ni;
        t->cap = cap;
    }
    struct vk_pipeline *p = calloc(1, sizeof *p);
    if (!p) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for pipelines");
    p->key = key;
    p->bindings = d->bindings;
    p->push_size = d->push_size;
    memcpy(p->texel, d->texel, sizeof p->texel);
    snprintf(p->name, sizeof p->name, "%s", d->shader);
    pipeline_label(d, p->label, sizeof p->label);
    vp_status s = create_pipeline(ctx, d, p);
    if (s != VP_OK) {
        pipeline_destroy(ctx, p);
        return s;
    }
    t->items[t->count++] = p;
    *out = p;
    return VP_OK;
}

void vk_pipelines_finish(vp_context *ctx) {
    for (uint32_t i = 0; i < ctx->pipelines.count; i++) pipeline_destroy(ctx, ctx->pipelines.items[i]);
    free(ctx->pipelines.items);
    memset(&ctx->pipelines, 0, sizeof ctx->pipelines);
}

/* One file per driver build: the driver checks the header itself and
 * ignores data from another build, but separate files avoid ping-pong when
 * several devices share a cache folder. */
static void pipeline_cache_path(vp_context *ctx, char *buf, size_t size) {
    VkPhysicalDeviceProperties props;
    ctx->fn->vkGetPhysicalDeviceProperties(ctx->phys, &props);
    char uuid[2 * VK_UUID_SIZE + 1];
    for (unsigned i = 0; i < VK_UUID_SIZE; i++) snprintf(uuid + 2 * i, 3, "%02x", props.pipelineCacheUUID[i]);
    snprintf(buf, size, "%s/pipelines-%04x-%04x-%s.bin", ctx->cache_dir, props.vendorID,
             props.deviceID, uuid);
}

vp_status vk_pipeline_cache_load(vp_context *ctx) {
    void *data = NULL;
    size_t size = 0;
    if (ctx->use_cache) {
        char path[1200];
        pipeline_cache_path(ctx, path, sizeof path);
        if (vp_file_read(path, &data, &size) != VP_OK) {
            vp_clear_error();
            data = NULL;
            size = 0;
        }
    }
    VkPipelineCacheCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
        .initialDataSize = size,
        .pInitialData = data,
    };
    VkResult r = ctx->fn->vkCreatePipelineCache(ctx->device, &ci, NULL, &ctx->pipeline_cache);
    if (r != VK_SUCCESS && data) {
        /* Corrupt or foreign data: start empty rather than fail. */
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        r = ctx->fn->vkCreatePipelineCache(ctx->device, &ci, NULL, &ctx->pipeline_cache);
    }
    free(data);
    if (r != VK_SUCCESS) return VK_FAIL(r, "vkCreatePipelineCache");
    return VP_OK;
}

void vk_pipeline_cache_save(vp_context *ctx) {
    if (!ctx->use_cache || !ctx->pipeline_cache || ctx->stats.pipelines_created == 0) return;
    size_t size = 0;
    if (ctx->fn->vkGetPipelineCacheData(ctx->device, ctx->pipeline_cache, &size, NULL) != VK_SUCCESS ||
        size == 0)
        return;
    void *data = malloc(size);
    if (!data) return;
    if (ctx->fn->vkGetPipelineCacheData(ctx->device, ctx->pipeline_cache, &size, data) == VK_SUCCESS) {
        char path[1200];
        pipeline_cache_path(ctx, path, sizeof path);
        if (vp_mkdir_p(ctx->cache_dir) != VP_OK || vp_file_write_atomic(path, data, size) != VP_OK) {
            fprintf(stderr, "vkpeft: warning: pipeline cache not saved: %s\n", vp_last_error());
            vp_clear_error();
        }
    }
    free(data);
}
