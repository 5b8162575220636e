/* Generation for the GPU decoder: a KV cache in the activations pool, the
 * prompts' prefill and one token per step over the cache, every delta
 * applied as in the full forward (decoder_forward.c's trunk runs both; the
 * step swaps in the cached attention), and search.h's step callback.
 *
 * Layout (R rows, S = max_len cache slots, H heads, hd head width):
 *   kc[l], vc[l]  (R·H + R·H·S, hd): the step's new K (V) rows, then the
 *                 cache (R,H,S,hd), rotated and repeated per kv group
 *   kfull, vfull  (R,H,S,hd): what a step attends over, gathered from kc:
 *                 slot (r,h,s) = cache (parent[r],h,s) for s below the
 *                 parent's length, the new row (r,h) at that length, zero
 *                 after; copied back into the cache after the attention
 * The gather's index table is built on the host per step (beam search's
 * reorder and the append in one dispatch), so the step's recording never
 * changes: only staging does (ids, positions, key mask, table). */
#include "decoder_lm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct decoder_gen {
    struct decoder *m;
    struct decoder_gen_shape shape;
    int R, S;                          /* rows, cache slots */
    int Bp, Tp;                        /* the decoder's (prefill) batch shape */
    struct vk_buffer *kc, *vc;         /* (layers) each (R·H + R·H·S, hd) */
    struct vk_buffer kfull, vfull;     /* (R,H,S,hd) */
    struct vk_buffer ids_kv;           /* (R·H) constant: new row (r,h) ← k row r, kv head h/(H/G) */
    struct vk_buffer fill;             /* (R·H·S) constant: cache slot ← the prefill's kh row, or -1 */
    struct vk_buffer hsplit, hmerge;   /* (R·H) per-head adapters' tables for R rows */
    struct vk_buffer rpos, keep, table, last; /* per call: (R·H), (R,S) bytes, (R·H·S), (R) */
    struct vk_buffer xlast, logits;    /* (R,d), (R,V) */
    struct vk_buffer stage_in, stage_out;
    uint64_t in_ids, in_pos, in_rpos, in_keep, in_table, in_last;
    struct vk_recorder *prefill_rec, *step_rec;
    bool prefill_recorded, step_recorded;
    int *len;                          /* (R) tokens in each cache row */
    int *next_len;                     /* (R) scratch */
    int rows_live;                     /* rows of the last call */
    int batch;                         /* prompts set */
    int32_t *prompt_ids;               /* (shape.batch, shape.prompt_len) */
    int *prompt_lens;                  /* (shape.batch) */
    struct vk_profile *profile;        /* the next decode step's profile goes here (decoder_gen_profile_next) */
    struct model_owned owned;
};

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

void decoder_gen_batch_shape(const struct decoder_gen_shape *s, int *B, int *T) {
    /* The step runs R rows through the decoder's activations, which hold
     * B·T: add pad-only prefill rows when the prompts alone are too few. */
    *T = s->prompt_len;
    *B = s->batch;
    if (s->prompt_len > 0 && (int64_t)*B * *T < s->rows) *B = (s->rows + s->prompt_len - 1) / s->prompt_len;
}

static vp_status check_shape(const struct decoder *m, const struct decoder_gen_shape *s) {
    const struct model_arch *a = &m->arch;
    if (s->batch < 1 || s->prompt_len < 1 || s->rows < s->batch || s->max_len <= s->prompt_len)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: shape of %d prompts of up to %d tokens, %d rows, "
                       "%d tokens per sequence (needs rows ≥ prompts ≥ 1 and more tokens than the prompt)",
                       s->batch, s->prompt_len, s->rows, s->max_len);
    if ((int64_t)s->max_len + m->position_offset > a->max_positions)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: %d tokens per sequence from position %d exceed the "
                       "model's %d positions (max_position_embeddings / n_positions in config.json)",
                       s->max_len, m->position_offset, a->max_positions);
    return VP_OK;
}

