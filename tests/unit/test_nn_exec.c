/* SPDX-License-Identifier: MIT */
/*
 * test_nn_exec.c — the planner and the session API: several taps (spatial
 * and flat) equal the pooled reference, MobileNetV2- and InceptionV3-shaped
 * blocks (PAD folding, in-place residual adds, nested in-place concats,
 * fused expansion / depthwise / projection / residual blocks,
 * average pooling excluding padding), unneeded nodes skipped, side work
 * run beside a batch, API errors,
 * and failing the Nth allocation for every N (IMS_ENOMEM, no leaks).
 */
#include <stdatomic.h>

#include "nn_test_util.h"
#include "nn/exec_int.h"

#define TOL 2e-4

/* MobileNetV2 inverted residual block as the Keras model has it. */
static uint32_t mnv2_block(ims_nn_model *m, uint32_t x, int expand, int cout, int stride,
                           const char *tag)
{
    char name[64];
    int cin = m->g.nodes[x].c;
    uint32_t h = tu_conv(m, x, cin * expand, 1, 1, 0, IMS_ACT_RELU, 6);
    if (stride == 2) {
        ims__node p = tu_proto(IMS_OP_PAD);
        p.pad_b = p.pad_r = 1;
        snprintf(name, sizeof name, "%s_pad", tag);
        h = tu_add(m, p, name, &h, 1, 0, 0);
    }
    ims__node d = tu_proto(IMS_OP_DWCONV2D);
    d.kh = d.kw = 3, d.sh = d.sw = stride;
    if (stride == 1)
        d.pad_t = d.pad_b = d.pad_l = d.pad_r = 1;
    d.act = IMS_ACT_RELU, d.act_max = 6;
    snprintf(name, sizeof name, "%s_depthwise_relu", tag);
    int c = cin * expand;
    h = tu_add(m, d, name, &h, 1, 9LL * c, c);
    ims__node pr = tu_proto(IMS_OP_CONV2D);
    pr.c = cout;
    snprintf(name, sizeof name, "%s_project_BN", tag);
    uint32_t y = tu_add(m, pr, name, &h, 1, (int64_t)c * cout, cout);
    if (stride == 1 && cin == cout) {
        ims__node a = tu_proto(IMS_OP_ADD);
        snprintf(name, sizeof name, "%s_add", tag);
        uint32_t in[2] = {x, y};
        y = tu_add(m, a, name, in, 2, 0, 0);
    }
    return y;
}

static void test_mobilenet_like(void)
{
    ims_nn_model m;
    tu_model_init(&m, 33, 29);
    ims__node p = tu_proto(IMS_OP_PAD);
    p.pad_b = p.pad_r = 1;
    uint32_t x = tu_add(&m, p, "Conv1_pad", (uint32_t[]){0}, 1, 0, 0);
    x = tu_conv(&m, x, 16, 3, 2, 0, IMS_ACT_RELU, 6);
    x = mnv2_block(&m, x, 1, 8, 1, "block_0");
    x = mnv2_block(&m, x, 6, 12, 2, "block_1");
    uint32_t b2 = x = mnv2_block(&m, x, 6, 12, 1, "block_2");
    x = mnv2_block(&m, x, 6, 16, 2, "block_3");
    x = mnv2_block(&m, x, 6, 16, 1, "block_4");
    uint32_t b5 = x = mnv2_block(&m, x, 6, 16, 1, "block_5");
    x = tu_conv(&m, x, 64, 1, 1, 0, IMS_ACT_RELU, 6);
    ims__node g = tu_proto(IMS_OP_GAP);
    uint32_t gp = tu_add(&m, g, "gap", &x, 1, 0, 0);
    ims__node d = tu_proto(IMS_OP_DENSE);
    d.c = 5;
    uint32_t lg = tu_add(&m, d, "logits", &gp, 1, 64 * 5, 5);
    ims__node sm = tu_proto(IMS_OP_SOFTMAX);
    m.g.output = (int32_t)tu_add(&m, sm, "probs", &lg, 1, 0, 0);
    m.g.n_classes = 5;
    m.g.feature = (int32_t)gp;
    uint32_t taps[4] = {b5, gp, b2, lg}; /* spatial, flat, spatial, flat */
    tu_check_graph(&m, taps, 4, 1, 3, TOL, "mobilenet-like");

    /* the planner folded the pads and shares memory */
    ims_nn_session *s;
    ims_error err;
    const char *names[1] = {"block_5_add"};
    ims_nn_session_opts o = {names, 1, 0, 4, 1};
    CHECK_RC(ims_nn_session_new(&m, &o, &s, &err), IMS_OK);
    size_t sum = 0;
    for (uint32_t i = 1; i < m.g.n_nodes; i++) {
        const ims__node *n = &m.g.nodes[i];
        if (n->op == IMS_OP_PAD)
            CHECK_EQ(s->kind[i], IMS_X_SKIP);
        if ((int32_t)i > (int32_t)b5) /* after the tap: not run */
            CHECK_EQ(s->kind[i], IMS_X_SKIP);
        sum += (size_t)4 * n->h * n->w * n->c;
    }
    CHECK_MSG(s->n_arena * 3 < sum, "arena %zu floats vs %zu unplanned", s->n_arena, sum);
    ims_nn_session_free(s);
    tu_model_free(&m);
}

