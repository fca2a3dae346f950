/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dataset.c: opening a dataset's index and validating its shards against it.
 *
 * The index is the dataset's commit record: the writer writes it last, so a
 * directory without a readable index is no dataset. Validation trusts nothing
 * in a shard file: every dimension, type and byte is compared with the index.
 */
#include "config.h"

#include "dml_crc.h"
#include "dml_h5_stats.h"
#include "io_private.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

const char *dml_dtype_name(dml_dtype_t t)
{
    return t == DML_DTYPE_UINT8 ? "uint8" : t == DML_DTYPE_FLOAT32 ? "float32" : "?";
}

size_t dml_dtype_size(dml_dtype_t t)
{
    return t == DML_DTYPE_UINT8 ? 1 : 4;
}

uint64_t dml_schema_features(const dml_schema_t *s)
{
    uint64_t f = 1;
    int d;

    for (d = 0; d < s->rank; d++)
        f *= s->shape[d];
    return f;
}

int dml_stats_bin(const dml_stats_t *st, uint64_t f, double v)
{
    double lo = st->hist_lo[f], hi = st->hist_hi[f];
    double b;

    if (!(hi > lo))
        return 0;
    b = (v - lo) / (hi - lo) * DML_DATASET_HIST_BINS;
    if (!(b >= 0)) /* also NaN */
        return 0;
    if (b >= DML_DATASET_HIST_BINS)
        return DML_DATASET_HIST_BINS - 1;
    return (int)b;
}

void dml__schema_free(dml_schema_t *s)
{
    free(s->class_names);
    s->class_names = NULL;
}

void dml_dataset_close(dml_dataset_t *ds)
{
    if (ds == NULL)
        return;
    dml__stats_release(&ds->stats);
    dml__schema_free(&ds->schema);
    free(ds->shard_names);
    free(ds->shard_samples);
    free(ds->shard_start);
    free(ds->shard_crc);
    free(ds->source);
    free(ds->dir);
    free(ds);
}

dml_status_t dml__open_failure(const char *path, char *why, size_t len)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC), e;
    dml_status_t st;

    if (fd < 0) {
        e = errno;
        st = dml_status_from_errno(e);
        snprintf(why, len, "%s: %s", e == ENOENT ? "missing" : "cannot be opened", strerror(e));
        /* the caller names the file: "<path>: cannot be opened: Permission denied" */
        return st == DML_OK ? DML_ERR_IO : st;
    }
    if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(why, len, "a directory, not an HDF5 file");
    else
        snprintf(why, len, "not a readable HDF5 file (truncated or corrupt; %lld bytes)",
                 fstat(fd, &sb) == 0 ? (long long)sb.st_size : -1LL);
    close(fd);
    return DML_ERR_FORMAT;
}

/* The index's format, version and schema attributes into ds, the shard
 * count included: what the sizes of its tables follow from. */
