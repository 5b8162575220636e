#define _POSIX_C_SOURCE 200809L
#include "cli_checkpoint.h"

#include "cli.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char cli_checkpoint_help[] =
    "  --checkpoint-every N write --out/checkpoint.vkpc every N steps (default: at the\n"
    "                       end of every epoch). It holds the delta, the optimiser's\n"
    "                       moments, the step, the data position and the random state,\n"
    "                       and is replaced whole (temporary file, fsync, rename), so a\n"
    "                       kill at any moment leaves the previous one or the new one\n"
    "  --no-checkpoint      write no checkpoint\n"
    "  --resume             continue the run in --out from its checkpoint (same command\n"
    "                       line plus --resume): the final delta is bit for bit the one\n"
    "                       an uninterrupted run writes on the same device\n"
    "  --on-nonfinite skip|stop  a step whose loss or gradient norm is NaN or Inf:\n"
    "                       skip its update (default; parameters, moments and the step\n"
    "                       count stay) or stop the run; either way the step and the\n"
    "                       first tensor whose gradient went non-finite are reported\n";

bool cli_checkpoint_flag(struct cli_checkpoint *c, const char *arg) {
    if (strcmp(arg, "--resume") == 0) c->resume = true;
    else if (strcmp(arg, "--no-checkpoint") == 0) c->off = true;
    else return false;
    return true;
}

bool cli_checkpoint_takes(const char *name) {
    return strcmp(name, "--checkpoint-every") == 0 || strcmp(name, "--on-nonfinite") == 0;
}

int cli_checkpoint_option(const char *cmd, struct cli_checkpoint *c, const char *name, const char *v) {
    if (strcmp(name, "--checkpoint-every") == 0) {
        char *end;
        errno = 0;
        const unsigned long long n = strtoull(v, &end, 10);
        if (errno || *end || *v < '0' || *v > '9' || n == 0) {
            cli_usage_error(cmd, "--checkpoint-every wants a number of steps >= 1, got '%s'", v);
            return 2;
        }
        c->every = n;
        return 1;
    }
    if (strcmp(name, "--on-nonfinite") == 0) {
        if (strcmp(v, "skip") == 0) c->on_nonfinite = TRAINER_NONFINITE_SKIP;
        else if (strcmp(v, "stop") == 0) c->on_nonfinite = TRAINER_NONFINITE_STOP;
        else {
            cli_usage_error(cmd, "--on-nonfinite wants skip or stop, got '%s'", v);
            return 2;
        }
        return 1;
    }
    return 0;
}

int cli_checkpoint_check(const char *cmd, const struct cli_checkpoint *c, const char *out, bool overwrite) {
    if (!c->resume) return 0;
    if (overwrite)
        return cli_usage_error(cmd, "--resume continues the run in --out; --overwrite would start it again");
    if (c->off) return cli_usage_error(cmd, "--resume needs checkpoints; drop --no-checkpoint");
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.vkpc", out);
    if (access(path, R_OK) != 0)
        return cli_usage_error(cmd, "--resume: %s has no checkpoint (checkpoint.vkpc): the run never reached one, "
                               "or it finished; start it again without --resume", out);
    return 0;
}

/* A file's identity: its size and FNV-1a hash. */
static vp_status file_identity(const char *path, cJSON *o, const char *key) {
    void *data;
    size_t size;
    vp_status s = vp_file_read(path, &data, &size);
    if (s != VP_OK) return s;
    char text[64];
    snprintf(text, sizeof text, "%zu bytes, fnv1a %016llx", size,
             (unsigned long long)vp_hash_bytes(VP_HASH_INIT, data, size));
    free(data);
    cJSON_AddStringToObject(o, key, text);
    return VP_OK;
}

vp_status cli_run_settings(const char *args_json, const char *model, const char *data, const char *eval,
                           const char *init, char **out) {
    *out = NULL;
    cJSON *o = args_json ? cJSON_Parse(args_json) : NULL;
    if (!o) return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    cJSON_DeleteItemFromObjectCaseSensitive(o, "vkpeft");
    /* Activation checkpointing changes memory and time, not results (the
     * recomputed activations are bit-identical): a run may resume with or
     * without it. */
    cJSON_DeleteItemFromObjectCaseSensitive(o, "checkpoint_activations");
    char config[4200];
    snprintf(config, sizeof config, "%s/config.json", model);
    vp_status s = file_identity(data, o, "train_file");
    if (s == VP_OK && eval) s = file_identity(eval, o, "eval_file");
    if (s == VP_OK) s = file_identity(config, o, "model_config");
    if (s == VP_OK && init) cJSON_AddStringToObject(o, "init_delta", init);
    if (s == VP_OK && !(*out = cJSON_PrintUnformatted(o))) s = vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    cJSON_Delete(o);
    return s;
}

