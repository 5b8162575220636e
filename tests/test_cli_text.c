/* vkpeft train, eval and predict on text data: a tiny RoBERTa-shaped model
 * folder with a WordPiece tokenizer.json, GLUE-style TSV files with label
 * names, the names saved with the delta and written by predict, and the
 * label errors (a name training never saw, more names than classes).
 * argv[1] is the path of the vkpeft binary. */
#include "harness.h"
#include "model.h"
#include "safetensors.h"
#include "spec.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *vkpeft;
static char root[256];

struct result {
    int code;
    char out[1 << 16]; /* stdout and stderr together */
};
static struct result r;

static void run(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1", root, vkpeft, args);
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

static bool exists(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    return access(path, F_OK) == 0;
}

static bool write_text(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    return CHECK(vp_file_write_atomic(path, text, strlen(text)) == VP_OK);
}

static cJSON *read_json(const char *name) {
    char path[512];
    void *text;
    size_t size;
    snprintf(path, sizeof path, "%s/%s", root, name);
    if (!CHECK(vp_file_read(path, &text, &size) == VP_OK)) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, size);
    free(text);
    CHECKF(j != NULL, "%s is not JSON", name);
    return j;
}

/* ------------------------------------------------------------------------
 * The model folder: config, random weights, tokenizer.json
 * ------------------------------------------------------------------------ */

/* type_vocab_size 1, as RoBERTa: the tokenizer's pair template gives both
 * segments type id 0. The vocabulary (40) covers the tokenizer's ids. */
static const char config[] =
    "{\"model_type\":\"roberta\",\"vocab_size\":40,\"hidden_size\":32,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":2,\"intermediate_size\":64,\"max_position_embeddings\":42,"
    "\"type_vocab_size\":1,\"pad_token_id\":1,\"layer_norm_eps\":1e-5,\"num_labels\":3}";

/* Words of the vocabulary: [CLS] 0, [PAD] 1, [SEP] 2, [UNK] 3, the markers
 * cat 4, dog 5, fox 6, fillers w7..w39. */
static bool write_tokenizer(const char *dir) {
    char *json = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&json, &size);
    if (!CHECK(f != NULL)) return false;
    static const char *const special[] = {"[CLS]", "[PAD]", "[SEP]", "[UNK]"};
    fputs("{\"version\":\"1.0\",\"added_tokens\":[", f);
    for (int i = 0; i < 4; i++)
        fprintf(f, "%s{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}", i ? "," : "", i, special[i]);
    fputs("],\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
          "\"strip_accents\":null,\"lowercase\":true},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
          "\"post_processor\":{\"type\":\"TemplateProcessing\","
          "\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
          "{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}}],"
          "\"pair\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
          "{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":0}},"
          "{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}}],"
          "\"special_tokens\":{\"[CLS]\":{\"id\":\"[CLS]\",\"ids\":[0],\"tokens\":[\"[CLS]\"]},"
          "\"[SEP]\":{\"id\":\"[SEP]\",\"ids\":[2],\"tokens\":[\"[SEP]\"]}}},"
          "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
          "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
          "\"max_input_chars_per_word\":100,\"vocab\":{\"[CLS]\":0,\"[PAD]\":1,\"[SEP]\":2,\"[UNK]\":3,"
          "\"cat\":4,\"dog\":5,\"fox\":6",
          f);
    for (int i = 7; i < 40; i++) fprintf(f, ",\"w%d\":%d", i, i);
    fputs("}}}", f);
    fclose(f);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    bool ok = CHECK(vp_file_write_atomic(path, json, size) == VP_OK);
    free(json);
    return ok;
}

