/* The encoder's masked-language-model head (runtime/model/README.md, Heads)
 * against the independent PyTorch implementation
 * (tests/python/vkpeft_torch.py): tiny BERT and RoBERTa masked LMs written by
 * PyTorch in Hugging Face naming, loaded with the MLM head; loss, logits
 * (B·T, V) and every trainable gradient must agree for `full` (the word
 * embeddings get the gather's scatter and the tied decoder's dW) and `lora`
 * (frozen embeddings: only the head and the delta train). Then the head's
 * initialisation when the file has none, the memory plan's (B·T, V) logits,
 * and a few AdamW steps lowering the MLM loss on a tiny synthetic corpus.
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

static const char *const presets[] = {"full", "lora:r=2,a=3"};
#define PRESETS (sizeof presets / sizeof presets[0])

enum { B = 3, T = 6, V = 40 };


/* Normwise agreement ||got − want|| ≤ tol·||want|| + floor, the reasoning
 * of test_torch_parity.c: fp32 on the GPU (u = 2^-24) against double in
 * PyTorch, at most ~40 dependent operations (2 layers forward and backward,
 * the MLM head's dense, GELU, LayerNorm, tied decoder, softmax), each a
 * reduction of at most 40 terms here (the softmax over V = 40; the decoder's
 * dW sums over B·T = 18 rows): 40·40·u ≈ 9.5e-5, ×4 for the condition of
 * LayerNorm and softmax at these scales. The floor is fp32 noise on a
 * gradient that is exactly ~0: 40·u. */
static const double tol = 40.0 * 40.0 * 5.960464477539063e-08 * 4.0;

static bool close_normwise_at(const float *got, const double *want, size_t n, const char *what,
                              double *ratio, int line) {
    return torch_close_normwise(got, want, n, tol, 40 * 5.960464477539063e-08, what, __FILE__, line, ratio);
}
#define close_normwise(got, want, n, what, ratio) close_normwise_at(got, want, n, what, ratio, __LINE__)

static int append_matrix(char *buf, size_t cap, int len, const char *key, const int32_t *v) {
    len += snprintf(buf + len, cap - (size_t)len, "%s\"%s\":[", len > 1 ? "," : "", key);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            len += snprintf(buf + len, cap - (size_t)len, "%s%d%s", t ? "" : "[", v[b * T + t],
                            t == T - 1 ? (b == B - 1 ? "]" : "],") : ",");
    return len + snprintf(buf + len, cap - (size_t)len, "]");
}

