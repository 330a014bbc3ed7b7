/* SPDX-License-Identifier: MIT */
/*
 * test_image_check.c — ims_image_check_memory() against
 * ims_image_load_memory(): on every input both must return the same code
 * and the same message, and an accepted image the same width, height
 * (after EXIF rotation) and format.
 *
 * Inputs: crafted images (baseline and progressive JPEGs of noise, CMYK,
 * grey, EXIF-rotated, 1x1 and 9x9 JPEGs, PNGs, WebP, GIF, TIFF) each whole,
 * cut at several points, with corrupted entropy data in the middle; a PNG
 * with a bad CRC in IDAT and in an ancillary chunk; a JPEG with a stray
 * byte between segments (the check's frame-size walk gives up there); an
 * over-limit JPEG; then the real sample photos (data/food), whole and
 * mutated the same ways.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "check.h"
#include "core/core_int.h"
#include "imgsim/image.h"
#include "imgsim/imgsim.h"

static int n_agree, n_rejected;
static int quiet; /* no line per input (the sample photos) */

/* Both ways over buf; want >= 0: the code the full decode must give. */
static void agree(const char *what, const void *buf, size_t len, uint64_t max_pixels, int want)
{
    ims_image_opts o = {.max_pixels = max_pixels};
    ims_image *img = NULL;
    ims_image_info info;
    ims_error e_load, e_check;
    ims_error_clear(&e_load);
    ims_error_clear(&e_check);
    int rc_load = ims_image_load_memory(buf, len, &o, &img, &e_load);
    int rc_check = ims_image_check_memory(buf, len, &o, &info, &e_check);
    n_agree++;
    n_rejected += rc_load != IMS_OK;
    if (want >= 0)
        CHECK_MSG(rc_load == want, "%s: load gives %s, want %s (%s)", what, ims_errname(rc_load),
                  ims_errname(want), e_load.msg);
    CHECK_MSG(rc_check == rc_load, "%s: check %s (%s) but load %s (%s)", what,
              ims_errname(rc_check), e_check.msg, ims_errname(rc_load), e_load.msg);
    if (rc_load == IMS_OK && rc_check == IMS_OK) {
        CHECK_MSG(info.width == img->width && info.height == img->height,
                  "%s: check %dx%d, load %dx%d", what, info.width, info.height, img->width,
                  img->height);
        CHECK_STR_EQ(info.format, img->format);
    } else if (rc_load != IMS_OK && rc_check != IMS_OK) {
        CHECK_MSG(!strcmp(e_check.msg, e_load.msg),
                  "%s: messages differ:\n  load:  %s\n  check: %s", what, e_load.msg, e_check.msg);
    }
    if (!quiet)
        printf("  %-60s %s\n", what, rc_load ? ims_errname(rc_load) : "ok");
    if (rc_check != IMS_OK)
        CHECK_MSG(info.width == 0 && info.height == 0 && !info.format[0], "%s: info not zeroed",
                  what);
    ims_image_free(img);
}

/* The whole image and its mutations: cuts, and noise over the middle. */
static void agree_mutations(const char *what, const unsigned char *buf, size_t len, int expect_bad,
                            unsigned long long *seed)
{
    char name[256];
    unsigned char *b = malloc(len);
    agree(what, buf, len, 0, IMS_OK);
    const size_t cuts[] = {len / 2, len * 9 / 10, len - 2 /* no EOI / trailer */, 20};
    for (size_t i = 0; i < IMS_ARRAY_LEN(cuts); i++) {
        snprintf(name, sizeof name, "%s cut to %zu of %zu bytes", what, cuts[i], len);
        agree(name, buf, cuts[i], 0, expect_bad && i < 2 ? IMS_ECORRUPT : -1);
    }
    /* 16 bytes of noise in the middle of the data (entropy-coded for JPEG) */
    memcpy(b, buf, len);
    for (size_t k = len / 2; k < len / 2 + 16 && k < len - 2; k++)
        b[k] = (unsigned char)check_rand_u64(seed);
    snprintf(name, sizeof name, "%s with 16 noise bytes at %zu", what, len / 2);
    agree(name, b, len, 0, -1);
    /* one flipped bit in the middle */
    memcpy(b, buf, len);
    b[len / 2 + 1] ^= 0x10;
    snprintf(name, sizeof name, "%s with a flipped bit at %zu", what, len / 2 + 1);
    agree(name, b, len, 0, -1);
    free(b);
}

