/* SPDX-License-Identifier: MIT */
/*
 * whiten.c — shrunk PCA-whitening of the FUSION head's raw part.
 *
 * Learned on m unit rows u (d values each) of the head's training rows:
 *   Sigma  = the rows' covariance (divisor m), tr = trace(Sigma),
 *   Sigma' = (1 - a) Sigma + a (tr / d) I,
 *   y      = sqrt(a tr / d) Sigma'^-1/2 (u - mu) = u . M + bias,
 * with M = d x d ([in][out], symmetric) and bias = -mu . M (mu folded in);
 * the head L2-normalises y, so the scale sqrt(a tr / d) only keeps the
 * values near 1 (directions outside the rows' span keep weight 1).
 *
 * Since m < d in practice, the eigenvectors of Sigma come from the m x m
 * Gram matrix X X^T of the centred rows X (eigenvalues lam_i, vectors U_i):
 * v_i = X^T U_i / sqrt(lam_i) are unit, Sigma's eigenvalues are lam_i / m,
 * and M = I + sum_i (s_i - 1) v_i v_i^T with
 * s_i = sqrt(b) / sqrt((1 - a) lam_i / m + b), b = a tr / d.
 * Cost: m^2 d (Gram, V) + m^3 (eigen) + r d^2 (M), in double: the Gram
 * matrix and M are BLAS dsyrk, V one dgemm, the eigenvectors LAPACK's
 * dsyevd (linalg.c), all on OpenBLAS's one thread (ims_nn_init), so the
 * bytes are the same run to run on one machine, whatever --threads.
 * Measured in bench/RESULTS-finetune.md.
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "imgsim/nn.h"
#include "train/train_int.h"

/* Rows per block in the d x d loops: keeps the block's accumulators in
 * cache while the big operand (V, M) streams once per block. */
#define BLK 16

int ims__whiten_fit(const float *u, const int *rows, int m, int d, double a, int rank, float *M,
                    float *bias, ims_error *err)
{
    IMS_ASSERT(u && M && bias && m >= 1 && d >= 1 && a > 0 && a <= 1);
    ims_nn_init(); /* OpenBLAS on one thread */
    int rc = IMS_ENOMEM;
    double *mu = ims_calloc((size_t)d, sizeof *mu), *X = ims_malloc((size_t)m * d * sizeof *X);
    double *G = ims_malloc((size_t)m * m * sizeof *G), *lam = ims_malloc((size_t)m * sizeof *lam);
    double *U = ims_malloc((size_t)m * m * sizeof *U), *V = NULL, *acc = NULL;
    if (!mu || !X || !G || !lam || !U)
        goto done;
    for (int i = 0; i < m; i++) {
        const float *ui = u + (size_t)(rows ? rows[i] : i) * d;
        for (int t = 0; t < d; t++)
            mu[t] += ui[t];
    }
    for (int t = 0; t < d; t++)
        mu[t] /= m;
    for (int i = 0; i < m; i++) {
        const float *ui = u + (size_t)(rows ? rows[i] : i) * d;
        double *xi = X + (size_t)i * d;
        for (int t = 0; t < d; t++)
            xi[t] = ui[t] - mu[t];
    }
    /* Gram matrix X X^T (lower triangle, mirrored) */
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, m, d, 1.0, X, d, 0.0, G, m);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < i; j++)
            G[(size_t)j * m + i] = G[(size_t)i * m + j];
    double tr = 0;
    for (int i = 0; i < m; i++)
        tr += G[(size_t)i * m + i];
    tr /= m;
    double b = a * tr / d;
    /* identity (no-op) when the rows do not vary */
    memset(M, 0, (size_t)d * d * sizeof *M);
    for (int p = 0; p < d; p++)
        M[(size_t)p * d + p] = 1;
    memset(bias, 0, (size_t)d * sizeof *bias);
    if (!(b > 1e-30)) {
        rc = IMS_OK;
        goto done;
    }
    int eig = ims__eigen_sym_lapack(G, m, lam, U);
    if (eig > 0) {
        rc = ims_error_set(err, IMS_EINVAL,
                           "train: whitening: the eigen-solver did not converge on the %d x %d "
                           "Gram matrix of the items (try --no-whiten)",
                           m, m);
        goto done;
    }
    if (eig)
        goto done;
    int r = 0;
    while (r < m && lam[r] > 1e-9 * lam[0])
        r++;
    if (rank > 0 && rank < r)
        r = rank;
    double sp = rank > 0 ? 0 : 1; /* weight outside the kept directions */
    V = ims_malloc((size_t)r * d * sizeof *V);
    acc = ims_malloc((size_t)d * d * sizeof *acc);
    if (!V || !acc)
        goto done;
    /* X^T U_i for the kept i, as rows: V = U_r^T X (r x d) */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, d, m, 1.0, U, m, X, d, 0.0, V, d);
    /* s_i - sp has one sign (s_i < 1; s_i > 0): row i scaled by
     * sqrt(|s_i - sp| / lam_i), so that V^T V = sum |s_i - sp| v_i v_i^T
     * with v_i unit */
    for (int i = 0; i < r; i++) {
        double c = sqrt(fabs(sqrt(b) / sqrt((1 - a) * lam[i] / m + b) - sp) / lam[i]);
        for (int t = 0; t < d; t++)
            V[(size_t)i * d + t] *= c;
    }
    /* M = sp I + sign (V^T V): upper triangle, mirrored */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, r, sp > 0 ? -1.0 : 1.0, V, d, 0.0, acc,
                d);
    for (int p = 0; p < d; p++) {
        M[(size_t)p * d + p] = (float)(sp + acc[(size_t)p * d + p]);
        for (int q = p + 1; q < d; q++)
            M[(size_t)p * d + q] = M[(size_t)q * d + p] = (float)acc[(size_t)p * d + q];
    }
    for (int q = 0; q < d; q++)
        acc[q] = 0;
    for (int p = 0; p < d; p++) {
        const float *mp = M + (size_t)p * d;
        for (int q = 0; q < d; q++)
            acc[q] += mu[p] * mp[q];
    }
    for (int q = 0; q < d; q++)
        bias[q] = (float)-acc[q];
    rc = IMS_OK;
