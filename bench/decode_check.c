/* SPDX-License-Identifier: MIT */
/*
 * decode_check.c — CPU time per image of the full decode
 * (ims_image_load_memory) and of the check ingest runs
 * (ims_image_check_memory), over every file under DIR read into memory
 * first, in alternating rounds on one thread (thread CPU time, so other
 * users' load moves it little).
 *
 *   bench_decode_check DIR [ROUNDS]       e.g. bench_decode_check data/food 5
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "imgsim/image.h"
#include "imgsim/imgsim.h"

static struct file {
    unsigned char *b;
    size_t n;
} * files;
static size_t n_files, cap;

static int add(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || st->st_size <= 0)
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    if (n_files == cap) {
        cap = cap ? 2 * cap : 256;
        files = realloc(files, cap * sizeof *files);
    }
    struct file *x = &files[n_files];
    x->n = (size_t)st->st_size;
    x->b = malloc(x->n);
    if (fread(x->b, 1, x->n, f) == x->n)
        n_files++;
    else
        free(x->b);
    fclose(f);
    return 0;
}

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [ROUNDS]\n", argv[0]);
        return 2;
    }
    const int rounds = argc > 2 ? atoi(argv[2]) : 3;
    ims_init();
    if (nftw(argv[1], add, 16, 0) != 0 || !n_files) {
        fprintf(stderr, "%s: no files\n", argv[1]);
        return 1;
    }
    double best[2] = {1e30, 1e30};
    size_t bad[2] = {0, 0};
    for (int r = 0; r < rounds + 1; r++) /* round 0 warms up */
        for (int m = 0; m < 2; m++) {
            double t0 = cpu_s();
            bad[m] = 0;
            for (size_t i = 0; i < n_files; i++) {
                ims_image *img = NULL;
                ims_image_info info;
                int rc = m ? ims_image_check_memory(files[i].b, files[i].n, NULL, &info, NULL)
                           : ims_image_load_memory(files[i].b, files[i].n, NULL, &img, NULL);
                bad[m] += rc != IMS_OK;
                ims_image_free(img);
            }
            double t = cpu_s() - t0;
            if (r && t < best[m])
                best[m] = t;
        }
    printf("%zu files (%zu refused by load, %zu by check), best of %d rounds, CPU ms/file:\n"
           "  load  %.3f\n  check %.3f\n",
           n_files, bad[0], bad[1], rounds, 1e3 * best[0] / (double)n_files,
           1e3 * best[1] / (double)n_files);
    for (size_t i = 0; i < n_files; i++)
        free(files[i].b);
    free(files);
    return bad[0] != bad[1];
}
