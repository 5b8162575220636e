/* Elementwise kernels. */
#include "kernels.h"

#include <stdio.h>

struct scale_add_push {
    uint32_t n;
    float a, b;
    uint32_t pad;
};
_Static_assert(sizeof(struct scale_add_push) == 16, "matches Push in shaders/scale_add.comp");

const char *vp_dtype_name(enum vp_dtype t) {
    switch (t) {
    case VP_DTYPE_F32: return "f32";
    case VP_DTYPE_F16: return "f16";
    case VP_DTYPE_BF16: return "bf16";
    }
    return "unknown";
}

uint32_t kernel_elementwise_workgroup(const vp_context *ctx) {
    uint32_t wg = 256;
    uint32_t lim = vp_context_limits(ctx)->max_workgroup_invocations;
    uint32_t dev = vp_context_device(ctx)->max_workgroup_size[0];
    if (wg > lim) wg = lim;
    if (wg > dev) wg = dev;
    return wg;
}

void kernel_grid_1d(const vp_context *ctx, uint64_t groups, uint32_t *gx, uint32_t *gy) {
    uint32_t maxx = vp_context_device(ctx)->max_workgroup_count[0];
    if (groups == 0) groups = 1;
    *gx = groups < maxx ? (uint32_t)groups : maxx;
    *gy = (uint32_t)((groups + *gx - 1) / *gx);
}

vp_status kernel_scale_add(vp_context *ctx, struct vk_recorder *rec, const struct vk_buffer *y,
                           const struct vk_buffer *x, uint64_t n, float a, float b) {
    if (n == 0) return VP_OK;
    if (x->size < n * 4 || y->size < n * 4)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "scale_add: %llu floats do not fit the buffers",
                       (unsigned long long)n);
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_kernel_desc desc = {
        .shader = "scale_add.comp",
        .bindings = 2,
        .push_size = sizeof(struct scale_add_push),
        .spec_count = 1,
        .spec = {wg},
    };
    struct vk_pipeline *pipe;
    vp_status s = vk_pipeline_get(ctx, &desc, &pipe);
    if (s != VP_OK) return s;
    /* x and y are both fp32 arrays of n: the same relative ranges fit both. */
    struct vk_buffer span = *x;
    span.size = n * 4;
    struct vk_range ranges[64];
    uint32_t count = vk_buffer_ranges(ctx, &span, 4, ranges, 64);
    if (count > 64) return vp_fail(VP_ERROR_UNSUPPORTED, "scale_add: tensor too large to split");
    for (uint32_t i = 0; i < count && s == VP_OK; i++) {
        uint64_t elems = ranges[i].size / 4;
        struct scale_add_push push = {(uint32_t)elems, a, b, 0};
        struct vk_bind binds[2] = {
            {x, ranges[i].offset, ranges[i].size, VK_ACCESS_READ},
            {y, ranges[i].offset, ranges[i].size, VK_ACCESS_WRITE},
        };
        uint32_t gx, gy;
        kernel_grid_1d(ctx, (elems + wg - 1) / wg, &gx, &gy);
        s = vk_recorder_dispatch(rec, pipe, binds, 2, &push, gx, gy, 1);
    }
    return s;
}

/* ---- helpers shared by the pointwise, norm and embedding wrappers ------------------ */

static uint64_t gcd_u64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

uint64_t kernel_rows_per_dispatch(const vp_context *ctx, uint64_t rows, const uint64_t *row_bytes,
                                  uint32_t count, uint64_t multiple) {
    const uint64_t range = ctx->limits.storage_buffer_range, align = ctx->binding_alignment;
    uint64_t step = multiple ? multiple : 1, most = UINT64_MAX;
    bool one = true;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t rb = row_bytes[i];
        if (rb == 0) continue;
        if (rows > range / rb) one = false;
        /* A chunk of k rows starts aligned for this tensor iff k·rb is a
         * multiple of the alignment. */
        uint64_t need = align / gcd_u64(rb, align);
        step = step / gcd_u64(step, need) * need;
        if (range / rb < most) most = range / rb;
    }
    if (one) return rows;
    return most / step * step;
}

