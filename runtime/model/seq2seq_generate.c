/* Encoder-decoder generation (seq2seq_lm.h) with a KV cache: the encoder
 * runs once per batch of sources, each decoder layer's cross-attention K
 * and V (LoRA on k and v included) are projected from its output once, and
 * each step runs only the new token of every row through the decoder stack,
 * attending over the cached self-attention K/V, every delta applied as in
 * the full forward (seq2seq_forward.c's pieces run on the step's rows).
 *
 * Layout (R rows = the model's batch rows, C = its decoder positions, Ss =
 * its source positions, H heads, hd head width):
 *   kc[l], vc[l]  (R·H + R·H·C, hd): the step's new K (V) rows — (R,d) is
 *                 (R,H,1,hd) as it stands — then the cache (R,H,C,hd)
 *   kfull, vfull  (R,H,C,hd): what a step attends over, gathered from kc by
 *                 decoder_generate's table (parent's slots, the new row at
 *                 the parent's length, zero after), copied back after
 *   cross kh, vh  the layer's cross-attention activations (B,H,Ss,hd), one
 *                 row per source (rows past the sources repeat source 0),
 *                 written by the encoding; a checkpointing model's layers
 *                 share theirs, so the encoding copies each layer's into
 *                 the generator's xkc[l], xvc[l] (B,H,Ss,hd)
 *   xk, xv        (R,H,Ss,hd): a row's source's cross K (V), gathered per
 *                 step by the row's item (beam search moves rows between
 *                 calls, finished items drop out)
 * Prefix rows (all three kinds) sit in the blocks' pk, pv, gathered by the
 * encoding. Two recordings (encode, step), each made once per generator and
 * replayed: a step changes only staging (ids, positions, tables, masks). */
#include "seq2seq_lm.h"

#include <stdlib.h>
#include <string.h>

struct seq2seq_gen {
    struct seq2seq *m;
    int R, C, Ss;                      /* rows, cache slots, source positions */
    int batch, src_len;                /* the sources set */
    int32_t *src;                      /* (R, Ss) the encoder's batch */
    uint8_t *src_mask;                 /* (R, Ss) */
    int32_t start;                     /* decoder_start_token_id (else eos) */
    struct vk_buffer *kc, *vc;         /* (Ld) each (R·H + R·H·C, hd) */
    struct vk_buffer kfull, vfull;     /* (R,H,C,hd) */
    struct vk_buffer xk, xv;           /* (R,H,Ss,hd) */
    struct vk_buffer *xkc, *xvc;       /* checkpointing model: (Ld) each (B,H,Ss,hd); else NULL */
    struct vk_buffer hsplit, hmerge;   /* (R·H) per-head adapters' tables for R rows */
    struct vk_buffer table, keep, xtable, xkeep; /* per step: (R·H·C), (R,C) bytes, (R·H·Ss), (R,Ss) bytes */
    struct vk_buffer stage_in, stage_out;
    uint64_t in_ids, in_pos, in_table, in_keep, in_xtable, in_xkeep;
    struct vk_recorder *enc_rec, *step_rec;
    bool enc_recorded, step_recorded;
    int *len, *item, *next_len, *next_item; /* (R) tokens cached per row, its source */
    int rows_live;                     /* rows of the last call */
    struct vk_profile *profile;        /* the next step's profile goes here (seq2seq_gen_profile_next) */
    struct model_owned owned;
};

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* One walk sizes the plan (alloc false) and allocates (alloc true). */
static vp_status gen_layout(struct seq2seq_gen *g, bool alloc, uint64_t bytes[VP_POOL_COUNT]) {
    const struct seq2seq *m = g->m;
    const uint64_t R = (uint64_t)g->R, C = (uint64_t)g->C, Ss = (uint64_t)g->Ss, H = (uint64_t)m->arch.heads;
    const uint64_t hd = (uint64_t)m->arch.head_dim, V = (uint64_t)m->arch.vocab_size, RH = R * H;
    const vp_pool A = VP_POOL_ACTIVATIONS;
    struct model_taker t = {.ctx = m->ctx, .owned = &g->owned, .who = "seq2seq generate", .alloc = alloc};
    for (int l = 0; l < m->Ld; l++) {
        model_take(&t, A, &g->kc[l], (RH + RH * C) * hd * 4);
        model_take(&t, A, &g->vc[l], (RH + RH * C) * hd * 4);
    }
    model_take(&t, A, &g->kfull, RH * C * hd * 4);
    model_take(&t, A, &g->vfull, RH * C * hd * 4);
    model_take(&t, A, &g->xk, RH * Ss * hd * 4);
    model_take(&t, A, &g->xv, RH * Ss * hd * 4);
    for (int l = 0; g->xkc && l < m->Ld; l++) {
        model_take(&t, A, &g->xkc[l], RH * Ss * hd * 4);
        model_take(&t, A, &g->xvc[l], RH * Ss * hd * 4);
    }
    if (m->core.per_head) {
        model_take(&t, A, &g->hsplit, RH * 4);
        model_take(&t, A, &g->hmerge, RH * 4);
    }
    model_take(&t, A, &g->table, RH * C * 4);
    model_take(&t, A, &g->keep, align_up(R * C, 4));
    model_take(&t, A, &g->xtable, RH * Ss * 4);
    model_take(&t, A, &g->xkeep, align_up(R * Ss, 4));
    uint64_t in = 0;
    g->in_ids = in, in += R * 4;
    g->in_pos = in, in += R * 4;
    g->in_table = in, in += RH * C * 4;
    g->in_xtable = in, in += RH * Ss * 4;
    g->in_keep = in, in += align_up(R * C, 4);
    g->in_xkeep = in, in += align_up(R * Ss, 4);
    model_take(&t, VP_POOL_STAGING, &g->stage_in, in);
    model_take(&t, VP_POOL_STAGING, &g->stage_out, R * V * 4);
    if (bytes) memcpy(bytes, t.bytes, sizeof t.bytes);
    return t.status;
}

