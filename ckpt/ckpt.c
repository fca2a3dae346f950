/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ckpt.c: the checkpoint writer and its commit protocol, listing and
 * verification (see dml_ckpt.h).
 *
 * The protocol's phases are reported to the caller's on_phase (a test
 * build's dml-train kills itself there, as a node failure would, to show
 * that no crash leaves a partial checkpoint taken for a good one): begin
 * (temporary created), put (first array written), closed (all ranks closed
 * the file, nothing committed), renamed (in place, "latest" not moved),
 * latest (moved, older ones not yet pruned).
 */
#include "config.h"

#include "dml_ckpt.h"
#include "dml_crc.h"
#include "dml_h5.h"
#include "dml_io.h"
#include "dml_mpi.h"
#include "reuse_vfd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

struct dml_ckpt_writer {
    MPI_Comm comm;
    int rank, size;
    char dir[4096];
    char tmp[4096];
    char final[4096];
    char name[64];
    uint64_t step;
    hid_t file;
    int puts;
    int single;     /* rank 0 writes the whole file (small state) */
    int fd;         /* where this rank writes arrays itself, else -1:
                       HDF5's where single, ours (to close) where not */
    uint64_t piece; /* the pieces of arrays written that way; 0: none */
    dml_ckpt_config_t cfg;
    dml__h5_quiet_t quiet;
};

/* Up to this much state, rank 0 writes the checkpoint alone: its fixed cost
 * (an MPI-IO open and close, collective metadata) would otherwise dwarf the
 * few milliseconds the bytes take. Above it, every rank writes its share
 * (parallel HDF5). */
#define DML_CKPT_SINGLE_MAX_DEFAULT (64ULL << 20)

/* The pruned checkpoint kept for the next one to be written into
 * (reuse_vfd.c), in the checkpoint directory. A dot name: no reader of the
 * directory takes it for a checkpoint or a temporary. */
#define DML_CKPT_SPARE ".spare.h5"

static void dml__spare_path(const char *dir, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, DML_CKPT_SPARE);
}

static void dml__phase(const dml_ckpt_writer_t *w, const char *phase)
{
    if (w->cfg.on_phase != NULL)
        w->cfg.on_phase(w->cfg.on_phase_arg, phase, w->rank);
}

/* A failed write says why where it can: most often the disk is full or the
 * process is over its file size limit. */
static dml_status_t dml__write_failed(const char *path, const char *what)
{
    struct statvfs sv;
    struct rlimit rl;
    char dir[4096], *slash;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    if (statvfs(dir, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < (1u << 20))
        return dml_error_set(DML_ERR_NO_SPACE,
                             "%s: cannot write %s: no space left on the file "
                             "system",
                             path, what);
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        return dml_error_set(DML_ERR_NO_SPACE,
                             "%s: cannot write %s (the file size limit is %llu "
                             "bytes)",
                             path, what, (unsigned long long)rl.rlim_cur);
    return dml_error_set(DML_ERR_IO, "%s: cannot write %s", path, what);
}

/* The checkpoint's collectives run on their own communicator, so that they
 * never match the caller's messages. It is a duplicate of the caller's,
 * made at its first checkpoint and kept as an attribute of it (its Fortran
 * handle, which fits the attribute's pointer without an allocation):
 * MPI_Comm_dup per checkpoint cost as much as all the directory work
 * (docs/benchmarks/design-notes.md). Freed when the caller's communicator is, except
 * MPI_COMM_WORLD's, which MPI_Finalize releases with everything else. */
static int dml__comm_keyval = MPI_KEYVAL_INVALID;

static int dml__comm_attr_delete(MPI_Comm comm, int keyval, void *attr, void *extra)
{
    MPI_Comm dup = MPI_Comm_f2c((MPI_Fint)(intptr_t)attr);

    (void)keyval;
    (void)extra;
    if (comm != MPI_COMM_WORLD)
        MPI_Comm_free(&dup);
    return MPI_SUCCESS;
}

/* Collective over comm: every rank finds the attribute or none does. */
static int dml__ckpt_comm(MPI_Comm comm, MPI_Comm *out)
{
    void *attr = NULL;
    int found = 0;

    if (dml__comm_keyval == MPI_KEYVAL_INVALID &&
        MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, dml__comm_attr_delete, &dml__comm_keyval,
                               NULL) != MPI_SUCCESS)
        return -1;
    if (MPI_Comm_get_attr(comm, dml__comm_keyval, &attr, &found) != MPI_SUCCESS)
        return -1;
    if (found) {
        *out = MPI_Comm_f2c((MPI_Fint)(intptr_t)attr);
        return 0;
    }
    if (MPI_Comm_dup(comm, out) != MPI_SUCCESS)
        return -1;
    if (MPI_Comm_set_attr(comm, dml__comm_keyval, (void *)(intptr_t)MPI_Comm_c2f(*out)) !=
        MPI_SUCCESS) {
        MPI_Comm_free(out);
        return -1;
    }
    return 0;
}

dml_status_t dml_ckpt_dir_prepare(const char *dir)
{
    if (dml__mkdir_p(dir) != 0)
        return dml_error_set_errno(errno, "%s: cannot create the checkpoint directory", dir);
    /* access() says yes to root everywhere; a read-only mount still says no. */
    if (access(dir, W_OK | X_OK) != 0)
        return dml_error_set_errno(errno, "%s: checkpoint directory not writable", dir);
    return DML_OK;
}

/* "ckpt-<step>.h5" exactly: *step gets the step. */
static int dml__ckpt_name(const char *name, uint64_t *step)
{
    unsigned long long s;
    int n = 0;

    if (sscanf(name, "ckpt-%llu.h5%n", &s, &n) != 1 || n == 0 || name[n] != '\0' || name[5] < '0' ||
        name[5] > '9')
        return 0;
    *step = s;
    return 1;
}

static int dml__is_tmp(const char *name)
{
    uint64_t s;
    char base[256];
    const char *t = strstr(name, ".h5.tmp");

    if (t == NULL || (size_t)(t - name) + 3 >= sizeof(base))
        return 0;
    memcpy(base, name, (size_t)(t - name) + 3);
    base[(t - name) + 3] = '\0';
    return dml__ckpt_name(base, &s);
}

dml_status_t dml_ckpt_dir_set_aside(const char *dir, char *moved, size_t len)
{
    char to[4200], from[4600], dest[4600], stamp[32];
    struct dirent *de;
    struct tm tm;
    time_t now = time(NULL);
    dml_status_t st = DML_OK;
    uint64_t step;
    DIR *d;
    int n = 0, k;

    moved[0] = '\0';
    if ((d = opendir(dir)) == NULL)
        return errno == ENOENT ? DML_OK : dml_error_set_errno(errno, "%s: cannot list it", dir);
    while ((de = readdir(d)) != NULL)
        n += dml__ckpt_name(de->d_name, &step);
    if (n == 0) {
        closedir(d);
        return DML_OK;
    }
    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
    for (k = 0;; k++) {
        snprintf(to, sizeof(to), k ? "%s/earlier-run-%s-%d" : "%s/earlier-run-%s", dir, stamp, k);
        if (mkdir(to, 0755) == 0)
            break;
        if (errno != EEXIST || k == 100) {
            closedir(d);
            return dml_error_set_errno(errno,
                                       "%s: cannot create it for the earlier run's "
                                       "checkpoints",
                                       to);
        }
    }
    rewinddir(d);
    while (st == DML_OK && (de = readdir(d)) != NULL) {
        const int ckpt = dml__ckpt_name(de->d_name, &step) || strcmp(de->d_name, "latest") == 0;
        snprintf(from, sizeof(from), "%s/%s", dir, de->d_name);
        snprintf(dest, sizeof(dest), "%s/%s", to, de->d_name);
        if (ckpt && rename(from, dest) != 0)
            st = dml_error_set_errno(errno, "%s: cannot move it to %s", from, to);
        else if (!ckpt &&
                 (dml__is_tmp(de->d_name) || strcmp(de->d_name, DML_CKPT_SPARE) == 0 ||
                  strcmp(de->d_name, ".latest.tmp") == 0) &&
                 unlink(from) != 0 && errno != ENOENT)
            st = dml_error_set_errno(errno, "%s: cannot remove it", from);
    }
    closedir(d);
    if (st == DML_OK)
        st = dml__fsync_path(to);
    if (st == DML_OK)
        st = dml__fsync_path(dir);
    if (st == DML_OK)
        snprintf(moved, len, "%s", to);
    return st;
}

