/* safetensors reading (validated) and writing (atomic). */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header larger than this is not a model header but an attack or garbage. */
#define MAX_HEADER ((uint64_t)100 << 20)
/* Integers in JSON are doubles in cJSON: exact only up to 2^53. */
#define MAX_JSON_INT 9007199254740992.0

static const struct {
    const char *name;
    size_t size;
} dtypes[IO_DTYPE_COUNT] = {
    [IO_DTYPE_F32] = {"F32", 4}, [IO_DTYPE_F16] = {"F16", 2}, [IO_DTYPE_BF16] = {"BF16", 2},
    [IO_DTYPE_F64] = {"F64", 8}, [IO_DTYPE_I64] = {"I64", 8}, [IO_DTYPE_I32] = {"I32", 4},
    [IO_DTYPE_I16] = {"I16", 2}, [IO_DTYPE_I8] = {"I8", 1},   [IO_DTYPE_U8] = {"U8", 1},
    [IO_DTYPE_BOOL] = {"BOOL", 1},
};

const char *io_dtype_name(enum io_dtype t) {
    return (unsigned)t < IO_DTYPE_COUNT ? dtypes[t].name : "?";
}
size_t io_dtype_size(enum io_dtype t) { return (unsigned)t < IO_DTYPE_COUNT ? dtypes[t].size : 0; }

struct io_safetensors {
    char *path;
    void *map;          /* mmap of the whole file, or NULL for parse() */
    size_t map_size;
    struct io_tensor *tensors;
    size_t count;
    cJSON *metadata;    /* detached "__metadata__" object, or NULL */
};

static vp_status bad(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static vp_status bad(const char *name, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return vp_fail(VP_ERROR_BAD_INPUT, "%s: %s; the file is corrupt or not a safetensors file "
                   "(re-download or re-export it)", name, msg);
}

static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= MAX_JSON_INT) || floor(d) != d) return false;
    *out = (uint64_t)d;
    return true;
}

static int parse_dtype(const char *s) {
    for (int i = 0; i < IO_DTYPE_COUNT; i++)
        if (strcmp(s, dtypes[i].name) == 0) return i;
    return -1;
}

static vp_status parse_entry(const char *file, const cJSON *e, uint64_t data_size,
                             struct io_tensor *t, uint64_t *begin, const unsigned char *data) {
    const char *n = e->string;
    if (!cJSON_IsObject(e)) return bad(file, "tensor '%s' is not an object", n);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return bad(file, "tensor '%s' has no \"dtype\" string", n);
    int d = parse_dtype(dt->valuestring);
    if (d < 0) return bad(file, "tensor '%s' has unknown dtype \"%s\"", n, dt->valuestring);
    if (!cJSON_IsArray(shape)) return bad(file, "tensor '%s' has no \"shape\" array", n);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > IO_MAX_DIMS) return bad(file, "tensor '%s' has %d dimensions (at most %d)", n, ndim, IO_MAX_DIMS);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        uint64_t dim;
        if (!json_uint(cJSON_GetArrayItem(shape, i), &dim))
            return bad(file, "tensor '%s': shape[%d] is not a non-negative integer", n, i);
        if (dim && numel > UINT64_MAX / dim)
            return bad(file, "tensor '%s': the shape's element count overflows", n);
        numel *= dim;
        t->shape[i] = (int64_t)dim;
    }
    uint64_t b, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(cJSON_GetArrayItem(off, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(off, 1), &end))
        return bad(file, "tensor '%s': \"data_offsets\" must be [begin, end] integers", n);
    if (numel > UINT64_MAX / dtypes[d].size)
        return bad(file, "tensor '%s': the byte count overflows", n);
    uint64_t nbytes = numel * dtypes[d].size;
    if (end < b) return bad(file, "tensor '%s': data_offsets [%llu, %llu) end before they begin", n,
                            (unsigned long long)b, (unsigned long long)end);
    if (end - b != nbytes)
        return bad(file, "tensor '%s': shape × %s is %llu bytes but data_offsets span %llu", n,
                   dtypes[d].name, (unsigned long long)nbytes, (unsigned long long)(end - b));
    if (end > data_size)
        return bad(file, "tensor '%s': data_offsets [%llu, %llu) run past the end of the data "
                   "(%llu bytes); the file is truncated", n, (unsigned long long)b,
                   (unsigned long long)end, (unsigned long long)data_size);
    t->name = strdup(n);
    if (!t->name) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", file);
    t->dtype = (enum io_dtype)d;
    t->ndim = ndim;
    t->numel = numel;
    t->nbytes = nbytes;
    t->data = data + b;
    *begin = b;
    return VP_OK;
}

