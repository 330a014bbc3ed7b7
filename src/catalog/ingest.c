/* SPDX-License-Identifier: MIT */
/*
 * ingest.c — a folder of images (plus an optional metadata CSV) into the
 * catalogue.
 *
 * Phases:
 *   1. prepare (no writes): the CSV is parsed whole and its join keys
 *      indexed (a malformed CSV or an ambiguous key fails here, so nothing
 *      is imported); DIR is walked and sorted (scan.c);
 *   2. batches: files are processed in path order, BATCH_FILES per
 *      IMMEDIATE transaction. Per file: the skip test (same path, size and
 *      mtime as recorded: nothing read); else read, SHA-256, and if the
 *      hash equals the recorded one it is still unchanged; else decode once
 *      (the check, ims_image_check_memory: no pixels kept), then DUPLICATE of the accepted
 *      item with that hash, or ACCEPTED with its image stored
 *      (content-addressed) before its row; failures are REJECTED rows with
 *      a reason. A changed file keeps its item id; its vectors are dropped
 *      in the same transaction. The read, hash and decode check of the
 *      next files run ahead on opts->threads threads ("reading ahead");
 *      everything touching the catalogue or the store stays on the
 *      calling thread, in path order;
 *   3. finish (one transaction): files not seen in this run become
 *      VANISHED (their vectors dropped); duplicates whose kept item no
 *      longer holds their content are re-pointed, or the first of them is
 *      promoted to ACCEPTED (its image file is already in the store); CSV
 *      rows that matched no file are reported.
 *
 * A crash loses at most the open batch: committed batches stay, and the
 * re-run skips them. Images without a CSV row get "{}" metadata, their file
 * stem as name. Without a CSV, a re-run keeps the metadata rows already
 * have.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "catalog/catalog_int.h"
#include "imgsim/image.h"

#define BATCH_FILES 256

/* ---- metadata join --------------------------------------------------------- */
typedef struct key_ref {
    const char *key;
    size_t row;
} key_ref;

typedef struct join {
    int on; /* a CSV was given */
    ims__csv t;
    int col_key;          /* column joined on (file, else id) */
    int by_file;          /* 1: key is a file name/path, 0: an id vs the stem */
    int col_id, col_name; /* -1 when absent */
    key_ref *keys;        /* sorted by key */
    size_t n_keys;
    unsigned char *matched; /* per row */
} join;

static int cmp_key(const void *a, const void *b)
{
    return strcmp(((const key_ref *)a)->key, ((const key_ref *)b)->key);
}

/* A file column value as compared: without a leading "./". */
static const char *norm_key(const char *k)
{
    while (k[0] == '.' && k[1] == '/')
        k += 2;
    return k;
}

static int join_open(join *j, const ims_ingest_opts *o, ims_error *err)
{
    memset(j, 0, sizeof *j);
    j->col_id = j->col_name = j->col_key = -1;
    if (!o || !o->metadata_csv) {
        if (o && (o->id_column || o->file_column))
            return ims_error_set(err, IMS_EINVAL, "--id-column/--file-column need --metadata");
        return IMS_OK;
    }
    if (!o->id_column && !o->file_column)
        return ims_error_set(err, IMS_EINVAL,
                             "%s: say which column names the image (--id-column or --file-column)",
                             o->metadata_csv);
    int rc = ims__csv_read(o->metadata_csv, &j->t, err);
    if (rc)
        return rc;
    j->on = 1;
    const char *want[2] = {o->file_column, o->id_column};
    int col[2] = {-1, -1};
    for (int i = 0; i < 2; i++) {
        if (!want[i])
            continue;
        if ((col[i] = ims__csv_column(&j->t, want[i])) < 0)
            return ims_error_set(err, IMS_EFORMAT, "%s: line 1: no column '%s' in the header",
                                 o->metadata_csv, want[i]);
    }
    j->by_file = col[0] >= 0;
    j->col_key = j->by_file ? col[0] : col[1];
    j->col_id = col[1];
    j->col_name = ims__csv_column(&j->t, "name");
    j->matched = ims_calloc(j->t.n_rows ? j->t.n_rows : 1, 1);
    j->keys = ims_calloc(j->t.n_rows ? j->t.n_rows : 1, sizeof *j->keys);
    if (!j->matched || !j->keys)
        return ims_error_set(err, IMS_ENOMEM, "metadata: out of memory");
    for (size_t r = 0; r < j->t.n_rows; r++) {
        const char *k = j->t.cells[r * j->t.n_cols + (size_t)j->col_key];
        if (j->by_file)
            k = norm_key(k);
        if (*k)
            j->keys[j->n_keys++] = (key_ref){k, r};
    }
    qsort(j->keys, j->n_keys, sizeof *j->keys, cmp_key);
    for (size_t i = 1; i < j->n_keys; i++)
        if (!strcmp(j->keys[i].key, j->keys[i - 1].key)) {
            size_t a = IMS_MIN(j->keys[i].row, j->keys[i - 1].row);
            size_t b = IMS_MAX(j->keys[i].row, j->keys[i - 1].row);
            return ims_error_set(err, IMS_EFORMAT,
                                 "%s: line %ld: duplicate %s '%s' (also on line %ld)",
                                 o->metadata_csv, j->t.line[b], j->t.header[j->col_key],
                                 j->keys[i].key, j->t.line[a]);
        }
    return IMS_OK;
}

