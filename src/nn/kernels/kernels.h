/* SPDX-License-Identifier: MIT */
/*
 * kernels.h — the executor's inner loops, one table per CPU level.
 *
 * ref.c holds plain C loops (auto-vectorisable, always built): the oracle.
 * avx2.c holds AVX2/FMA variants and avx512.c AVX-512 F/BW/VL ones
 * (compiled with per-file flags, only called after run-time detection). dispatch.c hands out the table for a level;
 * test_nn_kernels.c compares every supported level with ref under stated
 * tolerances. All data is NHWC float32; `ld` is the distance in floats
 * between two consecutive pixels (>= channels, larger for a slice of a
 * concatenation buffer).
 */
#ifndef IMS_NN_KERNELS_H
#define IMS_NN_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* One depthwise convolution (multiplier 1) of one image. */
typedef struct ims__dw_args {
    const float *in;        /* image base, in_h x in_w pixels of stride ld_in */
    int in_h, in_w, ld_in;
    float *out;             /* image base, out_h x out_w pixels of stride ld_out */
    int out_h, out_w, ld_out;
    int c;                  /* channels */
    const float *k;         /* [kh][kw][c] */
    const float *bias;      /* c floats or NULL */
    int kh, kw, sh, sw, dh, dw, pad_t, pad_l;
    int act;                /* enum ims__act */
    float act_max;
    int is_max;             /* pool_rows: max (1) or average excluding padding (0) */
    const float *const *rows; /* dw_rows: input row iy at rows[iy] instead of in (or NULL) */
} ims__dw_args;

/* Input row iy of a depthwise/pool argument block. */
static inline const float *ims__dw_row(const ims__dw_args *a, int iy)
{
    return a->rows ? a->rows[iy] : a->in + (int64_t)iy * a->in_w * a->ld_in;
}

typedef struct ims__nn_kernels {
    const char *name; /* ims_cpu_level_name() of the table's level */
    int mr;           /* rows of gemm_packed's register tile (row blocks are multiples) */
    int l2_block;     /* bytes of A per row block of gemm_packed (kept in L2) */
    /* y[r*ld + j] = act(y[r*ld + j] + bias[j]) for r < rows, j < c (bias may be NULL). */
    void (*bias_act)(float *y, int64_t rows, int c, int ld, const float *bias, int act,
                     float act_max);
    /* Depthwise convolution rows [oy0, oy1) of one image, bias and activation fused. */
    void (*dw_rows)(const ims__dw_args *a, int oy0, int oy1);
    /* y[i] += x[i] for i < n. */
    void (*vadd)(float *y, const float *x, int64_t n);
    /* y[i] = x[i] * scale + shift for i < n (y may equal x). */
    void (*vscale)(float *y, const float *x, int64_t n, float scale, float shift);
    /* Max / average pooling rows [oy0, oy1) of one image (k, bias, act,
     * dilation unused); padding cells are ignored, averages divide by the
     * number of cells inside the input. */
    void (*pool_rows)(const ims__dw_args *a, int oy0, int oy1);
    /* C[M x N] = A[M x K] . B[K x N], row-major with leading dimensions. */
    void (*gemm)(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                 float *C, int ldc);
    /* Rows [0, M) x panels [p0, p1) of C = act(A . B + bias) + res with B
     * packed by ims__pack_b (16-column panels, K x 16 floats each,
     * zero-padded) and bias packed to n_panels*16 floats; only the first N
     * columns of C are written. res (row stride ldres, may equal C) is a
     * residual added in the epilogue, after act and before the store, so
     * the sum rounds as a separate ADD node would; NULL for none, and only
     * with act <= IMS_ACT_RELU. */
    void (*gemm_packed)(int M, int N, int K, const float *A, int lda, const float *Bp,
                        const float *bias_p, float *C, int ldc, int p0, int p1, int act,
                        float act_max, const float *res, int ldres);
    /* Winograd F(2x2, 3x3) tile transforms (kernels/wino_tile.h): input
     * tile d[16] (pixel pointers) -> v[xi*st + c]; products m[xi*st + c]
     * -> act(. + bias) into the 4 output pixels o[4] (NULL: not written). */
    void (*wino_in)(const float *const *d, int c, float *v, size_t st);
    void (*wino_out)(const float *m, size_t st, int c, const float *bias, int act, float act_max,
                     float *const *o);
} ims__nn_kernels;

#define IMS_PANEL 16 /* columns per packed-B panel */

/* The table for `level`, by the rule both kernel modules follow (the index
 * has ims__index_kernels_for): the best level <= `level` that this build
 * has and this CPU supports (ims_cpu_detect()); never NULL, since ref
 * always exists. The kernels in force are ims__nn_kernels_for(
 * ims_cpu_level()); a caller that needs exactly one level (a test)
 * compares the table's name with ims_cpu_level_name(level). */
const ims__nn_kernels *ims__nn_kernels_for(int level);

extern const ims__nn_kernels ims__nn_kernels_ref;
#if defined(IMS_HAVE_AVX2)
extern const ims__nn_kernels ims__nn_kernels_avx2;
#endif
#if defined(IMS_HAVE_AVX512)
extern const ims__nn_kernels ims__nn_kernels_avx512;
#endif

/* Scalar activation shared by every level (sigmoid, tanh). */
static inline float ims__act1(float v, int act, float act_max)
{
    switch (act) {
    case 1: /* IMS_ACT_RELU */
        v = v > 0 ? v : 0;
        return act_max > 0 && v > act_max ? act_max : v;
    case 2: /* IMS_ACT_SIGMOID */
        return 1.0f / (1.0f + expf(-v));
    case 3: /* IMS_ACT_TANH */
        return tanhf(v);
    default:
        return v;
    }
}

#endif /* IMS_NN_KERNELS_H */
