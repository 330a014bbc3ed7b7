/* SPDX-License-Identifier: MIT */
/*
 * graph.c — building, validating and querying the graph IR (see nn_int.h).
 *
 * Shape inference lives here and only here: the builder uses it to fill in
 * each node's output shape, and the validator re-runs it on graphs read from
 * files, so a corrupt .ism can never make the executor read out of bounds.
 */
#include <math.h>
#include <string.h>

#include "nn_int.h"

static const char *op_names[IMS_OP__COUNT] = {
    "Input",         "Conv2D",  "DepthwiseConv2D", "Dense", "MaxPool", "AvgPool",
    "GlobalAvgPool", "Add",     "Concat",          "Pad",   "Affine",  "Activation",
    "Softmax",       "Reshape", "L2Normalize",
};
static const char *act_names[IMS_ACT__COUNT] = {"none", "relu", "sigmoid", "tanh"};

const char *ims__op_name(uint32_t op) { return op < IMS_OP__COUNT ? op_names[op] : "?"; }
const char *ims__act_name(uint32_t a) { return a < IMS_ACT__COUNT ? act_names[a] : "?"; }

/* Grow *arr (elements of size sz) to hold at least need elements. */
static int grow(void **arr, uint64_t *cap, uint64_t need, size_t sz)
{
    if (need <= *cap)
        return IMS_OK;
    uint64_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    size_t bytes;
    if (!ims_size_mul((size_t)n, sz, &bytes))
        return IMS_ENOMEM;
    void *p = ims_realloc(*arr, bytes);
    if (!p)
        return IMS_ENOMEM;
    *arr = p;
    *cap = n;
    return IMS_OK;
}

int ims__graph_init(ims__graph *g)
{
    memset(g, 0, sizeof *g);
    g->owned = 1;
    g->output = g->feature = -1;
    g->strings = ims_malloc(64);
    if (!g->strings)
        return IMS_ENOMEM;
    g->strings[0] = '\0';
    g->n_strings = 1;
    g->cap_strings = 64;
    return IMS_OK;
}

void ims__graph_release(ims__graph *g)
{
    if (!g || !g->owned)
        return;
    ims_free(g->nodes);
    ims_free(g->edges);
    ims_free(g->aliases);
    ims_free(g->strings);
    ims_aligned_free(g->weights);
    memset(g, 0, sizeof *g);
}

int ims__graph_add_string(ims__graph *g, const char *s, uint32_t *off)
{
    size_t n = strlen(s) + 1;
    if (g->n_strings + n > UINT32_MAX)
        return IMS_ETOOBIG;
    if (grow((void **)&g->strings, &g->cap_strings, g->n_strings + n, 1))
        return IMS_ENOMEM;
    memcpy(g->strings + g->n_strings, s, n);
    *off = (uint32_t)g->n_strings;
    g->n_strings += n;
    return IMS_OK;
}

int ims__graph_reserve_weights(ims__graph *g, uint64_t n)
{
    if (n <= g->cap_weights)
        return IMS_OK;
    size_t bytes;
    if (!ims_size_mul((size_t)n, sizeof(float), &bytes))
        return IMS_ENOMEM;
    float *w = ims_aligned_alloc(64, bytes);
    if (!w)
        return IMS_ENOMEM;
    if (g->n_weights)
        memcpy(w, g->weights, g->n_weights * sizeof(float));
    ims_aligned_free(g->weights);
    g->weights = w;
    g->cap_weights = n;
    return IMS_OK;
}

int ims__graph_add_weights(ims__graph *g, const float *src, uint64_t n, int64_t *off,
                           float **dst)
{
    /* keep every block 16-float (64-byte) aligned for SIMD loads */
    uint64_t start = (g->n_weights + 15) & ~(uint64_t)15;
    uint64_t need = start + n;
    if (need > g->cap_weights) {
        uint64_t cap = g->cap_weights ? g->cap_weights : 4096;
        while (cap < need)
            cap *= 2;
        int rc = ims__graph_reserve_weights(g, cap);
        if (rc)
            return rc;
    }
    memset(g->weights + g->n_weights, 0, (start - g->n_weights) * sizeof(float));
    if (src)
        memcpy(g->weights + start, src, n * sizeof(float));
    else
        memset(g->weights + start, 0, n * sizeof(float));
    g->n_weights = need;
    *off = (int64_t)start;
    if (dst)
        *dst = g->weights + start;
    return IMS_OK;
}