/* Whether expect bytes (and HDF5's metadata) fit in dir, where the file
 * already holds `have` bytes of blocks (a spare written into), and under the
 * file size limit. */
static dml_status_t dml__space_check(const char *dir, uint64_t expect, uint64_t have)
{
    struct statvfs sv;
    struct rlimit rl;
    uint64_t need = expect + expect / 16 + (1u << 20);

    if (statvfs(dir, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize + have < need)
        return dml_error_set(DML_ERR_NO_SPACE,
                             "%s: no space left for a checkpoint (it needs about "
                             "%.1f MiB, the file system has %.1f MiB free)",
                             dir, (double)need / 1048576,
                             (double)sv.f_bavail * sv.f_frsize / 1048576);
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        return dml_error_set(DML_ERR_NO_SPACE,
                             "%s: a checkpoint needs about %.1f MiB, over the file "
                             "size limit of %.1f MiB",
                             dir, (double)need / 1048576, (double)rl.rlim_cur / 1048576);
    return DML_OK;
}

/* A large array (rank 0 alone in a small checkpoint, every rank its share
 * in a large one): its bytes straight to their place in the file, a piece
 * at a time, the disk started on each
 * piece as soon as it is in the page cache and the CRC taken of it while it
 * is in the CPU's cache. The disk then works while the next piece is being
 * copied. 2 MiB pieces were never slower than one write, and up to a
 * third faster, where 1 or 3 MiB pieces were slower at some sizes
 * (docs/benchmarks/design-notes.md). Pieces end on page boundaries, so
 * that no page is written after its writeback began. */
#define DML_CKPT_PIECE_DEFAULT (2ULL << 20)

void dml_ckpt_config_init(dml_ckpt_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->single_max = DML_CKPT_SINGLE_MAX_DEFAULT;
    c->piece = DML_CKPT_PIECE_DEFAULT;
    c->reuse = 1;
}

/* The writer's fields that need no other rank: its rank, the settings,
 * the file's names (too long a directory name refused). */
static dml_status_t dml__writer_init(dml_ckpt_writer_t *w, MPI_Comm comm, const char *dir,
                                     uint64_t step, uint64_t expect_bytes,
                                     const dml_ckpt_config_t *cfg)
{
    dml_status_t st = DML_OK;

    w->file = -1;
    w->fd = -1;
    w->comm = MPI_COMM_NULL;
    MPI_Comm_rank(comm, &w->rank);
    MPI_Comm_size(comm, &w->size);
    w->step = step;
    if (cfg != NULL)
        w->cfg = *cfg;
    else
        dml_ckpt_config_init(&w->cfg);
    /* pieces of at least a page; 0: one write per array */
    if (w->cfg.piece > 0 && w->cfg.piece < 4096)
        w->cfg.piece = 4096;
    snprintf(w->dir, sizeof(w->dir), "%s", dir);
    snprintf(w->name, sizeof(w->name), "ckpt-%09llu.h5", (unsigned long long)step);
    if ((size_t)snprintf(w->final, sizeof(w->final), "%s/%s", dir, w->name) >= sizeof(w->final) ||
        (size_t)snprintf(w->tmp, sizeof(w->tmp), "%s.tmp", w->final) >= sizeof(w->tmp))
        st = dml_error_set(DML_ERR_INVALID_ARG, "%s: checkpoint directory name too long", dir);
    w->single = expect_bytes <= w->cfg.single_max;
    return st;
}

/* Rank 0's part: the directory made, what no checkpoint needs cleared
 * from it, and the space for expect_bytes checked (counting the spare's
 * blocks where reuse says the checkpoint is written into it). */
static dml_status_t dml__dir_ready(const char *dir, uint64_t expect_bytes, int reuse)
{
    DIR *d;
    struct dirent *e;
    struct stat sb;
    uint64_t have = 0;
    dml_status_t st;

    if ((st = dml_ckpt_dir_prepare(dir)) != DML_OK)
        return st; /* named by dml_ckpt_dir_prepare */
    if ((d = opendir(dir)) == NULL)
        return DML_OK;
    /* A crashed writer's temporary is never a checkpoint: clear it
     * away before it fills the disk. So is a spare that this
     * checkpoint will not be written into. */
    while ((e = readdir(d)) != NULL)
        if (dml__is_tmp(e->d_name) || (!reuse && strcmp(e->d_name, DML_CKPT_SPARE) == 0))
            unlinkat(dirfd(d), e->d_name, 0);
    if (reuse && fstatat(dirfd(d), DML_CKPT_SPARE, &sb, 0) == 0)
        have = (uint64_t)sb.st_blocks * 512;
    closedir(d);
    return dml__space_check(dir, expect_bytes, have);
}

/* The checkpoint file in dir created through fapl (w->file, -1 where it
 * could not be), by the driver the mode asks for: collective in parallel mode, where
 * every rank takes the last branch. */
static dml_status_t dml__file_create(dml_ckpt_writer_t *w, const char *dir, hid_t fapl, int reuse)
{
    dml_status_t st = DML_OK;

    if (fapl >= 0 && w->single && w->rank == 0) {
        /* Rank 0 writes the file alone, with plain POSIX writes (HDF5's
         * sec2 driver): each array goes to the page cache in one write, as
         * a raw write would. Building the file in memory first (the core
         * driver) cost a zeroed, page-faulted image and a second copy
         * (docs/benchmarks/design-notes.md). Where a pruned checkpoint was kept,
         * the file is made in its blocks instead (reuse_vfd.c): its fsync
         * then has no allocation to commit. */
        char spare[4200];
        void *handle = NULL;
        if (reuse) {
            dml__spare_path(dir, spare, sizeof(spare));
            reuse = rename(spare, w->tmp) == 0;
        }
        if (reuse ? dml__reuse_fapl(fapl) < 0 : H5Pset_fapl_sec2(fapl) < 0)
            st = dml_error_set(DML_ERR_HDF5, "%s: cannot set up the POSIX driver", w->tmp);
        else if ((w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) >= 0 &&
                 H5Fget_vfd_handle(w->file, fapl, &handle) >= 0 && handle != NULL)
            w->fd = *(int *)handle;
    } else if (fapl >= 0 && w->single) {
        /* The other ranks make the same calls on a memory-only file, so
         * that every caller's code is the same in both modes; it is never
         * written anywhere, and they put no array data in it. */
        char mem[4200];
        if (H5Pset_fapl_core(fapl, 65536, 0) < 0) {
            st = dml_error_set(DML_ERR_HDF5, "%s: cannot set up the core driver", w->tmp);
        } else {
            snprintf(mem, sizeof(mem), "%s.mem%d", w->tmp, w->rank);
            w->file = H5Fcreate(mem, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        }
    } else if (fapl < 0 || H5Pset_fapl_mpio(fapl, w->comm, MPI_INFO_NULL) < 0) {
        st = dml_error_set(DML_ERR_HDF5, "%s: cannot set up the MPI-IO driver", w->tmp);
    } else {
        /* All ranks write the same metadata: let one rank do it for all. */
        H5Pset_coll_metadata_write(fapl, 1);
        w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    }
    return st;
}

/* The checkpoint's own attributes (dml_ckpt_header_t), alike on every
 * rank: collective in parallel mode. */
static dml_status_t dml__header_write(dml_ckpt_writer_t *w, int64_t created)
{
    int32_t version = DML_CKPT_VERSION, world = w->size;

    if (w->file < 0)
        return dml_error_set(DML_ERR_IO, "%s: cannot create the checkpoint file", w->tmp);
    if (dml__h5_attr_write_str(w->file, "format", DML_CKPT_FORMAT) != 0 ||
        dml__h5_attr_write(w->file, "version", H5T_NATIVE_INT32, 1, &version) != 0 ||
        dml__h5_attr_write(w->file, "step", H5T_NATIVE_UINT64, 1, &w->step) != 0 ||
        dml__h5_attr_write(w->file, "world_size", H5T_NATIVE_INT32, 1, &world) != 0 ||
        dml__h5_attr_write(w->file, "created", H5T_NATIVE_INT64, 1, &created) != 0)
        return dml__write_failed(w->tmp, "the checkpoint's attributes");
    return DML_OK;
}

dml_status_t dml_ckpt_begin(MPI_Comm comm, const char *dir, uint64_t step, uint64_t expect_bytes,
                            const dml_ckpt_config_t *cfg, dml_ckpt_writer_t **w_out)
{
    dml_ckpt_writer_t *w = calloc(1, sizeof(*w));
    dml_status_t st = DML_OK;
    int64_t created, bc[2];
    hid_t fapl = -1;
    int reuse;

    *w_out = NULL;
    if (w == NULL)
        return dml_mpi_agree(comm, dml_error_set(DML_ERR_NO_MEMORY, "no memory"), NULL);
    st = dml__writer_init(w, comm, dir, step, expect_bytes, cfg);
    /* whether this checkpoint is written into a spare, if there is one */
    reuse = w->single && w->cfg.reuse;
    if (st == DML_OK && w->rank == 0)
        st = dml__dir_ready(dir, expect_bytes, reuse);
    st = dml_mpi_agree(comm, st, NULL);
    if (st != DML_OK)
        goto fail;

    if (dml__ckpt_comm(comm, &w->comm) != 0) {
        st = dml_error_set(DML_ERR_MPI, "MPI_Comm_dup for the checkpoint failed");
        goto fail;
    }
    dml__h5_quiet_begin(&w->quiet);
    /* the 1.8 format (checksummed headers), in every mode alike */
    fapl = dml__h5_fapl();
    st = dml__file_create(w, dir, fapl, reuse);
    /* Every attribute is written alike on every rank: rank 0's clock
     * decides the time (before anything can fail, so every rank gets here). */
    bc[0] = (int64_t)time(NULL);
    bc[1] = (int64_t)w->cfg.piece;
    MPI_Bcast(bc, 2, MPI_INT64_T, 0, w->comm);
    created = bc[0];
    /* Rank 0's piece decides for all: the datasets' creation properties
     * depend on it, and they must be alike on every rank. */
    w->piece = (uint64_t)bc[1];
    if (st == DML_OK && !w->single && w->file >= 0 && w->piece > 0) {
        /* The large arrays' bytes bypass MPI-IO: every rank writes its slice
         * to its place in the file with its own descriptor, as rank 0 does
         * alone in a small checkpoint (dml__put_streamed). Collective MPI-IO
         * on one node funnels all of it through one aggregator: 1 GiB of
         * state took 0.5-2.1 s to put and 0.5-0.7 s more to commit, against
         * 1.1-1.4 s for a raw write by both ranks (mpirun -np 2
         * bench/ckpt_bench DIR 1024 5, with DML_CKPT_PIECE=0 for the
         * collective write). */
        if ((w->fd = open(w->tmp, O_WRONLY | O_CLOEXEC)) < 0)
            st = dml_error_set_errno(errno, "%s: cannot open it for writing", w->tmp);
    }
    /* the attributes below are written collectively in parallel mode */
    if (!w->single)
        st = dml_mpi_agree(w->comm, st, NULL);
    if (st == DML_OK)
        st = dml__header_write(w, created);
    if (fapl >= 0)
        H5Pclose(fapl);
    st = dml_mpi_agree(w->comm, st, NULL);
    dml__h5_quiet_end(&w->quiet);
    if (st != DML_OK) {
        dml_ckpt_abort(w);
        return st;
    }
    dml__phase(w, "begin");
    *w_out = w;
    return DML_OK;
fail:
    free(w);
    return st;
}

hid_t dml_ckpt_file(const dml_ckpt_writer_t *w)
{
    return w->file;
}

/* ---- the caller's attributes and groups ----------------------------------
 *
 * The attributes this library stamps (dml_ckpt_header_t) are its own: a
 * caller's attribute of the same name would overwrite them, or fail in
 * parallel HDF5 on some ranks and not others. */
static const char *const dml__own_attrs[] = {"format",     "version", "step",
                                             "world_size", "created", "attrs_crc32"};

static dml_status_t dml__attr_name_check(const char *path, const char *name)
{
    size_t i;

    if (name == NULL || name[0] == '\0')
        return dml_error_set(DML_ERR_INVALID_ARG, "%s: an attribute needs a name", path);
    for (i = 0; i < sizeof(dml__own_attrs) / sizeof(dml__own_attrs[0]); i++)
        if (strcmp(name, dml__own_attrs[i]) == 0)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "%s: attribute '%s' is the checkpoint's own "
                                 "(dml_ckpt_header_t)",
                                 path, name);
    return DML_OK;
}

static dml_status_t dml__put_attr(dml_ckpt_writer_t *w, const char *name, hid_t type, size_t n,
                                  const void *v)
{
    dml_status_t st = dml__attr_name_check(w->tmp, name);
    int rc;

    if (st != DML_OK)
        return st;
    dml__h5_quiet_begin(&w->quiet);
    rc = type < 0 ? dml__h5_attr_write_str(w->file, name, v)
                  : dml__h5_attr_write(w->file, name, type, n, v);
    dml__h5_quiet_end(&w->quiet);
    if (rc != 0) {
        char what[300];
        snprintf(what, sizeof(what), "attribute '%s'", name);
        return dml__write_failed(w->tmp, what);
    }
    return DML_OK;
}

dml_status_t dml_ckpt_put_str(dml_ckpt_writer_t *w, const char *name, const char *value)
{
    return dml__put_attr(w, name, -1, 1, value);
}

dml_status_t dml_ckpt_put_u64(dml_ckpt_writer_t *w, const char *name, uint64_t value)
{
    return dml__put_attr(w, name, H5T_NATIVE_UINT64, 1, &value);
}

dml_status_t dml_ckpt_put_i32(dml_ckpt_writer_t *w, const char *name, int32_t value)
{
    return dml__put_attr(w, name, H5T_NATIVE_INT32, 1, &value);
}

dml_status_t dml_ckpt_put_f64s(dml_ckpt_writer_t *w, const char *name, size_t n,
                               const double *values)
{
    return dml__put_attr(w, name, H5T_NATIVE_DOUBLE, n, values);
}

dml_status_t dml_ckpt_group_create(dml_ckpt_writer_t *w, const char *name, dml_ckpt_loc_t *g_out)
{
    dml_status_t st = DML_OK;
    hid_t g;

    *g_out = -1;
    dml__h5_quiet_begin(&w->quiet);
    g = H5Gcreate2(w->file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    dml__h5_quiet_end(&w->quiet);
    if (g < 0) {
        char what[300];
        snprintf(what, sizeof(what), "group '%s'", name);
        st = dml__write_failed(w->tmp, what);
    }
    /* what comes next in the group is collective: one rank without it must
     * not leave the others waiting there */
    st = dml_mpi_agree(w->comm, st, NULL);
    if (st != DML_OK) {
        if (g >= 0)
            H5Gclose(g);
        return st;
    }
    *g_out = g;
    return DML_OK;
}

void dml_ckpt_group_close(dml_ckpt_loc_t g)
{
    dml__h5_quiet_t q;

    if (g <= 0)
        return;
    dml__h5_quiet_begin(&q);
    H5Gclose(g);
    dml__h5_quiet_end(&q);
}

dml_status_t dml_ckpt_put_floats(dml_ckpt_writer_t *w, dml_ckpt_loc_t loc, const char *name,
                                 const uint64_t dims[2], const float *buf)
{
    return dml_ckpt_put(w, loc, name, H5T_NATIVE_FLOAT, dims, buf);
}

dml_status_t dml_ckpt_put_doubles(dml_ckpt_writer_t *w, dml_ckpt_loc_t loc, const char *name,
                                  const uint64_t dims[2], const double *buf)
{
    return dml_ckpt_put(w, loc, name, H5T_NATIVE_DOUBLE, dims, buf);
}

/* CRC-32 of the whole array from each rank's slice: crc32_combine joins the
 * slices' CRCs in rank order without anyone reading the rest. */
static uint32_t dml__crc_allgather(MPI_Comm comm, int size, uint32_t crc, uint64_t len)
{
    uint64_t mine[2] = {crc, len}, *all = malloc(sizeof(uint64_t) * 2 * (size_t)size);
    uLong c = crc32(0L, Z_NULL, 0);
    int r;

    if (all == NULL)
        return 0;
    MPI_Allgather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, comm);
    for (r = 0; r < size; r++)
        c = crc32_combine(c, (uLong)all[2 * r], (z_off_t)all[2 * r + 1]);
    free(all);
    return (uint32_t)c;
}

static uLong dml__crc(const void *buf, size_t n)
{
    return dml_crc32(0, buf, n);
}

/* Starts the disk on bytes [a, b) of the file just written (rank 0 writing
 * alone), while the rest of the checkpoint runs: the commit's fsync then
 * waits only for what is left. Only the whole pages inside: HDF5 rewrites
 * its metadata, which shares the array's first and last page, when it
 * closes the file, and a page under writeback that is written again would
 * have to be waited for and written twice. Advice only: the fsync still
 * makes the file durable and reports any error. */
static void dml__writeback_start(const dml_ckpt_writer_t *w, uint64_t a, uint64_t b)
{
    const uint64_t page = 4096;

    a = (a + page - 1) / page * page;
    b = b / page * page;
    if (w->fd >= 0 && b > a)
        (void)sync_file_range(w->fd, (off_t)a, (off_t)(b - a), SYNC_FILE_RANGE_WRITE);
}

/* Within a piece, the copy into the page cache and the CRC go a block at a
 * time, the CRC right after the kernel read the block: it then reads it
 * from the CPU's cache (L2), where a CRC of the whole piece after its copy
 * read it from memory again; 512 KiB blocks were the fastest of those
 * measured (docs/benchmarks/design-notes.md). */
#define DML_CKPT_BLOCK (512u << 10)

static dml_status_t dml__put_streamed(dml_ckpt_writer_t *w, const char *name, const char *p,
                                      uint64_t len, uint64_t off, uint64_t piece, uint32_t *crc)
{
    uint64_t at = 0, end, b, n;

    *crc = 0;
    while (at < len) {
        end = (off + at + piece) / 4096 * 4096 - off; /* > at: piece >= 4096 */
        if (end > len)
            end = len;
        for (b = at; b < end; b += n) {
            n = end - b < DML_CKPT_BLOCK ? end - b : DML_CKPT_BLOCK;
            if (dml__pwrite_all(w->fd, p + b, n, (off_t)(off + b)) != 0)
                return dml__write_failed(w->tmp, name);
            if (b + n == end) /* the piece is in the page cache */
                dml__writeback_start(w, off + at, off + end);
            *crc = dml_crc32(*crc, p + b, n);
        }
        at = end;
    }
    return DML_OK;
}

/* Where share r of size of len bytes at file offset off begins: at the
 * page boundary next to an even split (0 and len at the ends). */
static uint64_t dml__page_split(uint64_t off, uint64_t len, int r, int size)
{
    const uint64_t page = 4096;
    uint64_t at;

    if (r <= 0)
        return 0;
    if (r >= size)
        return len;
    at = off + (uint64_t)((unsigned __int128)len * (unsigned)r / (unsigned)size);
    at = (at + page - 1) / page * page;
    return at - off < len ? at - off : len;
}

/* A small checkpoint's array (dml_ckpt_put, no collective call): rank 0
 * holds the whole array, like every rank: it writes it, and the CRC of what
 * it writes (a rank's copy of a "replicated" array such as timings may
 * differ in the last digits). The other ranks' memory-only files get no
 * data. The array is rows of row bytes. */
static dml_status_t dml__put_single(dml_ckpt_writer_t *w, hid_t dset, const char *name, hid_t type,
                                    uint64_t rows, size_t row, const void *buf, uint64_t piece,
                                    int stream)
{
    const uint64_t len = rows * row;
    dml_status_t st = DML_OK;
    haddr_t off = HADDR_UNDEF;
    uint32_t crc;

    if (stream)
        off = H5Dget_offset(dset);
    if (off != HADDR_UNDEF) {
        st = dml__put_streamed(w, name, buf, len, (uint64_t)off, piece, &crc);
        if (st == DML_OK && dml__h5_attr_write(dset, "crc32", H5T_NATIVE_UINT32, 1, &crc) != 0)
            st = dml__write_failed(w->tmp, name);
    } else if (w->rank == 0) {
        if (rows > 0 && H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            st = dml__write_failed(w->tmp, name);
        off = H5Dget_offset(dset);
        if (st == DML_OK && off != HADDR_UNDEF)
            dml__writeback_start(w, (uint64_t)off, (uint64_t)off + len);
        crc = (uint32_t)dml__crc(buf, len);
        if (st == DML_OK && dml__h5_attr_write(dset, "crc32", H5T_NATIVE_UINT32, 1, &crc) != 0)
            st = dml__write_failed(w->tmp, name);
    }
    return st;
}

/* A large checkpoint's streamed array (dml_ckpt_put; collective: every
 * rank calls it): every rank its share of the len bytes, split at page
 * boundaries of the file (the whole array is in every rank's buf): no page
 * is written by two ranks, which on a network file system may be on two
 * nodes, and each rank's writeback covers whole pages. */
static dml_status_t dml__put_shared(dml_ckpt_writer_t *w, hid_t dset, const char *name,
                                    uint64_t len, const void *buf, uint64_t piece)
{
    uint64_t a = 0, b = 0;
    uint32_t mine = 0, crc;
    haddr_t off = H5Dget_offset(dset);
    dml_status_t st;

    if (off == HADDR_UNDEF) {
        st = dml_error_set(DML_ERR_HDF5, "%s: dataset '%s' has no place in the file", w->tmp, name);
    } else {
        a = dml__page_split((uint64_t)off, len, w->rank, w->size);
        b = dml__page_split((uint64_t)off, len, w->rank + 1, w->size);
        st = dml__put_streamed(w, name, (const char *)buf + a, b - a, (uint64_t)off + a, piece,
                               &mine);
    }
    crc = dml__crc_allgather(w->comm, w->size, mine, b - a);
    /* a rank's own write may fail alone (its node's disk, its file size
     * limit); the attribute is written by all or none */
    st = dml_mpi_agree(w->comm, st, NULL);
    if (st == DML_OK && dml__h5_attr_write(dset, "crc32", H5T_NATIVE_UINT32, 1, &crc) != 0)
        st = dml__write_failed(w->tmp, name);
    return st;
}

/* A large checkpoint's array through collective MPI-IO (dml_ckpt_put;
 * collective): each rank its rows (of row bytes) of the file space `space`. *mspace and
 * *dxpl are made here and closed by the caller. */
static dml_status_t dml__put_slab(dml_ckpt_writer_t *w, hid_t space, hid_t dset, const char *name,
                                  hid_t type, const uint64_t dims[2], size_t row, const void *buf,
                                  hid_t *mspace, hid_t *dxpl)
{
    hsize_t start[2] = {0, 0}, count[2];
    int nd = dims[1] ? 2 : 1;
    uint64_t r0 = dims[0] * (uint64_t)w->rank / (uint64_t)w->size;
    uint64_t r1 = dims[0] * (uint64_t)(w->rank + 1) / (uint64_t)w->size;
    dml_status_t st = DML_OK;
    uint32_t crc;

    start[0] = r0;
    count[0] = r1 - r0;
    count[1] = dims[1];
    if (count[0] > 0) {
        *mspace = H5Screate_simple(nd, count, NULL);
        H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
    } else {
        H5Sselect_none(space);
        *mspace = H5Scopy(space);
        H5Sselect_none(*mspace);
    }
    *dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(*dxpl, H5FD_MPIO_COLLECTIVE);
    /* An empty array (no epochs done yet) has no storage to write to. */
    if (dims[0] > 0 &&
        H5Dwrite(dset, type, *mspace, space, *dxpl, (const char *)buf + r0 * row) < 0)
        st = dml__write_failed(w->tmp, name);
    crc = dml__crc_allgather(w->comm, w->size,
                             (uint32_t)dml__crc((const char *)buf + r0 * row, (r1 - r0) * row),
                             (r1 - r0) * row);
    if (st == DML_OK && dml__h5_attr_write(dset, "crc32", H5T_NATIVE_UINT32, 1, &crc) != 0)
        st = dml__write_failed(w->tmp, name);
    return st;
}

dml_status_t dml_ckpt_put(dml_ckpt_writer_t *w, hid_t loc, const char *name, hid_t type,
                          const uint64_t dims[2], const void *buf)
{
    hsize_t fd[2] = {dims[0], dims[1]};
    int nd = dims[1] ? 2 : 1;
    size_t esz = H5Tget_size(type), row = esz * (dims[1] ? dims[1] : 1);
    hid_t space = -1, dset = -1, mspace = -1, dxpl = -1, dcpl = H5P_DEFAULT;
    dml_status_t st = DML_OK;
    static const char none[1];
    /* written by this rank itself (dml__put_streamed): rank 0 alone in a
     * small checkpoint, every rank its slice in a large one */
    const uint64_t piece = w->fd >= 0 ? w->piece : 0;
    const int stream = piece > 0 && dims[0] * row >= piece;

    /* HDF5 refuses a NULL buffer even where nothing is written. */
    if (buf == NULL)
        buf = none;
    if (loc == DML_CKPT_ROOT)
        loc = w->file;
    dml__h5_quiet_begin(&w->quiet);
    space = H5Screate_simple(nd, fd, NULL);
    if (stream) {
        /* its place in the file fixed now, and nothing written there by
         * HDF5: no fill values */
        dcpl = H5Pcreate(H5P_DATASET_CREATE);
        if (dcpl < 0 || H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0 ||
            H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0)
            st = dml_error_set(DML_ERR_HDF5, "%s: cannot set up dataset '%s'", w->tmp, name);
    }
    if (space >= 0 && st == DML_OK)
        dset = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dset < 0 && st == DML_OK)
        st = dml_error_set(DML_ERR_HDF5, "%s: cannot create dataset '%s'", w->tmp, name);
    st = dml_mpi_agree(w->comm, st, NULL);
    if (st != DML_OK)
        goto out;

    if (w->single)
        st = dml__put_single(w, dset, name, type, dims[0], row, buf, piece, stream);
    else if (stream)
        st = dml__put_shared(w, dset, name, dims[0] * row, buf, piece);
    else
        st = dml__put_slab(w, space, dset, name, type, dims, row, buf, &mspace, &dxpl);
    st = dml_mpi_agree(w->comm, st, NULL);
    if (st == DML_OK && w->puts++ == 0)
        dml__phase(w, "put");
out:
    if (dcpl != H5P_DEFAULT && dcpl >= 0)
        H5Pclose(dcpl);
    if (dxpl >= 0)
        H5Pclose(dxpl);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (dset >= 0)
        H5Dclose(dset);
    if (space >= 0)
        H5Sclose(space);
    dml__h5_quiet_end(&w->quiet);
    return st;
}

/* ---- every dataset of a file ----------------------------------------- */

typedef struct {
    char **names;
    size_t n, cap;
} dml__names_t;

static herr_t dml__collect(hid_t g, const char *name, const H5L_info_t *info, void *arg)
{
    dml__names_t *l = arg;
    hid_t o;
    int is_dset;

    if (info->type != H5L_TYPE_HARD)
        return 0;
    o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0)
        return -1;
    is_dset = H5Iget_type(o) == H5I_DATASET;
    H5Oclose(o);
    if (!is_dset)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **p = realloc(l->names, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        l->names = p;
        l->cap = cap;
    }
    if ((l->names[l->n] = strdup(name)) == NULL)
        return -1;
    l->n++;
    return 0;
}

