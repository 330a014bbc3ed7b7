/* SPDX-License-Identifier: MIT */
/*
 * cmd_embed.c — `imgsim embed`: images to feature vectors.
 *
 *   imgsim embed --model M.ism [--layer NAME]... [--classify] [--normalize]
 *                [--json | --fvecs OUT] [--batch N] [--threads N] IMAGE...
 *
 * Images are decoded and preprocessed one by one into a batch, and each full
 * batch runs through one session. An image that cannot be read or decoded is
 * reported on stderr ("imgsim: FILE: reason"); the others are still
 * processed and written, in input order, and the exit status is then 1.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_int.h"
#include "imgsim/image.h"
#include "imgsim/nn.h"

#define MAX_LAYERS 64

static void usage(FILE *f)
{
    fprintf(f,
            "usage: imgsim embed --model MODEL.ism [--layer NAME]... [--classify] [--normalize]\n"
            "                    [--json | --fvecs OUT] [--batch N] [--threads N] IMAGE...\n\n"
            "Encode images to feature vectors: the global-average-pooled output of the model's\n"
            "default tap (the pooled features feeding its classifier), or of the named layers,\n"
            "concatenated in the order given.\n\n"
            "  --model MODEL.ism  the model (see `imgsim model info` for layer names)\n"
            "  --layer NAME       tap this layer (repeatable; default: the model's default tap)\n"
            "  --classify         also print the class probabilities (\"probs\")\n"
            "  --normalize        L2-normalise each vector (default: raw pooled values)\n"
            "  --json             JSON lines on stdout (the default):\n"
            "                     {\"file\",\"model\",\"layer\",\"dim\",\"vector\"[,\"probs\"]}\n"
            "  --fvecs OUT        write the vectors to OUT as TEXMEX .fvecs, in input order\n"
            "  --batch N          images per network run (default 8)\n"
            "  --threads N        threads (default: all CPUs)\n\n"
            "An image that cannot be decoded is reported on stderr as 'imgsim: FILE: reason';\n"
            "all other images are still encoded and written (in input order, the failed ones\n"
            "left out, also from OUT), and the exit status is 1.\n");
}

/* A float as JSON (non-finite values are not JSON: null). */
static void json_float(FILE *f, float v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", (double)v);
    else
        fputs("null", f);
}

typedef struct out_ctx {
    const ims_nn_model *m;
    char *layer;       /* comma-joined tap names */
    int dim, n_cls;
    int normalize;
    FILE *fvecs;       /* NULL: JSON lines on stdout */
} out_ctx;

static int emit(out_ctx *o, const char *file, float *v, const float *probs)
{
    if (o->normalize) {
        double s = 0;
        for (int k = 0; k < o->dim; k++)
            s += (double)v[k] * v[k];
        if (s > 0) {
            double inv = 1.0 / sqrt(s);
            for (int k = 0; k < o->dim; k++)
                v[k] = (float)(v[k] * inv);
        }
    }
    if (o->fvecs) {
        unsigned char hdr[4] = {(unsigned char)o->dim, (unsigned char)(o->dim >> 8),
                                (unsigned char)(o->dim >> 16), (unsigned char)(o->dim >> 24)};
        /* .fvecs is little-endian: int32 dim, then dim float32 */
        if (fwrite(hdr, 1, 4, o->fvecs) != 4 ||
            fwrite(v, sizeof(float), (size_t)o->dim, o->fvecs) != (size_t)o->dim)
            return -1;
        return 0;
    }
    FILE *f = stdout;
    fputs("{\"file\":", f);
    cli_json_str(f, file);
    fputs(",\"model\":", f);
    cli_json_str(f, ims_nn_name(o->m));
    fputs(",\"layer\":", f);
    cli_json_str(f, o->layer);
    fprintf(f, ",\"dim\":%d,\"vector\":[", o->dim);
    for (int k = 0; k < o->dim; k++) {
        if (k)
            fputc(',', f);
        json_float(f, v[k]);
    }
    fputc(']', f);
    if (probs) {
        fputs(",\"probs\":[", f);
        for (int k = 0; k < o->n_cls; k++) {
            if (k)
                fputc(',', f);
            json_float(f, probs[k]);
        }
        fputc(']', f);
    }
    fputs("}\n", f);
    return ferror(f) ? -1 : 0;
}

typedef struct embed_args {
    const char *model, *fvecs;
    const char *layers[MAX_LAYERS];
    int n_layers, classify, normalize, json;
    long batch, threads;
    char **files; /* room for argc names, owned by the caller */
    int n_files;
} embed_args;

