#include "clitest.h"

#include "model.h"
#include "safetensors.h"
#include "spec.h"
#include "trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *vkpeft;
char root[256];

struct result r;

/* Runs "env <env> vkpeft <args>" in the test's folder through the shell. */
void run_env(const char *env, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && env %s '%s' %s 2>&1", root, env ? env : "", vkpeft, args);
    r.code = -1;
    r.out[0] = 0;
    FILE *p = popen(cmd, "r");
    if (!p) {
        FAIL("popen failed for %s", cmd);
        return;
    }
    size_t n = fread(r.out, 1, sizeof r.out - 1, p);
    r.out[n] = 0;
    int status = pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    CHECKF(strstr(r.out, "vkpeft: validation") == NULL, "validation message from '%s':\n%s", args, r.out);
}

void run(const char *args) { run_env(NULL, args); }


void teardown(void) {
    if (!root[0]) return;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}

bool exists(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    return access(path, F_OK) == 0;
}

bool log_activations(const char *name, double *with, double *without) {
    char path[512], *log = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/%s", root, name);
    *with = *without = NAN;
    if (vp_file_read(path, (void **)&log, &n) != VP_OK) return false;
    char *nl = strchr(log, '\n');
    if (nl) *nl = 0;
    cJSON *start = cJSON_Parse(log), *mem = cJSON_GetObjectItem(start, "memory");
    *with = json_number(mem, "activations");
    *without = json_number(mem, "activations_without_checkpointing");
    cJSON_Delete(start);
    free(log);
    return *with > 0 && *without > *with;
}

int clitest_main(int argc, char **argv, const struct th_case *cases, size_t count) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/vkpeft\n", argv[0]);
        return 2;
    }
    static char full[4096];
    vkpeft = realpath(argv[1], full) ? full : argv[1];
    return th_main(cases, count, argc - 1, argv + 1);
}

char *path_in(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", root, name);
    return p[k];
}

bool write_text(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL)) return false;
    fputs(text, f);
    return CHECK(fclose(f) == 0);
}

bool same_bytes(const char *a, const char *b) {
    void *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/%s", root, a);
    snprintf(pb, sizeof pb, "%s/%s", root, b);
    const bool same = vp_file_read(pa, &x, &nx) == VP_OK && vp_file_read(pb, &y, &ny) == VP_OK && nx > 0 &&
                      nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

bool write_xy_tokenizer(const char *dir, bool bos_eos) {
    char vocab[1024] = "\"[PAD]\":0,\"[UNK]\":1,\"<s>\":2,\"</s>\":3";
    for (int i = 0; i < 8; i++)
        snprintf(vocab + strlen(vocab), sizeof vocab - strlen(vocab), ",\"x%d\":%d,\"y%d\":%d", i, 4 + i, i, 12 + i);
    char text[4096], path[256];
#define ADDED(id, name) "{\"id\":" #id ",\"content\":\"" name "\",\"single_word\":false,\"lstrip\":false," \
                        "\"rstrip\":false,\"normalized\":false,\"special\":true}"
#define SPECIAL(name, id) "\"" name "\":{\"id\":\"" name "\",\"ids\":[" #id "],\"tokens\":[\"" name "\"]}"
#define TOKEN(kind, name) "{\"" kind "\":{\"id\":\"" name "\",\"type_id\":0}}"
    const char *tpl = bos_eos ? "{\"type\":\"TemplateProcessing\",\"single\":[" TOKEN("SpecialToken", "<s>") ","
                                TOKEN("Sequence", "A") "," TOKEN("SpecialToken", "</s>") "],\"pair\":["
                                TOKEN("Sequence", "A") "," TOKEN("Sequence", "B") "],\"special_tokens\":{"
                                SPECIAL("<s>", 2) "," SPECIAL("</s>", 3) "}}"
                              : "null";
    snprintf(text, sizeof text,
             "{\"version\":\"1.0\",\"added_tokens\":[" ADDED(0, "[PAD]") "," ADDED(1, "[UNK]") "," ADDED(2, "<s>") ","
             ADDED(3, "</s>") "],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"},"
             "\"post_processor\":%s,\"decoder\":null,\"model\":{\"type\":\"WordLevel\",\"unk_token\":\"[UNK]\","
             "\"vocab\":{%s}}}", tpl, vocab);
#undef ADDED
#undef SPECIAL
#undef TOKEN
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    bool ok = write_text(path, text);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    return ok && write_text(path, "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"pad_token\":\"[PAD]\"}");
}

