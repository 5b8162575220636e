/* The GPU encoder-decoder model: lifecycle, the memory plan and activation
 * layout, constant tables, batch inputs and outputs through staging,
 * recordings, and tensors by name. The pieces and params are in
 * seq2seq_load.c, the passes in seq2seq_forward.c / seq2seq_backward.c. */
#include "seq2seq_lm.h"
#include "save.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* ------------------------------------------------------------------------
 * Open
 * ------------------------------------------------------------------------ */

static vp_status check_arch(const struct model_arch *a, const char *dir) {
    if (a->family != MODEL_FAMILY_BART && a->family != MODEL_FAMILY_MBART)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: the seq2seq model runs BART and mBART, not %s", dir, a->model_type);
    const bool mbart = a->family == MODEL_FAMILY_MBART;
    const bool ok = a->stack == MODEL_STACK_ENCODER_DECODER && a->norm == MODEL_NORM_LAYERNORM && a->embed_norm &&
                    a->positions == MODEL_POS_LEARNED && a->pre_norm == mbart && a->final_norm == mbart &&
                    a->kv_heads == a->heads && a->decoder_heads == a->heads && a->heads * a->head_dim == a->hidden &&
                    a->head_dim <= 256 &&
                    (a->act == MODEL_ACT_GELU || a->act == MODEL_ACT_GELU_TANH || a->act == MODEL_ACT_RELU);
    if (!ok)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: %s's config.json is outside what the seq2seq model runs "
                       "(equal encoder and decoder heads, heads × head width = hidden, head width ≤ 256, "
                       "activation gelu, gelu_new or relu)", dir, a->model_type);
    return VP_OK;
}

