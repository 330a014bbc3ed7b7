/* SPDX-License-Identifier: MIT */
/*
 * model_file.c — the native model file (.ism): writing, parsing, opening.
 *
 * One file holds a whole model: the graph (nodes, edges, aliases), its
 * strings (node names, model name, class names), the preprocessing recipe
 * and the float32 weights. Every field is little-endian and encoded
 * explicitly (no struct dumps). Sections start at 64-byte aligned offsets so
 * that the weights can be used in place from a read-only mmap.
 *
 * Header (v1: header_size = 256):
 *
 *   OFFSET  SIZE  DESCRIPTION
 *        0     8  magic "IMSMODEL"
 *        8     4  u32 version of the writer's format (2)
 *       12     4  u32 min_reader_version: readers older than this refuse (1,
 *                 or 2 when the graph uses an op new in v2: L2NORM)
 *       16     4  u32 header_size: bytes of header incl. the section table
 *       20     4  u32 header CRC-32C of bytes [0, header_size) with this
 *                 field taken as 0
 *       24     8  u64 file_size: total bytes (truncation check)
 *       32     4  u32 n_sections (5)
 *       36     4  u32 flags (0)
 *       40     4  i32 output: classifier (SOFTMAX) node, -1 = none
 *       44     4  i32 feature: default tap node, -1 = none
 *       48     4  u32 n_classes
 *       52     4  u32 classes: string offset of the first class name (the
 *                 names follow each other in the string table)
 *       56     4  u32 model_name: string offset
 *       60    48  preprocessing recipe: i32 width, i32 height, i32 resize,
 *                 i32 crop, f32 scale, f32 mean[3], f32 std[3], i32 shrink_to
 *      108     4  reserved (0)
 *      112   120  section table, 5 entries of 24 bytes, in this order:
 *                 u32 id, u32 CRC-32C of the section's bytes,
 *                 u64 offset (64-byte aligned), u64 size in bytes
 *      232    24  reserved (0)
 *
 * Sections (ids frozen, append-only):
 *
 *   ID  NAME     RECORD  DESCRIPTION
 *    1  nodes      128   one per node, in topological order:
 *                        +0 u32 op, +4 u32 act, +8 f32 act_max, +12 u32 name,
 *                        +16 u32 n_inputs, +20 u32 inputs (first edge),
 *                        +24 i32 kh, kw, sh, sw, dh, dw, pad_t, pad_b, pad_l,
 *                        pad_r, mult, h, w, c (14 x 4 bytes),
 *                        +80 i64 weight, n_weight, bias, n_bias, +112 zero
 *    2  edges        4   u32 input node index
 *    3  aliases     12   u32 name, i32 node, u32 tappable
 *    4  strings      1   NUL-terminated strings back to back, "" at 0
 *    5  weights      4   f32; node weight/bias offsets count floats from here
 *
 * Compatibility: a reader accepts any file whose min_reader_version is not
 * above its own version (newer writers may append fields to the header,
 * whose size is recorded, and new sections); it refuses newer ones with
 * IMS_EVERSION. Anything inconsistent is IMS_ECORRUPT with the offset, and
 * the decoded graph is then fully validated (ims__graph_validate), so no
 * file can make the executor read out of bounds.
 *
 * Memory: ims_nn_open maps the file read-only; the graph's strings and
 * weights point into the mapping (g.owned = 0), nodes, edges and aliases are
 * decoded into heap arrays. The model is immutable and may be shared by
 * threads; ims_nn_close unmaps it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn_int.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .ism reader uses float32 weights in place: little-endian hosts only"
#endif

#define ISM_MAGIC "IMSMODEL"
#define ISM_VERSION 2u /* v2: op L2NORM (14); layout unchanged */
#define ISM_HEADER_SIZE 256u
#define ISM_N_SECTIONS 5u
#define ISM_NODE_SIZE 128u
#define ISM_ALIAS_SIZE 12u
#define ISM_SECTION_TABLE 112u

