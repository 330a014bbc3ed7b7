/* SPDX-License-Identifier: MIT */
/*
 * alloc.c — allocation hooks. All library memory goes through here so that
 * tests can fail the Nth allocation (SQLite's sqlite3_mem_methods idea).
 * Aligned blocks are carved from an ordinary hooked allocation: the original
 * pointer is stored just before the aligned address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imgsim/imgsim.h"

static void *d_malloc(size_t n, void *ud) { (void)ud; return malloc(n); }
static void *d_realloc(void *p, size_t n, void *ud) { (void)ud; return realloc(p, n); }
static void d_free(void *p, void *ud) { (void)ud; free(p); }

static ims_allocator A = {d_malloc, d_realloc, d_free, NULL};

void ims_set_allocator(const ims_allocator *a)
{
    if (a)
        A = *a;
    else
        A = (ims_allocator){d_malloc, d_realloc, d_free, NULL};
}

void *ims_malloc(size_t n) { return A.malloc_fn(n ? n : 1, A.ud); }

void *ims_calloc(size_t count, size_t size)
{
    size_t n;
    if (!ims_size_mul(count, size, &n))
        return NULL;
    void *p = ims_malloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}

void *ims_realloc(void *p, size_t n) { return A.realloc_fn(p, n ? n : 1, A.ud); }

void ims_free(void *p)
{
    if (p)
        A.free_fn(p, A.ud);
}

char *ims_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = ims_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void *ims_aligned_alloc(size_t align, size_t n)
{
    size_t total;
    if (align < sizeof(void *) || (align & (align - 1)))
        return NULL;
    if (!ims_size_add(n, align + sizeof(void *), &total))
        return NULL;
    char *raw = ims_malloc(total);
    if (!raw)
        return NULL;
    uintptr_t a = ((uintptr_t)raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    ((void **)a)[-1] = raw;
    return (void *)a;
}

void ims_aligned_free(void *p)
{
    if (p)
        ims_free(((void **)p)[-1]);
}
