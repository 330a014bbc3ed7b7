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

/* The source rectangle rect = {x0, y0, w, h} that recipe pp takes from a
 * w x h image (the whole image unless pp->crop is IMS_CROP_CENTER). */
int ims__preprocess_crop(int w, int h, const ims_preprocess *pp, int rect[4]);

#endif /* IMS_IMAGE_INT_H */
