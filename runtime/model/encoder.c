/* The GPU encoder: lifecycle, the memory plan and activation layout, batch
 * inputs and outputs through staging, recordings. The pretrained tensors
 * and access by name are in encoder_load.c, the forward in
 * encoder_forward.c, the backward in encoder_backward.c. */
#include "encoder.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

struct vk_buffer enc_view(const struct vk_buffer *buf, uint64_t offset, uint64_t len) {
    struct vk_buffer v = *buf;
    v.offset += offset;
    v.size = len;
    v.host = buf->host ? (char *)buf->host + offset : NULL;
    return v;
}

double enc_dropout_p(const struct encoder *e, bool train, double p) {
    return train && e->opt.dropout ? p : 0.0;
}

uint32_t enc_dropout_stream(int layer, int site) { return ((uint32_t)(layer + 1) << 8) | (uint32_t)site; }

/* ------------------------------------------------------------------------
 * Open: config, spec, params, weights, delta slots
 * ------------------------------------------------------------------------ */

static vp_status check_arch(const struct model_arch *a, const char *dir) {
    if (a->family != MODEL_FAMILY_BERT && a->family != MODEL_FAMILY_ROBERTA)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: the encoder runs BERT and RoBERTa models", dir);
    if (a->norm != MODEL_NORM_LAYERNORM || a->pre_norm || a->positions != MODEL_POS_LEARNED ||
        a->act == MODEL_ACT_SWIGLU || a->kv_heads != a->heads || a->heads * a->head_dim != a->hidden)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: %s is not a post-LN LayerNorm encoder with learned "
                       "positions and full multi-head attention", dir, a->model_type);
    if (a->head_dim > 256)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: head width %d is above the attention kernel's 256",
                       dir, a->head_dim);
    if (a->num_labels < 1) return vp_fail(VP_ERROR_BAD_INPUT, "%s: the model has no labels", dir);
    return VP_OK;
}

static struct delta_param *param_at(struct encoder *e, const char *fmt, int l, int i) {
    char name[DELTA_NAME_MAX];
    snprintf(name, sizeof name, fmt, l, i);
    return delta_params_find(e->params, name);
}

/* Binds each module's tensors per layer and lays out prefix_src: every
 * prefix module's rows, a reparameterised one's MLP output (L, nl·2d) as one
 * region, a plain one's P_k and P_v (L,d) per layer, each region on the pool
 * alignment (the MLP's matmul writes into its region). */
static vp_status setup_slots(struct encoder *e) {
    const struct model_arch *a = &e->arch;
    const int L = a->layers, d = a->hidden;
    e->slots = calloc((size_t)e->spec.count * L + 1, sizeof *e->slots);
    e->prefix_rows = calloc((size_t)L, sizeof *e->prefix_rows);
    if (!e->slots || !e->prefix_rows) return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
    const uint64_t align = vk_pool_alignment(e->ctx) / 4;
    uint64_t at = 0;
    for (int i = 0; i < e->spec.count; i++) {
        const struct delta_module *m = &e->spec.modules[i];
        if (m->kind == DELTA_BITFIT || m->kind == DELTA_FULL) continue;
        const bool reparam = m->kind == DELTA_PREFIX && m->reparam > 0;
        uint64_t out = 0, width = 0;
        if (reparam) {
            char name[DELTA_NAME_MAX];
            snprintf(name, sizeof name, "delta%d.reparam.2.bias", i);
            width = delta_params_find(e->params, name)->n; /* nl·2d */
            out = align_up(at, align);
            at = out + (uint64_t)m->size * width;
        }
        int block = 0;
        for (int l = 0; l < L; l++) {
            struct enc_slot *s = enc_slot_at(e, i, l);
            s->module = i;
            s->layer = l;
            if (!delta_module_has_layer(m, l)) continue;
            s->active = true;
            s->rank = m->size;
            s->din = s->dout = d;
            if (m->kind == DELTA_ADAPTER) {
                s->down_w = param_at(e, "encoder.layers.%d.delta%d.down.weight", l, i);
                s->down_b = param_at(e, "encoder.layers.%d.delta%d.down.bias", l, i);
                s->up_w = param_at(e, "encoder.layers.%d.delta%d.up.weight", l, i);
                s->up_b = param_at(e, "encoder.layers.%d.delta%d.up.bias", l, i);
                if (m->compose == DELTA_COMPOSE_GATED) s->gate = param_at(e, "encoder.layers.%d.delta%d.gate", l, i);
                int w = m->size * (m->per_head ? a->heads : 1);
                if (w > e->rank_max) e->rank_max = w;
            } else if (m->kind == DELTA_LORA) {
                s->lora_a = param_at(e, "encoder.layers.%d.delta%d.lora_A", l, i);
                s->lora_b = param_at(e, "encoder.layers.%d.delta%d.lora_B", l, i);
                s->din = (int)s->lora_a->shape[1];
                s->dout = (int)s->lora_b->shape[0];
                if (m->size > e->rank_max) e->rank_max = m->size;
            } else if (m->kind == DELTA_PREFIX) {
                s->prefix_offset = e->prefix_rows[l];
                e->prefix_rows[l] += m->size;
                if (reparam) {
                    s->prefix_block = block++;
                    s->src_k = out + (uint64_t)s->prefix_block * 2 * d;
                    s->src_v = s->src_k + (uint64_t)d;
                    s->src_stride = width;
                } else {
                    s->prefix_k = param_at(e, "encoder.layers.%d.delta%d.prefix_k", l, i);
                    s->prefix_v = param_at(e, "encoder.layers.%d.delta%d.prefix_v", l, i);
                    s->src_k = align_up(at, align);
                    s->src_v = align_up(s->src_k + (uint64_t)m->size * d, align);
                    at = s->src_v + (uint64_t)m->size * d;
                    s->src_stride = (uint64_t)d;
                }
            }
        }
    }
    e->prefix_src_elems = at;
    return VP_OK;
}

