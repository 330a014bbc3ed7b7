/* SPDX-License-Identifier: MIT */
/*
 * nn.h — the CNN inference engine: models, taps, sessions, import.
 *
 * A model (ims_nn_model) is an immutable graph plus weights, loaded from a
 * native .ism file (weights are mmap'ed). It can be shared by any number of
 * threads. A session (ims_nn_session) owns the scratch memory for running a
 * model with a chosen set of output taps, a maximum batch size and a thread
 * count; one session is used by one thread at a time.
 *
 * Taps are named by the model's own layer (layers-model) or node
 * (graph-model) names. A spatial tap [H,W,C] is global-average-pooled to C
 * values; a flat tap is taken as is. Several taps are concatenated in the
 * order given. Names of layers that were folded away at import (e.g. a Conv2D
 * whose BatchNormalization was folded into it) cannot be tapped: the error
 * names the layer that now carries their output.
 *
 * Threads (tests/integration/test_determinism.c checks the first three):
 *  - One model, many sessions: any number of sessions of one model may be
 *    created, run and freed at once on different threads, with different
 *    thread counts and batch sizes; the model is never written after
 *    ims_nn_open. ims_nn_close it only after its last session is freed.
 *  - One session, one thread at a time: ims_nn_session_run and _free on a
 *    session must not overlap (its arenas and pool are its own; calls from
 *    different threads need the caller's own lock).
 *  - Same bytes: features and probabilities of an image depend only on the
 *    image, model, taps, kernel level and build, never on the batch size,
 *    the thread count or other sessions (every parallel split is fixed by
 *    the shapes; each thread has its own scratch).
 *  - Process-global state is set once, never per call: the first session
 *    sets OpenBLAS to one thread (openblas_set_num_threads(1); the engine
 *    splits products over its own pool), and the environment switches
 *    IMS_NN_GEMM, IMS_NN_FUSE and IMS_NN_PROFILE are read then, as ims_init
 *    reads IMS_SIMD and IMS_LOG; later changes to them have no effect.
 *    OpenBLAS is loaded at run time (ims_nn_blas_core); an application
 *    that links OpenBLAS itself shares that copy, and its one thread.
 */
#ifndef IMGSIM_NN_H
#define IMGSIM_NN_H

#include <stddef.h>
#include <stdio.h>

#include "imgsim/error.h"
#include "imgsim/image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ims_nn_model ims_nn_model;
typedef struct ims_nn_session ims_nn_session;

/* Set the process-global OpenBLAS state now (one thread, its idle pool
 * stopped) instead of at the first session: OpenBLAS's idle threads spin
 * for about 0.1 CPU-second after it loads. Programs call it at start-up;
 * idempotent and thread-safe. */
void ims_nn_init(void);

/* The OpenBLAS kernel set in use ("SkylakeX", "Haswell", ...; loads
 * OpenBLAS if needed). imgsim picks it from its own CPU detection unless
 * OPENBLAS_CORETYPE is set: OpenBLAS 0.3.21 falls back to SSE3 kernels on
 * CPUs newer than itself. */
const char *ims_nn_blas_core(void);

/* ---- models ------------------------------------------------------------- */

/* Open a .ism file. Errors: IMS_EIO, IMS_EFORMAT (not an .ism file),
 * IMS_EVERSION (newer format), IMS_ECORRUPT (truncated, bad checksum or
 * inconsistent graph; the message gives the offset). Close with
 * ims_nn_close(). */
int ims_nn_open(const char *path, ims_nn_model **out, ims_error *err);
void ims_nn_close(ims_nn_model *m);

const char *ims_nn_name(const ims_nn_model *m);               /* "mobilenet_v2" */
const ims_preprocess *ims_nn_preprocess(const ims_nn_model *m);
/* Default feature tap: the pooled features that feed the classifier. */
const char *ims_nn_default_tap(const ims_nn_model *m);
int ims_nn_n_classes(const ims_nn_model *m);                  /* 0 if none */
const char *ims_nn_class_name(const ims_nn_model *m, int i);
/* Pooled dimension of a tap; IMS_ENOTFOUND (message says why) if not tappable. */
int ims_nn_tap_dim(const ims_nn_model *m, const char *tap, int *dim, ims_error *err);

/* Human-readable summary: layers with output shapes, parameters, FLOPs,
 * input recipe, default taps, classes. */
int ims_nn_print_info(const ims_nn_model *m, FILE *f);
/* The same as one JSON object (model, input recipe, classes, default tap,
 * totals, layers with shapes/params/FLOPs/inputs, aliases). */
int ims_nn_print_info_json(const ims_nn_model *m, FILE *f);
/* Totals for the whole graph (multiply-adds counted as 2 FLOPs). */
void ims_nn_stats(const ims_nn_model *m, size_t *n_params, double *flops_per_image);

/* ---- sessions ----------------------------------------------------------- */

typedef struct ims_nn_session_opts {
    const char *const *taps; /* tap names, NULL = { default tap } */
    int n_taps;
    int want_probs;          /* also compute the classifier's probabilities */
    int max_batch;           /* images per run, >= 1 (0 = 1) */
    int n_threads;           /* 0 = all CPUs */
} ims_nn_session_opts;

int ims_nn_session_new(const ims_nn_model *m, const ims_nn_session_opts *opts,
                       ims_nn_session **out, ims_error *err);
