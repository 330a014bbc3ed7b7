/* SPDX-License-Identifier: MIT */
/* hnsw_error.c — the error message of the last failing call on a handle. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "index_int.h"

int ims__hnsw_err(ims_hnsw *h, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&h->err_lock);
    vsnprintf(h->errmsg, sizeof h->errmsg, fmt, ap);
    pthread_mutex_unlock(&h->err_lock);
    va_end(ap);
    return code;
}

const char *ims_hnsw_errmsg(ims_hnsw *h)
{
    return h ? h->errmsg : "no index";
}
