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
 * Cholesky in double (LAPACK dpotrf; the Gram matrix and the products are
 * BLAS), on OpenBLAS's one thread (linalg.c): deterministic on one machine.
 *
 * Only the diagonal of the shrunk system depends on the shrinkage: the
 * class means, the residuals, their Gram matrix X X^T and X M are computed
 * once (ims__lda_prepare) and every candidate shrinkage costs one n x n
 * Cholesky and two n x d x C products (ims__lda_solve), with the same
 * arithmetic, in the same order, as a fit from scratch.
 *
 * The classifier is LDA's own rule in the whitened space, softmax over
 *   logit_c = z . zbar_c - |zbar_c|^2 / 2 + log(n_c / n),
 * rewritten as a linear map of u (C = W Zbar^T).
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "imgsim/nn.h"
#include "train/train_int.h"

/* G = X X^T (r x r, lower triangle mirrored) and Y = X M (r x m): the
 * shrinkage-independent parts of the Woodbury solve below. */
static void gram_parts(const double *X, int r, int d, const double *M, int m, double *G, double *Y)
{
    ims_nn_init(); /* OpenBLAS on one thread */
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, r, d, 1.0, X, d, 0.0, G, r);
    for (int i = 0; i < r; i++)
        for (int j = 0; j < i; j++)
            G[(size_t)j * r + i] = G[(size_t)i * r + j];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, m, d, 1.0, X, d, M, m, 0.0, Y, m);
}

/* Solve (a X^T X + b I) A = M for A (d x m) given X (r x d); M is replaced.
 * r <= d: Woodbury, (1/b)[M - X^T (b/a I + X X^T)^-1 X M], from G0 = X X^T
 * and Y0 = X M (gram_parts); otherwise through the d x d scatter. */
static int shrunk_solve(const double *X, int r, int d, double a, double b, const double *G0,
                        const double *Y0, double *M, int m)
{
    if (r <= d) {
        double *G = ims_malloc((size_t)r * r * sizeof *G);
        double *Y = ims_malloc((size_t)r * m * sizeof *Y);
        if (!G || !Y) {
            ims_free(G), ims_free(Y);
            return IMS_ENOMEM;
        }
        memcpy(G, G0, (size_t)r * r * sizeof *G);
        memcpy(Y, Y0, (size_t)r * m * sizeof *Y);
        for (int i = 0; i < r; i++)
            G[(size_t)i * r + i] += b / a;
        if (ims__cholesky(G, r)) {
            ims_free(G), ims_free(Y);
            return IMS_EINVAL;
        }
        ims__cholesky_solve(G, r, Y, m);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, m, r, -1.0, X, d, Y, m, 1.0, M, m);
        for (size_t t = 0; t < (size_t)d * m; t++)
            M[t] /= b;
        ims_free(G), ims_free(Y);
        return IMS_OK;
    }
    double *S = ims_malloc((size_t)d * d * sizeof *S);
    if (!S)
        return IMS_ENOMEM;
    /* lower triangle: all the Cholesky reads */
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, d, r, a, X, d, 0.0, S, d);
    for (int p = 0; p < d; p++)
        S[(size_t)p * d + p] += b;
    if (ims__cholesky(S, d)) {
        ims_free(S);
        return IMS_EINVAL;
    }
    ims__cholesky_solve(S, d, M, m);
    ims_free(S);
    return IMS_OK;
}

void ims__lda_prep_free(ims__lda_prep *p)
{
    ims_free(p->mean), ims_free(p->mu), ims_free(p->X), ims_free(p->M), ims_free(p->G);
    ims_free(p->Y), ims_free(p->cnt), ims_free(p->cls);
    memset(p, 0, sizeof *p);
}

