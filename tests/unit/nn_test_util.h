/* SPDX-License-Identifier: MIT */
/*
 * nn_test_util.h — helpers for the executor tests: building small graphs
 * with random weights (graph.c builder), a naive reference interpreter
 * (plain loops, double accumulation, one image at a time, no planning), and
 * a counting allocator that can fail the Nth allocation.
 */
#ifndef IMS_NN_TEST_UTIL_H
#define IMS_NN_TEST_UTIL_H

#include <float.h>
#include <math.h>
#include <string.h>

#include "check.h"
#include "nn/nn_int.h"

static unsigned long long tu_seed = 12345;

static inline int tu_rand(int lo, int hi) /* inclusive */
{
    return lo + (int)(check_rand_u64(&tu_seed) % (unsigned long long)(hi - lo + 1));
}

/* ---- building -------------------------------------------------------------- */

static inline void tu_model_init(ims_nn_model *m, int h, int w)
{
    memset(m, 0, sizeof *m);
    IMS_ASSERT(ims__graph_init(&m->g) == IMS_OK);
    m->g.pp.width = w;
    m->g.pp.scale = 1.0f / 255;
    m->g.pp.std[0] = m->g.pp.std[1] = m->g.pp.std[2] = 1;
    m->g.pp.height = h;
    IMS_ASSERT(ims__graph_add_string(&m->g, "testnet", &m->g.model_name) == IMS_OK);
    ims__node in = {0};
    in.op = IMS_OP_INPUT;
    in.weight = in.bias = -1;
    uint32_t idx;
    ims_error err;
    IMS_ASSERT(ims__graph_add_node(&m->g, &in, "input", NULL, 0, &idx, &err) == IMS_OK);
}

static inline ims__node tu_proto(uint32_t op)
{
    ims__node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.kh = n.kw = n.sh = n.sw = n.dh = n.dw = n.mult = 1;
    n.weight = n.bias = -1;
    return n;
}

static inline int64_t tu_weights(ims_nn_model *m, int64_t n, float scale)
{
    int64_t off;
    float *w;
    IMS_ASSERT(ims__graph_add_weights(&m->g, NULL, (uint64_t)n, &off, &w) == IMS_OK);
    for (int64_t i = 0; i < n; i++)
        w[i] = check_rand_f(&tu_seed) * scale;
    return off;
}

/* Add a node; weights for kernel/bias are drawn here when nw/nb > 0. */
static inline uint32_t tu_add(ims_nn_model *m, ims__node p, const char *name, const uint32_t *in,
                       uint32_t n_in, int64_t nw, int64_t nb)
{
    char buf[64];
    if (!name) {
        snprintf(buf, sizeof buf, "n%u", m->g.n_nodes);
        name = buf;
    }
    if (nw > 0) {
        p.weight = tu_weights(m, nw, 1.0f / sqrtf((float)(nw > 64 ? 64 : nw)));
        p.n_weight = nw;
    }
    if (nb > 0) {
        p.bias = tu_weights(m, nb, 0.5f);
        p.n_bias = nb;
    }
    uint32_t idx = 0;
    ims_error err;
    int rc = ims__graph_add_node(&m->g, &p, name, in, n_in, &idx, &err);
    if (rc) {
        fprintf(stderr, "tu_add %s: %s\n", name, err.msg);
        IMS_ASSERT(rc == IMS_OK);
    }
    return idx;
}

static inline uint32_t tu_conv(ims_nn_model *m, uint32_t x, int cout, int k, int s, int pad,
                        uint32_t act, float act_max)
{
    ims__node p = tu_proto(IMS_OP_CONV2D);
    p.kh = p.kw = k, p.sh = p.sw = s;
    p.pad_t = p.pad_b = p.pad_l = p.pad_r = pad;
    p.c = cout, p.act = act, p.act_max = act_max;
    int cin = m->g.nodes[x].c;
    return tu_add(m, p, NULL, &x, 1, (int64_t)k * k * cin * cout, cout);
}

static inline void tu_model_free(ims_nn_model *m) { ims__graph_release(&m->g); }

/* ---- naive reference interpreter ------------------------------------------------ */

typedef struct tu_ref {
    int n_nodes;
    float **out; /* per node, h*w*c floats for one image */
} tu_ref;

