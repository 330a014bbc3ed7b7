/* SPDX-License-Identifier: MIT */
/*
 * ref.c — portable kernels: plain loops with the channel (or column) index
 * innermost so that the compiler can vectorise them. The oracle of every
 * other level (see kernels.h).
 */
#include <string.h>

#include "kernels.h"

static void bias_act(float *y, int64_t rows, int c, int ld, const float *bias, int act,
                     float act_max)
{
    for (int64_t r = 0; r < rows; r++) {
        float *p = y + r * ld;
        if (bias)
            for (int j = 0; j < c; j++)
                p[j] += bias[j];
        if (act == 1) {
            float hi = act_max > 0 ? act_max : INFINITY;
            for (int j = 0; j < c; j++) {
                float v = p[j] > 0 ? p[j] : 0;
                p[j] = v < hi ? v : hi;
            }
        } else if (act) {
            for (int j = 0; j < c; j++)
                p[j] = ims__act1(p[j], act, act_max);
        }
    }
}

static void dw_rows(const ims__dw_args *a, int oy0, int oy1)
{
    const int C = a->c;
    for (int oy = oy0; oy < oy1; oy++) {
        for (int ox = 0; ox < a->out_w; ox++) {
            float *o = a->out + ((int64_t)oy * a->out_w + ox) * a->ld_out;
            if (a->bias)
                memcpy(o, a->bias, (size_t)C * sizeof(float));
            else
                memset(o, 0, (size_t)C * sizeof(float));
            for (int ky = 0; ky < a->kh; ky++) {
                int iy = oy * a->sh - a->pad_t + ky * a->dh;
                if (iy < 0 || iy >= a->in_h)
                    continue;
                for (int kx = 0; kx < a->kw; kx++) {
                    int ix = ox * a->sw - a->pad_l + kx * a->dw;
                    if (ix < 0 || ix >= a->in_w)
                        continue;
                    const float *x = ims__dw_row(a, iy) + (int64_t)ix * a->ld_in;
                    const float *k = a->k + ((int64_t)ky * a->kw + kx) * C;
                    for (int j = 0; j < C; j++)
                        o[j] += x[j] * k[j];
                }
            }
        }
        bias_act(a->out + (int64_t)oy * a->out_w * a->ld_out, a->out_w, C, a->ld_out, NULL,
                 a->act, a->act_max);
    }
}

static void pool_rows(const ims__dw_args *a, int oy0, int oy1)
{
    const int C = a->c;
    for (int oy = oy0; oy < oy1; oy++) {
        int iy0 = oy * a->sh - a->pad_t;
        int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = a->in_h - iy0 < a->kh ? a->in_h - iy0 : a->kh;
        for (int ox = 0; ox < a->out_w; ox++) {
            float *o = a->out + ((int64_t)oy * a->out_w + ox) * a->ld_out;
            int ix0 = ox * a->sw - a->pad_l;
            int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = a->in_w - ix0 < a->kw ? a->in_w - ix0 : a->kw;
            for (int c = 0; c < C; c++)
                o[c] = a->is_max ? -INFINITY : 0.0f;
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++) {
                    const float *p = a->in + ((int64_t)(iy0 + ky) * a->in_w + ix0 + kx) * a->ld_in;
                    if (a->is_max)
                        for (int c = 0; c < C; c++)
                            o[c] = p[c] > o[c] ? p[c] : o[c];
                    else
                        for (int c = 0; c < C; c++)
                            o[c] += p[c];
                }
            if (!a->is_max) {
                float inv = 1.0f / (float)((ky1 - ky0) * (kx1 - kx0));
                for (int c = 0; c < C; c++)
                    o[c] *= inv;
            }
        }
    }
}

static void vadd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

static void vscale(float *y, const float *x, int64_t n, float scale, float shift)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * scale + shift;
}

static void gemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                 float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        float *c = C + (int64_t)i * ldc;
        memset(c, 0, (size_t)N * sizeof(float));
        for (int k = 0; k < K; k++) {
            float a = A[(int64_t)i * lda + k];
            const float *b = B + (int64_t)k * ldb;
            for (int j = 0; j < N; j++)
                c[j] += a * b[j];
        }
    }
}

static void gemm_packed(int M, int N, int K, const float *A, int lda, const float *Bp,
                        const float *bias_p, float *C, int ldc, int p0, int p1, int act,
                        float act_max, const float *res, int ldres)
{
    for (int p = p0; p < p1; p++) {
        const float *B = Bp + (int64_t)p * K * IMS_PANEL;
        int w = N - p * IMS_PANEL < IMS_PANEL ? N - p * IMS_PANEL : IMS_PANEL;
        for (int i = 0; i < M; i++) {
            float acc[IMS_PANEL];
            for (int j = 0; j < IMS_PANEL; j++)
                acc[j] = 0;
            for (int k = 0; k < K; k++) {
                float a = A[(int64_t)i * lda + k];
                for (int j = 0; j < IMS_PANEL; j++)
                    acc[j] += a * B[(int64_t)k * IMS_PANEL + j];
            }
            for (int j = 0; j < IMS_PANEL; j++)
                acc[j] += bias_p[p * IMS_PANEL + j];
            bias_act(acc, 1, w, w, NULL, act, act_max);
            if (res) /* read before C is written: res may be C */
                for (int j = 0; j < w; j++)
                    acc[j] += res[(int64_t)i * ldres + p * IMS_PANEL + j];
            memcpy(C + (int64_t)i * ldc + p * IMS_PANEL, acc, (size_t)w * sizeof(float));
        }
    }
}

#define WT_VEC float
#define WT_LANES 1
#define WT_MASK_T int
#define WT_MASK(n) (n)
#define WT_LD(m, p) ((void)(m), *(p))
#define WT_ST(m, p, v) (*(p) = (v))
#define WT_ADD(a, b) ((a) + (b))
#define WT_SUB(a, b) ((a) - (b))
#define WT_SET1(x) (x)
#define WT_ACT(v, av, lo, hi) ((av) ? ((v) > (lo) ? ((v) < (hi) ? (v) : (hi)) : (lo)) : (v))
#include "wino_tile.h"

const ims__nn_kernels ims__nn_kernels_ref = {"ref",   6,           96 * 1024, bias_act,
                                             dw_rows, vadd,        vscale,    pool_rows,
                                             gemm,    gemm_packed, wino_in,   wino_out};
