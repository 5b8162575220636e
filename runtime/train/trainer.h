/* Training a delta on a sequence classifier: data batching and shuffling
 * (batcher.c), the optimiser step recorded into the model's training
 * submission and the training loop with evaluation (trainer.c), and what a
 * run writes into its output folder (checkpoint.c).
 *
 *     struct trainer_options o;
 *     trainer_options_default(&o);                       // AdamW, lr 1e-4, ...
 *     o.batch = 16;
 *     struct trainer *t;
 *     trainer_open(ctx, "models/roberta-base", &spec, &o, &t);   // host only: validates
 *     struct train_data *train;
 *     struct io_dataset_options dopt = {.vocab_size = ..., .num_labels = ...,
 *                                       .labels_required = true, .max_len = ...};
 *     train_data_open("train.jsonl", &dopt, &train);     // one pass: index + validation
 *     trainer_load(t, train_data_longest(train));        // device memory, budget checked
 *     struct trainer_fit_config fc = {.train = train, .log_path = "out/train.jsonl"};
 *     struct trainer_summary sum;
 *     trainer_fit(t, &fc, &sum);
 *     trainer_destroy(t);
 *
 * One optimiser step with --accum 1 is one submission: the gradients are
 * zeroed, the model's forward and backward run, the gradient norm is
 * reduced and the optimiser updates every trainable tensor, with the clip
 * coefficient produced and consumed on the device. The learning rate and
 * the step number live in a small device buffer, copied from staging at
 * the start of the submission, so one recording is replayed every step;
 * only a new batch shape (or, with dropout on, a new dropout step, which
 * the model's kernels take as a push constant) records again. Batches are
 * padded to a length that is a multiple of `pad_multiple`, which keeps the
 * number of shapes small.
 *
 * With --accum k a step is k submissions: micro-batch 1 zeroes the
 * gradients, every micro-batch adds its mean-loss gradient, the last also
 * scales the sum by 1/k and runs the optimiser, so k micro-batches of B
 * rows give the gradient of one batch of k·B rows (when every micro-batch
 * has as many labelled rows).
 *
 * Memory: the trainer owns its encoder (frozen, trainable, activations and
 * staging pools as encoder.h says) and adds to the trainable pool the
 * optimiser's hyperparameter buffer, the clip pair (norm, coefficient) and
 * the gradient-norm partial sums, and to the staging pool the host side of
 * the hyperparameters and the norm read back after each step. The
 * moments live in the params' arenas (delta/params.h). Determinism: every
 * kernel reduces in a fixed order and the data order comes from the seed,
 * so the same seed on the same device gives the same loss curve bit for bit. */
#ifndef VKPEFT_TRAIN_TRAINER_H
#define VKPEFT_TRAIN_TRAINER_H

#include "dataset.h"
#include "encoder.h"
#include "metrics.h"
#include "tokenizer.h"

/* ---- data (batcher.c) ------------------------------------------------------------ */

/* A dataset (JSONL, CSV, TSV: io/dataset.h) indexed by one streaming pass:
 * the byte offset and line of every record (16 bytes each), never the
 * examples themselves. The pass validates every record (tokens against the
 * vocabulary, labels against the model's labels), so a bad file fails
 * before anything is trained.
 *
 * With options.collect_labels, string labels are collected in that pass:
 * sorted in byte order (strcmp: "entailment" < "neutral", so the mapping
 * does not depend on the data's order), at most num_labels of them, then
 * mapped to their index for every read. A file holds either integer class
 * ids or label names, not both. */
struct train_data;

vp_status train_data_open(const char *path, const struct io_dataset_options *o,
                          struct train_data **out);
void train_data_close(struct train_data *d);
uint64_t train_data_count(const struct train_data *d);
/* Examples that have a label. */
uint64_t train_data_labelled(const struct train_data *d);
/* Lines the index pass skipped as bad (with skip_bad). */
uint64_t train_data_skipped(const struct train_data *d);
/* The longest example after truncation to max_len. */
int train_data_longest(const struct train_data *d);
const char *train_data_path(const struct train_data *d);
/* The string labels collected (collect_labels), sorted; their index is the
 * class id. Returns the count (0 when the labels are integers); *names
 * lives as long as d. */
