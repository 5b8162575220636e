#include "torchtest.h"

#include "safetensors.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool torch_sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return CHECKF(rc == 0, "command failed (%d): %s", rc, cmd);
}

const char *torch_python(void) {
    const char *p = getenv("VKPEFT_TORCH_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

bool torch_close_normwise(const float *got, const double *want, size_t n, double tol, double floor,
                          const char *what, const char *file, int line, double *ratio) {
    double num = 0, den = 0, maxw = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
        if (fabs(want[i]) > maxw) maxw = fabs(want[i]);
    }
    double bound = tol * sqrt(den) + floor;
    *ratio = sqrt(num) / bound;
    return th_check(sqrt(num) <= bound, file, line, "%s: |error| %.3g > bound %.3g (|want| %.3g, max %.3g)",
                    what, sqrt(num), bound, sqrt(den), maxw);
}

bool torch_randomize_delta(struct encoder *enc, const struct delta_spec *spec, uint64_t seed,
                           const char *delta_path, const char *spec_path) {
    struct delta_params *p = encoder_params(enc);
    struct io_tensor_out *out = calloc((size_t)p->count, sizeof *out);
    float **vals = calloc((size_t)p->count, sizeof *vals);
    bool ok = out && vals;
    uint64_t st = seed;
    for (int i = 0; ok && i < p->count; i++) {
        const struct delta_param *t = &p->items[i];
        vals[i] = malloc(t->n * sizeof **vals);
        if (!(ok = vals[i] != NULL)) break;
        for (uint64_t k = 0; k < t->n; k++) vals[i][k] = (float)th_rand_uniform(&st, -0.5, 0.5);
        ok = CHECK(encoder_tensor_write(enc, t->name, vals[i], t->n) == VP_OK);
        out[i] = (struct io_tensor_out){t->name, IO_DTYPE_F32, t->ndim, {0}, vals[i]};
        for (int d = 0; d < t->ndim; d++) out[i].shape[d] = t->shape[d];
    }
    if (ok) ok = CHECKF(io_safetensors_write(delta_path, out, (size_t)p->count, NULL) == VP_OK, "%s", vp_last_error());
    for (int i = 0; vals && i < p->count; i++) free(vals[i]);
    free(vals);
    free(out);
    char *sj = delta_spec_to_json(spec);
    if (ok) ok = CHECK(sj && vp_file_write_atomic(spec_path, sj, strlen(sj)) == VP_OK);
    free(sj);
    return ok;
}
