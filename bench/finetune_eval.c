/* SPDX-License-Identifier: MIT */
/*
 * finetune_eval.c — held-out evaluation of raw taps, the seed method and
 * the trained heads (issue 7), from cached backbone features.
 *
 *   bench_finetune_eval --model M.ism --taps TAPS.txt --list FILES.txt
 *                       --orig ORIG.fvecs --dist DIST.fvecs [--seeds N]
 *                       [--raw] [--use I,J,..] [--seed-tap I]
 * TAPS.txt: the tap names (one a line) in the order the .fvecs rows
 * concatenate them (`imgsim embed --layer A --layer B ...`); FILES.txt the
 * images (already deduplicated), label = parent folder; DIST.fvecs the
 * features of one distorted copy per image (bench_distort_copies).
 *
 * Protocol, per split seed (1..N, averaged): stratified 20% validation
 * split (ims_train_split); heads train on the training items only (the
 * FUSION+aug head also sees the training items' distorted copies); every
 * item is embedded; each validation item queries all other items (hit =
 * same category): P@1/5/10, mAP@10; each validation item's distorted copy
 * queries all items: instance recall@1/@10 of its original.
 * --raw: every single tap and every pair of taps, raw (unit taps only).
 * Otherwise, on the taps of --use: raw, seed MLP (on --seed-tap), LDA,
 * FUSION (w capped, no copies) and FUSION+aug (w guarded by copies).
 *
 * Experiments (environment; bench/RESULTS-finetune.md lists the outcomes):
 *   BENCH_ONLY=raw,lda,...   run only these methods (raw, rawseed, seed, lda,
 *                            fusion, fusion+aug, lda+aug)
 *   BENCH_W=w, BENCH_DIM=k   fixed fusion weight / LDA dims
 *   BENCH_WHITEN=a           shrunk PCA whitening of the unit taps (learned
 *                            on the training items, shrinkage a,
 *                            ims__whiten_fit) before everything, the head's
 *                            own whitening off; BENCH_WRANK=r keeps r
 *                            components
 *   BENCH_WRAW=a             the head's whitening of the fusion's raw part
 *                            (ims_train_opts.whiten: the LDA still sees the
 *                            unit taps) with shrinkage a; 0 = off. Unset:
 *                            the library's default (on, a = .3)
 *   BENCH_RERANK=alpha,tau   two-part score z.z' + alpha u.u', items with
 *                            u.u' > tau first (near-duplicate guard)
 *   BENCH_PRIOR=g,tau,log    fused cosine + g p(item's category | query)
 *                            from the head's classifier (log=1: log p),
 *                            with the same guard
 *   BENCH_GALLERY=train      category queries search the training items
 *                            only (imgsim eval's protocol)
 *   BENCH_SQRT=1, BENCH_LEAK=1  signed square root; train on all items
 *   BENCH_QE=n,alpha[,mode]  alpha-query expansion (Radenovic et al.) of the
 *                            category queries and the copies alike: q' =
 *                            normalise(q + sum_{top n} max(s_i,0)^alpha x_i),
 *                            search again. mode 0 all n neighbours; 1 only
 *                            labelled (training) ones of the top-n's majority
 *                            label; 2 only mutual ones (q in x_i's own top-n);
 *                            3 unlabelled ones and labelled ones of the
 *                            majority; +10: expand only the LDA part of a
 *                            fused vector (the raw part's norm kept).
 *                            BENCH_QE_MAX=1: score max(s, s')
 *   BENCH_DBA=n,alpha[,mode] database-side augmentation: every gallery vector
 *                            averaged with its top-n training-item
 *                            neighbours (the held-out items never enter
 *                            another vector), same weights; mode 1 label-
 *                            aware (a training item with its own label's
 *                            neighbours, a held-out one with its top-n's
 *                            majority; 2: the same, held-out items not
 *                            augmented); +10 the LDA part only. Combines with
 *                            BENCH_QE (expansion over the augmented gallery)
 *   BENCH_KRR=k1,k2,lambda   k-reciprocal re-ranking (Zhong et al. 2017):
 *                            (1-lambda) Jaccard distance of the expanded
 *                            k1-reciprocal sets (k2 local expansion) +
 *                            lambda (2 - 2 cos), the query inserted into the
 *                            gallery's neighbour lists (its own item out)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imgsim/nn.h"
#include "imgsim/train.h"
#include "train/train_int.h"

#define MAX_TAPS 16

static float *read_fvecs(const char *path, int *n, int *dim)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    int d;
    if (fread(&d, 4, 1, f) != 1) {
        fclose(f);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    int m = (int)(len / (4 + 4L * d));
    float *x = malloc((size_t)m * d * sizeof *x);
    for (int i = 0; i < m; i++) {
        int dd;
        if (fread(&dd, 4, 1, f) != 1 || dd != d ||
            fread(x + (size_t)i * d, 4, (size_t)d, f) != (size_t)d) {
            fclose(f);
            free(x);
            return NULL;
        }
    }
    fclose(f);
    *n = m, *dim = d;
    return x;
}

typedef struct bench {
    int n, D, n_taps, tap_dim[MAX_TAPS], tap_off[MAX_TAPS];
    char tap_name[MAX_TAPS][256];
    float *orig, *dist;
    int *labels, n_classes;
    int n_seeds;
} bench;

/* Columns of the chosen taps from a full row matrix (n x D) into out. */
static float *select_taps(const bench *b, const float *x, const int *use, int n_use, int *d)
{
    int dd = 0;
    for (int t = 0; t < n_use; t++)
        dd += b->tap_dim[use[t]];
    float *o = malloc((size_t)b->n * dd * sizeof *o);
    for (int i = 0; i < b->n; i++) {
        int off = 0;
        for (int t = 0; t < n_use; t++) {
            memcpy(o + (size_t)i * dd + off, x + (size_t)i * b->D + b->tap_off[use[t]],
                   (size_t)b->tap_dim[use[t]] * sizeof *o);
            off += b->tap_dim[use[t]];
        }
    }
    *d = dd;
    return o;
}

