/* SPDX-License-Identifier: MIT */
/*
 * test_collection.c — the collection pipeline end to end on real sample
 * photos, a real SQLite catalogue and the real pretrained models, through
 * the imgsim CLI (build, embed-all, index) and the collection API:
 *   - build: duplicates collapsed, every accepted item indexed;
 *   - query by id and by the item's own image agree (the image finds
 *     itself first, reports itself as in the collection);
 *   - category filter returns only that category;
 *   - a backbone change makes every vector stale and embed-all recomputes
 *     them all;
 *   - embed-all killed with SIGKILL mid-run and resumed: every item exactly
 *     once, vectors byte-identical to an uninterrupted run;
 *   - stored images that no longer decode: counted as failed, every other
 *     vector byte-identical to a run without failures;
 *   - adds and deletes through the API are durable across a reopen.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"
#include "core/core_int.h"
#include "imgsim/collection.h"
#include "imgsim/imgsim.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLOW_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLOW_BUILD 1
#endif
#endif
#ifndef SLOW_BUILD
#define SLOW_BUILD 0
#endif

static const char *g_cli, *g_models;
static char g_tmp[200], g_photos[256];

static const char *k_groups[] = {"Fruits", "Marine Fish", "Animal Meat", "Other Vegetables"};
#define PER_GROUP 8

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copy the first PER_GROUP photos (by name) of each group, plus one
 * byte-identical copy, into g_photos. Returns the number of distinct
 * images, or -1 if the sample data is missing. */
static int make_photos(const char *food)
{
    snprintf(g_photos, sizeof g_photos, "%s/photos", g_tmp);
    int distinct = 0;
    for (size_t g = 0; g < IMS_ARRAY_LEN(k_groups); g++) {
        char src[1024];
        snprintf(src, sizeof src, "%s/%s", food, k_groups[g]);
        DIR *d = opendir(src);
        if (!d)
            return -1;
        char *names[256];
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)) && n < 256)
            if (e->d_name[0] != '.')
                names[n++] = strdup(e->d_name);
        closedir(d);
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        if (sh("mkdir -p '%s/%s'", g_photos, k_groups[g]))
            return -1;
        for (int i = 0; i < n; i++) {
            if (i < PER_GROUP && !sh("cp '%s/%s' '%s/%s/'", src, names[i], g_photos, k_groups[g]))
                distinct++;
            free(names[i]);
        }
    }
    /* a duplicate under another name (must be collapsed) */
    sh("cp \"$(ls -d '%s/Fruits'/* | head -1)\" '%s/Fruits/zz-copy.jpeg'", g_photos, g_photos);
    /* the sample set has byte-identical copies of its own: count contents */
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "find '%s' -type f -exec sha256sum {} + | cut -c1-64 | sort -u | wc -l", g_photos);
    FILE *p = popen(cmd, "r");
    if (!p || fscanf(p, "%d", &distinct) != 1)
        distinct = -1;
    if (p)
        pclose(p);
    return distinct;
}

/* The vectors of all accepted items, in id order (n x dim), with stamp. */
static float *all_vectors(const char *coll, const char *stamp, int dim, size_t *n)
{
    ims_catalog *cat;
    ims_error err;
    if (ims_catalog_open(coll, IMS_CATALOG_READONLY, &cat, &err))
        return NULL;
    int64_t *ids = NULL;
    float *v = NULL;
    if (!ims_catalog_accepted_ids(cat, &ids, n, &err)) {
        v = malloc(*n * (size_t)dim * sizeof(float));
        if (v && ims_catalog_get_vectors(cat, "vectors", stamp, *n, ids, v, dim, &err)) {
            fprintf(stderr, "all_vectors: %s\n", err.msg);
            free(v);
            v = NULL;
        }
    }
    ims_free(ids);
    ims_catalog_close(cat);
    return v;
}

/* Run `imgsim embed-all --json` and parse done / stale_dropped / stamp. */
static int embed_all(const char *coll, long *done, long *stale, char stamp[65])
{
    char out[600];
    snprintf(out, sizeof out, "%s/embed.json", g_tmp);
    int rc = sh("'%s' embed-all -c '%s' --json > '%s'", g_cli, coll, out);
    FILE *f = fopen(out, "r");
    char line[1024] = "";
    if (f) {
        if (!fgets(line, sizeof line, f))
            line[0] = 0;
        fclose(f);
    }
    char *p;
    if ((p = strstr(line, "\"done\":")))
        *done = strtol(p + 7, NULL, 10);
    if ((p = strstr(line, "\"stale_dropped\":")))
        *stale = strtol(p + 16, NULL, 10);
    if ((p = strstr(line, "\"stamp\":\"")))
        snprintf(stamp, 65, "%.64s", p + 9);
    return rc;
}

