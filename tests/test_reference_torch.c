/* The C whole-model reference against an independent PyTorch implementation
 * (tests/python/vkpeft_torch.py, Debian's python3-torch): a tiny BERT and a
 * tiny RoBERTa written by PyTorch in Hugging Face naming are loaded from
 * safetensors, every preset's delta tensors are handed to both, and loss,
 * logits and every trainable gradient must agree.
 *
 * argv[1]: the script. VKPEFT_TORCH_PYTHON names the interpreter holding
 * torch (default /usr/bin/python3, where Debian installs python3-torch). */
#include "harness.h"
#include "torchtest.h"
#include "model.h"
#include "safetensors.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *script;
static char dir[64];

struct job {
    const char *label, *preset, *json;
};

static const struct job jobs[] = {
    {"adapter", "adapter:r=4", NULL},
    {"adapter-ffn", "adapter-ffn:r=4", NULL},
    {"prefix", "prefix:l=3", NULL},
    {"prefix-plain", NULL, "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":0}]}"},
    {"lora", "lora:r=2,a=3", NULL},
    {"lora-kod", NULL,
     "{\"modules\":[{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2},{\"kind\":\"lora\",\"at\":\"o\",\"rank\":3},"
     "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":2,\"alpha\":5},{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2}]}"},
    {"pa", "pa:r=4", NULL},
    {"scaled-pa", "scaled-pa:r=4", NULL},
    {"mh-pa", "mh-pa:r=3", NULL},
    {"mam", "mam:l=2,r=4,s=2", NULL},
    {"bitfit", "bitfit", NULL},
    {"full", "full", NULL},
    {"gated-mix", NULL,
     "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,"
     "\"act\":\"gelu\",\"compose\":\"gated\"},{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"sequential\","
     "\"bottleneck\":2,\"layers\":[1]},{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\","
     "\"bottleneck\":2,\"act\":\"identity\",\"compose\":\"scale\",\"scale\":0.5}]}"},
};
#define JOB_COUNT (sizeof jobs / sizeof jobs[0])

enum { B = 3, T = 6 };


/* Loads the PyTorch-written weights into the reference model. */
static bool load_weights(struct refm *m, const struct io_weights *w) {
    for (size_t i = 0; i < io_weights_count(w); i++) {
        const struct io_tensor *t = io_weights_at(w, i);
        double *v = malloc(t->numel * sizeof *v);
        for (uint64_t k = 0; k < t->numel; k++) v[k] = ((const float *)t->data)[k];
        vp_status s = refm_tensor_set(m, t->name, v, t->numel);
        free(v);
        if (!CHECKF(s == VP_OK, "%s: %s", t->name, vp_last_error())) return false;
    }
    return true;
}

static bool write_delta(struct refm *m, const char *path) {
    struct io_tensor_out *out = calloc((size_t)refm_tensor_count(m), sizeof *out);
    size_t n = 0;
    for (int i = 0; i < refm_tensor_count(m); i++) {
        struct refm_tensor *t = refm_tensor_at(m, i);
        if (!t->grad) continue;
        out[n] = (struct io_tensor_out){t->name, IO_DTYPE_F64, t->ndim, {0}, t->data};
        for (int k = 0; k < t->ndim; k++) out[n].shape[k] = t->shape[k];
        n++;
    }
    bool ok = CHECK(io_safetensors_write(path, out, n, NULL) == VP_OK);
    free(out);
    return ok;
}

static bool write_text(const char *path, const char *text) {
    return CHECK(vp_file_write_atomic(path, text, strlen(text)) == VP_OK);
}

static bool spec_of(const struct job *j, struct delta_spec *s) {
    vp_status st = j->json ? delta_spec_parse(j->json, strlen(j->json), j->label, s) : delta_spec_preset(j->preset, s);
    return CHECKF(st == VP_OK, "%s: %s", j->label, vp_last_error());
}

static double worst_error(const double *got, const double *want, size_t n, double atol, double rtol) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) / (atol + rtol * fabs(want[i]));
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

/* Compares one job's reference model with PyTorch's output file. Both run in
 * double precision; only summation order differs, so agreement to 1e-9
 * relative (1e-11 absolute near zero) is expected. */
static void compare(struct refm *m, double loss, const double *logits, int C, const char *path,
                    const char *what) {
    const double atol = 1e-11, rtol = 1e-9;
    struct io_safetensors *f;
    if (!CHECKF(io_safetensors_open(path, &f) == VP_OK, "%s: %s", what, vp_last_error())) return;
    const struct io_tensor *tl = io_safetensors_find(f, "loss"), *tg = io_safetensors_find(f, "logits");
    if (CHECKF(tl && tg && tg->numel == (uint64_t)B * C, "%s: torch output lacks loss/logits", what)) {
        double e = worst_error(&loss, tl->data, 1, atol, rtol);
        CHECKF(e <= 1, "%s: loss %.15g, torch %.15g", what, loss, *(const double *)tl->data);
        e = worst_error(logits, tg->data, (size_t)B * C, atol, rtol);
        CHECKF(e <= 1, "%s: logits differ from torch (%.3g x tolerance)", what, e);
    }
    size_t grads = 0;
    double worst = 0;
    for (int i = 0; i < refm_tensor_count(m); i++) {
        struct refm_tensor *t = refm_tensor_at(m, i);
        if (!t->grad) continue;
        char name[160];
        snprintf(name, sizeof name, "grad.%s", t->name);
        const struct io_tensor *g = io_safetensors_find(f, name);
        if (!CHECKF(g && g->numel == t->n, "%s: torch has no %s", what, name)) continue;
        double e = worst_error(t->grad, g->data, t->n, atol, rtol);
        CHECKF(e <= 1, "%s: %s differs from torch (%.3g x tolerance)", what, t->name, e);
        if (e > worst) worst = e;
        grads++;
    }
    th_diag("%-22s %3zu gradient tensors, worst %.3g x tolerance", what, grads, worst);
    CHECK(grads > 0);
    io_safetensors_close(f);
}

