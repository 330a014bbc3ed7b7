/* SPDX-License-Identifier: MIT */
/*
 * test_index_hnsw.c — HNSW behaviour: recall against exact search for each
 * metric, reproducible builds, parallel builds, deletes and compaction,
 * update, filters (50%, 5%, 0.5%; graph, exact and auto), quantised
 * storage, and edge cases.
 */
#include <string.h>

#include "test_index_util.h"

#define N 2000
#define DIM 24
#define NQ 60

static float *X, *Q;

static void test_recall_metrics(void)
{
    static const int metrics[] = {IMS_METRIC_L2, IMS_METRIC_IP, IMS_METRIC_COSINE};
    ims_search_opts o = {.ef = 64, .mode = IMS_SEARCH_GRAPH};
    for (int m = 0; m < 3; m++) {
        ims_hnsw *h = tix_build(metrics[m], IMS_STORAGE_F32, 0, DIM, X, N, 1, 1);
        CHECK(h != NULL);
        if (!h)
            continue;
        CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
        double r = tix_recall(h, metrics[m], X, N, DIM, Q, NQ, 10, &o, NULL, NULL);
        CHECK_MSG(r >= 0.95, "%s recall@10 %.3f < 0.95", ims_metric_name(metrics[m]), r);
        /* distances are ascending and match the metric */
        ims_hit hits[10];
        size_t nh;
        CHECK_RC(ims_hnsw_search(h, Q, 10, &o, hits, &nh), IMS_OK);
        CHECK_EQ(nh, 10);
        for (size_t i = 1; i < nh; i++)
            CHECK(hits[i - 1].distance <= hits[i].distance);
        ims_hit t[1];
        size_t nt;
        ims_flat_search(metrics[m], DIM, X + (hits[0].id - 1000) * DIM, 1, NULL, Q, 1, t, &nt);
        CHECK_NEAR(hits[0].distance, t[0].distance, 1e-3 * (1 + fabs(t[0].distance)));
        ims_hnsw_free(h);
    }
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void test_reproducible_and_parallel(void)
{
    char p1[] = "/tmp/ims_idx_r1_XXXXXX", p2[] = "/tmp/ims_idx_r2_XXXXXX";
    close(mkstemp(p1)), close(mkstemp(p2));
    ims_hnsw *a = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, DIM, X, N, 1, 7);
    ims_hnsw *b = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, DIM, X, N, 1, 7);
    CHECK(a && b);
    CHECK_RC(ims_hnsw_save(a, p1), IMS_OK);
    CHECK_RC(ims_hnsw_save(b, p2), IMS_OK);
    CHECK_MSG(same_file(p1, p2), "same seed, single thread: files differ");
    ims_hnsw_free(b);
    b = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, DIM, X, N, 1, 8);
    CHECK_RC(ims_hnsw_save(b, p2), IMS_OK);
    CHECK_MSG(!same_file(p1, p2), "different seeds gave the same graph");
    ims_hnsw_free(b);
    /* parallel build: same recall, valid graph */
    ims_hnsw *c = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, DIM, X, N, 4, 7);
    CHECK(c != NULL);
    CHECK_RC(ims_hnsw_check(c, 1), IMS_OK);
    CHECK_EQ(ims_hnsw_count(c), N);
    ims_search_opts o = {.ef = 64, .mode = IMS_SEARCH_GRAPH};
    double ra = tix_recall(a, IMS_METRIC_L2, X, N, DIM, Q, NQ, 10, &o, NULL, NULL);
    double rc = tix_recall(c, IMS_METRIC_L2, X, N, DIM, Q, NQ, 10, &o, NULL, NULL);
    CHECK_MSG(rc >= 0.95 && rc >= ra - 0.02, "parallel recall %.3f vs serial %.3f", rc, ra);
    ims_hnsw_free(a), ims_hnsw_free(c);
    unlink(p1), unlink(p2);
}

