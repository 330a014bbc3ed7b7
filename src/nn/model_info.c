/* SPDX-License-Identifier: MIT */
/*
 * model_info.c — human-readable and JSON summaries of a model: input recipe,
 * classes, default tap, totals, and one row per node (output shape,
 * parameters, FLOPs, inputs), then the folded layer names (aliases).
 */
#include <stdio.h>
#include <string.h>

#include "nn_int.h"

static const char *resize_name(int r)
{
    return r == IMS_RESIZE_BILINEAR_ALIGN_CORNERS ? "bilinear-align-corners"
           : r == IMS_RESIZE_BILINEAR_HALF_PIXEL  ? "bilinear-half-pixel"
                                                  : "?";
}
static const char *crop_name(int c)
{
    return c == IMS_CROP_STRETCH ? "stretch" : c == IMS_CROP_CENTER ? "center" : "?";
}

static size_t node_params(const ims__node *n)
{
    return (size_t)(n->weight >= 0 ? n->n_weight : 0) + (size_t)(n->bias >= 0 ? n->n_bias : 0);
}

/* Attributes of node n in a short text form ("3x3/2 pad 0,1,0,1 relu6"). */
static void node_attrs(const ims__node *n, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = '\0';
    switch (n->op) {
    case IMS_OP_CONV2D:
    case IMS_OP_DWCONV2D:
    case IMS_OP_MAXPOOL:
    case IMS_OP_AVGPOOL:
        k += (size_t)snprintf(buf + k, cap - k, "%dx%d", n->kh, n->kw);
        if (k < cap && (n->sh != 1 || n->sw != 1))
            k += (size_t)snprintf(buf + k, cap - k, "/%d,%d", n->sh, n->sw);
        if (k < cap && (n->dh != 1 || n->dw != 1))
            k += (size_t)snprintf(buf + k, cap - k, " dil %d,%d", n->dh, n->dw);
        /* fall through */
    case IMS_OP_PAD:
        if (k < cap && (n->pad_t || n->pad_b || n->pad_l || n->pad_r))
            k += (size_t)snprintf(buf + k, cap - k, " pad %d,%d,%d,%d", n->pad_t, n->pad_b,
                                  n->pad_l, n->pad_r);
        break;
    default:
        break;
    }
    if (k < cap && n->act != IMS_ACT_NONE) {
        if (n->act == IMS_ACT_RELU && n->act_max > 0)
            k += (size_t)snprintf(buf + k, cap - k, "%srelu(max %g)", k ? " " : "",
                                  (double)n->act_max);
        else
            k += (size_t)snprintf(buf + k, cap - k, "%s%s", k ? " " : "", ims__act_name(n->act));
    }
}

int ims_nn_print_info(const ims_nn_model *m, FILE *f)
{
    const ims__graph *g = &m->g;
    size_t n_params;
    double flops;
    ims_nn_stats(m, &n_params, &flops);
    fprintf(f, "model:       %s\n", ims_nn_name(m));
    fprintf(f, "input:       %dx%dx3, resize %s, crop %s, scale %.9g, mean %g,%g,%g, std %g,%g,%g\n",
            g->pp.width, g->pp.height, resize_name(g->pp.resize), crop_name(g->pp.crop),
            (double)g->pp.scale, (double)g->pp.mean[0], (double)g->pp.mean[1],
            (double)g->pp.mean[2], (double)g->pp.std[0], (double)g->pp.std[1],
            (double)g->pp.std[2]);
    fprintf(f, "classes:     ");
    if (ims_nn_n_classes(m) == 0)
        fprintf(f, "(none)");
    for (int i = 0; i < ims_nn_n_classes(m); i++)
        fprintf(f, "%s%s", i ? "," : "", ims_nn_class_name(m, i));
    fprintf(f, "\n");
    if (g->output >= 0)
        fprintf(f, "output:      %s\n", ims__str(g, g->nodes[g->output].name));
    if (g->feature >= 0)
        fprintf(f, "default tap: %s (dim %d)\n", ims__str(g, g->nodes[g->feature].name),
                g->nodes[g->feature].c);
    fprintf(f, "nodes:       %u, parameters %zu, %.3f GFLOPs per image\n\n", g->n_nodes, n_params,
            flops / 1e9);
    fprintf(f, "%4s  %-15s %-28s %12s %10s %9s  %s\n", "#", "op", "attrs", "output", "params",
            "MFLOPs", "name <- inputs");
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const ims__node *n = &g->nodes[i];
        char shape[48], attrs[96];
        snprintf(shape, sizeof shape, "%dx%dx%d", n->h, n->w, n->c);
        node_attrs(n, attrs, sizeof attrs);
        fprintf(f, "%4u  %-15s %-28s %12s %10zu %9.2f  %s", i, ims__op_name(n->op), attrs, shape,
                node_params(n), 2 * ims__node_macs(g, n) / 1e6, ims__str(g, n->name));
        const uint32_t *in = ims__node_inputs(g, n);
        for (uint32_t k = 0; k < n->n_inputs; k++)
            fprintf(f, "%s%u", k ? "," : " <- ", in[k]);
        fputc('\n', f);
    }
    if (g->n_aliases) {
        fprintf(f, "\nfolded layer names (tappable: same output as the node):\n");
        for (uint32_t i = 0; i < g->n_aliases; i++) {
            const ims__alias *a = &g->aliases[i];
            fprintf(f, "  %-40s -> %u %s%s\n", ims__str(g, a->name), a->node,
                    ims__str(g, g->nodes[a->node].name), a->tappable ? "  (tappable)" : "");
        }
    }
    return ferror(f) ? IMS_EIO : IMS_OK;
}

