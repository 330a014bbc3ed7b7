/* SPDX-License-Identifier: MIT */
/*
 * test_group_commit.c — many writers at once on one collection handle
 * (online.c's group commit): 8 threads each add 50 distinct sample photos
 * (fewer under a sanitizer or IMS_TEST_QUICK=1) and delete every tenth of
 * their own adds a few adds later, so batches mix adds and deletes. Then,
 * on the same handle and again after close + reopen (index.log replay):
 *   - every add answered IMS_OK with its own id: ids distinct, the row
 *     found by that id carries the writer's name and metadata;
 *   - the catalogue holds exactly base + adds - deletes accepted items and
 *     the index as many live ones;
 *   - each kept item's photo, searched, finds that item as self_id and as
 *     a hit of score > 0.999 (its vector is its own photo's, not a
 *     neighbour writer's);
 *   - each deleted item is gone (IMS_ENOTFOUND, in no search result).
 * The stats' write and batch counters are printed (how much batching the
 * scheduler allowed); no figure is asserted.
 */
#include <pthread.h>

#include "check.h"
#include "coll_fixture.h"
#include "core/core_int.h"
#include "imgsim/collection.h"
#include "imgsim/imgsim.h"

#define MAX_THREADS 8
#define MAX_PER 50

typedef struct photo {
    void *bytes;
    size_t len;
} photo;

typedef struct writer {
    ims_coll *c;
    int t, n;             /* thread number, adds to make */
    const photo *ph;      /* its n photos */
    int64_t id[MAX_PER];  /* OUT: the item of each add */
    int rc[MAX_PER];      /* OUT: each add's answer */
    int deleted[MAX_PER]; /* OUT: 1 if deleted (answered IMS_OK) */
    int del_rc[MAX_PER];  /* OUT: each delete's answer */
    char msg[256];        /* OUT: the first failure's message */
} writer;

static const char *k_base[] = {"Fruits"};
static int g_base_n = 8;

/* Each add, and after every tenth the delete of the add five before. */
static void *write_main(void *arg)
{
    writer *w = arg;
    for (int i = 0; i < w->n; i++) {
        char name[32], meta[64];
        snprintf(name, sizeof name, "t%d-i%d", w->t, i);
        snprintf(meta, sizeof meta, "{\"t\":%d,\"i\":%d}", w->t, i);
        ims_error err;
        w->rc[i] =
            ims_coll_add(w->c, w->ph[i].bytes, w->ph[i].len, "Pool", name, meta, &w->id[i], &err);
        if (w->rc[i] && !w->msg[0])
            snprintf(w->msg, sizeof w->msg, "add %s: %.200s", name, err.msg);
        if (i % 10 == 9 && !w->rc[i - 5]) {
            w->del_rc[i - 5] = ims_coll_delete(w->c, w->id[i - 5], &err);
            w->deleted[i - 5] = w->del_rc[i - 5] == IMS_OK;
            if (w->del_rc[i - 5] && !w->msg[0])
                snprintf(w->msg, sizeof w->msg, "delete %lld: %.200s", (long long)w->id[i - 5],
                         err.msg);
        }
    }
    return NULL;
}

/* Distinct photos (by SHA-256) of every group but the base's first g_base_n
 * Fruits, at most max; returns n. */
