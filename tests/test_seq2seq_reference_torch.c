/* The C seq2seq reference (tests/reference/seq2seq.h) against an independent
 * PyTorch implementation (tests/python/seq2seq_torch.py, Debian's
 * python3-torch): tiny BART (post-LN) and mBART (pre-LN, final norms,
 * scaled embeddings, unequal FFN widths) models are written from the
 * reference's random weights as config.json + model.safetensors (float64),
 * every delta's tensors are handed to both, and loss, logits (B,T,V) and
 * every trainable gradient must agree, on a batch with source padding and
 * an unscored target position; the mam job also compares greedy generation.
 *
 * argv[1]: the script. VKPEFT_TORCH_PYTHON names the interpreter holding
 * torch (default /usr/bin/python3). */
#include "harness.h"
#include "safetensors.h"
#include "seq2seq.h"
#include "torchtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct torch_run torch;

struct job {
    const char *label, *preset, *json;
    int reparam; // ≥ 0: every prefix module's reparam width; −1: as given
};

static const struct job jobs[] = {
    {"lora", "lora:r=2,a=3", NULL, -1},
    {"lora-all", NULL,
     "{\"modules\":[{\"kind\":\"lora\",\"at\":\"q\",\"rank\":2},{\"kind\":\"lora\",\"at\":\"k\",\"rank\":2,\"alpha\":4},"
     "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":1},{\"kind\":\"lora\",\"at\":\"o\",\"rank\":3},"
     "{\"kind\":\"lora\",\"at\":\"up\",\"rank\":2,\"alpha\":5,\"stack\":[\"encoder\"]},"
     "{\"kind\":\"lora\",\"at\":\"down\",\"rank\":2,\"layers\":[1],\"stack\":[\"decoder\"]}]}",
     -1},
    {"prefix-plain", "prefix:l=3", NULL, 0},
    {"prefix-reparam", "prefix:l=2", NULL, 5},
    {"per-stack", NULL,
     "{\"modules\":[{\"kind\":\"prefix\",\"length\":2,\"reparam\":3,\"stack\":[\"encoder\",\"cross\"]},"
     "{\"kind\":\"prefix\",\"length\":1,\"reparam\":0,\"stack\":[\"decoder\"],\"layers\":[0]},"
     "{\"kind\":\"lora\",\"at\":\"v\",\"rank\":2,\"stack\":[\"cross\"]}]}",
     -1},
    {"pa", "pa:r=4", NULL, -1},
    {"mam", "mam:l=2,r=4,s=2", NULL, 0},
    {"mam-reparam", "mam:l=2,r=3,s=4", NULL, 3},
    {"adapters", NULL,
     "{\"modules\":[{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"sequential\",\"bottleneck\":3},"
     "{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\",\"bottleneck\":3,\"act\":\"gelu\","
     "\"compose\":\"scale\",\"scale\":2},{\"kind\":\"adapter\",\"at\":\"attn\",\"insert\":\"parallel\","
     "\"bottleneck\":2,\"per_head\":true,\"compose\":\"gated\"},{\"kind\":\"adapter\",\"at\":\"ffn\","
     "\"insert\":\"sequential\",\"bottleneck\":3,\"act\":\"gelu\",\"compose\":\"gated\",\"layers\":[0]},"
     "{\"kind\":\"adapter\",\"at\":\"ffn\",\"insert\":\"parallel\",\"bottleneck\":4,\"act\":\"identity\"}]}",
     -1},
    {"bitfit", "bitfit", NULL, -1},
    {"full", "full", NULL, -1},
};
#define JOB_COUNT (sizeof jobs / sizeof jobs[0])
enum { JOB_MAM = 6 };

struct family {
    const char *name, *config;
    double label_smoothing;
};

