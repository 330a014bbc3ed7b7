/* SPDX-License-Identifier: MIT */
/* test_index_util.h — seeded data and recall helpers for the index tests. */
#ifndef IMS_TEST_INDEX_UTIL_H
#define IMS_TEST_INDEX_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "imgsim/imgsim.h"
#include "imgsim/index.h"

/* n clustered vectors (n_clusters Gaussian-ish blobs), seeded */
static inline float *tix_data(size_t n, uint32_t dim, int n_clusters, unsigned long long seed)
{
    float *centers = malloc(sizeof(float) * (size_t)n_clusters * dim);
    float *x = malloc(sizeof(float) * n * dim);
    unsigned long long s = seed;
    for (size_t i = 0; i < (size_t)n_clusters * dim; i++)
        centers[i] = check_rand_f(&s) * 2.0f;
    for (size_t i = 0; i < n; i++) {
        int c = (int)(check_rand_u64(&s) % (unsigned)n_clusters);
        for (uint32_t d = 0; d < dim; d++) {
            float g = (check_rand_f(&s) + check_rand_f(&s) + check_rand_f(&s)) * 0.5f;
            x[i * dim + d] = centers[(size_t)c * dim + d] + g;
        }
    }
    free(centers);
    return x;
}

static inline ims_hnsw *tix_build(int metric, int storage, int keep_float, uint32_t dim,
                                  const float *x, size_t n, int threads, uint64_t seed)
{
    ims_hnsw_params p = {.metric = metric, .n_dims = dim, .M = 16, .ef_construction = 100,
                         .ef_search = 64, .storage = storage, .keep_float = keep_float,
                         .seed = seed};
    ims_hnsw *h = NULL;
    ims_error err;
    if (ims_hnsw_new(&p, &h, &err) != IMS_OK) {
        fprintf(stderr, "new: %s\n", err.msg);
        return NULL;
    }
    uint64_t *ids = malloc(sizeof(uint64_t) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        ids[i] = 1000 + i; /* ids differ from slots on purpose */
    int rc = ims_hnsw_add_batch(h, n, ids, x, threads);
    free(ids);
    if (rc) {
        fprintf(stderr, "add_batch: %s\n", ims_hnsw_errmsg(h));
        ims_hnsw_free(h);
        return NULL;
    }
    return h;
}

/* recall@k of hits vs truth (both id lists) */
static inline double tix_overlap(const ims_hit *a, size_t na, const ims_hit *t, size_t nt)
{
    size_t hit = 0;
    for (size_t i = 0; i < nt; i++)
        for (size_t j = 0; j < na; j++)
            if (a[j].id == t[i].id) {
                hit++;
                break;
            }
    return nt ? (double)hit / nt : 1.0;
}

/* mean recall@k over nq queries against exact search on x (ids 1000+i);
 * `admit` (may be NULL) restricts the truth like the filter in opts */
static inline double tix_recall(ims_hnsw *h, int metric, const float *x, size_t n, uint32_t dim,
                                const float *q, size_t nq, size_t k, const ims_search_opts *opts,
                                int (*admit)(uint64_t, void *), void *ud)
{
    uint64_t *ids = malloc(sizeof(uint64_t) * n);
    float *sub = malloc(sizeof(float) * n * dim);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!admit || admit(1000 + i, ud)) {
            ids[m] = 1000 + i;
            memcpy(sub + m * dim, x + i * dim, sizeof(float) * dim);
            m++;
        }
    ims_hit *hits = malloc(sizeof(ims_hit) * k), *truth = malloc(sizeof(ims_hit) * k);
    double sum = 0;
    for (size_t i = 0; i < nq; i++) {
        size_t nh = 0, nt = 0;
        ims_hnsw_search(h, q + i * dim, k, opts, hits, &nh);
        ims_flat_search(metric, dim, sub, m, ids, q + i * dim, k, truth, &nt);
        sum += tix_overlap(hits, nh, truth, nt);
    }
    free(ids), free(sub), free(hits), free(truth);
    if (getenv("IMS_TEST_VERBOSE"))
        printf("recall@%zu = %.4f\n", k, sum / (double)nq);
    return sum / (double)nq;
}

#endif
