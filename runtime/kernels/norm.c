/* LayerNorm and RMSNorm, forward and backward (shaders/layernorm_*.comp; an
 * RMSNorm is the LayerNorm shaders with RMS=1: no centring, no bias).
 * Row-wise: one row of x must fit a binding range; longer tensors are split
 * by rows. Parameter gradients use per-block partials in caller-provided
 * scratch and a fixed-order second pass. */
#include "kernels.h"

#include <stdio.h>

struct norm_push {
    uint32_t rows, C;
    float eps;
    uint32_t pad;
};
_Static_assert(sizeof(struct norm_push) == 16, "matches Push in shaders/layernorm_forward.comp");

struct norm_params_push {
    uint32_t rows, C, block0, blocks;
};
_Static_assert(sizeof(struct norm_params_push) == 16, "matches Push in layernorm_params.comp");

/* Rows per partial block (layernorm_params.comp's RB). */
enum { NORM_BLOCK_ROWS = 64 };

/* Workgroup width of the WORKGROUP variant: a power of two within the limits. */
static uint32_t row_workgroup(const vp_context *ctx) {
    uint32_t wg = kernel_elementwise_workgroup(ctx), p = 1;
    while (p * 2 <= wg) p *= 2;
    return p;
}

/* Invocations per workgroup of the SERIAL variant (one row each). */
static uint32_t serial_workgroup(const vp_context *ctx) {
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    return wg < 64 ? wg : 64;
}

uint64_t kernel_norm_scratch_bytes(uint32_t N, uint32_t C) {
    uint64_t blocks = ((uint64_t)N + NORM_BLOCK_ROWS - 1) / NORM_BLOCK_ROWS;
    return 2 * (blocks ? blocks : 1) * C * 4;
}

static vp_status check_dtype(enum vp_dtype t, const char *op) {
    if ((unsigned)t > VP_DTYPE_BF16)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: unknown weight type %d", op, (int)t);
    return VP_OK;
}

/* A binding of a row-wise shader: split by rows (per_row bytes each) or,
 * when per_row is 0, bound whole (`whole` bytes). */
struct row_arg {
    const struct vk_buffer *buf;
    uint64_t per_row, whole;
    enum vk_access access;
};

/* Dispatches one row-wise norm shader (forward or backward) over N rows,
 * split where the binding range requires; args in shader binding order. */
static vp_status record_rows(vp_context *ctx, struct vk_recorder *rec, const char *op,
                             const char *shader, const char *defines, enum kernel_rows_variant v,
                             const struct row_arg *args, uint32_t count, uint32_t N, uint32_t C,
                             float eps) {
    uint32_t wg = v == KERNEL_ROWS_SERIAL ? serial_workgroup(ctx) : row_workgroup(ctx);
    char all[192];
    snprintf(all, sizeof all, "%sSERIAL=%d\nWG=%u\n", defines, v == KERNEL_ROWS_SERIAL, wg);
    struct vk_pipeline *pipe;
    vp_status st = kernel_pipeline(ctx, shader, all, count, sizeof(struct norm_push), wg, &pipe);
    uint64_t per_row[8];
    for (uint32_t i = 0; i < count; i++) per_row[i] = args[i].per_row;
    uint64_t chunk = kernel_rows_per_dispatch(ctx, N, per_row, count, 0);
    if (st == VP_OK && chunk == 0)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: a row of %u values does not fit the binding range",
                       op, C);
    for (uint64_t r0 = 0; r0 < N && st == VP_OK; r0 += chunk) {
        uint64_t rows = N - r0 < chunk ? N - r0 : chunk;
        struct norm_push push = {(uint32_t)rows, C, eps, 0};
        struct vk_bind binds[8];
        for (uint32_t i = 0; i < count; i++)
            binds[i] = args[i].per_row
                           ? kernel_bind_rows(args[i].buf, args[i].per_row, r0, rows, args[i].access)
                           : (struct vk_bind){args[i].buf, 0, args[i].whole, args[i].access};
        uint64_t groups = v == KERNEL_ROWS_SERIAL ? (rows + wg - 1) / wg : rows;
        uint32_t gx, gy;
        kernel_grid_1d(ctx, groups, &gx, &gy);
        st = vk_recorder_dispatch(rec, pipe, binds, count, &push, gx, gy, 1);
    }
    return st;
}

