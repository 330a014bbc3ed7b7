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
 * Decoding overlaps encoding: a decoder thread reads, decodes and
 * preprocesses batch i+1 into the second of two input buffers while the
 * session runs batch i on every core. Memory is two batches of input
 * tensors plus the id list, whatever the number of images.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "coll_int.h"
#include "core/core_int.h"

typedef struct slot {
    float *input; /* batch x H x W x 3 */
    int64_t *ids; /* items in this batch (decoded ones only) */
    int n;        /* decoded images in the batch */
    int64_t next; /* index into todo of the first item after this batch */
    int full;     /* 1: ready for the encoder */
} slot;

typedef struct feeder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot slots[2];
    const char *dir;
    const int64_t *todo;
    int64_t n_todo;
    int batch;
    const ims_preprocess *pp;
    int stop; /* encoder gave up */
    int64_t failed;
    int rc; /* first fatal decoder error */
    ims_error err;
} feeder;

/* Decode into slot b the items of todo from *pos on, until the batch is
 * full; failures are logged and counted, not fatal. Runs without the lock. */
static void fill_slot(feeder *f, ims_catalog *cat, slot *s, int64_t *pos)
{
    size_t in_floats = (size_t)f->pp->width * f->pp->height * 3;
    s->n = 0;
    while (s->n < f->batch && *pos < f->n_todo) {
        int64_t id = f->todo[(*pos)++];
        char *path = NULL;
        ims_image *img = NULL;
        ims_error e;
        ims_error_clear(&e);
        int rc = ims_catalog_image_path(cat, id, &path, &e);
        if (!rc)
            rc = ims_image_load_file(path, NULL, &img, &e);
        if (!rc)
            rc = ims_image_preprocess(img, f->pp, s->input + (size_t)s->n * in_floats, &e);
        if (rc) {
            ims_log(IMS_LOG_WARN, "embed-all: item %lld: %s", (long long)id, e.msg);
            f->failed++;
        } else {
            s->ids[s->n++] = id;
        }
        ims_image_free(img);
        ims_free(path);
    }
    s->next = *pos;
}

static void *decoder(void *arg)
{
    feeder *f = arg;
    ims_catalog *cat = NULL;
    int rc = ims_catalog_open(f->dir, IMS_CATALOG_READONLY, &cat, &f->err);
    int64_t pos = 0;
    for (int b = 0;; b ^= 1) {
        slot *s = &f->slots[b];
        pthread_mutex_lock(&f->mu);
        while (s->full && !f->stop)
            pthread_cond_wait(&f->cv, &f->mu);
        int stop = f->stop;
        pthread_mutex_unlock(&f->mu);
        if (stop)
            break;
        if (rc) { /* cannot read the catalogue: hand over an empty final slot */
            s->n = 0, s->next = f->n_todo;
        } else {
            fill_slot(f, cat, s, &pos);
        }
        pthread_mutex_lock(&f->mu);
        if (rc && !f->rc)
            f->rc = rc;
        s->full = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        if (s->next >= f->n_todo)
            break;
    }
    ims_catalog_close(cat);
    return NULL;
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
    float *feat = NULL;
    ims_progress *bar = NULL;
    feeder f;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    pthread_t th;
    int started = 0, rc = IMS_OK;
    if (!n_todo)
        goto done;
    int batch = o->batch > 0 ? o->batch : 16;
    if ((rc = coll_encoder_session(e, batch, o->threads, &ses, err)))
        goto done;
    const ims_preprocess *pp = ims_nn_preprocess(e->model);
    size_t in_floats = (size_t)pp->width * pp->height * 3;
    feat = ims_malloc((size_t)batch * e->dim * sizeof(float));
    f.dir = dir, f.todo = todo, f.n_todo = (int64_t)n_todo, f.batch = batch, f.pp = pp;
    for (int b = 0; b < 2; b++) {
        f.slots[b].input = ims_aligned_alloc(64, (size_t)batch * in_floats * sizeof(float));
        f.slots[b].ids = ims_malloc((size_t)batch * sizeof(int64_t));
        if (!f.slots[b].input || !f.slots[b].ids)
            feat = (ims_free(feat), NULL);
    }
    if (!feat) {
        rc = ims_error_set(err, IMS_ENOMEM, "%s: out of memory for %d images", label, batch);
        goto done;
    }
    if (pthread_create(&th, NULL, decoder, &f)) {
        rc = ims_error_set(err, IMS_ENOMEM, "%s: cannot start the decoder thread", label);
        goto done;
    }
    started = 1;
    if (o->progress)
        bar = ims_progress_new(label, n_todo);
    for (int b = 0;; b ^= 1) {
        slot *s = &f.slots[b];
        pthread_mutex_lock(&f.mu);
        while (!s->full)
            pthread_cond_wait(&f.cv, &f.mu);
        pthread_mutex_unlock(&f.mu);
        if (f.rc) {
            rc = f.rc;
            *err = f.err;
            break;
        }
        if (s->n) {
            rc = ims_nn_session_run(ses, s->input, s->n, feat, NULL, err);
            if (!rc) {
                if (finish)
                    coll_encoder_finish(e, feat, s->n);
                rc = ims_catalog_put_vectors(cat, kind, e->stamp, (size_t)s->n, s->ids, feat,
                                             e->dim, err);
            }
            if (rc)
                break;
            *done += s->n;
        }
        int last = s->next >= (int64_t)n_todo;
        ims_progress_update(bar, (uint64_t)s->next);
        pthread_mutex_lock(&f.mu);
        s->full = 0;
        pthread_cond_broadcast(&f.cv);
        pthread_mutex_unlock(&f.mu);
        if (last)
            break;
    }
done:
    if (started) {
        pthread_mutex_lock(&f.mu);
        f.stop = 1;
        pthread_cond_broadcast(&f.cv);
        pthread_mutex_unlock(&f.mu);
        pthread_join(th, NULL);
        *failed += f.failed;
    }
    if (bar)
        ims_progress_finish(bar);
    for (int b = 0; b < 2; b++) {
        ims_aligned_free(f.slots[b].input);
        ims_free(f.slots[b].ids);
    }
    ims_free(feat);
    ims_nn_session_free(ses);
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cv);
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
