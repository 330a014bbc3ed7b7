/* SPDX-License-Identifier: MIT */
/*
 * encoder.c — writing an encoder model file: a backbone graph with a
 * trained head appended (ims_nn_write_encoder, formulas in nn.h).
 *
 * Phases:
 *   1. open the backbone and copy its graph into a heap-owned builder graph
 *      (nodes re-added in order with their weights, so shapes are
 *      re-inferred and validated; aliases and the recipe copied);
 *   2. per tap: GAP (spatial taps only; the same pooling sessions apply to
 *      taps), L2NORM, AFFINE by in_scale; then CONCAT -> u;
 *   3. DENSE -> p; the embedding (L2NORM / AFFINE / CONCAT / L2NORM; the
 *      raw part through DENSE d x d + L2NORM first when whitened), made
 *      the default tap; the classifier DENSE + SOFTMAX, made the output,
 *      with the class names as the model's classes;
 *   4. ims__model_write (atomic, checksummed, version 2).
 * Node names start with "encoder/" so they cannot clash with the backbone's.
 * Memory: the builder graph owns copies of everything and is released on
 * every path; ims_nn_write_encoder closes the backbone it opened before
 * returning, ims_nn_write_encoder_from leaves the caller's open.
 */
#include <string.h>

#include "nn_int.h"

static ims__node proto_of(uint32_t op)
{
    ims__node p;
    memset(&p, 0, sizeof p);
    p.op = op;
    p.weight = p.bias = -1;
    p.kh = p.kw = p.sh = p.sw = p.dh = p.dw = 1;
    return p;
}

/* Phase 1: g (initialised, empty) = a heap copy of the backbone's graph. */
static int copy_graph(const ims__graph *src, ims__graph *g, ims_error *err)
{
    int rc;
    g->pp = src->pp;
    for (uint32_t i = 0; i < src->n_nodes; i++) {
        ims__node p = src->nodes[i];
        if (p.weight >= 0 && ims__graph_add_weights(g, src->weights + p.weight,
                                                    (uint64_t)p.n_weight, &p.weight, NULL))
            return ims_error_set(err, IMS_ENOMEM, "encoder: out of memory");
        if (p.bias >= 0 &&
            ims__graph_add_weights(g, src->weights + p.bias, (uint64_t)p.n_bias, &p.bias, NULL))
            return ims_error_set(err, IMS_ENOMEM, "encoder: out of memory");
        if ((rc = ims__graph_add_node(g, &p, ims__str(src, src->nodes[i].name),
                                      ims__node_inputs(src, &src->nodes[i]), src->nodes[i].n_inputs,
                                      NULL, err)))
            return rc;
    }
    for (uint32_t k = 0; k < src->n_aliases; k++)
        if (ims__graph_add_alias(g, ims__str(src, src->aliases[k].name), src->aliases[k].node,
                                 (int)src->aliases[k].tappable))
            return ims_error_set(err, IMS_ENOMEM, "encoder: out of memory");
    return IMS_OK;
}

/* Append a node with one or more inputs; weights copied from w/b (NULL = none). */
static int add(ims__graph *g, uint32_t op, const char *name, const uint32_t *in, uint32_t n_in,
               const float *w, int64_t n_w, const float *b, int64_t n_b, int32_t c, int relu,
               uint32_t *out, ims_error *err)
{
    ims__node p = proto_of(op);
    p.c = c;
    p.act = relu ? IMS_ACT_RELU : IMS_ACT_NONE;
    if (w && ims__graph_add_weights(g, w, (uint64_t)n_w, &p.weight, NULL))
        return ims_error_set(err, IMS_ENOMEM, "encoder: out of memory");
    p.n_weight = w ? n_w : 0;
    if (b && ims__graph_add_weights(g, b, (uint64_t)n_b, &p.bias, NULL))
        return ims_error_set(err, IMS_ENOMEM, "encoder: out of memory");
    p.n_bias = b ? n_b : 0;
    return ims__graph_add_node(g, &p, name, in, n_in, out, err);
}

