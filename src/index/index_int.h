/* SPDX-License-Identifier: MIT */
/*
 * index_int.h — internals of the index module: the ims_hnsw struct, distance
 * kernels, quantisation, scratch, and the on-disk layout.
 *
 * In memory
 * ---------
 * A node is a *slot* 0..n_nodes-1 (inserted in order; compaction renumbers).
 * Per slot: ids[] (external id), levels[] (top layer), flags[] (deleted),
 * locks[] (a one-byte spin lock guarding that node's link lists during a
 * parallel build), links0 (layer 0: count + 2M slots, (1+M0) u32 per node),
 * upper[] (layers 1..level: level x (1+M) u32, NULL at level 0), codes
 * (stored vectors, code_size bytes each) and, for F16/INT8 with keep_float,
 * floats (float32 copies used to re-rank and for node-to-node distances).
 *
 * Links and vectors are kept in separate dense arrays rather than hnswlib's
 * interleaved data_level0: the file stays exactly "vectors + links + ids"
 * (no per-node padding), the arrays map straight from the file, and a search
 * touches one link list per expanded node but many vectors, whose loads are
 * software-prefetched one neighbour ahead.
 *
 * Memory model: arrays are heap (ims_malloc) or point into `backing` (the
 * private, writable mmap of a file, or a heap copy of a buffer). Writes to
 * backing pages only touch private pages; growth copies the array to the
 * heap (the *_owned flags say which is which).
 *
 * Locking invariants
 * ------------------
 * - rw: searches, check, get_info and save take it shared; add, delete,
 *   update and compact take it exclusive. So the arrays never move and
 *   never change under a searcher, and searchers need no other lock.
 * - Inside one exclusive section, add_batch may run several build threads.
 *   They share the graph through: locks[i] for reading or writing node i's
 *   link lists (never two held at once), ep_lock for entry point and
 *   max_level (held through a whole insertion whose level exceeds
 *   max_level, as in hnswlib), and atomics for nothing else: slots, levels,
 *   ids and codes of the batch are written before the threads start.
 * - The error message is per thread (hnsw_error.c), not in the handle,
 *   so it needs no lock. The scratch pool is guarded by pool_lock; the lazy
 *   build of the id map (first use after open, possibly under the shared
 *   lock) by map_lock, published with a release store of map_ready.
 * - During add_batch the handle may temporarily carry float copies
 *   (quantised storage) or int8 walk codes (float32 storage, the float
 *   vectors then serve as `floats`): see hnsw_build.c. Nothing outside the
 *   exclusive section can observe that state.
 *
 * On-disk layout (all integers little-endian; version 1)
 * ------------------------------------------------------
 *   OFFSET SIZE DESCRIPTION
 *        0    8 magic "IMSHNSW\0"
 *        8    4 version (1)
 *       12    4 min_reader_version (1): readers older than this must refuse
 *       16    4 header_size: bytes of header incl. section table and CRC
 *       20    4 metric (enum ims_metric, frozen values)
 *       24    4 storage (enum ims_storage, frozen values)
 *       28    4 n_dims
 *       32    4 M
 *       36    4 M0 (layer-0 links = 2M)
 *       40    4 ef_construction
 *       44    4 ef_search
 *       48    4 flags (bit 0: keep_float, FLOATS section present)
 *       52    4 max_level (0xffffffff when empty)
 *       56    8 n_nodes (slots, deleted included)
 *       64    8 n_deleted
 *       72    8 entry point slot (all ones when empty)
 *       80    8 seed
 *       88    4 n_sections
 *       92    4 reserved (0)
 *       96 24*n section table: u32 kind, u32 crc32c, u64 offset, u64 size
 *     ...     4 header CRC-32C of bytes [0, header_size - 4)
 * Sections follow, each at an offset aligned to 64, in any order, padding 0:
 *   1 IDS     n_nodes x u64 external id
 *   2 LEVELS  n_nodes x u8 top layer (<= IMS__MAX_LEVEL)
 *   3 FLAGS   n_nodes x u8 (bit 0 deleted)
 *   4 LINKS0  n_nodes x (1 + M0) x u32: count, then neighbour slots
 *   5 UPPER   for each slot with level > 0, in slot order: level x (1 + M) u32
 *   6 CODES   n_nodes x code_size bytes (f32, f16 or u8 per dimension)
 *   7 QUANT   INT8 only: n_dims x f32 lower bound, n_dims x f32 step
 *   8 FLOATS  keep_float only: n_nodes x n_dims x f32
 * Opening checks the header, the table, and the CRCs of IDS, LEVELS, FLAGS,
 * UPPER and QUANT; LINKS0, CODES and FLOATS (the bulk) are checked by a deep
 * check only. Unknown section kinds are ignored (forward-compatible).
 */
