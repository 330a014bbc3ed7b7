/* SPDX-License-Identifier: MIT */
/*
 * import_tfjs_graph.c — TF.js graph-models (a TF GraphDef as JSON) to the
 * graph IR.
 *
 * Only the nodes the output depends on are translated (the output is the
 * signature's output, else the one non-Const node nobody reads), each once
 * its inputs are. Const nodes are weights looked up by node name in the
 * manifest. Attributes are JSON: {"list":{"i":["1","2","2","1"]}},
 * {"s":"<base64>"}, {"f":0.001}, {"b":true}, {"i":"1"}.
 *
 * Supported ops: Placeholder, Const, Identity (a tappable alias),
 * [_Fused]Conv2D and [Fused]DepthwiseConv2dNative (fused_ops BiasAdd or
 * FusedBatchNorm, then Relu / Relu6 / Sigmoid / Tanh; padding SAME, VALID or
 * EXPLICIT; NHWC), [_Fused]MatMul (transpose_b; not transpose_a), Add /
 * AddV2 / BiasAdd / Sub / Mul (two tensors: Add only; with a scalar or
 * per-channel Const: AFFINE), Relu, Relu6, Sigmoid, Tanh (fused into the
 * producer when it alone reads it), AvgPool, MaxPool, Mean over H,W, Pad,
 * ConcatV2 (channels), Squeeze, Softmax.
 */
#include <stdio.h>
#include <string.h>

#include "import_tfjs_int.h"

typedef struct gnode {
    const char *name, *op;
    json_t *attr;
    json_t *inputs;      /* JSON array of input names (may hold "^ctl", "x:0") */
    int n_consumers;
    int needed;          /* the output depends on it */
    int done;
    int is_const;
    ims__tfjs_weight *w; /* Const */
    uint32_t node;       /* translated: its node */
    int rank;            /* 4 spatial, 2 flat */
    int exclusive;       /* node read only through this value chain */
} gnode;

typedef struct gctx {
    ims__graph *g;
    ims__tfjs_weights *ws;
    ims_error *err;
    gnode *nodes;
    size_t n;
} gctx;

#define GFAIL(code, N, ...) node_error(c, code, N, __VA_ARGS__)

static int node_error(gctx *c, int code, const gnode *N, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int node_error(gctx *c, int code, const gnode *N, const char *fmt, ...)
{
    char msg[IMS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ims_error_set(c->err, code, "node '%s' (%s): %s", N->name, N->op, msg);
}

static gnode *find_node(gctx *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strncmp(c->nodes[i].name, name, len) && c->nodes[i].name[len] == '\0')
            return &c->nodes[i];
    return NULL;
}

/* Data input k of N (control inputs "^x" are skipped); NULL with err set. */
static gnode *data_input(gctx *c, const gnode *N, size_t k, int *rc)
{
    size_t seen = 0;
    for (size_t i = 0; i < json_array_size(N->inputs); i++) {
        const char *s = json_string_value(json_array_get(N->inputs, i));
        if (!s) {
            *rc = GFAIL(IMS_ECORRUPT, N, "input %zu is not a string", i);
            return NULL;
        }
        if (s[0] == '^')
            continue;
        if (seen++ != k)
            continue;
        size_t len = strlen(s);
        const char *colon = strrchr(s, ':');
        if (colon) {
            if (strcmp(colon, ":0")) {
                *rc = GFAIL(IMS_EUNSUPPORTED, N, "input '%s' is not output 0 of its node", s);
                return NULL;
            }
            len = (size_t)(colon - s);
        }
        gnode *x = find_node(c, s, len);
        if (!x)
            *rc = GFAIL(IMS_ECORRUPT, N, "input '%s' does not exist", s);
        return x;
    }
    *rc = GFAIL(IMS_ECORRUPT, N, "has no input %zu", k);
    return NULL;
}

static size_t n_data_inputs(const gnode *N)
{
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(N->inputs); i++) {
        const char *s = json_string_value(json_array_get(N->inputs, i));
        if (s && s[0] != '^')
            n++;
    }
    return n;
}

/* ---- attributes -------------------------------------------------------- */

static int b64val(int ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

/* Decode base64 s into out (NUL-terminated, truncated to cap-1 bytes). */
static void b64_decode(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        int v = b64val((unsigned char)*s);
        if (v < 0)
            continue;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 < cap)
                out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[n] = '\0';
}

static json_t *attr(const gnode *N, const char *key) { return json_object_get(N->attr, key); }

