/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * reader.c: reading a range of samples in the dataset's own order, without
 * MPI (batch inference: each task and rank reads its slice with independent,
 * serial HDF5 I/O), and dml_io.h's names for reading the statistics group
 * (h5/stats.c's).
 */
#include "dml_h5_stats.h"
#include "io_private.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The statistics group's layout is h5/stats.c's, which model files share;
 * these keep dml_io.h's names for it. */
dml_status_t dml_stats_read_h5(int64_t group, uint64_t features, uint32_t num_classes,
                               dml_stats_t *st)
{
    return dml__stats_read_h5(group, features, num_classes, st);
}

void dml_stats_free(dml_stats_t *st)
{
    dml__stats_release(st);
}

struct dml_dataset_reader {
    const dml_dataset_t *ds;
    hid_t *file, *dx, *dy, *did;
    uint32_t S;
};

static void dml__reader_close_shard(dml_dataset_reader_t *r, uint32_t s)
{
    if (r->dx[s] >= 0)
        H5Dclose(r->dx[s]);
    if (r->dy[s] >= 0)
        H5Dclose(r->dy[s]);
    if (r->did[s] >= 0)
        H5Dclose(r->did[s]);
    if (r->file[s] >= 0)
        H5Fclose(r->file[s]);
    r->file[s] = r->dx[s] = r->dy[s] = r->did[s] = -1;
}

dml_status_t dml_dataset_reader_open(const dml_dataset_t *ds, dml_dataset_reader_t **r_out)
{
    dml_dataset_reader_t *r = calloc(1, sizeof(*r));
    uint32_t s;

    *r_out = NULL;
    if (r == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for a reader", ds->dir);
    r->ds = ds;
    r->S = ds->shards;
    r->file = malloc(sizeof(hid_t) * r->S);
    r->dx = malloc(sizeof(hid_t) * r->S);
    r->dy = malloc(sizeof(hid_t) * r->S);
    r->did = malloc(sizeof(hid_t) * r->S);
    if (!r->file || !r->dx || !r->dy || !r->did) {
        free(r->file), free(r->dx), free(r->dy), free(r->did), free(r);
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for a reader", ds->dir);
    }
    for (s = 0; s < r->S; s++)
        r->file[s] = r->dx[s] = r->dy[s] = r->did[s] = -1;
    *r_out = r;
    return DML_OK;
}

void dml_dataset_reader_close(dml_dataset_reader_t *r)
{
    dml__h5_quiet_t q;
    uint32_t s;

    if (r == NULL)
        return;
    dml__h5_quiet_begin(&q);
    for (s = 0; s < r->S; s++)
        dml__reader_close_shard(r, s);
    dml__h5_quiet_end(&q);
    free(r->file), free(r->dx), free(r->dy), free(r->did), free(r);
}

/* Shards are opened on first use (a task reads a few of many), and checked
 * against the index then. */
static dml_status_t dml__reader_shard(dml_dataset_reader_t *r, uint32_t s)
{
    const dml_dataset_t *ds = r->ds;
    dml_status_t st;
    char *path;

    if (r->file[s] >= 0)
        return DML_OK;
    path = dml__path_join(ds->dir, ds->shard_names[s]);
    if (path == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", ds->dir);
    r->file[s] = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->file[s] < 0) {
        char why[256];
        st = dml__open_failure(path, why, sizeof(why));
        st = st == DML_ERR_NOT_FOUND ? dml_error_set(st, "%s: shard %u is missing", path, s)
                                     : dml_error_set(st, "%s: %s", path, why);
        goto out;
    }
    if ((st = dml__shard_check(ds, s, r->file[s], path, NULL, NULL, NULL)) != DML_OK)
        goto out;
    r->dx[s] = H5Dopen2(r->file[s], "x", H5P_DEFAULT);
    r->dy[s] = H5Dopen2(r->file[s], "y", H5P_DEFAULT);
    r->did[s] = H5Dopen2(r->file[s], "id", H5P_DEFAULT);
    if (r->dx[s] < 0 || r->dy[s] < 0 || r->did[s] < 0)
        st = dml_error_set(DML_ERR_FORMAT, "%s: cannot open its datasets", path);
out:
    if (st != DML_OK)
        dml__reader_close_shard(r, s);
    free(path);
    return st;
}

dml_status_t dml_dataset_reader_read(dml_dataset_reader_t *r, uint64_t first, uint64_t n, void *x,
                                     int32_t *y, uint64_t *id)
{
    const dml_dataset_t *ds = r->ds;
    const size_t xsz = dml_dtype_size(ds->schema.dtype) * dml_schema_features(&ds->schema);
    uint64_t pos = first, end = first + n, k0, k1, done;
    dml_status_t st = DML_OK;
    dml__h5_quiet_t q;
    uint32_t s = 0;

    if (first > ds->samples || n > ds->samples - first)
        return dml_error_set(DML_ERR_INVALID_ARG, "%s: samples [%llu, %llu) are past its %llu",
                             ds->dir, (unsigned long long)first, (unsigned long long)end,
                             (unsigned long long)ds->samples);
    while (s < ds->shards && ds->shard_start[s + 1] <= pos)
        s++;
    dml__h5_quiet_begin(&q);
    for (; pos < end && s < ds->shards; s++) {
        if ((st = dml__reader_shard(r, s)) != DML_OK)
            break;
        k0 = pos - ds->shard_start[s];
        k1 = (end < ds->shard_start[s + 1] ? end : ds->shard_start[s + 1]) - ds->shard_start[s];
        done = pos - first;
        if ((x != NULL && dml__h5_read_rows(r->dx[s], -1, dml__h5_type(ds->schema.dtype), k0,
                                            k1 - k0, (char *)x + done * xsz) != 0) ||
            (y != NULL &&
             dml__h5_read_rows(r->dy[s], -1, H5T_NATIVE_INT32, k0, k1 - k0, y + done) != 0) ||
            (id != NULL &&
             dml__h5_read_rows(r->did[s], -1, H5T_NATIVE_UINT64, k0, k1 - k0, id + done) != 0)) {
            st = dml_error_set(DML_ERR_IO, "%s/%s: cannot read rows %llu-%llu", ds->dir,
                               ds->shard_names[s], (unsigned long long)k0,
                               (unsigned long long)k1 - 1);
            break;
        }
        pos += k1 - k0;
    }
    dml__h5_quiet_end(&q);
    return st;
}

uint32_t dml_dataset_shard_of(const dml_dataset_t *ds, uint64_t sample)
{
    uint32_t lo = 0, hi = ds->shards;

    /* the last shard whose start is <= sample */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ds->shard_start[mid] <= sample)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}
