/* Tokenizers end to end on tokenizer.json files the test writes: a mini
 * GPT-2 / RoBERTa byte-level BPE, a mini BERT WordPiece, a mini Unigram and
 * a mini LLaMA-2 BPE with byte fallback. Every expected id list was worked
 * by hand from Hugging Face tokenizers' rules (the working is in the
 * comments). Also: round trips, post-processor templates and type ids,
 * truncation, unsupported features and malformed files. */
#include "harness.h"
#include "text.h"
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------ */

static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static struct tok_tokenizer *parse(const char *json) {
    struct tok_tokenizer *tok = NULL;
    vp_status s = tok_tokenizer_parse(json, NULL, "test.json", &tok);
    CHECKF(s == VP_OK, "parse: %s: %s", vp_status_name(s), vp_last_error());
    return tok;
}

/* Encodes and compares ids (and type ids / special flags when given). */
static void expect_encoding(const struct tok_tokenizer *tok, const char *text, const char *pair, bool special,
                            int max_len, const int32_t *ids, int n, const int32_t *types, const uint8_t *mask,
                            int line) {
    struct tok_encoding e = {0};
    vp_status s = tok_encode(tok, text, pair, special, max_len, &e);
    if (!th_check(s == VP_OK, __FILE__, line, "encode \"%s\": %s", text, vp_last_error())) return;
    bool same = e.len == n;
    for (int i = 0; same && i < n; i++)
        same = e.ids[i] == ids[i] && (!types || e.type_ids[i] == types[i]) && (!mask || e.special[i] == mask[i]);
    if (!same) {
        char got[1024] = "", want[1024] = "";
        for (int i = 0; i < e.len; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), " %d/%d%s", e.ids[i], e.type_ids[i],
                     e.special[i] ? "*" : "");
        for (int i = 0; i < n; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), " %d/%d%s", ids[i], types ? types[i] : -1,
                     mask && mask[i] ? "*" : "");
        th_check(false, __FILE__, line, "encode \"%s\"%s%s: got [%s ], want [%s ] (id/type, * special)", text,
                 pair ? " + " : "", pair ? pair : "", got, want);
    }
    tok_encoding_free(&e);
}

#define IDS(...) (const int32_t[]){__VA_ARGS__}, (int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t))
#define ARR(...) (const int32_t[]){__VA_ARGS__}
#define ENC(tok, text, pair, special, max_len, ids) \
    expect_encoding(tok, text, pair, special, max_len, ids, NULL, NULL, __LINE__)
#define ENC_TYPES(tok, text, pair, special, max_len, ids, types) \
    expect_encoding(tok, text, pair, special, max_len, ids, types, NULL, __LINE__)

static void expect_decode(const struct tok_tokenizer *tok, const int32_t *ids, int n, bool skip, const char *want,
                          int line) {
    char *text = NULL;
    vp_status s = tok_decode(tok, ids, n, skip, &text);
    th_check(s == VP_OK && text && strcmp(text, want) == 0, __FILE__, line, "decode: \"%s\", want \"%s\" (%s)",
             text ? text : "(null)", want, vp_last_error());
    free(text);
}
#define DEC(tok, ids, skip, want) expect_decode(tok, ids, skip, want, __LINE__)

/* decode(encode(text)) == text */
static void expect_round_trip(const struct tok_tokenizer *tok, const char *text, bool special, int line) {
    struct tok_encoding e = {0};
    char *back = NULL;
    vp_status s = tok_encode(tok, text, NULL, special, 0, &e);
    if (s == VP_OK) s = tok_decode(tok, e.ids, e.len, true, &back);
    th_check(s == VP_OK && back && strcmp(back, text) == 0, __FILE__, line, "round trip \"%s\" -> \"%s\" (%s)", text,
             back ? back : "(null)", vp_last_error());
    free(back);
    tok_encoding_free(&e);
}
#define ROUND_TRIP(tok, text) expect_round_trip(tok, text, true, __LINE__)

static void expect_failure(const char *json, vp_status want, const char *needle, int line) {
    struct tok_tokenizer *tok = NULL;
    vp_status s = tok_tokenizer_parse(json, NULL, "test.json", &tok);
    th_check(s == want && !tok, __FILE__, line, "%s: %s, want %s", json, vp_status_name(s), vp_status_name(want));
    th_check(strstr(vp_last_error(), needle) != NULL, __FILE__, line, "message \"%s\" lacks \"%s\"", vp_last_error(),
             needle);
    tok_tokenizer_free(tok);
}
#define FAILS(json, status, needle) expect_failure(json, status, needle, __LINE__)

