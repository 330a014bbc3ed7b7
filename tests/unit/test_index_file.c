/* SPDX-License-Identifier: MIT */
/*
 * test_index_file.c — the index file: round trip, then every truncation
 * length, every flipped byte of a small file (open must fail, or the deep
 * check must), foreign files, newer versions, open_buffer, and ims_hnsw_load
 * (the file read into memory instead of mapped).
 */
#include <string.h>

#include "core/core_int.h"
#include "test_index_util.h"

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n)
        *n = 0;
    fclose(f);
    return b;
}

/* bytes covered by the header or a section (padding between them is not) */
static int covered(const unsigned char *b, size_t n, size_t off)
{
    uint32_t hs = ims__get_u32(b + 16), ns = ims__get_u32(b + 88);
    if (off < hs)
        return 1;
    for (uint32_t i = 0; i < ns; i++) {
        uint64_t o = ims__get_u64(b + 96 + 24 * i + 8), s = ims__get_u64(b + 96 + 24 * i + 16);
        if (off >= o && off < o + s)
            return 1;
    }
    (void)n;
    return 0;
}

static void refix_header_crc(unsigned char *b)
{
    uint32_t hs = ims__get_u32(b + 16);
    ims__put_u32(b + hs - 4, ims__crc32c(0, b, hs - 4));
}

static void test_corruption(int storage, int keep_float)
{
    float *x = tix_data(40, 6, 3, 5);
    ims_hnsw *h = tix_build(IMS_METRIC_L2, storage, keep_float, 6, x, 40, 1, 1);
    for (uint64_t id = 1000; id < 1005; id++)
        ims_hnsw_delete(h, id);
    char p[] = "/tmp/ims_idx_c_XXXXXX";
    close(mkstemp(p));
    CHECK_RC(ims_hnsw_save(h, p), IMS_OK);
    ims_hnsw_free(h);
    size_t n;
    unsigned char *b = slurp(p, &n);
    ims_hnsw *g = NULL;
    ims_error err;
    CHECK_RC(ims_hnsw_open_buffer(b, n, &g, &err), IMS_OK);
    CHECK_RC(ims_hnsw_check(g, 1), IMS_OK);
    CHECK_EQ(ims_hnsw_count(g), 35);
    ims_hnsw_free(g);
    /* every truncation */
    int accepted = 0;
    for (size_t len = 0; len < n; len++) {
        int rc = ims_hnsw_open_buffer(b, len, &g, &err);
        if (rc == IMS_OK) {
            accepted++;
            ims_hnsw_free(g);
        } else if (len >= 8) {
            CHECK_MSG(rc == IMS_ECORRUPT && strstr(err.msg, "offset"),
                      "truncated to %zu: %s (%s)", len, ims_errname(rc), err.msg);
        }
    }
    CHECK_EQ(accepted, 0);
    /* every flipped byte: open fails, or the deep check does */
    int undetected = 0;
    for (size_t off = 0; off < n; off++) {
        if (!covered(b, n, off))
            continue;
        b[off] ^= 0x5a;
        int rc = ims_hnsw_open_buffer(b, n, &g, &err);
        if (rc == IMS_OK) {
            if (ims_hnsw_check(g, 1) == IMS_OK)
                undetected++;
            ims_hit hits[5];
            size_t nh;
            ims_hnsw_search(g, x, 5, NULL, hits, &nh); /* must not crash */
            ims_hnsw_free(g);
        }
        b[off] ^= 0x5a;
    }
    CHECK_MSG(undetected == 0, "%d flipped bytes went unnoticed", undetected);
    /* corrupt a link in LINKS0 with a valid CRC: open and search survive, check catches */
    {
        unsigned char *c = malloc(n);
        memcpy(c, b, n);
        uint32_t ns = ims__get_u32(c + 88);
        for (uint32_t i = 0; i < ns; i++)
            if (ims__get_u32(c + 96 + 24 * i) == 4) { /* LINKS0 */
                uint64_t o = ims__get_u64(c + 96 + 24 * i + 8), s = ims__get_u64(c + 96 + 24 * i + 16);
                for (uint64_t k = 0; k < s; k += 4)
                    ims__put_u32(c + o + k, 0xfffffff0u - (uint32_t)k);
                ims__put_u32(c + 96 + 24 * i + 4, ims__crc32c(0, c + o, s));
            }
        refix_header_crc(c);
        CHECK_RC(ims_hnsw_open_buffer(c, n, &g, &err), IMS_OK);
        if (g) {
            ims_hit hits[5];
            size_t nh;
            CHECK_RC(ims_hnsw_search(g, x, 5, &(ims_search_opts){.mode = IMS_SEARCH_GRAPH}, hits, &nh),
                     IMS_OK);
            CHECK_RC(ims_hnsw_check(g, 0), IMS_ECORRUPT);
            ims_hnsw_free(g);
        }
        free(c);
    }
    free(b);
    free(x);
    unlink(p);
}