int train_data_label_names(const struct train_data *d, const char *const **names);
/* Reads example i (ids valid until the next read). Reading i + 1 after i
 * does not seek. */
vp_status train_data_get(struct train_data *d, uint64_t i, struct io_example *ex);

/* The order of epoch `epoch`: a Fisher–Yates permutation of 0..n-1 from a
 * generator keyed by (seed, epoch). */
void train_permutation(uint64_t *perm, uint64_t n, uint64_t seed, uint64_t epoch);

/* A padded batch as the host builds it: B rows of T tokens, the first
 * `rows` of them examples, the others copies of row 0 with the label
 * ignored (so the shape, and the recording, stay the same for a short last
 * batch). */
struct train_batch {
    int B, T, rows;
    int cap_T;         /* T the buffers hold */
    int32_t *ids;      /* (B,T) */
    int32_t *types;    /* (B,T) segment ids (0 for padding) */
    uint8_t *mask;     /* (B,T) 1 = real token */
    int32_t *labels;   /* (B) class, or ENCODER_IGNORE_INDEX; masked LM: (B,T) token ids
                          (capacity B·cap_T) */
    uint64_t *index;   /* (B) example index of each row (UINT64_MAX for filler rows) */
    int32_t *lens;     /* (B) real tokens of each row */
};

vp_status train_batch_init(struct train_batch *b, int B, int cap_T);
void train_batch_finish(struct train_batch *b);
/* T for a batch whose longest example has `longest` tokens: rounded up to
 * a multiple of pad_multiple (0: 8 up to 64, 16 up to 256, else 32) and
 * capped by max_len. */
int train_batch_length(int longest, int max_len, int pad_multiple);
/* Reads examples indices[0..count) into b (count in 1..B); pad_id fills
 * the padding. */
vp_status train_batch_fill(struct train_batch *b, struct train_data *d, const uint64_t *indices,
                           int count, int pad_id, int max_len, int pad_multiple);
struct encoder_batch train_batch_view(const struct train_batch *b);

/* ---- masked-LM corpus (corpus.c) -------------------------------------------------- */

/* A plain-text corpus, one example per line (blank lines skipped), indexed
 * by one streaming pass (byte offset per line) that tokenizes every line
 * with special tokens, truncated to max_len, so a bad file fails before
 * training. Lines are read and tokenized again when a batch needs them. */
struct train_corpus;

vp_status train_corpus_open(const char *path, const struct tok_tokenizer *tok, int max_len, int vocab_size,
                            struct train_corpus **out);
void train_corpus_close(struct train_corpus *c);
uint64_t train_corpus_count(const struct train_corpus *c);
int train_corpus_longest(const struct train_corpus *c);
const char *train_corpus_path(const struct train_corpus *c);

/* BERT's masking of one row of `len` tokens (ids changed in place):
 * each token not marked special is chosen with probability prob; a chosen
 * token becomes mask_id (80%), a uniformly random non-special token below
 * vocab (10%) or stays (10%); labels[k] is the original id at chosen
 * positions, ENCODER_IGNORE_INDEX elsewhere. The draws come from a
 * counter-based generator keyed by (seed, epoch, example), so they do not
 * depend on the batch the example lands in. Returns the chosen count. */
struct mlm_masking {
    double prob;
    uint64_t seed;
    int32_t mask_id, vocab;
    const struct tok_tokenizer *tok; /* special ids are never drawn as random tokens */
};
int mlm_mask_row(const struct mlm_masking *m, uint64_t epoch, uint64_t example, int32_t *ids,
                 const uint8_t *special, int len, int32_t *labels);
/* The masking for corpus c: its tokenizer's mask token (an error when it
 * has none), vocab = min(tokenizer, model). */
