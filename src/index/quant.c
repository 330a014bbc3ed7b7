/* SPDX-License-Identifier: MIT */
/*
 * quant.c — stored-vector codes (float32, float16, int8) and distances
 * between a prepared query and a stored code.
 *
 * INT8 is a per-dimension affine code: x[d] ~ lo[d] + step[d] * c[d], c in
 * 0..255. The quantiser is fitted once, on the first batch added (min/max per
 * dimension over up to 65536 vectors; a first batch under 64 vectors gets a
 * symmetric range from its largest magnitude instead); later vectors are
 * clamped into it. Distances against a code are computed without decoding:
 *   L2:  sum (q - lo - step*c)^2  = sum (b - a*c)^2  with b = q - lo, a = step
 *   IP:  sum q*lo + sum (q*step)*c                    with a = q*step
 * so a query is prepared once (ims__qctx_prepare) and each code costs one
 * or two FMAs per dimension.
 */
#include <math.h>
#include <string.h>

#include "index_int.h"

int ims__prepare_vec(const ims_hnsw *h, const float *in, float *out)
{
    double ss = 0;
    for (uint32_t d = 0; d < h->n_dims; d++) {
        if (!isfinite(in[d]))
            return 0;
        ss += (double)in[d] * in[d];
    }
    if (h->metric == IMS_METRIC_COSINE) {
        if (!(ss > 0) || !isfinite(ss))
            return 0;
        float inv = (float)(1.0 / sqrt(ss));
        for (uint32_t d = 0; d < h->n_dims; d++)
            out[d] = in[d] * inv;
    } else if (out != in) {
        memcpy(out, in, sizeof(float) * h->n_dims);
    }
    return 1;
}

void ims__quant_train(ims_hnsw *h, const float *x, size_t n)
{
    uint32_t D = h->n_dims;
    if (n > 65536)
        n = 65536;
    if (n < 64) {
        float m = 0;
        for (size_t i = 0; i < n * D; i++)
            m = fmaxf(m, fabsf(x[i]));
        if (h->metric == IMS_METRIC_COSINE)
            m = fminf(1.0f, fmaxf(m, 0.25f));
        if (!(m > 0))
            m = 1;
        for (uint32_t d = 0; d < D; d++)
            h->qlo[d] = -m, h->qstep[d] = 2 * m / 255.0f;
        h->quant_ready = 1;
        return;
    }
    float *lo = h->qlo, *hi = h->qstep; /* hi in qstep until the end */
    for (uint32_t d = 0; d < D; d++)
        lo[d] = hi[d] = x[d];
    for (size_t i = 1; i < n; i++) /* row by row: sequential reads */
        for (uint32_t d = 0; d < D; d++) {
            float v = x[i * D + d];
            lo[d] = fminf(lo[d], v), hi[d] = fmaxf(hi[d], v);
        }
    /* (Clipping to the 0.05%/99.95% quantiles was tried: recall plateau on
     * t-embed fell from 0.996 to 0.972: the extremes matter most for IP.) */
    for (uint32_t d = 0; d < D; d++) {
        float step = (hi[d] - lo[d]) / 255.0f;
        if (!(step > 1e-30f))
            step = fmaxf(fabsf(lo[d]), 1e-6f) / 255.0f;
        h->qstep[d] = step;
    }
    h->quant_ready = 1;
}

void ims__encode(const ims_hnsw *h, const float *x, unsigned char *code)
{
    uint32_t D = h->n_dims;
    switch (h->storage) {
    case IMS_STORAGE_F32:
        memcpy(code, x, sizeof(float) * D);
        break;
    case IMS_STORAGE_F16:
        h->k->f16_encode(x, (uint16_t *)(void *)code, D);
        break;
    default:
        for (uint32_t d = 0; d < D; d++) {
            float c = rintf((x[d] - h->qlo[d]) / h->qstep[d]);
            code[d] = (unsigned char)(c < 0 ? 0 : c > 255 ? 255 : c);
        }
    }
}

void ims__decode(const ims_hnsw *h, uint32_t slot, float *out)
{
    uint32_t D = h->n_dims;
    const unsigned char *code = h->codes + (size_t)slot * h->code_size;
    if (h->floats) {
        memcpy(out, h->floats + (size_t)slot * D, sizeof(float) * D);
        return;
    }
    switch (h->storage) {
    case IMS_STORAGE_F32:
        memcpy(out, code, sizeof(float) * D);
        break;
    case IMS_STORAGE_F16:
        h->k->f16_decode((const uint16_t *)(const void *)code, out, D);
        break;
    default:
        for (uint32_t d = 0; d < D; d++)
            out[d] = h->qlo[d] + h->qstep[d] * (float)code[d];
    }
}

void ims__qctx_prepare(const ims_hnsw *h, ims__qctx *qc, const float *q, float *a, float *b)
{
    qc->q = q, qc->a = a, qc->b = b, qc->c0 = 0;
    if (h->storage != IMS_STORAGE_INT8)
        return;
    uint32_t D = h->n_dims;
    if (h->metric == IMS_METRIC_L2) {
        for (uint32_t d = 0; d < D; d++)
            a[d] = h->qstep[d], b[d] = q[d] - h->qlo[d];
    } else {
        double c0 = 0;
        for (uint32_t d = 0; d < D; d++)
            a[d] = q[d] * h->qstep[d], c0 += (double)q[d] * h->qlo[d];
        qc->c0 = (float)c0;
    }
}

