/* vkpeft devices: every Vulkan device, its probed capabilities, the limits a
 * profile would leave, and which device is chosen. */
#include "cli.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: vkpeft devices [--json] [--device N|name]\n"
    "\n"
    "Lists every Vulkan device with what vkpeft probed: vendor, type, fp16 and\n"
    "16-bit storage, int8, subgroups, shared memory, workgroup limits, binding\n"
    "range, allocation limits, memory heaps and budget, cooperative matrices,\n"
    "timestamps. The device marked '*' is the one commands use.\n"
    "\n"
    "examples:\n"
    "  vkpeft devices\n"
    "  vkpeft devices --json | jq '.devices[0].name'\n"
    "  VKPEFT_DEVICE=llvmpipe vkpeft devices\n";

static void subgroup_ops_text(uint32_t ops, char *buf, size_t size) {
    static const char *const names[] = {"basic",   "vote",             "arithmetic", "ballot",
                                        "shuffle", "shuffle_relative", "clustered",  "quad"};
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < 8; i++)
        if (ops & (1u << i))
            len += (size_t)snprintf(buf + len, size > len ? size - len : 0, "%s%s", len ? "," : "",
                                    names[i]);
    if (!len) snprintf(buf, size, "none");
}

static void print_text(const vp_device_info *d, bool chosen) {
    char a[32], b[32], c[32], ops[128];
    printf("%s %u: %s\n", chosen ? "*" : " ", d->index, d->name);
    printf("    vendor        %s (0x%04x), device 0x%04x, %s, Vulkan %u.%u.%u\n", d->vendor,
           d->vendor_id, d->device_id, vp_device_type_name(d->type), d->api_version >> 22,
           (d->api_version >> 12) & 0x3ff, d->api_version & 0xfff);
    printf("    driver        %s\n", d->driver);
    printf("    arithmetic    fp16 %s, int8 %s, int64 %s; storage 16-bit %s, 8-bit %s\n",
           d->fp16_arithmetic ? "yes" : "no", d->int8_arithmetic ? "yes" : "no",
           d->int64_arithmetic ? "yes" : "no", d->storage_16bit ? "yes" : "no",
           d->storage_8bit ? "yes" : "no");
    subgroup_ops_text(d->subgroup_ops, ops, sizeof ops);
    printf("    subgroups     size %u (%u..%u), ops %s\n", d->subgroup_size, d->subgroup_size_min,
           d->subgroup_size_max, ops);
    printf("    workgroups    %u invocations, size %u x %u x %u, shared memory %s\n",
           d->max_workgroup_invocations, d->max_workgroup_size[0], d->max_workgroup_size[1],
           d->max_workgroup_size[2], vp_format_bytes(d->shared_memory, a, sizeof a));
    printf("    buffers       binding range %s, allocation %s, buffer %s, offset alignment %llu\n",
           vp_format_bytes(d->max_storage_buffer_range, a, sizeof a),
           vp_format_bytes(d->max_memory_allocation, b, sizeof b),
           vp_format_bytes(d->max_buffer_size, c, sizeof c),
           (unsigned long long)d->min_storage_offset_alignment);
    for (uint32_t h = 0; h < d->heap_count; h++)
        printf("    heap %u        %s%s, budget %s%s\n", h,
               vp_format_bytes(d->heaps[h].size, a, sizeof a),
               d->heaps[h].device_local ? " device-local" : "",
               vp_format_bytes(d->heaps[h].budget, b, sizeof b),
               d->memory_budget_ext ? " (VK_EXT_memory_budget)" : " (heap size)");
    printf("    memory path   %s\n", d->unified_memory ? "unified (host-visible device memory)"
                                                       : "discrete (staging copies)");
    printf("    other         cooperative matrix %s, timestamps %s (%.3g ns/tick)\n",
           d->cooperative_matrix ? "yes" : "no", d->timestamps ? "yes" : "no",
           (double)d->timestamp_period_ns);
}

