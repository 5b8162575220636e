/* Resumable checkpoints (trainer.h, "checkpoints"): one file holding the
 * delta's values and the optimiser's moments (the params' value, m and v
 * arenas, byte for byte), where the fit stands (steps, micro-batches,
 * epoch and position in its order, tokens, the log's length, evaluations)
 * and the run's settings, published whole.
 *
 * File layout (little-endian):
 *   "VKPEFTCK"  u32 version  u32 header bytes  header (JSON text)
 *   value arena  m arena  v arena               (arena_bytes each)
 *   u64 FNV-1a of every byte before it
 * The header names the arena size and a hash of the tensor layout (names,
 * shapes, offsets), so a checkpoint only loads into the same layout. The
 * arenas are the device's layout, transposed tensors (delta_param:
 * GPT-2's Conv1D weights) as the decoder holds them, not delta.safetensors'
 * (save.h): a checkpoint is read by --resume only, into the same params.
 *
 * Writing: a temporary file in the same folder, fsync, rename over the
 * previous checkpoint, fsync of the folder. A kill at any moment leaves
 * either the previous checkpoint or the new one, never a mix; the checksum
 * also catches a file damaged later. The gradient arena is not saved:
 * checkpoints are taken between optimiser steps, when the next step zeroes
 * it first. */
#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "VKPEFTCK"
#define VERSION 1u
static const int saved_arenas[] = {DELTA_ARENA_VALUE, DELTA_ARENA_M, DELTA_ARENA_V};
#define SAVED_ARENAS 3

static uint64_t layout_hash(const struct delta_params *p) {
    uint64_t h = VP_HASH_INIT;
    for (int i = 0; i < p->count; i++) {
        const struct delta_param *t = &p->items[i];
        h = vp_hash_str(h, t->name);
        const uint64_t words[5] = {(uint64_t)t->ndim, (uint64_t)t->shape[0], (uint64_t)t->shape[1],
                                   (uint64_t)t->shape[2], (uint64_t)t->offset};
        h = vp_hash_bytes(h, words, sizeof words);
    }
    return vp_hash_bytes(h, &p->arena_bytes, sizeof p->arena_bytes);
}

/* 64-bit integers as decimal strings: JSON numbers are doubles. */
static void add_u64(cJSON *o, const char *key, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    cJSON_AddStringToObject(o, key, buf);
}

static bool get_u64(const cJSON *o, const char *key, uint64_t *out) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

/* A double exactly (cJSON prints 17 digits when 15 do not round-trip);
 * non-finite values as null. */
