/* SPDX-License-Identifier: MIT */
/*
 * online.c — a collection opened for serving (collection.h).
 *
 * Shared, read-mostly: the encoder model (mmap'd), the index (its own
 * readers-writer lock lets searches run beside one writer). Pooled, one
 * user at a time: encoder sessions (a search takes one for the encode only)
 * and catalogue handles (SQLite connections; WAL lets readers run beside
 * the writer). Writers (add, delete) are group-committed (the batch
 * section below): writes made at the same time share one catalogue
 * transaction and one log sync, one batch at a time, never blocking a
 * search.
 *
 * Durability of writes. The catalogue (SQLite) is the source of truth;
 * index.hnsw is the last saved index and index.log lists the adds and
 * deletes made since, one checksummed 20-byte record each, fsync'd before
 * a write returns (a batch writes its records with one write + fdatasync):
 *   add:    catalogue row + stored image, vector, log 'A', index insert
 *   delete: log 'D', catalogue delete, index delete
 * At open the log is replayed (a torn last record is cut off), and if the
 * index then disagrees with the catalogue about the number of items (a
 * crash between the catalogue commit and the log append), the missing
 * items are added from the catalogue, encoding any that lack a vector from
 * their stored image. So after a crash at any point an item is either
 * wholly there (row, image, vector, searchable) or not at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "coll_int.h"
#include "core/core_int.h"

#define LOG_REC 20
#define LOG_MAGIC 0x4c534d49u /* "IMSL" */
#define MAX_K 1000

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void **items;
    int n, n_free;
    void **free_list;
} pool;

typedef struct cat_filter {
    char *name;
    uint64_t *bits;
    uint64_t n_bits;
} cat_filter;

struct ims_coll {
    char *dir;
    int readonly;
    int queue_timeout_ms;
    uint64_t max_pixels;
    coll_encoder enc;
    pool sessions, cats;
    ims_hnsw *index;
    int log_fd;
    pthread_mutex_t q_mu;         /* guards the write queue: q_head..q_tail, q_busy */
    pthread_cond_t q_cv;          /* a batch finished */
    struct wreq *q_head, *q_tail; /* writes waiting for the next batch */
    int q_busy;                   /* a leader is running a batch */
    pthread_rwlock_t filter_lock; /* guards filters (rebuilt after writes) */
    cat_filter *filters;
    int n_filters;
    pthread_mutex_t stats_mu;
    int64_t encodes;
    double encode_seconds;
    int64_t writes, write_batches; /* group commit: requests, batches */
};

/* ---- pools ------------------------------------------------------------------ */

static int pool_init(pool *p, int n)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->items = ims_calloc((size_t)n, sizeof *p->items);
    p->free_list = ims_calloc((size_t)n, sizeof *p->free_list);
    return p->items && p->free_list ? IMS_OK : IMS_ENOMEM;
}

static void pool_add(pool *p, void *item)
{
    p->items[p->n++] = item;
    p->free_list[p->n_free++] = item;
}

/* Take an item; wait at most timeout_ms (< 0: forever). NULL on timeout. */
static void *pool_take(pool *p, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&p->mu);
    while (!p->n_free) {
        if (timeout_ms < 0)
            pthread_cond_wait(&p->cv, &p->mu);
        else if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT)
            break;
    }
    void *it = p->n_free ? p->free_list[--p->n_free] : NULL;
    pthread_mutex_unlock(&p->mu);
    return it;
}

