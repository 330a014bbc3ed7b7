/* SPDX-License-Identifier: MIT */
/*
 * test_server_hostile.c — the HTTP server against hostile connections and
 * overload, on 127.0.0.1 (ephemeral port) over the fake collection
 * (fake_coll.h), with raw sockets:
 *   - slowloris: request line, headers and bodies sent at one byte a
 *     second (raw and chunked) are cut at the timeout (2 s here);
 *   - 10,000 idle connections at once (held by a child process, so that
 *     each side has its own descriptors): new clients are still answered,
 *     the server's RSS growth is bounded (printed); the server raised its
 *     soft RLIMIT_NOFILE, and a low hard one sizes its connection limit;
 *   - bodies that never end: chunked forever, and a Content-Length over
 *     the limit then streaming: 413 or closed, bounded bytes and memory;
 *   - chunked encoding abuse (huge, negative and non-hex sizes, huge
 *     extensions, a missing CRLF, a size line of 1 MB): 400 or closed;
 *   - multipart: 10,000 parts, a part with 10,000 headers, a 71-character
 *     boundary, a missing final boundary;
 *   - one 100 KB header, 10,000 small headers, a 100 KB URL: 431/414/413;
 *   - overload: many concurrent slow uploads against a small max_queue get
 *     200 or 503 + Retry-After and nothing else, with the bodies held in
 *     memory bounded by max_queue x their size.
 * Throughout each case a prober thread asks GET /healthz and GET
 * /v1/items/1/similar on fresh connections: each must be answered 200
 * within PROBE_S, a generous bound (this is no speed test; the times are
 * printed). Times and memory bounds are x10 looser under sanitizers (RSS
 * is not checked there).
 *
 *   test_server_hostile                   run the tests
 *   test_server_hostile --hold PORT N     (child) open N connections, print how many
 *                                         opened, hold them until stdin closes
 *   test_server_hostile --limits HARD     (child) the connection limits taken under
 *                                         RLIMIT_NOFILE HARD
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "check.h"
#include "fake_coll.h"
#include "http_client.h"
#include "imgsim/server.h"
#include "proc_mem.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define PROBE_S (SANITIZED ? 50.0 : 5.0) /* another client's answer, at most */
#define BOUND_S (SANITIZED ? 50.0 : 5.0) /* an attack answered or cut, at most */
#define TIMEOUT_S 2                      /* the servers' timeout_s here */
#define MAX_BODY (256 * 1024)

extern char **environ;

/* libmicrohttpd's messages, counted by level (the server logs them at
 * info: one per bad client must not reach a warning log). */
static int g_mhd_msgs[4];
static void on_log(int level, const char *msg, void *ud)
{
    (void)ud;
    if (strstr(msg, "libmicrohttpd") && level >= 0 && level < 4)
        __atomic_add_fetch(&g_mhd_msgs[level], 1, __ATOMIC_RELAXED);
    if (level <= IMS_LOG_WARN)
        fprintf(stderr, "imgsim: %s\n", msg);
}

/* A metric's value from GET /metrics; -1 if absent. */
static double metric(int port, const char *name)
{
    http_resp r;
    double v = -1;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    if (http_request(port, "GET", "/metrics", NULL, NULL, 0, &r) == 200) {
        const char *p = strstr(r.body, key);
        if (p)
            v = atof(p + strlen(key));
    }
    http_resp_free(&r);
    return v;
}

static ims_server *start(ims_coll *c, ims_server_opts o)
{
    ims_server *s = NULL;
    ims_error err = {0};
    o.listen = "127.0.0.1:0";
    o.quiet = !getenv("IMS_TEST_VERBOSE");
    CHECK_RC(ims_server_start(c, &o, &s, &err), IMS_OK);
    return s;
}

/* ---- the prober: other clients, answered meanwhile -------------------------- */

typedef struct prober {
    int port;
    int stop; /* atomic */
    int n, bad, last_bad_status;
    double worst;
    pthread_t t;
} prober;

static void *prober_main(void *p)
{
    prober *pr = p;
    for (;;) { /* at least one round, even when the attack ended before it began */
        for (int i = 0; i < 2; i++) {
            http_resp r;
            double t0 = ims_now();
            int st = http_request(pr->port, "GET", i ? "/v1/items/1/similar?k=3" : "/healthz", NULL,
                                  NULL, 0, &r);
            double dt = ims_now() - t0;
            http_resp_free(&r);
            pr->n++;
            if (st != 200)
                pr->bad++, pr->last_bad_status = st;
            if (dt > pr->worst)
                pr->worst = dt;
        }
        if (__atomic_load_n(&pr->stop, __ATOMIC_RELAXED))
            break;
        usleep(100 * 1000);
    }
    return NULL;
}