typedef struct result {
    double p1, p5, p10, map, r1, r10, w, shrink, acc, secs;
} result;

/* Category scores of S (nq x n, rows = validation items q[]): against all
 * other items, or with BENCH_GALLERY=train against the training items only
 * (imgsim eval's protocol: the gallery the head was trained on). */
static void cat_scores(const bench *b, const float *S, const int *q, int nq,
                       const unsigned char *is_val, double *p1, double *p5, double *p10,
                       double *map)
{
    const char *g = getenv("BENCH_GALLERY");
    if (!g || strcmp(g, "train")) {
        ims__retrieval(S, nq, b->n, q, b->labels, p1, p5, p10, map);
        return;
    }
    int ng = 0, *lab = malloc((size_t)(b->n + nq) * sizeof *lab),
        *qi = malloc((size_t)nq * sizeof *qi);
    float *T = malloc((size_t)nq * b->n * sizeof *T);
    for (int j = 0; j < b->n; j++)
        if (!is_val[j])
            lab[ng++] = b->labels[j];
    for (int a = 0; a < nq; a++) {
        lab[ng + a] = b->labels[q[a]], qi[a] = ng + a;
        int c = 0;
        for (int j = 0; j < b->n; j++)
            if (!is_val[j])
                T[(size_t)a * ng + c++] = S[(size_t)a * b->n + j];
    }
    ims__retrieval(T, nq, ng, qi, lab, p1, p5, p10, map);
    free(lab), free(qi), free(T);
}

/* Query-time re-ranking from the gallery's own neighbourhoods (issue 7,
 * BENCH_QE / BENCH_DBA). G: the gallery (n x dim, unit rows). */

static void unit_row(float *v, int dim)
{
    double s = 0;
    for (int t = 0; t < dim; t++)
        s += (double)v[t] * v[t];
    float k = s > 0 ? (float)(1 / sqrt(s)) : 0;
    for (int t = 0; t < dim; t++)
        v[t] *= k;
}

/* After expanding v from o in dims [lo, dim): lo = 0, normalise v; else
 * give v[lo..dim) the norm of o[lo..dim) (only the LDA part of a fused
 * vector moves, so the raw part keeps its weight). */
static void qe_finish(float *v, const float *o, int dim, int lo)
{
    if (!lo) {
        unit_row(v, dim);
        return;
    }
    double a = 0, c = 0;
    for (int t = lo; t < dim; t++)
        a += (double)o[t] * o[t], c += (double)v[t] * v[t];
    float k = c > 0 ? (float)sqrt(a / c) : 0;
    for (int t = lo; t < dim; t++)
        v[t] *= k;
}

static float qe_weight(float s, double alpha) { return s > 0 ? (float)pow(s, alpha) : 0; }

/* Majority label of the labelled (training) items among top[0..m), ties
 * broken by the larger summed similarity; -1 if none is labelled. */
static int qe_majority(const bench *b, const int *top, int m, const float *s,
                       const unsigned char *is_val)
{
    int cnt[64] = {0}, best = -1;
    double sum[64] = {0};
    for (int r = 0; r < m; r++) {
        int i = top[r];
        if (is_val[i])
            continue;
        cnt[b->labels[i]]++, sum[b->labels[i]] += s[i];
    }
    for (int c = 0; c < b->n_classes; c++)
        if (cnt[c] &&
            (best < 0 || cnt[c] > cnt[best] || (cnt[c] == cnt[best] && sum[c] > sum[best])))
            best = c;
    return best;
}

/* Whether neighbour i is usable for expansion under mode (0 all, 1 the
 * top-n's majority label among labelled items, 2 mutual: the query would be
 * in i's own top-n among the gallery, self excluded). kth: for each item its
 * n best gallery similarities (excluding itself), nb[i*(n+1)..] their
 * indices, of n + 1 so that one excluded item can be skipped. */
static int qe_usable(const bench *b, int mode, int i, int maj, float s_qi, const float *kth,
                     const int *nb, int n_qe, int self, const unsigned char *is_val)
{
    if (mode == 1)
        return !is_val[i] && b->labels[i] == maj;
    if (mode == 3) /* unlabelled neighbours, and labelled ones of the majority */
        return is_val[i] || b->labels[i] == maj;
    if (mode == 2) {
        /* the n-th best of i's neighbours other than the query's own item */
        const int *ni = nb + (size_t)i * (n_qe + 1);
        for (int r = 0, c = 0; r <= n_qe; r++)
            if (ni[r] != self && ++c == n_qe)
                return s_qi >= kth[(size_t)i * (n_qe + 1) + r];
        return 1;
    }
    return 1;
}

