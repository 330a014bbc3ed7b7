/* SPDX-License-Identifier: MIT */
/*
 * test_train_head.c — the train module on synthetic features: the split is
 * stratified and seeded; every head kind separates a separable problem
 * (the MLP's loss falls); same seed -> same bytes; nothing-to-train cases
 * give IMS_ESTATE; save/load round trips; corrupt blobs are refused; an
 * LDA prepared once and solved per shrinkage gives the bytes of a fit
 * from scratch (both the Woodbury path, n <= d, and the scatter path);
 * the raw part's PCA-whitening whitens the shrunk covariance (both the
 * m < d and m > d cases), the QL eigen-solver agrees with Jacobi, and
 * head blobs of version 2 (whitened or not) and version 1 load while
 * damaged whitening fields are refused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "imgsim/imgsim.h"
#include "imgsim/train.h"
#include "train/train_int.h"

#define N 120
#define D 24
#define C 4

static float X[N * D];
static int Y[N];
static const int TAPS[2] = {16, 8};

/* C Gaussian blobs in D dims, two "taps" (positive values as after ReLU). */
static void make_data(void)
{
    unsigned long long s = 42;
    float centre[C][D];
    for (int c = 0; c < C; c++)
        for (int j = 0; j < D; j++)
            centre[c][j] = 1.5f + check_rand_f(&s);
    for (int i = 0; i < N; i++) {
        Y[i] = i % C;
        for (int j = 0; j < D; j++)
            X[i * D + j] = centre[Y[i]][j] + 0.25f * check_rand_f(&s);
    }
}

typedef struct trace {
    int n;
    float first, last, acc;
} trace;

static int on_epoch(void *ud, int epoch, int n_epochs, float loss, float tacc, float vacc)
{
    trace *t = ud;
    (void)n_epochs, (void)vacc;
    if (epoch == 1)
        t->first = loss;
    t->last = loss, t->acc = tacc, t->n++;
    return 0;
}

static double accuracy(const ims_train_head *h)
{
    float probs[N * C];
    ims_train_classify(h, X, N, probs);
    int hit = 0;
    for (int i = 0; i < N; i++) {
        int b = 0;
        for (int c = 1; c < C; c++)
            b = probs[i * C + c] > probs[i * C + b] ? c : b;
        hit += b == Y[i];
    }
    return (double)hit / N;
}

static void test_split(void)
{
    int lab[11] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2};
    unsigned char v1[11], v2[11];
    int nv = ims_train_split(lab, 11, 0.2f, 7, v1);
    CHECK_EQ(nv, 2); /* one per 5-item class, none for the single item */
    CHECK_EQ(v1[10], 0);
    int per[2] = {0, 0};
    for (int i = 0; i < 10; i++)
        per[lab[i]] += v1[i];
    CHECK_EQ(per[0], 1);
    CHECK_EQ(per[1], 1);
    ims_train_split(lab, 11, 0.2f, 7, v2);
    CHECK(!memcmp(v1, v2, sizeof v1));
}