vp_status seq2seq_open(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                       const struct seq2seq_options *opt, struct seq2seq **out) {
    *out = NULL;
    struct seq2seq *m = calloc(1, sizeof *m);
    if (!m) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq: out of host memory");
    m->ctx = ctx;
    vp_status s = model_arch_load(dir, &m->arch);
    if (s == VP_OK) {
        model_arch_finish(&m->arch);
        s = check_arch(&m->arch, dir);
    }
    struct decoder *c = &m->core;
    c->ctx = ctx;
    c->spec = *spec;
    if (opt)
        c->opt = (struct decoder_options){.storage = opt->storage, .seed = opt->seed,
                                          .label_smoothing = opt->label_smoothing,
                                          .checkpoint_activations = opt->checkpoint_activations,
                                          .dropout = opt->dropout, .dropout_p = opt->dropout_p};
    if (c->opt.dropout_p > 0) /* BART drops at three kinds of site */
        m->arch.hidden_dropout = m->arch.attention_dropout = m->arch.activation_dropout = c->opt.dropout_p;
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    m->Le = m->arch.layers;
    m->Ld = m->arch.decoder_layers;
    c->arch = m->arch;
    c->arch.layers = m->Le + 2 * m->Ld; /* the delta blocks */
    if (s == VP_OK) s = s2s_weights_init(m);
    if (s == VP_OK) s = s2s_setup_params(m);
    if (s == VP_OK) s = dec_open_weights(c);
    if (s != VP_OK) {
        seq2seq_destroy(m);
        return s;
    }
    *out = m;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Activation layout: one walk sizes the plan and allocates
 * ------------------------------------------------------------------------ */

struct layout {
    struct seq2seq *m;
    struct model_taker t;
    uint64_t B, Nmax, in; /* in: staging input bytes so far */
    bool checkpoint;      /* activation checkpointing: layers share their activations */
};

static void take(struct layout *L, struct vk_buffer *buf, uint64_t bytes) {
    model_take(&L->t, VP_POOL_ACTIVATIONS, buf, bytes);
}

/* Lp prefix rows of block blk: the rows, their gather tables and (training)
 * the scatter groups. */
static void take_prefix(struct layout *L, struct s2s_attn_acts *aa, int blk) {
    const struct decoder *c = &L->m->core;
    const uint64_t np = (uint64_t)c->prefix_rows[blk] * (uint64_t)c->arch.hidden;
    if (!np) return;
    struct vk_buffer *b[] = {&aa->pk, &aa->pv, &aa->ids_pk, &aa->ids_pv};
    for (size_t k = 0; k < 4; k++) take(L, b[k], np * 4);
    if (c->trains) {
        take(L, &aa->groups_pk, kernel_embedding_groups_words((uint32_t)np) * 4);
        take(L, &aa->groups_pv, kernel_embedding_groups_words((uint32_t)np) * 4);
    }
}

static void take_attn(struct layout *L, struct s2s_attn_acts *aa, uint64_t Nq, uint64_t Nk, int blk) {
    const struct model_arch *a = &L->m->arch;
    const uint64_t d = (uint64_t)a->hidden;
    take(L, &aa->mean, Nq * 4);
    take(L, &aa->rstd, Nq * 4);
    if (a->pre_norm) take(L, &aa->a_in, Nq * d * 4);
    else take(L, &aa->out, Nq * d * 4);
    struct vk_buffer *nq[] = {&aa->q, &aa->qh, &aa->atth, &aa->ctx, &aa->o, &aa->h};
    for (size_t k = 0; k < sizeof nq / sizeof nq[0]; k++) take(L, nq[k], Nq * d * 4);
    struct vk_buffer *nk[] = {&aa->k, &aa->v, &aa->kh, &aa->vh};
    for (size_t k = 0; k < sizeof nk / sizeof nk[0]; k++) take(L, nk[k], Nk * d * 4);
    take(L, &aa->lse, Nq * (uint64_t)a->heads * 4);
    take_prefix(L, aa, blk);
}

static void take_ffn(struct layout *L, struct s2s_ffn_acts *fa, uint64_t N, uint64_t I) {
    const struct model_arch *a = &L->m->arch;
    const uint64_t d = (uint64_t)a->hidden;
    take(L, &fa->mean, N * 4);
    take(L, &fa->rstd, N * 4);
    if (a->pre_norm) take(L, &fa->f_in, N * d * 4);
    else take(L, &fa->out, N * d * 4);
    take(L, &fa->upre, N * I * 4);
    take(L, &fa->u, N * I * 4);
    take(L, &fa->dn, N * d * 4);
    take(L, &fa->h, N * d * 4);
}

static void stage_in(struct layout *L, uint64_t *at, uint64_t bytes) {
    *at = L->in;
    L->in += align_up(bytes, 4);
}

static vp_status take_stack(struct layout *L, struct s2s_stack_acts *sa, const struct s2s_stack_w *w, int T,
                            uint64_t Nenc, bool decoder) {
    struct seq2seq *m = L->m;
    const struct decoder *c = &m->core;
    const uint64_t N = L->B * (uint64_t)T, d = (uint64_t)m->arch.hidden, H = (uint64_t)m->arch.heads;
    const uint64_t gw = kernel_embedding_groups_words((uint32_t)N) * 4;
    sa->T = T;
    sa->layer = calloc((size_t)w->layers, sizeof *sa->layer);
    if (!sa->layer) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq: out of host memory");
    take(L, &sa->ids, N * 4);
    take(L, &sa->pos, N * 4);
    take(L, &sa->keep, align_up(N, 4));
    stage_in(L, &sa->in_ids, N * 4);
    stage_in(L, &sa->in_pos, N * 4);
    stage_in(L, &sa->in_keep, N);
    if (c->full) {
        take(L, &sa->groups_word, gw);
        take(L, &sa->groups_pos, gw);
        stage_in(L, &sa->in_gword, gw);
        stage_in(L, &sa->in_gpos, gw);
    }
    take(L, &sa->ids_split, N * H * 4);
    take(L, &sa->ids_merge, N * H * 4);
    if (c->per_head) {
        take(L, &sa->ids_hsplit, N * H * 4);
        take(L, &sa->ids_hmerge, N * H * 4);
    }
    take(L, &sa->x0, N * d * 4);
    take(L, &sa->x, N * d * 4);
    take(L, &sa->emb_mean, N * 4);
    take(L, &sa->emb_rstd, N * 4);
    if (m->arch.final_norm) {
        take(L, &sa->final_mean, N * 4);
        take(L, &sa->final_rstd, N * 4);
        take(L, &sa->final_out, N * d * 4);
    }
    for (int l = 0; l < w->layers; l++) {
        struct s2s_layer_acts *la = &sa->layer[l];
        const int self = s2s_block(m, decoder ? DELTA_STACK_DECODER : DELTA_STACK_ENCODER, l);
        const int cross = s2s_block(m, DELTA_STACK_CROSS, l);
        if (L->checkpoint && l > 0) { /* layer 0's buffers, but for what each layer keeps */
            *la = sa->layer[0];
            struct s2s_attn_acts *kept[] = {&la->self, &la->cross};
            for (int k = 0; k < 2; k++)
                kept[k]->pk = kept[k]->pv = kept[k]->ids_pk = kept[k]->ids_pv = kept[k]->groups_pk =
                    kept[k]->groups_pv = (struct vk_buffer){0};
            take_prefix(L, &la->self, self);
            if (decoder) take_prefix(L, &la->cross, cross);
            /* the layer's output: pre-LN's residual sum, post-LN's norm of it */
            struct vk_buffer *out = m->arch.pre_norm ? &la->ffn.h : &la->ffn.out;
            *out = (struct vk_buffer){0};
            take(L, out, N * d * 4);
            continue;
        }
        take_attn(L, &la->self, N, N, self);
        if (decoder) take_attn(L, &la->cross, N, Nenc, cross);
        take_ffn(L, &la->ffn, N, (uint64_t)w->I);
    }
    return L->t.status;
}

/* Block blk's kind: 0 encoder, 1 decoder, 2 cross-attention. */
static int block_kind(const struct seq2seq *m, int blk) { return blk < m->Le ? 0 : blk < m->Le + m->Ld ? 1 : 2; }

/* The slot whose bottleneck buffers slot sl uses: with checkpointing its
 * module's first active slot in a block of the same kind (the blocks of one
 * kind run one layer at a time; a decoder layer's self and cross blocks are
 * both live in its backward), else sl itself. */
static struct dec_slot *slot_owner(struct layout *L, struct dec_slot *sl) {
    struct seq2seq *m = L->m;
    if (!L->checkpoint) return sl;
    for (int blk = 0; blk < sl->layer; blk++) {
        struct dec_slot *o = dec_slot_at(&m->core, sl->module, blk);
        if (o->active && block_kind(m, blk) == block_kind(m, sl->layer)) return o;
    }
    return sl;
}

/* The pieces the decoder's delta code reads from its own activations. */
static void take_delta(struct layout *L, bool with_grads) {
    struct decoder *c = &L->m->core;
    struct dec_acts *ca = &c->acts;
    const uint64_t N = L->Nmax, d = (uint64_t)c->arch.hidden;
    const uint64_t rank = (uint64_t)(c->rank_max > 0 ? c->rank_max : 1);
    if (!with_grads) {
        if (c->model_trains || c->per_head) take(L, &ca->ones, N * 4);
        if (c->prefix_max) take(L, &ca->prefix_src, c->prefix_src_elems * 4);
        for (int i = 0; i < c->spec.count; i++)
            if (c->reparam[i].emb) {
                const uint64_t n = (uint64_t)c->spec.modules[i].size * (uint64_t)c->spec.modules[i].reparam;
                take(L, &c->reparam[i].h0pre, n * 4);
                take(L, &c->reparam[i].h0, n * 4);
            }
        for (int k = 0; k < c->spec.count * c->arch.layers; k++) {
            struct dec_slot *sl = &c->slots[k];
            const struct delta_module *dm = &c->spec.modules[sl->module];
            if (!sl->active || dm->kind == DELTA_PREFIX) continue;
            const struct dec_slot *owner = slot_owner(L, sl);
            if (owner != sl) { /* checkpointing: shared (a plan leaves the slots be) */
                if (L->t.alloc) dec_slot_share_buffers(sl, owner);
                continue;
            }
            dec_take_slot(c, &L->t, sl, N);
        }
        return;
    }
    take(L, &ca->g_r, N * rank * 4);
    take(L, &ca->g_r2, N * rank * 4);
    take(L, &ca->g_t, N * d * 4);
    bool seq = false, gated = false;
    for (int i = 0; i < c->spec.count; i++) {
        const struct delta_module *dm = &c->spec.modules[i];
        seq |= dm->kind == DELTA_ADAPTER && dm->insert == DELTA_SEQUENTIAL;
        gated |= dm->kind == DELTA_ADAPTER && dm->compose == DELTA_COMPOSE_GATED;
    }
    if (seq) {
        take(L, &ca->g_s0, N * d * 4);
        take(L, &ca->g_s1, N * d * 4);
    }
    if (gated) take(L, &ca->gate_scratch, kernel_sigmoid_gate_scratch_bytes((uint32_t)N, (uint32_t)d));
    if (c->per_head) {
        take(L, &ca->g_dh, N * d * 4);
        take(L, &ca->g_dz, N * d * 4);
    }
    take(L, &ca->norm_scratch, kernel_norm_scratch_bytes((uint32_t)N, (uint32_t)d));
    if (c->prefix_max) take(L, &ca->dprefix_src, c->prefix_src_elems * 4);
    for (int i = 0; i < c->spec.count; i++)
        if (c->reparam[i].emb) {
            const uint64_t r = (uint64_t)c->spec.modules[i].size, R = (uint64_t)c->spec.modules[i].reparam;
            take(L, &c->reparam[i].g_h0, r * R * 4);
            take(L, &c->reparam[i].g_e, r * d * 4);
        }
}

/* The attention kernels' configuration for Tq queries over Tk keys. */
static struct kernel_attention_config attn_cfg(const struct seq2seq *m, int B, int Tq, int Tk, int Lp, bool causal) {
    return (struct kernel_attention_config){.B = (uint32_t)B, .H = (uint32_t)m->arch.heads, .T = (uint32_t)Tq,
                                            .S = (uint32_t)Tk, .L = (uint32_t)Lp, .D = (uint32_t)m->arch.head_dim,
                                            .causal = causal};
}

static vp_status acts_layout(struct seq2seq *m, struct s2s_acts *a, int B, int S, int T, bool checkpoint,
                             bool alloc, uint64_t bytes[VP_POOL_COUNT]) {
    struct decoder *c = &m->core;
    const uint64_t Ne = (uint64_t)B * S, Nd = (uint64_t)B * T, d = (uint64_t)m->arch.hidden;
    const uint64_t V = (uint64_t)m->arch.vocab_size;
    struct layout L = {.m = m, .t = {.ctx = m->ctx, .owned = &a->owned, .who = "seq2seq", .alloc = alloc},
                       .B = (uint64_t)B, .Nmax = Ne > Nd ? Ne : Nd, .checkpoint = checkpoint};
    a->B = B;
    a->S = S;
    a->T = T;
    vp_status s = take_stack(&L, &a->enc, &m->enc, S, Ne, false);
    if (s == VP_OK) s = take_stack(&L, &a->dec, &m->dec, T, Ne, true);
    if (s != VP_OK) return s;
    take_delta(&L, false);
    take(&L, &a->targets, Nd * 4);
    stage_in(&L, &a->in_targets, Nd * 4);
    take(&L, &a->logits, Nd * V * 4);
    take(&L, &a->loss, 8);
    take(&L, &a->ce_lse, Nd * 4);
    const struct kernel_cross_entropy_config ce = {(uint32_t)Nd, (uint32_t)V, ENCODER_IGNORE_INDEX,
                                                   (float)c->opt.label_smoothing};
    take(&L, &a->ce_scratch, kernel_cross_entropy_scratch_bytes(m->ctx, &ce));
    if (c->trains) {
        const uint64_t N = L.Nmax, I = (uint64_t)(m->enc.I > m->dec.I ? m->enc.I : m->dec.I);
        take_delta(&L, true);
        take(&L, &a->g_logits, Nd * V * 4);
        struct vk_buffer *nd[] = {&a->g_x, &a->g_h, &a->g_a, &a->g_t, &a->g_ctx, &a->g_q, &a->g_k,
                                  &a->g_v, &a->g_atth, &a->g_qh, &a->g_kh, &a->g_vh};
        for (size_t k = 0; k < sizeof nd / sizeof nd[0]; k++) take(&L, nd[k], N * d * 4);
        take(&L, &a->g_enc, Ne * d * 4);
        take(&L, &a->g_u, N * I * 4);
        take(&L, &a->g_up, N * I * 4);
        if (c->prefix_max) {
            take(&L, &a->g_pk, (uint64_t)c->prefix_max * d * 4);
            take(&L, &a->g_pv, (uint64_t)c->prefix_max * d * 4);
        }
        const struct kernel_attention_config cfgs[3] = {attn_cfg(m, B, S, S, c->prefix_max, false),
                                                        attn_cfg(m, B, T, T, c->prefix_max, true),
                                                        attn_cfg(m, B, T, S, c->prefix_max, false)};
        uint64_t most = 0;
        for (int k = 0; k < 3; k++) {
            const uint64_t n = kernel_attention_scratch_bytes(m->ctx, &cfgs[k]);
            if (n > most) most = n;
        }
        take(&L, &a->attn_scratch, most);
    }
    model_take(&L.t, VP_POOL_STAGING, &a->stage_in, L.in);
    model_take(&L.t, VP_POOL_STAGING, &a->stage_out, 8 + Nd * V * 4);
    if (bytes) memcpy(bytes, L.t.bytes, sizeof L.t.bytes);
    return L.t.status;
}

static void acts_free(struct seq2seq *m, struct s2s_acts *a) {
    model_owned_free(m->ctx, &a->owned);
    free(a->enc.layer);
    free(a->dec.layer);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------------
 * Constant tables
 * ------------------------------------------------------------------------ */

/* The attention block a delta block's prefix rows go to. */
static struct s2s_attn_acts *block_attn(struct seq2seq *m, int blk) {
    if (blk < m->Le) return &m->acts.enc.layer[blk].self;
    if (blk < m->Le + m->Ld) return &m->acts.dec.layer[blk - m->Le].self;
    return &m->acts.dec.layer[blk - m->Le - m->Ld].cross;
}

/* Block blk's prefix rows (H,Lp,hd): element (h, row, c) is element (j,
 * h·hd + c) of its module's P_k / P_v in prefix_src. */
static vp_status prefix_tables(struct seq2seq *m, int blk) {
    struct decoder *c = &m->core;
    struct s2s_attn_acts *aa = block_attn(m, blk);
    const uint32_t Lp = (uint32_t)c->prefix_rows[blk], H = (uint32_t)m->arch.heads, hd = (uint32_t)m->arch.head_dim;
    const uint32_t n = Lp * H * hd;
    if (!Lp) return VP_OK;
    int32_t *ids = calloc(n, sizeof *ids);
    uint32_t *g = calloc(kernel_embedding_groups_words(n), sizeof *g);
    vp_status s = ids && g ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq: out of host memory");
    for (int kv = 0; kv < 2 && s == VP_OK; kv++) {
        for (int i = 0; i < c->spec.count; i++) {
            const struct dec_slot *sl = dec_slot_at(c, i, blk);
            if (!sl->active || c->spec.modules[i].kind != DELTA_PREFIX) continue;
            const uint64_t base = kv ? sl->src_v : sl->src_k;
            for (uint32_t h = 0; h < H; h++)
                for (int j = 0; j < c->spec.modules[i].size; j++)
                    for (uint32_t e = 0; e < hd; e++)
                        ids[((size_t)h * Lp + (uint32_t)(sl->prefix_offset + j)) * hd + e] =
                            (int32_t)(base + (uint64_t)j * sl->src_stride + h * hd + e);
        }
        s = vk_buffer_write(m->ctx, kv ? &aa->ids_pv : &aa->ids_pk, 0, ids, (uint64_t)n * 4);
        if (s == VP_OK && aa->groups_pk.buffer) {
            s = kernel_embedding_groups_build(g, ids, n, (uint32_t)c->prefix_src_elems);
            if (s == VP_OK)
                s = vk_buffer_write(m->ctx, kv ? &aa->groups_pv : &aa->groups_pk, 0, g,
                                    kernel_embedding_groups_words(n) * 4);
        }
    }
    free(ids);
    free(g);
    return s;
}

/* One stack's head split (B,T,H,hd) → (B,H,T,hd) and merge, and the
 * per-head adapters' (N,H,hd) ↔ (H,N,hd). */
static vp_status stack_tables(struct seq2seq *m, struct s2s_stack_acts *sa) {
    const uint32_t B = (uint32_t)m->acts.B, T = (uint32_t)sa->T, N = B * T, H = (uint32_t)m->arch.heads;
    int32_t *v = calloc((size_t)N * H, sizeof *v);
    if (!v) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq: out of host memory");
    for (uint32_t b = 0; b < B; b++)
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t t = 0; t < T; t++) v[((size_t)b * H + h) * T + t] = (int32_t)((b * T + t) * H + h);
    vp_status s = vk_buffer_write(m->ctx, &sa->ids_split, 0, v, (uint64_t)N * H * 4);
    for (uint32_t b = 0; b < B; b++)
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t h = 0; h < H; h++) v[((size_t)b * T + t) * H + h] = (int32_t)((b * H + h) * T + t);
    if (s == VP_OK) s = vk_buffer_write(m->ctx, &sa->ids_merge, 0, v, (uint64_t)N * H * 4);
    if (s == VP_OK && sa->ids_hsplit.buffer) {
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t n = 0; n < N; n++) v[(size_t)h * N + n] = (int32_t)(n * H + h);
        s = vk_buffer_write(m->ctx, &sa->ids_hsplit, 0, v, (uint64_t)N * H * 4);
        for (uint32_t n = 0; s == VP_OK && n < N; n++)
            for (uint32_t h = 0; h < H; h++) v[(size_t)n * H + h] = (int32_t)(h * N + n);
        if (s == VP_OK) s = vk_buffer_write(m->ctx, &sa->ids_hmerge, 0, v, (uint64_t)N * H * 4);
    }
    free(v);
    return s;
}

