/* SPDX-License-Identifier: MIT */
/*
 * catalog.h — a collection's catalogue: items, categories, metadata, CSV
 * import, and the per-item vector store, in one SQLite database
 * (collection/catalog.sqlite).
 *
 * The database has application_id 'IMSC' and a user_version schema number;
 * opening an older schema migrates it in one transaction, a newer one is
 * IMS_EVERSION, a foreign or corrupt SQLite file IMS_EFORMAT/IMS_ECORRUPT.
 * WAL journal, foreign keys on, every batch of writes in one transaction,
 * so a crash never leaves half an item.
 *
 * Images are stored inside the collection, content-addressed:
 * <collection>/images/<hex[0:2]>/<sha256 hex>.<ext> (hard link when on the
 * same file system, else a copy written atomically). An item's `path` is
 * where it came from (relative to the ingested DIR), for reports only;
 * `ims_catalog_image_path` gives the stored file.
 *
 * Threads: one handle is used by one thread at a time. A server opens one
 * handle per thread (SQLite WAL lets readers run beside one writer).
 */
#ifndef IMGSIM_CATALOG_H
#define IMGSIM_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "imgsim/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ims_catalog ims_catalog;

enum ims_item_status {
    IMS_ITEM_ACCEPTED = 0,  /* decodable, unique: gets a vector */
    IMS_ITEM_DUPLICATE = 1, /* same sha256 as dup_of */
    IMS_ITEM_REJECTED = 2,  /* reason says why (corrupt, too big, unsupported...) */
    IMS_ITEM_VANISHED = 3,  /* its file was gone at the last ingest */
    IMS_ITEM_DELETED = 4,   /* deleted over the API */
};

/* One item; strings are owned by the struct (ims_item_clear frees them). */
typedef struct ims_item {
    int64_t id;
    char *path;       /* source path relative to the ingested DIR ("upload" for API adds) */
    char *category;   /* "" when none */
    char *name;       /* metadata "name" column, else the file stem */
    char *product_id; /* the id column's value, "" when none */
    char *metadata;   /* JSON object text, "{}" when none */
    char sha256[65];  /* lowercase hex */
    char format[8];   /* "jpeg", "png", "webp", "gif", "tiff" */
    int width, height;
    int64_t bytes;
    int status;     /* enum ims_item_status */
    char *reason;   /* rejected: why; else "" */
    int64_t dup_of; /* duplicates: the kept item; else 0 */
} ims_item;
void ims_item_clear(ims_item *it);

#define IMS_CATALOG_CREATE 1   /* create the file if missing */
#define IMS_CATALOG_READONLY 2 /* no writes (serving a read-only copy) */

/* Open (or create) <collection>/catalog.sqlite; `collection` is the
 * collection directory (created with IMS_CATALOG_CREATE). */
int ims_catalog_open(const char *collection, int flags, ims_catalog **out, ims_error *err);
void ims_catalog_close(ims_catalog *c);

/* Verify the database: SQLite's PRAGMA integrity_check (b-trees, indexes,
 * NOT NULL / CHECK constraints) and PRAGMA foreign_key_check. IMS_OK, or
 * IMS_ECORRUPT with the first problem SQLite reports (err->msg). Reads the
 * whole file: for tests, tools and after a crash, not per request. */
int ims_catalog_check(ims_catalog *c, ims_error *err);

/* ---- ingest ---------------------------------------------------------------- */
typedef struct ims_ingest_opts {
    const char *metadata_csv; /* optional RFC 4180 CSV */
    const char *id_column;    /* CSV column with the product id (joins by file stem too) */
    const char *file_column;  /* CSV column with the file name (relative to DIR or bare) */
    int64_t max_pixels;       /* decode limit; 0: the image module's default */
    /* called for every file that is not simply accepted (duplicate, rejected,
     * CSV row without image, image without row, vanished); may be NULL.
     * kind: "duplicate", "rejected", "row_without_image",
     * "image_without_row", "vanished"; path: relative to DIR (for a CSV row,
     * its file/id value); message: one line (reason, the kept item, line N). */
    void (*report)(void *ud, const char *kind, const char *path, const char *message);
    void *ud;
    /* progress: called after each file; may be NULL */
    void (*progress)(void *ud, int64_t done, int64_t total);
    /* threads reading, hashing and decode-checking files ahead of the
     * catalogue writes (the calling thread included); 0: ims_cpu_count().
     * Any count gives the same catalogue, store, reports and summary.
     * Memory: up to 64 MB of file bytes read ahead, and one decoded image
     * per thread (max_pixels x 3 bytes each at most). */
    int threads;
} ims_ingest_opts;

#define IMS_REJECT_REASONS(X)            \
    X(CORRUPT, "corrupt")                \
    X(TRUNCATED, "truncated")            \
    X(TOO_BIG, "too big")                \
    X(UNSUPPORTED, "unsupported format") \
    X(OUTSIDE, "outside the directory")  \
    X(UNREADABLE, "unreadable")

enum ims_reject_reason {
#define IMS__REJ_ENUM(name, text) IMS_REJECT_##name,
    IMS_REJECT_REASONS(IMS__REJ_ENUM)
#undef IMS__REJ_ENUM
        IMS_REJECT__COUNT
};
const char *ims_reject_reason_name(int reason); /* "too big"; "unknown" if out of range */
const char *ims_reject_reason_key(int reason);  /* "too_big": a JSON/identifier key */

