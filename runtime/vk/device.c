/* Physical-device probing and the default choice. */
#include "vk.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *vendor_name(uint32_t id) {
    switch (id) {
    case 0x10DE: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x1022: return "AMD";
    case 0x8086: return "Intel";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x1010: return "Imagination";
    case 0x14E4: return "Broadcom";
    case 0x106B: return "Apple";
    case 0x10005: return "Mesa";
    default: return "unknown";
    }
}

const char *vp_device_type_name(vp_device_type type) {
    switch (type) {
    case VP_DEVICE_DISCRETE: return "discrete";
    case VP_DEVICE_INTEGRATED: return "integrated";
    case VP_DEVICE_VIRTUAL: return "virtual";
    case VP_DEVICE_CPU: return "cpu";
    default: return "other";
    }
}

static vp_device_type map_type(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return VP_DEVICE_DISCRETE;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return VP_DEVICE_INTEGRATED;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return VP_DEVICE_VIRTUAL;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return VP_DEVICE_CPU;
    default: return VP_DEVICE_OTHER;
    }
}

static uint32_t map_subgroup_ops(VkSubgroupFeatureFlags f) {
    uint32_t ops = 0;
    if (f & VK_SUBGROUP_FEATURE_BASIC_BIT) ops |= VP_SUBGROUP_BASIC;
    if (f & VK_SUBGROUP_FEATURE_VOTE_BIT) ops |= VP_SUBGROUP_VOTE;
    if (f & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) ops |= VP_SUBGROUP_ARITHMETIC;
    if (f & VK_SUBGROUP_FEATURE_BALLOT_BIT) ops |= VP_SUBGROUP_BALLOT;
    if (f & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) ops |= VP_SUBGROUP_SHUFFLE;
    if (f & VK_SUBGROUP_FEATURE_SHUFFLE_RELATIVE_BIT) ops |= VP_SUBGROUP_SHUFFLE_RELATIVE;
    if (f & VK_SUBGROUP_FEATURE_CLUSTERED_BIT) ops |= VP_SUBGROUP_CLUSTERED;
    if (f & VK_SUBGROUP_FEATURE_QUAD_BIT) ops |= VP_SUBGROUP_QUAD;
    return ops;
}

static bool has_ext(const VkExtensionProperties *exts, uint32_t n, const char *name) {
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(exts[i].extensionName, name) == 0) return true;
    return false;
}

void vk_device_refresh_budget(struct vk_instance *inst, VkPhysicalDevice phys,
                              vp_device_info *info) {
    VkPhysicalDeviceMemoryBudgetPropertiesEXT budget = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT,
    };
    VkPhysicalDeviceMemoryProperties2 mem = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
        .pNext = info->memory_budget_ext ? &budget : NULL,
    };
    inst->fn.vkGetPhysicalDeviceMemoryProperties2(phys, &mem);
    uint32_t n = mem.memoryProperties.memoryHeapCount;
    info->heap_count = n < VP_MAX_HEAPS ? n : VP_MAX_HEAPS;
    for (uint32_t i = 0; i < info->heap_count; i++) {
        const VkMemoryHeap *h = &mem.memoryProperties.memoryHeaps[i];
        info->heaps[i].size = h->size;
        info->heaps[i].device_local = (h->flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0;
        info->heaps[i].budget = info->memory_budget_ext ? budget.heapBudget[i] : h->size;
        info->heaps[i].usage = info->memory_budget_ext ? budget.heapUsage[i] : 0;
    }
    /* Unified: some host-visible, coherent type on the largest device-local heap. */
    uint32_t main_heap = 0;
    for (uint32_t i = 0; i < info->heap_count; i++)
        if (info->heaps[i].device_local &&
            (!info->heaps[main_heap].device_local || info->heaps[i].size > info->heaps[main_heap].size))
            main_heap = i;
    const VkMemoryPropertyFlags want = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                       VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                       VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    info->unified_memory = false;
    for (uint32_t t = 0; t < mem.memoryProperties.memoryTypeCount; t++) {
        const VkMemoryType *mt = &mem.memoryProperties.memoryTypes[t];
        if ((mt->propertyFlags & want) == want && mt->heapIndex == main_heap)
            info->unified_memory = true;
    }
}

