/* Causal-LM fine-tuning of a decoder-only model (GPT-2, LLaMA / Mistral /
 * Qwen2), and seq2seq fine-tuning of an encoder-decoder (BART, mBART: the
 * model of model/seq2seq_lm.h on lmdata's source/target lines with teacher
 * forcing, sources and targets padded to one length): the decoder
 * (model/decoder_lm.h) driven by the trainer's
 * recorded step (trainer.h: optimiser, schedule, clipping, accumulation in
 * one submission per micro-batch) on batches from lmdata.h, with the
 * evaluation a language model gets: mean cross-entropy per scored token,
 * perplexity exp(loss), and teacher-forced next-token accuracy.
 *
 *     struct lm_trainer *t;
 *     lm_trainer_open(ctx, "models/tiny-llama", &spec, &o, &t);   // host only
 *     struct lm_data_options d = {.tokenizer = tok, .arch = lm_trainer_arch(t), .pack = true};
 *     struct lm_fit_config fc = {.train = "train.jsonl", .eval = "dev.jsonl", .data = d,
 *                                .log_path = "out/train.jsonl"};
 *     lm_trainer_scan(t, &fc, &scan);        // one pass: validates every line, counts batches
 *     lm_trainer_load(t, scan.longest);      // device memory
 *     lm_trainer_fit(t, &fc, &scan, &sum);
 *     lm_trainer_destroy(t);
 *
 * Batches: lmdata's rows (right-padded to the batch's longest row, or
 * exactly max_len when packing) are padded again to train_batch_length's
 * multiple and to o.batch rows (filler rows are all padding, scoring
 * nothing), so few shapes are recorded. The label of a position is the id
 * there where lmdata's label is not -100, and the decoder scores the
 * logits of position t against the label of t+1 (HF's shift). */
#ifndef VKPEFT_TRAIN_LMTRAINER_H
#define VKPEFT_TRAIN_LMTRAINER_H

#include "decoder_lm.h"
#include "lmdata.h"
#include "seq2seq_lm.h"
#include "trainer.h"

struct lm_trainer;

/* Opens the decoder with spec (no device memory). max_len: o->max_len, else
 * the model's positions after the prefix rows; a longer --max-len fails. */
vp_status lm_trainer_open(vp_context *ctx, const char *model_dir, const struct delta_spec *spec,
                          const struct trainer_options *o, struct lm_trainer **out);
void lm_trainer_destroy(struct lm_trainer *t);
struct decoder *lm_trainer_decoder(struct lm_trainer *t);   /* NULL for a seq2seq model */
struct seq2seq *lm_trainer_seq2seq(struct lm_trainer *t);  /* NULL for a decoder-only model */
struct delta_params *lm_trainer_params(struct lm_trainer *t);
struct trainer *lm_trainer_trainer(struct lm_trainer *t);
int lm_trainer_max_len(const struct lm_trainer *t);

struct lm_fit_config {
    const char *train, *eval;       /* JSONL paths (eval may be NULL) */
    struct lm_data_options data;    /* task, tokenizer, fields, pack, skip_bad; batch, max_len,
                                       seed and shuffle are set from the trainer's options */
    const char *log_path;           /* NULL: no log */
    void (*on_event)(const struct trainer_event *ev, void *user);
    bool (*should_stop)(void *user);
    void *user;
    /* Checkpoints, resume and non-finite steps, as trainer_fit_config has
     * them (the position's `pos` counts the epoch's batches). */
    const char *checkpoint_path;
    uint64_t checkpoint_every;
    const char *checkpoint_settings;
    const struct trainer_position *resume;
    enum trainer_nonfinite on_nonfinite;
};

/* What one pass over a file found. */
struct lm_scan {
    uint64_t examples, batches, tokens, loss_tokens, skipped;
    int longest;                    /* the longest row */
};
/* Reads every line of `path` once (validation and counts). */
vp_status lm_trainer_scan(const struct lm_trainer *t, const struct lm_fit_config *c, const char *path,
                          struct lm_scan *out);
/* Loads the decoder for batches of `longest` tokens and the optimiser. */
vp_status lm_trainer_load(struct lm_trainer *t, int longest);
/* Encoder-decoders, before lm_trainer_load: every batch's source has S
 * tokens whatever its target's length T (the trainer's length), as a
 * benchmark of sources longer or shorter than targets wants; the caller
 * writes batches of that shape (seq2seq_write_batch after
 * trainer_set_shape). 0: S = T, as lm_trainer_fit pads both (a fit refuses
 * a fixed S). VP_ERROR_INVALID_ARGUMENT for a decoder-only model or S past
 * the trainer's max_len. */
vp_status lm_trainer_set_source_len(struct lm_trainer *t, int S);

struct lm_eval_result {
    double loss;       /* mean cross-entropy over scored tokens */
    double perplexity; /* exp(loss) */
    double accuracy;   /* share of scored tokens whose argmax logit is the label */
    uint64_t tokens;   /* scored tokens */
    uint64_t examples;
};
/* The evaluation pass over every example of `path` in file order. The
 * decoder's batch shape changes (a trainer then forgets its recordings). */
vp_status lm_evaluate(struct decoder *m, const char *path, const struct lm_data_options *o, int pad_multiple,
                      struct lm_eval_result *out);
/* The same for an encoder-decoder on seq2seq lines (source, target): the
 * loss per scored target token and teacher-forced token accuracy (logits
 * of decoder position t against labels[t]); sources and targets padded to
 * one length. */
vp_status lm_evaluate_seq2seq(struct seq2seq *m, const char *path, const struct lm_data_options *o, int pad_multiple,
                              struct lm_eval_result *out);
/* Seq2seq evaluation by generation (lmgenerate.c): every source of `path`
 * (seq2seq lines, file order, o's fields and lengths) decoded with
 * `search` (seq2seq_generate; the model loaded with at least o->batch ×
 * beams rows and o->max_len source tokens), decoded to text without
 * special tokens and scored against the decoded labels, as HF's
 * run_summarization / run_translation do: ROUGE-1/2/L F-measures (Porter
 * stemmer, ×100), corpus BLEU (0..100) and the share of exact matches. */
struct lm_text_metrics {
    double rouge1, rouge2, rougeL, bleu, exact_match;
    uint64_t examples;
};
struct tok_tokenizer;
vp_status lm_generate_metrics(struct seq2seq *m, const struct tok_tokenizer *tok, const char *path,
                              const struct lm_data_options *o, const struct search_options *search,
                              struct lm_text_metrics *out);
/* {"loss", "perplexity", "accuracy", "tokens", "examples"} (malloc'd). */
char *lm_eval_json(const struct lm_eval_result *r);

struct lm_summary {
    struct trainer_summary base;    /* steps, losses, timings; eval fields unused */
    bool has_eval;
    struct lm_eval_result eval, best; /* the last evaluation, the lowest loss */
    uint64_t best_step;
};
/* Trains trainer_total_steps(o, train.batches · batch) steps, evaluating
 * every eval_every steps (else each epoch) and at the end; log lines as
 * trainer_fit writes them (eval lines hold loss, perplexity, accuracy,
 * tokens). Stops at a non-finite loss or norm with base.diverged set. */
vp_status lm_trainer_fit(struct lm_trainer *t, const struct lm_fit_config *c, const struct lm_scan *train,
                         struct lm_summary *out);

#endif
