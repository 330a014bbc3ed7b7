/* SPDX-License-Identifier: MIT */
/* main.c — `imgsim` entry point: dispatch to subcommands, shared helpers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"
#include "imgsim/nn.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"model", cmd_model, "import a TF.js model to .ism; show a model's layers and taps"},
    {"embed", cmd_embed, "encode images to feature vectors (JSON lines or .fvecs)"},
    {"ingest", cmd_ingest, "add a folder of images (+ metadata CSV) to a collection's catalogue"},
    {"index", cmd_index, "build a collection's index (-c); `index check FILE` verifies one"},
    {"finetune", cmd_finetune, "train the collection's encoder head on its categories"},
    {"embed-all", cmd_embed_all, "vectors for every item of a collection (resumable)"},
    {"build", cmd_build, "ingest + finetune + embed-all + index in one command"},
    {"query", cmd_query, "most similar items of a collection for images or an item"},
    {"eval", cmd_eval, "held-out retrieval quality of a collection's encoder"},
    {"bench-index", cmd_bench_index, "recall/QPS benchmark of the HNSW index on .fvecs files"},
    {"serve", cmd_serve, "HTTP API and web page over a collection"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: imgsim <command> [options]   (imgsim <command> --help for details)\n"
               "       imgsim --version\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nenvironment: IMS_SIMD=ref|avx2|avx512 forces a kernel level; "
               "IMS_LOG=error|warn|info|debug sets logging.\n");
}

#ifndef IMS_GIT_REVISION
#define IMS_GIT_REVISION "unknown" /* CMake sets it from `git describe` */
#endif

/* `imgsim --version`: release, source revision, and the kernel level in
 * force (after IMS_SIMD), so that a bug report says what actually ran. */
static void print_version(void)
{
    printf("imgsim %s\nrevision: %s\nkernels: %s\n", IMS_VERSION_STRING, IMS_GIT_REVISION,
           ims_cpu_level_name(ims_cpu_level()));
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("imgsim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("imgsim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    return CLI_USAGE;
}

int cli_fail_err(int rc, const ims_error *err)
{
    if (err && err->msg[0])
        return cli_fail("%s", err->msg);
    return cli_fail("%s", ims_strerror(rc));
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

void cli_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    /* libvips's start dlopen()s its modules from $VIPSHOME/lib (heif, jxl,
     * magick, openslide, poppler, with their libraries: ~20 ms of CPU per
     * process, 45 -> 24 ms for VIPS_INIT). imgsim calls only built-in
     * loaders, by name (src/image/decode.c), and blocks the untrusted ones,
     * so a prefix with no modules under it loses nothing. Set here, before
     * any thread, and only when the user has not set VIPSHOME. */
    setenv("VIPSHOME", "/nonexistent/imgsim-no-vips-modules", 0);
    ims_init();
    ims_nn_init(); /* OpenBLAS's idle threads would spin through the first 0.1 s */
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        print_version();
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "imgsim: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
