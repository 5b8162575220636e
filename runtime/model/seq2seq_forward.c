/* The encoder-decoder model's forward pass (tests/reference/seq2seq.h)
 * recorded from the kernels. One attention block serves encoder
 * self-attention, decoder self-attention and cross-attention, one FFN block
 * both stacks; post-LN (BART) and pre-LN (mBART) differ only in where the
 * block's LayerNorm sits. Delta sites, linear layers and norms are the
 * decoder's (decoder_lm.h), run on the inner decoder at the block's index.
 * Dropout sites (training passes with dropout on; seq2seq_options) drop in
 * place, keyed by the block's index and the site. Profile sites
 * (vk_recorder_label): "forward" (embeddings, head, loss), "forward
 * {encoder,decoder,cross} attention", "forward {encoder,decoder} ffn", and
 * the decoder's delta sites inside them ("forward lora", ...). */
#include "seq2seq_lm.h"

/* Block blk's attention of Tq queries over Tk keys with its prefix rows and,
 * in a training pass with dropout on, attention_dropout on the
 * probabilities (seq2seq_backward.c's too). */
struct kernel_attention_config s2s_attention_config(const struct seq2seq *m, int blk, uint32_t Tq, uint32_t Tk,
                                                    bool causal) {
    const struct decoder *c = &m->core;
    return (struct kernel_attention_config){
        .B = (uint32_t)m->acts.B, .H = (uint32_t)m->arch.heads, .T = Tq, .S = Tk,
        .L = (uint32_t)c->prefix_rows[blk], .D = (uint32_t)m->arch.head_dim, .causal = causal,
        .dropout_p = dec_dropout_p(c, m->arch.attention_dropout), .dropout_seed = c->opt.seed,
        .dropout_step = c->step, .dropout_stream = enc_dropout_stream(blk, ENC_SITE_ATTN_PROBS)};
}

static vp_status gather(struct seq2seq *m, struct vk_recorder *rec, const struct vk_buffer *out,
                        const struct vk_buffer *ids, const struct vk_buffer *table, uint64_t N, uint64_t V,
                        uint32_t C) {
    return kernel_embedding_forward(m->ctx, rec, out, ids, table, (uint32_t)N, (uint32_t)V, C, VP_DTYPE_F32, false);
}

/* The per-head adapters' tables of the stack whose blocks are recorded next. */
static void use_stack(struct seq2seq *m, const struct s2s_stack_acts *sa) {
    m->core.acts.ids_hsplit = sa->ids_hsplit;
    m->core.acts.ids_hmerge = sa->ids_hmerge;
}

/* An attention block's query side at delta block blk: pre-LN's norm of x
 * (Nq rows) and q from it with its LoRAs. Sets aa->x, aa->in. */
vp_status s2s_attn_project(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_attn_w *w,
                           struct s2s_attn_acts *aa, const struct vk_buffer *x, uint32_t Nq) {
    struct decoder *c = &m->core;
    const uint32_t d = (uint32_t)m->arch.hidden;
    const bool pre = m->arch.pre_norm;
    aa->x = x;
    aa->in = pre ? &aa->a_in : x;
    vp_status st = pre ? dec_record_norm(c, rec, &aa->a_in, &aa->mean, &aa->rstd, x, w->ln_w, w->ln_b, Nq) : VP_OK;
    if (st == VP_OK) st = dec_record_linear(c, rec, &aa->q, aa->in, w->wq, w->bq, Nq, d, d);
    if (st == VP_OK) st = dec_record_loras(c, rec, blk, DELTA_AT_Q, &aa->q, aa->in, Nq);
    return st;
}

/* k and v (Nk rows) from kv_src (NULL: the block's input, set by
 * s2s_attn_project), each with its LoRAs. */
vp_status s2s_attn_kv(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_attn_w *w,
                      struct s2s_attn_acts *aa, const struct vk_buffer *kv_src, uint32_t Nk) {
    struct decoder *c = &m->core;
    const uint32_t d = (uint32_t)m->arch.hidden;
    aa->kv = kv_src ? kv_src : aa->in;
    vp_status st = dec_record_linear(c, rec, &aa->k, aa->kv, w->wk, w->bk, Nk, d, d);
    if (st == VP_OK) st = dec_record_loras(c, rec, blk, DELTA_AT_K, &aa->k, aa->kv, Nk);
    if (st == VP_OK) st = dec_record_linear(c, rec, &aa->v, aa->kv, w->wv, w->bv, Nk, d, d);
    if (st == VP_OK) st = dec_record_loras(c, rec, blk, DELTA_AT_V, &aa->v, aa->kv, Nk);
    return st;
}

