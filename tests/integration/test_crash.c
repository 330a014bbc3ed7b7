/* SPDX-License-Identifier: MIT */
/*
 * test_crash.c — crash consistency under SIGKILL, on a real collection
 * (sample photos, mobilenet_v2, SQLite catalogue, HNSW index):
 *
 *   (a) online writes: a child process (this binary, --burst) opens the
 *       collection and adds and deletes items as fast as it can, writing
 *       each call's intent before it and its acknowledgement after it
 *       returned IMS_OK to an append-only file; the parent SIGKILLs it at
 *       a random moment (a quarter of the rounds during the open and its
 *       log replay, the rest mid-burst), then reopens and checks: every
 *       acknowledged add is there (get), has its image (byte-identical),
 *       finds itself first by image; every acknowledged delete is gone
 *       (get and index); nothing is half-present (accepted ids == index
 *       count, every accepted id is in the index and has its image); the
 *       SQLite integrity check and `imgsim index check` pass. Half-way the
 *       log is folded into index.hnsw with `imgsim index`.
 *   (b) offline pipeline: `imgsim ingest`, `imgsim embed-all` and
 *       `imgsim index` SIGKILLed at random moments (ingest every other round
 *       from scratch, else resumed), then run to the end:
 *       the same accepted contents as an uninterrupted ingest, vectors
 *       byte-identical to an uninterrupted embed-all, index.hnsw always
 *       either absent/old or sound, and the collection opens with every
 *       accepted item indexed.
 *
 * Rounds: IMS_CRASH_ROUNDS (default 5; run 20 by hand). Seed:
 * IMS_CRASH_SEED (default: time), printed so a failure can be replayed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>

#include "check.h"
#include "coll_fixture.h"
#include "core/core_int.h"
#include "imgsim/collection.h"
#include "imgsim/imgsim.h"

#define MAX_ID 8192
#define MAX_POOL 64

static const char *k_base[] = {"Fruits", "Marine Fish"};
static const char *k_pool_groups[] = {"Cereals and Millets", "Other Vegetables", "Animal Meat",
                                      "Poultry"};

static unsigned long long g_rng;
static uint32_t rnd(void) { return (uint32_t)(check_rand_u64(&g_rng) >> 33); }

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void msleep(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) && errno == EINTR) {
    }
}

/* ---- (a) the child: a burst of adds and deletes -------------------------------- */