static void dml__names_free(dml__names_t *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
}

/* The stored bytes of a dataset (read as its file type) and their CRC. */
static int dml__dataset_crc(hid_t dset, uint32_t *crc)
{
    hid_t type = H5Dget_type(dset), space = H5Dget_space(dset);
    hssize_t npts = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    size_t sz = type >= 0 ? H5Tget_size(type) : 0, bytes = (size_t)(npts > 0 ? npts : 0) * sz;
    void *buf = malloc(bytes ? bytes : 1);
    int rc = -1;

    if (type >= 0 && npts >= 0 && buf != NULL &&
        (npts == 0 || H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0)) {
        *crc = (uint32_t)dml__crc(buf, bytes);
        rc = 0;
    }
    free(buf);
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* ---- the attributes' checksum -------------------------------------------
 *
 * A resume reads the step, the loader's position and the optimiser's step
 * count from attributes: a bit flipped there resumes silently into other
 * weights. So a CRC-32 is taken over every attribute of every object, in
 * name order (the object's path, the attribute's name, its stored bytes),
 * leaving out only each dataset's own "crc32" and the root's
 * "attrs_crc32", which holds the result. Every attribute is fixed-size
 * (strings included), so its stored bytes are read as they are. */

#define DML__ATTRS_CRC "attrs_crc32"

typedef struct {
    uLong crc;
    const char *object;
    int failed;
} dml__attr_walk_t;

static herr_t dml__attr_crc_one(hid_t obj, const char *name, const H5A_info_t *info, void *arg)
{
    dml__attr_walk_t *a = arg;
    hid_t attr, type = -1, space = -1;
    hssize_t npts;
    size_t bytes;
    void *buf = NULL;

    (void)info;
    if (strcmp(name, "crc32") == 0 || strcmp(name, DML__ATTRS_CRC) == 0)
        return 0;
    if ((attr = H5Aopen(obj, name, H5P_DEFAULT)) < 0)
        goto fail;
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    npts = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    bytes = type >= 0 && npts >= 0 ? H5Tget_size(type) * (size_t)npts : 0;
    if (type < 0 || npts < 0 || H5Tis_variable_str(type) > 0 ||
        (buf = calloc(1, bytes + 1)) == NULL || H5Aread(attr, type, buf) < 0)
        goto fail;
    a->crc = dml_crc32(a->crc, a->object, strlen(a->object) + 1);
    a->crc = dml_crc32(a->crc, name, strlen(name) + 1);
    a->crc = dml_crc32(a->crc, buf, bytes);
    free(buf);
    H5Sclose(space);
    H5Tclose(type);
    H5Aclose(attr);
    return 0;
fail:
    free(buf);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    if (attr >= 0)
        H5Aclose(attr);
    a->failed = 1;
    return -1;
}

static herr_t dml__attr_crc_object(hid_t root, const char *name, const H5O_info_t *info, void *arg)
{
    dml__attr_walk_t *a = arg;
    hsize_t idx = 0;

    (void)info;
    a->object = name;
    return H5Aiterate_by_name(root, name, H5_INDEX_NAME, H5_ITER_INC, &idx, dml__attr_crc_one, a,
                              H5P_DEFAULT) < 0
               ? -1
               : 0;
}

/* The checksum over every attribute of the file f: 0 or -1. */
static int dml__attrs_crc(hid_t f, uint32_t *crc)
{
    dml__attr_walk_t a = {0, NULL, 0};

    if (H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, dml__attr_crc_object, &a) < 0 || a.failed)
        return -1;
    *crc = (uint32_t)a.crc;
    return 0;
}

