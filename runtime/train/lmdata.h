/* Examples and batches for causal-LM and seq2seq training, from JSONL, one
 * line at a time (a file larger than memory is never loaded whole).
 *
 *     struct lm_data_options o = {.task = LM_TASK_CAUSAL, .tokenizer = tok, .arch = &arch,
 *                                 .max_len = 512, .pack = true, .batch = 8};
 *     struct lm_data *d;
 *     if (lm_data_open("train.jsonl", &o, &d) != VP_OK) ... vp_last_error()
 *     struct lm_batch b = {0};
 *     bool done = false;
 *     while (lm_data_next(d, &b, &done) == VP_OK && !done) ... b.ids, b.mask, b.labels
 *     lm_batch_finish(&b);
 *     lm_data_close(d);
 *
 * Conventions (Hugging Face transformers / TRL):
 *
 * Causal LM. A line is {"text": ...} (loss on every token) or {"prompt": ...,
 * "completion": ...} (loss on the completion only: prompt labels are -100, as
 * TRL's completion-only loss). The field names are options; a line holding
 * the prompt field is a prompt/completion line, else a text line. Each piece
 * is encoded WITHOUT the tokenizer's template (add_special_tokens=false), the
 * prompt and the completion separately (TRL tokenizes them apart, so the
 * boundary never falls inside a token), then
 *     [bos] prompt completion [eos]    or    [bos] text [eos]
 * with BOS and EOS explicit options:
 *   add_bos  AUTO: exactly when the tokenizer's own template puts BOS first,
 *            i.e. what HF's tokenizer(text) does: GPT-2 adds nothing (its
 *            <|endoftext|> is never prepended by HF), LLaMA-2/TinyLlama's
 *            TemplateProcessing adds <s>, Qwen2 adds nothing.
 *   add_eos  AUTO: on, as TRL's SFTTrainer appends eos_token to every
 *            example (the model learns to stop). A prompt's BOS is never
 *            trained on: labels are -100 there too.
 * Labels are the ids themselves, unshifted (HF: the model shifts them), -100
 * where no loss is taken (prompt, BOS of a prompt example, padding).
 *
 * Without packing (pack=false) an example longer than max_len keeps its first
 * max_len tokens (right truncation, HF's default truncation_side; EOS may be
 * cut, as in TRL). Rows are right-padded to the longest row of the batch
 * (padding="longest") with mask 0 and labels -100; the pad id is the
 * tokenizer's pad token, else EOS (HF practice for GPT-2/LLaMA, which have
 * none; config.json's pad_token_id is not used because vkpeft reads an
 * absent one as 0).
 *
 * With packing (pack=true) examples, each ending with its EOS, are
 * concatenated into rows of exactly max_len tokens; an example that does not
 * fit continues at the start of the next row (HF run_clm's group_texts /
 * TRL's "wrapped" packing), so nothing is truncated. Labels (and so the
 * prompt's -100) travel with the tokens. Attention DOES cross example
 * boundaries inside a row (the mask is all ones; positions run 0..T-1 per
 * row), as HF's simple packing does; EOS separates examples. Unlike
 * group_texts, which drops the tail, the last partial row is kept, right-
 * padded. Only the example being split is held (a carry buffer), never the
 * file.
 *
 * Seq2seq (BART, mBART). A line is {"source": ..., "target": ...}. Encoder
 * ids = encode(source) with the template (BART: <s> source </s>), truncated
 * to max_len by tok_encode (specials kept); labels = encode(target) with the
 * template (BART: <s> target </s>), truncated to max_target_len. With
 * target_lang set (mBART-50's tgt_lang code) labels start with that id
 * instead: [lang] target </s>, the form mBART-50's tokenizer gives. The
 * decoder input is shift_tokens_right(labels, pad, decoder_start_token_id)
 * as in modeling_bart.py: [start, labels[0..T-2]], -100 read as pad. The
 * decoder start is config.json's decoder_start_token_id, else EOS (BART's
 * is </s> = 2). Padding: encoder ids with pad (mask 0), labels with -100
 * (DataCollatorForSeq2Seq), decoder inputs with pad (mask 0), to the longest
 * source (S) and target (T) of the batch; the decoder mask is 1 at t < the
 * target's length (BART itself needs none beyond causality: the -100
 * labels already keep padding out of the loss). mBART-cc25's trailing language
 * code ([... </s> lang]) comes from its tokenizer's template, if any.
 *
 * Order. shuffle_window = 0: file order. Otherwise a window of that many
 * tokenized examples is kept and each next example is drawn from it at
 * random (seeded; the same seed and epoch give the same order), the
 * streaming shuffle tf.data and HF's IterableDataset.shuffle use; packing
 * happens after the shuffle.
 *
 * Errors. A line that is not a JSON object, lacks its field, has a non-string
 * field, or whose example becomes empty (empty text or completion, or a
 * completion truncated away) is VP_ERROR_BAD_INPUT "file:line: ..." naming
 * the field. skip_bad counts such lines (lm_data_skipped) and goes on.
 * Blank lines are skipped silently. */
