/* SPDX-License-Identifier: MIT */
/*
 * test_diskfull.c — a full disk, simulated with RLIMIT_FSIZE (the soft
 * limit set in a child, SIGXFSZ ignored, so a write past the limit fails
 * with EFBIG instead of killing the process), during:
 *   - ims_coll_add bursts (this binary, --adds): each add either succeeds
 *     or fails with IMS_EIO/IMS_EFULL and a message naming the file; right
 *     after the failure, in the same process, the item is not half there
 *     (catalogue accepted ids == indexed); the soft limit is then raised
 *     (space freed) and the failed add retried: it succeeds and the item
 *     finds itself first. Limits from 8 KiB (even opening fails cleanly)
 *     to 512 KiB;
 *   - `imgsim ingest` of new photos and `imgsim index -c` (index save):
 *     exit 1 with a one-line message; index.hnsw keeps its old bytes and
 *     no temp file is left behind.
 *   - adds on a tmpfs just larger than the collection (a real ENOSPC; needs
 *     root for mount, else skipped with a note): the same, the failed add
 *     retried after a remount with more room.
 * After each: the collection opens, every acknowledged add is there, the
 * catalogue integrity check passes, and an unlimited run then completes.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>

#include "check.h"
#include "coll_fixture.h"
#include "core/core_int.h"
#include "imgsim/collection.h"
#include "imgsim/imgsim.h"

#define MAX_POOL 32

static const char *k_base[] = {"Fruits", "Marine Fish"};

static int set_fsize(rlim_t soft)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl))
        return -1;
    rl.rlim_cur = soft;
    return setrlimit(RLIMIT_FSIZE, &rl);
}

/* Accepted ids in the catalogue (a fresh read-only handle). */
static long n_accepted(const char *dir)
{
    ims_catalog *cat;
    ims_error err;
    int64_t *ids = NULL;
    size_t n = 0;
    if (ims_catalog_open(dir, IMS_CATALOG_READONLY, &cat, &err))
        return -1;
    int rc = ims_catalog_accepted_ids(cat, &ids, &n, &err);
    ims_free(ids);
    ims_catalog_close(cat);
    return rc ? -1 : (long)n;
}

/* ---- the child: adds under a file size limit ---------------------------------- */

static int child_adds(const char *dir, const char *pool_file, const char *out_file, long limit)
{
    FILE *out = fopen(out_file, "w"), *pf = fopen(pool_file, "r");
    if (!out || !pf)
        return 2;
    setvbuf(out, NULL, _IONBF, 0);
    char *pool[MAX_POOL];
    int n_pool = 0;
    char line[2048];
    while (n_pool < MAX_POOL && fgets(line, sizeof line, pf)) {
        line[strcspn(line, "\n")] = 0;
        pool[n_pool++] = strdup(line);
    }
    fclose(pf);
    ims_init();
    ims_log_set_level(IMS_LOG_ERROR);
    signal(SIGXFSZ, SIG_IGN);
    if (limit > 0 && set_fsize((rlim_t)limit)) /* 0: a small file system instead */
        return 2;
    ims_coll *c = NULL;
    ims_error err;
    ims_coll_opts o = {.sessions = 1, .threads = 1};
    int rc = ims_coll_open(dir, &o, &c, &err);
    if (rc) {
        fprintf(out, "OPENFAIL %d %s\n", rc, err.msg);
        for (int p = 0; p < n_pool; p++)
            free(pool[p]);
        fclose(out);
        return 0;
    }
    for (int p = 0; p < n_pool; p++) {
        size_t len = 0;
        void *b = fix_read(pool[p], &len);
        int64_t id = 0;
        rc = ims_coll_add(c, b, len, "Pool", NULL, "{\"k\":1}", &id, &err);
        if (rc == IMS_OK || rc == IMS_EEXIST) { /* EEXIST: added by an earlier run */
            fprintf(out, "A %lld %d\n", (long long)id, p);
            free(b);
            continue;
        }
        ims_coll_stats st;
        ims_coll_get_stats(c, &st);
        fprintf(out, "FAIL %d %ld %lld %s\n", rc, n_accepted(dir), (long long)st.indexed, err.msg);
        if (limit == 0) { /* the parent frees space and retries */
            free(b);
            break;
        }
        /* space comes back: the same add again */
        set_fsize(RLIM_INFINITY);
        rc = ims_coll_add(c, b, len, "Pool", NULL, "{\"k\":1}", &id, &err);
        ims_coll_hit *h = NULL;
        size_t nh = 0;
        int64_t self = 0;
        int found = 0;
        if (rc == IMS_OK || rc == IMS_EEXIST)
            found = !ims_coll_search_image(c, b, len, 1, NULL, &h, &nh, &self, &err) && nh == 1 &&
                    h[0].item.id == id;
        ims_coll_hits_free(h, nh);
        ims_coll_get_stats(c, &st);
        fprintf(out, "RETRY %d %lld %d %d %ld %lld %s\n", rc, (long long)id, p, found,
                n_accepted(dir), (long long)st.indexed, rc ? err.msg : "");
        free(b);
        break;
    }
    ims_coll_close(c);
    for (int p = 0; p < n_pool; p++)
        free(pool[p]);
    fclose(out);
    return 0;
}