/* Alpha-query expansion (Radenovic et al.): each row a of S (nq x n, the
 * query Q[a] against G) is replaced by the similarities of
 * normalise(Q[a] + sum_{top-n, usable} max(s_i, 0)^alpha G_i) with G.
 * self[a]: the gallery item to skip (the query's own item) or -1. */
static void qe_expand(const bench *b, const float *G, int dim, int lo, const float *Q,
                      const int *self, int nq, int n_qe, double alpha, int mode,
                      const unsigned char *is_val, float *S)
{
    int n = b->n, *top = malloc((size_t)n_qe * sizeof *top);
    int keep_max = getenv("BENCH_QE_MAX") && atoi(getenv("BENCH_QE_MAX"));
    float *v = malloc((size_t)dim * sizeof *v), *kth = NULL;
    int *nb = NULL;
    if (mode == 2) {
        /* each item's n + 1 best gallery neighbours */
        float *row = malloc((size_t)n * sizeof *row);
        kth = malloc((size_t)n * (n_qe + 1) * sizeof *kth);
        nb = malloc((size_t)n * (n_qe + 1) * sizeof *nb);
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int t = 0; t < dim; t++)
                    s += G[(size_t)i * dim + t] * G[(size_t)j * dim + t];
                row[j] = (float)s;
            }
            int m = ims__top_k(row, n, i, n_qe + 1, nb + (size_t)i * (n_qe + 1));
            for (int r = 0; r < m; r++)
                kth[(size_t)i * (n_qe + 1) + r] = row[nb[(size_t)i * (n_qe + 1) + r]];
        }
        free(row);
    }
    for (int a = 0; a < nq; a++) {
        float *s = S + (size_t)a * n;
        int m = ims__top_k(s, n, self[a], n_qe, top);
        int maj = mode == 1 || mode == 3 ? qe_majority(b, top, m, s, is_val) : -1;
        memcpy(v, Q + (size_t)a * dim, (size_t)dim * sizeof *v);
        for (int r = 0; r < m; r++) {
            int i = top[r];
            if (!qe_usable(b, mode, i, maj, s[i], kth, nb, n_qe, self[a], is_val))
                continue;
            float w = qe_weight(s[i], alpha);
            for (int t = lo; t < dim; t++)
                v[t] += w * G[(size_t)i * dim + t];
        }
        qe_finish(v, Q + (size_t)a * dim, dim, lo);
        for (int j = 0; j < n; j++) {
            float d = 0;
            for (int t = 0; t < dim; t++)
                d += v[t] * G[(size_t)j * dim + t];
            s[j] = keep_max && s[j] > d ? s[j] : d;
        }
    }
    free(top), free(v), free(kth), free(nb);
}

/* Database-side augmentation: each gallery row becomes normalise(G_j +
 * sum max(s,0)^alpha G_i) over its n best neighbours among the training
 * items (the held-out queries never enter another item's vector); mode 1:
 * a training item only with neighbours of its own label, a held-out item
 * with its top-n's majority label. Returns a new n x dim matrix. */
static float *dba(const bench *b, const float *G, int dim, int lo, int n_db, double alpha, int mode,
                  const unsigned char *is_val)
{
    int n = b->n, *top = malloc((size_t)n * sizeof *top);
    float *row = malloc((size_t)n * sizeof *row), *out = malloc((size_t)n * dim * sizeof *out);
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int t = 0; t < dim; t++)
                s += G[(size_t)i * dim + t] * G[(size_t)j * dim + t];
            row[i] = is_val[i] || i == j ? -2.0f : (float)s;
        }
        if (mode == 2 && is_val[j]) { /* mode 2: held-out items keep their vectors */
            memcpy(out + (size_t)j * dim, G + (size_t)j * dim, (size_t)dim * sizeof *out);
            continue;
        }
        int k = mode >= 1 && !is_val[j] ? n : n_db;
        int m = ims__top_k(row, n, j, k, top);
        int lab = mode >= 1 ? (is_val[j] ? qe_majority(b, top, m, row, is_val) : b->labels[j]) : -1;
        float *v = out + (size_t)j * dim;
        memcpy(v, G + (size_t)j * dim, (size_t)dim * sizeof *v);
        for (int r = 0, used = 0; r < m && used < n_db; r++) {
            int i = top[r];
            if (row[i] < -1 || (mode >= 1 && b->labels[i] != lab))
                continue;
            float w = qe_weight(row[i], alpha);
            for (int t = lo; t < dim; t++)
                v[t] += w * G[(size_t)i * dim + t];
            used++;
        }
        qe_finish(v, G + (size_t)j * dim, dim, lo);
    }
    free(top), free(row);
    return out;
}

/* k-reciprocal re-ranking (Zhong et al. 2017), one query at a time. */
typedef struct krr {
    int n, k1, k2, self; /* nodes 0..n-1 the gallery (self: skipped), n the query */
    double lambda;
    const float *GG, *s; /* gallery x gallery, query x gallery similarities */
    const int *nbr;      /* each gallery item's k1 + 1 best others, descending */
    int *F;              /* (n + 1) x k1: each node's k1 best other nodes */
    float *V, *W;        /* (n + 1) x (n + 1) */
    int *R, *Rc, *Rs;
    unsigned char *mark;
} krr;

static float krr_sim(const krr *k, int a, int b)
{
    if (a == k->n)
        return k->s[b];
    if (b == k->n)
        return k->s[a];
    return k->GG[(size_t)a * k->n + b];
}

