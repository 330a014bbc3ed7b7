/* SPDX-License-Identifier: MIT */
/*
 * hnsw_build.c — adding vectors, one at a time or as a batch built by N
 * threads, and level generation. (Creation and growth: handle.c; the id
 * map: idmap.c; scratch: scratch.c.)
 *
 * Phases of ims_hnsw_add_batch (all under the exclusive lock):
 *   1. validate every vector and id, reserve slots and map entries, so
 *      that an invalid batch changes nothing;
 *   2. write ids, levels (seeded hash of the slot: reproducible whatever
 *      the thread count), codes and upper-layer link arrays for all slots;
 *   3. insert (Algorithm 1, hnsw_insert.c): the first node of an empty
 *      index alone, the rest by n_threads workers taking slots in order
 *      from an atomic counter. Workers coordinate through the per-node spin
 *      locks and ep_lock described in index_int.h. With one thread the
 *      graph depends only on the seed, parameters and insertion order.
 * If an insertion fails (out of memory while growing a search heap), the
 * node is marked deleted and unmapped: it still routes searches but is
 * never returned, so the index stays consistent.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "index_int.h"

/* ---- adding ------------------------------------------------------------------------- */

/* Level of a slot: floor(-ln(U) * mL) (Section 4, "mL = 1/ln(M)") with U
 * drawn from a hash of (seed, slot), so that levels do not depend on
 * thread scheduling. */
int ims__random_level(const ims_hnsw *h, uint32_t slot)
{
    uint64_t x = h->seed * 0x9e3779b97f4a7c15ULL + slot + 1;
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27, x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    double u = ((x >> 11) + 1) * (1.0 / 9007199254740992.0); /* (0, 1] */
    double l = -log(u) * h->mult;
    return l >= IMS__MAX_LEVEL ? IMS__MAX_LEVEL : (int)l;
}

typedef struct build_job {
    ims_hnsw *h;
    uint32_t next, end; /* atomic cursor over slots */
    int rc;
    uint32_t *failed;   /* slots whose insertion failed */
    uint32_t n_failed;
} build_job;

static void *build_worker(void *arg)
{
    build_job *j = arg;
    ims_hnsw *h = j->h;
    ims__scratch *s = ims__scratch_get(h);
    for (;;) {
        uint32_t q = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (q >= j->end)
            break;
        int rc = s ? ims__hnsw_insert(h, q, s, 1) : IMS_ENOMEM;
        if (rc) {
            uint32_t f = __atomic_fetch_add(&j->n_failed, 1, __ATOMIC_RELAXED);
            j->failed[f] = q;
            __atomic_store_n(&j->rc, rc, __ATOMIC_RELAXED);
        }
    }
    if (s)
        ims__scratch_put(h, s);
    return NULL;
}

/* A float32 index is built over temporary int8 codes: Algorithm 2's
 * distances (most of the build) read a quarter of the bytes, while
 * Algorithm 4 and the inserted element's own vector stay exact (float32,
 * via h->floats). The handle briefly looks like an INT8 index with float
 * copies; swap_out_build_codes restores it. Skipped if memory is short. */
#ifndef IMS__WALK_MIN_DIM
#define IMS__WALK_MIN_DIM 256
#endif

typedef struct build_swap {
    unsigned char *codes;
    size_t code_size;
    float *qlo, *qstep;
    int quant_owned;
} build_swap;

static int swap_in_build_codes(ims_hnsw *h, build_swap *sw)
{
    size_t D = h->n_dims, bytes;
    /* below 256 dimensions the vectors are cheap to read and decoding
     * costs more than it saves (c-sift-A 200k x 128: 88 s vs 69 s build,
     * same recall) */
    if (h->storage != IMS_STORAGE_F32 || D < IMS__WALK_MIN_DIM ||
        !ims_size_mul(h->capacity, D, &bytes))
        return 0;
    unsigned char *codes = ims__alloc_big(bytes);
    float *q = ims_malloc(2 * D * sizeof(float));
    if (!codes || !q) {
        ims_aligned_free(codes), ims_free(q);
        return 0;
    }
    sw->codes = h->codes, sw->code_size = h->code_size;
    sw->qlo = h->qlo, sw->qstep = h->qstep, sw->quant_owned = h->quant_owned;
    h->floats = (float *)(void *)h->codes;
    h->qlo = q, h->qstep = q + D, h->quant_owned = 0;
    h->storage = IMS_STORAGE_INT8, h->code_size = D;
    ims__quant_train(h, h->floats, IMS_MIN(h->n_nodes, 65536u));
    for (uint32_t i = 0; i < h->n_nodes; i++)
        ims__encode(h, h->floats + (size_t)i * D, codes + (size_t)i * D);
    h->codes = codes;
    return 1;
}