static void prober_start(prober *pr, int port)
{
    memset(pr, 0, sizeof *pr);
    pr->port = port;
    pthread_create(&pr->t, NULL, prober_main, pr);
}

static void prober_end(prober *pr, const char *what)
{
    __atomic_store_n(&pr->stop, 1, __ATOMIC_RELAXED);
    pthread_join(pr->t, NULL);
    fprintf(stderr, "  %s: meanwhile %d probes, worst %.1f ms\n", what, pr->n, pr->worst * 1e3);
    CHECK_MSG(pr->n >= 2 && pr->bad == 0, "%s: %d of %d probes failed (last status %d)", what,
              pr->bad, pr->n, pr->last_bad_status);
    CHECK_MSG(pr->worst < PROBE_S, "%s: a probe waited %.1f s", what, pr->worst);
}

/* ---- raw connections ---------------------------------------------------------- */

/* Read what the server sends until it closes the connection or max_s
 * passes; the status line into r (0 if none). Returns the seconds until
 * closed, or -1 if still open at max_s. */
static double read_until_closed(int fd, double max_s, http_resp *r)
{
    double t0 = ims_now();
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    double closed = -1;
    memset(r, 0, sizeof *r);
    for (;;) {
        double left = max_s - (ims_now() - t0);
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1e3) + 1) <= 0)
            continue;
        ssize_t n =
            recv(fd, len + 1 < cap ? buf + len : buf, len + 1 < cap ? cap - len - 1 : cap, 0);
        if (n <= 0) {
            closed = ims_now() - t0;
            break;
        }
        if (len + 1 < cap)
            len += (size_t)n;
    }
    buf[len] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1)
        r->status = 0;
    char *e = strstr(buf, "\r\n\r\n");
    if (e) {
        r->head = strndup(buf, (size_t)(e - buf) + 2);
        r->body = strdup(e + 4);
        r->len = strlen(r->body);
    }
    free(buf);
    return closed;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* ---- 1. slowloris ---------------------------------------------------------------- */

/* n connections send `prefix`, then one byte a second (from `drip`, cycled)
 * until the server closes them. Checks each is closed after about
 * TIMEOUT_S, not at once and not never. */
static void trickle(int port, const char *what, const char *prefix, const char *drip, int n)
{
    int fd[8];
    double closed[8], t0 = ims_now();
    size_t i_drip = 0, n_drip = strlen(drip);
    for (int i = 0; i < n; i++) {
        fd[i] = http_connect(port);
        closed[i] = -1;
        CHECK(fd[i] >= 0);
        http_send_all(fd[i], prefix, strlen(prefix));
    }
    int open = n;
    double limit = TIMEOUT_S + 15 + (SANITIZED ? 30 : 0); /* far past any deadline */
    while (open && ims_now() - t0 < limit) {
        double next = ims_now() + 1.0;
        while (open && ims_now() < next) {
            struct pollfd p[8];
            for (int i = 0; i < n; i++)
                p[i] = (struct pollfd){.fd = closed[i] < 0 ? fd[i] : -1, .events = POLLIN};
            if (poll(p, (nfds_t)n, 50) <= 0)
                continue;
            for (int i = 0; i < n; i++) {
                char buf[4096];
                if (closed[i] < 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                    recv(fd[i], buf, sizeof buf, 0) <= 0) {
                    closed[i] = ims_now() - t0;
                    open--;
                }
            }
        }
        for (int i = 0; i < n; i++)
            if (closed[i] < 0)
                send(fd[i], drip + i_drip % n_drip, 1, MSG_NOSIGNAL);
        i_drip++;
    }
    double lo = 1e9, hi = 0;
    for (int i = 0; i < n; i++) {
        lo = closed[i] < lo ? closed[i] : lo;
        hi = closed[i] > hi ? closed[i] : hi;
        close(fd[i]);
    }
    fprintf(stderr, "  slowloris %-34s %d connections closed after %.2f..%.2f s (timeout %d s)\n",
            what, n, lo, hi, TIMEOUT_S);
    CHECK_MSG(open == 0, "%s: %d connections still open after %.0f s", what, open, limit);
    CHECK_MSG(lo >= TIMEOUT_S - 0.5, "%s: closed after %.2f s, before the timeout", what, lo);
    CHECK_MSG(hi < TIMEOUT_S + BOUND_S, "%s: closed only after %.2f s", what, hi);
}

