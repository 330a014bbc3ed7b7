/* SPDX-License-Identifier: MIT */
/*
 * collection.h — one collection directory, opened for serving: catalogue,
 * encoder, index, and the online operations (search by image, similar to
 * an item, add, delete) that the HTTP server and `imgsim query` use.
 *
 * Layout (DESIGN.md): <dir>/catalog.sqlite, <dir>/encoder.ism (or the
 * backbone named in the catalogue's settings), <dir>/index.hnsw,
 * <dir>/images/ (content-addressed image files), <dir>/index.log (adds and
 * deletes since the last index save, replayed at open).
 *
 * Threads: every function here may be called from many threads at once on
 * one handle. Searches run beside writes (the index's rwlock); adds and
 * deletes made at the same time are group-committed: one SQLite
 * transaction and one index.log sync for all that are ready, each caller
 * answered once that batch is durable (online.c). Encodes take a session
 * from a pool of `sessions` sessions; when all are busy the call waits, or fails
 * with IMS_EBUSY after `queue_timeout_ms`. Similar-by-id, get and image
 * never wait for an encoder.
 */
#ifndef IMGSIM_COLLECTION_H
#define IMGSIM_COLLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "imgsim/catalog.h"
#include "imgsim/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ims_coll ims_coll;

typedef struct ims_coll_opts {
    int sessions;         /* encoder sessions (parallel encodes); 0: number of CPUs */
    int threads;          /* threads inside one encode; 0: 1 */
    int readonly;         /* no adds or deletes */
    int queue_timeout_ms; /* wait for a free session at most this long; 0: 30000 */
    int64_t max_pixels;   /* decode limit for uploads; 0: image module default */
    int load_index;       /* 1: read the index into memory (ims_hnsw_load: huge pages
                           * where the kernel grants them) instead of mapping it */
} ims_coll_opts;

/* Open for serving: loads the encoder and creates its sessions before
 * returning (so no request pays for it). The index is mapped (opens at
 * once, pages come in as searches touch them) or, with load_index, read
 * whole: open costs one read of the file and its size in memory, and
 * searches then take no page faults and far fewer TLB misses (on a large
 * index about 1.6x the queries per second, bench/RESULTS-index.md). */
int ims_coll_open(const char *dir, const ims_coll_opts *o, ims_coll **out, ims_error *err);
void ims_coll_close(ims_coll *c);

typedef struct ims_coll_hit {
    float score; /* cosine similarity (higher is closer) */
    ims_item item;
} ims_coll_hit;
void ims_coll_hits_free(ims_coll_hit *h, size_t n);

/* Top-k items for an image given as encoded bytes. category: NULL or "" for
 * all; else only items of that category (filtered inside the index search).
 * k in 1..1000. Errors: IMS_EINVAL (k), IMS_EFORMAT/IMS_ECORRUPT (not an
 * image), IMS_EUNSUPPORTED (image type), IMS_ETOOBIG (too many pixels),
 * IMS_EBUSY (no encoder free in time). *self_id is set to the accepted item
 * with the same sha256, or 0 (may be NULL). */
int ims_coll_search_image(ims_coll *c, const void *bytes, size_t len, int k, const char *category,
                          ims_coll_hit **hits, size_t *n, int64_t *self_id, ims_error *err);
/* Top-k items similar to item `id` (itself excluded). IMS_ENOTFOUND. */
int ims_coll_similar(ims_coll *c, int64_t id, int k, const char *category, ims_coll_hit **hits,
                     size_t *n, ims_error *err);
int ims_coll_get(ims_coll *c, int64_t id, ims_item *out, ims_error *err);
/* The item's stored image bytes (free with ims_free) and its format
 * ("jpeg", "png", ...). */
int ims_coll_image(ims_coll *c, int64_t id, void **bytes, size_t *len, char format[8],
                   ims_error *err);
/* Add an item: decode + check, store the image in the collection, insert
 * the row, encode, write its vector, append to index.log, insert into the
 * index; durable (fsync) before returning. category/name/metadata may be
 * NULL; metadata is JSON object text. A duplicate of an accepted item
 * returns IMS_EEXIST with *id = that item. */
int ims_coll_add(ims_coll *c, const void *bytes, size_t len, const char *category, const char *name,
                 const char *metadata, int64_t *id, ims_error *err);
/* Delete an item (durable before returning). IMS_ENOTFOUND.
 * Adds and deletes made at once share a batch: a failure of the batch
 * (disk full, I/O error) fails each of its writes with that error and
 * leaves no part of any of them. */
int ims_coll_delete(ims_coll *c, int64_t id, ims_error *err);

typedef struct ims_coll_stats {
    int64_t items;   /* accepted items */
    int64_t indexed; /* live items in the index */
    int dim;
    char model[64];        /* encoder name */
    int64_t encodes;       /* encodes done since open */
    double encode_seconds; /* their total time */
    int64_t writes;        /* adds and deletes run since open */
    int64_t write_batches; /* group commits they took (<= writes) */
    size_t index_bytes;    /* memory the index holds (vectors, links, ids) */
    int index_mapped;      /* 1: the index file is mapped; 0: read into memory */
} ims_coll_stats;
void ims_coll_get_stats(ims_coll *c, ims_coll_stats *s);

/* Category names of accepted items with their counts, sorted by name, as
 * ims_catalog_categories gives them; free with ims_catalog_free_categories. */
