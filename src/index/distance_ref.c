/* SPDX-License-Identifier: MIT */
/*
 * distance_ref.c — portable distance kernels (the oracle of every SIMD
 * variant) and run-time kernel dispatch. IEEE half conversion is shared
 * with the model importer: core_int.h.
 *
 * The loops are written with four independent partial sums so that gcc can
 * vectorise them without -ffast-math reassociation; results therefore differ
 * from a strict left-to-right sum only by rounding.
 */
#include <math.h>

#include "index_int.h"

static float l2_f32(const float *a, const float *b, size_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
        float d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0, s1 += d1 * d1, s2 += d2 * d2, s3 += d3 * d3;
    }
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

static float ip_f32(const float *a, const float *b, size_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i], s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2], s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static float l2_f16(const float *q, const uint16_t *c, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++) {
        float d = q[i] - ims__f16_to_f32(c[i]);
        s += d * d;
    }
    return s;
}

static float ip_f16(const float *q, const uint16_t *c, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++)
        s += q[i] * ims__f16_to_f32(c[i]);
    return s;
}

static float l2_u8(const float *b, const float *a, const uint8_t *c, size_t n)
{
    float s0 = 0, s1 = 0;
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        float d0 = b[i] - a[i] * (float)c[i], d1 = b[i + 1] - a[i + 1] * (float)c[i + 1];
        s0 += d0 * d0, s1 += d1 * d1;
    }
    for (; i < n; i++) {
        float d = b[i] - a[i] * (float)c[i];
        s0 += d * d;
    }
    return s0 + s1;
}

static float ip_u8(const float *w, const uint8_t *c, size_t n)
{
    float s0 = 0, s1 = 0;
    size_t i = 0;
    for (; i + 2 <= n; i += 2)
        s0 += w[i] * (float)c[i], s1 += w[i + 1] * (float)c[i + 1];
    for (; i < n; i++)
        s0 += w[i] * (float)c[i];
    return s0 + s1;
}

static void f16_encode(const float *x, uint16_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = ims__f32_to_f16(x[i]);
}

static void f16_decode(const uint16_t *c, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = ims__f16_to_f32(c[i]);
}

const ims__index_kernels ims__index_kernels_ref = {
    .name = "ref",
    .l2_f32 = l2_f32,
    .ip_f32 = ip_f32,
    .l2_f16 = l2_f16,
    .ip_f16 = ip_f16,
    .l2_u8 = l2_u8,
    .ip_u8 = ip_u8,
    .f16_encode = f16_encode,
    .f16_decode = f16_decode,
};

/* The dispatch rule, shared with src/nn/kernels/dispatch.c: the best level
 * <= `level` that this build has and this CPU supports; never NULL. */
const ims__index_kernels *ims__index_kernels_for(int level)
{
#ifdef IMS_HAVE_AVX512
    if (level >= IMS_CPU_AVX512 && ims_cpu_detect() >= IMS_CPU_AVX512)
        return &ims__index_kernels_avx512;
#endif
#ifdef IMS_HAVE_AVX2
    if (level >= IMS_CPU_AVX2 && ims_cpu_detect() >= IMS_CPU_AVX2)
        return &ims__index_kernels_avx2;
#endif
    (void)level;
    return &ims__index_kernels_ref;
}