static void test_slowloris(ims_coll *c)
{
    fprintf(stderr, "slowloris (1 byte/s):\n");
    ims_server *s = start(c, (ims_server_opts){.timeout_s = TIMEOUT_S, .threads = 2});
    if (!s)
        return;
    int port = ims_server_port(s);
    prober pr;
    prober_start(&pr, port);
    trickle(port, "request line", "GET /heal", "thz-padding-", 4);
    trickle(port, "headers", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", "abcdefgh", 4);
    trickle(port, "raw body",
            "POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            "Content-Length: 100000\r\n\r\n\xff\xd8\xff",
            "0123456789", 4);
    trickle(port, "chunked body",
            "POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            "Transfer-Encoding: chunked\r\n\r\n3\r\n\xff\xd8\xff\r\n",
            "1\r\na\r\n", 4);
    /* a keep-alive connection idle after its answer: MHD's own timeout */
    int fd = http_connect(port);
    CHECK_EQ(http_keepalive_get(fd, "/healthz"), 200);
    http_resp r;
    double dt = read_until_closed(fd, TIMEOUT_S + BOUND_S, &r);
    http_resp_free(&r);
    close(fd);
    CHECK_MSG(dt > 0, "an idle keep-alive connection was not closed");
    prober_end(&pr, "slowloris");
    CHECK(metric(port, "imgsim_http_connections_timed_out_total") >= 16);
    ims_server_stop(s);
}

/* ---- 2. 10,000 idle connections -------------------------------------------------- */

/* The child of test_idle: open n connections and hold them. */
static int hold(int port, int n)
{
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int *fd = malloc(sizeof *fd * (size_t)n), k = 0;
    for (; k < n; k++)
        if ((fd[k] = http_connect(port)) < 0)
            break;
    printf("%d\n", k);
    fflush(stdout);
    char ch;
    while (read(0, &ch, 1) > 0)
        ;
    for (int i = 0; i < k; i++)
        close(fd[i]);
    free(fd);
    return 0;
}

/* Spawn this test binary with argv; its stdin and stdout are pipes. */
static pid_t spawn_self(char **argv, int *to, FILE **from)
{
    int to_child[2], from_child[2];
    pid_t pid = -1;
    if (pipe(to_child) || pipe(from_child))
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
    posix_spawn_file_actions_addclose(&fa, to_child[1]);
    posix_spawn_file_actions_addclose(&fa, from_child[0]);
    if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ))
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(to_child[0]);
    close(from_child[1]);
    *to = to_child[1];
    *from = fdopen(from_child[0], "r");
    return pid;
}

/* The child of test_nofile: under RLIMIT_NOFILE `hard`, print the
 * connection limit a server takes by default and when asked for 100000. */
static int limits_child(int hard, ims_coll *c)
{
    struct rlimit rl = {(rlim_t)hard, (rlim_t)hard};
    if (setrlimit(RLIMIT_NOFILE, &rl))
        return 1;
    int got[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        ims_server *s = start(c, (ims_server_opts){.max_connections = i ? 100000 : 0});
        if (s)
            got[i] = (int)metric(ims_server_port(s), "imgsim_http_connections_max");
        ims_server_stop(s);
    }
    printf("%d %d\n", got[0], got[1]);
    return 0;
}

/* A low hard RLIMIT_NOFILE sizes the connection limit (256 descriptors:
 * 64 kept for files, 192 connections), an explicit one included. */
static void test_nofile(void)
{
    char *argv[] = {"test_server_hostile", "--limits", "256", NULL};
    int to, a = 0, b = 0;
    FILE *from = NULL;
    pid_t pid = spawn_self(argv, &to, &from);
    CHECK(pid > 0 && from);
    CHECK(from && fscanf(from, "%d %d", &a, &b) == 2);
    close(to);
    int st = 0;
    waitpid(pid, &st, 0);
    if (from)
        fclose(from);
    fprintf(stderr, "RLIMIT_NOFILE 256: max_connections %d by default, %d when 100000 asked\n", a,
            b);
    CHECK_EQ(a, 192);
    CHECK_EQ(b, 192);
}

