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
 * Cost: m^2 d (Gram, V) + m^3 (eigen) + r d^2 (M), in double, in a fixed
 * order (deterministic; no BLAS). Measured in bench/RESULTS-finetune.md.
 */
#include <math.h>
#include <string.h>

#include "train/train_int.h"

/* Rows per block in the d x d loops: keeps the block's accumulators in
 * cache while the big operand (V, M) streams once per block. */
#define BLK 16

int ims__whiten_fit(const float *u, const int *rows, int m, int d, double a, int rank, float *M,
                    float *bias, ims_error *err)
{
    IMS_ASSERT(u && M && bias && m >= 1 && d >= 1 && a > 0 && a <= 1);
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
    /* Gram matrix, four dot products at a time (independent sums, each in
     * index order: the values of one-at-a-time loops, without one long
     * dependency chain) */
    for (int i = 0; i < m; i++) {
        const double *xi = X + (size_t)i * d;
        int j = 0;
        for (; j + 4 <= i + 1; j += 4) {
            const double *x0 = X + (size_t)j * d, *x1 = x0 + d, *x2 = x1 + d, *x3 = x2 + d;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int t = 0; t < d; t++) {
                s0 += xi[t] * x0[t];
                s1 += xi[t] * x1[t];
                s2 += xi[t] * x2[t];
                s3 += xi[t] * x3[t];
            }
            G[(size_t)i * m + j] = G[(size_t)j * m + i] = s0;
            G[(size_t)i * m + j + 1] = G[(size_t)(j + 1) * m + i] = s1;
            G[(size_t)i * m + j + 2] = G[(size_t)(j + 2) * m + i] = s2;
            G[(size_t)i * m + j + 3] = G[(size_t)(j + 3) * m + i] = s3;
        }
        for (; j <= i; j++) {
            const double *xj = X + (size_t)j * d;
            double s = 0;
            for (int t = 0; t < d; t++)
                s += xi[t] * xj[t];
            G[(size_t)i * m + j] = G[(size_t)j * m + i] = s;
        }
    }
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
    if (ims__eigen_sym_ql(G, m, lam, U))
        goto done;
    int r = 0;
    while (r < m && lam[r] > 1e-9 * lam[0])
        r++;
    if (rank > 0 && rank < r)
        r = rank;
    double sp = rank > 0 ? 0 : 1; /* weight outside the kept directions */
    V = ims_calloc((size_t)r * d + 1, sizeof *V);
    acc = ims_malloc((size_t)BLK * d * sizeof *acc);
    if (!V || !acc)
        goto done;
    /* v_i = X^T U_i / sqrt(lam_i) (unit), BLK rows of V at a time (the
     * block stays in cache while X streams; each value sums over j in
     * order) */
    for (int i0 = 0; i0 < r; i0 += BLK) {
        int nb = IMS_MIN(BLK, r - i0);
        for (int j = 0; j < m; j++) {
            const double *xj = X + (size_t)j * d;
            for (int i = i0; i < i0 + nb; i++) {
                double c = U[(size_t)j * m + i];
                double *vi = V + (size_t)i * d;
                for (int t = 0; t < d; t++)
                    vi[t] += c * xj[t];
            }
        }
    }
    for (int i = 0; i < r; i++) {
        double c = 1 / sqrt(lam[i]);
        for (int t = 0; t < d; t++)
            V[(size_t)i * d + t] *= c;
    }
    for (int i = 0; i < r; i++) /* lam[i] becomes s_i - sp */
        lam[i] = sqrt(b) / sqrt((1 - a) * lam[i] / m + b) - sp;
    /* M = sp I + V^T diag(s - sp) V, BLK rows at a time (each V row read
     * once per block: V is r x d doubles, megabytes), upper half from the
     * block's first row, mirrored */
    for (int p0 = 0; p0 < d; p0 += BLK) {
        int nb = IMS_MIN(BLK, d - p0);
        for (int b2 = 0; b2 < nb; b2++)
            for (int q = p0; q < d; q++)
                acc[(size_t)b2 * d + q] = p0 + b2 == q ? sp : 0;
        for (int i = 0; i < r; i++) {
            const double *vi = V + (size_t)i * d;
            for (int b2 = 0; b2 < nb; b2++) {
                double c = vi[p0 + b2] * lam[i], *ab = acc + (size_t)b2 * d;
                for (int q = p0; q < d; q++)
                    ab[q] += c * vi[q];
            }
        }
        for (int b2 = 0; b2 < nb; b2++) {
            int p = p0 + b2;
            for (int q = p; q < d; q++)
                M[(size_t)p * d + q] = M[(size_t)q * d + p] = (float)acc[(size_t)b2 * d + q];
        }
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
    if (rc)
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
