/* SPDX-License-Identifier: MIT */
/* image_int.h — internals shared by the image module's files. */
#ifndef IMS_IMAGE_INT_H
#define IMS_IMAGE_INT_H

#include "core/core_int.h"
#include "imgsim/image.h"

/* Hard limits on any decoded or preprocessed dimension, whatever max_pixels
 * says (stb's STBI_MAX_DIMENSIONS idea): keeps every size product in range. */
#define IMS__IMAGE_MAX_SIDE (1 << 20)
/* TIFFs with more pages are refused before libvips sees them: libtiff
 * walks every IFD when the file is opened (10,000 pages: ~180 ms). */
#define IMS__IMAGE_MAX_TIFF_PAGES 1024
#define IMS__PREPROCESS_MAX_SIDE 16384

/* Start libvips once per process (pthread_once). Returns IMS_OK or
 * IMS_EUNSUPPORTED (err set) if libvips cannot start. */
int ims__image_vips_init(ims_error *err);

/* One libjpeg pass over a JPEG in memory at 1/8 scale, keeping nothing:
 * 0 when libjpeg raised neither an error nor a warning, else -1
 * (jpeg_scan.c). */
int ims__image_jpeg_scan(const void *buf, size_t len);

/* What ims__image_jpeg_decode() returns when the file is not one it
 * decodes exactly as libvips would: the caller takes the libvips path. */
#define IMS__IMAGE_DECLINED 1

/* What a JPEG's header says, for ims__image_jpeg_decode()'s caller. */
typedef struct ims__jpeg_header {
    int width, height;
    int bands; /* 3 (YCbCr or RGB to RGB) or 1 (grey) */
    int exif;  /* an APP1 marker starts "Exif" */
} ims__jpeg_header;

/* Whether to go on and decode the image hd describes (1) or decline (0). */
typedef int (*ims__jpeg_accept_fn)(const ims__jpeg_header *hd, void *ud);

/* Decode the JPEG at path (or, path NULL, the len bytes at buf) straight
 * with libjpeg at full size into *out: *w_out x *h_out x 3 bytes of 8-bit
 * RGB (grey replicated), from ims_malloc, the caller's to ims_free (the
 * sides are set from the header once accept() took it). Only a plain
 * YCbCr/RGB/grey file, whose header accept(hd, ud) takes, and on which
 * libjpeg neither errs nor warns, is decoded; anything else is declined.
 * Returns IMS_OK, IMS_ENOMEM or IMS__IMAGE_DECLINED (*out NULL) and sets
 * no message. Thread-safe (jpeg_decode.c). */
int ims__image_jpeg_decode(const char *path, const void *buf, size_t len,
                           ims__jpeg_accept_fn accept, void *ud, int *w_out, int *h_out,
                           unsigned char **out);

/* Turn the direct libjpeg decode of load() on (the default) or off for
 * the calling thread only, so a test can set the libvips path beside it;
 * returns the previous setting. */
int ims__image_set_jpeg_direct(int on);

/* How many loads on the calling thread took the direct libjpeg decode. */
unsigned long ims__image_n_jpeg_direct(void);

/* The source rectangle rect = {x0, y0, w, h} that recipe pp takes from a
 * w x h image (the whole image unless pp->crop is IMS_CROP_CENTER). */
int ims__preprocess_crop(int w, int h, const ims_preprocess *pp, int rect[4]);

#endif /* IMS_IMAGE_INT_H */
