/* SPDX-License-Identifier: MIT */
/*
 * check.h — the test harness: CHECK macros that print both values and
 * file:line, count failures, and keep going; main() returns check_report().
 * Exit code 77 means "skipped" (e.g. a fetched model is absent), unless
 * IMS_REQUIRE_ASSETS=1 (CI) turns a missing asset into a failure.
 */
#ifndef IMS_TESTS_CHECK_H
#define IMS_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_failures;
static int check_count;

#define CHECK_FAIL_(...)                                                       \
    do {                                                                       \
        check_failures++;                                                      \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                        \
        fprintf(stderr, __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                   \
    } while (0)

#define CHECK(cond)                                                            \
    do {                                                                       \
        check_count++;                                                         \
        if (!(cond))                                                           \
            CHECK_FAIL_("CHECK(%s) failed", #cond);                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                   \
    do {                                                                       \
        check_count++;                                                         \
        if (!(cond))                                                           \
            CHECK_FAIL_(__VA_ARGS__);                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        check_count++;                                                         \
        if (a_ != b_)                                                          \
            CHECK_FAIL_("CHECK_EQ(%s, %s): %lld != %lld", #a, #b, a_, b_);     \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                     \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        check_count++;                                                         \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                 \
            CHECK_FAIL_("CHECK_STR_EQ(%s, %s): \"%s\" != \"%s\"", #a, #b,      \
                        a_ ? a_ : "(null)", b_ ? b_ : "(null)");               \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
    do {                                                                       \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);         \
        check_count++;                                                         \
        if (!(fabs(a_ - b_) <= t_))                                            \
            CHECK_FAIL_("CHECK_NEAR(%s, %s, %g): %.9g vs %.9g (diff %.3g)",    \
                        #a, #b, t_, a_, b_, fabs(a_ - b_));                    \
    } while (0)

/* rc is an IMS_* code: expect equality, print names on mismatch */
#define CHECK_RC(rc, want)                                                     \
    do {                                                                       \
        int r_ = (rc), w_ = (want);                                            \
        check_count++;                                                         \
        if (r_ != w_)                                                          \
            CHECK_FAIL_("CHECK_RC(%s): got %s (%d), want %s (%d)", #rc,        \
                        ims_errname(r_), r_, ims_errname(w_), w_);             \
    } while (0)

static inline int check_report(void)
{
    if (check_failures) {
        fprintf(stderr, "%d of %d checks failed\n", check_failures, check_count);
        return 1;
    }
    printf("%d checks passed\n", check_count);
    return 0;
}

/* Skip (77) when an optional asset is missing; fail in CI. */
static inline int check_skip(const char *why)
{
    const char *req = getenv("IMS_REQUIRE_ASSETS");
    if (req && *req == '1') {
        fprintf(stderr, "missing required asset: %s\n", why);
        return 1;
    }
    fprintf(stderr, "skipped: %s\n", why);
    return 77;
}

/* Deterministic xorshift PRNG for tests. */
static inline unsigned long long check_rand_u64(unsigned long long *s)
{
    unsigned long long x = *s ? *s : 88172645463325252ULL;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *s = x;
}
static inline float check_rand_f(unsigned long long *s) /* [-1, 1) */
{
    return (float)((check_rand_u64(s) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

#endif /* IMS_TESTS_CHECK_H */
