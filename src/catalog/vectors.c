/* SPDX-License-Identifier: MIT */
/*
 * vectors.c — the per-item vector store: one float vector per (item, kind),
 * stamped with its producer's identity.
 *
 * A BLOB holds dim float32 values, little-endian whatever the host (so a
 * collection copied between machines reads the same); the table's CHECK
 * ties the BLOB length to dim. A put of n vectors is one transaction (or
 * joins the caller's), so a crash keeps all or none of them. A put for an
 * id that is not an item fails on the foreign key: IMS_ENOTFOUND.
 */
#include <string.h>

#include "catalog/catalog_int.h"

/* Host floats to little-endian bytes and back (a copy on LE hosts). */
static void floats_to_le(unsigned char *dst, const float *src, int dim)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (int i = 0; i < dim; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        ims__put_u32(dst + 4 * (size_t)i, u);
    }
#else
    memcpy(dst, src, (size_t)dim * 4);
#endif
}

static void floats_from_le(float *dst, const unsigned char *src, int dim)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (int i = 0; i < dim; i++) {
        uint32_t u = ims__get_u32(src + 4 * (size_t)i);
        memcpy(&dst[i], &u, 4);
    }
#else
    memcpy(dst, src, (size_t)dim * 4);
#endif
}

int ims_catalog_put_vectors(ims_catalog *c, const char *kind, const char *stamp, size_t n,
                            const int64_t *ids, const float *vecs, int dim, ims_error *err)
{
    IMS_ASSERT(c && kind && stamp && (ids || !n) && (vecs || !n));
    int rc = ims__cat_writable(c, err);
    if (rc)
        return rc;
    if (dim <= 0 || dim > (1 << 20))
        return ims_error_set(err, IMS_EINVAL, "put vectors: bad dim %d", dim);
    if (n == 0)
        return IMS_OK;
    size_t bytes = (size_t)dim * 4;
    unsigned char *buf = ims_malloc(bytes);
    if (!buf)
        return ims_error_set(err, IMS_ENOMEM, "put vectors: out of memory");
    int own_txn = sqlite3_get_autocommit(c->db);
    if (own_txn && (rc = ims__cat_exec(c, "BEGIN IMMEDIATE", err))) {
        ims_free(buf);
        return rc;
    }
    sqlite3_stmt *s;
    if ((rc = ims__cat_stmt(c, ST_VEC_PUT, &s, err)))
        goto done;
    for (size_t i = 0; i < n; i++) {
        floats_to_le(buf, vecs + i * (size_t)dim, dim);
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, ids[i]);
        sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, stamp, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 4, dim);
        sqlite3_bind_blob(s, 5, buf, (int)bytes, SQLITE_STATIC);
        int src = sqlite3_step(s);
        if (src != SQLITE_DONE) {
            if (src == SQLITE_CONSTRAINT_FOREIGNKEY)
                rc = ims_error_set(err, IMS_ENOTFOUND, "put vectors: item %lld does not exist",
                                   (long long)ids[i]);
            else
                rc = ims__cat_dberr(c, src, "put vectors", err);
            goto done;
        }
    }
    sqlite3_reset(s);
    if (own_txn)
        rc = ims__cat_exec(c, "COMMIT", err);
done:
    if (rc) {
        if (c->st[ST_VEC_PUT])
            sqlite3_reset(c->st[ST_VEC_PUT]);
        if (own_txn)
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    }
    ims_free(buf);
    return rc;
}

int ims_catalog_get_vectors(ims_catalog *c, const char *kind, const char *stamp, size_t n,
                            const int64_t *ids, float *vecs, int dim, ims_error *err)
{
    IMS_ASSERT(c && kind && stamp && (ids || !n) && (vecs || !n));
    if (dim <= 0)
        return ims_error_set(err, IMS_EINVAL, "get vectors: bad dim %d", dim);
    sqlite3_stmt *s;
    int rc = ims__cat_stmt(c, ST_VEC_GET, &s, err);
    if (rc)
        return rc;
    /* one read transaction: all n vectors come from the same snapshot */
    int own_txn = sqlite3_get_autocommit(c->db);
    if (own_txn && (rc = ims__cat_exec(c, "BEGIN", err)))
        return rc;
    for (size_t i = 0; i < n && rc == IMS_OK; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, ids[i]);
        sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
        int src = sqlite3_step(s);
        if (src == SQLITE_DONE) {
            rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld: no '%s' vector", (long long)ids[i],
                               kind);
        } else if (src != SQLITE_ROW) {
            rc = ims__cat_dberr(c, src, "get vectors", err);
        } else {
            const char *st = (const char *)sqlite3_column_text(s, 0);
            int d = sqlite3_column_int(s, 1);
            const void *blob = sqlite3_column_blob(s, 2);
            int nb = sqlite3_column_bytes(s, 2);
            if (!st || strcmp(st, stamp) != 0)
                rc = ims_error_set(err, IMS_ENOTFOUND,
                                   "item %lld: its '%s' vector is stale (stamp %.16s, want %.16s)",
                                   (long long)ids[i], kind, st ? st : "", stamp);
            else if (d != dim)
                rc = ims_error_set(err, IMS_ENOTFOUND,
                                   "item %lld: its '%s' vector has dim %d, want %d",
                                   (long long)ids[i], kind, d, dim);
            else if (!blob || nb != dim * 4)
                rc = ims_error_set(err, IMS_ECORRUPT, "item %lld: '%s' vector of %d bytes",
                                   (long long)ids[i], kind, nb);
            else
                floats_from_le(vecs + i * (size_t)dim, blob, dim);
        }
    }
    sqlite3_reset(s);
    if (own_txn)
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
    return rc;
}

int ims_catalog_missing_vectors(ims_catalog *c, const char *kind, const char *stamp, int64_t **ids,
                                size_t *n, ims_error *err)
{
    IMS_ASSERT(c && kind && stamp && ids && n);
    const char *const args[] = {kind, stamp};
    return ims__cat_collect_ids(c,
                                "SELECT i.id FROM items i WHERE i.status = 0 AND NOT EXISTS"
                                " (SELECT 1 FROM vectors v WHERE v.item_id = i.id"
                                " AND v.kind = ?1 AND v.stamp = ?2) ORDER BY i.id",
                                args, 2, ids, n, err);
}

int ims_catalog_drop_stale(ims_catalog *c, const char *kind, const char *stamp, int64_t *dropped,
                           ims_error *err)
{
    IMS_ASSERT(c && kind && stamp);
    if (dropped)
        *dropped = 0;
    int rc = ims__cat_writable(c, err);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    int src = sqlite3_prepare_v2(c->db, "DELETE FROM vectors WHERE kind = ?1 AND stamp <> ?2", -1,
                                 &s, NULL);
    if (src != SQLITE_OK)
        return ims__cat_dberr(c, src, "drop stale", err);
    sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, stamp, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    sqlite3_finalize(s);
    if (src != SQLITE_DONE)
        return ims__cat_dberr(c, src, "drop stale", err);
    if (dropped)
        *dropped = sqlite3_changes(c->db);
    return IMS_OK;
}