static void join_close(join *j)
{
    ims__csv_free(&j->t);
    ims_free(j->keys);
    ims_free(j->matched);
}

static long find_key(const join *j, const char *k)
{
    key_ref probe = {k, 0};
    const key_ref *hit =
        j->n_keys ? bsearch(&probe, j->keys, j->n_keys, sizeof *j->keys, cmp_key) : NULL;
    return hit ? (long)hit->row : -1;
}

/* The CSV row of a file (rel path, then bare name; or its stem for ids), -1 if none. */
static long join_lookup(const join *j, const char *rel)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    if (j->by_file) {
        long r = find_key(j, rel);
        return r >= 0 ? r : find_key(j, base);
    }
    char stem[1024];
    snprintf(stem, sizeof stem, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem)
        *dot = '\0';
    return find_key(j, stem);
}

/* ---- per-run state ---------------------------------------------------------- */
typedef struct run {
    ims_catalog *c;
    const ims_ingest_opts *o;
    ims_ingest_summary *sum;
    join j;
    const char *root; /* realpath of DIR */
    int64_t run_no;
    int64_t max_pixels;
    ims_error *err;
    struct ahead *ahead; /* files read ahead, or NULL */
} run;

static void report(run *r, const char *kind, const char *path, const char *msg)
{
    if (r->o && r->o->report)
        r->o->report(r->o->ud, kind, path, msg);
}

/* What the file's row will say about metadata. NULL fields: keep the row's. */
typedef struct meta_out {
    char *json; /* jansson-allocated (free()), or NULL */
    const char *name, *product_id;
    char stem[1024];
    long row; /* CSV row, -1 */
} meta_out;

static int build_meta(run *r, const ims__entry *e, meta_out *m)
{
    memset(m, 0, sizeof *m);
    m->row = -1;
    const char *base = strrchr(e->rel, '/');
    snprintf(m->stem, sizeof m->stem, "%s", base ? base + 1 : e->rel);
    char *dot = strrchr(m->stem, '.');
    if (dot && dot != m->stem)
        *dot = '\0';
    ims__utf8_scrub(m->stem); /* the item's name; the CSV join uses e->rel */
    if (!r->j.on)
        return IMS_OK;
    m->name = m->stem;
    m->product_id = "";
    long row = join_lookup(&r->j, e->rel);
    json_t *obj = json_object();
    if (!obj)
        return ims_error_set(r->err, IMS_ENOMEM, "metadata: out of memory");
    if (row >= 0) {
        const ims__csv *t = &r->j.t;
        char **cells = t->cells + (size_t)row * t->n_cols;
        for (size_t i = 0; i < t->n_cols; i++)
            if (json_object_set_new(obj, t->header[i], json_string(cells[i])) != 0) {
                json_decref(obj);
                return ims_error_set(r->err, IMS_ENOMEM, "metadata: out of memory");
            }
        if (r->j.col_name >= 0 && cells[r->j.col_name][0])
            m->name = cells[r->j.col_name];
        if (r->j.col_id >= 0)
            m->product_id = cells[r->j.col_id];
        r->j.matched[row] = 1;
        m->row = row;
    }
    m->json = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!m->json)
        return ims_error_set(r->err, IMS_ENOMEM, "metadata: out of memory");
    return IMS_OK;
}

/* An image (not rejected) seen without a CSV row. */
static void note_without_row(run *r, const ims__entry *e, const meta_out *m)
{
    if (!r->j.on || m->row >= 0)
        return;
    r->sum->images_without_row++;
    report(r, "image_without_row", e->rel, "no metadata row");
}

/* ---- one file ---------------------------------------------------------------- */
typedef struct old_row {
    int have;
    int64_t id, size, mtime_ns;
    char sha[65];
    char format[8];
    int status, reject;
} old_row;

static int lookup_old(run *r, const char *rel, old_row *o)
{
    memset(o, 0, sizeof *o);
    o->reject = -1;
    sqlite3_stmt *s;
    int rc = ims__cat_stmt(r->c, ST_ITEM_BY_PATH, &s, r->err);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, rel, -1, SQLITE_STATIC);
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        o->have = 1;
        o->id = sqlite3_column_int64(s, 0);
        o->size = sqlite3_column_int64(s, 1);
        o->mtime_ns = sqlite3_column_int64(s, 2);
        const char *sha = (const char *)sqlite3_column_text(s, 3);
        snprintf(o->sha, sizeof o->sha, "%s", sha ? sha : "");
        o->status = sqlite3_column_int(s, 4);
        o->reject = sqlite3_column_type(s, 5) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 5);
        const char *fmt = (const char *)sqlite3_column_text(s, 6);
        snprintf(o->format, sizeof o->format, "%s", fmt ? fmt : "");
    } else if (src != SQLITE_DONE) {
        rc = ims__cat_dberr(r->c, src, "look up path", r->err);
    }
    sqlite3_reset(s);
    return rc;
}

