/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * writer.c: writing a sharded dataset with several MPI ranks.
 *
 * Ranks write different shards into "<dir>.partial" (plain serial HDF5 files,
 * contiguous layout), accumulating statistics as they go. The commit agrees
 * that every shard was written exactly once, reduces the statistics, writes
 * index.h5 (the dataset's commit record) and moves the directory into place:
 * fsync of every file, rename (an atomic exchange when replacing), fsync of
 * the parent. An interrupted conversion leaves only "<dir>.partial", which is
 * no dataset, and an existing dataset is untouched until the exchange.
 *
 * The first thing written into "<dir>.partial" is a marker file: the next
 * write removes a leftover "<dir>.partial" only when it carries the marker
 * and nothing but what a writer puts there; anything else at that path is
 * the user's, and is refused, untouched. Several datasets written together
 * (a training set and its validation set) are committed together: none is
 * moved into place unless all are complete, and a failed move puts back
 * the ones already moved.
 */
#include "config.h"

#include "dml_crc.h"
#include "dml_h5_stats.h"
#include "dml_mpi.h"
#include "io_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct dml_dataset_writer {
    MPI_Comm comm;
    int rank, size;
    char *dir, *partial, *source;
    int replace;
    dml_schema_t schema;
    uint64_t nf;
    size_t xsz;
    uint32_t shards;
    uint64_t *count; /* samples of the shards this rank wrote, else 0 */
    uint32_t *crc;
    int *mine; /* 1 for shards this rank wrote */
    double *sum, *sumsq, *min, *max;
    uint64_t *hist; /* uint8 only: fixed bins over 0..255 */
    uint64_t *labels;
    dml_status_t failed; /* first failure of put, kept for the commit */
    char failed_msg[1024];
    int lock_fd; /* rank 0: the marker, flock'ed while this write runs */
};

static void dml__writer_free(dml_dataset_writer_t *w)
{
    if (w == NULL)
        return;
    if (w->comm != MPI_COMM_NULL)
        MPI_Comm_free(&w->comm);
    if (w->lock_fd >= 0)
        close(w->lock_fd);
    free(w->dir);
    free(w->partial);
    free(w->source);
    dml__schema_free(&w->schema);
    free(w->count);
    free(w->crc);
    free(w->mine);
    free(w->sum);
    free(w->sumsq);
    free(w->min);
    free(w->max);
    free(w->hist);
    free(w->labels);
    free(w);
}

void dml_dataset_writer_abort(dml_dataset_writer_t *w)
{
    dml__writer_free(w);
}

void dml_dataset_writer_discard(dml_dataset_writer_t *w)
{
    if (w != NULL && w->rank == 0 && w->lock_fd >= 0)
        dml__rmtree(w->partial);
    dml__writer_free(w);
}

/* mkdir -p of dir's parent (a dataset may go into a new directory). */
static int dml__mkdir_parent(const char *dir)
{
    char p[4096], *slash;

    snprintf(p, sizeof(p), "%s", dir);
    slash = strrchr(p, '/');
    if (slash == NULL || slash == p)
        return 0;
    *slash = '\0';
    return dml__mkdir_p(p);
}

/* The marker a writer puts first into the partial directory it makes. */
#define DML__PARTIAL_MARKER ".slurm-dml-partial"

static int dml__is_shard_name(const char *name)
{
    unsigned shard;
    int n = 0;
    return sscanf(name, "shard-%5u.h5%n", &shard, &n) == 1 && name[n] == '\0';
}

/* The marker of the partial directory dir opened and flock'ed (exclusive,
 * not waiting): the fd, held while the write runs, so that a second write
 * of the same dataset finds the first under way instead of taking its
 * directory for a leftover. -1 with errno (EWOULDBLOCK: locked). */