static inline double tu_act(double v, const ims__node *n)
{
    switch (n->act) {
    case IMS_ACT_RELU:
        v = v > 0 ? v : 0;
        return n->act_max > 0 && v > n->act_max ? n->act_max : v;
    case IMS_ACT_SIGMOID:
        return 1 / (1 + exp(-v));
    case IMS_ACT_TANH:
        return tanh(v);
    }
    return v;
}

/* Run graph g on one image x (h*w*3) with plain loops; r->out[i] per node. */
static inline void tu_ref_run(const ims__graph *g, const float *x, tu_ref *r)
{
    r->n_nodes = (int)g->n_nodes;
    r->out = calloc(g->n_nodes, sizeof *r->out);
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const ims__node *n = &g->nodes[i];
        float *y = calloc((size_t)n->h * n->w * n->c, sizeof(float));
        r->out[i] = y;
        const uint32_t *in = ims__node_inputs(g, n);
        const ims__node *a = n->n_inputs ? &g->nodes[in[0]] : NULL;
        const float *X = n->n_inputs ? r->out[in[0]] : NULL;
        const float *W = n->weight >= 0 ? g->weights + n->weight : NULL;
        const float *B = n->bias >= 0 ? g->weights + n->bias : NULL;
        switch (n->op) {
        case IMS_OP_INPUT:
            memcpy(y, x, (size_t)n->h * n->w * 3 * sizeof(float));
            break;
        case IMS_OP_CONV2D:
        case IMS_OP_DWCONV2D:
        case IMS_OP_MAXPOOL:
        case IMS_OP_AVGPOOL:
            for (int oy = 0; oy < n->h; oy++)
                for (int ox = 0; ox < n->w; ox++)
                    for (int co = 0; co < n->c; co++) {
                        double acc = n->op == IMS_OP_MAXPOOL ? -DBL_MAX : 0;
                        int cnt = 0;
                        for (int ky = 0; ky < n->kh; ky++)
                            for (int kx = 0; kx < n->kw; kx++) {
                                int iy = oy * n->sh - n->pad_t + ky * n->dh;
                                int ix = ox * n->sw - n->pad_l + kx * n->dw;
                                if (iy < 0 || iy >= a->h || ix < 0 || ix >= a->w)
                                    continue;
                                const float *xp = X + ((size_t)iy * a->w + ix) * a->c;
                                cnt++;
                                if (n->op == IMS_OP_CONV2D) {
                                    for (int ci = 0; ci < a->c; ci++)
                                        acc += (double)xp[ci] *
                                               W[(((size_t)ky * n->kw + kx) * a->c + ci) * n->c +
                                                 co];
                                } else if (n->op == IMS_OP_DWCONV2D) {
                                    acc += (double)xp[co / n->mult] *
                                           W[((size_t)ky * n->kw + kx) * n->c + co];
                                } else if (n->op == IMS_OP_MAXPOOL) {
                                    acc = xp[co] > acc ? xp[co] : acc;
                                } else {
                                    acc += xp[co];
                                }
                            }
                        if (n->op == IMS_OP_AVGPOOL)
                            acc /= cnt;
                        if (B)
                            acc += B[co];
                        y[((size_t)oy * n->w + ox) * n->c + co] = (float)tu_act(acc, n);
                    }
            break;
        case IMS_OP_DENSE: {
            size_t K = (size_t)a->h * a->w * a->c;
            for (int co = 0; co < n->c; co++) {
                double acc = B ? B[co] : 0;
                for (size_t k = 0; k < K; k++)
                    acc += (double)X[k] * W[k * n->c + co];
                y[co] = (float)tu_act(acc, n);
            }
            break;
        }
        case IMS_OP_GAP:
            for (int c = 0; c < n->c; c++) {
                double acc = 0;
                for (int p = 0; p < a->h * a->w; p++)
                    acc += X[(size_t)p * a->c + c];
                y[c] = (float)(acc / (a->h * a->w));
            }
            break;
        case IMS_OP_ADD:
            for (size_t e = 0; e < (size_t)n->h * n->w * n->c; e++) {
                double acc = 0;
                for (uint32_t k = 0; k < n->n_inputs; k++)
                    acc += r->out[in[k]][e];
                y[e] = (float)tu_act(acc, n);
            }
            break;
        case IMS_OP_CONCAT: {
            int c0 = 0;
            for (uint32_t k = 0; k < n->n_inputs; k++) {
                const ims__node *b = &g->nodes[in[k]];
                for (int p = 0; p < n->h * n->w; p++)
                    for (int c = 0; c < b->c; c++)
                        y[(size_t)p * n->c + c0 + c] = r->out[in[k]][(size_t)p * b->c + c];
                c0 += b->c;
            }
            break;
        }
        case IMS_OP_PAD:
            for (int iy = 0; iy < a->h; iy++)
                for (int ix = 0; ix < a->w; ix++)
                    for (int c = 0; c < n->c; c++)
                        y[(((size_t)iy + n->pad_t) * n->w + ix + n->pad_l) * n->c + c] =
                            X[((size_t)iy * a->w + ix) * a->c + c];
            break;
        case IMS_OP_AFFINE:
        case IMS_OP_ACT:
            for (size_t e = 0; e < (size_t)n->h * n->w * n->c; e++) {
                int c = (int)(e % (size_t)n->c);
                double v = X[e];
                if (n->op == IMS_OP_AFFINE) {
                    v = v * W[n->n_weight == 1 ? 0 : c];
                    if (B)
                        v += B[n->n_bias == 1 ? 0 : c];
                }
                y[e] = (float)tu_act(v, n);
            }
            break;
        case IMS_OP_SOFTMAX: {
            double mx = -DBL_MAX, sum = 0;
            for (int c = 0; c < n->c; c++)
                mx = X[c] > mx ? X[c] : mx;
            for (int c = 0; c < n->c; c++)
                sum += exp(X[c] - mx);
            for (int c = 0; c < n->c; c++)
                y[c] = (float)(exp(X[c] - mx) / sum);
            break;
        }
        case IMS_OP_RESHAPE:
            memcpy(y, X, (size_t)n->c * sizeof(float));
            break;
        }
    }
}

