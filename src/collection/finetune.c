/* SPDX-License-Identifier: MIT */
/*
 * finetune.c — training the collection's head on cached backbone features,
 * and vectorising from that cache (no second backbone pass).
 *
 * The backbone runs once per item and backbone: its raw pooled taps are
 * cached in the catalogue (kind "features", stamped with the backbone's
 * identity), so re-training, eval and embed-all after a fine-tune never
 * decode an image again. The trained head is written twice: inside
 * encoder.ism (backbone + taps + head, a model file like any other, for
 * `imgsim embed --model` and for new images) and as head.bin (the same
 * head, to map cached features without the backbone). Settings record
 * which encoder the head belongs to, so a stale head.bin is never used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coll_int.h"
#include "core/core_int.h"
#include "imgsim/train.h"

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Labels of items (index into the sorted category names). Ascending ids
 * (as ims_catalog_accepted_ids gives them): one query per category, not
 * one per item; otherwise item by item. */
int coll_labels(ims_catalog *cat, const int64_t *ids, size_t n, int *labels, char ***names,
                size_t *n_names, ims_error *err)
{
    int64_t *counts = NULL;
    int rc = ims_catalog_categories(cat, names, &counts, n_names, err);
    ims_free(counts);
    int sorted = 1;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = ids[i - 1] < ids[i];
    for (size_t i = 0; i < n; i++)
        labels[i] = -1;
    for (size_t c = 0; !rc && sorted && c < *n_names; c++) {
        int64_t *in = NULL;
        size_t m = 0;
        if ((rc = ims_catalog_ids_in_category(cat, (*names)[c], &in, &m, err)))
            break;
        for (size_t j = 0; j < m; j++) {
            const int64_t *at = bsearch(&in[j], ids, n, sizeof *ids, cmp_id);
            if (at)
                labels[at - ids] = (int)c;
        }
        ims_free(in);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        if (labels[i] >= 0)
            continue;
        ims_item it; /* not sorted, or not found in its category's list */
        if ((rc = ims_catalog_get(cat, ids[i], &it, err)))
            break;
        for (size_t c = 0; c < *n_names; c++)
            if (!strcmp((*names)[c], it.category))
                labels[i] = (int)c;
        ims_item_clear(&it);
        if (labels[i] < 0)
            rc = ims_error_set(err, IMS_ECORRUPT, "item %lld: category not listed",
                               (long long)ids[i]);
    }
    return rc;
}

/* Cached raw backbone features of every accepted item (computing missing
 * ones). *x is n x bb->dim, in the order of *ids. */
int coll_features(const char *dir, ims_catalog *cat, const coll_encoder *bb, const ims_pipe_opts *o,
                  int64_t **ids, size_t *n, float **x, int64_t *computed, ims_error *err)
{
    int64_t *missing = NULL, failed = 0;
    size_t n_missing = 0;
    *ids = NULL, *x = NULL, *n = 0;
    int rc = ims_catalog_drop_stale(cat, COLL_FEATURES, bb->stamp, NULL, err);
    if (!rc)
        rc = ims_catalog_missing_vectors(cat, COLL_FEATURES, bb->stamp, &missing, &n_missing, err);
    if (!rc)
        rc = coll_encode_items(dir, cat, bb, COLL_FEATURES, 0, o, missing, n_missing,
                               "backbone features", computed, &failed, err);
    ims_free(missing);
    if (!rc && failed)
        rc = ims_error_set(err, IMS_EIO, "%lld items could not be decoded (see warnings)",
                           (long long)failed);
    if (!rc)
        rc = ims_catalog_accepted_ids(cat, ids, n, err);
    size_t bytes;
    if (!rc && (!ims_size_mul3(*n ? *n : 1, (size_t)bb->dim, sizeof(float), &bytes) ||
                !(*x = ims_malloc(bytes))))
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory for %zu feature vectors", *n);
    for (size_t i = 0; !rc && i < *n; i += 1024) {
        size_t m = *n - i < 1024 ? *n - i : 1024;
        rc = ims_catalog_get_vectors(cat, COLL_FEATURES, bb->stamp, m, *ids + i,
                                     *x + i * (size_t)bb->dim, bb->dim, err);
    }
    if (rc) {
        ims_free(*ids);
        ims_free(*x);
        *ids = NULL, *x = NULL, *n = 0;
    }
    return rc;
}

