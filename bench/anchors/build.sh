#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the anchor harnesses (outside CMake) into build/anchors/:
#   anchor_hnswlib  hnswlib from Debian libhnswlib-dev (header-only)
#   anchor_annoy    Annoy 1.17 from r-cran-rcppannoy's annoylib.h
#   anchor_faiss    FAISS 1.7.3 from Debian libfaiss-dev (static, generic x86-64)
# All with g++ -O3 -march=native; the FAISS library itself is prebuilt.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/anchors}
mkdir -p "$out"
CXX=${CXX:-g++}
FLAGS="-O3 -march=native -std=c++17 -DNDEBUG -Wall"
cd "$root/bench/anchors"
$CXX $FLAGS -o "$out/anchor_hnswlib" hnswlib_bench.cpp -pthread
$CXX $FLAGS -DANNOYLIB_MULTITHREADED_BUILD -I/usr/lib/R/site-library/RcppAnnoy/include \
    -o "$out/anchor_annoy" annoy_bench.cpp -pthread
$CXX $FLAGS -fopenmp -o "$out/anchor_faiss" faiss_bench.cpp -lfaiss -lopenblas -pthread
# anchor_faiss_avx2: the same, with faiss_avx2_kernels.cpp replacing the
# scalar distance kernels of Debian's generic build (see that file).
lib=/usr/lib/x86_64-linux-gnu/libfaiss.a
tmp=$(mktemp -d)
(cd "$tmp" && ar x "$lib" distances_simd.cpp.o)
objcopy -W _ZN5faiss10fvec_L2sqrEPKfS1_m -W _ZN5faiss18fvec_inner_productEPKfS1_m \
    -W _ZN5faiss15fvec_norm_L2sqrEPKfm -W _ZN5faiss13fvec_L2sqr_nyEPfPKfS2_mm \
    -W _ZN5faiss22fvec_inner_products_nyEPfPKfS2_mm \
    "$tmp/distances_simd.cpp.o" "$tmp/distances_simd_weak.o"
$CXX $FLAGS -fopenmp -o "$out/anchor_faiss_avx2" faiss_bench.cpp faiss_avx2_kernels.cpp \
    "$tmp/distances_simd_weak.o" -lfaiss -lopenblas -pthread
rm -rf "$tmp"
echo "anchors built in $out"
