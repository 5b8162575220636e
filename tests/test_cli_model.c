/* vkpeft inspect and vkpeft merge as a user runs them: counts on a
 * roberta-base-sized config.json without weights, every preset, --json,
 * merging a LoRA delta into a tiny model, and bad input (exit 2 with a
 * message that names the problem); vkpeft eval without --delta on the
 * merged folder scores what the base with the delta scores (labels by
 * config.json's id2label), and on a folder without a trained head exits 2.
 * argv[1] is the path of the vkpeft binary. */
#include "encoder.h"
#include "harness.h"
#include "params.h"
#include "peft.h"
#include "safetensors.h"
#include "save.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *vkpeft;
static char root[64];

/* roberta-base's shapes (config.json only). */
#define ROBERTA_BASE                                                                                   \
    "{\"architectures\":[\"RobertaForMaskedLM\"],\"model_type\":\"roberta\",\"vocab_size\":50265,"   \
    "\"hidden_size\":768,\"num_hidden_layers\":12,\"num_attention_heads\":12,"                         \
    "\"intermediate_size\":3072,\"max_position_embeddings\":514,\"type_vocab_size\":1,"               \
    "\"pad_token_id\":1,\"layer_norm_eps\":1e-5,\"hidden_act\":\"gelu\",\"num_labels\":2}"
#define ROBERTA_TINY                                                                                  \
    "{\"model_type\":\"roberta\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"      \
    "\"num_attention_heads\":2,\"intermediate_size\":24,\"max_position_embeddings\":16,"             \
    "\"type_vocab_size\":1,\"pad_token_id\":1,\"layer_norm_eps\":1e-5,\"num_labels\":2}"

