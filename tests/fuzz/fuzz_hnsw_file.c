/* SPDX-License-Identifier: MIT */
/*
 * fuzz_hnsw_file.c — open arbitrary bytes as an index file; when they open,
 * run the deep check, a few searches (graph and exact), an insert, a
 * delete + compaction, and check again. Nothing may crash or leak, whatever
 * the bytes. Big inputs are skipped (the corpus holds small files).
 */
#include <stdint.h>
#include <string.h>

#include "imgsim/imgsim.h"
#include "imgsim/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        ims_init();
        ims_log_set_level(IMS_LOG_ERROR);
        init = 1;
    }
    if (size > (1u << 20))
        return 0;
    ims_hnsw *h = NULL;
    ims_error err;
    if (ims_hnsw_open_buffer(data, size, &h, &err) != IMS_OK)
        return 0;
    int deep_ok = ims_hnsw_check(h, 1) == IMS_OK;
    ims_hnsw_info in;
    ims_hnsw_get_info(h, &in);
    float q[IMS_HNSW_MAX_DIM];
    for (uint32_t d = 0; d < in.n_dims; d++)
        q[d] = (float)((d * 7919u) % 13) - 6.0f + 0.5f;
    ims_hit hits[8];
    size_t nh;
    for (int mode = 0; mode < 3; mode++) {
        ims_search_opts o = {.ef = 16, .mode = mode};
        ims_hnsw_search(h, q, 8, &o, hits, &nh);
    }
    if (deep_ok) { /* writes are only promised on sound files */
        ims_hnsw_add(h, 0xfeedfaceull, q);
        if (nh)
            ims_hnsw_delete(h, hits[0].id);
        ims_hnsw_compact(h);
        if (ims_hnsw_check(h, 1) != IMS_OK)
            __builtin_trap();
    }
    ims_hnsw_close(h);
    return 0;
}
