/* SPDX-License-Identifier: MIT */
/*
 * metrics.c — retrieval metrics over similarity matrices, used to choose
 * hyper-parameters on the validation split (head.c) and by the bench.
 * Ranking ties are broken by the lower item index, so results are exact
 * and repeatable.
 */
#include <cblas.h>
#include <string.h>

#include "imgsim/nn.h"
#include "train/train_int.h"

#define TOPK 10

int ims__top_k(const float *s, int n, int skip, int k, int *out)
{
    int m = 0;
    for (int j = 0; j < n; j++) {
        if (j == skip)
            continue;
        if (m == k && !(s[j] > s[out[m - 1]]))
            continue;
        int p = m < k ? m++ : k - 1;
        while (p > 0 && s[j] > s[out[p - 1]]) {
            out[p] = out[p - 1];
            p--;
        }
        out[p] = j;
    }
    return m;
}

void ims__sim(const float *e, const int *q_idx, int n_q, const float *f, int n, int dim, float *S)
{
    ims_nn_init(); /* OpenBLAS on one thread */
    /* the query rows gathered, then one S = Q F^T; without the memory for
     * Q, one product per query */
    float *Q = ims_malloc((size_t)n_q * dim * sizeof *Q + 1);
    if (!Q) {
        for (int q = 0; q < n_q; q++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, dim, 1.0f, f, dim,
                        e + (size_t)q_idx[q] * dim, 1, 0.0f, S + (size_t)q * n, 1);
        return;
    }
    for (int q = 0; q < n_q; q++)
        memcpy(Q + (size_t)q * dim, e + (size_t)q_idx[q] * dim, (size_t)dim * sizeof *Q);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_q, n, dim, 1.0f, Q, dim, f, dim, 0.0f, S,
                n);
    ims_free(Q);
}

void ims__retrieval(const float *S, int n_q, int n, const int *q_idx, const int *labels, double *p1,
                    double *p5, double *p10, double *map10)
{
    double s1 = 0, s5 = 0, s10 = 0, sap = 0;
    int top[TOPK];
    for (int q = 0; q < n_q; q++) {
        int self = q_idx[q], lab = labels[self];
        int m = ims__top_k(S + (size_t)q * n, n, self, TOPK, top);
        int rel = 0;
        for (int j = 0; j < n; j++)
            rel += j != self && labels[j] == lab;
        int hits = 0;
        double ap = 0;
        for (int r = 0; r < m; r++) {
            if (labels[top[r]] != lab)
                continue;
            hits++;
            ap += (double)hits / (r + 1);
            if (r < 1)
                s1 += 1;
            if (r < 5)
                s5 += 1;
            s10 += 1;
        }
        int norm = IMS_MIN(TOPK, rel);
        sap += norm ? ap / norm : 0;
    }
    if (p1)
        *p1 = n_q ? s1 / n_q : 0;
    if (p5)
        *p5 = n_q ? s5 / (5.0 * n_q) : 0;
    if (p10)
        *p10 = n_q ? s10 / (10.0 * n_q) : 0;
    if (map10)
        *map10 = n_q ? sap / n_q : 0;
}

void ims__instance_recall(const float *S, int n_q, int n, const int *q_idx, double *r1, double *r10)
{
    int h1 = 0, h10 = 0, top[TOPK];
    for (int q = 0; q < n_q; q++) {
        int m = ims__top_k(S + (size_t)q * n, n, -1, TOPK, top);
        for (int r = 0; r < m; r++)
            if (top[r] == q_idx[q]) {
                h1 += r == 0;
                h10++;
                break;
            }
    }
    if (r1)
        *r1 = n_q ? (double)h1 / n_q : 0;
    if (r10)
        *r10 = n_q ? (double)h10 / n_q : 0;
}
