/* Decoding strategies of text generation — greedy, sampling and beam search —
 * as host code that drives any decoder through one step callback, with the
 * semantics of Hugging Face transformers' generate() (GenerationMixin._sample
 * and ._beam_search, logits processors from generation/logits_process.py).
 *
 *     static vp_status step(void *user, int rows, const int32_t *parent,
 *                           const int32_t *tokens, float *logits) { ... }
 *
 *     const int32_t start[] = {2};             // BART: decoder_start_token_id
 *     const int32_t *ids[] = {start};
 *     const int lens[] = {1};
 *     struct search_options o = {.max_length = 20, .num_beams = 4, .eos_count = 1,
 *                                .eos_token_ids = {2}, .pad_token_set = true, .pad_token_id = 1,
 *                                .forced_bos_set = true, .forced_bos_token_id = 0};
 *     struct search_model m = {step, my_model, vocab};
 *     struct search_input in = {1, ids, lens};
 *     struct search_result r;
 *     if (search_run(&o, &m, &in, &r) != VP_OK) fprintf(stderr, "%s\n", vp_last_error());
 *     // sequence s: r.tokens + s * r.capacity, r.lengths[s] tokens, r.scores[s]
 *     search_result_free(&r);
 *
 * Lengths. "Generated tokens" never count the initial ids. The prompt length
 * that max_length / min_length count is the longest item's initial ids: the
 * length of HF's input_ids for a batch left-padded to its longest prompt (for
 * an encoder-decoder model, 1: the decoder start token). */
#ifndef VKPEFT_MODEL_SEARCH_H
#define VKPEFT_MODEL_SEARCH_H

#include "util.h"

/* One decoding step for `rows` sequences. Row r continues the cached state of
 * row parent[r] of the previous call (parent == NULL on the first call, where
 * row r is batch item r after its initial ids), then appends tokens[r]
 * (tokens == NULL on the first call: give the next-token logits after the
 * initial ids). Writes logits (rows, vocab), raw fp32. A model with a KV cache
 * gathers its cache rows by `parent` exactly as HF's _reorder_cache does; rows
 * that are absent from a call (finished sequences, finished batch items) are
 * never asked for again. Returning anything but VP_OK stops the search with
 * that status. */
typedef vp_status (*search_step_fn)(void *user, int rows, const int32_t *parent,
                                    const int32_t *tokens, float *logits);

struct search_model {
    search_step_fn step;
    void *user;
    int vocab;
};

/* Per batch item, the ids the search starts from: a decoder-only prompt, or
 * an encoder-decoder model's decoder start ids. The no-repeat n-gram ban sees
 * them, as HF's sees all of input_ids; to reproduce a left-padded HF batch
 * exactly, pass the padded rows. */
struct search_input {
    int batch;
    const int32_t *const *ids;  /* ids[b]: lens[b] ids, each in [0, vocab) */
    const int *lens;            /* each at least 1 */
};

/* HF's early_stopping: when a batch item's beam search is done. */
enum search_early_stopping {
    SEARCH_EARLY_STOPPING_HEURISTIC = 0, /* early_stopping=False (HF default) */
    SEARCH_EARLY_STOPPING_TRUE,          /* early_stopping=True */
    SEARCH_EARLY_STOPPING_NEVER,         /* early_stopping="never" */
};

#define SEARCH_MAX_EOS 8

/* Zero means default everywhere; where zero is a meaningful value (token ids,
 * a length penalty of 0) a *_set flag or a count says the field is given. */
struct search_options {
    int max_new_tokens;        /* wins over max_length, as in HF */
    int max_length;            /* counts the prompt; both 0: 20, HF's default */
    int min_new_tokens;        /* eos is suppressed until this many are generated */
    int min_length;            /* the same, counting the prompt */
    int num_beams;             /* 0: 1 (greedy or sampling) */
    double length_penalty;     /* beam score = sum_logprobs / generated^length_penalty */
    bool length_penalty_set;   /* false: 1.0 */
    enum search_early_stopping early_stopping;
    int no_repeat_ngram_size;  /* 0: off */
    int eos_count;             /* 0: no end-of-sequence token */
    int32_t eos_token_ids[SEARCH_MAX_EOS];
    bool pad_token_set;        /* false: the first eos id, as HF does */
    int32_t pad_token_id;
    bool forced_bos_set;       /* mBART target language, BART's <s> */
    int32_t forced_bos_token_id;
    int forced_eos_count;      /* forced at the last position when > 0 */
    int32_t forced_eos_token_ids[SEARCH_MAX_EOS];
    bool do_sample;
    double temperature;        /* 0: 1.0 */
    int top_k;                 /* 0: off. HF's GenerationConfig default is 50; pass it. */
    double top_p;              /* 0: 1.0 (off) */
    uint64_t seed;             /* every value, 0 included, is a seed */
    int num_return_sequences;  /* 0: 1; beam: at most num_beams */
};

