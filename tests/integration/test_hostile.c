/* SPDX-License-Identifier: MIT */
/*
 * test_hostile.c — hostile input at the library level (what an internet
 * client can send through the server), each with a time and memory bound:
 *   - decompression bombs made in the test (a tiny real file from libvips
 *     with its header patched, or written by hand): PNG, JPEG, WebP, GIF,
 *     TIFF declaring huge dimensions; a GIF of 10,000 frames; a TIFF of
 *     10,000 pages; a TIFF whose IFD chain loops; through
 *     ims_image_load_memory, ims_image_check_memory (same verdict and
 *     message) and ims_coll_search_image: refused (or, for
 *     GIF of many frames and the looping TIFF, decoded) in under 100 ms and 50 MB of peak RSS
 *     growth (VmHWM reset through /proc/self/clear_refs). A valid 81 MP
 *     PNG of 0.3 MB (inside the default 100 MP limit) is measured and
 *     printed, and must be refused under a collection's max_pixels;
 *   - k at and beyond its limits (0, 1, 1000, 1001, INT_MAX, -1) for
 *     search by image and similar; index-level ef and k extremes;
 *   - category filters with SQL and LIKE metacharacters, quotes, unicode
 *     and a 64 KiB name: only that (non-existent) category, so nothing;
 *     a thousand distinct unknown categories stay fast;
 *   - JSON metadata nested 10,000 deep (refused) and of 10 MB (stored
 *     whole or refused, bounded time); category/name not valid UTF-8.
 * Bounds are x10 in sanitizer builds (RSS not checked there).
 * `test_hostile --dump DIR` writes the small bombs (fuzz seeds).
 */
#include <limits.h>
#include <time.h>
#include <vips/vips.h>

#include "check.h"
#include "coll_fixture.h"
#include "core/core_int.h"
#include "imgsim/collection.h"
#include "imgsim/image.h"
#include "imgsim/imgsim.h"
#include "imgsim/index.h"
#include "proc_mem.h"

#define MAX_MS (FIX_SANITIZED ? 1000.0 : 100.0)
#define MAX_RSS_KB (50L * 1024)

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int g_hwm_reset; /* 1 if /proc/self/clear_refs can reset VmHWM */
static long reset_peak(void)
{
    g_hwm_reset = proc_reset_peak();
    return proc_status_kb("VmRSS:");
}

/* ---- bomb makers -------------------------------------------------------------- */

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put16le(buf *b, unsigned v)
{
    unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    put(b, x, 2);
}
static void put32le(buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(b, x, 4);
}
static void be16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8), p[1] = (unsigned char)v;
}
static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}
static void le16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8);
}

static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

/* A small real image in `suffix` format from libvips; NULL on failure. */
static unsigned char *vips_make(const char *suffix, int w, int h, size_t *len)
{
    VipsImage *im = NULL;
    void *out = NULL;
    *len = 0;
    if (vips_black(&im, w, h, "bands", 3, NULL))
        return NULL;
    VipsImage *u8 = NULL;
    if (!vips_cast_uchar(im, &u8, NULL)) {
        if (vips_image_write_to_buffer(u8, suffix, &out, len, NULL))
            out = NULL;
        g_object_unref(u8);
    }
    g_object_unref(im);
    unsigned char *r = out ? malloc(*len) : NULL;
    if (r)
        memcpy(r, out, *len);
    g_free(out);
    return r;
}

static unsigned char *png_bomb(uint32_t w, uint32_t h, size_t *len)
{
    unsigned char *p = vips_make(".png", 16, 16, len);
    if (!p || *len < 33 || memcmp(p + 12, "IHDR", 4))
        return p;
    be32(p + 16, w);
    be32(p + 20, h);
    be32(p + 29, crc32_png(p + 12, 17));
    return p;
}

static unsigned char *jpeg_bomb(unsigned w, unsigned h, size_t *len)
{
    unsigned char *p = vips_make(".jpg", 16, 16, len);
    for (size_t i = 2; p && i + 9 < *len; i++)
        if (p[i] == 0xff && (p[i + 1] == 0xc0 || p[i + 1] == 0xc1 || p[i + 1] == 0xc2)) {
            be16(p + i + 5, h);
            be16(p + i + 7, w);
            break;
        }
    return p;
}

