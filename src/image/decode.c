/* SPDX-License-Identifier: MIT */
/*
 * decode.c — untrusted image bytes to 8-bit sRGB HWC pixels, via libvips.
 *
 * Phases of one load:
 *   1. sniff: the format is chosen from the leading bytes (magic numbers of
 *      JPEG, PNG, WebP, GIF, TIFF) and that libvips loader is called by name,
 *      so no other libvips loader or probe (ImageMagick, PDF, SVG, matlab...)
 *      ever sees the bytes;
 *   2. header: the loader is opened lazily (libvips reads the header only);
 *      width*height is checked against the pixel limit *before* any pixel is
 *      decoded, so a decompression bomb costs a header parse;
 *   3. pipeline: EXIF autorotation, colourspace to sRGB (grey, CMYK, 16-bit,
 *      Lab...), alpha flattened onto white, 3 bands of uchar. Embedded ICC
 *      profiles are not applied to RGB images: an sRGB JPEG then gives
 *      exactly libjpeg-turbo's default decode, which the TF.js reference
 *      tensors were computed from (tests/golden/preprocess_sha256.tsv);
 *   4. pull: the pipeline is evaluated in strips of rows, copied straight into
 *      the caller's buffer (allocated with ims_malloc).
 * A full load of a plain JPEG (YCbCr/RGB or grey, within the limits, no
 * shrink, no EXIF rotation) is decoded by libjpeg straight into the
 * caller's buffer instead (jpeg_decode.c): the same bytes, without
 * libvips's per-operation cost (~0.5 ms, more than the decode of a small
 * photo). Without an EXIF block no libvips object is made at all:
 * libjpeg's header is what libvips's would be (the same sides, bands and
 * orientation 1). With one, libvips's header and limits come first as
 * above (its EXIF parse, its orientation). On anything it cannot vouch
 * for (CMYK, over a limit, any libjpeg warning or error) the direct
 * decode declines and the load goes on through libvips, so verdicts and
 * messages are libvips's.
 *
 * A check (ims_image_check_memory) runs the same sniff, header, limits and
 * pipeline building, then decodes without keeping anything: a JPEG by one
 * pass of libjpeg at 1/8 scale (jpeg_scan.c: every scan entropy-decoded,
 * no libvips objects), other formats by draining the pipeline. EXIF
 * rotation is not applied, only its swap of the sides reported. Only a
 * clean pass stands; a failure or any warning hands the verdict to the
 * full decode (see check()).
 *
 * Strictness: loaders run with fail_on=error (JPEG: fail_on=warning, since
 * libjpeg reports truncated and corrupt entropy data as warnings), so a
 * truncated JPEG or a PNG with a bad CRC fails instead of being padded with
 * grey. libvips's warnings go to ims_log() at debug level, not stderr.
 *
 * Process-wide libvips settings (made once, under pthread_once): the
 * operation cache is off (a long-running server must not keep decoded images
 * alive), and loaders libvips flags as untrusted are blocked.
 *
 * Memory: images needing rotation are opened with random access (libvips
 * decodes them whole, to memory or to a temporary file above its disc
 * threshold); the others stream with sequential access. Temporaries live in
 * a vips_object_local_array() of a context object, released on every path.
 *
 * Thread-safety: libvips is thread-safe; every call here works on its own
 * objects. libvips keeps a single process-wide error buffer, so under heavy
 * concurrency an error message may carry text from another thread's failure
 * (the code is always right).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <vips/vips.h>

#include "image/image_int.h"

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_init_rc = -1;

/* Warnings libvips logged on this thread (a check's evidence: see check()). */
static _Thread_local unsigned n_vips_warnings;

/* libvips's g_warning()s (one per bad tile...) go to our log at debug
 * level instead of stderr: failures reach the caller as error codes. */
static void route_vips_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer ud)
{
    (void)ud;
    if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE))
        n_vips_warnings++;
    ims_log(IMS_LOG_DEBUG, "%s: %s", domain ? domain : "glib", msg);
}

/* The pthread_once body: start libvips and make it bounded. */
static void vips_start(void)
{
    if (VIPS_INIT("imgsim") != 0)
        return;
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      route_vips_log, NULL);
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_block_untrusted_set(TRUE);
    vips_init_rc = 0;
}