static void test_idle(ims_coll *c)
{
    enum { WANT = 10000 };
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max > 1024 && rl.rlim_cur > 1024) { /* the server must raise it again */
        struct rlimit low = {1024, rl.rlim_max};
        setrlimit(RLIMIT_NOFILE, &low);
    }
    ims_server *s = start(c, (ims_server_opts){0}); /* the defaults */
    if (!s)
        return;
    int port = ims_server_port(s);
    getrlimit(RLIMIT_NOFILE, &rl); /* the server raised its soft limit to this */
    int max_conn = (int)metric(port, "imgsim_http_connections_max");
    long hard = rl.rlim_max == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_max;
    int n = WANT;
    if (n > max_conn - 32)
        n = max_conn - 32;
    if (n > hard - 64)
        n = (int)hard - 64;
    fprintf(stderr, "idle connections: RLIMIT_NOFILE %ld/%ld, max_connections %d, holding %d%s\n",
            (long)rl.rlim_cur, hard, max_conn, n, n < WANT ? " (scaled down to the limits)" : "");
    CHECK_MSG((long)rl.rlim_cur == hard, "soft RLIMIT_NOFILE %ld not raised to %ld",
              (long)rl.rlim_cur, hard);
    for (int i = 0; i < 3; i++) /* warm: a few requests' worth of allocations */
        metric(port, "imgsim_http_connections");
    long rss0 = proc_status_kb("VmRSS:");
    char sport[16], sn[16];
    snprintf(sport, sizeof sport, "%d", port);
    snprintf(sn, sizeof sn, "%d", n);
    char *argv[] = {"test_server_hostile", "--hold", sport, sn, NULL};
    int to_child = -1;
    FILE *f = NULL;
    double t0 = ims_now();
    pid_t pid = spawn_self(argv, &to_child, &f);
    CHECK(pid > 0);
    char line[32] = "";
    CHECK(f && fgets(line, sizeof line, f));
    int opened = atoi(line);
    double t_open = ims_now() - t0;
    CHECK_MSG(opened == n, "the child opened %d of %d connections", opened, n);
    /* wait until the server has them all (each probe adds its own) */
    double conns = 0;
    for (int i = 0; i < 600 && (conns = metric(port, "imgsim_http_connections")) < opened; i++)
        usleep(50 * 1000);
    double t_all = ims_now() - t0;
    long rss1 = proc_status_kb("VmRSS:");
    prober pr;
    prober_start(&pr, port);
    usleep(1000 * 1000);
    prober_end(&pr, "10k idle");
    long rss2 = proc_status_kb("VmRSS:");
    double refused = metric(port, "imgsim_http_connections_refused_total");
    long grow = (rss1 > rss2 ? rss1 : rss2) - rss0;
    fprintf(stderr,
            "  %d idle connections opened in %.2f s, all accepted after %.2f s (server counts "
            "%.0f); server RSS %ld -> %ld KiB: +%ld KiB, %.2f KiB per connection; refused %.0f\n",
            opened, t_open, t_all, conns, rss0, rss1 > rss2 ? rss1 : rss2, grow,
            opened ? (double)grow / opened : 0, refused);
    CHECK_MSG(conns >= opened, "the server counts %.0f of %d connections", conns, opened);
    CHECK_EQ(refused, 0);
    if (!SANITIZED) /* 32 KiB each would be 320 MB */
        CHECK_MSG(grow < 100 * 1024, "10k idle connections grew RSS by %ld KiB", grow);
    close(to_child); /* the child closes them all and exits */
    int st = 0;
    waitpid(pid, &st, 0);
    if (f)
        fclose(f);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < 600 && (conns = metric(port, "imgsim_http_connections")) > 1; i++)
        usleep(50 * 1000);
    CHECK_MSG(conns <= 1, "%.0f connections still counted after the child left", conns);
    ims_server_stop(s);
}

/* ---- 3. bodies that never end ------------------------------------------------------- */

static void test_endless_bodies(ims_coll *c)
{
    fprintf(stderr, "bodies that never end (max_body %d):\n", MAX_BODY);
    ims_server *s = start(c, (ims_server_opts){.max_body = MAX_BODY, .timeout_s = TIMEOUT_S});
    if (!s)
        return;
    int port = ims_server_port(s);
    prober pr;
    prober_start(&pr, port);
    static char chunk[65536 + 16];
    int hl = sprintf(chunk, "%x\r\n", 65536);
    memset(chunk + hl, 0x42, 65536);
    memcpy(chunk + hl + 65536, "\r\n", 2);
    size_t chunk_len = (size_t)hl + 65536 + 2;
    for (int kind = 0; kind < 2; kind++) {
        proc_reset_peak();
        long rss0 = proc_status_kb("VmRSS:");
        int fd = http_connect(port);
        const char *head =
            kind == 0 ? "POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n"
                      : "POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                        "Content-Length: 10000000000\r\n\r\n";
        http_send_all(fd, head, strlen(head));
        set_nonblock(fd);
        double t0 = ims_now(), t_end = -1;
        size_t sent = 0;
        http_resp r = {0};
        while (ims_now() - t0 < TIMEOUT_S + BOUND_S) {
            struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
            if (poll(&p, 1, 100) <= 0)
                continue;
            if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
                t_end = ims_now() - t0;
                break;
            }
            ssize_t w = kind == 0 ? send(fd, chunk, chunk_len, MSG_NOSIGNAL)
                                  : send(fd, chunk + hl, 65536, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN) {
                t_end = ims_now() - t0;
                break;
            }
            sent += w > 0 ? (size_t)w : 0;
        }
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        read_until_closed(fd, BOUND_S, &r);
        long kb = proc_status_kb("VmHWM:") - rss0;
        const char *what = kind == 0 ? "chunked forever" : "Content-Length 10 GB, streaming";
        fprintf(stderr, "  %-32s -> %s %d after %.2f s, %zu bytes sent, peak RSS +%ld KiB\n", what,
                r.status ? "status" : "closed, status", r.status, t_end, sent, kb);
        CHECK_MSG(t_end >= 0, "%s: still reading after %.0f s", what, TIMEOUT_S + BOUND_S);
        CHECK_MSG(r.status == 413 || r.status == 0, "%s: status %d", what, r.status);
        if (kind == 1)
            CHECK_MSG(r.status == 413, "%s: no 413 (status %d)", what, r.status);
        CHECK_MSG(sent < 64u << 20, "%s: the server read %zu bytes", what, sent);
        if (!SANITIZED)
            CHECK_MSG(kb < 32 * 1024, "%s: peak RSS grew by %ld KiB", what, kb);
        http_resp_free(&r);
        close(fd);
    }
    prober_end(&pr, "endless bodies");
    CHECK(metric(port, "imgsim_http_body_bytes_held_max") <= MAX_BODY);
    CHECK_EQ(metric(port, "imgsim_http_body_bytes_held"), 0);
    ims_server_stop(s);
}

