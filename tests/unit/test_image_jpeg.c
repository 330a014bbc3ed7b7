/* SPDX-License-Identifier: MIT */
/*
 * test_image_jpeg.c — the direct libjpeg decode (src/image/jpeg_decode.c)
 * against the libvips path it stands in for.
 *
 * Every input is loaded twice, once by default (the direct decode where
 * it applies) and once with it turned off for this thread
 * (ims__image_set_jpeg_direct(0): the libvips path as before); both must
 * give the same code and message, or the same width, height, format and
 * bytes. The check (ims_image_check_memory), whose fallback is a full
 * load, must agree with itself both ways too. Which inputs took the
 * direct decode is counted (ims__image_n_jpeg_direct), so a decode that
 * quietly always declined would fail here.
 *
 * Inputs: every sample photo (data/food, from files and from memory;
 * skipped when absent), JPEGs made here with libjpeg (4:4:4, 4:2:2,
 * 4:2:0, 4:4:0, 4:1:1, progressive, arithmetic, restart markers, RGB
 * colour space, grey, CMYK, odd sizes down to 1x1) and with libvips
 * (grey, CMYK, EXIF orientation 1, 6 and 8), each whole, cut and
 * corrupted at many points; APP1 markers (XMP, EXIF valid, rotated, out
 * of range, twice, cut short, not TIFF: libvips's header comes first
 * wherever one starts "Exif"); the pixel limit and shrink_to; the JPEGs
 * of the image fuzz corpus; allocation failures; and four threads
 * decoding at once.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <vips/vips.h>

#include "check.h"
#include "fail_alloc.h"
#include "image/image_int.h"
#include "imgsim/image.h"
#include "imgsim/imgsim.h"

/* ---- helpers ------------------------------------------------------------- */

static int quiet; /* no line per input */

/* Load path (or, path NULL, buf) both ways; check they agree. Returns 1 if
 * the default way took the direct decode, 0 if not, -1 if they disagree. */
static int both_ways(const char *what, const char *path, const void *buf, size_t len,
                     const ims_image_opts *o)
{
    ims_image *a = NULL, *b = NULL;
    ims_error ea, eb;
    ims_error_clear(&ea);
    ims_error_clear(&eb);
    const unsigned long n0 = ims__image_n_jpeg_direct();
    int ra =
        path ? ims_image_load_file(path, o, &a, &ea) : ims_image_load_memory(buf, len, o, &a, &ea);
    const int direct = ims__image_n_jpeg_direct() != n0;
    CHECK(ims__image_set_jpeg_direct(0) == 1);
    int rb =
        path ? ims_image_load_file(path, o, &b, &eb) : ims_image_load_memory(buf, len, o, &b, &eb);
    CHECK(ims__image_set_jpeg_direct(1) == 0);
    CHECK_MSG(ims__image_n_jpeg_direct() == n0 + (unsigned long)direct,
              "%s: direct decode taken while turned off", what);
    int bad = 0;
    if (ra != rb) {
        CHECK_FAIL_("%s: %s (%s) by default, %s (%s) via libvips", what, ims_errname(ra), ea.msg,
                    ims_errname(rb), eb.msg);
        bad = 1;
    } else if (ra) {
        CHECK_MSG(!(bad = strcmp(ea.msg, eb.msg) != 0), "%s: \"%s\" by default, \"%s\" via libvips",
                  what, ea.msg, eb.msg);
    } else {
        CHECK_MSG(!(bad = a->width != b->width || a->height != b->height ||
                          strcmp(a->format, b->format) != 0),
                  "%s: %dx%d %s by default, %dx%d %s via libvips", what, a->width, a->height,
                  a->format, b->width, b->height, b->format);
        if (!bad)
            CHECK_MSG(!(bad = memcmp(a->rgb, b->rgb, (size_t)a->width * a->height * 3) != 0),
                      "%s: pixels differ from libvips's", what);
    }
    CHECK_MSG(!direct || ra == IMS_OK, "%s: a direct decode that failed", what);
    if (!quiet)
        printf("  %-44s %-11s %s\n", what, ra ? ims_errname(ra) : "ok",
               direct ? "direct" : "libvips");
    ims_image_free(a);
    ims_image_free(b);

    if (!path) { /* the check: its full-decode fallback may take the direct decode */
        ims_image_info ia, ib;
        ra = ims_image_check_memory(buf, len, o, &ia, &ea);
        ims__image_set_jpeg_direct(0);
        rb = ims_image_check_memory(buf, len, o, &ib, &eb);
        ims__image_set_jpeg_direct(1);
        CHECK_MSG(ra == rb, "%s: check gives %s by default, %s via libvips", what, ims_errname(ra),
                  ims_errname(rb));
        if (ra == rb && ra)
            CHECK_STR_EQ(ea.msg, eb.msg);
        if (ra == rb && !ra) {
            CHECK_EQ(ia.width, ib.width);
            CHECK_EQ(ia.height, ib.height);
            CHECK_STR_EQ(ia.format, ib.format);
        }
    }
    return bad ? -1 : direct;
}

