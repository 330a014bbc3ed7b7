/* SPDX-License-Identifier: MIT */
/*
 * server_int.h — shared by the files of src/server/: the server and per-request
 * structs, the route table, metrics and JSON helpers.
 *
 * Files: http.c (daemon, request lifecycle, body reading, limits, logging),
 * conns.c (connection count and deadlines, the reaper thread),
 * routes.c (one handler per endpoint), json.c (items and errors as JSON),
 * metrics.c (counters and the Prometheus page), web_page.c (generated at
 * build time from web/index.html).
 *
 * Locking: metrics are relaxed atomics; the request struct belongs to the
 * one MHD thread that serves its connection (or to the encode worker while
 * the connection is suspended); `inflight` and `draining` are atomics read
 * by ims_server_stop; `n_encode` and `body_held` are atomics. q_mu guards
 * the worker queue and c_mu the connection list (conns.c), never a
 * handler call.
 */
#ifndef IMS_SERVER_INT_H
#define IMS_SERVER_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>

#include "imgsim/collection.h"
#include "imgsim/server.h"

/* Routes, as metric labels. ROUTE_NONE: no such path (404). */
// clang-format off
#define IMS_ROUTES(X)                                                          \
    X(NONE, "none")                                                            \
    X(PAGE, "/")                                                               \
    X(HEALTHZ, "/healthz")                                                     \
    X(METRICS, "/metrics")                                                     \
    X(SEARCH, "/v1/search")                                                    \
    X(ITEMS, "/v1/items")                                                      \
    X(ITEM, "/v1/items/{id}")                                                  \
    X(SIMILAR, "/v1/items/{id}/similar")                                       \
    X(IMAGE, "/v1/images/{id}")                                                \
    X(CATEGORIES, "/v1/categories")

enum route {
#define IMS__ROUTE_ENUM(name, label) ROUTE_##name,
    IMS_ROUTES(IMS__ROUTE_ENUM)
#undef IMS__ROUTE_ENUM
    ROUTE__COUNT
};

/* Status codes the server answers with (metrics keep one counter each). */
#define IMS_STATUSES(X)                                                        \
    X(200) X(201) X(400) X(401) X(403) X(404) X(405) X(409) X(413) X(415)      \
    X(422) X(500) X(501) X(503) X(507)

enum { N_STATUS = 0
#define IMS__ST_COUNT(code) +1
       IMS_STATUSES(IMS__ST_COUNT)
#undef IMS__ST_COUNT
};
// clang-format on
extern const char *const ims__route_label[ROUTE__COUNT];
#define N_LAT_BUCKETS 12
extern const double ims__lat_bucket[N_LAT_BUCKETS]; /* upper bounds, seconds */

typedef struct ims_metrics {
    uint64_t requests[ROUTE__COUNT][N_STATUS + 1];    /* last column: other status */
    uint64_t lat_bucket[ROUTE__COUNT][N_LAT_BUCKETS]; /* non-cumulative counts */
    uint64_t lat_count[ROUTE__COUNT];
    uint64_t lat_sum_us[ROUTE__COUNT];
    uint64_t body_bytes;      /* request bodies read */
    uint64_t conns_refused;   /* connections closed at once: max_connections reached */
    uint64_t conns_timed_out; /* connections cut by their deadline (conns.c) */
    uint64_t overloaded;      /* encode requests answered 503: queue or body memory full */
    uint64_t body_held_max;   /* high-water mark of body_held */
} ims_metrics;

typedef struct ims_conn ims_conn; /* one TCP connection (conns.c) */

struct ims_server {
    struct MHD_Daemon *d;
    ims_coll *coll;
    char *api_key; /* NULL: writes are open */
    size_t api_key_len;
    int api_key_reads; /* 1: every route but /healthz needs the key */
    size_t max_body;
    int max_queue;          /* encode requests held at once (n_encode) */
    size_t max_body_memory; /* request body bytes held at once (body_held) */
    int n_encode;           /* encode requests admitted, not yet completed (atomic) */
    size_t body_held;       /* body bytes reserved by requests in progress (atomic) */
    int drain_timeout_ms;
    int quiet;
    int port;
    char url[96];
    int inflight;  /* requests begun and not yet completed (atomic) */
    int draining;  /* set by ims_server_stop (atomic) */
    ims_metrics m; /* updated with relaxed atomics */
    /* encode workers: requests that encode run here, their connection
     * suspended, so that no MHD thread (and no cheap request it also
     * serves) waits for an encode */
    pthread_t *workers;
    int n_workers;
    pthread_mutex_t q_mu; /* guards q_head, q_tail, q_stop */
    pthread_cond_t q_cv;
    struct ims_req *q_head, *q_tail;
    int q_stop;
    /* connections (conns.c) */
    int max_connections; /* ours, global; MHD's is set a little above */
    int n_conns;         /* open connections (atomic) */
    int64_t timeout_ms;
    pthread_mutex_t c_mu; /* guards c_head, c_stop */
    pthread_cond_t c_cv;
    ims_conn *c_head;
    int c_stop;
    pthread_t reaper;
    int reaper_on;
};

