/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * h5util.c: the HDF5 and file-system helpers every component that writes
 * files shares (dml_h5.h). They return -1 or a status rather than print.
 */
#include "config.h"

#include "dml_h5.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* HDF5 1.10 as Debian builds it (parallel) is not thread-safe: one lock for
 * the whole process, which every thread that calls HDF5 while another may
 * (the loader's prefetch thread, the checkpoint writer) takes. */
static pthread_mutex_t dml__h5_mutex = PTHREAD_MUTEX_INITIALIZER;

void dml__h5_lock(void)
{
    pthread_mutex_lock(&dml__h5_mutex);
}

void dml__h5_unlock(void)
{
    pthread_mutex_unlock(&dml__h5_mutex);
}

void dml__h5_quiet_begin(dml__h5_quiet_t *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void dml__h5_quiet_end(const dml__h5_quiet_t *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

hid_t dml__h5_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);

    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

hid_t dml__h5_create(const char *path, unsigned flags)
{
    hid_t fapl = dml__h5_fapl(), f = fapl < 0 ? -1 : H5Fcreate(path, flags, H5P_DEFAULT, fapl);

    if (fapl >= 0)
        H5Pclose(fapl);
    return f;
}

int dml__h5_attr_write_str(hid_t obj, const char *name, const char *value)
{
    hid_t type = -1, space = -1, attr = -1;
    int rc = -1;

    type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, strlen(value) + 1) < 0)
        goto out;
    space = H5Screate(H5S_SCALAR);
    if (space < 0)
        goto out;
    attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, type, value) < 0)
        goto out;
    rc = 0;
out:
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    return rc;
}

int dml__h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t len)
{
    hid_t attr = -1, type = -1, mtype = -1;
    size_t sz;
    char *tmp = NULL;
    int rc = -1;

    if (H5Aexists(obj, name) <= 0)
        return -1;
    attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0)
        goto out;
    type = H5Aget_type(attr);
    if (type < 0 || H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) > 0)
        goto out;
    sz = H5Tget_size(type);
    mtype = H5Tcopy(H5T_C_S1);
    if (mtype < 0 || H5Tset_size(mtype, sz) < 0)
        goto out;
    tmp = calloc(1, sz + 1);
    if (tmp == NULL || H5Aread(attr, mtype, tmp) < 0)
        goto out;
    snprintf(buf, len, "%s", tmp);
    rc = 0;
out:
    free(tmp);
    if (mtype >= 0)
        H5Tclose(mtype);
    if (type >= 0)
        H5Tclose(type);
    if (attr >= 0)
        H5Aclose(attr);
    return rc;
}

int dml__h5_attr_write(hid_t obj, const char *name, hid_t type, size_t n, const void *value)
{
    hsize_t dim = n;
    hid_t space, attr = -1;
    int rc = -1;

    space = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    if (space < 0)
        return -1;
    attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0 && H5Awrite(attr, type, value) >= 0)
        rc = 0;
    if (attr >= 0)
        H5Aclose(attr);
    H5Sclose(space);
    return rc;
}

int dml__h5_attr_read(hid_t obj, const char *name, hid_t type, size_t n, void *value)
{
    hid_t attr, space = -1;
    hssize_t np;
    int rc = -1;

    if (H5Aexists(obj, name) <= 0)
        return -1;
    attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0)
        return -1;
    space = H5Aget_space(attr);
    np = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (np == (hssize_t)n && H5Aread(attr, type, value) >= 0)
        rc = 0;
    if (space >= 0)
        H5Sclose(space);
    H5Aclose(attr);
    return rc;
}

int dml__h5_write(hid_t loc, const char *name, hid_t type, const uint64_t dims[2], const void *buf)
{
    hsize_t d[2] = {dims[0], dims[1]};
    hid_t space, dset = -1;
    int rc = -1;

    space = H5Screate_simple(dims[1] ? 2 : 1, d, NULL);
    if (space < 0)
        return -1;
    dset = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (dset >= 0 &&
        (dims[0] == 0 || H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0))
        rc = 0;
    if (dset >= 0)
        H5Dclose(dset);
    H5Sclose(space);
    return rc;
}

