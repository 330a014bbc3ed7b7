/* SPDX-License-Identifier: MIT */
/* cmd_embed.c — placeholder until the module behind it lands. */
#include "cli_int.h"

int cmd_embed(int argc, char **argv)
{
    (void)argc;
    return cli_fail("%s: not implemented yet", argv[0]);
}