/* One walk sizes the plan (alloc false) and allocates (alloc true). */
static vp_status gen_layout(struct decoder_gen *g, const struct decoder *m, bool alloc, uint64_t bytes[VP_POOL_COUNT]) {
    const struct model_arch *a = &m->arch;
    const uint64_t R = (uint64_t)g->R, S = (uint64_t)g->S, H = (uint64_t)a->heads, hd = (uint64_t)a->head_dim;
    const uint64_t d = (uint64_t)a->hidden, V = (uint64_t)a->vocab_size, RH = R * H;
    const vp_pool A = VP_POOL_ACTIVATIONS;
    struct model_taker t = {.ctx = m->ctx, .owned = &g->owned, .who = "generate", .alloc = alloc};
    for (int l = 0; l < a->layers; l++) {
        model_take(&t, A, &g->kc[l], (RH + RH * S) * hd * 4);
        model_take(&t, A, &g->vc[l], (RH + RH * S) * hd * 4);
    }
    model_take(&t, A, &g->kfull, RH * S * hd * 4);
    model_take(&t, A, &g->vfull, RH * S * hd * 4);
    model_take(&t, A, &g->ids_kv, RH * 4);
    model_take(&t, A, &g->fill, RH * S * 4);
    if (m->per_head) {
        model_take(&t, A, &g->hsplit, RH * 4);
        model_take(&t, A, &g->hmerge, RH * 4);
    }
    model_take(&t, A, &g->rpos, RH * 4);
    model_take(&t, A, &g->keep, align_up(R * S, 4));
    model_take(&t, A, &g->table, RH * S * 4);
    model_take(&t, A, &g->last, R * 4);
    model_take(&t, A, &g->xlast, R * d * 4);
    model_take(&t, A, &g->logits, R * V * 4);
    uint64_t in = 0;
    g->in_ids = in, in += R * 4;
    g->in_pos = in, in += R * 4;
    g->in_rpos = in, in += RH * 4;
    g->in_table = in, in += RH * S * 4;
    g->in_last = in, in += R * 4;
    g->in_keep = in, in += align_up(R * S, 4);
    model_take(&t, VP_POOL_STAGING, &g->stage_in, in);
    model_take(&t, VP_POOL_STAGING, &g->stage_out, R * V * 4);
    if (bytes) memcpy(bytes, t.bytes, sizeof t.bytes);
    return t.status;
}

static struct decoder_gen *gen_alloc(const struct decoder *m, const struct decoder_gen_shape *s) {
    struct decoder_gen *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->shape = *s;
    g->R = s->rows;
    g->S = s->max_len;
    g->kc = calloc((size_t)m->arch.layers, sizeof *g->kc);
    g->vc = calloc((size_t)m->arch.layers, sizeof *g->vc);
    g->len = calloc((size_t)s->rows, sizeof *g->len);
    g->next_len = calloc((size_t)s->rows, sizeof *g->next_len);
    g->prompt_ids = calloc((size_t)s->batch * (size_t)s->prompt_len, sizeof *g->prompt_ids);
    g->prompt_lens = calloc((size_t)s->batch, sizeof *g->prompt_lens);
    if (!g->kc || !g->vc || !g->len || !g->next_len || !g->prompt_ids || !g->prompt_lens) {
        decoder_gen_destroy(g);
        return NULL;
    }
    return g;
}

vp_status decoder_gen_plan(const struct decoder *m, const struct decoder_gen_shape *s,
                           uint64_t bytes[VP_POOL_COUNT]) {
    vp_status st = check_shape(m, s);
    if (st != VP_OK) return st;
    struct decoder_gen *g = gen_alloc(m, s);
    if (!g) return vp_fail(VP_ERROR_HOST_MEMORY, "generate: out of host memory");
    st = gen_layout(g, m, false, bytes);
    decoder_gen_destroy(g);
    return st;
}