/* String attribute (decoded), "" if absent. */
static void attr_s(const gnode *N, const char *key, char *out, size_t cap)
{
    const char *s = json_string_value(json_object_get(attr(N, key), "s"));
    if (s)
        b64_decode(s, out, cap);
    else
        out[0] = '\0';
}

static long long json_int_or_string(json_t *v, int *ok)
{
    if (json_is_integer(v))
        return json_integer_value(v);
    const char *s = json_string_value(v);
    char *end;
    if (s) {
        long long r = strtoll(s, &end, 10);
        if (end != s && !*end)
            return r;
    }
    *ok = 0;
    return 0;
}

/* Integer list attribute: count (-1 if malformed); values into out[max]. */
static int attr_list_i(const gnode *N, const char *key, long long *out, int max)
{
    json_t *l = json_object_get(json_object_get(attr(N, key), "list"), "i");
    if (!l)
        return 0;
    if (!json_is_array(l) || (int)json_array_size(l) > max)
        return -1;
    int ok = 1;
    for (size_t i = 0; i < json_array_size(l); i++)
        out[i] = json_int_or_string(json_array_get(l, i), &ok);
    return ok ? (int)json_array_size(l) : -1;
}

static int attr_b(const gnode *N, const char *key)
{
    return json_is_true(json_object_get(attr(N, key), "b"));
}

static double attr_f(const gnode *N, const char *key, double def)
{
    json_t *f = json_object_get(attr(N, key), "f");
    return json_is_number(f) ? json_number_value(f) : def;
}

static int add_node(gctx *c, gnode *N, const ims__node *proto, const uint32_t *in,
                    uint32_t n_in, int rank)
{
    uint32_t idx;
    int rc = ims__graph_add_node(c->g, proto, N->name, in, n_in, &idx, c->err);
    if (rc && rc != IMS_ENOMEM) {
        char m[IMS_ERROR_MSG_MAX];
        snprintf(m, sizeof m, "%s", c->err ? c->err->msg : "");
        return GFAIL(IMS_EUNSUPPORTED, N, "%s", m);
    }
    if (rc)
        return rc;
    N->node = idx;
    N->rank = rank;
    N->exclusive = 1;
    return IMS_OK;
}

static int check_nhwc(gctx *c, const gnode *N)
{
    char df[32];
    attr_s(N, "data_format", df, sizeof df);
    if (df[0] && strcmp(df, "NHWC"))
        return GFAIL(IMS_EUNSUPPORTED, N, "data_format '%s' is not supported (NHWC only)", df);
    return IMS_OK;
}

/* A data (non-Const, translated) input. */
static gnode *tensor_input(gctx *c, const gnode *N, size_t k, int *rc)
{
    gnode *x = data_input(c, N, k, rc);
    if (x && x->is_const) {
        *rc = GFAIL(IMS_EUNSUPPORTED, N, "input %zu is a constant where a tensor is expected", k);
        return NULL;
    }
    return x;
}

static ims__tfjs_weight *const_input(gctx *c, const gnode *N, size_t k, int *rc)
{
    gnode *x = data_input(c, N, k, rc);
    if (!x)
        return NULL;
    if (!x->is_const) {
        *rc = GFAIL(IMS_EUNSUPPORTED, N, "input %zu must be a constant", k);
        return NULL;
    }
    x->w->used = 1;
    return x->w;
}

/* Strides / dilations / ksize [1, a, b, 1] into a, b. */
static int nhwc_pair(gctx *c, const gnode *N, const char *key, int32_t def, int32_t *a,
                     int32_t *b)
{
    long long v[4];
    int n = attr_list_i(N, key, v, 4);
    if (n == 0) {
        *a = *b = def;
        return IMS_OK;
    }
    if (n != 4 || v[0] != 1 || v[3] != 1 || v[1] < 1 || v[2] < 1 || v[1] > IMS_NN_MAX_DIM ||
        v[2] > IMS_NN_MAX_DIM)
        return GFAIL(IMS_EUNSUPPORTED, N, "option '%s' must be [1, h, w, 1]", key);
    *a = (int32_t)v[1], *b = (int32_t)v[2];
    return IMS_OK;
}

