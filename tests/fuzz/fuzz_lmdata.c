/* Causal-LM and seq2seq JSONL through lm_data: every batch's shapes, ids
 * and labels checked against the options. The first input byte picks the
 * task and options; the rest is the file. */
#include "fuzz.h"

#include "lmdata.h"
#include "tokenizer.h"

#include <stdlib.h>

#define MAX_BATCHES 512

static void check_batch(const struct lm_batch *b, const struct lm_data_options *o, int32_t vocab) {
    int max_t = o->task == LM_TASK_SEQ2SEQ ? (o->max_target_len ? o->max_target_len : o->max_len) : o->max_len;
    if (b->B < 1 || b->B > (o->batch ? o->batch : 1) || b->T < 1 || (max_t > 0 && b->T > max_t)) abort();
    if (o->task == LM_TASK_SEQ2SEQ && (b->S < 1 || (o->max_len > 0 && b->S > o->max_len))) abort();
    for (int i = 0; i < b->B * b->T; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= vocab || b->mask[i] > 1) abort();
        if (b->labels[i] != LM_IGNORE_INDEX && (b->labels[i] < 0 || b->labels[i] >= vocab)) abort();
    }
    for (int i = 0; i < b->B * b->S; i++)
        if (b->enc_ids[i] < 0 || b->enc_ids[i] >= vocab || b->enc_mask[i] > 1) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t flags = data[0];
    const char *path = fuzz_write_file("fuzz.jsonl", data + 1, size - 1);
    const struct tok_tokenizer *tok = fuzz_tokenizer();
    struct lm_data_options o = {
        .task = flags & 1 ? LM_TASK_SEQ2SEQ : LM_TASK_CAUSAL,
        .tokenizer = tok,
        .add_bos = (enum lm_switch)((flags >> 1) % 3),
        .add_eos = (enum lm_switch)((flags >> 3) % 3),
        .max_len = 2 + (flags >> 5) * 3,  /* 2..23 */
        .max_target_len = flags & 2 ? 3 : 0,
        .pack = flags & 4,
        .batch = 1 + (int)(size % 4),
        .skip_bad = flags & 16,
        .shuffle_window = flags & 64 ? 3 : 0,
        .seed = flags,
        .target_lang = (flags & 129) == 129,
        .target_lang_id = 5,
        .read_chunk = 1 + (size % 61), /* small chunks: lines cross reads */
    };
    struct lm_data *d = NULL;
    if (lm_data_open(path, &o, &d) != VP_OK) return fuzz_rejected();
    int32_t vocab = tok_vocab_size(tok);
    struct lm_batch b = {0};
    for (uint64_t epoch = 0; epoch < 2; epoch++) {
        bool done = false;
        for (int n = 0; n < MAX_BATCHES; n++) {
            if (lm_data_next(d, &b, &done) != VP_OK || done) break;
            check_batch(&b, &o, vocab);
        }
        if (lm_data_rewind(d, epoch + 1) != VP_OK) break;
    }
    lm_batch_finish(&b);
    lm_data_close(d);
    return 0;
}
