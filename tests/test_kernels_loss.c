/* Cross-entropy kernels (runtime/kernels/cross_entropy.c) against
 * ref_cross_entropy_forward/backward: ignore_index, label smoothing, every
 * row ignored, tiny and odd shapes, logits split across binding ranges (rows
 * spanning ranges and rows longer than one), in-place backward, the count
 * kept on the device across replays, and bit-reproducibility. */
#include "kerneltest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define IGNORE (-100)

struct ce_case {
    uint32_t N, V;
    double eps;        /* label smoothing */
    double ignored;    /* share of rows with the ignore index (1 = all) */
    double dloss;
    double lo, hi;     /* logit range */
};

struct ce_host {
    double *z, *dz, *row_loss, *lse, loss;
    int32_t *y;
    uint32_t count;
};

static void host_init(struct ce_host *h, const struct ce_case *c, uint64_t seed) {
    size_t n = (size_t)c->N * c->V;
    h->z = malloc((n ? n : 1) * sizeof(double));
    h->dz = malloc((n ? n : 1) * sizeof(double));
    h->row_loss = malloc((c->N ? c->N : 1) * sizeof(double));
    h->lse = malloc((c->N ? c->N : 1) * sizeof(double));
    h->y = malloc((c->N ? c->N : 1) * sizeof(int32_t));
    kt_random(h->z, n, c->lo, c->hi, VP_DTYPE_F32, seed);
    uint64_t st = seed + 1;
    h->count = 0;
    for (uint32_t i = 0; i < c->N; i++) {
        bool ign = th_rand_uniform(&st, 0, 1) < c->ignored;
        h->y[i] = ign ? IGNORE : (int32_t)(th_rand_u64(&st) % c->V);
        h->count += !ign;
    }
    h->loss = ref_cross_entropy_forward(h->row_loss, h->z, h->y, (int)c->N, (int)c->V, IGNORE,
                                        c->eps);
    ref_cross_entropy_backward(h->dz, c->dloss, h->z, h->y, (int)c->N, (int)c->V, IGNORE, c->eps);
    for (uint32_t i = 0; i < c->N; i++) {
        /* lse is defined for every row; the kernel writes 0 for ignored ones. */
        const double *zi = h->z + (size_t)i * c->V;
        double m = -INFINITY, s = 0;
        for (uint32_t v = 0; v < c->V; v++) m = fmax(m, zi[v]);
        for (uint32_t v = 0; v < c->V; v++) s += exp(zi[v] - m);
        h->lse[i] = h->y[i] == IGNORE ? 0.0 : m + log(s);
    }
}

static void host_free(struct ce_host *h) {
    free(h->z);
    free(h->dz);
    free(h->row_loss);
    free(h->lse);
    free(h->y);
}

struct ce_dev {
    struct kt_tensor z, dz, lse, row_loss, scratch;
    struct vk_buffer y, loss; /* int32 targets; {mean fp32, count uint32} */
    bool have_y, have_loss;
};

static bool upload_targets(vp_context *ctx, struct ce_dev *d, const int32_t *y, uint32_t N) {
    if (!d->have_y) {
        if (!CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, N ? N * 4 : 4, &d->y) == VP_OK))
            return false;
        d->have_y = true;
    }
    return N == 0 || CHECK(vk_buffer_write(ctx, &d->y, 0, y, N * 4) == VP_OK);
}

static bool dev_init(vp_context *ctx, struct ce_dev *d, const struct ce_host *h,
                     const struct ce_case *c, bool in_place) {
    memset(d, 0, sizeof *d);
    const vp_pool A = VP_POOL_ACTIVATIONS;
    struct kernel_cross_entropy_config cfg = {c->N, c->V, IGNORE, (float)c->eps};
    size_t n = (size_t)c->N * c->V;
    bool ok = kt_upload(ctx, &d->z, A, VP_DTYPE_F32, h->z, n) &&
              (in_place || kt_alloc(ctx, &d->dz, A, VP_DTYPE_F32, n, NAN)) &&
              kt_alloc(ctx, &d->lse, A, VP_DTYPE_F32, c->N, NAN) &&
              kt_alloc(ctx, &d->row_loss, A, VP_DTYPE_F32, c->N, NAN) &&
              kt_alloc(ctx, &d->scratch, A, VP_DTYPE_F32,
                       kernel_cross_entropy_scratch_bytes(ctx, &cfg) / 4, NAN) &&
              upload_targets(ctx, d, h->y, c->N) &&
              CHECK(vk_buffer_alloc(ctx, A, 8, &d->loss) == VP_OK);
    d->have_loss = ok;
    return ok;
}

