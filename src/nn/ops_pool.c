/* SPDX-License-Identifier: MIT */
/*
 * ops_pool.c — MAXPOOL, AVGPOOL and global average pooling (the GAP op and
 * the pooling of taps). Loops keep the channel index innermost (NHWC) so the
 * compiler vectorises them; work is split over (image, output row) items.
 * MAXPOOL ignores padding cells; AVGPOOL divides by the number of
 * non-padding cells under the window (TF's behaviour).
 */
#include <float.h>
#include <string.h>

#include "exec_int.h"

typedef struct pool_job {
    const ims__node *nd;
    const int32_t *pads;
    ims__tensor x, y;
} pool_job;

static void pool_items(void *ctx, int64_t b, int64_t e)
{
    const pool_job *j = ctx;
    const ims__node *nd = j->nd;
    const ims__tensor *x = &j->x, *y = &j->y;
    const int C = y->c, is_max = nd->op == IMS_OP_MAXPOOL;
    for (int64_t it = b; it < e; it++) {
        int img = (int)(it / y->h), oy = (int)(it % y->h);
        const float *xi = x->p + img * ims__img_stride(x);
        int iy0 = oy * nd->sh - j->pads[0];
        int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = x->h - iy0 < nd->kh ? x->h - iy0 : nd->kh;
        for (int ox = 0; ox < y->w; ox++) {
            float *o = y->p + img * ims__img_stride(y) + ((int64_t)oy * y->w + ox) * y->ld;
            int ix0 = ox * nd->sw - j->pads[2];
            int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = x->w - ix0 < nd->kw ? x->w - ix0 : nd->kw;
            for (int c = 0; c < C; c++)
                o[c] = is_max ? -FLT_MAX : 0.0f;
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++) {
                    const float *p = xi + ((int64_t)(iy0 + ky) * x->w + ix0 + kx) * x->ld;
                    if (is_max)
                        for (int c = 0; c < C; c++)
                            o[c] = p[c] > o[c] ? p[c] : o[c];
                    else
                        for (int c = 0; c < C; c++)
                            o[c] += p[c];
                }
            if (!is_max) {
                float inv = 1.0f / (float)((ky1 - ky0) * (kx1 - kx0));
                for (int c = 0; c < C; c++)
                    o[c] *= inv;
            }
        }
    }
}

void ims__op_pool(ims__run *s, uint32_t i)
{
    pool_job j = {&s->g->nodes[i], s->pads + 4 * i, ims__tensor_of(s, s->in0[i]),
                  ims__tensor_of(s, i)};
    ims__pool_for(s->pool, (int64_t)s->n * j.y.h, 1, pool_items, &j);
}

typedef struct gap_job {
    const ims__tensor *x;
    float *out;
    int ld_out;
} gap_job;

static void gap_items(void *ctx, int64_t b, int64_t e)
{
    const gap_job *j = ctx;
    const ims__tensor *x = j->x;
    const int64_t P = (int64_t)x->h * x->w;
    for (int64_t img = b; img < e; img++) {
        float *o = j->out + img * j->ld_out;
        const float *xi = x->p + img * ims__img_stride(x);
        /* sum in double: pooled features are compared at 1e-4 cosine */
        for (int c0 = 0; c0 < x->c; c0 += 64) {
            double acc[64];
            int nc = x->c - c0 < 64 ? x->c - c0 : 64;
            memset(acc, 0, sizeof acc);
            for (int64_t p = 0; p < P; p++) {
                const float *q = xi + p * x->ld + c0;
                for (int c = 0; c < nc; c++)
                    acc[c] += q[c];
            }
            for (int c = 0; c < nc; c++)
                o[c0 + c] = (float)(acc[c] / (double)P);
        }
    }
}

void ims__gap_into(ims__run *s, const ims__tensor *x, float *out, int ld_out)
{
    gap_job j = {x, out, ld_out};
    ims__pool_for(s->pool, x->n, 1, gap_items, &j);
}

void ims__op_gap(ims__run *s, uint32_t i)
{
    ims__tensor x = ims__tensor_of(s, s->in0[i]), y = ims__tensor_of(s, i);
    ims__gap_into(s, &x, y.p, (int)ims__img_stride(&y));
}