static int load_photos(photo *out, int max)
{
    char(*seen)[65] = calloc(2048, sizeof *seen);
    int n_seen = 0, n = 0;
    DIR *d = opendir(fix_food);
    struct dirent *e;
    char *groups[128];
    int n_groups = 0;
    while (d && (e = readdir(d)) && n_groups < 128) {
        char p[1024];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", fix_food, e->d_name);
        if (e->d_name[0] != '.' && !stat(p, &st) && S_ISDIR(st.st_mode))
            groups[n_groups++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    qsort(groups, (size_t)n_groups, sizeof *groups, fix_cmp_str);
    /* the base photos first, so that none of them is added */
    for (int pass = 0; pass < 2; pass++) {
        for (int g = 0; g < n_groups; g++) {
            int base = !strcmp(groups[g], k_base[0]);
            if (pass == 0 && !base)
                continue;
            char *p[1024];
            int m = fix_group_photos(groups[g], p, 1024);
            for (int i = 0; i < m; i++) {
                int want = pass == 0 ? i < g_base_n : !(base && i < g_base_n);
                size_t len = 0;
                void *b = want && n < max && n_seen < 2048 ? fix_read(p[i], &len) : NULL;
                char hex[65] = "";
                int dup = !b;
                if (b)
                    ims__sha256_hex(b, len, hex);
                for (int j = 0; j < n_seen && !dup; j++)
                    dup = !strcmp(seen[j], hex);
                if (!dup)
                    memcpy(seen[n_seen++], hex, sizeof hex);
                if (!dup && pass == 1) {
                    out[n].bytes = b;
                    out[n++].len = len;
                    b = NULL;
                }
                free(b);
                free(p[i]);
            }
        }
    }
    for (int g = 0; g < n_groups; g++)
        free(groups[g]);
    free(seen);
    return n;
}

/* Everything the writers were answered holds on handle c. */
static void check_all(ims_coll *c, writer *w, int n_threads, const char *when)
{
    int64_t want = g_base_n, ids[MAX_THREADS * MAX_PER];
    int n_ids = 0;
    for (int t = 0; t < n_threads; t++)
        for (int i = 0; i < w[t].n; i++)
            if (!w[t].rc[i]) {
                ids[n_ids++] = w[t].id[i];
                want += !w[t].deleted[i];
            }
    for (int a = 0; a < n_ids; a++)
        for (int b = a + 1; b < n_ids; b++)
            CHECK_MSG(ids[a] != ids[b], "%s: item %lld answered to two adds", when,
                      (long long)ids[a]);
    ims_coll_stats st;
    ims_coll_get_stats(c, &st);
    CHECK_MSG(st.indexed == want, "%s: %lld indexed, want %lld", when, (long long)st.indexed,
              (long long)want);
    int64_t *acc = NULL;
    size_t n_acc = 0;
    ims_catalog *cat;
    ims_error err;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/c", fix_tmp);
    if (!ims_catalog_open(dir, IMS_CATALOG_READONLY, &cat, &err)) {
        CHECK_RC(ims_catalog_accepted_ids(cat, &acc, &n_acc, &err), IMS_OK);
        ims_catalog_close(cat);
    }
    CHECK_MSG((int64_t)n_acc == want, "%s: %zu accepted, want %lld", when, n_acc, (long long)want);
    ims_free(acc);
    int bad_row = 0, bad_find = 0, bad_gone = 0;
    for (int t = 0; t < n_threads; t++) {
        for (int i = 0; i < w[t].n; i++) {
            if (w[t].rc[i])
                continue;
            int64_t id = w[t].id[i];
            ims_item it;
            int rc = ims_coll_get(c, id, &it, &err);
            char name[32], meta[64];
            snprintf(name, sizeof name, "t%d-i%d", t, i);
            snprintf(meta, sizeof meta, "{\"t\":%d,\"i\":%d}", t, i);
            ims_coll_hit *h = NULL;
            size_t n_h = 0;
            int64_t self = -1;
            int src = ims_coll_search_image(c, w[t].ph[i].bytes, w[t].ph[i].len, 5, NULL, &h, &n_h,
                                            &self, &err);
            int in_hits = 0;
            for (size_t k = 0; !src && k < n_h; k++)
                in_hits |= h[k].item.id == id && h[k].score > 0.999f;
            ims_coll_hits_free(h, n_h);
            if (w[t].deleted[i]) {
                bad_gone += rc != IMS_ENOTFOUND || src || self == id || in_hits;
            } else {
                int same = !rc && !strcmp(it.name, name) && !strcmp(it.metadata, meta) &&
                           !strcmp(it.category, "Pool");
                bad_row += !same;
                bad_find += src || self != id || !in_hits;
                if (!same && bad_row <= 3)
                    fprintf(stderr, "%s: item %lld: rc %d name '%s' metadata '%s', want %s %s\n",
                            when, (long long)id, rc, rc ? "" : it.name, rc ? "" : it.metadata, name,
                            meta);
            }
            if (!rc)
                ims_item_clear(&it);
        }
    }
    CHECK_MSG(bad_row == 0, "%s: %d items not found by their id with their own row", when, bad_row);
    CHECK_MSG(bad_find == 0, "%s: %d items not found first by their own photo", when, bad_find);
    CHECK_MSG(bad_gone == 0, "%s: %d deleted items still there", when, bad_gone);
}

int main(void)
{
    ims_init();
    ims_log_set_level(IMS_LOG_ERROR);
    int rc = fix_init("group_commit");
    if (rc)
        return rc;
    int quick = FIX_SANITIZED || getenv("IMS_TEST_QUICK");
    int n_threads = quick ? 4 : MAX_THREADS, per = quick ? 20 : MAX_PER;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/c", fix_tmp);
    CHECK_EQ(fix_build("base", "c", k_base, 1, g_base_n), 0);
    static photo ph[MAX_THREADS * MAX_PER];
    int n_ph = load_photos(ph, n_threads * per);
    if (n_ph < n_threads * per) { /* fewer distinct samples than planned: say so, use them */
        fprintf(stderr, "test_group_commit: %d distinct photos, %d per thread\n", n_ph,
                n_ph / n_threads);
        per = n_ph / n_threads;
    }
    CHECK(per >= 10);
    ims_coll_opts o = {0};
    ims_coll *c = NULL;
    ims_error err;
    CHECK_RC(rc = ims_coll_open(dir, &o, &c, &err), IMS_OK);
    if (rc) {
        fprintf(stderr, "open: %s\n", err.msg);
        return check_report();
    }
    static writer w[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < n_threads; t++) {
        w[t] = (writer){.c = c, .t = t, .n = per, .ph = ph + t * per};
        CHECK_EQ(pthread_create(&th[t], NULL, write_main, &w[t]), 0);
    }
    for (int t = 0; t < n_threads; t++)
        pthread_join(th[t], NULL);
    int n_fail = 0, n_del = 0;
    for (int t = 0; t < n_threads; t++) {
        for (int i = 0; i < per; i++) {
            n_fail += w[t].rc[i] != IMS_OK || (i % 10 == 4 && !w[t].deleted[i]);
            n_del += w[t].deleted[i];
        }
        if (w[t].msg[0])
            fprintf(stderr, "thread %d: %s\n", t, w[t].msg);
    }
    CHECK_MSG(n_fail == 0, "%d of %d adds or their deletes failed", n_fail, n_threads * per);
    ims_coll_stats st;
    ims_coll_get_stats(c, &st);
    CHECK_EQ(st.writes, n_threads * per + n_del);
    CHECK(st.write_batches >= 1 && st.write_batches <= st.writes);
    printf("%d threads x %d adds, %d deletes: %lld writes in %lld batches\n", n_threads, per, n_del,
           (long long)st.writes, (long long)st.write_batches);
    check_all(c, w, n_threads, "same handle");
    ims_coll_close(c);
    c = NULL;
    CHECK_RC(rc = ims_coll_open(dir, &o, &c, &err), IMS_OK);
    if (!rc) {
        check_all(c, w, n_threads, "after reopen");
        ims_coll_close(c);
    }
    for (int i = 0; i < n_ph; i++)
        free(ph[i].bytes);
    if (!check_failures)
        fix_sh("rm -rf '%s'", fix_tmp);
    else
        fprintf(stderr, "test_group_commit: files kept in %s\n", fix_tmp);
    return check_report();
}
