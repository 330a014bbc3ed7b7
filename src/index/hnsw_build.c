/* SPDX-License-Identifier: MIT */
/*
 * hnsw_build.c — life cycle of an index: creation, growth, the id map, the
 * per-search scratch pool, level generation, and adding vectors, one at a
 * time or as a batch built by N threads.
 *
 * Phases of ims_hnsw_add_batch (all under the exclusive lock):
 *   1. validate every vector and id, reserve slots and map entries, so
 *      that an invalid batch changes nothing;
 *   2. write ids, levels (seeded hash of the slot: reproducible whatever
 *      the thread count), codes and upper-layer link arrays for all slots;
 *   3. insert (Algorithm 1, hnsw_insert.c): the first node of an empty
 *      index alone, the rest by n_threads workers taking slots in order
 *      from an atomic counter. Workers coordinate through the per-node spin
 *      locks and ep_lock described in index_int.h. With one thread the
 *      graph depends only on the seed, parameters and insertion order.
 * If an insertion fails (out of memory while growing a search heap), the
 * node is marked deleted and unmapped: it still routes searches but is
 * never returned, so the index stays consistent.
 */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "index_int.h"

int ims__hnsw_err(ims_hnsw *h, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&h->err_lock);
    vsnprintf(h->errmsg, sizeof h->errmsg, fmt, ap);
    pthread_mutex_unlock(&h->err_lock);
    va_end(ap);
    return code;
}

const char *ims_hnsw_errmsg(ims_hnsw *h)
{
    return h ? h->errmsg : "no index";
}

const char *ims_metric_name(int metric)
{
    switch (metric) {
    case IMS_METRIC_L2: return "l2";
    case IMS_METRIC_IP: return "ip";
    case IMS_METRIC_COSINE: return "cosine";
    }
    return "?";
}

int ims_metric_from_name(const char *name)
{
    if (!strcmp(name, "l2")) return IMS_METRIC_L2;
    if (!strcmp(name, "ip")) return IMS_METRIC_IP;
    if (!strcmp(name, "cosine")) return IMS_METRIC_COSINE;
    return -1;
}

const char *ims_storage_name(int storage)
{
    switch (storage) {
    case IMS_STORAGE_F32: return "f32";
    case IMS_STORAGE_F16: return "f16";
    case IMS_STORAGE_INT8: return "int8";
    }
    return "?";
}

int ims_storage_from_name(const char *name)
{
    if (!strcmp(name, "f32")) return IMS_STORAGE_F32;
    if (!strcmp(name, "f16")) return IMS_STORAGE_F16;
    if (!strcmp(name, "int8")) return IMS_STORAGE_INT8;
    return -1;
}

/* ---- the id map ------------------------------------------------------------ */

#define MAP_EMPTY IMS__NONE
#define MAP_TOMB (IMS__NONE - 1)

static inline size_t map_hash(uint64_t x)
{
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27, x *= 0x94d049bb133111ebULL;
    return (size_t)(x ^ (x >> 31));
}

/* grow the map to hold at least n live keys (rehashing, dropping tombstones) */
static int map_reserve(ims_hnsw *h, size_t n)
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
        int rc = map_reserve(h, h->map_used + 1);
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
    int rc = map_reserve(h, h->n_nodes - h->n_deleted + 16);
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

void ims__rwlock_init(pthread_rwlock_t *rw)
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
            ims__hnsw_err(h, rc, "%s", rc == IMS_ECORRUPT
                                           ? "corrupt index: a live id appears twice (IDS section)"
                                           : "out of memory building the id map");
    }
    pthread_mutex_unlock(&h->map_lock);
    return rc;
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
    pthread_mutex_destroy(&h->err_lock);
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
    h->k = ims__index_kernels();
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
    ims_hnsw *h = ims_calloc(1, sizeof *h);
    if (!h)
        return ims_error_set(err, IMS_ENOMEM, "hnsw: out of memory");
    h->metric = p->metric, h->storage = p->storage, h->n_dims = p->n_dims, h->M = M;
    h->keep_float = p->storage != IMS_STORAGE_F32 && p->keep_float;
    h->ef_construction = p->ef_construction ? p->ef_construction : 200;
    h->ef_search = p->ef_search ? p->ef_search : 64;
    h->seed = p->seed ? p->seed : 42;
    ims__rwlock_init(&h->rw);
    pthread_mutex_init(&h->ep_lock, NULL);
    pthread_mutex_init(&h->pool_lock, NULL);
    pthread_mutex_init(&h->err_lock, NULL);
    pthread_mutex_init(&h->map_lock, NULL);
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
static void *alloc_big(size_t bytes)
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
    void *p = aligned ? alloc_big(bytes) : ims_malloc(bytes);
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

