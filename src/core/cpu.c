/* SPDX-License-Identifier: MIT */
/*
 * cpu.c — CPU feature detection, the kernel level in force, and ims_init().
 *
 * AVX2 is usable only when CPUID reports AVX2, FMA and F16C *and* the OS saves
 * YMM state (OSXSAVE set and XGETBV shows XMM|YMM enabled); checking CPUID
 * alone would crash on kernels that disable AVX. AVX-512 additionally needs
 * F, DQ, BW and VL in CPUID leaf 7 and XCR0 bits 5-7 (opmask, upper halves
 * of ZMM0-15, ZMM16-31) besides 1-2: an OS may enable AVX but not AVX-512
 * state (and some hypervisors do just that).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

#include "imgsim/imgsim.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static int detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return IMS_CPU_REF;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    int f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c))
        return IMS_CPU_REF;
    if ((xgetbv0() & 6) != 6) /* XMM and YMM state enabled by the OS */
        return IMS_CPU_REF;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return IMS_CPU_REF;
    if (!((b >> 5) & 1))
        return IMS_CPU_REF;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (f && dq && bw && vl && (xgetbv0() & 0xe6) == 0xe6)
        return IMS_CPU_AVX512;
    return IMS_CPU_AVX2;
}
#else
static int detect(void) { return IMS_CPU_REF; }
#endif

/* Detected once (pthread_once: sessions on several threads ask at once);
 * the level in force is atomic because ims_cpu_set_level may run while
 * other threads read it (it affects sessions created afterwards only). */
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static int g_detected = IMS_CPU_REF;
static int g_level = IMS_CPU_REF;

static void detect_init(void) { g_detected = detect(); }

int ims_cpu_detect(void)
{
    pthread_once(&detect_once, detect_init);
    return g_detected;
}

int ims_cpu_level(void) { return __atomic_load_n(&g_level, __ATOMIC_RELAXED); }

int ims_cpu_set_level(int level)
{
    if (level < IMS_CPU_REF || level > ims_cpu_detect())
        return IMS_EUNSUPPORTED;
    __atomic_store_n(&g_level, level, __ATOMIC_RELAXED);
    return IMS_OK;
}

const char *ims_cpu_level_name(int level)
{
    switch (level) {
    case IMS_CPU_REF:
        return "ref";
    case IMS_CPU_AVX2:
        return "avx2";
    case IMS_CPU_AVX512:
        return "avx512";
    }
    return "?";
}

int ims_cpu_level_from_name(const char *name)
{
    if (!strcmp(name, "ref"))
        return IMS_CPU_REF;
    if (!strcmp(name, "avx2"))
        return IMS_CPU_AVX2;
    if (!strcmp(name, "avx512"))
        return IMS_CPU_AVX512;
    return -1;
}

int ims_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

double ims_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t ims_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
    const char *lv = getenv("IMS_LOG");
    if (lv) {
        static const char *names[] = {"error", "warn", "info", "debug"};
        for (int i = 0; i < 4; i++)
            if (!strcmp(lv, names[i]))
                ims_log_set_level(i);
    }
    int level = ims_cpu_detect();
    const char *s = getenv("IMS_SIMD");
    if (s && *s) {
        int want = ims_cpu_level_from_name(s);
        if (want < 0)
            ims_log(IMS_LOG_WARN, "IMS_SIMD=%s: unknown level (use ref, avx2 or avx512); using %s",
                    s, ims_cpu_level_name(level));
        else if (want > level)
            ims_log(IMS_LOG_WARN, "IMS_SIMD=%s: not supported by this CPU; using %s", s,
                    ims_cpu_level_name(level));
        else
            level = want;
    }
    __atomic_store_n(&g_level, level, __ATOMIC_RELAXED);
    ims_log(IMS_LOG_INFO, "kernel level: %s (cpu supports %s)", ims_cpu_level_name(level),
            ims_cpu_level_name(g_detected));
}

int ims_init(void)
{
    pthread_once(&once, init_once);
    return IMS_OK;
}
