/* SPDX-License-Identifier: MIT */
/*
 * fake_coll.h — an in-memory stand-in for collection.h, so that the HTTP
 * layer can be tested on its own (every route, every error code) fast and
 * without models: include it in exactly one test file.
 *
 * It defines every collection/catalog function the server calls, so the
 * linker never pulls the real ones from the static libraries.
 *
 * "Images" are recognised by magic only: JPEG (FF D8 FF) and PNG (89 'PNG')
 * are accepted; "BM" (BMP) is IMS_EUNSUPPORTED; bytes starting "BOMB" are
 * IMS_ETOOBIG (a decompression bomb); "BUSY" is IMS_EBUSY; anything else is
 * IMS_EFORMAT. A JPEG whose bytes 3..6 are "SLOW" takes 600 ms to "encode"
 * (FAKE_SLOW_US, which an including file may define first: the HTTP fuzzer
 * sets 0);
 * an add of a JPEG whose bytes 3..6 are "FULL" ("FULE") fails as a full disk
 * does, IMS_EIO (IMS_EFULL).
 * The vector is a 16-bin histogram of the bytes' high nibbles; score is
 * their cosine. One mutex guards everything (it is a test double).
 */
#ifndef IMS_TESTS_FAKE_COLL_H
#define IMS_TESTS_FAKE_COLL_H

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgsim/collection.h"
#include "imgsim/imgsim.h"

#define FAKE_DIM 16
#ifndef FAKE_SLOW_US
#define FAKE_SLOW_US (600 * 1000)
#endif

typedef struct fake_item {
    ims_item it;
    unsigned char *bytes;
    size_t len;
    float v[FAKE_DIM];
    int live;
} fake_item;

struct ims_coll {
    pthread_mutex_t mu;
    fake_item *items;
    size_t n, cap;
    int64_t encodes;
    double encode_seconds;
};

void ims_item_clear(ims_item *it)
{
    if (!it)
        return;
    ims_free(it->path);
    ims_free(it->category);
    ims_free(it->name);
    ims_free(it->product_id);
    ims_free(it->metadata);
    ims_free(it->reason);
    memset(it, 0, sizeof *it);
}

void ims_catalog_free_categories(char **names, int64_t *counts, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        ims_free(names[i]);
    ims_free(names);
    ims_free(counts);
}

static int fake_check(const unsigned char *b, size_t len, char format[8], ims_error *err)
{
    if (len >= 4 && !memcmp(b, "BOMB", 4))
        return ims_error_set(err, IMS_ETOOBIG, "image: 100000 x 100000 pixels is over the limit");
    if (len >= 4 && !memcmp(b, "BUSY", 4))
        return ims_error_set(err, IMS_EBUSY, "no encoder session free in time");
    if (len >= 2 && b[0] == 'B' && b[1] == 'M')
        return ims_error_set(err, IMS_EUNSUPPORTED, "image: BMP is not a supported format");
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
        strcpy(format, "jpeg");
        return IMS_OK;
    }
    if (len >= 4 && !memcmp(b, "\x89PNG", 4)) {
        strcpy(format, "png");
        return IMS_OK;
    }
    return ims_error_set(err, IMS_EFORMAT, "image: not a known image format");
}

static void fake_encode(ims_coll *c, const unsigned char *b, size_t len, float *v)
{
    double t0 = ims_now();
    if (FAKE_SLOW_US > 0 && len >= 7 && !memcmp(b + 3, "SLOW", 4))
        usleep(FAKE_SLOW_US);
    double h[FAKE_DIM] = {0}, s = 0;
    for (size_t i = 0; i < len; i++)
        h[b[i] >> 4] += 1;
    for (int k = 0; k < FAKE_DIM; k++)
        s += h[k] * h[k];
    for (int k = 0; k < FAKE_DIM; k++)
        v[k] = s > 0 ? (float)(h[k] / sqrt(s)) : 0;
    pthread_mutex_lock(&c->mu);
    c->encodes++;
    c->encode_seconds += ims_now() - t0;
    pthread_mutex_unlock(&c->mu);
}

static void fake_hash(const unsigned char *b, size_t len, char out[65])
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    snprintf(out, 65, "%016llx", (unsigned long long)h);
}

