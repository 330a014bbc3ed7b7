// SPDX-License-Identifier: MIT
// faiss_avx2_kernels.cpp — AVX2/FMA versions of the FAISS 1.7.3 distance
// kernels, substituted at link time for the ones in Debian's libfaiss.a.
//
// Why: Debian builds FAISS for generic x86-64, and there
// faiss::fvec_inner_product / fvec_L2sqr are a tail call to the *_ref
// loops: one scalar mulss+addss per element on a single dependency chain
// (objdump of libfaiss.a). That makes FAISS 5-20x slower than the AVX2
// builds everyone quotes. build.sh weakens these symbols in a copy of the
// library member (objcopy --weaken-symbol) and links this file first, so
// every FAISS call lands here. The rest of FAISS (graph code, heaps) stays
// Debian's generic code, so this is still not an official AVX2 build.
#include <immintrin.h>

#include <cstddef>

namespace faiss {

static inline float hsum(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    return _mm_cvtss_f32(lo);
}

float fvec_L2sqr(const float *x, const float *y, size_t d)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        a0 = _mm256_fmadd_ps(d0, d0, a0);
        a1 = _mm256_fmadd_ps(d1, d1, a1);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        a0 = _mm256_fmadd_ps(d0, d0, a0);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < d; i++)
        s += (x[i] - y[i]) * (x[i] - y[i]);
    return s;
}

float fvec_inner_product(const float *x, const float *y, size_t d)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    for (; i + 8 <= d; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < d; i++)
        s += x[i] * y[i];
    return s;
}

float fvec_norm_L2sqr(const float *x, size_t d) { return fvec_inner_product(x, x, d); }

void fvec_L2sqr_ny(float *dis, const float *x, const float *y, size_t d, size_t ny)
{
    for (size_t i = 0; i < ny; i++)
        dis[i] = fvec_L2sqr(x, y + i * d, d);
}

void fvec_inner_products_ny(float *ip, const float *x, const float *y, size_t d, size_t ny)
{
    for (size_t i = 0; i < ny; i++)
        ip[i] = fvec_inner_product(x, y + i * d, d);
}

} // namespace faiss