static inline void tu_ref_free(tu_ref *r)
{
    for (int i = 0; i < r->n_nodes; i++)
        free(r->out[i]);
    free(r->out);
}

/* Pooled (GAP) reference of node i. */
static inline void tu_ref_pool(const ims__graph *g, const tu_ref *r, uint32_t i, float *out)
{
    const ims__node *n = &g->nodes[i];
    for (int c = 0; c < n->c; c++) {
        double acc = 0;
        for (int p = 0; p < n->h * n->w; p++)
            acc += r->out[i][(size_t)p * n->c + c];
        out[c] = (float)(acc / (n->h * n->w));
    }
}

/* Max |a-b| / (1 + max|b|) over n values. */
static inline double tu_rel_err(const float *a, const float *b, size_t n)
{
    double mx = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > mx)
            mx = fabs(b[i]);
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d))
            d = e; /* NaN-propagating */
    }
    return d / (1 + mx);
}

static inline float *tu_rand_input(int n, int h, int w)
{
    size_t k = (size_t)n * h * w * 3;
    float *x = malloc(k * sizeof(float));
    for (size_t i = 0; i < k; i++)
        x[i] = (check_rand_f(&tu_seed) + 1) * 0.5f;
    return x;
}

/* ---- checking a graph against the reference ----------------------------------- */

static inline const char *tu_name(const ims_nn_model *m, uint32_t i)
{
    return ims__str(&m->g, m->g.nodes[i].name);
}

/* Run m with the given tap nodes at every kernel level, 1 and 2 threads,
 * batch n_img and image by image; compare with the naive reference (tol is
 * relative to the largest reference value). Returns the number of failures. */
