/* vkpeft merge: a LoRA delta folded into its base model's weights, written
 * as a new model folder that runs without the delta (delta/merge.h). */
#include "cli.h"
#include "merge.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: vkpeft merge --model DIR --delta DIR --out DIR [--json]\n"
    "\n"
    "Folds a trained LoRA delta into the weights, W' = W + s*B*A for every\n"
    "adapted projection (s = alpha / rank), and writes a complete Hugging Face\n"
    "model folder to --out that needs no delta and runs at the base model's\n"
    "speed. Models: BERT/RoBERTa sequence classification, decoder-only GPT-2\n"
    "and LLaMA/Mistral/Qwen2, encoder-decoder BART/mBART (encoder and decoder\n"
    "self-attention, cross-attention, fc1/fc2). GPT-2's q, k and v land in\n"
    "their column blocks of the fused Conv1D c_attn.\n"
    "\n"
    "The folder holds model.safetensors (every tensor of the base's weights,\n"
    "one file or shards, in its own dtype, the adapted projections summed in\n"
    "double and rounded to fp32, then to 16 bits for F16/BF16 bases; an\n"
    "encoder's trained classification head in place of the base's),\n"
    "config.json (a language model's as the base has it; an encoder's with\n"
    "the trained head's labels) and the base's tokenizer files and\n"
    "generation_config.json. Every file is written atomically; the base\n"
    "folder is never modified.\n"
    "\n"
    "Only LoRA merges: adapters and prefixes add computation that no weight can\n"
    "hold (run those with --delta on the base model). A BitFit or full delta's\n"
    "trained tensors replace the base's (LoRA beside them adds to them). The\n"
    "delta may be a vkpeft delta folder or a PEFT LoRA folder\n"
    "(adapter_config.json).\n"
    "\n"
    "options:\n"
    "  --model DIR   the base model the delta was trained on\n"
    "  --delta DIR   the trained LoRA delta\n"
    "  --out DIR     the merged model folder (created; must not be --model)\n"
    "  --json        machine-readable summary\n"
    "\n"
    "examples:\n"
    "  vkpeft merge --model models/roberta-base --delta runs/sst2/delta --out runs/sst2/merged\n"
    "  vkpeft merge --model models/tiny-llama --delta runs/sft-lora --out runs/sft-merged\n"
    "  vkpeft eval --model runs/sft-merged --data dev.jsonl     # no --delta needed\n"
    "  vkpeft merge --model models/roberta-base --delta peft-lora/ --out merged --json\n";

static void print_summary(const char *out, const struct delta_merge_info *in, bool json) {
    const struct delta_module *lora = NULL;
    int modules = 0;
    for (int i = 0; i < in->spec.count; i++)
        if (in->spec.modules[i].kind == DELTA_LORA) {
            if (!lora) lora = &in->spec.modules[i];
            modules++;
        }
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "out", out);
        cJSON_AddNumberToObject(root, "merged_matrices", in->merged);
        cJSON_AddNumberToObject(root, "lora_modules", modules);
        cJSON_AddNumberToObject(root, "model_tensors", in->model_tensors);
        cJSON_AddNumberToObject(root, "head_tensors", in->head_tensors);
        cJSON_AddNumberToObject(root, "num_labels", in->num_labels);
        cJSON_AddStringToObject(root, "dtype", io_dtype_name(in->dtype));
        cJSON_AddNumberToObject(root, "tensors", (double)in->tensors);
        cJSON_AddNumberToObject(root, "tokenizer_files", in->copied_files); /* generation_config.json too */
        char *text = cJSON_Print(root);
        puts(text);
        free(text);
        cJSON_Delete(root);
        return;
    }
    if (lora)
        printf("merged %d LoRA matri%s (%d module%s, rank %d, s = %g) into %s\n", in->merged,
               in->merged == 1 ? "x" : "ces", modules, modules == 1 ? "" : "s", lora->size, lora->scale, out);
    else
        printf("wrote the trained model tensors into %s\n", out);
    printf("  model.safetensors  %llu tensors, matrices %s\n", (unsigned long long)in->tensors,
           io_dtype_name(in->dtype));
    if (in->model_tensors)
        printf("  trained tensors    %d from the delta (BitFit / full)\n", in->model_tensors);
    if (in->head_tensors)
        printf("  head               %d tensors from the delta, %d labels\n", in->head_tensors, in->num_labels);
    else if (in->num_labels > 0)
        printf("  head               the base model's (the delta has none)\n");
    printf("  tokenizer          %d file%s copied (generation_config.json included)\n", in->copied_files,
           in->copied_files == 1 ? "" : "s");
}

int cmd_merge(int argc, char **argv) {
    struct cli_common common = {0};
    const char *model = NULL, *delta = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (cli_common_option(argc, argv, &i, &common)) continue;
        const char **slot = strcmp(a, "--model") == 0   ? &model
                            : strcmp(a, "--delta") == 0 ? &delta
                            : strcmp(a, "--out") == 0   ? &out
                                                        : NULL;
        if (!slot) return cli_usage_error("merge", "unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("merge", "%s needs a folder", a);
        *slot = argv[++i];
    }
    if (!model || !delta || !out) return cli_usage_error("merge", "--model, --delta and --out are all required");
    int rc = cli_check_model_dir("merge", model);
    if (rc != EXIT_OK) return rc;
    struct delta_merge_info *info = calloc(1, sizeof *info);
    if (!info) return cli_fail(vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory"));
    vp_status s = delta_merge(model, delta, out, info);
    if (s == VP_OK) print_summary(out, info, common.json);
    free(info);
    return s == VP_OK ? EXIT_OK : cli_fail(s);
}
