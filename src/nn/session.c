/* SPDX-License-Identifier: MIT */
/*
 * session.c — ims_nn_session: the public face of the executor.
 *
 * A session binds a model to a set of taps, a maximum batch and a thread
 * count. Creating it resolves the taps, plans the graph (exec_plan.c),
 * packs the weights for the GEMM, allocates the activation arenas (one per
 * execution context) and scratch, and starts the thread pool; running it
 * allocates nothing. A batch runs image by image; with several threads and
 * at least one image per thread, whole images run in parallel (and the
 * caller's side work after them, ims_nn_session_run_side). One session is
 * used by one thread at a time; any number of sessions may share a model.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static ims__nn_env env;

/* Read the environment switches and set process-global library state. */
static void env_init(void)
{
    const char *v = getenv("IMS_NN_GEMM");
    env.no_pack = v && !strcmp(v, "blas");
    v = getenv("IMS_NN_FUSE");
    env.no_fuse = v && *v == '0';
    env.no_fuse_proj = v && *v == '1';
    v = getenv("IMS_NN_PROFILE");
    env.profile = v && *v == '1';
    v = getenv("IMS_NN_WINOGRAD");
    env.no_wino = v && *v == '0';
    ims__gemm_init();
}

const ims__nn_env *ims__nn_env_get(void)
{
    pthread_once(&env_once, env_init);
    return &env;
}

void ims__nn_env_set(const ims__nn_env *e)
{
    pthread_once(&env_once, env_init);
    env = *e;
}

/* IMS_NN_PROFILE=1: per-node times, slowest first, on stderr. */
static void print_profile(const ims_nn_session *s)
{
    const ims__graph *g = s->g;
    double total = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++)
        total += s->prof[i];
    if (total <= 0)
        return;
    fprintf(stderr, "profile of %s: %.3f ms per image in nodes\n", ims__str(g, g->model_name),
            1e3 * total / (double)(s->prof_images ? s->prof_images : 1));
    for (int shown = 0; shown < 25; shown++) {
        uint32_t best = 0;
        for (uint32_t i = 0; i < g->n_nodes; i++)
            if (s->prof[i] > s->prof[best])
                best = i;
        if (s->prof[best] <= 0)
            break;
        const ims__node *n = &g->nodes[best];
        double t = s->prof[best] / (double)(s->prof_images ? s->prof_images : 1);
        fprintf(stderr, "  %5.1f%% %7.3f ms %7.1f GFLOP/s  %-15s %4dx%-4dx%-5d k%dx%d s%d  %s\n",
                100 * s->prof[best] / total, 1e3 * t, 2 * ims__node_macs(g, n) / t / 1e9,
                ims__op_name(n->op), n->h, n->w, n->c, n->kh, n->kw, n->sh,
                ims__str(g, n->name));
        s->prof[best] = -s->prof[best];
    }
}

void ims_nn_session_free(ims_nn_session *s)
{
    if (!s)
        return;
    if (s->prof) {
        print_profile(s);
        ims_free(s->prof);
    }
    ims__pool_free(s->pool);
    ims_free(s->kind);
    ims_free(s->view);
    ims_free(s->in0);
    ims_free(s->pads);
    ims_free(s->tap_of);
    ims_free(s->fuse_src);
    ims_free(s->fuse_dw);
    ims_aligned_free(s->fring);
    ims_aligned_free(s->fbuf);
    ims_free(s->frows);
    ims_free(s->taps);
    ims_free(s->tap_off);
    ims_aligned_free(s->arena);
    ims_aligned_free(s->packed);
    ims_aligned_free(s->tscratch);
    ims_free(s->pack_off);
    ims_free(s->wino);
    ims_aligned_free(s->scratch);
    ims_free(s);
}

