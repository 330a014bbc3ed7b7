/* SPDX-License-Identifier: MIT */
/*
 * test_image.c — decoding and preprocessing.
 *
 * Test images are made here with libvips's savers (exact pixels where the
 * format is lossless), or built byte by byte (a PNG whose header claims
 * 60000x60000, a BMP). Preprocessing is compared with a naive double-precision
 * bilinear reference written independently of src/image/preprocess.c.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "check.h"
#include "fail_alloc.h"
#include "image/image_int.h"
#include "imgsim/image.h"
#include "imgsim/imgsim.h"

/* ---- helpers ------------------------------------------------------------- */

/* A w x h image of `bands` bands from px, tagged with interpretation. */
static VipsImage *mk(int w, int h, int bands, VipsBandFormat fmt, VipsInterpretation interp,
                     const void *px)
{
    size_t n = (size_t)w * h * bands * vips_format_sizeof(fmt);
    VipsImage *a = vips_image_new_from_memory_copy(px, n, w, h, bands, fmt), *b = NULL;
    if (!a || vips_copy(a, &b, "interpretation", interp, NULL))
        fprintf(stderr, "mk: %s\n", vips_error_buffer());
    g_object_unref(a);
    return b;
}

/* Encode with a libvips saver: ".png", ".jpeg[Q=100]"... g_free() the result. */
static void *enc(VipsImage *im, const char *suffix, size_t *len)
{
    void *buf = NULL;
    *len = 0;
    if (vips_image_write_to_buffer(im, suffix, &buf, len, NULL))
        fprintf(stderr, "enc %s: %s\n", suffix, vips_error_buffer());
    return buf;
}

/* Decode from memory with a pixel limit; returns the IMS code. The check
 * ingest runs (ims_image_check_memory) must agree on every input decoded
 * here: the same code and message, or the same size and format. */
static int dec(const void *buf, size_t len, uint64_t max_pixels, ims_image **img)
{
    ims_image_opts o = {.max_pixels = max_pixels};
    ims_error err, err_check;
    int rc = ims_image_load_memory(buf, len, &o, img, &err);
    if (rc)
        printf("  (expected or not) %s: %s\n", ims_errname(rc), err.msg);
    ims_image_info info;
    int rc_check = ims_image_check_memory(buf, len, &o, &info, &err_check);
    CHECK_MSG(rc_check == rc, "check gives %s, load %s", ims_errname(rc_check), ims_errname(rc));
    if (rc && rc_check)
        CHECK_STR_EQ(err_check.msg, err.msg);
    if (!rc && !rc_check) {
        CHECK_EQ(info.width, (*img)->width);
        CHECK_EQ(info.height, (*img)->height);
        CHECK_STR_EQ(info.format, (*img)->format);
    }
    return rc;
}

static const unsigned char *px(const ims_image *img, int x, int y)
{
    return img->rgb + ((size_t)y * img->width + x) * 3;
}

#define CHECK_PX(img, x, y, r, g, b, tol)                                        \
    do {                                                                       \
        const unsigned char *p_ = px(img, x, y);                               \
        CHECK_NEAR(p_[0], r, tol);                                             \
        CHECK_NEAR(p_[1], g, tol);                                             \
        CHECK_NEAR(p_[2], b, tol);                                             \
    } while (0)

static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static size_t png_chunk(unsigned char *o, const char *type, const void *data, uint32_t n)
{
    o[0] = (unsigned char)(n >> 24), o[1] = (unsigned char)(n >> 16);
    o[2] = (unsigned char)(n >> 8), o[3] = (unsigned char)n;
    memcpy(o + 4, type, 4);
    if (n)
        memcpy(o + 8, data, n);
    uint32_t c = crc32_png(o + 4, n + 4);
    o[8 + n] = (unsigned char)(c >> 24), o[9 + n] = (unsigned char)(c >> 16);
    o[10 + n] = (unsigned char)(c >> 8), o[11 + n] = (unsigned char)c;
    return 12 + n;
}

/* A PNG whose IHDR claims w x h RGB but carries no real pixel data. */
static size_t bomb_png(unsigned char *o, uint32_t w, uint32_t h)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char idat[] = {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01};
    unsigned char ihdr[13] = {(unsigned char)(w >> 24), (unsigned char)(w >> 16),
                              (unsigned char)(w >> 8),  (unsigned char)w,
                              (unsigned char)(h >> 24), (unsigned char)(h >> 16),
                              (unsigned char)(h >> 8),  (unsigned char)h,
                              8, 2, 0, 0, 0};
    size_t n = 0;
    memcpy(o, sig, 8), n = 8;
    n += png_chunk(o + n, "IHDR", ihdr, 13);
    n += png_chunk(o + n, "IDAT", idat, sizeof idat);
    n += png_chunk(o + n, "IEND", NULL, 0);
    return n;
}

