/* SPDX-License-Identifier: MIT */
/*
 * test_nn_model.c — the .ism model file: round trip (write, mmap-open,
 * compare every field), and rejection of every truncation length, every
 * single flipped byte, newer format versions, foreign files and
 * checksum-valid but inconsistent graphs — each with an error, never a
 * crash. Also allocation failures while parsing and writing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "nn/nn_int.h"

static char tmpdir[256];

static ims__node proto(uint32_t op)
{
    ims__node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.kh = n.kw = n.sh = n.sw = n.dh = n.dw = n.mult = 1;
    n.weight = n.bias = -1;
    return n;
}

static void add(ims__graph *g, ims__node p, const char *name, uint32_t in, int64_t nw,
                int64_t nb)
{
    unsigned long long seed = g->n_nodes + 1;
    float *w;
    if (nw) {
        IMS_ASSERT(ims__graph_add_weights(g, NULL, (uint64_t)nw, &p.weight, &w) == IMS_OK);
        for (int64_t i = 0; i < nw; i++)
            w[i] = check_rand_f(&seed);
        p.n_weight = nw;
    }
    if (nb) {
        IMS_ASSERT(ims__graph_add_weights(g, NULL, (uint64_t)nb, &p.bias, &w) == IMS_OK);
        for (int64_t i = 0; i < nb; i++)
            w[i] = check_rand_f(&seed);
        p.n_bias = nb;
    }
    ims_error err;
    uint32_t idx;
    int rc = ims__graph_add_node(g, &p, name, &in, p.op == IMS_OP_INPUT ? 0 : 1, &idx, &err);
    CHECK_MSG(rc == IMS_OK, "add %s: %s", name, err.msg);
}

/* A small model: input 8x8x3 -> conv -> dw -> add -> gap -> dense -> softmax. */
static void build(ims__graph *g)
{
    IMS_ASSERT(ims__graph_init(g) == IMS_OK);
    g->pp.width = g->pp.height = 8;
    g->pp.scale = 1.0f / 255;
    g->pp.std[0] = g->pp.std[1] = g->pp.std[2] = 1;
    g->pp.mean[1] = 0.25f;
    add(g, proto(IMS_OP_INPUT), "input", 0, 0, 0);
    ims__node c = proto(IMS_OP_CONV2D);
    c.kh = c.kw = 3, c.sh = c.sw = 2, c.pad_b = c.pad_r = 1, c.c = 4;
    c.act = IMS_ACT_RELU, c.act_max = 6;
    add(g, c, "conv_relu", 0, 3 * 3 * 3 * 4, 4);
    ims__node d = proto(IMS_OP_DWCONV2D);
    d.kh = d.kw = 3, d.pad_t = d.pad_b = d.pad_l = d.pad_r = 1, d.mult = 1;
    add(g, d, "dw_bn", 1, 3 * 3 * 4, 4);
    ims__node a = proto(IMS_OP_ADD);
    uint32_t in2[2] = {1, 2}, idx;
    ims_error err;
    IMS_ASSERT(ims__graph_add_node(g, &a, "add", in2, 2, &idx, &err) == IMS_OK);
    add(g, proto(IMS_OP_GAP), "gap", 3, 0, 0);
    ims__node fc = proto(IMS_OP_DENSE);
    fc.c = 3;
    add(g, fc, "fc/linear", 4, 4 * 3, 3);
    add(g, proto(IMS_OP_SOFTMAX), "fc", 5, 0, 0);
    IMS_ASSERT(ims__graph_add_alias(g, "conv", 1, 0) == IMS_OK);
    IMS_ASSERT(ims__graph_add_alias(g, "dropout", 4, 1) == IMS_OK);
    IMS_ASSERT(ims__graph_add_string(g, "tiny", &g->model_name) == IMS_OK);
    IMS_ASSERT(ims__graph_add_string(g, "cat", &g->classes) == IMS_OK);
    uint32_t off;
    IMS_ASSERT(ims__graph_add_string(g, "dog", &off) == IMS_OK);
    IMS_ASSERT(ims__graph_add_string(g, "fish", &off) == IMS_OK);
    g->n_classes = 3;
    g->output = 6;
    g->feature = 4;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    IMS_ASSERT(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = ims_aligned_alloc(64, *len ? *len : 1);
    IMS_ASSERT(b && fread(b, 1, *len, f) == *len);
    fclose(f);
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    IMS_ASSERT(f && fwrite(b, 1, len, f) == len);
    fclose(f);
}

/* Recompute every section CRC and the header CRC after an edit. */
static void reseal(unsigned char *b)
{
    for (int s = 0; s < 5; s++) {
        unsigned char *e = b + 112 + 24 * s;
        uint64_t off = ims__get_u64(e + 8), size = ims__get_u64(e + 16);
        ims__put_u32(e + 4, ims__crc32c(0, b + off, (size_t)size));
    }
    uint32_t hs = ims__get_u32(b + 16);
    ims__put_u32(b + 20, 0);
    ims__put_u32(b + 20, ims__crc32c(0, b, hs));
}

static int parse_copy(const unsigned char *b, size_t len, ims_error *err)
{
    /* an exact-size heap copy, so that ASan sees any read past len */
    unsigned char *c = malloc(len ? len : 1);
    IMS_ASSERT(c);
    memcpy(c, b, len);
    ims__graph g;
    int rc = ims__model_parse(c, len, &g, err);
    if (rc == IMS_OK)
        ims__model_parsed_free(&g);
    free(c);
    return rc;
}

static void test_round_trip(const char *path)
{
    ims__graph g;
    build(&g);
    ims_error err = {0};
    int rc = ims__model_write(&g, path, &err);
    CHECK_MSG(rc == IMS_OK, "write: %s", err.msg);
    ims_nn_model *m = NULL;
    rc = ims_nn_open(path, &m, &err);
    CHECK_MSG(rc == IMS_OK, "open: %s", err.msg);
    if (rc) {
        ims__graph_release(&g);
        return;
    }
    const ims__graph *r = &m->g;
    CHECK_EQ(r->owned, 0);
    CHECK_EQ((uintptr_t)r->weights % 64, 0);
    CHECK_EQ(r->n_nodes, g.n_nodes);
    CHECK_EQ(r->n_edges, g.n_edges);
    CHECK_EQ(r->n_aliases, g.n_aliases);
    CHECK_EQ(r->n_strings, g.n_strings);
    CHECK_EQ(r->n_weights, g.n_weights);
    CHECK(!memcmp(r->nodes, g.nodes, g.n_nodes * sizeof *g.nodes));
    CHECK(!memcmp(r->edges, g.edges, g.n_edges * sizeof *g.edges));
    CHECK(!memcmp(r->aliases, g.aliases, g.n_aliases * sizeof *g.aliases));
    CHECK(!memcmp(r->strings, g.strings, g.n_strings));
    CHECK(!memcmp(r->weights, g.weights, g.n_weights * sizeof(float)));
    CHECK(!memcmp(&r->pp, &g.pp, sizeof g.pp));
    CHECK_EQ(r->output, 6);
    CHECK_EQ(r->feature, 4);
    CHECK_STR_EQ(ims_nn_name(m), "tiny");
    CHECK_STR_EQ(ims_nn_default_tap(m), "gap");
    CHECK_EQ(ims_nn_n_classes(m), 3);
    CHECK_STR_EQ(ims_nn_class_name(m, 2), "fish");
    CHECK(ims_nn_class_name(m, 3) == NULL);
    int dim = 0;
    CHECK_RC(ims_nn_tap_dim(m, "dropout", &dim, &err), IMS_OK);
    CHECK_EQ(dim, 4);
    CHECK_RC(ims_nn_tap_dim(m, "conv", &dim, &err), IMS_ENOTFOUND);
    CHECK(strstr(err.msg, "tap 'conv_relu' instead") != NULL);
    size_t params;
    double flops;
    ims_nn_stats(m, &params, &flops);
    CHECK_EQ(params, 108 + 4 + 36 + 4 + 12 + 3);
    FILE *devnull = fopen("/dev/null", "w");
    CHECK_RC(ims_nn_print_info(m, devnull), IMS_OK);
    CHECK_RC(ims_nn_print_info_json(m, devnull), IMS_OK);
    fclose(devnull);
    ims_nn_close(m);
    ims__graph_release(&g);
    ims_nn_close(NULL);
}

static void test_damage(const char *path)
{
    size_t len;
    unsigned char *b = slurp(path, &len);
    ims_error err = {0};
    CHECK_RC(parse_copy(b, len, &err), IMS_OK);

    /* every truncation length */
    int bad = 0;
    for (size_t n = 0; n < len; n++) {
        int rc = parse_copy(b, n, &err);
        if (rc != IMS_ECORRUPT && rc != IMS_EFORMAT) {
            if (bad++ < 5)
                CHECK_MSG(0, "truncated to %zu bytes: rc %s", n, ims_errname(rc));
        } else if (!err.msg[0]) {
            CHECK_MSG(0, "truncated to %zu: no message", n);
        }
    }
    CHECK_MSG(!bad, "%d truncations accepted", bad);
    CHECK_RC(parse_copy(b, 8, &err), IMS_ECORRUPT); /* just the magic: truncated */
    CHECK_RC(parse_copy(b, 5, &err), IMS_ECORRUPT);
    CHECK_RC(parse_copy(b, 0, &err), IMS_EFORMAT);
    CHECK_RC(parse_copy(b, len - 1, &err), IMS_ECORRUPT);
    CHECK(strstr(err.msg, "truncated") != NULL);

    /* every flipped byte (and a flipped high bit) */
    bad = 0;
    for (size_t i = 0; i < len; i++) {
        for (int mask = 1; mask <= 0x80; mask <<= 7) {
            b[i] ^= (unsigned char)mask;
            int rc = parse_copy(b, len, &err);
            b[i] ^= (unsigned char)mask;
            if (rc == IMS_OK && bad++ < 5)
                CHECK_MSG(0, "byte %zu ^ 0x%x accepted", i, mask);
        }
    }
    CHECK_MSG(!bad, "%d flipped bytes accepted", bad);
    b[300] ^= 1; /* inside the nodes section: the message gives its offset */
    CHECK_RC(parse_copy(b, len, &err), IMS_ECORRUPT);
    CHECK(strstr(err.msg, "offset 256") && strstr(err.msg, "section 'nodes'"));
    b[300] ^= 1;

    /* a newer format: refused; a newer writer that old readers may read: accepted */
    unsigned char *c = ims_aligned_alloc(64, len);
    memcpy(c, b, len);
    ims__put_u32(c + 8, 3);
    ims__put_u32(c + 12, 3);
    reseal(c);
    CHECK_RC(parse_copy(c, len, &err), IMS_EVERSION);
    CHECK(strstr(err.msg, "needs a reader of v3") != NULL);
    spit(path, c, len);
    ims_nn_model *m = NULL;
    CHECK_RC(ims_nn_open(path, &m, &err), IMS_EVERSION);
    CHECK(m == NULL);
    ims__put_u32(c + 12, 1);
    reseal(c);
    CHECK_RC(parse_copy(c, len, &err), IMS_OK);

    /* checksums fine, graph inconsistent: validation catches it */
    memcpy(c, b, len);
    uint64_t nodes = ims__get_u64(c + 112 + 8);
    ims__put_u32(c + nodes + 128 + 24, 100); /* node 1: kh = 100 */
    reseal(c);
    CHECK_RC(parse_copy(c, len, &err), IMS_ECORRUPT);
    CHECK_MSG(strstr(err.msg, "conv_relu") != NULL, "message: %s", err.msg);
    memcpy(c, b, len);
    ims__put_u32(c + nodes + 2 * 128 + 0, 99); /* node 2: unknown op */
    reseal(c);
    CHECK_RC(parse_copy(c, len, &err), IMS_ECORRUPT);
    memcpy(c, b, len);
    ims__put_u64(c + nodes + 128 + 80, 1u << 30); /* kernel offset out of range */
    reseal(c);
    CHECK_RC(parse_copy(c, len, &err), IMS_ECORRUPT);
    memcpy(c, b, len);
    ims__put_u32(c + 48, 7); /* class count != output width */
    reseal(c);
    CHECK_RC(parse_copy(c, len, &err), IMS_ECORRUPT);
    memcpy(c, b, len);
    uint64_t edges = ims__get_u64(c + 112 + 24 + 8);
    ims__put_u32(c + edges, 5); /* node 1 reads node 5: not topological */
    reseal(c);
    CHECK_RC(parse_copy(c, len, &err), IMS_ECORRUPT);

    /* foreign files */
    CHECK_RC(parse_copy((const unsigned char *)"GGUF\3\0\0\0 and more bytes", 22, &err),
             IMS_EFORMAT);
    CHECK(strstr(err.msg, "not an imgsim model file") != NULL);
    spit(path, (const unsigned char *)"", 0);
    CHECK_RC(ims_nn_open(path, &m, &err), IMS_EFORMAT);
    CHECK(strstr(err.msg, path) != NULL);
    CHECK_RC(ims_nn_open(tmpdir, &m, &err), IMS_EIO); /* a directory */
    ims_aligned_free(c);
    ims_aligned_free(b);
}

/* ---- allocation failures ------------------------------------------------- */

static long fail_at = -1, n_allocs;
static void *f_malloc(size_t n, void *ud)
{
    (void)ud;
    return n_allocs++ == fail_at ? NULL : malloc(n);
}
static void *f_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    return n_allocs++ == fail_at ? NULL : realloc(p, n);
}
static void f_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

