/* SPDX-License-Identifier: MIT */
/*
 * embed_all.c — vectors for every accepted item that lacks a current one.
 *
 * Resumable by construction: the work list is "accepted items with no
 * vector stamped with this encoder", and vectors are committed to the
 * catalogue one batch per transaction, so a kill -9 loses at most the batch
 * in flight and never leaves half a vector. Vectors of another encoder are
 * dropped first (never mixed with new ones).
 *
 * Decoding overlaps encoding on the encoder's own threads: batch i+1 is
 * decoded and preprocessed into the second of two input buffers as side
 * work of batch i's run (ims_nn_session_run_side), claimed by whichever
 * thread has no image of batch i left. A separate decoder thread did the
 * same work but, with no spare core, took one from an encoder thread, and
 * the other then waited for it at the end of every batch (issue 7: 78-90%
 * of the encoder's batch speed, ~11% of the cores idle).
 *
 * The catalogue is written (one commit per batch) by the calling thread;
 * image paths are read through a read-only handle of its own. (A writer
 * thread committing batch i while batch i+1 encodes, to hide the WAL's
 * fsync, was measured no faster: bench/collection/RESULTS.md.) Memory is
 * two batches of input tensors plus the id list, whatever the number of
 * images.
 */
#include <stdio.h>
#include <string.h>

#include "coll_int.h"
#include "core/core_int.h"

typedef struct slot {
    float *input; /* batch x H x W x 3 */
    int64_t *ids; /* items in this batch; after compact(), decoded ones only */
    char **paths; /* their files (NULL: lookup failed) */
    int *ok;      /* 1: decoded into input[k] */
    int n;        /* items in the batch (decoded ones after compact()) */
    int64_t next; /* index into todo of the first item after this batch */
} slot;

typedef struct decode_job {
    slot *s;
    const ims_preprocess *pp;
    size_t in_floats;
} decode_job;

/* Side work of a session run: decode item k of the slot into its place.
 * Failures are logged, not fatal (ok[k] stays 0). Any thread. */
static void decode_one(void *ctx, int k)
{
    const decode_job *j = ctx;
    slot *s = j->s;
    ims_image *img = NULL;
    ims_error e;
    ims_error_clear(&e);
    int rc = ims_image_load_file(s->paths[k], NULL, &img, &e);
    if (!rc)
        rc = ims_image_preprocess(img, j->pp, s->input + (size_t)k * j->in_floats, &e);
    if (rc)
        ims_log(IMS_LOG_WARN, "embed-all: item %lld: %s", (long long)s->ids[k], e.msg);
    else
        s->ok[k] = 1;
    ims_image_free(img);
}

static void clear_paths(slot *s)
{
    for (int k = 0; k < s->n; k++)
        ims_free(s->paths[k]), s->paths[k] = NULL;
}

/* Assign the next items of todo (from *pos) to s and look up their files;
 * an item whose path cannot be read is logged and counted as failed. */
static void assign(ims_catalog *cat, slot *s, const int64_t *todo, int64_t n_todo, int batch,
                   int64_t *pos, int64_t *failed)
{
    s->n = 0;
    while (s->n < batch && *pos < n_todo) {
        int64_t id = todo[(*pos)++];
        ims_error e;
        ims_error_clear(&e);
        char *path = NULL;
        if (ims_catalog_image_path(cat, id, &path, &e)) {
            ims_log(IMS_LOG_WARN, "embed-all: item %lld: %s", (long long)id, e.msg);
            (*failed)++;
            continue;
        }
        s->ids[s->n] = id, s->paths[s->n] = path, s->ok[s->n] = 0;
        s->n++;
    }
    s->next = *pos;
}

/* After decoding: keep the decoded images, in order, at the front. */
static void compact(slot *s, size_t in_floats, int64_t *failed)
{
    clear_paths(s);
    int m = 0;
    for (int k = 0; k < s->n; k++) {
        if (!s->ok[k]) {
            (*failed)++;
            continue;
        }
        if (m != k)
            memcpy(s->input + (size_t)m * in_floats, s->input + (size_t)k * in_floats,
                   in_floats * sizeof(float));
        s->ids[m++] = s->ids[k];
    }
    s->n = m;
}

/* Vectors from cached backbone features through the trained head (no image
 * is decoded); removes the items it did from todo (finetune.c). */
int coll_embed_from_cache(const char *dir, ims_catalog *cat, const coll_encoder *e, int64_t *todo,
                          size_t *n_todo, ims_embed_summary *sum, ims_error *err);