/* ---- the parent ------------------------------------------------------------------- */

/* Run argv (with stdout, stderr to files) under an RLIMIT_FSIZE soft limit. */
static int run_limited(char *const argv[], long limit, const char *err_file)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(err_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2);
        if (null >= 0)
            dup2(null, 1);
        signal(SIGXFSZ, SIG_IGN); /* inherited across exec */
        if (limit > 0 && set_fsize((rlim_t)limit))
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void check_coll(const char *dir, const int64_t *acked, int n_acked, const char *what)
{
    ims_coll *c = NULL;
    ims_error err;
    ims_coll_opts o = {.sessions = 1};
    int rc = ims_coll_open(dir, &o, &c, &err);
    CHECK_MSG(rc == IMS_OK, "%s: reopen: %s", what, err.msg);
    if (rc)
        return;
    ims_coll_stats st;
    ims_coll_get_stats(c, &st);
    CHECK_MSG(st.indexed == n_accepted(dir), "%s: %lld indexed, %ld accepted", what,
              (long long)st.indexed, n_accepted(dir));
    for (int i = 0; i < n_acked; i++) {
        ims_item it;
        rc = ims_coll_get(c, acked[i], &it, &err);
        CHECK_MSG(rc == IMS_OK, "%s: acknowledged add %lld lost", what, (long long)acked[i]);
        if (!rc)
            ims_item_clear(&it);
    }
    ims_coll_close(c);
    ims_catalog *cat;
    CHECK_EQ(ims_catalog_open(dir, IMS_CATALOG_READONLY, &cat, &err), IMS_OK);
    CHECK_MSG(ims_catalog_check(cat, &err) == IMS_OK, "%s: %s", what, err.msg);
    ims_catalog_close(cat);
}