/* Unchanged: note that this run saw it, refresh size/mtime and metadata. */
static int mark_seen(run *r, const old_row *o, const ims__entry *e, const meta_out *m)
{
    sqlite3_stmt *s;
    int rc = ims__cat_stmt(r->c, ST_ITEM_SEEN, &s, r->err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, o->id);
    sqlite3_bind_int64(s, 2, r->run_no);
    sqlite3_bind_int64(s, 3, e->size);
    sqlite3_bind_int64(s, 4, e->mtime_ns);
    int src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return ims__cat_dberr(r->c, src, "mark seen", r->err);
    if (!m->json)
        return IMS_OK;
    if ((rc = ims__cat_stmt(r->c, ST_ITEM_SET_META, &s, r->err)))
        return rc;
    sqlite3_bind_int64(s, 1, o->id);
    sqlite3_bind_text(s, 2, m->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, m->product_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, m->json, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    return src == SQLITE_DONE ? IMS_OK : ims__cat_dberr(r->c, src, "update metadata", r->err);
}

/* The outcome of checking one file. */
typedef struct verdict {
    int status; /* ACCEPTED, DUPLICATE or REJECTED */
    int reject; /* enum ims_reject_reason, when REJECTED */
    char reason[384];
    char sha[65];
    char format[8];
    int width, height;
    int64_t bytes;
    int64_t dup_of;
} verdict;

static void reject(verdict *v, int why, const char *detail)
{
    v->status = IMS_ITEM_REJECTED;
    v->reject = why;
    if (detail && *detail)
        snprintf(v->reason, sizeof v->reason, "%s: %s", ims_reject_reason_name(why), detail);
    else
        snprintf(v->reason, sizeof v->reason, "%s", ims_reject_reason_name(why));
}

/* A decoder failure on a file that has the format's start but not its end. */
static int looks_truncated(const unsigned char *b, size_t n)
{
    if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) { /* JPEG: EOI marker near the end */
        size_t from = n > 4096 ? n - 4096 : 0;
        for (size_t i = n - 1; i > from; i--)
            if (b[i - 1] == 0xFF && b[i] == 0xD9)
                return 0;
        return 1;
    }
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) /* PNG: IEND chunk last */
        return n < 12 || memcmp(b + n - 8, "IEND", 4) != 0;
    if (n >= 6 && !memcmp(b, "GIF8", 4)) /* GIF: trailer byte */
        return b[n - 1] != 0x3B;
    return 0;
}

/* Decode once without keeping the pixels (the check); classify a failure. */
static void check_image(run *r, const unsigned char *buf, size_t len, verdict *v)
{
    ims_image_opts io = {.max_pixels = (uint64_t)r->max_pixels};
    ims_image_info info;
    ims_error e;
    ims_error_clear(&e);
    int rc = ims_image_check_memory(buf, len, &io, &info, &e);
    if (rc == IMS_OK) {
        v->status = IMS_ITEM_ACCEPTED;
        v->width = info.width;
        v->height = info.height;
        snprintf(v->format, sizeof v->format, "%s", info.format);
        return;
    }
    const char *detail = e.msg;
    if (!strncmp(detail, "<memory>: ", 10))
        detail += 10;
    switch (rc) {
    case IMS_EFORMAT:
    case IMS_EUNSUPPORTED:
        reject(v, IMS_REJECT_UNSUPPORTED, detail);
        break;
    case IMS_ETOOBIG:
    case IMS_ENOMEM:
        reject(v, IMS_REJECT_TOO_BIG, detail);
        break;
    case IMS_EIO:
        reject(v, IMS_REJECT_UNREADABLE, detail);
        break;
    default:
        reject(v, looks_truncated(buf, len) ? IMS_REJECT_TRUNCATED : IMS_REJECT_CORRUPT, detail);
    }
}

