/* The encoder-decoder model's backward pass: from the cross-entropy back
 * through the head, the decoder stack (its cross-attention blocks gathering
 * the gradient of the encoder output in g_enc) and the encoder stack,
 * accumulating (+=) every trainable tensor's gradient. Frozen weights get
 * no gradient. The buffers g_* are shared by every block: g_x holds the
 * gradient of the current block's output, then of its input. With
 * activation checkpointing each layer's forward is recorded again from its
 * kept input right before its backward (seq2seq_lm.h), under the forward's
 * profile sites; the backward's are "backward" (loss, head, embeddings),
 * "backward {encoder,decoder,cross} attention" and "backward
 * {encoder,decoder} ffn", with the decoder's delta sites inside them.
 *
 * Per block, with h = x + o(x) and y = LN(h) (post-LN) or y = h (pre-LN):
 *   dh = LN'(h)ᵀ·dy or dy;  dx = dh + (d a_in through the sublayer), where
 *   a_in = x (post-LN) or LN(x) (pre-LN, back through LN'(x)ᵀ). */
#include "seq2seq_lm.h"

static vp_status gather(struct seq2seq *m, struct vk_recorder *rec, const struct vk_buffer *out,
                        const struct vk_buffer *ids, const struct vk_buffer *in, uint64_t N, uint32_t C) {
    return kernel_embedding_forward(m->ctx, rec, out, ids, in, (uint32_t)N, (uint32_t)N, C, VP_DTYPE_F32, false);
}

static void use_stack(struct seq2seq *m, const struct s2s_stack_acts *sa) {
    m->core.acts.ids_hsplit = sa->ids_hsplit;
    m->core.acts.ids_hmerge = sa->ids_hmerge;
}

/* g_x: dL/d(y) → dL/d(x); post-LN forms dL/dh in g_h, pre-LN has it in g_x. */
static vp_status block_out_back(struct seq2seq *m, struct vk_recorder *rec, const struct vk_buffer *h,
                                const struct vk_buffer *mean, const struct vk_buffer *rstd,
                                const struct dec_weight *ln_w, const struct dec_weight *ln_b, uint32_t N,
                                const struct vk_buffer **dh) {
    struct s2s_acts *a = &m->acts;
    *dh = &a->g_x;
    if (m->arch.pre_norm) return VP_OK;
    *dh = &a->g_h;
    return dec_record_norm_back(&m->core, rec, &a->g_h, &a->g_x, h, mean, rstd, ln_w, ln_b, N);
}

/* g_a = dL/d(a_in) → g_x = dL/dx = dh + g_a (post-LN) or g_x + LN'(x)ᵀ·g_a. */
static vp_status block_in_back(struct seq2seq *m, struct vk_recorder *rec, const struct vk_buffer *x,
                               const struct vk_buffer *mean, const struct vk_buffer *rstd,
                               const struct dec_weight *ln_w, const struct dec_weight *ln_b, uint32_t N) {
    struct s2s_acts *a = &m->acts;
    const uint64_t nd = (uint64_t)N * (uint64_t)m->arch.hidden;
    if (!m->arch.pre_norm) return kernel_add_forward(m->ctx, rec, &a->g_x, &a->g_h, &a->g_a, nd);
    vp_status st = dec_record_norm_back(&m->core, rec, &a->g_t, &a->g_a, x, mean, rstd, ln_w, ln_b, N);
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &a->g_x, &a->g_x, &a->g_t, nd);
    return st;
}

/* k or v of an attention block: dW, db; dkv_acc += dy·W and the LoRAs'. */
static vp_status kv_back(struct seq2seq *m, struct vk_recorder *rec, int blk, enum delta_at at,
                         const struct dec_weight *w, const struct dec_weight *b, const struct vk_buffer *dy,
                         const struct vk_buffer *kv, const struct vk_buffer *dkv_acc, uint32_t Nk) {
    struct s2s_acts *a = &m->acts;
    struct decoder *c = &m->core;
    vp_status st = dec_record_weight_grads(c, rec, w, b, dy, kv, Nk);
    if (st == VP_OK) st = dec_record_linear_back(c, rec, &a->g_t, dy, w, Nk);
    if (st == VP_OK)
        st = kernel_add_forward(m->ctx, rec, dkv_acc, dkv_acc, &a->g_t, (uint64_t)Nk * (uint64_t)m->arch.hidden);
    if (st == VP_OK) st = dec_record_loras_back(c, rec, blk, at, dkv_acc, dy, Nk);
    return st;
}

