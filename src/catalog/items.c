/* SPDX-License-Identifier: MIT */
/*
 * items.c — reading items, adding and deleting them over the API, and the
 * content-addressed image store (<collection>/images/<hh>/<sha256>.<ext>).
 *
 * The store is written before the row that points at it and never pruned:
 * a file without a row is harmless (the next add of that content reuses
 * it), a row without a file cannot happen. Stored files are hard links of
 * the ingested sources when possible (no copy of a large photo library), so
 * a source file rewritten *in place* would change the stored bytes too; a
 * source replaced by a new file (what editors and cp to a new name do) does
 * not. Against the former, ingest unlinks a stored file that shares the
 * inode of a source it sees rewritten, a promoted duplicate re-stores its
 * content, and a stored file is re-hashed before it is reused.
 * Elsewhere the bytes are copied atomically (temp, fsync, rename).
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "catalog/catalog_int.h"

static const char *const reason_text[] = {
#define IMS__REJ_TEXT(name, text) text,
    IMS_REJECT_REASONS(IMS__REJ_TEXT)
#undef IMS__REJ_TEXT
};

const char *ims_reject_reason_name(int reason)
{
    if (reason < 0 || reason >= IMS_REJECT__COUNT)
        return "unknown";
    return reason_text[reason];
}

const char *ims_reject_reason_key(int reason)
{
    static const char *const keys[] = {
#define IMS__REJ_KEY(name, text) #name,
        IMS_REJECT_REASONS(IMS__REJ_KEY)
#undef IMS__REJ_KEY
    };
    static char lower[IMS_REJECT__COUNT][24];
    static int ready;
    if (reason < 0 || reason >= IMS_REJECT__COUNT)
        return "unknown";
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < IMS_REJECT__COUNT; i++) {
            size_t j = 0;
            for (; keys[i][j] && j + 1 < sizeof lower[i]; j++) {
                char ch = keys[i][j];
                lower[i][j] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
            }
            lower[i][j] = '\0';
        }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE); /* racers write the same bytes */
    }
    return lower[reason];
}

void ims_item_clear(ims_item *it)
{
    if (!it)
        return;
    ims_free(it->path);
    ims_free(it->category);
    ims_free(it->name);
    ims_free(it->product_id);
    ims_free(it->metadata);
    ims_free(it->reason);
    memset(it, 0, sizeof *it);
}

const char *ims__format_ext(const char *format)
{
    static const char *const map[][2] = {
        {"jpeg", "jpg"}, {"png", "png"}, {"webp", "webp"}, {"gif", "gif"}, {"tiff", "tif"},
    };
    for (size_t i = 0; format && i < IMS_ARRAY_LEN(map); i++)
        if (!strcmp(format, map[i][0]))
            return map[i][1];
    return NULL;
}

/* 1 if s is 64 lowercase hex digits. */
static int is_sha_hex(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return i == 64;
}

int ims__store_path(ims_catalog *c, const char *sha, const char *format, char *out, size_t n,
                    ims_error *err)
{
    const char *ext = ims__format_ext(format);
    if (!ext || !is_sha_hex(sha))
        return ims_error_set(err, IMS_EINVAL, "image store: bad format '%s' or hash", format);
    if (snprintf(out, n, "%s/images/%.2s/%s.%s", c->dir, sha, sha, ext) >= (int)n)
        return ims_error_set(err, IMS_EINVAL, "%s: collection path too long", c->dir);
    return IMS_OK;
}

typedef struct bytes_ud {
    const void *p;
    size_t n;
} bytes_ud;

/* ims__write_atomic callback: the whole buffer. */
static int write_bytes(FILE *f, void *ud)
{
    bytes_ud *b = ud;
    return fwrite(b->p, 1, b->n, f) == b->n ? 0 : IMS_EIO;
}

int ims__file_has_sha(const char *path, const char *sha)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    ims__sha256_ctx ctx;
    ims__sha256_init(&ctx);
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        ims__sha256_update(&ctx, buf, n);
    int ok = !ferror(f);
    fclose(f);
    char h[65];
    ims__sha256_final_hex(&ctx, h);
    return ok && !strcmp(h, sha);
}

int ims__store_image(ims_catalog *c, const char *sha, const char *format, const char *src_path,
                     const void *bytes, size_t len, ims_error *err)
{
    char path[4096], dir[4096];
    int rc = ims__store_path(c, sha, format, path, sizeof path, err);
    if (rc)
        return rc;
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISREG(st.st_mode) && (size_t)st.st_size == len && ims__file_has_sha(path, sha))
            return IMS_OK;
        unlink(path); /* a torn copy, or a hard link whose source was rewritten */
    }
    snprintf(dir, sizeof dir, "%s/images", c->dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot create", dir);
    snprintf(dir, sizeof dir, "%s/images/%.2s", c->dir, sha);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot create", dir);
    if (src_path && link(src_path, path) == 0)
        return IMS_OK;
    bytes_ud b = {bytes, len};
    return ims__write_atomic(path, write_bytes, &b, err);
}

