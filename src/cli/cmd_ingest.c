/* SPDX-License-Identifier: MIT */
/*
 * cmd_ingest.c — `imgsim ingest`: a folder of images (+ metadata CSV) into a
 * collection's catalogue.
 *
 *   imgsim ingest -c COLLECTION DIR [--metadata CSV (--id-column COL |
 *                 --file-column COL)...] [--max-pixels N] [--threads N] [--quiet] [--json]
 *
 * Per-file problems (rejected, duplicate, unmatched rows, vanished) are one
 * line each on stderr ("imgsim: ingest: PATH: kind: message") and do not
 * stop the run: the exit status is 0 when the catalogue was updated. A bad
 * CSV, an unreadable DIR or a catalogue that cannot be opened is exit 1
 * with one line, and nothing is imported.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_int.h"
#include "imgsim/catalog.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: imgsim ingest -c COLLECTION DIR [--metadata CSV [--id-column COL]\n"
            "                     [--file-column COL]] [--max-pixels N] [--threads N]\n"
            "                     [--quiet] [--json]\n\n"
            "Add the images under DIR to the collection's catalogue (COLLECTION/catalog.sqlite,\n"
            "created if missing). Each file is decoded once to check it, hashed (SHA-256) and\n"
            "stored content-addressed in COLLECTION/images/. The category of an image is its\n"
            "top-level folder under DIR. Exact duplicates are kept once; corrupt, truncated,\n"
            "oversized and unsupported files, and links leading outside DIR, are recorded as\n"
            "rejected and the run goes on. Re-running skips unchanged files (same size and\n"
            "mtime), picks up new and changed ones, and marks vanished ones.\n\n"
            "  -c, --collection DIR  the collection directory\n"
            "  --metadata CSV        RFC 4180 CSV with a header row; every column is kept as\n"
            "                        the item's metadata, a 'name' column names the item\n"
            "  --id-column COL       product id column; joins rows to files by file stem\n"
            "                        (unless --file-column is given)\n"
            "  --file-column COL     column with the file name (bare, or relative to DIR)\n"
            "  --max-pixels N        refuse images over N pixels (default 100000000)\n"
            "  --threads N           threads reading, hashing and checking files ahead of\n"
            "                        the catalogue (default: one per CPU; same result)\n"
            "  --quiet               no per-file report lines on stderr\n"
            "  --json                print the summary as one JSON object on stdout\n\n"
            "exit status: 0 ok (even with rejected files), 1 bad input, 2 usage\n");
}

typedef struct cli_ud {
    int quiet;
    ims_progress *bar;
    int tty;
} cli_ud;

static void on_report(void *ud, const char *kind, const char *path, const char *msg)
{
    cli_ud *u = ud;
    if (u->quiet)
        return;
    if (u->tty && u->bar)
        fputs("\r\033[K", stderr); /* clear the bar's line; it is redrawn */
    fprintf(stderr, "imgsim: ingest: %s: %s: %s\n", path, kind, msg);
}

static void on_progress(void *ud, int64_t done, int64_t total)
{
    cli_ud *u = ud;
    if (!u->tty)
        return;
    if (!u->bar)
        u->bar = ims_progress_new("ingest", (uint64_t)total);
    ims_progress_update(u->bar, (uint64_t)done);
}

static void print_json(const char *coll, const char *dir, const ims_ingest_summary *s, double secs)
{
    printf("{\"collection\":");
    cli_json_str(stdout, coll);
    printf(",\"dir\":");
    cli_json_str(stdout, dir);
    printf(",\"scanned\":%lld,\"accepted\":%lld,\"unchanged\":%lld,\"duplicates\":%lld,"
           "\"rejected\":%lld,\"rejected_by_reason\":{",
           (long long)s->scanned, (long long)s->accepted, (long long)s->unchanged,
           (long long)s->duplicates, (long long)s->rejected);
    for (int i = 0; i < IMS_REJECT__COUNT; i++)
        printf("%s\"%s\":%lld", i ? "," : "", ims_reject_reason_key(i), (long long)s->by_reason[i]);
    printf("},\"vanished\":%lld,\"csv_rows\":%lld,\"rows_without_image\":%lld,"
           "\"images_without_row\":%lld,\"total_accepted\":%lld,\"seconds\":%.3f}\n",
           (long long)s->vanished, (long long)s->csv_rows, (long long)s->rows_without_image,
           (long long)s->images_without_row, (long long)s->total_accepted, secs);
}

