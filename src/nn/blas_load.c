/* SPDX-License-Identifier: MIT */
/*
 * blas_load.c — OpenBLAS, loaded at run time with kernels the CPU can run
 * at full width.
 *
 * OpenBLAS's DYNAMIC_ARCH build picks its kernels in a constructor, from a
 * table of the CPU models it knew when it was released. Debian 12's 0.3.21
 * does not know the newest Xeons cloud hosts rent (Emerald Rapids, model
 * 207, seen here) and falls back to "Prescott": SSE3 kernels, 3-4x
 * slower in the fine-tune's dgemm/dsyrk/dsyevd (imgsim finetune on
 * mobilenet_v2: 0.39-0.49 s wall against 0.23-0.26 s with the AVX-512
 * kernels, same machine). The only switch is the environment variable
 * OPENBLAS_CORETYPE, read by that constructor, which runs before main()
 * when the library is linked. So the library is not linked: this file
 * defines the handful of BLAS/LAPACK entry points imgsim calls (same
 * names, same prototypes as cblas.h and LAPACK's Fortran ABI), and the
 * first of them, or ims_nn_init() at start-up, dlopen()s
 * libopenblas.so.0 after choosing the core from our own CPU detection:
 *   - OPENBLAS_CORETYPE already set: left alone (the user's choice);
 *   - AVX-512 F/BW/DQ/VL usable (src/core/cpu.c): "SkylakeX", the widest
 *     fp32/fp64 kernels 0.3.21 has (its Cooper Lake and Sapphire Rapids
 *     cores differ only in bf16 routines imgsim does not call);
 *   - AVX2 + FMA on an Intel CPU: "Haswell" (AMD Zen 1-3 are known to
 *     0.3.21, which tunes its blocking for them: left to it);
 *   - otherwise: OpenBLAS's own choice.
 * The variable is set only around the dlopen() and removed again, so child
 * processes see the environment they were given.
 *
 * Results stay deterministic on a machine (one core choice per CPU, one
 * OpenBLAS thread); which kernel runs was already machine-dependent.
 * Loading fails only when the package is missing: the message says so and
 * the process aborts, as the dynamic linker would have refused to start it.
 */
#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"
#include "imgsim/imgsim.h"
#include "nn/blas_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

typedef void (*sgemm_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint,
                         blasint, blasint, float, const float *, blasint, const float *, blasint,
                         float, float *, blasint);
typedef void (*sgemv_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, blasint, blasint, float,
                         const float *, blasint, const float *, blasint, float, float *, blasint);
typedef float (*sdot_fn)(blasint, const float *, blasint, const float *, blasint);
typedef void (*dgemm_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint,
                         blasint, blasint, double, const double *, blasint, const double *, blasint,
                         double, double *, blasint);
typedef void (*dsyrk_fn)(enum CBLAS_ORDER, enum CBLAS_UPLO, enum CBLAS_TRANSPOSE, blasint, blasint,
                         double, const double *, blasint, double, double *, blasint);
typedef void (*dtrsm_fn)(enum CBLAS_ORDER, enum CBLAS_SIDE, enum CBLAS_UPLO, enum CBLAS_TRANSPOSE,
                         enum CBLAS_DIAG, blasint, blasint, double, const double *, blasint,
                         double *, blasint);
typedef void (*dpotrf_fn)(const char *, const int *, double *, const int *, int *, size_t);
typedef void (*dsyevd_fn)(const char *, const char *, const int *, double *, const int *, double *,
                          double *, const int *, int *, const int *, int *, size_t, size_t);

static struct {
    void *lib;
    sgemm_fn sgemm;
    sgemv_fn sgemv;
    sdot_fn sdot;
    dgemm_fn dgemm;
    dsyrk_fn dsyrk;
    dtrsm_fn dtrsm;
    dpotrf_fn dpotrf;
    dsyevd_fn dsyevd;
    void (*set_num_threads)(int);
    char *(*get_corename)(void);
    int (*thread_shutdown)(void); /* optional: pthreads builds only */
    char forced[16];              /* the core we asked for, "" if none */
} blas;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;

const char *ims__blas_core_for_cpu(void)
{
    int level = ims_cpu_detect();
    if (level >= IMS_CPU_AVX512)
        return "SkylakeX";
#if defined(__x86_64__) || defined(__i386__)
    if (level >= IMS_CPU_AVX2) {
        unsigned a, b, c, d;
        if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x756e6547 && d == 0x49656e69 &&
            c == 0x6c65746e) /* "GenuineIntel" */
            return "Haswell";
    }
#endif
    return NULL;
}

static void *sym(const char *name, int required)
{
    void *p = dlsym(blas.lib, name);
    if (!p && required) {
        fprintf(stderr, "imgsim: fatal: OpenBLAS (libopenblas.so.0) lacks %s\n", name);
        abort();
    }
    return p;
}