/* The attention block at blk (seq2seq_forward.c's attn_forward); cross:
 * the keys' and values' input gradient goes to g_enc (accumulated). */
static vp_status attn_backward(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_attn_w *w,
                               const struct s2s_attn_acts *aa, const struct s2s_stack_acts *qs,
                               const struct s2s_stack_acts *ks, bool causal, bool cross) {
    struct s2s_acts *a = &m->acts;
    struct decoder *c = &m->core;
    const uint32_t B = (uint32_t)a->B, Tq = (uint32_t)qs->T, Tk = (uint32_t)ks->T, Nq = B * Tq, Nk = B * Tk;
    const uint32_t d = (uint32_t)m->arch.hidden, H = (uint32_t)m->arch.heads, hd = (uint32_t)m->arch.head_dim;
    const struct vk_buffer *dh, *dout;
    vp_status st = block_out_back(m, rec, &aa->h, &aa->mean, &aa->rstd, w->ln_w, w->ln_b, Nq, &dh);
    if (st == VP_OK) st = dec_record_seq_back(c, rec, blk, DELTA_AT_ATTN, dh, &dout, Nq);
    /* through the output's dropout into g_t (free until kv_back) */
    dout = dec_record_dropout_back(c, rec, &a->g_t, dout, (uint64_t)Nq * d, m->arch.hidden_dropout, blk,
                                   ENC_SITE_ATTN_OUT, &st);
    if (st == VP_OK) st = dec_record_linear_back(c, rec, &a->g_ctx, dout, w->wo, Nq);
    if (st == VP_OK) st = dec_record_weight_grads(c, rec, w->wo, w->bo, dout, &aa->ctx, Nq);
    if (st == VP_OK) st = dec_record_loras_back(c, rec, blk, DELTA_AT_O, &a->g_ctx, dout, Nq);
    if (st == VP_OK) st = gather(m, rec, &a->g_atth, &qs->ids_split, &a->g_ctx, (uint64_t)Nq * H, hd);
    const uint32_t Lp = (uint32_t)c->prefix_rows[blk];
    const uint64_t np = (uint64_t)Lp * d;
    if (st == VP_OK && Lp) st = vk_recorder_fill(rec, &a->g_pk, 0, np * 4, 0);
    if (st == VP_OK && Lp) st = vk_recorder_fill(rec, &a->g_pv, 0, np * 4, 0);
    const struct kernel_attention_config cfg = s2s_attention_config(m, blk, Tq, Tk, causal);
    if (st == VP_OK)
        st = kernel_attention_backward(m->ctx, rec, &a->g_qh, &a->g_kh, &a->g_vh, Lp ? &a->g_pk : NULL,
                                       Lp ? &a->g_pv : NULL, &a->attn_scratch, &a->g_atth, &aa->atth, &aa->lse,
                                       &aa->qh, &aa->kh, &aa->vh, Lp ? &aa->pk : NULL, Lp ? &aa->pv : NULL, &ks->keep,
                                       &cfg);
    if (st == VP_OK && Lp) { /* += into dprefix_src */
        const uint32_t elems = (uint32_t)c->prefix_src_elems;
        st = kernel_embedding_backward(m->ctx, rec, &c->acts.dprefix_src, &a->g_pk, &aa->groups_pk, (uint32_t)np,
                                       elems, 1);
        if (st == VP_OK)
            st = kernel_embedding_backward(m->ctx, rec, &c->acts.dprefix_src, &a->g_pv, &aa->groups_pv, (uint32_t)np,
                                           elems, 1);
    }
    if (st == VP_OK) st = gather(m, rec, &a->g_q, &qs->ids_merge, &a->g_qh, (uint64_t)Nq * H, hd);
    if (st == VP_OK) st = gather(m, rec, &a->g_k, &ks->ids_merge, &a->g_kh, (uint64_t)Nk * H, hd);
    if (st == VP_OK) st = gather(m, rec, &a->g_v, &ks->ids_merge, &a->g_vh, (uint64_t)Nk * H, hd);
    if (st == VP_OK) st = dec_record_linear_back(c, rec, &a->g_a, &a->g_q, w->wq, Nq);
    if (st == VP_OK) st = dec_record_weight_grads(c, rec, w->wq, w->bq, &a->g_q, aa->in, Nq);
    if (st == VP_OK) st = dec_record_loras_back(c, rec, blk, DELTA_AT_Q, &a->g_a, &a->g_q, Nq);
    const struct vk_buffer *dkv = cross ? &a->g_enc : &a->g_a;
    if (st == VP_OK) st = kv_back(m, rec, blk, DELTA_AT_K, w->wk, w->bk, &a->g_k, aa->kv, dkv, Nk);
    if (st == VP_OK) st = kv_back(m, rec, blk, DELTA_AT_V, w->wv, w->bv, &a->g_v, aa->kv, dkv, Nk);
    if (st == VP_OK) st = dec_record_adapters_back(c, rec, blk, DELTA_AT_ATTN, &a->g_a, &a->g_ctx, Nq);
    if (st == VP_OK) st = block_in_back(m, rec, aa->x, &aa->mean, &aa->rstd, w->ln_w, w->ln_b, Nq);
    return st;
}

