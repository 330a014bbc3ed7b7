/* SPDX-License-Identifier: MIT */
/* json.c — items and errors as JSON (jansson). */
#include <stdio.h>

#include "server_int.h"

json_t *ims__json_item(const ims_item *it, int full, int score_valid, float score)
{
    char url[48];
    snprintf(url, sizeof url, "/v1/images/%lld", (long long)it->id);
    json_t *meta = it->metadata && *it->metadata ? json_loads(it->metadata, 0, NULL) : NULL;
    if (!json_is_object(meta)) {
        json_decref(meta);
        meta = json_object();
    }
    json_t *j = json_object();
    if (!j) {
        json_decref(meta);
        return NULL;
    }
    json_object_set_new(j, "id", json_integer(it->id));
    if (score_valid)
        json_object_set_new(j, "score", json_real(score));
    json_object_set_new(j, "name", json_string(it->name ? it->name : ""));
    json_object_set_new(j, "category", json_string(it->category ? it->category : ""));
    json_object_set_new(j, "product_id", json_string(it->product_id ? it->product_id : ""));
    json_object_set_new(j, "metadata", meta);
    json_object_set_new(j, "image_url", json_string(url));
    if (full) {
        json_object_set_new(j, "sha256", json_string(it->sha256));
        json_object_set_new(j, "format", json_string(it->format));
        json_object_set_new(j, "width", json_integer(it->width));
        json_object_set_new(j, "height", json_integer(it->height));
        json_object_set_new(j, "bytes", json_integer(it->bytes));
    }
    return j;
}

json_t *ims__json_error(const char *code, const char *message)
{
    /* messages come from our code and the library: make sure they are UTF-8 */
    json_t *msg = json_string(message);
    if (!msg)
        msg = json_string("(message not valid UTF-8)");
    return json_pack("{s:{s:s,s:o}}", "error", "code", code, "message", msg);
}

const char *ims__status_code_name(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "exists";
    case 413:
        return "payload_too_large";
    case 415:
        return "unsupported_media_type";
    case 422:
        return "unprocessable_image";
    case 501:
        return "not_implemented";
    case 503:
        return "busy";
    case 507:
        return "insufficient_storage";
    default:
        return status >= 500 ? "internal" : "error";
    }
}