vp_status train_corpus_masking(const struct train_corpus *c, double prob, uint64_t seed,
                               struct mlm_masking *out);
/* Reads and masks examples indices[0..count) into b (per-token labels);
 * filler rows copy row 0 with every label ignored. */
vp_status train_batch_fill_mlm(struct train_batch *b, struct train_corpus *c, const uint64_t *indices,
                               int count, int pad_id, int max_len, int pad_multiple,
                               const struct mlm_masking *m, uint64_t epoch);

/* ---- options --------------------------------------------------------------------- */

enum trainer_optimizer { TRAINER_ADAMW = 0, TRAINER_SGD };

struct trainer_options {
    enum trainer_optimizer optimizer;
    double lr;                  /* peak learning rate */
    double weight_decay;        /* applied to tensors whose decay flag is set (not biases,
                                   LayerNorm, gates: delta/params.h) */
    double beta1, beta2, eps;   /* AdamW */
    double momentum;            /* SGD */
    enum schedule_kind schedule;
    uint64_t warmup_steps;      /* linear warm-up from 0 */
    double warmup_ratio;        /* used when warmup_steps is 0: a share of the steps */
    double clip;                /* max global gradient norm; 0: no clipping */
    int batch;                  /* rows per micro-batch */
    int accum;                  /* micro-batches per optimiser step */
    int epochs;                 /* used when steps is 0 */
    uint64_t steps;             /* optimiser steps; 0: from epochs */
    int max_len;                /* truncate examples; 0: the model's position limit */
    int pad_multiple;           /* 0: automatic (see train_batch_length) */
    uint64_t seed;              /* data order, delta initialisation, dropout */
    uint64_t eval_every;        /* optimiser steps between evaluations; 0: each epoch */
    double dropout;             /* < 0: the model's config; 0: off; > 0: hidden, attention and
                                   classifier dropout probability */
    double label_smoothing;
    enum encoder_storage storage;
    enum model_head head;       /* MODEL_HEAD_MLM: masked-LM training on a train_corpus */
    bool checkpoint_activations; /* recompute each layer's activations in the backward
                                    (encoders, decoders, encoder-decoders: decoder_lm.h) */
    double mask_prob;           /* MLM: share of non-special tokens chosen (default 0.15) */
};

/* AdamW (0.9, 0.999, 1e-8), lr 1e-4, weight decay 0.01, linear schedule
 * without warm-up, clip 1, batch 16, accum 1, 3 epochs, the model's
 * dropout, seed 42. */
void trainer_options_default(struct trainer_options *o);
/* Checks ranges; messages name the command-line flag. VP_ERROR_INVALID_ARGUMENT. */
vp_status trainer_options_check(const struct trainer_options *o);

/* ---- the trainer (trainer.c) ----------------------------------------------------- */

struct trainer;

/* The model a trainer steps: the encoder (trainer_open) or another one,
 * e.g. the decoder-only LM (lmtrainer.h). The recorded step calls
 * record_zero_grads, record_train (forward, loss, backward: gradients
 * accumulate), then reduces the norm of params' gradient arena and runs
 * the optimiser on it; loss reads the last run's mean loss. set_batch
 * reallocates the activations for a new shape (the trainer then records
 * again). destroy (may be NULL) runs at trainer_destroy. */
struct trainer_model {
    void *self;
    vp_status (*record_zero_grads)(void *self, struct vk_recorder *rec);
    vp_status (*record_train)(void *self, struct vk_recorder *rec);
    struct delta_params *(*params)(void *self);
    void (*batch_shape)(const void *self, int *B, int *T);
    vp_status (*set_batch)(void *self, int B, int T);
    vp_status (*plan)(const void *self, int B, int T, uint64_t bytes[VP_POOL_COUNT]);
    vp_status (*load)(void *self, int B, int T);
    float (*loss)(const void *self);
    void (*destroy)(void *self);
    /* NULL: the model does not drop. Else its dropout masks are keyed by
     * the micro-batch count, set before each micro-batch is recorded or
     * replayed (a new count re-records). */
    void (*set_step)(void *self, uint32_t step);
};
struct trainer_model trainer_encoder_model(struct encoder *e);
/* A trainer for any model (opened, not loaded): the trainer owns it when
 * model->destroy is set. max_len: the longest sequence; counts: for the
 * log (may be NULL). trainer_encoder returns NULL for such a trainer. */
