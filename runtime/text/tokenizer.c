/* The tokenizer: loading tokenizer.json, the encode pipeline, truncation,
 * post-processing and decoding. */
#include "text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- loading ------------------------------------------------------------------------- */

void tok_tokenizer_free(struct tok_tokenizer *tok) {
    if (!tok) return;
    tx_normalizer_free(tok->normalizer);
    tx_pretok_free(tok->pretok);
    tx_model_free(tok->model);
    tx_post_free(tok->post);
    tx_decoder_free(tok->decoder);
    for (int i = 0; i < tok->n_added; i++) {
        free(tok->added[i].content);
        free(tok->added[i].match);
    }
    free(tok->added);
    tx_trie_free(&tok->raw_trie);
    tx_trie_free(&tok->norm_trie);
    tx_strmap_free(&tok->added_ids);
    free(tok->added_of_id);
    free(tok->name);
    free(tok);
}

static const cJSON *component(const cJSON *root, const char *key) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, key);
    return c && !cJSON_IsNull(c) ? c : NULL;
}

static int32_t id_of(const struct tok_tokenizer *tok, const char *token) {
    return token ? tok_token_to_id(tok, token) : -1;
}

/* tokenizer_config.json: "bos_token": "<s>" or {"content": "<s>", ...}. */
static int32_t config_token(const struct tok_tokenizer *tok, const cJSON *config, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? id_of(tok, v->valuestring) : -1;
}

/* The first of `names` that is a special added token. */
static int32_t named_special(const struct tok_tokenizer *tok, const char *const *names) {
    for (; *names; names++) {
        int32_t id = id_of(tok, *names);
        if (id >= 0 && tok_is_special(tok, id)) return id;
    }
    return -1;
}

static void find_special_ids(struct tok_tokenizer *tok, const cJSON *root, const cJSON *config) {
    struct tok_special_ids *s = &tok->special_ids;
    *s = (struct tok_special_ids){-1, -1, -1, -1, -1, -1, -1};
    if (config) {
        s->pad = config_token(tok, config, "pad_token");
        s->unk = config_token(tok, config, "unk_token");
        s->cls = config_token(tok, config, "cls_token");
        s->sep = config_token(tok, config, "sep_token");
        s->bos = config_token(tok, config, "bos_token");
        s->eos = config_token(tok, config, "eos_token");
        s->mask = config_token(tok, config, "mask_token");
    }
    int32_t cls = -1, sep = -1, first = -1, last = -1;
    if (tok->post) tx_post_special_ids(tok->post, &cls, &sep, &first, &last);
    if (s->unk < 0) s->unk = tx_model_unk_id(tok->model);
    if (s->cls < 0) s->cls = cls;
    if (s->sep < 0) s->sep = sep;
    if (s->bos < 0 && cls < 0) s->bos = first;
    if (s->eos < 0 && sep < 0) s->eos = last;
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(component(root, "padding"), "pad_id");
    if (s->pad < 0 && cJSON_IsNumber(pad) && pad->valuedouble >= 0 && pad->valuedouble < tok->vocab_size)
        s->pad = (int32_t)pad->valuedouble;
    static const char *const pads[] = {"[PAD]", "<pad>", "<|pad|>", "<|padding|>", NULL};
    static const char *const clss[] = {"[CLS]", NULL};
    static const char *const seps[] = {"[SEP]", NULL};
    static const char *const boss[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>", "[BOS]", NULL};
    static const char *const eoss[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[EOS]", NULL};
    static const char *const masks[] = {"[MASK]", "<mask>", NULL};
    static const char *const unks[] = {"[UNK]", "<unk>", NULL};
    if (s->pad < 0) s->pad = named_special(tok, pads);
    if (s->cls < 0) s->cls = named_special(tok, clss);
    if (s->sep < 0) s->sep = named_special(tok, seps);
    if (s->bos < 0) s->bos = named_special(tok, boss);
    if (s->eos < 0) s->eos = named_special(tok, eoss);
    if (s->mask < 0) s->mask = named_special(tok, masks);
    if (s->unk < 0) s->unk = named_special(tok, unks);
}

static vp_status parse_root(const struct tx_json *j, const cJSON *root, struct tok_tokenizer *tok) {
    vp_status s = tx_model_parse(j, cJSON_GetObjectItemCaseSensitive(root, "model"), &tok->model);
    const cJSON *c;
    if (s == VP_OK && (c = component(root, "normalizer"))) s = tx_normalizer_parse(j, c, "normalizer", &tok->normalizer);
    if (s == VP_OK && (c = component(root, "pre_tokenizer"))) s = tx_pretok_parse(j, c, "pre_tokenizer", &tok->pretok);
    if (s == VP_OK && (c = component(root, "post_processor"))) s = tx_post_parse(j, c, "post_processor", &tok->post);
    if (s == VP_OK && (c = component(root, "decoder"))) s = tx_decoder_parse(j, c, "decoder", &tok->decoder);
    if (s == VP_OK) s = tx_added_parse(j, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), tok);
    if (s == VP_OK && tok->post) s = tx_post_check_ids(j, tok->post, "post_processor", tok->vocab_size);
    return s;
}

vp_status tok_tokenizer_parse(const char *json, const char *config_json, const char *name,
                              struct tok_tokenizer **out) {
    *out = NULL;
    struct tx_json j = {.file = name};
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        size_t line = 1;
        for (const char *p = json; at && p < at && *p; p++) line += *p == '\n';
        cJSON_Delete(root);
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: not a JSON object%s (error near line %zu); is this a tokenizer.json?",
                       name, root ? "" : ": malformed JSON", line);
    }
    cJSON *config = config_json ? cJSON_Parse(config_json) : NULL;
    struct tok_tokenizer *tok = calloc(1, sizeof *tok);
    vp_status s = tok && (tok->name = strdup(name)) ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory");
    if (s == VP_OK) s = parse_root(&j, root, tok);
    if (s == VP_OK) find_special_ids(tok, root, cJSON_IsObject(config) ? config : NULL);
    cJSON_Delete(config);
    cJSON_Delete(root);
    if (s != VP_OK) {
        tok_tokenizer_free(tok);
        return s;
    }
    *out = tok;
    return VP_OK;
}

