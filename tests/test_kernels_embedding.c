/* Embedding gather (tables f32/f16/bf16, accumulate, invalid ids, tables
 * split across binding ranges), the deterministic scatter-add backward and
 * its host grouping, learned positions (offset and RoBERTa ids), and RoPE
 * forward/backward, against the reference. */
#include "kerneltest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double U = KT_EPS_F32;


static bool bits_equal(const double *a, const double *b, size_t n, const char *what) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) {
            if (!bad) first = i;
            bad++;
        }
    return CHECKF(bad == 0, "%s: %zu of %zu differ; first [%zu] = %.9g, want %.9g", what, bad, n,
                  first, bad ? a[first] : 0.0, bad ? b[first] : 0.0);
}

/* An int32 tensor with a guard after it. */
static bool ids_upload(vp_context *ctx, struct vk_buffer *b, const int32_t *ids, size_t n) {
    size_t bytes = n * 4 + KT_GUARD_BYTES;
    unsigned char *host = malloc(bytes);
    memcpy(host, ids, n * 4);
    memset(host + n * 4, 0x5A, KT_GUARD_BYTES);
    bool ok = CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, bytes, b) == VP_OK) &&
              CHECK(vk_buffer_write(ctx, b, 0, host, bytes) == VP_OK);
    free(host);
    return ok;
}

/* ---- gather ------------------------------------------------------------------------ */

struct gather_args {
    struct kt_tensor *out, *table, *out2, *table2;
    struct vk_buffer *ids, *ids2;
    uint32_t N, V, C, V2;
    enum vp_dtype ttype;
};

/* out = table[ids]; out2 = table[ids] + table2[ids2] (accumulate). */
static vp_status record_gather(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct gather_args *a = arg;
    vp_status s = kernel_embedding_forward(ctx, rec, &a->out->buf, a->ids, &a->table->buf, a->N,
                                           a->V, a->C, a->ttype, false);
    if (s == VP_OK)
        s = kernel_embedding_forward(ctx, rec, &a->out2->buf, a->ids, &a->table->buf, a->N, a->V,
                                     a->C, a->ttype, false);
    if (s == VP_OK)
        s = kernel_embedding_forward(ctx, rec, &a->out2->buf, a->ids2, &a->table2->buf, a->N, a->V2,
                                     a->C, VP_DTYPE_F32, true);
    return s;
}

/* The gather copies stored values exactly (the reference reads the same
 * rounded table); the accumulated sum is one fp32 rounding, ≤ u·|sum|.
 * Ids outside [0, V) give zero rows. */
