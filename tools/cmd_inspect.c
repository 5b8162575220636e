/* vkpeft inspect: a delta's modules and parameter counts on a model, the
 * share of the model it trains (the paper's "% params") and the memory
 * plan per pool for a batch shape. Needs only config.json. */
#include "cli.h"
#include "decoder_lm.h"
#include "encoder.h"
#include "save.h"
#include "seq2seq_lm.h"
#include "spec.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char help[] =
    "usage: vkpeft inspect --model DIR [--delta PRESET|SPEC.json|DIR] [--batch B]\n"
    "                      [--max-len T] [--weights f32|f16|bf16] [--max-new-tokens N]\n"
    "                      [--num-beams K] [--json] [--device N|name]\n"
    "\n"
    "Prints each module of a delta (kind, placement, size, layers, parameters\n"
    "trained, and parameters saved when they differ: a prefix trained through\n"
    "its MLP saves only the prefixes), the delta's total, the classification\n"
    "head, the pretrained model's parameters and the share of them the delta\n"
    "trains (the paper's \"% params\": delta / model, head excluded), then the\n"
    "memory plan per pool (frozen weights, trainable tensors with gradients\n"
    "and AdamW moments, activations, staging) for a batch of B sequences of T\n"
    "tokens. Without --delta, the model alone (only the head trains).\n"
    "\n"
    "Only config.json is needed: without weight files the frozen bytes are\n"
    "planned from config.json's shapes in the --weights type (default f16).\n"
    "With model.safetensors (or shards) present, the weights are checked and\n"
    "the default storage follows the file (bf16 files stay bf16, else f16).\n"
    "The plan uses the chosen device's alignment and kernel scratch sizes.\n"
    "A decoder-only model (GPT-2, LLaMA family) is planned from its weight files.\n"
    "The plan also gives the activations vkpeft train --checkpoint-activations\n"
    "would use.\n"
    "\n"
    "For a decoder-only or encoder-decoder model it adds the generation plan:\n"
    "what vkpeft generate takes for B prompts (sources) of T tokens, K beams\n"
    "each and N new tokens — the model loaded for B·K rows, and its generator\n"
    "(the KV cache of every decoder layer, an encoder-decoder's cross-attention\n"
    "K/V per row, the step's tables and staging) — per pool. N is lowered to\n"
    "what the model's positions leave.\n"
    "\n"
    "options:\n"
    "  --model DIR        Hugging Face model folder (config.json)\n"
    "  --delta X          a preset (adapter, adapter-ffn, prefix, lora, pa, scaled-pa,\n"
    "                     mh-pa, mam, bitfit, full; e.g. mam:l=16,r=16,s=2), a spec\n"
    "                     JSON file, or a saved delta folder (vkpeft or PEFT)\n"
    "  --batch B          sequences per batch (default 32)\n"
    "  --max-len T        tokens per sequence (default 128, or what the model's\n"
    "                     position table allows when that is less)\n"
    "  --weights TYPE     storage of the frozen matrices: f32, f16 or bf16\n"
    "  --max-new-tokens N generation plan: new tokens per sequence (default 32)\n"
    "  --num-beams K      generation plan: beams per prompt (default 1)\n"
    "  --json             machine-readable output\n"
    "\n"
    "examples:\n"
    "  vkpeft inspect --model models/roberta-base --delta lora\n"
    "  vkpeft inspect --model models/roberta-base --delta mam:l=16,r=16,s=2 --batch 16\n"
    "  vkpeft inspect --model models/roberta-base --delta my-spec.json --weights f32 --json\n"
    "  vkpeft inspect --model models/roberta-base --delta runs/sst2/delta\n";

struct inspect_opts {
    struct cli_common common;
    const char *model, *delta;
    int batch, max_len;
    int new_tokens, beams; /* the generation plan's */
    enum encoder_storage storage;
};

