/* SPDX-License-Identifier: MIT */
/*
 * exec_plan.c — turning a graph into an execution plan for one session.
 *
 * Phases:
 *  1. Needed nodes: only ancestors of the taps (and of the classifier output
 *     when probabilities are wanted) run; e.g. tapping block_13 of
 *     MobileNetV2 skips everything after it.
 *  2. PAD folding: a PAD whose only consumer is a convolution disappears;
 *     its zeros are added to the convolution's own padding (both are zero
 *     padding, so this is exact). MobileNetV2's stride-2 blocks and
 *     InceptionV3 never materialise a padded copy.
 *     Fused blocks: a 1x1 expansion read only by a 3x3 depthwise conv, with
 *     an output beyond L2 and small weights, is marked FUSED and computed
 *     row by row inside the depthwise op (ops_conv.c); it gets no storage,
 *     and its input lives until the depthwise has run.
 *     Fused projections: a 3x3 depthwise read only by a 1x1 projection
 *     (and that projection, when linear and read only by a residual ADD)
 *     is marked FUSED too, and the block's last node (the projection or the
 *     ADD) runs the whole block a few rows at a time (ops_conv.c,
 *     ims__op_fused_block): the depthwise output exists only as a few rows
 *     per thread, the residual is added in the projection's epilogue, and
 *     the block's input lives until that last node has run.
 *  3. Storage sharing, decided per node as a view {root, channel offset,
 *     pixel stride ld}:
 *     - CONCAT in place: (visited from the last node back, so nested concats
 *       resolve to the outermost buffer) each input produced by a node of its
 *       own is written straight into its channel slice of the concat's
 *       buffer (ld = the concat's channels); the CONCAT itself then copies
 *       nothing.
 *     - RESHAPE of a contiguous tensor is a pure view of its input.
 *     - ADD / ACT / AFFINE run in place over an input whose storage is dead
 *       afterwards.
 *  4. Liveness: each storage root lives from the first production of any of
 *     its members to the last read of any of them (taps are pooled as soon
 *     as their node is produced and the class probabilities copied out, so
 *     they extend nothing). Roots are placed in one arena by the greedy
 *     "largest first, lowest free offset" rule over overlapping lifetimes
 *     (as TFLite's arena planner), offsets 64-byte aligned. Sizes are for
 *     one image: a batch runs image by image, which keeps activations in
 *     cache; with several threads, whole images run in parallel, one arena
 *     (and scratch) per thread (n_ctx), and no op needs a barrier.
 *  5. CONV2D and DENSE weights are packed once into GEMM panels (gemm.c).
 *  6. Scratch: per-thread im2col row blocks and fused-block rings; without
 *     packing (IMS_NN_GEMM=blas), im2col rows chunked to
 *     IMS_IM2COL_MAX_FLOATS; gathering a strided input of a DENSE layer.
 *
 * ims__plan runs one static function per phase (plan_needed, plan_fold_pads,
 * plan_fuse for 2b, 2c (plan_fuse_proj) and the last readers, plan_views,
 * plan_place, plan_pack, plan_scratch), sharing the temporaries of plan_tmp.
 *
 * Environment, for comparisons only, read once per process (ims__nn_env_get):
 * IMS_NN_GEMM=blas (no packing, OpenBLAS for every product), IMS_NN_FUSE=0
 * (no fused blocks), IMS_NN_FUSE=1 (expansion + depthwise only, no fused
 * projections).
 */
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"

#define IMS_IM2COL_MAX_FLOATS ((size_t)2 << 20) /* 8 MiB of im2col rows at most */

typedef struct root_info {
    uint32_t node;
    int32_t start, end;
    size_t size; /* floats */
    int64_t off;
} root_info;

/* Depth K of node i's weight matrix (CONV2D: kh*kw*cin; DENSE: h*w*c in). */
static int pack_k(const ims__graph *g, const ims_nn_session *s, uint32_t i)
{
    const ims__node *n = &g->nodes[i], *x = &g->nodes[s->in0[i]];
    return n->op == IMS_OP_DENSE ? x->h * x->w * x->c : n->kh * n->kw * x->c;
}