static void ack(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ack(int fd, const char *fmt, ...)
{
    char line[96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (write(fd, line, (size_t)n) != n) /* one write: whole line or nothing */
        _exit(4);
}

static int child_burst(const char *dir, const char *pool_file, const char *ack_file, uint64_t seed)
{
    ims_init();
    ims_log_set_level(IMS_LOG_ERROR);
    g_rng = seed;
    int fd = open(ack_file, O_WRONLY | O_APPEND | O_CREAT, 0644);
    FILE *pf = fopen(pool_file, "r");
    if (fd < 0 || !pf)
        return 2;
    char *pool[MAX_POOL];
    int n_pool = 0;
    char line[2048];
    while (n_pool < MAX_POOL && fgets(line, sizeof line, pf)) {
        line[strcspn(line, "\n")] = 0;
        pool[n_pool++] = strdup(line);
    }
    fclose(pf);
    ims_coll *c;
    ims_error err;
    ims_coll_opts o = {.sessions = 1, .threads = 1};
    if (ims_coll_open(dir, &o, &c, &err)) {
        fprintf(stderr, "burst: open: %s\n", err.msg);
        return 2;
    }
    ims_catalog *cat;
    int64_t *ids = NULL;
    size_t n = 0;
    if (ims_catalog_open(dir, IMS_CATALOG_READONLY, &cat, &err) ||
        ims_catalog_accepted_ids(cat, &ids, &n, &err)) {
        fprintf(stderr, "burst: catalogue: %s\n", err.msg);
        return 2;
    }
    ims_catalog_close(cat);
    int64_t present[MAX_ID];
    size_t n_present = 0;
    for (size_t i = 0; i < n && i < MAX_ID; i++)
        present[n_present++] = ids[i];
    ims_free(ids);
    ack(fd, "O\n"); /* opened */
    for (;;) {
        if (n_present < 6 || rnd() % 10 < 6) {
            int p = (int)(rnd() % (uint32_t)n_pool);
            size_t len = 0;
            void *b = fix_read(pool[p], &len);
            char meta[64];
            snprintf(meta, sizeof meta, "{\"pool\":%d}", p);
            int64_t id = 0;
            ack(fd, "I A %d\n", p);
            int rc = ims_coll_add(c, b, len, "Pool", NULL, meta, &id, &err);
            free(b);
            if (rc != IMS_OK && rc != IMS_EEXIST) {
                fprintf(stderr, "burst: add: %s\n", err.msg);
                return 3;
            }
            size_t i = 0;
            while (i < n_present && present[i] != id)
                i++;
            if (i == n_present && n_present < MAX_ID)
                present[n_present++] = id;
            ack(fd, "A %lld %d\n", (long long)id, p);
        } else {
            size_t i = rnd() % n_present;
            int64_t id = present[i];
            ack(fd, "I D %lld\n", (long long)id);
            if (ims_coll_delete(c, id, &err)) {
                fprintf(stderr, "burst: delete %lld: %s\n", (long long)id, err.msg);
                return 3;
            }
            present[i] = present[--n_present];
            ack(fd, "D %lld\n", (long long)id);
        }
    }
}

/* ---- (a) the parent ----------------------------------------------------------------- */

enum { ST_UNKNOWN = 0, ST_PRESENT = 1, ST_GONE = 2 };

typedef struct world {
    char dir[600];
    int n_pool;
    char *pool_path[MAX_POOL];
    void *pool_bytes[MAX_POOL];
    size_t pool_len[MAX_POOL];
    char pool_sha[MAX_POOL][65];
    unsigned char state[MAX_ID];
    int pool_of[MAX_ID];         /* -1: a base item */
    unsigned char fresh[MAX_ID]; /* acknowledged this round: search-check it */
} world;

static world W;

static pid_t spawn(char *const argv[], const char *err_file)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(err_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0)
            dup2(fd, 2);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    long n = 0;
    int ch;
    while (f && (ch = fgetc(f)) != EOF)
        n += ch == '\n';
    if (f)
        fclose(f);
    return n;
}

/* Apply the acknowledgements; returns the in-flight delete id (0 if none),
 * *n_acks the number of acknowledged calls. */
static int64_t apply_acks(const char *path, long *n_acks)
{
    FILE *f = fopen(path, "r");
    char line[128];
    int64_t in_flight_del = 0;
    *n_acks = 0;
    while (f && fgets(line, sizeof line, f)) {
        long long id;
        int p;
        if (sscanf(line, "I D %lld", &id) == 1) {
            in_flight_del = id;
        } else if (sscanf(line, "A %lld %d", &id, &p) == 2 && id > 0 && id < MAX_ID) {
            W.state[id] = ST_PRESENT;
            W.pool_of[id] = p;
            W.fresh[id] = 1;
            (*n_acks)++;
        } else if (sscanf(line, "D %lld", &id) == 1 && id > 0 && id < MAX_ID) {
            W.state[id] = ST_GONE;
            in_flight_del = 0;
            (*n_acks)++;
        } else if (line[0] == 'I') {
            in_flight_del = 0;
        }
    }
    if (f)
        fclose(f);
    return in_flight_del;
}

/* Everything the collection must hold after a crash. */
static void check_world(int round, int64_t in_flight_del)
{
    ims_coll *c = NULL;
    ims_error err;
    ims_coll_opts o = {.sessions = 1, .threads = 1};
    int rc = ims_coll_open(W.dir, &o, &c, &err);
    CHECK_MSG(rc == IMS_OK, "round %d: reopen: %s", round, err.msg);
    if (rc)
        return;
    ims_catalog *cat;
    int64_t *ids = NULL;
    size_t n = 0;
    CHECK_EQ(ims_catalog_open(W.dir, IMS_CATALOG_READONLY, &cat, &err), IMS_OK);
    CHECK_EQ(ims_catalog_accepted_ids(cat, &ids, &n, &err), IMS_OK);
    ims_coll_stats st;
    ims_coll_get_stats(c, &st);
    CHECK_MSG(st.indexed == (int64_t)n, "round %d: %lld indexed, %zu accepted", round,
              (long long)st.indexed, n);
    for (size_t i = 0; i < n; i++) { /* each accepted item: indexed, with its image */
        ims_coll_hit *h = NULL;
        size_t nh = 0;
        int r = ims_coll_similar(c, ids[i], 1, NULL, &h, &nh, &err);
        CHECK_MSG(r == IMS_OK, "round %d: accepted item %lld not in the index: %s", round,
                  (long long)ids[i], err.msg);
        ims_coll_hits_free(h, nh);
        void *b = NULL;
        size_t len = 0;
        char fmt[8];
        r = ims_coll_image(c, ids[i], &b, &len, fmt, &err);
        CHECK_MSG(r == IMS_OK, "round %d: item %lld has no image: %s", round, (long long)ids[i],
                  err.msg);
        if (!r && ids[i] < MAX_ID && W.pool_of[ids[i]] >= 0 && W.state[ids[i]]) {
            int p = W.pool_of[ids[i]];
            CHECK_MSG(len == W.pool_len[p] && !memcmp(b, W.pool_bytes[p], len),
                      "round %d: item %lld: image bytes differ", round, (long long)ids[i]);
        }
        ims_free(b);
        if (ids[i] < MAX_ID && W.state[ids[i]] == ST_GONE && ids[i] != in_flight_del)
            CHECK_MSG(0, "round %d: deleted item %lld is accepted again", round, (long long)ids[i]);
    }
    for (int64_t id = 1; id < MAX_ID; id++) {
        if (id == in_flight_del || !W.state[id])
            continue;
        ims_item it;
        int r = ims_coll_get(c, id, &it, &err);
        if (W.state[id] == ST_PRESENT) {
            CHECK_MSG(r == IMS_OK, "round %d: acknowledged add %lld lost: %s", round, (long long)id,
                      err.msg);
            if (!r)
                ims_item_clear(&it);
            int p = W.pool_of[id];
            if (!r && p >= 0 && W.fresh[id]) { /* finds itself first */
                ims_coll_hit *h = NULL;
                size_t nh = 0;
                int64_t self = 0;
                r = ims_coll_search_image(c, W.pool_bytes[p], W.pool_len[p], 1, NULL, &h, &nh,
                                          &self, &err);
                CHECK_MSG(r == IMS_OK && nh == 1 && h[0].item.id == id && self == id,
                          "round %d: item %lld does not find itself (rc %d, first %lld)", round,
                          (long long)id, r, nh ? (long long)h[0].item.id : -1ll);
                ims_coll_hits_free(h, nh);
            }
        } else {
            CHECK_MSG(r == IMS_ENOTFOUND, "round %d: acknowledged delete %lld still there", round,
                      (long long)id);
            if (!r)
                ims_item_clear(&it);
            ims_coll_hit *h = NULL;
            size_t nh = 0;
            CHECK_EQ(ims_coll_similar(c, id, 1, NULL, &h, &nh, &err), IMS_ENOTFOUND);
            ims_coll_hits_free(h, nh);
        }
    }
    /* resync what the killed call may have done */
    for (int64_t id = 1; id < MAX_ID; id++) {
        W.fresh[id] = 0;
        if (W.state[id] == ST_PRESENT || id == in_flight_del) {
            int in = 0;
            for (size_t i = 0; i < n; i++)
                in |= ids[i] == id;
            W.state[id] = in ? ST_PRESENT : ST_GONE;
        }
    }
    for (int p = 0; p < W.n_pool; p++) {
        int64_t id = 0;
        if (!ims_catalog_find_sha256(cat, W.pool_sha[p], &id, NULL) && id > 0 && id < MAX_ID) {
            W.state[id] = ST_PRESENT;
            W.pool_of[id] = p;
        }
    }
    ims_free(ids);
    ims_coll_close(c);
    CHECK_MSG(ims_catalog_check(cat, &err) == IMS_OK, "round %d: catalogue: %s", round, err.msg);
    ims_catalog_close(cat);
    CHECK_MSG(fix_sh("'%s' index check '%s/index.hnsw' >/dev/null", fix_cli, W.dir) == 0,
              "round %d: imgsim index check fails", round);
}

static void test_online_crash(int rounds)
{
    snprintf(W.dir, sizeof W.dir, "%s/online", fix_tmp);
    CHECK_EQ(fix_build("base", "online", k_base, 2, 6), 0);
    char pool_file[700];
    snprintf(pool_file, sizeof pool_file, "%s/pool.txt", fix_tmp);
    FILE *pf = fopen(pool_file, "w");
    for (size_t g = 0; g < IMS_ARRAY_LEN(k_pool_groups); g++) {
        char *p[10];
        int n = fix_group_photos(k_pool_groups[g], p, 10);
        for (int i = 0; i < n && W.n_pool < MAX_POOL; i++) {
            int k = W.n_pool++;
            W.pool_path[k] = p[i];
            W.pool_bytes[k] = fix_read(p[i], &W.pool_len[k]);
            ims__sha256_hex(W.pool_bytes[k], W.pool_len[k], W.pool_sha[k]);
            fprintf(pf, "%s\n", p[i]);
        }
    }
    fclose(pf);
    CHECK(W.n_pool >= 20);
    for (int i = 0; i < MAX_ID; i++)
        W.pool_of[i] = -1;
    {
        ims_catalog *cat;
        ims_error err;
        int64_t *ids = NULL;
        size_t n = 0;
        if (!ims_catalog_open(W.dir, IMS_CATALOG_READONLY, &cat, &err)) {
            ims_catalog_accepted_ids(cat, &ids, &n, &err);
            ims_catalog_close(cat);
        }
        for (size_t i = 0; i < n; i++)
            W.state[ids[i]] = ST_PRESENT;
        ims_free(ids);
        CHECK(n >= 8);
    }
    long total_acks = 0;
    int early = 0;
    for (int r = 0; r < rounds && !check_failures; r++) {
        if (r == rounds / 2 && r > 0) /* fold the log into index.hnsw once */
            CHECK_EQ(fix_sh("'%s' index -c '%s' >/dev/null 2>&1", fix_cli, W.dir), 0);
        char ack_file[700], err_file[700], seed[32];
        snprintf(ack_file, sizeof ack_file, "%s/acks.%d", fix_tmp, r);
        snprintf(err_file, sizeof err_file, "%s/burst.%d.err", fix_tmp, r);
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)check_rand_u64(&g_rng));
        char self[64];
        snprintf(self, sizeof self, "/proc/%d/exe", (int)getpid());
        char *argv[] = {self, "--burst", W.dir, pool_file, ack_file, seed, NULL};
        int during_open = r % 4 == 3;
        pid_t pid = spawn(argv, err_file);
        double t0 = now_s();
        long want = 1 + 1 + (long)(rnd() % 6); /* "O" + some acknowledged calls */
        int exited = 0;
        if (during_open) {
            msleep((int)(rnd() % 400));
        } else {
            while (count_lines(ack_file) < want * 2 && now_s() - t0 < 120) {
                int st;
                if (waitpid(pid, &st, WNOHANG) == pid) {
                    exited = 1;
                    break;
                }
                msleep(5);
            }
            msleep((int)(rnd() % 120));
        }
        if (!exited) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        } else {
            fix_sh("cat '%s' >&2", err_file);
        }
        CHECK_MSG(!exited, "round %d: the burst child exited by itself", r);
        long n_acks = 0;
        int64_t in_flight = apply_acks(ack_file, &n_acks);
        total_acks += n_acks;
        early += count_lines(ack_file) == 0;
        check_world(r, in_flight);
        fprintf(stderr, "test_crash: online round %d: killed after %.0f ms%s, %ld acknowledged\n",
                r, (now_s() - t0) * 1000, during_open ? " (open)" : "", n_acks);
    }
    fprintf(stderr,
            "test_crash: online: %d rounds, %ld acknowledged calls, %d killed before "
            "open finished\n",
            rounds, total_acks, early);
    for (int p = 0; p < W.n_pool; p++) {
        free(W.pool_path[p]);
        free(W.pool_bytes[p]);
    }
}

