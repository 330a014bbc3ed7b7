/* SPDX-License-Identifier: MIT */
/*
 * import_tfjs_layers.c — TF.js layers-models (Keras functional or Sequential
 * topology) to the graph IR.
 *
 * Layers are read from the topology's config ("layers", "input_layers",
 * "output_layers"; Keras 2 inbound_nodes [[["name", 0, 0, {}], ...]]) and
 * translated once all their inputs are, in config order. Each translated
 * layer has a value (struct lval): the node carrying its output, or a
 * pending zero padding that is not materialised yet.
 *
 * Folding keeps the IR small and fast, and never changes what any remaining
 * name computes:
 *   - ZeroPadding2D whose only consumer is a Conv2D / DepthwiseConv2D becomes
 *     that convolution's explicit padding (otherwise a PAD node);
 *   - BatchNormalization whose input is a Conv2D / DepthwiseConv2D / Dense
 *     node without activation, read by nothing else, is folded into its
 *     kernel and bias (otherwise an AFFINE node);
 *   - ReLU / Activation likewise fuse into the producing node.
 * A fused node takes the name of the last layer fused into it; the earlier
 * names become non-tappable aliases (nn_int.h). Dropout is an identity: a
 * tappable alias. A layer's value may only be changed in place (fused into)
 * when its node is read through this one chain alone ("exclusive").
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "import_tfjs_int.h"

enum { LV_NONE = 0, LV_NODE = 1, LV_PAD = 2 };

typedef struct lval {
    int state;        /* LV_* */
    uint32_t node;    /* LV_NODE: the node; LV_PAD: the padded source node */
    int rank;         /* 4 spatial, 2 flat */
    int exclusive;    /* node read only through this value chain */
    int32_t pad[4];   /* LV_PAD: t, b, l, r */
} lval;

typedef struct layer {
    const char *name;
    const char *cls;
    json_t *config;
    json_t *inbound;  /* array of ["name", 0, 0, {}] (NULL: Sequential chaining) */
    int n_consumers;
    lval v;
} layer;

typedef struct ctx {
    ims__graph *g;
    ims__tfjs_weights *ws;
    ims_error *err;
    layer *layers;
    size_t n_layers;
    int sequential;
} ctx;

#define FAIL(code, L, ...) layer_error(c, code, L, __VA_ARGS__)