/* Rows of im2col scratch a convolution uses (0 if it needs none). */
static size_t im2col_floats(const ims_nn_session *s, uint32_t i)
{
    const ims__graph *g = s->g;
    const ims__node *n = &g->nodes[i];
    const int32_t *p = s->pads + 4 * i;
    if (n->op != IMS_OP_CONV2D)
        return 0;
    if (n->kh == 1 && n->kw == 1 && n->sh == 1 && n->sw == 1 && !p[0] && !p[1] && !p[2] &&
        !p[3])
        return 0;
    size_t K = (size_t)n->kh * n->kw * g->nodes[s->in0[i]].c;
    size_t rows = (size_t)n->h * n->w; /* one image per context */
    size_t r = IMS_IM2COL_MAX_FLOATS / K;
    if (r < 64)
        r = 64;
    if (r > rows)
        r = rows;
    return r * K;
}

/* The planner's temporaries, per node unless said otherwise. */
typedef struct plan_tmp {
    uint8_t *need;    /* an ancestor of a tap (or of the output) */
    int32_t *ncons;   /* consumers: graph inputs (phase 1), effective inputs (2b on) */
    int32_t *cons1;   /* (2b) the last effective consumer: the only one when ncons == 1 */
    int32_t *lastuse; /* the last node that reads its output */
    int32_t *gend;    /* per storage root: the last read of any member, -1 = not a root */
    int64_t *c0;      /* channel offset within its storage root */
    root_info *roots; /* placement order of the storage roots */
    size_t total;     /* arena floats per context */
} plan_tmp;

/* 1. Needed nodes: the ancestors of the taps and of the wanted output. */
static void plan_needed(ims_nn_session *s, plan_tmp *t)
{
    const ims__graph *g = s->g;
    const uint32_t N = g->n_nodes;
    for (uint32_t i = 0; i < N; i++)
        s->tap_of[i] = -1;
    for (int k = s->n_taps - 1; k >= 0; k--) {
        t->need[s->taps[k]] = 1;
        s->tap_of[s->taps[k]] = k;
    }
    if (s->want_probs)
        t->need[g->output] = 1;
    t->need[0] = 1;
    for (uint32_t i = N; i-- > 0;) {
        if (!t->need[i])
            continue;
        const uint32_t *in = ims__node_inputs(g, &g->nodes[i]);
        for (uint32_t k = 0; k < g->nodes[i].n_inputs; k++) {
            t->need[in[k]] = 1;
            t->ncons[in[k]]++;
        }
    }
}

/* 2. PAD folding: a PAD read only by a convolution joins its padding. */
static void plan_fold_pads(ims_nn_session *s, const plan_tmp *t)
{
    const ims__graph *g = s->g;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const ims__node *n = &g->nodes[i];
        s->kind[i] = t->need[i] ? IMS_X_RUN : IMS_X_SKIP;
        s->in0[i] = n->n_inputs ? ims__node_inputs(g, n)[0] : 0;
        s->pads[4 * i + 0] = n->pad_t, s->pads[4 * i + 1] = n->pad_b;
        s->pads[4 * i + 2] = n->pad_l, s->pads[4 * i + 3] = n->pad_r;
        if (!t->need[i] || (n->op != IMS_OP_CONV2D && n->op != IMS_OP_DWCONV2D))
            continue;
        for (;;) {
            uint32_t p = s->in0[i];
            const ims__node *pn = &g->nodes[p];
            if (pn->op != IMS_OP_PAD || t->ncons[p] != 1 || s->tap_of[p] >= 0 ||
                (s->want_probs && (int32_t)p == g->output))
                break;
            s->pads[4 * i + 0] += pn->pad_t, s->pads[4 * i + 1] += pn->pad_b;
            s->pads[4 * i + 2] += pn->pad_l, s->pads[4 * i + 3] += pn->pad_r;
            s->in0[i] = ims__node_inputs(g, pn)[0];
            s->kind[p] = IMS_X_SKIP;
        }
    }
    s->kind[0] = IMS_X_VIEW;
}

/* 2c. Fused projections: a 3x3 depthwise read only by a 1x1 projection is
 * computed a few output rows at a time into a per-thread buffer that the
 * projection's GEMM reads at once (ops_conv.c), inside the projection's
 * node; when the (linear) projection is read only by a 2-input ADD without
 * activation, the ADD becomes the block's last node and the residual is
 * added in the GEMM's epilogue. The depthwise output (and that projection
 * output) get no storage. A tap or the classifier output on the depthwise
 * (or on that projection) keeps it materialised; an expansion fused into
 * the depthwise (2b) stays fused, so the expanded tensor never exists. */
