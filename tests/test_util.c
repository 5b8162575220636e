/* Host-side helpers: byte sizes, hashing, atomic files, status names. */
#include "harness.h"
#include "util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void parse_bytes(void) {
    uint64_t v = 0;
    CHECK(vp_parse_bytes("123", &v) && v == 123);
    CHECK(vp_parse_bytes("64K", &v) && v == 65536);
    CHECK(vp_parse_bytes("1.5G", &v) && v == 1610612736ull);
    CHECK(vp_parse_bytes("512MiB", &v) && v == 512ull << 20);
    CHECK(vp_parse_bytes("2gb", &v) && v == 2ull << 30);
    CHECK(!vp_parse_bytes("", &v));
    CHECK(!vp_parse_bytes("lots", &v));
    CHECK(!vp_parse_bytes("-5", &v));
    CHECK(!vp_parse_bytes("5X", &v));
    CHECK(!vp_parse_bytes("1e30", &v));
}

static void format_bytes(void) {
    char b[32];
    CHECK(strcmp(vp_format_bytes(0, b, sizeof b), "0 B") == 0);
    CHECK(strcmp(vp_format_bytes(1023, b, sizeof b), "1023 B") == 0);
    CHECK(strcmp(vp_format_bytes(1536, b, sizeof b), "1.50 KiB") == 0);
    CHECK(strcmp(vp_format_bytes(8u << 20, b, sizeof b), "8.00 MiB") == 0);
}

static void hashing_is_stable(void) {
    /* FNV-1a 64 test vectors: "" and "a". */
    CHECK(vp_hash_bytes(VP_HASH_INIT, "", 0) == 0xcbf29ce484222325ull);
    CHECK(vp_hash_bytes(VP_HASH_INIT, "a", 1) == 0xaf63dc4c8601ec8cull);
    CHECK(vp_hash_str(VP_HASH_INIT, "ab") != vp_hash_str(VP_HASH_INIT, "ba"));
}

static void atomic_write_leaves_no_temporary(void) {
    char dir[] = "/tmp/vkpeft-util-XXXXXX";
    if (!CHECK(mkdtemp(dir) != NULL)) return;
    char path[128];
    snprintf(path, sizeof path, "%s/sub/dir/file.bin", dir);
    char parent[128];
    snprintf(parent, sizeof parent, "%s/sub/dir", dir);
    CHECK(vp_mkdir_p(parent) == VP_OK);
    CHECK(vp_file_write_atomic(path, "hello", 5) == VP_OK);
    CHECK(vp_file_write_atomic(path, "world!", 6) == VP_OK);
    void *data = NULL;
    size_t size = 0;
    CHECK(vp_file_read(path, &data, &size) == VP_OK);
    CHECK(size == 6 && memcmp(data, "world!", 7) == 0); /* NUL-terminated */
    free(data);
    int entries = 0;
    DIR *d = opendir(parent);
    for (struct dirent *e; d && (e = readdir(d));) entries += e->d_name[0] != '.';
    if (d) closedir(d);
    CHECK(entries == 1);
    CHECK(vp_file_read("/nonexistent/x", &data, &size) == VP_ERROR_IO);
    CHECK(strstr(vp_last_error(), "/nonexistent/x") != NULL);
    snprintf(path, sizeof path, "%s/missing/file", dir);
    CHECK(vp_file_write_atomic(path, "x", 1) == VP_ERROR_IO);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void status_names_and_messages(void) {
    CHECK(strcmp(vp_status_name(VP_OK), "VP_OK") == 0);
    CHECK(strcmp(vp_status_name(VP_ERROR_OVER_BUDGET), "VP_ERROR_OVER_BUDGET") == 0);
    CHECK(strcmp(vp_status_name((vp_status)999), "VP_ERROR_UNKNOWN") == 0);
    CHECK(vp_fail(VP_ERROR_IO, "cannot open %s", "x.bin") == VP_ERROR_IO);
    CHECK(strcmp(vp_last_error(), "cannot open x.bin") == 0);
    CHECK(vp_fail_context(VP_ERROR_BAD_INPUT, "loading %s", "model") == VP_ERROR_BAD_INPUT);
    CHECK(strcmp(vp_last_error(), "loading model: cannot open x.bin") == 0);
    vp_clear_error();
    CHECK(vp_last_error()[0] == 0);
    CHECK(strcmp(vp_version_string(), "0.1.0") == 0);
}

TH_MAIN(TH_CASE(parse_bytes), TH_CASE(format_bytes), TH_CASE(hashing_is_stable),
        TH_CASE(atomic_write_leaves_no_temporary), TH_CASE(status_names_and_messages))