static vp_status upload_constants(struct seq2seq *m) {
    vp_status s = stack_tables(m, &m->acts.enc);
    if (s == VP_OK) s = stack_tables(m, &m->acts.dec);
    for (int blk = 0; s == VP_OK && blk < m->core.arch.layers; blk++) s = prefix_tables(m, blk);
    struct vk_buffer *ones = &m->core.acts.ones;
    if (s == VP_OK && ones->buffer) {
        const size_t n = ones->size / 4;
        float *f = malloc(n * sizeof *f);
        if (!f) return vp_fail(VP_ERROR_HOST_MEMORY, "seq2seq: out of host memory");
        for (size_t k = 0; k < n; k++) f[k] = 1.0f;
        s = vk_buffer_write(m->ctx, ones, 0, f, n * 4);
        free(f);
    }
    return s;
}

/* ------------------------------------------------------------------------
 * Plan, load, destroy
 * ------------------------------------------------------------------------ */

static vp_status plan_with(const struct seq2seq *m, int B, int S, int T, bool checkpoint,
                           uint64_t bytes[VP_POOL_COUNT]) {
    if (B < 1 || S < 1 || T < 1)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq: batch shape %d × (%d source, %d target)", B, S, T);
    if (S > m->arch.max_positions || T > m->arch.max_positions)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq: %d source or %d target tokens exceed the model's %d "
                       "positions", S, T, m->arch.max_positions);
    struct s2s_acts scratch = {0};
    vp_status s = acts_layout((struct seq2seq *)m, &scratch, B, S, T, checkpoint, false, bytes); /* sums only */
    free(scratch.enc.layer);
    free(scratch.dec.layer);
    if (s != VP_OK) return s;
    bytes[VP_POOL_FROZEN] += dec_frozen_bytes(&m->core);
    bytes[VP_POOL_TRAINABLE] += delta_params_plan_bytes(m->core.params);
    return VP_OK;
}

