/* SPDX-License-Identifier: MIT */
/*
 * scratch.c — per-search scratch (visited tags, heaps, query buffers) and
 * the handle's pool of them: a search takes one under pool_lock and gives
 * it back, so a warm handle searches without allocating.
 */
#include <pthread.h>

#include "index_int.h"

void ims__scratch_free(ims__scratch *s)
{
    if (!s)
        return;
    ims_free(s->visited);
    ims_free(s->C.v), ims_free(s->W.v), ims_free(s->R.v);
    ims_aligned_free(s->qbuf);
    ims_free(s->nbuf);
    ims_free(s);
}

int ims__heap_reserve(ims__heap *hp, size_t n)
{
    if (n <= hp->cap)
        return 0;
    ims__cand *v = ims_realloc(hp->v, n * sizeof *v);
    if (!v)
        return -1;
    hp->v = v, hp->cap = n;
    return 0;
}

ims__scratch *ims__scratch_get(ims_hnsw *h)
{
    pthread_mutex_lock(&h->pool_lock);
    ims__scratch *s = h->pool;
    if (s)
        h->pool = s->next;
    pthread_mutex_unlock(&h->pool_lock);
    if (!s) {
        s = ims_calloc(1, sizeof *s);
        if (!s)
            return NULL;
        size_t D = (h->n_dims + 15) & ~(size_t)15;
        s->qbuf = ims_aligned_alloc(64, 6 * D * sizeof(float));
        s->nbuf = ims_malloc(3 * (1 + (size_t)h->M0) * sizeof(uint32_t));
        if (!s->qbuf || !s->nbuf) {
            ims__scratch_free(s);
            return NULL;
        }
        s->abuf = s->qbuf + D, s->bbuf = s->abuf + D, s->dec = s->bbuf + D;
        s->abuf2 = s->dec + D, s->bbuf2 = s->abuf2 + D;
        s->nbuf2 = s->nbuf + 1 + h->M0;
        size_t e = (size_t)IMS_MAX(h->ef_construction, h->ef_search) + 2 * h->M0 + 16;
        if (ims__heap_reserve(&s->C, e) || ims__heap_reserve(&s->W, e) ||
            ims__heap_reserve(&s->R, e)) {
            ims__scratch_free(s);
            return NULL;
        }
    }
    if (s->n_visited < h->capacity) {
        ims_free(s->visited);
        s->visited = ims_calloc(h->capacity, sizeof(uint16_t));
        s->n_visited = s->visited ? h->capacity : 0;
        s->epoch = 0;
        if (!s->visited) {
            ims__scratch_free(s);
            return NULL;
        }
    }
    return s;
}

void ims__scratch_put(ims_hnsw *h, ims__scratch *s)
{
    pthread_mutex_lock(&h->pool_lock);
    s->next = h->pool;
    h->pool = s;
    pthread_mutex_unlock(&h->pool_lock);
}
