/* vkpeft merge on language models, as a user runs it, on tiny model
 * folders the test writes (random weights from the decoder and seq2seq
 * references' generators, a WordLevel tokenizer.json):
 *
 * - a LoRA delta trained a few steps on LLaMA (grouped kv heads; q, k, o,
 *   up, down), GPT-2 (c_attn, i.e. q, k and v in the fused Conv1D, and
 *   mlp.c_fc), BART and mBART (self-attention in both stacks,
 *   cross-attention, fc1, fc2 on one layer) is merged; `vkpeft eval` of
 *   the merged folder alone gives the loss of the base model with the
 *   delta, to f32 rounding, and the delta moves that loss well away from
 *   the base model's (so the comparison can fail);
 * - merged tensors equal f32(W + s·B·A) computed here in double from the
 *   delta's A and B (GPT-2: each of q, k, v in its column block of c_attn's
 *   [in, out] weight; BART: a cross-attention projection), untouched
 *   tensors and config.json are the base's bytes;
 * - a run's PEFT folder alone merges to the same file (LLaMA; GPT-2's
 *   fused c_attn LoRA of rank 2r, imported as q, k, v sharing A), and a
 *   sharded base (model.safetensors.index.json) to the same tensors (a
 *   base lacking a weight the delta adapts is refused);
 * - a full GPT-2 delta and a BitFit BART delta, each with a LoRA beside
 *   it, merge the same way (the trained tensors written as the delta holds
 *   them);
 * - a full GPT-2 delta.safetensors holds each Conv1D weight as the base
 *   file does, [in, out] data under its [in, out] header: at lr 0 every
 *   tensor is the base file's, byte for byte; at lr 1e-5 the base's values
 *   moved by about lr a step (read in the decoder's (out, in) order they
 *   would be far off); a run that loses the device resumes from its
 *   checkpoint to the same bytes; a format-1 copy (no "format" in
 *   delta.json, those weights transposed) evaluates and merges as the
 *   delta does, and a later or malformed format exits 2;
 * - a prefix delta, --out on the base folder and a delta of another model
 *   exit 2 with the reason.
 * argv[1] is the vkpeft binary. */
#include "clitest.h"
#include "dectest.h"
#include "reference/decoder.h"
#include "reference/seq2seq.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Vocabulary: [PAD] 0, [UNK] 1, <s> 2, </s> 3, x0..x7 4..11, y0..y7 12..19. */
static const char llama_config[] =
    "{\"model_type\":\"llama\",\"vocab_size\":20,\"hidden_size\":32,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":48,\"max_position_embeddings\":32,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":100.0,\"tie_word_embeddings\":false,"
    "\"bos_token_id\":2,\"eos_token_id\":3,\"pad_token_id\":0}";
static const char gpt2_config[] =
    "{\"model_type\":\"gpt2\",\"vocab_size\":20,\"n_embd\":16,\"n_layer\":2,\"n_head\":2,\"n_inner\":32,"
    "\"n_positions\":32,\"layer_norm_epsilon\":1e-5,\"bos_token_id\":2,\"eos_token_id\":3}";
static const char bart_config[] =
    "{\"model_type\":\"bart\",\"vocab_size\":20,\"d_model\":16,\"encoder_layers\":2,\"decoder_layers\":2,"
    "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":32,\"decoder_ffn_dim\":32,"
    "\"max_position_embeddings\":32,\"activation_function\":\"gelu\",\"scale_embedding\":false,"
    "\"pad_token_id\":0,\"bos_token_id\":2,\"eos_token_id\":3,\"decoder_start_token_id\":3}";
static const char mbart_config[] =
    "{\"model_type\":\"mbart\",\"vocab_size\":20,\"d_model\":16,\"encoder_layers\":2,\"decoder_layers\":2,"
    "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":32,\"decoder_ffn_dim\":24,"
    "\"max_position_embeddings\":32,\"activation_function\":\"gelu\",\"scale_embedding\":true,"
    "\"tie_word_embeddings\":false,\"pad_token_id\":0,\"bos_token_id\":2,\"eos_token_id\":3,"
    "\"decoder_start_token_id\":3}";
/* generation_config.json travels with the model */
static const char generation_config[] = "{\"bos_token_id\":2,\"eos_token_id\":3,\"max_new_tokens\":4}";

/* The encoder-decoders' delta: q everywhere (encoder, decoder self- and
 * cross-attention), v only in cross-attention, o in the decoder's two
 * attentions, fc1 in both stacks, fc2 on layer 1 only. */
static const char s2s_spec[] =
    "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":4,\"alpha\":8},"
    "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2,\"alpha\":4,\"stack\":[\"cross\"]},"
    "{\"kind\":\"lora\",\"at\":\"o\",\"rank\":4,\"alpha\":8,\"stack\":[\"decoder\",\"cross\"]},"
    "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":4,\"alpha\":8},"
    "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"alpha\":2,\"layers\":[1]}]}";
