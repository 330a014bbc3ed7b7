/* SPDX-License-Identifier: MIT */
/*
 * linalg.c — the little dense linear algebra LDA and the whitening need,
 * in double: Cholesky factorisation and solves, a cyclic Jacobi eigen-solver
 * for the small (classes x classes) symmetric problems, and LAPACK's
 * divide-and-conquer one (dsyevd) for the whitening's m x m Gram matrix.
 * BLAS and LAPACK calls run on OpenBLAS, which ims_nn_init pins to one
 * thread for the whole process (nn/gemm.c): each call's result then does
 * not depend on a thread count, and the bytes are the same run to run on
 * one machine (OpenBLAS picks its kernels by CPU).
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "imgsim/nn.h"
#include "nn/blas_int.h"
#include "train/train_int.h"

int ims__cholesky(double *a, int n)
{
    ims_nn_init(); /* OpenBLAS on one thread */
    int info = 0;
    /* row-major lower = column-major upper: A = U^T U there is L L^T here */
    dpotrf_("U", &n, a, &n, &info, 1);
    return info ? -1 : 0;
}

void ims__cholesky_solve(const double *L, int n, double *B, int m)
{
    ims_nn_init();
    /* forward L Y = B, backward L^T X = Y */
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n, m, 1.0, L, n,
                B, m);
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, m, 1.0, L, n, B,
                m);
}

void ims__eigen_sym(double *a, int n, double *w, double *v)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            v[(size_t)i * n + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, tot = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double x = a[(size_t)i * n + j] * a[(size_t)i * n + j];
                tot += x;
                if (i != j)
                    off += x;
            }
        if (off <= 1e-30 * tot || off == 0)
            break;
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[(size_t)p * n + q];
                if (fabs(apq) < 1e-300)
                    continue;
                double app = a[(size_t)p * n + p], aqq = a[(size_t)q * n + q];
                double theta = (aqq - app) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    double akp = a[(size_t)k * n + p], akq = a[(size_t)k * n + q];
                    a[(size_t)k * n + p] = c * akp - s * akq;
                    a[(size_t)k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    double apk = a[(size_t)p * n + k], aqk = a[(size_t)q * n + k];
                    a[(size_t)p * n + k] = c * apk - s * aqk;
                    a[(size_t)q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = v[(size_t)k * n + p], vkq = v[(size_t)k * n + q];
                    v[(size_t)k * n + p] = c * vkp - s * vkq;
                    v[(size_t)k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++)
        w[i] = a[(size_t)i * n + i];
    /* sort descending (selection sort: n is small), columns follow */
    for (int i = 0; i < n; i++) {
        int b = i;
        for (int j = i + 1; j < n; j++)
            if (w[j] > w[b])
                b = j;
        if (b == i)
            continue;
        double t = w[i];
        w[i] = w[b], w[b] = t;
        for (int k = 0; k < n; k++) {
            double x = v[(size_t)k * n + i];
            v[(size_t)k * n + i] = v[(size_t)k * n + b];
            v[(size_t)k * n + b] = x;
        }
    }
}

int ims__eigen_sym_lapack(double *a, int n, double *w, double *v)
{
    ims_nn_init(); /* OpenBLAS on one thread (the bytes must not depend on its split) */
    int lwork = -1, liwork = -1, iq, info = 0;
    double q;
    /* a is symmetric: its row-major storage is its column-major one */
    dsyevd_("V", "U", &n, a, &n, w, &q, &lwork, &iq, &liwork, &info, 1, 1);
    if (info)
        return 1;
    lwork = (int)q, liwork = iq;
    double *work = ims_malloc((size_t)lwork * sizeof *work);
    int *iwork = ims_malloc((size_t)liwork * sizeof *iwork);
    if (work && iwork)
        dsyevd_("V", "U", &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    int oom = !work || !iwork;
    ims_free(work), ims_free(iwork);
    if (oom)
        return -1;
    if (info)
        return 1;
    /* ascending, eigenvector j in column-major column j = row-major row j:
     * reverse to descending, eigenvectors as columns */
    for (int i = 0; i < n / 2; i++) {
        double t = w[i];
        w[i] = w[n - 1 - i], w[n - 1 - i] = t;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            v[(size_t)i * n + j] = a[(size_t)(n - 1 - j) * n + i];
    return 0;
}
