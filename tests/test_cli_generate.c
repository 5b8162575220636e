/* vkpeft generate end to end on a tiny LLaMA-shaped model (grouped kv
 * heads) written from the C decoder reference's random weights, with a
 * word-level tokenizer.json: greedy output equals a greedy loop over the
 * reference, prompts from a file, stdin and JSONL agree, beam search and
 * sampling options, the cap at the model's positions, bad input exits 2
 * with a message naming what is wrong, and `vkpeft bench generate` runs.
 *
 * argv[1]: vkpeft. */
#include "clitest.h"
#include "dectest.h"
#include "kerneltest.h"
#include "search.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { V = 40 };
/* eos </s> = 2; 16 positions. */
static const char config[] =
    "{\"model_type\":\"llama\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":20,\"max_position_embeddings\":16,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":100.0,\"tie_word_embeddings\":false,\"bos_token_id\":1,"
    "\"eos_token_id\":2}";

static struct refd *g_ref;

/* Words: <unk> 0, <s> 1, </s> 2 (special), then w3 .. w39; split on
 * whitespace, joined with spaces. */
static bool write_tokenizer(const char *dir) {
    char *json = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&json, &size);
    if (!CHECK(f != NULL)) return false;
    static const char *const special[] = {"<unk>", "<s>", "</s>"};
    fputs("{\"version\":\"1.0\",\"added_tokens\":[", f);
    for (int i = 0; i < 3; i++)
        fprintf(f, "%s{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}", i ? "," : "", i, special[i]);
    fputs("],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"},\"post_processor\":null,"
          "\"decoder\":null,\"model\":{\"type\":\"WordLevel\",\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,"
          "\"<s>\":1,\"</s>\":2",
          f);
    for (int i = 3; i < V; i++) fprintf(f, ",\"w%d\":%d", i, i);
    fputs("}}}", f);
    fclose(f);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    bool ok = CHECK(vp_file_write_atomic(path, json, size) == VP_OK);
    free(json);
    return ok;
}

static bool model_ready(void) {
    if (g_ref) return true;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/llama", root);
    struct model_arch arch;
    const struct delta_spec none = {0};
    const struct refd_options ropt = {.seed = 5, .weight_std = 0.3};
    if (!CHECK(mkdir(dir, 0755) == 0) ||
        !CHECKF(model_arch_parse(config, strlen(config), "config.json", &arch) == VP_OK, "%s", vp_last_error()))
        return false;
    bool ok = CHECKF(refd_create(&g_ref, &arch, &none, &ropt) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    for (int k = 0; ok && k < refd_tensor_count(g_ref); k++) { /* what the GPU reads with --weights f32 */
        struct refm_tensor *t = refd_tensor_at(g_ref, k);
        kt_round(VP_DTYPE_F32, t->data, t->n);
    }
    return ok && dectest_write_model(g_ref, dir, config) && write_tokenizer(dir);
}

/* Greedy decoding over the reference, the whole sequence re-run per token:
 * the generated words, space-separated, eos left out. */
static void reference_greedy(const int32_t *prompt, int len, int max_new, char *out, size_t cap) {
    int32_t ids[32];
    memcpy(ids, prompt, (size_t)len * sizeof *ids);
    double *logits = malloc((size_t)32 * V * sizeof *logits);
    float row[V];
    size_t n = 0;
    out[0] = 0;
    for (int step = 0; step < max_new && len < 16; step++) {
        const struct refd_batch b = {ids, NULL, NULL, NULL, 1, len};
        refd_forward(g_ref, logits, &b);
        for (int v = 0; v < V; v++) row[v] = (float)logits[(size_t)(len - 1) * V + v];
        const int tok = search_argmax(row, V);
        ids[len++] = tok;
        if (tok == 2) break;
        n += (size_t)snprintf(out + n, cap - n, "%sw%d", n ? " " : "", tok);
    }
    free(logits);
}

static void greedy_matches_the_reference(void) {
    if (!model_ready() || !write_text("prompts.txt", "w5 w9 w11\nw30\n<s> w7 w7\n")) return;
    static const int32_t p0[] = {5, 9, 11}, p1[] = {30}, p2[] = {1, 7, 7};
    static const int32_t *const prompts[] = {p0, p1, p2};
    static const int lens[] = {3, 1, 3};
    char want[1024] = "", line[256];
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        reference_greedy(prompts[i], lens[i], 6, line, sizeof line);
        n += (size_t)snprintf(want + n, sizeof want - n, "%s\n", line);
    }
    run("generate --model llama --prompts prompts.txt --max-new-tokens 6 --weights f32 --batch 2");
    EXPECT_EXIT(0);
    CHECKF(strcmp(r.out, want) == 0, "vkpeft printed:\n%s\nthe reference's greedy decoding:\n%s", r.out, want);
    /* The same from stdin and from JSONL, and with one batch. */
    run("generate --model llama --prompts - --max-new-tokens 6 --weights f32 < prompts.txt");
    EXPECT_EXIT(0);
    CHECKF(strcmp(r.out, want) == 0, "from stdin:\n%s", r.out);
    write_text("prompts.jsonl", "{\"prompt\": \"w5 w9 w11\", \"id\": 1}\n{\"prompt\": \"w30\"}\n"
                                "{\"prompt\": \"<s> w7 w7\"}\n");
    run("generate --model llama --prompts prompts.jsonl --max-new-tokens 6 --weights f32 --out out.txt");
    EXPECT_EXIT(0);
    void *text = NULL;
    size_t size = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", root);
    if (CHECK(vp_file_read(path, &text, &size) == VP_OK))
        CHECKF(size == strlen(want) && memcmp(text, want, size) == 0, "--out from JSONL:\n%.*s", (int)size,
               (char *)text);
    free(text);
    th_diag("greedy:\n%s", want);
}