static void gather_case(uint32_t N, uint32_t V, uint32_t C, enum vp_dtype ttype, bool invalid,
                        uint64_t binding_range, uint64_t seed) {
    size_t n = (size_t)N * C;
    const uint32_t V2 = 50;
    double *table = kt_dalloc((size_t)V * C), *table2 = kt_dalloc((size_t)V2 * C), *want = kt_dalloc(n),
           *want2 = kt_dalloc(n), *got = kt_dalloc(n), *b = kt_dalloc(n), *add = kt_dalloc(n);
    int32_t *ids = malloc(N * 4), *ids2 = malloc(N * 4), *safe = malloc(N * 4);
    kt_random(table, (size_t)V * C, -1, 1, ttype, seed);
    kt_random(table2, (size_t)V2 * C, -1, 1, VP_DTYPE_F32, seed + 1);
    uint64_t st = seed + 2;
    for (uint32_t i = 0; i < N; i++) {
        ids[i] = (int32_t)(th_rand_u64(&st) % V);
        ids2[i] = (int32_t)(th_rand_u64(&st) % V2);
        if (invalid && i % 5 == 3) ids[i] = i % 2 ? -1 - (int32_t)i : (int32_t)(V + i);
        safe[i] = ids[i] < 0 || ids[i] >= (int32_t)V ? 0 : ids[i];
    }
    ref_embedding_forward(want, safe, table, (int)N, (int)V, (int)C);
    for (uint32_t i = 0; i < N; i++)
        if (safe[i] != ids[i])
            for (uint32_t c = 0; c < C; c++) want[(size_t)i * C + c] = 0.0;
    ref_embedding_forward(add, ids2, table2, (int)N, (int)V2, (int)C);
    for (size_t i = 0; i < n; i++) want2[i] = want[i] + add[i];

    vp_context *ctx = kt_context(binding_range);
    struct kt_tensor out = {0}, tab = {0}, out2 = {0}, tab2 = {0};
    struct vk_buffer bid = {0}, bid2 = {0};
    struct vk_recorder *rec = NULL;
    const vp_pool A = VP_POOL_ACTIVATIONS;
    char tag[96];
    snprintf(tag, sizeof tag, "gather N=%u V=%u C=%u table=%s", N, V, C, vp_dtype_name(ttype));
    if (ctx && kt_alloc(ctx, &out, A, VP_DTYPE_F32, n, NAN) &&
        kt_upload(ctx, &tab, VP_POOL_FROZEN, ttype, table, (size_t)V * C) &&
        kt_alloc(ctx, &out2, A, VP_DTYPE_F32, n, NAN) &&
        kt_upload(ctx, &tab2, VP_POOL_FROZEN, VP_DTYPE_F32, table2, (size_t)V2 * C) &&
        ids_upload(ctx, &bid, ids, N) && ids_upload(ctx, &bid2, ids2, N) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct gather_args a = {&out, &tab, &out2, &tab2, &bid, &bid2, N, V, C, V2, ttype};
        if (kt_run(ctx, rec, record_gather, &a)) {
            if (binding_range) th_diag("%s: %u dispatches", tag, vk_recorder_dispatch_count(rec));
            if (kt_download(ctx, &out, got)) bits_equal(got, want, n, tag);
            if (kt_download(ctx, &out2, got)) {
                for (size_t i = 0; i < n; i++) b[i] = U * fabs(want2[i]) + 1e-37;
                KT_CHECK_BOUND(got, want2, b, n, "gather + accumulate");
            }
            double *tcopy = kt_dalloc((size_t)V * C);
            CHECK(kt_download(ctx, &tab, tcopy)); /* the table's guard */
            free(tcopy);
        }
    }
    vk_recorder_destroy(rec);
    struct kt_tensor *all[] = {&out, &tab, &out2, &tab2};
    for (int i = 0; i < 4; i++)
        if (all[i]->buf.buffer) kt_free(ctx, all[i]);
    if (bid.buffer) vk_buffer_free(ctx, &bid);
    if (bid2.buffer) vk_buffer_free(ctx, &bid2);
    free(table), free(table2), free(want), free(want2), free(got), free(b), free(add);
    free(ids), free(ids2), free(safe);
}

static void gather_tables(void) {
    const enum vp_dtype types[] = {VP_DTYPE_F32, VP_DTYPE_F16, VP_DTYPE_BF16};
    for (int t = 0; t < 3; t++) {
        gather_case(1, 1, 1, types[t], false, 0, 10 + t);
        gather_case(37, 101, 7, types[t], false, 0, 20 + t); /* odd C: rows share words */
        gather_case(64, 1000, 64, types[t], true, 0, 30 + t);
    }
}

/* A 64 KiB binding range splits the table (and the output rows). */
static void gather_table_split(void) {
    gather_case(300, 1000, 40, VP_DTYPE_F32, true, 64 << 10, 40);
    gather_case(300, 1000, 41, VP_DTYPE_BF16, true, 64 << 10, 41);
}

/* ---- scatter-add backward ---------------------------------------------------------- */

static void groups_layout(void) {
    const int32_t ids[] = {5, 2, 5, 0, 2, 5};
    uint32_t w[3 * 6 + 2];
    CHECK(kernel_embedding_groups_words(6) == 20);
    CHECK(kernel_embedding_groups_build(w, ids, 6, 6) == VP_OK);
    const uint32_t want[20] = {3,              /* U */
                               0, 1, 3, 6, 0, 0, 0, /* offsets (N + 1) */
                               0, 2, 5, 0, 0, 0,    /* ids */
                               3, 1, 4, 0, 2, 5};   /* positions */
    CHECK(memcmp(w, want, sizeof want) == 0);
    const int32_t bad[] = {1, 6};
    CHECK(kernel_embedding_groups_build(w, bad, 2, 6) == VP_ERROR_BAD_INPUT);
    CHECK(strstr(vp_last_error(), "id 6") != NULL);
}

struct scatter_args {
    struct kt_tensor *dtable, *dout;
    struct vk_buffer *groups;
    uint32_t N, V, C;
};

static vp_status record_scatter(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct scatter_args *a = arg;
    return kernel_embedding_backward(ctx, rec, &a->dtable->buf, &a->dout->buf, a->groups, a->N,
                                     a->V, a->C);
}