/* 4x3 test pattern: distinct RGB values everywhere. */
static void pattern(unsigned char *p, int w, int h)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *q = p + ((size_t)y * w + x) * 3;
            q[0] = (unsigned char)(20 + 50 * x), q[1] = (unsigned char)(30 + 60 * y);
            q[2] = (unsigned char)(200 - 10 * (x + y));
        }
}

/* ---- decoding ------------------------------------------------------------ */

static void test_formats(void)
{
    unsigned char p[4 * 3 * 3];
    pattern(p, 4, 3);
    VipsImage *im = mk(4, 3, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, p);
    static const struct {
        const char *suffix, *format;
        int tol; /* max abs difference per channel */
    } F[] = {
        {".png", "png", 0},
        {".webp[lossless]", "webp", 0},
        {".tif", "tiff", 0},
        {".gif", "gif", 8},
        {".jpeg[Q=100,subsample_mode=off]", "jpeg", 8},
    };
    for (size_t i = 0; i < IMS_ARRAY_LEN(F); i++) {
        size_t len;
        void *buf = enc(im, F[i].suffix, &len);
        ims_image *img = NULL;
        CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
        if (img) {
            CHECK_STR_EQ(img->format, F[i].format);
            CHECK_EQ(img->width, 4);
            CHECK_EQ(img->height, 3);
            int worst = 0;
            for (int k = 0; k < 4 * 3 * 3; k++) {
                int d = abs((int)img->rgb[k] - (int)p[k]);
                worst = d > worst ? d : worst;
            }
            CHECK_MSG(worst <= F[i].tol, "%s: max diff %d > %d", F[i].format, worst,
                      F[i].tol);
        }
        ims_image_free(img);

        /* the same bytes through a file */
        char path[64];
        snprintf(path, sizeof path, "/tmp/ims_test_image_%d.%s", (int)getpid(), F[i].format);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(buf, 1, len, f) == len);
        if (f)
            fclose(f);
        ims_error err;
        img = NULL;
        CHECK_RC(ims_image_load_file(path, NULL, &img, &err), IMS_OK);
        if (img)
            CHECK_STR_EQ(img->format, F[i].format);
        ims_image_free(img);
        unlink(path);
        g_free(buf);
    }
    g_object_unref(im);
}

static void test_orientation(void)
{
    /* 2x1: red | blue. Orientation 6 = rotate 90 degrees clockwise to view,
     * so it must come out 1x2 with red on top and blue below. */
    const unsigned char p[6] = {255, 0, 0, 0, 0, 255};
    VipsImage *im = mk(2, 1, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, p);
    static const struct {
        int orientation, w, h;
        int red_x, red_y, blue_x, blue_y;
    } O[] = {
        {1, 2, 1, 0, 0, 1, 0},
        {3, 2, 1, 1, 0, 0, 0}, /* 180 */
        {6, 1, 2, 0, 0, 0, 1}, /* 90 clockwise */
        {8, 1, 2, 0, 1, 0, 0}, /* 90 anticlockwise */
        {2, 2, 1, 1, 0, 0, 0}, /* mirrored */
    };
    for (size_t i = 0; i < IMS_ARRAY_LEN(O); i++) {
        VipsImage *t = NULL;
        vips_copy(im, &t, NULL);
        vips_image_set_int(t, VIPS_META_ORIENTATION, O[i].orientation);
        size_t len;
        void *buf = enc(t, ".jpeg[Q=100,subsample_mode=off]", &len);
        ims_image *img = NULL;
        CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
        if (img) {
            CHECK_EQ(img->width, O[i].w);
            CHECK_EQ(img->height, O[i].h);
            if (img->width == O[i].w && img->height == O[i].h) {
                CHECK_PX(img, O[i].red_x, O[i].red_y, 255, 0, 0, 40);
                CHECK_PX(img, O[i].blue_x, O[i].blue_y, 0, 0, 255, 40);
            }
        }
        ims_image_free(img);
        g_free(buf);
        g_object_unref(t);
    }
    g_object_unref(im);
}

