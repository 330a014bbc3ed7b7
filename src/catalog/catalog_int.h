/* SPDX-License-Identifier: MIT */
/*
 * catalog_int.h — internals of the catalog module: the handle, the schema,
 * the prepared-statement cache, and the helpers shared by its files.
 *
 * Files:
 *   db.c       open/close, pragmas, application_id + user_version checks,
 *              the migration table, meta (settings), error mapping
 *   schema.c   the SQL of every schema version (migrations)
 *   items.c    item reads, add/delete over the API, the image store
 *   vectors.c  the per-item vector store
 *   csv.c      strict RFC 4180 metadata CSV -> rows (whole file, no writes)
 *   scan.c     walking the ingested DIR (no writes, path confinement)
 *   ingest.c   the ingest batches: decode check, hash, dedupe, join, upsert
 *
 * Schema v1 (user_version 1, application_id 'IMSC' = 0x494D5343):
 *
 *   items    id INTEGER PRIMARY KEY, origin (0 ingest, 1 API), path,
 *            category, name, product_id, metadata (JSON object text),
 *            sha256 (hex, '' when unread), format, width, height, bytes,
 *            status (enum ims_item_status), reject (enum ims_reject_reason
 *            or NULL), reason, dup_of -> items(id), src_size, src_mtime_ns
 *            (the skip test), seen_run (the last ingest run that saw the
 *            file; older ones are VANISHED at the end of a run).
 *            UNIQUE(path) WHERE origin=0; UNIQUE(sha256) WHERE status=0, so
 *            "one accepted item per content" is enforced by SQLite itself.
 *   vectors  (item_id -> items(id) ON DELETE CASCADE, kind) PRIMARY KEY,
 *            stamp, dim, data BLOB of dim little-endian float32.
 *   meta     key TEXT PRIMARY KEY, value TEXT (settings; "ingest_run").
 *
 * Invariants: an accepted item's image file exists in the store before its
 * row is committed (images are never removed, so a duplicate promoted to
 * accepted finds its file in place); a changed item keeps its id and loses
 * its vectors in the same transaction that records the new content.
 */
#ifndef IMS_CATALOG_INT_H
#define IMS_CATALOG_INT_H

#include <sqlite3.h>

#include "core/core_int.h"
#include "imgsim/catalog.h"

#define IMS__CATALOG_APP_ID 0x494D5343 /* 'IMSC' */
#define IMS__CATALOG_FILE "catalog.sqlite"

/* Cached prepared statements, prepared on first use (SQLITE_PREPARE_PERSISTENT). */
enum ims__stmt {
    ST_META_GET,
    ST_META_SET,
    ST_ITEM_GET,
    ST_ITEM_BY_PATH,
    ST_ITEM_INSERT,
    ST_ITEM_UPDATE,
    ST_ITEM_SEEN,
    ST_ITEM_SET_META,
    ST_FIND_SHA,
    ST_VEC_PUT,
    ST_VEC_GET,
    ST_VEC_DROP_ITEM,
    ST__COUNT
};

struct ims_catalog {
    sqlite3 *db;
    char *dir;                   /* collection directory (as given) */
    char *db_path;               /* <dir>/catalog.sqlite */
    int readonly;                /* IMS_CATALOG_READONLY */
    sqlite3_stmt *st[ST__COUNT]; /* see ims__cat_stmt */
};

/* The cached, reset statement `which` (bindings cleared) into *out. */
int ims__cat_stmt(ims_catalog *c, int which, sqlite3_stmt **out, ims_error *err);
/* Map an SQLite result code to an IMS_E* code and fill err with
 * "<db path>: <what>: <sqlite message>". Returns the IMS code. */
int ims__cat_dberr(ims_catalog *c, int src, const char *what, ims_error *err);
/* Run SQL without results (BEGIN/COMMIT...); IMS_OK or mapped error. */
int ims__cat_exec(ims_catalog *c, const char *sql, ims_error *err);
/* Run a one-off query, collecting column 0 (ids) into *ids (ims_free);
 * text[0..n_text) are bound to ?1..?n. */
int ims__cat_collect_ids(ims_catalog *c, const char *sql, const char *const *text, int n_text,
                         int64_t **ids, size_t *n, ims_error *err);
