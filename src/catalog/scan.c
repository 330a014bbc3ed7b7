/* SPDX-License-Identifier: MIT */
/*
 * scan.c — listing the files of an ingested DIR, confined to DIR.
 *
 * The walk is read-only and happens before any write. Rules:
 *   - names starting with '.' are skipped (hidden files, "." and "..");
 *   - real directories are descended (to a depth of 64); symlinks to
 *     directories are never followed (one inside DIR is walked anyway; one
 *     outside is recorded as ENT_OUTSIDE);
 *   - a symlink to a file is resolved (realpath): inside DIR it is an
 *     ordinary file (read through its target), outside it is ENT_OUTSIDE
 *     and never opened — a link to /etc/passwd is refused, not read;
 *   - dangling links, FIFOs, sockets, devices and unreadable directories
 *     are ENT_BROKEN, so they are reported and never block a read;
 *   - the paths in skip_real (the collection directory when it lies inside
 *     DIR, the metadata CSV) are left out.
 * Paths in the catalogue are relative to DIR, '/'-separated; a CSV never
 * names a file to open (the join only compares names), so a "../x" in a CSV
 * reaches nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "catalog/catalog_int.h"

#define MAX_DEPTH 64

typedef struct walk {
    const char *root; /* realpath of DIR */
    size_t root_len;
    const char *const *skip;
    size_t n_skip;
    ims__scan *out;
    ims_error *err;
} walk;

/* 1 if real lies strictly inside root. */
static int inside(const walk *w, const char *real)
{
    return strncmp(real, w->root, w->root_len) == 0 &&
           (real[w->root_len] == '/' || (w->root_len == 1 && w->root[0] == '/'));
}

static int skipped(const walk *w, const char *real)
{
    for (size_t i = 0; i < w->n_skip; i++)
        if (w->skip[i] && !strcmp(w->skip[i], real))
            return 1;
    return 0;
}

/* Append an entry (takes ownership of real and note). */
static int add(walk *w, const char *rel, char *real, int kind, const struct stat *st,
               const char *note)
{
    ims__scan *s = w->out;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        ims__entry *ne = ims_realloc(s->e, nc * sizeof *ne);
        if (!ne) {
            ims_free(real);
            return ims_error_set(w->err, IMS_ENOMEM, "scan: out of memory");
        }
        s->e = ne, s->cap = nc;
    }
    ims__entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    e->rel = ims_strdup(rel);
    const char *slash = strchr(rel, '/');
    size_t clen = slash ? (size_t)(slash - rel) : 0;
    e->category = ims_malloc(clen + 1);
    e->note = note ? ims_strdup(note) : NULL;
    e->real = real;
    e->kind = kind;
    if (st) {
        e->size = st->st_size;
        e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    }
    s->n++; /* counted now so that scan_free releases partial entries */
    if (!e->rel || !e->category || (note && !e->note))
        return ims_error_set(w->err, IMS_ENOMEM, "scan: out of memory");
    memcpy(e->category, rel, clen);
    e->category[clen] = '\0';
    ims__utf8_scrub(e->category); /* e->rel stays the real name */
    return IMS_OK;
}

/* A symlink: resolve it and classify the target. */
static int add_link(walk *w, const char *abs, const char *rel)
{
    char *real = realpath(abs, NULL);
    if (!real)
        return add(w, rel, NULL, ENT_BROKEN, NULL, "dangling symbolic link");
    struct stat st;
    int ok = stat(real, &st) == 0;
    int in = inside(w, real);
    if (!in) {
        char note[PATH_MAX + 64];
        snprintf(note, sizeof note, "symbolic link to %s", real);
        free(real);
        return add(w, rel, NULL, ENT_OUTSIDE, ok ? &st : NULL, note);
    }
    if (!ok || S_ISDIR(st.st_mode) || skipped(w, real)) {
        free(real); /* inside: a linked directory is walked where it really is */
        return IMS_OK;
    }
    if (!S_ISREG(st.st_mode)) {
        free(real);
        return add(w, rel, NULL, ENT_BROKEN, NULL, "not a regular file");
    }
    char *r = ims_strdup(real);
    free(real);
    if (!r)
        return ims_error_set(w->err, IMS_ENOMEM, "scan: out of memory");
    return add(w, rel, r, ENT_FILE, &st, NULL);
}

static int walk_dir(walk *w, const char *abs, const char *rel, int depth)
{
    if (depth > MAX_DEPTH)
        return add(w, rel, NULL, ENT_BROKEN, NULL, "directory nesting too deep");
    DIR *d = opendir(abs);
    if (!d) {
        if (depth == 0)
            return ims_error_set_errno(w->err, IMS_EIO, errno, "%s", abs);
        return add(w, rel, NULL, ENT_BROKEN, NULL, "cannot open directory");
    }
    int rc = IMS_OK;
    struct dirent *de;
    char cabs[PATH_MAX], crel[PATH_MAX];
    while (rc == IMS_OK && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (snprintf(cabs, sizeof cabs, "%s/%s", abs, de->d_name) >= (int)sizeof cabs ||
            snprintf(crel, sizeof crel, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >=
                (int)sizeof crel)
            continue; /* cannot be named: PATH_MAX */
        struct stat st;
        if (lstat(cabs, &st) != 0) {
            rc = add(w, crel, NULL, ENT_BROKEN, NULL, "cannot stat");
        } else if (S_ISLNK(st.st_mode)) {
            rc = add_link(w, cabs, crel);
        } else if (S_ISDIR(st.st_mode)) {
            if (!skipped(w, cabs))
                rc = walk_dir(w, cabs, crel, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            if (!skipped(w, cabs)) {
                char *r = ims_strdup(cabs);
                rc = r ? add(w, crel, r, ENT_FILE, &st, NULL)
                       : ims_error_set(w->err, IMS_ENOMEM, "scan: out of memory");
            }
        } else {
            rc = add(w, crel, NULL, ENT_BROKEN, NULL, "not a regular file");
        }
    }
    closedir(d);
    return rc;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const ims__entry *)a)->rel, ((const ims__entry *)b)->rel);
}

int ims__scan_dir(const char *dir, const char *const *skip_real, size_t n_skip, ims__scan *out,
                  ims_error *err)
{
    memset(out, 0, sizeof *out);
    char *root = realpath(dir, NULL);
    if (!root)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s", dir);
    struct stat st;
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(root);
        return ims_error_set(err, IMS_EIO, "%s: not a directory", dir);
    }
    walk w = {root, strlen(root), skip_real, n_skip, out, err};
    int rc = walk_dir(&w, root, "", 0);
    free(root);
    if (rc) {
        ims__scan_free(out);
        return rc;
    }
    if (out->n)
        qsort(out->e, out->n, sizeof *out->e, cmp_entry);
    return IMS_OK;
}

void ims__scan_free(ims__scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        ims_free(s->e[i].rel);
        ims_free(s->e[i].real);
        ims_free(s->e[i].category);
        ims_free(s->e[i].note);
    }
    ims_free(s->e);
    memset(s, 0, sizeof *s);
}
