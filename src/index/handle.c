/* SPDX-License-Identifier: MIT */
/*
 * handle.c — creation, growth and destruction of an index handle: the
 * parameters, the locks, and the slot arrays (heap or file-backed, see the
 * memory model in index_int.h).
 */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "index_int.h"

static void rwlock_init(pthread_rwlock_t *rw)
{
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
#ifdef __GLIBC__
    /* glibc prefers readers by default: a busy server would starve inserts */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(rw, &a);
    pthread_rwlockattr_destroy(&a);
}

ims_hnsw *ims__hnsw_handle_new(void)
{
    ims_hnsw *h = ims_calloc(1, sizeof *h);
    if (!h)
        return NULL;
    rwlock_init(&h->rw);
    pthread_mutex_init(&h->ep_lock, NULL);
    pthread_mutex_init(&h->pool_lock, NULL);
    pthread_mutex_init(&h->map_lock, NULL);
    h->entry = IMS__NONE;
    h->max_level = -1;
    return h;
}

/* ---- creation, growth, destruction ------------------------------------------- */

static void free_if_owned(void *p, int owned, int aligned)
{
    if (!owned)
        return;
    if (aligned)
        ims_aligned_free(p);
    else
        ims_free(p);
}

static int in_backing(const ims_hnsw *h, const void *p)
{
    const unsigned char *c = p;
    return h->backing && c >= h->backing && c < h->backing + h->backing_size;
}

void ims__hnsw_release_data(ims_hnsw *h)
{
    if (h->upper) {
        for (uint32_t i = 0; i < h->n_nodes; i++)
            if (h->upper[i] && !in_backing(h, h->upper[i]))
                ims_free(h->upper[i]);
        ims_free(h->upper);
    }
    free_if_owned(h->ids, h->ids_owned, 0);
    free_if_owned(h->levels, h->levels_owned, 0);
    free_if_owned(h->flags, h->flags_owned, 0);
    free_if_owned(h->links0, h->links0_owned, 1);
    free_if_owned(h->codes, h->codes_owned, 1);
    free_if_owned(h->floats, h->floats_owned, 1);
    free_if_owned(h->qlo, h->quant_owned, 0);
    free_if_owned(h->qstep, h->quant_owned, 0);
    ims_free(h->locks);
    ims_free(h->map_keys), ims_free(h->map_vals);
    if (h->backing) {
        if (h->backing_is_mmap)
            munmap(h->backing, h->backing_size);
        else
            ims_aligned_free(h->backing);
    }
    h->backing = NULL;
}

void ims_hnsw_free(ims_hnsw *h)
{
    if (!h)
        return;
    ims__hnsw_release_data(h);
    while (h->pool) {
        ims__scratch *s = h->pool;
        h->pool = s->next;
        ims__scratch_free(s);
    }
    pthread_rwlock_destroy(&h->rw);
    pthread_mutex_destroy(&h->ep_lock);
    pthread_mutex_destroy(&h->pool_lock);
    pthread_mutex_destroy(&h->map_lock);
    ims_free(h);
}

void ims_hnsw_close(ims_hnsw *h) { ims_hnsw_free(h); }

/* Set the derived fields from the parameter fields already in h. */
int ims__hnsw_alloc_core(ims_hnsw *h)
{
    h->M0 = 2 * h->M;
    h->mult = 1.0 / log((double)IMS_MAX(h->M, 2));
    h->code_size = h->storage == IMS_STORAGE_F32   ? 4u * h->n_dims
                   : h->storage == IMS_STORAGE_F16 ? 2u * h->n_dims
                                                   : h->n_dims;
    h->k = ims__index_kernels_for(ims_cpu_level());
    h->entry = IMS__NONE;
    h->max_level = -1;
    return IMS_OK;
}

int ims_hnsw_new(const ims_hnsw_params *p, ims_hnsw **out, ims_error *err)
{
    *out = NULL;
    ims_init(); /* idempotent: CPU detection picks the distance kernels */
    if (!p)
        return ims_error_set(err, IMS_EINVAL, "hnsw: no parameters");
    if (p->n_dims < 1 || p->n_dims > IMS_HNSW_MAX_DIM)
        return ims_error_set(err, IMS_EINVAL, "hnsw: n_dims %u not in 1..%d", p->n_dims,
                             IMS_HNSW_MAX_DIM);
    if (p->metric < IMS_METRIC_L2 || p->metric > IMS_METRIC_COSINE)
        return ims_error_set(err, IMS_EINVAL, "hnsw: unknown metric %d", p->metric);
    if (p->storage < IMS_STORAGE_F32 || p->storage > IMS_STORAGE_INT8)
        return ims_error_set(err, IMS_EINVAL, "hnsw: unknown storage %d", p->storage);
    uint32_t M = p->M ? p->M : 16;
    if (M < 2 || M > IMS_HNSW_MAX_M)
        return ims_error_set(err, IMS_EINVAL, "hnsw: M %u not in 2..%d", M, IMS_HNSW_MAX_M);
    ims_hnsw *h = ims__hnsw_handle_new();
    if (!h)
        return ims_error_set(err, IMS_ENOMEM, "hnsw: out of memory");
    h->metric = p->metric, h->storage = p->storage, h->n_dims = p->n_dims, h->M = M;
    h->keep_float = p->storage != IMS_STORAGE_F32 && p->keep_float;
    h->ef_construction = p->ef_construction ? p->ef_construction : 200;
    h->ef_search = p->ef_search ? p->ef_search : 64;
    h->seed = p->seed ? p->seed : 42;
    h->map_ready = 1;
    ims__hnsw_alloc_core(h);
    if (h->storage == IMS_STORAGE_INT8) {
        h->qlo = ims_calloc(h->n_dims, sizeof(float));
        h->qstep = ims_calloc(h->n_dims, sizeof(float));
        h->quant_owned = 1;
        if (!h->qlo || !h->qstep) {
            ims_hnsw_free(h);
            return ims_error_set(err, IMS_ENOMEM, "hnsw: out of memory");
        }
    }
    h->ids_owned = h->levels_owned = h->flags_owned = h->links0_owned = h->codes_owned =
        h->floats_owned = 1;
    *out = h;
    return IMS_OK;
}

