/* SPDX-License-Identifier: MIT */
/*
 * avx2.c — AVX2/FMA kernels (built with -mavx2 -mfma -mf16c, called only
 * when ims_cpu_detect() reports AVX2). Same contracts as ref.c; channels are
 * processed 8 at a time (one YMM register), tails with masked loads/stores.
 */
#include <immintrin.h>
#include <string.h>

#include "core/core_int.h"
#include "kernels.h"

static const int32_t mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* Mask with the first n (0..8) lanes set. */
static inline __m256i tail_mask(int n)
{
    return _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - n));
}

static inline __m256 act8(__m256 v, int act, __m256 lo, __m256 hi)
{
    if (act == 1)
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return v;
}

static void bias_act(float *y, int64_t rows, int c, int ld, const float *bias, int act,
                     float act_max)
{
    if (act > 1) { /* sigmoid / tanh: scalar, rare */
        for (int64_t r = 0; r < rows; r++)
            for (int j = 0; j < c; j++) {
                float *p = y + r * ld + j;
                *p = ims__act1(*p + (bias ? bias[j] : 0), act, act_max);
            }
        return;
    }
    const __m256 lo = _mm256_setzero_ps();
    const __m256 hi = _mm256_set1_ps(act_max > 0 ? act_max : INFINITY);
    const int c8 = c & ~7;
    const __m256i mt = tail_mask(c - c8);
    for (int64_t r = 0; r < rows; r++) {
        float *p = y + r * ld;
        int j = 0;
        for (; j < c8; j += 8) {
            __m256 v = _mm256_loadu_ps(p + j);
            if (bias)
                v = _mm256_add_ps(v, _mm256_loadu_ps(bias + j));
            _mm256_storeu_ps(p + j, act8(v, act, lo, hi));
        }
        if (j < c) {
            __m256 v = _mm256_maskload_ps(p + j, mt);
            if (bias)
                v = _mm256_add_ps(v, _mm256_maskload_ps(bias + j, mt));
            _mm256_maskstore_ps(p + j, mt, act8(v, act, lo, hi));
        }
    }
}

/* One 8-channel block of a 3x3 depthwise row (dilation 1): the nine weights
 * stay in registers while the block sweeps the row; rows outside the input
 * get zero weights (their pointer is clamped to a valid row), columns
 * outside it are skipped on the border pixels only. */
static inline __attribute__((always_inline)) void
dw3x3_block(const ims__dw_args *a, int oy, int j, int masked, __m256i m, __m256 lo, __m256 hi)
{
    const int64_t ldi = a->ld_in;
    const int iy0 = oy * a->sh - a->pad_t;
    const float *row[3];
    __m256 w[3][3];
    int any_row = 0; /* a row inside both the input and the window (one exists) */
    for (int q = 2; q >= 0; q--)
        if (iy0 + q >= 0 && iy0 + q < a->in_h)
            any_row = iy0 + q;
    _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++) {
        int iy = iy0 + ky, ok = iy >= 0 && iy < a->in_h;
        row[ky] = ims__dw_row(a, ok ? iy : any_row) + j; /* zero weights if !ok */
        _Pragma("GCC unroll 3") for (int kx = 0; kx < 3; kx++) {
            const float *kp = a->k + (int64_t)(ky * 3 + kx) * a->c + j;
            w[ky][kx] = !ok ? _mm256_setzero_ps()
                            : masked ? _mm256_maskload_ps(kp, m) : _mm256_loadu_ps(kp);
        }
    }