static void test_kinds(void)
{
    const int kinds[3] = {IMS_TRAIN_FUSION, IMS_TRAIN_LDA, IMS_TRAIN_MLP};
    for (int k = 0; k < 3; k++) {
        ims_train_opts o;
        ims_train_opts_default(&o);
        o.kind = kinds[k];
        o.seed = 3;
        o.dim = kinds[k] == IMS_TRAIN_MLP ? 32 : 0;
        o.epochs = 60;
        trace t = {0};
        o.progress = on_epoch, o.progress_ud = &t;
        ims_train_head *h = NULL;
        ims_error err;
        CHECK_RC(ims_train_fit(X, N, D, TAPS, 2, Y, C, &o, &h, &err), IMS_OK);
        if (!h)
            continue;
        CHECK_MSG(accuracy(h) >= 0.95, "kind %d: accuracy %.3f", kinds[k], accuracy(h));
        CHECK(t.n > 0);
        if (kinds[k] == IMS_TRAIN_MLP)
            CHECK_MSG(t.last < 0.5f * t.first, "loss %.3f -> %.3f", t.first, t.last);
        int od = ims_train_out_dim(h);
        CHECK(od == (kinds[k] == IMS_TRAIN_FUSION ? D + C - 1
                     : kinds[k] == IMS_TRAIN_LDA  ? C - 1
                                                  : 32));
        float *e = malloc(sizeof(float) * N * od);
        ims_train_apply(h, X, N, e);
        double norm = 0;
        for (int j = 0; j < od; j++)
            norm += (double)e[j] * e[j];
        CHECK_NEAR(norm, 1.0, 1e-5);
        /* embeddings separate: nearest neighbour of every row is its class */
        int nn_hit = 0;
        for (int i = 0; i < N; i++) {
            int best = -1;
            float bs = -2;
            for (int j = 0; j < N; j++) {
                if (j == i)
                    continue;
                float s = 0;
                for (int t2 = 0; t2 < od; t2++)
                    s += e[i * od + t2] * e[j * od + t2];
                if (s > bs)
                    bs = s, best = j;
            }
            nn_hit += Y[best] == Y[i];
        }
        CHECK_MSG(nn_hit >= N * 95 / 100, "kind %d: 1-NN %d/%d", kinds[k], nn_hit, N);

        /* save / load: same bytes, same outputs */
        void *b1 = NULL, *b2 = NULL;
        size_t l1 = 0, l2 = 0;
        CHECK_RC(ims_train_save(h, &b1, &l1, &err), IMS_OK);
        ims_train_head *g = NULL;
        CHECK_RC(ims_train_load(b1, l1, &g, &err), IMS_OK);
        if (g) {
            float *e2 = malloc(sizeof(float) * N * od);
            ims_train_apply(g, X, N, e2);
            CHECK(!memcmp(e, e2, sizeof(float) * N * od));
            CHECK_RC(ims_train_save(g, &b2, &l2, &err), IMS_OK);
            CHECK(l1 == l2 && !memcmp(b1, b2, l1));
            free(e2);
            ims_free(b2);
        }
        /* determinism: a second fit with the same seed gives the same
         * bytes, on one thread and on two (the final whitening beside the
         * search) alike */
        o.progress = NULL;
        for (int th = 1; th <= 2; th++) {
            ims_train_head *h2 = NULL;
            o.threads = th;
            CHECK_RC(ims_train_fit(X, N, D, TAPS, 2, Y, C, &o, &h2, &err), IMS_OK);
            if (h2) {
                CHECK_RC(ims_train_save(h2, &b2, &l2, &err), IMS_OK);
                CHECK_MSG(l1 == l2 && !memcmp(b1, b2, l1), "kind %d, %d threads: other bytes",
                          kinds[k], th);
                ims_free(b2);
            }
            ims_train_head_free(h2);
        }
        o.threads = 0;
        /* corrupt and truncated blobs */
        ims_train_head *bad_h = NULL;
        unsigned char *c = malloc(l1);
        memcpy(c, b1, l1);
        c[l1 / 2] ^= 0x10;
        CHECK_RC(ims_train_load(c, l1, &bad_h, &err), IMS_ECORRUPT);
        CHECK_RC(ims_train_load(b1, l1 - 7, &bad_h, &err), IMS_ECORRUPT);
        CHECK_RC(ims_train_load("nothead!", 8, &bad_h, &err), IMS_EFORMAT);
        free(c);
        ims_free(b1);
        free(e);
        ims_train_head_free(g);
        ims_train_head_free(h);
    }
}

