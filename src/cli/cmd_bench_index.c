/* SPDX-License-Identifier: MIT */
/* cmd_bench_index.c — placeholder until the module behind it lands. */
#include "cli_int.h"

int cmd_bench_index(int argc, char **argv)
{
    (void)argc;
    return cli_fail("%s: not implemented yet", argv[0]);
}