vp_status seq2seq_plan(const struct seq2seq *m, int B, int S, int T, uint64_t bytes[VP_POOL_COUNT]) {
    return plan_with(m, B, S, T, m->core.opt.checkpoint_activations, bytes);
}

vp_status seq2seq_plan_activations(const struct seq2seq *m, int B, int S, int T, bool checkpoint, uint64_t *bytes) {
    uint64_t plan[VP_POOL_COUNT];
    vp_status s = plan_with(m, B, S, T, checkpoint, plan);
    *bytes = s == VP_OK ? plan[VP_POOL_ACTIVATIONS] : 0;
    return s;
}

/* Reserves a plan; over the budget, a training model that keeps every
 * activation adds checkpointing to the pool's remedies, with its figure. */
static vp_status reserve(struct seq2seq *m, const uint64_t plan[VP_POOL_COUNT], int B, int S, int T) {
    uint64_t with = 0;
    if (m->core.trains && !m->core.opt.checkpoint_activations &&
        seq2seq_plan_activations(m, B, S, T, true, &with) != VP_OK)
        with = 0;
    return model_reserve(m->ctx, plan, with);
}

static void unload(struct seq2seq *m) {
    acts_free(m, &m->acts);
    m->core.acts = (struct dec_acts){0};
}

vp_status seq2seq_load(struct seq2seq *m, int B, int S, int T) {
    if (m->loaded) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq: already loaded");
    struct decoder *c = &m->core;
    uint64_t plan[VP_POOL_COUNT];
    vp_status s = seq2seq_plan(m, B, S, T, plan);
    if (s == VP_OK) s = reserve(m, plan, B, S, T);
    if (s == VP_OK) s = delta_params_alloc(c->params);
    if (s == VP_OK) s = dec_upload_frozen(c);
    if (s == VP_OK) s = acts_layout(m, &m->acts, B, S, T, m->core.opt.checkpoint_activations, true, NULL);
    if (s == VP_OK) s = upload_constants(m);
    if (s != VP_OK) {
        unload(m);
        dec_free_weights(c);
        delta_params_free_device(c->params);
        vk_pools_trim(m->ctx);
        return s;
    }
    io_weights_close(c->file);
    c->file = NULL;
    for (int k = 0; k < c->weight_count; k++) c->weights[k].file = NULL;
    m->loaded = c->loaded = true;
    return VP_OK;
}