static dml_status_t dml__index_read_schema(dml_dataset_t *ds, hid_t f, const char *path)
{
    char buf[256], dtype[32];
    uint32_t u32;
    uint64_t shape[DML_DATASET_MAX_RANK], nf, nshards;
    int32_t version, rank, bins;

    if (dml__h5_attr_read_str(f, "format", buf, sizeof(buf)) != 0 ||
        strcmp(buf, DML_DATASET_FORMAT) != 0)
        return dml_error_set(DML_ERR_FORMAT,
                             "%s: not a slurm-dml dataset index (no format "
                             "attribute \"%s\")",
                             path, DML_DATASET_FORMAT);
    if (dml__h5_attr_read(f, "version", H5T_NATIVE_INT32, 1, &version) != 0)
        return dml_error_set(DML_ERR_FORMAT, "%s: no format version", path);
    if (version != DML_DATASET_VERSION)
        return dml_error_set(DML_ERR_FORMAT, "%s: format version %d, this build reads version %d",
                             path, (int)version, DML_DATASET_VERSION);
    if (dml__h5_attr_read_str(f, "dtype", dtype, sizeof(dtype)) != 0 ||
        dml__h5_attr_read(f, "feature_rank", H5T_NATIVE_INT32, 1, &rank) != 0 || rank < 1 ||
        rank > DML_DATASET_MAX_RANK ||
        dml__h5_attr_read(f, "feature_shape", H5T_NATIVE_UINT64, (size_t)rank, shape) != 0 ||
        dml__h5_attr_read(f, "num_classes", H5T_NATIVE_UINT32, 1, &u32) != 0 ||
        dml__h5_attr_read(f, "samples", H5T_NATIVE_UINT64, 1, &ds->samples) != 0 ||
        dml__h5_attr_read(f, "shards", H5T_NATIVE_UINT64, 1, &nshards) != 0 ||
        dml__h5_attr_read(f, "hist_bins", H5T_NATIVE_INT32, 1, &bins) != 0 ||
        dml__h5_attr_read_str(f, "content_hash", ds->content_hash, sizeof(ds->content_hash)) != 0)
        return dml_error_set(DML_ERR_FORMAT,
                             "%s: schema attributes missing or malformed "
                             "(dtype, feature_rank, feature_shape, num_classes, samples, shards, "
                             "hist_bins, content_hash)",
                             path);
    if (strcmp(dtype, "uint8") == 0)
        ds->schema.dtype = DML_DTYPE_UINT8;
    else if (strcmp(dtype, "float32") == 0)
        ds->schema.dtype = DML_DTYPE_FLOAT32;
    else
        return dml_error_set(DML_ERR_FORMAT, "%s: feature dtype \"%s\" (expected uint8 or float32)",
                             path, dtype);
    if (bins != DML_DATASET_HIST_BINS)
        return dml_error_set(DML_ERR_FORMAT, "%s: %d histogram bins, this build uses %d", path,
                             (int)bins, DML_DATASET_HIST_BINS);
    ds->schema.rank = rank;
    memcpy(ds->schema.shape, shape, sizeof(uint64_t) * (size_t)rank);
    ds->schema.num_classes = u32;
    nf = dml_schema_features(&ds->schema);
    if (nf == 0 || u32 == 0 || nshards == 0 || nshards > UINT32_MAX)
        return dml_error_set(DML_ERR_FORMAT,
                             "%s: empty schema (features %llu, classes %u, "
                             "shards %llu)",
                             path, (unsigned long long)nf, u32, (unsigned long long)nshards);
    ds->shards = (uint32_t)nshards;
    return DML_OK;
}

/* The shard table and the class names into ds (allocated here, freed by
 * dml_dataset_close), checked against the schema read before. */
