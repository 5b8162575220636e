/* Cross-entropy fused with log-softmax, with ignore_index and label smoothing
 * (torch.nn.functional.cross_entropy, reduction='mean'). */
#include "ref.h"

#include <assert.h>
#include <math.h>

/* log Σ_v exp(z_v), shifted by the maximum so exp() cannot overflow. */
static double log_sum_exp(const double *z, int V) {
    double max = -INFINITY;
    for (int v = 0; v < V; v++)
        if (z[v] > max) max = z[v];
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += exp(z[v] - max);
    return max + log(sum);
}

static bool ignored(const int32_t *targets, int n, int V, int ignore_index) {
    if (targets[n] == ignore_index) return true;
    assert(targets[n] >= 0 && targets[n] < V);
    (void)V; /* only checked */
    return false;
}

static int count_rows(const int32_t *targets, int N, int V, int ignore_index) {
    int count = 0;
    for (int n = 0; n < N; n++) count += !ignored(targets, n, V, ignore_index);
    return count;
}

/* loss_n = (1−ε)·(−log p_y) + ε·(−mean_v log p_v), with log p_v = z_v − lse. */
static double row_loss(const double *z, int y, int V, double eps) {
    double lse = log_sum_exp(z, V);
    double sum_logp = 0.0;
    for (int v = 0; v < V; v++) sum_logp += z[v] - lse;
    return (1.0 - eps) * (lse - z[y]) - eps / V * sum_logp;
}

double ref_cross_entropy_forward(double *row_losses, const double *logits, const int32_t *targets,
                                 int N, int V, int ignore_index, double label_smoothing) {
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        double loss = 0.0;
        if (!ignored(targets, n, V, ignore_index))
            loss = row_loss(logits + (size_t)n * V, targets[n], V, label_smoothing);
        if (row_losses) row_losses[n] = loss;
        total += loss;
    }
    int count = count_rows(targets, N, V, ignore_index);
    return count > 0 ? total / count : 0.0;
}

void ref_cross_entropy_backward(double *dlogits, double dloss, const double *logits,
                                const int32_t *targets, int N, int V, int ignore_index,
                                double label_smoothing) {
    int count = count_rows(targets, N, V, ignore_index);
    const double eps = label_smoothing;
    for (int n = 0; n < N; n++) {
        const double *z = logits + (size_t)n * V;
        double *dz = dlogits + (size_t)n * V;
        if (ignored(targets, n, V, ignore_index)) {
            for (int v = 0; v < V; v++) dz[v] = 0.0;
            continue;
        }
        /* count > 0 here, since this row counts. */
        double lse = log_sum_exp(z, V), row_scale = dloss / count;
        for (int v = 0; v < V; v++) {
            double p = exp(z[v] - lse);
            double target = (1.0 - eps) * (v == targets[n]) + eps / V;
            dz[v] = row_scale * (p - target);
        }
    }
}
