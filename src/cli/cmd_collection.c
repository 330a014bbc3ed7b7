/* SPDX-License-Identifier: MIT */
/*
 * cmd_collection.c — the collection pipeline commands:
 *   imgsim finetune  -c COLL [--model M.ism] [--taps A,B] [--dim 256] [--epochs N] [--seed S]
 *                    [--no-whiten] [--no-finetune]
 *   imgsim embed-all -c COLL [--batch N] [--threads N] [--json]
 *   imgsim index     -c COLL [--metric cosine|l2|ip] [--M 16] [--ef-construction 200]
 *                    [--storage int8|f16|f32] [--no-float]   (via cmd_index.c)
 *   imgsim build     -c COLL DIR [--model M.ism] [--metadata CSV ...] [finetune options]
 *   imgsim query     -c COLL (IMAGE... | --id ID) [-k 10] [--category C] [--json]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli_int.h"
#include "imgsim/collection.h"
#include "imgsim/index.h"

/* Options shared by the pipeline commands; each command accepts a subset. */
typedef struct pipe_args {
    const char *coll, *dir, *model, *taps, *metadata, *id_col, *file_col, *category;
    long dim, epochs, seed, batch, threads, k, M, efc, id;
    int json, no_finetune, no_whiten, metric, storage, no_float, set;
    const char **images;
    int n_images;
} pipe_args;

enum {
    A_COLL = 1,
    A_DIR = 2,
    A_TRAIN = 4,
    A_ENCODE = 8,
    A_INDEX = 16,
    A_QUERY = 32,
    A_INGEST = 64,
    A_JSON = 128
};

static const char *value(int argc, char **argv, int *i)
{
    return *i + 1 < argc ? argv[++*i] : NULL;
}

/* Parse argv for a command that accepts the option groups in `allow`.
 * Returns -1 when parsed, else an exit code (usage error). */