/* Parse the options into a; CLI_OK, or the status of a usage error. */
static int parse_args(int argc, char **argv, embed_args *a)
{
    int only_files = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int needs = !only_files &&
                    (!strcmp(o, "--model") || !strcmp(o, "-m") || !strcmp(o, "--layer") ||
                     !strcmp(o, "--fvecs") || !strcmp(o, "--batch") || !strcmp(o, "--threads"));
        if (needs && i + 1 >= argc)
            return cli_usage("embed: %s needs a value", o);
        if (only_files || o[0] != '-' || !o[1]) {
            a->files[a->n_files++] = argv[i];
        } else if (!strcmp(o, "--")) {
            only_files = 1;
        } else if (!strcmp(o, "--model") || !strcmp(o, "-m")) {
            a->model = argv[++i];
        } else if (!strcmp(o, "--layer")) {
            if (a->n_layers == MAX_LAYERS)
                return cli_usage("embed: at most %d --layer options", MAX_LAYERS);
            a->layers[a->n_layers++] = argv[++i];
        } else if (!strcmp(o, "--fvecs")) {
            a->fvecs = argv[++i];
        } else if (!strcmp(o, "--batch")) {
            if (cli_parse_long(argv[++i], 1, 1024, &a->batch))
                return cli_usage("embed: --batch must be 1..1024, not '%s'", argv[i]);
        } else if (!strcmp(o, "--threads")) {
            if (cli_parse_long(argv[++i], 0, 1024, &a->threads))
                return cli_usage("embed: --threads must be 0..1024, not '%s'", argv[i]);
        } else if (!strcmp(o, "--classify")) {
            a->classify = 1;
        } else if (!strcmp(o, "--normalize")) {
            a->normalize = 1;
        } else if (!strcmp(o, "--json")) {
            a->json = 1;
        } else {
            return cli_usage("embed: unknown option '%s'", o);
        }
    }
    if (!a->model || !a->n_files || (a->json && a->fvecs))
        return cli_usage(!a->model     ? "embed: no --model given"
                         : !a->n_files ? "embed: no images given"
                                       : "embed: --json and --fvecs exclude each other");
    if (a->fvecs && a->classify)
        return cli_usage("embed: --classify needs JSON output (not --fvecs)");
    return CLI_OK;
}