static void family(bool bert) {
    const char *fam = bert ? "bert" : "roberta";
    char model[128];
    snprintf(model, sizeof model, "%s/%s", dir, fam);
    if (!torch_sh("mkdir -p '%s' && '%s' '%s' make-model %s '%s' --seed 7", model, torch_python(), script, fam, model))
        return;
    struct model_arch arch;
    struct io_weights *w;
    if (!CHECKF(model_arch_load(model, &arch) == VP_OK, "%s", vp_last_error())) return;
    if (!CHECKF(io_weights_open(model, &w) == VP_OK, "%s", vp_last_error())) return;
    const int pad = arch.pad_token_id;
    const int32_t ids[B * T] = {bert ? 2 : 0, 5, 9, 12, 3, 17, 4, 8, 30, pad, pad, pad, 11, 6, 6, 21, 2, pad};
    const uint8_t mask[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0};
    const int32_t types[B * T] = {0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0};
    const int32_t labels[B] = {2, 0, 1};
    const double smoothing = bert ? 0.0 : 0.1;
    char batch_json[1024];
    snprintf(batch_json, sizeof batch_json,
             "{\"input_ids\":[[%d,%d,%d,%d,%d,%d],[%d,%d,%d,%d,%d,%d],[%d,%d,%d,%d,%d,%d]],"
             "\"attention_mask\":[[1,1,1,1,1,1],[1,1,1,0,0,0],[1,1,1,1,1,0]],"
             "\"token_type_ids\":[[%d,%d,%d,%d,%d,%d],[%d,%d,%d,%d,%d,%d],[%d,%d,%d,%d,%d,%d]],"
             "\"labels\":[2,0,1],\"label_smoothing\":%g}",
             ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6], ids[7], ids[8], ids[9], ids[10], ids[11],
             ids[12], ids[13], ids[14], ids[15], ids[16], ids[17], bert ? types[0] : 0, bert ? types[1] : 0,
             bert ? types[2] : 0, bert ? types[3] : 0, bert ? types[4] : 0, bert ? types[5] : 0,
             bert ? types[6] : 0, bert ? types[7] : 0, bert ? types[8] : 0, bert ? types[9] : 0,
             bert ? types[10] : 0, bert ? types[11] : 0, bert ? types[12] : 0, bert ? types[13] : 0,
             bert ? types[14] : 0, bert ? types[15] : 0, bert ? types[16] : 0, bert ? types[17] : 0, smoothing);
    char path[256];
    snprintf(path, sizeof path, "%s/batch.json", model);
    write_text(path, batch_json);
    const struct refm_batch batch = {.ids = ids, .mask = mask, .type_ids = bert ? types : NULL,
                                     .labels = labels, .B = B, .T = T};
    struct refm *models[JOB_COUNT] = {0};
    double losses[JOB_COUNT], logits[JOB_COUNT][B * 8];
    char jobs_json[16384] = "[";
    for (size_t j = 0; j < JOB_COUNT; j++) {
        struct delta_spec spec;
        if (!spec_of(&jobs[j], &spec)) continue;
        const struct refm_options opt = {.seed = 100 + j, .weight_std = 0.3, .randomise_zero_init = true,
                                         .label_smoothing = smoothing};
        if (!CHECKF(refm_create(&models[j], &arch, &spec, &opt) == VP_OK, "%s", vp_last_error())) continue;
        if (!load_weights(models[j], w)) continue;
        losses[j] = refm_forward(models[j], logits[j], &batch);
        refm_zero_grad(models[j]);
        refm_backward(models[j]);
        char *sj = delta_spec_to_json(&spec);
        snprintf(path, sizeof path, "%s/spec-%zu.json", model, j);
        write_text(path, sj);
        free(sj);
        snprintf(path, sizeof path, "%s/delta-%zu.safetensors", model, j);
        write_delta(models[j], path);
        snprintf(jobs_json + strlen(jobs_json), sizeof jobs_json - strlen(jobs_json),
                 "%s{\"model\":\"%s\",\"spec\":\"%s/spec-%zu.json\",\"delta\":\"%s/delta-%zu.safetensors\","
                 "\"batch\":\"%s/batch.json\",\"out\":\"%s/out-%zu.safetensors\"}",
                 j ? "," : "", model, model, j, model, j, model, model, j);
    }
    strcat(jobs_json, "]");
    snprintf(path, sizeof path, "%s/jobs.json", model);
    write_text(path, jobs_json);
    if (torch_sh("'%s' '%s' run-many '%s'", torch_python(), script, path))
        for (size_t j = 0; j < JOB_COUNT; j++) {
            if (!models[j]) continue;
            char what[64];
            snprintf(what, sizeof what, "%s %s", fam, jobs[j].label);
            snprintf(path, sizeof path, "%s/out-%zu.safetensors", model, j);
            compare(models[j], losses[j], logits[j], arch.num_labels, path, what);
        }
    for (size_t j = 0; j < JOB_COUNT; j++) refm_destroy(models[j]);
    io_weights_close(w);
    model_arch_finish(&arch);
}

static void bert_matches_torch(void) { family(true); }
static void roberta_matches_torch(void) { family(false); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_reference_torch SCRIPT\n");
        return 2;
    }
    script = argv[1];
    snprintf(dir, sizeof dir, "/tmp/vkpeft-torch-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    static const struct th_case cases[] = {TH_CASE(bert_matches_torch), TH_CASE(roberta_matches_torch)};
    int rc = th_main(cases, 2, argc - 1, argv + 1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
