/* Pointwise activations and SwiGLU. Each backward takes the forward's input
 * x (not its output) so every derivative is written in terms of x. */
#include "ref.h"

#include <math.h>

/* √(2/π) and 1/√(2π), spelled out to full double precision. */
static const double SQRT_2_OVER_PI = 0.79788456080286535588;
static const double INV_SQRT_2PI = 0.39894228040143267794;
static const double GELU_TANH_CUBIC = 0.044715;

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Standard normal CDF Φ and density φ. */
static double normal_cdf(double x) { return 0.5 * (1.0 + erf(x / sqrt(2.0))); }
static double normal_pdf(double x) { return INV_SQRT_2PI * exp(-0.5 * x * x); }

static double gelu(double x) { return x * normal_cdf(x); }
static double gelu_grad(double x) { return normal_cdf(x) + x * normal_pdf(x); }

static double gelu_tanh_inner(double x) {
    return SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x);
}
static double gelu_tanh(double x) { return 0.5 * x * (1.0 + tanh(gelu_tanh_inner(x))); }
static double gelu_tanh_grad(double x) {
    double th = tanh(gelu_tanh_inner(x));
    double inner_grad = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_CUBIC * x * x);
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * inner_grad;
}

static double relu(double x) { return x > 0.0 ? x : 0.0; }
static double relu_grad(double x) { return x > 0.0 ? 1.0 : 0.0; }

static double silu(double x) { return x * sigmoid(x); }
static double silu_grad(double x) {
    double s = sigmoid(x);
    return s * (1.0 + x * (1.0 - s));
}

static double tanh_grad(double x) {
    double th = tanh(x);
    return 1.0 - th * th;
}

static void map(double *y, const double *x, size_t n, double (*f)(double)) {
    for (size_t i = 0; i < n; i++) y[i] = f(x[i]);
}

/* dx = dy ⊙ f'(x). */
static void map_grad(double *dx, const double *dy, const double *x, size_t n,
                     double (*fprime)(double)) {
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * fprime(x[i]);
}

void ref_gelu_forward(double *y, const double *x, size_t n) { map(y, x, n, gelu); }
void ref_gelu_backward(double *dx, const double *dy, const double *x, size_t n) {
    map_grad(dx, dy, x, n, gelu_grad);
}

void ref_gelu_tanh_forward(double *y, const double *x, size_t n) { map(y, x, n, gelu_tanh); }
void ref_gelu_tanh_backward(double *dx, const double *dy, const double *x, size_t n) {
    map_grad(dx, dy, x, n, gelu_tanh_grad);
}

void ref_relu_forward(double *y, const double *x, size_t n) { map(y, x, n, relu); }
void ref_relu_backward(double *dx, const double *dy, const double *x, size_t n) {
    map_grad(dx, dy, x, n, relu_grad);
}

void ref_silu_forward(double *y, const double *x, size_t n) { map(y, x, n, silu); }
void ref_silu_backward(double *dx, const double *dy, const double *x, size_t n) {
    map_grad(dx, dy, x, n, silu_grad);
}

void ref_tanh_forward(double *y, const double *x, size_t n) { map(y, x, n, tanh); }
void ref_tanh_backward(double *dx, const double *dy, const double *x, size_t n) {
    map_grad(dx, dy, x, n, tanh_grad);
}

void ref_swiglu_forward(double *y, const double *gate, const double *up, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = silu(gate[i]) * up[i];
}

void ref_swiglu_backward(double *dgate, double *dup, const double *dy, const double *gate,
                         const double *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        dgate[i] = dy[i] * up[i] * silu_grad(gate[i]);
        dup[i] = dy[i] * silu(gate[i]);
    }
}
