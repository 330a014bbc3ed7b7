/* SPDX-License-Identifier: MIT */
/*
 * fuzz_catalog_open.c — a corrupt or foreign catalog.sqlite: the input is
 * written as <tmp>/catalog.sqlite (no -wal/-shm beside it) and opened
 * read-only and then read-write (which may initialise or migrate it); when
 * it opens, every reading query of catalog.h runs (accepted ids, get of
 * each (first 64), categories and their ids, max id, find by sha256, meta,
 * vectors, image paths), then ims_catalog_check, and a small write (set
 * meta, delete of the first item). Invariants: no crash, no leak, every
 * failure is one of the documented codes with a message; a file that opens
 * read-write and passes the check stays open-able after the write.
 * Replayed over tests/fuzz/corpus/catalog_open/ by ctest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgsim/catalog.h"
#include "imgsim/imgsim.h"

#define FUZZ_MAX_BYTES (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void rm_db(void)
{
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    char p[128];
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/catalog.sqlite%s", g_dir, sfx[i]);
        unlink(p);
    }
}

static void cleanup(void)
{
    rm_db();
    rmdir(g_dir);
}

static void expect_code(int rc, const ims_error *err, const char *what)
{
    if (rc == IMS_OK)
        return;
    if ((rc != IMS_ECORRUPT && rc != IMS_EFORMAT && rc != IMS_EVERSION && rc != IMS_ENOTFOUND &&
         rc != IMS_ENOMEM && rc != IMS_EIO && rc != IMS_EINVAL && rc != IMS_ESTATE &&
         rc != IMS_EBUSY && rc != IMS_ETOOBIG && rc != IMS_EFULL) ||
        !err->msg[0]) {
        fprintf(stderr, "fuzz_catalog_open: %s: bad error %d (%s)\n", what, rc, err->msg);
        abort();
    }
}

/* Every reading query; returns the first accepted id (0 if none). */
static int64_t read_all(ims_catalog *cat)
{
    ims_error err = {0};
    int64_t *ids = NULL, first = 0, max_id = 0;
    size_t n = 0;
    int rc = ims_catalog_accepted_ids(cat, &ids, &n, &err);
    expect_code(rc, &err, "accepted_ids");
    for (size_t i = 0; !rc && i < n && i < 64; i++) {
        ims_item it;
        memset(&it, 0, sizeof it);
        int r = ims_catalog_get(cat, ids[i], &it, &err);
        expect_code(r, &err, "get");
        if (!r) {
            if (!it.path || !it.category || !it.name || !it.product_id || !it.metadata ||
                !it.reason)
                abort(); /* documented as never NULL */
            int64_t same = 0;
            expect_code(ims_catalog_find_sha256(cat, it.sha256, &same, &err), &err, "find_sha");
        }
        ims_item_clear(&it);
        char *path = NULL;
        expect_code(ims_catalog_image_path(cat, ids[i], &path, &err), &err, "image_path");
        ims_free(path);
        float v[8];
        expect_code(ims_catalog_get_vectors(cat, "vectors", "x", 1, &ids[i], v, 8, &err), &err,
                    "get_vectors");
    }
    if (!rc && n)
        first = ids[0];
    ims_free(ids);
    char **names = NULL;
    int64_t *counts = NULL;
    size_t nc = 0;
    rc = ims_catalog_categories(cat, &names, &counts, &nc, &err);
    expect_code(rc, &err, "categories");
    for (size_t i = 0; !rc && i < nc && i < 8; i++) {
        int64_t *cid = NULL;
        size_t ncid = 0;
        expect_code(ims_catalog_ids_in_category(cat, names[i], &cid, &ncid, &err), &err,
                    "ids_in_category");
        ims_free(cid);
    }
    if (!rc)
        ims_catalog_free_categories(names, counts, nc);
    expect_code(ims_catalog_max_id(cat, &max_id, &err), &err, "max_id");
    char *val = NULL;
    expect_code(ims_catalog_get_meta(cat, "index_stamp", &val, &err), &err, "get_meta");
    ims_free(val);
    int64_t *miss = NULL;
    size_t nm = 0;
    expect_code(ims_catalog_missing_vectors(cat, "vectors", "x", &miss, &nm, &err), &err,
                "missing_vectors");
    ims_free(miss);
    expect_code(ims_catalog_check(cat, &err), &err, "check");
    return first;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_BYTES)
        return 0;
    if (!g_dir[0]) {
        ims_init();
        ims_log_set_level(IMS_LOG_ERROR);
        snprintf(g_dir, sizeof g_dir, "/tmp/ims-fuzz-cat-XXXXXX");
        if (!mkdtemp(g_dir))
            abort();
        atexit(cleanup);
    }
    rm_db();
    char p[128];
    snprintf(p, sizeof p, "%s/catalog.sqlite", g_dir);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f))
        abort();
    for (int pass = 0; pass < 2; pass++) {
        ims_catalog *cat = NULL;
        ims_error err = {0};
        int rc = ims_catalog_open(g_dir, pass ? 0 : IMS_CATALOG_READONLY, &cat, &err);
        expect_code(rc, &err, pass ? "open" : "open read-only");
        if (rc)
            continue;
        int64_t first = read_all(cat);
        if (pass) {
            int sound = ims_catalog_check(cat, &err) == IMS_OK;
            int w = ims_catalog_set_meta(cat, "fuzz", "1", &err);
            expect_code(w, &err, "set_meta");
            if (first)
                expect_code(ims_catalog_delete(cat, first, &err), &err, "delete");
            ims_catalog_close(cat);
            cat = NULL;
            if (sound && !w) { /* a sound file stays sound after a write */
                rc = ims_catalog_open(g_dir, 0, &cat, &err);
                if (rc || ims_catalog_check(cat, &err) != IMS_OK) {
                    fprintf(stderr, "fuzz_catalog_open: sound file broken by a write: %s\n",
                            err.msg);
                    abort();
                }
            }
        }
        ims_catalog_close(cat);
    }
    return 0;
}
