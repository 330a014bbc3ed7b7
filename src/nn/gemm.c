/* SPDX-License-Identifier: MIT */
/*
 * gemm.c — the executor's matrix product front end.
 *
 * Convolutions become C = A.B with A the NHWC input (1x1) or its im2col
 * rows, B the HWIO kernel and C the NHWC output (a slice of a concat buffer
 * when ldc > N). Large products go to OpenBLAS (ggml-blas style: its
 * packing pays off only above a size threshold; its thread count is set
 * explicitly on every call because it is process-global). Small ones use the
 * kernel table's GEMM split by rows over the session's pool. Bias and
 * activation are applied in a second pass over each block of rows while it
 * is still in cache.
 */
#include <cblas.h>

#include "exec_int.h"

typedef struct gemm_job {
    const ims__nn_kernels *k;
    int N, K;
    const float *A, *B, *bias;
    int lda, ldb, ldc, act;
    float act_max;
    float *C;
} gemm_job;

static void gemm_rows(void *ctx, int64_t b, int64_t e)
{
    const gemm_job *j = ctx;
    j->k->gemm((int)(e - b), j->N, j->K, j->A + b * j->lda, j->lda, j->B, j->ldb,
               j->C + b * j->ldc, j->ldc);
    if (j->bias || j->act)
        j->k->bias_act(j->C + b * j->ldc, e - b, j->N, j->ldc, j->bias, j->act, j->act_max);
}

static void epilogue_rows(void *ctx, int64_t b, int64_t e)
{
    const gemm_job *j = ctx;
    j->k->bias_act(j->C + b * j->ldc, e - b, j->N, j->ldc, j->bias, j->act, j->act_max);
}

void ims__gemm(const ims__nn_kernels *k, ims__pool *pool, int M, int N, int K,
               const float *A, int lda, const float *B, int ldb, float *C, int ldc,
               const float *bias, int act, float act_max)
{
    gemm_job j = {k, N, K, A, B, bias, lda, ldb, ldc, act, act_max, C};
    double macs = (double)M * N * K;
    if (macs < IMS_GEMM_BLAS_MIN_MACS) {
        ims__pool_for(pool, M, 16, gemm_rows, &j);
        return;
    }
    openblas_set_num_threads(ims__pool_threads(pool));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 0.0f,
                C, ldc);
    if (bias || act)
        ims__pool_for(pool, M, 64, epilogue_rows, &j);
}