/* Patch every size field of a WebP: the VP8X canvas and the VP8 / VP8L
 * frame inside (libvips may write either layout). */
static unsigned char *webp_bomb(unsigned w, unsigned h, size_t *len)
{
    unsigned char *p = vips_make(".webp", 16, 16, len);
    for (size_t at = 12; p && at + 8 <= *len;) {
        size_t sz = (size_t)p[at + 4] | (size_t)p[at + 5] << 8 | (size_t)p[at + 6] << 16 |
                    (size_t)p[at + 7] << 24;
        unsigned char *d = p + at + 8;
        if (at + 8 + sz > *len)
            break;
        if (!memcmp(p + at, "VP8 ", 4) && sz >= 10 && d[3] == 0x9d && d[4] == 0x01 &&
            d[5] == 0x2a) {
            le16(d + 6, w & 0x3fff);
            le16(d + 8, h & 0x3fff);
        } else if (!memcmp(p + at, "VP8L", 4) && sz >= 5 && d[0] == 0x2f) {
            uint32_t v =
                ((w - 1) & 0x3fff) | (((h - 1) & 0x3fff) << 14) | ((uint32_t)d[4] & 0xf0u) << 24;
            d[1] = (unsigned char)v, d[2] = (unsigned char)(v >> 8);
            d[3] = (unsigned char)(v >> 16), d[4] = (unsigned char)(v >> 24);
        } else if (!memcmp(p + at, "VP8X", 4) && sz >= 10) {
            d[4] = (unsigned char)(w - 1), d[5] = (unsigned char)((w - 1) >> 8);
            d[6] = (unsigned char)((w - 1) >> 16);
            d[7] = (unsigned char)(h - 1), d[8] = (unsigned char)((h - 1) >> 8);
            d[9] = (unsigned char)((h - 1) >> 16);
        }
        at += 8 + sz + (sz & 1);
    }
    return p;
}

/* GIF89a, 2-colour table, n_frames frames of fw x fh (1x1 LZW data when
 * 1x1; else one clear+end code, i.e. truncated pixel data). */
static unsigned char *gif_make(unsigned sw, unsigned sh, unsigned fw, unsigned fh, int n_frames,
                               size_t *len)
{
    buf b = {0};
    put(&b, "GIF89a", 6);
    put16le(&b, sw);
    put16le(&b, sh);
    put(&b, "\x80\x00\x00", 3); /* global table of 2 colours */
    put(&b, "\x00\x00\x00\xff\xff\xff", 6);
    if (n_frames > 1) /* NETSCAPE loop extension */
        put(&b, "\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00", 19);
    for (int i = 0; i < n_frames; i++) {
        put(&b, "\x21\xf9\x04\x00\x01\x00\x00\x00", 8); /* 10 ms */
        put(&b, "\x2c\x00\x00\x00\x00", 5);
        put16le(&b, fw);
        put16le(&b, fh);
        put(&b, "\x00\x02\x02\x44\x01\x00", 6);
    }
    put(&b, "\x3b", 1);
    *len = b.n;
    return b.p;
}

/* Little-endian TIFF of n_pages 1x1 8-bit grey pages (the first declared
 * w x h); loop: the last IFD points back to the first. */
static unsigned char *tiff_make(unsigned w, unsigned h, int n_pages, int loop, size_t *len)
{
    buf b = {0};
    put(&b, "II*\0", 4);
    put32le(&b, 16);          /* IFD0 */
    put32le(&b, 0x80808080u); /* the pixel byte at offset 8 */
    put32le(&b, 0);
    const uint32_t ifd_size = 2 + 8 * 12 + 4;
    for (int i = 0; i < n_pages; i++) {
        uint32_t at = 16 + (uint32_t)i * ifd_size;
        put16le(&b, 8);
        static const unsigned tags[8] = {256, 257, 258, 259, 262, 273, 278, 279};
        for (int t = 0; t < 8; t++) {
            uint32_t v = 1;
            unsigned type = 3; /* SHORT */
            if (tags[t] == 256 && i == 0)
                v = w, type = 4;
            if (tags[t] == 257 && i == 0)
                v = h, type = 4;
            if (tags[t] == 258)
                v = 8;
            if (tags[t] == 273)
                v = 8, type = 4;
            put16le(&b, tags[t]);
            put16le(&b, type);
            put32le(&b, 1);
            put32le(&b, v);
        }
        uint32_t next = i + 1 < n_pages ? at + ifd_size : (loop ? 16 : 0);
        put32le(&b, next);
    }
    *len = b.n;
    return b.p;
}

