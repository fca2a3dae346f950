/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * topo_cache.c: the node's topology kept as XML by slurmd's init, so that each
 * step loads it in ~2 ms instead of scanning PCI (~10 ms).
 *
 * It is written as root, into a directory anyone may be able to reach, so it
 * is written the way a root daemon must: the directory is used only if it is
 * a real directory reached through no link (every component of its path is
 * opened with O_NOFOLLOW from "/"), owned by the writer and writable by no one
 * else; every name is opened relative to that directory's descriptor
 * (openat), never following a link; the temporary is created exclusively
 * (O_EXCL, so a link planted at its name fails the write instead of
 * redirecting it), given mode 0644 whatever slurmd's umask, fsync'ed and
 * renamed into place. Reading checks the same ownership, and that the cache
 * was written on this host by this hwloc: a cache copied from another node,
 * or left by an older hwloc, is a different machine's truth.
 */
#include "config.h"

#include "dml_topo.h"

#include <errno.h>
#include <fcntl.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DML__CACHE_FILE "topology.xml"
#define DML__CACHE_MAX (64 << 20) /* bytes: far past any node's XML */

/* Accessors of topo.c, private to the mapping library. */
hwloc_topology_t dml__topo_hwloc(const dml_topo_t *topo);

/* The directory dir, opened component by component from "/" with
 * O_NOFOLLOW (a link anywhere on the path is refused, not followed), its
 * last component made (create) with mkdirat and given 0755 through its
 * descriptor (whatever the umask, and with no window in which another name
 * could be changed instead), if it belongs to the caller and no one else may
 * write it; -1 with the reason recorded. */
static int dml__cache_dir(const char *dir, int create)
{
    char part[512];
    const char *p = dir, *e;
    struct stat sb;
    int fd, next, made = 0;

    if (dir[0] != '/' || strlen(dir) >= sizeof(part))
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "%s: the topology cache must be an absolute path "
                             "shorter than %zu characters",
                             dir, sizeof(part)),
               -1;
    if ((fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return dml_error_set_errno(errno, "/: cannot open"), -1;
    for (;;) {
        size_t len;
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        e = strchr(p, '/');
        len = e ? (size_t)(e - p) : strlen(p);
        memcpy(part, p, len);
        part[len] = '\0';
        p += len;
        while (*p == '/')
            p++;
        next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create && *p == '\0') {
            if (mkdirat(fd, part, 0700) != 0 && errno != EEXIST) {
                dml_error_set_errno(errno, "%s: cannot create the topology cache directory", dir);
                close(fd);
                return -1;
            }
            made = 1;
            next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            dml_error_set_errno(errno,
                                "%s: not usable as the topology cache (\"%s\" on its path is "
                                "a link, not a directory, or missing)",
                                dir, part);
            close(fd);
            return -1;
        }
        close(fd);
        fd = next;
    }
    if (made && fchmod(fd, 0755) != 0) {
        dml_error_set_errno(errno, "%s: cannot set the topology cache directory's mode", dir);
        close(fd);
        return -1;
    }
    if (fstat(fd, &sb) != 0) {
        dml_error_set_errno(errno, "%s", dir);
        close(fd);
        return -1;
    }
    if (sb.st_uid != 0 || (sb.st_mode & 022) != 0) {
        dml_error_set(DML_ERR_PERMISSION,
                      "%s: owned by uid %u with mode %04o: the topology cache "
                      "must belong to root and be writable by no one else",
                      dir, (unsigned)sb.st_uid, (unsigned)(sb.st_mode & 07777));
        close(fd);
        return -1;
    }
    return fd;
}

