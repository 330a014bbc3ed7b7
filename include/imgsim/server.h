/* SPDX-License-Identifier: MIT */
/*
 * server.h — the imgsim HTTP API and web page over one open collection
 * (DESIGN.md "HTTP"), on libmicrohttpd.
 *
 *   ims_server_opts o = {.listen = "127.0.0.1:0"};
 *   ims_server *s;
 *   if (ims_server_start(coll, &o, &s, &err) == IMS_OK) {
 *       printf("%s\n", ims_server_url(s));   // the real port when 0 was asked
 *       ...wait for SIGTERM...
 *       ims_server_stop(s);                  // drains in-flight requests
 *   }
 *
 * Threads: the server answers on a pool of `threads` threads; handlers call
 * the collection directly (it is thread-safe), with no lock of the
 * server's own around them. ims_server_start/stop are called from one
 * thread. The collection must outlive the server.
 */
#ifndef IMGSIM_SERVER_H
#define IMGSIM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "imgsim/collection.h"
#include "imgsim/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ims_server ims_server;

typedef struct ims_server_opts {
    const char *listen;     /* "HOST:PORT" (IPv4 address or "localhost"); NULL: "127.0.0.1:8080";
                                port 0 picks a free port (see ims_server_port) */
    int threads;            /* answering threads; 0: max(8, 2 * CPUs) */
    const char *api_key;    /* non-empty: writes need "Authorization: Bearer <key>" (copied) */
    int api_key_reads;      /* 1 (with api_key): every route except /healthz needs the key,
                                the web page included */
    size_t max_body;        /* request body limit in bytes; 0: 20 MB */
    int timeout_s;          /* 0: 30. A connection is closed when idle this long, when its
                                request headers take longer than this to arrive, or its body
                                longer than this plus 1 s per 16 KiB received */
    int max_connections;    /* open connections at most, beyond which a new one is closed at
                                once; 0: 16384, or fewer when RLIMIT_NOFILE is lower (the
                                server raises its soft limit to the hard one; 1/8 of it, at
                                least 64, is kept for files). Each costs a 16 KiB pool at most */
    int max_queue;          /* encode requests (search by image, add) held at once: receiving
                                their body, waiting for an encoder, or encoding; beyond it
                                they get 503 + Retry-After before their body is read;
                                0: 256 */
    size_t max_body_memory; /* bytes of request bodies held at once, all requests together;
                                beyond it 503 + Retry-After; 0: max_queue * max_body, at most
                                1 GiB (and at least max_body) */
    int drain_timeout_ms;   /* ims_server_stop waits this long for in-flight requests; 0: 30000 */
    int quiet;              /* 1: no per-request log line on stderr */
} ims_server_opts;

/* Start answering on o->listen. The model is already loaded (ims_coll_open),
 * so the first request pays for nothing. Errors: IMS_EINVAL (listen
 * address), IMS_EIO (cannot bind: message says why), IMS_ENOMEM. *out is
 * NULL on failure; on success free it with ims_server_stop(). */
int ims_server_start(ims_coll *c, const ims_server_opts *o, ims_server **out, ims_error *err);

/* The bound port, and "http://HOST:PORT/" (owned by the server). */
int ims_server_port(const ims_server *s);
const char *ims_server_url(const ims_server *s);

/* Stop accepting new connections, let requests already received finish
 * (at most drain_timeout_ms), close everything and free the server.
 * ims_server_stop(NULL) is a no-op. */
void ims_server_stop(ims_server *s);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_SERVER_H */
