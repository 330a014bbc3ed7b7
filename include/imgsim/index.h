/* SPDX-License-Identifier: MIT */
/*
 * index.h — the vector index: HNSW graph search (Malkov & Yashunin, 2016/2018)
 * plus exact flat search, over float32 vectors stored as float32, float16 or
 * int8, with 64-bit external ids, deletes, filters and a checked, mmap-able
 * single-file format.
 *
 * Distances are "smaller is closer", hits are sorted ascending:
 *   IMS_METRIC_L2      squared Euclidean distance
 *   IMS_METRIC_IP      -<q, x>                     (negated inner product)
 *   IMS_METRIC_COSINE  1 - cos(q, x)               (vectors are normalised on
 *                                                  insert and query)
 * Callers turn a cosine distance d into a similarity score as 1 - d.
 *
 * Thread-safety
 * -------------
 * One handle is meant to be shared: searched by many threads while one
 * thread adds and deletes. Every call below on the same handle is safe from
 * any thread, except ims_hnsw_free/ims_hnsw_close. The handle serialises
 * calls with a writer-preferring readers-writer lock:
 *   readers (any number at once, and at once with each other):
 *     ims_hnsw_search, ims_hnsw_count, ims_hnsw_contains,
 *     ims_hnsw_get_vector, ims_hnsw_get_info, ims_hnsw_check, ims_hnsw_save
 *   writers (exclusive: one at a time, and never alongside a reader):
 *     ims_hnsw_add, ims_hnsw_add_batch, ims_hnsw_delete, ims_hnsw_update,
 *     ims_hnsw_compact
 * A writer waits for the readers in progress; while it waits, new readers
 * wait behind it (glibc; other C libraries use their default policy), so
 * a stream of searches cannot starve inserts (a search may thus block for
 * the duration of one write call; add_batch and compact are long ones). Every reader sees the index either before or after a
 * whole write call, never half of one. Writers may be called from several
 * threads: they run one after the other.
 *   - ims_hnsw_free / ims_hnsw_close: no call on h may be in progress or
 *     follow, on any thread (the caller joins its threads first).
 *   - ims_hnsw_new, ims_hnsw_open, ims_hnsw_load, ims_hnsw_open_buffer, ims_flat_search
 *     and the name functions share no state: safe from any thread.
 *   - A filter (ims_search_opts.filter) runs on the searching thread while
 *     that thread holds the shared lock: it must not call any function on
 *     the same handle (a writer waiting in between would deadlock it), and
 *     it must be thread-safe itself if several searches share it.
 *   - Error messages are per thread: ims_hnsw_errmsg() returns the message
 *     of the calling thread's own last failed call on any handle, so one
 *     thread's failure never overwrites another's message. Calls that take
 *     an ims_error * fill that record instead (the caller owns it).
 *   - The distance kernels are chosen when a handle is created or opened
 *     (ims_init() reads IMS_SIMD once); ims_cpu_set_level() affects handles
 *     created after it and ims_flat_search, and must not race with them.
 */
#ifndef IMGSIM_INDEX_H
#define IMGSIM_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "imgsim/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ims_hnsw ims_hnsw;

/* On-disk values: frozen, append-only. */
enum ims_metric {
    IMS_METRIC_L2 = 0,
    IMS_METRIC_IP = 1,
    IMS_METRIC_COSINE = 2,
};
enum ims_storage {
    IMS_STORAGE_F32 = 0,  /* 4 bytes per dimension */
    IMS_STORAGE_F16 = 1,  /* 2 bytes per dimension, IEEE half */
    IMS_STORAGE_INT8 = 2, /* 1 byte per dimension, per-dimension affine */
};

#define IMS_HNSW_MAX_DIM 4096
#define IMS_HNSW_MAX_M 128