static void family(bool bert) {
    const char *fam = bert ? "bert" : "roberta";
    char model[128], path[256];
    snprintf(model, sizeof model, "%s/%s-mlm", dir, fam);
    if (!torch_sh("mkdir -p '%s' && '%s' '%s' make-model %s '%s' --seed 13 --vocab %d --mlm", model, torch_python(), script,
            fam, model, V))
        return;
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    struct model_arch arch;
    if (!CHECK(model_arch_load(model, &arch) == VP_OK)) return;
    const int pad = arch.pad_token_id, M = 3; /* M: the [MASK] token of this test */
    const int32_t ids[B * T] = {bert ? 2 : 0, 5, M, 12, M, 17, 4, M, 30, pad, pad, pad, 11, 6, M, 21, 2, pad};
    const int32_t mask32[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0};
    const int32_t types[B * T] = {0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0};
    const int32_t zeros[B * T] = {0};
    /* Labels at the masked tokens and one unmasked token (10%-style), -100 elsewhere. */
    const int32_t labels[B * T] = {-100, -100, 9, -100, 33, -100, -100, 8, -100, -100, -100, -100,
                                   -100, 6, 22, -100, -100, -100};
    uint8_t mask[B * T];
    for (int i = 0; i < B * T; i++) mask[i] = (uint8_t)mask32[i];
    char batch[2048] = "{";
    int len = 1;
    len = append_matrix(batch, sizeof batch, len, "input_ids", ids);
    len = append_matrix(batch, sizeof batch, len, "attention_mask", mask32);
    len = append_matrix(batch, sizeof batch, len, "token_type_ids", bert ? types : zeros);
    len = append_matrix(batch, sizeof batch, len, "mlm_labels", labels);
    snprintf(batch + len, sizeof batch - (size_t)len, "}");
    snprintf(path, sizeof path, "%s/batch.json", model);
    CHECK(vp_file_write_atomic(path, batch, strlen(batch)) == VP_OK);

    struct encoder *enc[PRESETS] = {0};
    char jobs[4096] = "[";
    for (size_t j = 0; j < PRESETS; j++) {
        struct delta_spec spec;
        if (!CHECKF(delta_spec_preset(presets[j], &spec) == VP_OK, "%s", vp_last_error())) continue;
        const struct encoder_options opt = {.storage = ENCODER_STORAGE_F32, .seed = 5 + j, .head = MODEL_HEAD_MLM};
        if (!CHECKF(encoder_create(ctx, model, &spec, &opt, B, T, &enc[j]) == VP_OK, "%s: %s", presets[j],
                    vp_last_error()))
            continue;
        struct delta_params *p = encoder_params(enc[j]);
        /* The head comes from the file. */
        const char *bias_name = bert ? "cls.predictions.bias" : "lm_head.bias";
        CHECKF(delta_params_find(p, bias_name) != NULL, "no %s param", bias_name);
        char spec_path[300];
        snprintf(path, sizeof path, "%s/delta-%zu.safetensors", model, j);
        snprintf(spec_path, sizeof spec_path, "%s/spec-%zu.json", model, j);
        CHECK(torch_randomize_delta(enc[j], &spec, 2000 + j, path, spec_path));
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
            char what[200];
            double worst = 0, r;
            float loss, *logits = malloc((size_t)B * T * V * sizeof *logits);
            uint32_t count = 0;
            CHECK(encoder_loss(enc[j], &loss, &count) == VP_OK);
            CHECKF(count == 5, "%u labelled tokens, want 5", count);
            CHECK(encoder_logits(enc[j], logits) == VP_OK);
            snprintf(what, sizeof what, "%s %s mlm loss", fam, presets[j]);
            close_normwise(&loss, io_safetensors_find(f, "loss")->data, 1, what, &r);
            snprintf(what, sizeof what, "%s %s mlm logits", fam, presets[j]);
            const struct io_tensor *wl = io_safetensors_find(f, "logits");
            if (CHECKF(wl && wl->numel == (uint64_t)B * T * V, "torch logits are not (B*T, V)"))
                close_normwise(logits, wl->data, (size_t)B * T * V, what, &r);
            free(logits);
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
            th_diag("%-8s %-14s mlm: %3d gradient tensors, worst %.3g of the bound", fam, presets[j], p->count,
                    worst);
            io_safetensors_close(f);
        }
    }
    for (size_t j = 0; j < PRESETS; j++) encoder_destroy(enc[j]);
    model_arch_finish(&arch);
    vp_context_destroy(ctx);
}

static void bert_mlm_matches_torch(void) { family(true); }
static void roberta_mlm_matches_torch(void) { family(false); }

/* A classification checkpoint has no MLM head: it starts as Hugging Face
 * starts one (dense N(0, 0.02), LayerNorm 1 / 0, biases 0); and the plan
 * holds the (B·T, V) logits and their gradient. */