/* The JSON object in the output (the first '{' to the end). */
cJSON *output_json(void) {
    const char *brace = strchr(r.out, '{');
    cJSON *j = brace ? cJSON_Parse(brace) : NULL;
    CHECKF(j != NULL, "no JSON in:\n%s", r.out);
    return j;
}

double json_number(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

bool profile_consistent(const cJSON *j) {
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "profile_step");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "profile");
    const double dispatches = json_number(step, "dispatches"), transfers = json_number(step, "transfers");
    const double barriers = json_number(step, "barriers"), gpu = json_number(step, "gpu_us");
    bool ok = CHECKF(cJSON_IsArray(rows) && dispatches > 0 && transfers >= 0, "%g dispatches, %g copies and fills",
                     dispatches, transfers);
    ok &= CHECKF(barriers > 0 && barriers < dispatches + transfers, "%g barriers", barriers);
    ok &= CHECKF(gpu > 0 && json_number(step, "wall_us") > 0, "GPU %g us", gpu);
    double calls = 0, kernel_calls = 0, total = 0, percent = 0, prev = INFINITY, waited = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const double c = json_number(row, "calls"), t = json_number(row, "total_us");
        const double b = json_number(row, "after_barrier"), groups = json_number(row, "workgroups");
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "kernel"));
        const bool transfer = k && (strcmp(k, "copy") == 0 || strcmp(k, "fill") == 0);
        ok &= CHECKF(k && c >= 1 && t >= 0 && t <= prev, "a row of %g calls, %g us after %g", c, t, prev);
        ok &= CHECK(fabs(json_number(row, "mean_us") - t / c) <= 1e-6 * t + 1e-9);
        ok &= CHECKF(b >= 0 && b <= c && (transfer ? groups == 0 : groups >= c), "%s: %g of %g calls after a barrier, "
                     "%g workgroups", k ? k : "?", b, c, groups);
        waited += b;
        calls += c;
        if (k && !transfer) kernel_calls += c;
        total += t;
        percent += json_number(row, "percent");
        prev = t;
    }
    ok &= CHECKF(kernel_calls == dispatches && calls == dispatches + transfers, "%g calls of kernels, %g in all",
                 kernel_calls, calls);
    ok &= CHECKF(total <= gpu * (1 + 1e-9) && total >= gpu * (1 - 1e-6), "rows %g us, the step %g us", total, gpu);
    ok &= CHECKF(fabs(percent - 100) < 1e-6, "%g%%", percent);
    ok &= CHECKF(waited == barriers, "%g calls after a barrier, %g barriers", waited, barriers);
    return ok;
}

bool generation_plan_consistent(const cJSON *j, int rows, int new_tokens, double cache_bytes, bool same_shape) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "generation"), *plan = cJSON_GetObjectItem(j, "plan");
    if (!CHECKF(cJSON_IsObject(g), "no generation plan: %s",
                cJSON_GetStringValue(cJSON_GetObjectItem(j, "generation_error"))))
        return false;
    const cJSON *model = cJSON_GetObjectItem(g, "model"), *gen = cJSON_GetObjectItem(g, "generator");
    const cJSON *total = cJSON_GetObjectItem(g, "total");
    bool ok = CHECKF(json_number(g, "rows") == rows && json_number(g, "max_new_tokens") == new_tokens,
                     "%g rows, %g new tokens", json_number(g, "rows"), json_number(g, "max_new_tokens"));
    for (const char *const *p = (const char *const[]){"frozen", "trainable", "activations", "staging", "total", NULL};
         *p; p++) {
        ok &= CHECKF(json_number(total, *p) == json_number(model, *p) + json_number(gen, *p), "%s: %g + %g != %g", *p,
                     json_number(model, *p), json_number(gen, *p), json_number(total, *p));
        if (same_shape)
            ok &= CHECKF(json_number(model, *p) == json_number(plan, *p), "%s: the model at the generation's shape "
                         "takes %g, the memory plan %g", *p, json_number(model, *p), json_number(plan, *p));
    }
    ok &= CHECKF(json_number(gen, "frozen") == 0 && json_number(gen, "trainable") == 0 &&
                     json_number(gen, "staging") > 0 && json_number(gen, "activations") >= cache_bytes,
                 "the generator: %g activations (caches alone %g), %g staging, %g frozen", json_number(gen, "activations"),
                 cache_bytes, json_number(gen, "staging"), json_number(gen, "frozen"));
    return ok;
}