int ims__image_vips_init(ims_error *err)
{
    pthread_once(&vips_once, vips_start);
    if (vips_init_rc != 0)
        return ims_error_set(err, IMS_EUNSUPPORTED, "libvips failed to start: %s",
                             vips_error_buffer());
    return IMS_OK;
}

enum fmt { FMT_JPEG, FMT_PNG, FMT_WEBP, FMT_GIF, FMT_TIFF };

static const char *const FORMAT_NAME[] = {"jpeg", "png", "webp", "gif", "tiff"};

/* Leading bytes of the supported formats; the loader is chosen from these,
 * never by libvips sniffing (which would run every loader's probe, ImageMagick
 * included, over untrusted bytes). */
static int sniff(const unsigned char *p, size_t n)
{
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return FMT_JPEG;
    if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return FMT_PNG;
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return FMT_WEBP;
    if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
        return FMT_GIF;
    if (n >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0 ||
                   memcmp(p, "II+\0", 4) == 0 || memcmp(p, "MM\0+", 4) == 0))
        return FMT_TIFF;
    return -1;
}

/* A name for some well-known unsupported formats, for the error message. */
static const char *unsupported_name(const unsigned char *p, size_t n)
{
#define M_(off, magic, name) {off, sizeof(magic) - 1, magic, name}
    static const struct {
        size_t off, len;
        const char *magic, *name;
    } M[] = {
        M_(0, "BM", "BMP"),          M_(0, "P1", "PBM"),         M_(0, "P4", "PBM"),
        M_(0, "P2", "PGM"),          M_(0, "P5", "PGM"),         M_(0, "P3", "PPM"),
        M_(0, "P6", "PPM"),          M_(0, "P7", "PAM"),         M_(0, "Pf", "PFM"),
        M_(0, "PF", "PFM"),          M_(0, "%PDF", "PDF"),       M_(0, "<svg", "SVG"),
        M_(0, "<?xml", "XML/SVG"),   M_(4, "ftypheic", "HEIC"),  M_(4, "ftypheix", "HEIC"),
        M_(4, "ftypmif1", "HEIF"),   M_(4, "ftypavif", "AVIF"),  M_(0, "8BPS", "PSD"),
        M_(0, "\xff\x0a", "JPEG XL"), M_(0, "\0\0\0\x0cJXL ", "JPEG XL"),
        M_(0, "\0\0\0\x0cjP  ", "JPEG 2000"), M_(0, "\xffO\xffQ", "JPEG 2000"),
        M_(0, "\0\0\1\0", "ICO"), M_(0, "qoif", "QOI"), M_(0, "#?RADIANCE", "Radiance HDR"),
        M_(0, "SIMPLE  =", "FITS"),  M_(0, "\x80\x2a\x5f\xd7", "Cineon"),
        M_(0, "gimp xcf", "XCF"),    M_(0, "\x1f\x8b", "gzip"), M_(0, "PK\3\4", "ZIP"),
    };
#undef M_
    for (size_t i = 0; i < IMS_ARRAY_LEN(M); i++)
        if (n >= M[i].off + M[i].len && memcmp(p + M[i].off, M[i].magic, M[i].len) == 0)
            return M[i].name;
    return NULL;
}

/* Where the bytes come from. */
typedef struct src {
    const char *path; /* NULL for memory */
    const void *buf;
    size_t len;
    const char *where; /* for messages: the path or "<memory>" */
    const unsigned char *head; /* the first n_head bytes */
    size_t n_head;
} src;

/* Take libvips's error text (and clear it) as one line into buf. */
static const char *vips_msg(char *buf, size_t n)
{
    char *m = vips_error_buffer_copy();
    size_t len = m ? strlen(m) : 0;
    while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
        m[--len] = '\0';
    snprintf(buf, n, "%s", len ? m : "unknown libvips error");
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ';';
    g_free(m);
    return buf;
}

/* n bytes at off of the source into out; 0, or -1 past the end. */
static int src_read(const src *s, FILE *f, uint64_t off, void *out, size_t n)
{
    if (!s->path) {
        if (off > s->len || n > s->len - off)
            return -1;
        memcpy(out, (const unsigned char *)s->buf + off, n);
        return 0;
    }
    if (off > (uint64_t)INT64_MAX || fseeko(f, (off_t)off, SEEK_SET) || fread(out, 1, n, f) != n)
        return -1;
    return 0;
}

