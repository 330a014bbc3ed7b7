/* SPDX-License-Identifier: MIT */
/*
 * test_image_golden.c — bit-exactness against TF.js.
 *
 * tests/golden/preprocess_sha256.tsv holds, for 20 sample photos and both
 * input sizes (224, 299), the sha256 of the RGB bytes libjpeg-turbo decodes
 * and of the float32 input tensor TF.js 4.22.0's cpu backend builds with the
 * nsfwjs recipe. We decode $IMS_DATA_DIR/food/<group>/<code>.jpeg (fetched by
 * scripts/fetch-sample-data; skipped when absent), preprocess with
 * ims_preprocess_nsfwjs(), and require both hashes to match exactly.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "imgsim/image.h"
#include "imgsim/imgsim.h"

/* ---- a small SHA-256 (FIPS 180-4) -------------------------------------- */
typedef struct sha256 {
    uint32_t h[8];
    uint64_t n;
    unsigned char buf[64];
    size_t fill;
} sha256;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256 *s, const unsigned char *p)
{
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, s->h, sizeof a);
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25);
        uint32_t ch = (a[4] & a[5]) ^ (~a[4] & a[6]);
        uint32_t t1 = a[7] + S1 + ch + K[i] + w[i];
        uint32_t S0 = ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22);
        uint32_t mj = (a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]);
        memmove(a + 1, a, 7 * sizeof a[0]);
        a[4] += t1;
        a[0] = t1 + S0 + mj;
    }
    for (int i = 0; i < 8; i++)
        s->h[i] += a[i];
}

static void sha256_init(sha256 *s)
{
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, H0, sizeof H0);
    s->n = 0, s->fill = 0;
}

static void sha256_update(sha256 *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    s->n += len;
    while (len) {
        size_t k = 64 - s->fill < len ? 64 - s->fill : len;
        memcpy(s->buf + s->fill, p, k);
        s->fill += k, p += k, len -= k;
        if (s->fill == 64)
            sha256_block(s, s->buf), s->fill = 0;
    }
}

static void sha256_hex(sha256 *s, char hex[65])
{
    uint64_t bits = s->n * 8;
    unsigned char pad = 0x80, zero = 0, len[8];
    sha256_update(s, &pad, 1);
    while (s->fill != 56)
        sha256_update(s, &zero, 1);
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++)
        snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
}

static void sha256_of(const void *p, size_t n, char hex[65])
{
    sha256 s;
    sha256_init(&s);
    sha256_update(&s, p, n);
    sha256_hex(&s, hex);
}

/* ---- the test ----------------------------------------------------------- */

/* Find <food>/<group>/<code>.jpeg; 1 if found. */
static int find_photo(const char *food, const char *code, char *path, size_t n)
{
    DIR *d = opendir(food);
    struct dirent *e;
    int found = 0;
    while (d && !found && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, n, "%s/%s/%s.jpeg", food, e->d_name, code);
        found = access(path, R_OK) == 0;
    }
    if (d)
        closedir(d);
    return found;
}

static void test_sha256_self(void)
{
    char hex[65];
    sha256_of("abc", 3, hex);
    CHECK_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_of("", 0, hex);
    CHECK_STR_EQ(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    char m[1001];
    memset(m, 'a', sizeof m);
    sha256 s;
    sha256_init(&s);
    for (int i = 0; i < 1000; i++) /* one million 'a' in uneven pieces */
        sha256_update(&s, m, i % 2 ? 999 : 1001);
    sha256_hex(&s, hex);
    CHECK_STR_EQ(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

int main(void)
{
    ims_init();
    test_sha256_self();

    const char *src = getenv("IMS_SOURCE_DIR"), *data = getenv("IMS_DATA_DIR");
    char tsv[4096], food[4096];
    snprintf(tsv, sizeof tsv, "%s/tests/golden/preprocess_sha256.tsv", src ? src : ".");
    snprintf(food, sizeof food, "%s/food", data ? data : "data");
    FILE *f = fopen(tsv, "r");
    CHECK_MSG(f != NULL, "cannot open %s", tsv);
    if (!f)
        return check_report();

    char line[512], want_rgb[65], want_in[65], code[16], path[8192];
    int size, n_rows = 0, n_rgb = 0, n_in = 0, n_missing = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%15s %d %64s %64s", code, &size, want_rgb,
                                     want_in) != 4)
            continue;
        n_rows++;
        if (!find_photo(food, code, path, sizeof path)) {
            n_missing++;
            continue;
        }
        ims_image *img = NULL;
        ims_error err;
        int rc = ims_image_load_file(path, NULL, &img, &err);
        CHECK_MSG(rc == IMS_OK, "%s: %s", path, err.msg);
        if (rc)
            continue;
        char hex[65];
        sha256_of(img->rgb, (size_t)img->width * img->height * 3, hex);
        CHECK_MSG(strcmp(hex, want_rgb) == 0, "%s: rgb sha256 %s, want %s", code, hex,
                  want_rgb);
        n_rgb += strcmp(hex, want_rgb) == 0;

        ims_preprocess pp;
        ims_preprocess_nsfwjs(&pp, size);
        float *t = malloc(sizeof(float) * 3 * (size_t)size * size);
        CHECK_RC(ims_image_preprocess(img, &pp, t, &err), IMS_OK);
        /* little-endian float32 bytes, as TF.js's Float32Array on x86/arm */
        unsigned char *le = malloc(4 * 3 * (size_t)size * size);
        for (size_t i = 0; i < 3 * (size_t)size * size; i++) {
            uint32_t u;
            memcpy(&u, &t[i], 4);
            le[4 * i] = (unsigned char)u, le[4 * i + 1] = (unsigned char)(u >> 8);
            le[4 * i + 2] = (unsigned char)(u >> 16), le[4 * i + 3] = (unsigned char)(u >> 24);
        }
        sha256_of(le, 4 * 3 * (size_t)size * size, hex);
        CHECK_MSG(strcmp(hex, want_in) == 0, "%s@%d: input sha256 %s, want %s", code, size,
                  hex, want_in);
        n_in += strcmp(hex, want_in) == 0;
        free(le);
        free(t);
        ims_image_free(img);
    }
    fclose(f);
    CHECK_MSG(n_rows == 40, "%s: %d rows, want 40", tsv, n_rows);
    if (n_missing)
        return check_report() ? 1 : check_skip("sample photos (scripts/fetch-sample-data)");
    printf("golden: %d/%d rgb hashes and %d/%d input hashes match TF.js\n", n_rgb, n_rows,
           n_in, n_rows);
    return check_report();
}
