/* SPDX-License-Identifier: MIT */
/*
 * coll_fixture.h — what the reliability tests (test_crash, test_diskfull,
 * test_hostile) share: shell helper, sample-photo copies, a small real
 * collection built with the CLI, whole-file reads, and the sanitizer flag
 * that relaxes time/memory bounds. Include in one .c file per test.
 */
#ifndef IMS_TESTS_COLL_FIXTURE_H
#define IMS_TESTS_COLL_FIXTURE_H

#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define FIX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FIX_SANITIZED 1
#endif
#endif
#ifndef FIX_SANITIZED
#define FIX_SANITIZED 0
#endif

static const char *fix_cli, *fix_models;
static char fix_food[512], fix_tmp[256];

static int fix_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fix_sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int fix_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted .jpeg paths of one sample group, at most max; returns n. */
static int fix_group_photos(const char *group, char **out, int max)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", fix_food, group);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    char *names[1024];
    while (d && (e = readdir(d)) && n < 1024)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    if (d)
        closedir(d);
    qsort(names, (size_t)n, sizeof *names, fix_cmp_str);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m < max) {
            char p[2048];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            out[m++] = strdup(p);
        }
        free(names[i]);
    }
    return m;
}

/* Whole file into a malloc'd buffer; NULL on error. */
static void *fix_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        ((char *)b)[n] = '\0'; /* text files can be printed */
        *len = (size_t)n;
    }
    return b;
}

/* Environment (IMS_CLI, IMS_MODELS_DIR, IMS_DATA_DIR) and a temp dir;
 * returns 0 when ready, 77 (skip) or 1 when the assets are missing. */
static int fix_init(const char *name)
{
    fix_cli = getenv("IMS_CLI");
    fix_models = getenv("IMS_MODELS_DIR");
    const char *data = getenv("IMS_DATA_DIR");
    snprintf(fix_food, sizeof fix_food, "%s/food", data ? data : "data");
    char m[700];
    snprintf(m, sizeof m, "%s/mobilenet_v2.ism", fix_models ? fix_models : "models");
    if (!fix_cli || access(m, R_OK) || access(fix_food, R_OK)) {
        fprintf(stderr, "%s: models or sample photos missing\n", name);
        return getenv("IMS_REQUIRE_ASSETS") ? 1 : 77;
    }
    snprintf(fix_tmp, sizeof fix_tmp, "/tmp/ims-%s-XXXXXX", name);
    return mkdtemp(fix_tmp) ? 0 : 1;
}

/* Copy the first `per` photos of each group into <fix_tmp>/<sub>/<group>/
 * and build a collection there (<fix_tmp>/<coll>) with mobilenet_v2, no
 * fine-tuning. Returns the CLI's exit code. */
static int fix_build(const char *sub, const char *coll, const char *const *groups, int n_groups,
                     int per)
{
    for (int g = 0; g < n_groups; g++) {
        char *p[64];
        int n = fix_group_photos(groups[g], p, per < 64 ? per : 64);
        fix_sh("mkdir -p '%s/%s/%s'", fix_tmp, sub, groups[g]);
        for (int i = 0; i < n; i++) {
            fix_sh("cp '%s' '%s/%s/%s/'", p[i], fix_tmp, sub, groups[g]);
            free(p[i]);
        }
    }
    return fix_sh("'%s' build -c '%s/%s' '%s/%s' --model '%s/mobilenet_v2.ism' --no-finetune "
                  ">/dev/null 2>'%s/%s.build.log'",
                  fix_cli, fix_tmp, coll, fix_tmp, sub, fix_models, fix_tmp, coll);
}

#endif /* IMS_TESTS_COLL_FIXTURE_H */
