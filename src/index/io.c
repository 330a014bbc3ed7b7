/* SPDX-License-Identifier: MIT */
/*
 * io.c — the index file: save (atomic) and open (mmap, copy-on-write).
 * The layout is the OFFSET/SIZE/DESCRIPTION table in index_int.h.
 *
 * Open validates everything that is small (header, section table, ids,
 * levels, flags, upper links, quantiser) and leaves the bulk (layer-0 links,
 * vectors) untouched: the pages are only faulted in as searches reach them,
 * so a large index opens in milliseconds. Their CRCs are checked by
 * ims_hnsw_check(h, 1); until then every layer-0 link is bounds-checked
 * when followed (hnsw_search.c), so corrupt bytes give wrong answers at
 * worst, never a crash.
 *
 * The mapping is MAP_PRIVATE and writable: inserts, deletes and compaction
 * after open write private copies of the touched pages (the file is never
 * modified); when an array must grow it moves to the heap
 * (ims__hnsw_reserve). The file may be replaced (ims_hnsw_save renames a
 * new file over it) while mapped: the mapping keeps the old inode.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index_int.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the index file is mapped in place: little-endian hosts only"
#endif

static const char *sec_name(int kind)
{
    static const char *names[] = {"?", "IDS", "LEVELS", "FLAGS", "LINKS0",
                                  "UPPER", "CODES", "QUANT", "FLOATS"};
    return kind >= 1 && kind <= IMS__SEC_MAX ? names[kind] : "?";
}

/* ---- save ---------------------------------------------------------------- */

typedef struct sec_out {
    uint32_t kind, crc;
    uint64_t off, size;
} sec_out;

typedef struct save_ctx {
    ims_hnsw *h;
    sec_out sec[IMS__SEC_MAX];
    int n_sec;
    uint64_t upper_size;
    uint32_t header_size;
} save_ctx;

static const void *sec_data(ims_hnsw *h, int kind, size_t *n)
{
    size_t N = h->n_nodes;
    switch (kind) {
    case IMS__SEC_IDS: *n = N * 8; return h->ids;
    case IMS__SEC_LEVELS: *n = N; return h->levels;
    case IMS__SEC_FLAGS: *n = N; return h->flags;
    case IMS__SEC_LINKS0: *n = N * 4u * (1 + h->M0); return h->links0;
    case IMS__SEC_CODES: *n = N * h->code_size; return h->codes;
    case IMS__SEC_QUANT: *n = 0; return NULL; /* two arrays, handled apart */
    case IMS__SEC_FLOATS: *n = N * 4u * h->n_dims; return h->floats;
    }
    *n = 0;
    return NULL;
}

static uint32_t sec_crc(ims_hnsw *h, int kind)
{
    size_t n;
    if (kind == IMS__SEC_UPPER) {
        uint32_t c = 0;
        for (uint32_t i = 0; i < h->n_nodes; i++)
            if (h->levels[i])
                c = ims__crc32c(c, h->upper[i], (size_t)h->levels[i] * 4u * (1 + h->M));
        return c;
    }
    if (kind == IMS__SEC_QUANT) {
        uint32_t c = ims__crc32c(0, h->qlo, 4u * h->n_dims);
        return ims__crc32c(c, h->qstep, 4u * h->n_dims);
    }
    const void *p = sec_data(h, kind, &n);
    return n ? ims__crc32c(0, p, n) : 0;
}

static int write_pad(FILE *f, uint64_t *pos, uint64_t to)
{
    static const char zero[64];
    while (*pos < to) {
        size_t k = (size_t)IMS_MIN(to - *pos, 64);
        if (fwrite(zero, 1, k, f) != k)
            return IMS_EIO;
        *pos += k;
    }
    return 0;
}