/* ---- mini GPT-2 / RoBERTa ---------------------------------------------------------------
 * Vocabulary: the 256 byte-level characters with id = byte value, then
 *   256 ll, 257 He, 258 Hell, 259 Hello, 260 Ġw, 261 or, 262 Ġwor, 263 ld, 264 's, 265 ĠHello
 * from the merges in that order ("l l", "H e", "He ll", "Hell o", "Ġ w", "o r", "Ġw or", "l d",
 * "' s", "Ġ Hello"). The RoBERTa variant adds <s> 300, <pad> 301, </s> 302, <unk> 303,
 * <mask> 304 (lstrip) and writes merges as pairs. */

static const char *const gpt2_merged[][2] = {{"l", "l"},  {"H", "e"},  {"He", "ll"}, {"Hell", "o"}, {"Ġ", "w"},
                                             {"o", "r"},  {"Ġw", "or"}, {"l", "d"}, {"'", "s"},    {"Ġ", "Hello"}};

struct gpt2_options {
    bool roberta;        /* RoBERTa's added tokens, prefix space and post-processor */
    bool ignore_merges;  /* LLaMA-3: a word in the vocabulary skips the merges (adds 266 Ġworld),
                          * <|begin_of_text|> 300 and a Sequence[ByteLevel, Template] post-processor */
};