/* Expansion + 3x3 depthwise blocks big enough to be fused (the expansion
 * output exceeds 512 KiB): stride 1 and stride 2 with an explicit PAD (as
 * Keras has it), odd sizes, a 20-channel tail; and one whose expansion is
 * tapped, which must not be fused. */
static void test_fused_blocks(void)
{
    for (int t = 0; t < 4; t++) {
        ims_nn_model m;
        int H = t == 1 ? 41 : 37, W = t == 2 ? 50 : 43;
        tu_model_init(&m, H, W);
        uint32_t x = tu_conv(&m, 0, 12, 3, 1, 1, IMS_ACT_RELU, 6);
        int ce = t == 2 ? 100 : 96;
        uint32_t e = tu_conv(&m, x, ce, 1, 1, 0, IMS_ACT_RELU, 6);
        uint32_t in = e;
        int stride = t % 2 ? 2 : 1;
        if (stride == 2) {
            ims__node p = tu_proto(IMS_OP_PAD);
            p.pad_b = p.pad_r = 1;
            in = tu_add(&m, p, "pad", &e, 1, 0, 0);
        }
        ims__node d = tu_proto(IMS_OP_DWCONV2D);
        d.kh = d.kw = 3, d.sh = d.sw = stride;
        if (stride == 1)
            d.pad_t = d.pad_b = d.pad_l = d.pad_r = 1;
        d.act = IMS_ACT_RELU, d.act_max = 6;
        uint32_t dw = tu_add(&m, d, "dw", &in, 1, 9LL * ce, ce);
        uint32_t pr = tu_conv(&m, dw, 16, 1, 1, 0, IMS_ACT_NONE, 0);
        ims__node r = tu_proto(IMS_OP_RESHAPE); /* the whole depthwise output, unpooled */
        uint32_t flat = tu_add(&m, r, "flat", &dw, 1, 0, 0);
        uint32_t taps[3] = {flat, pr, e};
        int n_taps = t == 3 ? 3 : 2;
        char label[64];
        snprintf(label, sizeof label, "fused block case %d", t);
        tu_check_graph(&m, taps, n_taps, 0, 3, TOL, label);
        ims_nn_session *s;
        ims_error err;
        const char *names[3] = {tu_name(&m, flat), tu_name(&m, pr), tu_name(&m, e)};
        ims_nn_session_opts o = {names, n_taps, 0, 2, 2};
        CHECK_RC(ims_nn_session_new(&m, &o, &s, &err), IMS_OK);
        const ims__nn_env *env = ims__nn_env_get();
        int fusing = !env->no_pack && !env->no_fuse;
        CHECK_EQ(s->kind[e], t == 3 || !fusing ? IMS_X_RUN : IMS_X_FUSED);
        ims_nn_session_free(s);
        if (t == 1) { /* fail the Nth allocation of a session with a fused block */
            ims_set_allocator(&tu_allocator);
            long live0 = tu_alloc_live;
            for (long n = 1; n < 1000; n++) {
                tu_alloc_calls = 0;
                tu_alloc_fail_at = n;
                int rc = ims_nn_session_new(&m, &o, &s, &err);
                tu_alloc_fail_at = 0;
                if (rc == IMS_OK) {
                    ims_nn_session_free(s);
                    break;
                }
                CHECK_RC(rc, IMS_ENOMEM);
                CHECK_EQ(tu_alloc_live, live0);
            }
            CHECK_EQ(tu_alloc_live, live0);
            ims_set_allocator(NULL);
        }
        tu_model_free(&m);
    }
}