vp_status seq2seq_create(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                         const struct seq2seq_options *opt, int B, int S, int T, struct seq2seq **out) {
    vp_status s = seq2seq_open(ctx, dir, spec, opt, out);
    if (s != VP_OK) return s;
    s = seq2seq_load(*out, B, S, T);
    if (s != VP_OK) {
        seq2seq_destroy(*out);
        *out = NULL;
    }
    return s;
}

void seq2seq_destroy(struct seq2seq *m) {
    if (!m) return;
    struct decoder *c = &m->core;
    for (int p = 0; p < SEQ2SEQ_PASS_COUNT; p++) vk_recorder_destroy(m->rec[p]);
    vk_recorder_destroy(m->zero_rec);
    unload(m);
    dec_free_weights(c);
    if (c->file) io_weights_close(c->file);
    delta_params_destroy(c->params);
    free(c->slots);
    free(c->prefix_rows);
    free(c->reparam);
    free(c->weights);
    free(m->enc.layer);
    free(m->dec.layer);
    free(m);
}

const struct model_arch *seq2seq_arch(const struct seq2seq *m) { return &m->arch; }
struct delta_params *seq2seq_params(struct seq2seq *m) { return m->core.params; }
enum vp_dtype seq2seq_weight_dtype(const struct seq2seq *m) { return m->core.wtype; }

