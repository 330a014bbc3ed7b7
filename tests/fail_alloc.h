/* SPDX-License-Identifier: MIT */
/*
 * fail_alloc.h — an allocator (ims_set_allocator) whose fail_at-th call
 * returns NULL, for tests that walk every allocation failure: set fail_at
 * and n_calls = 0, install {fail_malloc, fail_realloc, plain_free, NULL}.
 */
#ifndef IMS_TESTS_FAIL_ALLOC_H
#define IMS_TESTS_FAIL_ALLOC_H

#include <stdlib.h>

static int fail_at, n_calls;

static inline void *fail_malloc(size_t n, void *ud)
{
    (void)ud;
    return ++n_calls == fail_at ? NULL : malloc(n);
}

static inline void *fail_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    return ++n_calls == fail_at ? NULL : realloc(p, n);
}

static inline void plain_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

#endif /* IMS_TESTS_FAIL_ALLOC_H */