struct inspect {
    struct model_arch arch;
    struct delta_spec spec;
    struct delta_counts counts;
    bool has_delta, weights;
    enum vp_dtype wtype;
    /* The memory plan, or why there is none. */
    bool planned;
    uint64_t plan[VP_POOL_COUNT], budget;
    uint64_t activations_checkpointed; /* with --checkpoint-activations */
    char device[256], plan_error[512];
    /* The generation plan (decoders, encoder-decoders): the model loaded
     * for generation and its generator, per pool, or why there is none. */
    bool gen_wanted, gen_planned;
    int gen_new_tokens;                  /* lowered to what the positions leave */
    int gen_B, gen_S, gen_T;             /* the model's shape (decoder-only: B × T, S unused) */
    uint64_t gen_model[VP_POOL_COUNT], gen_cache[VP_POOL_COUNT];
    char gen_error[512];
};

/* "124,055,040" */
static const char *grouped(uint64_t v, char *buf, size_t size) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v), o = 0;
    for (int i = 0; i < n && (size_t)o + 2 < size; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

/* Layers the module is in; in an encoder-decoder, (layer, block) places. */
static int module_layer_count(const struct delta_module *m, const struct model_arch *a) {
    return delta_module_places(m, a);
}

static const char *compose_text(const struct delta_module *m, char *buf, size_t size) {
    if (m->kind == DELTA_BITFIT || m->kind == DELTA_FULL || m->kind == DELTA_PREFIX) {
        snprintf(buf, size, "%s", m->kind == DELTA_PREFIX ? "gated" : "-");
    } else if (m->kind == DELTA_LORA) {
        snprintf(buf, size, "s=a/r=%g", m->scale);
    } else {
        static const char *const names[] = {"add", "scale", "gated"};
        if (m->compose == DELTA_COMPOSE_SCALE) snprintf(buf, size, "scale %g", m->scale);
        else snprintf(buf, size, "%s", names[m->compose]);
    }
    return buf;
}

static uint64_t saved_total(const struct inspect *in) {
    uint64_t n = 0;
    for (int i = 0; i < in->spec.count; i++) n += in->counts.module_saved[i];
    return n;
}

static double share(uint64_t part, uint64_t whole) { return whole ? 100.0 * (double)part / (double)whole : 0; }

/* ---- gathering ---------------------------------------------------------------------- */

static int parse_int_option(const char *opt, const char *text, int max, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (*end || end == text || v < 1 || v > max)
        return cli_usage_error("inspect", "%s wants a whole number from 1 to %d, got '%s'", opt, max, text);
    *out = (int)v;
    return EXIT_OK;
}

static bool has_weights(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) == 0) return true;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    return access(path, F_OK) == 0;
}

/* The spec: a saved delta folder (base model checked), else a preset or a
 * spec file. */
static vp_status load_spec(const char *arg, const struct model_arch *arch, struct delta_spec *spec) {
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
        struct delta_tensors t;
        vp_status s = delta_load(arg, arch, spec, &t);
        delta_tensors_free(&t);
        return s;
    }
    return delta_spec_load(arg, spec);
}

/* The generation plan's outcome: a failure is kept as its message (the
 * training plan above still stands). */
static void gen_result(struct inspect *in, vp_status s) {
    in->gen_wanted = true;
    in->gen_planned = s == VP_OK;
    if (s != VP_OK) snprintf(in->gen_error, sizeof in->gen_error, "%s", vp_last_error());
}

/* What vkpeft generate loads for o->batch prompts of o->max_len tokens, o->beams
 * beams each: the decoder at decoder_gen_batch_shape's shape and its generator. */
static vp_status plan_decoder_generation(const struct decoder *m, const struct inspect_opts *o, struct inspect *in) {
    const int room = in->arch.max_positions - o->max_len;
    if (room < 1)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "prompts of %d tokens leave none of the model's %d positions to "
                       "generate into (lower --max-len)", o->max_len, in->arch.max_positions);
    in->gen_new_tokens = o->new_tokens < room ? o->new_tokens : room;
    const struct decoder_gen_shape shape = {.batch = o->batch, .prompt_len = o->max_len, .rows = o->batch * o->beams,
                                            .max_len = o->max_len + in->gen_new_tokens};
    decoder_gen_batch_shape(&shape, &in->gen_B, &in->gen_T);
    vp_status s = decoder_plan(m, in->gen_B, in->gen_T, in->gen_model);
    return s == VP_OK ? decoder_gen_plan(m, &shape, in->gen_cache) : s;
}

