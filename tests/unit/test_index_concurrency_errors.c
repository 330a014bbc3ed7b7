/* SPDX-License-Identifier: MIT */
/*
 * test_index_concurrency_errors.c — the thread-safety rules of index.h,
 * under load: several threads search while one thread adds and deletes,
 * and meanwhile other threads fail calls on the same handle in lock-step
 * rounds and must each read back their own message (ims_hnsw_errmsg is
 * per thread). The writer also fails calls and checks its own message.
 *
 * Threads never touch the CHECK counters (plain globals); each records its
 * findings in its own slot and main() checks them after joining. It is
 * meant to run under ThreadSanitizer too (IMS_SANITIZE=thread, or by hand:
 * -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS=-fsanitize=thread
 * -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread); with the message buffer
 * shared again, TSan reports the race and the checks fail.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "test_index_util.h"

#define N 1200 /* vectors; the first N0 are built up front */
#define N0 200
#define DIM 16
#define N_SEARCH 3 /* free-running searchers */
#define N_FAIL 4   /* threads failing in lock-step rounds */
#define ROUNDS 150

static float *X;
static ims_hnsw *H;
static int done;                    /* atomic: searchers stop */
static pthread_barrier_t round_bar; /* N_FAIL threads */

typedef struct result {
    long n_ops;      /* calls made */
    long bad_hits;   /* invalid or unsorted results */
    long bad_rc;     /* unexpected return codes */
    long bad_msg;    /* a message that was not this thread's own */
    char first[200]; /* the first wrong message, for the report */
} result;

static result res_search[N_SEARCH], res_fail[N_FAIL], res_writer;

static void note_msg(result *r, const char *got)
{
    if (r->bad_msg++ == 0)
        snprintf(r->first, sizeof r->first, "%s", got);
}

static void *searcher(void *arg)
{
    result *r = arg;
    ims_hit hits[10];
    size_t nh;
    unsigned long long s = (unsigned long long)(r - res_search) + 1;
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        const float *q = X + (check_rand_u64(&s) % N) * DIM;
        ims_search_opts o = {.ef = 32, .mode = (int)(check_rand_u64(&s) % 3)};
        if (ims_hnsw_search(H, q, 10, &o, hits, &nh) != IMS_OK)
            r->bad_rc++;
        for (size_t i = 0; i < nh; i++) {
            if (hits[i].id < 1000 || hits[i].id >= 1000 + N || !isfinite(hits[i].distance))
                r->bad_hits++;
            if (i && hits[i].distance < hits[i - 1].distance)
                r->bad_hits++;
        }
        r->n_ops++;
    }
    return NULL;
}

/* Each round every failer fails a call with an id only it uses, waits until
 * all have failed, makes a successful call (which must not clear the
 * message), reads its message, and waits until all have read. A message
 * shared by the handle would hold only one thread's id after the first
 * barrier. */
static void *failer(void *arg)
{
    result *r = arg;
    int t = (int)(r - res_fail);
    float v[DIM];
    ims_hit hits[4];
    size_t nh;
    for (int round = 0; round < ROUNDS; round++) {
        unsigned long long id = 50000000ull + (unsigned long long)t * 100000 + round;
        char want[96];
        int rc;
        if (round % 3 == 2) { /* a failing writer call */
            rc = ims_hnsw_delete(H, id);
            snprintf(want, sizeof want, "delete: id %llu not found", id);
        } else { /* a failing reader call */
            rc = ims_hnsw_get_vector(H, id, v);
            snprintf(want, sizeof want, "id %llu not found", id);
        }
        if (rc != IMS_ENOTFOUND)
            r->bad_rc++;
        pthread_barrier_wait(&round_bar);
        if (ims_hnsw_search(H, X, 4, NULL, hits, &nh) != IMS_OK)
            r->bad_rc++;
        const char *got = ims_hnsw_errmsg(H);
        if (strcmp(got, want) != 0)
            note_msg(r, got);
        r->n_ops += 3;
        pthread_barrier_wait(&round_bar);
    }
    return NULL;
}

int main(void)
{
    ims_init();
    X = tix_data(N, DIM, 10, 5);
    H = tix_build(IMS_METRIC_L2, IMS_STORAGE_F32, 0, DIM, X, N0, 1, 1);
    CHECK(H != NULL);
    if (!H)
        return check_report();
    CHECK_STR_EQ(ims_hnsw_errmsg(H), "no error"); /* main has not failed yet */
    pthread_barrier_init(&round_bar, NULL, N_FAIL);
    pthread_t ts[N_SEARCH], tf[N_FAIL];
    for (int t = 0; t < N_SEARCH; t++)
        pthread_create(&ts[t], NULL, searcher, &res_search[t]);
    for (int t = 0; t < N_FAIL; t++)
        pthread_create(&tf[t], NULL, failer, &res_fail[t]);

    /* the one writer: adds, deletes, updates, and fails now and then */
    result *r = &res_writer;
    for (size_t i = N0; i < N; i++) {
        if (ims_hnsw_add(H, 1000 + i, X + i * DIM) != IMS_OK)
            r->bad_rc++;
        if (i % 7 == 0 && ims_hnsw_delete(H, 1000 + i - 50) != IMS_OK)
            r->bad_rc++;
        if (i % 13 == 0 && ims_hnsw_update(H, 1000 + i - 20, X + (i - 19) * DIM) != IMS_OK)
            r->bad_rc++;
        if (i % 25 == 0) { /* a duplicate id: EEXIST, with this thread's message */
            char want[96];
            snprintf(want, sizeof want, "add: id %llu already present",
                     (unsigned long long)(1000 + i));
            if (ims_hnsw_add(H, 1000 + i, X) != IMS_EEXIST)
                r->bad_rc++;
            sched_yield(); /* let the failers fail in between */
            if (strcmp(ims_hnsw_errmsg(H), want) != 0)
                note_msg(r, ims_hnsw_errmsg(H));
        }
        r->n_ops++;
    }
    for (int t = 0; t < N_FAIL; t++)
        pthread_join(tf[t], NULL);
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    for (int t = 0; t < N_SEARCH; t++)
        pthread_join(ts[t], NULL);
    pthread_barrier_destroy(&round_bar);

    for (int t = 0; t < N_SEARCH; t++) {
        CHECK_EQ(res_search[t].bad_rc, 0);
        CHECK_EQ(res_search[t].bad_hits, 0);
        CHECK(res_search[t].n_ops > 0);
    }
    for (int t = 0; t < N_FAIL; t++) {
        CHECK_EQ(res_fail[t].bad_rc, 0);
        CHECK_MSG(res_fail[t].bad_msg == 0, "failer %d: %ld foreign messages, first \"%s\"", t,
                  res_fail[t].bad_msg, res_fail[t].first);
    }
    CHECK_EQ(res_writer.bad_rc, 0);
    CHECK_MSG(res_writer.bad_msg == 0, "writer: %ld foreign messages, first \"%s\"",
              res_writer.bad_msg, res_writer.first);
    CHECK_RC(ims_hnsw_check(H, 1), IMS_OK);
    printf("searches alongside the writer: %ld %ld %ld; failer rounds: %d\n", res_search[0].n_ops,
           res_search[1].n_ops, res_search[2].n_ops, ROUNDS);
    ims_hnsw_free(H);
    free(X);
    return check_report();
}
