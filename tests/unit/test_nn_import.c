/* SPDX-License-Identifier: MIT */
/*
 * test_nn_import.c — the TF.js importers on tiny models written by the test
 * (no fetched assets): a layers-model with uint8-quantized weights and a
 * graph-model with float32 / uint16 / float16 weights.
 *
 * Checked: dequantization (q*scale + min in double, by weight NAME, manifest
 * order shuffled), BatchNorm folding against a direct computation, TF 'same'
 * and EXPLICIT padding resolution, ZeroPadding2D folded into the next
 * convolution, aliases and tappability, default tap and classifier, and the
 * imported graph run by the executor against a naive reference of the
 * models' own (unfolded) semantics. Then errors: unsupported layers, ops and
 * options are reported naming the layer/node and the option.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "nn/import_tfjs_int.h"
#include "nn/nn_int.h"

/* ---- writing a TF.js model ------------------------------------------------ */

enum { F32, U8, U16, F16 };

typedef struct wspec {
    const char *name;
    int rank;
    int shape[4];
    int dtype;
    double min, scale; /* U8 / U16 */
    int zero_first;    /* first quantized value 0 (e.g. a variance of exactly 0) */
    float *value;      /* dequantized, filled by write_model */
    int n;
} wspec;

static char tmpdir[256];

static uint16_t float_to_half(float f) /* exact for the values used here */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, e = (u >> 23) & 0xff, m = u & 0x7fffff;
    if (e == 0)
        return (uint16_t)sign;
    int he = (int)e - 127 + 15;
    return (uint16_t)(sign | (uint32_t)he << 10 | m >> 13);
}

/* Write <tmpdir>/<sub>/model.json (topology text + manifest of specs) and one
 * shard holding the weights in spec order. Fills spec[i].value. */
static void write_model(const char *sub, const char *head, const char *topology,
                        wspec *spec, int n_spec)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    if (system(path))
        abort();
    snprintf(path, sizeof path, "%s/group1-shard1of1", dir);
    FILE *shard = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/model.json", dir);
    FILE *mj = fopen(path, "w");
    if (!shard || !mj)
        abort();
    fprintf(mj, "{%s\"modelTopology\":%s,\"weightsManifest\":[{\"paths\":[\"group1-shard1of1\"],"
                "\"weights\":[",
            head, topology);
    unsigned long long seed = 99;
    for (int i = 0; i < n_spec; i++) {
        wspec *w = &spec[i];
        w->n = 1;
        fprintf(mj, "%s{\"name\":\"%s\",\"shape\":[", i ? "," : "", w->name);
        for (int k = 0; k < w->rank; k++) {
            fprintf(mj, "%s%d", k ? "," : "", w->shape[k]);
            w->n *= w->shape[k];
        }
        fprintf(mj, "],\"dtype\":\"float32\"");
        if (w->dtype == U8 || w->dtype == U16)
            fprintf(mj, ",\"quantization\":{\"dtype\":\"%s\",\"min\":%.17g,\"scale\":%.17g}",
                    w->dtype == U8 ? "uint8" : "uint16", w->min, w->scale);
        else if (w->dtype == F16)
            fprintf(mj, ",\"quantization\":{\"dtype\":\"float16\"}");
        fprintf(mj, "}");
        w->value = malloc((size_t)w->n * sizeof(float));
        for (int k = 0; k < w->n; k++) {
            unsigned q = (unsigned)(check_rand_u64(&seed) >> 20);
            if (w->dtype == U8) {
                q &= 0xff;
                if (w->zero_first && k == 0)
                    q = 0;
                unsigned char b = (unsigned char)q;
                fwrite(&b, 1, 1, shard);
                w->value[k] = (float)(q * w->scale + w->min);
            } else if (w->dtype == U16) {
                q &= 0xffff;
                unsigned char b[2] = {(unsigned char)q, (unsigned char)(q >> 8)};
                fwrite(b, 1, 2, shard);
                w->value[k] = (float)(q * w->scale + w->min);
            } else if (w->dtype == F16) {
                float v = (float)((int)(q % 64) - 32) / 16.0f; /* exact in half */
                uint16_t h = float_to_half(v);
                unsigned char b[2] = {(unsigned char)h, (unsigned char)(h >> 8)};
                fwrite(b, 1, 2, shard);
                w->value[k] = v;
            } else {
                float v = check_rand_f(&seed);
                fwrite(&v, 4, 1, shard); /* little-endian host */
                w->value[k] = v;
            }
        }
    }
    fprintf(mj, "]}]}");
    fclose(mj);
    fclose(shard);
}

static const float *wval(wspec *spec, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(spec[i].name, name))
            return spec[i].value;
    abort();
}

/* ---- naive reference (double, NHWC, one image) ---------------------------- */

typedef struct tensor {
    int h, w, c;
    double *v;
} tensor;

static tensor tnew(int h, int w, int c)
{
    tensor t = {h, w, c, calloc((size_t)h * w * c, sizeof(double))};
    return t;
}
#define AT(t, y, x, ch) (t).v[((size_t)(y) * (t).w + (x)) * (t).c + (ch)]

/* conv or depthwise conv with explicit padding; k is HWIO / [kh][kw][cin][mult] */
static tensor ref_conv(tensor in, const float *k, const float *bias, int kh, int kw, int cout,
                       int s, int pt, int pb, int pl, int pr, int depthwise)
{
    int oh = (in.h + pt + pb - kh) / s + 1, ow = (in.w + pl + pr - kw) / s + 1;
    int mult = depthwise ? cout / in.c : 0;
    tensor o = tnew(oh, ow, cout);
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            for (int co = 0; co < cout; co++) {
                double acc = bias ? bias[co] : 0;
                for (int i = 0; i < kh; i++)
                    for (int j = 0; j < kw; j++) {
                        int yy = y * s + i - pt, xx = x * s + j - pl;
                        if (yy < 0 || xx < 0 || yy >= in.h || xx >= in.w)
                            continue;
                        if (depthwise) {
                            int ci = co / mult, m = co % mult;
                            acc += AT(in, yy, xx, ci) *
                                   k[(((size_t)i * kw + j) * in.c + ci) * mult + m];
                        } else {
                            for (int ci = 0; ci < in.c; ci++)
                                acc += AT(in, yy, xx, ci) *
                                       k[(((size_t)i * kw + j) * in.c + ci) * cout + co];
                        }
                    }
                AT(o, y, x, co) = acc;
            }
    free(in.v);
    return o;
}