/* Host-side setup from the arch and the spec, no weights file: the params,
 * the delta slots, the model's tensor list and the pointers into it. Both
 * encoder_open and the weight-free plan (plan.c) start here. */
vp_status enc_setup(struct encoder *e) {
    vp_status s = check_arch(&e->arch, e->dir);
    if (s == VP_OK) s = delta_params_create(e->ctx, &e->arch, &e->spec, e->opt.seed, &e->params);
    if (s == VP_OK) s = setup_slots(e);
    if (s == VP_OK) s = enc_weights_init(e);
    if (s != VP_OK) return s;
    int k = 0;
    e->w.word = &e->weights[k++];
    e->w.pos = &e->weights[k++];
    e->w.type = e->arch.type_vocab_size > 0 ? &e->weights[k++] : NULL;
    e->w.ln_emb_w = &e->weights[k++];
    e->w.ln_emb_b = &e->weights[k++];
    e->w.layers = calloc((size_t)e->arch.layers, sizeof *e->w.layers);
    if (!e->w.layers) return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
    for (int l = 0; l < e->arch.layers; l++) {
        struct enc_layer_weights *L = &e->w.layers[l];
        struct enc_weight **order[] = {&L->wq, &L->bq, &L->wk, &L->bk, &L->wv, &L->bv, &L->wo, &L->bo,
                                       &L->ln1_w, &L->ln1_b, &L->wup, &L->bup, &L->wdown, &L->bdown,
                                       &L->ln2_w, &L->ln2_b};
        for (size_t j = 0; j < sizeof order / sizeof order[0]; j++) *order[j] = &e->weights[k++];
    }
    if (e->arch.family == MODEL_FAMILY_BERT) {
        e->w.pool_w = &e->weights[k++];
        e->w.pool_b = &e->weights[k++];
    }
    bool bert = e->arch.family == MODEL_FAMILY_BERT;
    if (e->arch.head == MODEL_HEAD_MLM) {
        struct encoder_tensor_desc desc[ENCODER_HEAD_MAX];
        encoder_head_tensors(&e->arch, desc);
        e->head.mlm_w = delta_params_find(e->params, desc[0].name);
        e->head.mlm_b = delta_params_find(e->params, desc[1].name);
        e->head.mlm_ln_w = delta_params_find(e->params, desc[2].name);
        e->head.mlm_ln_b = delta_params_find(e->params, desc[3].name);
        e->head.mlm_bias = delta_params_find(e->params, desc[4].name);
    } else {
        e->head.cls_w = delta_params_find(e->params, bert ? "classifier.weight" : "classifier.out_proj.weight");
        e->head.cls_b = delta_params_find(e->params, bert ? "classifier.bias" : "classifier.out_proj.bias");
        if (!bert) {
            e->head.dense_w = delta_params_find(e->params, "classifier.dense.weight");
            e->head.dense_b = delta_params_find(e->params, "classifier.dense.bias");
        }
    }
    e->tables_trained = e->w.word->param || e->w.pos->param || (e->w.type && e->w.type->param);
    e->embeddings_trained = e->tables_trained || e->w.ln_emb_w->param || e->w.ln_emb_b->param;
    return VP_OK;
}

vp_status encoder_open(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                       const struct encoder_options *opt, struct encoder **out) {
    *out = NULL;
    struct encoder *e = calloc(1, sizeof *e);
    if (!e) return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
    e->ctx = ctx;
    e->spec = *spec;
    if (opt) e->opt = *opt;
    snprintf(e->dir, sizeof e->dir, "%s", dir);
    vp_status s = model_arch_load(dir, &e->arch);
    if (s == VP_OK && (unsigned)e->opt.head > MODEL_HEAD_MLM)
        s = vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: unknown head %d", (int)e->opt.head);
    if (s == VP_OK) {
        model_arch_finish(&e->arch); /* label names are not needed here */
        e->arch.head = e->opt.head;
        s = enc_setup(e);
    }
    if (s == VP_OK) s = enc_open_weights(e);
    if (s != VP_OK) {
        encoder_destroy(e);
        return s;
    }
    *out = e;
    return VP_OK;
}

/* ------------------------------------------------------------------------
 * Activation layout: one walk sizes the plan and allocates, so the plan is
 * exactly what is allocated
 * ------------------------------------------------------------------------ */