static dml_status_t dml__index_read_tables(dml_dataset_t *ds, hid_t f, const char *path)
{
    const uint32_t nclasses = ds->schema.num_classes;
    char buf[256];
    uint64_t i;
    hid_t strtype = -1;
    dml_status_t status = DML_ERR_FORMAT;

    if (dml__h5_attr_read_str(f, "source", buf, sizeof(buf)) == 0)
        ds->source = strdup(buf);
    else
        ds->source = strdup("");
    ds->shard_names = calloc(ds->shards, DML_DATASET_NAME_MAX);
    ds->shard_samples = calloc(ds->shards, sizeof(uint64_t));
    ds->shard_start = calloc(ds->shards + 1, sizeof(uint64_t));
    ds->shard_crc = calloc(ds->shards, sizeof(uint32_t));
    ds->schema.class_names = calloc(nclasses, DML_DATASET_NAME_MAX);
    if (!ds->source || !ds->shard_names || !ds->shard_samples || !ds->shard_start ||
        !ds->shard_crc || !ds->schema.class_names)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for the index", path);

    strtype = H5Tcopy(H5T_C_S1);
    if (strtype < 0 || H5Tset_size(strtype, DML_DATASET_NAME_MAX) < 0)
        goto out;
    status = dml_error_set(DML_ERR_FORMAT,
                           "%s: shard table (shard_names, shard_samples, "
                           "shard_crc32) missing or not of %u entries",
                           path, ds->shards);
    if (dml__h5_read(f, "shard_names", strtype, ds->shards, 0, ds->shard_names) != 0 ||
        dml__h5_read(f, "shard_samples", H5T_NATIVE_UINT64, ds->shards, 0, ds->shard_samples) !=
            0 ||
        dml__h5_read(f, "shard_crc32", H5T_NATIVE_UINT32, ds->shards, 0, ds->shard_crc) != 0)
        goto out;
    status =
        dml_error_set(DML_ERR_FORMAT, "%s: class_names missing or not %u entries", path, nclasses);
    if (dml__h5_read(f, "class_names", strtype, nclasses, 0, ds->schema.class_names) != 0)
        goto out;
    for (i = 0; i < nclasses; i++)
        ds->schema.class_names[i][DML_DATASET_NAME_MAX - 1] = '\0';
    for (i = 0; i < ds->shards; i++) {
        ds->shard_names[i][DML_DATASET_NAME_MAX - 1] = '\0';
        if (ds->shard_names[i][0] == '\0' || strchr(ds->shard_names[i], '/') != NULL) {
            status = dml_error_set(DML_ERR_FORMAT, "%s: shard %llu has an invalid file name \"%s\"",
                                   path, (unsigned long long)i, ds->shard_names[i]);
            goto out;
        }
        ds->shard_start[i + 1] = ds->shard_start[i] + ds->shard_samples[i];
    }
    if (ds->shard_start[ds->shards] != ds->samples) {
        status = dml_error_set(DML_ERR_FORMAT, "%s: shards hold %llu samples, the index says %llu",
                               path, (unsigned long long)ds->shard_start[ds->shards],
                               (unsigned long long)ds->samples);
        goto out;
    }
    status = DML_OK;
out:
    if (strtype >= 0)
        H5Tclose(strtype);
    return status;
}

/* The whole index into ds: schema, tables and statistics, and the content
 * hash that ties them together (an index altered after the write fails it). */
static dml_status_t dml__index_read(dml_dataset_t *ds, hid_t f, const char *path)
{
    char expect[17];
    uint64_t nf;
    hid_t g = -1;
    dml_status_t status;

    if ((status = dml__index_read_schema(ds, f, path)) != DML_OK ||
        (status = dml__index_read_tables(ds, f, path)) != DML_OK)
        return status;
    nf = dml_schema_features(&ds->schema);
    g = H5Gopen2(f, "stats", H5P_DEFAULT);
    if (g < 0 || dml_stats_read_h5(g, nf, ds->schema.num_classes, &ds->stats) != DML_OK) {
        status = dml_error_set(DML_ERR_FORMAT,
                               "%s: statistics (group stats) missing or not of "
                               "%llu features",
                               path, (unsigned long long)nf);
        goto out;
    }
    dml__content_hash(&ds->schema, ds->shards, ds->shard_samples, ds->shard_crc, expect);
    if (strcmp(expect, ds->content_hash) != 0) {
        status = dml_error_set(DML_ERR_CHECKSUM,
                               "%s: content hash %s does not match the "
                               "shard table (%s): the index was altered",
                               path, ds->content_hash, expect);
        goto out;
    }
    status = DML_OK;
    dml_error_clear();
out:
    if (g >= 0)
        H5Gclose(g);
    return status;
}

dml_status_t dml_dataset_open(const char *dir, dml_dataset_t **ds_out)
{
    dml__h5_quiet_t q;
    dml_dataset_t *ds;
    struct stat sb;
    char *path = NULL;
    hid_t f = -1;
    dml_status_t status;

    if (dir == NULL || ds_out == NULL)
        return dml_error_set(DML_ERR_INVALID_ARG, "dml_dataset_open: NULL argument");
    if (stat(dir, &sb) != 0)
        return dml_error_set_errno(errno, "%s: cannot open dataset directory", dir);
    if (!S_ISDIR(sb.st_mode))
        return dml_error_set(DML_ERR_FORMAT,
                             "%s: not a directory (a dataset is a directory of "
                             "shards with index.h5)",
                             dir);
    ds = calloc(1, sizeof(*ds));
    if (ds == NULL || (ds->dir = strdup(dir)) == NULL ||
        (path = dml__path_join(dir, "index.h5")) == NULL) {
        status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", dir);
        goto err;
    }
    if (stat(path, &sb) != 0) {
        status = dml_error_set_errno(errno,
                                     "%s: no dataset index (was the conversion "
                                     "interrupted?)",
                                     path);
        goto err;
    }
    dml__h5_quiet_begin(&q);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char why[256];
        status = dml__open_failure(path, why, sizeof(why));
        status = dml_error_set(status, "%s: %s", path, why);
    } else {
        status = dml__index_read(ds, f, path);
    }
    if (f >= 0)
        H5Fclose(f);
    dml__h5_quiet_end(&q);
    if (status != DML_OK)
        goto err;
    free(path);
    *ds_out = ds;
    return DML_OK;
