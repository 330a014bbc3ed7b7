/* SPDX-License-Identifier: MIT */
/*
 * http.c — the daemon and the life of one request.
 *
 * libmicrohttpd calls on_request() several times per request:
 *   1. headers read (*con_cls == NULL): allocate the ims_req, check the
 *      API key (on every route but /healthz with api_key_reads), match the
 *      route and method, check the API key on writes, the declared
 *      Content-Length against max_body, the Content-Type and the multipart
 *      boundary. Any failure is answered right there (MHD then skips the
 *      body). Requests that will encode take one of max_queue slots and
 *      reserve their declared body in max_body_memory; when either is
 *      full they get 503 + Retry-After here, before their body is read.
 *   2. zero or more body chunks: appended to the raw body, or fed to MHD's
 *      multipart post processor, whose field callback collects the parts
 *      "image", "metadata", "category" and "name" (at most MAX_PARTS parts).
 *      The limit applies to the bytes received across all parts; once over
 *      it, the rest is read and dropped (up to a hard cap, then the
 *      connection is cut) and 413 sent. A chunked body (no declared length)
 *      reserves body memory as it arrives; when that runs out, the same
 *      dropping ends in a 503.
 *   3. body complete (*upload_data_size == 0): routes.c answers. Requests
 *      that encode an image (search, add) are handed to an encode worker
 *      instead: the connection is suspended, a worker runs the handler
 *      (its response is kept in the ims_req), resumes the connection, and
 *      MHD calls on_request once more to queue it.
 * on_completed() then logs one line, records metrics and frees the ims_req
 * (the only place it is freed).
 *
 * Threads: MHD's internal thread pool, where a connection stays on one
 * thread, plus the encode workers. An ims_req is touched by one thread at a
 * time (MHD's, or the worker's while the connection is suspended). Cheap
 * requests (get, similar, image, metrics) run on the MHD threads and never
 * wait for an encode; encodes wait only for a collection session. The one
 * lock of ours guards the worker queue, never a handler call.
 *
 * Memory: an idle connection costs MHD's connection struct and its pool
 * (CONN_POOL, which also bounds the request line and headers: more is
 * answered 431 or 414 by MHD); request bodies are held only by requests
 * that encode, so all of them together hold at most max_body_memory
 * (default max_queue * max_body, at most 1 GiB) — the rest is answered
 * 503 first. conns.c bounds the connections and how long each may take.
 *
 * Shutdown (ims_server_stop): quiesce (stop listening), wait for in-flight
 * requests (counted from step 1 to on_completed) with responses marked
 * "Connection: close", stop the workers, then MHD_stop_daemon.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "imgsim/imgsim.h"
#include "server_int.h"

#define DEFAULT_MAX_BODY (20u * 1024 * 1024)
#define TEXT_FIELD_MAX (64 * 1024) /* metadata, category, name */
#define POST_BUFFER 65536
#define MAX_PARTS 16    /* multipart parts: the API uses 4 */
#define MAX_BOUNDARY 70 /* RFC 2046 */
/* MHD's per-connection pool (its default is 32 KiB): the request line and
 * headers must fit in it (measured: a header of 16,002 bytes passes);
 * beyond, MHD answers 431 or 414, or closes when even that does not fit.
 * Browsers send 1-2 KB; Apache's limit per header line is 8 KB. */
#define CONN_POOL (16 * 1024)
#define DEFAULT_MAX_CONNECTIONS 16384
/* 2 x the 128-connection closed loop of bench/: with encodes the
 * bottleneck, nearly every client of such a loop ends up waiting on one */
#define DEFAULT_MAX_QUEUE 256
#define BODY_MEMORY_CAP ((size_t)1 << 30)

#define ATOMIC_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

/* ---- responses ------------------------------------------------------------ */