/* --json lines: prompt, sequence, text, tokens, score. */
static int json_lines(cJSON **items, int cap) {
    int n = 0;
    for (char *p = r.out; *p && n < cap;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        if (*p == '{') items[n++] = cJSON_Parse(p);
        if (!nl) break;
        p = nl + 1;
    }
    return n;
}

static void beams_and_sampling(void) {
    if (!model_ready() || !write_text("two.txt", "w5 w9 w11\nw30\n")) return;
    cJSON *items[16] = {0};
    run("generate --model llama --prompts two.txt --max-new-tokens 5 --num-beams 3 --num-return-sequences 2 "
        "--length-penalty 0.5 --no-repeat-ngram-size 2 --early-stopping true --json");
    EXPECT_EXIT(0);
    int n = json_lines(items, 16);
    if (CHECKF(n == 4, "%d JSON lines, want 4:\n%s", n, r.out)) {
        for (int k = 0; k < 4; k++) {
            const cJSON *o = items[k], *tokens = cJSON_GetObjectItem(o, "tokens");
            CHECK(json_number(o, "prompt") == k / 2 && json_number(o, "sequence") == k % 2);
            CHECK(cJSON_IsString(cJSON_GetObjectItem(o, "text")) && cJSON_GetArraySize(tokens) >= 1 &&
                  cJSON_GetArraySize(tokens) <= 5);
            if (k % 2) CHECK(json_number(items[k - 1], "score") >= json_number(o, "score")); /* best first */
        }
    }
    for (int k = 0; k < n; k++) cJSON_Delete(items[k]);
    char first[sizeof r.out];
    const char *sample = "generate --model llama --prompts two.txt --max-new-tokens 6 --do-sample --temperature 1.5 "
                         "--top-k 30 --top-p 0.95 --num-return-sequences 3";
    char args[512];
    snprintf(args, sizeof args, "%s --seed 11", sample);
    run(args);
    EXPECT_EXIT(0);
    memcpy(first, r.out, sizeof first);
    int lines = 0;
    for (const char *p = r.out; *p; p++) lines += *p == '\n';
    CHECKF(lines == 6, "sampling printed %d lines, want 2 prompts × 3:\n%s", lines, r.out);
    run(args);
    CHECKF(r.code == 0 && strcmp(first, r.out) == 0, "the same seed sampled differently:\n%s\nthen\n%s", first,
           r.out);
    snprintf(args, sizeof args, "%s --seed 12", sample);
    run(args);
    CHECKF(r.code == 0 && strcmp(first, r.out) != 0, "seeds 11 and 12 sampled the same:\n%s", r.out);
}

/* 16 positions: a 3-token prompt leaves 13 new tokens. */
static void positions_cap_new_tokens(void) {
    if (!model_ready() || !write_text("one.txt", "w5 w9 w11\n")) return;
    cJSON *items[2] = {0};
    run("generate --model llama --prompts one.txt --max-new-tokens 50 --min-length 16 --json");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("lowered to 13");
    if (CHECK(json_lines(items, 2) == 1))
        CHECKF(cJSON_GetArraySize(cJSON_GetObjectItem(items[0], "tokens")) == 13, "%s", r.out);
    cJSON_Delete(items[0]);
    char long_prompt[256] = "";
    for (int i = 0; i < 16; i++) strcat(long_prompt, "w7 ");
    strcat(long_prompt, "\n");
    write_text("long.txt", long_prompt);
    run("generate --model llama --prompts long.txt");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("16 positions");
}