static void pool_put(pool *p, void *item)
{
    pthread_mutex_lock(&p->mu);
    p->free_list[p->n_free++] = item;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void pool_destroy(pool *p, void (*free_fn)(void *))
{
    for (int i = 0; i < p->n; i++)
        free_fn(p->items[i]);
    ims_free(p->items);
    ims_free(p->free_list);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

static void free_session(void *s) { ims_nn_session_free(s); }
static void free_cat(void *c) { ims_catalog_close(c); }

static ims_catalog *cat_take(ims_coll *c) { return pool_take(&c->cats, -1); }
static void cat_put(ims_coll *c, ims_catalog *cat) { pool_put(&c->cats, cat); }

/* ---- encoding and the index at open ------------------------------------------ */

/* Encode one decoded image into out (enc.dim floats) with a pooled session. */
static int encode_image(ims_coll *c, const ims_image *img, float *out, int timeout_ms,
                        ims_error *err)
{
    ims_nn_session *s = pool_take(&c->sessions, timeout_ms);
    if (!s)
        return ims_error_set(err, IMS_EBUSY, "all %d encoders busy for %d ms", c->sessions.n,
                             timeout_ms);
    double t0 = ims_now();
    int rc = ims_nn_session_run_image(s, img, out, NULL, err);
    double dt = ims_now() - t0;
    pool_put(&c->sessions, s);
    if (rc)
        return rc;
    coll_encoder_finish(&c->enc, out, 1);
    pthread_mutex_lock(&c->stats_mu);
    c->encodes++;
    c->encode_seconds += dt;
    pthread_mutex_unlock(&c->stats_mu);
    return IMS_OK;
}

/* Put item `id` into the index from its catalogue vector (encoding its
 * stored image when it has none). Present items are left alone. */
static int index_item(ims_coll *c, ims_catalog *cat, int64_t id, float *v, ims_error *err)
{
    if (ims_hnsw_contains(c->index, (uint64_t)id))
        return IMS_OK;
    int rc = ims_catalog_get_vectors(cat, COLL_VECTORS, c->enc.stamp, 1, &id, v, c->enc.dim, err);
    if (rc == IMS_ENOTFOUND) {
        char *path = NULL;
        ims_image *img = NULL;
        rc = ims_catalog_image_path(cat, id, &path, err);
        if (!rc)
            rc = ims_image_load_file(path, NULL, &img, err);
        if (!rc)
            rc = encode_image(c, img, v, -1, err);
        if (!rc && !c->readonly)
            rc = ims_catalog_put_vectors(cat, COLL_VECTORS, c->enc.stamp, 1, &id, v, c->enc.dim,
                                         err);
        ims_image_free(img);
        ims_free(path);
    }
    if (rc)
        return rc;
    rc = ims_hnsw_add(c->index, (uint64_t)id, v);
    if (rc)
        return ims_error_set(err, rc, "index: item %lld: %s", (long long)id,
                             ims_hnsw_errmsg(c->index));
    return IMS_OK;
}

/* Replay index.log onto the index; cut a torn tail. */
static int replay_log(ims_coll *c, ims_catalog *cat, ims_error *err)
{
    char *path = coll_path(c->dir, "index.log");
    if (!path)
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    c->log_fd = open(path, c->readonly ? O_RDONLY : O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (c->log_fd < 0 && !(c->readonly && errno == ENOENT)) {
        int rc = ims_error_set_errno(err, IMS_EIO, errno, "%s", path);
        ims_free(path);
        return rc;
    }
    ims_free(path);
    if (c->log_fd < 0)
        return IMS_OK;
    float *v = ims_malloc((size_t)c->enc.dim * sizeof(float));
    if (!v)
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    unsigned char r[LOG_REC];
    off_t good = 0;
    int rc = IMS_OK;
    int64_t n_rec = 0;
    while (pread(c->log_fd, r, LOG_REC, good) == LOG_REC) {
        if (ims__get_u32(r) != LOG_MAGIC || ims__get_u32(r + 16) != ims__crc32c(0, r, 16))
            break;
        int64_t id = (int64_t)ims__get_u64(r + 8);
        if (r[4] == 'A') {
            ims_item it = {0};
            if (ims_catalog_get(cat, id, &it, NULL) == IMS_OK && it.status == IMS_ITEM_ACCEPTED)
                rc = index_item(c, cat, id, v, err);
            ims_item_clear(&it);
        } else if (r[4] == 'D' && ims_hnsw_contains(c->index, (uint64_t)id)) {
            rc = ims_hnsw_delete(c->index, (uint64_t)id);
        }
        if (rc)
            break;
        good += LOG_REC;
        n_rec++;
    }
    if (!rc && !c->readonly && ftruncate(c->log_fd, good))
        rc = ims_error_set_errno(err, IMS_EIO, errno, "%s/index.log: cannot cut torn record",
                                 c->dir);
    if (n_rec)
        ims_log(IMS_LOG_INFO, "%s: replayed %lld index log records", c->dir, (long long)n_rec);
    ims_free(v);
    return rc;
}

/* After a crash between a catalogue commit and its log record: add every
 * accepted item the index lacks. */
static int reconcile(ims_coll *c, ims_catalog *cat, ims_error *err)
{
    int64_t *ids = NULL;
    size_t n = 0;
    int rc = ims_catalog_accepted_ids(cat, &ids, &n, err);
    if (rc)
        return rc;
    if ((uint64_t)n != ims_hnsw_count(c->index)) {
        float *v = ims_malloc((size_t)c->enc.dim * sizeof(float));
        if (!v)
            rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
        for (size_t i = 0; v && !rc && i < n; i++)
            rc = index_item(c, cat, ids[i], v, err);
        ims_free(v);
        if (!rc)
            ims_log(IMS_LOG_INFO, "%s: index reconciled with the catalogue (%zu items)", c->dir, n);
    }
    ims_free(ids);
    return rc;
}

/* ---- open / close ------------------------------------------------------------- */

void ims_coll_close(ims_coll *c)
{
    if (!c)
        return;
    if (c->sessions.items)
        pool_destroy(&c->sessions, free_session);
    if (c->cats.items)
        pool_destroy(&c->cats, free_cat);
    ims_hnsw_close(c->index);
    coll_encoder_close(&c->enc);
    if (c->log_fd >= 0)
        close(c->log_fd);
    for (int i = 0; i < c->n_filters; i++) {
        ims_free(c->filters[i].name);
        ims_free(c->filters[i].bits);
    }
    ims_free(c->filters);
    pthread_mutex_destroy(&c->q_mu);
    pthread_cond_destroy(&c->q_cv);
    pthread_mutex_destroy(&c->stats_mu);
    pthread_rwlock_destroy(&c->filter_lock);
    ims_free(c->dir);
    ims_free(c);
}

int ims_coll_open(const char *dir, const ims_coll_opts *o, ims_coll **out, ims_error *err)
{
    ims_coll_opts d = {0};
    if (!o)
        o = &d;
    *out = NULL;
    ims_init();
    ims_coll *c = ims_calloc(1, sizeof *c);
    if (!c)
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    c->log_fd = -1;
    pthread_mutex_init(&c->q_mu, NULL);
    pthread_cond_init(&c->q_cv, NULL);
    pthread_mutex_init(&c->stats_mu, NULL);
    pthread_rwlock_init(&c->filter_lock, NULL);
    c->readonly = o->readonly;
    c->queue_timeout_ms = o->queue_timeout_ms > 0 ? o->queue_timeout_ms : 30000;
    c->max_pixels = o->max_pixels > 0 ? (uint64_t)o->max_pixels : 0;
    int n_ses = o->sessions > 0 ? o->sessions : ims_cpu_count();
    int n_cat = n_ses + 8;
    int rc;
    char *ipath = NULL;
    if (!(c->dir = ims_strdup(dir)) || pool_init(&c->sessions, n_ses) ||
        pool_init(&c->cats, n_cat)) {
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n_cat; i++) {
        ims_catalog *cat;
        if ((rc = ims_catalog_open(dir, c->readonly ? IMS_CATALOG_READONLY : 0, &cat, err)))
            goto fail;
        pool_add(&c->cats, cat);
    }
    ims_catalog *cat = c->cats.items[0];
    if ((rc = coll_encoder_open(dir, cat, &c->enc, err)))
        goto fail;
    for (int i = 0; i < n_ses; i++) {
        ims_nn_session *s;
        if ((rc = coll_encoder_session(&c->enc, 1, o->threads > 0 ? o->threads : 1, &s, err)))
            goto fail;
        pool_add(&c->sessions, s);
    }
    if (!(ipath = coll_path(dir, "index.hnsw"))) {
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = (o->load_index ? ims_hnsw_load : ims_hnsw_open)(ipath, &c->index, err)))
        goto fail;
    ims_hnsw_info info;
    ims_hnsw_get_info(c->index, &info);
    if (info.n_dims != (uint32_t)c->enc.dim) {
        rc = ims_error_set(err, IMS_ESTATE,
                           "%s: holds %u-d vectors, the encoder makes %d-d ones (run imgsim "
                           "embed-all and imgsim index)",
                           ipath, info.n_dims, c->enc.dim);
        goto fail;
    }
    char *istamp = NULL;
    if ((rc = ims_catalog_get_meta(cat, "index_stamp", &istamp, err)))
        goto fail;
    int stale = !istamp || strcmp(istamp, c->enc.stamp);
    ims_free(istamp);
    if (stale) {
        rc = ims_error_set(err, IMS_ESTATE,
                           "%s: built from another encoder's vectors (run imgsim embed-all "
                           "and imgsim index)",
                           ipath);
        goto fail;
    }
    if ((rc = replay_log(c, cat, err)) || (rc = reconcile(c, cat, err)))
        goto fail;
    ims_free(ipath);
    *out = c;
    return IMS_OK;
fail:
    ims_free(ipath);
    ims_coll_close(c);
    return rc;
}

/* ---- category filters ------------------------------------------------------------ */

static void filters_clear(ims_coll *c)
{
    pthread_rwlock_wrlock(&c->filter_lock);
    for (int i = 0; i < c->n_filters; i++) {
        ims_free(c->filters[i].name);
        ims_free(c->filters[i].bits);
    }
    ims_free(c->filters);
    c->filters = NULL;
    c->n_filters = 0;
    pthread_rwlock_unlock(&c->filter_lock);
}

/* Run a search with the category's id bitset (built on first use, cached
 * until the next write). */
static int search_vec(ims_coll *c, const float *q, size_t k, const char *category, ims_hit *hits,
                      size_t *n_hits, ims_error *err)
{
    ims_search_opts so = {0};
    int rc;
    if (!category || !*category) {
        rc = ims_hnsw_search(c->index, q, k, &so, hits, n_hits);
        return rc ? ims_error_set(err, rc, "search: %s", ims_hnsw_errmsg(c->index)) : IMS_OK;
    }
    for (int pass = 0; pass < 2; pass++) {
        pthread_rwlock_rdlock(&c->filter_lock);
        for (int i = 0; i < c->n_filters; i++) {
            if (strcmp(c->filters[i].name, category))
                continue;
            so.allow = c->filters[i].bits;
            so.n_allow_bits = c->filters[i].n_bits;
            rc = ims_hnsw_search(c->index, q, k, &so, hits, n_hits);
            pthread_rwlock_unlock(&c->filter_lock);
            return rc ? ims_error_set(err, rc, "search: %s", ims_hnsw_errmsg(c->index)) : IMS_OK;
        }
        pthread_rwlock_unlock(&c->filter_lock);
        if (pass)
            break;
        /* build it */
        ims_catalog *cat = cat_take(c);
        int64_t *ids = NULL, max_id = 0;
        size_t n = 0;
        rc = ims_catalog_ids_in_category(cat, category, &ids, &n, err);
        if (!rc)
            rc = ims_catalog_max_id(cat, &max_id, err);
        cat_put(c, cat);
        if (rc) {
            ims_free(ids);
            return rc;
        }
        if (n == 0) { /* no such category: nothing to search, nothing to cache (a
                       * client sending endless distinct names must not grow it) */
            ims_free(ids);
            *n_hits = 0;
            return IMS_OK;
        }
        cat_filter f = {ims_strdup(category), NULL, (uint64_t)max_id + 1};
        f.bits = ims_calloc((size_t)(f.n_bits + 63) / 64, sizeof(uint64_t));
        if (!f.name || !f.bits) {
            ims_free(f.name);
            ims_free(f.bits);
            ims_free(ids);
            return ims_error_set(err, IMS_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
            f.bits[(uint64_t)ids[i] / 64] |= 1ull << ((uint64_t)ids[i] % 64);
        ims_free(ids);
        pthread_rwlock_wrlock(&c->filter_lock);
        cat_filter *nf = ims_realloc(c->filters, (size_t)(c->n_filters + 1) * sizeof *nf);
        if (nf) {
            c->filters = nf;
            c->filters[c->n_filters++] = f;
        } else {
            ims_free(f.name);
            ims_free(f.bits);
        }
        pthread_rwlock_unlock(&c->filter_lock);
        if (!nf)
            return ims_error_set(err, IMS_ENOMEM, "out of memory");
    }
    return ims_error_set(err, IMS_ENOMEM, "search: category filter vanished");
}

/* ---- queries ---------------------------------------------------------------------- */

void ims_coll_hits_free(ims_coll_hit *h, size_t n)
{
    for (size_t i = 0; h && i < n; i++)
        ims_item_clear(&h[i].item);
    ims_free(h);
}

/* Turn index hits into results with their items; skip `self` and stop at k. */
static int fill_hits(ims_coll *c, const ims_hit *hits, size_t n_hits, int64_t self, size_t k,
                     ims_coll_hit **out, size_t *n_out, ims_error *err)
{
    ims_coll_hit *r = ims_calloc(n_hits ? n_hits : 1, sizeof *r);
    if (!r)
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    ims_catalog *cat = cat_take(c);
    size_t m = 0;
    int rc = IMS_OK;
    for (size_t i = 0; i < n_hits && m < k; i++) {
        if ((int64_t)hits[i].id == self)
            continue;
        rc = ims_catalog_get(cat, (int64_t)hits[i].id, &r[m].item, err);
        if (rc == IMS_ENOTFOUND || (!rc && r[m].item.status != IMS_ITEM_ACCEPTED)) {
            /* deleted since the search: skip */
            ims_item_clear(&r[m].item);
            rc = IMS_OK;
            continue;
        }
        if (rc)
            break;
        r[m++].score = 1.0f - hits[i].distance;
    }
    cat_put(c, cat);
    if (rc) {
        ims_coll_hits_free(r, m);
        return rc;
    }
    *out = r;
    *n_out = m;
    return IMS_OK;
}

static int check_k(int k, ims_error *err)
{
    if (k < 1 || k > MAX_K)
        return ims_error_set(err, IMS_EINVAL, "k must be 1..%d, not %d", MAX_K, k);
    return IMS_OK;
}

static int search_and_fill(ims_coll *c, const float *q, int k, const char *category, int64_t self,
                           ims_coll_hit **hits, size_t *n, ims_error *err)
{
    size_t want = (size_t)k + (self ? 1 : 0);
    ims_hit *h = ims_malloc(want * sizeof *h);
    if (!h)
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    size_t nh = 0;
    int rc = search_vec(c, q, want, category, h, &nh, err);
    if (!rc)
        rc = fill_hits(c, h, nh, self, (size_t)k, hits, n, err);
    ims_free(h);
    return rc;
}

int ims_coll_search_image(ims_coll *c, const void *bytes, size_t len, int k, const char *category,
                          ims_coll_hit **hits, size_t *n, int64_t *self_id, ims_error *err)
{
    *hits = NULL, *n = 0;
    if (self_id)
        *self_id = 0;
    int rc = check_k(k, err);
    if (rc)
        return rc;
    ims_image_opts io = {.max_pixels = c->max_pixels};
    ims_image *img = NULL;
    if ((rc = ims_image_load_memory(bytes, len, &io, &img, err)))
        return rc;
    float *q = ims_malloc((size_t)c->enc.dim * sizeof(float));
    if (!q)
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
    if (!rc)
        rc = encode_image(c, img, q, c->queue_timeout_ms, err);
    ims_image_free(img);
    if (!rc && self_id) {
        char hex[65];
        ims__sha256_hex(bytes, len, hex);
        ims_catalog *cat = cat_take(c);
        if (ims_catalog_find_sha256(cat, hex, self_id, NULL))
            *self_id = 0;
        cat_put(c, cat);
    }
    if (!rc)
        rc = search_and_fill(c, q, k, category, 0, hits, n, err);
    ims_free(q);
    return rc;
}

int ims_coll_similar(ims_coll *c, int64_t id, int k, const char *category, ims_coll_hit **hits,
                     size_t *n, ims_error *err)
{
    *hits = NULL, *n = 0;
    int rc = check_k(k, err);
    if (rc)
        return rc;
    float *q = ims_malloc((size_t)c->enc.dim * sizeof(float));
    if (!q)
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    if (ims_hnsw_get_vector(c->index, (uint64_t)id, q))
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld not found", (long long)id);
    if (!rc)
        rc = search_and_fill(c, q, k, category, id, hits, n, err);
    ims_free(q);
    return rc;
}

int ims_coll_get(ims_coll *c, int64_t id, ims_item *out, ims_error *err)
{
    memset(out, 0, sizeof *out);
    ims_catalog *cat = cat_take(c);
    int rc = ims_catalog_get(cat, id, out, err);
    cat_put(c, cat);
    if (!rc && out->status != IMS_ITEM_ACCEPTED) {
        ims_item_clear(out);
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld not found", (long long)id);
    }
    return rc;
}

int ims_coll_image(ims_coll *c, int64_t id, void **bytes, size_t *len, char format[8],
                   ims_error *err)
{
    *bytes = NULL, *len = 0;
    ims_item it;
    int rc = ims_coll_get(c, id, &it, err);
    if (rc)
        return rc;
    snprintf(format, 8, "%s", it.format);
    ims_item_clear(&it);
    char *path = NULL;
    ims_catalog *cat = cat_take(c);
    rc = ims_catalog_image_path(cat, id, &path, err);
    cat_put(c, cat);
    if (rc)
        return rc;
    FILE *f = fopen(path, "rb");
    if (!f) {
        rc = ims_error_set_errno(err, IMS_EIO, errno, "item %lld: image file", (long long)id);
        ims_free(path);
        return rc;
    }
    ims_free(path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = sz >= 0 ? ims_malloc((size_t)sz + 1) : NULL;
    if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        ims_free(b);
        fclose(f);
        return ims_error_set(err, b ? IMS_EIO : IMS_ENOMEM, "item %lld: cannot read its image",
                             (long long)id);
    }
    fclose(f);
    *bytes = b;
    *len = (size_t)sz;
    return IMS_OK;
}

/* ---- writes: group commit ------------------------------------------------------------
 *
 * Writers queue a request and the first one to find no batch running
 * becomes the leader: it takes every request queued so far (at most
 * MAX_BATCH) and runs them as one batch, while later writers queue for the
 * next one. A lone writer finds the queue empty and runs at once: nobody
 * waits for company. A batch is, in the order of the essay above:
 *   1. the 'D' records of its deletes, one write + fdatasync (if any);
 *   2. one SQLite transaction: every add's row + vector, every delete;
 *   3. the 'A' records of the committed adds, one write + fdatasync;
 *   4. the index: insert the adds, remove the deletes.
 * Every writer of the batch is answered (woken) after step 4, so a success
 * still means durable and searchable. A failure in steps 1-3 (disk full,
 * EIO) fails every writer that step concerns with that error: the
 * transaction is rolled back whole, and committed adds whose log record
 * could not be written are taken back as a single add would be. Per-item
 * answers (a duplicate, an unknown id) stay per item. */

#define MAX_BATCH 128

/* One add or delete waiting for (or in) a batch. */
typedef struct wreq {
    char op;                                /* 'A' add, 'D' delete */
    const void *bytes;                      /* add: the upload */
    size_t len;                             /* add: its size */
    const ims_image *img;                   /* add: decoded (format, width, height) */
    const char *category, *name, *metadata; /* add: may be NULL */
    const float *v;                         /* add: the item's vector (enc.dim floats) */
    int64_t id;                             /* add: OUT the item; delete: the item */
    int rc;                                 /* OUT: the answer */
    ims_error err;                          /* OUT: its message */
    int decided;                            /* rc is final (a per-item answer or a failure) */
    int repair;                             /* add: finishes an accepted item the index lacks */
    int committed;                          /* the catalogue change is committed */
    int done;                               /* answered (under q_mu) */
    struct wreq *next;
} wreq;

/* Decide every undecided request of the batch (op 0: any) with rc/e. */
static void fail_undecided(wreq *b, char op, int rc, const ims_error *e)
{
    for (wreq *w = b; w; w = w->next) {
        if (w->decided || (op && w->op != op))
            continue;
        w->rc = rc;
        w->err = *e;
        w->decided = 1;
        if (w->op == 'A' && !w->committed)
            w->id = 0;
    }
}

/* Append one record per id, a single write and fdatasync. */
static int log_append(ims_coll *c, char op, const int64_t *ids, size_t n, ims_error *err)
{
    unsigned char stack[LOG_REC * 16], *r = n <= 16 ? stack : ims_malloc(n * LOG_REC);
    if (!r)
        return ims_error_set(err, IMS_ENOMEM, "%s/index.log: out of memory", c->dir);
    memset(r, 0, n * LOG_REC);
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = r + i * LOG_REC;
        ims__put_u32(p, LOG_MAGIC);
        p[4] = (unsigned char)op;
        ims__put_u64(p + 8, (uint64_t)ids[i]);
        ims__put_u32(p + 16, ims__crc32c(0, p, 16));
    }
    /* a short write (disk full) must not stay in the log: replay stops at
     * the first torn record and cuts everything after it, so the records
     * of later, acknowledged writes would be lost */
    off_t end = lseek(c->log_fd, 0, SEEK_END);
    ssize_t want = (ssize_t)(n * LOG_REC);
    int rc = IMS_OK;
    if (write(c->log_fd, r, (size_t)want) != want || fdatasync(c->log_fd)) {
        int e = errno;
        if (end >= 0 && ftruncate(c->log_fd, end) == 0)
            (void)fdatasync(c->log_fd);
        rc = ims_error_set_errno(err, IMS_EIO, e, "%s/index.log: cannot append", c->dir);
    }
    if (r != stack)
        ims_free(r);
    return rc;
}

/* Ids of the batch's undecided requests of kind op (committed ones only if
 * `committed`) into a new array (NULL on ENOMEM). */
static int64_t *batch_ids(wreq *b, char op, int committed, size_t *n)
{
    size_t cnt = 0;
    for (wreq *w = b; w; w = w->next)
        cnt += w->op == op;
    int64_t *ids = ims_malloc((cnt ? cnt : 1) * sizeof *ids);
    *n = 0;
    for (wreq *w = b; ids && w; w = w->next)
        if (w->op == op && !w->decided && (!committed || w->committed))
            ids[(*n)++] = w->id;
    return ids;
}

/* Step 1: answer deletes of unknown items, log the others' 'D' records. */
static int batch_log_deletes(ims_coll *c, ims_catalog *cat, wreq *b)
{
    int any = 0;
    for (wreq *w = b; w; w = w->next) {
        if (w->op != 'D')
            continue;
        ims_item it = {0};
        w->rc = ims_catalog_get(cat, w->id, &it, &w->err);
        if (!w->rc && it.status != IMS_ITEM_ACCEPTED)
            w->rc = ims_error_set(&w->err, IMS_ENOTFOUND, "item %lld not found", (long long)w->id);
        ims_item_clear(&it);
        if (w->rc == IMS_ENOTFOUND)
            w->decided = 1;
        else if (w->rc) {
            ims_error e = w->err;
            fail_undecided(b, 0, w->rc, &e);
            return e.code ? e.code : IMS_EIO;
        } else
            any = 1;
    }
    if (!any)
        return IMS_OK;
    size_t n;
    ims_error e;
    ims_error_clear(&e);
    int64_t *ids = batch_ids(b, 'D', 0, &n);
    int rc = ids ? log_append(c, 'D', ids, n, &e) : ims_error_set(&e, IMS_ENOMEM, "out of memory");
    ims_free(ids);
    if (rc)
        fail_undecided(b, 0, rc, &e);
    return rc;
}

/* 1 if an earlier add of this batch made item id. */
static int added_before(const wreq *b, const wreq *self, int64_t id)
{
    for (const wreq *w = b; w && w != self; w = w->next)
        if (w->op == 'A' && !w->decided && w->id == id)
            return 1;
    return 0;
}

/* One add inside the batch's transaction: IMS_OK, a per-item answer
 * (w->decided), or an error that fails the batch. */
static int batch_add_one(ims_coll *c, ims_catalog *cat, wreq *b, wreq *w)
{
    int rc = ims_catalog_add(cat, w->bytes, w->len, w->img->format, w->img->width, w->img->height,
                             w->category, w->name, NULL,
                             w->metadata && *w->metadata ? w->metadata : NULL, &w->id, &w->err);
    /* an accepted row the index lacks: an earlier add failed after its
     * commit (log or index); finish it rather than answer EEXIST for an
     * item no search finds (but not one an earlier add of this batch made) */
    w->repair = rc == IMS_EEXIST && w->id > 0 && !ims_hnsw_contains(c->index, (uint64_t)w->id) &&
                !added_before(b, w, w->id);
    if (rc == IMS_EEXIST && !w->repair) {
        w->rc = rc, w->decided = 1;
        return IMS_OK;
    }
    if (rc == IMS_EINVAL) { /* checked before any write: nothing to undo */
        w->rc = rc, w->decided = 1, w->id = 0;
        return IMS_OK;
    }
    if (!rc || w->repair)
        rc = ims_catalog_put_vectors(cat, COLL_VECTORS, c->enc.stamp, 1, &w->id, w->v, c->enc.dim,
                                     &w->err);
    return rc;
}

/* Step 2: every add and delete in one transaction. */
static int batch_commit(ims_coll *c, ims_catalog *cat, wreq *b)
{
    ims_error e;
    ims_error_clear(&e);
    int rc = ims_catalog_begin(cat, &e);
    for (wreq *w = b; !rc && w; w = w->next) {
        if (w->decided)
            continue;
        if (w->op == 'A') {
            rc = batch_add_one(c, cat, b, w);
        } else {
            rc = ims_catalog_delete(cat, w->id, &w->err);
            if (rc == IMS_ENOTFOUND) /* an earlier delete of this batch */
                w->rc = rc, w->decided = 1, rc = IMS_OK;
        }
        if (rc)
            e = w->err;
    }
    if (!rc)
        rc = ims_catalog_commit(cat, &e);
    else
        ims_catalog_rollback(cat);
    if (rc) {
        fail_undecided(b, 0, rc, &e);
        return rc;
    }
    for (wreq *w = b; w; w = w->next)
        if (!w->decided)
            w->committed = 1;
    return IMS_OK;
}

/* Step 3: the committed adds' 'A' records. */
static int batch_log_adds(ims_coll *c, wreq *b)
{
    size_t n;
    ims_error e;
    ims_error_clear(&e);
    int64_t *ids = batch_ids(b, 'A', 1, &n);
    int rc = !ids ? ims_error_set(&e, IMS_ENOMEM, "out of memory")
             : n  ? log_append(c, 'A', ids, n, &e)
                  : IMS_OK;
    ims_free(ids);
    if (rc)
        fail_undecided(b, 'A', rc, &e);
    return rc;
}

/* Step 4: the index; adds that are not searchable are taken back. */
static void batch_index(ims_coll *c, ims_catalog *cat, wreq *b)
{
    for (wreq *w = b; w; w = w->next) {
        if (!w->committed)
            continue;
        if (w->op == 'D') {
            if (ims_hnsw_contains(c->index, (uint64_t)w->id))
                ims_hnsw_delete(c->index, (uint64_t)w->id);
            continue;
        }
        if (!w->decided && ims_hnsw_add(c->index, (uint64_t)w->id, w->v))
            w->rc = ims_error_set(&w->err, IMS_EIO, "index: item %lld: %s", (long long)w->id,
                                  ims_hnsw_errmsg(c->index)),
            w->decided = 1;
        if (w->rc && !w->repair && !ims_hnsw_contains(c->index, (uint64_t)w->id)) {
            /* not searchable: take the row back (if that fails too, a retry
             * or the next open finishes the item) */
            if (ims_catalog_delete(cat, w->id, NULL) == IMS_OK)
                w->id = 0;
        } else if (!w->rc && w->repair) {
            w->rc = ims_error_set(&w->err, IMS_EEXIST, "add: the same image is item %lld",
                                  (long long)w->id);
        }
    }
}

/* Run one batch (the leader, no lock held). */
static void run_batch(ims_coll *c, wreq *b)
{
    ims_catalog *cat = cat_take(c);
    if (!batch_log_deletes(c, cat, b) && !batch_commit(c, cat, b))
        (void)batch_log_adds(c, b);
    batch_index(c, cat, b);
    cat_put(c, cat);
    int64_t n = 0;
    for (wreq *w = b; w; w = w->next)
        n++;
    pthread_mutex_lock(&c->stats_mu);
    c->write_batches++;
    c->writes += n;
    pthread_mutex_unlock(&c->stats_mu);
    filters_clear(c);
}

/* Queue r and return once its batch has run (led by this thread or another). */
static void submit(ims_coll *c, wreq *r)
{
    pthread_mutex_lock(&c->q_mu);
    r->next = NULL;
    if (c->q_tail)
        c->q_tail->next = r;
    else
        c->q_head = r;
    c->q_tail = r;
    while (!r->done) {
        if (c->q_busy) {
            pthread_cond_wait(&c->q_cv, &c->q_mu);
            continue;
        }
        /* lead: take the queue (its first MAX_BATCH) and run it unlocked */
        c->q_busy = 1;
        wreq *b = c->q_head, *last = b;
        for (int i = 1; i < MAX_BATCH && last->next; i++)
            last = last->next;
        c->q_head = last->next;
        if (!c->q_head)
            c->q_tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&c->q_mu);
        run_batch(c, b);
        pthread_mutex_lock(&c->q_mu);
        for (wreq *w = b, *nx; w; w = nx) {
            nx = w->next;
            w->done = 1;
        }
        c->q_busy = 0;
        pthread_cond_broadcast(&c->q_cv);
    }
    pthread_mutex_unlock(&c->q_mu);
}

/* Copy a request's answer to the caller. */
static int answer(const wreq *r, ims_error *err)
{
    if (err && r->rc)
        *err = r->err;
    return r->rc;
}

int ims_coll_add(ims_coll *c, const void *bytes, size_t len, const char *category, const char *name,
                 const char *metadata, int64_t *id, ims_error *err)
{
    *id = 0;
    if (c->readonly)
        return ims_error_set(err, IMS_ESTATE, "%s: opened read-only", c->dir);
    if (metadata && *metadata) {
        json_error_t je;
        json_t *j = json_loads(metadata, JSON_REJECT_DUPLICATES, &je);
        int ok = j && json_is_object(j);
        json_decref(j);
        if (!ok)
            return ims_error_set(err, IMS_EINVAL, "metadata: not a JSON object (%s)",
                                 j ? "another JSON value" : je.text);
    }
    ims_image_opts io = {.max_pixels = c->max_pixels};
    ims_image *img = NULL;
    int rc = ims_image_load_memory(bytes, len, &io, &img, err);
    if (rc)
        return rc;
    float *v = ims_malloc((size_t)c->enc.dim * sizeof(float));
    if (!v)
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
    /* encode and store the image file (its own fsync) before queueing:
     * a batch holds only the catalogue/log/index part, and an image file
     * without a row is harmless (items.c) */
    if (!rc)
        rc = encode_image(c, img, v, c->queue_timeout_ms, err);
    if (!rc) {
        ims_catalog *cat = cat_take(c);
        rc = ims_catalog_store_image(cat, bytes, len, img->format, err);
        cat_put(c, cat);
    }
    if (!rc) {
        wreq r = {.op = 'A',
                  .bytes = bytes,
                  .len = len,
                  .img = img,
                  .category = category,
                  .name = name,
                  .metadata = metadata,
                  .v = v};
        ims_error_clear(&r.err);
        submit(c, &r);
        *id = r.id;
        rc = answer(&r, err);
    }
    ims_image_free(img);
    ims_free(v);
    return rc;
}

int ims_coll_delete(ims_coll *c, int64_t id, ims_error *err)
{
    if (c->readonly)
        return ims_error_set(err, IMS_ESTATE, "%s: opened read-only", c->dir);
    wreq r = {.op = 'D', .id = id};
    ims_error_clear(&r.err);
    submit(c, &r);
    return answer(&r, err);
}

void ims_coll_get_stats(ims_coll *c, ims_coll_stats *s)
{
    memset(s, 0, sizeof *s);
    s->indexed = (int64_t)ims_hnsw_count(c->index);
    s->items = s->indexed;
    s->dim = c->enc.dim;
    snprintf(s->model, sizeof s->model, "%s", ims_nn_name(c->enc.model));
    ims_hnsw_info info;
    ims_hnsw_get_info(c->index, &info);
    s->index_bytes = info.memory_bytes;
    s->index_mapped = info.mapped;
    pthread_mutex_lock(&c->stats_mu);
    s->encodes = c->encodes;
    s->encode_seconds = c->encode_seconds;
    s->writes = c->writes;
    s->write_batches = c->write_batches;
    pthread_mutex_unlock(&c->stats_mu);
}

int ims_coll_categories(ims_coll *c, char ***names, int64_t **counts, size_t *n, ims_error *err)
{
    ims_catalog *cat = cat_take(c);
    int rc = ims_catalog_categories(cat, names, counts, n, err);
    cat_put(c, cat);
    return rc;
}
