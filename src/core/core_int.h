/* SPDX-License-Identifier: MIT */
/* core_int.h — internal helpers shared by every module (never installed). */
#ifndef IMS_CORE_INT_H
#define IMS_CORE_INT_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "imgsim/imgsim.h"

/* Programmer errors only (never untrusted input): abort with file:line. */
#define IMS_ASSERT(x)                                                          \
    do {                                                                       \
        if (!(x)) {                                                            \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,         \
                    __LINE__, #x);                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define IMS_LIKELY(x) __builtin_expect(!!(x), 1)
#define IMS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define IMS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define IMS_MAX(a, b) ((a) > (b) ? (a) : (b))
#define IMS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* CRC-32C (Castagnoli), for file checksums; crc starts at 0. */
uint32_t ims__crc32c(uint32_t crc, const void *buf, size_t n);

/* Little-endian fixed-width encode/decode for on-disk formats. */
static inline void ims__put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16), p[3] = (unsigned char)(v >> 24);
}
static inline uint32_t ims__get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void ims__put_u64(unsigned char *p, uint64_t v)
{
    ims__put_u32(p, (uint32_t)v);
    ims__put_u32(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t ims__get_u64(const unsigned char *p)
{
    return (uint64_t)ims__get_u32(p) | (uint64_t)ims__get_u32(p + 4) << 32;
}

/* 1/|x| for L2 normalisation (0 for an all-zero x), summed in double in
 * index order: the one formula the train module's heads and nn's L2NORM op
 * share, so both round alike. */
static inline float ims__inv_l2(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
}

/* SHA-256: streaming context, and the hex digest of one buffer. */
typedef struct ims__sha256_ctx {
    uint32_t h[8];
    uint64_t n;             /* bytes hashed so far */
    unsigned char buf[64];  /* pending partial block */
    size_t fill;
} ims__sha256_ctx;
void ims__sha256_init(ims__sha256_ctx *s);
void ims__sha256_update(ims__sha256_ctx *s, const void *data, size_t len);
void ims__sha256_final_hex(ims__sha256_ctx *s, char hex[65]); /* lowercase, NUL-terminated */
void ims__sha256_hex(const void *p, size_t n, char hex[65]);

/*
 * Atomic file write: write to "<path>.tmp.<pid>", fsync, rename over path,
 * fsync the directory. `write_cb` is called with the open FILE*; a non-zero
 * return aborts and removes the temp file. Returns IMS_OK or IMS_EIO (err set).
 */
int ims__write_atomic(const char *path, int (*write_cb)(FILE *f, void *ud), void *ud,
                      ims_error *err);

#endif /* IMS_CORE_INT_H */