int ims__graph_add_alias(ims__graph *g, const char *name, int32_t node, int tappable)
{
    uint32_t off;
    if (grow((void **)&g->aliases, &g->cap_aliases, g->n_aliases + 1, sizeof(ims__alias)) ||
        ims__graph_add_string(g, name, &off))
        return IMS_ENOMEM;
    g->aliases[g->n_aliases++] = (ims__alias){off, node, (uint32_t)!!tappable};
    return IMS_OK;
}

int ims__graph_add_node(ims__graph *g, const ims__node *proto, const char *name,
                        const uint32_t *inputs, uint32_t n_inputs, uint32_t *index,
                        ims_error *err)
{
    if (g->n_nodes >= INT32_MAX - 1)
        return ims_error_set(err, IMS_ETOOBIG, "%s: too many nodes", name);
    if (grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(ims__node)) ||
        grow((void **)&g->edges, &g->cap_edges, (uint64_t)g->n_edges + n_inputs,
             sizeof(uint32_t)))
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", name);
    ims__node n = *proto;
    if (ims__graph_add_string(g, name, &n.name))
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", name);
    n.inputs = g->n_edges;
    n.n_inputs = n_inputs;
    if (n_inputs) /* inputs may be NULL for the input node */
        memcpy(g->edges + g->n_edges, inputs, n_inputs * sizeof(uint32_t));
    g->nodes[g->n_nodes] = n;
    int rc = ims__infer_shape(g, g->n_nodes, &g->nodes[g->n_nodes].h,
                              &g->nodes[g->n_nodes].w, &g->nodes[g->n_nodes].c, err);
    if (rc)
        return rc; /* node not committed: counts unchanged */
    g->n_edges += n_inputs;
    if (index)
        *index = g->n_nodes;
    g->n_nodes++;
    return IMS_OK;
}

#define BAD(...) ims_error_set(err, IMS_ECORRUPT, __VA_ARGS__)

static int weights_ok(const ims__graph *g, int64_t off, int64_t n)
{
    return off >= 0 && n >= 0 && (uint64_t)off <= g->n_weights &&
           (uint64_t)n <= g->n_weights - (uint64_t)off;
}

/* Output size of a windowed op along one axis, or -1 if impossible. */
static int64_t out_len(int64_t in, int64_t pad0, int64_t pad1, int64_t k, int64_t s, int64_t d)
{
    int64_t span = d * (k - 1) + 1;
    int64_t padded = in + pad0 + pad1;
    if (k < 1 || s < 1 || d < 1 || span > padded)
        return -1;
    return (padded - span) / s + 1;
}

/* a*b*c*d of non-negative factors, INT64_MAX on overflow (no UB on
 * untrusted sizes; the caller then reports a weight-size mismatch). */
static int64_t mul4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t r;
    if (a < 0 || b < 0 || c < 0 || d < 0 || __builtin_mul_overflow(a, b, &r) ||
        __builtin_mul_overflow(r, c, &r) || __builtin_mul_overflow(r, d, &r))
        return INT64_MAX;
    return r;
}