/* ---- 4. chunked encoding abuse ---------------------------------------------------- */

static char *repeat(const char *head, char ch, size_t n, const char *tail, size_t *len)
{
    size_t hl = strlen(head), tl = strlen(tail);
    char *p = malloc(hl + n + tl + 1);
    memcpy(p, head, hl);
    memset(p + hl, ch, n);
    memcpy(p + hl + n, tail, tl + 1);
    *len = hl + n + tl;
    return p;
}

/* Send a whole request; expect one of the statuses ok[] (ending with -1;
 * 0: closed without an answer), within BOUND_S. */
#define OK(...) ((const int[]){__VA_ARGS__, -1})
static void expect_refused(int port, const char *what, const char *req, size_t len, const int *ok)
{
    int fd = http_connect(port);
    double t0 = ims_now();
    http_send_all(fd, req, len);
    http_resp r;
    double closed = read_until_closed(fd, TIMEOUT_S + BOUND_S, &r);
    double dt = ims_now() - t0;
    fprintf(stderr, "  %-40s -> %3d in %7.1f ms%s\n", what, r.status, dt * 1e3,
            closed < 0 ? " (still open)" : "");
    int good = 0;
    for (const int *k = ok; *k >= 0; k++)
        good |= r.status == *k;
    CHECK_MSG(good, "%s: status %d (body %s)", what, r.status, r.body ? r.body : "");
    CHECK_MSG(closed >= 0 || r.status, "%s: no answer and still open after %.0f s", what,
              TIMEOUT_S + BOUND_S);
    CHECK_MSG(dt < TIMEOUT_S + BOUND_S, "%s: took %.1f s", what, dt);
    http_resp_free(&r);
    close(fd);
}

static void test_chunked_abuse(ims_coll *c)
{
    fprintf(stderr, "chunked encoding abuse:\n");
    ims_server *s = start(c, (ims_server_opts){.max_body = MAX_BODY, .timeout_s = TIMEOUT_S});
    if (!s)
        return;
    int port = ims_server_port(s);
    prober pr;
    prober_start(&pr, port);
    static const char head[] = "POST /v1/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               "Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const struct {
        const char *what, *body;
    } cases[] = {
        {"size ffffffffffffffff", "ffffffffffffffff\r\n\xff\xd8\xff"
                                  "abcdef\r\n"},
        {"size 10000000000000000 (overflow)", "10000000000000000\r\n\xff\xd8\xff\r\n0\r\n\r\n"},
        {"size -1", "-1\r\n\xff\xd8\xff\r\n0\r\n\r\n"},
        {"size not hex", "zz\r\n\xff\xd8\xff\r\n0\r\n\r\n"},
        {"empty size", "\r\n\xff\xd8\xff\r\n0\r\n\r\n"},
        {"missing CRLF after data", "5\r\n\xff\xd8\xff"
                                    "abXY0\r\n\r\n"},
        {"data longer than its size", "3\r\n\xff\xd8\xff"
                                      "abcdefgh\r\n0\r\n\r\n"},
    };
    char req[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = snprintf(req, sizeof req, "%s%s", head, cases[i].body);
        expect_refused(port, cases[i].what, req, (size_t)n, OK(400, 413, 0));
    }
    size_t len;
    char h[sizeof head + 8];
    snprintf(h, sizeof h, "%s5;", head);
    char *p = repeat(h, 'e', 100 * 1024,
                     "\r\n\xff\xd8\xff"
                     "ab\r\n0\r\n\r\n",
                     &len);
    /* libmicrohttpd 0.9.75 needs a chunk's size line to fit in the
     * connection's pool; when it does not, it answers 500 and closes */
    expect_refused(port, "chunk extension of 100 KB", p, len, OK(400, 413, 500, 0));
    free(p);
    p = repeat(head, '0', 1 << 20,
               "5\r\n\xff\xd8\xff"
               "ab\r\n0\r\n\r\n",
               &len);
    expect_refused(port, "size line of 1 MB", p, len, OK(400, 413, 500, 0));
    free(p);
    prober_end(&pr, "chunked abuse");
    ims_server_stop(s);
}