static void test_nothing_to_train(void)
{
    ims_error err;
    ims_train_head *h = (ims_train_head *)1;
    int one[N];
    for (int i = 0; i < N; i++)
        one[i] = 0;
    CHECK_RC(ims_train_fit(X, N, D, TAPS, 2, one, 1, NULL, &h, &err), IMS_ESTATE);
    CHECK(h == NULL);
    CHECK(strstr(err.msg, "nothing to train") != NULL);
    int singles[4] = {0, 1, 2, 3}; /* four one-item categories */
    CHECK_RC(ims_train_fit(X, 4, D, TAPS, 2, singles, 4, NULL, &h, &err), IMS_ESTATE);
    /* one multi-item category plus singletons is still nothing to train */
    int mixed[5] = {0, 0, 1, 2, 3};
    CHECK_RC(ims_train_fit(X, 5, D, TAPS, 2, mixed, 4, NULL, &h, &err), IMS_ESTATE);
    /* two multi-item categories and a singleton: trains (the singleton stays in training) */
    int ok[7] = {0, 0, 0, 1, 1, 1, 2};
    float x7[7 * D];
    for (int i = 0; i < 7; i++) { /* rows of blobs 0, 1, 2 (X row c has label c), jittered */
        memcpy(x7 + i * D, X + (size_t)ok[i] * D, sizeof(float) * D);
        x7[i * D + i] += 0.1f;
    }
    CHECK_RC(ims_train_fit(x7, 7, D, TAPS, 2, ok, 3, NULL, &h, &err), IMS_OK);
    ims_train_head_free(h);
    int bad[3] = {0, 5, 0};
    CHECK_RC(ims_train_fit(X, 3, D, TAPS, 2, bad, 2, NULL, &h, &err), IMS_EINVAL);
    int wrong_taps[2] = {10, 10};
    CHECK_RC(ims_train_fit(X, N, D, wrong_taps, 2, Y, C, NULL, &h, &err), IMS_EINVAL);
}

static void test_default_taps(void)
{
    int n = -1;
    const char *const *t = ims_train_default_taps("inception_v3", &n);
    CHECK(t && n == 2);
    CHECK_STR_EQ(t[0], "mixed5");
    CHECK(ims_train_default_taps("mobilenet_v2_mid", &n) && n == 2);
    CHECK(ims_train_default_taps("unknown", &n) == NULL && n == 0);
}

/* max |P^T Sw' P - I| for an LDA head fitted on rows X[0..n) with shrinkage
 * alpha: Sw' = (1 - alpha) Sw + alpha tr(Sw)/D I, Sw the within-class
 * scatter / (n - classes), computed here directly (no Woodbury). */
static double whitening_error(const ims_train_head *h, int n, double alpha)
{
    static double mean[C][D], R[N][D], S[D][D];
    int cnt[C] = {0};
    memset(mean, 0, sizeof mean);
    memset(S, 0, sizeof S);
    for (int i = 0; i < n; i++) {
        cnt[Y[i]]++;
        for (int j = 0; j < D; j++)
            mean[Y[i]][j] += X[i * D + j];
    }
    int m = 0;
    for (int c = 0; c < C; c++)
        for (int j = 0; j < D && cnt[c]; j++)
            mean[c][j] /= cnt[c], m += j == 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++)
            R[i][j] = X[i * D + j] - mean[Y[i]][j];
    double tr = 0;
    for (int p = 0; p < D; p++)
        for (int q = 0; q < D; q++) {
            for (int i = 0; i < n; i++)
                S[p][q] += R[i][p] * R[i][q];
            S[p][q] /= n - m;
        }
    for (int p = 0; p < D; p++)
        tr += S[p][p];
    for (int p = 0; p < D; p++)
        for (int q = 0; q < D; q++)
            S[p][q] = (1 - alpha) * S[p][q] + (p == q ? alpha * tr / D : 0);
    double worst = 0;
    for (int a = 0; a < h->k; a++)
        for (int b = 0; b < h->k; b++) {
            double v = 0;
            for (int p = 0; p < D; p++)
                for (int q = 0; q < D; q++)
                    v += h->P[p * h->k + a] * S[p][q] * h->P[q * h->k + b];
            v -= a == b;
            worst = v > worst ? v : -v > worst ? -v : worst;
        }
    return worst;
}

/* ims__lda_prepare once + ims__lda_solve per shrinkage == ims__lda_fit
 * (a fresh prepare each time), byte for byte: solving does not disturb
 * the prepared parts. Each solution whitens the shrunk within-class
 * scatter, checked against a direct computation. */
