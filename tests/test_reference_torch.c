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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct torch_run torch;

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

static bool spec_of(const struct job *j, struct delta_spec *s) {
    return CHECKF(ref_spec_load(s, j->label, j->preset, j->json, -1) == VP_OK, "%s: %s", j->label, vp_last_error());
}

/* Both run in double precision; only summation order differs, so agreement
 * to 1e-9 relative (1e-11 absolute near zero) is expected. */
#define TORCH_RTOL 1e-9
#define TORCH_ATOL 1e-11

static void family(bool bert) {
    const char *fam = bert ? "bert" : "roberta";
    char model[128];
    snprintf(model, sizeof model, "%s/%s", torch.dir, fam);
    if (!torch_sh("mkdir -p '%s' && '%s' '%s' make-model %s '%s' --seed 7", model, torch_python(), torch.script, fam,
                  model))
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
    char batch_path[256], path[256];
    snprintf(batch_path, sizeof batch_path, "%s/batch.json", model);
    torch_write_text(batch_path, batch_json);
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
        torch_add_job(jobs_json, sizeof jobs_json, model, j, &spec, &models[j]->tensors, batch_path);
    }
    if (torch_run_jobs(&torch, model, jobs_json, sizeof jobs_json))
        for (size_t j = 0; j < JOB_COUNT; j++) {
            if (!models[j]) continue;
            char what[64];
            snprintf(what, sizeof what, "%s %s", fam, jobs[j].label);
            snprintf(path, sizeof path, "%s/out-%zu.safetensors", model, j);
            torch_compare_ref(&models[j]->tensors, losses[j], logits[j], (size_t)B * arch.num_labels, path, TORCH_ATOL,
                              TORCH_RTOL, what);
        }
    for (size_t j = 0; j < JOB_COUNT; j++) refm_destroy(models[j]);
    io_weights_close(w);
    model_arch_finish(&arch);
}

static void bert_matches_torch(void) { family(true); }
static void roberta_matches_torch(void) { family(false); }

int main(int argc, char **argv) {
    static const struct th_case cases[] = {TH_CASE(bert_matches_torch), TH_CASE(roberta_matches_torch)};
    return torch_main(argc, argv, "torch", &torch, cases, sizeof cases / sizeof cases[0]);
}