/* Gives every dataset written without dml_ckpt_put (small ones, written by
 * all ranks alike) its checksum, so that verification covers all of them. */
static dml_status_t dml__seal(dml_ckpt_writer_t *w)
{
    dml__names_t l = {NULL, 0, 0};
    dml_status_t st = DML_OK;
    size_t i;

    if (H5Lvisit(w->file, H5_INDEX_NAME, H5_ITER_INC, dml__collect, &l) < 0)
        st = dml_error_set(DML_ERR_HDF5, "%s: cannot list the datasets", w->tmp);
    for (i = 0; st == DML_OK && i < l.n; i++) {
        hid_t d = H5Dopen2(w->file, l.names[i], H5P_DEFAULT);
        uint32_t crc;
        if (d < 0) {
            st = dml_error_set(DML_ERR_HDF5, "%s: cannot open dataset '%s'", w->tmp, l.names[i]);
            break;
        }
        if (H5Aexists(d, "crc32") <= 0 &&
            (dml__dataset_crc(d, &crc) != 0 ||
             dml__h5_attr_write(d, "crc32", H5T_NATIVE_UINT32, 1, &crc) != 0))
            st = dml__write_failed(w->tmp, l.names[i]);
        H5Dclose(d);
    }
    dml__names_free(&l);
    /* Last, once every other attribute is there. */
    if (st == DML_OK) {
        uint32_t crc;
        if (dml__attrs_crc(w->file, &crc) != 0 ||
            dml__h5_attr_write(w->file, DML__ATTRS_CRC, H5T_NATIVE_UINT32, 1, &crc) != 0)
            st = dml__write_failed(w->tmp, "the attributes' checksum");
    }
    return st;
}