dml_status_t dml_topo_cache_write(const dml_topo_t *topo, const char *dir)
{
    char tmp[64], *xml = NULL;
    int dfd, fd = -1, len = 0;
    dml_status_t st = DML_OK;
    ssize_t done = 0, n;

    if ((dfd = dml__cache_dir(dir, 1)) < 0)
        return dml_error_status();
    if (hwloc_topology_export_xmlbuffer(dml__topo_hwloc(topo), &xml, &len, 0) != 0 || len <= 0) {
        st = dml_error_set(DML_ERR_NO_MEMORY, "%s: cannot export the topology as XML", dir);
        goto out;
    }
    snprintf(tmp, sizeof(tmp), ".%s.%ld", DML__CACHE_FILE, (long)getpid());
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = dml_error_set_errno(errno,
                                 "%s/%s: cannot create the cache's temporary (something is "
                                 "there already?)",
                                 dir, tmp);
        goto out;
    }
    if (fchmod(fd, 0644) != 0) {
        st = dml_error_set_errno(errno, "%s/%s", dir, tmp);
        goto fail;
    }
    /* hwloc counts the terminating NUL in len */
    while (done < len - 1) {
        n = write(fd, xml + done, (size_t)(len - 1 - done));
        if (n <= 0) {
            st = dml_error_set_errno(n < 0 ? errno : EIO, "%s/%s: cannot write", dir, tmp);
            goto fail;
        }
        done += n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        st = dml_error_set_errno(errno, "%s/%s: cannot write", dir, tmp);
        goto fail;
    }
    fd = -1;
    if (renameat(dfd, tmp, dfd, DML__CACHE_FILE) != 0) {
        st = dml_error_set_errno(errno, "%s/%s: cannot rename to %s", dir, tmp, DML__CACHE_FILE);
        goto fail;
    }
    fsync(dfd);
    goto out;
fail:
    if (fd >= 0)
        close(fd);
    unlinkat(dfd, tmp, 0);
out:
    if (xml != NULL)
        hwloc_free_xmlbuffer(dml__topo_hwloc(topo), xml);
    close(dfd);
    return st;
}

dml_status_t dml_topo_cache_load(const char *dir, dml_topo_t **topo_out)
{
    char host[256] = "", *xml = NULL;
    const char *have_host, *have_version;
    hwloc_obj_t root;
    struct stat sb;
    dml_topo_t *topo = NULL;
    dml_status_t st = DML_OK;
    int dfd, fd = -1;
    ssize_t done = 0, n;

    if ((dfd = dml__cache_dir(dir, 0)) < 0)
        return dml_error_status();
    fd = openat(dfd, DML__CACHE_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        st = dml_error_set_errno(errno, "%s/%s", dir, DML__CACHE_FILE);
        goto out;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != 0 || (sb.st_mode & 022) != 0 ||
        sb.st_size <= 0 || sb.st_size > DML__CACHE_MAX) {
        st = dml_error_set(DML_ERR_PERMISSION,
                           "%s/%s: not a regular file of root's, writable by "
                           "no one else, of a plausible size: not used",
                           dir, DML__CACHE_FILE);
        goto out;
    }
    if ((xml = malloc((size_t)sb.st_size + 1)) == NULL) {
        st = dml_error_set(DML_ERR_NO_MEMORY, "no memory for the topology cache");
        goto out;
    }
    while (done < sb.st_size && (n = read(fd, xml + done, (size_t)(sb.st_size - done))) > 0)
        done += n;
    if (done != sb.st_size) {
        st = dml_error_set(DML_ERR_IO, "%s/%s: cannot read it whole", dir, DML__CACHE_FILE);
        goto out;
    }
    xml[done] = '\0';
    if ((st = dml_topo_load_buffer(xml, (size_t)done + 1, &topo)) != DML_OK)
        goto out;
    /* This host's, by this hwloc: the exporter records both at the root. */
    root = hwloc_get_root_obj(dml__topo_hwloc(topo));
    have_host = hwloc_obj_get_info_by_name(root, "HostName");
    have_version = hwloc_obj_get_info_by_name(root, "hwlocVersion");
    gethostname(host, sizeof(host) - 1);
    if (have_host == NULL || strcmp(have_host, host) != 0) {
        st = dml_error_set(DML_ERR_MISMATCH, "%s/%s: written on host '%s', this is '%s': not used",
                           dir, DML__CACHE_FILE, have_host ? have_host : "(none)", host);
        goto out;
    }
    if (have_version == NULL || strcmp(have_version, HWLOC_VERSION) != 0) {
        st = dml_error_set(DML_ERR_MISMATCH,
                           "%s/%s: written by hwloc %s, this is hwloc %s: not "
                           "used",
                           dir, DML__CACHE_FILE, have_version ? have_version : "(unknown)",
                           HWLOC_VERSION);
        goto out;
    }
    *topo_out = topo;
    topo = NULL;
out:
    dml_topo_free(topo);
    free(xml);
    if (fd >= 0)
        close(fd);
    close(dfd);
    return st;
}
