/* SPDX-License-Identifier: MIT */
/*
 * import_tfjs.c — TF.js model import: the entry point, weight shards and the
 * helpers both translators share.
 *
 * Phases:
 *   1. parse model.json (jansson) and tell a layers-model (Keras topology,
 *      "modelTopology.model_config" or "modelTopology.class_name") from a
 *      graph-model ("format": "graph-model", or "modelTopology.node");
 *   2. read the weight shards named by weightsManifest (relative to the
 *      model.json's folder, concatenated in manifest order) and dequantize
 *      every tensor to float32: uint8/uint16 as (float)(q * scale + min)
 *      evaluated in double (TF.js io_utils.decodeWeights), float16 exactly;
 *      tensors are later looked up by NAME (manifest order is not layer
 *      order);
 *   3. translate (import_tfjs_layers.c / import_tfjs_graph.c) into the graph
 *      IR of nn_int.h, folding BatchNorm, activations and zero padding;
 *   4. finish: model name, class names, preprocessing recipe, default tap,
 *      full validation; ims_nn_import_tfjs then writes the .ism atomically.
 *
 * Memory: the dequantized weights live on the heap until the graph (which
 * copies what it uses) is built; both are freed before returning.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "import_tfjs_int.h"

#define MAX_MODEL_JSON (256u << 20)  /* refuse absurd model.json files */
#define MAX_WEIGHT_BYTES (4ull << 30) /* and absurd shard totals */

/* Read a whole file into a NUL-terminated heap buffer. */
static int read_file(const char *path, uint64_t max, char **out, size_t *len, ims_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot open", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 1 << 20;
            if (ncap > max + 65536 + 1)
                ncap = max + 65536 + 1;
            if (ncap <= cap) {
                fclose(f);
                ims_free(buf);
                return ims_error_set(err, IMS_ETOOBIG, "%s: file too large", path);
            }
            char *nb = ims_realloc(buf, ncap);
            if (!nb) {
                fclose(f);
                ims_free(buf);
                return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", path);
            }
            buf = nb, cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (n > max) {
            fclose(f);
            ims_free(buf);
            return ims_error_set(err, IMS_ETOOBIG, "%s: file too large", path);
        }
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        ims_free(buf);
        return ims_error_set(err, IMS_EIO, "%s: read error", path);
    }
    if (!buf && !(buf = ims_malloc(1)))
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", path);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return IMS_OK;
}

ims__node ims__tfjs_proto(uint32_t op)
{
    ims__node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.kh = n.kw = n.sh = n.sw = n.dh = n.dw = 1;
    n.weight = n.bias = -1;
    return n;
}

void ims__tfjs_weights_free(ims__tfjs_weights *ws)
{
    if (!ws)
        return;
    for (size_t i = 0; i < ws->n; i++) {
        ims_free(ws->w[i].name);
        ims_free(ws->w[i].data);
    }
    ims_free(ws->w);
    ws->w = NULL;
    ws->n = 0;
}

ims__tfjs_weight *ims__tfjs_weight_find(ims__tfjs_weights *ws, const char *name)
{
    for (size_t i = 0; i < ws->n; i++)
        if (!strcmp(ws->w[i].name, name))
            return &ws->w[i];
    size_t ln = strlen(name);
    for (size_t i = 0; i < ws->n; i++) {
        size_t lw = strlen(ws->w[i].name);
        if (lw > ln && ws->w[i].name[lw - ln - 1] == '/' && !strcmp(ws->w[i].name + lw - ln, name))
            return &ws->w[i];
    }
    return NULL;
}

/* A shard path must stay inside the model's folder. */
static int safe_rel_path(const char *p)
{
    if (!*p || p[0] == '/' || strstr(p, "..") || strchr(p, '\\'))
        return 0;
    return 1;
}