/* k, v (Nk,d) split into heads kh, vh (B,H,Tk,hd) by stack ks's table. */
vp_status s2s_attn_split_kv(struct seq2seq *m, struct vk_recorder *rec, struct s2s_attn_acts *aa,
                            const struct s2s_stack_acts *ks, uint32_t Nk) {
    const uint32_t H = (uint32_t)m->arch.heads, hd = (uint32_t)m->arch.head_dim;
    vp_status st = gather(m, rec, &aa->kh, &ks->ids_split, &aa->k, (uint64_t)Nk * H, (uint64_t)Nk * H, hd);
    if (st == VP_OK) st = gather(m, rec, &aa->vh, &ks->ids_split, &aa->v, (uint64_t)Nk * H, (uint64_t)Nk * H, hd);
    return st;
}

/* Block blk's prefix rows pk, pv (H,Lp,hd) from prefix_src (none: Lp = 0). */
vp_status s2s_attn_prefix(struct seq2seq *m, struct vk_recorder *rec, int blk, struct s2s_attn_acts *aa) {
    struct decoder *c = &m->core;
    const uint64_t n = (uint64_t)c->prefix_rows[blk] * (uint64_t)m->arch.hidden;
    if (!n) return VP_OK;
    vp_status st = gather(m, rec, &aa->pk, &aa->ids_pk, &c->acts.prefix_src, n, c->prefix_src_elems, 1);
    if (st == VP_OK) st = gather(m, rec, &aa->pv, &aa->ids_pv, &c->acts.prefix_src, n, c->prefix_src_elems, 1);
    return st;
}

/* After the attention: ctx (Nq,d) through the parallel adapters, o and its
 * LoRA, the sequential adapters, the residual and post-LN's norm; sets
 * aa->o_final and aa->y. */
vp_status s2s_attn_output(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_attn_w *w,
                          struct s2s_attn_acts *aa, const struct vk_buffer *ctx, uint32_t Nq) {
    struct decoder *c = &m->core;
    const uint32_t d = (uint32_t)m->arch.hidden;
    const bool pre = m->arch.pre_norm;
    const struct vk_buffer *cur = ctx;
    vp_status st = dec_record_adapters(c, rec, blk, DELTA_AT_ATTN, DELTA_PARALLEL, &cur, aa->in, Nq);
    if (st == VP_OK) st = dec_record_linear(c, rec, &aa->o, ctx, w->wo, w->bo, Nq, d, d);
    if (st == VP_OK) st = dec_record_loras(c, rec, blk, DELTA_AT_O, &aa->o, ctx, Nq);
    if (st == VP_OK)
        st = dec_record_dropout(c, rec, &aa->o, (uint64_t)Nq * d, m->arch.hidden_dropout, blk, ENC_SITE_ATTN_OUT);
    cur = &aa->o;
    if (st == VP_OK) st = dec_record_adapters(c, rec, blk, DELTA_AT_ATTN, DELTA_SEQUENTIAL, &cur, NULL, Nq);
    aa->o_final = cur;
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &aa->h, aa->x, cur, (uint64_t)Nq * d);
    if (st == VP_OK && !pre)
        st = dec_record_norm(c, rec, &aa->out, &aa->mean, &aa->rstd, &aa->h, w->ln_w, w->ln_b, Nq);
    aa->y = pre ? &aa->h : &aa->out;
    return st;
}

/* One attention block at delta block blk: queries from x (Tq per sequence,
 * the tables of stack qs), keys and values from kv_src (NULL: the block's
 * own input; cross-attention: the encoder output, Tk per sequence, stack
 * ks, masked by its keep). Sets aa->y to the block's output. */
static vp_status attn_forward(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_attn_w *w,
                              struct s2s_attn_acts *aa, const struct vk_buffer *x, const struct s2s_stack_acts *qs,
                              const struct s2s_stack_acts *ks, const struct vk_buffer *kv_src, bool causal) {
    const uint32_t B = (uint32_t)m->acts.B, Tq = (uint32_t)qs->T, Tk = (uint32_t)ks->T, Nq = B * Tq, Nk = B * Tk;
    const uint32_t H = (uint32_t)m->arch.heads, hd = (uint32_t)m->arch.head_dim;
    vp_status st = s2s_attn_project(m, rec, blk, w, aa, x, Nq);
    if (st == VP_OK) st = s2s_attn_kv(m, rec, blk, w, aa, kv_src, Nk);
    if (st == VP_OK) st = gather(m, rec, &aa->qh, &qs->ids_split, &aa->q, (uint64_t)Nq * H, (uint64_t)Nq * H, hd);
    if (st == VP_OK) st = s2s_attn_split_kv(m, rec, aa, ks, Nk);
    if (st == VP_OK) st = s2s_attn_prefix(m, rec, blk, aa);
    const uint32_t Lp = (uint32_t)m->core.prefix_rows[blk];
    const struct kernel_attention_config cfg = s2s_attention_config(m, blk, Tq, Tk, causal);
    if (st == VP_OK)
        st = kernel_attention_forward(m->ctx, rec, &aa->atth, &aa->lse, &aa->qh, &aa->kh, &aa->vh,
                                      Lp ? &aa->pk : NULL, Lp ? &aa->pv : NULL, &ks->keep, &cfg);
    if (st == VP_OK) st = gather(m, rec, &aa->ctx, &qs->ids_merge, &aa->atth, (uint64_t)Nq * H, (uint64_t)Nq * H, hd);
    if (st == VP_OK) st = s2s_attn_output(m, rec, blk, w, aa, &aa->ctx, Nq);
    return st;
}