static void ref_bn(tensor t, const float *gamma, const float *beta, const float *mean,
                   const float *var, double eps)
{
    for (int p = 0; p < t.h * t.w; p++)
        for (int ch = 0; ch < t.c; ch++) {
            double *v = &t.v[(size_t)p * t.c + ch];
            *v = (*v - mean[ch]) / sqrt(var[ch] + eps) * (gamma ? gamma[ch] : 1) +
                 (beta ? beta[ch] : 0);
        }
}

static void ref_relu(tensor t, double mx)
{
    for (size_t i = 0; i < (size_t)t.h * t.w * t.c; i++) {
        if (t.v[i] < 0)
            t.v[i] = 0;
        if (mx > 0 && t.v[i] > mx)
            t.v[i] = mx;
    }
}

static void ref_gap(tensor t, double *out)
{
    for (int ch = 0; ch < t.c; ch++) {
        double s = 0;
        for (int p = 0; p < t.h * t.w; p++)
            s += t.v[(size_t)p * t.c + ch];
        out[ch] = s / (t.h * t.w);
    }
}

static void ref_dense_softmax(const double *x, int n_in, const float *k, const float *b,
                              int n_out, int k_transposed, double *out)
{
    double mx = -1e300, s = 0;
    for (int o = 0; o < n_out; o++) {
        double acc = b[o];
        for (int i = 0; i < n_in; i++)
            acc += x[i] * (k_transposed ? k[o * n_in + i] : k[i * n_out + o]);
        out[o] = acc;
        if (acc > mx)
            mx = acc;
    }
    for (int o = 0; o < n_out; o++)
        s += (out[o] = exp(out[o] - mx));
    for (int o = 0; o < n_out; o++)
        out[o] /= s;
}

static double cosine(const float *a, const double *b, int n)
{
    double s = 0, na = 0, nb = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i], na += (double)a[i] * a[i], nb += b[i] * b[i];
    return na == 0 && nb == 0 ? 1 : s / sqrt(na * nb);
}

static int32_t node_named(const ims__graph *g, const char *name)
{
    int32_t i = ims__graph_find(g, name);
    CHECK_MSG(i >= 0, "no node named %s", name);
    return i;
}

/* ---- 1. a layers-model with uint8 weights --------------------------------- */

static const char *LAYERS_TOPO =
    "{\"keras_version\":\"2.2.4\",\"backend\":\"tensorflow\",\"model_config\":{"
    "\"class_name\":\"Model\",\"config\":{\"name\":\"tiny\",\"layers\":["
    "{\"name\":\"in\",\"class_name\":\"InputLayer\",\"config\":{\"batch_input_shape\":"
    "[null,6,6,3],\"dtype\":\"float32\",\"name\":\"in\"},\"inbound_nodes\":[]},"
    "{\"name\":\"zp\",\"class_name\":\"ZeroPadding2D\",\"config\":{\"padding\":[[0,1],[0,1]],"
    "\"data_format\":\"channels_last\"},\"inbound_nodes\":[[[\"in\",0,0,{}]]]},"
    "{\"name\":\"conv1\",\"class_name\":\"Conv2D\",\"config\":{\"filters\":4,\"kernel_size\":"
    "[3,3],\"strides\":[2,2],\"padding\":\"valid\",\"data_format\":\"channels_last\","
    "\"dilation_rate\":[1,1],\"activation\":\"linear\",\"use_bias\":false},"
    "\"inbound_nodes\":[[[\"zp\",0,0,{}]]]},"
    "{\"name\":\"bn1\",\"class_name\":\"BatchNormalization\",\"config\":{\"axis\":-1,"
    "\"epsilon\":0.001,\"center\":true,\"scale\":true},\"inbound_nodes\":[[[\"conv1\",0,0,{}]]]},"
    "{\"name\":\"relu1\",\"class_name\":\"ReLU\",\"config\":{\"max_value\":6,"
    "\"negative_slope\":0,\"threshold\":0},\"inbound_nodes\":[[[\"bn1\",0,0,{}]]]},"
    "{\"name\":\"dw\",\"class_name\":\"DepthwiseConv2D\",\"config\":{\"kernel_size\":[3,3],"
    "\"strides\":[1,1],\"padding\":\"same\",\"depth_multiplier\":2,\"activation\":\"linear\","
    "\"use_bias\":true},\"inbound_nodes\":[[[\"relu1\",0,0,{}]]]},"
    "{\"name\":\"bn2\",\"class_name\":\"BatchNormalization\",\"config\":{\"axis\":3,"
    "\"epsilon\":0.01,\"center\":true,\"scale\":false},\"inbound_nodes\":[[[\"dw\",0,0,{}]]]},"
    "{\"name\":\"conv3\",\"class_name\":\"Conv2D\",\"config\":{\"filters\":3,\"kernel_size\":3,"
    "\"strides\":2,\"padding\":\"same\",\"activation\":\"relu\",\"use_bias\":true},"
    "\"inbound_nodes\":[[[\"in\",0,0,{}]]]},"
    "{\"name\":\"cat\",\"class_name\":\"Concatenate\",\"config\":{\"axis\":-1},"
    "\"inbound_nodes\":[[[\"bn2\",0,0,{}],[\"conv3\",0,0,{}]]]},"
    "{\"name\":\"gap\",\"class_name\":\"GlobalAveragePooling2D\",\"config\":{},"
    "\"inbound_nodes\":[[[\"cat\",0,0,{}]]]},"
    "{\"name\":\"drop\",\"class_name\":\"Dropout\",\"config\":{\"rate\":0.5},"
    "\"inbound_nodes\":[[[\"gap\",0,0,{}]]]},"
    "{\"name\":\"dense\",\"class_name\":\"Dense\",\"config\":{\"units\":2,\"activation\":"
    "\"softmax\",\"use_bias\":true},\"inbound_nodes\":[[[\"drop\",0,0,{}]]]}],"
    "\"input_layers\":[[\"in\",0,0]],\"output_layers\":[[\"dense\",0,0]]}}}";