/* Parameters of a new index. Zero fields take the defaults shown. */
typedef struct ims_hnsw_params {
    int metric;               /* enum ims_metric */
    uint32_t n_dims;          /* 1 .. IMS_HNSW_MAX_DIM (required) */
    uint32_t M;               /* links per node on upper layers (16); 2M on layer 0 */
    uint32_t ef_construction; /* candidate list size while building (200) */
    uint32_t ef_search;       /* default candidate list size of searches (64) */
    int storage;              /* enum ims_storage (F32) */
    int keep_float;           /* F16/INT8: also keep float32 copies (saved in the
                                 file) and re-rank candidates with them */
    uint64_t seed;            /* level generation seed (0 means 42) */
} ims_hnsw_params;

/* A search hit. */
typedef struct ims_hit {
    uint64_t id;    /* external id */
    float distance; /* see the metrics above; ascending in results */
} ims_hit;

/* Filter predicate: non-zero if `id` may be returned. Called from the
 * searching thread, possibly many times per search; must be thread-safe if
 * the same predicate is used by concurrent searches. */
typedef int (*ims_filter_fn)(uint64_t id, void *ud);

enum ims_search_mode {
    IMS_SEARCH_AUTO = 0,  /* exact scan when cheaper (small or selective), else graph */
    IMS_SEARCH_GRAPH = 1, /* always HNSW (filtered graph walk) */
    IMS_SEARCH_EXACT = 2, /* always an exact scan of the admitted items */
};

/* What one search did (introspection: tests assert the plan without
 * timing it; benchmarks count work). Filled when ims_search_opts.stats is
 * set, on success and on failure. */
typedef struct ims_search_stats {
    int plan;             /* IMS_SEARCH_GRAPH or IMS_SEARCH_EXACT: the plan run
                                (0 when nothing ran: empty index, bad query) */
    uint64_t n_distances; /* distance evaluations (re-ranking included) */
    uint64_t n_admit;     /* admission tests (delete flag + filters) */
    double est_admitted;  /* planner's estimate of admitted live items */
    double cost_graph;    /* planner's cost estimates of the two plans (modelled */
    double cost_exact;    /*   ns; AUTO runs the lower one, exact on a tie) */
    uint32_t ef;          /* the graph walk's beam: opts.ef raised to k and, for a
                             filtered walk, widened by the filter's selectivity */
} ims_search_stats;

/* Search options; a NULL pointer or zeroed struct means defaults. */
typedef struct ims_search_opts {
    uint32_t ef;             /* candidate list size (0: the index default; raised to k;
                                a filtered walk widens it, see hnsw_search.c) */
    ims_filter_fn filter;    /* optional predicate on ids ... */
    void *filter_ud;         /* ... and its user data */
    const uint64_t *allow;   /* optional bitset over ids: id admitted iff */
    uint64_t n_allow_bits;   /*   id < n_allow_bits && bit id set (both filters apply) */
    int mode;                /* enum ims_search_mode */
    ims_search_stats *stats; /* OUT: optional, what the search did (see above) */
} ims_search_opts;

/* Summary of an index. */
typedef struct ims_hnsw_info {
    int metric, storage, keep_float;
    uint32_t n_dims, M, ef_construction, ef_search;
    uint64_t n_items;        /* live (searchable) items */
    uint64_t n_deleted;      /* deleted slots not yet reclaimed by compaction */
    int max_level;           /* -1 when empty */
    size_t memory_bytes;     /* vectors + links + ids held (heap or mapped) */
    int mapped;              /* 1 while data is served from an mmap'ed file */
} ims_hnsw_info;

/* ---- life cycle ----------------------------------------------------------- */

/* Create an empty index. Errors: IMS_EINVAL (bad params; err says which),
 * IMS_ENOMEM. The caller frees *out with ims_hnsw_free(). */
int ims_hnsw_new(const ims_hnsw_params *p, ims_hnsw **out, ims_error *err);

/* Free an index (also one from ims_hnsw_open). NULL is a no-op. No other
 * thread may use h. */