static vp_status ffn_backward(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_ffn_w *w,
                              const struct s2s_ffn_acts *fa, uint32_t N, uint32_t I) {
    struct s2s_acts *a = &m->acts;
    struct decoder *c = &m->core;
    const struct vk_buffer *dh, *ddn;
    const uint64_t nd = (uint64_t)N * (uint64_t)m->arch.hidden, ni = (uint64_t)N * I;
    vp_status st = block_out_back(m, rec, &fa->h, &fa->mean, &fa->rstd, w->ln_w, w->ln_b, N, &dh);
    if (st == VP_OK) st = dec_record_seq_back(c, rec, blk, DELTA_AT_FFN, dh, &ddn, N);
    /* through dn's dropout into g_t (free until the adapters' backward) */
    ddn = dec_record_dropout_back(c, rec, &a->g_t, ddn, nd, m->arch.hidden_dropout, blk, ENC_SITE_FFN_OUT, &st);
    if (st == VP_OK) st = dec_record_linear_back(c, rec, &a->g_u, ddn, w->w2, N);
    if (st == VP_OK) st = dec_record_weight_grads(c, rec, w->w2, w->b2, ddn, &fa->u, N);
    if (st == VP_OK) st = dec_record_loras_back(c, rec, blk, DELTA_AT_DOWN, &a->g_u, ddn, N);
    dec_record_dropout_back(c, rec, &a->g_u, &a->g_u, ni, m->arch.activation_dropout, blk, ENC_SITE_FFN_ACT, &st);
    if (st == VP_OK)
        st = kernel_activation_backward(m->ctx, rec, &a->g_up, &a->g_u, &fa->upre, ni, s2s_act(m));
    if (st == VP_OK) st = dec_record_linear_back(c, rec, &a->g_a, &a->g_up, w->w1, N);
    if (st == VP_OK) st = dec_record_weight_grads(c, rec, w->w1, w->b1, &a->g_up, fa->in, N);
    if (st == VP_OK) st = dec_record_loras_back(c, rec, blk, DELTA_AT_UP, &a->g_a, &a->g_up, N);
    if (st == VP_OK) st = dec_record_adapters_back(c, rec, blk, DELTA_AT_FFN, &a->g_a, dh, N);
    if (st == VP_OK) st = block_in_back(m, rec, fa->x, &fa->mean, &fa->rstd, w->ln_w, w->ln_b, N);
    return st;
}

/* g_x: dL/d(stack output) in; the embeddings' gradients out (trained
 * tables: the positions', and the shared table's through embed_scale). */