vp_status trainer_open_model(vp_context *ctx, const struct trainer_model *model, const struct trainer_options *o,
                             int max_len, const struct delta_counts *counts, struct trainer **out);

/* Opens the model for training (encoder_open: config, weights, spec; no
 * device memory). Everything a bad model or spec can get wrong fails here. */
vp_status trainer_open(vp_context *ctx, const char *model_dir, const struct delta_spec *spec,
                       const struct trainer_options *o, struct trainer **out);
/* Loads the model with activations for the longest batch (examples of
 * `longest` tokens, rounded up as train_batch_length does), so the budget
 * is checked for the largest shape training will use, and allocates the
 * optimiser state. */
vp_status trainer_load(struct trainer *t, int longest);
void trainer_destroy(struct trainer *t);

struct encoder *trainer_encoder(struct trainer *t);
const struct trainer_options *trainer_get_options(const struct trainer *t);
/* The sequence length training uses (--max-len, else the model's limit). */
int trainer_max_len(const struct trainer *t);
/* The longest sequence a model's position table allows. */
int trainer_model_max_len(const struct model_arch *a);
/* Bytes per pool the loaded trainer holds: the encoder's plan for the
 * current shape plus the optimiser's buffers. */
void trainer_plan(const struct trainer *t, uint64_t bytes[VP_POOL_COUNT]);
/* Optimiser steps done. */
uint64_t trainer_steps_done(const struct trainer *t);
/* Micro-batches run (dropout masks are keyed by it). */
uint64_t trainer_micro_done(const struct trainer *t);
/* Sets both counts (resuming from a checkpoint, between steps). */
void trainer_restore_counts(struct trainer *t, uint64_t steps, uint64_t micro);
/* After a step whose gradient norm was not finite: the first trainable
 * tensor, in parameter order, whose gradient holds a NaN or Inf ("" when
 * all are finite). The gradients are still in their arena then (the next
 * step zeroes them first). */
vp_status trainer_find_nonfinite(struct trainer *t, char *name, size_t size);
/* Parameter counts of the trainer's spec on its model (delta, head,
 * pretrained model: the paper's "% params" is delta / model). */
void trainer_counts(const struct trainer *t, struct delta_counts *out);
/* The trainer's recordings refer to the encoder's activations for one
 * batch shape. The trainer changes shapes itself; a caller that changes
 * them on trainer_encoder(t) directly (encoder_set_batch,
 * trainer_evaluate) calls this before the next trainer_micro_step. */
void trainer_forget_recordings(struct trainer *t);

/* What one optimiser step reports. */
struct trainer_step_result {
    double loss;       /* mean of the micro-batches' mean losses */
    double grad_norm;  /* global norm before clipping (of the 1/accum-scaled sum) */
    double lr;         /* the learning rate the step used */
    uint64_t step;     /* 1-based: optimiser steps applied, this one included when applied */
    bool applied;      /* false: the gradient norm was not finite and the optimiser left every
                          parameter, moment and the step count as they were */
};

/* One micro-batch: forward and backward, gradients accumulated; when
 * `update`, the optimiser step follows in the same submission and *r is
 * filled (the loss averaged over the step's micro-batches). Learning rate
 * from the schedule over `total_steps`. */
vp_status trainer_micro_step(struct trainer *t, const struct train_batch *b, bool update,
                             uint64_t total_steps, struct trainer_step_result *r);