static int parse(const char *cmd, int argc, char **argv, int allow, pipe_args *a)
{
    memset(a, 0, sizeof *a);
    a->k = 10;
    a->images = calloc((size_t)argc, sizeof *a->images);
    if (!a->images)
        return cli_fail("out of memory");
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = NULL;
        long lo = 1, hi = 1L << 30, *num = NULL;
        int group = 0;
        if (!strcmp(o, "-c") || !strcmp(o, "--collection"))
            group = A_COLL, v = value(argc, argv, &i), a->coll = v;
        else if (!strcmp(o, "--model"))
            group = A_TRAIN, v = value(argc, argv, &i), a->model = v;
        else if (!strcmp(o, "--taps"))
            group = A_TRAIN, v = value(argc, argv, &i), a->taps = v;
        else if (!strcmp(o, "--dim"))
            group = A_TRAIN, num = &a->dim, hi = 4096;
        else if (!strcmp(o, "--epochs"))
            group = A_TRAIN, num = &a->epochs, hi = 100000;
        else if (!strcmp(o, "--seed"))
            group = A_TRAIN, num = &a->seed, lo = 0, hi = 0x7fffffffL;
        else if (!strcmp(o, "--no-finetune"))
            group = A_TRAIN, a->no_finetune = 1, v = o;
        else if (!strcmp(o, "--no-whiten"))
            group = A_TRAIN, a->no_whiten = 1, v = o;
        else if (!strcmp(o, "--batch"))
            group = A_ENCODE, num = &a->batch, hi = 1024;
        else if (!strcmp(o, "--threads"))
            group = A_ENCODE, num = &a->threads, lo = 0, hi = 1024;
        else if (!strcmp(o, "--metric")) {
            group = A_INDEX, v = value(argc, argv, &i);
            if (v && (a->metric = ims_metric_from_name(v)) < 0)
                return cli_usage("%s: --metric must be cosine, l2 or ip, not '%s'", cmd, v);
            a->set |= 1;
        } else if (!strcmp(o, "--storage")) {
            group = A_INDEX, v = value(argc, argv, &i);
            if (v && (a->storage = ims_storage_from_name(v)) < 0)
                return cli_usage("%s: --storage must be int8, f16 or f32, not '%s'", cmd, v);
            a->set |= 2;
        } else if (!strcmp(o, "--no-float"))
            group = A_INDEX, a->no_float = 1, a->set |= 4, v = o;
        else if (!strcmp(o, "--M"))
            group = A_INDEX, num = &a->M, lo = 2, hi = 128;
        else if (!strcmp(o, "--ef-construction"))
            group = A_INDEX, num = &a->efc, hi = 100000;
        else if (!strcmp(o, "-k"))
            group = A_QUERY, num = &a->k, hi = 1000;
        else if (!strcmp(o, "--id"))
            group = A_QUERY, num = &a->id, hi = 0x7fffffffffffffffL;
        else if (!strcmp(o, "--category"))
            group = A_QUERY, v = value(argc, argv, &i), a->category = v;
        else if (!strcmp(o, "--metadata"))
            group = A_INGEST, v = value(argc, argv, &i), a->metadata = v;
        else if (!strcmp(o, "--id-column"))
            group = A_INGEST, v = value(argc, argv, &i), a->id_col = v;
        else if (!strcmp(o, "--file-column"))
            group = A_INGEST, v = value(argc, argv, &i), a->file_col = v;
        else if (!strcmp(o, "--json"))
            group = A_JSON, a->json = 1, v = o;
        else if (o[0] == '-' && o[1])
            return cli_usage("%s: unknown option %s", cmd, o);
        else if (allow & A_DIR && !a->dir)
            group = A_DIR, a->dir = o, v = o;
        else if (allow & A_QUERY)
            group = A_QUERY, a->images[a->n_images++] = o, v = o;
        else
            return cli_usage("%s: unexpected argument '%s'", cmd, o);
        if (!(allow & group))
            return cli_usage("%s: option %s does not apply here", cmd, o);
        if (num) {
            const char *s = value(argc, argv, &i);
            if (!s || cli_parse_long(s, lo, hi, num))
                return cli_usage("%s: %s must be a number in %ld..%ld, not '%s'", cmd, o, lo, hi,
                                 s ? s : "(missing)");
            if (num == &a->id)
                a->set |= 8;
            continue;
        }
        if (!v)
            return cli_usage("%s: %s needs a value", cmd, o);
    }
    if (!a->coll && !(a->coll = getenv("IMGSIM_COLLECTION")))
        return cli_usage("%s: -c COLLECTION missing", cmd);
    if ((allow & A_DIR) && !a->dir)
        return cli_usage("%s: DIR missing", cmd);
    return -1;
}

/* ---- finetune ------------------------------------------------------------------ */

static int run_finetune(const pipe_args *a)
{
    ims_error err = {0};
    int rc;
    if (a->no_finetune) {
        const char *model = a->model;
        if (!model) {
            char *bb = malloc(strlen(a->coll) + 16);
            if (!bb)
                return cli_fail("out of memory");
            sprintf(bb, "%s/backbone.ism", a->coll);
            rc = access(bb, R_OK) ? cli_usage("finetune: --model MODEL.ism missing") : 0;
            if (!rc)
                rc = ims_coll_set_backbone(a->coll, bb, a->taps, &err) ? cli_fail_err(-1, &err) : 0;
            free(bb);
            return rc;
        }
        rc = ims_coll_set_backbone(a->coll, model, a->taps, &err);
        if (rc)
            return cli_fail_err(rc, &err);
        fprintf(stderr, "finetune: raw backbone taps (--no-finetune)\n");
        return CLI_OK;
    }
    ims_finetune_opts o = {.model = a->model,
                           .taps = a->taps,
                           .dim = (int)a->dim,
                           .epochs = (int)a->epochs,
                           .seed = (uint64_t)a->seed,
                           .threads = (int)a->threads,
                           .batch = (int)a->batch,
                           .progress = 1,
                           .no_whiten = a->no_whiten};
    ims_finetune_summary s;
    rc = ims_coll_finetune(a->coll, &o, &s, &err);
    if (rc)
        return cli_fail_err(rc, &err);
    if (s.trained <= 0)
        fprintf(stderr, "finetune: %s\n", s.message);
    else
        fprintf(stderr,
                "finetune: %s on %lld items, %d categories; validation accuracy %.3f; "
                "%.1f s (%lld backbone passes)\n",
                s.message, (long long)s.items, s.n_classes, s.val_accuracy, s.seconds,
                (long long)s.features_computed);
    return CLI_OK;
}

