/* SPDX-License-Identifier: MIT */
/*
 * hnsw_search.c — searching: Algorithm 2 (SEARCH-LAYER), the greedy descent
 * through the upper layers, Algorithm 5 (K-NN-SEARCH) with deletes and
 * filters, and the exact scan that replaces it when cheaper.
 *
 * A search holds the shared lock for its whole duration and borrows one
 * scratch (visited tags, heaps, query buffers) from the pool: no allocation
 * once the pool is warm. The visited set is an array of 16-bit epoch tags,
 * never cleared except when the epoch wraps.
 *
 * Filters and deletes (the "filtered graph walk", filtered_search): only
 * admitted nodes are scored and become results; a candidate's expansion
 * reaches through its non-admitted neighbours to their neighbours (two
 * hops, ACORN-1) and, when the admitted items are too sparse for that,
 * also routes through the non-admitted ones; its beam is ef widened by the
 * selectivity (filtered_ef), for about the unfiltered walk's recall. The
 * planner (ims__plan_costs) compares a cost model of that walk with an
 * exact scan of the admitted items; ims_search_stats reports which ran,
 * the beam and the work it did.
 *
 * Every link read from the graph is bounds-checked (count <= Mmax, slot <
 * n_nodes, upper-layer neighbour has that layer), so a corrupt file that
 * passed the cheap checks at open still cannot crash a search.
 */
#include <math.h>
#include <string.h>

#include "index_int.h"

static inline void visit_begin(ims__scratch *s)
{
    if (++s->epoch == 0) {
        memset(s->visited, 0, s->n_visited * sizeof(uint16_t));
        s->epoch = 1;
    }
}

/* read node c's list at layer lc into (cnt, list); copies under the node lock when parallel */
static inline const uint32_t *get_links(ims_hnsw *h, ims__scratch *s, uint32_t c, int lc,
                                        int parallel, uint32_t *cnt)
{
    uint32_t mmax = lc ? h->M : h->M0;
    const uint32_t *l = ims__links(h, c, lc);
    if (parallel) {
        ims__lock(h, c);
        uint32_t n = IMS_MIN(l[0], mmax);
        memcpy(s->nbuf, l + 1, n * sizeof(uint32_t));
        ims__unlock(h, c);
        *cnt = n;
        return s->nbuf;
    }
    *cnt = IMS_MIN(l[0], mmax);
    return l + 1;
}

/* Prefetch the code of slot i, up to 2 KiB: one distance takes about as
 * long as fetching the next vector, so prefetching all of it (not just its
 * first lines, as hnswlib does) keeps the loads ahead of the kernel; 1280
 * int8 dimensions are 20 lines. */
static inline void prefetch_node(const ims_hnsw *h, uint32_t i)
{
    const char *p = (const char *)h->codes + (size_t)i * h->code_size;
    size_t n = h->code_size < 2048 ? h->code_size : 2048;
    for (size_t o = 0; o < n; o += 64)
        __builtin_prefetch(p + o);
}

/* Greedy search at layer lc (Algorithm 2 with ef = 1): move to the closest
 * neighbour while that improves. */
uint32_t ims__search_greedy(ims_hnsw *h, ims__scratch *s, const ims__qctx *qc, uint32_t cur,
                            float *d_cur, int lc, int parallel)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        if (h->levels[cur] < lc)
            break;
        uint32_t cnt;
        const uint32_t *nb = get_links(h, s, cur, lc, parallel, &cnt);
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t e = nb[j];
            if (e >= h->n_nodes || h->levels[e] < lc)
                continue;
            float d = ims__dist_code(h, qc, e);
            if (d < *d_cur)
                *d_cur = d, cur = e, changed = 1;
        }
    }
    return cur;
}

/* Algorithm 2, SEARCH-LAYER(q, ep, ef, lc): the ef nearest to q at layer lc,
 * left in s->W (a max-heap). Construction-time: every node is admitted
 * except `skip`, the element being inserted: in a parallel build another
 * thread may already have linked to it (it found q on an upper layer and
 * used it as an entry point below), and q must not become its own
 * neighbour. */