void seq2seq_gen_destroy(struct seq2seq_gen *g) {
    if (!g) return;
    vk_recorder_destroy(g->enc_rec);
    vk_recorder_destroy(g->step_rec);
    model_owned_free(g->m->ctx, &g->owned);
    void *p[] = {g->kc, g->vc, g->xkc, g->xvc, g->src, g->src_mask, g->len, g->item, g->next_len, g->next_item};
    for (size_t k = 0; k < sizeof p / sizeof p[0]; k++) free(p[k]);
    free(g);
}

/* A generator's host side for R rows, C cache slots and Ss source
 * positions (no device memory yet); NULL when out of host memory. */
static struct seq2seq_gen *gen_alloc(const struct seq2seq *m, int R, int C, int Ss) {
    struct seq2seq_gen *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->m = (struct seq2seq *)m;
    g->R = R;
    g->C = C;
    g->Ss = Ss;
    const size_t r = (size_t)R;
    g->kc = calloc((size_t)m->Ld, sizeof *g->kc);
    g->vc = calloc((size_t)m->Ld, sizeof *g->vc);
    const bool ck = m->core.opt.checkpoint_activations;
    if (ck) {
        g->xkc = calloc((size_t)m->Ld, sizeof *g->xkc);
        g->xvc = calloc((size_t)m->Ld, sizeof *g->xvc);
    }
    g->src = calloc(r * (size_t)Ss, sizeof *g->src);
    g->src_mask = calloc(r * (size_t)Ss, 1);
    g->len = calloc(r, sizeof *g->len);
    g->item = calloc(r, sizeof *g->item);
    g->next_len = calloc(r, sizeof *g->next_len);
    g->next_item = calloc(r, sizeof *g->next_item);
    if (!g->kc || !g->vc || (ck && (!g->xkc || !g->xvc)) || !g->src || !g->src_mask || !g->len || !g->item ||
        !g->next_len || !g->next_item) {
        seq2seq_gen_destroy(g);
        return NULL;
    }
    return g;
}

void seq2seq_gen_load_shape(const struct seq2seq_gen_shape *s, int *B, int *S, int *T) {
    *B = s->rows;
    *S = s->src_len;
    *T = 1 + s->max_new_tokens;
}

