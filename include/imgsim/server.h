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
    const char *listen;   /* "HOST:PORT" (IPv4 address or "localhost"); NULL: "127.0.0.1:8080";
                                port 0 picks a free port (see ims_server_port) */
    int threads;          /* answering threads; 0: max(8, 2 * CPUs) */
    const char *api_key;  /* non-empty: writes need "Authorization: Bearer <key>" (copied) */
    size_t max_body;      /* request body limit in bytes; 0: 20 MB */
    int timeout_s;        /* idle/slow connection timeout; 0: 30 */
    int max_connections;  /* open connections at most; 0: 512 (MHD splits it evenly
                                among the threads, so each thread takes its share) */
    int drain_timeout_ms; /* ims_server_stop waits this long for in-flight requests; 0: 30000 */
    int quiet;            /* 1: no per-request log line on stderr */
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