static const struct family families[] = {
    {"bart",
     "{\"model_type\":\"bart\",\"vocab_size\":40,\"d_model\":8,\"encoder_layers\":2,\"decoder_layers\":2,"
     "\"encoder_attention_heads\":2,\"decoder_attention_heads\":2,\"encoder_ffn_dim\":16,\"decoder_ffn_dim\":16,"
     "\"max_position_embeddings\":16,\"activation_function\":\"gelu\",\"scale_embedding\":false,"
     "\"pad_token_id\":1,\"bos_token_id\":0,\"eos_token_id\":2,\"decoder_start_token_id\":2}",
     0.1},
    {"mbart",
     "{\"model_type\":\"mbart\",\"vocab_size\":40,\"d_model\":12,\"encoder_layers\":2,\"decoder_layers\":2,"
     "\"encoder_attention_heads\":3,\"decoder_attention_heads\":3,\"encoder_ffn_dim\":16,\"decoder_ffn_dim\":20,"
     "\"max_position_embeddings\":16,\"activation_function\":\"gelu\",\"scale_embedding\":true,"
     "\"pad_token_id\":1,\"bos_token_id\":0,\"eos_token_id\":2,\"decoder_start_token_id\":2,"
     "\"forced_bos_token_id\":7}",
     0.0},
};

enum { NB = 3, NS = 6, NT = 5, VOCAB = 40, MAX_NEW = 6 };

/* Source 1 and 2 right-padded; target 2's last position unscored. */
static const int32_t ids[NB * NS] = {0, 17, 9, 12, 25, 2, 0, 33, 21, 2, 1, 1, 0, 6, 2, 1, 1, 1};
static const uint8_t mask[NB * NS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0};
static const int32_t labels[NB * NT] = {11, 4, 17, 30, 2, 8, 13, 2, 5, 2, 39, 2, 20, 2, -100};
static const int32_t dec_ids[NB * NT] = {2, 11, 4, 17, 30, 2, 8, 13, 2, 5, 2, 39, 2, 20, 2};

/* Both sides compute in float64 and differ only in the order of sums (≤ 40
 * terms each, ≲ 1e-12 relative after two layers per stack, softmax and the
 * loss); 1e-9 relative leaves a ≥ 100x margin while a wrong or missing term
 * is off by ≥ 1e-4; the 1e-11 floor covers entries that cancel to near 0. */
#define TORCH_RTOL 1e-9
#define TORCH_ATOL 1e-11

static void append_rows(char *text, size_t cap, const char *key, const int32_t *v, int rows, int cols) {
    size_t n = strlen(text);
    n += (size_t)snprintf(text + n, cap - n, "%s\"%s\":[", n > 1 ? "," : "", key);
    for (int b = 0; b < rows; b++) {
        n += (size_t)snprintf(text + n, cap - n, "%s[", b ? "," : "");
        for (int t = 0; t < cols; t++) n += (size_t)snprintf(text + n, cap - n, "%s%d", t ? "," : "", v[b * cols + t]);
        n += (size_t)snprintf(text + n, cap - n, "]");
    }
    snprintf(text + n, cap - n, "]");
}

static bool write_batch(const char *path, const struct family *fam, int generate) {
    char text[4096] = "{";
    int32_t m32[NB * NS];
    for (int i = 0; i < NB * NS; i++) m32[i] = mask[i];
    append_rows(text, sizeof text, "input_ids", ids, NB, NS);
    append_rows(text, sizeof text, "attention_mask", m32, NB, NS);
    append_rows(text, sizeof text, "decoder_input_ids", dec_ids, NB, NT);
    append_rows(text, sizeof text, "labels", labels, NB, NT);
    const size_t n = strlen(text);
    snprintf(text + n, sizeof text - n, ",\"label_smoothing\":%.17g,\"generate\":%d}", fam->label_smoothing, generate);
    return torch_write_text(path, text);
}