static void plan_fuse_proj(ims_nn_session *s, const plan_tmp *t, const ims__nn_env *env)
{
    const ims__graph *g = s->g;
    const uint32_t N = g->n_nodes;
    const int32_t *ncons = t->ncons, *cons1 = t->cons1;
    for (uint32_t i = 0; i < N; i++)
        s->fuse_dw[i] = -1;
    if (env->no_pack || env->no_fuse || env->no_fuse_proj)
        return;
    for (uint32_t d = 1; d < N; d++) {
        const ims__node *nd = &g->nodes[d];
        if (s->kind[d] != IMS_X_RUN || nd->op != IMS_OP_DWCONV2D || nd->mult != 1 || nd->kh != 3 ||
            nd->kw != 3 || nd->dh != 1 || nd->dw != 1 || nd->act > IMS_ACT_RELU || ncons[d] != 1 ||
            s->tap_of[d] >= 0 || (s->want_probs && (int32_t)d == g->output))
            continue;
        uint32_t p = (uint32_t)cons1[d], end = p;
        const ims__node *np = &g->nodes[p];
        const int32_t *pp = s->pads + 4 * p;
        if (s->kind[p] != IMS_X_RUN || np->op != IMS_OP_CONV2D || s->in0[p] != d || np->kh != 1 ||
            np->kw != 1 || np->sh != 1 || np->sw != 1 || pp[0] || pp[1] || pp[2] || pp[3] ||
            np->act > IMS_ACT_RELU)
            continue;
        if (np->act == IMS_ACT_NONE && ncons[p] == 1 && s->tap_of[p] < 0 &&
            !(s->want_probs && (int32_t)p == g->output)) {
            uint32_t a = (uint32_t)cons1[p];
            const ims__node *na = &g->nodes[a];
            const uint32_t *in = ims__node_inputs(g, na);
            if (s->kind[a] == IMS_X_RUN && na->op == IMS_OP_ADD && na->n_inputs == 2 &&
                in[0] != in[1] && na->act == IMS_ACT_NONE && s->fuse_dw[a] < 0) {
                s->kind[p] = IMS_X_FUSED;
                end = a;
            }
        }
        s->kind[d] = IMS_X_FUSED;
        s->fuse_dw[end] = (int32_t)d;
    }
}

/* 2b. Fused blocks: a 1x1 expansion read only by a 3x3 depthwise
 * convolution is computed row by row into a 3-row ring inside the
 * depthwise op, so its (large) output never goes through memory. Then the
 * last reader of every output (over the effective inputs; a fused
 * depthwise reads its expansion's input). */
