/* SPDX-License-Identifier: MIT */
/*
 * avx512.c — AVX-512 kernels (built with -mavx512f -mavx512bw -mavx512vl
 * -mavx512dq -mfma -mf16c, called only when ims_cpu_detect() reports
 * AVX512: CPUID F/DQ/BW/VL and XCR0 with opmask and ZMM state). Same
 * contracts as ref.c; channels go 16 at a time (one ZMM register), tails
 * with opmask loads/stores (which never fault on masked-off lanes).
 *
 * The packed GEMM keeps the 16-column panel format of IMS_PANEL (so the
 * weights packed at session creation are the same for every level) and
 * takes two neighbouring panels at once: a 12 x 32 tile, 24 accumulators
 * of the 32 ZMM registers, 24 FMAs per 2 panel loads and 12 broadcasts.
 * Every output element is still one FMA chain over k = 0..K-1 from zero,
 * then + bias, then the activation, whatever tile it falls in: results do
 * not depend on how rows or panels are split among tasks (determinism
 * rule), and they equal the AVX2 level's bit for bit.
 *
 * VNNI is not used: it multiplies int8/bf16 operands, and these models run
 * in float32 (TF.js tolerances leave no room for int8 activations here).
 */
#include <immintrin.h>
#include <string.h>

#include "core/core_int.h"
#include "kernels.h"

/* Mask with the first n (0..16) lanes set. */
static inline __mmask16 tail_mask(int n) { return (__mmask16)((1u << n) - 1); }

static inline __m512 act16(__m512 v, int act, __m512 lo, __m512 hi)
{
    if (act == 1)
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
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
    const __m512 lo = _mm512_setzero_ps();
    const __m512 hi = _mm512_set1_ps(act_max > 0 ? act_max : INFINITY);
    for (int64_t r = 0; r < rows; r++) {
        float *p = y + r * ld;
        for (int j = 0; j < c; j += 16) {
            __mmask16 m = tail_mask(c - j < 16 ? c - j : 16);
            __m512 v = _mm512_maskz_loadu_ps(m, p + j);
            if (bias)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + j));
            _mm512_mask_storeu_ps(p + j, m, act16(v, act, lo, hi));
        }
    }
}

/* One 16-channel block of a 3x3 depthwise row (dilation 1), as avx2.c's
 * dw3x3_block: the nine weights stay in registers while the block sweeps
 * the row; rows outside the input get zero weights (their pointer is
 * clamped to a valid row), columns outside it are skipped on the border
 * pixels only. The sum order per element is that of avx2.c. */
static inline __attribute__((always_inline)) void dw3x3_block(const ims__dw_args *a, int oy, int j,
                                                              __mmask16 m, __m512 lo, __m512 hi)
{
    const int64_t ldi = a->ld_in;
    const int iy0 = oy * a->sh - a->pad_t;
    const float *row[3];
    __m512 w[3][3];
    int any_row = 0; /* a row inside both the input and the window (one exists) */
    for (int q = 2; q >= 0; q--)
        if (iy0 + q >= 0 && iy0 + q < a->in_h)
            any_row = iy0 + q;
    _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++)
    {
        int iy = iy0 + ky, ok = iy >= 0 && iy < a->in_h;
        row[ky] = ims__dw_row(a, ok ? iy : any_row) + j; /* zero weights if !ok */
        _Pragma("GCC unroll 3") for (int kx = 0; kx < 3; kx++)
        {
            const float *kp = a->k + (int64_t)(ky * 3 + kx) * a->c + j;
            w[ky][kx] = !ok ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, kp);
        }
    }