static vp_status stack_backward(struct seq2seq *m, struct vk_recorder *rec, const struct s2s_stack_w *w,
                                struct s2s_stack_acts *sa, const struct s2s_stack_acts *enc) {
    struct s2s_acts *a = &m->acts;
    struct decoder *c = &m->core;
    const struct model_arch *ar = &m->arch;
    const uint32_t N = (uint32_t)(a->B * sa->T), d = (uint32_t)ar->hidden;
    const unsigned self = enc ? DELTA_STACK_DECODER : DELTA_STACK_ENCODER;
    vp_status st = VP_OK;
    use_stack(m, sa);
    if (w->final_w) {
        st = dec_record_norm_back(c, rec, &a->g_t, &a->g_x, sa->layer[w->layers - 1].ffn.y, &sa->final_mean,
                                  &sa->final_rstd, w->final_w, w->final_b, N);
        if (st == VP_OK) st = vk_recorder_copy(rec, &a->g_x, 0, &a->g_t, 0, (uint64_t)N * d * 4);
    }
    for (int l = w->layers - 1; l >= 0 && st == VP_OK; l--) {
        const struct s2s_layer_acts *la = &sa->layer[l];
        const int blk = s2s_block(m, self, l);
        /* checkpointing: layer l again into the buffers the stack's layers
         * share (the last one's are still there from the forward) */
        if (c->opt.checkpoint_activations && l < w->layers - 1) st = s2s_layer_forward(m, rec, w, sa, enc, l);
        const char *site = vk_recorder_label(rec, enc ? "backward decoder ffn" : "backward encoder ffn");
        if (st == VP_OK) st = ffn_backward(m, rec, blk, &w->layer[l].ffn, &la->ffn, N, (uint32_t)w->I);
        vk_recorder_label(rec, "backward cross attention");
        if (st == VP_OK && enc)
            st = attn_backward(m, rec, s2s_block(m, DELTA_STACK_CROSS, l), &w->layer[l].cross, &la->cross, sa, enc,
                               false, true);
        vk_recorder_label(rec, enc ? "backward decoder attention" : "backward encoder attention");
        if (st == VP_OK) st = attn_backward(m, rec, blk, &w->layer[l].self, &la->self, sa, sa, enc != NULL, false);
        vk_recorder_label(rec, site);
    }
    /* g_x is dL/dx now; through the embeddings' dropout */
    dec_record_dropout_back(c, rec, &a->g_x, &a->g_x, (uint64_t)N * d, ar->hidden_dropout, s2s_first_block(m, w),
                            ENC_SITE_EMB, &st);
    if (st == VP_OK)
        st = dec_record_norm_back(c, rec, &a->g_t, &a->g_x, &sa->x0, &sa->emb_mean, &sa->emb_rstd, w->emb_w, w->emb_b,
                                  N);
    if (st == VP_OK && w->pos->param)
        st = kernel_embedding_backward(m->ctx, rec, &w->pos->param->grad, &a->g_t, &sa->groups_pos, N,
                                       (uint32_t)(ar->max_positions + ar->position_offset), d);
    if (st == VP_OK && m->shared->param) {
        if (ar->embed_scale != 1.0)
            st = kernel_scale_forward(m->ctx, rec, &a->g_t, &a->g_t, (float)ar->embed_scale, (uint64_t)N * d);
        if (st == VP_OK)
            st = kernel_embedding_backward(m->ctx, rec, &m->shared->param->grad, &a->g_t, &sa->groups_word, N,
                                           (uint32_t)ar->vocab_size, d);
    }
    return st;
}

vp_status s2s_record_backward(struct seq2seq *m, struct vk_recorder *rec) {
    struct s2s_acts *a = &m->acts;
    struct decoder *c = &m->core;
    const uint32_t Nd = (uint32_t)(a->B * a->T), Ne = (uint32_t)(a->B * a->S), d = (uint32_t)m->arch.hidden;
    const uint32_t V = (uint32_t)m->arch.vocab_size;
    const struct kernel_cross_entropy_config ce = {Nd, V, ENCODER_IGNORE_INDEX, (float)c->opt.label_smoothing};
    const char *site = vk_recorder_label(rec, "backward"); /* loss, head, embeddings; the blocks name theirs */
    vp_status st = kernel_cross_entropy_backward(m->ctx, rec, &a->g_logits, &a->logits, &a->targets, &a->ce_lse,
                                                 &a->loss, 1.0f, &ce);
    if (st == VP_OK) /* dW_head += dlogitsᵀ·y_dec when trained (tied: the shared table's) */
        st = kernel_matmul_backward(m->ctx, rec, &a->g_x, m->head->param ? &m->head->param->grad : NULL, NULL,
                                    &a->g_logits, a->dec.out, dec_wbuf(m->head), m->head->dtype, Nd, d, V, NULL);
    if (st == VP_OK && c->prefix_max) st = vk_recorder_fill(rec, &c->acts.dprefix_src, 0, c->prefix_src_elems * 4, 0);
    if (st == VP_OK) st = vk_recorder_fill(rec, &a->g_enc, 0, (uint64_t)Ne * d * 4, 0);
    if (st == VP_OK) st = stack_backward(m, rec, &m->dec, &a->dec, &a->enc);
    if (st == VP_OK) st = vk_recorder_copy(rec, &a->g_x, 0, &a->g_enc, 0, (uint64_t)Ne * d * 4);
    if (st == VP_OK) st = stack_backward(m, rec, &m->enc, &a->enc, NULL);
    if (st == VP_OK && c->prefix_max) st = dec_record_prefixes_back(c, rec);
    vk_recorder_label(rec, site);
    return st;
}