static void mlm_head_initialised_and_planned(void) {
    char model[128];
    snprintf(model, sizeof model, "%s/bert-cls", dir);
    if (!torch_sh("mkdir -p '%s' && '%s' '%s' make-model bert '%s' --seed 3 --vocab %d", model, torch_python(), script, model,
            V))
        return;
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    struct delta_spec spec;
    CHECK(delta_spec_preset("lora:r=2", &spec) == VP_OK);
    const struct encoder_options opt = {.storage = ENCODER_STORAGE_F32, .seed = 9, .head = MODEL_HEAD_MLM};
    struct encoder *e = NULL;
    if (CHECKF(encoder_create(ctx, model, &spec, &opt, B, T, &e) == VP_OK, "%s", vp_last_error())) {
        const int d = encoder_arch(e)->hidden;
        float w[16 * 16], ln[16], bias[V];
        if (CHECK(d == 16)) {
            CHECK(encoder_tensor_read(e, "cls.predictions.transform.dense.weight", w, 256) == VP_OK);
            double ss = 0;
            for (int i = 0; i < 256; i++) ss += (double)w[i] * w[i];
            double sd = sqrt(ss / 256);
            CHECKF(sd > 0.01 && sd < 0.03, "dense weight std %.4g, want about 0.02", sd);
            CHECK(encoder_tensor_read(e, "cls.predictions.transform.LayerNorm.weight", ln, 16) == VP_OK);
            bool ones = true;
            for (int i = 0; i < 16; i++) ones = ones && ln[i] == 1.0f;
            CHECK(ones);
            CHECK(encoder_tensor_read(e, "cls.predictions.transform.LayerNorm.bias", ln, 16) == VP_OK);
            bool zero = true;
            for (int i = 0; i < 16; i++) zero = zero && ln[i] == 0.0f;
            CHECK(encoder_tensor_read(e, "cls.predictions.bias", bias, V) == VP_OK);
            for (int i = 0; i < V; i++) zero = zero && bias[i] == 0.0f;
            CHECK(zero);
            const struct delta_param *lw = delta_params_find(encoder_params(e), "cls.predictions.transform.LayerNorm.weight");
            CHECK(lw && !lw->decay);
        }
        /* The classifier's tensors are not there. */
        CHECK(delta_params_find(encoder_params(e), "classifier.weight") == NULL);
        uint64_t cls[VP_POOL_COUNT], mlm[VP_POOL_COUNT];
        struct model_arch arch = *encoder_arch(e);
        arch.labels = NULL;
        arch.head = MODEL_HEAD_CLASSIFY;
        CHECK(encoder_plan_arch(ctx, &arch, &spec, ENCODER_STORAGE_F32, 4, 8, cls) == VP_OK);
        arch.head = MODEL_HEAD_MLM;
        CHECK(encoder_plan_arch(ctx, &arch, &spec, ENCODER_STORAGE_F32, 4, 8, mlm) == VP_OK);
        const uint64_t logits = 4ull * 8 * V * 4;
        CHECKF(mlm[VP_POOL_ACTIVATIONS] >= cls[VP_POOL_ACTIVATIONS] + 2 * logits,
               "MLM activations %llu, classifier %llu: the (B*T, V) logits and gradient are not planned",
               (unsigned long long)mlm[VP_POOL_ACTIVATIONS], (unsigned long long)cls[VP_POOL_ACTIVATIONS]);
        CHECK(mlm[VP_POOL_STAGING] >= logits);
        uint64_t opened[VP_POOL_COUNT];
        CHECK(encoder_plan(e, 4, 8, opened) == VP_OK);
        CHECK(opened[VP_POOL_ACTIVATIONS] == mlm[VP_POOL_ACTIVATIONS]);
        /* Token labels are checked against the vocabulary. */
        int32_t ids[B * T] = {0}, bad[B * T];
        for (int i = 0; i < B * T; i++) bad[i] = -100;
        bad[4] = V;
        const struct encoder_batch eb = {ids, NULL, NULL, bad};
        CHECK(encoder_write_batch(e, &eb) == VP_ERROR_BAD_INPUT);
    }
    encoder_destroy(e);
    vp_context_destroy(ctx);
}

struct step_args {
    vp_context *ctx;
    const struct kernel_opt_tensor *t;
    uint32_t n;
    const struct vk_buffer *hp;
};