static uint64_t get_uint(const unsigned char *p, int n, int big_endian)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[big_endian ? n - 1 - i : i] << (8 * i);
    return v;
}

/* Count a TIFF's pages (classic or BigTIFF) by following its IFD chain, up
 * to IMS__IMAGE_MAX_TIFF_PAGES + 1; a chain that loops or leaves the file
 * ends the count (libtiff then reports what is wrong with it). */
static int tiff_pages(const src *s)
{
    FILE *f = s->path ? fopen(s->path, "rb") : NULL;
    if (s->path && !f)
        return 0;
    unsigned char b[20];
    int n = 0;
    if (src_read(s, f, 0, b, 16) == 0) {
        const int be = b[0] == 'M', big = get_uint(b + 2, 2, be) == 43;
        const int osz = big ? 8 : 4, csz = big ? 8 : 2, esz = big ? 20 : 12;
        uint64_t off = get_uint(b + (big ? 8 : 4), osz, be);
        uint64_t seen[IMS__IMAGE_MAX_TIFF_PAGES + 1];
        while (off && n <= IMS__IMAGE_MAX_TIFF_PAGES && src_read(s, f, off, b, (size_t)csz) == 0) {
            int loop = 0;
            for (int i = 0; i < n && !loop; i++)
                loop = seen[i] == off;
            if (loop)
                break;
            seen[n++] = off;
            uint64_t count = get_uint(b, csz, be);
            if (count > 65535 ||
                src_read(s, f, off + (uint64_t)csz + count * (uint64_t)esz, b, (size_t)osz))
                break;
            off = get_uint(b, osz, be);
        }
    }
    if (f)
        fclose(f);
    return n;
}

/* Open (header only) with the loader of fmt; 0 or -1 (vips error set). */
static int open_lazy(const src *s, int fmt, VipsAccess access, int shrink, VipsImage **out)
{
    /* libjpeg reports corrupt and truncated data as warnings */
    const VipsFailOn fail = fmt == FMT_JPEG ? VIPS_FAIL_ON_WARNING : VIPS_FAIL_ON_ERROR;
    if (s->path) {
        switch (fmt) {
        case FMT_JPEG:
            return vips_jpegload(s->path, out, "access", access, "fail_on", fail, "shrink",
                                 shrink, NULL);
        case FMT_PNG:
            return vips_pngload(s->path, out, "access", access, "fail_on", fail, NULL);
        case FMT_WEBP:
            return vips_webpload(s->path, out, "access", access, "fail_on", fail, NULL);
        case FMT_GIF:
            return vips_gifload(s->path, out, "access", access, "fail_on", fail, NULL);
        default:
            return vips_tiffload(s->path, out, "access", access, "fail_on", fail, NULL);
        }
    }
    void *b = (void *)s->buf; /* libvips only reads it */
    switch (fmt) {
    case FMT_JPEG:
        return vips_jpegload_buffer(b, s->len, out, "access", access, "fail_on", fail, "shrink",
                                    shrink, NULL);
    case FMT_PNG:
        return vips_pngload_buffer(b, s->len, out, "access", access, "fail_on", fail, NULL);
    case FMT_WEBP:
        return vips_webpload_buffer(b, s->len, out, "access", access, "fail_on", fail, NULL);
    case FMT_GIF:
        return vips_gifload_buffer(b, s->len, out, "access", access, "fail_on", fail, NULL);
    default:
        return vips_tiffload_buffer(b, s->len, out, "access", access, "fail_on", fail, NULL);
    }
}

/* JPEG DCT shrink factor (1, 2, 4, 8) keeping the shorter side >= shrink_to. */
static int jpeg_shrink(int w, int h, int shrink_to)
{
    int side = IMS_MIN(w, h), s = 1;
    if (shrink_to <= 0)
        return 1;
    while (s < 8 && side / (2 * s) >= shrink_to)
        s *= 2;
    return s;
}

/* Whether load() may take the direct libjpeg decode on this thread (tests
 * turn it off to compare with the libvips path), and how often it did. */
static _Thread_local int jpeg_direct_off;
static _Thread_local unsigned long n_jpeg_direct;

int ims__image_set_jpeg_direct(int on)
{
    const int was = !jpeg_direct_off;
    jpeg_direct_off = !on;
    return was;
}

