/* SPDX-License-Identifier: MIT */
/*
 * test_nn_kernels.c — every kernel level against independent double-
 * precision loops (never against ref.c: with only ref available that would
 * compare ref with itself and could never fail). A level this build or
 * machine lacks is skipped with a message.
 * Tolerances, per output: max pooling and vadd exact (one float operation
 * or none); bias+activation, vscale and average pooling within
 * 2e-6 * (1 + |terms|); depthwise and GEMM within 1e-5 * (1 + sum of
 * |terms|) (summation order and FMA contraction).
 */
#include <string.h>

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

/* the activation in double, as nn_int.h defines it */
static double act_d(double v, int act, float act_max)
{
    switch (act) {
    case 1:
        v = v > 0 ? v : 0;
        return act_max > 0 && v > act_max ? act_max : v;
    case 2:
        return 1 / (1 + exp(-v));
    case 3:
        return tanh(v);
    default:
        return v;
    }
}

static void test_bias_act(const ims__nn_kernels *k)
{
    for (int t = 0; t < 200; t++) {
        int rows = rnd(1, 9), c = rnd(1, 70), ld = c + rnd(0, 5), act = rnd(0, 3);
        float amax = act == 1 && rnd(0, 1) ? 6.0f : 0.0f;
        float *y = rand_buf((size_t)rows * ld), *z = malloc((size_t)rows * ld * sizeof(float));
        float *bias = rnd(0, 1) ? rand_buf((size_t)c) : NULL;
        memcpy(z, y, (size_t)rows * ld * sizeof(float));
        k->bias_act(z, rows, c, ld, bias, act, amax);
        int bad = 0;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < ld; j++) {
                size_t i = (size_t)r * ld + j;
                if (j >= c) { /* padding columns untouched */
                    bad += z[i] != y[i];
                    continue;
                }
                double v = (double)y[i] + (bias ? bias[j] : 0);
                double want = act_d(v, act, amax);
                bad += !(fabs(z[i] - want) <= 2e-6 * (1 + fabs(v)));
            }
        CHECK_MSG(bad == 0, "%s bias_act rows %d c %d ld %d act %d: %d wrong", k->name, rows, c, ld,
                  act, bad);
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
        float *o2 = calloc(no, sizeof(float));
        a.in = in, a.k = kk, a.bias = bias;
        a.out = o2;
        k->dw_rows(&a, 0, a.out_h);
        double worst = 0;
        for (int oy = 0; oy < a.out_h; oy++)
            for (int ox = 0; ox < a.out_w; ox++)
                for (int c = 0; c < a.c; c++) {
                    double acc = bias ? bias[c] : 0, mag = fabs(acc);
                    for (int ky = 0; ky < a.kh; ky++)
                        for (int kx = 0; kx < a.kw; kx++) {
                            int iy = oy * a.sh - a.pad_t + ky * a.dh;
                            int ix = ox * a.sw - a.pad_l + kx * a.dw;
                            if (iy < 0 || iy >= a.in_h || ix < 0 || ix >= a.in_w)
                                continue;
                            double term = (double)in[((size_t)iy * a.in_w + ix) * a.ld_in + c] *
                                          kk[((size_t)ky * a.kw + kx) * a.c + c];
                            acc += term, mag += fabs(term);
                        }
                    double want = act_d(acc, a.act, a.act_max);
                    double e = fabs(o2[((size_t)oy * a.out_w + ox) * a.ld_out + c] - want);
                    if (!(e <= 1e-5 * (1 + mag)) && !(worst > e))
                        worst = e;
                }
        CHECK_MSG(worst == 0, "%s dw c%d %dx%d k%dx%d s%d,%d d%d,%d: err %.3g", k->name, a.c,
                  a.in_h, a.in_w, a.kh, a.kw, a.sh, a.sw, a.dh, a.dw, worst);
        free(in), free(kk), free(bias), free(o2);
    }
}