static int save_cb(FILE *f, void *ud)
{
    save_ctx *c = ud;
    ims_hnsw *h = c->h;
    unsigned char hdr[IMS__HNSW_FIXED_HEADER + 24 * IMS__SEC_MAX + 4];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, IMS__HNSW_MAGIC, 8);
    ims__put_u32(hdr + 8, IMS__HNSW_VERSION);
    ims__put_u32(hdr + 12, 1);
    ims__put_u32(hdr + 16, c->header_size);
    ims__put_u32(hdr + 20, (uint32_t)h->metric);
    ims__put_u32(hdr + 24, (uint32_t)h->storage);
    ims__put_u32(hdr + 28, h->n_dims);
    ims__put_u32(hdr + 32, h->M);
    ims__put_u32(hdr + 36, h->M0);
    ims__put_u32(hdr + 40, h->ef_construction);
    ims__put_u32(hdr + 44, h->ef_search);
    ims__put_u32(hdr + 48, h->keep_float ? 1u : 0u);
    ims__put_u32(hdr + 52, (uint32_t)h->max_level);
    ims__put_u64(hdr + 56, h->n_nodes);
    ims__put_u64(hdr + 64, h->n_deleted);
    ims__put_u64(hdr + 72, h->entry == IMS__NONE ? UINT64_MAX : h->entry);
    ims__put_u64(hdr + 80, h->seed);
    ims__put_u32(hdr + 88, (uint32_t)c->n_sec);
    for (int i = 0; i < c->n_sec; i++) {
        unsigned char *e = hdr + IMS__HNSW_FIXED_HEADER + 24 * i;
        ims__put_u32(e, c->sec[i].kind);
        ims__put_u32(e + 4, c->sec[i].crc);
        ims__put_u64(e + 8, c->sec[i].off);
        ims__put_u64(e + 16, c->sec[i].size);
    }
    ims__put_u32(hdr + c->header_size - 4, ims__crc32c(0, hdr, c->header_size - 4));
    if (fwrite(hdr, 1, c->header_size, f) != c->header_size)
        return IMS_EIO;
    uint64_t pos = c->header_size;
    for (int i = 0; i < c->n_sec; i++) {
        if (write_pad(f, &pos, c->sec[i].off))
            return IMS_EIO;
        int kind = (int)c->sec[i].kind;
        if (kind == IMS__SEC_UPPER) {
            for (uint32_t j = 0; j < h->n_nodes; j++) {
                size_t n = (size_t)h->levels[j] * 4u * (1 + h->M);
                if (n && fwrite(h->upper[j], 1, n, f) != n)
                    return IMS_EIO;
            }
        } else if (kind == IMS__SEC_QUANT) {
            if (fwrite(h->qlo, 4, h->n_dims, f) != h->n_dims ||
                fwrite(h->qstep, 4, h->n_dims, f) != h->n_dims)
                return IMS_EIO;
        } else {
            size_t n;
            const void *p = sec_data(h, kind, &n);
            if (n && fwrite(p, 1, n, f) != n)
                return IMS_EIO;
        }
        pos += c->sec[i].size;
    }
    return 0;
}

int ims_hnsw_save(ims_hnsw *h, const char *path)
{
    pthread_rwlock_rdlock(&h->rw);
    save_ctx c = {.h = h};
    int kinds[IMS__SEC_MAX], n_k = 0;
    for (int k = IMS__SEC_IDS; k <= IMS__SEC_CODES; k++)
        kinds[n_k++] = k;
    if (h->storage == IMS_STORAGE_INT8)
        kinds[n_k++] = IMS__SEC_QUANT;
    if (h->keep_float)
        kinds[n_k++] = IMS__SEC_FLOATS;
    c.n_sec = n_k;
    c.header_size = IMS__HNSW_FIXED_HEADER + 24u * (uint32_t)n_k + 4;
    uint64_t off = c.header_size;
    for (int i = 0; i < n_k; i++) {
        size_t n;
        uint64_t size;
        if (kinds[i] == IMS__SEC_UPPER) {
            size = 0;
            for (uint32_t j = 0; j < h->n_nodes; j++)
                size += (uint64_t)h->levels[j] * 4u * (1 + h->M);
        } else if (kinds[i] == IMS__SEC_QUANT) {
            size = 8u * h->n_dims;
        } else {
            sec_data(h, kinds[i], &n);
            size = n;
        }
        off = (off + 63) & ~(uint64_t)63;
        c.sec[i] = (sec_out){(uint32_t)kinds[i], sec_crc(h, kinds[i]), off, size};
        off += size;
    }
    ims_error err = {0};
    int rc = ims__write_atomic(path, save_cb, &c, &err);
    pthread_rwlock_unlock(&h->rw);
    if (rc)
        return ims__hnsw_err(h, rc, "%s", err.msg[0] ? err.msg : ims_strerror(rc));
    return IMS_OK;
}

/* ---- open ------------------------------------------------------------------ */