static bool any_per_head(const struct encoder *e) {
    for (int i = 0; i < e->spec.count; i++)
        if (e->spec.modules[i].kind == DELTA_ADAPTER && e->spec.modules[i].per_head) return true;
    return false;
}

static bool any_gated(const struct encoder *e) {
    for (int i = 0; i < e->spec.count; i++)
        if (e->spec.modules[i].kind == DELTA_ADAPTER && e->spec.modules[i].compose == DELTA_COMPOSE_GATED)
            return true;
    return false;
}

static double adapter_dropout(const struct encoder *e, const struct delta_module *m) {
    return m->dropout >= 0.0 ? m->dropout : e->arch.hidden_dropout;
}

static void take_slot(struct model_taker *t, struct encoder *e, struct enc_slot *s, struct enc_slot_acts *sa,
                      uint64_t N) {
    const struct delta_module *m = &e->spec.modules[s->module];
    const uint64_t d = (uint64_t)e->arch.hidden, H = (uint64_t)e->arch.heads, r = (uint64_t)m->size;
    if (m->kind == DELTA_LORA) {
        model_take(t, VP_POOL_ACTIVATIONS, &sa->hpre, N * r * 4);
        return;
    }
    if (m->kind != DELTA_ADAPTER) return;
    uint64_t rows = m->per_head ? H * N : N;
    sa->hact_own = m->act != DELTA_ACT_IDENTITY || enc_dropout_p(e, true, adapter_dropout(e, m)) > 0.0;
    if (m->per_head) {
        model_take(t, VP_POOL_ACTIVATIONS, &sa->zh, N * d * 4);
        model_take(t, VP_POOL_ACTIVATIONS, &sa->dh, N * d * 4);
    }
    model_take(t, VP_POOL_ACTIVATIONS, &sa->hpre, rows * r * 4);
    if (sa->hact_own) model_take(t, VP_POOL_ACTIVATIONS, &sa->hact, rows * r * 4);
    model_take(t, VP_POOL_ACTIVATIONS, &sa->delta, N * d * 4);
    model_take(t, VP_POOL_ACTIVATIONS, &sa->out, N * d * 4);
}

/* A layer's buffers: its out and prefix rows always, the rest when
 * `scratch` (else they are layer 0's: checkpointing). */
static void take_layer(struct model_taker *t, struct encoder *e, struct enc_layer_acts *la, int l, uint64_t N,
                       bool scratch) {
    const uint64_t d = (uint64_t)e->arch.hidden, H = (uint64_t)e->arch.heads, I = (uint64_t)e->arch.intermediate;
    const uint64_t Lp = (uint64_t)e->prefix_rows[l];
    vp_pool A = VP_POOL_ACTIVATIONS;
    model_take(t, A, &la->out, N * d * 4);
    if (scratch) {
        struct vk_buffer *nd[] = {&la->qh, &la->kh, &la->vh, &la->atth, &la->ctx, &la->o, &la->res1,
                                  &la->h, &la->dn, &la->res2};
        for (size_t k = 0; k < sizeof nd / sizeof nd[0]; k++) model_take(t, A, nd[k], N * d * 4);
        model_take(t, A, &la->lse, N * H * 4);
        struct vk_buffer *n1[] = {&la->mean1, &la->rstd1, &la->mean2, &la->rstd2};
        for (size_t k = 0; k < sizeof n1 / sizeof n1[0]; k++) model_take(t, A, n1[k], N * 4);
        model_take(t, A, &la->upre, N * I * 4);
        model_take(t, A, &la->u, N * I * 4);
    }
    if (Lp) {
        model_take(t, A, &la->pk, Lp * d * 4);
        model_take(t, A, &la->pv, Lp * d * 4);
        model_take(t, A, &la->ids_pk, Lp * d * 4);
        model_take(t, A, &la->ids_pv, Lp * d * 4);
        model_take(t, A, &la->groups_pk, kernel_embedding_groups_words((uint32_t)(Lp * d)) * 4);
        model_take(t, A, &la->groups_pv, kernel_embedding_groups_words((uint32_t)(Lp * d)) * 4);
    }
}

static struct kernel_attention_config attention_config(const struct encoder *e, int l, int B, int T) {
    return (struct kernel_attention_config){
        .B = (uint32_t)B, .H = (uint32_t)e->arch.heads, .T = (uint32_t)T, .S = (uint32_t)T,
        .L = (uint32_t)e->prefix_rows[l], .D = (uint32_t)e->arch.head_dim,
    };
}

