/* SPDX-License-Identifier: MIT */
/*
 * conns.c — the server's defences at the connection level: how many
 * connections it keeps open, and how long a client may take to send a
 * request.
 *
 * Count. MHD calls ims__conn_notify when a connection opens and closes;
 * the count is an atomic. At max_connections the accept policy callback
 * refuses the next connection: MHD accepts and closes it at once, so the
 * client sees its connection closed within a round trip instead of
 * waiting in the listen backlog for a slot (what MHD's own limit does).
 * MHD's own limit is set a little above ours, as a backstop only: it
 * splits its limit evenly among the pool's threads, ours is global.
 *
 * Deadlines. MHD's connection timeout is an idle timeout: any byte
 * received restarts it, so a client sending its headers at one byte per
 * second ("slowloris") would hold its connection, and its memory pool,
 * forever. Each connection therefore carries a deadline (like Apache's
 * mod_reqtimeout):
 *   - opened, or its previous response done: the request's headers must
 *     be in within timeout_s;
 *   - headers in: the body must be complete within timeout_s, extended
 *     by one second per MIN_BODY_RATE bytes received (a slow but honest
 *     upload of 20 MB at 16 KiB/s gets through; a trickle does not);
 *   - request complete (being answered, or waiting for an encoder with
 *     its connection suspended): no deadline.
 * A reaper thread wakes every REAP_MS and shuts down (shutdown(2), not
 * close: the descriptor stays MHD's) each connection past its deadline;
 * MHD then reads end-of-file and closes it the ordinary way, with the
 * completion callback and all.
 *
 * Locking: c_mu guards the list of connections (linked in at open,
 * unlinked at close, walked by the reaper). MHD calls the close
 * notification before it closes the socket, so a descriptor the reaper
 * reaches under c_mu is still open. Deadlines are atomics written by the
 * connection's MHD thread and read by the reaper.
 */
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "imgsim/imgsim.h"
#include "server_int.h"

#define REAP_MS 200
#define MIN_BODY_RATE (16 * 1024) /* bytes per second, after the first timeout_s */

struct ims_conn {
    struct ims_conn *prev, *next;
    int fd;
    int64_t deadline_ms; /* ims_now() in ms; 0: none (atomic) */
};

static int64_t now_ms(void) { return (int64_t)(ims_now() * 1e3); }

enum MHD_Result ims__conn_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    ims_server *s = cls;
    (void)addr, (void)len;
    if (__atomic_load_n(&s->n_conns, __ATOMIC_RELAXED) < s->max_connections)
        return MHD_YES;
    __atomic_add_fetch(&s->m.conns_refused, 1, __ATOMIC_RELAXED);
    return MHD_NO;
}

void ims__conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe)
{
    ims_server *s = cls;
    ims_conn *c = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        __atomic_add_fetch(&s->n_conns, 1, __ATOMIC_RELAXED);
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!fd || !(c = ims_calloc(1, sizeof *c)))
            return; /* no deadline for this one; MHD's idle timeout still applies */
        c->fd = fd->connect_fd;
        c->deadline_ms = now_ms() + s->timeout_ms;
        pthread_mutex_lock(&s->c_mu);
        c->next = s->c_head;
        if (s->c_head)
            s->c_head->prev = c;
        s->c_head = c;
        pthread_mutex_unlock(&s->c_mu);
        *socket_context = c;
        return;
    }
    __atomic_sub_fetch(&s->n_conns, 1, __ATOMIC_RELAXED);
    if (!c)
        return;
    pthread_mutex_lock(&s->c_mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->c_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&s->c_mu);
    ims_free(c);
    *socket_context = NULL;
}

ims_conn *ims__conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

void ims__conn_deadline(ims_server *s, ims_conn *c, int phase)
{
    if (c)
        __atomic_store_n(&c->deadline_ms, phase ? now_ms() + s->timeout_ms : 0, __ATOMIC_RELAXED);
}

void ims__conn_received(ims_conn *c, size_t n)
{
    if (c && __atomic_load_n(&c->deadline_ms, __ATOMIC_RELAXED))
        __atomic_add_fetch(&c->deadline_ms, (int64_t)(n * 1000 / MIN_BODY_RATE), __ATOMIC_RELAXED);
}

/* Reaper: shut down the connections past their deadline, until stopped. */
static void *reaper_main(void *arg)
{
    ims_server *s = arg;
    pthread_mutex_lock(&s->c_mu);
    while (!s->c_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += REAP_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->c_cv, &s->c_mu, &ts);
        int64_t now = now_ms();
        for (ims_conn *c = s->c_head; c && !s->c_stop; c = c->next) {
            int64_t d = __atomic_load_n(&c->deadline_ms, __ATOMIC_RELAXED);
            if (!d || d > now)
                continue;
            __atomic_store_n(&c->deadline_ms, 0, __ATOMIC_RELAXED);
            shutdown(c->fd, SHUT_RDWR);
            __atomic_add_fetch(&s->m.conns_timed_out, 1, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&s->c_mu);
    return NULL;
}

int ims__conns_start(ims_server *s)
{
    if (pthread_create(&s->reaper, NULL, reaper_main, s))
        return -1;
    s->reaper_on = 1;
    return 0;
}

void ims__conns_stop(ims_server *s)
{
    if (!s->reaper_on)
        return;
    pthread_mutex_lock(&s->c_mu);
    s->c_stop = 1;
    pthread_cond_broadcast(&s->c_cv);
    pthread_mutex_unlock(&s->c_mu);
    pthread_join(s->reaper, NULL);
    s->reaper_on = 0;
}