/* Open proceeds in phases, one function each, every one reading only what
 * the previous ones validated: parse_header (fixed header, checksum),
 * parse_sections (section table, small-section CRCs), map_arrays (arrays
 * into the image, quantiser), parse_nodes (levels, flags, upper links,
 * entry point). Each returns IMS_OK or sets err (IMS_ECORRUPT with the
 * offset) and returns its code; parse frees the handle on failure. */

/* set err to a corruption at file offset off; returns IMS_ECORRUPT */
static int corrupt(ims_error *err, const char *label, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int corrupt(ims_error *err, const char *label, uint64_t off, const char *fmt, ...)
{
    char m[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return ims_error_set(err, IMS_ECORRUPT, "%s: corrupt index at offset %llu: %s", label,
                         (unsigned long long)off, m);
}

#define CORRUPT(off, ...) return corrupt(err, label, (off), __VA_ARGS__)

/* Header fields that are not kept in the handle as they are. */
typedef struct file_hdr {
    uint32_t header_size, n_sec, max_level;
    uint64_t n_nodes, n_deleted, entry;
} file_hdr;

/* Magic, versions, header size and checksum, then the fixed fields into h. */
static int parse_header(ims_hnsw *h, const unsigned char *base, size_t size, const char *label,
                        file_hdr *fh, ims_error *err)
{
    if (size < 8 || memcmp(base, IMS__HNSW_MAGIC, 8) != 0)
        return ims_error_set(err, IMS_EFORMAT, "%s: not an imgsim HNSW index (bad magic)", label);
    if (size < 20)
        CORRUPT(size, "truncated header (%zu bytes)", size);
    uint32_t version = ims__get_u32(base + 8), min_reader = ims__get_u32(base + 12);
    if (min_reader > IMS__HNSW_VERSION)
        return ims_error_set(err, IMS_EVERSION,
                             "%s: index format version %u needs a reader of version >= %u "
                             "(this one reads up to %u)",
                             label, version, min_reader, IMS__HNSW_VERSION);
    uint32_t header_size = ims__get_u32(base + 16);
    if (size < IMS__HNSW_FIXED_HEADER + 4)
        CORRUPT(size, "truncated header (%zu bytes)", size);
    uint32_t n_sec = ims__get_u32(base + 88);
    if (n_sec > 64)
        CORRUPT(88, "%u sections", n_sec);
    if (header_size < IMS__HNSW_FIXED_HEADER + 24 * n_sec + 4 || header_size > (1u << 20))
        CORRUPT(16, "header size %u", header_size);
    if (header_size > size)
        CORRUPT(size, "truncated header (%zu of %u bytes)", size, header_size);
    if (ims__crc32c(0, base, header_size - 4) != ims__get_u32(base + header_size - 4))
        CORRUPT(header_size - 4, "header checksum mismatch");

    h->metric = (int)ims__get_u32(base + 20);
    h->storage = (int)ims__get_u32(base + 24);
    h->n_dims = ims__get_u32(base + 28);
    h->M = ims__get_u32(base + 32);
    uint32_t M0 = ims__get_u32(base + 36);
    h->ef_construction = ims__get_u32(base + 40);
    h->ef_search = ims__get_u32(base + 44);
    uint32_t fl = ims__get_u32(base + 48);
    uint32_t max_level = ims__get_u32(base + 52);
    uint64_t n_nodes = ims__get_u64(base + 56), n_deleted = ims__get_u64(base + 64);
    uint64_t entry = ims__get_u64(base + 72);
    h->seed = ims__get_u64(base + 80);
    if (h->metric < IMS_METRIC_L2 || h->metric > IMS_METRIC_COSINE)
        CORRUPT(20, "unknown metric %d", h->metric);
    if (h->storage < IMS_STORAGE_F32 || h->storage > IMS_STORAGE_INT8)
        CORRUPT(24, "unknown storage %d", h->storage);
    if (h->n_dims < 1 || h->n_dims > IMS_HNSW_MAX_DIM)
        CORRUPT(28, "n_dims %u", h->n_dims);
    if (h->M < 2 || h->M > IMS_HNSW_MAX_M)
        CORRUPT(32, "M %u", h->M);
    if (M0 != 2 * h->M)
        CORRUPT(36, "M0 %u != 2M", M0);
    if (h->ef_construction < 1 || h->ef_search < 1)
        CORRUPT(40, "ef 0");
    h->keep_float = (fl & 1) != 0;
    if (h->keep_float && h->storage == IMS_STORAGE_F32)
        CORRUPT(48, "float copies with f32 storage");
    if (n_nodes > IMS__NONE - 3)
        CORRUPT(56, "n_nodes %llu", (unsigned long long)n_nodes);
    if (n_deleted > n_nodes)
        CORRUPT(64, "n_deleted %llu > n_nodes", (unsigned long long)n_deleted);
    if (n_nodes == 0 ? entry != UINT64_MAX || max_level != UINT32_MAX
                     : entry >= n_nodes || max_level > IMS__MAX_LEVEL)
        CORRUPT(72, "entry point %llu / max level %u", (unsigned long long)entry, max_level);
    *fh = (file_hdr){header_size, n_sec, max_level, n_nodes, n_deleted, entry};
    ims__hnsw_alloc_core(h); /* M0, code_size, kernels */
    return IMS_OK;
}

/* The section table: bounds and sizes of each known section, presence of
 * the required ones, and the CRCs of the small ones. */
static int parse_sections(ims_hnsw *h, const unsigned char *base, size_t size, const char *label,
                          const file_hdr *fh, ims_error *err)
{
    size_t N = (size_t)fh->n_nodes;
    uint64_t want[IMS__SEC_MAX + 1] = {0};
    want[IMS__SEC_IDS] = N * 8, want[IMS__SEC_LEVELS] = N, want[IMS__SEC_FLAGS] = N;
    want[IMS__SEC_LINKS0] = (uint64_t)N * 4u * (1 + h->M0);
    want[IMS__SEC_CODES] = (uint64_t)N * h->code_size;
    want[IMS__SEC_QUANT] = 8u * h->n_dims;
    want[IMS__SEC_FLOATS] = (uint64_t)N * 4u * h->n_dims;
    int seen[IMS__SEC_MAX + 1] = {0};
    for (uint32_t i = 0; i < fh->n_sec; i++) {
        const unsigned char *e = base + IMS__HNSW_FIXED_HEADER + 24 * i;
        uint32_t kind = ims__get_u32(e), crc = ims__get_u32(e + 4);
        uint64_t off = ims__get_u64(e + 8), sz = ims__get_u64(e + 16);
        size_t eo = IMS__HNSW_FIXED_HEADER + 24 * (size_t)i;
        if (kind < 1 || kind > IMS__SEC_MAX)
            continue; /* unknown: a newer writer's optional section */
        if (seen[kind])
            CORRUPT(eo, "section %s twice", sec_name((int)kind));
        seen[kind] = 1;
        if (off % 64 || off < fh->header_size || off > size || sz > size - off)
            CORRUPT(eo + 8, "section %s at %llu size %llu outside the file (%zu bytes)%s",
                    sec_name((int)kind), (unsigned long long)off, (unsigned long long)sz, size,
                    off <= size && sz > size - off ? ": truncated" : "");
        if (kind != IMS__SEC_UPPER && sz != want[kind])
            CORRUPT(eo + 16, "section %s size %llu, expected %llu", sec_name((int)kind),
                    (unsigned long long)sz, (unsigned long long)want[kind]);
        h->sec_off[kind] = off, h->sec_size[kind] = sz, h->sec_crc[kind] = crc;
        h->sec_pristine[kind] = 1;
    }
    for (int k = IMS__SEC_IDS; k <= IMS__SEC_CODES; k++)
        if (!seen[k])
            CORRUPT(IMS__HNSW_FIXED_HEADER, "section %s missing", sec_name(k));
    if (h->storage == IMS_STORAGE_INT8 && !seen[IMS__SEC_QUANT])
        CORRUPT(IMS__HNSW_FIXED_HEADER, "section QUANT missing");
    if (h->keep_float && !seen[IMS__SEC_FLOATS])
        CORRUPT(IMS__HNSW_FIXED_HEADER, "section FLOATS missing");
    static const int cheap[] = {IMS__SEC_IDS, IMS__SEC_LEVELS, IMS__SEC_FLAGS, IMS__SEC_UPPER,
                                IMS__SEC_QUANT};
    for (size_t i = 0; i < IMS_ARRAY_LEN(cheap); i++) {
        int k = cheap[i];
        if (seen[k] && ims__crc32c(0, base + h->sec_off[k], h->sec_size[k]) != h->sec_crc[k])
            CORRUPT(h->sec_off[k], "section %s checksum mismatch", sec_name(k));
    }
    return IMS_OK;
}

/* Point the data arrays into the image; check the quantiser; allocate the
 * per-slot arrays that are not in the file (upper pointers, spin locks). */
static int map_arrays(ims_hnsw *h, unsigned char *base, const char *label, size_t N, ims_error *err)
{
    h->ids = (uint64_t *)(void *)(base + h->sec_off[IMS__SEC_IDS]);
    h->levels = base + h->sec_off[IMS__SEC_LEVELS];
    h->flags = base + h->sec_off[IMS__SEC_FLAGS];
    h->links0 = (uint32_t *)(void *)(base + h->sec_off[IMS__SEC_LINKS0]);
    h->codes = base + h->sec_off[IMS__SEC_CODES];
    if (h->keep_float)
        h->floats = (float *)(void *)(base + h->sec_off[IMS__SEC_FLOATS]);
    if (h->storage == IMS_STORAGE_INT8) {
        h->qlo = (float *)(void *)(base + h->sec_off[IMS__SEC_QUANT]);
        h->qstep = h->qlo + h->n_dims;
        /* an empty index has not fitted its quantiser yet: the first add does */
        for (uint32_t d = 0; d < h->n_dims && N; d++)
            if (!isfinite(h->qlo[d]) || !(h->qstep[d] > 0) || !isfinite(h->qstep[d]))
                CORRUPT(h->sec_off[IMS__SEC_QUANT] + 4u * d, "bad quantiser for dimension %u", d);
        h->quant_ready = N > 0;
    }
    h->n_nodes = (uint32_t)N;
    h->capacity = (uint32_t)N;
    h->upper = ims_calloc(N ? N : 1, sizeof *h->upper);
    h->locks = ims_calloc(N ? N : 1, 1);
    if (!h->upper || !h->locks)
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", label);
    return IMS_OK;
}

/* Per slot: level, flags, upper-layer link lists (bounds of every link);
 * then the deleted count and the entry point against the header. */
static int parse_nodes(ims_hnsw *h, unsigned char *base, const char *label, const file_hdr *fh,
                       ims_error *err)
{
    size_t N = h->n_nodes;
    uint64_t n_del = 0, upos = 0, usz = h->sec_size[IMS__SEC_UPPER];
    unsigned char *ub = base + h->sec_off[IMS__SEC_UPPER];
    size_t ublock = 4u * (1 + h->M);
    for (size_t i = 0; i < N; i++) {
        uint8_t l = h->levels[i];
        if (l > IMS__MAX_LEVEL || l > fh->max_level)
            CORRUPT(h->sec_off[IMS__SEC_LEVELS] + i, "level %u of slot %zu", l, i);
        if (h->flags[i] & ~IMS__FLAG_DELETED)
            CORRUPT(h->sec_off[IMS__SEC_FLAGS] + i, "flags 0x%x of slot %zu", h->flags[i], i);
        n_del += h->flags[i] & IMS__FLAG_DELETED;
        if (!l)
            continue;
        if ((uint64_t)l * ublock > usz - upos)
            CORRUPT(h->sec_off[IMS__SEC_UPPER] + upos, "upper links of slot %zu truncated", i);
        h->upper[i] = (uint32_t *)(void *)(ub + upos);
        for (int lc = 1; lc <= l; lc++) {
            const uint32_t *ll = h->upper[i] + (size_t)(lc - 1) * (1 + h->M);
            if (ll[0] > h->M)
                CORRUPT(h->sec_off[IMS__SEC_UPPER] + upos, "slot %zu layer %d: %u links", i, lc,
                        ll[0]);
            for (uint32_t j = 0; j < ll[0]; j++)
                if (ll[1 + j] >= N)
                    CORRUPT(h->sec_off[IMS__SEC_UPPER] + upos + 4u * (1 + j),
                            "slot %zu layer %d: link to %u", i, lc, ll[1 + j]);
            upos += ublock;
        }
    }
    if (upos != usz)
        CORRUPT(h->sec_off[IMS__SEC_UPPER] + upos, "upper links: %llu bytes left over",
                (unsigned long long)(usz - upos));
    if (n_del != fh->n_deleted)
        CORRUPT(64, "%llu deleted slots, header says %llu", (unsigned long long)n_del,
                (unsigned long long)fh->n_deleted);
    h->n_deleted = (uint32_t)n_del;
    if (N) {
        h->entry = (uint32_t)fh->entry, h->max_level = (int)fh->max_level;
        if (h->levels[fh->entry] != fh->max_level)
            CORRUPT(72, "entry point level %u != max level %u", h->levels[fh->entry],
                    fh->max_level);
    }
    return IMS_OK;
}

#undef CORRUPT

/* Parse a file image at base (size bytes, writable, 64-aligned). On success
 * the handle owns base (is_mmap says how to release it); on failure base is
 * released. */
static int parse(unsigned char *base, size_t size, int is_mmap, const char *label, ims_hnsw **out,
                 ims_error *err)
{
    *out = NULL;
    ims_init(); /* idempotent: CPU detection picks the distance kernels */
    ims_hnsw *h = ims__hnsw_handle_new();
    if (!h) {
        if (is_mmap)
            munmap(base, size);
        else
            ims_aligned_free(base);
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", label);
    }
    h->backing = base, h->backing_size = size, h->backing_is_mmap = is_mmap;
    file_hdr fh = {0};
    int rc = parse_header(h, base, size, label, &fh, err);
    if (!rc)
        rc = parse_sections(h, base, size, label, &fh, err);
    if (!rc)
        rc = map_arrays(h, base, label, (size_t)fh.n_nodes, err);
    if (!rc)
        rc = parse_nodes(h, base, label, &fh, err);
    if (rc) {
        ims_hnsw_free(h);
        return rc;
    }
    h->map_ready = 0; /* built on first use: see ims__map_ensure */
    *out = h;
    return IMS_OK;
}

int ims_hnsw_open_buffer(const void *buf, size_t size, ims_hnsw **out, ims_error *err)
{
    *out = NULL;
    unsigned char *copy = ims_aligned_alloc(64, size ? size : 1);
    if (!copy)
        return ims_error_set(err, IMS_ENOMEM, "index buffer: out of memory");
    if (size)
        memcpy(copy, buf, size);
    return parse(copy, size, 0, "index buffer", out, err);
}

/* Open path for reading; it must be a regular file. Its size in *size. */
static int open_regular(const char *path, int *fd_out, size_t *size, ims_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ims_error_set_errno(err, IMS_EIO, e, "%s: cannot stat", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ims_error_set(err, IMS_EIO, "%s: not a regular file", path);
    }
    *fd_out = fd, *size = (size_t)st.st_size;
    return IMS_OK;
}

int ims_hnsw_open(const char *path, ims_hnsw **out, ims_error *err)
{
    *out = NULL;
    int fd;
    size_t size;
    int rc = open_regular(path, &fd, &size, err);
    if (rc)
        return rc;
    if (size < IMS__HNSW_FIXED_HEADER + 4) { /* too small to map usefully: read it */
        unsigned char small[IMS__HNSW_FIXED_HEADER + 4];
        ssize_t n = read(fd, small, sizeof small);
        close(fd);
        if (n < 0)
            return ims_error_set_errno(err, IMS_EIO, errno, "%s: read failed", path);
        unsigned char *copy = ims_aligned_alloc(64, (size_t)n + 1);
        if (!copy)
            return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", path);
        memcpy(copy, small, (size_t)n);
        return parse(copy, (size_t)n, 0, path, out, err);
    }
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return ims_error_set_errno(err, IMS_EIO, e, "%s: mmap failed", path);
    return parse(m, size, 1, path, out, err);
}

/* The whole file read into one allocation (2 MiB aligned and advised as
 * huge pages, see ims__alloc_big) instead of mapped: the same handle as
 * ims_hnsw_open's, minus the page faults and most of the TLB misses that
 * random reads of a large 4 KiB-page mapping cost each search. */
int ims_hnsw_load(const char *path, ims_hnsw **out, ims_error *err)
{
    *out = NULL;
    int fd;
    size_t size;
    int rc = open_regular(path, &fd, &size, err);
    if (rc)
        return rc;
    size_t got = 0;
    unsigned char *buf = ims__alloc_big(size ? size : 1);
    if (!buf) {
        close(fd);
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory (%zu bytes)", path, size);
    }
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            close(fd);
            ims_aligned_free(buf);
            if (e)
                return ims_error_set_errno(err, IMS_EIO, e, "%s: read failed at byte %zu", path,
                                           got);
            return ims_error_set(err, IMS_EIO, "%s: file shrank to %zu bytes while read (was %zu)",
                                 path, got, size);
        }
        got += (size_t)n;
    }
    close(fd);
    return parse(buf, size, 0, path, out, err);
}