static void test_alpha_grey_16bit(void)
{
    /* RGBA: transparent black -> white, opaque red, half-transparent black */
    const unsigned char rgba[12] = {0, 0, 0, 0, 255, 0, 0, 255, 0, 0, 0, 128};
    VipsImage *im = mk(3, 1, 4, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, rgba);
    size_t len;
    void *buf = enc(im, ".png", &len);
    ims_image *img = NULL;
    CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
    if (img) {
        CHECK_PX(img, 0, 0, 255, 255, 255, 0);
        CHECK_PX(img, 1, 0, 255, 0, 0, 0);
        CHECK_PX(img, 2, 0, 127, 127, 127, 1);
    }
    ims_image_free(img), g_free(buf), g_object_unref(im);

    /* grey -> RGB, exactly */
    const unsigned char grey[3] = {0, 77, 255};
    im = mk(3, 1, 1, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_B_W, grey);
    buf = enc(im, ".png", &len);
    img = NULL;
    CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
    if (img)
        for (int x = 0; x < 3; x++)
            CHECK_PX(img, x, 0, grey[x], grey[x], grey[x], 0);
    ims_image_free(img), g_free(buf), g_object_unref(im);

    /* grey + alpha */
    const unsigned char ga[4] = {77, 255, 0, 0};
    im = mk(2, 1, 2, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_B_W, ga);
    buf = enc(im, ".png", &len);
    img = NULL;
    CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
    if (img) {
        CHECK_PX(img, 0, 0, 77, 77, 77, 0);
        CHECK_PX(img, 1, 0, 255, 255, 255, 0);
    }
    ims_image_free(img), g_free(buf), g_object_unref(im);

    /* 16-bit RGB PNG -> 8-bit */
    const uint16_t rgb16[6] = {65535, 32896, 0, 0, 65535, 12850};
    im = mk(2, 1, 3, VIPS_FORMAT_USHORT, VIPS_INTERPRETATION_RGB16, rgb16);
    buf = enc(im, ".png", &len);
    CHECK(len > 33 && ((unsigned char *)buf)[24] == 16); /* IHDR bit depth */
    img = NULL;
    CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
    if (img) {
        CHECK_PX(img, 0, 0, 255, 128, 0, 1);
        CHECK_PX(img, 1, 0, 0, 255, 50, 1);
    }
    ims_image_free(img), g_free(buf), g_object_unref(im);

    /* 16-bit grey with alpha */
    const uint16_t ga16[4] = {32896, 65535, 0, 0};
    im = mk(2, 1, 2, VIPS_FORMAT_USHORT, VIPS_INTERPRETATION_GREY16, ga16);
    buf = enc(im, ".png", &len);
    img = NULL;
    CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
    if (img) {
        CHECK_PX(img, 0, 0, 128, 128, 128, 1);
        CHECK_PX(img, 1, 0, 255, 255, 255, 1);
    }
    ims_image_free(img), g_free(buf), g_object_unref(im);
}

static void test_cmyk(void)
{
    /* CMYK JPEG: no ink = white, full black ink = (near) black, full cyan */
    const unsigned char cmyk[12] = {0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0};
    VipsImage *im = mk(3, 1, 4, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_CMYK, cmyk);
    size_t len;
    void *buf = enc(im, ".jpeg[Q=100,subsample_mode=off]", &len);
    ims_image *img = NULL;
    CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
    if (img) {
        CHECK_STR_EQ(img->format, "jpeg");
        CHECK_EQ(img->width, 3);
        CHECK_PX(img, 0, 0, 255, 255, 255, 12);
        const unsigned char *k = px(img, 1, 0), *c = px(img, 2, 0);
        CHECK_MSG(k[0] < 80 && k[1] < 80 && k[2] < 80, "black: %d %d %d", k[0], k[1], k[2]);
        CHECK_MSG(c[0] < 100 && c[1] > 120 && c[2] > 180, "cyan: %d %d %d", c[0], c[1], c[2]);
    }
    ims_image_free(img), g_free(buf), g_object_unref(im);
}

static void test_gif_first_frame(void)
{
    /* two 2x2 frames stacked: red, then blue */
    unsigned char p[2 * 4 * 3];
    for (int i = 0; i < 8; i++) {
        p[3 * i] = i < 4 ? 255 : 0, p[3 * i + 1] = 0, p[3 * i + 2] = i < 4 ? 0 : 255;
    }
    VipsImage *im = mk(2, 4, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, p);
    vips_image_set_int(im, VIPS_META_PAGE_HEIGHT, 2);
    size_t len;
    void *buf = enc(im, ".gif", &len);
    ims_image *img = NULL;
    CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
    if (img) {
        CHECK_EQ(img->width, 2);
        CHECK_EQ(img->height, 2);
        CHECK_PX(img, 1, 1, 255, 0, 0, 8);
    }
    ims_image_free(img), g_free(buf), g_object_unref(im);
}

