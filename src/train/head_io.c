/* SPDX-License-Identifier: MIT */
/*
 * head_io.c — a head as bytes (ims_train_save / ims_train_load) and as an
 * encoder model file (ims_train_write_encoder, through nn).
 *
 * Blob layout (little-endian):
 *
 *   OFFSET  SIZE  DESCRIPTION
 *        0     8  magic "IMSHEAD\0"
 *        8     4  u32 version (2; 1 is still read)
 *       12     4  u32 kind (enum ims_train_kind)
 *       16     4  u32 d, +20 u32 n_taps, +24 u32 k, +28 u32 n_classes
 *       32     4  u32 relu, +36 u32 cls_on_proj
 *       40     4  f32 in_scale, +44 f32 raw_w, +48 f32 proj_w,
 *                 +52 f32 shrink, +56 f32 val_acc
 *       60     4  u32 whitened (0 or 1; FUSION only)        version 2 only
 *       64     4  f32 whitening shrinkage a (0 when off)    version 2 only
 *       F      .  u32 tap_dims[n_taps], then f32 P[d*k], pb[k],
 *                 C[(cls_on_proj ? k : d) * n_classes], cb[n_classes],
 *                 then, when whitened, f32 Wm[d*d] ([in][out]), wb[d]
 *      end-4   4  u32 CRC-32C of all bytes before it
 * F = 68 (version 2) or 60 (version 1, never whitened).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "imgsim/nn.h"
#include "train/train_int.h"

#define HEAD_MAGIC "IMSHEAD"
#define HEAD_VERSION 2u
#define HEAD_FIXED_V1 60u
#define HEAD_FIXED 68u
#define MAX_DIM (1 << 24)

static void put_f32(unsigned char *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    ims__put_u32(p, v);
}
static float get_f32(const unsigned char *p)
{
    uint32_t v = ims__get_u32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

static size_t n_cls_in(const ims_train_head *h)
{
    return h->cls_on_proj ? (size_t)h->k : (size_t)h->d;
}

/* Bytes of a blob of this version (sizes from h; whitened: with Wm, wb). */
static size_t blob_size(const ims_train_head *h, uint32_t version, int whitened)
{
    size_t w = whitened ? (size_t)h->d * h->d + h->d : 0;
    return (version >= 2 ? HEAD_FIXED : HEAD_FIXED_V1) +
           4 * ((size_t)h->n_taps + (size_t)h->d * h->k + h->k + n_cls_in(h) * h->n_classes +
                h->n_classes + w) +
           4;
}

static unsigned char *put_floats(unsigned char *p, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++, p += 4)
        put_f32(p, x[i]);
    return p;
}

int ims_train_save(const ims_train_head *h, void **buf, size_t *len, ims_error *err)
{
    IMS_ASSERT(h && buf && len);
    const int whitened = h->Wm != NULL;
    size_t n = blob_size(h, HEAD_VERSION, whitened);
    unsigned char *b = ims_calloc(1, n), *p;
    if (!b)
        return ims_error_set(err, IMS_ENOMEM, "head: out of memory");
    memcpy(b, HEAD_MAGIC, 8);
    ims__put_u32(b + 8, HEAD_VERSION);
    ims__put_u32(b + 12, (uint32_t)h->kind);
    ims__put_u32(b + 16, (uint32_t)h->d);
    ims__put_u32(b + 20, (uint32_t)h->n_taps);
    ims__put_u32(b + 24, (uint32_t)h->k);
    ims__put_u32(b + 28, (uint32_t)h->n_classes);
    ims__put_u32(b + 32, (uint32_t)h->relu);
    ims__put_u32(b + 36, (uint32_t)h->cls_on_proj);
    put_f32(b + 40, h->in_scale);
    put_f32(b + 44, h->raw_w);
    put_f32(b + 48, h->proj_w);
    put_f32(b + 52, h->shrink);
    put_f32(b + 56, h->val_acc);
    ims__put_u32(b + 60, (uint32_t)whitened);
    put_f32(b + 64, whitened ? h->white_a : 0);
    p = b + HEAD_FIXED;
    for (int t = 0; t < h->n_taps; t++, p += 4)
        ims__put_u32(p, (uint32_t)h->tap_dims[t]);
    p = put_floats(p, h->P, (size_t)h->d * h->k);
    p = put_floats(p, h->pb, (size_t)h->k);
    p = put_floats(p, h->C, n_cls_in(h) * h->n_classes);
    p = put_floats(p, h->cb, (size_t)h->n_classes);
    if (whitened) {
        p = put_floats(p, h->Wm, (size_t)h->d * h->d);
        p = put_floats(p, h->wb, (size_t)h->d);
    }
    ims__put_u32(p, ims__crc32c(0, b, n - 4));
    *buf = b, *len = n;
    return IMS_OK;
}