int dml__h5_read(hid_t loc, const char *name, hid_t type, uint64_t expect0, uint64_t expect1,
                 void *buf)
{
    hsize_t d[2] = {0, 0};
    hid_t dset, space = -1;
    int nd, rc = -1;

    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return -1;
    dset = H5Dopen2(loc, name, H5P_DEFAULT);
    if (dset < 0)
        return -1;
    space = H5Dget_space(dset);
    nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (nd == (expect1 ? 2 : 1) && H5Sget_simple_extent_dims(space, d, NULL) == nd &&
        d[0] == expect0 && (nd == 1 || d[1] == expect1) &&
        (expect0 == 0 || H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0))
        rc = 0;
    if (space >= 0)
        H5Sclose(space);
    H5Dclose(dset);
    return rc;
}

int dml__h5_read_rows(hid_t dset, hid_t fspace, hid_t mtype, uint64_t r0, uint64_t n, void *buf)
{
    hsize_t start[8] = {0}, count[8], elems;
    hid_t fs = fspace >= 0 ? fspace : H5Dget_space(dset), ms = -1;
    int nd, k, rc = -1;

    if (fs < 0)
        return -1;
    nd = H5Sget_simple_extent_ndims(fs);
    if (nd < 1 || nd > 8 || H5Sget_simple_extent_dims(fs, count, NULL) != nd)
        goto out;
    start[0] = r0;
    count[0] = n;
    for (elems = 1, k = 0; k < nd; k++)
        elems *= count[k];
    /* The memory side only needs the same number of elements. */
    ms = H5Screate_simple(1, &elems, NULL);
    if (ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
        H5Dread(dset, mtype, ms, fs, H5P_DEFAULT, buf) >= 0)
        rc = 0;
out:
    if (ms >= 0)
        H5Sclose(ms);
    if (fspace < 0)
        H5Sclose(fs);
    return rc;
}

int dml__h5_read_named_rows(hid_t file, const char *name, hid_t mtype, uint64_t r0, uint64_t n,
                            void *buf)
{
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    int rc;

    if (d < 0)
        return -1;
    rc = dml__h5_read_rows(d, -1, mtype, r0, n, buf);
    H5Dclose(d);
    return rc;
}

char *dml__path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);

    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int dml__mkdir_p(const char *dir)
{
    char p[4096], *s;

    /* the usual case, at every checkpoint: it is there */
    if (mkdir(dir, 0777) == 0 || errno == EEXIST)
        return 0;
    snprintf(p, sizeof(p), "%s", dir);
    for (s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

dml_status_t dml__fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return dml_error_set_errno(errno, "%s: cannot open to fsync", path);
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return dml_error_set_errno(e, "%s: fsync failed", path);
    }
    if (close(fd) != 0)
        return dml_error_set_errno(errno, "%s: close after fsync failed", path);
    return DML_OK;
}

void dml__tmp_name(const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s.tmp.%ld", path, (long)getpid());
}

/* The move and the directory's fsync, for a temporary already fsynced. */
static dml_status_t dml__move_into_place(const char *tmp, const char *path, int exclusive,
                                         dml_status_t st)
{
    char dir[4096], *slash;

    if (st == DML_OK && (exclusive ? link(tmp, path) : rename(tmp, path)) != 0)
        st = exclusive && errno == EEXIST
                 ? DML_ERR_EXISTS
                 : dml_error_set_errno(errno, "%s: cannot move to %s", tmp, path);
    unlink(tmp);
    if (st != DML_OK)
        return st;
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    return dml__fsync_path(slash ? dir : ".");
}

dml_status_t dml__commit_file(const char *tmp, const char *path, int exclusive)
{
    return dml__move_into_place(tmp, path, exclusive, dml__fsync_path(tmp));
}

dml_status_t dml__write_tmp(const char *tmp, const char *path, const void *buf, size_t n,
                            const char *what)
{
    const char *p = buf;
    size_t left = n;
    dml_status_t st = DML_OK;
    ssize_t w;
    int fd, e;

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return dml_error_set_errno(errno, "%s: cannot write the %s", path, what);
    /* The whole size reserved first, so that a disk too full for the file
     * fails here with ENOSPC rather than half-way through it. Where the file
     * system cannot reserve (EOPNOTSUPP), the writes below still say. */
    if (n > 0 && (e = posix_fallocate(fd, 0, (off_t)n)) != 0 && e != EOPNOTSUPP && e != EINVAL) {
        st = dml_error_set_errno(e, "%s: cannot write the %s (%zu bytes)", path, what, n);
        goto fail;
    }
    while (left > 0) {
        w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            st = dml_error_set_errno(w < 0 ? errno : EIO, "%s: cannot write the %s (%zu bytes)",
                                     path, what, n);
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        st = dml_error_set_errno(errno, "%s: cannot write the %s (fsync)", path, what);
        goto fail;
    }
    e = close(fd);
    fd = -1;
    if (e != 0) {
        st = dml_error_set_errno(errno, "%s: cannot write the %s (close)", path, what);
        goto fail;
    }
    return DML_OK;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return st;
}

