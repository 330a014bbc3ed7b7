/* SPDX-License-Identifier: MIT */
/*
 * db.c — opening the catalogue database, schema versioning, settings.
 *
 * Open, in order:
 *   1. sniff: an existing file must start with SQLite's 16-byte magic,
 *      else IMS_EFORMAT before SQLite ever parses it (a JPEG, an index file
 *      or a text file named catalog.sqlite gets a clear message);
 *   2. open with SQLite, extended result codes, a busy timeout, foreign
 *      keys on and (read-write) the WAL journal;
 *   3. identify: application_id must be 'IMSC'. A brand-new, empty database
 *      (id 0, no tables) is initialised when writable; any other id, or id
 *      0 with tables in it, is a foreign SQLite file (IMS_EFORMAT). A
 *      damaged file surfaces here as SQLITE_CORRUPT/NOTADB (IMS_ECORRUPT);
 *   4. version: user_version above IMS__CATALOG_VERSION is IMS_EVERSION
 *      (written by a newer imgsim); below it, the missing migrations of
 *      schema.c run in one IMMEDIATE transaction (re-checked inside it, so
 *      two processes opening an old file at once migrate it once).
 *
 * Read-only: a handle on a directory it cannot write opens the file as
 * immutable (no -shm/-wal can be created there); copy a collection after
 * its writers have closed, so that the WAL is checkpointed into the file.
 *
 * Statements are prepared once per handle and cached (ims__cat_stmt); every
 * value is bound, never formatted into SQL. A handle is used by one thread
 * at a time (SQLITE_OPEN_NOMUTEX); more threads open more handles.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/catalog_int.h"

#define BUSY_TIMEOUT_MS 10000

static const char *const stmt_sql[ST__COUNT] = {
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [ST_ITEM_GET] = "SELECT id, path, category, name, product_id, metadata, sha256, format,"
                    " width, height, bytes, status, reason, dup_of FROM items WHERE id = ?1",
    [ST_ITEM_BY_PATH] = "SELECT id, src_size, src_mtime_ns, sha256, status, reject, format"
                        " FROM items WHERE origin = 0 AND path = ?1",
    [ST_ITEM_INSERT] =
        "INSERT INTO items(origin, path, category, name, product_id, metadata, sha256, format,"
        " width, height, bytes, status, reject, reason, dup_of, src_size, src_mtime_ns, seen_run)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    [ST_ITEM_UPDATE] =
        "UPDATE items SET category = ?3, name = coalesce(?4, name),"
        " product_id = coalesce(?5, product_id), metadata = coalesce(?6, metadata),"
        " sha256 = ?7, format = ?8, width = ?9, height = ?10, bytes = ?11, status = ?12,"
        " reject = ?13, reason = ?14, dup_of = ?15, src_size = ?16, src_mtime_ns = ?17,"
        " seen_run = ?18, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now')"
        " WHERE id = ?19 AND origin = ?1 AND path = ?2",
    [ST_ITEM_SEEN] = "UPDATE items SET seen_run = ?2, src_size = ?3, src_mtime_ns = ?4"
                     " WHERE id = ?1",
    [ST_ITEM_SET_META] = "UPDATE items SET name = ?2, product_id = ?3, metadata = ?4,"
                         " updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now')"
                         " WHERE id = ?1 AND (name, product_id, metadata) IS NOT (?2, ?3, ?4)",
    [ST_FIND_SHA] = "SELECT id FROM items WHERE status = 0 AND sha256 = ?1",
    [ST_VEC_PUT] = "INSERT INTO vectors(item_id, kind, stamp, dim, data) VALUES(?1, ?2, ?3, ?4, ?5)"
                   " ON CONFLICT(item_id, kind) DO UPDATE SET stamp = excluded.stamp,"
                   " dim = excluded.dim, data = excluded.data",
    [ST_VEC_GET] = "SELECT stamp, dim, data FROM vectors WHERE item_id = ?1 AND kind = ?2",
    [ST_VEC_DROP_ITEM] = "DELETE FROM vectors WHERE item_id = ?1",
};

int ims__cat_dberr(ims_catalog *c, int src, const char *what, ims_error *err)
{
    int code;
    switch (src & 0xff) {
    case SQLITE_NOMEM:
        code = IMS_ENOMEM;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = IMS_EBUSY;
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        code = IMS_ECORRUPT;
        break;
    case SQLITE_READONLY:
        code = IMS_ESTATE;
        break;
    case SQLITE_FULL:
        code = IMS_EFULL;
        break;
    case SQLITE_CONSTRAINT:
        code = IMS_EINVAL;
        break;
    case SQLITE_TOOBIG:
        code = IMS_ETOOBIG;
        break;
    default:
        code = IMS_EIO;
        break;
    }
    const char *msg = c && c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(src);
    return ims_error_set(err, code, "%s: %s: %s", c && c->db_path ? c->db_path : "catalog", what,
                         msg);
}

int ims__cat_exec(ims_catalog *c, const char *sql, ims_error *err)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? IMS_OK : ims__cat_dberr(c, rc, sql, err);
}

int ims__cat_writable(ims_catalog *c, ims_error *err)
{
    if (c->readonly)
        return ims_error_set(err, IMS_ESTATE, "%s: catalogue opened read-only", c->db_path);
    return IMS_OK;
}

int ims__cat_stmt(ims_catalog *c, int which, sqlite3_stmt **out, ims_error *err)
{
    IMS_ASSERT(which >= 0 && which < ST__COUNT);
    sqlite3_stmt *s = c->st[which];
    *out = NULL;
    if (!s) {
        int rc =
            sqlite3_prepare_v3(c->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
        if (rc != SQLITE_OK)
            return ims__cat_dberr(c, rc, "prepare", err);
        c->st[which] = s;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    *out = s;
    return IMS_OK;
}

/* One integer from a PRAGMA or query; SQLite rc. */
static int query_int(ims_catalog *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

/* mkdir -p for the collection directory. */
static int make_dirs(const char *path, ims_error *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return ims_error_set(err, IMS_EINVAL, "%s: bad collection path", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot create directory", buf);
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return ims_error_set(err, IMS_EIO, "%s: not a directory", path);
    return IMS_OK;
}

/* Step 1: an existing non-empty file must carry SQLite's magic. */
static int sniff(const char *path, int *exists, ims_error *err)
{
    static const char magic[16] = "SQLite format 3";
    struct stat st;
    *exists = 0;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return IMS_OK;
        return ims_error_set_errno(err, IMS_EIO, errno, "%s", path);
    }
    if (!S_ISREG(st.st_mode))
        return ims_error_set(err, IMS_EFORMAT, "%s: not a regular file", path);
    *exists = 1;
    if (st.st_size == 0)
        return IMS_OK; /* SQLite treats it as a new, empty database */
    unsigned char head[16];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s", path);
    ssize_t got = read(fd, head, sizeof head);
    close(fd);
    if (got != (ssize_t)sizeof head || memcmp(head, magic, sizeof magic) != 0)
        return ims_error_set(err, IMS_EFORMAT, "%s: not an SQLite database (no SQLite header)",
                             path);
    return IMS_OK;
}

/* "file:<path, percent-escaped>?immutable=1"; NULL on ENOMEM. */
static char *immutable_uri(const char *path)
{
    size_t n = strlen(path);
    char *u = ims_malloc(n * 3 + sizeof "file:?immutable=1");
    if (!u)
        return NULL;
    char *o = u + sprintf(u, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#' || *p < 0x21 || *p > 0x7e)
            o += sprintf(o, "%%%02X", *p);
        else
            *o++ = (char)*p;
    }
    strcpy(o, "?immutable=1");
    return u;
}

/* Step 4: run the migrations from `from` up to IMS__CATALOG_VERSION. */
static int migrate(ims_catalog *c, ims_error *err)
{
    int rc = ims__cat_exec(c, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    int64_t app = 0, ver = 0, n_tables = 0;
    int src = query_int(c, "PRAGMA application_id", &app);
    if (src == SQLITE_OK)
        src = query_int(c, "PRAGMA user_version", &ver);
    if (src == SQLITE_OK)
        src = query_int(c, "SELECT count(*) FROM sqlite_schema", &n_tables);
    if (src != SQLITE_OK) {
        rc = ims__cat_dberr(c, src, "reading the schema version", err);
        goto fail;
    }
    if (app == 0 && n_tables > 0) {
        rc = ims_error_set(err, IMS_EFORMAT, "%s: an SQLite database, but not an imgsim catalogue",
                           c->db_path);
        goto fail;
    }
    for (int i = 0; i < ims__catalog_n_migrations; i++) {
        const ims__migration *m = &ims__catalog_migrations[i];
        if (m->to_version <= ver)
            continue;
        src = m->sql ? sqlite3_exec(c->db, m->sql, NULL, NULL, NULL) : SQLITE_OK;
        if (src != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof what, "migration to schema v%d", m->to_version);
            rc = ims__cat_dberr(c, src, what, err);
            goto fail;
        }
        if (m->fn && (rc = m->fn(c->db, c->db_path, err)))
            goto fail;
        ver = m->to_version;
    }
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
             IMS__CATALOG_APP_ID, IMS__CATALOG_VERSION);
    if ((rc = ims__cat_exec(c, sql, err)) || (rc = ims__cat_exec(c, "COMMIT", err)))
        goto fail;
    return IMS_OK;
fail:
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Steps 3 and 4. */
static int check_identity(ims_catalog *c, ims_error *err)
{
    int64_t app = 0, ver = 0, n_tables = 0;
    int src = query_int(c, "PRAGMA application_id", &app);
    if (src == SQLITE_OK)
        src = query_int(c, "PRAGMA user_version", &ver);
    if (src == SQLITE_OK)
        src = query_int(c, "SELECT count(*) FROM sqlite_schema", &n_tables);
    if (src != SQLITE_OK) {
        if ((src & 0xff) == SQLITE_NOTADB || (src & 0xff) == SQLITE_CORRUPT)
            return ims_error_set(err, IMS_ECORRUPT, "%s: corrupt SQLite database: %s", c->db_path,
                                 sqlite3_errmsg(c->db));
        return ims__cat_dberr(c, src, "reading the schema version", err);
    }
    if (app != IMS__CATALOG_APP_ID && !(app == 0 && n_tables == 0))
        return ims_error_set(err, IMS_EFORMAT,
                             "%s: an SQLite database, but not an imgsim catalogue "
                             "(application_id 0x%08llx)",
                             c->db_path, (unsigned long long)(uint32_t)app);
    if (ver > IMS__CATALOG_VERSION)
        return ims_error_set(err, IMS_EVERSION,
                             "%s: catalogue schema v%lld is newer than this imgsim (v%d)",
                             c->db_path, (long long)ver, IMS__CATALOG_VERSION);
    if (ver == IMS__CATALOG_VERSION && app == IMS__CATALOG_APP_ID)
        return IMS_OK;
    if (c->readonly)
        return ims_error_set(err, app ? IMS_EVERSION : IMS_EFORMAT,
                             app ? "%s: catalogue schema needs an upgrade; open it read-write once"
                                 : "%s: empty database, not an imgsim catalogue",
                             c->db_path);
    return migrate(c, err);
}

static int setup_pragmas(ims_catalog *c, ims_error *err)
{
    int rc;
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    if ((rc = ims__cat_exec(c, "PRAGMA foreign_keys = ON", err)))
        return rc;
    if (c->readonly)
        return IMS_OK;
    int64_t dummy;
    /* journal_mode returns a row; a corrupt header shows up here too */
    int src = query_int(c, "PRAGMA journal_mode = WAL", &dummy);
    if (src != SQLITE_OK) {
        if ((src & 0xff) == SQLITE_NOTADB || (src & 0xff) == SQLITE_CORRUPT)
            return ims_error_set(err, IMS_ECORRUPT, "%s: corrupt SQLite database: %s", c->db_path,
                                 sqlite3_errmsg(c->db));
        return ims__cat_dberr(c, src, "PRAGMA journal_mode", err);
    }
    /* FULL: in WAL mode every commit is fsync'd, so an acknowledged add or
     * delete survives a power loss, not only a process crash (NORMAL would
     * only survive the latter). Ingest commits per 256 files, so the cost
     * is one fsync per batch there. */
    return ims__cat_exec(c, "PRAGMA synchronous = FULL", err);
}

int ims_catalog_open(const char *collection, int flags, ims_catalog **out, ims_error *err)
{
    IMS_ASSERT(collection && out);
    *out = NULL;
    ims_error_clear(err);
    if ((flags & IMS_CATALOG_CREATE) && (flags & IMS_CATALOG_READONLY))
        return ims_error_set(err, IMS_EINVAL, "%s: CREATE and READONLY together", collection);
    int rc;
    ims_catalog *c = ims_calloc(1, sizeof *c);
    if (!c)
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", collection);
    c->readonly = !!(flags & IMS_CATALOG_READONLY);
    size_t n = strlen(collection) + sizeof "/" IMS__CATALOG_FILE;
    c->dir = ims_strdup(collection);
    c->db_path = ims_malloc(n);
    if (!c->dir || !c->db_path) {
        rc = ims_error_set(err, IMS_ENOMEM, "%s: out of memory", collection);
        goto fail;
    }
    snprintf(c->db_path, n, "%s/%s", collection, IMS__CATALOG_FILE);
    if ((flags & IMS_CATALOG_CREATE) && (rc = make_dirs(collection, err)))
        goto fail;
    int exists;
    if ((rc = sniff(c->db_path, &exists, err)))
        goto fail;
    if (!exists && !(flags & IMS_CATALOG_CREATE)) {
        rc = ims_error_set(err, IMS_ENOTFOUND, "%s: no catalogue (run `imgsim ingest` first)",
                           c->db_path);
        goto fail;
    }
    int oflags = SQLITE_OPEN_NOMUTEX |
                 (c->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    char *uri = NULL;
    if (c->readonly && access(collection, W_OK) != 0) {
        /* a read-only directory: WAL cannot make its -shm file, so open
         * the (cleanly closed) copy as immutable */
        if (!(uri = immutable_uri(c->db_path))) {
            rc = ims_error_set(err, IMS_ENOMEM, "%s: out of memory", collection);
            goto fail;
        }
        oflags |= SQLITE_OPEN_URI;
    }
    int src = sqlite3_open_v2(uri ? uri : c->db_path, &c->db, oflags, NULL);
    ims_free(uri);
    if (src != SQLITE_OK) {
        rc = ims__cat_dberr(c, src, "cannot open", err);
        goto fail;
    }
    if ((rc = setup_pragmas(c, err)) || (rc = check_identity(c, err)))
        goto fail;
    *out = c;
    return IMS_OK;
fail:
    ims_catalog_close(c);
    return rc;
}

void ims_catalog_close(ims_catalog *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    ims_free(c->dir);
    ims_free(c->db_path);
    ims_free(c);
}

/* The first row of a checking PRAGMA that is not "ok"; SQLite rc. */
static int first_problem(ims_catalog *c, const char *sql, int is_fk, char *out, size_t n)
{
    sqlite3_stmt *s;
    out[0] = '\0';
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && !out[0]) {
        if (is_fk) { /* table, rowid, parent, fkid */
            const char *t = (const char *)sqlite3_column_text(s, 0);
            const char *p = (const char *)sqlite3_column_text(s, 2);
            snprintf(out, n, "foreign key: %s row %lld points to a missing %s row", t ? t : "?",
                     (long long)sqlite3_column_int64(s, 1), p ? p : "?");
        } else {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            if (!t || strcmp(t, "ok"))
                snprintf(out, n, "%s", t ? t : "(null)");
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

int ims_catalog_check(ims_catalog *c, ims_error *err)
{
    IMS_ASSERT(c);
    char problem[400];
    static const char *const sql[2] = {"PRAGMA integrity_check(20)", "PRAGMA foreign_key_check"};
    for (int i = 0; i < 2; i++) {
        int src = first_problem(c, sql[i], i, problem, sizeof problem);
        if (src != SQLITE_OK) {
            if ((src & 0xff) == SQLITE_NOTADB || (src & 0xff) == SQLITE_CORRUPT)
                return ims_error_set(err, IMS_ECORRUPT, "%s: corrupt SQLite database: %s",
                                     c->db_path, sqlite3_errmsg(c->db));
            return ims__cat_dberr(c, src, sql[i], err);
        }
        if (problem[0])
            return ims_error_set(err, IMS_ECORRUPT, "%s: %s", c->db_path, problem);
    }
    return IMS_OK;
}

int ims_catalog_begin(ims_catalog *c, ims_error *err)
{
    IMS_ASSERT(c);
    int rc = ims__cat_writable(c, err);
    return rc ? rc : ims__cat_exec(c, "BEGIN IMMEDIATE", err);
}

int ims_catalog_commit(ims_catalog *c, ims_error *err)
{
    IMS_ASSERT(c);
    int rc = ims__cat_exec(c, "COMMIT", err);
    if (rc)
        ims_catalog_rollback(c); /* a failed COMMIT (I/O error) can leave it open */
    return rc;
}

void ims_catalog_rollback(ims_catalog *c)
{
    if (c && c->db && !sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

int ims_catalog_set_meta(ims_catalog *c, const char *key, const char *value, ims_error *err)
{
    IMS_ASSERT(c && key && value);
    int rc = ims__cat_writable(c, err);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    if ((rc = ims__cat_stmt(c, ST_META_SET, &s, err)))
        return rc;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    int src = sqlite3_step(s);
    sqlite3_reset(s);
    return src == SQLITE_DONE ? IMS_OK : ims__cat_dberr(c, src, "set meta", err);
}

int ims_catalog_get_meta(ims_catalog *c, const char *key, char **value, ims_error *err)
{
    IMS_ASSERT(c && key && value);
    *value = NULL;
    sqlite3_stmt *s;
    int rc = ims__cat_stmt(c, ST_META_GET, &s, err);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        *value = ims_strdup(v ? v : "");
        if (!*value)
            rc = ims_error_set(err, IMS_ENOMEM, "get meta: out of memory");
    } else if (src != SQLITE_DONE) {
        rc = ims__cat_dberr(c, src, "get meta", err);
    }
    sqlite3_reset(s);
    return rc;
}