/* ---- (b) the offline pipeline --------------------------------------------------------- */

/* Run the CLI with args, SIGKILL it after ms milliseconds (if still running).
 * Returns 1 if it was killed, 0 if it had finished. */
static int run_killed(const char *sub, const char *dir, int ms)
{
    char *argv[] = {(char *)fix_cli, (char *)sub, "-c", (char *)dir, NULL, NULL, NULL};
    char photos[700];
    if (!strcmp(sub, "ingest")) {
        snprintf(photos, sizeof photos, "%s/pipe-photos", fix_tmp);
        argv[4] = photos;
    }
    char err_file[700];
    snprintf(err_file, sizeof err_file, "%s/%s.err", fix_tmp, sub);
    pid_t pid = spawn(argv, err_file);
    double t0 = now_s();
    int st;
    while ((now_s() - t0) * 1000 < ms) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return 0;
        msleep(2);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st);
}

static double timed(const char *fmt, const char *a, const char *b)
{
    double t0 = now_s();
    char cmd[1600];
    snprintf(cmd, sizeof cmd, fmt, fix_cli, a, b);
    CHECK_MSG(fix_sh("%s", cmd) == 0, "failed: %s", cmd);
    return now_s() - t0;
}

/* sha256 -> vector of every accepted item (sorted by sha), n x dim. */
typedef struct shavec {
    char sha[65];
    float *v;
} shavec;
static int cmp_shavec(const void *a, const void *b)
{
    return strcmp(((const shavec *)a)->sha, ((const shavec *)b)->sha);
}
static shavec *collect(const char *dir, int dim, size_t *n_out)
{
    ims_catalog *cat;
    ims_error err;
    char stamp[65] = "";
    *n_out = 0;
    if ((dim > 0 && ims_coll_encoder_stamp(dir, stamp, &err)) ||
        ims_catalog_open(dir, IMS_CATALOG_READONLY, &cat, &err)) {
        CHECK_MSG(0, "%s: %s", dir, err.msg);
        return NULL;
    }
    int64_t *ids = NULL;
    size_t n = 0;
    ims_catalog_accepted_ids(cat, &ids, &n, &err);
    shavec *s = calloc(n ? n : 1, sizeof *s);
    for (size_t i = 0; i < n; i++) {
        ims_item it;
        if (!ims_catalog_get(cat, ids[i], &it, &err)) {
            snprintf(s[i].sha, sizeof s[i].sha, "%s", it.sha256);
            ims_item_clear(&it);
        }
        if (dim > 0) {
            s[i].v = calloc((size_t)dim, sizeof(float));
            CHECK_MSG(
                !ims_catalog_get_vectors(cat, "vectors", stamp, 1, &ids[i], s[i].v, dim, &err),
                "%s: item %lld: %s", dir, (long long)ids[i], err.msg);
        }
        char *path = NULL;
        if (!ims_catalog_image_path(cat, ids[i], &path, &err)) {
            size_t len = 0;
            void *b = fix_read(path, &len);
            char hex[65] = "";
            if (b)
                ims__sha256_hex(b, len, hex);
            CHECK_MSG(!strcmp(hex, s[i].sha), "%s: item %lld: stored image missing or wrong", dir,
                      (long long)ids[i]);
            free(b);
        }
        ims_free(path);
    }
    CHECK_MSG(ims_catalog_check(cat, &err) == IMS_OK, "%s: %s", dir, err.msg);
    ims_catalog_close(cat);
    ims_free(ids);
    qsort(s, n, sizeof *s, cmp_shavec);
    *n_out = n;
    return s;
}