int ims__tfjs_weights_read(json_t *manifest, const char *dir, ims__tfjs_weights *out,
                           ims_error *err)
{
    memset(out, 0, sizeof *out);
    if (!json_is_array(manifest))
        return ims_error_set(err, IMS_ECORRUPT, "weightsManifest is not an array");
    /* 1. concatenate the shards */
    unsigned char *all = NULL;
    size_t n_all = 0;
    size_t n_specs = 0;
    int rc = IMS_OK;
    size_t gi;
    json_t *grp;
    json_array_foreach(manifest, gi, grp) {
        json_t *paths = json_object_get(grp, "paths"), *weights = json_object_get(grp, "weights");
        if (!json_is_array(paths) || !json_is_array(weights)) {
            rc = ims_error_set(err, IMS_ECORRUPT, "weightsManifest[%zu]: no paths/weights", gi);
            goto fail;
        }
        n_specs += json_array_size(weights);
        size_t pi;
        json_t *p;
        json_array_foreach(paths, pi, p) {
            const char *rel = json_string_value(p);
            if (!rel || !safe_rel_path(rel)) {
                rc = ims_error_set(err, IMS_ECORRUPT, "weightsManifest[%zu].paths[%zu]: bad path",
                                   gi, pi);
                goto fail;
            }
            char path[4096];
            if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, rel) >= sizeof path) {
                rc = ims_error_set(err, IMS_EINVAL, "%s/%s: path too long", dir, rel);
                goto fail;
            }
            char *buf;
            size_t len;
            rc = read_file(path, MAX_WEIGHT_BYTES, &buf, &len, err);
            if (rc)
                goto fail;
            if (n_all + len > MAX_WEIGHT_BYTES) {
                ims_free(buf);
                rc = ims_error_set(err, IMS_ETOOBIG, "%s: weight shards too large", path);
                goto fail;
            }
            unsigned char *na = ims_realloc(all, n_all + len + 1);
            if (!na) {
                ims_free(buf);
                rc = ims_error_set(err, IMS_ENOMEM, "%s: out of memory", path);
                goto fail;
            }
            all = na;
            memcpy(all + n_all, buf, len);
            n_all += len;
            ims_free(buf);
        }
    }
    /* 2. decode the specs in manifest order */
    out->w = ims_calloc(n_specs ? n_specs : 1, sizeof *out->w);
    if (!out->w) {
        rc = ims_error_set(err, IMS_ENOMEM, "weights: out of memory");
        goto fail;
    }
    size_t off = 0;
    json_array_foreach(manifest, gi, grp) {
        size_t wi;
        json_t *spec;
        json_array_foreach(json_object_get(grp, "weights"), wi, spec) {
            const char *name = json_string_value(json_object_get(spec, "name"));
            const char *dtype = json_string_value(json_object_get(spec, "dtype"));
            json_t *shape = json_object_get(spec, "shape");
            json_t *q = json_object_get(spec, "quantization");
            if (!name || !dtype || !json_is_array(shape) ||
                json_array_size(shape) > IMS_TFJS_MAX_RANK) {
                rc = ims_error_set(err, IMS_ECORRUPT, "weight %zu: bad name, dtype or shape",
                                   out->n);
                goto fail;
            }
            ims__tfjs_weight *w = &out->w[out->n];
            w->name = ims_strdup(name);
            if (!w->name) {
                rc = ims_error_set(err, IMS_ENOMEM, "weights: out of memory");
                goto fail;
            }
            out->n++;
            w->rank = (int)json_array_size(shape);
            w->n = 1;
            for (int k = 0; k < w->rank; k++) {
                json_t *d = json_array_get(shape, (size_t)k);
                json_int_t v = json_integer_value(d);
                if (!json_is_integer(d) || v < 0 || v > (1 << 30) ||
                    (w->n *= v) > (int64_t)(1u << 30)) {
                    rc = ims_error_set(err, IMS_ECORRUPT, "weight '%s': bad shape", name);
                    goto fail;
                }
                w->shape[k] = v;
            }
            const char *qd = q ? json_string_value(json_object_get(q, "dtype")) : NULL;
            if (q && !qd) {
                rc = ims_error_set(err, IMS_ECORRUPT, "weight '%s': quantization without dtype",
                                   name);
                goto fail;
            }
            size_t esz;
            if (qd) {
                if (strcmp(dtype, "float32")) {
                    rc = ims_error_set(err, IMS_EUNSUPPORTED,
                                       "weight '%s': quantized dtype %s is not supported", name,
                                       dtype);
                    goto fail;
                }
                if (!strcmp(qd, "uint8"))
                    esz = 1;
                else if (!strcmp(qd, "uint16") || !strcmp(qd, "float16"))
                    esz = 2;
                else {
                    rc = ims_error_set(err, IMS_EUNSUPPORTED,
                                       "weight '%s': quantization dtype '%s' is not supported",
                                       name, qd);
                    goto fail;
                }
            } else if (!strcmp(dtype, "float32") || !strcmp(dtype, "int32")) {
                esz = 4;
            } else {
                rc = ims_error_set(err, IMS_EUNSUPPORTED, "weight '%s': dtype '%s' is not supported",
                                   name, dtype);
                goto fail;
            }
            size_t bytes = (size_t)w->n * esz;
            if (off > n_all || bytes > n_all - off) {
                rc = ims_error_set(err, IMS_ECORRUPT,
                                   "weight '%s': shards end at byte %zu, tensor needs %zu more at "
                                   "%zu",
                                   name, n_all, bytes, off);
                goto fail;
            }
            w->data = ims_malloc((size_t)(w->n ? w->n : 1) * sizeof(float));
            if (!w->data) {
                rc = ims_error_set(err, IMS_ENOMEM, "weight '%s': out of memory", name);
                goto fail;
            }
            const unsigned char *src = all + off;
            if (qd && strcmp(qd, "float16")) {
                json_t *jmin = json_object_get(q, "min"), *jscale = json_object_get(q, "scale");
                if (!json_is_number(jmin) || !json_is_number(jscale)) {
                    rc = ims_error_set(err, IMS_ECORRUPT, "weight '%s': quantization needs min and "
                                                          "scale", name);
                    goto fail;
                }
                double mn = json_number_value(jmin), sc = json_number_value(jscale);
                for (int64_t k = 0; k < w->n; k++) {
                    double v = esz == 1 ? src[k] : (double)(src[2 * k] | src[2 * k + 1] << 8);
                    w->data[k] = (float)(v * sc + mn);
                }
            } else if (qd) {
                for (int64_t k = 0; k < w->n; k++)
                    w->data[k] = ims__f16_to_f32((uint16_t)(src[2 * k] | src[2 * k + 1] << 8));
            } else if (!strcmp(dtype, "int32")) {
                for (int64_t k = 0; k < w->n; k++)
                    w->data[k] = (float)(int32_t)ims__get_u32(src + 4 * k);
            } else {
                for (int64_t k = 0; k < w->n; k++) {
                    uint32_t u = ims__get_u32(src + 4 * k);
                    memcpy(&w->data[k], &u, 4);
                }
            }
            off += bytes;
        }
    }
    if (off != n_all) {
        rc = ims_error_set(err, IMS_ECORRUPT,
                           "weight shards hold %zu bytes but the manifest describes %zu", n_all,
                           off);
        goto fail;
    }
    ims_free(all);
    return IMS_OK;
