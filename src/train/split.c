/* SPDX-License-Identifier: MIT */
/*
 * split.c — the module's own PRNG (splitmix64: tiny, seedable with any
 * 64-bit value including 0, same stream on every platform) and the
 * stratified, seeded train/validation split.
 */
#include "train/train_int.h"

uint64_t ims__rng_next(ims__rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double ims__rng_uniform(ims__rng *r)
{
    return (double)(ims__rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint32_t ims__rng_below(ims__rng *r, uint32_t n)
{
    /* multiply-shift: bias below 2^-32, irrelevant here */
    return (uint32_t)(((ims__rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

void ims__rng_shuffle(ims__rng *r, int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)ims__rng_below(r, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

int ims_train_split(const int *labels, int n, float val_frac, uint64_t seed, unsigned char *is_val)
{
    IMS_ASSERT(n >= 0 && (n == 0 || (labels && is_val)));
    int n_classes = 0;
    for (int i = 0; i < n; i++)
        n_classes = IMS_MAX(n_classes, labels[i] + 1);
    for (int i = 0; i < n; i++)
        is_val[i] = 0;
    int *idx = ims_malloc(((size_t)n + 1) * sizeof *idx);
    if (!idx)
        return 0;
    ims__rng r = {seed ^ 0x5851F42D4C957F2Dull};
    int n_val = 0;
    /* classes in label order, rows of a class in index order, then a
     * shuffle per class: the split of one class does not depend on others */
    for (int c = 0; c < n_classes; c++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (labels[i] == c)
                idx[m++] = i;
        if (m < 2)
            continue;
        ims__rng_shuffle(&r, idx, m);
        int v = (int)(val_frac * m + 0.5f);
        v = IMS_MAX(1, IMS_MIN(v, m - 1));
        if (val_frac <= 0)
            v = 0;
        for (int j = 0; j < v; j++)
            is_val[idx[j]] = 1;
        n_val += v;
    }
    ims_free(idx);
    return n_val;
}