static void print_text(const ims_ingest_summary *s, double secs)
{
    printf("scanned %lld files in %.1f s: %lld accepted, %lld unchanged, %lld duplicates, "
           "%lld rejected",
           (long long)s->scanned, secs, (long long)s->accepted, (long long)s->unchanged,
           (long long)s->duplicates, (long long)s->rejected);
    const char *sep = " (";
    for (int i = 0; i < IMS_REJECT__COUNT; i++)
        if (s->by_reason[i]) {
            printf("%s%s %lld", sep, ims_reject_reason_name(i), (long long)s->by_reason[i]);
            sep = ", ";
        }
    printf("%s, %lld vanished\n", s->rejected ? ")" : "", (long long)s->vanished);
    if (s->csv_rows || s->rows_without_image || s->images_without_row)
        printf("metadata: %lld rows, %lld without image, %lld images without row\n",
               (long long)s->csv_rows, (long long)s->rows_without_image,
               (long long)s->images_without_row);
    printf("catalogue: %lld accepted items\n", (long long)s->total_accepted);
}

int cmd_ingest(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    const char *coll = NULL, *dir = NULL;
    ims_ingest_opts o = {0};
    int json = 0;
    cli_ud u = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int needs = !strcmp(a, "-c") || !strcmp(a, "--collection") || !strcmp(a, "--metadata") ||
                    !strcmp(a, "--id-column") || !strcmp(a, "--file-column") ||
                    !strcmp(a, "--max-pixels") || !strcmp(a, "--threads");
        if (needs && i + 1 >= argc)
            return cli_usage("ingest: %s needs a value", a);
        if (!strcmp(a, "-c") || !strcmp(a, "--collection")) {
            coll = argv[++i];
        } else if (!strcmp(a, "--metadata")) {
            o.metadata_csv = argv[++i];
        } else if (!strcmp(a, "--id-column")) {
            o.id_column = argv[++i];
        } else if (!strcmp(a, "--file-column")) {
            o.file_column = argv[++i];
        } else if (!strcmp(a, "--max-pixels")) {
            long v;
            if (cli_parse_long(argv[++i], 1, 1L << 40, &v))
                return cli_usage("ingest: --max-pixels must be a positive integer, not '%s'",
                                 argv[i]);
            o.max_pixels = v;
        } else if (!strcmp(a, "--threads")) {
            long v;
            if (cli_parse_long(argv[++i], 0, 1024, &v))
                return cli_usage("ingest: --threads must be 0..1024, not '%s'", argv[i]);
            o.threads = (int)v;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            u.quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("ingest: unknown option '%s'", a);
        } else if (!dir) {
            dir = a;
        } else {
            return cli_usage("ingest: one DIR only ('%s' and '%s')", dir, a);
        }
    }
    if (!coll)
        return cli_usage("ingest: -c COLLECTION is required");
    if (!dir)
        return cli_usage("ingest: DIR is required");
    if ((o.id_column || o.file_column) && !o.metadata_csv)
        return cli_usage("ingest: --id-column/--file-column need --metadata");
    if (o.metadata_csv && !o.id_column && !o.file_column)
        return cli_usage("ingest: --metadata needs --id-column or --file-column");
    u.tty = isatty(STDERR_FILENO);
    o.report = on_report;
    o.progress = on_progress;
    o.ud = &u;

    ims_error err;
    ims_catalog *c;
    int rc = ims_catalog_open(coll, IMS_CATALOG_CREATE, &c, &err);
    if (rc)
        return cli_fail_err(rc, &err);
    ims_ingest_summary sum;
    double t0 = ims_now();
    rc = ims_catalog_ingest(c, dir, &o, &sum, &err);
    double secs = ims_now() - t0;
    if (u.bar)
        ims_progress_finish(u.bar);
    ims_catalog_close(c);
    if (rc)
        return cli_fail_err(rc, &err);
    if (json)
        print_json(coll, dir, &sum, secs);
    else
        print_text(&sum, secs);
    return CLI_OK;
}
