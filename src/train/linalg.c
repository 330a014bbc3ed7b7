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

/* Householder reduction of the symmetric n x n matrix v (in place) to
 * tridiagonal form: diagonal d, sub-diagonal e (e[0] = 0); v becomes the
 * TRANSPOSE of the accumulated orthogonal transformation (EISPACK tred2,
 * as in JAMA, on transposed storage: JAMA's inner loops walk columns,
 * here they walk contiguous rows; the input is symmetric, so it is its own
 * transpose). */
static void tred2(double *v, int n, double *d, double *e)
{
#define V(i, j) v[(size_t)(j)*n + (i)]
    for (int j = 0; j < n; j++)
        d[j] = V(n - 1, j);
    for (int i = n - 1; i > 0; i--) {
        double scale = 0, h = 0;
        for (int k = 0; k < i; k++)
            scale += fabs(d[k]);
        if (scale == 0) {
            e[i] = d[i - 1];
            for (int j = 0; j < i; j++) {
                d[j] = V(i - 1, j);
                V(i, j) = 0;
                V(j, i) = 0;
            }
        } else {
            for (int k = 0; k < i; k++) {
                d[k] /= scale;
                h += d[k] * d[k];
            }
            double f = d[i - 1], g = sqrt(h);
            if (f > 0)
                g = -g;
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for (int j = 0; j < i; j++)
                e[j] = 0;
            for (int j = 0; j < i; j++) {
                f = d[j];
                V(j, i) = f;
                g = e[j] + V(j, j) * f;
                for (int k = j + 1; k <= i - 1; k++) {
                    g += V(k, j) * d[k];
                    e[k] += V(k, j) * f;
                }
                e[j] = g;
            }
            f = 0;
            for (int j = 0; j < i; j++) {
                e[j] /= h;
                f += e[j] * d[j];
            }
            double hh = f / (h + h);
            for (int j = 0; j < i; j++)
                e[j] -= hh * d[j];
            for (int j = 0; j < i; j++) {
                f = d[j];
                g = e[j];
                for (int k = j; k <= i - 1; k++)
                    V(k, j) -= f * e[k] + g * d[k];
                d[j] = V(i - 1, j);
                V(i, j) = 0;
            }
        }
        d[i] = h;
    }
    for (int i = 0; i < n - 1; i++) {
        V(n - 1, i) = V(i, i);
        V(i, i) = 1;
        double h = d[i + 1];
        if (h != 0) {
            for (int k = 0; k <= i; k++)
                d[k] = V(k, i + 1) / h;
            for (int j = 0; j <= i; j++) {
                double g = 0;
                for (int k = 0; k <= i; k++)
                    g += V(k, i + 1) * V(k, j);
                for (int k = 0; k <= i; k++)
                    V(k, j) -= g * d[k];
            }
        }
        for (int k = 0; k <= i; k++)
            V(k, i + 1) = 0;
    }
    for (int j = 0; j < n; j++) {
        d[j] = V(n - 1, j);
        V(n - 1, j) = 0;
    }
    V(n - 1, n - 1) = 1;
    e[0] = 0;
#undef V
}

/* Implicit QL on the tridiagonal (d, e) from tred2 (EISPACK tql2). z holds
 * the transformation's transpose (tred2's output as it is: row i = column i
 * of the transformation), so the rotations walk contiguous rows. d becomes
 * the eigenvalues, row i of z the eigenvector of d[i]. */
static void tql2(double *z, int n, double *d, double *e)
{
    for (int i = 1; i < n; i++)
        e[i - 1] = e[i];
    e[n - 1] = 0;
    double f = 0, tst1 = 0;
    const double eps = 0x1p-52;
    for (int l = 0; l < n; l++) {
        double t = fabs(d[l]) + fabs(e[l]);
        tst1 = t > tst1 ? t : tst1;
        int m = l;
        while (m < n - 1 && !(fabs(e[m]) <= eps * tst1))
            m++;
        if (m > l) {
            for (int iter = 0; iter < 64; iter++) {
                double g = d[l];
                double p = (d[l + 1] - g) / (2 * e[l]);
                double r = hypot(p, 1);
                if (p < 0)
                    r = -r;
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                double dl1 = d[l + 1], h = g - d[l];
                for (int i = l + 2; i < n; i++)
                    d[i] -= h;
                f += h;
                p = d[m];
                double c = 1, c2 = 1, c3 = 1, el1 = e[l + 1], s = 0, s2 = 0;
                for (int i = m - 1; i >= l; i--) {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = hypot(p, e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    double *zi = z + (size_t)i * n, *zi1 = zi + n;
                    for (int k = 0; k < n; k++) {
                        double a = zi1[k], b = zi[k];
                        zi1[k] = s * b + c * a;
                        zi[k] = c * b - s * a;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if (!(fabs(e[l]) > eps * tst1))
                    break;
            }
        }
        d[l] += f;
        e[l] = 0;
    }
}

int ims__eigen_sym_ql(double *a, int n, double *w, double *v)
{
    double *e = ims_malloc((size_t)n * sizeof *e);
    if (!e)
        return -1;
    tred2(a, n, w, e);
    memcpy(v, a, (size_t)n * n * sizeof *v); /* row i = the transformation's column i */
    tql2(v, n, w, e);
    ims_free(e);
    /* sort descending (selection sort), rows follow; then transpose so the
     * eigenvectors are columns, as ims__eigen_sym gives them */
    for (int i = 0; i < n; i++) {
        int b = i;
        for (int j = i + 1; j < n; j++)
            if (w[j] > w[b])
                b = j;
        if (b == i)
            continue;
        double t = w[i];
        w[i] = w[b], w[b] = t;
        double *ri = v + (size_t)i * n, *rb = v + (size_t)b * n;
        for (int k = 0; k < n; k++)
            t = ri[k], ri[k] = rb[k], rb[k] = t;
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double t = v[(size_t)i * n + j];
            v[(size_t)i * n + j] = v[(size_t)j * n + i];
            v[(size_t)j * n + i] = t;
        }
    return 0;
}