/* Every table row is its initial value plus its ids' dout rows added one
 * at a time in increasing position, as the reference does: k additions of
 * fp32 rounding, ≤ k·u·(|initial| + Σ|dout|). Rows no id touches stay
 * bit-identical. Run twice on the same recording: accumulates again, and
 * identically. */
static void scatter_case(uint32_t N, uint32_t V, uint32_t C, int hot, uint64_t binding_range,
                         uint64_t seed) {
    size_t n = (size_t)N * C, nt = (size_t)V * C;
    double *dt0 = kt_dalloc(nt), *dout = kt_dalloc(n), *want = kt_dalloc(nt), *got = kt_dalloc(nt),
           *got2 = kt_dalloc(nt), *b = kt_dalloc(nt), *abs = kt_dalloc(nt);
    int32_t *ids = malloc(N * 4), *count = calloc(V, 4);
    uint32_t *words = malloc(kernel_embedding_groups_words(N) * 4);
    kt_random(dt0, nt, -1, 1, VP_DTYPE_F32, seed);
    kt_random(dout, n, -1, 1, VP_DTYPE_F32, seed + 1);
    uint64_t st = seed + 2;
    for (uint32_t i = 0; i < N; i++) {
        /* `hot` in 100 tokens are id 1 (a padding token repeated). */
        ids[i] = (int)(th_rand_u64(&st) % 100) < hot ? 1 : (int32_t)(th_rand_u64(&st) % V);
        count[ids[i]]++;
    }
    memcpy(want, dt0, nt * sizeof *want);
    ref_embedding_backward(want, dout, ids, (int)N, (int)V, (int)C);
    for (size_t i = 0; i < nt; i++) abs[i] = fabs(dt0[i]);
    for (uint32_t i = 0; i < N; i++)
        for (uint32_t c = 0; c < C; c++) abs[(size_t)ids[i] * C + c] += fabs(dout[(size_t)i * C + c]);
    /* 1.001 covers the second-order terms of k roundings, (1 + u)^k − 1 − k·u. */
    for (size_t i = 0; i < nt; i++) b[i] = 1.001 * count[i / C] * U * abs[i] + 1e-37;
    CHECK(kernel_embedding_groups_build(words, ids, N, V) == VP_OK);

    vp_context *ctx = kt_context(binding_range);
    struct kt_tensor tdt = {0}, tdo = {0};
    struct vk_buffer groups = {0};
    struct vk_recorder *rec = NULL;
    char tag[96];
    snprintf(tag, sizeof tag, "scatter N=%u V=%u C=%u", N, V, C);
    if (ctx && kt_upload(ctx, &tdt, VP_POOL_TRAINABLE, VP_DTYPE_F32, dt0, nt) &&
        kt_upload(ctx, &tdo, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, dout, n) &&
        ids_upload(ctx, &groups, (const int32_t *)words, kernel_embedding_groups_words(N)) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct scatter_args a = {&tdt, &tdo, &groups, N, V, C};
        if (kt_run(ctx, rec, record_scatter, &a) && kt_download(ctx, &tdt, got)) {
            if (binding_range) th_diag("%s: %u dispatches", tag, vk_recorder_dispatch_count(rec));
            KT_CHECK_BOUND(got, want, b, nt, tag);
            size_t untouched_bad = 0;
            for (size_t i = 0; i < nt; i++)
                untouched_bad += count[i / C] == 0 && memcmp(&got[i], &dt0[i], sizeof got[i]) != 0;
            CHECKF(untouched_bad == 0, "%zu values of rows without ids changed", untouched_bad);
            /* Again from the same starting point: the same bits. */
            float *f = malloc(nt * 4);
            for (size_t i = 0; i < nt; i++) f[i] = (float)dt0[i];
            CHECK(vk_buffer_write(ctx, &tdt.buf, 0, f, nt * 4) == VP_OK);
            free(f);
            if (CHECK(vk_recorder_run(rec) == VP_OK) && kt_download(ctx, &tdt, got2))
                bits_equal(got2, got, nt, "scatter run to run");
        }
    }
    vk_recorder_destroy(rec);
    if (tdt.buf.buffer) kt_free(ctx, &tdt);
    if (tdo.buf.buffer) kt_free(ctx, &tdo);
    if (groups.buffer) vk_buffer_free(ctx, &groups);
    free(dt0), free(dout), free(want), free(got), free(got2), free(b), free(abs);
    free(ids), free(count), free(words);
}

