/* SPDX-License-Identifier: MIT */
/*
 * train.h — fine-tuning heads on cached backbone features.
 *
 * Input: an n x d matrix of pooled backbone features, the concatenation of
 * n_taps taps (tap_dims[t] values each, raw as ims_nn_session_run gives
 * them), and one integer label (category) per row. A head maps such a row to
 * the final embedding vector (ims_train_apply) and to class probabilities
 * (ims_train_classify). Every head first L2-normalises each tap and scales
 * the concatenation by 1/sqrt(n_taps), giving a unit vector u.
 *
 * Kinds of head:
 *   IMS_TRAIN_FUSION (default) — a regularised Fisher discriminant (LDA) z of
 *     u, whitened for the within-class scatter and L2-normalised, fused with
 *     a raw part r: out = [r, w z] / sqrt(1 + w^2) (unit length; cosine
 *     score = (r.r' + w^2 z.z') / (1 + w^2)). r is u PCA-whitened (shrunk
 *     covariance of the training rows, opts.whiten) and L2-normalised, or u
 *     itself with whitening off. Category structure comes from z, instance
 *     similarity from r; the LDA shrinkage and the weight w are chosen on
 *     the validation split (category P@10 under an instance-retrieval
 *     guard, see head.c). Classifier: LDA's linear rule (Gaussian classes
 *     with a shared covariance) + softmax, on u.
 *   IMS_TRAIN_LDA — z alone (out = z): best categories, poor instances.
 *   IMS_TRAIN_MLP — the seed method: Dense(dim) ReLU + Dense(classes)
 *     softmax trained with mini-batch Adam, cross-entropy, weight decay and
 *     early stopping on validation accuracy; the embedding is the ReLU layer.
 *
 * Determinism: everything is single-threaded with a fixed summation order
 * and an own PRNG (splitmix64 of opts.seed): the same inputs and options give
 * byte-identical heads (ims_train_save) on every run and thread count.
 *
 * Thread-safety: a head is immutable after training; apply/classify may be
 * called from several threads at once.
 */
#ifndef IMGSIM_TRAIN_H
#define IMGSIM_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "imgsim/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ims_train_head ims_train_head;

/* Head kinds. On-disk values: frozen, append-only. */
enum ims_train_kind {
    IMS_TRAIN_FUSION = 0,
    IMS_TRAIN_LDA = 1,
    IMS_TRAIN_MLP = 2,
};

/* Per-epoch report (MLP) or per-candidate report (LDA/fusion, epoch = the
 * candidate's index, loss = validation cross-entropy). Return non-zero to
 * stop training early (the best head so far is kept). */
typedef int (*ims_train_progress_fn)(void *ud, int epoch, int n_epochs, float loss, float train_acc,
                                     float val_acc);

/* Largest fusion weight chosen without distorted copies to guard instance
 * retrieval (measured on the sample data, see bench/finetune_eval.c). */
#define IMS_TRAIN_W_MAX_BLIND 0.5f
/* Fusion weight used with a whitened raw part when no copies are given
 * (measured, bench/RESULTS-finetune.md: the whitened part keeps instance
 * recall at the raw taps' level up to about this w). */
#define IMS_TRAIN_W_WHITEN 0.7f
/* Default shrinkage of the raw part's PCA-whitening (opts.whiten). */
#define IMS_TRAIN_WHITEN_A 0.3f

typedef struct ims_train_opts {
    int kind;           /* enum ims_train_kind (IMS_TRAIN_FUSION) */
    int dim;            /* MLP: hidden units (256); LDA: max dims (0 = classes - 1) */
    int epochs;         /* MLP: max epochs (200) */
    int batch;          /* MLP: mini-batch size (32) */
    float lr;           /* MLP: Adam learning rate (1e-3) */
    float weight_decay; /* MLP: L2 penalty on weights (1e-4) */
    int patience;       /* MLP: epochs without val improvement before stopping (20) */
    float val_frac;     /* validation fraction for model selection (0.2) */
    uint64_t seed;      /* split, init and shuffling (0 is a valid seed) */
    float shrink;       /* LDA: within-class shrinkage in (0,1); <= 0 = choose on val */
    float weight;       /* FUSION: w; < 0 = choose on val (see aug) */
    /* FUSION: shrinkage a in (0,1] of the raw part's PCA-whitening
     * (IMS_TRAIN_WHITEN_A); <= 0 = off (the raw part is u). Learned on the
     * training rows of the split for the search, on all rows for the
     * final head (copies excluded). */
    float whiten;
    /* Optional: n x d raw features of distorted copies of the rows (row i a
     * copy of row i, e.g. ims_image_distort). When given, w is chosen to
     * maximise validation P@10 while the validation rows' copies still find
     * their originals (instance recall@10 no worse than the raw part
     * alone); without it, w is capped at IMS_TRAIN_W_MAX_BLIND, or is
     * IMS_TRAIN_W_WHITEN with whitening. */
    const float *aug;
    ims_train_progress_fn progress; /* optional */
    void *progress_ud;
    /* FUSION with whitening: 0 = ims_cpu_count(), 1 = one thread; at most
     * two are used (the final whitening beside the search). The result is
     * the same for any value. */
    int threads;
} ims_train_opts;