/* Pooling over the cells inside the input (padding ignored): max exact,
 * average within rounding. */
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
        float *o2 = calloc(no, sizeof(float));
        a.in = in;
        a.out = o2;
        k->pool_rows(&a, 0, a.out_h);
        int bad = 0;
        for (int oy = 0; oy < a.out_h; oy++)
            for (int ox = 0; ox < a.out_w; ox++)
                for (int c = 0; c < a.c; c++) {
                    double acc = a.is_max ? -INFINITY : 0, mag = 0;
                    int cells = 0;
                    for (int ky = 0; ky < a.kh; ky++)
                        for (int kx = 0; kx < a.kw; kx++) {
                            int iy = oy * a.sh - a.pad_t + ky, ix = ox * a.sw - a.pad_l + kx;
                            if (iy < 0 || iy >= a.in_h || ix < 0 || ix >= a.in_w)
                                continue;
                            double v = in[((size_t)iy * a.in_w + ix) * a.ld_in + c];
                            acc = a.is_max ? (v > acc ? v : acc) : acc + v;
                            mag += fabs(v), cells++;
                        }
                    float got = o2[((size_t)oy * a.out_w + ox) * a.ld_out + c];
                    if (a.is_max)
                        bad += (double)got != acc;
                    else
                        bad += !(fabs(got - acc / cells) <= 2e-6 * (1 + mag / cells));
                }
        CHECK_MSG(bad == 0, "%s pool max=%d c%d %dx%d k%dx%d: %d wrong", k->name, a.is_max, a.c,
                  a.in_h, a.in_w, a.kh, a.kw, bad);
        free(in), free(o2);
    }
}

static void test_vec(const ims__nn_kernels *k)
{
    for (int t = 0; t < 100; t++) {
        int n = rnd(0, 100);
        float *x = rand_buf((size_t)n + 1), *y1 = rand_buf((size_t)n + 1);
        float *y2 = malloc(((size_t)n + 1) * sizeof(float));
        memcpy(y2, y1, ((size_t)n + 1) * sizeof(float));
        k->vadd(y2, x, n);
        int bad = 0; /* a float sum of two floats is the double sum rounded once */
        for (int i = 0; i <= n; i++)
            bad += y2[i] != (i < n ? (float)((double)y1[i] + x[i]) : y1[i]);
        CHECK_MSG(bad == 0, "%s vadd n %d: %d wrong", k->name, n, bad);
        memcpy(y2, y1, ((size_t)n + 1) * sizeof(float));
        k->vscale(y2, x, n, 0.7f, -0.3f); /* FMA allowed */
        for (int i = 0; i <= n; i++) {
            double want = i < n ? (double)x[i] * 0.7f - 0.3f : y1[i];
            CHECK_MSG(fabs(y2[i] - want) <= 2e-6 * (1 + fabs(x[i] * 0.7)), "%s vscale n %d [%d]",
                      k->name, n, i);
        }
        free(x), free(y1), free(y2);
    }
}

static void test_gemm(const ims__nn_kernels *k)
{
    for (int t = 0; t < 300; t++) {
        int M = rnd(1, 40), N = rnd(1, 70), K = rnd(1, 90);
        int lda = K + rnd(0, 5), ldb = N + rnd(0, 5), ldc = N + rnd(0, 5);
        float *A = rand_buf((size_t)M * lda), *B = rand_buf((size_t)K * ldb);
        float *c2 = calloc((size_t)M * ldc, sizeof(float));
        k->gemm(M, N, K, A, lda, B, ldb, c2, ldc);
        double worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double acc = 0, mag = 0;
                for (int q = 0; q < K; q++) {
                    double term = (double)A[(size_t)i * lda + q] * B[(size_t)q * ldb + j];
                    acc += term, mag += fabs(term);
                }
                double e = fabs(c2[(size_t)i * ldc + j] - acc);
                if (!(e <= 1e-5 * (1 + mag)) && !(worst > e))
                    worst = e;
            }
        CHECK_MSG(worst == 0, "%s gemm %dx%dx%d: err %.3g", k->name, M, N, K, worst);
        /* columns beyond N are untouched */
        for (int i = 0; i < M; i++)
            for (int j = N; j < ldc; j++)
                CHECK(c2[(size_t)i * ldc + j] == 0);
        free(A), free(B), free(c2);
    }
}

