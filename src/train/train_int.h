/* SPDX-License-Identifier: MIT */
/*
 * train_int.h — the head structure and the helpers shared by the train
 * module's files (split.c, linalg.c, whiten.c, lda.c, mlp.c, head.c,
 * head_io.c).
 *
 * A head computes, from one row x of raw pooled taps (d values):
 *   u   = concat_t(x_t / |x_t|) * in_scale          (in_scale = 1/sqrt(T),
 *                                                     MLP: sqrt(d/T))
 *   p   = act(u . P + pb)                            (P: d x k, [in][out])
 *   r   = FUSION with whitening: normalise(u . Wm + wb)  (Wm: d x d,
 *         whiten.c), else u
 *   emb = normalise( FUSION: [raw_w * r, proj_w * p/|p|]
 *                    LDA:    p
 *                    MLP:    p )
 *   probs = softmax(v . C + cb), v = u (FUSION, LDA) or p (MLP)
 * The classifier and the LDA always see u, never r.
 * The same structure is what nn's encoder writer turns into graph nodes
 * (ims_train_write_encoder), so apply() here and the encoder agree.
 */
#ifndef IMS_TRAIN_INT_H
#define IMS_TRAIN_INT_H

#include "core/core_int.h"
#include "imgsim/train.h"

struct ims_train_head {
    int kind; /* enum ims_train_kind */
    int d;    /* input dim: sum of tap_dims */
    int n_taps;
    int *tap_dims;  /* n_taps */
    float in_scale; /* applied to the concatenation of unit taps */
    int k;          /* projection dim */
    float *P;       /* d x k */
    float *pb;      /* k */
    int relu;       /* ReLU after the projection (MLP) */
    float raw_w;    /* FUSION: weight of u (1), else 0 */
    float proj_w;   /* FUSION: weight of the unit projection (w) */
    int n_classes;
    int cls_on_proj; /* classifier input: 0 = u, 1 = p */
    float *C;        /* (cls_on_proj ? k : d) x n_classes */
    float *cb;       /* n_classes */
    float shrink;    /* chosen LDA shrinkage (0 = none) */
    float white_a;   /* FUSION: whitening shrinkage a (0 = no whitening) */
    float *Wm, *wb;  /* whitening: d x d [in][out] and d (NULL when off) */
    float val_acc;   /* validation accuracy of the classifier */
    int out_dim;
};

/* ---- split.c -------------------------------------------------------------- */
typedef struct ims__rng {
    uint64_t s;
} ims__rng;
uint64_t ims__rng_next(ims__rng *r);
double ims__rng_uniform(ims__rng *r); /* [0, 1) */
/* Uniform in [0, n). */
uint32_t ims__rng_below(ims__rng *r, uint32_t n);
void ims__rng_shuffle(ims__rng *r, int *a, int n);

/* ---- head.c --------------------------------------------------------------- */
ims_train_head *ims__head_alloc(int kind, int d, const int *tap_dims, int n_taps, int k,
                                int n_classes, int cls_on_proj);
/* u (d floats) from one raw row. */
void ims__head_unit(const ims_train_head *h, const float *x, float *u);

/* Indices of the k best entries of s[0..n) (descending, ties: lower
 * index), skipping `skip` (-1: none); returns how many were found. */
int ims__top_k(const float *s, int n, int skip, int k, int *out);

/* Retrieval quality from a similarity matrix S (n_q x n, row q = query
 * q_idx[q] against every item): the query itself is excluded, hit = same
 * label. Outputs (any may be NULL): P@1, P@5, P@10, mAP@10 (AP over the
 * top 10, normalised by min(10, relevant items)). */
void ims__retrieval(const float *S, int n_q, int n, const int *q_idx, const int *labels, double *p1,
                    double *p5, double *p10, double *map10);
/* Instance recall from S (n_q x n, row q = a distorted copy of item
 * q_idx[q] against every item, the original included): the fraction of
 * queries whose original ranks in the top 1 / top 10. */
