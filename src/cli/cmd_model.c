/* SPDX-License-Identifier: MIT */
/*
 * cmd_model.c — `imgsim model import|info`.
 *
 *   imgsim model import MODEL.json -o MODEL.ism [--name N] [--classes A,B,...]
 *                       [--default-tap LAYER]
 *   imgsim model info MODEL.ism [--json]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"
#include "imgsim/nn.h"

static void usage_import(FILE *f)
{
    fprintf(f,
            "usage: imgsim model import MODEL.json -o OUT.ism [--name NAME] [--classes A,B,...]\n"
            "                           [--default-tap LAYER]\n\n"
            "Import a TF.js layers-model or graph-model (model.json beside its weight shards;\n"
            "float32 or uint8/uint16/float16-quantized weights) and write a native .ism file\n"
            "atomically. BatchNorm, activations and zero padding are folded into convolutions.\n\n"
            "  -o, --output OUT.ism   output file (required)\n"
            "  --name NAME            model name (default: the output file's base name)\n"
            "  --classes A,B,...      class names of the softmax output (default class0,...)\n"
            "  --default-tap LAYER    default feature tap (default: the pooled features that\n"
            "                         feed the classifier)\n");
}

static void usage_info(FILE *f)
{
    fprintf(f, "usage: imgsim model info MODEL.ism [--json]\n\n"
               "Print a model's input recipe, classes, default tap, parameters and FLOPs, and\n"
               "every node with its output shape (and the names folded into it).\n\n"
               "  --json   one JSON object instead of the table\n");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: imgsim model import MODEL.json -o OUT.ism [options]\n"
               "       imgsim model info MODEL.ism [--json]\n"
               "(imgsim model import --help, imgsim model info --help for details)\n");
}

static int do_import(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *name = NULL, *classes = NULL, *tap = NULL;
    if (cli_wants_help(argc, argv)) {
        usage_import(stdout);
        return CLI_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            dst = &out;
        else if (!strcmp(a, "--name"))
            dst = &name;
        else if (!strcmp(a, "--classes"))
            dst = &classes;
        else if (!strcmp(a, "--default-tap"))
            dst = &tap;
        else if (a[0] == '-' && a[1])
            return cli_usage("model import: unknown option '%s'", a);
        else if (in)
            return cli_usage("model import: one model.json at a time ('%s')", a);
        else
            in = a;
        if (dst) {
            if (i + 1 >= argc)
                return cli_usage("model import: %s needs a value", a);
            *dst = argv[++i];
        }
    }
    if (!in)
        return cli_usage("model import: no model.json given");
    if (!out)
        return cli_usage("model import: no output file (-o OUT.ism)");
    char def_name[256];
    if (!name) { /* the output's base name without .ism */
        const char *b = strrchr(out, '/');
        snprintf(def_name, sizeof def_name, "%s", b ? b + 1 : out);
        char *dot = strrchr(def_name, '.');
        if (dot && dot != def_name)
            *dot = '\0';
        name = def_name;
    }
    char *cls_buf = NULL;
    const char *cls[256];
    int n_cls = 0;
    if (classes) {
        cls_buf = strdup(classes);
        if (!cls_buf)
            return cli_fail("out of memory");
        for (char *s = cls_buf, *tok; (tok = strsep(&s, ","));) {
            if (!*tok || n_cls == (int)(sizeof cls / sizeof cls[0])) {
                free(cls_buf);
                return cli_usage("model import: --classes needs 1 to 256 non-empty names");
            }
            cls[n_cls++] = tok;
        }
    }
    ims_nn_import_opts o = {.name = name, .default_tap = tap};
    if (n_cls) {
        o.classes = cls;
        o.n_classes = n_cls;
    }
    ims_error err = {0};
    int rc = ims_nn_import_tfjs(in, out, &o, &err);
    free(cls_buf);
    if (rc)
        return cli_fail_err(rc, &err);
    ims_nn_model *m;
    if ((rc = ims_nn_open(out, &m, &err)))
        return cli_fail_err(rc, &err);
    size_t params;
    double flops;
    ims_nn_stats(m, &params, &flops);
    int dim = 0;
    const char *dt = ims_nn_default_tap(m);
    if (dt)
        ims_nn_tap_dim(m, dt, &dim, NULL);
    fprintf(stderr, "imgsim: %s -> %s: model '%s', %zu parameters, %.2f GFLOPs/image, "
                    "default tap %s (%d)\n",
            in, out, ims_nn_name(m), params, flops / 1e9, dt ? dt : "(none)", dim);
    ims_nn_close(m);
    return CLI_OK;
}

static int do_info(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    if (cli_wants_help(argc, argv)) {
        usage_info(stdout);
        return CLI_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_usage("model info: unknown option '%s'", argv[i]);
        else if (path)
            return cli_usage("model info: one model at a time ('%s')", argv[i]);
        else
            path = argv[i];
    }
    if (!path)
        return cli_usage("model info: no model file given");
    ims_nn_model *m;
    ims_error err = {0};
    int rc = ims_nn_open(path, &m, &err);
    if (rc)
        return cli_fail_err(rc, &err);
    rc = json ? ims_nn_print_info_json(m, stdout) : ims_nn_print_info(m, stdout);
    ims_nn_close(m);
    if (rc || fflush(stdout))
        return cli_fail("model info: cannot write the output");
    return CLI_OK;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "import"))
        return do_import(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info"))
        return do_info(argc - 1, argv + 1);
    return cli_usage("model: unknown subcommand '%s'", argv[1]);
}