vp_status enc_acts_layout(struct encoder *e, struct enc_acts *a, int B_, int T_, bool alloc,
                          uint64_t bytes[VP_POOL_COUNT]) {
    const struct model_arch *ar = &e->arch;
    const uint64_t B = (uint64_t)B_, T = (uint64_t)T_, N = B * T, d = (uint64_t)ar->hidden;
    const uint64_t H = (uint64_t)ar->heads, I = (uint64_t)ar->intermediate;
    const bool mlm = ar->head == MODEL_HEAD_MLM;
    uint32_t rows, classes;
    enc_loss_shape(e, B_, T_, &rows, &classes);
    const uint64_t R = rows, C = classes; /* loss rows and classes: (B, labels) or (B·T, vocab) */
    struct model_taker t = {.ctx = e->ctx, .owned = &a->owned, .who = "encoder", .alloc = alloc};
    const vp_pool A = VP_POOL_ACTIVATIONS;
    a->B = B_;
    a->T = T_;
    a->layers = calloc((size_t)ar->layers, sizeof *a->layers);
    a->slots = calloc((size_t)e->spec.count * ar->layers + 1, sizeof *a->slots);
    a->reparam = calloc((size_t)e->spec.count + 1, sizeof *a->reparam);
    if (!a->layers || !a->slots || !a->reparam)
        return vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
    const uint64_t gwords = kernel_embedding_groups_words((uint32_t)N) * 4;
    /* Inputs. */
    model_take(&t, A, &a->ids, N * 4);
    model_take(&t, A, &a->pos, N * 4);
    if (e->w.type) model_take(&t, A, &a->types, N * 4);
    model_take(&t, A, &a->keep, N);
    model_take(&t, A, &a->labels, R * 4);
    if (e->w.word->param) model_take(&t, A, &a->groups_word, gwords);
    if (e->w.pos->param) model_take(&t, A, &a->groups_pos, gwords);
    if (e->w.type && e->w.type->param) model_take(&t, A, &a->groups_type, gwords);
    /* Constant tables. */
    model_take(&t, A, &a->ids_split, N * H * 4);
    model_take(&t, A, &a->ids_merge, N * H * 4);
    if (any_per_head(e)) {
        model_take(&t, A, &a->ids_hsplit, N * H * 4);
        model_take(&t, A, &a->ids_hmerge, N * H * 4);
        model_take(&t, A, &a->ones, N * 4);
    }
    model_take(&t, A, &a->ids_cls, B * 4);
    model_take(&t, A, &a->groups_cls, kernel_embedding_groups_words((uint32_t)B) * 4);
    /* Forward. */
    model_take(&t, A, &a->emb, N * d * 4);
    model_take(&t, A, &a->emb_mean, N * 4);
    model_take(&t, A, &a->emb_rstd, N * 4);
    model_take(&t, A, &a->x0, N * d * 4);
    model_take(&t, A, &a->proj, N * d * 4);
    /* Checkpointing: every layer keeps its out (and its prefix rows and
     * tables); the rest is layer 0's, a module's slots its first layer's. */
    const bool ck = e->opt.checkpoint_activations;
    for (int l = 0; l < ar->layers; l++) {
        struct enc_layer_acts *la = &a->layers[l];
        if (ck && l > 0) {
            *la = a->layers[0];
            la->out = la->pk = la->pv = la->ids_pk = la->ids_pv = la->groups_pk = la->groups_pv = (struct vk_buffer){0};
        }
        take_layer(&t, e, la, l, N, !(ck && l > 0));
    }
    for (int i = 0; i < e->spec.count; i++) {
        const struct enc_slot_acts *first = NULL;
        for (int l = 0; l < ar->layers; l++) {
            struct enc_slot_acts *sa = &a->slots[(size_t)i * ar->layers + l];
            if (!enc_slot_at(e, i, l)->active) continue;
            if (ck && first) *sa = *first;
            else take_slot(&t, e, enc_slot_at(e, i, l), sa, N);
            if (!first) first = sa;
        }
    }
    for (int i = 0; i < e->spec.count; i++) {
        const struct delta_module *m = &e->spec.modules[i];
        if (m->kind != DELTA_PREFIX || m->reparam <= 0) continue;
        const uint64_t LR = (uint64_t)m->size * (uint64_t)m->reparam;
        model_take(&t, A, &a->reparam[i].h0pre, LR * 4);
        model_take(&t, A, &a->reparam[i].h0, LR * 4);
        model_take(&t, A, &a->reparam[i].dh0, LR * 4);
        for (int l = 0; l < ar->layers; l++)
            if (enc_slot_at(e, i, l)->active && enc_slot_at(e, i, l)->prefix_block == 0) {
                a->reparam[i].out_offset = enc_slot_at(e, i, l)->src_k;
                break;
            }
    }
    if (e->prefix_src_elems) {
        model_take(&t, A, &a->prefix_src, e->prefix_src_elems * 4);
        model_take(&t, A, &a->dprefix_src, e->prefix_src_elems * 4);
    }
    /* Head and loss. */
    model_take(&t, A, &a->cls, B * d * 4);
    model_take(&t, A, &a->pool_pre, B * d * 4);
    model_take(&t, A, &a->pool, B * d * 4);
    if (mlm) {
        model_take(&t, A, &a->mlm_pre, N * d * 4);
        model_take(&t, A, &a->mlm_act, N * d * 4);
        model_take(&t, A, &a->mlm_mean, N * 4);
        model_take(&t, A, &a->mlm_rstd, N * 4);
        model_take(&t, A, &a->mlm_h, N * d * 4);
    }
    model_take(&t, A, &a->logits, R * C * 4);
    model_take(&t, A, &a->loss, 8);
    model_take(&t, A, &a->ce_lse, R * 4);
    const struct kernel_cross_entropy_config ce = {rows, classes, ENCODER_IGNORE_INDEX, 0.0f};
    model_take(&t, A, &a->ce_scratch, kernel_cross_entropy_scratch_bytes(e->ctx, &ce));
    /* Backward. */
    struct vk_buffer *gnd[] = {&a->g_cur, &a->g_next, &a->g_res, &a->g_h, &a->g_tmp, &a->g_ctx, &a->g_q,
                               &a->g_atth, &a->g_qh, &a->g_kh, &a->g_vh, &a->g_delta, &a->g_dz,
                               &a->g_ddh, &a->g_dzh};
    for (size_t k = 0; k < sizeof gnd / sizeof gnd[0]; k++) model_take(&t, A, gnd[k], N * d * 4);
    model_take(&t, A, &a->g_u, N * I * 4);
    uint64_t lp_max = 0, scratch = 4;
    for (int l = 0; l < ar->layers; l++) {
        if ((uint64_t)e->prefix_rows[l] > lp_max) lp_max = (uint64_t)e->prefix_rows[l];
        struct kernel_attention_config cfg = attention_config(e, l, B_, T_);
        uint64_t sb = kernel_attention_scratch_bytes(e->ctx, &cfg);
        if (sb > scratch) scratch = sb;
    }
    if (lp_max) {
        model_take(&t, A, &a->g_pk, lp_max * d * 4);
        model_take(&t, A, &a->g_pv, lp_max * d * 4);
    }
    model_take(&t, A, &a->attn_scratch, scratch);
    model_take(&t, A, &a->norm_scratch, kernel_norm_scratch_bytes((uint32_t)N, (uint32_t)d));
    if (any_gated(e)) model_take(&t, A, &a->gate_scratch, kernel_sigmoid_gate_scratch_bytes((uint32_t)N, (uint32_t)d));
    if (e->rank_max) model_take(&t, A, &a->g_hact, N * (uint64_t)e->rank_max * 4);
    model_take(&t, A, &a->g_logits, R * C * 4);
    model_take(&t, A, &a->g_pool, B * d * 4);
    model_take(&t, A, &a->g_cls, B * d * 4);
    /* Staging: the inputs the host writes, then the outputs a run copies back. */
    uint64_t in = 0;
    a->in_ids = in, in += N * 4;
    a->in_pos = in, in += N * 4;
    a->in_types = in, in += N * 4;
    a->in_labels = in, in += R * 4;
    a->in_keep = in, in += align_up(N, 4);
    a->in_gword = in, in += e->tables_trained ? gwords : 0;
    a->in_gpos = in, in += e->tables_trained ? gwords : 0;
    a->in_gtype = in, in += e->tables_trained ? gwords : 0;
    model_take(&t, VP_POOL_STAGING, &a->stage_in, in);
    model_take(&t, VP_POOL_STAGING, &a->stage_out, 8 + R * C * 4);
    if (bytes) memcpy(bytes, t.bytes, sizeof t.bytes);
    return t.status;
}