int cmd_finetune(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: imgsim finetune -c COLLECTION [--model MODEL.ism] [--taps A,B,...]\n"
               "                       [--dim 256] [--epochs N] [--seed S] [--no-whiten]\n"
               "                       [--no-finetune]\n\n"
               "Cache the backbone's tap features of every accepted item, train the feature\n"
               "layer and the classifier on the categories, and write COLLECTION/encoder.ism.\n"
               "--no-finetune keeps the raw backbone taps (no training).\n"
               "  --no-whiten   keep the plain taps as the embedding's raw part (default:\n"
               "                PCA-whitened on the items, which helps instance search)\n"
               "  --model M     backbone (default: the collection's backbone.ism)\n"
               "  --taps A,B    layers to tap (default: the backbone's measured best)\n"
               "  --batch N, --threads N   backbone pass (defaults 16, all CPUs)\n");
        return CLI_OK;
    }
    pipe_args a;
    int rc = parse("finetune", argc, argv, A_COLL | A_TRAIN | A_ENCODE, &a);
    if (rc < 0)
        rc = run_finetune(&a);
    free(a.images);
    return rc;
}

/* ---- embed-all ------------------------------------------------------------------ */

static int run_embed_all(const pipe_args *a)
{
    ims_pipe_opts o = {.threads = (int)a->threads, .batch = (int)a->batch, .progress = 1};
    ims_embed_summary s;
    ims_error err = {0};
    int rc = ims_coll_embed_all(a->coll, &o, &s, &err);
    if (rc)
        return cli_fail_err(rc, &err);
    if (a->json)
        printf("{\"todo\":%lld,\"done\":%lld,\"from_cache\":%lld,\"failed\":%lld,"
               "\"stale_dropped\":%lld,\"seconds\":%.3f,\"stamp\":\"%s\"}\n",
               (long long)s.todo, (long long)s.done, (long long)s.from_cache, (long long)s.failed,
               (long long)s.stale_dropped, s.seconds, s.stamp);
    else
        fprintf(stderr,
                "embed-all: %lld vectors written (%lld from cached features), %lld failed, "
                "%lld stale dropped, %.1f s (%.1f images/s)\n",
                (long long)s.done, (long long)s.from_cache, (long long)s.failed,
                (long long)s.stale_dropped, s.seconds,
                s.seconds > 0 ? (double)s.done / s.seconds : 0.0);
    if (s.failed)
        return cli_fail("embed-all: %lld items could not be read or decoded (see warnings)",
                        (long long)s.failed);
    return CLI_OK;
}

int cmd_embed_all(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: imgsim embed-all -c COLLECTION [--batch 16] [--threads N] [--json]\n\n"
               "Vectors for every accepted item that lacks a current one (resumable; stale\n"
               "vectors of another encoder are recomputed).\n");
        return CLI_OK;
    }
    pipe_args a;
    int rc = parse("embed-all", argc, argv, A_COLL | A_ENCODE | A_JSON, &a);
    if (rc < 0)
        rc = run_embed_all(&a);
    free(a.images);
    return rc;
}

/* ---- index -c ------------------------------------------------------------------- */

static int run_index(const pipe_args *a, int if_stale)
{
    ims_coll_index_opts o = {.metric = a->metric,
                             .M = (int)a->M,
                             .ef_construction = (int)a->efc,
                             .storage = a->storage,
                             .keep_float = !a->no_float,
                             .threads = (int)a->threads,
                             .set = a->set & 7,
                             .if_stale = if_stale};
    ims_coll_index_summary s;
    ims_error err = {0};
    int rc = ims_coll_build_index(a->coll, &o, &s, &err);
    if (rc)
        return cli_fail_err(rc, &err);
    if (s.skipped)
        fprintf(stderr, "index: up to date (%lld items)\n", (long long)s.items);
    else if (a->json)
        printf("{\"items\":%lld,\"dim\":%d,\"seconds\":%.3f,\"bytes\":%lld}\n", (long long)s.items,
               s.dim, s.seconds, (long long)s.bytes);
    else
        fprintf(stderr, "index: %lld items x %d dims, %.1f s, %.1f MiB\n", (long long)s.items,
                s.dim, s.seconds, (double)s.bytes / (1 << 20));
    return CLI_OK;
}