enum MHD_Result ims__send(ims_req *q, struct MHD_Connection *conn, int status,
                          struct MHD_Response *r)
{
    if (!r)
        return MHD_NO;
    if (ATOMIC_LOAD(&q->srv->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (q->deferred && !q->resp) {
        q->resp = r;
        q->resp_status = status;
        return MHD_YES;
    }
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    if (ok == MHD_YES)
        q->status = status;
    return ok;
}

struct MHD_Response *ims__json_response(json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(7)) : NULL;
    json_decref(j);
    if (!text)
        return NULL;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return r;
}

enum MHD_Result ims__send_json(ims_req *q, struct MHD_Connection *conn, int status, json_t *j)
{
    struct MHD_Response *r = ims__json_response(j);
    return r ? ims__send(q, conn, status, r) : MHD_NO;
}

enum MHD_Result ims__send_error(ims_req *q, struct MHD_Connection *conn, int status,
                                const char *message)
{
    return ims__send_json(q, conn, status, ims__json_error(ims__status_code_name(status), message));
}

enum MHD_Result ims__send_ims_error(ims_req *q, struct MHD_Connection *conn, int rc,
                                    const ims_error *err)
{
    int status;
    switch (rc) {
    case IMS_EINVAL:
        status = 400;
        break;
    case IMS_ENOTFOUND:
        status = 404;
        break;
    case IMS_EEXIST:
        status = 409;
        break;
    case IMS_ESTATE:
        status = 403;
        break; /* e.g. a read-only collection */
    case IMS_EUNSUPPORTED:
        status = 415;
        break;
    case IMS_EFORMAT:
    case IMS_ECORRUPT:
    case IMS_ETOOBIG:
        status = 422;
        break; /* not an image, truncated, decompression bomb */
    case IMS_EBUSY:
    case IMS_ENOMEM:
        status = 503;
        break;
    case IMS_EFULL: /* disk full (SQLITE_FULL, ENOSPC) */
        status = 507;
        break;
    case IMS_EIO: /* an add or delete that could not be stored (EFBIG, quota...) */
        status = q->route == ROUTE_ITEMS || (q->route == ROUTE_ITEM && !strcmp(q->method, "DELETE"))
                     ? 507
                     : 500;
        break;
    default:
        status = 500;
        break;
    }
    const char *msg = err && err->code == rc && err->msg[0] ? err->msg : ims_strerror(rc);
    struct MHD_Response *r =
        ims__json_response(ims__json_error(ims__status_code_name(status), msg));
    if (!r)
        return MHD_NO;
    if (status == 503)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return ims__send(q, conn, status, r);
}

/* ---- request body ------------------------------------------------------- */

/* Append to a field, growing it; 0 ok, -1 out of memory. */
static int field_append(field *f, const char *data, size_t size)
{
    f->seen = 1;
    if (!size)
        return 0;
    if (f->len + size + 1 > f->cap) {
        size_t cap = f->cap ? f->cap : 4096;
        while (cap < f->len + size + 1)
            cap *= 2;
        char *p = ims_realloc(f->data, cap);
        if (!p)
            return -1;
        f->data = p;
        f->cap = cap;
    }
    memcpy(f->data + f->len, data, size);
    f->len += size;
    f->data[f->len] = '\0'; /* text fields are used as C strings */
    return 0;
}

static void field_clear(field *f)
{
    ims_free(f->data);
    memset(f, 0, sizeof *f);
}

/* Reserve n more bytes of body memory for q; 0 ok, -1 none left. */
static int hold(ims_req *q, size_t n)
{
    ims_server *s = q->srv;
    size_t now = __atomic_add_fetch(&s->body_held, n, __ATOMIC_RELAXED);
    if (now > s->max_body_memory) {
        __atomic_sub_fetch(&s->body_held, n, __ATOMIC_RELAXED);
        return -1;
    }
    q->held += n;
    uint64_t m = __atomic_load_n(&s->m.body_held_max, __ATOMIC_RELAXED);
    while (now > m && !__atomic_compare_exchange_n(&s->m.body_held_max, &m, (uint64_t)now, 1,
                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    return 0;
}

/* MHD post processor callback: one chunk of one multipart field. */
static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *filename, const char *content_type,
                                const char *transfer_encoding, const char *data, uint64_t off,
                                size_t size)
{
    ims_req *q = cls;
    (void)kind, (void)filename, (void)transfer_encoding;
    if (off == 0 && ++q->n_parts > MAX_PARTS) {
        q->bad_form = 1;
        q->form_error = "too many parts in the multipart/form-data body (at most 16)";
        return MHD_NO;
    }
    if (!key) /* a part without a Content-Disposition name: MHD passes NULL */
        return MHD_YES;
    field *f = !strcmp(key, "image")      ? &q->raw
               : !strcmp(key, "metadata") ? &q->metadata
               : !strcmp(key, "category") ? &q->category
               : !strcmp(key, "name")     ? &q->name
                                          : NULL;
    if (!f || q->too_big)
        return MHD_YES; /* other fields are ignored (they still count toward the limit) */
    if (f != &q->raw && f->len + size > TEXT_FIELD_MAX) {
        q->too_big = 1;
        return MHD_YES;
    }
    if (content_type && !f->content_type[0])
        snprintf(f->content_type, sizeof f->content_type, "%s", content_type);
    if (field_append(f, data, size)) {
        q->bad_form = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

/* One body chunk. Returns 0, or -1 to cut the connection. */
static int consume(ims_req *q, const char *data, size_t size)
{
    ims_server *s = q->srv;
    ATOMIC_ADD(&s->m.body_bytes, size);
    q->body_total += size;
    if (q->body_total > s->max_body && !q->too_big) {
        q->too_big = 1;
        field_clear(&q->raw);
    } else if (!q->too_big && !q->overloaded && q->body_total > q->held &&
               hold(q, q->body_total - q->held)) {
        q->overloaded = 1; /* chunked: body memory ran out */
        __atomic_add_fetch(&s->m.overloaded, 1, __ATOMIC_RELAXED);
        field_clear(&q->raw);
    }
    if (q->too_big || q->overloaded) /* drop the rest, but do not read forever */
        return q->body_total > 4 * s->max_body + (1u << 20) ? -1 : 0;
    if (q->bad_form)
        return 0;
    if (q->body_kind == BODY_RAW) {
        if (field_append(&q->raw, data, size))
            q->bad_form = 1;
    } else if (q->body_kind == BODY_MULTIPART) {
        if (MHD_post_process(q->pp, data, size) != MHD_YES)
            q->bad_form = 1;
    }
    return 0;
}

/* Constant-time check of "Bearer <key>" (time depends on the key's length only). */
static int auth_ok(const ims_server *s, struct MHD_Connection *conn)
{
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7))
        return 0;
    const unsigned char *given = (const unsigned char *)h + 7;
    size_t glen = strlen((const char *)given);
    unsigned diff = glen != s->api_key_len;
    for (size_t i = 0; i < s->api_key_len; i++)
        diff |= (unsigned)(unsigned char)s->api_key[i] ^ (i < glen ? given[i] : 0u);
    return diff == 0;
}

/* 401, with the challenge of RFC 6750. */
static enum MHD_Result unauthorized(ims_req *q, struct MHD_Connection *conn)
{
    struct MHD_Response *r = ims__json_response(
        ims__json_error("unauthorized", "missing or wrong 'Authorization: Bearer' API key"));
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"imgsim\"");
    return ims__send(q, conn, 401, r);
}

/* 503 + Retry-After: the server holds as much encode work as it may. */
static enum MHD_Result overloaded(ims_req *q, struct MHD_Connection *conn, const char *why)
{
    ims_error err;
    __atomic_add_fetch(&q->srv->m.overloaded, 1, __ATOMIC_RELAXED);
    ims_error_set(&err, IMS_EBUSY, "server busy: %s; retry later", why);
    return ims__send_ims_error(q, conn, IMS_EBUSY, &err);
}

/* Length of the boundary parameter of a multipart Content-Type; 0 if none. */
static size_t boundary_len(const char *ct)
{
    for (const char *p = ct; *p; p++) {
        if (strncasecmp(p, "boundary=", 9))
            continue;
        p += 9;
        if (*p == '"') {
            const char *e = strchr(p + 1, '"');
            return e ? (size_t)(e - p - 1) : strlen(p + 1);
        }
        return strcspn(p, "; \t");
    }
    return 0;
}

/* The content types a body may have: 0 raw image, 1 multipart, -1 refused. */
static int body_type(const char *ct)
{
    if (!ct || !*ct)
        return 0;
    if (!strncasecmp(ct, "multipart/form-data", 19))
        return 1;
    /* form-urlencoded: what `curl --data-binary @photo.jpg` sends; the
     * bytes are taken as they are and the decoder judges them */
    if (!strncasecmp(ct, "image/", 6) || !strncasecmp(ct, "application/octet-stream", 24) ||
        !strncasecmp(ct, "application/x-www-form-urlencoded", 33))
        return 0;
    return -1;
}

/* Step 1: headers are in. Answers errors early; sets up body reading.
 * Routes on the whole url (q->path keeps at most 255 bytes, for the log). */
static enum MHD_Result begin(ims_req *q, struct MHD_Connection *conn, const char *url)
{
    ims_server *s = q->srv;
    const char *allow = NULL;
    char msg[160];
    q->route = ims__route_match(url, &q->id, &allow); /* not q->path: that may be cut */
    if (s->api_key && s->api_key_reads && q->route != ROUTE_HEALTHZ && !auth_ok(s, conn))
        return unauthorized(q, conn); /* before 404/405: no hint of what exists */
    if (q->route == ROUTE_NONE)
        return ims__send_error(q, conn, 404, "no such route");
    int is_get = !strcmp(q->method, "GET") || !strcmp(q->method, "HEAD");
    int method_ok = strstr(allow, q->method) != NULL &&
                    (is_get || !strcmp(q->method, "POST") || !strcmp(q->method, "DELETE"));
    if (!method_ok) {
        snprintf(msg, sizeof msg, "method %s not allowed here (allowed: %s)", q->method, allow);
        struct MHD_Response *r = ims__json_response(ims__json_error("method_not_allowed", msg));
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
        return ims__send(q, conn, 405, r);
    }
    if (q->id < 0)
        return ims__send_error(q, conn, 400, "item id must be a positive integer");
    int write = ims__route_is_write(q->route, q->method);
    if (write && s->api_key && !auth_ok(s, conn))
        return unauthorized(q, conn);
    if (strcmp(q->method, "POST"))
        return MHD_YES; /* GET, HEAD, DELETE: no body wanted (any sent is dropped) */

    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long n = 0;
    if (cl) {
        char *end;
        n = strtoull(cl, &end, 10);
        if (end == cl || *end)
            return ims__send_error(q, conn, 400, "bad Content-Length");
        if (n > s->max_body) {
            snprintf(msg, sizeof msg, "request body of %llu bytes is over the limit of %zu", n,
                     s->max_body);
            return ims__send_error(q, conn, 413, msg);
        }
    }
    const char *ct =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    int bt = body_type(ct);
    if (bt < 0) {
        snprintf(msg, sizeof msg,
                 "unsupported media type '%.60s': send image bytes or multipart/form-data", ct);
        return ims__send_error(q, conn, 415, msg);
    }
    size_t blen = bt == 1 ? boundary_len(ct) : 0;
    if (blen > MAX_BOUNDARY) {
        snprintf(msg, sizeof msg, "multipart boundary of %zu characters: at most %d (RFC 2046)",
                 blen, MAX_BOUNDARY);
        return ims__send_error(q, conn, 400, msg);
    }
    if (q->route == ROUTE_SEARCH || q->route == ROUTE_ITEMS) {
        if (__atomic_add_fetch(&s->n_encode, 1, __ATOMIC_RELAXED) > s->max_queue) {
            __atomic_sub_fetch(&s->n_encode, 1, __ATOMIC_RELAXED);
            snprintf(msg, sizeof msg, "%d encode requests already in progress", s->max_queue);
            return overloaded(q, conn, msg);
        }
        q->admitted = 1;
        if (n && hold(q, (size_t)n)) {
            snprintf(msg, sizeof msg, "request bodies fill the %zu bytes allowed",
                     s->max_body_memory);
            return overloaded(q, conn, msg);
        }
    }
    if (bt == 1) {
        q->pp = MHD_create_post_processor(conn, POST_BUFFER, on_field, q);
        if (!q->pp)
            return ims__send_error(q, conn, 400, "bad multipart/form-data (no boundary?)");
        q->body_kind = BODY_MULTIPART;
    } else {
        q->body_kind = BODY_RAW;
    }
    return MHD_YES;
}

/* ---- encode workers ------------------------------------------------------- */

/* Suspend the connection and queue the request for a worker. */
static enum MHD_Result defer(ims_req *q, struct MHD_Connection *conn)
{
    ims_server *s = q->srv;
    q->deferred = 1;
    q->conn = conn;
    q->next = NULL;
    MHD_suspend_connection(conn);
    pthread_mutex_lock(&s->q_mu);
    if (s->q_tail)
        s->q_tail->next = q;
    else
        s->q_head = q;
    s->q_tail = q;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    return MHD_YES;
}

/* Worker: answer queued requests until stopped and the queue is empty. */
static void *worker_main(void *arg)
{
    ims_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->q_mu);
        while (!s->q_head && !s->q_stop)
            pthread_cond_wait(&s->q_cv, &s->q_mu);
        ims_req *q = s->q_head;
        if (q && !(s->q_head = q->next))
            s->q_tail = NULL;
        pthread_mutex_unlock(&s->q_mu);
        if (!q)
            return NULL;
        ims__route_dispatch(q, q->conn); /* the answer lands in q->resp */
        MHD_resume_connection(q->conn);
    }
}