static void test_layers_model(void)
{
    /* manifest order deliberately unlike layer order */
    wspec spec[] = {
        {"dense/kernel", 2, {11, 2}, U8, -0.5, 0.004, 0, NULL, 0},
        {"dw/bias", 1, {8}, U8, -0.3, 0.002, 0, NULL, 0},
        {"bn1/moving_variance", 1, {4}, U8, 0.0, 0.01, 1, NULL, 0},
        {"conv1/kernel", 4, {3, 3, 3, 4}, U8, -0.6, 0.005, 0, NULL, 0},
        {"bn1/gamma", 1, {4}, U8, 0.5, 0.004, 0, NULL, 0},
        {"bn1/beta", 1, {4}, U8, -0.2, 0.003, 0, NULL, 0},
        {"bn1/moving_mean", 1, {4}, U8, -0.1, 0.001, 0, NULL, 0},
        {"dw/depthwise_kernel", 4, {3, 3, 4, 2}, U8, -0.4, 0.003, 0, NULL, 0},
        {"bn2/beta", 1, {8}, U8, -0.2, 0.002, 0, NULL, 0},
        {"bn2/moving_mean", 1, {8}, U8, -0.2, 0.002, 0, NULL, 0},
        {"bn2/moving_variance", 1, {8}, U8, 0.0, 0.01, 1, NULL, 0},
        {"conv3/kernel", 4, {3, 3, 3, 3}, U8, -0.5, 0.004, 0, NULL, 0},
        {"conv3/bias", 1, {3}, U8, -0.1, 0.001, 0, NULL, 0},
        {"dense/bias", 1, {2}, U8, -0.1, 0.001, 0, NULL, 0},
    };
    int ns = (int)(sizeof spec / sizeof spec[0]);
    write_model("layers", "", LAYERS_TOPO, spec, ns);
    char path[600];
    snprintf(path, sizeof path, "%s/layers/model.json", tmpdir);
    const char *classes[] = {"yes", "no"};
    ims_nn_import_opts o = {.classes = classes, .n_classes = 2};
    ims_nn_model m = {0};
    ims_error err = {0};
    int rc = ims__tfjs_import(path, &o, &m.g, &err);
    CHECK_MSG(rc == IMS_OK, "import: %s", err.msg);
    if (rc)
        goto out;
    ims__graph *g = &m.g;
    /* structure: in, relu1 (zp+conv1+bn1+relu1), bn2 (dw+bn2), conv3, cat, gap,
     * dense/linear, dense */
    CHECK_EQ(g->n_nodes, 8);
    CHECK_STR_EQ(ims_nn_name(&m), "tiny");
    CHECK_EQ(g->pp.width, 6);
    CHECK_EQ(g->pp.height, 6);
    CHECK_NEAR(g->pp.scale, 1.0 / 255, 1e-9);
    int32_t c1 = node_named(g, "relu1"), dw = node_named(g, "bn2"), c3 = node_named(g, "conv3");
    int32_t gap = node_named(g, "gap"), sm = node_named(g, "dense");
    if (c1 < 0 || dw < 0 || c3 < 0 || gap < 0 || sm < 0)
        goto out;
    const ims__node *n1 = &g->nodes[c1], *n2 = &g->nodes[dw], *n3 = &g->nodes[c3];
    CHECK_EQ(n1->op, IMS_OP_CONV2D);
    CHECK(n1->pad_t == 0 && n1->pad_b == 1 && n1->pad_l == 0 && n1->pad_r == 1); /* zp folded */
    CHECK(n1->sh == 2 && n1->h == 3 && n1->w == 3 && n1->c == 4);
    CHECK(n1->act == IMS_ACT_RELU && n1->act_max == 6);
    CHECK(ims__node_inputs(g, n1)[0] == 0);
    CHECK_EQ(n2->op, IMS_OP_DWCONV2D);
    CHECK(n2->pad_t == 1 && n2->pad_b == 1 && n2->pad_l == 1 && n2->pad_r == 1);
    CHECK(n2->mult == 2 && n2->c == 8 && n2->act == IMS_ACT_NONE);
    CHECK_EQ(n3->op, IMS_OP_CONV2D); /* 'same', 6 -> 3 with stride 2: pads 0 then 1 */
    CHECK(n3->pad_t == 0 && n3->pad_b == 1 && n3->pad_l == 0 && n3->pad_r == 1);
    CHECK(n3->h == 3 && n3->act == IMS_ACT_RELU && n3->act_max == 0);
    CHECK_EQ(g->nodes[node_named(g, "cat")].c, 11);
    CHECK_EQ(g->nodes[gap].op, IMS_OP_GAP);
    CHECK_EQ(g->nodes[sm].op, IMS_OP_SOFTMAX);
    CHECK_EQ(g->output, sm);
    CHECK_EQ(g->feature, gap);
    CHECK_STR_EQ(ims_nn_default_tap(&m), "gap");
    CHECK_EQ(ims_nn_n_classes(&m), 2);
    CHECK_STR_EQ(ims_nn_class_name(&m, 1), "no");

    /* folded names: not tappable, the message names the node to tap */
    uint32_t idx;
    CHECK_RC(ims__graph_find_tap(g, "bn1", &idx, &err), IMS_ENOTFOUND);
    CHECK(strstr(err.msg, "tap 'relu1' instead") != NULL);
    CHECK_RC(ims__graph_find_tap(g, "zp", &idx, &err), IMS_ENOTFOUND);
    CHECK_RC(ims__graph_find_tap(g, "conv1", &idx, &err), IMS_ENOTFOUND);
    CHECK_RC(ims__graph_find_tap(g, "dw", &idx, &err), IMS_ENOTFOUND);
    CHECK(strstr(err.msg, "'bn2'") != NULL);
    CHECK_RC(ims__graph_find_tap(g, "drop", &idx, &err), IMS_OK); /* identity: tappable */
    CHECK_EQ(idx, gap);
    CHECK_RC(ims__graph_find_tap(g, "nope", &idx, &err), IMS_ENOTFOUND);

    /* BatchNorm folding against a direct computation */
    const float *k1 = wval(spec, ns, "conv1/kernel"), *ga = wval(spec, ns, "bn1/gamma"),
                *be = wval(spec, ns, "bn1/beta"), *mu = wval(spec, ns, "bn1/moving_mean"),
                *va = wval(spec, ns, "bn1/moving_variance");
    CHECK(va[0] == 0.0f); /* a variance of exactly 0 is kept (eps makes it harmless) */
    double worst = 0;
    for (int r = 0; r < 27; r++)
        for (int c = 0; c < 4; c++) {
            double want = k1[r * 4 + c] * ga[c] / sqrt(va[c] + 1e-3);
            worst = fmax(worst, fabs(g->weights[n1->weight + r * 4 + c] - want) /
                                    fmax(fabs(want), 1e-3));
        }
    for (int c = 0; c < 4; c++) {
        double want = be[c] - mu[c] * ga[c] / sqrt(va[c] + 1e-3);
        worst = fmax(worst, fabs(g->weights[n1->bias + c] - want) / fmax(fabs(want), 1e-3));
    }
    CHECK_MSG(worst < 1e-6, "conv1+bn1 folding: worst relative error %g", worst);
    const float *kd = wval(spec, ns, "dw/depthwise_kernel"), *bd = wval(spec, ns, "dw/bias"),
                *be2 = wval(spec, ns, "bn2/beta"), *mu2 = wval(spec, ns, "bn2/moving_mean"),
                *va2 = wval(spec, ns, "bn2/moving_variance");
    worst = 0;
    for (int r = 0; r < 9; r++)
        for (int c = 0; c < 8; c++) {
            double want = kd[r * 8 + c] / sqrt(va2[c] + 0.01); /* scale=false: no gamma */
            worst = fmax(worst, fabs(g->weights[n2->weight + r * 8 + c] - want) /
                                    fmax(fabs(want), 1e-3));
        }
    for (int c = 0; c < 8; c++) {
        double want = (bd[c] - mu2[c]) / sqrt(va2[c] + 0.01) + be2[c];
        worst = fmax(worst, fabs(g->weights[n2->bias + c] - want) / fmax(fabs(want), 1e-3));
    }
    CHECK_MSG(worst < 1e-6, "dw+bn2 folding: worst relative error %g", worst);

    /* run it against the unfolded reference */
    const char *taps[] = {"drop", "relu1", "bn2"};
    ims_nn_session_opts so = {.taps = taps, .n_taps = 3, .want_probs = 1, .max_batch = 1,
                              .n_threads = 1};
    ims_nn_session *s = NULL;
    rc = ims_nn_session_new(&m, &so, &s, &err);
    CHECK_MSG(rc == IMS_OK, "session: %s", err.msg);
    if (rc)
        goto out;
    CHECK_EQ(ims_nn_session_dim(s), 11 + 4 + 8);
    float input[6 * 6 * 3], feat[23], probs[2];
    unsigned long long seed = 5;
    tensor x = tnew(6, 6, 3);
    for (int i = 0; i < 108; i++)
        x.v[i] = input[i] = (check_rand_f(&seed) + 1) / 2;
    rc = ims_nn_session_run(s, input, 1, feat, probs, &err);
    CHECK_MSG(rc == IMS_OK, "run: %s", err.msg);
    tensor x2 = tnew(6, 6, 3);
    memcpy(x2.v, x.v, 108 * sizeof(double));
    tensor a = ref_conv(x, k1, NULL, 3, 3, 4, 2, 0, 1, 0, 1, 0);
    ref_bn(a, ga, be, mu, va, 1e-3);
    ref_relu(a, 6);
    double want_relu1[4], want_bn2[8], want_gap[11], want_p[2];
    ref_gap(a, want_relu1);
    tensor b = ref_conv(a, kd, bd, 3, 3, 8, 1, 1, 1, 1, 1, 1);
    ref_bn(b, NULL, be2, mu2, va2, 0.01);
    ref_gap(b, want_bn2);
    tensor c = ref_conv(x2, wval(spec, ns, "conv3/kernel"), wval(spec, ns, "conv3/bias"), 3, 3,
                        3, 2, 0, 1, 0, 1, 0);
    ref_relu(c, 0);
    ref_gap(b, want_gap);
    ref_gap(c, want_gap + 8);
    ref_dense_softmax(want_gap, 11, wval(spec, ns, "dense/kernel"), wval(spec, ns, "dense/bias"),
                      2, 0, want_p);
    CHECK_MSG(cosine(feat, want_gap, 11) > 0.99999, "gap cosine %f", cosine(feat, want_gap, 11));
    CHECK_MSG(cosine(feat + 11, want_relu1, 4) > 0.99999, "relu1 cosine");
    CHECK_MSG(cosine(feat + 15, want_bn2, 8) > 0.99999, "bn2 cosine");
    for (int k = 0; k < 11; k++)
        CHECK_NEAR(feat[k], want_gap[k], 1e-4);
    CHECK_NEAR(probs[0], want_p[0], 1e-5);
    CHECK_NEAR(probs[1], want_p[1], 1e-5);
    free(b.v);
    free(c.v);
    ims_nn_session_free(s);
out:
    ims__graph_release(&m.g);
    for (int i = 0; i < ns; i++)
        free(spec[i].value);
}

