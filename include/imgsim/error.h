/* SPDX-License-Identifier: MIT */
/*
 * error.h — imgsim error codes and the handle-less error record.
 *
 * Every function of the library returns an int: IMS_OK (0) on success, a
 * negative IMS_E* code on failure. The codes and their default messages come
 * from one X-macro table, so the enum and ims_strerror() never drift apart.
 *
 * Functions without a handle take an optional `ims_error *err` (may be NULL);
 * on failure they fill it with the code and a one-line message that says what
 * failed and where (file, offset, layer name...). Calls on an index handle
 * leave their message in thread-local storage instead, read with
 * ims_hnsw_errmsg() on the failing thread (index.h).
 */
#ifndef IMGSIM_ERROR_H
#define IMGSIM_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, default message). Values are frozen and append-only. */
#define IMS_ERRNO_MAP(X)                                                       \
    X(OK, 0, "success")                                                        \
    X(EINVAL, -1, "invalid argument")                                          \
    X(ENOMEM, -2, "out of memory")                                             \
    X(EIO, -3, "input/output error")                                           \
    X(ECORRUPT, -4, "corrupt or truncated data")                               \
    X(EVERSION, -5, "unsupported format version")                              \
    X(EUNSUPPORTED, -6, "unsupported feature")                                 \
    X(ENOTFOUND, -7, "not found")                                              \
    X(EEXIST, -8, "already exists")                                            \
    X(ETOOBIG, -9, "too big")                                                  \
    X(EFORMAT, -10, "unknown or wrong file format")                            \
    X(EFULL, -11, "capacity exhausted")                                        \
    X(EBUSY, -12, "resource busy")                                             \
    X(ESTATE, -13, "operation not valid in this state")

enum ims_errno {
#define IMS__ERR_ENUM(name, val, msg) IMS_##name = (val),
    IMS_ERRNO_MAP(IMS__ERR_ENUM)
#undef IMS__ERR_ENUM
};

#define IMS_ERROR_MSG_MAX 512

/* A handle-less error record: code plus a fixed message buffer. */
typedef struct ims_error {
    int code;                    /* IMS_OK or a negative IMS_E* code */
    char msg[IMS_ERROR_MSG_MAX]; /* NUL-terminated, one line */
} ims_error;

/* Name of a code ("IMS_ECORRUPT"); "IMS_E?" for unknown codes. Static storage. */
const char *ims_errname(int code);

/* Default message of a code ("corrupt or truncated data"). Static storage. */
const char *ims_strerror(int code);

/*
 * Fill err (if not NULL) with code and a printf-style message; returns code,
 * so callers can write `return ims_error_set(err, IMS_EIO, "%s: ...", path);`.
 */
int ims_error_set(ims_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like ims_error_set(), appending ": <strerror(errnum)>" (errno copied in). */
int ims_error_set_errno(ims_error *err, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Reset err (if not NULL) to IMS_OK with an empty message. */
void ims_error_clear(ims_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_ERROR_H */