static char *gpt2_json(struct gpt2_options o) {
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    fputs("{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[", f);
    if (o.ignore_merges)
        fputs("{\"id\":300,\"content\":\"<|begin_of_text|>\",\"single_word\":false,\"lstrip\":false,"
              "\"rstrip\":false,\"normalized\":false,\"special\":true}",
              f);
    if (o.roberta) {
        static const char *const names[] = {"<s>", "<pad>", "</s>", "<unk>", "<mask>"};
        for (int i = 0; i < 5; i++)
            fprintf(f, "%s{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":%s,\"rstrip\":false,"
                       "\"normalized\":%s,\"special\":true}",
                    i ? "," : "", 300 + i, names[i], i == 4 ? "true" : "false", i == 4 ? "true" : "false");
    }
    fprintf(f, "],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":%s,"
               "\"trim_offsets\":true,\"use_regex\":true},",
            o.roberta ? "true" : "false");
    if (o.roberta)
        fputs("\"post_processor\":{\"type\":\"RobertaProcessing\",\"sep\":[\"</s>\",302],\"cls\":[\"<s>\",300],"
              "\"trim_offsets\":true,\"add_prefix_space\":true},",
              f);
    else if (o.ignore_merges) /* LLaMA-3: ByteLevel then a template */
        fputs("\"post_processor\":{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\","
              "\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true},{\"type\":\"TemplateProcessing\","
              "\"single\":[{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\","
              "\"type_id\":0}}],\"pair\":[{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},"
              "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\","
              "\"type_id\":1}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":{"
              "\"<|begin_of_text|>\":{\"id\":\"<|begin_of_text|>\",\"ids\":[300],\"tokens\":[\"<|begin_of_text|>\"]}}}]},",
              f);
    else
        fputs("\"post_processor\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,"
              "\"use_regex\":true},",
              f);
    fprintf(f, "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,"
               "\"use_regex\":true},\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
               "\"continuing_subword_prefix\":\"\",\"end_of_word_suffix\":\"\",\"fuse_unk\":false,"
               "\"byte_fallback\":false,\"ignore_merges\":%s,\"vocab\":{",
            o.ignore_merges ? "true" : "false");
    for (int b = 0; b < 256; b++) {
        char tok[8];
        tok[uc_encode(tx_byte_to_char((uint8_t)b), tok)] = 0;
        if (b) fputc(',', f);
        put_json_string(f, tok);
        fprintf(f, ":%d", b);
    }
    for (int i = 0; i < 10; i++) {
        char merged[32];
        snprintf(merged, sizeof merged, "%s%s", gpt2_merged[i][0], gpt2_merged[i][1]);
        fputc(',', f);
        put_json_string(f, merged);
        fprintf(f, ":%d", 256 + i);
    }
    if (o.ignore_merges) fputs(",\"Ġworld\":266", f);
    fputs("},\"merges\":[", f);
    for (int i = 0; i < 10; i++) {
        if (o.roberta) {
            fputs(i ? ",[" : "[", f);
            put_json_string(f, gpt2_merged[i][0]);
            fputc(',', f);
            put_json_string(f, gpt2_merged[i][1]);
            fputc(']', f);
        } else {
            fprintf(f, "%s\"%s %s\"", i ? "," : "", gpt2_merged[i][0], gpt2_merged[i][1]);
        }
    }
    fputs("]}}", f);
    fclose(f);
    return out;
}

static void gpt2_byte_level_bpe(void) {
    char *json = gpt2_json((struct gpt2_options){0});
    struct tok_tokenizer *tok = parse(json);
    free(json);
    if (!tok) return;
    /* Regex pieces Hello | Ġworld | 's | !!. Ġworld: Ġ w o r l d -> (Ġ,w) rank 4 -> (o,r) 5 -> (Ġw,or) 6
     * -> (l,d) 7 -> Ġwor ld, and no merge joins those two. */
    ENC(tok, "Hello world's!!", NULL, true, 0, IDS(259, 262, 263, 264, 33, 33));
    /* Equal ranks: the leftmost pair merges first. */
    ENC(tok, "lll", NULL, false, 0, IDS(256, 'l'));
    ENC(tok, "", NULL, true, 0, IDS());
    ROUND_TRIP(tok, "Hello world's!! \n\tünïcödé ✓ 😀 \x01 tabs\t\tand  spaces  ");
    ROUND_TRIP(tok, " leading space");
    CHECK(tok_token_to_id(tok, "Ġwor") == 262 && tok_token_to_id(tok, "nope") == -1);
    CHECK(tok_id_to_token(tok, 259) && strcmp(tok_id_to_token(tok, 259), "Hello") == 0);
    CHECK(tok_id_to_token(tok, 266) == NULL && tok_id_to_token(tok, -1) == NULL);
    CHECK(tok_vocab_size(tok) == 266);
    CHECK(strcmp(tok_model_type(tok), "BPE") == 0);
    tok_tokenizer_free(tok);

    /* ignore_merges: a word that is in the vocabulary is one token. */
    json = gpt2_json((struct gpt2_options){.ignore_merges = true});
    tok = parse(json);
    free(json);
    if (!tok) return;
    ENC(tok, "Hello world", NULL, false, 0, IDS(259, 266));
    ENC(tok, "Hello worlds", NULL, false, 0, IDS(259, 262, 263, 's'));
    /* Sequence[ByteLevel, TemplateProcessing]: the template's types, the added token in text. */
    ENC_TYPES(tok, "Hello world", "Hello", true, 0, IDS(300, 259, 266, 300, 259), ARR(0, 0, 0, 1, 1));
    ENC(tok, "<|begin_of_text|>Hello", NULL, true, 0, IDS(300, 300, 259));
    DEC(tok, IDS(300, 259, 266), true, "Hello world");
    DEC(tok, IDS(300, 259, 266), false, "<|begin_of_text|>Hello world");
    CHECK(tok_special_ids(tok).bos == 300);
    tok_tokenizer_free(tok);
}

static void roberta_processing(void) {
    char *json = gpt2_json((struct gpt2_options){.roberta = true});
    struct tok_tokenizer *tok = parse(json);
    free(json);
    if (!tok) return;
    /* add_prefix_space: ĠHello = Ġ + Hello (rank 9). */
    ENC_TYPES(tok, "Hello world", NULL, true, 0, IDS(300, 265, 262, 263, 302), ARR(0, 0, 0, 0, 0));
    /* <s> A </s></s> B </s>, every type id 0. */
    expect_encoding(tok, "Hello", "world", true, 0, IDS(300, 265, 302, 302, 262, 263, 302), ARR(0, 0, 0, 0, 0, 0, 0),
                    (const uint8_t[]){1, 0, 1, 1, 0, 0, 1}, __LINE__);
    ENC_TYPES(tok, "Hello", "world", false, 0, IDS(265, 262, 263), ARR(0, 0, 0));
    /* <mask> takes the space before it (lstrip); "!" gets its own prefix space. */
    ENC(tok, "Hello <mask>!", NULL, false, 0, IDS(265, 304, 32, '!'));
    DEC(tok, IDS(300, 265, 304, 32, '!', 302), false, "<s> Hello<mask> !</s>");
    DEC(tok, IDS(300, 265, 304, 32, '!', 302), true, " Hello !");
    DEC(tok, IDS(265, 280, 99999, -5), true, " Hello"); /* unknown ids are skipped */
    CHECK(tok_vocab_size(tok) == 305 && tok_id_to_token(tok, 280) == NULL);
    CHECK(tok_is_special(tok, 304) && !tok_is_special(tok, 265));
    struct tok_special_ids sp = tok_special_ids(tok);
    CHECKF(sp.cls == 300 && sp.sep == 302 && sp.pad == 301 && sp.mask == 304 && sp.bos == 300 && sp.eos == 302 &&
               sp.unk == 303,
           "cls %d sep %d pad %d mask %d bos %d eos %d unk %d", sp.cls, sp.sep, sp.pad, sp.mask, sp.bos, sp.eos,
           sp.unk);
    /* Truncation counts RoBERTa's 4 pair tokens: 7 - 4 = 3 left for 1 + 2. */
    ENC(tok, "Hello", "world", true, 7, IDS(300, 265, 302, 302, 262, 263, 302));
    ENC(tok, "Hello", "world", true, 6, IDS(300, 265, 302, 302, 262, 302));
    tok_tokenizer_free(tok);
}

/* ---- mini BERT --------------------------------------------------------------------------- */

static const char bert_vocab[] =
    "{\"[PAD]\":0,\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3,\"[MASK]\":4,\"the\":5,\"quick\":6,\"brown\":7,\"fox\":8,"
    "\"un\":9,\"##aff\":10,\"##able\":11,\"!\":12,\",\":13,\"cafe\":14,\"中\":15,\"国\":16}";

static char *bert_json(bool template) {
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    fputs("{\"version\":\"1.0\",\"added_tokens\":[", f);
    static const char *const names[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++)
        fprintf(f, "%s{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}",
                i ? "," : "", i, names[i]);
    fputs("],\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
          "\"strip_accents\":null,\"lowercase\":true},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},",
          f);
    if (template)
        fputs("\"post_processor\":{\"type\":\"TemplateProcessing\","
              "\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
              "{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}}],"
              "\"pair\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
              "{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}},"
              "{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":1}}],"
              "\"special_tokens\":{\"[CLS]\":{\"id\":\"[CLS]\",\"ids\":[2],\"tokens\":[\"[CLS]\"]},"
              "\"[SEP]\":{\"id\":\"[SEP]\",\"ids\":[3],\"tokens\":[\"[SEP]\"]}}},",
              f);
    else
        fputs("\"post_processor\":{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",3],\"cls\":[\"[CLS]\",2]},", f);
    fprintf(f, "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
               "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
               "\"max_input_chars_per_word\":10,\"vocab\":%s}}",
            bert_vocab);
    fclose(f);
    return out;
}