/* ---- pruning in the background ---------------------------------------
 *
 * Removing a checkpoint the run no longer keeps is not part of committing
 * the new one, but it costs as much as writing a small one: on a file system
 * mounted with "discard", unlink() trims the file's blocks (1.6 ms for 4 MiB
 * here, a third of the raw write). One thread per process does it after the
 * commit returns. It is joined before the next prune and when the process
 * exits, so that at exit exactly the newest --keep remain; a process killed
 * before it finished leaves an old checkpoint that the next commit prunes. */

typedef struct {
    char dir[4096];
    uint64_t step;
    int keep;
    int reuse;
    uint64_t spare_max; /* the largest file worth keeping as a spare */
} dml__prune_job_t;

static pthread_mutex_t dml__prune_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t dml__pruner;
static int dml__pruner_running;

/* Keeps the newest `keep` at or below step; never step itself. A newer file
 * (a damaged checkpoint the run went back behind) is not counted and is
 * replaced when the run gets there. Listing the directory is left to the
 * thread too: it stats every checkpoint. */
static void dml__prune(const dml__prune_job_t *job)
{
    dml_ckpt_entry_t *e = NULL;
    size_t n = 0, i, kept = 0;
    int spared = 0;

    if (dml_ckpt_list(job->dir, &e, &n) != DML_OK)
        return;
    for (i = 0; i < n; i++) {
        if (e[i].step >= job->step)
            continue;
        if ((int)kept < job->keep - 1) {
            kept++;
            continue;
        }
        /* One checkpoint small enough to be written by rank 0 alone is
         * kept, under another name, for the next to be written into
         * (reuse_vfd.c); link() does not replace an existing spare. */
        if (job->reuse && e[i].bytes <= job->spare_max && !spared) {
            char spare[4200];
            dml__spare_path(job->dir, spare, sizeof(spare));
            spared = link(e[i].path, spare) == 0;
        }
        unlink(e[i].path);
    }
    free(e);
}