static vp_status probe_extensions(struct vk_instance *inst, VkPhysicalDevice phys,
                                  vp_device_info *info, struct vk_features *feat) {
    uint32_t n = 0;
    VK_TRY(inst->fn.vkEnumerateDeviceExtensionProperties(phys, NULL, &n, NULL));
    VkExtensionProperties *exts = calloc(n ? n : 1, sizeof *exts);
    if (!exts) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory probing extensions");
    VkResult r = inst->fn.vkEnumerateDeviceExtensionProperties(phys, NULL, &n, exts);
    if (r != VK_SUCCESS) {
        free(exts);
        return VK_FAIL(r, "vkEnumerateDeviceExtensionProperties");
    }
    feat->memory_budget_ext = has_ext(exts, n, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    feat->subgroup_size_control_ext = has_ext(exts, n, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
    info->memory_budget_ext = feat->memory_budget_ext;
    info->cooperative_matrix = has_ext(exts, n, "VK_KHR_cooperative_matrix") ||
                               has_ext(exts, n, "VK_NV_cooperative_matrix");
    free(exts);
    return VP_OK;
}

static void probe_properties(struct vk_instance *inst, VkPhysicalDevice phys, vp_device_info *info,
                             const struct vk_features *feat) {
    VkPhysicalDeviceProperties base;
    inst->fn.vkGetPhysicalDeviceProperties(phys, &base);
    bool v12 = base.apiVersion >= VK_API_VERSION_1_2;
    bool v13 = base.apiVersion >= VK_API_VERSION_1_3;

    VkPhysicalDeviceSubgroupProperties subgroup = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
    };
    VkPhysicalDeviceSubgroupSizeControlProperties size_control = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES,
    };
    VkPhysicalDeviceDriverProperties driver = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES,
    };
    VkPhysicalDeviceProperties2 props = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
        .pNext = &subgroup,
    };
    void **tail = &subgroup.pNext;
    if (v13 || feat->subgroup_size_control_ext) {
        *tail = &size_control;
        tail = &size_control.pNext;
    }
    if (v12) *tail = &driver;
    inst->fn.vkGetPhysicalDeviceProperties2(phys, &props);

    const VkPhysicalDeviceLimits *lim = &base.limits;
    snprintf(info->name, sizeof info->name, "%s", base.deviceName);
    info->vendor_id = base.vendorID;
    info->device_id = base.deviceID;
    snprintf(info->vendor, sizeof info->vendor, "%s", vendor_name(base.vendorID));
    info->type = map_type(base.deviceType);
    info->api_version = base.apiVersion;
    if (v12)
        snprintf(info->driver, sizeof info->driver, "%s %s", driver.driverName, driver.driverInfo);
    else
        snprintf(info->driver, sizeof info->driver, "driver version 0x%x", base.driverVersion);
    info->subgroup_size = subgroup.subgroupSize;
    bool sized = (v13 || feat->subgroup_size_control_ext) && size_control.minSubgroupSize;
    info->subgroup_size_min = sized ? size_control.minSubgroupSize : subgroup.subgroupSize;
    info->subgroup_size_max = sized ? size_control.maxSubgroupSize : subgroup.subgroupSize;
    info->subgroup_ops = (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT)
                             ? map_subgroup_ops(subgroup.supportedOperations)
                             : 0;
    info->shared_memory = lim->maxComputeSharedMemorySize;
    info->max_workgroup_invocations = lim->maxComputeWorkGroupInvocations;
    for (int i = 0; i < 3; i++) {
        info->max_workgroup_size[i] = lim->maxComputeWorkGroupSize[i];
        info->max_workgroup_count[i] = lim->maxComputeWorkGroupCount[i];
    }
    info->max_push_constants = lim->maxPushConstantsSize;
    info->max_storage_buffer_range = lim->maxStorageBufferRange;
    info->min_storage_offset_alignment = lim->minStorageBufferOffsetAlignment;
    info->timestamp_period_ns = lim->timestampPeriod;
}