enum { S2S_MATRICES = 6 + 2 + 4 + 4 + 2 };

static bool setup_done;

/* root/dir: config, weights N(0, 0.2) from a reference's generator,
 * tokenizer, generation_config.json. */
static bool write_model_dir(const char *dir, const char *config, uint64_t seed) {
    struct model_arch arch;
    if (!CHECK(vp_mkdir_p(path_in(dir)) == VP_OK) ||
        !CHECKF(model_arch_parse(config, strlen(config), "config.json", &arch) == VP_OK, "%s", vp_last_error()))
        return false;
    const struct delta_spec none = {.count = 0};
    const bool s2s = arch.stack == MODEL_STACK_ENCODER_DECODER;
    bool ok;
    if (s2s) {
        const struct refs_options ropt = {.seed = seed, .weight_std = 0.2};
        struct refs *m = NULL;
        ok = CHECKF(refs_create(&m, &arch, &none, &ropt) == VP_OK, "%s", vp_last_error()) &&
             dectest_write_tensors(&m->tensors, path_in(dir), config);
        refs_destroy(m);
    } else {
        const struct refd_options ropt = {.seed = seed, .weight_std = 0.2};
        struct refd *m = NULL;
        ok = CHECKF(refd_create(&m, &arch, &none, &ropt) == VP_OK, "%s", vp_last_error()) &&
             dectest_write_model(m, path_in(dir), config);
        refd_destroy(m);
    }
    model_arch_finish(&arch);
    char name[256];
    snprintf(name, sizeof name, "%s/generation_config.json", dir);
    return ok && write_text(name, generation_config) && write_xy_tokenizer(dir, s2s);
}

static bool write_tasks(void) {
    char lm[8192] = "", s2s[8192] = "";
    size_t n = 0, m = 0;
    for (int a = 0; a < 8; a++)
        for (int b = 0; b < 8; b += 2) {
            n += (size_t)snprintf(lm + n, sizeof lm - n, "{\"prompt\":\"x%d x%d\",\"completion\":\" y%d y%d\"}\n", a,
                                  b, (a + b) % 8, (3 * b + 1) % 8);
            m += (size_t)snprintf(s2s + m, sizeof s2s - m, "{\"source\":\"x%d x%d\",\"target\":\"y%d y%d\"}\n", a,
                                  b, (a + 5) % 8, (3 * b + 1) % 8);
        }
    return write_text("lm.jsonl", lm) && write_text("s2s.jsonl", s2s) && write_text("s2s-spec.json", s2s_spec);
}

static bool setup(void) {
    if (setup_done) return true;
    snprintf(root, sizeof root, "/tmp/vkpeft-test-cli-merge-XXXXXX");
    if (!CHECK(mkdtemp(root) != NULL)) return false;
    setup_done = write_model_dir("llama", llama_config, 7) && write_model_dir("gpt2", gpt2_config, 8) &&
                 write_model_dir("bart", bart_config, 5) && write_model_dir("mbart", mbart_config, 6) &&
                 write_tasks();
    return setup_done;
}

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------ */

/* vkpeft eval's loss (f32 weights) of `model` with `delta` (NULL: none). */
static double eval_loss(const char *model, const char *delta, const char *data) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "eval --model %s %s%s --data %s --weights f32 --batch 16 --max-new-tokens 2 --json",
             model, delta ? "--delta " : "", delta ? delta : "", data);
    run(cmd);
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const double loss = j ? json_number(j, "loss") : NAN;
    cJSON_Delete(j);
    CHECKF(isfinite(loss), "%s with %s: no loss", model, delta ? delta : "no delta");
    return loss;
}

/* The merged model alone scores what the base model with the delta scores.
 * Both run the same f32 kernels; they differ in that the merged folder
 * holds W' = W + s·B·A rounded once to f32 where the delta run adds
 * s·(x·Aᵀ)·Bᵀ (r ≤ 4 terms) to x·Wᵀ in f32: per projection output a few
 * units of f32 rounding (~2⁻²⁴ · K, K ≤ 48 the reduction length) relative
 * to its terms, which moves a mean cross-entropy near 3 by ~1e-6 at most
 * through two layers; 1e-5 relative keeps a margin (test_cli_lm.c's GPT-2
 * merge check uses the same bound). A delta that moves the loss by less
 * than 100 times that would let a broken merge pass, so the base model's
 * loss must differ by more. */
static void losses_agree(const char *model, const char *delta, const char *merged, const char *data) {
    const double with = eval_loss(model, delta, data), alone = eval_loss(merged, NULL, data);
    const double base = eval_loss(model, NULL, data);
    th_diag("%s + %s: loss %.9g, merged %.9g, base %.9g", model, delta, with, alone, base);
    CHECKF(fabs(with - alone) <= 1e-5 * fabs(with), "%s: loss %.9g with the delta, %.9g merged", model, with, alone);
    CHECKF(fabs(with - base) > 1e-3 * fabs(with), "%s: the delta moves the loss only from %.9g to %.9g", model, base,
           with);
}

