/* SPDX-License-Identifier: MIT */
/*
 * test_nn_ops.c — every op of the graph IR against a naive reference (plain
 * loops in nn_test_util.h) on random shapes, strides, paddings, dilations
 * and multipliers; each graph is run at every kernel level, with 1 and 2
 * threads, as a batch and image by image (tu_check_graph). The op's full
 * output is compared through a flat tap (RESHAPE), and its pooled output
 * through a spatial tap.
 */
#include "nn_test_util.h"

#define TOL 2e-4

static const uint32_t acts[][2] = {{IMS_ACT_NONE, 0}, {IMS_ACT_RELU, 0}, {IMS_ACT_RELU, 6},
                                   {IMS_ACT_SIGMOID, 0}, {IMS_ACT_TANH, 0}};

static void rand_act(ims__node *p)
{
    int a = tu_rand(0, 4);
    p->act = acts[a][0];
    p->act_max = (float)acts[a][1];
}

/* input H x W -> 1x1 conv to cin channels: the op's input */
static uint32_t start(ims_nn_model *m, int H, int W, int cin)
{
    tu_model_init(m, H, W);
    return tu_conv(m, 0, cin, 1, 1, 0, IMS_ACT_NONE, 0);
}

/* Taps: the op (pooled) and its full output (flattened); check and free. */
static void finish(ims_nn_model *m, uint32_t op, const char *label)
{
    ims__node r = tu_proto(IMS_OP_RESHAPE);
    uint32_t flat = tu_add(m, r, "flat", &op, 1, 0, 0);
    uint32_t taps[2] = {flat, op};
    tu_check_graph(m, taps, 2, 0, tu_rand(1, 3), TOL, label);
    tu_model_free(m);
}

static int out_len(int in, int p0, int p1, int k, int s, int d)
{
    int span = d * (k - 1) + 1;
    return in + p0 + p1 < span ? 0 : (in + p0 + p1 - span) / s + 1;
}

/* Random window attributes that fit an H x W input (pool: pads < window). */
static void rand_window(ims__node *p, int H, int W, int pool)
{
    do {
        p->kh = tu_rand(1, 4), p->kw = tu_rand(1, 4);
        p->sh = tu_rand(1, 3), p->sw = tu_rand(1, 3);
        p->dh = pool ? 1 : tu_rand(1, 2), p->dw = pool ? 1 : tu_rand(1, 2);
        p->pad_t = tu_rand(0, p->kh - 1), p->pad_b = tu_rand(0, p->kh - 1);
        p->pad_l = tu_rand(0, p->kw - 1), p->pad_r = tu_rand(0, p->kw - 1);
    } while (out_len(H, p->pad_t, p->pad_b, p->kh, p->sh, p->dh) < 1 ||
             out_len(W, p->pad_l, p->pad_r, p->kw, p->sw, p->dw) < 1);
}

static void test_conv(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(1, 16), W = tu_rand(1, 16), cin = tu_rand(1, 24);
        uint32_t x = start(&m, H, W, cin);
        ims__node p = tu_proto(IMS_OP_CONV2D);
        rand_window(&p, H, W, 0);
        if (t % 4 == 0) /* 1x1 direct GEMM path */
            p.kh = p.kw = p.sh = p.sw = p.dh = p.dw = 1, p.pad_t = p.pad_b = p.pad_l = p.pad_r = 0;
        p.c = t % 3 == 0 ? tu_rand(40, 80) : tu_rand(1, 20);
        rand_act(&p);
        uint32_t y = tu_add(&m, p, "conv", &x, 1, (int64_t)p.kh * p.kw * cin * p.c,
                            tu_rand(0, 1) ? p.c : 0);
        char label[128];
        snprintf(label, sizeof label, "conv %dx%dx%d k%dx%d s%d,%d d%d,%d p%d,%d,%d,%d c%d act%u",
                 H, W, cin, p.kh, p.kw, p.sh, p.sw, p.dh, p.dw, p.pad_t, p.pad_b, p.pad_l,
                 p.pad_r, p.c, p.act);
        finish(&m, y, label);
    }
}

/* Stride-1 3x3 convolutions with outputs of 16x16 and more: the planner
 * runs them by Winograd F(2x2, 3x3) (ops_winograd.c); odd output sizes
 * leave half-empty tiles, channel counts leave vector tails. */
static void test_conv_winograd(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(16, 23), W = tu_rand(16, 23), cin = tu_rand(1, 40);
        uint32_t x = start(&m, H, W, cin);
        ims__node p = tu_proto(IMS_OP_CONV2D);
        p.kh = p.kw = 3;
        do {
            p.pad_t = tu_rand(0, 2), p.pad_b = tu_rand(0, 2);
            p.pad_l = tu_rand(0, 2), p.pad_r = tu_rand(0, 2);
        } while (H + p.pad_t + p.pad_b - 2 < 16 || W + p.pad_l + p.pad_r - 2 < 16);
        p.c = t % 2 ? tu_rand(1, 40) : tu_rand(41, 100);
        rand_act(&p);
        uint32_t y = tu_add(&m, p, "conv", &x, 1, 9LL * cin * p.c, tu_rand(0, 1) ? p.c : 0);
        char label[128];
        snprintf(label, sizeof label, "winograd conv %dx%dx%d p%d,%d,%d,%d c%d act%u", H, W, cin,
                 p.pad_t, p.pad_b, p.pad_l, p.pad_r, p.c, p.act);
        finish(&m, y, label);
    }
}