/* ---- 2. a graph-model with float32 / uint16 / float16 weights -------------- */

#define GN(name, op, inputs, attr)                                                             \
    "{\"name\":\"" name "\",\"op\":\"" op "\",\"input\":[" inputs "],\"attr\":{" attr "}}"
#define CONST(name) GN(name, "Const", "", "\"dtype\":{\"type\":\"DT_FLOAT\"}")
#define NHWC "\"data_format\":{\"s\":\"TkhXQw==\"}"

static const char *GRAPH_TOPO =
    "{\"node\":["
    GN("x", "Placeholder", "", "\"shape\":{\"shape\":{\"dim\":[{\"size\":\"-1\"},{\"size\":"
       "\"5\"},{\"size\":\"5\"},{\"size\":\"3\"}]}},\"dtype\":{\"type\":\"DT_FLOAT\"}") ","
    CONST("mul/y") "," GN("mul", "Mul", "\"mul/y\",\"x\"", "") ","
    CONST("sub/y") "," GN("sub", "Sub", "\"mul\",\"sub/y\"", "") ","
    CONST("conv/w") "," CONST("conv/b") ","
    GN("conv", "_FusedConv2D", "\"sub\",\"conv/w\",\"conv/b\"",
       "\"strides\":{\"list\":{\"i\":[\"1\",\"1\",\"1\",\"1\"]}},"
       "\"padding\":{\"s\":\"RVhQTElDSVQ=\"},"
       "\"explicit_paddings\":{\"list\":{\"i\":[\"0\",\"0\",\"1\",\"0\",\"0\",\"1\",\"0\",\"0\"]}},"
       "\"dilations\":{\"list\":{\"i\":[\"1\",\"1\",\"1\",\"1\"]}}," NHWC ","
       "\"num_args\":{\"i\":\"1\"},"
       "\"fused_ops\":{\"list\":{\"s\":[\"Qmlhc0FkZA==\",\"UmVsdTY=\"]}}") ","
    CONST("dw/w") "," CONST("dw/scale") "," CONST("dw/offset") "," CONST("dw/mean") ","
    CONST("dw/var") ","
    GN("dw", "FusedDepthwiseConv2dNative", "\"conv\",\"dw/w\",\"dw/scale\",\"dw/offset\","
       "\"dw/mean\",\"dw/var\",\"^x\"",
       "\"strides\":{\"list\":{\"i\":[\"1\",\"2\",\"2\",\"1\"]}},"
       "\"padding\":{\"s\":\"U0FNRQ==\"}," NHWC ",\"epsilon\":{\"f\":0.001},"
       "\"fused_ops\":{\"list\":{\"s\":[\"RnVzZWRCYXRjaE5vcm0=\",\"UmVsdQ==\"]}}") ","
    GN("pool", "AvgPool", "\"dw\"", "\"ksize\":{\"list\":{\"i\":[\"1\",\"3\",\"3\",\"1\"]}},"
       "\"strides\":{\"list\":{\"i\":[\"1\",\"1\",\"1\",\"1\"]}},"
       "\"padding\":{\"s\":\"VkFMSUQ=\"}," NHWC) ","
    GN("sq", "Squeeze", "\"pool:0\"", "\"squeeze_dims\":{\"list\":{\"i\":[\"1\",\"2\"]}}") ","
    CONST("fc/w") "," CONST("fc/b") ","
    GN("fc", "_FusedMatMul", "\"sq\",\"fc/w\",\"fc/b\"",
       "\"transpose_a\":{\"b\":false},\"transpose_b\":{\"b\":true},"
       "\"fused_ops\":{\"list\":{\"s\":[\"Qmlhc0FkZA==\"]}}") ","
    GN("prob", "Softmax", "\"fc\"", "") "," GN("Identity", "Identity", "\"prob\"", "") ","
    GN("unused", "Relu", "\"x\"", "") "],\"versions\":{\"producer\":175}}";