static void test_lda_prepared(void)
{
    const int sizes[2] = {20, N}; /* n <= D: Woodbury; n > D: d x d scatter */
    const float shrinks[3] = {0.05f, 0.35f, 0.7f};
    for (int si = 0; si < 2; si++) {
        int n = sizes[si], tap = D;
        ims__lda_prep p;
        ims_error err;
        CHECK_RC(ims__lda_prepare(&p, D, C, X, n, Y, &err), IMS_OK);
        CHECK(si == 0 ? p.G != NULL : p.G == NULL);
        for (int k = 0; k < 3; k++) {
            ims_train_head *a = ims__head_alloc(IMS_TRAIN_LDA, D, &tap, 1, C - 1, C, 0);
            ims_train_head *b = ims__head_alloc(IMS_TRAIN_LDA, D, &tap, 1, C - 1, C, 0);
            CHECK(a && b);
            CHECK_RC(ims__lda_fit(a, X, n, Y, shrinks[k], &err), IMS_OK);
            CHECK_RC(ims__lda_solve(b, &p, shrinks[k], &err), IMS_OK);
            void *ba = NULL, *bb = NULL;
            size_t la = 0, lb = 0;
            CHECK_RC(ims_train_save(a, &ba, &la, &err), IMS_OK);
            CHECK_RC(ims_train_save(b, &bb, &lb, &err), IMS_OK);
            CHECK_EQ(la, lb);
            CHECK(la == lb && !memcmp(ba, bb, la)); /* P, pb, C, cb, shrink, k */
            ims_free(ba);
            ims_free(bb);
            double we = whitening_error(b, n, shrinks[k]);
            CHECK_MSG(we < 1e-3, "n %d shrink %.2f: P^T Sw' P - I up to %g", n, shrinks[k], we);
            ims_train_head_free(a);
            ims_train_head_free(b);
        }
        ims__lda_prep_free(&p);
        CHECK(p.X == NULL);
    }
}

/* The LAPACK eigen-solver agrees with the Jacobi one on a random symmetric
 * matrix: same eigenvalues, and A v = w v for each of its vectors. */
static void test_eigen_lapack(void)
{
    enum { n = 30 };
    static double A[n * n], A1[n * n], A2[n * n], w1[n], w2[n], v1[n * n], v2[n * n];
    unsigned long long s = 7;
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++)
            A[i * n + j] = A[j * n + i] = check_rand_f(&s);
    memcpy(A1, A, sizeof A), memcpy(A2, A, sizeof A);
    ims__eigen_sym(A1, n, w1, v1);
    CHECK_EQ(ims__eigen_sym_lapack(A2, n, w2, v2), 0);
    double dw = 0, res = 0;
    for (int i = 0; i < n; i++) {
        dw = fmax(dw, fabs(w1[i] - w2[i]));
        if (i)
            CHECK(w2[i] <= w2[i - 1]); /* descending */
        for (int r = 0; r < n; r++) {
            double av = 0;
            for (int c = 0; c < n; c++)
                av += A[r * n + c] * v2[c * n + i];
            res = fmax(res, fabs(av - w2[i] * v2[r * n + i]));
        }
    }
    CHECK_MSG(dw < 1e-10, "eigenvalues: LAPACK vs Jacobi differ by %g", dw);
    CHECK_MSG(res < 1e-10, "LAPACK eigenvectors: |A v - w v| up to %g", res);
}

/* ims__whiten_fit on rows `rows` of X: M symmetric, bias = -mu . M, and
 * M Sigma' M = b I (Sigma' the shrunk covariance, b = a tr / D), computed
 * here directly in d x d, the same bytes when refitted; with rank 3, the
 * projector on the top 3 directions instead of I. a = 1: M = I. */
