/* SPDX-License-Identifier: MIT */
/*
 * test_catalog_db.c — the catalogue database without images: open/create,
 * schema identity and version checks (foreign, newer, non-SQLite, corrupt
 * files), settings, API add/delete, the vector store, categories.
 * Real SQLite files in a temp directory.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "imgsim/catalog.h"
#include "imgsim/imgsim.h"

static char tmp[256];

static void path_of(char *out, size_t n, const char *coll, const char *file)
{
    snprintf(out, n, "%s/%s%s%s", tmp, coll, file ? "/" : "", file ? file : "");
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

/* An SQLite database at <tmp>/<coll>/catalog.sqlite made by plain SQL. */
static void make_sqlite(const char *coll, const char *sql)
{
    char p[512];
    path_of(p, sizeof p, coll, NULL);
    mkdir(p, 0777);
    path_of(p, sizeof p, coll, "catalog.sqlite");
    sqlite3 *db;
    CHECK_EQ(sqlite3_open(p, &db), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_open_create(void)
{
    char coll[512];
    path_of(coll, sizeof coll, "a/b/new", NULL);
    ims_catalog *c = NULL;
    ims_error err;
    CHECK_RC(ims_catalog_open(coll, 0, &c, &err), IMS_ENOTFOUND);
    CHECK(c == NULL);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE | IMS_CATALOG_READONLY, &c, &err),
             IMS_EINVAL);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_OK);
    char *v = (char *)1;
    CHECK_RC(ims_catalog_get_meta(c, "k", &v, &err), IMS_OK);
    CHECK(v == NULL);
    CHECK_RC(ims_catalog_set_meta(c, "k", "one", &err), IMS_OK);
    CHECK_RC(ims_catalog_set_meta(c, "k", "two", &err), IMS_OK);
    ims_catalog_close(c);

    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_READONLY, &c, &err), IMS_OK);
    CHECK_RC(ims_catalog_get_meta(c, "k", &v, &err), IMS_OK);
    CHECK_STR_EQ(v, "two");
    ims_free(v);
    CHECK_RC(ims_catalog_set_meta(c, "k", "x", &err), IMS_ESTATE);
    ims_catalog_close(c);

    /* the file is what the header says it is */
    char p[512];
    path_of(p, sizeof p, "a/b/new", "catalog.sqlite");
    sqlite3 *db;
    CHECK_EQ(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &s, NULL);
    CHECK_EQ(sqlite3_step(s), SQLITE_ROW);
    CHECK_EQ(sqlite3_column_int(s, 0), 0x494D5343);
    sqlite3_finalize(s);
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
    CHECK_EQ(sqlite3_step(s), SQLITE_ROW);
    CHECK_EQ(sqlite3_column_int(s, 0), 1);
    sqlite3_finalize(s);
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL);
    CHECK_EQ(sqlite3_step(s), SQLITE_ROW);
    CHECK_STR_EQ((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_bad_files(void)
{
    ims_catalog *c = NULL;
    ims_error err;
    char coll[512], p[512];

    /* another application's SQLite database */
    make_sqlite("foreign", "PRAGMA application_id = 1234; CREATE TABLE t(x);");
    path_of(coll, sizeof coll, "foreign", NULL);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_EFORMAT);
    CHECK(strstr(err.msg, "not an imgsim catalogue") != NULL);
    /* application_id 0, but tables in it: still foreign */
    make_sqlite("foreign0", "CREATE TABLE t(x);");
    path_of(coll, sizeof coll, "foreign0", NULL);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_EFORMAT);
    /* ours, from the future */
    make_sqlite("newer", "PRAGMA application_id = 1229804355; PRAGMA user_version = 99;"
                         "CREATE TABLE items(id);");
    path_of(coll, sizeof coll, "newer", NULL);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_EVERSION);
    CHECK(strstr(err.msg, "v99") != NULL);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_READONLY, &c, &err), IMS_EVERSION);
    /* not SQLite at all */
    path_of(coll, sizeof coll, "text", NULL);
    mkdir(coll, 0777);
    path_of(p, sizeof p, "text", "catalog.sqlite");
    write_file(p, "hello, this is not a database at all\n", 37);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_EFORMAT);
    CHECK(strstr(err.msg, "not an SQLite database") != NULL);
    /* a catalogue file that is a directory */
    path_of(coll, sizeof coll, "dir", NULL);
    mkdir(coll, 0777);
    path_of(p, sizeof p, "dir", "catalog.sqlite");
    mkdir(p, 0777);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_EFORMAT);
    /* SQLite's magic, then garbage: corrupt */
    path_of(coll, sizeof coll, "corrupt", NULL);
    mkdir(coll, 0777);
    path_of(p, sizeof p, "corrupt", "catalog.sqlite");
    unsigned char junk[8192];
    unsigned long long seed = 7;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)check_rand_u64(&seed);
    memcpy(junk, "SQLite format 3", 16);
    write_file(p, junk, sizeof junk);
    int rc = ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err);
    CHECK_MSG(rc == IMS_ECORRUPT || rc == IMS_EFORMAT, "corrupt db: %s", ims_errname(rc));
    CHECK(c == NULL);
    /* a real catalogue with its pages overwritten past the header */
    path_of(coll, sizeof coll, "damaged", NULL);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_OK);
    int64_t id;
    CHECK_RC(ims_catalog_add(c, "abc", 3, "png", 1, 1, "x", "n", "p", NULL, &id, &err), IMS_OK);
    ims_catalog_close(c);
    path_of(p, sizeof p, "damaged", "catalog.sqlite");
    int fd = open(p, O_WRONLY);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, junk + 100, 3000, 100) == 3000);
    close(fd);
    c = NULL;
    rc = ims_catalog_open(coll, 0, &c, &err);
    if (rc == IMS_OK) { /* damage may surface on first use */
        ims_item it;
        rc = ims_catalog_get(c, id, &it, &err);
        ims_catalog_close(c);
    }
    CHECK_MSG(rc == IMS_ECORRUPT || rc == IMS_EFORMAT, "damaged db: %s", ims_errname(rc));
    /* an empty file is a new database when creating, refused read-only */
    path_of(coll, sizeof coll, "empty", NULL);
    mkdir(coll, 0777);
    path_of(p, sizeof p, "empty", "catalog.sqlite");
    write_file(p, "", 0);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_READONLY, &c, &err), IMS_EFORMAT);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_OK);
    ims_catalog_close(c);
}