static void test_insert_after_load(void)
{
    char p[] = "/tmp/ims_idx_l_XXXXXX";
    close(mkstemp(p));
    ims_hnsw *h = tix_build(IMS_METRIC_COSINE, IMS_STORAGE_F32, 0, DIM, X, N / 2, 2, 3);
    CHECK_RC(ims_hnsw_save(h, p), IMS_OK);
    ims_hnsw_free(h);
    ims_error err;
    CHECK_RC(ims_hnsw_open(p, &h, &err), IMS_OK);
    if (!h)
        return;
    ims_hnsw_info info;
    ims_hnsw_get_info(h, &info);
    CHECK_EQ(info.mapped, 1);
    CHECK_EQ(info.n_items, N / 2);
    CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
    /* insert the other half after load, one by one and as a batch */
    for (size_t i = N / 2; i < N / 2 + 100; i++)
        CHECK_RC(ims_hnsw_add(h, 1000 + i, X + i * DIM), IMS_OK);
    uint64_t *ids = malloc(sizeof(uint64_t) * N);
    for (size_t i = 0; i < N; i++)
        ids[i] = 1000 + i;
    CHECK_RC(ims_hnsw_add_batch(h, N - N / 2 - 100, ids + N / 2 + 100, X + (N / 2 + 100) * DIM, 2),
             IMS_OK);
    CHECK_RC(ims_hnsw_add(h, 1000, X), IMS_EEXIST);
    CHECK_EQ(ims_hnsw_count(h), N);
    CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
    ims_search_opts o = {.ef = 64, .mode = IMS_SEARCH_GRAPH};
    double r = tix_recall(h, IMS_METRIC_COSINE, X, N, DIM, Q, NQ, 10, &o, NULL, NULL);
    CHECK_MSG(r >= 0.95, "recall after insert-after-load %.3f", r);
    /* save over the mapped file and reopen */
    CHECK_RC(ims_hnsw_save(h, p), IMS_OK);
    ims_hnsw_free(h);
    CHECK_RC(ims_hnsw_open(p, &h, &err), IMS_OK);
    CHECK_EQ(ims_hnsw_count(h), N);
    CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
    ims_hnsw_free(h);
    free(ids);
    unlink(p);
}

static int deleted_mod3(uint64_t id, void *ud)
{
    (void)ud;
    return (id % 3) != 0;
}