/* Resolve SAME / VALID / EXPLICIT padding of a windowed node on input x. */
static int resolve_padding(gctx *c, const gnode *N, const ims__node *x, ims__node *p)
{
    char pad[32];
    attr_s(N, "padding", pad, sizeof pad);
    if (!strcmp(pad, "VALID"))
        return IMS_OK;
    if (!strcmp(pad, "SAME")) {
        ims__tf_same_pad(x->h, p->kh, p->sh, p->dh, &p->pad_t, &p->pad_b);
        ims__tf_same_pad(x->w, p->kw, p->sw, p->dw, &p->pad_l, &p->pad_r);
        return IMS_OK;
    }
    if (!strcmp(pad, "EXPLICIT")) {
        long long e[8];
        if (attr_list_i(N, "explicit_paddings", e, 8) != 8 || e[0] || e[1] || e[6] || e[7])
            return GFAIL(IMS_EUNSUPPORTED, N, "option 'explicit_paddings' must pad H and W only");
        for (int k = 2; k < 6; k++)
            if (e[k] < 0 || e[k] > IMS_NN_MAX_DIM)
                return GFAIL(IMS_EUNSUPPORTED, N, "option 'explicit_paddings' out of range");
        p->pad_t = (int32_t)e[2], p->pad_b = (int32_t)e[3];
        p->pad_l = (int32_t)e[4], p->pad_r = (int32_t)e[5];
        return IMS_OK;
    }
    return GFAIL(IMS_EUNSUPPORTED, N, "padding '%s' is not supported", pad);
}

static int act_of(const char *op, uint32_t *act, float *act_max)
{
    *act_max = 0;
    if (!strcmp(op, "Relu"))
        *act = IMS_ACT_RELU;
    else if (!strcmp(op, "Relu6"))
        *act = IMS_ACT_RELU, *act_max = 6;
    else if (!strcmp(op, "Sigmoid"))
        *act = IMS_ACT_SIGMOID;
    else if (!strcmp(op, "Tanh"))
        *act = IMS_ACT_TANH;
    else
        return -1;
    return 0;
}

/* fused_ops of a _Fused* node: bias (or batch norm) args from input 2 on. */
static int apply_fused_ops(gctx *c, gnode *N, ims__node *p, int64_t cout)
{
    json_t *l = json_object_get(json_object_get(attr(N, "fused_ops"), "list"), "s");
    size_t n = json_is_array(l) ? json_array_size(l) : 0;
    int rc = IMS_OK;
    for (size_t i = 0; i < n; i++) {
        char op[64];
        const char *s = json_string_value(json_array_get(l, i));
        b64_decode(s ? s : "", op, sizeof op);
        if (i == 0 && !strcmp(op, "BiasAdd")) {
            ims__tfjs_weight *b = const_input(c, N, 2, &rc);
            if (!b)
                return rc;
            if (b->n != cout)
                return GFAIL(IMS_ECORRUPT, N, "bias has %lld values, expected %lld",
                             (long long)b->n, (long long)cout);
            if ((rc = ims__graph_add_weights(c->g, b->data, (uint64_t)cout, &p->bias, NULL)))
                return rc;
            p->n_bias = cout;
        } else if (i == 0 && !strcmp(op, "FusedBatchNorm")) {
            const float *bn[4];
            for (int k = 0; k < 4; k++) {
                ims__tfjs_weight *w = const_input(c, N, 2 + (size_t)k, &rc);
                if (!w)
                    return rc;
                if (w->n != cout)
                    return GFAIL(IMS_ECORRUPT, N, "batch-norm argument %d has %lld values", k,
                                 (long long)w->n);
                bn[k] = w->data;
            }
            /* the kernel is already in place: scale its output channels */
            float *scale, *shift;
            int64_t so, to;
            if ((rc = ims__graph_add_weights(c->g, NULL, (uint64_t)cout, &so, NULL)) ||
                (rc = ims__graph_add_weights(c->g, NULL, (uint64_t)cout, &to, NULL)))
                return rc;
            scale = c->g->weights + so;
            shift = c->g->weights + to;
            ims__batchnorm_affine(cout, bn[0], bn[1], bn[2], bn[3], attr_f(N, "epsilon", 1e-3),
                                  scale, shift);
            float *k = c->g->weights + p->weight;
            int64_t rows = p->n_weight / cout;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t o = 0; o < cout; o++)
                    k[r * cout + o] *= scale[o];
            p->bias = to;
            p->n_bias = cout;
        } else if (i > 0 && !act_of(op, &p->act, &p->act_max)) {
            if (i != n - 1)
                return GFAIL(IMS_EUNSUPPORTED, N, "fused_ops: activation '%s' is not last", op);
        } else {
            return GFAIL(IMS_EUNSUPPORTED, N, "fused_ops: '%s' is not supported", op);
        }
    }
    return IMS_OK;
}

