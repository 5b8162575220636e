/* The tokenizer's parts on their own: Unicode tables and normalization, the
 * regex engine on the patterns tokenizer.json files use, normalizers,
 * pre-tokenizers (every split behaviour) and decoders. Expected values are
 * worked by hand from Hugging Face tokenizers' rules (and, for Unicode, from
 * Python's unicodedata). */
#include "harness.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct tx_json json_ctx = {.file = "test.json"};

/* ---- Unicode -------------------------------------------------------------------- */

static void categories_and_lowercase(void) {
    CHECK(uc_category('A') == UC_LU);
    CHECK(uc_category(0xE9) == UC_LL);
    CHECK(uc_category(0x4E2D) == UC_LO);
    CHECK(uc_category(0x663) == UC_ND);
    CHECK(uc_category(0x301) == UC_MN);
    CHECK(uc_category('!') == UC_PO);
    CHECK(uc_category(0x2028) == UC_ZL);
    CHECK(uc_category(0xE000) == UC_CO);
    CHECK(uc_category(0x378) == UC_CN);
    CHECK(uc_category(0x10FFFF) == UC_CN);
    CHECK(uc_in(0x1F600, UC_MASK_S));
    CHECK(uc_is_white_space(0x3000) && uc_is_white_space(0x85) && !uc_is_white_space(0x200B));
    uint32_t out[3];
    CHECK(uc_lower('Q', out) == 1 && out[0] == 'q');
    CHECK(uc_lower(0x130, out) == 2 && out[0] == 'i' && out[1] == 0x307); /* İ -> i̇ */
    CHECK(uc_lower(0x3A3, out) == 1 && out[0] == 0x3C3);                  /* Σ -> σ, never ς */
    CHECK(uc_lower(0x4E2D, out) == 1 && out[0] == 0x4E2D);
}

static void check_form(enum uc_form form, const uint32_t *in, size_t n, const uint32_t *want, size_t wn,
                       const char *what) {
    uint32_t *v = malloc(n * sizeof *v);
    size_t len = n, cap = n;
    memcpy(v, in, n * sizeof *v);
    bool ok = uc_normalize(form, &v, &len, &cap);
    CHECKF(ok && len == wn && memcmp(v, want, wn * sizeof *v) == 0, "%s: got %zu code points", what, len);
    free(v);
}