/* ---- bombs -------------------------------------------------------------------- */

typedef struct bomb {
    const char *name;
    unsigned char *p;
    size_t len;
    int may_decode; /* multi-frame files whose first frame is fine */
} bomb;

static int n_bombs;
static bomb bombs[16];

static void add_bomb(const char *name, unsigned char *p, size_t len, int may_decode)
{
    CHECK_MSG(p && len > 0, "%s: could not be made", name);
    if (p)
        bombs[n_bombs++] = (bomb){name, p, len, may_decode};
}

static void make_bombs(void)
{
    size_t n;
    unsigned char *p;
    p = png_bomb(100000, 100000, &n);
    add_bomb("PNG 100000x100000", p, n, 0);
    p = png_bomb(10001, 10000, &n);
    add_bomb("PNG 10001x10000 (just over 100 MP)", p, n, 0);
    p = jpeg_bomb(65500, 65500, &n);
    add_bomb("JPEG 65500x65500", p, n, 0);
    p = webp_bomb(16383, 16383, &n);
    add_bomb("WebP 16383x16383", p, n, 0);
    p = webp_bomb(10001, 10000, &n);
    add_bomb("WebP 10001x10000", p, n, 0);
    p = gif_make(65535, 65535, 65535, 65535, 1, &n);
    add_bomb("GIF 65535x65535", p, n, 0);
    p = gif_make(100, 100, 1, 1, 10000, &n);
    add_bomb("GIF 10000 frames", p, n, 1);
    p = tiff_make(100000, 100000, 1, 0, &n);
    add_bomb("TIFF 100000x100000", p, n, 0);
    p = tiff_make(1, 1, 10000, 0, &n);
    add_bomb("TIFF 10000 pages", p, n, 0);
    p = tiff_make(1, 1, 3, 1, &n);
    add_bomb("TIFF IFD loop", p, n, 1);
}

static void check_cost(const char *what, const char *name, double ms, long kb)
{
    CHECK_MSG(ms < MAX_MS, "%s: %s took %.1f ms", what, name, ms);
    if (!FIX_SANITIZED && g_hwm_reset)
        CHECK_MSG(kb < MAX_RSS_KB, "%s: %s grew peak RSS by %ld KiB", what, name, kb);
}

static void test_bombs_image(void)
{
    for (int i = 0; i < n_bombs; i++) {
        bomb *b = &bombs[i];
        ims_image *img = NULL;
        ims_error err = {0};
        long base = reset_peak();
        double t0 = now_ms();
        int rc = ims_image_load_memory(b->p, b->len, NULL, &img, &err);
        double ms = now_ms() - t0;
        long kb = proc_status_kb("VmHWM:") - base;
        ims_image_free(img);
        fprintf(stderr, "test_hostile: image %-36s %6zu B -> %-15s %6.1f ms %6ld KiB  %s\n",
                b->name, b->len, ims_errname(rc), ms, kb, rc ? err.msg : "");
        if (!b->may_decode)
            CHECK_MSG(rc == IMS_ETOOBIG || rc == IMS_ECORRUPT, "%s: %s", b->name, ims_errname(rc));
        else
            CHECK_MSG(rc == IMS_OK || rc == IMS_ECORRUPT || rc == IMS_ETOOBIG ||
                          rc == IMS_EUNSUPPORTED,
                      "%s: %s", b->name, ims_errname(rc));
        if (rc)
            CHECK_MSG(err.msg[0] != 0, "%s: no message", b->name);
        check_cost("image", b->name, ms, kb);

        /* ingest's check: the same verdict and message, within the same costs */
        ims_image_info info;
        ims_error err_check = {0};
        img = NULL;
        base = reset_peak();
        t0 = now_ms();
        int rc_check = ims_image_check_memory(b->p, b->len, NULL, &info, &err_check);
        ms = now_ms() - t0;
        kb = proc_status_kb("VmHWM:") - base;
        CHECK_MSG(rc_check == rc, "%s: check %s, load %s", b->name, ims_errname(rc_check),
                  ims_errname(rc));
        if (rc && rc_check)
            CHECK_MSG(!strcmp(err_check.msg, err.msg), "%s: check says %s", b->name, err_check.msg);
        if (!rc && !rc_check && ims_image_load_memory(b->p, b->len, NULL, &img, NULL) == IMS_OK)
            CHECK_MSG(info.width == img->width && info.height == img->height,
                      "%s: check %dx%d, load %dx%d", b->name, info.width, info.height, img->width,
                      img->height);
        ims_image_free(img);
        check_cost("check", b->name, ms, kb);
    }
}