/* The reference's greedy tokens against torch's "generated" (B,MAX_NEW). */
static void compare_generation(struct refs *m, const char *path, const char *what) {
    int32_t got[NB * MAX_NEW];
    refs_generate_greedy(m, got, ids, mask, NB, NS, MAX_NEW);
    struct io_safetensors *f;
    if (!CHECKF(io_safetensors_open(path, &f) == VP_OK, "%s: %s", what, vp_last_error())) return;
    const struct io_tensor *g = io_safetensors_find(f, "generated");
    if (CHECKF(g && g->numel == NB * MAX_NEW && g->dtype == IO_DTYPE_F64, "%s: no generated tokens", what)) {
        const double *want = g->data;
        int same = 0;
        for (int i = 0; i < NB * MAX_NEW; i++) same += got[i] == (int32_t)want[i];
        CHECKF(same == NB * MAX_NEW, "%s: %d of %d generated tokens agree", what, same, NB * MAX_NEW);
        th_diag("%-22s greedy: %d tokens agree (first row %d %d %d %d %d %d)", what, same, got[0], got[1], got[2],
                got[3], got[4], got[5]);
    }
    io_safetensors_close(f);
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
    /* The frozen model every job shares; std 0.5 so greedy decoding is far from ties. */
    const struct delta_spec none = {.count = 0};
    const struct refs_options base_opt = {.seed = 11, .weight_std = 0.5};
    struct refs *base = NULL;
    if (!CHECKF(refs_create(&base, &arch, &none, &base_opt) == VP_OK, "%s", vp_last_error())) goto done;
    snprintf(path, sizeof path, "%s/model.safetensors", model);
    if (!torch_write_ref_tensors(&base->tensors, path, false)) goto done;

    const struct refs_batch batch = {.ids = ids, .mask = mask, .dec_ids = dec_ids, .labels = labels,
                                     .B = NB, .S = NS, .T = NT};
    struct refs *models[JOB_COUNT] = {0};
    static double losses[JOB_COUNT], logits[JOB_COUNT][NB * NT * VOCAB];
    char jobs_json[16384] = "[";
    for (size_t j = 0; j < JOB_COUNT; j++) {
        struct delta_spec spec;
        if (!CHECKF(ref_spec_load(&spec, jobs[j].label, jobs[j].preset, jobs[j].json, jobs[j].reparam) == VP_OK,
                    "%s: %s", jobs[j].label, vp_last_error()))
            continue;
        const struct refs_options opt = {.seed = 100 + j, .weight_std = 0.3, .randomise_zero_init = true,
                                         .label_smoothing = fam->label_smoothing};
        if (!CHECKF(refs_create(&models[j], &arch, &spec, &opt) == VP_OK, "%s", vp_last_error())) continue;
        for (int k = 0; k < refs_tensor_count(base); k++) {
            const struct refm_tensor *t = refs_tensor_at(base, k);
            CHECKF(refs_tensor_set(models[j], t->name, t->data, t->n) == VP_OK, "%s", vp_last_error());
        }
        losses[j] = refs_forward(models[j], logits[j], &batch);
        refs_zero_grad(models[j]);
        refs_backward(models[j]);
        snprintf(path, sizeof path, "%s/batch-%zu.json", model, j);
        write_batch(path, fam, j == JOB_MAM ? MAX_NEW : 0);
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
            if (j == JOB_MAM) compare_generation(models[j], path, what);
        }
    for (size_t j = 0; j < JOB_COUNT; j++) refs_destroy(models[j]);
done:
    refs_destroy(base);
    model_arch_finish(&arch);
}

static void bart_matches_torch(void) { run_family(&families[0]); }
static void mbart_matches_torch(void) { run_family(&families[1]); }

int main(int argc, char **argv) {
    static const struct th_case cases[] = {TH_CASE(bart_matches_torch), TH_CASE(mbart_matches_torch)};
    return torch_main(argc, argv, "seq2seq-torch", &torch, cases, sizeof cases / sizeof cases[0]);
}
