/* SPDX-License-Identifier: MIT */
/*
 * test_catalog_ingest.c — ingest end to end through the library on a
 * crafted folder: real sample photos (copied), an exact duplicate, a
 * symlink inside DIR, bad files (truncated and corrupt JPEGs, random
 * bytes, a .txt, a PNG header claiming 100000x100000, symlinks to
 * /etc/passwd and to /etc, a FIFO), a hidden file, and a CSV with RFC 4180 quirks
 * joined by file name; then a malformed CSV (nothing imported), and a
 * re-run with changed, touched, vanished and new files.
 */
#include <dirent.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"
#include "core/core_int.h"
#include "imgsim/catalog.h"
#include "imgsim/image.h"
#include "imgsim/imgsim.h"

static char tmp[256], src[300], coll[300];

/* ---- files ---- */
static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* Write via temp + rename: a new inode, as editors do (the store may hold
 * a hard link of the old file). */
static void put(const char *rel, const void *p, size_t n)
{
    char path[600], t[620], dir[600];
    snprintf(path, sizeof path, "%s/%s", src, rel);
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + strlen(src) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        mkdir(dir, 0777);
        *s = '/';
    }
    snprintf(t, sizeof t, "%s.new", path);
    FILE *f = fopen(t, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
    CHECK(rename(t, path) == 0);
}

static void put_str(const char *rel, const char *s) { put(rel, s, strlen(s)); }

static void link_to(const char *target, const char *rel)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", src, rel);
    CHECK(symlink(target, path) == 0);
}

static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return ~c;
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* A PNG whose IHDR claims 100000 x 100000 RGB: a decompression bomb header. */
static void put_png_bomb(const char *rel)
{
    unsigned char b[8 + 25 + 12 + 12];
    memcpy(b, "\x89PNG\r\n\x1a\n", 8);
    be32(b + 8, 13);
    memcpy(b + 12, "IHDR", 4);
    be32(b + 16, 100000);
    be32(b + 20, 100000);
    b[24] = 8, b[25] = 2, b[26] = 0, b[27] = 0, b[28] = 0;
    be32(b + 29, crc32_png(b + 12, 17));
    be32(b + 33, 0); /* an empty IDAT */
    memcpy(b + 37, "IDAT", 4);
    be32(b + 41, crc32_png(b + 37, 4));
    be32(b + 45, 0);
    memcpy(b + 49, "IEND", 4);
    be32(b + 53, crc32_png(b + 49, 4));
    put(rel, b, sizeof b);
}

/* n distinct sample photos (by content) from <food>/<group>/ folders. */
static int pick_photos(const char *food, int n, unsigned char **bytes, size_t *len)
{
    char seen[64][65];
    int got = 0;
    DIR *d = opendir(food);
    struct dirent *g;
    while (d && got < n && (g = readdir(d))) {
        if (g->d_name[0] == '.')
            continue;
        char gp[1024];
        snprintf(gp, sizeof gp, "%s/%s", food, g->d_name);
        DIR *e = opendir(gp);
        struct dirent *f;
        int per_group = 0;
        while (e && got < n && per_group < 2 && (f = readdir(e))) {
            if (!strstr(f->d_name, ".jpeg"))
                continue;
            char fp[1400];
            snprintf(fp, sizeof fp, "%s/%s", gp, f->d_name);
            size_t l;
            unsigned char *b = slurp(fp, &l);
            if (!b)
                continue;
            char h[65];
            ims__sha256_hex(b, l, h);
            int dup = 0;
            for (int i = 0; i < got; i++)
                dup |= !strcmp(seen[i], h);
            if (dup) {
                free(b);
                continue;
            }
            memcpy(seen[got], h, 65);
            bytes[got] = b, len[got] = l, got++, per_group++;
        }
        if (e)
            closedir(e);
    }
    if (d)
        closedir(d);
    return got;
}