static void *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    *len = 0;
    if (f && fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        rewind(f);
        if (n > 0 && (buf = malloc((size_t)n)) && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else
            *len = n > 0 ? (size_t)n : 0;
    }
    if (f)
        fclose(f);
    return buf;
}

static void write_all(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f && fwrite(buf, 1, len, f) == len, "cannot write %s", path);
    if (f)
        fclose(f);
}

/* A w x h picture of `bands` bands: smooth gradients under noise, so every
 * sampling and IDCT path has something to do. */
static unsigned char *picture(int w, int h, int bands, unsigned long long seed)
{
    unsigned char *p = malloc((size_t)w * h * bands);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < bands; c++) {
                int v =
                    (x * 255 / (w > 1 ? w - 1 : 1) * (c + 1) + y * 97 / (h > 1 ? h - 1 : 1)) % 256 +
                    (int)(check_rand_u64(&seed) % 61) - 30;
                p[((size_t)y * w + x) * bands + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

typedef struct jenc {
    const char *name;
    int bands;              /* 1, 3 or 4 input components */
    J_COLOR_SPACE in, jpeg; /* input and stored colour spaces */
    int h0, v0;             /* sampling factors of the first component */
    int progressive, arith, restart, quality;
} jenc;

/* Encode with libjpeg directly, with up to two APP1 markers (app1[i] of
 * n_app1[i] bytes, where not NULL); free() the result. */
static unsigned char *encode_app1(const jenc *o, const unsigned char *px, int w, int h,
                                  const char *const app1[2], const unsigned n_app1[2], size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *out = NULL;
    unsigned long n = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = o->bands;
    c.in_color_space = o->in;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, o->jpeg);
    jpeg_set_quality(&c, o->quality, TRUE);
    c.comp_info[0].h_samp_factor = o->h0;
    c.comp_info[0].v_samp_factor = o->v0;
    if (o->progressive)
        jpeg_simple_progression(&c);
    c.arith_code = o->arith ? TRUE : FALSE;
    c.restart_interval = (unsigned)o->restart;
    jpeg_start_compress(&c, TRUE);
    for (int i = 0; app1 && i < 2; i++)
        if (app1[i])
            jpeg_write_marker(&c, JPEG_APP0 + 1, (const JOCTET *)app1[i], n_app1[i]);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)px + (size_t)c.next_scanline * w * o->bands;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = n;
    return out;
}

static unsigned char *encode(const jenc *o, const unsigned char *px, int w, int h, size_t *len)
{
    return encode_app1(o, px, w, h, NULL, NULL, len);
}

/* A libvips-made JPEG of `bands` bands tagged interp, with an EXIF
 * orientation when orientation > 0; g_free() the result. */