static void bert_wordpiece(void) {
    for (int template = 1; template >= 0; template--) {
        char *json = bert_json(template);
        struct tok_tokenizer *tok = parse(json);
        free(json);
        if (!tok) return;
        /* Normalized: "the quick, brown fox! unaffable cafe  中  国  xyz abcdefghijk" (tab -> space,
         * \x01 dropped, é -> e, CJK spaced, lowercase). unaffable = un ##aff ##able; xyz has no
         * piece and abcdefghijk is over 10 characters: [UNK]. */
        ENC(tok, "The Quick,\tbrown\x01 FOX! Unaffable Café 中国 xyz abcdefghijk", NULL, false, 0,
            IDS(5, 6, 13, 7, 8, 12, 9, 10, 11, 14, 15, 16, 1, 1));
        ENC_TYPES(tok, "The fox", NULL, true, 0, IDS(2, 5, 8, 3), ARR(0, 0, 0, 0));
        /* [CLS] A [SEP] B [SEP] with B's part type 1. */
        expect_encoding(tok, "The fox", "Quick!", true, 0, IDS(2, 5, 8, 3, 6, 12, 3), ARR(0, 0, 0, 0, 1, 1, 1),
                        (const uint8_t[]){1, 0, 0, 1, 0, 0, 1}, __LINE__);
        ENC_TYPES(tok, "The fox", "Quick!", false, 0, IDS(5, 8, 6, 12), ARR(0, 0, 1, 1));
        /* An added token inside the text, matched before normalization. */
        ENC(tok, "the [MASK] fox", NULL, false, 0, IDS(5, 4, 8));
        ENC(tok, "the [mask] fox", NULL, false, 0, IDS(5, 1, 1, 1, 8)); /* not the token: [ mask ] unknown */
        DEC(tok, IDS(2, 5, 6, 13, 7, 8, 12, 9, 10, 11, 3), true, "the quick, brown fox! unaffable");
        DEC(tok, IDS(2, 5, 6, 13, 7, 8, 12, 9, 10, 11, 3), false, "[CLS] the quick, brown fox! unaffable [SEP]");
        ROUND_TRIP(tok, "the quick brown fox");

        /* Longest first: A has 5 tokens, B 9, 12 - 3 specials = 9 left: n1 = 5, n2 = max(5, 4) = 5,
         * 10 > 9 so n1 = 9 / 2 = 4 and n2 = 5. */
        ENC_TYPES(tok, "the quick brown fox un", "the quick brown fox the quick brown fox cafe", true, 12,
                  IDS(2, 5, 6, 7, 8, 3, 5, 6, 7, 8, 5, 3), ARR(0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1));
        /* Only the longer one shrinks when the shorter fits: 2 + max(2, 7 - 2). */
        ENC(tok, "the fox", "the quick brown fox the quick brown fox cafe", true, 10,
            IDS(2, 5, 8, 3, 5, 6, 7, 8, 5, 3));
        ENC(tok, "the quick brown fox", NULL, true, 4, IDS(2, 5, 6, 3));
        ENC(tok, "the quick brown fox", NULL, false, 3, IDS(5, 6, 7));
        ENC(tok, "the quick", "brown fox", true, 3, IDS(2, 3, 3));
        struct tok_encoding e = {0};
        CHECK(tok_encode(tok, "the", "fox", true, 2, &e) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(strstr(vp_last_error(), "max_len 2") != NULL);
        CHECK(tok_encode(tok, "bad \xC3\x28 utf8", NULL, true, 0, &e) == VP_ERROR_BAD_INPUT);
        CHECK(strstr(vp_last_error(), "not valid UTF-8") != NULL);
        tok_encoding_free(&e);
        struct tok_special_ids sp = tok_special_ids(tok);
        CHECK(sp.cls == 2 && sp.sep == 3 && sp.pad == 0 && sp.unk == 1 && sp.mask == 4);
        CHECK(strcmp(tok_model_type(tok), "WordPiece") == 0);
        tok_tokenizer_free(tok);
    }
}

/* ---- mini Unigram -------------------------------------------------------------------------
 * Scores: ▁ -2, ▁a -1.5, b -2, ab -1, ▁ab -3.2, a -2.5, c -2, ▁c -2.2; min -3.2, so an
 * unknown character costs -13.2. */

static char *unigram_json(bool byte_fallback) {
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    fprintf(f,
            "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false,"
            "\"single_word\":false,\"lstrip\":false,\"rstrip\":false},{\"id\":2,\"content\":\"</s>\","
            "\"special\":true,\"normalized\":false,\"single_word\":false,\"lstrip\":false,\"rstrip\":false}],"
            "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"▁\","
            "\"prepend_scheme\":\"always\",\"split\":true},"
            "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
            "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
            "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":0}},"
            "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],\"special_tokens\":{\"</s>\":{\"id\":\"</s>\","
            "\"ids\":[2],\"tokens\":[\"</s>\"]}}},"
            "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\",\"split\":true},"
            "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"byte_fallback\":%s,\"vocab\":[[\"<unk>\",0.0],"
            "[\"<s>\",0.0],[\"</s>\",0.0],[\"▁\",-2.0],[\"▁a\",-1.5],[\"b\",-2.0],[\"ab\",-1.0],[\"▁ab\",-3.2],"
            "[\"a\",-2.5],[\"c\",-2.0],[\"▁c\",-2.2]%s]}}",
            byte_fallback ? "true" : "false", byte_fallback ? ",[\"<0x78>\",0.0]" : "");
    fclose(f);
    return out;
}

