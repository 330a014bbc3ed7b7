/* SPDX-License-Identifier: MIT */
/*
 * cmd_serve.c — `imgsim serve`: the HTTP API and web page over a collection.
 *
 *   imgsim serve -c COLLECTION [--listen 127.0.0.1:8080] [--threads N]
 *                [--sessions N] [--max-body BYTES] [--max-queue N]
 *                [--max-body-memory BYTES] [--max-connections N] [--timeout S]
 *                [--api-key-reads] [--map-index] [--readonly] [--quiet]
 *
 * Settings also come from the environment (options win): IMGSIM_COLLECTION,
 * IMGSIM_LISTEN, IMGSIM_THREADS, IMGSIM_MAX_QUEUE, IMGSIM_API_KEY (never
 * printed or logged), IMGSIM_API_KEY_READS=1.
 *
 * SIGINT and SIGTERM are blocked before the collection and server start
 * their threads (so those inherit the mask) and taken with sigwait() here:
 * the server then stops accepting, finishes the requests in flight and the
 * command exits 0. A few threads started earlier (by libraries at load or
 * ims_init) do not block them; that is fine because Linux gives a
 * process-directed signal first to a thread waiting for it in sigwait().
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"
#include "imgsim/collection.h"
#include "imgsim/server.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: imgsim serve -c COLLECTION [--listen HOST:PORT] [--threads N]\n"
               "                    [--sessions N] [--max-body BYTES] [--max-pixels N]\n"
               "                    [--max-queue N] [--max-body-memory BYTES]\n"
               "                    [--max-connections N] [--timeout S] [--api-key-reads]\n"
               "                    [--map-index] [--readonly] [--quiet]\n\n"
               "Serve the HTTP API (DESIGN.md) and the web page (GET /) for a collection.\n"
               "Prints the URL it listens on; SIGINT/SIGTERM finish the requests in flight and\n"
               "exit 0.\n\n"
               "  -c, --collection DIR  the collection (env IMGSIM_COLLECTION)\n"
               "  --listen HOST:PORT    address (env IMGSIM_LISTEN; default 127.0.0.1:8080;\n"
               "                        port 0 picks a free one)\n"
               "  --threads N           HTTP threads (env IMGSIM_THREADS; default max(8, 2*CPUs))\n"
               "  --sessions N          parallel encodes (default: number of CPUs)\n"
               "  --max-body BYTES      request body limit (default 20971520)\n"
               "  --max-queue N         encode requests (search by image, add) held at once:\n"
               "                        receiving, waiting or encoding (env IMGSIM_MAX_QUEUE;\n"
               "                        default 256); beyond it 503 + Retry-After at once\n"
               "  --max-body-memory BYTES  request bodies held at once, all together\n"
               "                        (default max-queue * max-body, at most 1 GiB)\n"
               "  --max-connections N   open connections (default 16384, or fewer if\n"
               "                        RLIMIT_NOFILE is lower); beyond it closed at once\n"
               "  --timeout S           idle connection timeout, and the time request headers\n"
               "                        may take (default 30; a body gets 1 s more per 16 KiB)\n"
               "  --max-pixels N        refuse uploads of more pixels (default 50000000: a\n"
               "                        valid 9000x9000 PNG costs 0.5 s and 230 MB to decode)\n"
               "  --map-index           map the index file instead of reading it into memory at\n"
               "                        start (opens at once and shares the page cache, but\n"
               "                        searches pay page faults: ~0.6x the queries/s on a\n"
               "                        large index); for an index larger than the memory\n"
               "  --readonly            refuse adds and deletes\n"
               "  --quiet               no per-request log line on stderr\n\n"
               "  --api-key-reads       with IMGSIM_API_KEY: every route except /healthz needs\n"
               "                        the key, the web page too (env IMGSIM_API_KEY_READS=1)\n\n"
               "env IMGSIM_API_KEY: when set, POST /v1/items and DELETE need\n"
               "'Authorization: Bearer <key>'.\n");
}

int cmd_serve(int argc, char **argv)
{
    const char *dir = getenv("IMGSIM_COLLECTION");
    const char *listen = getenv("IMGSIM_LISTEN");
    const char *env_threads = getenv("IMGSIM_THREADS");
    const char *env_queue = getenv("IMGSIM_MAX_QUEUE");
    const char *env_reads = getenv("IMGSIM_API_KEY_READS");
    long threads = 0, sessions = 0, max_body = 0, max_pixels = 50000000, max_queue = 0;
    long body_memory = 0, max_conns = 0, timeout = 0;
    int readonly = 0, quiet = 0, key_reads = 0, map_index = 0;
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    if (env_threads && *env_threads && cli_parse_long(env_threads, 1, 1024, &threads))
        return cli_usage("serve: IMGSIM_THREADS must be 1..1024, not '%s'", env_threads);
    if (env_queue && *env_queue && cli_parse_long(env_queue, 1, 1000000, &max_queue))
        return cli_usage("serve: IMGSIM_MAX_QUEUE must be 1..1000000, not '%s'", env_queue);
    if (env_reads && *env_reads) {
        if (strcmp(env_reads, "0") && strcmp(env_reads, "1"))
            return cli_usage("serve: IMGSIM_API_KEY_READS must be 0 or 1, not '%s'", env_reads);
        key_reads = env_reads[0] == '1';
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int needs = !strcmp(a, "-c") || !strcmp(a, "--collection") || !strcmp(a, "--listen") ||
                    !strcmp(a, "--threads") || !strcmp(a, "--sessions") ||
                    !strcmp(a, "--max-body") || !strcmp(a, "--max-pixels") ||
                    !strcmp(a, "--max-queue") || !strcmp(a, "--max-body-memory") ||
                    !strcmp(a, "--max-connections") || !strcmp(a, "--timeout");
        if (needs && i + 1 >= argc)
            return cli_usage("serve: %s needs a value", a);
        if (!strcmp(a, "-c") || !strcmp(a, "--collection")) {
            dir = argv[++i];
        } else if (!strcmp(a, "--listen")) {
            listen = argv[++i];
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_long(argv[++i], 1, 1024, &threads))
                return cli_usage("serve: --threads must be 1..1024, not '%s'", argv[i]);
        } else if (!strcmp(a, "--sessions")) {
            if (cli_parse_long(argv[++i], 1, 256, &sessions))
                return cli_usage("serve: --sessions must be 1..256, not '%s'", argv[i]);
        } else if (!strcmp(a, "--max-body")) {
            if (cli_parse_long(argv[++i], 1, 1L << 40, &max_body))
                return cli_usage("serve: --max-body must be a positive byte count, not '%s'",
                                 argv[i]);
        } else if (!strcmp(a, "--max-pixels")) {
            if (cli_parse_long(argv[++i], 1, 1L << 40, &max_pixels))
                return cli_usage("serve: --max-pixels must be a positive pixel count, not '%s'",
                                 argv[i]);
        } else if (!strcmp(a, "--max-queue")) {
            if (cli_parse_long(argv[++i], 1, 1000000, &max_queue))
                return cli_usage("serve: --max-queue must be 1..1000000, not '%s'", argv[i]);
        } else if (!strcmp(a, "--max-body-memory")) {
            if (cli_parse_long(argv[++i], 1, 1L << 40, &body_memory))
                return cli_usage("serve: --max-body-memory must be a positive byte count, not "
                                 "'%s'",
                                 argv[i]);
        } else if (!strcmp(a, "--max-connections")) {
            if (cli_parse_long(argv[++i], 1, 1L << 20, &max_conns))
                return cli_usage("serve: --max-connections must be 1..1048576, not '%s'", argv[i]);
        } else if (!strcmp(a, "--timeout")) {
            if (cli_parse_long(argv[++i], 1, 86400, &timeout))
                return cli_usage("serve: --timeout must be 1..86400 seconds, not '%s'", argv[i]);
        } else if (!strcmp(a, "--api-key-reads")) {
            key_reads = 1;
        } else if (!strcmp(a, "--map-index")) {
            map_index = 1;
        } else if (!strcmp(a, "--readonly")) {
            readonly = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else {
            return cli_usage("serve: unknown argument '%s'", a);
        }
    }
    if (!dir || !*dir)
        return cli_usage("serve: no collection (-c DIR or IMGSIM_COLLECTION)");
    const char *key = getenv("IMGSIM_API_KEY");
    if (key_reads && (!key || !*key))
        return cli_usage("serve: --api-key-reads (IMGSIM_API_KEY_READS) needs IMGSIM_API_KEY");

    /* before any thread exists, so all of them inherit the mask */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    ims_error err = {0};
    ims_coll *c = NULL;
    ims_server *s = NULL;
    ims_coll_opts co = {.sessions = (int)sessions,
                        .readonly = readonly,
                        .max_pixels = (int64_t)max_pixels,
                        .load_index = !map_index};
    int rc = ims_coll_open(dir, &co, &c, &err);
    if (rc)
        return cli_fail_err(rc, &err);
    ims_server_opts so = {.listen = listen,
                          .threads = (int)threads,
                          .api_key = key,
                          .api_key_reads = key_reads,
                          .max_body = (size_t)max_body,
                          .timeout_s = (int)timeout,
                          .max_connections = (int)max_conns,
                          .max_queue = (int)max_queue,
                          .max_body_memory = (size_t)body_memory,
                          .quiet = quiet};
    if ((rc = ims_server_start(c, &so, &s, &err))) {
        ims_coll_close(c);
        return cli_fail_err(rc, &err);
    }
    printf("imgsim: serving %s on %s%s\n", dir, ims_server_url(s),
           !key || !*key ? ""
           : key_reads   ? " (every route but /healthz needs the API key)"
                         : " (writes need the API key)");
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "imgsim: %s: finishing requests in flight, then exiting\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    ims_server_stop(s);
    ims_coll_close(c);
    return CLI_OK;
}
