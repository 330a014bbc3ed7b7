// SPDX-License-Identifier: MIT
// annoy_bench.cpp — Annoy 1.17 (annoylib.h shipped by Debian's
// r-cran-rcppannoy) on TEXMEX files. Angular for cosine, Euclidean for l2,
// DotProduct for ip; --trees trees built with --threads threads
// (ANNOYLIB_MULTITHREADED_BUILD). The sweep parameter printed as ef= is
// search_k (nodes inspected per query). Index bytes = nodes allocated
// (_n_nodes * node size), which is also the size of a saved file.
#include <annoylib.h>
#include <kissrandom.h>

#include "common.h"

template <typename Distance>
struct Index : AnnoyIndex<int32_t, float, Distance, Kiss64Random, AnnoyIndexMultiThreadedBuildPolicy> {
    using Base = AnnoyIndex<int32_t, float, Distance, Kiss64Random, AnnoyIndexMultiThreadedBuildPolicy>;
    explicit Index(int f) : Base(f) {}
    size_t bytes() const { return (size_t)this->_n_nodes * this->_s; }
};

template <typename Distance>
static int run(const bench::Args &a, const bench::Matrix &X, const bench::Matrix &Q, const bench::Truth &t)
{
    using namespace bench;
    Index<Distance> index((int)X.d);
    index.set_seed(42);
    double t0 = seconds();
    for (size_t i = 0; i < X.n; i++)
        index.add_item((int32_t)i, X.row(i));
    char *err = nullptr;
    if (!index.build(a.trees, a.threads, &err))
        die(std::string("build failed: ") + (err ? err : "?"));
    double build = seconds() - t0;
    std::printf("build_s=%.2f threads=%d\nindex_bytes=%zu\n", build, a.threads, index.bytes());
    std::fflush(stdout);
    std::vector<int32_t> res;
    for (int search_k : a.ef) {
        sweep_point(search_k, Q, t, [&](const float *q, int64_t *out) {
            res.clear();
            index.get_nns_by_vector(q, 10, search_k, &res, nullptr);
            for (size_t i = 0; i < res.size() && i < 10; i++)
                out[i] = res[i];
        });
    }
    return 0;
}

int main(int argc, char **argv)
{
    using namespace bench;
    Args a = parse_args(argc, argv, "[--trees 100]   (--ef is the search_k list)");
    Matrix X = read_fvecs(a.base), Q = read_fvecs(a.query);
    Truth t = read_ivecs(a.truth);
    if (X.d != Q.d || t.n != Q.n)
        die("base/query/truth sizes disagree");
    std::printf("system=annoy trees=%d n=%zu d=%zu metric=%s\n", a.trees, X.n, X.d, a.metric.c_str());
    if (a.metric == "cosine")
        return run<Angular>(a, X, Q, t);
    if (a.metric == "l2")
        return run<Euclidean>(a, X, Q, t);
    return run<DotProduct>(a, X, Q, t);
}