static void test_build_and_query(int distinct)
{
    char coll[600];
    snprintf(coll, sizeof coll, "%s/c1", g_tmp);
    CHECK_EQ(
        sh("'%s' build -c '%s' '%s' --model '%s/mobilenet_v2.ism' --no-finetune 2>'%s/build.log'",
           g_cli, coll, g_photos, g_models, g_tmp),
        0);
    ims_coll *c = NULL;
    ims_error err = {0};
    ims_coll_opts o = {.sessions = 2};
    int rc = ims_coll_open(coll, &o, &c, &err);
    CHECK_MSG(rc == IMS_OK, "open: %s", err.msg);
    if (rc)
        return;
    ims_coll_stats st;
    ims_coll_get_stats(c, &st);
    CHECK_EQ(st.indexed, distinct);
    CHECK_EQ(st.index_mapped, 1); /* the API's default: mapped */
    CHECK(st.index_bytes > 0);
    size_t n_fish = 0;
    {
        ims_catalog *cat;
        int64_t *fish = NULL;
        if (!ims_catalog_open(coll, IMS_CATALOG_READONLY, &cat, &err)) {
            ims_catalog_ids_in_category(cat, "Marine Fish", &fish, &n_fish, &err);
            ims_catalog_close(cat);
        }
        ims_free(fish);
        CHECK(n_fish >= 4);
    }

    for (int64_t id = 1; id <= 5; id++) {
        ims_coll_hit *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        int64_t self = -1;
        ims_item it;
        if (ims_coll_get(c, id, &it, &err))
            continue; /* a duplicate row */
        void *bytes;
        size_t len;
        char fmt[8];
        CHECK_EQ(ims_coll_image(c, id, &bytes, &len, fmt, &err), IMS_OK);
        CHECK_STR_EQ(fmt, "jpeg");
        CHECK_EQ(ims_coll_similar(c, id, 5, NULL, &a, &na, &err), IMS_OK);
        CHECK_EQ(ims_coll_search_image(c, bytes, len, 6, NULL, &b, &nb, &self, &err), IMS_OK);
        CHECK_EQ(self, id);
        CHECK_EQ(na, 5);
        CHECK_EQ(nb, 6);
        if (nb == 6 && na == 5) {
            CHECK_EQ(b[0].item.id, id);
            CHECK_MSG(b[0].score > 0.999f, "own image scores %f", b[0].score);
            for (int i = 0; i < 5; i++) {
                CHECK_EQ(a[i].item.id, b[i + 1].item.id);
                CHECK_NEAR(a[i].score, b[i + 1].score, 1e-3);
            }
        }
        /* the category filter keeps only that category, inside the search */
        ims_coll_hit *f = NULL;
        size_t nf = 0;
        CHECK_EQ(ims_coll_similar(c, id, 20, "Marine Fish", &f, &nf, &err), IMS_OK);
        CHECK_EQ(nf, strcmp(it.category, "Marine Fish") ? n_fish : n_fish - 1);
        for (size_t i = 0; i < nf; i++)
            CHECK_STR_EQ(f[i].item.category, "Marine Fish");
        ims_coll_hits_free(f, nf);
        ims_coll_hits_free(a, na);
        ims_coll_hits_free(b, nb);
        ims_item_clear(&it);
        ims_free(bytes);
    }
    /* bad input: clear errors, nothing changes */
    ims_coll_hit *h = NULL;
    size_t nh = 0;
    CHECK(ims_coll_search_image(c, "not an image", 12, 5, NULL, &h, &nh, NULL, &err) != IMS_OK);
    CHECK_EQ(ims_coll_similar(c, 1, 0, NULL, &h, &nh, &err), IMS_EINVAL);
    CHECK_EQ(ims_coll_similar(c, 999999, 5, NULL, &h, &nh, &err), IMS_ENOTFOUND);

    /* add + delete, durable across a reopen */
    void *img = NULL;
    size_t len = 0;
    {
        char one[800];
        snprintf(one, sizeof one, "%s/add.jpeg", g_tmp);
        FILE *fp = fopen(one, "rb");
        img = malloc(1 << 20);
        len = fp && img ? fread(img, 1, 1 << 20, fp) : 0;
        if (fp)
            fclose(fp);
    }
    CHECK(len > 0);
    int64_t new_id = 0, dup_id = 0, del_id = 0;
    {
        ims_coll_hit *any = NULL;
        size_t na = 0;
        CHECK_EQ(ims_coll_search_image(c, img, len, 1, NULL, &any, &na, NULL, &err), IMS_OK);
        del_id = na ? any[0].item.id : 1;
        ims_coll_hits_free(any, na);
    }
    CHECK_EQ(ims_coll_add(c, img, len, "Poultry", "a new photo", "{\"sku\":\"X1\"}", &new_id, &err),
             IMS_OK);
    CHECK(new_id > 0);
    CHECK_EQ(ims_coll_add(c, img, len, NULL, "again", NULL, &dup_id, &err), IMS_EEXIST);
    CHECK_EQ(dup_id, new_id);
    CHECK_EQ(ims_coll_add(c, img, len, NULL, NULL, "[1,2]", &dup_id, &err), IMS_EINVAL);
    CHECK_EQ(ims_coll_delete(c, del_id, &err), IMS_OK);
    CHECK_EQ(ims_coll_delete(c, del_id, &err), IMS_ENOTFOUND);
    for (int round = 0; round < 2; round++) {
        ims_coll_hit *r = NULL;
        size_t nr = 0;
        int64_t self = 0;
        CHECK_EQ(ims_coll_search_image(c, img, len, distinct, NULL, &r, &nr, &self, &err), IMS_OK);
        CHECK_EQ(self, new_id);
        CHECK(nr > 0 && r[0].item.id == new_id);
        if (nr > 0) {
            CHECK_STR_EQ(r[0].item.category, "Poultry");
            CHECK(strstr(r[0].item.metadata, "X1") != NULL);
        }
        for (size_t i = 0; i < nr; i++)
            CHECK(r[i].item.id != del_id);
        CHECK_EQ(ims_coll_get(c, del_id, &(ims_item){0}, &err), IMS_ENOTFOUND);
        ims_coll_hits_free(r, nr);
        ims_coll_get_stats(c, &st);
        CHECK_EQ(st.indexed, distinct);
        ims_coll_close(c);
        c = NULL;
        if (round == 0) { /* reopen as the server does (index read into memory): replays
                             index.log into the loaded index */
            o.load_index = 1;
            rc = ims_coll_open(coll, &o, &c, &err);
            CHECK_MSG(rc == IMS_OK, "reopen: %s", err.msg);
            if (rc)
                break;
            ims_coll_get_stats(c, &st);
            CHECK_EQ(st.index_mapped, 0);
        }
    }
    free(img);
}