#define LD(p) _mm512_maskz_loadu_ps(m, (p))
#define ST(p, v) _mm512_mask_storeu_ps((p), m, act16((v), a->act, lo, hi))
    const __m512 b = a->bias ? LD(a->bias + j) : _mm512_setzero_ps();
    const int sw = a->sw;
    const int64_t ldo = a->ld_out, sx = (int64_t)sw * ldi;
    float *orow = a->out + (int64_t)oy * a->out_w * ldo + j;
    /* interior output columns: the whole 3-wide window inside the input */
    int ox_a = (a->pad_l + sw - 1) / sw,
        ox_b = a->in_w - 3 + a->pad_l >= 0 ? (a->in_w - 3 + a->pad_l) / sw + 1 : 0;
    if (ox_b > a->out_w)
        ox_b = a->out_w;
    if (ox_a > ox_b)
        ox_a = ox_b;
    for (int ox = 0; ox < a->out_w; ox++) {
        if (ox == ox_a) { /* four interior pixels at a time: four independent chains */
            for (; sw == 1 && ox + 4 <= ox_b; ox += 4) {
                /* stride 1: the 4 windows share 6 input columns per row */
                __m512 s0 = b, s1 = b, s2 = b, s3 = b;
                _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++)
                {
                    const float *p = row[ky] + (int64_t)(ox - a->pad_l) * ldi;
                    __m512 c0 = LD(p), c1 = LD(p + ldi), c2 = LD(p + 2 * ldi);
                    __m512 c3 = LD(p + 3 * ldi), c4 = LD(p + 4 * ldi), c5 = LD(p + 5 * ldi);
                    __m512 w0 = w[ky][0], w1 = w[ky][1], w2 = w[ky][2];
                    s0 = _mm512_fmadd_ps(c0, w0, s0), s1 = _mm512_fmadd_ps(c1, w0, s1);
                    s2 = _mm512_fmadd_ps(c2, w0, s2), s3 = _mm512_fmadd_ps(c3, w0, s3);
                    s0 = _mm512_fmadd_ps(c1, w1, s0), s1 = _mm512_fmadd_ps(c2, w1, s1);
                    s2 = _mm512_fmadd_ps(c3, w1, s2), s3 = _mm512_fmadd_ps(c4, w1, s3);
                    s0 = _mm512_fmadd_ps(c2, w2, s0), s1 = _mm512_fmadd_ps(c3, w2, s1);
                    s2 = _mm512_fmadd_ps(c4, w2, s2), s3 = _mm512_fmadd_ps(c5, w2, s3);
                }
                float *o = orow + ox * ldo;
                ST(o, s0);
                ST(o + ldo, s1);
                ST(o + 2 * ldo, s2);
                ST(o + 3 * ldo, s3);
            }
            for (; ox + 4 <= ox_b; ox += 4) {
                __m512 s0 = b, s1 = b, s2 = b, s3 = b;
                _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++)
                {
                    const float *p = row[ky] + (int64_t)(ox * sw - a->pad_l) * ldi;
                    _Pragma("GCC unroll 3") for (int kx = 0; kx < 3; kx++)
                    {
                        const float *q = p + kx * ldi;
                        s0 = _mm512_fmadd_ps(LD(q), w[ky][kx], s0);
                        s1 = _mm512_fmadd_ps(LD(q + sx), w[ky][kx], s1);
                        s2 = _mm512_fmadd_ps(LD(q + 2 * sx), w[ky][kx], s2);
                        s3 = _mm512_fmadd_ps(LD(q + 3 * sx), w[ky][kx], s3);
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
        __m512 acc[3] = {b, _mm512_setzero_ps(), _mm512_setzero_ps()};
        _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++)
            _Pragma("GCC unroll 3") for (int kx = 0; kx < 3; kx++)
        {
            int ix = ix0 + kx;
            if (ix >= 0 && ix < a->in_w)
                acc[ky] = _mm512_fmadd_ps(LD(row[ky] + (int64_t)ix * ldi), w[ky][kx], acc[ky]);
        }
        ST(orow + ox * ldo, _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), acc[2]));
    }
#undef LD
#undef ST
}

static void dw3x3_rows(const ims__dw_args *a, int oy0, int oy1)
{
    const int C = a->c, c16 = C & ~15;
    const __mmask16 full = tail_mask(16), mt = tail_mask(C - c16);
    const __m512 lo = _mm512_setzero_ps();
    const __m512 hi = _mm512_set1_ps(a->act_max > 0 ? a->act_max : INFINITY);
    for (int oy = oy0; oy < oy1; oy++) {
        for (int j = 0; j < c16; j += 16)
            dw3x3_block(a, oy, j, full, lo, hi);
        if (c16 < C)
            dw3x3_block(a, oy, c16, mt, lo, hi);
    }
}