static void workers_stop(ims_server *s)
{
    pthread_mutex_lock(&s->q_mu);
    s->q_stop = 1;
    pthread_cond_broadcast(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    s->n_workers = 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    ims_server *s = cls;
    ims_req *q = *con_cls;
    (void)version;
    if (!q) {
        q = ims_calloc(1, sizeof *q);
        if (!q)
            return MHD_NO;
        q->srv = s;
        q->t0 = ims_now();
        snprintf(q->method, sizeof q->method, "%s", method);
        snprintf(q->path, sizeof q->path, "%s", url);
        ATOMIC_ADD(&s->inflight, 1);
        *con_cls = q;
        q->cn = ims__conn_of(conn);
        ims__conn_deadline(s, q->cn, 1); /* now the body has timeout_s (and more as it comes) */
        return begin(q, conn, url);
    }
    if (*upload_data_size)
        ims__conn_received(q->cn, *upload_data_size);
    else
        ims__conn_deadline(s, q->cn, 0); /* request complete: no deadline while answered */
    if (q->deferred) {                   /* resumed: queue the worker's answer */
        struct MHD_Response *r = q->resp;
        q->resp = NULL;
        q->deferred = 0;
        return r ? ims__send(q, conn, q->resp_status, r) : MHD_NO;
    }
    if (q->status) { /* answered early: drop whatever body comes */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (q->body_kind == BODY_NONE) /* a body on GET/DELETE: dropped, counted */
            return q->body_total += n, q->body_total > s->max_body ? MHD_NO : MHD_YES;
        return consume(q, upload_data, n) ? MHD_NO : MHD_YES;
    }
    if (q->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes", s->max_body);
        return ims__send_error(q, conn, 413, msg);
    }
    if (q->overloaded) {
        char msg[128];
        snprintf(msg, sizeof msg, "request bodies fill the %zu bytes allowed", s->max_body_memory);
        return overloaded(q, conn, msg);
    }
    if (q->pp) { /* destroyed even when the form went bad: it holds POST_BUFFER */
        if (MHD_destroy_post_processor(q->pp) != MHD_YES)
            q->bad_form = 1;
        q->pp = NULL;
    }
    if (q->bad_form)
        return ims__send_error(
            q, conn, 400, q->form_error ? q->form_error : "malformed multipart/form-data body");
    if (q->body_kind == BODY_MULTIPART && q->raw.content_type[0] &&
        body_type(q->raw.content_type) != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "unsupported media type '%.60s' of the \"image\" part",
                 q->raw.content_type);
        return ims__send_error(q, conn, 415, msg);
    }
    if (q->route == ROUTE_SEARCH || q->route == ROUTE_ITEMS)
        return defer(q, conn);
    return ims__route_dispatch(q, conn);
}