static void scatter_backward(void) {
    scatter_case(1, 1, 1, 0, 0, 50);
    scatter_case(97, 40, 13, 30, 0, 51); /* many repeats, id 1 about 30 times */
    scatter_case(512, 3000, 64, 5, 0, 52);
}

static void scatter_table_split(void) { scatter_case(300, 1000, 40, 10, 64 << 10, 53); }

/* ---- positions --------------------------------------------------------------------- */

/* Host position ids match the reference; the learned position rows
 * gathered and added to token embeddings match the reference sum. */
static void positions(void) {
    const uint32_t B = 3, T = 9;
    int32_t got[27], want[27], ids[27];
    kernel_positions_offset(got, B, T, 2);
    ref_positions_offset(want, (int)B, (int)T, 2);
    CHECK(memcmp(got, want, sizeof got) == 0);
    uint64_t st = 70;
    for (int i = 0; i < 27; i++) ids[i] = (int32_t)(th_rand_u64(&st) % 5); /* pad id 1 common */
    for (int32_t past = 0; past < 3; past += 2) {
        kernel_positions_roberta(got, ids, B, T, 1, past);
        ref_positions_roberta(want, ids, (int)B, (int)T, 1, past);
        CHECK(memcmp(got, want, sizeof got) == 0);
    }
    /* Token embeddings (bf16, V = 5) plus RoBERTa positions (P = 16): the
     * gather case's accumulate path with these ids. */
    const uint32_t C = 6, P = 16;
    double tok[5 * 6], pos[16 * 6], w1[27 * 6], w2[27 * 6], want_sum[27 * 6], g[27 * 6], bnd[27 * 6];
    kt_random(tok, 30, -1, 1, VP_DTYPE_BF16, 71);
    kt_random(pos, 96, -1, 1, VP_DTYPE_F32, 72);
    kernel_positions_roberta(got, ids, B, T, 1, 0);
    ref_embedding_forward(w1, ids, tok, 27, 5, (int)C);
    ref_embedding_forward(w2, got, pos, 27, (int)P, (int)C);
    for (int i = 0; i < 27 * 6; i++) want_sum[i] = w1[i] + w2[i], bnd[i] = U * fabs(want_sum[i]) + 1e-37;
    vp_context *ctx = kt_context(0);
    struct kt_tensor out = {0}, t1 = {0}, t2 = {0}, scratch = {0};
    struct vk_buffer b1 = {0}, b2 = {0};
    struct vk_recorder *rec = NULL;
    if (ctx && kt_alloc(ctx, &out, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, 27 * 6, NAN) &&
        kt_alloc(ctx, &scratch, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, 27 * 6, NAN) &&
        kt_upload(ctx, &t1, VP_POOL_FROZEN, VP_DTYPE_BF16, tok, 30) &&
        kt_upload(ctx, &t2, VP_POOL_FROZEN, VP_DTYPE_F32, pos, 96) && ids_upload(ctx, &b1, ids, 27) &&
        ids_upload(ctx, &b2, got, 27) && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct gather_args a = {&out, &t1, &scratch, &t2, &b1, &b2, 27, 5, C, P, VP_DTYPE_BF16};
        /* record_gather: scratch = tok[ids], then scratch += pos[positions]. */
        if (kt_run(ctx, rec, record_gather, &a) && kt_download(ctx, &scratch, g))
            KT_CHECK_BOUND(g, want_sum, bnd, 27 * 6, "token + RoBERTa position embeddings");
    }
    vk_recorder_destroy(rec);
    struct kt_tensor *all[] = {&out, &t1, &t2, &scratch};
    for (int i = 0; i < 4; i++)
        if (all[i]->buf.buffer) kt_free(ctx, all[i]);
    if (b1.buffer) vk_buffer_free(ctx, &b1);
    if (b2.buffer) vk_buffer_free(ctx, &b2);
}

/* ---- RoPE -------------------------------------------------------------------------- */

struct rope_args {
    struct kt_tensor *x, *y, *dy, *dx, *table;
    struct vk_buffer *pos;
    uint32_t BH, T, D, P;
    int32_t offset;
    bool in_place;
};

