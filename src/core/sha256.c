/* SPDX-License-Identifier: MIT */
/*
 * sha256.c — SHA-256 (FIPS 180-4): content hashes of images (ingest) and
 * the reference-tensor hashes of the TF.js oracle tests, and the identity
 * of model files (17-90 MB, hashed when a collection installs or writes
 * one). Whole blocks are compressed straight from the caller's buffer,
 * with the SHA extensions when the CPU has them, else in portable C; both
 * give the same digest (tests/unit/test_core.c checks each).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core_int.h"

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static uint32_t load_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Portable compression of n consecutive 64-byte blocks. */
static void blocks_ref(uint32_t h[8], const unsigned char *p, size_t n)
{
    for (; n--; p += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = load_be32(p + 4 * i);
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 =
                k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
            uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d;
        h[4] += e, h[5] += f, h[6] += g, h[7] += k;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

/* The same with the SHA extensions (SHA-NI), after Intel's reference code:
 * the state is kept as ABEF/CDGH, four rounds per sha256rnds2 pair. */
__attribute__((target("sha,sse4.1"))) static void blocks_shani(uint32_t h[8],
                                                               const unsigned char *p, size_t n)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&h[0]); /* DCBA */
    __m128i st1 = _mm_loadu_si128((const __m128i *)&h[4]); /* HGFE */
    tmp = _mm_shuffle_epi32(tmp, 0xB1);                    /* CDAB */
    st1 = _mm_shuffle_epi32(st1, 0x1B);                    /* EFGH */
    __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);            /* ABEF */
    st1 = _mm_blend_epi16(st1, tmp, 0xF0);                 /* CDGH */
    for (; n--; p += 64) {
        const __m128i save0 = st0, save1 = st1;
        __m128i m[4], msg;
        for (int i = 0; i < 4; i++)
            m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
        for (int r = 0; r < 16; r++) { /* rounds 4r .. 4r+3 with w[4r..4r+3] = m[r % 4] */
            const __m128i cur = m[r & 3];
            msg = _mm_add_epi32(cur, _mm_loadu_si128((const __m128i *)&K[4 * r]));
            st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
            if (r >= 3 && r <= 14) { /* finish w for group r+1 (msg1 of it done) */
                __m128i *nx = &m[(r + 1) & 3];
                *nx = _mm_add_epi32(*nx, _mm_alignr_epi8(cur, m[(r + 3) & 3], 4));
                *nx = _mm_sha256msg2_epu32(*nx, cur);
            }
            msg = _mm_shuffle_epi32(msg, 0x0E);
            st0 = _mm_sha256rnds2_epu32(st0, st1, msg);
            if (r >= 1 && r <= 12) /* start w for group r+3 from groups r-1 and r */
                m[(r + 3) & 3] = _mm_sha256msg1_epu32(m[(r + 3) & 3], cur);
        }
        st0 = _mm_add_epi32(st0, save0);
        st1 = _mm_add_epi32(st1, save1);
    }
    tmp = _mm_shuffle_epi32(st0, 0x1B);    /* FEBA */
    st1 = _mm_shuffle_epi32(st1, 0xB1);    /* DCHG */
    st0 = _mm_blend_epi16(tmp, st1, 0xF0); /* DCBA */
    st1 = _mm_alignr_epi8(st1, tmp, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&h[0], st0);
    _mm_storeu_si128((__m128i *)&h[4], st1);
}

/* SHA-NI: CPUID leaf 7, EBX bit 29 (SSE4.1 is implied on every such CPU). */
static int have_shani(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 29) & 1);
}
#else
static int have_shani(void) { return 0; }
static void blocks_shani(uint32_t h[8], const unsigned char *p, size_t n) { blocks_ref(h, p, n); }
#endif

typedef void (*blocks_fn)(uint32_t h[8], const unsigned char *p, size_t n);
static blocks_fn g_blocks;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void pick(void) { g_blocks = have_shani() ? blocks_shani : blocks_ref; }

static int g_portable; /* tests: the portable code even on a SHA-NI CPU */

static void blocks(uint32_t h[8], const unsigned char *p, size_t n)
{
    pthread_once(&g_once, pick);
    (__atomic_load_n(&g_portable, __ATOMIC_RELAXED) ? blocks_ref : g_blocks)(h, p, n);
}

int ims__sha256_portable(int on)
{
    __atomic_store_n(&g_portable, on, __ATOMIC_RELAXED);
    return have_shani();
}

void ims__sha256_init(ims__sha256_ctx *s)
{
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, H0, sizeof H0);
    s->n = 0, s->fill = 0;
}

void ims__sha256_update(ims__sha256_ctx *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    s->n += len;
    if (s->fill) { /* complete the pending block first */
        size_t k = 64 - s->fill < len ? 64 - s->fill : len;
        memcpy(s->buf + s->fill, p, k);
        s->fill += k, p += k, len -= k;
        if (s->fill < 64)
            return;
        blocks(s->h, s->buf, 1);
        s->fill = 0;
    }
    if (len >= 64) { /* whole blocks straight from the input */
        blocks(s->h, p, len / 64);
        p += len & ~(size_t)63, len &= 63;
    }
    memcpy(s->buf, p, len);
    s->fill = len;
}

void ims__sha256_final_hex(ims__sha256_ctx *s, char hex[65])
{
    uint64_t bits = s->n * 8;
    unsigned char pad = 0x80, zero = 0, len[8];
    ims__sha256_update(s, &pad, 1);
    while (s->fill != 56)
        ims__sha256_update(s, &zero, 1);
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(bits >> (56 - 8 * i));
    ims__sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++)
        snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
}

void ims__sha256_hex(const void *p, size_t n, char hex[65])
{
    ims__sha256_ctx s;
    ims__sha256_init(&s);
    ims__sha256_update(&s, p, n);
    ims__sha256_final_hex(&s, hex);
}