/* The same for an encoder-decoder: o->batch sources of o->max_len tokens,
 * the model at seq2seq_gen_load_shape's shape and its generator. */
static vp_status plan_seq2seq_generation(const struct seq2seq *m, const struct inspect_opts *o, struct inspect *in) {
    const int room = in->arch.max_positions - 1; /* the start token's position */
    in->gen_new_tokens = o->new_tokens < room ? o->new_tokens : room;
    const struct seq2seq_gen_shape shape = {o->batch * o->beams, o->max_len, in->gen_new_tokens};
    seq2seq_gen_load_shape(&shape, &in->gen_B, &in->gen_S, &in->gen_T);
    vp_status s = seq2seq_plan(m, in->gen_B, in->gen_S, in->gen_T, in->gen_model);
    return s == VP_OK ? seq2seq_gen_plan(m, &shape, in->gen_cache) : s;
}

/* A decoder-only model's plan (its weight files opened), its activations
 * with checkpointing and its generation plan. */
static vp_status plan_decoder(vp_context *ctx, const struct inspect_opts *o, struct inspect *in) {
    if (!in->weights)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: planning a decoder-only model needs its weight files "
                       "(model.safetensors)", in->arch.model_type);
    struct decoder *m = NULL;
    const struct decoder_options opt = {.storage = o->storage};
    vp_status s = decoder_open(ctx, o->model, &in->spec, &opt, &m);
    if (s == VP_OK) s = decoder_plan(m, o->batch, o->max_len, in->plan);
    if (s == VP_OK) s = decoder_plan_activations(m, o->batch, o->max_len, true, &in->activations_checkpointed);
    if (s == VP_OK) in->wtype = decoder_weight_dtype(m);
    if (s == VP_OK) gen_result(in, plan_decoder_generation(m, o, in));
    decoder_destroy(m);
    return s;
}

static vp_status plan(const struct inspect_opts *o, struct inspect *in) {
    in->wtype = o->storage == ENCODER_STORAGE_F32 ? VP_DTYPE_F32
                : o->storage == ENCODER_STORAGE_BF16 ? VP_DTYPE_BF16 : VP_DTYPE_F16;
    vp_context_options co = {.device = o->common.device};
    vp_context *ctx = NULL;
    if (in->arch.stack == MODEL_STACK_ENCODER_DECODER && !in->weights)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: planning an encoder-decoder needs its weight files "
                       "(model.safetensors)", in->arch.model_type);
    vp_status s = vp_context_create(&co, &ctx);
    if (s != VP_OK) return s;
    snprintf(in->device, sizeof in->device, "%s", vp_context_device(ctx)->name);
    in->budget = vp_context_budget(ctx);
    if (in->arch.stack == MODEL_STACK_DECODER) {
        s = plan_decoder(ctx, o, in);
    } else if (in->arch.stack == MODEL_STACK_ENCODER_DECODER) { /* sources and targets of max_len */
        struct seq2seq *m = NULL;
        const struct seq2seq_options so = {.storage = o->storage};
        s = seq2seq_open(ctx, o->model, &in->spec, &so, &m);
        if (s == VP_OK) s = seq2seq_plan(m, o->batch, o->max_len, o->max_len, in->plan);
        if (s == VP_OK)
            s = seq2seq_plan_activations(m, o->batch, o->max_len, o->max_len, true, &in->activations_checkpointed);
        if (s == VP_OK) in->wtype = seq2seq_weight_dtype(m);
        if (s == VP_OK) gen_result(in, plan_seq2seq_generation(m, o, in));
        seq2seq_destroy(m);
    } else if (in->weights) {
        struct encoder *e = NULL;
        const struct encoder_options eo = {.storage = o->storage};
        s = encoder_open(ctx, o->model, &in->spec, &eo, &e);
        if (s == VP_OK) s = encoder_plan(e, o->batch, o->max_len, in->plan);
        if (s == VP_OK) s = encoder_plan_activations(e, o->batch, o->max_len, true, &in->activations_checkpointed);
        if (s == VP_OK) in->wtype = encoder_weight_dtype(e);
        encoder_destroy(e);
    } else {
        s = encoder_plan_arch(ctx, &in->arch, &in->spec, o->storage, o->batch, o->max_len, in->plan);
        if (s == VP_OK)
            s = encoder_plan_arch_activations(ctx, &in->arch, &in->spec, o->storage, o->batch, o->max_len, true,
                                              &in->activations_checkpointed);
    }
    vp_context_destroy(ctx);
    in->planned = s == VP_OK;
    return s;
}