unsigned long ims__image_n_jpeg_direct(void) { return n_jpeg_direct; }

/* Whether w x h is over the pixel limit or the hard side limit. */
static int over_limits(int w, int h, uint64_t max_pixels)
{
    return (uint64_t)w * (uint64_t)h > max_pixels || w > IMS__IMAGE_MAX_SIDE ||
           h > IMS__IMAGE_MAX_SIDE;
}

/* What the direct decode may take. Before libvips (w == 0): a header
 * within the limits at shrink 1, with no EXIF, for which libvips's header
 * would say the same and orientation 1 (nothing else libvips reads from a
 * JPEG header sets the orientation or fails). After libvips's header
 * (w > 0): the sides and bands it gave. */
typedef struct direct_want {
    uint64_t max_pixels;
    int shrink_to;
    int w, h, bands;
    int exif_only; /* OUT: refused only for its EXIF (retry after libvips's header) */
} direct_want;

static int direct_accept(const ims__jpeg_header *hd, void *ud)
{
    direct_want *q = ud;
    if (q->w > 0)
        return hd->width == q->w && hd->height == q->h && hd->bands == q->bands;
    if (over_limits(hd->width, hd->height, q->max_pixels) ||
        jpeg_shrink(hd->width, hd->height, q->shrink_to) > 1)
        return 0;
    q->exif_only = hd->exif;
    return !hd->exif;
}

/* A full-size JPEG decoded straight with libjpeg (jpeg_decode.c), if q
 * takes its header: IMS_OK (*out set), IMS_ENOMEM (err set), or
 * IMS__IMAGE_DECLINED: take the libvips path. */
static int load_jpeg_direct(const src *s, direct_want *q, ims_image **out, ims_error *err)
{
    if (jpeg_direct_off)
        return IMS__IMAGE_DECLINED;
    int w = 0, h = 0;
    unsigned char *rgb;
    int rc = ims__image_jpeg_decode(s->path, s->buf, s->len, direct_accept, q, &w, &h, &rgb);
    if (rc == IMS__IMAGE_DECLINED)
        return rc;
    ims_image *img = rc == IMS_OK ? ims_calloc(1, sizeof *img) : NULL;
    if (!img) {
        ims_free(rgb);
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory for %dx%d pixels", s->where, w, h);
    }
    img->width = w;
    img->height = h;
    img->rgb = rgb;
    snprintf(img->format, sizeof img->format, "%s", FORMAT_NAME[FMT_JPEG]);
    *out = img;
    n_jpeg_direct++;
    return IMS_OK;
}

/* Build the pipeline: autorotate, sRGB, flatten, 3 uchar bands; 0 or -1. */
static int build_pipeline(VipsImage *in, int rotate, VipsImage **t, VipsImage **out)
{
    VipsImage *x = in;
    if (rotate) {
        if (vips_autorot(x, &t[0], NULL))
            return -1;
        x = t[0];
    }
    if (x->Coding != VIPS_CODING_NONE) {
        if (vips_image_decode(x, &t[1]))
            return -1;
        x = t[1];
    }
    if (vips_image_guess_interpretation(x) != VIPS_INTERPRETATION_sRGB ||
        x->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_colourspace(x, &t[2], VIPS_INTERPRETATION_sRGB, NULL))
            return -1;
        x = t[2];
    }
    if (x->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_cast(x, &t[3], VIPS_FORMAT_UCHAR, NULL))
            return -1;
        x = t[3];
    }
    if (vips_image_hasalpha(x)) {
        VipsArrayDouble *white = vips_array_double_newv(3, 255.0, 255.0, 255.0);
        int rc = vips_flatten(x, &t[4], "background", white, "max_alpha", 255.0, NULL);
        vips_area_unref(VIPS_AREA(white));
        if (rc)
            return -1;
        x = t[4];
        if (x->BandFmt != VIPS_FORMAT_UCHAR) {
            if (vips_cast(x, &t[5], VIPS_FORMAT_UCHAR, NULL))
                return -1;
            x = t[5];
        }
    }
    if (x->Bands == 1) {
        VipsImage *grey[3] = {x, x, x};
        if (vips_bandjoin(grey, &t[6], 3, NULL))
            return -1;
        x = t[6];
    } else if (x->Bands > 3) {
        if (vips_extract_band(x, &t[7], 0, "n", 3, NULL))
            return -1;
        x = t[7];
    }
    if (x->Bands != 3 || x->BandFmt != VIPS_FORMAT_UCHAR) {
        vips_error("imgsim", "cannot convert a %d-band %s image to 8-bit RGB", x->Bands,
                   vips_enum_nick(VIPS_TYPE_BAND_FORMAT, x->BandFmt));
        return -1;
    }
    *out = x;
    return 0;
}