/* ---- 5. multipart ------------------------------------------------------------------- */

/* A multipart request to POST /v1/search: `pre` (raw part text) then an
 * image part, with boundary b; final: the closing delimiter. */
static char *form(const char *b, const char *pre, size_t pre_len, const char *img_headers,
                  int final, size_t *len)
{
    size_t cap = pre_len + strlen(img_headers) + 2 * strlen(b) + 4096;
    char *body = malloc(cap), *req;
    size_t l = 0;
    memcpy(body, pre, pre_len);
    l = pre_len;
    l += (size_t)sprintf(body + l,
                         "--%s\r\nContent-Disposition: form-data; name=\"image\"; "
                         "filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n%s\r\n"
                         "\xff\xd8\xff"
                         "abcdefgh\r\n",
                         b, img_headers);
    if (final)
        l += (size_t)sprintf(body + l, "--%s--\r\n", b);
    req = malloc(l + strlen(b) + 1024);
    int hl = sprintf(req,
                     "POST /v1/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Type: multipart/form-data; boundary=%s\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     b, l);
    memcpy(req + hl, body, l);
    free(body);
    *len = (size_t)hl + l;
    return req;
}

static void test_multipart(ims_coll *c)
{
    fprintf(stderr, "multipart:\n");
    ims_server *s =
        start(c, (ims_server_opts){.max_body = 4 << 20, .timeout_s = TIMEOUT_S, .threads = 2});
    if (!s)
        return;
    int port = ims_server_port(s);
    prober pr;
    prober_start(&pr, port);
    const char *b = "imsB0undary";
    size_t len, pl = 0;
    /* the well-formed form is answered 200 (the cases below differ in one thing) */
    char *req = form(b, "", 0, "", 1, &len);
    expect_refused(port, "a well-formed form", req, len, OK(200));
    free(req);
    /* 10,000 parts before the image */
    char *pre = malloc(10000 * 80);
    for (int i = 0; i < 10000; i++)
        pl += (size_t)sprintf(
            pre + pl, "--%s\r\nContent-Disposition: form-data; name=\"x%d\"\r\n\r\nv\r\n", b, i);
    proc_reset_peak();
    long rss0 = proc_status_kb("VmRSS:");
    req = form(b, pre, pl, "", 1, &len);
    expect_refused(port, "10,000 parts", req, len, OK(400, 413));
    free(req);
    free(pre);
    /* a part with 10,000 headers */
    char *hs = malloc(10000 * 24 + 1);
    size_t hl = 0;
    for (int i = 0; i < 10000; i++)
        hl += (size_t)sprintf(hs + hl, "X-H%d: v\r\n", i);
    req = form(b, "", 0, hs, 1, &len);
    expect_refused(port, "a part with 10,000 headers", req, len, OK(400, 413, 200));
    free(req);
    free(hs);
    long kb = proc_status_kb("VmHWM:") - rss0;
    fprintf(stderr, "  peak RSS growth over the two: %ld KiB\n", kb);
    if (!SANITIZED)
        CHECK_MSG(kb < 32 * 1024, "multipart: peak RSS grew by %ld KiB", kb);
    /* boundaries of 70 (the most RFC 2046 allows) and 71 characters */
    char b70[72], b71[73];
    memset(b70, 'b', 70), b70[70] = 0;
    memset(b71, 'b', 71), b71[71] = 0;
    req = form(b70, "", 0, "", 1, &len);
    expect_refused(port, "boundary of 70 characters", req, len, OK(200));
    free(req);
    req = form(b71, "", 0, "", 1, &len);
    expect_refused(port, "boundary of 71 characters", req, len, OK(400));
    free(req);
    char b4k[4097];
    memset(b4k, 'b', 4096), b4k[4096] = 0;
    req = form(b4k, "", 0, "", 1, &len);
    expect_refused(port, "boundary of 4096 characters", req, len, OK(400, 431, 413));
    free(req);
    req = form(b, "", 0, "", 0, &len);
    expect_refused(port, "missing final boundary", req, len, OK(400));
    free(req);
    prober_end(&pr, "multipart");
    ims_server_stop(s);
}

/* ---- 6. headers over the limit -------------------------------------------------------- */

static void test_headers(ims_coll *c)
{
    fprintf(stderr, "headers over the limit:\n");
    ims_server *s = start(c, (ims_server_opts){.timeout_s = TIMEOUT_S, .threads = 2});
    if (!s)
        return;
    int port = ims_server_port(s);
    prober pr;
    prober_start(&pr, port);
    size_t len;
    char *p =
        repeat("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", 'a', 100 * 1024, "\r\n\r\n", &len);
    expect_refused(port, "one header of 100 KB", p, len, OK(431, 413, 0));
    free(p);
    char *many = malloc(10000 * 24 + 256);
    size_t l = (size_t)sprintf(many, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 10000; i++)
        l += (size_t)sprintf(many + l, "X-H%d: v\r\n", i);
    l += (size_t)sprintf(many + l, "\r\n");
    expect_refused(port, "10,000 small headers", many, l, OK(431, 413, 0));
    free(many);
    p = repeat("GET /v1/items/1/similar?category=", 'c', 100 * 1024, " HTTP/1.1\r\nHost: x\r\n\r\n",
               &len);
    expect_refused(port, "a URL of 100 KB", p, len, OK(414, 431, 0));
    free(p);
    /* just inside: 6 KB of headers are fine */
    p = repeat("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Ok: ", 'a', 6 * 1024,
               "\r\n\r\n", &len);
    expect_refused(port, "one header of 6 KB (allowed)", p, len, OK(200));
    free(p);
    prober_end(&pr, "headers");
    ims_server_stop(s);
}

/* ---- 7. overload: the bounded encode queue ---------------------------------------------- */

typedef struct upload_arg {
    int port, status, retry_after, chunked;
    size_t size;
    char code[32];
} upload_arg;

static void *slow_upload(void *p)
{
    upload_arg *a = p;
    unsigned char *img = malloc(a->size);
    memcpy(img, "\xff\xd8\xffSLOW", 7);
    for (size_t i = 7; i < a->size; i++)
        img[i] = (unsigned char)(i * 7 + (size_t)a->port);
    http_resp r;
    if (!a->chunked) {
        http_request(a->port, "POST", "/v1/search", "Content-Type: image/jpeg\r\n", img, a->size,
                     &r);
    } else {
        char *req = malloc(a->size + 512);
        size_t l = (size_t)sprintf(req,
                                   "POST /v1/search HTTP/1.1\r\nHost: x\r\nConnection: close"
                                   "\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n",
                                   a->size);
        memcpy(req + l, img, a->size);
        l += a->size;
        l += (size_t)sprintf(req + l, "\r\n0\r\n\r\n");
        http_raw(a->port, req, l, &r);
        free(req);
    }
    a->status = r.status;
    char v[16];
    a->retry_after = http_header(&r, "Retry-After", v, sizeof v) ? atoi(v) : -1;
    const char *c = r.body ? strstr(r.body, "\"code\":\"") : NULL;
    if (c)
        sscanf(c + 8, "%31[^\"]", a->code);
    http_resp_free(&r);
    free(img);
    return NULL;
}

/* n concurrent slow uploads; checks every answer is 200 or 503 +
 * Retry-After, at least one 503 and (need_200) at least one 200. */
static void overload_round(int port, const char *what, int n, size_t size, int chunked,
                           int need_200, int *n200, int *n503)
{
    pthread_t t[64];
    upload_arg a[64];
    prober pr;
    prober_start(&pr, port);
    double t0 = ims_now();
    for (int i = 0; i < n; i++) {
        a[i] = (upload_arg){.port = port, .size = size, .chunked = chunked};
        pthread_create(&t[i], NULL, slow_upload, &a[i]);
    }
    *n200 = *n503 = 0;
    int other = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        if (a[i].status == 200) {
            ++*n200;
        } else if (a[i].status == 503) {
            ++*n503;
            CHECK_MSG(a[i].retry_after >= 1, "%s: a 503 without Retry-After", what);
            CHECK_STR_EQ(a[i].code, "busy");
        } else {
            other++;
            fprintf(stderr, "  %s: upload %d got %d\n", what, i, a[i].status);
        }
    }
    double dt = ims_now() - t0;
    prober_end(&pr, what);
    fprintf(stderr,
            "  %s: %d uploads of %zu B (600 ms encodes): %d x 200, %d x 503, %d other in "
            "%.2f s\n",
            what, n, size, *n200, *n503, other, dt);
    CHECK_EQ(other, 0);
    CHECK_MSG(*n200 >= need_200 && *n503 >= 1, "%s: %d x 200, %d x 503", what, *n200, *n503);
}