int cmd_coll_index(int argc, char **argv)
{
    pipe_args a;
    int rc = parse("index", argc, argv, A_COLL | A_INDEX | A_ENCODE | A_JSON, &a);
    if (rc < 0)
        rc = run_index(&a, 0);
    free(a.images);
    return rc;
}

/* ---- build ----------------------------------------------------------------------- */

static void ingest_report(void *ud, const char *kind, const char *path, const char *msg)
{
    (void)ud;
    fprintf(stderr, "ingest: %s: %s%s%s\n", kind, path, msg && *msg ? ": " : "", msg ? msg : "");
}

static int run_ingest_step(const pipe_args *a)
{
    ims_catalog *cat = NULL;
    ims_error err = {0};
    int rc = ims_catalog_open(a->coll, IMS_CATALOG_CREATE, &cat, &err);
    if (rc)
        return cli_fail_err(rc, &err);
    ims_ingest_opts o = {.metadata_csv = a->metadata,
                         .id_column = a->id_col,
                         .file_column = a->file_col,
                         .report = ingest_report,
                         .threads = (int)a->threads};
    ims_ingest_summary s;
    rc = ims_catalog_ingest(cat, a->dir, &o, &s, &err);
    ims_catalog_close(cat);
    if (rc)
        return cli_fail_err(rc, &err);
    fprintf(stderr,
            "ingest: %lld files, %lld accepted, %lld unchanged, %lld duplicates, %lld rejected, "
            "%lld vanished; %lld items in the catalogue\n",
            (long long)s.scanned, (long long)s.accepted, (long long)s.unchanged,
            (long long)s.duplicates, (long long)s.rejected, (long long)s.vanished,
            (long long)s.total_accepted);
    return CLI_OK;
}

/* The default backbone: $IMGSIM_MODEL, else models/mobilenet_v2_mid.ism
 * beside the current directory, else the collection's own. */
static const char *default_model(const pipe_args *a)
{
    const char *m = getenv("IMGSIM_MODEL");
    if (m && *m)
        return m;
    static char own[4096];
    snprintf(own, sizeof own, "%s/backbone.ism", a->coll);
    if (!access(own, R_OK))
        return NULL; /* keep the collection's backbone */
    if (!access("models/mobilenet_v2_mid.ism", R_OK))
        return "models/mobilenet_v2_mid.ism";
    return NULL;
}

int cmd_build(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: imgsim build -c COLLECTION DIR [--model MODEL.ism] [--metadata CSV\n"
               "                    --id-column COL --file-column COL] [--taps A,B] [--dim 256]\n"
               "                    [--epochs N] [--seed S] [--no-whiten] [--no-finetune]\n"
               "                    [--batch N] [--threads N] [--metric cosine] [--M 16]\n"
               "                    [--ef-construction 200]\n\n"
               "ingest + finetune + embed-all + index in one command; re-running it after\n"
               "adding photos to DIR does only the new work. Default model: $IMGSIM_MODEL,\n"
               "else the collection's backbone, else models/mobilenet_v2_mid.ism.\n");
        return CLI_OK;
    }
    pipe_args a;
    int rc =
        parse("build", argc, argv, A_COLL | A_DIR | A_TRAIN | A_ENCODE | A_INDEX | A_INGEST, &a);
    if (rc >= 0)
        goto done;
    if (!a.model)
        a.model = default_model(&a);
    char own[4096];
    snprintf(own, sizeof own, "%s/backbone.ism", a.coll);
    if (!a.model && access(own, R_OK)) {
        rc = cli_usage("build: --model MODEL.ism missing (no models/mobilenet_v2_mid.ism here)");
        goto done;
    }
    double t0 = ims_now();
    if ((rc = run_ingest_step(&a)) || (rc = run_finetune(&a)) || (rc = run_embed_all(&a)) ||
        (rc = run_index(&a, 1)))
        goto done;
    fprintf(stderr, "build: %s ready in %.1f s (imgsim query -c %s IMAGE, imgsim serve -c %s)\n",
            a.coll, ims_now() - t0, a.coll, a.coll);
