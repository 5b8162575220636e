#include "dectest.h"
#include "harness.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool dectest_write_model(const struct refd *m, const char *dir, const char *config) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!CHECKF(vp_file_write_atomic(path, config, strlen(config)) == VP_OK, "%s", vp_last_error())) return false;
    const int count = refd_tensor_count(m);
    struct io_tensor_out *out = calloc((size_t)count, sizeof *out);
    float **data = calloc((size_t)count, sizeof *data);
    for (int k = 0; k < count; k++) {
        const struct refm_tensor *t = refd_tensor_at((struct refd *)m, k);
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

void dectest_remove_model(const char *dir) {
    if (!dir[0]) return;
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    CHECKF(rmdir(dir) == 0, "removing %s", dir);
}