static int do_placeholder(gctx *c, gnode *N)
{
    if (c->g->n_nodes)
        return GFAIL(IMS_EUNSUPPORTED, N, "models with several inputs are not supported");
    json_t *dl = json_object_get(json_object_get(attr(N, "shape"), "shape"), "dim");
    if (!json_is_array(dl) || json_array_size(dl) != 4)
        return GFAIL(IMS_EUNSUPPORTED, N, "input must be [batch, height, width, 3]");
    long long d[4];
    for (size_t k = 0; k < 4; k++) {
        int ok = 1;
        d[k] = json_int_or_string(json_object_get(json_array_get(dl, k), "size"), &ok);
        if (!ok)
            return GFAIL(IMS_ECORRUPT, N, "bad input shape");
    }
    if (d[1] < 1 || d[2] < 1 || d[1] > IMS_NN_MAX_DIM || d[2] > IMS_NN_MAX_DIM)
        return GFAIL(IMS_EUNSUPPORTED, N, "input height and width must be fixed (got %lld x %lld)",
                     d[1], d[2]);
    if (d[3] != 3)
        return GFAIL(IMS_EUNSUPPORTED, N, "input must have 3 channels (got %lld)", d[3]);
    c->g->pp.height = (int)d[1];
    c->g->pp.width = (int)d[2];
    ims__node p = ims__tfjs_proto(IMS_OP_INPUT);
    return add_node(c, N, &p, NULL, 0, 4);
}

static int do_conv(gctx *c, gnode *N, int depthwise, int fused)
{
    int rc = check_nhwc(c, N);
    if (rc)
        return rc;
    gnode *x = tensor_input(c, N, 0, &rc);
    ims__tfjs_weight *k = x ? const_input(c, N, 1, &rc) : NULL;
    if (!k)
        return rc;
    const ims__node *xn = &c->g->nodes[x->node];
    ims__node p = ims__tfjs_proto(depthwise ? IMS_OP_DWCONV2D : IMS_OP_CONV2D);
    if ((rc = nhwc_pair(c, N, "strides", 1, &p.sh, &p.sw)) ||
        (rc = nhwc_pair(c, N, "dilations", 1, &p.dh, &p.dw)))
        return rc;
    if (k->rank != 4 || k->shape[2] != xn->c || k->shape[0] < 1 || k->shape[1] < 1 ||
        k->shape[0] > IMS_NN_MAX_DIM || k->shape[1] > IMS_NN_MAX_DIM || k->shape[3] < 1)
        return GFAIL(IMS_EUNSUPPORTED, N, "filter shape does not match the input's %d channels",
                     xn->c);
    p.kh = (int32_t)k->shape[0], p.kw = (int32_t)k->shape[1];
    int64_t cout = depthwise ? k->shape[2] * k->shape[3] : k->shape[3];
    if (cout > IMS_NN_MAX_DIM * 64)
        return GFAIL(IMS_EUNSUPPORTED, N, "too many output channels");
    if (depthwise)
        p.mult = (int32_t)k->shape[3];
    else
        p.c = (int32_t)cout;
    if ((rc = resolve_padding(c, N, xn, &p)))
        return rc;
    if ((rc = ims__graph_add_weights(c->g, k->data, (uint64_t)k->n, &p.weight, NULL)))
        return rc;
    p.n_weight = k->n;
    if (fused && (rc = apply_fused_ops(c, N, &p, cout)))
        return rc;
    uint32_t in = x->node;
    return add_node(c, N, &p, &in, 1, 4);
}

static int do_matmul(gctx *c, gnode *N, int fused)
{
    int rc;
    if (attr_b(N, "transpose_a"))
        return GFAIL(IMS_EUNSUPPORTED, N, "option 'transpose_a' = true is not supported");
    gnode *x = tensor_input(c, N, 0, &rc);
    ims__tfjs_weight *k = x ? const_input(c, N, 1, &rc) : NULL;
    if (!k)
        return rc;
    const ims__node *xn = &c->g->nodes[x->node];
    if (xn->h != 1 || xn->w != 1)
        return GFAIL(IMS_EUNSUPPORTED, N, "input is not flat");
    int tb = attr_b(N, "transpose_b");
    if (k->rank != 2 || k->shape[tb ? 1 : 0] != xn->c)
        return GFAIL(IMS_EUNSUPPORTED, N, "weight shape does not match the input's %d values",
                     xn->c);
    int64_t in_n = xn->c, cout = k->shape[tb ? 0 : 1];
    if (cout < 1 || cout > IMS_NN_MAX_DIM * 64)
        return GFAIL(IMS_EUNSUPPORTED, N, "too many outputs");
    ims__node p = ims__tfjs_proto(IMS_OP_DENSE);
    p.c = (int32_t)cout;
    float *dst;
    if ((rc = ims__graph_add_weights(c->g, tb ? NULL : k->data, (uint64_t)k->n, &p.weight, &dst)))
        return rc;
    if (tb) /* [out][in] -> [in][out] */
        for (int64_t o = 0; o < cout; o++)
            for (int64_t i = 0; i < in_n; i++)
                dst[i * cout + o] = k->data[o * in_n + i];
    p.n_weight = k->n;
    if (fused && (rc = apply_fused_ops(c, N, &p, cout)))
        return rc;
    uint32_t in = x->node;
    return add_node(c, N, &p, &in, 1, 2);
}

