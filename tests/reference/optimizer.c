/* AdamW and SGD steps, the global gradient norm and clipping, following
 * torch.optim and torch.nn.utils.clip_grad_norm_ exactly (single-tensor,
 * non-fused code path). */
#include "ref.h"

#include <assert.h>
#include <math.h>

void ref_adamw_step(double *param, double *m, double *v, const double *grad, size_t n, int t,
                    const struct ref_adamw_hparams *hp, bool decay) {
    assert(t >= 1);
    const double b1 = hp->beta1, b2 = hp->beta2;
    /* Same operation order as torch.optim.adamw._single_tensor_adamw. */
    const double bias_correction1 = 1.0 - pow(b1, t);
    const double bias_correction2_sqrt = sqrt(1.0 - pow(b2, t));
    const double step_size = hp->lr / bias_correction1;
    for (size_t i = 0; i < n; i++) {
        /* Decoupled weight decay: applied to p, never mixed into g. */
        if (decay) param[i] *= 1.0 - hp->lr * hp->weight_decay;
        /* PyTorch writes the first moment as m.lerp_(g, 1−β1), the same
         * quantity up to rounding. */
        m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
        v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
        double denom = sqrt(v[i]) / bias_correction2_sqrt + hp->eps;
        param[i] -= step_size * m[i] / denom;
    }
}

void ref_sgd_step(double *param, double *momentum_buf, const double *grad, size_t n, int t,
                  const struct ref_sgd_hparams *hp, bool decay) {
    assert(t >= 1);
    assert(hp->momentum == 0.0 || momentum_buf);
    for (size_t i = 0; i < n; i++) {
        /* Coupled (L2) weight decay: added to the gradient, as torch.optim.SGD. */
        double d = grad[i] + (decay ? hp->weight_decay * param[i] : 0.0);
        if (hp->momentum != 0.0) {
            /* PyTorch creates the buffer as a copy of d on the first step. */
            momentum_buf[i] = t == 1 ? d : hp->momentum * momentum_buf[i] + d;
            d = momentum_buf[i];
        }
        param[i] -= hp->lr * d;
    }
}

double ref_grad_norm(const double *const *grads, const size_t *sizes, int count) {
    double sum_sq = 0.0;
    for (int i = 0; i < count; i++)
        for (size_t j = 0; j < sizes[i]; j++) sum_sq += grads[i][j] * grads[i][j];
    return sqrt(sum_sq);
}

double ref_clip_coef(double norm, double max_norm) {
    /* The 1e-6 keeps the division finite for a zero norm, as in PyTorch. */
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? coef : 1.0;
}

double ref_clip_grad_norm(double *const *grads, const size_t *sizes, int count, double max_norm) {
    double norm = ref_grad_norm((const double *const *)grads, sizes, count);
    double coef = ref_clip_coef(norm, max_norm);
    /* PyTorch multiplies even when coef is 1; so does this. */
    for (int i = 0; i < count; i++)
        for (size_t j = 0; j < sizes[i]; j++) grads[i][j] *= coef;
    return norm;
}