static void test_dwconv(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(1, 16), W = tu_rand(1, 16), cin = tu_rand(1, 40);
        uint32_t x = start(&m, H, W, cin);
        ims__node p = tu_proto(IMS_OP_DWCONV2D);
        rand_window(&p, H, W, 0);
        p.mult = t % 3 == 0 ? tu_rand(2, 3) : 1;
        if (t % 3 == 1 && H >= 2 && W >= 2) /* MobileNet's 3x3 */
            p.kh = p.kw = 3, p.dh = p.dw = 1, p.sh = p.sw = tu_rand(1, 2),
            p.pad_t = p.pad_b = p.pad_l = p.pad_r = 1;
        rand_act(&p);
        int c = cin * p.mult;
        uint32_t y = tu_add(&m, p, "dw", &x, 1, (int64_t)p.kh * p.kw * c, tu_rand(0, 1) ? c : 0);
        char label[128];
        snprintf(label, sizeof label, "dwconv %dx%dx%d k%dx%d s%d,%d d%d,%d p%d,%d,%d,%d m%d act%u",
                 H, W, cin, p.kh, p.kw, p.sh, p.sw, p.dh, p.dw, p.pad_t, p.pad_b, p.pad_l,
                 p.pad_r, p.mult, p.act);
        finish(&m, y, label);
    }
}

static void test_dense(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(1, 5), W = tu_rand(1, 5), cin = tu_rand(1, 20);
        uint32_t x = start(&m, H, W, cin);
        ims__node p = tu_proto(IMS_OP_DENSE);
        p.c = t % 2 ? tu_rand(1, 30) : tu_rand(60, 130);
        rand_act(&p);
        uint32_t y = tu_add(&m, p, "dense", &x, 1, (int64_t)H * W * cin * p.c,
                            tu_rand(0, 1) ? p.c : 0);
        char label[96];
        snprintf(label, sizeof label, "dense %dx%dx%d -> %d act%u", H, W, cin, p.c, p.act);
        finish(&m, y, label);
    }
}

static void test_pool(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(1, 14), W = tu_rand(1, 14), cin = tu_rand(1, 20);
        uint32_t x = start(&m, H, W, cin);
        ims__node p = tu_proto(t % 2 ? IMS_OP_MAXPOOL : IMS_OP_AVGPOOL);
        rand_window(&p, H, W, 1);
        uint32_t y = tu_add(&m, p, "pool", &x, 1, 0, 0);
        char label[96];
        snprintf(label, sizeof label, "%s %dx%dx%d k%dx%d s%d,%d p%d,%d,%d,%d",
                 ims__op_name(p.op), H, W, cin, p.kh, p.kw, p.sh, p.sw, p.pad_t, p.pad_b,
                 p.pad_l, p.pad_r);
        finish(&m, y, label);
    }
}

static void test_gap_softmax(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(1, 12), W = tu_rand(1, 12), cin = tu_rand(1, 30);
        uint32_t x = start(&m, H, W, cin);
        ims__node p = tu_proto(IMS_OP_GAP);
        uint32_t gp = tu_add(&m, p, "gap", &x, 1, 0, 0);
        ims__node d = tu_proto(IMS_OP_DENSE);
        d.c = tu_rand(2, 12);
        uint32_t logits = tu_add(&m, d, "logits", &gp, 1, (int64_t)cin * d.c, d.c);
        ims__node sm = tu_proto(IMS_OP_SOFTMAX);
        uint32_t prob = tu_add(&m, sm, "probs", &logits, 1, 0, 0);
        m.g.output = (int32_t)prob;
        m.g.n_classes = (uint32_t)d.c;
        m.g.feature = (int32_t)gp;
        uint32_t taps[2] = {gp, prob};
        tu_check_graph(&m, taps, 2, 1, tu_rand(1, 3), TOL, "gap+dense+softmax");
        tu_model_free(&m);
    }
}

static void test_add(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(1, 12), W = tu_rand(1, 12), c = tu_rand(1, 20);
        uint32_t x = start(&m, H, W, c);
        uint32_t in[4];
        int n_in = tu_rand(2, 4);
        for (int k = 0; k < n_in; k++) /* sometimes the shared input itself */
            in[k] = k == 0 && t % 2 ? x : tu_conv(&m, x, c, 1, 1, 0, IMS_ACT_NONE, 0);
        ims__node p = tu_proto(IMS_OP_ADD);
        rand_act(&p);
        uint32_t y = tu_add(&m, p, "add", in, (uint32_t)n_in, 0, 0);
        char label[64];
        snprintf(label, sizeof label, "add %dx%dx%d n%d act%u", H, W, c, n_in, p.act);
        finish(&m, y, label);
    }
}

