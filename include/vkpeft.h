/* vkpeft — parameter-efficient fine-tuning on any Vulkan GPU.
 *
 * The public C API: opaque handles, status codes and option structs. Every
 * function returns a vp_status; on failure a human-readable message (what
 * failed, on which object, what to do) is left for vp_last_error(). The
 * library never exits the process.
 *
 *     vp_context_options opts = {0};          // zero means "default"
 *     vp_context *ctx;
 *     if (vp_context_create(&opts, &ctx) != VP_OK) {
 *         fprintf(stderr, "vkpeft: %s\n", vp_last_error());
 *         return 1;
 *     }
 *     const vp_device_info *dev = vp_context_device(ctx);
 *     printf("training on %s\n", dev->name);
 *     vp_context_destroy(ctx);
 *
 * Environment variables read when the matching option is left zero:
 *   VKPEFT_DEVICE=N|name   device index or case-insensitive name substring
 *   VKPEFT_VALIDATE=1      enable the Khronos validation layer
 *   VKPEFT_LIMITS=mobile   clamp the limits the runtime uses (see vp_limits)
 *   VKPEFT_MEMORY=unified|discrete   force a memory path
 *   VKPEFT_BUDGET=bytes    simulate a device with this much memory
 *   VKPEFT_VULKAN_LIBRARY=path       the Vulkan loader to open
 *   VKPEFT_MATMUL_TILES=BMxBNxBKxTMxTN   force the GPU matmul's tiles (tuning;
 *                          runtime/kernels/matmul.c, tools/gpu/matmul_sweep.sh)
 *   XDG_CACHE_HOME         shader cache lives in $XDG_CACHE_HOME/vkpeft
 */
#ifndef VKPEFT_H
#define VKPEFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only what this header declares is exported from the shared library. */
#if defined(__GNUC__)
#define VP_API __attribute__((visibility("default")))
#else
#define VP_API
#endif

#define VP_VERSION_MAJOR 0
#define VP_VERSION_MINOR 1
#define VP_VERSION_PATCH 0

/* Status codes. Values are only ever appended. */
typedef enum vp_status {
    VP_OK = 0,
    VP_ERROR_INVALID_ARGUMENT, /* a caller passed something unusable */
    VP_ERROR_NO_LOADER,        /* libvulkan.so.1 could not be opened */
    VP_ERROR_NO_DEVICE,        /* no Vulkan device, or none matched --device */
    VP_ERROR_VULKAN,           /* a Vulkan call failed */
    VP_ERROR_HOST_MEMORY,      /* malloc failed */
    VP_ERROR_OVER_BUDGET,      /* device memory request exceeds the budget */
    VP_ERROR_SHADER_COMPILE,   /* GLSL did not compile */
    VP_ERROR_IO,               /* a file could not be read or written */
    VP_ERROR_BAD_INPUT,        /* a file or value is malformed */
    VP_ERROR_UNSUPPORTED,      /* the device, or a file format feature, is not supported */
    VP_ERROR_DEVICE_LOST,      /* VK_ERROR_DEVICE_LOST */
    VP_ERROR_VALIDATION,       /* validation layer requested but missing */
} vp_status;

/* "VP_ERROR_OVER_BUDGET" and so on. */
VP_API const char *vp_status_name(vp_status status);

/* The message of the last failure on this thread ("" when none). */
VP_API const char *vp_last_error(void);

/* "0.1.0". */
VP_API const char *vp_version_string(void);

/* Number of validation-layer warnings and errors reported in this process
 * since it started (all contexts). Tests fail when it grows. */
VP_API uint64_t vp_validation_message_count(void);

/* ---- devices ------------------------------------------------------------ */

typedef enum vp_device_type {
    VP_DEVICE_OTHER = 0,
    VP_DEVICE_DISCRETE,
    VP_DEVICE_INTEGRATED,
    VP_DEVICE_VIRTUAL,
    VP_DEVICE_CPU,
} vp_device_type;

