/* SPDX-License-Identifier: MIT */
/*
 * ops_conv.c — CONV2D, DWCONV2D and DENSE.
 *
 * CONV2D is a matrix product with the HWIO kernel viewed as a
 * (kh*kw*cin) x cout matrix. A 1x1, stride-1, unpadded convolution
 * multiplies the NHWC input in place (its pixels are rows with stride ld, for
 * the whole batch at once). Any other shape builds im2col rows for a chunk of
 * output pixels (in parallel on the pool) and multiplies the chunk; the
 * output rows are written with the output's pixel stride, so a convolution
 * feeding a concatenation writes straight into its slice. Bias and
 * activation are fused into the product's output pass (gemm.c).
 *
 * DWCONV2D (multiplier 1) runs the kernel table's channel-vectorised row
 * kernel over (image, output row) items; other multipliers use a plain loop.
 */
#include <string.h>

#include "exec_int.h"

typedef struct im2col_job {
    const ims__tensor *x;
    const ims__node *nd;
    const int32_t *pads;
    int oh, ow, K;
    int64_t p0;
    float *rows;
} im2col_job;

/* Copy n floats (n is often tiny: 3 input channels). */
static inline void copy_f(float *d, const float *x, int n)
{
    if (n <= 16)
        for (int i = 0; i < n; i++)
            d[i] = x[i];
    else
        memcpy(d, x, (size_t)n * sizeof(float));
}

static void im2col_rows(void *ctx, int64_t b, int64_t e)
{
    const im2col_job *j = ctx;
    const ims__tensor *x = j->x;
    const ims__node *nd = j->nd;
    const int cin = x->c;
    /* with dense pixels and no dilation, a window row is one contiguous run */
    const int runs = x->ld == cin && nd->dw == 1;
    for (int64_t r = b; r < e; r++) {
        int64_t p = j->p0 + r, q = p % ((int64_t)j->oh * j->ow);
        int img = (int)(p / ((int64_t)j->oh * j->ow)), oy = (int)(q / j->ow),
            ox = (int)(q % j->ow);
        const float *xi = x->p + img * ims__img_stride(x);
        float *d = j->rows + r * j->K;
        int ix0 = ox * nd->sw - j->pads[2];
        int kx0 = 0, kx1 = nd->kw; /* valid kx: [kx0, kx1) */
        while (kx0 < kx1 && ix0 + kx0 * nd->dw < 0)
            kx0++;
        while (kx1 > kx0 && ix0 + (kx1 - 1) * nd->dw >= x->w)
            kx1--;
        for (int ky = 0; ky < nd->kh; ky++, d += (size_t)cin * nd->kw) {
            int iy = oy * nd->sh - j->pads[0] + ky * nd->dh;
            if (iy < 0 || iy >= x->h || kx0 >= kx1) {
                memset(d, 0, (size_t)cin * nd->kw * sizeof(float));
                continue;
            }
            if (kx0 > 0)
                memset(d, 0, (size_t)cin * kx0 * sizeof(float));
            const float *row = xi + (int64_t)iy * x->w * x->ld;
            if (runs) {
                copy_f(d + (size_t)cin * kx0, row + (int64_t)(ix0 + kx0) * cin,
                       cin * (kx1 - kx0));
            } else {
                for (int kx = kx0; kx < kx1; kx++)
                    copy_f(d + (size_t)cin * kx, row + (int64_t)(ix0 + kx * nd->dw) * x->ld,
                           cin);
            }
            if (kx1 < nd->kw)
                memset(d + (size_t)cin * kx1, 0, (size_t)cin * (nd->kw - kx1) * sizeof(float));
        }
    }
}

static void im2col_fill(const void *ctx, int64_t row0, int rows, float *dst)
{
    im2col_job j = *(const im2col_job *)ctx;
    j.p0 = row0;
    j.rows = dst;
    im2col_rows(&j, 0, rows);
}