struct vk_bind kernel_bind_rows(const struct vk_buffer *buf, uint64_t row_bytes, uint64_t r0,
                                uint64_t rows, enum vk_access access) {
    struct vk_bind b = {buf, r0 * row_bytes, (rows * row_bytes + 3) & ~(uint64_t)3, access};
    return b;
}

vp_status kernel_check_tensor(const vp_context *ctx, const struct vk_buffer *buf, uint64_t bytes,
                              bool whole_binding, const char *op, const char *what) {
    if (!buf || !buf->buffer) return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: no %s tensor", op, what);
    uint64_t need = (bytes + 3) & ~(uint64_t)3;
    if (buf->size < need)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT,
                       "%s: %s holds %llu bytes, the shape needs %llu (16-bit tensors are read "
                       "as whole 32-bit words)",
                       op, what, (unsigned long long)buf->size, (unsigned long long)need);
    if (whole_binding && need > ctx->limits.storage_buffer_range)
        return vp_fail(VP_ERROR_UNSUPPORTED,
                       "%s: %s (%llu bytes) must fit one binding range (%llu bytes)", op, what,
                       (unsigned long long)need,
                       (unsigned long long)ctx->limits.storage_buffer_range);
    return VP_OK;
}

vp_status kernel_pipeline(vp_context *ctx, const char *shader, const char *defines,
                          uint32_t bindings, uint32_t push_size, uint32_t workgroup,
                          struct vk_pipeline **out) {
    struct vk_kernel_desc desc = {
        .shader = shader,
        .defines = defines,
        .bindings = bindings,
        .push_size = push_size,
        .spec_count = 1,
        .spec = {workgroup},
    };
    return vk_pipeline_get(ctx, &desc, out);
}

enum kernel_rows_variant kernel_rows_choose(const vp_context *ctx, enum kernel_rows_variant v) {
    if (v != KERNEL_ROWS_AUTO) return v;
    return vp_context_device(ctx)->type == VP_DEVICE_CPU ? KERNEL_ROWS_SERIAL
                                                         : KERNEL_ROWS_WORKGROUP;
}

const char *kernel_rows_variant_name(enum kernel_rows_variant v) {
    switch (v) {
    case KERNEL_ROWS_AUTO: return "auto";
    case KERNEL_ROWS_WORKGROUP: return "workgroup";
    case KERNEL_ROWS_SERIAL: return "serial";
    }
    return "unknown";
}

/* ---- residual add, scale, sigmoid gate --------------------------------------------- */

/* Shared layout of the 1-D kernels' push blocks: the first word is the
 * element count of the dispatch. */
struct residual_push {
    uint32_t n;
    float s;
    uint32_t pad[2];
};
_Static_assert(sizeof(struct residual_push) == 16, "matches Push in shaders/residual_add.comp");

vp_status kernel_add_scaled_forward(vp_context *ctx, struct vk_recorder *rec,
                                    const struct vk_buffer *y, const struct vk_buffer *a,
                                    const struct vk_buffer *b, float s, uint64_t n) {
    static const char op[] = "add_forward";
    if (n == 0) return VP_OK;
    vp_status st = kernel_check_tensor(ctx, y, n * 4, false, op, "y");
    if (st == VP_OK) st = kernel_check_tensor(ctx, a, n * 4, false, op, "a");
    if (st == VP_OK) st = kernel_check_tensor(ctx, b, n * 4, false, op, "b");
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_pipeline *pipe = NULL;
    if (st == VP_OK)
        st = kernel_pipeline(ctx, "residual_add.comp", NULL, 3, sizeof(struct residual_push), wg,
                             &pipe);
    const uint64_t rb[1] = {4};
    uint64_t chunk = kernel_rows_per_dispatch(ctx, n, rb, 1, 0);
    for (uint64_t i0 = 0; i0 < n && st == VP_OK; i0 += chunk) {
        uint64_t m = n - i0 < chunk ? n - i0 : chunk;
        struct residual_push push = {(uint32_t)m, s, {0, 0}};
        struct vk_bind binds[3] = {
            kernel_bind_rows(a, 4, i0, m, VK_ACCESS_READ),
            kernel_bind_rows(b, 4, i0, m, VK_ACCESS_READ),
            kernel_bind_rows(y, 4, i0, m, VK_ACCESS_WRITE),
        };
        uint32_t gx, gy;
        kernel_grid_1d(ctx, (m + wg - 1) / wg, &gx, &gy);
        st = vk_recorder_dispatch(rec, pipe, binds, 3, &push, gx, gy, 1);
    }
    return st;
}