static void unigram_viterbi(void) {
    char *json = unigram_json(false);
    struct tok_tokenizer *tok = parse(json);
    free(json);
    if (!tok) return;
    /* ▁ab: ▁ab alone scores -3.2, ▁ + ab -3.0, ▁a + b -3.5: ▁ ab. ▁c: -2.2 beats ▁ + c (-4). */
    ENC(tok, "ab c", NULL, false, 0, IDS(3, 6, 10));
    ENC(tok, "ab c", NULL, true, 0, IDS(3, 6, 10, 2));
    ENC(tok, "ab", "c", true, 0, IDS(3, 6, 2, 10, 2));
    /* ▁a, then x x unknown (fused into one <unk>), then b. */
    ENC(tok, "axxb", NULL, false, 0, IDS(4, 0, 5));
    DEC(tok, IDS(3, 6, 10, 2), true, "ab c");
    DEC(tok, IDS(3, 6, 10, 2), false, "ab c</s>");
    ROUND_TRIP(tok, "ab c ab");
    CHECK(strcmp(tok_model_type(tok), "Unigram") == 0 && tok_vocab_size(tok) == 11);
    CHECK(tok_special_ids(tok).eos == 2 && tok_special_ids(tok).unk == 0);
    tok_tokenizer_free(tok);

    json = unigram_json(true);
    tok = parse(json);
    free(json);
    if (!tok) return;
    ENC(tok, "axxb", NULL, false, 0, IDS(4, 11, 11, 5)); /* the fused unknown spelled in bytes */
    ENC(tok, "ayb", NULL, false, 0, IDS(4, 0, 5));       /* no <0x79>: unknown */
    tok_tokenizer_free(tok);
}

/* ---- mini LLaMA-2 -------------------------------------------------------------------------
 * Vocabulary: <unk> 0, <s> 1, </s> 2, <0x00>..<0xFF> 3..258, ▁ 259, H e l o w r d 260..266, then
 * 267 ▁H, 268 ll, 269 ▁He, 270 ▁Hell, 271 ▁Hello, 272 ▁w, 273 or, 274 ▁wor, 275 ld, 276 ▁world. */