void ims__op_conv2d(ims__run *s, uint32_t i)
{
    if (s->wino && s->wino[i]) {
        ims__op_conv_winograd(s, i);
        return;
    }
    const ims__node *nd = &s->g->nodes[i];
    ims__tensor x = ims__tensor_of(s, s->in0[i]), y = ims__tensor_of(s, i);
    const int32_t *pads = s->pads + 4 * i;
    const float *W = ims__weights(s, nd->weight), *bias = ims__weights(s, nd->bias);
    int64_t P = (int64_t)s->n * y.h * y.w;
    const float *Bp = s->pack_off[i] >= 0 ? s->packed + s->pack_off[i] : NULL;
    const float *bias_p = Bp ? Bp + ims__packed_size(nd->kh * nd->kw * x.c, y.c) -
                                   (size_t)(y.c + IMS_PANEL - 1) / IMS_PANEL * IMS_PANEL
                             : NULL;
    if (nd->kh == 1 && nd->kw == 1 && nd->sh == 1 && nd->sw == 1 && !pads[0] && !pads[1] &&
        !pads[2] && !pads[3]) {
        ims__gemm_a a = {x.p, x.ld, NULL, NULL, NULL, 0};
        if (Bp)
            ims__gemm_packed(s->k, s->pool, (int)P, y.c, x.c, &a, Bp, bias_p, y.p, y.ld,
                             nd->act, nd->act_max);
        else
            ims__gemm(s->k, s->pool, (int)P, y.c, x.c, x.p, x.ld, W, y.c, y.p, y.ld, bias,
                      nd->act, nd->act_max);
        return;
    }
    int K = nd->kh * nd->kw * x.c;
    if (Bp) { /* im2col per row block, inside the product's tasks */
        im2col_job j = {&x, nd, pads, y.h, y.w, K, 0, NULL};
        ims__gemm_a a = {NULL, K, im2col_fill, &j, s->tscratch, s->n_tscratch};
        ims__gemm_packed(s->k, s->pool, (int)P, y.c, K, &a, Bp, bias_p, y.p, y.ld, nd->act,
                         nd->act_max);
        return;
    }
    int64_t R = (int64_t)(s->n_scratch / (size_t)K);
    IMS_ASSERT(R >= 1);
    im2col_job j = {&x, nd, pads, y.h, y.w, K, 0, s->scratch};
    for (int64_t p0 = 0; p0 < P; p0 += R) {
        int64_t r = P - p0 < R ? P - p0 : R;
        j.p0 = p0;
        ims__pool_for(s->pool, r, 16, im2col_rows, &j);
        ims__gemm(s->k, s->pool, (int)r, y.c, K, s->scratch, K, W, y.c, y.p + p0 * y.ld, y.ld,
                  bias, nd->act, nd->act_max);
    }
}

typedef struct dw_job {
    const ims__run *s;
    const ims__node *nd;
    ims__tensor x, y;
    const int32_t *pads;
} dw_job;

static void dw_items(void *ctx, int64_t b, int64_t e)
{
    const dw_job *j = ctx;
    const ims__node *nd = j->nd;
    const ims__tensor *x = &j->x, *y = &j->y;
    ims__dw_args a = {NULL, x->h, x->w, x->ld, NULL, y->h, y->w, y->ld, x->c,
                      ims__weights(j->s, nd->weight), ims__weights(j->s, nd->bias),
                      nd->kh, nd->kw, nd->sh, nd->sw, nd->dh, nd->dw, j->pads[0], j->pads[2],
                      (int)nd->act, nd->act_max, 0, NULL};
    while (b < e) { /* items are (image, output row); batch rows of one image */
        int img = (int)(b / y->h), oy0 = (int)(b % y->h);
        int oy1 = oy0 + (int)(e - b) < y->h ? oy0 + (int)(e - b) : y->h;
        a.in = x->p + img * ims__img_stride(x);
        a.out = y->p + img * ims__img_stride(y);
        j->s->k->dw_rows(&a, oy0, oy1);
        b += oy1 - oy0;
    }
}

/* Depthwise with a channel multiplier > 1: output channel ci*mult + m. */
static void dw_mult_items(void *ctx, int64_t b, int64_t e)
{
    const dw_job *j = ctx;
    const ims__node *nd = j->nd;
    const ims__tensor *x = &j->x, *y = &j->y;
    const float *W = ims__weights(j->s, nd->weight), *bias = ims__weights(j->s, nd->bias);
    for (int64_t it = b; it < e; it++) {
        int img = (int)(it / y->h), oy = (int)(it % y->h);
        const float *xi = x->p + img * ims__img_stride(x);
        for (int ox = 0; ox < y->w; ox++) {
            float *o = y->p + img * ims__img_stride(y) + ((int64_t)oy * y->w + ox) * y->ld;
            for (int co = 0; co < y->c; co++)
                o[co] = bias ? bias[co] : 0;
            for (int ky = 0; ky < nd->kh; ky++) {
                int iy = oy * nd->sh - j->pads[0] + ky * nd->dh;
                if (iy < 0 || iy >= x->h)
                    continue;
                for (int kx = 0; kx < nd->kw; kx++) {
                    int ix = ox * nd->sw - j->pads[2] + kx * nd->dw;
                    if (ix < 0 || ix >= x->w)
                        continue;
                    const float *xp = xi + ((int64_t)iy * x->w + ix) * x->ld;
                    const float *k = W + ((int64_t)ky * nd->kw + kx) * y->c;
                    for (int ci = 0; ci < x->c; ci++)
                        for (int m = 0; m < nd->mult; m++)
                            o[ci * nd->mult + m] += xp[ci] * k[ci * nd->mult + m];
                }
            }
            for (int co = 0; co < y->c; co++)
                o[co] = ims__act1(o[co], (int)nd->act, nd->act_max);
        }
    }
}

/* A fused block: the depthwise reads expansion rows that are computed on
 * demand (1x1 conv = one GEMM of in_w rows) into a per-thread 3-row ring. */
typedef struct fused_job {
    const ims__run *s;
    const ims__node *nd, *ne;  /* depthwise, expansion */
    ims__tensor x, y;          /* the expansion's input, the depthwise output */
    const int32_t *pads;
    const float *Bp, *bias_p;
} fused_job;