static void test_overload(ims_coll *c)
{
    fprintf(stderr, "overload:\n");
    enum { QUEUE = 4, N = 24, SIZE = 100 * 1024 };
    ims_server *s =
        start(c, (ims_server_opts){.max_queue = QUEUE, .threads = 2, .max_body = MAX_BODY});
    if (!s)
        return;
    int port = ims_server_port(s);
    int n200, n503;
    overload_round(port, "max_queue 4", N, SIZE, 0, 1, &n200, &n503);
    double held_max = metric(port, "imgsim_http_body_bytes_held_max");
    fprintf(stderr, "  body bytes held at most: %.0f (max_queue x body = %d)\n", held_max,
            QUEUE * SIZE);
    CHECK_MSG(held_max > 0 && held_max <= QUEUE * SIZE, "held %.0f bytes at once", held_max);
    CHECK_EQ(metric(port, "imgsim_http_overloaded_total"), n503);
    CHECK_EQ(metric(port, "imgsim_http_encode_requests"), 0);
    CHECK_EQ(metric(port, "imgsim_http_body_bytes_held"), 0);
    /* a queue slot freed is taken again: a later upload is served */
    upload_arg one = {.port = port, .size = 1000};
    slow_upload(&one);
    CHECK_EQ(one.status, 200);
    ims_server_stop(s);

    /* chunked bodies (no declared length) against the body memory: each
     * reserves as its bytes come, so all of them may run out half-way */
    s = start(
        c, (ims_server_opts){
               .max_queue = 64, .max_body_memory = 3 * SIZE, .threads = 2, .max_body = MAX_BODY});
    if (!s)
        return;
    port = ims_server_port(s);
    overload_round(port, "max_body_memory 300 KiB, chunked", 12, SIZE, 1, 0, &n200, &n503);
    held_max = metric(port, "imgsim_http_body_bytes_held_max");
    fprintf(stderr, "  body bytes held at most: %.0f (max_body_memory %d)\n", held_max, 3 * SIZE);
    CHECK_MSG(held_max > 0 && held_max <= 3 * SIZE, "held %.0f bytes at once", held_max);
    CHECK_EQ(metric(port, "imgsim_http_body_bytes_held"), 0);
    one = (upload_arg){.port = port, .size = SIZE, .chunked = 1}; /* memory is free again */
    slow_upload(&one);
    CHECK_EQ(one.status, 200);
    ims_server_stop(s);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--hold"))
        return hold(atoi(argv[2]), atoi(argv[3]));
    int limits = argc == 3 && !strcmp(argv[1], "--limits");
    (void)http_multipart; /* of http_client.h: these forms are made by hand */
    signal(SIGPIPE, SIG_IGN);
    ims_log_set_handler(on_log, NULL); /* before any thread */
    ims_init();
    ims_log_set_level(IMS_LOG_INFO);
    ims_coll *coll;
    ims_coll_open("fake", NULL, &coll, NULL);
    int64_t id; /* item 1, for the probes' similar-by-id */
    CHECK_RC(ims_coll_add(coll,
                          "\xff\xd8\xff"
                          "abcdefgh",
                          11, "fruit", "one", NULL, &id, NULL),
             IMS_OK);
    CHECK_RC(ims_coll_add(coll,
                          "\xff\xd8\xff"
                          "zyxwvuts",
                          11, "fruit", "two", NULL, &id, NULL),
             IMS_OK);
    if (limits) {
        int rc = limits_child(atoi(argv[2]), coll);
        ims_coll_close(coll);
        return rc ? rc : check_failures;
    }
    const char *only = getenv("IMS_TEST_ONLY"); /* e.g. "idle" while debugging */
#define RUN(name)                      \
    if (!only || !strcmp(only, #name)) \
    test_##name(coll)
    RUN(slowloris);
    if (!only || !strcmp(only, "nofile"))
        test_nofile();
    RUN(idle);
    RUN(endless_bodies);
    RUN(chunked_abuse);
    RUN(multipart);
    RUN(headers);
    RUN(overload);
    ims_coll_close(coll);
    fprintf(stderr, "libmicrohttpd messages: %d error, %d warning, %d info\n", g_mhd_msgs[0],
            g_mhd_msgs[1], g_mhd_msgs[2]);
    CHECK_EQ(g_mhd_msgs[IMS_LOG_ERROR] + g_mhd_msgs[IMS_LOG_WARN], 0);
    if (!only || !strcmp(only, "headers"))
        CHECK(g_mhd_msgs[IMS_LOG_INFO] > 0); /* they are logged, at info */
    return check_report();
}