static void dw_rows(const ims__dw_args *a, int oy0, int oy1)
{
    if (a->kh == 3 && a->kw == 3 && a->dh == 1 && a->dw == 1 && a->act <= 1) {
        dw3x3_rows(a, oy0, oy1);
        return;
    }
    IMS_ASSERT(!a->rows); /* the planner fuses only into 3x3 depthwise */
    const int C = a->c;
    const __m512 lo = _mm512_setzero_ps();
    const __m512 hi = _mm512_set1_ps(a->act_max > 0 ? a->act_max : INFINITY);
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
            for (int j = 0; j < C; j += 16) {
                __mmask16 m = tail_mask(C - j < 16 ? C - j : 16);
                __m512 s = a->bias ? _mm512_maskz_loadu_ps(m, a->bias + j) : _mm512_setzero_ps();
                for (int ky = ky0; ky < ky1; ky++) {
                    const int64_t xr = xb + ky * sy + j;
                    const float *kr = a->k + (int64_t)ky * a->kw * C + j;
                    for (int kx = kx0; kx < kx1; kx++)
                        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a->in + (xr + kx * sx)),
                                            _mm512_maskz_loadu_ps(m, kr + (int64_t)kx * C), s);
                }
                _mm512_mask_storeu_ps(o + j, m, act16(s, act, lo, hi));
            }
            if (act > 1)
                for (int j = 0; j < C; j++)
                    o[j] = ims__act1(o[j], act, a->act_max);
        }
    }
}

static void vadd(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int u = 0; u < 64; u += 16)
            _mm512_storeu_ps(y + i + u,
                             _mm512_add_ps(_mm512_loadu_ps(y + i + u), _mm512_loadu_ps(x + i + u)));
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i < 16 ? (int)(n - i) : 16);
        _mm512_mask_storeu_ps(
            y + i, m,
            _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* One FMA per element: may differ from ref.c by one rounding. */
static void vscale(float *y, const float *x, int64_t n, float scale, float shift)
{
    const __m512 s = _mm512_set1_ps(scale), t = _mm512_set1_ps(shift);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i < 16 ? (int)(n - i) : 16);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), s, t));
    }
}

static void pool_rows(const ims__dw_args *a, int oy0, int oy1)
{
    const int C = a->c, is_max = a->is_max;
    const __m512 init = _mm512_set1_ps(is_max ? -INFINITY : 0.0f);
    for (int oy = oy0; oy < oy1; oy++) {
        int iy0 = oy * a->sh - a->pad_t;
        int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = a->in_h - iy0 < a->kh ? a->in_h - iy0 : a->kh;
        for (int ox = 0; ox < a->out_w; ox++) {
            float *o = a->out + ((int64_t)oy * a->out_w + ox) * a->ld_out;
            int ix0 = ox * a->sw - a->pad_l;
            int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = a->in_w - ix0 < a->kw ? a->in_w - ix0 : a->kw;
            const __m512 inv = _mm512_set1_ps(1.0f / (float)((ky1 - ky0) * (kx1 - kx0)));
            const float *base = a->in + ((int64_t)(iy0 + ky0) * a->in_w + ix0 + kx0) * a->ld_in;
            const int64_t sy = (int64_t)a->in_w * a->ld_in;
            int j = 0;
            for (; j + 64 <= C; j += 64) {
                __m512 s0 = init, s1 = init, s2 = init, s3 = init;
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *p = base + (ky - ky0) * sy + j;
                    for (int kx = kx0; kx < kx1; kx++, p += a->ld_in) {
                        if (is_max) {
                            s0 = _mm512_max_ps(s0, _mm512_loadu_ps(p));
                            s1 = _mm512_max_ps(s1, _mm512_loadu_ps(p + 16));
                            s2 = _mm512_max_ps(s2, _mm512_loadu_ps(p + 32));
                            s3 = _mm512_max_ps(s3, _mm512_loadu_ps(p + 48));
                        } else {
                            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p));
                            s1 = _mm512_add_ps(s1, _mm512_loadu_ps(p + 16));
                            s2 = _mm512_add_ps(s2, _mm512_loadu_ps(p + 32));
                            s3 = _mm512_add_ps(s3, _mm512_loadu_ps(p + 48));
                        }
                    }
                }
                if (!is_max) {
                    s0 = _mm512_mul_ps(s0, inv), s1 = _mm512_mul_ps(s1, inv);
                    s2 = _mm512_mul_ps(s2, inv), s3 = _mm512_mul_ps(s3, inv);
                }
                _mm512_storeu_ps(o + j, s0);
                _mm512_storeu_ps(o + j + 16, s1);
                _mm512_storeu_ps(o + j + 32, s2);
                _mm512_storeu_ps(o + j + 48, s3);
            }
            for (; j < C; j += 16) {
                __mmask16 m = tail_mask(C - j < 16 ? C - j : 16);
                __m512 s0 = init;
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *p = base + (ky - ky0) * sy + j;
                    for (int kx = kx0; kx < kx1; kx++, p += a->ld_in) {
                        __m512 v = _mm512_maskz_loadu_ps(m, p);
                        s0 = is_max ? _mm512_max_ps(s0, v) : _mm512_add_ps(s0, v);
                    }
                }
                if (!is_max)
                    s0 = _mm512_mul_ps(s0, inv);
                _mm512_mask_storeu_ps(o + j, m, s0);
            }
        }
    }
}