enum { SEC_NODES = 1, SEC_EDGES, SEC_ALIASES, SEC_STRINGS, SEC_WEIGHTS };
static const char *sec_names[] = {"?", "nodes", "edges", "aliases", "strings", "weights"};
static const uint32_t sec_record[] = {0, ISM_NODE_SIZE, 4, ISM_ALIAS_SIZE, 1, 4};

static void put_i32(unsigned char *p, int32_t v) { ims__put_u32(p, (uint32_t)v); }
static int32_t get_i32(const unsigned char *p) { return (int32_t)ims__get_u32(p); }
static void put_f32(unsigned char *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    ims__put_u32(p, u);
}
static float get_f32(const unsigned char *p)
{
    uint32_t u = ims__get_u32(p);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static uint64_t align64(uint64_t x) { return (x + 63) & ~(uint64_t)63; }

/* ---- writing ------------------------------------------------------------- */

typedef struct wsec {
    const void *data;
    uint64_t size;
    uint64_t offset;
    uint32_t crc;
} wsec;

typedef struct wctx {
    unsigned char header[ISM_HEADER_SIZE];
    wsec sec[ISM_N_SECTIONS + 1];
    ims__sha256_ctx *sha; /* NULL, or the SHA-256 of the bytes written */
} wctx;

/* fwrite of n bytes, hashed along when w->sha is set; 0 on success */
static int put(wctx *w, const void *p, size_t n, FILE *f)
{
    if (w->sha)
        ims__sha256_update(w->sha, p, n);
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

static void encode_node(unsigned char *p, const ims__node *n)
{
    memset(p, 0, ISM_NODE_SIZE);
    ims__put_u32(p + 0, n->op);
    ims__put_u32(p + 4, n->act);
    put_f32(p + 8, n->act_max);
    ims__put_u32(p + 12, n->name);
    ims__put_u32(p + 16, n->n_inputs);
    ims__put_u32(p + 20, n->inputs);
    const int32_t f[14] = {n->kh,    n->kw,    n->sh,    n->sw,    n->dh, n->dw, n->pad_t,
                           n->pad_b, n->pad_l, n->pad_r, n->mult, n->h,  n->w,  n->c};
    for (int i = 0; i < 14; i++)
        put_i32(p + 24 + 4 * i, f[i]);
    ims__put_u64(p + 80, (uint64_t)n->weight);
    ims__put_u64(p + 88, (uint64_t)n->n_weight);
    ims__put_u64(p + 96, (uint64_t)n->bias);
    ims__put_u64(p + 104, (uint64_t)n->n_bias);
}

static void decode_node(const unsigned char *p, ims__node *n)
{
    n->op = ims__get_u32(p + 0);
    n->act = ims__get_u32(p + 4);
    n->act_max = get_f32(p + 8);
    n->name = ims__get_u32(p + 12);
    n->n_inputs = ims__get_u32(p + 16);
    n->inputs = ims__get_u32(p + 20);
    int32_t *f[14] = {&n->kh,    &n->kw,    &n->sh,    &n->sw,   &n->dh, &n->dw, &n->pad_t,
                      &n->pad_b, &n->pad_l, &n->pad_r, &n->mult, &n->h,  &n->w,  &n->c};
    for (int i = 0; i < 14; i++)
        *f[i] = get_i32(p + 24 + 4 * i);
    n->weight = (int64_t)ims__get_u64(p + 80);
    n->n_weight = (int64_t)ims__get_u64(p + 88);
    n->bias = (int64_t)ims__get_u64(p + 96);
    n->n_bias = (int64_t)ims__get_u64(p + 104);
}

static int write_cb(FILE *f, void *ud)
{
    wctx *w = ud;
    static const unsigned char zeros[64];
    uint64_t pos = ISM_HEADER_SIZE;
    if (w->sha)
        ims__sha256_init(w->sha); /* a retry starts over */
    if (put(w, w->header, ISM_HEADER_SIZE, f))
        return -1;
    for (uint32_t s = 1; s <= ISM_N_SECTIONS; s++) {
        if (w->sec[s].offset > pos && put(w, zeros, (size_t)(w->sec[s].offset - pos), f))
            return -1;
        if (w->sec[s].size && put(w, w->sec[s].data, (size_t)w->sec[s].size, f))
            return -1;
        pos = w->sec[s].offset + w->sec[s].size;
    }
    return 0;
}

int ims__model_write(const ims__graph *g, const char *path, ims_error *err)
{
    return ims__model_write_sha(g, path, NULL, err);
}

int ims__model_write_sha(const ims__graph *g, const char *path, char sha256_hex[65], ims_error *err)
{
    ims__sha256_ctx sha;
    int rc = ims__graph_validate(g, err);
    if (rc)
        return rc;
    wctx *w = ims_calloc(1, sizeof *w);
    unsigned char *nodes = ims_calloc(g->n_nodes ? g->n_nodes : 1, ISM_NODE_SIZE);
    unsigned char *edges = ims_calloc(g->n_edges ? g->n_edges : 1, 4);
    unsigned char *aliases = ims_calloc(g->n_aliases ? g->n_aliases : 1, ISM_ALIAS_SIZE);
    if (!w || !nodes || !edges || !aliases) {
        rc = ims_error_set(err, IMS_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (uint32_t i = 0; i < g->n_nodes; i++)
        encode_node(nodes + (size_t)i * ISM_NODE_SIZE, &g->nodes[i]);
    for (uint32_t i = 0; i < g->n_edges; i++)
        ims__put_u32(edges + 4 * (size_t)i, g->edges[i]);
    for (uint32_t i = 0; i < g->n_aliases; i++) {
        unsigned char *p = aliases + (size_t)i * ISM_ALIAS_SIZE;
        ims__put_u32(p, g->aliases[i].name);
        put_i32(p + 4, g->aliases[i].node);
        ims__put_u32(p + 8, g->aliases[i].tappable);
    }
    w->sec[SEC_NODES] = (wsec){nodes, (uint64_t)g->n_nodes * ISM_NODE_SIZE, 0, 0};
    w->sec[SEC_EDGES] = (wsec){edges, (uint64_t)g->n_edges * 4, 0, 0};
    w->sec[SEC_ALIASES] = (wsec){aliases, (uint64_t)g->n_aliases * ISM_ALIAS_SIZE, 0, 0};
    w->sec[SEC_STRINGS] = (wsec){g->strings, g->n_strings, 0, 0};
    w->sec[SEC_WEIGHTS] = (wsec){g->weights, g->n_weights * 4, 0, 0};
    uint64_t pos = ISM_HEADER_SIZE;
    for (uint32_t s = 1; s <= ISM_N_SECTIONS; s++) {
        w->sec[s].offset = align64(pos);
        w->sec[s].crc = ims__crc32c(0, w->sec[s].data, (size_t)w->sec[s].size);
        pos = w->sec[s].offset + w->sec[s].size;
    }
    unsigned char *h = w->header;
    memcpy(h, ISM_MAGIC, 8);
    /* files without v2 ops stay readable by v1 readers */
    uint32_t min_reader = 1;
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == IMS_OP_L2NORM)
            min_reader = 2;
    ims__put_u32(h + 8, ISM_VERSION);
    ims__put_u32(h + 12, min_reader);
    ims__put_u32(h + 16, ISM_HEADER_SIZE);
    ims__put_u64(h + 24, pos);
    ims__put_u32(h + 32, ISM_N_SECTIONS);
    put_i32(h + 40, g->output);
    put_i32(h + 44, g->feature);
    ims__put_u32(h + 48, g->n_classes);
    ims__put_u32(h + 52, g->classes);
    ims__put_u32(h + 56, g->model_name);
    put_i32(h + 60, g->pp.width);
    put_i32(h + 64, g->pp.height);
    put_i32(h + 68, g->pp.resize);
    put_i32(h + 72, g->pp.crop);
    put_f32(h + 76, g->pp.scale);
    for (int k = 0; k < 3; k++) {
        put_f32(h + 80 + 4 * k, g->pp.mean[k]);
        put_f32(h + 92 + 4 * k, g->pp.std[k]);
    }
    put_i32(h + 104, g->pp.shrink_to);
    for (uint32_t s = 1; s <= ISM_N_SECTIONS; s++) {
        unsigned char *e = h + ISM_SECTION_TABLE + 24 * (s - 1);
        ims__put_u32(e, s);
        ims__put_u32(e + 4, w->sec[s].crc);
        ims__put_u64(e + 8, w->sec[s].offset);
        ims__put_u64(e + 16, w->sec[s].size);
    }
    ims__put_u32(h + 20, ims__crc32c(0, h, ISM_HEADER_SIZE));
    w->sha = sha256_hex ? &sha : NULL;
    rc = ims__write_atomic(path, write_cb, w, err);
    if (!rc && sha256_hex)
        ims__sha256_final_hex(&sha, sha256_hex);
out:
    ims_free(w);
    ims_free(nodes);
    ims_free(edges);
    ims_free(aliases);
    return rc;
}

/* ---- reading ------------------------------------------------------------- */

static int corrupt(ims_error *err, uint64_t off, const char *what)
{
    return ims_error_set(err, IMS_ECORRUPT, "corrupt model file at offset %llu: %s",
                         (unsigned long long)off, what);
}

void ims__model_parsed_free(ims__graph *g)
{
    if (!g)
        return;
    ims_free(g->nodes);
    ims_free(g->edges);
    ims_free(g->aliases);
    memset(g, 0, sizeof *g);
}

int ims__model_parse(const unsigned char *buf, size_t len, ims__graph *g, ims_error *err)
{
    memset(g, 0, sizeof *g);
    if (len < 8) {
        if (len && !memcmp(buf, ISM_MAGIC, len))
            return corrupt(err, len, "truncated inside the magic");
        return ims_error_set(err, IMS_EFORMAT, "not an imgsim model file (too short)");
    }
    if (memcmp(buf, ISM_MAGIC, 8))
        return ims_error_set(err, IMS_EFORMAT, "not an imgsim model file (bad magic)");
    if (len < 24)
        return corrupt(err, len, "truncated header");
    uint32_t version = ims__get_u32(buf + 8), min_reader = ims__get_u32(buf + 12);
    uint32_t hsize = ims__get_u32(buf + 16);
    if (min_reader > ISM_VERSION)
        return ims_error_set(err, IMS_EVERSION,
                             "model file format v%u needs a reader of v%u or later; this is v%u "
                             "(upgrade imgsim)",
                             version, min_reader, ISM_VERSION);
    if (min_reader == 0 || version < min_reader)
        return corrupt(err, 8, "bad version fields");
    if (hsize < ISM_HEADER_SIZE || hsize > (1u << 20))
        return corrupt(err, 16, "bad header size");
    if (len < hsize)
        return corrupt(err, len, "truncated header");
    uint32_t crc = ims__crc32c(0, buf, 20);
    static const unsigned char zero4[4];
    crc = ims__crc32c(crc, zero4, 4);
    crc = ims__crc32c(crc, buf + 24, hsize - 24);
    if (crc != ims__get_u32(buf + 20))
        return corrupt(err, 20, "header checksum mismatch");
    uint64_t fsize = ims__get_u64(buf + 24);
    if (fsize != len) {
        if (fsize > len)
            return ims_error_set(err, IMS_ECORRUPT,
                                 "model file truncated: %zu bytes, the header says %llu", len,
                                 (unsigned long long)fsize);
        return corrupt(err, 24, "file size does not match the header");
    }
    uint32_t n_sec = ims__get_u32(buf + 32);
    if (n_sec < ISM_N_SECTIONS || (uint64_t)ISM_SECTION_TABLE + 24ull * n_sec > hsize)
        return corrupt(err, 32, "bad section count");
    const unsigned char *sec[ISM_N_SECTIONS + 1] = {0};
    uint64_t sec_size[ISM_N_SECTIONS + 1] = {0};
    for (uint32_t s = 1; s <= ISM_N_SECTIONS; s++) {
        const unsigned char *e = buf + ISM_SECTION_TABLE + 24 * (s - 1);
        uint64_t eo = ISM_SECTION_TABLE + 24 * (s - 1);
        uint64_t off = ims__get_u64(e + 8), size = ims__get_u64(e + 16);
        if (ims__get_u32(e) != s)
            return corrupt(err, eo, "unexpected section id");
        if ((off & 63) || off < hsize || off > len || size > len - off)
            return corrupt(err, eo + 8, "section out of bounds");
        if (size % sec_record[s])
            return corrupt(err, eo + 16, "section size is not a whole number of records");
        if (ims__crc32c(0, buf + off, (size_t)size) != ims__get_u32(e + 4)) {
            char what[64];
            snprintf(what, sizeof what, "checksum mismatch in section '%s'", sec_names[s]);
            return corrupt(err, off, what);
        }
        sec[s] = buf + off;
        sec_size[s] = size;
    }
    if (n_sec == ISM_N_SECTIONS) {
        /* v1 layout: sections in order, and every byte outside them zero, so
         * that no byte of the file goes unchecked */
        uint64_t pos = hsize;
        for (uint32_t s = 1; s <= ISM_N_SECTIONS + 1; s++) {
            uint64_t end = s <= ISM_N_SECTIONS ? (uint64_t)(sec[s] - buf) : len;
            if (end < pos)
                return corrupt(err, end, "sections overlap or are out of order");
            for (; pos < end; pos++)
                if (buf[pos])
                    return corrupt(err, pos, "non-zero padding");
            if (s <= ISM_N_SECTIONS)
                pos = end + sec_size[s];
        }
    }
    uint64_t n_nodes = sec_size[SEC_NODES] / ISM_NODE_SIZE;
    uint64_t n_edges = sec_size[SEC_EDGES] / 4, n_aliases = sec_size[SEC_ALIASES] / ISM_ALIAS_SIZE;
    if (n_nodes > INT32_MAX || n_edges > UINT32_MAX || n_aliases > UINT32_MAX ||
        sec_size[SEC_STRINGS] > UINT32_MAX)
        return corrupt(err, ISM_SECTION_TABLE, "section too large");
    if (!sec_size[SEC_STRINGS] || sec[SEC_STRINGS][0] != '\0' ||
        sec[SEC_STRINGS][sec_size[SEC_STRINGS] - 1] != '\0')
        return corrupt(err, (uint64_t)(sec[SEC_STRINGS] - buf), "bad string table");
    g->n_nodes = (uint32_t)n_nodes;
    g->n_edges = (uint32_t)n_edges;
    g->n_aliases = (uint32_t)n_aliases;
    g->nodes = ims_calloc(n_nodes ? n_nodes : 1, sizeof *g->nodes);
    g->edges = ims_calloc(n_edges ? n_edges : 1, sizeof *g->edges);
    g->aliases = ims_calloc(n_aliases ? n_aliases : 1, sizeof *g->aliases);
    if (!g->nodes || !g->edges || !g->aliases) {
        ims__model_parsed_free(g);
        return ims_error_set(err, IMS_ENOMEM, "model file: out of memory");
    }
    for (uint64_t i = 0; i < n_nodes; i++)
        decode_node(sec[SEC_NODES] + i * ISM_NODE_SIZE, &g->nodes[i]);
    for (uint64_t i = 0; i < n_edges; i++)
        g->edges[i] = ims__get_u32(sec[SEC_EDGES] + 4 * i);
    for (uint64_t i = 0; i < n_aliases; i++) {
        const unsigned char *p = sec[SEC_ALIASES] + i * ISM_ALIAS_SIZE;
        g->aliases[i].name = ims__get_u32(p);
        g->aliases[i].node = get_i32(p + 4);
        g->aliases[i].tappable = ims__get_u32(p + 8);
    }
    g->n_strings = sec_size[SEC_STRINGS];
    g->strings = (char *)sec[SEC_STRINGS]; /* read-only: the graph never writes (owned = 0) */
    g->n_weights = sec_size[SEC_WEIGHTS] / 4;
    g->weights = (float *)(uintptr_t)sec[SEC_WEIGHTS];
    g->output = get_i32(buf + 40);
    g->feature = get_i32(buf + 44);
    g->n_classes = ims__get_u32(buf + 48);
    g->classes = ims__get_u32(buf + 52);
    g->model_name = ims__get_u32(buf + 56);
    g->pp.width = get_i32(buf + 60);
    g->pp.height = get_i32(buf + 64);
    g->pp.resize = get_i32(buf + 68);
    g->pp.crop = get_i32(buf + 72);
    g->pp.scale = get_f32(buf + 76);
    for (int k = 0; k < 3; k++) {
        g->pp.mean[k] = get_f32(buf + 80 + 4 * k);
        g->pp.std[k] = get_f32(buf + 92 + 4 * k);
    }
    g->pp.shrink_to = get_i32(buf + 104);
    g->owned = 0;
    if (g->pp.resize < 0 || g->pp.resize > IMS_RESIZE_BILINEAR_HALF_PIXEL || g->pp.crop < 0 ||
        g->pp.crop > IMS_CROP_CENTER || !(g->pp.scale > 0) || g->pp.shrink_to < 0) {
        ims__model_parsed_free(g);
        return corrupt(err, 60, "bad preprocessing recipe");
    }
    for (int k = 0; k < 3; k++)
        if (!(g->pp.std[k] > 0) || g->pp.mean[k] != g->pp.mean[k]) {
            ims__model_parsed_free(g);
            return corrupt(err, 80, "bad preprocessing recipe");
        }
    int rc = ims__graph_validate(g, err);
    if (rc) {
        char m[IMS_ERROR_MSG_MAX];
        snprintf(m, sizeof m, "%s", err ? err->msg : "");
        ims__model_parsed_free(g);
        return ims_error_set(err, rc, "corrupt model file: %s", m);
    }
    return IMS_OK;
}

int ims_nn_open(const char *path, ims_nn_model **out, ims_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return ims_error_set_errno(err, IMS_EIO, e, "%s: cannot stat", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ims_error_set(err, IMS_EIO, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    void *map = NULL;
    static const unsigned char empty[1];
    if (len) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return ims_error_set_errno(err, IMS_EIO, e, "%s: cannot map", path);
        }
    }
    close(fd);
    ims_nn_model *m = ims_calloc(1, sizeof *m);
    if (!m) {
        if (map)
            munmap(map, len);
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", path);
    }
    int rc = ims__model_parse(map ? map : empty, len, &m->g, err);
    if (rc) {
        char msg[IMS_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        ims_error_set(err, rc, "%s: %s", path, msg);
        if (map)
            munmap(map, len);
        ims_free(m);
        return rc;
    }
    m->map = map;
    m->map_len = len;
    snprintf(m->path, sizeof m->path, "%s", path);
    *out = m;
    return IMS_OK;
}

void ims_nn_close(ims_nn_model *m)
{
    if (!m)
        return;
    if (m->map)
        ims__model_parsed_free(&m->g);
    else
        ims__graph_release(&m->g);
    if (m->map)
        munmap(m->map, m->map_len);
    ims_free(m);
}
