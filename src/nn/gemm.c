/* SPDX-License-Identifier: MIT */
/*
 * gemm.c — the executor's matrix products.
 *
 * Convolutions become C = act(A.B + bias) with A the NHWC input (1x1) or
 * its im2col rows, B the HWIO kernel as a (kh*kw*cin) x cout matrix and C
 * the NHWC output (a slice of a concat buffer when ldc > N).
 *
 * ims__gemm_packed (all convolutions): B is packed once per session into
 * 16-column panels with the bias appended (ims__pack_b), the same format at
 * every level; the kernel table's register tile (6x16 for AVX2, 12x32 =
 * two panels for AVX-512) runs the full K and applies bias + ReLU/ReLU6
 * before its store, so C is written once. Work is split into (row block,
 * panel group) tasks; a row block (ims__gemm_mc rows x K) is sized to stay
 * in L2 while every panel passes over it (a multiple of the level's tile
 * rows; 96 KiB, or 192 KiB for AVX-512: the Xeons that have it have 1-2
 * MiB of L2 per core), and for k x k convolutions each task builds its
 * block's im2col rows itself, in a per-thread buffer. Stride-1 3x3
 * convolutions with large outputs go through Winograd instead
 * (ops_winograd.c), on the same packed products. This beat
 * OpenBLAS on these shapes (MobileNetV2 batch 1: 12.6 vs 15.8 ms/image;
 * InceptionV3: 145 vs 176 ms/image, 1 thread, Zen3): OpenBLAS re-packs B on
 * every call, zeroes C in a separate beta pass and cannot fuse the
 * activation. IMS_NN_GEMM=blas turns packing off, for comparison.
 *
 * ims__gemm (everything under IMS_NN_GEMM=blas, for comparisons): above
 * IMS_GEMM_BLAS_MIN_MACS multiply-adds, OpenBLAS cblas_sgemm on each block
 * of a fixed grid over C (BLAS_MB x BLAS_NB), the blocks run by our pool;
 * below, the kernel table's small GEMM on fixed 16-row blocks. Bias and
 * activation run on each block right after its product.
 *
 * Threads and determinism: OpenBLAS's thread count is process-global, so
 * setting it per call (as ggml-blas does) races between sessions with
 * different thread counts, and an OpenBLAS call's result may depend on how
 * OpenBLAS splits it. ims__gemm_init (once per process, at the first
 * session) sets OpenBLAS to one thread; parallelism comes from our pool
 * only, and every block boundary depends on the shape alone, never on the
 * thread count, so each element of C is computed by the same call whatever
 * the thread count: results are bit-identical for any thread count.
 * ims_nn_init does the same earlier (programs call it at start-up).
 */
#include <string.h>

#include "exec_int.h"
#include "nn/blas_int.h"

/* Blocks of C per OpenBLAS call: fixed, so the split does not depend on
 * the thread count (see the top comment). */
#define BLAS_MB 128
#define BLAS_NB 256
/* Rows per call of the small kernel GEMM. */
#define SMALL_MB 16

/* OpenBLAS loads with one thread (blas_load.c). */
void ims__gemm_init(void) { ims__blas_load(); }

void ims_nn_init(void) { ims__gemm_init(); }

typedef struct gemm_job {
    const ims__nn_kernels *k;
    int M, N, K;
    const float *A, *B, *bias;
    int lda, ldb, ldc, act;
    float act_max;
    float *C;
} gemm_job;

/* Small products: SMALL_MB-row blocks [b, e) with the kernel table's GEMM. */
static void small_blocks(void *ctx, int64_t b, int64_t e)
{
    const gemm_job *j = ctx;
    for (int64_t t = b; t < e; t++) {
        int i0 = (int)t * SMALL_MB, m = j->M - i0 < SMALL_MB ? j->M - i0 : SMALL_MB;
        float *C = j->C + (int64_t)i0 * j->ldc;
        j->k->gemm(m, j->N, j->K, j->A + (int64_t)i0 * j->lda, j->lda, j->B, j->ldb, C, j->ldc);
        if (j->bias || j->act)
            j->k->bias_act(C, m, j->N, j->ldc, j->bias, j->act, j->act_max);
    }
}

/* Large products: BLAS_MB x BLAS_NB blocks [b, e) of C, one single-threaded
 * OpenBLAS call each. */
static void blas_blocks(void *ctx, int64_t b, int64_t e)
{
    const gemm_job *j = ctx;
    int n_nb = (j->N + BLAS_NB - 1) / BLAS_NB;
    for (int64_t t = b; t < e; t++) {
        int i0 = (int)(t / n_nb) * BLAS_MB, j0 = (int)(t % n_nb) * BLAS_NB;
        int m = j->M - i0 < BLAS_MB ? j->M - i0 : BLAS_MB;
        int n = j->N - j0 < BLAS_NB ? j->N - j0 : BLAS_NB;
        float *C = j->C + (int64_t)i0 * j->ldc + j0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, j->K, 1.0f,
                    j->A + (int64_t)i0 * j->lda, j->lda, j->B + j0, j->ldb, 0.0f, C, j->ldc);
        if (j->bias || j->act)
            j->k->bias_act(C, m, n, j->ldc, j->bias ? j->bias + j0 : NULL, j->act, j->act_max);
    }
}