static void test_bad_inputs(void)
{
    ims_image *img = NULL;
    ims_error err;
    /* empty */
    CHECK_RC(ims_image_load_memory("", 0, NULL, &img, &err), IMS_ECORRUPT);
    CHECK(img == NULL);
    CHECK(strstr(err.msg, "empty") != NULL);
    CHECK_RC(ims_image_load_file("/nonexistent/x.jpeg", NULL, &img, &err), IMS_EIO);
    CHECK(strstr(err.msg, "/nonexistent/x.jpeg") != NULL);
    CHECK_RC(ims_image_load_file("/tmp", NULL, &img, &err), IMS_EIO);
    char path[64];
    snprintf(path, sizeof path, "/tmp/ims_test_empty_%d.jpeg", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (f)
        fclose(f);
    CHECK_RC(ims_image_load_file(path, NULL, &img, &err), IMS_ECORRUPT);
    CHECK(strstr(err.msg, path) != NULL);
    unlink(path);

    /* random bytes */
    unsigned char rnd[4096];
    unsigned long long s = 42;
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (unsigned char)check_rand_u64(&s);
    CHECK_RC(dec(rnd, sizeof rnd, 0, &img), IMS_EFORMAT);

    /* truncated and corrupted JPEG and PNG (noise, so no run of bytes is
     * redundant) */
    enum { W = 64, H = 48 };
    unsigned char *p = malloc(W * H * 3);
    for (int i = 0; i < W * H * 3; i++)
        p[i] = (unsigned char)check_rand_u64(&s);
    VipsImage *im = mk(W, H, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, p);
    const char *suffixes[] = {".jpeg", ".png", ".webp", ".gif", ".tif"};
    for (size_t i = 0; i < IMS_ARRAY_LEN(suffixes); i++) {
        size_t len;
        unsigned char *buf = enc(im, suffixes[i], &len);
        CHECK_RC(dec(buf, len, 0, &img), IMS_OK);
        ims_image_free(img);
        img = NULL;
        int rc = dec(buf, len / 2, 0, &img);
        CHECK_MSG(rc == IMS_ECORRUPT, "%s cut in half: %s", suffixes[i], ims_errname(rc));
        CHECK(img == NULL);
        ims_image_free(img);
        img = NULL;
        rc = dec(buf, 20, 0, &img); /* header cut */
        CHECK_MSG(rc == IMS_ECORRUPT || rc == IMS_EFORMAT, "%s cut to 20 bytes: %s",
                  suffixes[i], ims_errname(rc));
        ims_image_free(img);
        img = NULL;
        /* keep magic + header, overwrite the middle with noise */
        for (size_t k = len / 3; k < len - 2; k++)
            buf[k] = (unsigned char)check_rand_u64(&s);
        rc = dec(buf, len, 0, &img);
        CHECK_MSG(rc == IMS_ECORRUPT, "%s with garbage body: %s", suffixes[i],
                  ims_errname(rc));
        ims_image_free(img);
        img = NULL;
        g_free(buf);
    }
    g_object_unref(im);
    free(p);

    /* a valid BMP: unsupported */
    unsigned char bmp[58] = {'B', 'M', 58, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0,
                             1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 24, 0, 0, 0, 0, 0, 4, 0, 0, 0,
                             0x13, 0x0b, 0, 0, 0x13, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                             0, 0, 255, 0};
    CHECK_RC(ims_image_load_memory(bmp, sizeof bmp, NULL, &img, &err), IMS_EFORMAT);
    printf("  BMP: %s\n", err.msg);
    /* a PPM (libvips can read it, we must not) */
    const char ppm[] = "P6\n1 1\n255\n\x10\x20\x30";
    CHECK_RC(ims_image_load_memory(ppm, sizeof ppm - 1, NULL, &img, &err), IMS_EFORMAT);
    snprintf(path, sizeof path, "/tmp/ims_test_ppm_%d.ppm", (int)getpid());
    f = fopen(path, "wb");
    if (f)
        fwrite(ppm, 1, sizeof ppm - 1, f), fclose(f);
    CHECK_RC(ims_image_load_file(path, NULL, &img, &err), IMS_EFORMAT);
    CHECK(strstr(err.msg, "unsupported") != NULL);
    unlink(path);
    /* an SVG (libvips may read it through librsvg) */
    const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\" height=\"8\"/>";
    CHECK_RC(ims_image_load_memory(svg, sizeof svg - 1, NULL, &img, &err), IMS_EFORMAT);
}

static size_t n_alloc_bytes;
static void *count_malloc(size_t n, void *ud)
{
    (void)ud;
    n_alloc_bytes += n;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    n_alloc_bytes += n;
    return realloc(p, n);
}
static void count_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

static void test_bomb(void)
{
    unsigned char png[128];
    size_t len = bomb_png(png, 60000, 60000);
    ims_image *img = NULL;
    ims_error err;
    ims_allocator a = {count_malloc, count_realloc, count_free, NULL};
    size_t rss0 = ims_peak_rss();
    ims_set_allocator(&a);
    n_alloc_bytes = 0;
    int rc = ims_image_load_memory(png, len, NULL, &img, &err);
    ims_set_allocator(NULL);
    CHECK_RC(rc, IMS_ETOOBIG);
    CHECK(img == NULL);
    CHECK(strstr(err.msg, "60000x60000") != NULL);
    printf("  bomb: %s\n", err.msg);
    CHECK_MSG(n_alloc_bytes < 4096, "allocated %zu bytes for a refused image", n_alloc_bytes);
    size_t rss1 = ims_peak_rss();
    CHECK_MSG(rss1 < rss0 + (64u << 20), "peak RSS grew from %zu to %zu", rss0, rss1);

    /* the limit is configurable and checked as width*height */
    const int w = 100, h = 50;
    unsigned char *p = calloc((size_t)w * h, 3);
    VipsImage *im = mk(w, h, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, p);
    const char *suffixes[] = {".png", ".jpeg", ".webp", ".gif", ".tif"};
    for (size_t i = 0; i < IMS_ARRAY_LEN(suffixes); i++) {
        void *buf = enc(im, suffixes[i], &len);
        CHECK_RC(dec(buf, len, (uint64_t)w * h - 1, &img), IMS_ETOOBIG);
        CHECK(img == NULL);
        CHECK_RC(dec(buf, len, (uint64_t)w * h, &img), IMS_OK);
        ims_image_free(img);
        img = NULL;
        g_free(buf);
    }
    g_object_unref(im);
    free(p);
}

static void test_shrink_on_load(void)
{
    const int w = 256, h = 128;
    unsigned char *p = calloc((size_t)w * h, 3);
    VipsImage *im = mk(w, h, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, p);
    size_t len;
    void *buf = enc(im, ".jpeg", &len);
    ims_image_opts o = {.shrink_to = 32};
    ims_image *img = NULL;
    CHECK_RC(ims_image_load_memory(buf, len, &o, &img, NULL), IMS_OK);
    if (img) {
        CHECK_EQ(img->width, 64); /* 128/4 = 32 >= 32, 128/8 < 32 */
        CHECK_EQ(img->height, 32);
    }
    ims_image_free(img);
    o.shrink_to = 0;
    CHECK_RC(ims_image_load_memory(buf, len, &o, &img, NULL), IMS_OK);
    if (img)
        CHECK_EQ(img->width, 256);
    ims_image_free(img);
    g_free(buf), g_object_unref(im), free(p);
}

/* Fail the Nth allocation: expect IMS_ENOMEM, no leak (ASan checks). */
static void test_oom(void)
{
    unsigned char p[4 * 3 * 3];
    pattern(p, 4, 3);
    VipsImage *im = mk(4, 3, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, p);
    size_t len;
    void *buf = enc(im, ".png", &len);
    ims_allocator a = {fail_malloc, fail_realloc, count_free, NULL};
    for (fail_at = 1;; fail_at++) {
        ims_image *img = NULL;
        n_calls = 0;
        ims_set_allocator(&a);
        int rc = ims_image_load_memory(buf, len, NULL, &img, NULL);
        ims_set_allocator(NULL);
        ims_image_free(img);
        if (rc == IMS_OK)
            break;
        CHECK_RC(rc, IMS_ENOMEM);
        if (fail_at > 10)
            break;
    }
    CHECK(fail_at > 1);
    g_free(buf), g_object_unref(im);
}

typedef struct job {
    const void *buf;
    size_t len;
    const unsigned char *want;
    int bad;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    for (int i = 0; i < 20; i++) {
        ims_image *img = NULL;
        if (ims_image_load_memory(j->buf, j->len, NULL, &img, NULL) != IMS_OK ||
            memcmp(img->rgb, j->want, 16 * 16 * 3) != 0)
            j->bad++;
        ims_image_free(img);
    }
    return NULL;
}

static void test_threads(void)
{
    unsigned char p[16 * 16 * 3];
    unsigned long long s = 7;
    for (size_t i = 0; i < sizeof p; i++)
        p[i] = (unsigned char)check_rand_u64(&s);
    VipsImage *im = mk(16, 16, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, p);
    size_t len;
    void *buf = enc(im, ".png", &len);
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){buf, len, p, 0};
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(jobs[i].bad, 0);
    }
    g_free(buf), g_object_unref(im);
}