int cmd_embed(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    embed_args a = {.batch = 8, .threads = 0};
    int rc_exit = CLI_OK, rc;
    ims_error err = {0};
    ims_nn_model *m = NULL;
    ims_nn_session *s = NULL;
    ims_progress *bar = NULL;
    float *input = NULL, *feat = NULL, *probs = NULL;
    int *slot_file = NULL;
    char fv_tmp[4096] = "";
    out_ctx o = {0};
    a.files = calloc((size_t)argc, sizeof *a.files);
    if (!a.files) {
        rc_exit = cli_fail("out of memory");
        goto out;
    }
    if ((rc_exit = parse_args(argc, argv, &a)) != CLI_OK)
        goto out;
    const char *model = a.model, *fvecs = a.fvecs;
    const char **layers = a.layers;
    char **files = a.files;
    int n_layers = a.n_layers, n_files = a.n_files, classify = a.classify;
    long batch = a.batch;

    if ((rc = ims_nn_open(model, &m, &err))) {
        rc_exit = cli_fail_err(rc, &err);
        goto out;
    }
    if (!n_layers) {
        const char *d = ims_nn_default_tap(m);
        if (!d) {
            rc_exit = cli_fail("%s: the model has no default tap; name one with --layer", model);
            goto out;
        }
        layers[n_layers++] = d;
    }
    size_t lay_len = 1;
    for (int k = 0; k < n_layers; k++) {
        int d;
        if ((rc = ims_nn_tap_dim(m, layers[k], &d, &err))) {
            rc_exit = cli_fail("%s: --layer %s: %s", model, layers[k], err.msg);
            goto out;
        }
        lay_len += strlen(layers[k]) + 1;
    }
    if (classify && ims_nn_n_classes(m) == 0) {
        rc_exit = cli_fail("%s: --classify: the model has no classifier output", model);
        goto out;
    }
    ims_nn_session_opts so = {.taps = layers,
                              .n_taps = n_layers,
                              .want_probs = classify,
                              .max_batch = (int)batch,
                              .n_threads = (int)a.threads};
    if ((rc = ims_nn_session_new(m, &so, &s, &err))) {
        rc_exit = cli_fail_err(rc, &err);
        goto out;
    }
    o.m = m;
    o.dim = ims_nn_session_dim(s);
    o.n_cls = ims_nn_n_classes(m);
    o.normalize = a.normalize;
    o.layer = calloc(1, lay_len);
    const ims_preprocess *pp = ims_nn_preprocess(m);
    size_t n_in = (size_t)pp->width * pp->height * 3;
    input = malloc((size_t)batch * n_in * sizeof(float));
    feat = malloc((size_t)batch * (size_t)o.dim * sizeof(float));
    probs = malloc((size_t)batch * (size_t)(o.n_cls ? o.n_cls : 1) * sizeof(float));
    slot_file = malloc((size_t)batch * sizeof *slot_file);
    if (!o.layer || !input || !feat || !probs || !slot_file) {
        rc_exit = cli_fail("out of memory");
        goto out;
    }
    for (int k = 0; k < n_layers; k++) {
        if (k)
            strcat(o.layer, ",");
        strcat(o.layer, layers[k]);
    }
    struct stat fst;
    int direct = fvecs && !stat(fvecs, &fst) && !S_ISREG(fst.st_mode);
    if (fvecs) {
        /* A regular file is written atomically (temp + rename); /dev/null,
         * a FIFO or a terminal is written in place: renaming over it would
         * replace the device with a file. */
        snprintf(fv_tmp, sizeof fv_tmp, direct ? "%s" : "%s.tmp", fvecs);
        o.fvecs = fopen(fv_tmp, "wb");
        if (!o.fvecs) {
            rc_exit = cli_fail("%s: cannot create: %s", fv_tmp, strerror(errno));
            fv_tmp[0] = '\0';
            goto out;
        }
    }
    /* a progress bar for long runs, only on a terminal (logs stay clean) */
    bar = n_files > 1 && isatty(STDERR_FILENO) ? ims_progress_new("embed", (uint64_t)n_files) : NULL;
    int n_batch = 0;
    for (int i = 0; i <= n_files; i++) {
        if (i < n_files) {
            ims_image *img = NULL;
            if ((rc = ims_image_load_file(files[i], NULL, &img, &err)) ||
                (rc = ims_image_preprocess(img, pp, input + (size_t)n_batch * n_in, &err))) {
                /* the image module's messages name the file already */
                if (strstr(err.msg, files[i]))
                    cli_fail("%s", err.msg);
                else
                    cli_fail("%s: %s", files[i], err.msg[0] ? err.msg : ims_strerror(rc));
                rc_exit = CLI_FAIL;
                ims_image_free(img);
                continue;
            }
            ims_image_free(img);
            slot_file[n_batch++] = i;
        }
        if (n_batch == batch || (i == n_files && n_batch)) {
            if ((rc = ims_nn_session_run(s, input, n_batch, feat, classify ? probs : NULL,
                                         &err))) {
                rc_exit = cli_fail_err(rc, &err);
                goto out;
            }
            for (int b = 0; b < n_batch; b++)
                if (emit(&o, files[slot_file[b]], feat + (size_t)b * o.dim,
                         classify ? probs + (size_t)b * o.n_cls : NULL)) {
                    rc_exit = cli_fail("%s: write error", fvecs ? fv_tmp : "stdout");
                    goto out;
                }
            n_batch = 0;
            ims_progress_update(bar, (uint64_t)(i < n_files ? i + 1 : n_files));
        }
    }
    ims_progress_finish(bar);
    bar = NULL;
    if (o.fvecs) {
        FILE *f = o.fvecs;
        o.fvecs = NULL;
        if (fflush(f) || ferror(f) | fclose(f)) {
            rc_exit = cli_fail("%s: write error", fv_tmp);
            goto out;
        }
        if (!direct && rename(fv_tmp, fvecs)) {
            rc_exit = cli_fail("%s: cannot rename to %s: %s", fv_tmp, fvecs, strerror(errno));
            goto out;
        }
        fv_tmp[0] = '\0';
    }
    if (fflush(stdout))
        rc_exit = cli_fail("stdout: write error");
out:
    if (bar)
        ims_progress_finish(bar);
    if (o.fvecs)
        fclose(o.fvecs);
    if (fv_tmp[0])
        remove(fv_tmp);
    free(o.layer);
    free(input);
    free(feat);
    free(probs);
    free(slot_file);
    ims_nn_session_free(s);
    ims_nn_close(m);
    free(a.files);
    return rc_exit;
}