static void test_foreign_and_versions(void)
{
    ims_hnsw *g = NULL;
    ims_error err;
    const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    CHECK_RC(ims_hnsw_open_buffer(png, sizeof png, &g, &err), IMS_EFORMAT);
    CHECK(strstr(err.msg, "magic") != NULL);
    CHECK_RC(ims_hnsw_open_buffer("", 0, &g, &err), IMS_EFORMAT);
    CHECK_RC(ims_hnsw_open("/nonexistent/x.hnsw", &g, &err), IMS_EIO);
    CHECK_RC(ims_hnsw_open("/tmp", &g, &err), IMS_EIO);

    float *x = tix_data(30, 5, 2, 9);
    ims_hnsw *h = tix_build(IMS_METRIC_COSINE, IMS_STORAGE_F32, 0, 5, x, 30, 1, 1);
    char p[] = "/tmp/ims_idx_v_XXXXXX";
    close(mkstemp(p));
    CHECK_RC(ims_hnsw_save(h, p), IMS_OK);
    ims_hnsw_free(h);
    size_t n;
    unsigned char *b = slurp(p, &n);
    /* a newer writer that old readers may still read */
    ims__put_u32(b + 8, 2);
    refix_header_crc(b);
    CHECK_RC(ims_hnsw_open_buffer(b, n, &g, &err), IMS_OK);
    ims_hnsw_free(g);
    /* a newer format old readers must refuse */
    ims__put_u32(b + 12, 2);
    refix_header_crc(b);
    CHECK_RC(ims_hnsw_open_buffer(b, n, &g, &err), IMS_EVERSION);
    CHECK(strstr(err.msg, "version") != NULL);
    /* the same through the file path */
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    CHECK_RC(ims_hnsw_open(p, &g, &err), IMS_EVERSION);
    /* an empty index round-trips */
    ims_hnsw_params prm = {.metric = IMS_METRIC_IP, .n_dims = 3, .storage = IMS_STORAGE_INT8};
    CHECK_RC(ims_hnsw_new(&prm, &h, &err), IMS_OK);
    CHECK_RC(ims_hnsw_save(h, p), IMS_OK);
    ims_hnsw_free(h);
    CHECK_MSG(ims_hnsw_open(p, &g, &err) == IMS_OK, "empty index: %s", err.msg);
    if (!g)
        return;
    CHECK_EQ(ims_hnsw_count(g), 0);
    CHECK_RC(ims_hnsw_check(g, 1), IMS_OK);
    ims_hnsw_free(g);
    free(b);
    free(x);
    unlink(p);
}

/* ims_hnsw_load gives the handle ims_hnsw_open gives, read instead of
 * mapped: the same hits and distances, writable, savable; and the same
 * errors for bad files. 1100 x 2048-d f32 is 9 MB of vectors, above the
 * 8 MiB from which the allocation is huge-page advised. */