/* Whether a is among b's first m forward neighbours (or is b). */
static int krr_in(const krr *k, int a, int b, int m)
{
    if (a == b)
        return 1;
    for (int r = 0; r < m; r++)
        if (k->F[(size_t)b * k->k1 + r] == a)
            return 1;
    return 0;
}

/* The m-reciprocal neighbours of i (itself included) into out; count. */
static int krr_recip(const krr *k, int i, int m, int *out)
{
    int c = 0;
    out[c++] = i;
    for (int r = 0; r < m; r++) {
        int j = k->F[(size_t)i * k->k1 + r];
        if (j >= 0 && krr_in(k, i, j, m))
            out[c++] = j;
    }
    return c;
}

/* Fills row a of S (n gallery scores) for the query with similarities s. */
static void krr_query(krr *k, float *S)
{
    int n = k->n, N = n + 1, k1 = k->k1, half = (k1 + 1) / 2;
    /* forward lists */
    for (int i = 0; i < N; i++) {
        int *f = k->F + (size_t)i * k1, c = 0;
        if (i == k->self) {
            for (int r = 0; r < k1; r++)
                f[r] = -1;
            continue;
        }
        if (i == n) {
            c = ims__top_k(k->s, n, k->self, k1, f);
        } else {
            int ins = 0;
            for (int r = 0; r <= k1 && c < k1; r++) {
                int j = k->nbr[(size_t)i * (k1 + 1) + r];
                if (!ins && k->s[i] > k->GG[(size_t)i * n + j])
                    f[c++] = n, ins = 1;
                if (c < k1 && j != k->self)
                    f[c++] = j;
            }
            if (!ins && c < k1)
                f[c++] = n;
        }
        for (; c < k1; c++)
            f[c] = -1;
    }
    /* V: expanded k-reciprocal sets, Gaussian-weighted, rows summing to 1 */
    memset(k->V, 0, (size_t)N * N * sizeof *k->V);
    for (int i = 0; i < N; i++) {
        if (i == k->self)
            continue;
        int nr = krr_recip(k, i, k1, k->R);
        memset(k->mark, 0, (size_t)N);
        for (int r = 0; r < nr; r++)
            k->mark[k->R[r]] = 1;
        int ns = 0;
        for (int r = 0; r < nr; r++)
            k->Rs[ns++] = k->R[r];
        for (int r = 0; r < nr; r++) {
            int nc = krr_recip(k, k->R[r], half, k->Rc), both = 0;
            for (int t = 0; t < nc; t++)
                both += k->mark[k->Rc[t]] & 1;
            if (3 * both > 2 * nc)
                for (int t = 0; t < nc; t++)
                    if (!k->mark[k->Rc[t]])
                        k->mark[k->Rc[t]] = 2, k->Rs[ns++] = k->Rc[t];
        }
        double sum = 0;
        float *v = k->V + (size_t)i * N;
        for (int r = 0; r < ns; r++) {
            int g = k->Rs[r];
            v[g] = (float)exp(-(2 - 2 * (double)krr_sim(k, i, g)));
            sum += v[g];
        }
        for (int r = 0; r < ns; r++)
            v[k->Rs[r]] /= (float)sum;
    }
    /* local query expansion over each node's k2 nearest (itself included) */
    for (int i = 0; i < N; i++) {
        float *w = k->W + (size_t)i * N;
        memcpy(w, k->V + (size_t)i * N, (size_t)N * sizeof *w);
        if (i == k->self)
            continue;
        int m = 1;
        for (int r = 0; r < k->k2 - 1 && k->F[(size_t)i * k1 + r] >= 0; r++, m++) {
            const float *v = k->V + (size_t)k->F[(size_t)i * k1 + r] * N;
            for (int g = 0; g < N; g++)
                w[g] += v[g];
        }
        for (int g = 0; g < N; g++)
            w[g] /= (float)m;
    }
    const float *wq = k->W + (size_t)n * N;
    for (int g = 0; g < n; g++) {
        const float *wg = k->W + (size_t)g * N;
        double mn = 0;
        for (int t = 0; t < N; t++)
            mn += wq[t] < wg[t] ? wq[t] : wg[t];
        double dj = 1 - mn / (2 - mn), d0 = 2 - 2 * (double)k->s[g];
        S[g] = g == k->self ? -1e9f : (float)-((1 - k->lambda) * dj + k->lambda * d0);
    }
}

/* k-reciprocal re-ranking of every row of S (queries against G). */
static void krr_rerank(const bench *b, const float *G, int dim, const int *self, int nq, int k1,
                       int k2, double lambda, float *S)
{
    int n = b->n, N = n + 1;
    krr k = {.n = n, .k1 = k1, .k2 = k2, .lambda = lambda};
    float *GG = malloc((size_t)n * n * sizeof *GG);
    int *nbr = malloc((size_t)n * (k1 + 1) * sizeof *nbr);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int t = 0; t < dim; t++)
                s += G[(size_t)i * dim + t] * G[(size_t)j * dim + t];
            GG[(size_t)i * n + j] = (float)s;
        }
        ims__top_k(GG + (size_t)i * n, n, i, k1 + 1, nbr + (size_t)i * (k1 + 1));
    }
    k.GG = GG, k.nbr = nbr;
    k.F = malloc((size_t)N * k1 * sizeof *k.F);
    k.V = malloc((size_t)N * N * sizeof *k.V), k.W = malloc((size_t)N * N * sizeof *k.W);
    k.R = malloc((size_t)N * sizeof *k.R), k.Rc = malloc((size_t)N * sizeof *k.Rc);
    k.Rs = malloc((size_t)N * sizeof *k.Rs), k.mark = malloc((size_t)N);
    for (int a = 0; a < nq; a++) {
        k.self = self[a], k.s = S + (size_t)a * n;
        float *row = malloc((size_t)n * sizeof *row);
        krr_query(&k, row);
        memcpy(S + (size_t)a * n, row, (size_t)n * sizeof *row);
        free(row);
    }
    free(GG), free(nbr), free(k.F), free(k.V), free(k.W), free(k.R), free(k.Rc), free(k.Rs);
    free(k.mark);
}

