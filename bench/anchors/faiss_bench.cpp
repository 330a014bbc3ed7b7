// SPDX-License-Identifier: MIT
// faiss_bench.cpp — FAISS 1.7.3 (Debian libfaiss-dev, static) on TEXMEX
// files: --index hnsw (IndexHNSWFlat, --M, efConstruction from
// --ef-construction, sweep efSearch) or --index ivf (IndexIVFFlat with
// --nlist lists, k-means on 64 points per list, sweep nprobe; printed as
// ef=). Cosine is inner product on L2-normalised vectors. Build runs with
// --threads OpenMP threads, queries with one (omp_set_num_threads(1)), one
// query per search() call. Debian's library is a generic x86-64 build (no
// AVX2 distance kernels): see bench/README.md before quoting its QPS.
// --save PATH writes the built index; --load PATH skips the build and
// searches a saved one (lets the slow generic build be timed on queries
// only, with an index built by anchor_faiss_avx2).
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/index_io.h>
#include <omp.h>

#include <cmath>

#include "common.h"

int main(int argc, char **argv)
{
    using namespace bench;
    std::string kind = "hnsw", save, load;
    // Pull --index out before the shared parser sees it.
    std::vector<char *> rest{argv[0]};
    for (int i = 1; i < argc; i++) {
        if (std::string(argv[i]) == "--index" && i + 1 < argc)
            kind = argv[++i];
        else if (std::string(argv[i]) == "--save" && i + 1 < argc)
            save = argv[++i];
        else if (std::string(argv[i]) == "--load" && i + 1 < argc)
            load = argv[++i];
        else
            rest.push_back(argv[i]);
    }
    Args a = parse_args((int)rest.size(), rest.data(),
                        "[--index hnsw|ivf] [--M 32] [--ef-construction 200] [--nlist N]");
    if (kind != "hnsw" && kind != "ivf")
        die("--index must be hnsw or ivf");
    Matrix X = read_fvecs(a.base), Q = read_fvecs(a.query);
    Truth t = read_ivecs(a.truth);
    if (X.d != Q.d || t.n != Q.n)
        die("base/query/truth sizes disagree");
    if (a.metric == "cosine") {
        normalize(X);
        normalize(Q);
    }
    faiss::MetricType mt = a.metric == "l2" ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
    int d = (int)X.d;
    omp_set_num_threads(a.threads);

    double t0 = seconds();
    size_t bytes = 0;
    faiss::IndexHNSWFlat *hnsw = nullptr;
    faiss::IndexFlat *quantizer = nullptr;
    faiss::IndexIVFFlat *ivf = nullptr;
    faiss::Index *index;
    if (!load.empty()) {
        index = faiss::read_index(load.c_str());
        hnsw = dynamic_cast<faiss::IndexHNSWFlat *>(index);
        ivf = dynamic_cast<faiss::IndexIVFFlat *>(index);
        if (!hnsw && !ivf)
            die("not an IndexHNSWFlat or IndexIVFFlat: " + load);
        if (hnsw)
            hnsw->hnsw.efSearch = 16;
        std::printf("system=faiss-%s loaded=%s n=%zu d=%zu metric=%s\n", hnsw ? "hnsw" : "ivfflat",
                    load.c_str(), X.n, X.d, a.metric.c_str());
    } else if (kind == "hnsw") {
        std::printf("system=faiss-hnsw M=%d ef_construction=%d n=%zu d=%zu metric=%s\n", a.M,
                    a.ef_construction, X.n, X.d, a.metric.c_str());
        hnsw = new faiss::IndexHNSWFlat(d, a.M, mt);
        hnsw->hnsw.efConstruction = a.ef_construction;
        hnsw->add((faiss::Index::idx_t)X.n, X.data.data());
        index = hnsw;
    } else {
        int nlist = a.nlist > 0 ? a.nlist : (int)std::lround(2 * std::sqrt((double)X.n));
        std::printf("system=faiss-ivfflat nlist=%d n=%zu d=%zu metric=%s\n", nlist, X.n, X.d,
                    a.metric.c_str());
        quantizer = new faiss::IndexFlat(d, mt);
        ivf = new faiss::IndexIVFFlat(quantizer, d, nlist, mt);
        ivf->cp.max_points_per_centroid = 64;
        ivf->cp.seed = 42;
        ivf->train((faiss::Index::idx_t)X.n, X.data.data());
        ivf->add((faiss::Index::idx_t)X.n, X.data.data());
        index = ivf;
    }
    double build = seconds() - t0;
    if (hnsw) {
        auto &h = hnsw->hnsw;
        bytes = X.n * X.d * sizeof(float) + h.neighbors.size() * sizeof(h.neighbors[0]) +
                h.offsets.size() * sizeof(h.offsets[0]) + h.levels.size() * sizeof(h.levels[0]);
    } else {
        bytes = X.n * (X.d * sizeof(float) + sizeof(faiss::Index::idx_t)) +
                ivf->nlist * X.d * sizeof(float);
    }
    if (!save.empty())
        faiss::write_index(index, save.c_str());
    if (load.empty())
        std::printf("build_s=%.2f threads=%d\n", build, a.threads);
    else
        std::printf("build_s=NA (loaded, built elsewhere)\n");
    std::printf("index_bytes=%zu\n", bytes);
    std::fflush(stdout);

    omp_set_num_threads(1);
    for (int p : a.ef) {
        if (hnsw)
            hnsw->hnsw.efSearch = p;
        else
            ivf->nprobe = p;
        float D[10];
        faiss::Index::idx_t I[10];
        sweep_point(p, Q, t, [&](const float *q, int64_t *out) {
            index->search(1, q, 10, D, I);
            for (int i = 0; i < 10; i++)
                out[i] = I[i];
        });
    }
    delete index;
    delete quantizer;
    return 0;
}