/* Subgroup operation bits, as the device reports them. */
enum {
    VP_SUBGROUP_BASIC = 1u << 0,
    VP_SUBGROUP_VOTE = 1u << 1,
    VP_SUBGROUP_ARITHMETIC = 1u << 2,
    VP_SUBGROUP_BALLOT = 1u << 3,
    VP_SUBGROUP_SHUFFLE = 1u << 4,
    VP_SUBGROUP_SHUFFLE_RELATIVE = 1u << 5,
    VP_SUBGROUP_CLUSTERED = 1u << 6,
    VP_SUBGROUP_QUAD = 1u << 7,
};

#define VP_MAX_HEAPS 16

typedef struct vp_memory_heap {
    uint64_t size;       /* bytes */
    uint64_t budget;     /* VK_EXT_memory_budget, else size */
    uint64_t usage;      /* VK_EXT_memory_budget, else 0 */
    bool device_local;
} vp_memory_heap;

/* What a physical device can do, as probed (before any limits profile). */
typedef struct vp_device_info {
    uint32_t index;
    char name[256];
    char vendor[32];           /* "NVIDIA", "AMD", "Intel", "Mesa", ... */
    uint32_t vendor_id, device_id;
    vp_device_type type;
    uint32_t api_version;      /* VK_MAKE_API_VERSION form */
    char driver[256];          /* driver name and info */
    bool fp16_arithmetic;      /* shaderFloat16 */
    bool storage_16bit;        /* storageBuffer16BitAccess */
    bool int8_arithmetic;      /* shaderInt8 */
    bool storage_8bit;         /* storageBuffer8BitAccess */
    bool int64_arithmetic;     /* shaderInt64 */
    uint32_t subgroup_size;    /* default subgroup size */
    uint32_t subgroup_size_min, subgroup_size_max; /* with size control, else = size */
    uint32_t subgroup_ops;     /* VP_SUBGROUP_* bits usable in compute */
    uint32_t shared_memory;    /* maxComputeSharedMemorySize, bytes */
    uint32_t max_workgroup_invocations;
    uint32_t max_workgroup_size[3];
    uint32_t max_workgroup_count[3];
    uint32_t max_push_constants;
    uint64_t max_storage_buffer_range;
    uint64_t max_memory_allocation;
    uint64_t max_buffer_size;
    uint64_t min_storage_offset_alignment;
    uint32_t heap_count;
    vp_memory_heap heaps[VP_MAX_HEAPS];
    bool memory_budget_ext;    /* VK_EXT_memory_budget present */
    bool unified_memory;       /* a device-local, host-visible, coherent type on the main heap */
    bool cooperative_matrix;   /* VK_KHR_cooperative_matrix or VK_NV_cooperative_matrix */
    bool timestamps;           /* compute queue has timestamps */
    float timestamp_period_ns;
} vp_device_info;

VP_API const char *vp_device_type_name(vp_device_type type);

/* Lists every Vulkan device. *devices is malloc'd (free with free()); *chosen
 * is the index the default rule (or `selector`, or VKPEFT_DEVICE) picks:
 * discrete > integrated > virtual > CPU, first of equals. `selector` may be
 * NULL. Fails with VP_ERROR_NO_LOADER or VP_ERROR_NO_DEVICE. */
VP_API vp_status vp_devices_list(const char *selector, vp_device_info **devices, uint32_t *count,
                          uint32_t *chosen);

/* ---- context -------------------------------------------------------------- */

typedef enum vp_limits_profile {
    VP_LIMITS_DEFAULT = 0, /* VKPEFT_LIMITS, else native */
    VP_LIMITS_NATIVE,
    /* 16 KiB shared memory, 128 invocations per workgroup, 128 MiB binding
     * range, subgroup size 8 without subgroup arithmetic, no 16-bit storage,
     * no fp16 arithmetic: what a mobile-class GPU guarantees. */
    VP_LIMITS_MOBILE,
} vp_limits_profile;