int ims__search_layer(ims_hnsw *h, ims__scratch *s, const ims__qctx *qc, const ims__cand *ep,
                      size_t n_ep, uint32_t ef, int lc, int parallel, uint32_t skip)
{
    ims__heap *C = &s->C, *W = &s->W;
    C->n = W->n = 0;
    visit_begin(s);
    uint16_t ep_tag = s->epoch;
    if (skip < h->n_nodes)
        s->visited[skip] = ep_tag;
    for (size_t i = 0; i < n_ep; i++) {
        if (s->visited[ep[i].i] == ep_tag)
            continue;
        s->visited[ep[i].i] = ep_tag;
        if (ims__heap_push_min(C, ep[i].d, ep[i].i) || ims__heap_push_max(W, ep[i].d, ep[i].i))
            return IMS_ENOMEM;
    }
    while (C->n) {
        ims__cand c = ims__heap_pop_min(C);
        if (c.d > W->v[0].d && W->n >= ef)
            break; /* all elements in W are evaluated */
        uint32_t cnt, n_todo = 0, *todo = s->nbuf2;
        const uint32_t *nb = get_links(h, s, c.i, lc, parallel, &cnt);
        for (uint32_t j = 0; j < cnt; j++) { /* unvisited first, as in base_search */
            uint32_t e = nb[j];
            if (e >= h->n_nodes || s->visited[e] == ep_tag || (lc && h->levels[e] < lc))
                continue;
            s->visited[e] = ep_tag;
            todo[n_todo++] = e;
        }
        if (n_todo)
            prefetch_node(h, todo[0]);
        for (uint32_t t = 0; t < n_todo; t++) {
            uint32_t e = todo[t];
            if (t + 1 < n_todo)
                prefetch_node(h, todo[t + 1]);
            float d = ims__dist_code(h, qc, e);
            if (W->n < ef || d < W->v[0].d) {
                if (ims__heap_push_min(C, d, e) || ims__heap_push_max(W, d, e))
                    return IMS_ENOMEM;
                __builtin_prefetch(ims__links(h, e, lc));
                if (W->n > ef)
                    ims__heap_pop_max(W);
            }
        }
    }
    return IMS_OK;
}

/* ---- query-time search ---------------------------------------------------------- */

typedef struct filt {
    ims_filter_fn fn;
    void *ud;
    const uint64_t *allow;
    uint64_t n_bits;
    uint64_t n_admit; /* admission tests made (stats) */
    uint64_t n_dist;  /* distance evaluations made (stats) */
} filt;

static inline int admit(const ims_hnsw *h, filt *f, uint32_t i)
{
    f->n_admit++;
    if (h->flags[i] & IMS__FLAG_DELETED)
        return 0;
    uint64_t id = h->ids[i];
    if (f->allow && (id >= f->n_bits || !((f->allow[id >> 6] >> (id & 63)) & 1)))
        return 0;
    if (f->fn && !f->fn(id, f->ud))
        return 0;
    return 1;
}

