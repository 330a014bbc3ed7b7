/* SPDX-License-Identifier: MIT */
/*
 * jpeg_src.c — the error manager and the source of the direct libjpeg
 * passes (jpeg_scan.c: the check; jpeg_decode.c: the full decode).
 *
 * Both passes stand for the libvips loader (the same libjpeg,
 * libjpeg.so.62, run with fail_on=warning) only when they are at least
 * as strict as it; what they cannot judge they hand back to it. Hence:
 *   - any warning aborts the pass, like an error (the loader fails on
 *     warnings, except in its last strip: see check() in decode.c);
 *   - libjpeg-turbo's Huffman decoder has a fast path, taken while the
 *     source has plenty of bytes buffered, that turns a bad code into 0
 *     without a warning; only its slow path warns. libvips feeds libjpeg
 *     in reads of its own size, so which bad codes it notices depends on
 *     where they fall. This source hands out IMS__JPEG_CHUNK bytes at a
 *     time, under the fast path's threshold, so every MCU takes the slow
 *     path and every bad code warns (on the food photos the slow path
 *     costs nothing measurable: 10 passes over 463 photos took 1.61-1.75 s
 *     of CPU with either source);
 *   - running out of data is an error (libvips raises "Premature end of
 *     input file"; libjpeg's memory source would only warn).
 */
#include <jerror.h>

#include "image/jpeg_int.h"

static void on_error(j_common_ptr c) { longjmp(((ims__jpeg_err *)c->err)->jb, 1); }

/* A warning is an error here; trace messages (level >= 0) are dropped. */
static void on_message(j_common_ptr c, int level)
{
    if (level < 0) {
        c->err->num_warnings++;
        longjmp(((ims__jpeg_err *)c->err)->jb, 1);
    }
}

static void on_output(j_common_ptr c) { (void)c; }

void ims__jpeg_err_init(j_decompress_ptr d, ims__jpeg_err *e)
{
    d->err = jpeg_std_error(&e->pub);
    e->pub.error_exit = on_error;
    e->pub.emit_message = on_message;
    e->pub.output_message = on_output;
}

static void src_init(j_decompress_ptr d) { (void)d; }

static boolean src_fill(j_decompress_ptr d)
{
    ims__jpeg_src *s = (ims__jpeg_src *)d->src;
    if (s->p == s->end && s->f) {
        size_t n = fread(s->buf, 1, sizeof s->buf, s->f);
        if (n == 0 && ferror(s->f))
            ERREXIT(d, JERR_FILE_READ);
        s->p = s->buf;
        s->end = s->buf + n;
    }
    if (s->p == s->end)
        ERREXIT(d, JERR_INPUT_EOF);
    size_t n = (size_t)(s->end - s->p);
    s->pub.next_input_byte = s->p;
    s->pub.bytes_in_buffer = n < IMS__JPEG_CHUNK ? n : IMS__JPEG_CHUNK;
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

void ims__jpeg_src_init(j_decompress_ptr d, ims__jpeg_src *s, const void *buf, size_t len, FILE *f)
{
    s->p = f ? s->buf : buf;
    s->end = f ? s->buf : (const JOCTET *)buf + len;
    s->f = f;
    s->pub.next_input_byte = NULL;
    s->pub.bytes_in_buffer = 0;
    s->pub.init_source = src_init;
    s->pub.fill_input_buffer = src_fill;
    s->pub.skip_input_data = src_skip;
    s->pub.resync_to_restart = jpeg_resync_to_restart;
    s->pub.term_source = src_term;
    d->src = &s->pub;
}