void ims_nn_session_free(ims_nn_session *s);
int ims_nn_session_dim(const ims_nn_session *s);       /* concatenated feature dim */

/* Run n (1..max_batch) preprocessed images: input is n x H x W x 3 floats
 * (NHWC). features (n x dim) and probs (n x n_classes, only with want_probs)
 * may be NULL when not wanted. */
int ims_nn_session_run(ims_nn_session *s, const float *input, int n, float *features,
                       float *probs, ims_error *err);

/* Work for the session's threads besides a batch (e.g. decoding the next
 * batch's input): fn(ctx, i) once for every i in [0, n), on any of the
 * session's threads (the caller's included), concurrently and in any
 * order; fn must not use the session. */
typedef struct ims_nn_side {
    void (*fn)(void *ctx, int i);
    void *ctx;
    int n;
} ims_nn_side;

/* ims_nn_session_run plus side work (side may be NULL; with side, n may be
 * 0 and input NULL). The side items are claimed once the last image of
 * the batch's image-parallel part has been started (any remainder of fewer
 * images than threads runs after them), so they fill the time a thread
 * would otherwise wait for the others to finish their images: on a machine with no spare core this hides the
 * side work better than a concurrent thread, which takes a core from one
 * of the session's threads and leaves the others waiting at the end of
 * the batch. Features and probabilities are the same bits as without. */
int ims_nn_session_run_side(ims_nn_session *s, const float *input, int n, float *features,
                            float *probs, const ims_nn_side *side, ims_error *err);

/* Convenience: decode-free path from a decoded image (preprocess + run 1). */
int ims_nn_session_run_image(ims_nn_session *s, const ims_image *img, float *features,
                             float *probs, ims_error *err);

/* ---- encoders: a backbone plus a trained head, as one model file -------
 * The head sees the backbone taps pooled (as sessions pool them) and
 * computes, per image (d = sum of tap dims):
 *   u     = concat_t(tap_t / |tap_t|) * in_scale                  (d)
 *   p     = act(u . proj + proj_bias)     proj: d x k, [in][out]  (k)
 *   r     = raw_proj ? unit(u . raw_proj + raw_bias) : u  raw_proj: d x d (d)
 *   emb   = fuse ? unit([raw_w * r, proj_w * unit(p)]) : unit(p)
 *   probs = softmax(v . cls + cls_bias),  v = cls_on_proj ? p : u
 * (unit(x) = x / |x|, 0 for x = 0). The encoder's default tap is emb and its
 * classifier is probs, so `imgsim embed --model encoder.ism` gives emb and
 * `--classify` the probabilities over class_names. */
typedef struct ims_nn_head {
    const char *name;        /* model name; NULL = "<backbone>-finetuned" */
    const char *const *taps; /* backbone tap names, in input order */
    int n_taps;
    float in_scale;
    int k;                         /* projection units */
    const float *proj, *proj_bias; /* d x k, k */
    int proj_relu;                 /* ReLU after the projection */
    int fuse;                      /* see above */
    float raw_w, proj_w;
    const float *raw_proj, *raw_bias; /* fuse: d x d [in][out], d; NULL = r is u */
    int n_classes;                    /* 0 = no classifier */
    const float *cls, *cls_bias;      /* (cls_on_proj ? k : d) x n_classes, n_classes */
    int cls_on_proj;
    const char *const *class_names; /* n_classes names */
} ims_nn_head;

/* Write out_ism (atomically): the backbone's graph and weights, unchanged,
 * plus the head's nodes (named "encoder/..."). Same inputs -> same bytes.
 * The file needs a v2 reader (op L2NORM). Errors: those of ims_nn_open on
 * the backbone, IMS_ENOTFOUND (a tap), IMS_EINVAL (sizes that do not match
 * the taps), IMS_EIO, IMS_ENOMEM.
 * Tolerance: the head's dense layers run through the engine's GEMM, so emb
 * agrees with a plain loop (ims_train_apply) to ~1e-6 per component, not
 * bit for bit; everything else (pooling, normalisation) rounds alike. */
int ims_nn_write_encoder(const char *backbone_ism, const ims_nn_head *head, const char *out_ism,
                         ims_error *err);
/* The same from a backbone the caller has open (and keeps: it is not
 * closed), so a caller that has it open does not read and check the file
 * again. sha256_hex (OUT, NULL: not wanted): the SHA-256 of out_ism's
 * bytes, hashed as they are written. */
int ims_nn_write_encoder_from(const ims_nn_model *backbone, const ims_nn_head *head,
                              const char *out_ism, char sha256_hex[65], ims_error *err);

/* ---- import ------------------------------------------------------------- */

typedef struct ims_nn_import_opts {
    const char *name;           /* model name; NULL = from the file */
    const char *default_tap;    /* NULL = the pooled input of the classifier */
    const ims_preprocess *pp;   /* NULL = nsfwjs recipe at the model's input size */
    const char *const *classes; /* class names, NULL = "class0".. */
    int n_classes;
} ims_nn_import_opts;

/* Import a TF.js layers-model or graph-model (model.json beside its weight
 * shards) and write a .ism file atomically. Unsupported layers, ops or
 * options are errors naming the layer and the option. */
int ims_nn_import_tfjs(const char *model_json, const char *out_ism,
                       const ims_nn_import_opts *opts, ims_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_NN_H */