static void acts_free(struct encoder *e, struct enc_acts *a) {
    model_owned_free(e->ctx, &a->owned);
    free(a->layers);
    free(a->slots);
    free(a->reparam);
    memset(a, 0, sizeof *a);
}

/* The constant index tables for the shape (kernels/embedding.c gathers):
 * split heads (B,T,H,hd) → (B,H,T,hd) and back, split by heads (N,H,hd) →
 * (H,N,hd) and back, the [CLS] rows, ones, and each layer's prefix rows. */
static vp_status upload_constants(struct encoder *e) {
    struct enc_acts *a = &e->acts;
    const uint32_t B = (uint32_t)a->B, T = (uint32_t)a->T, N = B * T, H = (uint32_t)e->arch.heads;
    const uint32_t d = (uint32_t)e->arch.hidden, hd = (uint32_t)e->arch.head_dim;
    uint64_t most = (uint64_t)N * H + kernel_embedding_groups_words(B);
    for (int l = 0; l < e->arch.layers; l++)
        if (kernel_embedding_groups_words((uint32_t)e->prefix_rows[l] * d) > most)
            most = kernel_embedding_groups_words((uint32_t)e->prefix_rows[l] * d);
    int32_t *v = calloc(most, sizeof *v);
    uint32_t *g = calloc(most, sizeof *g);
    vp_status s = v && g ? VP_OK : vp_fail(VP_ERROR_HOST_MEMORY, "encoder: out of host memory");
    for (uint32_t b = 0; s == VP_OK && b < B; b++)
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t t = 0; t < T; t++) v[((size_t)b * H + h) * T + t] = (int32_t)(((b * T) + t) * H + h);
    if (s == VP_OK) s = vk_buffer_write(e->ctx, &a->ids_split, 0, v, (uint64_t)N * H * 4);
    for (uint32_t b = 0; s == VP_OK && b < B; b++)
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t h = 0; h < H; h++) v[((size_t)b * T + t) * H + h] = (int32_t)((b * H + h) * T + t);
    if (s == VP_OK) s = vk_buffer_write(e->ctx, &a->ids_merge, 0, v, (uint64_t)N * H * 4);
    if (s == VP_OK && a->ids_hsplit.buffer) {
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t n = 0; n < N; n++) v[(size_t)h * N + n] = (int32_t)(n * H + h);
        s = vk_buffer_write(e->ctx, &a->ids_hsplit, 0, v, (uint64_t)N * H * 4);
        for (uint32_t n = 0; n < N; n++)
            for (uint32_t h = 0; h < H; h++) v[(size_t)n * H + h] = (int32_t)(h * N + n);
        if (s == VP_OK) s = vk_buffer_write(e->ctx, &a->ids_hmerge, 0, v, (uint64_t)N * H * 4);
        float *ones = (float *)v;
        for (uint32_t n = 0; n < N; n++) ones[n] = 1.0f;
        if (s == VP_OK) s = vk_buffer_write(e->ctx, &a->ones, 0, ones, (uint64_t)N * 4);
    }
    for (uint32_t b = 0; s == VP_OK && b < B; b++) v[b] = (int32_t)(b * T);
    if (s == VP_OK) s = vk_buffer_write(e->ctx, &a->ids_cls, 0, v, (uint64_t)B * 4);
    if (s == VP_OK) s = kernel_embedding_groups_build(g, v, B, N);
    if (s == VP_OK) s = vk_buffer_write(e->ctx, &a->groups_cls, 0, g, kernel_embedding_groups_words(B) * 4);
    for (int l = 0; s == VP_OK && l < e->arch.layers; l++) {
        const uint32_t Lp = (uint32_t)e->prefix_rows[l], n = Lp * d;
        if (!Lp) continue;
        for (int kv = 0; kv < 2 && s == VP_OK; kv++) {
            for (int i = 0; i < e->spec.count; i++) {
                const struct enc_slot *sl = enc_slot_at(e, i, l);
                if (!sl->active || e->spec.modules[i].kind != DELTA_PREFIX) continue;
                const uint64_t src = kv ? sl->src_v : sl->src_k;
                for (uint32_t h = 0; h < H; h++)
                    for (int j = 0; j < sl->rank; j++)
                        for (uint32_t c = 0; c < hd; c++)
                            v[((size_t)h * Lp + (uint32_t)(sl->prefix_offset + j)) * hd + c] =
                                (int32_t)(src + (uint64_t)j * sl->src_stride + (uint64_t)h * hd + c);
            }
            struct enc_layer_acts *la = &a->layers[l];
            s = vk_buffer_write(e->ctx, kv ? &la->ids_pv : &la->ids_pk, 0, v, (uint64_t)n * 4);
            if (s == VP_OK) s = kernel_embedding_groups_build(g, v, n, (uint32_t)e->prefix_src_elems);
            if (s == VP_OK)
                s = vk_buffer_write(e->ctx, kv ? &la->groups_pv : &la->groups_pk, 0, g,
                                    kernel_embedding_groups_words(n) * 4);
        }
    }
    free(v);
    free(g);
    return s;
}