/* Features of `taps` for n images of x on `threads` threads at kernel
 * level `level`, with the engine settings *e (NULL: as they are). */
static float *fused_feats(ims_nn_model *m, const char **names, int n_taps, int dim, int n,
                          int threads, int level, const ims__nn_env *e, const float *x)
{
    const ims__nn_env env0 = *ims__nn_env_get();
    if (e)
        ims__nn_env_set(e);
    ims_cpu_set_level(level);
    ims_nn_session_opts o = {names, n_taps, 0, n, threads};
    ims_nn_session *s = NULL;
    ims_error err;
    float *f = calloc((size_t)n * dim, sizeof(float));
    CHECK_RC(ims_nn_session_new(m, &o, &s, &err), IMS_OK);
    if (s)
        CHECK_RC(ims_nn_session_run(s, x, n, f, NULL, &err), IMS_OK);
    ims_nn_session_free(s);
    ims_cpu_set_level(ims_cpu_detect());
    ims__nn_env_set(&env0);
    return f;
}

/* Inverted residual blocks whose depthwise goes straight into the
 * projection's GEMM (and the residual ADD into its epilogue): stride 1 +
 * residual with a fused expansion (0), stride 2 with a PAD and no residual,
 * odd sizes, 100 channels (1), a small expansion that stays stored (2), a
 * tap on the depthwise (3) and on the projection of a residual block (4),
 * which must stay materialised, no expansion at all (5), and two chained
 * residual blocks, the ADD's inputs swapped, the first one's output both
 * tapped and the second one's residual (6). Each is checked against the
 * reference interpreter at every level and thread count (tu_check_graph),
 * and bit for bit against the unfused plans at 1 and 2 threads. */