static vp_status record_rope(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct rope_args *a = arg;
    vp_status s = kernel_rope_forward(ctx, rec, &a->y->buf, &a->x->buf, &a->table->buf, a->pos,
                                      a->BH, a->T, a->D, a->P, a->offset);
    if (s == VP_OK && a->in_place) /* dx = dy, rotated back in place */
        s = vk_recorder_copy(rec, &a->dx->buf, 0, &a->dy->buf, 0, a->dy->n * 4);
    if (s == VP_OK)
        s = kernel_rope_backward(ctx, rec, &a->dx->buf, a->in_place ? &a->dx->buf : &a->dy->buf,
                                 &a->table->buf, a->pos, a->BH, a->T, a->D, a->P, a->offset);
    return s;
}

/* Each output is x1·cos ∓ x2·sin with cos and sin from the table (fp32
 * roundings of the double values, ≤ u relative each), two products and a
 * difference: ≤ 4u·(|x1| + |x2|). Angles are exact in the table, so large
 * positions (up to 4000 here) are as accurate as small ones. */
static void rope_case(uint32_t B, uint32_t H, uint32_t T, uint32_t D, int32_t offset, bool with_pos,
                      uint32_t P, bool in_place, uint64_t binding_range, uint64_t seed) {
    size_t n = (size_t)B * H * T * D;
    const double theta = 10000.0;
    double *x = kt_dalloc(n), *dy = kt_dalloc(n), *y = kt_dalloc(n), *dx = kt_dalloc(n), *got = kt_dalloc(n),
           *b = kt_dalloc(n), *bb = kt_dalloc(n);
    float *table = malloc((size_t)P * D * 4 + 4);
    double *tabled = kt_dalloc((size_t)P * D);
    int32_t *pos = malloc(T * 4);
    uint64_t st = seed;
    for (uint32_t t = 0; t < T; t++) pos[t] = (int32_t)(th_rand_u64(&st) % (P - (uint32_t)offset));
    kt_random(x, n, -1, 1, VP_DTYPE_F32, seed + 1);
    kt_random(dy, n, -1, 1, VP_DTYPE_F32, seed + 2);
    ref_rope_forward(y, x, with_pos ? pos : NULL, (int)B, (int)H, (int)T, (int)D, offset, theta);
    ref_rope_backward(dx, dy, with_pos ? pos : NULL, (int)B, (int)H, (int)T, (int)D, offset, theta);
    uint32_t half = D / 2;
    for (size_t r = 0; r < n / D; r++)
        for (uint32_t i = 0; i < half; i++) {
            size_t k1 = r * D + i, k2 = k1 + half;
            b[k1] = b[k2] = 4 * U * (fabs(x[k1]) + fabs(x[k2])) + 1e-37;
            bb[k1] = bb[k2] = 4 * U * (fabs(dy[k1]) + fabs(dy[k2])) + 1e-37;
        }
    kernel_rope_table(table, P, D, theta);
    for (size_t i = 0; i < (size_t)P * D; i++) tabled[i] = table[i];

    vp_context *ctx = kt_context(binding_range);
    struct kt_tensor tx = {0}, ty = {0}, tdy = {0}, tdx = {0}, tt = {0};
    struct vk_buffer bp = {0};
    struct vk_recorder *rec = NULL;
    const vp_pool A = VP_POOL_ACTIVATIONS;
    char tag[128];
    snprintf(tag, sizeof tag, "rope B=%u H=%u T=%u D=%u offset=%d%s%s", B, H, T, D, offset,
             with_pos ? " pos" : "", in_place ? " in-place" : "");
    if (ctx && kt_upload(ctx, &tx, A, VP_DTYPE_F32, x, n) &&
        (in_place ? kt_upload(ctx, &ty, A, VP_DTYPE_F32, x, n)
                  : kt_alloc(ctx, &ty, A, VP_DTYPE_F32, n, NAN)) &&
        kt_upload(ctx, &tdy, A, VP_DTYPE_F32, dy, n) && kt_alloc(ctx, &tdx, A, VP_DTYPE_F32, n, NAN) &&
        kt_upload(ctx, &tt, VP_POOL_FROZEN, VP_DTYPE_F32, tabled, (size_t)P * D) &&
        ids_upload(ctx, &bp, pos, T) && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        /* In place: y is a copy of x and is rotated onto itself. */
        struct rope_args a = {in_place ? &ty : &tx, &ty, &tdy, &tdx, &tt, with_pos ? &bp : NULL,
                              B * H, T, D, P, offset, in_place};
        if (kt_run(ctx, rec, record_rope, &a)) {
            if (binding_range) th_diag("%s: %u dispatches", tag, vk_recorder_dispatch_count(rec));
            char what[160];
            snprintf(what, sizeof what, "%s forward", tag);
            if (kt_download(ctx, &ty, got)) KT_CHECK_BOUND(got, y, b, n, what);
            snprintf(what, sizeof what, "%s backward", tag);
            if (kt_download(ctx, &tdx, got)) KT_CHECK_BOUND(got, dx, bb, n, what);
        }
    }
    vk_recorder_destroy(rec);
    struct kt_tensor *all[] = {&tx, &ty, &tdy, &tdx, &tt};
    for (int i = 0; i < 5; i++)
        if (all[i]->buf.buffer) kt_free(ctx, all[i]);
    if (bp.buffer) vk_buffer_free(ctx, &bp);
    free(x), free(dy), free(y), free(dx), free(got), free(b), free(bb), free(table), free(tabled),
        free(pos);
}