/* A path safe for a log line (no control characters). */
static void log_safe(char *p)
{
    for (; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ims_server *s = cls;
    ims_req *q = *con_cls;
    (void)conn;
    if (!q)
        return;
    double dt = ims_now() - q->t0;
    ims__metrics_record(s, q->route, q->status, dt);
    if (!s->quiet) {
        log_safe(q->path);
        fprintf(stderr, "%s %s %d %.1fms%s\n", q->method, q->path, q->status, dt * 1e3,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
    }
    if (q->pp)
        MHD_destroy_post_processor(q->pp);
    if (q->held)
        __atomic_sub_fetch(&s->body_held, q->held, __ATOMIC_RELAXED);
    if (q->admitted)
        __atomic_sub_fetch(&s->n_encode, 1, __ATOMIC_RELAXED);
    ims__conn_deadline(s, q->cn, 1); /* keep-alive: the next request has timeout_s */
    if (q->resp) /* a worker's answer; the connection closed before it was queued */
        MHD_destroy_response(q->resp);
    field_clear(&q->raw);
    field_clear(&q->metadata);
    field_clear(&q->category);
    field_clear(&q->name);
    ims_free(q);
    *con_cls = NULL;
    __atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELEASE);
}

/* ---- daemon --------------------------------------------------------------- */

/* "HOST:PORT" → sockaddr; 0 ok, -1 bad. */
static int parse_listen(const char *listen, struct sockaddr_in *sa)
{
    const char *colon = strrchr(listen, ':');
    char host[64];
    if (!colon || (size_t)(colon - listen) >= sizeof host)
        return -1;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535)
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (!host[0] || !strcmp(host, "localhost"))
        snprintf(host, sizeof host, "127.0.0.1");
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit after. */
static long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 1024;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = rl;
        want.rlim_cur = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
        if (!setrlimit(RLIMIT_NOFILE, &want))
            rl = want;
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)1 << 20 ? 1L << 20
                                                                         : (long)rl.rlim_cur;
}