vp_status kernel_add_forward(vp_context *ctx, struct vk_recorder *rec, const struct vk_buffer *y,
                             const struct vk_buffer *a, const struct vk_buffer *b, uint64_t n) {
    return kernel_add_scaled_forward(ctx, rec, y, a, b, 1.0f, n);
}

static bool same_piece(const struct vk_buffer *a, const struct vk_buffer *b) {
    return a->buffer == b->buffer && a->offset == b->offset;
}

vp_status kernel_add_backward(vp_context *ctx, struct vk_recorder *rec, const struct vk_buffer *da,
                              const struct vk_buffer *db, const struct vk_buffer *dy, uint64_t n) {
    static const char op[] = "add_backward";
    if (n == 0) return VP_OK;
    vp_status st = kernel_check_tensor(ctx, dy, n * 4, false, op, "dy");
    if (st == VP_OK && da) st = kernel_check_tensor(ctx, da, n * 4, false, op, "da");
    if (st == VP_OK && db) st = kernel_check_tensor(ctx, db, n * 4, false, op, "db");
    /* A gradient that is dy itself needs no copy (and a copy onto itself is
     * not allowed). */
    if (st == VP_OK && da && !same_piece(da, dy)) st = vk_recorder_copy(rec, da, 0, dy, 0, n * 4);
    if (st == VP_OK && db && !same_piece(db, dy)) st = vk_recorder_copy(rec, db, 0, dy, 0, n * 4);
    return st;
}

vp_status kernel_scale_forward(vp_context *ctx, struct vk_recorder *rec, const struct vk_buffer *y,
                               const struct vk_buffer *x, float s, uint64_t n) {
    return kernel_scale_add(ctx, rec, y, x, n, s, 0.0f);
}

vp_status kernel_scale_backward(vp_context *ctx, struct vk_recorder *rec,
                                const struct vk_buffer *dx, const struct vk_buffer *dy, float s,
                                uint64_t n) {
    return kernel_scale_add(ctx, rec, dx, dy, n, s, 0.0f);
}

struct gate_forward_push {
    uint32_t n, C, G, col0;
};
_Static_assert(sizeof(struct gate_forward_push) == 16, "matches Push in shaders/gate_forward.comp");
struct gate_pass1_push {
    uint32_t rows, C, G, block0;
};
_Static_assert(sizeof(struct gate_pass1_push) == 16, "matches PASS 1 Push in gate_backward.comp");
struct gate_pass2_push {
    uint32_t blocks, C, G, pad;
};
_Static_assert(sizeof(struct gate_pass2_push) == 16, "matches PASS 2 Push in gate_backward.comp");

/* Rows per block of the column partials (gate_backward.comp's RB). */
enum { GATE_BLOCK_ROWS = 64 };

static vp_status gate_check(vp_context *ctx, const char *op, uint32_t N, uint32_t C, uint32_t G,
                            const struct vk_buffer *g) {
    if (G != 1 && G != C)
        return vp_fail(VP_ERROR_INVALID_ARGUMENT, "%s: the gate has %u values; want 1 or C = %u",
                       op, G, C);
    (void)N;
    return kernel_check_tensor(ctx, g, (uint64_t)G * 4, true, op, "g");
}

