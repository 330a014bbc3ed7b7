/* SPDX-License-Identifier: MIT */
/* core_int.h — internal helpers shared by every module (never installed). */
#ifndef IMS_CORE_INT_H
#define IMS_CORE_INT_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
/* Tests: 1 forces the table code (0: SSE4.2's crc32 when the CPU has it);
 * returns 1 when it has. */
int ims__crc32c_portable(int on);

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

/* IEEE 754 binary16 <-> binary32. ims__f32_to_f16 rounds to nearest even
 * (overflow to Inf, NaN stays NaN); ims__f16_to_f32 is exact, subnormals,
 * Inf and NaN payloads included. Inline: the f16 distance loops and the
 * weight importer call them per element. */
static inline uint16_t ims__f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t e = (x >> 23) & 0xff, m = x & 0x7fffffu;
    if (e == 0xff) /* Inf / NaN */
        return (uint16_t)(sign | 0x7c00u | (m ? 0x200u : 0));
    int ee = (int)e - 127 + 15;
    if (ee >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (ee <= 0) { /* subnormal half or zero */
        if (ee < -10)
            return (uint16_t)sign;
        m |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - ee);
        uint32_t hm = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1)))
            hm++;
        return (uint16_t)(sign | hm);
    }
    uint32_t hm = m >> 13, rem = m & 0x1fffu;
    uint32_t h = sign | ((uint32_t)ee << 10) | hm;
    if (rem > 0x1000u || (rem == 0x1000u && (hm & 1)))
        h++; /* may carry into the exponent: still correct (rounds to Inf at the top) */
    return (uint16_t)h;
}

static inline float ims__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, x;
    if (e == 0) {
        if (m == 0)
            x = sign;
        else { /* subnormal: normalise */
            e = 127 - 15 + 1;
            while (!(m & 0x400u))
                m <<= 1, e--;
            x = sign | (e << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (e == 31)
        x = sign | 0x7f800000u | (m << 13);
    else
        x = sign | ((e - 15 + 127) << 23) | (m << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
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
/* Tests: 1 forces the portable compression (0: the fastest the CPU has);
 * returns 1 when the CPU has the SHA extensions. */
int ims__sha256_portable(int on);

/*
 * Atomic file write: write to "<path>.tmp.<pid>", fsync, rename over path,
 * fsync the directory. `write_cb` is called with the open FILE*; a non-zero
 * return aborts and removes the temp file. Returns IMS_OK or IMS_EIO (err set).
 */
int ims__write_atomic(const char *path, int (*write_cb)(FILE *f, void *ud), void *ud,
                      ims_error *err);

/* Write s to f as a JSON string literal: quotes, backslashes and control
 * characters escaped, other bytes (UTF-8) as they are. */
void ims__json_str(FILE *f, const char *s);

#endif /* IMS_CORE_INT_H */