/* Whole-binding size of a weight vector: C values of type t, in words. */
static uint64_t weight_bytes(uint32_t C, enum vp_dtype t) {
    return ((uint64_t)C * vp_dtype_size(t) + 3) & ~(uint64_t)3;
}

static vp_status norm_forward(vp_context *ctx, struct vk_recorder *rec, bool rms, const char *op,
                              const struct vk_buffer *y, const struct vk_buffer *mean,
                              const struct vk_buffer *rstd, const struct vk_buffer *x,
                              const struct vk_buffer *gamma, const struct vk_buffer *beta,
                              uint32_t N, uint32_t C, float eps, enum vp_dtype wtype,
                              enum kernel_rows_variant variant) {
    if (N == 0) return VP_OK;
    if (C == 0) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: C = 0", op);
    uint64_t n = (uint64_t)N * C, wb = weight_bytes(C, wtype);
    vp_status st = check_dtype(wtype, op);
    if (st == VP_OK) st = kernel_check_tensor(ctx, y, n * 4, false, op, "y");
    if (st == VP_OK) st = kernel_check_tensor(ctx, x, n * 4, false, op, "x");
    if (st == VP_OK) st = kernel_check_tensor(ctx, rstd, (uint64_t)N * 4, false, op, "rstd");
    if (st == VP_OK && !rms) st = kernel_check_tensor(ctx, mean, (uint64_t)N * 4, false, op, "mean");
    if (st == VP_OK) st = kernel_check_tensor(ctx, gamma, wb, true, op, rms ? "w" : "gamma");
    if (st == VP_OK && beta) st = kernel_check_tensor(ctx, beta, wb, true, op, "beta");
    if (st != VP_OK) return st;
    const uint64_t row = (uint64_t)C * 4;
    const struct row_arg args[6] = {
        {x, row, 0, VK_ACCESS_READ},     {y, row, 0, VK_ACCESS_WRITE},
        {rstd, 4, 0, VK_ACCESS_WRITE},   {gamma, 0, wb, VK_ACCESS_READ},
        {mean, 4, 0, VK_ACCESS_WRITE},   {beta, 0, wb, VK_ACCESS_READ},
    };
    uint32_t count = rms ? 4 : beta ? 6 : 5;
    char defines[96];
    snprintf(defines, sizeof defines, "RMS=%d\nWDTYPE=%d\nHAS_BETA=%d\n", rms, (int)wtype,
             beta != NULL);
    return record_rows(ctx, rec, op, "layernorm_forward.comp", defines,
                       kernel_rows_choose(ctx, variant), args, count, N, C, eps);
}

vp_status kernel_layernorm_forward(vp_context *ctx, struct vk_recorder *rec,
                                   const struct vk_buffer *y, const struct vk_buffer *mean,
                                   const struct vk_buffer *rstd, const struct vk_buffer *x,
                                   const struct vk_buffer *gamma, const struct vk_buffer *beta,
                                   uint32_t N, uint32_t C, float eps, enum vp_dtype wtype,
                                   enum kernel_rows_variant variant) {
    return norm_forward(ctx, rec, false, "layernorm_forward", y, mean, rstd, x, gamma, beta, N, C,
                        eps, wtype, variant);
}

vp_status kernel_rmsnorm_forward(vp_context *ctx, struct vk_recorder *rec,
                                 const struct vk_buffer *y, const struct vk_buffer *rstd,
                                 const struct vk_buffer *x, const struct vk_buffer *w, uint32_t N,
                                 uint32_t C, float eps, enum vp_dtype wtype,
                                 enum kernel_rows_variant variant) {
    return norm_forward(ctx, rec, true, "rmsnorm_forward", y, NULL, rstd, x, w, NULL, N, C, eps,
                        wtype, variant);
}

/* dγ (and dβ) += column sums of dy ⊙ x̂ (and dy): pass 1 writes per-block
 * partials, pass 2 sums them in block order. */