/* ---- catalogue probes (straight SQL on the file) ---- */
static int64_t sql_int(const char *sql, const char *arg)
{
    char p[400];
    snprintf(p, sizeof p, "%s/catalog.sqlite", coll);
    sqlite3 *db;
    int64_t v = -1;
    if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
        if (arg)
            sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW)
            v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return v;
}

static int64_t id_of(const char *rel)
{
    return sql_int("SELECT id FROM items WHERE origin = 0 AND path = ?1", rel);
}

typedef struct reports {
    int n;
    char lines[64][400];
} reports;

static void on_report(void *ud, const char *kind, const char *path, const char *msg)
{
    reports *r = ud;
    if (r->n < 64)
        snprintf(r->lines[r->n++], sizeof r->lines[0], "%s|%s|%s", kind, path, msg);
}

static int reported(const reports *r, const char *kind, const char *path)
{
    char want[300];
    snprintf(want, sizeof want, "%s|%s|", kind, path);
    for (int i = 0; i < r->n; i++)
        if (!strncmp(r->lines[i], want, strlen(want)))
            return 1;
    return 0;
}

static void check_item(ims_catalog *c, const char *rel, int status, const char *category,
                       const char *name, const char *pid)
{
    ims_item it;
    ims_error err;
    int64_t id = id_of(rel);
    CHECK_MSG(id > 0, "%s: no row", rel);
    if (ims_catalog_get(c, id, &it, &err) != IMS_OK) {
        CHECK_MSG(0, "%s: %s", rel, err.msg);
        return;
    }
    CHECK_MSG(it.status == status, "%s: status %d, want %d (%s)", rel, it.status, status,
              it.reason);
    if (category)
        CHECK_STR_EQ(it.category, category);
    if (name)
        CHECK_STR_EQ(it.name, name);
    if (pid)
        CHECK_STR_EQ(it.product_id, pid);
    ims_item_clear(&it);
}

static void check_rejected(ims_catalog *c, const char *rel, const char *reason)
{
    ims_item it;
    int64_t id = id_of(rel);
    CHECK_MSG(id > 0, "%s: no row", rel);
    if (ims_catalog_get(c, id, &it, NULL) != IMS_OK)
        return;
    CHECK_MSG(it.status == IMS_ITEM_REJECTED, "%s: status %d", rel, it.status);
    CHECK_MSG(strncmp(it.reason, reason, strlen(reason)) == 0, "%s: reason '%s', want '%s...'", rel,
              it.reason, reason);
    ims_item_clear(&it);
}

static const char good_csv[] = "\xEF\xBB\xBF"
                               "file,sku,name,description\r\n"
                               "p1.jpeg,S1,\"Apple, red\",\"crisp\r\nand sweet\"\r\n"
                               "B/p3.jpeg,S3,Pear,plain\r\n"
                               "./top.jpeg,S5,Top,\"a \"\"quoted\"\" word\"\r\n"
                               "ghost.jpeg,S9,Ghost,no such file\r\n";

static void build_tree(unsigned char **ph, size_t *pl)
{
    put("A/p1.jpeg", ph[0], pl[0]);
    put("A/p2.jpeg", ph[1], pl[1]);
    put("B/p3.jpeg", ph[2], pl[2]);
    put("B/sub/p4.jpeg", ph[3], pl[3]);
    put("top.jpeg", ph[4], pl[4]);
    put("A/z_dup.jpeg", ph[0], pl[0]);
    put(".hidden.jpeg", ph[5], pl[5]);
    put("bad/truncated.jpeg", ph[5], pl[5] / 2);
    unsigned char *cj = malloc(pl[5]);
    memcpy(cj, ph[5], pl[5]);
    unsigned long long seed = 99;
    for (size_t i = pl[5] / 3; i < pl[5] / 3 + 3000 && i + 2 < pl[5]; i++)
        cj[i] = (unsigned char)check_rand_u64(&seed);
    put("bad/corrupt.jpeg", cj, pl[5]);
    free(cj);
    unsigned char rnd[4096];
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (unsigned char)check_rand_u64(&seed);
    put("bad/random.jpg", rnd, sizeof rnd);
    put_str("bad/notes.txt", "just some notes\n");
    put_png_bomb("bad/bomb.png");
    link_to("/etc/passwd", "bad/passwd.jpg");
    link_to("/etc", "bad/etc");
    link_to("A/p2.jpeg", "link_in.jpeg");
    char fifo[600];
    snprintf(fifo, sizeof fifo, "%s/bad/fifo.jpeg", src);
    CHECK(mkfifo(fifo, 0644) == 0); /* must be refused, never opened (it would block) */
    char csv[600];
    snprintf(csv, sizeof csv, "%s/meta.csv", tmp);
    FILE *f = fopen(csv, "wb");
    fwrite(good_csv, 1, sizeof good_csv - 1, f);
    fclose(f);
}

