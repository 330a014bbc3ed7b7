/* SPDX-License-Identifier: MIT */
/* test_index_kernels.c — every distance kernel variant against distance_ref.c. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "index/index_int.h"

static void compare(const ims__kernels *K, const char *name)
{
    unsigned long long s = 7;
    static const size_t sizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 100, 128, 129,
                                   1280, 4096};
    float *a = malloc(4096 * 4), *b = malloc(4096 * 4), *w = malloc(4096 * 4);
    uint16_t *hc = malloc(4096 * 2), *hc2 = malloc(4096 * 2);
    uint8_t *c = malloc(4096);
    float *da = malloc(4096 * 4), *db = malloc(4096 * 4);
    const ims__kernels *R = &ims__kernels_ref;
    for (size_t t = 0; t < IMS_ARRAY_LEN(sizes); t++) {
        size_t n = sizes[t];
        double mag = 0;
        for (size_t i = 0; i < n; i++) {
            a[i] = check_rand_f(&s) * 3, b[i] = check_rand_f(&s) * 3, w[i] = check_rand_f(&s);
            c[i] = (uint8_t)(check_rand_u64(&s) & 255);
            mag += fabs(a[i]) * 3 + fabs(w[i]) * 255;
        }
        R->f16_encode(b, hc, n);
        K->f16_encode(b, hc2, n);
        CHECK_MSG(memcmp(hc, hc2, n * 2) == 0, "%s f16_encode n=%zu differs", name, n);
        R->f16_decode(hc, da, n);
        K->f16_decode(hc, db, n);
        CHECK_MSG(memcmp(da, db, n * 4) == 0, "%s f16_decode n=%zu differs", name, n);
        double tol = 1e-5 * (mag * mag / n + mag) + 1e-6;
        CHECK_NEAR(K->l2_f32(a, b, n), R->l2_f32(a, b, n), tol);
        CHECK_NEAR(K->ip_f32(a, b, n), R->ip_f32(a, b, n), tol);
        CHECK_NEAR(K->l2_f16(a, hc, n), R->l2_f16(a, hc, n), tol);
        CHECK_NEAR(K->ip_f16(a, hc, n), R->ip_f16(a, hc, n), tol);
        CHECK_NEAR(K->l2_u8(a, w, c, n), R->l2_u8(a, w, c, n), tol * 100);
        CHECK_NEAR(K->ip_u8(w, c, n), R->ip_u8(w, c, n), tol * 100);
        /* the reference itself against a double-precision sum */
        double l2 = 0, ip = 0;
        for (size_t i = 0; i < n; i++)
            l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), ip += (double)a[i] * b[i];
        CHECK_NEAR(R->l2_f32(a, b, n), l2, 1e-4 * (l2 + 1));
        CHECK_NEAR(R->ip_f32(a, b, n), ip, 1e-4 * (fabs(ip) + n));
    }
    free(a), free(b), free(w), free(hc), free(hc2), free(c), free(da), free(db);
}

int main(void)
{
    ims_init();
    compare(&ims__kernels_ref, "ref");
    const ims__kernels *k = ims__kernels_for(IMS_CPU_AVX2);
    if (k)
        compare(k, "avx2");
    else
        fprintf(stderr, "note: AVX2 kernels not built or not supported here\n");
    return check_report();
}
