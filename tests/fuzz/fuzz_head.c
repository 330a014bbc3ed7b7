/* SPDX-License-Identifier: MIT */
/*
 * fuzz_head.c — untrusted bytes through the head blob parser
 * (ims_train_load: magic, version 1 or 2, checksum, kind/flags, sizes,
 * the whitening fields). Invariants: it either fails with one of the
 * documented codes, a message and no head, or yields a head that saves
 * to a blob that loads again and saves to the same bytes (for a version-2
 * input: the input's own bytes), and whose apply and classify stay in
 * bounds.
 *
 * The checksum stops a fuzzer at the door, so inputs whose first 4 bytes
 * are "FIX!" lose them and get their trailing CRC recomputed before
 * parsing. Replayed over tests/fuzz/corpus/head/ by ctest; build with
 * -fsanitize=fuzzer for real fuzzing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_int.h"

#define FUZZ_MAX_BYTES (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_head: invariant broken: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_BYTES)
        return 0;
    ims_init();
    int fix = size >= 4 && !memcmp(data, "FIX!", 4);
    if (fix)
        data += 4, size -= 4;
    unsigned char *b = malloc(size ? size : 1);
    if (!b)
        return 0;
    memcpy(b, data, size);
    if (fix && size >= 4)
        ims__put_u32(b + size - 4, ims__crc32c(0, b, size - 4));
    ims_train_head *h = NULL;
    ims_error err;
    ims_error_clear(&err);
    int rc = ims_train_load(b, size, &h, &err);
    if (rc) {
        if (rc != IMS_EFORMAT && rc != IMS_EVERSION && rc != IMS_ECORRUPT && rc != IMS_ENOMEM)
            fail("undocumented error code");
        if (h || !err.msg[0])
            fail("an error without a message, or with a head");
        free(b);
        return 0;
    }
    void *s1 = NULL, *s2 = NULL;
    size_t l1 = 0, l2 = 0;
    ims_train_head *g = NULL;
    if (ims_train_save(h, &s1, &l1, &err) || ims_train_load(s1, l1, &g, &err) ||
        ims_train_save(g, &s2, &l2, &err))
        fail("a loaded head does not save and load again");
    if (l1 != l2 || memcmp(s1, s2, l1))
        fail("save(load(save(h))) differs from save(h)");
    if (ims__get_u32(b + 8) == 2 && (l1 != size || memcmp(s1, b, size)))
        fail("a version-2 blob does not save to its own bytes");
    int d = ims_train_in_dim(h), od = ims_train_out_dim(h), C = ims_train_n_classes(h);
    float *x = malloc((size_t)d * sizeof *x), *y = malloc((size_t)od * sizeof *y);
    float *p = malloc((size_t)C * sizeof *p);
    if (x && y && p) {
        for (int i = 0; i < d; i++)
            x[i] = (float)(i % 7) - 2.5f;
        ims_train_apply(h, x, 1, y);
        ims_train_classify(h, x, 1, p);
    }
    free(x), free(y), free(p);
    ims_free(s1), ims_free(s2);
    ims_train_head_free(g);
    ims_train_head_free(h);
    free(b);
    return 0;
}