int ims__infer_shape(const ims__graph *g, uint32_t i_node, int32_t *oh, int32_t *ow,
                     int32_t *oc, ims_error *err)
{
    const ims__node *n = &g->nodes[i_node];
    const char *name = n->name < g->n_strings ? ims__str(g, n->name) : "?";
    const ims__node *in[2] = {NULL, NULL};
    int64_t H = 0, W = 0, C = 0, h = 0, w = 0, c = 0;

    if (n->op >= IMS_OP__COUNT)
        return BAD("node %u (%s): unknown op %u", i_node, name, n->op);
    if (n->act >= IMS_ACT__COUNT || !(n->act_max >= 0) || isinf(n->act_max))
        return BAD("node %u (%s): bad activation", i_node, name);
    if ((uint64_t)n->inputs + n->n_inputs > (uint64_t)g->n_edges + (g->owned ? n->n_inputs : 0))
        return BAD("node %u (%s): input list out of range", i_node, name);
    for (uint32_t k = 0; k < n->n_inputs; k++) {
        uint32_t j = g->edges[n->inputs + k];
        if (j >= i_node)
            return BAD("node %u (%s): input %u is not an earlier node", i_node, name, j);
    }
    if (n->op == IMS_OP_INPUT) {
        if (n->n_inputs != 0 || i_node != 0)
            return BAD("node %u (%s): misplaced input node", i_node, name);
        if (g->pp.width < 1 || g->pp.height < 1 || g->pp.width > IMS_NN_MAX_DIM ||
            g->pp.height > IMS_NN_MAX_DIM)
            return BAD("node 0 (%s): bad input size %dx%d", name, g->pp.width, g->pp.height);
        *oh = g->pp.height, *ow = g->pp.width, *oc = 3;
        return IMS_OK;
    }
    if (n->n_inputs < 1)
        return BAD("node %u (%s): %s needs an input", i_node, name, ims__op_name(n->op));
    in[0] = &g->nodes[g->edges[n->inputs]];
    H = in[0]->h, W = in[0]->w, C = in[0]->c;
    int multi = n->op == IMS_OP_ADD || n->op == IMS_OP_CONCAT;
    if (!multi && n->n_inputs != 1)
        return BAD("node %u (%s): %s takes one input, has %u", i_node, name,
                   ims__op_name(n->op), n->n_inputs);
    if (n->pad_t < 0 || n->pad_b < 0 || n->pad_l < 0 || n->pad_r < 0 ||
        n->pad_t > IMS_NN_MAX_DIM || n->pad_b > IMS_NN_MAX_DIM || n->pad_l > IMS_NN_MAX_DIM ||
        n->pad_r > IMS_NN_MAX_DIM)
        return BAD("node %u (%s): bad padding", i_node, name);
    int windowed = n->op == IMS_OP_CONV2D || n->op == IMS_OP_DWCONV2D ||
                   n->op == IMS_OP_MAXPOOL || n->op == IMS_OP_AVGPOOL;
    if (windowed && (n->kh < 1 || n->kw < 1 || n->kh > IMS_NN_MAX_DIM || n->kw > IMS_NN_MAX_DIM ||
                     n->sh < 1 || n->sw < 1 || n->sh > IMS_NN_MAX_DIM || n->sw > IMS_NN_MAX_DIM ||
                     n->dh < 1 || n->dw < 1 || n->dh > IMS_NN_MAX_DIM || n->dw > IMS_NN_MAX_DIM))
        return BAD("node %u (%s): bad kernel, stride or dilation", i_node, name);
    if (windowed) {
        h = out_len(H, n->pad_t, n->pad_b, n->kh, n->sh, n->dh);
        w = out_len(W, n->pad_l, n->pad_r, n->kw, n->sw, n->dw);
        if (h < 1 || w < 1)
            return BAD("node %u (%s): %dx%d window does not fit input %lldx%lld", i_node, name,
                       n->kh, n->kw, (long long)H, (long long)W);
        if ((n->op == IMS_OP_MAXPOOL || n->op == IMS_OP_AVGPOOL) &&
            (n->pad_t >= n->kh || n->pad_b >= n->kh || n->pad_l >= n->kw || n->pad_r >= n->kw))
            return BAD("node %u (%s): pool padding not smaller than window", i_node, name);
    }
    int64_t need_w = -1; /* expected kernel floats, -1 = no kernel */
    int bias_allowed = 0;
    switch (n->op) {
    case IMS_OP_CONV2D:
        c = n->c;
        need_w = mul4(n->kh, n->kw, C, c);
        bias_allowed = 1;
        break;
    case IMS_OP_DWCONV2D:
        if (n->mult < 1 || n->mult > IMS_NN_MAX_DIM)
            return BAD("node %u (%s): bad depth multiplier", i_node, name);
        c = C * n->mult;
        need_w = (int64_t)n->kh * n->kw * c;
        bias_allowed = 1;
        break;
    case IMS_OP_DENSE:
        h = w = 1;
        c = n->c;
        need_w = mul4(H, W, C, c);
        bias_allowed = 1;
        break;
    case IMS_OP_MAXPOOL:
    case IMS_OP_AVGPOOL:
        c = C;
        break;
    case IMS_OP_GAP:
        h = w = 1, c = C;
        break;
    case IMS_OP_ADD:
    case IMS_OP_CONCAT:
        h = H, w = W, c = 0;
        for (uint32_t k = 0; k < n->n_inputs; k++) {
            const ims__node *x = &g->nodes[g->edges[n->inputs + k]];
            if (x->h != H || x->w != W || (n->op == IMS_OP_ADD && x->c != C))
                return BAD("node %u (%s): input %u shape %dx%dx%d does not match %lldx%lldx%lld",
                           i_node, name, k, x->h, x->w, x->c, (long long)H, (long long)W,
                           (long long)C);
            c += x->c;
        }
        if (n->op == IMS_OP_ADD)
            c = C;
        break;
    case IMS_OP_PAD:
        h = H + n->pad_t + n->pad_b, w = W + n->pad_l + n->pad_r, c = C;
        break;
    case IMS_OP_AFFINE:
        h = H, w = W, c = C;
        if (n->n_weight != 1 && n->n_weight != C)
            return BAD("node %u (%s): affine scale has %lld values for %lld channels", i_node,
                       name, (long long)n->n_weight, (long long)C);
        if (!weights_ok(g, n->weight, n->n_weight))
            return BAD("node %u (%s): weights out of range", i_node, name);
        if (n->bias >= 0 && ((n->n_bias != 1 && n->n_bias != C) ||
                             !weights_ok(g, n->bias, n->n_bias)))
            return BAD("node %u (%s): bad affine shift", i_node, name);
        break;
    case IMS_OP_ACT:
        h = H, w = W, c = C;
        break;
    case IMS_OP_SOFTMAX:
    case IMS_OP_L2NORM:
        if (H != 1 || W != 1)
            return BAD("node %u (%s): %s needs a flat input", i_node, name, ims__op_name(n->op));
        h = 1, w = 1, c = C;
        break;
    case IMS_OP_RESHAPE:
        h = 1, w = 1, c = H * W * C;
        break;
    default:
        return BAD("node %u (%s): unknown op", i_node, name);
    }
    if (c < 1 || c > (int64_t)IMS_NN_MAX_DIM * 64 || h > IMS_NN_MAX_DIM || w > IMS_NN_MAX_DIM)
        return BAD("node %u (%s): bad output shape %lldx%lldx%lld", i_node, name, (long long)h,
                   (long long)w, (long long)c);
    if (need_w >= 0 && (n->n_weight != need_w || !weights_ok(g, n->weight, n->n_weight)))
        return BAD("node %u (%s): kernel has %lld floats, expected %lld (or out of range)",
                   i_node, name, (long long)n->n_weight, (long long)need_w);
    if (n->op != IMS_OP_AFFINE && n->bias >= 0 &&
        (!bias_allowed || n->n_bias != c || !weights_ok(g, n->bias, n->n_bias)))
        return BAD("node %u (%s): bad bias", i_node, name);
    *oh = (int32_t)h, *ow = (int32_t)w, *oc = (int32_t)c;
    return IMS_OK;
}