#define LD(p) (masked ? _mm256_maskload_ps((p), m) : _mm256_loadu_ps(p))
#define ST(p, v)                                                                         \
    do {                                                                                 \
        if (masked)                                                                      \
            _mm256_maskstore_ps((p), m, act8((v), a->act, lo, hi));                      \
        else                                                                             \
            _mm256_storeu_ps((p), act8((v), a->act, lo, hi));                            \
    } while (0)
    const __m256 b = a->bias ? LD(a->bias + j) : _mm256_setzero_ps();
    const int sw = a->sw;
    const int64_t ldo = a->ld_out, sx = (int64_t)sw * ldi;
    float *orow = a->out + (int64_t)oy * a->out_w * ldo + j;
    /* interior output columns: the whole 3-wide window inside the input */
    int ox_a = (a->pad_l + sw - 1) / sw, ox_b = a->in_w - 3 + a->pad_l >= 0
                                                    ? (a->in_w - 3 + a->pad_l) / sw + 1
                                                    : 0;
    if (ox_b > a->out_w)
        ox_b = a->out_w;
    if (ox_a > ox_b)
        ox_a = ox_b;
    for (int ox = 0; ox < a->out_w; ox++) {
        if (ox == ox_a) { /* four interior pixels at a time: four independent chains */
            for (; sw == 1 && ox + 4 <= ox_b; ox += 4) {
                /* stride 1: the 4 windows share 6 input columns per row */
                __m256 s0 = b, s1 = b, s2 = b, s3 = b;
                _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++) {
                    const float *p = row[ky] + (int64_t)(ox - a->pad_l) * ldi;
                    __m256 c0 = LD(p), c1 = LD(p + ldi), c2 = LD(p + 2 * ldi);
                    __m256 c3 = LD(p + 3 * ldi), c4 = LD(p + 4 * ldi), c5 = LD(p + 5 * ldi);
                    __m256 w0 = w[ky][0], w1 = w[ky][1], w2 = w[ky][2];
                    s0 = _mm256_fmadd_ps(c0, w0, s0), s1 = _mm256_fmadd_ps(c1, w0, s1);
                    s2 = _mm256_fmadd_ps(c2, w0, s2), s3 = _mm256_fmadd_ps(c3, w0, s3);
                    s0 = _mm256_fmadd_ps(c1, w1, s0), s1 = _mm256_fmadd_ps(c2, w1, s1);
                    s2 = _mm256_fmadd_ps(c3, w1, s2), s3 = _mm256_fmadd_ps(c4, w1, s3);
                    s0 = _mm256_fmadd_ps(c2, w2, s0), s1 = _mm256_fmadd_ps(c3, w2, s1);
                    s2 = _mm256_fmadd_ps(c4, w2, s2), s3 = _mm256_fmadd_ps(c5, w2, s3);
                }
                float *o = orow + ox * ldo;
                ST(o, s0);
                ST(o + ldo, s1);
                ST(o + 2 * ldo, s2);
                ST(o + 3 * ldo, s3);
            }
            for (; ox + 4 <= ox_b; ox += 4) {
                __m256 s0 = b, s1 = b, s2 = b, s3 = b;
                _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++) {
                    const float *p = row[ky] + (int64_t)(ox * sw - a->pad_l) * ldi;
                    _Pragma("GCC unroll 3") for (int kx = 0; kx < 3; kx++) {
                        const float *q = p + kx * ldi;
                        s0 = _mm256_fmadd_ps(LD(q), w[ky][kx], s0);
                        s1 = _mm256_fmadd_ps(LD(q + sx), w[ky][kx], s1);
                        s2 = _mm256_fmadd_ps(LD(q + 2 * sx), w[ky][kx], s2);
                        s3 = _mm256_fmadd_ps(LD(q + 3 * sx), w[ky][kx], s3);
                    }
                }
                float *o = orow + ox * ldo;
                ST(o, s0);
                ST(o + ldo, s1);
                ST(o + 2 * ldo, s2);
                ST(o + 3 * ldo, s3);
            }
            if (ox >= a->out_w)
                break;
        }
        int ix0 = ox * sw - a->pad_l;
        __m256 acc[3] = {b, _mm256_setzero_ps(), _mm256_setzero_ps()};
        _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++)
            _Pragma("GCC unroll 3") for (int kx = 0; kx < 3; kx++) {
                int ix = ix0 + kx;
                if (ix >= 0 && ix < a->in_w)
                    acc[ky] = _mm256_fmadd_ps(LD(row[ky] + (int64_t)ix * ldi), w[ky][kx], acc[ky]);
            }
        ST(orow + ox * ldo, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), acc[2]));
    }