vp_status seq2seq_gen_plan(const struct seq2seq *m, const struct seq2seq_gen_shape *s,
                           uint64_t bytes[VP_POOL_COUNT]) {
    int B, S, T;
    seq2seq_gen_load_shape(s, &B, &S, &T);
    if (s->rows < 1 || s->src_len < 1 || s->max_new_tokens < 1)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: %d rows, sources of %d tokens, %d new tokens "
                       "(each must be at least 1)", s->rows, s->src_len, s->max_new_tokens);
    if (S > m->arch.max_positions || T > m->arch.max_positions)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: sources of %d tokens or %d new tokens (%d "
                       "decoder positions) exceed the model's %d positions", S, s->max_new_tokens, T,
                       m->arch.max_positions);
    struct seq2seq_gen *g = gen_alloc(m, B, T, S);
    if (!g) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq generate: out of host memory");
    vp_status st = gen_layout(g, false, bytes);
    seq2seq_gen_destroy(g);
    return st;
}

vp_status seq2seq_gen_create(struct seq2seq *m, struct seq2seq_gen **out) {
    *out = NULL;
    if (!m->loaded) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: load the model first");
    const struct model_arch *a = &m->arch;
    struct seq2seq_gen *g = gen_alloc(m, m->acts.B, m->acts.T, m->acts.S);
    if (!g) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq generate: out of host memory");
    g->start = a->decoder_start_token_id >= 0 ? a->decoder_start_token_id : a->eos_token_id;
    vp_status st = VP_OK;
    if (g->start < 0)
        st = vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: the config has neither decoder_start_token_id "
                     "nor eos_token_id");
    uint64_t plan[VP_POOL_COUNT];
    if (st == VP_OK) st = gen_layout(g, false, plan);
    if (st == VP_OK) st = vk_pools_reserve(m->ctx, plan);
    if (st == VP_OK) st = gen_layout(g, true, NULL);
    if (st == VP_OK && g->hsplit.buffer)
        st = dec_write_head_tables(m->ctx, &g->hsplit, &g->hmerge, g->R, m->arch.heads);
    if (st == VP_OK) st = vk_recorder_create(m->ctx, 0, &g->enc_rec);
    if (st == VP_OK) st = vk_recorder_create(m->ctx, 0, &g->step_rec);
    if (st != VP_OK) {
        seq2seq_gen_destroy(g);
        return st;
    }
    *out = g;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Recordings
 * ------------------------------------------------------------------------ */

static vp_status gather(struct seq2seq *m, struct vk_recorder *rec, const struct vk_buffer *out,
                        const struct vk_buffer *ids, const struct vk_buffer *table, uint64_t N, uint64_t V,
                        uint32_t C) {
    return kernel_embedding_forward(m->ctx, rec, out, ids, table, (uint32_t)N, (uint32_t)V, C, VP_DTYPE_F32, false);
}

/* The sources through the encoder (from the model's staging), every prefix
 * module's rows into the blocks' pk, pv, and each decoder layer's cross K
 * and V (B,H,Ss,hd). */
static vp_status record_encode(void *gen, struct vk_recorder *rec) {
    struct seq2seq_gen *g = gen;
    struct seq2seq *m = g->m;
    struct s2s_acts *a = &m->acts;
    struct s2s_stack_acts *enc = &a->enc;
    const uint64_t Ne = (uint64_t)a->B * (uint64_t)a->S;
    vp_status st = vk_recorder_copy(rec, &enc->ids, 0, &a->stage_in, enc->in_ids, Ne * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &enc->pos, 0, &a->stage_in, enc->in_pos, Ne * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &enc->keep, 0, &a->stage_in, enc->in_keep, align_up(Ne, 4));
    if (st == VP_OK) st = dec_record_prefixes(&m->core, rec);
    if (st == VP_OK) st = s2s_stack_forward(m, rec, &m->enc, enc, NULL);
    for (int l = 0; l < m->Ld && st == VP_OK; l++) {
        struct s2s_layer_acts *la = &a->dec.layer[l];
        const int blk = s2s_block(m, DELTA_STACK_CROSS, l);
        st = s2s_attn_kv(m, rec, blk, &m->dec.layer[l].cross, &la->cross, enc->out, (uint32_t)Ne);
        if (st == VP_OK) st = s2s_attn_split_kv(m, rec, &la->cross, enc, (uint32_t)Ne);
        if (st == VP_OK && g->xkc) st = vk_recorder_copy(rec, &g->xkc[l], 0, &la->cross.kh, 0, g->xkc[l].size);
        if (st == VP_OK && g->xvc) st = vk_recorder_copy(rec, &g->xvc[l], 0, &la->cross.vh, 0, g->xvc[l].size);
        if (st == VP_OK) st = s2s_attn_prefix(m, rec, blk, &la->cross);
        if (st == VP_OK) st = s2s_attn_prefix(m, rec, s2s_block(m, DELTA_STACK_DECODER, l), &la->self);
    }
    return st;
}

