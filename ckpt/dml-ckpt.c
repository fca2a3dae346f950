/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml-ckpt: list, verify, inspect and export the checkpoints dml-train writes.
 * No MPI needed: run it on a login node. The work is in dml_ckpt.h.
 */
#include "config.h"

#include "dml_ckpt.h"
#include "dml_h5.h"
#include "dml_log.h"
#include "dml_nn.h"
#include "dml_tool.h"

#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: dml-ckpt COMMAND ...\n\n"
            "  list DIR             the checkpoints in DIR, newest first: step, time, size,\n"
            "                       world size, status (checksums verified)\n"
            "  verify PATH...       each checkpoint file, or every checkpoint in each\n"
            "                       directory: exit 0 only if all are complete and sound\n"
            "  inspect PATH         a checkpoint's attributes and arrays (a directory: its\n"
            "                       newest sound checkpoint)\n"
            "  export PATH MODEL    write the model of a checkpoint (a directory: its newest\n"
            "                       sound one) as a model file for dml-infer\n\n"
            "Exit status: 0 success, 1 a checkpoint is unsound or the command failed, 2 usage.\n");
}

static void when(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/* The ranks that wrote it, from the header dml_ckpt.h stamps; 0 where the
 * file does not open (its status column says why). */
static int32_t world_of(const char *path)
{
    dml_ckpt_reader_t *r;
    dml_ckpt_header_t h;

    if (dml_ckpt_open(path, &h, &r) != DML_OK)
        return 0;
    dml_ckpt_close(r);
    return h.world_size;
}

/* The newest checkpoint of dir that verifies, or path itself if a file. */
static int resolve(const char *path, char *out, size_t len)
{
    struct stat sb;
    dml_ckpt_entry_t *e;
    size_t n, i;

    if (stat(path, &sb) != 0) {
        dml_error("%s: %s", path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(out, len, "%s", path);
        return 0;
    }
    if (dml_ckpt_list(path, &e, &n) != DML_OK) {
        dml_error("%s", dml_error_message());
        return 1;
    }
    for (i = 0; i < n; i++) {
        if (dml_ckpt_verify(e[i].path) == DML_OK) {
            snprintf(out, len, "%s", e[i].path);
            free(e);
            return 0;
        }
        dml_warn("skipping %s", dml_error_message());
    }
    free(e);
    dml_error("%s: no sound checkpoint", path);
    return 1;
}

static int cmd_list(const char *dir)
{
    dml_ckpt_entry_t *e;
    size_t n, i;
    char latest[4200], target[256] = "";
    ssize_t k;

    if (dml_ckpt_list(dir, &e, &n) != DML_OK) {
        dml_error("%s", dml_error_message());
        return 1;
    }
    snprintf(latest, sizeof(latest), "%s/latest", dir);
    if ((k = readlink(latest, target, sizeof(target) - 1)) > 0)
        target[k] = '\0';
    printf("%-10s %-19s %12s %5s  %s\n", "STEP", "CREATED", "BYTES", "RANKS", "STATUS");
    for (i = 0; i < n; i++) {
        char t[32];
        const char *base = strrchr(e[i].path, '/') ? strrchr(e[i].path, '/') + 1 : e[i].path;
        dml_status_t st = dml_ckpt_verify(e[i].path);
        when(e[i].mtime, t, sizeof(t));
        printf("%-10" PRIu64 " %-19s %12" PRIu64 " %5d  %s%s\n", e[i].step, t, e[i].bytes,
               world_of(e[i].path), st == DML_OK ? "ok" : dml_error_message(),
               strcmp(base, target) == 0 ? " (latest)" : "");
    }
    if (n == 0)
        printf("(no checkpoints in %s)\n", dir);
    free(e);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    int i, bad = 0, seen = 0;

    for (i = 0; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            dml_error("%s: %s", argv[i], strerror(errno));
            bad++;
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            dml_ckpt_entry_t *e;
            size_t n, j;
            if (dml_ckpt_list(argv[i], &e, &n) != DML_OK) {
                dml_error("%s", dml_error_message());
                bad++;
                continue;
            }
            if (n == 0) {
                dml_error("%s: no checkpoints", argv[i]);
                bad++;
            }
            for (j = 0; j < n; j++, seen++) {
                if (dml_ckpt_verify(e[j].path) == DML_OK) {
                    printf("%s: ok\n", e[j].path);
                } else {
                    dml_error("%s", dml_error_message());
                    bad++;
                }
            }
            free(e);
        } else {
            seen++;
            if (dml_ckpt_verify(argv[i]) == DML_OK) {
                printf("%s: ok\n", argv[i]);
            } else {
                dml_error("%s", dml_error_message());
                bad++;
            }
        }
    }
    if (bad)
        dml_error("%d problem%s found", bad, bad == 1 ? "" : "s");
    return bad || seen == 0 ? 1 : 0;
}

static void print_attr(hid_t a, const char *name, const char *indent)
{
    hid_t type = H5Aget_type(a), space = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    H5T_class_t cls = H5Tget_class(type);

    printf("%s%s = ", indent, name);
    if (cls == H5T_STRING && !H5Tis_variable_str(type)) {
        size_t sz = H5Tget_size(type);
        char *buf = calloc(1, sz + 1);
        if (buf && H5Aread(a, type, buf) >= 0) {
            /* multi-line text (the configuration) is shown one line each */
            char *p;
            for (p = buf; *p; p++)
                if (*p == '\n' && p[1] != '\0')
                    *p = ' ';
            printf("%s", buf);
        }
        free(buf);
    } else if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && n > 0 && n <= 16) {
        double v[16];
        hssize_t i;
        if (H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0)
            for (i = 0; i < n; i++)
                printf(i ? ", %.10g" : "%.10g", v[i]);
    } else {
        printf("(%lld values)", (long long)n);
    }
    printf("\n");
    H5Sclose(space);
    H5Tclose(type);
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *arg)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    (void)info;
    if (a >= 0) {
        print_attr(a, name, arg);
        H5Aclose(a);
    }
    return 0;
}

