/* The C decoder reference (tests/reference/decoder.h) against an independent
 * PyTorch implementation (tests/python/decoder_torch.py, Debian's
 * python3-torch): tiny GPT-2, LLaMA (grouped-query attention, untied head)
 * and Qwen2-like (q/k/v biases, tied head) models are written from the
 * reference's random weights as config.json + model.safetensors (float64),
 * every delta's tensors are handed to both, and loss, logits (B,T,V) and
 * every trainable gradient must agree, on a batch with right padding and a
 * prompt/completion loss mask.
 *
 * argv[1]: the script. VKPEFT_TORCH_PYTHON names the interpreter holding
 * torch (default /usr/bin/python3). */
#include "decoder.h"
#include "harness.h"
#include "safetensors.h"
#include "torchtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct torch_run torch;

struct job {
    const char *label, *preset, *json;
    int reparam;       // ≥ 0: every prefix module's reparam width; −1: as given
    bool zero_positions;
};

static const struct job jobs[] = {
    {"lora", "lora:r=2,a=3", NULL, -1, false},
    {"lora-all", NULL,
     "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2},{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"alpha\":4},"
     "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":1},{\"kind\":\"lora\",\"at\":\"o\",\"rank\":3},"
     "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":2,\"alpha\":5},{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,"
     "\"layers\":[1]}]}",
     -1, false},
    {"prefix-plain", "prefix:l=3", NULL, 0, false},
    {"prefix-reparam", "prefix:l=2", NULL, 5, false},
    {"prefix-zero-pos", "prefix:l=3", NULL, 0, true},
    {"prefix-two", NULL,
     "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":4,\"layers\":[1]},"
     "{\"kind\":\"prefix\",\"length\":1,\"reparam\":0}]}",
     -1, false},
    {"pa", "pa:r=4", NULL, -1, false},
    {"mam", "mam:l=2,r=4,s=2", NULL, 0, false},
    {"mam-reparam", "mam:l=2,r=3,s=4", NULL, 3, false},
    {"adapters", NULL,
     "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":3},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,\"act\":\"gelu\","
     "\"compose\":\"scale\",\"scale\":2},{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\","
     "\"bottleneck\":2,\"per_head\":true,\"compose\":\"gated\"},{\"kind\":\"adapter\",\"at\":\"ffn\","
     "\"insert\":\"sequential\",\"bottleneck\":3,\"act\":\"gelu\",\"compose\":\"gated\",\"layers\":[0]},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":4,\"act\":\"identity\"},"
     "{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2,\"stack\":[\"encoder\"]}]}",
     -1, false},
    {"bitfit", "bitfit", NULL, -1, false},
    {"full", "full", NULL, -1, false},
};
#define JOB_COUNT (sizeof jobs / sizeof jobs[0])

struct family {
    const char *name, *config;
    double label_smoothing;
};

/* d ≤ 16, 2 layers, vocabulary 40. */
static const struct family families[] = {
    {"gpt2",
     "{\"model_type\":\"gpt2\",\"vocab_size\":40,\"n_embd\":8,\"n_layer\":2,\"n_head\":2,\"n_inner\":16,"
     "\"n_positions\":16,\"layer_norm_epsilon\":1e-5}",
     0.0},
    {"llama",
     "{\"model_type\":\"llama\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"
     "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":20,\"max_position_embeddings\":64,"
     "\"rms_norm_eps\":1e-6,\"rope_theta\":100.0,\"tie_word_embeddings\":false}",
     0.1},
    {"qwen2",
     "{\"model_type\":\"qwen2\",\"vocab_size\":40,\"hidden_size\":12,\"num_hidden_layers\":2,"
     "\"num_attention_heads\":3,\"num_key_value_heads\":1,\"intermediate_size\":16,\"max_position_embeddings\":64,"
     "\"rms_norm_eps\":1e-6,\"rope_theta\":50.0,\"tie_word_embeddings\":true}",
     0.0},
};

enum { NB = 3, NT = 6, VOCAB = 40 };

/* Sequence 0: a 3-token prompt, loss on its 3-token completion; sequence 1:
 * 4 real tokens then padding; sequence 2: 5 real tokens, a 1-token prompt. */
static const int32_t ids[NB * NT] = {3, 17, 9, 12, 25, 39, 7, 3, 21, 30, 0, 0, 11, 6, 6, 21, 2, 0};
static const uint8_t mask[NB * NT] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0};
static const uint8_t loss_mask[NB * NT] = {0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1};

static bool spec_of(const struct job *j, struct delta_spec *s) {
    return CHECKF(ref_spec_load(s, j->label, j->preset, j->json, j->reparam) == VP_OK, "%s: %s", j->label,
                  vp_last_error());
}

/* Both sides compute in float64 and differ only in the order of sums (and
 * RoPE's θ^(−2i/hd) vs 1/θ^(2i/hd)): each reduction here has ≤ 40 terms, so
 * reordering costs ≲ 40·1.1e-16 relative per op, amplified through two layers,
 * softmax and the loss by ≲ 1e2: ≲ 1e-12 relative. 1e-9 relative leaves a
 * ≥ 100x margin while a wrong or missing term is off by ≥ 1e-4; the 1e-11
 * floor covers entries that cancel to near 0 (their error is ~1e-15). */
#define TORCH_RTOL 1e-9
#define TORCH_ATOL 1e-11

/* The batch for PyTorch: ids, the attention mask, and HF labels (ids where
 * mask and loss_mask are 1, −100 elsewhere), which the reference derives
 * itself from the masks. */
