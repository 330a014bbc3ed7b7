/* SPDX-License-Identifier: MIT */
/*
 * jpeg_decode.c — a full-resolution decode of a plain JPEG straight with
 * libjpeg, for load() in decode.c: the same pixels as the libvips path,
 * without its per-operation cost (about 0.5 ms for a 16 KB photo, more
 * than the decode itself).
 *
 * It decodes only what the libvips path would turn into 8-bit sRGB by
 * libjpeg's own colour conversion and nothing else: 3 components
 * (YCbCr or RGB) output as JCS_RGB, or 1 component (greyscale) output as
 * JCS_GRAYSCALE and replicated to 3 bands, as vips_colourspace() does
 * for a B_W image. libjpeg runs with its defaults (JDCT_ISLOW, fancy
 * upsampling, no block smoothing), which is how libvips 8.14's loader
 * runs it at shrink 1; tests/unit/test_image_jpeg.c holds the two paths
 * to the same bytes on every sample photo and on made-up files.
 *
 * Anything else declines, and load() takes the libvips path as before:
 * CMYK/YCCK and other colour spaces, a header the caller's accept()
 * refuses (limits, shrink, EXIF: see direct_accept() in decode.c),
 * and any libjpeg error or warning (jpeg_src.c: this pass is
 * at least as strict as libvips's fail_on=warning, so a file libvips
 * rejects is never accepted here; the verdict and message on a bad file
 * are libvips's). jpeg_finish_decompress() is not called, as in libvips:
 * the tail after the last row is not judged.
 *
 * Thread-safety: every call has its own libjpeg objects, error manager and
 * source on its stack; nothing is shared.
 */
#include <string.h>

#include "image/image_int.h"
#include "image/jpeg_int.h"

/* The bands libjpeg is set to give as libvips's loader would, and load()
 * takes as they are (3) or replicates (1); 0 for anything else. */
static int plain_bands(const struct jpeg_decompress_struct *d)
{
    if (d->num_components == 3 &&
        (d->jpeg_color_space == JCS_YCbCr || d->jpeg_color_space == JCS_RGB) &&
        d->out_color_space == JCS_RGB)
        return 3;
    if (d->num_components == 1 && d->jpeg_color_space == JCS_GRAYSCALE &&
        d->out_color_space == JCS_GRAYSCALE)
        return 1;
    return 0;
}

/* Whether an APP1 marker starts "Exif" (libvips parses those: orientation,
 * and a failure of its own). Only the first 4 bytes of each are kept. */
static int has_exif(const struct jpeg_decompress_struct *d)
{
    for (jpeg_saved_marker_ptr m = d->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 4 && memcmp(m->data, "Exif", 4) == 0)
            return 1;
    return 0;
}

/* Grey row g (the first w bytes of it) to RGB in place, from the right. */
static void grey_to_rgb(unsigned char *g, int w)
{
    for (int x = w - 1; x >= 0; x--)
        g[3 * x] = g[3 * x + 1] = g[3 * x + 2] = g[x];
}

int ims__image_jpeg_decode(const char *path, const void *buf, size_t len,
                           ims__jpeg_accept_fn accept, void *ud, int *w_out, int *h_out,
                           unsigned char **out)
{
    struct jpeg_decompress_struct d;
    ims__jpeg_err e;
    ims__jpeg_src src;
    FILE *volatile f = NULL;
    unsigned char *volatile rgb = NULL;
    volatile int rc = IMS__IMAGE_DECLINED;
    *out = NULL;
    if (path && !(f = fopen(path, "rb")))
        return IMS__IMAGE_DECLINED; /* libvips gives the message */
    memset(&d, 0, sizeof d);        /* jpeg_destroy_decompress() is then safe on any path */
    ims__jpeg_err_init(&d, &e);
    if (setjmp(e.jb))
        goto done; /* an error or a warning: rc is still DECLINED */
    jpeg_create_decompress(&d);
    ims__jpeg_src_init(&d, &src, buf, len, f);
    jpeg_save_markers(&d, JPEG_APP0 + 1, 4);
    jpeg_read_header(&d, TRUE);
    const ims__jpeg_header hd = {(int)d.image_width, (int)d.image_height, plain_bands(&d),
                                 has_exif(&d)};
    if (!hd.bands || !accept(&hd, ud))
        goto done;
    const int w = *w_out = hd.width, h = *h_out = hd.height;
    jpeg_start_decompress(&d);
    if ((int)d.output_width != w || (int)d.output_height != h || d.output_components != hd.bands)
        goto done;
    size_t n, row = (size_t)w * 3;
    if (!ims_size_mul3((size_t)w, (size_t)h, 3, &n))
        goto done;
    if (!(rgb = ims_malloc(n))) {
        rc = IMS_ENOMEM;
        goto done;
    }
    while (d.output_scanline < d.output_height) {
        JSAMPROW rows[16]; /* as many rows as libjpeg gives per call, and more */
        const JDIMENSION y = d.output_scanline;
        const int n_rows = IMS_MIN(16, h - (int)y);
        for (int i = 0; i < n_rows; i++)
            rows[i] = rgb + (y + (size_t)i) * row;
        const JDIMENSION got = jpeg_read_scanlines(&d, rows, (JDIMENSION)n_rows);
        if (hd.bands == 1)
            for (JDIMENSION i = 0; i < got; i++)
                grey_to_rgb(rows[i], w);
    }
    *out = rgb;
    rgb = NULL;
    rc = IMS_OK;
done:
    jpeg_destroy_decompress(&d);
    ims_free(rgb);
    if (f)
        fclose(f);
    return rc;
}
