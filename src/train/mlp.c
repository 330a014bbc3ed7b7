/* SPDX-License-Identifier: MIT */
/*
 * mlp.c — the seed method's head: Dense(H) ReLU -> Dense(C) -> softmax,
 * trained with mini-batch Adam (Kingma & Ba 2015) on cross-entropy plus an
 * L2 weight penalty, Glorot-uniform initialisation, and early stopping on
 * validation accuracy (ties: lower validation loss) with a patience.
 *
 * Determinism: one thread, loops in a fixed order, batches drawn from the
 * module's PRNG, so a seed gives the same bytes. Memory: parameters, Adam
 * moments, gradients and the best-epoch copy, all allocated up front.
 */
#include <math.h>
#include <string.h>

#include "train/train_int.h"

typedef struct mlp {
    int d, H, C;
    float *w1, *b1, *w2, *b2; /* parameters (one block) */
    size_t n_par;
} mlp;

/* Forward one row: hidden a (H), logits z (C); returns log-sum-exp. */
static double forward(const mlp *m, const float *x, float *a, float *z)
{
    for (int j = 0; j < m->H; j++)
        a[j] = m->b1[j];
    for (int t = 0; t < m->d; t++) {
        float xt = x[t];
        const float *w = m->w1 + (size_t)t * m->H;
        for (int j = 0; j < m->H; j++)
            a[j] += xt * w[j];
    }
    for (int j = 0; j < m->H; j++)
        a[j] = a[j] > 0 ? a[j] : 0;
    for (int c = 0; c < m->C; c++)
        z[c] = m->b2[c];
    for (int j = 0; j < m->H; j++) {
        const float *w = m->w2 + (size_t)j * m->C;
        for (int c = 0; c < m->C; c++)
            z[c] += a[j] * w[c];
    }
    float mx = z[0];
    for (int c = 1; c < m->C; c++)
        mx = z[c] > mx ? z[c] : mx;
    double s = 0;
    for (int c = 0; c < m->C; c++)
        s += exp((double)(z[c] - mx));
    return mx + log(s);
}

static int argmax(const float *z, int C)
{
    int b = 0;
    for (int c = 1; c < C; c++)
        if (z[c] > z[b])
            b = c;
    return b;
}

/* Mean loss and accuracy over the rows with is_val[i] == want. */
static void evaluate(const mlp *m, const float *u, int n, const int *labels,
                     const unsigned char *is_val, int want, float *a, float *z, double *loss,
                     double *acc)
{
    double l = 0;
    int hit = 0, cnt = 0;
    for (int i = 0; i < n; i++) {
        if ((is_val ? is_val[i] : 0) != want)
            continue;
        double lse = forward(m, u + (size_t)i * m->d, a, z);
        l += lse - z[labels[i]];
        hit += argmax(z, m->C) == labels[i];
        cnt++;
    }
    *loss = cnt ? l / cnt : 0;
    *acc = cnt ? (double)hit / cnt : 0;
}

