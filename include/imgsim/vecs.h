/* SPDX-License-Identifier: MIT */
/*
 * vecs.h — TEXMEX .fvecs / .ivecs files (the ANN-benchmark vector format
 * of the SIFT/GIST sets): a sequence of records, each a little-endian
 * int32 dimension d followed by d 4-byte values (float32 in .fvecs, int32
 * in .ivecs). There is no header; every record of a file has the same d.
 *
 * One implementation for the CLI (bench-index, embed --fvecs) and the C
 * benchmarks. All functions are thread-safe (no shared state).
 */
#ifndef IMGSIM_VECS_H
#define IMGSIM_VECS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "imgsim/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Read a whole file: *data gets n x d values (4 bytes each, row-major,
 * record headers stripped), to be freed with ims_free(). `what` ("fvecs",
 * "ivecs") only names the format in messages. A file that is empty, has a
 * first dimension outside 1..max_dim, a size that is not a multiple of the
 * record size, or a record of another dimension is IMS_ECORRUPT (the
 * message gives the offset); IMS_EIO if it cannot be read; IMS_ENOMEM. */
int ims_vecs_read(const char *path, const char *what, uint32_t max_dim, uint32_t *n_dims,
                  size_t *n /* OUT */, void **data /* OUT */, ims_error *err);

/* Append one record (d values of 4 bytes) to f. IMS_EIO on a short write. */
int ims_vecs_write_row(FILE *f, const void *row, uint32_t d);

/* Write n records of d values (row-major) to path atomically (temp file,
 * fsync, rename). Errors: IMS_EINVAL (d == 0 or > INT32_MAX), IMS_EIO. */
int ims_vecs_write(const char *path, const void *data, size_t n, uint32_t d, ims_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_VECS_H */