static void test_delete_compact_update(void)
{
    ims_hnsw *h = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, DIM, X, N, 1, 5);
    for (uint64_t id = 1000; id < 1000 + N; id++)
        if (id % 3 == 0)
            CHECK_RC(ims_hnsw_delete(h, id), IMS_OK);
    CHECK_RC(ims_hnsw_delete(h, 1002), IMS_ENOTFOUND);
    CHECK_RC(ims_hnsw_delete(h, 999999), IMS_ENOTFOUND);
    CHECK_RC(ims_hnsw_check(h, 0), IMS_OK);
    ims_search_opts o = {.ef = 64, .mode = IMS_SEARCH_GRAPH};
    ims_hit hits[50];
    size_t nh;
    int leaked = 0;
    for (int i = 0; i < NQ; i++) {
        ims_hnsw_search(h, Q + i * DIM, 50, &o, hits, &nh);
        for (size_t j = 0; j < nh; j++)
            leaked += hits[j].id % 3 == 0;
    }
    CHECK_EQ(leaked, 0);
    double r = tix_recall(h, IMS_METRIC_L2, X, N, DIM, Q, NQ, 10, &o, deleted_mod3, NULL);
    CHECK_MSG(r >= 0.95, "recall with deletes %.3f", r);
    uint64_t live = ims_hnsw_count(h);
    CHECK_RC(ims_hnsw_compact(h), IMS_OK);
    CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
    ims_hnsw_info info;
    ims_hnsw_get_info(h, &info);
    CHECK_EQ(info.n_deleted, 0);
    CHECK_EQ(info.n_items, live);
    r = tix_recall(h, IMS_METRIC_L2, X, N, DIM, Q, NQ, 10, &o, deleted_mod3, NULL);
    CHECK_MSG(r >= 0.95, "recall after compaction %.3f", r);
    /* deleted ids can come back; update moves a vector */
    CHECK_RC(ims_hnsw_add(h, 1002, X + 2 * DIM), IMS_OK);
    CHECK_RC(ims_hnsw_update(h, 1001, Q), IMS_OK);
    CHECK_RC(ims_hnsw_search(h, Q, 1, &o, hits, &nh), IMS_OK);
    CHECK_EQ(nh, 1);
    CHECK_EQ(hits[0].id, 1001);
    CHECK_NEAR(hits[0].distance, 0, 1e-5);
    float nanv[DIM];
    memcpy(nanv, Q, sizeof nanv);
    nanv[3] = NAN;
    CHECK_RC(ims_hnsw_update(h, 1001, nanv), IMS_EINVAL);
    CHECK(ims_hnsw_contains(h, 1001)); /* a failed update keeps the old vector */
    CHECK_RC(ims_hnsw_update(h, 777777, Q + DIM), IMS_OK); /* absent: added */
    CHECK(ims_hnsw_contains(h, 777777));
    CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
    /* delete everything, compact to empty, then use again */
    for (uint64_t id = 1000; id < 1000 + N; id++)
        ims_hnsw_delete(h, id);
    ims_hnsw_delete(h, 777777);
    CHECK_EQ(ims_hnsw_count(h), 0);
    CHECK_RC(ims_hnsw_search(h, Q, 5, &o, hits, &nh), IMS_OK);
    CHECK_EQ(nh, 0);
    CHECK_RC(ims_hnsw_compact(h), IMS_OK);
    CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
    CHECK_RC(ims_hnsw_add(h, 5, X), IMS_OK);
    CHECK_RC(ims_hnsw_search(h, X, 5, &o, hits, &nh), IMS_OK);
    CHECK_EQ(nh, 1);
    CHECK_EQ(hits[0].id, 5);
    ims_hnsw_free(h);
}

typedef struct fctx {
    uint64_t mod, calls;
} fctx;

static int admit_mod(uint64_t id, void *ud)
{
    fctx *f = ud;
    f->calls++;
    return (id * 2654435761u) % 1000 < f->mod;
}

static void test_filters(void)
{
    ims_hnsw *h = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, DIM, X, N, 1, 9);
    static const uint64_t permille[] = {500, 50, 5};
    static const int modes[] = {IMS_SEARCH_AUTO, IMS_SEARCH_GRAPH, IMS_SEARCH_EXACT};
    uint64_t *bits = calloc((1000 + N) / 64 + 1, 8);
    for (int p = 0; p < 3; p++) {
        fctx f = {permille[p], 0};
        memset(bits, 0, ((1000 + N) / 64 + 1) * 8);
        for (uint64_t id = 1000; id < 1000 + N; id++)
            if (admit_mod(id, &f))
                bits[id >> 6] |= 1ull << (id & 63);
        for (int m = 0; m < 3; m++) {
            for (int use_bits = 0; use_bits < 2; use_bits++) {
                ims_search_opts o = {.ef = 64, .mode = modes[m]};
                if (use_bits)
                    o.allow = bits, o.n_allow_bits = 1000 + N;
                else
                    o.filter = admit_mod, o.filter_ud = &f;
                ims_hit hits[10];
                size_t nh;
                int leaked = 0;
                for (int i = 0; i < NQ; i++) {
                    ims_hnsw_search(h, Q + i * DIM, 10, &o, hits, &nh);
                    for (size_t j = 0; j < nh; j++)
                        leaked += !admit_mod(hits[j].id, &f);
                }
                CHECK_MSG(leaked == 0, "filter %.1f%% mode %d leaked %d",
                          permille[p] / 10.0, modes[m], leaked);
                double r = tix_recall(h, IMS_METRIC_L2, X, N, DIM, Q, NQ, 10, &o, admit_mod, &f);
                CHECK_MSG(r >= 0.95, "filter %.1f%% mode %d bits %d: recall %.3f",
                          permille[p] / 10.0, modes[m], use_bits, r);
            }
        }
    }
    free(bits);
    ims_hnsw_free(h);
}