/* The constant tables: the new K/V rows split into heads, the prefill's
 * rows into the cache, the per-head adapters' split and merge for R rows. */
static vp_status upload_tables(struct decoder_gen *g) {
    const struct decoder *m = g->m;
    const int H = m->arch.heads, G = m->arch.kv_heads, per = H / G, R = g->R, S = g->S;
    const size_t RH = (size_t)R * H;
    int32_t *v = malloc(RH * (size_t)S * sizeof *v);
    if (!v) return vp_fail(VP_ERROR_HOST_MEMORY, "generate: out of host memory");
    for (int r = 0; r < R; r++)
        for (int h = 0; h < H; h++) v[(size_t)r * H + h] = r * G + h / per;
    vp_status st = vk_buffer_write(m->ctx, &g->ids_kv, 0, v, RH * 4);
    for (int r = 0; r < R; r++)
        for (int h = 0; h < H; h++)
            for (int s = 0; s < S; s++)
                v[((size_t)r * H + h) * S + s] = r < g->Bp && s < g->Tp ? (r * H + h) * g->Tp + s : -1;
    if (st == VP_OK) st = vk_buffer_write(m->ctx, &g->fill, 0, v, RH * S * 4);
    free(v);
    if (st == VP_OK && g->hsplit.buffer) st = dec_write_head_tables(m->ctx, &g->hsplit, &g->hmerge, R, H);
    return st;
}

vp_status dec_write_head_tables(vp_context *ctx, const struct vk_buffer *hsplit, const struct vk_buffer *hmerge,
                                int N, int H) {
    const size_t NH = (size_t)N * H;
    int32_t *v = malloc(NH * sizeof *v);
    if (!v) return vp_fail(VP_ERROR_HOST_MEMORY, "generate: out of host memory");
    for (int h = 0; h < H; h++)
        for (int n = 0; n < N; n++) v[(size_t)h * N + n] = n * H + h;
    vp_status st = vk_buffer_write(ctx, hsplit, 0, v, NH * 4);
    for (int n = 0; st == VP_OK && n < N; n++)
        for (int h = 0; h < H; h++) v[(size_t)n * H + h] = h * N + n;
    if (st == VP_OK) st = vk_buffer_write(ctx, hmerge, 0, v, NH * 4);
    free(v);
    return st;
}

void dec_cache_table_row(int32_t *row, int S, int L, int32_t from, int32_t self) {
    for (int s = 0; s < S; s++) row[s] = s < L ? from + s : s == L ? self : -1;
}

vp_status decoder_gen_create(struct decoder *m, const struct decoder_gen_shape *s, struct decoder_gen **out) {
    *out = NULL;
    if (!m->loaded) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: the decoder is not loaded (decoder_load)");
    if (m->opt.checkpoint_activations) /* the prefill fills the cache from every layer's K and V */
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: the decoder checkpoints activations (a training "
                       "option); open it without checkpoint_activations to generate");
    vp_status st = check_shape(m, s);
    if (st != VP_OK) return st;
    int B, T;
    decoder_gen_batch_shape(s, &B, &T);
    if (m->acts.B < B || m->acts.T != T)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: the decoder is loaded for batches of %d × %d tokens, "
                       "the generator needs %d × %d (decoder_gen_batch_shape)", m->acts.B, m->acts.T, B, T);
    struct decoder_gen *g = gen_alloc(m, s);
    if (!g) return vp_fail(VP_ERROR_HOST_MEMORY, "generate: out of host memory");
    g->m = m;
    g->Bp = m->acts.B;
    g->Tp = m->acts.T;
    uint64_t plan[VP_POOL_COUNT];
    st = gen_layout(g, m, false, plan);
    if (st == VP_OK) st = vk_pools_reserve(m->ctx, plan);
    if (st == VP_OK) st = gen_layout(g, m, true, NULL);
    if (st == VP_OK) st = upload_tables(g);
    if (st == VP_OK) st = vk_recorder_create(m->ctx, 0, &g->prefill_rec);
    if (st == VP_OK) st = vk_recorder_create(m->ctx, 0, &g->step_rec);
    if (st != VP_OK) {
        decoder_gen_destroy(g);
        return st;
    }
    *out = g;
    return VP_OK;
}