/* Evaluate embeddings e (of originals) and ea (of copies), dim each; with
 * BENCH_DBA / BENCH_QE, against the augmented gallery / with expanded
 * queries (category queries and copies alike). */
static void score(const bench *b, const float *e, const float *ea, int dim, int d_raw,
                  const unsigned char *is_val, result *r)
{
    int *q = malloc((size_t)b->n * sizeof *q), nq = 0;
    for (int i = 0; i < b->n; i++)
        if (is_val[i])
            q[nq++] = i;
    float *S = malloc((size_t)nq * b->n * sizeof *S);
    double p1, p5, p10, map, r1, r10;
    int n_qe = 0, qe_mode = 0, n_db = 0, db_mode = 0;
    double qe_alpha = 0, db_alpha = 0, kr_lambda = .3;
    int kr_k1 = 0, kr_k2 = 6;
    if (getenv("BENCH_KRR"))
        sscanf(getenv("BENCH_KRR"), "%d,%d,%lf", &kr_k1, &kr_k2, &kr_lambda);
    if (getenv("BENCH_QE"))
        sscanf(getenv("BENCH_QE"), "%d,%lf,%d", &n_qe, &qe_alpha, &qe_mode);
    if (getenv("BENCH_DBA"))
        sscanf(getenv("BENCH_DBA"), "%d,%lf,%d", &n_db, &db_alpha, &db_mode);
    /* mode + 10: expand the LDA part of a fused vector only */
    int qe_lo = qe_mode >= 10 ? d_raw : 0, db_lo = db_mode >= 10 ? d_raw : 0;
    qe_mode %= 10, db_mode %= 10;
    float *Gd = n_db > 0 ? dba(b, e, dim, db_lo, n_db, db_alpha, db_mode, is_val) : NULL;
    const float *G = Gd ? Gd : e;
    float *Q = malloc((size_t)nq * dim * sizeof *Q);
    int *self = malloc((size_t)nq * sizeof *self);
    for (int pass = 0; pass < 2; pass++) {
        const float *x = pass ? ea : e;
        for (int a = 0; a < nq; a++) {
            memcpy(Q + (size_t)a * dim, x + (size_t)q[a] * dim, (size_t)dim * sizeof *Q);
            self[a] = pass ? -1 : q[a];
        }
        ims__sim(x, q, nq, G, b->n, dim, S);
        if (n_qe > 0)
            qe_expand(b, G, dim, qe_lo, Q, self, nq, n_qe, qe_alpha, qe_mode, is_val, S);
        if (kr_k1 > 0)
            krr_rerank(b, G, dim, self, nq, kr_k1, kr_k2, kr_lambda, S);
        if (!pass)
            cat_scores(b, S, q, nq, is_val, &p1, &p5, &p10, &map);
        else
            ims__instance_recall(S, nq, b->n, q, &r1, &r10);
    }
    r->p1 += p1, r->p5 += p5, r->p10 += p10, r->map += map, r->r1 += r1, r->r10 += r10;
    free(S), free(q), free(Q), free(self), free(Gd);
}

static void print_row(const char *method, const char *taps, const result *r, int n_seeds)
{
    double k = 1.0 / n_seeds;
    printf("%-10s %-28s P@1 %.3f P@5 %.3f P@10 %.3f mAP@10 %.3f | inst r@1 %.3f r@10 %.3f", method,
           taps, r->p1 * k, r->p5 * k, r->p10 * k, r->map * k, r->r1 * k, r->r10 * k);
    if (r->w > 0 || r->shrink > 0 || r->acc > 0)
        printf(" | w %.2f shrink %.2f acc %.3f", r->w * k, r->shrink * k, r->acc * k);
    printf(" | %.2fs\n", r->secs * k);
    fflush(stdout);
}

/* Two-part re-rank of a FUSION embedding (first d values: u/sqrt(1+w^2),
 * then w z/sqrt(1+w^2)): score = z.z' + alpha u.u', and items whose u.u'
 * exceeds tau come first (near-duplicate guard). */