static herr_t dset_cb(hid_t g, const char *name, const H5L_info_t *info, void *arg)
{
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    (void)info;
    (void)arg;
    if (o < 0)
        return 0;
    if (H5Iget_type(o) == H5I_DATASET) {
        hid_t space = H5Dget_space(o);
        hsize_t d[8];
        int nd = H5Sget_simple_extent_dims(space, d, NULL), i;
        uint32_t crc = 0;
        printf("  %-24s [", name);
        for (i = 0; i < nd; i++)
            printf(i ? " x %llu" : "%llu", (unsigned long long)d[i]);
        dml__h5_attr_read(o, "crc32", H5T_NATIVE_UINT32, 1, &crc);
        printf("] crc32 %08x\n", crc);
        H5Sclose(space);
    } else {
        printf("  %s/\n", name);
    }
    H5Oclose(o);
    return 0;
}

static int cmd_inspect(const char *path)
{
    char file[4096];
    dml_ckpt_reader_t *r;
    hid_t f;
    dml__h5_quiet_t q;

    if (resolve(path, file, sizeof(file)) != 0)
        return 1;
    /* Sound first: a damaged file's attributes and links are not walked
     * (HDF5 may not survive walking them). */
    if (dml_ckpt_verify(file) != DML_OK || dml_ckpt_open(file, NULL, &r) != DML_OK) {
        dml_error("%s", dml_error_message());
        return 1;
    }
    f = dml_ckpt_root(r);
    dml__h5_quiet_begin(&q);
    printf("%s\n", file);
    H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, attr_cb, (void *)"  ");
    printf("arrays:\n");
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, dset_cb, NULL);
    dml__h5_quiet_end(&q);
    dml_ckpt_close(r);
    printf("status: ok (every checksum verified)\n");
    return 0;
}

/* ---- export ------------------------------------------------------------- */

static int cmd_export(const char *path, const char *out)
{
    char file[4096];
    dml_model_t *m = NULL;
    dml_model_info_t mi;
    dml_status_t st;

    if (resolve(path, file, sizeof(file)) != 0)
        return 1;
    {
        /* never over the checkpoint itself, nor any file not a model */
        const char *inputs[2] = {path, file};
        if (dml__output_check(out, "slurm-dml model", "model file", inputs, 2) != DML_OK) {
            dml_error("%s (nothing exported)", dml_error_message());
            return 1;
        }
    }
    if (dml_ckpt_verify(file) != DML_OK) {
        dml_error("%s (nothing exported)", dml_error_message());
        return 1;
    }
    /* The checkpoint's "model" group is a model file's root: nn/ reads it
     * and writes the model file, its format's one owner. */
    st = dml_model_load(file, 1, &m, &mi);
    if (st == DML_OK && !mi.checkpoint)
        st = dml_error_set(DML_ERR_FORMAT, "%s: not a dml-train checkpoint", file);
    if (st == DML_OK)
        st = dml_model_save(out, m, &mi);
    dml_model_free(m);
    dml_model_info_free(&mi);
    if (st != DML_OK) {
        dml_error("%s (nothing exported)", dml_error_message());
        return 1;
    }
    printf("%s: model of %s\n", out, file);
    return 0;
}

int main(int argc, char **argv)
{
    dml_log_init("dml-ckpt", -1);
    dml_tool_hdf5_quiet();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "list") == 0 && argc == 3)
        return cmd_list(argv[2]);
    if (strcmp(argv[1], "verify") == 0 && argc >= 3)
        return cmd_verify(argc - 2, argv + 2);
    if (strcmp(argv[1], "inspect") == 0 && argc == 3)
        return cmd_inspect(argv[2]);
    if (strcmp(argv[1], "export") == 0 && argc == 4)
        return cmd_export(argv[2], argv[3]);
    dml_error("'%s': unknown command or wrong arguments", argv[1]);
    usage(stderr);
    return 2;
}