static const char *const llama_merges[][2] = {{"▁", "H"},  {"l", "l"},   {"▁H", "e"},  {"▁He", "ll"}, {"▁Hell", "o"},
                                              {"▁", "w"},  {"o", "r"},   {"▁w", "or"}, {"l", "d"},    {"▁wor", "ld"}};

struct llama_options {
    bool modern;         /* Metaspace (prepend first, no split) instead of Prepend + Replace */
    bool no_fallback;    /* byte_fallback off */
    bool no_fuse;        /* fuse_unk off */
};

static char *llama_json(struct llama_options o) {
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    fputs("{\"version\":\"1.0\",\"added_tokens\":[", f);
    static const char *const names[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++)
        fprintf(f, "%s{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}",
                i ? "," : "", i, names[i]);
    if (o.modern)
        fputs("],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"▁\","
              "\"prepend_scheme\":\"first\",\"split\":false},",
              f);
    else
        fputs("],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"▁\"},"
              "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"▁\"}]},\"pre_tokenizer\":null,",
              f);
    fputs("\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
          "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"SpecialToken\":{\"id\":\"<s>\","
          "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":1}},"
          "{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],"
          "\"tokens\":[\"<s>\"]}}},"
          "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"▁\"},"
          "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \","
          "\"start\":1,\"stop\":0}]},",
          f);
    fprintf(f, "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
               "\"end_of_word_suffix\":null,\"fuse_unk\":%s,\"byte_fallback\":%s,\"vocab\":{\"<unk>\":0,\"<s>\":1,"
               "\"</s>\":2",
            o.no_fuse ? "false" : "true", o.no_fallback ? "false" : "true");
    for (int b = 0; b < 256; b++) fprintf(f, ",\"<0x%02X>\":%d", b, 3 + b);
    static const char *const chars[] = {"▁", "H", "e", "l", "o", "w", "r", "d"};
    for (int i = 0; i < 8; i++) fprintf(f, ",\"%s\":%d", chars[i], 259 + i);
    for (int i = 0; i < 10; i++) fprintf(f, ",\"%s%s\":%d", llama_merges[i][0], llama_merges[i][1], 267 + i);
    fputs("},\"merges\":[", f);
    for (int i = 0; i < 10; i++) fprintf(f, "%s\"%s %s\"", i ? "," : "", llama_merges[i][0], llama_merges[i][1]);
    fputs("]}}", f);
    fclose(f);
    return out;
}

static void llama_byte_fallback_bpe(void) {
    char *json = llama_json((struct llama_options){0});
    struct tok_tokenizer *tok = parse(json);
    free(json);
    if (!tok) return;
    /* "▁Hello▁world▁é" is one word; é is not a symbol, so its bytes C3 A9 (ids 3 + byte). */
    ENC_TYPES(tok, "Hello world é", NULL, true, 0, IDS(1, 271, 276, 259, 3 + 0xC3, 3 + 0xA9), ARR(0, 0, 0, 0, 0, 0));
    ENC_TYPES(tok, "Hello", "world", true, 0, IDS(1, 271, 1, 276), ARR(0, 0, 1, 1));
    /* Each piece around an added token is normalized on its own (the "legacy" behaviour). */
    ENC(tok, "Hello<s>world", NULL, false, 0, IDS(271, 1, 276));
    ROUND_TRIP(tok, "Hello world é");
    ROUND_TRIP(tok, " leading space and  two");
    ROUND_TRIP(tok, "emoji 😀 and\ttab\nnewline ünïcödé 中文");
    ROUND_TRIP(tok, "");
    DEC(tok, IDS(1, 271, 259, 3 + 0xC3), true, "Hello \xEF\xBF\xBD"); /* a lone lead byte */
    struct tok_special_ids sp = tok_special_ids(tok);
    CHECK(sp.bos == 1 && sp.eos == 2 && sp.unk == 0 && sp.cls == -1 && sp.sep == -1);
    tok_tokenizer_free(tok);

    /* Metaspace prepend "first": only the piece at the start of the text gets ▁. */
    json = llama_json((struct llama_options){.modern = true});
    tok = parse(json);
    free(json);
    if (!tok) return;
    ENC(tok, "Hello world", NULL, false, 0, IDS(271, 276));
    ENC(tok, "Hello<s>world", NULL, false, 0, IDS(271, 1, 264, 273, 275));
    ROUND_TRIP(tok, "Hello world é");
    tok_tokenizer_free(tok);

    /* Without byte fallback unknown characters become <unk>, fused or not. */
    json = llama_json((struct llama_options){.no_fallback = true});
    tok = parse(json);
    free(json);
    if (!tok) return;
    ENC(tok, "Hello ☃☃", NULL, false, 0, IDS(271, 259, 0));
    tok_tokenizer_free(tok);
    json = llama_json((struct llama_options){.no_fallback = true, .no_fuse = true});
    tok = parse(json);
    free(json);
    if (!tok) return;
    ENC(tok, "Hello ☃☃", NULL, false, 0, IDS(271, 259, 0, 0));
    tok_tokenizer_free(tok);
}