static void test_items_and_vectors(void)
{
    char coll[512];
    path_of(coll, sizeof coll, "vec", NULL);
    ims_catalog *c;
    ims_error err;
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_OK);
    int64_t a, b, d, again;
    CHECK_RC(ims_catalog_add(c, "aaaa", 4, "jpeg", 10, 20, "fruit", "apple", "P1",
                             "{\"colour\":\"red\"}", &a, &err),
             IMS_OK);
    CHECK_RC(ims_catalog_add(c, "bbbb", 4, "png", 5, 5, "fruit", "pear", "P2", NULL, &b, &err),
             IMS_OK);
    CHECK_RC(ims_catalog_add(c, "cccc", 4, "webp", 5, 5, "veg", "leek", "", NULL, &d, &err),
             IMS_OK);
    CHECK_RC(ims_catalog_add(c, "aaaa", 4, "jpeg", 10, 20, "x", "y", "z", NULL, &again, &err),
             IMS_EEXIST);
    CHECK_EQ(again, a);
    CHECK_RC(ims_catalog_add(c, "eeee", 4, "bmp", 1, 1, "", "", "", NULL, &again, &err),
             IMS_EINVAL);
    CHECK_RC(ims_catalog_add(c, "eeee", 4, "png", 1, 1, "", "", "", "[1]", &again, &err),
             IMS_EINVAL);

    ims_item it;
    CHECK_RC(ims_catalog_get(c, a, &it, &err), IMS_OK);
    CHECK_STR_EQ(it.path, "upload");
    CHECK_STR_EQ(it.category, "fruit");
    CHECK_STR_EQ(it.name, "apple");
    CHECK_STR_EQ(it.product_id, "P1");
    CHECK_STR_EQ(it.metadata, "{\"colour\":\"red\"}");
    CHECK_STR_EQ(it.format, "jpeg");
    CHECK_EQ(it.width, 10);
    CHECK_EQ(it.bytes, 4);
    CHECK_EQ(it.status, IMS_ITEM_ACCEPTED);
    char want_sha[] = "61be55a8e2f6b4e172338bddf184d6dbee29c98853e0a0485ecee7f27b9af0b4";
    CHECK_STR_EQ(it.sha256, want_sha);
    ims_item_clear(&it);
    CHECK_RC(ims_catalog_get(c, 999, &it, &err), IMS_ENOTFOUND);

    int64_t found;
    CHECK_RC(ims_catalog_find_sha256(c, want_sha, &found, &err), IMS_OK);
    CHECK_EQ(found, a);
    char *path;
    CHECK_RC(ims_catalog_image_path(c, a, &path, &err), IMS_OK);
    CHECK(strstr(path, "/images/61/61be55a8") != NULL && strstr(path, ".jpg") != NULL);
    FILE *f = fopen(path, "rb");
    char got[8] = {0};
    CHECK(f && fread(got, 1, 8, f) == 4);
    if (f)
        fclose(f);
    CHECK_STR_EQ(got, "aaaa");
    ims_free(path);

    char **names;
    int64_t *counts;
    size_t n;
    CHECK_RC(ims_catalog_categories(c, &names, &counts, &n, &err), IMS_OK);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_STR_EQ(names[0], "fruit");
        CHECK_EQ(counts[0], 2);
        CHECK_STR_EQ(names[1], "veg");
    }
    ims_catalog_free_categories(names, counts, n);
    int64_t *in_cat, max_id;
    CHECK_RC(ims_catalog_ids_in_category(c, "fruit", &in_cat, &n, &err), IMS_OK);
    CHECK_EQ(n, 2);
    if (n == 2)
        CHECK(in_cat[0] == a && in_cat[1] == b);
    ims_free(in_cat);
    CHECK_RC(ims_catalog_ids_in_category(c, "none", &in_cat, &n, &err), IMS_OK);
    CHECK_EQ(n, 0);
    ims_free(in_cat);
    CHECK_RC(ims_catalog_max_id(c, &max_id, &err), IMS_OK);
    CHECK_EQ(max_id, d);

    /* vectors */
    float v[3 * 4], out[3 * 4];
    for (int i = 0; i < 12; i++)
        v[i] = (float)i * 0.5f - 1.0f;
    int64_t ids[3] = {a, b, d};
    int64_t *miss;
    CHECK_RC(ims_catalog_missing_vectors(c, "vectors", "S1", &miss, &n, &err), IMS_OK);
    CHECK_EQ(n, 3);
    ims_free(miss);
    CHECK_RC(ims_catalog_put_vectors(c, "vectors", "S1", 2, ids, v, 4, &err), IMS_OK);
    CHECK_RC(ims_catalog_missing_vectors(c, "vectors", "S1", &miss, &n, &err), IMS_OK);
    CHECK_EQ(n, 1);
    if (n == 1)
        CHECK_EQ(miss[0], d);
    ims_free(miss);
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "S1", 2, ids, out, 4, &err), IMS_OK);
    CHECK(memcmp(out, v, 8 * sizeof(float)) == 0);
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "S1", 3, ids, out, 4, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "S2", 1, ids, out, 4, &err), IMS_ENOTFOUND);
    CHECK(strstr(err.msg, "stale") != NULL);
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "S1", 1, ids, out, 3, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_get_vectors(c, "features", "S1", 1, ids, out, 4, &err), IMS_ENOTFOUND);
    /* another kind is independent */
    CHECK_RC(ims_catalog_put_vectors(c, "features", "F", 1, ids, v + 8, 4, &err), IMS_OK);
    /* replace one with a new stamp: the other S1 vector is then stale */
    CHECK_RC(ims_catalog_put_vectors(c, "vectors", "S2", 1, ids, v + 4, 4, &err), IMS_OK);
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "S2", 1, ids, out, 4, &err), IMS_OK);
    CHECK(memcmp(out, v + 4, 4 * sizeof(float)) == 0);
    int64_t dropped = -1;
    CHECK_RC(ims_catalog_drop_stale(c, "vectors", "S2", &dropped, &err), IMS_OK);
    CHECK_EQ(dropped, 1);
    CHECK_RC(ims_catalog_missing_vectors(c, "vectors", "S2", &miss, &n, &err), IMS_OK);
    CHECK_EQ(n, 2);
    ims_free(miss);
    CHECK_RC(ims_catalog_get_vectors(c, "features", "F", 1, ids, out, 4, &err), IMS_OK);
    /* a missing item: the foreign key refuses it, and nothing of the batch stays */
    int64_t bad[2] = {d, 4242};
    CHECK_RC(ims_catalog_put_vectors(c, "vectors", "S2", 2, bad, v, 4, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "S2", 1, &d, out, 4, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_put_vectors(c, "vectors", "S2", 1, &d, v, 0, &err), IMS_EINVAL);

    /* delete: vectors go, the item leaves accepted lists, twice is ENOTFOUND */
    CHECK_RC(ims_catalog_delete(c, a, &err), IMS_OK);
    CHECK_RC(ims_catalog_delete(c, a, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_delete(c, 777, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_get_vectors(c, "features", "F", 1, &a, out, 4, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_get(c, a, &it, &err), IMS_OK);
    CHECK_EQ(it.status, IMS_ITEM_DELETED);
    ims_item_clear(&it);
    CHECK_RC(ims_catalog_find_sha256(c, want_sha, &found, &err), IMS_ENOTFOUND);
    int64_t *acc;
    CHECK_RC(ims_catalog_accepted_ids(c, &acc, &n, &err), IMS_OK);
    CHECK_EQ(n, 2);
    if (n == 2)
        CHECK(acc[0] == b && acc[1] == d);
    ims_free(acc);
    /* the same image may be added again after a delete: a new item */
    CHECK_RC(
        ims_catalog_add(c, "aaaa", 4, "jpeg", 10, 20, "fruit", "apple", "P1", NULL, &again, &err),
        IMS_OK);
    CHECK(again != a);
    ims_catalog_close(c);

    /* read-only handles read vectors but write nothing */
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_READONLY, &c, &err), IMS_OK);
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "S2", 1, &b, out, 4, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_put_vectors(c, "vectors", "S2", 1, &b, v, 4, &err), IMS_ESTATE);
    CHECK_RC(ims_catalog_delete(c, b, &err), IMS_ESTATE);
    CHECK_RC(ims_catalog_drop_stale(c, "vectors", "S", NULL, &err), IMS_ESTATE);
    ims_catalog_close(c);
}

static void test_reason_names(void)
{
    CHECK_STR_EQ(ims_reject_reason_name(IMS_REJECT_TOO_BIG), "too big");
    CHECK_STR_EQ(ims_reject_reason_key(IMS_REJECT_TOO_BIG), "too_big");
    CHECK_STR_EQ(ims_reject_reason_key(IMS_REJECT_UNSUPPORTED), "unsupported");
    CHECK_STR_EQ(ims_reject_reason_name(99), "unknown");
}

int main(void)
{
    ims_init();
    snprintf(tmp, sizeof tmp, "/tmp/ims_catalog_db_XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    test_open_create();
    test_bad_files();
    test_items_and_vectors();
    test_reason_names();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmp);
    return check_report();
}