static void add_double(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

static double get_double(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static cJSON *eval_json(const struct trainer_eval_result *r) {
    cJSON *o = cJSON_CreateObject();
    add_double(o, "loss", r->loss);
    add_u64(o, "count", r->count);
    add_u64(o, "labelled", r->labelled);
    add_double(o, "accuracy", r->metrics.accuracy);
    add_double(o, "macro_f1", r->metrics.macro_f1);
    add_double(o, "matthews", r->metrics.matthews);
    add_u64(o, "metrics_count", r->metrics.count);
    return o;
}

static bool eval_from(const cJSON *o, struct trainer_eval_result *r) {
    if (!cJSON_IsObject(o)) return false;
    r->loss = get_double(o, "loss");
    r->metrics.accuracy = get_double(o, "accuracy");
    r->metrics.macro_f1 = get_double(o, "macro_f1");
    r->metrics.matthews = get_double(o, "matthews");
    return get_u64(o, "count", &r->count) && get_u64(o, "labelled", &r->labelled) &&
           get_u64(o, "metrics_count", &r->metrics.count);
}

static char *header_text(const struct delta_params *p, const struct trainer_position *pos, const char *settings) {
    cJSON *root = cJSON_CreateObject();
    cJSON *st = settings ? cJSON_Parse(settings) : NULL;
    if (st) cJSON_AddItemToObject(root, "settings", st);
    add_u64(root, "arena_bytes", p->arena_bytes);
    add_u64(root, "tensors", (uint64_t)p->count);
    add_u64(root, "layout", layout_hash(p));
    cJSON *o = cJSON_AddObjectToObject(root, "position");
    add_u64(o, "steps", pos->steps);
    add_u64(o, "micro", pos->micro);
    add_u64(o, "epoch", pos->epoch);
    add_u64(o, "pos", pos->pos);
    add_u64(o, "tokens", pos->tokens);
    add_u64(o, "examples", pos->examples);
    add_u64(o, "log_bytes", pos->log_bytes);
    add_u64(o, "skipped", pos->skipped);
    add_double(o, "elapsed", pos->elapsed);
    add_double(o, "first_loss", pos->first_loss);
    if (pos->has_eval) {
        cJSON_AddItemToObject(o, "eval", eval_json(&pos->eval));
        cJSON_AddItemToObject(o, "best", eval_json(&pos->best));
        add_u64(o, "best_step", pos->best_step);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* Writes all of data, retrying short writes. */
static bool write_all(int fd, const void *data, size_t size) {
    const char *p = data;
    while (size) {
        ssize_t w = write(fd, p, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        size -= (size_t)w;
    }
    return true;
}

/* The folder of `path`, fsynced so a rename in it is durable. */
static void sync_folder(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* VKPEFT_TEST_CHECKPOINT_PAUSE=seconds: sleeps half-way through writing the
 * temporary file, so a test's SIGKILL can land inside a write. */
static void test_pause(void) {
    const char *e = getenv("VKPEFT_TEST_CHECKPOINT_PAUSE");
    if (!e || !*e) return;
    const double s = atof(e);
    if (s > 0 && s < 60) {
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

vp_status train_checkpoint_save(const char *path, const struct delta_params *p,
                                const struct trainer_position *pos, const char *settings) {
    if (!p->allocated) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "checkpoint: the delta is not on the device");
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "path too long: %s", path);
    char *header = header_text(p, pos, settings);
    const size_t arena = (size_t)p->arena_bytes;
    unsigned char *buf = malloc(arena ? arena : 1);
    if (!header || !buf) {
        free(header);
        free(buf);
        return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory writing %s", path);
    }
    vp_status s = VP_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) s = vp_fail(VP_ERROR_IO, "cannot create %s: %s", tmp, strerror(errno));
    uint64_t h = VP_HASH_INIT;
    const uint32_t head[2] = {VERSION, (uint32_t)strlen(header)};
    bool ok = s == VP_OK;
    if (ok) {
        h = vp_hash_bytes(h, MAGIC, 8);
        h = vp_hash_bytes(h, head, sizeof head);
        h = vp_hash_bytes(h, header, head[1]);
        ok = write_all(fd, MAGIC, 8) && write_all(fd, head, sizeof head) && write_all(fd, header, head[1]);
    }
    for (int a = 0; ok && s == VP_OK && a < SAVED_ARENAS; a++) {
        s = vk_buffer_read(p->ctx, &p->arena[saved_arenas[a]], 0, buf, arena);
        if (s != VP_OK) break;
        h = vp_hash_bytes(h, buf, arena);
        ok = write_all(fd, buf, arena);
        if (a == 0) test_pause();
    }
    if (ok && s == VP_OK) ok = write_all(fd, &h, sizeof h);
    if (s == VP_OK && !ok) s = vp_fail(VP_ERROR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (fd >= 0) {
        if (s == VP_OK && fsync(fd) != 0) s = vp_fail(VP_ERROR_IO, "cannot flush %s: %s", tmp, strerror(errno));
        if (close(fd) != 0 && s == VP_OK) s = vp_fail(VP_ERROR_IO, "cannot close %s: %s", tmp, strerror(errno));
    }
    if (s == VP_OK && rename(tmp, path) != 0)
        s = vp_fail(VP_ERROR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s != VP_OK) unlink(tmp);
    else sync_folder(path);
    free(header);
    free(buf);
    return s;
}

static vp_status bad(const char *path, const char *what) {
    return vp_fail(VP_ERROR_BAD_INPUT, "%s: %s; it cannot be resumed from (start again without --resume)", path,
                   what);
}

vp_status train_checkpoint_load(const char *path, struct delta_params *p, struct trainer_position *pos,
                                char **settings) {
    if (settings) *settings = NULL;
    memset(pos, 0, sizeof *pos);
    void *data = NULL;
    size_t size = 0;
    vp_status s = vp_file_read(path, &data, &size);
    if (s != VP_OK) return s;
    const unsigned char *b = data;
    uint32_t head[2];
    uint64_t want;
    cJSON *root = NULL;
    if (size < 8 + sizeof head + sizeof want || memcmp(b, MAGIC, 8) != 0) {
        s = bad(path, "not a vkpeft checkpoint");
        goto out;
    }
    memcpy(head, b + 8, sizeof head);
    memcpy(&want, b + size - sizeof want, sizeof want);
    if (vp_hash_bytes(VP_HASH_INIT, b, size - sizeof want) != want) {
        s = bad(path, "the checksum does not match (the file is damaged)");
        goto out;
    }
    if (head[0] != VERSION) {
        s = bad(path, "written by another checkpoint format version");
        goto out;
    }
    const size_t hstart = 8 + sizeof head;
    if (head[1] > size - hstart - sizeof want) {
        s = bad(path, "the header is cut short");
        goto out;
    }
    root = cJSON_ParseWithLength((const char *)b + hstart, head[1]);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "position");
    uint64_t arena = 0, layout = 0, tensors = 0;
    if (!cJSON_IsObject(o) || !get_u64(root, "arena_bytes", &arena) || !get_u64(root, "layout", &layout) ||
        !get_u64(root, "tensors", &tensors) || !get_u64(o, "steps", &pos->steps) ||
        !get_u64(o, "micro", &pos->micro) || !get_u64(o, "epoch", &pos->epoch) || !get_u64(o, "pos", &pos->pos) ||
        !get_u64(o, "tokens", &pos->tokens) || !get_u64(o, "examples", &pos->examples) ||
        !get_u64(o, "log_bytes", &pos->log_bytes) || !get_u64(o, "skipped", &pos->skipped)) {
        s = bad(path, "the header is incomplete");
        goto out;
    }
    pos->elapsed = get_double(o, "elapsed");
    pos->first_loss = get_double(o, "first_loss");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "eval");
    if (ev) {
        uint64_t best_step = 0;
        if (!eval_from(ev, &pos->eval) || !eval_from(cJSON_GetObjectItemCaseSensitive(o, "best"), &pos->best) ||
            !get_u64(o, "best_step", &best_step)) {
            s = bad(path, "its evaluation record is incomplete");
            goto out;
        }
        pos->has_eval = true;
        pos->best_step = best_step;
    }
    const size_t body = hstart + head[1];
    if (size - body - sizeof want != SAVED_ARENAS * arena) {
        s = bad(path, "its size does not match its header");
        goto out;
    }
    if (settings) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "settings");
        *settings = st ? cJSON_PrintUnformatted(st) : NULL;
    }
    if (p) {
        if (arena != p->arena_bytes || tensors != (uint64_t)p->count || layout != layout_hash(p)) {
            s = bad(path, "its delta has another layout than this run's (another model or delta spec)");
            goto out;
        }
        for (int a = 0; s == VP_OK && a < SAVED_ARENAS; a++)
            s = vk_buffer_write(p->ctx, &p->arena[saved_arenas[a]], 0, b + body + (size_t)a * arena, arena);
    }
out:
    cJSON_Delete(root);
    free(data);
    if (s != VP_OK && settings) {
        free(*settings);
        *settings = NULL;
    }
    return s;
}
