/* SPDX-License-Identifier: MIT */
/*
 * cli_int.h — shared by the imgsim subcommands (src/cli/cmd_*.c).
 * The CLI uses only the public headers in include/imgsim/.
 * Exit codes: 0 success, 1 bad input (one line: what and where), 2 usage.
 */
#ifndef IMS_CLI_INT_H
#define IMS_CLI_INT_H

#include <stdio.h>

#include "imgsim/error.h"
#include "imgsim/imgsim.h"

#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 2

/* Each subcommand: argv[0] is the subcommand name. Returns an exit code. */
int cmd_model(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_bench_index(int argc, char **argv);
int cmd_ingest(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_embed_all(int argc, char **argv);
int cmd_coll_index(int argc, char **argv); /* `index -c ...` */
int cmd_build(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Print "imgsim: <msg>" to stderr and return CLI_FAIL / CLI_USAGE. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Report an ims_error (or the code's default message) and return CLI_FAIL. */
int cli_fail_err(int rc, const ims_error *err);

/* Strict number parsing: whole string, range-checked; 0 ok, -1 bad. */
int cli_parse_long(const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *s, double *out);

/* True if argv has -h or --help. */
int cli_wants_help(int argc, char **argv);

/* Write s to f as a JSON string literal (quotes, backslashes and control
 * characters escaped). The CLI's copy of core's ims__json_str: the CLI sees
 * only the public headers. */
void cli_json_str(FILE *f, const char *s);

#endif /* IMS_CLI_INT_H */