static void test_graph_model(void)
{
    wspec spec[] = {
        {"fc/w", 2, {3, 4}, F32, 0, 0, 0, NULL, 0}, /* [out][in]: transpose_b */
        {"conv/w", 4, {2, 2, 3, 4}, U16, -0.7, 2e-5, 0, NULL, 0},
        {"conv/b", 1, {4}, F16, 0, 0, 0, NULL, 0},
        {"dw/w", 4, {3, 3, 4, 1}, F32, 0, 0, 0, NULL, 0},
        {"dw/scale", 1, {4}, F32, 0, 0, 0, NULL, 0},
        {"dw/offset", 1, {4}, F32, 0, 0, 0, NULL, 0},
        {"dw/mean", 1, {4}, F32, 0, 0, 0, NULL, 0},
        {"dw/var", 1, {4}, U8, 0.1, 0.01, 0, NULL, 0},
        {"mul/y", 0, {0}, F32, 0, 0, 0, NULL, 0},
        {"sub/y", 0, {0}, F32, 0, 0, 0, NULL, 0},
        {"fc/b", 1, {3}, F32, 0, 0, 0, NULL, 0},
    };
    int ns = (int)(sizeof spec / sizeof spec[0]);
    write_model("graph",
                "\"format\":\"graph-model\",\"generatedBy\":\"test\",\"userDefinedMetadata\":{"
                "\"signature\":{\"outputs\":{\"Identity:0\":{\"name\":\"Identity:0\"}}}},",
                GRAPH_TOPO, spec, ns);
    char path[600];
    snprintf(path, sizeof path, "%s/graph/model.json", tmpdir);
    ims_nn_import_opts o = {.name = "g"};
    ims_nn_model m = {0};
    ims_error err = {0};
    int rc = ims__tfjs_import(path, &o, &m.g, &err);
    CHECK_MSG(rc == IMS_OK, "import: %s", err.msg);
    if (rc)
        goto out;
    ims__graph *g = &m.g;
    CHECK_STR_EQ(ims_nn_name(&m), "g");
    CHECK_EQ(g->n_nodes, 9); /* x mul sub conv dw pool sq fc prob ("unused" not needed) */
    CHECK_EQ(ims__graph_find(g, "unused"), -1);
    int32_t mul = node_named(g, "mul"), sub = node_named(g, "sub"), conv = node_named(g, "conv");
    int32_t dw = node_named(g, "dw"), pool = node_named(g, "pool"), sq = node_named(g, "sq");
    int32_t fc = node_named(g, "fc"), prob = node_named(g, "prob");
    if (mul < 0 || sub < 0 || conv < 0 || dw < 0 || pool < 0 || sq < 0 || fc < 0 || prob < 0)
        goto out;
    const float my = wval(spec, ns, "mul/y")[0], sy = wval(spec, ns, "sub/y")[0];
    CHECK(g->nodes[mul].op == IMS_OP_AFFINE && g->nodes[mul].n_weight == 1 &&
          g->nodes[mul].bias < 0 && g->weights[g->nodes[mul].weight] == my);
    CHECK(g->nodes[sub].op == IMS_OP_AFFINE && g->weights[g->nodes[sub].weight] == 1.0f &&
          g->nodes[sub].n_bias == 1 && g->weights[g->nodes[sub].bias] == -sy);
    const ims__node *nc = &g->nodes[conv], *nd = &g->nodes[dw];
    CHECK(nc->pad_t == 1 && nc->pad_b == 0 && nc->pad_l == 0 && nc->pad_r == 1); /* EXPLICIT */
    CHECK(nc->h == 5 && nc->w == 5 && nc->c == 4 && nc->act == IMS_ACT_RELU && nc->act_max == 6);
    CHECK(nd->pad_t == 1 && nd->pad_b == 1 && nd->sh == 2 && nd->h == 3 && nd->c == 4);
    CHECK(nd->act == IMS_ACT_RELU && nd->act_max == 0);
    CHECK_EQ(g->nodes[pool].op, IMS_OP_GAP); /* a 3x3 VALID window over a 3x3 input */
    CHECK_EQ(g->nodes[sq].op, IMS_OP_RESHAPE);
    CHECK(g->nodes[fc].op == IMS_OP_DENSE && g->nodes[fc].c == 3);
    const float *fw = wval(spec, ns, "fc/w");
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++)
            CHECK(g->weights[g->nodes[fc].weight + i * 3 + k] == fw[k * 4 + i]); /* transposed */
    CHECK_EQ(g->output, prob);
    CHECK_EQ(g->feature, sq);
    uint32_t idx;
    CHECK_RC(ims__graph_find_tap(g, "Identity", &idx, &err), IMS_OK);
    CHECK_EQ(idx, prob);
    CHECK_EQ(ims_nn_n_classes(&m), 3);
    CHECK_STR_EQ(ims_nn_class_name(&m, 2), "class2");

    /* run against the reference */
    const char *taps[] = {"sq", "conv"};
    ims_nn_session_opts so = {.taps = taps, .n_taps = 2, .want_probs = 1, .max_batch = 1,
                              .n_threads = 1};
    ims_nn_session *s = NULL;
    rc = ims_nn_session_new(&m, &so, &s, &err);
    CHECK_MSG(rc == IMS_OK, "session: %s", err.msg);
    if (rc)
        goto out;
    float input[75], feat[8], probs[3];
    unsigned long long seed = 7;
    tensor x = tnew(5, 5, 3);
    for (int i = 0; i < 75; i++) {
        input[i] = (check_rand_f(&seed) + 1) / 2;
        x.v[i] = (double)input[i] * my - sy;
    }
    rc = ims_nn_session_run(s, input, 1, feat, probs, &err);
    CHECK_MSG(rc == IMS_OK, "run: %s", err.msg);
    tensor a = ref_conv(x, wval(spec, ns, "conv/w"), wval(spec, ns, "conv/b"), 2, 2, 4, 1, 1, 0,
                        0, 1, 0);
    ref_relu(a, 6);
    double want_conv[4], want_sq[4], want_p[3];
    ref_gap(a, want_conv);
    tensor b = ref_conv(a, wval(spec, ns, "dw/w"), NULL, 3, 3, 4, 2, 1, 1, 1, 1, 1);
    ref_bn(b, wval(spec, ns, "dw/scale"), wval(spec, ns, "dw/offset"), wval(spec, ns, "dw/mean"),
           wval(spec, ns, "dw/var"), 0.001);
    ref_relu(b, 0);
    ref_gap(b, want_sq);
    ref_dense_softmax(want_sq, 4, fw, wval(spec, ns, "fc/b"), 3, 1, want_p);
    for (int k = 0; k < 4; k++) {
        CHECK_NEAR(feat[k], want_sq[k], 1e-4);
        CHECK_NEAR(feat[4 + k], want_conv[k], 1e-4);
    }
    for (int k = 0; k < 3; k++)
        CHECK_NEAR(probs[k], want_p[k], 1e-5);
    free(b.v);
    ims_nn_session_free(s);