static int do_act(gctx *c, gnode *N)
{
    int rc;
    gnode *x = tensor_input(c, N, 0, &rc);
    if (!x)
        return rc;
    uint32_t act;
    float act_max;
    act_of(N->op, &act, &act_max);
    if (x->exclusive && x->n_consumers == 1 && ims__can_fuse_act(c->g, x->node)) {
        c->g->nodes[x->node].act = act;
        c->g->nodes[x->node].act_max = act_max;
        if ((rc = ims__rename_fused(c->g, x->node, N->name)))
            return rc;
        N->node = x->node, N->rank = x->rank, N->exclusive = 1;
        return IMS_OK;
    }
    ims__node p = ims__tfjs_proto(IMS_OP_ACT);
    p.act = act, p.act_max = act_max;
    uint32_t in = x->node;
    return add_node(c, N, &p, &in, 1, x->rank);
}

/* Add / Sub / Mul with a constant, or Add of tensors. */
static int do_binary(gctx *c, gnode *N)
{
    int rc;
    if (n_data_inputs(N) != 2)
        return GFAIL(IMS_EUNSUPPORTED, N, "needs 2 inputs");
    gnode *a = data_input(c, N, 0, &rc), *b = a ? data_input(c, N, 1, &rc) : NULL;
    if (!b)
        return rc;
    int is_add = !strcmp(N->op, "Add") || !strcmp(N->op, "AddV2") || !strcmp(N->op, "BiasAdd");
    int is_sub = !strcmp(N->op, "Sub");
    if (!a->is_const && !b->is_const) {
        if (!is_add)
            return GFAIL(IMS_EUNSUPPORTED, N, "%s of two tensors is not supported", N->op);
        uint32_t in[2] = {a->node, b->node};
        ims__node p = ims__tfjs_proto(IMS_OP_ADD);
        return add_node(c, N, &p, in, 2, a->rank);
    }
    if (a->is_const && b->is_const)
        return GFAIL(IMS_EUNSUPPORTED, N, "operation on two constants is not supported");
    int const_first = a->is_const;
    gnode *x = const_first ? b : a, *k = const_first ? a : b;
    k->w->used = 1;
    if (!strcmp(N->op, "BiasAdd") && const_first)
        return GFAIL(IMS_EUNSUPPORTED, N, "bias must be the second input");
    int64_t C = c->g->nodes[x->node].c, n = k->w->n;
    if (n != 1 && n != C)
        return GFAIL(IMS_EUNSUPPORTED, N, "constant with %lld values does not broadcast over %lld "
                                          "channels", (long long)n, (long long)C);
    ims__node p = ims__tfjs_proto(IMS_OP_AFFINE);
    float *s, *t;
    if (!strcmp(N->op, "Mul")) {
        if ((rc = ims__graph_add_weights(c->g, k->w->data, (uint64_t)n, &p.weight, NULL)))
            return rc;
        p.n_weight = n;
    } else {
        if ((rc = ims__graph_add_weights(c->g, NULL, 1, &p.weight, &s)))
            return rc;
        s[0] = is_sub && const_first ? -1.0f : 1.0f;
        p.n_weight = 1;
        if ((rc = ims__graph_add_weights(c->g, NULL, (uint64_t)n, &p.bias, &t)))
            return rc;
        for (int64_t i = 0; i < n; i++)
            t[i] = is_sub && !const_first ? -k->w->data[i] : k->w->data[i];
        p.n_bias = n;
    }
    uint32_t in = x->node;
    return add_node(c, N, &p, &in, 1, x->rank);
}