/* Phases 2-3. */
static int add_head(ims__graph *g, const ims_nn_head *h, ims_error *err)
{
    int rc;
    char name[128];
    uint32_t parts[64], u, p, emb, x;
    int64_t d = 0;
    if (h->n_taps < 1 || h->n_taps > 64 || h->k < 1 || !h->proj || !h->proj_bias)
        return ims_error_set(err, IMS_EINVAL, "encoder: bad head (taps %d, k %d)", h->n_taps, h->k);
    for (int t = 0; t < h->n_taps; t++) {
        uint32_t i;
        if ((rc = ims__graph_find_tap(g, h->taps[t], &i, err)))
            return rc;
        const ims__node *nd = &g->nodes[i];
        d += nd->c;
        if (nd->h * nd->w > 1) {
            snprintf(name, sizeof name, "encoder/tap%d/pool", t);
            if ((rc = add(g, IMS_OP_GAP, name, &i, 1, NULL, 0, NULL, 0, 0, 0, &i, err)))
                return rc;
        }
        snprintf(name, sizeof name, "encoder/tap%d/l2", t);
        if ((rc = add(g, IMS_OP_L2NORM, name, &i, 1, NULL, 0, NULL, 0, 0, 0, &i, err)))
            return rc;
        snprintf(name, sizeof name, "encoder/tap%d/scale", t);
        if ((rc = add(g, IMS_OP_AFFINE, name, &i, 1, &h->in_scale, 1, NULL, 0, 0, 0, &parts[t],
                      err)))
            return rc;
    }
    u = parts[0];
    if (h->n_taps > 1 && (rc = add(g, IMS_OP_CONCAT, "encoder/u", parts, (uint32_t)h->n_taps, NULL,
                                   0, NULL, 0, 0, 0, &u, err)))
        return rc;
    if ((rc = add(g, IMS_OP_DENSE, "encoder/proj", &u, 1, h->proj, d * h->k, h->proj_bias, h->k,
                  h->k, h->proj_relu, &p, err)))
        return rc;
    if ((rc = add(g, IMS_OP_L2NORM, "encoder/proj/l2", &p, 1, NULL, 0, NULL, 0, 0, 0, &x, err)))
        return rc;
    emb = x;
    if (h->fuse) {
        uint32_t two[2], r = u;
        if (h->raw_proj) { /* whitened raw part */
            if (!h->raw_bias)
                return ims_error_set(err, IMS_EINVAL, "encoder: raw projection without a bias");
            if ((rc = add(g, IMS_OP_DENSE, "encoder/raw/whiten", &u, 1, h->raw_proj, d * d,
                          h->raw_bias, d, (int32_t)d, 0, &r, err)) ||
                (rc = add(g, IMS_OP_L2NORM, "encoder/raw/l2", &r, 1, NULL, 0, NULL, 0, 0, 0, &r,
                          err)))
                return rc;
        }
        if ((rc = add(g, IMS_OP_AFFINE, "encoder/raw/scale", &r, 1, &h->raw_w, 1, NULL, 0, 0, 0,
                      &two[0], err)) ||
            (rc = add(g, IMS_OP_AFFINE, "encoder/proj/scale", &x, 1, &h->proj_w, 1, NULL, 0, 0, 0,
                      &two[1], err)) ||
            (rc =
                 add(g, IMS_OP_CONCAT, "encoder/fused", two, 2, NULL, 0, NULL, 0, 0, 0, &x, err)) ||
            (rc = add(g, IMS_OP_L2NORM, "encoder/embedding", &x, 1, NULL, 0, NULL, 0, 0, 0, &emb,
                      err)))
            return rc;
    }
    g->feature = (int32_t)emb;
    g->output = -1;
    g->n_classes = 0;
    if (h->n_classes > 0) {
        uint32_t v = h->cls_on_proj ? p : u, z, pr;
        int64_t cin = h->cls_on_proj ? h->k : d;
        if (!h->cls || !h->cls_bias || !h->class_names)
            return ims_error_set(err, IMS_EINVAL, "encoder: classifier without weights/names");
        if ((rc = add(g, IMS_OP_DENSE, "encoder/logits", &v, 1, h->cls, cin * h->n_classes,
                      h->cls_bias, h->n_classes, h->n_classes, 0, &z, err)) ||
            (rc = add(g, IMS_OP_SOFTMAX, "encoder/probs", &z, 1, NULL, 0, NULL, 0, 0, 0, &pr, err)))
            return rc;
        g->output = (int32_t)pr;
        g->n_classes = (uint32_t)h->n_classes;
        for (int c = 0; c < h->n_classes; c++) {
            uint32_t off;
            if (ims__graph_add_string(g, h->class_names[c] ? h->class_names[c] : "", &off))
                return ims_error_set(err, IMS_ENOMEM, "encoder: out of memory");
            if (c == 0)
                g->classes = off;
        }
    }
    return IMS_OK;
}

int ims_nn_write_encoder(const char *backbone_ism, const ims_nn_head *head, const char *out_ism,
                         ims_error *err)
{
    IMS_ASSERT(backbone_ism && head && out_ism);
    ims_nn_model *m = NULL;
    int rc = ims_nn_open(backbone_ism, &m, err);
    if (rc)
        return rc;
    rc = ims_nn_write_encoder_from(m, head, out_ism, NULL, err);
    ims_nn_close(m);
    return rc;
}

int ims_nn_write_encoder_from(const ims_nn_model *m, const ims_nn_head *head, const char *out_ism,
                              char sha256_hex[65], ims_error *err)
{
    IMS_ASSERT(m && head && out_ism);
    ims__graph g;
    memset(&g, 0, sizeof g);
    int rc = ims__graph_init(&g);
    if (rc)
        return ims_error_set(err, rc, "encoder: out of memory");
    /* the weights' final size, so the builder does not grow (copy and
     * fault in) its buffer by doubling: 17-90 MB of backbone */
    int64_t d = 0, cin, extra;
    for (int t = 0; t < head->n_taps; t++) {
        int dim = 0;
        if (!ims_nn_tap_dim(m, head->taps[t], &dim, NULL))
            d += dim;
    }
    cin = head->cls_on_proj ? head->k : d;
    extra = d * head->k + head->k + (head->raw_proj ? d * d + d : 0) + cin * head->n_classes +
            head->n_classes + 16 * (4 * head->n_taps + 16);
    ims__graph_reserve_weights(&g, m->g.n_weights + 16 * (uint64_t)m->g.n_nodes * 2 +
                                       (uint64_t)extra); /* a hint: may fail */
    if ((rc = copy_graph(&m->g, &g, err)) || (rc = add_head(&g, head, err)))
        goto done;
    char name[256];
    if (head->name)
        snprintf(name, sizeof name, "%s", head->name);
    else
        snprintf(name, sizeof name, "%s-finetuned", ims_nn_name(m));
    if (ims__graph_add_string(&g, name, &g.model_name)) {
        rc = ims_error_set(err, IMS_ENOMEM, "encoder: out of memory");
        goto done;
    }
    rc = ims__model_write_sha(&g, out_ism, sha256_hex, err);
done:
    ims__graph_release(&g);
    return rc;
}