/* Read a whole regular file into *buf (ims_free). errno-style failure in msg. */
static int read_file(const char *path, int64_t limit, unsigned char **buf, size_t *len, char *msg,
                     size_t n_msg)
{
    *buf = NULL, *len = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(msg, n_msg, "%s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(msg, n_msg, "not a regular file");
        close(fd);
        return -1;
    }
    if (st.st_size > limit) {
        close(fd);
        return 1; /* too big */
    }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *b = ims_malloc(n ? n : 1);
    if (!b) {
        snprintf(msg, n_msg, "out of memory");
        close(fd);
        return -1;
    }
    while (got < n) {
        ssize_t k = read(fd, b + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    int e = errno;
    close(fd);
    if (got != n) {
        snprintf(msg, n_msg, "short read: %s", got < n && e ? strerror(e) : "file shrank");
        ims_free(b);
        return -1;
    }
    *buf = b, *len = n;
    return 0;
}

/* ---- reading ahead ------------------------------------------------------------ */
/* The per-file work that needs no catalogue (read, SHA-256, the decode
 * check) runs ahead of the catalogue thread on a few threads; the
 * catalogue thread then takes each file's result in path order and does
 * everything else exactly as it would have alone (lookups, store, rows,
 * reports), so the outcome does not depend on the thread count. Whether a
 * file is read, and decoded, follows the same tests as process() on the
 * row as it was when the file was queued; process() checks again and does
 * inline whatever is missing. A decode check that fails is done again on
 * the catalogue thread while no other decode runs: libvips keeps one
 * process-wide error buffer, and the rejection reason must be the text of
 * this file's failure alone. */
#define AHEAD_BYTES (64ll << 20) /* file bytes read ahead and not yet taken */

typedef struct prep {
    int state; /* P_IDLE, P_QUEUED, P_BUSY, P_DONE */
    int read;  /* the skip test failed when queued: read (and hash) it */
    int live;  /* the row was live when queued */
    char old_sha[65];
    int got; /* read_file's result */
    unsigned char *buf;
    size_t len;
    char msg[384]; /* read_file's failure */
    char sha[65];
    int decoded; /* check_image passed; its verdict: */
    int width, height;
    char format[8];
} prep;

enum { P_IDLE, P_QUEUED, P_BUSY, P_DONE };

typedef struct ahead {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_rwlock_t decode; /* readers: decode checks; writer: a re-check */
    prep *p;                 /* one per file of the batch */
    const ims__entry *e;
    size_t lo, hi; /* the batch: files [lo, hi) */
    size_t next;   /* lowest file not yet claimed */
    size_t queued; /* files [lo, queued) are queued or further */
    int64_t bytes; /* read ahead and not yet taken */
    int stop;
    int64_t max_pixels;
    pthread_t *th;
    int n_th;
} ahead;

static void check_image(run *r, const unsigned char *buf, size_t len, verdict *v);
static int read_file(const char *path, int64_t limit, unsigned char **buf, size_t *len, char *msg,
                     size_t n_msg);

/* Read, hash and check file k of the batch (no lock held). */
static void prep_one(ahead *a, size_t k)
{
    prep *p = &a->p[k - a->lo];
    const ims__entry *e = &a->e[k];
    if (!p->read)
        return;
    p->got =
        read_file(e->real, IMS_CATALOG_MAX_FILE_BYTES, &p->buf, &p->len, p->msg, sizeof p->msg);
    if (p->got != 0)
        return;
    ims__sha256_hex(p->buf, p->len, p->sha);
    if (p->live && !strcmp(p->old_sha, p->sha))
        return; /* unchanged bytes: no decode */
    run r = {.max_pixels = a->max_pixels};
    verdict v;
    memset(&v, 0, sizeof v);
    pthread_rwlock_rdlock(&a->decode);
    check_image(&r, p->buf, p->len, &v);
    pthread_rwlock_unlock(&a->decode);
    if (v.status == IMS_ITEM_ACCEPTED) { /* a failure is checked again, alone */
        p->decoded = 1;
        p->width = v.width, p->height = v.height;
        memcpy(p->format, v.format, sizeof p->format);
    }
}

/* Claim queued files in order and prepare them; with wait_for, return
 * once that file is done (the catalogue thread helping), else run until
 * stopped (a helper thread). */
static void ahead_work(ahead *a, size_t wait_for)
{
    int helper = wait_for == (size_t)-1;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        if (a->stop || (!helper && a->p[wait_for - a->lo].state == P_DONE))
            break;
        if (a->next < a->queued) {
            size_t k = a->next++;
            a->p[k - a->lo].state = P_BUSY;
            pthread_mutex_unlock(&a->mu);
            prep_one(a, k);
            pthread_mutex_lock(&a->mu);
            a->p[k - a->lo].state = P_DONE;
            pthread_cond_broadcast(&a->done);
        } else if (helper) {
            pthread_cond_wait(&a->work, &a->mu);
        } else {
            pthread_cond_wait(&a->done, &a->mu);
        }
    }
    pthread_mutex_unlock(&a->mu);
}

static void *ahead_thread(void *arg)
{
    ahead_work(arg, (size_t)-1);
    return NULL;
}

/* Queue files after the one being taken while the bytes in flight allow
 * (at least two per thread queued, whatever their size, so no thread
 * idles on a big file). Each queued file's row is looked up now. */
static int ahead_queue(run *r, ahead *a, size_t taking);

/* Insert or update the file's row with the verdict. */
static int write_row(run *r, const old_row *o, const ims__entry *e, const meta_out *m,
                     const verdict *v)
{
    sqlite3_stmt *s;
    int rc = ims__cat_stmt(r->c, o->have ? ST_ITEM_UPDATE : ST_ITEM_INSERT, &s, r->err);
    if (rc)
        return rc;
    const char *name = m->json ? m->name : (o->have ? NULL : m->stem);
    const char *pid = m->json ? m->product_id : (o->have ? NULL : "");
    const char *meta = m->json ? m->json : (o->have ? NULL : "{}");
    sqlite3_bind_int(s, 1, 0);
    sqlite3_bind_text(s, 2, e->rel, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, e->category, -1, SQLITE_STATIC);
    if (name)
        sqlite3_bind_text(s, 4, name, -1, SQLITE_STATIC);
    if (pid)
        sqlite3_bind_text(s, 5, pid, -1, SQLITE_STATIC);
    if (meta)
        sqlite3_bind_text(s, 6, meta, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, v->sha, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, v->format, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 9, v->width);
    sqlite3_bind_int(s, 10, v->height);
    sqlite3_bind_int64(s, 11, v->bytes);
    sqlite3_bind_int(s, 12, v->status);
    if (v->status == IMS_ITEM_REJECTED)
        sqlite3_bind_int(s, 13, v->reject);
    sqlite3_bind_text(s, 14, v->reason, -1, SQLITE_STATIC);
    if (v->dup_of)
        sqlite3_bind_int64(s, 15, v->dup_of);
    sqlite3_bind_int64(s, 16, e->size);
    sqlite3_bind_int64(s, 17, e->mtime_ns);
    sqlite3_bind_int64(s, 18, r->run_no);
    if (o->have)
        sqlite3_bind_int64(s, 19, o->id);
    int src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return ims__cat_dberr(r->c, src, e->rel, r->err);
    if (o->have && strcmp(o->sha, v->sha) != 0) { /* new content: its vectors are stale */
        if ((rc = ims__cat_stmt(r->c, ST_VEC_DROP_ITEM, &s, r->err)))
            return rc;
        sqlite3_bind_int64(s, 1, o->id);
        src = sqlite3_step(s);
        sqlite3_reset(s);
        if (src != SQLITE_DONE)
            return ims__cat_dberr(r->c, src, "drop vectors", r->err);
    }
    return IMS_OK;
}

/* Count and report a verdict. */
static void tally(run *r, const ims__entry *e, const meta_out *m, const verdict *v)
{
    ims_ingest_summary *sum = r->sum;
    if (v->status == IMS_ITEM_REJECTED) {
        sum->rejected++;
        sum->by_reason[v->reject]++;
        report(r, "rejected", e->rel, v->reason);
        return;
    }
    if (v->status == IMS_ITEM_DUPLICATE) {
        sum->duplicates++;
        char msg[1200];
        ims_item kept;
        if (ims_catalog_get(r->c, v->dup_of, &kept, NULL) == IMS_OK) {
            snprintf(msg, sizeof msg, "same content as item %lld (%s)", (long long)v->dup_of,
                     kept.path);
            ims_item_clear(&kept);
        } else {
            snprintf(msg, sizeof msg, "same content as item %lld", (long long)v->dup_of);
        }
        report(r, "duplicate", e->rel, msg);
    } else {
        sum->accepted++;
    }
    note_without_row(r, e, m);
}

/* A file rewritten in place while the store held a hard link of it: the
 * stored copy of the old content now holds the new bytes. Unlink it, so
 * it is never served under the old hash; a duplicate promoted in the
 * finish phase stores that content again from its own file. */
static void unshare_store(run *r, const old_row *o, const ims__entry *e)
{
    char path[4096];
    struct stat a, b;
    if (ims__store_path(r->c, o->sha, o->format, path, sizeof path, NULL) == IMS_OK &&
        stat(path, &a) == 0 && stat(e->real, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        unlink(path);
}

static int process(run *r, const ims__entry *e, prep *p)
{
    old_row o;
    meta_out m;
    verdict v;
    memset(&v, 0, sizeof v);
    unsigned char *buf = NULL;
    size_t len = 0;
    if (p && p->state != P_DONE)
        p = NULL;
    if (p && p->buf) { /* taken: its bytes are ours now */
        buf = p->buf, len = p->len;
        p->buf = NULL;
    }
    int rc = lookup_old(r, e->rel, &o);
    if (rc || (rc = build_meta(r, e, &m)))
        return rc;
    int live = o.have && o.status != IMS_ITEM_VANISHED;
    if (e->kind != ENT_FILE) {
        reject(&v, e->kind == ENT_OUTSIDE ? IMS_REJECT_OUTSIDE : IMS_REJECT_UNREADABLE, e->note);
        if (live && o.status == IMS_ITEM_REJECTED && o.reject == v.reject) {
            r->sum->unchanged++;
            rc = mark_seen(r, &o, e, &m);
            goto done;
        }
    } else if (live && o.size == e->size && o.mtime_ns == e->mtime_ns) {
        r->sum->unchanged++; /* the skip test: nothing read */
        if (o.status != IMS_ITEM_REJECTED)
            note_without_row(r, e, &m);
        rc = mark_seen(r, &o, e, &m);
        goto done;
    } else {
        int got;
        if (p && p->read) {
            got = p->got;
            snprintf(v.reason, sizeof v.reason, "%s", p->msg);
        } else {
            p = NULL; /* not read ahead: the row changed since */
            got = read_file(e->real, IMS_CATALOG_MAX_FILE_BYTES, &buf, &len, v.reason,
                            sizeof v.reason);
        }
        char detail[sizeof v.reason];
        snprintf(detail, sizeof detail, "%s", v.reason);
        if (got == 1) {
            snprintf(detail, sizeof detail, "file of %lld bytes is over the %lld-byte limit",
                     (long long)e->size, (long long)IMS_CATALOG_MAX_FILE_BYTES);
            reject(&v, IMS_REJECT_TOO_BIG, detail);
        } else if (got < 0) {
            reject(&v, IMS_REJECT_UNREADABLE, detail);
        } else {
            v.bytes = (int64_t)len;
            if (p)
                memcpy(v.sha, p->sha, sizeof v.sha);
            else
                ims__sha256_hex(buf, len, v.sha);
            if (live && !strcmp(o.sha, v.sha)) {
                r->sum->unchanged++; /* touched, same bytes */
                if (o.status != IMS_ITEM_REJECTED)
                    note_without_row(r, e, &m);
                rc = mark_seen(r, &o, e, &m);
                goto done;
            }
            if (live && o.status == IMS_ITEM_ACCEPTED)
                unshare_store(r, &o, e);
            if (p && p->decoded) {
                v.status = IMS_ITEM_ACCEPTED;
                v.width = p->width, v.height = p->height;
                memcpy(v.format, p->format, sizeof v.format);
            } else if (r->ahead) { /* alone: the failure's own message */
                pthread_rwlock_wrlock(&r->ahead->decode);
                check_image(r, buf, len, &v);
                pthread_rwlock_unlock(&r->ahead->decode);
            } else {
                check_image(r, buf, len, &v);
            }
        }
    }
    if (v.status == IMS_ITEM_ACCEPTED) {
        int64_t kept;
        rc = ims_catalog_find_sha256(r->c, v.sha, &kept, r->err);
        if (rc == IMS_OK && (!o.have || kept != o.id)) {
            v.status = IMS_ITEM_DUPLICATE;
            v.dup_of = kept;
        } else if (rc == IMS_OK || rc == IMS_ENOTFOUND) {
            ims_error_clear(r->err);
            rc = ims__store_image(r->c, v.sha, v.format, e->real, buf, len, r->err);
        }
        if (rc)
            goto done;
    }
    if ((rc = write_row(r, &o, e, &m, &v)))
        goto done;
    tally(r, e, &m, &v);
done:
    ims_free(buf);
    free(m.json);
    return rc;
}

static int ahead_queue(run *r, ahead *a, size_t taking)
{
    size_t min_q = IMS_MIN(a->hi, taking + 1 + 2 * (size_t)(a->n_th + 1));
    for (;;) {
        pthread_mutex_lock(&a->mu);
        size_t k = a->queued;
        int64_t bytes = a->bytes;
        pthread_mutex_unlock(&a->mu);
        if (k >= a->hi)
            return IMS_OK;
        const ims__entry *e = &a->e[k];
        if (k >= min_q && bytes + e->size > AHEAD_BYTES)
            return IMS_OK;
        prep *p = &a->p[k - a->lo];
        memset(p, 0, sizeof *p);
        old_row o;
        int rc = lookup_old(r, e->rel, &o);
        if (rc)
            return rc;
        p->live = o.have && o.status != IMS_ITEM_VANISHED;
        p->read =
            e->kind == ENT_FILE && !(p->live && o.size == e->size && o.mtime_ns == e->mtime_ns);
        memcpy(p->old_sha, o.sha, sizeof p->old_sha);
        pthread_mutex_lock(&a->mu);
        p->state = P_QUEUED;
        a->queued = k + 1;
        a->bytes += p->read ? e->size : 0; /* counted from the queue on */
        pthread_cond_signal(&a->work);
        pthread_mutex_unlock(&a->mu);
    }
}

/* Take file k: wait for its preparation (helping with the queue). */
static prep *ahead_take(ahead *a, size_t k)
{
    ahead_work(a, k);
    prep *p = &a->p[k - a->lo];
    pthread_mutex_lock(&a->mu);
    a->bytes -= p->read ? a->e[k].size : 0;
    pthread_mutex_unlock(&a->mu);
    return p;
}

static int ahead_start(ahead *a, const ims__scan *scan, int threads, int64_t max_pixels)
{
    memset(a, 0, sizeof *a);
    a->e = scan->e;
    a->max_pixels = max_pixels;
    a->p = ims_calloc(BATCH_FILES, sizeof *a->p);
    a->th = threads > 1 ? ims_calloc((size_t)threads - 1, sizeof *a->th) : NULL;
    if (!a->p || (threads > 1 && !a->th)) {
        ims_free(a->p);
        ims_free(a->th);
        return IMS_ENOMEM;
    }
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->work, NULL);
    pthread_cond_init(&a->done, NULL);
    pthread_rwlockattr_t ra; /* a re-check waits for the running decodes, not for new ones */
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&a->decode, &ra);
    pthread_rwlockattr_destroy(&ra);
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&a->th[a->n_th], NULL, ahead_thread, a))
            break; /* fewer helpers: the same result, later */
        a->n_th++;
    }
    return IMS_OK;
}