int ims_coll_open(const char *dir, const ims_coll_opts *o, ims_coll **out, ims_error *err)
{
    (void)dir, (void)o, (void)err;
    ims_coll *c = calloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return IMS_OK;
}

void ims_coll_close(ims_coll *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        ims_item_clear(&c->items[i].it);
        free(c->items[i].bytes);
    }
    free(c->items);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void copy_item(const ims_item *src, ims_item *dst)
{
    *dst = *src;
    dst->path = ims_strdup(src->path);
    dst->category = ims_strdup(src->category);
    dst->name = ims_strdup(src->name);
    dst->product_id = ims_strdup(src->product_id);
    dst->metadata = ims_strdup(src->metadata);
    dst->reason = ims_strdup(src->reason);
}

void ims_coll_hits_free(ims_coll_hit *h, size_t n)
{
    for (size_t i = 0; h && i < n; i++)
        ims_item_clear(&h[i].item);
    ims_free(h);
}

static fake_item *find(ims_coll *c, int64_t id)
{
    if (id >= 1 && (size_t)id <= c->n && c->items[id - 1].live)
        return &c->items[id - 1];
    return NULL;
}

static int cmp_hit(const void *a, const void *b)
{
    const ims_coll_hit *x = a, *y = b;
    return x->score < y->score   ? 1
           : x->score > y->score ? -1
                                 : (x->item.id > y->item.id) - (x->item.id < y->item.id);
}

/* Top k among live items (except `skip`), under the lock. */
static int topk(ims_coll *c, const float *v, int k, const char *category, int64_t skip,
                ims_coll_hit **hits, size_t *n)
{
    ims_coll_hit *all = ims_calloc(c->n + 1, sizeof *all);
    size_t m = 0;
    for (size_t i = 0; i < c->n; i++) {
        fake_item *f = &c->items[i];
        if (!f->live || f->it.id == skip || (category && strcmp(category, f->it.category)))
            continue;
        float s = 0;
        for (int d = 0; d < FAKE_DIM; d++)
            s += v[d] * f->v[d];
        all[m].score = s;
        all[m].item.id = f->it.id; /* sort by score first, copy strings after */
        m++;
    }
    qsort(all, m, sizeof *all, cmp_hit);
    if (m > (size_t)k)
        m = (size_t)k;
    for (size_t i = 0; i < m; i++) {
        float s = all[i].score;
        copy_item(&c->items[all[i].item.id - 1].it, &all[i].item);
        all[i].score = s;
    }
    *hits = all;
    *n = m;
    return IMS_OK;
}

