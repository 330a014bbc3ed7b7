/* SPDX-License-Identifier: MIT */
/*
 * test_index_kernels.c — every distance kernel level against an independent
 * double-precision loop (never against another kernel: with only ref
 * available that would compare ref with itself and could not fail).
 *
 * Tolerances: a float sum of n terms with a few partial sums is within
 * about sqrt(n) * 2^-24 * sum|terms| of the exact sum in practice (the
 * worst case is n * 2^-24); we allow 4e-6 * (1 + sqrt(n)) * sum|terms|,
 * which still catches a single wrong or missing term of the sizes tested.
 * f16 decoding must be exact; f16 encoding must round to nearest (the
 * decoded result at most half a unit in the last place away).
 *
 * A level this build or machine lacks is skipped with a message.
 */
#include <math.h>
#include <string.h>

#include "check.h"
#include "index/index_int.h"

/* binary16 -> double from the definition, independent of core_int.h */
static double half_def(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 31 ? (m ? NAN : INFINITY)
               : e     ? ldexp(1024.0 + m, e - 25)
                       : ldexp((double)m, -24);
    return h & 0x8000 ? -v : v;
}

static int within(double got, double want, double mag, size_t n)
{
    return fabs(got - want) <= 4e-6 * (1 + sqrt((double)n)) * mag + 1e-30;
}

static void test_level(const ims__index_kernels *K)
{
    unsigned long long s = 7;
    static const size_t sizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 100, 128, 129,
                                   1280, 4096};
    float *a = malloc(4096 * 4), *b = malloc(4096 * 4), *w = malloc(4096 * 4);
    uint16_t *hc = malloc(4096 * 2);
    uint8_t *c = malloc(4096);
    float *dec = malloc(4096 * 4);
    int bad_enc = 0, bad_dec = 0;
    for (size_t t = 0; t < IMS_ARRAY_LEN(sizes); t++) {
        size_t n = sizes[t];
        for (size_t i = 0; i < n; i++) {
            a[i] = check_rand_f(&s) * 3, b[i] = check_rand_f(&s) * 3, w[i] = check_rand_f(&s);
            c[i] = (uint8_t)(check_rand_u64(&s) & 255);
        }
        b[0] = 70000.0f * (t & 1 ? 1 : -1); /* overflows to +-Inf */
        K->f16_encode(b, hc, n);
        for (size_t i = 0; i < n; i++) {
            double d = half_def(hc[i]), x = b[i];
            if (fabs(x) >= 65520.0) {
                bad_enc += !(isinf(d) && (d > 0) == (x > 0));
                continue;
            }
            /* the neighbour away from x is at least as far: round to nearest */
            int e;
            frexp(fabs(x) > ldexp(1, -14) ? x : ldexp(1, -14), &e);
            double half_ulp = ldexp(1, e - 12);
            bad_enc += !(fabs(d - x) <= half_ulp);
        }
        b[0] = 0.25f;
        K->f16_encode(b, hc, n);
        K->f16_decode(hc, dec, n);
        for (size_t i = 0; i < n; i++)
            bad_dec += (double)dec[i] != half_def(hc[i]);

        double l2 = 0, ip = 0, l2m = 0, ipm = 0, l2h = 0, iph = 0, l2hm = 0, iphm = 0;
        double l2u = 0, ipu = 0, l2um = 0, ipum = 0;
        for (size_t i = 0; i < n; i++) {
            double d = (double)a[i] - b[i], hb = half_def(hc[i]), dh = a[i] - hb;
            double du = (double)b[i] - (double)w[i] * c[i];
            l2 += d * d, l2m += d * d, ip += (double)a[i] * b[i], ipm += fabs((double)a[i] * b[i]);
            l2h += dh * dh, l2hm += dh * dh, iph += a[i] * hb, iphm += fabs(a[i] * hb);
            l2u += du * du, l2um += du * du;
            ipu += (double)w[i] * c[i], ipum += fabs((double)w[i] * c[i]);
        }
        CHECK_MSG(within(K->l2_f32(a, b, n), l2, l2m, n), "%s l2_f32 n=%zu: %.9g vs %.9g", K->name,
                  n, K->l2_f32(a, b, n), l2);
        CHECK_MSG(within(K->ip_f32(a, b, n), ip, ipm, n), "%s ip_f32 n=%zu: %.9g vs %.9g", K->name,
                  n, K->ip_f32(a, b, n), ip);
        CHECK_MSG(within(K->l2_f16(a, hc, n), l2h, l2hm, n), "%s l2_f16 n=%zu: %.9g vs %.9g",
                  K->name, n, K->l2_f16(a, hc, n), l2h);
        CHECK_MSG(within(K->ip_f16(a, hc, n), iph, iphm, n), "%s ip_f16 n=%zu: %.9g vs %.9g",
                  K->name, n, K->ip_f16(a, hc, n), iph);
        /* l2_u8(b, a, c) = sum (b - a*c)^2: here with a = w */
        CHECK_MSG(within(K->l2_u8(b, w, c, n), l2u, l2um, n), "%s l2_u8 n=%zu: %.9g vs %.9g",
                  K->name, n, K->l2_u8(b, w, c, n), l2u);
        CHECK_MSG(within(K->ip_u8(w, c, n), ipu, ipum, n), "%s ip_u8 n=%zu: %.9g vs %.9g", K->name,
                  n, K->ip_u8(w, c, n), ipu);
    }
    CHECK_MSG(bad_enc == 0, "%s f16_encode: %d values not rounded to nearest", K->name, bad_enc);
    CHECK_MSG(bad_dec == 0, "%s f16_decode: %d values differ from the definition", K->name,
              bad_dec);
    free(a), free(b), free(w), free(hc), free(c), free(dec);
}

int main(void)
{
    ims_init();
    int n_tested = 0;
    for (int level = IMS_CPU_REF; strcmp(ims_cpu_level_name(level), "?") != 0; level++) {
        const ims__index_kernels *K = ims__index_kernels_for(level);
        CHECK(K != NULL);
        if (strcmp(K->name, ims_cpu_level_name(level)) != 0) {
            printf("skip: level %s not built or not supported by this CPU (would use %s)\n",
                   ims_cpu_level_name(level), K->name);
            continue;
        }
        printf("level %s: testing\n", K->name);
        test_level(K);
        n_tested++;
    }
    CHECK(n_tested >= 1); /* ref always */
    /* the table in force is the best at or below the level in force (the index
     * has no AVX-512 table: at that level it keeps its AVX2 one) */
    const ims__index_kernels *K = ims__index_kernels_for(ims_cpu_level());
    CHECK(K != NULL);
    int lk = ims_cpu_level_from_name(K->name);
    CHECK(lk >= 0 && lk <= ims_cpu_level());
    for (int level = lk + 1; level <= ims_cpu_level(); level++)
        CHECK_STR_EQ(ims__index_kernels_for(level)->name, K->name);
    return check_report();
}