int ims_coll_categories(ims_coll *c, char ***names, int64_t **counts, size_t *n, ims_error *err);

/* ---- the offline pipeline (CLI: finetune, embed-all, index, build) ----------
 * These work on a collection directory, one process at a time (the catalogue
 * serialises writers; they are not meant to run beside a server that adds). */

/* Backbones known by name, with their default taps (chosen by measurement:
 * README's eval table). `model` is a path to a .ism file; its name inside
 * the file (ims_nn_name) picks the defaults. NULL if unknown. */
const char *ims_coll_default_taps(const char *model_name);

/* Use `model_ism` with `taps` (comma-separated; NULL: the model's defaults)
 * as the collection's raw encoder: the backbone is stored in the collection
 * (backbone.ism, hard link or copy), encoder.ism becomes that backbone, each
 * tap is L2-normalised and the taps concatenated. Vectors of another
 * encoder become stale. */
int ims_coll_set_backbone(const char *dir, const char *model_ism, const char *taps, ims_error *err);

/* The identity stamped on the vectors the collection's encoder makes. */
int ims_coll_encoder_stamp(const char *dir, char stamp[65], ims_error *err);

typedef struct ims_pipe_opts {
    int threads;  /* encoder threads; 0: all CPUs */
    int batch;    /* images per network run; 0: 16 */
    int progress; /* draw progress (TTY bar, or lines) on stderr */
} ims_pipe_opts;

typedef struct ims_embed_summary {
    int64_t todo;          /* accepted items lacking a current vector at the start */
    int64_t done;          /* vectors written by this run */
    int64_t from_cache;    /* of them, computed from cached backbone features */
    int64_t failed;        /* items whose image could not be read or decoded */
    int64_t stale_dropped; /* vectors of another encoder removed */
    double seconds;
    char stamp[65]; /* the encoder identity the vectors carry */
} ims_embed_summary;

/* Vectors for every accepted item that lacks a current one; resumable
 * (vectors are committed per batch), stale vectors recomputed. */
int ims_coll_embed_all(const char *dir, const ims_pipe_opts *o, ims_embed_summary *sum,
                       ims_error *err);

typedef struct ims_coll_index_opts {
    int metric; /* enum ims_metric; default cosine */
    int M, ef_construction;
    int storage;    /* enum ims_storage; default int8 */
    int keep_float; /* default 1 (exact float re-rank) */
    int threads;    /* build threads; 0: all CPUs */
    int set;        /* bit 0: metric given, bit 1: storage given, bit 2: keep_float given */
    int if_stale;   /* skip when index.hnsw already holds exactly the current vectors */
} ims_coll_index_opts;

typedef struct ims_coll_index_summary {
    int64_t items;
    int dim;
    double seconds;
    int64_t bytes; /* index file size */
    int skipped;   /* if_stale and already current */
} ims_coll_index_summary;

/* Build <dir>/index.hnsw over the current vectors (all of them: every
 * accepted item must have a current vector; run embed-all first). */
int ims_coll_build_index(const char *dir, const ims_coll_index_opts *o, ims_coll_index_summary *sum,
                         ims_error *err);

typedef struct ims_finetune_opts {
    const char *model;  /* backbone .ism (NULL: the collection's backbone.ism) */
    const char *taps;   /* comma-separated (NULL: the backbone's defaults) */
    int dim;            /* feature layer units (0: 256) */
    int epochs;         /* at most (0: 200; early stopping on validation) */
    uint64_t seed;      /* split, initialisation, minibatch order (0: 1) */
    int threads, batch; /* backbone pass: as ims_pipe_opts */
    int progress;
    int no_whiten; /* 1: the fusion's raw part stays the plain taps (default:
                      PCA-whitened, ims_train_opts.whiten) */
} ims_finetune_opts;

typedef struct ims_finetune_summary {
    int trained; /* 1 trained; 0: nothing to train (message says why): raw
                               taps; -1: already up to date, nothing done */
    char message[256];
    int64_t items, features_computed;
    int n_classes, epochs_run;
    double train_accuracy, val_accuracy;
    double seconds;
} ims_finetune_summary;

/* Cache the backbone taps of every accepted item (once per item and
 * backbone), train the head on the catalogue's categories, and write
 * encoder.ism = backbone + taps + head. With fewer than two categories of
 * two or more items, keeps the raw taps (trained = 0). Same seed, same
 * data: byte-identical encoder.ism. */
int ims_coll_finetune(const char *dir, const ims_finetune_opts *o, ims_finetune_summary *sum,
                      ims_error *err);

typedef struct ims_eval_scores {
    double p1, p5, p10, map;  /* hit = same category; map = mAP@k */
    double inst_r1, inst_r10; /* distorted copy finds its original (r10: within k) */
} ims_eval_scores;

typedef struct ims_eval_result {
    int k;
    int64_t items, queries; /* gallery size, validation queries */
    ims_eval_scores finetuned, backbone, seed;
    double classifier_accuracy;
    double ann_recall; /* index recall@k vs exact; -1 if no current index */
    double seconds;
} ims_eval_result;

/* Held-out retrieval quality of the three encoders (see eval.c). */
int ims_coll_eval(const char *dir, int k, const ims_pipe_opts *o, ims_eval_result *r,
                  ims_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_COLLECTION_H */
