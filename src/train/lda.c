/* SPDX-License-Identifier: MIT */
/*
 * lda.c — regularised Fisher discriminant analysis (LDA) of unit feature
 * rows, the projection of the FUSION and LDA heads.
 *
 * With class means m_c, global mean mu, within-class scatter Sw (divided by
 * n - C) and between-class scatter Sb = M M^T, M = [sqrt(n_c/n)(m_c - mu)],
 * the discriminant directions maximise w^T Sb w / w^T Sw' w for the shrunk
 *   Sw' = (1 - a) Sw + a (tr Sw / d) I          (Ledoit-Wolf-style shrinkage;
 *                                                 Friedman's RDA, 1989)
 * Since Sb has rank <= C - 1, the directions lie in span(Sw'^-1 M): with
 * A = Sw'^-1 M (d x C) and the small symmetric G = M^T A, each eigenpair
 * (l, v) of G gives w = A v / sqrt(l), scaled so that w^T Sw' w = 1
 * (whitened within classes). A is computed by Woodbury through the n x n
 * Gram matrix of the within-class residuals when n <= d (few items, wide
 * taps: the usual case), otherwise through the d x d scatter; both are one
 * Cholesky in double, in a fixed order.
 *
 * The classifier is LDA's own rule in the whitened space, softmax over
 *   logit_c = z . zbar_c - |zbar_c|^2 / 2 + log(n_c / n),
 * rewritten as a linear map of u (C = W Zbar^T).
 */
#include <math.h>
#include <string.h>

#include "train/train_int.h"

/* Solve (a X^T X + b I) A = M for A (d x m) given X (r x d); M is replaced. */
static int shrunk_solve(const double *X, int r, int d, double a, double b, double *M, int m)
{
    if (r <= d) { /* Woodbury: (1/b)[M - X^T (b/a I + X X^T)^-1 X M] */
        double *G = ims_malloc((size_t)r * r * sizeof *G);
        double *Y = ims_malloc((size_t)r * m * sizeof *Y);
        if (!G || !Y) {
            ims_free(G), ims_free(Y);
            return IMS_ENOMEM;
        }
        for (int i = 0; i < r; i++)
            for (int j = 0; j <= i; j++) {
                const double *xi = X + (size_t)i * d, *xj = X + (size_t)j * d;
                double s = 0;
                for (int t = 0; t < d; t++)
                    s += xi[t] * xj[t];
                G[(size_t)i * r + j] = G[(size_t)j * r + i] = s + (i == j ? b / a : 0);
            }
        for (int i = 0; i < r; i++)
            for (int c = 0; c < m; c++) {
                const double *xi = X + (size_t)i * d;
                double s = 0;
                for (int t = 0; t < d; t++)
                    s += xi[t] * M[(size_t)t * m + c];
                Y[(size_t)i * m + c] = s;
            }
        if (ims__cholesky(G, r)) {
            ims_free(G), ims_free(Y);
            return IMS_EINVAL;
        }
        ims__cholesky_solve(G, r, Y, m);
        for (int i = 0; i < r; i++) {
            const double *xi = X + (size_t)i * d;
            const double *yi = Y + (size_t)i * m;
            for (int t = 0; t < d; t++)
                for (int c = 0; c < m; c++)
                    M[(size_t)t * m + c] -= xi[t] * yi[c];
        }
        for (size_t t = 0; t < (size_t)d * m; t++)
            M[t] /= b;
        ims_free(G), ims_free(Y);
        return IMS_OK;
    }
    double *S = ims_calloc((size_t)d * d, sizeof *S);
    if (!S)
        return IMS_ENOMEM;
    for (int i = 0; i < r; i++) {
        const double *xi = X + (size_t)i * d;
        for (int p = 0; p < d; p++) {
            double f = a * xi[p];
            double *sp = S + (size_t)p * d;
            for (int q = 0; q <= p; q++)
                sp[q] += f * xi[q];
        }
    }
    for (int p = 0; p < d; p++) {
        S[(size_t)p * d + p] += b;
        for (int q = 0; q < p; q++)
            S[(size_t)q * d + p] = S[(size_t)p * d + q];
    }
    if (ims__cholesky(S, d)) {
        ims_free(S);
        return IMS_EINVAL;
    }
    ims__cholesky_solve(S, d, M, m);
    ims_free(S);
    return IMS_OK;
}

