/* The GPU decoder: lifecycle, the memory plan and activation layout, batch
 * inputs and outputs through staging, recordings. The pretrained tensors
 * are in decoder_load.c, the forward in decoder_forward.c. */
#include "decoder_lm.h"
#include "safetensors.h"
#include "save.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

struct vk_buffer dec_view(const struct vk_buffer *buf, uint64_t offset, uint64_t len) {
    struct vk_buffer v = *buf;
    v.offset += offset;
    v.size = len;
    v.host = buf->host ? (char *)buf->host + offset : NULL;
    return v;
}

/* ------------------------------------------------------------------------
 * Open
 * ------------------------------------------------------------------------ */

static vp_status check_arch(const struct model_arch *a, const char *dir) {
    if (a->family != MODEL_FAMILY_GPT2 && a->family != MODEL_FAMILY_LLAMA)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: the decoder runs GPT-2 and LLaMA-family models, not %s", dir,
                       a->model_type);
    if (!a->pre_norm || !a->final_norm || a->stack != MODEL_STACK_DECODER)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: %s is not a pre-norm decoder-only model", dir, a->model_type);
    if (a->head_dim > 256 || a->heads % a->kv_heads != 0)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: head width %d (at most 256) or %d heads over %d kv heads",
                       dir, a->head_dim, a->heads, a->kv_heads);
    if (a->family == MODEL_FAMILY_GPT2 && a->heads * a->head_dim != a->hidden)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: GPT-2 needs heads × head width = hidden", dir);
    return VP_OK;
}

static VkDeviceSize align_to(VkDeviceSize v, VkDeviceSize a) { return (v + a - 1) / a * a; }

/* Whether a model tensor trains: every one under full; under bitfit the
 * biases (LayerNorm β included) of the module's layers and the final
 * norm's β (the reference's mark_model_trainable). */
static bool model_trained(const struct decoder *m, const struct dec_weight *w) {
    size_t len = strlen(w->name);
    const bool bias = len >= 5 && strcmp(w->name + len - 5, ".bias") == 0;
    int layer = -1;
    if (sscanf(w->name, "transformer.h.%d.", &layer) != 1 && sscanf(w->name, "model.layers.%d.", &layer) != 1)
        layer = -1;
    for (int i = 0; i < m->spec.count; i++) {
        const struct delta_module *d = &m->spec.modules[i];
        if (d->kind == DELTA_FULL) return true;
        if (d->kind == DELTA_BITFIT && bias && (layer < 0 || delta_module_has_layer(d, layer))) return true;
    }
    return false;
}

/* The trainable tensors: delta/params.h's list for the spec (named
 * decoder.layers.*, prefixes in K/V head space, no head) plus the model
 * tensors bitfit / full train, in the file's shape. */
