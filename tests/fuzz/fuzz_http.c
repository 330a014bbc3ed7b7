/* SPDX-License-Identifier: MIT */
/*
 * fuzz_http.c — untrusted bytes as raw HTTP/1.x requests (method, path,
 * query string, headers, chunked or plain bodies, multipart forms, JSON
 * metadata, several pipelined requests) to a real ims_server on 127.0.0.1,
 * started once per process over the in-memory fake collection
 * (tests/integration/fake_coll.h: no models, so the replay runs anywhere).
 *
 * The server: 2 threads, API key FUZZ_API_KEY (writes need it), an 8 KB
 * body limit (so 413 is reachable), 1 s idle timeout. Each input: the fake
 * is reset to items 1..3; the bytes are written on one loopback TCP
 * connection, which is half-closed once the server has answered what it
 * could (the server closes a connection on EOF, so an incomplete request
 * costs at most SETTLE_MAX_US), and the reply is read until the server
 * closes. Invariants:
 *   - the reply is a sequence of complete HTTP/1.x responses (status line,
 *     CRLF-terminated headers, Content-Length or chunked framing), or a
 *     prefix of one when the server reset the connection. A HEAD answer
 *     carries a Content-Length but no body, so a response may also end at
 *     its head when the next one (or the end) starts there;
 *   - each status is one our handlers give (then the answer is JSON with a
 *     Content-Type) or a protocol error libmicrohttpd answers itself (its
 *     HTML body or none, no Content-Type); never 500, 403 or 501, which no
 *     client bytes can cause over the fake; a 2xx always has Content-Type;
 *   - a JSON answer is an object; an error is {"error":{"code","message"}}
 *     whose code names its status; 405 has Allow, 503 Retry-After: 1, 201 a
 *     Location naming the new id;
 *   - the server answers and closes within EXCHANGE_TIMEOUT_S, then still
 *     answers GET /healthz on a new connection, and then holds no open
 *     connection (MHD_DAEMON_INFO_CURRENT_CONNECTIONS drops to 0).
 * Replayed over tests/fuzz/corpus/http/ by ctest (fuzz.fuzz_http); with
 * -DIMS_FUZZ=ON, fuzz_http_libfuzzer -dict=tests/fuzz/http.dict CORPUS.
 */
#define _GNU_SOURCE    /* memmem */
#define FAKE_SLOW_US 0 /* the fake's "SLOW" JPEG: no 600 ms sleep here */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

#include "imgsim/server.h"
#include "integration/fake_coll.h"
#include "server/server_int.h"

#define FUZZ_MAX_BYTES (256u * 1024)
#define FUZZ_MAX_BODY (8u * 1024) /* small, so that 413 is reachable */
#define FUZZ_API_KEY "fuzz-key-7"
#define EXCHANGE_TIMEOUT_S 5.0
#define REPLY_MAX (64u << 20) /* beyond this the reply is read and dropped */
#define SETTLE_US 100         /* see exchange() */
#define SETTLE_MAX_US 2000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ims_coll *coll;
static ims_server *srv;
static int port;

__attribute__((noreturn)) static void bad(const char *what, const char *detail, size_t dlen)
{
    fprintf(stderr, "fuzz_http: %s\n", what);
    if (detail) {
        fprintf(stderr, "--- reply (%zu bytes) ---\n", dlen);
        fwrite(detail, 1, dlen > 2048 ? 2048 : dlen, stderr);
        fprintf(stderr, "\n---\n");
    }
    abort();
}

static void stop_server(void)
{
    ims_server_stop(srv);
    ims_coll_close(coll);
}

static void setup(void)
{
    if (srv)
        return;
    ims_init();
    ims_coll_open("fake", NULL, &coll, NULL);
    ims_server_opts o = {.listen = "127.0.0.1:0",
                         .threads = 2,
                         .api_key = FUZZ_API_KEY,
                         .max_body = FUZZ_MAX_BODY,
                         .timeout_s = 1,
                         .max_connections = 64,
                         .drain_timeout_ms = 2000,
                         .quiet = !getenv("IMS_FUZZ_VERBOSE")};
    ims_error err = {0};
    if (ims_server_start(coll, &o, &srv, &err) != IMS_OK)
        bad(err.msg, NULL, 0);
    port = ims_server_port(srv);
    atexit(stop_server);
}