static void *dml__prune_main(void *arg)
{
    dml__prune(arg);
    free(arg);
    return NULL;
}

static void dml__prune_join(void)
{
    pthread_mutex_lock(&dml__prune_lock);
    if (dml__pruner_running) {
        pthread_join(dml__pruner, NULL);
        dml__pruner_running = 0;
    }
    pthread_mutex_unlock(&dml__prune_lock);
}

static void dml__prune_atexit(void)
{
    atexit(dml__prune_join);
}

static void dml__prune_start(const char *dir, uint64_t step, int keep, const dml_ckpt_config_t *cfg)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    dml__prune_job_t *job = malloc(sizeof(*job));

    dml__prune_join();
    pthread_once(&once, dml__prune_atexit);
    if (job == NULL)
        return; /* the next commit prunes */
    snprintf(job->dir, sizeof(job->dir), "%s", dir);
    job->step = step;
    job->keep = keep;
    /* a file that rank 0 wrote alone, by its size (its state and HDF5's
     * metadata): a larger one's blocks would sit unused */
    job->reuse = cfg->reuse;
    job->spare_max = cfg->single_max;
    pthread_mutex_lock(&dml__prune_lock);
    dml__pruner_running = pthread_create(&dml__pruner, NULL, dml__prune_main, job) == 0;
    pthread_mutex_unlock(&dml__prune_lock);
    if (!dml__pruner_running) { /* no thread: do it here */
        dml__prune(job);
        free(job);
    }
}

/* Rank 0's part of the commit, after every rank closed the file. */
static dml_status_t dml__publish(dml_ckpt_writer_t *w, int keep)
{
    char link_tmp[4200], link[4200];
    dml_status_t st;

    /* "latest": a relative symlink, replaced by rename so that readers see
     * the old or the new one, never none. The new link is made first, under
     * a temporary name: making it (a new inode) then happens while
     * the file's fsync waits for the disk, not after it. Both renames are
     * in the same directory: one fsync of it after them makes both durable
     * (and a journalling file system keeps their order, so "latest" never
     * names a checkpoint that a crash lost; readers go by the files
     * anyway). */
    snprintf(link_tmp, sizeof(link_tmp), "%s/.latest.tmp", w->dir);
    snprintf(link, sizeof(link), "%s/latest", w->dir);
    unlink(link_tmp);
    if (symlink(w->name, link_tmp) != 0)
        return dml_error_set_errno(errno, "%s: cannot point at %s", link, w->name);
    if ((st = dml__fsync_path(w->tmp)) != DML_OK)
        goto unlink_link;
    if (rename(w->tmp, w->final) != 0) {
        st = dml_error_set_errno(errno, "%s: cannot rename to %s", w->tmp, w->final);
        goto unlink_link;
    }
    dml__phase(w, "renamed");
    if (rename(link_tmp, link) != 0) {
        st = dml_error_set_errno(errno, "%s: cannot point at %s", link, w->name);
        goto unlink_link;
    }
    if ((st = dml__fsync_path(w->dir)) != DML_OK)
        return st;
    dml__phase(w, "latest");

    if (keep > 0)
        dml__prune_start(w->dir, w->step, keep, &w->cfg);
    return DML_OK;
unlink_link:
    unlink(link_tmp);
    return st;
}

dml_status_t dml_ckpt_commit(dml_ckpt_writer_t *w, int keep, char *path_out, size_t len)
{
    dml_status_t st = DML_OK;

    if (!w->single && w->fd >= 0) {
        /* What a rank wrote with its own descriptor is made durable by that
         * rank: on a network file system another node's fsync would not
         * reach the pages it holds. */
        if (fsync(w->fd) != 0)
            st = dml__write_failed(w->tmp, "its arrays (fsync)");
        close(w->fd);
        w->fd = -1;
        /* sealing is collective in parallel mode */
        st = dml_mpi_agree(w->comm, st, NULL);
        if (st != DML_OK) {
            dml_ckpt_abort(w);
            return st;
        }
    }
    dml__h5_quiet_begin(&w->quiet);
    /* Where rank 0 writes alone, the other ranks' memory-only files are
     * thrown away: sealing them would only checksum fill values. */
    if (!w->single || w->rank == 0)
        st = dml__seal(w);
    st = dml_mpi_agree(w->comm, st, NULL);
    if (st == DML_OK) {
        herr_t rc = H5Fclose(w->file);
        w->file = -1;
        w->fd = -1; /* HDF5's, closed with the file */
        if (rc < 0)
            st = dml__write_failed(w->tmp, "the file's metadata");
    }
    dml__h5_quiet_end(&w->quiet);
    if (st == DML_OK)
        dml__phase(w, "closed");
    st = dml_mpi_agree(w->comm, st, NULL);
    if (st != DML_OK) {
        dml_ckpt_abort(w);
        return st;
    }
    if (w->rank == 0) {
        st = dml__publish(w, keep);
        if (st != DML_OK)
            unlink(w->tmp);
    }
    st = dml_mpi_agree(w->comm, st, NULL);
    if (st == DML_OK && path_out != NULL)
        snprintf(path_out, len, "%s", w->final);
    free(w); /* w->comm stays with the caller's communicator */
    return st;
}

void dml_ckpt_abort(dml_ckpt_writer_t *w)
{
    if (w == NULL)
        return;
    if (!w->single && w->fd >= 0)
        close(w->fd);
    if (w->file >= 0) {
        dml__h5_quiet_t q;
        dml__h5_quiet_begin(&q);
        H5Fclose(w->file);
        dml__h5_quiet_end(&q);
    }
    if (w->comm != MPI_COMM_NULL) {
        MPI_Barrier(w->comm);
        if (w->rank == 0)
            unlink(w->tmp);
    }
    free(w);
}

/* ---- reading ---------------------------------------------------------- */