static vp_status setup_params(struct decoder *m) {
    const struct model_arch *a = &m->arch;
    const int qd = a->heads * a->head_dim;
    for (int i = 0; i < m->spec.count; i++) {
        const struct delta_module *d = &m->spec.modules[i];
        const bool adapter = d->kind == DELTA_ADAPTER && (!d->per_head || d->at == DELTA_AT_ATTN);
        const bool prefix = d->kind == DELTA_PREFIX;
        if (d->kind == DELTA_FULL) m->full = true;
        if (d->kind != DELTA_LORA && !adapter && !prefix && d->kind != DELTA_FULL && d->kind != DELTA_BITFIT)
            return vp_fail(VP_ERROR_UNSUPPORTED, "decoder: delta module %d is %s%s; the GPU decoder supports LoRA, "
                           "adapters (per head only at attn), prefixes, bitfit and full so far", i,
                           delta_kind_name(d->kind), d->kind == DELTA_ADAPTER ? " (per head at ffn)" : "");
        if (d->kind == DELTA_ADAPTER && d->per_head) m->per_head = true;
        if (qd != a->hidden && (d->at == DELTA_AT_Q || d->at == DELTA_AT_O || d->at == DELTA_AT_ATTN))
            return vp_fail(VP_ERROR_UNSUPPORTED, "decoder: a delta on q, o or the attention output needs heads × "
                           "head width = hidden");
    }
    vp_status s = delta_params_create(m->ctx, a, &m->spec, m->opt.seed, &m->params);
    if (s != VP_OK) return s;
    struct delta_params *p = m->params;
    /* the model tensors full (all) and bitfit (biases) train, once each, in the file's shape */
    for (int k = 0; k < m->weight_count; k++) {
        struct dec_weight *w = &m->weights[k];
        if (!model_trained(m, w) || delta_params_find(p, w->name)) continue;
        m->model_trains = true;
        if ((s = delta_params_add_model(p, w->name, w->ndim, w->shape)) != VP_OK) return s;
    }
    const VkDeviceSize align = vk_pool_alignment(m->ctx);
    m->trains = p->count > 0;
    m->slots = calloc((size_t)m->spec.count * a->layers + 1, sizeof *m->slots);
    m->prefix_rows = calloc((size_t)a->layers, sizeof *m->prefix_rows);
    m->reparam = calloc((size_t)m->spec.count + 1, sizeof *m->reparam);
    if (!m->slots || !m->prefix_rows || !m->reparam)
        return vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory");
    const uint64_t kvd = (uint64_t)a->kv_heads * a->head_dim, ealign = align / 4;
    uint64_t src = 0;
    for (int i = 0; i < m->spec.count; i++) {
        const struct delta_module *dm = &m->spec.modules[i];
        struct dec_reparam *rp = &m->reparam[i];
        if (dm->kind == DELTA_PREFIX && dm->reparam > 0) {
            static const char *const part[5] = {"embedding", "0.weight", "0.bias", "2.weight", "2.bias"};
            struct delta_param **dst[5] = {&rp->emb, &rp->w0, &rp->b0, &rp->w2, &rp->b2};
            for (int k = 0; k < 5; k++) {
                char name[DELTA_NAME_MAX];
                snprintf(name, sizeof name, "delta%d.reparam.%s", i, part[k]);
                *dst[k] = delta_params_find(p, name);
                if (!*dst[k]) return vp_fail(VP_ERROR_BAD_INPUT, "decoder: the params have no %s", name);
            }
            rp->width = (uint32_t)rp->b2->n;
            rp->out = align_to(src, ealign);
            src = rp->out + (uint64_t)dm->size * rp->width;
        }
        int block = 0;
        for (int l = 0; l < a->layers; l++) {
            struct dec_slot *sl = dec_slot_at(m, i, l);
            char name[DELTA_NAME_MAX];
            sl->module = i;
            sl->layer = l;
            if (dm->kind == DELTA_PREFIX) {
                if (!delta_module_has_layer(dm, l)) continue;
                if (rp->emb) {
                    sl->src_k = rp->out + (uint64_t)block++ * 2 * kvd;
                    sl->src_v = sl->src_k + kvd;
                    sl->src_stride = rp->width;
                } else {
                    snprintf(name, sizeof name, "decoder.layers.%d.delta%d.prefix_k", l, i);
                    sl->prefix_k = delta_params_find(p, name);
                    snprintf(name, sizeof name, "decoder.layers.%d.delta%d.prefix_v", l, i);
                    sl->prefix_v = delta_params_find(p, name);
                    if (!sl->prefix_k || !sl->prefix_v) continue;
                    sl->src_k = align_to(src, ealign);
                    sl->src_v = align_to(sl->src_k + (uint64_t)dm->size * kvd, ealign);
                    src = sl->src_v + (uint64_t)dm->size * kvd;
                    sl->src_stride = kvd;
                }
                sl->prefix_offset = m->prefix_rows[l];
                m->prefix_rows[l] += m->spec.modules[i].size;
                if (m->prefix_rows[l] > m->prefix_max) m->prefix_max = m->prefix_rows[l];
                sl->active = true;
                continue;
            }
            if (m->spec.modules[i].kind == DELTA_ADAPTER) {
                snprintf(name, sizeof name, "decoder.layers.%d.delta%d.down.weight", l, i);
                sl->down_w = delta_params_find(p, name);
                snprintf(name, sizeof name, "decoder.layers.%d.delta%d.down.bias", l, i);
                sl->down_b = delta_params_find(p, name);
                snprintf(name, sizeof name, "decoder.layers.%d.delta%d.up.weight", l, i);
                sl->up_w = delta_params_find(p, name);
                snprintf(name, sizeof name, "decoder.layers.%d.delta%d.up.bias", l, i);
                sl->up_b = delta_params_find(p, name);
                snprintf(name, sizeof name, "decoder.layers.%d.delta%d.gate", l, i);
                sl->gate = delta_params_find(p, name);
                if (!sl->down_w || !sl->down_b || !sl->up_w || !sl->up_b) continue;
                sl->din = m->spec.modules[i].per_head ? a->hidden : (int)sl->down_w->shape[1];
                sl->dout = m->spec.modules[i].per_head ? a->hidden : (int)sl->up_w->shape[0];
            } else {
                snprintf(name, sizeof name, "decoder.layers.%d.delta%d.lora_A", l, i);
                sl->lora_a = delta_params_find(p, name);
                snprintf(name, sizeof name, "decoder.layers.%d.delta%d.lora_B", l, i);
                sl->lora_b = delta_params_find(p, name);
                if (!sl->lora_a || !sl->lora_b) continue;
                sl->din = (int)sl->lora_a->shape[1];
                sl->dout = (int)sl->lora_b->shape[0];
            }
            sl->active = true;
            const int width = m->spec.modules[i].size * (m->spec.modules[i].per_head ? a->heads : 1);
            if (width > m->rank_max) m->rank_max = width;
        }
    }
    m->prefix_src_elems = src;
    for (int k = 0; m->model_trains && k < m->weight_count; k++) {
        struct dec_weight *w = &m->weights[k];
        w->param = delta_params_find(p, w->name);
        if (!w->param) continue;
        w->poff = w->conv1d ? (uint64_t)w->c0 * (uint64_t)(w->in > 0 ? w->in : 1) : 0;
        w->dtype = VP_DTYPE_F32;
    }
    m->position_offset = m->prefix_max;
    return VP_OK;
}