/* ---- preprocessing ---------------------------------------------------------- */

/* Naive reference: source coordinate per TF's definition, clamped into the
 * image, standard bilinear weights, all in double. */
static double ref_sample(const ims_image *img, int x0, int y0, int cw, int ch, double sy,
                         double sx, int d, double scale)
{
    sy = sy < 0 ? 0 : sy > ch - 1 ? ch - 1 : sy;
    sx = sx < 0 ? 0 : sx > cw - 1 ? cw - 1 : sx;
    int ya = (int)sy, xa = (int)sx;
    int yb = ya + 1 < ch ? ya + 1 : ya, xb = xa + 1 < cw ? xa + 1 : xa;
    double wy = sy - ya, wx = sx - xa;
#define P(x, y) ((double)px(img, x0 + (x), y0 + (y))[d] * scale)
    return (1 - wy) * ((1 - wx) * P(xa, ya) + wx * P(xb, ya)) +
           wy * ((1 - wx) * P(xa, yb) + wx * P(xb, yb));
#undef P
}

/* The resize loop as it was before the column tables (every coordinate
 * computed per pixel), for the bit-exact check below. Same FP rules as
 * preprocess.c: no contraction. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
static void
per_pixel_resize(const ims_image *img, const ims_preprocess *pp, float *out)
{
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    float lut[256];
    double k = 1.0 / (double)pp->scale, kr = nearbyint(k);
    int is_recip = kr >= 1.0 && kr <= 1e6 && (float)(1.0 / kr) == pp->scale;
    for (int x = 0; x < 256; x++)
        lut[x] = is_recip ? (float)((double)x / kr) : (float)x * pp->scale;
    int r4[4];
    ims__preprocess_crop(img->width, img->height, pp, r4);
    const int x0 = r4[0], y0 = r4[1], in_w = r4[2], in_h = r4[3];
    const int out_w = pp->width, out_h = pp->height;
    const int align = pp->resize == IMS_RESIZE_BILINEAR_ALIGN_CORNERS;
    const int half = pp->resize == IMS_RESIZE_BILINEAR_HALF_PIXEL;
    const size_t stride = (size_t)img->width * 3;
    const unsigned char *base = img->rgb + (size_t)y0 * stride + (size_t)x0 * 3;
    const double eff_in_h = (align && out_h > 1) ? in_h - 1 : in_h;
    const double eff_in_w = (align && out_w > 1) ? in_w - 1 : in_w;
    const double eff_out_h = (align && out_h > 1) ? out_h - 1 : out_h;
    const double eff_out_w = (align && out_w > 1) ? out_w - 1 : out_w;
    const double row_ratio = eff_in_h / eff_out_h, col_ratio = eff_in_w / eff_out_w;
    float *o = out;
    for (int r = 0; r < out_h; r++) {
        const double fr = half ? row_ratio * (r + 0.5) - 0.5 : row_ratio * r;
        const double r_lo = fmax(0.0, floor(fr));
        const double fy = fr - r_lo;
        const double r_hi = fmin((double)(in_h - 1), ceil(fr));
        const unsigned char *top = base + (size_t)r_lo * stride;
        const unsigned char *bot = base + (size_t)r_hi * stride;
        for (int c = 0; c < out_w; c++) {
            const double fc = half ? col_ratio * (c + 0.5) - 0.5 : col_ratio * c;
            const double c_lo = fmax(0.0, floor(fc));
            const double fx = fc - c_lo;
            const double c_hi = fmin((double)(in_w - 1), ceil(fc));
            const size_t il = (size_t)c_lo * 3, ir = (size_t)c_hi * 3;
            for (int d = 0; d < 3; d++) {
                const double tl = lut[top[il + d]], tr = lut[top[ir + d]];
                const double bl = lut[bot[il + d]], br = lut[bot[ir + d]];
                const double t = tl + (tr - tl) * fx;
                const double b = bl + (br - bl) * fx;
                *o++ = (float)(t + (b - t) * fy);
            }
        }
    }
}

/* Bit for bit the per-pixel loop, both resize methods and crops, down-
 * and up-scaling, odd sizes, a photo-sized input (identity normalisation:
 * the tensor is the resize itself). */