vp_status tok_tokenizer_load(const char *path, struct tok_tokenizer **out) {
    *out = NULL;
    char file[4096], config_path[4096];
    struct stat st;
    bool dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    snprintf(file, sizeof file, dir ? "%s/tokenizer.json" : "%s", path);
    void *json = NULL, *config = NULL;
    size_t size;
    vp_status s = vp_file_read(file, &json, &size);
    if (s != VP_OK) return s;
    if (strlen(json) != size) {
        free(json);
        return vp_fail(VP_ERROR_BAD_INPUT, "%s: holds a NUL byte; is this a tokenizer.json?", file);
    }
    const char *slash = strrchr(file, '/');
    int dir_len = slash ? (int)(slash - file) : 1;
    snprintf(config_path, sizeof config_path, "%.*s/tokenizer_config.json", dir_len, slash ? file : ".");
    if (vp_file_read(config_path, &config, &size) != VP_OK) {
        config = NULL; /* optional */
        vp_clear_error();
    }
    s = tok_tokenizer_parse(json, config, file, out);
    free(json);
    free(config);
    return s;
}

/* ---- queries ---------------------------------------------------------------------------- */

int32_t tok_token_to_id(const struct tok_tokenizer *tok, const char *token) {
    size_t len = strlen(token);
    int32_t id = tx_strmap_get(&tok->added_ids, token, len);
    return id >= 0 ? id : tx_model_token_to_id(tok->model, token, len);
}

const char *tok_id_to_token(const struct tok_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= tok->vocab_size) return NULL;
    if (tok->added_of_id[id] >= 0) return tok->added[tok->added_of_id[id]].content;
    return tx_model_id_to_token(tok->model, id);
}

int32_t tok_vocab_size(const struct tok_tokenizer *tok) { return tok->vocab_size; }

bool tok_is_special(const struct tok_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->vocab_size && tok->added_of_id[id] >= 0 && tok->added[tok->added_of_id[id]].special;
}

const char *tok_model_type(const struct tok_tokenizer *tok) { return tx_model_type(tok->model); }