static inline int tu_check_graph(ims_nn_model *m, const uint32_t *taps, int n_taps, int want_probs,
                          int n_img, double tol, const char *label)
{
    int fails0 = check_failures;
    const ims__graph *g = &m->g;
    const char *names[16];
    int dim = 0;
    for (int t = 0; t < n_taps; t++) {
        names[t] = tu_name(m, taps[t]);
        dim += g->nodes[taps[t]].c;
    }
    int H = g->pp.height, W = g->pp.width, nc = want_probs ? (int)g->n_classes : 0;
    float *x = tu_rand_input(n_img, H, W);
    float *want = calloc((size_t)n_img * dim + 1, sizeof(float));
    float *wantp = calloc((size_t)n_img * nc + 1, sizeof(float));
    for (int b = 0; b < n_img; b++) {
        tu_ref r;
        tu_ref_run(g, x + (size_t)b * H * W * 3, &r);
        int off = 0;
        for (int t = 0; t < n_taps; t++) {
            tu_ref_pool(g, &r, taps[t], want + (size_t)b * dim + off);
            off += g->nodes[taps[t]].c;
        }
        if (nc)
            memcpy(wantp + (size_t)b * nc, r.out[g->output], (size_t)nc * sizeof(float));
        tu_ref_free(&r);
    }
    enum { MAX_LEVELS = 8 }; /* one row per kernel level (IMS_CPU_*) */
    float *got[MAX_LEVELS][2] = {{NULL, NULL}};
    int top = ims_cpu_detect();
    IMS_ASSERT(top < MAX_LEVELS);
    for (int level = 0; level <= top; level++) {
        ims_cpu_set_level(level);
        for (int th = 1; th <= 2; th++) {
            ims_nn_session_opts o = {names, n_taps, want_probs, n_img, th};
            ims_nn_session *s = NULL;
            ims_error err;
            int rc = ims_nn_session_new(m, &o, &s, &err);
            CHECK_MSG(rc == IMS_OK, "%s: session_new: %s", label, err.msg);
            if (rc)
                continue;
            CHECK_EQ(ims_nn_session_dim(s), dim);
            float *f = calloc((size_t)n_img * dim + 1, sizeof(float));
            float *pr = calloc((size_t)n_img * nc + 1, sizeof(float));
            float *f1 = calloc((size_t)n_img * dim + 1, sizeof(float));
            float *p1 = calloc((size_t)n_img * nc + 1, sizeof(float));
            CHECK_RC(ims_nn_session_run(s, x, n_img, f, nc ? pr : NULL, &err), IMS_OK);
            for (int b = 0; b < n_img; b++) /* image by image */
                CHECK_RC(ims_nn_session_run(s, x + (size_t)b * H * W * 3, 1, f1 + (size_t)b * dim,
                                            nc ? p1 + (size_t)b * nc : NULL, &err),
                         IMS_OK);
            double e = tu_rel_err(f, want, (size_t)n_img * dim);
            CHECK_MSG(e <= tol, "%s: level %s threads %d: features rel err %.3g > %.3g", label,
                      ims_cpu_level_name(level), th, e, tol);
            e = tu_rel_err(f1, f, (size_t)n_img * dim);
            CHECK_MSG(e <= 1e-5, "%s: level %s threads %d: batch vs single rel err %.3g", label,
                      ims_cpu_level_name(level), th, e);
            if (nc) {
                e = tu_rel_err(pr, wantp, (size_t)n_img * nc);
                CHECK_MSG(e <= tol, "%s: level %s: probs rel err %.3g", label,
                          ims_cpu_level_name(level), e);
                e = tu_rel_err(p1, pr, (size_t)n_img * nc);
                CHECK_MSG(e <= 1e-5, "%s: batch vs single probs rel err %.3g", label, e);
            }
            free(pr);
            free(f1);
            free(p1);
            got[level][th - 1] = f;
            ims_nn_session_free(s);
        }
        if (got[level][0] && got[level][1]) {
            double e = tu_rel_err(got[level][1], got[level][0], (size_t)n_img * dim);
            CHECK_MSG(e <= 1e-5, "%s: level %s: 1 vs 2 threads rel err %.3g", label,
                      ims_cpu_level_name(level), e);
        }
    }
    ims_cpu_set_level(top);
    for (int a = 0; a < MAX_LEVELS; a++)
        for (int b = 0; b < 2; b++)
            free(got[a][b]);
    free(x);
    free(want);
    free(wantp);
    return check_failures - fails0;
}

/* ---- failing allocator ---------------------------------------------------------- */

static long tu_alloc_live, tu_alloc_calls, tu_alloc_fail_at; /* fail_at 0 = never */

static inline void *tu_malloc(size_t n, void *ud)
{
    (void)ud;
    if (tu_alloc_fail_at && ++tu_alloc_calls >= tu_alloc_fail_at)
        return NULL;
    void *p = malloc(n);
    if (p)
        tu_alloc_live++;
    return p;
}
static inline void *tu_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    if (tu_alloc_fail_at && ++tu_alloc_calls >= tu_alloc_fail_at)
        return NULL;
    void *q = realloc(p, n);
    if (q && !p)
        tu_alloc_live++;
    return q;
}
static inline void tu_free(void *p, void *ud)
{
    (void)ud;
    if (p)
        tu_alloc_live--;
    free(p);
}
static const ims_allocator tu_allocator = {tu_malloc, tu_realloc, tu_free, NULL};

#endif /* IMS_NN_TEST_UTIL_H */
