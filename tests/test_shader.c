/* The run-time shader compiler and its caches. */
#include "vktest.h"

#include <dirent.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const struct vk_kernel_desc scale_add_desc = {
    .shader = "scale_add.comp", .bindings = 2, .push_size = 16, .spec_count = 1, .spec = {64},
};

/* A fresh, empty cache folder for one case. */
static void fresh_dir(char *buf, size_t size, const char *tag) {
    snprintf(buf, size, "/tmp/vkpeft-test-%s-%ld-XXXXXX", tag, (long)getpid());
    if (!mkdtemp(buf)) FAIL("mkdtemp failed");
}

static void remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) th_diag("could not remove %s", dir);
}

static vp_context *context_on(const char *dir) {
    vp_context_options o = {.cache_dir = dir};
    return vt_context(&o);
}

static void compile_error_names_shader_and_line(void) {
    vp_context_options o = {.shader_cache = VP_TOGGLE_OFF};
    vp_context *ctx = vt_context(&o);
    if (!ctx) return;
    const char *src =
        "#version 450\n"                 /* 1 */
        "layout(local_size_x = 1) in;\n" /* 2 */
        "layout(std430, binding = 0) buffer B { float v[]; };\n"
        "\n"
        "void main() {\n"                /* 5 */
        "    float x = 1.0;\n"
        "    v[0] = x + undefined_thing;\n" /* 7 */
        "}\n";
    uint32_t *spirv = NULL;
    size_t words = 0;
    vp_status s = vk_shader_compile(ctx, "broken_example.comp", src, NULL, &spirv, &words);
    CHECK(s == VP_ERROR_SHADER_COMPILE);
    const char *msg = vp_last_error();
    th_diag("message: %s", msg);
    CHECK(strstr(msg, "broken_example.comp") != NULL);
    CHECK(strstr(msg, "broken_example.comp:7:") != NULL);
    CHECK(strstr(msg, "undefined_thing") != NULL);
    CHECK(spirv == NULL);
    vp_stats st;
    vp_context_stats(ctx, &st);
    CHECK(st.shaders_compiled == 0);
    vp_context_destroy(ctx);
}

static void line_numbers_survive_includes(void) {
    vp_context_options o = {.shader_cache = VP_TOGGLE_OFF};
    vp_context *ctx = vt_context(&o);
    if (!ctx) return;
    const char *src =
        "#version 450\n"                  /* 1 */
        "#include \"common.glsl\"\n"      /* 2 */
        "layout(local_size_x = 1) in;\n"  /* 3 */
        "void main() {\n"                 /* 4 */
        "    uint i = vp_flat_index();\n" /* 5 */
        "    i = i + missing_name;\n"     /* 6 */
        "}\n";
    uint32_t *spirv = NULL;
    size_t words = 0;
    CHECK(vk_shader_compile(ctx, "include_user.comp", src, NULL, &spirv, &words) ==
          VP_ERROR_SHADER_COMPILE);
    th_diag("message: %s", vp_last_error());
    CHECK(strstr(vp_last_error(), "include_user.comp:6:") != NULL);
    const char *bad_include = "#version 450\n#include \"nope.glsl\"\nvoid main() {}\n";
    CHECK(vk_shader_compile(ctx, "bad_include.comp", bad_include, NULL, &spirv, &words) ==
          VP_ERROR_SHADER_COMPILE);
    CHECK(strstr(vp_last_error(), "bad_include.comp:2") != NULL);
    CHECK(strstr(vp_last_error(), "nope.glsl") != NULL);
    vp_context_destroy(ctx);
}

static void every_embedded_shader_compiles(void) {
    vp_context_options o = {.shader_cache = VP_TOGGLE_OFF};
    vp_context *ctx = vt_context(&o);
    if (!ctx) return;
    unsigned comps = 0;
    for (unsigned i = 0; i < vk_shader_source_count; i++) {
        const struct vk_shader_source *src = &vk_shader_sources[i];
        if (!strstr(src->name, ".comp")) continue;
        comps++;
        uint32_t *spirv = NULL;
        size_t words = 0;
        vp_status s = vk_shader_compile(ctx, src->name, src->text, NULL, &spirv, &words);
        CHECKF(s == VP_OK, "%s: %s", src->name, vp_last_error());
        CHECK(words > 5 && spirv && spirv[0] == 0x07230203u); /* SPIR-V magic */
        free(spirv);
    }
    CHECK(comps >= 1);
    vp_stats st;
    vp_context_stats(ctx, &st);
    CHECK(st.shaders_compiled == comps);
    CHECK(st.spirv_cache_hits == 0);
    vp_context_destroy(ctx);
}

