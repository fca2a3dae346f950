/*
 * io_private.h: what io/'s source files share and its users must not see:
 * the dataset object, HDF5 helpers that keep HDF5 from printing, checksums.
 */
#ifndef DML_IO_PRIVATE_H
#define DML_IO_PRIVATE_H

#include "dml_io.h"

#include <hdf5.h>

struct dml_dataset {
    char *dir;
    dml_schema_t schema;
    dml_stats_t stats;
    uint64_t samples;
    uint32_t shards;
    char (*shard_names)[DML_DATASET_NAME_MAX];
    uint64_t *shard_samples;
    uint64_t *shard_start; /* shards + 1 prefix sums of shard_samples */
    uint32_t *shard_crc;
    char content_hash[17];
    char *source;
};

/* HDF5 prints its error stack by default; a library must not. Every io/
 * entry point that calls HDF5 brackets the calls with these. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} dml__h5_quiet_t;
void dml__h5_quiet_begin(dml__h5_quiet_t *q);
void dml__h5_quiet_end(const dml__h5_quiet_t *q);

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

/* The HDF5 memory type for a dtype. */
hid_t dml__h5_type(dml_dtype_t t);

/* "dir/name" in a malloc'ed string, or NULL. */
char *dml__path_join(const char *dir, const char *name);

/* fsync of a file or directory by path; errno-style status with detail. */
dml_status_t dml__fsync_path(const char *path);

/* Removes a directory tree (like rm -rf); 0 or -1 with errno. */
int dml__rmtree(const char *path);

/* The content hash over schema and shard table (FNV-1a, 64 bits, as hex). */
void dml__content_hash(const dml_schema_t *s, uint32_t shards, const uint64_t *samples,
                       const uint32_t *crc, char out[17]);

/* Checks shard i's datasets in an open file against the index. Returns the
 * status of the first problem, reporting each through cb. */
dml_status_t dml__shard_check(const dml_dataset_t *ds, uint32_t i, hid_t file, const char *path,
                              dml_problem_cb_t cb, void *arg, uint64_t *problems);

void dml__stats_free(dml_stats_t *st);
void dml__schema_free(dml_schema_t *s);

#endif /* DML_IO_PRIVATE_H */
