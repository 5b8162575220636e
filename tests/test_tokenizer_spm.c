/* Tokenizers against Debian's sentencepiece (tools/install-deps.sh installs
 * it): spm_train trains a small Unigram model and a small BPE model with
 * byte fallback on text this test writes; the test reads each .model
 * (protobuf: pieces, scores, types), writes the equivalent tokenizer.json
 * the way Hugging Face's converter does (Metaspace, the same special
 * tokens; identity normalization, so no Precompiled charsmap), and checks
 * that our ids equal spm_encode's on sentences with unknown characters,
 * repeated and edge spaces, accents and emoji, and that our decoding equals
 * spm_decode's. */
#include "harness.h"
#include "tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static const char *const words[] = {
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "of", "to", "in", "is", "that",
    "was", "for", "on", "are", "with", "they", "be", "this", "from", "have", "not", "but", "what", "all",
    "were", "when", "there", "can", "been", "more", "will", "would", "people", "year", "world", "school",
    "family", "student", "country", "problem", "government", "number", "night", "water", "money", "story",
    "month", "right", "study", "business", "question", "company", "system", "program", "house", "service",
    "friend", "father", "mother", "power", "hour", "game", "community", "president", "minute", "information",
    "teacher", "education", "morning", "research", "café", "naïve", "über", "déjà", "vu", "2024", "42",
};

static const char *const sentences[] = {
    "the quick brown fox",
    "The government's research program, in 2024, was quick!",
    "   leading and trailing spaces   ",
    "many    inner     spaces  here",
    "naïve café über déjà vu",
    "unknown letters: ж щ ☃☃ and 😀 emoji",
    "tabs\tare\tunknown here",
    "xylophone zebra quizzical jukebox",
    "president of the community, mother and father",
    "",
    "a",
    "!!!",
};
enum { N_SENTENCES = sizeof sentences / sizeof sentences[0] };

static bool run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool run(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0) th_diag("command failed (%d): %s", rc, cmd);
    return rc == 0;
}

static char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096) break;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *size = n;
    return buf;
}

/* ---- the .model file: ModelProto { repeated SentencePiece pieces = 1; ... },
 * SentencePiece { string piece = 1; float score = 2; Type type = 3 (NORMAL = 1,
 * UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6) } */

struct piece {
    char *text;
    float score;
    int type;
};

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return true;
    }
    return false;
}

static bool skip_field(const uint8_t **p, const uint8_t *end, int wire) {
    uint64_t v;
    switch (wire) {
    case 0: return varint(p, end, &v);
    case 1: *p += 8; return *p <= end;
    case 2: if (!varint(p, end, &v) || v > (uint64_t)(end - *p)) return false; *p += v; return true;
    case 5: *p += 4; return *p <= end;
    }
    return false;
}

static bool parse_piece(const uint8_t *p, const uint8_t *end, struct piece *out) {
    *out = (struct piece){.type = 1};
    while (p < end) {
        uint64_t key, len;
        if (!varint(&p, end, &key)) return false;
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field == 1 && wire == 2) {
            if (!varint(&p, end, &len) || len > (uint64_t)(end - p)) return false;
            free(out->text);
            out->text = strndup((const char *)p, len);
            p += len;
        } else if (field == 2 && wire == 5 && end - p >= 4) {
            memcpy(&out->score, p, 4); /* little-endian, as protobuf */
            p += 4;
        } else if (field == 3 && wire == 0) {
            uint64_t t;
            if (!varint(&p, end, &t)) return false;
            out->type = (int)t;
        } else if (!skip_field(&p, end, wire)) {
            return false;
        }
    }
    return out->text != NULL;
}

static int read_model(const char *path, struct piece **pieces) {
    size_t size;
    uint8_t *data = (uint8_t *)read_all(path, &size);
    if (!data) return -1;
    const uint8_t *p = data, *end = data + size;
    int n = 0, cap = 0;
    *pieces = NULL;
    while (p < end) {
        uint64_t key, len;
        if (!varint(&p, end, &key)) break;
        if ((key >> 3) == 1 && (key & 7) == 2) {
            if (!varint(&p, end, &len) || len > (uint64_t)(end - p)) break;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                *pieces = realloc(*pieces, (size_t)cap * sizeof **pieces);
            }
            if (!parse_piece(p, p + len, &(*pieces)[n])) break;
            n++;
            p += len;
        } else if (!skip_field(&p, end, (int)(key & 7))) {
            break;
        }
    }
    bool ok = p == end;
    free(data);
    return ok ? n : -1;
}

static void free_pieces(struct piece *pieces, int n) {
    for (int i = 0; i < n; i++) free(pieces[i].text);
    free(pieces);
}

/* ---- tokenizer.json ------------------------------------------------------------------------ */

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

