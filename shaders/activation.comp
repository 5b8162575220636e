#version 450
// Pointwise activations, forward and backward, and SwiGLU; one element per
// invocation. Defines (kernel_activation_* in runtime/kernels/activation.c):
//   ACT       0 GELU (erf), 1 GELU-tanh, 2 ReLU, 3 SiLU, 4 tanh, 5 erf
//   BACKWARD  0: y = f(x)                       bindings x, y
//             1: dx = dy · f'(x)                bindings dy, x, dx
//   SWIGLU    1: forward  y = silu(gate) · up   bindings gate, up, y
//                backward dgate, dup            bindings dy, gate, up, dgate, dup
//
// GLSL has no erf, and its tanh is specified only through sinh/cosh (whose
// exponentials can overflow for large |x|, and whose difference cancels near
// 0), so both are written here with polynomial pieces fitted for this file
// (Lawson/IRLS minimax fits in double, coefficients rounded to float).
// Measured on the host, evaluated in fp32 with fma and a correctly rounded
// exp, over every 7th float of [0, 4.5] for erf and every 3rd float of
// [2^-31, 12] for tanh (both are odd, and exactly ±1 beyond):
//   vp_erf   max 0.98 ulp (1.32 ulp with unfused multiply-add);
//   vp_tanh  max 1.33 ulp;
//   vp_erfc_tail (erfc for 1 <= t < 4) max 29 ulp relative — the exponent
//            q ≈ −t² is rounded to fp32 — which is at most 2^-24·|x|
//            absolute in GELU's negative tail.
// The GPU's exp adds its own error (Vulkan allows 3 + 2|x| ulp); through
// 1 − exp(q) it reaches erf attenuated by erfc/erf ≤ 0.19 (≤ 0.25 ulp of erf
// per ulp of exp). On lavapipe the shader's erf measures ≤ 1.19 ulp
// (test_kernels_pointwise, erf_accuracy).
#include "common.glsl"

#ifndef ACT
#define ACT 0
#endif
#ifndef BACKWARD
#define BACKWARD 0
#endif
#ifndef SWIGLU
#define SWIGLU 0
#endif

// C twin: struct activation_push in runtime/kernels/activation.c
layout(push_constant) uniform Push {
    uint n;
    uint pad0, pad1, pad2;
} p;

// The polynomials are written out in Horner form with literal coefficients:
// lavapipe keeps a constant array indexed in a loop in memory, which made
// GELU and tanh up to twice as slow.
//
// erf(x)/x − 1 on |x| < 1, in s = x² (relative error of the fit 1.2e-9).
float erf_small(float s) {
    float r = 7.85386021571882e-05;
    r = fma(r, s, -0.000801019539034231);
    r = fma(r, s, 0.005188328181712502);
    r = fma(r, s, -0.02685381240508887);
    r = fma(r, s, 0.11283585167631556);
    r = fma(r, s, -0.37612625827329843);
    return fma(r, s, 0.12837916572810548);
}
// log(erfc(t)) on 1 <= t <= 4, in u = t − 1 (absolute error 1.2e-8).
float erfc_log(float u) {
    float q = 1.599811207231808e-06;
    q = fma(q, u, -3.249945425489532e-05);
    q = fma(q, u, 0.00031791111777261353);
    q = fma(q, u, -0.002048138254483086);
    q = fma(q, u, 0.010068683097148985);
    q = fma(q, u, -0.04156829835135926);
    q = fma(q, u, -0.8431077894249775);
    q = fma(q, u, -2.6389672044297963);
    return fma(q, u, -1.8496055215997758);
}
// (tanh(x) − x)/x³ on |x| < 0.625, in s = x² (relative error 4.4e-9).
float tanh_small(float s) {
    float r = -0.005704942618179251;
    r = fma(r, s, 0.02063904803198171);
    r = fma(r, s, -0.05373970317174259);
    r = fma(r, s, 0.13331442055462592);
    return fma(r, s, -0.33333281936646897);
}

const float SQRT1_2 = 0.70710678118654752;
const float INV_SQRT_2PI = 0.39894228040143268;
const float TWO_OVER_SQRT_PI = 1.1283791670955126;
const float SQRT_2_OVER_PI = 0.79788456080286536;
const float GELU_TANH_CUBIC = 0.044715;

// erfc(t) for t >= 1; 0 from t = 4 on (erfc(4) = 1.5e-8 is below half an
// ulp of 1, so erf rounds to 1 there anyway).
float vp_erfc_tail(float t) {
    if (t >= 4.0) return 0.0;
    return exp(erfc_log(t - 1.0));
}