struct tok_special_ids tok_special_ids(const struct tok_tokenizer *tok) { return tok->special_ids; }

/* ---- encoding ------------------------------------------------------------------------------ */

static vp_status oom(void) { return vp_fail(VP_ERROR_HOST_MEMORY, "out of host memory tokenizing"); }

/* One text: added tokens, normalizer, normalized added tokens,
 * pre-tokenizer, model. */
static vp_status encode_one(const struct tok_tokenizer *tok, const char *text, struct tx_ids *ids,
                            struct tx_scratch *sc) {
    struct tx_pieces raw = {0}, norm = {0}, words = {0};
    struct tx_str n = {0};
    vp_status s = VP_OK;
    if (!tx_added_split(tok, &tok->raw_trie, text, strlen(text), true, &raw)) s = oom();
    for (size_t i = 0; s == VP_OK && i < raw.n; i++) {
        const struct tx_piece *p = &raw.v[i];
        const char *t = tx_piece_text(&raw, i);
        if (p->added_id >= 0) {
            if (!tx_pieces_add(&norm, t, p->len, p->added_id, p->at_start)) s = oom();
            continue;
        }
        size_t len = p->len;
        if (tok->normalizer) {
            if ((s = tx_normalizer_run(tok->normalizer, t, p->len, &n, sc)) != VP_OK) break;
            t = n.s ? n.s : "";
            len = n.len;
        }
        if (!tx_added_split(tok, &tok->norm_trie, t, len, p->at_start, &norm)) s = oom();
    }
    const struct tx_pieces *final = &norm;
    if (s == VP_OK && tok->pretok) {
        s = tx_pretok_run(tok->pretok, &norm, &words, sc);
        final = &words;
    }
    for (size_t i = 0; s == VP_OK && i < final->n; i++) {
        const struct tx_piece *p = &final->v[i];
        if (p->added_id >= 0) s = tx_ids_add(ids, p->added_id) ? VP_OK : oom();
        else s = tx_model_tokenize(tok->model, tx_piece_text(final, i), p->len, ids);
    }
    tx_pieces_free(&raw);
    tx_pieces_free(&norm);
    tx_pieces_free(&words);
    tx_str_free(&n);
    return s;
}

/* tokenizers' truncate_encodings, LongestFirst, right side. */
static void truncate_pair(size_t *a, size_t *b, bool pair, size_t max) {
    if (!pair) {
        if (*a > max) *a = max;
        return;
    }
    if (*a + *b <= max) return;
    size_t n1 = *a, n2 = *b;
    bool swap = n1 > n2;
    if (swap) n1 = *b, n2 = *a;
    n2 = n1 > max ? n1 : (n1 > max - n1 ? n1 : max - n1);
    if (n1 + n2 > max) {
        n1 = max / 2;
        n2 = n1 + max % 2;
    }
    if (swap) {
        size_t t = n1;
        n1 = n2;
        n2 = t;
    }
    if (*a > n1) *a = n1;
    if (*b > n2) *b = n2;
}

static bool encoding_reserve(struct tok_encoding *e, int n) {
    if (n <= e->cap) return true;
    int32_t *ids = realloc(e->ids, (size_t)n * sizeof *ids);
    if (ids) e->ids = ids;
    int32_t *types = realloc(e->type_ids, (size_t)n * sizeof *types);
    if (types) e->type_ids = types;
    uint8_t *sp = realloc(e->special, (size_t)n);
    if (sp) e->special = sp;
    if (!ids || !types || !sp) return false;
    e->cap = n;
    return true;
}

void tok_encoding_free(struct tok_encoding *e) {
    free(e->ids);
    free(e->type_ids);
    free(e->special);
    *e = (struct tok_encoding){0};
}

