/* SPDX-License-Identifier: MIT */
/*
 * filter.c — filtered search from the public API: QPS and recall@10 of the
 * AUTO, GRAPH and EXACT plans at a range of filter selectivities.
 *
 *   bench_filter [--n 50000] [--dim 128] [--nq 200] [--M 16] [--efc 200]
 *                [--ef 64] [--rounds 3] [--threads 2] [--seed 42]
 *                [--sel 0.001,0.002,...] [--storage f32|f16|int8] [--fn]
 *                [--delete 0.0]
 *
 * Data: n vectors from 100 Gaussian clusters (centres uniform in [0, 4)^d,
 * per-cluster spread 0.5..1.5), L2; queries from the same model, never
 * copies. A "category" of selectivity s admits the items whose id hashes
 * below s (uncorrelated with the vectors, like a shop category that cuts
 * across visual clusters); it is passed as the allow bitset (what the
 * collection does), or with --fn as a predicate. --delete deletes that
 * fraction of the items (uniformly) before the measurements.
 *
 * Truth: ims_flat_search over the admitted live items (brute force).
 * Timing: rounds x (AUTO, GRAPH, EXACT) alternated, best round per plan,
 * one thread, one query per call, after a warm-up pass; the CPU model
 * from /proc/cpuinfo is printed beside the table. Work counters come from
 * ims_search_stats (distances and admission tests per query, and the beam
 * the graph walk used: ef widened for filtered walks).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imgsim/imgsim.h"
#include "imgsim/index.h"

static uint64_t rng = 42;
static uint64_t next_u64(void) /* splitmix64 */
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }
static double gauss(void)
{
    double u = unif() + 1e-300, v = unif();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static void gen(float *x, size_t n, uint32_t d, const float *centres, const float *spread, int n_c)
{
    for (size_t i = 0; i < n; i++) {
        int c = (int)(next_u64() % (uint64_t)n_c);
        for (uint32_t j = 0; j < d; j++)
            x[i * d + j] = centres[(size_t)c * d + j] + spread[c] * (float)gauss();
    }
}

static double id_hash01(uint64_t id) /* the category key of an id */
{
    uint64_t z = id * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
    return (double)((z ^ (z >> 29)) >> 11) / 9007199254740992.0;
}

typedef struct fctx {
    double sel;
} fctx;
static int pred(uint64_t id, void *ud) { return id_hash01(id) < ((fctx *)ud)->sel; }

static void cpu_name(char *out, size_t n)
{
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p += 1 + (p[1] == ' ');
                p[strcspn(p, "\n")] = 0;
                snprintf(out, n, "%s", p);
            }
            break;
        }
    if (f)
        fclose(f);
}

