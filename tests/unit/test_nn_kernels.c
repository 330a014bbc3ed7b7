/* SPDX-License-Identifier: MIT */
/*
 * test_nn_kernels.c — every kernel level this CPU supports against ref.c.
 * Tolerances: bias+activation, pooling and vadd must match exactly (same
 * float operations in the same order); vscale may fuse its multiply-add;
 * depthwise and GEMM may differ by FMA contraction and summation order:
 * |got - ref| <= 1e-5 * (1 + sum of |terms|) per output.
 */
#include "check.h"
#include "imgsim/imgsim.h"
#include "nn/exec_int.h"

static unsigned long long seed = 777;

static int rnd(int lo, int hi) { return lo + (int)(check_rand_u64(&seed) % (unsigned)(hi - lo + 1)); }

static float *rand_buf(size_t n)
{
    float *p = malloc(n * sizeof(float) + 64);
    for (size_t i = 0; i < n; i++)
        p[i] = check_rand_f(&seed) * 4;
    return p;
}

static void test_bias_act(const ims__nn_kernels *k)
{
    for (int t = 0; t < 200; t++) {
        int rows = rnd(1, 9), c = rnd(1, 70), ld = c + rnd(0, 5), act = rnd(0, 3);
        float amax = act == 1 && rnd(0, 1) ? 6.0f : 0.0f;
        float *y = rand_buf((size_t)rows * ld), *z = malloc((size_t)rows * ld * sizeof(float));
        float *bias = rnd(0, 1) ? rand_buf((size_t)c) : NULL;
        memcpy(z, y, (size_t)rows * ld * sizeof(float));
        ims__nn_kernels_ref.bias_act(y, rows, c, ld, bias, act, amax);
        k->bias_act(z, rows, c, ld, bias, act, amax);
        CHECK_MSG(memcmp(y, z, (size_t)rows * ld * sizeof(float)) == 0,
                  "%s bias_act rows %d c %d ld %d act %d differs", k->name, rows, c, ld, act);
        free(y), free(z), free(bias);
    }
}

static void test_dw(const ims__nn_kernels *k)
{
    for (int t = 0; t < 300; t++) {
        ims__dw_args a;
        memset(&a, 0, sizeof a);
        a.c = rnd(1, 50);
        a.in_h = rnd(1, 12), a.in_w = rnd(1, 12), a.ld_in = a.c + rnd(0, 9);
        a.kh = rnd(1, 5), a.kw = rnd(1, 5), a.sh = rnd(1, 3), a.sw = rnd(1, 3);
        a.dh = rnd(1, 2), a.dw = rnd(1, 2);
        if (t % 3 == 0) /* the specialised 3x3 path */
            a.kh = a.kw = 3, a.dh = a.dw = 1, a.act = rnd(0, 1);
        a.pad_t = rnd(0, a.kh), a.pad_l = rnd(0, a.kw);
        int pad_b = rnd(0, a.kh), pad_r = rnd(0, a.kw);
        int sh = a.dh * (a.kh - 1) + 1, sw = a.dw * (a.kw - 1) + 1;
        if (a.in_h + a.pad_t + pad_b < sh || a.in_w + a.pad_l + pad_r < sw)
            continue;
        a.out_h = (a.in_h + a.pad_t + pad_b - sh) / a.sh + 1;
        a.out_w = (a.in_w + a.pad_l + pad_r - sw) / a.sw + 1;
        a.ld_out = a.c + rnd(0, 9);
        a.act = t % 3 == 0 ? rnd(0, 1) : rnd(0, 3);
        a.act_max = a.act == 1 && rnd(0, 1) ? 6.0f : 0.0f;
        float *in = rand_buf((size_t)a.in_h * a.in_w * a.ld_in);
        float *kk = rand_buf((size_t)a.kh * a.kw * a.c);
        float *bias = rnd(0, 1) ? rand_buf((size_t)a.c) : NULL;
        size_t no = (size_t)a.out_h * a.out_w * a.ld_out;
        float *o1 = calloc(no, sizeof(float)), *o2 = calloc(no, sizeof(float));
        a.in = in, a.k = kk, a.bias = bias;
        a.out = o1;
        ims__nn_kernels_ref.dw_rows(&a, 0, a.out_h);
        a.out = o2;
        k->dw_rows(&a, 0, a.out_h);
        double worst = 0;
        for (int p = 0; p < a.out_h * a.out_w; p++)
            for (int c = 0; c < a.c; c++) {
                double bound = 1e-5 * (1 + 16.0 * a.kh * a.kw + 4);
                double e = fabs(o1[(size_t)p * a.ld_out + c] - o2[(size_t)p * a.ld_out + c]);
                if (!(e <= bound) && !(worst > e))
                    worst = e;
            }
        CHECK_MSG(worst == 0, "%s dw c%d %dx%d k%dx%d s%d,%d d%d,%d: err %.3g", k->name, a.c,
                  a.in_h, a.in_w, a.kh, a.kw, a.sh, a.sw, a.dh, a.dw, worst);
        free(in), free(kk), free(bias), free(o1), free(o2);
    }
}

