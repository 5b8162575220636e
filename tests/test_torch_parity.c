/* vkpeft's GPU model against an independent PyTorch implementation
 * (tests/python/vkpeft_torch.py, Debian's python3-torch): PyTorch writes a
 * tiny BERT and a tiny RoBERTa in Hugging Face naming as safetensors; vkpeft
 * loads them, both get the same random delta and head tensors, and loss,
 * logits and every trainable gradient must agree for lora, adapter, prefix,
 * pa and mam (and the rest of the presets).
 *
 * argv[1]: the script. VKPEFT_TORCH_PYTHON names the interpreter holding
 * torch (default /usr/bin/python3). */
#include "encoder.h"
#include "safetensors.h"
#include "torchtest.h"
#include "vktest.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *script;
static char dir[64];

static const char *const presets[] = {"lora:r=2,a=3", "adapter:r=4", "prefix:l=3", "pa:r=4",
                                      "mam:l=2,r=4,s=2", "adapter-ffn:r=4", "scaled-pa:r=4",
                                      "mh-pa:r=3", "bitfit", "full"};
#define PRESETS (sizeof presets / sizeof presets[0])

enum { B = 3, T = 6 };


/* Normwise agreement ||got − want|| ≤ tol·||want|| + floor. The GPU computes
 * in fp32 (unit roundoff u = 2^-24), PyTorch in double. Every value passes
 * through at most ~40 dependent operations (2 layers of matmul, attention,
 * LayerNorm, GELU, the head, the loss and their backward), each a reduction
 * of at most 24 terms, so the relative error stays below 40·24·u ≈ 5.7e-5;
 * ×4 for the condition of LayerNorm and softmax at these scales: 2.3e-4. */
static const double tol = 40.0 * 24.0 * 5.960464477539063e-08 * 4.0;

static bool close_normwise_at(const float *got, const double *want, size_t n, const char *what,
                              double *ratio, int line) {
    /* An absolute floor for tensors whose exact gradient is ~0 (the key
     * bias: softmax ignores a shift), where only fp32 noise of about
     * K·u·(gradient scale ~1) = 24·6e-8 ≈ 1.4e-6 remains. */
    return torch_close_normwise(got, want, n, tol, 24 * 5.960464477539063e-08, what, __FILE__, line, ratio);
}
#define close_normwise(got, want, n, what, ratio) close_normwise_at(got, want, n, what, ratio, __LINE__)