static vp_status record_step(struct vk_recorder *rec, void *arg) {
    struct step_args *a = arg;
    return kernel_adamw_step(a->ctx, rec, a->t, a->n, a->hp, NULL);
}

/* `full` on a tiny masked LM: a fixed batch of a synthetic corpus (each
 * sequence counts up from its first token, so a masked token is its left
 * neighbour + 1); a few AdamW steps must lower the MLM loss. */
static void training_lowers_mlm_loss(void) {
    char model[128];
    snprintf(model, sizeof model, "%s/roberta-train", dir);
    if (!torch_sh("mkdir -p '%s' && '%s' '%s' make-model roberta '%s' --seed 5 --vocab %d --mlm", model, torch_python(), script,
            model, V))
        return;
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    struct delta_spec spec;
    CHECK(delta_spec_preset("full", &spec) == VP_OK);
    const struct encoder_options opt = {.storage = ENCODER_STORAGE_F32, .seed = 1, .head = MODEL_HEAD_MLM};
    struct encoder *e = NULL;
    struct vk_buffer hp = {0};
    if (CHECKF(encoder_create(ctx, model, &spec, &opt, B, T, &e) == VP_OK, "%s", vp_last_error()) &&
        CHECK(vk_buffer_alloc(ctx, VP_POOL_TRAINABLE, sizeof(struct kernel_adamw_hparams), &hp) == VP_OK)) {
        int32_t ids[B * T], labels[B * T];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const int n = b * T + t, tok = 5 + 7 * b + t;
                const bool masked = (t + b) % 3 == 1;
                ids[n] = masked ? 3 : tok;
                labels[n] = masked ? tok : ENCODER_IGNORE_INDEX;
            }
        const struct encoder_batch eb = {ids, NULL, NULL, labels};
        CHECK(encoder_write_batch(e, &eb) == VP_OK);
        struct delta_params *p = encoder_params(e);
        struct kernel_opt_tensor *list = calloc((size_t)p->count, sizeof *list);
        struct step_args sa = {ctx, list, delta_params_opt_tensors(p, list, (uint32_t)p->count), &hp};
        float first = 0, last = 0;
        for (uint32_t step = 1; step <= 8; step++) {
            if (!CHECK(encoder_zero_grads(e) == VP_OK) || !CHECK(encoder_run(e, ENCODER_PASS_TRAIN) == VP_OK)) break;
            float loss;
            CHECK(encoder_loss(e, &loss, NULL) == VP_OK);
            if (step == 1) first = loss;
            struct kernel_adamw_hparams h;
            kernel_adamw_hparams_set(&h, 1e-2, 0.9, 0.999, 1e-8, 0.0, step);
            CHECK(vk_buffer_write(ctx, &hp, 0, &h, sizeof h) == VP_OK);
            if (!CHECKF(vk_run_once(ctx, record_step, &sa) == VP_OK, "%s", vp_last_error())) break;
        }
        CHECK(encoder_run(e, ENCODER_PASS_EVAL) == VP_OK);
        CHECK(encoder_loss(e, &last, NULL) == VP_OK);
        th_diag("mlm loss %.4f -> %.4f after 8 AdamW steps", first, last);
        CHECKF(isfinite(last) && last < 0.7f * first, "MLM loss %.4f -> %.4f did not fall", first, last);
        free(list);
    }
    vk_buffer_free(ctx, &hp);
    encoder_destroy(e);
    vp_context_destroy(ctx);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_mlm SCRIPT\n");
        return 2;
    }
    script = argv[1];
    snprintf(dir, sizeof dir, "/tmp/vkpeft-mlm-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    static const struct th_case cases[] = {TH_CASE(bert_mlm_matches_torch), TH_CASE(roberta_mlm_matches_torch),
                                           TH_CASE(mlm_head_initialised_and_planned),
                                           TH_CASE(training_lowers_mlm_loss)};
    int rc = vt_main(cases, sizeof cases / sizeof cases[0], argc - 1, argv + 1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