typedef enum vp_memory_path {
    VP_MEMORY_DEFAULT = 0, /* VKPEFT_MEMORY, else what the device has */
    VP_MEMORY_UNIFIED,     /* pools are mapped; the host writes them directly */
    VP_MEMORY_DISCRETE,    /* pools are device-only; data moves through staging copies */
} vp_memory_path;

typedef enum vp_toggle { VP_TOGGLE_DEFAULT = 0, VP_TOGGLE_ON, VP_TOGGLE_OFF } vp_toggle;

/* Zero means default for every field. */
typedef struct vp_context_options {
    const char *device;          /* index or name substring; NULL: VKPEFT_DEVICE, else best */
    vp_toggle validate;          /* default: VKPEFT_VALIDATE */
    vp_limits_profile limits;
    vp_memory_path memory;
    uint64_t budget_bytes;       /* device-local budget; 0: VKPEFT_BUDGET, else the heap's */
    uint64_t binding_range;      /* clamp the storage binding range further (tests); 0: none */
    const char *cache_dir;       /* NULL: $XDG_CACHE_HOME/vkpeft, else ~/.cache/vkpeft */
    vp_toggle shader_cache;      /* OFF: compile every shader, touch no cache files */
} vp_context_options;

typedef struct vp_context vp_context;

VP_API vp_status vp_context_create(const vp_context_options *options, vp_context **out);
/* Waits for the device, saves the pipeline cache, frees everything. NULL is fine. */
VP_API void vp_context_destroy(vp_context *ctx);

VP_API const vp_device_info *vp_context_device(const vp_context *ctx);

/* The limits the runtime actually uses on this context (probed ∩ profile). */
typedef struct vp_limits {
    vp_limits_profile profile;
    uint32_t shared_memory;
    uint32_t max_workgroup_invocations;
    uint64_t storage_buffer_range;
    uint32_t subgroup_size;
    bool subgroup_arithmetic;
    bool storage_16bit;
    bool fp16_arithmetic;
    bool int8_arithmetic;
    bool cooperative_matrix;
    bool unified_memory;         /* the memory path in use */
} vp_limits;

VP_API const vp_limits *vp_context_limits(const vp_context *ctx);

/* Counters that tests and benchmarks read. */
typedef struct vp_stats {
    uint64_t shaders_compiled;   /* GLSL -> SPIR-V compilations this context ran */
    uint64_t spirv_cache_hits;   /* SPIR-V loaded from the disk cache */
    uint64_t pipelines_created;
    uint64_t submissions;
    uint64_t dispatches_recorded;
    uint64_t barriers_recorded;
    double compile_seconds;      /* time spent in glslang */
} vp_stats;

VP_API void vp_context_stats(const vp_context *ctx, vp_stats *out);

/* ---- memory pools ----------------------------------------------------------- */

typedef enum vp_pool {
    VP_POOL_FROZEN = 0,  /* pretrained weights: uploaded once, never written */
    VP_POOL_TRAINABLE,   /* delta/head parameters, gradients, optimiser state */
    VP_POOL_ACTIVATIONS, /* per-step arena */
    VP_POOL_STAGING,     /* host-visible transfer memory */
    VP_POOL_COUNT
} vp_pool;

VP_API const char *vp_pool_name(vp_pool pool);

typedef struct vp_pool_stats {
    uint64_t in_use;       /* bytes held by live allocations, alignment padding included */
    uint64_t requested;    /* bytes callers asked for (live allocations) */
    uint64_t reserved;     /* bytes of VkDeviceMemory the pool holds */
    uint64_t peak_in_use;
    uint32_t allocations;  /* live allocations */
    uint32_t blocks;       /* VkDeviceMemory blocks */
} vp_pool_stats;

VP_API void vp_pool_stats_get(const vp_context *ctx, vp_pool pool, vp_pool_stats *out);

/* The budget the pools are checked against, in bytes, for device-local pools. */
VP_API uint64_t vp_context_budget(const vp_context *ctx);

#ifdef __cplusplus
}
#endif
#endif