float vp_erf(float x) {
    float a = abs(x);
    if (a < 1.0) {
        return fma(x, erf_small(x * x), x);  // x + x·r: the leading term is exact
    }
    float e = 1.0 - vp_erfc_tail(a);
    return x < 0.0 ? -e : e;
}

// Φ(x) = (1 + erf(x/√2))/2, through erfc on the negative tail so that it
// keeps its relative accuracy where 1 + erf would cancel.
float vp_normal_cdf(float x) {
    float z = x * SQRT1_2;
    if (z <= -1.0) return 0.5 * vp_erfc_tail(-z);
    return 0.5 + 0.5 * vp_erf(z);
}

float vp_tanh(float x) {
    float a = abs(x);
    if (a < 0.625) {
        float s = x * x;
        return fma(x * s, tanh_small(s), x);
    }
    // 1 − 2/(e^{2a} + 1): exp overflowing to +Inf gives exactly 1.
    float t = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    return x < 0.0 ? -t : t;
}

// σ(x) = 1/(1 + e^{−x}); exp overflowing to +Inf gives exactly 0.
float vp_sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }

// GELU-tanh as x·σ(2u), u = √(2/π)(x + 0.044715x³): 0.5(1 + tanh u) = σ(2u)
// without the cancellation of 1 + tanh u for negative u.
float gelu_tanh_u(float x) { return SQRT_2_OVER_PI * fma(GELU_TANH_CUBIC * x * x, x, x); }

float act_forward(float x) {
#if ACT == 0
    return x * vp_normal_cdf(x);
#elif ACT == 1
    return x * vp_sigmoid(2.0 * gelu_tanh_u(x));
#elif ACT == 2
    return x > 0.0 ? x : 0.0;
#elif ACT == 3
    return x * vp_sigmoid(x);
#elif ACT == 4
    return vp_tanh(x);
#else
    return vp_erf(x);
#endif
}

float act_grad(float x) {
#if ACT == 0
    // Φ(x) + x·φ(x)
    return vp_normal_cdf(x) + x * (INV_SQRT_2PI * exp(-0.5 * x * x));
#elif ACT == 1
    // 0.5(1 + tanh u) + 0.5x(1 − tanh²u)u' with 0.5(1 + tanh u) = σ(2u) = s
    // and 1 − tanh²u = 4s(1 − s).
    float s = vp_sigmoid(2.0 * gelu_tanh_u(x));
    float t = s * (1.0 - s);
    // Where σ saturates (t = 0) the second term is 0, though x·u' may overflow.
    if (t == 0.0) return s;
    float du = SQRT_2_OVER_PI * fma(3.0 * GELU_TANH_CUBIC, x * x, 1.0);
    return s + 2.0 * x * t * du;
#elif ACT == 2
    return x > 0.0 ? 1.0 : 0.0;
#elif ACT == 3
    float s = vp_sigmoid(x);
    return s * fma(x, 1.0 - s, 1.0);
#elif ACT == 4
    float t = vp_tanh(x);
    return 1.0 - t * t;
#else
    return TWO_OVER_SQRT_PI * exp(-x * x);
#endif
}

#if SWIGLU == 0 && BACKWARD == 0
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
void main() {
    uint i = vp_flat_index();
    if (i < p.n) y[i] = act_forward(x[i]);
}
#elif SWIGLU == 0
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) writeonly buffer DX { float dx[]; };
void main() {
    uint i = vp_flat_index();
    if (i < p.n) dx[i] = dy[i] * act_grad(x[i]);
}
#elif BACKWARD == 0
layout(std430, binding = 0) readonly buffer GATE { float gate[]; };
layout(std430, binding = 1) readonly buffer UP { float up[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
void main() {
    uint i = vp_flat_index();
    if (i < p.n) {
        float g = gate[i];
        y[i] = g * vp_sigmoid(g) * up[i];
    }
}
#else
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer GATE { float gate[]; };
layout(std430, binding = 2) readonly buffer UP { float up[]; };
layout(std430, binding = 3) writeonly buffer DGATE { float dgate[]; };
layout(std430, binding = 4) writeonly buffer DUP { float dup[]; };
void main() {
    uint i = vp_flat_index();
    if (i < p.n) {
        float g = gate[i], d = dy[i];
        float s = vp_sigmoid(g);
        dgate[i] = d * up[i] * (s * fma(g, 1.0 - s, 1.0));
        dup[i] = d * (g * s);
    }
}
#endif
