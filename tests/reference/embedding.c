/* Token/position embedding gather, its deterministic scatter-add backward,
 * and position-id helpers. */
#include "ref.h"

#include <assert.h>
#include <string.h>

void ref_embedding_forward(double *out, const int32_t *ids, const double *table, int N, int V,
                           int C) {
    for (int n = 0; n < N; n++) {
        assert(ids[n] >= 0 && ids[n] < V);
        memcpy(out + (size_t)n * C, table + (size_t)ids[n] * C, (size_t)C * sizeof(double));
    }
    (void)V; /* only checked */
}

void ref_embedding_backward(double *dtable, const double *dout, const int32_t *ids, int N, int V,
                            int C) {
    for (int n = 0; n < N; n++) {
        assert(ids[n] >= 0 && ids[n] < V);
        double *row = dtable + (size_t)ids[n] * C;
        const double *d = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) row[c] += d[c];
    }
    (void)V;
}

void ref_positions_offset(int32_t *pos, int B, int T, int offset) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) pos[(size_t)b * T + t] = offset + t;
}

void ref_positions_roberta(int32_t *pos, const int32_t *ids, int B, int T, int pad_token_id,
                           int past_length) {
    for (int b = 0; b < B; b++) {
        int count = 0; /* cumsum of the non-pad mask along t */
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            bool real = ids[i] != pad_token_id;
            count += real;
            pos[i] = (real ? count + past_length : 0) + pad_token_id;
        }
    }
}