/* trainer_micro_step in two halves for a model whose batches the caller
 * writes itself: trainer_set_shape (a new shape reallocates the model's
 * activations and staging), then the caller writes the batch into the
 * model, then trainer_micro_step_written runs it as trainer_micro_step does. */
vp_status trainer_set_shape(struct trainer *t, int B, int T);
vp_status trainer_micro_step_written(struct trainer *t, bool update, uint64_t total_steps,
                                     struct trainer_step_result *r);
/* Profiles one whole step (a micro-batch that zeroes the gradients and
 * updates, as with --accum 1) on the batch written last: records it again
 * with a timestamp after every command, runs it once and groups the GPU
 * time per (site, kernel) into `out` (vk_profile_finish frees it). The run
 * changes the delta and its moments as a step does, with the last step's
 * hyperparameters, but counts no step. Fails with VP_ERROR_UNSUPPORTED
 * when the device's compute queue has no timestamps. The trainer's own
 * recordings never hold timestamps. */
vp_status trainer_profile_step(struct trainer *t, struct vk_profile *out);

/* Optimiser steps a fit over n examples runs: `steps`, else
 * ceil(epochs · ceil(n / batch) / accum). */
uint64_t trainer_total_steps(const struct trainer_options *o, uint64_t n);

/* ---- evaluation (trainer.c) ------------------------------------------------------ */

struct trainer_eval_result {
    double loss;       /* mean cross-entropy over labelled examples */
    uint64_t count;    /* examples */
    uint64_t labelled; /* examples with a label (the metrics' count) */
    struct metrics_classification metrics;
};

/* Called for every example in file order; returning non-VP_OK stops. */
typedef vp_status (*trainer_example_fn)(void *user, uint64_t index, const float *logits,
                                        int classes, int pred, int32_t label);

/* Runs the evaluation pass (no dropout) over every example of d in batches
 * of `batch` rows, in file order. The encoder's batch shape changes. */
vp_status trainer_evaluate(struct encoder *e, struct train_data *d, int batch, int max_len,
                           int pad_multiple, trainer_example_fn fn, void *user,
                           struct trainer_eval_result *out);
/* The masked-LM evaluation over every line of c (masks keyed by epoch 0 of
 * m's seed, so every evaluation sees the same masks): loss = mean
 * cross-entropy over the masked tokens, metrics.accuracy = the share of
 * them predicted exactly, labelled = their count. */
vp_status trainer_evaluate_mlm(struct encoder *e, struct train_corpus *c, int batch, int max_len,
                               int pad_multiple, const struct mlm_masking *m,
                               struct trainer_eval_result *out);

/* ---- the loop -------------------------------------------------------------------- */

enum trainer_event_kind { TRAINER_EVENT_STEP = 0, TRAINER_EVENT_EVAL };

struct trainer_event {
    enum trainer_event_kind kind;
    uint64_t step, total_steps;
    double epoch;            /* epochs done, fractional */
    double elapsed;          /* seconds since the fit began */
    uint64_t tokens;         /* real tokens trained on so far (padding excluded) */
    struct trainer_step_result last; /* the latest step */
    const struct trainer_eval_result *eval; /* TRAINER_EVENT_EVAL */
};

/* Where a fit stands between two optimiser steps: what a checkpoint
 * saves (with the delta and the optimiser's moments) and a resumed fit
 * continues from. The data order of an epoch comes from (seed, epoch) and
 * dropout masks from the micro-batch count, so these numbers are the whole
 * random state. */
struct trainer_position {
    uint64_t steps;          /* optimiser steps done */
    uint64_t micro;          /* micro-batches done */
    uint64_t epoch, pos;     /* the current epoch, and examples of its order consumed */
    uint64_t tokens, examples;
    uint64_t log_bytes;      /* the log's length when it was taken (later lines are dropped) */
    uint64_t skipped;        /* steps skipped as non-finite */
    double elapsed;          /* seconds of fitting before it */
    double first_loss;
    bool has_eval;
    struct trainer_eval_result eval, best;
    uint64_t best_step;
};

