/* SPDX-License-Identifier: MIT */
/* fileio.c — CRC-32C and atomic file replacement shared by every file format. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core_int.h"

/* Filled once (pthread_once) before the first checksum: several threads may
 * open or write files at once, and an unsynchronised lazy fill is a data race
 * even when every racer writes the same values. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static int have_sse42(void);
static int g_crc_hw;

static void crc_init(void)
{
    g_crc_hw = have_sse42();
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <nmmintrin.h>

/* SSE4.2's crc32 instruction computes CRC-32C (the reflected Castagnoli
 * polynomial of the table), 8 bytes at a time: about 8x the table code on
 * the 17-90 MB model files checked on every open. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const unsigned char *p,
                                                         size_t n)
{
    uint64_t c = crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    crc = (uint32_t)c;
    while (n--)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
}

static int have_sse42(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && ((c >> 20) & 1);
}
#else
static int have_sse42(void) { return 0; }
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t n)
{
    (void)p, (void)n;
    return crc;
}
#endif

static int g_crc_portable; /* tests: the table code even on an SSE4.2 CPU */

int ims__crc32c_portable(int on)
{
    pthread_once(&crc_once, crc_init);
    __atomic_store_n(&g_crc_portable, on, __ATOMIC_RELAXED);
    return g_crc_hw;
}

uint32_t ims__crc32c(uint32_t crc, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    if (g_crc_hw && !__atomic_load_n(&g_crc_portable, __ATOMIC_RELAXED))
        return ~crc_hw(crc, p, n);
    while (n >= 8) { /* slicing-by-8 */
        uint32_t lo = crc ^ ims__get_u32(p);
        uint32_t hi = ims__get_u32(p + 4);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
              crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        p += 8, n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

int ims__write_atomic(const char *path, int (*write_cb)(FILE *f, void *ud), void *ud,
                      ims_error *err)
{
    char tmp[4096], dir[4096];
    struct stat st;
    if (!stat(path, &st) && !S_ISREG(st.st_mode)) {
        /* /dev/null, a FIFO, a terminal: write in place (a rename would
         * replace the device with a regular file) */
        if (S_ISDIR(st.st_mode))
            return ims_error_set(err, IMS_EIO, "%s: is a directory", path);
        FILE *d = fopen(path, "wb");
        if (!d)
            return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot open", path);
        int r = write_cb(d, ud);
        if (fclose(d) && !r)
            r = IMS_EIO;
        return r ? ims_error_set(err, r < 0 ? r : IMS_EIO, "%s: write failed", path) : IMS_OK;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return ims_error_set(err, IMS_EINVAL, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s: cannot create", tmp);
    int rc = write_cb(f, ud);
    if (rc == 0 && fflush(f) != 0)
        rc = IMS_EIO;
    if (rc == 0 && fsync(fileno(f)) != 0)
        rc = IMS_EIO;
    int e = errno;
    if (fclose(f) != 0 && rc == 0)
        rc = IMS_EIO, e = errno;
    if (rc != 0) {
        unlink(tmp);
        if (err && err->code == IMS_OK)
            ims_error_set_errno(err, rc < 0 ? rc : IMS_EIO, e, "%s: write failed", path);
        return rc < 0 ? rc : IMS_EIO;
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return ims_error_set_errno(err, IMS_EIO, e, "%s: cannot rename temp file", path);
    }
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return IMS_OK;
}

void ims__json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}