static void test_load(void)
{
    const uint32_t dim = 2048;
    const size_t n = 1100;
    float *x = tix_data(n, dim, 4, 21);
    ims_hnsw *h = tix_build(IMS_METRIC_COSINE, IMS_STORAGE_F32, 0, dim, x, n, 2, 3);
    CHECK(h != NULL);
    if (!h)
        return;
    CHECK_RC(ims_hnsw_delete(h, 1007), IMS_OK);
    char p[] = "/tmp/ims_idx_l_XXXXXX";
    close(mkstemp(p));
    CHECK_RC(ims_hnsw_save(h, p), IMS_OK);
    ims_hnsw_free(h);
    ims_hnsw *m = NULL, *g = NULL;
    ims_error err;
    CHECK_MSG(ims_hnsw_open(p, &m, &err) == IMS_OK, "open: %s", err.msg);
    CHECK_MSG(ims_hnsw_load(p, &g, &err) == IMS_OK, "load: %s", err.msg);
    if (!m || !g)
        return;
    ims_hnsw_info im, ig;
    ims_hnsw_get_info(m, &im);
    ims_hnsw_get_info(g, &ig);
    CHECK_EQ(im.mapped, 1);
    CHECK_EQ(ig.mapped, 0);
    CHECK_EQ(ig.n_items, n - 1);
    CHECK_EQ(ig.n_dims, dim);
    CHECK_RC(ims_hnsw_check(g, 1), IMS_OK);
    int same = 1;
    for (size_t qi = 0; qi < 20; qi++) {
        const float *q = x + qi * 37 * dim;
        ims_hit a[10], b[10];
        size_t na = 0, nb = 0;
        ims_search_opts o = {.ef = 32, .mode = IMS_SEARCH_GRAPH};
        CHECK_RC(ims_hnsw_search(m, q, 10, &o, a, &na), IMS_OK);
        CHECK_RC(ims_hnsw_search(g, q, 10, &o, b, &nb), IMS_OK);
        same &= na == 10 && nb == na;
        for (size_t i = 0; i < nb && i < na; i++)
            same &= b[i].id != 1007 && a[i].id == b[i].id && a[i].distance == b[i].distance;
    }
    CHECK_MSG(same, "loaded and mapped handles answer differently");
    /* writable: add one, delete one, save over the file, open it again */
    CHECK_RC(ims_hnsw_add(g, 5000, x + 7 * dim), IMS_OK);
    CHECK_RC(ims_hnsw_delete(g, 1010), IMS_OK);
    CHECK_RC(ims_hnsw_save(g, p), IMS_OK);
    ims_hnsw_free(g), g = NULL;
    CHECK_MSG(ims_hnsw_load(p, &g, &err) == IMS_OK, "reload: %s", err.msg);
    if (g) {
        CHECK_EQ(ims_hnsw_count(g), n - 1);
        CHECK(ims_hnsw_contains(g, 5000) && !ims_hnsw_contains(g, 1010));
        CHECK_RC(ims_hnsw_check(g, 1), IMS_OK);
        ims_hnsw_free(g), g = NULL;
    }
    ims_hnsw_free(m);
    /* errors: as ims_hnsw_open's */
    CHECK_RC(ims_hnsw_load("/nonexistent/x.hnsw", &g, &err), IMS_EIO);
    CHECK(strstr(err.msg, "/nonexistent/x.hnsw") != NULL);
    CHECK_RC(ims_hnsw_load("/tmp", &g, &err), IMS_EIO);
    CHECK(strstr(err.msg, "not a regular file") != NULL);
    CHECK(g == NULL);
    size_t len;
    unsigned char *b = slurp(p, &len);
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, len / 2, f); /* truncated */
    fclose(f);
    CHECK_RC(ims_hnsw_load(p, &g, &err), IMS_ECORRUPT);
    CHECK(strstr(err.msg, "offset") != NULL);
    f = fopen(p, "wb");
    fclose(f); /* empty */
    CHECK_RC(ims_hnsw_load(p, &g, &err), IMS_EFORMAT);
    CHECK(g == NULL);
    free(b);
    free(x);
    unlink(p);
}

int main(void)
{
    ims_init();
    test_corruption(IMS_STORAGE_F32, 0);
    test_corruption(IMS_STORAGE_INT8, 1);
    test_corruption(IMS_STORAGE_F16, 0);
    test_foreign_and_versions();
    test_load();
    return check_report();
}