void ims_hnsw_free(ims_hnsw *h);

/* The message of the calling thread's last failed call on any index handle
 * (h only has to be non-NULL; NULL gives "no index"; "no error" if this
 * thread has had no failure). Successful calls leave it unchanged. The
 * string is in thread-local storage: valid until this thread's next failed
 * index call or its exit; do not free it. Thread-safe. Example:
 *     if (ims_hnsw_add(h, id, vec) != IMS_OK)
 *         fprintf(stderr, "add: %s\n", ims_hnsw_errmsg(h));  // this thread's */
const char *ims_hnsw_errmsg(ims_hnsw *h);

/* ---- writing (exclusive: one writer at a time, readers wait; see above) ----- */

/* Add one vector (n_dims floats) under a new id. Errors: IMS_EEXIST (id is
 * live; use ims_hnsw_update), IMS_EINVAL (NaN/Inf, or zero vector for
 * cosine), IMS_ENOMEM. The vector is copied. */
int ims_hnsw_add(ims_hnsw *h, uint64_t id, const float *vec);

/* Add n vectors (row-major n x n_dims) with n_threads build threads (<= 0:
 * all CPUs). With n_threads == 1 the graph is a pure function of the seed,
 * the parameters and the insertion order. All vectors and ids are validated
 * and all memory for them reserved before anything is inserted: on
 * IMS_EINVAL/IMS_EEXIST/IMS_ENOMEM from that phase nothing was added. If
 * memory runs out later, while linking (search heaps growing), the items
 * that could not be linked are left out (not searchable, ids free), the
 * others stay, the index stays consistent, and IMS_ENOMEM is returned.
 * Errors as ims_hnsw_add (IMS_EEXIST also for duplicates within the batch).
 * Example:
 *     ims_hnsw_params p = {.metric = IMS_METRIC_COSINE, .n_dims = 256};
 *     ims_hnsw *h;
 *     if (ims_hnsw_new(&p, &h, &err) == IMS_OK &&
 *         ims_hnsw_add_batch(h, n, ids, vecs, 0) == IMS_OK)
 *         ims_hnsw_save(h, "collection/index.hnsw");
 *     ims_hnsw_free(h);
 */
int ims_hnsw_add_batch(ims_hnsw *h, size_t n, const uint64_t *ids, const float *vecs,
                       int n_threads);

/* Delete an id: it is never returned again. Its node stays in the graph
 * (searches still route through it) until ims_hnsw_compact(). Errors:
 * IMS_ENOTFOUND. */
int ims_hnsw_delete(ims_hnsw *h, uint64_t id);

/* Replace the vector of an id (delete + add; adds it if absent). */
int ims_hnsw_update(ims_hnsw *h, uint64_t id, const float *vec);

/* Reclaim deleted nodes: every live node that linked to a deleted one is
 * reconnected (Algorithm 4 over its neighbours and the deleted neighbours'
 * neighbours), then slots are renumbered densely. Errors: IMS_ENOMEM (the
 * index is unchanged). */
int ims_hnsw_compact(ims_hnsw *h);

/* ---- searching (any number of threads at once, shared lock) ---------------- */

/* The k nearest admitted live items of `query` (n_dims floats), ascending by
 * distance, into hits[0..*n_hits). *n_hits < k when fewer items qualify.
 * Uses Algorithm 5 (K-NN-SEARCH), or an exact scan when opts/mode or the
 * estimated admitted count make that cheaper. With a filter or deletes the
 * graph walk scores admitted items only, reaching them through
 * non-admitted neighbours (two hops); it has about the unfiltered cost
 * down to a selectivity near 1.5 / (2 M), below which AUTO scans (see
 * bench/RESULTS-filter.md). opts->stats, if set, says which plan ran and
 * the work done. No allocation once warm.
 * Errors: IMS_EINVAL (k == 0, NaN query), IMS_ENOMEM. */