fail:
    ims_free(all);
    ims__tfjs_weights_free(out);
    return rc;
}

/* ---- shared translation helpers ------------------------------------------ */

void ims__tf_same_pad(int64_t in, int64_t k, int64_t s, int64_t d, int32_t *before,
                      int32_t *after)
{
    int64_t out = (in + s - 1) / s;
    int64_t total = (out - 1) * s + (k - 1) * d + 1 - in;
    if (total < 0)
        total = 0;
    *before = (int32_t)(total / 2);
    *after = (int32_t)(total - total / 2);
}

int ims__fold_batchnorm(ims__graph *g, uint32_t i, const float *gamma, const float *beta,
                        const float *mean, const float *var, double eps)
{
    ims__node *n = &g->nodes[i];
    int64_t c = n->c;
    if (n->bias < 0) {
        int64_t off;
        if (ims__graph_add_weights(g, NULL, (uint64_t)c, &off, NULL))
            return IMS_ENOMEM;
        n = &g->nodes[i];
        n->bias = off;
        n->n_bias = c;
    }
    float *w = g->weights + n->weight, *b = g->weights + n->bias;
    int64_t rows = n->n_weight / c; /* output channel is the fastest axis */
    for (int64_t o = 0; o < c; o++) {
        double s = 1.0 / sqrt((double)var[o] + eps) * (gamma ? gamma[o] : 1.0);
        for (int64_t r = 0; r < rows; r++)
            w[r * c + o] = (float)(w[r * c + o] * s);
        b[o] = (float)(((double)b[o] - mean[o]) * s + (beta ? beta[o] : 0.0));
    }
    return IMS_OK;
}