/* Fill opts with the defaults above. */
void ims_train_opts_default(ims_train_opts *opts);

/* Stratified, seeded split of n labelled rows: for each class with >= 2
 * rows, round(val_frac * count) rows (at least 1, at most count - 1) go to
 * validation; single-row classes stay in training. is_val[i] (OUT) is 1 for
 * validation rows. Deterministic for a seed. Returns the number of
 * validation rows. */
int ims_train_split(const int *labels, int n, float val_frac, uint64_t seed, unsigned char *is_val);

/* Train a head. x: n x d row-major (raw pooled taps), tap_dims: n_taps dims
 * summing to d, labels: n values in [0, n_classes). Training uses all rows:
 * a validation split (ims_train_split of opts->seed) chooses the
 * hyper-parameters / epoch, then the final head is refit on all rows
 * (LDA/fusion) or is the best-epoch MLP. `opts` may be NULL (defaults).
 * Errors: IMS_EINVAL (bad sizes or labels), IMS_ESTATE ("nothing to
 * train": fewer than 2 categories with 2+ items; the message says so and
 * callers should fall back to the raw taps), IMS_ENOMEM. *out is freed with
 * ims_train_head_free. */
int ims_train_fit(const float *x, int n, int d, const int *tap_dims, int n_taps, const int *labels,
                  int n_classes, const ims_train_opts *opts, ims_train_head **out, ims_error *err);
void ims_train_head_free(ims_train_head *h);

int ims_train_kind_of(const ims_train_head *h);
int ims_train_in_dim(const ims_train_head *h);  /* d */
int ims_train_out_dim(const ims_train_head *h); /* embedding dim */
int ims_train_n_classes(const ims_train_head *h);
int ims_train_n_taps(const ims_train_head *h);
const int *ims_train_tap_dims(const ims_train_head *h);
/* Chosen hyper-parameters (for logs and reports). */
float ims_train_weight(const ims_train_head *h);  /* fusion w (0 if none) */
float ims_train_shrink(const ims_train_head *h);  /* LDA shrinkage (0 if none) */
float ims_train_val_acc(const ims_train_head *h); /* validation classifier accuracy */
float ims_train_whiten(const ims_train_head *h);  /* whitening shrinkage (0 if none) */

/* Map n rows of raw features (n x in_dim) to embeddings out (n x out_dim,
 * unit length unless a row is all zero). */
void ims_train_apply(const ims_train_head *h, const float *x, int n, float *out);
/* Class probabilities, n x n_classes. */
void ims_train_classify(const ims_train_head *h, const float *x, int n, float *probs);

/* Serialise: a self-describing little-endian blob ("IMSHEAD\0", version,
 * sizes, floats, CRC32 trailer; version 2, see head_io.c). *buf is
 * ims_malloc'd (caller ims_free's). Same head -> same bytes. */
int ims_train_save(const ims_train_head *h, void **buf, size_t *len, ims_error *err);
/* Parse a blob from ims_train_save (versions 1 and 2; version 1 has no
 * whitening). IMS_EFORMAT, IMS_EVERSION, IMS_ECORRUPT
 * (with the offset), IMS_ENOMEM. */
int ims_train_load(const void *buf, size_t len, ims_train_head **out, ims_error *err);

/* Write encoder.ism: the backbone (backbone_ism) with this head on the
 * named taps (n_taps == ims_train_n_taps(h), dims must match) and the
 * classifier over class_names (n_classes names). name: the encoder's model
 * name, NULL = "<backbone>-finetuned". `imgsim embed --model out_ism` then
 * gives ims_train_apply's vector (tolerance: see ims_nn_write_encoder) and
 * --classify ims_train_classify's probabilities. Same head -> same bytes.
 * Errors: as ims_nn_write_encoder, IMS_EINVAL for a tap dim mismatch. */
int ims_train_write_encoder(const ims_train_head *h, const char *backbone_ism,
                            const char *const *taps, const char *const *class_names,
                            const char *name, const char *out_ism, ims_error *err);
/* The same from a backbone the caller has open (ims_nn_open; not closed
 * here), without reading the file again; sha256_hex (OUT, NULL: not
 * wanted) gets out_ism's SHA-256 (ims_nn_write_encoder_from). */
struct ims_nn_model;
int ims_train_write_encoder_from(const ims_train_head *h, const struct ims_nn_model *backbone,
                                 const char *const *taps, const char *const *class_names,
                                 const char *name, const char *out_ism, char sha256_hex[65],
                                 ims_error *err);

/* Default taps of the known backbones, chosen by held-out measurement on
 * the sample data (bench/RESULTS-finetune.md): *n_taps names for
 * model_name "mobilenet_v2_mid", "mobilenet_v2" or "inception_v3"; NULL
 * (and *n_taps = 0) for other models, which then use their default tap.
 * Static storage. */
const char *const *ims_train_default_taps(const char *model_name, int *n_taps);

/* ---- the seed baseline (eval's "seed" encoder) ---------------------------
 * One Dense-256 ReLU + softmax head on a single tap: ims_train_fit with
 * kind IMS_TRAIN_MLP, dim 256 and one tap. This fills such options. */
void ims_train_opts_seed(ims_train_opts *opts, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_TRAIN_H */