/* A copy of tensor `name` of root/file (F32), or NULL with a failed check. */
static float *read_tensor(const char *file, const char *name, int64_t shape[2]) {
    struct io_safetensors *f = NULL;
    if (!CHECKF(io_safetensors_open(path_in(file), &f) == VP_OK, "%s", vp_last_error())) return NULL;
    const struct io_tensor *t = io_safetensors_find(f, name);
    float *out = NULL;
    if (CHECKF(t && t->dtype == IO_DTYPE_F32 && t->ndim == 2, "%s: no 2-D F32 tensor %s", file, name)) {
        out = malloc(t->nbytes);
        memcpy(out, t->data, t->nbytes);
        shape[0] = t->shape[0];
        shape[1] = t->shape[1];
    }
    io_safetensors_close(f);
    return out;
}

/* Merged tensor `wname` of `merged` against f32(W + s·B·A) in double from
 * the base's W and `delta`'s A and B: an (out, in) Linear, or (conv1d) the
 * columns c0 .. c0+out of an [in, ld] Conv1D weight. Each element is
 * summed as the merge sums it (W, then the rank terms in order), so the
 * values must be equal; the projection must have changed. */
static void check_merged(const char *model, const char *delta, const char *merged, const char *wname,
                         const char *ab, double scale, bool conv1d, int64_t c0) {
    char path[256], na[160], nb[160];
    int64_t ws[2], ms[2], as[2], bs[2];
    snprintf(path, sizeof path, "%s/model.safetensors", model);
    float *W = read_tensor(path, wname, ws);
    snprintf(path, sizeof path, "%s/model.safetensors", merged);
    float *M = read_tensor(path, wname, ms);
    snprintf(path, sizeof path, "%s/delta.safetensors", delta);
    snprintf(na, sizeof na, "%s.lora_A", ab);
    snprintf(nb, sizeof nb, "%s.lora_B", ab);
    float *A = read_tensor(path, na, as), *B = read_tensor(path, nb, bs);
    const int64_t rank = as[0], in = as[1], out = bs[0];
    if (W && M && A && B && CHECK(ms[0] == ws[0] && ms[1] == ws[1] && bs[1] == rank) &&
        CHECKF(conv1d ? ws[0] == in && c0 + out <= ws[1] : ws[0] == out && ws[1] == in, "%s is (%lld, %lld)", wname,
               (long long)ws[0], (long long)ws[1])) {
        size_t bad = 0, changed = 0;
        for (int64_t o = 0; o < out; o++)
            for (int64_t c = 0; c < in; c++) {
                const int64_t at = conv1d ? c * ws[1] + c0 + o : o * in + c;
                double x = W[at];
                for (int64_t j = 0; j < rank; j++) x += scale * B[o * rank + j] * A[j * in + c];
                bad += (float)x != M[at];
                changed += M[at] != W[at];
            }
        CHECKF(bad == 0, "%s: %zu of %lld merged values differ from f32(W + %g·B·A)", wname, bad,
               (long long)(out * in), scale);
        CHECKF(changed > (size_t)(out * in) / 2, "%s: only %zu values changed", wname, changed);
    }
    free(W);
    free(M);
    free(A);
    free(B);
}

/* A tensor the delta does not touch keeps the base's bytes. */
static void check_untouched(const char *model, const char *merged, const char *name) {
    struct io_safetensors *a = NULL, *b = NULL;
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/model.safetensors", model);
    snprintf(pb, sizeof pb, "%s/model.safetensors", merged);
    if (CHECKF(io_safetensors_open(path_in(pa), &a) == VP_OK && io_safetensors_open(path_in(pb), &b) == VP_OK, "%s",
               vp_last_error())) {
        const struct io_tensor *x = io_safetensors_find(a, name), *y = io_safetensors_find(b, name);
        CHECKF(x && y && x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0,
               "%s differs in %s", name, merged);
        CHECK(io_safetensors_count(a) == io_safetensors_count(b));
    }
    if (a) io_safetensors_close(a);
    if (b) io_safetensors_close(b);
}

/* merge --json; the merged folder has the base's config.json bytes, its
 * tokenizer and generation_config.json. */
static void merge_ok(const char *model, const char *delta, const char *out, int matrices) {
    char cmd[512], a[256], b[256];
    snprintf(cmd, sizeof cmd, "merge --model %s --delta %s --out %s --json", model, delta, out);
    run(cmd);
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    if (j) {
        CHECKF(json_number(j, "merged_matrices") == matrices, "%s: %g matrices merged, want %d", out,
               json_number(j, "merged_matrices"), matrices);
        /* tokenizer.json, tokenizer_config.json, generation_config.json */
        CHECK(json_number(j, "tokenizer_files") == 3);
        CHECK(strcmp(cJSON_GetObjectItem(j, "dtype")->valuestring, "F32") == 0);
        cJSON_Delete(j);
    }
    static const char *const same[] = {"config.json", "generation_config.json", "tokenizer.json"};
    for (int k = 0; k < 3; k++) {
        snprintf(a, sizeof a, "%s/%s", model, same[k]);
        snprintf(b, sizeof b, "%s/%s", out, same[k]);
        CHECKF(same_bytes(a, b), "%s is not the base's", b);
    }
}