bool profile_has(const cJSON *rows, const char *site, const char *kernel) {
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(row, "kernel");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(row, "site");
        if (!cJSON_IsString(k) || strncmp(k->valuestring, kernel, strlen(kernel)) != 0) continue;
        if (!site || (cJSON_IsString(st) && strcmp(st->valuestring, site) == 0)) return true;
    }
    return false;
}

/* ------------------------------------------------------------------------
 * Model folders and data
 * ------------------------------------------------------------------------ */

#define CONFIG                                                                                        \
    "{\"model_type\":\"%s\",\"vocab_size\":40,\"hidden_size\":32,\"num_hidden_layers\":2,"           \
    "\"num_attention_heads\":2,\"intermediate_size\":64,\"max_position_embeddings\":42,"             \
    "\"type_vocab_size\":1,\"pad_token_id\":1,\"layer_norm_eps\":1e-5,\"num_labels\":3,"             \
    "\"id2label\":{\"0\":\"three\",\"1\":\"four\",\"2\":\"five\"}}"

/* Writes folder `name` with random weights; `skip` names a tensor to
 * leave out (NULL: none). */
bool write_model(const char *name, const char *model_type, const char *skip) {
    char dir[512], path[600], json[1024];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    if (!CHECK(mkdir(dir, 0755) == 0)) return false;
    snprintf(json, sizeof json, CONFIG, model_type);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!CHECK(vp_file_write_atomic(path, json, strlen(json)) == VP_OK)) return false;
    char good[1024];
    snprintf(good, sizeof good, CONFIG, "roberta");
    struct model_arch arch;
    struct delta_spec spec;
    if (!CHECK(model_arch_parse(good, strlen(good), "config.json", &arch) == VP_OK) ||
        !CHECK(delta_spec_preset("bitfit", &spec) == VP_OK))
        return false;
    struct refm *m;
    const struct refm_options ro = {.seed = 12, .weight_std = 0.2};
    bool ok = CHECKF(refm_create(&m, &arch, &spec, &ro) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    if (!ok) return false;
    static const char *const keep[] = {"roberta.", "classifier.", NULL};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ok = write_reference_weights(path, m, keep, skip);
    refm_destroy(m);
    return ok;
}

bool write_reference_weights(const char *path, struct refm *m, const char *const *prefixes, const char *skip) {
    const int count = refm_tensor_count(m);
    struct io_tensor_out *out = calloc((size_t)count, sizeof *out);
    float **data = calloc((size_t)count, sizeof *data);
    size_t n = 0;
    for (int k = 0; k < count; k++) {
        struct refm_tensor *t = refm_tensor_at(m, k);
        bool wanted = false;
        for (int p = 0; prefixes[p] && !wanted; p++) wanted = strncmp(t->name, prefixes[p], strlen(prefixes[p])) == 0;
        if (!wanted || (skip && strcmp(t->name, skip) == 0)) continue;
        data[n] = malloc(t->n * sizeof **data);
        for (size_t i = 0; i < t->n; i++) data[n][i] = (float)t->data[i];
        out[n] = (struct io_tensor_out){t->name, IO_DTYPE_F32, t->ndim, {0}, data[n]};
        for (int i = 0; i < t->ndim; i++) out[n].shape[i] = t->shape[i];
        n++;
    }
    bool ok = CHECKF(io_safetensors_write(path, out, n, NULL) == VP_OK, "%s", vp_last_error());
    for (size_t k = 0; k < n; k++) free(data[k]);
    free(data);
    free(out);
    return ok;
}

/* The task: the label is which marker (3, 4, 5) the sequence holds. */
bool write_task(const char *name, int count, uint64_t seed, bool labels) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL)) return false;
    uint64_t st = seed;
    for (int i = 0; i < count; i++) {
        const int len = 6 + (int)(th_rand_u64(&st) % 11);
        const int label = (int)(th_rand_u64(&st) % 3);
        const int at = 1 + (int)(th_rand_u64(&st) % (uint64_t)(len - 1));
        fprintf(f, "{\"input_ids\": [0");
        for (int t = 1; t < len; t++) fprintf(f, ", %d", t == at ? 3 + label : 6 + (int)(th_rand_u64(&st) % 34));
        if (labels) fprintf(f, "], \"label\": %d}\n", label);
        else fprintf(f, "]}\n");
    }
    return CHECK(fclose(f) == 0);
}


/* ------------------------------------------------------------------------
 * Killing runs (SIGKILL at random moments) and resuming them
 * ------------------------------------------------------------------------ */

/* Starts vkpeft with `args` (split on spaces) in root, output to
 * root/run.log; returns the pid. */