static void *vips_jpeg(int w, int h, int bands, VipsInterpretation interp, int orientation,
                       size_t *len)
{
    unsigned char *p = picture(w, h, bands, 99);
    VipsImage *a = vips_image_new_from_memory_copy(p, (size_t)w * h * bands, w, h, bands,
                                                   VIPS_FORMAT_UCHAR),
              *b = NULL;
    void *buf = NULL;
    *len = 0;
    if (!a || vips_copy(a, &b, "interpretation", interp, NULL))
        fprintf(stderr, "vips_jpeg: %s\n", vips_error_buffer());
    else {
        if (orientation > 0)
            vips_image_set_int(b, VIPS_META_ORIENTATION, orientation);
        if (vips_jpegsave_buffer(b, &buf, len, "Q", 90, NULL))
            fprintf(stderr, "vips_jpeg: %s\n", vips_error_buffer());
    }
    if (b)
        g_object_unref(b);
    if (a)
        g_object_unref(a);
    free(p);
    return buf;
}

/* buf whole, then cut and corrupted at n_cuts points each, both ways.
 * Returns how many of the mutants the direct decode accepted. */
static int mutants(const char *name, const unsigned char *buf, size_t len, int n_cuts,
                   unsigned long long seed)
{
    char what[128];
    unsigned char *m = malloc(len);
    int n_direct = 0;
    const int was_quiet = quiet;
    quiet = 1;
    for (int i = 0; i < n_cuts; i++) {
        /* cuts everywhere, most near the end (the last rows, EOI) */
        size_t cut = i < n_cuts / 2 ? 2 + (len - 2) * (size_t)i / (size_t)(n_cuts / 2)
                                    : len - 1 - (size_t)(i - n_cuts / 2) % 64;
        snprintf(what, sizeof what, "%s cut to %zu/%zu", name, cut, len);
        n_direct += both_ways(what, NULL, buf, cut, NULL) == 1;

        /* one byte changed, anywhere after SOI */
        memcpy(m, buf, len);
        size_t at = 2 + check_rand_u64(&seed) % (len - 2);
        m[at] ^= (unsigned char)(1 + check_rand_u64(&seed) % 255);
        snprintf(what, sizeof what, "%s byte %zu/%zu changed", name, at, len);
        n_direct += both_ways(what, NULL, m, len, NULL) == 1;

        /* a run of noise in the entropy data */
        memcpy(m, buf, len);
        at = len / 3 + check_rand_u64(&seed) % (len / 2);
        for (size_t k = at; k < at + 16 && k < len - 2; k++)
            m[k] = (unsigned char)check_rand_u64(&seed);
        snprintf(what, sizeof what, "%s noise at %zu/%zu", name, at, len);
        n_direct += both_ways(what, NULL, m, len, NULL) == 1;
    }
    quiet = was_quiet;
    free(m);
    printf("  %-44s %d mutants, %d accepted by the direct decode\n", name, 3 * n_cuts, n_direct);
    return n_direct;
}

/* ---- the sample photos (the default path first) ------------------------- */

static int n_photos;

static void test_sample_photos(const char *food)
{
    DIR *d = opendir(food);
    struct dirent *g;
    char dir[8192], path[8192 + 256];
    int n_direct = 0, n_direct_mem = 0;
    quiet = 1;
    while (d && (g = readdir(d))) {
        if (g->d_name[0] == '.')
            continue;
        snprintf(dir, sizeof dir, "%s/%s", food, g->d_name);
        DIR *d2 = opendir(dir);
        struct dirent *e;
        while (d2 && (e = readdir(d2))) {
            const char *dot = strrchr(e->d_name, '.');
            if (e->d_name[0] == '.' || !dot || (strcmp(dot, ".jpeg") && strcmp(dot, ".jpg")))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            n_photos++;
            n_direct += both_ways(path, path, NULL, 0, NULL) == 1;
            size_t len;
            void *buf = read_all(path, &len);
            CHECK_MSG(buf != NULL, "cannot read %s", path);
            if (buf)
                n_direct_mem += both_ways(path, NULL, buf, len, NULL) == 1;
            free(buf);
        }
        if (d2)
            closedir(d2);
    }
    if (d)
        closedir(d);
    quiet = 0;
    printf("sample photos: %d, direct decode %d from files, %d from memory\n", n_photos, n_direct,
           n_direct_mem);
    /* they are all plain baseline/progressive YCbCr JPEGs without rotation */
    CHECK_EQ(n_direct, n_photos);
    CHECK_EQ(n_direct_mem, n_photos);
}