vp_status decoder_open(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                       const struct decoder_options *opt, struct decoder **out) {
    *out = NULL;
    struct decoder *m = calloc(1, sizeof *m);
    if (!m) return vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory");
    m->ctx = ctx;
    m->spec = *spec;
    if (opt) m->opt = *opt;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    vp_status s = model_arch_load(dir, &m->arch);
    if (s == VP_OK) {
        model_arch_finish(&m->arch);
        s = check_arch(&m->arch, dir);
    }
    if (s == VP_OK && m->opt.dropout_p > 0) { /* GPT-2 drops at three sites, the LLaMA family at one */
        m->arch.attention_dropout = m->opt.dropout_p;
        if (m->arch.family == MODEL_FAMILY_GPT2) m->arch.embedding_dropout = m->arch.hidden_dropout = m->opt.dropout_p;
    }
    if (s == VP_OK) s = dec_weights_init(m);
    if (s == VP_OK) s = setup_params(m);
    if (s == VP_OK) s = dec_open_weights(m);
    if (s != VP_OK) {
        decoder_destroy(m);
        return s;
    }
    *out = m;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Activation layout: one walk sizes the plan and allocates
 * ------------------------------------------------------------------------ */

static const struct dec_slot *first_active_slot(struct decoder *m, int module) {
    for (int l = 0; l < m->arch.layers; l++)
        if (dec_slot_at(m, module, l)->active) return dec_slot_at(m, module, l);
    return NULL;
}

void dec_take_slot(const struct decoder *m, struct model_taker *t, struct dec_slot *sl, uint64_t N) {
    const struct delta_module *dm = &m->spec.modules[sl->module];
    const uint64_t d = (uint64_t)m->arch.hidden, H = (uint64_t)m->arch.heads;
    const vp_pool A = VP_POOL_ACTIVATIONS;
    const uint64_t rows = dm->kind == DELTA_ADAPTER && dm->per_head ? N * H : N;
    model_take(t, A, &sl->hpre, rows * (uint64_t)dm->size * 4);
    if (dm->kind != DELTA_ADAPTER) return;
    const bool drops = m->opt.dropout && dec_adapter_p(m, dm) > 0;
    if (dm->act != DELTA_ACT_IDENTITY || drops) model_take(t, A, &sl->hact, rows * (uint64_t)dm->size * 4);
    if (dm->per_head) {
        model_take(t, A, &sl->zh, N * d * 4);
        model_take(t, A, &sl->dh, N * d * 4);
    }
    model_take(t, A, &sl->delta, N * (uint64_t)sl->dout * 4);
    if (dm->insert == DELTA_SEQUENTIAL || dm->compose == DELTA_COMPOSE_GATED)
        model_take(t, A, &sl->out, N * (uint64_t)sl->dout * 4);
}

/* With checkpointing, every layer keeps only its out (and its prefix rows
 * and their index tables); the rest of its activations and its deltas'
 * bottlenecks are layer 0's (a module's first layer's) buffers. */
static vp_status acts_layout(struct decoder *m, struct dec_acts *a, int B_, int T_, bool checkpoint, bool alloc,
                             uint64_t bytes[VP_POOL_COUNT]) {
    const struct model_arch *ar = &m->arch;
    const uint64_t B = (uint64_t)B_, T = (uint64_t)T_, N = B * T, d = (uint64_t)ar->hidden;
    const uint64_t H = (uint64_t)ar->heads, hd = (uint64_t)ar->head_dim, I = (uint64_t)ar->intermediate;
    const uint64_t V = (uint64_t)ar->vocab_size, qd = H * hd, kvd = (uint64_t)ar->kv_heads * hd;
    const bool rope = ar->positions == MODEL_POS_ROTARY, llama = ar->family == MODEL_FAMILY_LLAMA;
    const vp_pool A = VP_POOL_ACTIVATIONS;
    struct model_taker t = {.ctx = m->ctx, .owned = &a->owned, .who = "decoder", .alloc = alloc};
    a->B = B_;
    a->T = T_;
    a->layers = calloc((size_t)ar->layers, sizeof *a->layers);
    if (!a->layers) return vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory");
    model_take(&t, A, &a->ids, N * 4);
    model_take(&t, A, &a->pos, N * 4);
    model_take(&t, A, &a->targets, N * 4);
    model_take(&t, A, &a->keep, align_up(N, 4));
    if (m->full) {
        model_take(&t, A, &a->groups_word, kernel_embedding_groups_words((uint32_t)N) * 4);
        if (m->w.pos) model_take(&t, A, &a->groups_pos, kernel_embedding_groups_words((uint32_t)N) * 4);
    }
    if (m->model_trains || m->per_head) model_take(&t, A, &a->ones, N * 4);
    if (m->per_head) {
        model_take(&t, A, &a->ids_hsplit, N * H * 4);
        model_take(&t, A, &a->ids_hmerge, N * H * 4);
    }
    model_take(&t, A, &a->ids_split_q, N * H * 4);
    model_take(&t, A, &a->ids_split_kv, N * H * 4);
    model_take(&t, A, &a->ids_merge, N * H * 4);
    if (rope) model_take(&t, A, &a->rope, (uint64_t)ar->max_positions * hd * 4);
    model_take(&t, A, &a->x0, N * d * 4);
    if (m->prefix_max) model_take(&t, A, &a->prefix_src, m->prefix_src_elems * 4);
    for (int i = 0; i < m->spec.count; i++)
        if (m->reparam[i].emb) {
            const uint64_t L = (uint64_t)m->spec.modules[i].size, R = (uint64_t)m->spec.modules[i].reparam;
            model_take(&t, A, &m->reparam[i].h0pre, L * R * 4);
            model_take(&t, A, &m->reparam[i].h0, L * R * 4);
        }
    for (int l = 0; l < ar->layers; l++) {
        struct dec_layer_acts *la = &a->layers[l];
        if (checkpoint && l > 0) { /* layer 0's buffers, but for what each layer keeps (below) */
            *la = a->layers[0];
            la->out = la->pk = la->pv = la->ids_pk = la->ids_pv = la->groups_pk = la->groups_pv = (struct vk_buffer){0};
        } else {
            struct vk_buffer *nd[] = {&la->a_in, &la->o, &la->h, &la->f_in, &la->dn};
            for (size_t k = 0; k < sizeof nd / sizeof nd[0]; k++) model_take(&t, A, nd[k], N * d * 4);
            struct vk_buffer *n1[] = {&la->mean1, &la->rstd1, &la->mean2, &la->rstd2};
            for (size_t k = 0; k < sizeof n1 / sizeof n1[0]; k++) model_take(&t, A, n1[k], N * 4);
            model_take(&t, A, &la->q, N * qd * 4);
            model_take(&t, A, &la->k, N * kvd * 4);
            model_take(&t, A, &la->v, N * kvd * 4);
            struct vk_buffer *nh[] = {&la->qh, &la->kh, &la->vh, &la->atth, &la->ctx};
            for (size_t k = 0; k < sizeof nh / sizeof nh[0]; k++) model_take(&t, A, nh[k], N * qd * 4);
            model_take(&t, A, &la->lse, N * H * 4);
            if (llama) model_take(&t, A, &la->gpre, N * I * 4);
            model_take(&t, A, &la->upre, N * I * 4);
            model_take(&t, A, &la->u, N * I * 4);
        }
        model_take(&t, A, &la->out, N * d * 4);
        const uint64_t np = (uint64_t)m->prefix_rows[l] * H * hd;
        if (np) {
            model_take(&t, A, &la->pk, np * 4);
            model_take(&t, A, &la->pv, np * 4);
            model_take(&t, A, &la->ids_pk, np * 4);
            model_take(&t, A, &la->ids_pv, np * 4);
            if (m->trains) {
                model_take(&t, A, &la->groups_pk, kernel_embedding_groups_words((uint32_t)np) * 4);
                model_take(&t, A, &la->groups_pv, kernel_embedding_groups_words((uint32_t)np) * 4);
            }
        }
    }
    model_take(&t, A, &a->meanf, N * 4);
    model_take(&t, A, &a->rstdf, N * 4);
    model_take(&t, A, &a->xf, N * d * 4);
    model_take(&t, A, &a->logits, N * V * 4);
    model_take(&t, A, &a->loss, 8);
    model_take(&t, A, &a->ce_lse, N * 4);
    const struct kernel_cross_entropy_config ce = {(uint32_t)N, (uint32_t)V, ENCODER_IGNORE_INDEX,
                                                   (float)m->opt.label_smoothing};
    model_take(&t, A, &a->ce_scratch, kernel_cross_entropy_scratch_bytes(m->ctx, &ce));
    for (int k = 0; k < m->spec.count * ar->layers; k++) {
        struct dec_slot *sl = &m->slots[k];
        if (!sl->active) continue;
        const struct dec_slot *first = checkpoint ? first_active_slot(m, sl->module) : sl;
        if (first != sl) { /* checkpointing: the module's first layer's buffers (a plan leaves the slots be) */
            if (alloc) dec_slot_share_buffers(sl, first);
            continue;
        }
        dec_take_slot(m, &t, sl, N);
    }
    if (m->trains) {
        const uint64_t I2 = I > qd ? I : qd;
        model_take(&t, A, &a->groups_kv, kernel_embedding_groups_words((uint32_t)(N * H)) * 4);
        model_take(&t, A, &a->g_logits, N * V * 4);
        struct vk_buffer *nd[] = {&a->g_x, &a->g_h, &a->g_a, &a->g_t};
        for (size_t k = 0; k < sizeof nd / sizeof nd[0]; k++) model_take(&t, A, nd[k], N * d * 4);
        model_take(&t, A, &a->g_u, N * I2 * 4);
        model_take(&t, A, &a->g_up, N * I * 4);
        model_take(&t, A, &a->g_gate, N * I * 4);
        struct vk_buffer *nq[] = {&a->g_ctx, &a->g_q, &a->g_atth, &a->g_qh, &a->g_kh, &a->g_vh};
        for (size_t k = 0; k < sizeof nq / sizeof nq[0]; k++) model_take(&t, A, nq[k], N * qd * 4);
        model_take(&t, A, &a->g_k, N * kvd * 4);
        model_take(&t, A, &a->g_v, N * kvd * 4);
        model_take(&t, A, &a->g_r, N * (uint64_t)(m->rank_max > 0 ? m->rank_max : 1) * 4);
        model_take(&t, A, &a->g_r2, N * (uint64_t)(m->rank_max > 0 ? m->rank_max : 1) * 4);
        bool seq = false, gated = false;
        for (int i = 0; i < m->spec.count; i++) {
            const struct delta_module *dm = &m->spec.modules[i];
            seq |= dm->kind == DELTA_ADAPTER && dm->insert == DELTA_SEQUENTIAL;
            gated |= dm->kind == DELTA_ADAPTER && dm->compose == DELTA_COMPOSE_GATED;
        }
        if (seq) {
            model_take(&t, A, &a->g_s0, N * d * 4);
            model_take(&t, A, &a->g_s1, N * d * 4);
        }
        if (gated) model_take(&t, A, &a->gate_scratch, kernel_sigmoid_gate_scratch_bytes((uint32_t)N, (uint32_t)d));
        if (m->per_head) {
            model_take(&t, A, &a->g_dh, N * d * 4);
            model_take(&t, A, &a->g_dz, N * d * 4);
        }
        const struct kernel_attention_config cfg = {.B = (uint32_t)B, .H = (uint32_t)H, .T = (uint32_t)T,
                                                    .S = (uint32_t)T, .L = (uint32_t)m->prefix_max,
                                                    .D = (uint32_t)hd, .causal = true};
        if (m->prefix_max) {
            model_take(&t, A, &a->g_pk, (uint64_t)m->prefix_max * H * hd * 4);
            model_take(&t, A, &a->g_pv, (uint64_t)m->prefix_max * H * hd * 4);
            model_take(&t, A, &a->dprefix_src, m->prefix_src_elems * 4);
        }
        for (int i = 0; i < m->spec.count; i++)
            if (m->reparam[i].emb) {
                const uint64_t L = (uint64_t)m->spec.modules[i].size, R = (uint64_t)m->spec.modules[i].reparam;
                model_take(&t, A, &m->reparam[i].g_h0, L * R * 4);
                model_take(&t, A, &m->reparam[i].g_e, L * d * 4);
            }
        model_take(&t, A, &a->attn_scratch, kernel_attention_scratch_bytes(m->ctx, &cfg));
        model_take(&t, A, &a->norm_scratch, kernel_norm_scratch_bytes((uint32_t)N, (uint32_t)d));
    }
    uint64_t in = 0;
    a->in_ids = in, in += N * 4;
    a->in_pos = in, in += N * 4;
    a->in_targets = in, in += N * 4;
    a->in_keep = in, in += align_up(N, 4);
    a->in_gword = in, in += m->full ? kernel_embedding_groups_words((uint32_t)N) * 4 : 0;
    a->in_gpos = in, in += m->full && m->w.pos ? kernel_embedding_groups_words((uint32_t)N) * 4 : 0;
    model_take(&t, VP_POOL_STAGING, &a->stage_in, in);
    model_take(&t, VP_POOL_STAGING, &a->stage_out, 8 + N * V * 4);
    if (bytes) memcpy(bytes, t.bytes, sizeof t.bytes);
    return t.status;
}

static void acts_free(struct decoder *m, struct dec_acts *a) {
    model_owned_free(m->ctx, &a->owned);
    free(a->layers);
    memset(a, 0, sizeof *a);
}

/* Layer l's prefix rows: element (h, row, c) of P_k (H,Lp,hd) is element
 * (j, g·hd + c) of its module's P_k, g = h / (H/G), as an index into
 * prefix_src (the gather) and dprefix_src (the scatter). */
static vp_status prefix_tables(struct decoder *m, int l) {
    struct dec_layer_acts *la = &m->acts.layers[l];
    const uint32_t Lp = (uint32_t)m->prefix_rows[l], H = (uint32_t)m->arch.heads, hd = (uint32_t)m->arch.head_dim;
    const uint32_t per = H / (uint32_t)m->arch.kv_heads, n = Lp * H * hd;
    if (!Lp) return VP_OK;
    const uint32_t arena = (uint32_t)m->prefix_src_elems;
    int32_t *ids = calloc(n, sizeof *ids);
    uint32_t *g = calloc(kernel_embedding_groups_words(n), sizeof *g);
    vp_status s = ids && g ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory");
    for (int kv = 0; kv < 2 && s == VP_OK; kv++) {
        for (int i = 0; i < m->spec.count; i++) {
            const struct dec_slot *sl = dec_slot_at(m, i, l);
            if (!sl->active || m->spec.modules[i].kind != DELTA_PREFIX) continue;
            const uint64_t base = kv ? sl->src_v : sl->src_k;
            for (uint32_t h = 0; h < H; h++)
                for (int j = 0; j < m->spec.modules[i].size; j++)
                    for (uint32_t c = 0; c < hd; c++)
                        ids[((size_t)h * Lp + (uint32_t)(sl->prefix_offset + j)) * hd + c] =
                            (int32_t)(base + (uint64_t)j * sl->src_stride + (h / per) * hd + c);
        }
        s = vk_buffer_write(m->ctx, kv ? &la->ids_pv : &la->ids_pk, 0, ids, (uint64_t)n * 4);
        if (s == VP_OK && la->groups_pk.buffer) {
            s = kernel_embedding_groups_build(g, ids, n, arena);
            if (s == VP_OK)
                s = vk_buffer_write(m->ctx, kv ? &la->groups_pv : &la->groups_pk, 0, g,
                                    kernel_embedding_groups_words(n) * 4);
        }
    }
    free(ids);
    free(g);
    return s;
}

/* Split heads (B,T,H,hd) → (B,H,T,hd) for q, the same with query head h
 * reading kv head h / (H/G) for k and v, merge back; the RoPE table. */
static vp_status upload_constants(struct decoder *m) {
    struct dec_acts *a = &m->acts;
    const uint32_t B = (uint32_t)a->B, T = (uint32_t)a->T, N = B * T, H = (uint32_t)m->arch.heads;
    const uint32_t G = (uint32_t)m->arch.kv_heads, per = H / G, hd = (uint32_t)m->arch.head_dim;
    uint64_t most = (uint64_t)N * H;
    if (a->rope.buffer && (uint64_t)m->arch.max_positions * hd > most) most = (uint64_t)m->arch.max_positions * hd;
    int32_t *v = calloc(most, sizeof *v);
    vp_status s = v ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory");
    for (uint32_t b = 0; s == VP_OK && b < B; b++)
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t t = 0; t < T; t++) v[((size_t)b * H + h) * T + t] = (int32_t)((b * T + t) * H + h);
    if (s == VP_OK) s = vk_buffer_write(m->ctx, &a->ids_split_q, 0, v, (uint64_t)N * H * 4);
    for (uint32_t b = 0; s == VP_OK && b < B; b++)
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t t = 0; t < T; t++) v[((size_t)b * H + h) * T + t] = (int32_t)((b * T + t) * G + h / per);
    if (s == VP_OK) s = vk_buffer_write(m->ctx, &a->ids_split_kv, 0, v, (uint64_t)N * H * 4);
    for (uint32_t b = 0; s == VP_OK && b < B; b++)
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t h = 0; h < H; h++) v[((size_t)b * T + t) * H + h] = (int32_t)((b * H + h) * T + t);
    if (s == VP_OK) s = vk_buffer_write(m->ctx, &a->ids_merge, 0, v, (uint64_t)N * H * 4);
    if (s == VP_OK && a->groups_kv.buffer) {
        uint32_t *g = calloc(kernel_embedding_groups_words(N * H), sizeof *g);
        s = g ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "decoder: out of host memory");
        for (uint32_t b = 0; s == VP_OK && b < B; b++)
            for (uint32_t h = 0; h < H; h++)
                for (uint32_t t = 0; t < T; t++) v[((size_t)b * H + h) * T + t] = (int32_t)((b * T + t) * G + h / per);
        if (s == VP_OK) s = kernel_embedding_groups_build(g, v, N * H, N * G);
        if (s == VP_OK) s = vk_buffer_write(m->ctx, &a->groups_kv, 0, g, kernel_embedding_groups_words(N * H) * 4);
        free(g);
    }
    for (int l = 0; s == VP_OK && l < m->arch.layers; l++)
        s = prefix_tables(m, l);
    if (s == VP_OK && a->ids_hsplit.buffer) { /* (N,H,hd) ↔ (H,N,hd) */
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t n = 0; n < N; n++) v[(size_t)h * N + n] = (int32_t)(n * H + h);
        s = vk_buffer_write(m->ctx, &a->ids_hsplit, 0, v, (uint64_t)N * H * 4);
        for (uint32_t n = 0; s == VP_OK && n < N; n++)
            for (uint32_t h = 0; h < H; h++) v[(size_t)n * H + h] = (int32_t)(h * N + n);
        if (s == VP_OK) s = vk_buffer_write(m->ctx, &a->ids_hmerge, 0, v, (uint64_t)N * H * 4);
    }
    if (s == VP_OK && a->ones.buffer) {
        float *ones = (float *)v;
        for (uint32_t n = 0; n < N; n++) ones[n] = 1.0f;
        s = vk_buffer_write(m->ctx, &a->ones, 0, ones, (uint64_t)N * 4);
    }
    if (s == VP_OK && a->rope.buffer) {
        kernel_rope_table((float *)v, (uint32_t)m->arch.max_positions, hd, m->arch.rope_theta);
        s = vk_buffer_write(m->ctx, &a->rope, 0, v, (uint64_t)m->arch.max_positions * hd * 4);
    }
    free(v);
    return s;
}

