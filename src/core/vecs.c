/* SPDX-License-Identifier: MIT */
/*
 * vecs.c — TEXMEX .fvecs/.ivecs reading and writing (format: vecs.h).
 *
 * Reading checks the whole file's shape before trusting it: the first
 * record's dimension bounds the record size, the file size must be a whole
 * number of records, and every record must repeat the dimension; the first
 * violation is reported with its offset. Values are copied as raw 4-byte
 * little-endian words (the only hosts we build for are little-endian).
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core_int.h"
#include "imgsim/vecs.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vecs.c copies little-endian words as they are: little-endian hosts only"
#endif

/* Check the first dimension and the file size; get d and the record count. */
static int read_shape(FILE *f, const char *path, const char *what, uint32_t max_dim,
                      uint32_t *d_out, size_t *n_out, ims_error *err)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot stat", path);
    if (st.st_size < 4)
        return ims_error_set(err, IMS_ECORRUPT, "%s: empty or unreadable %s file", path, what);
    unsigned char hdr[4];
    if (fread(hdr, 1, 4, f) != 4)
        return ims_error_set(err, IMS_EIO, "%s: read failed", path);
    int32_t d = (int32_t)ims__get_u32(hdr);
    if (d < 1 || (uint32_t)d > max_dim)
        return ims_error_set(err, IMS_ECORRUPT,
                             "%s: offset 0: dimension %d not in 1..%u (not a %s file?)", path, d,
                             max_dim, what);
    size_t rec = 4 + 4 * (size_t)d, size = (size_t)st.st_size;
    if (size % rec)
        return ims_error_set(err, IMS_ECORRUPT,
                             "%s: size %zu is not a multiple of the record size %zu (dim %d): "
                             "truncated or not a %s file",
                             path, size, rec, d, what);
    *d_out = (uint32_t)d, *n_out = size / rec;
    return IMS_OK;
}

int ims_vecs_read(const char *path, const char *what, uint32_t max_dim, uint32_t *n_dims,
                  size_t *n_out, void **data_out, ims_error *err)
{
    *data_out = NULL, *n_out = 0, *n_dims = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot open", path);
    uint32_t d = 0;
    size_t n = 0, bytes = 0;
    unsigned char *data = NULL, *buf = NULL;
    int rc = read_shape(f, path, what, max_dim, &d, &n, err);
    if (rc)
        goto done;
    size_t rec = 4 + 4 * (size_t)d;
    if (!ims_size_mul3(n, d, 4, &bytes) || !(data = ims_malloc(bytes ? bytes : 1)) ||
        !(buf = ims_malloc(rec))) {
        rc = ims_error_set(err, IMS_ENOMEM, "%s: out of memory for %zu x %u", path, n, d);
        goto done;
    }
    rewind(f);
    for (size_t i = 0; i < n; i++) {
        if (fread(buf, 1, rec, f) != rec) {
            rc = ims_error_set(err, IMS_EIO, "%s: read failed at record %zu", path, i);
            goto done;
        }
        uint32_t di = ims__get_u32(buf);
        if (di != d) {
            rc = ims_error_set(err, IMS_ECORRUPT,
                               "%s: offset %zu: record %zu has dimension %d, expected %u", path,
                               i * rec, i, (int32_t)di, d);
            goto done;
        }
        memcpy(data + i * 4 * (size_t)d, buf + 4, 4 * (size_t)d);
    }
    *n_dims = d, *n_out = n, *data_out = data;
    data = NULL;
done:
    ims_free(data);
    ims_free(buf);
    fclose(f);
    return rc;
}

int ims_vecs_write_row(FILE *f, const void *row, uint32_t d)
{
    unsigned char hdr[4];
    ims__put_u32(hdr, d);
    if (fwrite(hdr, 1, 4, f) != 4 || fwrite(row, 4, d, f) != d)
        return IMS_EIO;
    return IMS_OK;
}

typedef struct write_ctx {
    const unsigned char *data;
    size_t n;
    uint32_t d;
} write_ctx;

static int write_rows(FILE *f, void *ud)
{
    const write_ctx *c = ud;
    for (size_t i = 0; i < c->n; i++)
        if (ims_vecs_write_row(f, c->data + i * 4 * (size_t)c->d, c->d))
            return IMS_EIO;
    return 0;
}

int ims_vecs_write(const char *path, const void *data, size_t n, uint32_t d, ims_error *err)
{
    if (d == 0 || d > INT32_MAX)
        return ims_error_set(err, IMS_EINVAL, "%s: dimension %u not in 1..%d", path, d, INT32_MAX);
    write_ctx c = {data, n, d};
    return ims__write_atomic(path, write_rows, &c, err);
}
