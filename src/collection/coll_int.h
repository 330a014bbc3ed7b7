/* SPDX-License-Identifier: MIT */
/*
 * coll_int.h — internals of the collection module (never installed).
 *
 * A collection's encoder is always <dir>/encoder.ism plus the list of taps
 * stored in the catalogue's settings ("taps", one per line). The vector of
 * an image is: run encoder.ism with those taps, L2-normalise each tap's
 * pooled part, concatenate. For a raw collection encoder.ism is the
 * backbone itself (a hard link to backbone.ism); a fine-tuned one is the
 * backbone plus its trained head, tapped at the head's output. The
 * encoder's identity (the stamp on every vector) is the SHA-256 of
 * encoder.ism's bytes and the tap list, so re-fine-tuning or changing the
 * backbone makes every vector stale.
 */
#ifndef IMS_COLL_INT_H
#define IMS_COLL_INT_H

#include "imgsim/catalog.h"
#include "imgsim/collection.h"
#include "imgsim/image.h"
#include "imgsim/imgsim.h"
#include "imgsim/index.h"
#include "imgsim/nn.h"

#define COLL_MAX_TAPS 8
#define COLL_VECTORS "vectors"
#define COLL_FEATURES "features"

typedef struct coll_encoder {
    ims_nn_model *model;
    char *taps[COLL_MAX_TAPS];
    int n_taps;
    int tap_dim[COLL_MAX_TAPS];
    int dim;
    char stamp[65];
} coll_encoder;

/* "<dir>/<name>" into a new string (NULL on ENOMEM). */
char *coll_path(const char *dir, const char *name);
/* SHA-256 of a file's bytes, hex. */
int coll_sha256_file(const char *path, char hex[65], ims_error *err);
/* The same for a model file, cached in the catalogue's settings under
 * "<key>:sha256" with the file's device, inode, size, mtime and ctime (a
 * file replaced or rewritten is hashed again). key: the collection's file
 * name ("encoder.ism") or, for a model outside it, its path. */
int coll_model_sha(ims_catalog *cat, const char *path, const char *key, char hex[65],
                   ims_error *err);
/* Record hex as the SHA-256 of path now (the caller knows the bytes: a copy). */
void coll_model_sha_record(ims_catalog *cat, const char *path, const char *key, const char hex[65]);

/* Open <dir>/encoder.ism with the catalogue's taps ("taps"). */
int coll_encoder_open(const char *dir, ims_catalog *cat, coll_encoder *e, ims_error *err);
/* Open <dir>/backbone.ism with the taps the features cache uses. */
int coll_backbone_open(const char *dir, ims_catalog *cat, coll_encoder *e, ims_error *err);
/* Open a model file with taps given one per line. */
int coll_encoder_open_at(const char *path, const char *taps, coll_encoder *e, ims_error *err);
/* The same for a model file already open (model: adopted, closed with e or
 * on failure) whose SHA-256 the caller knows (file_sha). */
int coll_encoder_adopt(ims_nn_model *model, const char *taps, const char file_sha[65],
                       coll_encoder *e, ims_error *err);
void coll_encoder_close(coll_encoder *e);
int coll_encoder_session(const coll_encoder *e, int max_batch, int threads, ims_nn_session **s,
                         ims_error *err);
/* Per-tap L2 normalisation of n vectors in place (a zero part stays zero). */
void coll_encoder_finish(const coll_encoder *e, float *v, int n);

/* Encode the images of items todo[0..n) with e (batched, decoding the
 * next batch on the session's threads, committing per batch) and store the result under
 * (kind, e->stamp); `finish` applies the per-tap normalisation (vectors)
 * or not (raw cached features). Failed decodes are logged and counted. */
int coll_encode_items(const char *dir, ims_catalog *cat, const coll_encoder *e, const char *kind,
                      int finish, const ims_pipe_opts *o, const int64_t *todo, size_t n_todo,
                      const char *label, int64_t *done, int64_t *failed, ims_error *err);

/* Split "a,b,c" (or "a\nb") into at most COLL_MAX_TAPS new strings. */
int coll_split_taps(const char *list, char sep, char **taps, int *n, ims_error *err);

#endif /* IMS_COLL_INT_H */