static void test_preprocess_bit_exact(void)
{
    unsigned long long s = 777;
    int bad = 0;
    for (int iter = 0; iter < 40; iter++) {
        int w = 1 + (int)(check_rand_u64(&s) % (iter < 36 ? 90 : 400));
        int h = 1 + (int)(check_rand_u64(&s) % (iter < 36 ? 90 : 400));
        int ow = 1 + (int)(check_rand_u64(&s) % 60), oh = 1 + (int)(check_rand_u64(&s) % 60);
        if (iter >= 36)
            ow = oh = 224;
        ims_image *img = NULL;
        CHECK_RC(ims_image_new(w, h, &img), IMS_OK);
        for (size_t i = 0; i < (size_t)w * h * 3; i++)
            img->rgb[i] = (unsigned char)check_rand_u64(&s);
        ims_preprocess pp;
        ims_preprocess_nsfwjs(&pp, 1);
        pp.width = ow, pp.height = oh;
        pp.resize = iter % 2 ? IMS_RESIZE_BILINEAR_HALF_PIXEL : IMS_RESIZE_BILINEAR_ALIGN_CORNERS;
        pp.crop = iter % 3 == 2 ? IMS_CROP_CENTER : IMS_CROP_STRETCH;
        if (iter % 5 == 4)
            pp.scale = 2.0f;
        size_t n = (size_t)ow * oh * 3;
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        CHECK_RC(ims_image_preprocess(img, &pp, a, NULL), IMS_OK);
        per_pixel_resize(img, &pp, b);
        bad += memcmp(a, b, n * sizeof(float)) != 0;
        free(a);
        free(b);
        ims_image_free(img);
    }
    CHECK_EQ(bad, 0);
}

