#include "dectest.h"
#include "harness.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool dectest_write_model(const struct refd *m, const char *dir, const char *config) {
    return dectest_write_tensors(&m->tensors, dir, config);
}

bool dectest_write_tensors(const struct ref_tensors *ts, const char *dir, const char *config) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!CHECKF(vp_file_write_atomic(path, config, strlen(config)) == VP_OK, "%s", vp_last_error())) return false;
    const int count = ts->count;
    struct io_tensor_out *out = calloc((size_t)count, sizeof *out);
    float **data = calloc((size_t)count, sizeof *data);
    for (int k = 0; k < count; k++) {
        const struct refm_tensor *t = ref_tensors_at(ts, k);
        data[k] = malloc(t->n * sizeof **data);
        for (size_t i = 0; i < t->n; i++) data[k][i] = (float)t->data[i];
        out[k] = (struct io_tensor_out){t->name, IO_DTYPE_F32, t->ndim, {0}, data[k]};
        for (int i = 0; i < t->ndim; i++) out[k].shape[i] = t->shape[i];
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    bool ok = CHECKF(io_safetensors_write(path, out, (size_t)count, NULL) == VP_OK, "%s", vp_last_error());
    for (int k = 0; k < count; k++) free(data[k]);
    free(data);
    free(out);
    return ok;
}

bool dectest_check_normwise(const float *got, const double *want, size_t n, double tol, const char *what,
                            double *worst_used, double floor) {
    double err = 0.0, scale = floor;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - want[i]);
        if (!(e <= err)) {
            err = e;
            at = i;
        }
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    const double used = scale > 0 ? err / (tol * scale) : err;
    if (worst_used && !(used <= *worst_used)) *worst_used = used;
    return CHECKF(err <= tol * scale, "%s: |got - want| = %.3g at %zu (got %.9g, want %.9g), max|want| = %.3g, "
                  "tolerance %.3g relative", what, err, at, n ? (double)got[at] : 0.0, n ? want[at] : 0.0, scale, tol);
}

bool dectest_check_same_grad(const float *plain, const float *ck, size_t n, const char *what, const char *name,
                             bool want_nonzero) {
    size_t at = 0;
    while (at < n && memcmp(&plain[at], &ck[at], sizeof *plain) == 0) at++;
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) nonzero |= plain[i] != 0.0f;
    bool ok = CHECKF(at == n, "%s: d %s[%zu] is %.9g without checkpointing, %.9g with", what, name, at,
                     at < n ? (double)plain[at] : 0.0, at < n ? (double)ck[at] : 0.0);
    if (want_nonzero) ok &= CHECKF(nonzero, "%s: d %s is all zero (the case tests nothing)", what, name);
    return ok;
}

void dectest_pools_in_use(vp_context *ctx, uint64_t in_use[VP_POOL_COUNT]) {
    for (int p = 0; p < VP_POOL_COUNT; p++) {
        vp_pool_stats st;
        vp_pool_stats_get(ctx, (vp_pool)p, &st);
        in_use[p] = st.in_use;
    }
}

bool dectest_pools_grew_by(vp_context *ctx, const uint64_t before[VP_POOL_COUNT], const uint64_t plan[VP_POOL_COUNT],
                           const char *what) {
    uint64_t now[VP_POOL_COUNT];
    dectest_pools_in_use(ctx, now);
    bool ok = true;
    for (int p = 0; p < VP_POOL_COUNT; p++)
        ok &= CHECKF(now[p] - before[p] == plan[p], "%s: took %llu bytes of the %s pool, the plan says %llu", what,
                     (unsigned long long)(now[p] - before[p]), vp_pool_name((vp_pool)p), (unsigned long long)plan[p]);
    return ok;
}

bool dectest_remove_model(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    return CHECK(rmdir(dir) == 0);
}