/* ---- made-up JPEGs ---------------------------------------------------- */

static void test_libjpeg_made(void)
{
    static const jenc E[] = {
        {"4:2:0", 3, JCS_RGB, JCS_YCbCr, 2, 2, 0, 0, 0, 75},
        {"4:4:4 Q100", 3, JCS_RGB, JCS_YCbCr, 1, 1, 0, 0, 0, 100},
        {"4:2:2", 3, JCS_RGB, JCS_YCbCr, 2, 1, 0, 0, 0, 85},
        {"4:4:0", 3, JCS_RGB, JCS_YCbCr, 1, 2, 0, 0, 0, 85},
        {"4:1:1", 3, JCS_RGB, JCS_YCbCr, 4, 1, 0, 0, 0, 85},
        {"4:2:0 progressive", 3, JCS_RGB, JCS_YCbCr, 2, 2, 1, 0, 0, 80},
        {"4:2:0 arithmetic", 3, JCS_RGB, JCS_YCbCr, 2, 2, 0, 1, 0, 80},
        {"4:2:0 restart 1", 3, JCS_RGB, JCS_YCbCr, 2, 2, 0, 0, 1, 80},
        {"4:4:4 progressive restart 3", 3, JCS_RGB, JCS_YCbCr, 1, 1, 1, 0, 3, 90},
        {"RGB colour space", 3, JCS_RGB, JCS_RGB, 1, 1, 0, 0, 0, 90},
        {"grey", 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 1, 1, 0, 0, 0, 90},
        {"grey progressive", 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 1, 1, 1, 0, 0, 90},
        {"CMYK", 4, JCS_CMYK, JCS_CMYK, 1, 1, 0, 0, 0, 90},
        {"YCCK", 4, JCS_CMYK, JCS_YCCK, 2, 2, 0, 0, 0, 90},
    };
    static const int S[][2] = {{67, 45}, {1, 1}, {17, 1}, {1, 17}, {16, 16}, {33, 9}};
    char what[128], path[64];
    snprintf(path, sizeof path, "/tmp/ims_test_jpeg_%d.jpeg", (int)getpid());
    for (size_t i = 0; i < IMS_ARRAY_LEN(E); i++) {
        const int want_direct = E[i].bands != 4;
        /* CMYK at two sizes and 3 mutants: libvips's CMYK to sRGB (lcms) costs
         * ~25 ms a load */
        for (size_t k = 0; k < (want_direct ? IMS_ARRAY_LEN(S) : 2); k++) {
            const int w = S[k][0], h = S[k][1];
            unsigned char *p = picture(w, h, E[i].bands, 7 + i);
            size_t len;
            unsigned char *buf = encode(&E[i], p, w, h, &len);
            snprintf(what, sizeof what, "%s %dx%d", E[i].name, w, h);
            CHECK_EQ(both_ways(what, NULL, buf, len, NULL), want_direct);
            write_all(path, buf, len);
            snprintf(what, sizeof what, "%s %dx%d (file)", E[i].name, w, h);
            CHECK_EQ(both_ways(what, path, NULL, 0, NULL), want_direct);
            if (k == 0) {
                const int n_cuts = want_direct ? 40 : 1;
                int n = mutants(E[i].name, buf, len, n_cuts, 1000 + i);
                CHECK_MSG(n < 3 * n_cuts, "%s: the direct decode accepted every mutant", E[i].name);
            }
            free(buf);
            free(p);
        }
    }
    unlink(path);
}

/* EXIF (TIFF, little-endian) with one IFD0 entry: Orientation = o. */
#define EXIF_ORIENTATION(o) \
    "Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0" o "\0\0\0\0\0\0\0"

/* APP1 markers: the direct decode skips libvips only without "Exif"; with
 * it, libvips's header (its EXIF parse, orientation) comes first. */