/* A new batch [lo, hi): every file of the last one has been taken. */
static void ahead_batch(ahead *a, size_t lo, size_t hi)
{
    pthread_mutex_lock(&a->mu);
    for (size_t k = a->lo; k < a->queued; k++)
        ims_free(a->p[k - a->lo].buf);
    memset(a->p, 0, BATCH_FILES * sizeof *a->p);
    a->lo = a->next = a->queued = lo, a->hi = hi;
    a->bytes = 0;
    pthread_mutex_unlock(&a->mu);
}

static void ahead_stop(ahead *a)
{
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    pthread_cond_broadcast(&a->work);
    pthread_cond_broadcast(&a->done);
    pthread_mutex_unlock(&a->mu);
    for (int i = 0; i < a->n_th; i++)
        pthread_join(a->th[i], NULL);
    for (size_t k = a->lo; k < a->queued; k++)
        ims_free(a->p[k - a->lo].buf);
    pthread_rwlock_destroy(&a->decode);
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->done);
    pthread_mutex_destroy(&a->mu);
    ims_free(a->p);
    ims_free(a->th);
}

/* ---- finish ------------------------------------------------------------------ */
static int mark_vanished(run *r)
{
    sqlite3_stmt *s;
    int src = sqlite3_prepare_v2(r->c->db,
                                 "SELECT path FROM items WHERE origin = 0 AND seen_run < ?1"
                                 " AND status NOT IN (3, 4) ORDER BY path",
                                 -1, &s, NULL);
    if (src != SQLITE_OK)
        return ims__cat_dberr(r->c, src, "vanished", r->err);
    sqlite3_bind_int64(s, 1, r->run_no);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        r->sum->vanished++;
        report(r, "vanished", (const char *)sqlite3_column_text(s, 0), "file is gone");
    }
    sqlite3_finalize(s);
    if (src != SQLITE_DONE)
        return ims__cat_dberr(r->c, src, "vanished", r->err);
    static const char *const sql[] = {
        "DELETE FROM vectors WHERE item_id IN (SELECT id FROM items WHERE origin = 0"
        " AND seen_run < ?1 AND status NOT IN (3, 4))",
        "UPDATE items SET status = 3, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now')"
        " WHERE origin = 0 AND seen_run < ?1 AND status NOT IN (3, 4)",
    };
    for (size_t i = 0; i < IMS_ARRAY_LEN(sql); i++) {
        if ((src = sqlite3_prepare_v2(r->c->db, sql[i], -1, &s, NULL)) != SQLITE_OK)
            return ims__cat_dberr(r->c, src, "vanished", r->err);
        sqlite3_bind_int64(s, 1, r->run_no);
        src = sqlite3_step(s);
        sqlite3_finalize(s);
        if (src != SQLITE_DONE)
            return ims__cat_dberr(r->c, src, "vanished", r->err);
    }
    return IMS_OK;
}