#undef LD
#undef ST
}

static void dw3x3_rows(const ims__dw_args *a, int oy0, int oy1)
{
    const int C = a->c, c8 = C & ~7;
    const __m256i mt = tail_mask(C - c8);
    const __m256 lo = _mm256_setzero_ps();
    const __m256 hi = _mm256_set1_ps(a->act_max > 0 ? a->act_max : INFINITY);
    for (int oy = oy0; oy < oy1; oy++) {
        for (int j = 0; j < c8; j += 8)
            dw3x3_block(a, oy, j, 0, mt, lo, hi);
        if (c8 < C)
            dw3x3_block(a, oy, c8, 1, mt, lo, hi);
    }
}

static void dw_rows(const ims__dw_args *a, int oy0, int oy1)
{
    if (a->kh == 3 && a->kw == 3 && a->dh == 1 && a->dw == 1 && a->act <= 1) {
        dw3x3_rows(a, oy0, oy1);
        return;
    }
    IMS_ASSERT(!a->rows); /* the planner fuses only into 3x3 depthwise */
    const int C = a->c, c8 = C & ~7;
    const __m256i mt = tail_mask(C - c8);
    const __m256 lo = _mm256_setzero_ps();
    const __m256 hi = _mm256_set1_ps(a->act_max > 0 ? a->act_max : INFINITY);
    const int act = a->act;
    for (int oy = oy0; oy < oy1; oy++) {
        int iy0 = oy * a->sh - a->pad_t;
        int ky0 = 0, ky1 = a->kh;
        while (ky0 < ky1 && iy0 + ky0 * a->dh < 0)
            ky0++;
        while (ky1 > ky0 && iy0 + (ky1 - 1) * a->dh >= a->in_h)
            ky1--;
        for (int ox = 0; ox < a->out_w; ox++) {
            int ix0 = ox * a->sw - a->pad_l;
            int kx0 = 0, kx1 = a->kw;
            while (kx0 < kx1 && ix0 + kx0 * a->dw < 0)
                kx0++;
            while (kx1 > kx0 && ix0 + (kx1 - 1) * a->dw >= a->in_w)
                kx1--;
            float *o = a->out + ((int64_t)oy * a->out_w + ox) * a->ld_out;
            const int64_t xb = ((int64_t)iy0 * a->in_w + ix0) * a->ld_in; /* may be < 0 */
            const int64_t sy = (int64_t)a->dh * a->in_w * a->ld_in, sx = (int64_t)a->dw * a->ld_in;
            int j = 0;
            for (; j + 16 <= c8; j += 16) {
                __m256 s0 = a->bias ? _mm256_loadu_ps(a->bias + j) : _mm256_setzero_ps();
                __m256 s1 = a->bias ? _mm256_loadu_ps(a->bias + j + 8) : _mm256_setzero_ps();
                for (int ky = ky0; ky < ky1; ky++) {
                    const int64_t xr = xb + ky * sy + j;
                    const float *kr = a->k + (int64_t)ky * a->kw * C + j;
                    for (int kx = kx0; kx < kx1; kx++) {
                        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a->in + (xr + kx * sx)),
                                             _mm256_loadu_ps(kr + (int64_t)kx * C), s0);
                        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a->in + (xr + kx * sx + 8)),
                                             _mm256_loadu_ps(kr + (int64_t)kx * C + 8), s1);
                    }
                }
                _mm256_storeu_ps(o + j, act8(s0, act, lo, hi));
                _mm256_storeu_ps(o + j + 8, act8(s1, act, lo, hi));
            }
            for (; j < C; j += 8) {
                __m256i m = j < c8 ? tail_mask(8) : mt;
                __m256 s = a->bias ? _mm256_maskload_ps(a->bias + j, m) : _mm256_setzero_ps();
                for (int ky = ky0; ky < ky1; ky++) {
                    const int64_t xr = xb + ky * sy + j;
                    const float *kr = a->k + (int64_t)ky * a->kw * C + j;
                    for (int kx = kx0; kx < kx1; kx++)
                        s = _mm256_fmadd_ps(_mm256_maskload_ps(a->in + (xr + kx * sx), m),
                                            _mm256_maskload_ps(kr + (int64_t)kx * C, m), s);
                }
                _mm256_maskstore_ps(o + j, m, act8(s, act, lo, hi));
            }
            if (act > 1)
                for (j = 0; j < C; j++)
                    o[j] = ims__act1(o[j], act, a->act_max);
        }
    }
}

