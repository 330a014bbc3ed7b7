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
 * Fused blocks (planned in exec_plan.c): a 1x1 expansion computed row by
 * row inside the depthwise that reads it (fused_items), and a whole
 * [expansion ->] depthwise -> projection [-> residual ADD] block run by its
 * last node (block_items).
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

/* Output rows per group: enough pixels (IMS_FUSE_M) for the projection's
 * register tiles, fewer when threads would otherwise go idle. */
#define IMS_FUSE_M 64

int ims__fuse_rows(int out_h, int out_w, int n, int threads)
{
    int g = (IMS_FUSE_M + out_w - 1) / out_w;
    if (g > out_h)
        g = out_h;
    while (threads > 1 && g > 1 && (int64_t)n * ((out_h + g - 1) / g) < 2 * threads)
        g--;
    return g < 1 ? 1 : g;
}

/* A fused inverted-residual block: [1x1 expansion] -> 3x3 depthwise -> 1x1
 * projection [-> ADD]. Items are (image, group of g output rows); for each
 * output row the depthwise reads expansion rows computed on demand into
 * the 3-row ring (or the stored input) and writes into a per-thread buffer
 * of g rows, which one projection GEMM then multiplies, adding the residual
 * in its epilogue. Every element goes through the same kernels with the
 * same k order as the unfused path, so the results are the same bits. */
typedef struct block_job {
    const ims__run *s;
    const ims__node *nd, *ne, *np;  /* depthwise, expansion (NULL: none), projection */
    ims__tensor x, y, r;            /* block input, block output, residual (r.p NULL: none) */
    const int32_t *pads;            /* the depthwise's */
    const float *Be, *be, *Bp, *bp; /* packed expansion and projection weights, biases */
    int g, n_groups;
} block_job;

static void block_items(void *ctx, int64_t b, int64_t e)
{
    const block_job *j = ctx;
    const ims__run *s = j->s;
    const ims__node *nd = j->nd, *ne = j->ne, *np = j->np;
    const ims__tensor *x = &j->x, *y = &j->y, *r = &j->r;
    const int tid = ims__pool_tid(), Cd = nd->c, OW = nd->w, OH = nd->h;
    const int H = ne ? ne->h : x->h, W = ne ? ne->w : x->w;
    float *ring = ne ? s->fring + (size_t)tid * s->n_fring : NULL;
    const size_t slot = s->n_fring / 3;
    const float **rows = ne ? s->frows + (size_t)tid * s->max_rows : NULL;
    float *buf = s->fbuf + (size_t)tid * s->n_fbuf;
    const int ld_in = ne ? ne->c : x->ld;
    ims__dw_args a = {.in_h = H,
                      .in_w = W,
                      .ld_in = ld_in,
                      .out = buf,
                      .out_h = 1,
                      .out_w = OW,
                      .ld_out = Cd,
                      .c = Cd,
                      .k = ims__weights(s, nd->weight),
                      .bias = ims__weights(s, nd->bias),
                      .kh = nd->kh,
                      .kw = nd->kw,
                      .sh = nd->sh,
                      .sw = nd->sw,
                      .dh = nd->dh,
                      .dw = nd->dw,
                      .pad_l = j->pads[2],
                      .act = (int)nd->act,
                      .act_max = nd->act_max,
                      .rows = rows};
    const int n_pe = ne ? (ne->c + IMS_PANEL - 1) / IMS_PANEL : 0;
    const int n_pp = (np->c + IMS_PANEL - 1) / IMS_PANEL;
    IMS_ASSERT((size_t)j->g * OW * Cd <= s->n_fbuf);
    int img = -1, next = 0; /* next expansion row to compute for image img */
    for (int64_t it = b; it < e; it++) {
        int im = (int)(it / j->n_groups), oy0 = (int)(it % j->n_groups) * j->g;
        int oy1 = oy0 + j->g < OH ? oy0 + j->g : OH;
        const float *xi = x->p + im * ims__img_stride(x);
        a.in = xi;
        for (int oy = oy0; oy < oy1; oy++) {
            if (ne) {
                int iy0 = oy * nd->sh - j->pads[0];
                int lo = iy0 < 0 ? 0 : iy0, hi = iy0 + 3 < H ? iy0 + 3 : H; /* rows [lo, hi) */
                if (im != img || next < lo)
                    img = im, next = lo;
                for (; next < hi; next++) {
                    float *dst = ring + (size_t)(next % 3) * slot;
                    s->k->gemm_packed(W, ne->c, x->c, xi + (int64_t)next * W * x->ld, x->ld, j->Be,
                                      j->be, dst, ne->c, 0, n_pe, (int)ne->act, ne->act_max, NULL,
                                      0);
                    rows[next] = dst;
                }
            }
            /* output row oy into row 0 of a.out: shift the top padding instead */
            a.pad_t = j->pads[0] - oy * nd->sh;
            a.out = buf + (size_t)(oy - oy0) * OW * Cd;
            s->k->dw_rows(&a, 0, 1);
        }
        int64_t q0 = (int64_t)oy0 * OW;
        const float *res = r->p ? r->p + im * ims__img_stride(r) + q0 * r->ld : NULL;
        s->k->gemm_packed((oy1 - oy0) * OW, np->c, Cd, buf, Cd, j->Bp, j->bp,
                          y->p + im * ims__img_stride(y) + q0 * y->ld, y->ld, 0, n_pp, (int)np->act,
                          np->act_max, res, r->ld);
    }
}

