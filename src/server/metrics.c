/* SPDX-License-Identifier: MIT */
/*
 * metrics.c — request counters and latency histograms per route, and the
 * Prometheus text page (/metrics) with the collection's gauges.
 *
 * Counters are relaxed atomics in ims_server.m: a request never waits for
 * another to record. The page is a snapshot, not an atomic one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "imgsim/imgsim.h"
#include "server_int.h"

const double ims__lat_bucket[N_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,   0.25,   0.5,   1,    2.5,   10};
static const int status_code[N_STATUS] = {
#define IMS__ST_CODE(code) code,
    IMS_STATUSES(IMS__ST_CODE)
#undef IMS__ST_CODE
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

void ims__metrics_record(ims_server *s, int route, int status, double seconds)
{
    int i_st = N_STATUS;
    for (int i = 0; i < N_STATUS; i++)
        if (status_code[i] == status)
            i_st = i;
    if (route < 0 || route >= ROUTE__COUNT)
        route = ROUTE_NONE;
    int b = 0;
    while (b < N_LAT_BUCKETS - 1 && seconds > ims__lat_bucket[b])
        b++;
    if (seconds > ims__lat_bucket[N_LAT_BUCKETS - 1])
        b = N_LAT_BUCKETS; /* only in +Inf */
    __atomic_add_fetch(&s->m.requests[route][i_st], 1, __ATOMIC_RELAXED);
    if (b < N_LAT_BUCKETS)
        __atomic_add_fetch(&s->m.lat_bucket[route][b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->m.lat_count[route], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->m.lat_sum_us[route], (uint64_t)(seconds * 1e6), __ATOMIC_RELAXED);
}

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void add(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(buf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        if (b->oom)
            return;
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? 2 * b->cap : 8192;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = ims_realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

char *ims__metrics_render(ims_server *s, size_t *len)
{
    buf b = {0};
    add(&b, "# HELP imgsim_http_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE imgsim_http_requests_total counter\n");
    for (int r = 0; r < ROUTE__COUNT; r++)
        for (int i = 0; i <= N_STATUS; i++) {
            uint64_t v = LOAD(&s->m.requests[r][i]);
            if (!v)
                continue;
            if (i < N_STATUS)
                add(&b, "imgsim_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                    ims__route_label[r], status_code[i], (unsigned long long)v);
            else
                add(&b, "imgsim_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                    ims__route_label[r], (unsigned long long)v);
        }
    add(&b, "# HELP imgsim_http_request_duration_seconds Time from headers read to "
            "response done.\n# TYPE imgsim_http_request_duration_seconds histogram\n");
    for (int r = 0; r < ROUTE__COUNT; r++) {
        uint64_t n = LOAD(&s->m.lat_count[r]), cum = 0;
        if (!n)
            continue;
        for (int k = 0; k < N_LAT_BUCKETS; k++) {
            cum += LOAD(&s->m.lat_bucket[r][k]);
            add(&b, "imgsim_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                ims__route_label[r], ims__lat_bucket[k], (unsigned long long)cum);
        }
        add(&b, "imgsim_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
            ims__route_label[r], (unsigned long long)n);
        add(&b, "imgsim_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
            ims__route_label[r], LOAD(&s->m.lat_sum_us[r]) / 1e6);
        add(&b, "imgsim_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            ims__route_label[r], (unsigned long long)n);
    }
    add(&b,
        "# HELP imgsim_http_connections Open connections.\n"
        "# TYPE imgsim_http_connections gauge\nimgsim_http_connections %d\n"
        "# HELP imgsim_http_connections_max Open connections at most (max_connections).\n"
        "# TYPE imgsim_http_connections_max gauge\nimgsim_http_connections_max %d\n"
        "# HELP imgsim_http_connections_refused_total Connections closed at once at "
        "max_connections.\n"
        "# TYPE imgsim_http_connections_refused_total counter\n"
        "imgsim_http_connections_refused_total %llu\n"
        "# HELP imgsim_http_connections_timed_out_total Connections cut because their "
        "request came too slowly.\n"
        "# TYPE imgsim_http_connections_timed_out_total counter\n"
        "imgsim_http_connections_timed_out_total %llu\n"
        "# HELP imgsim_http_encode_requests Encode requests held (receiving, queued or "
        "encoding).\n"
        "# TYPE imgsim_http_encode_requests gauge\nimgsim_http_encode_requests %d\n"
        "# HELP imgsim_http_overloaded_total Encode requests answered 503 because max_queue "
        "or max_body_memory was full.\n"
        "# TYPE imgsim_http_overloaded_total counter\nimgsim_http_overloaded_total %llu\n"
        "# HELP imgsim_http_body_bytes_held Request body bytes held in memory now.\n"
        "# TYPE imgsim_http_body_bytes_held gauge\nimgsim_http_body_bytes_held %zu\n"
        "# HELP imgsim_http_body_bytes_held_max Most request body bytes held at once.\n"
        "# TYPE imgsim_http_body_bytes_held_max gauge\nimgsim_http_body_bytes_held_max %llu\n",
        LOAD(&s->n_conns), s->max_connections, (unsigned long long)LOAD(&s->m.conns_refused),
        (unsigned long long)LOAD(&s->m.conns_timed_out), LOAD(&s->n_encode),
        (unsigned long long)LOAD(&s->m.overloaded), LOAD(&s->body_held),
        (unsigned long long)LOAD(&s->m.body_held_max));
    ims_coll_stats st = {0};
    ims_coll_get_stats(s->coll, &st);
    add(&b,
        "# HELP imgsim_http_requests_in_flight Requests being served.\n"
        "# TYPE imgsim_http_requests_in_flight gauge\nimgsim_http_requests_in_flight %d\n"
        "# HELP imgsim_http_request_body_bytes_total Request body bytes read.\n"
        "# TYPE imgsim_http_request_body_bytes_total counter\n"
        "imgsim_http_request_body_bytes_total %llu\n"
        "# HELP imgsim_items Accepted items in the collection.\n"
        "# TYPE imgsim_items gauge\nimgsim_items %lld\n"
        "# HELP imgsim_index_items Live items in the index.\n"
        "# TYPE imgsim_index_items gauge\nimgsim_index_items %lld\n"
        "# HELP imgsim_index_dim Vector dimension.\n"
        "# TYPE imgsim_index_dim gauge\nimgsim_index_dim %d\n"
        "# HELP imgsim_index_bytes Memory the index holds (vectors, links, ids).\n"
        "# TYPE imgsim_index_bytes gauge\nimgsim_index_bytes %zu\n"
        "# HELP imgsim_index_mapped 1 if the index file is mapped, 0 if read into memory.\n"
        "# TYPE imgsim_index_mapped gauge\nimgsim_index_mapped %d\n"
        "# HELP imgsim_encodes_total Images encoded since start.\n"
        "# TYPE imgsim_encodes_total counter\nimgsim_encodes_total %lld\n"
        "# HELP imgsim_encode_seconds_total Time spent encoding images.\n"
        "# TYPE imgsim_encode_seconds_total counter\nimgsim_encode_seconds_total %.6f\n"
        "# HELP imgsim_writes_total Adds and deletes run since start.\n"
        "# TYPE imgsim_writes_total counter\nimgsim_writes_total %lld\n"
        "# HELP imgsim_write_batches_total Group commits (one transaction and one log sync"
        " each) they took.\n"
        "# TYPE imgsim_write_batches_total counter\nimgsim_write_batches_total %lld\n",
        __atomic_load_n(&s->inflight, __ATOMIC_RELAXED), (unsigned long long)LOAD(&s->m.body_bytes),
        (long long)st.items, (long long)st.indexed, st.dim, st.index_bytes, st.index_mapped,
        (long long)st.encodes, st.encode_seconds, (long long)st.writes,
        (long long)st.write_batches);
    if (b.oom) {
        ims_free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
