/* The Vulkan layer's internal interface: loader, device, pools, shaders,
 * pipelines and the command recorder. Layers above (kernels, model, train)
 * use only what is declared here and in include/vkpeft.h. */
#ifndef VKPEFT_VK_H
#define VKPEFT_VK_H

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include "util.h"
#include "vk_functions.h"
#include "vkpeft.h"

/* ---- loader (loader.c) ----------------------------------------------------- */

/* Function-pointer table filled in three steps: global, instance, device. */
struct vk_fns {
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
#define VK_FN_MEMBER(name) PFN_##name name;
    VK_GLOBAL_FUNCTIONS(VK_FN_MEMBER)
    VK_INSTANCE_FUNCTIONS(VK_FN_MEMBER)
    VK_DEVICE_FUNCTIONS(VK_FN_MEMBER)
#undef VK_FN_MEMBER
};

/* Opens the system loader (VKPEFT_VULKAN_LIBRARY, else libvulkan.so.1) and
 * resolves the global functions. *lib is the dlopen handle. */
vp_status vk_loader_open(struct vk_fns *fns, void **lib);
void vk_loader_close(void *lib);
/* Keeps every shared object loaded now (the loader, the drivers and layers
 * vkCreateInstance opened) loaded for the life of the process. The loader
 * unloads its drivers when an instance is destroyed; NVIDIA's driver then
 * fails to load again after about ten instances in one process ("Could not
 * get 'vkCreateInstance' via 'vk_icdGetInstanceProcAddr'"), seen on an H200
 * with driver 580.159.04. volk likewise never unloads the loader. */
void vk_loader_pin_drivers(void);
/* Instance functions. Optional ones (debug utils) may stay NULL. */
void vk_loader_load_instance(struct vk_fns *fns, VkInstance instance);
/* Device functions; fails naming the first missing one. */
vp_status vk_loader_load_device(struct vk_fns *fns, VkDevice device);

/* "VK_ERROR_OUT_OF_DEVICE_MEMORY". */
const char *vk_result_name(VkResult r);
/* vp_fail() for a failed Vulkan call: names the call, the result and where. */
vp_status vk_fail_result(VkResult r, const char *call, const char *file, int line);
/* Test-only fault injection (VKPEFT_TEST_FAULT="submit:k" or "alloc:k"):
 * returns r for the k-th call at `site`, VK_SUCCESS otherwise. */