void ims__instance_recall(const float *S, int n_q, int n, const int *q_idx, double *r1,
                          double *r10);
/* S[q][j] = e[q_idx[q]] . f[j] (e may be a second matrix, e.g. copies:
 * then q_idx indexes e's rows). */
void ims__sim(const float *e, const int *q_idx, int n_q, const float *f, int n, int dim, float *S);

/* ---- linalg.c ------------------------------------------------------------- */
/* In-place Cholesky of the n x n SPD matrix a (lower triangle); -1 if not SPD. */
int ims__cholesky(double *a, int n);
/* Solve L L^T X = B for B (n x m, row-major) in place. */
void ims__cholesky_solve(const double *L, int n, double *B, int m);
/* Jacobi eigen-decomposition of the symmetric n x n a (destroyed): eigen-
 * values w (descending), eigenvectors as columns of v (n x n). */
void ims__eigen_sym(double *a, int n, double *w, double *v);

/* The same for larger problems (the whitening's m x m Gram matrix):
 * LAPACK's dsyevd (Householder tridiagonalisation + divide and conquer,
 * blocked), on OpenBLAS's one thread. Same output convention; a is
 * destroyed. -1 on out of memory, 1 when LAPACK fails (no convergence). */
int ims__eigen_sym_lapack(double *a, int n, double *w, double *v);

/* ---- whiten.c ------------------------------------------------------------- */
/* Shrunk PCA-whitening (shrinkage a in (0,1]) learned on the unit rows
 * u[rows[i]] (rows NULL: the first m rows) of d values: fills M (d x d,
 * [in][out]) and bias (d) so that y = u . M + bias (then L2-normalised).
 * rank > 0 keeps only the top `rank` principal directions (bench). */
int ims__whiten_fit(const float *u, const int *rows, int m, int d, double a, int rank, float *M,
                    float *bias, ims_error *err);
/* y = normalise(u . M + bias) for n rows. */
void ims__whiten_rows(const float *M, const float *bias, int d, const float *u, int n, float *y);
/* The same as one BLAS product, for the hyper-parameter search only: its
 * sums are BLAS's, so its bytes differ from ims__whiten_rows' (which apply
 * and the encoder's rows keep). */
void ims__whiten_rows_search(const float *M, const float *bias, int d, const float *u, int n,
                             float *y);

/* ---- lda.c ---------------------------------------------------------------- */
/* Fit a shrunk LDA on unit rows u (n x d) of labels: fills h->P, h->pb
 * (k = h->k directions), h->C and h->cb (the LDA rule on u). */
int ims__lda_fit(ims_train_head *h, const float *u, int n, const int *labels, float shrink,
                 ims_error *err);
/* The same in two steps, to try several shrinkages on the same rows: the
 * shrinkage-independent parts once, then one solve per shrinkage (each
 * gives the bytes ims__lda_fit would). */
typedef struct ims__lda_prep {
    int n, d, C, m;    /* rows, dims, classes, non-empty classes */
    double *mean, *mu; /* C x d class means, d global mean */
    double *X;         /* n x d within-class residuals */
    double *M;         /* d x m scaled between-class deviations */
    double *G, *Y;     /* n x n Gram X X^T and n x m X M (only when n <= d) */
    int *cnt, *cls;    /* C counts, m non-empty class ids */
    double tr, dof;    /* trace of the residual scatter, degrees of freedom */
} ims__lda_prep;
int ims__lda_prepare(ims__lda_prep *p, int d, int C, const float *u, int n, const int *labels,
                     ims_error *err);
int ims__lda_solve(ims_train_head *h, const ims__lda_prep *p, float shrink, ims_error *err);
void ims__lda_prep_free(ims__lda_prep *p); /* safe on a zeroed or freed prep */

/* ---- mlp.c ---------------------------------------------------------------- */
int ims__mlp_fit(ims_train_head *h, const float *u, int n, const int *labels,
                 const unsigned char *is_val, const ims_train_opts *o, ims_error *err);

#endif /* IMS_TRAIN_INT_H */