/* ------------------------------------------------------------------------
 * Plan, load
 * ------------------------------------------------------------------------ */

static vp_status plan_with(const struct decoder *m, int B, int T, bool checkpoint, uint64_t bytes[VP_POOL_COUNT]) {
    if (B < 1 || T < 1) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: batch shape %d × %d", B, T);
    if (T + m->position_offset > m->arch.max_positions)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: %d tokens from position %d exceed the model's %d "
                       "positions", T, m->position_offset, m->arch.max_positions);
    struct dec_acts scratch = {0};
    vp_status s = acts_layout((struct decoder *)m, &scratch, B, T, checkpoint, false, bytes);
    free(scratch.layers);
    if (s != VP_OK) return s;
    bytes[VP_POOL_FROZEN] += dec_frozen_bytes(m);
    bytes[VP_POOL_TRAINABLE] += delta_params_plan_bytes(m->params);
    return VP_OK;
}

vp_status decoder_plan(const struct decoder *m, int B, int T, uint64_t bytes[VP_POOL_COUNT]) {
    return plan_with(m, B, T, m->opt.checkpoint_activations, bytes);
}

vp_status decoder_plan_activations(const struct decoder *m, int B, int T, bool checkpoint, uint64_t *bytes) {
    uint64_t plan[VP_POOL_COUNT];
    vp_status s = plan_with(m, B, T, checkpoint, plan);
    *bytes = s == VP_OK ? plan[VP_POOL_ACTIVATIONS] : 0;
    return s;
}

