/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * reuse_vfd.c: an HDF5 file driver that creates a file in the blocks of an
 * existing one, the way databases recycle their log segments.
 *
 * A checkpoint that the run no longer keeps is renamed, not removed, and the
 * next small checkpoint is written into it (ckpt.c). HDF5's own POSIX driver
 * (sec2) creates with O_TRUNC, which gives the blocks back; every block the
 * new file's data then lands in is allocated again, and the file's fsync has
 * to commit that allocation to the journal before it returns. Written in
 * place, the fsync only waits for the data, and is faster by half or more
 * on ext4 (docs/benchmarks/design-notes.md).
 *
 * The driver is sec2 without the truncation: a file "created" through it
 * starts logically empty (HDF5 sees an end of file of 0 and reads zeros past
 * what it has written) while the old bytes stay in place until overwritten;
 * when HDF5 closes the file it is cut to HDF5's end of allocation, so a
 * larger old file loses its tail. The result is an ordinary HDF5 file (no
 * driver information in its superblock) that any driver reads.
 *
 * The bytes of the old file that HDF5 never overwrites lie only inside space
 * it allocated and did not write: arrays written by dml_ckpt_put, which
 * writes all of each array, and nothing else (a dataset never written has no
 * storage with HDF5's default late allocation).
 */
#include "config.h"

#include "reuse_vfd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dml__pwrite_all(int fd, const char *p, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t k = pwrite(fd, p, len, off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        p += k, len -= (size_t)k, off += k;
    }
    return 0;
}

typedef struct {
    H5FD_t pub; /* first: HDF5 casts between the two */
    int fd;
    haddr_t eoa;  /* HDF5's end of allocation */
    haddr_t eof;  /* the logical end: past it HDF5 has written nothing */
    haddr_t size; /* the file's size on disk, old bytes included */
} dml__reuse_t;

static H5FD_t *dml__reuse_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr)
{
    dml__reuse_t *f;
    struct stat sb;
    int fd, o = (flags & H5F_ACC_RDWR) ? O_RDWR : O_RDONLY;

    (void)fapl;
    (void)maxaddr;
    if (flags & H5F_ACC_CREAT)
        o |= O_CREAT;
    if (flags & H5F_ACC_EXCL)
        o |= O_EXCL;
    /* H5F_ACC_TRUNC: deliberately no O_TRUNC, see above */
    if ((fd = open(name, o | O_CLOEXEC, 0666)) < 0)
        return NULL;
    if (fstat(fd, &sb) != 0 || (f = calloc(1, sizeof(*f))) == NULL) {
        close(fd);
        return NULL;
    }
    f->fd = fd;
    f->size = (haddr_t)sb.st_size;
    f->eof = (flags & H5F_ACC_TRUNC) ? 0 : f->size;
    return &f->pub;
}

static herr_t dml__reuse_close(H5FD_t *file)
{
    dml__reuse_t *f = (dml__reuse_t *)file;
    int rc = close(f->fd);

    free(f);
    return rc == 0 ? 0 : -1;
}

static herr_t dml__reuse_query(const H5FD_t *file, unsigned long *flags)
{
    (void)file;
    /* sec2's features, but for SWMR, which a checkpoint does not use */
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
             H5FD_FEAT_AGGREGATE_SMALLDATA | H5FD_FEAT_POSIX_COMPAT_HANDLE |
             H5FD_FEAT_DEFAULT_VFD_COMPATIBLE;
    return 0;
}

static haddr_t dml__reuse_get_eoa(const H5FD_t *file, H5FD_mem_t type)
{
    (void)type;
    return ((const dml__reuse_t *)file)->eoa;
}

static herr_t dml__reuse_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr)
{
    (void)type;
    ((dml__reuse_t *)file)->eoa = addr;
    return 0;
}

static haddr_t dml__reuse_get_eof(const H5FD_t *file, H5FD_mem_t type)
{
    (void)type;
    return ((const dml__reuse_t *)file)->eof;
}

static herr_t dml__reuse_get_handle(H5FD_t *file, hid_t fapl, void **handle)
{
    (void)fapl;
    *handle = &((dml__reuse_t *)file)->fd;
    return 0;
}

static herr_t dml__reuse_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                              void *buf)
{
    dml__reuse_t *f = (dml__reuse_t *)file;
    char *p = buf;

    (void)type;
    (void)dxpl;
    /* the old file's bytes past the logical end read as the zeros a new
     * file would give */
    while (size > 0 && addr < f->eof) {
        size_t want = f->eof - addr < size ? (size_t)(f->eof - addr) : size;
        ssize_t k = pread(f->fd, p, want, (off_t)addr);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        p += k, addr += (haddr_t)k, size -= (size_t)k;
    }
    memset(p, 0, size);
    return 0;
}

static herr_t dml__reuse_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                               const void *buf)
{
    dml__reuse_t *f = (dml__reuse_t *)file;

    (void)type;
    (void)dxpl;
    if (dml__pwrite_all(f->fd, buf, size, (off_t)addr) != 0)
        return -1;
    addr += size;
    if (addr > f->eof)
        f->eof = addr;
    if (addr > f->size)
        f->size = addr;
    return 0;
}

/* HDF5 calls it when it flushes or closes the file: the file ends where
 * HDF5's allocation does, as with sec2 (which only ever grows it there). */
static herr_t dml__reuse_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing)
{
    dml__reuse_t *f = (dml__reuse_t *)file;

    (void)dxpl;
    (void)closing;
    if (f->size != f->eoa) {
        if (ftruncate(f->fd, (off_t)f->eoa) != 0)
            return -1;
        f->size = f->eof = f->eoa;
    }
    return 0;
}

static const H5FD_class_t dml__reuse_class = {
    .name = "dml-reuse",
    .maxaddr = (haddr_t)(((uint64_t)1 << 63) - 1),
    .fc_degree = H5F_CLOSE_WEAK,
    .open = dml__reuse_open,
    .close = dml__reuse_close,
    .query = dml__reuse_query,
    .get_eoa = dml__reuse_get_eoa,
    .set_eoa = dml__reuse_set_eoa,
    .get_eof = dml__reuse_get_eof,
    .get_handle = dml__reuse_get_handle,
    .read = dml__reuse_read,
    .write = dml__reuse_write,
    .truncate = dml__reuse_truncate,
    .fl_map = H5FD_FLMAP_DICHOTOMY,
};

int dml__reuse_fapl(hid_t fapl)
{
    static hid_t id = H5I_INVALID_HID;

    /* registered once per process, again only if HDF5 was closed meanwhile */
    if (id < 0 || H5Iis_valid(id) <= 0)
        id = H5FDregister(&dml__reuse_class);
    return id >= 0 && H5Pset_driver(fapl, id, NULL) >= 0 ? 0 : -1;
}
