/* SPDX-License-Identifier: MIT */
/*
 * import_tfjs_int.h — shared by the TF.js importers (import_tfjs*.c).
 *
 * import_tfjs.c reads model.json and the weight shards (dequantizing every
 * tensor to float32), then hands the parsed JSON and the weight table to
 * the layers-model (import_tfjs_layers.c) or graph-model
 * (import_tfjs_graph.c) translator, which builds an ims__graph. The entry
 * point finishes the graph (classes, recipe, default tap), validates it and
 * writes the .ism file.
 */
#ifndef IMS_IMPORT_TFJS_INT_H
#define IMS_IMPORT_TFJS_INT_H

#include <jansson.h>

#include "nn_int.h"

#define IMS_TFJS_MAX_RANK 8

/* One dequantized weight tensor of the manifest. */
typedef struct ims__tfjs_weight {
    char *name;                      /* manifest name, e.g. "Conv1/kernel" */
    int rank;
    int64_t shape[IMS_TFJS_MAX_RANK];
    int64_t n;                       /* number of elements */
    float *data;                     /* n floats (int32 tensors converted) */
    int used;                        /* referenced by the graph */
} ims__tfjs_weight;

typedef struct ims__tfjs_weights {
    size_t n;
    ims__tfjs_weight *w;
} ims__tfjs_weights;

/* Find a weight by exact name, or else by a name ending in "/<name>". */
ims__tfjs_weight *ims__tfjs_weight_find(ims__tfjs_weights *ws, const char *name);

/* Read manifest `manifest` (the weightsManifest array) with shards relative to
 * `dir`; on success *out holds every tensor dequantized. */
int ims__tfjs_weights_read(json_t *manifest, const char *dir, ims__tfjs_weights *out,
                           ims_error *err);
void ims__tfjs_weights_free(ims__tfjs_weights *ws);

/* A node of kind op with neutral fields: 1x1 kernel, unit strides and
 * dilations, no weight or bias (-1); the translators fill in the rest. */
ims__node ims__tfjs_proto(uint32_t op);

/* Translators: fill g (already initialised) from the parsed model.json. */
int ims__tfjs_import_layers(json_t *topology, ims__tfjs_weights *ws, ims__graph *g,
                            ims_error *err);
int ims__tfjs_import_graph(json_t *root, ims__tfjs_weights *ws, ims__graph *g,
                           ims_error *err);

/* TF 'same' padding along one axis: before = total/2, after = the rest. */
void ims__tf_same_pad(int64_t in, int64_t k, int64_t s, int64_t d, int32_t *before,
                      int32_t *after);

/* Fold a BatchNorm y = (x - mean) * gamma / sqrt(var + eps) + beta into node
 * i (CONV2D, DWCONV2D or DENSE, output channel last in the kernel): scales
 * the kernel per output channel and creates / updates the bias. gamma may be
 * NULL (scale=false), beta may be NULL (center=false). */
int ims__fold_batchnorm(ims__graph *g, uint32_t i, const float *gamma, const float *beta,
                        const float *mean, const float *var, double eps);

/* Compute AFFINE parameters of an unfolded BatchNorm: scale, shift (c each). */
void ims__batchnorm_affine(int64_t c, const float *gamma, const float *beta, const float *mean,
                           const float *var, double eps, float *scale, float *shift);

/* Give node i a new name; its old name becomes a non-tappable alias and
 * every tappable alias of i becomes non-tappable (its output changed). */
int ims__rename_fused(ims__graph *g, uint32_t i, const char *new_name);

/* 1 if node i can absorb an activation (CONV2D, DWCONV2D, DENSE, ADD, AFFINE,
 * ACT without one yet). */
int ims__can_fuse_act(const ims__graph *g, uint32_t i);

/* Mark every alias of node i non-tappable (after changing its output). */
void ims__untap_aliases(ims__graph *g, uint32_t i);

#endif /* IMS_IMPORT_TFJS_INT_H */
