/* SPDX-License-Identifier: MIT */
/*
 * idmap.c — the external id -> slot map: open addressing with linear
 * probing, splitmix64 hash, tombstones for deletes (dropped on rehash).
 *
 * A handle made by ims_hnsw_new has a ready (empty) map. One opened from a
 * file builds it on first need (ims__map_ensure), so that open stays
 * O(small sections); that first build may run under the shared lock, so it
 * is serialised by map_lock and published with a release store of
 * map_ready. Every other map call runs under the exclusive lock, or reads
 * under the shared lock after map_ensure.
 */
#include <pthread.h>

#include "index_int.h"

#define MAP_EMPTY IMS__NONE
#define MAP_TOMB (IMS__NONE - 1)

static inline size_t map_hash(uint64_t x)
{
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27, x *= 0x94d049bb133111ebULL;
    return (size_t)(x ^ (x >> 31));
}

int ims__map_reserve(ims_hnsw *h, size_t n)
{
    size_t need = n * 2 + 16, cap = 64;
    if (h->map_cap >= need)
        return IMS_OK;
    while (cap < need)
        cap *= 2;
    uint64_t *k = ims_malloc(cap * sizeof *k);
    uint32_t *v = ims_malloc(cap * sizeof *v);
    if (!k || !v) {
        ims_free(k), ims_free(v);
        return IMS_ENOMEM;
    }
    for (size_t i = 0; i < cap; i++)
        v[i] = MAP_EMPTY;
    size_t used = 0;
    for (size_t i = 0; i < h->map_cap; i++) {
        if (h->map_vals[i] >= MAP_TOMB)
            continue;
        size_t j = map_hash(h->map_keys[i]) & (cap - 1);
        while (v[j] != MAP_EMPTY)
            j = (j + 1) & (cap - 1);
        k[j] = h->map_keys[i], v[j] = h->map_vals[i], used++;
    }
    ims_free(h->map_keys), ims_free(h->map_vals);
    h->map_keys = k, h->map_vals = v, h->map_cap = cap, h->map_used = used;
    return IMS_OK;
}

uint32_t ims__map_get(const ims_hnsw *h, uint64_t id)
{
    if (!h->map_cap)
        return IMS__NONE;
    size_t m = h->map_cap - 1, j = map_hash(id) & m;
    for (;;) {
        uint32_t v = h->map_vals[j];
        if (v == MAP_EMPTY)
            return IMS__NONE;
        if (v != MAP_TOMB && h->map_keys[j] == id)
            return v;
        j = (j + 1) & m;
    }
}

/* caller ensured room (map_reserve) and that id is absent */
int ims__map_put(ims_hnsw *h, uint64_t id, uint32_t slot)
{
    if (h->map_used + 1 > h->map_cap / 2) {
        int rc = ims__map_reserve(h, h->map_used + 1);
        if (rc)
            return rc;
    }
    size_t m = h->map_cap - 1, j = map_hash(id) & m;
    while (h->map_vals[j] < MAP_TOMB)
        j = (j + 1) & m;
    h->map_keys[j] = id, h->map_vals[j] = slot;
    h->map_used++;
    return IMS_OK;
}

void ims__map_del(ims_hnsw *h, uint64_t id)
{
    if (!h->map_cap)
        return;
    size_t m = h->map_cap - 1, j = map_hash(id) & m;
    for (;;) {
        uint32_t v = h->map_vals[j];
        if (v == MAP_EMPTY)
            return;
        if (v != MAP_TOMB && h->map_keys[j] == id) {
            h->map_vals[j] = MAP_TOMB; /* map_used counts tombstones until rehash */
            return;
        }
        j = (j + 1) & m;
    }
}

/* Rebuild the map from ids/flags. ECORRUPT if a live id appears twice. */
int ims__map_rebuild(ims_hnsw *h)
{
    ims_free(h->map_keys), ims_free(h->map_vals);
    h->map_keys = NULL, h->map_vals = NULL, h->map_cap = 0, h->map_used = 0;
    int rc = ims__map_reserve(h, h->n_nodes - h->n_deleted + 16);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < h->n_nodes; i++) {
        if (h->flags[i] & IMS__FLAG_DELETED)
            continue;
        if (ims__map_get(h, h->ids[i]) != IMS__NONE)
            return IMS_ECORRUPT;
        if ((rc = ims__map_put(h, h->ids[i], i)))
            return rc;
    }
    return IMS_OK;
}

int ims__map_ensure(ims_hnsw *h)
{
    if (__atomic_load_n(&h->map_ready, __ATOMIC_ACQUIRE))
        return IMS_OK;
    pthread_mutex_lock(&h->map_lock);
    int rc = IMS_OK;
    if (!h->map_ready) {
        rc = ims__map_rebuild(h);
        if (rc == IMS_OK)
            __atomic_store_n(&h->map_ready, 1, __ATOMIC_RELEASE);
        else
            ims__hnsw_err(h, rc, "%s",
                          rc == IMS_ECORRUPT
                              ? "corrupt index: a live id appears twice (IDS section)"
                              : "out of memory building the id map");
    }
    pthread_mutex_unlock(&h->map_lock);
    return rc;
}