/* One FFN block at delta block blk, N rows of width I. */
vp_status s2s_ffn_forward(struct seq2seq *m, struct vk_recorder *rec, int blk, const struct s2s_ffn_w *w,
                             struct s2s_ffn_acts *fa, const struct vk_buffer *x, uint32_t N, uint32_t I) {
    struct decoder *c = &m->core;
    const uint32_t d = (uint32_t)m->arch.hidden;
    const bool pre = m->arch.pre_norm;
    fa->x = x;
    fa->in = pre ? &fa->f_in : x;
    vp_status st = pre ? dec_record_norm(c, rec, &fa->f_in, &fa->mean, &fa->rstd, x, w->ln_w, w->ln_b, N) : VP_OK;
    if (st == VP_OK) st = dec_record_linear(c, rec, &fa->upre, fa->in, w->w1, w->b1, N, d, I);
    if (st == VP_OK) st = dec_record_loras(c, rec, blk, DELTA_AT_UP, &fa->upre, fa->in, N);
    if (st == VP_OK)
        st = kernel_activation_forward(m->ctx, rec, &fa->u, &fa->upre, (uint64_t)N * I, s2s_act(m));
    if (st == VP_OK)
        st = dec_record_dropout(c, rec, &fa->u, (uint64_t)N * I, m->arch.activation_dropout, blk, ENC_SITE_FFN_ACT);
    if (st == VP_OK) st = dec_record_linear(c, rec, &fa->dn, &fa->u, w->w2, w->b2, N, I, d);
    if (st == VP_OK) st = dec_record_loras(c, rec, blk, DELTA_AT_DOWN, &fa->dn, &fa->u, N);
    if (st == VP_OK)
        st = dec_record_dropout(c, rec, &fa->dn, (uint64_t)N * d, m->arch.hidden_dropout, blk, ENC_SITE_FFN_OUT);
    const struct vk_buffer *cur = &fa->dn;
    if (st == VP_OK) st = dec_record_adapters(c, rec, blk, DELTA_AT_FFN, DELTA_SEQUENTIAL, &cur, NULL, N);
    if (st == VP_OK) st = dec_record_adapters(c, rec, blk, DELTA_AT_FFN, DELTA_PARALLEL, &cur, fa->in, N);
    if (st == VP_OK) st = kernel_add_forward(m->ctx, rec, &fa->h, x, cur, (uint64_t)N * d);
    if (st == VP_OK && !pre) st = dec_record_norm(c, rec, &fa->out, &fa->mean, &fa->rstd, &fa->h, w->ln_w, w->ln_b, N);
    fa->y = pre ? &fa->h : &fa->out;
    return st;
}

/* x0 = embed_scale·E[ids] + W_pos[pos]; x = dropout(LN_emb(x0)). */
vp_status s2s_embed_forward(struct seq2seq *m, struct vk_recorder *rec, const struct s2s_stack_w *w,
                               struct s2s_stack_acts *sa, uint32_t N) {
    const struct model_arch *a = &m->arch;
    const uint32_t d = (uint32_t)a->hidden;
    vp_status st = kernel_embedding_forward(m->ctx, rec, &sa->x0, &sa->ids, dec_wbuf(m->shared), N,
                                            (uint32_t)a->vocab_size, d, m->shared->dtype, false);
    if (st == VP_OK && a->embed_scale != 1.0)
        st = kernel_scale_forward(m->ctx, rec, &sa->x0, &sa->x0, (float)a->embed_scale, (uint64_t)N * d);
    if (st == VP_OK)
        st = kernel_embedding_forward(m->ctx, rec, &sa->x0, &sa->pos, dec_wbuf(w->pos), N,
                                      (uint32_t)(a->max_positions + a->position_offset), d, w->pos->dtype, true);
    if (st == VP_OK)
        st = dec_record_norm(&m->core, rec, &sa->x, &sa->emb_mean, &sa->emb_rstd, &sa->x0, w->emb_w, w->emb_b, N);
    if (st == VP_OK)
        st = dec_record_dropout(&m->core, rec, &sa->x, (uint64_t)N * d, a->hidden_dropout, s2s_first_block(m, w),
                                ENC_SITE_EMB);
    return st;
}