void decoder_gen_destroy(struct decoder_gen *g) {
    if (!g) return;
    vk_recorder_destroy(g->prefill_rec);
    vk_recorder_destroy(g->step_rec);
    if (g->m) model_owned_free(g->m->ctx, &g->owned);
    free(g->kc);
    free(g->vc);
    free(g->len);
    free(g->next_len);
    free(g->prompt_ids);
    free(g->prompt_lens);
    free(g);
}

/* ------------------------------------------------------------------------
 * Recordings
 * ------------------------------------------------------------------------ */

static vp_status gather(struct decoder *m, struct vk_recorder *rec, const struct vk_buffer *out,
                        const struct vk_buffer *ids, const struct vk_buffer *table, uint64_t N, uint64_t V,
                        uint32_t C) {
    return kernel_embedding_forward(m->ctx, rec, out, ids, table, (uint32_t)N, (uint32_t)V, C, VP_DTYPE_F32,
                                    false);
}

/* kfull ← gather(table, kc[l]), then the cache ← kfull (the same for V). */
static vp_status cache_update(struct decoder_gen *g, struct vk_recorder *rec, int l, const struct vk_buffer *table,
                              const struct vk_buffer *ksrc, const struct vk_buffer *vsrc, uint64_t src_rows) {
    struct decoder *m = g->m;
    const uint64_t hd = (uint64_t)m->arch.head_dim, RH = (uint64_t)g->R * m->arch.heads, n = RH * g->S;
    vp_status st = gather(m, rec, &g->kfull, table, ksrc, n, src_rows, (uint32_t)hd);
    if (st == VP_OK) st = gather(m, rec, &g->vfull, table, vsrc, n, src_rows, (uint32_t)hd);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->kc[l], RH * hd * 4, &g->kfull, 0, n * hd * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->vc[l], RH * hd * 4, &g->vfull, 0, n * hd * 4);
    return st;
}

/* The step's attention for layer l over N = R rows of one new token: the
 * new K and V rows split into heads (k rotated at each row's position),
 * the cache reordered with them appended, q (R,H,1,hd) attending over the
 * layer's prefix rows and the S cache slots under the key mask; the output
 * (R,H,1,hd) is ctx (R,qd) as it stands. */
static vp_status step_core(struct decoder *m, struct vk_recorder *rec, int l, uint32_t N, void *user) {
    struct decoder_gen *g = user;
    struct dec_layer_acts *la = &m->acts.layers[l];
    const struct model_arch *ar = &m->arch;
    const uint32_t H = (uint32_t)ar->heads, hd = (uint32_t)ar->head_dim, S = (uint32_t)g->S;
    const uint64_t RH = (uint64_t)N * H, RG = (uint64_t)N * ar->kv_heads;
    const struct vk_buffer knew = dec_view(&g->kc[l], 0, RH * hd * 4), vnew = dec_view(&g->vc[l], 0, RH * hd * 4);
    vp_status st = gather(m, rec, &knew, &g->ids_kv, &la->k, RH, RG, hd);
    if (st == VP_OK) st = gather(m, rec, &vnew, &g->ids_kv, &la->v, RH, RG, hd);
    const struct vk_buffer *q = &la->q;
    if (st == VP_OK && ar->positions == MODEL_POS_ROTARY) { /* one (row, head) per rope row, its own position */
        const uint32_t P = (uint32_t)ar->max_positions;
        st = kernel_rope_forward(m->ctx, rec, &knew, &knew, &m->acts.rope, &g->rpos, 1, (uint32_t)RH, hd, P, 0);
        if (st == VP_OK)
            st = kernel_rope_forward(m->ctx, rec, &la->qh, &la->q, &m->acts.rope, &g->rpos, 1, (uint32_t)RH, hd, P, 0);
        q = &la->qh;
    }
    if (st == VP_OK) st = cache_update(g, rec, l, &g->table, &g->kc[l], &g->vc[l], RH + RH * S);
    const uint32_t Lp = (uint32_t)m->prefix_rows[l];
    const struct kernel_attention_config cfg = {.B = N, .H = H, .T = 1, .S = S, .L = Lp, .D = hd, .causal = false};
    if (st == VP_OK)
        st = kernel_attention_forward(m->ctx, rec, &la->ctx, &la->lse, q, &g->kfull, &g->vfull,
                                      Lp ? &la->pk : NULL, Lp ? &la->pv : NULL, &g->keep, &cfg);
    return st;
}