int ims_nn_session_new(const ims_nn_model *m, const ims_nn_session_opts *opts,
                       ims_nn_session **out, ims_error *err)
{
    static const ims_nn_session_opts defaults = {NULL, 0, 0, 1, 0};
    if (!out)
        return ims_error_set(err, IMS_EINVAL, "session: NULL out");
    *out = NULL;
    if (!m)
        return ims_error_set(err, IMS_EINVAL, "session: NULL model");
    if (!opts)
        opts = &defaults;
    if (opts->max_batch < 0 || opts->max_batch > 65536 || opts->n_threads < 0 ||
        opts->n_threads > 1024 || opts->n_taps < 0 || (opts->n_taps > 0 && !opts->taps))
        return ims_error_set(err, IMS_EINVAL, "session: bad options");
    ims_init();
    const ims__nn_env *env = ims__nn_env_get();
    const ims__graph *g = &m->g;
    if (opts->want_probs && g->output < 0)
        return ims_error_set(err, IMS_EINVAL, "model '%s' has no classifier output",
                             ims__str(g, g->model_name));

    ims_nn_session *s = ims_calloc(1, sizeof *s);
    if (!s)
        return ims_error_set(err, IMS_ENOMEM, "session: out of memory");
    s->m = m;
    s->g = g;
    s->k = ims__nn_kernels_for(ims_cpu_level());
    s->max_batch = opts->max_batch ? opts->max_batch : 1;
    s->n_threads = opts->n_threads ? opts->n_threads : ims_cpu_count();
    s->want_probs = opts->want_probs;

    int rc;
    int n_taps = opts->taps ? opts->n_taps : 0;
    if (!opts->taps) {
        if (g->feature < 0 && !opts->want_probs) {
            rc = ims_error_set(err, IMS_EINVAL, "model '%s' has no default tap; name one",
                               ims__str(g, g->model_name));
            goto fail;
        }
        n_taps = g->feature >= 0 ? 1 : 0;
    }
    s->n_taps = n_taps;
    s->taps = ims_calloc((size_t)n_taps + 1, sizeof *s->taps);
    s->tap_off = ims_calloc((size_t)n_taps + 1, sizeof *s->tap_off);
    if (!s->taps || !s->tap_off) {
        rc = ims_error_set(err, IMS_ENOMEM, "session: out of memory");
        goto fail;
    }
    for (int t = 0; t < n_taps; t++) {
        uint32_t node;
        if (!opts->taps) {
            node = (uint32_t)g->feature;
        } else {
            if (!opts->taps[t]) {
                rc = ims_error_set(err, IMS_EINVAL, "session: tap %d is NULL", t);
                goto fail;
            }
            rc = ims__graph_find_tap(g, opts->taps[t], &node, err);
            if (rc)
                goto fail;
        }
        s->taps[t] = node;
        s->tap_off[t] = s->dim;
        s->dim += g->nodes[node].c;
    }
    rc = ims__pool_new(s->n_threads, &s->pool);
    if (rc) {
        ims_error_set(err, rc, "session: cannot start %d threads", s->n_threads);
        goto fail;
    }
    rc = ims__plan(s, err);
    if (rc)
        goto fail;
    if (env->profile)
        s->prof = ims_calloc(g->n_nodes, sizeof *s->prof); /* best effort */
    *out = s;
    return IMS_OK;
fail:
    ims_nn_session_free(s);
    return rc;
}

int ims_nn_session_dim(const ims_nn_session *s) { return s->dim; }

/* A context for arena/scratch block `c`, running ops on `pool`. */
static ims__run make_run(const ims_nn_session *s, int c, ims__pool *pool)
{
    ims__run r;
    memset(&r, 0, sizeof r);
    r.g = s->g, r.k = s->k, r.pool = pool;
    r.kind = s->kind, r.view = s->view, r.in0 = s->in0, r.pads = s->pads;
    r.pack_off = s->pack_off, r.packed = s->packed, r.wino = s->wino;
    r.fuse_src = s->fuse_src, r.fring = s->fring, r.n_fring = s->n_fring;
    r.fuse_dw = s->fuse_dw, r.fbuf = s->fbuf, r.n_fbuf = s->n_fbuf;
    r.frows = s->frows, r.max_rows = s->max_rows;
    r.arena = s->arena ? s->arena + (size_t)c * s->n_arena : NULL;
    r.scratch = s->scratch ? s->scratch + (size_t)c * s->n_scratch : NULL;
    r.tscratch = s->tscratch, r.n_scratch = s->n_scratch, r.n_tscratch = s->n_tscratch;
    r.n = 1;
    return r;
}

