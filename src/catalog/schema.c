/* SPDX-License-Identifier: MIT */
/*
 * schema.c — the catalogue's schema as a list of migrations.
 *
 * Each step takes the database from user_version (to_version - 1) to
 * to_version and runs inside the one transaction db.c opens for the whole
 * upgrade, so a crash mid-migration leaves the old version intact. To add
 * v2: append { 2, "ALTER TABLE ...;", NULL } and bump IMS__CATALOG_VERSION;
 * never edit a step that has shipped. A change SQL cannot express
 * (re-encoding vectors, say) adds a C function: { 2, "ALTER ...", v2_fn }.
 * On-disk enum values (status, reject, origin) are frozen, append-only.
 */
#include "catalog/catalog_int.h"

static const char v1_sql[] =
    "CREATE TABLE items("
    " id INTEGER PRIMARY KEY,"
    " origin INTEGER NOT NULL DEFAULT 0," /* 0 ingest, 1 API upload */
    " path TEXT NOT NULL,"
    " category TEXT NOT NULL DEFAULT '',"
    " name TEXT NOT NULL DEFAULT '',"
    " product_id TEXT NOT NULL DEFAULT '',"
    " metadata TEXT NOT NULL DEFAULT '{}' CHECK(json_valid(metadata)),"
    " sha256 TEXT NOT NULL DEFAULT '',"
    " format TEXT NOT NULL DEFAULT '',"
    " width INTEGER NOT NULL DEFAULT 0,"
    " height INTEGER NOT NULL DEFAULT 0,"
    " bytes INTEGER NOT NULL DEFAULT 0,"
    " status INTEGER NOT NULL CHECK(status BETWEEN 0 AND 4),"
    " reject INTEGER,"
    " reason TEXT NOT NULL DEFAULT '',"
    " dup_of INTEGER REFERENCES items(id) ON DELETE SET NULL,"
    " src_size INTEGER NOT NULL DEFAULT -1,"
    " src_mtime_ns INTEGER NOT NULL DEFAULT -1,"
    " seen_run INTEGER NOT NULL DEFAULT 0,"
    " added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),"
    " updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))"
    ");"
    "CREATE UNIQUE INDEX items_path ON items(path) WHERE origin = 0;"
    "CREATE UNIQUE INDEX items_accepted_sha ON items(sha256) WHERE status = 0;"
    "CREATE INDEX items_sha ON items(sha256);"
    "CREATE INDEX items_status ON items(status, id);"
    "CREATE TABLE vectors("
    " item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,"
    " kind TEXT NOT NULL,"
    " stamp TEXT NOT NULL,"
    " dim INTEGER NOT NULL CHECK(dim > 0),"
    " data BLOB NOT NULL CHECK(length(data) = 4 * dim),"
    " PRIMARY KEY(item_id, kind)"
    ") WITHOUT ROWID;"
    "CREATE INDEX vectors_kind ON vectors(kind, stamp);"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;";

const ims__migration ims__catalog_migrations[] = {
    {1, v1_sql, NULL},
};
const int ims__catalog_n_migrations =
    (int)(sizeof ims__catalog_migrations / sizeof ims__catalog_migrations[0]);