int ims__lda_prepare(ims__lda_prep *p, int d, int C, const float *u, int n, const int *labels,
                     ims_error *err)
{
    memset(p, 0, sizeof *p);
    p->n = n, p->d = d, p->C = C;
    p->mean = ims_calloc((size_t)C * d, sizeof *p->mean);
    p->mu = ims_calloc(d, sizeof *p->mu);
    p->X = ims_malloc((size_t)n * d * sizeof *p->X);
    p->cnt = ims_calloc(C, sizeof *p->cnt);
    p->cls = ims_malloc(C * sizeof *p->cls);
    if (!p->mean || !p->mu || !p->X || !p->cnt || !p->cls)
        goto nomem;
    double *mean = p->mean, *mu = p->mu, *X = p->X;
    for (int i = 0; i < n; i++) {
        p->cnt[labels[i]]++;
        for (int t = 0; t < d; t++)
            mean[(size_t)labels[i] * d + t] += u[(size_t)i * d + t];
    }
    int m = 0; /* non-empty classes */
    for (int c = 0; c < C; c++) {
        if (!p->cnt[c])
            continue;
        p->cls[m++] = c;
        for (int t = 0; t < d; t++)
            mean[(size_t)c * d + t] /= p->cnt[c];
    }
    p->m = m;
    for (int c = 0; c < C; c++)
        for (int t = 0; t < d; t++)
            mu[t] += mean[(size_t)c * d + t] * p->cnt[c];
    for (int t = 0; t < d; t++)
        mu[t] /= n;
    double tr = 0;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < d; t++) {
            double x = u[(size_t)i * d + t] - mean[(size_t)labels[i] * d + t];
            X[(size_t)i * d + t] = x;
            tr += x * x;
        }
    p->tr = tr;
    p->dof = n - m > 0 ? n - m : n;
    if (!(p->M = ims_malloc((size_t)d * m * sizeof *p->M)))
        goto nomem;
    for (int t = 0; t < d; t++)
        for (int j = 0; j < m; j++)
            p->M[(size_t)t * m + j] =
                sqrt((double)p->cnt[p->cls[j]] / n) * (mean[(size_t)p->cls[j] * d + t] - mu[t]);
    if (n <= d) {
        p->G = ims_malloc((size_t)n * n * sizeof *p->G);
        p->Y = ims_malloc((size_t)n * m * sizeof *p->Y);
        if (!p->G || !p->Y)
            goto nomem;
        gram_parts(X, n, d, p->M, m, p->G, p->Y);
    }
    return IMS_OK;
nomem:
    ims__lda_prep_free(p);
    return ims_error_set(err, IMS_ENOMEM, "LDA: out of memory");
}

int ims__lda_solve(ims_train_head *h, const ims__lda_prep *p, float shrink, ims_error *err)
{
    const int d = p->d, C = p->C, m = p->m, n = p->n;
    const double *mean = p->mean, *mu = p->mu, *M = p->M;
    const int *cnt = p->cnt;
    IMS_ASSERT(h->d == d && h->n_classes == C);
    int rc = IMS_ENOMEM;
    double *A = NULL, *Gm = NULL, *lam = NULL, *V = NULL, *W = NULL, *zbar = NULL;
    double alpha = IMS_MIN(IMS_MAX(shrink, 1e-4), 0.999);
    double a = (1 - alpha) / p->dof, b = alpha * (p->tr / p->dof) / d;
    if (!(b > 0))
        return ims_error_set(err, IMS_ESTATE,
                             "nothing to train: the features do not vary "
                             "within categories");
    A = ims_malloc((size_t)d * m * sizeof *A);
    Gm = ims_malloc((size_t)m * m * sizeof *Gm);
    lam = ims_malloc((size_t)m * sizeof *lam);
    V = ims_malloc((size_t)m * m * sizeof *V);
    W = ims_calloc((size_t)d * m, sizeof *W);
    zbar = ims_calloc((size_t)C * m, sizeof *zbar);
    if (!A || !Gm || !lam || !V || !W || !zbar)
        goto done;
    memcpy(A, M, (size_t)d * m * sizeof *A);
    if ((rc = shrunk_solve(p->X, n, d, a, b, p->G, p->Y, A, m))) {
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
    ims_free(A), ims_free(Gm), ims_free(lam), ims_free(V), ims_free(W), ims_free(zbar);
    return rc;
}

int ims__lda_fit(ims_train_head *h, const float *u, int n, const int *labels, float shrink,
                 ims_error *err)
{
    ims__lda_prep p;
    int rc = ims__lda_prepare(&p, h->d, h->n_classes, u, n, labels, err);
    if (rc)
        return rc;
    rc = ims__lda_solve(h, &p, shrink, err);
    ims__lda_prep_free(&p);
    return rc;
}