static void test_adds(const char *dir, const char *pool_file)
{
    static const long limits[] = {8 << 10, 48 << 10, 96 << 10, 192 << 10, 512 << 10};
    for (size_t li = 0; li < IMS_ARRAY_LEN(limits); li++) {
        char out[700], errf[700], lim[32], self[64];
        snprintf(out, sizeof out, "%s/adds.%zu", fix_tmp, li);
        snprintf(errf, sizeof errf, "%s/adds.%zu.err", fix_tmp, li);
        snprintf(lim, sizeof lim, "%ld", limits[li]);
        snprintf(self, sizeof self, "/proc/%d/exe", (int)getpid());
        char *argv[] = {self, "--adds", (char *)dir, (char *)pool_file, out, lim, NULL};
        CHECK_EQ(run_limited(argv, 0, errf), 0);
        FILE *f = fopen(out, "r");
        char line[1024];
        int64_t acked[MAX_POOL + 1];
        int n_acked = 0, failed = 0, open_failed = 0;
        while (f && fgets(line, sizeof line, f)) {
            long long id;
            int p, rc, found;
            long nacc, nidx;
            int off = 0;
            if (sscanf(line, "A %lld %d", &id, &p) == 2) {
                acked[n_acked++] = id;
            } else if (sscanf(line, "OPENFAIL %d %n", &rc, &off) == 1) {
                open_failed = 1;
                CHECK_MSG(rc == IMS_EIO || rc == IMS_EFULL || rc == IMS_ECORRUPT,
                          "limit %ld: open failed with %s", limits[li], ims_errname(rc));
                fprintf(stderr, "test_diskfull: limit %ld: open refused: %s: %s", limits[li],
                        ims_errname(rc), line + off);
            } else if (sscanf(line, "FAIL %d %ld %ld %n", &rc, &nacc, &nidx, &off) == 3) {
                failed = 1;
                CHECK_MSG(rc == IMS_EIO || rc == IMS_EFULL, "limit %ld: add failed with %s",
                          limits[li], ims_errname(rc));
                CHECK_MSG(nacc == nidx,
                          "limit %ld: after the failed add %ld accepted but "
                          "%ld indexed (half an item)",
                          limits[li], nacc, nidx);
                fprintf(stderr, "test_diskfull: limit %ld: add %d failed: %s: %s", limits[li],
                        n_acked + 1, ims_errname(rc), line + off);
            } else if (sscanf(line, "RETRY %d %lld %d %d %ld %ld", &rc, &id, &p, &found, &nacc,
                              &nidx) == 6) {
                CHECK_MSG(rc == IMS_OK || rc == IMS_EEXIST, "limit %ld: retry: %s: %s", limits[li],
                          ims_errname(rc), line);
                CHECK_MSG(found, "limit %ld: retried add %lld (%s) not found by its image",
                          limits[li], id, ims_errname(rc));
                CHECK_MSG(nacc == nidx, "limit %ld: after the retry %ld accepted, %ld indexed",
                          limits[li], nacc, nidx);
                if (rc == IMS_OK || rc == IMS_EEXIST)
                    acked[n_acked++] = id;
            }
        }
        if (f)
            fclose(f);
        CHECK_MSG(failed || open_failed, "limit %ld: every add succeeded", limits[li]);
        char what[64];
        snprintf(what, sizeof what, "adds, limit %ld", limits[li]);
        check_coll(dir, acked, n_acked, what);
    }
}

/* The last line of a text (static storage). */
static const char *last_line(const char *t, size_t len)
{
    static char line[1024];
    line[0] = 0;
    if (!t || !len)
        return line;
    size_t end = len, start;
    while (end > 0 && t[end - 1] == '\n')
        end--;
    start = end;
    while (start > 0 && t[start - 1] != '\n')
        start--;
    snprintf(line, sizeof line, "%.*s\n", (int)(end - start), t + start);
    return line;
}