static void rope(void) {
    rope_case(1, 1, 1, 2, 0, false, 1, false, 0, 80);
    rope_case(2, 3, 7, 16, 3, false, 10, false, 0, 81);
    rope_case(2, 2, 5, 64, 4, true, 64, false, 0, 82);
    rope_case(1, 4, 9, 128, 0, true, 4096, false, 0, 83); /* positions up to 4095 */
    rope_case(3, 1, 6, 10, 1, false, 8, true, 0, 84);     /* in place, D/2 odd */
}

static void rope_rows_split(void) { rope_case(2, 8, 64, 64, 0, false, 64, false, 64 << 10, 85); }

/* Misuse: odd head dimension, positions beyond the table (host-checked
 * without pos; NaN rows with a device pos). */
static void rope_errors(void) {
    vp_context *ctx = kt_context(0);
    struct vk_recorder *rec = NULL;
    struct kt_tensor x = {0}, t = {0};
    double tab[4 * 4];
    float ft[16];
    kernel_rope_table(ft, 4, 4, 10000.0);
    for (int i = 0; i < 16; i++) tab[i] = ft[i];
    if (ctx && kt_alloc(ctx, &x, VP_POOL_ACTIVATIONS, VP_DTYPE_F32, 2 * 4, 1.0) &&
        kt_upload(ctx, &t, VP_POOL_FROZEN, VP_DTYPE_F32, tab, 16) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK) && CHECK(vk_recorder_begin(rec) == VP_OK)) {
        CHECK(kernel_rope_forward(ctx, rec, &x.buf, &x.buf, &t.buf, NULL, 1, 2, 3, 4, 0) ==
              VP_ERROR_INVALID_ARGUMENT);
        CHECK(kernel_rope_forward(ctx, rec, &x.buf, &x.buf, &t.buf, NULL, 1, 2, 4, 4, 3) ==
              VP_ERROR_INVALID_ARGUMENT);
        struct vk_buffer pos;
        const int32_t p[2] = {1, 7}; /* 7 is outside the 4-row table */
        if (ids_upload(ctx, &pos, p, 2)) {
            double got[8];
            if (CHECK(kernel_rope_forward(ctx, rec, &x.buf, &x.buf, &t.buf, &pos, 1, 2, 4, 4, 0) ==
                      VP_OK) &&
                CHECK(vk_recorder_end(rec) == VP_OK) && CHECK(vk_recorder_run(rec) == VP_OK) &&
                kt_download(ctx, &x, got)) {
                CHECK(!isnan(got[0]) && !isnan(got[3]));
                CHECK(isnan(got[4]) && isnan(got[7]));
            }
            vk_buffer_free(ctx, &pos);
        }
    }
    vk_recorder_destroy(rec);
    if (x.buf.buffer) kt_free(ctx, &x);
    if (t.buf.buffer) kt_free(ctx, &t);
}

int main(int argc, char **argv) {
    static const struct th_case cases[] = {
        TH_CASE(gather_tables),
        TH_CASE(gather_table_split),
        TH_CASE(groups_layout),
        TH_CASE(scatter_backward),
        TH_CASE(scatter_table_split),
        TH_CASE(positions),
        TH_CASE(rope),
        TH_CASE(rope_rows_split),
        TH_CASE(rope_errors)
    };
    int status = vt_main(cases, sizeof cases / sizeof cases[0], argc, argv);
    kt_contexts_destroy();
    return status;
}