static int do_pool(gctx *c, gnode *N, int avg)
{
    int rc = check_nhwc(c, N);
    if (rc)
        return rc;
    gnode *x = tensor_input(c, N, 0, &rc);
    if (!x)
        return rc;
    const ims__node *xn = &c->g->nodes[x->node];
    ims__node p = ims__tfjs_proto(avg ? IMS_OP_AVGPOOL : IMS_OP_MAXPOOL);
    if ((rc = nhwc_pair(c, N, "ksize", -1, &p.kh, &p.kw)) ||
        (rc = nhwc_pair(c, N, "strides", 1, &p.sh, &p.sw)) ||
        (rc = resolve_padding(c, N, xn, &p)))
        return rc;
    if (avg && p.kh == xn->h && p.kw == xn->w && !p.pad_t && !p.pad_b && !p.pad_l && !p.pad_r)
        p = ims__tfjs_proto(IMS_OP_GAP); /* one window over the whole input */
    uint32_t in = x->node;
    return add_node(c, N, &p, &in, 1, 4);
}

static int do_squeeze(gctx *c, gnode *N)
{
    int rc;
    gnode *x = tensor_input(c, N, 0, &rc);
    if (!x)
        return rc;
    const ims__node *xn = &c->g->nodes[x->node];
    long long d[8];
    int n = attr_list_i(N, "squeeze_dims", d, 8);
    if (n < 0)
        return GFAIL(IMS_ECORRUPT, N, "bad option 'squeeze_dims'");
    for (int i = 0; i < n; i++)
        if (d[i] != 1 && d[i] != 2 && d[i] != -2 && d[i] != -3)
            return GFAIL(IMS_EUNSUPPORTED, N, "option 'squeeze_dims' may only name H and W");
    if (x->rank != 4 || xn->h != 1 || xn->w != 1)
        return GFAIL(IMS_EUNSUPPORTED, N, "only a [N,1,1,C] input can be squeezed");
    ims__node p = ims__tfjs_proto(IMS_OP_RESHAPE);
    uint32_t in = x->node;
    return add_node(c, N, &p, &in, 1, 2);
}

static int do_mean(gctx *c, gnode *N)
{
    int rc;
    gnode *x = tensor_input(c, N, 0, &rc);
    ims__tfjs_weight *ax = x ? const_input(c, N, 1, &rc) : NULL;
    if (!ax)
        return rc;
    if (x->rank != 4 || ax->n != 2 || ax->data[0] != 1 || ax->data[1] != 2)
        return GFAIL(IMS_EUNSUPPORTED, N, "only a mean over axes [1, 2] is supported");
    ims__node p = ims__tfjs_proto(IMS_OP_GAP);
    uint32_t in = x->node;
    return add_node(c, N, &p, &in, 1, attr_b(N, "keep_dims") ? 4 : 2);
}

static int do_pad(gctx *c, gnode *N)
{
    int rc;
    gnode *x = tensor_input(c, N, 0, &rc);
    ims__tfjs_weight *pw = x ? const_input(c, N, 1, &rc) : NULL;
    if (!pw)
        return rc;
    const float *q = pw->data;
    if (x->rank != 4 || pw->n != 8 || q[0] || q[1] || q[6] || q[7])
        return GFAIL(IMS_EUNSUPPORTED, N, "only padding of H and W is supported");
    for (int k = 2; k < 6; k++)
        if (q[k] < 0 || q[k] > IMS_NN_MAX_DIM)
            return GFAIL(IMS_EUNSUPPORTED, N, "padding out of range");
    ims__node p = ims__tfjs_proto(IMS_OP_PAD);
    p.pad_t = (int32_t)q[2], p.pad_b = (int32_t)q[3], p.pad_l = (int32_t)q[4];
    p.pad_r = (int32_t)q[5];
    uint32_t in = x->node;
    return add_node(c, N, &p, &in, 1, 4);
}

static int do_concat(gctx *c, gnode *N)
{
    int rc;
    size_t n = n_data_inputs(N);
    if (n < 3 || n > 1025)
        return GFAIL(IMS_EUNSUPPORTED, N, "needs 2 to 1024 tensors and an axis");
    ims__tfjs_weight *ax = const_input(c, N, n - 1, &rc);
    if (!ax)
        return rc;
    uint32_t in[1024];
    int rank = 0;
    for (size_t k = 0; k + 1 < n; k++) {
        gnode *x = tensor_input(c, N, k, &rc);
        if (!x)
            return rc;
        in[k] = x->node;
        rank = x->rank;
    }
    if (ax->n != 1 || !(ax->data[0] == -1 || ax->data[0] == rank - 1))
        return GFAIL(IMS_EUNSUPPORTED, N, "concatenation along a non-channel axis");
    ims__node p = ims__tfjs_proto(IMS_OP_CONCAT);
    return add_node(c, N, &p, in, (uint32_t)(n - 1), rank);
}