vp_status kernel_sigmoid_gate_forward(vp_context *ctx, struct vk_recorder *rec,
                                      const struct vk_buffer *y, const struct vk_buffer *h,
                                      const struct vk_buffer *d, const struct vk_buffer *g,
                                      uint32_t N, uint32_t C, uint32_t G) {
    static const char op[] = "sigmoid_gate_forward";
    uint64_t n = (uint64_t)N * C;
    if (n == 0) return VP_OK;
    vp_status st = gate_check(ctx, op, N, C, G, g);
    if (st == VP_OK) st = kernel_check_tensor(ctx, y, n * 4, false, op, "y");
    if (st == VP_OK) st = kernel_check_tensor(ctx, h, n * 4, false, op, "h");
    if (st == VP_OK) st = kernel_check_tensor(ctx, d, n * 4, false, op, "d");
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    struct vk_pipeline *pipe = NULL;
    if (st == VP_OK)
        st = kernel_pipeline(ctx, "gate_forward.comp", NULL, 4, sizeof(struct gate_forward_push),
                             wg, &pipe);
    const uint64_t rb[1] = {4};
    uint64_t chunk = kernel_rows_per_dispatch(ctx, n, rb, 1, 0);
    for (uint64_t i0 = 0; i0 < n && st == VP_OK; i0 += chunk) {
        uint64_t m = n - i0 < chunk ? n - i0 : chunk;
        struct gate_forward_push push = {(uint32_t)m, C, G, (uint32_t)(i0 % C)};
        struct vk_bind binds[4] = {
            kernel_bind_rows(h, 4, i0, m, VK_ACCESS_READ),
            kernel_bind_rows(d, 4, i0, m, VK_ACCESS_READ),
            {g, 0, (uint64_t)G * 4, VK_ACCESS_READ},
            kernel_bind_rows(y, 4, i0, m, VK_ACCESS_WRITE),
        };
        uint32_t gx, gy;
        kernel_grid_1d(ctx, (m + wg - 1) / wg, &gx, &gy);
        st = vk_recorder_dispatch(rec, pipe, binds, 4, &push, gx, gy, 1);
    }
    return st;
}

uint64_t kernel_sigmoid_gate_scratch_bytes(uint32_t N, uint32_t C) {
    uint64_t blocks = ((uint64_t)N + GATE_BLOCK_ROWS - 1) / GATE_BLOCK_ROWS;
    return (blocks ? blocks : 1) * C * 4;
}

/* Pass 1: dd and the per-block column partials of dy ⊙ d. */
static vp_status gate_pass1(vp_context *ctx, struct vk_recorder *rec, const struct vk_buffer *dd,
                            const struct vk_buffer *scratch, const struct vk_buffer *dy,
                            const struct vk_buffer *d, const struct vk_buffer *g, uint32_t N,
                            uint32_t C, uint32_t G) {
    static const char op[] = "sigmoid_gate_backward";
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    char defines[96];
    snprintf(defines, sizeof defines, "PASS=1\nHAS_DD=%d\nHAS_DG=%d\nRB=%d\n", dd != NULL,
             scratch != NULL, GATE_BLOCK_ROWS);
    struct vk_pipeline *pipe;
    vp_status st = kernel_pipeline(ctx, "gate_backward.comp", defines, 5,
                                   sizeof(struct gate_pass1_push), wg, &pipe);
    const uint64_t rb[3] = {(uint64_t)C * 4, (uint64_t)C * 4, dd ? (uint64_t)C * 4 : 0};
    uint64_t chunk = kernel_rows_per_dispatch(ctx, N, rb, 3, GATE_BLOCK_ROWS);
    if (st == VP_OK && chunk == 0)
        return vp_fail(VP_ERROR_UNSUPPORTED, "%s: rows of %u channels do not fit the binding range",
                       op, C);
    for (uint64_t r0 = 0; r0 < N && st == VP_OK; r0 += chunk) {
        uint64_t rows = N - r0 < chunk ? N - r0 : chunk;
        struct gate_pass1_push push = {(uint32_t)rows, C, G, (uint32_t)(r0 / GATE_BLOCK_ROWS)};
        struct vk_bind dy_b = kernel_bind_rows(dy, (uint64_t)C * 4, r0, rows, VK_ACCESS_READ);
        struct vk_bind binds[5] = {
            dy_b,
            kernel_bind_rows(d, (uint64_t)C * 4, r0, rows, VK_ACCESS_READ),
            {g, 0, (uint64_t)G * 4, VK_ACCESS_READ},
            /* Unused outputs are bound to dy, read-only: the shader was
             * compiled without the code that writes them. */
            dd ? kernel_bind_rows(dd, (uint64_t)C * 4, r0, rows, VK_ACCESS_WRITE) : dy_b,
            scratch ? (struct vk_bind){scratch, 0, kernel_sigmoid_gate_scratch_bytes(N, C),
                                       VK_ACCESS_WRITE}
                    : dy_b,
        };
        uint32_t blocks = (uint32_t)((rows + GATE_BLOCK_ROWS - 1) / GATE_BLOCK_ROWS);
        st = vk_recorder_dispatch(rec, pipe, binds, 5, &push, (C + wg - 1) / wg, blocks, 1);
    }
    return st;
}