static int dml__entry_cmp(const void *a, const void *b)
{
    const dml_ckpt_entry_t *x = a, *y = b;
    return x->step < y->step ? 1 : x->step > y->step ? -1 : 0;
}

dml_status_t dml_ckpt_list(const char *dir, dml_ckpt_entry_t **entries, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    dml_ckpt_entry_t *e = NULL;
    size_t cnt = 0, cap = 0;

    *entries = NULL;
    *n = 0;
    if (d == NULL)
        return errno == ENOENT ? DML_OK
                               : dml_error_set_errno(errno, "%s: cannot read the directory", dir);
    while ((de = readdir(d)) != NULL) {
        uint64_t step;
        struct stat sb;
        if (!dml__ckpt_name(de->d_name, &step))
            continue;
        if (cnt == cap) {
            dml_ckpt_entry_t *p;
            cap = cap ? 2 * cap : 16;
            if ((p = realloc(e, cap * sizeof(*e))) == NULL) {
                free(e);
                closedir(d);
                return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", dir);
            }
            e = p;
        }
        memset(&e[cnt], 0, sizeof(e[cnt]));
        e[cnt].step = step;
        snprintf(e[cnt].path, sizeof(e[cnt].path), "%s/%s", dir, de->d_name);
        if (stat(e[cnt].path, &sb) == 0) {
            e[cnt].mtime = (int64_t)sb.st_mtime;
            e[cnt].bytes = (uint64_t)sb.st_size;
        }
        cnt++;
    }
    closedir(d);
    if (cnt > 1)
        qsort(e, cnt, sizeof(*e), dml__entry_cmp);
    *entries = e;
    *n = cnt;
    return DML_OK;
}

/* Opens path read-only after checking its format and version; the header
 * to hdr (may be NULL). */
static dml_status_t dml__open(const char *path, dml_ckpt_header_t *hdr, hid_t *file_out)
{
    dml__h5_quiet_t q;
    char fmt[64] = "";
    dml_ckpt_header_t h;
    hid_t f;
    dml_status_t st = DML_OK;

    *file_out = -1;
    memset(&h, 0, sizeof(h));
    if (access(path, R_OK) != 0)
        return dml_error_set_errno(errno, "%s", path);
    dml__h5_quiet_begin(&q);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        st = dml_error_set(DML_ERR_FORMAT, "%s: not a readable HDF5 file (truncated or damaged)",
                           path);
    } else if (dml__h5_attr_read_str(f, "format", fmt, sizeof(fmt)) != 0 ||
               strcmp(fmt, DML_CKPT_FORMAT) != 0) {
        st = dml_error_set(DML_ERR_FORMAT, "%s: not a slurm-dml checkpoint (format '%s')", path,
                           fmt);
    } else if (dml__h5_attr_read(f, "version", H5T_NATIVE_INT32, 1, &h.version) != 0 ||
               h.version < 1 || h.version > DML_CKPT_VERSION) {
        st = dml_error_set(DML_ERR_FORMAT,
                           "%s: checkpoint format version %d; this build reads "
                           "1 to %d",
                           path, (int)h.version, DML_CKPT_VERSION);
    } else if (dml__h5_attr_read(f, "step", H5T_NATIVE_UINT64, 1, &h.step) != 0 ||
               dml__h5_attr_read(f, "world_size", H5T_NATIVE_INT32, 1, &h.world_size) != 0 ||
               dml__h5_attr_read(f, "created", H5T_NATIVE_INT64, 1, &h.created) != 0) {
        st = dml_error_set(DML_ERR_FORMAT,
                           "%s: the checkpoint's step, world_size or created attribute is "
                           "missing",
                           path);
    }
    if (st != DML_OK && f >= 0) {
        H5Fclose(f);
        f = -1;
    }
    dml__h5_quiet_end(&q);
    if (st == DML_OK && hdr != NULL)
        *hdr = h;
    *file_out = f;
    return st;
}

struct dml_ckpt_reader {
    hid_t file;
    char path[4096];
};