int ims__lda_fit(ims_train_head *h, const float *u, int n, const int *labels, float shrink,
                 ims_error *err)
{
    const int d = h->d, C = h->n_classes;
    int rc = IMS_ENOMEM;
    double *mean = ims_calloc((size_t)C * d, sizeof *mean), *mu = ims_calloc(d, sizeof *mu);
    double *X = ims_malloc((size_t)n * d * sizeof *X);
    int *cnt = ims_calloc(C, sizeof *cnt), *cls = ims_malloc(C * sizeof *cls);
    double *M = NULL, *A = NULL, *Gm = NULL, *lam = NULL, *V = NULL, *W = NULL, *zbar = NULL;
    if (!mean || !mu || !X || !cnt || !cls)
        goto done;
    for (int i = 0; i < n; i++) {
        cnt[labels[i]]++;
        for (int t = 0; t < d; t++)
            mean[(size_t)labels[i] * d + t] += u[(size_t)i * d + t];
    }
    int m = 0; /* non-empty classes */
    for (int c = 0; c < C; c++) {
        if (!cnt[c])
            continue;
        cls[m++] = c;
        for (int t = 0; t < d; t++)
            mean[(size_t)c * d + t] /= cnt[c];
    }
    for (int c = 0; c < C; c++)
        for (int t = 0; t < d; t++)
            mu[t] += mean[(size_t)c * d + t] * cnt[c];
    for (int t = 0; t < d; t++)
        mu[t] /= n;
    double tr = 0;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < d; t++) {
            double x = u[(size_t)i * d + t] - mean[(size_t)labels[i] * d + t];
            X[(size_t)i * d + t] = x;
            tr += x * x;
        }
    double dof = n - m > 0 ? n - m : n;
    double alpha = IMS_MIN(IMS_MAX(shrink, 1e-4), 0.999);
    double a = (1 - alpha) / dof, b = alpha * (tr / dof) / d;
    if (!(b > 0)) {
        rc = ims_error_set(err, IMS_ESTATE,
                           "nothing to train: the features do not vary "
                           "within categories");
        goto done;
    }
    M = ims_malloc((size_t)d * m * sizeof *M);
    A = ims_malloc((size_t)d * m * sizeof *A);
    Gm = ims_malloc((size_t)m * m * sizeof *Gm);
    lam = ims_malloc((size_t)m * sizeof *lam);
    V = ims_malloc((size_t)m * m * sizeof *V);
    W = ims_calloc((size_t)d * m, sizeof *W);
    zbar = ims_calloc((size_t)C * m, sizeof *zbar);
    if (!M || !A || !Gm || !lam || !V || !W || !zbar)
        goto done;
    for (int t = 0; t < d; t++)
        for (int j = 0; j < m; j++)
            M[(size_t)t * m + j] =
                sqrt((double)cnt[cls[j]] / n) * (mean[(size_t)cls[j] * d + t] - mu[t]);
    memcpy(A, M, (size_t)d * m * sizeof *A);
    if ((rc = shrunk_solve(X, n, d, a, b, A, m))) {
        if (rc == IMS_EINVAL)
            rc = ims_error_set(err, IMS_EINVAL,
                               "LDA: within-class scatter not positive "
                               "definite");
        goto done;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double s = 0;
            for (int t = 0; t < d; t++)
                s += M[(size_t)t * m + i] * A[(size_t)t * m + j];
            Gm[(size_t)i * m + j] = s;
        }
    for (int i = 0; i < m; i++) /* symmetrise rounding */
        for (int j = 0; j < i; j++)
            Gm[(size_t)i * m + j] = Gm[(size_t)j * m + i] =
                0.5 * (Gm[(size_t)i * m + j] + Gm[(size_t)j * m + i]);
    ims__eigen_sym(Gm, m, lam, V);
    int k = 0;
    while (k < h->k && k < m - 1 && lam[k] > 1e-9 * lam[0] && lam[k] > 0)
        k++;
    if (k < 1) {
        rc = ims_error_set(err, IMS_ESTATE, "nothing to train: categories are not separable");
        goto done;
    }
    h->k = k;
    for (int t = 0; t < d; t++)
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int i = 0; i < m; i++)
                s += A[(size_t)t * m + i] * V[(size_t)i * m + j];
            W[(size_t)t * k + j] = s / sqrt(lam[j]);
        }
    for (int j = 0; j < k; j++) {
        double s = 0;
        for (int t = 0; t < d; t++)
            s += mu[t] * W[(size_t)t * k + j];
        h->pb[j] = (float)-s;
    }
    for (size_t t = 0; t < (size_t)d * k; t++)
        h->P[t] = (float)W[t];
    /* classifier: zbar_c = W^T (m_c - mu) */
    for (int c = 0; c < C; c++) {
        if (!cnt[c])
            continue;
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int t = 0; t < d; t++)
                s += (mean[(size_t)c * d + t] - mu[t]) * W[(size_t)t * k + j];
            zbar[(size_t)c * m + j] = s;
        }
    }
    for (int c = 0; c < C; c++) {
        if (!cnt[c]) { /* never predicted */
            for (int t = 0; t < d; t++)
                h->C[(size_t)t * C + c] = 0;
            h->cb[c] = -1e4f;
            continue;
        }
        const double *zc = zbar + (size_t)c * m;
        double sq = 0, muw = 0;
        for (int j = 0; j < k; j++)
            sq += zc[j] * zc[j];
        for (int t = 0; t < d; t++) {
            double s = 0;
            for (int j = 0; j < k; j++)
                s += W[(size_t)t * k + j] * zc[j];
            h->C[(size_t)t * C + c] = (float)s;
            muw += mu[t] * s;
        }
        h->cb[c] = (float)(-muw - 0.5 * sq + log((double)cnt[c] / n));
    }
    h->shrink = (float)alpha;
    rc = IMS_OK;
done:
    if (rc == IMS_ENOMEM)
        ims_error_set(err, rc, "LDA: out of memory");
    ims_free(mean), ims_free(mu), ims_free(X), ims_free(cnt), ims_free(cls);
    ims_free(M), ims_free(A), ims_free(Gm), ims_free(lam), ims_free(V), ims_free(W);
    ims_free(zbar);
    return rc;
}
