/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_status.h: the one status type of slurm-dml, and the detail message that
 * goes with a failure.
 *
 * Every library function returns a dml_status_t: DML_OK (0) or a negative
 * error. Libraries never print; where a failure has a subject (a file, a
 * dataset, an option) the library records "subject: cause" with
 * dml_error_set() and the tool that handles the error prints it once with
 * dml_error_message(). The detail is thread-local, like errno, so a prefetch
 * thread cannot overwrite the main thread's message.
 */
#ifndef DML_STATUS_H
#define DML_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports what this header declares, and nothing else (it is
 * built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

typedef enum {
    DML_OK = 0,
    DML_ERR_INVALID_ARG = -1, /* a caller's or user's value is out of range */
    DML_ERR_NO_MEMORY = -2,
    DML_ERR_IO = -3,        /* a read, write, fsync or rename failed */
    DML_ERR_NOT_FOUND = -4, /* no such file, dataset, node or checkpoint */
    DML_ERR_FORMAT = -5,    /* a file's contents are not what they must be */
    DML_ERR_CHECKSUM = -6,  /* stored and computed checksums differ */
    DML_ERR_MISMATCH = -7,  /* two sound things do not fit (model vs data) */
    DML_ERR_PERMISSION = -8,
    DML_ERR_NO_SPACE = -9, /* disk full or file size limit */
    DML_ERR_EXISTS = -10,
    DML_ERR_MPI = -11,
    DML_ERR_HDF5 = -12,
    DML_ERR_NUMERIC = -13,     /* NaN or Inf where a number must be finite */
    DML_ERR_INTERRUPTED = -14, /* stopped on request (signal, time limit) */
    DML_ERR_UNSUPPORTED = -15, /* valid, but not built in or not available */
    DML_ERR_REMOTE = -16,      /* another MPI rank failed; it names the cause */
    DML_ERR_LAST = -17         /* one past the last code; not a status */
} dml_status_t;

/* A short, constant description of a status ("no such file or object"). */
const char *dml_status_string(dml_status_t status);

/* The status for an errno value, converted where the system call failed. */
dml_status_t dml_status_from_errno(int errnum);

/*
 * Records the detail of a failure for the calling thread and returns status,
 * so that a library can write `return dml_error_set(DML_ERR_FORMAT, "%s: ...",
 * path);`. The message is truncated (never overflowed) at 1023 bytes.
 */
dml_status_t dml_error_set(dml_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Like dml_error_set, with ": <strerror(errnum)>" appended. */
dml_status_t dml_error_set_errno(int errnum, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The calling thread's last detail; if the last failure recorded none, the
 * status string of the last status given to dml_error_set (or "" if none).
 */
const char *dml_error_message(void);

/* The status recorded with the last detail (DML_OK after dml_error_clear). */
dml_status_t dml_error_status(void);

void dml_error_clear(void);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DML_STATUS_H */