#ifndef VKPEFT_TRAIN_LMDATA_H
#define VKPEFT_TRAIN_LMDATA_H

#include "util.h"

#include <stdbool.h>
#include <stdint.h>

struct tok_tokenizer;
struct model_arch;

#define LM_IGNORE_INDEX (-100) /* HF's CrossEntropyLoss ignore_index */

enum lm_task { LM_TASK_CAUSAL = 0, LM_TASK_SEQ2SEQ };
enum lm_switch { LM_AUTO = 0, LM_ON, LM_OFF };

struct lm_data_options {
    enum lm_task task;
    const struct tok_tokenizer *tokenizer; /* required */
    const struct model_arch *arch;  /* NULL: ids from the tokenizer only */
    const char *text_field;         /* default "text" */
    const char *prompt_field;       /* default "prompt" */
    const char *completion_field;   /* default "completion" */
    const char *source_field;       /* default "source" */
    const char *target_field;       /* default "target" */
    enum lm_switch add_bos, add_eos; /* causal only; see above */
    int max_len;                    /* causal: T (pack: exactly); seq2seq: source length */
    int max_target_len;             /* seq2seq; 0: max_len */
    bool pack;                      /* causal only */
    int batch;                      /* rows per batch; 0: 1 */
    bool skip_bad;
    int shuffle_window;             /* 0: file order */
    uint64_t seed;
    bool target_lang;               /* seq2seq: labels start with target_lang_id */
    int32_t target_lang_id;
    size_t read_chunk;              /* bytes read at a time; 0: 64 KiB (tests make it small) */
};

/* One batch, row-major with row stride T (or S). The caller owns it: start
 * from {0}, reuse across calls, release with lm_batch_finish. */
struct lm_batch {
    int B, T, S;          /* rows; causal/decoder length; encoder length (seq2seq, else 0) */
    int32_t *ids;         /* (B,T) causal ids, or decoder input ids */
    uint8_t *mask;        /* (B,T) 1 real token, 0 padding */
    int32_t *labels;      /* (B,T) target per position (unshifted), LM_IGNORE_INDEX for no loss */
    int32_t *enc_ids;     /* (B,S) seq2seq encoder ids */
    uint8_t *enc_mask;    /* (B,S) */
    uint64_t *line;       /* (B) line of the row's first example */
    uint64_t loss_tokens; /* labels != LM_IGNORE_INDEX */
    size_t cap, enc_cap, row_cap;
};
void lm_batch_finish(struct lm_batch *b);

struct lm_data;

/* Opens the file and resolves the special ids (failing with
 * VP_ERROR_INVALID_ARGUMENT when one the options need is missing, e.g. EOS). */
vp_status lm_data_open(const char *path, const struct lm_data_options *o, struct lm_data **out);
/* Fills the next batch: o.batch rows, fewer at the end; *done (with B = 0)
 * once nothing is left. */
vp_status lm_data_next(struct lm_data *d, struct lm_batch *b, bool *done);
/* Back to the start for another epoch (a new shuffle order). */
vp_status lm_data_rewind(struct lm_data *d, uint64_t epoch);
/* Bad lines skipped (skip_bad) and examples read, since open or the last rewind. */
uint64_t lm_data_skipped(const struct lm_data *d);
uint64_t lm_data_examples(const struct lm_data *d);
/* The resolved ids (-1: none) and switches, for logs and tests. */
struct lm_data_ids {
    int32_t bos, eos, pad, decoder_start;
    bool add_bos, add_eos;
};
struct lm_data_ids lm_data_ids(const struct lm_data *d);
void lm_data_close(struct lm_data *d);

#endif