static int dml__marker_lock(const char *dir)
{
    char *path = dml__path_join(dir, DML__PARTIAL_MARKER);
    int fd, e;

    if (path == NULL) {
        errno = ENOMEM;
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Writes the marker into the partial directory dir: 0 or -1 with errno. */
static int dml__marker_write(const char *dir)
{
    static const char text[] =
        "slurm-dml: a dataset being written (dml-data, dml_dataset_writer_create).\n"
        "It becomes the dataset when complete; the next write of the same dataset\n"
        "removes it if the write was interrupted.\n";
    char *path = dml__path_join(dir, DML__PARTIAL_MARKER);
    int fd, rc = -1, e;

    if (path == NULL) {
        errno = ENOMEM;
        return -1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
        rc = write(fd, text, sizeof(text) - 1) == (ssize_t)(sizeof(text) - 1) ? 0 : -1;
        e = errno;
        if (close(fd) != 0 && rc == 0) {
            rc = -1;
            e = errno;
        }
        if (rc != 0)
            unlink(path);
        errno = e;
    }
    free(path);
    return rc;
}

/* Whether partial, which exists, is a writer's own leftover: a directory
 * (not a link) holding the marker and nothing but what a writer puts there
 * (shard files, index.h5). DML_OK, or DML_ERR_EXISTS naming what is there. */
static dml_status_t dml__partial_owned(const char *partial)
{
    char *marker = dml__path_join(partial, DML__PARTIAL_MARKER);
    struct dirent *de;
    struct stat sb;
    dml_status_t st = DML_OK;
    DIR *d;
    int fd;

    if (marker == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", partial);
    if (lstat(partial, &sb) != 0)
        st = dml_error_set_errno(errno, "%s", partial);
    else if (!S_ISDIR(sb.st_mode))
        st = dml_error_set(DML_ERR_EXISTS,
                           "%s: exists and is not a directory left by an "
                           "interrupted dataset write (%s): the dataset is written there first, "
                           "so move it away or remove it yourself; nothing was changed",
                           partial, S_ISLNK(sb.st_mode) ? "a symbolic link" : "not a directory");
    else if (lstat(marker, &sb) != 0 || !S_ISREG(sb.st_mode))
        st = dml_error_set(DML_ERR_EXISTS,
                           "%s: exists without the %s marker this slurm-dml "
                           "puts in what it writes there (not a dataset write's, or one of an "
                           "earlier slurm-dml): the dataset is written there first, so move it "
                           "away or remove it yourself; nothing was changed",
                           partial, DML__PARTIAL_MARKER);
    free(marker);
    if (st != DML_OK)
        return st;
    if ((fd = dml__marker_lock(partial)) < 0)
        return errno == EWOULDBLOCK
                   ? dml_error_set(DML_ERR_EXISTS,
                                   "%s: another write of this dataset is under "
                                   "way (its marker %s is locked): wait for it to end or stop it; "
                                   "nothing was changed",
                                   partial, DML__PARTIAL_MARKER)
                   : dml_error_set_errno(errno, "%s: cannot open its marker %s", partial,
                                         DML__PARTIAL_MARKER);
    close(fd);
    if ((d = opendir(partial)) == NULL)
        return dml_error_set_errno(errno, "%s: cannot list it", partial);
    while (st == DML_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        /* a writer's files: plain files (no directory, no link) of its names */
        if ((strcmp(de->d_name, DML__PARTIAL_MARKER) == 0 || strcmp(de->d_name, "index.h5") == 0 ||
             dml__is_shard_name(de->d_name)) &&
            fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode))
            continue;
        st = dml_error_set(DML_ERR_EXISTS,
                           "%s: the leftover of an interrupted dataset write "
                           "holds '%s', which no dataset write put there: move it away or remove "
                           "the directory yourself; nothing was changed",
                           partial, de->d_name);
    }
    closedir(d);
    return st;
}

/* Rank 0's checks before a dataset is written at dir (nothing changed):
 * dir absent, or replace asked and dir a dataset; dir.partial absent or a
 * writer's leftover. */
static dml_status_t dml__replaceable(const char *dir);

static dml_status_t dml__destination_check(const char *dir, const char *partial, int replace)
{
    struct stat sb;
    dml_status_t st;

    if (lstat(dir, &sb) == 0) {
        if (!replace)
            return dml_error_set(DML_ERR_EXISTS,
                                 "%s: already exists; remove it or ask to "
                                 "replace it (dml-data --force)",
                                 dir);
        if ((st = dml__replaceable(dir)) != DML_OK)
            return st;
    } else if (errno != ENOENT) {
        return dml_error_set_errno(errno, "%s", dir);
    }
    if (lstat(partial, &sb) == 0)
        return dml__partial_owned(partial);
    if (errno != ENOENT)
        return dml_error_set_errno(errno, "%s", partial);
    return DML_OK;
}

/* Whether dir, which exists, is a slurm-dml dataset and nothing else, so
 * that --force may replace it: a directory (not a link to one) holding an
 * index of this format and shard files only. Anything else is refused,
 * naming what is there: replacing takes the whole directory. */
static dml_status_t dml__replaceable(const char *dir)
{
    char *index = dml__path_join(dir, "index.h5"), kind[128];
    struct dirent *de;
    struct stat sb;
    dml_status_t st = DML_OK;
    DIR *d;

    if (index == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", dir);
    if (lstat(dir, &sb) != 0)
        st = dml_error_set_errno(errno, "%s", dir);
    else if (S_ISLNK(sb.st_mode))
        st = dml_error_set(DML_ERR_EXISTS,
                           "%s: a symbolic link: --force replaces a dataset "
                           "directory itself, not a link to one",
                           dir);
    else if (!S_ISDIR(sb.st_mode))
        st = dml_error_set(DML_ERR_EXISTS,
                           "%s: exists and is not a dataset (not a directory): "
                           "--force replaces only a slurm-dml dataset",
                           dir);
    else if (dml__h5_file_format(index, kind, sizeof(kind)) != 0 ||
             strcmp(kind, DML_DATASET_FORMAT) != 0) {
        char why[256];
        dml_status_t os = dml__open_failure(index, why, sizeof(why));
        /* an index there that cannot be read says so, with the OS's reason */
        if (os != DML_ERR_FORMAT && os != DML_ERR_NOT_FOUND)
            st = dml_error_set(os,
                               "%s: %s: whether it is a dataset that --force may replace "
                               "cannot be told",
                               index, why);
        else
            st = dml_error_set(DML_ERR_EXISTS,
                               "%s: exists and is not a slurm-dml dataset (no "
                               "dataset index.h5): --force replaces only a dataset; remove it "
                               "yourself or choose another --out",
                               dir);
    }
    free(index);
    if (st != DML_OK)
        return st;
    if ((d = opendir(dir)) == NULL)
        return dml_error_set_errno(errno, "%s: cannot list it", dir);
    while (st == DML_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, "index.h5") == 0 || dml__is_shard_name(de->d_name))
            continue;
        st = dml_error_set(DML_ERR_EXISTS,
                           "%s: holds '%s', which is not part of a slurm-dml "
                           "dataset: --force replaces the whole directory, so move it away "
                           "first",
                           dir, de->d_name);
    }
    closedir(d);
    return st;
}

dml_status_t dml_dataset_writer_check(const char *dir, int replace)
{
    char *partial = malloc(strlen(dir) + sizeof(".partial"));
    dml_status_t st;

    if (partial == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", dir);
    sprintf(partial, "%s.partial", dir);
    st = dml__destination_check(dir, partial, replace);
    free(partial);
    return st;
}

static dml_status_t dml__schema_check(const dml_schema_t *s, uint32_t shards)
{
    int d;

    if (s->dtype != DML_DTYPE_UINT8 && s->dtype != DML_DTYPE_FLOAT32)
        return dml_error_set(DML_ERR_INVALID_ARG, "feature dtype %d is neither uint8 nor float32",
                             (int)s->dtype);
    if (s->rank < 1 || s->rank > DML_DATASET_MAX_RANK)
        return dml_error_set(DML_ERR_INVALID_ARG, "feature shape has %d dimensions (1..%d)",
                             s->rank, DML_DATASET_MAX_RANK);
    for (d = 0; d < s->rank; d++)
        if (s->shape[d] == 0)
            return dml_error_set(DML_ERR_INVALID_ARG, "feature shape dimension %d is 0", d);
    if (s->num_classes == 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "a dataset needs at least one class");
    if (shards == 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "a dataset needs at least one shard");
    return DML_OK;
}

dml_status_t dml_dataset_writer_create(MPI_Comm comm, const char *dir, const dml_schema_t *schema,
                                       uint32_t num_shards, int replace, const char *source,
                                       dml_dataset_writer_t **w_out)
{
    dml_dataset_writer_t *w;
    dml_status_t status = DML_OK;
    struct stat sb;
    uint64_t f;
    uint32_t c;
    int rc;

    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return dml_mpi_agree(comm, dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", dir), NULL);
    w->lock_fd = -1;
    w->comm = MPI_COMM_NULL;
    rc = MPI_Comm_dup(comm, &w->comm);
    if (rc != MPI_SUCCESS) {
        status = dml_mpi_error(rc, "MPI_Comm_dup for the dataset writer");
        free(w);
        return status;
    }
    MPI_Comm_rank(w->comm, &w->rank);
    MPI_Comm_size(w->comm, &w->size);

    status = dml__schema_check(schema, num_shards);
    if (status != DML_OK)
        goto agree;
    w->schema = *schema;
    w->schema.class_names = calloc(schema->num_classes, DML_DATASET_NAME_MAX);
    w->nf = dml_schema_features(schema);
    w->xsz = (size_t)w->nf * dml_dtype_size(schema->dtype);
    w->shards = num_shards;
    w->replace = replace;
    w->dir = strdup(dir);
    w->source = strdup(source ? source : "");
    w->partial = malloc(strlen(dir) + sizeof(".partial"));
    w->count = calloc(num_shards, sizeof(uint64_t));
    w->crc = calloc(num_shards, sizeof(uint32_t));
    w->mine = calloc(num_shards, sizeof(int));
    w->sum = calloc(w->nf, sizeof(double));
    w->sumsq = calloc(w->nf, sizeof(double));
    w->min = malloc(w->nf * sizeof(double));
    w->max = malloc(w->nf * sizeof(double));
    w->hist = calloc(w->nf * DML_DATASET_HIST_BINS, sizeof(uint64_t));
    w->labels = calloc(schema->num_classes, sizeof(uint64_t));
    if (!w->schema.class_names || !w->dir || !w->source || !w->partial || !w->count || !w->crc ||
        !w->mine || !w->sum || !w->sumsq || !w->min || !w->max || !w->hist || !w->labels) {
        status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for the dataset writer", dir);
        goto agree;
    }
    sprintf(w->partial, "%s.partial", dir);
    for (c = 0; c < schema->num_classes; c++) {
        if (schema->class_names != NULL)
            snprintf(w->schema.class_names[c], DML_DATASET_NAME_MAX, "%s", schema->class_names[c]);
        else
            snprintf(w->schema.class_names[c], DML_DATASET_NAME_MAX, "%u", c);
    }
    for (f = 0; f < w->nf; f++) {
        w->min[f] = INFINITY;
        w->max[f] = -INFINITY;
    }

    if (w->rank == 0) {
        if ((status = dml__destination_check(dir, w->partial, replace)) != DML_OK) {
            /* named there */
        } else if (dml__mkdir_parent(dir) != 0) {
            status = dml_error_set_errno(errno, "%s: cannot create its parent directory", dir);
        } else if (lstat(w->partial, &sb) == 0 && dml__rmtree(w->partial) != 0) {
            status = dml_error_set_errno(errno,
                                         "%s: cannot remove the leftover of an earlier "
                                         "interrupted write",
                                         w->partial);
        } else if (mkdir(w->partial, 0755) != 0) {
            status = dml_error_set_errno(errno, "%s: cannot create the directory", w->partial);
        } else if (dml__marker_write(w->partial) != 0 ||
                   (w->lock_fd = dml__marker_lock(w->partial)) < 0) {
            status = dml_error_set_errno(errno, "%s: cannot write its marker file %s", w->partial,
                                         DML__PARTIAL_MARKER);
            dml__rmtree(w->partial);
        }
    }
agree:
    status = dml_mpi_agree(w->comm, status, NULL);
    if (status != DML_OK) {
        dml__writer_free(w);
        return status;
    }
    *w_out = w;
    return DML_OK;
}

static dml_status_t dml__writer_fail(dml_dataset_writer_t *w, dml_status_t status)
{
    if (w->failed == DML_OK) {
        w->failed = status;
        snprintf(w->failed_msg, sizeof(w->failed_msg), "%s", dml_error_message());
    }
    return status;
}

/* Writes one shard file; the caller has checked the arguments. */
static dml_status_t dml__shard_write(const dml_dataset_writer_t *w, const char *path,
                                     uint32_t shard, uint64_t n, const void *x, const int32_t *y,
                                     const uint64_t *id)
{
    hsize_t dims[DML_DATASET_MAX_RANK + 1];
    hid_t f = -1, space = -1, d = -1;
    uint64_t d1[2] = {n, 0}, s64 = shard;
    dml__h5_quiet_t q;
    dml_status_t status = DML_ERR_HDF5;
    int k;

    dml__h5_quiet_begin(&q);
    f = dml__h5_create(path, H5F_ACC_EXCL);
    if (f < 0) {
        status = dml__create_failed(path, "shard file");
        goto out;
    }
    dims[0] = n;
    for (k = 0; k < w->schema.rank; k++)
        dims[k + 1] = w->schema.shape[k];
    space = H5Screate_simple(w->schema.rank + 1, dims, NULL);
    if (space < 0)
        goto fail;
    /* Contiguous: a row range maps straight to one file extent, so MPI-IO
     * reads of sorted rows stay large and no chunk index is consulted. */
    d = H5Dcreate2(f, "x", dml__h5_type(w->schema.dtype), space, H5P_DEFAULT, H5P_DEFAULT,
                   H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, dml__h5_type(w->schema.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        goto fail;
    if (dml__h5_write(f, "y", H5T_NATIVE_INT32, d1, y) != 0 ||
        dml__h5_write(f, "id", H5T_NATIVE_UINT64, d1, id) != 0 ||
        dml__h5_attr_write_str(f, "format", DML_DATASET_FORMAT " shard") != 0 ||
        dml__h5_attr_write(f, "shard", H5T_NATIVE_UINT64, 1, &s64) != 0)
        goto fail;
    H5Dclose(d);
    d = -1;
    H5Sclose(space);
    space = -1;
    if (H5Fclose(f) < 0) {
        f = -1;
        goto fail;
    }
    f = -1;
    status = dml__fsync_path(path);
    goto out;
fail:
    /* HDF5 hides errno; a full disk is the usual cause of a failed write. */
    status =
        dml_error_set(DML_ERR_IO, "%s: HDF5 write failed (disk full or file size limit?)", path);
out:
    if (d >= 0)
        H5Dclose(d);
    if (space >= 0)
        H5Sclose(space);
    if (f >= 0)
        H5Fclose(f);
    dml__h5_quiet_end(&q);
    return status;
}

static inline double dml__xval(const dml_dataset_writer_t *w, const void *x, uint64_t i)
{
    return w->schema.dtype == DML_DTYPE_UINT8 ? (double)((const uint8_t *)x)[i]
                                              : (double)((const float *)x)[i];
}

dml_status_t dml_dataset_writer_put(dml_dataset_writer_t *w, uint32_t shard, uint64_t n,
                                    const void *x, const int32_t *y, const uint64_t *id)
{
    char name[DML_DATASET_NAME_MAX], *path;
    uLong crc;
    uint64_t i, f;
    dml_status_t status;

    if (shard >= w->shards)
        return dml__writer_fail(
            w, dml_error_set(DML_ERR_INVALID_ARG, "%s: shard %u of %u", w->dir, shard, w->shards));
    if (w->mine[shard])
        return dml__writer_fail(
            w, dml_error_set(DML_ERR_INVALID_ARG, "%s: shard %u written twice", w->dir, shard));
    if (n == 0 || x == NULL || y == NULL || id == NULL)
        return dml__writer_fail(
            w, dml_error_set(DML_ERR_INVALID_ARG, "%s: shard %u is empty", w->dir, shard));
    for (i = 0; i < n; i++)
        if (y[i] < 0 || (uint32_t)y[i] >= w->schema.num_classes)
            return dml__writer_fail(
                w, dml_error_set(DML_ERR_INVALID_ARG, "sample %llu has label %d, outside 0..%u",
                                 (unsigned long long)id[i], (int)y[i], w->schema.num_classes - 1));
    if (w->schema.dtype == DML_DTYPE_FLOAT32) {
        const float *xf = x;
        for (i = 0; i < n * w->nf; i++)
            if (!isfinite(xf[i]))
                return dml__writer_fail(
                    w, dml_error_set(DML_ERR_NUMERIC, "sample %llu feature %llu is %g",
                                     (unsigned long long)id[i / w->nf],
                                     (unsigned long long)(i % w->nf), (double)xf[i]));
    }

    snprintf(name, sizeof(name), "shard-%05u.h5", shard);
    path = dml__path_join(w->partial, name);
    if (path == NULL)
        return dml__writer_fail(w, dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", w->dir));
    status = dml__shard_write(w, path, shard, n, x, y, id);
    free(path);
    if (status != DML_OK)
        return dml__writer_fail(w, status);

    crc = dml_crc32(0, x, n * w->xsz);
    crc = crc32_combine(crc, dml_crc32(0, y, n * sizeof(int32_t)), (z_off_t)(n * sizeof(int32_t)));
    crc =
        crc32_combine(crc, dml_crc32(0, id, n * sizeof(uint64_t)), (z_off_t)(n * sizeof(uint64_t)));
    w->crc[shard] = (uint32_t)crc;
    w->count[shard] = n;
    w->mine[shard] = 1;

    for (i = 0; i < n; i++) {
        const uint64_t base = i * w->nf;
        w->labels[y[i]]++;
        for (f = 0; f < w->nf; f++) {
            double v = dml__xval(w, x, base + f);
            w->sum[f] += v;
            w->sumsq[f] += v * v;
            if (v < w->min[f])
                w->min[f] = v;
            if (v > w->max[f])
                w->max[f] = v;
        }
        if (w->schema.dtype == DML_DTYPE_UINT8) {
            const uint8_t *xb = (const uint8_t *)x + base;
            for (f = 0; f < w->nf; f++)
                w->hist[f * DML_DATASET_HIST_BINS + (xb[f] >> 3)]++;
        }
    }
    return DML_OK;
}

/* Float features: bin the shards this rank wrote, now that ranges are known. */
static dml_status_t dml__writer_float_hist(dml_dataset_writer_t *w, const dml_stats_t *st)
{
    dml__h5_quiet_t q;
    dml_status_t status = DML_OK;
    uint32_t s;

    dml__h5_quiet_begin(&q);
    for (s = 0; s < w->shards && status == DML_OK; s++) {
        char name[DML_DATASET_NAME_MAX], *path;
        uint64_t n = w->count[s], i;
        float *x;
        hid_t f;

        if (!w->mine[s])
            continue;
        snprintf(name, sizeof(name), "shard-%05u.h5", s);
        path = dml__path_join(w->partial, name);
        x = malloc(n * w->xsz);
        f = path ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
        if (x == NULL || f < 0)
            status = dml_error_set(DML_ERR_IO, "%s: cannot reopen the shard for statistics",
                                   path ? path : w->partial);
        else if (dml__h5_read_named_rows(f, "x", H5T_NATIVE_FLOAT, 0, n, x) != 0)
            status = dml_error_set(DML_ERR_IO, "%s: cannot read back the shard", path);
        else
            for (i = 0; i < n * w->nf; i++)
                w->hist[(i % w->nf) * DML_DATASET_HIST_BINS + dml_stats_bin(st, i % w->nf, x[i])]++;
        if (f >= 0)
            H5Fclose(f);
        free(x);
        free(path);
    }
    dml__h5_quiet_end(&q);
    return status;
}

dml_status_t dml_stats_write_h5(int64_t group, const dml_stats_t *st, uint32_t num_classes)
{
    return dml__stats_write_h5(group, st, num_classes);
}

/* Rank 0: index.h5 into the partial directory, durably; moving the directory
 * into place is dml__writer_move_all's. */
static dml_status_t dml__writer_index(dml_dataset_writer_t *w, const dml_stats_t *st,
                                      const uint64_t *count, const uint32_t *crc)
{
    char(*names)[DML_DATASET_NAME_MAX] = NULL;
    char hash[17], *index = NULL;
    uint64_t dims[2] = {0, 0}, total = 0, shards = w->shards;
    int32_t version = DML_DATASET_VERSION, rank = w->schema.rank, bins = DML_DATASET_HIST_BINS;
    hid_t f = -1, g = -1, strtype = -1;
    dml__h5_quiet_t q;
    dml_status_t status = DML_ERR_HDF5;
    uint32_t s;

    dml__h5_quiet_begin(&q);
    names = calloc(w->shards, DML_DATASET_NAME_MAX);
    index = dml__path_join(w->partial, "index.h5");
    if (names == NULL || index == NULL) {
        status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", w->dir);
        goto out;
    }
    for (s = 0; s < w->shards; s++) {
        snprintf(names[s], DML_DATASET_NAME_MAX, "shard-%05u.h5", s);
        total += count[s];
    }
    dml__content_hash(&w->schema, w->shards, count, crc, hash);

    f = dml__h5_create(index, H5F_ACC_TRUNC);
    if (f < 0) {
        status = dml__create_failed(index, "dataset index");
        goto out;
    }
    strtype = H5Tcopy(H5T_C_S1);
    if (strtype < 0 || H5Tset_size(strtype, DML_DATASET_NAME_MAX) < 0)
        goto fail;
    if (dml__h5_attr_write_str(f, "format", DML_DATASET_FORMAT) != 0 ||
        dml__h5_attr_write(f, "version", H5T_NATIVE_INT32, 1, &version) != 0 ||
        dml__h5_attr_write_str(f, "dtype", dml_dtype_name(w->schema.dtype)) != 0 ||
        dml__h5_attr_write(f, "feature_rank", H5T_NATIVE_INT32, 1, &rank) != 0 ||
        dml__h5_attr_write(f, "feature_shape", H5T_NATIVE_UINT64, (size_t)rank, w->schema.shape) !=
            0 ||
        dml__h5_attr_write(f, "num_classes", H5T_NATIVE_UINT32, 1, &w->schema.num_classes) != 0 ||
        dml__h5_attr_write(f, "samples", H5T_NATIVE_UINT64, 1, &total) != 0 ||
        dml__h5_attr_write(f, "shards", H5T_NATIVE_UINT64, 1, &shards) != 0 ||
        dml__h5_attr_write(f, "hist_bins", H5T_NATIVE_INT32, 1, &bins) != 0 ||
        dml__h5_attr_write_str(f, "content_hash", hash) != 0 ||
        dml__h5_attr_write_str(f, "source", w->source) != 0)
        goto fail;
    dims[0] = w->shards;
    if (dml__h5_write(f, "shard_names", strtype, dims, names) != 0 ||
        dml__h5_write(f, "shard_samples", H5T_NATIVE_UINT64, dims, count) != 0 ||
        dml__h5_write(f, "shard_crc32", H5T_NATIVE_UINT32, dims, crc) != 0)
        goto fail;
    dims[0] = w->schema.num_classes;
    if (dml__h5_write(f, "class_names", strtype, dims, w->schema.class_names) != 0)
        goto fail;
    g = H5Gcreate2(f, "stats", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0 || dml_stats_write_h5(g, st, w->schema.num_classes) != DML_OK)
        goto fail;
    H5Gclose(g);
    g = -1;
    if (H5Fclose(f) < 0) {
        f = -1;
        goto fail;
    }
    f = -1;
    if ((status = dml__fsync_path(index)) == DML_OK)
        status = dml__fsync_path(w->partial);
    goto out;
fail:
    status = dml_error_set(DML_ERR_IO,
                           "%s: cannot write the index (disk full or file size "
                           "limit?)",
                           index ? index : w->partial);
out:
    if (g >= 0)
        H5Gclose(g);
    if (f >= 0)
        H5Fclose(f);
    if (strtype >= 0)
        H5Tclose(strtype);
    dml__h5_quiet_end(&q);
    free(index);
    free(names);
    return status;
}

/* Collective: everything a commit does but moving the directory into place:
 * the agreement that every shard was written, the statistics, index.h5. */
static dml_status_t dml__writer_finish(dml_dataset_writer_t *w)
{
    const uint64_t nf = w->nf, C = w->schema.num_classes;
    uint64_t *count = NULL, total = 0, f;
    uint32_t *crc = NULL, s;
    int *writers = NULL;
    double g[2] = {0, 0};
    dml_stats_t st;
    dml_status_t status;

    memset(&st, 0, sizeof(st));
    status = w->failed;
    if (status != DML_OK)
        dml_error_set(status, "%s", w->failed_msg);
    status = dml_mpi_agree(w->comm, status, NULL);
    if (status != DML_OK)
        goto out;

    count = calloc(w->shards, sizeof(uint64_t));
    crc = calloc(w->shards, sizeof(uint32_t));
    writers = calloc(w->shards, sizeof(int));
    st.features = nf;
    st.mean = calloc(nf, sizeof(double));
    st.std = calloc(nf, sizeof(double));
    st.min = calloc(nf, sizeof(double));
    st.max = calloc(nf, sizeof(double));
    st.hist_lo = calloc(nf, sizeof(double));
    st.hist_hi = calloc(nf, sizeof(double));
    st.hist = calloc(nf * DML_DATASET_HIST_BINS, sizeof(uint64_t));
    st.label_counts = calloc(C, sizeof(uint64_t));
    status = (!count || !crc || !writers || !st.mean || !st.std || !st.min || !st.max ||
              !st.hist_lo || !st.hist_hi || !st.hist || !st.label_counts)
                 ? dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for the statistics", w->dir)
                 : DML_OK;
    status = dml_mpi_agree(w->comm, status, NULL);
    if (status != DML_OK)
        goto out;

    /* Each shard was written by one rank: sums carry its values to all. */
    MPI_Allreduce(w->count, count, (int)w->shards, MPI_UINT64_T, MPI_SUM, w->comm);
    MPI_Allreduce(w->crc, crc, (int)w->shards, MPI_UINT32_T, MPI_SUM, w->comm);
    MPI_Allreduce(w->mine, writers, (int)w->shards, MPI_INT, MPI_SUM, w->comm);
    for (s = 0; s < w->shards; s++) {
        if (writers[s] != 1) {
            status = dml_error_set(DML_ERR_INVALID_ARG,
                                   "%s: shard %u was written %d times "
                                   "(each shard exactly once)",
                                   w->dir, s, writers[s]);
            goto out;
        }
        total += count[s];
    }
    MPI_Allreduce(w->sum, st.mean, (int)nf, MPI_DOUBLE, MPI_SUM, w->comm);
    MPI_Allreduce(w->sumsq, st.std, (int)nf, MPI_DOUBLE, MPI_SUM, w->comm);
    MPI_Allreduce(w->min, st.min, (int)nf, MPI_DOUBLE, MPI_MIN, w->comm);
    MPI_Allreduce(w->max, st.max, (int)nf, MPI_DOUBLE, MPI_MAX, w->comm);
    MPI_Allreduce(w->labels, st.label_counts, (int)C, MPI_UINT64_T, MPI_SUM, w->comm);
    for (f = 0; f < nf; f++) {
        double m = st.mean[f] / (double)total, var = st.std[f] / (double)total - m * m;
        g[0] += st.mean[f];
        g[1] += st.std[f];
        st.mean[f] = m;
        st.std[f] = var > 0 ? sqrt(var) : 0;
    }
    st.global_mean = g[0] / ((double)total * (double)nf);
    {
        double var = g[1] / ((double)total * (double)nf) - st.global_mean * st.global_mean;
        st.global_std = var > 0 ? sqrt(var) : 0;
    }
    for (f = 0; f < nf; f++) {
        if (w->schema.dtype == DML_DTYPE_UINT8) {
            st.hist_lo[f] = 0;
            st.hist_hi[f] = 256;
        } else {
            st.hist_lo[f] = st.min[f];
            st.hist_hi[f] = st.max[f];
        }
    }
    status = w->schema.dtype == DML_DTYPE_FLOAT32 ? dml__writer_float_hist(w, &st) : DML_OK;
    status = dml_mpi_agree(w->comm, status, NULL);
    if (status != DML_OK)
        goto out;
    MPI_Allreduce(w->hist, st.hist, (int)(nf * DML_DATASET_HIST_BINS), MPI_UINT64_T, MPI_SUM,
                  w->comm);

    if (w->rank == 0)
        status = dml__writer_index(w, &st, count, crc);
    status = dml_mpi_agree(w->comm, status, NULL);
out:
    free(count);
    free(crc);
    free(writers);
    dml__stats_release(&st);
    return status;
}

/* renameat2's flags are refused by some file systems (the Linux NFS client
 * rejects every flag with EINVAL): there the move falls back to plain
 * renames, which is what those file systems make atomic. */
static int dml__flags_unsupported(int e)
{
    return e == EINVAL || e == ENOSYS || e == EOPNOTSUPP;
}

/* partial to dir, which must be free: where RENAME_NOREPLACE is not
 * supported, dir checked absent first (rename() of a directory onto one that
 * is not empty fails, so the window can only ever replace an empty one). */
static int dml__move_new(const char *partial, const char *dir)
{
    struct stat sb;

    if (renameat2(AT_FDCWD, partial, AT_FDCWD, dir, RENAME_NOREPLACE) == 0)
        return 0;
    if (!dml__flags_unsupported(errno))
        return -1;
    if (lstat(dir, &sb) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(partial, dir);
}

/* partial and dir exchanged: atomically where RENAME_EXCHANGE is supported,
 * else by three renames through aside (dir is absent for a moment). */
static int dml__exchange(const char *partial, const char *dir)
{
    char aside[4200];
    int e;

    if (renameat2(AT_FDCWD, partial, AT_FDCWD, dir, RENAME_EXCHANGE) == 0)
        return 0;
    if (!dml__flags_unsupported(errno))
        return -1;
    snprintf(aside, sizeof(aside), "%s.old", partial);
    if (rename(dir, aside) != 0)
        return -1;
    if (rename(partial, dir) != 0) {
        e = errno;
        rename(aside, dir);
        errno = e;
        return -1;
    }
    return rename(aside, partial);
}

/* Rank 0: moves each finished partial directory into place: over its
 * dataset (an exchange) where replace found one, else to a name that must
 * still be free. If one move fails, the ones before it are undone (the old
 * datasets back, the new ones back in their partial directories, marked
 * again), so that either all datasets are the new ones or none is; an undo
 * that fails keeps that partial directory (keep set: it may hold the old
 * dataset) and the message says where each is. Then the replaced datasets,
 * now in the partial directories, are removed. */
static dml_status_t dml__writer_move_all(dml_dataset_writer_t **w, size_t n, int *keep)
{
    char *marker = NULL, *tmp, *parent, undo[2048] = "";
    int *exchanged = calloc(n ? n : 1, sizeof(int));
    dml_status_t status = DML_OK;
    struct stat sb;
    size_t i, j, len;

    if (exchanged == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", w[0]->dir);
    for (i = 0; i < n && status == DML_OK; i++) {
        /* The marker goes just before the move: a dataset carries none. */
        marker = dml__path_join(w[i]->partial, DML__PARTIAL_MARKER);
        if (marker == NULL) {
            status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", w[i]->dir);
            break;
        }
        if (unlink(marker) != 0)
            status = dml_error_set_errno(errno, "%s: cannot remove the marker", marker);
        else if (lstat(w[i]->dir, &sb) == 0 && w[i]->replace)
            exchanged[i] = 1;
        if (status == DML_OK && exchanged[i] && dml__exchange(w[i]->partial, w[i]->dir) != 0)
            status =
                dml_error_set_errno(errno, "%s: cannot exchange with %s", w[i]->partial, w[i]->dir);
        else if (status == DML_OK && !exchanged[i] && dml__move_new(w[i]->partial, w[i]->dir) != 0)
            status =
                dml_error_set_errno(errno, "%s: cannot rename to %s%s", w[i]->partial, w[i]->dir,
                                    errno == EEXIST ? " (it appeared while the "
                                                      "dataset was written)"
                                                    : "");
        free(marker);
        marker = NULL;
        if (status != DML_OK) {
            dml__marker_write(w[i]->partial);
            break;
        }
    }
    if (status != DML_OK) {
        /* Put back what was moved, last first. */
        for (j = i; j-- > 0;) {
            int rc = exchanged[j] ? dml__exchange(w[j]->partial, w[j]->dir)
                                  : rename(w[j]->dir, w[j]->partial);
            if (rc != 0) {
                /* Left as it is: the new dataset at dir, the old one (if
                 * any) in partial, which is kept. */
                keep[j] = 1;
                len = strlen(undo);
                snprintf(undo + len, sizeof(undo) - len,
                         "; %s could not be put back (%s): the "
                         "new dataset is there%s%s",
                         w[j]->dir, strerror(errno),
                         exchanged[j] ? ", the one it replaced in " : "",
                         exchanged[j] ? w[j]->partial : "");
            } else {
                dml__marker_write(w[j]->partial);
            }
        }
        free(exchanged);
        if (undo[0] != '\0') {
            char first[1024];
            snprintf(first, sizeof(first), "%s", dml_error_message());
            return dml_error_set(status, "%s%s", first, undo);
        }
        return status;
    }
    for (i = 0; i < n; i++) {
        /* The old dataset now sits in the partial directory: marked as a
         * leftover first (best effort), so that an interruption here leaves
         * nothing the next write refuses. */
        if (exchanged[i]) {
            dml__marker_write(w[i]->partial);
            if (dml__rmtree(w[i]->partial) != 0 && status == DML_OK)
                status = dml_error_set_errno(errno,
                                             "%s: the new dataset is in place, but the "
                                             "replaced one, now in %s, cannot be removed",
                                             w[i]->dir, w[i]->partial);
        }
        tmp = strdup(w[i]->dir);
        parent = tmp ? strdup(dirname(tmp)) : NULL;
        free(tmp);
        if (parent == NULL) {
            if (status == DML_OK)
                status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", w[i]->dir);
            continue;
        }
        {
            dml_status_t fs = dml__fsync_path(parent);
            if (fs != DML_OK && status == DML_OK)
                status = fs;
        }
        free(parent);
    }
    /* Every dataset is in place: nothing of theirs is left to remove. */
    for (i = 0; i < n; i++)
        keep[i] = 1;
    free(exchanged);
    return status;
}

dml_status_t dml_dataset_writer_commit_all(dml_dataset_writer_t **w, size_t n)
{
    dml_status_t status = DML_OK;
    int *keep;
    size_t i;

    if (n == 0)
        return DML_OK;
    keep = calloc(n, sizeof(int));
    if (keep == NULL)
        status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", w[0]->dir);
    for (i = 0; i < n && status == DML_OK; i++)
        status = dml__writer_finish(w[i]);
    if (status == DML_OK) {
        if (w[0]->rank == 0)
            status = dml__writer_move_all(w, n, keep);
        status = dml_mpi_agree(w[0]->comm, status, NULL);
    }
    /* A failed write leaves nothing behind to fill the disk: every rank has
     * stopped writing by the time they agree on the failure. A partial
     * directory whose undo failed may hold a replaced dataset: kept. */
    for (i = 0; i < n; i++) {
        if (status != DML_OK && w[i]->rank == 0 && (keep == NULL || !keep[i]))
            dml__rmtree(w[i]->partial);
        dml__writer_free(w[i]);
    }
    free(keep);
    return status;
}

dml_status_t dml_dataset_writer_commit(dml_dataset_writer_t *w)
{
    return dml_dataset_writer_commit_all(&w, 1);
}
