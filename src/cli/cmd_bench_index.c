/* SPDX-License-Identifier: MIT */
/*
 * cmd_bench_index.c — `imgsim bench-index`: build an HNSW index from TEXMEX
 * .fvecs (base), search .fvecs queries, compare with .ivecs ground truth.
 * Prints the build time and index bytes, then per ef one line
 *   ef=<ef> recall@10=<r> qps=<q> [cpu_qps=<c>] dist_q=<d>
 * measured one query at a time on one thread after a warm-up pass over
 * every query (as ann-benchmarks and the hnswlib/FAISS anchors do);
 * dist_q: distance evaluations per query (ims_search_stats).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli_int.h"
#include "imgsim/index.h"
#include "imgsim/vecs.h"

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: imgsim bench-index --base B.fvecs --query Q.fvecs --truth T.ivecs\n"
               "           --metric l2|cosine|ip [--M 16] [--ef-construction 200]\n"
               "           [--ef 10,20,40,80,160,320] [--threads N] [--storage f32|f16|int8]\n"
               "           [--keep-float] [--save FILE] [--load FILE [--read]] [--k 10]\n"
               "           [--max-queries N] [--cpu-qps]\n\n"
               "--keep-float  with f16/int8: also keep float32 vectors and re-rank with them\n"
               "--load FILE   skip the build and search a saved index (ids = base row numbers)\n"
               "--read        with --load: read the file into (huge-page) memory, ims_hnsw_load,\n"
               "              instead of mapping it (ims_hnsw_open)\n"
               "--cpu-qps     also print queries per CPU-second (steadier on a loaded host)\n");
}

/* Read a TEXMEX file (imgsim/vecs.h); 0 or CLI_FAIL with the message printed. */
static int read_vecs(const char *path, const char *what, int *dim_out, size_t *n_out,
                     void **data_out)
{
    ims_error err = {0};
    uint32_t d;
    if (ims_vecs_read(path, what, IMS_HNSW_MAX_DIM, &d, n_out, data_out, &err))
        return cli_fail("%s", err.msg);
    *dim_out = (int)d;
    return 0;
}

int cmd_bench_index(int argc, char **argv)
{
    const char *base_p = NULL, *query_p = NULL, *truth_p = NULL, *save_p = NULL, *load_p = NULL;
    const char *ef_list = "10,20,40,80,160,320";
    int metric = -1, storage = IMS_STORAGE_F32, keep_float = 0, cpu_qps = 0, read_file = 0;
    long M = 16, efc = 200, threads = 0, k = 10, max_q = 0;
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG()                                                                 \
    do {                                                                           \
        if (!v)                                                                    \
            return cli_usage("bench-index: %s needs a value", a);                  \
        i++;                                                                       \
    } while (0)
        if (!strcmp(a, "--keep-float")) {
            keep_float = 1;
            continue;
        }
        if (!strcmp(a, "--cpu-qps")) {
            cpu_qps = 1;
            continue;
        }
        if (!strcmp(a, "--read")) {
            read_file = 1;
            continue;
        }
        NEED_ARG();
        if (!strcmp(a, "--base")) base_p = v;
        else if (!strcmp(a, "--query")) query_p = v;
        else if (!strcmp(a, "--truth")) truth_p = v;
        else if (!strcmp(a, "--save")) save_p = v;
        else if (!strcmp(a, "--load")) load_p = v;
        else if (!strcmp(a, "--ef")) ef_list = v;
        else if (!strcmp(a, "--metric")) {
            if ((metric = ims_metric_from_name(v)) < 0)
                return cli_usage("bench-index: unknown metric '%s'", v);
        } else if (!strcmp(a, "--storage")) {
            if ((storage = ims_storage_from_name(v)) < 0)
                return cli_usage("bench-index: unknown storage '%s'", v);
        } else if (!strcmp(a, "--M")) {
            if (cli_parse_long(v, 2, IMS_HNSW_MAX_M, &M))
                return cli_usage("bench-index: --M must be 2..%d", IMS_HNSW_MAX_M);
        } else if (!strcmp(a, "--ef-construction")) {
            if (cli_parse_long(v, 1, 100000, &efc))
                return cli_usage("bench-index: bad --ef-construction '%s'", v);
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_long(v, 0, 256, &threads))
                return cli_usage("bench-index: bad --threads '%s'", v);
        } else if (!strcmp(a, "--k")) {
            if (cli_parse_long(v, 1, 1000, &k))
                return cli_usage("bench-index: bad --k '%s'", v);
        } else if (!strcmp(a, "--max-queries")) {
            if (cli_parse_long(v, 0, 1L << 30, &max_q))
                return cli_usage("bench-index: bad --max-queries '%s'", v);
        } else
            return cli_usage("bench-index: unknown option %s", a);
