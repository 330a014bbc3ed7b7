/* SPDX-License-Identifier: MIT */
/*
 * ops_pool.c — MAXPOOL, AVGPOOL and global average pooling (the GAP op and
 * the pooling of taps). Loops keep the channel index innermost (NHWC) so the
 * compiler vectorises them; work is split over (image, output row) items.
 * MAXPOOL ignores padding cells; AVGPOOL divides by the number of
 * non-padding cells under the window (TF's behaviour).
 */
#include <string.h>

#include "exec_int.h"

typedef struct pool_job {
    const ims__run *s;
    const ims__node *nd;
    const int32_t *pads;
    ims__tensor x, y;
} pool_job;

static void pool_items(void *ctx, int64_t b, int64_t e)
{
    const pool_job *j = ctx;
    const ims__node *nd = j->nd;
    const ims__tensor *x = &j->x, *y = &j->y;
    ims__dw_args a = {NULL, x->h, x->w, x->ld, NULL, y->h, y->w, y->ld, x->c, NULL, NULL,
                      nd->kh, nd->kw, nd->sh, nd->sw, 1, 1, j->pads[0], j->pads[2], 0, 0,
                      nd->op == IMS_OP_MAXPOOL, NULL};
    while (b < e) { /* items are (image, output row) */
        int img = (int)(b / y->h), oy0 = (int)(b % y->h);
        int oy1 = oy0 + (int)(e - b) < y->h ? oy0 + (int)(e - b) : y->h;
        a.in = x->p + img * ims__img_stride(x);
        a.out = y->p + img * ims__img_stride(y);
        j->s->k->pool_rows(&a, oy0, oy1);
        b += oy1 - oy0;
    }
}

void ims__op_pool(ims__run *s, uint32_t i)
{
    pool_job j = {s, &s->g->nodes[i], s->pads + 4 * i, ims__tensor_of(s, s->in0[i]),
                  ims__tensor_of(s, i)};
    ims__pool_for(s->pool, (int64_t)s->n * j.y.h, 1, pool_items, &j);
}

typedef struct gap_job {
    const ims__nn_kernels *k;
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
        /* float sums in pixel order, as TF's reduce_mean on the cpu backend */
        memcpy(o, xi, (size_t)x->c * sizeof(float));
        for (int64_t p = 1; p < P; p++)
            j->k->vadd(o, xi + p * x->ld, x->c);
        j->k->vscale(o, o, x->c, 1.0f / (float)P, 0.0f);
    }
}

void ims__gap_into(ims__run *s, const ims__tensor *x, float *out, int ld_out)
{
    gap_job j = {s->k, x, out, ld_out};
    ims__pool_for(s->pool, x->n, 1, gap_items, &j);
}

void ims__op_gap(ims__run *s, uint32_t i)
{
    ims__tensor x = ims__tensor_of(s, s->in0[i]), y = ims__tensor_of(s, i);
    ims__gap_into(s, &x, y.p, (int)ims__img_stride(&y));
}