static void plan_fuse(ims_nn_session *s, plan_tmp *t, const ims__nn_env *env)
{
    const ims__graph *g = s->g;
    const uint32_t N = g->n_nodes;
    int32_t *ncons = t->ncons;
    memset(ncons, 0, (size_t)N * sizeof *ncons); /* now: effective consumers */
    for (uint32_t i = 0; i < N; i++) {
        s->fuse_src[i] = -1;
        if (s->kind[i] != IMS_X_RUN)
            continue;
        const uint32_t *in = ims__node_inputs(g, &g->nodes[i]);
        for (uint32_t k = 0; k < g->nodes[i].n_inputs; k++) {
            ncons[k ? in[k] : s->in0[i]]++;
            t->cons1[k ? in[k] : s->in0[i]] = (int32_t)i;
        }
    }
    for (uint32_t i = 1; i < N && !env->no_pack && !env->no_fuse; i++) {
        const ims__node *d = &g->nodes[i];
        uint32_t e = s->in0[i];
        const ims__node *x = &g->nodes[e];
        const int32_t *pe = s->pads + 4 * e;
        if (s->kind[i] != IMS_X_RUN || d->op != IMS_OP_DWCONV2D || d->mult != 1 || d->kh != 3 ||
            d->kw != 3 || d->dh != 1 || d->dw != 1 || d->act > IMS_ACT_RELU)
            continue;
        if (e == 0 || s->kind[e] != IMS_X_RUN || x->op != IMS_OP_CONV2D || x->kh != 1 ||
            x->kw != 1 || x->sh != 1 || x->sw != 1 || pe[0] || pe[1] || pe[2] || pe[3] ||
            ncons[e] != 1 || s->tap_of[e] >= 0 || (s->want_probs && (int32_t)e == g->output))
            continue;
        /* worth it when the expansion output is beyond L2 and its weights are small */
        if ((size_t)x->h * x->w * x->c * 4 < ((size_t)512 << 10) ||
            (size_t)g->nodes[s->in0[e]].c * x->c * 4 > ((size_t)256 << 10))
            continue;
        s->kind[e] = IMS_X_FUSED;
        s->fuse_src[i] = (int32_t)e;
    }
    plan_fuse_proj(s, t, env);

    for (uint32_t i = 0; i < N; i++)
        t->lastuse[i] = (int32_t)i;
    for (uint32_t i = 0; i < N; i++) {
        if (s->kind[i] == IMS_X_SKIP || s->kind[i] == IMS_X_FUSED)
            continue;
        const ims__node *n = &g->nodes[i];
        if (s->fuse_dw[i] >= 0) { /* a fused block reads its input and the residual */
            int32_t d = s->fuse_dw[i], e = s->fuse_src[d];
            t->lastuse[e >= 0 ? s->in0[e] : s->in0[d]] = (int32_t)i;
            if (n->op == IMS_OP_ADD)
                for (uint32_t k = 0; k < n->n_inputs; k++)
                    if (s->kind[ims__node_inputs(g, n)[k]] != IMS_X_FUSED)
                        t->lastuse[ims__node_inputs(g, n)[k]] = (int32_t)i;
            continue;
        }
        const uint32_t *in = ims__node_inputs(g, n);
        for (uint32_t k = 0; k < n->n_inputs; k++)
            t->lastuse[k                     ? in[k]
                       : s->fuse_src[i] >= 0 ? s->in0[s->fuse_src[i]]
                                             : s->in0[i]] = (int32_t)i;
    }
}

/* 3. Views: concat inputs in their slice, reshape views, in-place ops. */
static void plan_views(ims_nn_session *s, plan_tmp *t)
{
    const ims__graph *g = s->g;
    const uint32_t N = g->n_nodes;
    int32_t *gend = t->gend, *lastuse = t->lastuse;
    int64_t *c0 = t->c0;
    for (uint32_t i = 0; i < N; i++) { /* every node starts as its own root */
        s->view[i].root = (int32_t)i;
        s->view[i].ld = g->nodes[i].c;
    }
    for (uint32_t i = N; i-- > 1;) { /* concat in place, outermost first */
        const ims__node *n = &g->nodes[i];
        if (s->kind[i] != IMS_X_RUN || n->op != IMS_OP_CONCAT)
            continue;
        const uint32_t *in = ims__node_inputs(g, n);
        int64_t o = 0;
        for (uint32_t k = 0; k < n->n_inputs; k++) {
            uint32_t j = in[k], dup = 0;
            for (uint32_t q = 0; q < n->n_inputs; q++)
                dup += in[q] == j;
            if (j != 0 && s->kind[j] == IMS_X_RUN && s->view[j].root == (int32_t)j &&
                dup == 1) {
                s->view[j].root = s->view[i].root;
                s->view[j].ld = s->view[i].ld;
                c0[j] = c0[i] + o;
            }
            o += g->nodes[j].c;
        }
    }
    for (uint32_t i = 0; i < N; i++)
        gend[i] = -1;
    for (uint32_t i = 0; i < N; i++)
        if (s->kind[i] != IMS_X_SKIP && s->kind[i] != IMS_X_FUSED && s->view[i].root == (int32_t)i)
            gend[i] = lastuse[i];
    for (uint32_t i = 0; i < N; i++) { /* concat members extend their root */
        int32_t r = s->view[i].root;
        if (s->kind[i] != IMS_X_SKIP && s->kind[i] != IMS_X_FUSED && r != (int32_t)i &&
            lastuse[i] > gend[r])
            gend[r] = lastuse[i];
    }
    for (uint32_t i = 1; i < N; i++) { /* reshape views and in-place ops */
        const ims__node *n = &g->nodes[i];
        /* a fused block's ADD never runs in place: other threads may still
         * read the block input's rows (the halo of their first rows) */
        if (s->kind[i] != IMS_X_RUN || s->view[i].root != (int32_t)i || s->fuse_dw[i] >= 0)
            continue;
        const uint32_t *in = ims__node_inputs(g, n);
        int32_t pick = -1;
        if (n->op == IMS_OP_RESHAPE) {
            uint32_t j = in[0];
            if (s->view[j].ld == g->nodes[j].c) {
                s->kind[i] = IMS_X_VIEW;
                pick = (int32_t)j;
            }
        } else if (n->op == IMS_OP_ADD || n->op == IMS_OP_ACT || n->op == IMS_OP_AFFINE) {
            for (uint32_t k = 0; k < n->n_inputs && pick < 0; k++) {
                uint32_t j = in[k];
                int32_t r = s->view[j].root;
                if (r != 0 && s->kind[j] == IMS_X_RUN && gend[r] == (int32_t)i)
                    pick = (int32_t)j;
            }
        }
        if (pick < 0)
            continue;
        int32_t r = s->view[pick].root;
        s->view[i].root = r;
        s->view[i].ld = n->op == IMS_OP_RESHAPE ? n->c : s->view[pick].ld;
        c0[i] = c0[pick];
        gend[i] = -1;
        if (lastuse[i] > gend[r])
            gend[r] = lastuse[i];
    }
}