/* Rows [i, i+R) x columns [j, j+32) of C = A.B, R a compile-time constant. */
#define GEMM_BLOCK(R)                                                                         \
    do {                                                                                      \
        __m512 acc[R][2];                                                                     \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] =          \
            _mm512_setzero_ps();                                                              \
        for (int k = 0; k < K; k++) {                                                         \
            const float *b = B + (int64_t)k * ldb + j;                                        \
            __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16); \
            _Pragma("GCC unroll 12") for (int r = 0; r < R; r++)                              \
            {                                                                                 \
                __m512 av = _mm512_set1_ps(A[(int64_t)(i + r) * lda + k]);                    \
                acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);                               \
                acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);                               \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++)                                  \
        {                                                                                     \
            float *c = C + (int64_t)(i + r) * ldc + j;                                        \
            _mm512_mask_storeu_ps(c, m0, acc[r][0]);                                          \
            _mm512_mask_storeu_ps(c + 16, m1, acc[r][1]);                                     \
        }                                                                                     \
    } while (0)

static void gemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                 int ldc)
{
    for (int j = 0; j < N; j += 32) {
        int w = N - j < 32 ? N - j : 32;
        __mmask16 m0 = tail_mask(w < 16 ? w : 16), m1 = tail_mask(w > 16 ? w - 16 : 0);
        int i = 0;
        for (; i + 12 <= M; i += 12)
            GEMM_BLOCK(12);
        switch (M - i) {
        case 11:
            GEMM_BLOCK(11);
            break;
        case 10:
            GEMM_BLOCK(10);
            break;
        case 9:
            GEMM_BLOCK(9);
            break;
        case 8:
            GEMM_BLOCK(8);
            break;
        case 7:
            GEMM_BLOCK(7);
            break;
        case 6:
            GEMM_BLOCK(6);
            break;
        case 5:
            GEMM_BLOCK(5);
            break;
        case 4:
            GEMM_BLOCK(4);
            break;
        case 3:
            GEMM_BLOCK(3);
            break;
        case 2:
            GEMM_BLOCK(2);
            break;
        case 1:
            GEMM_BLOCK(1);
            break;
        default:
            break;
        }
    }
}

/* R rows x two 16-column panels (p, p+1) over the full K, epilogue in
 * registers; panel p is full (a later panel exists), p+1 may be partial. */
#define PACKED_TILE2(R)                                                          \
    do {                                                                         \
        __m512 acc0[R], acc1[R];                                                 \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) acc0[r] = acc1[r] = \
            _mm512_setzero_ps();                                                 \
        const float *a = A + (int64_t)i * lda;                                   \
        for (int k = 0; k < K; k++) {                                            \
            __m512 b0 = _mm512_load_ps(B0 + (int64_t)k * 16);                    \
            __m512 b1 = _mm512_load_ps(B1 + (int64_t)k * 16);                    \
            _Pragma("GCC unroll 12") for (int r = 0; r < R; r++)                 \
            {                                                                    \
                __m512 av = _mm512_set1_ps(a[(int64_t)r * lda + k]);             \
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);                      \
                acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);                      \
            }                                                                    \
        }                                                                        \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++)                     \
        {                                                                        \
            float *c = C + (int64_t)(i + r) * ldc + p * 16;                      \
            __m512 v0 = act16(_mm512_add_ps(acc0[r], bb0), act_v, lo, hi);       \
            __m512 v1 = act16(_mm512_add_ps(acc1[r], bb1), act_v, lo, hi);       \
            if (res) {                                                           \
                const float *q = res + (int64_t)(i + r) * ldres + p * 16;        \
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(q));                      \
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, q + 16));       \
            }                                                                    \
            _mm512_storeu_ps(c, v0);                                             \
            _mm512_mask_storeu_ps(c + 16, m1, v1);                               \
        }                                                                        \
    } while (0)