static void vadd(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int u = 0; u < 32; u += 8)
            _mm256_storeu_ps(y + i + u, _mm256_add_ps(_mm256_loadu_ps(y + i + u),
                                                      _mm256_loadu_ps(x + i + u)));
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] += x[i];
}

/* One FMA per element: may differ from ref.c by one rounding. */
static void vscale(float *y, const float *x, int64_t n, float scale, float shift)
{
    const __m256 s = _mm256_set1_ps(scale), t = _mm256_set1_ps(shift);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), s, t));
    if (i < n) {
        __m256i m = tail_mask((int)(n - i));
        _mm256_maskstore_ps(y + i, m,
                            _mm256_fmadd_ps(_mm256_maskload_ps(x + i, m), s, t));
    }
}

static void pool_rows(const ims__dw_args *a, int oy0, int oy1)
{
    const int C = a->c, c8 = C & ~7, is_max = a->is_max;
    const __m256i mt = tail_mask(C - c8);
    const __m256 init = _mm256_set1_ps(is_max ? -INFINITY : 0.0f);
    for (int oy = oy0; oy < oy1; oy++) {
        int iy0 = oy * a->sh - a->pad_t;
        int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = a->in_h - iy0 < a->kh ? a->in_h - iy0 : a->kh;
        for (int ox = 0; ox < a->out_w; ox++) {
            float *o = a->out + ((int64_t)oy * a->out_w + ox) * a->ld_out;
            int ix0 = ox * a->sw - a->pad_l;
            int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = a->in_w - ix0 < a->kw ? a->in_w - ix0 : a->kw;
            const __m256 inv = _mm256_set1_ps(1.0f / (float)((ky1 - ky0) * (kx1 - kx0)));
            const float *base = a->in + ((int64_t)(iy0 + ky0) * a->in_w + ix0 + kx0) * a->ld_in;
            const int64_t sy = (int64_t)a->in_w * a->ld_in;
            int j = 0;
            for (; j + 32 <= c8; j += 32) {
                __m256 s0 = init, s1 = init, s2 = init, s3 = init;
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *p = base + (ky - ky0) * sy + j;
                    for (int kx = kx0; kx < kx1; kx++, p += a->ld_in) {
                        if (is_max) {
                            s0 = _mm256_max_ps(s0, _mm256_loadu_ps(p));
                            s1 = _mm256_max_ps(s1, _mm256_loadu_ps(p + 8));
                            s2 = _mm256_max_ps(s2, _mm256_loadu_ps(p + 16));
                            s3 = _mm256_max_ps(s3, _mm256_loadu_ps(p + 24));
                        } else {
                            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p));
                            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + 8));
                            s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + 16));
                            s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + 24));
                        }
                    }
                }
                if (!is_max) {
                    s0 = _mm256_mul_ps(s0, inv), s1 = _mm256_mul_ps(s1, inv);
                    s2 = _mm256_mul_ps(s2, inv), s3 = _mm256_mul_ps(s3, inv);
                }
                _mm256_storeu_ps(o + j, s0);
                _mm256_storeu_ps(o + j + 8, s1);
                _mm256_storeu_ps(o + j + 16, s2);
                _mm256_storeu_ps(o + j + 24, s3);
            }
            for (; j < C; j += 8) {
                __m256i m = j < c8 ? tail_mask(8) : mt;
                __m256 s0 = init;
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *p = base + (ky - ky0) * sy + j;
                    for (int kx = kx0; kx < kx1; kx++, p += a->ld_in) {
                        __m256 v = _mm256_maskload_ps(p, m);
                        s0 = is_max ? _mm256_max_ps(s0, v) : _mm256_add_ps(s0, v);
                    }
                }
                if (!is_max)
                    s0 = _mm256_mul_ps(s0, inv);
                _mm256_maskstore_ps(o + j, m, s0);
            }
        }
    }
}