dml_status_t dml__commit_written(const char *tmp, const char *path, int exclusive)
{
    return dml__move_into_place(tmp, path, exclusive, DML_OK);
}

dml_status_t dml__write_durably(const char *path, const void *buf, size_t n, const char *what,
                                int exclusive)
{
    char tmp[4200];
    dml_status_t st;

    dml__tmp_name(path, tmp, sizeof(tmp));
    st = dml__write_tmp(tmp, path, buf, n, what);
    return st != DML_OK ? st : dml__move_into_place(tmp, path, exclusive, DML_OK);
}

hid_t dml__h5_create_image(void)
{
    static unsigned serial;
    char name[64];
    hid_t fapl = dml__h5_fapl(), f = -1;

    /* HDF5 tells open files apart by name, also files that live in memory. */
    snprintf(name, sizeof(name), "dml-image-%ld-%u", (long)getpid(), serial++);
    if (fapl >= 0 && H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) >= 0)
        f = H5Fcreate(name, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    return f;
}

/* HDF5's own metadata checksum (Jenkins' lookup3), exported by libhdf5
 * since 1.8.7 though not in its public headers. */
extern uint32_t H5_checksum_metadata(const void *data, size_t len, uint32_t initval);

/* HDF5 1.10's H5Fget_file_image clears the superblock's "open for writing"
 * flags in the image it returns but keeps the checksum computed with them
 * set, so that the image as written is refused ("incorrect metadata
 * checksum"). The checksum is put right here (superblock versions 2 and 3:
 * signature, 4 bytes, 4 addresses, then the checksum), and the image is then
 * opened by HDF5 from memory: a file the tools write is one HDF5 reads. */
static int dml__h5_image_fix(unsigned char *img, size_t n)
{
    size_t at, so;
    uint32_t sum;
    hid_t fapl = -1, f = -1;
    int ok = 0;

    if (n >= 12 && (img[8] == 2 || img[8] == 3)) {
        so = img[9];
        at = 12 + 4 * so;
        if (at + 4 > n)
            return -1;
        sum = H5_checksum_metadata(img, at, 0);
        img[at] = (unsigned char)sum;
        img[at + 1] = (unsigned char)(sum >> 8);
        img[at + 2] = (unsigned char)(sum >> 16);
        img[at + 3] = (unsigned char)(sum >> 24);
    }
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) >= 0 &&
        H5Pset_file_image(fapl, img, n) >= 0)
        f = H5Fopen("dml-image-check", H5F_ACC_RDONLY, fapl);
    ok = f >= 0;
    if (f >= 0)
        H5Fclose(f);
    if (fapl >= 0)
        H5Pclose(fapl);
    return ok ? 0 : -1;
}

dml_status_t dml__h5_image_take(hid_t f, void **buf_out, size_t *n_out)
{
    ssize_t n = -1;
    void *buf = NULL;

    if (H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0)
        n = H5Fget_file_image(f, NULL, 0);
    if (n > 0 && (buf = malloc((size_t)n)) != NULL && H5Fget_file_image(f, buf, (size_t)n) == n &&
        dml__h5_image_fix(buf, (size_t)n) == 0) {
        H5Fclose(f);
        *buf_out = buf;
        *n_out = (size_t)n;
        return DML_OK;
    }
    free(buf);
    H5Fclose(f);
    return dml_error_set(n > 0 && buf == NULL ? DML_ERR_NO_MEMORY : DML_ERR_HDF5,
                         "cannot build the file in memory (%zd bytes)", n);
}

dml_status_t dml__h5_image_commit(hid_t f, const char *path, const char *what, int exclusive)
{
    void *buf = NULL;
    size_t n = 0;
    dml_status_t st = dml__h5_image_take(f, &buf, &n);

    if (st == DML_OK)
        st = dml__write_durably(path, buf, n, what, exclusive);
    else
        st = dml_error_set(st, "%s: cannot build the %s in memory", path, what);
    free(buf);
    return st;
}

static int dml__rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int dml__rmtree(const char *path)
{
    if (access(path, F_OK) != 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, dml__rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t dml__fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