/* What a step whose loss or gradient norm is not finite does. */
enum trainer_nonfinite {
    TRAINER_NONFINITE_SKIP = 0, /* the update is not applied (parameters, moments and the step
                                   count stay); the run goes on */
    TRAINER_NONFINITE_STOP,     /* the run stops there (summary->diverged) */
};

struct trainer_fit_config {
    struct train_data *train;
    struct train_data *eval;  /* NULL: no evaluation */
    /* Masked LM (options.head MLM): the corpus replaces train, eval_corpus
     * eval; evaluation reports the MLM loss and masked-token accuracy
     * (metrics.accuracy, labelled = masked tokens). */
    struct train_corpus *corpus, *eval_corpus;
    const char *log_path;     /* JSONL log (checkpoint.c), NULL: none */
    void (*on_event)(const struct trainer_event *ev, void *user);
    /* Polled after every step (and its evaluation); returning true ends the
     * fit there, with summary->interrupted set and an "interrupted" log
     * line. The library installs no signal handler: a program's handler
     * sets a flag that this reads. NULL: never stops early. */
    bool (*should_stop)(void *user);
    void *user;
    /* Checkpoints (resume.c): the file, written every checkpoint_every
     * steps (0: at the end of every epoch) and when should_stop ends the
     * fit; settings (JSON text, the run's identity) is stored with it.
     * NULL: none. */
    const char *checkpoint_path;
    uint64_t checkpoint_every;
    const char *checkpoint_settings;
    /* Continue from here (the params already hold the checkpoint's values
     * and moments: train_checkpoint_load); the log is cut back to
     * resume->log_bytes and appended to. NULL: a fresh fit. */
    const struct trainer_position *resume;
    enum trainer_nonfinite on_nonfinite;
};

struct trainer_summary {
    uint64_t steps;
    uint64_t examples;       /* rows trained on (micro-batch rows, padding excluded) */
    double seconds;          /* wall time of the loop, evaluations included */
    double step_seconds;     /* mean wall time of a step after the first */
    double first_loss, final_loss; /* the first step's, the last step's */
    bool diverged;           /* a loss or gradient norm was NaN or Inf (and on_nonfinite is stop) */
    uint64_t diverged_step;
    uint64_t skipped;        /* steps skipped as non-finite (on_nonfinite skip) */
    /* The first non-finite step's report: the step (1-based, counting
     * skipped ones) and the first trainable tensor, in parameter order,
     * whose gradient is not finite ("" when every gradient is finite:
     * only the loss was). */
    uint64_t nonfinite_step;
    char nonfinite_tensor[DELTA_NAME_MAX];
    uint64_t checkpoints;    /* checkpoints written */
    bool interrupted;        /* should_stop ended the fit after `steps` steps */
    uint64_t tokens;         /* real tokens trained on */
    bool has_eval;
    struct trainer_eval_result eval; /* the last evaluation */
    struct trainer_eval_result best; /* the evaluation with the best accuracy */
    uint64_t best_step;
};

/* Trains for trainer_total_steps steps over shuffled epochs (micro-batches
 * run across epoch boundaries; a short last batch is padded), evaluates
 * every eval_every steps (or each epoch) and at the end (not after an
 * interruption), and writes a log line at the start (steps, parameter
 * counts, memory plan per pool), per step and per evaluation. Stops at the first non-finite loss or
 * gradient norm, with summary->diverged set (the status stays VP_OK). */
vp_status trainer_fit(struct trainer *t, const struct trainer_fit_config *c,
                      struct trainer_summary *out);
/* After fit step `step` (0-based) with result r: a non-finite loss or
 * gradient norm is reported once in `out` (the step and the first tensor
 * whose gradient went non-finite), logged (log may be NULL) and counted
 * when skipped; with TRAINER_NONFINITE_STOP, out->diverged and *stop are
 * set. Shared by trainer_fit and the causal-LM loop. */