/* One line per step on a terminal (redrawn in place); elsewhere only
 * every tenth step and the last, each on its own line. */
static int progress_cb(void *ud, int epoch, int n_epochs, float loss, float train_acc,
                       float val_acc)
{
    int tty = *(int *)ud;
    if (!tty && (epoch + 1) % 10 && epoch + 1 != n_epochs)
        return 0;
    fprintf(stderr, "%sfinetune: %d/%d  loss %.4f  train acc %.3f  val acc %.3f%s", tty ? "\r" : "",
            epoch + 1, n_epochs, loss, train_acc, val_acc, tty ? "   " : "\n");
    return 0;
}

static int write_blob(FILE *f, void *ud)
{
    const struct {
        const void *p;
        size_t n;
    } *b = ud;
    return fwrite(b->p, 1, b->n, f) == b->n ? 0 : -1;
}

/* A digest of everything a fine-tune depends on: the backbone's bytes,
 * the options, and every accepted item with its category. model: the
 * model file, or NULL for the collection's backbone.ism (bbp), whose
 * hash is cached under "backbone.ism" (keep_sha keeps it current). */
static int finetune_digest(const char *dir, const char *model, const char *bbp,
                           const ims_finetune_opts *o, char hex[65], ims_error *err)
{
    ims_catalog *cat = NULL;
    int64_t *ids = NULL;
    int *labels = NULL;
    char **names = NULL;
    size_t n = 0, n_names = 0;
    char mhex[65], buf[512];
    int rc = ims_catalog_open(dir, IMS_CATALOG_CREATE, &cat, err);
    if (!rc)
        rc = coll_model_sha(cat, model ? model : bbp, model ? model : "backbone.ism", mhex, err);
    if (!rc)
        rc = ims_catalog_accepted_ids(cat, &ids, &n, err);
    if (!rc && !(labels = ims_malloc((n ? n : 1) * sizeof *labels)))
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
    if (!rc)
        rc = coll_labels(cat, ids, n, labels, &names, &n_names, err);
    if (rc)
        goto done;
    ims__sha256_ctx s;
    ims__sha256_init(&s);
    int len = snprintf(buf, sizeof buf, "%s|%s|%d|%d|%llu|w%d|", mhex, o->taps ? o->taps : "",
                       o->dim, o->epochs, (unsigned long long)o->seed, !o->no_whiten);
    ims__sha256_update(&s, buf, (size_t)len);
    for (size_t i = 0; i < n; i++) {
        const char *category = names[labels[i]];
        len = snprintf(buf, sizeof buf, "%lld:", (long long)ids[i]);
        ims__sha256_update(&s, buf, (size_t)len);
        ims__sha256_update(&s, category, strlen(category) + 1);
    }
    ims__sha256_final_hex(&s, hex);
done:
    if (names)
        ims_catalog_free_categories(names, NULL, n_names);
    ims_free(labels);
    ims_free(ids);
    ims_catalog_close(cat);
    return rc;
}

/* 1 when the collection's encoder came from a fine-tune with this digest. */
static int up_to_date(const char *dir, const char *digest)
{
    ims_catalog *cat = NULL;
    char *have = NULL, *mode = NULL, *for_stamp = NULL;
    coll_encoder e = {0};
    int ok = 0;
    if (ims_catalog_open(dir, IMS_CATALOG_READONLY, &cat, NULL))
        return 0;
    if (!ims_catalog_get_meta(cat, "finetune_digest", &have, NULL) && have &&
        !strcmp(have, digest) && !ims_catalog_get_meta(cat, "head", &mode, NULL) && mode &&
        !coll_encoder_open(dir, cat, &e, NULL)) {
        if (!strcmp(mode, "none"))
            ok = 1;
        else if (!ims_catalog_get_meta(cat, "head_encoder_stamp", &for_stamp, NULL) && for_stamp &&
                 !strcmp(for_stamp, e.stamp))
            ok = 1;
    }
    coll_encoder_close(&e);
    ims_free(have);
    ims_free(mode);
    ims_free(for_stamp);
    ims_catalog_close(cat);
    return ok;
}