static void dev_free(vp_context *ctx, struct ce_dev *d) {
    struct kt_tensor *all[] = {&d->z, &d->dz, &d->lse, &d->row_loss, &d->scratch};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->buf.buffer) kt_free(ctx, all[i]);
    if (d->have_y) vk_buffer_free(ctx, &d->y);
    if (d->have_loss) vk_buffer_free(ctx, &d->loss);
}

struct ce_args {
    struct ce_dev *d;
    struct kernel_cross_entropy_config cfg;
    float dloss;
    bool in_place;
};

static vp_status record(vp_context *ctx, struct vk_recorder *rec, void *arg) {
    struct ce_args *a = arg;
    struct ce_dev *d = a->d;
    vp_status s = kernel_cross_entropy_forward(ctx, rec, &d->loss, &d->lse.buf, &d->row_loss.buf,
                                               &d->scratch.buf, &d->z.buf, &d->y, &a->cfg);
    if (s != VP_OK) return s;
    const struct vk_buffer *dz = a->in_place ? &d->z.buf : &d->dz.buf;
    return kernel_cross_entropy_backward(ctx, rec, dz, &d->z.buf, &d->y, &d->lse.buf, &d->loss,
                                         a->dloss, &a->cfg);
}

/* Tolerances. lse sums V terms exp(z - max) <= 1: an fp32 sum of V terms
 * errs by at most V·u relative, and Vulkan's exp is accurate to 3 + 2|x| ulp
 * (|x| <= hi - lo here), so |Δlse| <= u·(V + 2·(hi-lo) + 3) + u·|lse|; we
 * allow twice that. A row loss adds ε·mean(z) (a V-term sum of |z| <= max)
 * and the subtractions; the mean adds an N-term sum. dz = dloss/count ·
 * (p − target) with p = exp(z − lse) off by the exp error plus Δlse. */
static double lse_tol(const struct ce_case *c) {
    double m = fmax(fabs(c->lo), fabs(c->hi));
    return 2.0 * KT_EPS_F32 * (c->V + 2.0 * (c->hi - c->lo) + 3.0 + m + log((double)c->V));
}

static double loss_tol(const struct ce_case *c) {
    double m = fmax(fabs(c->lo), fabs(c->hi));
    return lse_tol(c) + 2.0 * KT_EPS_F32 * (c->eps * c->V * m + 4.0 * (m + log((double)c->V)));
}

static void check_results(vp_context *ctx, struct ce_dev *d, const struct ce_host *h,
                          const struct ce_case *c, bool in_place) {
    size_t n = (size_t)c->N * c->V;
    double *got = malloc((n > c->N ? n : c->N) * sizeof *got + 8);
    struct {
        float mean;
        uint32_t count;
    } loss;
    if (CHECK(vk_buffer_read(ctx, &d->loss, 0, &loss, 8) == VP_OK)) {
        CHECKF(loss.count == h->count, "count %u, want %u", loss.count, h->count);
        double mean = loss.mean;
        KT_CHECK_CLOSE(&mean, &h->loss, 1, loss_tol(c) + 2.0 * KT_EPS_F32 * c->N * fabs(h->loss),
                       0.0, "mean loss");
    }
    if (kt_download(ctx, &d->row_loss, got))
        KT_CHECK_CLOSE(got, h->row_loss, c->N, loss_tol(c), 4 * KT_EPS_F32, "row losses");
    if (kt_download(ctx, &d->lse, got)) KT_CHECK_CLOSE(got, h->lse, c->N, lse_tol(c), 0.0, "lse");
    const struct kt_tensor *dz = in_place ? &d->z : &d->dz;
    double scale = h->count ? fabs(c->dloss) / h->count : 0.0;
    if (kt_download(ctx, dz, got))
        KT_CHECK_CLOSE(got, h->dz, n, scale * (lse_tol(c) + 64.0 * KT_EPS_F32) + 1e-30, 0.0,
                       "dlogits");
    free(got);
}

