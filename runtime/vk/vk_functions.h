/* The one list of Vulkan entry points the runtime uses.
 *
 * The loader (loader.c) expands these X-macros into the function-pointer table
 * and into the code that resolves each pointer, the way volk does: global
 * functions through vkGetInstanceProcAddr(NULL, ...), instance functions
 * through the instance, device functions through vkGetDeviceProcAddr so calls
 * skip the loader's trampoline. Adding a function is one line here. */
#ifndef VKPEFT_VK_FUNCTIONS_H
#define VKPEFT_VK_FUNCTIONS_H

#define VK_GLOBAL_FUNCTIONS(X)              \
    X(vkCreateInstance)                     \
    X(vkEnumerateInstanceExtensionProperties) \
    X(vkEnumerateInstanceLayerProperties)   \
    X(vkEnumerateInstanceVersion)

#define VK_INSTANCE_FUNCTIONS(X)                  \
    X(vkDestroyInstance)                          \
    X(vkEnumeratePhysicalDevices)                 \
    X(vkGetPhysicalDeviceProperties)              \
    X(vkGetPhysicalDeviceProperties2)             \
    X(vkGetPhysicalDeviceFeatures2)               \
    X(vkGetPhysicalDeviceMemoryProperties)        \
    X(vkGetPhysicalDeviceMemoryProperties2)       \
    X(vkGetPhysicalDeviceQueueFamilyProperties)   \
    X(vkEnumerateDeviceExtensionProperties)       \
    X(vkCreateDevice)                             \
    X(vkGetDeviceProcAddr)                        \
    X(vkCreateDebugUtilsMessengerEXT)             \
    X(vkDestroyDebugUtilsMessengerEXT)

#define VK_DEVICE_FUNCTIONS(X)                \
    X(vkDestroyDevice)                        \
    X(vkGetDeviceQueue)                       \
    X(vkDeviceWaitIdle)                       \
    X(vkQueueSubmit)                          \
    X(vkQueueWaitIdle)                        \
    X(vkAllocateMemory)                       \
    X(vkFreeMemory)                           \
    X(vkMapMemory)                            \
    X(vkUnmapMemory)                          \
    X(vkCreateBuffer)                         \
    X(vkDestroyBuffer)                        \
    X(vkCreateBufferView)                     \
    X(vkDestroyBufferView)                    \
    X(vkGetBufferMemoryRequirements)          \
    X(vkBindBufferMemory)                     \
    X(vkCreateShaderModule)                   \
    X(vkDestroyShaderModule)                  \
    X(vkCreatePipelineCache)                  \
    X(vkDestroyPipelineCache)                 \
    X(vkGetPipelineCacheData)                 \
    X(vkCreateComputePipelines)               \
    X(vkDestroyPipeline)                      \
    X(vkCreatePipelineLayout)                 \
    X(vkDestroyPipelineLayout)                \
    X(vkCreateDescriptorSetLayout)            \
    X(vkDestroyDescriptorSetLayout)           \
    X(vkCreateDescriptorPool)                 \
    X(vkDestroyDescriptorPool)                \
    X(vkAllocateDescriptorSets)               \
    X(vkResetDescriptorPool)                  \
    X(vkUpdateDescriptorSets)                 \
    X(vkCreateCommandPool)                    \
    X(vkDestroyCommandPool)                   \
    X(vkAllocateCommandBuffers)               \
    X(vkFreeCommandBuffers)                   \
    X(vkBeginCommandBuffer)                   \
    X(vkResetCommandBuffer)                   \
    X(vkEndCommandBuffer)                     \
    X(vkCmdBindPipeline)                      \
    X(vkCmdBindDescriptorSets)                \
    X(vkCmdPushConstants)                     \
    X(vkCmdDispatch)                          \
    X(vkCmdPipelineBarrier)                   \
    X(vkCmdCopyBuffer)                        \
    X(vkCmdFillBuffer)                        \
    X(vkCmdWriteTimestamp)                    \
    X(vkCmdResetQueryPool)                    \
    X(vkCreateQueryPool)                      \
    X(vkDestroyQueryPool)                     \
    X(vkGetQueryPoolResults)                  \
    X(vkCreateFence)                          \
    X(vkDestroyFence)                         \
    X(vkResetFences)                          \
    X(vkWaitForFences)

#endif
