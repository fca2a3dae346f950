/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_h5.h: libdml_h5, the HDF5 and file helpers the components share (io,
 * nn, ckpt, trainer, registry, serve-batch): the process's HDF5 lock, quiet
 * HDF5 calls, attributes and whole datasets, row-range reads, the durable
 * write and HDF5 file images, output checks. A convenience library linked
 * into each library and hidden there; not installed, not part of any
 * component's public interface. Knows no component's file format.
 */
#ifndef DML_H5_H
#define DML_H5_H

#include "dml_status.h"

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* The process's HDF5 lock (HDF5 as built here is not thread-safe): taken
 * around HDF5 calls by any thread that may run beside another that calls
 * HDF5. io's dml_io_hdf5_lock() is the same lock. */
void dml__h5_lock(void);
void dml__h5_unlock(void);

/* HDF5 prints its error stack by default; a library must not. Every io/
 * entry point that calls HDF5 brackets the calls with these. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} dml__h5_quiet_t;
void dml__h5_quiet_begin(dml__h5_quiet_t *q);
void dml__h5_quiet_end(const dml__h5_quiet_t *q);

/* A file access property list for a new slurm-dml file (close it with
 * H5Pclose): HDF5's 1.8 file format, whose superblock and object headers
 * carry checksums, so that a damaged file is refused by HDF5 rather than
 * followed (HDF5 1.10 crashes on some damaged headers of its default, older
 * format). -1 on failure. */
hid_t dml__h5_fapl(void);

/* H5Fcreate(path, flags) with that property list. */
hid_t dml__h5_create(const char *path, unsigned flags);

/* Attribute helpers on an object (file or group); 0 on success, -1 if absent
 * or of the wrong kind. */
int dml__h5_attr_write_str(hid_t obj, const char *name, const char *value);
int dml__h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t len);
int dml__h5_attr_write(hid_t obj, const char *name, hid_t type, size_t n, const void *value);
int dml__h5_attr_read(hid_t obj, const char *name, hid_t type, size_t n, void *value);

/* 1-D or 2-D dataset helpers (contiguous); dims[1] == 0 means 1-D. */
int dml__h5_write(hid_t loc, const char *name, hid_t type, const uint64_t dims[2], const void *buf);
int dml__h5_read(hid_t loc, const char *name, hid_t type, uint64_t expect0, uint64_t expect1,
                 void *buf);

/* Reads rows [r0, r0 + n) (along the first dimension) of an open dataset into
 * buf, contiguous, as mtype. fspace: the dataset's file space to select on
 * (kept open by the caller), or -1 to get and release one here. 0 or -1. */
int dml__h5_read_rows(hid_t dset, hid_t fspace, hid_t mtype, uint64_t r0, uint64_t n, void *buf);

/* The same, for the dataset called name in file. */
int dml__h5_read_named_rows(hid_t file, const char *name, hid_t mtype, uint64_t r0, uint64_t n,
                            void *buf);

/* "dir/name" in a malloc'ed string, or NULL. */
char *dml__path_join(const char *dir, const char *name);

/* FNV-1a, 64 bits, of n bytes, continuing from h (start with
 * DML_FNV1A_INIT): the content hashes of datasets and models. */
#define DML_FNV1A_INIT 0xcbf29ce484222325ULL
uint64_t dml__fnv1a(uint64_t h, const void *p, size_t n);

/* mkdir -p: dir and any missing parents (mode 0777 less the umask); 0, or
 * -1 with errno. */
int dml__mkdir_p(const char *dir);

/* Removes a directory tree (like rm -rf, links not followed); 0 (also when
 * path is absent) or -1 with errno. */
int dml__rmtree(const char *path);

/* fsync of a file or directory by path; errno-style status with detail. */
dml_status_t dml__fsync_path(const char *path);

/* The durable-write idiom, one helper for every file the tools write: the
 * file is written under dml__tmp_name(path) ("path.tmp.<pid>", beside it on
 * the same file system), then dml__commit_file fsyncs it, moves it to path
 * and fsyncs the directory, so that a crash leaves either the old file or the
 * whole new one, never half of one. exclusive: link() instead of rename(),
 * DML_ERR_EXISTS (no detail) if path exists: of processes racing to create
 * it, one wins. The temporary is removed whatever happens. */
void dml__tmp_name(const char *path, char *buf, size_t len);
dml_status_t dml__commit_file(const char *tmp, const char *path, int exclusive);

/* n bytes at buf written as the file at path by that idiom, the whole size
 * reserved (posix_fallocate) before the first byte: a disk too full fails
 * at once with the OS's reason ("path: cannot write the <what> (n bytes): No
 * space left on device"), and no temporary is ever left behind. */
dml_status_t dml__write_durably(const char *path, const void *buf, size_t n, const char *what,
                                int exclusive);
/* Its two halves, for a writer with a step between them (an inference part's
 * crash hook): the bytes written and fsync'ed as tmp (removed on failure;
 * messages name path), then moved into place as dml__commit_file does. */
dml_status_t dml__write_tmp(const char *tmp, const char *path, const void *buf, size_t n,
                            const char *what);
dml_status_t dml__commit_written(const char *tmp, const char *path, int exclusive);

/* HDF5 files the tools write whole (model, predictions, inference parts) are
 * built in memory (the core driver, no backing store) and written by
 * dml__write_durably: HDF5 1.10 never meets a full disk for them. It cannot
 * take one: an H5Fclose that fails to flush leaves the file to the library's
 * termination, which frees it again (a SIGSEGV in MPI_Finalize, the result
 * lost). dml__h5_create_image: a new empty file in memory, -1 on failure;
 * dml__h5_image_take: its bytes (malloc'd, the caller frees them), and the
 * file closed whatever happens; dml__h5_image_commit: take, then write to
 * path (the file closed whatever happens). */
hid_t dml__h5_create_image(void);
dml_status_t dml__h5_image_take(hid_t f, void **buf_out, size_t *n_out);
dml_status_t dml__h5_image_commit(hid_t f, const char *path, const char *what, int exclusive);

/* ---- outputs (output.c) ------------------------------------------------ */

/* The root "format" attribute of the HDF5 file at path into buf ("" if it
 * has none): 0; -1 if path is no HDF5 file. */
int dml__h5_file_format(const char *path, char *buf, size_t len);

/* Before a tool writes the HDF5 file path of kind `format` (its root
 * "format" attribute; `what` names it in messages): DML_OK if nothing is
 * there, or an empty file, or a file of that same kind that is none of
 * inputs[0..ninputs) (paths; NULLs skipped), and path's directory takes a
 * new file. Otherwise DML_ERR_EXISTS naming what is there, or the OS's
 * reason the directory does not take a file. Never writes path. */
dml_status_t dml__output_check(const char *path, const char *format, const char *what,
                               const char *const *inputs, size_t ninputs);

/* The same for a text output, whose kind is `marker` within its first 4 KiB
 * (a metrics file's "{\"type\": ", a report's format line). */
dml_status_t dml__output_check_text(const char *path, const char *marker, const char *what,
                                    const char *const *inputs, size_t ninputs);

/* Whether a new file can be made beside path (a probe file created and
 * removed there): DML_OK, or the OS's reason naming path and `what`. */
dml_status_t dml__output_probe(const char *path, const char *what);

/* After H5Fcreate(path) failed: the OS's reason (the create tried by hand,
 * and undone), naming path and `what` ("the model file"). */
dml_status_t dml__create_failed(const char *path, const char *what);

#endif /* DML_H5_H */