int ims__mlp_fit(ims_train_head *h, const float *u, int n, const int *labels,
                 const unsigned char *is_val, const ims_train_opts *o, ims_error *err)
{
    mlp m = {.d = h->d, .H = h->k, .C = h->n_classes};
    m.n_par = (size_t)m.d * m.H + m.H + (size_t)m.H * m.C + m.C;
    float *par = ims_malloc(m.n_par * sizeof *par), *best = ims_malloc(m.n_par * sizeof *best);
    float *g = ims_calloc(m.n_par, sizeof *g), *m1 = ims_calloc(m.n_par, sizeof *m1);
    float *m2 = ims_calloc(m.n_par, sizeof *m2);
    float *a = ims_malloc(((size_t)m.H + m.C) * 2 * sizeof *a);
    int *order = ims_malloc(((size_t)n + 1) * sizeof *order);
    int rc = IMS_ENOMEM;
    if (!par || !best || !g || !m1 || !m2 || !a || !order) {
        ims_error_set(err, rc, "MLP: out of memory");
        goto done;
    }
    float *z = a + m.H, *da = z + m.C, *dz = da + m.H;
    m.w1 = par, m.b1 = m.w1 + (size_t)m.d * m.H, m.w2 = m.b1 + m.H, m.b2 = m.w2 + (size_t)m.H * m.C;
    float *gw1 = g, *gb1 = gw1 + (size_t)m.d * m.H, *gw2 = gb1 + m.H,
          *gb2 = gw2 + (size_t)m.H * m.C;

    ims__rng r = {o->seed ^ 0xD1B54A32D192ED03ull};
    double lim1 = sqrt(6.0 / (m.d + m.H)), lim2 = sqrt(6.0 / (m.H + m.C));
    for (size_t t = 0; t < (size_t)m.d * m.H; t++)
        m.w1[t] = (float)((2 * ims__rng_uniform(&r) - 1) * lim1);
    memset(m.b1, 0, (size_t)m.H * sizeof *m.b1);
    for (size_t t = 0; t < (size_t)m.H * m.C; t++)
        m.w2[t] = (float)((2 * ims__rng_uniform(&r) - 1) * lim2);
    memset(m.b2, 0, (size_t)m.C * sizeof *m.b2);
    memcpy(best, par, m.n_par * sizeof *par);

    int n_train = 0, n_val = 0;
    for (int i = 0; i < n; i++) {
        if (is_val && is_val[i])
            n_val++;
        else
            order[n_train++] = i;
    }
    const int B = IMS_MAX(1, o->batch);
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    double best_acc = -1, best_loss = INFINITY;
    int since = 0, step = 0;
    h->val_acc = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        ims__rng_shuffle(&r, order, n_train);
        double tl = 0;
        int thit = 0;
        for (int s0 = 0; s0 < n_train; s0 += B) {
            int nb = IMS_MIN(B, n_train - s0);
            memset(g, 0, m.n_par * sizeof *g);
            for (int bi = 0; bi < nb; bi++) {
                int i = order[s0 + bi];
                const float *x = u + (size_t)i * m.d;
                double lse = forward(&m, x, a, z);
                tl += lse - z[labels[i]];
                thit += argmax(z, m.C) == labels[i];
                for (int c = 0; c < m.C; c++)
                    dz[c] = (float)(exp((double)z[c] - lse) - (c == labels[i])) / nb;
                for (int c = 0; c < m.C; c++)
                    gb2[c] += dz[c];
                for (int j = 0; j < m.H; j++) {
                    const float *w = m.w2 + (size_t)j * m.C;
                    float *gw = gw2 + (size_t)j * m.C, s = 0;
                    for (int c = 0; c < m.C; c++) {
                        gw[c] += a[j] * dz[c];
                        s += w[c] * dz[c];
                    }
                    da[j] = a[j] > 0 ? s : 0;
                    gb1[j] += da[j];
                }
                for (int t = 0; t < m.d; t++) {
                    float xt = x[t];
                    if (xt == 0)
                        continue;
                    float *gw = gw1 + (size_t)t * m.H;
                    for (int j = 0; j < m.H; j++)
                        gw[j] += xt * da[j];
                }
            }
            /* weight decay on the kernels, then Adam */
            for (size_t t = 0; t < (size_t)m.d * m.H; t++)
                gw1[t] += o->weight_decay * m.w1[t];
            for (size_t t = 0; t < (size_t)m.H * m.C; t++)
                gw2[t] += o->weight_decay * m.w2[t];
            step++;
            float c1 = 1 - powf(b1, (float)step), c2 = 1 - powf(b2, (float)step);
            float lr = o->lr * sqrtf(c2) / c1;
            for (size_t t = 0; t < m.n_par; t++) {
                m1[t] = b1 * m1[t] + (1 - b1) * g[t];
                m2[t] = b2 * m2[t] + (1 - b2) * g[t] * g[t];
                par[t] -= lr * m1[t] / (sqrtf(m2[t]) + eps);
            }
        }
        double vl = 0, va = 0;
        if (n_val)
            evaluate(&m, u, n, labels, is_val, 1, a, z, &vl, &va);
        float tacc = n_train ? (float)thit / n_train : 0;
        int better = !n_val || va > best_acc || (va == best_acc && vl < best_loss);
        if (better) {
            best_acc = va, best_loss = vl, since = 0;
            memcpy(best, par, m.n_par * sizeof *par);
            h->val_acc = (float)va;
        } else {
            since++;
        }
        if (o->progress && o->progress(o->progress_ud, ep + 1, o->epochs,
                                       (float)(n_train ? tl / n_train : 0), tacc, (float)va))
            break;
        if (n_val && since >= o->patience)
            break;
    }
    memcpy(h->P, best, (size_t)m.d * m.H * sizeof *par);
    memcpy(h->pb, best + (size_t)m.d * m.H, (size_t)m.H * sizeof *par);
    memcpy(h->C, best + (size_t)m.d * m.H + m.H, (size_t)m.H * m.C * sizeof *par);
    memcpy(h->cb, best + (size_t)m.d * m.H + m.H + (size_t)m.H * m.C, (size_t)m.C * sizeof *par);
    rc = IMS_OK;
done:
    ims_free(par), ims_free(best), ims_free(g), ims_free(m1), ims_free(m2), ims_free(a);
    ims_free(order);
    return rc;
}
