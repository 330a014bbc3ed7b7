#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpus of fuzz_http (tests/fuzz/corpus/http/): small valid
and near-valid requests for every route of docs/openapi.yaml, as fuzz_http.c
sees the server (the fake collection with items 1..3, API key "fuzz-key-7",
an 8 KB body limit). Regression inputs found by fuzzing are added by hand
(named regress_*) and are never written here.

    python3 tests/fuzz/make_http_corpus.py     # rewrites the seed_* files
"""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "http")
KEY = b"Authorization: Bearer fuzz-key-7\r\n"
JPEG = b"\xff\xd8\xff\xe0JFIF\x00\x01\x02\x03\x04\x05\x06\x07\x80\x90\xa0\xff\xd9"
JPEG_SEED1 = b"\xff\xd8\xff\xe0JFIF\x10\x20\x30\x40\xff\xd9"  # item 1 of the fake
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01"
BOUNDARY = b"----fuzzB0undary"


def req(method, path, headers=b"", body=None, version=b"HTTP/1.1", host=True):
    h = method + b" " + path + b" " + version + b"\r\n"
    if host:
        h += b"Host: 127.0.0.1\r\n"
    h += headers
    if body is not None:
        h += b"Content-Length: %d\r\n" % len(body)
    return h + b"\r\n" + (body or b"")


def chunked(method, path, headers, body, pieces=3):
    h = method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + headers
    out = h + b"\r\n"
    step = max(1, (len(body) + pieces - 1) // pieces)
    for i in range(0, len(body), step):
        c = body[i:i + step]
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    return out + b"0\r\n\r\n"


def multipart(parts, boundary=BOUNDARY):
    """parts: (name, filename or None, content type or None, data)"""
    b = b""
    for name, fn, ct, data in parts:
        b += b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + name + b"\""
        if fn:
            b += b"; filename=\"" + fn + b"\""
        b += b"\r\n"
        if ct:
            b += b"Content-Type: " + ct + b"\r\n"
        b += b"\r\n" + data + b"\r\n"
    b += b"--" + boundary + b"--\r\n"
    return b, b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"


def form_add(image=JPEG, meta=b"{\"price\":12,\"color\":\"red\"}", cat=b"shoes", name=b"new"):
    parts = [(b"image", b"p.jpg", b"image/jpeg", image)]
    if meta is not None:
        parts.append((b"metadata", None, b"application/json", meta))
    if cat is not None:
        parts.append((b"category", None, None, cat))
    if name is not None:
        parts.append((b"name", None, None, name))
    return multipart(parts)


seeds = {}
# GET routes, HEAD, the page
seeds["get_healthz"] = req(b"GET", b"/healthz")
seeds["head_healthz"] = req(b"HEAD", b"/healthz")
seeds["get_page"] = req(b"GET", b"/")
seeds["get_index_html"] = req(b"GET", b"/index.html", b"Accept-Encoding: gzip\r\n")
seeds["get_metrics"] = req(b"GET", b"/metrics")
seeds["get_item"] = req(b"GET", b"/v1/items/1")
seeds["get_item_missing"] = req(b"GET", b"/v1/items/99")
seeds["get_item_bad_id"] = req(b"GET", b"/v1/items/0x1")
seeds["get_item_long_id"] = req(b"GET", b"/v1/items/9223372036854775807")
seeds["similar"] = req(b"GET", b"/v1/items/1/similar?k=2&category=shoes")
seeds["similar_escaped"] = req(b"GET", b"/v1/items/2/similar?k=%32&category=sh%6Fes&x")
seeds["similar_bad_k"] = req(b"GET", b"/v1/items/1/similar?k=1001")
seeds["similar_other"] = req(b"GET", b"/v1/items/1/other")
seeds["image_jpeg"] = req(b"GET", b"/v1/images/1")
seeds["image_png"] = req(b"GET", b"/v1/images/3")
seeds["head_image"] = req(b"HEAD", b"/v1/images/2")
seeds["categories"] = req(b"GET", b"/v1/categories")
seeds["not_found"] = req(b"GET", b"/v2/nothing/../v1/items")
seeds["put_item"] = req(b"PUT", b"/v1/items/1", body=b"{}")
seeds["post_healthz"] = req(b"POST", b"/healthz", body=b"x")
seeds["get_search"] = req(b"GET", b"/v1/search")
seeds["options_star"] = req(b"OPTIONS", b"*")
# search: raw, multipart, chunked, fake error magics
seeds["search_raw"] = req(b"POST", b"/v1/search?k=2", b"Content-Type: image/jpeg\r\n", JPEG)
seeds["search_raw_noct"] = req(b"POST", b"/v1/search", b"", PNG)
seeds["search_category"] = req(b"POST", b"/v1/search?k=1&category=bags",
                               b"Content-Type: application/octet-stream\r\n", PNG)
seeds["search_urlencoded"] = req(b"POST", b"/v1/search",
                                 b"Content-Type: application/x-www-form-urlencoded\r\n", JPEG)
body, ct = multipart([(b"image", b"q.jpg", b"image/jpeg", JPEG)])
seeds["search_multipart"] = req(b"POST", b"/v1/search?k=3", ct, body)
seeds["search_multipart_chunked"] = chunked(b"POST", b"/v1/search", ct, body)
seeds["search_chunked"] = chunked(b"POST", b"/v1/search?k=2", b"Content-Type: image/png\r\n", PNG)
seeds["search_busy"] = req(b"POST", b"/v1/search", b"", b"BUSY")
seeds["search_bomb"] = req(b"POST", b"/v1/search", b"Content-Type: image/png\r\n", b"BOMB....")
seeds["search_bmp"] = req(b"POST", b"/v1/search", b"Content-Type: image/bmp\r\n", b"BM\x00\x00")
seeds["search_garbage"] = req(b"POST", b"/v1/search", b"Content-Type: image/jpeg\r\n", b"hello")
seeds["search_text"] = req(b"POST", b"/v1/search", b"Content-Type: text/plain\r\n", b"hello")
seeds["search_empty"] = req(b"POST", b"/v1/search", b"", b"")
seeds["search_too_big"] = req(b"POST", b"/v1/search", b"Content-Length: 9000\r\n", None) + JPEG
seeds["search_bad_cl"] = req(b"POST", b"/v1/search", b"Content-Length: 12x\r\n") + JPEG
seeds["search_expect"] = req(b"POST", b"/v1/search", b"Expect: 100-continue\r\n", JPEG)
body, ct = multipart([(b"image", b"n.txt", b"text/plain", b"hello")])
seeds["search_part_text"] = req(b"POST", b"/v1/search", ct, body)
seeds["search_no_boundary"] = req(b"POST", b"/v1/search",
                                  b"Content-Type: multipart/form-data\r\n", b"--x\r\n")
body, ct = multipart([(b"other", None, None, b"1")])
seeds["search_no_image_part"] = req(b"POST", b"/v1/search", ct, body)
seeds["search_truncated"] = req(b"POST", b"/v1/search", b"Content-Type: image/jpeg\r\n",
                                JPEG)[:-6]
# add: multipart with metadata JSON, auth, duplicates, disk full
body, ct = form_add()
seeds["add"] = req(b"POST", b"/v1/items", KEY + ct, body)
seeds["add_chunked"] = chunked(b"POST", b"/v1/items", KEY + ct, body, 4)
seeds["add_no_key"] = req(b"POST", b"/v1/items", ct, body)
seeds["add_wrong_key"] = req(b"POST", b"/v1/items",
                             b"Authorization: Bearer fuzz-key-8\r\n" + ct, body)
body, ct = form_add(meta=b"[1,2]")
seeds["add_meta_array"] = req(b"POST", b"/v1/items", KEY + ct, body)
body, ct = form_add(meta=b"{\"a\":1,\"a\":2}")
seeds["add_meta_dup_key"] = req(b"POST", b"/v1/items", KEY + ct, body)
body, ct = form_add(meta=b"{\"s\":\"\\ud800\",\"n\":1e400}")
seeds["add_meta_odd"] = req(b"POST", b"/v1/items", KEY + ct, body)
body, ct = form_add(image=JPEG_SEED1)
seeds["add_duplicate"] = req(b"POST", b"/v1/items", KEY + ct, body)
body, ct = form_add(image=b"\xff\xd8\xffFULL....")
seeds["add_disk_full"] = req(b"POST", b"/v1/items", KEY + ct, body)
body, ct = form_add(image=b"\xff\xd8\xffFULE....", meta=None, cat=None, name=None)
seeds["add_efull"] = req(b"POST", b"/v1/items", KEY + ct, body)
seeds["add_raw_query"] = req(b"POST", b"/v1/items?category=bags&name=q&metadata=%7B%22a%22%3A1%7D",
                             KEY + b"Content-Type: image/png\r\n", PNG + b"\x01")
body, ct = form_add(cat=b"caf\xc3\xa9", name=b"\xff\xfe")
seeds["add_utf8"] = req(b"POST", b"/v1/items", KEY + ct, body)
# delete
seeds["delete"] = req(b"DELETE", b"/v1/items/2", KEY)
seeds["delete_no_key"] = req(b"DELETE", b"/v1/items/2")
seeds["delete_missing"] = req(b"DELETE", b"/v1/items/77", KEY)
seeds["delete_with_body"] = req(b"DELETE", b"/v1/items/3", KEY, b"ignored")
# protocol edges
seeds["http10_no_host"] = req(b"GET", b"/healthz", version=b"HTTP/1.0", host=False)
seeds["http11_no_host"] = req(b"GET", b"/healthz", host=False)
seeds["http2_version"] = req(b"GET", b"/healthz", version=b"HTTP/2.0")
seeds["close"] = req(b"GET", b"/v1/categories", b"Connection: close\r\n")
seeds["bad_request_line"] = b"GET\r\n\r\n"
seeds["lf_only"] = b"GET /healthz HTTP/1.1\nHost: x\n\n"
seeds["header_fold"] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n"
seeds["te_gzip"] = (b"POST /v1/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
                    + JPEG)
seeds["te_and_cl"] = (b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n4\r\nBUSY\r\n0\r\n\r\n")
seeds["chunk_ext_trailer"] = (b"POST /v1/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                              b"\r\n\r\n3;ext=1\r\n\xff\xd8\xff\r\n2\r\nab\r\n0\r\nX-T: 1\r\n\r\n")
# keep-alive pipelines of two (and three) requests
seeds["pipeline_get_get"] = req(b"GET", b"/healthz") + req(b"GET", b"/v1/items/1")
seeds["pipeline_head_get"] = req(b"HEAD", b"/v1/images/1") + req(b"GET", b"/v1/categories")
seeds["pipeline_search_get"] = (req(b"POST", b"/v1/search?k=1", b"", JPEG)
                                + req(b"GET", b"/v1/items/1/similar"))
body, ct = form_add(image=PNG + b"\x02", cat=b"hats")
seeds["pipeline_add_get_delete"] = (req(b"POST", b"/v1/items", KEY + ct, body)
                                    + req(b"GET", b"/v1/items/4")
                                    + req(b"DELETE", b"/v1/items/4", KEY))
seeds["pipeline_error_then_get"] = (req(b"POST", b"/v1/search", b"Content-Type: text/x\r\n", b"ab")
                                    + req(b"GET", b"/healthz"))

os.makedirs(OUT, exist_ok=True)
for name in os.listdir(OUT):
    if name.startswith("seed_"):
        os.remove(os.path.join(OUT, name))
for name, data in sorted(seeds.items()):
    assert len(data) < 4096, name
    with open(os.path.join(OUT, "seed_" + name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {OUT}")