struct search_result {
    int count;        /* batch · per_item sequences, item-major */
    int per_item;
    int capacity;     /* row stride of tokens: the most tokens a sequence may get */
    int32_t *tokens;  /* (count, capacity) generated ids, then the pad id (-1 without one) */
    int *lengths;     /* (count) generated tokens, the eos that ended a sequence included */
    float *scores;    /* (count) beam: sum_logprobs / lengths^length_penalty, best first;
                         greedy, sampling: Σ log-probabilities of the chosen tokens under the
                         distribution each was chosen from (HF's compute_transition_scores
                         with normalize_logits=True) */
    int steps;        /* calls made to the step function */
};

/* Runs greedy search (num_beams 1, !do_sample), multinomial sampling
 * (num_beams 1, do_sample) or beam search (num_beams > 1). `out` is filled
 * even on failure (free it with search_result_free either way). */
vp_status search_run(const struct search_options *opts, const struct search_model *model,
                     const struct search_input *in, struct search_result *out);
void search_result_free(struct search_result *r);

/* ---- Building blocks (search.c), also what the tests check ---------------- */

/* The options resolved against the model and the input: every default filled
 * in, every value checked (the one place options are validated). */
struct search_config {
    int vocab, batch;
    int prompt_len;            /* longest initial ids */
    int max_new;               /* tokens generated at most */
    int min_new;               /* eos suppressed while fewer are generated */
    int num_beams, per_item;
    int beams_to_keep;         /* candidates per item and step: max(2, 1 + eos_count) · num_beams */
    double length_penalty;
    enum search_early_stopping early_stopping;
    int no_repeat_ngram_size;
    int eos_count;
    int32_t eos[SEARCH_MAX_EOS];
    int32_t pad;               /* -1: none */
    int32_t forced_bos;        /* -1: none */
    int forced_eos_count;
    int32_t forced_eos[SEARCH_MAX_EOS];
    bool do_sample;
    double temperature;
    int top_k;
    double top_p;
    uint64_t seed;
};
vp_status search_config_init(struct search_config *c, const struct search_options *o,
                             const struct search_model *model, const struct search_input *in);

bool search_is_eos(const struct search_config *c, int32_t token);

/* HF's logits processors in HF's order, in place on one row of scores (vocab):
 * no-repeat n-gram, min length / min new tokens, forced BOS, forced EOS.
 * ids: the row's len ids so far (initial ids, then generated); gen: how many
 * of them were generated. */
void search_process(const struct search_config *c, const int32_t *ids, int len, int gen,
                    float *scores);

/* Sampling warpers, HF's order: temperature, top-k, top-p. Each works in
 * place on one row of scores (vocab) and sets removed entries to -inf.
 * scratch holds vocab entries. */
struct search_ranked {
    float score;
    int32_t id;
};
void search_warp(const struct search_config *c, float *scores, struct search_ranked *scratch);
void search_temperature(float *scores, int vocab, double temperature);
/* Keeps every score ≥ the k-th largest (ties at the k-th are all kept). */
void search_top_k(float *scores, int vocab, int top_k, struct search_ranked *scratch);
/* Keeps the smallest set of most probable tokens whose probability reaches
 * top_p, always at least one (HF: min_tokens_to_keep = 1). */
void search_top_p(float *scores, int vocab, double top_p, struct search_ranked *scratch);

/* log Σ exp(scores); -inf when every score is -inf. */
double search_logsumexp(const float *scores, int vocab);
/* First index of the largest score (torch.argmax). */
int search_argmax(const float *scores, int vocab);

/* splitmix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number
 * generators", 2014): the state walks by the golden-ratio increment and each
 * output is a bijective mix of it. Sequence s of a sampling run draws from
 * the stream seeded search_rng_seed(seed, s), so its draws do not depend on
 * when other sequences finish. */
uint64_t search_rng_seed(uint64_t seed, uint64_t stream);
uint64_t search_rng_next(uint64_t *state);
double search_rng_uniform(uint64_t *state); /* [0, 1), 53 random bits */
/* Draws a token from softmax(scores) by inverting the cumulative sum with one
 * uniform number; *logprob gets its log-probability. -1 when no token has a
 * non-zero probability. */
int search_draw(const float *scores, int vocab, uint64_t *rng, double *logprob);

/* ---- Strategy entry points (search_run dispatches) ------------------------ */

vp_status search_result_alloc(struct search_result *r, const struct search_config *c);
/* Greedy and sampling: HF's _sample (search.c). */
vp_status search_greedy_run(const struct search_config *c, const struct search_model *m,
                            const struct search_input *in, struct search_result *out);
/* Beam search: HF's _beam_search (search_beam.c). */
vp_status search_beam_run(const struct search_config *c, const struct search_model *m,
                          const struct search_input *in, struct search_result *out);

#endif