/* strdup of a text column ("" for NULL); NULL on ENOMEM. */
static char *col_dup(sqlite3_stmt *s, int i)
{
    const char *v = (const char *)sqlite3_column_text(s, i);
    return ims_strdup(v ? v : "");
}

int ims_catalog_get(ims_catalog *c, int64_t id, ims_item *out, ims_error *err)
{
    IMS_ASSERT(c && out);
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s;
    int rc = ims__cat_stmt(c, ST_ITEM_GET, &s, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    int src = sqlite3_step(s);
    if (src == SQLITE_DONE) {
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld: not found", (long long)id);
    } else if (src != SQLITE_ROW) {
        rc = ims__cat_dberr(c, src, "get item", err);
    } else {
        out->id = sqlite3_column_int64(s, 0);
        out->path = col_dup(s, 1);
        out->category = col_dup(s, 2);
        out->name = col_dup(s, 3);
        out->product_id = col_dup(s, 4);
        out->metadata = col_dup(s, 5);
        snprintf(out->sha256, sizeof out->sha256, "%s",
                 (const char *)sqlite3_column_text(s, 6) ? (const char *)sqlite3_column_text(s, 6)
                                                         : "");
        snprintf(out->format, sizeof out->format, "%s",
                 (const char *)sqlite3_column_text(s, 7) ? (const char *)sqlite3_column_text(s, 7)
                                                         : "");
        out->width = sqlite3_column_int(s, 8);
        out->height = sqlite3_column_int(s, 9);
        out->bytes = sqlite3_column_int64(s, 10);
        out->status = sqlite3_column_int(s, 11);
        out->reason = col_dup(s, 12);
        out->dup_of = sqlite3_column_int64(s, 13);
        if (!out->path || !out->category || !out->name || !out->product_id || !out->metadata ||
            !out->reason) {
            ims_item_clear(out);
            rc = ims_error_set(err, IMS_ENOMEM, "get item: out of memory");
        }
    }
    sqlite3_reset(s);
    return rc;
}

int ims_catalog_find_sha256(ims_catalog *c, const char *sha256_hex, int64_t *id, ims_error *err)
{
    IMS_ASSERT(c && sha256_hex && id);
    *id = 0;
    sqlite3_stmt *s;
    int rc = ims__cat_stmt(c, ST_FIND_SHA, &s, err);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, sha256_hex, -1, SQLITE_STATIC);
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        *id = sqlite3_column_int64(s, 0);
    else if (src == SQLITE_DONE)
        rc = ims_error_set(err, IMS_ENOTFOUND, "no accepted item with sha256 %.64s", sha256_hex);
    else
        rc = ims__cat_dberr(c, src, "find sha256", err);
    sqlite3_reset(s);
    return rc;
}

/* Run a one-off query and collect column 0 as int64s (ids); bind text
 * parameters ?1..?n_text. *ids freed with ims_free. */
int ims__cat_collect_ids(ims_catalog *c, const char *sql, const char *const *text, int n_text,
                         int64_t **ids, size_t *n, ims_error *err)
{
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *s;
    int src = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
    if (src != SQLITE_OK)
        return ims__cat_dberr(c, src, "prepare", err);
    for (int i = 0; i < n_text; i++)
        sqlite3_bind_text(s, i + 1, text[i], -1, SQLITE_STATIC);
    int64_t *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = IMS_OK;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 256, bytes;
            int64_t *nv = ims_size_mul(nc, sizeof *v, &bytes) ? ims_realloc(v, bytes) : NULL;
            if (!nv) {
                rc = ims_error_set(err, IMS_ENOMEM, "collect ids: out of memory");
                break;
            }
            v = nv, cap = nc;
        }
        v[cnt++] = sqlite3_column_int64(s, 0);
    }
    if (rc == IMS_OK && src != SQLITE_DONE)
        rc = ims__cat_dberr(c, src, "collect ids", err);
    sqlite3_finalize(s);
    if (rc) {
        ims_free(v);
        return rc;
    }
    *ids = v;
    *n = cnt;
    return IMS_OK;
}

int ims_catalog_accepted_ids(ims_catalog *c, int64_t **ids, size_t *n, ims_error *err)
{
    IMS_ASSERT(c && ids && n);
    return ims__cat_collect_ids(c, "SELECT id FROM items WHERE status = 0 ORDER BY id", NULL, 0,
                                ids, n, err);
}