/* ---- printing ----------------------------------------------------------------------- */

/* What vkpeft generate takes: the model loaded for the generation's rows
 * beside its generator, per pool. */
static void print_generation_text(const struct inspect_opts *o, const struct inspect *in) {
    const bool encdec = in->arch.stack == MODEL_STACK_ENCODER_DECODER;
    char b1[64], b2[64], b3[64];
    printf("\ngeneration plan: %d %s of %d tokens x %d beam%s = %d rows, %d new tokens\n", o->batch,
           encdec ? "sources" : "prompts", o->max_len, o->beams, o->beams == 1 ? "" : "s", o->batch * o->beams,
           in->gen_planned ? in->gen_new_tokens : o->new_tokens);
    if (!in->gen_planned) {
        printf("  unavailable: %s\n", in->gen_error);
        return;
    }
    if (in->gen_new_tokens < o->new_tokens)
        printf("                 (--max-new-tokens %d lowered to %d: the model's %d positions leave no more)\n",
               o->new_tokens, in->gen_new_tokens, in->arch.max_positions);
    if (encdec)
        printf("                 the model loaded for %d rows x %d source and %d decoder tokens\n", in->gen_B, in->gen_S,
               in->gen_T);
    else
        printf("                 the model loaded for %d x %d tokens (the prefill)\n", in->gen_B, in->gen_T);
    printf("  %-12s %12s %12s %12s\n", "", "model", "generator", "total");
    uint64_t total = 0, cache = 0;
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        const uint64_t t = in->gen_model[p] + in->gen_cache[p];
        total += t;
        cache += in->gen_cache[p];
        printf("  %-12s %12s %12s %12s\n", vp_pool_name((vp_pool)p), vp_format_bytes(in->gen_model[p], b1, sizeof b1),
               vp_format_bytes(in->gen_cache[p], b2, sizeof b2), vp_format_bytes(t, b3, sizeof b3));
    }
    printf("  %-12s %12s %12s %12s", "total", vp_format_bytes(total - cache, b1, sizeof b1),
           vp_format_bytes(cache, b2, sizeof b2), vp_format_bytes(total, b3, sizeof b3));
    printf("  (budget %s: %s)\n", vp_format_bytes(in->budget, b1, sizeof b1), total <= in->budget ? "fits" : "does not fit");
    printf("  generator: the KV cache of every decoder layer%s, the step's tables and staging\n",
           encdec ? ", each row's cross-attention K/V" : "");
}

static cJSON *pools_json(cJSON *parent, const char *name, const uint64_t bytes[VP_POOL_COUNT]) {
    cJSON *o = cJSON_AddObjectToObject(parent, name);
    uint64_t total = 0;
    for (int k = 0; k < VP_POOL_COUNT; k++) {
        cJSON_AddNumberToObject(o, vp_pool_name((vp_pool)k), (double)bytes[k]);
        total += bytes[k];
    }
    cJSON_AddNumberToObject(o, "total", (double)total);
    return o;
}

