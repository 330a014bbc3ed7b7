/* SPDX-License-Identifier: MIT */
/*
 * jpeg_scan.c — one pass of libjpeg over a JPEG in memory, for the decode
 * check (decode.c, check()): every scan is entropy-decoded, the output is
 * produced at 1/8 scale (one pixel per 8x8 block: DC only, no upsampling
 * work) into a single reused row, and the pass is clean only if libjpeg
 * raised no error and no warning.
 *
 * It must be at least as strict as the libvips loader (the same libjpeg,
 * libjpeg.so.62, with fail_on=warning), whose verdict the check stands
 * for when this pass is clean:
 *   - warnings and errors come from libjpeg's input side (markers, entropy
 *     decoding, running out of data), which does not depend on the output
 *     scale, DCT method or upsampling chosen here;
 *   - but libjpeg-turbo's Huffman decoder has a fast path, taken while
 *     the source has plenty of bytes buffered, that turns a bad code into
 *     0 without a warning; only its slow path warns. libvips feeds libjpeg
 *     in reads of its own size, so which bad codes it notices depends on
 *     where they fall. This source hands out CHUNK bytes at a time, under the fast
 *     path's threshold (512 bytes per block of an MCU), so every MCU takes
 *     the slow path and every bad code warns;
 *   - running out of data is a failure here (libvips raises "Premature
 *     end of input file"; libjpeg's memory source would only warn);
 *   - jpeg_finish_decompress() is called, so the tail after the last scan
 *     is read up to EOI (a missing EOI fails libvips's loader too).
 * Being stricter only costs time: check() then asks the full decode.
 */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */

#include <jerror.h>
#include <jpeglib.h>

#include "image/image_int.h"

typedef struct scan_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} scan_err;

static void on_error(j_common_ptr c) { longjmp(((scan_err *)c->err)->jb, 1); }

/* Warnings (level < 0) are only counted; nothing is printed. */
static void on_message(j_common_ptr c, int level)
{
    if (level < 0)
        c->err->num_warnings++;
}

static void on_output(j_common_ptr c) { (void)c; }

#define CHUNK 256

typedef struct scan_src {
    struct jpeg_source_mgr pub;
    const JOCTET *p, *end;
} scan_src;

static void src_init(j_decompress_ptr d) { (void)d; }

static boolean src_fill(j_decompress_ptr d)
{
    scan_src *s = (scan_src *)d->src;
    if (s->p == s->end)
        ERREXIT(d, JERR_INPUT_EOF);
    size_t n = (size_t)(s->end - s->p);
    s->pub.next_input_byte = s->p;
    s->pub.bytes_in_buffer = n < CHUNK ? n : CHUNK;
    s->p += s->pub.bytes_in_buffer;
    return TRUE;
}

static void src_skip(j_decompress_ptr d, long n)
{
    while (n > (long)d->src->bytes_in_buffer) {
        n -= (long)d->src->bytes_in_buffer;
        d->src->bytes_in_buffer = 0;
        src_fill(d);
    }
    if (n > 0) {
        d->src->next_input_byte += n;
        d->src->bytes_in_buffer -= (size_t)n;
    }
}

static void src_term(j_decompress_ptr d) { (void)d; }

int ims__image_jpeg_scan(const void *buf, size_t len)
{
    struct jpeg_decompress_struct d;
    scan_err e;
    scan_src src = {.p = buf, .end = (const JOCTET *)buf + len};
    src.pub.init_source = src_init;
    src.pub.fill_input_buffer = src_fill;
    src.pub.skip_input_data = src_skip;
    src.pub.resync_to_restart = jpeg_resync_to_restart;
    src.pub.term_source = src_term;
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.emit_message = on_message;
    e.pub.output_message = on_output;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&d);
        return -1;
    }
    jpeg_create_decompress(&d);
    d.src = &src.pub;
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
        rc = e.pub.num_warnings ? -1 : 0;
    }
    jpeg_destroy_decompress(&d);
    return rc;
}
