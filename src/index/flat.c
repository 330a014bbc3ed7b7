/* SPDX-License-Identifier: MIT */
/*
 * flat.c — exact k-NN over a plain float matrix (ground truth for tests and
 * benchmarks, and the right choice for small collections). Cosine is
 * computed from the raw vectors (1 - <q,x> / (|q| |x|)), so inputs need not
 * be normalised; a zero vector has distance 1.
 */
#include <math.h>
#include <stdlib.h>

#include "index_int.h"

static int cmp_hit(const void *a, const void *b)
{
    const ims__cand *x = a, *y = b;
    if (x->d < y->d) return -1;
    if (x->d > y->d) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

int ims_flat_search(int metric, uint32_t n_dims, const float *base, size_t n,
                    const uint64_t *ids, const float *query, size_t k, ims_hit *hits,
                    size_t *n_hits)
{
    *n_hits = 0;
    if (metric < IMS_METRIC_L2 || metric > IMS_METRIC_COSINE || n_dims < 1 ||
        n_dims > IMS_HNSW_MAX_DIM || k == 0 || !query || !hits || (n && !base) ||
        n > UINT32_MAX)
        return IMS_EINVAL;
    const ims__index_kernels *K = ims__index_kernels_for(ims_cpu_level());
    ims__heap W = {0};
    if (ims__heap_reserve(&W, IMS_MIN(k, n) + 1))
        return IMS_ENOMEM;
    float qn = sqrtf(K->ip_f32(query, query, n_dims));
    for (size_t i = 0; i < n; i++) {
        const float *x = base + i * n_dims;
        float d;
        if (metric == IMS_METRIC_L2)
            d = K->l2_f32(query, x, n_dims);
        else if (metric == IMS_METRIC_IP)
            d = -K->ip_f32(query, x, n_dims);
        else {
            float xn = sqrtf(K->ip_f32(x, x, n_dims));
            d = (qn > 0 && xn > 0) ? 1.0f - K->ip_f32(query, x, n_dims) / (qn * xn) : 1.0f;
        }
        if (d != d)
            continue;
        if (W.n < k)
            ims__heap_push_max(&W, d, (uint32_t)i);
        else if (d < W.v[0].d) {
            ims__heap_pop_max(&W);
            ims__heap_push_max(&W, d, (uint32_t)i);
        }
    }
    qsort(W.v, W.n, sizeof *W.v, cmp_hit);
    for (size_t i = 0; i < W.n; i++)
        hits[i].id = ids ? ids[W.v[i].i] : W.v[i].i, hits[i].distance = W.v[i].d;
    *n_hits = W.n;
    ims_free(W.v);
    return IMS_OK;
}