static void generation_json(cJSON *root, const struct inspect_opts *o, const struct inspect *in) {
    if (!in->gen_planned) {
        cJSON_AddNullToObject(root, "generation");
        cJSON_AddStringToObject(root, "generation_error", in->gen_error);
        return;
    }
    const bool encdec = in->arch.stack == MODEL_STACK_ENCODER_DECODER;
    cJSON *g = cJSON_AddObjectToObject(root, "generation");
    cJSON_AddNumberToObject(g, "batch", o->batch);
    cJSON_AddNumberToObject(g, "num_beams", o->beams);
    cJSON_AddNumberToObject(g, "rows", o->batch * o->beams);
    cJSON_AddNumberToObject(g, encdec ? "source_len" : "prompt_len", o->max_len);
    cJSON_AddNumberToObject(g, "max_new_tokens", in->gen_new_tokens);
    cJSON *shape = cJSON_AddObjectToObject(g, "model_shape");
    cJSON_AddNumberToObject(shape, "batch", in->gen_B);
    if (encdec) cJSON_AddNumberToObject(shape, "source_len", in->gen_S);
    cJSON_AddNumberToObject(shape, encdec ? "target_len" : "len", in->gen_T);
    pools_json(g, "model", in->gen_model);
    pools_json(g, "generator", in->gen_cache);
    uint64_t sum[VP_POOL_COUNT], total = 0;
    for (int k = 0; k < VP_POOL_COUNT; k++) total += sum[k] = in->gen_model[k] + in->gen_cache[k];
    pools_json(g, "total", sum);
    cJSON_AddBoolToObject(g, "fits", total <= in->budget);
}

