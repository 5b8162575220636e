/* vkpeft pretrain end to end on a tiny BERT whose WordPiece tokenizer is
 * built by tools/make-tokenizer.py from tools/make-corpus.py's corpus:
 * the masked-LM loss falls, the output folder fine-tunes with 'vkpeft
 * train', the same seed gives the same curve, bad input exits 2 naming the
 * file; and the batcher's masking statistics (BERT's 15% / 80-10-10, no
 * special token chosen, masks independent of the batch).
 * argv[1]: vkpeft, argv[2]: make-corpus.py, argv[3]: make-tokenizer.py. */
#include "clitest.h"
#include "model.h"
#include "safetensors.h"
#include "spec.h"
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *make_corpus, *make_tokenizer;
static int vocab;

static bool sh(const char *cmd) { return CHECKF(system(cmd) == 0, "failed: %s", cmd); }

/* A BERT config sized to the tokenizer, random weights without any head. */
static bool write_bert(const char *name) {
    char dir[512], path[700], json[1024];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    snprintf(json, sizeof json,
             "{\"model_type\":\"bert\",\"vocab_size\":%d,\"hidden_size\":32,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":2,\"intermediate_size\":64,\"max_position_embeddings\":64,"
             "\"type_vocab_size\":2,\"pad_token_id\":0,\"layer_norm_eps\":1e-12,\"hidden_act\":\"gelu\","
             "\"hidden_dropout_prob\":0,\"attention_probs_dropout_prob\":0,\"num_labels\":2}", vocab);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!CHECK(vp_file_write_atomic(path, json, strlen(json)) == VP_OK)) return false;
    struct model_arch arch;
    struct delta_spec spec;
    if (!CHECK(model_arch_parse(json, strlen(json), "config.json", &arch) == VP_OK) ||
        !CHECK(delta_spec_preset("bitfit", &spec) == VP_OK))
        return false;
    struct refm *m;
    const struct refm_options ro = {.seed = 3, .weight_std = 0.02};
    bool ok = CHECKF(refm_create(&m, &arch, &spec, &ro) == VP_OK, "%s", vp_last_error());
    model_arch_finish(&arch);
    if (!ok) return false;
    static const char *const keep[] = {"bert.", NULL};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ok = write_reference_weights(path, m, keep, NULL);
    refm_destroy(m);
    return ok;
}

static bool setup(void) {
    snprintf(root, sizeof root, "/tmp/vkpeft-test-cli-pretrain-XXXXXX");
    if (!CHECK(mkdtemp(root) != NULL)) return false;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && python3 '%s' --corpus all.txt --task task --sentences 1200 --seed 5 --train 200 --dev 50 "
             "&& head -n 1100 all.txt > corpus.txt && tail -n 100 all.txt > held.txt && mkdir model && "
             "python3 '%s' corpus.txt model --vocab-size 400 --max-length 64 > /dev/null",
             root, make_corpus, make_tokenizer);
    if (!sh(cmd)) return false;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/model", root);
    struct tok_tokenizer *tok;
    if (!CHECKF(tok_tokenizer_load(dir, &tok) == VP_OK, "%s", vp_last_error())) return false;
    vocab = tok_vocab_size(tok);
    tok_tokenizer_free(tok);
    return write_bert("model");
}

static void pretrain_loss_falls(void) {
    if (!setup()) return;
    run("pretrain --model model --data corpus.txt --eval held.txt --out mlm --steps 60 --batch 32 --max-len 32 "
        "--lr 5e-3 --warmup 6 --weight-decay 0 --seed 7 --quiet --json");
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const double first = json_number(j, "first_loss"), last = json_number(j, "final_loss");
    CHECKF(first > 4.5 && last < first - 1.0, "masked-LM loss %g -> %g: %s", first, last, r.out);
    const cJSON *ev = cJSON_GetObjectItem(j, "eval");
    CHECKF(ev && json_number(ev, "masked_accuracy") > 0.05, "eval %s", r.out);
    cJSON_Delete(j);
    static const char *const files[] = {"mlm/config.json", "mlm/tokenizer.json", "mlm/tokenizer_config.json",
                                        "mlm/model.safetensors", "mlm/train.jsonl", "mlm/metrics.json",
                                        "mlm/train_args.json"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) CHECKF(exists(files[k]), "%s missing", files[k]);
    char path[600];
    snprintf(path, sizeof path, "%s/mlm/model.safetensors", root);
    struct io_safetensors *f;
    if (CHECKF(io_safetensors_open(path, &f) == VP_OK, "%s", vp_last_error())) {
        CHECK(io_safetensors_find(f, "cls.predictions.transform.dense.weight") != NULL);
        CHECK(io_safetensors_find(f, "cls.predictions.bias") != NULL);
        CHECK(io_safetensors_find(f, "bert.embeddings.word_embeddings.weight") != NULL);
        CHECK(io_safetensors_find(f, "bert.encoder.layer.1.output.dense.weight") != NULL);
        io_safetensors_close(f);
    }
}