/* ---- scratch pool ------------------------------------------------------------------ */

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
        s->nbuf = ims_malloc(2 * (1 + (size_t)h->M0) * sizeof(uint32_t));
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

/* ---- adding ------------------------------------------------------------------------- */

/* Level of a slot: floor(-ln(U) * mL) (Section 4, "mL = 1/ln(M)") with U
 * drawn from a hash of (seed, slot), so that levels do not depend on
 * thread scheduling. */
int ims__random_level(const ims_hnsw *h, uint32_t slot)
{
    uint64_t x = h->seed * 0x9e3779b97f4a7c15ULL + slot + 1;
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27, x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    double u = ((x >> 11) + 1) * (1.0 / 9007199254740992.0); /* (0, 1] */
    double l = -log(u) * h->mult;
    return l >= IMS__MAX_LEVEL ? IMS__MAX_LEVEL : (int)l;
}

typedef struct build_job {
    ims_hnsw *h;
    uint32_t next, end; /* atomic cursor over slots */
    int rc;
    uint32_t *failed;   /* slots whose insertion failed */
    uint32_t n_failed;
} build_job;

static void *build_worker(void *arg)
{
    build_job *j = arg;
    ims_hnsw *h = j->h;
    ims__scratch *s = ims__scratch_get(h);
    for (;;) {
        uint32_t q = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (q >= j->end)
            break;
        int rc = s ? ims__hnsw_insert(h, q, s, 1) : IMS_ENOMEM;
        if (rc) {
            uint32_t f = __atomic_fetch_add(&j->n_failed, 1, __ATOMIC_RELAXED);
            j->failed[f] = q;
            __atomic_store_n(&j->rc, rc, __ATOMIC_RELAXED);
        }
    }
    if (s)
        ims__scratch_put(h, s);
    return NULL;
}

/* A float32 index is built over temporary int8 codes: Algorithm 2's
 * distances (most of the build) read a quarter of the bytes, while
 * Algorithm 4 and the inserted element's own vector stay exact (float32,
 * via h->floats). The handle briefly looks like an INT8 index with float
 * copies; swap_out_build_codes restores it. Skipped if memory is short. */
#ifndef IMS__WALK_MIN_DIM
#define IMS__WALK_MIN_DIM 256
#endif

typedef struct build_swap {
    unsigned char *codes;
    size_t code_size;
    float *qlo, *qstep;
    int quant_owned;
} build_swap;

static int swap_in_build_codes(ims_hnsw *h, build_swap *sw)
{
    size_t D = h->n_dims, bytes;
    /* below 256 dimensions the vectors are cheap to read and decoding
     * costs more than it saves (c-sift-A 200k x 128: 88 s vs 69 s build,
     * same recall) */
    if (h->storage != IMS_STORAGE_F32 || D < IMS__WALK_MIN_DIM ||
        !ims_size_mul(h->capacity, D, &bytes))
        return 0;
    unsigned char *codes = alloc_big(bytes);
    float *q = ims_malloc(2 * D * sizeof(float));
    if (!codes || !q) {
        ims_aligned_free(codes), ims_free(q);
        return 0;
    }
    sw->codes = h->codes, sw->code_size = h->code_size;
    sw->qlo = h->qlo, sw->qstep = h->qstep, sw->quant_owned = h->quant_owned;
    h->floats = (float *)(void *)h->codes;
    h->qlo = q, h->qstep = q + D, h->quant_owned = 0;
    h->storage = IMS_STORAGE_INT8, h->code_size = D;
    ims__quant_train(h, h->floats, IMS_MIN(h->n_nodes, 65536u));
    for (uint32_t i = 0; i < h->n_nodes; i++)
        ims__encode(h, h->floats + (size_t)i * D, codes + (size_t)i * D);
    h->codes = codes;
    return 1;
}

static void swap_out_build_codes(ims_hnsw *h, build_swap *sw)
{
    ims_aligned_free(h->codes);
    ims_free(h->qlo);
    h->codes = sw->codes, h->code_size = sw->code_size, h->floats = NULL;
    h->qlo = sw->qlo, h->qstep = sw->qstep, h->quant_owned = sw->quant_owned;
    h->storage = IMS_STORAGE_F32, h->quant_ready = 0;
}