/* Reserves a plan; over the budget, a training decoder that keeps every
 * activation adds checkpointing to the pool's remedies, with its figure. */
static vp_status reserve(struct decoder *m, const uint64_t plan[VP_POOL_COUNT], int B, int T) {
    uint64_t with = 0;
    if (m->trains && !m->opt.checkpoint_activations && decoder_plan_activations(m, B, T, true, &with) != VP_OK)
        with = 0;
    return model_reserve(m->ctx, plan, with);
}

vp_status decoder_load(struct decoder *m, int B, int T) {
    if (m->loaded) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: already loaded");
    uint64_t plan[VP_POOL_COUNT];
    vp_status s = decoder_plan(m, B, T, plan);
    if (s == VP_OK) s = reserve(m, plan, B, T);
    if (s == VP_OK) s = delta_params_alloc(m->params);
    if (s == VP_OK) s = dec_upload_frozen(m);
    if (s == VP_OK) s = acts_layout(m, &m->acts, B, T, m->opt.checkpoint_activations, true, NULL);
    if (s == VP_OK) s = upload_constants(m);
    if (s != VP_OK) {
        acts_free(m, &m->acts);
        dec_free_weights(m);
        delta_params_free_device(m->params);
        vk_pools_trim(m->ctx);
        return s;
    }
    io_weights_close(m->file);
    m->file = NULL;
    for (int k = 0; k < m->weight_count; k++) m->weights[k].file = NULL;
    m->loaded = true;
    return VP_OK;
}