static void probe_features(struct vk_instance *inst, VkPhysicalDevice phys, vp_device_info *info,
                           struct vk_features *feat) {
    bool v12 = info->api_version >= VK_API_VERSION_1_2;
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
    };
    VkPhysicalDeviceShaderFloat16Int8Features f16i8 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
    };
    VkPhysicalDevice8BitStorageFeatures s8 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES,
    };
    VkPhysicalDeviceFeatures2 features = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &s16,
    };
    if (v12) {
        s16.pNext = &f16i8;
        f16i8.pNext = &s8;
    }
    inst->fn.vkGetPhysicalDeviceFeatures2(phys, &features);
    feat->storage_16bit = s16.storageBuffer16BitAccess;
    feat->fp16 = v12 && f16i8.shaderFloat16;
    feat->int8 = v12 && f16i8.shaderInt8;
    feat->storage_8bit = v12 && s8.storageBuffer8BitAccess;
    feat->int64 = features.features.shaderInt64;
    info->storage_16bit = feat->storage_16bit;
    info->fp16_arithmetic = feat->fp16;
    info->int8_arithmetic = feat->int8;
    info->storage_8bit = feat->storage_8bit;
    info->int64_arithmetic = feat->int64;
}

static void probe_queues(struct vk_instance *inst, VkPhysicalDevice phys, vp_device_info *info,
                         struct vk_features *feat) {
    uint32_t n = 0;
    inst->fn.vkGetPhysicalDeviceQueueFamilyProperties(phys, &n, NULL);
    VkQueueFamilyProperties q[32];
    if (n > 32) n = 32;
    inst->fn.vkGetPhysicalDeviceQueueFamilyProperties(phys, &n, q);
    /* Prefer a compute-only family (async compute on discrete GPUs), else any
     * family with compute. */
    uint32_t best = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) {
        if (!(q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) || q[i].queueCount == 0) continue;
        bool compute_only = !(q[i].queueFlags & VK_QUEUE_GRAPHICS_BIT);
        if (best == UINT32_MAX || (compute_only && (q[best].queueFlags & VK_QUEUE_GRAPHICS_BIT)))
            best = i;
    }
    feat->compute_queue_family = best;
    feat->timestamp_valid_bits = best == UINT32_MAX ? 0 : q[best].timestampValidBits;
    info->timestamps = feat->timestamp_valid_bits > 0;
}

vp_status vk_device_probe(struct vk_instance *inst, VkPhysicalDevice phys, uint32_t index,
                          vp_device_info *info, struct vk_features *feat) {
    memset(info, 0, sizeof *info);
    memset(feat, 0, sizeof *feat);
    info->index = index;
    vp_status s = probe_extensions(inst, phys, info, feat);
    if (s != VP_OK) return s;
    probe_properties(inst, phys, info, feat);
    probe_features(inst, phys, info, feat);
    probe_queues(inst, phys, info, feat);
    /* maxMemoryAllocationSize and maxBufferSize are core in 1.1 / 1.3. */
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
    };
    VkPhysicalDeviceMaintenance4Properties m4 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_4_PROPERTIES,
    };
    if (info->api_version >= VK_API_VERSION_1_3) m3.pNext = &m4;
    VkPhysicalDeviceProperties2 props = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
        .pNext = &m3,
    };
    inst->fn.vkGetPhysicalDeviceProperties2(phys, &props);
    info->max_memory_allocation = m3.maxMemoryAllocationSize;
    /* Without maintenance4 the spec guarantees buffers up to 2^31 bytes only
     * on some implementations; stay within the allocation size then. */
    info->max_buffer_size = info->api_version >= VK_API_VERSION_1_3 ? m4.maxBufferSize
                                                                    : m3.maxMemoryAllocationSize;
    vk_device_refresh_budget(inst, phys, info);
    return VP_OK;
}