/* Pooling: same operations in the same order, so results must be equal. */
static void test_pool(const ims__nn_kernels *k)
{
    for (int t = 0; t < 300; t++) {
        ims__dw_args a;
        memset(&a, 0, sizeof a);
        a.c = rnd(1, 80), a.is_max = rnd(0, 1);
        a.in_h = rnd(1, 12), a.in_w = rnd(1, 12), a.ld_in = a.c + rnd(0, 9);
        a.kh = rnd(1, 4), a.kw = rnd(1, 4), a.sh = rnd(1, 3), a.sw = rnd(1, 3);
        a.pad_t = rnd(0, a.kh - 1), a.pad_l = rnd(0, a.kw - 1);
        int pad_b = rnd(0, a.kh - 1), pad_r = rnd(0, a.kw - 1);
        if (a.in_h + a.pad_t + pad_b < a.kh || a.in_w + a.pad_l + pad_r < a.kw)
            continue;
        a.out_h = (a.in_h + a.pad_t + pad_b - a.kh) / a.sh + 1;
        a.out_w = (a.in_w + a.pad_l + pad_r - a.kw) / a.sw + 1;
        a.ld_out = a.c + rnd(0, 9);
        float *in = rand_buf((size_t)a.in_h * a.in_w * a.ld_in);
        size_t no = (size_t)a.out_h * a.out_w * a.ld_out;
        float *o1 = calloc(no, sizeof(float)), *o2 = calloc(no, sizeof(float));
        a.in = in;
        a.out = o1;
        ims__nn_kernels_ref.pool_rows(&a, 0, a.out_h);
        a.out = o2;
        k->pool_rows(&a, 0, a.out_h);
        CHECK_MSG(memcmp(o1, o2, no * sizeof(float)) == 0, "%s pool max=%d c%d %dx%d k%dx%d differs",
                  k->name, a.is_max, a.c, a.in_h, a.in_w, a.kh, a.kw);
        free(in), free(o1), free(o2);
    }
}

static void test_vec(const ims__nn_kernels *k)
{
    for (int t = 0; t < 100; t++) {
        int n = rnd(0, 100);
        float *x = rand_buf((size_t)n + 1), *y1 = rand_buf((size_t)n + 1);
        float *y2 = malloc(((size_t)n + 1) * sizeof(float));
        memcpy(y2, y1, ((size_t)n + 1) * sizeof(float));
        ims__nn_kernels_ref.vadd(y1, x, n);
        k->vadd(y2, x, n);
        CHECK_MSG(memcmp(y1, y2, ((size_t)n + 1) * sizeof(float)) == 0, "%s vadd n %d", k->name, n);
        ims__nn_kernels_ref.vscale(y1, x, n, 0.7f, -0.3f);
        k->vscale(y2, x, n, 0.7f, -0.3f); /* FMA allowed: one rounding apart */
        for (int i = 0; i <= n; i++)
            CHECK_MSG(fabsf(y1[i] - y2[i]) <= 1e-6f * (1 + fabsf(y1[i])), "%s vscale n %d [%d]",
                      k->name, n, i);
        free(x), free(y1), free(y2);
    }
}