static void test_cli(const char *dir)
{
    /* ingest under a limit, then unlimited */
    static const char *more[] = {"Cereals and Millets", "Other Vegetables", "Animal Meat"};
    char photos[700], errf[700], ipath[700], *argv[6];
    snprintf(photos, sizeof photos, "%s/base", fix_tmp); /* the collection's own DIR */
    snprintf(errf, sizeof errf, "%s/cli.err", fix_tmp);
    snprintf(ipath, sizeof ipath, "%s/index.hnsw", dir);
    for (size_t g = 0; g < IMS_ARRAY_LEN(more); g++) {
        char *p[20];
        int n = fix_group_photos(more[g], p, 20);
        fix_sh("mkdir -p '%s/%s'", photos, more[g]);
        for (int i = 0; i < n; i++) {
            fix_sh("cp '%s' '%s/%s/'", p[i], photos, more[g]);
            free(p[i]);
        }
    }
    long before = n_accepted(dir);
    argv[0] = (char *)fix_cli, argv[1] = "ingest", argv[2] = "-c", argv[3] = (char *)dir,
    argv[4] = photos, argv[5] = NULL;
    int rc = run_limited(argv, 64 << 10, errf);
    size_t len = 0;
    char *msg = fix_read(errf, &len);
    const char *last = last_line(msg, len);
    CHECK_MSG(rc == 1, "ingest under 64 KiB: exit %d (want 1)", rc);
    CHECK_MSG(strstr(last, "catalog.sqlite") != NULL,
              "ingest under 64 KiB: the last line should name the file: %s", last);
    fprintf(stderr, "test_diskfull: ingest under 64 KiB: exit %d: %s", rc, last);
    free(msg);
    CHECK(n_accepted(dir) >= before);
    check_coll(dir, NULL, 0, "ingest, limit");
    CHECK_EQ(run_limited(argv, 0, errf), 0);
    long after = n_accepted(dir);
    CHECK(after > before);
    /* embed the new items, then an index save under a limit */
    CHECK_EQ(fix_sh("'%s' embed-all -c '%s' >/dev/null 2>&1", fix_cli, dir), 0);
    size_t old_len = 0;
    void *old = fix_read(ipath, &old_len);
    /* above SQLite's 32 KiB -shm file (so the catalogue opens), below the index */
    long lim = ((long)old_len + 36864) / 2;
    CHECK_MSG(old && old_len > 40000, "index.hnsw is only %zu bytes", old_len);
    argv[1] = "index", argv[4] = NULL;
    rc = run_limited(argv, lim, errf);
    msg = fix_read(errf, &len);
    CHECK_MSG(rc == 1, "index under %ld bytes: exit %d (want 1)", lim, rc);
    CHECK_MSG(msg && len > 0 && strchr(msg, '\n') == msg + len - 1 && strstr(msg, "index.hnsw"),
              "index save: want one line naming the file on stderr, got: %s", msg ? msg : "");
    fprintf(stderr, "test_diskfull: index save under %ld bytes: exit %d: %s", lim, rc,
            msg ? msg : "\n");
    free(msg);
    size_t now_len = 0;
    void *now = fix_read(ipath, &now_len);
    CHECK_MSG(now && now_len == old_len && !memcmp(now, old, old_len),
              "index.hnsw changed by a failed save");
    free(now);
    free(old);
    CHECK_EQ(fix_sh("ls '%s' | grep -c '\\.tmp' >/dev/null", dir), 1); /* no temp file left */
    check_coll(dir, NULL, 0, "index save, limit");
    CHECK_EQ(run_limited(argv, 0, errf), 0);
    ims_coll *c = NULL;
    ims_error err;
    CHECK_EQ(ims_coll_open(dir, &(ims_coll_opts){.sessions = 1}, &c, &err), IMS_OK);
    if (c) {
        ims_coll_stats st;
        ims_coll_get_stats(c, &st);
        CHECK_EQ(st.indexed, after);
        ims_coll_close(c);
    }
}

/* A real full disk (ENOSPC) on a tmpfs just larger than the collection;
 * needs root (mount), else says so and returns. */
