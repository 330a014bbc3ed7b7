/* SPDX-License-Identifier: MIT */
/*
 * nn_int.h — the engine's graph IR, shared by the importers (import_*.c), the
 * model file (model_file.c) and the executor (exec*.c, ops_*.c, kernels/).
 *
 * A graph is a list of nodes in topological order (every input index is
 * smaller than the node's own index); node 0 is the INPUT. Each node has
 * one output tensor whose per-image shape is [h, w, c] in NHWC order (a flat
 * vector is [1, 1, c]). Activations are fused into the producing node (act,
 * act_max) and applied last. BatchNormalization never appears: importers fold
 * it into the preceding convolution (or emit an AFFINE node when nothing
 * precedes it).
 *
 * Weights are float32 in one 64-byte-aligned array; nodes refer to them by
 * float offsets. Layouts are TensorFlow's, which are already GEMM-friendly
 * for NHWC data:
 *   CONV2D   kernel [kh][kw][cin][cout]  (HWIO: a (kh*kw*cin) x cout matrix
 *            that multiplies NHWC im2col rows; a 1x1 conv is X[NHW,cin]·W)
 *   DWCONV2D kernel [kh][kw][cin][mult]  (output channel = ci*mult + m)
 *   DENSE    kernel [in][out]            (input flattened in HWC order)
 *   AFFINE   scale at `weight`, shift at `bias`, each c floats, or 1 float
 *            broadcast when n_weight == 1 (graph-model Mul/Sub by scalars)
 *   bias     c floats at `bias` (-1 = no bias)
 * Pool and conv padding is explicit (pad_t/b/l/r): importers resolve Keras
 * and TF 'same' padding into numbers. AVGPOOL divides by the number of
 * non-padding cells under the window (TF's behaviour), MAXPOOL ignores
 * padding cells.
 *
 * Memory: a graph built by an importer owns heap arrays (owned = 1); a graph
 * read from a .ism file points into the file's read-only mapping (owned = 0).
 * The executor never modifies a graph, so models can be shared by threads.
 */
#ifndef IMS_NN_INT_H
#define IMS_NN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_int.h"
#include "imgsim/nn.h"

/* Operations. On-disk values: frozen, append-only. */
enum ims__op {
    IMS_OP_INPUT = 0,    /* the preprocessed image [H, W, 3] */
    IMS_OP_CONV2D = 1,   /* kh,kw, sh,sw, dh,dw, pads; kernel HWIO; bias; act */
    IMS_OP_DWCONV2D = 2, /* depthwise; kernel [kh][kw][cin][mult]; bias; act */
    IMS_OP_DENSE = 3,    /* fully connected on the flattened input; bias; act */
    IMS_OP_MAXPOOL = 4,  /* kh,kw, sh,sw, pads */
    IMS_OP_AVGPOOL = 5,  /* kh,kw, sh,sw, pads; divisor excludes padding */
    IMS_OP_GAP = 6,      /* global average pool -> [1, 1, C] */
    IMS_OP_ADD = 7,      /* elementwise sum of n_inputs same-shape tensors; act */
    IMS_OP_CONCAT = 8,   /* concatenation along channels */
    IMS_OP_PAD = 9,      /* zero padding by pad_t/b/l/r */
    IMS_OP_AFFINE = 10,  /* y = x * scale[c] + shift[c]; act */
    IMS_OP_ACT = 11,     /* activation only (act, act_max) */
    IMS_OP_SOFTMAX = 12, /* softmax over the channels of a [1,1,C] tensor */
    IMS_OP_RESHAPE = 13, /* flatten / squeeze: same data, shape [1, 1, h*w*c] */
    IMS_OP_L2NORM = 14,  /* x / |x| over the channels of a [1,1,C] tensor (0 -> 0);
                            format v2: files using it need reader >= 2 */
    IMS_OP__COUNT
};

/* Fused activations. On-disk values: frozen, append-only. */
enum ims__act {
    IMS_ACT_NONE = 0,
    IMS_ACT_RELU = 1,    /* max(x, 0), then min(x, act_max) when act_max > 0 (ReLU6) */
    IMS_ACT_SIGMOID = 2,
    IMS_ACT_TANH = 3,
    IMS_ACT__COUNT
};

#define IMS_NN_MAX_DIM 16384 /* hard limit on h, w, c and kernel sizes */

typedef struct ims__node {
    uint32_t op;          /* enum ims__op */
    uint32_t act;         /* enum ims__act, applied after the op */
    float act_max;        /* ReLU clip, 0 = none */
    uint32_t name;        /* offset of the NUL-terminated name in strings */
    uint32_t n_inputs;    /* number of input nodes */
    uint32_t inputs;      /* offset of the first input index in edges */
    int32_t kh, kw;       /* kernel / window size */
    int32_t sh, sw;       /* strides */
    int32_t dh, dw;       /* dilations (1 = none) */
    int32_t pad_t, pad_b, pad_l, pad_r; /* explicit zero padding */
    int32_t mult;         /* depthwise channel multiplier */
    int32_t h, w, c;      /* output shape per image */
    int64_t weight;       /* float offset of kernel / scale, -1 = none */
    int64_t n_weight;     /* number of floats at weight */
    int64_t bias;         /* float offset of bias / shift (c floats, or 1), -1 = none */
    int64_t n_bias;       /* number of floats at bias */
} ims__node;

/* A name of a layer that was folded into another node (e.g. a BatchNorm or a
 * ReLU fused into its Conv2D). Tappable when its output equals the node's. */
typedef struct ims__alias {
    uint32_t name;     /* offset in strings */
    int32_t node;      /* the node that now carries (or absorbed) it */
    uint32_t tappable; /* 1 if the node's output is this layer's output */
} ims__alias;