static void test_preprocess_reference(void)
{
    unsigned long long s = 12345;
    for (int iter = 0; iter < 60; iter++) {
        int w = 1 + (int)(check_rand_u64(&s) % 40), h = 1 + (int)(check_rand_u64(&s) % 40);
        int ow = 1 + (int)(check_rand_u64(&s) % 50), oh = 1 + (int)(check_rand_u64(&s) % 50);
        ims_image *img = NULL;
        CHECK_RC(ims_image_new(w, h, &img), IMS_OK);
        for (size_t i = 0; i < (size_t)w * h * 3; i++)
            img->rgb[i] = (unsigned char)check_rand_u64(&s);
        ims_preprocess pp;
        ims_preprocess_nsfwjs(&pp, 1);
        pp.width = ow, pp.height = oh;
        pp.resize = iter % 2 ? IMS_RESIZE_BILINEAR_HALF_PIXEL
                             : IMS_RESIZE_BILINEAR_ALIGN_CORNERS;
        pp.crop = iter % 3 == 2 ? IMS_CROP_CENTER : IMS_CROP_STRETCH;
        int norm = iter % 4 == 3;
        if (norm)
            for (int c = 0; c < 3; c++)
                pp.mean[c] = 0.4f + 0.05f * c, pp.std[c] = 0.2f + 0.03f * c;
        if (iter % 5 == 4)
            pp.scale = 2.0f; /* not a reciprocal: x * scale */
        int r4[4];
        ims__preprocess_crop(w, h, &pp, r4);
        float *out = malloc(sizeof(float) * 3 * ow * oh);
        CHECK_RC(ims_image_preprocess(img, &pp, out, NULL), IMS_OK);
        double worst = 0;
        for (int r = 0; r < oh; r++)
            for (int c = 0; c < ow; c++) {
                double sy, sx;
                if (pp.resize == IMS_RESIZE_BILINEAR_ALIGN_CORNERS) {
                    sy = oh > 1 ? (double)r * (r4[3] - 1) / (oh - 1) : 0;
                    sx = ow > 1 ? (double)c * (r4[2] - 1) / (ow - 1) : 0;
                } else {
                    sy = (r + 0.5) * r4[3] / oh - 0.5;
                    sx = (c + 0.5) * r4[2] / ow - 0.5;
                }
                for (int d = 0; d < 3; d++) {
                    double v = ref_sample(img, r4[0], r4[1], r4[2], r4[3], sy, sx, d,
                                          pp.scale == 2.0f ? 2.0 : 1.0 / 255);
                    if (norm)
                        v = (v - pp.mean[d]) / pp.std[d];
                    /* relative: float32 rounding of values up to 510/0.2 */
                    double e = fabs(v - out[((size_t)r * ow + c) * 3 + d]) / (1 + fabs(v));
                    worst = e > worst ? e : worst;
                }
            }
        double tol = 3e-7;
        CHECK_MSG(worst <= tol, "%dx%d -> %dx%d resize %d crop %d: max error %g", w, h, ow,
                  oh, pp.resize, pp.crop, worst);
        free(out);
        ims_image_free(img);
    }
}