/* IMS_ECORRUPT "head: offset OFF: message" (the offset first: the old
 * macro appended it after the message's own arguments). */
__attribute__((format(printf, 3, 4))) static int corrupt(ims_error *err, size_t off,
                                                         const char *fmt, ...)
{
    char m[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return ims_error_set(err, IMS_ECORRUPT, "head: offset %zu: %s", off, m);
}
#define CORRUPT(off, ...) corrupt(err, (size_t)(off), __VA_ARGS__)

int ims_train_load(const void *buf, size_t len, ims_train_head **out, ims_error *err)
{
    IMS_ASSERT(out);
    *out = NULL;
    const unsigned char *b = buf;
    if (!b || len < 8 || memcmp(b, HEAD_MAGIC, 8))
        return ims_error_set(err, IMS_EFORMAT, "head: not a head blob");
    if (len < 12)
        return CORRUPT(len, "truncated header");
    uint32_t version = ims__get_u32(b + 8);
    if (version > HEAD_VERSION)
        return ims_error_set(err, IMS_EVERSION, "head: version %u, this reader knows <= %u",
                             version, HEAD_VERSION);
    if (version < 1)
        return CORRUPT(8, "bad version 0");
    const size_t fixed = version >= 2 ? HEAD_FIXED : HEAD_FIXED_V1;
    if (len < fixed + 4)
        return CORRUPT(len, "truncated header (%zu bytes, version %u needs %zu)", len, version,
                       fixed + 4);
    if (ims__get_u32(b + len - 4) != ims__crc32c(0, b, len - 4))
        return CORRUPT(len - 4, "checksum mismatch");
    uint32_t kind = ims__get_u32(b + 12), d = ims__get_u32(b + 16), nt = ims__get_u32(b + 20);
    uint32_t k = ims__get_u32(b + 24), C = ims__get_u32(b + 28);
    uint32_t relu = ims__get_u32(b + 32), cop = ims__get_u32(b + 36);
    if (kind > IMS_TRAIN_MLP || relu > 1 || cop > 1)
        return CORRUPT(12, "bad kind or flags");
    uint32_t whitened = version >= 2 ? ims__get_u32(b + 60) : 0;
    uint32_t a_bits = version >= 2 ? ims__get_u32(b + 64) : 0;
    float white_a;
    memcpy(&white_a, &a_bits, 4);
    if (whitened > 1 || (whitened && kind != IMS_TRAIN_FUSION))
        return CORRUPT(60, "bad whitening flag %u (kind %u)", whitened, kind);
    /* off: exactly +0 (so the blob saves back to its own bytes) */
    if (whitened ? !(white_a > 0 && white_a <= 1) : a_bits != 0)
        return CORRUPT(64, "bad whitening shrinkage %g", (double)white_a);
    if (!d || !nt || !k || !C || d > MAX_DIM || nt > 4096 || k > MAX_DIM || C > 65536 ||
        (uint64_t)d * k > MAX_DIM * 16ull || (whitened && (uint64_t)d * d > MAX_DIM * 16ull))
        return CORRUPT(16, "bad sizes");
    ims_train_head tmp = {
        .d = (int)d, .n_taps = (int)nt, .k = (int)k, .n_classes = (int)C, .cls_on_proj = (int)cop};
    size_t want = blob_size(&tmp, version, (int)whitened);
    if (want != len)
        return CORRUPT(len < want ? len : want, "size %zu, expected %zu (version %u%s)", len, want,
                       version, whitened ? ", whitened" : "");
    int *dims = ims_malloc(nt * sizeof *dims);
    if (!dims)
        return ims_error_set(err, IMS_ENOMEM, "head: out of memory");
    const unsigned char *p = b + fixed;
    uint64_t sum = 0;
    for (uint32_t t = 0; t < nt; t++, p += 4) {
        dims[t] = (int)ims__get_u32(p);
        sum += (uint32_t)dims[t];
        if (dims[t] < 1) {
            ims_free(dims);
            return CORRUPT(p - b, "bad tap dim");
        }
    }
    if (sum != d) {
        ims_free(dims);
        return CORRUPT(fixed, "tap dims do not sum to d");
    }
    ims_train_head *h = ims__head_alloc((int)kind, (int)d, dims, (int)nt, (int)k, (int)C, (int)cop);
    ims_free(dims);
    if (!h)
        return ims_error_set(err, IMS_ENOMEM, "head: out of memory");
    h->relu = (int)relu;
    h->in_scale = get_f32(b + 40), h->raw_w = get_f32(b + 44), h->proj_w = get_f32(b + 48);
    h->shrink = get_f32(b + 52), h->val_acc = get_f32(b + 56);
    if (whitened) {
        h->Wm = ims_malloc((size_t)d * d * sizeof *h->Wm);
        h->wb = ims_malloc((size_t)d * sizeof *h->wb);
        if (!h->Wm || !h->wb) {
            ims_train_head_free(h);
            return ims_error_set(err, IMS_ENOMEM, "head: out of memory (whitening, %u x %u)", d, d);
        }
        h->white_a = white_a;
    }
    float *arrs[6] = {h->P, h->pb, h->C, h->cb, h->Wm, h->wb};
    size_t ns[6] = {(size_t)d * k,   k, n_cls_in(h) * C, C, whitened ? (size_t)d * d : 0,
                    whitened ? d : 0};
    for (int a = 0; a < 6; a++)
        for (size_t i = 0; i < ns[a]; i++, p += 4)
            arrs[a][i] = get_f32(p);
    h->out_dim = h->kind == IMS_TRAIN_FUSION ? h->d + h->k : h->k;
    *out = h;
    return IMS_OK;
}

int ims_train_write_encoder(const ims_train_head *h, const char *backbone_ism,
                            const char *const *taps, const char *const *class_names,
                            const char *name, const char *out_ism, ims_error *err)
{
    IMS_ASSERT(h && backbone_ism && taps && out_ism);
    ims_nn_model *m = NULL;
    int rc = ims_nn_open(backbone_ism, &m, err);
    if (rc)
        return rc;
    rc = ims_train_write_encoder_from(h, m, taps, class_names, name, out_ism, NULL, err);
    ims_nn_close(m);
    return rc;
}

int ims_train_write_encoder_from(const ims_train_head *h, const struct ims_nn_model *backbone,
                                 const char *const *taps, const char *const *class_names,
                                 const char *name, const char *out_ism, char sha256_hex[65],
                                 ims_error *err)
{
    IMS_ASSERT(h && backbone && taps && out_ism);
    int rc = IMS_OK;
    for (int t = 0; t < h->n_taps; t++) {
        int dim;
        if ((rc = ims_nn_tap_dim(backbone, taps[t], &dim, err)))
            return rc;
        if (dim != h->tap_dims[t])
            return ims_error_set(err, IMS_EINVAL,
                                 "encoder: tap '%s' has %d values, the head "
                                 "was trained on %d",
                                 taps[t], dim, h->tap_dims[t]);
    }
    ims_nn_head nh = {
        .name = name,
        .taps = taps,
        .n_taps = h->n_taps,
        .in_scale = h->in_scale,
        .k = h->k,
        .proj = h->P,
        .proj_bias = h->pb,
        .proj_relu = h->relu,
        .fuse = h->kind == IMS_TRAIN_FUSION,
        .raw_w = h->raw_w,
        .raw_proj = h->Wm,
        .raw_bias = h->wb,
        .proj_w = h->proj_w,
        .n_classes = class_names ? h->n_classes : 0,
        .cls = h->C,
        .cls_bias = h->cb,
        .cls_on_proj = h->cls_on_proj,
        .class_names = class_names,
    };
    return ims_nn_write_encoder_from(backbone, &nh, out_ism, sha256_hex, err);
}