int ims__validate_vec(ims_hnsw *h, const float *v)
{
    for (uint32_t d = 0; d < h->n_dims; d++)
        if (!isfinite(v[d]))
            return ims__hnsw_err(h, IMS_EINVAL, "vector has a NaN or Inf at dimension %u", d);
    if (h->metric == IMS_METRIC_COSINE) {
        double ss = 0;
        for (uint32_t d = 0; d < h->n_dims; d++)
            ss += (double)v[d] * v[d];
        if (!(ss > 0) || !isfinite(ss))
            return ims__hnsw_err(h, IMS_EINVAL, "zero vector under the cosine metric");
    }
    return IMS_OK;
}

int ims__hnsw_add_locked(ims_hnsw *h, size_t n, const uint64_t *ids, const float *vecs,
                         int n_threads)
{
    if (n == 0)
        return IMS_OK;
    if (!ids || !vecs)
        return ims__hnsw_err(h, IMS_EINVAL, "add: NULL ids or vectors");
    size_t D = h->n_dims;
    for (size_t i = 0; i < n; i++) {
        int rc = ims__validate_vec(h, vecs + i * D);
        if (rc) {
            char why[IMS_ERROR_MSG_MAX];
            snprintf(why, sizeof why, "%s", h->errmsg);
            return ims__hnsw_err(h, rc, "add: item %zu (id %llu): %s", i,
                                 (unsigned long long)ids[i], why);
        }
    }
    int rc0 = ims__map_ensure(h);
    if (rc0)
        return rc0;
    uint32_t base = h->n_nodes;
    if ((size_t)base + n > (size_t)IMS__NONE - 2)
        return ims__hnsw_err(h, IMS_EFULL, "add: too many items");
    if (ims__hnsw_reserve(h, (size_t)base + n) || map_reserve(h, h->map_used + n))
        return ims__hnsw_err(h, IMS_ENOMEM, "add: out of memory");
    size_t i_map = 0;
    int rc = IMS_OK;
    for (; i_map < n; i_map++) {
        if (ims__map_get(h, ids[i_map]) != IMS__NONE) {
            rc = ims__hnsw_err(h, IMS_EEXIST, "add: id %llu already present",
                               (unsigned long long)ids[i_map]);
            break;
        }
        if ((rc = ims__map_put(h, ids[i_map], base + (uint32_t)i_map))) {
            ims__hnsw_err(h, rc, "add: out of memory");
            break;
        }
    }
    size_t i_up = 0;
    if (!rc) {
        for (; i_up < n; i_up++) {
            uint32_t q = base + (uint32_t)i_up;
            int l = ims__random_level(h, q);
            h->levels[q] = (uint8_t)l;
            h->upper[q] = NULL;
            if (l > 0 && !(h->upper[q] = ims_calloc((size_t)l * (1 + h->M), 4))) {
                rc = ims__hnsw_err(h, IMS_ENOMEM, "add: out of memory");
                break;
            }
        }
    }
    build_job j = {0};
    if (!rc && !(j.failed = ims_malloc(n * sizeof(uint32_t))))
        rc = ims__hnsw_err(h, IMS_ENOMEM, "add: out of memory");
    if (rc) { /* undo: nothing was added */
        for (size_t i = 0; i < i_up; i++)
            ims_free(h->upper[base + i]), h->upper[base + i] = NULL;
        for (size_t i = 0; i < i_map; i++)
            ims__map_del(h, ids[i]);
        return rc;
    }
    ims__mark_dirty(h, 0);
    /* A quantised index without float copies still builds from float32:
     * node-to-node distances (Algorithm 4) would otherwise decode a code
     * per candidate, which doubles the build time at 1280 dimensions. The
     * copies live for this batch only (skipped if memory is short). */
    float *tmp_floats = NULL;
    if (h->storage != IMS_STORAGE_F32 && !h->keep_float && n >= 256) {
        size_t bytes;
        if (ims_size_mul3(h->capacity, D, sizeof(float), &bytes) &&
            (tmp_floats = alloc_big(bytes))) {
            for (uint32_t q = 0; q < base; q++)
                ims__decode(h, q, tmp_floats + (size_t)q * D);
            h->floats = tmp_floats;
        }
    }
    if (h->storage == IMS_STORAGE_INT8 && !h->quant_ready) {
        /* fit on normalised vectors for cosine: use the codes area as scratch is
         * not possible, so fit on raw input then (cosine inputs are normalised
         * below; the quantiser sees their range via a normalised copy) */
        if (h->metric == IMS_METRIC_COSINE) {
            size_t m = IMS_MIN(n, 65536);
            float *tmp = ims_malloc(m * D * sizeof(float));
            if (!tmp) {
                for (size_t i = 0; i < n; i++)
                    ims_free(h->upper[base + i]), h->upper[base + i] = NULL;
                for (size_t i = 0; i < n; i++)
                    ims__map_del(h, ids[i]);
                ims_free(j.failed);
                if (tmp_floats)
                    ims_aligned_free(tmp_floats), h->floats = NULL;
                return ims__hnsw_err(h, IMS_ENOMEM, "add: out of memory");
            }
            for (size_t i = 0; i < m; i++)
                ims__prepare_vec(h, vecs + i * D, tmp + i * D);
            ims__quant_train(h, tmp, m);
            ims_free(tmp);
        } else {
            ims__quant_train(h, vecs, n);
        }
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t q = base + (uint32_t)i;
        h->ids[q] = ids[i];
        h->flags[q] = 0;
        h->locks[q] = 0;
        memset(ims__links(h, q, 0), 0, 4u * (1 + h->M0));
        float *dst = h->floats ? h->floats + (size_t)q * D : NULL;
        if (h->storage == IMS_STORAGE_F32) {
            ims__prepare_vec(h, vecs + i * D, (float *)(void *)(h->codes + (size_t)q * h->code_size));
        } else {
            float tmp[IMS_HNSW_MAX_DIM];
            ims__prepare_vec(h, vecs + i * D, tmp);
            ims__encode(h, tmp, h->codes + (size_t)q * h->code_size);
            if (dst)
                memcpy(dst, tmp, D * sizeof(float));
        }
    }
    h->n_nodes = base + (uint32_t)n;
    build_swap sw;
    int swapped = n >= 256 && swap_in_build_codes(h, &sw);

    j.h = h, j.next = base, j.end = base + (uint32_t)n;
    if (h->entry == IMS__NONE) { /* the first node becomes the entry point */
        ims__scratch *s = ims__scratch_get(h);
        int r = s ? ims__hnsw_insert(h, base, s, 0) : IMS_ENOMEM;
        if (s)
            ims__scratch_put(h, s);
        if (r)
            j.failed[j.n_failed++] = base, j.rc = r;
        j.next++;
    }
    if (n_threads <= 0)
        n_threads = ims_cpu_count();
    if ((size_t)n_threads > n / 64)
        n_threads = (int)(n / 64);
    if (n_threads > 64)
        n_threads = 64;
    pthread_t tid[64];
    int n_started = 0;
    if (n_threads > 1) {
        for (int t = 0; t < n_threads; t++)
            if (pthread_create(&tid[n_started], NULL, build_worker, &j) == 0)
                n_started++;
    }
    if (n_started == 0) { /* single-threaded, in slot order */
        ims__scratch *s = ims__scratch_get(h);
        for (uint32_t q = j.next; q < j.end; q++) {
            int r = s ? ims__hnsw_insert(h, q, s, 0) : IMS_ENOMEM;
            if (r)
                j.failed[j.n_failed++] = q, j.rc = r;
        }
        if (s)
            ims__scratch_put(h, s);
    }
    for (int t = 0; t < n_started; t++)
        pthread_join(tid[t], NULL);
    if (tmp_floats)
        ims_aligned_free(tmp_floats), h->floats = NULL;
    if (swapped)
        swap_out_build_codes(h, &sw);
    for (uint32_t f = 0; f < j.n_failed; f++) { /* keep it consistent: unmap, mark deleted */
        uint32_t q = j.failed[f];
        ims__map_del(h, h->ids[q]);
        h->flags[q] |= IMS__FLAG_DELETED;
        h->n_deleted++;
    }
    ims_free(j.failed);
    if (j.rc)
        return ims__hnsw_err(h, j.rc, "add: %u of %zu insertions failed: %s", j.n_failed, n,
                             ims_strerror(j.rc));
    return IMS_OK;
}

int ims_hnsw_add_batch(ims_hnsw *h, size_t n, const uint64_t *ids, const float *vecs,
                       int n_threads)
{
    pthread_rwlock_wrlock(&h->rw);
    int rc = ims__hnsw_add_locked(h, n, ids, vecs, n_threads);
    pthread_rwlock_unlock(&h->rw);
    return rc;
}

int ims_hnsw_add(ims_hnsw *h, uint64_t id, const float *vec)
{
    return ims_hnsw_add_batch(h, 1, &id, vec, 1);
}

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