static void score_rerank(const bench *b, const float *e, const float *ea, int dim, int d, float w,
                         double alpha, double tau, const unsigned char *is_val, result *r)
{
    int *q = malloc((size_t)b->n * sizeof *q), nq = 0;
    for (int i = 0; i < b->n; i++)
        if (is_val[i])
            q[nq++] = i;
    float *Su = malloc((size_t)nq * b->n * sizeof *Su),
          *Sz = malloc((size_t)nq * b->n * sizeof *Sz);
    double p1, p5, p10, map, r1, r10;
    double cu = 1 + (double)w * w, cz = cu / ((double)w * w);
    for (int pass = 0; pass < 2; pass++) {
        const float *qe = pass ? ea : e;
        for (int a = 0; a < nq; a++)
            for (int j = 0; j < b->n; j++) {
                const float *x = qe + (size_t)q[a] * dim, *y = e + (size_t)j * dim;
                double su = 0, sz = 0;
                for (int t = 0; t < d; t++)
                    su += x[t] * y[t];
                for (int t = d; t < dim; t++)
                    sz += x[t] * y[t];
                su *= cu, sz *= cz;
                Su[(size_t)a * b->n + j] = (float)(sz + alpha * su + (su > tau ? 10 : 0));
            }
        if (!pass)
            cat_scores(b, Su, q, nq, is_val, &p1, &p5, &p10, &map);
        else
            ims__instance_recall(Su, nq, b->n, q, &r1, &r10);
    }
    r->p1 += p1, r->p5 += p5, r->p10 += p10, r->map += map, r->r1 += r1, r->r10 += r10;
    free(Su), free(Sz), free(q);
}

/* Label-aware score: fused cosine + gamma p(category of item | query), the
 * query's probabilities from the head's classifier (pq for originals, pa
 * for copies, n x C); items whose raw-part similarity exceeds tau first. */
static void score_prior(const bench *b, const float *e, const float *ea, int dim, int d, float w,
                        const float *pq, const float *pa, double gamma, double tau, int use_log,
                        const unsigned char *is_val, result *r)
{
    int *q = malloc((size_t)b->n * sizeof *q), nq = 0, C = b->n_classes;
    for (int i = 0; i < b->n; i++)
        if (is_val[i])
            q[nq++] = i;
    float *S = malloc((size_t)nq * b->n * sizeof *S);
    double p1, p5, p10, map, r1, r10;
    double cu = 1 + (double)w * w;
    for (int pass = 0; pass < 2; pass++) {
        const float *qe = pass ? ea : e, *pp = pass ? pa : pq;
        for (int a = 0; a < nq; a++)
            for (int j = 0; j < b->n; j++) {
                const float *x = qe + (size_t)q[a] * dim, *y = e + (size_t)j * dim;
                double su = 0, s = 0;
                for (int t = 0; t < d; t++)
                    su += x[t] * y[t];
                for (int t = 0; t < dim; t++)
                    s += x[t] * y[t];
                su *= cu;
                double p = pp[(size_t)q[a] * C + b->labels[j]];
                double pr = use_log ? log(p + 1e-6) : p;
                S[(size_t)a * b->n + j] = (float)(s + gamma * pr + (su > tau ? 10 : 0));
            }
        if (!pass)
            cat_scores(b, S, q, nq, is_val, &p1, &p5, &p10, &map);
        else
            ims__instance_recall(S, nq, b->n, q, &r1, &r10);
    }
    r->p1 += p1, r->p5 += p5, r->p10 += p10, r->map += map, r->r1 += r1, r->r10 += r10;
    free(S), free(q);
}