/* ------------------------------------------------------------------------
 * Plan, load, batch shape
 * ------------------------------------------------------------------------ */

static void invalidate_recordings(struct encoder *e) {
    for (int p = 0; p < ENCODER_PASS_COUNT; p++) e->recorded[p] = false;
}

static vp_status alloc_acts(struct encoder *e, int B, int T) {
    vp_status s = enc_acts_layout(e, &e->acts, B, T, true, NULL);
    if (s == VP_OK) s = upload_constants(e);
    if (s != VP_OK) acts_free(e, &e->acts);
    return s;
}

/* Reserves a plan; over the budget, an encoder that keeps every
 * activation adds checkpointing to the remedies, with its figure. */
static vp_status reserve(struct encoder *e, const uint64_t plan[VP_POOL_COUNT], int B, int T) {
    uint64_t with = 0;
    if (!e->opt.checkpoint_activations && encoder_plan_activations(e, B, T, true, &with) != VP_OK) with = 0;
    return model_reserve(e->ctx, plan, with);
}

vp_status encoder_load(struct encoder *e, int B, int T) {
    if (e->loaded) return encoder_set_batch(e, B, T);
    uint64_t plan[VP_POOL_COUNT];
    vp_status s = encoder_plan(e, B, T, plan);
    if (s == VP_OK) s = reserve(e, plan, B, T);
    if (s == VP_OK) s = delta_params_alloc(e->params);
    if (s == VP_OK) s = enc_upload_frozen(e);
    if (s == VP_OK) s = enc_load_params(e);
    if (s == VP_OK) s = alloc_acts(e, B, T);
    if (s != VP_OK) {
        /* Back to the opened state: nothing of this attempt stays allocated. */
        for (int k = 0; k < e->weight_count; k++) vk_buffer_free(e->ctx, &e->weights[k].frozen);
        delta_params_free_device(e->params);
        vk_pools_trim(e->ctx);
        return s;
    }
    if (e->file) {
        io_weights_close(e->file);
        e->file = NULL;
        for (int k = 0; k < e->weight_count; k++) e->weights[k].file = NULL;
        for (int k = 0; k < e->head_count; k++) e->head_file[k] = NULL;
    }
    e->loaded = true;
    return VP_OK;
}

vp_status encoder_create(vp_context *ctx, const char *dir, const struct delta_spec *spec,
                         const struct encoder_options *opt, int B, int T, struct encoder **out) {
    vp_status s = encoder_open(ctx, dir, spec, opt, out);
    if (s != VP_OK) return s;
    s = encoder_load(*out, B, T);
    if (s != VP_OK) {
        encoder_destroy(*out);
        *out = NULL;
    }
    return s;
}

