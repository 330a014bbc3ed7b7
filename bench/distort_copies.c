/* SPDX-License-Identifier: MIT */
/*
 * distort_copies.c — write one seeded distorted copy (ims_image_distort) of
 * each image as a lossless PNG, for caching the backbone features of the
 * copies that instance-recall evaluation queries with.
 *
 *   bench_distort_copies OUTDIR SEED IMAGE...   -> OUTDIR/<i>.png, i = 0..
 * Image i uses seed SEED + i.
 */
#include <stdio.h>
#include <stdlib.h>

#include <vips/vips.h>

#include "imgsim/image.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s OUTDIR SEED IMAGE...\n", argv[0]);
        return 2;
    }
    uint64_t seed = strtoull(argv[2], NULL, 10);
    for (int i = 3; i < argc; i++) {
        ims_error err;
        ims_image *img = NULL, *d = NULL;
        if (ims_image_load_file(argv[i], NULL, &img, &err) ||
            ims_image_distort(img, seed + (uint64_t)(i - 3), &d, &err)) {
            fprintf(stderr, "%s: %s\n", argv[i], err.msg);
            return 1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%d.png", argv[1], i - 3);
        VipsImage *v = vips_image_new_from_memory(d->rgb, (size_t)d->width * d->height * 3,
                                                  d->width, d->height, 3, VIPS_FORMAT_UCHAR);
        if (!v || vips_pngsave(v, path, NULL)) {
            fprintf(stderr, "%s: %s\n", path, vips_error_buffer());
            return 1;
        }
        g_object_unref(v);
        ims_image_free(img);
        ims_image_free(d);
    }
    return 0;
}