static void free_shavec(shavec *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        free(s[i].v);
    free(s);
}

static void test_pipeline_crash(int rounds)
{
    static const char *groups[] = {"Fruits", "Marine Fish", "Other Vegetables", "Poultry"};
    char photos[700], ref[700], dir[700], model[700], ipath[800];
    int per = FIX_SANITIZED ? 8 : 15;
    for (size_t g = 0; g < IMS_ARRAY_LEN(groups); g++) {
        char *p[64];
        int n = fix_group_photos(groups[g], p, per);
        fix_sh("mkdir -p '%s/pipe-photos/%s'", fix_tmp, groups[g]);
        for (int i = 0; i < n; i++) {
            fix_sh("cp '%s' '%s/pipe-photos/%s/'", p[i], fix_tmp, groups[g]);
            free(p[i]);
        }
    }
    snprintf(photos, sizeof photos, "%s/pipe-photos", fix_tmp);
    snprintf(ref, sizeof ref, "%s/pipe-ref", fix_tmp);
    snprintf(dir, sizeof dir, "%s/pipe", fix_tmp);
    snprintf(model, sizeof model, "%s/mobilenet_v2.ism", fix_models);
    snprintf(ipath, sizeof ipath, "%s/index.hnsw", dir);
    ims_error err;
    /* the uninterrupted reference, timed */
    double t_ingest = timed("'%s' ingest -c '%s' '%s' >/dev/null 2>&1", ref, photos);
    CHECK_EQ(ims_coll_set_backbone(ref, model, NULL, &err), IMS_OK);
    double t_embed = timed("'%s' embed-all -c '%s' %s>/dev/null 2>&1", ref, "");
    double t_index = timed("'%s' index -c '%s' %s>/dev/null 2>&1", ref, "");
    int killed[3] = {0, 0, 0};
    /* ingest, killed */
    for (int r = 0; r < rounds; r++) { /* every other round from scratch, else resumed */
        if (r % 2 == 0)
            fix_sh("rm -rf '%s'", dir);
        killed[0] += run_killed("ingest", dir, (int)(rnd() % (unsigned)(t_ingest * 1000 + 1)));
    }
    CHECK_EQ(fix_sh("'%s' ingest -c '%s' '%s' >/dev/null 2>&1", fix_cli, dir, photos), 0);
    size_t n_ref = 0, n_dir = 0;
    shavec *a = collect(ref, 0, &n_ref), *b = collect(dir, 0, &n_dir);
    CHECK_EQ(n_dir, n_ref);
    for (size_t i = 0; i < n_ref && i < n_dir; i++)
        CHECK_STR_EQ(a[i].sha, b[i].sha);
    free_shavec(a, n_ref);
    free_shavec(b, n_dir);
    /* embed-all, killed */
    CHECK_EQ(ims_coll_set_backbone(dir, model, NULL, &err), IMS_OK);
    for (int r = 0; r < rounds; r++) {
        int k = run_killed("embed-all", dir, (int)(rnd() % (unsigned)(t_embed * 900 + 1)));
        killed[1] += k;
        ims_catalog *cat;
        if (!k && !ims_catalog_open(dir, 0, &cat, &err)) { /* it finished: start over */
            CHECK_EQ(ims_catalog_drop_stale(cat, "vectors", "none", NULL, &err), IMS_OK);
            ims_catalog_close(cat);
        }
    }
    CHECK_EQ(fix_sh("'%s' embed-all -c '%s' >/dev/null 2>&1", fix_cli, dir), 0);
    /* index, killed: index.hnsw is absent or sound after every kill */
    for (int r = 0; r < rounds; r++) {
        killed[2] += run_killed("index", dir, (int)(rnd() % (unsigned)(t_index * 1000 + 1)));
        if (access(ipath, F_OK) == 0)
            CHECK_MSG(fix_sh("'%s' index check '%s' >/dev/null", fix_cli, ipath) == 0,
                      "index round %d: index.hnsw left unsound", r);
    }
    CHECK_EQ(fix_sh("'%s' index -c '%s' >/dev/null 2>&1", fix_cli, dir), 0);
    ims_coll *c = NULL;
    ims_coll_opts o = {.sessions = 1, .readonly = 1};
    int rc = ims_coll_open(dir, &o, &c, &err);
    CHECK_MSG(rc == IMS_OK, "pipeline: open: %s", err.msg);
    int dim = 0;
    if (!rc) {
        ims_coll_stats st;
        ims_coll_get_stats(c, &st);
        CHECK_EQ(st.indexed, (int64_t)n_ref);
        dim = st.dim;
        ims_coll_close(c);
    }
    a = collect(ref, dim, &n_ref);
    b = collect(dir, dim, &n_dir);
    CHECK_EQ(n_dir, n_ref);
    for (size_t i = 0; dim && i < n_ref && i < n_dir; i++)
        CHECK_MSG(!memcmp(a[i].v, b[i].v, (size_t)dim * sizeof(float)),
                  "item %s: vector differs from an uninterrupted run", a[i].sha);
    free_shavec(a, n_ref);
    free_shavec(b, n_dir);
    fprintf(stderr,
            "test_crash: pipeline: %zu items; reference ingest %.2fs, embed-all %.2fs, index "
            "%.2fs; SIGKILLed ingest %d, embed-all %d, index %d of %d rounds each\n",
            n_ref, t_ingest, t_embed, t_index, killed[0], killed[1], killed[2], rounds);
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "--burst"))
        return child_burst(argv[2], argv[3], argv[4], strtoull(argv[5], NULL, 10));
    ims_init();
    ims_log_set_level(IMS_LOG_ERROR);
    int rc = fix_init("crash");
    if (rc)
        return rc;
    const char *e = getenv("IMS_CRASH_ROUNDS");
    int rounds = e && atoi(e) > 0 ? atoi(e) : 5;
    e = getenv("IMS_CRASH_SEED");
    g_rng = e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "test_crash: %d rounds, IMS_CRASH_SEED=%llu\n", rounds,
            (unsigned long long)g_rng);
    test_online_crash(rounds);
    test_pipeline_crash(rounds);
    if (!check_failures)
        fix_sh("rm -rf '%s'", fix_tmp);
    else
        fprintf(stderr, "test_crash: files kept in %s\n", fix_tmp);
    return check_report();
}