/* y (R,V) = x (R,d)·W_headᵀ, then to staging. */
static vp_status head(struct decoder_gen *g, struct vk_recorder *rec, const struct vk_buffer *x) {
    struct decoder *m = g->m;
    const uint32_t R = (uint32_t)g->R, d = (uint32_t)m->arch.hidden, V = (uint32_t)m->arch.vocab_size;
    const char *site = vk_recorder_label(rec, "head");
    vp_status st = kernel_matmul_forward(m->ctx, rec, &g->logits, x, dec_wbuf(m->w.head), m->w.head->dtype, NULL,
                                         R, d, V, NULL);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->stage_out, 0, &g->logits, 0, (uint64_t)R * V * 4);
    vk_recorder_label(rec, site);
    return st;
}

/* The prompts through the full forward (right padding, as decoder_run), each
 * layer's K/V rows into the cache, the last real token's logits. */
static vp_status record_prefill(void *gen, struct vk_recorder *rec) {
    struct decoder_gen *g = gen;
    struct decoder *m = g->m;
    struct dec_acts *a = &m->acts;
    const uint64_t N = (uint64_t)a->B * a->T, H = (uint64_t)m->arch.heads;
    vp_status st = vk_recorder_copy(rec, &a->ids, 0, &a->stage_in, a->in_ids, N * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &a->pos, 0, &a->stage_in, a->in_pos, N * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &a->keep, 0, &a->stage_in, a->in_keep, align_up(N, 4));
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->last, 0, &g->stage_in, g->in_last, (uint64_t)g->R * 4);
    if (st == VP_OK) st = dec_record_prefixes(m, rec);
    if (st == VP_OK) st = dec_record_trunk(m, rec, (uint32_t)N, NULL);
    for (int l = 0; l < m->arch.layers && st == VP_OK; l++)
        st = cache_update(g, rec, l, &g->fill, &a->layers[l].kh, &a->layers[l].vh, N * H);
    if (st == VP_OK) st = gather(m, rec, &g->xlast, &g->last, &a->xf, (uint64_t)g->R, N, (uint32_t)m->arch.hidden);
    if (st == VP_OK) st = head(g, rec, &g->xlast);
    return st;
}

static vp_status record_step(void *gen, struct vk_recorder *rec) {
    struct decoder_gen *g = gen;
    struct decoder *m = g->m;
    struct dec_acts *a = &m->acts;
    const uint64_t R = (uint64_t)g->R, RH = R * m->arch.heads;
    vp_status st = vk_recorder_copy(rec, &a->ids, 0, &g->stage_in, g->in_ids, R * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &a->pos, 0, &g->stage_in, g->in_pos, R * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->rpos, 0, &g->stage_in, g->in_rpos, RH * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->table, 0, &g->stage_in, g->in_table, RH * g->S * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->keep, 0, &g->stage_in, g->in_keep, align_up(R * g->S, 4));
    /* Per-head adapters read the split/merge tables of the decoder's batch
     * shape; the step's R rows need their own while it is recorded. */
    const struct vk_buffer hsplit = a->ids_hsplit, hmerge = a->ids_hmerge;
    if (g->hsplit.buffer) {
        a->ids_hsplit = g->hsplit;
        a->ids_hmerge = g->hmerge;
    }
    const struct dec_attention_core core = {step_core, g};
    if (st == VP_OK) st = dec_record_trunk(m, rec, (uint32_t)R, &core);
    a->ids_hsplit = hsplit;
    a->ids_hmerge = hmerge;
    if (st == VP_OK) st = head(g, rec, &a->xf);
    return st;
}