/* Algorithm 2 at layer 0, unfiltered, no deletes: W holds every node. */
static int base_search(ims_hnsw *h, ims__scratch *s, const ims__qctx *qc, uint32_t ep, float d_ep,
                       uint32_t ef, filt *f)
{
    ims__heap *C = &s->C, *W = &s->W;
    C->n = W->n = 0;
    visit_begin(s);
    uint16_t tag = s->epoch;
    uint16_t *visited = s->visited;
    uint32_t n_nodes = h->n_nodes, M0 = h->M0;
    uint64_t n_dist = 0;
    s->visited[ep] = tag;
    if (ims__heap_push_min(C, d_ep, ep) || ims__heap_push_max(W, d_ep, ep))
        return IMS_ENOMEM;
    float lower = d_ep;
    while (C->n) {
        ims__cand c = ims__heap_pop_min(C);
        if (c.d > lower)
            break;
        const uint32_t *l = h->links0 + (size_t)c.i * (1 + M0);
        uint32_t cnt = IMS_MIN(l[0], M0);
        const uint32_t *nb = l + 1;
        /* pass 1: the unvisited neighbours; pass 2: their distances, each
         * vector prefetched one ahead (prefetching all at once measured
         * 15% slower: L1 thrash; prefetching visited ones wastes bandwidth) */
        uint32_t *todo = s->nbuf2, n_todo = 0;
        for (uint32_t j = 0; j < cnt; j++)
            if (nb[j] < n_nodes)
                __builtin_prefetch(visited + nb[j]);
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t e = nb[j];
            if (e >= n_nodes || visited[e] == tag)
                continue;
            visited[e] = tag;
            todo[n_todo++] = e;
        }
        n_dist += n_todo;
        if (n_todo)
            prefetch_node(h, todo[0]);
        for (uint32_t t = 0; t < n_todo; t++) {
            uint32_t e = todo[t];
            if (t + 1 < n_todo)
                prefetch_node(h, todo[t + 1]);
            float d = ims__dist_code(h, qc, e);
            if (W->n < ef || d < lower) {
                if (ims__heap_push_min(C, d, e))
                    return IMS_ENOMEM;
                /* e will likely be expanded: fetch its link list now (hnswlib
                 * gets this for free from its interleaved layout) */
                __builtin_prefetch(h->links0 + (size_t)e * (1 + M0));
                if (ims__heap_push_max(W, d, e))
                    return IMS_ENOMEM;
                if (W->n > ef)
                    ims__heap_pop_max(W);
                lower = W->v[0].d;
            }
        }
    }
    f->n_dist += n_dist;
    return IMS_OK;
}

/* The filtered walk (deletes and/or filters), ACORN-1 style (Patel et al.,
 * SIGMOD 2024, "ACORN: performant and predicate-agnostic search over vector
 * embeddings and structured data"): only admitted nodes are ever scored or
 * become candidates; expanding a candidate c gathers up to M0 admitted
 * nodes, first among c's neighbours, then among the neighbours of c's
 * non-admitted neighbours (two hops, in link order). The admitted items
 * thus see a graph of about the unfiltered degree as long as a two-hop
 * neighbourhood (up to M0^2 = 1024 nodes at M = 16) holds M0 of them, i.e.
 * down to a selectivity of about 3%; below that the degree falls with the
 * selectivity, and the planner scans instead (cheaper there anyway).
 *
 * This replaces "score everything, admit into W only, ef / selectivity"
 * (bench/RESULTS-filter.md has the measurements), which computed about
 * 1/selectivity times as many distances and, once ef / selectivity
 * exceeded the admitted count, could not stop before the whole graph was
 * walked (68 QPS at 2% on 50k vectors).
 *
 * A non-admitted neighbour is marked visited only once its own list has
 * been read (so it is read once); non-admitted nodes seen at two hops stay
 * unmarked, so they can still serve as a middle node later. W holds
 * admitted nodes only, so the stop rule is Algorithm 2's. The entry point
 * (from the unfiltered upper layers) is scored and expanded even if not
 * admitted. */