/* Packed-B GEMM with fused bias + activation, against a double-precision loop. */
static void test_gemm_packed(const ims__nn_kernels *k)
{
    for (int t = 0; t < 200; t++) {
        /* M past two 12-row tiles; N up to 5 panels (pairs and an odd one) */
        int M = rnd(1, 40), N = rnd(1, 80), K = rnd(1, 90), act = rnd(0, 3);
        float amax = act == 1 && rnd(0, 1) ? 1.0f : 0.0f;
        int lda = K + rnd(0, 5), ldc = N + rnd(0, 5);
        float *A = rand_buf((size_t)M * lda), *B = rand_buf((size_t)K * N);
        float *bias = rnd(0, 1) ? rand_buf((size_t)N) : NULL;
        float *Bp = aligned_alloc(64, (ims__packed_size(K, N) * sizeof(float) + 63) / 64 * 64);
        ims__pack_b(B, bias, K, N, Bp);
        float *C = calloc((size_t)M * ldc, sizeof(float));
        int n_panels = (N + IMS_PANEL - 1) / IMS_PANEL;
        k->gemm_packed(M, N, K, A, lda, Bp, Bp + (size_t)n_panels * IMS_PANEL * K, C, ldc, 0,
                       n_panels, act, amax, NULL, 0);
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
        if (act <= 1) { /* a residual in the epilogue: exactly act(A.B + bias) + R, also in place */
            int ldr = N + rnd(0, 5), bad = 0;
            float *R = rand_buf((size_t)M * ldr), *C2 = calloc((size_t)M * ldc, sizeof(float));
            float *C3 = calloc((size_t)M * ldr, sizeof(float));
            memcpy(C3, R, (size_t)M * ldr * sizeof(float));
            k->gemm_packed(M, N, K, A, lda, Bp, Bp + (size_t)n_panels * IMS_PANEL * K, C2, ldc, 0,
                           n_panels, act, amax, R, ldr);
            k->gemm_packed(M, N, K, A, lda, Bp, Bp + (size_t)n_panels * IMS_PANEL * K, C3, ldr, 0,
                           n_panels, act, amax, C3, ldr);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    float want = C[(size_t)i * ldc + j] + R[(size_t)i * ldr + j];
                    bad += C2[(size_t)i * ldc + j] != want || C3[(size_t)i * ldr + j] != want;
                }
            for (int i = 0; i < M; i++) /* columns past N untouched */
                for (int j = N; j < ldc; j++)
                    bad += C2[(size_t)i * ldc + j] != 0;
            CHECK_MSG(bad == 0, "%s gemm_packed %dx%dx%d act %d + residual: %d wrong", k->name, M,
                      N, K, act, bad);
            free(R), free(C2), free(C3);
        }
        free(A), free(B), free(bias), free(Bp), free(C);
    }
}

int main(void)
{
    ims_init();
    int n_tested = 0;
    for (int level = IMS_CPU_REF; strcmp(ims_cpu_level_name(level), "?") != 0; level++) {
        const ims__nn_kernels *k = ims__nn_kernels_for(level);
        CHECK(k != NULL);
        if (strcmp(k->name, ims_cpu_level_name(level)) != 0) {
            printf("skip: level %s not built or not supported by this CPU (would use %s)\n",
                   ims_cpu_level_name(level), k->name);
            continue;
        }
        printf("level %s: testing\n", k->name);
        n_tested++;
        test_bias_act(k);
        test_dw(k);
        test_pool(k);
        test_vec(k);
        test_gemm(k);
        test_gemm_packed(k);
    }
    CHECK(n_tested >= 1); /* ref always */
    /* a level above every level: the best this build and CPU have, never NULL */
    const ims__nn_kernels *top = ims__nn_kernels_for(99);
    CHECK(top != NULL && ims_cpu_level_from_name(top->name) <= ims_cpu_detect());
    return check_report();
}