/* Back to ids 1..3: two JPEGs in "shoes", a PNG in "bags" (ids restart at 1). */
static void reset_coll(void)
{
    static const unsigned char a[] = {0xff, 0xd8, 0xff, 0xe0, 'J',  'F',  'I',
                                      'F',  0x10, 0x20, 0x30, 0x40, 0xff, 0xd9};
    static const unsigned char b[] = {0xff, 0xd8, 0xff, 0xe1, 'E',  'x',  'i',
                                      'f',  0x90, 0xa0, 0xb0, 0xc0, 0xff, 0xd9};
    static const unsigned char c[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0x0d};
    pthread_mutex_lock(&coll->mu);
    for (size_t i = 0; i < coll->n; i++) {
        ims_item_clear(&coll->items[i].it);
        free(coll->items[i].bytes);
    }
    coll->n = 0;
    pthread_mutex_unlock(&coll->mu);
    int64_t id;
    if (ims_coll_add(coll, a, sizeof a, "shoes", "red shoe", "{\"price\":3}", &id, NULL) ||
        ims_coll_add(coll, b, sizeof b, "shoes", "blue shoe", "{}", &id, NULL) ||
        ims_coll_add(coll, c, sizeof c, "bags", "bag", "{\"tags\":[\"x\"]}", &id, NULL) || id != 3)
        bad("cannot reset the fake collection", NULL, 0);
}

typedef struct reply {
    char *p;
    size_t len, cap;
    int reset;   /* the server reset the connection (unread bytes when it closed) */
    int dropped; /* over REPLY_MAX: the tail was read and thrown away */
} reply;

/* A non-blocking connection to the server. Non-blocking before connect():
 * libFuzzer's timer signal (SIGALRM, each second) interrupts a blocking
 * connect() with EINTR. */
static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int e = 0;
    socklen_t el = sizeof e;
    if (fd < 0)
        e = errno;
    else if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n = -1;
        if (errno != EINPROGRESS && errno != EINTR)
            e = errno;
        else {
            double deadline = ims_now() + EXCHANGE_TIMEOUT_S;
            while ((n = poll(&p, 1, 100)) <= 0 && ims_now() < deadline)
                ;
            if (n <= 0)
                e = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el))
                e = errno;
        }
    }
    if (e) {
        char m[96];
        snprintf(m, sizeof m, "cannot connect to the server: %s", strerror(e));
        bad(m, NULL, 0);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* close() without TIME_WAIT: at thousands of connections a second the
     * 28k ephemeral ports would run out within a minute otherwise */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    return fd;
}

/* Write data on a new connection, read until the server closes. With
 * half_close, shut our side down once the server has settled: no request
 * in flight and SETTLE_US quiet, or SETTLE_MAX_US quiet whatever it does
 * (a request still waiting for its body). Not at once: libmicrohttpd takes
 * a FIN for a client gone away, and would drop the answer of a search or
 * add that is still encoding. 0 done, -1 neither an answer nor a close
 * within EXCHANGE_TIMEOUT_S. */
static int exchange(const void *data, size_t size, int half_close, reply *r)
{
    r->len = 0;
    r->reset = r->dropped = 0;
    int fd = connect_server();
    size_t off = 0;
    int writing = size > 0, settling = half_close;
    double t = ims_now(), deadline = t + EXCHANGE_TIMEOUT_S, last = t;
    for (;;) {
        t = ims_now();
        if (t > deadline) {
            close(fd);
            return -1;
        }
        if (settling && !writing) {
            double quiet = (t - last) * 1e6;
            if (quiet >= SETTLE_MAX_US ||
                (quiet >= SETTLE_US && !__atomic_load_n(&srv->inflight, __ATOMIC_ACQUIRE))) {
                shutdown(fd, SHUT_WR);
                settling = 0;
            }
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (writing ? POLLOUT : 0)};
        struct timespec ts = {.tv_nsec = settling && !writing ? SETTLE_US * 1000 : 0};
        if (!(settling && !writing))
            ts.tv_sec = 1;
        if (ppoll(&p, 1, &ts, NULL) <= 0)
            continue;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (r->cap - r->len < 65536) {
                if (r->cap >= REPLY_MAX) {
                    r->dropped = 1;
                    r->len = 0;
                } else {
                    r->cap = r->cap ? 2 * r->cap : 1 << 20;
                    if (!(r->p = realloc(r->p, r->cap)))
                        bad("out of memory", NULL, 0);
                }
            }
            ssize_t n = recv(fd, r->p + r->len, r->cap - r->len, 0);
            if (n > 0) {
                r->len += (size_t)n;
                last = ims_now();
                continue;
            }
            if (n == 0)
                break;
            if (errno != EAGAIN && errno != EINTR) {
                r->reset = 1;
                break;
            }
        }
        if (writing && (p.revents & POLLOUT)) {
            ssize_t n = send(fd, (const char *)data + off, size - off, MSG_NOSIGNAL);
            if (n > 0 && (off += (size_t)n) == size)
                writing = 0;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                writing = 0; /* the server closed: read what it said */
            last = ims_now();
        }
    }
    close(fd);
    return 0;
}

/* ---- checking the reply ------------------------------------------------------ */