struct result {
    int code;
    char out[65536]; /* stdout and stderr together */
};
static struct result r;

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...) {
    char args[1536], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", vkpeft, args);
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

#define EXPECT_EXIT(want) CHECKF(r.code == (want), "exit code %d, want %d; output:\n%s", r.code, (want), r.out)
#define EXPECT_OUTPUT(text) CHECKF(strstr(r.out, (text)) != NULL, "output lacks '%s':\n%s", (text), r.out)

static const char *path_of(const char *name) {
    static char buf[4][256];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", root, name);
    return b;
}

static bool write_text(const char *path, const char *text) {
    return CHECKF(vp_file_write_atomic(path, text, strlen(text)) == VP_OK, "%s", vp_last_error());
}

static cJSON *parse_output(void) {
    cJSON *j = cJSON_Parse(r.out);
    CHECKF(j != NULL, "not JSON:\n%s", r.out);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    CHECKF(cJSON_IsNumber(v), "\"%s\" is not a number", key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* A tiny model folder with random F32 weights, the head (unless !head: a
 * bare pretrained checkpoint) and tokenizer.json. */
static bool write_tiny_model(const char *dir, bool head) {
    struct model_arch arch;
    if (!CHECK(vp_mkdir_p(dir) == VP_OK) ||
        !CHECK(model_arch_parse(ROBERTA_TINY, strlen(ROBERTA_TINY), "config.json", &arch) == VP_OK))
        return false;
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    bool ok = write_text(path, ROBERTA_TINY);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ok = ok && write_text(path, "{}");
    struct encoder_tensor_desc desc[64];
    int n = encoder_model_tensors(&arch, desc);
    if (head) n += encoder_head_tensors(&arch, desc + n);
    struct io_tensor_out out[64];
    float *data[64];
    uint64_t st = 11;
    for (int k = 0; k < n; k++) {
        const size_t count = (size_t)desc[k].shape[0] * (size_t)(desc[k].ndim > 1 ? desc[k].shape[1] : 1);
        data[k] = malloc(count * sizeof *data[k]);
        for (size_t i = 0; i < count; i++) data[k][i] = (float)th_rand_uniform(&st, -0.5, 0.5);
        out[k] = (struct io_tensor_out){desc[k].name, IO_DTYPE_F32, desc[k].ndim, {desc[k].shape[0], desc[k].shape[1]},
                                        data[k]};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ok = ok && CHECKF(io_safetensors_write(path, out, (size_t)n, NULL) == VP_OK, "%s", vp_last_error());
    for (int k = 0; k < n; k++) free(data[k]);
    model_arch_finish(&arch);
    return ok;
}

/* A PEFT LoRA folder (q and v, rank 2) for the tiny model. */
static bool write_peft_lora(const char *dir) {
    struct model_arch arch;
    struct delta_spec spec;
    struct delta_tensors t = {0};
    if (!CHECK(model_arch_parse(ROBERTA_TINY, strlen(ROBERTA_TINY), "config.json", &arch) == VP_OK)) return false;
    CHECK(delta_spec_preset("lora:r=2,a=4", &spec) == VP_OK);
    uint64_t st = 5;
    for (int l = 0; l < arch.layers; l++)
        for (int i = 0; i < 2; i++) {
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "encoder.layers.%d.delta%d.lora_A", l, i);
            struct delta_tensor *A = delta_tensors_add(&t, name, 2, (const int64_t[]){2, 16});
            snprintf(name, sizeof name, "encoder.layers.%d.delta%d.lora_B", l, i);
            struct delta_tensor *B = delta_tensors_add(&t, name, 2, (const int64_t[]){16, 2});
            for (int k = 0; k < 32; k++) A->data[k] = (float)th_rand_uniform(&st, -0.3, 0.3);
            for (int k = 0; k < 32; k++) B->data[k] = (float)th_rand_uniform(&st, -0.3, 0.3);
        }
    bool ok = CHECK(vp_mkdir_p(dir) == VP_OK) &&
              CHECKF(delta_peft_export(dir, &spec, &arch, &t, "tiny") == VP_OK, "%s", vp_last_error());
    delta_tensors_free(&t);
    model_arch_finish(&arch);
    return ok;
}

/* A complete vkpeft mam delta for the tiny model (needs a device for the
 * params' layout). */
static bool write_mam_delta(const char *dir, const char *model) {
    vp_context *ctx = NULL;
    struct model_arch arch;
    struct delta_spec spec;
    struct delta_params *p = NULL;
    if (!CHECKF(vp_context_create(NULL, &ctx) == VP_OK, "%s", vp_last_error())) return false;
    bool ok = CHECK(model_arch_parse(ROBERTA_TINY, strlen(ROBERTA_TINY), "config.json", &arch) == VP_OK) &&
              CHECK(delta_spec_preset("mam:l=2,r=3", &spec) == VP_OK) &&
              CHECK(delta_params_create(ctx, &arch, &spec, 1, &p) == VP_OK) && CHECK(delta_params_alloc(p) == VP_OK);
    const struct delta_save_info info = {model, NULL, 0};
    ok = ok && CHECKF(delta_save(dir, p, &info) == VP_OK, "%s", vp_last_error());
    delta_params_destroy(p);
    model_arch_finish(&arch);
    vp_context_destroy(ctx);
    return ok;
}

static bool setup(void) {
    if (root[0]) return true;
    snprintf(root, sizeof root, "/tmp/vkpeft-test-cli-model-XXXXXX");
    if (!CHECK(mkdtemp(root) != NULL)) return false;
    return CHECK(vp_mkdir_p(path_of("roberta-base")) == VP_OK) &&
           write_text(path_of("roberta-base/config.json"), ROBERTA_BASE) && write_tiny_model(path_of("tiny"), true) &&
           write_peft_lora(path_of("peft-lora")) && write_mam_delta(path_of("mam"), path_of("tiny"));
}

/* ------------------------------------------------------------------------
 * inspect
 * ------------------------------------------------------------------------ */

static void help_texts(void) {
    run("inspect --help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("examples:");
    EXPECT_OUTPUT("Only config.json is needed");
    run("merge --help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("examples:");
    EXPECT_OUTPUT("Only LoRA merges");
    run("--help");
    EXPECT_OUTPUT("inspect");
    EXPECT_OUTPUT("merge");
}

/* LoRA on q and v, rank 8, on roberta-base: 12 layers × 2 × 8 × (768 + 768)
 * = 294,912 delta values; the model (embeddings (50265 + 514 + 1)·768 + 2·768,
 * 12 layers of 7,087,872) 124,055,040. */
static void inspect_roberta_base_lora(void) {
    if (!setup()) return;
    run("inspect --model %s --delta lora --batch 32 --max-len 128 --weights f16", path_of("roberta-base"));
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("config.json only");
    EXPECT_OUTPUT("147,456");
    EXPECT_OUTPUT("294,912");
    EXPECT_OUTPUT("592,130");
    EXPECT_OUTPUT("124,055,040");
    EXPECT_OUTPUT("0.2377%");
    EXPECT_OUTPUT("batch 32 x 128 tokens, f16 weights");
    EXPECT_OUTPUT("frozen");
    EXPECT_OUTPUT("trainable");
    EXPECT_OUTPUT("activations");
    EXPECT_OUTPUT("staging");
    run("inspect --model %s --delta lora --json", path_of("roberta-base"));
    EXPECT_EXIT(0);
    cJSON *j = parse_output();
    if (!j) return;
    const cJSON *delta = cJSON_GetObjectItem(j, "delta"), *plan = cJSON_GetObjectItem(j, "plan");
    CHECK(num(delta, "trained_params") == 294912);
    CHECK(num(delta, "saved_params") == 294912);
    CHECK(num(j, "model_params") == 124055040);
    CHECK(num(j, "head_params") == 592130);
    CHECK(fabs(num(j, "share_trained") - 294912.0 / 124055040.0) < 1e-12);
    const cJSON *mods = cJSON_GetObjectItem(delta, "modules");
    CHECK(cJSON_GetArraySize(mods) == 2);
    for (int i = 0; i < cJSON_GetArraySize(mods); i++) {
        CHECK(num(cJSON_GetArrayItem(mods, i), "trained_params") == 147456);
        CHECK(num(cJSON_GetArrayItem(mods, i), "layers") == 12);
    }
    /* Frozen: every model tensor in its own piece, matrices f16, vectors
     * f32, each padded to the pool alignment (≤ 4 KiB on any device). */
    struct model_arch arch;
    CHECK(model_arch_parse(ROBERTA_BASE, strlen(ROBERTA_BASE), "config.json", &arch) == VP_OK);
    struct encoder_tensor_desc *desc = calloc(256, sizeof *desc);
    int n = encoder_model_tensors(&arch, desc);
    double frozen = 0;
    for (int k = 0; k < n; k++)
        frozen += (double)desc[k].shape[0] * (double)(desc[k].ndim > 1 ? desc[k].shape[1] : 1) * (desc[k].matrix ? 2 : 4);
    free(desc);
    CHECKF(num(plan, "frozen") >= frozen && num(plan, "frozen") <= frozen + n * 4096.0, "frozen %.0f, tensors %.0f",
           num(plan, "frozen"), frozen);
    /* Trainable: values, gradients and two moments of delta and head, fp32. */
    CHECK(num(plan, "trainable") >= 4.0 * 4.0 * (294912 + 592130));
    CHECK(num(plan, "activations") > 0 && num(plan, "staging") > 0);
    CHECK(num(plan, "total") == num(plan, "frozen") + num(plan, "trainable") + num(plan, "activations") +
                                    num(plan, "staging"));
    CHECK(num(plan, "batch") == 32 && num(plan, "max_len") == 128);
    cJSON_Delete(j);
    /* f32 storage doubles the matrices. */
    run("inspect --model %s --delta lora --weights f32 --json", path_of("roberta-base"));
    EXPECT_EXIT(0);
    if ((j = parse_output())) {
        CHECK(num(cJSON_GetObjectItem(j, "plan"), "frozen") > 1.9 * frozen);
        cJSON_Delete(j);
    }
    model_arch_finish(&arch);
}

static void inspect_every_preset(void) {
    if (!setup()) return;
    for (int k = 0; delta_preset_names[k]; k++) {
        run("inspect --model %s --delta %s", path_of("roberta-base"), delta_preset_names[k]);
        EXPECT_EXIT(0);
        char want[96];
        snprintf(want, sizeof want, "delta    %s:", delta_preset_names[k]);
        EXPECT_OUTPUT(want);
        EXPECT_OUTPUT("share trained");
        EXPECT_OUTPUT("total");
    }
    /* A prefix trained through its MLP saves only the prefixes: l=30,
     * 12 layers × 2 × 30 × 768 = 552,960. */
    run("inspect --model %s --delta mam --json", path_of("roberta-base"));
    cJSON *j = parse_output();
    if (j) {
        const cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "delta"), "modules"), 0);
        CHECK(num(m0, "saved_params") == 552960);
        CHECK(num(m0, "trained_params") > num(m0, "saved_params"));
        cJSON_Delete(j);
    }
    run("inspect --model %s", path_of("roberta-base"));
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("delta    none");
    EXPECT_OUTPUT("124,055,040");
}

/* With weights the file is checked and its dtype followed; a saved delta
 * folder (here PEFT's) is read with its base model checked. */
static void inspect_weights_and_folders(void) {
    if (!setup()) return;
    run("inspect --model %s --delta %s --json", path_of("tiny"), path_of("peft-lora"));
    EXPECT_EXIT(0);
    cJSON *j = parse_output();
    if (j) {
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "weights")));
        CHECK(num(cJSON_GetObjectItem(j, "delta"), "trained_params") == 2 * 2 * 2 * (16 + 16));
        cJSON_Delete(j);
    }
    run("inspect --model %s --delta %s", path_of("tiny"), path_of("mam"));
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("prefix");
}