static void test_app1(void)
{
    static const char xmp[] = "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x='adobe:ns:meta/'/>";
    static const char o1[] = EXIF_ORIENTATION("\x01\0"), o6[] = EXIF_ORIENTATION("\x06\0"),
                      o9[] = EXIF_ORIENTATION("\x09\0");
    static const char junk[] = "Exif\0\0\x13\x37 not a TIFF header at all", bare[] = "Exif";
    static const struct {
        const char *name;
        const char *app1[2];
        unsigned n_app1[2];
        int want_direct; /* -1: only agreement */
    } M[] = {
        {"XMP", {xmp}, {sizeof xmp - 1}, 1},
        {"EXIF orientation 1", {o1}, {sizeof o1 - 1}, 1},
        {"EXIF orientation 6", {o6}, {sizeof o6 - 1}, 0},
        {"EXIF orientation 9", {o9}, {sizeof o9 - 1}, -1},
        {"EXIF 1 then EXIF 6", {o1, o6}, {sizeof o1 - 1, sizeof o6 - 1}, -1},
        {"XMP then EXIF 6", {xmp, o6}, {sizeof xmp - 1, sizeof o6 - 1}, 0},
        {"EXIF that is not TIFF", {junk}, {sizeof junk - 1}, -1},
        {"\"Exif\" alone", {bare}, {sizeof bare - 1}, -1},
        {"EXIF cut short", {o6}, {12}, -1},
    };
    for (size_t i = 0; i < IMS_ARRAY_LEN(M); i++) {
        static const jenc E = {"4:2:0", 3, JCS_RGB, JCS_YCbCr, 2, 2, 0, 0, 0, 85};
        unsigned char *p = picture(24, 16, 3, 21 + i);
        size_t len;
        unsigned char *buf = encode_app1(&E, p, 24, 16, M[i].app1, M[i].n_app1, &len);
        const int got = both_ways(M[i].name, NULL, buf, len, NULL);
        if (M[i].want_direct >= 0)
            CHECK_EQ(got, M[i].want_direct);
        else
            CHECK(got >= 0);
        free(buf);
        free(p);
    }
}

/* The limits and shrink_to on a JPEG without EXIF: refused by the direct
 * decode before libvips, so libvips's header gives the verdict. */
static void test_limits(void)
{
    static const jenc E = {"4:2:0", 3, JCS_RGB, JCS_YCbCr, 2, 2, 0, 0, 0, 75};
    unsigned char *p = picture(64, 40, 3, 17);
    size_t len;
    unsigned char *buf = encode(&E, p, 64, 40, &len);
    ims_image_opts o = {.max_pixels = 64 * 40 - 1};
    CHECK_EQ(both_ways("over max_pixels", NULL, buf, len, &o), 0);
    o.max_pixels = 64 * 40;
    CHECK_EQ(both_ways("at max_pixels", NULL, buf, len, &o), 1);
    o = (ims_image_opts){.shrink_to = 20}; /* 40/2 >= 20: shrink 2 */
    CHECK_EQ(both_ways("shrink_to 20", NULL, buf, len, &o), 0);
    o.shrink_to = 21; /* 40/2 < 21: no shrink */
    CHECK_EQ(both_ways("shrink_to 21", NULL, buf, len, &o), 1);
    free(buf);
    free(p);
}

