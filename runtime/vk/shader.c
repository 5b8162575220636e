/* GLSL -> SPIR-V at run time with glslang's C API, behind a disk cache.
 *
 * The source a shader is compiled from is its embedded text with includes
 * expanded and the per-device and per-kernel defines inserted after
 * #version; the cache key hashes that whole text with the compiler version
 * and the SPIR-V target, so any change to a source, a header, a define or
 * glslang yields a new key. Cache files are written atomically. */
#define _POSIX_C_SOURCE 200809L
#include "vk.h"

#include <glslang/Include/glslang_c_interface.h>
#include <glslang/Public/resource_limits_c.h>
#include <glslang/build_info.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_FORMAT 1
#define MAX_INCLUDE_DEPTH 8

const struct vk_shader_source *vk_shader_find(const char *name) {
    for (unsigned i = 0; i < vk_shader_source_count; i++)
        if (strcmp(vk_shader_sources[i].name, name) == 0) return &vk_shader_sources[i];
    return NULL;
}

/* A growable string. */
struct text {
    char *s;
    size_t len, cap;
    bool oom;
};

static void text_add(struct text *t, const char *s, size_t n) {
    if (t->oom) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *ns = realloc(t->s, cap);
        if (!ns) {
            t->oom = true;
            return;
        }
        t->s = ns;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = 0;
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) text_add(t, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* "NAME=VALUE\n..." -> "#define NAME VALUE\n..." */
static void add_defines(struct text *t, const char *defines) {
    for (const char *p = defines; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (n > 0) {
            text_add(t, "#define ", 8);
            if (eq) {
                text_add(t, p, (size_t)(eq - p));
                text_add(t, " ", 1);
                text_add(t, eq + 1, n - (size_t)(eq - p) - 1);
            } else {
                text_add(t, p, n);
            }
            text_add(t, "\n", 1);
        }
        p = nl ? nl + 1 : p + n;
    }
}

/* Copies `src` (named `name`) into t, replacing #include "x" lines by the
 * embedded file x, with #line directives so messages name the right file. */
static vp_status expand(struct text *t, const char *name, const char *src, int first_line,
                        int depth) {
    if (depth > MAX_INCLUDE_DEPTH)
        return vp_fail(VP_ERROR_SHADER_COMPILE, "shader %s: includes nest deeper than %d", name,
                       MAX_INCLUDE_DEPTH);
    int line = first_line;
    for (const char *p = src; *p; line++) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        const char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        if (strncmp(q, "#include", 8) == 0) {
            const char *a = strchr(q, '"'), *b = a ? strchr(a + 1, '"') : NULL;
            if (!a || !b || (nl && b > nl))
                return vp_fail(VP_ERROR_SHADER_COMPILE, "shader %s:%d: malformed #include", name,
                               line);
            char inc[128];
            snprintf(inc, sizeof inc, "%.*s", (int)(b - a - 1), a + 1);
            const struct vk_shader_source *h = vk_shader_find(inc);
            if (!h)
                return vp_fail(VP_ERROR_SHADER_COMPILE,
                               "shader %s:%d: included file '%s' is not in shaders/", name, line,
                               inc);
            text_printf(t, "#line 1 \"%s\"\n", inc);
            vp_status s = expand(t, inc, h->text, 1, depth + 1);
            if (s != VP_OK) return s;
            text_printf(t, "\n#line %d \"%s\"\n", line + 1, name);
        } else {
            text_add(t, p, n);
        }
        p += n;
    }
    return VP_OK;
}

/* The full text glslang compiles: #version, line-directive extension,
 * defines, then the expanded source. */
static vp_status build_source(vp_context *ctx, const char *name, const char *source,
                              const char *defines, struct text *t) {
    const char *p = source;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (strncmp(p, "#version", 8) != 0)
        return vp_fail(VP_ERROR_SHADER_COMPILE, "shader %s: the first line must be #version", name);
    const char *nl = strchr(p, '\n');
    if (!nl) return vp_fail(VP_ERROR_SHADER_COMPILE, "shader %s: nothing after #version", name);
    int version_line = 1;
    for (const char *c = source; c < p; c++) version_line += *c == '\n';
    text_add(t, p, (size_t)(nl - p) + 1);
    text_add(t, "#extension GL_GOOGLE_cpp_style_line_directive : require\n", 56);
    add_defines(t, ctx->device_defines);
    add_defines(t, defines);
    text_printf(t, "#line %d \"%s\"\n", version_line + 1, name);
    vp_status s = expand(t, name, nl + 1, version_line + 1, 0);
    if (s == VP_OK && t->oom) s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for shader %s", name);
    return s;
}

static pthread_once_t glslang_once = PTHREAD_ONCE_INIT;
static int glslang_ready;

static void glslang_init(void) { glslang_ready = glslang_initialize_process(); }