int ims__graph_validate(const ims__graph *g, ims_error *err)
{
    if (g->n_nodes < 1 || g->nodes[0].op != IMS_OP_INPUT)
        return BAD("graph has no input node");
    if (g->n_strings < 1 || g->strings[g->n_strings - 1] != '\0')
        return BAD("string table is not terminated");
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const ims__node *n = &g->nodes[i];
        if (n->name >= g->n_strings)
            return BAD("node %u: name offset %u out of range", i, n->name);
        int32_t h, w, c;
        int rc = ims__infer_shape(g, i, &h, &w, &c, err);
        if (rc)
            return rc;
        if (h != n->h || w != n->w || c != n->c)
            return BAD("node %u (%s): stored shape %dx%dx%d, inferred %dx%dx%d", i,
                       ims__str(g, n->name), n->h, n->w, n->c, h, w, c);
    }
    for (uint32_t i = 0; i < g->n_aliases; i++)
        if (g->aliases[i].name >= g->n_strings || g->aliases[i].node < 0 ||
            (uint32_t)g->aliases[i].node >= g->n_nodes)
            return BAD("alias %u out of range", i);
    if (g->output >= (int32_t)g->n_nodes || g->output < -1 || g->feature >= (int32_t)g->n_nodes ||
        g->feature < -1)
        return BAD("output or feature node out of range");
    if (g->output >= 0 && g->nodes[g->output].c != (int32_t)g->n_classes)
        return BAD("class count %u does not match output width %d", g->n_classes,
                   g->nodes[g->output].c);
    if (g->model_name >= g->n_strings)
        return BAD("model name out of range");
    uint64_t off = g->classes;
    for (uint32_t i = 0; i < g->n_classes; i++) {
        if (off >= g->n_strings)
            return BAD("class names out of range");
        off += strlen(g->strings + off) + 1;
    }
    return IMS_OK;
}