static void test_stale_and_resume(int distinct)
{
    char c2[600], c3[600];
    snprintf(c2, sizeof c2, "%s/c2", g_tmp);
    snprintf(c3, sizeof c3, "%s/c3", g_tmp);
    const char *slow = SLOW_BUILD ? "mobilenet_v2" : "inception_v3";
    /* c2: ingest + a first encoder, then a backbone change */
    CHECK_EQ(sh("'%s' build -c '%s' '%s' --model '%s/mobilenet_v2.ism' --taps block_10_project_BN"
                " --no-finetune 2>/dev/null",
                g_cli, c2, g_photos, g_models),
             0);
    ims_error err;
    char model[600];
    snprintf(model, sizeof model, "%s/%s.ism", g_models, slow);
    CHECK_EQ(ims_coll_set_backbone(c2, model, NULL, &err), IMS_OK);
    /* embed-all killed mid-run */
    pid_t pid = fork();
    if (pid == 0) {
        execl(g_cli, g_cli, "embed-all", "-c", c2, "--batch", "2", (char *)NULL);
        _exit(127);
    }
    /* wait until some but not all vectors are written, then SIGKILL */
    char want[65] = "";
    CHECK_EQ(ims_coll_encoder_stamp(c2, want, &err), IMS_OK);
    int killed = 0;
    for (int i = 0; i < 30000 && !killed; i++) {
        usleep(2000);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            break;
        ims_catalog *cat;
        if (ims_catalog_open(c2, IMS_CATALOG_READONLY, &cat, &err))
            continue;
        int64_t *ids = NULL;
        size_t n_missing = (size_t)distinct;
        ims_catalog_missing_vectors(cat, "vectors", want, &ids, &n_missing, &err);
        ims_free(ids);
        ims_catalog_close(cat);
        if (n_missing < (size_t)distinct) { /* a batch is committed: kill now */
            kill(pid, SIGKILL);
            killed = 1;
            waitpid(pid, &st, 0);
        }
    }
    CHECK_MSG(killed, "embed-all finished before it could be killed");
    long done = -1, stale = -1;
    char stamp[65] = "";
    CHECK_EQ(embed_all(c2, &done, &stale, stamp), 0);
    CHECK_MSG(done > 0 && done < distinct, "resumed run did %ld of %d", done, distinct);
    /* the killed run's stale vectors were dropped at its start */
    CHECK_EQ(stale, 0);

    /* c3: uninterrupted run of the same encoder */
    CHECK_EQ(sh("'%s' build -c '%s' '%s' --model '%s' --no-finetune 2>/dev/null", g_cli, c3,
                g_photos, model),
             0);
    int dim = 0;
    {
        ims_coll *c;
        ims_coll_opts o = {.sessions = 1, .readonly = 1};
        if (ims_coll_build_index(c2, NULL, &(ims_coll_index_summary){0}, &err) == IMS_OK &&
            ims_coll_open(c2, &o, &c, &err) == IMS_OK) {
            ims_coll_stats st;
            ims_coll_get_stats(c, &st);
            dim = st.dim;
            CHECK_EQ(st.indexed, distinct);
            ims_coll_close(c);
        } else {
            CHECK_MSG(0, "c2: %s", err.msg);
        }
    }
    size_t n2 = 0, n3 = 0;
    float *v2 = dim ? all_vectors(c2, stamp, dim, &n2) : NULL;
    float *v3 = dim ? all_vectors(c3, stamp, dim, &n3) : NULL;
    CHECK(v2 && v3);
    CHECK_EQ(n2, distinct);
    CHECK_EQ(n3, distinct);
    if (v2 && v3 && n2 == n3)
        CHECK_MSG(!memcmp(v2, v3, n2 * (size_t)dim * sizeof(float)),
                  "resumed vectors differ from an uninterrupted run");
    free(v2);
    free(v3);

    /* taps change -> all stale, all recomputed */
    snprintf(model, sizeof model, "%s/mobilenet_v2.ism", g_models);
    CHECK_EQ(ims_coll_set_backbone(c3, model, "block_10_project_BN", &err), IMS_OK);
    done = stale = -1;
    CHECK_EQ(embed_all(c3, &done, &stale, stamp), 0);
    CHECK_EQ(done, distinct);
    CHECK_EQ(stale, distinct);
    done = stale = -1;
    CHECK_EQ(embed_all(c3, &done, &stale, stamp), 0); /* nothing left */
    CHECK_EQ(done, 0);
    /* an index built for another encoder is refused until rebuilt */
    ims_coll *c = NULL;
    CHECK_EQ(ims_coll_open(c3, NULL, &c, &err), IMS_ESTATE);
    CHECK_EQ(ims_coll_build_index(c3, NULL, &(ims_coll_index_summary){0}, &err), IMS_OK);
    CHECK_EQ(ims_coll_open(c3, NULL, &c, &err), IMS_OK);
    ims_coll_close(c);
}