typedef struct ims_ingest_summary {
    int64_t scanned;    /* files seen under DIR */
    int64_t accepted;   /* new or changed items accepted in this run */
    int64_t unchanged;  /* skipped: same path, size, mtime and hash as before */
    int64_t duplicates; /* exact duplicates (kept once) */
    int64_t rejected;   /* sum of by_reason */
    int64_t by_reason[IMS_REJECT__COUNT];
    int64_t vanished; /* items whose file is gone */
    int64_t csv_rows; /* metadata rows read */
    int64_t rows_without_image, images_without_row;
    int64_t total_accepted; /* accepted items in the catalogue after the run */
    int threads;            /* threads this run used (opts->threads, or the default) */
} ims_ingest_summary;

/* Files above this size are REJECTED as TOO_BIG without being read. */
#define IMS_CATALOG_MAX_FILE_BYTES (256ll << 20)

/* Ingest DIR: category = top-level folder under DIR ("" for files directly
 * in DIR). A malformed CSV fails before anything is written
 * (IMS_EFORMAT, message names the line). */
int ims_catalog_ingest(ims_catalog *c, const char *dir, const ims_ingest_opts *o,
                       ims_ingest_summary *sum, ims_error *err);

/* ---- items ------------------------------------------------------------------ */
int ims_catalog_get(ims_catalog *c, int64_t id, ims_item *out, ims_error *err); /* ENOTFOUND */
/* The accepted item with this content, or IMS_ENOTFOUND. */
int ims_catalog_find_sha256(ims_catalog *c, const char *sha256_hex, int64_t *id, ims_error *err);
/* ids of all accepted items, ascending; free with ims_free(). */
int ims_catalog_accepted_ids(ims_catalog *c, int64_t **ids, size_t *n, ims_error *err);
/* Category names of accepted items with their counts, sorted by name. */
int ims_catalog_categories(ims_catalog *c, char ***names, int64_t **counts, size_t *n,
                           ims_error *err);
void ims_catalog_free_categories(char **names, int64_t *counts, size_t n);
/* ids of accepted items of one category, ascending; free with ims_free(). */
int ims_catalog_ids_in_category(ims_catalog *c, const char *category, int64_t **ids, size_t *n,
                                ims_error *err);
/* Largest item id ever used (0 when empty). */
int ims_catalog_max_id(ims_catalog *c, int64_t *id, ims_error *err);
/* Absolute path of the item's stored image file; free with ims_free(). */
int ims_catalog_image_path(ims_catalog *c, int64_t id, char **path, ims_error *err);

/* Add one item from image bytes (already decoded and checked by the caller:
 * width, height, format given): stores the image in the collection, then
 * inserts the row, in that order (an image file without a row is harmless
 * and reused). metadata: JSON object text or NULL. A duplicate of an
 * accepted item is IMS_EEXIST with *id set to that item. */
int ims_catalog_add(ims_catalog *c, const void *bytes, size_t len, const char *format, int width,
                    int height, const char *category, const char *name, const char *product_id,
                    const char *metadata, int64_t *id, ims_error *err);
/* Store image bytes in the collection's content-addressed image store
 * (what ims_catalog_add does first; durable: temp file, fsync, rename)
 * without touching the database, so that a later ims_catalog_add of the
 * same bytes finds the file there and does no file I/O of its own beyond
 * checking it. IMS_EINVAL for an empty image or unknown format. */
int ims_catalog_store_image(ims_catalog *c, const void *bytes, size_t len, const char *format,
                            ims_error *err);
/* One transaction around several writes of this handle (e.g. an add and
 * its vector), so that a failure in between (disk full) leaves none of
 * them: begin, the writes, then commit (on failure it rolls back, and the
 * error says why) or rollback. Writes that open their own transaction
 * join this one (ims_catalog_delete too, as a savepoint). Not for ingest
 * (it begins its own). */
int ims_catalog_begin(ims_catalog *c, ims_error *err);
int ims_catalog_commit(ims_catalog *c, ims_error *err);
void ims_catalog_rollback(ims_catalog *c); /* no-op outside a transaction */
/* Mark deleted (its vectors are dropped). IMS_ENOTFOUND if not accepted. */
int ims_catalog_delete(ims_catalog *c, int64_t id, ims_error *err);

/* ---- vector store -------------------------------------------------------------
 * Per item, per `kind` ("features": cached backbone taps; "vectors": encoder
 * output), one float vector stamped with the producer's identity (`stamp`,
 * e.g. the encoder file's sha256). A put replaces the item's vector of
 * that kind. */
int ims_catalog_put_vectors(ims_catalog *c, const char *kind, const char *stamp, size_t n,
                            const int64_t *ids, const float *vecs, int dim, ims_error *err);
/* Read n vectors; IMS_ENOTFOUND if one is missing or has another stamp/dim. */
int ims_catalog_get_vectors(ims_catalog *c, const char *kind, const char *stamp, size_t n,
                            const int64_t *ids, float *vecs, int dim, ims_error *err);
/* Accepted items with no vector of `kind` stamped `stamp`, ascending. */
int ims_catalog_missing_vectors(ims_catalog *c, const char *kind, const char *stamp, int64_t **ids,
                                size_t *n, ims_error *err);
/* Drop vectors of `kind` whose stamp differs (stale); *dropped may be NULL. */
int ims_catalog_drop_stale(ims_catalog *c, const char *kind, const char *stamp, int64_t *dropped,
                           ims_error *err);

/* ---- settings (key/value text) ------------------------------------------------ */
int ims_catalog_set_meta(ims_catalog *c, const char *key, const char *value, ims_error *err);
/* *value = NULL when unset; free with ims_free(). */
int ims_catalog_get_meta(ims_catalog *c, const char *key, char **value, ims_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_CATALOG_H */