int ims_catalog_ids_in_category(ims_catalog *c, const char *category, int64_t **ids, size_t *n,
                                ims_error *err)
{
    IMS_ASSERT(c && category && ids && n);
    const char *text[1] = {category};
    return ims__cat_collect_ids(c,
                                "SELECT id FROM items WHERE status = 0 AND category = ?1"
                                " ORDER BY id",
                                text, 1, ids, n, err);
}

int ims_catalog_max_id(ims_catalog *c, int64_t *id, ims_error *err)
{
    IMS_ASSERT(c && id);
    int64_t *ids = NULL;
    size_t n = 0;
    int rc =
        ims__cat_collect_ids(c, "SELECT coalesce(max(id), 0) FROM items", NULL, 0, &ids, &n, err);
    *id = !rc && n ? ids[0] : 0;
    ims_free(ids);
    return rc;
}

int ims_catalog_categories(ims_catalog *c, char ***names, int64_t **counts, size_t *n,
                           ims_error *err)
{
    IMS_ASSERT(c && names && counts && n);
    *names = NULL, *counts = NULL, *n = 0;
    sqlite3_stmt *s;
    int src = sqlite3_prepare_v2(c->db,
                                 "SELECT category, count(*) FROM items WHERE status = 0"
                                 " GROUP BY category ORDER BY category",
                                 -1, &s, NULL);
    if (src != SQLITE_OK)
        return ims__cat_dberr(c, src, "categories", err);
    char **nm = NULL;
    int64_t *ct = NULL;
    size_t cnt = 0, cap = 0;
    int rc = IMS_OK;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 32;
            char **nn = ims_realloc(nm, nc * sizeof *nm);
            if (nn)
                nm = nn;
            int64_t *nt = nn ? ims_realloc(ct, nc * sizeof *ct) : NULL;
            if (nt)
                ct = nt;
            if (!nn || !nt) {
                rc = ims_error_set(err, IMS_ENOMEM, "categories: out of memory");
                break;
            }
            cap = nc;
        }
        nm[cnt] = col_dup(s, 0);
        ct[cnt] = sqlite3_column_int64(s, 1);
        if (!nm[cnt]) {
            rc = ims_error_set(err, IMS_ENOMEM, "categories: out of memory");
            break;
        }
        cnt++;
    }
    if (rc == IMS_OK && src != SQLITE_DONE)
        rc = ims__cat_dberr(c, src, "categories", err);
    sqlite3_finalize(s);
    if (rc) {
        ims_catalog_free_categories(nm, ct, cnt);
        return rc;
    }
    *names = nm, *counts = ct, *n = cnt;
    return IMS_OK;
}

void ims_catalog_free_categories(char **names, int64_t *counts, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        ims_free(names[i]);
    ims_free(names);
    ims_free(counts);
}

int ims_catalog_image_path(ims_catalog *c, int64_t id, char **path, ims_error *err)
{
    IMS_ASSERT(c && path);
    *path = NULL;
    ims_item it;
    int rc = ims_catalog_get(c, id, &it, err);
    if (rc)
        return rc;
    char rel[4096];
    if (!it.sha256[0] || !ims__format_ext(it.format)) {
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld: no stored image (%s)", (long long)id,
                           it.reason && it.reason[0] ? it.reason : "not an image");
        goto done;
    }
    if ((rc = ims__store_path(c, it.sha256, it.format, rel, sizeof rel, err)))
        goto done;
    char *abs = realpath(rel, NULL);
    if (!abs) {
        rc = ims_error_set_errno(err, IMS_ENOTFOUND, errno, "%s", rel);
        goto done;
    }
    *path = ims_strdup(abs);
    free(abs);
    if (!*path)
        rc = ims_error_set(err, IMS_ENOMEM, "image path: out of memory");
done:
    ims_item_clear(&it);
    return rc;
}

/* 1 if text is a JSON object. */
static int is_json_object(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    int ok = j && json_is_object(j);
    json_decref(j);
    return ok;
}

