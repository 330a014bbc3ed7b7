/* SPDX-License-Identifier: MIT */
/*
 * test_nn_blas.c — OpenBLAS loaded at run time (src/nn/blas_load.c).
 *
 *  - the kernel set in force is the one imgsim chose for this CPU (on the
 *    Xeons OpenBLAS 0.3.21 does not know, "SkylakeX" instead of its SSE3
 *    fallback), and the environment is left as it was;
 *  - a user's OPENBLAS_CORETYPE wins (checked in a child process, since
 *    the choice is made once per process);
 *  - every entry point imgsim defines forwards its arguments in order:
 *    each routine's result against a direct computation, on shapes where
 *    a swapped argument would show (non-square, leading dimensions larger
 *    than the rows, transposes, non-unit strides).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "imgsim/imgsim.h"
#include "imgsim/nn.h"
#include "nn/blas_int.h"

/* ---- the core choice ---------------------------------------------------- */

static void test_core_choice(void)
{
    const char *want = ims__blas_core_for_cpu();
    const char *got = ims_nn_blas_core();
    CHECK(got != NULL && got[0]);
    if (want)
        CHECK_STR_EQ(got, want);
    CHECK(getenv("OPENBLAS_CORETYPE") == NULL); /* set only around the load */
    printf("OpenBLAS core %s (imgsim asks for %s)\n", got, want ? want : "nothing");
    if (ims_cpu_detect() >= IMS_CPU_AVX512)
        CHECK_STR_EQ(want, "SkylakeX");
}

/* The child reports its core on stdout; the parent reads it. */
static void test_user_coretype_wins(const char *self)
{
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        setenv("OPENBLAS_CORETYPE", "Prescott", 1);
        execl(self, self, "--print-core", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[128] = {0};
    ssize_t n = read(fd[0], buf, sizeof buf - 1);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(n > 0);
    CHECK_STR_EQ(buf, "Prescott OPENBLAS_CORETYPE=Prescott\n");
}

/* ---- each entry point against a direct computation ---------------------- */

static void test_sgemm_sgemv_sdot(void)
{
    enum { M = 3, N = 5, K = 4, LDA = 6, LDB = 7, LDC = 9 };
    float a[K * LDA], b[K * LDB], c[M * LDC], x[2 * N], y[2 * M];
    for (int i = 0; i < K * LDA; i++)
        a[i] = (float)((i * 7) % 11) - 5.f;
    for (int i = 0; i < K * LDB; i++)
        b[i] = (float)((i * 5) % 13) - 6.f;
    for (int i = 0; i < M * LDC; i++)
        c[i] = 1.f;
    /* C (M x N) = 2 A^T B - C, A stored K x M (lda LDA), B stored K x N */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 2.f, a, LDA, b, LDB, -1.f, c,
                LDC);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0;
            for (int k = 0; k < K; k++)
                s += a[k * LDA + i] * b[k * LDB + j];
            bad += c[i * LDC + j] != 2.f * s - 1.f;
        }
    CHECK_EQ(bad, 0);

    /* y (M) = A^T x (K), A the K x M matrix above, x and y with stride 2
     * (y's odd elements must stay untouched) */
    for (int i = 0; i < 2 * N; i++)
        x[i] = (float)i - 3.f;
    for (int i = 0; i < 2 * M; i++)
        y[i] = 100.f;
    cblas_sgemv(CblasRowMajor, CblasTrans, K, M, 1.f, a, LDA, x, 2, 0.f, y, 2);
    bad = 0;
    for (int i = 0; i < M; i++) {
        float s = 0;
        for (int k = 0; k < K; k++)
            s += a[k * LDA + i] * x[2 * k];
        bad += y[2 * i] != s || y[2 * i + 1] != 100.f;
    }
    CHECK_EQ(bad, 0);

    float d = cblas_sdot(N, x, 2, b, 1), s = 0;
    for (int i = 0; i < N; i++)
        s += x[2 * i] * b[i];
    CHECK_EQ(d, s);
}