static void test_oom(const char *path)
{
    ims__graph g;
    build(&g);
    ims_error err;
    IMS_ASSERT(ims__model_write(&g, path, &err) == IMS_OK);
    size_t len;
    unsigned char *b = slurp(path, &len);
    ims_allocator a = {f_malloc, f_realloc, f_free, NULL};
    ims_set_allocator(&a);
    int saw_ok = 0;
    for (fail_at = 0; fail_at < 50 && !saw_ok; fail_at++) {
        n_allocs = 0;
        ims__graph r;
        int rc = ims__model_parse(b, len, &r, &err);
        if (rc == IMS_OK) {
            ims__model_parsed_free(&r);
            saw_ok = 1;
        } else {
            CHECK_RC(rc, IMS_ENOMEM);
        }
    }
    CHECK(saw_ok);
    saw_ok = 0;
    for (fail_at = 0; fail_at < 50 && !saw_ok; fail_at++) {
        n_allocs = 0;
        int rc = ims__model_write(&g, path, &err);
        if (rc == IMS_OK)
            saw_ok = 1;
        else
            CHECK_MSG(rc == IMS_ENOMEM || rc == IMS_EIO, "write under OOM: %s", ims_errname(rc));
    }
    CHECK(saw_ok);
    ims_set_allocator(NULL);
    ims_aligned_free(b);
    ims__graph_release(&g);
}

int main(void)
{
    ims_init();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ims_test_model.XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    char path[300];
    snprintf(path, sizeof path, "%s/tiny.ism", tmpdir);
    test_round_trip(path);
    test_damage(path);
    test_oom(path);
    unlink(path);
    rmdir(tmpdir);
    return check_report();
}