/* ------------------------------------------------------------------------
 * Batches, runs, outputs
 * ------------------------------------------------------------------------ */

static vp_status check_ready(const struct seq2seq *m, const char *what) {
    if (!m->loaded)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq: %s needs a loaded model (seq2seq_load)", what);
    return VP_OK;
}

/* One stack's ids (checked), key mask, positions t + offset and (full)
 * embedding scatter groups into staging. */
static vp_status stage_stack(struct seq2seq *m, struct s2s_stack_acts *sa, const int32_t *in_ids,
                             const uint8_t *mask, const char *side) {
    const int B = m->acts.B, T = sa->T, N = B * T, V = m->arch.vocab_size;
    char *base = m->acts.stage_in.host;
    int32_t *ids = (int32_t *)(base + sa->in_ids), *pos = (int32_t *)(base + sa->in_pos);
    uint8_t *keep = (uint8_t *)(base + sa->in_keep);
    for (int n = 0; n < N; n++) {
        if (in_ids[n] < 0 || in_ids[n] >= V)
            return vp_fail(VP_ERROR_BAD_INPUT, "seq2seq: %s token %d of the batch has id %d, outside the vocabulary "
                           "[0, %d)", side, n, in_ids[n], V);
        ids[n] = in_ids[n];
        keep[n] = mask ? mask[n] != 0 : 1;
    }
    for (int n = N; n < (N + 3) / 4 * 4; n++) keep[n] = 0;
    kernel_positions_offset(pos, (uint32_t)B, (uint32_t)T, m->arch.position_offset);
    vp_status s = VP_OK;
    if (sa->groups_word.buffer) {
        s = kernel_embedding_groups_build((uint32_t *)(base + sa->in_gword), ids, (uint32_t)N, (uint32_t)V);
        if (s == VP_OK)
            s = kernel_embedding_groups_build((uint32_t *)(base + sa->in_gpos), pos, (uint32_t)N,
                                              (uint32_t)(m->arch.max_positions + m->arch.position_offset));
    }
    return s;
}

