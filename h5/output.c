/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * output.c: what a tool checks before it writes a file, so that no output
 * ever replaces one of the run's inputs or a file that is not of the kind
 * it writes, and so that an unwritable destination is found before any work
 * is done rather than after it. Also the OS's reason when HDF5 fails to
 * create a file (HDF5 reports only that it failed).
 *
 * The kind of a slurm-dml HDF5 file is its root attribute "format" (every
 * format in docs/formats/ has one); a text output's kind is a marker in its
 * first bytes.
 */
#include "config.h"

#include "dml_h5.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dml__h5_file_format(const char *path, char *buf, size_t len)
{
    dml__h5_quiet_t q;
    hid_t f;

    buf[0] = '\0';
    dml__h5_quiet_begin(&q);
    f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (f >= 0) {
        if (dml__h5_attr_read_str(f, "format", buf, len) != 0)
            buf[0] = '\0';
        H5Fclose(f);
    }
    dml__h5_quiet_end(&q);
    return f >= 0 ? 0 : -1;
}

dml_status_t dml__output_probe(const char *path, const char *what)
{
    char dir[4096], probe[4200], *slash;
    int fd;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    snprintf(probe, sizeof(probe), "%s/.dml-probe.%ld", dir, (long)getpid());
    fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return dml_error_set_errno(errno, "%s: cannot write the %s there (directory %s)", path,
                                   what, dir);
    close(fd);
    unlink(probe);
    return DML_OK;
}

/* The checks every kind shares: a regular file (or nothing), and none of
 * the run's inputs. *exists gets whether something is there. */
static dml_status_t dml__output_common(const char *path, const char *what,
                                       const char *const *inputs, size_t ninputs, int *exists,
                                       off_t *size)
{
    struct stat sb, ib;
    size_t i;

    *exists = 0;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT)
            return dml_error_set_errno(errno, "%s: cannot write the %s", path, what);
        return DML_OK;
    }
    *exists = 1;
    *size = sb.st_size;
    if (!S_ISREG(sb.st_mode))
        return dml_error_set(DML_ERR_EXISTS,
                             "%s: exists and is not a file (%s): the %s is "
                             "written to a file of its own",
                             path, S_ISDIR(sb.st_mode) ? "a directory" : "a device, pipe or socket",
                             what);
    for (i = 0; i < ninputs; i++)
        if (inputs[i] != NULL && stat(inputs[i], &ib) == 0 && ib.st_dev == sb.st_dev &&
            ib.st_ino == sb.st_ino)
            return dml_error_set(DML_ERR_EXISTS,
                                 "%s: is %s, an input of this run: refusing to "
                                 "write the %s over it",
                                 path, inputs[i], what);
    return DML_OK;
}

dml_status_t dml__output_check(const char *path, const char *format, const char *what,
                               const char *const *inputs, size_t ninputs)
{
    char have[128];
    off_t size = 0;
    int exists;
    dml_status_t st = dml__output_common(path, what, inputs, ninputs, &exists, &size);

    if (st != DML_OK)
        return st;
    if (exists && size > 0) {
        if (dml__h5_file_format(path, have, sizeof(have)) != 0)
            return dml_error_set(DML_ERR_EXISTS,
                                 "%s: exists and is not a %s (not an HDF5 file "
                                 "at all): refusing to write over it; remove it or choose "
                                 "another name",
                                 path, what);
        if (strcmp(have, format) != 0)
            return dml_error_set(DML_ERR_EXISTS,
                                 "%s: exists and is %s%s%s, not a %s: refusing "
                                 "to write over it; remove it or choose another name",
                                 path, have[0] ? "a " : "an HDF5 file of another program",
                                 have[0] ? have : "", have[0] ? " file" : "", what);
    }
    return dml__output_probe(path, what);
}

dml_status_t dml__output_check_text(const char *path, const char *marker, const char *what,
                                    const char *const *inputs, size_t ninputs)
{
    char head[4097];
    off_t size = 0;
    ssize_t n;
    int exists, fd;
    dml_status_t st = dml__output_common(path, what, inputs, ninputs, &exists, &size);

    if (st != DML_OK)
        return st;
    if (exists && size > 0) {
        fd = open(path, O_RDONLY);
        n = fd < 0 ? -1 : read(fd, head, sizeof(head) - 1);
        if (fd >= 0)
            close(fd);
        if (n < 0)
            return dml_error_set_errno(errno, "%s: cannot read what is there", path);
        head[n] = '\0';
        if (strlen(head) != (size_t)n || strstr(head, marker) == NULL)
            return dml_error_set(DML_ERR_EXISTS,
                                 "%s: exists and is not a %s: refusing to write "
                                 "over it; remove it or choose another name",
                                 path, what);
    }
    return dml__output_probe(path, what);
}

dml_status_t dml__create_failed(const char *path, const char *what)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);

    if (fd < 0)
        return dml_error_set_errno(errno, "%s: cannot create the %s", path, what);
    /* The OS lets us: HDF5 failed for a reason of its own. */
    close(fd);
    unlink(path);
    return dml_error_set(DML_ERR_HDF5, "%s: cannot create the %s (HDF5 refused it)", path, what);
}
