#include "vktest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t messages_before;

vp_context *vt_context(const vp_context_options *options) {
    vp_context *ctx = NULL;
    vp_status s = vp_context_create(options, &ctx);
    if (s != VP_OK) {
        FAIL("vp_context_create: %s: %s", vp_status_name(s), vp_last_error());
        return NULL;
    }
    return ctx;
}

static bool no_new_validation_messages(const char *name) {
    uint64_t now = vp_validation_message_count();
    bool ok = now == messages_before;
    if (!ok) th_diag("%s caused %llu validation message(s) (printed on stderr above)", name,
                     (unsigned long long)(now - messages_before));
    messages_before = now;
    return ok;
}

void vt_accept_validation_messages(void) { messages_before = vp_validation_message_count(); }

int vt_main(const struct th_case *cases, size_t count, int argc, char **argv) {
    const char *v = getenv("VKPEFT_VALIDATE");
    if (!v || !*v || strcmp(v, "0") == 0)
        th_diag("warning: VKPEFT_VALIDATE is not set; validation is off for this run");
    messages_before = vp_validation_message_count();
    th_set_after_each(no_new_validation_messages);
    return th_main(cases, count, argc, argv);
}

void vt_fill_ints(float *v, size_t n, int range, uint64_t seed) {
    uint64_t st = seed;
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((int64_t)(th_rand_u64(&st) % (uint64_t)(2 * range + 1)) - range);
}

bool vt_has_unified(void) {
    vp_device_info *devs;
    uint32_t n, chosen;
    if (vp_devices_list(NULL, &devs, &n, &chosen) != VP_OK) return false;
    bool u = devs[chosen].unified_memory;
    free(devs);
    return u;
}