static void cache_hit_in_same_process(void) {
    char dir[256];
    fresh_dir(dir, sizeof dir, "cache");
    vp_stats st;
    struct vk_pipeline *p;
    vp_context *ctx = context_on(dir);
    if (!ctx) return;
    CHECK(vk_pipeline_get(ctx, &scale_add_desc, &p) == VP_OK);
    vp_context_stats(ctx, &st);
    CHECK(st.shaders_compiled == 1 && st.spirv_cache_hits == 0);
    /* The same kernel again in this context is the same pipeline object. */
    struct vk_pipeline *q;
    CHECK(vk_pipeline_get(ctx, &scale_add_desc, &q) == VP_OK && q == p);
    /* Different defines are a different program: compiled, not a hit. */
    struct vk_kernel_desc other = scale_add_desc;
    other.defines = "VP_TEST_DEFINE=3\n";
    CHECK(vk_pipeline_get(ctx, &other, &q) == VP_OK && q != p);
    vp_context_stats(ctx, &st);
    CHECK(st.shaders_compiled == 2);
    vp_context_destroy(ctx);

    ctx = context_on(dir);
    if (!ctx) return;
    CHECK(vk_pipeline_get(ctx, &scale_add_desc, &p) == VP_OK);
    CHECK(vk_pipeline_get(ctx, &other, &q) == VP_OK);
    /* Specialization constants do not change the SPIR-V: still a hit. */
    struct vk_kernel_desc spec = scale_add_desc;
    spec.spec[0] = 32;
    CHECK(vk_pipeline_get(ctx, &spec, &q) == VP_OK);
    vp_context_stats(ctx, &st);
    CHECK(st.shaders_compiled == 0);
    CHECK(st.spirv_cache_hits == 3);
    vp_context_destroy(ctx);
    remove_dir(dir);
}

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* The child process: builds the kernel on `dir`, exits with the number of
 * shaders it had to compile (0 means the cache served everything). */
static int warm_child(const char *dir) {
    vp_context_options o = {.cache_dir = dir};
    vp_context *ctx;
    if (vp_context_create(&o, &ctx) != VP_OK) return 100;
    struct vk_pipeline *p;
    int code = vk_pipeline_get(ctx, &scale_add_desc, &p) == VP_OK ? 0 : 101;
    vp_stats st;
    vp_context_stats(ctx, &st);
    if (code == 0) code = (int)st.shaders_compiled;
    if (code == 0 && st.spirv_cache_hits != 1) code = 102;
    vp_context_destroy(ctx);
    return vp_validation_message_count() ? 103 : code;
}

static void second_process_compiles_nothing(void) {
    char dir[256];
    fresh_dir(dir, sizeof dir, "warm");
    vp_context *ctx = context_on(dir);
    if (!ctx) return;
    struct vk_pipeline *p;
    CHECK(vk_pipeline_get(ctx, &scale_add_desc, &p) == VP_OK);
    vp_context_destroy(ctx);
    char sub[300];
    snprintf(sub, sizeof sub, "%s/spirv", dir);
    CHECK(count_files(sub, "") >= 3); /* ".", "..", one .spv */
    CHECK(count_files(dir, "pipelines-") == 1);

    char *argv[] = {"/proc/self/exe", "--warm-child", dir, NULL};
    pid_t pid;
    if (!CHECK(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) == 0)) return;
    int status = 0;
    waitpid(pid, &status, 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "warm child exit %d (number compiled, or 100+ for a failure)", WEXITSTATUS(status));
    remove_dir(dir);
}

static void corrupt_cache_entry_is_recompiled(void) {
    char dir[256];
    fresh_dir(dir, sizeof dir, "corrupt");
    vp_context *ctx = context_on(dir);
    if (!ctx) return;
    struct vk_pipeline *p;
    CHECK(vk_pipeline_get(ctx, &scale_add_desc, &p) == VP_OK);
    vp_context_destroy(ctx);
    /* Truncate every cached SPIR-V file to a few bytes. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "for f in '%s'/spirv/*.spv; do printf 'VPSPIRV' > \"$f\"; done", dir);
    CHECK(system(cmd) == 0);
    ctx = context_on(dir);
    if (!ctx) return;
    CHECK(vk_pipeline_get(ctx, &scale_add_desc, &p) == VP_OK);
    vp_stats st;
    vp_context_stats(ctx, &st);
    CHECK(st.shaders_compiled == 1 && st.spirv_cache_hits == 0);
    vp_context_destroy(ctx);
    remove_dir(dir);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--warm-child") == 0) return warm_child(argv[2]);
    static const struct th_case cases[] = {
        TH_CASE(compile_error_names_shader_and_line), TH_CASE(line_numbers_survive_includes),
        TH_CASE(every_embedded_shader_compiles),      TH_CASE(cache_hit_in_same_process),
        TH_CASE(second_process_compiles_nothing),     TH_CASE(corrupt_cache_entry_is_recompiled),
    };
    return vt_main(cases, sizeof cases / sizeof cases[0], argc, argv);
}