int ims_catalog_add(ims_catalog *c, const void *bytes, size_t len, const char *format, int width,
                    int height, const char *category, const char *name, const char *product_id,
                    const char *metadata, int64_t *id, ims_error *err)
{
    IMS_ASSERT(c && (bytes || !len) && id);
    *id = 0;
    int rc = ims__cat_writable(c, err);
    if (rc)
        return rc;
    if (!len || !ims__format_ext(format) || width <= 0 || height <= 0)
        return ims_error_set(err, IMS_EINVAL, "add: empty image, unknown format or bad size");
    if (metadata && !is_json_object(metadata))
        return ims_error_set(err, IMS_EINVAL, "add: metadata is not a JSON object");
    /* they come back in JSON (and HTML): text only */
    const char *bad = NULL;
    if (category && !ims__utf8_valid((const unsigned char *)category, strlen(category)))
        bad = "category";
    else if (name && !ims__utf8_valid((const unsigned char *)name, strlen(name)))
        bad = "name";
    if (bad)
        return ims_error_set(err, IMS_EINVAL, "add: %s is not valid UTF-8", bad);
    char sha[65];
    ims__sha256_hex(bytes, len, sha);
    int64_t have;
    ims_error e2;
    rc = ims_catalog_find_sha256(c, sha, &have, &e2);
    if (rc == IMS_OK) {
        *id = have;
        return ims_error_set(err, IMS_EEXIST, "add: the same image is item %lld", (long long)have);
    }
    if (rc != IMS_ENOTFOUND) {
        if (err)
            *err = e2;
        return rc;
    }
    if ((rc = ims__store_image(c, sha, format, NULL, bytes, len, err)))
        return rc;
    sqlite3_stmt *s;
    if ((rc = ims__cat_stmt(c, ST_ITEM_INSERT, &s, err)))
        return rc;
    sqlite3_bind_int(s, 1, 1); /* origin: API */
    sqlite3_bind_text(s, 2, "upload", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, category ? category : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, name ? name : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, product_id ? product_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, metadata ? metadata : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, sha, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, format, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 9, width);
    sqlite3_bind_int(s, 10, height);
    sqlite3_bind_int64(s, 11, (sqlite3_int64)len);
    sqlite3_bind_int(s, 12, IMS_ITEM_ACCEPTED);
    sqlite3_bind_null(s, 13);
    sqlite3_bind_text(s, 14, "", -1, SQLITE_STATIC);
    sqlite3_bind_null(s, 15);
    sqlite3_bind_int64(s, 16, -1);
    sqlite3_bind_int64(s, 17, -1);
    sqlite3_bind_int64(s, 18, 0);
    int src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src == SQLITE_CONSTRAINT_UNIQUE && ims_catalog_find_sha256(c, sha, &have, NULL) == IMS_OK) {
        *id = have; /* another handle added the same image since our check */
        return ims_error_set(err, IMS_EEXIST, "add: the same image is item %lld", (long long)have);
    }
    if (src != SQLITE_DONE)
        return ims__cat_dberr(c, src, "add item", err);
    *id = sqlite3_last_insert_rowid(c->db);
    return IMS_OK;
}

int ims_catalog_store_image(ims_catalog *c, const void *bytes, size_t len, const char *format,
                            ims_error *err)
{
    IMS_ASSERT(c && (bytes || !len));
    int rc = ims__cat_writable(c, err);
    if (rc)
        return rc;
    if (!len || !ims__format_ext(format))
        return ims_error_set(err, IMS_EINVAL, "store image: empty image or unknown format");
    char sha[65];
    ims__sha256_hex(bytes, len, sha);
    return ims__store_image(c, sha, format, NULL, bytes, len, err);
}

int ims_catalog_delete(ims_catalog *c, int64_t id, ims_error *err)
{
    IMS_ASSERT(c);
    int rc = ims__cat_writable(c, err);
    if (rc)
        return rc;
    /* inside the caller's transaction (ims_catalog_begin) a savepoint keeps
     * the two statements together without committing */
    int own_txn = sqlite3_get_autocommit(c->db);
    if ((rc = ims__cat_exec(c, own_txn ? "BEGIN IMMEDIATE" : "SAVEPOINT ims_delete", err)))
        return rc;
    sqlite3_stmt *s;
    int src = sqlite3_prepare_v2(c->db,
                                 "UPDATE items SET status = 4, updated_at ="
                                 " strftime('%Y-%m-%dT%H:%M:%SZ','now')"
                                 " WHERE id = ?1 AND status = 0",
                                 -1, &s, NULL);
    if (src != SQLITE_OK) {
        rc = ims__cat_dberr(c, src, "delete", err);
        goto fail;
    }
    sqlite3_bind_int64(s, 1, id);
    src = sqlite3_step(s);
    sqlite3_finalize(s);
    if (src != SQLITE_DONE) {
        rc = ims__cat_dberr(c, src, "delete", err);
        goto fail;
    }
    if (sqlite3_changes(c->db) == 0) {
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld: no accepted item", (long long)id);
        goto fail;
    }
    if ((rc = ims__cat_stmt(c, ST_VEC_DROP_ITEM, &s, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, id);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE) {
        rc = ims__cat_dberr(c, src, "delete vectors", err);
        goto fail;
    }
    return ims__cat_exec(c, own_txn ? "COMMIT" : "RELEASE ims_delete", err);
fail:
    if (own_txn)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    else if (!sqlite3_get_autocommit(c->db)) /* an I/O error may have ended it */
        sqlite3_exec(c->db, "ROLLBACK TO ims_delete; RELEASE ims_delete", NULL, NULL, NULL);
    return rc;
}
