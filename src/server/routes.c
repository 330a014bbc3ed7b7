/* SPDX-License-Identifier: MIT */
/*
 * routes.c — the endpoints of DESIGN.md "HTTP", one handler each.
 *
 * Every handler runs once the request body (if any) is complete and the
 * checks of http.c (route, method, API key, size, content type) passed.
 * Handlers call the collection directly; its errors go through
 * ims__send_ims_error (EINVAL 400, ENOTFOUND 404, EUNSUPPORTED 415,
 * EFORMAT/ECORRUPT/ETOOBIG 422, EBUSY 503 + Retry-After...).
 * Image URLs are "/v1/images/<id>": clients never see a file path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imgsim/imgsim.h"
#include "server_int.h"

const char *const ims__route_label[ROUTE__COUNT] = {
#define IMS__ROUTE_LABEL(name, label) label,
    IMS_ROUTES(IMS__ROUTE_LABEL)
#undef IMS__ROUTE_LABEL
};

#define K_DEFAULT 10
#define K_MAX 1000

/* A positive decimal int64 spanning [s, end); -1 if not one. */
static int64_t parse_id(const char *s, size_t n)
{
    if (!n || n > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v > 0 ? v : -1;
}

int ims__route_match(const char *path, int64_t *id, const char **allow)
{
    static const char get[] = "GET, HEAD", post[] = "POST", item[] = "GET, HEAD, DELETE";
    *id = 0;
    *allow = get;
    if (!strcmp(path, "/") || !strcmp(path, "/index.html"))
        return ROUTE_PAGE;
    if (!strcmp(path, "/healthz"))
        return ROUTE_HEALTHZ;
    if (!strcmp(path, "/metrics"))
        return ROUTE_METRICS;
    if (!strcmp(path, "/v1/categories"))
        return ROUTE_CATEGORIES;
    if (!strcmp(path, "/v1/search")) {
        *allow = post;
        return ROUTE_SEARCH;
    }
    if (!strcmp(path, "/v1/items")) {
        *allow = post;
        return ROUTE_ITEMS;
    }
    if (!strncmp(path, "/v1/images/", 11)) {
        const char *s = path + 11;
        if (!*s || strchr(s, '/'))
            return ROUTE_NONE;
        *id = parse_id(s, strlen(s));
        return ROUTE_IMAGE;
    }
    if (!strncmp(path, "/v1/items/", 10)) {
        const char *s = path + 10, *slash = strchr(s, '/');
        if (!*s)
            return ROUTE_NONE;
        if (!slash) {
            *id = parse_id(s, strlen(s));
            *allow = item;
            return ROUTE_ITEM;
        }
        if (strcmp(slash, "/similar"))
            return ROUTE_NONE;
        *id = parse_id(s, (size_t)(slash - s));
        return ROUTE_SIMILAR;
    }
    return ROUTE_NONE;
}

int ims__route_is_write(int route, const char *method)
{
    return route == ROUTE_ITEMS || (route == ROUTE_ITEM && !strcmp(method, "DELETE"));
}

/* ?k= (default 10, 1..1000); 0 ok, -1 bad. */
static int query_k(struct MHD_Connection *conn, int *k)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "k");
    *k = K_DEFAULT;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > K_MAX)
        return -1;
    *k = (int)n;
    return 0;
}

/* ?category= ; NULL when absent or empty. */
static const char *query_category(struct MHD_Connection *conn)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "category");
    return v && *v ? v : NULL;
}

static enum MHD_Result send_hits(ims_req *q, struct MHD_Connection *conn, int k,
                                 const char *category, ims_coll_hit *hits, size_t n,
                                 int64_t self_id)
{
    json_t *arr = json_array(), *j = json_object();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, ims__json_item(&hits[i].item, 0, 1, hits[i].score));
    ims_coll_hits_free(hits, n);
    if (!arr || !j) {
        json_decref(arr);
        json_decref(j);
        return MHD_NO;
    }
    json_object_set_new(j, "k", json_integer(k));
    json_object_set_new(j, "category", category ? json_string(category) : json_null());
    if (q->route == ROUTE_SIMILAR)
        json_object_set_new(j, "id", json_integer(q->id));
    else
        json_object_set_new(j, "self_id", self_id ? json_integer(self_id) : json_null());
    json_object_set_new(j, "results", arr);
    return ims__send_json(q, conn, 200, j);
}