static void test_bombs_coll(ims_coll *c)
{
    for (int i = 0; i < n_bombs; i++) {
        bomb *b = &bombs[i];
        ims_coll_hit *h = NULL;
        size_t nh = 0;
        ims_error err = {0};
        long base = reset_peak();
        double t0 = now_ms();
        int rc = ims_coll_search_image(c, b->p, b->len, 5, NULL, &h, &nh, NULL, &err);
        double ms = now_ms() - t0;
        long kb = proc_status_kb("VmHWM:") - base;
        ims_coll_hits_free(h, nh);
        fprintf(stderr, "test_hostile: search %-36s -> %-15s %6.1f ms %6ld KiB\n", b->name,
                ims_errname(rc), ms, kb);
        if (!b->may_decode) {
            CHECK_MSG(rc == IMS_ETOOBIG || rc == IMS_ECORRUPT, "%s: %s", b->name, ims_errname(rc));
            check_cost("search", b->name, ms, kb);
        } else { /* decoded: the time includes one encode */
            CHECK_MSG(ms < MAX_MS * 10, "search: %s took %.1f ms", b->name, ms);
        }
        int64_t id = 0;
        rc = ims_coll_add(c, b->p, b->len, NULL, NULL, NULL, &id, &err);
        if (!b->may_decode)
            CHECK_MSG(rc == IMS_ETOOBIG || rc == IMS_ECORRUPT, "add %s: %s", b->name,
                      ims_errname(rc));
        else if (rc == IMS_OK)
            CHECK_EQ(ims_coll_delete(c, id, &err), IMS_OK);
    }
}

/* A real PNG of 9000 x 9000 black pixels: 0.3 MB, inside the default limit. */
static void test_inlimit_bomb(const char *dir)
{
    double t0 = now_ms();
    size_t n = 0;
    unsigned char *p = vips_make(".png", 9000, 9000, &n);
    double t_make = now_ms() - t0;
    CHECK(p != NULL);
    if (!p)
        return;
    ims_image *img = NULL;
    ims_error err;
    long base = reset_peak();
    t0 = now_ms();
    int rc = ims_image_load_memory(p, n, NULL, &img, &err);
    double ms = now_ms() - t0;
    long kb = proc_status_kb("VmHWM:") - base;
    ims_image_free(img);
    fprintf(stderr,
            "test_hostile: valid PNG 9000x9000 (%zu B, made in %.0f ms) with the default "
            "100 MP limit: %s in %.0f ms, peak RSS +%ld KiB\n",
            n, t_make, ims_errname(rc), ms, kb);
    CHECK_MSG(rc == IMS_OK, "81 MP PNG: %s", err.msg);
    /* a collection opened with a shop's pixel limit refuses it from the header */
    ims_coll *c = NULL;
    ims_coll_opts o = {.sessions = 1, .max_pixels = 16000000};
    CHECK_EQ(ims_coll_open(dir, &o, &c, &err), IMS_OK);
    if (c) {
        ims_coll_hit *h = NULL;
        size_t nh = 0;
        base = reset_peak();
        t0 = now_ms();
        rc = ims_coll_search_image(c, p, n, 5, NULL, &h, &nh, NULL, &err);
        ms = now_ms() - t0;
        kb = proc_status_kb("VmHWM:") - base;
        ims_coll_hits_free(h, nh);
        CHECK_EQ(rc, IMS_ETOOBIG);
        check_cost("search, max_pixels 16 MP", "PNG 9000x9000", ms, kb);
        fprintf(stderr,
                "test_hostile: same through a collection with max_pixels = 16 MP: %s "
                "in %.1f ms, +%ld KiB\n",
                ims_errname(rc), ms, kb);
        ims_coll_close(c);
    }
    free(p);
}

