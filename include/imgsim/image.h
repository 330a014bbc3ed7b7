/* SPDX-License-Identifier: MIT */
/*
 * image.h — decoding (libvips) and preprocessing to a model's input tensor.
 *
 * Decoding accepts JPEG, PNG, WebP, GIF (first frame) and TIFF (first page;
 * files of more than 1024 pages are refused as IMS_ETOOBIG), from a file
 * or from memory. The result is always 8-bit sRGB, 3 channels, HWC: EXIF
 * orientation applied, alpha flattened onto white, grey/CMYK/16-bit
 * converted. Empty, truncated, corrupt, unsupported and over-limit images are
 * refused with a clear error (the pixel limit is checked from the header,
 * before any pixel is decoded).
 *
 * Thread-safety: all functions may be called from several threads at once.
 */
#ifndef IMGSIM_IMAGE_H
#define IMGSIM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "imgsim/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IMS_IMAGE_DEFAULT_MAX_PIXELS 100000000ull /* 100 megapixels */

/* A decoded image: 8-bit sRGB, 3 channels, row-major HWC. */
typedef struct ims_image {
    int width, height;
    unsigned char *rgb;  /* width*height*3 bytes, owned by the image */
    char format[8];      /* source format: "jpeg", "png", "webp", "gif", "tiff"
                            ("raw" for ims_image_new) */
} ims_image;

typedef struct ims_image_opts {
    uint64_t max_pixels; /* refuse width*height above this; 0 = default (100 MP) */
    /* Shrink-on-load hint: when > 0 the decoder may shrink (e.g. JPEG DCT
     * scaling) to no less than this many pixels on the shorter side. 0 = off
     * (exact full-resolution pixels; what the nsfwjs recipes need). */
    int shrink_to;
} ims_image_opts;

/* Decode a file / a memory buffer. *out is owned by the caller
 * (ims_image_free); it is NULL on failure. Errors: IMS_EIO (cannot read),
 * IMS_EFORMAT (unknown or unsupported format, chosen from the leading bytes),
 * IMS_ECORRUPT (empty, truncated, corrupt), IMS_ETOOBIG (over max_pixels,
 * checked from the header before decoding), IMS_EUNSUPPORTED (a colour model
 * libvips cannot convert to sRGB), IMS_ENOMEM. err->msg starts with the path
 * (or "<memory>"). `opts` may be NULL. The buffer is only read, and need not
 * outlive the call. Embedded ICC profiles are not applied (as libjpeg-turbo
 * and TF.js do not), except to convert CMYK. */
int ims_image_load_file(const char *path, const ims_image_opts *opts, ims_image **out,
                        ims_error *err);
int ims_image_load_memory(const void *buf, size_t len, const ims_image_opts *opts,
                          ims_image **out, ims_error *err);
/* What a check found: what the decode would give, without the pixels. */
typedef struct ims_image_info {
    int width, height; /* of the full image, after EXIF rotation */
    char format[8];    /* as ims_image.format */
} ims_image_info;

/* Check that a memory buffer decodes, as ims_image_load_memory would,
 * without keeping its pixels: the same limits, loader and strictness, the
 * same conversion to sRGB, and every byte of image data decoded (a JPEG
 * at 1/8 scale, which still entropy-decodes every scan; EXIF rotation is
 * not applied, only its swap of the sides reported). Returns what
 * ims_image_load_memory returns for these bytes and opts (opts->shrink_to
 * is ignored), with the same message; *out is zeroed on failure. Much
 * cheaper than a load for JPEG. */
int ims_image_check_memory(const void *buf, size_t len, const ims_image_opts *opts,
                           ims_image_info *out, ims_error *err);

/* A blank (white) image, for tests and synthesis. IMS_EINVAL for a size
 * <= 0 or over 2^20 per side, IMS_ENOMEM. */
int ims_image_new(int width, int height, ims_image **out);
void ims_image_free(ims_image *img);

/* A seeded distorted copy of `in` (for instance-retrieval evaluation):
 * random crop keeping 50-90% of each side, left-right flip (p = 1/2),
 * rescale by 0.5-1.5, colour jitter (saturation, brightness and contrast
 * x0.6-1.4 / 0.7-1.3 / 0.7-1.3, per-channel gain 0.88-1.12) and a JPEG
 * re-encode at quality 30-80, decoded
 * back. The same seed draws the same parameters everywhere (exact pixels
 * follow the libvips version). *out is owned by the caller
 * (ims_image_free). Errors: IMS_EINVAL (image under 8x8), IMS_EUNSUPPORTED
 * (a libvips failure), IMS_ENOMEM. Thread-safe. */
int ims_image_distort(const ims_image *in, uint64_t seed, ims_image **out, ims_error *err);

/* ---- preprocessing ------------------------------------------------------
 * A recipe, stored per model in the .ism file. The nsfwjs recipe is
 *   { size 224 (or 299), IMS_RESIZE_BILINEAR_ALIGN_CORNERS, IMS_CROP_STRETCH,
 *     scale 1/255 before resizing, mean 0, std 1 }
 * and reproduces TF.js's cpu backend (x/255 then resize_bilinear with
 * align_corners=true, half_pixel_centers=false) bit for bit.
 * On-disk enum values: frozen, append-only. */
enum ims_resize {
    IMS_RESIZE_BILINEAR_ALIGN_CORNERS = 0, /* TF align_corners=true */
    IMS_RESIZE_BILINEAR_HALF_PIXEL = 1,    /* TF half_pixel_centers=true (PIL-like) */
};
enum ims_crop {
    IMS_CROP_STRETCH = 0, /* resize straight to WxH, aspect not kept */
    IMS_CROP_CENTER = 1,  /* aspect-preserving: central crop of the target aspect */
};

typedef struct ims_preprocess {
    int width, height; /* model input size */
    int resize;        /* enum ims_resize */
    int crop;          /* enum ims_crop */
    float scale;       /* bytes are multiplied by this before resizing (1/255) */
    float mean[3];     /* after resizing: (x - mean[c]) / std[c] */
    float std[3];
    int shrink_to;     /* 0, or allow decode shrink-on-load (see ims_image_opts) */
} ims_preprocess;

/* The nsfwjs recipe for an S x S input. */
void ims_preprocess_nsfwjs(ims_preprocess *pp, int size);

/* Fill out[height*width*3] (NHWC, one image) from img following pp.
 * Allocates nothing; thread-safe. Errors: IMS_EINVAL for a bad recipe
 * (size outside 1..16384, unknown enum, zero or non-finite scale/std). */
int ims_image_preprocess(const ims_image *img, const ims_preprocess *pp, float *out,
                         ims_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_IMAGE_H */