/* Stored images that can no longer be decoded: embed-all counts them as
 * failed and writes every other vector, byte-identical to a run without
 * failures although the batches are made up differently (batches of 4 on 2
 * threads: the failures fall in the first, a middle and the last batch). */
static void test_failed_decodes(int distinct)
{
    char c4[600];
    snprintf(c4, sizeof c4, "%s/c4", g_tmp);
    CHECK_EQ(sh("'%s' build -c '%s' '%s' --model '%s/mobilenet_v2.ism' --taps block_10_project_BN"
                " --no-finetune 2>/dev/null",
                g_cli, c4, g_photos, g_models),
             0);
    ims_error err;
    char stamp[65] = "";
    CHECK_EQ(ims_coll_encoder_stamp(c4, stamp, &err), IMS_OK);
    ims_catalog *cat = NULL;
    CHECK_EQ(ims_catalog_open(c4, 0, &cat, &err), IMS_OK);
    if (!cat)
        return;
    int64_t *ids = NULL;
    size_t n = 0;
    CHECK_EQ(ims_catalog_accepted_ids(cat, &ids, &n, &err), IMS_OK);
    CHECK_EQ(n, (size_t)distinct);
    int dim = 0;
    ims_coll *c = NULL;
    ims_coll_opts co = {.sessions = 1, .readonly = 1};
    CHECK_EQ(ims_coll_open(c4, &co, &c, &err), IMS_OK);
    if (c) {
        ims_coll_stats st;
        ims_coll_get_stats(c, &st);
        dim = st.dim;
        ims_coll_close(c);
    }
    CHECK(dim > 0);
    float *ref = dim ? malloc(n * (size_t)dim * sizeof(float)) : NULL;
    CHECK(ref && !ims_catalog_get_vectors(cat, "vectors", stamp, n, ids, ref, dim, &err));
    /* break items 0, n/2 and n-1; drop every vector */
    size_t bad[3] = {0, n / 2, n - 1};
    for (int k = 0; k < 3; k++) {
        char *path = NULL;
        CHECK_EQ(ims_catalog_image_path(cat, ids[bad[k]], &path, &err), IMS_OK);
        /* a new file: the stored one may be a hard link to the photo */
        FILE *f = path && !unlink(path) ? fopen(path, "wb") : NULL;
        CHECK(f != NULL);
        if (f) {
            fputs("not an image any more", f);
            fclose(f);
        }
        ims_free(path);
    }
    CHECK_EQ(ims_catalog_drop_stale(cat, "vectors", "none", NULL, &err), IMS_OK);
    ims_catalog_close(cat);
    ims_pipe_opts o = {.threads = 2, .batch = 4};
    ims_embed_summary sum;
    CHECK_EQ(ims_coll_embed_all(c4, &o, &sum, &err), IMS_OK);
    CHECK_EQ(sum.failed, 3);
    CHECK_EQ(sum.done, distinct - 3);
    CHECK_EQ(ims_catalog_open(c4, IMS_CATALOG_READONLY, &cat, &err), IMS_OK);
    float *v = dim ? malloc((size_t)dim * sizeof(float)) : NULL;
    for (size_t i = 0; cat && v && ref && i < n; i++) {
        int broken = i == bad[0] || i == bad[1] || i == bad[2];
        int rc = ims_catalog_get_vectors(cat, "vectors", stamp, 1, ids + i, v, dim, &err);
        if (broken)
            CHECK_MSG(rc != IMS_OK, "item %zu: a vector for an undecodable image", i);
        else
            CHECK_MSG(rc == IMS_OK &&
                          !memcmp(v, ref + i * (size_t)dim, (size_t)dim * sizeof(float)),
                      "item %zu: vector differs from the run without failures", i);
    }
    ims_catalog_close(cat);
    free(v);
    free(ref);
    ims_free(ids);
}

