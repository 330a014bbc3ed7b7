/* SPDX-License-Identifier: MIT */
/*
 * http_client.h — a tiny blocking HTTP/1.1 client over sockets for tests:
 * one request per connection ("Connection: close"), the whole response read
 * until EOF. Header-only; static functions.
 */
#ifndef IMS_TESTS_HTTP_CLIENT_H
#define IMS_TESTS_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct http_resp {
    int status; /* 0: no response (connection failed or cut) */
    char *head; /* status line + headers, NUL-terminated */
    char *body; /* NUL-terminated too */
    size_t len; /* body length */
} http_resp;

static void http_resp_free(http_resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Value of header `name` into out (case-insensitive); 1 if present. */
static int http_header(const http_resp *r, const char *name, char *out, size_t n)
{
    size_t ln = strlen(name);
    for (const char *p = r->head ? strstr(r->head, "\r\n") : NULL; p && p[2];
         p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (!strncasecmp(h, name, ln) && h[ln] == ':') {
            h += ln + 1;
            while (*h == ' ')
                h++;
            const char *e = strstr(h, "\r\n");
            size_t l = e ? (size_t)(e - h) : strlen(h);
            if (l >= n)
                l = n - 1;
            memcpy(out, h, l);
            out[l] = '\0';
            return 1;
        }
    }
    return 0;
}

static int http_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int http_send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read the response until EOF and parse it (Content-Length or to EOF). */
static void http_read(int fd, http_resp *r)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    char *e = strstr(buf, "\r\n\r\n");
    if (!e || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        r->status = 0;
        free(buf);
        return;
    }
    size_t hl = (size_t)(e - buf) + 2;
    r->head = malloc(hl + 1);
    memcpy(r->head, buf, hl);
    r->head[hl] = '\0';
    r->len = len - (hl + 2);
    r->body = malloc(r->len + 1);
    memcpy(r->body, e + 4, r->len);
    r->body[r->len] = '\0';
    free(buf);
}

/* One request; extra_headers ("Name: value\r\n"...) may be NULL. Sends
 * Content-Length when body is not NULL. Returns r->status. */
static int http_request(int port, const char *method, const char *path, const char *extra_headers,
                        const void *body, size_t len, http_resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = http_connect(port);
    if (fd < 0)
        return 0;
    char head[4096];
    int n =
        snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s",
                 method, path, extra_headers ? extra_headers : "");
    if (body)
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", len);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    /* no shutdown(SHUT_WR) after the request: MHD takes a half-close for
     * a client gone away (and drops a suspended request's answer) */
    if (http_send_all(fd, head, (size_t)n) == 0 && body)
        http_send_all(fd, body, len);
    http_read(fd, r);
    close(fd);
    return r->status;
}

/* One GET on a keep-alive connection; its status (0: none). The
 * connection stays open, and idle, afterwards. */
static inline int http_keepalive_get(int fd, const char *path)
{
    char req[256], buf[8192];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    if (http_send_all(fd, req, (size_t)n))
        return 0;
    size_t len = 0;
    for (;;) {
        ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (k <= 0)
            return 0;
        len += (size_t)k;
        buf[len] = '\0';
        char *e = strstr(buf, "\r\n\r\n"), *cl = strstr(buf, "\r\nContent-Length: ");
        int status = 0;
        if (e && cl && len >= (size_t)(e + 4 - buf) + (size_t)atol(cl + 18))
            return sscanf(buf, "HTTP/1.%*d %d", &status) == 1 ? status : 0;
        if (len >= sizeof buf - 1)
            return 0;
    }
}

/* Raw bytes as the whole request (for chunked bodies, bad framing...). */
static int http_raw(int port, const void *req, size_t len, http_resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = http_connect(port);
    if (fd < 0)
        return 0;
    http_send_all(fd, req, len);
    http_read(fd, r);
    close(fd);
    return r->status;
}

/* A multipart/form-data body of n parts; *ct gets the Content-Type value. */
typedef struct http_part {
    const char *name, *filename, *type;
    const void *data;
    size_t len;
} http_part;

static char *http_multipart(const http_part *parts, int n, size_t *len, char ct[128])
{
    static const char boundary[] = "----imsTestBoundary7MA4YWxkTrZu0gW";
    size_t cap = 1024;
    for (int i = 0; i < n; i++)
        cap += parts[i].len + 512;
    char *b = malloc(cap);
    size_t l = 0;
    for (int i = 0; i < n; i++) {
        l += (size_t)sprintf(b + l, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", boundary,
                             parts[i].name);
        if (parts[i].filename)
            l += (size_t)sprintf(b + l, "; filename=\"%s\"", parts[i].filename);
        l += (size_t)sprintf(b + l, "\r\n");
        if (parts[i].type)
            l += (size_t)sprintf(b + l, "Content-Type: %s\r\n", parts[i].type);
        l += (size_t)sprintf(b + l, "\r\n");
        memcpy(b + l, parts[i].data, parts[i].len);
        l += parts[i].len;
        l += (size_t)sprintf(b + l, "\r\n");
    }
    l += (size_t)sprintf(b + l, "--%s--\r\n", boundary);
    snprintf(ct, 128, "multipart/form-data; boundary=%s", boundary);
    *len = l;
    return b;
}

#endif /* IMS_TESTS_HTTP_CLIENT_H */
