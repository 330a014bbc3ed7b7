/* SPDX-License-Identifier: MIT */
/*
 * jpeg_int.h — libjpeg plumbing shared by the files that call libjpeg
 * directly (jpeg_scan.c, jpeg_decode.c): an error manager that turns every
 * error *and* every warning into a longjmp, and a source that hands
 * libjpeg at most IMS__JPEG_CHUNK bytes at a time (why: jpeg_src.c).
 */
#ifndef IMS_IMAGE_JPEG_INT_H
#define IMS_IMAGE_JPEG_INT_H

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h> /* jpeglib.h needs FILE */

#include <jpeglib.h>

/* Under libjpeg-turbo's Huffman fast-path threshold (512 bytes per block
 * of an MCU), so every MCU is decoded by the slow path, which warns on
 * every bad code. */
#define IMS__JPEG_CHUNK 256

typedef struct ims__jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb; /* where errors and warnings go: set it before any libjpeg call */
} ims__jpeg_err;

typedef struct ims__jpeg_src {
    struct jpeg_source_mgr pub;
    const JOCTET *p, *end; /* bytes not yet handed to libjpeg (memory, or buf) */
    FILE *f;               /* NULL: the bytes are all in memory */
    JOCTET buf[4096];      /* file bytes read ahead of libjpeg */
} ims__jpeg_src;

/* Set up e for d (d->err = &e->pub): error_exit and emit_message on a
 * warning (level < 0) longjmp to e->jb; trace messages are dropped and
 * nothing is ever printed. */
void ims__jpeg_err_init(j_decompress_ptr d, ims__jpeg_err *e);

/* Make s, reading len bytes at buf (f == NULL) or the rest of the open
 * file f (which the caller closes), d's source. Running out of bytes is
 * an error (JERR_INPUT_EOF), not libjpeg's usual warning and fake EOI. */
void ims__jpeg_src_init(j_decompress_ptr d, ims__jpeg_src *s, const void *buf, size_t len, FILE *f);

#endif /* IMS_IMAGE_JPEG_INT_H */
