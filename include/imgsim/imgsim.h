/* SPDX-License-Identifier: MIT */
/*
 * imgsim.h — library-wide services: initialisation, allocation hooks,
 * logging, CPU feature detection / kernel level, progress bars, and
 * overflow-checked size arithmetic.
 *
 * Call ims_init() once at start-up (it is idempotent and thread-safe). It
 * detects the CPU (CPUID and OSXSAVE/XGETBV), honours IMS_SIMD=ref|avx2|avx512 and
 * IMS_LOG=error|warn|info|debug, and logs the chosen kernel level at info.
 */
#ifndef IMGSIM_IMGSIM_H
#define IMGSIM_IMGSIM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "imgsim/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IMS_VERSION_STRING "0.1.0"

/* Idempotent, thread-safe library initialisation. Returns IMS_OK. */
int ims_init(void);

/* ---- allocation hooks ---------------------------------------------------
 * Every allocation of the library goes through these. Tests install hooks
 * that fail the Nth call to prove that IMS_ENOMEM is returned cleanly.
 * ims_aligned_alloc() returns memory aligned to `align` (a power of two,
 * >= sizeof(void*)); free it with ims_aligned_free(). */
typedef struct ims_allocator {
    void *(*malloc_fn)(size_t n, void *ud);
    void *(*realloc_fn)(void *p, size_t n, void *ud);
    void (*free_fn)(void *p, void *ud);
    void *ud;
} ims_allocator;

/* Install hooks (NULL restores the libc defaults). Not thread-safe: call
 * before any other thread uses the library. */
void ims_set_allocator(const ims_allocator *a);
void *ims_malloc(size_t n);
void *ims_calloc(size_t count, size_t size); /* NULL on overflow too */
void *ims_realloc(void *p, size_t n);
void ims_free(void *p);
char *ims_strdup(const char *s);
void *ims_aligned_alloc(size_t align, size_t n);
void ims_aligned_free(void *p);

/* ---- overflow-checked size math (return 0 on overflow, 1 if ok) ---------- */
static inline int ims_size_mul(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline int ims_size_add(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
/* a*b*c, the stb `mad3sizes_valid` idiom */
static inline int ims_size_mul3(size_t a, size_t b, size_t c, size_t *out)
{
    size_t t;
    return ims_size_mul(a, b, &t) && ims_size_mul(t, c, out);
}

/* ---- logging ------------------------------------------------------------- */
enum ims_log_level {
    IMS_LOG_ERROR = 0,
    IMS_LOG_WARN = 1,
    IMS_LOG_INFO = 2,
    IMS_LOG_DEBUG = 3,
};
typedef void (*ims_log_fn)(int level, const char *msg, void *ud);

/* Default: messages at or below IMS_LOG_WARN (or $IMS_LOG) go to stderr as
 * "imgsim: <level>: <msg>". ims_log_set_handler(NULL, NULL) restores it.
 * The level may be changed from any thread; the handler, like the
 * allocator, only before other threads use the library. */
void ims_log_set_level(int level);
int ims_log_get_level(void);
void ims_log_set_handler(ims_log_fn fn, void *ud);
void ims_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- CPU features and kernel level ----------------------------------------
 * The scalar reference kernels are always built. Faster variants are picked
 * at run time from what the CPU and OS support; IMS_SIMD=ref|avx2|avx512 in the
 * environment (read by ims_init) or ims_cpu_set_level() forces a lower one. */
enum ims_cpu_level {
    IMS_CPU_REF = 0,    /* portable C, the oracle of every other variant */
    IMS_CPU_AVX2 = 1,   /* AVX2 + FMA + F16C, with OS support for YMM state */
    IMS_CPU_AVX512 = 2, /* AVX2 level + AVX-512 F/BW/VL/DQ, OS saves ZMM and opmask state */
};
int ims_cpu_detect(void);            /* best level this machine supports */
int ims_cpu_level(void);             /* level in force */
int ims_cpu_set_level(int level);    /* IMS_EUNSUPPORTED if above detect() */
const char *ims_cpu_level_name(int level);     /* "ref", "avx2", "avx512" */
int ims_cpu_level_from_name(const char *name); /* -1 if unknown */
int ims_cpu_count(void);             /* online logical CPUs, >= 1 */

/* ---- progress bar ---------------------------------------------------------
 * A terminal progress bar for long work, drawn on stderr only when stderr is
 * a TTY (otherwise a log line every 10%). Updates are rate-limited, so calling
 * ims_progress_update() per item is cheap. Not thread-safe per bar. */
typedef struct ims_progress ims_progress;
/* Returns NULL on ENOMEM (callers may treat a NULL bar as "no bar"). */
ims_progress *ims_progress_new(const char *label, uint64_t total);
void ims_progress_update(ims_progress *p, uint64_t done); /* absolute count */
void ims_progress_add(ims_progress *p, uint64_t n);       /* relative */
void ims_progress_finish(ims_progress *p);                /* prints summary, frees */

/* Monotonic clock in seconds. */
double ims_now(void);

/* Peak resident set size of this process in bytes (0 if unknown). */
size_t ims_peak_rss(void);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_IMGSIM_H */