/* ---- k, ef --------------------------------------------------------------------- */

static void test_k(ims_coll *c, int64_t id, const void *img, size_t len, int64_t n_items)
{
    static const int ks[] = {0, 1, 1000, 1001, INT_MAX, -1, INT_MIN};
    for (size_t i = 0; i < IMS_ARRAY_LEN(ks); i++) {
        int k = ks[i];
        int ok = k >= 1 && k <= 1000;
        ims_coll_hit *h = NULL;
        size_t nh = 0;
        ims_error err;
        int rc = ims_coll_similar(c, id, k, NULL, &h, &nh, &err);
        CHECK_MSG(rc == (ok ? IMS_OK : IMS_EINVAL), "similar k=%d: %s", k, ims_errname(rc));
        if (ok)
            CHECK_EQ(nh, k < n_items - 1 ? k : n_items - 1);
        ims_coll_hits_free(h, nh);
        rc = ims_coll_search_image(c, img, len, k, NULL, &h, &nh, NULL, &err);
        CHECK_MSG(rc == (ok ? IMS_OK : IMS_EINVAL), "search k=%d: %s", k, ims_errname(rc));
        if (ok)
            CHECK_EQ(nh, k < n_items ? k : n_items);
        ims_coll_hits_free(h, nh);
    }
}

static void test_ef(void)
{
    ims_hnsw_params p = {0};
    p.n_dims = 8;
    p.metric = IMS_METRIC_L2;
    ims_hnsw *h = NULL;
    ims_error err;
    CHECK_EQ(ims_hnsw_new(&p, &h, &err), IMS_OK);
    if (!h)
        return;
    unsigned long long s = 5;
    float v[8];
    for (uint64_t i = 1; i <= 200; i++) {
        for (int d = 0; d < 8; d++)
            v[d] = (float)(check_rand_u64(&s) % 1000) / 1000.0f;
        CHECK_EQ(ims_hnsw_add(h, i, v), IMS_OK);
    }
    static const uint32_t efs[] = {0, 1, 2, 200, 100000, UINT32_MAX};
    static const size_t ks[] = {0, 1, 200, 201, 1u << 20};
    ims_hit *hits = malloc(sizeof *hits * (1u << 20));
    for (size_t a = 0; a < IMS_ARRAY_LEN(efs); a++)
        for (size_t b = 0; b < IMS_ARRAY_LEN(ks); b++)
            for (int mode = 0; mode < 3; mode++) {
                ims_search_opts o = {.ef = efs[a], .mode = mode};
                size_t nh = 0;
                long base = reset_peak();
                double t0 = now_ms();
                int rc = ims_hnsw_search(h, v, ks[b], &o, hits, &nh);
                double ms = now_ms() - t0;
                long kb = proc_status_kb("VmHWM:") - base;
                CHECK_MSG(rc == IMS_OK || rc == IMS_EINVAL, "ef=%u k=%zu mode %d: %s", efs[a],
                          ks[b], mode, ims_errname(rc));
                if (rc == IMS_OK)
                    CHECK_MSG(nh == (ks[b] < 200 ? ks[b] : 200), "ef=%u k=%zu: %zu hits", efs[a],
                              ks[b], nh);
                char name[64];
                snprintf(name, sizeof name, "ef=%u k=%zu mode %d", efs[a], ks[b], mode);
                check_cost("index search", name, ms, kb);
            }
    free(hits);
    ims_hnsw_free(h);
}

/* ---- category filters, metadata ---------------------------------------------------- */