static void output_fine_tunes(void) {
    run("train --model mlm --delta lora --data task/train.jsonl --eval task/dev.jsonl --out ft --steps 4 "
        "--batch 8 --max-len 32 --quiet");
    EXPECT_EXIT(0);
    CHECK(exists("ft/delta.safetensors"));
    /* And pretraining continues from a pretrained folder (head read from it). */
    run("pretrain --model mlm --data held.txt --out mlm2 --steps 2 --batch 8 --max-len 32 --quiet");
    EXPECT_EXIT(0);
}

/* The "loss" of every step line of root/name. */
static int losses(const char *name, double *out, int max) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "r");
    if (!CHECK(f != NULL)) return 0;
    char line[8192];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *t = j ? cJSON_GetObjectItem(j, "type") : NULL;
        if (cJSON_IsString(t) && strcmp(t->valuestring, "step") == 0) out[n++] = json_number(j, "loss");
        cJSON_Delete(j);
    }
    fclose(f);
    return n;
}

static void same_seed_same_curve(void) {
    run("pretrain --model model --data corpus.txt --out s1 --steps 6 --batch 8 --max-len 32 --seed 3 --quiet");
    EXPECT_EXIT(0);
    run("pretrain --model model --data corpus.txt --out s2 --steps 6 --batch 8 --max-len 32 --seed 3 --quiet");
    EXPECT_EXIT(0);
    double a[16], b[16];
    const int na = losses("s1/train.jsonl", a, 16), nb = losses("s2/train.jsonl", b, 16);
    CHECKF(na == 6 && nb == 6, "%d and %d step lines", na, nb);
    for (int k = 0; k < na && k < nb; k++) CHECKF(a[k] == b[k], "step %d: %.9g vs %.9g", k + 1, a[k], b[k]);
}

/* A pretraining run whose device is lost at the 5th submission resumes
 * from its checkpoint (masks are keyed by the epoch, the order by the seed)
 * to the loss curve and the model an uninterrupted run gives. */
static void resume_after_device_lost(void) {
    run("pretrain --model model --data corpus.txt --out r1 --steps 8 --batch 8 --max-len 32 --seed 3 --dropout 0.1 "
        "--checkpoint-every 2 --quiet");
    EXPECT_EXIT(0);
    CHECK(!exists("r1/checkpoint.vkpc"));
    run_env("VKPEFT_TEST_FAULT=submit:6", "pretrain --model model --data corpus.txt --out r2 --steps 8 --batch 8 "
            "--max-len 32 --seed 3 --dropout 0.1 --checkpoint-every 2 --quiet");
    EXPECT_EXIT(1);
    EXPECT_OUTPUT("the device was lost during training");
    EXPECT_OUTPUT("--out r2 --steps 8");
    run("pretrain --model model --data corpus.txt --out r2 --steps 8 --batch 8 --max-len 32 --seed 3 --dropout 0.1 "
        "--checkpoint-every 2 --quiet --resume");
    EXPECT_EXIT(0);
    double a[16], b[16];
    const int na = losses("r1/train.jsonl", a, 16), nb = losses("r2/train.jsonl", b, 16);
    CHECKF(na == 8 && nb == 8, "%d and %d step lines", na, nb);
    for (int k = 0; k < na && k < nb; k++) CHECKF(a[k] == b[k], "step %d: %.9g vs %.9g", k + 1, a[k], b[k]);
    CHECK(same_bytes("r1/model.safetensors", "r2/model.safetensors"));
}

/* --checkpoint-activations on the masked-LM pretraining (every weight
 * trains, dropout on): the uninterrupted run's model, byte for byte. */
static void checkpointed_same_model(void) {
    if (!CHECKF(exists("r1/model.safetensors"), "needs resume_after_device_lost's r1")) return;
    run("pretrain --model model --data corpus.txt --out r3 --steps 8 --batch 8 --max-len 32 --seed 3 --dropout 0.1 "
        "--checkpoint-every 2 --quiet --checkpoint-activations");
    EXPECT_EXIT(0);
    CHECKF(same_bytes("r1/model.safetensors", "r3/model.safetensors"), "the checkpointed run's model differs");
}

