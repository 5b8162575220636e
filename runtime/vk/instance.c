/* Vulkan instance creation, with the Khronos validation layer on request. */
#include "vk.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t validation_messages;

uint64_t vp_validation_message_count(void) { return atomic_load(&validation_messages); }

static VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT type,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
    (void)user;
    /* Loader chatter (GENERAL) is printed but does not count: only the layer's
     * findings about our use of the API fail a test. */
    bool counts = (type & (VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT)) != 0;
    if (counts) atomic_fetch_add(&validation_messages, 1);
    fprintf(stderr, "vkpeft: validation %s: %s\n",
            severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? "error" : "warning",
            data && data->pMessage ? data->pMessage : "(no message)");
    return VK_FALSE;
}

static bool has_layer(struct vk_fns *fn, const char *name) {
    uint32_t n = 0;
    if (fn->vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
    VkLayerProperties *props = calloc(n, sizeof *props);
    if (!props) return false;
    bool found = false;
    if (fn->vkEnumerateInstanceLayerProperties(&n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(props[i].layerName, name) == 0;
    free(props);
    return found;
}

static bool has_instance_extension(struct vk_fns *fn, const char *layer, const char *name) {
    uint32_t n = 0;
    if (fn->vkEnumerateInstanceExtensionProperties(layer, &n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkExtensionProperties *props = calloc(n, sizeof *props);
    if (!props) return false;
    bool found = false;
    if (fn->vkEnumerateInstanceExtensionProperties(layer, &n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(props[i].extensionName, name) == 0;
    free(props);
    return found;
}

static const char *const validation_layer = "VK_LAYER_KHRONOS_validation";

vp_status vk_instance_create(struct vk_instance *inst, bool validation) {
    memset(inst, 0, sizeof *inst);
    vp_status s = vk_loader_open(&inst->fn, &inst->lib);
    if (s != VP_OK) return s;
    struct vk_fns *fn = &inst->fn;

    uint32_t loader_version = VK_API_VERSION_1_0;
    if (fn->vkEnumerateInstanceVersion) fn->vkEnumerateInstanceVersion(&loader_version);
    if (loader_version < VK_API_VERSION_1_1) {
        vk_instance_destroy(inst);
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "the Vulkan loader supports only Vulkan 1.0; vkpeft needs 1.1 or newer");
    }
    if (validation && !has_layer(fn, validation_layer)) {
        vk_instance_destroy(inst);
        return vp_fail(VP_ERROR_VALIDATION,
                       "validation was requested (VKPEFT_VALIDATE) but %s is not installed; "
                       "install it with 'apt-get install vulkan-validationlayers'",
                       validation_layer);
    }
    const char *exts[2];
    uint32_t ext_count = 0;
    bool debug_utils = validation && has_instance_extension(fn, validation_layer,
                                                            VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    if (debug_utils) exts[ext_count++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;

    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "vkpeft",
        .applicationVersion = VK_MAKE_API_VERSION(0, VP_VERSION_MAJOR, VP_VERSION_MINOR,
                                                  VP_VERSION_PATCH),
        .pEngineName = "vkpeft",
        .apiVersion = loader_version >= VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : loader_version,
    };
    /* VKPEFT_VALIDATE=sync also turns on synchronization validation, which
     * checks the barriers the recorder derives. */
    const char *env = getenv("VKPEFT_VALIDATE");
    VkValidationFeatureEnableEXT sync = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
    VkValidationFeaturesEXT features = {
        .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
        .enabledValidationFeatureCount = 1,
        .pEnabledValidationFeatures = &sync,
    };
    VkDebugUtilsMessengerCreateInfoEXT messenger_info = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_debug_message,
    };
    if (validation && env && strcmp(env, "sync") == 0) messenger_info.pNext = &features;
    VkInstanceCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        /* Chaining the messenger also reports problems in vkCreateInstance. */
        .pNext = debug_utils ? &messenger_info : NULL,
        .pApplicationInfo = &app,
        .enabledLayerCount = validation ? 1 : 0,
        .ppEnabledLayerNames = validation ? &validation_layer : NULL,
        .enabledExtensionCount = ext_count,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = fn->vkCreateInstance(&info, NULL, &inst->instance);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER) {
        vk_instance_destroy(inst);
        return vp_fail(VP_ERROR_NO_DEVICE,
                       "no Vulkan driver found (vkCreateInstance: VK_ERROR_INCOMPATIBLE_DRIVER); "
                       "install a GPU driver, or 'apt-get install mesa-vulkan-drivers' for the "
                       "CPU device (lavapipe); check VK_DRIVER_FILES / VK_ICD_FILENAMES");
    }
    if (r != VK_SUCCESS) {
        vk_instance_destroy(inst);
        return VK_FAIL(r, "vkCreateInstance");
    }
    vk_loader_pin_drivers();
    vk_loader_load_instance(fn, inst->instance);
    inst->validation = validation;
    if (debug_utils && fn->vkCreateDebugUtilsMessengerEXT) {
        messenger_info.pNext = NULL;
        r = fn->vkCreateDebugUtilsMessengerEXT(inst->instance, &messenger_info, NULL,
                                               &inst->messenger);
        if (r != VK_SUCCESS) {
            vk_instance_destroy(inst);
            return VK_FAIL(r, "vkCreateDebugUtilsMessengerEXT");
        }
    }
    return VP_OK;
}

void vk_instance_destroy(struct vk_instance *inst) {
    if (inst->messenger && inst->fn.vkDestroyDebugUtilsMessengerEXT)
        inst->fn.vkDestroyDebugUtilsMessengerEXT(inst->instance, inst->messenger, NULL);
    if (inst->instance && inst->fn.vkDestroyInstance)
        inst->fn.vkDestroyInstance(inst->instance, NULL);
    vk_loader_close(inst->lib);
    memset(inst, 0, sizeof *inst);
}