struct train_log;
vp_status trainer_check_step(struct trainer *t, struct train_log *log, uint64_t step,
                             const struct trainer_step_result *r, enum trainer_nonfinite mode,
                             struct trainer_summary *out, bool *stop);

/* ---- output files (checkpoint.c) ------------------------------------------------- */

/* The training log: one JSON object per line, each line one write(2) on a
 * file opened for appending, so a reader (or a crash) never sees half a
 * line; fsync at close. */
struct train_log;
vp_status train_log_open(const char *path, struct train_log **out);
/* {"type":"start"}: total steps, batch, parameter counts and the memory
 * plan per pool (bytes); with activation checkpointing (uncheckpointed > 0)
 * also memory.activations_without_checkpointing. */
vp_status train_log_start(struct train_log *l, uint64_t total_steps, int batch, const struct delta_counts *counts,
                          const uint64_t plan[VP_POOL_COUNT], uint64_t uncheckpointed);
/* {"type":"interrupted","step":N}: the fit was stopped after step N. */
vp_status train_log_interrupted(struct train_log *l, uint64_t step, double elapsed);
vp_status train_log_step(struct train_log *l, const struct trainer_event *ev);
/* {"type":"nonfinite","step":N,"skipped":bool,"tensor":name}: step N's loss
 * or gradient norm was not finite; tensor is the first trainable tensor
 * whose gradient was not (absent when only the loss was). */
vp_status train_log_nonfinite(struct train_log *l, uint64_t step, bool applied, const char *tensor);
vp_status train_log_eval(struct train_log *l, const struct trainer_event *ev);
/* Writes a cJSON object as one line and deletes it (other loops' lines). */
vp_status train_log_object(struct train_log *l, void *json_object);
vp_status train_log_close(struct train_log *l);

/* A file written in a stream and published whole: a temporary file beside
 * `path`, renamed over it by commit after fsync; abort removes it. */
struct train_file {
    char path[1024], tmp[1100];
    void *f; /* FILE * */
};
vp_status train_file_open(struct train_file *f, const char *path);
vp_status train_file_printf(struct train_file *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
vp_status train_file_commit(struct train_file *f);
void train_file_abort(struct train_file *f);

/* The run's settings (train_args.json): options, model, spec, data. */
vp_status train_write_args(const char *path, const struct trainer_options *o,
                           const char *model_dir, const struct delta_spec *spec,
                           const char *train_path, const char *eval_path, uint64_t total_steps);
/* The same settings as JSON text (malloc'd; NULL when out of memory). */
char *train_args_json(const struct trainer_options *o, const char *model_dir, const struct delta_spec *spec,
                      const char *train_path, const char *eval_path, uint64_t total_steps);
/* An evaluation as JSON text (malloc'd): loss, accuracy, macro_f1,
 * matthews, count. */
char *train_eval_json(const struct trainer_eval_result *r);

/* ---- resumable checkpoints (resume.c) -------------------------------------------- */

/* Writes the checkpoint file `path`: the params' values and optimiser
 * moments, the position and `settings` (JSON text or NULL), through a
 * temporary file, fsync and rename, so a kill at any moment leaves the
 * previous checkpoint or this one whole. */
vp_status train_checkpoint_save(const char *path, const struct delta_params *p,
                                const struct trainer_position *pos, const char *settings);
/* Reads a checkpoint: checks its checksum and that its layout is p's,
 * writes the values and moments into p (NULL: only reads the position),
 * and returns the settings text (malloc'd, may be NULL). A damaged or
 * foreign file is VP_ERROR_BAD_INPUT naming it. */
vp_status train_checkpoint_load(const char *path, struct delta_params *p, struct trainer_position *pos,
                                char **settings);
/* The training log continued by a resumed fit: cut back to `bytes` (the
 * lines after the checkpoint are written again) and appended to. */
vp_status train_log_reopen(const char *path, uint64_t bytes, struct train_log **out);
/* The log's length now (what a checkpoint records). */
uint64_t train_log_bytes(const struct train_log *l);

#endif