vp_status kernel_sigmoid_gate_backward(vp_context *ctx, struct vk_recorder *rec,
                                       const struct vk_buffer *dh, const struct vk_buffer *dd,
                                       const struct vk_buffer *dg, const struct vk_buffer *scratch,
                                       const struct vk_buffer *dy, const struct vk_buffer *d,
                                       const struct vk_buffer *g, uint32_t N, uint32_t C,
                                       uint32_t G) {
    static const char op[] = "sigmoid_gate_backward";
    uint64_t n = (uint64_t)N * C;
    if (n == 0) return VP_OK;
    vp_status st = gate_check(ctx, op, N, C, G, g);
    if (st == VP_OK) st = kernel_check_tensor(ctx, dy, n * 4, false, op, "dy");
    if (st == VP_OK) st = kernel_check_tensor(ctx, d, n * 4, false, op, "d");
    if (st == VP_OK && dd) st = kernel_check_tensor(ctx, dd, n * 4, false, op, "dd");
    if (st == VP_OK && dg) st = kernel_check_tensor(ctx, dg, (uint64_t)G * 4, true, op, "dg");
    if (st == VP_OK && dg)
        st = kernel_check_tensor(ctx, scratch, kernel_sigmoid_gate_scratch_bytes(N, C), true, op,
                                 "scratch");
    if (st == VP_OK && dh) st = kernel_add_backward(ctx, rec, dh, NULL, dy, n);
    if (st != VP_OK || (!dd && !dg)) return st;
    st = gate_pass1(ctx, rec, dd, dg ? scratch : NULL, dy, d, g, N, C, G);
    if (st != VP_OK || !dg) return st;
    uint32_t wg = kernel_elementwise_workgroup(ctx);
    char defines[64];
    snprintf(defines, sizeof defines, "PASS=2\nSCALAR_GATE=%d\nWG=%u\n", G == 1 && C > 1, wg);
    struct vk_pipeline *pipe;
    st = kernel_pipeline(ctx, "gate_backward.comp", defines, 3, sizeof(struct gate_pass2_push), wg,
                         &pipe);
    uint32_t blocks = (uint32_t)((N + GATE_BLOCK_ROWS - 1) / GATE_BLOCK_ROWS);
    struct gate_pass2_push push = {blocks, C, G, 0};
    struct vk_bind binds[3] = {
        {scratch, 0, kernel_sigmoid_gate_scratch_bytes(N, C), VK_ACCESS_READ},
        {g, 0, (uint64_t)G * 4, VK_ACCESS_READ},
        {dg, 0, (uint64_t)G * 4, VK_ACCESS_READ_WRITE},
    };
    uint32_t groups = G == 1 && C > 1 ? 1 : (C + wg - 1) / wg;
    if (st == VP_OK) st = vk_recorder_dispatch(rec, pipe, binds, 3, &push, groups, 1, 1);
    return st;
}
