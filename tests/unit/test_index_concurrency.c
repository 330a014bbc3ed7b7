/* SPDX-License-Identifier: MIT */
/*
 * test_index_concurrency.c — searching threads alongside one writer that
 * inserts, deletes and updates: every result must be a valid, sorted list of
 * ids that were inserted (run under ASan/TSan-style builds too).
 */
#include <pthread.h>
#include <string.h>

#include "test_index_util.h"

#define N 2000
#define DIM 16

static float *X;
static ims_hnsw *H;
static volatile int done;
static int bad[2];
static long n_searches[2];

static void *searcher(void *arg)
{
    int t = (int)(intptr_t)arg;
    ims_hit hits[10];
    size_t nh;
    unsigned long long s = 1 + t;
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        const float *q = X + (check_rand_u64(&s) % N) * DIM;
        ims_search_opts o = {.ef = 32, .mode = (int)(check_rand_u64(&s) % 3)};
        if (ims_hnsw_search(H, q, 10, &o, hits, &nh) != IMS_OK)
            bad[t]++;
        for (size_t i = 0; i < nh; i++) {
            if (hits[i].id < 1000 || hits[i].id >= 1000 + N || !isfinite(hits[i].distance))
                bad[t]++;
            if (i && hits[i].distance < hits[i - 1].distance)
                bad[t]++;
        }
        n_searches[t]++;
    }
    return NULL;
}

int main(void)
{
    ims_init();
    X = tix_data(N, DIM, 10, 3);
    H = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, DIM, X, 200, 1, 1);
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        pthread_create(&th[t], NULL, searcher, (void *)(intptr_t)t);
    for (size_t i = 200; i < N; i++) {
        CHECK_RC(ims_hnsw_add(H, 1000 + i, X + i * DIM), IMS_OK);
        if (i % 10 == 0)
            CHECK_RC(ims_hnsw_delete(H, 1000 + i - 100), IMS_OK);
        if (i % 17 == 0)
            CHECK_RC(ims_hnsw_update(H, 1000 + i - 50, X + (i - 49) * DIM), IMS_OK);
        if (i % 500 == 0)
            CHECK_RC(ims_hnsw_compact(H), IMS_OK);
    }
    uint64_t ids[64];
    for (int i = 0; i < 64; i++)
        ids[i] = 100000 + i; /* outside the searchers' range on purpose: ignored below */
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    (void)ids;
    CHECK_EQ(bad[0] + bad[1], 0);
    CHECK(n_searches[0] > 0 && n_searches[1] > 0);
    CHECK_RC(ims_hnsw_check(H, 1), IMS_OK);
    printf("searches during inserts: %ld + %ld\n", n_searches[0], n_searches[1]);
    ims_hnsw_free(H);
    free(X);
    return check_report();
}
