/* What a training run writes into its output folder besides the delta
 * (delta/save.h): the JSONL training log, the run's settings, evaluation
 * results, and files published whole (temporary file, fsync, rename).
 * A resumable checkpoint (delta + optimiser state + data position) is not
 * here yet. */
#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * The log
 * ------------------------------------------------------------------------ */

struct train_log {
    int fd;
    char path[1024];
};

vp_status train_log_open(const char *path, struct train_log **out) {
    *out = NULL;
    struct train_log *l = calloc(1, sizeof *l);
    if (!l) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening %s", path);
    snprintf(l->path, sizeof l->path, "%s", path);
    /* A new run starts a new log: earlier lines are from another run. */
    l->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (l->fd < 0) {
        vp_status s = vp_fail(VP_ERROR_IO, "cannot create %s: %s", path, strerror(errno));
        free(l);
        return s;
    }
    *out = l;
    return VP_OK;
}

vp_status train_log_reopen(const char *path, uint64_t bytes, struct train_log **out) {
    *out = NULL;
    struct train_log *l = calloc(1, sizeof *l);
    if (!l) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory opening %s", path);
    snprintf(l->path, sizeof l->path, "%s", path);
    l->fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (l->fd < 0 || ftruncate(l->fd, (off_t)bytes) != 0) {
        vp_status s = vp_fail(VP_ERROR_IO, "cannot continue %s: %s", path, strerror(errno));
        if (l->fd >= 0) close(l->fd);
        free(l);
        return s;
    }
    *out = l;
    return VP_OK;
}

uint64_t train_log_bytes(const struct train_log *l) {
    struct stat st;
    return l && fstat(l->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Writes one whole line with one write(2). */
static vp_status log_line(struct train_log *l, const char *text) {
    const size_t n = strlen(text);
    char *line = malloc(n + 2);
    if (!line) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory writing %s", l->path);
    memcpy(line, text, n);
    line[n] = '\n';
    ssize_t w;
    do w = write(l->fd, line, n + 1);
    while (w < 0 && errno == EINTR);
    free(line);
    if (w != (ssize_t)(n + 1))
        return vp_fail(VP_ERROR_IO, "cannot write %s: %s", l->path, w < 0 ? strerror(errno) : "short write");
    return VP_OK;
}

/* A number as JSON: NaN and Inf are not JSON, so they become null. */
static void add_number(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

static vp_status log_object(struct train_log *l, cJSON *o) {
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory writing %s", l->path);
    vp_status s = log_line(l, text);
    free(text);
    return s;
}

vp_status train_log_start(struct train_log *l, uint64_t total_steps, int batch, const struct delta_counts *counts,
                          const uint64_t plan[VP_POOL_COUNT], uint64_t uncheckpointed) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "start");
    cJSON_AddNumberToObject(o, "total_steps", (double)total_steps);
    cJSON_AddNumberToObject(o, "batch", batch);
    cJSON_AddNumberToObject(o, "trainable_params", (double)counts->delta_params);
    cJSON_AddNumberToObject(o, "head_params", (double)counts->head_params);
    cJSON_AddNumberToObject(o, "model_params", (double)counts->model_params);
    cJSON *m = cJSON_AddObjectToObject(o, "memory");
    for (int p = 0; p < VP_POOL_COUNT; p++) cJSON_AddNumberToObject(m, vp_pool_name((vp_pool)p), (double)plan[p]);
    if (uncheckpointed) cJSON_AddNumberToObject(m, "activations_without_checkpointing", (double)uncheckpointed);
    return log_object(l, o);
}

vp_status train_log_interrupted(struct train_log *l, uint64_t step, double elapsed) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "interrupted");
    cJSON_AddNumberToObject(o, "step", (double)step);
    add_number(o, "elapsed", elapsed);
    return log_object(l, o);
}

vp_status train_log_nonfinite(struct train_log *l, uint64_t step, bool applied, const char *tensor) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "nonfinite");
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddBoolToObject(o, "skipped", !applied);
    if (tensor && *tensor) cJSON_AddStringToObject(o, "tensor", tensor);
    return log_object(l, o);
}

vp_status train_log_step(struct train_log *l, const struct trainer_event *ev) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "step");
    cJSON_AddNumberToObject(o, "step", (double)ev->step);
    add_number(o, "epoch", ev->epoch);
    /* cJSON prints 17 significant digits when 15 do not round-trip, so a
     * float loss reads back exactly. */
    add_number(o, "loss", ev->last.loss);
    add_number(o, "lr", ev->last.lr);
    add_number(o, "grad_norm", ev->last.grad_norm);
    cJSON_AddNumberToObject(o, "tokens", (double)ev->tokens);
    add_number(o, "elapsed", ev->elapsed);
    return log_object(l, o);
}

vp_status train_log_eval(struct train_log *l, const struct trainer_event *ev) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "eval");
    cJSON_AddNumberToObject(o, "step", (double)ev->step);
    add_number(o, "epoch", ev->epoch);
    add_number(o, "loss", ev->eval->loss);
    add_number(o, "accuracy", ev->eval->metrics.accuracy);
    add_number(o, "macro_f1", ev->eval->metrics.macro_f1);
    add_number(o, "matthews", ev->eval->metrics.matthews);
    cJSON_AddNumberToObject(o, "count", (double)ev->eval->labelled);
    add_number(o, "elapsed", ev->elapsed);
    return log_object(l, o);
}

vp_status train_log_object(struct train_log *l, void *json_object) { return log_object(l, json_object); }

vp_status train_log_close(struct train_log *l) {
    if (!l) return VP_OK;
    vp_status s = VP_OK;
    if (fsync(l->fd) != 0) s = vp_fail(VP_ERROR_IO, "cannot flush %s: %s", l->path, strerror(errno));
    if (close(l->fd) != 0 && s == VP_OK) s = vp_fail(VP_ERROR_IO, "cannot close %s: %s", l->path, strerror(errno));
    free(l);
    return s;
}