/* vkpeft train `delta` (+ `extra`) on `data` into run_dir, merged into
 * `merged` (merge_ok), whose loss alone must be the run's (losses_agree). */
static void train_and_merge(const char *model, const char *delta, const char *extra, const char *data,
                            const char *run_dir, const char *merged, int matrices) {
    char cmd[768];
    snprintf(cmd, sizeof cmd, "train --model %s --delta %s %s --data %s --out %s --batch 8 --weights f32 --quiet",
             model, delta, extra, data, run_dir);
    run(cmd);
    if (!EXPECT_EXIT(0)) return;
    merge_ok(model, run_dir, merged, matrices);
    losses_agree(model, run_dir, merged, data);
}

/* ------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------ */

/* LLaMA with 4 heads over 2 kv heads: k is (16, 32), so a k/v LoRA's B has
 * the kv width. Modules in --lora-targets order: q 0, k 1, o 2, up 3,
 * down 4; lora:r=4,a=8 is s = 2. */
static void merge_llama(void) {
    if (!setup()) return;
    train_and_merge("llama", "lora:r=4,a=8",
                    "--lora-targets q_proj,k_proj,o_proj,up_proj,down_proj --steps 4 --lr 2e-2", "lm.jsonl",
                    "run-llama", "merged-llama", 10);
    check_merged("llama", "run-llama", "merged-llama", "model.layers.1.self_attn.k_proj.weight",
                 "decoder.layers.1.delta1", 2.0, false, 0);
    check_merged("llama", "run-llama", "merged-llama", "model.layers.0.mlp.down_proj.weight",
                 "decoder.layers.0.delta4", 2.0, false, 0);
    check_untouched("llama", "merged-llama", "model.layers.0.self_attn.v_proj.weight");
    check_untouched("llama", "merged-llama", "model.layers.1.mlp.gate_proj.weight");
}

/* Copies run_dir's PEFT pair (adapter_config.json, adapter_model.safetensors)
 * alone into root/to, so that the PEFT importer reads it. */
static bool copy_peft(const char *run_dir, const char *to) {
    char config[300];
    snprintf(config, sizeof config, "%s/adapter_config.json", run_dir);
    if (!CHECKF(exists(config), "%s has no PEFT files", run_dir)) return false;
    bool ok = CHECK(vp_mkdir_p(path_in(to)) == VP_OK);
    static const char *const files[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int k = 0; k < 2 && ok; k++) {
        void *data = NULL;
        size_t size = 0;
        char src[300], dst[300];
        snprintf(src, sizeof src, "%s/%s", run_dir, files[k]);
        snprintf(dst, sizeof dst, "%s/%s", to, files[k]);
        ok = CHECKF(vp_file_read(path_in(src), &data, &size) == VP_OK &&
                        vp_file_write_atomic(path_in(dst), data, size) == VP_OK, "%s", vp_last_error());
        free(data);
    }
    return ok;
}

/* The run's PEFT files alone merge to the same bytes. */
static void merge_llama_peft(void) {
    if (!setup() || !copy_peft("run-llama", "peft-llama")) return;
    merge_ok("llama", "peft-llama", "merged-llama-peft", 10);
    CHECK(same_bytes("merged-llama/model.safetensors", "merged-llama-peft/model.safetensors"));
}

/* llama's tensors in two shards named by model.safetensors.index.json
 * merge to the tensors of the single-file merge (one model.safetensors). */