/* 4. Liveness and placement of the storage roots in one arena. */
static int plan_place(ims_nn_session *s, plan_tmp *t, ims_error *err)
{
    const ims__graph *g = s->g;
    const uint32_t N = g->n_nodes;
    root_info *roots = t->roots;
    uint32_t n_roots = 0;
    for (uint32_t i = 1; i < N; i++) {
        if (s->kind[i] != IMS_X_RUN || s->view[i].root != (int32_t)i)
            continue;
        const ims__node *n = &g->nodes[i];
        size_t sz;
        if (!ims_size_mul3(1, (size_t)n->h * n->w, (size_t)n->c, &sz) || sz > ((size_t)1 << 40))
            return ims_error_set(err, IMS_ETOOBIG, "node %s: activation too large",
                                 ims__str(g, n->name));
        roots[n_roots++] = (root_info){i, (int32_t)N, t->gend[i], (sz + 15) & ~(size_t)15, -1};
    }
    for (uint32_t i = 1; i < N; i++) { /* start = first producer among the members */
        if (s->kind[i] != IMS_X_RUN)
            continue;
        for (uint32_t q = 0; q < n_roots; q++)
            if (roots[q].node == (uint32_t)s->view[i].root && (int32_t)i < roots[q].start)
                roots[q].start = (int32_t)i;
    }
    /* sort by size, largest first (insertion sort: a few hundred roots) */
    for (uint32_t a = 1; a < n_roots; a++) {
        root_info r = roots[a];
        uint32_t b = a;
        for (; b > 0 && roots[b - 1].size < r.size; b--)
            roots[b] = roots[b - 1];
        roots[b] = r;
    }
    size_t total = 0;
    for (uint32_t a = 0; a < n_roots; a++) {
        int64_t off = 0;
        for (int moved = 1; moved;) { /* lowest offset clear of every overlapping placed root */
            moved = 0;
            for (uint32_t b = 0; b < a; b++) {
                const root_info *o = &roots[b];
                if (o->end < roots[a].start || roots[a].end < o->start)
                    continue;
                if (off < o->off + (int64_t)o->size && o->off < off + (int64_t)roots[a].size) {
                    off = o->off + (int64_t)o->size;
                    moved = 1;
                }
            }
        }
        roots[a].off = off;
        if ((size_t)off + roots[a].size > total)
            total = (size_t)off + roots[a].size;
    }
    for (uint32_t a = 0; a < n_roots; a++)
        s->view[roots[a].node].off = roots[a].off;
    s->view[0].off = -1;
    s->view[0].ld = 3;
    for (uint32_t i = 1; i < N; i++) {
        int32_t r = s->view[i].root;
        if (s->kind[i] == IMS_X_SKIP || s->kind[i] == IMS_X_FUSED)
            continue;
        s->view[i].off = r == 0 ? -1 : s->view[r].off + t->c0[i];
    }
    /* the input node's views (a reshape of the input) keep off = -1 */
    t->total = total;
    return IMS_OK;
}

