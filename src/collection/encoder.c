/* SPDX-License-Identifier: MIT */
/*
 * encoder.c — a collection's encoder: encoder.ism + the catalogue's taps,
 * its identity, and installing a backbone (see coll_int.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coll_int.h"
#include "core/core_int.h"
#include "imgsim/train.h"

/* Default taps per backbone: the train module's measured best (README's
 * eval table; bench/RESULTS-finetune.md), joined with commas. */
const char *ims_coll_default_taps(const char *model_name)
{
    static _Thread_local char joined[4096];
    int n = 0;
    const char *const *taps = ims_train_default_taps(model_name, &n);
    if (!taps || !n)
        return NULL;
    joined[0] = 0;
    for (int i = 0; i < n; i++) {
        if (strlen(joined) + strlen(taps[i]) + 2 > sizeof joined)
            return NULL;
        if (i)
            strcat(joined, ",");
        strcat(joined, taps[i]);
    }
    return joined;
}

char *coll_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = ims_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int coll_sha256_file(const char *path, char hex[65], ims_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s", path);
    ims__sha256_ctx s;
    ims__sha256_init(&s);
    char *buf = ims_malloc(1 << 20);
    if (!buf) {
        fclose(f);
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", path);
    }
    size_t n;
    while ((n = fread(buf, 1, 1 << 20, f)) > 0)
        ims__sha256_update(&s, buf, n);
    int bad = ferror(f);
    ims_free(buf);
    fclose(f);
    if (bad)
        return ims_error_set(err, IMS_EIO, "%s: read error", path);
    ims__sha256_final_hex(&s, hex);
    return IMS_OK;
}

int coll_split_taps(const char *list, char sep, char **taps, int *n, ims_error *err)
{
    *n = 0;
    const char *p = list;
    while (p && *p) {
        const char *e = strchr(p, sep);
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len) {
            if (*n == COLL_MAX_TAPS)
                return ims_error_set(err, IMS_EINVAL, "taps: at most %d", COLL_MAX_TAPS);
            taps[*n] = ims_malloc(len + 1);
            if (!taps[*n])
                return ims_error_set(err, IMS_ENOMEM, "taps: out of memory");
            memcpy(taps[*n], p, len);
            taps[(*n)++][len] = 0;
        }
        p = e ? e + 1 : NULL;
    }
    if (!*n)
        return ims_error_set(err, IMS_EINVAL, "taps: empty list");
    return IMS_OK;
}

void coll_encoder_close(coll_encoder *e)
{
    ims_nn_close(e->model);
    for (int i = 0; i < e->n_taps; i++)
        ims_free(e->taps[i]);
    memset(e, 0, sizeof *e);
}

/* As coll_encoder_open_at; file_sha: the file's SHA-256 when known, else
 * NULL; model: path already open (adopted: closed with e, or on failure),
 * else NULL. */
static int open_at(const char *path, ims_nn_model *model, const char *taps, const char *file_sha,
                   coll_encoder *e, ims_error *err)
{
    memset(e, 0, sizeof *e);
    e->model = model;
    int rc = IMS_OK;
    if ((!model && (rc = ims_nn_open(path, &e->model, err))) ||
        (rc = coll_split_taps(taps, '\n', e->taps, &e->n_taps, err)))
        goto done;
    for (int i = 0; i < e->n_taps; i++) {
        if ((rc = ims_nn_tap_dim(e->model, e->taps[i], &e->tap_dim[i], err)))
            goto done;
        e->dim += e->tap_dim[i];
    }
    char file_hex[65];
    if (file_sha)
        snprintf(file_hex, sizeof file_hex, "%s", file_sha);
    else if ((rc = coll_sha256_file(path, file_hex, err)))
        goto done;
    ims__sha256_ctx s;
    ims__sha256_init(&s);
    ims__sha256_update(&s, file_hex, 64);
    ims__sha256_update(&s, taps, strlen(taps));
    ims__sha256_final_hex(&s, e->stamp);
done:
    if (rc)
        coll_encoder_close(e);
    return rc;
}

int coll_encoder_open_at(const char *path, const char *taps, coll_encoder *e, ims_error *err)
{
    return open_at(path, NULL, taps, NULL, e, err);
}

int coll_encoder_adopt(ims_nn_model *model, const char *taps, const char file_sha[65],
                       coll_encoder *e, ims_error *err)
{
    return open_at(NULL, model, taps, file_sha, e, err);
}

/* The SHA-256 of a collection's model file, cached in the settings under
 * "<file>:sha256" with the file's device, inode, size, mtime and ctime:
 * hashing a 90 MB encoder on every open would make start-up read it all.
 * A file replaced (new inode) or rewritten (new mtime/ctime) is hashed
 * again. A read-only catalogue just hashes. */