vp_status dec_run_recording(struct vk_recorder *rec, bool *recorded,
                            vp_status (*fn)(void *user, struct vk_recorder *rec), void *user) {
    vp_status st = VP_OK;
    if (!*recorded) {
        st = vk_recorder_begin(rec);
        if (st == VP_OK) st = fn(user, rec);
        if (st == VP_OK) st = vk_recorder_end(rec);
        *recorded = st == VP_OK;
    }
    if (st == VP_OK) st = vk_recorder_run(rec);
    return st;
}

/* ------------------------------------------------------------------------
 * Steps
 * ------------------------------------------------------------------------ */

vp_status decoder_gen_prompts(struct decoder_gen *g, const struct search_input *in) {
    const int V = g->m->arch.vocab_size;
    if (in->batch < 1 || in->batch > g->shape.batch)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: %d prompts; the generator was made for 1 .. %d",
                       in->batch, g->shape.batch);
    for (int b = 0; b < in->batch; b++) {
        if (in->lens[b] < 1 || in->lens[b] > g->shape.prompt_len)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: prompt %d has %d tokens; the generator was made "
                           "for 1 .. %d", b + 1, in->lens[b], g->shape.prompt_len);
        for (int t = 0; t < in->lens[b]; t++)
            if (in->ids[b][t] < 0 || in->ids[b][t] >= V)
                return vp_fail(VP_ERROR_BAD_INPUT, "generate: token %d of prompt %d is %d, outside the vocabulary "
                               "[0, %d)", t + 1, b + 1, in->ids[b][t], V);
    }
    g->batch = in->batch;
    for (int b = 0; b < in->batch; b++) {
        g->prompt_lens[b] = in->lens[b];
        memcpy(g->prompt_ids + (size_t)b * g->shape.prompt_len, in->ids[b], (size_t)in->lens[b] * sizeof(int32_t));
    }
    return VP_OK;
}

static vp_status prefill(struct decoder_gen *g, int rows, float *logits) {
    struct decoder *m = g->m;
    const int Bp = g->Bp, Tp = g->Tp;
    if (rows != g->batch)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: the first step asks for %d rows, %d prompts were set "
                       "(decoder_gen_prompts)", rows, g->batch);
    int32_t *ids = calloc((size_t)Bp * Tp, sizeof *ids);
    uint8_t *mask = calloc((size_t)Bp * Tp, 1);
    if (!ids || !mask) {
        free(ids);
        free(mask);
        return vp_fail(VP_ERROR_HOST_MEMORY, "generate: out of host memory");
    }
    for (int b = 0; b < g->batch; b++)
        for (int t = 0; t < g->prompt_lens[b]; t++) {
            ids[(size_t)b * Tp + t] = g->prompt_ids[(size_t)b * g->shape.prompt_len + t];
            mask[(size_t)b * Tp + t] = 1;
        }
    const struct decoder_batch batch = {ids, mask, NULL};
    vp_status st = decoder_write_batch(m, &batch);
    free(ids);
    free(mask);
    int32_t *last = (int32_t *)((char *)g->stage_in.host + g->in_last);
    for (int r = 0; r < g->R; r++) {
        last[r] = r < g->batch ? r * Tp + g->prompt_lens[r] - 1 : -1;
        g->len[r] = r < g->batch ? g->prompt_lens[r] : 0;
    }
    if (st == VP_OK) st = dec_run_recording(g->prefill_rec, &g->prefill_recorded, record_prefill, g);
    if (st == VP_OK) memcpy(logits, g->stage_out.host, (size_t)rows * m->arch.vocab_size * 4);
    g->rows_live = st == VP_OK ? rows : 0;
    return st;
}