static bool write_model(const char *name) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    if (!CHECK(mkdir(dir, 0755) == 0)) return false;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!CHECK(vp_file_write_atomic(path, config, strlen(config)) == VP_OK)) return false;
    struct model_arch arch;
    struct delta_spec spec;
    if (!CHECK(model_arch_parse(config, strlen(config), "config.json", &arch) == VP_OK) ||
        !CHECK(delta_spec_preset("bitfit", &spec) == VP_OK))
        return false;
    struct refm *m;
    const struct refm_options ro = {.seed = 12, .weight_std = 0.2};
    bool ok = CHECKF(refm_create(&m, &arch, &spec, &ro) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    if (!ok) return false;
    const int count = refm_tensor_count(m);
    struct io_tensor_out *out = calloc((size_t)count, sizeof *out);
    float **data = calloc((size_t)count, sizeof *data);
    size_t n = 0;
    for (int k = 0; k < count; k++) {
        struct refm_tensor *t = refm_tensor_at(m, k);
        if (strncmp(t->name, "roberta.", 8) != 0 && strncmp(t->name, "classifier.", 11) != 0) continue;
        data[n] = malloc(t->n * sizeof **data);
        for (size_t i = 0; i < t->n; i++) data[n][i] = (float)t->data[i];
        out[n] = (struct io_tensor_out){t->name, IO_DTYPE_F32, t->ndim, {0}, data[n]};
        for (int i = 0; i < t->ndim; i++) out[n].shape[i] = t->shape[i];
        n++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ok = CHECKF(io_safetensors_write(path, out, n, NULL) == VP_OK, "%s", vp_last_error());
    for (size_t k = 0; k < n; k++) free(data[k]);
    free(data);
    free(out);
    refm_destroy(m);
    return ok && write_tokenizer(dir);
}

/* A GLUE-style TSV: sentence1 holds one marker word among fillers, the
 * label names it; sentence2 is filler. `names` are the labels of markers
 * cat, dog, fox (and a fourth for `kinds` 4). */
static bool write_tsv(const char *name, int count, uint64_t seed, int kinds, const char *const *names) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL)) return false;
    static const char *const markers[] = {"cat", "dog", "fox", "w7"};
    fputs("index\tsentence1\tsentence2\tlabel\n", f);
    uint64_t st = seed;
    for (int i = 0; i < count; i++) {
        const int len = 3 + (int)(th_rand_u64(&st) % 6), label = (int)(th_rand_u64(&st) % (uint64_t)kinds);
        const int at = (int)(th_rand_u64(&st) % (uint64_t)len);
        fprintf(f, "%d\t", i);
        for (int t = 0; t < len; t++)
            if (t == at) fprintf(f, "%s%s", t ? " " : "", markers[label]);
            else fprintf(f, "%sW%d", t ? " " : "", 8 + (int)(th_rand_u64(&st) % 32));
        fprintf(f, "\tw%d w%d.\t%s\n", 8 + (int)(th_rand_u64(&st) % 32), 8 + (int)(th_rand_u64(&st) % 32), names[label]);
    }
    return CHECK(fclose(f) == 0);
}

static const char *const animal_names[] = {"feline", "canine", "vulpine", "avian"};

static bool setup_done;

static bool setup(void) {
    if (setup_done) return true;
    snprintf(root, sizeof root, "/tmp/vkpeft-test-cli-text-XXXXXX");
    if (!CHECK(mkdtemp(root) != NULL)) return false;
    setup_done = write_model("model") && write_tsv("train.tsv", 96, 5, 3, animal_names) &&
                 write_tsv("dev.tsv", 24, 6, 3, animal_names);
    return setup_done;
}

/* ------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------ */