static void swap_out_build_codes(ims_hnsw *h, build_swap *sw)
{
    ims_aligned_free(h->codes);
    ims_free(h->qlo);
    h->codes = sw->codes, h->code_size = sw->code_size, h->floats = NULL;
    h->qlo = sw->qlo, h->qstep = sw->qstep, h->quant_owned = sw->quant_owned;
    h->storage = IMS_STORAGE_F32, h->quant_ready = 0;
}

int ims__validate_vec(ims_hnsw *h, const float *v)
{
    for (uint32_t d = 0; d < h->n_dims; d++)
        if (!isfinite(v[d]))
            return ims__hnsw_err(h, IMS_EINVAL, "vector has a NaN or Inf at dimension %u", d);
    if (h->metric == IMS_METRIC_COSINE) {
        double ss = 0;
        for (uint32_t d = 0; d < h->n_dims; d++)
            ss += (double)v[d] * v[d];
        if (!(ss > 0) || !isfinite(ss))
            return ims__hnsw_err(h, IMS_EINVAL, "zero vector under the cosine metric");
    }
    return IMS_OK;
}

int ims__hnsw_add_locked(ims_hnsw *h, size_t n, const uint64_t *ids, const float *vecs,
                         int n_threads)
{
    if (n == 0)
        return IMS_OK;
    if (!ids || !vecs)
        return ims__hnsw_err(h, IMS_EINVAL, "add: NULL ids or vectors");
    size_t D = h->n_dims;
    for (size_t i = 0; i < n; i++) {
        int rc = ims__validate_vec(h, vecs + i * D);
        if (rc) {
            char why[IMS_ERROR_MSG_MAX];
            snprintf(why, sizeof why, "%s", ims_hnsw_errmsg(h));
            return ims__hnsw_err(h, rc, "add: item %zu (id %llu): %s", i,
                                 (unsigned long long)ids[i], why);
        }
    }
    int rc0 = ims__map_ensure(h);
    if (rc0)
        return rc0;
    uint32_t base = h->n_nodes;
    if ((size_t)base + n > (size_t)IMS__NONE - 2)
        return ims__hnsw_err(h, IMS_EFULL, "add: too many items");
    if (ims__hnsw_reserve(h, (size_t)base + n) || ims__map_reserve(h, h->map_used + n))
        return ims__hnsw_err(h, IMS_ENOMEM, "add: out of memory");
    size_t i_map = 0;
    int rc = IMS_OK;
    for (; i_map < n; i_map++) {
        if (ims__map_get(h, ids[i_map]) != IMS__NONE) {
            rc = ims__hnsw_err(h, IMS_EEXIST, "add: id %llu already present",
                               (unsigned long long)ids[i_map]);
            break;
        }
        if ((rc = ims__map_put(h, ids[i_map], base + (uint32_t)i_map))) {
            ims__hnsw_err(h, rc, "add: out of memory");
            break;
        }
    }
    size_t i_up = 0;
    if (!rc) {
        for (; i_up < n; i_up++) {
            uint32_t q = base + (uint32_t)i_up;
            int l = ims__random_level(h, q);
            h->levels[q] = (uint8_t)l;
            h->upper[q] = NULL;
            if (l > 0 && !(h->upper[q] = ims_calloc((size_t)l * (1 + h->M), 4))) {
                rc = ims__hnsw_err(h, IMS_ENOMEM, "add: out of memory");
                break;
            }
        }
    }
    build_job j = {0};
    if (!rc && !(j.failed = ims_malloc(n * sizeof(uint32_t))))
        rc = ims__hnsw_err(h, IMS_ENOMEM, "add: out of memory");
    if (rc) { /* undo: nothing was added */
        for (size_t i = 0; i < i_up; i++)
            ims_free(h->upper[base + i]), h->upper[base + i] = NULL;
        for (size_t i = 0; i < i_map; i++)
            ims__map_del(h, ids[i]);
        return rc;
    }
    ims__mark_dirty(h, 0);
    /* A quantised index without float copies still builds from float32:
     * node-to-node distances (Algorithm 4) would otherwise decode a code
     * per candidate, which doubles the build time at 1280 dimensions. The
     * copies live for this batch only (skipped if memory is short). */
    float *tmp_floats = NULL;
    if (h->storage != IMS_STORAGE_F32 && !h->keep_float && n >= 256) {
        size_t bytes;
        if (ims_size_mul3(h->capacity, D, sizeof(float), &bytes) &&
            (tmp_floats = ims__alloc_big(bytes))) {
            for (uint32_t q = 0; q < base; q++)
                ims__decode(h, q, tmp_floats + (size_t)q * D);
            h->floats = tmp_floats;
        }
    }
    if (h->storage == IMS_STORAGE_INT8 && !h->quant_ready) {
        /* fit on normalised vectors for cosine: use the codes area as scratch is
         * not possible, so fit on raw input then (cosine inputs are normalised
         * below; the quantiser sees their range via a normalised copy) */
        if (h->metric == IMS_METRIC_COSINE) {
            size_t m = IMS_MIN(n, 65536);
            float *tmp = ims_malloc(m * D * sizeof(float));
            if (!tmp) {
                for (size_t i = 0; i < n; i++)
                    ims_free(h->upper[base + i]), h->upper[base + i] = NULL;
                for (size_t i = 0; i < n; i++)
                    ims__map_del(h, ids[i]);
                ims_free(j.failed);
                if (tmp_floats)
                    ims_aligned_free(tmp_floats), h->floats = NULL;
                return ims__hnsw_err(h, IMS_ENOMEM, "add: out of memory");
            }
            for (size_t i = 0; i < m; i++)
                ims__prepare_vec(h, vecs + i * D, tmp + i * D);
            ims__quant_train(h, tmp, m);
            ims_free(tmp);
        } else {
            ims__quant_train(h, vecs, n);
        }
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t q = base + (uint32_t)i;
        h->ids[q] = ids[i];
        h->flags[q] = 0;
        h->locks[q] = 0;
        memset(ims__links(h, q, 0), 0, 4u * (1 + h->M0));
        float *dst = h->floats ? h->floats + (size_t)q * D : NULL;
        if (h->storage == IMS_STORAGE_F32) {
            ims__prepare_vec(h, vecs + i * D, (float *)(void *)(h->codes + (size_t)q * h->code_size));
        } else {
            float tmp[IMS_HNSW_MAX_DIM];
            ims__prepare_vec(h, vecs + i * D, tmp);
            ims__encode(h, tmp, h->codes + (size_t)q * h->code_size);
            if (dst)
                memcpy(dst, tmp, D * sizeof(float));
        }
    }
    h->n_nodes = base + (uint32_t)n;
    build_swap sw;
    int swapped = n >= 256 && swap_in_build_codes(h, &sw);

    j.h = h, j.next = base, j.end = base + (uint32_t)n;
    if (h->entry == IMS__NONE) { /* the first node becomes the entry point */
        ims__scratch *s = ims__scratch_get(h);
        int r = s ? ims__hnsw_insert(h, base, s, 0) : IMS_ENOMEM;
        if (s)
            ims__scratch_put(h, s);
        if (r)
            j.failed[j.n_failed++] = base, j.rc = r;
        j.next++;
    }
    if (n_threads <= 0)
        n_threads = ims_cpu_count();
    if ((size_t)n_threads > n / 64)
        n_threads = (int)(n / 64);
    if (n_threads > 64)
        n_threads = 64;
    pthread_t tid[64];
    int n_started = 0;
    if (n_threads > 1) {
        for (int t = 0; t < n_threads; t++)
            if (pthread_create(&tid[n_started], NULL, build_worker, &j) == 0)
                n_started++;
    }
    if (n_started == 0) { /* single-threaded, in slot order */
        ims__scratch *s = ims__scratch_get(h);
        for (uint32_t q = j.next; q < j.end; q++) {
            int r = s ? ims__hnsw_insert(h, q, s, 0) : IMS_ENOMEM;
            if (r)
                j.failed[j.n_failed++] = q, j.rc = r;
        }
        if (s)
            ims__scratch_put(h, s);
    }
    for (int t = 0; t < n_started; t++)
        pthread_join(tid[t], NULL);
    if (tmp_floats)
        ims_aligned_free(tmp_floats), h->floats = NULL;
    if (swapped)
        swap_out_build_codes(h, &sw);
    for (uint32_t f = 0; f < j.n_failed; f++) { /* keep it consistent: unmap, mark deleted */
        uint32_t q = j.failed[f];
        ims__map_del(h, h->ids[q]);
        h->flags[q] |= IMS__FLAG_DELETED;
        h->n_deleted++;
    }
    ims_free(j.failed);
    if (j.rc)
        return ims__hnsw_err(h, j.rc, "add: %u of %zu insertions failed: %s", j.n_failed, n,
                             ims_strerror(j.rc));
    return IMS_OK;
}

int ims_hnsw_add_batch(ims_hnsw *h, size_t n, const uint64_t *ids, const float *vecs,
                       int n_threads)
{
    pthread_rwlock_wrlock(&h->rw);
    int rc = ims__hnsw_add_locked(h, n, ids, vecs, n_threads);
    pthread_rwlock_unlock(&h->rw);
    return rc;
}

int ims_hnsw_add(ims_hnsw *h, uint64_t id, const float *vec)
{
    return ims_hnsw_add_batch(h, 1, &id, vec, 1);
}