typedef struct resp {
    int status;
    const char *head; /* from the status line to the blank line */
    size_t head_len;
    const char *body;
    size_t body_len;
    int has_body; /* 0: a HEAD answer or 100 Continue (no body follows) */
} resp;

/* Value of header `name` in r->head (NUL-terminated copy); 1 if present. */
static int header(const resp *r, const char *name, char *out, size_t n)
{
    size_t ln = strlen(name);
    const char *end = r->head + r->head_len;
    const char *p = memchr(r->head, '\n', r->head_len);
    while (p && p + 1 < end) {
        const char *h = p + 1, *e = memchr(h, '\r', (size_t)(end - h));
        if (!e)
            break;
        if ((size_t)(e - h) > ln && !strncasecmp(h, name, ln) && h[ln] == ':') {
            h += ln + 1;
            while (h < e && (*h == ' ' || *h == '\t'))
                h++;
            size_t l = (size_t)(e - h) < n - 1 ? (size_t)(e - h) : n - 1;
            memcpy(out, h, l);
            out[l] = '\0';
            return 1;
        }
        p = e + 1;
    }
    return 0;
}

/* Statuses our handlers answer that the fake can produce from client bytes
 * (server_int.h IMS_STATUSES less 403, 500 and 501): always JSON. */
static int our_status(int s)
{
    return s == 200 || s == 201 || s == 400 || s == 401 || s == 404 || s == 405 || s == 409 ||
           s == 413 || s == 415 || s == 422 || s == 503 || s == 507;
}

/* The protocol errors libmicrohttpd answers itself, with its own HTML body
 * (or none) and no Content-Type. */
static int mhd_status(int s)
{
    return s == 400 || s == 413 || s == 414 || s == 417 || s == 431 || s == 501 || s == 505;
}

/* Decode a chunked body starting at p (end e); returns the end of the body
 * or NULL when incomplete or malformed. */
static const char *skip_chunked(const char *p, const char *e)
{
    for (;;) {
        char *x;
        const char *crlf = NULL;
        for (const char *q = p; q + 1 < e; q++)
            if (q[0] == '\r' && q[1] == '\n') {
                crlf = q;
                break;
            }
        if (!crlf)
            return NULL;
        unsigned long n = strtoul(p, &x, 16);
        if (x == p || (x != crlf && *x != ';'))
            return NULL;
        p = crlf + 2;
        if (n == 0) { /* trailers until a blank line */
            while (p + 1 < e && !(p[0] == '\r' && p[1] == '\n')) {
                const char *q = memchr(p, '\n', (size_t)(e - p));
                if (!q)
                    return NULL;
                p = q + 1;
            }
            return p + 1 < e ? p + 2 : NULL;
        }
        if ((size_t)(e - p) < n + 2 || p[n] != '\r' || p[n + 1] != '\n')
            return NULL;
        p += n + 2;
    }
}

static void check_json(const resp *r, const char *all, size_t all_len)
{
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, 0, &je);
    if (!json_is_object(j))
        bad("a JSON answer that is not a JSON object", all, all_len);
    if (r->status >= 400) {
        json_t *e = json_object_get(j, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (!code || !msg || !msg[0])
            bad("an error answer without error.code and error.message", all, all_len);
        if (strcmp(code, ims__status_code_name(r->status)))
            bad("error.code does not name the status", all, all_len);
    }
    if (r->status == 201) {
        char loc[64], want[64];
        json_int_t id = json_integer_value(json_object_get(j, "id"));
        snprintf(want, sizeof want, "/v1/items/%lld", (long long)id);
        if (id < 1 || !header(r, "Location", loc, sizeof loc) || strcmp(loc, want))
            bad("201 without a Location naming the new item", all, all_len);
    }
    json_decref(j);
}

static void check_one(const resp *r, const char *all, size_t all_len)
{
    char v[128];
    if (!our_status(r->status) && !mhd_status(r->status)) {
        char m[64];
        snprintf(m, sizeof m, "status %d, which no client bytes should cause here", r->status);
        bad(m, all, all_len);
    }
    if (r->status == 405 && (!header(r, "Allow", v, sizeof v) || !v[0]))
        bad("405 without Allow", all, all_len);
    if (r->status == 503 && (!header(r, "Retry-After", v, sizeof v) || strcmp(v, "1")))
        bad("503 without Retry-After", all, all_len);
    int ct = header(r, "Content-Type", v, sizeof v);
    if (r->status < 300 && (!ct || !v[0]))
        bad("a success answer without Content-Type", all, all_len);
    if (ct && !strncasecmp(v, "application/json", 16)) {
        if (r->has_body)
            check_json(r, all, all_len);
    } else if (r->status >= 400) { /* not ours: it must be libmicrohttpd's */
        if (!mhd_status(r->status) || ct)
            bad("an error answer that is not JSON", all, all_len);
        if (r->has_body && r->body_len && (r->body_len < 6 || memcmp(r->body, "<html>", 6)))
            bad("a protocol error whose body is not libmicrohttpd's", all, all_len);
    }
}