static void run_case(const vp_context_options *opts, const struct ce_case *c, bool in_place,
                     uint64_t seed, uint32_t *dispatches) {
    vp_context *ctx = vt_context(opts);
    if (!ctx) return;
    struct ce_host h;
    host_init(&h, c, seed);
    struct ce_dev d;
    struct vk_recorder *rec = NULL;
    if (dev_init(ctx, &d, &h, c, in_place) && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct ce_args a = {&d, {c->N, c->V, IGNORE, (float)c->eps}, (float)c->dloss, in_place};
        if (kt_run(ctx, rec, record, &a)) {
            check_results(ctx, &d, &h, c, in_place);
            if (dispatches) *dispatches = vk_recorder_dispatch_count(rec);
        }
    }
    vk_recorder_destroy(rec);
    dev_free(ctx, &d);
    host_free(&h);
    vp_context_destroy(ctx);
}

static void plain(void) {
    run_case(NULL, &(struct ce_case){7, 33, 0.0, 0.3, 1.0, -4, 4}, false, 1, NULL);
}

static void label_smoothing(void) {
    run_case(NULL, &(struct ce_case){5, 1001, 0.1, 0.25, 0.5, -4, 4}, false, 2, NULL);
    run_case(NULL, &(struct ce_case){3, 4099, 1.0, 0.0, 1.0, -4, 4}, false, 3, NULL);
}

/* Logits far from 0 (exp would overflow without the max shift). */
static void large_logits(void) {
    run_case(NULL, &(struct ce_case){6, 257, 0.05, 0.0, 1.0, 60, 90}, false, 4, NULL);
}

static void edge_shapes(void) {
    run_case(NULL, &(struct ce_case){1, 1, 0.0, 0.0, 1.0, -4, 4}, false, 5, NULL);
    run_case(NULL, &(struct ce_case){1, 2, 0.2, 0.0, 2.0, -4, 4}, false, 6, NULL);
    run_case(NULL, &(struct ce_case){300, 3, 0.0, 0.1, 1.0, -4, 4}, false, 7, NULL);
}

/* Every row ignored: loss 0, count 0, dlogits 0 (PyTorch gives NaN). */
static void all_rows_ignored(void) {
    run_case(NULL, &(struct ce_case){4, 19, 0.1, 1.0, 1.0, -4, 4}, false, 8, NULL);
}

static void in_place_backward(void) {
    run_case(NULL, &(struct ce_case){9, 517, 0.1, 0.2, 1.0, -4, 4}, true, 9, NULL);
}

/* A 1 KiB binding range holds 252 floats per span. V = 50: five rows per
 * span, spans starting mid-row at unaligned offsets. V = 1000: every row in
 * four column chunks. Both in place and not. */
static void logits_across_binding_ranges(void) {
    vp_context_options o = {.binding_range = 1024};
    uint32_t dispatches = 0;
    run_case(&o, &(struct ce_case){23, 50, 0.1, 0.2, 1.0, -4, 4}, false, 10, &dispatches);
    CHECKF(dispatches > 2 + 4, "%u dispatches: the logits were not split", dispatches);
    run_case(&o, &(struct ce_case){5, 1000, 0.1, 0.2, 1.0, -4, 4}, false, 11, &dispatches);
    CHECKF(dispatches > 2 + 19, "%u dispatches: the rows were not chunked", dispatches);
    run_case(&o, &(struct ce_case){5, 1000, 0.0, 0.0, 1.0, -4, 4}, true, 12, NULL);
}

/* The count lives on the device: new targets written between two runs of
 * the same recording give the new mean and count without re-recording. */
