/* SPDX-License-Identifier: MIT */
/*
 * test_index_oom.c — fail the Nth allocation, for every N, through new, add
 * (single and batch, threaded), search, delete/compact, save and open:
 * each call returns IMS_ENOMEM or succeeds, the index stays valid, and
 * nothing leaks (the hooks count live blocks; ASan double-checks).
 */
#include <string.h>

#include "test_index_util.h"

static long fail_at = -1, n_calls, live;

static void *t_malloc(size_t n, void *ud)
{
    (void)ud;
    if (fail_at >= 0 && __atomic_fetch_add(&n_calls, 1, __ATOMIC_RELAXED) == fail_at)
        return NULL;
    void *p = malloc(n);
    if (p)
        __atomic_fetch_add(&live, 1, __ATOMIC_RELAXED);
    return p;
}
static void *t_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    if (fail_at >= 0 && __atomic_fetch_add(&n_calls, 1, __ATOMIC_RELAXED) == fail_at)
        return NULL;
    void *q = realloc(p, n);
    if (q && !p)
        __atomic_fetch_add(&live, 1, __ATOMIC_RELAXED);
    return q;
}
static void t_free(void *p, void *ud)
{
    (void)ud;
    if (p)
        __atomic_fetch_sub(&live, 1, __ATOMIC_RELAXED);
    free(p);
}

/* one scenario; returns 1 if some allocation failed (so larger N must be tried) */
static int scenario(const float *x, const char *path, int storage)
{
    int hit = 0, rc;
    ims_hnsw_params p = {.metric = IMS_METRIC_L2, .n_dims = 8, .M = 4, .ef_construction = 20,
                         .storage = storage, .keep_float = storage == IMS_STORAGE_INT8};
    ims_hnsw *h = NULL;
    ims_error err;
    rc = ims_hnsw_new(&p, &h, &err);
    if (rc) {
        CHECK_RC(rc, IMS_ENOMEM);
        return 1;
    }
    uint64_t ids[300];
    for (int i = 0; i < 300; i++)
        ids[i] = (uint64_t)i * 7;
    rc = ims_hnsw_add_batch(h, 200, ids, x, 2);
    if (rc) {
        CHECK_RC(rc, IMS_ENOMEM);
        hit = 1;
    }
    for (int i = 200; i < 230; i++) {
        rc = ims_hnsw_add(h, ids[i], x + i * 8);
        if (rc) {
        CHECK_RC(rc, IMS_ENOMEM);
        hit = 1;
    }
    }
    ims_hit hits[5];
    size_t nh;
    rc = ims_hnsw_search(h, x, 5, NULL, hits, &nh);
    if (rc) {
        CHECK_RC(rc, IMS_ENOMEM);
        hit = 1;
    }
    for (int i = 0; i < 40; i++)
        ims_hnsw_delete(h, ids[i]);
    rc = ims_hnsw_compact(h);
    if (rc) {
        CHECK_RC(rc, IMS_ENOMEM);
        hit = 1;
    }
    CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
    rc = ims_hnsw_save(h, path);
    if (rc) hit = 1; /* stdio may fail too: EIO allowed */
    ims_hnsw_free(h);
    if (!rc) {
        rc = ims_hnsw_open(path, &h, &err);
        if (rc) {
            CHECK_RC(rc, IMS_ENOMEM);
            hit = 1;
        } else {
            rc = ims_hnsw_add(h, 999999, x);
            if (rc) {
        CHECK_RC(rc, IMS_ENOMEM);
        hit = 1;
    }
            CHECK_RC(ims_hnsw_check(h, 1), IMS_OK);
            ims_hnsw_free(h);
        }
    }
    return hit;
}

int main(void)
{
    ims_init();
    float *x = tix_data(300, 8, 4, 2);
    char path[] = "/tmp/ims_idx_oom_XXXXXX";
    close(mkstemp(path));
    ims_allocator a = {t_malloc, t_realloc, t_free, NULL};
    static const int storages[] = {IMS_STORAGE_F32, IMS_STORAGE_INT8};
    for (int s = 0; s < 2; s++) {
        long n;
        for (n = 0; n < 100000; n++) {
            ims_set_allocator(&a);
            fail_at = n, n_calls = 0, live = 0;
            int hit = scenario(x, path, storages[s]);
            ims_set_allocator(NULL);
            CHECK_MSG(live == 0, "storage %d fail_at %ld: %ld blocks leaked", storages[s], n, live);
            if (!hit && n_calls <= n)
                break; /* every allocation succeeded: all failure points were tried */
        }
        printf("storage %s: %ld failure points tried\n", ims_storage_name(storages[s]), n);
    }
    unlink(path);
    free(x);
    return check_report();
}