static void fused_items(void *ctx, int64_t b, int64_t e)
{
    const fused_job *j = ctx;
    const ims__run *s = j->s;
    const ims__node *nd = j->nd, *ne = j->ne;
    const ims__tensor *x = &j->x, *y = &j->y;
    const int tid = ims__pool_tid(), Ce = ne->c, H = ne->h, W = ne->w;
    float *ring = s->fring + (size_t)tid * s->n_fring;
    const size_t slot = s->n_fring / 3;
    const float **rows = s->frows + (size_t)tid * s->max_rows;
    ims__dw_args a = {NULL, H, W, Ce, NULL, y->h, y->w, y->ld, Ce,
                      ims__weights(s, nd->weight), ims__weights(s, nd->bias),
                      nd->kh, nd->kw, nd->sh, nd->sw, nd->dh, nd->dw, j->pads[0], j->pads[2],
                      (int)nd->act, nd->act_max, 0, rows};
    int img = -1, next = 0; /* next expansion row to compute for image img */
    for (int64_t it = b; it < e; it++) {
        int im = (int)(it / y->h), oy = (int)(it % y->h);
        int iy0 = oy * nd->sh - j->pads[0];
        int lo = iy0 < 0 ? 0 : iy0, hi = iy0 + 3 < H ? iy0 + 3 : H; /* rows [lo, hi) */
        if (im != img || next < lo)
            img = im, next = lo;
        const float *xi = x->p + im * ims__img_stride(x);
        for (; next < hi; next++) {
            float *dst = ring + (size_t)(next % 3) * slot;
            s->k->gemm_packed(W, Ce, x->c, xi + (int64_t)next * W * x->ld, x->ld, j->Bp, j->bias_p,
                              dst, Ce, 0, (Ce + IMS_PANEL - 1) / IMS_PANEL, (int)ne->act,
                              ne->act_max, NULL, 0);
            rows[next] = dst;
        }
        a.out = y->p + im * ims__img_stride(y);
        s->k->dw_rows(&a, oy, oy + 1);
    }
}

void ims__op_dwconv2d(ims__run *s, uint32_t i)
{
    if (s->fuse_src[i] >= 0) {
        uint32_t e = (uint32_t)s->fuse_src[i];
        const ims__node *ne = &s->g->nodes[e];
        IMS_ASSERT(s->pack_off[e] >= 0);
        const float *Bp = s->packed + s->pack_off[e];
        fused_job j = {s, &s->g->nodes[i], ne, ims__tensor_of(s, s->in0[e]),
                       ims__tensor_of(s, i), s->pads + 4 * i, Bp,
                       Bp + ims__packed_size(s->g->nodes[s->in0[e]].c, ne->c) -
                           (size_t)(ne->c + IMS_PANEL - 1) / IMS_PANEL * IMS_PANEL};
        /* about one chunk of rows per thread: each chunk recomputes <= 2 halo rows */
        int64_t rows = (int64_t)s->n * j.y.h;
        int64_t grain = j.y.h / ims__pool_threads(s->pool);
        ims__pool_for(s->pool, rows, grain < 4 ? 4 : grain, fused_items, &j);
        return;
    }

    const ims__node *nd = &s->g->nodes[i];
    dw_job j = {s, nd, ims__tensor_of(s, s->in0[i]), ims__tensor_of(s, i), s->pads + 4 * i};
    int64_t items = (int64_t)s->n * j.y.h;
    ims__pool_for(s->pool, items, 1, nd->mult == 1 ? dw_items : dw_mult_items, &j);
}

void ims__op_dense(ims__run *s, uint32_t i)
{
    const ims__node *nd = &s->g->nodes[i];
    ims__tensor x = ims__tensor_of(s, s->in0[i]), y = ims__tensor_of(s, i);
    int K = x.h * x.w * x.c;
    const float *A = x.p;
    int lda;
    if (x.ld == x.c) {
        lda = K;
    } else if (x.h * x.w == 1) {
        lda = x.ld;
    } else { /* a strided slice: gather each image contiguously */
        for (int n = 0; n < s->n; n++)
            for (int64_t p = 0; p < (int64_t)x.h * x.w; p++)
                memcpy(s->scratch + (int64_t)n * K + p * x.c,
                       x.p + n * ims__img_stride(&x) + p * x.ld, (size_t)x.c * sizeof(float));
        A = s->scratch;
        lda = K;
    }
    if (s->pack_off[i] >= 0) {
        const float *Bp = s->packed + s->pack_off[i];
        ims__gemm_a a = {A, lda, NULL, NULL, NULL, 0};
        ims__gemm_packed(s->k, s->pool, s->n, y.c, K, &a, Bp,
                         Bp + ims__packed_size(K, y.c) -
                             (size_t)(y.c + IMS_PANEL - 1) / IMS_PANEL * IMS_PANEL,
                         y.p, (int)ims__img_stride(&y), nd->act, nd->act_max);
        return;
    }
    ims__gemm(s->k, s->pool, s->n, y.c, K, A, lda, ims__weights(s, nd->weight), y.c, y.p,
              (int)ims__img_stride(&y), ims__weights(s, nd->bias), nd->act, nd->act_max);
}