/* Decoder layer l's self-attention for the step's R rows: k, v of the new
 * tokens appended to the reordered cache, q over the prefix rows and the
 * cache slots the key mask shows. */
static vp_status step_self(struct seq2seq_gen *g, struct vk_recorder *rec, int l, const struct vk_buffer *x) {
    struct seq2seq *m = g->m;
    struct s2s_attn_acts *aa = &m->acts.dec.layer[l].self;
    const struct s2s_attn_w *w = &m->dec.layer[l].self;
    const int blk = s2s_block(m, DELTA_STACK_DECODER, l);
    const uint32_t R = (uint32_t)g->R, H = (uint32_t)m->arch.heads, hd = (uint32_t)m->arch.head_dim;
    const uint64_t RH = (uint64_t)R * H, n = RH * (uint64_t)g->C;
    vp_status st = s2s_attn_project(m, rec, blk, w, aa, x, R);
    if (st == VP_OK) st = s2s_attn_kv(m, rec, blk, w, aa, NULL, R);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->kc[l], 0, &aa->k, 0, RH * hd * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->vc[l], 0, &aa->v, 0, RH * hd * 4);
    if (st == VP_OK) st = gather(m, rec, &g->kfull, &g->table, &g->kc[l], n, RH + n, hd);
    if (st == VP_OK) st = gather(m, rec, &g->vfull, &g->table, &g->vc[l], n, RH + n, hd);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->kc[l], RH * hd * 4, &g->kfull, 0, n * hd * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->vc[l], RH * hd * 4, &g->vfull, 0, n * hd * 4);
    const uint32_t Lp = (uint32_t)m->core.prefix_rows[blk];
    const struct kernel_attention_config cfg = {.B = R, .H = H, .T = 1, .S = (uint32_t)g->C, .L = Lp, .D = hd};
    if (st == VP_OK)
        st = kernel_attention_forward(m->ctx, rec, &aa->atth, &aa->lse, &aa->q, &g->kfull, &g->vfull,
                                      Lp ? &aa->pk : NULL, Lp ? &aa->pv : NULL, &g->keep, &cfg);
    if (st == VP_OK) st = s2s_attn_output(m, rec, blk, w, aa, &aa->atth, R);
    return st;
}

/* Decoder layer l's cross-attention for the step's rows: q over the prefix
 * rows and the row's source's cached K, V under its source mask. */
static vp_status step_cross(struct seq2seq_gen *g, struct vk_recorder *rec, int l, const struct vk_buffer *x) {
    struct seq2seq *m = g->m;
    struct s2s_attn_acts *aa = &m->acts.dec.layer[l].cross;
    const struct s2s_attn_w *w = &m->dec.layer[l].cross;
    const int blk = s2s_block(m, DELTA_STACK_CROSS, l);
    const uint32_t R = (uint32_t)g->R, H = (uint32_t)m->arch.heads, hd = (uint32_t)m->arch.head_dim;
    const uint64_t n = (uint64_t)R * H * (uint64_t)g->Ss, src_rows = (uint64_t)m->acts.B * H * (uint64_t)g->Ss;
    const struct vk_buffer *kh = g->xkc ? &g->xkc[l] : &aa->kh, *vh = g->xvc ? &g->xvc[l] : &aa->vh;
    vp_status st = s2s_attn_project(m, rec, blk, w, aa, x, R);
    if (st == VP_OK) st = gather(m, rec, &g->xk, &g->xtable, kh, n, src_rows, hd);
    if (st == VP_OK) st = gather(m, rec, &g->xv, &g->xtable, vh, n, src_rows, hd);
    const uint32_t Lp = (uint32_t)m->core.prefix_rows[blk];
    const struct kernel_attention_config cfg = {.B = R, .H = H, .T = 1, .S = (uint32_t)g->Ss, .L = Lp, .D = hd};
    if (st == VP_OK)
        st = kernel_attention_forward(m->ctx, rec, &aa->atth, &aa->lse, &aa->q, &g->xk, &g->xv,
                                      Lp ? &aa->pk : NULL, Lp ? &aa->pv : NULL, &g->xkeep, &cfg);
    if (st == VP_OK) st = s2s_attn_output(m, rec, blk, w, aa, &aa->atth, R);
    return st;
}