static void help_shows_text_data(void) {
    run("train --help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("--text-pair-field");
    EXPECT_OUTPUT("train.tsv");
    run("eval --help");
    EXPECT_OUTPUT("dev.tsv");
    run("predict --help");
    EXPECT_OUTPUT("pred_name");
}

/* Train on a TSV with label names; the names (sorted) are saved with the
 * delta; eval and predict map the dev set's names through them and
 * predict writes the names. */
static void train_eval_predict_tsv(void) {
    if (!setup()) return;
    run("train --model model --delta lora:r=4 --data train.tsv --eval dev.tsv --out run1 "
        "--lr 1e-2 --epochs 2 --batch 16 --dropout 0 --max-len 24");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("labels: 0 = canine, 1 = feline, 2 = vulpine");
    cJSON *j = exists("run1/delta.json") ? read_json("run1/delta.json") : NULL;
    const cJSON *labels = cJSON_GetObjectItem(j, "labels");
    CHECKF(cJSON_IsArray(labels) && cJSON_GetArraySize(labels) == 3, "delta.json labels");
    static const char *const sorted[] = {"canine", "feline", "vulpine"};
    for (int k = 0; k < 3 && cJSON_IsArray(labels); k++) {
        const cJSON *e = cJSON_GetArrayItem(labels, k);
        CHECKF(cJSON_IsString(e) && strcmp(e->valuestring, sorted[k]) == 0, "labels[%d]", k);
    }
    cJSON_Delete(j);
    run("eval --model model --delta run1 --data dev.tsv --max-len 24 --json");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("\"count\":\t24");
    run("predict --model model --delta run1 --data dev.tsv --out preds.jsonl --max-len 24");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("wrote 24 predictions");
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/preds.jsonl", root);
    FILE *f = fopen(path, "r");
    int lines = 0;
    while (f && fgets(line, sizeof line, f)) {
        cJSON *p = cJSON_Parse(line);
        const cJSON *pred = cJSON_GetObjectItem(p, "pred"), *pred_name = cJSON_GetObjectItem(p, "pred_name");
        const cJSON *label = cJSON_GetObjectItem(p, "label"), *label_name = cJSON_GetObjectItem(p, "label_name");
        bool ok = cJSON_IsNumber(pred) && cJSON_IsString(pred_name) && cJSON_IsNumber(label) &&
                  cJSON_IsString(label_name) && pred->valueint >= 0 && pred->valueint < 3 &&
                  label->valueint >= 0 && label->valueint < 3 &&
                  strcmp(pred_name->valuestring, sorted[pred->valueint]) == 0 &&
                  strcmp(label_name->valuestring, sorted[label->valueint]) == 0;
        CHECKF(ok, "bad prediction line: %s", line);
        cJSON_Delete(p);
        lines++;
    }
    if (f) fclose(f);
    CHECK(lines == 24);
    /* The first dev example's label name, written back as the same name. */
    snprintf(path, sizeof path, "%s/dev.tsv", root);
    f = fopen(path, "r");
    char first[1024] = "";
    if (f && fgets(line, sizeof line, f) && fgets(first, sizeof first, f)) {
        char *name = strrchr(first, '\t');
        if (name) name[strcspn(name, "\n")] = 0;
        char want[128];
        snprintf(want, sizeof want, "\"label_name\": \"%s\"", name ? name + 1 : "?");
        snprintf(path, sizeof path, "%s/preds.jsonl", root);
        FILE *p = fopen(path, "r");
        CHECKF(p && fgets(line, sizeof line, p) && strstr(line, want), "first prediction %s lacks %s", line, want);
        if (p) fclose(p);
    }
    if (f) fclose(f);
}

/* A label name the delta was not trained with is an error naming the file,
 * the line and the names it knows. */
static void unseen_label_in_eval(void) {
    if (!setup() || !exists("run1/delta.json")) return;
    if (!write_text("odd.tsv", "index\tsentence1\tsentence2\tlabel\n0\tcat\tw8\tfeline\n1\tdog\tw9\tavian\n")) return;
    run("eval --model model --delta run1 --data odd.tsv");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("odd.tsv:3: \"label\" \"avian\" is not one of the labels the delta was trained with");
    EXPECT_OUTPUT("(canine, feline, vulpine)");
    /* --skip-bad skips it and counts. */
    run("eval --model model --delta run1 --data odd.tsv --skip-bad --json");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("skipped 1 bad line(s)");
    EXPECT_OUTPUT("\"count\":\t1");
}

/* --init-delta keeps the delta's numbering: data with a subset of the names
 * maps through the saved names instead of renumbering them. */
static void init_delta_keeps_labels(void) {
    if (!setup() || !exists("run1/delta.json")) return;
    if (!write_text("sub.tsv", "index\tsentence1\tsentence2\tlabel\n0\tfox\tw8\tvulpine\n1\tcat\tw9\tfeline\n"))
        return;
    run("train --model model --init-delta run1 --data sub.tsv --out run4 --steps 1 --max-len 24 --quiet");
    EXPECT_EXIT(0);
    cJSON *j = exists("run4/delta.json") ? read_json("run4/delta.json") : NULL;
    const cJSON *labels = cJSON_GetObjectItem(j, "labels");
    const cJSON *first = cJSON_GetArrayItem(labels, 0), *last = cJSON_GetArrayItem(labels, 2);
    CHECKF(cJSON_IsString(first) && strcmp(first->valuestring, "canine") == 0 && cJSON_IsString(last) &&
               strcmp(last->valuestring, "vulpine") == 0,
           "run4 labels renumbered");
    cJSON_Delete(j);
}

/* More label names than the model's classes: refused before --out, with
 * the config to change. */
static void too_many_labels(void) {
    if (!setup() || !write_tsv("four.tsv", 40, 7, 4, animal_names)) return;
    run("train --model model --delta lora:r=4 --data four.tsv --out run2 --steps 1");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("four.tsv:");
    EXPECT_OUTPUT("one more than the model's 3 classes");
    EXPECT_OUTPUT("\"num_labels\"");
    CHECK(!exists("run2"));
    /* A text column that is not there is named. */
    run("train --model model --delta lora:r=4 --data train.tsv --text-field premise --out run3 --steps 1");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("no column \"premise\"");
    CHECK(!exists("run3"));
}

/* compare reads the same text data and label names as train. */
static void compare_reads_text_data(void) {
    if (!setup()) return;
    run("compare --model model --data train.tsv --eval dev.tsv --presets lora:r=4,bitfit --steps 6 "
        "--batch 8 --max-len 24 --out cmp --json --quiet");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("\"lora:r=4\"");
    EXPECT_OUTPUT("\"bitfit\"");
    char path[512];
    snprintf(path, sizeof path, "%s/cmp/bitfit/delta.json", root);
    void *text = NULL;
    size_t size = 0;
    if (CHECK(vp_file_read(path, &text, &size) == VP_OK))
        CHECKF(strstr(text, "\"feline\"") != NULL, "delta.json lacks the label names:\n%s", (char *)text);
    free(text);
}

static void teardown(void) {
    if (!root[0]) return;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli_text PATH-TO-VKPEFT\n");
        return 2;
    }
    /* The commands run in the test's folder: the binary's path must not be
     * relative to ours. */
    static char full[4096];
    vkpeft = realpath(argv[1], full) ? full : argv[1];
    static const struct th_case cases[] = {
        TH_CASE(help_shows_text_data), TH_CASE(train_eval_predict_tsv), TH_CASE(unseen_label_in_eval),
        TH_CASE(init_delta_keeps_labels), TH_CASE(too_many_labels), TH_CASE(compare_reads_text_data),
        TH_CASE(teardown),
    };
    return th_main(cases, sizeof cases / sizeof cases[0], argc - 1, argv + 1);
}