/* Run the graph on image `img` of the batch in context r. */
static void run_image(const ims_nn_session *s, ims__run *r, const float *input, int img,
                      float *features, float *probs)
{
    const ims__graph *g = s->g;
    size_t in_floats = (size_t)g->pp.width * g->pp.height * 3;
    r->input = input + (size_t)img * in_floats;
    r->n = 1;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (s->kind[i] == IMS_X_SKIP || s->kind[i] == IMS_X_FUSED)
            continue;
        if (s->kind[i] == IMS_X_RUN && i > 0) {
            double t0 = s->prof && r->pool ? ims_now() : 0;
            ims__exec_node(r, i);
            if (t0 > 0)
                s->prof[i] += ims_now() - t0;
        }
        if (s->tap_of[i] >= 0 && features) {
            ims__tensor t = ims__tensor_of(r, i);
            for (int k = s->tap_of[i]; k < s->n_taps; k++)
                if (s->taps[k] == i)
                    ims__gap_into(r, &t, features + (size_t)img * s->dim + s->tap_off[k],
                                  s->dim);
        }
        if (probs && (int32_t)i == g->output) {
            ims__tensor t = ims__tensor_of(r, i);
            memcpy(probs + (size_t)img * t.c, t.p, (size_t)t.c * sizeof(float));
        }
    }
}

typedef struct batch_job {
    const ims_nn_session *s;
    const float *input;
    float *features, *probs;
    int64_t n_img;           /* items [0, n_img) are whole images */
    const ims_nn_side *side; /* items [n_img, ...) are side items */
} batch_job;

/* Whole images on the pool's threads, each with its own arena, then the
 * side items. */
static void image_tasks(void *ctx, int64_t b, int64_t e)
{
    const batch_job *j = ctx;
    if (b < j->n_img) {
        ims__run r = make_run(j->s, ims__pool_tid(), NULL);
        for (; b < e && b < j->n_img; b++)
            run_image(j->s, &r, j->input, (int)b, j->features, j->probs);
    }
    for (; b < e; b++)
        j->side->fn(j->side->ctx, (int)(b - j->n_img));
}

int ims_nn_session_run_side(ims_nn_session *s, const float *input, int n, float *features,
                            float *probs, const ims_nn_side *side, ims_error *err)
{
    int n_side = side && side->fn && side->n > 0 ? side->n : 0;
    if (!s || (n_side ? n < 0 || (n && !input) : !input || n < 1) || n > s->max_batch)
        return ims_error_set(err, IMS_EINVAL, "session run: need 1..%d images, got %d",
                             s ? s->max_batch : 0, n);
    if (probs && !s->want_probs)
        return ims_error_set(err, IMS_EINVAL,
                             "session run: probabilities not requested at session creation");
    /* Whole images in parallel while there is one per thread (no barriers
     * inside the graph), one image per claim so that a thread slowed down
     * (by another process) costs the batch at most one image's wait; the
     * rest one at a time with threads inside ops. */
    int n_par = s->n_ctx > 1 ? n / s->n_ctx * s->n_ctx : 0;
    if (n_par || n_side) {
        batch_job j = {s, input, features, probs, n_par, side};
        ims__pool_for_chunk(s->pool, (int64_t)n_par + n_side, 1, image_tasks, &j);
    }
    ims__run r = make_run(s, 0, s->pool);
    for (int img = n_par; img < n; img++)
        run_image(s, &r, input, img, features, probs);
    if (s->prof)
        s->prof_images += n - n_par;
    return IMS_OK;
}

int ims_nn_session_run(ims_nn_session *s, const float *input, int n, float *features, float *probs,
                       ims_error *err)
{
    return ims_nn_session_run_side(s, input, n, features, probs, NULL, err);
}