#ifndef IMS_INDEX_INT_H
#define IMS_INDEX_INT_H

#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "core/core_int.h"
#include "imgsim/index.h"

#define IMS__HNSW_MAGIC "IMSHNSW\0"
#define IMS__HNSW_VERSION 1u
#define IMS__HNSW_FIXED_HEADER 96u
#define IMS__MAX_LEVEL 31
#define IMS__FLAG_DELETED 1u
#define IMS__NONE UINT32_MAX

enum {
    IMS__SEC_IDS = 1,
    IMS__SEC_LEVELS = 2,
    IMS__SEC_FLAGS = 3,
    IMS__SEC_LINKS0 = 4,
    IMS__SEC_UPPER = 5,
    IMS__SEC_CODES = 6,
    IMS__SEC_QUANT = 7,
    IMS__SEC_FLOATS = 8,
    IMS__SEC_MAX = 8,
};

/* ---- distance kernels ----------------------------------------------------- */

typedef struct ims__index_kernels {
    const char *name; /* ims_cpu_level_name() of the table's level */
    float (*l2_f32)(const float *a, const float *b, size_t n);   /* sum (a-b)^2 */
    float (*ip_f32)(const float *a, const float *b, size_t n);   /* sum a*b */
    float (*l2_f16)(const float *q, const uint16_t *c, size_t n);
    float (*ip_f16)(const float *q, const uint16_t *c, size_t n);
    float (*l2_u8)(const float *b, const float *a, const uint8_t *c, size_t n); /* sum (b - a*c)^2 */
    float (*ip_u8)(const float *w, const uint8_t *c, size_t n);               /* sum w*c */
    void (*f16_encode)(const float *x, uint16_t *out, size_t n);
    void (*f16_decode)(const uint16_t *c, float *out, size_t n);
} ims__index_kernels;

/* One table per level, named ims__index_kernels_<level> (as the nn module's
 * ims__nn_kernels_<level>). */
extern const ims__index_kernels ims__index_kernels_ref;
#ifdef IMS_HAVE_AVX2
extern const ims__index_kernels ims__index_kernels_avx2;
#endif
#ifdef IMS_HAVE_AVX512
extern const ims__index_kernels ims__index_kernels_avx512;
#endif
/* The table for `level`, by the rule both modules follow: the best level
 * <= `level` that this build has and this CPU supports (ims_cpu_detect());
 * never NULL, since ref always exists. The kernels in force are
 * ims__index_kernels_for(ims_cpu_level()); a caller that needs exactly one
 * level (a test) compares the table's name with ims_cpu_level_name(). */
const ims__index_kernels *ims__index_kernels_for(int level);

/* ---- queries prepared for distance evaluation against codes --------------- */

typedef struct ims__qctx {
    const float *q; /* the query, normalised for cosine */
    float *a, *b;   /* INT8: per-dim (step, q - lo) for L2; (q*step) in a for IP */
    float c0;       /* INT8 IP: sum q*lo */
} ims__qctx;

/* ---- per-search scratch ------------------------------------------------------ */