static void merge_sharded(void) {
    if (!setup() || !exists("merged-llama/model.safetensors")) return;
    struct io_safetensors *f = NULL;
    if (!CHECKF(io_safetensors_open(path_in("llama/model.safetensors"), &f) == VP_OK, "%s", vp_last_error())) return;
    const size_t n = io_safetensors_count(f), half = n / 2;
    struct io_tensor_out *out = calloc(n, sizeof *out);
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    for (size_t k = 0; k < n; k++) {
        const struct io_tensor *t = io_safetensors_at(f, k);
        out[k] = (struct io_tensor_out){t->name, t->dtype, t->ndim, {t->shape[0], t->shape[1]}, t->data};
        cJSON_AddStringToObject(map, t->name, k < half ? "model-00001-of-00002.safetensors"
                                                       : "model-00002-of-00002.safetensors");
    }
    char *text = cJSON_Print(index);
    bool ok = CHECK(vp_mkdir_p(path_in("llama-sharded")) == VP_OK) &&
              CHECK(io_safetensors_write(path_in("llama-sharded/model-00001-of-00002.safetensors"), out, half, NULL) ==
                    VP_OK) &&
              CHECK(io_safetensors_write(path_in("llama-sharded/model-00002-of-00002.safetensors"), out + half,
                                         n - half, NULL) == VP_OK) &&
              write_text("llama-sharded/model.safetensors.index.json", text) &&
              write_text("llama-sharded/config.json", llama_config) &&
              write_text("llama-sharded/generation_config.json", generation_config) &&
              write_xy_tokenizer("llama-sharded", false);
    free(text);
    cJSON_Delete(index);
    free(out);
    io_safetensors_close(f);
    if (!ok) return;
    merge_ok("llama-sharded", "run-llama", "merged-sharded", 10);
    CHECK(same_bytes("merged-llama/model.safetensors", "merged-sharded/model.safetensors"));
    /* The first shard alone is a model folder that lacks weights the delta
     * adapts: refused before the output folder is made. */
    void *data = NULL;
    size_t size = 0;
    if (!CHECKF(vp_file_read(path_in("llama-sharded/model-00001-of-00002.safetensors"), &data, &size) == VP_OK, "%s",
                vp_last_error()) ||
        !CHECK(vp_mkdir_p(path_in("llama-half")) == VP_OK) ||
        !CHECK(vp_file_write_atomic(path_in("llama-half/model.safetensors"), data, size) == VP_OK) ||
        !write_text("llama-half/config.json", llama_config)) {
        free(data);
        return;
    }
    free(data);
    run("merge --model llama-half --delta run-llama --out merged-half");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("llama-half: the weights have no tensor model.layers.1.");
    EXPECT_OUTPUT("is it the delta's base model?");
    CHECK(!exists("merged-half"));
}

/* GPT-2: c_attn targets q 0, k 1, v 2 (column blocks 0, d, 2d of the fused
 * [d, 3d] Conv1D weight), mlp.c_fc is up 3 ([d, I]). */
static void merge_gpt2(void) {
    if (!setup()) return;
    train_and_merge("gpt2", "lora:r=4,a=8", "--lora-targets c_attn,mlp.c_fc --steps 4 --lr 2e-2", "lm.jsonl",
                    "run-gpt2", "merged-gpt2", 8);
    for (int i = 0; i < 3; i++) {
        char ab[64];
        snprintf(ab, sizeof ab, "decoder.layers.1.delta%d", i);
        check_merged("gpt2", "run-gpt2", "merged-gpt2", "transformer.h.1.attn.c_attn.weight", ab, 2.0, true,
                     16 * i);
    }
    check_merged("gpt2", "run-gpt2", "merged-gpt2", "transformer.h.0.mlp.c_fc.weight", "decoder.layers.0.delta3",
                 2.0, true, 0);
    check_untouched("gpt2", "merged-gpt2", "transformer.h.0.attn.c_proj.weight");
    check_untouched("gpt2", "merged-gpt2", "transformer.h.1.attn.c_attn.bias");
    /* LoRA on c_attn alone (q and v) is exported as one fused c_attn LoRA
     * of rank 2r, which imports as q, k and v LoRAs sharing A with B's
     * other blocks zero: exact zero terms, so that folder merges to the
     * same bytes. */
    run("train --model gpt2 --delta lora:r=2,a=4 --lora-targets q,v --data lm.jsonl --out run-gpt2-qv --steps 2 "
        "--batch 8 --lr 2e-2 --quiet");
    EXPECT_EXIT(0);
    if (!copy_peft("run-gpt2-qv", "peft-gpt2")) return;
    merge_ok("gpt2", "run-gpt2-qv", "merged-gpt2-qv", 4);
    merge_ok("gpt2", "peft-gpt2", "merged-gpt2-peft", 6);
    CHECK(same_bytes("merged-gpt2-qv/model.safetensors", "merged-gpt2-peft/model.safetensors"));
}

/* BART and mBART with s2s_spec: the cross-attention blocks' LoRA (cross.
 * layers.{l}) lands in model.decoder.layers.{l}.encoder_attn. */
static void merge_seq2seq(void) {
    if (!setup()) return;
    static const char *const models[] = {"bart", "mbart"};
    for (int k = 0; k < 2; k++) {
        char run_dir[64], merged[64];
        snprintf(run_dir, sizeof run_dir, "run-%s", models[k]);
        snprintf(merged, sizeof merged, "merged-%s", models[k]);
        train_and_merge(models[k], "s2s-spec.json", "--steps 3 --lr 2e-2", "s2s.jsonl", run_dir, merged,
                        S2S_MATRICES);
        check_merged(models[k], run_dir, merged, "model.decoder.layers.1.encoder_attn.v_proj.weight",
                     "cross.layers.1.delta1", 2.0, false, 0);
        check_merged(models[k], run_dir, merged, "model.decoder.layers.0.encoder_attn.q_proj.weight",
                     "cross.layers.0.delta0", 2.0, false, 0);
        check_merged(models[k], run_dir, merged, "model.decoder.layers.0.self_attn.out_proj.weight",
                     "decoder.layers.0.delta2", 2.0, false, 0);
        check_merged(models[k], run_dir, merged, "model.encoder.layers.1.fc2.weight", "encoder.layers.1.delta4", 1.0,
                     false, 0);
        check_untouched(models[k], merged, "model.encoder.layers.0.fc2.weight");
        check_untouched(models[k], merged, "model.decoder.layers.0.self_attn.v_proj.weight");
    }
}

