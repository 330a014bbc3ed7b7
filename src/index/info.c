/* SPDX-License-Identifier: MIT */
/* info.c — introspection: counts, membership, stored vectors, summary. */
#include <pthread.h>
#include <string.h>

#include "index_int.h"

uint64_t ims_hnsw_count(ims_hnsw *h)
{
    pthread_rwlock_rdlock(&h->rw);
    uint64_t n = h->n_nodes - h->n_deleted;
    pthread_rwlock_unlock(&h->rw);
    return n;
}

int ims_hnsw_contains(ims_hnsw *h, uint64_t id)
{
    pthread_rwlock_rdlock(&h->rw);
    int r = ims__map_ensure(h) == IMS_OK && ims__map_get(h, id) != IMS__NONE;
    pthread_rwlock_unlock(&h->rw);
    return r;
}

int ims_hnsw_get_vector(ims_hnsw *h, uint64_t id, float *out)
{
    pthread_rwlock_rdlock(&h->rw);
    int rc = ims__map_ensure(h);
    uint32_t i = rc ? IMS__NONE : ims__map_get(h, id);
    if (i != IMS__NONE)
        ims__decode(h, i, out);
    pthread_rwlock_unlock(&h->rw);
    if (rc)
        return rc;
    if (i == IMS__NONE)
        return ims__hnsw_err(h, IMS_ENOTFOUND, "id %llu not found", (unsigned long long)id);
    return IMS_OK;
}

void ims_hnsw_get_info(ims_hnsw *h, ims_hnsw_info *o)
{
    pthread_rwlock_rdlock(&h->rw);
    memset(o, 0, sizeof *o);
    o->metric = h->metric, o->storage = h->storage, o->keep_float = h->keep_float;
    o->n_dims = h->n_dims, o->M = h->M, o->ef_construction = h->ef_construction;
    o->ef_search = h->ef_search;
    o->n_items = h->n_nodes - h->n_deleted, o->n_deleted = h->n_deleted;
    o->max_level = h->max_level;
    size_t n = h->n_nodes, b = n * (8 + 2 + 4u * (1 + h->M0) + h->code_size);
    if (h->keep_float)
        b += n * 4u * h->n_dims;
    for (size_t i = 0; i < n; i++)
        b += (size_t)h->levels[i] * 4u * (1 + h->M);
    o->memory_bytes = b;
    o->mapped = h->backing_is_mmap;
    pthread_rwlock_unlock(&h->rw);
}
