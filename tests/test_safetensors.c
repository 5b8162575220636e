/* safetensors reading, validation and writing; sharded model folders. */
#include "harness.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/vkpeft-st-XXXXXX");
    if (!mkdtemp(dir)) FAIL("mkdtemp");
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) th_diag("could not remove %s", dir);
}

/* Writes raw bytes: an 8-byte size, the header text, then `data`. */
static void write_raw(const char *path, const char *header, uint64_t claimed, const void *data,
                      size_t data_size) {
    FILE *f = fopen(path, "wb");
    unsigned char n[8];
    for (int i = 0; i < 8; i++) n[i] = (unsigned char)(claimed >> (8 * i));
    fwrite(n, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (data_size) fwrite(data, 1, data_size, f);
    fclose(f);
}

static void round_trip(void) {
    make_dir();
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[4] = {0x3C00, 0x4000, 0x4200, 0x4400};
    int64_t ids[3] = {0, 7, -1};
    const struct io_tensor_out out[] = {
        {"encoder.weight", IO_DTYPE_F32, 2, {2, 3}, w},
        {"encoder.half", IO_DTYPE_F16, 1, {4}, h},
        {"position_ids", IO_DTYPE_I64, 2, {1, 3}, ids},
        {"empty", IO_DTYPE_BF16, 2, {0, 5}, NULL},
    };
    const char *meta[] = {"format", "pt", "vkpeft", "test", NULL};
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(io_safetensors_write(path, out, 4, meta) == VP_OK);
    struct io_safetensors *f;
    if (!CHECKF(io_safetensors_open(path, &f) == VP_OK, "%s", vp_last_error())) return remove_dir();
    CHECK(io_safetensors_count(f) == 4);
    const struct io_tensor *t = io_safetensors_find(f, "encoder.weight");
    CHECK(t && t->dtype == IO_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t && t->numel == 6 && t->nbytes == 24 && memcmp(t->data, w, 24) == 0);
    t = io_safetensors_find(f, "encoder.half");
    CHECK(t && t->dtype == IO_DTYPE_F16 && memcmp(t->data, h, 8) == 0);
    t = io_safetensors_find(f, "position_ids");
    CHECK(t && t->dtype == IO_DTYPE_I64 && memcmp(t->data, ids, 24) == 0);
    t = io_safetensors_find(f, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0);
    CHECK(io_safetensors_find(f, "missing") == NULL);
    CHECK(io_safetensors_metadata(f, "format") && strcmp(io_safetensors_metadata(f, "format"), "pt") == 0);
    CHECK(io_safetensors_metadata(f, "nope") == NULL);
    io_safetensors_close(f);
    /* The whole folder through io_weights. */
    struct io_weights *wts;
    CHECK(io_weights_open(dir, &wts) == VP_OK);
    CHECK(wts && io_weights_count(wts) == 4 && io_weights_find(wts, "encoder.half"));
    io_weights_close(wts);
    remove_dir();
}

/* Each malformed file fails with VP_ERROR_BAD_INPUT and a message naming
 * the problem. */
static void expect_bad(const char *header, uint64_t claimed, size_t data_size, const char *needle) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    unsigned char data[64] = {0};
    write_raw(path, header, claimed, data, data_size);
    struct io_safetensors *f = NULL;
    vp_status s = io_safetensors_open(path, &f);
    CHECKF(s == VP_ERROR_BAD_INPUT, "header %s: status %s", header, vp_status_name(s));
    CHECKF(strstr(vp_last_error(), needle) != NULL, "header %s: message '%s' lacks '%s'", header,
           vp_last_error(), needle);
    CHECK(strstr(vp_last_error(), "bad.safetensors") != NULL);
    CHECK(f == NULL);
    io_safetensors_close(f);
}

#define H(s) s, (uint64_t)strlen(s)

static void malformed_files_are_rejected(void) {
    make_dir();
    expect_bad(H("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"), 4,
               "truncated");                                                /* data short */
    expect_bad("{}", 1000, 0, "header claims 1000 bytes");                  /* size lies */
    expect_bad("{}", (uint64_t)1 << 40, 0, "more than 100 MiB");
    expect_bad(H("[1,2]"), 0, "not a JSON object");
    expect_bad(H("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}"), 4, "unknown dtype");
    expect_bad(H("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}"), 8,
               "12 bytes but data_offsets span 8");
    expect_bad(H("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}"), 4,
               "shape[0] is not a non-negative integer");
    expect_bad(H("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}"), 4,
               "end before they begin");
    expect_bad(H("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"), 12, "overlaps");
    expect_bad(H("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"), 8, "hole");
    expect_bad(H("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), 8,
               "4 bytes of data follow");
    expect_bad(H("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"), 8, "appears twice");
    expect_bad(H("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                 "\"data_offsets\":[0,4]}}"), 4, "overflows");
    expect_bad(H("{\"__metadata__\":{\"k\":1}}"), 0, "metadata value 'k'");
    expect_bad("", 0, 0, "not a JSON object");
    /* Shorter than the size field. */
    char path[128];
    snprintf(path, sizeof path, "%s/tiny.safetensors", dir);
    FILE *f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    struct io_safetensors *st;
    CHECK(io_safetensors_open(path, &st) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "too short") != NULL);
    CHECK(io_safetensors_open("/nonexistent/model.safetensors", &st) == VP_ERROR_IO);
    remove_dir();
}

static void write_index(const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void sharded_folder(void) {
    make_dir();
    float a[2] = {1, 2}, b[3] = {3, 4, 5};
    char p1[128], p2[128];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    const struct io_tensor_out t1 = {"layer.0.w", IO_DTYPE_F32, 1, {2}, a};
    const struct io_tensor_out t2 = {"layer.1.w", IO_DTYPE_F32, 1, {3}, b};
    CHECK(io_safetensors_write(p1, &t1, 1, NULL) == VP_OK);
    CHECK(io_safetensors_write(p2, &t2, 1, NULL) == VP_OK);
    write_index("{\"metadata\":{\"total_size\":20},\"weight_map\":{"
                "\"layer.0.w\":\"model-00001-of-00002.safetensors\","
                "\"layer.1.w\":\"model-00002-of-00002.safetensors\"}}");
    struct io_weights *w;
    if (CHECKF(io_weights_open(dir, &w) == VP_OK, "%s", vp_last_error())) {
        CHECK(io_weights_count(w) == 2);
        const struct io_tensor *t = io_weights_find(w, "layer.1.w");
        CHECK(t && t->numel == 3 && ((const float *)t->data)[2] == 5);
        io_weights_close(w);
    }
    write_index("{\"weight_map\":{\"layer.0.w\":\"model-00002-of-00002.safetensors\"}}");
    CHECK(io_weights_open(dir, &w) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "that shard lacks it") != NULL);
    write_index("{\"weight_map\":{\"x\":\"../../etc/passwd\"}}");
    CHECK(io_weights_open(dir, &w) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "not a shard file name") != NULL);
    write_index("{\"weight_map\":{\"x\":\"model-00003-of-00002.safetensors\"}}");
    CHECK(io_weights_open(dir, &w) == VP_ERROR_IO);
    CHECK(strstr(vp_last_error(), "model-00003-of-00002.safetensors") != NULL);
    write_index("not json");
    CHECK(io_weights_open(dir, &w) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "weight_map") != NULL);
    remove_dir();
    make_dir();
    CHECK(io_weights_open(dir, &w) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "neither model.safetensors") != NULL);
    remove_dir();
}

TH_MAIN(TH_CASE(round_trip), TH_CASE(malformed_files_are_rejected), TH_CASE(sharded_folder))