static int same_bytes(const char *a, const char *b) { return !sh("cmp -s '%s' '%s'", a, b); }

/* Fine-tune twice from scratch with one seed: byte-identical encoder.ism
 * and head.bin; a third time with another seed differs (another split:
 * head.bin records its validation accuracy; with the whitened raw part's
 * fixed w, the encoder differs only if another LDA shrinkage wins, which
 * on 25 photos it need not); a fourth with --no-whiten gives another
 * encoder, and eval follows it. The encoder is a model file like any other
 * (imgsim embed reads it), embed-all takes every vector from the cached
 * features, and eval reports all three encoders. */
static void test_finetune(int distinct)
{
    char c[4][300], f[4][1400], h[4][1400];
    const char *seeds[4] = {"7", "7", "8", "7"}, *flags[4] = {"", "", "", "--no-whiten"};
    for (int i = 0; i < 4; i++) {
        snprintf(c[i], sizeof c[i], "%s/ft%d", g_tmp, i);
        snprintf(f[i], sizeof f[i], "%s/encoder.ism", c[i]);
        snprintf(h[i], sizeof h[i], "%s/head.bin", c[i]);
        CHECK_EQ(sh("'%s' build -c '%s' '%s' --model '%s/mobilenet_v2.ism' --seed %s %s "
                    "> '%s/ft%d.log' 2>&1",
                    g_cli, c[i], g_photos, g_models, seeds[i], flags[i], g_tmp, i),
                 0);
    }
    CHECK_MSG(same_bytes(f[0], f[1]), "same seed, different encoder.ism");
    CHECK_MSG(same_bytes(h[0], h[1]), "same seed, different head.bin");
    CHECK_MSG(!same_bytes(h[0], h[2]), "another seed, same head.bin");
    CHECK_MSG(!same_bytes(f[0], f[3]), "--no-whiten, same encoder.ism");
    CHECK_EQ(sh("grep -q 'raw part whitened' '%s/ft0.log' && "
                "grep -q 'raw part not whitened' '%s/ft3.log'",
                g_tmp, g_tmp),
             0);
    char log[800];
    snprintf(log, sizeof log, "%s/ft0.log", g_tmp);
    CHECK_MSG(
        !sh("grep -q '%d vectors written (%d from cached features)' '%s'", distinct, distinct, log),
        "embed-all after finetune did not use the cached features (see %s)", log);
    /* the encoder is an ordinary model file */
    char out[800];
    snprintf(out, sizeof out, "%s/embed.json", g_tmp);
    CHECK_EQ(sh("'%s' embed --model '%s' --classify --json \"$(ls -d '%s/Fruits'/* | head -1)\" "
                "> '%s'",
                g_cli, f[0], g_photos, out),
             0);
    CHECK_EQ(sh("grep -q '\"probs\"' '%s'", out), 0);
    /* re-running the build does no training and no encoding */
    CHECK_EQ(sh("'%s' build -c '%s' '%s' --model '%s/mobilenet_v2.ism' --seed 7 > '%s' 2>&1", g_cli,
                c[0], g_photos, g_models, out),
             0);
    CHECK_EQ(sh("grep -q 'encoder up to date' '%s' && grep -q '0 vectors written' '%s' && "
                "grep -q 'index: up to date' '%s'",
                out, out, out),
             0);
    /* eval: the JSON keys of DESIGN.md */
    CHECK_EQ(sh("'%s' eval -c '%s' --json > '%s' 2>/dev/null", g_cli, c[0], out), 0);
    const char *keys[] = {
        "\"k\":10",          "\"finetuned\":{", "\"backbone\":{",     "\"seed\":{",
        "\"p@10\":",         "\"map@10\":",     "\"instance_r@10\":", "\"classifier_accuracy\":",
        "\"ann_recall@10\":"};
    for (size_t i = 0; i < IMS_ARRAY_LEN(keys); i++)
        CHECK_MSG(!sh("grep -qF '%s' '%s'", keys[i], out), "eval --json lacks %s", keys[i]);
    /* eval trains its held-out head as the fine-tune did: with --no-whiten
     * the finetuned row changes, the backbone row does not */
    char out3[800];
    snprintf(out3, sizeof out3, "%s/eval3.json", g_tmp);
    CHECK_EQ(sh("'%s' eval -c '%s' --json > '%s' 2>/dev/null", g_cli, c[3], out3), 0);
    const char *rows[2] = {"finetuned", "backbone"};
    for (int r = 0; r < 2; r++) {
        int same = !sh("grep -o '\"%s\":{[^}]*}' '%s' > '%s.row' && "
                       "grep -o '\"%s\":{[^}]*}' '%s' > '%s.row' && cmp -s '%s.row' '%s.row'",
                       rows[r], out, out, rows[r], out3, out3, out, out3);
        CHECK_MSG(same == (r == 1), "eval's %s row: %s with --no-whiten", rows[r],
                  same ? "the same" : "another");
    }
}