static void test_fused_proj(void)
{
    const ims__nn_env *env = ims__nn_env_get();
    const int fusing = !env->no_pack && !env->no_fuse && !env->no_fuse_proj;
    for (int t = 0; t < 7; t++) {
        ims_nn_model m;
        int small = t == 2 || t == 5;
        int H = t == 1 ? 41 : small ? 13 : 37, W = t == 1 ? 50 : small ? 11 : 43;
        tu_model_init(&m, H, W);
        int cin = t == 6 ? 20 : 16, stride = t == 1 ? 2 : 1;
        int ce = t == 5 ? cin : t == 2 ? 24 : t == 1 || t == 6 ? 100 : 96;
        uint32_t x = tu_conv(&m, 0, cin, 3, 1, 1, IMS_ACT_RELU, 6);
        uint32_t e = t == 5 ? x : tu_conv(&m, x, ce, 1, 1, 0, IMS_ACT_RELU, 6), in = e;
        if (stride == 2) {
            ims__node p = tu_proto(IMS_OP_PAD);
            p.pad_b = p.pad_r = 1;
            in = tu_add(&m, p, "pad", &e, 1, 0, 0);
        }
        ims__node d = tu_proto(IMS_OP_DWCONV2D);
        d.kh = d.kw = 3, d.sh = d.sw = stride;
        if (stride == 1)
            d.pad_t = d.pad_b = d.pad_l = d.pad_r = 1;
        d.act = IMS_ACT_RELU, d.act_max = 6;
        uint32_t dw = tu_add(&m, d, "dw", &in, 1, 9LL * ce, ce);
        uint32_t pr = tu_conv(&m, dw, stride == 2 ? 24 : cin, 1, 1, 0, IMS_ACT_NONE, 0), y = pr;
        ims__node a = tu_proto(IMS_OP_ADD);
        if (stride == 1) {
            uint32_t ai[2] = {x, pr};
            if (t == 6)
                ai[0] = pr, ai[1] = x;
            y = tu_add(&m, a, "add", ai, 2, 0, 0);
        }
        uint32_t dw2 = 0, y2 = 0;
        if (t == 6) { /* a second block on the first one's output */
            uint32_t e2 = tu_conv(&m, y, 60, 1, 1, 0, IMS_ACT_RELU, 6);
            uint32_t d2 = tu_add(&m, d, "dw2", &e2, 1, 9LL * 60, 60);
            dw2 = d2;
            uint32_t p2 = tu_conv(&m, d2, cin, 1, 1, 0, IMS_ACT_NONE, 0);
            uint32_t ai[2] = {y, p2};
            y2 = tu_add(&m, a, "add2", ai, 2, 0, 0);
        }
        uint32_t taps[2] = {y, t == 3 ? dw : t == 4 ? pr : y2};
        int n_taps = t == 3 || t == 4 || t == 6 ? 2 : 1;
        char label[64];
        snprintf(label, sizeof label, "fused projection case %d", t);
        tu_check_graph(&m, taps, n_taps, 0, 3, TOL, label);

        const char *names[2] = {tu_name(&m, taps[0]), tu_name(&m, taps[1])};
        ims_nn_session *s;
        ims_error err;
        ims_nn_session_opts o = {names, n_taps, 0, 2, 2};
        CHECK_RC(ims_nn_session_new(&m, &o, &s, &err), IMS_OK);
        int32_t want_end = -1; /* the node that runs the block, -1 = not fused */
        if (fusing && t != 3)
            want_end = (int32_t)(stride == 2 || t == 4 ? pr : y);
        for (uint32_t i = 0; i < m.g.n_nodes; i++) {
            int32_t want = (int32_t)i == want_end ? (int32_t)dw : -1;
            if (t == 6 && fusing && i == y2)
                want = (int32_t)dw2;
            CHECK_MSG(s->fuse_dw[i] == want, "%s: node %u fuse_dw %d, want %d", label, i,
                      s->fuse_dw[i], want);
        }
        CHECK_EQ(s->kind[dw], want_end >= 0 ? IMS_X_FUSED : IMS_X_RUN);
        CHECK_EQ(s->kind[pr], want_end >= 0 && want_end != (int32_t)pr ? IMS_X_FUSED : IMS_X_RUN);
        if (t == 4 || t == 3)
            CHECK_EQ(s->kind[y], IMS_X_RUN);
        ims_nn_session_free(s);
        if (t == 0) { /* fail the Nth allocation of a session with a fused projection */
            ims_set_allocator(&tu_allocator);
            long live0 = tu_alloc_live;
            for (long k = 1; k < 1000; k++) {
                tu_alloc_calls = 0;
                tu_alloc_fail_at = k;
                int rc = ims_nn_session_new(&m, &o, &s, &err);
                tu_alloc_fail_at = 0;
                if (rc == IMS_OK) {
                    ims_nn_session_free(s);
                    break;
                }
                CHECK_RC(rc, IMS_ENOMEM);
                CHECK_EQ(tu_alloc_live, live0);
            }
            CHECK_EQ(tu_alloc_live, live0);
            ims_set_allocator(NULL);
        }

        /* the same bits as the unfused plans, at every level and thread count */
        int dim = 0;
        for (int k = 0; k < n_taps; k++)
            dim += m.g.nodes[taps[k]].c;
        const int n = 3;
        float *xin = fusing ? tu_rand_input(n, H, W) : NULL; /* else all plans are unfused */
        ims__nn_env e0 = *env, e1 = *env;
        e0.no_fuse = 1;
        e1.no_fuse_proj = 1;
        for (int level = 0; fusing && level <= ims_cpu_detect(); level++) {
            if (strcmp(ims__nn_kernels_for(level)->name, ims_cpu_level_name(level)) != 0)
                continue;
            float *f1 = fused_feats(&m, names, n_taps, dim, n, 1, level, NULL, xin);
            float *f2 = fused_feats(&m, names, n_taps, dim, n, 2, level, NULL, xin);
            float *u0 = fused_feats(&m, names, n_taps, dim, n, 1, level, &e0, xin);
            float *u1 = fused_feats(&m, names, n_taps, dim, n, 2, level, &e1, xin);
            size_t bytes = (size_t)n * dim * sizeof(float);
            CHECK_MSG(!memcmp(f1, f2, bytes), "%s level %s: 1 vs 2 threads differ", label,
                      ims_cpu_level_name(level));
            CHECK_MSG(!memcmp(f1, u0, bytes), "%s level %s: fused vs IMS_NN_FUSE=0 differ", label,
                      ims_cpu_level_name(level));
            CHECK_MSG(!memcmp(f1, u1, bytes), "%s level %s: fused vs IMS_NN_FUSE=1 differ", label,
                      ims_cpu_level_name(level));
            free(f1), free(f2), free(u0), free(u1);
        }
        free(xin);
        tu_model_free(&m);
    }
}