/* kind < 0: raw unit taps; else a head of that kind (aug: give copies). */
static void run_method(const bench *b, const char *method, const int *use, int n_use0, int kind,
                       int with_aug)
{
    int d;
    float *x0 = select_taps(b, b->orig, use, n_use0, &d);
    float *xa0 = select_taps(b, b->dist, use, n_use0, &d);
    int dims0[MAX_TAPS];
    char taps[256] = "";
    for (int t = 0; t < n_use0; t++) {
        dims0[t] = b->tap_dim[use[t]];
        snprintf(taps + strlen(taps), sizeof taps - strlen(taps), "%s%d", t ? "+" : "", use[t]);
    }
    result r = {0};
    unsigned char *is_val = malloc((size_t)b->n);
    float *xt = malloc((size_t)b->n * d * sizeof *xt), *at = malloc((size_t)b->n * d * sizeof *at);
    int *lt = malloc((size_t)b->n * sizeof *lt);
    double wsum_prev = 0;
    int prior_done = 0;
    for (int s = 1; s <= b->n_seeds; s++) {
        ims_train_split(b->labels, b->n, 0.2f, (uint64_t)s, is_val);
        float *e, *ea;
        int dim;
        clock_t t0 = clock();
        const float *x = x0, *xa = xa0;
        const int *dims = dims0;
        int n_use = n_use0, d1 = d;
        float *xw = NULL, *xaw = NULL;
        const char *wenv = getenv("BENCH_WHITEN");
        if (wenv) {
            double wa = atof(wenv);
            int wr = getenv("BENCH_WRANK") ? atoi(getenv("BENCH_WRANK")) : 0;
            float *u = malloc((size_t)b->n * d * sizeof *u),
                  *ua = malloc((size_t)b->n * d * sizeof *ua);
            ims_train_head *h = ims__head_alloc(IMS_TRAIN_LDA, d, dims0, n_use0, 1, 1, 0);
            for (int i = 0; i < b->n; i++) {
                ims__head_unit(h, x0 + (size_t)i * d, u + (size_t)i * d);
                ims__head_unit(h, xa0 + (size_t)i * d, ua + (size_t)i * d);
            }
            ims_train_head_free(h);
            int *rows = malloc((size_t)b->n * sizeof *rows), m = 0;
            for (int i = 0; i < b->n; i++)
                if (!is_val[i])
                    rows[m++] = i;
            float *M = malloc((size_t)d * d * sizeof *M), *bias = malloc((size_t)d * sizeof *bias);
            if (ims__whiten_fit(u, rows, m, d, wa, wr, M, bias, NULL))
                exit(1);
            xw = malloc((size_t)b->n * d * sizeof *xw),
            xaw = malloc((size_t)b->n * d * sizeof *xaw);
            ims__whiten_rows(M, bias, d, u, b->n, xw);
            ims__whiten_rows(M, bias, d, ua, b->n, xaw);
            free(u), free(ua), free(rows), free(M), free(bias);
            x = xw, xa = xaw, dims = &d1, n_use = 1;
        }
        if (kind < 0) {
            dim = d;
            e = malloc((size_t)b->n * d * sizeof *e), ea = malloc((size_t)b->n * d * sizeof *ea);
            ims_train_head *h = ims__head_alloc(IMS_TRAIN_LDA, d, dims, n_use, 1, 1, 0);
            for (int i = 0; i < b->n; i++) {
                ims__head_unit(h, x + (size_t)i * d, e + (size_t)i * d);
                ims__head_unit(h, xa + (size_t)i * d, ea + (size_t)i * d);
            }
            ims_train_head_free(h);
        } else {
            int nt = 0;
            for (int i = 0; i < b->n; i++)
                if (!is_val[i] || getenv("BENCH_LEAK")) {
                    memcpy(xt + (size_t)nt * d, x + (size_t)i * d, (size_t)d * sizeof *x);
                    memcpy(at + (size_t)nt * d, xa + (size_t)i * d, (size_t)d * sizeof *x);
                    lt[nt++] = b->labels[i];
                }
            ims_train_opts o;
            ims_train_opts_default(&o);
            if (kind == IMS_TRAIN_MLP)
                ims_train_opts_seed(&o, (uint64_t)s);
            o.kind = kind;
            o.seed = (uint64_t)s + 100;
            if (getenv("BENCH_W"))
                o.weight = (float)atof(getenv("BENCH_W"));
            if (getenv("BENCH_DIM") && kind != IMS_TRAIN_MLP)
                o.dim = atoi(getenv("BENCH_DIM"));
            if (with_aug)
                o.aug = at;
            if (getenv("BENCH_WRAW"))
                o.whiten = (float)atof(getenv("BENCH_WRAW"));
            if (getenv("BENCH_WHITEN"))
                o.whiten = 0;
            ims_train_head *h;
            ims_error err;
            if (ims_train_fit(xt, nt, d, dims, n_use, lt, b->n_classes, &o, &h, &err)) {
                fprintf(stderr, "%s: %s\n", method, err.msg);
                exit(1);
            }
            dim = ims_train_out_dim(h);
            e = malloc((size_t)b->n * dim * sizeof *e);
            ea = malloc((size_t)b->n * dim * sizeof *ea);
            ims_train_apply(h, x, b->n, e);
            ims_train_apply(h, xa, b->n, ea);
            r.w += ims_train_weight(h), r.shrink += ims_train_shrink(h);
            /* classifier accuracy on the held-out items */
            int C = b->n_classes, hit = 0, nv = 0;
            float *pr = malloc((size_t)b->n * C * sizeof *pr);
            ims_train_classify(h, x, b->n, pr);
            for (int i = 0; i < b->n; i++) {
                if (!is_val[i])
                    continue;
                int best = 0;
                for (int c = 1; c < C; c++)
                    best = pr[(size_t)i * C + c] > pr[(size_t)i * C + best] ? c : best;
                hit += best == b->labels[i], nv++;
            }
            r.acc += (double)hit / nv;
            if (getenv("BENCH_PRIOR") && kind == IMS_TRAIN_FUSION) {
                double ga = 0, ta = 2;
                int lg = 0;
                sscanf(getenv("BENCH_PRIOR"), "%lf,%lf,%d", &ga, &ta, &lg);
                float *pa = malloc((size_t)b->n * C * sizeof *pa);
                ims_train_classify(h, xa, b->n, pa);
                score_prior(b, e, ea, dim, d, ims_train_weight(h), pr, pa, ga, ta, lg, is_val, &r);
                prior_done = 1;
                free(pa);
            }
            free(pr);
            ims_train_head_free(h);
        }
        r.secs += (double)(clock() - t0) / CLOCKS_PER_SEC;
        if (prior_done) {
            prior_done = 0;
        } else if (getenv("BENCH_RERANK") && kind == IMS_TRAIN_FUSION) {
            double al = 0, ta = 2;
            sscanf(getenv("BENCH_RERANK"), "%lf,%lf", &al, &ta);
            score_rerank(b, e, ea, dim, d, (float)(r.w - wsum_prev), al, ta, is_val, &r);
        } else {
            score(b, e, ea, dim, kind == IMS_TRAIN_FUSION ? d : 0, is_val, &r);
        }
        wsum_prev = r.w;
        free(e), free(ea), free(xw), free(xaw);
    }
    print_row(method, taps, &r, b->n_seeds);
    free(x0), free(xa0), free(is_val), free(xt), free(at), free(lt);
}

/* BENCH_ONLY=a,b,...: run only those methods (default: all). */
static int want(const char *method)
{
    const char *only = getenv("BENCH_ONLY");
    if (!only)
        return 1;
    size_t n = strlen(method);
    for (const char *p = only; (p = strstr(p, method)); p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || !p[n]))
            return 1;
    return 0;
}