static int find_piece(const struct piece *pieces, int n, const char *s, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(pieces[i].text) == len && memcmp(pieces[i].text, s, len) == 0) return i;
    return -1;
}

/* Hugging Face's SentencePieceExtractor: every split of a piece into two
 * pieces is a merge, ranked by the piece's score, then by the parts' ids. */
static void put_merges(FILE *f, const struct piece *pieces, int n) {
    bool first = true;
    for (int i = 0; i < n; i++) { /* BPE pieces come in score order */
        if (pieces[i].type != 1) continue;
        size_t len = strlen(pieces[i].text);
        int best[64][2], nb = 0;
        for (size_t k = 1; k < len && nb < 64; k++) {
            if (((unsigned char)pieces[i].text[k] & 0xC0) == 0x80) continue;
            int l = find_piece(pieces, n, pieces[i].text, k), r = find_piece(pieces, n, pieces[i].text + k, len - k);
            if (l >= 0 && r >= 0) best[nb][0] = l, best[nb][1] = r, nb++;
        }
        for (int a = 0; a < nb; a++) /* sort by (left id, right id) */
            for (int b = a + 1; b < nb; b++)
                if (best[b][0] < best[a][0] || (best[b][0] == best[a][0] && best[b][1] < best[a][1])) {
                    int t0 = best[a][0], t1 = best[a][1];
                    best[a][0] = best[b][0], best[a][1] = best[b][1];
                    best[b][0] = t0, best[b][1] = t1;
                }
        for (int a = 0; a < nb; a++) {
            fputs(first ? "[" : ",[", f);
            first = false;
            put_json_string(f, pieces[best[a][0]].text);
            fputc(',', f);
            put_json_string(f, pieces[best[a][1]].text);
            fputc(']', f);
        }
    }
}

static char *tokenizer_json(const struct piece *pieces, int n, bool bpe) {
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    int unk = 0;
    fputs("{\"version\":\"1.0\",\"added_tokens\":[", f);
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (pieces[i].type != 2 && pieces[i].type != 3) continue;
        if (pieces[i].type == 2) unk = i;
        fprintf(f, "%s{\"id\":%d,\"content\":", first ? "" : ",", i);
        put_json_string(f, pieces[i].text);
        fputs(",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}", f);
        first = false;
    }
    /* spm's identity rule still removes leading, trailing and repeated spaces. */
    fputs("],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Replace\",\"pattern\":"
          "{\"Regex\":\"\\\\A +| +\\\\z\"},\"content\":\"\"},{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},"
          "\"content\":\" \"}]},",
          f);
    fprintf(f, "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\","
               "\"split\":%s},\"post_processor\":null,",
            bpe ? "false" : "true");
    if (bpe)
        fputs("\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"▁\"},"
              "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\","
              "\"content\":\" \",\"start\":1,\"stop\":0}]},",
              f);
    else
        fputs("\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\",\"split\":true},", f);
    if (bpe) {
        fprintf(f, "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":");
        put_json_string(f, pieces[unk].text);
        fputs(",\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":true,"
              "\"byte_fallback\":true,\"vocab\":{",
              f);
        for (int i = 0; i < n; i++) {
            if (i) fputc(',', f);
            put_json_string(f, pieces[i].text);
            fprintf(f, ":%d", i);
        }
        fputs("},\"merges\":[", f);
        put_merges(f, pieces, n);
        fputs("]}}", f);
    } else {
        fprintf(f, "\"model\":{\"type\":\"Unigram\",\"unk_id\":%d,\"byte_fallback\":false,\"vocab\":[", unk);
        for (int i = 0; i < n; i++) {
            fputs(i ? ",[" : "[", f);
            put_json_string(f, pieces[i].text);
            fprintf(f, ",%.9g]", (double)pieces[i].score);
        }
        fputs("]}}", f);
    }
    fclose(f);
    return out;
}

/* ---- the comparison ------------------------------------------------------------------------ */

