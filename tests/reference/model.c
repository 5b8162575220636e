/* Whole-model reference: creation of the frozen model and the head, and the
 * model's view of the tensor registry and delta modules (delta_ref.c). The
 * forward is in model_forward.c, the backward in model_backward.c. */
#include "model.h"
#include "ref.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------
 * Tensor registry
 * ------------------------------------------------------------------------ */

int refm_tensor_count(const struct refm *m) { return m->tensors.count; }
struct refm_tensor *refm_tensor_at(struct refm *m, int i) { return ref_tensors_at(&m->tensors, i); }
struct refm_tensor *refm_tensor_find(struct refm *m, const char *name) { return ref_tensors_find(&m->tensors, name); }

vp_status refm_tensor_set(struct refm *m, const char *name, const double *data, size_t n) {
    return ref_tensors_set(&m->tensors, name, data, n);
}

size_t refm_trainable_params(const struct refm *m) { return ref_tensors_trainable_params(&m->tensors); }
void refm_zero_grad(struct refm *m) { ref_tensors_zero_grad(&m->tensors); }

struct ref_slot *refm_slot_at(struct refm *m, int module, int layer) {
    return ref_deltas_slot(&m->deltas, module, layer);
}

/* ------------------------------------------------------------------------
 * The frozen model and the head
 * ------------------------------------------------------------------------ */

/* LayerNorm γ near 1 (so the test model is not degenerate), β like a bias. */
static void layernorm_tensors(struct refm *m, struct refm_tensor **w, struct refm_tensor **b,
                              const char *prefix) {
    int d = m->arch.hidden;
    *w = ref_tensors_add(&m->tensors, false, d, 0, 0, "%sLayerNorm.weight", prefix);
    ref_tensors_fill_normal(&m->tensors, *w, 1.0, 0.1);
    *b = ref_tensors_weight(&m->tensors, d, 0, "%sLayerNorm.bias", prefix);
}

static void create_layer(struct refm *m, struct refm_layer *L, const char *root, int l) {
    struct ref_tensors *ts = &m->tensors;
    int d = m->arch.hidden, I = m->arch.intermediate;
    char p[96];
    snprintf(p, sizeof p, "%sencoder.layer.%d.", root, l);
    L->wq = ref_tensors_weight(ts, d, d, "%sattention.self.query.weight", p);
    L->bq = ref_tensors_weight(ts, d, 0, "%sattention.self.query.bias", p);
    L->wk = ref_tensors_weight(ts, d, d, "%sattention.self.key.weight", p);
    L->bk = ref_tensors_weight(ts, d, 0, "%sattention.self.key.bias", p);
    L->wv = ref_tensors_weight(ts, d, d, "%sattention.self.value.weight", p);
    L->bv = ref_tensors_weight(ts, d, 0, "%sattention.self.value.bias", p);
    L->wo = ref_tensors_weight(ts, d, d, "%sattention.output.dense.weight", p);
    L->bo = ref_tensors_weight(ts, d, 0, "%sattention.output.dense.bias", p);
    char q[128];
    snprintf(q, sizeof q, "%sattention.output.", p);
    layernorm_tensors(m, &L->ln1_w, &L->ln1_b, q);
    L->wup = ref_tensors_weight(ts, I, d, "%sintermediate.dense.weight", p);
    L->bup = ref_tensors_weight(ts, I, 0, "%sintermediate.dense.bias", p);
    L->wdown = ref_tensors_weight(ts, d, I, "%soutput.dense.weight", p);
    L->bdown = ref_tensors_weight(ts, d, 0, "%soutput.dense.bias", p);
    snprintf(q, sizeof q, "%soutput.", p);
    layernorm_tensors(m, &L->ln2_w, &L->ln2_b, q);
}

static void create_model(struct refm *m) {
    struct ref_tensors *ts = &m->tensors;
    const struct model_arch *a = &m->arch;
    const char *root = a->family == MODEL_FAMILY_BERT ? "bert." : "roberta.";
    int d = a->hidden;
    m->w.word = ref_tensors_weight(ts, a->vocab_size, d, "%sembeddings.word_embeddings.weight", root);
    m->w.pos = ref_tensors_weight(ts, a->max_positions, d, "%sembeddings.position_embeddings.weight", root);
    if (a->type_vocab_size > 0)
        m->w.type = ref_tensors_weight(ts, a->type_vocab_size, d, "%sembeddings.token_type_embeddings.weight", root);
    char p[64];
    snprintf(p, sizeof p, "%sembeddings.", root);
    layernorm_tensors(m, &m->w.ln_emb_w, &m->w.ln_emb_b, p);
    m->w.layers = calloc((size_t)a->layers, sizeof *m->w.layers);
    assert(m->w.layers);
    for (int l = 0; l < a->layers; l++) create_layer(m, &m->w.layers[l], root, l);
    if (a->family == MODEL_FAMILY_BERT) {
        m->w.pool_w = ref_tensors_weight(ts, d, d, "bert.pooler.dense.weight");
        m->w.pool_b = ref_tensors_weight(ts, d, 0, "bert.pooler.dense.bias");
    }
}

/* The classification head, trainable with every preset. */
static void create_head(struct refm *m) {
    struct ref_tensors *ts = &m->tensors;
    int d = m->arch.hidden, C = m->arch.num_labels;
    bool bert = m->arch.family == MODEL_FAMILY_BERT;
    if (!bert) {
        m->w.dense_w = ref_tensors_weight(ts, d, d, "classifier.dense.weight");
        m->w.dense_b = ref_tensors_weight(ts, d, 0, "classifier.dense.bias");
        ref_tensor_make_trainable(m->w.dense_w);
        ref_tensor_make_trainable(m->w.dense_b);
    }
    m->w.cls_w = ref_tensors_weight(ts, C, d, bert ? "classifier.weight" : "classifier.out_proj.weight");
    m->w.cls_b = ref_tensors_weight(ts, C, 0, bert ? "classifier.bias" : "classifier.out_proj.bias");
    ref_tensor_make_trainable(m->w.cls_w);
    ref_tensor_make_trainable(m->w.cls_b);
}

