/* vkpeft: the command-line tool. Argument parsing and printing only; all
 * work is done by libvkpeft. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: vkpeft [--version] [--help] <command> [options]\n"
    "\n"
    "Parameter-efficient fine-tuning (LoRA, adapters, prefix tuning, MAM) on any\n"
    "Vulkan GPU, or on the CPU through lavapipe.\n"
    "\n"
    "commands:\n"
    "  devices   list Vulkan devices, their capabilities, and which one is used\n"
    "  train     fine-tune a delta (and the classification head) on JSONL data\n"
    "  pretrain  masked-LM training from plain text (a full model folder, or a delta)\n"
    "  eval      accuracy, macro-F1, Matthews of a trained delta or a merged model\n"
    "  predict   per-example logits and predictions of a trained delta (JSONL)\n"
    "  inspect   a delta's modules, parameter counts, share of the model, memory plan\n"
    "  merge     fold a LoRA delta into the weights: a new model folder\n"
    "  bench     measure the runtime (dispatch overhead, shader cache start-up)\n"
    "  report    an HTML page on a training run: curves, metrics, parameters, memory\n"
    "  compare   train several presets with one budget and print the paper's table\n"
    "  score     ROUGE-1/2/L and corpus BLEU of generated text against references\n"
    "  generate  text from a decoder-only model: greedy, beam search or sampling\n"
    "\n"
    "Run 'vkpeft <command> --help' for a command's options and examples.\n"
    "\n"
    "environment:\n"
    "  VKPEFT_DEVICE=N|name   device to use (default: discrete > integrated > virtual > cpu)\n"
    "  VKPEFT_VALIDATE=1      enable the Khronos validation layer (=sync adds sync checks)\n"
    "  VKPEFT_LIMITS=mobile   use only what a mobile-class GPU guarantees\n"
    "  VKPEFT_MEMORY=discrete force staging copies even on unified-memory devices\n"
    "  VKPEFT_BUDGET=bytes    pretend the device has this much memory (e.g. 512M)\n"
    "  XDG_CACHE_HOME         shader cache folder parent (default ~/.cache)\n"
    "\n"
    "exit codes: 0 ok, 1 runtime failure (no device, GPU error), 2 bad usage or input\n";

int cli_fail(vp_status status) {
    fprintf(stderr, "vkpeft: %s\n", vp_last_error());
    return status == VP_ERROR_INVALID_ARGUMENT || status == VP_ERROR_BAD_INPUT ? EXIT_USAGE
                                                                               : EXIT_RUNTIME;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "vkpeft %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrun 'vkpeft %s --help' for usage\n", cmd);
    return EXIT_USAGE;
}

bool cli_common_option(int argc, char **argv, int *i, struct cli_common *c) {
    const char *a = argv[*i];
    if (strcmp(a, "--json") == 0) {
        c->json = true;
        return true;
    }
    if (strcmp(a, "--device") == 0 && *i + 1 < argc) {
        c->device = argv[++*i];
        return true;
    }
    if (strncmp(a, "--device=", 9) == 0) {
        c->device = a + 9;
        return true;
    }
    return false;
}

int cli_check_model_dir(const char *cmd, const char *dir) {
    struct stat st;
    char path[4096];
    const bool exists = stat(dir, &st) == 0;
    if (!exists || !S_ISDIR(st.st_mode))
        return cli_usage_error(cmd, "--model %s: %s", dir, exists ? "not a folder" : strerror(errno));
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (access(path, R_OK) != 0)
        return cli_usage_error(cmd, "--model %s holds no readable config.json; is it a Hugging Face model "
                               "folder?", dir);
    return EXIT_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("vkpeft %s\n", vp_version_string());
        return EXIT_OK;
    }
    if (strcmp(cmd, "devices") == 0) return cmd_devices(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "inspect") == 0) return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "merge") == 0) return cmd_merge(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "pretrain") == 0) return cmd_pretrain(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "predict") == 0) return cmd_predict(argc - 1, argv + 1);
    if (strcmp(cmd, "report") == 0) return cmd_report(argc - 1, argv + 1);
    if (strcmp(cmd, "compare") == 0) return cmd_compare(argc - 1, argv + 1);
    if (strcmp(cmd, "score") == 0) return cmd_score(argc - 1, argv + 1);
    if (strcmp(cmd, "generate") == 0) return cmd_generate(argc - 1, argv + 1);
    fprintf(stderr, "vkpeft: unknown command '%s'\n\n%s", cmd, usage);
    return EXIT_USAGE;
}