/* Evaluate x in strips of rows into rgb (w*h*3 bytes); 0 or -1. */
static int pull(VipsImage *x, unsigned char *rgb)
{
    const int w = x->Xsize, h = x->Ysize, strip = 64;
    const size_t row = (size_t)w * 3;
    VipsRegion *reg = vips_region_new(x);
    int rc = 0;
    for (int y = 0; y < h && rc == 0; y += strip) {
        VipsRect r = {0, y, w, IMS_MIN(strip, h - y)};
        rc = vips_region_prepare(reg, &r);
        for (int i = 0; rc == 0 && i < r.height; i++)
            memcpy(rgb + (size_t)(y + i) * row, VIPS_REGION_ADDR(reg, 0, y + i), row);
    }
    g_object_unref(reg);
    return rc;
}

/* Evaluate x in strips of rows, keeping nothing (the check); 0 or -1. */
static int drain(VipsImage *x)
{
    const int w = x->Xsize, h = x->Ysize, strip = 64;
    VipsRegion *reg = vips_region_new(x);
    int rc = 0;
    for (int y = 0; y < h && rc == 0; y += strip) {
        VipsRect r = {0, y, w, IMS_MIN(strip, h - y)};
        rc = vips_region_prepare(reg, &r);
    }
    g_object_unref(reg);
    return rc;
}

/* The common body of the loads and the checks. With info (a check), the
 * pixels are decoded but not kept: a JPEG in memory by one libjpeg pass
 * at 1/8 scale (jpeg_scan.c), other images by draining the pipeline; EXIF
 * rotation only swaps the reported sides. */