/* InceptionV3-like module: branches concatenated (one nested), avg pool 'same'. */
static void test_inception_like(void)
{
    ims_nn_model m;
    tu_model_init(&m, 23, 19);
    uint32_t x = tu_conv(&m, 0, 12, 3, 2, 0, IMS_ACT_RELU, 0);
    ims__node mp = tu_proto(IMS_OP_MAXPOOL);
    mp.kh = mp.kw = 3, mp.sh = mp.sw = 1;
    x = tu_add(&m, mp, "pool0", &x, 1, 0, 0);
    uint32_t mods[2];
    for (int k = 0; k < 2; k++) {
        uint32_t b1 = tu_conv(&m, x, 8, 1, 1, 0, IMS_ACT_RELU, 0);
        uint32_t b3 = tu_conv(&m, x, 6, 1, 1, 0, IMS_ACT_RELU, 0);
        ims__node c17 = tu_proto(IMS_OP_CONV2D);
        c17.kh = 1, c17.kw = 7, c17.pad_l = c17.pad_r = 3, c17.c = 5, c17.act = IMS_ACT_RELU;
        uint32_t b3a = tu_add(&m, c17, NULL, &b3, 1, 7 * 6 * 5, 0);
        ims__node c71 = c17;
        c71.kh = 7, c71.kw = 1, c71.pad_l = c71.pad_r = 0, c71.pad_t = c71.pad_b = 3;
        uint32_t b3b = tu_add(&m, c71, NULL, &b3, 1, 7 * 6 * 5, 0);
        ims__node cc = tu_proto(IMS_OP_CONCAT);
        uint32_t pair[2] = {b3a, b3b};
        uint32_t nested = tu_add(&m, cc, NULL, pair, 2, 0, 0);
        ims__node ap = tu_proto(IMS_OP_AVGPOOL);
        ap.kh = ap.kw = 3, ap.pad_t = ap.pad_b = ap.pad_l = ap.pad_r = 1;
        uint32_t bp = tu_add(&m, ap, NULL, &x, 1, 0, 0);
        bp = tu_conv(&m, bp, 4, 1, 1, 0, IMS_ACT_RELU, 0);
        uint32_t all[3] = {b1, nested, bp};
        char name[16];
        snprintf(name, sizeof name, "mixed%d", k);
        x = mods[k] = tu_add(&m, cc, name, all, 3, 0, 0);
    }
    uint32_t taps[3] = {mods[0], mods[1], mods[0]};
    tu_check_graph(&m, taps, 3, 0, 2, TOL, "inception-like");
    tu_model_free(&m);
}

