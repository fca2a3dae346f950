/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * reuse_vfd.h: ckpt/'s private HDF5 file driver that creates a file over an
 * existing one's blocks instead of truncating it (reuse_vfd.c), and the
 * POSIX write that it and the checkpoint writer share.
 */
#ifndef DML_REUSE_VFD_H
#define DML_REUSE_VFD_H

#include <hdf5.h>
#include <sys/types.h>

/* Writes all of len bytes at off (retrying short writes and EINTR); 0, or
 * -1 with errno (EIO for a write of nothing). */
int dml__pwrite_all(int fd, const char *p, size_t len, off_t off);

/* Sets the driver on a file access property list: 0, or -1 if HDF5 refused.
 * Not thread-safe (nor is HDF5 as Debian builds it). */
int dml__reuse_fapl(hid_t fapl);

#endif /* DML_REUSE_VFD_H */