VkResult vk_test_fault(const char *site, VkResult r);
#define VK_FAIL(r, call) vk_fail_result((r), (call), __FILE__, __LINE__)
/* Evaluates a Vulkan call; on failure returns a status from the enclosing function. */
#define VK_TRY(expr)                                    \
    do {                                                \
        VkResult vk_try_r_ = (expr);                    \
        if (vk_try_r_ != VK_SUCCESS) return VK_FAIL(vk_try_r_, #expr); \
    } while (0)

/* ---- instance and devices (instance.c, device.c) --------------------------------- */

/* An instance with the functions to use it. Validation adds the Khronos layer
 * and a messenger that counts warnings and errors (vp_validation_message_count). */
struct vk_instance {
    struct vk_fns fn;
    void *lib;
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    bool validation;
};

vp_status vk_instance_create(struct vk_instance *inst, bool validation);
void vk_instance_destroy(struct vk_instance *inst);

/* Probes one physical device into `info` and `feat` (features we may enable). */
struct vk_features {
    bool storage_16bit, fp16, int8, storage_8bit, int64;
    bool memory_budget_ext, subgroup_size_control_ext;
    uint32_t compute_queue_family;
    uint32_t timestamp_valid_bits;
};
vp_status vk_device_probe(struct vk_instance *inst, VkPhysicalDevice phys, uint32_t index,
                          vp_device_info *info, struct vk_features *feat);
/* Every physical device of an instance, probed. */
struct vk_device_list {
    VkPhysicalDevice *phys;
    vp_device_info *infos;
    struct vk_features *feats;
    uint32_t count;
};
vp_status vk_devices_probe_all(struct vk_instance *inst, struct vk_device_list *list);
void vk_device_list_free(struct vk_device_list *list);
/* Index chosen from `selector` ("N" or name substring, NULL = best). */
vp_status vk_device_choose(const vp_device_info *devs, uint32_t count, const char *selector,
                           uint32_t *chosen);
/* Re-reads heap budgets (VK_EXT_memory_budget) into info->heaps. */
void vk_device_refresh_budget(struct vk_instance *inst, VkPhysicalDevice phys,
                              vp_device_info *info);

/* ---- memory pools (pool.c) ----------------------------------------------------- */

/* A piece of a pool: a sub-range of one block's VkBuffer. The pool owns the
 * memory; whoever called vk_buffer_alloc frees the piece with vk_buffer_free. */
struct vk_buffer {
    VkBuffer buffer;      /* the block's buffer (shared with other pieces) */
    VkDeviceSize offset;  /* within that buffer, aligned to vk_pool_alignment */
    VkDeviceSize size;    /* what the caller asked for */
    void *host;           /* mapped pointer when the pool is host-accessible, else NULL */
    vp_pool pool;
    uint32_t block;
};

struct vk_free_range {
    VkDeviceSize offset, size;
};

struct vk_block {
    VkDeviceMemory memory;
    VkBuffer buffer;
    VkDeviceSize size;
    void *mapped;
    struct vk_free_range *free; /* sorted by offset, coalesced */
    uint32_t free_count, free_cap;
};

struct vk_pool {
    vp_pool id;
    uint32_t memory_type;
    uint32_t heap;
    bool host_access;          /* pieces are mapped for the host */
    VkDeviceSize block_size;   /* default size of a new block */
    struct vk_block *blocks;
    uint32_t block_count, block_cap;
    vp_pool_stats stats;
};

/* Every piece's offset and padded size are multiples of this. */
VkDeviceSize vk_pool_alignment(const vp_context *ctx);

vp_status vk_pools_init(vp_context *ctx);
void vk_pools_finish(vp_context *ctx);

/* Allocates `size` bytes (> 0) from `pool`. Fails with VP_ERROR_OVER_BUDGET
 * and the numbers when the pool would need more memory than the budget. */
vp_status vk_buffer_alloc(vp_context *ctx, vp_pool pool, VkDeviceSize size, struct vk_buffer *out);
void vk_buffer_free(vp_context *ctx, struct vk_buffer *buf);

/* Checks a whole plan (bytes per pool, on top of what is reserved now)
 * against the budget before anything is allocated, then reserves it: one
 * block per pool, or equal blocks no larger than the device's largest
 * allocation when the pool's plan is larger. Over the budget, nothing is
 * allocated and the message lists every pool. */
vp_status vk_pools_reserve(vp_context *ctx, const uint64_t bytes[VP_POOL_COUNT]);
/* Frees blocks that hold no pieces. */
void vk_pools_trim(vp_context *ctx);

/* Host <-> buffer transfers. Unified path: memcpy through the mapping.
 * Discrete path: through a staging piece and a one-off copy submission. */
vp_status vk_buffer_write(vp_context *ctx, const struct vk_buffer *dst, VkDeviceSize offset,
                          const void *data, VkDeviceSize size);
vp_status vk_buffer_read(vp_context *ctx, const struct vk_buffer *src, VkDeviceSize offset,
                         void *data, VkDeviceSize size);

/* Splits [0, buf->size) into binding ranges no longer than the context's
 * storage binding range, each a multiple of `granule` bytes (the element or
 * vector size) and starting on an alignment the device accepts. Returns the
 * number of ranges; writes at most `max` of them. */
struct vk_range {
    VkDeviceSize offset, size;
};
uint32_t vk_buffer_ranges(const vp_context *ctx, const struct vk_buffer *buf, VkDeviceSize granule,
                          struct vk_range *ranges, uint32_t max);

/* ---- shaders and pipelines (shader.c, pipeline.c) -------------------------------- */

/* A GLSL source embedded at build time (shaders_embedded.c, generated). */
struct vk_shader_source {
    const char *name; /* "scale_add.comp", "common.glsl" */
    const char *text;
};
extern const struct vk_shader_source vk_shader_sources[];
extern const unsigned vk_shader_source_count;
const struct vk_shader_source *vk_shader_find(const char *name);

/* Compiles GLSL (a compute shader) to SPIR-V, going through the disk cache.
 * `defines` is "NAME=VALUE\n..." or NULL; the per-device defines are added.
 * On a compile error: VP_ERROR_SHADER_COMPILE with the shader name and the
 * compiler's line-numbered message. *spirv is malloc'd. */
vp_status vk_shader_compile(vp_context *ctx, const char *name, const char *source,
                            const char *defines, uint32_t **spirv, size_t *words);

/* How a kernel's pipeline is built: bindings 0..n-1 in set 0, storage
 * buffers unless `texel` names a format for them. */
#define VK_MAX_BINDINGS 12
#define VK_MAX_SPEC 8
struct vk_kernel_desc {
    const char *shader;       /* file name in shaders/ */
    const char *defines;      /* extra "NAME=VALUE\n" lines, or NULL */
    uint32_t bindings;
    uint32_t push_size;       /* bytes of push constants */
    uint32_t spec_count;      /* specialization constants: ids 0..spec_count-1 */
    uint32_t spec[VK_MAX_SPEC];
    /* Binding i is a uniform texel buffer (GLSL `textureBuffer` /
     * `utextureBuffer`, read with texelFetch) viewed with format texel[i]
     * when that is not VK_FORMAT_UNDEFINED (0, the default: a storage
     * buffer). Formats: one of vk_texel_format_size's. The recorder makes
     * the VkBufferView; the binding is read-only (declare VK_ACCESS_READ). */
    VkFormat texel[VK_MAX_BINDINGS];
};

/* Bytes per texel of a texel-binding format: 16 for R32G32B32A32_SFLOAT /
 * _UINT, 4 for R32_SFLOAT / R32_UINT (every one has mandatory uniform texel
 * buffer support), 0 for any other format. */
uint32_t vk_texel_format_size(VkFormat format);
/* The longest texel-binding range in bytes for `format`: the storage binding
 * range (so one split rule serves both kinds of binding, and
 * vp_context_options.binding_range clamps both) capped by
 * maxTexelBufferElements texels, kept a multiple of the binding alignment. */
VkDeviceSize vk_texel_range(const vp_context *ctx, VkFormat format);

struct vk_pipeline {
    uint64_t key;
    VkShaderModule module;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout layout;
    VkPipeline pipeline;
    uint32_t bindings, push_size;
    VkFormat texel[VK_MAX_BINDINGS]; /* as in the desc: UNDEFINED = storage buffer */
    char name[64];
    /* The shader without ".comp" and its defines on one line, for profiles:
     * "matmul_tiled TRANS_A=1 TRANS_B=0 B_TYPE=1 ...". */
    char label[256];
};

/* Returns the context's pipeline for `desc`, creating it on first use. The
 * context owns it (freed at vp_context_destroy). */
vp_status vk_pipeline_get(vp_context *ctx, const struct vk_kernel_desc *desc,
                          struct vk_pipeline **out);
void vk_pipelines_finish(vp_context *ctx);

vp_status vk_pipeline_cache_load(vp_context *ctx);
void vk_pipeline_cache_save(vp_context *ctx);

/* ---- recorder (recorder.c) ------------------------------------------------------- */

enum vk_access { VK_ACCESS_READ = 1, VK_ACCESS_WRITE = 2, VK_ACCESS_READ_WRITE = 3 };

/* One binding of a dispatch and how the dispatch uses it.
 * size 0 means "from offset to the end of the piece". For a texel binding
 * (the pipeline's desc gave it a format) the view covers the range rounded up
 * to whole texels, which stays inside the piece's padded allocation when the
 * range ends at the piece's end (pieces are padded to 16 bytes); offset must
 * be a multiple of the texel size. Views are made by the recorder and live
 * until the recording is restarted or destroyed. */
struct vk_bind {
    const struct vk_buffer *buf;
    VkDeviceSize offset, size;
    enum vk_access access;
};

struct vk_recorder;

enum { VK_RECORDER_TIMESTAMPS = 1 };

vp_status vk_recorder_create(vp_context *ctx, uint32_t flags, struct vk_recorder **out);
void vk_recorder_destroy(struct vk_recorder *rec);
/* Starts (or restarts) recording; everything recorded before is dropped. */
vp_status vk_recorder_begin(struct vk_recorder *rec);
vp_status vk_recorder_dispatch(struct vk_recorder *rec, struct vk_pipeline *pipe,
                               const struct vk_bind *binds, uint32_t bind_count, const void *push,
                               uint32_t groups_x, uint32_t groups_y, uint32_t groups_z);
vp_status vk_recorder_copy(struct vk_recorder *rec, const struct vk_buffer *dst,
                           VkDeviceSize dst_offset, const struct vk_buffer *src,
                           VkDeviceSize src_offset, VkDeviceSize size);
/* Fills [offset, offset+size) with a 32-bit pattern (size a multiple of 4). */
vp_status vk_recorder_fill(struct vk_recorder *rec, const struct vk_buffer *dst,
                           VkDeviceSize offset, VkDeviceSize size, uint32_t value);
vp_status vk_recorder_end(struct vk_recorder *rec);
/* Submits the recording once and waits for it. A recording may be run any
 * number of times; inputs written between runs are seen by the next run. */
vp_status vk_recorder_run(struct vk_recorder *rec);

/* Barriers the recording holds between its commands (not the ones that
 * open and close it). */
uint32_t vk_recorder_barrier_count(const struct vk_recorder *rec);
uint32_t vk_recorder_dispatch_count(const struct vk_recorder *rec);
/* Per-command GPU time of the last run in ns (timestamps flag). Returns the
 * number of commands written to `ns`, or 0 without timestamps. Command i's
 * time runs from the timestamp written after command i-1 (before the first
 * command: at the top of the pipe) to the one written after command i, at
 * the stage that command runs in: the times add up to the recording's GPU
 * span, and commands that overlap (no barrier between them) share it. */
uint32_t vk_recorder_timings(const struct vk_recorder *rec, double *ns, uint32_t max);

/* Names the recording site of the commands that follow ("lora backward";
 * a string that outlives the recorder's commands, or NULL for none) and
 * returns the previous name, for the caller to restore. Kept per command
 * only with timestamps; vk_recorder_begin clears it. */
const char *vk_recorder_label(struct vk_recorder *rec, const char *site);
/* What each command of a timestamped recording is: its kernel (a
 * pipeline's label, or "copy", "fill"; the pipeline lives as long as the
 * context) and the site named when it was recorded. Returns the number of
 * commands (the same order as vk_recorder_timings), 0 without timestamps. */
struct vk_command_info {
    const char *kernel;
    const char *site;   /* NULL: none named */
    uint64_t groups;    /* workgroups of a dispatch; 0: a copy or fill */
    bool after_barrier; /* the recorder put a barrier right before it */
};
uint32_t vk_recorder_command_infos(const struct vk_recorder *rec, const struct vk_command_info **infos);

/* One-off command helper used by transfers: records with `fn`, runs, waits. */
vp_status vk_run_once(vp_context *ctx, vp_status (*fn)(struct vk_recorder *, void *), void *arg);

/* ---- profiles (profile.c) --------------------------------------------------------- */

/* One recording's GPU time grouped by (site, kernel). */
struct vk_profile_row {
    const char *site;   /* vk_recorder_label's name, NULL for none */
    const char *kernel; /* a pipeline's label, "copy" or "fill" */
    uint32_t calls;
    uint32_t barriers;  /* calls that waited on a barrier right before them */
    uint64_t groups;    /* workgroups of all calls */
    double total_ns;
};
struct vk_profile {
    struct vk_profile_row *rows; /* largest total first (owned) */
    uint32_t count;
    uint32_t commands;   /* dispatches + transfers */
    uint32_t dispatches, transfers, barriers;
    double gpu_ns;       /* the commands' times summed: first timestamp to last */
    double wall_ns;      /* the profiled run: submission to the fence */
};

/* Runs `rec` (created with VK_RECORDER_TIMESTAMPS, ended) once and fills
 * `out` from its timestamps. The rows refer to the context's pipelines and
 * to the sites' strings. Free with vk_profile_finish. */
vp_status vk_profile_run(struct vk_recorder *rec, struct vk_profile *out);
/* VP_OK when ctx's device can profile: timestamps on its compute queue
 * (timestampValidBits > 0) and a timestampPeriod; else
 * VP_ERROR_UNSUPPORTED naming the device (a tool checks before it runs). */
vp_status vk_profile_check(const vp_context *ctx);
/* Records fn(user, rec) into a timestamped recorder of its own, profiles
 * one run of it (vk_profile_run) and destroys the recorder; first
 * vk_profile_check's refusal. */
vp_status vk_profile_record(vp_context *ctx, vp_status (*fn)(void *user, struct vk_recorder *rec), void *user,
                            struct vk_profile *out);
void vk_profile_finish(struct vk_profile *p);

/* ---- the context ------------------------------------------------------------------ */

struct vk_pipeline_table {
    struct vk_pipeline **items;
    uint32_t count, cap;
};

struct vp_context {
    struct vk_instance inst;
    struct vk_fns *fn; /* = &inst.fn */
    VkPhysicalDevice phys;
    vp_device_info info;
    struct vk_features feat;
    vp_limits limits;
    VkDeviceSize binding_alignment;
    uint64_t texel_max_elements;   /* maxTexelBufferElements (set by vk_pools_init) */
    VkDeviceSize texel_alignment;  /* minTexelBufferOffsetAlignment (set by vk_pools_init) */

    VkDevice device;
    VkQueue queue;
    VkCommandPool command_pool;
    VkFence fence;
    VkPipelineCache pipeline_cache;

    struct vk_pool pools[VP_POOL_COUNT];
    uint64_t budget;
    struct vk_recorder *transfer; /* reused for vk_buffer_read/write on the discrete path */

    char cache_dir[1024];
    bool use_cache;
    char device_defines[512];
    struct vk_pipeline_table pipelines;
    vp_stats stats;
};

#endif