/* Split the reply into responses and check each. */
static int check_reply(const reply *rp)
{
    const char *p = rp->p, *end = rp->p + rp->len;
    int n = 0;
    while (p < end) {
        resp r = {0};
        const char *he = NULL;
        for (const char *q = p; q + 3 < end; q++)
            if (!memcmp(q, "\r\n\r\n", 4)) {
                he = q + 4;
                break;
            }
        if (!he) {
            if (rp->reset)
                return n; /* cut by the reset */
            bad("a reply that ends inside a response head", rp->p, rp->len);
        }
        if ((size_t)(end - p) < 13 || (memcmp(p, "HTTP/1.1 ", 9) && memcmp(p, "HTTP/1.0 ", 9)) ||
            p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
            p[12] != ' ')
            bad("not an HTTP/1.x status line", rp->p, rp->len);
        r.status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
        r.head = p;
        r.head_len = (size_t)(he - p);
        for (const char *q = p; q < he - 2; q++)
            if ((*q == '\r') != (q[1] == '\n') || (unsigned char)*q == 0)
                bad("a response head with a bare CR or LF, or a NUL", rp->p, rp->len);
        if (r.status == 100) { /* interim: the final answer follows */
            p = he;
            continue;
        }
        char v[64];
        const char *next;
        if (header(&r, "Transfer-Encoding", v, sizeof v)) {
            if (strcasecmp(v, "chunked"))
                bad("a Transfer-Encoding other than chunked", rp->p, rp->len);
            next = skip_chunked(he, end);
            if (!next) {
                if (rp->reset)
                    return n;
                bad("a chunked answer cut short", rp->p, rp->len);
            }
            r.body = he, r.body_len = (size_t)(next - he), r.has_body = 1;
        } else {
            char *x;
            if (!header(&r, "Content-Length", v, sizeof v))
                bad("an answer without Content-Length", rp->p, rp->len);
            unsigned long long cl = strtoull(v, &x, 10);
            if (x == v || *x)
                bad("a bad Content-Length in an answer", rp->p, rp->len);
            /* A HEAD answer carries the length of the body it leaves out:
             * the next response (or the end) starts right after the head. */
            if (cl <= (unsigned long long)(end - he) &&
                (he + cl == end ||
                 ((size_t)(end - he - cl) >= 5 && !memcmp(he + cl, "HTTP/", 5)))) {
                r.body = he, r.body_len = (size_t)cl, r.has_body = 1;
                next = he + cl;
            } else if (he == end || ((size_t)(end - he) >= 5 && !memcmp(he, "HTTP/", 5))) {
                next = he;
            } else {
                if (rp->reset)
                    return n;
                bad("an answer whose body does not match its Content-Length", rp->p, rp->len);
            }
        }
        check_one(&r, rp->p, rp->len);
        n++;
        p = next;
    }
    return n;
}

/* The server still answers a plain request on a new connection. */
static void check_alive(reply *rp)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (exchange(req, sizeof req - 1, 0, rp))
        bad("GET /healthz: no answer within the timeout after this input", NULL, 0);
    if (rp->len < 13 || memcmp(rp->p, "HTTP/1.1 200 ", 13) ||
        !memmem(rp->p, rp->len, "\"status\":\"ok\"", 13))
        bad("GET /healthz does not answer 200 after this input", rp->p, rp->len);
}

/* The server has closed and freed every connection of this input: none
 * lingers after its client's EOF (so none piles up across inputs), and the
 * request state is freed before the next input (libFuzzer's leak check
 * counts mallocs and frees per input). */
static void check_connections_closed(reply *rp)
{
    double deadline = ims_now() + EXCHANGE_TIMEOUT_S;
    for (;;) {
        const union MHD_DaemonInfo *i =
            MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!i || !i->num_connections)
            return;
        if (ims_now() > deadline)
            bad("the server still holds a connection after its client closed", rp->p, rp->len);
        usleep(20);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static reply rp;
    if (size > FUZZ_MAX_BYTES)
        return 0;
    setup();
    reset_coll();
    if (exchange(size ? data : (const uint8_t *)"", size, 1, &rp))
        bad("neither an answer nor a close within the timeout", rp.p, rp.len);
    if (!rp.dropped) {
        int n = check_reply(&rp);
        if (getenv("IMS_FUZZ_VERBOSE"))
            fprintf(stderr, "fuzz_http: %zu bytes in, %d answers, %zu bytes back%s\n", size, n,
                    rp.len, rp.reset ? " (reset)" : "");
    }
    check_alive(&rp);
    check_connections_closed(&rp);
    return 0;
}