/* max_connections: the one asked for, or the default, within the
 * descriptors left after a reserve for the collection's files. */
static int connection_limit(int asked)
{
    long nofile = raise_nofile();
    long reserve = nofile / 8 > 64 ? nofile / 8 : 64;
    long room = nofile - reserve > 16 ? nofile - reserve : 16;
    if (asked <= 0)
        return (int)(room < DEFAULT_MAX_CONNECTIONS ? room : DEFAULT_MAX_CONNECTIONS);
    if (asked > room) {
        ims_log(IMS_LOG_WARN,
                "server: max_connections %d is over what RLIMIT_NOFILE %ld allows; using %ld",
                asked, nofile, room);
        return (int)room;
    }
    return asked;
}

/* libmicrohttpd's messages are mostly about what one client did (a bad
 * chunk, headers too big, a connection cut by its deadline): at info
 * level, so that clients cannot flood the server's log (IMS_LOG=info
 * shows them; metrics count them). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[256];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_safe(msg);
    ims_log(IMS_LOG_INFO, "libmicrohttpd: %s", msg);
}

/* Free a server whose daemon is stopped (or never started). */
static void server_free(ims_server *s)
{
    workers_stop(s);
    ims__conns_stop(s);
    pthread_cond_destroy(&s->q_cv);
    pthread_mutex_destroy(&s->q_mu);
    pthread_cond_destroy(&s->c_cv);
    pthread_mutex_destroy(&s->c_mu);
    ims_free(s->workers);
    ims_free(s->api_key);
    ims_free(s);
}

