#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One message per thread: the library may be used from several threads, and
 * a message must survive until the caller prints it. */
static _Thread_local char last_error[2048];

static const char *const status_names[] = {
    [VP_OK] = "VP_OK",
    [VP_ERROR_INVALID_ARGUMENT] = "VP_ERROR_INVALID_ARGUMENT",
    [VP_ERROR_NO_LOADER] = "VP_ERROR_NO_LOADER",
    [VP_ERROR_NO_DEVICE] = "VP_ERROR_NO_DEVICE",
    [VP_ERROR_VULKAN] = "VP_ERROR_VULKAN",
    [VP_ERROR_HOST_MEMORY] = "VP_ERROR_HOST_MEMORY",
    [VP_ERROR_OVER_BUDGET] = "VP_ERROR_OVER_BUDGET",
    [VP_ERROR_SHADER_COMPILE] = "VP_ERROR_SHADER_COMPILE",
    [VP_ERROR_IO] = "VP_ERROR_IO",
    [VP_ERROR_BAD_INPUT] = "VP_ERROR_BAD_INPUT",
    [VP_ERROR_UNSUPPORTED] = "VP_ERROR_UNSUPPORTED",
    [VP_ERROR_DEVICE_LOST] = "VP_ERROR_DEVICE_LOST",
    [VP_ERROR_VALIDATION] = "VP_ERROR_VALIDATION",
};

const char *vp_status_name(vp_status status) {
    if ((unsigned)status < sizeof status_names / sizeof status_names[0] && status_names[status])
        return status_names[status];
    return "VP_ERROR_UNKNOWN";
}

const char *vp_last_error(void) { return last_error; }

void vp_clear_error(void) { last_error[0] = 0; }

vp_status vp_fail(vp_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

vp_status vp_fail_context(vp_status status, const char *fmt, ...) {
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%s: %s", prefix, old);
    return status;
}

const char *vp_version_string(void) {
#define VP_STR2(x) #x
#define VP_STR(x) VP_STR2(x)
    return VP_STR(VP_VERSION_MAJOR) "." VP_STR(VP_VERSION_MINOR) "." VP_STR(VP_VERSION_PATCH);
}