static void test_vips_made(void)
{
    static const struct {
        const char *name;
        int bands;
        VipsInterpretation interp;
        int orientation, want_direct;
    } V[] = {
        {"libvips sRGB", 3, VIPS_INTERPRETATION_sRGB, 0, 1},
        {"libvips grey", 1, VIPS_INTERPRETATION_B_W, 0, 1},
        {"libvips CMYK", 4, VIPS_INTERPRETATION_CMYK, 0, 0},
        {"libvips EXIF orientation 1", 3, VIPS_INTERPRETATION_sRGB, 1, 1},
        {"libvips EXIF orientation 6", 3, VIPS_INTERPRETATION_sRGB, 6, 0},
        {"libvips grey EXIF orientation 8", 1, VIPS_INTERPRETATION_B_W, 8, 0},
    };
    char what[128];
    for (size_t i = 0; i < IMS_ARRAY_LEN(V); i++) {
        size_t len;
        unsigned char *buf = vips_jpeg(61, 37, V[i].bands, V[i].interp, V[i].orientation, &len);
        CHECK_MSG(buf != NULL, "%s: libvips could not make it", V[i].name);
        if (!buf)
            continue;
        CHECK_EQ(both_ways(V[i].name, NULL, buf, len, NULL), V[i].want_direct);
        /* truncated, then corrupt: libvips's verdict and message */
        snprintf(what, sizeof what, "%s, truncated", V[i].name);
        CHECK_EQ(both_ways(what, NULL, buf, len / 2, NULL), 0);
        unsigned char *m = malloc(len);
        memcpy(m, buf, len);
        unsigned long long s = 5;
        for (size_t k = len / 3; k < len - 2; k++)
            m[k] = (unsigned char)check_rand_u64(&s);
        snprintf(what, sizeof what, "%s, corrupt", V[i].name);
        CHECK_EQ(both_ways(what, NULL, m, len, NULL), 0);
        free(m);
        if (V[i].want_direct) { /* what leaves the direct decode out */
            ims_image_opts o = {.shrink_to = 8};
            snprintf(what, sizeof what, "%s, shrink_to 8", V[i].name);
            CHECK_EQ(both_ways(what, NULL, buf, len, &o), 0);
            o = (ims_image_opts){.max_pixels = 61 * 37 - 1};
            snprintf(what, sizeof what, "%s, over max_pixels", V[i].name);
            CHECK_EQ(both_ways(what, NULL, buf, len, &o), 0);
            o = (ims_image_opts){.max_pixels = 61 * 37};
            snprintf(what, sizeof what, "%s, at max_pixels", V[i].name);
            CHECK_EQ(both_ways(what, NULL, buf, len, &o), 1);
        }
        g_free(buf);
    }
}

/* The JPEGs of the image fuzz corpus (bombs, odd files). The others do not
 * meet the switch, and libwebp's verdict on one of them is not stable. */
static void test_corpus(void)
{
    const char *src = getenv("IMS_SOURCE_DIR");
    char dir[4096], path[4096 + 256];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/image", src ? src : ".");
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        void *buf = read_all(path, &len);
        if (buf && len >= 3 && memcmp(buf, "\xff\xd8\xff", 3) == 0) {
            both_ways(e->d_name, NULL, buf, len, NULL);
            both_ways(e->d_name, path, NULL, 0, NULL);
            n++;
        }
        free(buf);
    }
    if (d)
        closedir(d);
    CHECK(n > 0);
}

/* ---- allocation failures ------------------------------------------------ */

/* Fail the Nth allocation, for every N, both ways: the same codes (and
 * IMS_ENOMEM, no leak: ASan) until the load gets through. */
static void test_oom(void)
{
    static const jenc E = {"4:2:0", 3, JCS_RGB, JCS_YCbCr, 2, 2, 0, 0, 0, 75};
    unsigned char *p = picture(40, 30, 3, 3);
    size_t len;
    unsigned char *buf = encode(&E, p, 40, 30, &len);
    ims_allocator a = {fail_malloc, fail_realloc, plain_free, NULL};
    int rc[2] = {0, 0};
    for (fail_at = 1; fail_at < 20; fail_at++) {
        for (int way = 0; way < 2; way++) {
            ims_image *img = NULL;
            ims_error err;
            const unsigned long n0 = ims__image_n_jpeg_direct();
            ims__image_set_jpeg_direct(way == 0);
            n_calls = 0;
            ims_set_allocator(&a);
            rc[way] = ims_image_load_memory(buf, len, NULL, &img, &err);
            ims_set_allocator(NULL);
            ims__image_set_jpeg_direct(1);
            if (rc[way])
                CHECK_RC(rc[way], IMS_ENOMEM);
            if (way == 0 && rc[way] == IMS_OK)
                CHECK(ims__image_n_jpeg_direct() == n0 + 1);
            ims_image_free(img);
        }
        CHECK_MSG(rc[0] == rc[1], "fail allocation %d: %s by default, %s via libvips", fail_at,
                  ims_errname(rc[0]), ims_errname(rc[1]));
        if (rc[0] == IMS_OK && rc[1] == IMS_OK)
            break;
    }
    CHECK(fail_at > 1 && fail_at < 20);
    free(buf);
    free(p);
}