#undef NEED_ARG
    }
    if (!query_p || !truth_p || (!base_p && !load_p))
        return cli_usage("bench-index: --base (or --load), --query and --truth are required");
    if (metric < 0 && !load_p)
        return cli_usage("bench-index: --metric is required");
    long efs[64];
    int n_ef = 0;
    {
        char *dup = strdup(ef_list), *save = NULL;
        for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (n_ef == 64 || cli_parse_long(t, 1, 1000000, &efs[n_ef])) {
                free(dup);
                return cli_usage("bench-index: bad --ef list '%s'", ef_list);
            }
            n_ef++;
        }
        free(dup);
    }
    int dq = 0, dt = 0, db = 0;
    size_t nq, nt, nb = 0;
    void *Q = NULL, *T = NULL, *B = NULL;
    if (read_vecs(query_p, "fvecs", &dq, &nq, &Q))
        return CLI_FAIL;
    if (read_vecs(truth_p, "ivecs", &dt, &nt, &T)) {
        ims_free(Q);
        return CLI_FAIL;
    }
    int rc = CLI_FAIL;
    ims_hnsw *h = NULL;
    ims_error err = {0};
    if (nt < nq) {
        cli_fail("%s: %zu ground-truth rows for %zu queries", truth_p, nt, nq);
        goto done;
    }
    if (dt < k) {
        cli_fail("%s: ground truth has %d neighbours per query, need k=%ld", truth_p, dt, k);
        goto done;
    }
    if (max_q > 0 && (size_t)max_q < nq)
        nq = (size_t)max_q;
    if (load_p) {
        double t0 = ims_now();
        rc = read_file ? ims_hnsw_load(load_p, &h, &err) : ims_hnsw_open(load_p, &h, &err);
        if (rc) {
            rc = cli_fail_err(rc, &err);
            goto done;
        }
        printf("loaded %s in %.3f s (%s)\n", load_p, ims_now() - t0,
               read_file ? "read into memory" : "mapped");
    } else {
        if (read_vecs(base_p, "fvecs", &db, &nb, &B))
            goto done;
        if (db != dq) {
            cli_fail("%s: dimension %d differs from the base's %d", query_p, dq, db);
            goto done;
        }
        ims_hnsw_params p = {.metric = metric, .n_dims = (uint32_t)db, .M = (uint32_t)M,
                             .ef_construction = (uint32_t)efc, .storage = storage,
                             .keep_float = keep_float};
        if ((rc = ims_hnsw_new(&p, &h, &err))) {
            rc = cli_fail_err(rc, &err);
            goto done;
        }
        uint64_t *ids = malloc(nb * sizeof *ids);
        if (!ids) {
            rc = cli_fail("out of memory");
            goto done;
        }
        for (size_t i = 0; i < nb; i++)
            ids[i] = i;
        int n_thr = threads > 0 ? (int)threads : ims_cpu_count();
        double t0 = ims_now();
        rc = ims_hnsw_add_batch(h, nb, ids, B, n_thr);
        double t_build = ims_now() - t0;
        free(ids);
        if (rc) {
            rc = cli_fail("build: %s", ims_hnsw_errmsg(h));
            goto done;
        }
        printf("build: %zu x %d %s M=%ld ef_construction=%ld storage=%s%s threads=%d: %.2f s\n",
               nb, db, ims_metric_name(metric), M, efc, ims_storage_name(storage),
               keep_float ? "+float" : "", n_thr, t_build);
        ims_free(B);
        B = NULL;
    }
    ims_hnsw_info in;
    ims_hnsw_get_info(h, &in);
    if ((int)in.n_dims != dq) {
        rc = cli_fail("%s: dimension %d differs from the index's %u", query_p, dq, in.n_dims);
        goto done;
    }
    if (save_p) {
        double t0 = ims_now();
        if ((rc = ims_hnsw_save(h, save_p))) {
            rc = cli_fail("%s", ims_hnsw_errmsg(h));
            goto done;
        }
        struct stat st;
        stat(save_p, &st);
        printf("index bytes: %lld (file %s, saved in %.2f s)\n", (long long)st.st_size, save_p,
               ims_now() - t0);
    } else {
        printf("index bytes: %zu (in memory)\n", in.memory_bytes);
    }
    ims_hit *hits = malloc((size_t)k * sizeof *hits);
    const float *qf = Q;
    const int32_t *ti = T;
    for (int e = 0; e < n_ef; e++) {
        ims_search_stats st;
        ims_search_opts o = {.ef = (uint32_t)efs[e], .mode = IMS_SEARCH_GRAPH, .stats = &st};
        size_t found = 0, nh;
        uint64_t n_dist = 0;
        /* one warm-up pass over every query, then the timed pass (as the
         * anchors do: with --load, first touches of the mapped file then
         * fall outside the timed pass) */
        for (size_t i = 0; i < nq; i++)
            ims_hnsw_search(h, qf + i * (size_t)dq, (size_t)k, &o, hits, &nh);
        double t0 = ims_now(), c0 = thread_cpu();
        for (size_t i = 0; i < nq; i++) {
            if (ims_hnsw_search(h, qf + i * (size_t)dq, (size_t)k, &o, hits, &nh)) {
                rc = cli_fail("search: %s", ims_hnsw_errmsg(h));
                free(hits);
                goto done;
            }
            n_dist += st.n_distances;
            const int32_t *t = ti + i * (size_t)dt;
            for (size_t a = 0; a < nh; a++)
                for (long b = 0; b < k; b++)
                    if (hits[a].id == (uint64_t)(int64_t)t[b]) {
                        found++;
                        break;
                    }
        }
        double dtm = ims_now() - t0, dcpu = thread_cpu() - c0;
        printf("ef=%ld recall@%ld=%.4f qps=%.0f", efs[e], k, (double)found / ((double)nq * k),
               nq / dtm);
        if (cpu_qps) /* queries per CPU-second of this thread: steadier on a loaded host */
            printf(" cpu_qps=%.0f", nq / dcpu);
        printf(" dist_q=%.0f", (double)n_dist / (double)nq);
        printf("\n");
        fflush(stdout);
    }
    free(hits);
    rc = CLI_OK;
done:
    ims_hnsw_close(h);
    ims_free(Q), ims_free(T), ims_free(B);
    return rc;
}