static void masking_statistics(void) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/model", root);
    snprintf(path, sizeof path, "%s/corpus.txt", root);
    struct tok_tokenizer *tok;
    if (!CHECKF(tok_tokenizer_load(dir, &tok) == VP_OK, "%s", vp_last_error())) return;
    struct train_corpus *c;
    struct mlm_masking m;
    struct train_batch b, one;
    if (!CHECKF(train_corpus_open(path, tok, 32, vocab, &c) == VP_OK, "%s", vp_last_error())) return;
    CHECK(train_corpus_masking(c, 0.15, 11, &m) == VP_OK);
    CHECK(train_batch_init(&b, 16, 32) == VP_OK && train_batch_init(&one, 1, 32) == VP_OK);
    const struct tok_special_ids sp = tok_special_ids(tok);
    uint64_t eligible = 0, chosen = 0, masked = 0, kept = 0, special_chosen = 0;
    uint64_t idx[16];
    for (uint64_t first = 0; first + 16 <= train_corpus_count(c); first += 16) {
        for (int q = 0; q < 16; q++) idx[q] = first + (uint64_t)q;
        if (!CHECK(train_batch_fill_mlm(&b, c, idx, 16, 0, 32, 8, &m, 2) == VP_OK)) break;
        for (int row = 0; row < 16; row++)
            for (int k = 0; k < b.lens[row]; k++) {
                const int32_t id = b.ids[row * b.T + k], label = b.labels[row * b.T + k];
                const bool special = label == ENCODER_IGNORE_INDEX ? tok_is_special(tok, id) : tok_is_special(tok, label);
                if (label != ENCODER_IGNORE_INDEX && special) special_chosen++;
                if (label == ENCODER_IGNORE_INDEX && id == sp.mask) special_chosen++;
                if (!special) eligible++;
                if (label == ENCODER_IGNORE_INDEX) continue;
                chosen++;
                masked += id == sp.mask;
                kept += id == label;
            }
        /* The same example alone in a batch gets the same masks. */
        if (first % 160 == 0) {
            CHECK(train_batch_fill_mlm(&one, c, idx + 5, 1, 0, 32, 8, &m, 2) == VP_OK);
            for (int k = 0; k < one.lens[0]; k++)
                CHECKF(one.ids[k] == b.ids[5 * b.T + k] && one.labels[k] == b.labels[5 * b.T + k],
                       "example %llu token %d differs alone", (unsigned long long)idx[5], k);
        }
    }
    const double p = (double)chosen / (double)eligible, pm = (double)masked / (double)chosen,
                 pk = (double)kept / (double)chosen, pr = 1 - pm - pk;
    CHECKF(special_chosen == 0, "%llu special tokens chosen", (unsigned long long)special_chosen);
    CHECKF(fabs(p - 0.15) < 0.01, "chosen share %.4f of %llu", p, (unsigned long long)eligible);
    CHECKF(fabs(pm - 0.8) < 0.03 && fabs(pk - 0.1) < 0.03 && fabs(pr - 0.1) < 0.03,
           "mask %.3f, kept %.3f, random %.3f of %llu", pm, pk, pr, (unsigned long long)chosen);
    /* Another epoch masks differently. */
    CHECK(train_batch_fill_mlm(&one, c, idx, 1, 0, 32, 8, &m, 3) == VP_OK);
    train_batch_finish(&b);
    train_batch_finish(&one);
    train_corpus_close(c);
    tok_tokenizer_free(tok);
}

static void bad_input_exits_2(void) {
    CHECK(sh("true"));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cd '%s' && mkdir notok && cp model/config.json model/model.safetensors notok/ && "
             ": > empty.txt", root);
    if (!sh(cmd)) return;
    run("pretrain --model notok --data corpus.txt --out bad1 --steps 2 --quiet");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("notok/tokenizer.json");
    CHECK(!exists("bad1"));
    run("pretrain --model model --data empty.txt --out bad2 --steps 2 --quiet");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("empty.txt");
    CHECK(!exists("bad2"));
    run("pretrain --model model --data corpus.txt --out bad3 --mask-prob 1.5");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--mask-prob");
    run("pretrain --help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("vkpeft pretrain --model");
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: test_cli_pretrain VKPEFT MAKE-CORPUS.py MAKE-TOKENIZER.py [CASE]\n");
        return 2;
    }
    static char full[4096];
    vkpeft = realpath(argv[1], full) ? full : argv[1];
    make_corpus = argv[2];
    make_tokenizer = argv[3];
    static const struct th_case cases[] = {
        TH_CASE(pretrain_loss_falls), TH_CASE(output_fine_tunes), TH_CASE(same_seed_same_curve), TH_CASE(resume_after_device_lost),
        TH_CASE(checkpointed_same_model), TH_CASE(masking_statistics),  TH_CASE(bad_input_exits_2), TH_CASE(teardown),
    };
    return th_main(cases, sizeof cases / sizeof cases[0], argc - 3, argv + 3);
}
