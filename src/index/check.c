/* SPDX-License-Identifier: MIT */
/*
 * check.c — ims_hnsw_check: integrity verification (SQLite's
 * integrity_check, Redis' lpValidateIntegrity). The cheap level walks the
 * graph structure; deep adds the CRCs of sections still as loaded from the
 * file and the finiteness of every stored vector.
 */
#include <math.h>
#include <string.h>

#include "index_int.h"

int ims_hnsw_check(ims_hnsw *h, int deep)
{
    pthread_rwlock_rdlock(&h->rw);
    int rc = IMS_OK;
    uint32_t n = h->n_nodes, n_del = 0;
#define BAD(...)                                                                   \
    do {                                                                           \
        rc = ims__hnsw_err(h, IMS_ECORRUPT, __VA_ARGS__);                          \
        goto out;                                                                  \
    } while (0)
    if (deep && h->backing) {
        static const int bulk[] = {IMS__SEC_LINKS0, IMS__SEC_CODES, IMS__SEC_FLOATS};
        for (size_t i = 0; i < IMS_ARRAY_LEN(bulk); i++) {
            int k = bulk[i];
            if (h->sec_pristine[k] &&
                ims__crc32c(0, h->backing + h->sec_off[k], h->sec_size[k]) != h->sec_crc[k])
                BAD("section %d at offset %llu: checksum mismatch", k,
                    (unsigned long long)h->sec_off[k]);
        }
    }
    if (n == 0) {
        if (h->entry != IMS__NONE || h->max_level != -1)
            BAD("empty index with an entry point");
        goto out;
    }
    if (h->entry >= n || h->levels[h->entry] != h->max_level)
        BAD("entry point %u (max level %d) invalid", h->entry, h->max_level);
    if (ims__map_ensure(h) != IMS_OK)
        BAD("%s", "a live id appears twice, or no memory for the id map");
    for (uint32_t i = 0; i < n; i++) {
        if (h->levels[i] > h->max_level)
            BAD("slot %u: level %u above max level %d", i, h->levels[i], h->max_level);
        if (h->flags[i] & IMS__FLAG_DELETED)
            n_del++;
        else if (ims__map_get(h, h->ids[i]) != i)
            BAD("slot %u: id %llu not mapped to it", i, (unsigned long long)h->ids[i]);
        if (h->levels[i] && !h->upper[i])
            BAD("slot %u: no upper links", i);
        for (int lc = 0; lc <= h->levels[i]; lc++) {
            const uint32_t *l = ims__links(h, i, lc);
            uint32_t mmax = lc ? h->M : h->M0;
            if (l[0] > mmax)
                BAD("slot %u layer %d: %u links (max %u)", i, lc, l[0], mmax);
            for (uint32_t j = 0; j < l[0]; j++) {
                uint32_t e = l[1 + j];
                if (e >= n)
                    BAD("slot %u layer %d: link %u out of range", i, lc, e);
                if (e == i)
                    BAD("slot %u layer %d: links to itself", i, lc);
                if (h->levels[e] < lc)
                    BAD("slot %u layer %d: neighbour %u has level %u", i, lc, e, h->levels[e]);
            }
        }
        if (deep) {
            float v[IMS_HNSW_MAX_DIM];
            ims__decode(h, i, v);
            for (uint32_t d = 0; d < h->n_dims; d++)
                if (!isfinite(v[d]))
                    BAD("slot %u: vector not finite at dimension %u", i, d);
        }
    }
    if (n_del != h->n_deleted)
        BAD("%u deleted slots, expected %u", n_del, h->n_deleted);
out:
    pthread_rwlock_unlock(&h->rw);
    return rc;
#undef BAD
}
