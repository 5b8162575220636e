#include "clitest.h"

#include "model.h"
#include "safetensors.h"
#include "spec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

bool write_text(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL)) return false;
    fputs(text, f);
    return CHECK(fclose(f) == 0);
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