static void test_whiten_fit(void)
{
    static int rows[N];
    static float M[D * D], bias[D];
    const int ms[2] = {16, N / 2}; /* m < D (Gram rank m - 1) and m > D */
    const double as[3] = {0.1, 0.3, 1.0};
    for (int mi = 0; mi < 2; mi++)
        for (int ai = 0; ai < 3; ai++) {
            int m = ms[mi];
            double a = as[ai], mu[D] = {0}, S[D][D] = {{0}}, tr = 0;
            for (int i = 0; i < m; i++)
                rows[i] = 2 * i + 1;
            ims_error err;
            CHECK_RC(ims__whiten_fit(X, rows, m, D, a, 0, M, bias, &err), IMS_OK);
            for (int i = 0; i < m; i++)
                for (int p = 0; p < D; p++)
                    mu[p] += X[rows[i] * D + p] / m;
            for (int i = 0; i < m; i++)
                for (int p = 0; p < D; p++)
                    for (int q = 0; q < D; q++)
                        S[p][q] += (X[rows[i] * D + p] - mu[p]) * (X[rows[i] * D + q] - mu[q]) / m;
            for (int p = 0; p < D; p++)
                tr += S[p][p];
            double b = a * tr / D, worst = 0, asym = 0, dbias = 0;
            for (int p = 0; p < D; p++)
                for (int q = 0; q < D; q++)
                    S[p][q] = (1 - a) * S[p][q] + (p == q ? b : 0);
            for (int p = 0; p < D; p++)
                for (int q = 0; q < D; q++) {
                    double v = 0;
                    for (int r = 0; r < D; r++)
                        for (int t = 0; t < D; t++)
                            v += M[p * D + r] * S[r][t] * M[t * D + q];
                    worst = fmax(worst, fabs(v / b - (p == q)));
                    asym = fmax(asym, fabs(M[p * D + q] - M[q * D + p]));
                    if (a == 1.0)
                        CHECK_NEAR(M[p * D + q], p == q, 1e-5);
                }
            for (int q = 0; q < D; q++) {
                double v = 0;
                for (int p = 0; p < D; p++)
                    v += mu[p] * M[p * D + q];
                dbias = fmax(dbias, fabs(v + bias[q]));
            }
            CHECK_MSG(worst < 1e-3, "m %d a %.1f: M S' M / b - I up to %g", m, a, worst);
            CHECK_MSG(asym < 1e-6 && dbias < 1e-4, "m %d a %.1f: asym %g, bias %g", m, a, asym,
                      dbias);
            /* the same rows again: the same bytes */
            static float M2[D * D], bias2[D];
            CHECK_RC(ims__whiten_fit(X, rows, m, D, a, 0, M2, bias2, &err), IMS_OK);
            CHECK(!memcmp(M, M2, sizeof M) && !memcmp(bias, bias2, sizeof bias));
            /* rank 3 (a < 1): M S' M / b = the projector on the top 3
             * principal directions (trace 3, idempotent) */
            if (a == 1.0)
                continue;
            static double P[D][D];
            CHECK_RC(ims__whiten_fit(X, rows, m, D, a, 3, M, bias, &err), IMS_OK);
            double ptr = 0, idem = 0;
            for (int p = 0; p < D; p++)
                for (int q = 0; q < D; q++) {
                    double v = 0;
                    for (int r = 0; r < D; r++)
                        for (int t = 0; t < D; t++)
                            v += M[p * D + r] * S[r][t] * M[t * D + q];
                    P[p][q] = v / b;
                }
            for (int p = 0; p < D; p++) {
                ptr += P[p][p];
                for (int q = 0; q < D; q++) {
                    double v = 0;
                    for (int r = 0; r < D; r++)
                        v += P[p][r] * P[r][q];
                    idem = fmax(idem, fabs(v - P[p][q]));
                }
            }
            CHECK_MSG(fabs(ptr - 3) < 1e-3 && idem < 1e-3,
                      "m %d a %.1f rank 3: trace %g, P^2 - P %g", m, a, ptr, idem);
        }
    /* rows that do not vary: the identity, no bias */
    float same[4 * D];
    for (int i = 0; i < 4; i++)
        memcpy(same + i * D, X, D * sizeof *X);
    ims_error err;
    CHECK_RC(ims__whiten_fit(same, NULL, 4, D, 0.3, 0, M, bias, &err), IMS_OK);
    CHECK(M[0] == 1 && M[1] == 0 && bias[0] == 0);
}

static void fix_crc(unsigned char *b, size_t len)
{
    ims__put_u32(b + len - 4, ims__crc32c(0, b, len - 4));
}

/* Load must refuse b (len bytes, CRC fixed first) with `code`, and say
 * `what` in the message. */
static void refuse(unsigned char *b, size_t len, int code, const char *what)
{
    if (len >= 4)
        fix_crc(b, len);
    ims_train_head *g = NULL;
    ims_error err;
    ims_error_clear(&err);
    CHECK_RC(ims_train_load(b, len, &g, &err), code);
    CHECK(g == NULL);
    CHECK_MSG(strstr(err.msg, what) != NULL, "expected '%s' in '%s'", what, err.msg);
    ims_train_head_free(g);
}

