/* SPDX-License-Identifier: MIT */
/*
 * exec_pool.c — a fixed pool of worker threads for the executor's parallel
 * loops (GEMM row blocks, depthwise rows, pooling, elementwise ops, whole
 * images of a batch).
 *
 * One session owns one pool, created once. A loop is published as a job
 * (function, context, item count, chunk size); everybody, the caller
 * included, claims chunks with an atomic counter until none is left.
 *
 * The caller waits only for threads that actually joined the job, never for
 * one that has not woken up yet: on a busy machine a descheduled worker
 * would otherwise stall every op for a whole time slice while the caller
 * had already done all the work. The protocol is a small seqlock:
 *   caller:  gen++ (odd: fields being written); wait until active == 0;
 *            write the job; gen++ (even: published); wake the workers;
 *            drain; wait until active == 0.
 *   worker:  see an even gen it has not run; active++; re-read gen; if it
 *            changed, active-- and look again; else drain; active--.
 * With sequentially consistent atomics either the worker's active++ comes
 * before the caller's wait (the caller waits for it) or the caller's gen++
 * comes before the worker's re-read (the worker backs out), so a worker
 * never reads a job that is being rewritten.
 *
 * Workers spin for about 50 microseconds before sleeping, because the
 * executor issues many short loops back to back.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "exec_int.h"

#define SPIN_SECONDS 50e-6

typedef struct worker_arg {
    struct ims__pool *p;
    int tid;
} worker_arg;

struct ims__pool {
    int n_threads;     /* including the caller */
    pthread_t *threads;
    worker_arg *args;
    int n_started;
    pthread_mutex_t mu; /* protects sleeping and quit */
    pthread_cond_t wake;
    atomic_int quit;
    atomic_uint gen;    /* job generation; odd while the job is being written */
    atomic_int active;  /* workers inside the current job */
    /* the current job */
    ims__range_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_llong next;  /* next chunk start */
};

static _Thread_local int g_tid; /* 0 for callers, 1.. for workers */

int ims__pool_tid(void) { return g_tid; }

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

static void *worker(void *arg)
{
    ims__pool *p = ((worker_arg *)arg)->p;
    g_tid = ((worker_arg *)arg)->tid;
    unsigned seen = atomic_load(&p->gen);
    for (;;) {
        unsigned g = atomic_load(&p->gen);
        if (g == seen || (g & 1)) {
            double t0 = ims_now();
            while (((g = atomic_load(&p->gen)) == seen || (g & 1)) &&
                   ims_now() - t0 < SPIN_SECONDS)
                for (int i = 0; i < 16; i++)
                    cpu_relax();
            if (g == seen || (g & 1)) {
                pthread_mutex_lock(&p->mu);
                while (((g = atomic_load(&p->gen)) == seen || (g & 1)) && !p->quit)
                    pthread_cond_wait(&p->wake, &p->mu);
                pthread_mutex_unlock(&p->mu);
            }
            if (p->quit)
                return NULL;
            continue;
        }
        atomic_fetch_add(&p->active, 1);
        if (atomic_load(&p->gen) == g) {
            seen = g;
            drain(p);
        }
        atomic_fetch_sub(&p->active, 1);
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
    pthread_mutex_destroy(&p->mu);
    ims_free(p->threads);
    ims_free(p->args);
    ims_free(p);
}

int ims__pool_threads(const ims__pool *p) { return p ? p->n_threads : 1; }

/* Wait until no worker is inside a job (yielding the CPU after a while:
 * on a busy machine the worker we wait for may need it). */
static void wait_idle(ims__pool *p)
{
    for (int i = 0; atomic_load(&p->active) > 0; i++) {
        if (i < 4096)
            cpu_relax();
        else
            sched_yield();
    }
}

void ims__pool_for_chunk(ims__pool *p, int64_t n, int64_t chunk, ims__range_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (chunk < 1)
        chunk = 1;
    if (!p || p->n_started == 0 || n <= chunk) {
        fn(ctx, 0, n);
        return;
    }
    atomic_fetch_add(&p->gen, 1); /* odd: writing */
    wait_idle(p);
    p->fn = fn, p->ctx = ctx, p->n = n, p->chunk = chunk;
    atomic_store(&p->next, 0);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1); /* even: published */
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    drain(p);
    wait_idle(p);
}

void ims__pool_for(ims__pool *p, int64_t n, int64_t grain, ims__range_fn fn, void *ctx)
{
    if (grain < 1)
        grain = 1;
    /* about 4 chunks per thread balances uneven chunks without much overhead */
    int n_threads = p ? p->n_threads : 1;
    int64_t chunk = (n + 4 * n_threads - 1) / (4 * n_threads);
    ims__pool_for_chunk(p, n, chunk < grain ? grain : chunk, fn, ctx);
}