out:
    ims__graph_release(&m.g);
    for (int i = 0; i < ns; i++)
        free(spec[i].value);
}

/* ---- 3. errors name the layer / node and the option ------------------------ */

/* Import a one-layer-after-input model whose second layer is `layer`. */
static int import_layer(const char *sub, const char *layer, wspec *spec, int ns, ims_error *err)
{
    char topo[4096], path[600];
    snprintf(topo, sizeof topo,
             "{\"class_name\":\"Model\",\"config\":{\"name\":\"e\",\"layers\":["
             "{\"name\":\"in\",\"class_name\":\"InputLayer\",\"config\":{\"batch_input_shape\":"
             "[null,4,4,3]},\"inbound_nodes\":[]},%s],"
             "\"input_layers\":[[\"in\",0,0]],\"output_layers\":[[\"L\",0,0]]}}",
             layer);
    write_model(sub, "", topo, spec, ns);
    snprintf(path, sizeof path, "%s/%s/model.json", tmpdir, sub);
    ims__graph g;
    int rc = ims__tfjs_import(path, NULL, &g, err);
    if (rc == IMS_OK)
        ims__graph_release(&g);
    return rc;
}

#define LAYER(cls, cfg) \
    "{\"name\":\"L\",\"class_name\":\"" cls "\",\"config\":{" cfg "},\"inbound_nodes\":[[[\"in\",0,0,{}]]]}"

static void expect_error(const char *what, int rc, const ims_error *err, int want_rc,
                         const char *want1, const char *want2)
{
    CHECK_MSG(rc == want_rc, "%s: rc %s, want %s (%s)", what, ims_errname(rc),
              ims_errname(want_rc), err->msg);
    CHECK_MSG(strstr(err->msg, want1) && (!want2 || strstr(err->msg, want2)),
              "%s: message '%s' lacks '%s' / '%s'", what, err->msg, want1, want2 ? want2 : "");
}