/* Replacing encoder.ism drops a link of the backbone's inode (a raw
 * encoder.ism is a hard link of backbone.ism, and of the model file it
 * came from), which changes the inode's ctime and so the signature its
 * cached SHA-256 was recorded with: embed-all would hash the 17-90 MB
 * backbone again. Its bytes are the same when inode, size and mtime are:
 * the hash is recorded anew for it (and for the model file, same inode). */
static void keep_sha(ims_catalog *cat, const char *bbp, const struct stat *was, const char hex[65],
                     const char *model)
{
    struct stat now, m;
    if (stat(bbp, &now) || now.st_dev != was->st_dev || now.st_ino != was->st_ino ||
        now.st_size != was->st_size || now.st_mtim.tv_sec != was->st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != was->st_mtim.tv_nsec)
        return;
    coll_model_sha_record(cat, bbp, "backbone.ism", hex);
    if (model && !stat(model, &m) && m.st_dev == now.st_dev && m.st_ino == now.st_ino)
        coll_model_sha_record(cat, model, model, hex);
}

int ims_coll_finetune(const char *dir, const ims_finetune_opts *o, ims_finetune_summary *sum,
                      ims_error *err)
{
    ims_finetune_opts d = {0};
    if (!o)
        o = &d;
    memset(sum, 0, sizeof *sum);
    double t0 = ims_now();
    ims_catalog *cat = NULL;
    coll_encoder bb = {0};
    int64_t *ids = NULL;
    size_t n = 0, n_names = 0;
    float *x = NULL;
    int *labels = NULL;
    char **names = NULL;
    ims_train_head *head = NULL;
    ims_nn_model *em = NULL; /* the written encoder.ism */
    void *blob = NULL;
    size_t blob_len = 0;
    char *bbp = coll_path(dir, "backbone.ism"), *encp = coll_path(dir, "encoder.ism");
    char *headp = coll_path(dir, "head.bin");
    int rc;
    if (!bbp || !encp || !headp) {
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
        goto done;
    }
    char digest[65];
    if ((rc = finetune_digest(dir, o->model, bbp, o, digest, err)))
        goto done;
    if (up_to_date(dir, digest)) {
        snprintf(sum->message, sizeof sum->message,
                 "encoder up to date (same backbone, "
                 "options and items)");
        sum->trained = -1;
        goto done;
    }
    /* 1. the raw backbone becomes the encoder until a head is trained */
    if ((rc = ims_coll_set_backbone(dir, o->model ? o->model : bbp, o->taps, err)))
        goto done;
    if ((rc = ims_catalog_open(dir, 0, &cat, err)) || (rc = coll_backbone_open(dir, cat, &bb, err)))
        goto done;
    /* 2. backbone features, once per item */
    ims_pipe_opts po = {.threads = o->threads, .batch = o->batch, .progress = o->progress};
    if ((rc = coll_features(dir, cat, &bb, &po, &ids, &n, &x, &sum->features_computed, err)))
        goto done;
    sum->items = (int64_t)n;
    if (!(labels = ims_malloc((n ? n : 1) * sizeof *labels))) {
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = coll_labels(cat, ids, n, labels, &names, &n_names, err)))
        goto done;
    sum->n_classes = (int)n_names;
    /* 3. train */
    ims_train_opts to;
    ims_train_opts_default(&to);
    if (o->dim > 0)
        to.dim = o->dim;
    if (o->epochs > 0)
        to.epochs = o->epochs;
    to.seed = o->seed ? o->seed : 1;
    to.threads = o->threads;
    if (o->no_whiten)
        to.whiten = 0;
    int tty = isatty(2);
    if (o->progress) {
        to.progress = progress_cb;
        to.progress_ud = &tty;
    }
    ims_error terr;
    ims_error_clear(&terr);
    rc = ims_train_fit(x, (int)n, bb.dim, bb.tap_dim, bb.n_taps, labels, (int)n_names, &to, &head,
                       &terr);
    if (o->progress && tty)
        fputc('\n', stderr);
    if (rc == IMS_ESTATE) { /* nothing to train: keep the raw taps */
        snprintf(sum->message, sizeof sum->message, "nothing to train (%.180s): raw taps",
                 terr.msg);
        rc = ims_catalog_set_meta(cat, "finetune_digest", digest, err);
        goto done;
    }
    if (rc) {
        *err = terr;
        goto done;
    }
    /* 4. encoder.ism = backbone + taps + head; head.bin for cached features */
    struct stat bst;
    char bhex[65];
    int bknown = !stat(bbp, &bst) && !coll_model_sha(cat, bbp, "backbone.ism", bhex, NULL);
    /* from the backbone open since step 1 (not read again), hashed as it
     * is written; opened once (checks it, names the default tap) and that
     * handle becomes the collection's encoder below */
    char ehex[65];
    if ((rc = ims_train_write_encoder_from(head, bb.model, (const char *const *)bb.taps,
                                           (const char *const *)names, NULL, encp, ehex, err)))
        goto done;
    if ((rc = ims_nn_open(encp, &em, err)))
        goto done;
    char out_tap[1024];
    snprintf(out_tap, sizeof out_tap, "%s", ims_nn_default_tap(em));
    if ((rc = ims_train_save(head, &blob, &blob_len, err)))
        goto done;
    struct {
        const void *p;
        size_t n;
    } b = {blob, blob_len};
    if ((rc = ims__write_atomic(headp, write_blob, &b, err)))
        goto done;
    coll_encoder enc;
    /* the settings in one transaction: one commit (a WAL sync) for all */
    if ((rc = ims_catalog_begin(cat, err)))
        goto done;
    if (bknown)
        keep_sha(cat, bbp, &bst, bhex, o->model);
    coll_model_sha_record(cat, encp, "encoder.ism", ehex);
    rc = ims_catalog_set_meta(cat, "taps", out_tap, err);
    if (!rc) {
        rc = coll_encoder_adopt(em, out_tap, ehex, &enc, err);
        em = NULL; /* enc's now (or closed) */
    }
    if (rc) {
        ims_catalog_rollback(cat);
        goto done;
    }
    rc = ims_catalog_set_meta(cat, "head_encoder_stamp", enc.stamp, err);
    if (!rc)
        rc = ims_catalog_set_meta(cat, "head", "trained", err);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)to.seed);
    if (!rc)
        rc = ims_catalog_set_meta(cat, "finetune_seed", seed, err);
    if (!rc) /* eval trains its held-out head the same way */
        rc = ims_catalog_set_meta(cat, "finetune_whiten", o->no_whiten ? "0" : "1", err);
    if (!rc)
        rc = ims_catalog_set_meta(cat, "finetune_digest", digest, err);
    if (!rc)
        rc = ims_catalog_commit(cat, err);
    else
        ims_catalog_rollback(cat);
    coll_encoder_close(&enc);
    if (rc)
        goto done;
    sum->trained = 1;
    sum->val_accuracy = ims_train_val_acc(head);
    if (ims_train_whiten(head) > 0)
        snprintf(sum->message, sizeof sum->message,
                 "trained (fusion weight %.2f, shrinkage %.2f, raw part whitened, a %.2f)",
                 ims_train_weight(head), ims_train_shrink(head), ims_train_whiten(head));
    else
        snprintf(sum->message, sizeof sum->message,
                 "trained (fusion weight %.2f, shrinkage %.2f, raw part not whitened)",
                 ims_train_weight(head), ims_train_shrink(head));
