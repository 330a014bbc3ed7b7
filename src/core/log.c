/* SPDX-License-Identifier: MIT */
/* log.c — levelled logging to stderr or a user handler. */
#include <stdarg.h>
#include <stdio.h>

#include "imgsim/imgsim.h"

/* The level is atomic: ims_init sets it while other threads may log. The
 * handler is set once, before any thread logs (imgsim.h). */
static int g_level = IMS_LOG_WARN;
static ims_log_fn g_fn;
static void *g_ud;

void ims_log_set_level(int level) { __atomic_store_n(&g_level, level, __ATOMIC_RELAXED); }
int ims_log_get_level(void) { return __atomic_load_n(&g_level, __ATOMIC_RELAXED); }

void ims_log_set_handler(ims_log_fn fn, void *ud)
{
    g_fn = fn;
    g_ud = ud;
}

void ims_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    char buf[1024];
    va_list ap;

    if (level > ims_log_get_level())
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_fn)
        g_fn(level, buf, g_ud);
    else
        fprintf(stderr, "imgsim: %s: %s\n",
                names[level < 0 ? 0 : level > 3 ? 3 : level], buf);
}