/* ------------------------------------------------------------------------
 * Files published whole
 * ------------------------------------------------------------------------ */

vp_status train_file_open(struct train_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    if (snprintf(f->path, sizeof f->path, "%s", path) >= (int)sizeof f->path)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "path too long: %s", path);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld", path, (long)getpid());
    f->f = fopen(f->tmp, "wb");
    if (!f->f) return vp_fail(VP_ERROR_IO, "cannot create %s: %s", f->tmp, strerror(errno));
    return VP_OK;
}

vp_status train_file_printf(struct train_file *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(f->f, fmt, ap);
    va_end(ap);
    if (n < 0) return vp_fail(VP_ERROR_IO, "cannot write %s: %s", f->tmp, strerror(errno));
    return VP_OK;
}

vp_status train_file_commit(struct train_file *f) {
    FILE *fp = f->f;
    f->f = NULL;
    int err = 0;
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) err = errno;
    if (fclose(fp) != 0 && !err) err = errno;
    if (!err && rename(f->tmp, f->path) != 0) err = errno;
    if (err) {
        unlink(f->tmp);
        return vp_fail(VP_ERROR_IO, "cannot write %s: %s", f->path, strerror(err));
    }
    return VP_OK;
}

void train_file_abort(struct train_file *f) {
    if (!f->f) return;
    fclose(f->f);
    f->f = NULL;
    unlink(f->tmp);
}

/* ------------------------------------------------------------------------
 * Settings and results
 * ------------------------------------------------------------------------ */

static const char *schedule_name(enum schedule_kind k) {
    return k == SCHEDULE_COSINE ? "cosine" : k == SCHEDULE_CONSTANT ? "constant" : "linear";
}

static const char *storage_name(enum encoder_storage s) {
    switch (s) {
    case ENCODER_STORAGE_F32: return "f32";
    case ENCODER_STORAGE_F16: return "f16";
    case ENCODER_STORAGE_BF16: return "bf16";
    default: return "default";
    }
}

vp_status train_write_args(const char *path, const struct trainer_options *o, const char *model_dir,
                           const struct delta_spec *spec, const char *train_path, const char *eval_path,
                           uint64_t total_steps) {
    char *text = train_args_json(o, model_dir, spec, train_path, eval_path, total_steps);
    if (!text) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory writing %s", path);
    vp_status s = vp_file_write_atomic(path, text, strlen(text));
    free(text);
    return s;
}

char *train_args_json(const struct trainer_options *o, const char *model_dir, const struct delta_spec *spec,
                      const char *train_path, const char *eval_path, uint64_t total_steps) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "vkpeft", vp_version_string());
    cJSON_AddStringToObject(root, "model", model_dir);
    char *spec_json = delta_spec_to_json(spec);
    cJSON *sj = spec_json ? cJSON_Parse(spec_json) : NULL;
    free(spec_json);
    if (sj) cJSON_AddItemToObject(root, "delta", sj);
    cJSON_AddStringToObject(root, "train", train_path);
    if (eval_path) cJSON_AddStringToObject(root, "eval", eval_path);
    cJSON_AddStringToObject(root, "optimizer", o->optimizer == TRAINER_SGD ? "sgd" : "adamw");
    cJSON_AddNumberToObject(root, "lr", o->lr);
    cJSON_AddNumberToObject(root, "weight_decay", o->weight_decay);
    if (o->optimizer == TRAINER_SGD) {
        cJSON_AddNumberToObject(root, "momentum", o->momentum);
    } else {
        const double betas[2] = {o->beta1, o->beta2};
        cJSON_AddItemToObject(root, "betas", cJSON_CreateDoubleArray(betas, 2));
        cJSON_AddNumberToObject(root, "eps", o->eps);
    }
    cJSON_AddStringToObject(root, "schedule", schedule_name(o->schedule));
    cJSON_AddNumberToObject(root, "warmup_steps", (double)o->warmup_steps);
    cJSON_AddNumberToObject(root, "warmup_ratio", o->warmup_ratio);
    cJSON_AddNumberToObject(root, "clip", o->clip);
    cJSON_AddNumberToObject(root, "batch", o->batch);
    cJSON_AddNumberToObject(root, "accum", o->accum);
    cJSON_AddNumberToObject(root, "epochs", o->steps ? 0 : o->epochs);
    cJSON_AddNumberToObject(root, "steps", (double)total_steps);
    cJSON_AddNumberToObject(root, "max_len", o->max_len);
    cJSON_AddNumberToObject(root, "seed", (double)o->seed);
    cJSON_AddNumberToObject(root, "eval_every", (double)o->eval_every);
    if (o->dropout < 0) cJSON_AddStringToObject(root, "dropout", "model");
    else cJSON_AddNumberToObject(root, "dropout", o->dropout);
    cJSON_AddNumberToObject(root, "label_smoothing", o->label_smoothing);
    cJSON_AddStringToObject(root, "weights", storage_name(o->storage));
    if (o->checkpoint_activations) cJSON_AddTrueToObject(root, "checkpoint_activations");
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

char *train_eval_json(const struct trainer_eval_result *r) {
    cJSON *o = cJSON_CreateObject();
    add_number(o, "loss", r->loss);
    add_number(o, "accuracy", r->metrics.accuracy);
    add_number(o, "macro_f1", r->metrics.macro_f1);
    add_number(o, "matthews", r->metrics.matthews);
    cJSON_AddNumberToObject(o, "count", (double)r->labelled);
    cJSON_AddNumberToObject(o, "examples", (double)r->count);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}