done:
    sum->seconds = ims_now() - t0;
    ims_nn_close(em);
    ims_free(blob);
    ims_train_head_free(head);
    if (names)
        ims_catalog_free_categories(names, NULL, n_names);
    ims_free(labels);
    ims_free(x);
    ims_free(ids);
    coll_encoder_close(&bb);
    ims_catalog_close(cat);
    ims_free(bbp);
    ims_free(encp);
    ims_free(headp);
    return rc;
}

int coll_embed_from_cache(const char *dir, ims_catalog *cat, const coll_encoder *e, int64_t *todo,
                          size_t *n_todo, ims_embed_summary *sum, ims_error *err)
{
    char *mode = NULL, *for_stamp = NULL, *hp = NULL;
    ims_train_head *head = NULL;
    coll_encoder bb = {0};
    int64_t *nofeat = NULL;
    size_t n_nofeat = 0;
    float *x = NULL, *y = NULL;
    void *blob = NULL;
    int rc = ims_catalog_get_meta(cat, "head", &mode, err);
    if (!rc)
        rc = ims_catalog_get_meta(cat, "head_encoder_stamp", &for_stamp, err);
    if (rc || !mode || strcmp(mode, "trained") || !for_stamp || strcmp(for_stamp, e->stamp))
        goto done; /* no head for this encoder: vectors come from images */
    if (!(hp = coll_path(dir, "head.bin"))) {
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
        goto done;
    }
    FILE *f = fopen(hp, "rb");
    long len = -1;
    if (f && !fseek(f, 0, SEEK_END) && (len = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET) &&
        (blob = ims_malloc((size_t)len)) && fread(blob, 1, (size_t)len, f) == (size_t)len) {
        rc = ims_train_load(blob, (size_t)len, &head, err);
    } else {
        rc = IMS_OK; /* unreadable head.bin: fall back to images */
    }
    if (f)
        fclose(f);
    if (rc || !head)
        goto done;
    if ((rc = coll_backbone_open(dir, cat, &bb, err)))
        goto done;
    if (ims_train_in_dim(head) != bb.dim || ims_train_out_dim(head) != e->dim)
        goto done;
    if ((rc = ims_catalog_missing_vectors(cat, COLL_FEATURES, bb.stamp, &nofeat, &n_nofeat, err)))
        goto done;
    /* todo and nofeat are both ascending: split todo into cached / not */
    size_t keep = 0, j = 0, m = 0;
    int64_t chunk[256];
    x = ims_malloc(256 * (size_t)bb.dim * sizeof(float));
    y = ims_malloc(256 * (size_t)e->dim * sizeof(float));
    if (!x || !y) {
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i <= *n_todo; i++) {
        int flush = i == *n_todo || m == 256;
        if (flush && m) {
            if ((rc = ims_catalog_get_vectors(cat, COLL_FEATURES, bb.stamp, m, chunk, x, bb.dim,
                                              err)))
                goto done;
            ims_train_apply(head, x, (int)m, y);
            coll_encoder_finish(e, y, (int)m);
            if ((rc = ims_catalog_put_vectors(cat, COLL_VECTORS, e->stamp, m, chunk, y, e->dim,
                                              err)))
                goto done;
            sum->done += (int64_t)m;
            sum->from_cache += (int64_t)m;
            m = 0;
        }
        if (i == *n_todo)
            break;
        while (j < n_nofeat && nofeat[j] < todo[i])
            j++;
        if (j < n_nofeat && nofeat[j] == todo[i])
            todo[keep++] = todo[i]; /* no cached features: from its image */
        else
            chunk[m++] = todo[i];
    }
    *n_todo = keep;
done:
    ims_free(x);
    ims_free(y);
    ims_free(nofeat);
    coll_encoder_close(&bb);
    ims_train_head_free(head);
    ims_free(blob);
    ims_free(hp);
    ims_free(mode);
    ims_free(for_stamp);
    return rc;
}
