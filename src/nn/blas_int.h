/* SPDX-License-Identifier: MIT */
/*
 * blas_int.h — the BLAS/LAPACK entry points imgsim calls, all defined in
 * blas_load.c (which loads OpenBLAS at run time; see there why). BLAS
 * comes with cblas.h's prototypes; LAPACK here, Fortran calling
 * convention: hidden lengths of the character arguments last.
 */
#ifndef IMS_NN_BLAS_INT_H
#define IMS_NN_BLAS_INT_H

#include <stddef.h>

#include <cblas.h>

void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_len, size_t uplo_len);

/* Load OpenBLAS now (once; every entry point does it first), with one
 * thread and its idle pool stopped. Thread-safe, but it sets an
 * environment variable for the moment of the load: programs call it (as
 * ims_nn_init) at start-up, before their threads. */
void ims__blas_load(void);

/* The OPENBLAS_CORETYPE imgsim asks for on this CPU, NULL to leave the
 * choice to OpenBLAS (blas_load.c gives the rule). */
const char *ims__blas_core_for_cpu(void);

#endif /* IMS_NN_BLAS_INT_H */