/* R rows x one 16-column panel p (the odd one of a panel range). */
#define PACKED_TILE1(R)                                                                      \
    do {                                                                                     \
        __m512 acc0[R];                                                                      \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) acc0[r] = _mm512_setzero_ps();  \
        const float *a = A + (int64_t)i * lda;                                               \
        for (int k = 0; k < K; k++) {                                                        \
            __m512 b0 = _mm512_load_ps(B0 + (int64_t)k * 16);                                \
            _Pragma("GCC unroll 12") for (int r = 0; r < R; r++)                             \
            {                                                                                \
                __m512 av = _mm512_set1_ps(a[(int64_t)r * lda + k]);                         \
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);                                  \
            }                                                                                \
        }                                                                                    \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++)                                 \
        {                                                                                    \
            float *c = C + (int64_t)(i + r) * ldc + p * 16;                                  \
            __m512 v0 = act16(_mm512_add_ps(acc0[r], bb0), act_v, lo, hi);                   \
            if (res)                                                                         \
                v0 = _mm512_add_ps(                                                          \
                    v0, _mm512_maskz_loadu_ps(m0, res + (int64_t)(i + r) * ldres + p * 16)); \
            _mm512_mask_storeu_ps(c, m0, v0);                                                \
        }                                                                                    \
    } while (0)

#define TILE_ROWS(T)                 \
    do {                             \
        int i = 0;                   \
        for (; i + 12 <= M; i += 12) \
            T(12);                   \
        switch (M - i) {             \
        case 11:                     \
            T(11);                   \
            break;                   \
        case 10:                     \
            T(10);                   \
            break;                   \
        case 9:                      \
            T(9);                    \
            break;                   \
        case 8:                      \
            T(8);                    \
            break;                   \
        case 7:                      \
            T(7);                    \
            break;                   \
        case 6:                      \
            T(6);                    \
            break;                   \
        case 5:                      \
            T(5);                    \
            break;                   \
        case 4:                      \
            T(4);                    \
            break;                   \
        case 3:                      \
            T(3);                    \
            break;                   \
        case 2:                      \
            T(2);                    \
            break;                   \
        case 1:                      \
            T(1);                    \
            break;                   \
        default:                     \
            break;                   \
        }                            \
    } while (0)

static void gemm_packed(int M, int N, int K, const float *A, int lda, const float *Bp,
                        const float *bias_p, float *C, int ldc, int p0, int p1, int act,
                        float act_max, const float *res, int ldres)
{
    IMS_ASSERT(!res || act <= 1);
    const __m512 lo = _mm512_setzero_ps();
    const __m512 hi = _mm512_set1_ps(act_max > 0 ? act_max : INFINITY);
    const int act_v = act == 1 ? 1 : 0;
    for (int p = p0; p < p1;) {
        const float *B0 = Bp + (int64_t)p * K * 16;
        const __m512 bb0 = _mm512_load_ps(bias_p + p * 16);
        int np = p + 1 < p1 ? 2 : 1;
        int w = N - p * 16 < 16 * np ? N - p * 16 : 16 * np;
        if (np == 2) {
            const float *B1 = B0 + (int64_t)K * 16;
            const __m512 bb1 = _mm512_load_ps(bias_p + p * 16 + 16);
            const __mmask16 m1 = tail_mask(w - 16);
            TILE_ROWS(PACKED_TILE2);
        } else {
            const __mmask16 m0 = tail_mask(w);
            TILE_ROWS(PACKED_TILE1);
        }
        if (act > 1)
            for (int r = 0; r < M; r++)
                for (int j = 0; j < w; j++) {
                    float *c = C + (int64_t)r * ldc + p * 16 + j;
                    *c = ims__act1(*c, act, act_max);
                }
        p += np;
    }
}

#define WT_VEC __m512
#define WT_LANES 16
#define WT_MASK_T __mmask16
#define WT_MASK(n) tail_mask(n)
#define WT_LD(m, p) _mm512_maskz_loadu_ps((m), (p))
#define WT_ST(m, p, v) _mm512_mask_storeu_ps((p), (m), (v))
#define WT_ADD _mm512_add_ps
#define WT_SUB _mm512_sub_ps
#define WT_SET1 _mm512_set1_ps
#define WT_ACT act16
#include "wino_tile.h"

const ims__nn_kernels ims__nn_kernels_avx512 = {"avx512", 12,          192 * 1024, bias_act,
                                                dw_rows,  vadd,        vscale,     pool_rows,
                                                gemm,     gemm_packed, wino_in,    wino_out};