static int filtered_search(ims_hnsw *h, ims__scratch *s, const ims__qctx *qc, uint32_t ep,
                           float d_ep, uint32_t ef, int sparse, filt *f)
{
    ims__heap *C = &s->C, *W = &s->W;
    C->n = W->n = 0;
    visit_begin(s);
    uint16_t tag = s->epoch;
    uint16_t *visited = s->visited;
    uint32_t n_nodes = h->n_nodes, M0 = h->M0;
    uint64_t n_dist = 0;
    float lower = INFINITY;
    visited[ep] = tag;
    if (ims__heap_push_min(C, d_ep, ep))
        return IMS_ENOMEM;
    if (admit(h, f, ep)) {
        if (ims__heap_push_max(W, d_ep, ep))
            return IMS_ENOMEM;
        lower = d_ep;
    }
    uint32_t *todo = s->nbuf2, *mid = s->nbuf; /* nbuf: only parallel builds use it */
    while (C->n) {
        ims__cand c = ims__heap_pop_min(C);
        if (c.d > lower && W->n >= ef)
            break;
        const uint32_t *l = h->links0 + (size_t)c.i * (1 + M0);
        uint32_t cnt = IMS_MIN(l[0], M0);
        const uint32_t *nb = l + 1;
        uint32_t n_todo = 0, n_mid = 0;
        for (uint32_t j = 0; j < cnt; j++)
            if (nb[j] < n_nodes)
                __builtin_prefetch(visited + nb[j]);
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t e = nb[j];
            if (e >= n_nodes || visited[e] == tag)
                continue;
            if (admit(h, f, e)) {
                visited[e] = tag;
                todo[n_todo++] = e;
            } else {
                mid[n_mid++] = e;
            }
        }
        for (uint32_t m = 0; m < n_mid && n_todo < M0; m++) {
            uint32_t e = mid[m];
            visited[e] = tag;
            const uint32_t *l2 = h->links0 + (size_t)e * (1 + M0);
            if (m + 1 < n_mid)
                __builtin_prefetch(h->links0 + (size_t)mid[m + 1] * (1 + M0));
            uint32_t cnt2 = IMS_MIN(l2[0], M0);
            /* the tests below touch visited[], flags[] and ids[] of 32
             * scattered slots: issue those loads together */
            for (uint32_t j = 0; j < cnt2; j++) {
                uint32_t e2 = l2[1 + j];
                if (e2 < n_nodes) {
                    __builtin_prefetch(visited + e2);
                    __builtin_prefetch(h->ids + e2);
                }
            }
            for (uint32_t j = 0; j < cnt2 && n_todo < M0; j++) {
                uint32_t e2 = l2[1 + j];
                if (e2 >= n_nodes || visited[e2] == tag || !admit(h, f, e2))
                    continue;
                visited[e2] = tag;
                todo[n_todo++] = e2;
            }
        }
        uint32_t n_adm = n_todo;
        if (sparse && n_todo < 2) /* a dead end: route through the others */
            for (uint32_t m = 0; m < n_mid; m++) {
                visited[mid[m]] = tag;
                todo[n_todo++] = mid[m];
            }
        n_dist += n_todo;
        if (n_todo)
            prefetch_node(h, todo[0]);
        for (uint32_t t = 0; t < n_todo; t++) {
            uint32_t e = todo[t];
            if (t + 1 < n_todo)
                prefetch_node(h, todo[t + 1]);
            float d = ims__dist_code(h, qc, e);
            if (t >= n_adm) { /* a routing node: a candidate, never a result */
                if (W->n < ef || d < lower) {
                    if (ims__heap_push_min(C, d, e))
                        return IMS_ENOMEM;
                    __builtin_prefetch(h->links0 + (size_t)e * (1 + M0));
                }
                continue;
            }
            if (W->n < ef || d < lower) {
                if (ims__heap_push_min(C, d, e) || ims__heap_push_max(W, d, e))
                    return IMS_ENOMEM;
                __builtin_prefetch(h->links0 + (size_t)e * (1 + M0));
                if (W->n > ef)
                    ims__heap_pop_max(W);
                lower = W->v[0].d;
            }
        }
    }
    f->n_dist += n_dist;
    return IMS_OK;
}