static void test_categories(ims_coll *c, int64_t id)
{
    static const char *evil[] = {"' OR 1=1 --", "\" OR \"\"=\"",
                                 "%",           "_",
                                 "Fruit_",      "Fruits%",
                                 "%Fruits%",    "Fruits' --",
                                 "Fruits\"",    "'; DROP TABLE items; --",
                                 "\\",          "Fr\xc3\xbcits \xe2\x9c\x93 \xf0\x9f\x8d\x8e",
                                 "fruits",      " Fruits",
                                 "Fruits ",     "*",
                                 "NULL"};
    for (size_t i = 0; i < IMS_ARRAY_LEN(evil); i++) {
        ims_coll_hit *h = NULL;
        size_t nh = 0;
        ims_error err;
        int rc = ims_coll_similar(c, id, 50, evil[i], &h, &nh, &err);
        CHECK_MSG(rc == IMS_OK && nh == 0, "category '%s': rc %s, %zu hits", evil[i],
                  ims_errname(rc), nh);
        ims_coll_hits_free(h, nh);
    }
    char *huge = malloc(64 << 10);
    memset(huge, 'F', (64 << 10) - 1);
    huge[(64 << 10) - 1] = 0;
    ims_coll_hit *h = NULL;
    size_t nh = 0;
    ims_error err;
    CHECK_EQ(ims_coll_similar(c, id, 5, huge, &h, &nh, &err), IMS_OK);
    CHECK_EQ(nh, 0);
    ims_coll_hits_free(h, nh);
    /* the real one still filters */
    CHECK_EQ(ims_coll_similar(c, id, 50, "Fruits", &h, &nh, &err), IMS_OK);
    CHECK(nh > 0);
    for (size_t i = 0; i < nh; i++)
        CHECK_STR_EQ(h[i].item.category, "Fruits");
    ims_coll_hits_free(h, nh);
    /* many distinct unknown categories: each as fast as the first */
    double t0 = now_ms(), t_first = 0;
    for (int i = 0; i < 2000; i++) {
        char name[32];
        snprintf(name, sizeof name, "no-such-%d", i);
        double t = now_ms();
        ims_coll_similar(c, id, 5, name, &h, &nh, &err);
        ims_coll_hits_free(h, nh);
        if (i < 100)
            t_first += now_ms() - t;
    }
    double per = (now_ms() - t0) / 2000, per_first = t_first / 100;
    fprintf(stderr, "test_hostile: 2000 unknown categories: %.3f ms each (first 100: %.3f)\n", per,
            per_first);
    CHECK_MSG(per < 3 * per_first + 0.5, "unknown categories slow down: %.3f vs %.3f ms", per,
              per_first);
    free(huge);
}

static void test_metadata(ims_coll *c, const void *img, size_t len)
{
    ims_error err;
    int64_t id = 0;
    /* nested 10,000 deep */
    size_t depth = 10000;
    char *deep = malloc(depth * 6 + 16);
    size_t o = 0;
    for (size_t i = 0; i < depth; i++)
        o += (size_t)sprintf(deep + o, "{\"a\":");
    o += (size_t)sprintf(deep + o, "1");
    for (size_t i = 0; i < depth; i++)
        deep[o++] = '}';
    deep[o] = 0;
    double t0 = now_ms();
    int rc = ims_coll_add(c, img, len, "Deep", NULL, deep, &id, &err);
    double ms = now_ms() - t0;
    fprintf(stderr, "test_hostile: metadata nested %zu deep: %s in %.1f ms (%s)\n", depth,
            ims_errname(rc), ms, rc ? err.msg : "");
    CHECK_MSG(rc == IMS_EINVAL || rc == IMS_OK, "deep metadata: %s", ims_errname(rc));
    CHECK(ms < MAX_MS * 20);
    if (rc == IMS_OK)
        CHECK_EQ(ims_coll_delete(c, id, &err), IMS_OK);
    free(deep);
    /* 10 MB */
    size_t big = 10u << 20;
    char *m = malloc(big + 64);
    o = (size_t)sprintf(m, "{\"blob\":\"");
    memset(m + o, 'x', big - o - 2);
    o = big - 2;
    m[o++] = '"', m[o++] = '}', m[o] = 0;
    t0 = now_ms();
    rc = ims_coll_add(c, img, len, "Big", NULL, m, &id, &err);
    ms = now_ms() - t0;
    fprintf(stderr, "test_hostile: metadata of 10 MB: %s in %.1f ms (%s)\n", ims_errname(rc), ms,
            rc ? err.msg : "");
    CHECK_MSG(rc == IMS_OK || rc == IMS_EINVAL || rc == IMS_ETOOBIG, "10 MB metadata: %s",
              ims_errname(rc));
    CHECK(ms < (FIX_SANITIZED ? 30000 : 3000));
    if (rc == IMS_OK) {
        ims_item it;
        CHECK_EQ(ims_coll_get(c, id, &it, &err), IMS_OK);
        CHECK(it.metadata && strlen(it.metadata) == strlen(m));
        ims_item_clear(&it);
        CHECK_EQ(ims_coll_delete(c, id, &err), IMS_OK);
    }
    free(m);
    /* not valid UTF-8: refused, or stored so that it reads back as given */
    static const char *bad[] = {"\xff\xfe", "caf\xe9", "\xc0\xaf", "\xed\xa0\x80"};
    for (size_t i = 0; i < IMS_ARRAY_LEN(bad); i++) {
        rc = ims_coll_add(c, img, len, bad[i], bad[i], NULL, &id, &err);
        CHECK_MSG(rc == IMS_EINVAL, "category/name not UTF-8 (case %zu): %s", i, ims_errname(rc));
        if (rc == IMS_OK)
            ims_coll_delete(c, id, &err);
    }
}