/* One token per row through the decoder stack and the head: logits (R,V)
 * into staging. */
static vp_status record_step(void *gen, struct vk_recorder *rec) {
    struct seq2seq_gen *g = gen;
    struct seq2seq *m = g->m;
    struct s2s_acts *a = &m->acts;
    struct s2s_stack_acts *dec = &a->dec;
    const uint64_t R = (uint64_t)g->R, RH = R * (uint64_t)m->arch.heads;
    const uint32_t d = (uint32_t)m->arch.hidden, V = (uint32_t)m->arch.vocab_size;
    vp_status st = vk_recorder_copy(rec, &dec->ids, 0, &g->stage_in, g->in_ids, R * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &dec->pos, 0, &g->stage_in, g->in_pos, R * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->table, 0, &g->stage_in, g->in_table, RH * (uint64_t)g->C * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->xtable, 0, &g->stage_in, g->in_xtable, RH * (uint64_t)g->Ss * 4);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->keep, 0, &g->stage_in, g->in_keep, align_up(R * g->C, 4));
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->xkeep, 0, &g->stage_in, g->in_xkeep, align_up(R * g->Ss, 4));
    /* per-head adapters split and merge R rows, not the batch's B·T */
    struct dec_acts *ca = &m->core.acts;
    ca->ids_hsplit = g->hsplit;
    ca->ids_hmerge = g->hmerge;
    /* the training forward's profile sites (seq2seq_forward.c), and the head's */
    const char *site = vk_recorder_label(rec, "forward");
    if (st == VP_OK) st = s2s_embed_forward(m, rec, &m->dec, dec, (uint32_t)R);
    const struct vk_buffer *x = &dec->x;
    for (int l = 0; l < m->Ld && st == VP_OK; l++) {
        struct s2s_layer_acts *la = &dec->layer[l];
        vk_recorder_label(rec, "forward decoder attention");
        st = step_self(g, rec, l, x);
        vk_recorder_label(rec, "forward cross attention");
        if (st == VP_OK) st = step_cross(g, rec, l, la->self.y);
        vk_recorder_label(rec, "forward decoder ffn");
        if (st == VP_OK)
            st = s2s_ffn_forward(m, rec, s2s_block(m, DELTA_STACK_DECODER, l), &m->dec.layer[l].ffn, &la->ffn,
                                 la->cross.y, (uint32_t)R, (uint32_t)m->dec.I);
        x = la->ffn.y;
    }
    vk_recorder_label(rec, "forward");
    if (st == VP_OK && m->dec.final_w) {
        st = dec_record_norm(&m->core, rec, &dec->final_out, &dec->final_mean, &dec->final_rstd, x, m->dec.final_w,
                             m->dec.final_b, (uint32_t)R);
        x = &dec->final_out;
    }
    vk_recorder_label(rec, "head");
    if (st == VP_OK)
        st = kernel_matmul_forward(m->ctx, rec, &a->logits, x, dec_wbuf(m->head), m->head->dtype,
                                   &m->logits_bias->frozen, (uint32_t)R, d, V, NULL);
    if (st == VP_OK) st = vk_recorder_copy(rec, &g->stage_out, 0, &a->logits, 0, R * V * 4);
    vk_recorder_label(rec, site);
    return st;
}

/* ------------------------------------------------------------------------
 * Steps
 * ------------------------------------------------------------------------ */