int coll_encode_items(const char *dir, ims_catalog *cat, const coll_encoder *e, const char *kind,
                      int finish, const ims_pipe_opts *o, const int64_t *todo, size_t n_todo,
                      const char *label, int64_t *done, int64_t *failed, ims_error *err)
{
    ims_pipe_opts d = {0};
    if (!o)
        o = &d;
    ims_nn_session *ses = NULL;
    ims_catalog *rcat = NULL;
    float *feat = NULL;
    ims_progress *bar = NULL;
    slot slots[2];
    memset(slots, 0, sizeof slots);
    int rc = IMS_OK;
    if (!n_todo)
        goto done;
    int batch = o->batch > 0 ? o->batch : 16;
    if ((rc = ims_catalog_open(dir, IMS_CATALOG_READONLY, &rcat, err)) ||
        (rc = coll_encoder_session(e, batch, o->threads, &ses, err)))
        goto done;
    const ims_preprocess *pp = ims_nn_preprocess(e->model);
    size_t in_floats = (size_t)pp->width * pp->height * 3;
    feat = ims_malloc((size_t)batch * e->dim * sizeof(float));
    int ok = feat != NULL;
    for (int b = 0; b < 2; b++) {
        slots[b].input = ims_aligned_alloc(64, (size_t)batch * in_floats * sizeof(float));
        slots[b].ids = ims_malloc((size_t)batch * sizeof(int64_t));
        slots[b].paths = ims_calloc((size_t)batch, sizeof(char *));
        slots[b].ok = ims_malloc((size_t)batch * sizeof(int));
        ok = ok && slots[b].input && slots[b].ids && slots[b].paths && slots[b].ok;
    }
    if (!ok) {
        rc = ims_error_set(err, IMS_ENOMEM, "%s: out of memory for %d images", label, batch);
        goto done;
    }
    if (o->progress)
        bar = ims_progress_new(label, n_todo);
    int64_t pos = 0;
    decode_job dj = {&slots[0], pp, in_floats};
    ims_nn_side side = {decode_one, &dj, 0};
    /* the first batch is decoded alone (on all threads) */
    assign(rcat, &slots[0], todo, (int64_t)n_todo, batch, &pos, failed);
    side.n = slots[0].n;
    if (side.n && (rc = ims_nn_session_run_side(ses, NULL, 0, NULL, NULL, &side, err)))
        goto done;
    for (int b = 0;; b ^= 1) {
        slot *s = &slots[b], *nx = &slots[b ^ 1];
        compact(s, in_floats, failed);
        int last = s->next >= (int64_t)n_todo;
        /* batch i runs; batch i+1 is decoded after its last image starts */
        nx->n = 0;
        if (!last)
            assign(rcat, nx, todo, (int64_t)n_todo, batch, &pos, failed);
        dj.s = nx, side.n = nx->n;
        if (s->n) {
            rc = ims_nn_session_run_side(ses, s->input, s->n, feat, NULL, &side, err);
            if (!rc) {
                if (finish)
                    coll_encoder_finish(e, feat, s->n);
                rc = ims_catalog_put_vectors(cat, kind, e->stamp, (size_t)s->n, s->ids, feat,
                                             e->dim, err);
            }
            if (rc)
                break;
            *done += s->n;
        } else if (side.n && (rc = ims_nn_session_run_side(ses, NULL, 0, NULL, NULL, &side, err))) {
            break;
        }
        ims_progress_update(bar, (uint64_t)s->next);
        if (last)
            break;
    }
done:
    if (bar)
        ims_progress_finish(bar);
    for (int b = 0; b < 2; b++) {
        if (slots[b].paths)
            clear_paths(&slots[b]);
        ims_aligned_free(slots[b].input);
        ims_free(slots[b].ids);
        ims_free(slots[b].paths);
        ims_free(slots[b].ok);
    }
    ims_free(feat);
    ims_nn_session_free(ses);
    ims_catalog_close(rcat);
    return rc;
}

int ims_coll_embed_all(const char *dir, const ims_pipe_opts *o, ims_embed_summary *sum,
                       ims_error *err)
{
    memset(sum, 0, sizeof *sum);
    double t0 = ims_now();
    ims_catalog *cat = NULL;
    coll_encoder enc = {0};
    int64_t *todo = NULL;
    size_t n_todo = 0;
    int rc;
    if ((rc = ims_catalog_open(dir, 0, &cat, err)) || (rc = coll_encoder_open(dir, cat, &enc, err)))
        goto done;
    memcpy(sum->stamp, enc.stamp, sizeof sum->stamp);
    if ((rc = ims_catalog_drop_stale(cat, COLL_VECTORS, enc.stamp, &sum->stale_dropped, err)) ||
        (rc = ims_catalog_missing_vectors(cat, COLL_VECTORS, enc.stamp, &todo, &n_todo, err)))
        goto done;
    sum->todo = (int64_t)n_todo;
    if (n_todo && (rc = coll_embed_from_cache(dir, cat, &enc, todo, &n_todo, sum, err)))
        goto done;
    rc = coll_encode_items(dir, cat, &enc, COLL_VECTORS, 1, o, todo, n_todo, "embed-all",
                           &sum->done, &sum->failed, err);
done:
    sum->seconds = ims_now() - t0;
    ims_free(todo);
    coll_encoder_close(&enc);
    ims_catalog_close(cat);
    return rc;
}