/* Packed bias of a node packed as a K x N matrix at off. */
static const float *packed_bias(const ims__run *s, int64_t off, int K, int N)
{
    return s->packed + off + ims__packed_size(K, N) -
           (size_t)(N + IMS_PANEL - 1) / IMS_PANEL * IMS_PANEL;
}

void ims__op_fused_block(ims__run *s, uint32_t i)
{
    const ims__graph *g = s->g;
    const uint32_t d = (uint32_t)s->fuse_dw[i];
    uint32_t p = i;
    block_job j;
    memset(&j, 0, sizeof j);
    if (g->nodes[i].op == IMS_OP_ADD) { /* the projection is the input that reads d */
        const uint32_t *in = ims__node_inputs(g, &g->nodes[i]);
        int k = s->in0[in[0]] == d ? 0 : 1;
        p = in[k];
        j.r = ims__tensor_of(s, in[1 - k]);
    }
    const int32_t e = s->fuse_src[d];
    j.s = s;
    j.nd = &g->nodes[d];
    j.ne = e >= 0 ? &g->nodes[e] : NULL;
    j.np = &g->nodes[p];
    j.x = ims__tensor_of(s, e >= 0 ? s->in0[e] : s->in0[d]);
    j.y = ims__tensor_of(s, i);
    j.pads = s->pads + 4 * d;
    IMS_ASSERT(s->pack_off[p] >= 0 && (e < 0 || s->pack_off[e] >= 0));
    if (e >= 0) {
        j.Be = s->packed + s->pack_off[e];
        j.be = packed_bias(s, s->pack_off[e], j.x.c, j.ne->c);
    }
    j.Bp = s->packed + s->pack_off[p];
    j.bp = packed_bias(s, s->pack_off[p], j.nd->c, j.np->c);
    int threads = ims__pool_threads(s->pool);
    j.g = ims__fuse_rows(j.nd->h, j.nd->w, s->n, threads);
    j.n_groups = (j.nd->h + j.g - 1) / j.g;
    /* about one chunk of groups per thread: each chunk recomputes <= 2 halo rows */
    int64_t items = (int64_t)s->n * j.n_groups, grain = items / threads;
    ims__pool_for(s->pool, items, grain < 1 ? 1 : grain, block_items, &j);
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
