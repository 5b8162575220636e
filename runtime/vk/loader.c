/* Run-time loading of Vulkan entry points, the volk way: no link-time
 * dependency on libvulkan, so a machine without Vulkan gets a message
 * instead of a dynamic-linker failure. */
#include "vk.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vp_status vk_loader_open(struct vk_fns *fns, void **lib) {
    const char *path = getenv("VKPEFT_VULKAN_LIBRARY");
    if (!path || !*path) path = "libvulkan.so.1";
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return vp_fail(VP_ERROR_NO_LOADER,
                       "cannot load the Vulkan loader %s (%s); install it with "
                       "'apt-get install libvulkan1 mesa-vulkan-drivers'",
                       path, dlerror());
    fns->vkGetInstanceProcAddr = (PFN_vkGetInstanceProcAddr)dlsym(h, "vkGetInstanceProcAddr");
    if (!fns->vkGetInstanceProcAddr) {
        dlclose(h);
        return vp_fail(VP_ERROR_NO_LOADER, "%s has no vkGetInstanceProcAddr; is it a Vulkan loader?",
                       path);
    }
#define VK_LOAD_GLOBAL(name) fns->name = (PFN_##name)fns->vkGetInstanceProcAddr(NULL, #name);
    VK_GLOBAL_FUNCTIONS(VK_LOAD_GLOBAL)
#undef VK_LOAD_GLOBAL
    if (!fns->vkCreateInstance || !fns->vkEnumerateInstanceExtensionProperties ||
        !fns->vkEnumerateInstanceLayerProperties) {
        dlclose(h);
        return vp_fail(VP_ERROR_NO_LOADER, "the Vulkan loader %s lacks vkCreateInstance", path);
    }
    *lib = h;
    return VP_OK;
}

/* Marks one loaded object never to be unloaded (RTLD_NOLOAD promotes the
 * flags of an object already loaded; nothing new is loaded). */
static int pin_object(struct dl_phdr_info *info, size_t size, void *user) {
    (void)size;
    (void)user;
    if (info->dlpi_name && info->dlpi_name[0]) dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
    return 0;
}

void vk_loader_pin_drivers(void) { dl_iterate_phdr(pin_object, NULL); }

void vk_loader_close(void *lib) {
    if (lib) dlclose(lib);
}

void vk_loader_load_instance(struct vk_fns *fns, VkInstance instance) {
#define VK_LOAD_INSTANCE(name) fns->name = (PFN_##name)fns->vkGetInstanceProcAddr(instance, #name);
    VK_INSTANCE_FUNCTIONS(VK_LOAD_INSTANCE)
#undef VK_LOAD_INSTANCE
}

vp_status vk_loader_load_device(struct vk_fns *fns, VkDevice device) {
#define VK_LOAD_DEVICE(name)                                                     \
    fns->name = (PFN_##name)fns->vkGetDeviceProcAddr(device, #name);             \
    if (!fns->name)                                                              \
        return vp_fail(VP_ERROR_UNSUPPORTED, "the Vulkan driver does not provide %s", #name);
    VK_DEVICE_FUNCTIONS(VK_LOAD_DEVICE)
#undef VK_LOAD_DEVICE
    return VP_OK;
}

const char *vk_result_name(VkResult r) {
    switch (r) {
#define R(x) case x: return #x;
    R(VK_SUCCESS) R(VK_NOT_READY) R(VK_TIMEOUT) R(VK_INCOMPLETE)
    R(VK_ERROR_OUT_OF_HOST_MEMORY) R(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    R(VK_ERROR_INITIALIZATION_FAILED) R(VK_ERROR_DEVICE_LOST) R(VK_ERROR_MEMORY_MAP_FAILED)
    R(VK_ERROR_LAYER_NOT_PRESENT) R(VK_ERROR_EXTENSION_NOT_PRESENT)
    R(VK_ERROR_FEATURE_NOT_PRESENT) R(VK_ERROR_INCOMPATIBLE_DRIVER)
    R(VK_ERROR_TOO_MANY_OBJECTS) R(VK_ERROR_FORMAT_NOT_SUPPORTED)
    R(VK_ERROR_FRAGMENTED_POOL) R(VK_ERROR_OUT_OF_POOL_MEMORY)
    R(VK_ERROR_INVALID_EXTERNAL_HANDLE) R(VK_ERROR_FRAGMENTATION)
    R(VK_ERROR_UNKNOWN)
#undef R
    default: return "VK_ERROR_(unnamed)";
    }
}

vp_status vk_fail_result(VkResult r, const char *call, const char *file, int line) {
    vp_status s = VP_ERROR_VULKAN;
    const char *hint = "";
    if (r == VK_ERROR_DEVICE_LOST) {
        s = VP_ERROR_DEVICE_LOST;
        hint = "; the GPU reset or the driver crashed: resume from the last checkpoint";
    } else if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) {
        hint = "; lower --batch or --max-len, or use --weights f16";
    }
    return vp_fail(s, "%s failed with %s (%s:%d)%s", call, vk_result_name(r), file, line, hint);
}

/* VKPEFT_TEST_FAULT="site:k" (tests only): the k-th call at `site` fails
 * with `r` instead of calling Vulkan, so tests can check how a lost device
 * or a failed allocation is reported. Sites: "submit", "alloc". */
VkResult vk_test_fault(const char *site, VkResult r) {
    static unsigned long calls[2];
    const char *e = getenv("VKPEFT_TEST_FAULT");
    if (!e || !*e) return VK_SUCCESS;
    const size_t n = strlen(site);
    if (strncmp(e, site, n) != 0 || e[n] != ':') return VK_SUCCESS;
    const int slot = strcmp(site, "submit") == 0 ? 0 : 1;
    return ++calls[slot] == strtoul(e + n + 1, NULL, 10) ? r : VK_SUCCESS;
}
