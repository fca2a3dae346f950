/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * io_private.h: what io/'s source files share and its users must not see:
 * the dataset object, HDF5 helpers that keep HDF5 from printing, checksums.
 */
#ifndef DML_IO_PRIVATE_H
#define DML_IO_PRIVATE_H

#include "dml_h5.h"
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

/* The HDF5 memory type for a dtype. */
hid_t dml__h5_type(dml_dtype_t t);

/* The content hash over schema and shard table (FNV-1a, 64 bits, as hex). */
void dml__content_hash(const dml_schema_t *s, uint32_t shards, const uint64_t *samples,
                       const uint32_t *crc, char out[17]);

/* Checks shard i's datasets in an open file against the index. Returns the
 * status of the first problem, reporting each through cb. */
dml_status_t dml__shard_check(const dml_dataset_t *ds, uint32_t i, hid_t file, const char *path,
                              dml_problem_cb_t cb, void *arg, uint64_t *problems);

/* After H5Fopen(path) failed: why (for "<path>: <why>"), into why (len
 * bytes), and its status. The OS's reason where the file cannot be opened
 * at all ("missing: No such file or directory", "cannot be opened:
 * Permission denied", with the errno's status); else it opens but HDF5
 * cannot read it: DML_ERR_FORMAT, "not a readable HDF5 file (truncated or
 * corrupt; N bytes)". */
dml_status_t dml__open_failure(const char *path, char *why, size_t len);

void dml__schema_free(dml_schema_t *s);

#endif /* DML_IO_PRIVATE_H */