err:
    free(path);
    dml_dataset_close(ds);
    return status;
}

const char *dml_dataset_dir(const dml_dataset_t *ds)
{
    return ds->dir;
}
const dml_schema_t *dml_dataset_schema(const dml_dataset_t *ds)
{
    return &ds->schema;
}
const dml_stats_t *dml_dataset_stats(const dml_dataset_t *ds)
{
    return &ds->stats;
}
uint64_t dml_dataset_samples(const dml_dataset_t *ds)
{
    return ds->samples;
}
uint32_t dml_dataset_shards(const dml_dataset_t *ds)
{
    return ds->shards;
}
const char *dml_dataset_content_hash(const dml_dataset_t *ds)
{
    return ds->content_hash;
}
const char *dml_dataset_source(const dml_dataset_t *ds)
{
    return ds->source;
}

const char *dml_dataset_shard_name(const dml_dataset_t *ds, uint32_t i)
{
    return i < ds->shards ? ds->shard_names[i] : NULL;
}

uint64_t dml_dataset_shard_samples(const dml_dataset_t *ds, uint32_t i)
{
    return i < ds->shards ? ds->shard_samples[i] : 0;
}

uint32_t dml_dataset_shard_crc(const dml_dataset_t *ds, uint32_t i)
{
    return i < ds->shards ? ds->shard_crc[i] : 0;
}