/* Rows [i, i+R) x columns [j, j+16) of C = A.B, R a compile-time constant. */
#define GEMM_BLOCK(R)                                                                    \
    do {                                                                                 \
        __m256 acc[R][2];                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                             \
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();                                 \
        for (int k = 0; k < K; k++) {                                                    \
            const float *b = B + (int64_t)k * ldb + j;                                   \
            __m256 b0 = _mm256_maskload_ps(b, m0), b1 = _mm256_maskload_ps(b + 8, m1);   \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                       \
                __m256 av = _mm256_broadcast_ss(A + (int64_t)(i + r) * lda + k);         \
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);                          \
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);                          \
            }                                                                            \
        }                                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                           \
            float *c = C + (int64_t)(i + r) * ldc + j;                                   \
            _mm256_maskstore_ps(c, m0, acc[r][0]);                                       \
            _mm256_maskstore_ps(c + 8, m1, acc[r][1]);                                   \
        }                                                                                \
    } while (0)

static void gemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                 float *C, int ldc)
{
    for (int j = 0; j < N; j += 16) {
        int w = N - j < 16 ? N - j : 16;
        __m256i m0 = tail_mask(w < 8 ? w : 8), m1 = tail_mask(w > 8 ? w - 8 : 0);
        int i = 0;
        for (; i + 6 <= M; i += 6)
            GEMM_BLOCK(6);
        switch (M - i) {
        case 5: GEMM_BLOCK(5); break;
        case 4: GEMM_BLOCK(4); break;
        case 3: GEMM_BLOCK(3); break;
        case 2: GEMM_BLOCK(2); break;
        case 1: GEMM_BLOCK(1); break;
        default: break;
        }
    }
}

/* R rows x one 16-column panel over the full K, epilogue in registers. */
#define PACKED_TILE(R)                                                              \
    do {                                                                            \
        __m256 acc[R][2];                                                           \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = \
            _mm256_setzero_ps();                                                    \
        const float *a = A + (int64_t)i * lda;                                      \
        for (int k = 0; k < K; k++) {                                               \
            __m256 b0 = _mm256_load_ps(B + (int64_t)k * 16);                        \
            __m256 b1 = _mm256_load_ps(B + (int64_t)k * 16 + 8);                    \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                     \
            {                                                                       \
                __m256 av = _mm256_broadcast_ss(a + (int64_t)r * lda + k);          \
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);                     \
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);                     \
            }                                                                       \
        }                                                                           \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                         \
        {                                                                           \
            float *c = C + (int64_t)(i + r) * ldc + p * 16;                         \
            __m256 v0 = act8(_mm256_add_ps(acc[r][0], bb0), act, lo, hi);           \
            __m256 v1 = act8(_mm256_add_ps(acc[r][1], bb1), act, lo, hi);           \
            if (res) {                                                              \
                const float *q = res + (int64_t)(i + r) * ldres + p * 16;           \
                v0 = _mm256_add_ps(v0, _mm256_maskload_ps(q, m0));                  \
                v1 = _mm256_add_ps(v1, _mm256_maskload_ps(q + 8, m1));              \
            }                                                                       \
            if (full) {                                                             \
                _mm256_storeu_ps(c, v0);                                            \
                _mm256_storeu_ps(c + 8, v1);                                        \
            } else {                                                                \
                _mm256_maskstore_ps(c, m0, v0);                                     \
                _mm256_maskstore_ps(c + 8, m1, v1);                                 \
            }                                                                       \
        }                                                                           \
    } while (0)

/* R rows x the first 8 columns of a panel (a last panel with <= 8 live
 * columns, e.g. N = 24 or 88: half the FMAs of PACKED_TILE). */