static enum MHD_Result do_search(ims_req *q, struct MHD_Connection *conn)
{
    int k;
    if (query_k(conn, &k))
        return ims__send_error(q, conn, 400, "k must be an integer in 1..1000");
    if (!q->raw.seen || !q->raw.len)
        return ims__send_error(q, conn, 400,
                               q->body_kind == BODY_MULTIPART ? "no \"image\" field in the form"
                                                              : "empty body: send an image");
    const char *category = query_category(conn);
    ims_coll_hit *hits = NULL;
    size_t n = 0;
    int64_t self_id = 0;
    ims_error err = {0};
    int rc = ims_coll_search_image(q->srv->coll, q->raw.data, q->raw.len, k, category, &hits, &n,
                                   &self_id, &err);
    if (rc)
        return ims__send_ims_error(q, conn, rc, &err);
    return send_hits(q, conn, k, category, hits, n, self_id);
}

static enum MHD_Result do_similar(ims_req *q, struct MHD_Connection *conn)
{
    int k;
    if (query_k(conn, &k))
        return ims__send_error(q, conn, 400, "k must be an integer in 1..1000");
    const char *category = query_category(conn);
    ims_coll_hit *hits = NULL;
    size_t n = 0;
    ims_error err = {0};
    int rc = ims_coll_similar(q->srv->coll, q->id, k, category, &hits, &n, &err);
    if (rc)
        return ims__send_ims_error(q, conn, rc, &err);
    return send_hits(q, conn, k, category, hits, n, 0);
}

/* The item, or 404 for one that is not (or no longer) accepted. */
static int get_item(ims_req *q, ims_item *it, ims_error *err)
{
    int rc = ims_coll_get(q->srv->coll, q->id, it, err);
    if (!rc && it->status != IMS_ITEM_ACCEPTED) {
        ims_item_clear(it);
        rc = ims_error_set(err, IMS_ENOTFOUND, "item %lld not found", (long long)q->id);
    }
    return rc;
}

static enum MHD_Result do_get_item(ims_req *q, struct MHD_Connection *conn)
{
    ims_item it = {0};
    ims_error err = {0};
    int rc = get_item(q, &it, &err);
    if (rc)
        return ims__send_ims_error(q, conn, rc, &err);
    json_t *j = ims__json_item(&it, 1, 0, 0);
    ims_item_clear(&it);
    return ims__send_json(q, conn, 200, j);
}

static enum MHD_Result do_delete(ims_req *q, struct MHD_Connection *conn)
{
    ims_error err = {0};
    int rc = ims_coll_delete(q->srv->coll, q->id, &err);
    if (rc)
        return ims__send_ims_error(q, conn, rc, &err);
    json_t *j = json_pack("{s:I,s:b}", "id", (json_int_t)q->id, "deleted", 1);
    return ims__send_json(q, conn, 200, j);
}

static void free_image(void *p) { ims_free(p); }

