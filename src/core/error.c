/* SPDX-License-Identifier: MIT */
/* error.c — the error table (see include/imgsim/error.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "imgsim/error.h"

const char *ims_errname(int code)
{
    switch (code) {
#define IMS__ERR_NAME(name, val, msg)                                          \
    case val:                                                                  \
        return "IMS_" #name;
        IMS_ERRNO_MAP(IMS__ERR_NAME)
#undef IMS__ERR_NAME
    }
    return "IMS_E?";
}

const char *ims_strerror(int code)
{
    switch (code) {
#define IMS__ERR_MSG(name, val, msg)                                           \
    case val:                                                                  \
        return msg;
        IMS_ERRNO_MAP(IMS__ERR_MSG)
#undef IMS__ERR_MSG
    }
    return "unknown error";
}

static int vset(ims_error *err, int code, int errnum, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    if (n < 0)
        err->msg[0] = '\0', n = 0;
    if (errnum && (size_t)n < sizeof err->msg)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(errnum));
    return code;
}

int ims_error_set(ims_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, 0, fmt, ap);
    va_end(ap);
    return code;
}

int ims_error_set_errno(ims_error *err, int code, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, errnum, fmt, ap);
    va_end(ap);
    return code;
}

void ims_error_clear(ims_error *err)
{
    if (err) {
        err->code = IMS_OK;
        err->msg[0] = '\0';
    }
}