int main(int argc, char **argv)
{
    size_t n = 50000, nq = 200;
    uint32_t dim = 128, M = 16, efc = 200, ef = 64;
    int rounds = 3, threads = 2, use_fn = 0, storage = IMS_STORAGE_F32;
    double del = 0;
    const char *sel_list = "0.001,0.002,0.005,0.01,0.02,0.05,0.1,0.2,0.3,0.5";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--fn")) {
            use_fn = 1;
            continue;
        }
        if (!strcmp(a, "--n"))
            n = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--nq"))
            nq = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--dim"))
            dim = (uint32_t)atoi(v);
        else if (!strcmp(a, "--M"))
            M = (uint32_t)atoi(v);
        else if (!strcmp(a, "--efc"))
            efc = (uint32_t)atoi(v);
        else if (!strcmp(a, "--ef"))
            ef = (uint32_t)atoi(v);
        else if (!strcmp(a, "--rounds"))
            rounds = atoi(v);
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--seed"))
            rng = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--sel"))
            sel_list = v;
        else if (!strcmp(a, "--delete"))
            del = atof(v);
        else if (!strcmp(a, "--storage"))
            storage = ims_storage_from_name(v);
        else {
            fprintf(stderr, "usage: see the comment atop bench/filter.c\n");
            return 2;
        }
        i++;
    }
    if (storage < 0 || !n || !nq || !dim || rounds < 1) {
        fprintf(stderr, "bench_filter: bad arguments\n");
        return 2;
    }
    ims_init();
    char cpu[256];
    cpu_name(cpu, sizeof cpu);

    int n_c = 100;
    float *centres = malloc(sizeof(float) * (size_t)n_c * dim), *spread = malloc(4 * n_c);
    float *x = malloc(sizeof(float) * n * dim), *q = malloc(sizeof(float) * nq * dim);
    uint64_t *ids = malloc(8 * n);
    if (!centres || !spread || !x || !q || !ids)
        return 1;
    for (size_t i = 0; i < (size_t)n_c * dim; i++)
        centres[i] = (float)(4 * unif());
    for (int c = 0; c < n_c; c++)
        spread[c] = (float)(0.5 + unif());
    gen(x, n, dim, centres, spread, n_c);
    gen(q, nq, dim, centres, spread, n_c);
    for (size_t i = 0; i < n; i++)
        ids[i] = i;

    ims_hnsw_params p = {.metric = IMS_METRIC_L2,
                         .n_dims = dim,
                         .M = M,
                         .ef_construction = efc,
                         .ef_search = ef,
                         .storage = storage};
    ims_hnsw *h;
    ims_error err;
    if (ims_hnsw_new(&p, &h, &err)) {
        fprintf(stderr, "new: %s\n", err.msg);
        return 1;
    }
    double t0 = ims_now();
    if (ims_hnsw_add_batch(h, n, ids, x, threads)) {
        fprintf(stderr, "add_batch: %s\n", ims_hnsw_errmsg(h));
        return 1;
    }
    double t_build = ims_now() - t0;
    unsigned char *dead = calloc(n, 1);
    size_t n_del = 0;
    for (size_t i = 0; i < n && del > 0; i++)
        if (unif() < del && ims_hnsw_delete(h, ids[i]) == IMS_OK)
            dead[i] = 1, n_del++;

    printf("# bench_filter: n=%zu dim=%u nq=%zu M=%u efc=%u ef=%u storage=%s filter=%s "
           "deleted=%zu build=%.1fs rounds=%d\n",
           n, dim, nq, M, efc, ef, ims_storage_name(storage), use_fn ? "predicate" : "bitset",
           n_del, t_build, rounds);
    ims_hit hits0[10];
    printf("# CPU: %s, kernel level %s\n", cpu, ims_cpu_level_name(ims_cpu_level()));
    { /* the unfiltered search, for scale */
        double bq = 0, dq = 0;
        for (int r = -1; r < rounds; r++) {
            ims_search_opts o = {.ef = ef};
            ims_search_stats st;
            o.stats = &st;
            double t = ims_now();
            for (size_t i = 0; i < nq; i++) {
                size_t nh;
                ims_hnsw_search(h, q + i * dim, 10, &o, hits0, &nh);
                if (r < 0)
                    dq += (double)st.n_distances;
            }
            t = ims_now() - t;
            if (r >= 0 && nq / t > bq)
                bq = nq / t;
        }
        printf("# unfiltered (ef %u): %.0f QPS, %.0f distances/query\n", ef, bq, dq / nq);
    }
    printf("\n| selectivity | admitted | faster plan | AUTO picks | AUTO QPS | AUTO R@10 | GRAPH "
           "QPS | GRAPH "
           "R@10 | GRAPH ef | GRAPH dist/q | GRAPH adm/q | EXACT QPS | EXACT R@10 | AUTO/best |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");

    uint64_t *bits = calloc(n / 64 + 1, 8);
    float *sub = malloc(sizeof(float) * n * dim);
    uint64_t *sub_ids = malloc(8 * n);
    ims_hit *truth = malloc(sizeof(ims_hit) * nq * 10), hits[10];
    const char *sp = sel_list;
    while (*sp) {
        double sel = strtod(sp, (char **)&sp);
        if (*sp == ',')
            sp++;
        fctx fc = {sel};
        memset(bits, 0, (n / 64 + 1) * 8);
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (id_hash01(ids[i]) < sel) {
                bits[ids[i] >> 6] |= 1ull << (ids[i] & 63);
                if (!dead[i]) {
                    memcpy(sub + m * dim, x + i * dim, sizeof(float) * dim);
                    sub_ids[m++] = ids[i];
                }
            }
        size_t nt[4096];
        for (size_t i = 0; i < nq && i < 4096; i++)
            ims_flat_search(IMS_METRIC_L2, dim, sub, m, sub_ids, q + i * dim, 10, truth + i * 10,
                            &nt[i]);
        static const int modes[3] = {IMS_SEARCH_AUTO, IMS_SEARCH_GRAPH, IMS_SEARCH_EXACT};
        double best[3] = {0, 0, 0}, recall[3] = {0, 0, 0}, dist[3] = {0, 0, 0}, adm[3] = {0, 0, 0};
        uint32_t beam = 0; /* the graph walk's ef (ims_search_stats.ef) */
        int picks_exact = 0, leaked = 0;
        for (int r = -1; r < rounds; r++) { /* r = -1: warm-up and recall */
            for (int mi = 0; mi < 3; mi++) {
                ims_search_opts o = {.ef = ef, .mode = modes[mi]};
                ims_search_stats st;
                if (use_fn)
                    o.filter = pred, o.filter_ud = &fc;
                else
                    o.allow = bits, o.n_allow_bits = n;
                if (r < 0)
                    o.stats = &st;
                double t = ims_now();
                for (size_t i = 0; i < nq; i++) {
                    size_t nh;
                    if (ims_hnsw_search(h, q + i * dim, 10, &o, hits, &nh)) {
                        fprintf(stderr, "search: %s\n", ims_hnsw_errmsg(h));
                        return 1;
                    }
                    if (r >= 0)
                        continue;
                    size_t got = 0;
                    for (size_t j = 0; j < nh; j++) {
                        leaked += !(id_hash01(hits[j].id) < sel) || dead[hits[j].id];
                        for (size_t u = 0; u < nt[i]; u++)
                            got += hits[j].id == truth[i * 10 + u].id;
                    }
                    recall[mi] += nt[i] ? (double)got / nt[i] : 1.0;
                    dist[mi] += (double)st.n_distances;
                    adm[mi] += (double)st.n_admit;
                    if (mi == 1 && st.ef > beam)
                        beam = st.ef;
                    if (mi == 0)
                        picks_exact += st.plan == IMS_SEARCH_EXACT;
                }
                t = ims_now() - t;
                if (r >= 0 && nq / t > best[mi])
                    best[mi] = nq / t;
            }
        }
        double fast = best[1] > best[2] ? best[1] : best[2];
        printf("| %.1f%% | %zu | %s | %s | %.0f | %.4f | %.0f | %.4f | %u | %.0f | %.0f | %.0f | "
               "%.4f | "
               "%.2f |%s\n",
               sel * 100, m, best[1] > best[2] ? "graph" : "exact",
               picks_exact == (int)nq ? "exact"
               : picks_exact == 0     ? "graph"
                                      : "mixed",
               best[0], recall[0] / nq, best[1], recall[1] / nq, beam, dist[1] / nq, adm[1] / nq,
               best[2], recall[2] / nq, best[0] / fast, leaked ? " LEAKED" : "");
        fflush(stdout);
    }
    ims_hnsw_free(h);
    free(centres), free(spread), free(x), free(q), free(ids), free(dead), free(bits), free(sub),
        free(sub_ids), free(truth);
    return 0;
}