/* 5. Convolution and dense weights packed for the own GEMM. */
static int plan_pack(ims_nn_session *s, const ims__nn_env *env, ims_error *err)
{
    const ims__graph *g = s->g;
    const uint32_t N = g->n_nodes;
    size_t n_packed = 0, n_tmp = 0;
    for (uint32_t i = 0; i < N; i++) {
        const ims__node *n = &g->nodes[i];
        s->pack_off[i] = -1;
        if (env->no_pack || (s->kind[i] != IMS_X_RUN && s->kind[i] != IMS_X_FUSED) ||
            (n->op != IMS_OP_CONV2D && n->op != IMS_OP_DENSE))
            continue;
        s->pack_off[i] = (int64_t)n_packed;
        int cin = g->nodes[s->in0[i]].c;
        s->wino[i] = !env->no_wino && s->kind[i] == IMS_X_RUN && ims__wino_ok(n, cin);
        n_packed +=
            s->wino[i] ? ims__wino_packed_size(cin, n->c) : ims__packed_size(pack_k(g, s, i), n->c);
        if (s->wino[i] && (size_t)cin * n->c > n_tmp)
            n_tmp = (size_t)cin * n->c;
    }
    if (!n_packed)
        return IMS_OK;
    s->packed = ims_aligned_alloc(64, n_packed * sizeof(float));
    if (!s->packed)
        return ims_error_set(err, IMS_ENOMEM, "session: out of memory for packed weights");
    float *tmp = n_tmp ? ims_malloc(n_tmp * sizeof(float)) : NULL;
    if (n_tmp && !tmp)
        return ims_error_set(err, IMS_ENOMEM, "session: out of memory for packed weights");
    for (uint32_t i = 0; i < N; i++) {
        const ims__node *n = &g->nodes[i];
        if (s->wino[i])
            ims__wino_pack(g->weights + n->weight, g->nodes[s->in0[i]].c, n->c, tmp,
                           s->packed + s->pack_off[i]);
        else if (s->pack_off[i] >= 0)
            ims__pack_b(g->weights + n->weight, n->bias >= 0 ? g->weights + n->bias : NULL,
                        pack_k(g, s, i), n->c, s->packed + s->pack_off[i]);
    }
    ims_free(tmp);
    return IMS_OK;
}

/* 6. Scratch (per-thread im2col blocks, fused-block rings, chunked im2col
 * rows without packing, DENSE gathers), then the arenas and scratch of
 * every execution context. */
static int plan_scratch(ims_nn_session *s, size_t total, ims_error *err)
{
    const ims__graph *g = s->g;
    const uint32_t N = g->n_nodes;
    size_t scratch = 0;
    for (uint32_t i = 1; i < N; i++) {
        if (s->kind[i] != IMS_X_RUN)
            continue;
        const ims__node *n = &g->nodes[i];
        size_t need_f = s->pack_off[i] >= 0 ? 0 : im2col_floats(s, i);
        const ims__node *x = &g->nodes[s->in0[i]];
        if (n->op == IMS_OP_DENSE && s->view[s->in0[i]].ld != x->c && x->h * x->w > 1)
            need_f = (size_t)x->h * x->w * x->c;
        if (need_f > scratch)
            scratch = need_f;
    }
    size_t tscratch = 0;
    for (uint32_t i = 1; i < N; i++) {
        const ims__node *n = &g->nodes[i];
        if (s->wino[i]) { /* tiles' transforms and products instead of im2col rows */
            size_t f = ims__wino_scratch(s->k, g->nodes[s->in0[i]].c, n->c);
            tscratch = f > tscratch ? f : tscratch;
            continue;
        }
        if (s->pack_off[i] < 0 || !im2col_floats(s, i))
            continue;
        int K = n->kh * n->kw * g->nodes[s->in0[i]].c;
        size_t f = (size_t)ims__gemm_mc(s->k, K) * (size_t)K;
        if (f > tscratch)
            tscratch = f;
    }
    s->n_tscratch = tscratch;
    if (tscratch) {
        s->tscratch = ims_aligned_alloc(64, tscratch * (size_t)s->n_threads * sizeof(float));
        if (!s->tscratch)
            return ims_error_set(err, IMS_ENOMEM, "session: out of memory for im2col blocks");
    }
    /* depthwise rows of the fused projections, one buffer per thread */
    for (uint32_t i = 0; i < N; i++) {
        if (s->fuse_dw[i] < 0)
            continue;
        const ims__node *d = &g->nodes[s->fuse_dw[i]];
        size_t f = (size_t)ims__fuse_rows(d->h, d->w, 1, 1) * d->w * d->c;
        f = (f + 15) & ~(size_t)15;
        if (f > s->n_fbuf)
            s->n_fbuf = f;
    }
    if (s->n_fbuf) {
        s->fbuf = ims_aligned_alloc(64, s->n_fbuf * (size_t)s->n_threads * sizeof(float));
        if (!s->fbuf)
            return ims_error_set(err, IMS_ENOMEM, "session: out of memory for fused blocks");
    }
    /* ring buffers of the fused blocks, one per thread */
    for (uint32_t i = 0; i < N; i++) {
        if (s->fuse_src[i] < 0)
            continue;
        const ims__node *x = &g->nodes[s->fuse_src[i]];
        size_t f = (size_t)3 * (((size_t)x->w * x->c + 15) & ~(size_t)15);
        if (f > s->n_fring)
            s->n_fring = f;
        if (x->h > s->max_rows)
            s->max_rows = x->h;
    }
    if (s->n_fring) {
        s->fring = ims_aligned_alloc(64, s->n_fring * (size_t)s->n_threads * sizeof(float));
        s->frows = ims_calloc((size_t)s->max_rows * (size_t)s->n_threads, sizeof *s->frows);
        if (!s->fring || !s->frows)
            return ims_error_set(err, IMS_ENOMEM, "session: out of memory for fused blocks");
    }

    s->n_arena = total;
    s->n_scratch = scratch;
    s->n_ctx = s->max_batch >= 2 && s->n_threads >= 2 ? s->n_threads : 1;
    s->arena = total ? ims_aligned_alloc(64, total * s->n_ctx * sizeof(float)) : NULL;
    s->scratch = scratch ? ims_aligned_alloc(64, scratch * s->n_ctx * sizeof(float)) : NULL;
    if ((total && !s->arena) || (scratch && !s->scratch))
        return ims_error_set(err, IMS_ENOMEM, "session: out of memory for %zu activation floats",
                             total + scratch);
    return IMS_OK;
}

