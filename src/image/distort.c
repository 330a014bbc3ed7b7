/* SPDX-License-Identifier: MIT */
/*
 * distort.c — seeded photometric and geometric distortions of an image, the
 * "distorted copy" that instance-retrieval evaluation queries with.
 *
 * One call applies, in this order, each drawn from a PRNG seeded by `seed`
 * (splitmix64, so a seed gives the same copy on every machine):
 *   1. crop: a random window keeping 50-90% of the width and of the height;
 *   2. flip: left-right with probability 1/2;
 *   3. scale: resize by a factor in [0.5, 1.5] (libvips's default kernel);
 *   4. colour jitter: saturation x[0.6, 1.4] (mixing with the channel mean),
 *      brightness x[0.7, 1.3], contrast x[0.7, 1.3] about mid-grey, and a
 *      per-channel gain in [0.88, 1.12] (a white-balance shift), rounded
 *      and clipped to 8 bits;
 *   5. JPEG re-encode at quality 30-80 and decode with ims_image_load_memory
 *      (so the copy goes through the same decoder as every real image).
 * The ranges follow retrieval benchmarks' "strong" copies (Copydays-like
 * crops + JPEG, plus SimCLR-style colour jitter without hue): a copy is
 * still clearly the same photo, yet raw features of a milder recipe found
 * the original 99% of the time in the top 10, which measured nothing.
 *
 * Memory: libvips temporaries live in a vips_object_local_array() of a
 * context object, released on every path; the result is a new ims_image.
 * Thread-safe (libvips is; every call works on its own objects). The exact
 * pixels depend on the libvips version (resize kernels, JPEG encoder), the
 * drawn parameters do not.
 */
#include <string.h>

#include <vips/vips.h>

#include "image/image_int.h"

/* splitmix64: one 64-bit step. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform double in [lo, hi). */
static double uniform(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Take libvips's error text (and clear it) into err. */
static int vips_fail(ims_error *err, const char *what)
{
    char *m = vips_error_buffer_copy();
    size_t len = m ? strlen(m) : 0;
    while (len && m[len - 1] == '\n')
        m[--len] = 0;
    int rc = ims_error_set(err, IMS_EUNSUPPORTED, "distort: %s: %s", what,
                           len ? m : "unknown libvips error");
    g_free(m);
    return rc;
}

int ims_image_distort(const ims_image *in, uint64_t seed, ims_image **out, ims_error *err)
{
    IMS_ASSERT(in && in->rgb && out);
    *out = NULL;
    int rc = ims__image_vips_init(err);
    if (rc)
        return rc;
    if (in->width < 8 || in->height < 8)
        return ims_error_set(err, IMS_EINVAL, "distort: image too small (%dx%d)", in->width,
                             in->height);

    uint64_t s = seed ^ 0x6A09E667F3BCC909ull;
    double fw = uniform(&s, 0.50, 0.90), fh = uniform(&s, 0.50, 0.90);
    int cw = (int)(in->width * fw), ch = (int)(in->height * fh);
    int cx = (int)uniform(&s, 0, in->width - cw + 1), cy = (int)uniform(&s, 0, in->height - ch + 1);
    int flip = next_u64(&s) >> 63;
    double scale = uniform(&s, 0.5, 1.5);
    double bright = uniform(&s, 0.7, 1.3), contrast = uniform(&s, 0.7, 1.3);
    double sat = uniform(&s, 0.6, 1.4);
    double gain[3], a[3], b[3];
    for (int c = 0; c < 3; c++)
        gain[c] = uniform(&s, 0.88, 1.12);
    int quality = 30 + (int)(next_u64(&s) % 51);
    /* y = gain*bright*(contrast*(x - 128) + 128) */
    for (int c = 0; c < 3; c++) {
        a[c] = gain[c] * bright * contrast;
        b[c] = gain[c] * bright * 128.0 * (1.0 - contrast);
    }

    VipsObject *ctx = VIPS_OBJECT(vips_image_new());
    VipsImage **t = (VipsImage **)vips_object_local_array(ctx, 10);
    void *jpeg = NULL;
    size_t jpeg_len = 0;
    t[0] = vips_image_new_from_memory(in->rgb, (size_t)in->width * in->height * 3, in->width,
                                      in->height, 3, VIPS_FORMAT_UCHAR);
    if (!t[0]) {
        rc = vips_fail(err, "wrap");
        goto done;
    }
    if (vips_extract_area(t[0], &t[1], cx, cy, cw, ch, NULL) ||
        (flip ? vips_flip(t[1], &t[2], VIPS_DIRECTION_HORIZONTAL, NULL)
              : vips_copy(t[1], &t[2], NULL)) ||
        vips_resize(t[2], &t[3], scale, NULL) ||
        /* saturation: sat * x + (1 - sat) * mean(x) */
        vips_bandmean(t[3], &t[6], NULL) || vips_linear1(t[3], &t[7], sat, 0, NULL) ||
        vips_linear1(t[6], &t[8], 1 - sat, 0, NULL) || vips_add(t[7], t[8], &t[9], NULL) ||
        vips_linear(t[9], &t[4], a, b, 3, "uchar", TRUE, NULL) ||
        vips_copy(t[4], &t[5], "interpretation", VIPS_INTERPRETATION_sRGB, NULL) ||
        vips_jpegsave_buffer(t[5], &jpeg, &jpeg_len, "Q", quality, "strip", TRUE, NULL)) {
        rc = vips_fail(err, "pipeline");
        goto done;
    }
    rc = ims_image_load_memory(jpeg, jpeg_len, NULL, out, err);
done:
    g_free(jpeg);
    g_object_unref(ctx);
    return rc;
}
