/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * status.c: status strings, errno conversion, and the thread-local failure
 * detail that lets libraries stay silent while tools print precise messages.
 */
#include "config.h"

#include "dml_status.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DML_ERROR_MAX 1024

static _Thread_local char dml_error_buf[DML_ERROR_MAX];
static _Thread_local dml_status_t dml_error_last = DML_OK;

const char *dml_status_string(dml_status_t status)
{
    switch (status) {
    case DML_OK:
        return "success";
    case DML_ERR_INVALID_ARG:
        return "invalid argument";
    case DML_ERR_NO_MEMORY:
        return "out of memory";
    case DML_ERR_IO:
        return "input/output error";
    case DML_ERR_NOT_FOUND:
        return "no such file or object";
    case DML_ERR_FORMAT:
        return "malformed contents";
    case DML_ERR_CHECKSUM:
        return "checksum mismatch";
    case DML_ERR_MISMATCH:
        return "incompatible inputs";
    case DML_ERR_PERMISSION:
        return "permission denied";
    case DML_ERR_NO_SPACE:
        return "no space left on device";
    case DML_ERR_EXISTS:
        return "already exists";
    case DML_ERR_MPI:
        return "MPI error";
    case DML_ERR_HDF5:
        return "HDF5 error";
    case DML_ERR_NUMERIC:
        return "non-finite number";
    case DML_ERR_INTERRUPTED:
        return "interrupted";
    case DML_ERR_UNSUPPORTED:
        return "not supported";
    case DML_ERR_REMOTE:
        return "failed on another rank";
    case DML_ERR_LAST:
        break;
    }
    return "unknown status";
}

dml_status_t dml_status_from_errno(int errnum)
{
    switch (errnum) {
    case 0:
        return DML_OK;
    case ENOMEM:
        return DML_ERR_NO_MEMORY;
    case ENOENT:
    case ENOTDIR:
        return DML_ERR_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return DML_ERR_PERMISSION;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return DML_ERR_NO_SPACE;
    case EEXIST:
        return DML_ERR_EXISTS;
    case EINVAL:
    case ERANGE:
        return DML_ERR_INVALID_ARG;
    case EINTR:
        return DML_ERR_INTERRUPTED;
    case ENOSYS:
    case EOPNOTSUPP:
        return DML_ERR_UNSUPPORTED;
    default:
        return DML_ERR_IO;
    }
}

/* Formatted into a buffer of its own first: a caller may prefix the
 * current detail, dml_error_set(st, "--model: %s", dml_error_message()). */
static void dml__error_vset(dml_status_t status, int errnum, const char *fmt, va_list ap)
{
    char buf[sizeof(dml_error_buf)];
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);

    if (n < 0)
        buf[0] = '\0';
    else if ((size_t)n >= sizeof(buf))
        n = (int)sizeof(buf) - 1;
    if (errnum != 0 && n >= 0)
        snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", strerror(errnum));
    memcpy(dml_error_buf, buf, sizeof(buf));
    dml_error_last = status;
}

dml_status_t dml_error_set(dml_status_t status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    dml__error_vset(status, 0, fmt, ap);
    va_end(ap);
    return status;
}

dml_status_t dml_error_set_errno(int errnum, const char *fmt, ...)
{
    dml_status_t status = dml_status_from_errno(errnum);
    va_list ap;

    /* errno 0 would claim "success" for a failure: call it an I/O error. */
    if (status == DML_OK)
        status = DML_ERR_IO;
    va_start(ap, fmt);
    dml__error_vset(status, errnum, fmt, ap);
    va_end(ap);
    return status;
}

const char *dml_error_message(void)
{
    if (dml_error_buf[0] == '\0' && dml_error_last != DML_OK)
        return dml_status_string(dml_error_last);
    return dml_error_buf;
}

dml_status_t dml_error_status(void)
{
    return dml_error_last;
}

void dml_error_clear(void)
{
    dml_error_buf[0] = '\0';
    dml_error_last = DML_OK;
}