int ims_hnsw_search(ims_hnsw *h, const float *query, size_t k, const ims_search_opts *opts,
                    ims_hit *hits, size_t *n_hits /* OUT */);

/* Exact (brute-force) k-NN over a plain row-major float matrix: ground truth
 * and the right tool for small collections. ids may be NULL (ids = row
 * numbers). Thread-safe (no handle, no shared state; no message either:
 * the code says what failed). Errors: IMS_EINVAL, IMS_ENOMEM. */
int ims_flat_search(int metric, uint32_t n_dims, const float *base, size_t n,
                    const uint64_t *ids, const float *query, size_t k, ims_hit *hits,
                    size_t *n_hits /* OUT */);

/* ---- files ------------------------------------------------------------------ */

/* Write h to path atomically (temp file, fsync, rename). Takes the shared
 * lock: searches go on, writers wait until the file is written. Two saves
 * to the same path at once are not supported (they share the temp name).
 * Errors: IMS_EIO. */
int ims_hnsw_save(ims_hnsw *h, const char *path);

/* Open an index file: mmap it privately (copy-on-write), check header, section
 * table and the small sections (ids, levels, upper links). The id -> slot map
 * is built on first need (add, delete, update, contains, get_vector, check),
 * not by open or search. Vectors and layer-0 links are not read (their CRCs are checked by
 * ims_hnsw_check(h, 1)); every link is still bounds-checked when followed,
 * so a corrupt file cannot crash a search. The handle is fully writable:
 * changes touch private pages only (the file never changes unless saved),
 * and growth moves arrays to the heap. Errors: IMS_EIO, IMS_EFORMAT (not an
 * index file), IMS_EVERSION (needs a newer reader), IMS_ECORRUPT (the message
 * gives the offset), IMS_ENOMEM. Free with ims_hnsw_close(). */
int ims_hnsw_open(const char *path, ims_hnsw **out, ims_error *err);

/* Same, but the whole file is read into memory (huge pages where the
 * kernel grants them) instead of mapped: open costs one read of the file and
 * the memory is not shared with the page cache, searches then take no page
 * faults and far fewer TLB misses (bench/RESULTS-index.md measures it). The
 * same checks and errors as ims_hnsw_open; ims_hnsw_info.mapped is 0. */
int ims_hnsw_load(const char *path, ims_hnsw **out, ims_error *err);

/* Same, from bytes in memory (copied; buf may be freed afterwards). */
int ims_hnsw_open_buffer(const void *buf, size_t size, ims_hnsw **out, ims_error *err);

/* Same as ims_hnsw_free(). */
void ims_hnsw_close(ims_hnsw *h);

/* Verify h: graph structure, id map, levels and entry point; deep also
 * verifies the checksums of file sections that are still as loaded, and that
 * every vector is finite. Returns IMS_OK or IMS_ECORRUPT (message says what
 * and where). Takes the read lock. */
int ims_hnsw_check(ims_hnsw *h, int deep);

/* ---- introspection (readers: shared lock; name functions: no state) -------- */

void ims_hnsw_get_info(ims_hnsw *h, ims_hnsw_info *out);
uint64_t ims_hnsw_count(ims_hnsw *h); /* live items */
/* Non-zero if id is live. */
int ims_hnsw_contains(ims_hnsw *h, uint64_t id);
/* Copy the stored (possibly dequantised, normalised for cosine) vector of id
 * into out (n_dims floats). Errors: IMS_ENOTFOUND. */
int ims_hnsw_get_vector(ims_hnsw *h, uint64_t id, float *out);

const char *ims_metric_name(int metric);   /* "l2", "ip", "cosine" */
int ims_metric_from_name(const char *name); /* -1 if unknown */
const char *ims_storage_name(int storage); /* "f32", "f16", "int8" */
int ims_storage_from_name(const char *name); /* -1 if unknown */

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_INDEX_H */
