/* Embedding gather, its deterministic scatter-add backward, and position
 * ids for learned position embeddings (shaders/embedding_*.comp). */
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>

struct embedding_forward_push {
    uint32_t rows, C, v0, v1, V, first, pad[2];
};
_Static_assert(sizeof(struct embedding_forward_push) == 32,
               "matches Push in shaders/embedding_forward.comp");
struct embedding_backward_push {
    uint32_t N, C, v0, v1;
};
_Static_assert(sizeof(struct embedding_backward_push) == 16,
               "matches Push in shaders/embedding_backward.comp");

vp_status kernel_embedding_forward(vp_context *ctx, struct vk_recorder *rec,
                                   const struct vk_buffer *out, const struct vk_buffer *ids,
                                   const struct vk_buffer *table, uint32_t N, uint32_t V,
                                   uint32_t C, enum vp_dtype ttype, bool accumulate) {
    static const char op[] = "embedding_forward";
    if (N == 0 || C == 0) return VP_OK;
    if ((unsigned)ttype > VP_DTYPE_BF16)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: unknown table type %d", op, (int)ttype);
    uint64_t trow = (uint64_t)C * vp_dtype_size(ttype);
    vp_status st = kernel_check_tensor(ctx, out, (uint64_t)N * C * 4, false, op, "out");
    if (st == VP_OK) st = kernel_check_tensor(ctx, ids, (uint64_t)N * 4, false, op, "ids");
    if (st == VP_OK) st = kernel_check_tensor(ctx, table, (uint64_t)V * trow, false, op, "table");
    if (st != VP_OK) return st;
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    char defines[48];
    snprintf(defines, sizeof defines, "TDTYPE=%d\nACCUMULATE=%d\n", (int)ttype, accumulate);
    struct vk_pipeline *pipe;
    st = kernel_pipeline(ctx, "embedding_forward.comp", defines, 3,
                         sizeof(struct embedding_forward_push), wg, &pipe);
    const uint64_t out_rows[2] = {4, (uint64_t)C * 4};
    uint64_t nchunk = kernel_rows_per_dispatch(ctx, N, out_rows, 2, 0);
    uint64_t vchunk = V ? kernel_rows_per_dispatch(ctx, V, &trow, 1, 0) : 1;
    if (st == VP_OK && (nchunk == 0 || vchunk == 0))
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: a row of %u values does not fit the binding range",
                       op, C);
    for (uint64_t n0 = 0; n0 < N && st == VP_OK; n0 += nchunk) {
        uint64_t rows = N - n0 < nchunk ? N - n0 : nchunk;
        /* V = 0 still runs one dispatch, which writes the zeros. */
        for (uint64_t v0 = 0; (v0 < V || v0 == 0) && st == VP_OK; v0 += vchunk) {
            uint64_t vrows = V - v0 < vchunk ? V - v0 : vchunk;
            struct embedding_forward_push push = {(uint32_t)rows, C, (uint32_t)v0,
                                                  (uint32_t)(v0 + vrows), V, v0 == 0, {0, 0}};
            struct vk_bind binds[3] = {
                kernel_bind_rows(ids, 4, n0, rows, VK_ACCESS_READ),
                vrows ? kernel_bind_rows(table, trow, v0, vrows, VK_ACCESS_READ)
                      : (struct vk_bind){ids, 0, 4, VK_ACCESS_READ},
                kernel_bind_rows(out, (uint64_t)C * 4, n0, rows,
                                 accumulate ? VK_ACCESS_READ_WRITE : VK_ACCESS_WRITE),
            };
            uint32_t gx, gy;
            kernel_grid_1d(ctx, (rows * C + wg - 1) / wg, &gx, &gy);
            st = vk_recorder_dispatch(rec, pipe, binds, 3, &push, gx, gy, 1);
            if (V == 0) break;
        }
    }
    return st;
}

/* (id, position) pairs sort by id, then position: a total order, so qsort's
 * instability does not matter. */
