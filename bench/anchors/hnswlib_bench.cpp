// SPDX-License-Identifier: MIT
// hnswlib_bench.cpp — hnswlib (Debian libhnswlib-dev, header-only, built
// -O3 -march=native) on TEXMEX files. Build uses ParallelFor with --threads
// threads exactly like hnswlib's python bindings (addItems); cosine is
// inner product on L2-normalised vectors, as the bindings do it.
// Index bytes = level-0 block + upper-level link lists, as allocated.
#include <hnswlib/hnswlib.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "common.h"

// From hnswlib python_bindings/bindings.cpp.
template <class Function>
static void ParallelFor(size_t start, size_t end, size_t numThreads, Function fn)
{
    if (numThreads == 1) {
        for (size_t id = start; id < end; id++)
            fn(id, 0);
        return;
    }
    std::vector<std::thread> threads;
    std::atomic<size_t> current(start);
    for (size_t threadId = 0; threadId < numThreads; ++threadId) {
        threads.push_back(std::thread([&, threadId] {
            while (true) {
                size_t id = current.fetch_add(1);
                if (id >= end)
                    break;
                fn(id, threadId);
            }
        }));
    }
    for (auto &thread : threads)
        thread.join();
}

int main(int argc, char **argv)
{
    using namespace bench;
    // --save PATH writes the built index, --load PATH searches a saved one.
    std::string save, load;
    std::vector<char *> rest{argv[0]};
    for (int i = 1; i < argc; i++) {
        std::string k = argv[i];
        if ((k == "--save" || k == "--load") && i + 1 < argc)
            (k == "--save" ? save : load) = argv[++i];
        else
            rest.push_back(argv[i]);
    }
    Args a = parse_args((int)rest.size(), rest.data(),
                        "[--M 16] [--ef-construction 200] [--save F | --load F]");
    Matrix X = read_fvecs(a.base), Q = read_fvecs(a.query);
    Truth t = read_ivecs(a.truth);
    if (X.d != Q.d || t.n != Q.n)
        die("base/query/truth sizes disagree");
    if (a.metric == "cosine") {
        normalize(X);
        normalize(Q);
    }
    std::unique_ptr<hnswlib::SpaceInterface<float>> space;
    if (a.metric == "l2")
        space.reset(new hnswlib::L2Space(X.d));
    else
        space.reset(new hnswlib::InnerProductSpace(X.d));
    std::printf("system=hnswlib M=%d ef_construction=%d n=%zu d=%zu metric=%s\n", a.M,
                a.ef_construction, X.n, X.d, a.metric.c_str());

    double t0 = seconds();
    hnswlib::HierarchicalNSW<float> *index;
    if (!load.empty()) {
        index = new hnswlib::HierarchicalNSW<float>(space.get(), load, false, X.n);
    } else {
        index = new hnswlib::HierarchicalNSW<float>(space.get(), X.n, a.M, a.ef_construction, 100);
        // Like the bindings: the first element alone, then the rest in parallel.
        index->addPoint(X.row(0), 0);
        ParallelFor(1, X.n, a.threads, [&](size_t i, size_t) { index->addPoint(X.row(i), i); });
    }
    double build = seconds() - t0;
    if (!save.empty())
        index->saveIndex(save);
    size_t bytes = index->max_elements_ * index->size_data_per_element_;
    for (size_t i = 0; i < index->cur_element_count; i++)
        bytes += sizeof(void *) + (size_t)index->element_levels_[i] * index->size_links_per_element_;
    if (load.empty())
        std::printf("build_s=%.2f threads=%d\n", build, a.threads);
    else
        std::printf("build_s=NA (loaded %s in %.2f s)\n", load.c_str(), build);
    std::printf("index_bytes=%zu\n", bytes);
    std::fflush(stdout);

    for (int ef : a.ef) {
        index->setEf(ef);
        sweep_point(ef, Q, t, [&](const float *q, int64_t *out) {
            auto r = index->searchKnn(q, 10);
            int n = (int)r.size();
            while (!r.empty()) { // max-heap: farthest first
                out[--n] = (int64_t)r.top().second;
                r.pop();
            }
        });
    }
    delete index;
    return 0;
}