static void test_api_errors(void)
{
    ims_nn_model m;
    tu_model_init(&m, 8, 8);
    uint32_t x = tu_conv(&m, 0, 4, 3, 1, 1, IMS_ACT_RELU, 0);
    IMS_ASSERT(ims__graph_add_alias(&m.g, "conv_bn", (int32_t)x, 0) == IMS_OK);
    IMS_ASSERT(ims__graph_add_alias(&m.g, "conv_relu", (int32_t)x, 1) == IMS_OK);
    ims_nn_session *s = NULL;
    ims_error err;
    const char *bad[1] = {"nope"};
    ims_nn_session_opts o = {bad, 1, 0, 2, 1};
    CHECK_RC(ims_nn_session_new(&m, &o, &s, &err), IMS_ENOTFOUND);
    CHECK(s == NULL);
    const char *folded[1] = {"conv_bn"};
    o.taps = folded;
    CHECK_RC(ims_nn_session_new(&m, &o, &s, &err), IMS_ENOTFOUND);
    CHECK(strstr(err.msg, "folded") != NULL);
    o.taps = NULL, o.n_taps = 0; /* no default tap */
    CHECK_RC(ims_nn_session_new(&m, &o, &s, &err), IMS_EINVAL);
    o.want_probs = 1; /* no classifier */
    CHECK_RC(ims_nn_session_new(&m, &o, &s, &err), IMS_EINVAL);
    const char *ok[2] = {"conv_relu", "input"};
    ims_nn_session_opts o2 = {ok, 2, 0, 2, 2};
    CHECK_RC(ims_nn_session_new(&m, &o2, &s, &err), IMS_OK);
    CHECK_EQ(ims_nn_session_dim(s), 7);
    float *in = tu_rand_input(3, 8, 8), f[14], probs[4];
    CHECK_RC(ims_nn_session_run(s, in, 3, f, NULL, &err), IMS_EINVAL); /* > max_batch */
    CHECK_RC(ims_nn_session_run(s, in, 0, f, NULL, &err), IMS_EINVAL);
    CHECK_RC(ims_nn_session_run(s, in, 1, f, probs, &err), IMS_EINVAL);
    CHECK_RC(ims_nn_session_run(s, in, 2, f, NULL, &err), IMS_OK);
    /* the input tap is the mean colour */
    double mean = 0;
    for (int p = 0; p < 64; p++)
        mean += in[p * 3 + 1];
    CHECK_NEAR(f[4 + 1], mean / 64, 1e-5);
    CHECK_RC(ims_nn_session_run(s, in, 2, NULL, NULL, &err), IMS_OK);
    ims_nn_session_free(s);
    ims_nn_session_free(NULL);
    free(in);
    tu_model_free(&m);
}

/* Side work of a session run (ims_nn_session_run_side): every item once,
 * on the session's threads, with and without images (n = 0, n below and
 * above the thread count, a remainder run op-parallel), and the features
 * bit-identical to a plain run. */
typedef struct side_count {
    atomic_int calls[64];
} side_count;

static void side_fn(void *ctx, int i) { atomic_fetch_add(&((side_count *)ctx)->calls[i], 1); }

static void test_side_work(void)
{
    ims_nn_model m;
    tu_model_init(&m, 19, 17);
    uint32_t x = tu_conv(&m, 0, 8, 3, 2, 1, IMS_ACT_RELU, 6);
    x = mnv2_block(&m, x, 6, 8, 1, "block_0");
    const char *taps[1] = {"block_0_add"};
    float *in = tu_rand_input(5, 19, 17);
    ims_error err;
    for (int threads = 1; threads <= 3; threads++) {
        ims_nn_session_opts o = {taps, 1, 0, 5, threads};
        ims_nn_session *s = NULL;
        CHECK_RC(ims_nn_session_new(&m, &o, &s, &err), IMS_OK);
        if (!s)
            continue;
        int dim = ims_nn_session_dim(s);
        CHECK_EQ(dim, 8);
        CHECK_RC(ims_nn_session_run(s, NULL, 0, NULL, NULL, &err), IMS_EINVAL);
        CHECK_RC(ims_nn_session_run_side(s, in, 0, NULL, NULL, NULL, &err), IMS_EINVAL);
        for (int n = 0; n <= 5; n++) {
            for (int n_side = 0; n_side <= 40; n_side += 13) {
                if (!n && !n_side)
                    continue;
                float want[5 * 8] = {0}, got[5 * 8] = {0};
                if (n)
                    CHECK_RC(ims_nn_session_run(s, in, n, want, NULL, &err), IMS_OK);
                side_count c;
                for (int i = 0; i < 64; i++)
                    atomic_init(&c.calls[i], 0);
                ims_nn_side side = {side_fn, &c, n_side};
                CHECK_RC(
                    ims_nn_session_run_side(s, n ? in : NULL, n, n ? got : NULL, NULL, &side, &err),
                    IMS_OK);
                CHECK_MSG(!memcmp(want, got, sizeof want),
                          "threads %d, %d images, %d side items: features differ", threads, n,
                          n_side);
                for (int i = 0; i < 64; i++)
                    CHECK_EQ(atomic_load(&c.calls[i]), i < n_side ? 1 : 0);
            }
        }
        ims_nn_session_free(s);
    }
    free(in);
    tu_model_free(&m);
}