int ims_server_start(ims_coll *c, const ims_server_opts *o, ims_server **out, ims_error *err)
{
    static const ims_server_opts defaults = {0};
    *out = NULL;
    if (!o)
        o = &defaults;
    const char *listen = o->listen && *o->listen ? o->listen : "127.0.0.1:8080";
    struct sockaddr_in sa;
    if (!c)
        return ims_error_set(err, IMS_EINVAL, "server: no collection");
    if (parse_listen(listen, &sa))
        return ims_error_set(
            err, IMS_EINVAL,
            "server: bad listen address '%s' (want IPV4:PORT, e.g. 127.0.0.1:8080)", listen);
    ims_server *s = ims_calloc(1, sizeof *s);
    if (!s)
        return ims_error_set(err, IMS_ENOMEM, "server: out of memory");
    s->coll = c;
    s->max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
    s->drain_timeout_ms = o->drain_timeout_ms > 0 ? o->drain_timeout_ms : 30000;
    s->quiet = o->quiet;
    s->api_key_reads = o->api_key_reads;
    s->max_queue = o->max_queue > 0 ? o->max_queue : DEFAULT_MAX_QUEUE;
    if (o->max_body_memory) {
        s->max_body_memory = o->max_body_memory;
    } else {
        size_t m;
        s->max_body_memory =
            ims_size_mul((size_t)s->max_queue, s->max_body, &m) && m < BODY_MEMORY_CAP
                ? m
                : BODY_MEMORY_CAP;
        if (s->max_body_memory < s->max_body)
            s->max_body_memory = s->max_body;
    }
    pthread_mutex_init(&s->q_mu, NULL);
    pthread_cond_init(&s->q_cv, NULL);
    pthread_mutex_init(&s->c_mu, NULL);
    pthread_cond_init(&s->c_cv, NULL);
    if (o->api_key && *o->api_key) {
        if (!(s->api_key = ims_strdup(o->api_key))) {
            server_free(s);
            return ims_error_set(err, IMS_ENOMEM, "server: out of memory");
        }
        s->api_key_len = strlen(s->api_key);
    }
    int threads = o->threads > 0 ? o->threads : 2 * ims_cpu_count();
    if (o->threads <= 0 && threads < 8)
        threads = 8; /* encodes block their thread: keep some free for cheap requests */
    unsigned timeout = o->timeout_s > 0 ? (unsigned)o->timeout_s : 30;
    s->timeout_ms = (int64_t)timeout * 1000;
    s->max_connections = connection_limit(o->max_connections);
    if (threads > s->max_connections)
        threads = s->max_connections;
    /* MHD's limit is a backstop above ours (conns.c), split among threads */
    unsigned mhd_limit = (unsigned)s->max_connections + 2u * (unsigned)threads + 16u;
    if (ims__conns_start(s)) {
        server_free(s);
        return ims_error_set(err, IMS_ENOMEM, "server: cannot start threads");
    }
    int n_workers = threads > 4 ? threads : 4;
    if (!(s->workers = ims_calloc((size_t)n_workers, sizeof *s->workers))) {
        server_free(s);
        return ims_error_set(err, IMS_ENOMEM, "server: out of memory");
    }
    for (; s->n_workers < n_workers; s->n_workers++)
        if (pthread_create(&s->workers[s->n_workers], NULL, worker_main, s)) {
            server_free(s);
            return ims_error_set(err, IMS_ENOMEM, "server: cannot start threads");
        }
    /* poll(), not epoll: in libmicrohttpd 0.9.75's epoll loop a client's
     * FIN that arrives while an answer is being sent goes unnoticed, and
     * the half-closed connection stays open until the idle timeout
     * (test_server_api's test_half_close). Each pool thread polls at most
     * its share of max_connections, so poll() costs nothing here. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    /* a pool of one is no pool: MHD warns about the option, so leave it out */
    struct MHD_OptionItem pool[] = {
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    s->d = MHD_start_daemon(
        flags, ntohs(sa.sin_port), ims__conn_accept, s, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, /* first, so that it gets every message */
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_ARRAY, pool,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout, MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_POOL, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, ims__conn_notify, s,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!s->d) {
        server_free(s);
        return ims_error_set(err, IMS_EIO,
                             "server: cannot listen on %s (address in use or not local?)", listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : ntohs(sa.sin_port);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
    snprintf(s->url, sizeof s->url, "http://%s:%d/", host, s->port);
    *out = s;
    return IMS_OK;
}

int ims_server_port(const ims_server *s) { return s->port; }

const char *ims_server_url(const ims_server *s) { return s->url; }

void ims_server_stop(ims_server *s)
{
    if (!s)
        return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    __atomic_store_n(&s->draining, 1, __ATOMIC_RELEASE);
    double deadline = ims_now() + s->drain_timeout_ms / 1e3;
    while (ATOMIC_LOAD(&s->inflight) > 0 && ims_now() < deadline)
        usleep(5000);
    /* workers finish what they hold (resuming their connections) while
     * MHD still runs; only then is the daemon stopped */
    workers_stop(s);
    MHD_stop_daemon(s->d);
    s->d = NULL;
    server_free(s);
}