/* After the repair step of item id: when it was promoted to accepted,
 * make sure the store holds its content (it may not, see unshare_store),
 * copying it from its own file. */
static int restore_promoted(run *r, int64_t id)
{
    ims_item it;
    char store[4096], src[4096], msg[128];
    int rc = ims_catalog_get(r->c, id, &it, r->err);
    if (rc)
        return rc;
    if (it.status != IMS_ITEM_ACCEPTED || /* re-pointed, not promoted */
        ims__store_path(r->c, it.sha256, it.format, store, sizeof store, NULL) ||
        ims__file_has_sha(store, it.sha256))
        goto done;
    unlink(store);
    snprintf(src, sizeof src, "%s/%s", r->root, it.path);
    char *real = realpath(src, NULL);
    unsigned char *b = NULL;
    size_t n = 0;
    if (real && !strncmp(real, r->root, strlen(r->root)) &&
        read_file(real, IMS_CATALOG_MAX_FILE_BYTES, &b, &n, msg, sizeof msg) == 0) {
        char h[65];
        ims__sha256_hex(b, n, h);
        if (!strcmp(h, it.sha256))
            rc = ims__store_image(r->c, it.sha256, it.format, NULL, b, n, r->err);
    }
    if (!rc && !ims__file_has_sha(store, it.sha256))
        ims_log(IMS_LOG_WARN, "%s: item %lld: its image content is no longer available", r->c->dir,
                (long long)id);
    ims_free(b);
    free(real);
done:
    ims_item_clear(&it);
    return rc;
}