static void load(void)
{
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : ims__blas_core_for_cpu();
    if (core) {
        snprintf(blas.forced, sizeof blas.forced, "%s", core);
        setenv("OPENBLAS_CORETYPE", core, 1);
    }
    static const char *const names[] = {"libopenblas.so.0", "libopenblas.so"};
    for (size_t i = 0; i < sizeof names / sizeof *names && !blas.lib; i++)
        blas.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (core)
        unsetenv("OPENBLAS_CORETYPE");
    if (!blas.lib) {
        fprintf(stderr, "imgsim: fatal: cannot load OpenBLAS: %s (Debian package libopenblas0)\n",
                dlerror());
        abort();
    }
    /* POSIX's sanctioned way from void * to a function pointer */
    *(void **)&blas.sgemm = sym("cblas_sgemm", 1);
    *(void **)&blas.sgemv = sym("cblas_sgemv", 1);
    *(void **)&blas.sdot = sym("cblas_sdot", 1);
    *(void **)&blas.dgemm = sym("cblas_dgemm", 1);
    *(void **)&blas.dsyrk = sym("cblas_dsyrk", 1);
    *(void **)&blas.dtrsm = sym("cblas_dtrsm", 1);
    *(void **)&blas.dpotrf = sym("dpotrf_", 1);
    *(void **)&blas.dsyevd = sym("dsyevd_", 1);
    *(void **)&blas.set_num_threads = sym("openblas_set_num_threads", 1);
    *(void **)&blas.get_corename = sym("openblas_get_corename", 1);
    *(void **)&blas.thread_shutdown = sym("blas_thread_shutdown_", 0);
    /* One OpenBLAS thread: see gemm.c. Its pthreads build starts worker
     * threads when it loads, each spinning (sched_yield) for about 0.1
     * CPU-second before it sleeps, on the cores ingest and the encoder
     * want: the pool is stopped right after the count is set, as
     * openblas_set_num_threads() would start it again. */
    blas.set_num_threads(1);
    if (blas.thread_shutdown)
        blas.thread_shutdown();
    ims_log(IMS_LOG_DEBUG, "OpenBLAS core %s%s", blas.get_corename(),
            core ? " (OPENBLAS_CORETYPE chosen by imgsim)" : "");
}

void ims__blas_load(void) { pthread_once(&load_once, load); }

const char *ims_nn_blas_core(void)
{
    ims__blas_load();
    return blas.get_corename();
}

/* ---- the entry points imgsim calls -------------------------------------- */

void cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER o, OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint m,
                 OPENBLAS_CONST blasint n, OPENBLAS_CONST blasint k, OPENBLAS_CONST float alpha,
                 OPENBLAS_CONST float *a, OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *b,
                 OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *c,
                 OPENBLAS_CONST blasint ldc)
{
    ims__blas_load();
    blas.sgemm(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cblas_sgemv(OPENBLAS_CONST enum CBLAS_ORDER o, OPENBLAS_CONST enum CBLAS_TRANSPOSE t,
                 OPENBLAS_CONST blasint m, OPENBLAS_CONST blasint n, OPENBLAS_CONST float alpha,
                 OPENBLAS_CONST float *a, OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *x,
                 OPENBLAS_CONST blasint incx, OPENBLAS_CONST float beta, float *y,
                 OPENBLAS_CONST blasint incy)
{
    ims__blas_load();
    blas.sgemv(o, t, m, n, alpha, a, lda, x, incx, beta, y, incy);
}

float cblas_sdot(OPENBLAS_CONST blasint n, OPENBLAS_CONST float *x, OPENBLAS_CONST blasint incx,
                 OPENBLAS_CONST float *y, OPENBLAS_CONST blasint incy)
{
    ims__blas_load();
    return blas.sdot(n, x, incx, y, incy);
}

void cblas_dgemm(OPENBLAS_CONST enum CBLAS_ORDER o, OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint m,
                 OPENBLAS_CONST blasint n, OPENBLAS_CONST blasint k, OPENBLAS_CONST double alpha,
                 OPENBLAS_CONST double *a, OPENBLAS_CONST blasint lda, OPENBLAS_CONST double *b,
                 OPENBLAS_CONST blasint ldb, OPENBLAS_CONST double beta, double *c,
                 OPENBLAS_CONST blasint ldc)
{
    ims__blas_load();
    blas.dgemm(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cblas_dsyrk(OPENBLAS_CONST enum CBLAS_ORDER o, OPENBLAS_CONST enum CBLAS_UPLO u,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE t, OPENBLAS_CONST blasint n,
                 OPENBLAS_CONST blasint k, OPENBLAS_CONST double alpha, OPENBLAS_CONST double *a,
                 OPENBLAS_CONST blasint lda, OPENBLAS_CONST double beta, double *c,
                 OPENBLAS_CONST blasint ldc)
{
    ims__blas_load();
    blas.dsyrk(o, u, t, n, k, alpha, a, lda, beta, c, ldc);
}

void cblas_dtrsm(OPENBLAS_CONST enum CBLAS_ORDER o, OPENBLAS_CONST enum CBLAS_SIDE s,
                 OPENBLAS_CONST enum CBLAS_UPLO u, OPENBLAS_CONST enum CBLAS_TRANSPOSE t,
                 OPENBLAS_CONST enum CBLAS_DIAG d, OPENBLAS_CONST blasint m,
                 OPENBLAS_CONST blasint n, OPENBLAS_CONST double alpha, OPENBLAS_CONST double *a,
                 OPENBLAS_CONST blasint lda, double *b, OPENBLAS_CONST blasint ldb)
{
    ims__blas_load();
    blas.dtrsm(o, s, u, t, d, m, n, alpha, a, lda, b, ldb);
}

void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len)
{
    ims__blas_load();
    blas.dpotrf(uplo, n, a, lda, info, uplo_len);
}

void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_len, size_t uplo_len)
{
    ims__blas_load();
    blas.dsyevd(jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork, info, jobz_len, uplo_len);
}

void openblas_set_num_threads(int n)
{
    ims__blas_load();
    blas.set_num_threads(n);
}