/* Ingest's decode check against the full decode on the tree's files: the
 * same code and message, or the same size and format. */
static void test_check_agrees(void)
{
    static const char *const rel[] = {"A/p1.jpeg",          "B/sub/p4.jpeg",    "top.jpeg",
                                      "bad/truncated.jpeg", "bad/corrupt.jpeg", "bad/random.jpg",
                                      "bad/bomb.png",       "bad/notes.txt"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", src, rel[i]);
        size_t n = 0;
        unsigned char *b = slurp(path, &n);
        CHECK(b != NULL);
        if (!b)
            continue;
        ims_image *img = NULL;
        ims_image_info info;
        ims_error e1, e2;
        int rc = ims_image_load_memory(b, n, NULL, &img, &e1);
        int rc_check = ims_image_check_memory(b, n, NULL, &info, &e2);
        CHECK_MSG(rc == rc_check, "%s: load %s, check %s", rel[i], ims_errname(rc),
                  ims_errname(rc_check));
        if (rc && rc_check)
            CHECK_STR_EQ(e2.msg, e1.msg);
        if (!rc && !rc_check)
            CHECK(info.width == img->width && info.height == img->height);
        ims_image_free(img);
        free(b);
    }
}

static void test_first_run(ims_catalog *c)
{
    char csv[600];
    snprintf(csv, sizeof csv, "%s/meta.csv", tmp);
    reports rep = {0};
    ims_ingest_opts o = {.metadata_csv = csv,
                         .file_column = "file",
                         .id_column = "sku",
                         .report = on_report,
                         .ud = &rep};
    ims_ingest_summary s;
    ims_error err;
    CHECK_RC(ims_catalog_ingest(c, src, &o, &s, &err), IMS_OK);
    CHECK_EQ(s.scanned, 15);
    CHECK_EQ(s.accepted, 5);
    CHECK_EQ(s.duplicates, 2);
    CHECK_EQ(s.rejected, 8);
    CHECK_EQ(s.by_reason[IMS_REJECT_TRUNCATED], 1);
    CHECK_EQ(s.by_reason[IMS_REJECT_CORRUPT], 1);
    CHECK_EQ(s.by_reason[IMS_REJECT_UNSUPPORTED], 2);
    CHECK_EQ(s.by_reason[IMS_REJECT_TOO_BIG], 1);
    CHECK_EQ(s.by_reason[IMS_REJECT_OUTSIDE], 2);
    CHECK_EQ(s.by_reason[IMS_REJECT_UNREADABLE], 1); /* the FIFO */
    CHECK_EQ(s.unchanged, 0);
    CHECK_EQ(s.vanished, 0);
    CHECK_EQ(s.csv_rows, 4);
    CHECK_EQ(s.rows_without_image, 1);
    CHECK_EQ(s.images_without_row, 4);
    CHECK_EQ(s.total_accepted, 5);
    CHECK(reported(&rep, "row_without_image", "ghost.jpeg"));
    CHECK(reported(&rep, "image_without_row", "A/p2.jpeg"));
    CHECK(reported(&rep, "duplicate", "A/z_dup.jpeg"));
    CHECK(reported(&rep, "rejected", "bad/passwd.jpg"));
    for (int i = 0; i < rep.n; i++)
        if (getenv("IMS_TEST_VERBOSE"))
            fprintf(stderr, "report: %s\n", rep.lines[i]);

    check_item(c, "A/p1.jpeg", IMS_ITEM_ACCEPTED, "A", "Apple, red", "S1");
    check_item(c, "A/p2.jpeg", IMS_ITEM_ACCEPTED, "A", "p2", "");
    check_item(c, "B/p3.jpeg", IMS_ITEM_ACCEPTED, "B", "Pear", "S3");
    check_item(c, "B/sub/p4.jpeg", IMS_ITEM_ACCEPTED, "B", "p4", "");
    check_item(c, "top.jpeg", IMS_ITEM_ACCEPTED, "", "Top", "S5");
    check_item(c, "A/z_dup.jpeg", IMS_ITEM_DUPLICATE, "A", NULL, NULL);
    check_item(c, "link_in.jpeg", IMS_ITEM_DUPLICATE, "", NULL, NULL);
    check_rejected(c, "bad/truncated.jpeg", "truncated");
    check_rejected(c, "bad/corrupt.jpeg", "corrupt");
    check_rejected(c, "bad/random.jpg", "unsupported format");
    check_rejected(c, "bad/notes.txt", "unsupported format");
    check_rejected(c, "bad/bomb.png", "too big");
    check_rejected(c, "bad/passwd.jpg", "outside the directory");
    check_rejected(c, "bad/etc", "outside the directory");
    check_rejected(c, "bad/fifo.jpeg", "unreadable");
    CHECK_EQ(id_of(".hidden.jpeg"), -1);

    ims_item it;
    CHECK_RC(ims_catalog_get(c, id_of("A/z_dup.jpeg"), &it, &err), IMS_OK);
    CHECK_EQ(it.dup_of, id_of("A/p1.jpeg"));
    ims_item_clear(&it);
    CHECK_RC(ims_catalog_get(c, id_of("link_in.jpeg"), &it, &err), IMS_OK);
    CHECK_EQ(it.dup_of, id_of("A/p2.jpeg"));
    ims_item_clear(&it);
    CHECK_RC(ims_catalog_get(c, id_of("A/p1.jpeg"), &it, &err), IMS_OK);
    CHECK_STR_EQ(it.metadata, "{\"file\":\"p1.jpeg\",\"sku\":\"S1\",\"name\":\"Apple, red\","
                              "\"description\":\"crisp\\r\\nand sweet\"}");
    CHECK_STR_EQ(it.format, "jpeg");
    CHECK(it.width > 0 && it.height > 0 && it.bytes > 0);
    char *path;
    CHECK_RC(ims_catalog_image_path(c, it.id, &path, &err), IMS_OK);
    size_t n;
    unsigned char *b = slurp(path, &n);
    char h[65] = "";
    if (b)
        ims__sha256_hex(b, n, h);
    CHECK_STR_EQ(h, it.sha256);
    free(b);
    ims_free(path);
    ims_item_clear(&it);
    CHECK_RC(ims_catalog_image_path(c, id_of("bad/passwd.jpg"), &path, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_get(c, id_of("top.jpeg"), &it, &err), IMS_OK);
    CHECK(strstr(it.metadata, "\"a \\\"quoted\\\" word\"") != NULL);
    ims_item_clear(&it);

    char **names;
    int64_t *counts;
    CHECK_RC(ims_catalog_categories(c, &names, &counts, &n, &err), IMS_OK);
    CHECK_EQ(n, 3); /* "", "A", "B" */
    if (n == 3) {
        CHECK_STR_EQ(names[0], "");
        CHECK_STR_EQ(names[1], "A");
        CHECK_EQ(counts[1], 2);
        CHECK_EQ(counts[2], 2);
    }
    ims_catalog_free_categories(names, counts, n);
}

/* A malformed CSV: IMS_EFORMAT naming the line, and nothing written. */
static void test_bad_csv(ims_catalog *c)
{
    char csv[600];
    snprintf(csv, sizeof csv, "%s/bad.csv", tmp);
    FILE *f = fopen(csv, "wb");
    fputs("file,sku,name\np1.jpeg,S1,ok\nnew.jpeg,S2,\"never closed\nmore,text,here\n", f);
    fclose(f);
    put("C/new.jpeg", "x", 1); /* would be ingested if anything were */
    int64_t items = sql_int("SELECT count(*) FROM items", NULL);
    int64_t run = sql_int("SELECT value FROM meta WHERE key = 'ingest_run'", NULL);
    ims_ingest_opts o = {.metadata_csv = csv, .file_column = "file"};
    ims_ingest_summary s;
    ims_error err;
    CHECK_RC(ims_catalog_ingest(c, src, &o, &s, &err), IMS_EFORMAT);
    CHECK_MSG(strstr(err.msg, "line 3") && strstr(err.msg, "bad.csv"), "msg: %s", err.msg);
    CHECK_EQ(sql_int("SELECT count(*) FROM items", NULL), items);
    CHECK_EQ(sql_int("SELECT value FROM meta WHERE key = 'ingest_run'", NULL), run);
    CHECK_EQ(id_of("C/new.jpeg"), -1);

    /* a missing column, an ambiguous key, no key column at all */
    char good[600];
    snprintf(good, sizeof good, "%s/meta.csv", tmp);
    o.metadata_csv = good;
    o.file_column = "nope";
    CHECK_RC(ims_catalog_ingest(c, src, &o, &s, &err), IMS_EFORMAT);
    CHECK(strstr(err.msg, "no column 'nope'") != NULL);
    f = fopen(csv, "wb");
    fputs("file,sku\na.jpeg,1\nb.jpeg,2\na.jpeg,3\n", f);
    fclose(f);
    o.metadata_csv = csv;
    o.file_column = "file";
    CHECK_RC(ims_catalog_ingest(c, src, &o, &s, &err), IMS_EFORMAT);
    CHECK_MSG(strstr(err.msg, "line 4") && strstr(err.msg, "duplicate"), "msg: %s", err.msg);
    o.file_column = NULL;
    CHECK_RC(ims_catalog_ingest(c, src, &o, &s, &err), IMS_EINVAL);
    CHECK_EQ(sql_int("SELECT count(*) FROM items", NULL), items);
    /* a missing DIR */
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/nodir", tmp);
    CHECK_RC(ims_catalog_ingest(c, nodir, NULL, &s, &err), IMS_EIO);
    char p[600];
    snprintf(p, sizeof p, "%s/C/new.jpeg", src);
    unlink(p);
    snprintf(p, sizeof p, "%s/C", src);
    rmdir(p);
}

typedef struct reader {
    ims_catalog *c; /* a second, read-only handle */
    int calls, failures;
    size_t last_n;
} reader;

/* Progress callback: read through the other handle mid-batch. */
static void read_during_batch(void *ud, int64_t done, int64_t total)
{
    reader *r = ud;
    int64_t *ids;
    size_t n;
    (void)done, (void)total;
    r->calls++;
    if (ims_catalog_accepted_ids(r->c, &ids, &n, NULL) != IMS_OK) {
        r->failures++;
        return;
    }
    r->last_n = n;
    ims_free(ids);
}

static void test_rerun(ims_catalog *c, unsigned char **ph, size_t *pl)
{
    char csv[600];
    snprintf(csv, sizeof csv, "%s/meta.csv", tmp);
    ims_ingest_opts o = {.metadata_csv = csv, .file_column = "file", .id_column = "sku"};
    ims_ingest_summary s;
    ims_error err;
    CHECK_RC(ims_catalog_ingest(c, src, &o, &s, &err), IMS_OK);
    CHECK_EQ(s.scanned, 15);
    CHECK_EQ(s.unchanged, 15);
    CHECK_EQ(s.accepted + s.duplicates + s.rejected + s.vanished, 0);
    CHECK_EQ(s.images_without_row, 4);
    CHECK_EQ(s.rows_without_image, 1);

    int64_t p1 = id_of("A/p1.jpeg"), p2 = id_of("A/p2.jpeg"), p3 = id_of("B/p3.jpeg");
    int64_t ids[3] = {p1, p2, p3};
    float v[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, out[4];
    CHECK_RC(ims_catalog_put_vectors(c, "vectors", "E", 3, ids, v, 4, &err), IMS_OK);

    /* changed (new inode), touched (same bytes), gone x2, new */
    put("A/p2.jpeg", ph[5], pl[5]);
    char p[600];
    snprintf(p, sizeof p, "%s/B/p3.jpeg", src);
    struct timeval tv[2] = {{1000000000, 0}, {1000000000, 0}};
    CHECK(utimes(p, tv) == 0);
    snprintf(p, sizeof p, "%s/B/sub/p4.jpeg", src);
    CHECK(unlink(p) == 0);
    snprintf(p, sizeof p, "%s/A/p1.jpeg", src);
    CHECK(unlink(p) == 0);
    put("C/new.jpeg", ph[6], pl[6]);

    reports rep = {0};
    ims_ingest_opts o2 = {.report = on_report, .ud = &rep}; /* no CSV: metadata kept */
    CHECK_RC(ims_catalog_ingest(c, src, &o2, &s, &err), IMS_OK);
    CHECK_EQ(s.scanned, 14);
    CHECK_EQ(s.accepted, 2);   /* A/p2 (changed), C/new */
    CHECK_EQ(s.duplicates, 1); /* link_in.jpeg follows p2's new bytes */
    CHECK_EQ(s.vanished, 2);
    CHECK_EQ(s.unchanged, 11);
    CHECK_EQ(s.rejected, 0);
    CHECK_EQ(s.total_accepted, 5); /* p2, p3, top, new, z_dup promoted */
    CHECK(reported(&rep, "vanished", "A/p1.jpeg"));
    CHECK(reported(&rep, "vanished", "B/sub/p4.jpeg"));

    CHECK_EQ(id_of("A/p2.jpeg"), p2); /* same item, new content, vectors dropped */
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "E", 1, &p2, out, 4, &err), IMS_ENOTFOUND);
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "E", 1, &p3, out, 4, &err), IMS_OK);
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "E", 1, &p1, out, 4, &err), IMS_ENOTFOUND);
    char h[65];
    ims__sha256_hex(ph[5], pl[5], h);
    ims_item it;
    CHECK_RC(ims_catalog_get(c, p2, &it, &err), IMS_OK);
    CHECK_STR_EQ(it.sha256, h);
    CHECK_EQ(it.status, IMS_ITEM_ACCEPTED);
    ims_item_clear(&it);
    check_item(c, "A/p1.jpeg", IMS_ITEM_VANISHED, NULL, NULL, NULL);
    check_item(c, "B/sub/p4.jpeg", IMS_ITEM_VANISHED, NULL, NULL, NULL);
    check_item(c, "A/z_dup.jpeg", IMS_ITEM_ACCEPTED, "A", NULL, NULL);
    check_item(c, "B/p3.jpeg", IMS_ITEM_ACCEPTED, "B", "Pear", "S3"); /* metadata kept */
    check_item(c, "C/new.jpeg", IMS_ITEM_ACCEPTED, "C", "new", "");
    CHECK_RC(ims_catalog_get(c, id_of("link_in.jpeg"), &it, &err), IMS_OK);
    CHECK_EQ(it.dup_of, p2);
    ims_item_clear(&it);
    int64_t *miss;
    size_t n;
    CHECK_RC(ims_catalog_missing_vectors(c, "vectors", "E", &miss, &n, &err), IMS_OK);
    CHECK_EQ(n, 4); /* all accepted but p3 */
    ims_free(miss);

    /* a vanished file that comes back is the same item again */
    put("B/sub/p4.jpeg", ph[3], pl[3]);
    int64_t p4 = id_of("B/sub/p4.jpeg");
    CHECK_RC(ims_catalog_ingest(c, src, NULL, &s, &err), IMS_OK);
    CHECK_EQ(s.accepted, 1);
    CHECK_EQ(id_of("B/sub/p4.jpeg"), p4);
    check_item(c, "B/sub/p4.jpeg", IMS_ITEM_ACCEPTED, "B", "p4", "");

    /* a changed CSV row updates an unchanged file's metadata */
    char csv2[600];
    snprintf(csv2, sizeof csv2, "%s/meta2.csv", tmp);
    FILE *f = fopen(csv2, "wb");
    fputs("file,sku,name\nB/p3.jpeg,S3b,Pear (new)\n", f);
    fclose(f);
    ims_ingest_opts o3 = {.metadata_csv = csv2, .file_column = "file", .id_column = "sku"};
    CHECK_RC(ims_catalog_ingest(c, src, &o3, &s, &err), IMS_OK);
    CHECK_EQ(s.accepted, 0);
    CHECK_EQ(s.unchanged, s.scanned);
    check_item(c, "B/p3.jpeg", IMS_ITEM_ACCEPTED, "B", "Pear (new)", "S3b");
    check_item(c, "top.jpeg", IMS_ITEM_ACCEPTED, "", "top", ""); /* row gone: defaults */
    CHECK_RC(ims_catalog_get_vectors(c, "vectors", "E", 1, &p3, out, 4, &err), IMS_OK);

    /* a deleted item stays deleted while its file is unchanged */
    CHECK_RC(ims_catalog_delete(c, p4, &err), IMS_OK);
    CHECK_RC(ims_catalog_ingest(c, src, NULL, &s, &err), IMS_OK);
    CHECK_EQ(s.accepted, 0);
    check_item(c, "B/sub/p4.jpeg", IMS_ITEM_DELETED, NULL, NULL, NULL);

    /* WAL: a second handle reads the last committed state while this one
     * is inside an ingest batch (the progress callback runs in it) */
    put("D/late.jpeg", ph[7], pl[7]);
    reader rd = {0};
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_READONLY, &rd.c, &err), IMS_OK);
    ims_ingest_opts o4 = {.progress = read_during_batch, .ud = &rd};
    CHECK_RC(ims_catalog_ingest(c, src, &o4, &s, &err), IMS_OK);
    CHECK_EQ(s.accepted, 1);
    CHECK_EQ(rd.calls, s.scanned);
    CHECK_EQ(rd.failures, 0);
    CHECK_EQ(rd.last_n, 5); /* D/late.jpeg is not visible until the batch commits */
    int64_t *acc;
    CHECK_RC(ims_catalog_accepted_ids(rd.c, &acc, &n, &err), IMS_OK);
    CHECK_EQ(n, 6);
    ims_free(acc);
    ims_catalog_close(rd.c);

    /* the kept file of a duplicate rewritten in place (same inode, which
     * the store may share through a hard link): the promoted duplicate
     * still gets its original bytes from the store */
    put("E/k.jpeg", ph[8], pl[8]);
    put("E/kdup.jpeg", ph[8], pl[8]);
    CHECK_RC(ims_catalog_ingest(c, src, NULL, &s, &err), IMS_OK);
    CHECK_EQ(s.accepted, 1);
    CHECK_EQ(s.duplicates, 1);
    snprintf(p, sizeof p, "%s/E/k.jpeg", src);
    f = fopen(p, "r+b");
    CHECK(f != NULL);
    if (f) {
        CHECK(fwrite(ph[9], 1, pl[9], f) == pl[9]);
        CHECK(ftruncate(fileno(f), (off_t)pl[9]) == 0);
        fclose(f);
    }
    struct timeval tv2[2] = {{1100000000, 0}, {1100000000, 0}};
    CHECK(utimes(p, tv2) == 0);
    CHECK_RC(ims_catalog_ingest(c, src, NULL, &s, &err), IMS_OK);
    CHECK_EQ(s.accepted, 1);
    check_item(c, "E/kdup.jpeg", IMS_ITEM_ACCEPTED, "E", NULL, NULL);
    const char *names2[2] = {"E/k.jpeg", "E/kdup.jpeg"};
    const int which[2] = {9, 8};
    for (int i = 0; i < 2; i++) {
        char *img;
        CHECK_RC(ims_catalog_image_path(c, id_of(names2[i]), &img, &err), IMS_OK);
        size_t nb = 0;
        unsigned char *b = img ? slurp(img, &nb) : NULL;
        char got_h[65] = "", want_h[65];
        if (b)
            ims__sha256_hex(b, nb, got_h);
        ims__sha256_hex(ph[which[i]], pl[which[i]], want_h);
        CHECK_MSG(!strcmp(got_h, want_h), "%s: stored image has the wrong bytes", names2[i]);
        free(b);
        ims_free(img);
    }
}

