/* SPDX-License-Identifier: MIT */
/* test_core.c — error table, allocation hooks, CPU level, CRC, atomic writes. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/core_int.h"
#include "imgsim/imgsim.h"
#include "imgsim/vecs.h"

static long n_allocs, fail_at;
static void *t_malloc(size_t n, void *ud)
{
    (void)ud;
    return ++n_allocs == fail_at ? NULL : malloc(n);
}
static void *t_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    return ++n_allocs == fail_at ? NULL : realloc(p, n);
}
static void t_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

static int write_hello(FILE *f, void *ud)
{
    (void)ud;
    return fputs("hello", f) < 0;
}
static int write_fail(FILE *f, void *ud)
{
    (void)f, (void)ud;
    return IMS_EIO;
}

static void test_sha256_vectors(void)
{
    char hex[65];
    ims__sha256_hex("abc", 3, hex);
    CHECK_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ims__sha256_hex("", 0, hex);
    CHECK_STR_EQ(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    char m[1001];
    memset(m, 'a', sizeof m);
    ims__sha256_ctx s;
    ims__sha256_init(&s);
    for (int i = 0; i < 1000; i++) /* one million 'a' in uneven pieces */
        ims__sha256_update(&s, m, i % 2 ? 999 : 1001);
    ims__sha256_final_hex(&s, hex);
    CHECK_STR_EQ(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* The known vectors with each compression (SHA-NI when present, portable),
 * and the two agree on every length 0..300 and every split of the input. */
static void test_sha256_self(void)
{
    int shani = ims__sha256_portable(1);
    test_sha256_vectors();
    ims__sha256_portable(0);
    test_sha256_vectors();
    unsigned char buf[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 24);
    int bad = 0;
    for (size_t n = 0; n <= sizeof buf; n++) {
        char a[65], b[65];
        ims__sha256_portable(1);
        ims__sha256_hex(buf, n, a);
        ims__sha256_portable(0);
        ims__sha256_ctx s;
        ims__sha256_init(&s);
        size_t cut = n / 3;
        ims__sha256_update(&s, buf, cut);
        ims__sha256_update(&s, buf + cut, n - cut);
        ims__sha256_final_hex(&s, b);
        bad += strcmp(a, b) != 0;
    }
    CHECK_EQ(bad, 0);
    printf("  sha256: %s and portable code agree\n", shani ? "SHA-NI" : "portable");
}

static void test_half(void)
{
    /* round trip of every half value (NaN payloads aside) */
    int bad = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        uint16_t hv = (uint16_t)v;
        float f = ims__f16_to_f32(hv);
        if (f != f)
            continue;
        if (ims__f32_to_f16(f) != hv)
            bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(ims__f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ(ims__f32_to_f16(-2.0f), 0xc000);
    CHECK_EQ(ims__f32_to_f16(65520.0f), 0x7c00); /* rounds to Inf */
    CHECK_EQ(ims__f32_to_f16(1e-8f), 0);
    CHECK(ims__f16_to_f32(0x3555) > 0.333f && ims__f16_to_f32(0x3555) < 0.3334f);
    /* decoding against the definition: (-1)^s 2^(e-15) (1 + m/1024), subnormals
     * 2^-14 m/1024 (what the weight importer computed before sharing this) */
    int bad_dec = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        uint32_t e = (v >> 10) & 31, m = v & 1023;
        if (e == 31)
            continue;
        double want = e ? ldexp(1024.0 + m, (int)e - 25) : ldexp((double)m, -24);
        if (v & 0x8000)
            want = -want;
        if ((double)ims__f16_to_f32((uint16_t)v) != want)
            bad_dec++;
    }
    CHECK_EQ(bad_dec, 0);
    CHECK(isinf(ims__f16_to_f32(0x7c00)) && isnan(ims__f16_to_f32(0x7e00)));
}

static void test_vecs(void)
{
    char dir[] = "/tmp/ims_vecs_XXXXXX", path[64], bad[80];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/a.fvecs", dir);
    float x[3 * 5];
    for (int i = 0; i < 15; i++)
        x[i] = (float)i * 0.5f - 2;
    ims_error err = {0};
    CHECK_RC(ims_vecs_write(path, x, 3, 5, &err), IMS_OK);
    uint32_t d = 0;
    size_t n = 0;
    void *data = NULL;
    CHECK_RC(ims_vecs_read(path, "fvecs", 4096, &d, &n, &data, &err), IMS_OK);
    CHECK_EQ(d, 5);
    CHECK_EQ(n, 3);
    CHECK(data && memcmp(data, x, sizeof x) == 0);
    ims_free(data);
    /* a dimension above max_dim, a truncated file, a record of another dim */
    CHECK_RC(ims_vecs_read(path, "fvecs", 4, &d, &n, &data, &err), IMS_ECORRUPT);
    CHECK(strstr(err.msg, "offset 0") != NULL);
    CHECK(data == NULL);
    FILE *f = fopen(path, "rb");
    unsigned char raw[3 * 24];
    CHECK_EQ(fread(raw, 1, sizeof raw, f), sizeof raw);
    fclose(f);
    snprintf(bad, sizeof bad, "%s/t.fvecs", dir);
    f = fopen(bad, "wb");
    fwrite(raw, 1, sizeof raw - 3, f);
    fclose(f);
    CHECK_RC(ims_vecs_read(bad, "fvecs", 4096, &d, &n, &data, &err), IMS_ECORRUPT);
    CHECK(strstr(err.msg, "not a multiple") != NULL);
    raw[24] = 4, raw[48] = 6; /* records 1 and 2 claim dims 4 and 6: same total size */
    f = fopen(bad, "wb");
    fwrite(raw, 1, sizeof raw, f);
    fclose(f);
    CHECK_RC(ims_vecs_read(bad, "fvecs", 4096, &d, &n, &data, &err), IMS_ECORRUPT);
    CHECK(strstr(err.msg, "offset 24: record 1 has dimension 4") != NULL);
    CHECK_RC(ims_vecs_read("/nonexistent/x.fvecs", "fvecs", 4096, &d, &n, &data, &err), IMS_EIO);
    CHECK_RC(ims_vecs_write(path, x, 1, 0, &err), IMS_EINVAL);
    remove(bad), remove(path), rmdir(dir);
}

int main(void)
{
    ims_init();
    test_half();
    test_vecs();

    /* error table */
    CHECK_STR_EQ(ims_errname(IMS_ECORRUPT), "IMS_ECORRUPT");
    CHECK_STR_EQ(ims_strerror(IMS_ENOMEM), "out of memory");
    CHECK_STR_EQ(ims_errname(12345), "IMS_E?");
    ims_error e;
    CHECK_RC(ims_error_set(&e, IMS_EIO, "file %s at %d", "x.bin", 7), IMS_EIO);
    CHECK_STR_EQ(e.msg, "file x.bin at 7");
    ims_error_set_errno(&e, IMS_EIO, ENOENT, "open %s", "y");
    CHECK(strstr(e.msg, "open y: ") == e.msg && strlen(e.msg) > 8);
    CHECK_RC(ims_error_set(NULL, IMS_EINVAL, "ignored"), IMS_EINVAL);

    /* allocation hooks: the Nth allocation fails cleanly */
    ims_allocator a = {t_malloc, t_realloc, t_free, NULL};
    ims_set_allocator(&a);
    fail_at = 2;
    n_allocs = 0;
    void *p1 = ims_malloc(10), *p2 = ims_malloc(10);
    CHECK(p1 != NULL);
    CHECK(p2 == NULL);
    ims_free(p1);
    fail_at = 0;
    void *al = ims_aligned_alloc(64, 100);
    CHECK(al && ((uintptr_t)al % 64) == 0);
    memset(al, 1, 100);
    ims_aligned_free(al);
    ims_set_allocator(NULL);
    CHECK(ims_calloc((size_t)-1, 16) == NULL); /* overflow refused */
    size_t s;
    CHECK(!ims_size_mul3((size_t)1 << 40, (size_t)1 << 20, 1 << 10, &s));
    CHECK(ims_size_mul3(3, 5, 7, &s) && s == 105);

    /* CPU level */
    CHECK(ims_cpu_level() <= ims_cpu_detect());
    CHECK_RC(ims_cpu_set_level(IMS_CPU_REF), IMS_OK);
    CHECK_EQ(ims_cpu_level(), IMS_CPU_REF);
    CHECK_RC(ims_cpu_set_level(ims_cpu_detect()), IMS_OK);
    CHECK_RC(ims_cpu_set_level(99), IMS_EUNSUPPORTED);
    CHECK_EQ(ims_cpu_level_from_name("avx2"), IMS_CPU_AVX2);
    CHECK_EQ(ims_cpu_level_from_name("avx512"), IMS_CPU_AVX512);
    CHECK(!strcmp(ims_cpu_level_name(IMS_CPU_AVX512), "avx512"));
    CHECK_EQ(ims_cpu_level_from_name("bogus"), -1);
    CHECK(ims_cpu_count() >= 1);

    /* CRC-32C check value */
    for (int portable = 1; portable >= 0; portable--) { /* table code, then the fastest */
        int hw = ims__crc32c_portable(portable);
        CHECK_EQ(ims__crc32c(0, "123456789", 9), 0xE3069283u);
        CHECK_EQ(ims__crc32c(ims__crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
        if (!portable)
            printf("  crc32c: %s\n", hw ? "SSE4.2" : "table");
    }
    {
        unsigned char b[777];
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)(i * 131 + 7);
        int bad = 0;
        for (size_t off = 0; off < 9; off++)
            for (size_t n = 0; n + off <= sizeof b; n += 37) {
                ims__crc32c_portable(1);
                uint32_t a = ims__crc32c(0, b + off, n);
                ims__crc32c_portable(0);
                bad += ims__crc32c(0, b + off, n) != a;
            }
        CHECK_EQ(bad, 0);
    }

    /* SHA-256 test vectors (FIPS 180-4 examples) */
    test_sha256_self();

    /* little-endian codec */
    unsigned char b[8];
    ims__put_u64(b, 0x0102030405060708ull);
    CHECK_EQ(b[0], 8);
    CHECK(ims__get_u64(b) == 0x0102030405060708ull);

    /* atomic write: success replaces, failure leaves the old file intact */
    char path[] = "/tmp/ims_test_core_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    write(fd, "old", 3);
    close(fd);
    CHECK_RC(ims__write_atomic(path, write_fail, NULL, &e), IMS_EIO);
    FILE *f = fopen(path, "rb");
    char buf[16] = {0};
    fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    CHECK_STR_EQ(buf, "old");
    CHECK_RC(ims__write_atomic(path, write_hello, NULL, &e), IMS_OK);
    f = fopen(path, "rb");
    memset(buf, 0, sizeof buf);
    fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    CHECK_STR_EQ(buf, "hello");
    unlink(path);

    /* progress bar draws without crashing when not a TTY */
    ims_progress *pb = ims_progress_new("test", 100);
    for (int i = 0; i <= 100; i++)
        ims_progress_update(pb, (uint64_t)i);
    ims_progress_finish(pb);
    ims_progress_finish(NULL);

    return check_report();
}
