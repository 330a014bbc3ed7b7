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
 * Reading ahead on several threads changes nothing: the sample with bad
 * files mixed in (truncated, corrupt, noise, text, one more duplicate)
 * ingested with 1, the default and 4 threads gives the same rows, store,
 * reports in the same order and summary; the default is one thread per
 * CPU (what `imgsim ingest` and `imgsim build` use without --threads).
 */
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
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

/* Every report line, in order. */
typedef struct reports {
    char *text;
    size_t len, cap;
} reports;

static void keep_report(void *ud, const char *kind, const char *path, const char *msg)
{
    reports *r = ud;
    char line[2048];
    int n = snprintf(line, sizeof line, "%s|%s|%s\n", kind, path, msg ? msg : "");
    if (r->len + (size_t)n + 1 > r->cap) {
        r->cap = (r->len + (size_t)n + 1) * 2;
        r->text = realloc(r->text, r->cap);
    }
    memcpy(r->text + r->len, line, (size_t)n + 1);
    r->len += (size_t)n;
}

/* The items table of a collection, every column but the times, as text. */
static char *dump_items(const char *coll)
{
    char path[600];
    snprintf(path, sizeof path, "%s/catalog.sqlite", coll);
    sqlite3 *db;
    sqlite3_stmt *st;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return NULL;
    if (sqlite3_prepare_v2(
            db,
            "SELECT id, origin, path, category, name, product_id, metadata, sha256,"
            " format, width, height, bytes, status, reject, reason, dup_of, src_size,"
            " src_mtime_ns, seen_run FROM items ORDER BY id",
            -1, &st, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    size_t len = 0, cap = 1 << 16;
    char *out = malloc(cap);
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const char *v = (const char *)sqlite3_column_text(st, i);
            size_t n = strlen(v ? v : "NULL") + 2;
            if (len + n + 1 > cap)
                out = realloc(out, cap = (len + n + 1) * 2);
            len += (size_t)snprintf(out + len, cap - len, "%s%c", v ? v : "NULL",
                                    i + 1 < sqlite3_column_count(st) ? '|' : '\n');
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* Write n bytes of src (from off) followed by junk bytes to path. */
static void bad_copy(const char *src, const char *path, long off_junk, long n_junk, long tail)
{
    FILE *in = fopen(src, "rb"), *out = fopen(path, "wb");
    CHECK(in && out);
    if (!in || !out)
        return;
    unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    size_t head = (size_t)off_junk < n ? (size_t)off_junk : n;
    fwrite(buf, 1, head, out);
    uint32_t x = 7;
    for (long i = 0; i < n_junk; i++)
        fputc((int)((x = x * 1103515245u + 12345u) >> 24), out);
    if (tail > 0 && (size_t)tail < n)
        fwrite(buf + n - (size_t)tail, 1, (size_t)tail, out);
    fclose(out);
}

/* The food sample plus bad files, ingested with 1, the default and 4
 * threads: the same catalogue, store, reports and summary. */
static void test_threads(const char *tmp, const char *dir)
{
    char mix[400], cmd[4096], a[500], b[500];
    snprintf(mix, sizeof mix, "%s/mix", tmp);
    snprintf(cmd, sizeof cmd, "cp -R '%s' '%s' && rm '%s/metadata.csv'", dir, mix, mix);
    CHECK_EQ(system(cmd), 0);
    snprintf(a, sizeof a, "%s/Fruits/E052.jpeg", mix);
    snprintf(b, sizeof b, "%s/Fruits/zz_truncated.jpg", mix);
    bad_copy(a, b, 5000, 0, 0);
    snprintf(b, sizeof b, "%s/Fruits/zz_corrupt.jpg", mix);
    bad_copy(a, b, 3000, 4000, 2000);
    snprintf(b, sizeof b, "%s/Marine Fish/aa_noise.jpg", mix);
    bad_copy(a, b, 0, 3000, 0);
    snprintf(b, sizeof b, "%s/Marine Fish/notes.txt", mix);
    bad_copy(a, b, 0, 0, 0);
    snprintf(cmd, sizeof cmd, "echo hello > '%s' && cp '%s' '%s/Marine Fish/dup.jpeg'", b, a, mix);
    CHECK_EQ(system(cmd), 0);

    const int threads[3] = {1, 0, 4};
    char *items[3] = {0}, *store[3] = {0};
    reports rep[3] = {{0}};
    ims_ingest_summary sum[3];
    for (int t = 0; t < 3; t++) {
        char coll[420];
        snprintf(coll, sizeof coll, "%s/mix-coll-%d", tmp, threads[t]);
        ims_catalog *c;
        ims_error err;
        ims_ingest_opts o = {.report = keep_report, .ud = &rep[t], .threads = threads[t]};
        CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_OK);
        double t0 = ims_now();
        CHECK_RC(ims_catalog_ingest(c, mix, &o, &sum[t], &err), IMS_OK);
        printf("ingest of %lld files, %d threads: %.2f s\n", (long long)sum[t].scanned,
               sum[t].threads, ims_now() - t0);
        ims_catalog_close(c);
        items[t] = dump_items(coll);
        CHECK(items[t] != NULL);
        char list[460];
        snprintf(list, sizeof list, "%s/store.txt", coll);
        snprintf(cmd, sizeof cmd, "cd '%s/images' && find . -type f | sort > '%s'", coll, list);
        CHECK_EQ(system(cmd), 0);
        size_t n;
        FILE *f = fopen(list, "rb");
        store[t] = calloc(1, 1 << 16);
        n = f ? fread(store[t], 1, (1 << 16) - 1, f) : 0;
        if (f)
            fclose(f);
        CHECK(n > 0);
    }
    CHECK_EQ(sum[0].threads, 1);
    CHECK_EQ(sum[1].threads, ims_cpu_count()); /* the default */
    CHECK_EQ(sum[2].threads, 4);
    CHECK_EQ(sum[0].scanned, 547);
    CHECK_EQ(sum[0].accepted, 463);
    CHECK_EQ(sum[0].duplicates, 80);
    CHECK_EQ(sum[0].rejected, 4);
    CHECK_EQ(sum[0].by_reason[IMS_REJECT_TRUNCATED], 1);
    CHECK_EQ(sum[0].by_reason[IMS_REJECT_CORRUPT], 1);
    CHECK_EQ(sum[0].by_reason[IMS_REJECT_UNSUPPORTED], 2);
    for (int t = 1; t < 3; t++) {
        CHECK(items[t] && items[0] && !strcmp(items[t], items[0]));
        CHECK(store[t] && store[0] && !strcmp(store[t], store[0]));
        CHECK(rep[t].text && rep[0].text && !strcmp(rep[t].text, rep[0].text));
        sum[t].threads = sum[0].threads;
        CHECK(!memcmp(&sum[t], &sum[0], sizeof sum[0]));
    }
    CHECK(rep[0].text && strstr(rep[0].text, "rejected|Fruits/zz_truncated.jpg|truncated: "));
    CHECK(rep[0].text && strstr(rep[0].text, "rejected|Fruits/zz_corrupt.jpg|corrupt: "));
    CHECK(rep[0].text && strstr(rep[0].text, "duplicate|Marine Fish/dup.jpeg|same content as"));
    for (int t = 0; t < 3; t++) {
        free(items[t]);
        free(store[t]);
        free(rep[t].text);
    }
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

    test_threads(tmp, dir);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmp);
    return check_report();
}