static void print_text(const struct inspect_opts *o, const struct inspect *in) {
    const struct model_arch *a = &in->arch;
    char b1[32], b2[32], b3[64];
    printf("model    %s (%s)\n", o->model, a->model_type);
    printf("         hidden %d, %d layers, %d heads, FFN %d, vocab %d, %d positions, %d labels\n", a->hidden,
           a->layers, a->heads, a->intermediate, a->vocab_size, a->max_positions, a->num_labels);
    if (a->stack == MODEL_STACK_ENCODER_DECODER)
        printf("         decoder: %d layers, %d heads, FFN %d; attention blocks: encoder self, decoder self, "
               "cross\n", a->decoder_layers, a->decoder_heads, a->decoder_intermediate);
    else if (a->stack == MODEL_STACK_DECODER)
        printf("         decoder-only, %d key/value heads of %d, %s%s\n", a->kv_heads, a->head_dim,
               a->tie_word_embeddings ? "LM head tied" : "LM head untied",
               a->positions == MODEL_POS_ROTARY ? ", rotary positions" : "");
    if (!in->weights) printf("         config.json only: no weight files\n");
    if (in->has_delta) {
        printf("delta    %s: %d module%s\n\n", in->spec.name, in->spec.count, in->spec.count == 1 ? "" : "s");
        printf("  %2s  %-7s %-4s %-10s %5s  %-11s %-11s %15s %15s\n", "#", "kind", "at", "insert", "size",
               "compose", "layers", "trained", "saved");
        for (int i = 0; i < in->spec.count; i++) {
            const struct delta_module *m = &in->spec.modules[i];
            const bool sized = m->kind == DELTA_ADAPTER || m->kind == DELTA_LORA || m->kind == DELTA_PREFIX;
            char size[16], layers[32], comp[32];
            snprintf(size, sizeof size, sized ? "%d" : "-", m->size);
            snprintf(layers, sizeof layers, "%d%s", module_layer_count(m, a), m->all_layers ? " (all)" : "");
            const bool differs = in->counts.module_saved[i] != in->counts.module_params[i];
            printf("  %2d  %-7s %-4s %-10s %5s  %-11s %-11s %15s", i, delta_kind_name(m->kind),
                   m->at != DELTA_AT_NONE ? delta_at_name(m->at) : "-",
                   sized ? (m->insert == DELTA_PARALLEL ? "parallel" : "sequential") : "-", size,
                   compose_text(m, comp, sizeof comp), layers, grouped(in->counts.module_params[i], b1, sizeof b1));
            if (differs) printf(" %15s", grouped(in->counts.module_saved[i], b2, sizeof b2));
            if (m->per_head) printf("  per head");
            if (m->kind == DELTA_PREFIX && m->reparam) printf("  MLP %d (training only)", m->reparam);
            printf("\n");
        }
        printf("\n");
    } else {
        printf("delta    none (the model alone: only the head trains)\n\n");
    }
    const uint64_t saved = saved_total(in);
    if (in->has_delta) {
        printf("  %-22s %15s\n", "delta (trained)", grouped(in->counts.delta_params, b1, sizeof b1));
        if (saved != in->counts.delta_params)
            printf("  %-22s %15s   what the saved delta keeps\n", "delta (saved)", grouped(saved, b1, sizeof b1));
    }
    printf("  %-22s %15s\n", "head", grouped(in->counts.head_params, b1, sizeof b1));
    printf("  %-22s %15s\n", "pretrained model", grouped(in->counts.model_params, b1, sizeof b1));
    if (in->has_delta) {
        /* The paper's "% params" counts what a method keeps: the same as
         * what it trains, except a prefix trained through its MLP. */
        const bool differs = saved != in->counts.delta_params;
        snprintf(b3, sizeof b3, "%.4f%%", share(in->counts.delta_params, in->counts.model_params));
        printf("  %-22s %15s   %s\n", "share trained", b3,
               differs ? "trained delta / model (the MLP included)" : "delta / model (the paper's \"% params\")");
        if (differs) {
            snprintf(b3, sizeof b3, "%.4f%%", share(saved, in->counts.model_params));
            printf("  %-22s %15s   saved delta / model (the paper's \"%% params\")\n", "share saved", b3);
        }
    }
    printf("\nmemory plan: batch %d x %d tokens, %s weights%s\n", o->batch, o->max_len, vp_dtype_name(in->wtype),
           in->weights ? "" : " (sized from config.json)");
    if (in->device[0]) printf("             device %s\n", in->device);
    if (!in->planned) {
        printf("  unavailable: %s\n", in->plan_error);
        return;
    }
    uint64_t total = 0;
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        total += in->plan[p];
        printf("  %-12s %12s  %16s bytes\n", vp_pool_name((vp_pool)p), vp_format_bytes(in->plan[p], b3, sizeof b3),
               grouped(in->plan[p], b1, sizeof b1));
    }
    printf("  %-12s %12s  %16s bytes", "total", vp_format_bytes(total, b3, sizeof b3), grouped(total, b1, sizeof b1));
    printf("  (budget %s: %s)\n", vp_format_bytes(in->budget, b2, sizeof b2),
           total <= in->budget ? "fits" : "does not fit");
    if (in->activations_checkpointed)
        printf("  activations with --checkpoint-activations: %s (%s bytes; total %s)\n",
               vp_format_bytes(in->activations_checkpointed, b3, sizeof b3),
               grouped(in->activations_checkpointed, b1, sizeof b1),
               vp_format_bytes(total - in->plan[VP_POOL_ACTIVATIONS] + in->activations_checkpointed, b2, sizeof b2));
    if (in->gen_wanted) print_generation_text(o, in);
}

