/* Scaled dot-product attention with prefix keys/values, padding and causal
 * masks and dropout on the probabilities.
 *
 * Each query row is handled on its own: the scores, visibility, softmax and
 * dropout multipliers of one row live in scratch rows of length L+S, which
 * keeps the code a direct transcription of the formulas in ref.h. */
#include "ref.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The forward's inputs, bundled so helpers take one argument. */
struct inputs {
    const double *q, *k, *v;           // (B,H,T,D), (B,H,S,D), (B,H,S,D)
    const double *prefix_k, *prefix_v; // (H,L,D) or NULL when L = 0
    const uint8_t *keep;               // (B,S) or NULL
};

/* The backward's outputs; any may be NULL. */
struct grads {
    double *dq, *dk, *dv;         // overwritten
    double *dprefix_k, *dprefix_v; // accumulated
};

/* Scratch for one query row over the J = L+S columns. */
struct row_scratch {
    double *score;    // scale·q·k_all[j]
    double *prob;     // P, before dropout
    double *mult;     // dropout multiplier: 0 or 1/(1−p)
    double *dprob;    // dL/dP (backward only)
    uint8_t *visible; // 1 where column j is visible
};

/* Where the rows of head (b, h) start in each tensor. */
struct head {
    int b, h;
    size_t q_off;      // into q, o, dout, dq: (B,H,T,D)
    size_t k_off;      // into k, v, dk, dv: (B,H,S,D)
    size_t prefix_off; // into prefix_k, prefix_v and their gradients: (H,L,D)
};

static double effective_scale(const struct ref_attention_config *cfg) {
    return cfg->scale != 0.0 ? cfg->scale : 1.0 / sqrt((double)cfg->D);
}

static struct head head_at(const struct ref_attention_config *cfg, int b, int h) {
    size_t bh = (size_t)b * cfg->H + h;
    return (struct head){
        .b = b,
        .h = h,
        .q_off = bh * cfg->T * cfg->D,
        .k_off = bh * cfg->S * cfg->D,
        .prefix_off = (size_t)h * cfg->L * cfg->D,
    };
}

static struct row_scratch scratch_alloc(int J) {
    size_t n = J > 0 ? (size_t)J : 1;
    struct row_scratch s = {
        .score = calloc(n, sizeof(double)),
        .prob = calloc(n, sizeof(double)),
        .mult = calloc(n, sizeof(double)),
        .dprob = calloc(n, sizeof(double)),
        .visible = calloc(n, 1),
    };
    assert(s.score && s.prob && s.mult && s.dprob && s.visible);
    return s;
}

static void scratch_free(struct row_scratch *s) {
    free(s->score);
    free(s->prob);
    free(s->mult);
    free(s->dprob);
    free(s->visible);
}

/* Row j of the logical concatenation [prefix (L rows); sequence (S rows)] for
 * one head; prefix/seq point at the (H,L,D) and (B,H,S,D) tensors. */
static const double *concat_row(const struct ref_attention_config *cfg, const struct head *hd,
                                const double *prefix, const double *seq, int j) {
    if (j < cfg->L) return prefix + hd->prefix_off + (size_t)j * cfg->D;
    return seq + hd->k_off + (size_t)(j - cfg->L) * cfg->D;
}

/* The gradient row matching concat_row, or NULL when it is not wanted. */
static double *concat_grad_row(const struct ref_attention_config *cfg, const struct head *hd,
                               double *dprefix, double *dseq, int j) {
    if (j < cfg->L) return dprefix ? dprefix + hd->prefix_off + (size_t)j * cfg->D : NULL;
    return dseq ? dseq + hd->k_off + (size_t)(j - cfg->L) * cfg->D : NULL;
}