done:
    free(a.images);
    return rc;
}

/* ---- query ------------------------------------------------------------------------ */

static int print_hits(const char *query, int64_t self, const ims_coll_hit *h, size_t n, int json)
{
    if (!json) {
        printf("%s%s\n", query, self ? " (in the collection)" : "");
        for (size_t i = 0; i < n; i++)
            printf("  %2zu  %.4f  #%-6lld %-24s %s\n", i + 1, h[i].score, (long long)h[i].item.id,
                   h[i].item.category, h[i].item.name);
        return 0;
    }
    json_t *o = json_object(), *arr = json_array();
    json_object_set_new(o, "query", json_string(query));
    if (self)
        json_object_set_new(o, "self_id", json_integer(self));
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_object();
        json_error_t je;
        json_t *md = json_loads(h[i].item.metadata ? h[i].item.metadata : "{}", 0, &je);
        json_object_set_new(r, "id", json_integer(h[i].item.id));
        json_object_set_new(r, "score", json_real(h[i].score));
        json_object_set_new(r, "path", json_string(h[i].item.path ? h[i].item.path : ""));
        json_object_set_new(r, "category",
                            json_string(h[i].item.category ? h[i].item.category : ""));
        json_object_set_new(r, "name", json_string(h[i].item.name ? h[i].item.name : ""));
        json_object_set_new(r, "product_id",
                            json_string(h[i].item.product_id ? h[i].item.product_id : ""));
        json_object_set_new(r, "metadata", md ? md : json_object());
        json_array_append_new(arr, r);
    }
    json_object_set_new(o, "results", arr);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return -1;
    puts(s);
    free(s);
    return 0;
}

static int read_file(const char *path, void **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb)
                free(b);
            b = nb;
        }
    }
    int bad = !b || ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return -1;
    }
    *buf = b, *len = n;
    return 0;
}

int cmd_query(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: imgsim query -c COLLECTION (IMAGE... | --id ID) [-k 10] [--category C]\n"
               "                    [--json]\n\n"
               "Top-k most similar items (score: cosine similarity) for each image, or for an\n"
               "item of the collection. --category filters inside the index search.\n");
        return CLI_OK;
    }
    pipe_args a;
    int rc = parse("query", argc, argv, A_COLL | A_QUERY | A_ENCODE | A_JSON, &a);
    if (rc >= 0)
        goto done;
    if (!a.n_images == !(a.set & 8)) {
        rc = cli_usage("query: give IMAGE... or --id ID (one of them)");
        goto done;
    }
    ims_coll *c = NULL;
    ims_error err = {0};
    ims_coll_opts co = {.sessions = 1, .threads = (int)a.threads, .readonly = 1};
    if ((rc = ims_coll_open(a.coll, &co, &c, &err))) {
        rc = cli_fail_err(rc, &err);
        goto done;
    }
    ims_coll_hit *h = NULL;
    size_t n = 0;
    if (a.set & 8) {
        char q[32];
        snprintf(q, sizeof q, "%ld", a.id);
        rc = ims_coll_similar(c, a.id, (int)a.k, a.category, &h, &n, &err);
        rc = rc ? cli_fail_err(rc, &err) : print_hits(q, 0, h, n, a.json);
        ims_coll_hits_free(h, n);
    }
    for (int i = 0; !rc && i < a.n_images; i++) {
        void *buf = NULL;
        size_t len = 0;
        int64_t self = 0;
        if (read_file(a.images[i], &buf, &len)) {
            rc = cli_fail("%s: cannot read", a.images[i]);
            break;
        }
        rc = ims_coll_search_image(c, buf, len, (int)a.k, a.category, &h, &n, &self, &err);
        free(buf);
        rc = rc ? cli_fail_err(rc, &err) : print_hits(a.images[i], self, h, n, a.json);
        ims_coll_hits_free(h, n);
        h = NULL, n = 0;
    }
    ims_coll_close(c);