vp_status seq2seq_gen_sources(struct seq2seq_gen *g, const int32_t *src, const uint8_t *src_mask, int batch,
                              int src_len) {
    if (batch < 1 || batch > g->R || src_len < 1 || src_len > g->Ss)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: %d sources of %d tokens for a model loaded for "
                       "%d × %d", batch, src_len, g->R, g->Ss);
    const int Ss = g->Ss;
    for (int r = 0; r < g->R; r++) { /* rows past the sources repeat source 0 */
        const int i = r < batch ? r : 0;
        for (int s = 0; s < Ss; s++) {
            g->src[(size_t)r * Ss + s] = s < src_len ? src[(size_t)i * src_len + s] : 0;
            g->src_mask[(size_t)r * Ss + s] = s < src_len && (!src_mask || src_mask[(size_t)i * src_len + s]);
        }
    }
    g->batch = batch;
    g->src_len = src_len;
    g->rows_live = 0;
    return VP_OK;
}

/* The encoder's batch into the model's staging (decoder side: the start
 * token, nothing scored), then the encoding. */
static vp_status encode(struct seq2seq_gen *g) {
    struct seq2seq *m = g->m;
    const size_t BT = (size_t)m->acts.B * (size_t)m->acts.T;
    int32_t *dec_ids = malloc(BT * sizeof *dec_ids);
    if (!dec_ids) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq generate: out of host memory");
    for (size_t n = 0; n < BT; n++) dec_ids[n] = g->start;
    const struct seq2seq_batch b = {g->src, g->src_mask, dec_ids, NULL, NULL};
    vp_status st = seq2seq_write_batch(m, &b);
    free(dec_ids);
    if (st == VP_OK) st = dec_run_recording(g->enc_rec, &g->enc_recorded, record_encode, g);
    return st;
}

/* Row r continues row parent[r] (parent NULL: source r from the start
 * token): its cache slots below the parent's length come from the parent,
 * the new token lands at that length; its cross-attention reads its
 * source. Rows past `rows` hold nothing. */
static void step_inputs(struct seq2seq_gen *g, int rows, const int32_t *parent, const int32_t *tokens) {
    const struct seq2seq *m = g->m;
    const int R = g->R, C = g->C, Ss = g->Ss, H = m->arch.heads;
    char *base = g->stage_in.host;
    int32_t *ids = (int32_t *)(base + g->in_ids), *pos = (int32_t *)(base + g->in_pos);
    int32_t *table = (int32_t *)(base + g->in_table), *xtable = (int32_t *)(base + g->in_xtable);
    uint8_t *keep = (uint8_t *)(base + g->in_keep), *xkeep = (uint8_t *)(base + g->in_xkeep);
    for (int r = 0; r < R; r++) {
        const bool live = r < rows;
        const int p = live && parent ? parent[r] : -1, L = p >= 0 ? g->len[p] : 0;
        const int item = p >= 0 ? g->item[p] : live ? r : 0;
        ids[r] = live && parent ? tokens[r] : g->start;
        pos[r] = m->arch.position_offset + L;
        for (int h = 0; h < H; h++) {
            const int32_t from = p >= 0 ? R * H + (p * H + h) * C : -1;
            dec_cache_table_row(table + ((size_t)r * H + h) * C, C, live ? L : -1, from, r * H + h);
            for (int s = 0; s < Ss; s++) xtable[((size_t)r * H + h) * Ss + s] = (item * H + h) * Ss + s;
        }
        for (int s = 0; s < C; s++) keep[(size_t)r * C + s] = live && s <= L;
        memcpy(xkeep + (size_t)r * Ss, g->src_mask + (size_t)item * Ss, (size_t)Ss);
        g->next_len[r] = live ? L + 1 : 0;
        g->next_item[r] = item;
    }
    for (int n = R * C; n < (R * C + 3) / 4 * 4; n++) keep[n] = 0;
    for (int n = R * Ss; n < (R * Ss + 3) / 4 * 4; n++) xkeep[n] = 0;
    memcpy(g->len, g->next_len, (size_t)R * sizeof *g->len);
    memcpy(g->item, g->next_item, (size_t)R * sizeof *g->item);
}

void seq2seq_gen_profile_next(struct seq2seq_gen *g, struct vk_profile *out) { g->profile = out; }