/* IMS_ESTATE when the handle is read-only. */
int ims__cat_writable(ims_catalog *c, ims_error *err);

/* ---- schema (schema.c) ---- */
#define IMS__CATALOG_VERSION 1 /* the user_version this build writes */
typedef struct ims__migration {
    int to_version;  /* user_version after this step */
    const char *sql; /* statements run first inside the migration transaction */
    /* then, optionally, C code for what SQL cannot do (rewriting BLOBs,
     * JSON...): same transaction; returns IMS_OK or an error (err set) */
    int (*fn)(sqlite3 *db, const char *db_path, ims_error *err);
} ims__migration;
extern const ims__migration ims__catalog_migrations[];
extern const int ims__catalog_n_migrations;

/* ---- image store (items.c) ---- */
/* File extension of a format name ("jpeg" -> "jpg"); NULL if unknown. */
const char *ims__format_ext(const char *format);
/* <collection>/images/<hex[0:2]>/<hex>.<ext> into out; IMS_EINVAL if long. */
int ims__store_path(ims_catalog *c, const char *sha, const char *format, char *out, size_t n,
                    ims_error *err);
/* 1 if the file at path exists and its SHA-256 is sha (hex). */
int ims__file_has_sha(const char *path, const char *sha);
/* Store content in the image store: hard link from src_path when given
 * (same file system), else an atomic copy of bytes. An existing file with
 * that name is kept when it still holds that content, else replaced. */
int ims__store_image(ims_catalog *c, const char *sha, const char *format, const char *src_path,
                     const void *bytes, size_t len, ims_error *err);

/* ---- CSV (csv.c) ---- */
typedef struct ims__csv {
    size_t n_cols, n_rows;
    char **header; /* n_cols names */
    char **cells;  /* n_rows * n_cols, row-major, NUL-terminated UTF-8 */
    long *line;    /* n_rows: the line each row starts on (1-based) */
} ims__csv;
/* Parse the whole file (strict RFC 4180, BOM, CRLF, UTF-8 checked, equal
 * field counts, unique non-empty header). IMS_EFORMAT naming the line;
 * IMS_EIO; IMS_ENOMEM. */
int ims__csv_read(const char *path, ims__csv *out, ims_error *err);
int ims__csv_parse(const void *buf, size_t len, const char *where, ims__csv *out, ims_error *err);
/* Column index of name, or -1. */
int ims__csv_column(const ims__csv *t, const char *name);
void ims__csv_free(ims__csv *t);
/* 1 if s[0..n) is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
int ims__utf8_valid(const unsigned char *s, size_t n);
/* Replace, in place, every byte of s that does not start a valid UTF-8
 * sequence with '?' (file and folder names are bytes; what is shown and
 * sent as JSON must be text). */
void ims__utf8_scrub(char *s);

/* ---- DIR scan (scan.c) ---- */
enum ims__entry_kind {
    ENT_FILE = 0,    /* regular file inside DIR (possibly through a symlink) */
    ENT_OUTSIDE = 1, /* a symlink (or path) resolving outside DIR */
    ENT_BROKEN = 2,  /* dangling symlink or unreadable entry */
};
typedef struct ims__entry {
    char *rel;        /* path relative to DIR, '/'-separated */
    char *real;       /* resolved absolute path (ENT_FILE), else NULL */
    char *category;   /* top-level folder, "" for files directly in DIR */
    int kind;         /* enum ims__entry_kind */
    int64_t size;     /* st_size of the target */
    int64_t mtime_ns; /* st_mtim of the target */
    char *note;       /* ENT_OUTSIDE/ENT_BROKEN: why */
} ims__entry;
typedef struct ims__scan {
    ims__entry *e;
    size_t n, cap;
} ims__scan;
/* Walk dir (recursively, names starting with '.' skipped, directory
 * symlinks not followed, `skip_real` paths — the collection itself, the
 * CSV — left out), sorted by rel. */
int ims__scan_dir(const char *dir, const char *const *skip_real, size_t n_skip, ims__scan *out,
                  ims_error *err);
void ims__scan_free(ims__scan *s);

#endif /* IMS_CATALOG_INT_H */