/* ---- threads -------------------------------------------------------------- */

typedef struct job {
    const unsigned char *buf[4];
    size_t len[4];
    const unsigned char *want[4]; /* libvips's pixels */
    size_t n_want[4];
    int bad;
    unsigned long n_direct;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    for (int r = 0; r < 25; r++) {
        const int i = r % 4;
        ims_image *img = NULL;
        if (ims_image_load_memory(j->buf[i], j->len[i], NULL, &img, NULL) != IMS_OK ||
            (size_t)img->width * img->height * 3 != j->n_want[i] ||
            memcmp(img->rgb, j->want[i], j->n_want[i]) != 0)
            j->bad++;
        ims_image_free(img);
    }
    j->n_direct = ims__image_n_jpeg_direct();
    return NULL;
}

/* The default path, four threads at once: each gets libvips's pixels, and
 * each thread's own switch and count. */
static void test_threads(void)
{
    static const jenc E[4] = {
        {"4:2:0", 3, JCS_RGB, JCS_YCbCr, 2, 2, 0, 0, 0, 75},
        {"4:4:4 progressive", 3, JCS_RGB, JCS_YCbCr, 1, 1, 1, 0, 0, 90},
        {"grey", 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 1, 1, 0, 0, 0, 90},
        {"4:2:2 restart", 3, JCS_RGB, JCS_YCbCr, 2, 1, 0, 0, 2, 85},
    };
    job jobs[4];
    unsigned char *bufs[4], *want[4];
    ims__image_set_jpeg_direct(0); /* this thread only */
    memset(&jobs[0], 0, sizeof jobs[0]);
    for (int i = 0; i < 4; i++) {
        unsigned char *p = picture(96 + 8 * i, 64, E[i].bands, 11 + i);
        bufs[i] = encode(&E[i], p, 96 + 8 * i, 64, &jobs[0].len[i]);
        ims_image *img = NULL;
        CHECK_RC(ims_image_load_memory(bufs[i], jobs[0].len[i], NULL, &img, NULL), IMS_OK);
        jobs[0].buf[i] = bufs[i];
        jobs[0].n_want[i] = img ? (size_t)img->width * img->height * 3 : 0;
        want[i] = img ? img->rgb : NULL;
        jobs[0].want[i] = want[i];
        if (img)
            img->rgb = NULL;
        ims_image_free(img);
        free(p);
    }
    const unsigned long n0 = ims__image_n_jpeg_direct();
    pthread_t th[4];
    for (int i = 1; i < 4; i++) /* all copied before any thread starts */
        jobs[i] = jobs[0];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(jobs[i].bad, 0);
        CHECK_EQ(jobs[i].n_direct, 25); /* a new thread starts with the default: on */
    }
    CHECK_EQ(ims__image_n_jpeg_direct(), n0); /* and this one's stayed off */
    ims__image_set_jpeg_direct(1);
    for (int i = 0; i < 4; i++) {
        free(bufs[i]);
        ims_free(want[i]);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    ims_init();
    if (VIPS_INIT(argv[0]))
        return check_skip("libvips failed to start");
    const char *data = getenv("IMS_DATA_DIR");
    char food[4096];
    snprintf(food, sizeof food, "%s/food", data ? data : "data");
    test_sample_photos(food);
    test_libjpeg_made();
    test_app1();
    test_limits();
    test_vips_made();
    test_corpus();
    test_oom();
    test_threads();
    if (n_photos == 0)
        return check_report() ? 1 : check_skip("sample photos (scripts/fetch-sample-data)");
    return check_report();
}