int main(void)
{
    ims_init();
    const char *src = getenv("IMS_SOURCE_DIR"), *data = getenv("IMS_DATA_DIR");
    g_cli = getenv("IMS_CLI");
    g_models = getenv("IMS_MODELS_DIR");
    char food[512], m[600];
    snprintf(food, sizeof food, "%s/food", data ? data : "data");
    snprintf(m, sizeof m, "%s/mobilenet_v2.ism", g_models ? g_models : "models");
    (void)src;
    if (!g_cli || access(m, R_OK) || access(food, R_OK)) {
        fprintf(stderr, "test_collection: models or sample photos missing\n");
        return getenv("IMS_REQUIRE_ASSETS") ? 1 : 77;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/ims-coll-XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    int distinct = make_photos(food);
    CHECK(distinct > 16 && distinct <= (int)IMS_ARRAY_LEN(k_groups) * PER_GROUP);
    sh("cp \"$(ls -d '%s/Poultry'/* | head -1)\" '%s/add.jpeg'", food, g_tmp);
    if (distinct > 0) {
        test_build_and_query(distinct);
        test_stale_and_resume(distinct);
        test_failed_decodes(distinct);
        test_finetune(distinct);
    }
    if (!check_failures)
        sh("rm -rf '%s'", g_tmp);
    else
        fprintf(stderr, "test_collection: files kept in %s\n", g_tmp);
    return check_report();
}