static bool write_inputs(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return false;
    uint64_t rng = 12345;
    size_t nw = sizeof words / sizeof words[0];
    for (int line = 0; line < 1500; line++) {
        int n = 3 + (int)(th_rand_u64(&rng) % 12);
        for (int k = 0; k < n; k++) fprintf(f, "%s%s", k ? " " : "", words[th_rand_u64(&rng) % nw]);
        fputs(line % 3 ? ".\n" : "!\n", f);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/sentences.txt", dir);
    if (!(f = fopen(path, "w"))) return false;
    for (int i = 0; i < N_SENTENCES; i++) fprintf(f, "%s\n", sentences[i]);
    fclose(f);
    return true;
}

/* Encodes every sentence with spm_encode and with the tokenizer; compares ids,
 * then compares our decoding of them with spm_decode's when `decode` is set. */
static void compare(const char *name, bool bpe) {
    char path[128];
    struct piece *pieces = NULL;
    snprintf(path, sizeof path, "%s/%s.model", dir, name);
    int n = read_model(path, &pieces);
    if (!CHECKF(n > 0, "cannot read the pieces of %s", path)) return;
    char *json = tokenizer_json(pieces, n, bpe);
    free_pieces(pieces, n);
    struct tok_tokenizer *tok = NULL;
    vp_status s = tok_tokenizer_parse(json, NULL, name, &tok);
    free(json);
    if (!CHECKF(s == VP_OK, "%s", vp_last_error())) return;
    if (!run("spm_encode --model=%s/%s.model --output_format=id < %s/sentences.txt > %s/%s.ids", dir, name, dir, dir,
             name) ||
        !run("spm_decode --model=%s/%s.model --input_format=id < %s/%s.ids > %s/%s.decoded", dir, name, dir, name, dir,
             name)) {
        FAIL("sentencepiece failed");
        tok_tokenizer_free(tok);
        return;
    }
    size_t size, dsize;
    snprintf(path, sizeof path, "%s/%s.ids", dir, name);
    char *ids = read_all(path, &size), *line = ids;
    snprintf(path, sizeof path, "%s/%s.decoded", dir, name);
    char *decoded = read_all(path, &dsize), *dline = decoded;
    int matched = 0;
    for (int i = 0; i < N_SENTENCES && line && dline; i++) {
        char *eol = strchr(line, '\n'), *deol = strchr(dline, '\n');
        if (eol) *eol = 0;
        if (deol) *deol = 0;
        struct tok_encoding e = {0};
        s = tok_encode(tok, sentences[i], NULL, false, 0, &e);
        char ours[4096] = "";
        for (int k = 0; k < e.len; k++) snprintf(ours + strlen(ours), sizeof ours - strlen(ours), "%s%d", k ? " " : "", e.ids[k]);
        bool same = s == VP_OK && strcmp(ours, line) == 0;
        CHECKF(same, "%s: \"%s\"\n  ours: %s\n  spm:  %s", name, sentences[i], ours, line);
        matched += same;
        if (bpe) { /* byte fallback makes decoding lossless; spm_decode is the reference */
            char *text = NULL;
            s = tok_decode(tok, e.ids, e.len, true, &text);
            CHECKF(s == VP_OK && text && strcmp(text, dline) == 0, "%s: decode \"%s\", spm_decode \"%s\"", name,
                   text ? text : "(null)", dline);
            free(text);
        }
        tok_encoding_free(&e);
        line = eol ? eol + 1 : NULL;
        dline = deol ? deol + 1 : NULL;
    }
    th_diag("%s: %d of %d sentences give spm_encode's ids (%d pieces)", name, matched, N_SENTENCES, n);
    free(ids);
    free(decoded);
    tok_tokenizer_free(tok);
}

static bool setup(void) {
    if (dir[0]) return true;
    if (!run("command -v spm_train >/dev/null && command -v spm_encode >/dev/null")) {
        FAIL("sentencepiece's spm_train/spm_encode are missing: run tools/install-deps.sh "
             "(Debian package sentencepiece)");
        return false;
    }
    snprintf(dir, sizeof dir, "/tmp/vkpeft-spm-XXXXXX");
    if (!mkdtemp(dir) || !write_inputs()) {
        FAIL("cannot write the corpus under /tmp");
        dir[0] = 0;
        return false;
    }
    return true;
}

static void unigram_matches_spm_encode(void) {
    if (!setup()) return;
    if (!run("spm_train --input=%s/corpus.txt --model_prefix=%s/uni --vocab_size=120 --model_type=unigram "
             "--normalization_rule_name=identity --character_coverage=1.0 --minloglevel=2 > %s/uni.log 2>&1",
             dir, dir, dir)) {
        FAIL("spm_train failed; see %s/uni.log", dir);
        return;
    }
    compare("uni", false);
}

static void bpe_byte_fallback_matches_spm_encode(void) {
    if (!setup()) return;
    if (!run("spm_train --input=%s/corpus.txt --model_prefix=%s/bpe --vocab_size=400 --model_type=bpe "
             "--byte_fallback=true --normalization_rule_name=identity --character_coverage=1.0 --minloglevel=2 "
             "> %s/bpe.log 2>&1",
             dir, dir, dir)) {
        FAIL("spm_train failed; see %s/bpe.log", dir);
        return;
    }
    compare("bpe", true);
}

static void cleanup(void) {
    if (dir[0]) CHECK(run("rm -rf %s", dir));
}

TH_MAIN(TH_CASE(unigram_matches_spm_encode), TH_CASE(bpe_byte_fallback_matches_spm_encode), TH_CASE(cleanup))