static vp_status assemble(const struct tok_tokenizer *tok, const struct tx_ids *a, const struct tx_ids *b,
                          bool add_special, int max_len, struct tok_encoding *out) {
    bool pair = b != NULL;
    size_t na = a->n, nb = pair ? b->n : 0;
    if (max_len > 0) {
        int added = add_special && tok->post ? tx_post_added(tok->post, pair) : 0;
        if (max_len < added)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                           "max_len %d leaves no room: the post-processor adds %d special tokens", max_len, added);
        truncate_pair(&na, &nb, pair, (size_t)(max_len - added));
    }
    struct tx_encodings *e = calloc(1, sizeof *e);
    if (!e) return oom();
    e->n = pair ? 2 : 1;
    e->v[0] = (struct tx_encoding){.runs = {{a->v, (int)na, 0, false}}, .n = 1};
    if (pair) e->v[1] = (struct tx_encoding){.runs = {{b->v, (int)nb, 1, false}}, .n = 1};
    vp_status s = tok->post ? tx_post_run(tok->post, e, add_special) : VP_OK;
    size_t total = 0;
    for (int i = 0; s == VP_OK && i < e->n; i++)
        for (int r = 0; r < e->v[i].n; r++) total += (size_t)e->v[i].runs[r].n;
    if (s == VP_OK && (total > INT32_MAX || !encoding_reserve(out, (int)total))) s = oom();
    out->len = 0;
    for (int i = 0; s == VP_OK && i < e->n; i++)
        for (int r = 0; r < e->v[i].n; r++) {
            const struct tx_run *run = &e->v[i].runs[r];
            for (int k = 0; k < run->n; k++) {
                out->ids[out->len] = run->ids[k];
                out->type_ids[out->len] = run->type_id;
                out->special[out->len++] = run->special;
            }
        }
    free(e);
    return s;
}

static vp_status check_utf8(const char *text, const char *which) {
    size_t len = strlen(text), ok = uc_utf8_valid(text, len);
    if (ok == len) return VP_OK;
    return vp_fail(VP_ERROR_BAD_INPUT, "%s is not valid UTF-8 (bad byte 0x%02X at offset %zu)", which,
                   (unsigned char)text[ok], ok);
}

vp_status tok_encode(const struct tok_tokenizer *tok, const char *text, const char *text_pair,
                     bool add_special_tokens, int max_len, struct tok_encoding *out) {
    vp_status s = check_utf8(text, "the text");
    if (s == VP_OK && text_pair) s = check_utf8(text_pair, "the pair text");
    if (s != VP_OK) return s;
    struct tx_scratch sc = {0};
    struct tx_ids a = {0}, b = {0};
    s = encode_one(tok, text, &a, &sc);
    if (s == VP_OK && text_pair) s = encode_one(tok, text_pair, &b, &sc);
    if (s == VP_OK) s = assemble(tok, &a, text_pair ? &b : NULL, add_special_tokens, max_len, out);
    free(a.v);
    free(b.v);
    tx_scratch_free(&sc);
    return s;
}

/* ---- decoding ------------------------------------------------------------------------------ */

vp_status tok_decode(const struct tok_tokenizer *tok, const int32_t *ids, int n, bool skip_special_tokens,
                     char **text) {
    *text = NULL;
    struct tx_pieces tokens = {0}, decoded = {0};
    struct tx_scratch sc = {0};
    struct tx_str out = {0};
    vp_status s = VP_OK;
    for (int i = 0; i < n && s == VP_OK; i++) {
        const char *t = tok_id_to_token(tok, ids[i]);
        if (!t || (skip_special_tokens && tok_is_special(tok, ids[i]))) continue;
        if (!tx_pieces_add(&tokens, t, strlen(t), -1, false)) s = oom();
    }
    const struct tx_pieces *final = &tokens;
    if (s == VP_OK && tok->decoder) {
        s = tx_decoder_run(tok->decoder, &tokens, &decoded, &sc);
        final = &decoded;
    }
    for (size_t i = 0; s == VP_OK && i < final->n; i++) {
        bool sep = !tok->decoder && i > 0; /* no decoder: tokens joined by spaces */
        if ((sep && !tx_str_add(&out, " ", 1)) || !tx_str_add(&out, tx_piece_text(final, i), final->v[i].len)) s = oom();
    }
    if (s == VP_OK && !out.s && !(out.s = calloc(1, 1))) s = oom();
    tx_pieces_free(&tokens);
    tx_pieces_free(&decoded);
    tx_scratch_free(&sc);
    if (s != VP_OK) {
        tx_str_free(&out);
        return s;
    }
    *text = out.s;
    return VP_OK;
}