vp_status decoder_create(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                         const struct decoder_options *opt, int B, int T, struct decoder **out) {
    vp_status s = decoder_open(ctx, dir, spec, opt, out);
    if (s != VP_OK) return s;
    s = decoder_load(*out, B, T);
    if (s != VP_OK) {
        decoder_destroy(*out);
        *out = NULL;
    }
    return s;
}

void decoder_destroy(struct decoder *m) {
    if (!m) return;
    for (int p = 0; p < DECODER_PASS_COUNT; p++) vk_recorder_destroy(m->rec[p]);
    vk_recorder_destroy(m->zero_rec);
    acts_free(m, &m->acts);
    dec_free_weights(m);
    if (m->file) io_weights_close(m->file);
    delta_params_destroy(m->params);
    free(m->slots);
    free(m->prefix_rows);
    free(m->reparam);
    free(m->weights);
    free(m->w.layers);
    free(m);
}

const struct model_arch *decoder_arch(const struct decoder *m) { return &m->arch; }
struct delta_params *decoder_params(struct decoder *m) { return m->params; }
enum vp_dtype decoder_weight_dtype(const struct decoder *m) { return m->wtype; }

/* ------------------------------------------------------------------------
 * Batches, runs, outputs
 * ------------------------------------------------------------------------ */