static void test_quantized(void)
{
    static const int st[] = {IMS_STORAGE_F16, IMS_STORAGE_INT8, IMS_STORAGE_INT8};
    static const int keep[] = {0, 0, 1};
    static const int metrics[] = {IMS_METRIC_L2, IMS_METRIC_COSINE};
    ims_search_opts o = {.ef = 64, .mode = IMS_SEARCH_GRAPH};
    for (int s = 0; s < 3; s++)
        for (int m = 0; m < 2; m++) {
            ims_hnsw *h = tix_build(metrics[m], st[s], keep[s], DIM, X, N, 2, 1);
            CHECK(h != NULL);
            if (!h)
                continue;
            CHECK_MSG(ims_hnsw_check(h, 1) == IMS_OK, "check: %s", ims_hnsw_errmsg(h));
            double r = tix_recall(h, metrics[m], X, N, DIM, Q, NQ, 10, &o, NULL, NULL);
            CHECK_MSG(r >= (keep[s] ? 0.95 : 0.9), "%s%s %s recall %.3f",
                      ims_storage_name(st[s]), keep[s] ? "+float" : "",
                      ims_metric_name(metrics[m]), r);
            char p[] = "/tmp/ims_idx_q_XXXXXX";
            close(mkstemp(p));
            CHECK_RC(ims_hnsw_save(h, p), IMS_OK);
            ims_hnsw *g = NULL;
            ims_error err;
            CHECK_RC(ims_hnsw_open(p, &g, &err), IMS_OK);
            if (g) {
                CHECK_RC(ims_hnsw_check(g, 1), IMS_OK);
                double r2 = tix_recall(g, metrics[m], X, N, DIM, Q, NQ, 10, &o, NULL, NULL);
                CHECK_NEAR(r2, r, 1e-9);
                ims_hnsw_free(g);
            }
            unlink(p);
            ims_hnsw_free(h);
        }
}

static void test_edges(void)
{
    ims_hnsw_params p = {.metric = IMS_METRIC_L2, .n_dims = 4};
    ims_hnsw *h;
    ims_error err;
    ims_hit hits[20];
    size_t nh = 99;
    CHECK_RC(ims_hnsw_new(&p, &h, &err), IMS_OK);
    float q[4] = {0, 0, 0, 0};
    CHECK_RC(ims_hnsw_search(h, q, 5, NULL, hits, &nh), IMS_OK); /* empty */
    CHECK_EQ(nh, 0);
    CHECK_RC(ims_hnsw_search(h, q, 0, NULL, hits, &nh), IMS_EINVAL);
    CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
    /* duplicates: the same vector under many ids; k > count */
    float v[4] = {1, 2, 3, 4};
    for (uint64_t id = 0; id < 12; id++)
        CHECK_RC(ims_hnsw_add(h, id, v), IMS_OK);
    CHECK_RC(ims_hnsw_add(h, 3, v), IMS_EEXIST);
    CHECK_RC(ims_hnsw_search(h, v, 20, &(ims_search_opts){.mode = IMS_SEARCH_GRAPH}, hits, &nh),
             IMS_OK);
    CHECK_EQ(nh, 12);
    CHECK_NEAR(hits[11].distance, 0, 0);
    float bad[4] = {1, NAN, 0, 0};
    CHECK_RC(ims_hnsw_add(h, 99, bad), IMS_EINVAL);
    CHECK(strstr(ims_hnsw_errmsg(h), "NaN") != NULL);
    bad[1] = INFINITY;
    CHECK_RC(ims_hnsw_add(h, 99, bad), IMS_EINVAL);
    CHECK_RC(ims_hnsw_search(h, bad, 3, NULL, hits, &nh), IMS_EINVAL);
    uint64_t ids2[2] = {100, 100};
    float two[8] = {0};
    CHECK_RC(ims_hnsw_add_batch(h, 2, ids2, two, 1), IMS_EEXIST); /* duplicate in batch */
    CHECK(!ims_hnsw_contains(h, 100));
    CHECK_EQ(ims_hnsw_count(h), 12);
    CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
    ims_hnsw_free(h);
    /* cosine rejects zero vectors */
    p.metric = IMS_METRIC_COSINE;
    CHECK_RC(ims_hnsw_new(&p, &h, &err), IMS_OK);
    CHECK_RC(ims_hnsw_add(h, 1, q), IMS_EINVAL);
    ims_hnsw_free(h);
    /* bad parameters */
    p.n_dims = 0;
    CHECK_RC(ims_hnsw_new(&p, &h, &err), IMS_EINVAL);
    p.n_dims = 4097;
    CHECK_RC(ims_hnsw_new(&p, &h, &err), IMS_EINVAL);
    p.n_dims = 4, p.M = 1;
    CHECK_RC(ims_hnsw_new(&p, &h, &err), IMS_EINVAL);
    /* dim 1 and dim 4096 */
    static const uint32_t dims[] = {1, 4096};
    for (int t = 0; t < 2; t++) {
        uint32_t D = dims[t];
        size_t n = D == 1 ? 500 : 150;
        float *x = tix_data(n, D, 5, 11 + t);
        h = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, D, x, n, 1, 1);
        CHECK(h != NULL);
        ims_search_opts o = {.ef = 64, .mode = IMS_SEARCH_GRAPH};
        double r = tix_recall(h, IMS_METRIC_L2, x, n, D, x, 20, 10, &o, NULL, NULL);
        CHECK_MSG(r >= (D == 1 ? 0.9 : 0.95), "dim %u recall %.3f", D, r);
        CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
        ims_hnsw_free(h);
        free(x);
    }
}