vp_status seq2seq_write_batch(struct seq2seq *m, const struct seq2seq_batch *batch) {
    vp_status s = check_ready(m, "write_batch");
    if (s == VP_OK) s = stage_stack(m, &m->acts.enc, batch->ids, batch->mask, "source");
    if (s == VP_OK) s = stage_stack(m, &m->acts.dec, batch->dec_ids, batch->dec_mask, "decoder input");
    if (s != VP_OK) return s;
    const int N = m->acts.B * m->acts.T, V = m->arch.vocab_size;
    int32_t *targets = (int32_t *)((char *)m->acts.stage_in.host + m->acts.in_targets);
    for (int n = 0; n < N; n++) {
        const int32_t y = batch->labels ? batch->labels[n] : ENCODER_IGNORE_INDEX;
        if (y != ENCODER_IGNORE_INDEX && (y < 0 || y >= V))
            return vp_fail(VP_ERROR_BAD_INPUT, "seq2seq: label %d of the batch is %d, neither -100 nor in [0, %d)", n,
                           y, V);
        targets[n] = y;
    }
    return VP_OK;
}

static vp_status copy_stack_in(struct seq2seq *m, struct vk_recorder *rec, struct s2s_stack_acts *sa) {
    const struct vk_buffer *in = &m->acts.stage_in;
    const uint64_t N = (uint64_t)m->acts.B * (uint64_t)sa->T, gw = kernel_embedding_groups_words((uint32_t)N) * 4;
    vp_status s = vk_recorder_copy(rec, &sa->ids, 0, in, sa->in_ids, N * 4);
    if (s == VP_OK) s = vk_recorder_copy(rec, &sa->pos, 0, in, sa->in_pos, N * 4);
    if (s == VP_OK) s = vk_recorder_copy(rec, &sa->keep, 0, in, sa->in_keep, align_up(N, 4));
    if (s == VP_OK && sa->groups_word.buffer) s = vk_recorder_copy(rec, &sa->groups_word, 0, in, sa->in_gword, gw);
    if (s == VP_OK && sa->groups_pos.buffer) s = vk_recorder_copy(rec, &sa->groups_pos, 0, in, sa->in_gpos, gw);
    return s;
}

static vp_status record(struct seq2seq *m, struct vk_recorder *rec, bool train) {
    struct s2s_acts *a = &m->acts;
    const uint64_t Nd = (uint64_t)a->B * (uint64_t)a->T;
    vp_status s = copy_stack_in(m, rec, &a->enc);
    if (s == VP_OK) s = copy_stack_in(m, rec, &a->dec);
    if (s == VP_OK) s = vk_recorder_copy(rec, &a->targets, 0, &a->stage_in, a->in_targets, Nd * 4);
    m->core.recording_train = train;
    if (s == VP_OK) s = s2s_record_forward(m, rec);
    if (s == VP_OK && train && m->core.trains) s = s2s_record_backward(m, rec);
    m->core.recording_train = false;
    if (s == VP_OK) s = vk_recorder_copy(rec, &a->stage_out, 0, &a->loss, 0, 8);
    if (s == VP_OK) s = vk_recorder_copy(rec, &a->stage_out, 8, &a->logits, 0, Nd * (uint64_t)m->arch.vocab_size * 4);
    return s;
}

vp_status seq2seq_run(struct seq2seq *m, enum seq2seq_pass pass) {
    if ((unsigned)pass >= SEQ2SEQ_PASS_COUNT) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "seq2seq: bad pass");
    vp_status s = check_ready(m, "run");
    if (s == VP_OK && !m->rec[pass]) s = vk_recorder_create(m->ctx, 0, &m->rec[pass]);
    if (pass == SEQ2SEQ_PASS_TRAIN && m->core.opt.dropout && m->recorded_step != m->core.step)
        m->recorded[pass] = false;
    if (s == VP_OK && !m->recorded[pass]) {
        if (pass == SEQ2SEQ_PASS_TRAIN) m->recorded_step = m->core.step;
        s = vk_recorder_begin(m->rec[pass]);
        if (s == VP_OK) s = record(m, m->rec[pass], pass == SEQ2SEQ_PASS_TRAIN);
        if (s == VP_OK) s = vk_recorder_end(m->rec[pass]);
        m->recorded[pass] = s == VP_OK;
    }
    if (s == VP_OK) s = vk_recorder_run(m->rec[pass]);
    return s;
}

void seq2seq_set_step(struct seq2seq *m, uint32_t step) { m->core.step = step; }

