/* SPDX-License-Identifier: MIT */
/*
 * jpeg_scan.c — one pass of libjpeg over a JPEG in memory, for the decode
 * check (decode.c, check()): every scan is entropy-decoded, the output is
 * produced at 1/8 scale (one pixel per 8x8 block: DC only, no upsampling
 * work) into a single reused row, and the pass is clean only if libjpeg
 * raised no error and no warning.
 *
 * It must be at least as strict as the libvips loader, whose verdict the
 * check stands for when this pass is clean: the error manager and the
 * source (jpeg_src.c) see to most of it. Besides:
 *   - warnings and errors come from libjpeg's input side (markers, entropy
 *     decoding, running out of data), which does not depend on the output
 *     scale, DCT method or upsampling chosen here;
 *   - jpeg_finish_decompress() is called, so the tail after the last scan
 *     is read up to EOI (a missing EOI fails libvips's loader too).
 * Being stricter only costs time: check() then asks the full decode.
 */
#include <string.h>

#include "image/image_int.h"
#include "image/jpeg_int.h"

int ims__image_jpeg_scan(const void *buf, size_t len)
{
    struct jpeg_decompress_struct d;
    ims__jpeg_err e;
    ims__jpeg_src src;
    memset(&d, 0, sizeof d); /* jpeg_destroy_decompress() is then safe on any path */
    ims__jpeg_err_init(&d, &e);
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&d);
        return -1;
    }
    jpeg_create_decompress(&d);
    ims__jpeg_src_init(&d, &src, buf, len, NULL);
    int rc = -1;
    if (jpeg_read_header(&d, TRUE) == JPEG_HEADER_OK) {
        d.scale_num = 1;
        d.scale_denom = 8;
        d.dct_method = JDCT_IFAST;
        d.do_fancy_upsampling = FALSE;
        d.do_block_smoothing = FALSE;
        jpeg_start_decompress(&d);
        JSAMPARRAY row = (*d.mem->alloc_sarray)(
            (j_common_ptr)&d, JPOOL_IMAGE, d.output_width * (JDIMENSION)d.output_components, 1);
        while (d.output_scanline < d.output_height)
            jpeg_read_scanlines(&d, row, 1);
        jpeg_finish_decompress(&d); /* reads on to EOI: stricter, never less */
        rc = 0;                     /* a warning would have ended the pass */
    }
    jpeg_destroy_decompress(&d);
    return rc;
}