/* File and folder names that are not UTF-8: the item's category and name
 * are scrubbed to text ('?' for each bad byte), the file is still found
 * and a re-run sees it unchanged. */
static void test_non_utf8_names(const unsigned char *photo, size_t len)
{
    char dir[600], c2[600];
    snprintf(dir, sizeof dir, "%s/u8src", tmp);
    snprintf(c2, sizeof c2, "%s/u8coll", tmp);
    mkdir(dir, 0777);
    char sub[700], file[800];
    snprintf(sub, sizeof sub, "%s/caf\xe9", dir);
    mkdir(sub, 0777);
    snprintf(file, sizeof file, "%s/x\xff\xc0.jpeg", sub);
    FILE *f = fopen(file, "wb");
    CHECK(f && fwrite(photo, 1, len, f) == len);
    if (f)
        fclose(f);
    ims_catalog *c;
    ims_error err;
    CHECK_RC(ims_catalog_open(c2, IMS_CATALOG_CREATE, &c, &err), IMS_OK);
    for (int run = 0; run < 2; run++) {
        ims_ingest_summary sum;
        CHECK_RC(ims_catalog_ingest(c, dir, NULL, &sum, &err), IMS_OK);
        CHECK_EQ(sum.accepted, run ? 0 : 1);
        CHECK_EQ(sum.unchanged, run ? 1 : 0);
        CHECK_EQ(sum.total_accepted, 1);
    }
    ims_item it;
    CHECK_RC(ims_catalog_get(c, 1, &it, &err), IMS_OK);
    CHECK_STR_EQ(it.category, "caf?");
    CHECK_STR_EQ(it.name, "x??");
    CHECK_STR_EQ(it.path, "caf\xe9/x\xff\xc0.jpeg");
    ims_item_clear(&it);
    ims_catalog_close(c);
}

int main(void)
{
    ims_init();
    const char *data = getenv("IMS_DATA_DIR");
    char food[512];
    snprintf(food, sizeof food, "%s/food", data ? data : "data");
    unsigned char *ph[10];
    size_t pl[10];
    int got = pick_photos(food, 10, ph, pl);
    if (got < 10)
        return check_skip("sample photos (scripts/fetch-sample-data) not found");
    snprintf(tmp, sizeof tmp, "/tmp/ims_catalog_ingest_XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(src, sizeof src, "%s/src", tmp);
    snprintf(coll, sizeof coll, "%s/coll", tmp);
    mkdir(src, 0777);
    build_tree(ph, pl);
    test_check_agrees();
    ims_catalog *c;
    ims_error err;
    CHECK_RC(ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err), IMS_OK);
    test_first_run(c);
    test_bad_csv(c);
    test_rerun(c, ph, pl);
    ims_catalog_close(c);
    test_non_utf8_names(ph[0], pl[0]);
    for (int i = 0; i < got; i++)
        free(ph[i]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmp);
    return check_report();
}