static dml_status_t dml__problem(dml_problem_cb_t cb, void *arg, uint64_t *problems,
                                 dml_status_t status, dml_status_t first, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Records one problem; returns the status the caller should keep (the first). */
static dml_status_t dml__problem(dml_problem_cb_t cb, void *arg, uint64_t *problems,
                                 dml_status_t status, dml_status_t first, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (problems != NULL)
        (*problems)++;
    if (cb != NULL)
        cb(arg, status, msg);
    if (first == DML_OK) {
        dml_error_set(status, "%s", msg);
        return status;
    }
    return first;
}

/* Checks one dataset of a shard file: class, element size, signedness, dims.
 * 1 if it matches; 0 if it is missing or of another kind; -1 if it is there
 * but damaged (its name is in the file, its object header does not read). */
static int dml__dset_matches(hid_t file, const char *name, H5T_class_t cls, size_t size, int sign,
                             int rank, const hsize_t *dims, char *why, size_t whylen)
{
    hsize_t got[DML_DATASET_MAX_RANK + 1];
    hid_t d = -1, t = -1, s = -1;
    htri_t there;
    int nd, k, ok = 0;

    /* A name not in the file is missing; a name that cannot even be looked
     * up, or that names an object HDF5 cannot open, is damage. */
    there = H5Lexists(file, name, H5P_DEFAULT);
    if (there == 0) {
        snprintf(why, whylen, "dataset \"%s\" is missing", name);
        return 0;
    }
    if (there < 0) {
        snprintf(why, whylen,
                 "dataset \"%s\" cannot be looked up: the file's root group is "
                 "damaged",
                 name);
        return -1;
    }
    if ((d = H5Dopen2(file, name, H5P_DEFAULT)) < 0) {
        snprintf(why, whylen, "dataset \"%s\" is damaged: its object header cannot be read", name);
        return -1;
    }
    t = H5Dget_type(d);
    s = H5Dget_space(d);
    if (t < 0 || s < 0) {
        snprintf(why, whylen, "dataset \"%s\" is damaged: its %s cannot be read", name,
                 t < 0 ? "element type" : "dataspace");
        ok = -1;
        goto out;
    }
    if (H5Tget_class(t) != cls || H5Tget_size(t) != size ||
        (cls == H5T_INTEGER && (int)H5Tget_sign(t) != sign)) {
        snprintf(why, whylen,
                 "dataset \"%s\" has element type of class %d, size %zu; the index "
                 "expects class %d, size %zu",
                 name, (int)H5Tget_class(t), H5Tget_size(t), (int)cls, size);
        goto out;
    }
    nd = H5Sget_simple_extent_ndims(s);
    if (nd != rank || H5Sget_simple_extent_dims(s, got, NULL) != nd) {
        snprintf(why, whylen, "dataset \"%s\" has %d dimensions, the index expects %d", name, nd,
                 rank);
        goto out;
    }
    for (k = 0; k < rank; k++) {
        if (got[k] != dims[k]) {
            snprintf(why, whylen, "dataset \"%s\" dimension %d is %llu, the index expects %llu%s",
                     name, k, (unsigned long long)got[k], (unsigned long long)dims[k],
                     k == 0 ? " samples" : "");
            goto out;
        }
    }
    ok = 1;
out:
    if (s >= 0)
        H5Sclose(s);
    if (t >= 0)
        H5Tclose(t);
    H5Dclose(d);
    return ok;
}

dml_status_t dml__shard_check(const dml_dataset_t *ds, uint32_t i, hid_t file, const char *path,
                              dml_problem_cb_t cb, void *arg, uint64_t *problems)
{
    hsize_t dims[DML_DATASET_MAX_RANK + 1];
    char why[512], fmt[64] = "";
    uint64_t shard = UINT64_MAX;
    dml_status_t first = DML_OK;
    int k;

    /* The shard's record: its format and its number in the dataset (a
     * header HDF5 cannot read is damage, even where the arrays read). */
    if (dml__h5_attr_read_str(file, "format", fmt, sizeof(fmt)) != 0 ||
        dml__h5_attr_read(file, "shard", H5T_NATIVE_UINT64, 1, &shard) != 0)
        first = dml__problem(cb, arg, problems, DML_ERR_FORMAT, first,
                             "%s: its attributes "
                             "(format, shard) cannot be read: damaged",
                             path);
    else if (strcmp(fmt, DML_DATASET_FORMAT " shard") != 0 || shard != i)
        first = dml__problem(cb, arg, problems, DML_ERR_MISMATCH, first,
                             "%s: records itself as "
                             "'%s' number %llu, the index lists it as shard %u of a '%s'",
                             path, fmt, (unsigned long long)shard, i, DML_DATASET_FORMAT);
    dims[0] = ds->shard_samples[i];
    for (k = 0; k < ds->schema.rank; k++)
        dims[k + 1] = ds->schema.shape[k];
    /* damage is a format problem; a missing or different dataset a mismatch */
    if ((k = dml__dset_matches(file, "x",
                               ds->schema.dtype == DML_DTYPE_UINT8 ? H5T_INTEGER : H5T_FLOAT,
                               dml_dtype_size(ds->schema.dtype), H5T_SGN_NONE, ds->schema.rank + 1,
                               dims, why, sizeof(why))) != 1)
        first = dml__problem(cb, arg, problems, k < 0 ? DML_ERR_FORMAT : DML_ERR_MISMATCH, first,
                             "%s: %s", path, why);
    if ((k = dml__dset_matches(file, "y", H5T_INTEGER, 4, H5T_SGN_2, 1, dims, why, sizeof(why))) !=
        1)
        first = dml__problem(cb, arg, problems, k < 0 ? DML_ERR_FORMAT : DML_ERR_MISMATCH, first,
                             "%s: %s", path, why);
    if ((k = dml__dset_matches(file, "id", H5T_INTEGER, 8, H5T_SGN_NONE, 1, dims, why,
                               sizeof(why))) != 1)
        first = dml__problem(cb, arg, problems, k < 0 ? DML_ERR_FORMAT : DML_ERR_MISMATCH, first,
                             "%s: %s", path, why);
    return first;
}

/* Streams one shard through the checksum and the label/finiteness checks. */
static dml_status_t dml__shard_scan(const dml_dataset_t *ds, uint32_t i, hid_t file,
                                    const char *path, dml_problem_cb_t cb, void *arg,
                                    uint64_t *problems)
{
    const uint64_t nf = dml_schema_features(&ds->schema);
    const size_t xsz = (size_t)nf * dml_dtype_size(ds->schema.dtype);
    const uint64_t n = ds->shard_samples[i];
    uint64_t chunk = (64u << 20) / xsz + 1, r, k, bad_label = 0, nonfinite = 0, first_bad = 0;
    uint64_t first_nf = 0;
    int32_t bad_value = 0;
    uLong crc_x = 0, crc_y = 0, crc_id = 0;
    uLong crc;
    void *x = NULL;
    int32_t *y = NULL;
    uint64_t *id = NULL;
    dml_status_t first = DML_OK;

    if (chunk > n)
        chunk = n ? n : 1;
    x = malloc(chunk * xsz);
    y = malloc(chunk * sizeof(int32_t));
    id = malloc(chunk * sizeof(uint64_t));
    if (x == NULL || y == NULL || id == NULL) {
        first = dml__problem(cb, arg, problems, DML_ERR_NO_MEMORY, first, "%s: no memory to scan",
                             path);
        goto out;
    }
    /* The checksum covers all of x, then all of y, then all of id: three
     * running CRCs joined at the end with crc32_combine. */
    for (r = 0; r < n; r += chunk) {
        uint64_t m = n - r < chunk ? n - r : chunk;
        if (dml__h5_read_named_rows(file, "x", dml__h5_type(ds->schema.dtype), r, m, x) != 0 ||
            dml__h5_read_named_rows(file, "y", H5T_NATIVE_INT32, r, m, y) != 0 ||
            dml__h5_read_named_rows(file, "id", H5T_NATIVE_UINT64, r, m, id) != 0) {
            first = dml__problem(cb, arg, problems, DML_ERR_IO, first,
                                 "%s: read of samples %llu..%llu failed (truncated or corrupt)",
                                 path, (unsigned long long)r, (unsigned long long)(r + m - 1));
            goto out;
        }
        crc_x = dml_crc32((uint32_t)crc_x, x, m * xsz);
        crc_y = dml_crc32((uint32_t)crc_y, y, m * sizeof(int32_t));
        crc_id = dml_crc32((uint32_t)crc_id, id, m * sizeof(uint64_t));
        for (k = 0; k < m; k++) {
            if (y[k] < 0 || (uint32_t)y[k] >= ds->schema.num_classes) {
                if (bad_label++ == 0) {
                    first_bad = r + k;
                    bad_value = y[k];
                }
            }
        }
        if (ds->schema.dtype == DML_DTYPE_FLOAT32) {
            const float *xf = x;
            for (k = 0; k < m * nf; k++) {
                if (!isfinite(xf[k]) && nonfinite++ == 0)
                    first_nf = r + k / nf;
            }
        }
    }
    if (bad_label)
        first = dml__problem(cb, arg, problems, DML_ERR_FORMAT, first,
                             "%s: %llu labels outside 0..%u (first: sample %llu has label %d)",
                             path, (unsigned long long)bad_label, ds->schema.num_classes - 1,
                             (unsigned long long)first_bad, (int)bad_value);
    if (nonfinite)
        first = dml__problem(cb, arg, problems, DML_ERR_NUMERIC, first,
                             "%s: %llu feature values are NaN or Inf (first in sample %llu)", path,
                             (unsigned long long)nonfinite, (unsigned long long)first_nf);
    crc = crc32_combine(crc32_combine(crc_x, crc_y, (z_off_t)(n * sizeof(int32_t))), crc_id,
                        (z_off_t)(n * sizeof(uint64_t)));
    if ((uint32_t)crc != ds->shard_crc[i])
        first = dml__problem(cb, arg, problems, DML_ERR_CHECKSUM, first,
                             "%s: checksum mismatch: the index records crc32 %08x, the contents "
                             "give %08x",
                             path, ds->shard_crc[i], (unsigned)crc);
out:
    free(x);
    free(y);
    free(id);
    return first;
}

dml_status_t dml_dataset_validate(const dml_dataset_t *ds, uint32_t first_shard, uint32_t count,
                                  dml_problem_cb_t cb, void *arg, uint64_t *problems)
{
    dml__h5_quiet_t q;
    dml_status_t first = DML_OK, st;
    char first_msg[1024] = "";
    uint32_t i;

    if (problems != NULL)
        *problems = 0;
    if (first_shard > ds->shards || count > ds->shards - first_shard)
        return dml_error_set(DML_ERR_INVALID_ARG, "%s: shards %u..%u requested, the dataset has %u",
                             ds->dir, first_shard, first_shard + count - 1, ds->shards);
    dml__h5_quiet_begin(&q);
    for (i = first_shard; i < first_shard + count; i++) {
        char *path;
        struct stat sb;
        hid_t f;

        /* A problem recorded by the previous iteration is the first one. */
        if (first != DML_OK && first_msg[0] == '\0')
            snprintf(first_msg, sizeof(first_msg), "%s", dml_error_message());
        path = dml__path_join(ds->dir, ds->shard_names[i]);

        if (path == NULL) {
            first =
                dml__problem(cb, arg, problems, DML_ERR_NO_MEMORY, first, "%s: no memory", ds->dir);
            break;
        }
        if (stat(path, &sb) != 0) {
            first = dml__problem(
                cb, arg, problems, dml_status_from_errno(errno), first, "%s: shard %u %s: %s", path,
                i, errno == ENOENT ? "is missing" : "cannot be looked up", strerror(errno));
            free(path);
            continue;
        }
        f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) {
            char why[256];
            st = dml__open_failure(path, why, sizeof(why));
            first = dml__problem(cb, arg, problems, st, first, "%s: %s", path, why);
            free(path);
            continue;
        }
        st = dml__shard_check(ds, i, f, path, cb, arg, problems);
        if (st == DML_OK)
            st = dml__shard_scan(ds, i, f, path, cb, arg, problems);
        if (st != DML_OK && first == DML_OK) {
            first = st;
            snprintf(first_msg, sizeof(first_msg), "%s", dml_error_message());
        }
        H5Fclose(f);
        free(path);
    }
    if (first != DML_OK && first_msg[0] == '\0')
        snprintf(first_msg, sizeof(first_msg), "%s", dml_error_message());
    dml__h5_quiet_end(&q);
    /* Each shard's checks record their own first problem; keep the first of all. */
    if (first != DML_OK)
        return dml_error_set(first, "%s", first_msg);
    dml_error_clear();
    return DML_OK;
}

hid_t dml__h5_type(dml_dtype_t t)
{
    return t == DML_DTYPE_UINT8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
}

void dml__content_hash(const dml_schema_t *s, uint32_t shards, const uint64_t *samples,
                       const uint32_t *crc, char out[17])
{
    uint64_t h = DML_FNV1A_INIT, v;
    uint32_t i;
    int d;

    h = dml__fnv1a(h, DML_DATASET_FORMAT, strlen(DML_DATASET_FORMAT));
    v = DML_DATASET_VERSION;
    h = dml__fnv1a(h, &v, sizeof(v));
    v = (uint64_t)s->dtype;
    h = dml__fnv1a(h, &v, sizeof(v));
    for (d = 0; d < s->rank; d++)
        h = dml__fnv1a(h, &s->shape[d], sizeof(s->shape[d]));
    v = s->num_classes;
    h = dml__fnv1a(h, &v, sizeof(v));
    for (i = 0; i < shards; i++) {
        h = dml__fnv1a(h, &samples[i], sizeof(samples[i]));
        v = crc[i];
        h = dml__fnv1a(h, &v, sizeof(v));
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}