static char warned[512];
static void log_capture(int level, const char *msg, void *ud)
{
    (void)ud;
    if (level == IMS_LOG_WARN)
        snprintf(warned, sizeof warned, "%s", msg);
}

static void test_errors(void)
{
    ims_error err = {0};
    int rc;
    rc = import_layer("e1", LAYER("LeakyReLU", "\"alpha\":0.3"), NULL, 0, &err);
    expect_error("LeakyReLU", rc, &err, IMS_EUNSUPPORTED, "layer 'L' (LeakyReLU)",
                 "layer type 'LeakyReLU' is not supported");
    rc = import_layer("e2", LAYER("ReLU", "\"negative_slope\":0.1"), NULL, 0, &err);
    expect_error("ReLU slope", rc, &err, IMS_EUNSUPPORTED, "layer 'L' (ReLU)",
                 "option 'negative_slope'");
    rc = import_layer("e3", LAYER("ReLU", "\"threshold\":0.5"), NULL, 0, &err);
    expect_error("ReLU threshold", rc, &err, IMS_EUNSUPPORTED, "'L'", "option 'threshold'");
    rc = import_layer("e4", LAYER("Activation", "\"activation\":\"elu\""), NULL, 0, &err);
    expect_error("elu", rc, &err, IMS_EUNSUPPORTED, "'L'", "activation 'elu'");
    wspec k[] = {{"L/kernel", 4, {3, 3, 3, 2}, F32, 0, 0, 0, NULL, 0}};
    rc = import_layer("e5", LAYER("Conv2D", "\"filters\":2,\"kernel_size\":3,\"padding\":"
                                            "\"valid\",\"data_format\":\"channels_first\""),
                      k, 1, &err);
    free(k[0].value);
    expect_error("channels_first", rc, &err, IMS_EUNSUPPORTED, "layer 'L' (Conv2D)",
                 "data_format 'channels_first'");
    rc = import_layer("e6", LAYER("Conv2D", "\"filters\":2,\"kernel_size\":3,\"padding\":"
                                            "\"causal\""), k, 1, &err);
    free(k[0].value);
    expect_error("causal", rc, &err, IMS_EUNSUPPORTED, "'L'", "padding 'causal'");
    rc = import_layer("e7", LAYER("Conv2D", "\"filters\":2,\"kernel_size\":3"), NULL, 0, &err);
    expect_error("missing weight", rc, &err, IMS_ECORRUPT, "'L'", "weight 'L/kernel' is missing");
    wspec k8[] = {{"L/kernel", 4, {3, 3, 3, 8}, F32, 0, 0, 0, NULL, 0}};
    rc = import_layer("e8", LAYER("Conv2D", "\"filters\":2,\"kernel_size\":3"), k8, 1, &err);
    free(k8[0].value);
    expect_error("wrong weight size", rc, &err, IMS_ECORRUPT, "'L'",
                 "shape [3,3,3,8], expected [3,3,3,2]");
    wspec kt[] = {{"L/kernel", 4, {2, 3, 3, 3}, F32, 0, 0, 0, NULL, 0}};
    rc = import_layer("e8b", LAYER("Conv2D", "\"filters\":2,\"kernel_size\":3"), kt, 1, &err);
    free(kt[0].value);
    expect_error("wrong weight layout", rc, &err, IMS_ECORRUPT, "'L'", "expected [3,3,3,2]");
    rc = import_layer("e9", LAYER("Concatenate", "\"axis\":1"), NULL, 0, &err);
    expect_error("one input concat", rc, &err, IMS_EUNSUPPORTED, "'L'", "inputs");
    rc = import_layer("e10", LAYER("Dense", "\"units\":2"), NULL, 0, &err);
    expect_error("dense on spatial", rc, &err, IMS_EUNSUPPORTED, "'L'", "spatial input");
    rc = import_layer("e11", LAYER("BatchNormalization", "\"axis\":1"), NULL, 0, &err);
    expect_error("bn axis", rc, &err, IMS_EUNSUPPORTED, "'L'", "option 'axis'");

    /* a manifest weight no layer uses is worth a warning (an ignored option?) */
    wspec extra[] = {{"L/kernel", 4, {3, 3, 3, 2}, F32, 0, 0, 0, NULL, 0},
                     {"L/mystery", 1, {2}, F32, 0, 0, 0, NULL, 0}};
    warned[0] = '\0';
    ims_log_set_handler(log_capture, NULL);
    rc = import_layer("e8c", LAYER("Conv2D", "\"filters\":2,\"kernel_size\":3"), extra, 2, &err);
    ims_log_set_handler(NULL, NULL);
    free(extra[0].value);
    free(extra[1].value);
    CHECK_RC(rc, IMS_OK);
    CHECK_MSG(strstr(warned, "1 weight(s)") && strstr(warned, "'L/mystery'"), "warning: '%s'",
              warned);

    /* shards shorter than the manifest says */
    char path[600];
    wspec s1[] = {{"L/kernel", 4, {3, 3, 3, 2}, F32, 0, 0, 0, NULL, 0}};
    rc = import_layer("e12", LAYER("Conv2D", "\"filters\":2,\"kernel_size\":3"), s1, 1, &err);
    CHECK_RC(rc, IMS_OK);
    free(s1[0].value);
    snprintf(path, sizeof path, "%s/e12/group1-shard1of1", tmpdir);
    CHECK(truncate(path, 100) == 0);
    snprintf(path, sizeof path, "%s/e12/model.json", tmpdir);
    ims__graph g;
    rc = ims__tfjs_import(path, NULL, &g, &err);
    expect_error("short shard", rc, &err, IMS_ECORRUPT, "L/kernel", "shards end at byte 100");
    snprintf(path, sizeof path, "%s/nonexistent/model.json", tmpdir);
    rc = ims__tfjs_import(path, NULL, &g, &err);
    CHECK_RC(rc, IMS_EIO);

    /* graph-model: an unsupported op and an unsupported fused op */
    const char *topo =
        "{\"node\":[" GN("x", "Placeholder", "", "\"shape\":{\"shape\":{\"dim\":[{\"size\":"
                                                "\"-1\"},{\"size\":\"4\"},{\"size\":\"4\"},"
                                                "{\"size\":\"3\"}]}}") ","
        GN("e", "Elu", "\"x\"", "") "]}";
    write_model("e13", "\"format\":\"graph-model\",", topo, NULL, 0);
    snprintf(path, sizeof path, "%s/e13/model.json", tmpdir);
    rc = ims__tfjs_import(path, NULL, &g, &err);
    expect_error("Elu op", rc, &err, IMS_EUNSUPPORTED, "node 'e' (Elu)", "op 'Elu' is not");
    wspec w[] = {{"w", 4, {1, 1, 3, 2}, F32, 0, 0, 0, NULL, 0},
                 {"b", 1, {2}, F32, 0, 0, 0, NULL, 0}};
    topo = "{\"node\":[" GN("x", "Placeholder", "", "\"shape\":{\"shape\":{\"dim\":[{\"size\":"
                                                   "\"-1\"},{\"size\":\"4\"},{\"size\":\"4\"},"
                                                   "{\"size\":\"3\"}]}}") ","
           CONST("w") "," CONST("b") ","
           GN("c", "_FusedConv2D", "\"x\",\"w\",\"b\"",
              "\"padding\":{\"s\":\"VkFMSUQ=\"},\"fused_ops\":{\"list\":{\"s\":["
              "\"Qmlhc0FkZA==\",\"TGVha3lSZWx1\"]}}") "]}";
    write_model("e14", "\"format\":\"graph-model\",", topo, w, 2);
    free(w[0].value);
    free(w[1].value);
    snprintf(path, sizeof path, "%s/e14/model.json", tmpdir);
    rc = ims__tfjs_import(path, NULL, &g, &err);
    expect_error("LeakyRelu fused", rc, &err, IMS_EUNSUPPORTED, "node 'c' (_FusedConv2D)",
                 "fused_ops: 'LeakyRelu'");
}