typedef struct ims__cand {
    float d;     /* distance */
    uint32_t i;  /* slot */
} ims__cand;

typedef struct ims__heap {
    ims__cand *v;
    size_t n, cap;
} ims__heap;

typedef struct ims__scratch {
    struct ims__scratch *next; /* free-list link in the pool */
    uint16_t *visited;         /* epoch tag per slot */
    size_t n_visited;          /* entries allocated */
    uint16_t epoch;
    ims__heap C, W, R;         /* candidates (min), results (max), selection */
    float *qbuf;               /* normalised query (n_dims) */
    float *abuf, *bbuf;        /* INT8 query tables */
    float *dec;                /* a decoded node vector */
    float *abuf2, *bbuf2;      /* second query context (node-to-node) */
    uint32_t *nbuf;            /* a copy of one link list (1 + M0) */
    uint32_t *nbuf2;           /* 2 (1 + M0): nodes to score (search) */
} ims__scratch;

/* ---- the handle ------------------------------------------------------------------ */

struct ims_hnsw {
    /* parameters */
    int metric, storage, keep_float;
    uint32_t n_dims, M, M0, ef_construction, ef_search;
    uint64_t seed;
    double mult;           /* 1 / ln(M), level generation */
    size_t code_size;      /* bytes per stored vector */
    const ims__index_kernels *k;

    /* graph and data */
    uint32_t n_nodes;      /* slots in use */
    uint32_t capacity;     /* slots allocated */
    uint32_t n_deleted;
    uint32_t entry;        /* ep slot, IMS__NONE when empty */
    int max_level;         /* -1 when empty */
    uint64_t *ids;
    uint8_t *levels;
    uint8_t *flags;
    uint8_t *locks;        /* heap, capacity bytes */
    uint32_t *links0;      /* capacity x (1+M0) */
    uint32_t **upper;      /* capacity pointers */
    unsigned char *codes;  /* capacity x code_size */
    float *floats;         /* keep_float: capacity x n_dims */
    float *qlo, *qstep;    /* INT8 quantiser (n_dims each) */
    int quant_ready;
    int ids_owned, levels_owned, flags_owned, links0_owned, codes_owned, floats_owned,
        quant_owned;

    /* id -> slot map (open addressing, linear probing) */
    uint64_t *map_keys;
    uint32_t *map_vals;    /* IMS__NONE empty, IMS__NONE-1 tombstone */
    size_t map_cap, map_used;
    int map_ready;         /* 0 after open until first needed (ims__map_ensure) */
    pthread_mutex_t map_lock;

    /* backing file */
    unsigned char *backing;
    size_t backing_size;
    int backing_is_mmap;
    uint32_t sec_crc[IMS__SEC_MAX + 1];   /* section CRCs as loaded */
    int sec_pristine[IMS__SEC_MAX + 1];   /* still as loaded (deep check may verify) */
    uint64_t sec_off[IMS__SEC_MAX + 1], sec_size[IMS__SEC_MAX + 1];

    /* concurrency */
    pthread_rwlock_t rw;
    pthread_mutex_t ep_lock, pool_lock;
    ims__scratch *pool;
};

/* hnsw_error.c: set the calling thread's message (h is unused: messages are
 * per thread, see ims_hnsw_errmsg), return code */