static vp_status norm_params(vp_context *ctx, struct vk_recorder *rec, bool rms, const char *op,
                             const struct vk_buffer *dgamma, const struct vk_buffer *dbeta,
                             const struct vk_buffer *scratch, const struct vk_buffer *dy,
                             const struct vk_buffer *x, const struct vk_buffer *mean,
                             const struct vk_buffer *rstd, uint32_t N, uint32_t C) {
    uint64_t scratch_bytes = kernel_norm_scratch_bytes(N, C);
    vp_status st = kernel_check_tensor(ctx, scratch, scratch_bytes, true, op, "scratch");
    if (st == VP_OK && dgamma)
        st = kernel_check_tensor(ctx, dgamma, (uint64_t)C * 4, true, op, rms ? "dw" : "dgamma");
    if (st == VP_OK && dbeta) st = kernel_check_tensor(ctx, dbeta, (uint64_t)C * 4, true, op, "dbeta");
    if (st != VP_OK) return st;
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    uint32_t blocks = (uint32_t)((N + NORM_BLOCK_ROWS - 1) / NORM_BLOCK_ROWS);
    char defines[96];
    snprintf(defines, sizeof defines, "PASS=1\nRMS=%d\nRB=%d\n", rms, NORM_BLOCK_ROWS);
    struct vk_pipeline *pipe;
    uint32_t count = rms ? 4 : 5;
    st = kernel_pipeline(ctx, "layernorm_params.comp", defines, count,
                         sizeof(struct norm_params_push), wg, &pipe);
    const uint64_t per_row[5] = {(uint64_t)C * 4, (uint64_t)C * 4, 4, 0, 4};
    uint64_t chunk = kernel_rows_per_dispatch(ctx, N, per_row, count, NORM_BLOCK_ROWS);
    if (st == VP_OK && chunk == 0)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: rows of %u values do not fit the binding range",
                       op, C);
    for (uint64_t r0 = 0; r0 < N && st == VP_OK; r0 += chunk) {
        uint64_t rows = N - r0 < chunk ? N - r0 : chunk;
        struct norm_params_push push = {(uint32_t)rows, C, (uint32_t)(r0 / NORM_BLOCK_ROWS),
                                        blocks};
        struct vk_bind binds[5] = {
            kernel_bind_rows(dy, (uint64_t)C * 4, r0, rows, VK_ACCESS_READ),
            kernel_bind_rows(x, (uint64_t)C * 4, r0, rows, VK_ACCESS_READ),
            kernel_bind_rows(rstd, 4, r0, rows, VK_ACCESS_READ),
            {scratch, 0, scratch_bytes, VK_ACCESS_WRITE},
            rms ? (struct vk_bind){0} : kernel_bind_rows(mean, 4, r0, rows, VK_ACCESS_READ),
        };
        uint32_t groups_y = (uint32_t)((rows + NORM_BLOCK_ROWS - 1) / NORM_BLOCK_ROWS);
        st = vk_recorder_dispatch(rec, pipe, binds, count, &push, (C + wg - 1) / wg, groups_y, 1);
    }
    if (st != VP_OK) return st;
    snprintf(defines, sizeof defines, "PASS=2\nRMS=%d\nHAS_DG=%d\nHAS_DB=%d\n", rms,
             dgamma != NULL, dbeta != NULL);
    st = kernel_pipeline(ctx, "layernorm_params.comp", defines, 3, sizeof(struct norm_params_push),
                         wg, &pipe);
    struct norm_params_push push = {0, C, 0, blocks};
    struct vk_bind part = {scratch, 0, scratch_bytes, VK_ACCESS_READ};
    struct vk_bind binds[3] = {
        part,
        dgamma ? (struct vk_bind){dgamma, 0, (uint64_t)C * 4, VK_ACCESS_READ_WRITE} : part,
        dbeta ? (struct vk_bind){dbeta, 0, (uint64_t)C * 4, VK_ACCESS_READ_WRITE} : part,
    };
    uint32_t gx, gy;
    kernel_grid_1d(ctx, (C + wg - 1) / wg, &gx, &gy);
    if (st == VP_OK) st = vk_recorder_dispatch(rec, pipe, binds, 3, &push, gx, gy, 1);
    return st;
}

