/* SPDX-License-Identifier: MIT */
/*
 * test_index_concurrency_open.c — the first uses of an opened index, from
 * many threads at once: the id map is built lazily under the shared lock
 * (ims__map_ensure), so readers calling contains/get_vector race to build
 * it while others search; then one thread starts writing. Every thread
 * records its findings; main() checks them (CHECK is not thread-safe).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test_index_util.h"

#define N 1500
#define DIM 12
#define N_THREADS 6

static float *X;
static ims_hnsw *H;
static pthread_barrier_t start_bar;

typedef struct result {
    long n_ops, bad;
} result;
static result res[N_THREADS];

static void *reader(void *arg)
{
    result *r = arg;
    int t = (int)(r - res);
    float v[DIM];
    ims_hit hits[5];
    size_t nh;
    pthread_barrier_wait(&start_bar); /* all at once onto a fresh handle */
    for (int i = 0; i < 300; i++) {
        size_t j = (size_t)(t * 97 + i * 13) % N;
        if (t % 2 == 0) {
            /* ids 1000..1000+N-1 live until the writer deletes the low ones */
            if (ims_hnsw_get_vector(H, 1000 + j, v) == IMS_OK) {
                for (int d = 0; d < DIM; d++)
                    r->bad += v[d] != X[j * DIM + d];
            } else if (j >= 100) {
                r->bad++;
            }
            r->bad += ims_hnsw_contains(H, 5000000 + j) != 0;
        } else if (ims_hnsw_search(H, X + j * DIM, 5, NULL, hits, &nh) != IMS_OK || nh != 5) {
            r->bad++;
        }
        r->n_ops++;
    }
    return NULL;
}

int main(void)
{
    ims_init();
    X = tix_data(N, DIM, 8, 9);
    ims_hnsw *b = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, DIM, X, N, 1, 3);
    CHECK(b != NULL);
    if (!b)
        return check_report();
    char path[] = "/tmp/ims_conc_open_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_RC(ims_hnsw_save(b, path), IMS_OK);
    ims_hnsw_free(b);
    ims_error err = {0};
    CHECK_RC(ims_hnsw_open(path, &H, &err), IMS_OK);
    remove(path);
    if (!H)
        return check_report();

    pthread_barrier_init(&start_bar, NULL, N_THREADS + 1);
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++)
        pthread_create(&th[t], NULL, reader, &res[t]);
    pthread_barrier_wait(&start_bar);
    int bad_w = 0; /* the writer deletes ids 1000..1099 while readers run */
    for (uint64_t id = 1000; id < 1100; id++)
        bad_w += ims_hnsw_delete(H, id) != IMS_OK;
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&start_bar);

    CHECK_EQ(bad_w, 0);
    for (int t = 0; t < N_THREADS; t++) {
        CHECK_MSG(res[t].bad == 0, "thread %d: %ld bad results", t, res[t].bad);
        CHECK_EQ(res[t].n_ops, 300);
    }
    CHECK_EQ(ims_hnsw_count(H), N - 100);
    CHECK_RC(ims_hnsw_check(H, 1), IMS_OK);
    ims_hnsw_free(H);
    free(X);
    return check_report();
}