static int layer_error(ctx *c, int code, const layer *L, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int layer_error(ctx *c, int code, const layer *L, const char *fmt, ...)
{
    char msg[IMS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ims_error_set(c->err, code, "layer '%s' (%s): %s", L->name, L->cls, msg);
}

static layer *find_layer(ctx *c, const char *name)
{
    for (size_t i = 0; i < c->n_layers; i++)
        if (!strcmp(c->layers[i].name, name))
            return &c->layers[i];
    return NULL;
}

static json_t *cfg(const layer *L, const char *key) { return json_object_get(L->config, key); }

/* Read an int or [a, b] config value into two ints (default when absent). */
static int get_pair(ctx *c, const layer *L, const char *key, int def, int32_t *a, int32_t *b)
{
    json_t *v = cfg(L, key);
    if (!v || json_is_null(v)) {
        *a = *b = def;
        return IMS_OK;
    }
    if (json_is_integer(v)) {
        *a = *b = (int32_t)json_integer_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 2 &&
               json_is_integer(json_array_get(v, 0)) && json_is_integer(json_array_get(v, 1))) {
        *a = (int32_t)json_integer_value(json_array_get(v, 0));
        *b = (int32_t)json_integer_value(json_array_get(v, 1));
    } else {
        return FAIL(IMS_EUNSUPPORTED, L, "option '%s' must be an int or a pair", key);
    }
    if (*a < 1 || *b < 1 || *a > IMS_NN_MAX_DIM || *b > IMS_NN_MAX_DIM)
        return FAIL(IMS_EUNSUPPORTED, L, "option '%s' out of range", key);
    return IMS_OK;
}

static int check_channels_last(ctx *c, const layer *L)
{
    const char *df = json_string_value(cfg(L, "data_format"));
    if (df && strcmp(df, "channels_last"))
        return FAIL(IMS_EUNSUPPORTED, L, "data_format '%s' is not supported (channels_last only)",
                    df);
    return IMS_OK;
}

/* 'valid' or 'same' into *same. */
static int get_padding(ctx *c, const layer *L, int *same)
{
    const char *p = json_string_value(cfg(L, "padding"));
    if (!p || !strcmp(p, "valid"))
        *same = 0;
    else if (!strcmp(p, "same"))
        *same = 1;
    else
        return FAIL(IMS_EUNSUPPORTED, L, "padding '%s' is not supported", p);
    return IMS_OK;
}

/* Activation name -> act/act_max; *softmax set for "softmax". */
static int parse_act(ctx *c, const layer *L, const char *a, uint32_t *act, float *act_max,
                     int *softmax)
{
    *act = IMS_ACT_NONE, *act_max = 0, *softmax = 0;
    if (!a || !strcmp(a, "linear"))
        return IMS_OK;
    if (!strcmp(a, "relu"))
        *act = IMS_ACT_RELU;
    else if (!strcmp(a, "relu6"))
        *act = IMS_ACT_RELU, *act_max = 6;
    else if (!strcmp(a, "sigmoid"))
        *act = IMS_ACT_SIGMOID;
    else if (!strcmp(a, "tanh"))
        *act = IMS_ACT_TANH;
    else if (!strcmp(a, "softmax"))
        *softmax = 1;
    else
        return FAIL(IMS_EUNSUPPORTED, L, "activation '%s' is not supported", a);
    return IMS_OK;
}

/* Weight <layer>/<param> of shape {d0, d1, ...} (rank dims, -1 ends early). */
#define weight(c, L, param, rc, ...) \
    weight_shape(c, L, param, (const int64_t[]){__VA_ARGS__, -1}, rc)

static ims__tfjs_weight *weight_shape(ctx *c, const layer *L, const char *param,
                                      const int64_t *dims, int *rc)
{
    int rank = 0;
    int64_t n = 1;
    while (dims[rank] >= 0)
        n *= dims[rank++];
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", L->name, param);
    ims__tfjs_weight *w = ims__tfjs_weight_find(c->ws, full);
    if (!w) {
        *rc = FAIL(IMS_ECORRUPT, L, "weight '%s' is missing from the manifest", full);
        return NULL;
    }
    int same = w->rank == rank && w->n == n;
    for (int k = 0; same && k < rank; k++)
        same = w->shape[k] == dims[k];
    if (!same) {
        char want[128] = "", got[128] = "";
        for (int k = 0; k < rank; k++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", k ? "," : "",
                     (long long)dims[k]);
        for (int k = 0; k < w->rank; k++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", k ? "," : "",
                     (long long)w->shape[k]);
        *rc = FAIL(IMS_ECORRUPT, L, "weight '%s' has shape [%s], expected [%s] (%lld values)",
                   full, got, want, (long long)n);
        return NULL;
    }
    w->used = 1;
    *rc = IMS_OK;
    return w;
}

/* The k-th input layer of L (Sequential: the previous layer). */
static int input_layer(ctx *c, const layer *L, size_t k, layer **out)
{
    if (!L->inbound) {
        size_t i = (size_t)(L - c->layers);
        if (k != 0 || i == 0)
            return FAIL(IMS_ECORRUPT, L, "has no input");
        *out = &c->layers[i - 1];
        return IMS_OK;
    }
    json_t *e = json_array_get(L->inbound, k);
    const char *n = json_string_value(json_array_get(e, 0));
    if (!n)
        return FAIL(IMS_ECORRUPT, L, "bad inbound node %zu", k);
    if (json_integer_value(json_array_get(e, 1)) != 0 ||
        json_integer_value(json_array_get(e, 2)) != 0)
        return FAIL(IMS_EUNSUPPORTED, L, "input '%s' uses a shared layer or a multi-output layer",
                    n);
    *out = find_layer(c, n);
    if (!*out)
        return FAIL(IMS_ECORRUPT, L, "input layer '%s' does not exist", n);
    return IMS_OK;
}

static size_t n_inputs(const layer *L) { return L->inbound ? json_array_size(L->inbound) : 1; }

static int add_node(ctx *c, const layer *L, const ims__node *proto, const char *name,
                    const uint32_t *in, uint32_t n_in, uint32_t *idx)
{
    int rc = ims__graph_add_node(c->g, proto, name, in, n_in, idx, c->err);
    if (rc && rc != IMS_ENOMEM) {
        char m[IMS_ERROR_MSG_MAX];
        snprintf(m, sizeof m, "%s", c->err ? c->err->msg : "");
        return FAIL(IMS_EUNSUPPORTED, L, "%s", m);
    }
    return rc;
}

/* Turn a pending padding into a PAD node (named after the padding layer). */
static int materialise(ctx *c, layer *src)
{
    if (src->v.state != LV_PAD)
        return IMS_OK;
    ims__node p = ims__tfjs_proto(IMS_OP_PAD);
    p.pad_t = src->v.pad[0], p.pad_b = src->v.pad[1];
    p.pad_l = src->v.pad[2], p.pad_r = src->v.pad[3];
    uint32_t idx;
    int rc = add_node(c, src, &p, src->name, &src->v.node, 1, &idx);
    if (rc)
        return rc;
    src->v.state = LV_NODE;
    src->v.node = idx;
    src->v.exclusive = src->n_consumers == 1;
    return IMS_OK;
}

/* Input k of L as a materialised node. */
static int input_node(ctx *c, const layer *L, size_t k, layer **src, uint32_t *node)
{
    int rc = input_layer(c, L, k, src);
    if (rc || (rc = materialise(c, *src)))
        return rc;
    *node = (*src)->v.node;
    return IMS_OK;
}

/* Can L change its input's node in place? */
static int fusable(const layer *src)
{
    return src->v.state == LV_NODE && src->v.exclusive && src->n_consumers == 1;
}

static void set_node(layer *L, uint32_t node, int rank)
{
    L->v.state = LV_NODE;
    L->v.node = node;
    L->v.rank = rank;
    L->v.exclusive = 1;
}

/* Apply an activation to src's node in place if possible, else as a node. */
static int apply_act(ctx *c, layer *L, layer *src, uint32_t act, float act_max)
{
    int rc;
    if (act == IMS_ACT_NONE) { /* identity: alias */
        if ((rc = materialise(c, src)))
            return rc;
        L->v = src->v;
        L->v.exclusive = src->v.exclusive && src->n_consumers == 1;
        return ims__graph_add_alias(c->g, L->name, (int32_t)src->v.node, 1) ? IMS_ENOMEM : IMS_OK;
    }
    if (fusable(src) && ims__can_fuse_act(c->g, src->v.node)) {
        uint32_t i = src->v.node;
        c->g->nodes[i].act = act;
        c->g->nodes[i].act_max = act_max;
        if ((rc = ims__rename_fused(c->g, i, L->name)))
            return rc;
        set_node(L, i, src->v.rank);
        return IMS_OK;
    }
    uint32_t in;
    if ((rc = input_node(c, L, 0, &src, &in)))
        return rc;
    ims__node p = ims__tfjs_proto(IMS_OP_ACT);
    p.act = act, p.act_max = act_max;
    uint32_t idx;
    if ((rc = add_node(c, L, &p, L->name, &in, 1, &idx)))
        return rc;
    set_node(L, idx, src->v.rank);
    return IMS_OK;
}

static int do_input(ctx *c, layer *L, json_t *shape)
{
    if (c->g->n_nodes)
        return FAIL(IMS_EUNSUPPORTED, L, "models with several inputs are not supported");
    if (!json_is_array(shape) || json_array_size(shape) != 4)
        return FAIL(IMS_EUNSUPPORTED, L, "input must be [batch, height, width, 3]");
    json_int_t h = json_integer_value(json_array_get(shape, 1));
    json_int_t w = json_integer_value(json_array_get(shape, 2));
    json_int_t ch = json_integer_value(json_array_get(shape, 3));
    if (h < 1 || w < 1 || h > IMS_NN_MAX_DIM || w > IMS_NN_MAX_DIM)
        return FAIL(IMS_EUNSUPPORTED, L, "input height and width must be fixed (got %lld x %lld)",
                    (long long)h, (long long)w);
    if (ch != 3)
        return FAIL(IMS_EUNSUPPORTED, L, "input must have 3 channels (got %lld)", (long long)ch);
    c->g->pp.height = (int)h;
    c->g->pp.width = (int)w;
    ims__node p = ims__tfjs_proto(IMS_OP_INPUT);
    uint32_t idx;
    int rc = add_node(c, L, &p, L->name, NULL, 0, &idx);
    if (rc)
        return rc;
    set_node(L, idx, 4);
    return IMS_OK;
}

static json_t *input_shape_of(const layer *L)
{
    json_t *s = cfg(L, "batch_input_shape");
    return s ? s : cfg(L, "batchInputShape");
}

static int do_zero_padding(ctx *c, layer *L)
{
    layer *src;
    int rc = input_layer(c, L, 0, &src);
    if (rc || (rc = check_channels_last(c, L)))
        return rc;
    if (src->v.rank != 4)
        return FAIL(IMS_EUNSUPPORTED, L, "input is not spatial");
    int32_t p[4];
    json_t *v = cfg(L, "padding");
    if (json_is_integer(v)) {
        p[0] = p[1] = p[2] = p[3] = (int32_t)json_integer_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 2) {
        for (int a = 0; a < 2; a++) {
            json_t *e = json_array_get(v, (size_t)a);
            if (json_is_integer(e)) {
                p[2 * a] = p[2 * a + 1] = (int32_t)json_integer_value(e);
            } else if (json_is_array(e) && json_array_size(e) == 2) {
                p[2 * a] = (int32_t)json_integer_value(json_array_get(e, 0));
                p[2 * a + 1] = (int32_t)json_integer_value(json_array_get(e, 1));
            } else {
                return FAIL(IMS_EUNSUPPORTED, L, "option 'padding' has an unsupported form");
            }
        }
    } else {
        return FAIL(IMS_EUNSUPPORTED, L, "option 'padding' has an unsupported form");
    }
    for (int k = 0; k < 4; k++)
        if (p[k] < 0 || p[k] > IMS_NN_MAX_DIM)
            return FAIL(IMS_EUNSUPPORTED, L, "option 'padding' out of range");
    if (src->v.state == LV_PAD && src->n_consumers == 1) { /* padding of padding */
        L->v = src->v;
        for (int k = 0; k < 4; k++)
            L->v.pad[k] += p[k];
        return ims__graph_add_alias(c->g, src->name, (int32_t)src->v.node, 0) ? IMS_ENOMEM
                                                                                : IMS_OK;
    }
    if ((rc = materialise(c, src)))
        return rc;
    L->v.state = LV_PAD;
    L->v.node = src->v.node;
    L->v.rank = 4;
    L->v.exclusive = 0;
    memcpy(L->v.pad, p, sizeof p);
    return IMS_OK;
}

static int do_conv(ctx *c, layer *L, int depthwise)
{
    layer *src;
    int rc = input_layer(c, L, 0, &src);
    if (rc || (rc = check_channels_last(c, L)))
        return rc;
    if (src->v.rank != 4)
        return FAIL(IMS_EUNSUPPORTED, L, "input is not spatial");
    json_t *groups = cfg(L, "groups");
    if (groups && json_integer_value(groups) != 1)
        return FAIL(IMS_EUNSUPPORTED, L, "option 'groups' = %lld is not supported",
                    (long long)json_integer_value(groups));
    ims__node p = ims__tfjs_proto(depthwise ? IMS_OP_DWCONV2D : IMS_OP_CONV2D);
    int same, softmax;
    if ((rc = get_pair(c, L, "kernel_size", -1, &p.kh, &p.kw)) ||
        (rc = get_pair(c, L, "strides", 1, &p.sh, &p.sw)) ||
        (rc = get_pair(c, L, "dilation_rate", 1, &p.dh, &p.dw)) ||
        (rc = get_padding(c, L, &same)) ||
        (rc = parse_act(c, L, json_string_value(cfg(L, "activation")), &p.act, &p.act_max,
                        &softmax)))
        return rc;
    if (softmax)
        return FAIL(IMS_EUNSUPPORTED, L, "activation 'softmax' on a convolution is not supported");
    /* fold a pending ZeroPadding2D read by this layer alone */
    int32_t zp[4] = {0, 0, 0, 0};
    uint32_t in;
    if (src->v.state == LV_PAD && src->n_consumers == 1) {
        memcpy(zp, src->v.pad, sizeof zp);
        in = src->v.node;
    } else {
        if ((rc = materialise(c, src)))
            return rc;
        in = src->v.node;
    }
    const ims__node *x = &c->g->nodes[in];
    int64_t H = x->h + zp[0] + zp[1], W = x->w + zp[2] + zp[3], C = x->c;
    int32_t st = 0, sb = 0, sl = 0, sr = 0;
    if (same) {
        ims__tf_same_pad(H, p.kh, p.sh, p.dh, &st, &sb);
        ims__tf_same_pad(W, p.kw, p.sw, p.dw, &sl, &sr);
    }
    p.pad_t = zp[0] + st, p.pad_b = zp[1] + sb, p.pad_l = zp[2] + sl, p.pad_r = zp[3] + sr;
    int64_t cout;
    ims__tfjs_weight *k;
    if (depthwise) {
        json_t *m = cfg(L, "depth_multiplier");
        p.mult = m ? (int32_t)json_integer_value(m) : 1;
        if (p.mult < 1 || p.mult > IMS_NN_MAX_DIM)
            return FAIL(IMS_EUNSUPPORTED, L, "option 'depth_multiplier' out of range");
        cout = C * p.mult;
        k = weight(c, L, "depthwise_kernel", &rc, p.kh, p.kw, C, p.mult);
    } else {
        json_t *f = cfg(L, "filters");
        cout = json_integer_value(f);
        if (cout < 1 || cout > IMS_NN_MAX_DIM * 64)
            return FAIL(IMS_EUNSUPPORTED, L, "option 'filters' out of range");
        p.c = (int32_t)cout;
        k = weight(c, L, "kernel", &rc, p.kh, p.kw, C, cout);
    }
    if (!k)
        return rc;
    if ((rc = ims__graph_add_weights(c->g, k->data, (uint64_t)k->n, &p.weight, NULL)))
        return rc;
    p.n_weight = k->n;
    if (json_is_true(cfg(L, "use_bias"))) {
        ims__tfjs_weight *b = weight(c, L, "bias", &rc, cout);
        if (!b)
            return rc;
        if ((rc = ims__graph_add_weights(c->g, b->data, (uint64_t)b->n, &p.bias, NULL)))
            return rc;
        p.n_bias = b->n;
    }
    uint32_t idx;
    if ((rc = add_node(c, L, &p, L->name, &in, 1, &idx)))
        return rc;
    if (src->v.state == LV_PAD && ims__graph_add_alias(c->g, src->name, (int32_t)idx, 0))
        return IMS_ENOMEM;
    set_node(L, idx, 4);
    return IMS_OK;
}

static int do_dense(ctx *c, layer *L)
{
    layer *src;
    uint32_t in;
    int rc = input_node(c, L, 0, &src, &in);
    if (rc)
        return rc;
    const ims__node *x = &c->g->nodes[in];
    if (x->h != 1 || x->w != 1)
        return FAIL(IMS_EUNSUPPORTED, L,
                    "Dense on a spatial input (%dx%dx%d) is not supported; flatten first", x->h,
                    x->w, x->c);
    ims__node p = ims__tfjs_proto(IMS_OP_DENSE);
    int softmax;
    if ((rc = parse_act(c, L, json_string_value(cfg(L, "activation")), &p.act, &p.act_max,
                        &softmax)))
        return rc;
    int64_t units = json_integer_value(cfg(L, "units"));
    if (units < 1 || units > IMS_NN_MAX_DIM * 64)
        return FAIL(IMS_EUNSUPPORTED, L, "option 'units' out of range");
    p.c = (int32_t)units;
    ims__tfjs_weight *k = weight(c, L, "kernel", &rc, x->c, units);
    if (!k)
        return rc;
    if ((rc = ims__graph_add_weights(c->g, k->data, (uint64_t)k->n, &p.weight, NULL)))
        return rc;
    p.n_weight = k->n;
    if (json_is_true(cfg(L, "use_bias"))) {
        ims__tfjs_weight *b = weight(c, L, "bias", &rc, units);
        if (!b)
            return rc;
        if ((rc = ims__graph_add_weights(c->g, b->data, (uint64_t)b->n, &p.bias, NULL)))
            return rc;
        p.n_bias = b->n;
    }
    uint32_t idx;
    if (softmax) {
        char lin[1100];
        snprintf(lin, sizeof lin, "%s/linear", L->name);
        if ((rc = add_node(c, L, &p, lin, &in, 1, &idx)))
            return rc;
        ims__node s = ims__tfjs_proto(IMS_OP_SOFTMAX);
        if ((rc = add_node(c, L, &s, L->name, &idx, 1, &idx)))
            return rc;
    } else if ((rc = add_node(c, L, &p, L->name, &in, 1, &idx))) {
        return rc;
    }
    set_node(L, idx, 2);
    return IMS_OK;
}

static int do_batchnorm(ctx *c, layer *L)
{
    layer *src;
    int rc = input_layer(c, L, 0, &src);
    if (rc || (rc = materialise(c, src)))
        return rc;
    json_t *ax = cfg(L, "axis");
    json_int_t axis = ax ? (json_is_array(ax) && json_array_size(ax) == 1
                                ? json_integer_value(json_array_get(ax, 0))
                                : json_integer_value(ax))
                         : -1;
    if (!(axis == -1 || axis == src->v.rank - 1))
        return FAIL(IMS_EUNSUPPORTED, L, "option 'axis' = %lld is not supported (channel axis "
                                         "only)", (long long)axis);
    json_t *je = cfg(L, "epsilon");
    double eps = je ? json_number_value(je) : 1e-3;
    if (!(eps >= 0))
        return FAIL(IMS_EUNSUPPORTED, L, "option 'epsilon' is invalid");
    int64_t C = c->g->nodes[src->v.node].c;
    const float *gamma = NULL, *beta = NULL, *mean, *var;
    ims__tfjs_weight *w;
    if (!json_is_false(cfg(L, "scale"))) {
        if (!(w = weight(c, L, "gamma", &rc, C)))
            return rc;
        gamma = w->data;
    }
    if (!json_is_false(cfg(L, "center"))) {
        if (!(w = weight(c, L, "beta", &rc, C)))
            return rc;
        beta = w->data;
    }
    if (!(w = weight(c, L, "moving_mean", &rc, C)))
        return rc;
    mean = w->data;
    if (!(w = weight(c, L, "moving_variance", &rc, C)))
        return rc;
    var = w->data;
    uint32_t i = src->v.node;
    uint32_t op = c->g->nodes[i].op;
    if (fusable(src) && c->g->nodes[i].act == IMS_ACT_NONE &&
        (op == IMS_OP_CONV2D || op == IMS_OP_DWCONV2D || op == IMS_OP_DENSE)) {
        if ((rc = ims__fold_batchnorm(c->g, i, gamma, beta, mean, var, eps)) ||
            (rc = ims__rename_fused(c->g, i, L->name)))
            return rc;
        set_node(L, i, src->v.rank);
        return IMS_OK;
    }
    ims__node p = ims__tfjs_proto(IMS_OP_AFFINE);
    float *s, *t;
    if ((rc = ims__graph_add_weights(c->g, NULL, (uint64_t)C, &p.weight, NULL)) ||
        (rc = ims__graph_add_weights(c->g, NULL, (uint64_t)C, &p.bias, NULL)))
        return rc;
    s = c->g->weights + p.weight;
    t = c->g->weights + p.bias;
    ims__batchnorm_affine(C, gamma, beta, mean, var, eps, s, t);
    p.n_weight = p.n_bias = C;
    uint32_t idx;
    if ((rc = add_node(c, L, &p, L->name, &i, 1, &idx)))
        return rc;
    set_node(L, idx, src->v.rank);
    return IMS_OK;
}

static int do_relu(ctx *c, layer *L)
{
    layer *src;
    int rc = input_layer(c, L, 0, &src);
    if (rc)
        return rc;
    json_t *ns = cfg(L, "negative_slope"), *th = cfg(L, "threshold"), *mv = cfg(L, "max_value");
    if (ns && !json_is_null(ns) && json_number_value(ns) != 0)
        return FAIL(IMS_EUNSUPPORTED, L, "option 'negative_slope' = %g is not supported",
                    json_number_value(ns));
    if (th && !json_is_null(th) && json_number_value(th) != 0)
        return FAIL(IMS_EUNSUPPORTED, L, "option 'threshold' = %g is not supported",
                    json_number_value(th));
    float act_max = 0;
    if (mv && !json_is_null(mv)) {
        double m = json_number_value(mv);
        if (!(m > 0) || isinf(m))
            return FAIL(IMS_EUNSUPPORTED, L, "option 'max_value' = %g is not supported", m);
        act_max = (float)m;
    }
    return apply_act(c, L, src, IMS_ACT_RELU, act_max);
}

static int do_softmax_node(ctx *c, layer *L, layer *src)
{
    uint32_t in;
    int rc = input_node(c, L, 0, &src, &in);
    if (rc)
        return rc;
    if (c->g->nodes[in].h != 1 || c->g->nodes[in].w != 1)
        return FAIL(IMS_EUNSUPPORTED, L, "softmax over a spatial input is not supported");
    ims__node p = ims__tfjs_proto(IMS_OP_SOFTMAX);
    uint32_t idx;
    if ((rc = add_node(c, L, &p, L->name, &in, 1, &idx)))
        return rc;
    set_node(L, idx, 2);
    return IMS_OK;
}

static int do_activation(ctx *c, layer *L)
{
    layer *src;
    int rc = input_layer(c, L, 0, &src);
    if (rc)
        return rc;
    uint32_t act;
    float act_max;
    int softmax;
    const char *a = json_string_value(cfg(L, "activation"));
    if ((rc = parse_act(c, L, a ? a : "?", &act, &act_max, &softmax)))
        return rc;
    if (softmax)
        return do_softmax_node(c, L, src);
    return apply_act(c, L, src, act, act_max);
}

static int do_merge(ctx *c, layer *L, int concat)
{
    size_t n = n_inputs(L);
    if (n < 2 || n > 1024)
        return FAIL(IMS_EUNSUPPORTED, L, "needs 2 to 1024 inputs, has %zu", n);
    uint32_t in[1024];
    int rank = 0;
    for (size_t k = 0; k < n; k++) {
        layer *src;
        int rc = input_node(c, L, k, &src, &in[k]);
        if (rc)
            return rc;
        rank = src->v.rank;
    }
    if (concat) {
        json_t *ax = cfg(L, "axis");
        json_int_t axis = ax ? json_integer_value(ax) : -1;
        if (!(axis == -1 || axis == rank - 1))
            return FAIL(IMS_EUNSUPPORTED, L, "option 'axis' = %lld is not supported (channel axis "
                                             "only)", (long long)axis);
    }
    ims__node p = ims__tfjs_proto(concat ? IMS_OP_CONCAT : IMS_OP_ADD);
    uint32_t idx;
    int rc = add_node(c, L, &p, L->name, in, (uint32_t)n, &idx);
    if (rc)
        return rc;
    set_node(L, idx, rank);
    return IMS_OK;
}

static int do_pool(ctx *c, layer *L, int avg)
{
    layer *src;
    uint32_t in;
    int rc = input_node(c, L, 0, &src, &in);
    if (rc || (rc = check_channels_last(c, L)))
        return rc;
    if (src->v.rank != 4)
        return FAIL(IMS_EUNSUPPORTED, L, "input is not spatial");
    ims__node p = ims__tfjs_proto(avg ? IMS_OP_AVGPOOL : IMS_OP_MAXPOOL);
    int same;
    if ((rc = get_pair(c, L, "pool_size", 2, &p.kh, &p.kw)) ||
        (rc = get_pair(c, L, "strides", -1, &p.sh, &p.sw)) || (rc = get_padding(c, L, &same)))
        return rc;
    if (p.sh == -1) /* strides default to the pool size */
        p.sh = p.kh, p.sw = p.kw;
    const ims__node *x = &c->g->nodes[in];
    if (same) {
        ims__tf_same_pad(x->h, p.kh, p.sh, 1, &p.pad_t, &p.pad_b);
        ims__tf_same_pad(x->w, p.kw, p.sw, 1, &p.pad_l, &p.pad_r);
    }
    if (avg && p.kh == x->h && p.kw == x->w && !p.pad_t && !p.pad_b && !p.pad_l && !p.pad_r)
        p = ims__tfjs_proto(IMS_OP_GAP); /* one window over the whole input: a global average */
    uint32_t idx;
    if ((rc = add_node(c, L, &p, L->name, &in, 1, &idx)))
        return rc;
    set_node(L, idx, 4);
    return IMS_OK;
}

static int do_simple(ctx *c, layer *L, uint32_t op, int rank)
{
    layer *src;
    uint32_t in;
    int rc = input_node(c, L, 0, &src, &in);
    if (rc)
        return rc;
    if (op == IMS_OP_GAP && ((rc = check_channels_last(c, L)) || src->v.rank != 4))
        return rc ? rc : FAIL(IMS_EUNSUPPORTED, L, "input is not spatial");
    ims__node p = ims__tfjs_proto(op);
    uint32_t idx;
    if ((rc = add_node(c, L, &p, L->name, &in, 1, &idx)))
        return rc;
    set_node(L, idx, rank);
    return IMS_OK;
}

static int translate(ctx *c, layer *L)
{
    const char *k = L->cls;
    if (!strcmp(k, "InputLayer"))
        return do_input(c, L, input_shape_of(L));
    if (!strcmp(k, "ZeroPadding2D"))
        return do_zero_padding(c, L);
    if (!strcmp(k, "Conv2D"))
        return do_conv(c, L, 0);
    if (!strcmp(k, "DepthwiseConv2D"))
        return do_conv(c, L, 1);
    if (!strcmp(k, "Dense"))
        return do_dense(c, L);
    if (!strcmp(k, "BatchNormalization"))
        return do_batchnorm(c, L);
    if (!strcmp(k, "ReLU"))
        return do_relu(c, L);
    if (!strcmp(k, "Activation"))
        return do_activation(c, L);
    if (!strcmp(k, "Add"))
        return do_merge(c, L, 0);
    if (!strcmp(k, "Concatenate"))
        return do_merge(c, L, 1);
    if (!strcmp(k, "MaxPooling2D"))
        return do_pool(c, L, 0);
    if (!strcmp(k, "AveragePooling2D"))
        return do_pool(c, L, 1);
    if (!strcmp(k, "GlobalAveragePooling2D"))
        return do_simple(c, L, IMS_OP_GAP, json_is_true(cfg(L, "keepdims")) ? 4 : 2);
    if (!strcmp(k, "Flatten")) {
        int rc = check_channels_last(c, L);
        return rc ? rc : do_simple(c, L, IMS_OP_RESHAPE, 2);
    }
    if (!strcmp(k, "Dropout")) {
        layer *src;
        int rc = input_layer(c, L, 0, &src);
        return rc ? rc : apply_act(c, L, src, IMS_ACT_NONE, 0);
    }
    if (!strcmp(k, "Softmax")) {
        layer *src;
        int rc = input_layer(c, L, 0, &src);
        json_t *ax = cfg(L, "axis");
        if (!rc && ax && json_integer_value(ax) != -1)
            return FAIL(IMS_EUNSUPPORTED, L, "option 'axis' is not supported");
        return rc ? rc : do_softmax_node(c, L, src);
    }
    return FAIL(IMS_EUNSUPPORTED, L, "layer type '%s' is not supported", k);
}

int ims__tfjs_import_layers(json_t *topo, ims__tfjs_weights *ws, ims__graph *g, ims_error *err)
{
    json_t *mc = json_object_get(topo, "model_config");
    if (!mc)
        mc = topo;
    const char *cls = json_string_value(json_object_get(mc, "class_name"));
    json_t *config = json_object_get(mc, "config");
    ctx cx = {.g = g, .ws = ws, .err = err}, *c = &cx;
    if (!cls)
        return ims_error_set(err, IMS_EFORMAT, "layers-model without a class_name");
    json_t *jl;
    if (!strcmp(cls, "Model") || !strcmp(cls, "Functional")) {
        jl = json_object_get(config, "layers");
    } else if (!strcmp(cls, "Sequential")) {
        c->sequential = 1;
        jl = json_is_array(config) ? config : json_object_get(config, "layers");
    } else {
        return ims_error_set(err, IMS_EUNSUPPORTED, "model class '%s' is not supported", cls);
    }
    if (!json_is_array(jl) || !json_array_size(jl))
        return ims_error_set(err, IMS_ECORRUPT, "model has no layers");
    c->n_layers = json_array_size(jl);
    c->layers = ims_calloc(c->n_layers, sizeof *c->layers);
    if (!c->layers)
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    int rc = IMS_OK;
    for (size_t i = 0; i < c->n_layers; i++) {
        json_t *e = json_array_get(jl, i);
        layer *L = &c->layers[i];
        L->config = json_object_get(e, "config");
        L->cls = json_string_value(json_object_get(e, "class_name"));
        L->name = json_string_value(json_object_get(e, "name"));
        if (!L->name)
            L->name = json_string_value(json_object_get(L->config, "name"));
        if (!L->cls || !L->name || !json_is_object(L->config)) {
            rc = ims_error_set(err, IMS_ECORRUPT, "layer %zu: no name, class_name or config", i);
            goto out;
        }
        if (find_layer(c, L->name) != L) {
            rc = ims_error_set(err, IMS_ECORRUPT, "layer name '%s' is used twice", L->name);
            goto out;
        }
        if (!c->sequential) {
            json_t *ib = json_object_get(e, "inbound_nodes");
            if (!json_is_array(ib) || json_array_size(ib) > 1 ||
                (json_array_size(ib) == 1 && !json_is_array(json_array_get(ib, 0)))) {
                rc = ims_error_set(err, IMS_EUNSUPPORTED,
                                   "layer '%s' (%s): inbound_nodes form is not supported (shared "
                                   "layers or Keras 3 format)", L->name, L->cls);
                goto out;
            }
            L->inbound = json_array_size(ib) ? json_array_get(ib, 0) : NULL;
        }
    }
    /* consumer counts (model outputs count as consumers) */
    for (size_t i = 0; i < c->n_layers; i++) {
        layer *L = &c->layers[i];
        if (!strcmp(L->cls, "InputLayer") || (c->sequential && i == 0) ||
            (!c->sequential && !L->inbound))
            continue;
        for (size_t k = 0; k < n_inputs(L); k++) {
            layer *src;
            if ((rc = input_layer(c, L, k, &src)))
                goto out;
            src->n_consumers++;
        }
    }
    layer *out_layer = NULL;
    if (c->sequential) {
        out_layer = &c->layers[c->n_layers - 1];
    } else {
        json_t *ol = json_object_get(config, "output_layers");
        if (!json_is_array(ol) || json_array_size(ol) != 1) {
            rc = ims_error_set(err, IMS_EUNSUPPORTED, "models must have exactly one output");
            goto out;
        }
        const char *on = json_string_value(json_array_get(json_array_get(ol, 0), 0));
        if (!on || !(out_layer = find_layer(c, on))) {
            rc = ims_error_set(err, IMS_ECORRUPT, "output layer not found");
            goto out;
        }
    }
    out_layer->n_consumers++;
    /* the input first: node 0 */
    if (c->sequential && strcmp(c->layers[0].cls, "InputLayer")) {
        layer *L0 = &c->layers[0];
        json_t *shape = input_shape_of(L0);
        layer in = {.name = "input", .cls = "InputLayer", .config = L0->config};
        if ((rc = do_input(c, &in, shape)))
            goto out;
        /* translate layer 0 against the synthetic input via a fake predecessor */
        layer *tmp = ims_calloc(c->n_layers + 1, sizeof *tmp);
        if (!tmp) {
            rc = ims_error_set(err, IMS_ENOMEM, "out of memory");
            goto out;
        }
        tmp[0] = in;
        tmp[0].n_consumers = 1;
        memcpy(tmp + 1, c->layers, c->n_layers * sizeof *tmp);
        ims_free(c->layers);
        c->layers = tmp;
        c->n_layers++;
        out_layer = &c->layers[c->n_layers - 1];
    } else {
        size_t n_in = 0;
        for (size_t i = 0; i < c->n_layers; i++)
            if (!strcmp(c->layers[i].cls, "InputLayer")) {
                if ((rc = translate(c, &c->layers[i])))
                    goto out;
                n_in++;
            }
        if (n_in != 1) {
            rc = ims_error_set(err, IMS_EUNSUPPORTED, "models must have exactly one InputLayer");
            goto out;
        }
    }
    /* everything else once its inputs are ready (config order is usually topological) */
    for (;;) {
        int progress = 0, pending = 0;
        for (size_t i = 0; i < c->n_layers; i++) {
            layer *L = &c->layers[i];
            if (L->v.state != LV_NONE)
                continue;
            int ready = 1;
            if (c->sequential) {
                ready = i > 0 && c->layers[i - 1].v.state != LV_NONE;
            } else if (!L->inbound) {
                rc = ims_error_set(err, IMS_ECORRUPT, "layer '%s' (%s) has no inputs", L->name,
                                   L->cls);
                goto out;
            } else {
                for (size_t k = 0; k < n_inputs(L) && ready; k++) {
                    layer *src;
                    if ((rc = input_layer(c, L, k, &src)))
                        goto out;
                    ready = src->v.state != LV_NONE;
                }
            }
            if (!ready) {
                pending++;
                continue;
            }
            if ((rc = translate(c, L)))
                goto out;
            progress = 1;
        }
        if (!pending)
            break;
        if (!progress) {
            rc = ims_error_set(err, IMS_ECORRUPT, "layer graph has a cycle or a dangling input");
            goto out;
        }
    }
    if ((rc = materialise(c, out_layer)))
        goto out;
    g->output = g->nodes[out_layer->v.node].op == IMS_OP_SOFTMAX ? (int32_t)out_layer->v.node : -1;
out:
    ims_free(c->layers);
    return rc;
}