/* One multipart field being collected. */
typedef struct field {
    char *data;
    size_t len, cap;
    char content_type[64];
    int seen;
} field;

enum body_kind { BODY_NONE = 0, BODY_RAW, BODY_MULTIPART };

/* Per-request state (MHD's con_cls), freed in the completion callback. */
typedef struct ims_req {
    ims_server *srv;
    double t0;
    char method[8];
    char path[256]; /* truncated for the log line only */
    int route;
    int64_t id; /* {id} in the path; 0 when none */
    int status; /* answered status; 0 until queued */
    int body_kind;
    size_t body_total;      /* bytes received so far (all parts) */
    int too_big;            /* body went over max_body: discarding */
    int overloaded;         /* body memory ran out mid-body: discarding, then 503 */
    int bad_form;           /* the multipart body did not parse */
    const char *form_error; /* why, when we know better than "malformed" */
    int n_parts;            /* multipart parts seen */
    int admitted;           /* holds one of max_queue encode slots */
    size_t held;            /* bytes of body_held reserved by this request */
    ims_conn *cn;           /* its connection's deadline; NULL if none */
    struct MHD_PostProcessor *pp;
    field raw; /* raw body, or the multipart "image" part */
    field metadata, category, name;
    /* deferred to an encode worker (connection suspended meanwhile) */
    int deferred; /* 1 from suspend until the response is queued */
    struct MHD_Connection *conn;
    struct MHD_Response *resp; /* the worker's answer, queued on resume */
    int resp_status;
    struct ims_req *next; /* worker queue */
} ims_req;

/* ---- http.c: answering ---------------------------------------------------- */
/* Queue a response and record its status; takes ownership of r. On an
 * encode worker (q->deferred) the response is kept for the resume. */
enum MHD_Result ims__send(ims_req *q, struct MHD_Connection *conn, int status,
                          struct MHD_Response *r);
/* A JSON body (the json_t reference is stolen). */
/* A JSON response (Content-Type set; j is consumed); NULL on out of memory. */
struct MHD_Response *ims__json_response(json_t *j);
enum MHD_Result ims__send_json(ims_req *q, struct MHD_Connection *conn, int status, json_t *j);
/* {"error":{"code","message"}} with the HTTP status of `status`. */
enum MHD_Result ims__send_error(ims_req *q, struct MHD_Connection *conn, int status,
                                const char *message);
/* An ims_* failure mapped to its HTTP status (EBUSY adds Retry-After). */
enum MHD_Result ims__send_ims_error(ims_req *q, struct MHD_Connection *conn, int rc,
                                    const ims_error *err);

/* ---- conns.c ------------------------------------------------------------------ */
/* MHD accept policy: refuse a connection beyond max_connections. */
enum MHD_Result ims__conn_accept(void *cls, const struct sockaddr *addr, socklen_t len);
/* MHD connection notification: count, and link a deadline (socket context). */
void ims__conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);
/* The connection's deadline record; NULL when it has none. */
ims_conn *ims__conn_of(struct MHD_Connection *conn);
/* phase 1: a deadline timeout_s from now; 0: none. c may be NULL. */
void ims__conn_deadline(ims_server *s, ims_conn *c, int phase);
/* n body bytes arrived: extend the deadline by n / MIN_BODY_RATE seconds. */
void ims__conn_received(ims_conn *c, size_t n);
/* The reaper thread; 0 ok, -1 cannot start. stop is a no-op when not started. */
int ims__conns_start(ims_server *s);
void ims__conns_stop(ims_server *s);

/* ---- routes.c ----------------------------------------------------------------- */
/* Route of a path (ROUTE_NONE if none); *id from {id}, -1 if {id} is not a
 * positive integer. Writes the allowed methods ("GET, HEAD") to *allow. */
int ims__route_match(const char *path, int64_t *id, const char **allow);
/* Whether the route needs the request body (POST routes). */
int ims__route_is_write(int route, const char *method);
/* Answer a request whose body (if any) is complete. */
enum MHD_Result ims__route_dispatch(ims_req *q, struct MHD_Connection *conn);

/* ---- json.c ------------------------------------------------------------------- */
/* The item as a search result / item object: id, name, category,
 * product_id, metadata (parsed; {} if invalid), image_url; plus score when
 * score_valid, and the long fields (sha256, format, size) when full. */
json_t *ims__json_item(const ims_item *it, int full, int score_valid, float score);
/* {"error":{"code","message"}} */
json_t *ims__json_error(const char *code, const char *message);
/* Short error code of an HTTP status ("not_found"). */
const char *ims__status_code_name(int status);

/* ---- metrics.c ---------------------------------------------------------------- */
void ims__metrics_record(ims_server *s, int route, int status, double seconds);
/* The Prometheus text exposition; free with ims_free(). */
char *ims__metrics_render(ims_server *s, size_t *len);

/* ---- web_page.c (generated from web/index.html) ------------------------------- */
extern const unsigned char ims__web_index_html[];
extern const size_t ims__web_index_html_len;

#endif /* IMS_SERVER_INT_H */