/* float32 builds at >= 256 dimensions walk the graph over temporary int8
 * codes (hnsw_build.c): same recall, and the index is plain float32 after */
static void test_walk_build(void)
{
    uint32_t D = 256;
    size_t n = 800;
    float *x = tix_data(n, D, 8, 21);
    ims_hnsw *h = tix_build(IMS_METRIC_COSINE, IMS_STORAGE_F32, 0, D, x, n, 2, 1);
    CHECK(h != NULL);
    if (!h)
        return;
    CHECK_MSG(ims_hnsw_check(h, 1) == IMS_OK, "check: %s", ims_hnsw_errmsg(h));
    ims_hnsw_info in;
    ims_hnsw_get_info(h, &in);
    CHECK_EQ(in.storage, IMS_STORAGE_F32);
    CHECK_EQ(in.keep_float, 0);
    ims_search_opts o = {.ef = 64, .mode = IMS_SEARCH_GRAPH};
    double r = tix_recall(h, IMS_METRIC_COSINE, x, n, D, x + 7 * D, 40, 10, &o, NULL, NULL);
    CHECK_MSG(r >= 0.95, "walk build recall %.3f", r);
    float v[256];
    CHECK_RC(ims_hnsw_get_vector(h, 1003, v), IMS_OK);
    float nrm = 0;
    for (uint32_t d = 0; d < D; d++)
        nrm += v[d] * v[d];
    CHECK_NEAR(nrm, 1.0, 1e-4); /* exact float32 stored, normalised */
    ims_hnsw_free(h);
    free(x);
}

int main(void)
{
    ims_init();
    X = tix_data(N, DIM, 20, 1);
    Q = tix_data(NQ, DIM, 20, 1); /* same centers: queries near the data */
    /* perturb queries so they are not copies of the first items */
    unsigned long long s = 99;
    for (size_t i = 0; i < (size_t)NQ * DIM; i++)
        Q[i] += check_rand_f(&s) * 0.3f;
    test_recall_metrics();
    test_reproducible_and_parallel();
    test_insert_after_load();
    test_delete_compact_update();
    test_filters();
    test_quantized();
    test_edges();
    test_walk_build();
    free(X), free(Q);
    return check_report();
}