static void family(bool bert) {
    const char *fam = bert ? "bert" : "roberta";
    char model[128], path[256];
    snprintf(model, sizeof model, "%s/%s", dir, fam);
    if (!torch_sh("mkdir -p '%s' && '%s' '%s' make-model %s '%s' --seed 11", model, torch_python(), script, fam, model))
        return;
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    struct model_arch arch;
    if (!CHECK(model_arch_load(model, &arch) == VP_OK)) return;
    const int pad = arch.pad_token_id;
    const int32_t ids[B * T] = {bert ? 2 : 0, 5, 9, 12, 3, 17, 4, 8, 30, pad, pad, pad, 11, 6, 6, 21, 2, pad};
    const uint8_t mask[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0};
    const int32_t types[B * T] = {0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0};
    const int32_t labels[B] = {2, 0, 1};
    char batch[1024];
    int len = snprintf(batch, sizeof batch, "{\"input_ids\":[");
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            len += snprintf(batch + len, sizeof batch - len, "%s%d%s", t ? "" : "[", ids[b * T + t],
                            t == T - 1 ? (b == B - 1 ? "]" : "],") : ",");
    len += snprintf(batch + len, sizeof batch - len, "],\"attention_mask\":[");
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            len += snprintf(batch + len, sizeof batch - len, "%s%d%s", t ? "" : "[", mask[b * T + t],
                            t == T - 1 ? (b == B - 1 ? "]" : "],") : ",");
    len += snprintf(batch + len, sizeof batch - len, "],\"token_type_ids\":[");
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            len += snprintf(batch + len, sizeof batch - len, "%s%d%s", t ? "" : "[", bert ? types[b * T + t] : 0,
                            t == T - 1 ? (b == B - 1 ? "]" : "],") : ",");
    snprintf(batch + len, sizeof batch - len, "],\"labels\":[2,0,1],\"label_smoothing\":0}");
    snprintf(path, sizeof path, "%s/batch.json", model);
    CHECK(vp_file_write_atomic(path, batch, strlen(batch)) == VP_OK);

    struct encoder *enc[PRESETS] = {0};
    char jobs[8192] = "[";
    for (size_t j = 0; j < PRESETS; j++) {
        struct delta_spec spec;
        if (!CHECKF(delta_spec_preset(presets[j], &spec) == VP_OK, "%s", vp_last_error())) continue;
        const struct encoder_options opt = {.storage = ENCODER_STORAGE_F32, .seed = 5 + j};
        if (!CHECKF(encoder_create(ctx, model, &spec, &opt, B, T, &enc[j]) == VP_OK, "%s: %s", presets[j],
                    vp_last_error()))
            continue;
        char spec_path[300];
        snprintf(path, sizeof path, "%s/delta-%zu.safetensors", model, j);
        snprintf(spec_path, sizeof spec_path, "%s/spec-%zu.json", model, j);
        CHECK(torch_randomize_delta(enc[j], &spec, 1000 + j, path, spec_path));
        const struct encoder_batch eb = {ids, mask, bert ? types : NULL, labels};
        CHECK(encoder_write_batch(enc[j], &eb) == VP_OK);
        CHECK(encoder_zero_grads(enc[j]) == VP_OK);
        CHECKF(encoder_run(enc[j], ENCODER_PASS_TRAIN) == VP_OK, "%s: %s", presets[j], vp_last_error());
        snprintf(jobs + strlen(jobs), sizeof jobs - strlen(jobs),
                 "%s{\"model\":\"%s\",\"spec\":\"%s/spec-%zu.json\",\"delta\":\"%s/delta-%zu.safetensors\","
                 "\"batch\":\"%s/batch.json\",\"out\":\"%s/out-%zu.safetensors\"}",
                 j ? "," : "", model, model, j, model, j, model, model, j);
    }
    strcat(jobs, "]");
    snprintf(path, sizeof path, "%s/jobs.json", model);
    CHECK(vp_file_write_atomic(path, jobs, strlen(jobs)) == VP_OK);
    if (torch_sh("'%s' '%s' run-many '%s'", torch_python(), script, path)) {
        for (size_t j = 0; j < PRESETS; j++) {
            if (!enc[j]) continue;
            snprintf(path, sizeof path, "%s/out-%zu.safetensors", model, j);
            struct io_safetensors *f;
            if (!CHECKF(io_safetensors_open(path, &f) == VP_OK, "%s", vp_last_error())) continue;
            char what[160];
            double worst = 0, r;
            float loss, logits[B * 8];
            CHECK(encoder_loss(enc[j], &loss, NULL) == VP_OK);
            CHECK(encoder_logits(enc[j], logits) == VP_OK);
            snprintf(what, sizeof what, "%s %s loss", fam, presets[j]);
            close_normwise(&loss, io_safetensors_find(f, "loss")->data, 1, what, &r);
            snprintf(what, sizeof what, "%s %s logits", fam, presets[j]);
            close_normwise(logits, io_safetensors_find(f, "logits")->data, (size_t)B * arch.num_labels, what, &r);
            struct delta_params *p = encoder_params(enc[j]);
            for (int i = 0; i < p->count; i++) {
                const struct delta_param *t = &p->items[i];
                char name[200];
                snprintf(name, sizeof name, "grad.%s", t->name);
                const struct io_tensor *want = io_safetensors_find(f, name);
                if (!CHECKF(want && want->numel == t->n, "torch has no %s", name)) continue;
                float *g = malloc(t->n * sizeof *g);
                CHECK(encoder_grad_read(enc[j], t->name, g, t->n) == VP_OK);
                snprintf(what, sizeof what, "%s %s %s", fam, presets[j], name);
                close_normwise(g, want->data, t->n, what, &r);
                if (r > worst) worst = r;
                free(g);
            }
            th_diag("%-8s %-18s %3d gradient tensors, worst %.3g of the bound", fam, presets[j], p->count, worst);
            io_safetensors_close(f);
        }
    }
    for (size_t j = 0; j < PRESETS; j++) encoder_destroy(enc[j]);
    model_arch_finish(&arch);
    vp_context_destroy(ctx);
}

static void bert_matches_torch(void) { family(true); }
static void roberta_matches_torch(void) { family(false); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_torch_parity SCRIPT\n");
        return 2;
    }
    script = argv[1];
    snprintf(dir, sizeof dir, "/tmp/vkpeft-parity-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    static const struct th_case cases[] = {TH_CASE(bert_matches_torch), TH_CASE(roberta_matches_torch)};
    int rc = vt_main(cases, 2, argc - 1, argv + 1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