static int load(const src *s, const ims_image_opts *opts, ims_image **out, ims_image_info *info,
                ims_error *err)
{
    char vm[384];
    int rc = ims__image_vips_init(err);
    if (rc)
        return rc;
    const uint64_t max_pixels =
        opts && opts->max_pixels ? opts->max_pixels : IMS_IMAGE_DEFAULT_MAX_PIXELS;
    const int shrink_to = opts ? opts->shrink_to : 0;

    /* Choose the loader from the leading bytes. */
    unsigned char head[16];
    size_t n_head = IMS_MIN(s->n_head, sizeof head);
    memcpy(head, s->head, n_head);
    const int fmt = sniff(head, n_head);
    if (fmt < 0) {
        const char *what = unsupported_name(head, n_head);
        if (what)
            return ims_error_set(err, IMS_EFORMAT,
                                 "%s: unsupported image format %s (supported: JPEG, PNG, "
                                 "WebP, GIF, TIFF)",
                                 s->where, what);
        return ims_error_set(err, IMS_EFORMAT,
                             "%s: not an image in a supported format (JPEG, PNG, WebP, GIF, "
                             "TIFF)",
                             s->where);
    }
    const char *fname = FORMAT_NAME[fmt];
    if (fmt == FMT_TIFF && tiff_pages(s) > IMS__IMAGE_MAX_TIFF_PAGES)
        return ims_error_set(err, IMS_ETOOBIG, "%s: tiff with more than %d pages", s->where,
                             IMS__IMAGE_MAX_TIFF_PAGES);
    vips_error_clear(); /* drop earlier warnings (the buffer is process-wide) */

    /* A plain JPEG without EXIF needs no libvips object at all. */
    direct_want q = {.max_pixels = max_pixels, .shrink_to = shrink_to};
    if (fmt == FMT_JPEG && !info) {
        rc = load_jpeg_direct(s, &q, out, err);
        if (rc != IMS__IMAGE_DECLINED)
            return rc;
    }

    VipsImage *ctx = vips_image_new();
    VipsImage **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(ctx), 12);
    VipsImage *x = NULL;
    unsigned char *rgb = NULL;

    /* Header only: nothing is decoded yet. */
    if (open_lazy(s, fmt, VIPS_ACCESS_SEQUENTIAL, 1, &t[0])) {
        rc = ims_error_set(err, IMS_ECORRUPT, "%s: corrupt or truncated %s header: %s", s->where, fname,
                           vips_msg(vm, sizeof vm));
        goto done;
    }
    const int w = t[0]->Xsize, h = t[0]->Ysize;
    if (w <= 0 || h <= 0) {
        rc = ims_error_set(err, IMS_ECORRUPT, "%s: %s header gives a %dx%d image", s->where,
                           fname, w, h);
        goto done;
    }
    if (over_limits(w, h, max_pixels)) {
        rc = ims_error_set(err, IMS_ETOOBIG,
                           "%s: %s image of %dx%d = %llu pixels is over the limit of %llu "
                           "pixels (max side %d)",
                           s->where, fname, w, h, (unsigned long long)w * (unsigned long long)h,
                           (unsigned long long)max_pixels, IMS__IMAGE_MAX_SIDE);
        goto done;
    }
    const int orientation = vips_image_get_orientation(t[0]);
    const int rotate = !info && orientation >= 2 && orientation <= 8;
    const int shrink = fmt == FMT_JPEG && !info ? jpeg_shrink(w, h, shrink_to) : 1;
    if (q.exif_only && !rotate) { /* its EXIF parsed by libvips: no rotation */
        q = (direct_want){.w = w, .h = h, .bands = t[0]->Bands};
        rc = load_jpeg_direct(s, &q, out, err);
        if (rc != IMS__IMAGE_DECLINED)
            goto done;
    }
    VipsImage *in = t[0];
    if (rotate || shrink > 1) {
        /* Reopen: rotation needs random access; shrink is a load option. */
        if (open_lazy(s, fmt, rotate ? VIPS_ACCESS_RANDOM : VIPS_ACCESS_SEQUENTIAL, shrink,
                      &t[1])) {
            rc = ims_error_set(err, IMS_ECORRUPT, "%s: corrupt or truncated %s header: %s", s->where, fname,
                               vips_msg(vm, sizeof vm));
            goto done;
        }
        in = t[1];
    }
    if (build_pipeline(in, rotate, t + 2, &x)) {
        rc = ims_error_set(err, IMS_EUNSUPPORTED, "%s: cannot convert %s image to sRGB: %s",
                           s->where, fname, vips_msg(vm, sizeof vm));
        goto done;
    }

    if (info) {
        /* a JPEG pass that is not clean says nothing: check() decides */
        if (fmt == FMT_JPEG && !s->path) {
            if (ims__image_jpeg_scan(s->buf, s->len)) {
                rc = ims_error_set(err, IMS_ECORRUPT, "%s: libjpeg warned or failed", s->where);
                goto done;
            }
        } else if (drain(x)) {
            rc = ims_error_set(err, IMS_ECORRUPT, "%s: corrupt or truncated %s data: %s", s->where,
                               fname, vips_msg(vm, sizeof vm));
            goto done;
        }
        const int swap = orientation >= 5 && orientation <= 8; /* a quarter turn */
        info->width = swap ? h : w;
        info->height = swap ? w : h;
        snprintf(info->format, sizeof info->format, "%s", fname);
        rc = IMS_OK;
        goto done;
    }
    size_t n;
    if (!ims_size_mul3((size_t)x->Xsize, (size_t)x->Ysize, 3, &n)) {
        rc = ims_error_set(err, IMS_ETOOBIG, "%s: image too large", s->where);
        goto done;
    }
    ims_image *img = ims_calloc(1, sizeof *img);
    rgb = ims_malloc(n);
    if (!img || !rgb) {
        ims_free(img);
        rc = ims_error_set(err, IMS_ENOMEM, "%s: out of memory for %dx%d pixels", s->where,
                           x->Xsize, x->Ysize);
        goto done;
    }
    if (pull(x, rgb)) {
        ims_free(img);
        rc = ims_error_set(err, IMS_ECORRUPT, "%s: corrupt or truncated %s data: %s",
                           s->where, fname, vips_msg(vm, sizeof vm));
        goto done;
    }
    img->width = x->Xsize;
    img->height = x->Ysize;
    img->rgb = rgb;
    rgb = NULL;
    snprintf(img->format, sizeof img->format, "%s", fname);
    *out = img;
    rc = IMS_OK;