int ims_coll_search_image(ims_coll *c, const void *bytes, size_t len, int k, const char *category,
                          ims_coll_hit **hits, size_t *n, int64_t *self_id, ims_error *err)
{
    char fmt[8], h[65];
    int rc;
    if (k < 1 || k > 1000)
        return ims_error_set(err, IMS_EINVAL, "k must be 1..1000");
    if ((rc = fake_check(bytes, len, fmt, err)))
        return rc;
    float v[FAKE_DIM];
    fake_encode(c, bytes, len, v);
    fake_hash(bytes, len, h);
    pthread_mutex_lock(&c->mu);
    if (self_id) {
        *self_id = 0;
        for (size_t i = 0; i < c->n; i++)
            if (c->items[i].live && !strcmp(c->items[i].it.sha256, h))
                *self_id = c->items[i].it.id;
    }
    rc = topk(c, v, k, category && *category ? category : NULL, 0, hits, n);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int ims_coll_similar(ims_coll *c, int64_t id, int k, const char *category, ims_coll_hit **hits,
                     size_t *n, ims_error *err)
{
    int rc;
    pthread_mutex_lock(&c->mu);
    fake_item *f = find(c, id);
    if (!f)
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld not found", (long long)id);
    else
        rc = topk(c, f->v, k, category && *category ? category : NULL, id, hits, n);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int ims_coll_get(ims_coll *c, int64_t id, ims_item *out, ims_error *err)
{
    int rc = IMS_OK;
    pthread_mutex_lock(&c->mu);
    fake_item *f = find(c, id);
    if (!f)
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld not found", (long long)id);
    else
        copy_item(&f->it, out);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int ims_coll_image(ims_coll *c, int64_t id, void **bytes, size_t *len, char format[8],
                   ims_error *err)
{
    int rc = IMS_OK;
    pthread_mutex_lock(&c->mu);
    fake_item *f = find(c, id);
    if (!f) {
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld not found", (long long)id);
    } else {
        *bytes = ims_malloc(f->len);
        memcpy(*bytes, f->bytes, f->len);
        *len = f->len;
        memcpy(format, f->it.format, 8);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int ims_coll_add(ims_coll *c, const void *bytes, size_t len, const char *category, const char *name,
                 const char *metadata, int64_t *id, ims_error *err)
{
    char fmt[8] = "", h[65];
    int rc;
    if ((rc = fake_check(bytes, len, fmt, err)))
        return rc;
    if (len >= 7 && (!memcmp((const char *)bytes + 3, "FULL", 4) ||
                     !memcmp((const char *)bytes + 3, "FULE", 4)))
        return ims_error_set(err, ((const char *)bytes)[6] == 'L' ? IMS_EIO : IMS_EFULL,
                             "catalog.sqlite: COMMIT: disk I/O error (disk full)");
    float v[FAKE_DIM];
    fake_encode(c, bytes, len, v);
    fake_hash(bytes, len, h);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++)
        if (c->items[i].live && !strcmp(c->items[i].it.sha256, h)) {
            *id = c->items[i].it.id;
            pthread_mutex_unlock(&c->mu);
            return ims_error_set(err, IMS_EEXIST, "same image as item %lld", (long long)*id);
        }
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->items = realloc(c->items, c->cap * sizeof *c->items);
    }
    fake_item *f = &c->items[c->n++];
    memset(f, 0, sizeof *f);
    f->it.id = (int64_t)c->n;
    f->it.path = ims_strdup("upload");
    f->it.category = ims_strdup(category ? category : "");
    f->it.name = ims_strdup(name && *name ? name : "upload");
    f->it.product_id = ims_strdup("");
    f->it.metadata = ims_strdup(metadata ? metadata : "{}");
    f->it.reason = ims_strdup("");
    memcpy(f->it.sha256, h, sizeof h);
    memcpy(f->it.format, fmt, 8);
    f->it.width = 307;
    f->it.height = 173;
    f->it.bytes = (int64_t)len;
    f->it.status = IMS_ITEM_ACCEPTED;
    f->bytes = malloc(len);
    memcpy(f->bytes, bytes, len);
    f->len = len;
    memcpy(f->v, v, sizeof v);
    f->live = 1;
    *id = f->it.id;
    pthread_mutex_unlock(&c->mu);
    return IMS_OK;
}

int ims_coll_delete(ims_coll *c, int64_t id, ims_error *err)
{
    int rc = IMS_OK;
    pthread_mutex_lock(&c->mu);
    fake_item *f = find(c, id);
    if (!f)
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld not found", (long long)id);
    else
        f->live = 0;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void ims_coll_get_stats(ims_coll *c, ims_coll_stats *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++)
        s->items += c->items[i].live;
    s->indexed = s->items;
    s->dim = FAKE_DIM;
    snprintf(s->model, sizeof s->model, "fake");
    s->encodes = c->encodes;
    s->encode_seconds = c->encode_seconds;
    pthread_mutex_unlock(&c->mu);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ims_coll_categories(ims_coll *c, char ***names, int64_t **counts, size_t *n, ims_error *err)
{
    (void)err;
    pthread_mutex_lock(&c->mu);
    char **nm = ims_calloc(c->n + 1, sizeof *nm);
    size_t m = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->items[i].live)
            nm[m++] = c->items[i].it.category;
    qsort(nm, m, sizeof *nm, cmp_str);
    char **out = ims_calloc(m + 1, sizeof *out);
    int64_t *cnt = ims_calloc(m + 1, sizeof *cnt);
    size_t u = 0;
    for (size_t i = 0; i < m; i++) {
        if (u && !strcmp(out[u - 1], nm[i])) {
            cnt[u - 1]++;
            continue;
        }
        out[u] = ims_strdup(nm[i]);
        cnt[u++] = 1;
    }
    ims_free(nm);
    pthread_mutex_unlock(&c->mu);
    *names = out;
    *counts = cnt;
    *n = u;
    return IMS_OK;
}

#endif /* IMS_TESTS_FAKE_COLL_H */