static void test_concat(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(1, 12), W = tu_rand(1, 12), c = tu_rand(1, 12);
        uint32_t x = start(&m, H, W, c);
        uint32_t in[5];
        int n_in = tu_rand(1, 4);
        for (int k = 0; k < n_in; k++) {
            int kind = tu_rand(0, 3);
            if (kind == 0) /* shared with other consumers */
                in[k] = x;
            else if (kind == 1 && k > 0) /* the same input twice */
                in[k] = in[k - 1];
            else {
                int kk = tu_rand(0, 1) ? 3 : 1;
                in[k] = tu_conv(&m, x, tu_rand(1, 9), kk, 1, kk / 2, IMS_ACT_RELU, 0);
            }
        }
        if (t % 3 == 0) { /* a nested concat */
            ims__node q = tu_proto(IMS_OP_CONCAT);
            uint32_t pair[2] = {tu_conv(&m, x, 3, 1, 1, 0, 0, 0), tu_conv(&m, x, 5, 1, 1, 0, 0, 0)};
            in[n_in++] = tu_add(&m, q, NULL, pair, 2, 0, 0);
        }
        ims__node p = tu_proto(IMS_OP_CONCAT);
        uint32_t y = tu_add(&m, p, "concat", in, (uint32_t)n_in, 0, 0);
        char label[64];
        snprintf(label, sizeof label, "concat %dx%d n%d case %d", H, W, n_in, t);
        finish(&m, y, label);
    }
}

static void test_pad(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(1, 10), W = tu_rand(1, 10), c = tu_rand(1, 20);
        uint32_t x = start(&m, H, W, c);
        ims__node p = tu_proto(IMS_OP_PAD);
        p.pad_t = tu_rand(0, 2), p.pad_b = tu_rand(0, 2), p.pad_l = tu_rand(0, 2),
        p.pad_r = tu_rand(0, 2);
        uint32_t y = tu_add(&m, p, "pad", &x, 1, 0, 0);
        int kind = t % 4;
        if (kind == 0) { /* folded into a conv */
            y = tu_conv(&m, y, tu_rand(1, 10), tu_rand(1, 3), tu_rand(1, 2), 0, IMS_ACT_RELU, 6);
        } else if (kind == 1) { /* folded into a depthwise conv */
            ims__node d = tu_proto(IMS_OP_DWCONV2D);
            d.kh = d.kw = 3, d.sh = d.sw = 2;
            if (m.g.nodes[y].h >= 3 && m.g.nodes[y].w >= 3)
                y = tu_add(&m, d, NULL, &y, 1, 9LL * c, c);
        } else if (kind == 2) { /* not foldable: max pool */
            ims__node d = tu_proto(IMS_OP_MAXPOOL);
            d.kh = d.kw = 2, d.sh = d.sw = 1;
            if (m.g.nodes[y].h >= 2 && m.g.nodes[y].w >= 2)
                y = tu_add(&m, d, NULL, &y, 1, 0, 0);
        } /* kind 3: the pad itself is tapped */
        char label[64];
        snprintf(label, sizeof label, "pad %dx%dx%d case %d", H, W, c, kind);
        finish(&m, y, label);
    }
}

static void test_affine_act(int n_cases)
{
    for (int t = 0; t < n_cases; t++) {
        ims_nn_model m;
        int H = tu_rand(1, 10), W = tu_rand(1, 10), c = tu_rand(1, 20);
        uint32_t x = start(&m, H, W, c);
        if (t % 2) /* consume the input elsewhere too, so no in-place */
            x = tu_conv(&m, x, c, 1, 1, 0, IMS_ACT_NONE, 0);
        ims__node p = tu_proto(t % 3 == 2 ? IMS_OP_ACT : IMS_OP_AFFINE);
        rand_act(&p);
        int64_t nw = 0, nb = 0;
        if (p.op == IMS_OP_AFFINE) {
            nw = tu_rand(0, 1) ? c : 1;
            nb = tu_rand(0, 2) == 0 ? 0 : tu_rand(0, 1) ? c : 1;
        }
        uint32_t y = tu_add(&m, p, "affine", &x, 1, nw, nb);
        char label[64];
        snprintf(label, sizeof label, "%s %dx%dx%d w%lld b%lld act%u", ims__op_name(p.op), H, W,
                 c, (long long)nw, (long long)nb, p.act);
        finish(&m, y, label);
    }
}

int main(void)
{
    ims_init();
    test_conv(40);
    test_conv_winograd(12);
    test_dwconv(40);
    test_dense(12);
    test_pool(30);
    test_gap_softmax(6);
    test_add(12);
    test_concat(18);
    test_pad(16);
    test_affine_act(16);
    return check_report();
}