static int parse_list(const char *s, int *out)
{
    int n = 0;
    while (*s && n < MAX_TAPS) {
        out[n++] = (int)strtol(s, (char **)&s, 10);
        if (*s == ',')
            s++;
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *taps = NULL, *list = NULL, *orig = NULL, *dist = NULL;
    const char *use_s = NULL;
    int raw = 0, seed_tap = -1;
    bench b = {.n_seeds = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model"))
            model = v, i++;
        else if (!strcmp(a, "--taps"))
            taps = v, i++;
        else if (!strcmp(a, "--list"))
            list = v, i++;
        else if (!strcmp(a, "--orig"))
            orig = v, i++;
        else if (!strcmp(a, "--dist"))
            dist = v, i++;
        else if (!strcmp(a, "--seeds"))
            b.n_seeds = atoi(v), i++;
        else if (!strcmp(a, "--use"))
            use_s = v, i++;
        else if (!strcmp(a, "--seed-tap"))
            seed_tap = atoi(v), i++;
        else if (!strcmp(a, "--raw"))
            raw = 1;
        else {
            fprintf(stderr, "bad argument %s (see the comment atop bench/finetune_eval.c)\n", a);
            return 2;
        }
    }
    if (!model || !taps || !list || !orig || !dist) {
        fprintf(stderr, "usage: see bench/finetune_eval.c\n");
        return 2;
    }
    ims_error err;
    ims_nn_model *m;
    if (ims_nn_open(model, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    FILE *f = fopen(taps, "r");
    char line[4096];
    int off = 0;
    while (f && fgets(line, sizeof line, f) && b.n_taps < MAX_TAPS) {
        line[strcspn(line, "\n")] = 0;
        if (!*line)
            continue;
        int d;
        if (ims_nn_tap_dim(m, line, &d, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        const char *sl = strrchr(line, '/');
        snprintf(b.tap_name[b.n_taps], 256, "%.255s", line);
        (void)sl;
        b.tap_dim[b.n_taps] = d, b.tap_off[b.n_taps] = off, off += d;
        b.n_taps++;
    }
    if (f)
        fclose(f);
    int n1, d1, n2, d2;
    b.orig = read_fvecs(orig, &n1, &d1);
    b.dist = read_fvecs(dist, &n2, &d2);
    if (!b.orig || !b.dist || n1 != n2 || d1 != d2 || d1 != off) {
        fprintf(stderr, "feature files do not match the taps (%d vs %d)\n", d1, off);
        return 1;
    }
    b.n = n1, b.D = d1;
    if (getenv("BENCH_SQRT")) /* power normalisation experiment */
        for (size_t j = 0; j < (size_t)n1 * d1; j++) {
            b.orig[j] = b.orig[j] >= 0 ? sqrtf(b.orig[j]) : -sqrtf(-b.orig[j]);
            b.dist[j] = b.dist[j] >= 0 ? sqrtf(b.dist[j]) : -sqrtf(-b.dist[j]);
        }
    b.labels = malloc((size_t)b.n * sizeof *b.labels);
    char names[64][256];
    f = fopen(list, "r");
    int i = 0;
    while (f && fgets(line, sizeof line, f) && i < b.n) {
        line[strcspn(line, "\n")] = 0;
        char *sl = strrchr(line, '/');
        *sl = 0;
        sl = strrchr(line, '/');
        const char *g = sl ? sl + 1 : line;
        int c = 0;
        while (c < b.n_classes && strcmp(names[c], g))
            c++;
        if (c == b.n_classes)
            snprintf(names[b.n_classes++], 256, "%.255s", g);
        b.labels[i++] = c;
    }
    if (f)
        fclose(f);
    printf("# %s: %d items, %d categories, %d taps, %d split seeds\n", ims_nn_name(m), b.n,
           b.n_classes, b.n_taps, b.n_seeds);
    for (int t = 0; t < b.n_taps; t++)
        printf("#   tap %d: %s (%d)\n", t, b.tap_name[t], b.tap_dim[t]);
    if (raw) {
        for (int t = 0; t < b.n_taps; t++)
            run_method(&b, "raw", &t, 1, -1, 0);
        for (int t = 0; t < b.n_taps; t++)
            for (int s = t + 1; s < b.n_taps; s++) {
                int u2[2] = {t, s};
                run_method(&b, "raw", u2, 2, -1, 0);
            }
        return 0;
    }
    int use[MAX_TAPS], n_use = use_s ? parse_list(use_s, use) : 1;
    if (!use_s)
        use[0] = b.n_taps - 1;
    if (seed_tap < 0)
        seed_tap = b.n_taps - 1;
    if (want("raw"))
        run_method(&b, "raw", use, n_use, -1, 0);
    if (want("rawseed"))
        run_method(&b, "raw", &seed_tap, 1, -1, 0);
    if (want("seed"))
        run_method(&b, "seed", &seed_tap, 1, IMS_TRAIN_MLP, 0);
    if (want("lda"))
        run_method(&b, "lda", use, n_use, IMS_TRAIN_LDA, 0);
    if (want("fusion"))
        run_method(&b, "fusion", use, n_use, IMS_TRAIN_FUSION, 0);
    if (want("fusion+aug"))
        run_method(&b, "fusion+aug", use, n_use, IMS_TRAIN_FUSION, 1);
    if (want("lda+aug"))
        run_method(&b, "lda+aug", use, n_use, IMS_TRAIN_LDA, 1);
    ims_nn_close(m);
    return 0;
}