typedef struct ims__graph {
    uint32_t n_nodes;
    ims__node *nodes;    /* topological order, node 0 is INPUT */
    uint32_t n_edges;
    uint32_t *edges;     /* input node indices, referenced by nodes */
    uint32_t n_aliases;
    ims__alias *aliases;
    uint64_t n_strings;
    char *strings;       /* NUL-terminated strings back to back; offset 0 is "" */
    uint64_t n_weights;
    float *weights;      /* 64-byte aligned */
    int32_t output;      /* class-probabilities node (SOFTMAX), -1 = none */
    int32_t feature;     /* default tap: pooled features feeding the classifier, -1 */
    uint32_t n_classes;
    uint32_t classes;    /* offset of the first class name; names are consecutive */
    uint32_t model_name; /* offset of the model's name */
    ims_preprocess pp;   /* input recipe (pp.width x pp.height x 3) */
    int owned;           /* arrays are heap-owned (builder) vs mapped (file) */
    uint64_t cap_nodes, cap_edges, cap_aliases, cap_strings, cap_weights; /* builder */
} ims__graph;

struct ims_nn_model {
    ims__graph g;
    void *map;           /* read-only file mapping (NULL for built models) */
    size_t map_len;
    char path[1024];
};

static inline const char *ims__str(const ims__graph *g, uint32_t off)
{
    return g->strings + off;
}
static inline const uint32_t *ims__node_inputs(const ims__graph *g, const ims__node *n)
{
    return g->edges + n->inputs;
}

/* ---- graph.c: building, validating, looking up ----------------------------- */

/* Initialise an empty, heap-owned graph (strings holds ""). */
int ims__graph_init(ims__graph *g);
/* Free a heap-owned graph's arrays (no-op for mapped graphs). */
void ims__graph_release(ims__graph *g);
/* Append a string; *off receives its offset. */
int ims__graph_add_string(ims__graph *g, const char *s, uint32_t *off);
/* Append n floats (copied when src != NULL, zeroed otherwise); *off receives
 * the float offset. The returned pointer in *dst (optional) stays valid only
 * until the next add_weights. */
/* Room for n weights in all (no copy per doubling while a known amount
 * is added); a hint: add_weights still grows past it. */
int ims__graph_reserve_weights(ims__graph *g, uint64_t n);
int ims__graph_add_weights(ims__graph *g, const float *src, uint64_t n, int64_t *off,
                           float **dst);
/* Append a node: `proto` supplies op, attributes and weights; name and inputs
 * are copied; the output shape is inferred (ims__infer_shape) and any
 * inconsistency is an error naming the node. *index receives the new index. */
int ims__graph_add_node(ims__graph *g, const ims__node *proto, const char *name,
                        const uint32_t *inputs, uint32_t n_inputs, uint32_t *index,
                        ims_error *err);
int ims__graph_add_alias(ims__graph *g, const char *name, int32_t node, int tappable);

/* Compute node n's output shape from its inputs and attributes into h/w/c.
 * Returns IMS_ECORRUPT with a message naming the node on any inconsistency
 * (wrong input count, channel mismatch, weight size mismatch, bad stride,
 * window larger than the padded input, out-of-range weight offsets...). */
int ims__infer_shape(const ims__graph *g, uint32_t i_node, int32_t *h, int32_t *w,
                     int32_t *c, ims_error *err);

/* Full consistency check of a graph read from untrusted bytes: string and
 * weight offsets in range, topological order, shapes re-inferred and equal
 * to the stored ones, enums in range. */
int ims__graph_validate(const ims__graph *g, ims_error *err);

/* Resolve a tap name: node index of a node or tappable alias. An alias that
 * is not tappable gives IMS_ENOTFOUND with "folded into <node>" in err. */
int ims__graph_find_tap(const ims__graph *g, const char *name, uint32_t *i_node,
                        ims_error *err);
/* Node by exact node name (no aliases); -1 if none. */
int32_t ims__graph_find(const ims__graph *g, const char *name);

/* Multiply-adds of one node for one image (for FLOPs reports and threading). */
double ims__node_macs(const ims__graph *g, const ims__node *n);

const char *ims__op_name(uint32_t op);
const char *ims__act_name(uint32_t act);

/* ---- model_file.c: the .ism format (layout table atop model_file.c) ------ */

/* Write g to path atomically as a .ism file. */
int ims__model_write(const ims__graph *g, const char *path, ims_error *err);
/* The same; sha256_hex (NULL: not wanted) gets the SHA-256 of the bytes
 * written, hashed as they are written (no second read of the file). */
int ims__model_write_sha(const ims__graph *g, const char *path, char sha256_hex[65],
                         ims_error *err);
/* Decode a .ism image of len bytes at buf into g: nodes, edges and aliases
 * are decoded into heap arrays, strings and weights point into buf (which
 * must stay mapped and, for weights, be 64-byte aligned; g->owned = 0).
 * Checks magic, versions, checksums and bounds, then ims__graph_validate.
 * Errors: IMS_EFORMAT, IMS_EVERSION, IMS_ECORRUPT (message has the offset),
 * IMS_ENOMEM. Free with ims__model_parsed_free. */
int ims__model_parse(const unsigned char *buf, size_t len, ims__graph *g, ims_error *err);
void ims__model_parsed_free(ims__graph *g);

/* ---- import_tfjs.c ------------------------------------------------------- */

/* Import a TF.js model into a heap-owned graph (what ims_nn_import_tfjs
 * writes). g is initialised here; release it with ims__graph_release. */
int ims__tfjs_import(const char *model_json, const ims_nn_import_opts *opts, ims__graph *g,
                     ims_error *err);

#endif /* IMS_NN_INT_H */