static vp_status compile_glsl(vp_context *ctx, const char *name, const char *text, uint32_t **spirv,
                              size_t *words) {
    pthread_once(&glslang_once, glslang_init);
    if (!glslang_ready) return vp_fail(VP_ERROR_SHADER_COMPILE, "glslang failed to initialise");
    double t0 = vp_now();
    glslang_input_t input = {
        .language = GLSLANG_SOURCE_GLSL,
        .stage = GLSLANG_STAGE_COMPUTE,
        .client = GLSLANG_CLIENT_VULKAN,
        .client_version = GLSLANG_TARGET_VULKAN_1_1,
        .target_language = GLSLANG_TARGET_SPV,
        .target_language_version = GLSLANG_TARGET_SPV_1_3,
        .code = text,
        .default_version = 450,
        .default_profile = GLSLANG_NO_PROFILE,
        .messages = GLSLANG_MSG_DEFAULT_BIT | GLSLANG_MSG_SPV_RULES_BIT | GLSLANG_MSG_VULKAN_RULES_BIT,
        .resource = glslang_default_resource(),
    };
    glslang_shader_t *shader = glslang_shader_create(&input);
    glslang_program_t *program = NULL;
    vp_status s = VP_OK;
    if (!shader) return vp_fail(VP_ERROR_HOST_MEMORY, "glslang could not create a shader");
    if (!glslang_shader_preprocess(shader, &input) || !glslang_shader_parse(shader, &input)) {
        s = vp_fail(VP_ERROR_SHADER_COMPILE, "shader %s failed to compile:\n%s", name,
                    glslang_shader_get_info_log(shader));
        goto done;
    }
    program = glslang_program_create();
    glslang_program_add_shader(program, shader);
    if (!glslang_program_link(program, GLSLANG_MSG_SPV_RULES_BIT | GLSLANG_MSG_VULKAN_RULES_BIT)) {
        s = vp_fail(VP_ERROR_SHADER_COMPILE, "shader %s failed to link:\n%s", name,
                    glslang_program_get_info_log(program));
        goto done;
    }
    glslang_program_SPIRV_generate(program, GLSLANG_STAGE_COMPUTE);
    const char *msg = glslang_program_SPIRV_get_messages(program);
    if (msg && *msg) {
        s = vp_fail(VP_ERROR_SHADER_COMPILE, "shader %s: SPIR-V generation: %s", name, msg);
        goto done;
    }
    size_t n = glslang_program_SPIRV_get_size(program);
    *spirv = malloc(n * sizeof **spirv);
    if (!*spirv) {
        s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory for shader %s", name);
        goto done;
    }
    glslang_program_SPIRV_get(program, *spirv);
    *words = n;
    ctx->stats.shaders_compiled++;
done:
    if (program) glslang_program_delete(program);
    glslang_shader_delete(shader);
    ctx->stats.compile_seconds += vp_now() - t0;
    return s;
}

/* ---- the SPIR-V disk cache ---------------------------------------------------------- */

struct cache_header {
    char magic[8];     /* "VPSPIRV\0" */
    uint64_t key;      /* names the file */
    uint64_t check;    /* a second hash of the same text, guards against key collisions */
    uint64_t words;
};

static void cache_path(const vp_context *ctx, uint64_t key, char *buf, size_t size) {
    snprintf(buf, size, "%s/spirv/%016llx.spv", ctx->cache_dir, (unsigned long long)key);
}

static bool cache_load(vp_context *ctx, uint64_t key, uint64_t check, uint32_t **spirv,
                       size_t *words) {
    char path[1200];
    cache_path(ctx, key, path, sizeof path);
    void *data;
    size_t size;
    if (vp_file_read(path, &data, &size) != VP_OK) {
        vp_clear_error();
        return false;
    }
    struct cache_header h;
    bool ok = size >= sizeof h;
    if (ok) {
        memcpy(&h, data, sizeof h);
        ok = memcmp(h.magic, "VPSPIRV", 8) == 0 && h.key == key && h.check == check &&
             h.words > 0 && size == sizeof h + h.words * 4;
    }
    if (ok) *spirv = malloc(h.words * 4);
    if (ok && *spirv) {
        memcpy(*spirv, (char *)data + sizeof h, h.words * 4);
        *words = h.words;
    }
    free(data);
    return ok && *spirv;
}

static void cache_store(vp_context *ctx, uint64_t key, uint64_t check, const uint32_t *spirv,
                        size_t words) {
    char dir[1100], path[1200];
    snprintf(dir, sizeof dir, "%s/spirv", ctx->cache_dir);
    cache_path(ctx, key, path, sizeof path);
    struct cache_header h = {.magic = "VPSPIRV", .key = key, .check = check, .words = words};
    size_t size = sizeof h + words * 4;
    char *buf = malloc(size);
    if (!buf) return;
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, spirv, words * 4);
    /* A cache that cannot be written only costs a recompilation next time. */
    if (vp_mkdir_p(dir) != VP_OK || vp_file_write_atomic(path, buf, size) != VP_OK) {
        fprintf(stderr, "vkpeft: warning: shader cache not written: %s\n", vp_last_error());
        vp_clear_error();
    }
    free(buf);
}

vp_status vk_shader_compile(vp_context *ctx, const char *name, const char *source,
                            const char *defines, uint32_t **spirv, size_t *words) {
    struct text t = {0};
    vp_status s = build_source(ctx, name, source, defines, &t);
    if (s != VP_OK) {
        free(t.s);
        return s;
    }
    char ident[128];
    snprintf(ident, sizeof ident, "vkpeft-cache-%d glslang-%d.%d.%d%s vulkan1.1 spv1.3",
             CACHE_FORMAT, GLSLANG_VERSION_MAJOR, GLSLANG_VERSION_MINOR, GLSLANG_VERSION_PATCH,
             GLSLANG_VERSION_FLAVOR);
    uint64_t key = vp_hash_str(vp_hash_str(vp_hash_str(VP_HASH_INIT, ident), name), t.s);
    uint64_t check = vp_hash_str(vp_hash_str(vp_hash_str(0x84222325cbf29ce4ull, t.s), name), ident);
    if (ctx->use_cache && cache_load(ctx, key, check, spirv, words)) {
        ctx->stats.spirv_cache_hits++;
        free(t.s);
        return VP_OK;
    }
    s = compile_glsl(ctx, name, t.s, spirv, words);
    if (s == VP_OK && ctx->use_cache) cache_store(ctx, key, check, *spirv, *words);
    free(t.s);
    return s;
}