done:
    free(a.images);
    return rc;
}

/* ---- eval --------------------------------------------------------------------------- */

static void put_scores(json_t *o, const char *name, const ims_eval_scores *s, int k)
{
    json_t *e = json_object();
    char key[32];
    json_object_set_new(e, "p@1", json_real(s->p1));
    json_object_set_new(e, "p@5", json_real(s->p5));
    json_object_set_new(e, "p@10", json_real(s->p10));
    snprintf(key, sizeof key, "map@%d", k);
    json_object_set_new(e, key, json_real(s->map));
    json_object_set_new(e, "instance_r@1", json_real(s->inst_r1));
    snprintf(key, sizeof key, "instance_r@%d", k);
    json_object_set_new(e, key, json_real(s->inst_r10));
    json_object_set_new(o, name, e);
}

int cmd_eval(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: imgsim eval -c COLLECTION [-k 10] [--json]\n\n"
               "Held-out retrieval quality: the fine-tune's validation items query all other\n"
               "items; P@1/5/10 and mAP@k by category, instance recall of distorted copies,\n"
               "for the raw backbone taps, the seed's method and imgsim's encoder; the\n"
               "classifier's accuracy; the index's recall@k against exact search.\n");
        return CLI_OK;
    }
    pipe_args a;
    int rc = parse("eval", argc, argv, A_COLL | A_QUERY | A_ENCODE | A_JSON, &a);
    if (rc >= 0)
        goto done;
    if (a.n_images || (a.set & 8) || a.category) {
        rc = cli_usage("eval: takes no images, --id or --category");
        goto done;
    }
    ims_eval_result r;
    ims_error err = {0};
    ims_pipe_opts po = {.threads = (int)a.threads, .batch = (int)a.batch, .progress = 1};
    if ((rc = ims_coll_eval(a.coll, (int)a.k, &po, &r, &err))) {
        rc = cli_fail_err(rc, &err);
        goto done;
    }
    json_t *o = json_object(), *enc = json_object();
    json_object_set_new(o, "k", json_integer(r.k));
    json_object_set_new(o, "queries", json_integer(r.queries));
    json_object_set_new(o, "items", json_integer(r.items));
    put_scores(enc, "finetuned", &r.finetuned, r.k);
    put_scores(enc, "backbone", &r.backbone, r.k);
    put_scores(enc, "seed", &r.seed, r.k);
    json_object_set_new(o, "encoders", enc);
    json_object_set_new(o, "classifier_accuracy", json_real(r.classifier_accuracy));
    char key[32];
    snprintf(key, sizeof key, "ann_recall@%d", r.k);
    json_object_set_new(o, key, r.ann_recall < 0 ? json_null() : json_real(r.ann_recall));
    json_object_set_new(o, "seconds", json_real(r.seconds));
    if (a.json) {
        char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(4));
        if (s)
            puts(s);
        free(s);
    } else {
        printf("eval: %lld validation queries over %lld items, k=%d\n", (long long)r.queries,
               (long long)r.items, r.k);
        printf("  %-10s %6s %6s %6s %7s %8s %8s\n", "encoder", "P@1", "P@5", "P@10", "mAP@k",
               "inst@1", "inst@k");
        const ims_eval_scores *sc[] = {&r.backbone, &r.seed, &r.finetuned};
        const char *nm[] = {"backbone", "seed", "finetuned"};
        for (int i = 0; i < 3; i++)
            printf("  %-10s %6.3f %6.3f %6.3f %7.3f %8.3f %8.3f\n", nm[i], sc[i]->p1, sc[i]->p5,
                   sc[i]->p10, sc[i]->map, sc[i]->inst_r1, sc[i]->inst_r10);
        printf("  classifier accuracy %.3f; index recall@%d ", r.classifier_accuracy, r.k);
        if (r.ann_recall < 0)
            printf("not measured (no current index)\n");
        else
            printf("%.4f\n", r.ann_recall);
    }
    json_decref(o);
done:
    free(a.images);
    return rc;
}