static int translate(gctx *c, gnode *N)
{
    const char *op = N->op;
    int rc;
    if (!strcmp(op, "Placeholder"))
        return do_placeholder(c, N);
    if (!strcmp(op, "Conv2D") || !strcmp(op, "_FusedConv2D"))
        return do_conv(c, N, 0, op[0] == '_');
    if (!strcmp(op, "DepthwiseConv2dNative") || !strcmp(op, "FusedDepthwiseConv2dNative"))
        return do_conv(c, N, 1, op[0] == 'F');
    if (!strcmp(op, "MatMul") || !strcmp(op, "_FusedMatMul"))
        return do_matmul(c, N, op[0] == '_');
    if (!strcmp(op, "Add") || !strcmp(op, "AddV2") || !strcmp(op, "BiasAdd") ||
        !strcmp(op, "Sub") || !strcmp(op, "Mul"))
        return do_binary(c, N);
    if (!strcmp(op, "Relu") || !strcmp(op, "Relu6") || !strcmp(op, "Sigmoid") ||
        !strcmp(op, "Tanh"))
        return do_act(c, N);
    if (!strcmp(op, "AvgPool") || !strcmp(op, "MaxPool"))
        return do_pool(c, N, op[0] == 'A');
    if (!strcmp(op, "Squeeze"))
        return do_squeeze(c, N);
    if (!strcmp(op, "Mean"))
        return do_mean(c, N);
    if (!strcmp(op, "Pad"))
        return do_pad(c, N);
    if (!strcmp(op, "ConcatV2"))
        return do_concat(c, N);
    if (!strcmp(op, "Softmax")) {
        gnode *x = tensor_input(c, N, 0, &rc);
        if (!x)
            return rc;
        ims__node p = ims__tfjs_proto(IMS_OP_SOFTMAX);
        uint32_t in = x->node;
        return add_node(c, N, &p, &in, 1, 2);
    }
    if (!strcmp(op, "Identity") || !strcmp(op, "StopGradient")) {
        gnode *x = tensor_input(c, N, 0, &rc);
        if (!x)
            return rc;
        N->node = x->node, N->rank = x->rank;
        N->exclusive = x->exclusive && x->n_consumers == 1;
        return ims__graph_add_alias(c->g, N->name, (int32_t)x->node, 1) ? IMS_ENOMEM : IMS_OK;
    }
    return GFAIL(IMS_EUNSUPPORTED, N, "op '%s' is not supported", op);
}

/* The output node: the signature's output, else the one unread non-Const node. */
static gnode *find_output(gctx *c, json_t *root, int *rc)
{
    json_t *sig = json_object_get(json_object_get(root, "userDefinedMetadata"), "signature");
    if (!sig)
        sig = json_object_get(root, "signature");
    json_t *outs = json_object_get(sig, "outputs");
    if (json_is_object(outs) && json_object_size(outs) > 0) {
        if (json_object_size(outs) != 1) {
            *rc = ims_error_set(c->err, IMS_EUNSUPPORTED, "models must have exactly one output");
            return NULL;
        }
        const char *key = json_object_iter_key(json_object_iter(outs));
        const char *nm = json_string_value(json_object_get(json_object_iter_value(
                             json_object_iter(outs)), "name"));
        if (!nm)
            nm = key;
        const char *colon = strrchr(nm, ':');
        gnode *o = find_node(c, nm, colon ? (size_t)(colon - nm) : strlen(nm));
        if (!o)
            *rc = ims_error_set(c->err, IMS_ECORRUPT, "signature output '%s' is not a node", nm);
        return o;
    }
    gnode *o = NULL;
    for (size_t i = 0; i < c->n; i++) {
        if (c->nodes[i].is_const || c->nodes[i].n_consumers)
            continue;
        if (o) {
            *rc = ims_error_set(c->err, IMS_EUNSUPPORTED, "models must have exactly one output "
                                                          "('%s' and '%s' are unread)",
                                o->name, c->nodes[i].name);
            return NULL;
        }
        o = &c->nodes[i];
    }
    if (!o)
        *rc = ims_error_set(c->err, IMS_ECORRUPT, "graph has no output node");
    return o;
}