static void test_tmpfs(const char *dir, const char *pool_file)
{
    char mnt[700], c2[800], cmd[1600];
    snprintf(mnt, sizeof mnt, "%s/mnt", fix_tmp);
    snprintf(c2, sizeof c2, "%s/c", mnt);
    snprintf(cmd, sizeof cmd, "du -sb '%s'", dir);
    FILE *p = popen(cmd, "r");
    long bytes = 0;
    if (!p || fscanf(p, "%ld", &bytes) != 1)
        bytes = 0;
    if (p)
        pclose(p);
    long size = ((bytes + (160 << 10)) + 4095) / 4096 * 4096;
    mkdir(mnt, 0755);
    if (!bytes || fix_sh("mount -t tmpfs -o size=%ld tmpfs '%s' 2>/dev/null", size, mnt)) {
        fprintf(stderr, "test_diskfull: tmpfs: cannot mount (not root?): ENOSPC case skipped\n");
        return;
    }
    CHECK_EQ(fix_sh("cp -a '%s' '%s'", dir, c2), 0);
    char out[700], errf[700], self[64];
    snprintf(out, sizeof out, "%s/tmpfs.adds", fix_tmp);
    snprintf(errf, sizeof errf, "%s/tmpfs.err", fix_tmp);
    snprintf(self, sizeof self, "/proc/%d/exe", (int)getpid());
    char *argv[] = {self, "--adds", c2, (char *)pool_file, out, "0", NULL};
    CHECK_EQ(run_limited(argv, 0, errf), 0);
    FILE *f = fopen(out, "r");
    char line[1024];
    int64_t acked[MAX_POOL + 1];
    int n_acked = 0, failed_p = -1;
    while (f && fgets(line, sizeof line, f)) {
        long long id;
        int pi, rc, off = 0;
        long nacc, nidx;
        if (sscanf(line, "A %lld %d", &id, &pi) == 2) {
            acked[n_acked++] = id;
        } else if (sscanf(line, "FAIL %d %ld %ld %n", &rc, &nacc, &nidx, &off) == 3) {
            failed_p = n_acked;
            CHECK_MSG(rc == IMS_EIO || rc == IMS_EFULL, "tmpfs: add failed with %s",
                      ims_errname(rc));
            CHECK_MSG(nacc == nidx, "tmpfs: after the failed add %ld accepted, %ld indexed", nacc,
                      nidx);
            fprintf(stderr, "test_diskfull: tmpfs of %ld KiB: add %d failed: %s: %s", size >> 10,
                    n_acked + 1, ims_errname(rc), line + off);
        } else if (!strncmp(line, "OPENFAIL", 8)) {
            CHECK_MSG(0, "tmpfs: open failed: %s", line);
        }
    }
    if (f)
        fclose(f);
    CHECK_MSG(failed_p >= 0, "tmpfs: every add succeeded (%d)", n_acked);
    /* space comes back: everything acknowledged is there, the failed add works */
    CHECK_EQ(fix_sh("mount -o remount,size=%ld tmpfs '%s'", size + (64l << 20), mnt), 0);
    check_coll(c2, acked, n_acked, "tmpfs");
    if (failed_p >= 0) {
        FILE *pf = fopen(pool_file, "r");
        char path[2048] = "";
        for (int i = 0; pf && i <= failed_p && fgets(path, sizeof path, pf); i++)
            path[strcspn(path, "\n")] = 0;
        if (pf)
            fclose(pf);
        size_t len = 0;
        void *b = fix_read(path, &len);
        ims_coll *c = NULL;
        ims_error err;
        CHECK_EQ(ims_coll_open(c2, &(ims_coll_opts){.sessions = 1}, &c, &err), IMS_OK);
        if (c && b) {
            int64_t id = 0;
            int rc = ims_coll_add(c, b, len, "Pool", NULL, NULL, &id, &err);
            CHECK_MSG(rc == IMS_OK || rc == IMS_EEXIST, "tmpfs: retry: %s", err.msg);
            ims_coll_hit *h = NULL;
            size_t nh = 0;
            CHECK_EQ(ims_coll_search_image(c, b, len, 1, NULL, &h, &nh, NULL, &err), IMS_OK);
            CHECK(nh == 1 && h[0].item.id == id);
            ims_coll_hits_free(h, nh);
        }
        ims_coll_close(c);
        free(b);
    }
    fix_sh("umount '%s'", mnt);
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "--adds"))
        return child_adds(argv[2], argv[3], argv[4], atol(argv[5]));
    ims_init();
    ims_log_set_level(IMS_LOG_ERROR);
    int rc = fix_init("diskfull");
    if (rc)
        return rc;
    char dir[600], pool_file[700];
    snprintf(dir, sizeof dir, "%s/c", fix_tmp);
    CHECK_EQ(fix_build("base", "c", k_base, 2, 6), 0);
    snprintf(pool_file, sizeof pool_file, "%s/pool.txt", fix_tmp);
    FILE *pf = fopen(pool_file, "w");
    static const char *pool_groups[] = {"Poultry", "Grain Legumes", "Milk and Milk Products"};
    char sha[MAX_POOL][65];
    int n = 0;
    for (size_t g = 0; g < IMS_ARRAY_LEN(pool_groups); g++) {
        char *p[MAX_POOL];
        int m = fix_group_photos(pool_groups[g], p, MAX_POOL);
        for (int i = 0; i < m; i++) {
            size_t len = 0;
            void *b = n < MAX_POOL ? fix_read(p[i], &len) : NULL;
            int dup = !b;
            char hex[65] = "";
            if (b)
                ims__sha256_hex(b, len, hex);
            for (int j = 0; j < n && !dup; j++)
                dup = !strcmp(sha[j], hex);
            if (!dup) {
                memcpy(sha[n], hex, sizeof hex);
                fprintf(pf, "%s\n", p[i]);
                n++;
            }
            free(b);
            free(p[i]);
        }
    }
    fclose(pf);
    CHECK(n >= 20);
    test_tmpfs(dir, pool_file); /* first: no pool image is in the collection yet */
    test_adds(dir, pool_file);
    test_cli(dir);
    if (!check_failures)
        fix_sh("rm -rf '%s'", fix_tmp);
    else
        fprintf(stderr, "test_diskfull: files kept in %s\n", fix_tmp);
    return check_report();
}
