/* SPDX-License-Identifier: MIT */
/*
 * hnsw_delete.c — delete, update, and compaction.
 *
 * Delete only marks the slot (flags bit) and drops the id from the map:
 * searches keep routing through the node (so the graph stays as navigable
 * as before) but never return it. Compaction reclaims the slots:
 *   1. repair: every live node u with a deleted neighbour x at layer lc gets
 *      a new list chosen by Algorithm 4 from u's live neighbours plus the
 *      live neighbours of each deleted x (the paths through x);
 *   2. entry point: if it was deleted, the live node with the highest level;
 *   3. renumber live slots densely (order kept), rewrite links, update the
 *      id map in place.
 * Everything that can fail (allocation) happens before the first change.
 */
#include <string.h>

#include "index_int.h"

int ims_hnsw_delete(ims_hnsw *h, uint64_t id)
{
    pthread_rwlock_wrlock(&h->rw);
    int rc = ims__map_ensure(h); /* sets the message on failure */
    uint32_t i = rc ? IMS__NONE : ims__map_get(h, id);
    if (rc) {
        ;
    } else if (i == IMS__NONE) {
        rc = ims__hnsw_err(h, IMS_ENOTFOUND, "delete: id %llu not found", (unsigned long long)id);
    } else {
        h->flags[i] |= IMS__FLAG_DELETED;
        ims__map_del(h, id);
        h->n_deleted++;
        ims__mark_dirty(h, IMS__SEC_FLAGS);
    }
    pthread_rwlock_unlock(&h->rw);
    return rc;
}

int ims_hnsw_update(ims_hnsw *h, uint64_t id, const float *vec)
{
    if (!vec)
        return ims__hnsw_err(h, IMS_EINVAL, "update: NULL vector");
    pthread_rwlock_wrlock(&h->rw);
    int rc = ims__validate_vec(h, vec);
    if (!rc)
        rc = ims__map_ensure(h);
    if (!rc) {
        uint32_t old = ims__map_get(h, id);
        if (old != IMS__NONE) {
            h->flags[old] |= IMS__FLAG_DELETED;
            ims__map_del(h, id);
            h->n_deleted++;
        }
        rc = ims__hnsw_add_locked(h, 1, &id, vec, 1);
        if (rc && old != IMS__NONE && ims__map_get(h, id) == IMS__NONE &&
            ims__map_put(h, id, old) == IMS_OK) { /* put the old vector back */
            h->flags[old] &= (uint8_t)~IMS__FLAG_DELETED;
            h->n_deleted--;
        }
    }
    pthread_rwlock_unlock(&h->rw);
    return rc;
}

/* set the slot of an id present in the map */
static void map_update(ims_hnsw *h, uint64_t id, uint32_t slot)
{
    size_t m = h->map_cap - 1;
    uint64_t x = id;
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27, x *= 0x94d049bb133111ebULL;
    size_t j = (size_t)(x ^ (x >> 31)) & m;
    for (;;) {
        uint32_t v = h->map_vals[j];
        if (v == IMS__NONE)
            return;
        if (v != IMS__NONE - 1 && h->map_keys[j] == id) {
            h->map_vals[j] = slot;
            return;
        }
        j = (j + 1) & m;
    }
}

static int is_dead(const ims_hnsw *h, uint32_t x)
{
    return x >= h->n_nodes || (h->flags[x] & IMS__FLAG_DELETED);
}

/* step 1 for node u at layer lc */
static void repair(ims_hnsw *h, ims__scratch *s, uint32_t u, int lc)
{
    uint32_t mmax = lc ? h->M : h->M0;
    uint32_t *l = ims__links(h, u, lc);
    uint32_t cnt = IMS_MIN(l[0], mmax), j;
    for (j = 0; j < cnt; j++)
        if (is_dead(h, l[1 + j]))
            break;
    if (j == cnt)
        return;
    if (++s->epoch == 0) {
        memset(s->visited, 0, s->n_visited * sizeof(uint16_t));
        s->epoch = 1;
    }
    uint16_t tag = s->epoch;
    s->visited[u] = tag;
    ims__heap *R = &s->R;
    R->n = 0;
    /* gather ids first (the distance context below reuses buffers) */
    uint32_t *ids = (uint32_t *)(void *)s->C.v; /* C.cap >= (1+M0)^2 reserved by caller */
    size_t n_ids = 0;
    for (j = 0; j < cnt; j++) {
        uint32_t x = l[1 + j];
        if (x >= h->n_nodes)
            continue;
        if (!(h->flags[x] & IMS__FLAG_DELETED)) {
            if (s->visited[x] != tag)
                s->visited[x] = tag, ids[n_ids++] = x;
            continue;
        }
        if (h->levels[x] < lc)
            continue;
        const uint32_t *lx = ims__links(h, x, lc);
        uint32_t cx = IMS_MIN(lx[0], mmax);
        for (uint32_t t = 0; t < cx; t++) {
            uint32_t y = lx[1 + t];
            if (is_dead(h, y) || s->visited[y] == tag || h->levels[y] < lc)
                continue;
            s->visited[y] = tag, ids[n_ids++] = y;
        }
    }
    float *ud = s->dec;
    const float *uv;
    ims__qctx qc;
    if (h->floats)
        uv = h->floats + (size_t)u * h->n_dims;
    else if (h->storage == IMS_STORAGE_F32)
        uv = (const float *)(const void *)(h->codes + (size_t)u * h->code_size);
    else
        ims__decode(h, u, ud), uv = ud;
    /* dec is reused by Algorithm 4: copy u's query into qbuf first */
    memcpy(s->qbuf, uv, h->n_dims * sizeof(float));
    ims__qctx_prepare(h, &qc, s->qbuf, s->abuf, s->bbuf);
    for (size_t t = 0; t < n_ids; t++) {
        uint32_t y = ids[t];
        float d = h->floats ? ims__dist_float(h, qc.q, h->floats + (size_t)y * h->n_dims)
                            : ims__dist_code(h, &qc, y);
        R->v[R->n].d = d, R->v[R->n].i = y, R->n++;
    }
    ims__cand sel[2 * IMS_HNSW_MAX_M];
    int n_sel = ims__select_neighbors(h, s, R, mmax, sel);
    for (int t = 0; t < n_sel; t++)
        l[1 + t] = sel[t].i;
    l[0] = (uint32_t)n_sel;
}