static double dot(const double *a, const double *b, int n) {
    double acc = 0.0;
    for (int i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

static bool key_visible(const struct ref_attention_config *cfg, const uint8_t *keep, int b, int t,
                        int s) {
    if (keep && !keep[(size_t)b * cfg->S + s]) return false;
    /* Queries are aligned with the last T keys: query t sits at key t + S − T. */
    if (cfg->causal && s > t + (cfg->S - cfg->T)) return false;
    return true;
}

/* Fills s->prob (P before dropout) and s->mult for query t of head hd. */
static void probs_row(struct row_scratch *s, const struct ref_attention_config *cfg,
                      const struct head *hd, int t, const struct inputs *in) {
    const int L = cfg->L, D = cfg->D, J = cfg->L + cfg->S;
    const double scale = effective_scale(cfg);
    const double *qt = in->q + hd->q_off + (size_t)t * D;
    for (int j = 0; j < J; j++) {
        s->score[j] = scale * dot(qt, concat_row(cfg, hd, in->prefix_k, in->k, j), D);
        s->visible[j] = j < L || key_visible(cfg, in->keep, hd->b, t, j - L);
    }
    const struct ref_softmax_mask mask = {.keep = s->visible, .keep_rows = 1};
    ref_softmax_forward(s->prob, s->score, &mask, 1, J);

    /* Element index of (b, h, t, j) = its flat index in probs (B,H,T,L+S). */
    size_t first = (((size_t)hd->b * cfg->H + hd->h) * cfg->T + t) * J;
    for (int j = 0; j < J; j++)
        s->mult[j] = cfg->dropout_p > 0.0
                         ? ref_dropout_multiplier(&cfg->dropout, cfg->dropout_p, first + j)
                         : 1.0;
}

/* O[t] = Σ_j P̃[t,j]·v_all[j]. */
static void output_row(double *ot, const struct row_scratch *s,
                       const struct ref_attention_config *cfg, const struct head *hd,
                       const struct inputs *in) {
    const int D = cfg->D, J = cfg->L + cfg->S;
    for (int d = 0; d < D; d++) ot[d] = 0.0;
    for (int j = 0; j < J; j++) {
        const double *vj = concat_row(cfg, hd, in->prefix_v, in->v, j);
        double pj = s->prob[j] * s->mult[j];
        for (int d = 0; d < D; d++) ot[d] += pj * vj[d];
    }
}

static void check_config(const struct ref_attention_config *cfg, const struct inputs *in) {
    assert(cfg->B >= 0 && cfg->H >= 0 && cfg->T >= 0 && cfg->S >= 0 && cfg->L >= 0);
    assert(cfg->D > 0);
    assert(cfg->L == 0 || (in->prefix_k && in->prefix_v));
    assert(cfg->dropout_p >= 0.0 && cfg->dropout_p <= 1.0);
    (void)cfg; /* unused when NDEBUG */
    (void)in;
}

void ref_attention_forward(double *o, double *probs, const double *q, const double *k,
                           const double *v, const double *prefix_k, const double *prefix_v,
                           const uint8_t *keep, const struct ref_attention_config *cfg) {
    const struct inputs in = {q, k, v, prefix_k, prefix_v, keep};
    check_config(cfg, &in);
    const int T = cfg->T, D = cfg->D, J = cfg->L + cfg->S;
    struct row_scratch s = scratch_alloc(J);
    for (int b = 0; b < cfg->B; b++) {
        for (int h = 0; h < cfg->H; h++) {
            const struct head hd = head_at(cfg, b, h);
            for (int t = 0; t < T; t++) {
                probs_row(&s, cfg, &hd, t, &in);
                output_row(o + hd.q_off + (size_t)t * D, &s, cfg, &hd, &in);
                if (probs)
                    memcpy(probs + (((size_t)b * cfg->H + h) * T + t) * J, s.prob,
                           (size_t)J * sizeof(double));
            }
        }
    }
    scratch_free(&s);
}

/* dv_all[j] += P̃[t,j]·dO[t] and s->dprob[j] = (dO[t]·v_all[j])·m[j]. */
static void backward_values_row(struct row_scratch *s, const struct ref_attention_config *cfg,
                                const struct head *hd, const double *dout_t,
                                const struct inputs *in, const struct grads *g) {
    const int D = cfg->D, J = cfg->L + cfg->S;
    for (int j = 0; j < J; j++) {
        double *dvj = concat_grad_row(cfg, hd, g->dprefix_v, g->dv, j);
        double pj = s->prob[j] * s->mult[j];
        if (dvj)
            for (int d = 0; d < D; d++) dvj[d] += pj * dout_t[d];
        s->dprob[j] = dot(dout_t, concat_row(cfg, hd, in->prefix_v, in->v, j), D) * s->mult[j];
    }
}

/* dS = P ⊙ (dP − Σ P ⊙ dP); dq[t] = scale·Σ_j dS_j·k_all[j];
 * dk_all[j] += scale·dS_j·q[t]. */
static void backward_scores_row(const struct row_scratch *s,
                                const struct ref_attention_config *cfg, const struct head *hd,
                                int t, const struct inputs *in, const struct grads *g) {
    const int D = cfg->D, J = cfg->L + cfg->S;
    const double scale = effective_scale(cfg);
    const double *qt = in->q + hd->q_off + (size_t)t * D;
    double *dqt = g->dq ? g->dq + hd->q_off + (size_t)t * D : NULL;
    double row_dot = dot(s->prob, s->dprob, J);
    for (int j = 0; j < J; j++) {
        double dscore = scale * s->prob[j] * (s->dprob[j] - row_dot);
        const double *kj = concat_row(cfg, hd, in->prefix_k, in->k, j);
        double *dkj = concat_grad_row(cfg, hd, g->dprefix_k, g->dk, j);
        for (int d = 0; d < D; d++) {
            if (dqt) dqt[d] += dscore * kj[d];
            if (dkj) dkj[d] += dscore * qt[d];
        }
    }
}

static void zero(double *x, size_t n) {
    if (x) memset(x, 0, n * sizeof(double));
}

void ref_attention_backward(double *dq, double *dk, double *dv, double *dprefix_k,
                            double *dprefix_v, const double *dout, const double *q,
                            const double *k, const double *v, const double *prefix_k,
                            const double *prefix_v, const uint8_t *keep,
                            const struct ref_attention_config *cfg) {
    const struct inputs in = {q, k, v, prefix_k, prefix_v, keep};
    const struct grads g = {dq, dk, dv, cfg->L ? dprefix_k : NULL, cfg->L ? dprefix_v : NULL};
    check_config(cfg, &in);
    const size_t BH = (size_t)cfg->B * cfg->H;
    zero(dq, BH * cfg->T * cfg->D);
    zero(dk, BH * cfg->S * cfg->D);
    zero(dv, BH * cfg->S * cfg->D);
    struct row_scratch s = scratch_alloc(cfg->L + cfg->S);
    /* Fixed loop order b, h, t, j: the batch sum into the prefix gradients is
     * deterministic. */
    for (int b = 0; b < cfg->B; b++) {
        for (int h = 0; h < cfg->H; h++) {
            const struct head hd = head_at(cfg, b, h);
            for (int t = 0; t < cfg->T; t++) {
                probs_row(&s, cfg, &hd, t, &in);
                backward_values_row(&s, cfg, &hd, dout + hd.q_off + (size_t)t * cfg->D, &in,
                                    &g);
                backward_scores_row(&s, cfg, &hd, t, &in, &g);
            }
        }
    }
    scratch_free(&s);
}