static void replay_with_new_targets(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    const struct ce_case c1 = {11, 70, 0.1, 0.3, 1.0, -4, 4};
    struct ce_case c2 = c1;
    c2.ignored = 0.7;
    struct ce_host h1, h2;
    host_init(&h1, &c1, 20);
    host_init(&h2, &c2, 20); /* same logits (same seed), other targets */
    struct ce_dev d;
    struct vk_recorder *rec = NULL;
    if (dev_init(ctx, &d, &h1, &c1, false) && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct ce_args a = {&d, {c1.N, c1.V, IGNORE, (float)c1.eps}, 1.0f, false};
        if (kt_run(ctx, rec, record, &a)) {
            check_results(ctx, &d, &h1, &c1, false);
            CHECKF(h1.count != h2.count, "the two target sets should count differently");
            if (upload_targets(ctx, &d, h2.y, c2.N) && CHECK(vk_recorder_run(rec) == VP_OK))
                check_results(ctx, &d, &h2, &c2, false);
        }
    }
    vk_recorder_destroy(rec);
    dev_free(ctx, &d);
    host_free(&h1);
    host_free(&h2);
    vp_context_destroy(ctx);
}

static void deterministic(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    const struct ce_case c = {37, 3001, 0.1, 0.2, 1.0, -6, 6};
    struct ce_host h;
    host_init(&h, &c, 30);
    struct ce_dev d;
    struct vk_recorder *rec = NULL;
    const size_t n = (size_t)c.N * c.V;
    double *first = malloc(n * sizeof *first), *again = malloc(n * sizeof *again);
    uint32_t loss1[2] = {0}, loss2[2] = {1, 1};
    if (dev_init(ctx, &d, &h, &c, false) && CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK)) {
        struct ce_args a = {&d, {c.N, c.V, IGNORE, (float)c.eps}, 1.0f, false};
        if (kt_run(ctx, rec, record, &a) && kt_download(ctx, &d.dz, first) &&
            CHECK(vk_buffer_read(ctx, &d.loss, 0, loss1, 8) == VP_OK) &&
            CHECK(vk_recorder_run(rec) == VP_OK) && kt_download(ctx, &d.dz, again) &&
            CHECK(vk_buffer_read(ctx, &d.loss, 0, loss2, 8) == VP_OK)) {
            CHECK(memcmp(first, again, n * sizeof *first) == 0);
            CHECK(memcmp(loss1, loss2, sizeof loss1) == 0);
            check_results(ctx, &d, &h, &c, false);
        }
    }
    free(first);
    free(again);
    vk_recorder_destroy(rec);
    dev_free(ctx, &d);
    host_free(&h);
    vp_context_destroy(ctx);
}

static void rejects_bad_arguments(void) {
    vp_context *ctx = vt_context(NULL);
    if (!ctx) return;
    struct vk_buffer small;
    struct vk_recorder *rec = NULL;
    if (CHECK(vk_buffer_alloc(ctx, VP_POOL_ACTIVATIONS, 64, &small) == VP_OK) &&
        CHECK(vk_recorder_create(ctx, 0, &rec) == VP_OK) &&
        CHECK(vk_recorder_begin(rec) == VP_OK)) {
        struct kernel_cross_entropy_config c = {4, 100, IGNORE, 0.0f};
        CHECK(kernel_cross_entropy_forward(ctx, rec, &small, &small, NULL, &small, &small, &small,
                                           &c) == VP_ERROR_INVALID_ARGUMENT);
        c = (struct kernel_cross_entropy_config){2, 2, IGNORE, 1.5f};
        CHECK(kernel_cross_entropy_forward(ctx, rec, &small, &small, NULL, &small, &small, &small,
                                           &c) == VP_ERROR_INVALID_ARGUMENT);
        c = (struct kernel_cross_entropy_config){2, 0, IGNORE, 0.0f};
        CHECK(kernel_cross_entropy_backward(ctx, rec, &small, &small, &small, &small, &small, 1.0f,
                                            &c) == VP_ERROR_INVALID_ARGUMENT);
        CHECK(vk_recorder_end(rec) == VP_OK);
    }
    vk_recorder_destroy(rec);
    vk_buffer_free(ctx, &small);
    vp_context_destroy(ctx);
}

VT_MAIN(TH_CASE(plain), TH_CASE(label_smoothing), TH_CASE(large_logits), TH_CASE(edge_shapes),
        TH_CASE(all_rows_ignored), TH_CASE(in_place_backward),
        TH_CASE(logits_across_binding_ranges), TH_CASE(replay_with_new_targets),
        TH_CASE(deterministic), TH_CASE(rejects_bad_arguments))