/* BitFit: every bias of the module's layers, plus the embedding LayerNorm's
 * and the pooler's (delta/count.c counts the same). Full: everything. */
static void mark_model_trainable(struct refm *m, const struct delta_module *mod) {
    struct refm_weights *w = &m->w;
    bool full = mod->kind == DELTA_FULL;
    ref_tensor_make_trainable(w->ln_emb_b);
    ref_tensor_make_trainable(w->pool_b);
    if (full) {
        ref_tensor_make_trainable(w->word);
        ref_tensor_make_trainable(w->pos);
        ref_tensor_make_trainable(w->type);
        ref_tensor_make_trainable(w->ln_emb_w);
        ref_tensor_make_trainable(w->pool_w);
    }
    for (int l = 0; l < m->arch.layers; l++) {
        if (!full && !delta_module_has_layer(mod, l)) continue;
        struct refm_layer *L = &w->layers[l];
        struct refm_tensor *biases[] = {L->bq, L->bk, L->bv, L->bo, L->ln1_b, L->bup, L->bdown, L->ln2_b};
        struct refm_tensor *weights[] = {L->wq, L->wk, L->wv, L->wo, L->ln1_w, L->wup, L->wdown, L->ln2_w};
        for (size_t k = 0; k < sizeof biases / sizeof biases[0]; k++) {
            ref_tensor_make_trainable(biases[k]);
            if (full) ref_tensor_make_trainable(weights[k]);
        }
    }
}

/* ------------------------------------------------------------------------
 * Delta modules
 * ------------------------------------------------------------------------ */

/* Projection widths (in, out) a LoRA at `at` reads and writes. */
static void lora_dims(const struct model_arch *a, enum delta_at at, int *in, int *out) {
    *in = a->hidden;
    *out = a->hidden;
    if (at == DELTA_AT_UP) *out = a->intermediate;
    if (at == DELTA_AT_DOWN) *in = a->intermediate;
}

static void create_module(struct refm *m, int i) {
    const struct delta_module *mod = &m->spec.modules[i];
    if (mod->kind == DELTA_BITFIT || mod->kind == DELTA_FULL) {
        mark_model_trainable(m, mod);
        return;
    }
    int in, out;
    lora_dims(&m->arch, mod->at, &in, &out);
    ref_deltas_create_module(&m->deltas, i, in, out);
}

/* ------------------------------------------------------------------------
 * Create / destroy
 * ------------------------------------------------------------------------ */

static vp_status check_arch(const struct model_arch *a) {
    if (a->family != MODEL_FAMILY_BERT && a->family != MODEL_FAMILY_ROBERTA)
        return vp_fail(VP_ERROR_BAD_INPUT, "reference model: only BERT and RoBERTa are covered");
    if (a->norm != MODEL_NORM_LAYERNORM || a->pre_norm || a->positions != MODEL_POS_LEARNED ||
        a->act == MODEL_ACT_SWIGLU || a->kv_heads != a->heads || a->heads * a->head_dim != a->hidden)
        return vp_fail(VP_ERROR_BAD_INPUT, "reference model: %s is not a post-LN LayerNorm encoder "
                       "with learned positions and full multi-head attention", a->model_type);
    if (a->num_labels < 1)
        return vp_fail(VP_ERROR_BAD_INPUT, "reference model: %s has no labels", a->model_type);
    return VP_OK;
}

/* delta_count_params checks layers and stacks (every module must be for
 * the encoder stack), then the placements. */
static vp_status check_spec(const struct delta_spec *spec, const struct model_arch *a) {
    struct delta_counts counts;
    vp_status s = delta_count_params(spec, a, &counts);
    if (s != VP_OK) return s;
    return ref_deltas_check_spec(spec, a, DELTA_STACK_ENCODER, "reference model");
}

vp_status refm_create(struct refm **out, const struct model_arch *arch, const struct delta_spec *spec,
                      const struct refm_options *opt) {
    *out = NULL;
    vp_status s = check_arch(arch);
    if (s == VP_OK) s = check_spec(spec, arch);
    if (s != VP_OK) return s;
    struct refm *m = calloc(1, sizeof *m);
    if (!m) return vp_fail(VP_ERROR_HOST_MEMORY, "reference model: out of host memory");
    m->arch = *arch;
    m->arch.labels = NULL; /* the caller owns the names */
    m->spec = *spec;
    m->opt = opt ? *opt : (struct refm_options){0};
    if (m->opt.weight_std == 0.0) m->opt.weight_std = 0.02;
    ref_tensors_init(&m->tensors, m->opt.seed, m->opt.weight_std, m->opt.randomise_zero_init, "reference model");
    ref_deltas_init(&m->deltas, &m->arch, &m->spec, &m->tensors, DELTA_STACK_ENCODER, "encoder");
    /* The head before the deltas: the frozen model and the head then take
     * the same Philox streams whatever the spec. */
    create_model(m);
    create_head(m);
    for (int i = 0; i < spec->count; i++) create_module(m, i);
    *out = m;
    return VP_OK;
}

void refm_destroy(struct refm *m) {
    if (!m) return;
    refm_acts_free(&m->acts);
    ref_deltas_finish(&m->deltas);
    ref_tensors_finish(&m->tensors);
    free(m->w.layers);
    free(m);
}

vp_status refm_collapse_prefix(struct refm *m) { return ref_deltas_collapse_prefix(&m->deltas); }