static bool write_batch(const char *path, const struct family *fam, bool zero_positions) {
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof text, "{\"input_ids\":[");
    for (int part = 0; part < 3; part++) {
        if (part == 1) n += (size_t)snprintf(text + n, sizeof text - n, "],\"attention_mask\":[");
        if (part == 2) n += (size_t)snprintf(text + n, sizeof text - n, "],\"labels\":[");
        for (int b = 0; b < NB; b++) {
            n += (size_t)snprintf(text + n, sizeof text - n, "%s[", b ? "," : "");
            for (int t = 0; t < NT; t++) {
                const int i = b * NT + t;
                const int v = part == 0 ? ids[i] : part == 1 ? mask[i] : mask[i] && loss_mask[i] ? ids[i] : -100;
                n += (size_t)snprintf(text + n, sizeof text - n, "%s%d", t ? "," : "", v);
            }
            n += (size_t)snprintf(text + n, sizeof text - n, "]");
        }
    }
    snprintf(text + n, sizeof text - n, "],\"label_smoothing\":%.17g,\"prefix_positions\":\"%s\"}",
             fam->label_smoothing, zero_positions ? "zero" : "peft");
    return torch_write_text(path, text);
}

static void run_family(const struct family *fam) {
    char model[128], path[256];
    snprintf(model, sizeof model, "%s/%s", torch.dir, fam->name);
    if (!torch_sh("mkdir -p '%s'", model)) return;
    struct model_arch arch;
    if (!CHECKF(model_arch_parse(fam->config, strlen(fam->config), fam->name, &arch) == VP_OK, "%s",
                vp_last_error()))
        return;
    snprintf(path, sizeof path, "%s/config.json", model);
    torch_write_text(path, fam->config);
    /* The frozen model every job shares, from the reference's Philox draws. */
    const struct delta_spec none = {.count = 0};
    const struct refd_options base_opt = {.seed = 11, .weight_std = 0.3};
    struct refd *base = NULL;
    if (!CHECKF(refd_create(&base, &arch, &none, &base_opt) == VP_OK, "%s", vp_last_error())) goto done;
    snprintf(path, sizeof path, "%s/model.safetensors", model);
    if (!torch_write_ref_tensors(&base->tensors, path, false)) goto done;

    const struct refd_batch batch = {.ids = ids, .mask = mask, .loss_mask = loss_mask, .B = NB, .T = NT};
    struct refd *models[JOB_COUNT] = {0};
    static double losses[JOB_COUNT], logits[JOB_COUNT][NB * NT * VOCAB];
    char jobs_json[16384] = "[";
    for (size_t j = 0; j < JOB_COUNT; j++) {
        /* LLaMA has no bias: bitfit would train nothing. */
        if (strcmp(jobs[j].label, "bitfit") == 0 && strcmp(fam->name, "llama") == 0) continue;
        struct delta_spec spec;
        if (!spec_of(&jobs[j], &spec)) continue;
        const struct refd_options opt = {
            .seed = 100 + j, .weight_std = 0.3, .randomise_zero_init = true, .label_smoothing = fam->label_smoothing,
            .prefix_positions = jobs[j].zero_positions ? REFD_PREFIX_POSITIONS_ZERO : REFD_PREFIX_POSITIONS_PEFT};
        if (!CHECKF(refd_create(&models[j], &arch, &spec, &opt) == VP_OK, "%s", vp_last_error())) continue;
        for (int k = 0; k < refd_tensor_count(base); k++) {
            const struct refm_tensor *t = refd_tensor_at(base, k);
            CHECKF(refd_tensor_set(models[j], t->name, t->data, t->n) == VP_OK, "%s", vp_last_error());
        }
        losses[j] = refd_forward(models[j], logits[j], &batch);
        refd_zero_grad(models[j]);
        refd_backward(models[j]);
        snprintf(path, sizeof path, "%s/batch-%zu.json", model, j);
        write_batch(path, fam, jobs[j].zero_positions);
        torch_add_job(jobs_json, sizeof jobs_json, model, j, &spec, &models[j]->tensors, path);
    }
    if (torch_run_jobs(&torch, model, jobs_json, sizeof jobs_json))
        for (size_t j = 0; j < JOB_COUNT; j++) {
            if (!models[j]) continue;
            char what[64];
            snprintf(what, sizeof what, "%s %s", fam->name, jobs[j].label);
            snprintf(path, sizeof path, "%s/out-%zu.safetensors", model, j);
            torch_compare_ref(&models[j]->tensors, losses[j], logits[j], (size_t)NB * NT * VOCAB, path, TORCH_ATOL,
                              TORCH_RTOL, what);
        }
    for (size_t j = 0; j < JOB_COUNT; j++) refd_destroy(models[j]);
done:
    refd_destroy(base);
    model_arch_finish(&arch);
}

static void gpt2_matches_torch(void) { run_family(&families[0]); }
static void llama_gqa_untied_matches_torch(void) { run_family(&families[1]); }
static void qwen2_biases_tied_matches_torch(void) { run_family(&families[2]); }

int main(int argc, char **argv) {
    static const struct th_case cases[] = {TH_CASE(gpt2_matches_torch), TH_CASE(llama_gqa_untied_matches_torch),
                                           TH_CASE(qwen2_biases_tied_matches_torch)};
    return torch_main(argc, argv, "decoder-torch", &torch, cases, sizeof cases / sizeof cases[0]);
}
