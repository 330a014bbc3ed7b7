/* SPDX-License-Identifier: MIT */
/*
 * variants.c — make N distinct photos from the sample photos with libvips
 * (seeded crop, flip, scale and JPEG re-encode), in category folders, for
 * the collection benchmarks (embed-all memory at 500 vs 5,000 images).
 *
 *   bench_variants SRC_DIR OUT_DIR N
 *
 * SRC_DIR holds <category>/<file>.jpeg; OUT_DIR gets <category>/v<k>-<file>.jpeg.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vips/vips.h>

static uint64_t g_state;
static uint64_t next_u64(void) /* splitmix64 */
{
    uint64_t z = (g_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uniform(double lo, double hi)
{
    return lo + (hi - lo) * (double)(next_u64() >> 11) / 9007199254740992.0;
}

typedef struct photo {
    char cat[256], file[256];
} photo;

static int cmp_photo(const void *a, const void *b)
{
    const photo *x = a, *y = b;
    int c = strcmp(x->cat, y->cat);
    return c ? c : strcmp(x->file, y->file);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench_variants SRC_DIR OUT_DIR N\n");
        return 2;
    }
    if (VIPS_INIT(argv[0]))
        return 1;
    long n = strtol(argv[3], NULL, 10);
    photo *ph = NULL;
    size_t np = 0, cap = 0;
    DIR *d = opendir(argv[1]);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", argv[1], e->d_name);
        DIR *s = opendir(sub);
        struct dirent *f;
        while (s && (f = readdir(s))) {
            if (!strstr(f->d_name, ".jp"))
                continue;
            if (np == cap && !(ph = realloc(ph, (cap = cap ? cap * 2 : 256) * sizeof *ph)))
                return 1;
            snprintf(ph[np].cat, sizeof ph[np].cat, "%s", e->d_name);
            snprintf(ph[np].file, sizeof ph[np].file, "%s", f->d_name);
            np++;
        }
        if (s)
            closedir(s);
    }
    if (d)
        closedir(d);
    if (!np) {
        fprintf(stderr, "bench_variants: no photos under %s\n", argv[1]);
        return 1;
    }
    qsort(ph, np, sizeof *ph, cmp_photo);
    mkdir(argv[2], 0755);
    for (long k = 0; k < n; k++) {
        const photo *p = &ph[k % (long)np];
        g_state = (uint64_t)k * 7919 + 1;
        char in[1024], dir[1024], out[1400];
        snprintf(in, sizeof in, "%s/%s/%s", argv[1], p->cat, p->file);
        snprintf(dir, sizeof dir, "%s/%s", argv[2], p->cat);
        mkdir(dir, 0755);
        snprintf(out, sizeof out, "%s/v%ld-%s", dir, k, p->file);
        VipsImage *a = vips_image_new_from_file(in, NULL), *b = NULL, *c = NULL, *f = NULL;
        if (!a) {
            fprintf(stderr, "bench_variants: %s: %s\n", in, vips_error_buffer());
            return 1;
        }
        int w = vips_image_get_width(a), h = vips_image_get_height(a);
        int cw = (int)(w * uniform(0.75, 1.0)), ch = (int)(h * uniform(0.75, 1.0));
        int x = (int)uniform(0, w - cw), y = (int)uniform(0, h - ch);
        int ok = !vips_crop(a, &b, x, y, cw, ch, NULL) &&
                 !vips_resize(b, &c, uniform(0.7, 1.3), NULL) &&
                 !(next_u64() & 1 ? vips_flip(c, &f, VIPS_DIRECTION_HORIZONTAL, NULL)
                                  : vips_copy(c, &f, NULL)) &&
                 !vips_jpegsave(f, out, "Q", (int)uniform(70, 95), NULL);
        g_object_unref(a);
        if (b)
            g_object_unref(b);
        if (c)
            g_object_unref(c);
        if (f)
            g_object_unref(f);
        if (!ok) {
            fprintf(stderr, "bench_variants: %s: %s\n", out, vips_error_buffer());
            return 1;
        }
    }
    free(ph);
    vips_shutdown();
    printf("bench_variants: %ld photos in %s\n", n, argv[2]);
    return 0;
}