int ims_nn_print_info_json(const ims_nn_model *m, FILE *f)
{
    const ims__graph *g = &m->g;
    size_t n_params;
    double flops;
    ims_nn_stats(m, &n_params, &flops);
    fprintf(f, "{\"model\":");
    ims__json_str(f, ims_nn_name(m));
    fprintf(f, ",\"input\":{\"width\":%d,\"height\":%d,\"channels\":3,\"resize\":\"%s\","
               "\"crop\":\"%s\",\"scale\":%.9g,\"mean\":[%.9g,%.9g,%.9g],\"std\":[%.9g,%.9g,%.9g]}",
            g->pp.width, g->pp.height, resize_name(g->pp.resize), crop_name(g->pp.crop),
            (double)g->pp.scale, (double)g->pp.mean[0], (double)g->pp.mean[1],
            (double)g->pp.mean[2], (double)g->pp.std[0], (double)g->pp.std[1],
            (double)g->pp.std[2]);
    fprintf(f, ",\"classes\":[");
    for (int i = 0; i < ims_nn_n_classes(m); i++) {
        if (i)
            fputc(',', f);
        ims__json_str(f, ims_nn_class_name(m, i));
    }
    fprintf(f, "],\"output\":");
    if (g->output >= 0)
        ims__json_str(f, ims__str(g, g->nodes[g->output].name));
    else
        fprintf(f, "null");
    fprintf(f, ",\"default_tap\":");
    if (g->feature >= 0) {
        ims__json_str(f, ims__str(g, g->nodes[g->feature].name));
        fprintf(f, ",\"default_dim\":%d", g->nodes[g->feature].c);
    } else {
        fprintf(f, "null");
    }
    fprintf(f, ",\"params\":%zu,\"flops\":%.0f,\"layers\":[", n_params, flops);
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const ims__node *n = &g->nodes[i];
        fprintf(f, "%s{\"index\":%u,\"name\":", i ? "," : "", i);
        ims__json_str(f, ims__str(g, n->name));
        fprintf(f, ",\"op\":\"%s\",\"act\":\"%s\"", ims__op_name(n->op), ims__act_name(n->act));
        if (n->act_max > 0)
            fprintf(f, ",\"act_max\":%g", (double)n->act_max);
        fprintf(f, ",\"shape\":[%d,%d,%d],\"params\":%zu,\"flops\":%.0f,\"inputs\":[", n->h,
                n->w, n->c, node_params(n), 2 * ims__node_macs(g, n));
        const uint32_t *in = ims__node_inputs(g, n);
        for (uint32_t k = 0; k < n->n_inputs; k++)
            fprintf(f, "%s%u", k ? "," : "", in[k]);
        fputc(']', f);
        if (n->op == IMS_OP_CONV2D || n->op == IMS_OP_DWCONV2D || n->op == IMS_OP_MAXPOOL ||
            n->op == IMS_OP_AVGPOOL)
            fprintf(f, ",\"kernel\":[%d,%d],\"strides\":[%d,%d],\"dilations\":[%d,%d]", n->kh,
                    n->kw, n->sh, n->sw, n->dh, n->dw);
        if (n->pad_t || n->pad_b || n->pad_l || n->pad_r)
            fprintf(f, ",\"pads\":[%d,%d,%d,%d]", n->pad_t, n->pad_b, n->pad_l, n->pad_r);
        fputc('}', f);
    }
    fprintf(f, "],\"aliases\":[");
    for (uint32_t i = 0; i < g->n_aliases; i++) {
        const ims__alias *a = &g->aliases[i];
        fprintf(f, "%s{\"name\":", i ? "," : "");
        ims__json_str(f, ims__str(g, a->name));
        fprintf(f, ",\"node\":");
        ims__json_str(f, ims__str(g, g->nodes[a->node].name));
        fprintf(f, ",\"tappable\":%s}", a->tappable ? "true" : "false");
    }
    fprintf(f, "]}\n");
    return ferror(f) ? IMS_EIO : IMS_OK;
}