static void test_dgemm_dsyrk_dtrsm(void)
{
    enum { M = 4, N = 3, K = 5 };
    double a[M * K], b[K * N], c[M * N], g[M * M];
    for (int i = 0; i < M * K; i++)
        a[i] = (double)((i * 3) % 7) - 2.5;
    for (int i = 0; i < K * N; i++)
        b[i] = (double)((i * 5) % 9) - 4.0;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0, a, K, b, N, 0.0, c, N);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += a[i * K + k] * b[k * N + j];
            bad += c[i * N + j] != s;
        }
    CHECK_EQ(bad, 0);

    /* G = A A^T (lower triangle) + 3 I: symmetric positive definite */
    for (int i = 0; i < M * M; i++)
        g[i] = i % (M + 1) == 0 ? 3.0 : -7.0;
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, M, K, 1.0, a, K, 1.0, g, M);
    bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++) {
            double s = i == j ? 3.0 : -7.0;
            if (j <= i)
                for (int k = 0; k < K; k++)
                    s += a[i * K + k] * a[j * K + k];
            bad += g[i * M + j] != s; /* the upper triangle untouched */
        }
    CHECK_EQ(bad, 0);

    /* Solve L X = B for the lower triangle L of g: L (L^-1 B) must give B */
    double x[M * N];
    for (int i = 0; i < M * N; i++)
        x[i] = b[i];
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, M, N, 1.0, g, M,
                x, N);
    double err = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k <= i; k++)
                s += g[i * M + k] * x[k * N + j];
            err = fmax(err, fabs(s - b[i * N + j]));
        }
    CHECK_MSG(err < 1e-9, "dtrsm residual %g", err);
}

static void test_dpotrf_dsyevd(void)
{
    /* a 3 x 3 SPD matrix with known eigenvalues 1, 2, 4: Q diag Q^T for a
     * Householder Q = I - 2 v v^T, v = (1, 2, 2) / 3 */
    const double v[3] = {1 / 3.0, 2 / 3.0, 2 / 3.0}, lam[3] = {1, 2, 4};
    double q[9], a[9], a2[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            q[i * 3 + j] = (i == j) - 2 * v[i] * v[j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double s = 0;
            for (int k = 0; k < 3; k++)
                s += q[i * 3 + k] * lam[k] * q[j * 3 + k];
            a[i * 3 + j] = a2[i * 3 + j] = s;
        }
    int n = 3, info = -1;
    dpotrf_("U", &n, a, &n, &info, 1); /* column-major upper = row-major lower */
    CHECK_EQ(info, 0);
    double err = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int k = 0; k <= j; k++)
                s += a[i * 3 + k] * a[j * 3 + k];
            err = fmax(err, fabs(s - a2[i * 3 + j]));
        }
    CHECK_MSG(err < 1e-12, "dpotrf: L L^T off by %g", err);
    double not_spd[4] = {1, 2, 2, 1};
    int two = 2;
    dpotrf_("U", &two, not_spd, &two, &info, 1);
    CHECK(info > 0);

    double w[3], work[64];
    int iwork[32], lwork = 64, liwork = 32;
    dsyevd_("V", "U", &n, a2, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    CHECK_EQ(info, 0);
    for (int i = 0; i < 3; i++)
        CHECK_NEAR(w[i], lam[i], 1e-12);
    /* eigenvector of 4 = q's third column, up to sign: (row-major a2 holds
     * the column-major vectors, one per row) */
    double dot = 0;
    for (int i = 0; i < 3; i++)
        dot += a2[2 * 3 + i] * q[i * 3 + 2];
    CHECK_NEAR(fabs(dot), 1.0, 1e-12);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--print-core")) {
        ims_nn_init();
        const char *e = getenv("OPENBLAS_CORETYPE");
        printf("%s OPENBLAS_CORETYPE=%s\n", ims_nn_blas_core(), e ? e : "(unset)");
        return 0;
    }
    ims_init();
    unsetenv("OPENBLAS_CORETYPE"); /* the test is about imgsim's choice */
    ims_nn_init();
    test_core_choice();
    test_user_coretype_wins("/proc/self/exe");
    test_sgemm_sgemv_sdot();
    test_dgemm_dsyrk_dtrsm();
    test_dpotrf_dsyevd();
    return check_report();
}
