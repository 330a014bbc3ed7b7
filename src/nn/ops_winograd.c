/* SPDX-License-Identifier: MIT */
/*
 * ops_winograd.c — stride-1 3x3 convolutions by Winograd's minimal filtering
 * F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
 * Networks", CVPR 2016): each 2x2 block of outputs is A^T [(G g G^T) . (B^T
 * d B)] A over a 4x4 input tile d, so the products become 16 matrix
 * products of (tiles x cin) . (cin x cout) with 16 multiplies per tile and
 * channel pair instead of 36: 2.25x fewer multiply-adds on the layers that
 * carry most of InceptionV3's FLOPs. F(2x2) keeps the transforms' constants
 * at 0, +-1 and 1/2 (exact in float); F(4x4, 3x3) would save 4x but its
 * larger constants lose about a decimal digit (Lavin & Gray, table 3).
 *
 * The 16 transformed kernels U_xi = G g G^T are packed at session creation
 * in the packed-B panel format (ims__pack_b, zero bias), one after the
 * other; the products run on the kernel table's gemm_packed. Work is split
 * into blocks of `mt` tiles (over the whole batch, fixed by the shape): a
 * task transforms its tiles' inputs into V (16 x mt x cin), runs the 16
 * products into M (16 x mt x cout), both in its per-thread scratch, and
 * transforms M back into the output, bias and activation included. Every
 * tile is computed the same way whatever the block it falls in, so results
 * do not depend on the batch size or thread count.
 *
 * The planner uses this path (ims__wino_ok) for 3x3, stride 1, dilation 1
 * convolutions with outputs of at least 16x16 pixels (a shape-only rule:
 * smaller maps have too few tiles for full GEMM tiles); IMS_NN_WINOGRAD=0
 * turns it off, for comparison.
 */
#include <string.h>

#include "exec_int.h"

#define WINO_MAX_C 4096
static const float zeros[WINO_MAX_C];

int ims__wino_ok(const ims__node *n, int cin)
{
    return n->op == IMS_OP_CONV2D && n->kh == 3 && n->kw == 3 && n->sh == 1 && n->sw == 1 &&
           n->dh == 1 && n->dw == 1 && n->h >= 16 && n->w >= 16 && cin <= WINO_MAX_C &&
           n->c <= WINO_MAX_C;
}

int ims__wino_mt(const ims__nn_kernels *k, int cin)
{
    int mt = (k->l2_block / 4) / (16 * cin);
    mt = mt / k->mr * k->mr;
    return mt < 4 * k->mr ? 4 * k->mr : mt > 96 ? 96 : mt;
}

size_t ims__wino_scratch(const ims__nn_kernels *k, int cin, int cout)
{
    return (size_t)16 * ims__wino_mt(k, cin) * ((size_t)cin + cout);
}

size_t ims__wino_packed_size(int cin, int cout) { return 16 * ims__packed_size(cin, cout); }

void ims__wino_pack(const float *W, int cin, int cout, float *tmp, float *dst)
{
    /* U = G g G^T, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], per (ci, co) */
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    size_t ps = ims__packed_size(cin, cout), plane = (size_t)cin * cout;
    for (int xi = 0; xi < 16; xi++) {
        int r = xi / 4, c = xi % 4;
        for (size_t q = 0; q < plane; q++) { /* q = ci * cout + co, as HWIO */
            double u = 0;
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    u += G[r][ky] * G[c][kx] * W[(size_t)(ky * 3 + kx) * plane + q];
            tmp[q] = (float)u;
        }
        ims__pack_b(tmp, NULL, cin, cout, dst + (size_t)xi * ps);
    }
}

typedef struct wino_job {
    const ims__run *s;
    const ims__node *nd;
    ims__tensor x, y;
    const float *Bp, *bias;
    int pad_t, pad_l, th, tw, mt, cin, cout;
    int64_t n_tiles;
} wino_job;

/* V[xi][r][ci] = (B^T d B)[xi] for tile r of the block (the kernel
 * table's wino_in). */