done:
    ims_free(rgb);
    g_object_unref(ctx);
    return rc;
}

int ims_image_load_file(const char *path, const ims_image_opts *opts, ims_image **out,
                        ims_error *err)
{
    IMS_ASSERT(path && out);
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s", path);
    if (!S_ISREG(st.st_mode))
        return ims_error_set(err, IMS_EIO, "%s: not a regular file", path);
    if (st.st_size == 0)
        return ims_error_set(err, IMS_ECORRUPT, "%s: empty file", path);
    unsigned char head[16];
    FILE *f = fopen(path, "rb");
    if (!f)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s", path);
    size_t n = fread(head, 1, sizeof head, f);
    int e = ferror(f) ? errno : 0;
    fclose(f);
    if (e)
        return ims_error_set_errno(err, IMS_EIO, e, "%s", path);
    src s = {.path = path, .where = path, .head = head, .n_head = n};
    return load(&s, opts, out, NULL, err);
}

int ims_image_load_memory(const void *buf, size_t len, const ims_image_opts *opts,
                          ims_image **out, ims_error *err)
{
    IMS_ASSERT(out && (buf || len == 0));
    *out = NULL;
    if (len == 0)
        return ims_error_set(err, IMS_ECORRUPT, "<memory>: empty image buffer");
    src s = {.buf = buf, .len = len, .where = "<memory>", .head = buf, .n_head = len};
    return load(&s, opts, out, NULL, err);
}

/* The check: its pass stands only when it passed and nothing warned:
 * for a JPEG, libjpeg raised no warning; for the others, libvips logged
 * no warning on this thread and left no text in its error buffer.
 * Otherwise the full decode (pixels dropped) gives the verdict and the
 * message. Why: libvips's JPEG loader tests for libjpeg's warnings
 * (corrupt or truncated data) when it starts a strip of 8 rows, so a
 * warning met while decoding the last strip is only logged ("read gave N
 * warnings") and the image passes; where that leaves a file accepted or
 * rejected depends on the rows, which a 1/8-scale pass cannot mimic. A
 * pass that met no warning at all is a pass of the full decode. The error
 * buffer is process-wide: text from another thread only costs a needless
 * full decode. */
static int check(const src *s, const ims_image_opts *opts, ims_image_info *out, ims_error *err)
{
    const unsigned warned = n_vips_warnings;
    int rc = load(s, opts, NULL, out, err);
    if (rc == IMS_OK && n_vips_warnings == warned && !vips_error_buffer()[0])
        return IMS_OK;
    memset(out, 0, sizeof *out);
    ims_error_clear(err);
    ims_image *img = NULL;
    if ((rc = load(s, opts, &img, NULL, err)))
        return rc;
    out->width = img->width;
    out->height = img->height;
    memcpy(out->format, img->format, sizeof out->format);
    ims_image_free(img);
    return IMS_OK;
}

int ims_image_check_memory(const void *buf, size_t len, const ims_image_opts *opts,
                           ims_image_info *out, ims_error *err)
{
    IMS_ASSERT(out && (buf || len == 0));
    memset(out, 0, sizeof *out);
    if (len == 0)
        return ims_error_set(err, IMS_ECORRUPT, "<memory>: empty image buffer");
    src s = {.buf = buf, .len = len, .where = "<memory>", .head = buf, .n_head = len};
    return check(&s, opts, out, err);
}

int ims_image_new(int width, int height, ims_image **out)
{
    IMS_ASSERT(out);
    *out = NULL;
    size_t n;
    if (width <= 0 || height <= 0 || width > IMS__IMAGE_MAX_SIDE ||
        height > IMS__IMAGE_MAX_SIDE || !ims_size_mul3((size_t)width, (size_t)height, 3, &n))
        return IMS_EINVAL;
    ims_image *img = ims_calloc(1, sizeof *img);
    unsigned char *rgb = ims_malloc(n);
    if (!img || !rgb) {
        ims_free(img);
        ims_free(rgb);
        return IMS_ENOMEM;
    }
    memset(rgb, 255, n);
    img->width = width;
    img->height = height;
    img->rgb = rgb;
    snprintf(img->format, sizeof img->format, "raw");
    *out = img;
    return IMS_OK;
}

void ims_image_free(ims_image *img)
{
    if (!img)
        return;
    ims_free(img->rgb);
    ims_free(img);
}