static int cmp_pair(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

vp_status kernel_embedding_groups_build(uint32_t *words, const int32_t *ids, uint32_t N,
                                        uint32_t V) {
    for (uint32_t n = 0; n < N; n++)
        if (ids[n] < 0 || (uint32_t)ids[n] >= V)
            return vp_fail(VP_ERROR_BAD_INPUT, "embedding: token %u has id %d, outside [0, %u)", n,
                           ids[n], V);
    uint32_t *pairs = malloc((N ? N : 1) * 2 * sizeof *pairs);
    if (!pairs) return vp_fail(VP_ERROR_HOST_MEMORY, "embedding: no memory to group %u ids", N);
    for (uint32_t n = 0; n < N; n++) {
        pairs[2 * n] = (uint32_t)ids[n];
        pairs[2 * n + 1] = n;
    }
    qsort(pairs, N, 2 * sizeof *pairs, cmp_pair);
    uint32_t *offsets = words + 1, *group_ids = words + (uint64_t)N + 2,
             *positions = words + 2 * (uint64_t)N + 2;
    uint32_t u = 0;
    for (uint32_t k = 0; k < N; k++) {
        if (k == 0 || pairs[2 * k] != pairs[2 * (k - 1)]) {
            offsets[u] = k;
            group_ids[u] = pairs[2 * k];
            u++;
        }
        positions[k] = pairs[2 * k + 1];
    }
    offsets[u] = N;
    /* Unused entries are zero so the whole block is defined. */
    for (uint32_t i = u + 1; i < N + 1; i++) offsets[i] = 0;
    for (uint32_t i = u; i < N; i++) group_ids[i] = 0;
    words[0] = u;
    free(pairs);
    return VP_OK;
}

vp_status kernel_embedding_backward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *dtable, const struct vk_buffer *dout,
                                    const struct vk_buffer *groups, uint32_t N, uint32_t V,
                                    uint32_t C) {
    static const char op[] = "embedding_backward";
    if (N == 0 || C == 0 || V == 0) return VP_OK;
    uint64_t trow = (uint64_t)C * 4;
    uint64_t gbytes = kernel_embedding_groups_words(N) * 4;
    vp_status st = kernel_check_tensor(ctx, dtable, (uint64_t)V * trow, false, op, "dtable");
    if (st == VP_OK) st = kernel_check_tensor(ctx, dout, (uint64_t)N * C * 4, true, op, "dout");
    if (st == VP_OK) st = kernel_check_tensor(ctx, groups, gbytes, true, op, "groups");
    if (st != VP_OK) return st;
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_pipeline *pipe;
    st = kernel_pipeline(ctx, "embedding_backward.comp", NULL, 3,
                         sizeof(struct embedding_backward_push), wg, &pipe);
    uint64_t vchunk = kernel_rows_per_dispatch(ctx, V, &trow, 1, 0);
    if (st == VP_OK && vchunk == 0)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: a row of %u values does not fit the binding range",
                       op, C);
    for (uint64_t v0 = 0; v0 < V && st == VP_OK; v0 += vchunk) {
        uint64_t vrows = V - v0 < vchunk ? V - v0 : vchunk;
        struct embedding_backward_push push = {N, C, (uint32_t)v0, (uint32_t)(v0 + vrows)};
        struct vk_bind binds[3] = {
            {groups, 0, gbytes, VK_ACCESS_READ},
            {dout, 0, (uint64_t)N * C * 4, VK_ACCESS_READ},
            kernel_bind_rows(dtable, trow, v0, vrows, VK_ACCESS_READ_WRITE),
        };
        uint32_t gx, gy;
        kernel_grid_1d(ctx, ((uint64_t)N * C + wg - 1) / wg, &gx, &gy);
        st = vk_recorder_dispatch(rec, pipe, binds, 3, &push, gx, gy, 1);
    }
    return st;
}

void kernel_positions_offset(int32_t *pos, uint32_t B, uint32_t T, int32_t offset) {
    for (uint32_t b = 0; b < B; b++)
        for (uint32_t t = 0; t < T; t++) pos[(size_t)b * T + t] = offset + (int32_t)t;
}

void kernel_positions_roberta(int32_t *pos, const int32_t *ids, uint32_t B, uint32_t T,
                              int32_t pad_token_id, int32_t past_length) {
    for (uint32_t b = 0; b < B; b++) {
        int32_t seen = 0; /* cumulative count of real tokens in this sequence */
        for (uint32_t t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            bool real = ids[i] != pad_token_id;
            seen += real;
            pos[i] = pad_token_id + (real ? seen + past_length : 0);
        }
    }
}