vp_status encoder_set_batch(struct encoder *e, int B, int T) {
    if (!e->loaded) return encoder_load(e, B, T);
    if (B == e->acts.B && T == e->acts.T) return VP_OK;
    uint64_t plan[VP_POOL_COUNT];
    vp_status s = encoder_plan(e, B, T, plan);
    if (s != VP_OK) return s;
    acts_free(e, &e->acts);
    invalidate_recordings(e);
    vk_pools_trim(e->ctx);
    plan[VP_POOL_FROZEN] = plan[VP_POOL_TRAINABLE] = 0; /* already held */
    s = reserve(e, plan, B, T);
    if (s == VP_OK) s = alloc_acts(e, B, T);
    return s;
}

void encoder_set_step(struct encoder *e, uint32_t step) { e->step = step; }

void encoder_destroy(struct encoder *e) {
    if (!e) return;
    for (int p = 0; p < ENCODER_PASS_COUNT; p++) vk_recorder_destroy(e->rec[p]);
    vk_recorder_destroy(e->zero_rec);
    acts_free(e, &e->acts);
    enc_free_weights(e);
    delta_params_destroy(e->params);
    if (e->file) io_weights_close(e->file);
    free(e->w.layers);
    free(e->slots);
    free(e->prefix_rows);
    free(e);
}

const struct model_arch *encoder_arch(const struct encoder *e) { return &e->arch; }
struct delta_params *encoder_params(struct encoder *e) { return e->params; }
enum vp_dtype encoder_weight_dtype(const struct encoder *e) { return e->wtype; }
void encoder_batch_shape(const struct encoder *e, int *B, int *T) {
    *B = e->acts.B;
    *T = e->acts.T;
}

/* ------------------------------------------------------------------------
 * Batches, runs, outputs
 * ------------------------------------------------------------------------ */

/* Fails unless the encoder is loaded and has activations for a shape. */
static vp_status check_ready(const struct encoder *e, const char *what) {
    if (!e->loaded || e->acts.B == 0)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: %s needs a loaded model with a batch shape "
                       "(encoder_load / encoder_set_batch)", what);
    return VP_OK;
}

vp_status encoder_write_batch(struct encoder *e, const struct encoder_batch *batch) {
    struct enc_acts *a = &e->acts;
    if (check_ready(e, "write_batch") != VP_OK) return VP_ERROR_INVALID_ARGUMENT;
    const int B = a->B, T = a->T, N = B * T, V = e->arch.vocab_size, C = e->arch.num_labels;
    char *base = a->stage_in.host;
    int32_t *ids = (int32_t *)(base + a->in_ids), *pos = (int32_t *)(base + a->in_pos);
    int32_t *types = (int32_t *)(base + a->in_types), *labels = (int32_t *)(base + a->in_labels);
    uint8_t *keep = (uint8_t *)(base + a->in_keep);
    for (int n = 0; n < N; n++) {
        if (batch->ids[n] < 0 || batch->ids[n] >= V)
            return vp_fail(VP_ERROR_BAD_INPUT, "encoder: token %d of the batch has id %d, outside the "
                           "vocabulary [0, %d)", n, batch->ids[n], V);
        int ty = batch->type_ids ? batch->type_ids[n] : 0;
        if (ty < 0 || (ty > 0 && ty >= e->arch.type_vocab_size))
            return vp_fail(VP_ERROR_BAD_INPUT, "encoder: token %d has type id %d, outside [0, %d)", n, ty,
                           e->arch.type_vocab_size);
        ids[n] = batch->ids[n];
        types[n] = ty;
        keep[n] = batch->mask ? batch->mask[n] != 0 : 1;
    }
    for (int n = N; n < (N + 3) / 4 * 4; n++) keep[n] = 0;
    const bool mlm = e->arch.head == MODEL_HEAD_MLM;
    const int rows = mlm ? N : B, classes = mlm ? V : C;
    for (int b = 0; b < rows; b++) {
        int y = batch->labels ? batch->labels[b] : ENCODER_IGNORE_INDEX;
        if (y != ENCODER_IGNORE_INDEX && (y < 0 || y >= classes))
            return vp_fail(VP_ERROR_BAD_INPUT, "encoder: %s %d of the batch is outside [0, %d)",
                           mlm ? "token label" : "label", y, classes);
        labels[b] = y;
    }
    if (e->arch.roberta_positions)
        kernel_positions_roberta(pos, ids, (uint32_t)B, (uint32_t)T, e->arch.pad_token_id, 0);
    else
        kernel_positions_offset(pos, (uint32_t)B, (uint32_t)T, 0);
    vp_status s = VP_OK;
    if (e->w.word->param)
        s = kernel_embedding_groups_build((uint32_t *)(base + a->in_gword), ids, (uint32_t)N, (uint32_t)V);
    if (s == VP_OK && e->w.pos->param)
        s = kernel_embedding_groups_build((uint32_t *)(base + a->in_gpos), pos, (uint32_t)N,
                                          (uint32_t)e->arch.max_positions);
    if (s == VP_OK && e->w.type && e->w.type->param)
        s = kernel_embedding_groups_build((uint32_t *)(base + a->in_gtype), types, (uint32_t)N,
                                          (uint32_t)e->arch.type_vocab_size);
    return s;
}