static vp_status norm_backward(vp_context *ctx, struct vk_recorder *rec, bool rms, const char *op,
                               const struct vk_buffer *dx, const struct vk_buffer *dgamma,
                               const struct vk_buffer *dbeta, const struct vk_buffer *scratch,
                               const struct vk_buffer *dy, const struct vk_buffer *x,
                               const struct vk_buffer *mean, const struct vk_buffer *rstd,
                               const struct vk_buffer *gamma, uint32_t N, uint32_t C,
                               enum vp_dtype wtype, enum kernel_rows_variant variant) {
    if (N == 0) return VP_OK;
    if (C == 0) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: C = 0", op);
    uint64_t n = (uint64_t)N * C;
    vp_status st = check_dtype(wtype, op);
    if (st == VP_OK) st = kernel_check_tensor(ctx, dx, n * 4, false, op, "dx");
    if (st == VP_OK) st = kernel_check_tensor(ctx, dy, n * 4, false, op, "dy");
    if (st == VP_OK) st = kernel_check_tensor(ctx, x, n * 4, false, op, "x");
    if (st == VP_OK) st = kernel_check_tensor(ctx, rstd, (uint64_t)N * 4, false, op, "rstd");
    if (st == VP_OK && !rms) st = kernel_check_tensor(ctx, mean, (uint64_t)N * 4, false, op, "mean");
    if (st == VP_OK)
        st = kernel_check_tensor(ctx, gamma, weight_bytes(C, wtype), true, op, rms ? "w" : "gamma");
    if (st != VP_OK) return st;
    /* Parameter partials first: they read dy, which dx may overwrite. */
    if (dgamma || dbeta) {
        st = norm_params(ctx, rec, rms, op, dgamma, dbeta, scratch, dy, x, mean, rstd, N, C);
        if (st != VP_OK) return st;
    }
    const uint64_t row = (uint64_t)C * 4;
    const struct row_arg args[6] = {
        {dy, row, 0, VK_ACCESS_READ},  {x, row, 0, VK_ACCESS_READ},
        {rstd, 4, 0, VK_ACCESS_READ},  {gamma, 0, weight_bytes(C, wtype), VK_ACCESS_READ},
        {dx, row, 0, VK_ACCESS_WRITE}, {mean, 4, 0, VK_ACCESS_READ},
    };
    char defines[64];
    snprintf(defines, sizeof defines, "RMS=%d\nWDTYPE=%d\n", rms, (int)wtype);
    return record_rows(ctx, rec, op, "layernorm_backward.comp", defines,
                       kernel_rows_choose(ctx, variant), args, rms ? 5 : 6, N, C, 0.0f);
}

vp_status kernel_layernorm_backward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *dx, const struct vk_buffer *dgamma,
                                    const struct vk_buffer *dbeta, const struct vk_buffer *scratch,
                                    const struct vk_buffer *dy, const struct vk_buffer *x,
                                    const struct vk_buffer *mean, const struct vk_buffer *rstd,
                                    const struct vk_buffer *gamma, uint32_t N, uint32_t C,
                                    enum vp_dtype wtype, enum kernel_rows_variant variant) {
    return norm_backward(ctx, rec, false, "layernorm_backward", dx, dgamma, dbeta, scratch, dy, x,
                         mean, rstd, gamma, N, C, wtype, variant);
}

vp_status kernel_rmsnorm_backward(vp_context *ctx, struct vk_recorder *rec,
                                  const struct vk_buffer *dx, const struct vk_buffer *dw,
                                  const struct vk_buffer *scratch, const struct vk_buffer *dy,
                                  const struct vk_buffer *x, const struct vk_buffer *rstd,
                                  const struct vk_buffer *w, uint32_t N, uint32_t C,
                                  enum vp_dtype wtype, enum kernel_rows_variant variant) {
    return norm_backward(ctx, rec, true, "rmsnorm_backward", dx, dw, NULL, scratch, dy, x, NULL,
                         rstd, w, N, C, wtype, variant);
}