/* Tensor `name` of root/a equals tensor `name` of root/b (both F32, same
 * shape). */
static void check_same_tensor(const char *a, const char *b, const char *name) {
    int64_t sa[2], sb[2];
    float *x = read_tensor(a, name, sa), *y = read_tensor(b, name, sb);
    if (x && y && CHECK(sa[0] == sb[0] && sa[1] == sb[1])) {
        size_t bad = 0;
        for (int64_t i = 0; i < sa[0] * sa[1]; i++) bad += x[i] != y[i];
        CHECKF(bad == 0, "%s: %zu values of %s differ from %s", name, bad, a, b);
    }
    free(x);
    free(y);
}

/* BitFit and full deltas are model tensors: the merge writes them as the
 * delta holds them (GPT-2's Conv1D weights [in, out], as the base file)
 * and adds a LoRA beside them. */
static void merge_full_and_bitfit(void) {
    if (!setup()) return;
    CHECK(write_text("gpt2-full.json", "{\"modules\":[{\"kind\":\"full\"},"
                                       "{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"alpha\":4}]}"));
    CHECK(write_text("bart-bitfit.json", "{\"modules\":[{\"kind\":\"bitfit\"},"
                                         "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2,\"alpha\":4,"
                                         "\"stack\":[\"cross\"]}]}"));
    train_and_merge("gpt2", "gpt2-full.json", "--steps 3 --lr 1e-2", "lm.jsonl", "run-gpt2-full",
                    "merged-gpt2-full", 2);
    check_same_tensor("merged-gpt2-full/model.safetensors", "run-gpt2-full/delta.safetensors",
                      "transformer.h.0.mlp.c_fc.weight");
    check_same_tensor("merged-gpt2-full/model.safetensors", "run-gpt2-full/delta.safetensors",
                      "transformer.wte.weight");
    train_and_merge("bart", "bart-bitfit.json", "--steps 3 --lr 2e-2", "s2s.jsonl", "run-bart-bitfit",
                    "merged-bart-bitfit", 2);
    check_merged("bart", "run-bart-bitfit", "merged-bart-bitfit", "model.decoder.layers.1.encoder_attn.v_proj.weight",
                 "cross.layers.1.delta1", 2.0, false, 0);
    check_untouched("bart", "merged-bart-bitfit", "model.encoder.layers.0.fc1.weight");
}

/* A full GPT-2 run at lr 1e-5: every Conv1D weight of delta.safetensors
 * (read here as any safetensors reader reads it) is the base file's tensor,
 * same shape, same [in, out] layout, moved by at most 4·lr a step (AdamW's
 * step lr·m̂/(√v̂ + ε) is about lr per value over a few steps, the schedule
 * only lowers it and the decay lr·λ·|w| is far below), and moved somewhere
 * by more than lr/10 (it trained). Read in the old (out, in) order, the
 * values would be other weights of N(0, 0.2), off by ~0.2 somewhere, 10³
 * times the bound (c_proj, square, too). */
#define FULL_LR 1e-5
#define FULL_ARGS                                                                                              \
    "train --model gpt2 --delta full --data lm.jsonl --batch 8 --steps 4 --lr 1e-5 --weights f32 --seed 3 "   \
    "--checkpoint-every 2 --quiet"

static void check_trained_in_layout(const char *run_dir, const char *name) {
    int64_t ws[2], ds[2];
    char path[256];
    snprintf(path, sizeof path, "%s/delta.safetensors", run_dir);
    float *W = read_tensor("gpt2/model.safetensors", name, ws), *D = read_tensor(path, name, ds);
    if (W && D && CHECKF(ds[0] == ws[0] && ds[1] == ws[1], "%s: [%lld, %lld] in the delta, [%lld, %lld] in the base",
                         name, (long long)ds[0], (long long)ds[1], (long long)ws[0], (long long)ws[1])) {
        const int64_t in = ws[0], out = ws[1];
        double moved = 0, old_layout = 0;
        for (int64_t i = 0; i < in; i++)
            for (int64_t o = 0; o < out; o++) {
                moved = fmax(moved, fabs((double)D[i * out + o] - W[i * out + o]));
                old_layout = fmax(old_layout, fabs((double)D[o * in + i] - W[i * out + o]));
            }
        th_diag("%s: moved %.3g at most (lr %g, 4 steps); read (out, in) it would be off by %.3g", name, moved,
                FULL_LR, old_layout);
        CHECKF(moved <= 4 * 4 * FULL_LR, "%s: the delta's values are up to %.3g from the base's", name, moved);
        CHECKF(moved > FULL_LR / 10, "%s: training moved nothing (%.3g)", name, moved);
        CHECKF(old_layout > 1e-2, "%s: the check cannot tell the layouts apart (%.3g)", name, old_layout);
    }
    free(W);
    free(D);
}