static void input_tile(const wino_job *j, int64_t tile, int r, float *V)
{
    const ims__tensor *x = &j->x;
    const int per_img = j->th * j->tw;
    int img = (int)(tile / per_img), t = (int)(tile % per_img);
    int iy0 = (t / j->tw) * 2 - j->pad_t, ix0 = (t % j->tw) * 2 - j->pad_l;
    const float *d[16];
    const float *xi = x->p + img * ims__img_stride(x);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            int iy = iy0 + a, ix = ix0 + b;
            d[a * 4 + b] = iy < 0 || iy >= x->h || ix < 0 || ix >= x->w
                               ? zeros
                               : xi + ((int64_t)iy * x->w + ix) * x->ld;
        }
    j->s->k->wino_in(d, j->cin, V + (size_t)r * j->cin, (size_t)j->mt * j->cin);
}

/* y = act(A^T M A + bias) for tile r (the kernel table's wino_out). */
static void output_tile(const wino_job *j, int64_t tile, int r, const float *M)
{
    const ims__tensor *y = &j->y;
    const int per_img = j->th * j->tw;
    int img = (int)(tile / per_img), t = (int)(tile % per_img);
    int oy0 = (t / j->tw) * 2, ox0 = (t % j->tw) * 2;
    float *o[4];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            int oy = oy0 + a, ox = ox0 + b;
            o[a * 2 + b] = oy < y->h && ox < y->w
                               ? y->p + img * ims__img_stride(y) + ((int64_t)oy * y->w + ox) * y->ld
                               : NULL;
        }
    j->s->k->wino_out(M + (size_t)r * j->cout, (size_t)j->mt * j->cout, j->cout, j->bias,
                      (int)j->nd->act, j->nd->act_max, o);
}

static void wino_blocks(void *ctx, int64_t b, int64_t e)
{
    const wino_job *j = ctx;
    const ims__run *s = j->s;
    const int mt = j->mt, cin = j->cin, cout = j->cout;
    const size_t ps = ims__packed_size(cin, cout);
    const int n_panels = (cout + IMS_PANEL - 1) / IMS_PANEL;
    IMS_ASSERT(ims__wino_scratch(s->k, cin, cout) <= s->n_tscratch);
    float *V = s->tscratch + (size_t)ims__pool_tid() * s->n_tscratch;
    float *M = V + (size_t)16 * mt * cin;
    for (int64_t blk = b; blk < e; blk++) {
        int64_t t0 = blk * mt;
        int rows = j->n_tiles - t0 < mt ? (int)(j->n_tiles - t0) : mt;
        for (int r = 0; r < rows; r++)
            input_tile(j, t0 + r, r, V);
        for (int xi = 0; xi < 16; xi++) {
            const float *U = j->Bp + (size_t)xi * ps;
            s->k->gemm_packed(rows, cout, cin, V + (size_t)xi * mt * cin, cin, U,
                              U + (size_t)n_panels * IMS_PANEL * cin, M + (size_t)xi * mt * cout,
                              cout, 0, n_panels, 0, 0.0f, NULL, 0);
        }
        for (int r = 0; r < rows; r++)
            output_tile(j, t0 + r, r, M);
    }
}

void ims__op_conv_winograd(ims__run *s, uint32_t i)
{
    const ims__node *nd = &s->g->nodes[i];
    ims__tensor x = ims__tensor_of(s, s->in0[i]), y = ims__tensor_of(s, i);
    const int32_t *pads = s->pads + 4 * i;
    wino_job j = {s,
                  nd,
                  x,
                  y,
                  s->packed + s->pack_off[i],
                  ims__weights(s, nd->bias),
                  pads[0],
                  pads[2],
                  (y.h + 1) / 2,
                  (y.w + 1) / 2,
                  ims__wino_mt(s->k, x.c),
                  x.c,
                  y.c,
                  0};
    j.n_tiles = (int64_t)s->n * j.th * j.tw;
    ims__pool_for(s->pool, (j.n_tiles + j.mt - 1) / j.mt, 1, wino_blocks, &j);
}