static void bad_input_exits_2(void) {
    if (!model_ready()) return;
    static const struct {
        const char *args, *message;
    } cases[] = {
        {"generate --model llama", "--prompts is required"},
        {"generate --prompts one.txt", "--model is required"},
        {"generate --model nowhere --prompts one.txt", "--model nowhere"},
        {"generate --model llama --prompts missing.txt", "missing.txt"},
        {"generate --model llama --prompts one.txt --num-beams 0", "--num-beams '0'"},
        {"generate --model llama --prompts one.txt --max-new-tokens x", "--max-new-tokens 'x'"},
        {"generate --model llama --prompts one.txt --early-stopping maybe", "--early-stopping 'maybe'"},
        {"generate --model llama --prompts one.txt --do-sample --top-p 1.5", "--top-p 1.5"},
        {"generate --model llama --prompts one.txt --top-k 5", "need --do-sample"},
        {"generate --model llama --prompts one.txt --num-return-sequences 2", "--num-return-sequences 2"},
        {"generate --model llama --prompts one.txt --num-beams 2 --num-return-sequences 3", "exceeds --num-beams"},
        {"generate --model llama --prompts one.txt --weights f8", "--weights 'f8'"},
        {"generate --model llama --prompts one.txt --frobnicate 1", "unknown option '--frobnicate'"},
        {"generate --model llama --prompts bad.jsonl", "bad.jsonl:2: the JSON object has no \"prompt\" string"},
        {"generate --model llama --prompts empty.txt", "empty.txt:2: the prompt has no tokens"},
    };
    write_text("one.txt", "w5\n");
    write_text("bad.jsonl", "{\"prompt\": \"w5\"}\n{\"text\": \"w6\"}\n");
    write_text("empty.txt", "w5\n\nw6\n");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        run(cases[k].args);
        CHECKF(r.code == 2, "'%s' exited %d, want 2:\n%s", cases[k].args, r.code, r.out);
        CHECKF(strstr(r.out, cases[k].message) != NULL, "'%s': output lacks '%s':\n%s", cases[k].args,
               cases[k].message, r.out);
    }
}

/* vkpeft bench generate runs and reports both rates (never asserted on) and
 * with --profile a decode step's kernels. */
static void bench_generate_runs(void) {
    if (!model_ready()) return;
    run("bench generate --model llama --batch 2 --prompt-len 3 --new-tokens 4 --repeat 1 --profile --json");
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    CHECKF(j && json_number(j, "prefill_tokens_per_s") > 0 && json_number(j, "decode_tokens_per_s") > 0 &&
               json_number(j, "batch") == 2,
           "%s", r.out);
    /* --profile: one decode step, its kernels under their sites. */
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "profile");
    if (j && profile_consistent(j))
        CHECKF(profile_has(rows, "forward attention", "attention_") && profile_has(rows, "forward ffn", "matmul_") &&
                   profile_has(rows, "head", "matmul_") && !profile_has(rows, "backward layer", ""),
               "%s", r.out);
    cJSON_Delete(j);
    run("bench generate --model llama --prompt-len 16");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("16 positions");
}

/* inspect plans what vkpeft generate takes on a decoder: the model loaded
 * for the prefill beside its generator (4 heads of 4, 2 layers: the
 * caches with their new rows and the gathered K/V are its least), as
 * vkpeft inspect shows an encoder-decoder's; new tokens beyond the
 * positions are lowered, prompts that fill them leave no plan. */
static void inspect_plans_generation(void) {
    if (!model_ready()) return;
    run("inspect --model llama --batch 2 --max-len 8 --max-new-tokens 4 --json");
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const double R = 2, H = 4, hd = 4, S = 12, f = 4;
    if (j) generation_plan_consistent(j, 2, 4, 2 * 2 * R * H * (1 + S) * hd * f + 2 * R * H * S * hd * f, true);
    cJSON_Delete(j);
    run("inspect --model llama --batch 2 --max-len 8 --num-beams 3 --max-new-tokens 50");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("generation plan: 2 prompts of 8 tokens x 3 beams = 6 rows, 8 new tokens");
    EXPECT_OUTPUT("--max-new-tokens 50 lowered to 8");
    run("inspect --model llama --batch 2 --max-len 16 --json");
    EXPECT_EXIT(0);
    j = output_json();
    const char *why = j ? cJSON_GetStringValue(cJSON_GetObjectItem(j, "generation_error")) : NULL;
    CHECKF(j && cJSON_IsNull(cJSON_GetObjectItem(j, "generation")) && why && strstr(why, "lower --max-len"), "%s",
           r.out);
    cJSON_Delete(j);
}

static void cleanup(void) {
    refd_destroy(g_ref);
    g_ref = NULL;
    teardown();
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli_generate VKPEFT [CASE]\n");
        return 2;
    }
    static char full[4096];
    vkpeft = realpath(argv[1], full) ? full : argv[1];
    snprintf(root, sizeof root, "/tmp/vkpeft-cli-generate-XXXXXX");
    if (!mkdtemp(root)) return 1;
    static const struct th_case cases[] = {
        TH_CASE(greedy_matches_the_reference), TH_CASE(beams_and_sampling), TH_CASE(positions_cap_new_tokens),
        TH_CASE(bad_input_exits_2), TH_CASE(bench_generate_runs), TH_CASE(inspect_plans_generation), TH_CASE(cleanup),
    };
    return th_main(cases, sizeof cases / sizeof cases[0], argc - 1, argv + 1);
}