int ims__plan(ims_nn_session *s, ims_error *err)
{
    const ims__graph *g = s->g;
    const uint32_t N = g->n_nodes;
    const ims__nn_env *env = ims__nn_env_get(); /* read once per process */
    int rc;
    plan_tmp t = {0};

    s->kind = ims_calloc(N, 1);
    s->view = ims_calloc(N, sizeof *s->view);
    s->in0 = ims_calloc(N, sizeof *s->in0);
    s->pads = ims_calloc((size_t)N * 4, sizeof *s->pads);
    s->tap_of = ims_malloc((size_t)N * sizeof *s->tap_of);
    s->fuse_src = ims_malloc((size_t)N * sizeof *s->fuse_src);
    s->fuse_dw = ims_malloc((size_t)N * sizeof *s->fuse_dw);
    s->pack_off = ims_malloc((size_t)N * sizeof *s->pack_off);
    s->wino = ims_calloc(N, 1);
    t.need = ims_calloc(N, 1);
    t.lastuse = ims_malloc((size_t)N * sizeof *t.lastuse);
    t.ncons = ims_calloc(N, sizeof *t.ncons);
    t.cons1 = ims_calloc(N, sizeof *t.cons1);
    t.gend = ims_malloc((size_t)N * sizeof *t.gend);
    t.c0 = ims_calloc(N, sizeof *t.c0);
    t.roots = ims_calloc(N, sizeof *t.roots);
    if (!s->kind || !s->view || !s->in0 || !s->pads || !s->tap_of || !s->fuse_src || !s->fuse_dw ||
        !s->pack_off || !s->wino || !t.need || !t.lastuse || !t.ncons || !t.cons1 || !t.gend ||
        !t.c0 || !t.roots) {
        rc = ims_error_set(err, IMS_ENOMEM, "session plan: out of memory");
        goto done;
    }
    plan_needed(s, &t);
    plan_fold_pads(s, &t);
    plan_fuse(s, &t, env);
    plan_views(s, &t);
    rc = plan_place(s, &t, err);
    if (!rc)
        rc = plan_pack(s, env, err);
    if (!rc)
        rc = plan_scratch(s, t.total, err);
done:
    ims_free(t.need);
    ims_free(t.lastuse);
    ims_free(t.ncons);
    ims_free(t.cons1);
    ims_free(t.gend);
    ims_free(t.c0);
    ims_free(t.roots);
    return rc;
}