/* The FUSION head's whitening: on by default (a = .3, w = .7 without
 * copies), off with opts.whiten = 0, --weight kept; version-2 blobs of
 * both, a version-1 blob (the same head without the two whitening fields)
 * loading as unwhitened; damaged whitening fields refused. */
static void test_whiten_blobs(void)
{
    ims_train_opts o;
    ims_train_opts_default(&o);
    o.seed = 9;
    CHECK_NEAR(o.whiten, IMS_TRAIN_WHITEN_A, 0);
    ims_train_head *hw = NULL, *hp = NULL, *hx = NULL;
    ims_error err;
    CHECK_RC(ims_train_fit(X, N, D, TAPS, 2, Y, C, &o, &hw, &err), IMS_OK);
    o.weight = 0.35f;
    CHECK_RC(ims_train_fit(X, N, D, TAPS, 2, Y, C, &o, &hx, &err), IMS_OK);
    o.weight = -1, o.whiten = 0;
    CHECK_RC(ims_train_fit(X, N, D, TAPS, 2, Y, C, &o, &hp, &err), IMS_OK);
    o.whiten = 1.5f;
    ims_train_head *bad = NULL;
    CHECK_RC(ims_train_fit(X, N, D, TAPS, 2, Y, C, &o, &bad, &err), IMS_EINVAL);
    if (!hw || !hp || !hx)
        goto out;
    CHECK_NEAR(ims_train_whiten(hw), 0.3, 1e-7);
    CHECK_NEAR(ims_train_weight(hw), IMS_TRAIN_W_WHITEN, 0);
    CHECK_NEAR(ims_train_weight(hx), 0.35, 1e-7);
    CHECK_NEAR(ims_train_whiten(hx), 0.3, 1e-7);
    CHECK_NEAR(ims_train_whiten(hp), 0, 0);
    CHECK(ims_train_weight(hp) <= IMS_TRAIN_W_MAX_BLIND);
    CHECK(accuracy(hw) >= 0.95);
    /* the raw part is whitened: unit length, not u */
    const int od = ims_train_out_dim(hw);
    CHECK_EQ(od, ims_train_out_dim(hp));
    static float ew[N * (D + C)], ep[N * (D + C)], e2[N * (D + C)];
    ims_train_apply(hw, X, N, ew);
    ims_train_apply(hp, X, N, ep);
    double raw2 = 0, diff = 0, w = ims_train_weight(hw);
    for (int j = 0; j < D; j++)
        raw2 += (double)ew[j] * ew[j], diff += fabs(ew[j] - ep[j]);
    CHECK_NEAR(raw2, 1 / (1 + w * w), 1e-5);
    CHECK(diff > 0.1);
    /* apply whitens in blocks of rows: the bytes of one row at a time */
    for (int i = 0; i < N; i++)
        ims_train_apply(hw, X + i * D, 1, e2 + i * od);
    CHECK(!memcmp(ew, e2, sizeof(float) * N * od));

    void *bw = NULL, *bp = NULL, *b2 = NULL;
    size_t lw = 0, lp = 0, l2 = 0;
    CHECK_RC(ims_train_save(hw, &bw, &lw, &err), IMS_OK);
    CHECK_RC(ims_train_save(hp, &bp, &lp, &err), IMS_OK);
    if (!bw || !bp)
        goto out;
    unsigned char *w8 = bw, *p8 = bp;
    CHECK_EQ(ims__get_u32(w8 + 8), 2);
    CHECK_EQ(ims__get_u32(w8 + 60), 1);
    CHECK_EQ(ims__get_u32(p8 + 60), 0);
    CHECK_EQ(lw, lp + 4 * (size_t)(D * D + D)); /* + Wm, wb */
    ims_train_head *g = NULL;
    CHECK_RC(ims_train_load(bw, lw, &g, &err), IMS_OK);
    if (g) {
        ims_train_apply(g, X, N, e2);
        CHECK(!memcmp(ew, e2, sizeof(float) * N * od));
        CHECK_NEAR(ims_train_whiten(g), 0.3, 1e-7);
        ims_train_head_free(g);
        g = NULL;
    }

    /* version 1: the unwhitened blob without bytes 60..67 */
    size_t l1 = lp - 8;
    unsigned char *v1 = malloc(lp);
    memcpy(v1, p8, 60);
    memcpy(v1 + 60, p8 + 68, lp - 68);
    ims__put_u32(v1 + 8, 1);
    fix_crc(v1, l1);
    CHECK_RC(ims_train_load(v1, l1, &g, &err), IMS_OK);
    if (g) {
        ims_train_apply(g, X, N, e2);
        CHECK(!memcmp(ep, e2, sizeof(float) * N * od));
        CHECK_NEAR(ims_train_whiten(g), 0, 0);
        CHECK_RC(ims_train_save(g, &b2, &l2, &err), IMS_OK); /* written back as version 2 */
        CHECK(l2 == lp && !memcmp(b2, bp, lp));
        ims_free(b2);
        ims_train_head_free(g);
    }
    refuse(v1, 60, IMS_ECORRUPT, "truncated header"); /* v1 header without CRC room */

    /* damaged version-2 blobs (each with a valid CRC: the checks behind it) */
    unsigned char *c = malloc(lw);
    memcpy(c, w8, lw), ims__put_u32(c + 60, 2);
    refuse(c, lw, IMS_ECORRUPT, "offset 60: bad whitening flag");
    memcpy(c, w8, lw), ims__put_u32(c + 12, IMS_TRAIN_LDA);
    refuse(c, lw, IMS_ECORRUPT, "offset 60: bad whitening flag");
    memcpy(c, w8, lw), ims__put_u32(c + 60, 0);
    refuse(c, lw, IMS_ECORRUPT, "offset 64: bad whitening shrinkage");
    memcpy(c, w8, lw), ims__put_u32(c + 60, 0), ims__put_u32(c + 64, 0);
    refuse(c, lw, IMS_ECORRUPT, "expected"); /* the matrix is too much */
    memcpy(c, w8, lw), ims__put_u32(c + 64, 0);
    refuse(c, lw, IMS_ECORRUPT, "offset 64: bad whitening shrinkage");
    memcpy(c, w8, lw), ims__put_u32(c + 64, 0x7fc00000u); /* NaN */
    refuse(c, lw, IMS_ECORRUPT, "offset 64");
    memcpy(c, p8, lp), ims__put_u32(c + 64, 0x80000000u); /* -0: not the +0 it saves back */
    refuse(c, lp, IMS_ECORRUPT, "offset 64: bad whitening shrinkage");
    memcpy(c, p8, lp), ims__put_u32(c + 60, 1), ims__put_u32(c + 64, 0x3e99999au);
    refuse(c, lp, IMS_ECORRUPT, "whitened"); /* flag without the matrix */
    memcpy(c, w8, lw);                       /* without wb (re-checksummed) */
    refuse(c, lw - 4 * D, IMS_ECORRUPT, "expected");
    memcpy(c, w8, lw);
    refuse(c, 70, IMS_ECORRUPT, "truncated header");
    memcpy(c, w8, lw), ims__put_u32(c + 8, 3);
    refuse(c, lw, IMS_EVERSION, "version 3");
    memcpy(c, w8, lw), ims__put_u32(c + 8, 0);
    refuse(c, lw, IMS_ECORRUPT, "bad version");
    /* a flipped bit in the matrix or a cut inside it, CRC left alone */
    memcpy(c, w8, lw);
    c[lw - 4 * D - 40] ^= 0x08;
    CHECK_RC(ims_train_load(c, lw, &g, &err), IMS_ECORRUPT);
    CHECK_RC(ims_train_load(w8, lw - 4 * D * D / 2, &g, &err), IMS_ECORRUPT);
    CHECK(g == NULL);
    free(c);
    free(v1);
out:
    ims_free(bw), ims_free(bp);
    ims_train_head_free(hw), ims_train_head_free(hp), ims_train_head_free(hx);
}

int main(void)
{
    test_default_taps();
    make_data();
    test_split();
    test_kinds();
    test_lda_prepared();
    test_eigen_lapack();
    test_whiten_fit();
    test_whiten_blobs();
    test_nothing_to_train();
    return check_report();
}