static int cmp_cand(const void *a, const void *b)
{
    const ims__cand *x = a, *y = b;
    if (x->d < y->d) return -1;
    if (x->d > y->d) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* exact scan of admitted live slots into W (max-heap of size k) */
static int exact_scan(ims_hnsw *h, ims__scratch *s, const ims__qctx *qc, size_t k, filt *f)
{
    ims__heap *W = &s->W;
    W->n = 0;
    size_t D = h->n_dims;
    uint64_t n_dist = 0;
    for (uint32_t i = 0; i < h->n_nodes; i++) {
        if (!admit(h, f, i))
            continue;
        n_dist++;
        float d = h->floats ? ims__dist_float(h, qc->q, h->floats + i * D)
                            : ims__dist_code(h, qc, i);
        if (W->n < k) {
            if (ims__heap_push_max(W, d, i))
                return IMS_ENOMEM;
        } else if (d < W->v[0].d) {
            ims__heap_pop_max(W);
            ims__heap_push_max(W, d, i); /* cannot fail: room was just made */
        }
    }
    f->n_dist += n_dist;
    return IMS_OK;
}

/* The planner (AUTO). Both plans are memory-bound on large indexes, so the
 * model counts memory work, in nanoseconds of the machine in
 * bench/RESULTS-filter.md (absolute values do not matter, the ratio does):
 *   exact: every slot is tested (2 ns sequential, +3 ns for a predicate
 *          call) and every admitted item scored by a sequential scan
 *          (50 + bytes/16 ns: streaming plus the mispredicted branch);
 *   graph: G = 0.2 ef M0 + 50 distances, each a random access (40 +
 *          bytes/12 ns); the two-hop walk (filtered_search) makes about
 *          2.5 / selectivity admission tests per distance (12 ns random,
 *          +3 for a predicate); when it must route through non-admitted
 *          nodes ("sparse": selectivity < 1.5 / M0 or fewer than 8 ef
 *          admitted items) it scores about
 *          0.25 G / selectivity nodes and makes 15 tests per score.
 * The coefficients were fitted to the distances and tests counted by
 * ims_search_stats and the timings of bench_filter (RESULTS-filter.md).
 * `sparse` is the walk's mode, also used by ims_hnsw_search. */
void ims__plan_costs(const ims_hnsw *h, double admitted, uint32_t ef, int user_filter,
                     int predicate, double *graph, double *exact, int *sparse)
{
    double n_live = (double)(h->n_nodes - h->n_deleted);
    double frac = n_live > 0 ? admitted / n_live : 0;
    if (frac > 1)
        frac = 1;
    if (frac < 1e-6)
        frac = 1e-6;
    double code = h->floats ? 4.0 * h->n_dims : (double)h->code_size;
    double chk_seq = predicate ? 5 : 2, chk_rand = predicate ? 15 : 12;
    double G = 0.2 * ef * h->M0 + 50, n_dist = G, n_chk = 0;
    /* sparse: two hops hold fewer than 1.5 M0 admitted nodes (deleted
     * nodes are in the graph: the fraction is of all slots), or the walk
     * must find a large share (1/8) of all admitted items, which on a thin
     * admitted graph measured recall < 0.95 */
    double frac_slots = h->n_nodes ? admitted / h->n_nodes : 0;
    int sp = (double)h->M0 * h->M0 * frac_slots < 1.5 * h->M0 || admitted < 8.0 * ef;
    if (user_filter || h->n_deleted) {
        if (sp)
            n_dist = 0.25 * G / frac, n_chk = 15 * n_dist;
        else
            n_chk = 2.5 * n_dist / frac;
    }
    if (n_dist > n_live)
        n_dist = n_live; /* a walk cannot score more than everything */
    *graph = n_dist * (40 + (double)h->code_size / 12) + n_chk * chk_rand;
    *exact = h->n_nodes * chk_seq + admitted * (50 + code / 16);
    *sparse = sp;
}

/* The filtered walk's beam. Its two-hop neighbourhoods are not pruned like
 * the graph's own links, so at the same ef it finds fewer true neighbours
 * than an unfiltered search, the more so the fewer items are admitted:
 * bench_filter (50k x 128, 1,000 queries, ef 64) measured recall@10 0.9884
 * at 5%, 0.9909 at 10%, 0.9974 at 20%, 0.9986 at 30% and 0.9984 at 50%;
 * with ef 96, 0.9936 / 0.9990 / 0.9996 / 0.9999. So the walk widens ef by
 * sqrt(0.4 / fraction admitted), at most 4x: 1.41x at 20%, 2x at 10%,
 * 2.8x at 5% (bench/RESULTS-filter.md has the result). The planner costs
 * the walk at this beam, so where the wider walk loses to the scan, AUTO
 * scans. */
static uint32_t filtered_ef(const ims_hnsw *h, uint32_t ef, double admitted)
{
    double frac = h->n_nodes ? admitted / h->n_nodes : 1;
    if (frac >= 0.4 || frac <= 0)
        return ef;
    double m = sqrt(0.4 / frac), w;
    w = ceil(ef * (m < 4 ? m : 4));
    return w < (double)UINT32_MAX ? (uint32_t)w : UINT32_MAX;
}

int ims_hnsw_search(ims_hnsw *h, const float *query, size_t k, const ims_search_opts *opts,
                    ims_hit *hits, size_t *n_hits)
{
    static const ims_search_opts no_opts;
    *n_hits = 0;
    if (!opts)
        opts = &no_opts;
    ims_search_stats *st = opts->stats;
    if (st)
        memset(st, 0, sizeof *st);
    if (k == 0 || !query || !hits)
        return ims__hnsw_err(h, IMS_EINVAL, "search: k must be > 0, query and hits non-NULL");
    pthread_rwlock_rdlock(&h->rw);
    int rc = IMS_OK;
    filt f = {opts->filter, opts->filter_ud, opts->allow, opts->n_allow_bits, 0, 0};
    ims__scratch *s = ims__scratch_get(h);
    if (!s) {
        rc = ims__hnsw_err(h, IMS_ENOMEM, "search: out of memory");
        goto out;
    }
    if (!ims__prepare_vec(h, query, s->qbuf)) {
        rc = ims__hnsw_err(h, IMS_EINVAL, "search: query has NaN/Inf%s",
                           h->metric == IMS_METRIC_COSINE ? " or is zero" : "");
        goto out;
    }
    uint32_t n_live = h->n_nodes - h->n_deleted;
    if (n_live == 0 || h->entry == IMS__NONE)
        goto out;
    ims__qctx qc;
    ims__qctx_prepare(h, &qc, s->qbuf, s->abuf, s->bbuf);
    int user_filter = f.fn || f.allow;
    uint32_t ef = opts->ef ? opts->ef : h->ef_search;
    if (ef < k)
        ef = (uint32_t)IMS_MIN(k, (size_t)UINT32_MAX);

    /* estimate the admitted count by sampling (deterministic stride) */
    double admitted = n_live;
    if (user_filter) {
        uint32_t n_s = IMS_MIN(h->n_nodes, 1024u), hit = 0;
        for (uint32_t t = 0; t < n_s; t++)
            hit += admit(h, &f, (uint32_t)((uint64_t)t * h->n_nodes / n_s));
        admitted = (double)hit * h->n_nodes / n_s;
    }
    if (user_filter || h->n_deleted)
        ef = filtered_ef(h, ef, admitted);
    double graph_cost, exact_cost;
    int sparse;
    ims__plan_costs(h, admitted, ef, user_filter, f.fn != NULL, &graph_cost, &exact_cost, &sparse);
    int exact = opts->mode == IMS_SEARCH_EXACT ||
                (opts->mode != IMS_SEARCH_GRAPH && exact_cost <= graph_cost);
    if (st) {
        st->plan = exact ? IMS_SEARCH_EXACT : IMS_SEARCH_GRAPH;
        st->est_admitted = admitted;
        st->cost_graph = graph_cost, st->cost_exact = exact_cost;
        st->ef = ef;
    }

    ims__heap *W = &s->W;
    if (exact) {
        rc = exact_scan(h, s, &qc, k, &f);
    } else {
        uint32_t cur = h->entry;
        float d = ims__dist_code(h, &qc, cur);
        for (int lc = h->max_level; lc > 0; lc--)
            cur = ims__search_greedy(h, s, &qc, cur, &d, lc, 0);
        if (user_filter || h->n_deleted)
            rc = filtered_search(h, s, &qc, cur, d, ef, sparse, &f);
        else
            rc = base_search(h, s, &qc, cur, d, ef, &f);
        if (!rc && h->floats) { /* re-rank with full precision */
            for (size_t i = 0; i < W->n; i++)
                W->v[i].d = ims__dist_float(h, qc.q, h->floats + (size_t)W->v[i].i * h->n_dims);
            f.n_dist += W->n;
        }
    }
    if (rc) {
        ims__hnsw_err(h, rc, "search: out of memory");
        goto out;
    }
    qsort(W->v, W->n, sizeof *W->v, cmp_cand);
    size_t n = IMS_MIN(k, W->n);
    for (size_t i = 0; i < n; i++)
        hits[i].id = h->ids[W->v[i].i], hits[i].distance = W->v[i].d;
    *n_hits = n;
out:
    if (st)
        st->n_distances = f.n_dist, st->n_admit = f.n_admit;
    if (s)
        ims__scratch_put(h, s);
    pthread_rwlock_unlock(&h->rw);
    return rc;
}
