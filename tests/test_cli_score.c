/* vkpeft score end to end: ROUGE and BLEU of text files against hand-worked
 * values, several reference streams, line endings, bad input (exit 2).
 *
 * argv[1]: vkpeft. */
#include "clitest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

static bool setup(void) {
    if (root[0]) return true;
    snprintf(root, sizeof root, "/tmp/vkpeft-test-cli-score-XXXXXX");
    return CHECK(mkdtemp(root) != NULL) && write_text("pred.txt", "the cat sat on the mat\na b c d e\n") &&
           write_text("ref.txt", "the cat sat on the mat\r\nb a d c e") && write_text("short.txt", "x\n");
}

/* pair 1 identical; pair 2 "a b c d e" vs "b a d c e": every unigram, no
 * bigram, LCS 3 of 5. ROUGE-1 (1+1)/2, ROUGE-2 (1+0)/2, ROUGE-L (1+0.6)/2.
 * BLEU: matches/totals 11/11, 5/9, 4/7, 3/5 (pair 2 adds only unigrams),
 * equal lengths, BP 1: 100·(5/9 · 4/7 · 3/5)^(1/4). */
static void scores_by_hand(void) {
    if (!setup()) return;
    run("score --pred pred.txt --ref ref.txt --json");
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const cJSON *rouge = cJSON_GetObjectItem(j, "rouge"), *bleu = cJSON_GetObjectItem(j, "bleu");
    CHECK(rouge && NEAR(json_number(rouge, "rouge1"), 100) && NEAR(json_number(rouge, "rouge2"), 50) &&
          NEAR(json_number(rouge, "rougeL"), 80) && json_number(rouge, "count") == 2);
    const double want = 100 * pow(5.0 / 9 * 4.0 / 7 * 3.0 / 5, 0.25);
    CHECKF(bleu && NEAR(json_number(bleu, "score"), want), "BLEU %g, want %g", bleu ? json_number(bleu, "score") : NAN,
           want);
    CHECK(bleu && NEAR(json_number(bleu, "bp"), 1) && json_number(bleu, "sys_len") == 11);
    cJSON_Delete(j);
    run("score --pred pred.txt --ref ref.txt");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("ROUGE-1 100.00  ROUGE-2 50.00  ROUGE-L 80.00");
    EXPECT_OUTPUT("BLEU 66.06  100.0/55.6/57.1/60.0");
}

/* A second reference stream holding "a b c d e" makes pair 2 exact: BLEU 100;
 * ROUGE reads the first stream only. The stemmer joins "sitting"/"sits". */
static void streams_and_stemmer(void) {
    if (!setup()) return;
    write_text("ref2.txt", "the cat sat on the mat\na b c d e\n");
    run("score --pred pred.txt --ref ref.txt --ref ref2.txt --metric bleu --json");
    EXPECT_EXIT(0);
    cJSON *j = output_json();
    const cJSON *bleu = cJSON_GetObjectItem(j, "bleu");
    CHECK(bleu && NEAR(json_number(bleu, "score"), 100) && !cJSON_GetObjectItem(j, "rouge"));
    cJSON_Delete(j);
    write_text("p2.txt", "dogs sitting\n");
    write_text("r2.txt", "dog sits\n");
    run("score --pred p2.txt --ref r2.txt --metric rouge --stemmer --json");
    EXPECT_EXIT(0);
    j = output_json();
    const cJSON *rouge = cJSON_GetObjectItem(j, "rouge");
    CHECK(rouge && NEAR(json_number(rouge, "rouge1"), 100));
    cJSON_Delete(j);
    run("score --pred p2.txt --ref r2.txt --metric rouge --json");
    j = output_json();
    rouge = cJSON_GetObjectItem(j, "rouge");
    CHECK(rouge && NEAR(json_number(rouge, "rouge1"), 0));
    cJSON_Delete(j);
}

static void bad_input_exits_2(void) {
    if (!setup()) return;
    run("score --pred pred.txt --ref short.txt");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("short.txt has 1 lines but pred.txt has 2");
    run("score --pred missing.txt --ref ref.txt");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("missing.txt");
    run("score --pred pred.txt");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("--ref FILE is required");
    run("score --pred pred.txt --ref ref.txt --metric meteor");
    EXPECT_EXIT(2);
    EXPECT_OUTPUT("'meteor'");
    run("score --help");
    EXPECT_EXIT(0);
    EXPECT_OUTPUT("examples:");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli_score VKPEFT [CASE]\n");
        return 2;
    }
    static char full[4096];
    vkpeft = realpath(argv[1], full) ? full : argv[1];
    static const struct th_case cases[] = {
        TH_CASE(scores_by_hand), TH_CASE(streams_and_stemmer), TH_CASE(bad_input_exits_2), TH_CASE(teardown),
    };
    return th_main(cases, sizeof cases / sizeof cases[0], argc - 1, argv + 1);
}