/* Random edits of valid model.json files (digits changed, characters
 * dropped or duplicated): every import must succeed or fail cleanly.
 * IMS_MUTATIONS=N runs N per model instead of 300. */
static void test_mutations(void)
{
    static const char *subs[] = {"layers", "graph"};
    unsigned long long seed = 2024;
    int n_ok = 0, n_err = 0, n_it = 300;
    const char *env = getenv("IMS_MUTATIONS"); /* more for a longer hunt */
    if (env && atoi(env) > 0)
        n_it = atoi(env);
    for (int s = 0; s < 2; s++) {
        char path[600], mpath[600];
        snprintf(path, sizeof path, "%s/%s/model.json", tmpdir, subs[s]);
        FILE *f = fopen(path, "rb");
        if (!f) {
            CHECK_MSG(0, "%s missing", path);
            continue;
        }
        char *orig = malloc(1 << 16);
        size_t len = fread(orig, 1, (1 << 16) - 1, f);
        fclose(f);
        orig[len] = '\0';
        char *mut = malloc((1 << 16) + 16);
        snprintf(mpath, sizeof mpath, "%s/%s/mutant.json", tmpdir, subs[s]);
        for (int it = 0; it < n_it; it++) {
            memcpy(mut, orig, len + 1);
            size_t n = len;
            for (int e = 0; e < 1 + it % 3; e++) {
                size_t i = (size_t)(check_rand_u64(&seed) % n);
                int kind = (int)(check_rand_u64(&seed) % 4);
                if (kind == 0 && mut[i] >= '0' && mut[i] <= '9')
                    mut[i] = (char)('0' + check_rand_u64(&seed) % 10);
                else if (kind == 1)
                    mut[i] = "-019e\\"[check_rand_u64(&seed) % 6];
                else if (kind == 2) { /* drop */
                    memmove(mut + i, mut + i + 1, n - i);
                    n--;
                } else { /* duplicate */
                    memmove(mut + i + 1, mut + i, n - i + 1);
                    n++;
                }
            }
            FILE *o = fopen(mpath, "wb");
            if (!o || fwrite(mut, 1, n, o) != n)
                abort();
            fclose(o);
            ims__graph g;
            ims_error err = {0};
            int rc = ims__tfjs_import(mpath, NULL, &g, &err);
            if (rc == IMS_OK) {
                CHECK(ims__graph_validate(&g, &err) == IMS_OK);
                ims__graph_release(&g);
                n_ok++;
            } else {
                CHECK_MSG(err.msg[0] && rc != IMS_ENOMEM, "mutant %d: rc %s without a message",
                          it, ims_errname(rc));
                n_err++;
            }
        }
        free(orig);
        free(mut);
    }
    CHECK(n_err > 0);
    printf("mutations: %d imported, %d rejected\n", n_ok, n_err);
}

static void test_same_padding(void)
{
    int32_t a, b;
    ims__tf_same_pad(224, 3, 2, 1, &a, &b); /* 112 out: total 1 -> 0, 1 */
    CHECK(a == 0 && b == 1);
    ims__tf_same_pad(225, 3, 2, 1, &a, &b); /* 113 out: total 2 -> 1, 1 */
    CHECK(a == 1 && b == 1);
    ims__tf_same_pad(35, 3, 1, 1, &a, &b);
    CHECK(a == 1 && b == 1);
    ims__tf_same_pad(17, 7, 1, 1, &a, &b);
    CHECK(a == 3 && b == 3);
    ims__tf_same_pad(8, 1, 1, 1, &a, &b);
    CHECK(a == 0 && b == 0);
    ims__tf_same_pad(10, 3, 1, 2, &a, &b); /* dilated: span 5 -> total 4 */
    CHECK(a == 2 && b == 2);
    ims__tf_same_pad(7, 2, 2, 1, &a, &b); /* 4 out: total 1 */
    CHECK(a == 0 && b == 1);
    ims__tf_same_pad(4, 7, 3, 1, &a, &b); /* 2 out: total 6 */
    CHECK(a == 3 && b == 3);
}

int main(void)
{
    ims_init();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ims_test_import.XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    test_same_padding();
    test_layers_model();
    test_graph_model();
    test_errors();
    test_mutations();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd))
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_report();
}