static cJSON *device_json(const vp_device_info *d, bool chosen) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", d->index);
    cJSON_AddBoolToObject(o, "chosen", chosen);
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "vendor", d->vendor);
    cJSON_AddNumberToObject(o, "vendor_id", d->vendor_id);
    cJSON_AddNumberToObject(o, "device_id", d->device_id);
    cJSON_AddStringToObject(o, "type", vp_device_type_name(d->type));
    char ver[32];
    snprintf(ver, sizeof ver, "%u.%u.%u", d->api_version >> 22, (d->api_version >> 12) & 0x3ff,
             d->api_version & 0xfff);
    cJSON_AddStringToObject(o, "api_version", ver);
    cJSON_AddStringToObject(o, "driver", d->driver);
    cJSON_AddBoolToObject(o, "fp16_arithmetic", d->fp16_arithmetic);
    cJSON_AddBoolToObject(o, "storage_16bit", d->storage_16bit);
    cJSON_AddBoolToObject(o, "int8_arithmetic", d->int8_arithmetic);
    cJSON_AddBoolToObject(o, "storage_8bit", d->storage_8bit);
    cJSON_AddBoolToObject(o, "int64_arithmetic", d->int64_arithmetic);
    cJSON_AddNumberToObject(o, "subgroup_size", d->subgroup_size);
    cJSON_AddNumberToObject(o, "subgroup_size_min", d->subgroup_size_min);
    cJSON_AddNumberToObject(o, "subgroup_size_max", d->subgroup_size_max);
    char ops[128];
    subgroup_ops_text(d->subgroup_ops, ops, sizeof ops);
    cJSON_AddStringToObject(o, "subgroup_ops", ops);
    cJSON_AddNumberToObject(o, "shared_memory", d->shared_memory);
    cJSON_AddNumberToObject(o, "max_workgroup_invocations", d->max_workgroup_invocations);
    int size[3] = {(int)d->max_workgroup_size[0], (int)d->max_workgroup_size[1],
                   (int)d->max_workgroup_size[2]};
    cJSON_AddItemToObject(o, "max_workgroup_size", cJSON_CreateIntArray(size, 3));
    cJSON_AddNumberToObject(o, "max_storage_buffer_range", (double)d->max_storage_buffer_range);
    cJSON_AddNumberToObject(o, "max_memory_allocation", (double)d->max_memory_allocation);
    cJSON_AddNumberToObject(o, "max_buffer_size", (double)d->max_buffer_size);
    cJSON_AddNumberToObject(o, "min_storage_offset_alignment",
                            (double)d->min_storage_offset_alignment);
    cJSON *heaps = cJSON_AddArrayToObject(o, "heaps");
    for (uint32_t h = 0; h < d->heap_count; h++) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "size", (double)d->heaps[h].size);
        cJSON_AddNumberToObject(j, "budget", (double)d->heaps[h].budget);
        cJSON_AddNumberToObject(j, "usage", (double)d->heaps[h].usage);
        cJSON_AddBoolToObject(j, "device_local", d->heaps[h].device_local);
        cJSON_AddItemToArray(heaps, j);
    }
    cJSON_AddBoolToObject(o, "memory_budget_ext", d->memory_budget_ext);
    cJSON_AddBoolToObject(o, "unified_memory", d->unified_memory);
    cJSON_AddBoolToObject(o, "cooperative_matrix", d->cooperative_matrix);
    cJSON_AddBoolToObject(o, "timestamps", d->timestamps);
    cJSON_AddNumberToObject(o, "timestamp_period_ns", d->timestamp_period_ns);
    return o;
}

int cmd_devices(int argc, char **argv) {
    struct cli_common common = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (!cli_common_option(argc, argv, &i, &common))
            return cli_usage_error("devices", "unknown option '%s'", argv[i]);
    }
    vp_device_info *devs = NULL;
    uint32_t count = 0, chosen = 0;
    vp_status s = vp_devices_list(common.device, &devs, &count, &chosen);
    if (s != VP_OK && count == 0) return cli_fail(s);
    if (common.json) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(root, "devices");
        for (uint32_t i = 0; i < count; i++) cJSON_AddItemToArray(arr, device_json(&devs[i], i == chosen));
        if (chosen != UINT32_MAX) cJSON_AddNumberToObject(root, "chosen", chosen);
        char *text = cJSON_Print(root);
        puts(text);
        free(text);
        cJSON_Delete(root);
    } else {
        for (uint32_t i = 0; i < count; i++) print_text(&devs[i], i == chosen);
    }
    free(devs);
    /* A --device that matched nothing still lists, then fails as bad usage. */
    if (s == VP_OK) return EXIT_OK;
    cli_fail(s);
    return EXIT_USAGE;
}