/* --dump DIR: write the small bombs (seeds for tests/fuzz/corpus/image). */
static int dump(const char *dir)
{
    make_bombs();
    for (int i = 0; i < n_bombs; i++) {
        if (bombs[i].len > (64u << 10))
            continue;
        char path[1024], name[64];
        snprintf(name, sizeof name, "%s", bombs[i].name);
        for (char *p = name; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
                *p = '_';
        snprintf(path, sizeof path, "%s/bomb_%s", dir, name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(bombs[i].p, 1, bombs[i].len, f) != bombs[i].len || fclose(f))
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    ims_init();
    ims_log_set_level(IMS_LOG_ERROR);
    if (argc == 3 && !strcmp(argv[1], "--dump"))
        return dump(argv[2]);
    int rc = fix_init("hostile");
    if (rc)
        return rc;
    static const char *groups[] = {"Fruits", "Marine Fish"};
    char dir[600];
    snprintf(dir, sizeof dir, "%s/c", fix_tmp);
    CHECK_EQ(fix_build("photos", "c", groups, 2, 6), 0);
    make_bombs();
    reset_peak();
    if (!g_hwm_reset)
        fprintf(stderr, "test_hostile: /proc/self/clear_refs unavailable: RSS not checked\n");
    /* warm up libvips' loaders (first use allocates their tables) */
    for (int i = 0; i < n_bombs; i++) {
        ims_image *img = NULL;
        ims_image_load_memory(bombs[i].p, bombs[i].len, NULL, &img, NULL);
        ims_image_free(img);
    }
    test_bombs_image();
    ims_coll *c = NULL;
    ims_error err;
    ims_coll_opts o = {.sessions = 1};
    CHECK_EQ(ims_coll_open(dir, &o, &c, &err), IMS_OK);
    if (c) {
        ims_coll_stats st;
        ims_coll_get_stats(c, &st);
        ims_coll_hit *h = NULL;
        size_t nh = 0;
        char *photos[1];
        fix_group_photos("Poultry", photos, 1);
        size_t len = 0;
        void *img = fix_read(photos[0], &len);
        free(photos[0]);
        CHECK(img != NULL);
        int64_t id = 0;
        CHECK_EQ(ims_coll_search_image(c, img, len, 1, NULL, &h, &nh, NULL, &err), IMS_OK);
        ims_coll_hits_free(h, nh); /* warm */
        CHECK_EQ(ims_coll_similar(c, 1, 1, NULL, &h, &nh, &err), IMS_OK);
        id = nh ? h[0].item.id : 1;
        ims_coll_hits_free(h, nh);
        {
            ims_item it;
            if (ims_coll_get(c, 1, &it, &err) == IMS_OK) {
                id = 1;
                ims_item_clear(&it);
            }
        }
        test_bombs_coll(c);
        test_k(c, id, img, len, st.indexed);
        test_categories(c, id);
        test_metadata(c, img, len);
        free(img);
        ims_coll_close(c);
    }
    test_ef();
    test_inlimit_bomb(dir);
    for (int i = 0; i < n_bombs; i++)
        free(bombs[i].p);
    if (!check_failures)
        fix_sh("rm -rf '%s'", fix_tmp);
    else
        fprintf(stderr, "test_hostile: files kept in %s\n", fix_tmp);
    return check_report();
}