static VipsImage *noise(int w, int h, int bands, VipsInterpretation interp,
                        unsigned long long *seed)
{
    size_t n = (size_t)w * h * bands;
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)check_rand_u64(seed);
    VipsImage *a = vips_image_new_from_memory_copy(p, n, w, h, bands, VIPS_FORMAT_UCHAR), *b = NULL;
    free(p);
    if (!a || vips_copy(a, &b, "interpretation", interp, NULL))
        fprintf(stderr, "noise: %s\n", vips_error_buffer());
    g_object_unref(a);
    return b;
}

static unsigned char *enc(VipsImage *im, const char *suffix, size_t *len)
{
    void *buf = NULL;
    *len = 0;
    if (vips_image_write_to_buffer(im, suffix, &buf, len, NULL))
        fprintf(stderr, "enc %s: %s\n", suffix, vips_error_buffer());
    return buf;
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

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Offset of the first chunk of that type in a PNG, or 0. */
static size_t png_find(const unsigned char *b, size_t len, const char *type)
{
    for (size_t i = 8; i + 12 <= len; i += 12 + get_be32(b + i))
        if (!memcmp(b + i + 4, type, 4))
            return i;
    return 0;
}

static void test_jpeg(unsigned long long *seed)
{
    static const struct {
        const char *what, *suffix;
        int bands;
        VipsInterpretation interp;
    } J[] = {
        {"baseline jpeg", ".jpeg[Q=90]", 3, VIPS_INTERPRETATION_sRGB},
        {"progressive jpeg", ".jpeg[Q=90,interlace]", 3, VIPS_INTERPRETATION_sRGB},
        {"4:4:4 jpeg", ".jpeg[Q=95,subsample_mode=off]", 3, VIPS_INTERPRETATION_sRGB},
        {"optimised-coding jpeg", ".jpeg[Q=80,optimize_coding]", 3, VIPS_INTERPRETATION_sRGB},
        {"CMYK jpeg", ".jpeg[Q=90]", 4, VIPS_INTERPRETATION_CMYK},
        {"progressive CMYK jpeg", ".jpeg[Q=90,interlace]", 4, VIPS_INTERPRETATION_CMYK},
        {"grey jpeg", ".jpeg[Q=90]", 1, VIPS_INTERPRETATION_B_W},
        {"progressive grey jpeg", ".jpeg[Q=90,interlace]", 1, VIPS_INTERPRETATION_B_W},
    };
    for (size_t i = 0; i < IMS_ARRAY_LEN(J); i++) {
        VipsImage *im = noise(203, 117, J[i].bands, J[i].interp, seed);
        size_t len;
        unsigned char *buf = enc(im, J[i].suffix, &len);
        if (buf)
            agree_mutations(J[i].what, buf, len, 1, seed);
        g_free(buf);
        g_object_unref(im);
    }
    /* odd small sizes: the 1/8-scale decode rounds up */
    static const int S[][2] = {{1, 1}, {9, 9}, {8, 17}, {15, 1}};
    for (size_t i = 0; i < IMS_ARRAY_LEN(S); i++) {
        VipsImage *im = noise(S[i][0], S[i][1], 3, VIPS_INTERPRETATION_sRGB, seed);
        size_t len;
        unsigned char *buf = enc(im, ".jpeg", &len);
        char what[64];
        snprintf(what, sizeof what, "%dx%d jpeg", S[i][0], S[i][1]);
        agree(what, buf, len, 0, IMS_OK);
        g_free(buf);
        g_object_unref(im);
    }
    /* over the pixel limit (checked from the header by both) */
    VipsImage *im = noise(64, 48, 3, VIPS_INTERPRETATION_sRGB, seed);
    size_t len;
    unsigned char *buf = enc(im, ".jpeg", &len);
    agree("jpeg over max_pixels", buf, len, 64 * 48 - 1, IMS_ETOOBIG);
    agree("jpeg at max_pixels", buf, len, 64 * 48, IMS_OK);
    /* a stray byte before the second segment: the check's own walk of the
     * segments gives up, libjpeg skips it with a warning */
    unsigned char *b = malloc(len + 1);
    size_t at = 2 + 2 + ((size_t)buf[4] << 8 | buf[5]); /* after SOI and the first segment */
    memcpy(b, buf, at);
    b[at] = 0x00;
    memcpy(b + at + 1, buf + at, len - at);
    agree("jpeg with a stray byte between segments", b, len + 1, 0, -1);
    /* FF 00 and an RST marker where a segment should start: libjpeg skips
     * them (with a warning), the check's walk gives up */
    b[at] = 0xff;
    unsigned char *b2 = malloc(len + 2);
    memcpy(b2, b, at);
    b2[at] = 0xff, b2[at + 1] = 0x00;
    memcpy(b2 + at + 2, buf + at, len - at);
    agree("jpeg with FF 00 between segments", b2, len + 2, 0, -1);
    b2[at + 1] = 0xd3;
    agree("jpeg with an RST3 marker between segments", b2, len + 2, 0, -1);
    free(b2);
    /* fill bytes (0xFF) before a marker are legal */
    b[at] = 0xff;
    agree("jpeg with a fill byte between segments", b, len + 1, 0, IMS_OK);
    free(b);
    g_free(buf);
    g_object_unref(im);
}

static void test_orientation(unsigned long long *seed)
{
    for (int o = 1; o <= 8; o++) {
        VipsImage *im = noise(64, 24, 3, VIPS_INTERPRETATION_sRGB, seed), *t = NULL;
        vips_copy(im, &t, NULL);
        vips_image_set_int(t, VIPS_META_ORIENTATION, o);
        size_t len;
        unsigned char *buf = enc(t, ".jpeg", &len);
        char what[64];
        snprintf(what, sizeof what, "jpeg with orientation %d", o);
        agree_mutations(what, buf, len, 1, seed);
        g_free(buf);
        g_object_unref(t);
        g_object_unref(im);
    }
}

static void test_png(unsigned long long *seed)
{
    VipsImage *im = noise(97, 61, 3, VIPS_INTERPRETATION_sRGB, seed);
    size_t len0;
    unsigned char *png = enc(im, ".png", &len0);
    /* a tEXt chunk after IHDR (8 + 25 bytes) */
    static const char text_data[] = "Title\0a text chunk";
    const uint32_t n_text = sizeof text_data - 1;
    size_t len = len0 + 12 + n_text;
    unsigned char *buf = malloc(len);
    memcpy(buf, png, 33);
    buf[33] = 0, buf[34] = 0, buf[35] = 0, buf[36] = (unsigned char)n_text;
    memcpy(buf + 37, "tEXt", 4);
    memcpy(buf + 41, text_data, n_text);
    uint32_t c = crc32_png(buf + 37, 4 + n_text);
    buf[41 + n_text] = (unsigned char)(c >> 24), buf[42 + n_text] = (unsigned char)(c >> 16);
    buf[43 + n_text] = (unsigned char)(c >> 8), buf[44 + n_text] = (unsigned char)c;
    memcpy(buf + 45 + n_text, png + 33, len0 - 33);
    g_free(png);
    agree_mutations("png", buf, len, 1, seed);
    unsigned char *b = malloc(len);
    size_t idat = png_find(buf, len, "IDAT"), text = png_find(buf, len, "tEXt");
    CHECK(idat > 0);
    if (idat) { /* one data byte changed, the CRC left as it was */
        memcpy(b, buf, len);
        b[idat + 8 + get_be32(b + idat) / 2] ^= 0x01;
        agree("png with a bad IDAT CRC", b, len, 0, IMS_ECORRUPT);
        /* the same change with its CRC fixed: zlib/filter data is noise-like,
         * so the decode may or may not notice; both must agree */
        uint32_t n = get_be32(b + idat);
        c = crc32_png(b + idat + 4, n + 4);
        b[idat + 8 + n] = (unsigned char)(c >> 24), b[idat + 9 + n] = (unsigned char)(c >> 16);
        b[idat + 10 + n] = (unsigned char)(c >> 8), b[idat + 11 + n] = (unsigned char)c;
        agree("png with a changed IDAT and its CRC fixed", b, len, 0, -1);
    }
    CHECK(text == 33);
    if (text) { /* an ancillary chunk's CRC: libpng's own policy, the same both ways */
        memcpy(b, buf, len);
        agree("png with a tEXt chunk", b, len, 0, IMS_OK);
        b[text + 8] ^= 0x01;
        agree("png with a bad tEXt CRC", b, len, 0, -1);
    }
    free(b);
    free(buf);
    g_object_unref(im);

    /* RGBA and 16-bit grey PNGs go through flatten/cast in the pipeline */
    VipsImage *rgba = noise(33, 21, 4, VIPS_INTERPRETATION_sRGB, seed);
    buf = enc(rgba, ".png", &len);
    agree_mutations("rgba png", buf, len, 1, seed);
    g_free(buf);
    g_object_unref(rgba);
    VipsImage *g = noise(33, 21, 1, VIPS_INTERPRETATION_B_W, seed), *g16 = NULL;
    vips_cast(g, &g16, VIPS_FORMAT_USHORT, NULL);
    VipsImage *g16i = NULL;
    vips_copy(g16, &g16i, "interpretation", VIPS_INTERPRETATION_GREY16, NULL);
    buf = enc(g16i, ".png", &len);
    agree("16-bit grey png", buf, len, 0, IMS_OK);
    g_free(buf);
    g_object_unref(g16i), g_object_unref(g16), g_object_unref(g);
}

static void test_other_formats(unsigned long long *seed)
{
    static const char *const suffixes[] = {".webp", ".webp[lossless]", ".gif", ".tif",
                                           ".tif[compression=deflate]"};
    VipsImage *im = noise(64, 48, 3, VIPS_INTERPRETATION_sRGB, seed);
    for (size_t i = 0; i < IMS_ARRAY_LEN(suffixes); i++) {
        size_t len;
        unsigned char *buf = enc(im, suffixes[i], &len);
        if (buf)
            agree_mutations(suffixes[i], buf, len, 0, seed);
        g_free(buf);
    }
    g_object_unref(im);
    /* not images, or not supported ones */
    agree("empty", "", 0, 0, IMS_ECORRUPT);
    agree("text", "hello, world\n", 13, 0, IMS_EFORMAT);
    agree("bmp magic", "BM\x3a\0\0\0\0\0", 8, 0, IMS_EFORMAT);
    agree("jpeg magic only", "\xff\xd8\xff", 3, 0, IMS_ECORRUPT);
}

/* Every sample photo whole; every 8th also mutated. */
static void test_food(const char *food, unsigned long long *seed)
{
    DIR *d = opendir(food);
    struct dirent *g;
    int n = 0, before = n_rejected;
    quiet = 1;
    while (d && (g = readdir(d))) {
        if (g->d_name[0] == '.')
            continue;
        char gp[1024];
        snprintf(gp, sizeof gp, "%s/%s", food, g->d_name);
        DIR *e = opendir(gp);
        struct dirent *f;
        while (e && (f = readdir(e))) {
            if (!strstr(f->d_name, ".jpeg"))
                continue;
            char fp[1400];
            snprintf(fp, sizeof fp, "%s/%s", gp, f->d_name);
            FILE *fh = fopen(fp, "rb");
            if (!fh)
                continue;
            fseek(fh, 0, SEEK_END);
            long len = ftell(fh);
            fseek(fh, 0, SEEK_SET);
            unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
            size_t got = fread(b, 1, (size_t)len, fh);
            fclose(fh);
            if (got == (size_t)len && len > 64) {
                if (n % 8 == 0)
                    agree_mutations(fp, b, got, 1, seed);
                else
                    agree(fp, b, got, 0, IMS_OK);
                n++;
            }
            free(b);
        }
        if (e)
            closedir(e);
    }
    if (d)
        closedir(d);
    printf("  %d sample photos, %d rejected mutations\n", n, n_rejected - before);
    CHECK(n > 100);
}

int main(int argc, char **argv)
{
    (void)argc;
    ims_init();
    if (VIPS_INIT(argv[0]))
        return check_skip("libvips failed to start");
    unsigned long long seed = 20261202;
    test_jpeg(&seed);
    test_orientation(&seed);
    test_png(&seed);
    test_other_formats(&seed);
    const char *data = getenv("IMS_DATA_DIR");
    char food[512];
    snprintf(food, sizeof food, "%s/food", data ? data : "data");
    DIR *d = opendir(food);
    if (d) {
        closedir(d);
        test_food(food, &seed);
    } else if (getenv("IMS_REQUIRE_ASSETS")) {
        CHECK_MSG(0, "%s: sample photos not found", food);
    } else {
        printf("  (no sample photos in %s: scripts/fetch-sample-data)\n", food);
    }
    printf("  %d inputs compared, %d rejected by the full decode\n", n_agree, n_rejected);
    return check_report();
}