dml_status_t dml_ckpt_open(const char *path, dml_ckpt_header_t *hdr, dml_ckpt_reader_t **r_out)
{
    dml_ckpt_reader_t *r = calloc(1, sizeof(*r));
    dml_status_t st;

    *r_out = NULL;
    if (r == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to open it", path);
    if ((st = dml__open(path, hdr, &r->file)) != DML_OK) {
        free(r);
        return st;
    }
    snprintf(r->path, sizeof(r->path), "%s", path);
    *r_out = r;
    return DML_OK;
}

void dml_ckpt_close(dml_ckpt_reader_t *r)
{
    dml__h5_quiet_t q;

    if (r == NULL)
        return;
    dml__h5_quiet_begin(&q);
    H5Fclose(r->file);
    dml__h5_quiet_end(&q);
    free(r);
}

/* A location is an HDF5 handle (hid_t), carried in the public header without
 * HDF5's types. */
_Static_assert(sizeof(dml_ckpt_loc_t) == sizeof(hid_t), "dml_ckpt_loc_t must hold a hid_t");

dml_ckpt_loc_t dml_ckpt_root(const dml_ckpt_reader_t *r)
{
    return r->file;
}

static dml_status_t dml__get_attr(dml_ckpt_reader_t *r, const char *name, hid_t type, size_t n,
                                  void *v, size_t len)
{
    dml__h5_quiet_t q;
    int rc;

    dml__h5_quiet_begin(&q);
    rc = type < 0 ? dml__h5_attr_read_str(r->file, name, v, len)
                  : dml__h5_attr_read(r->file, name, type, n, v);
    dml__h5_quiet_end(&q);
    if (rc != 0)
        return dml_error_set(DML_ERR_FORMAT, "%s: attribute '%s' missing or not %zu value%s",
                             r->path, name, n, n == 1 ? "" : "s");
    return DML_OK;
}

dml_status_t dml_ckpt_get_str(dml_ckpt_reader_t *r, const char *name, char *buf, size_t len)
{
    return dml__get_attr(r, name, -1, 1, buf, len);
}

dml_status_t dml_ckpt_get_u64(dml_ckpt_reader_t *r, const char *name, uint64_t *value)
{
    return dml__get_attr(r, name, H5T_NATIVE_UINT64, 1, value, 0);
}

dml_status_t dml_ckpt_get_i32(dml_ckpt_reader_t *r, const char *name, int32_t *value)
{
    return dml__get_attr(r, name, H5T_NATIVE_INT32, 1, value, 0);
}

dml_status_t dml_ckpt_get_f64s(dml_ckpt_reader_t *r, const char *name, size_t n, double *values)
{
    return dml__get_attr(r, name, H5T_NATIVE_DOUBLE, n, values, 0);
}

dml_status_t dml_ckpt_group_open(dml_ckpt_reader_t *r, const char *name, dml_ckpt_loc_t *g_out)
{
    dml__h5_quiet_t q;
    hid_t g;

    *g_out = -1;
    dml__h5_quiet_begin(&q);
    g = H5Gopen2(r->file, name, H5P_DEFAULT);
    dml__h5_quiet_end(&q);
    if (g < 0)
        return dml_error_set(DML_ERR_FORMAT, "%s: no group '%s'", r->path, name);
    *g_out = g;
    return DML_OK;
}

dml_status_t dml_ckpt_dims(dml_ckpt_reader_t *r, dml_ckpt_loc_t loc, const char *name,
                           uint64_t dims[2])
{
    dml__h5_quiet_t q;
    hsize_t d[2] = {0, 0};
    hid_t ds, space = -1;
    int nd = -1;

    dml__h5_quiet_begin(&q);
    ds = H5Dopen2(loc == DML_CKPT_ROOT ? r->file : loc, name, H5P_DEFAULT);
    space = ds >= 0 ? H5Dget_space(ds) : -1;
    if (space >= 0 && H5Sget_simple_extent_ndims(space) <= 2)
        nd = H5Sget_simple_extent_dims(space, d, NULL);
    if (space >= 0)
        H5Sclose(space);
    if (ds >= 0)
        H5Dclose(ds);
    dml__h5_quiet_end(&q);
    if (nd < 1)
        return dml_error_set(DML_ERR_FORMAT, "%s: no 1- or 2-D dataset '%s'", r->path, name);
    dims[0] = d[0];
    dims[1] = nd == 2 ? d[1] : 0;
    return DML_OK;
}

dml_status_t dml_ckpt_get_floats(dml_ckpt_reader_t *r, dml_ckpt_loc_t loc, const char *name,
                                 uint64_t n, float *buf)
{
    return dml_ckpt_get(loc == DML_CKPT_ROOT ? r->file : loc, name, H5T_NATIVE_FLOAT, n, buf);
}

dml_status_t dml_ckpt_get_doubles(dml_ckpt_reader_t *r, dml_ckpt_loc_t loc, const char *name,
                                  uint64_t n, double *buf)
{
    return dml_ckpt_get(loc == DML_CKPT_ROOT ? r->file : loc, name, H5T_NATIVE_DOUBLE, n, buf);
}

dml_status_t dml_ckpt_get(hid_t loc, const char *name, hid_t type, uint64_t n, void *buf)
{
    dml__h5_quiet_t q;
    hid_t d, space = -1;
    uint32_t want = 0;
    dml_status_t st = DML_OK;
    char file[4096] = "?", group[1024] = "", path[1280];

    H5Fget_name(loc, file, sizeof(file));
    dml__h5_quiet_begin(&q);
    /* messages name the dataset by its path in the file, as verify does */
    if (H5Iget_name(loc, group, sizeof(group)) < 0)
        group[0] = '\0';
    snprintf(path, sizeof(path), "%s%s%s", group[0] == '/' ? group + 1 : group,
             group[0] != '\0' && strcmp(group, "/") != 0 ? "/" : "", name);
    d = H5Dopen2(loc, name, H5P_DEFAULT);
    name = path;
    if (d < 0) {
        st = dml_error_set(DML_ERR_FORMAT, "%s: no dataset '%s'", file, name);
        goto out;
    }
    space = H5Dget_space(d);
    if (space < 0 || (uint64_t)H5Sget_simple_extent_npoints(space) != n) {
        st =
            dml_error_set(DML_ERR_FORMAT, "%s: dataset '%s' has %lld elements, expected %llu", file,
                          name, space < 0 ? -1LL : (long long)H5Sget_simple_extent_npoints(space),
                          (unsigned long long)n);
        goto out;
    }
    if (H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        st = dml_error_set(DML_ERR_FORMAT, "%s: cannot read dataset '%s' (truncated?)", file, name);
        goto out;
    }
    if (dml__h5_attr_read(d, "crc32", H5T_NATIVE_UINT32, 1, &want) != 0) {
        st = dml_error_set(DML_ERR_FORMAT, "%s: dataset '%s' has no checksum", file, name);
        goto out;
    }
    if ((uint32_t)dml__crc(buf, n * H5Tget_size(type)) != want)
        st = dml_error_set(DML_ERR_CHECKSUM, "%s: dataset '%s': checksum mismatch (damaged)", file,
                           name);
out:
    if (space >= 0)
        H5Sclose(space);
    if (d >= 0)
        H5Dclose(d);
    dml__h5_quiet_end(&q);
    return st;
}

dml_status_t dml_ckpt_verify(const char *path)
{
    dml_ckpt_header_t h;
    dml__h5_quiet_t q;
    dml__names_t l = {NULL, 0, 0};
    dml_status_t st;
    hid_t f;
    size_t i;

    if ((st = dml__open(path, &h, &f)) != DML_OK)
        return st;
    dml__h5_quiet_begin(&q);
    {
        const int32_t version = h.version;
        uint32_t want, got;
        /* version 1 checkpoints (earlier builds) carry no such checksum */
        if (version >= 2 && dml__h5_attr_read(f, DML__ATTRS_CRC, H5T_NATIVE_UINT32, 1, &want) != 0)
            st = dml_error_set(DML_ERR_FORMAT, "%s: its attributes have no checksum", path);
        else if (version >= 2 && dml__attrs_crc(f, &got) != 0)
            st = dml_error_set(DML_ERR_FORMAT, "%s: cannot read its attributes (damaged)", path);
        else if (version >= 2 && got != want)
            st = dml_error_set(DML_ERR_CHECKSUM,
                               "%s: attributes (step, loader position, "
                               "configuration...): checksum mismatch (stored %08x, computed %08x)",
                               path, want, got);
    }
    if (st == DML_OK && H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, dml__collect, &l) < 0)
        st = dml_error_set(DML_ERR_FORMAT, "%s: cannot list the datasets (damaged)", path);
    if (st == DML_OK && l.n == 0)
        st = dml_error_set(DML_ERR_FORMAT, "%s: holds no arrays", path);
    for (i = 0; st == DML_OK && i < l.n; i++) {
        hid_t d = H5Dopen2(f, l.names[i], H5P_DEFAULT);
        uint32_t want, got;
        if (d < 0) {
            st = dml_error_set(DML_ERR_FORMAT, "%s: cannot open dataset '%s'", path, l.names[i]);
        } else if (dml__h5_attr_read(d, "crc32", H5T_NATIVE_UINT32, 1, &want) != 0) {
            st =
                dml_error_set(DML_ERR_FORMAT, "%s: dataset '%s' has no checksum", path, l.names[i]);
        } else if (dml__dataset_crc(d, &got) != 0) {
            st = dml_error_set(DML_ERR_FORMAT, "%s: cannot read dataset '%s' (truncated?)", path,
                               l.names[i]);
        } else if (got != want) {
            st = dml_error_set(DML_ERR_CHECKSUM,
                               "%s: dataset '%s': checksum mismatch (stored "
                               "%08x, computed %08x)",
                               path, l.names[i], want, got);
        }
        if (d >= 0)
            H5Dclose(d);
    }
    dml__names_free(&l);
    H5Fclose(f);
    dml__h5_quiet_end(&q);
    return st;
}

/* ---- signals and the time limit --------------------------------------- */

static volatile sig_atomic_t *dml__flag;

static void dml__on_signal(int sig)
{
    if (dml__flag != NULL)
        *dml__flag = sig;
}

dml_status_t dml_ckpt_signals_install(const char *list, volatile sig_atomic_t *flag)
{
    static const struct {
        const char *name;
        int sig;
    } known[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM},
                 {"INT", SIGINT},   {"HUP", SIGHUP},   {"XCPU", SIGXCPU}};
    char buf[256], *tok, *save = NULL;
    int sigs[16], nsig = 0, i;

    if (strcmp(list, "none") == 0 || *list == '\0')
        return DML_OK;
    snprintf(buf, sizeof(buf), "%s", list);
    for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        const char *n = strncmp(tok, "SIG", 3) == 0 ? tok + 3 : tok;
        size_t k;
        for (k = 0; k < sizeof(known) / sizeof(known[0]); k++)
            if (strcmp(n, known[k].name) == 0)
                break;
        if (k == sizeof(known) / sizeof(known[0]) || nsig == 16)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "signal '%s': expected a list of USR1, "
                                 "USR2, TERM, INT, HUP, XCPU, or none",
                                 tok);
        sigs[nsig++] = known[k].sig;
    }
    dml__flag = flag;
    for (i = 0; i < nsig; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = dml__on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return dml_error_set_errno(errno, "cannot handle signal %d", sigs[i]);
    }
    return DML_OK;
}

dml_status_t dml_ckpt_model_path(const char *path, char *file, size_t len)
{
    dml_ckpt_entry_t *e = NULL;
    char fmt[64] = "";
    size_t n = 0, i;
    struct stat sb;
    dml_status_t st;

    if (stat(path, &sb) != 0)
        return dml_error_set_errno(errno, "model %s", path);
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(file, len, "%s", path);
        if (dml__h5_file_format(path, fmt, sizeof(fmt)) == 0 && strcmp(fmt, DML_CKPT_FORMAT) == 0)
            return dml_ckpt_verify(path);
        return DML_OK;
    }
    if ((st = dml_ckpt_list(path, &e, &n)) != DML_OK)
        return st;
    for (i = 0; i < n; i++)
        if (dml_ckpt_verify(e[i].path) == DML_OK) {
            snprintf(file, len, "%s", e[i].path);
            free(e);
            return DML_OK;
        }
    free(e);
    return dml_error_set(DML_ERR_NOT_FOUND,
                         "model %s: a directory without a checkpoint that "
                         "verifies (%zu found)",
                         path, n);
}
