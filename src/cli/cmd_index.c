/* SPDX-License-Identifier: MIT */
/*
 * cmd_index.c — `imgsim index check FILE [--quick] [--json]`: open an index
 * file, verify it (deep by default: every checksum, the graph structure,
 * finite vectors) and print a summary. `imgsim index -c COLLECTION` builds
 * a collection's index (cmd_collection.c).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_int.h"
#include "imgsim/index.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: imgsim index check FILE [--quick] [--json]\n"
               "       imgsim index -c COLLECTION [--metric cosine|l2|ip] [--M 16] "
               "[--ef-construction 200]\n"
               "                    [--storage int8|f16|f32] [--no-float] [--threads N]\n\n"
               "-c: build COLLECTION/index.hnsw over its current vectors (default: cosine,\n"
               "int8 graph walk with an exact float re-rank; --no-float drops the floats).\n\n"
               "check: verify an index file (header, section checksums, graph links,\n"
               "vectors) and print a summary; exit 0 if sound, 1 if not.\n"
               "  --quick   skip the checksums of the bulk sections (links, vectors)\n"
               "  --json    print the summary as one JSON object\n");
}

static int cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    int quick = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (argv[i][0] == '-')
            return cli_usage("index check: unknown option %s", argv[i]);
        else if (path)
            return cli_usage("index check: one FILE only");
        else
            path = argv[i];
    }
    if (!path)
        return cli_usage("index check: FILE missing");
    ims_hnsw *h = NULL;
    ims_error err = {0};
    double t0 = ims_now();
    int rc = ims_hnsw_open(path, &h, &err);
    if (rc)
        return cli_fail_err(rc, &err);
    double t_open = ims_now() - t0;
    t0 = ims_now();
    rc = ims_hnsw_check(h, !quick);
    double t_check = ims_now() - t0;
    if (rc) {
        int r = cli_fail("%s: %s", path, ims_hnsw_errmsg(h));
        ims_hnsw_close(h);
        return r;
    }
    ims_hnsw_info in;
    ims_hnsw_get_info(h, &in);
    struct stat st;
    long long fsize = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    if (json)
        printf("{\"file\":\"%s\",\"ok\":true,\"deep\":%s,\"metric\":\"%s\",\"storage\":\"%s\","
               "\"keep_float\":%s,\"dim\":%u,\"M\":%u,\"ef_construction\":%u,\"ef_search\":%u,"
               "\"items\":%llu,\"deleted\":%llu,\"max_level\":%d,\"file_bytes\":%lld,"
               "\"open_ms\":%.3f,\"check_ms\":%.3f}\n",
               path, quick ? "false" : "true", ims_metric_name(in.metric),
               ims_storage_name(in.storage), in.keep_float ? "true" : "false", in.n_dims, in.M,
               in.ef_construction, in.ef_search, (unsigned long long)in.n_items,
               (unsigned long long)in.n_deleted, in.max_level, fsize, t_open * 1e3,
               t_check * 1e3);
    else
        printf("%s: ok (%s check)\n"
               "  metric %s, storage %s%s, dim %u, M %u, ef_construction %u, ef_search %u\n"
               "  items %llu, deleted %llu, max level %d, file %lld bytes\n"
               "  open %.2f ms, check %.2f ms\n",
               path, quick ? "quick" : "deep", ims_metric_name(in.metric),
               ims_storage_name(in.storage), in.keep_float ? " + float32" : "", in.n_dims, in.M,
               in.ef_construction, in.ef_search, (unsigned long long)in.n_items,
               (unsigned long long)in.n_deleted, in.max_level, fsize, t_open * 1e3,
               t_check * 1e3);
    ims_hnsw_close(h);
    return CLI_OK;
}

int cmd_index(int argc, char **argv)
{
    if (argc < 2 || cli_wants_help(argc, argv)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "check"))
        return cmd_check(argc - 1, argv + 1);
    return cmd_coll_index(argc, argv); /* imgsim index -c COLLECTION ... */
}