int spawn_vkpeft(const char *env, const char *args) {
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", args);
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)vkpeft;
    for (char *t = strtok(buf, " "); t && argc < 63; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    const pid_t pid = fork();
    if (pid == 0) {
        if (chdir(root) != 0) _exit(127);
        FILE *f = freopen("run.log", "a", stderr);
        if (!f || dup2(fileno(stderr), 1) < 0) _exit(127);
        if (env) putenv((char *)env);
        execv(vkpeft, argv);
        _exit(127);
    }
    return pid;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The checkpoint in dir, if any, must load. Returns false when absent. */
bool checkpoint_loads(const char *dir, uint64_t *step) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/checkpoint.vkpc", root, dir);
    if (access(path, F_OK) != 0) return false;
    struct trainer_position pos;
    char *settings = NULL;
    CHECKF(train_checkpoint_load(path, NULL, &pos, &settings) == VP_OK, "%s", vp_last_error());
    CHECK(settings != NULL && strstr(settings, "\"train_file\"") != NULL);
    free(settings);
    *step = pos.steps + pos.skipped;
    return true;
}


bool kill_and_resume(const char *args, const char *ref, const char *out, int kill_trials, uint64_t seed,
                     struct kill_stats *st) {
    memset(st, 0, sizeof *st);
    char whole[2048];
    snprintf(whole, sizeof whole, "%s --out %s", args, ref);
    const double t0 = vp_now();
    run(whole);
    if (!CHECKF(r.code == 0, "the uninterrupted run: %s", r.out)) return false;
    const long run_ms = (long)((vp_now() - t0) * 1e3);
    const long min_ms = run_ms / 20 > 10 ? run_ms / 20 : 10, max_ms = run_ms / 4 > min_ms ? run_ms / 4 : min_ms + 10;
    uint64_t rng = seed;
    /* Kill until kill_trials kills are taken, then let a run finish. On a
     * fast device a run may finish inside the kill window: it removes its
     * checkpoint, so the next run starts afresh, and killing goes on. */
    for (int trial = 0; trial < 4 * kill_trials + 40 && !st->done; trial++) {
        uint64_t at = 0;
        const bool have = checkpoint_loads(out, &at);
        CHECKF(!have || at >= st->last, "the checkpoint went back from step %llu to %llu",
               (unsigned long long)st->last, (unsigned long long)at);
        /* No checkpoint: none was reached yet, or a run finished (and
         * removed it) but was killed on its way out; either way the next
         * run starts afresh. */
        st->last = have ? at : 0;
        /* Every third try pauses inside the checkpoint write, so most of
         * those kills land there. */
        const bool pause = trial % 3 == 1;
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%s --out %s %s", args, out, have ? "--resume" : "--overwrite");
        const pid_t pid = spawn_vkpeft(pause ? "VKPEFT_TEST_CHECKPOINT_PAUSE=0.2" : NULL, cmd);
        if (!CHECK(pid > 0)) return false;
        have ? st->resumes++ : st->fresh++;
        /* Kill after min_ms .. max_ms (start-up included). */
        const bool killing = st->kills < kill_trials;
        const long delay = min_ms + (long)(th_rand_u64(&rng) % (uint64_t)(max_ms - min_ms));
        int status = 0;
        pid_t w = 0;
        for (long t = 0; killing && t < delay && (w = waitpid(pid, &status, WNOHANG)) == 0; t += 10) sleep_ms(10);
        if (w == 0 && killing) {
            kill(pid, SIGKILL);
            st->kills++;
            st->inside_write += pause;
        }
        if (w == 0) w = waitpid(pid, &status, 0);
        if (WIFEXITED(status)) {
            if (!CHECKF(WEXITSTATUS(status) == 0, "trial %d: exit %d", trial, WEXITSTATUS(status))) {
                void *log = NULL;
                size_t n = 0;
                char path[512];
                snprintf(path, sizeof path, "%s/run.log", root);
                if (vp_file_read(path, &log, &n) == VP_OK) th_diag("its output ends:\n%s", (char *)log + (n > 800 ? n - 800 : 0));
                free(log);
            }
            st->done = WEXITSTATUS(status) == 0 && !killing;
        }
    }
    th_diag("%d kills at %ld..%ld ms (%d with the checkpoint write paused), %d resumes, %d fresh starts; last "
            "checkpoint at step %llu", st->kills, min_ms, max_ms, st->inside_write, st->resumes, st->fresh,
            (unsigned long long)st->last);
    return true;
}