static cJSON *module_json(const struct delta_module *m, int i, const struct inspect *in) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", i);
    cJSON_AddStringToObject(o, "kind", delta_kind_name(m->kind));
    cJSON_AddStringToObject(o, "at", delta_at_name(m->at));
    cJSON_AddStringToObject(o, "insert", m->insert == DELTA_PARALLEL ? "parallel" : "sequential");
    cJSON_AddNumberToObject(o, "size", m->size);
    static const char *const composes[] = {"add", "scale", "gated"};
    cJSON_AddStringToObject(o, "compose", composes[m->compose]);
    cJSON_AddNumberToObject(o, "scale", m->scale);
    cJSON_AddBoolToObject(o, "per_head", m->per_head);
    cJSON_AddNumberToObject(o, "reparam", m->reparam);
    cJSON_AddNumberToObject(o, "layers", module_layer_count(m, &in->arch));
    if (m->all_layers) cJSON_AddStringToObject(o, "layer_list", "all");
    else cJSON_AddItemToObject(o, "layer_list", cJSON_CreateIntArray(m->layers, m->layer_count));
    cJSON_AddNumberToObject(o, "trained_params", (double)in->counts.module_params[i]);
    cJSON_AddNumberToObject(o, "saved_params", (double)in->counts.module_saved[i]);
    return o;
}

static void print_json(const struct inspect_opts *o, const struct inspect *in) {
    const struct model_arch *a = &in->arch;
    cJSON *root = cJSON_CreateObject();
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "dir", o->model);
    cJSON_AddStringToObject(m, "model_type", a->model_type);
    cJSON_AddNumberToObject(m, "hidden_size", a->hidden);
    cJSON_AddNumberToObject(m, "num_hidden_layers", a->layers);
    cJSON_AddNumberToObject(m, "num_attention_heads", a->heads);
    cJSON_AddNumberToObject(m, "intermediate_size", a->intermediate);
    cJSON_AddNumberToObject(m, "vocab_size", a->vocab_size);
    cJSON_AddNumberToObject(m, "max_position_embeddings", a->max_positions);
    cJSON_AddNumberToObject(m, "num_labels", a->num_labels);
    cJSON_AddBoolToObject(m, "weights", in->weights);
    if (in->has_delta) {
        cJSON *d = cJSON_AddObjectToObject(root, "delta");
        cJSON_AddStringToObject(d, "name", in->spec.name);
        cJSON *mods = cJSON_AddArrayToObject(d, "modules");
        for (int i = 0; i < in->spec.count; i++) cJSON_AddItemToArray(mods, module_json(&in->spec.modules[i], i, in));
        cJSON_AddNumberToObject(d, "trained_params", (double)in->counts.delta_params);
        cJSON_AddNumberToObject(d, "saved_params", (double)saved_total(in));
    } else {
        cJSON_AddNullToObject(root, "delta");
    }
    cJSON_AddNumberToObject(root, "head_params", (double)in->counts.head_params);
    cJSON_AddNumberToObject(root, "model_params", (double)in->counts.model_params);
    cJSON_AddNumberToObject(root, "share_trained", share(in->counts.delta_params, in->counts.model_params) / 100);
    cJSON_AddNumberToObject(root, "share_saved", share(saved_total(in), in->counts.model_params) / 100);
    if (in->planned) {
        cJSON *p = cJSON_AddObjectToObject(root, "plan");
        cJSON_AddNumberToObject(p, "batch", o->batch);
        cJSON_AddNumberToObject(p, "max_len", o->max_len);
        cJSON_AddStringToObject(p, "weights", vp_dtype_name(in->wtype));
        cJSON_AddStringToObject(p, "device", in->device);
        uint64_t total = 0;
        for (int k = 0; k < VP_POOL_COUNT; k++) {
            cJSON_AddNumberToObject(p, vp_pool_name((vp_pool)k), (double)in->plan[k]);
            total += in->plan[k];
        }
        cJSON_AddNumberToObject(p, "total", (double)total);
        cJSON_AddNumberToObject(p, "budget", (double)in->budget);
        cJSON_AddBoolToObject(p, "fits", total <= in->budget);
        if (in->activations_checkpointed)
            cJSON_AddNumberToObject(p, "activations_checkpointed", (double)in->activations_checkpointed);
        if (in->gen_wanted) generation_json(root, o, in);
    } else {
        cJSON_AddNullToObject(root, "plan");
        cJSON_AddStringToObject(root, "plan_error", in->plan_error);
    }
    char *text = cJSON_Print(root);
    puts(text);
    free(text);
    cJSON_Delete(root);
}