/* The cache key and the file's signature ("dev:ino:size:mtime:ctime "). */
static int sha_key_sig(const char *path, const char *file, char key[288], char sig[160],
                       ims_error *err)
{
    struct stat st;
    if (stat(path, &st))
        return ims_error_set_errno(err, IMS_EIO, errno, "%s", path);
    snprintf(key, 288, "%.270s:sha256", file);
    snprintf(sig, 160, "%llu:%llu:%lld:%lld.%09ld:%lld.%09ld ", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
             st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
    return IMS_OK;
}

void coll_model_sha_record(ims_catalog *cat, const char *path, const char *file, const char hex[65])
{
    char key[288], sig[160], val[240];
    if (sha_key_sig(path, file, key, sig, NULL))
        return;
    snprintf(val, sizeof val, "%s%s", sig, hex);
    ims_catalog_set_meta(cat, key, val, NULL); /* best effort (read-only: skipped) */
}

int coll_model_sha(ims_catalog *cat, const char *path, const char *file, char hex[65],
                   ims_error *err)
{
    char key[288], sig[160], *have = NULL;
    int rc = sha_key_sig(path, file, key, sig, err);
    if (rc)
        return rc;
    size_t sl = strlen(sig);
    if (!ims_catalog_get_meta(cat, key, &have, NULL) && have && strlen(have) == sl + 64 &&
        !strncmp(have, sig, sl)) {
        memcpy(hex, have + sl, 65);
        ims_free(have);
        return IMS_OK;
    }
    ims_free(have);
    if (!(rc = coll_sha256_file(path, hex, err)))
        coll_model_sha_record(cat, path, file, hex);
    return rc;
}

/* Open <dir>/<file> with the taps of settings key `taps_key`. */
static int open_named(const char *dir, ims_catalog *cat, const char *file, const char *taps_key,
                      coll_encoder *e, ims_error *err)
{
    memset(e, 0, sizeof *e);
    char *path = coll_path(dir, file), *taps = NULL;
    if (!path)
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    int rc = ims_catalog_get_meta(cat, taps_key, &taps, err);
    if (!rc && (!taps || access(path, F_OK)))
        rc = ims_error_set(err, IMS_ESTATE,
                           "%s: no encoder yet (run imgsim finetune, or build with --model)", dir);
    char hex[65];
    if (!rc)
        rc = coll_model_sha(cat, path, file, hex, err);
    if (!rc)
        rc = open_at(path, NULL, taps, hex, e, err);
    ims_free(taps);
    ims_free(path);
    return rc;
}

int coll_encoder_open(const char *dir, ims_catalog *cat, coll_encoder *e, ims_error *err)
{
    return open_named(dir, cat, "encoder.ism", "taps", e, err);
}

int coll_backbone_open(const char *dir, ims_catalog *cat, coll_encoder *e, ims_error *err)
{
    return open_named(dir, cat, "backbone.ism", "backbone_taps", e, err);
}

int coll_encoder_session(const coll_encoder *e, int max_batch, int threads, ims_nn_session **s,
                         ims_error *err)
{
    ims_nn_session_opts o = {.taps = (const char *const *)e->taps,
                             .n_taps = e->n_taps,
                             .max_batch = max_batch,
                             .n_threads = threads};
    return ims_nn_session_new(e->model, &o, s, err);
}

void coll_encoder_finish(const coll_encoder *e, float *v, int n)
{
    for (int i = 0; i < n; i++) {
        float *x = v + (size_t)i * e->dim;
        for (int t = 0; t < e->n_taps; t++) {
            double ss = 0;
            for (int j = 0; j < e->tap_dim[t]; j++)
                ss += (double)x[j] * x[j];
            if (ss > 0) {
                float inv = (float)(1.0 / sqrt(ss));
                for (int j = 0; j < e->tap_dim[t]; j++)
                    x[j] *= inv;
            }
            x += e->tap_dim[t];
        }
    }
}

/* Make `dst` hold the bytes of `src`: a hard link when possible, else a
 * copy; atomically (temp name, rename). */
static int install_file(const char *src, const char *dst, ims_error *err)
{
    size_t n = strlen(dst) + 32;
    char *tmp = ims_malloc(n);
    if (!tmp)
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.%d", dst, (int)getpid());
    unlink(tmp);
    int rc = IMS_OK;
    if (link(src, tmp)) {
        FILE *in = fopen(src, "rb"), *out = in ? fopen(tmp, "wb") : NULL;
        char buf[65536];
        size_t k;
        while (out && (k = fread(buf, 1, sizeof buf, in)) > 0)
            if (fwrite(buf, 1, k, out) != k)
                break;
        int bad = !in || !out || ferror(in) || fflush(out) || fsync(fileno(out));
        if (out && fclose(out))
            bad = 1;
        if (in)
            fclose(in);
        if (bad)
            rc = ims_error_set_errno(err, IMS_EIO, errno, "copying %s to %s", src, dst);
    }
    if (!rc && rename(tmp, dst))
        rc = ims_error_set_errno(err, IMS_EIO, errno, "%s", dst);
    if (rc)
        unlink(tmp);
    ims_free(tmp);
    return rc;
}

/* 1 when the model file and the collection's backbone.ism (bb) hold the
 * same bytes; both hashes come from the settings' cache when current. */
static int same_file_bytes(ims_catalog *cat, const char *model, const char *bb)
{
    struct stat sa, sb;
    if (stat(model, &sa) || stat(bb, &sb))
        return 0;
    if (sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
        return 1;
    if (sa.st_size != sb.st_size)
        return 0;
    char ha[65], hb[65];
    return !coll_model_sha(cat, model, model, ha, NULL) &&
           !coll_model_sha(cat, bb, "backbone.ism", hb, NULL) && !strcmp(ha, hb);
}

int ims_coll_set_backbone(const char *dir, const char *model_ism, const char *taps, ims_error *err)
{
    ims_nn_model *m = NULL;
    ims_catalog *cat = NULL;
    char *bb = coll_path(dir, "backbone.ism"), *enc = coll_path(dir, "encoder.ism");
    char *list[COLL_MAX_TAPS] = {0}, joined[8192];
    int n = 0, rc;
    if (!bb || !enc) {
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = ims_nn_open(model_ism, &m, err)))
        goto done;
    if (!taps && !(taps = ims_coll_default_taps(ims_nn_name(m))))
        taps = ims_nn_default_tap(m);
    if ((rc = coll_split_taps(taps, ',', list, &n, err)))
        goto done;
    joined[0] = 0;
    for (int i = 0; i < n; i++) {
        int d;
        if ((rc = ims_nn_tap_dim(m, list[i], &d, err)))
            goto done;
        if (strlen(joined) + strlen(list[i]) + 2 > sizeof joined) {
            rc = ims_error_set(err, IMS_EINVAL, "taps: list too long");
            goto done;
        }
        if (i)
            strcat(joined, "\n");
        strcat(joined, list[i]);
    }
    if ((rc = ims_catalog_open(dir, IMS_CATALOG_CREATE, &cat, err)))
        goto done;
    /* The three files hold the same bytes afterwards: one hash (cached)
     * serves them all, recorded after the links (a link changes ctime). */
    char hex[65];
    int known = 0;
    if (!same_file_bytes(cat, model_ism, bb)) {
        if ((rc = coll_model_sha(cat, model_ism, model_ism, hex, err)) ||
            (rc = install_file(model_ism, bb, err)))
            goto done;
        known = 1;
    } else {
        known = !coll_model_sha(cat, bb, "backbone.ism", hex, NULL);
    }
    if ((rc = install_file(bb, enc, err)))
        goto done;
    /* the settings in one transaction: one commit (a WAL sync) for all */
    if ((rc = ims_catalog_begin(cat, err)))
        goto done;
    if (known) {
        coll_model_sha_record(cat, model_ism, model_ism, hex);
        coll_model_sha_record(cat, bb, "backbone.ism", hex);
        coll_model_sha_record(cat, enc, "encoder.ism", hex);
    }
    if ((rc = ims_catalog_set_meta(cat, "taps", joined, err)) ||
        (rc = ims_catalog_set_meta(cat, "backbone_taps", joined, err)) ||
        (rc = ims_catalog_set_meta(cat, "backbone_name", ims_nn_name(m), err)) ||
        (rc = ims_catalog_set_meta(cat, "head", "none", err)) ||
        (rc = ims_catalog_commit(cat, err)))
        ims_catalog_rollback(cat);
done:
    for (int i = 0; i < n; i++)
        ims_free(list[i]);
    ims_catalog_close(cat);
    ims_nn_close(m);
    ims_free(bb);
    ims_free(enc);
    return rc;
}

int ims_coll_encoder_stamp(const char *dir, char stamp[65], ims_error *err)
{
    ims_catalog *cat = NULL;
    coll_encoder e;
    int rc = ims_catalog_open(dir, IMS_CATALOG_READONLY, &cat, err);
    if (!rc)
        rc = coll_encoder_open(dir, cat, &e, err);
    if (!rc) {
        memcpy(stamp, e.stamp, 65);
        coll_encoder_close(&e);
    }
    ims_catalog_close(cat);
    return rc;
}