#define PACKED_TILE8(R)                                                                   \
    do {                                                                                  \
        __m256 acc[R];                                                                    \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps(); \
        const float *a = A + (int64_t)i * lda;                                            \
        for (int k = 0; k < K; k++) {                                                     \
            __m256 b0 = _mm256_load_ps(B + (int64_t)k * 16);                              \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                           \
            {                                                                             \
                __m256 av = _mm256_broadcast_ss(a + (int64_t)r * lda + k);                \
                acc[r] = _mm256_fmadd_ps(av, b0, acc[r]);                                 \
            }                                                                             \
        }                                                                                 \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                               \
        {                                                                                 \
            float *c = C + (int64_t)(i + r) * ldc + p * 16;                               \
            __m256 v0 = act8(_mm256_add_ps(acc[r], bb0), act, lo, hi);                    \
            if (res)                                                                      \
                v0 = _mm256_add_ps(                                                       \
                    v0, _mm256_maskload_ps(res + (int64_t)(i + r) * ldres + p * 16, m0)); \
            _mm256_maskstore_ps(c, m0, v0);                                               \
        }                                                                                 \
    } while (0)

static void gemm_packed(int M, int N, int K, const float *A, int lda, const float *Bp,
                        const float *bias_p, float *C, int ldc, int p0, int p1, int act,
                        float act_max, const float *res, int ldres)
{
    IMS_ASSERT(!res || act <= 1);
    const __m256 lo = _mm256_setzero_ps();
    const __m256 hi = _mm256_set1_ps(act_max > 0 ? act_max : INFINITY);
    const int act_v = act == 1 ? 1 : 0;
    for (int p = p0; p < p1; p++) {
        const float *B = Bp + (int64_t)p * K * 16;
        int w = N - p * 16 < 16 ? N - p * 16 : 16, full = w == 16;
        __m256i m0 = tail_mask(w < 8 ? w : 8), m1 = tail_mask(w > 8 ? w - 8 : 0);
        __m256 bb0 = _mm256_load_ps(bias_p + p * 16), bb1 = _mm256_load_ps(bias_p + p * 16 + 8);
        int i = 0;
        if (w <= 8) {
            const int act = act_v;
            for (; i + 8 <= M; i += 8)
                PACKED_TILE8(8);
            switch (M - i) {
            case 7: PACKED_TILE8(7); break;
            case 6: PACKED_TILE8(6); break;
            case 5: PACKED_TILE8(5); break;
            case 4: PACKED_TILE8(4); break;
            case 3: PACKED_TILE8(3); break;
            case 2: PACKED_TILE8(2); break;
            case 1: PACKED_TILE8(1); break;
            default: break;
            }
        } else {
            const int act = act_v;
            for (; i + 6 <= M; i += 6)
                PACKED_TILE(6);
            switch (M - i) {
            case 5: PACKED_TILE(5); break;
            case 4: PACKED_TILE(4); break;
            case 3: PACKED_TILE(3); break;
            case 2: PACKED_TILE(2); break;
            case 1: PACKED_TILE(1); break;
            default: break;
            }
        }
        if (act > 1)
            for (int r = 0; r < M; r++)
                for (int j = 0; j < w; j++) {
                    float *c = C + (int64_t)r * ldc + p * 16 + j;
                    *c = ims__act1(*c, act, act_max);
                }
    }
}

#define WT_VEC __m256
#define WT_LANES 8
#define WT_MASK_T __m256i
#define WT_MASK(n) tail_mask(n)
#define WT_LD(m, p) _mm256_maskload_ps((p), (m))
#define WT_ST(m, p, v) _mm256_maskstore_ps((p), (m), (v))
#define WT_ADD _mm256_add_ps
#define WT_SUB _mm256_sub_ps
#define WT_SET1 _mm256_set1_ps
#define WT_ACT act8
#include "wino_tile.h"

const ims__nn_kernels ims__nn_kernels_avx2 = {"avx2",  6,           96 * 1024, bias_act,
                                              dw_rows, vadd,        vscale,    pool_rows,
                                              gemm,    gemm_packed, wino_in,   wino_out};
