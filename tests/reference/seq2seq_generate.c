/* Seq2seq reference: greedy generation (seq2seq.h). The encoder runs once;
 * each step re-runs the decoder on every token so far (no cache: the
 * reference checks a cached GPU decoder, it must not share its logic). */
#include "seq2seq.h"
#include "ref.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* The first index of the largest value. */
static int32_t argmax(const double *z, int V) {
    int32_t best = 0;
    for (int v = 1; v < V; v++)
        if (z[v] > z[best]) best = v;
    return best;
}

int refs_generate_greedy(struct refs *m, int32_t *out, const int32_t *ids, const uint8_t *mask, int B, int S,
                         int max_new) {
    const struct model_arch *a = &m->arch;
    const int d = a->hidden, V = a->vocab_size;
    assert(B > 0 && S > 0 && max_new > 0 && max_new < a->max_positions);
    for (int i = 0; i < B * max_new; i++) out[i] = a->pad_token_id;
    /* The encoder, once; its output and mask outlive the decoder's buffers. */
    refs_ensure_acts(m, B, S, 1);
    struct refs_acts *acts = &m->acts;
    memcpy(acts->enc.ids, ids, (size_t)B * S * sizeof(int32_t));
    for (int n = 0; n < B * S; n++) acts->enc.keep[n] = mask ? mask[n] != 0 : 1;
    ref_positions_offset(acts->enc.pos, B, S, a->position_offset);
    ref_deltas_reparams_forward(&m->deltas);
    refs_encoder_forward(m);
    double *enc_out = malloc((size_t)B * S * d * sizeof(double));
    uint8_t *enc_keep = malloc((size_t)B * S);
    int32_t *dec = malloc((size_t)B * (max_new + 1) * sizeof(int32_t));
    bool *done = calloc((size_t)B, sizeof(bool));
    assert(enc_out && enc_keep && dec && done);
    memcpy(enc_out, acts->enc.out, (size_t)B * S * d * sizeof(double));
    memcpy(enc_keep, acts->enc.keep, (size_t)B * S);

    int steps = 0;
    for (int t = 1; t <= max_new; t++) {
        /* dec (B,t): decoder_start, then the tokens so far. */
        for (int b = 0; b < B; b++) {
            dec[(size_t)b * t] = a->decoder_start_token_id;
            for (int j = 1; j < t; j++) dec[(size_t)b * t + j] = out[(size_t)b * max_new + j - 1];
        }
        refs_ensure_acts(m, B, S, t);
        memcpy(acts->dec.ids, dec, (size_t)B * t * sizeof(int32_t));
        memset(acts->dec.keep, 1, (size_t)B * t);
        ref_positions_offset(acts->dec.pos, B, t, a->position_offset);
        refs_decoder_forward(m, enc_out, enc_keep);
        steps = t;
        bool all_done = true;
        for (int b = 0; b < B; b++) {
            if (done[b]) continue;
            int32_t y = argmax(acts->logits + ((size_t)b * t + t - 1) * V, V);
            if (t == 1 && a->forced_bos_token_id >= 0) y = a->forced_bos_token_id;
            out[(size_t)b * max_new + t - 1] = y;
            done[b] = y == a->eos_token_id;
            all_done = all_done && done[b];
        }
        if (all_done) break;
    }
    free(enc_out);
    free(enc_keep);
    free(dec);
    free(done);
    return steps;
}