/* Decoder and encoder-decoder models: counts as the paper's tables (a memory
 * plan needs the weight files). MAM on bart-large: 27,414,528 saved. */
static void inspect_decoder_models(void) {
    if (!setup()) return;
    CHECK(vp_mkdir_p(path_of("bart-large")) == VP_OK);
    write_text(path_of("bart-large/config.json"),
               "{\"model_type\":\"bart\",\"vocab_size\":50265,\"d_model\":1024,\"encoder_layers\":12,"
               "\"decoder_layers\":12,\"encoder_attention_heads\":16,\"decoder_attention_heads\":16,"
               "\"encoder_ffn_dim\":4096,\"decoder_ffn_dim\":4096,\"max_position_embeddings\":1024}");
    run("inspect --model %s --delta mam", path_of("bart-large"));
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("406,291,456");
    EXPECT_OUTPUT("6.7475%");
    EXPECT_OUTPUT("attention blocks: encoder self, decoder self, cross");
    EXPECT_OUTPUT("36 (all)");
    EXPECT_OUTPUT("unavailable: bart: planning an encoder-decoder needs its weight files");
    run("inspect --model %s --delta lora --json", path_of("bart-large"));
    EXPECT_EXIT(0);
    cJSON *j = parse_output();
    if (j) CHECK(num(j, "model_params") == 406291456.0 && num(j, "share_saved") > 0);
    cJSON_Delete(j);
}