void ims__batchnorm_affine(int64_t c, const float *gamma, const float *beta, const float *mean,
                           const float *var, double eps, float *scale, float *shift)
{
    for (int64_t o = 0; o < c; o++) {
        double s = 1.0 / sqrt((double)var[o] + eps) * (gamma ? gamma[o] : 1.0);
        scale[o] = (float)s;
        shift[o] = (float)((beta ? beta[o] : 0.0) - mean[o] * s);
    }
}

void ims__untap_aliases(ims__graph *g, uint32_t i)
{
    for (uint32_t k = 0; k < g->n_aliases; k++)
        if (g->aliases[k].node == (int32_t)i)
            g->aliases[k].tappable = 0;
}

int ims__rename_fused(ims__graph *g, uint32_t i, const char *new_name)
{
    ims__untap_aliases(g, i);
    /* the alias copies the old name: add_string may move the table */
    char *old = ims_strdup(ims__str(g, g->nodes[i].name));
    if (!old)
        return IMS_ENOMEM;
    int rc = ims__graph_add_alias(g, old, (int32_t)i, 0);
    ims_free(old);
    uint32_t off;
    if (rc || ims__graph_add_string(g, new_name, &off))
        return IMS_ENOMEM;
    g->nodes[i].name = off;
    return IMS_OK;
}

int ims__can_fuse_act(const ims__graph *g, uint32_t i)
{
    const ims__node *n = &g->nodes[i];
    if (n->act != IMS_ACT_NONE)
        return 0;
    switch (n->op) {
    case IMS_OP_CONV2D:
    case IMS_OP_DWCONV2D:
    case IMS_OP_DENSE:
    case IMS_OP_ADD:
    case IMS_OP_AFFINE:
        return 1;
    default:
        return 0;
    }
}

/* ---- finishing --------------------------------------------------------- */

/* Default feature tap: walk back from the classifier output over the flat
 * head (Softmax, Dense, activations) to the first node that is not part of
 * it: the pooled features the classifier reads. */
static int32_t find_feature(const ims__graph *g)
{
    if (g->output < 0)
        return -1;
    uint32_t i = (uint32_t)g->output;
    for (;;) {
        const ims__node *n = &g->nodes[i];
        if (n->op != IMS_OP_SOFTMAX && n->op != IMS_OP_DENSE && n->op != IMS_OP_ACT)
            return (int32_t)i;
        if (n->n_inputs != 1)
            return -1;
        i = ims__node_inputs(g, n)[0];
    }
}

/* The nsfwjs recipe (image.h) at the model's input size. */
static void nsfwjs_recipe(ims_preprocess *pp, int w, int h)
{
    ims_preprocess_nsfwjs(pp, w);
    pp->width = w;
    pp->height = h;
}

static int finish(ims__graph *g, const ims_nn_import_opts *opts, const char *file_name,
                  ims_error *err)
{
    const char *name = opts && opts->name ? opts->name : file_name;
    if (ims__graph_add_string(g, name && *name ? name : "model", &g->model_name))
        return ims_error_set(err, IMS_ENOMEM, "out of memory");
    int w = g->pp.width, h = g->pp.height;
    if (opts && opts->pp) {
        if (opts->pp->width != w || opts->pp->height != h)
            return ims_error_set(err, IMS_EINVAL,
                                 "preprocessing recipe is %dx%d but the model input is %dx%d",
                                 opts->pp->width, opts->pp->height, w, h);
        g->pp = *opts->pp;
    } else {
        nsfwjs_recipe(&g->pp, w, h);
    }
    if (g->output >= 0) {
        int nc = g->nodes[g->output].c;
        if (opts && opts->classes && opts->n_classes != nc)
            return ims_error_set(err, IMS_EINVAL,
                                 "%d class names given but the classifier has %d outputs",
                                 opts->n_classes, nc);
        for (int k = 0; k < nc; k++) {
            char buf[32];
            const char *cn = buf;
            if (opts && opts->classes)
                cn = opts->classes[k];
            else
                snprintf(buf, sizeof buf, "class%d", k);
            uint32_t off;
            if (ims__graph_add_string(g, cn, &off))
                return ims_error_set(err, IMS_ENOMEM, "out of memory");
            if (k == 0)
                g->classes = off;
        }
        g->n_classes = (uint32_t)nc;
    } else if (opts && opts->classes && opts->n_classes) {
        return ims_error_set(err, IMS_EINVAL, "class names given but the model has no softmax "
                                              "classifier output");
    }
    if (opts && opts->default_tap) {
        uint32_t i;
        int rc = ims__graph_find_tap(g, opts->default_tap, &i, err);
        if (rc)
            return rc;
        g->feature = (int32_t)i;
    } else {
        g->feature = find_feature(g);
    }
    return ims__graph_validate(g, err);
}