/* A folder with tokenizer.json and tokenizer_config.json. */
static void load_from_folder(void) {
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/vkpeft-tok-%ld", (long)getpid());
    mkdir(dir, 0700);
    char *json = llama_json((struct llama_options){0});
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    free(json);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    f = fopen(path, "w");
    fputs("{\"bos_token\":\"<s>\",\"eos_token\":{\"content\":\"</s>\",\"lstrip\":false},\"pad_token\":\"<unk>\"}", f);
    fclose(f);
    struct tok_tokenizer *tok = NULL;
    vp_status s = tok_tokenizer_load(dir, &tok);
    if (CHECKF(s == VP_OK, "%s", vp_last_error())) {
        struct tok_special_ids sp = tok_special_ids(tok);
        CHECK(sp.bos == 1 && sp.eos == 2 && sp.pad == 0);
        ENC(tok, "Hello", NULL, true, 0, IDS(1, 271));
    }
    tok_tokenizer_free(tok);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK(tok_tokenizer_load(path, &tok) == VP_OK);
    tok_tokenizer_free(tok);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    CHECK(tok_tokenizer_load(dir, &tok) == VP_ERROR_IO && tok == NULL);
    CHECK(strstr(vp_last_error(), "tokenizer.json") != NULL);
    rmdir(dir);
}

/* ---- failures ------------------------------------------------------------------------------- */

#define WP_MODEL "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"vocab\":{\"[UNK]\":0,\"a\":1}}"

static void unsupported_features_are_named(void) {
    FAILS("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AAAA\"}," WP_MODEL "}",
          VP_ERROR_UNSUPPORTED, "normalizer \"Precompiled\" is not supported");
    FAILS("{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Lowercase\"},{\"type\":\"Fancy\"}]},"
          WP_MODEL "}",
          VP_ERROR_UNSUPPORTED, "normalizer \"Fancy\" is not supported (at \"normalizer.normalizers[1]\")");
    FAILS("{\"pre_tokenizer\":{\"type\":\"UnicodeScripts\"}," WP_MODEL "}", VP_ERROR_UNSUPPORTED,
          "pre-tokenizer \"UnicodeScripts\" is not supported");
    FAILS("{\"decoder\":{\"type\":\"CTC\",\"pad_token\":\"<pad>\"}," WP_MODEL "}", VP_ERROR_UNSUPPORTED,
          "decoder \"CTC\" is not supported");
    FAILS("{\"post_processor\":{\"type\":\"Magic\"}," WP_MODEL "}", VP_ERROR_UNSUPPORTED,
          "post-processor \"Magic\" is not supported");
    FAILS("{\"model\":{\"type\":\"Tiktoken\",\"vocab\":{}}}", VP_ERROR_UNSUPPORTED, "model \"Tiktoken\" is not supported");
    FAILS("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?<=a)b\"},\"behavior\":\"Isolated\","
          "\"invert\":false}," WP_MODEL "}",
          VP_ERROR_UNSUPPORTED, "lookbehind is not supported");
    FAILS("{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{\"a\":0},\"merges\":[]}}", VP_ERROR_UNSUPPORTED,
          "dropout");
}