static void inspect_bad_input(void) {
    if (!setup()) return;
    run("inspect --model %s --delta lorax", path_of("roberta-base"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("'lorax' is not a delta preset");
    write_text(path_of("bad-spec.json"), "{\"modules\": [{\"kind\": \"lora\", \"at\": \"nowhere\"}]}");
    run("inspect --model %s --delta %s", path_of("roberta-base"), path_of("bad-spec.json"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("bad-spec.json: modules[0].at");
    write_text(path_of("broken.json"), "{\"modules\": [");
    run("inspect --model %s --delta %s", path_of("roberta-base"), path_of("broken.json"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("broken.json is not a JSON object");
    run("inspect --model %s --delta lora", path_of("no-such-model"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("no-such-model");
    /* A decoder trains on text through its tokenizer.json: without one,
     * said so, exit 2. */
    CHECK(vp_mkdir_p(path_of("gpt2")) == VP_OK);
    write_text(path_of("gpt2/config.json"), "{\"model_type\":\"gpt2\",\"vocab_size\":50257,\"n_embd\":768,"
                                            "\"n_layer\":12,\"n_head\":12}");
    write_text(path_of("x.jsonl"), "{\"input_ids\": [1, 2], \"label\": 0}\n");
    run("train --model %s --delta lora --data %s --out %s", path_of("gpt2"), path_of("x.jsonl"), path_of("o"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("gpt2 has no tokenizer.json");
    /* The tiny model's delta on roberta-base. */
    run("inspect --model %s --delta %s", path_of("roberta-base"), path_of("mam"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("the delta was trained on");
    EXPECT_OUTPUT("but the model is roberta (hidden 768, 12 layers");
    run("inspect --model %s --delta %s", path_of("roberta-base"), path_of("peft-lora"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("has shape (2, 16), want (2, 768)");
    run("inspect --delta lora");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--model DIR is required");
    run("inspect --model %s --batch 0", path_of("roberta-base"));
    EXPECT_EXIT(2);
    run("inspect --model %s --weights f8", path_of("roberta-base"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("f32, f16 or bf16");
    run("inspect --model %s --frob", path_of("roberta-base"));
    EXPECT_EXIT(2);
}

/* ------------------------------------------------------------------------
 * merge
 * ------------------------------------------------------------------------ */

static void merge_lora(void) {
    if (!setup()) return;
    run("merge --model %s --delta %s --out %s", path_of("tiny"), path_of("peft-lora"), path_of("merged"));
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("merged 4 LoRA matrices");
    CHECK(access(path_of("merged/config.json"), F_OK) == 0);
    CHECK(access(path_of("merged/model.safetensors"), F_OK) == 0);
    CHECK(access(path_of("merged/tokenizer.json"), F_OK) == 0);
    run("merge --model %s --delta %s --out %s --json", path_of("tiny"), path_of("peft-lora"), path_of("merged2"));
    EXPECT_EXIT(0);
    cJSON *j = parse_output();
    if (j) {
        CHECK(num(j, "merged_matrices") == 4);
        CHECK(num(j, "head_tensors") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(j, "dtype")->valuestring, "F32") == 0);
        cJSON_Delete(j);
    }
    /* The merged folder is a model inspect reads with its weights. */
    run("inspect --model %s --json", path_of("merged"));
    EXPECT_EXIT(0);
}

/* Labelled examples for the tiny model (ids 2..39, at most 14 tokens: 16
 * positions less RoBERTa's pad offset), labels as ids or, with `names`,
 * as the merged config's id2label names (LABEL_k) and one it lacks. */
static bool write_dev(const char *path, bool names, bool unknown) {
    char text[8192];
    size_t n = 0;
    uint64_t st = 23;
    for (int i = 0; i < 24; i++) {
        const int len = 3 + i % 10, label = (int)(th_rand_u64(&st) % 2);
        n += (size_t)snprintf(text + n, sizeof text - n, "{\"input_ids\": [");
        for (int t = 0; t < len; t++)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s%d", t ? ", " : "", 2 + (int)(th_rand_u64(&st) % 38));
        if (!names) n += (size_t)snprintf(text + n, sizeof text - n, "], \"label\": %d}\n", label);
        else if (unknown && i == 5) n += (size_t)snprintf(text + n, sizeof text - n, "], \"label\": \"positive\"}\n");
        else n += (size_t)snprintf(text + n, sizeof text - n, "], \"label\": \"LABEL_%d\"}\n", label);
    }
    return write_text(path, text);
}

/* vkpeft eval --json (f32 weights) of `model` with `delta` (NULL: none);
 * false with a failed check when it does not succeed. */
static bool eval_figures(const char *model, const char *delta, const char *data, double *accuracy, double *loss) {
    run("eval --model %s%s%s --data %s --weights f32 --batch 8 --json", model, delta ? " --delta " : "",
        delta ? delta : "", data);
    EXPECT_EXIT(0);
    cJSON *j = r.code == 0 ? parse_output() : NULL;
    if (!j) return false;
    *accuracy = num(j, "accuracy");
    *loss = num(j, "loss");
    cJSON_Delete(j);
    return true;
}

/* The merged folder alone scores what the base scores with the delta. Both
 * run the same f32 kernels; the merged folder holds W' = W + s·B·A rounded
 * once to f32 where the delta run adds s·(x·Aᵀ)·Bᵀ (rank 2) to x·Wᵀ: a few
 * units of f32 rounding (2⁻²⁴ · K, K ≤ 24 the reduction length) per
 * projection output, which moves a mean cross-entropy near 0.7 by ~1e-6
 * at most through two layers; 1e-5 relative keeps a margin (as
 * test_cli_merge.c). The base's own loss must differ by more than 100
 * times that, or a merge that dropped the LoRA would pass. */
static void merge_then_eval(void) {
    if (!setup() || !write_dev(path_of("dev.jsonl"), false, false) ||
        !write_dev(path_of("dev-names.jsonl"), true, false) || !write_dev(path_of("dev-bad.jsonl"), true, true) ||
        !write_tiny_model(path_of("tiny-bare"), false))
        return;
    run("merge --model %s --delta %s --out %s", path_of("tiny"), path_of("peft-lora"), path_of("merged-eval"));
    EXPECT_EXIT(0);
    double acc_with, loss_with, acc_alone, loss_alone, acc_base, loss_base, acc_named, loss_named;
    if (!eval_figures(path_of("tiny"), path_of("peft-lora"), path_of("dev.jsonl"), &acc_with, &loss_with) ||
        !eval_figures(path_of("merged-eval"), NULL, path_of("dev.jsonl"), &acc_alone, &loss_alone) ||
        !eval_figures(path_of("tiny"), NULL, path_of("dev.jsonl"), &acc_base, &loss_base))
        return;
    th_diag("loss %.9g with the delta, %.9g merged, %.9g base", loss_with, loss_alone, loss_base);
    CHECKF(acc_alone == acc_with, "accuracy %g merged, %g with the delta", acc_alone, acc_with);
    CHECKF(fabs(loss_alone - loss_with) <= 1e-5 * fabs(loss_with), "loss %.9g merged, %.9g with the delta",
           loss_alone, loss_with);
    CHECKF(fabs(loss_base - loss_with) > 1e-3 * fabs(loss_with), "the delta moves the loss only from %.9g to %.9g",
           loss_base, loss_with);
    /* Label names map through the merged config.json's id2label. */
    if (eval_figures(path_of("merged-eval"), NULL, path_of("dev-names.jsonl"), &acc_named, &loss_named))
        CHECKF(acc_named == acc_alone && loss_named == loss_alone, "named labels: accuracy %g loss %.9g, ids: %g %.9g",
               acc_named, loss_named, acc_alone, loss_alone);
    run("eval --model %s --data %s", path_of("merged-eval"), path_of("dev-bad.jsonl"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("\"positive\" is not one of the labels of");
    EXPECT_OUTPUT("config.json's id2label (LABEL_0, LABEL_1)");
    /* A bare pretrained checkpoint has no head to score with. */
    run("eval --model %s --data %s", path_of("tiny-bare"), path_of("dev.jsonl"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("tiny-bare has no trained classification head");
    EXPECT_OUTPUT("classifier.dense.weight, classifier.dense.bias, classifier.out_proj.weight");
}

static void merge_bad_input(void) {
    if (!setup()) return;
    run("merge --model %s --delta %s --out %s", path_of("tiny"), path_of("mam"), path_of("merged-mam"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("only LoRA");
    EXPECT_OUTPUT("prefix at attn");
    CHECK(access(path_of("merged-mam"), F_OK) != 0);
    run("merge --model %s --delta %s --out %s", path_of("roberta-base"), path_of("peft-lora"), path_of("merged-x"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("has shape (2, 16), want (2, 768)");
    run("merge --model %s --delta %s --out %s", path_of("tiny"), path_of("peft-lora"), path_of("tiny"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("is the base model's folder");
    run("merge --model %s --delta %s --out %s", path_of("no-such-model"), path_of("peft-lora"), path_of("m"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("no-such-model");
    run("merge --model %s --delta %s --out %s", path_of("tiny"), path_of("no-such-delta"), path_of("m"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("no-such-delta");
    run("merge --model %s --delta %s", path_of("tiny"), path_of("peft-lora"));
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("are all required");
}

static void teardown(void) {
    if (!root[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli_model PATH-TO-VKPEFT\n");
        return 2;
    }
    vkpeft = argv[1];
    static const struct th_case cases[] = {
        TH_CASE(help_texts),          TH_CASE(inspect_roberta_base_lora),   TH_CASE(inspect_every_preset),
        TH_CASE(inspect_weights_and_folders), TH_CASE(inspect_decoder_models), TH_CASE(inspect_bad_input), TH_CASE(merge_lora),
        TH_CASE(merge_then_eval),     TH_CASE(merge_bad_input),     TH_CASE(teardown),
    };
    return th_main(cases, sizeof cases / sizeof cases[0], argc - 1, argv + 1);
}