struct order {
    uint64_t begin;
    size_t index;
};

static int cmp_order(const void *a, const void *b) {
    const struct order *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Sorts tensors by offset; rejects overlaps and holes (the format requires
 * the data section to be exactly the tensors, back to back). */
static vp_status check_layout(const char *file, struct io_safetensors *f, struct order *ord,
                              uint64_t data_size) {
    qsort(ord, f->count, sizeof *ord, cmp_order);
    uint64_t at = 0;
    struct io_tensor *sorted = malloc((f->count ? f->count : 1) * sizeof *sorted);
    if (!sorted) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", file);
    vp_status s = VP_OK;
    for (size_t i = 0; i < f->count && s == VP_OK; i++) {
        const struct io_tensor *t = &f->tensors[ord[i].index];
        if (ord[i].begin < at)
            s = bad(file, "tensor '%s' overlaps the tensor before it (offset %llu < %llu)", t->name,
                    (unsigned long long)ord[i].begin, (unsigned long long)at);
        else if (ord[i].begin > at)
            s = bad(file, "the data has a hole of %llu bytes before tensor '%s'",
                    (unsigned long long)(ord[i].begin - at), t->name);
        at = ord[i].begin + t->nbytes;
        sorted[i] = *t;
    }
    if (s == VP_OK && at != data_size)
        s = bad(file, "%llu bytes of data follow the last tensor", (unsigned long long)(data_size - at));
    if (s == VP_OK) {
        memcpy(f->tensors, sorted, f->count * sizeof *sorted);
    }
    free(sorted);
    return s;
}

static vp_status parse_header(struct io_safetensors *f, const char *file, const cJSON *root,
                              const unsigned char *data, uint64_t data_size) {
    size_t n = 0;
    for (const cJSON *e = root->child; e; e = e->next) n += strcmp(e->string, "__metadata__") != 0;
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    struct order *ord = calloc(n ? n : 1, sizeof *ord);
    if (!f->tensors || !ord) {
        free(ord);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", file);
    }
    vp_status s = VP_OK;
    for (const cJSON *e = root->child; e && s == VP_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                s = bad(file, "\"__metadata__\" is not an object");
                break;
            }
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) s = bad(file, "metadata value '%s' is not a string", m->string);
            continue;
        }
        for (size_t j = 0; j < f->count && s == VP_OK; j++)
            if (strcmp(f->tensors[j].name, e->string) == 0)
                s = bad(file, "tensor '%s' appears twice in the header", e->string);
        if (s != VP_OK) break;
        s = parse_entry(file, e, data_size, &f->tensors[f->count], &ord[f->count].begin, data);
        if (s == VP_OK) {
            ord[f->count].index = f->count;
            f->count++;
        }
    }
    if (s == VP_OK) s = check_layout(file, f, ord, data_size);
    free(ord);
    return s;
}