int ims_hnsw_compact(ims_hnsw *h)
{
    pthread_rwlock_wrlock(&h->rw);
    int rc = IMS_OK;
    uint32_t n = h->n_nodes;
    if (h->n_deleted == 0)
        goto out;
    if ((rc = ims__map_ensure(h)))
        goto out;
    size_t big = (size_t)(1 + h->M0) * (1 + h->M0);
    uint32_t *remap = ims_malloc((size_t)n * sizeof *remap);
    ims__scratch *s = ims__scratch_get(h);
    if (!remap || !s || ims__heap_reserve(&s->R, big) || ims__heap_reserve(&s->C, big)) {
        ims_free(remap);
        if (s)
            ims__scratch_put(h, s);
        rc = ims__hnsw_err(h, IMS_ENOMEM, "compact: out of memory");
        goto out;
    }
    ims__mark_dirty(h, 0);
    /* 1. repair */
    for (uint32_t u = 0; u < n; u++) {
        if (h->flags[u] & IMS__FLAG_DELETED)
            continue;
        for (int lc = 0; lc <= h->levels[u]; lc++)
            repair(h, s, u, lc);
    }
    ims__scratch_put(h, s);
    /* 2. entry point and top level among the live */
    uint32_t entry = IMS__NONE;
    int top = -1;
    if (h->entry != IMS__NONE && !is_dead(h, h->entry))
        entry = h->entry, top = h->levels[entry];
    else
        for (uint32_t u = 0; u < n; u++)
            if (!(h->flags[u] & IMS__FLAG_DELETED) && (int)h->levels[u] > top)
                top = h->levels[u], entry = u;
    /* 3. renumber */
    uint32_t m = 0;
    for (uint32_t u = 0; u < n; u++)
        remap[u] = (h->flags[u] & IMS__FLAG_DELETED) ? IMS__NONE : m++;
    size_t l0 = 4u * (1 + h->M0), D = h->n_dims;
    for (uint32_t u = 0; u < n; u++) {
        uint32_t v = remap[u];
        if (v == IMS__NONE) {
            if (h->upper[u] && !(h->backing && (unsigned char *)h->upper[u] >= h->backing &&
                                 (unsigned char *)h->upper[u] < h->backing + h->backing_size))
                ims_free(h->upper[u]);
            h->upper[u] = NULL;
            continue;
        }
        if (v != u) {
            h->ids[v] = h->ids[u], h->levels[v] = h->levels[u], h->flags[v] = 0;
            memcpy((char *)h->links0 + v * l0, (char *)h->links0 + u * l0, l0);
            h->upper[v] = h->upper[u], h->upper[u] = NULL;
            memcpy(h->codes + v * h->code_size, h->codes + u * h->code_size, h->code_size);
            if (h->floats)
                memcpy(h->floats + v * D, h->floats + u * D, D * sizeof(float));
        }
    }
    for (uint32_t v = 0; v < m; v++) {
        for (int lc = 0; lc <= h->levels[v]; lc++) {
            uint32_t *l = ims__links(h, v, lc), mmax = lc ? h->M : h->M0;
            uint32_t cnt = IMS_MIN(l[0], mmax), k = 0;
            for (uint32_t j = 0; j < cnt; j++) {
                uint32_t x = l[1 + j];
                if (x < n && remap[x] != IMS__NONE)
                    l[1 + k++] = remap[x];
            }
            l[0] = k;
        }
        map_update(h, h->ids[v], v);
    }
    h->n_nodes = m, h->n_deleted = 0;
    h->entry = entry == IMS__NONE ? IMS__NONE : remap[entry];
    h->max_level = top;
    ims_free(remap);
out:
    pthread_rwlock_unlock(&h->rw);
    return rc;
}