/* Duplicates whose kept item lost that content: re-point or promote. */
static int repair_duplicates(run *r)
{
    int64_t *ids;
    size_t n;
    int rc = ims__cat_collect_ids(r->c,
                                  "SELECT d.id FROM items d LEFT JOIN items k ON k.id = d.dup_of"
                                  " WHERE d.status = 1 AND (k.id IS NULL OR k.status NOT IN (0, 4)"
                                  " OR k.sha256 <> d.sha256) ORDER BY d.id",
                                  NULL, 0, &ids, &n, r->err);
    if (rc)
        return rc;
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(
        r->c->db,
        "UPDATE items SET"
        " dup_of = (SELECT k.id FROM items k WHERE k.status = 0 AND k.sha256 = items.sha256),"
        " status = CASE WHEN EXISTS (SELECT 1 FROM items k WHERE k.status = 0"
        " AND k.sha256 = items.sha256) THEN 1 ELSE 0 END,"
        " updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE id = ?1",
        -1, &s, NULL);
    if (src != SQLITE_OK)
        rc = ims__cat_dberr(r->c, src, "repair duplicates", r->err);
    for (size_t i = 0; i < n && !rc; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, ids[i]);
        if ((src = sqlite3_step(s)) != SQLITE_DONE)
            rc = ims__cat_dberr(r->c, src, "repair duplicates", r->err);
        else
            rc = restore_promoted(r, ids[i]);
    }
    sqlite3_finalize(s);
    ims_free(ids);
    return rc;
}

