/* The vkpeft tool as a user runs it: exit codes and messages. argv[1] is
 * the path of the vkpeft binary. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const char *vkpeft;

struct result {
    int code;
    char out[65536]; /* stdout and stderr together */
};

/* Runs "env <env> vkpeft <args>" through the shell. */
static void run(struct result *r, const char *env, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env %s '%s' %s 2>&1", env ? env : "", vkpeft, args);
    r->code = -1;
    r->out[0] = 0;
    FILE *p = popen(cmd, "r");
    if (!p) {
        FAIL("popen failed for %s", cmd);
        return;
    }
    size_t n = fread(r->out, 1, sizeof r->out - 1, p);
    r->out[n] = 0;
    int status = pclose(p);
    r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    /* The suite runs the tool with validation on: any finding fails. */
    CHECKF(strstr(r->out, "vkpeft: validation") == NULL, "validation message from '%s':\n%s",
           args, r->out);
}

static struct result r;

#define EXPECT_EXIT(want)                                                                  \
    CHECKF(r.code == (want), "exit code %d, want %d; output:\n%s", r.code, (want), r.out)
#define EXPECT_OUTPUT(text) CHECKF(strstr(r.out, (text)) != NULL, "output lacks '%s':\n%s", (text), r.out)

static void version_and_help(void) {
    run(&r, NULL, "--version");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("vkpeft 0.1.0");
    run(&r, NULL, "--help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("devices");
    EXPECT_OUTPUT("exit codes");
    run(&r, NULL, "devices --help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("examples:");
    run(&r, NULL, "bench --help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("examples:");
}

static void devices_lists_the_chosen_device(void) {
    run(&r, NULL, "devices");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("* 0:");
    EXPECT_OUTPUT("binding range");
    EXPECT_OUTPUT("heap 0");
    run(&r, NULL, "devices --json");
    EXPECT_EXIT(0);
    cJSON *j = cJSON_Parse(r.out);
    if (!CHECKF(j != NULL, "not JSON:\n%s", r.out)) return;
    const cJSON *devs = cJSON_GetObjectItem(j, "devices");
    CHECK(cJSON_IsArray(devs) && cJSON_GetArraySize(devs) >= 1);
    const cJSON *chosen = cJSON_GetObjectItem(j, "chosen");
    CHECK(cJSON_IsNumber(chosen));
    const cJSON *d = cJSON_GetArrayItem(devs, chosen ? chosen->valueint : 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(d, "chosen")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(d, "max_storage_buffer_range")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(d, "shared_memory")));
    CHECK(cJSON_IsArray(cJSON_GetObjectItem(d, "heaps")));
    cJSON_Delete(j);
}

static void no_driver_exits_1(void) {
    run(&r, "VK_DRIVER_FILES=/nonexistent/icd.json VK_ICD_FILENAMES=/nonexistent/icd.json", "devices");
    EXPECT_EXIT(1);
    EXPECT_OUTPUT("no Vulkan");
    EXPECT_OUTPUT("mesa-vulkan-drivers");
}

static void no_loader_exits_1(void) {
    run(&r, "VKPEFT_VULKAN_LIBRARY=/nonexistent/libvulkan.so.1", "devices");
    EXPECT_EXIT(1);
    EXPECT_OUTPUT("cannot load the Vulkan loader /nonexistent/libvulkan.so.1");
    EXPECT_OUTPUT("apt-get install libvulkan1");
}

static void bad_usage_exits_2(void) {
    run(&r, NULL, "frobnicate");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("unknown command 'frobnicate'");
    run(&r, NULL, "devices --frob");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("unknown option '--frob'");
    run(&r, NULL, "devices --device no-such-gpu");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("no device matches 'no-such-gpu'");
    run(&r, NULL, "bench dispatch --count zero");
    EXPECT_EXIT(2);
    run(&r, NULL, "bench");
    EXPECT_EXIT(2);
    run(&r, "VKPEFT_LIMITS=huge", "bench dispatch --count 2");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("VKPEFT_LIMITS='huge'");
    run(&r, NULL, "");
    EXPECT_EXIT(2);
}

static void bench_dispatch_reports_barriers(void) {
    run(&r, NULL, "bench dispatch --count 20 --repeat 1 --json");
    EXPECT_EXIT(0);
    cJSON *j = cJSON_Parse(r.out);
    if (!CHECKF(j != NULL, "not JSON:\n%s", r.out)) return;
    CHECK(cJSON_GetObjectItem(j, "dependent_barriers")->valuedouble == 19);
    CHECK(cJSON_GetObjectItem(j, "independent_barriers")->valuedouble == 0);
    CHECK(cJSON_GetObjectItem(j, "dependent_us_per_dispatch")->valuedouble > 0);
    cJSON_Delete(j);
}

static void bench_startup_warm_compiles_nothing(void) {
    run(&r, NULL, "bench startup --json");
    EXPECT_EXIT(0);
    cJSON *j = cJSON_Parse(r.out);
    if (!CHECKF(j != NULL, "not JSON:\n%s", r.out)) return;
    CHECK(cJSON_GetObjectItem(j, "cold_compiled")->valuedouble >= 1);
    CHECK(cJSON_GetObjectItem(j, "warm_compiled")->valuedouble == 0);
    CHECK(cJSON_GetObjectItem(j, "warm_cache_hits")->valuedouble ==
          cJSON_GetObjectItem(j, "cold_compiled")->valuedouble);
    cJSON_Delete(j);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli PATH-TO-VKPEFT\n");
        return 2;
    }
    vkpeft = argv[1];
    static const struct th_case cases[] = {
        TH_CASE(version_and_help),   TH_CASE(devices_lists_the_chosen_device),
        TH_CASE(no_driver_exits_1),  TH_CASE(no_loader_exits_1),
        TH_CASE(bad_usage_exits_2),  TH_CASE(bench_dispatch_reports_barriers),
        TH_CASE(bench_startup_warm_compiles_nothing),
    };
    return th_main(cases, sizeof cases / sizeof cases[0], argc - 1, argv + 1);
}