static vp_status check_ready(const struct decoder *m, const char *what) {
    if (!m->loaded)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: %s needs a loaded model (decoder_load)", what);
    return VP_OK;
}

/* ids, positions P + t, the key mask and the shifted targets: token t is
 * scored against ids[t+1] where that token is real and a target. */
vp_status decoder_write_batch(struct decoder *m, const struct decoder_batch *batch) {
    vp_status s = check_ready(m, "write_batch");
    if (s != VP_OK) return s;
    struct dec_acts *a = &m->acts;
    const int B = a->B, T = a->T, N = B * T, V = m->arch.vocab_size;
    char *base = a->stage_in.host;
    int32_t *ids = (int32_t *)(base + a->in_ids), *pos = (int32_t *)(base + a->in_pos);
    int32_t *targets = (int32_t *)(base + a->in_targets);
    uint8_t *keep = (uint8_t *)(base + a->in_keep);
    for (int n = 0; n < N; n++) {
        if (batch->ids[n] < 0 || batch->ids[n] >= V)
            return vp_fail(VP_ERROR_BAD_INPUT, "decoder: token %d of the batch has id %d, outside the "
                           "vocabulary [0, %d)", n, batch->ids[n], V);
        ids[n] = batch->ids[n];
        keep[n] = batch->mask ? batch->mask[n] != 0 : 1;
    }
    for (int n = N; n < (N + 3) / 4 * 4; n++) keep[n] = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int n = b * T + t, next = n + 1;
            bool scored = t + 1 < T && keep[next] && (!batch->loss_mask || batch->loss_mask[next]);
            targets[n] = scored ? ids[next] : ENCODER_IGNORE_INDEX;
        }
    kernel_positions_offset(pos, (uint32_t)B, (uint32_t)T, m->position_offset);
    s = VP_OK;
    if (m->full) s = kernel_embedding_groups_build((uint32_t *)(base + a->in_gword), ids, (uint32_t)N, (uint32_t)V);
    if (s == VP_OK && m->full && m->w.pos)
        s = kernel_embedding_groups_build((uint32_t *)(base + a->in_gpos), pos, (uint32_t)N,
                                          (uint32_t)m->arch.max_positions);
    return s;
}

static vp_status record(struct decoder *m, struct vk_recorder *rec, bool train) {
    struct dec_acts *a = &m->acts;
    const uint64_t N = (uint64_t)a->B * (uint64_t)a->T;
    vp_status s = vk_recorder_copy(rec, &a->ids, 0, &a->stage_in, a->in_ids, N * 4);
    if (s == VP_OK) s = vk_recorder_copy(rec, &a->pos, 0, &a->stage_in, a->in_pos, N * 4);
    if (s == VP_OK) s = vk_recorder_copy(rec, &a->targets, 0, &a->stage_in, a->in_targets, N * 4);
    if (s == VP_OK) s = vk_recorder_copy(rec, &a->keep, 0, &a->stage_in, a->in_keep, align_up(N, 4));
    const uint64_t gw = kernel_embedding_groups_words((uint32_t)N) * 4;
    if (s == VP_OK && a->groups_word.buffer)
        s = vk_recorder_copy(rec, &a->groups_word, 0, &a->stage_in, a->in_gword, gw);
    if (s == VP_OK && a->groups_pos.buffer) s = vk_recorder_copy(rec, &a->groups_pos, 0, &a->stage_in, a->in_gpos, gw);
    m->recording_train = train;
    if (s == VP_OK) s = dec_record_forward(m, rec);
    if (s == VP_OK && train && m->trains) s = dec_record_backward(m, rec);
    m->recording_train = false;
    if (s == VP_OK) s = vk_recorder_copy(rec, &a->stage_out, 0, &a->loss, 0, 8);
    if (s == VP_OK)
        s = vk_recorder_copy(rec, &a->stage_out, 8, &a->logits, 0, N * (uint64_t)m->arch.vocab_size * 4);
    return s;
}

