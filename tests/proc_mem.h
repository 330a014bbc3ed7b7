/* SPDX-License-Identifier: MIT */
/*
 * proc_mem.h — this process's memory from /proc for tests: a field of
 * /proc/self/status in KiB, and resetting the peak (VmHWM) to the current
 * RSS so that a peak can be measured around one step. Header-only.
 */
#ifndef IMS_TESTS_PROC_MEM_H
#define IMS_TESTS_PROC_MEM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of a /proc/self/status line ("VmRSS:", "VmHWM:") in KiB; -1 if
 * missing. */
static long proc_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n))
            v = atol(line + n);
    if (f)
        fclose(f);
    return v;
}

/* Reset VmHWM to the current RSS; 1 if the kernel allows it. */
static int proc_reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    int ok = f && fputs("5", f) >= 0;
    if (f && fclose(f))
        ok = 0;
    return ok;
}

#endif