/* At lr 0 the trained tensors stay the base's: every tensor of
 * delta.safetensors has the shape and the bytes of the base file's tensor
 * of its name (all of GPT-2's, Conv1D weights included). */
static void check_equals_base(const char *run_dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/delta.safetensors", run_dir);
    struct io_safetensors *d = NULL, *w = NULL;
    if (CHECKF(io_safetensors_open(path_in(path), &d) == VP_OK &&
               io_safetensors_open(path_in("gpt2/model.safetensors"), &w) == VP_OK, "%s", vp_last_error())) {
        CHECKF(io_safetensors_count(d) == io_safetensors_count(w), "%zu tensors in the delta, %zu in the base",
               io_safetensors_count(d), io_safetensors_count(w));
        for (size_t k = 0; k < io_safetensors_count(d); k++) {
            const struct io_tensor *x = io_safetensors_at(d, k), *y = io_safetensors_find(w, x->name);
            bool same = y && x->ndim == y->ndim && x->nbytes == y->nbytes;
            for (int i = 0; same && i < x->ndim; i++) same = x->shape[i] == y->shape[i];
            CHECKF(same && memcmp(x->data, y->data, x->nbytes) == 0, "%s: not the base's tensor", x->name);
        }
    }
    if (d) io_safetensors_close(d);
    if (w) io_safetensors_close(w);
}

/* delta.safetensors in the base's layout, and a run that loses the device
 * after its step-2 checkpoint resumes (the checkpoint holds the device's
 * transposed layout) to the uninterrupted run's bytes. */
static void full_delta_layout(void) {
    if (!setup()) return;
    run("train --model gpt2 --delta full --data lm.jsonl --batch 8 --steps 1 --lr 0 --weights f32 --quiet "
        "--out full-lr0");
    if (EXPECT_EXIT(0)) check_equals_base("full-lr0");
    run(FULL_ARGS " --out full-ref");
    if (!EXPECT_EXIT(0)) return;
    static const char *const conv1d[] = {"transformer.h.0.attn.c_attn.weight", "transformer.h.1.attn.c_proj.weight",
                                         "transformer.h.0.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight"};
    for (int k = 0; k < 4; k++) check_trained_in_layout("full-ref", conv1d[k]);
    cJSON *j = NULL;
    void *text = NULL;
    size_t size = 0;
    if (CHECK(vp_file_read(path_in("full-ref/delta.json"), &text, &size) == VP_OK))
        j = cJSON_ParseWithLength(text, size);
    free(text);
    CHECKF(json_number(j, "format") == 2, "delta.json's format is %g", json_number(j, "format"));
    cJSON_Delete(j);
    /* the 5th queue submission comes after the step-2 checkpoint */
    run_env("VKPEFT_TEST_FAULT=submit:5", FULL_ARGS " --out full-lost");
    EXPECT_EXIT(1);
    EXPECT_OUTPUT("the device was lost during training");
    CHECK(exists("full-lost/checkpoint.vkpc"));
    run(FULL_ARGS " --out full-lost --resume");
    EXPECT_EXIT(0);
    CHECKF(same_bytes("full-ref/delta.safetensors", "full-lost/delta.safetensors"),
           "the resumed run's delta differs from the uninterrupted one's");
}

/* root/from/delta.json with "format" set to `format` (NULL: removed),
 * written to root/to/delta.json. */
static bool rewrite_format(const char *from, const char *to, cJSON *format) {
    char path[256];
    void *text = NULL;
    size_t size = 0;
    snprintf(path, sizeof path, "%s/delta.json", from);
    cJSON *j = CHECK(vp_file_read(path_in(path), &text, &size) == VP_OK) ? cJSON_ParseWithLength(text, size) : NULL;
    free(text);
    char *out = NULL;
    if (CHECKF(j != NULL, "%s is not JSON", path)) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "format");
        if (format) cJSON_AddItemToObject(j, "format", format);
        format = NULL;
        out = cJSON_Print(j);
    }
    cJSON_Delete(format);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/delta.json", to);
    const bool ok = out && CHECK(vp_mkdir_p(path_in(to)) == VP_OK) && write_text(path, out);
    free(out);
    return ok;
}

/* root/to/delta.safetensors: root/from's with GPT-2's Conv1D weights'
 * data in (out, in) order under their [in, out] header, as format 1 held
 * them. */