void ims__gemm(const ims__nn_kernels *k, ims__pool *pool, int M, int N, int K,
               const float *A, int lda, const float *B, int ldb, float *C, int ldc,
               const float *bias, int act, float act_max)
{
    gemm_job j = {k, M, N, K, A, B, bias, lda, ldb, ldc, act, act_max, C};
    double macs = (double)M * N * K;
    if (macs < IMS_GEMM_BLAS_MIN_MACS) {
        ims__pool_for(pool, (M + SMALL_MB - 1) / SMALL_MB, 1, small_blocks, &j);
        return;
    }
    int64_t n_mb = (M + BLAS_MB - 1) / BLAS_MB, n_nb = (N + BLAS_NB - 1) / BLAS_NB;
    ims__pool_for(pool, n_mb * n_nb, 1, blas_blocks, &j);
}

size_t ims__packed_size(int K, int N)
{
    size_t n_panels = ((size_t)N + IMS_PANEL - 1) / IMS_PANEL;
    return n_panels * IMS_PANEL * ((size_t)K + 1);
}

void ims__pack_b(const float *B, const float *bias, int K, int N, float *dst)
{
    int n_panels = (N + IMS_PANEL - 1) / IMS_PANEL, n_full = N / IMS_PANEL;
    for (int k = 0; k < K; k++) { /* read B row by row (it may be a cold mapping) */
        const float *src = B + (int64_t)k * N;
        for (int p = 0; p < n_full; p++)
            memcpy(dst + ((int64_t)p * K + k) * IMS_PANEL, src + p * IMS_PANEL,
                   IMS_PANEL * sizeof(float));
        if (n_full < n_panels) {
            float *d = dst + ((int64_t)n_full * K + k) * IMS_PANEL;
            int w = N - n_full * IMS_PANEL;
            memcpy(d, src + n_full * IMS_PANEL, (size_t)w * sizeof(float));
            memset(d + w, 0, (size_t)(IMS_PANEL - w) * sizeof(float));
        }
    }
    float *bp = dst + (int64_t)n_panels * IMS_PANEL * K;
    for (int j = 0; j < n_panels * IMS_PANEL; j++)
        bp[j] = bias && j < N ? bias[j] : 0;
}

int ims__gemm_mc(const ims__nn_kernels *k, int K)
{
    int mc = (int)((k->l2_block / 4) / (K > 0 ? K : 1));
    mc = mc / k->mr * k->mr;
    return mc < k->mr ? k->mr : mc > 480 ? 480 : mc;
}

typedef struct packed_job {
    const ims__nn_kernels *k;
    const ims__gemm_a *a;
    int M, N, K, ldc, act, mc, n_pg, n_panels;
    const float *Bp, *bias_p;
    float *C;
    float act_max;
} packed_job;

static void packed_tasks(void *ctx, int64_t b, int64_t e)
{
    const packed_job *j = ctx;
    const ims__gemm_a *a = j->a;
    for (int64_t t = b; t < e; t++) {
        int mb = (int)(t / j->n_pg), pg = (int)(t % j->n_pg);
        int i0 = mb * j->mc, rows = j->M - i0 < j->mc ? j->M - i0 : j->mc;
        int p0 = (int)((int64_t)pg * j->n_panels / j->n_pg);
        int p1 = (int)((int64_t)(pg + 1) * j->n_panels / j->n_pg);
        const float *A = a->A + (int64_t)i0 * a->lda;
        int lda = a->lda;
        if (a->fill) {
            /* The block of thread `tid` starts at a fixed stride (the largest
             * conv's mc*K, sized at session creation), never at tid*mc*K of
             * the current conv: when whole images of a batch run in parallel,
             * each thread is at a different layer, and with per-layer strides
             * thread 1's block of one layer overlapped thread 0's block of
             * another (InceptionV3 vectors changed from run to run). */
            IMS_ASSERT((size_t)j->mc * j->K <= a->slot);
            float *buf = a->scratch + (size_t)ims__pool_tid() * a->slot;
            a->fill(a->ctx, i0, rows, buf);
            A = buf, lda = j->K;
        }
        j->k->gemm_packed(rows, j->N, j->K, A, lda, j->Bp, j->bias_p, j->C + (int64_t)i0 * j->ldc,
                          j->ldc, p0, p1, j->act, j->act_max, NULL, 0);
    }
}

void ims__gemm_packed(const ims__nn_kernels *k, ims__pool *pool, int M, int N, int K,
                      const ims__gemm_a *a, const float *Bp, const float *bias_p, float *C,
                      int ldc, int act, float act_max)
{
    int n_panels = (N + IMS_PANEL - 1) / IMS_PANEL;
    /* a row block of A (mc x K) stays in L2 while every panel passes over it */
    int mc = ims__gemm_mc(k, K);
    int n_mb = (M + mc - 1) / mc, threads = ims__pool_threads(pool), n_pg = 1;
    while (threads > 1 && n_mb * n_pg < 4 * threads && n_pg < n_panels)
        n_pg++;
    packed_job j = {k, a, M, N, K, ldc, act, mc, n_pg, n_panels, Bp, bias_p, C, act_max};
    ims__pool_for(pool, (int64_t)n_mb * n_pg, 1, packed_tasks, &j);
}