int ims__hnsw_err(ims_hnsw *h, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* handle.c */
/* A zeroed handle with its locks initialised (the rwlock writer-preferring,
 * so that a busy stream of searches cannot starve a writer), empty graph;
 * NULL when out of memory. Free with ims_hnsw_free(). */
ims_hnsw *ims__hnsw_handle_new(void);
int ims__hnsw_reserve(ims_hnsw *h, size_t n_slots);
int ims__hnsw_alloc_core(ims_hnsw *h);
void ims__hnsw_release_data(ims_hnsw *h);
void ims__mark_dirty(ims_hnsw *h, int sec);
/* Aligned allocation for big arrays (2 MiB aligned and THP-advised from 8 MiB). */
void *ims__alloc_big(size_t bytes);

/* scratch.c */
ims__scratch *ims__scratch_get(ims_hnsw *h);
void ims__scratch_put(ims_hnsw *h, ims__scratch *s);
void ims__scratch_free(ims__scratch *s);
int ims__heap_reserve(ims__heap *hp, size_t n);

/* idmap.c */
/* Grow the map to hold at least n live keys (rehashing, dropping tombstones). */
int ims__map_reserve(ims_hnsw *h, size_t n);
int ims__map_put(ims_hnsw *h, uint64_t id, uint32_t slot);
uint32_t ims__map_get(const ims_hnsw *h, uint64_t id);
void ims__map_del(ims_hnsw *h, uint64_t id);
int ims__map_rebuild(ims_hnsw *h);
/* Build the map on first use after open (open stays O(small sections));
 * safe under the shared lock. IMS_ECORRUPT if a live id appears twice. */
int ims__map_ensure(ims_hnsw *h);

/* hnsw_build.c */
int ims__random_level(const ims_hnsw *h, uint32_t slot);
int ims__validate_vec(ims_hnsw *h, const float *v);
int ims__hnsw_add_locked(ims_hnsw *h, size_t n, const uint64_t *ids, const float *vecs,
                         int n_threads);

/* hnsw_insert.c */
int ims__hnsw_insert(ims_hnsw *h, uint32_t q, ims__scratch *s, int parallel);
int ims__select_neighbors(ims_hnsw *h, ims__scratch *s, ims__heap *Cset, uint32_t Mmax,
                          ims__cand *out);

/* hnsw_search.c */
/* The planner's cost estimates (modelled ns, see hnsw_search.c) of the
 * graph walk and of the exact scan, given the estimated admitted count;
 * AUTO scans when exact <= graph. *sparse: the filtered walk must route
 * through non-admitted nodes. Exposed for tests. */
void ims__plan_costs(const ims_hnsw *h, double admitted, uint32_t ef, int user_filter,
                     int predicate, double *graph, double *exact, int *sparse);
int ims__search_layer(ims_hnsw *h, ims__scratch *s, const ims__qctx *qc, const ims__cand *ep,
                      size_t n_ep, uint32_t ef, int lc, int parallel, uint32_t skip);

/* quant.c */
void ims__qctx_prepare(const ims_hnsw *h, ims__qctx *qc, const float *q, float *a, float *b);
void ims__encode(const ims_hnsw *h, const float *x, unsigned char *code);
void ims__decode(const ims_hnsw *h, uint32_t slot, float *out);
void ims__quant_train(ims_hnsw *h, const float *x, size_t n);
/* normalise for cosine into out (or copy); returns 0 if the vector is unusable */
int ims__prepare_vec(const ims_hnsw *h, const float *in, float *out);

/* distance from a prepared query to the stored code of slot (inlined into the
 * search loops: the switch is perfectly predicted, one indirect call remains) */
static inline float ims__dist_code(const ims_hnsw *h, const ims__qctx *qc, uint32_t slot)
{
    const unsigned char *code = h->codes + (size_t)slot * h->code_size;
    size_t D = h->n_dims;
    float ip;
    switch (h->storage) {
    case IMS_STORAGE_F32:
        if (h->metric == IMS_METRIC_L2)
            return h->k->l2_f32(qc->q, (const float *)(const void *)code, D);
        ip = h->k->ip_f32(qc->q, (const float *)(const void *)code, D);
        break;
    case IMS_STORAGE_F16:
        if (h->metric == IMS_METRIC_L2)
            return h->k->l2_f16(qc->q, (const uint16_t *)(const void *)code, D);
        ip = h->k->ip_f16(qc->q, (const uint16_t *)(const void *)code, D);
        break;
    default:
        if (h->metric == IMS_METRIC_L2)
            return h->k->l2_u8(qc->b, qc->a, code, D);
        ip = qc->c0 + h->k->ip_u8(qc->a, code, D);
    }
    return h->metric == IMS_METRIC_IP ? -ip : 1.0f - ip;
}

static inline float ims__dist_float(const ims_hnsw *h, const float *q, const float *x)
{
    if (h->metric == IMS_METRIC_L2)
        return h->k->l2_f32(q, x, h->n_dims);
    float ip = h->k->ip_f32(q, x, h->n_dims);
    return h->metric == IMS_METRIC_IP ? -ip : 1.0f - ip;
}

static inline uint32_t *ims__links(const ims_hnsw *h, uint32_t i, int lc)
{
    if (lc == 0)
        return h->links0 + (size_t)i * (1 + h->M0);
    return h->upper[i] + (size_t)(lc - 1) * (1 + h->M);
}

/* Spin briefly (a link list is held for a few hundred ns), then yield: on
 * an oversubscribed host the holder may have been preempted. */
static inline void ims__lock(ims_hnsw *h, uint32_t i)
{
    unsigned spins = 0;
    while (__atomic_exchange_n(&h->locks[i], 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&h->locks[i], __ATOMIC_RELAXED)) {
            if (++spins > 256)
                sched_yield();
#if defined(__x86_64__) || defined(__i386__)
            else
                __builtin_ia32_pause();
#endif
        }
}
static inline void ims__unlock(ims_hnsw *h, uint32_t i)
{
    __atomic_store_n(&h->locks[i], 0, __ATOMIC_RELEASE);
}

/* Binary heaps on ims__cand: min-heap (C) and max-heap (W). Pushes return
 * -1 when growing the array fails. */
static inline int ims__heap_push_min(ims__heap *hp, float d, uint32_t i)
{
    if (IMS_UNLIKELY(hp->n == hp->cap) && ims__heap_reserve(hp, hp->cap * 2 + 16))
        return -1;
    size_t j = hp->n++;
    while (j) {
        size_t p = (j - 1) >> 1;
        if (hp->v[p].d <= d)
            break;
        hp->v[j] = hp->v[p];
        j = p;
    }
    hp->v[j].d = d, hp->v[j].i = i;
    return 0;
}
static inline int ims__heap_push_max(ims__heap *hp, float d, uint32_t i)
{
    if (IMS_UNLIKELY(hp->n == hp->cap) && ims__heap_reserve(hp, hp->cap * 2 + 16))
        return -1;
    size_t j = hp->n++;
    while (j) {
        size_t p = (j - 1) >> 1;
        if (hp->v[p].d >= d)
            break;
        hp->v[j] = hp->v[p];
        j = p;
    }
    hp->v[j].d = d, hp->v[j].i = i;
    return 0;
}
static inline ims__cand ims__heap_pop_min(ims__heap *hp)
{
    ims__cand top = hp->v[0], x = hp->v[--hp->n];
    size_t j = 0, n = hp->n;
    for (;;) {
        size_t c = 2 * j + 1;
        if (c >= n)
            break;
        if (c + 1 < n && hp->v[c + 1].d < hp->v[c].d)
            c++;
        if (x.d <= hp->v[c].d)
            break;
        hp->v[j] = hp->v[c];
        j = c;
    }
    if (n)
        hp->v[j] = x;
    return top;
}
static inline ims__cand ims__heap_pop_max(ims__heap *hp)
{
    ims__cand top = hp->v[0], x = hp->v[--hp->n];
    size_t j = 0, n = hp->n;
    for (;;) {
        size_t c = 2 * j + 1;
        if (c >= n)
            break;
        if (c + 1 < n && hp->v[c + 1].d > hp->v[c].d)
            c++;
        if (x.d >= hp->v[c].d)
            break;
        hp->v[j] = hp->v[c];
        j = c;
    }
    if (n)
        hp->v[j] = x;
    return top;
}

#endif /* IMS_INDEX_INT_H */