static int type_rank(vp_device_type t) {
    switch (t) {
    case VP_DEVICE_DISCRETE: return 0;
    case VP_DEVICE_INTEGRATED: return 1;
    case VP_DEVICE_VIRTUAL: return 2;
    case VP_DEVICE_CPU: return 3;
    default: return 4;
    }
}

static bool contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return true;
    }
    return n == 0;
}

vp_status vk_device_choose(const vp_device_info *devs, uint32_t count, const char *selector,
                           uint32_t *chosen) {
    if (count == 0)
        return vp_fail(VP_ERROR_NO_DEVICE,
                       "no Vulkan device found; install a GPU driver, or "
                       "'apt-get install mesa-vulkan-drivers' for the CPU device (lavapipe)");
    if (selector && *selector) {
        char *end;
        unsigned long idx = strtoul(selector, &end, 10);
        if (*end == 0) {
            if (idx >= count)
                return vp_fail(VP_ERROR_NO_DEVICE,
                               "device %lu does not exist: there are %u devices (0..%u); "
                               "run 'vkpeft devices' to list them",
                               idx, count, count - 1);
            *chosen = (uint32_t)idx;
            return VP_OK;
        }
        for (uint32_t i = 0; i < count; i++)
            if (contains_ci(devs[i].name, selector)) {
                *chosen = i;
                return VP_OK;
            }
        return vp_fail(VP_ERROR_NO_DEVICE,
                       "no device matches '%s'; run 'vkpeft devices' to list them", selector);
    }
    uint32_t best = 0;
    for (uint32_t i = 1; i < count; i++)
        if (type_rank(devs[i].type) < type_rank(devs[best].type)) best = i;
    *chosen = best;
    return VP_OK;
}

vp_status vk_devices_probe_all(struct vk_instance *inst, struct vk_device_list *list) {
    memset(list, 0, sizeof *list);
    uint32_t n = 0;
    VK_TRY(inst->fn.vkEnumeratePhysicalDevices(inst->instance, &n, NULL));
    list->phys = calloc(n ? n : 1, sizeof *list->phys);
    list->infos = calloc(n ? n : 1, sizeof *list->infos);
    list->feats = calloc(n ? n : 1, sizeof *list->feats);
    if (!list->phys || !list->infos || !list->feats) {
        vk_device_list_free(list);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory listing devices");
    }
    VkResult r = inst->fn.vkEnumeratePhysicalDevices(inst->instance, &n, list->phys);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        vk_device_list_free(list);
        return VK_FAIL(r, "vkEnumeratePhysicalDevices");
    }
    list->count = n;
    for (uint32_t i = 0; i < n; i++) {
        vp_status s = vk_device_probe(inst, list->phys[i], i, &list->infos[i], &list->feats[i]);
        if (s != VP_OK) {
            vk_device_list_free(list);
            return s;
        }
    }
    return VP_OK;
}

void vk_device_list_free(struct vk_device_list *list) {
    free(list->phys);
    free(list->infos);
    free(list->feats);
    memset(list, 0, sizeof *list);
}

/* Enumerates and probes with a throwaway instance (no validation). */
vp_status vp_devices_list(const char *selector, vp_device_info **devices, uint32_t *count,
                          uint32_t *chosen) {
    *devices = NULL;
    *count = 0;
    struct vk_instance inst;
    vp_status s = vk_instance_create(&inst, false);
    if (s != VP_OK) return s;
    struct vk_device_list list;
    s = vk_devices_probe_all(&inst, &list);
    vk_instance_destroy(&inst);
    if (s != VP_OK) return s;
    uint32_t pick = UINT32_MAX;
    s = vk_device_choose(list.infos, list.count, selector ? selector : getenv("VKPEFT_DEVICE"),
                         &pick);
    if (list.count > 0) {
        /* An unmatched selector still lets the caller list what exists. */
        *devices = list.infos;
        list.infos = NULL;
        *count = list.count;
    }
    if (chosen) *chosen = s == VP_OK ? pick : UINT32_MAX;
    vk_device_list_free(&list);
    return s;
}