done:
    if (rc == IMS_ENOMEM)
        ims_error_set(err, rc, "train: out of memory (whitening, %d x %d)", d, d);
    ims_free(mu), ims_free(X), ims_free(G), ims_free(lam), ims_free(U), ims_free(V);
    ims_free(acc);
    return rc;
}

void ims__whiten_rows(const float *M, const float *bias, int d, const float *u, int n, float *y)
{
    /* BLK rows at a time, M (d x d floats, megabytes) read once per block;
     * each value still sums over p in order, so the bytes are those of a
     * row-by-row loop (apply and the search agree) */
    for (int i0 = 0; i0 < n; i0 += BLK) {
        int nb = IMS_MIN(BLK, n - i0);
        for (int b2 = 0; b2 < nb; b2++)
            memcpy(y + (size_t)(i0 + b2) * d, bias, (size_t)d * sizeof *y);
        for (int p = 0; p < d; p++) {
            const float *mp = M + (size_t)p * d;
            for (int b2 = 0; b2 < nb; b2++) {
                float c = u[(size_t)(i0 + b2) * d + p], *yi = y + (size_t)(i0 + b2) * d;
                for (int q = 0; q < d; q++)
                    yi[q] += c * mp[q];
            }
        }
        for (int b2 = 0; b2 < nb; b2++) {
            float *yi = y + (size_t)(i0 + b2) * d, s = ims__inv_l2(yi, d);
            for (int q = 0; q < d; q++)
                yi[q] *= s;
        }
    }
}

void ims__whiten_rows_search(const float *M, const float *bias, int d, const float *u, int n,
                             float *y)
{
    ims_nn_init(); /* OpenBLAS on one thread */
    for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * d, bias, (size_t)d * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, d, 1.0f, u, d, M, d, 1.0f, y, d);
    for (int i = 0; i < n; i++) {
        float *yi = y + (size_t)i * d, s = ims__inv_l2(yi, d);
        for (int q = 0; q < d; q++)
            yi[q] *= s;
    }
}