int ims__tfjs_import_graph(json_t *root, ims__tfjs_weights *ws, ims__graph *g, ims_error *err)
{
    json_t *jn = json_object_get(json_object_get(root, "modelTopology"), "node");
    if (!json_is_array(jn) || !json_array_size(jn))
        return ims_error_set(err, IMS_ECORRUPT, "graph-model without nodes");
    gctx cx = {.g = g, .ws = ws, .err = err, .n = json_array_size(jn)}, *c = &cx;
    if (c->n > 1000000)
        return ims_error_set(err, IMS_ETOOBIG, "graph-model has too many nodes");
    c->nodes = ims_calloc(c->n, sizeof *c->nodes);
    gnode **stack = ims_calloc(c->n, sizeof *stack);
    int rc = IMS_OK;
    if (!c->nodes || !stack) {
        rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c->n; i++) {
        json_t *e = json_array_get(jn, i);
        gnode *N = &c->nodes[i];
        N->name = json_string_value(json_object_get(e, "name"));
        N->op = json_string_value(json_object_get(e, "op"));
        N->attr = json_object_get(e, "attr");
        N->inputs = json_object_get(e, "input");
        if (!N->name || !N->op || (N->inputs && !json_is_array(N->inputs))) {
            rc = ims_error_set(err, IMS_ECORRUPT, "graph node %zu: no name or op", i);
            goto out;
        }
        if (!strcmp(N->op, "Const")) {
            N->is_const = 1;
            N->done = 1;
            N->w = ims__tfjs_weight_find(ws, N->name);
        }
    }
    for (size_t i = 0; i < c->n; i++) { /* duplicate names make lookups ambiguous */
        gnode *N = &c->nodes[i];
        if (find_node(c, N->name, strlen(N->name)) != N) {
            rc = ims_error_set(err, IMS_ECORRUPT, "node name '%s' is used twice", N->name);
            goto out;
        }
        size_t n_in = n_data_inputs(N);
        for (size_t k = 0; k < n_in; k++) {
            gnode *x = data_input(c, N, k, &rc);
            if (!x)
                goto out;
            x->n_consumers++;
        }
    }
    gnode *outn = find_output(c, root, &rc);
    if (!outn)
        goto out;
    outn->n_consumers++;
    /* mark what the output needs */
    size_t sp = 0;
    outn->needed = 1;
    stack[sp++] = outn;
    while (sp) {
        gnode *N = stack[--sp];
        size_t n_in = n_data_inputs(N);
        for (size_t k = 0; k < n_in; k++) {
            gnode *x = data_input(c, N, k, &rc);
            if (!x)
                goto out;
            if (!x->needed) {
                x->needed = 1;
                if (x->is_const && !x->w) {
                    rc = ims_error_set(err, IMS_ECORRUPT,
                                       "constant '%s' has no weights in the manifest", x->name);
                    goto out;
                }
                stack[sp++] = x;
            }
        }
    }
    /* the Placeholder first (node 0), then the rest as inputs become ready */
    size_t n_ph = 0;
    for (size_t i = 0; i < c->n; i++) {
        gnode *N = &c->nodes[i];
        if (N->needed && !strcmp(N->op, "Placeholder")) {
            if ((rc = translate(c, N)))
                goto out;
            N->done = 1;
            n_ph++;
        }
    }
    if (n_ph != 1) {
        rc = ims_error_set(err, IMS_EUNSUPPORTED, "models must have exactly one input "
                                                  "(Placeholder), found %zu", n_ph);
        goto out;
    }
    for (;;) {
        int progress = 0, pending = 0;
        for (size_t i = 0; i < c->n; i++) {
            gnode *N = &c->nodes[i];
            if (!N->needed || N->done)
                continue;
            int ready = 1;
            size_t n_in = n_data_inputs(N);
            for (size_t k = 0; k < n_in && ready; k++) {
                gnode *x = data_input(c, N, k, &rc);
                if (!x)
                    goto out;
                ready = x->done;
            }
            if (!ready) {
                pending++;
                continue;
            }
            if ((rc = translate(c, N)))
                goto out;
            N->done = 1;
            progress = 1;
        }
        if (!pending)
            break;
        if (!progress) {
            rc = ims_error_set(err, IMS_ECORRUPT, "graph has a cycle");
            goto out;
        }
    }
    if (outn->is_const) {
        rc = ims_error_set(err, IMS_EUNSUPPORTED, "the output is a constant");
        goto out;
    }
    g->output = g->nodes[outn->node].op == IMS_OP_SOFTMAX ? (int32_t)outn->node : -1;
out:
    ims_free(stack);
    ims_free(c->nodes);
    return rc;
}