/* Fail the Nth allocation for every N until session creation succeeds. */
static void test_oom(void)
{
    ims_set_allocator(&tu_allocator);
    tu_alloc_fail_at = 0;
    long live0 = tu_alloc_live;
    ims_nn_model m;
    tu_model_init(&m, 17, 15);
    ims__node p = tu_proto(IMS_OP_PAD);
    p.pad_b = p.pad_r = 1;
    uint32_t x = tu_add(&m, p, "pad", (uint32_t[]){0}, 1, 0, 0);
    x = tu_conv(&m, x, 8, 3, 2, 0, IMS_ACT_RELU, 6);
    uint32_t a = tu_conv(&m, x, 4, 3, 1, 1, 0, 0), b = tu_conv(&m, x, 4, 1, 1, 0, 0, 0);
    ims__node cc = tu_proto(IMS_OP_CONCAT);
    uint32_t in2[2] = {a, b};
    x = tu_add(&m, cc, "cat", in2, 2, 0, 0);
    ims__node g = tu_proto(IMS_OP_GAP);
    uint32_t gp = tu_add(&m, g, "gap", &x, 1, 0, 0);
    m.g.feature = (int32_t)gp;
    long live_model = tu_alloc_live;
    float *in = tu_rand_input(2, 17, 15);
    float want[8], got[8];
    int n_fail = 0;
    for (long n = 1; n < 1000; n++) {
        tu_alloc_calls = 0;
        tu_alloc_fail_at = n;
        ims_nn_session *s = NULL;
        ims_error err;
        ims_nn_session_opts o = {NULL, 0, 0, 2, 2};
        int rc = ims_nn_session_new(&m, &o, &s, &err);
        tu_alloc_fail_at = 0;
        if (rc) {
            CHECK_RC(rc, IMS_ENOMEM);
            CHECK(s == NULL);
            CHECK_EQ(tu_alloc_live, live_model);
            n_fail++;
            continue;
        }
        CHECK_RC(ims_nn_session_run(s, in, 1, want, NULL, &err), IMS_OK);
        CHECK_RC(ims_nn_session_run(s, in, 1, got, NULL, &err), IMS_OK);
        CHECK(memcmp(want, got, sizeof want) == 0);
        ims_nn_session_free(s);
        CHECK_EQ(tu_alloc_live, live_model);
        break;
    }
    CHECK_MSG(n_fail >= 8, "only %d allocations could fail", n_fail);
    free(in);
    tu_model_free(&m);
    CHECK_EQ(tu_alloc_live, live0);
    ims_set_allocator(NULL);
}

int main(void)
{
    ims_init();
    test_mobilenet_like();
    test_inception_like();
    test_fused_blocks();
    test_fused_proj();
    test_api_errors();
    test_side_work();
    test_oom();
    /* the comparison paths (IMS_NN_GEMM=blas: OpenBLAS for every product;
     * IMS_NN_FUSE=0: no fused blocks), which the library reads only once */
    const ims__nn_env env0 = *ims__nn_env_get();
    ims__nn_env e = env0;
    e.no_pack = 1;
    ims__nn_env_set(&e);
    test_mobilenet_like();
    test_inception_like();
    test_fused_blocks();
    test_fused_proj();
    e = env0;
    e.no_fuse = 1;
    ims__nn_env_set(&e);
    test_fused_blocks();
    test_fused_proj();
    e = env0;
    e.no_fuse_proj = 1;
    ims__nn_env_set(&e);
    test_mobilenet_like();
    test_fused_proj();
    ims__nn_env_set(&env0);
    return check_report();
}