static vp_status copy_in(struct vk_recorder *rec, const struct vk_buffer *dst, const struct enc_acts *a,
                         uint64_t offset, uint64_t size) {
    return dst->buffer ? vk_recorder_copy(rec, dst, 0, &a->stage_in, offset, size) : VP_OK;
}

vp_status encoder_record(struct encoder *e, struct vk_recorder *rec, enum encoder_pass pass) {
    struct enc_acts *a = &e->acts;
    if (check_ready(e, "record") != VP_OK) return VP_ERROR_INVALID_ARGUMENT;
    const uint64_t N = (uint64_t)a->B * (uint64_t)a->T, gw = kernel_embedding_groups_words((uint32_t)N) * 4;
    const bool train = pass == ENCODER_PASS_TRAIN;
    vp_status s = copy_in(rec, &a->ids, a, a->in_ids, N * 4);
    if (s == VP_OK) s = copy_in(rec, &a->pos, a, a->in_pos, N * 4);
    if (s == VP_OK) s = copy_in(rec, &a->types, a, a->in_types, N * 4);
    uint32_t rows, classes;
    enc_loss_shape(e, a->B, a->T, &rows, &classes);
    if (s == VP_OK) s = copy_in(rec, &a->labels, a, a->in_labels, (uint64_t)rows * 4);
    if (s == VP_OK) s = copy_in(rec, &a->keep, a, a->in_keep, align_up(N, 4));
    if (train) {
        if (s == VP_OK) s = copy_in(rec, &a->groups_word, a, a->in_gword, gw);
        if (s == VP_OK) s = copy_in(rec, &a->groups_pos, a, a->in_gpos, gw);
        if (s == VP_OK) s = copy_in(rec, &a->groups_type, a, a->in_gtype, gw);
    }
    if (s == VP_OK) s = enc_record_forward(e, rec, train);
    if (s == VP_OK && train) s = enc_record_backward(e, rec);
    if (s == VP_OK) s = vk_recorder_copy(rec, &a->stage_out, 0, &a->loss, 0, 8);
    if (s == VP_OK)
        s = vk_recorder_copy(rec, &a->stage_out, 8, &a->logits, 0, (uint64_t)rows * classes * 4);
    return s;
}

vp_status encoder_run(struct encoder *e, enum encoder_pass pass) {
    if ((unsigned)pass >= ENCODER_PASS_COUNT) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "encoder: bad pass");
    vp_status s = VP_OK;
    if (!e->rec[pass]) s = vk_recorder_create(e->ctx, 0, &e->rec[pass]);
    bool stale = !e->recorded[pass] ||
                 (pass == ENCODER_PASS_TRAIN && e->opt.dropout && e->recorded_step[pass] != e->step);
    if (s == VP_OK && stale) {
        e->recorded[pass] = false;
        s = vk_recorder_begin(e->rec[pass]);
        if (s == VP_OK) s = encoder_record(e, e->rec[pass], pass);
        if (s == VP_OK) s = vk_recorder_end(e->rec[pass]);
        if (s == VP_OK) {
            e->recorded[pass] = true;
            e->recorded_step[pass] = e->step;
        }
    }
    if (s == VP_OK) s = vk_recorder_run(e->rec[pass]);
    return s;
}

vp_status encoder_record_zero_grads(struct encoder *e, struct vk_recorder *rec) {
    return delta_params_record_zero_grads(e->params, rec);
}

vp_status encoder_zero_grads(struct encoder *e) {
    vp_status s = e->loaded ? VP_OK : check_ready(e, "zero_grads");
    if (!e->zero_rec) s = vk_recorder_create(e->ctx, 0, &e->zero_rec);
    if (s == VP_OK && !e->zero_recorded) {
        s = vk_recorder_begin(e->zero_rec);
        if (s == VP_OK) s = encoder_record_zero_grads(e, e->zero_rec);
        if (s == VP_OK) s = vk_recorder_end(e->zero_rec);
        e->zero_recorded = s == VP_OK;
    }
    if (s == VP_OK) s = vk_recorder_run(e->zero_rec);
    return s;
}

vp_status encoder_loss(const struct encoder *e, float *loss, uint32_t *count) {
    if (check_ready(e, "loss") != VP_OK) return VP_ERROR_INVALID_ARGUMENT;
    if (loss) memcpy(loss, e->acts.stage_out.host, 4);
    if (count) memcpy(count, (const char *)e->acts.stage_out.host + 4, 4);
    return VP_OK;
}

vp_status encoder_logits(const struct encoder *e, float *logits) {
    if (check_ready(e, "logits") != VP_OK) return VP_ERROR_INVALID_ARGUMENT;
    uint32_t rows, classes;
    enc_loss_shape(e, e->acts.B, e->acts.T, &rows, &classes);
    memcpy(logits, (const char *)e->acts.stage_out.host + 8, (size_t)rows * classes * 4);
    return VP_OK;
}