static void test_preprocess_exact(void)
{
    /* align corners: the four output corners are the source corners, and
     * values are exactly x / 255 rounded once to float (TF.js's div) */
    const int w = 307, h = 173, S = 224;
    ims_image *img = NULL;
    CHECK_RC(ims_image_new(w, h, &img), IMS_OK);
    unsigned long long s = 99;
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        img->rgb[i] = (unsigned char)check_rand_u64(&s);
    ims_preprocess pp;
    ims_preprocess_nsfwjs(&pp, S);
    CHECK_EQ(pp.width, S);
    CHECK_EQ(pp.resize, IMS_RESIZE_BILINEAR_ALIGN_CORNERS);
    CHECK_EQ(pp.crop, IMS_CROP_STRETCH);
    float *out = malloc(sizeof(float) * 3 * S * S);
    CHECK_RC(ims_image_preprocess(img, &pp, out, NULL), IMS_OK);
    const int cx[4] = {0, w - 1, 0, w - 1}, cy[4] = {0, 0, h - 1, h - 1};
    const int ox[4] = {0, S - 1, 0, S - 1}, oy[4] = {0, 0, S - 1, S - 1};
    for (int k = 0; k < 4; k++)
        for (int d = 0; d < 3; d++) {
            float want = (float)((double)px(img, cx[k], cy[k])[d] / 255.0);
            float got = out[((size_t)oy[k] * S + ox[k]) * 3 + d];
            CHECK_MSG(memcmp(&want, &got, 4) == 0, "corner %d ch %d: %.9g != %.9g", k, d,
                      (double)got, (double)want);
        }
    /* 1/255 as x/255 in double, not x * (float)(1/255): they differ for some x */
    int n_differ = 0;
    for (int x = 0; x < 256; x++)
        n_differ += (float)((double)x / 255.0) != (float)x * (1.0f / 255.0f);
    CHECK(n_differ > 0);

    /* same size: identity, exactly x/255 */
    ims_image *sq = NULL;
    CHECK_RC(ims_image_new(S, S, &sq), IMS_OK);
    memcpy(sq->rgb, img->rgb, (size_t)S * S * 3);
    CHECK_RC(ims_image_preprocess(sq, &pp, out, NULL), IMS_OK);
    int bad = 0;
    for (size_t i = 0; i < (size_t)S * S * 3; i++)
        bad += out[i] != (float)((double)sq->rgb[i] / 255.0);
    CHECK_EQ(bad, 0);
    ims_image_free(sq);

    /* centre crop == stretch of the cropped image, bit for bit */
    pp.crop = IMS_CROP_CENTER;
    int r4[4];
    ims__preprocess_crop(w, h, &pp, r4);
    CHECK_EQ(r4[0], 67);
    CHECK_EQ(r4[1], 0);
    CHECK_EQ(r4[2], 173);
    CHECK_EQ(r4[3], 173);
    ims_image *crop = NULL;
    CHECK_RC(ims_image_new(r4[2], r4[3], &crop), IMS_OK);
    for (int y = 0; y < r4[3]; y++)
        memcpy(crop->rgb + (size_t)y * r4[2] * 3, px(img, r4[0], r4[1] + y),
               (size_t)r4[2] * 3);
    float *out2 = malloc(sizeof(float) * 3 * S * S);
    CHECK_RC(ims_image_preprocess(img, &pp, out, NULL), IMS_OK);
    pp.crop = IMS_CROP_STRETCH;
    CHECK_RC(ims_image_preprocess(crop, &pp, out2, NULL), IMS_OK);
    CHECK(memcmp(out, out2, sizeof(float) * 3 * S * S) == 0);
    ims_image_free(crop);
    free(out2);

    /* more crop geometry */
    ims_preprocess q;
    ims_preprocess_nsfwjs(&q, 1);
    q.crop = IMS_CROP_CENTER;
    q.width = 50, q.height = 100; /* aspect 1:2 from 100x300 (1:3): crop rows */
    ims__preprocess_crop(100, 300, &q, r4);
    CHECK(r4[0] == 0 && r4[1] == 50 && r4[2] == 100 && r4[3] == 200);
    ims__preprocess_crop(100, 200, &q, r4); /* same aspect: whole image */
    CHECK(r4[0] == 0 && r4[1] == 0 && r4[2] == 100 && r4[3] == 200);
    q.width = 299, q.height = 299;
    ims__preprocess_crop(1, 1000, &q, r4);
    CHECK(r4[0] == 0 && r4[1] == 499 && r4[2] == 1 && r4[3] == 1);
    q.crop = IMS_CROP_STRETCH;
    ims__preprocess_crop(640, 480, &q, r4);
    CHECK(r4[0] == 0 && r4[1] == 0 && r4[2] == 640 && r4[3] == 480);

    /* bad recipes */
    ims_error err;
    ims_preprocess_nsfwjs(&pp, 224);
    pp.resize = 7;
    CHECK_RC(ims_image_preprocess(img, &pp, out, &err), IMS_EINVAL);
    ims_preprocess_nsfwjs(&pp, 0);
    CHECK_RC(ims_image_preprocess(img, &pp, out, &err), IMS_EINVAL);
    ims_preprocess_nsfwjs(&pp, 224);
    pp.std[1] = 0;
    CHECK_RC(ims_image_preprocess(img, &pp, out, &err), IMS_EINVAL);
    ims_preprocess_nsfwjs(&pp, 224);
    pp.crop = -1;
    CHECK_RC(ims_image_preprocess(img, &pp, out, &err), IMS_EINVAL);
    free(out);
    ims_image_free(img);
    ims_image_free(NULL);
    CHECK_RC(ims_image_new(0, 5, &img), IMS_EINVAL);
}

int main(int argc, char **argv)
{
    (void)argc;
    ims_init();
    if (VIPS_INIT(argv[0]))
        return check_skip("libvips failed to start");
    test_formats();
    test_orientation();
    test_alpha_grey_16bit();
    test_cmyk();
    test_gif_first_frame();
    test_bad_inputs();
    test_bomb();
    test_shrink_on_load();
    test_oom();
    test_threads();
    test_preprocess_reference();
    test_preprocess_bit_exact();
    test_preprocess_exact();
    return check_report();
}
