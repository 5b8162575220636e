/* Host-side helpers: byte sizes, hashing, atomic files, status names. */
#include "harness.h"
#include "ref.h"
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

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float f32_from(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Host fp16/bf16 conversions against the reference, bit for bit: every
 * 16-bit pattern read back, every pattern's neighbourhood (the value, the
 * ties on either side and one float ulp around them) written, and random
 * float bit patterns (NaNs, subnormals and Inf included). */
static void half_conversions_match_reference(void) {
    size_t bad_read = 0, bad_write = 0, checked = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        bad_read += f32_bits(vp_f16_to_f32((uint16_t)h)) != f32_bits(ref_f16_to_f32((uint16_t)h));
        bad_read += f32_bits(vp_bf16_to_f32((uint16_t)h)) != f32_bits(ref_bf16_to_f32((uint16_t)h));
        /* fp16: the value and the float halfway to the next pattern, ±1 ulp. */
        uint32_t v = f32_bits(ref_f16_to_f32((uint16_t)h));
        uint32_t next = f32_bits(ref_f16_to_f32((uint16_t)(h + 1)));
        float mid = 0.5f * (f32_from(v) + f32_from(next)); /* exact: one more bit suffices */
        uint32_t m = f32_bits(mid);
        const uint32_t probes_f16[] = {v, v + 1, v - 1, m, m + 1, m - 1};
        for (size_t i = 0; i < sizeof probes_f16 / sizeof probes_f16[0]; i++) {
            float x = f32_from(probes_f16[i]);
            bad_write += vp_f32_to_f16(x) != ref_f32_to_f16(x);
            checked++;
        }
        /* bf16: the low half decides the rounding; ties are 0x8000. */
        const uint32_t lows[] = {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu};
        for (size_t i = 0; i < sizeof lows / sizeof lows[0]; i++) {
            float x = f32_from(h << 16 | lows[i]);
            bad_write += vp_f32_to_bf16(x) != ref_f32_to_bf16(x);
            checked++;
        }
    }
    uint64_t st = 0x5eed;
    for (int i = 0; i < 4000000; i++) {
        float x = f32_from((uint32_t)th_rand_u64(&st));
        bad_write += vp_f32_to_f16(x) != ref_f32_to_f16(x);
        bad_write += vp_f32_to_bf16(x) != ref_f32_to_bf16(x);
        checked += 2;
    }
    CHECKF(bad_read == 0, "%zu of 131072 16-bit patterns read differently from the reference",
           bad_read);
    CHECKF(bad_write == 0, "%zu of %zu floats rounded differently from the reference", bad_write,
           checked);
    /* The array forms are the same functions. */
    float in[4] = {1.0f, -65520.0f, 0x1.0p-25f, 3.14159265f};
    uint16_t h16[4], b16[4];
    float back[4];
    vp_f32_to_f16_array(h16, in, 4);
    vp_f32_to_bf16_array(b16, in, 4);
    CHECK(h16[0] == 0x3C00u && h16[1] == 0xFC00u && h16[2] == 0x0000u && h16[3] == 0x4248u);
    CHECK(b16[0] == 0x3F80u && b16[3] == 0x4049u);
    vp_f16_to_f32_array(back, h16, 4);
    CHECK(back[0] == 1.0f && back[3] == 3.140625f);
    vp_bf16_to_f32_array(back, b16, 4);
    CHECK(back[0] == 1.0f && back[3] == 3.140625f);
}

TH_MAIN(TH_CASE(parse_bytes), TH_CASE(format_bytes), TH_CASE(hashing_is_stable),
        TH_CASE(atomic_write_leaves_no_temporary), TH_CASE(status_names_and_messages),
        TH_CASE(half_conversions_match_reference))