int32_t ims__graph_find(const ims__graph *g, const char *name)
{
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (!strcmp(ims__str(g, g->nodes[i].name), name))
            return (int32_t)i;
    return -1;
}

int ims__graph_find_tap(const ims__graph *g, const char *name, uint32_t *i_node,
                        ims_error *err)
{
    int32_t i = ims__graph_find(g, name);
    if (i >= 0) {
        *i_node = (uint32_t)i;
        return IMS_OK;
    }
    for (uint32_t k = 0; k < g->n_aliases; k++) {
        const ims__alias *a = &g->aliases[k];
        if (strcmp(ims__str(g, a->name), name))
            continue;
        if (!a->tappable)
            return ims_error_set(err, IMS_ENOTFOUND,
                                 "layer '%s' was folded into '%s' at import and cannot be "
                                 "tapped; tap '%s' instead",
                                 name, ims__str(g, g->nodes[a->node].name),
                                 ims__str(g, g->nodes[a->node].name));
        *i_node = (uint32_t)a->node;
        return IMS_OK;
    }
    return ims_error_set(err, IMS_ENOTFOUND, "no layer named '%s' in model '%s'", name,
                         ims__str(g, g->model_name));
}

double ims__node_macs(const ims__graph *g, const ims__node *n)
{
    const ims__node *in = n->n_inputs ? &g->nodes[ims__node_inputs(g, n)[0]] : NULL;
    double out = (double)n->h * n->w * n->c;
    switch (n->op) {
    case IMS_OP_CONV2D:
        return out * n->kh * n->kw * (in ? in->c : 0);
    case IMS_OP_DWCONV2D:
        return out * n->kh * n->kw;
    case IMS_OP_DENSE:
        return (double)n->c * (in ? (double)in->h * in->w * in->c : 0);
    default:
        return 0;
    }
}

/* ---- public accessors ------------------------------------------------------ */

const char *ims_nn_name(const ims_nn_model *m) { return ims__str(&m->g, m->g.model_name); }
const ims_preprocess *ims_nn_preprocess(const ims_nn_model *m) { return &m->g.pp; }
const char *ims_nn_default_tap(const ims_nn_model *m)
{
    return m->g.feature >= 0 ? ims__str(&m->g, m->g.nodes[m->g.feature].name) : NULL;
}
int ims_nn_n_classes(const ims_nn_model *m) { return m->g.output >= 0 ? (int)m->g.n_classes : 0; }

const char *ims_nn_class_name(const ims_nn_model *m, int i)
{
    if (i < 0 || (uint32_t)i >= m->g.n_classes)
        return NULL;
    uint64_t off = m->g.classes;
    while (i-- > 0)
        off += strlen(m->g.strings + off) + 1;
    return m->g.strings + off;
}

int ims_nn_tap_dim(const ims_nn_model *m, const char *tap, int *dim, ims_error *err)
{
    uint32_t i;
    int rc = ims__graph_find_tap(&m->g, tap, &i, err);
    if (rc)
        return rc;
    *dim = m->g.nodes[i].c; /* spatial taps are pooled over H, W */
    return IMS_OK;
}

void ims_nn_stats(const ims_nn_model *m, size_t *n_params, double *flops)
{
    size_t p = 0;
    double f = 0;
    for (uint32_t i = 0; i < m->g.n_nodes; i++) {
        const ims__node *n = &m->g.nodes[i];
        if (n->weight >= 0)
            p += (size_t)n->n_weight;
        if (n->bias >= 0)
            p += (size_t)n->n_bias;
        f += 2 * ims__node_macs(&m->g, n);
    }
    if (n_params)
        *n_params = p;
    if (flops)
        *flops = f;
}