vp_status io_safetensors_parse(const void *data, size_t size, const char *name,
                               struct io_safetensors **out) {
    *out = NULL;
    if (size < 8) return bad(name, "%zu bytes is too short for a safetensors header", size);
    const unsigned char *p = data;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | p[i];
    if (n > MAX_HEADER) return bad(name, "the header claims %llu bytes (more than 100 MiB)",
                                   (unsigned long long)n);
    if (n > size - 8) return bad(name, "the header claims %llu bytes but the file has %zu after "
                                 "the size field; the file is truncated", (unsigned long long)n, size - 8);
    cJSON *root = cJSON_ParseWithLength((const char *)p + 8, (size_t)n);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return bad(name, "the header is not a JSON object");
    }
    struct io_safetensors *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name))) {
        free(f);
        cJSON_Delete(root);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory reading %s", name);
    }
    vp_status s = parse_header(f, name, root, p + 8 + n, size - 8 - n);
    if (s == VP_OK) f->metadata = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
    cJSON_Delete(root);
    if (s != VP_OK) {
        io_safetensors_close(f);
        return s;
    }
    *out = f;
    return VP_OK;
}

vp_status io_safetensors_open(const char *path, struct io_safetensors **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vp_fail(VP_ERROR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vp_fail(VP_ERROR_IO, "%s is not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (size && map == MAP_FAILED) return vp_fail(VP_ERROR_IO, "cannot map %s: %s", path, strerror(errno));
    static const unsigned char empty[1];
    vp_status s = io_safetensors_parse(size ? map : empty, size, path, out);
    if (s != VP_OK) {
        if (size) munmap(map, size);
        return s;
    }
    (*out)->map = size ? map : NULL;
    (*out)->map_size = size;
    return VP_OK;
}

void io_safetensors_close(struct io_safetensors *f) {
    if (!f) return;
    for (size_t i = 0; i < f->count; i++) free(f->tensors[i].name);
    free(f->tensors);
    cJSON_Delete(f->metadata);
    if (f->map) munmap(f->map, f->map_size);
    free(f->path);
    free(f);
}

size_t io_safetensors_count(const struct io_safetensors *f) { return f->count; }
const struct io_tensor *io_safetensors_at(const struct io_safetensors *f, size_t i) {
    return i < f->count ? &f->tensors[i] : NULL;
}
const struct io_tensor *io_safetensors_find(const struct io_safetensors *f, const char *name) {
    for (size_t i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}
const char *io_safetensors_metadata(const struct io_safetensors *f, const char *key) {
    const cJSON *v = f->metadata ? cJSON_GetObjectItemCaseSensitive(f->metadata, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
const char *io_safetensors_path(const struct io_safetensors *f) { return f->path; }

/* ---- writing ------------------------------------------------------------------------ */

vp_status io_safetensors_write(const char *path, const struct io_tensor_out *tensors, size_t count,
                               const char *const *metadata) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory writing %s", path);
    if (metadata && metadata[0]) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (size_t i = 0; metadata[i] && metadata[i + 1]; i += 2)
            cJSON_AddStringToObject(m, metadata[i], metadata[i + 1]);
    }
    uint64_t at = 0;
    for (size_t i = 0; i < count; i++) {
        const struct io_tensor_out *t = &tensors[i];
        uint64_t numel = 1;
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(e, "dtype", io_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) {
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
            numel *= (uint64_t)t->shape[d];
        }
        uint64_t nbytes = numel * io_dtype_size(t->dtype);
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(at + nbytes)));
        at += nbytes;
    }
    char *header = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!header) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory writing %s", path);
    /* Pad the header with spaces so the data starts 8-byte aligned, as the
     * reference writer does. */
    size_t hlen = strlen(header), padded = (8 + hlen + 7) / 8 * 8 - 8;
    size_t total = 8 + padded + at;
    unsigned char *buf = malloc(total);
    if (!buf) {
        free(header);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory writing %s", path);
    }
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, header, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    free(header);
    unsigned char *d = buf + 8 + padded;
    for (size_t i = 0; i < count; i++) {
        const struct io_tensor_out *t = &tensors[i];
        uint64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) numel *= (uint64_t)t->shape[k];
        size_t nbytes = numel * io_dtype_size(t->dtype);
        if (nbytes) memcpy(d, t->data, nbytes);
        d += nbytes;
    }
    vp_status s = vp_file_write_atomic(path, buf, total);
    free(buf);
    return s;
}