void ims__mark_dirty(ims_hnsw *h, int sec)
{
    if (sec)
        h->sec_pristine[sec] = 0;
    else
        memset(h->sec_pristine, 0, sizeof h->sec_pristine);
}

/* Large vector and link arrays (aligned, >= 8 MiB) are aligned to 2 MiB and
 * advised as transparent huge pages: searches touch them at random, and with
 * 4 KiB pages nearly every vector read of a 1 GB array is also a TLB miss.
 * Harmless where THP is off ("never"); with "madvise" (Debian's default)
 * only advised memory gets huge pages. */
void *ims__alloc_big(size_t bytes)
{
    if (bytes < (8u << 20))
        return ims_aligned_alloc(64, bytes);
    void *p = ims_aligned_alloc(2u << 20, bytes);
#ifdef MADV_HUGEPAGE
    if (p)
        madvise(p, bytes & ~(size_t)((2u << 20) - 1), MADV_HUGEPAGE);
#endif
    return p;
}

/* grow one array to new_cap elements of esz bytes, keeping n elements */
static void *grow(void *old, size_t n, size_t new_cap, size_t esz, int aligned)
{
    size_t bytes;
    if (!ims_size_mul(new_cap, esz, &bytes))
        return NULL;
    void *p = aligned ? ims__alloc_big(bytes) : ims_malloc(bytes);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, old, n * esz);
    memset((char *)p + n * esz, 0, bytes - n * esz);
    return p;
}

int ims__hnsw_reserve(ims_hnsw *h, size_t n_slots)
{
    if (n_slots <= h->capacity)
        return IMS_OK;
    if (n_slots > (size_t)IMS__NONE - 2)
        return IMS_EFULL;
    size_t cap = IMS_MAX(n_slots, (size_t)h->capacity + h->capacity / 2);
    cap = IMS_MAX(cap, 64);
    cap = IMS_MIN(cap, (size_t)IMS__NONE - 2);
    size_t n = h->n_nodes;
    void *ids = grow(h->ids, n, cap, 8, 0);
    void *levels = grow(h->levels, n, cap, 1, 0);
    void *flags = grow(h->flags, n, cap, 1, 0);
    void *locks = grow(NULL, 0, cap, 1, 0);
    void *links0 = grow(h->links0, n, cap, 4u * (1 + h->M0), 1);
    void *upper = grow(h->upper, n, cap, sizeof(uint32_t *), 0);
    void *codes = grow(h->codes, n, cap, h->code_size, 1);
    void *floats = h->keep_float ? grow(h->floats, n, cap, 4u * h->n_dims, 1) : NULL;
    if (!ids || !levels || !flags || !locks || !links0 || !upper || !codes ||
        (h->keep_float && !floats)) {
        ims_free(ids), ims_free(levels), ims_free(flags), ims_free(locks), ims_free(upper);
        ims_aligned_free(links0), ims_aligned_free(codes), ims_aligned_free(floats);
        return IMS_ENOMEM;
    }
    free_if_owned(h->ids, h->ids_owned, 0);
    free_if_owned(h->levels, h->levels_owned, 0);
    free_if_owned(h->flags, h->flags_owned, 0);
    free_if_owned(h->links0, h->links0_owned, 1);
    free_if_owned(h->codes, h->codes_owned, 1);
    free_if_owned(h->floats, h->floats_owned, 1);
    ims_free(h->locks);
    ims_free(h->upper);
    h->ids = ids, h->levels = levels, h->flags = flags, h->locks = locks;
    h->links0 = links0, h->upper = upper, h->codes = codes, h->floats = floats;
    h->ids_owned = h->levels_owned = h->flags_owned = h->links0_owned = h->codes_owned =
        h->floats_owned = 1;
    h->capacity = (uint32_t)cap;
    return IMS_OK;
}