/* ---- the command -------------------------------------------------------------------- */

static int parse_args(int argc, char **argv, struct inspect_opts *o, bool *help_shown) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help, stdout);
            *help_shown = true;
            return EXIT_OK;
        }
        if (cli_common_option(argc, argv, &i, &o->common)) continue;
        if (a[0] != '-' || i + 1 >= argc)
            return cli_usage_error("inspect", a[0] == '-' ? "%s needs a value" : "unexpected argument '%s'", a);
        const char *v = argv[++i];
        int rc = EXIT_OK;
        if (strcmp(a, "--model") == 0) o->model = v;
        else if (strcmp(a, "--delta") == 0) o->delta = v;
        else if (strcmp(a, "--batch") == 0) rc = parse_int_option(a, v, 1 << 20, &o->batch);
        else if (strcmp(a, "--max-len") == 0 || strcmp(a, "--max-length") == 0)
            rc = parse_int_option(a, v, 1 << 20, &o->max_len);
        else if (strcmp(a, "--max-new-tokens") == 0) rc = parse_int_option(a, v, 1 << 20, &o->new_tokens);
        else if (strcmp(a, "--num-beams") == 0) rc = parse_int_option(a, v, 1 << 10, &o->beams);
        else if (strcmp(a, "--weights") == 0) {
            if (strcmp(v, "f32") == 0) o->storage = ENCODER_STORAGE_F32;
            else if (strcmp(v, "f16") == 0) o->storage = ENCODER_STORAGE_F16;
            else if (strcmp(v, "bf16") == 0) o->storage = ENCODER_STORAGE_BF16;
            else rc = cli_usage_error("inspect", "--weights wants f32, f16 or bf16, got '%s'", v);
        } else
            rc = cli_usage_error("inspect", "unknown option '%s'", a);
        if (rc != EXIT_OK) return rc;
    }
    if (!o->model) return cli_usage_error("inspect", "--model DIR is required");
    return EXIT_OK;
}

int cmd_inspect(int argc, char **argv) {
    struct inspect_opts o = {.batch = 32, .new_tokens = 32, .beams = 1};
    bool help_shown = false;
    int rc = parse_args(argc, argv, &o, &help_shown);
    if (rc != EXIT_OK || help_shown) return rc;
    rc = cli_check_model_dir("inspect", o.model);
    if (rc != EXIT_OK) return rc;
    struct inspect *in = calloc(1, sizeof *in);
    if (!in) return cli_fail(vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory"));
    vp_status s = model_arch_load(o.model, &in->arch);
    if (s == VP_OK) {
        in->has_delta = o.delta != NULL;
        if (in->has_delta) s = load_spec(o.delta, &in->arch, &in->spec);
        else snprintf(in->spec.name, sizeof in->spec.name, "none");
    }
    if (s == VP_OK) s = delta_count_params(&in->spec, &in->arch, &in->counts);
    if (!o.max_len) { /* 128, or as many tokens as the model has positions for */
        const int usable = in->arch.max_positions - (in->arch.roberta_positions ? in->arch.pad_token_id + 1 : 0);
        o.max_len = usable > 0 && usable < 128 ? usable : 128;
    }
    if (s != VP_OK) {
        model_arch_finish(&in->arch);
        free(in);
        return cli_fail(s);
    }
    in->weights = has_weights(o.model);
    vp_status ps = plan(&o, in);
    if (ps != VP_OK) snprintf(in->plan_error, sizeof in->plan_error, "%s", vp_last_error());
    if (o.common.json) print_json(&o, in);
    else print_text(&o, in);
    fflush(stdout);
    model_arch_finish(&in->arch);
    free(in);
    /* A plan the runtime cannot make yet (decoders) is said in the output,
     * not a failure: the counts above are the answer. */
    return ps == VP_OK || ps == VP_ERROR_UNSUPPORTED ? EXIT_OK : cli_fail(ps);
}