#define FORM(form, in, want)                                                                     \
    check_form(form, (const uint32_t[])in, sizeof((uint32_t[])in) / 4, (const uint32_t[])want, \
               sizeof((uint32_t[])want) / 4, #form " " #in)
#define L(...) {__VA_ARGS__}

static void normalization_forms(void) {
    FORM(UC_NFD, L(0xE9), L('e', 0x301));
    FORM(UC_NFC, L('e', 0x301), L(0xE9));
    FORM(UC_NFD, L('a', 0x301, 0x316), L('a', 0x316, 0x301));   /* canonical order */
    FORM(UC_NFC, L('a', 0x316, 0x301), L(0xE1, 0x316));         /* not blocked by a lower class */
    FORM(UC_NFKC, L(0xFB01, 0x2460), L('f', 'i', '1'));
    FORM(UC_NFC, L(0x212B), L(0xC5));                           /* singleton */
    FORM(UC_NFD, L(0xD55C), L(0x1112, 0x1161, 0x11AB));         /* Hangul */
    FORM(UC_NFC, L(0x1112, 0x1161, 0x11AB), L(0xD55C));
    FORM(UC_NFKD, L(0xBD), L('1', 0x2044, '2'));
    FORM(UC_NFC, L('A', 'b'), L('A', 'b'));
}

/* ---- regex ---------------------------------------------------------------------- */

static void expect_matches(const char *pattern, const char *text, const char *const *want, size_t n) {
    char err[256];
    struct rx_regex *re = rx_compile(pattern, err, sizeof err);
    if (!CHECKF(re != NULL, "/%s/: %s", pattern, err)) return;
    struct rx_scratch sc = {0};
    struct rx_match *m = NULL;
    size_t count = 0, cap = 0;
    CHECK(rx_find_all(re, text, strlen(text), &sc, &m, &count, &cap));
    CHECKF(count == n, "/%s/ on \"%s\": %zu matches, want %zu", pattern, text, count, n);
    for (size_t i = 0; i < count && i < n; i++) {
        size_t len = m[i].end - m[i].start;
        CHECKF(len == strlen(want[i]) && memcmp(text + m[i].start, want[i], len) == 0,
               "/%s/ match %zu is \"%.*s\", want \"%s\"", pattern, i, (int)len, text + m[i].start, want[i]);
    }
    free(m);
    rx_scratch_free(&sc);
    rx_free(re);
}

#define MATCHES(pattern, text, ...)                                                       \
    expect_matches(pattern, text, (const char *const[]){__VA_ARGS__},                     \
                   sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static const char gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                             "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static void regex_tokenizer_patterns(void) {
    /* "\s+(?!\S)" leaves the last space of a run to the next word. */
    MATCHES(gpt2, "Hello world's  123!!\n  x", "Hello", " world", "'s", " ", " 123", "!!", "\n ", " x");
    MATCHES(gpt2, "ünï 中文  ", "ünï", " 中文", "  ");
    MATCHES(llama3, "I'M 12345 done!!\n\nok  ", "I", "'M", " ", "123", "45", " done", "!!\n\n", "ok", "  ");
    MATCHES("\\w+|[^\\w\\s]+", "Hi, there_1!", "Hi", ",", "there_1", "!");
    MATCHES(" {2,}", "a  b   c d", "  ", "   ");
    MATCHES("[a-c\\d]+|(?:x|y)z?", "abc1 xz y d", "abc1", "xz", "y");
    MATCHES("a{2,3}?", "aaaaa", "aa", "aa");          /* lazy */
    MATCHES("(?i)hello", "HeLLo hello", "HeLLo", "hello");
    MATCHES("[^\\p{L}]+", "ab--cd", "--");
    MATCHES("\\P{L}", "a1", "1");
    MATCHES("\\Aab|b\\z", "abab", "ab", "b");
    MATCHES("x(?=y)", "xyxz", "x");
    MATCHES("[\\u4e00-\\u9fa5]+", "ab中文c", "中文");
    MATCHES("\\.", "a.b", ".");
    /* Patterns from other tokenizer.json files: BLOOM (a class nested in a class), DeepSeek-V3, o200k. */
    MATCHES(" ?[^(\\s|[.,!?…。，、।۔،])]+", "Hi there, you。ok", "Hi", " there", " you", "ok");
    MATCHES("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
            "?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            "#include <x> ok", "#include", " <", "x", ">", " ok");
    MATCHES("[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}",
            "HelloWorld's 1234", "Hello", "World's", "123", "4"); /* no alternative takes the space */
}

static void regex_rejects_what_it_does_not_support(void) {
    static const char *const bad[][2] = {
        {"(?<=a)b", "lookbehind"}, {"a++", "possessive"}, {"\\p{Han}", "\\p{Han}"}, {"(a", "missing )"},
        {"a)", "unmatched )"}, {"[a", "unterminated class"}, {"*a", "nothing to repeat"}, {"(a*)*", "empty"},
        {"\\1", "\\1"}, {"[a&&b]", "intersection"}, {"(?x)a", "(?x"}, {"(?-m)a", "inline flag 'm'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        struct rx_regex *re = rx_compile(bad[i][0], err, sizeof err);
        CHECKF(re == NULL && strstr(err, bad[i][1]), "/%s/: \"%s\" lacks \"%s\"", bad[i][0], err, bad[i][1]);
        rx_free(re);
    }
}

/* ---- normalizers -------------------------------------------------------------------- */

static void expect_normalized(const char *json, const char *in, const char *want) {
    cJSON *o = cJSON_Parse(json);
    struct tx_normalizer *n = NULL;
    vp_status s = tx_normalizer_parse(&json_ctx, o, "normalizer", &n);
    cJSON_Delete(o);
    if (!CHECKF(s == VP_OK, "%s: %s", json, vp_last_error())) return;
    struct tx_str out = {0};
    struct tx_scratch sc = {0};
    CHECK(tx_normalizer_run(n, in, strlen(in), &out, &sc) == VP_OK);
    CHECKF(out.len == strlen(want) && memcmp(out.s, want, out.len) == 0, "%s on \"%s\": \"%s\", want \"%s\"", json,
           in, out.s ? out.s : "", want);
    tx_str_free(&out);
    tx_scratch_free(&sc);
    tx_normalizer_free(n);
}

static void normalizers(void) {
    const char *bert = "{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
                       "\"strip_accents\":null,\"lowercase\":true}";
    expect_normalized(bert, "Héllo\tWORLD\x01 中\xEF\xBF\xBD", "hello world  中 ");
    expect_normalized("{\"type\":\"BertNormalizer\",\"lowercase\":false}", "Héllo", "Héllo");
    expect_normalized("{\"type\":\"BertNormalizer\",\"lowercase\":true,\"strip_accents\":false}", "HÉ", "hé");
    expect_normalized("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFD\"},{\"type\":\"StripAccents\"},"
                      "{\"type\":\"Lowercase\"}]}",
                      "Ça Été", "ca ete");
    expect_normalized("{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}", "\u3000 hi \n", "hi");
    expect_normalized("{\"type\":\"Strip\",\"strip_left\":false,\"strip_right\":true}", " hi ", " hi");
    expect_normalized("{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},\"content\":\"▁\"}", "a  b   c d",
                      "a▁b▁c d");
    expect_normalized("{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"▁\"}", "a b", "a▁b");
    expect_normalized("{\"type\":\"Prepend\",\"prepend\":\"▁\"}", "x", "▁x");
    expect_normalized("{\"type\":\"Prepend\",\"prepend\":\"▁\"}", "", "");
    expect_normalized("{\"type\":\"Nmt\"}", "a\x01" "b\tc\u200B" "d", "ab c d");
    expect_normalized("{\"type\":\"ByteLevel\"}", "é ", "Ã©Ġ");
    expect_normalized("{\"type\":\"NFKC\"}", "ﬁ①", "fi1");
    expect_normalized("{\"type\":\"NFC\"}", "e\u0301", "é");
    expect_normalized("{\"type\":\"Lowercase\"}", "İA", "i\u0307a");
    expect_normalized("{\"type\":\"Precompiled\",\"precompiled_charsmap\":null}", "As Is", "As Is");
}

/* ---- pre-tokenizers ------------------------------------------------------------------- */

static void expect_pretok(const char *json, const char *in, const char *const *want, size_t n) {
    cJSON *o = cJSON_Parse(json);
    struct tx_pretok *p = NULL;
    vp_status s = tx_pretok_parse(&json_ctx, o, "pre_tokenizer", &p);
    cJSON_Delete(o);
    if (!CHECKF(s == VP_OK, "%s: %s", json, vp_last_error())) return;
    struct tx_pieces a = {0}, b = {0};
    struct tx_scratch sc = {0};
    tx_pieces_add(&a, in, strlen(in), -1, true);
    CHECK(tx_pretok_run(p, &a, &b, &sc) == VP_OK);
    CHECKF(b.n == n, "%s on \"%s\": %zu pieces, want %zu", json, in, b.n, n);
    for (size_t i = 0; i < b.n && i < n; i++)
        CHECKF(b.v[i].len == strlen(want[i]) && memcmp(tx_piece_text(&b, i), want[i], b.v[i].len) == 0,
               "%s on \"%s\": piece %zu is \"%.*s\", want \"%s\"", json, in, i, (int)b.v[i].len,
               tx_piece_text(&b, i), want[i]);
    tx_pieces_free(&a);
    tx_pieces_free(&b);
    tx_scratch_free(&sc);
    tx_pretok_free(p);
}

#define PRETOK(json, in, ...)                                              \
    expect_pretok(json, in, (const char *const[]){__VA_ARGS__},            \
                  sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

#define SPLIT_DASH(behavior) "{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"" behavior "\",\"invert\":false}"

static void split_behaviours(void) {
    PRETOK(SPLIT_DASH("Removed"), "a-b--c", "a", "b", "c");
    PRETOK(SPLIT_DASH("Isolated"), "a-b--c", "a", "-", "b", "-", "-", "c");
    PRETOK(SPLIT_DASH("MergedWithPrevious"), "a-b--c", "a-", "b-", "-", "c");
    PRETOK(SPLIT_DASH("MergedWithNext"), "a-b--c", "a", "-b", "-", "-c");
    PRETOK(SPLIT_DASH("Contiguous"), "a-b--c", "a", "-", "b", "--", "c");
    PRETOK("{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Removed\",\"invert\":true}",
           "hi there!", "hi", "there");
}

static void pre_tokenizers(void) {
    PRETOK("{\"type\":\"Whitespace\"}", "Hello, world!! ok", "Hello", ",", "world", "!!", "ok");
    PRETOK("{\"type\":\"WhitespaceSplit\"}", " a  b\tc ", "a", "b", "c");
    PRETOK("{\"type\":\"BertPreTokenizer\"}", "Hey, you!  ok?$", "Hey", ",", "you", "!", "ok", "?", "$");
    PRETOK("{\"type\":\"Digits\",\"individual_digits\":true}", "ab123c", "ab", "1", "2", "3", "c");
    PRETOK("{\"type\":\"Digits\",\"individual_digits\":false}", "ab123c", "ab", "123", "c");
    PRETOK("{\"type\":\"Punctuation\"}", "a.b,,c", "a", ".", "b", ",", ",", "c");
    PRETOK("{\"type\":\"Punctuation\",\"behavior\":\"Contiguous\"}", "a.b,,c", "a", ".", "b", ",,", "c");
    PRETOK("{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\",\"split\":true}", "Hey  you",
           "▁Hey", "▁", "▁you");
    PRETOK("{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"never\",\"split\":false}", "a b",
           "a▁b");
    PRETOK("{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"add_prefix_space\":true}", " a", "▁a");
    PRETOK("{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}",
           "Hi  there", "ĠHi", "Ġ", "Ġthere");
    PRETOK("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true}", "é!", "Ã©", "!");
    PRETOK("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},"
           "{\"type\":\"Digits\",\"individual_digits\":true}]}",
           "ab12 c3", "ab", "1", "2", "c", "3");
    char llama3_split[512];
    snprintf(llama3_split, sizeof llama3_split,
             "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"%s\"},"
             "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
             "\"trim_offsets\":true,\"use_regex\":false}]}",
             "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
             "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+");
    PRETOK(llama3_split, "Hello world 2024", "Hello", "Ġworld", "Ġ", "202", "4");
    PRETOK("{\"type\":\"CharDelimiterSplit\",\"delimiter\":\"|\"}", "a|b||c", "a", "b", "c");
    PRETOK("{\"type\":\"FixedLength\",\"length\":2}", "abcdé", "ab", "cd", "é");
}

/* ---- decoders ------------------------------------------------------------------------- */

static void expect_decoded(const char *json, const char *const *tokens, size_t n, const char *want) {
    cJSON *o = cJSON_Parse(json);
    struct tx_decoder *d = NULL;
    vp_status s = tx_decoder_parse(&json_ctx, o, "decoder", &d);
    cJSON_Delete(o);
    if (!CHECKF(s == VP_OK, "%s: %s", json, vp_last_error())) return;
    struct tx_pieces in = {0}, out = {0};
    struct tx_scratch sc = {0};
    for (size_t i = 0; i < n; i++) tx_pieces_add(&in, tokens[i], strlen(tokens[i]), -1, false);
    CHECK(tx_decoder_run(d, &in, &out, &sc) == VP_OK);
    struct tx_str joined = {0};
    tx_str_add(&joined, "", 0);
    for (size_t i = 0; i < out.n; i++) tx_str_add(&joined, tx_piece_text(&out, i), out.v[i].len);
    CHECKF(strcmp(joined.s, want) == 0, "%s: \"%s\", want \"%s\"", json, joined.s, want);
    tx_str_free(&joined);
    tx_pieces_free(&in);
    tx_pieces_free(&out);
    tx_scratch_free(&sc);
    tx_decoder_free(d);
}

#define DECODED(json, want, ...)                                                \
    expect_decoded(json, (const char *const[]){__VA_ARGS__},                    \
                   sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *), want)

static void decoders(void) {
    DECODED("{\"type\":\"ByteFallback\"}", "ab€c\xEF\xBF\xBD", "<0x61>", "b", "<0xE2>", "<0x82>", "<0xAC>", "c",
            "<0xFF>");
    DECODED("{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":1}", " ab", "  a ", " b");
    DECODED("{\"type\":\"BPEDecoder\",\"suffix\":\"</w>\"}", "hello world", "hel", "lo</w>", "wor", "ld</w>");
    DECODED("{\"type\":\"ByteLevel\"}", "Hello world\xEF\xBF\xBD<s>", "Hello", "Ġwor", "ld", "Ã", "<s>");
    DECODED("{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\"}", "Hey you", "▁Hey", "▁you");
    DECODED("{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"never\"}", " Hey you", "▁Hey", "▁you");
    DECODED("{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true}", "un aff, don't", "un", "aff", ",", "do",
            "n't");
    DECODED("{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":false}", "unaff , x", "un", "##aff", ",", "x");
    DECODED("{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"▁\"},"
            "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\","
            "\"content\":\" \",\"start\":1,\"stop\":0}]}",
            "Hi é", "▁Hi", "▁", "<0xC3>", "<0xA9>");
}

TH_MAIN(TH_CASE(categories_and_lowercase), TH_CASE(normalization_forms), TH_CASE(regex_tokenizer_patterns),
        TH_CASE(regex_rejects_what_it_does_not_support), TH_CASE(normalizers), TH_CASE(split_behaviours),
        TH_CASE(pre_tokenizers), TH_CASE(decoders))
