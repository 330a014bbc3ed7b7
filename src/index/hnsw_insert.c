/* SPDX-License-Identifier: MIT */
/*
 * hnsw_insert.c — Algorithm 1 (INSERT) and Algorithm 4
 * (SELECT-NEIGHBORS-HEURISTIC, with extendCandidates = false and
 * keepPrunedConnections = false, as in the paper's recommended setting and
 * hnswlib).
 *
 * INSERT(hnsw, q, M, Mmax, efConstruction, mL): the new element q (already in
 * its slot, with its level l) descends greedily from ep through the layers
 * above l, then at each layer lc = min(L, l) .. 0 finds W = SEARCH-LAYER(q,
 * ep, efConstruction, lc), links q to the M neighbours chosen by Algorithm 4
 * and links each neighbour e back to q, shrinking e's list with Algorithm 4
 * when it exceeds Mmax (M above layer 0, Mmax0 = 2M at layer 0).
 *
 * With parallel != 0 several insertions run at once: see the locking
 * invariants in index_int.h. q's own lists are written under q's lock
 * before any neighbour links back, so no thread ever sees a half-written
 * list; a node's lock is never held while taking another.
 */
#include <stdlib.h>
#include <string.h>

#include "index_int.h"

uint32_t ims__search_greedy(ims_hnsw *h, ims__scratch *s, const ims__qctx *qc, uint32_t cur,
                            float *d_cur, int lc, int parallel);

/* node-to-node distances: a context for node a, then dist(a, b) */
typedef struct nctx {
    ims__qctx qc;
    int use_float; /* qc.q is a float vector and b's float vector is compared */
} nctx;

static void nctx_prepare(ims_hnsw *h, ims__scratch *s, uint32_t a, nctx *nc)
{
    size_t D = h->n_dims;
    if (h->floats) {
        nc->qc.q = h->floats + (size_t)a * D, nc->use_float = 1;
    } else if (h->storage == IMS_STORAGE_F32) {
        nc->qc.q = (const float *)(const void *)(h->codes + (size_t)a * h->code_size);
        nc->use_float = 0;
    } else {
        ims__decode(h, a, s->dec);
        ims__qctx_prepare(h, &nc->qc, s->dec, s->abuf2, s->bbuf2);
        nc->use_float = 0;
    }
}

static inline float nctx_dist(ims_hnsw *h, const nctx *nc, uint32_t b)
{
    if (nc->use_float)
        return ims__dist_float(h, nc->qc.q, h->floats + (size_t)b * h->n_dims);
    return ims__dist_code(h, &nc->qc, b);
}

static int cmp_cand(const void *a, const void *b)
{
    const ims__cand *x = a, *y = b;
    if (x->d < y->d) return -1;
    if (x->d > y->d) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Algorithm 4: from the candidates in Cset (any order; distances to the base
 * element), keep up to Mmax that are closer to the base than to any element
 * already kept. Sorts Cset->v in place. Returns the count written to out. */
int ims__select_neighbors(ims_hnsw *h, ims__scratch *s, ims__heap *Cset, uint32_t Mmax,
                          ims__cand *out)
{
    qsort(Cset->v, Cset->n, sizeof *Cset->v, cmp_cand);
    int n_R = 0;
    if (Cset->n < Mmax) { /* as hnswlib: fewer candidates than slots, keep all */
        for (size_t i = 0; i < Cset->n; i++)
            out[n_R++] = Cset->v[i];
        return n_R;
    }
    for (size_t i = 0; i < Cset->n && (uint32_t)n_R < Mmax; i++) {
        ims__cand e = Cset->v[i];
        nctx nc;
        nctx_prepare(h, s, e.i, &nc);
        int good = 1;
        for (int r = 0; r < n_R; r++)
            if (nctx_dist(h, &nc, out[r].i) < e.d) {
                good = 0;
                break;
            }
        if (good)
            out[n_R++] = e;
    }
    return n_R;
}

/* link e back to q at layer lc, shrinking e's list with Algorithm 4 if full */
static int connect_back(ims_hnsw *h, ims__scratch *s, uint32_t e, uint32_t q, float d_eq, int lc,
                        int parallel)
{
    uint32_t mmax = lc ? h->M : h->M0;
    if (parallel)
        ims__lock(h, e);
    uint32_t *l = ims__links(h, e, lc);
    uint32_t cnt = IMS_MIN(l[0], mmax);
    int rc = IMS_OK;
    for (uint32_t j = 0; j < cnt; j++)
        if (l[1 + j] == q)
            goto done;
    if (cnt < mmax) {
        l[1 + cnt] = q;
        l[0] = cnt + 1;
        goto done;
    }
    /* shrink connections: e's neighbours plus q, by distance to e */
    ims__heap *R = &s->R;
    R->n = 0;
    if (ims__heap_reserve(R, cnt + 1)) {
        rc = IMS_ENOMEM;
        goto done;
    }
    {
        nctx nc;
        nctx_prepare(h, s, e, &nc);
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t x = l[1 + j];
            if (x >= h->n_nodes || x == e)
                continue;
            R->v[R->n].d = nctx_dist(h, &nc, x), R->v[R->n].i = x, R->n++;
        }
    }
    R->v[R->n].d = d_eq, R->v[R->n].i = q, R->n++;
    ims__cand sel[2 * IMS_HNSW_MAX_M];
    int n_sel = ims__select_neighbors(h, s, R, mmax, sel);
    for (int j = 0; j < n_sel; j++)
        l[1 + j] = sel[j].i;
    l[0] = (uint32_t)n_sel;
done:
    if (parallel)
        ims__unlock(h, e);
    return rc;
}