vp_status seq2seq_gen_step(void *gen, int rows, const int32_t *parent, const int32_t *tokens, float *logits) {
    struct seq2seq_gen *g = gen;
    const int V = g->m->arch.vocab_size;
    if (!g->batch) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: no sources (seq2seq_gen_sources)");
    if (rows < 1 || rows > g->R || (!parent && rows != g->batch))
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: a step of %d rows for %d sources; the model "
                       "holds 1 .. %d rows", rows, g->batch, g->R);
    for (int r = 0; parent && r < rows; r++) {
        if (parent[r] < 0 || parent[r] >= g->rows_live)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: row %d continues row %d; the last step had "
                           "%d rows", r, parent[r], g->rows_live);
        if (!tokens || tokens[r] < 0 || tokens[r] >= V)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: row %d appends token %d, outside the "
                           "vocabulary [0, %d)", r, tokens ? tokens[r] : -1, V);
        if (g->len[parent[r]] >= g->C)
            return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq generate: a sequence outgrew the %d decoder "
                           "positions the model is loaded for", g->C);
    }
    vp_status st = parent ? VP_OK : encode(g);
    if (st == VP_OK) {
        step_inputs(g, rows, parent, tokens);
        st = g->profile ? vk_profile_record(g->m->ctx, record_step, g, g->profile)
                        : dec_run_recording(g->step_rec, &g->step_recorded, record_step, g);
        g->profile = NULL;
    }
    if (st == VP_OK) memcpy(logits, g->stage_out.host, (size_t)rows * V * 4);
    g->rows_live = st == VP_OK ? rows : 0;
    return st;
}

void seq2seq_search_defaults(const struct model_arch *a, struct search_options *o) {
    for (int k = 0; k < a->eos_count && k < SEARCH_MAX_EOS; k++) o->eos_token_ids[o->eos_count++] = a->eos_token_ids[k];
    o->pad_token_set = true;
    o->pad_token_id = a->pad_token_id;
    if (a->forced_bos_token_id >= 0) {
        o->forced_bos_set = true;
        o->forced_bos_token_id = a->forced_bos_token_id;
    }
    if (a->forced_eos_token_id >= 0) {
        o->forced_eos_count = 1;
        o->forced_eos_token_ids[0] = a->forced_eos_token_id;
    }
}

vp_status seq2seq_gen_run(struct seq2seq_gen *g, const struct search_options *o, const int32_t *src,
                          const uint8_t *src_mask, int batch, int src_len, struct search_result *out) {
    memset(out, 0, sizeof *out);
    vp_status s = seq2seq_gen_sources(g, src, src_mask, batch, src_len);
    int32_t **ids = malloc((size_t)batch * sizeof *ids);
    int *lens = malloc((size_t)batch * sizeof *lens);
    if (s == VP_OK && (!ids || !lens)) s = vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq generate: out of host memory");
    for (int b = 0; s == VP_OK && b < batch; b++) {
        ids[b] = &g->start;
        lens[b] = 1;
    }
    struct search_options so = *o;
    /* HF's lengths (max_length counts the start token; 20 by default), at
     * most the decoder positions loaded */
    if (!so.max_new_tokens) so.max_new_tokens = (so.max_length ? so.max_length : 20) - 1;
    if (so.max_new_tokens > g->C - 1) so.max_new_tokens = g->C - 1;
    const struct search_model sm = {seq2seq_gen_step, g, g->m->arch.vocab_size};
    const struct search_input in = {batch, (const int32_t *const *)ids, lens};
    if (s == VP_OK) s = search_run(&so, &sm, &in, out);
    free(ids);
    free(lens);
    return s;
}

vp_status seq2seq_generate(struct seq2seq *m, const struct search_options *o, const int32_t *src,
                           const uint8_t *src_mask, int batch, int src_len, struct search_result *out) {
    memset(out, 0, sizeof *out);
    struct seq2seq_gen *g;
    vp_status s = seq2seq_gen_create(m, &g);
    if (s == VP_OK) s = seq2seq_gen_run(g, o, src, src_mask, batch, src_len, out);
    seq2seq_gen_destroy(g);
    return s;
}