vp_status decoder_run(struct decoder *m, enum decoder_pass pass) {
    if ((unsigned)pass >= DECODER_PASS_COUNT) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "decoder: bad pass");
    vp_status s = check_ready(m, "run");
    if (s == VP_OK && !m->rec[pass]) s = vk_recorder_create(m->ctx, 0, &m->rec[pass]);
    if (pass == DECODER_PASS_TRAIN && m->opt.dropout && m->recorded_step != m->step) m->recorded[pass] = false;
    if (s == VP_OK && !m->recorded[pass]) {
        if (pass == DECODER_PASS_TRAIN) m->recorded_step = m->step;
        s = vk_recorder_begin(m->rec[pass]);
        if (s == VP_OK) s = record(m, m->rec[pass], pass == DECODER_PASS_TRAIN);
        if (s == VP_OK) s = vk_recorder_end(m->rec[pass]);
        m->recorded[pass] = s == VP_OK;
    }
    if (s == VP_OK) s = vk_recorder_run(m->rec[pass]);
    return s;
}

void decoder_set_step(struct decoder *m, uint32_t step) { m->step = step; }

vp_status decoder_zero_grads(struct decoder *m) {
    vp_status s = check_ready(m, "zero_grads");
    if (s == VP_OK && !m->zero_rec) s = vk_recorder_create(m->ctx, 0, &m->zero_rec);
    if (s == VP_OK && !m->zero_recorded) {
        s = vk_recorder_begin(m->zero_rec);
        if (s == VP_OK) s = delta_params_record_zero_grads(m->params, m->zero_rec);
        if (s == VP_OK) s = vk_recorder_end(m->zero_rec);
        m->zero_recorded = s == VP_OK;
    }
    if (s == VP_OK) s = vk_recorder_run(m->zero_rec);
    return s;
}

vp_status decoder_loss(const struct decoder *m, float *loss, uint32_t *count) {
    vp_status s = check_ready(m, "loss");
    if (s != VP_OK) return s;
    if (loss) memcpy(loss, m->acts.stage_out.host, 4);
    if (count) memcpy(count, (const char *)m->acts.stage_out.host + 4, 4);
    return VP_OK;
}

vp_status decoder_logits(const struct decoder *m, float *logits) {
    vp_status s = check_ready(m, "logits");
    if (s != VP_OK) return s;
    const size_t n = (size_t)m->acts.B * (size_t)m->acts.T * (size_t)m->arch.vocab_size;
    memcpy(logits, (const char *)m->acts.stage_out.host + 8, n * 4);
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * For a trainer (trainer.h's trainer_model) and for saved deltas
 * ------------------------------------------------------------------------ */

vp_status decoder_record(struct decoder *m, struct vk_recorder *rec, enum decoder_pass pass) {
    vp_status s = check_ready(m, "record");
    return s == VP_OK ? record(m, rec, pass == DECODER_PASS_TRAIN) : s;
}

vp_status decoder_record_zero_grads(struct decoder *m, struct vk_recorder *rec) {
    vp_status s = check_ready(m, "record_zero_grads");
    return s == VP_OK ? delta_params_record_zero_grads(m->params, rec) : s;
}

void decoder_batch_shape(const struct decoder *m, int *B, int *T) {
    *B = m->acts.B;
    *T = m->acts.T;
}

vp_status decoder_set_batch(struct decoder *m, int B, int T) {
    if (!m->loaded) return decoder_load(m, B, T);
    if (B == m->acts.B && T == m->acts.T) return VP_OK;
    uint64_t plan[VP_POOL_COUNT];
    vp_status s = decoder_plan(m, B, T, plan);
    if (s != VP_OK) return s;
    acts_free(m, &m->acts);
    for (int p = 0; p < DECODER_PASS_COUNT; p++) m->recorded[p] = false;
    vk_pools_trim(m->ctx);
    plan[VP_POOL_FROZEN] = plan[VP_POOL_TRAINABLE] = 0; /* already held */
    s = reserve(m, plan, B, T);
    if (s == VP_OK) s = acts_layout(m, &m->acts, B, T, m->opt.checkpoint_activations, true, NULL);
    if (s == VP_OK) s = upload_constants(m);
    return s;
}

vp_status decoder_load_delta(struct decoder *m, const char *dir) {
    vp_status s = check_ready(m, "load_delta");
    if (s != VP_OK) return s;
    return delta_load_into(dir, &m->arch, m->params, m->dir);
}

vp_status decoder_create_with_delta(vp_context *ctx, const char *dir, const char *delta_dir,
                                    const struct decoder_options *opt, int B, int T, struct decoder **out) {
    *out = NULL;
    struct delta_spec spec;
    struct delta_tensors t = {0};
    /* no delta: the model alone (a base or merged model) */
    vp_status s = delta_dir ? delta_load_for_model(delta_dir, dir, &spec, &t) : VP_OK;
    if (!delta_dir) spec = (struct delta_spec){.name = "none"};
    if (s == VP_OK) s = decoder_create(ctx, dir, &spec, opt, B, T, out);
    if (s == VP_OK) s = delta_params_load((*out)->params, &t);
    delta_tensors_free(&t);
    if (s != VP_OK) {
        if (delta_dir) vp_fail_context(s, "--delta %s", delta_dir);
        decoder_destroy(*out);
        *out = NULL;
    }
    return s;
}
