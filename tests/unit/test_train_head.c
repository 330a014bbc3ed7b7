/* SPDX-License-Identifier: MIT */
/*
 * test_train_head.c — the train module on synthetic features: the split is
 * stratified and seeded; every head kind separates a separable problem
 * (the MLP's loss falls); same seed -> same bytes; nothing-to-train cases
 * give IMS_ESTATE; save/load round trips; corrupt blobs are refused; an
 * LDA prepared once and solved per shrinkage gives the bytes of a fit
 * from scratch (both the Woodbury path, n <= d, and the scatter path).
 */
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
        /* determinism: a second fit with the same seed gives the same bytes */
        ims_train_head *h2 = NULL;
        o.progress = NULL;
        CHECK_RC(ims_train_fit(X, N, D, TAPS, 2, Y, C, &o, &h2, &err), IMS_OK);
        if (h2) {
            CHECK_RC(ims_train_save(h2, &b2, &l2, &err), IMS_OK);
            CHECK(l1 == l2 && !memcmp(b1, b2, l1));
            ims_free(b2);
        }
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
        ims_train_head_free(h2);
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

int main(void)
{
    test_default_taps();
    make_data();
    test_split();
    test_kinds();
    test_lda_prepared();
    test_nothing_to_train();
    return check_report();
}