static bool write_format1_tensors(const char *from, const char *to) {
    char path[256];
    snprintf(path, sizeof path, "%s/delta.safetensors", from);
    struct io_safetensors *f = NULL;
    if (!CHECKF(io_safetensors_open(path_in(path), &f) == VP_OK, "%s", vp_last_error())) return false;
    const size_t count = io_safetensors_count(f);
    struct io_tensor_out *out = calloc(count, sizeof *out);
    float **owned = calloc(count, sizeof *owned);
    int transposed = 0;
    for (size_t k = 0; k < count; k++) {
        const struct io_tensor *t = io_safetensors_at(f, k);
        out[k] = (struct io_tensor_out){t->name, t->dtype, t->ndim, {t->shape[0], t->shape[1]}, t->data};
        const bool conv1d = strncmp(t->name, "transformer.h.", 14) == 0 && t->ndim == 2 &&
                            (strstr(t->name, ".c_attn.weight") || strstr(t->name, ".c_proj.weight") ||
                             strstr(t->name, ".c_fc.weight"));
        if (!conv1d) continue;
        const int64_t in = t->shape[0], n_out = t->shape[1];
        const float *x = t->data;
        owned[k] = malloc((size_t)t->numel * sizeof **owned);
        for (int64_t i = 0; i < in; i++)
            for (int64_t o = 0; o < n_out; o++) owned[k][o * in + i] = x[i * n_out + o];
        out[k].data = owned[k];
        transposed++;
    }
    snprintf(path, sizeof path, "%s/delta.safetensors", to);
    const bool ok = CHECKF(transposed == 8, "%d Conv1D weights in %s", transposed, from) &&
                    CHECKF(io_safetensors_write(path_in(path), out, count, NULL) == VP_OK, "%s", vp_last_error());
    for (size_t k = 0; k < count; k++) free(owned[k]);
    free(owned);
    free(out);
    io_safetensors_close(f);
    return ok;
}

/* A format-1 delta (no "format" in delta.json; a GPT-2 full delta's Conv1D
 * weights transposed under their header) loads converted: eval gives the
 * format-2 delta's loss to the bit and merge its bytes. A later format, or
 * one that is not a number, exits 2 with the reason. */
static void full_old_format(void) {
    if (!setup() || !CHECKF(exists("run-gpt2-full/delta.json"), "needs merge_full_and_bitfit's run")) return;
    if (!rewrite_format("run-gpt2-full", "gpt2-full-v1", NULL) ||
        !write_format1_tensors("run-gpt2-full", "gpt2-full-v1"))
        return;
    const double v2 = eval_loss("gpt2", "run-gpt2-full", "lm.jsonl"), v1 = eval_loss("gpt2", "gpt2-full-v1", "lm.jsonl");
    CHECKF(v1 == v2, "loss %.9g with the format-1 copy, %.9g with the delta", v1, v2);
    merge_ok("gpt2", "gpt2-full-v1", "merged-gpt2-full-v1", 2);
    CHECKF(same_bytes("merged-gpt2-full/model.safetensors", "merged-gpt2-full-v1/model.safetensors"),
           "the format-1 copy merges to other tensors");
    if (!rewrite_format("run-gpt2-full", "gpt2-full-v3", cJSON_CreateNumber(3)) ||
        !rewrite_format("run-gpt2-full", "gpt2-full-vx", cJSON_CreateString("2")))
        return;
    run("eval --model gpt2 --delta gpt2-full-v3 --data lm.jsonl");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("\"format\" is 3, from a newer vkpeft");
    run("merge --model gpt2 --delta gpt2-full-vx --out merged-vx");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("\"format\" must be 1 or 2");
    CHECK(!exists("merged-vx"));
}

static void merge_refusals(void) {
    if (!setup()) return;
    run("train --model llama --delta prefix:l=2 --data lm.jsonl --out run-prefix --steps 1 --batch 8 --quiet");
    EXPECT_EXIT(0);
    run("merge --model llama --delta run-prefix --out merged-prefix");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("only LoRA");
    EXPECT_OUTPUT("module 0 is prefix");
    CHECK(!exists("merged-prefix"));
    if (exists("run-llama/delta.json")) {
        run("merge --model llama --delta run-llama --out llama");
        EXPECT_EXIT(2);
        EXPECT_OUTPUT("is the base model's folder");
        run("merge --model gpt2 --delta run-llama --out merged-wrong");
        EXPECT_EXIT(2);
        EXPECT_OUTPUT("the delta was trained on 'llama'");
        CHECK(!exists("merged-wrong"));
    }
}

int main(int argc, char **argv) {
    const struct th_case cases[] = {
        TH_CASE(merge_llama),   TH_CASE(merge_llama_peft), TH_CASE(merge_sharded), TH_CASE(merge_gpt2),
        TH_CASE(merge_seq2seq), TH_CASE(merge_full_and_bitfit), TH_CASE(full_delta_layout), TH_CASE(full_old_format),
        TH_CASE(merge_refusals), TH_CASE(teardown),
    };
    return clitest_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