/* Layer l of a stack from its input (the embeddings' x or layer l-1's
 * output): self-attention, (decoder) cross-attention over enc->out, FFN;
 * sets the layer's ffn.y. Run by the forward and, with checkpointing, again
 * by the backward right before the layer's backward. */
vp_status s2s_layer_forward(struct seq2seq *m, struct vk_recorder *rec, const struct s2s_stack_w *w,
                            struct s2s_stack_acts *sa, const struct s2s_stack_acts *enc, int l) {
    const uint32_t N = (uint32_t)(m->acts.B * sa->T);
    const int blk = s2s_block(m, enc ? DELTA_STACK_DECODER : DELTA_STACK_ENCODER, l);
    struct s2s_layer_acts *la = &sa->layer[l];
    const struct vk_buffer *x = l ? sa->layer[l - 1].ffn.y : &sa->x;
    const char *site = vk_recorder_label(rec, enc ? "forward decoder attention" : "forward encoder attention");
    vp_status st = attn_forward(m, rec, blk, &w->layer[l].self, &la->self, x, sa, sa, NULL, enc != NULL);
    x = la->self.y;
    vk_recorder_label(rec, "forward cross attention");
    if (st == VP_OK && enc)
        st = attn_forward(m, rec, s2s_block(m, DELTA_STACK_CROSS, l), &w->layer[l].cross, &la->cross, x, sa, enc,
                          enc->out, false);
    if (enc) x = la->cross.y;
    vk_recorder_label(rec, enc ? "forward decoder ffn" : "forward encoder ffn");
    if (st == VP_OK) st = s2s_ffn_forward(m, rec, blk, &w->layer[l].ffn, &la->ffn, x, N, (uint32_t)w->I);
    vk_recorder_label(rec, site);
    return st;
}

/* A stack: embeddings, layers, mBART's final LN; sets sa->out. The decoder
 * stack's cross-attention reads the encoder stack (enc). */
vp_status s2s_stack_forward(struct seq2seq *m, struct vk_recorder *rec, const struct s2s_stack_w *w,
                               struct s2s_stack_acts *sa, const struct s2s_stack_acts *enc) {
    const uint32_t N = (uint32_t)(m->acts.B * sa->T);
    use_stack(m, sa);
    vp_status st = s2s_embed_forward(m, rec, w, sa, N);
    for (int l = 0; l < w->layers && st == VP_OK; l++) st = s2s_layer_forward(m, rec, w, sa, enc, l);
    sa->out = w->layers ? sa->layer[w->layers - 1].ffn.y : &sa->x;
    if (st == VP_OK && w->final_w) {
        st = dec_record_norm(&m->core, rec, &sa->final_out, &sa->final_mean, &sa->final_rstd, sa->out, w->final_w,
                             w->final_b, N);
        sa->out = &sa->final_out;
    }
    return st;
}

vp_status s2s_record_forward(struct seq2seq *m, struct vk_recorder *rec) {
    struct s2s_acts *a = &m->acts;
    const uint32_t Nd = (uint32_t)(a->B * a->T), d = (uint32_t)m->arch.hidden, V = (uint32_t)m->arch.vocab_size;
    const char *site = vk_recorder_label(rec, "forward"); /* embeddings, head, loss; the blocks name theirs */
    vp_status st = dec_record_prefixes(&m->core, rec);
    if (st == VP_OK) st = s2s_stack_forward(m, rec, &m->enc, &a->enc, NULL);
    if (st == VP_OK) st = s2s_stack_forward(m, rec, &m->dec, &a->dec, &a->enc);
    if (st == VP_OK)
        st = kernel_matmul_forward(m->ctx, rec, &a->logits, a->dec.out, dec_wbuf(m->head), m->head->dtype,
                                   &m->logits_bias->frozen, Nd, d, V, NULL);
    const struct kernel_cross_entropy_config ce = {Nd, V, ENCODER_IGNORE_INDEX, (float)m->core.opt.label_smoothing};
    if (st == VP_OK)
        st = kernel_cross_entropy_forward(m->ctx, rec, &a->loss, &a->ce_lse, NULL, &a->ce_scratch, &a->logits,
                                          &a->targets, &ce);
    vk_recorder_label(rec, site);
    return st;
}