static enum MHD_Result do_image(ims_req *q, struct MHD_Connection *conn)
{
    void *bytes = NULL;
    size_t len = 0;
    char format[8] = "";
    ims_error err = {0};
    int rc = ims_coll_image(q->srv->coll, q->id, &bytes, &len, format, &err);
    if (rc)
        return ims__send_ims_error(q, conn, rc, &err);
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(len, bytes, free_image);
    if (!r) {
        ims_free(bytes);
        return MHD_NO;
    }
    char ct[32];
    format[7] = '\0';
    snprintf(ct, sizeof ct, "image/%s", format[0] ? format : "octet-stream");
    if (!format[0])
        snprintf(ct, sizeof ct, "application/octet-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "public, max-age=3600");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    return ims__send(q, conn, 200, r);
}

/* A multipart text field, or the same-named query parameter; NULL if none. */
static const char *text_param(struct MHD_Connection *conn, const field *f, const char *name)
{
    if (f->seen)
        return f->data ? f->data : "";
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result do_add(ims_req *q, struct MHD_Connection *conn)
{
    if (!q->raw.seen || !q->raw.len)
        return ims__send_error(q, conn, 400,
                               q->body_kind == BODY_MULTIPART ? "no \"image\" field in the form"
                                                              : "empty body: send an image");
    const char *metadata = text_param(conn, &q->metadata, "metadata");
    const char *category = text_param(conn, &q->category, "category");
    const char *name = text_param(conn, &q->name, "name");
    if (metadata && *metadata) {
        json_error_t je;
        json_t *m = json_loads(metadata, JSON_REJECT_DUPLICATES, &je);
        int is_obj = json_is_object(m);
        json_decref(m);
        if (!is_obj)
            return ims__send_error(q, conn, 400, "\"metadata\" must be a JSON object");
    } else {
        metadata = NULL;
    }
    int64_t id = 0;
    ims_error err = {0};
    int rc =
        ims_coll_add(q->srv->coll, q->raw.data, q->raw.len, category, name, metadata, &id, &err);
    if (rc == IMS_EEXIST) {
        json_t *j = ims__json_error("exists", err.msg[0] ? err.msg : "item already exists");
        json_object_set_new(json_object_get(j, "error"), "id", json_integer(id));
        return ims__send_json(q, conn, 409, j);
    }
    if (rc)
        return ims__send_ims_error(q, conn, rc, &err);
    ims_item it = {0};
    q->id = id;
    if ((rc = ims_coll_get(q->srv->coll, id, &it, &err)))
        return ims__send_ims_error(q, conn, rc, &err);
    struct MHD_Response *r = ims__json_response(ims__json_item(&it, 1, 0, 0));
    ims_item_clear(&it);
    if (!r)
        return MHD_NO;
    char loc[48];
    snprintf(loc, sizeof loc, "/v1/items/%lld", (long long)id);
    MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, loc);
    return ims__send(q, conn, 201, r);
}

static enum MHD_Result do_categories(ims_req *q, struct MHD_Connection *conn)
{
    char **names = NULL;
    int64_t *counts = NULL;
    size_t n = 0;
    ims_error err = {0};
    int rc = ims_coll_categories(q->srv->coll, &names, &counts, &n, &err);
    if (rc)
        return ims__send_ims_error(q, conn, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(
            arr, json_pack("{s:s,s:I}", "name", names[i], "count", (json_int_t)counts[i]));
    ims_catalog_free_categories(names, counts, n);
    return ims__send_json(q, conn, 200, json_pack("{s:o*}", "categories", arr));
}

static enum MHD_Result do_healthz(ims_req *q, struct MHD_Connection *conn)
{
    ims_coll_stats st = {0};
    ims_coll_get_stats(q->srv->coll, &st);
    return ims__send_json(q, conn, 200,
                          json_pack("{s:s,s:I,s:I,s:i,s:s}", "status", "ok", "items",
                                    (json_int_t)st.items, "indexed", (json_int_t)st.indexed, "dim",
                                    st.dim, "model", st.model));
}

static enum MHD_Result do_metrics(ims_req *q, struct MHD_Connection *conn)
{
    size_t len = 0;
    char *text = ims__metrics_render(q->srv, &len);
    if (!text)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(len, text, free_image);
    if (!r) {
        ims_free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    return ims__send(q, conn, 200, r);
}

static enum MHD_Result do_page(ims_req *q, struct MHD_Connection *conn)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        ims__web_index_html_len, (void *)ims__web_index_html, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    return ims__send(q, conn, 200, r);
}

enum MHD_Result ims__route_dispatch(ims_req *q, struct MHD_Connection *conn)
{
    switch (q->route) {
    case ROUTE_PAGE:
        return do_page(q, conn);
    case ROUTE_HEALTHZ:
        return do_healthz(q, conn);
    case ROUTE_METRICS:
        return do_metrics(q, conn);
    case ROUTE_CATEGORIES:
        return do_categories(q, conn);
    case ROUTE_SEARCH:
        return do_search(q, conn);
    case ROUTE_ITEMS:
        return do_add(q, conn);
    case ROUTE_ITEM:
        return strcmp(q->method, "DELETE") ? do_get_item(q, conn) : do_delete(q, conn);
    case ROUTE_SIMILAR:
        return do_similar(q, conn);
    case ROUTE_IMAGE:
        return do_image(q, conn);
    default:
        return ims__send_error(q, conn, 404, "no such route");
    }
}