vp_status seq2seq_zero_grads(struct seq2seq *m) {
    vp_status s = check_ready(m, "zero_grads");
    if (s == VP_OK && !m->zero_rec) s = vk_recorder_create(m->ctx, 0, &m->zero_rec);
    if (s == VP_OK && !m->zero_recorded) {
        s = vk_recorder_begin(m->zero_rec);
        if (s == VP_OK) s = delta_params_record_zero_grads(m->core.params, m->zero_rec);
        if (s == VP_OK) s = vk_recorder_end(m->zero_rec);
        m->zero_recorded = s == VP_OK;
    }
    if (s == VP_OK) s = vk_recorder_run(m->zero_rec);
    return s;
}

vp_status seq2seq_loss(const struct seq2seq *m, float *loss, uint32_t *count) {
    vp_status s = check_ready(m, "loss");
    if (s != VP_OK) return s;
    if (loss) memcpy(loss, m->acts.stage_out.host, 4);
    if (count) memcpy(count, (const char *)m->acts.stage_out.host + 4, 4);
    return VP_OK;
}

vp_status seq2seq_logits(const struct seq2seq *m, float *logits) {
    vp_status s = check_ready(m, "logits");
    if (s != VP_OK) return s;
    const size_t n = (size_t)m->acts.B * (size_t)m->acts.T * (size_t)m->arch.vocab_size;
    memcpy(logits, (const char *)m->acts.stage_out.host + 8, n * 4);
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * For a trainer, saved deltas, tensors by name
 * ------------------------------------------------------------------------ */

vp_status seq2seq_record(struct seq2seq *m, struct vk_recorder *rec, enum seq2seq_pass pass) {
    vp_status s = check_ready(m, "record");
    return s == VP_OK ? record(m, rec, pass == SEQ2SEQ_PASS_TRAIN) : s;
}

vp_status seq2seq_record_zero_grads(struct seq2seq *m, struct vk_recorder *rec) {
    vp_status s = check_ready(m, "record_zero_grads");
    return s == VP_OK ? delta_params_record_zero_grads(m->core.params, rec) : s;
}

void seq2seq_batch_shape(const struct seq2seq *m, int *B, int *S, int *T) {
    *B = m->acts.B;
    *S = m->acts.S;
    *T = m->acts.T;
}

vp_status seq2seq_set_batch(struct seq2seq *m, int B, int S, int T) {
    if (!m->loaded) return seq2seq_load(m, B, S, T);
    if (B == m->acts.B && S == m->acts.S && T == m->acts.T) return VP_OK;
    uint64_t plan[VP_POOL_COUNT];
    vp_status s = seq2seq_plan(m, B, S, T, plan);
    if (s != VP_OK) return s;
    unload(m);
    for (int p = 0; p < SEQ2SEQ_PASS_COUNT; p++) m->recorded[p] = false;
    vk_pools_trim(m->ctx);
    plan[VP_POOL_FROZEN] = plan[VP_POOL_TRAINABLE] = 0; /* already held */
    s = reserve(m, plan, B, S, T);
    if (s == VP_OK) s = acts_layout(m, &m->acts, B, S, T, m->core.opt.checkpoint_activations, true, NULL);
    if (s == VP_OK) s = upload_constants(m);
    return s;
}

vp_status seq2seq_load_delta(struct seq2seq *m, const char *dir) {
    vp_status s = check_ready(m, "load_delta");
    if (s != VP_OK) return s;
    return delta_load_into(dir, &m->arch, m->core.params, m->core.dir);
}

vp_status seq2seq_create_with_delta(vp_context *ctx, const char *dir, const char *delta_dir,
                                    const struct seq2seq_options *opt, int B, int S, int T, struct seq2seq **out) {
    *out = NULL;
    struct delta_spec spec;
    struct delta_tensors t = {0};
    /* no delta: the model alone (a base or merged model) */
    vp_status s = delta_dir ? delta_load_for_model(delta_dir, dir, &spec, &t) : VP_OK;
    if (!delta_dir) spec = (struct delta_spec){.name = "none"};
    if (s == VP_OK) s = seq2seq_create(ctx, dir, &spec, opt, B, S, T, out);
    if (s == VP_OK) s = delta_params_load((*out)->core.params, &t);
    delta_tensors_free(&t);
    if (s != VP_OK) {
        if (delta_dir) vp_fail_context(s, "--delta %s", delta_dir);
        seq2seq_destroy(*out);
        *out = NULL;
    }
    return s;
}

vp_status seq2seq_tensor_numel(const struct seq2seq *m, const char *name, uint64_t *n) {
    return decoder_tensor_numel(&m->core, name, n);
}
vp_status seq2seq_tensor_read(const struct seq2seq *m, const char *name, float *out, size_t n) {
    return decoder_tensor_read(&m->core, name, out, n);
}
vp_status seq2seq_grad_read(const struct seq2seq *m, const char *name, float *out, size_t n) {
    return decoder_grad_read(&m->core, name, out, n);
}
vp_status seq2seq_tensor_write(struct seq2seq *m, const char *name, const float *data, size_t n) {
    return decoder_tensor_write(&m->core, name, data, n);
}
