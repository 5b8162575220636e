/* Seq2seq evaluation by generation (lmtrainer.h's lm_generate_metrics):
 * greedy (or beam) decoding of every source of a file, decoded to text
 * with the tokenizer (special tokens skipped), scored against the decoded
 * labels as Hugging Face's run_summarization / run_translation do —
 * ROUGE-1/2/L (rouge_score with the Porter stemmer, means of F-measures),
 * corpus BLEU (sacrebleu's) and the share of exact matches. */
#include "lmtrainer.h"
#include "textmetrics.h"
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* Grows a list of malloc'd strings by one. */
static vp_status push(char ***list, size_t *n, size_t *cap, char *text) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        char **nl = realloc(*list, c * sizeof *nl);
        if (!nl) {
            free(text);
            return vp_fail(VP_ERROR_HOST_MEMORY, "evaluation: out of host memory");
        }
        *list = nl;
        *cap = c;
    }
    (*list)[(*n)++] = text;
    return VP_OK;
}

/* The labels of row r (LM_IGNORE_INDEX dropped) as text. */
static vp_status label_text(const struct tok_tokenizer *tok, const struct lm_batch *b, int r, int32_t *scratch,
                            char **out) {
    int n = 0;
    for (int t = 0; t < b->T; t++)
        if (b->labels[(size_t)r * b->T + t] != LM_IGNORE_INDEX) scratch[n++] = b->labels[(size_t)r * b->T + t];
    return tok_decode(tok, scratch, n, true, out);
}

vp_status lm_generate_metrics(struct seq2seq *m, const struct tok_tokenizer *tok, const char *path,
                              const struct lm_data_options *o, const struct search_options *search,
                              struct lm_text_metrics *out) {
    memset(out, 0, sizeof *out);
    struct lm_data_options dopt = *o;
    dopt.task = LM_TASK_SEQ2SEQ;
    dopt.shuffle_window = 0;
    dopt.tokenizer = tok;
    int B, S, T;
    seq2seq_batch_shape(m, &B, &S, &T);
    (void)T;
    if (dopt.batch > B || dopt.max_len > S)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generation: batches of %d sources of %d tokens, the model is "
                       "loaded for %d of %d", dopt.batch, dopt.max_len, B, S);
    struct lm_data *d;
    vp_status s = lm_data_open(path, &dopt, &d);
    if (s != VP_OK) return s;
    struct lm_batch b = {0};
    char **preds = NULL, **refs = NULL;
    size_t np = 0, nr = 0, cp = 0, cr = 0;
    int32_t *scratch = NULL;
    bool done = false;
    while (s == VP_OK && (s = lm_data_next(d, &b, &done)) == VP_OK && !done) {
        int32_t *grown = realloc(scratch, (size_t)b.T * sizeof *scratch + 4);
        if (!grown) {
            s = vp_fail(VP_ERROR_HOST_MEMORY, "evaluation: out of host memory");
            break;
        }
        scratch = grown;
        struct search_result r;
        s = seq2seq_generate(m, search, b.enc_ids, b.enc_mask, b.B, b.S, &r);
        for (int k = 0; s == VP_OK && k < b.B; k++) {
            const int best = k * r.per_item; /* beam: best first */
            char *text = NULL;
            s = tok_decode(tok, r.tokens + (size_t)best * r.capacity, r.lengths[best], true, &text);
            if (s == VP_OK) s = push(&preds, &np, &cp, text);
            if (s == VP_OK) s = label_text(tok, &b, k, scratch, &text);
            if (s == VP_OK) s = push(&refs, &nr, &cr, text);
        }
        search_result_free(&r);
    }
    if (s == VP_OK && np == 0) s = vp_fail(VP_ERROR_BAD_INPUT, "%s: no example to generate for", path);
    if (s == VP_OK) {
        struct textmetrics_rouge rouge;
        struct textmetrics_bleu bleu;
        const struct textmetrics_lines P = TEXTMETRICS_LINES(preds, np), R = TEXTMETRICS_LINES(refs, nr);
        s = textmetrics_rouge(P, R, true, &rouge, NULL);
        if (s == VP_OK) s = textmetrics_bleu(P, &R, 1, &bleu);
        if (s == VP_OK) {
            out->rouge1 = 100 * rouge.rouge1.fmeasure;
            out->rouge2 = 100 * rouge.rouge2.fmeasure;
            out->rougeL = 100 * rouge.rougeL.fmeasure;
            out->bleu = bleu.score;
            out->examples = np;
            uint64_t same = 0;
            for (size_t k = 0; k < np; k++) same += strcmp(preds[k], refs[k]) == 0;
            out->exact_match = (double)same / (double)np;
        }
    } else {
        vp_fail_context(s, "generating for %s", path);
    }
    for (size_t k = 0; k < nr; k++) free(refs[k]);
    free(refs);
    for (size_t k = 0; k < np; k++) free(preds[k]);
    free(preds);
    free(scratch);
    lm_batch_finish(&b);
    lm_data_close(d);
    return s;
}