static void report_rows_without_image(run *r)
{
    const join *j = &r->j;
    for (size_t row = 0; j->on && row < j->t.n_rows; row++) {
        if (j->matched[row])
            continue;
        r->sum->rows_without_image++;
        char msg[64];
        snprintf(msg, sizeof msg, "line %ld: no image for this row", j->t.line[row]);
        report(r, "row_without_image", j->t.cells[row * j->t.n_cols + (size_t)j->col_key], msg);
    }
}

static int count_accepted(run *r)
{
    sqlite3_stmt *s;
    int src =
        sqlite3_prepare_v2(r->c->db, "SELECT count(*) FROM items WHERE status = 0", -1, &s, NULL);
    if (src != SQLITE_OK)
        return ims__cat_dberr(r->c, src, "count", r->err);
    if ((src = sqlite3_step(s)) == SQLITE_ROW)
        r->sum->total_accepted = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return src == SQLITE_ROW ? IMS_OK : ims__cat_dberr(r->c, src, "count", r->err);
}

/* The next run number, stored in the open transaction. */
static int next_run(run *r)
{
    char *v = NULL, buf[32];
    int rc = ims_catalog_get_meta(r->c, "ingest_run", &v, r->err);
    if (rc)
        return rc;
    r->run_no = (v ? strtoll(v, NULL, 10) : 0) + 1;
    ims_free(v);
    snprintf(buf, sizeof buf, "%lld", (long long)r->run_no);
    return ims_catalog_set_meta(r->c, "ingest_run", buf, r->err);
}

static int finish(run *r)
{
    int rc;
    if ((rc = ims__cat_exec(r->c, "BEGIN IMMEDIATE", r->err)) || (rc = mark_vanished(r)) ||
        (rc = repair_duplicates(r)) ||
        (rc = ims_catalog_set_meta(r->c, "ingest_dir", r->root, r->err)) ||
        (rc = count_accepted(r)) || (rc = ims__cat_exec(r->c, "COMMIT", r->err))) {
        sqlite3_exec(r->c->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    report_rows_without_image(r);
    return IMS_OK;
}

int ims_catalog_ingest(ims_catalog *c, const char *dir, const ims_ingest_opts *o,
                       ims_ingest_summary *sum, ims_error *err)
{
    IMS_ASSERT(c && dir);
    ims_ingest_summary local;
    if (!sum)
        sum = &local;
    memset(sum, 0, sizeof *sum);
    ims_error_clear(err);
    ims_error e_local;
    if (!err)
        err = &e_local;
    int rc = ims__cat_writable(c, err);
    if (rc)
        return rc;
    run r = {.c = c, .o = o, .sum = sum, .err = err};
    r.max_pixels = o && o->max_pixels > 0 ? o->max_pixels : (int64_t)IMS_IMAGE_DEFAULT_MAX_PIXELS;
    ims__scan scan = {0};
    ahead a;
    char *root = NULL;
    char *skip[2] = {realpath(c->dir, NULL),
                     o && o->metadata_csv ? realpath(o->metadata_csv, NULL) : NULL};
    /* phase 1: nothing is written until the CSV and DIR are both read */
    if ((rc = join_open(&r.j, o, err)))
        goto done;
    sum->csv_rows = (int64_t)r.j.t.n_rows;
    if ((rc = ims__scan_dir(dir, (const char *const *)skip, 2, &scan, err)))
        goto done;
    if (!(root = realpath(dir, NULL))) {
        rc = ims_error_set_errno(err, IMS_EIO, errno, "%s", dir);
        goto done;
    }
    r.root = root;
    sum->scanned = (int64_t)scan.n;
    sum->threads = o && o->threads > 0 ? o->threads : ims_cpu_count();
    if (scan.n && (rc = ahead_start(&a, &scan, sum->threads, r.max_pixels))) {
        rc = ims_error_set(err, rc, "ingest: out of memory");
        goto done;
    }
    if (scan.n)
        r.ahead = &a;
    /* phase 2 */
    for (size_t i = 0; i < scan.n || i == 0; i += BATCH_FILES) {
        if ((rc = ims__cat_exec(c, "BEGIN IMMEDIATE", err)))
            goto done;
        if (i == 0 && (rc = next_run(&r)))
            goto rollback;
        if (r.ahead)
            ahead_batch(&a, i, IMS_MIN(scan.n, i + BATCH_FILES));
        for (size_t k = i; k < scan.n && k < i + BATCH_FILES; k++) {
            prep *p = NULL;
            if (r.ahead) {
                if ((rc = ahead_queue(&r, &a, k)))
                    goto rollback;
                p = ahead_take(&a, k);
            }
            if ((rc = process(&r, &scan.e[k], p)))
                goto rollback;
            if (o && o->progress)
                o->progress(o->ud, (int64_t)k + 1, (int64_t)scan.n);
        }
        if ((rc = ims__cat_exec(c, "COMMIT", err)))
            goto rollback;
        if (scan.n == 0)
            break;
    }
    /* phase 3 */
    rc = finish(&r);
    goto done;
rollback:
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
done:
    if (r.ahead)
        ahead_stop(&a);
    free(root);
    free(skip[0]);
    free(skip[1]);
    ims__scan_free(&scan);
    join_close(&r.j);
    return rc;
}
