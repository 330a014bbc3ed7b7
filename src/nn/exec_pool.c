/* SPDX-License-Identifier: MIT */
/*
 * exec_pool.c — a fixed pool of worker threads for the executor's parallel
 * loops (depthwise convolution, pooling, elementwise ops, im2col).
 *
 * One session owns one pool, created once. A parallel loop publishes a job
 * (function, context, item count, chunk size) under the mutex, bumps the
 * generation and wakes the workers; everybody, the caller included, then
 * claims chunks with an atomic counter until none is left. The caller waits
 * until every worker has checked out of the generation, so a job's context
 * may live on the caller's stack. Workers spin briefly before sleeping
 * because the executor issues many short loops back to back.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "exec_int.h"

struct ims__pool {
    int n_threads; /* including the caller */
    pthread_t *threads;
    struct worker_arg *args;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_uint gen;  /* job generation */
    int quit;
    int busy;         /* workers still in the current generation */
    /* the current job */
    ims__range_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_llong next; /* next chunk start */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claim and run chunks of the current job until none is left. */
static void drain(ims__pool *p)
{
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->chunk);
        if (b >= p->n)
            return;
        int64_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->ctx, b, e);
    }
}

static _Thread_local int g_tid; /* 0 for callers, 1.. for workers */

int ims__pool_tid(void) { return g_tid; }

typedef struct worker_arg {
    ims__pool *p;
    int tid;
} worker_arg;

static void *worker(void *arg)
{
    ims__pool *p = ((worker_arg *)arg)->p;
    g_tid = ((worker_arg *)arg)->tid;
    unsigned seen = 0;
    for (;;) {
        /* spin a little: the next loop usually follows within microseconds */
        for (int i = 0; i < 20000 && atomic_load(&p->gen) == seen; i++)
            cpu_relax();
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->gen) == seen && !p->quit)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = atomic_load(&p->gen);
        pthread_mutex_unlock(&p->mu);
        drain(p);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

int ims__pool_new(int n_threads, ims__pool **out)
{
    *out = NULL;
    if (n_threads < 1)
        n_threads = 1;
    ims__pool *p = ims_calloc(1, sizeof *p);
    if (!p)
        return IMS_ENOMEM;
    p->n_threads = n_threads;
    if (pthread_mutex_init(&p->mu, NULL)) {
        ims_free(p);
        return IMS_ENOMEM;
    }
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->threads = ims_calloc((size_t)n_threads - 1, sizeof(pthread_t));
        p->args = ims_calloc((size_t)n_threads - 1, sizeof(worker_arg));
        if (!p->threads || !p->args) {
            ims__pool_free(p);
            return IMS_ENOMEM;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->args[i] = (worker_arg){p, i + 1};
            if (pthread_create(&p->threads[i], NULL, worker, &p->args[i])) {
                ims__pool_free(p);
                return IMS_ENOMEM;
            }
            p->n_started++;
        }
    }
    *out = p;
    return IMS_OK;
}

void ims__pool_free(ims__pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    ims_free(p->threads);
    ims_free(p->args);
    ims_free(p);
}

int ims__pool_threads(const ims__pool *p) { return p ? p->n_threads : 1; }

void ims__pool_for(ims__pool *p, int64_t n, int64_t grain, ims__range_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (!p || p->n_started == 0 || n <= grain) {
        fn(ctx, 0, n);
        return;
    }
    /* about 4 chunks per thread balances uneven chunks without much overhead */
    int64_t chunk = (n + 4 * p->n_threads - 1) / (4 * p->n_threads);
    if (chunk < grain)
        chunk = grain;
    pthread_mutex_lock(&p->mu);
    p->fn = fn, p->ctx = ctx, p->n = n, p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->busy = p->n_started;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    drain(p);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