/* Parallel builds only, q's lock held: other threads may already have
 * linked themselves into q's list at lc (they found q on layer lc+1 and
 * entered layer lc through it) before q writes its own selection. Keep
 * them: merge with sel, and if that overflows Mmax choose with Algorithm 4.
 * Returns the new count in sel (room for 2 * IMS_HNSW_MAX_M). */
static int merge_own_links(ims_hnsw *h, ims__scratch *s, const ims__qctx *qc, uint32_t q, int lc,
                           ims__cand *sel, int n_sel)
{
    uint32_t mmax = lc ? h->M : h->M0;
    const uint32_t *lq = ims__links(h, q, lc);
    uint32_t n_old = IMS_MIN(lq[0], mmax);
    if (n_old == 0)
        return n_sel;
    ims__heap *R = &s->R;
    if (ims__heap_reserve(R, (size_t)n_sel + n_old))
        return n_sel; /* keep our own selection: still a valid graph */
    R->n = 0;
    for (int j = 0; j < n_sel; j++)
        R->v[R->n++] = sel[j];
    for (uint32_t j = 0; j < n_old; j++) {
        uint32_t x = lq[1 + j];
        int dup = x == q || x >= h->n_nodes;
        for (int t = 0; t < n_sel && !dup; t++)
            dup = sel[t].i == x;
        if (!dup)
            R->v[R->n].d = ims__dist_code(h, qc, x), R->v[R->n].i = x, R->n++;
    }
    if (R->n <= mmax) {
        for (size_t j = 0; j < R->n; j++)
            sel[j] = R->v[j];
        return (int)R->n;
    }
    return ims__select_neighbors(h, s, R, mmax, sel);
}

int ims__hnsw_insert(ims_hnsw *h, uint32_t q, ims__scratch *s, int parallel)
{
    float *qv = s->qbuf;
    ims__decode(h, q, qv);
    ims__qctx qc;
    ims__qctx_prepare(h, &qc, qv, s->abuf, s->bbuf);
    int l = h->levels[q];

    if (parallel)
        pthread_mutex_lock(&h->ep_lock);
    uint32_t ep = h->entry;
    int L = h->max_level;
    int hold = l > L; /* keep ep_lock through an insertion that raises the top */
    if (parallel && !hold)
        pthread_mutex_unlock(&h->ep_lock);
    if (ep == IMS__NONE) {
        h->entry = q, h->max_level = l;
        if (parallel)
            pthread_mutex_unlock(&h->ep_lock);
        return IMS_OK;
    }
    int rc = IMS_OK;
    float d = ims__dist_code(h, &qc, ep);
    for (int lc = L; lc > l; lc--)
        ep = ims__search_greedy(h, s, &qc, ep, &d, lc, parallel);

    /* W from the previous layer seeds the next; kept in eps (size <= ef) */
    ims__cand ep0 = {d, ep};
    ims__cand *eps = &ep0;
    size_t n_eps = 1;
    ims__cand *epbuf = NULL;
    for (int lc = IMS_MIN(L, l); lc >= 0; lc--) {
        if ((rc = ims__search_layer(h, s, &qc, eps, n_eps, h->ef_construction, lc, parallel, q)))
            break;
        /* keep W as the next entry points before Algorithm 4 reorders it */
        if (lc > 0) {
            ims__cand *nb = ims_realloc(epbuf, (s->W.n + 1) * sizeof *nb);
            if (!nb) {
                rc = IMS_ENOMEM;
                break;
            }
            epbuf = nb;
            memcpy(epbuf, s->W.v, s->W.n * sizeof *nb);
        }
        size_t n_W = s->W.n;
        ims__cand sel[2 * IMS_HNSW_MAX_M];
        int n_sel = ims__select_neighbors(h, s, &s->W, h->M, sel);
        if (parallel) {
            ims__lock(h, q);
            n_sel = merge_own_links(h, s, &qc, q, lc, sel, n_sel);
        }
        uint32_t *lq = ims__links(h, q, lc);
        for (int j = 0; j < n_sel; j++)
            lq[1 + j] = sel[j].i;
        lq[0] = (uint32_t)n_sel;
        if (parallel)
            ims__unlock(h, q);
        for (int j = 0; j < n_sel && !rc; j++)
            rc = connect_back(h, s, sel[j].i, q, sel[j].d, lc, parallel);
        if (rc)
            break;
        eps = epbuf, n_eps = n_W;
    }
    ims_free(epbuf);
    if (hold) {
        if (!rc)
            h->entry = q, h->max_level = l;
        if (parallel)
            pthread_mutex_unlock(&h->ep_lock);
    }
    return rc;
}