int cli_compare_settings(const char *cmd, const char *path, const char *saved, const char *now) {
    cJSON *a = saved ? cJSON_Parse(saved) : NULL, *b = cJSON_Parse(now);
    int rc = 0;
    if (!cJSON_IsObject(a)) {
        rc = cli_usage_error(cmd, "--resume: %s holds no run settings", path);
    } else {
        for (const cJSON *x = a->child; x && !rc; x = x->next) {
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
            char *xs = cJSON_PrintUnformatted(x), *ys = y ? cJSON_PrintUnformatted(y) : NULL;
            if (!ys || strcmp(xs, ys) != 0)
                rc = cli_usage_error(cmd, "--resume: the checkpoint's run has %s %s, this one %s; resume with the "
                                     "same command line (and data), or start a new run",
                                     x->string, xs, ys ? ys : "none");
            free(xs);
            free(ys);
        }
        for (const cJSON *y = b ? b->child : NULL; y && !rc; y = y->next)
            if (!cJSON_GetObjectItemCaseSensitive(a, y->string))
                rc = cli_usage_error(cmd, "--resume: this run sets %s, the checkpoint's did not", y->string);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    return rc;
}

void cli_print_resume_command(const struct cli_checkpoint *c) {
    fprintf(stderr, "  vkpeft");
    for (int i = 0; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--overwrite") == 0 || strcmp(c->argv[i], "--resume") == 0) continue;
        fprintf(stderr, " %s", c->argv[i]);
    }
    fprintf(stderr, " --resume\n");
}

void cli_remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        const char *t = strstr(e->d_name, ".tmp.");
        if (!t || t == e->d_name || !t[5] || strspn(t + 5, "0123456789") != strlen(t + 5)) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static int begin(const char *cmd, const struct cli_checkpoint *c, const char *out, struct delta_params *p,
                 const char *args_json, const char *settings, struct trainer_position *pos, const char *path);

int cli_checkpoint_begin(const char *cmd, const struct cli_checkpoint *c, const struct cli_run_files *files,
                         struct delta_params *p, const char *args_json, char **settings_out,
                         struct trainer_position *pos, char *path, size_t size) {
    const char *out = files->out;
    *settings_out = NULL;
    snprintf(path, size, "%s/checkpoint.vkpc", out);
    memset(pos, 0, sizeof *pos);
    char *settings = NULL;
    vp_status s = args_json ? cli_run_settings(args_json, files->model, files->data, files->eval, files->init, &settings)
                            : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    const int rc = s == VP_OK ? begin(cmd, c, out, p, args_json, settings, pos, path) : cli_fail(s);
    if (rc) free(settings);
    else *settings_out = settings;
    return rc;
}

static int begin(const char *cmd, const struct cli_checkpoint *c, const char *out, struct delta_params *p,
                 const char *args_json, const char *settings, struct trainer_position *pos, const char *path) {
    if (c->resume) {
        char *saved = NULL;
        vp_status s = train_checkpoint_load(path, p, pos, &saved);
        if (s != VP_OK) return cli_fail(s);
        const int rc = cli_compare_settings(cmd, path, saved, settings);
        free(saved);
        if (rc) return rc;
    }
    vp_status s = vp_mkdir_p(out);
    if (s != VP_OK) return cli_fail(s);
    cli_remove_stale_temporaries(out);
    if (!c->resume) unlink(path); /* an earlier run's (--overwrite) */
    char args[4200];
    snprintf(args, sizeof args, "%s/train_args.json", out);
    s = vp_file_write_atomic(args, args_json, strlen(args_json));
    return s == VP_OK ? 0 : cli_fail(s);
}

int cli_report_device_lost(const struct cli_checkpoint *c, const char *path) {
    fprintf(stderr, "vkpeft: the device was lost during training: %s\n", vp_last_error());
    struct trainer_position at;
    if (!c->off && train_checkpoint_load(path, NULL, &at, NULL) == VP_OK) {
        fprintf(stderr, "the last checkpoint is %s (after step %llu); once the device is back, resume with:\n", path,
                (unsigned long long)(at.steps + at.skipped));
        cli_print_resume_command(c);
    } else {
        fprintf(stderr, "no checkpoint was written yet; run the command again\n");
    }
    return EXIT_RUNTIME;
}

void cli_report_nonfinite(const struct trainer_summary *sum, const char *log_path, bool tty) {
    if (!sum->nonfinite_step) return;
    fprintf(stderr, "%svkpeft: step %llu: the loss or the gradient norm is not finite (%s%s); %s%llu such step(s) "
            "in all, see %s\n", tty ? "\r\033[K" : "", (unsigned long long)sum->nonfinite_step,
            sum->nonfinite_tensor[0] ? "first non-finite gradient: " : "the gradients are finite",
            sum->nonfinite_tensor, sum->diverged ? "stopped there (--on-nonfinite stop); " : "its update skipped; ",
            (unsigned long long)(sum->skipped + (sum->diverged ? 1 : 0)), log_path);
}

void cli_report_resume(const struct cli_checkpoint *c, const char *path) {
    if (c->off || access(path, R_OK) != 0) return;
    fprintf(stderr, "to continue from the last checkpoint (%s):\n", path);
    cli_print_resume_command(c);
}
