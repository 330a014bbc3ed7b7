/* SPDX-License-Identifier: MIT */
/*
 * linalg.c — the little dense linear algebra LDA needs, in double and in a
 * fixed order (no BLAS: results must not depend on a library's threading):
 * Cholesky factorisation and solves, and a cyclic Jacobi eigen-solver for
 * the small (classes x classes) symmetric problems.
 */
#include <math.h>
#include <string.h>

#include "train/train_int.h"

int ims__cholesky(double *a, int n)
{
    for (int j = 0; j < n; j++) {
        double *aj = a + (size_t)j * n;
        double s = aj[j];
        for (int k = 0; k < j; k++)
            s -= aj[k] * aj[k];
        if (!(s > 0))
            return -1;
        double l = sqrt(s);
        aj[j] = l;
        for (int i = j + 1; i < n; i++) {
            double *ai = a + (size_t)i * n;
            double t = ai[j];
            for (int k = 0; k < j; k++)
                t -= ai[k] * aj[k];
            ai[j] = t / l;
        }
    }
    return 0;
}

void ims__cholesky_solve(const double *L, int n, double *B, int m)
{
    /* forward: L Y = B */
    for (int i = 0; i < n; i++) {
        const double *li = L + (size_t)i * n;
        double *bi = B + (size_t)i * m;
        for (int k = 0; k < i; k++) {
            const double *bk = B + (size_t)k * m;
            double f = li[k];
            for (int c = 0; c < m; c++)
                bi[c] -= f * bk[c];
        }
        for (int c = 0; c < m; c++)
            bi[c] /= li[i];
    }
    /* backward: L^T X = Y */
    for (int i = n - 1; i >= 0; i--) {
        double *bi = B + (size_t)i * m;
        for (int k = i + 1; k < n; k++) {
            const double *bk = B + (size_t)k * m;
            double f = L[(size_t)k * n + i];
            for (int c = 0; c < m; c++)
                bi[c] -= f * bk[c];
        }
        for (int c = 0; c < m; c++)
            bi[c] /= L[(size_t)i * n + i];
    }
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
