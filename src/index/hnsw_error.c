/* SPDX-License-Identifier: MIT */
/*
 * hnsw_error.c — the message of the calling thread's last failed index call.
 *
 * A handle is shared by many threads, so a message stored in the handle
 * would be overwritten by one thread's failure while another reads its
 * own. The message therefore lives in thread-local storage: each thread
 * sees only the message of its own last failed call, on any handle, and
 * no lock is needed.
 */
#include <stdarg.h>
#include <stdio.h>

#include "index_int.h"

static _Thread_local char tl_msg[IMS_ERROR_MSG_MAX];

int ims__hnsw_err(ims_hnsw *h, int code, const char *fmt, ...)
{
    (void)h;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *ims_hnsw_errmsg(ims_hnsw *h)
{
    if (!h)
        return "no index";
    return tl_msg[0] ? tl_msg : "no error";
}
