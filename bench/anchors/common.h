// SPDX-License-Identifier: MIT
// common.h — shared by the anchor harnesses (hnswlib, Annoy, FAISS).
//
// Reads TEXMEX .fvecs/.ivecs, parses the flags every harness shares, and
// prints results in the same format as `imgsim bench-index`:
//
//   build_s=<seconds> threads=<n>
//   index_bytes=<bytes>
//   ef=<param> recall@10=<r> qps=<q>
//
// Recall@10 = |first 10 results ∩ first 10 true neighbours| / 10, averaged
// over queries. QPS: every query searched once as a warm-up, then once more
// timed, one query per call, on the calling thread only.
#pragma once
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace bench {

struct Matrix {
    std::vector<float> data;
    size_t n = 0, d = 0;
    const float *row(size_t i) const { return data.data() + i * d; }
};

[[noreturn]] inline void die(const std::string &msg)
{
    std::fprintf(stderr, "anchor: %s\n", msg.c_str());
    std::exit(1);
}

// Reads a TEXMEX file of records (int32 dim, dim x 4-byte values).
// The C code shares one reader (include/imgsim/vecs.h, src/core/vecs.c);
// the anchors keep this one on purpose: build.sh compiles them with g++
// outside CMake against Debian's hnswlib/Annoy/FAISS, and linking
// libimgsim_core.a would make them depend on a prior imgsim build (and
// its allocator hooks) just to read a file.
template <typename T>
inline std::vector<T> read_vecs(const std::string &path, size_t *n, size_t *d)
{
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f)
        die("cannot open " + path);
    int32_t dim;
    if (std::fread(&dim, 4, 1, f) != 1 || dim <= 0 || dim > 100000)
        die("bad header in " + path);
    std::fseek(f, 0, SEEK_END);
    long size = std::ftell(f);
    std::fseek(f, 0, SEEK_SET);
    size_t rec = 4 + 4 * (size_t)dim;
    if (size % rec)
        die("truncated " + path);
    *n = size / rec;
    *d = dim;
    std::vector<T> out(*n * *d);
    for (size_t i = 0; i < *n; i++) {
        int32_t dd;
        if (std::fread(&dd, 4, 1, f) != 1 || dd != dim ||
            std::fread(out.data() + i * dim, 4, dim, f) != (size_t)dim)
            die("bad record in " + path);
    }
    std::fclose(f);
    return out;
}

inline Matrix read_fvecs(const std::string &path)
{
    Matrix m;
    m.data = read_vecs<float>(path, &m.n, &m.d);
    return m;
}

inline void normalize(Matrix &m)
{
    for (size_t i = 0; i < m.n; i++) {
        float *x = m.data.data() + i * m.d;
        double s = 0;
        for (size_t j = 0; j < m.d; j++)
            s += (double)x[j] * x[j];
        float inv = s > 0 ? (float)(1 / std::sqrt(s)) : 0.f;
        for (size_t j = 0; j < m.d; j++)
            x[j] *= inv;
    }
}

struct Args {
    std::string base, query, truth, metric = "l2";
    int M = 16, ef_construction = 200, threads = 2, trees = 100, nlist = 0;
    std::vector<int> ef;
};

inline std::vector<int> parse_list(const char *s)
{
    std::vector<int> v;
    while (*s) {
        char *end;
        long x = std::strtol(s, &end, 10);
        if (end == s || x <= 0)
            die(std::string("bad list: ") + s);
        v.push_back((int)x);
        s = *end == ',' ? end + 1 : end;
    }
    return v;
}

inline Args parse_args(int argc, char **argv, const char *usage_extra)
{
    Args a;
    for (int i = 1; i < argc; i++) {
        std::string k = argv[i];
        if (i + 1 >= argc)
            goto usage;
        const char *v = argv[++i];
        if (k == "--base") a.base = v;
        else if (k == "--query") a.query = v;
        else if (k == "--truth") a.truth = v;
        else if (k == "--metric") a.metric = v;
        else if (k == "--M") a.M = std::atoi(v);
        else if (k == "--ef-construction") a.ef_construction = std::atoi(v);
        else if (k == "--threads") a.threads = std::atoi(v);
        else if (k == "--trees") a.trees = std::atoi(v);
        else if (k == "--nlist") a.nlist = std::atoi(v);
        else if (k == "--ef") a.ef = parse_list(v);
        else goto usage;
    }
    if (a.base.empty() || a.query.empty() || a.truth.empty() || a.ef.empty() ||
        (a.metric != "l2" && a.metric != "cosine" && a.metric != "ip"))
        goto usage;
    return a;
usage:
    std::fprintf(stderr,
                 "usage: %s --base B.fvecs --query Q.fvecs --truth T.ivecs --metric l2|cosine|ip\n"
                 "          --ef LIST [--threads 2] %s\n",
                 argv[0], usage_extra);
    std::exit(2);
}

struct Truth {
    std::vector<int32_t> ids;
    size_t n = 0, k = 0;
};

inline Truth read_ivecs(const std::string &path)
{
    Truth t;
    t.ids = read_vecs<int32_t>(path, &t.n, &t.k);
    if (t.k < 10)
        die("truth has fewer than 10 neighbours: " + path);
    return t;
}

inline double seconds()
{
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// CPU time of the calling thread (time-slicing by other processes excluded).
inline double thread_cpu_seconds()
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Recall@10 of results (nq x 10, -1 for missing) against the truth.
inline double recall10(const std::vector<int64_t> &res, const Truth &t, size_t nq)
{
    size_t hit = 0;
    for (size_t q = 0; q < nq; q++)
        for (int i = 0; i < 10; i++)
            for (int j = 0; j < 10; j++)
                if (res[q * 10 + i] >= 0 && res[q * 10 + i] == t.ids[q * t.k + j]) {
                    hit++;
                    break;
                }
    return (double)hit / (10.0 * nq);
}

// Runs search(q, out10) for every query: a warm-up pass, then a timed one.
template <typename F>
inline void sweep_point(int param, const Matrix &Q, const Truth &t, F search)
{
    std::vector<int64_t> res(Q.n * 10, -1);
    for (size_t q = 0; q < Q.n; q++)
        search(Q.row(q), &res[q * 10]);
    std::fill(res.begin(), res.end(), -1);
    double t0 = seconds(), c0 = thread_cpu_seconds();
    for (size_t q = 0; q < Q.n; q++)
        search(Q.row(q), &res[q * 10]);
    double dt = seconds() - t0, dcpu = thread_cpu_seconds() - c0;
    // cpu_qps: queries per CPU-second of this thread, as `imgsim bench-index
    // --cpu-qps` prints it: on a loaded host it moves much less than qps
    std::printf("ef=%d recall@10=%.4f qps=%.1f cpu_qps=%.1f\n", param, recall10(res, t, Q.n),
                Q.n / dt, Q.n / dcpu);
    std::fflush(stdout);
}

} // namespace bench