int ims__tfjs_import(const char *model_json, const ims_nn_import_opts *opts, ims__graph *g,
                     ims_error *err)
{
    char *text = NULL;
    size_t len;
    ims__tfjs_weights ws = {0};
    json_t *root = NULL;
    int rc = ims__graph_init(g);
    if (rc)
        return ims_error_set(err, rc, "out of memory");
    rc = read_file(model_json, MAX_MODEL_JSON, &text, &len, err);
    if (rc)
        goto out;
    json_error_t jerr;
    root = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    if (!root) {
        rc = ims_error_set(err, IMS_ECORRUPT, "%s:%d:%d: %s", model_json, jerr.line, jerr.column,
                           jerr.text);
        goto out;
    }
    json_t *topo = json_object_get(root, "modelTopology");
    if (!json_is_object(topo)) {
        rc = ims_error_set(err, IMS_EFORMAT, "%s: not a TF.js model (no modelTopology)",
                           model_json);
        goto out;
    }
    char dir[4096];
    const char *slash = strrchr(model_json, '/');
    if (slash) {
        size_t dl = (size_t)(slash - model_json);
        if (dl >= sizeof dir) {
            rc = ims_error_set(err, IMS_EINVAL, "%s: path too long", model_json);
            goto out;
        }
        memcpy(dir, model_json, dl);
        dir[dl] = '\0';
        if (!dl)
            strcpy(dir, "/");
    } else {
        strcpy(dir, ".");
    }
    rc = ims__tfjs_weights_read(json_object_get(root, "weightsManifest"), dir, &ws, err);
    if (rc) {
        char m[IMS_ERROR_MSG_MAX];
        snprintf(m, sizeof m, "%s", err ? err->msg : "");
        ims_error_set(err, rc, "%s: %s", model_json, m);
        goto out;
    }
    const char *fmt = json_string_value(json_object_get(root, "format"));
    int is_graph = (fmt && !strcmp(fmt, "graph-model")) || json_is_array(json_object_get(topo, "node"));
    char file_name[256] = "";
    if (is_graph) {
        rc = ims__tfjs_import_graph(root, &ws, g, err);
    } else {
        rc = ims__tfjs_import_layers(topo, &ws, g, err);
        size_t n_unused = 0, first = 0;
        for (size_t i = ws.n; i-- > 0;)
            if (!ws.w[i].used)
                n_unused++, first = i;
        if (!rc && n_unused) /* a layer option we ignored would show up here */
            ims_log(IMS_LOG_WARN, "%s: %zu weight(s) of the manifest are not used by any layer "
                                  "(first: '%s')", model_json, n_unused, ws.w[first].name);
        json_t *mc = json_object_get(topo, "model_config");
        if (!mc)
            mc = topo;
        const char *n = json_string_value(json_object_get(json_object_get(mc, "config"), "name"));
        if (n)
            snprintf(file_name, sizeof file_name, "%s", n);
    }
    if (!rc)
        rc = finish(g, opts, file_name, err);
out:
    if (rc)
        ims__graph_release(g);
    json_decref(root);
    ims_free(text);
    ims__tfjs_weights_free(&ws);
    return rc;
}

int ims_nn_import_tfjs(const char *model_json, const char *out_ism,
                       const ims_nn_import_opts *opts, ims_error *err)
{
    ims__graph g;
    int rc = ims__tfjs_import(model_json, opts, &g, err);
    if (rc)
        return rc;
    rc = ims__model_write(&g, out_ism, err);
    ims__graph_release(&g);
    return rc;
}
