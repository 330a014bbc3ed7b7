/* SPDX-License-Identifier: MIT */
/*
 * test_catalog_food.c — ingest of the whole sample set (data/food: 542
 * photos in 20 group folders, 96 byte-identical files in 17 clusters, plus
 * metadata.csv joined by the `code` column on the file stem), on a copy in
 * a temp dir so the shared assets are never linked or touched.
 * Expected: 542 - 96 + 17 = 463 accepted, 79 duplicates, nothing
 * rejected, every row and image matched, 20 categories; a re-run is all
 * unchanged. A run killed (SIGKILL) in its second batch leaves the first
 * 256 files committed and an intact database; the re-run completes it.
 */
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "imgsim/catalog.h"
#include "imgsim/imgsim.h"

/* Progress callback of the crashing child. */
static void die_at_300(void *ud, int64_t done, int64_t total)
{
    (void)ud, (void)total;
    if (done == 300)
        raise(SIGKILL);
}

int main(void)
{
    ims_init();
    const char *data = getenv("IMS_DATA_DIR");
    char food[512], csv[600], cmd[2048], tmp[256], dir[300], coll[300];
    snprintf(food, sizeof food, "%s/food", data ? data : "data");
    snprintf(csv, sizeof csv, "%s/metadata.csv", food);
    if (access(csv, R_OK) != 0)
        return check_skip("data/food/metadata.csv (scripts/fetch-sample-data) not found");
    snprintf(tmp, sizeof tmp, "/tmp/ims_catalog_food_XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(dir, sizeof dir, "%s/food", tmp);
    snprintf(coll, sizeof coll, "%s/coll", tmp);
    snprintf(cmd, sizeof cmd, "cp -R '%s/' '%s'", food, dir);
    CHECK_EQ(system(cmd), 0);
    snprintf(csv, sizeof csv, "%s/metadata.csv", dir);

    ims_catalog *c;
    ims_error err;
    ims_ingest_opts o = {.metadata_csv = csv, .id_column = "code"};
    ims_ingest_summary s;

    /* a crash (SIGKILL) in the second batch: the first batch stays whole */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        ims_ingest_opts oc = o;
        oc.progress = die_at_300;
        if (ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err) == IMS_OK)
            ims_catalog_ingest(c, dir, &oc, &s, &err);
        _exit(3); /* not reached */
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
    char db_path[400];
    snprintf(db_path, sizeof db_path, "%s/catalog.sqlite", coll);
    sqlite3 *db;
    CHECK_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    CHECK_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    CHECK_EQ(sqlite3_step(st), SQLITE_ROW);
    CHECK_STR_EQ((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    CHECK_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM items", -1, &st, NULL), SQLITE_OK);
    CHECK_EQ(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ(sqlite3_column_int(st, 0), 256); /* BATCH_FILES */
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* the re-run finishes the job */
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_OK);
    double t0 = ims_now();
    CHECK_RC(ims_catalog_ingest(c, dir, &o, &s, &err), IMS_OK);
    printf("resumed ingest of %lld files: %.2f s\n", (long long)s.scanned, ims_now() - t0);
    CHECK_EQ(s.scanned, 542); /* metadata.csv itself is left out */
    CHECK_EQ(s.unchanged, 256);
    CHECK_EQ(s.accepted + s.duplicates, 542 - 256);
    CHECK_EQ(s.rejected, 0);
    CHECK_EQ(s.csv_rows, 542);
    CHECK_EQ(s.rows_without_image, 0);
    CHECK_EQ(s.images_without_row, 0);
    CHECK_EQ(s.total_accepted, 463);
    ims_catalog_close(c);
    CHECK_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    CHECK_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM items WHERE status = 1", -1, &st, NULL),
             SQLITE_OK);
    CHECK_EQ(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ(sqlite3_column_int(st, 0), 79);
    sqlite3_finalize(st);
    sqlite3_close(db);
    snprintf(cmd, sizeof cmd, "test $(find '%s/images' -type f | wc -l) = 463", coll);
    CHECK_MSG(system(cmd) == 0, "the store should hold 463 files");

    /* a fresh collection in one go */
    snprintf(coll, sizeof coll, "%s/coll2", tmp);
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_OK);
    t0 = ims_now();
    CHECK_RC(ims_catalog_ingest(c, dir, &o, &s, &err), IMS_OK);
    printf("ingest of %lld files: %.2f s\n", (long long)s.scanned, ims_now() - t0);
    CHECK_EQ(s.accepted, 463);
    CHECK_EQ(s.duplicates, 79);
    CHECK_EQ(s.rejected, 0);

    char **names;
    int64_t *counts;
    size_t n;
    CHECK_RC(ims_catalog_categories(c, &names, &counts, &n, &err), IMS_OK);
    CHECK_EQ(n, 20);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += counts[i];
    CHECK_EQ(total, 463);
    ims_catalog_free_categories(names, counts, n);

    int64_t *ids;
    CHECK_RC(ims_catalog_accepted_ids(c, &ids, &n, &err), IMS_OK);
    CHECK_EQ(n, 463);
    ims_item it;
    CHECK_RC(ims_catalog_get(c, ids[0], &it, &err), IMS_OK);
    CHECK(it.product_id[0] != '\0' && strstr(it.metadata, "\"code\":") != NULL);
    CHECK(it.width == 307 && it.height == 173);
    ims_item_clear(&it);
    ims_free(ids);

    CHECK_RC(ims_catalog_ingest(c, dir, &o, &s, &err), IMS_OK);
    CHECK_EQ(s.unchanged, 542);
    CHECK_EQ(s.accepted + s.duplicates + s.rejected + s.vanished, 0);
    ims_catalog_close(c);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmp);
    return check_report();
}