/* Row r continues row parent[r]: its cache slots below the parent's length
 * come from the parent, the new token lands at that length, the key mask
 * shows exactly those slots. Rows past `rows` hold nothing. */
static void step_inputs(struct decoder_gen *g, int rows, const int32_t *parent, const int32_t *tokens) {
    const struct decoder *m = g->m;
    const int R = g->R, S = g->S, H = m->arch.heads, P = m->position_offset;
    char *base = g->stage_in.host;
    int32_t *ids = (int32_t *)(base + g->in_ids), *pos = (int32_t *)(base + g->in_pos);
    int32_t *rpos = (int32_t *)(base + g->in_rpos), *table = (int32_t *)(base + g->in_table);
    uint8_t *keep = (uint8_t *)(base + g->in_keep);
    const int32_t RH = R * H;
    for (int r = 0; r < R; r++) {
        const bool live = r < rows;
        const int p = live ? parent[r] : 0, L = live ? g->len[p] : 0;
        ids[r] = live ? tokens[r] : 0;
        pos[r] = P + L;
        for (int h = 0; h < H; h++) {
            rpos[r * H + h] = P + L;
            dec_cache_table_row(table + ((size_t)r * H + h) * S, S, live ? L : -1, RH + (p * H + h) * S, r * H + h);
        }
        for (int s = 0; s < S; s++) keep[(size_t)r * S + s] = live && s <= L;
        g->next_len[r] = live ? L + 1 : 0;
    }
    for (int n = R * S; n < (R * S + 3) / 4 * 4; n++) keep[n] = 0;
    memcpy(g->len, g->next_len, (size_t)R * sizeof *g->len);
}

vp_status decoder_gen_step(void *gen, int rows, const int32_t *parent, const int32_t *tokens, float *logits) {
    struct decoder_gen *g = gen;
    const int V = g->m->arch.vocab_size;
    if (!tokens) return prefill(g, rows, logits);
    if (rows < 1 || rows > g->R || !parent)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: a step of %d rows; the generator holds 1 .. %d", rows,
                       g->R);
    for (int r = 0; r < rows; r++) {
        if (parent[r] < 0 || parent[r] >= g->rows_live)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: row %d continues row %d; the last step had %d rows",
                           r, parent[r], g->rows_live);
        if (tokens[r] < 0 || tokens[r] >= V)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: row %d appends token %d, outside the vocabulary "
                           "[0, %d)", r, tokens[r], V);
        if (g->len[parent[r]] >= g->S)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "generate: row %d would hold %d tokens; the generator was made "
                           "for %d", r, g->len[parent[r]] + 1, g->S);
    }
    step_inputs(g, rows, parent, tokens);
    vp_status st = g->profile ? vk_profile_record(g->m->ctx, record_step, g, g->profile)
                              : dec_run_recording(g->step_rec, &g->step_recorded, record_step, g);
    g->profile = NULL;
    if (st == VP_OK) memcpy(logits, g->stage_out.host, (size_t)rows * V * 4);
    g->rows_live = st == VP_OK ? rows : 0;
    return st;
}

void decoder_gen_profile_next(struct decoder_gen *g, struct vk_profile *out) { g->profile = out; }

vp_status decoder_generate(struct decoder_gen *g, const struct search_options *o, const struct search_input *in,
                           struct search_result *out) {
    memset(out, 0, sizeof *out);
    vp_status st = decoder_gen_prompts(g, in);
    if (st != VP_OK) return st;
    const struct search_model model = {decoder_gen_step, g, g->m->arch.vocab_size};
    return search_run(o, &model, in, out);
}