static void test_gemm(const ims__nn_kernels *k)
{
    for (int t = 0; t < 300; t++) {
        int M = rnd(1, 40), N = rnd(1, 70), K = rnd(1, 90);
        int lda = K + rnd(0, 5), ldb = N + rnd(0, 5), ldc = N + rnd(0, 5);
        float *A = rand_buf((size_t)M * lda), *B = rand_buf((size_t)K * ldb);
        float *c1 = calloc((size_t)M * ldc, sizeof(float)), *c2 = calloc((size_t)M * ldc, sizeof(float));
        ims__nn_kernels_ref.gemm(M, N, K, A, lda, B, ldb, c1, ldc);
        k->gemm(M, N, K, A, lda, B, ldb, c2, ldc);
        double worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double e = fabs(c1[(size_t)i * ldc + j] - c2[(size_t)i * ldc + j]);
                if (!(e <= 1e-5 * (1 + 16.0 * K)) && !(worst > e))
                    worst = e;
            }
        CHECK_MSG(worst == 0, "%s gemm %dx%dx%d: err %.3g", k->name, M, N, K, worst);
        /* columns beyond N are untouched */
        for (int i = 0; i < M; i++)
            for (int j = N; j < ldc; j++)
                CHECK(c2[(size_t)i * ldc + j] == 0);
        free(A), free(B), free(c1), free(c2);
    }
}

/* Packed-B GEMM with fused bias + activation, against a double-precision loop. */
static void test_gemm_packed(const ims__nn_kernels *k)
{
    for (int t = 0; t < 200; t++) {
        int M = rnd(1, 30), N = rnd(1, 70), K = rnd(1, 90), act = rnd(0, 3);
        float amax = act == 1 && rnd(0, 1) ? 1.0f : 0.0f;
        int lda = K + rnd(0, 5), ldc = N + rnd(0, 5);
        float *A = rand_buf((size_t)M * lda), *B = rand_buf((size_t)K * N);
        float *bias = rnd(0, 1) ? rand_buf((size_t)N) : NULL;
        float *Bp = aligned_alloc(64, (ims__packed_size(K, N) * sizeof(float) + 63) / 64 * 64);
        ims__pack_b(B, bias, K, N, Bp);
        float *C = calloc((size_t)M * ldc, sizeof(float));
        int n_panels = (N + IMS_PANEL - 1) / IMS_PANEL;
        k->gemm_packed(M, N, K, A, lda, Bp, Bp + (size_t)n_panels * IMS_PANEL * K, C, ldc, 0,
                       n_panels, act, amax);
        double worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < ldc; j++) {
                float got = C[(size_t)i * ldc + j];
                if (j >= N) {
                    CHECK(got == 0);
                    continue;
                }
                double acc = bias ? bias[j] : 0, mag = fabs(acc);
                for (int q = 0; q < K; q++) {
                    acc += (double)A[(size_t)i * lda + q] * B[(size_t)q * N + j];
                    mag += fabs((double)A[(size_t)i * lda + q] * B[(size_t)q * N + j]);
                }
                float want = ims__act1((float)acc, act, amax);
                double e = fabs(got - want);
                if (!(e <= 1e-5 * (1 + mag)) && !(worst > e))
                    worst = e;
            }
        CHECK_MSG(worst == 0, "%s gemm_packed %dx%dx%d act %d: err %.3g", k->name, M, N, K, act,
                  worst);
        free(A), free(B), free(bias), free(Bp), free(C);
    }
}

int main(void)
{
    ims_init();
    int top = ims_cpu_detect();
    for (int level = IMS_CPU_REF; level <= top; level++) {
        const ims__nn_kernels *k = ims__nn_kernels_for(level);
        printf("level %s: kernels %s\n", ims_cpu_level_name(level), k->name);
        test_bias_act(k);
        test_dw(k);
        test_pool(k);
        test_vec(k);
        test_gemm(k);
        test_gemm_packed(k);
    }
    return check_report();
}