static void malformed_files_name_the_field(void) {
    FAILS("{not json", VP_ERROR_BAD_INPUT, "test.json: not a JSON object: malformed JSON");
    FAILS("[1, 2]", VP_ERROR_BAD_INPUT, "not a JSON object");
    FAILS("{}", VP_ERROR_BAD_INPUT, "\"model\" is missing");
    FAILS("{\"model\":{\"type\":\"WordPiece\",\"vocab\":[[\"a\",0]]}}", VP_ERROR_BAD_INPUT, "\"model.vocab\" must be an object");
    FAILS("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":-1}}}", VP_ERROR_BAD_INPUT, "\"model.vocab.a\" must be a token id");
    FAILS("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1}}}", VP_ERROR_BAD_INPUT, "\"model.merges\" must be a list");
    FAILS("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}", VP_ERROR_BAD_INPUT,
          "\"model.merges\"[0]: token \"c\" is not in \"model.vocab\"");
    FAILS("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", VP_ERROR_BAD_INPUT,
          "merged token \"ab\" is not in \"model.vocab\"");
    FAILS("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b c\"]}}", VP_ERROR_BAD_INPUT,
          "\"model.merges\"[0]: must be two tokens");
    FAILS("{\"model\":{\"type\":\"Unigram\",\"unk_id\":5,\"vocab\":[[\"a\",-1.0]]}}", VP_ERROR_BAD_INPUT,
          "\"model.unk_id\" is 5");
    FAILS("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1.0],[\"b\"]]}}", VP_ERROR_BAD_INPUT,
          "\"model.vocab[1]\" must be a [piece, score] pair");
    FAILS("{\"added_tokens\":[{\"content\":\"[X]\"}]," WP_MODEL "}", VP_ERROR_BAD_INPUT, "\"added_tokens[0].id\" is missing");
    FAILS("{\"added_tokens\":[{\"id\":3,\"content\":\"[X]\",\"special\":\"yes\"}]," WP_MODEL "}", VP_ERROR_BAD_INPUT,
          "\"added_tokens[0].special\" must be true or false");
    FAILS("{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{}]}," WP_MODEL "}",
          VP_ERROR_BAD_INPUT, "\"normalizer.normalizers[1].type\" is missing");
    FAILS("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\"}," WP_MODEL
          "}",
          VP_ERROR_BAD_INPUT, "\"pre_tokenizer.pattern.Regex\": regex /(a/");
    FAILS("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"Sideways\"}," WP_MODEL
          "}",
          VP_ERROR_BAD_INPUT, "\"pre_tokenizer.behavior\" is \"Sideways\"");
    FAILS("{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"ab\"}," WP_MODEL "}", VP_ERROR_BAD_INPUT,
          "\"pre_tokenizer.replacement\" must be a single character");
    FAILS("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\","
          "\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}}," WP_MODEL "}",
          VP_ERROR_BAD_INPUT, "\"post_processor.single[0].SpecialToken.id\" names \"[CLS]\"");
    FAILS("{\"post_processor\":{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\"],\"cls\":[\"[CLS]\",1]}," WP_MODEL "}",
          VP_ERROR_BAD_INPUT, "\"post_processor.sep\" must be a [token, id] pair");
    FAILS("{\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":1}," WP_MODEL "}", VP_ERROR_BAD_INPUT,
          "\"decoder.stop\" is missing");
    struct tok_tokenizer *tok = NULL;
    CHECK(tok_tokenizer_load("/nonexistent/tokenizer.json", &tok) == VP_ERROR_IO && !tok);
    CHECK(strstr(vp_last_error(), "/nonexistent/tokenizer.json") != NULL);
}

/* Models that cannot tokenize a word without an unknown token say so. */
static void missing_unknown_token(void) {
    struct tok_tokenizer *tok = parse("{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"vocab\":{\"a\":0}}}");
    if (!tok) return;
    struct tok_encoding e = {0};
    ENC(tok, "a", NULL, false, 0, IDS(0));
    CHECK(tok_encode(tok, "b", NULL, false, 0, &e) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "unk_token") != NULL);
    tok_encoding_free(&e);
    tok_tokenizer_free(tok);
    /* A BPE model without unk_token drops what it does not know, as tokenizers does. */
    tok = parse("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}");
    if (!tok) return;
    ENC(tok, "abca", NULL, false, 0, IDS(0, 0));
    DEC(tok, IDS(0, 0), false, "a a"); /* no decoder: tokens joined by spaces */
    tok_tokenizer_free(tok);
}

/* Found by tests/fuzz/fuzz_tokenizer: a post-processor naming an id past the
 * vocabulary put it into encodings, to be read past the embedding table. */
static void post_processor_ids_must_be_in_the_vocabulary(void) {
    FAILS("{\"post_processor\":{\"type\":\"RobertaProcessing\",\"cls\":[\"<s>\",300],\"sep\":[\"[UNK]\",0]},"
          WP_MODEL "}",
          VP_ERROR_BAD_INPUT, "\"post_processor.cls\" names id 300, which is not in the vocabulary (ids 0..1)");
    FAILS("{\"post_processor\":{\"type\":\"BertProcessing\",\"cls\":[\"a\",1],\"sep\":[\"[SEP]\",2]}," WP_MODEL "}",
          VP_ERROR_BAD_INPUT, "\"post_processor.sep\" names id 2");
    FAILS("{\"post_processor\":{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\"},"
          "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
          "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
          "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1,7],\"tokens\":[\"a\",\"<s>\"]}}}]}," WP_MODEL "}",
          VP_ERROR_BAD_INPUT, "\"post_processor.processors[1].special_tokens.<s>.ids\" names id 7");
}

TH_MAIN(TH_CASE(gpt2_byte_level_bpe), TH_CASE(roberta_processing), TH_CASE(bert_wordpiece), TH_CASE(unigram_viterbi),
        TH_CASE(llama_byte_fallback_bpe), TH_CASE(load_from_folder), TH_CASE(unsupported_features_are_named),
        TH_CASE(malformed_files_name_the_field), TH_CASE(missing_unknown_token),
        TH_CASE(post_processor_ids_must_be_in_the_vocabulary))
