/* SPDX-License-Identifier: MIT */
/*
 * distance_avx512.c — AVX-512 (F/BW/VL/DQ) distance kernels, compiled with
 * the *avx512*.c flags and called only when ims_cpu_level() is avx512
 * (CPUID and XCR0 ZMM/opmask state: src/core/cpu.c). Four 16-lane
 * accumulators hide the FMA latency; tails use masked loads and stores
 * (no scalar loop), which AVX-512 BW/VL give for 8- and 16-bit lanes.
 * test_index_kernels.c compares each with a double-precision loop.
 *
 * int8 and VNNI: the stored codes are u8, but the query side of both int8
 * kernels is float (per-dimension step and offset folded into a and b, see
 * quant.c), so the products are float x u8, not u8 x s8; vpdpbusd would
 * need the query quantised too, which changes the distances (and recall),
 * not just their speed. The int8 kernels therefore widen u8 -> f32 and use
 * FMAs, as the AVX2 ones do, 16 lanes at a time.
 */
#include <immintrin.h>

#include "index_int.h"

static inline __mmask16 tail16(size_t r) { return (__mmask16)((1u << r) - 1u); }

static float l2_f32(const float *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
        __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));
        s0 = _mm512_fmadd_ps(d0, d0, s0), s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2), s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __mmask16 m = tail16(n - i);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        s1 = _mm512_fmadd_ps(d, d, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static float ip_f32(const float *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = tail16(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static inline __m512 ld_h(const uint16_t *c)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)c));
}
static inline __m512 ld_h_tail(const uint16_t *c, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, c)); /* masked-off lanes: +0 */
}

static float l2_f16(const float *q, const uint16_t *c, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(q + i), ld_h(c + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16), ld_h(c + i + 16));
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 32), ld_h(c + i + 32));
        __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 48), ld_h(c + i + 48));
        s0 = _mm512_fmadd_ps(d0, d0, s0), s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2), s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(q + i), ld_h(c + i));
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __mmask16 m = tail16(n - i);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, q + i), ld_h_tail(c + i, m));
        s1 = _mm512_fmadd_ps(d, d, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static float ip_f16(const float *q, const uint16_t *c, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), ld_h(c + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), ld_h(c + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 32), ld_h(c + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 48), ld_h(c + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), ld_h(c + i), s0);
    if (i < n) {
        __mmask16 m = tail16(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), ld_h_tail(c + i, m), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static inline __m512 ld_u8(const uint8_t *c)
{
    return _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)c)));
}
static inline __m512 ld_u8_tail(const uint8_t *c, __mmask16 m)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, c)));
}

static float l2_u8(const float *b, const float *a, const uint8_t *c, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 d0 = _mm512_fnmadd_ps(_mm512_loadu_ps(a + i), ld_u8(c + i), _mm512_loadu_ps(b + i));
        __m512 d1 = _mm512_fnmadd_ps(_mm512_loadu_ps(a + i + 16), ld_u8(c + i + 16),
                                     _mm512_loadu_ps(b + i + 16));
        __m512 d2 = _mm512_fnmadd_ps(_mm512_loadu_ps(a + i + 32), ld_u8(c + i + 32),
                                     _mm512_loadu_ps(b + i + 32));
        __m512 d3 = _mm512_fnmadd_ps(_mm512_loadu_ps(a + i + 48), ld_u8(c + i + 48),
                                     _mm512_loadu_ps(b + i + 48));
        s0 = _mm512_fmadd_ps(d0, d0, s0), s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2), s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_fnmadd_ps(_mm512_loadu_ps(a + i), ld_u8(c + i), _mm512_loadu_ps(b + i));
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __mmask16 m = tail16(n - i);
        __m512 d = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(m, a + i), ld_u8_tail(c + i, m),
                                    _mm512_maskz_loadu_ps(m, b + i));
        s1 = _mm512_fmadd_ps(d, d, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static float ip_u8(const float *w, const uint8_t *c, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), ld_u8(c + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), ld_u8(c + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), ld_u8(c + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), ld_u8(c + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), ld_u8(c + i), s0);
    if (i < n) {
        __mmask16 m = tail16(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), ld_u8_tail(c + i, m), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static void f16_encode(const float *x, uint16_t *out, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(out + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        __mmask16 m = tail16(n - i);
        _mm256_mask_storeu_epi16(
            out + i, m,
            _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT));
    }
}

static void f16_decode(const uint16_t *c, float *out, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, ld_h(c + i));
    if (i < n) {
        __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(out + i, m, ld_h_tail(c + i, m));
    }
}

const ims__index_kernels ims__index_kernels_avx512 = {
    .name = "avx512",
    .l2_f32 = l2_f32,
    .ip_f32 = ip_f32,
    .l2_f16 = l2_f16,
    .ip_f16 = ip_f16,
    .l2_u8 = l2_u8,
    .ip_u8 = ip_u8,
    .f16_encode = f16_encode,
    .f16_decode = f16_decode,
};
