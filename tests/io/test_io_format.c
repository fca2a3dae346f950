/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_io_format.c: the dataset format as users rely on it: what is written
 * reads back, statistics are right, every kind of corruption is found and
 * named, an interrupted write leaves no dataset (and only its own
 * leftover is ever removed), datasets committed together move together, and
 * the source readers (IDX, CSV as RFC 4180 has it) reject bad files with the
 * file, the line and the cause named.
 */
#include "config.h"

#include "dml_io.h"

#include <CUnit/Basic.h>
#include "cunit_main.h"
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];

#define NF 12 /* features: 3x4 */
#define NC 5

static char *path_in(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
    return buf[k];
}

/* Sample i: x[f] = (7i + f) % 256, label i % NC. */
static dml_status_t make_dataset(const char *dir, uint64_t n, uint32_t shards, int replace,
                                 int commit)
{
    dml_schema_t s = {DML_DTYPE_UINT8, 2, {3, 4, 0}, NC, NULL};
    dml_dataset_writer_t *w;
    dml_status_t st;
    uint32_t k;

    st = dml_dataset_writer_create(MPI_COMM_WORLD, dir, &s, shards, replace, "test", &w);
    if (st != DML_OK)
        return st;
    for (k = 0; k < shards; k++) {
        uint64_t a = n * k / shards, b = n * (k + 1) / shards, i, f;
        uint8_t *x = malloc((b - a) * NF);
        int32_t *y = malloc((b - a) * sizeof(int32_t));
        uint64_t *id = malloc((b - a) * sizeof(uint64_t));
        for (i = a; i < b; i++) {
            for (f = 0; f < NF; f++)
                x[(i - a) * NF + f] = (uint8_t)((7 * i + f) % 256);
            y[i - a] = (int32_t)(i % NC);
            id[i - a] = i;
        }
        st = dml_dataset_writer_put(w, k, b - a, x, y, id);
        free(x);
        free(y);
        free(id);
        if (st != DML_OK)
            break;
    }
    if (!commit) {
        dml_dataset_writer_abort(w);
        return DML_OK;
    }
    return dml_dataset_writer_commit(w);
}

static void test_round_trip(void)
{
    char dir[512];
    dml_dataset_t *ds = NULL;
    const dml_stats_t *st;
    uint64_t problems = 99, i, f;
    double mean0 = 0;

    snprintf(dir, sizeof(dir), "%s", path_in("rt"));
    CU_ASSERT_EQUAL_FATAL(make_dataset(dir, 1000, 3, 0, 1), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_open(dir, &ds), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_samples(ds), 1000);
    CU_ASSERT_EQUAL(dml_dataset_shards(ds), 3);
    CU_ASSERT_EQUAL(dml_dataset_shard_samples(ds, 0), 333);
    CU_ASSERT_EQUAL(dml_dataset_shard_samples(ds, 2), 334);
    CU_ASSERT_STRING_EQUAL(dml_dataset_shard_name(ds, 1), "shard-00001.h5");
    CU_ASSERT_EQUAL(dml_dataset_schema(ds)->rank, 2);
    CU_ASSERT_EQUAL(dml_dataset_schema(ds)->shape[1], 4);
    CU_ASSERT_EQUAL(dml_dataset_schema(ds)->dtype, DML_DTYPE_UINT8);
    CU_ASSERT_STRING_EQUAL(dml_dataset_schema(ds)->class_names[3], "3");
    CU_ASSERT_EQUAL(strlen(dml_dataset_content_hash(ds)), 16);
    st = dml_dataset_stats(ds);
    for (i = 0; i < 1000; i++)
        mean0 += (double)((7 * i) % 256);
    CU_ASSERT_DOUBLE_EQUAL(st->mean[0], mean0 / 1000, 1e-9);
    for (f = 0; f < NC; f++)
        CU_ASSERT_EQUAL(st->label_counts[f], 200);
    {
        uint64_t h = 0;
        for (i = 0; i < DML_DATASET_HIST_BINS; i++)
            h += st->hist[5 * DML_DATASET_HIST_BINS + i];
        CU_ASSERT_EQUAL(h, 1000); /* every sample binned once per feature */
    }
    CU_ASSERT_EQUAL(dml_dataset_validate(ds, 0, 3, NULL, NULL, &problems), DML_OK);
    CU_ASSERT_EQUAL(problems, 0);
    dml_dataset_close(ds);

    /* The same data gives the same content hash; other data another. */
    {
        dml_dataset_t *a, *b;
        CU_ASSERT_EQUAL_FATAL(make_dataset(path_in("rt2"), 1000, 3, 0, 1), DML_OK);
        CU_ASSERT_EQUAL_FATAL(make_dataset(path_in("rt3"), 999, 3, 0, 1), DML_OK);
        CU_ASSERT_EQUAL_FATAL(dml_dataset_open(path_in("rt2"), &a), DML_OK);
        CU_ASSERT_EQUAL_FATAL(dml_dataset_open(path_in("rt3"), &b), DML_OK);
        CU_ASSERT_EQUAL_FATAL(dml_dataset_open(dir, &ds), DML_OK);
        CU_ASSERT_STRING_EQUAL(dml_dataset_content_hash(a), dml_dataset_content_hash(ds));
        CU_ASSERT_STRING_NOT_EQUAL(dml_dataset_content_hash(b), dml_dataset_content_hash(ds));
        dml_dataset_close(a);
        dml_dataset_close(b);
        dml_dataset_close(ds);
    }
}

static void test_existing_and_interrupted(void)
{
    char dir[512];
    dml_dataset_t *ds = NULL;
    struct stat sb;

    snprintf(dir, sizeof(dir), "%s", path_in("ex"));
    CU_ASSERT_EQUAL_FATAL(make_dataset(dir, 100, 2, 0, 1), DML_OK);
    /* An existing dataset is not overwritten unless asked. */
    CU_ASSERT_EQUAL(make_dataset(dir, 50, 1, 0, 1), DML_ERR_EXISTS);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), dir));
    CU_ASSERT_EQUAL_FATAL(dml_dataset_open(dir, &ds), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_samples(ds), 100);
    dml_dataset_close(ds);
    /* An interrupted replacement leaves the old dataset whole. */
    CU_ASSERT_EQUAL(make_dataset(dir, 50, 1, 1, 0), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_open(dir, &ds), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_samples(ds), 100);
    CU_ASSERT_EQUAL(dml_dataset_validate(ds, 0, 2, NULL, NULL, NULL), DML_OK);
    dml_dataset_close(ds);
    /* A completed replacement swaps it. */
    CU_ASSERT_EQUAL(make_dataset(dir, 50, 1, 1, 1), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_open(dir, &ds), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_samples(ds), 50);
    dml_dataset_close(ds);
    CU_ASSERT_NOT_EQUAL(stat(path_in("ex.partial"), &sb), 0);

    /* An interrupted first write leaves no dataset that opens. */
    CU_ASSERT_EQUAL(make_dataset(path_in("int"), 100, 2, 0, 0), DML_OK);
    CU_ASSERT_NOT_EQUAL(dml_dataset_open(path_in("int"), &ds), DML_OK);
    CU_ASSERT_NOT_EQUAL(dml_dataset_open(path_in("int.partial"), &ds), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "index.h5"));
}

static int exists(const char *p)
{
    struct stat sb;
    return lstat(p, &sb) == 0;
}

static void put_file(const char *p, const char *text)
{
    FILE *fp = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Only a writer's own leftover at dir.partial is removed: a directory of
 * the user's there, a link, a leftover holding a file of the user's are
 * refused, naming the path, and left as they were. */
static void test_partial_ownership(void)
{
    char dir[512], partial[600], mine[700];

    snprintf(dir, sizeof(dir), "%s", path_in("own"));
    snprintf(partial, sizeof(partial), "%s.partial", dir);
    snprintf(mine, sizeof(mine), "%s/run1", partial);

    /* the user's directory */
    CU_ASSERT_EQUAL_FATAL(mkdir(partial, 0755), 0);
    CU_ASSERT_EQUAL_FATAL(mkdir(mine, 0755), 0);
    CU_ASSERT_EQUAL(dml_dataset_writer_check(dir, 0), DML_ERR_EXISTS);
    CU_ASSERT_EQUAL(make_dataset(dir, 100, 2, 0, 1), DML_ERR_EXISTS);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), partial));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(dml_error_message(), "exists without the .slurm-dml-partial marker"));
    CU_ASSERT_EQUAL(make_dataset(dir, 100, 2, 1, 1), DML_ERR_EXISTS); /* --force too */
    CU_ASSERT(exists(mine));
    CU_ASSERT(!exists(dir));
    CU_ASSERT_EQUAL_FATAL(rmdir(mine), 0);
    CU_ASSERT_EQUAL_FATAL(rmdir(partial), 0);

    /* a link, and a file */
    CU_ASSERT_EQUAL_FATAL(symlink(tmpdir, partial), 0);
    CU_ASSERT_EQUAL(make_dataset(dir, 100, 2, 0, 1), DML_ERR_EXISTS);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "a symbolic link"));
    CU_ASSERT(exists(path_in("own.partial")) && exists(tmpdir));
    unlink(partial);
    put_file(partial, "notes\n");
    CU_ASSERT_EQUAL(make_dataset(dir, 100, 2, 0, 1), DML_ERR_EXISTS);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "not a directory"));
    unlink(partial);

    /* An interrupted write's leftover is marked, and the next write clears
     * it; with a file of the user's put into it, it is refused. */
    CU_ASSERT_EQUAL_FATAL(make_dataset(dir, 100, 2, 0, 0), DML_OK);
    snprintf(mine, sizeof(mine), "%s/.slurm-dml-partial", partial);
    CU_ASSERT(exists(mine));
    snprintf(mine, sizeof(mine), "%s/notes.txt", partial);
    put_file(mine, "mine\n");
    CU_ASSERT_EQUAL(dml_dataset_writer_check(dir, 0), DML_ERR_EXISTS);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "holds 'notes.txt'"));
    CU_ASSERT(exists(mine));
    unlink(mine);
    CU_ASSERT_EQUAL(dml_dataset_writer_check(dir, 0), DML_OK);
    CU_ASSERT_EQUAL(make_dataset(dir, 100, 2, 0, 1), DML_OK);
    CU_ASSERT(!exists(partial));
    /* a dataset carries no marker */
    snprintf(mine, sizeof(mine), "%s/.slurm-dml-partial", dir);
    CU_ASSERT(!exists(mine));
}

/* Datasets committed together move together: when the second cannot be
 * moved into place, the first (replacing a dataset) is put back. */
static void test_commit_all(void)
{
    dml_schema_t s = {DML_DTYPE_UINT8, 2, {3, 4, 0}, NC, NULL};
    dml_dataset_writer_t *w[2];
    char a[512], b[512], hash[17], blocker[700];
    dml_dataset_t *ds;
    uint8_t x[10 * NF] = {0};
    int32_t y[10] = {0};
    uint64_t id[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};

    snprintf(a, sizeof(a), "%s", path_in("ca"));
    snprintf(b, sizeof(b), "%s", path_in("ca.val"));
    CU_ASSERT_EQUAL_FATAL(make_dataset(a, 100, 2, 0, 1), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_open(a, &ds), DML_OK);
    snprintf(hash, sizeof(hash), "%s", dml_dataset_content_hash(ds));
    dml_dataset_close(ds);

    CU_ASSERT_EQUAL_FATAL(dml_dataset_writer_create(MPI_COMM_WORLD, a, &s, 1, 1, "t", &w[0]),
                          DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_writer_create(MPI_COMM_WORLD, b, &s, 1, 0, "t", &w[1]),
                          DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_writer_put(w[0], 0, 10, x, y, id), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_writer_put(w[1], 0, 10, x, y, id), DML_OK);
    /* something takes b's place while the datasets are written */
    CU_ASSERT_EQUAL_FATAL(mkdir(b, 0755), 0);
    snprintf(blocker, sizeof(blocker), "%s/theirs", b);
    put_file(blocker, "x\n");
    CU_ASSERT_EQUAL(dml_dataset_writer_commit_all(w, 2), DML_ERR_EXISTS);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "ca.val"));
    CU_ASSERT_EQUAL_FATAL(dml_dataset_open(a, &ds), DML_OK);
    CU_ASSERT_STRING_EQUAL(dml_dataset_content_hash(ds), hash); /* the old one, whole */
    CU_ASSERT_EQUAL(dml_dataset_samples(ds), 100);
    CU_ASSERT_EQUAL(dml_dataset_validate(ds, 0, 2, NULL, NULL, NULL), DML_OK);
    dml_dataset_close(ds);
    CU_ASSERT(exists(blocker));
    CU_ASSERT(!exists(path_in("ca.partial")) && !exists(path_in("ca.val.partial")));

    /* and with the way clear, both move */
    unlink(blocker);
    rmdir(b);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_writer_create(MPI_COMM_WORLD, a, &s, 1, 1, "t", &w[0]),
                          DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_writer_create(MPI_COMM_WORLD, b, &s, 1, 0, "t", &w[1]),
                          DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_writer_put(w[0], 0, 10, x, y, id), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_writer_put(w[1], 0, 10, x, y, id), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_writer_commit_all(w, 2), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_open(a, &ds), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_samples(ds), 10);
    dml_dataset_close(ds);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_open(b, &ds), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_samples(ds), 10);
    dml_dataset_close(ds);
    CU_ASSERT(!exists(path_in("ca.partial")) && !exists(path_in("ca.val.partial")));
}

static void test_writer_rejects(void)
{
    dml_schema_t s = {DML_DTYPE_FLOAT32, 1, {3, 0, 0}, 2, NULL};
    dml_dataset_writer_t *w;
    float x[6] = {1, 2, 3, 4, NAN, 6};
    int32_t y[2] = {0, 1}, ybad[2] = {0, 2};
    uint64_t id[2] = {0, 1};
    struct stat sb;

    CU_ASSERT_EQUAL_FATAL(
        dml_dataset_writer_create(MPI_COMM_WORLD, path_in("rej"), &s, 1, 0, "t", &w), DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_writer_put(w, 0, 2, x, y, id), DML_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "sample 1 feature 1"));
    CU_ASSERT_EQUAL(dml_dataset_writer_put(w, 0, 2, x, ybad, id), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "label 2, outside 0..1"));
    /* The commit fails with the first problem, and no dataset appears. */
    CU_ASSERT_EQUAL(dml_dataset_writer_commit(w), DML_ERR_NUMERIC);
    CU_ASSERT_NOT_EQUAL(stat(path_in("rej"), &sb), 0);

    s.rank = 0;
    CU_ASSERT_EQUAL(dml_dataset_writer_create(MPI_COMM_WORLD, path_in("rej2"), &s, 1, 0, "t", &w),
                    DML_ERR_INVALID_ARG);
}

/* Collects validation problems into one string. */
static void collect(void *arg, dml_status_t st, const char *problem)
{
    (void)st;
    strncat((char *)arg, problem, 8191 - strlen((char *)arg));
    strncat((char *)arg, "\n", 8191 - strlen((char *)arg));
}

static int copy_dataset(const char *from, const char *to)
{
    char cmd[1600]; /* three paths of up to 511 bytes */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    return system(cmd);
}

static dml_status_t validate_all(const char *dir, char *problems, uint64_t *n)
{
    dml_dataset_t *ds;
    dml_status_t st;

    problems[0] = '\0';
    st = dml_dataset_open(dir, &ds);
    if (st != DML_OK)
        return st;
    st = dml_dataset_validate(ds, 0, dml_dataset_shards(ds), collect, problems, n);
    dml_dataset_close(ds);
    return st;
}

/* Rewrites one shard file with the given datasets (for schema corruption). */
static void write_shard(const char *path, hid_t xtype, const hsize_t *xdims, int xrank,
                        const void *x, const int32_t *y, const uint64_t *id, hsize_t n)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), s, d;

    s = H5Screate_simple(xrank, xdims, NULL);
    d = H5Dcreate2(f, "x", xtype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, xtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(d);
    H5Sclose(s);
    s = H5Screate_simple(1, &n, NULL);
    d = H5Dcreate2(f, "y", H5T_NATIVE_INT32, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(d);
    d = H5Dcreate2(f, "id", H5T_NATIVE_UINT64, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, id);
    H5Dclose(d);
    H5Sclose(s);
    /* the record a real shard carries: its format and number (from its name) */
    {
        const char *name = strrchr(path, '/');
        uint64_t shard = strtoull(name + strlen("/shard-"), NULL, 10);
        s = H5Screate(H5S_SCALAR);
        d = H5Tcopy(H5T_C_S1);
        H5Tset_size(d, sizeof(DML_DATASET_FORMAT " shard"));
        hid_t a = H5Acreate2(f, "format", d, s, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, d, DML_DATASET_FORMAT " shard");
        H5Aclose(a);
        H5Tclose(d);
        a = H5Acreate2(f, "shard", H5T_NATIVE_UINT64, s, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_UINT64, &shard);
        H5Aclose(a);
        H5Sclose(s);
    }
    H5Fclose(f);
}

/* A copy of shard `from`'s arrays as `to`, with its record (root attributes)
 * left out (record 0) or saying it is shard `number`. */
static void copy_shard_record(const char *from, const char *to, int record, uint64_t number)
{
    static const char *const arrays[] = {"x", "y", "id"};
    hid_t src = H5Fopen(from, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dst = H5Fcreate(to, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    size_t i;

    for (i = 0; i < 3; i++)
        H5Ocopy(src, arrays[i], dst, arrays[i], H5P_DEFAULT, H5P_DEFAULT);
    if (record) {
        hid_t sp = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1), a;
        H5Tset_size(t, sizeof(DML_DATASET_FORMAT " shard"));
        a = H5Acreate2(dst, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, DML_DATASET_FORMAT " shard");
        H5Aclose(a);
        a = H5Acreate2(dst, "shard", H5T_NATIVE_UINT64, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_UINT64, &number);
        H5Aclose(a);
        H5Tclose(t);
        H5Sclose(sp);
    }
    H5Fclose(dst);
    H5Fclose(src);
}

static void test_corruptions(void)
{
    char good[512], bad[512], problems[8192];
    char shard[600];
    uint64_t n = 0;
    FILE *fp;

    snprintf(good, sizeof(good), "%s", path_in("good"));
    snprintf(bad, sizeof(bad), "%s", path_in("bad"));
    CU_ASSERT_EQUAL_FATAL(make_dataset(good, 300, 3, 0, 1), DML_OK);
    snprintf(shard, sizeof(shard), "%s/shard-00001.h5", bad);

    /* Missing shard */
    CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
    unlink(shard);
    CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "shard-00001.h5: shard 1 is missing"));

    /* Truncated shard */
    CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
    CU_ASSERT_EQUAL(truncate(shard, 1500), 0);
    CU_ASSERT_NOT_EQUAL(validate_all(bad, problems, &n), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "shard-00001.h5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "truncated"));

    /* One flipped byte in the sample data: the checksum catches it. */
    CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
    fp = fopen(shard, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    fseek(fp, -100, SEEK_END); /* contiguous data sits at the end */
    fputc(fgetc(fp) ^ 0x40, fp);
    fclose(fp);
    CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_ERR_CHECKSUM);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "shard-00001.h5: checksum mismatch"));

    /* Schema mismatch: a shard with samples of another shape, and one with
     * another dtype; labels outside the classes. */
    {
        static uint8_t x8[100 * 13];
        static float xf[100 * 12];
        int32_t y[100];
        uint64_t id[100];
        hsize_t d13[2] = {100, 13}, d34[3] = {100, 3, 4};
        int i;
        for (i = 0; i < 100; i++) {
            y[i] = i == 42 ? 9 : i % NC;
            id[i] = (uint64_t)i + 100;
        }
        CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
        write_shard(shard, H5T_NATIVE_UINT8, d13, 2, x8, y, id, 100);
        CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_ERR_MISMATCH);
        CU_ASSERT_PTR_NOT_NULL(
            strstr(problems, "dataset \"x\" has 2 dimensions, the index expects 3"));

        CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
        write_shard(shard, H5T_NATIVE_FLOAT, d34, 3, xf, y, id, 100);
        CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_ERR_MISMATCH);
        CU_ASSERT_PTR_NOT_NULL(strstr(problems, "dataset \"x\" has element type"));

        CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
        write_shard(shard, H5T_NATIVE_UINT8, d34, 3, x8, y, id, 100);
        CU_ASSERT_NOT_EQUAL(validate_all(bad, problems, &n), DML_OK);
        CU_ASSERT_PTR_NOT_NULL(
            strstr(problems, "1 labels outside 0..4 (first: sample 42 has label 9)"));
        CU_ASSERT_PTR_NOT_NULL(strstr(problems, "checksum mismatch"));
    }

    /* A shard whose record (root attributes) cannot be read, or names
     * another shard: the arrays alone do not make it sound. */
    {
        char goodshard[600];
        snprintf(goodshard, sizeof(goodshard), "%s/shard-00001.h5", good);
        CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
        copy_shard_record(goodshard, shard, 0, 0);
        CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_ERR_FORMAT);
        CU_ASSERT_PTR_NOT_NULL(strstr(problems, "shard-00001.h5: its attributes (format, shard) "
                                                "cannot be read: damaged"));
        CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
        copy_shard_record(goodshard, shard, 1, 2);
        CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_ERR_MISMATCH);
        CU_ASSERT_PTR_NOT_NULL(strstr(problems, "records itself as 'slurm-dml dataset shard' "
                                                "number 2, the index lists it as shard 1"));
        /* and with its own number: sound again */
        CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
        copy_shard_record(goodshard, shard, 1, 1);
        CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_OK);
    }

    /* A damaged object header (dataset "x"'s, whose checksum no longer
     * matches) is damage, not a missing dataset. */
    {
        hid_t f;
        haddr_t addr = HADDR_UNDEF;
#if H5_VERSION_GE(1, 12, 0)
        H5O_info1_t oi;
#else
        H5O_info_t oi;
#endif
        CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
        f = H5Fopen(shard, H5F_ACC_RDONLY, H5P_DEFAULT);
        CU_ASSERT_FATAL(f >= 0);
        if (H5Oget_info_by_name2(f, "x", &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0)
            addr = oi.addr;
        H5Fclose(f);
        CU_ASSERT_FATAL(addr != HADDR_UNDEF);
        fp = fopen(shard, "r+b");
        CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
        fseek(fp, (long)addr + 12, SEEK_SET); /* inside its first header message */
        {
            int ch = fgetc(fp);
            fseek(fp, (long)addr + 12, SEEK_SET);
            fputc(ch ^ 0x5a, fp);
        }
        fclose(fp);
        CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_ERR_FORMAT);
        CU_ASSERT_PTR_NOT_NULL(strstr(problems, "shard-00001.h5: dataset \"x\" is damaged: its "
                                                "object header cannot be read"));
        CU_ASSERT_PTR_NULL(strstr(problems, "missing"));
    }

    /* A shard the process may not read is named with the OS's reason, not
     * called corrupt. As root, without the capabilities that bypass file
     * permissions, for the check. */
    {
        struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct caps[2], saved[2];
        const unsigned bypass = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
        int dropped = 0;

        CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
        snprintf(shard, sizeof(shard), "%s/shard-00001.h5", bad);
        CU_ASSERT_EQUAL_FATAL(chmod(shard, 0), 0);
        if (syscall(SYS_capget, &h, caps) == 0 && (caps[0].effective & bypass) != 0) {
            memcpy(saved, caps, sizeof(saved));
            caps[0].effective &= ~bypass;
            dropped = syscall(SYS_capset, &h, caps) == 0;
            CU_ASSERT_FATAL(dropped);
        }
        CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_ERR_PERMISSION);
        CU_ASSERT_PTR_NOT_NULL(
            strstr(problems, "shard-00001.h5: cannot be opened: Permission denied"));
        CU_ASSERT_PTR_NULL(strstr(problems, "corrupt"));
        if (dropped)
            CU_ASSERT_EQUAL(syscall(SYS_capset, &h, saved), 0);
        chmod(shard, 0644);
    }

    /* A damaged index: not HDF5, or a shard table that does not match the
     * content hash. */
    CU_ASSERT_EQUAL_FATAL(copy_dataset(good, bad), 0);
    snprintf(shard, sizeof(shard), "%s/index.h5", bad);
    CU_ASSERT_EQUAL(truncate(shard, 200), 0);
    CU_ASSERT_EQUAL(validate_all(bad, problems, &n), DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "index.h5: not a readable HDF5 file"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "truncated or corrupt; 200 bytes"));
}

static void test_float_nan_detected(void)
{
    char dir[512], shard[600], problems[8192];
    dml_schema_t s = {DML_DTYPE_FLOAT32, 1, {2, 0, 0}, 2, NULL};
    dml_dataset_writer_t *w;
    float x[4] = {1, 2, 3, 4};
    int32_t y[2] = {0, 1};
    uint64_t id[2] = {0, 1}, n;
    hsize_t d[2] = {2, 2};

    snprintf(dir, sizeof(dir), "%s", path_in("nan"));
    CU_ASSERT_EQUAL_FATAL(dml_dataset_writer_create(MPI_COMM_WORLD, dir, &s, 1, 0, "t", &w),
                          DML_OK);
    CU_ASSERT_EQUAL(dml_dataset_writer_put(w, 0, 2, x, y, id), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_dataset_writer_commit(w), DML_OK);
    x[3] = INFINITY;
    snprintf(shard, sizeof(shard), "%s/shard-00000.h5", dir);
    write_shard(shard, H5T_NATIVE_FLOAT, d, 2, x, y, id, 2);
    CU_ASSERT_NOT_EQUAL(validate_all(dir, problems, &n), DML_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "1 feature values are NaN or Inf (first in sample 1)"));
}

static void test_idx_reader(void)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    uint8_t *data = NULL;
    uint64_t dims[3];
    int nd = 0;
    gzFile gz;
    unsigned char raw[784 + 16];

    if (access(img, R_OK) == 0) {
        CU_ASSERT_EQUAL_FATAL(dml_idx_read(img, &data, dims, &nd), DML_OK);
        CU_ASSERT_EQUAL(nd, 3);
        CU_ASSERT_EQUAL(dims[0], 10000);
        CU_ASSERT_EQUAL(dims[1], 28);
        gz = gzopen(img, "rb");
        CU_ASSERT_EQUAL(gzread(gz, raw, sizeof(raw)), (int)sizeof(raw));
        gzclose(gz);
        CU_ASSERT_EQUAL(memcmp(data, raw + 16, 784), 0);
        free(data);
    } else if (getenv("CI") != NULL) {
        CU_FAIL("Fashion-MNIST is not installed (package dataset-fashion-mnist)");
    }

    /* A truncated IDX file is named, with how much was there. */
    {
        char *p = path_in("trunc.idx");
        unsigned char hdr[16] = {0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28};
        FILE *fp = fopen(p, "wb");
        fwrite(hdr, 1, 16, fp);
        fwrite(raw, 1, 500, fp);
        fclose(fp);
        CU_ASSERT_EQUAL(dml_idx_read(p, &data, dims, &nd), DML_ERR_FORMAT);
        CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "truncated: 500 of 7840 data bytes"));
        fp = fopen(p, "wb");
        fputs("hello world, not idx", fp);
        fclose(fp);
        CU_ASSERT_EQUAL(dml_idx_read(p, &data, dims, &nd), DML_ERR_FORMAT);
        CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "not an IDX file"));
        CU_ASSERT_EQUAL(dml_idx_read(path_in("none.idx"), &data, dims, &nd), DML_ERR_NOT_FOUND);
    }
}

static void test_csv_reader(void)
{
    char *p = path_in("d.csv");
    float *x;
    int32_t *y;
    uint64_t n, nf;
    uint32_t nc;
    char(*names)[DML_DATASET_NAME_MAX];
    FILE *fp = fopen(p, "w");

    fputs("a,species,b\n1.5,virginica,2\n3,setosa,4\n\n5,virginica,6e1\n", fp);
    fclose(fp);
    CU_ASSERT_EQUAL_FATAL(dml_csv_read(p, "species", &x, &y, &n, &nf, &nc, &names, NULL, NULL),
                          DML_OK);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(nf, 2);
    CU_ASSERT_EQUAL(nc, 2);
    CU_ASSERT_STRING_EQUAL(names[0], "setosa"); /* sorted, not first-seen */
    CU_ASSERT_EQUAL(y[0], 1);
    CU_ASSERT_EQUAL(y[1], 0);
    CU_ASSERT_DOUBLE_EQUAL(x[0], 1.5, 0);
    CU_ASSERT_DOUBLE_EQUAL(x[5], 60, 0);
    free(x);
    free(y);
    free(names);

    fp = fopen(p, "w");
    fputs("label,v\n0,1\n2,x7\n", fp);
    fclose(fp);
    CU_ASSERT_EQUAL(dml_csv_read(p, "label", &x, &y, &n, &nf, &nc, &names, NULL, NULL),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(dml_error_message(), "d.csv:3: column \"v\": \"x7\" is not a finite number"));
    CU_ASSERT_EQUAL(dml_csv_read(p, "class", &x, &y, &n, &nf, &nc, &names, NULL, NULL),
                    DML_ERR_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "no column named \"class\""));
    fp = fopen(p, "w");
    fputs("label,v\n0,1\n2\n", fp);
    fclose(fp);
    CU_ASSERT_EQUAL(dml_csv_read(p, "label", &x, &y, &n, &nf, &nc, &names, NULL, NULL),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "d.csv:3: 1 fields, the header has 2"));
}

static void count_progress(void *arg, uint64_t done, uint64_t total, uint64_t rows)
{
    uint64_t *seen = arg;
    seen[0]++;
    seen[1] = done;
    seen[2] = total;
    seen[3] = rows;
}

/* Reads text as a CSV file; returns the status, the detail in
 * dml_error_message(). */
static dml_status_t csv_of(const char *text, const char *label, float **x, int32_t **y, uint64_t *n,
                           uint64_t *nf, uint32_t *nc, char (**names)[DML_DATASET_NAME_MAX])
{
    char *p = path_in("r.csv");
    put_file(p, text);
    *x = NULL;
    *y = NULL;
    *names = NULL;
    return dml_csv_read(p, label, x, y, n, nf, nc, names, NULL, NULL);
}

/* CSV as people write it (RFC 4180; pandas, spreadsheets): quoted fields
 * with commas, doubled quotes and line breaks, CRLF, a byte order mark;
 * and a file that is not CSV named with its line and column. */
static void test_csv_rfc4180(void)
{
    float *x;
    int32_t *y;
    uint64_t n, nf, seen[4] = {0};
    uint32_t nc;
    char(*names)[DML_DATASET_NAME_MAX];

    CU_ASSERT_EQUAL_FATAL(csv_of("\xef\xbb\xbf\"w, cm\",h,\"kind\"\r\n"
                                 "1.5,2,\"cat, black\"\r\n"
                                 "\"3\",4,\"dog \"\"rex\"\"\"\r\n"
                                 "5, 6 ,\"two\nlines\"\r\n",
                                 "kind", &x, &y, &n, &nf, &nc, &names),
                          DML_OK);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(nf, 2);
    CU_ASSERT_EQUAL(nc, 3);
    CU_ASSERT_STRING_EQUAL(names[0], "cat, black");
    CU_ASSERT_STRING_EQUAL(names[1], "dog \"rex\"");
    CU_ASSERT_STRING_EQUAL(names[2], "two\nlines");
    CU_ASSERT_EQUAL(y[0], 0);
    CU_ASSERT_EQUAL(y[1], 1);
    CU_ASSERT_EQUAL(y[2], 2);
    CU_ASSERT_DOUBLE_EQUAL(x[0], 1.5, 0);
    CU_ASSERT_DOUBLE_EQUAL(x[2], 3, 0);
    CU_ASSERT_DOUBLE_EQUAL(x[5], 6, 0);
    free(x);
    free(y);
    free(names);
    /* a byte order mark is no part of the first column's name */
    CU_ASSERT_EQUAL_FATAL(
        csv_of("\xef\xbb\xbflabel,a\n1,0\n", "label", &x, &y, &n, &nf, &nc, &names), DML_OK);
    CU_ASSERT_EQUAL(y[0], 1);
    free(x);
    free(y);

    /* a field that holds a comma, unquoted: the count of fields says so */
    CU_ASSERT_EQUAL(csv_of("a,b,label\n1,2,0\n1,5,2,1\n", "label", &x, &y, &n, &nf, &nc, &names),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "r.csv:3: 4 fields, the header has 3 (a "
                                                       "field with a comma in it must be quoted"));
    /* a decimal comma, quoted: not a number, and named as a decimal comma */
    CU_ASSERT_EQUAL(csv_of("a,b,label\n1,\"2,5\",0\n", "label", &x, &y, &n, &nf, &nc, &names),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "r.csv:2: column \"b\": \"2,5\" is not a "
                                                       "finite number (a decimal comma?"));
    /* a record over two lines is named by the line it starts on */
    CU_ASSERT_EQUAL(csv_of("a,label\n1,0\n\"x\ny\",1\n", "label", &x, &y, &n, &nf, &nc, &names),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "r.csv:3: column \"a\""));

    /* not CSV: line and column */
    CU_ASSERT_EQUAL(csv_of("a,label\n1,0\n2,\"1\n3,0\n", "label", &x, &y, &n, &nf, &nc, &names),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "r.csv:3:3: the quoted field opened here is "
                                                       "never closed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "unterminated quote"));
    /* an escaped quote is no opening quote: the one before it is named */
    CU_ASSERT_EQUAL(csv_of("a,label\n1,\"x\"\"y\n", "label", &x, &y, &n, &nf, &nc, &names),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "r.csv:2:3: the quoted field opened here"));
    CU_ASSERT_EQUAL(csv_of("a,label\n1,0\n2,x\"y\n", "label", &x, &y, &n, &nf, &nc, &names),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(dml_error_message(), "r.csv:3:4: a quote inside an unquoted field"));
    CU_ASSERT_EQUAL(csv_of("a,label\n\"1\"2,0\n", "label", &x, &y, &n, &nf, &nc, &names),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "r.csv:2:4: '2' after the closing quote"));
    CU_ASSERT_EQUAL(csv_of(",a,label\n0,1,2\n", "label", &x, &y, &n, &nf, &nc, &names),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "r.csv:1: column 1 has no name"));
    CU_ASSERT_EQUAL(csv_of("", "label", &x, &y, &n, &nf, &nc, &names), DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "empty file"));
    CU_ASSERT_EQUAL(csv_of("a,label\n\n  \n", "label", &x, &y, &n, &nf, &nc, &names),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "no data lines"));

    /* A NUL byte inside a field */
    {
        char *p = path_in("nul.csv");
        FILE *fp = fopen(p, "wb");
        fwrite("a,label\n1\0002,0\n", 1, 15, fp);
        fclose(fp);
        CU_ASSERT_EQUAL(dml_csv_read(p, "label", &x, &y, &n, &nf, &nc, &names, NULL, NULL),
                        DML_ERR_FORMAT);
        CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "nul.csv:2: field 1 holds a NUL byte"));
    }

    /* Progress: reported with the bytes read of the file's size and the rows. */
    CU_ASSERT_EQUAL_FATAL(csv_of("a,label\n1,0\n2,1\n", "label", &x, &y, &n, &nf, &nc, &names),
                          DML_OK);
    free(x);
    free(y);
    CU_ASSERT_EQUAL_FATAL(
        dml_csv_read(path_in("r.csv"), "label", &x, &y, &n, &nf, &nc, &names, count_progress, seen),
        DML_OK);
    CU_ASSERT(seen[0] >= 1);
    CU_ASSERT_EQUAL(seen[1], 16);
    CU_ASSERT_EQUAL(seen[2], 16);
    CU_ASSERT_EQUAL(seen[3], 2);
    free(x);
    free(y);
}

/* A header of 200,000 columns with a name twice, far apart: found, naming
 * both columns (each name is looked up once in a hash set: the header is
 * checked in linear time; tests/io/test_data_hostile.sh has the tool read
 * such a header under a time limit that only a quadratic check exceeds). */
static void test_csv_wide_header(void)
{
    const size_t cols = 200000;
    char *p = path_in("wide.csv");
    float *x;
    int32_t *y;
    uint64_t n, nf;
    uint32_t nc;
    char(*names)[DML_DATASET_NAME_MAX];
    FILE *fp = fopen(p, "w");
    size_t k;

    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    for (k = 0; k < cols; k++)
        fprintf(fp, "feature_%07zu,", k);
    fputs("feature_0000007\n", fp);
    fclose(fp);
    CU_ASSERT_EQUAL(dml_csv_read(p, "label", &x, &y, &n, &nf, &nc, &names, NULL, NULL),
                    DML_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "wide.csv:1: column \"feature_0000007\" "
                                                       "appears twice in the header (columns 8 and "
                                                       "200001)"));
}

int main(int argc, char **argv)
{
    CU_pSuite s;
    unsigned int failures;
    char cmd[300];

    MPI_Init(&argc, &argv);
    /* as the tools do (dml_tool_hdf5_quiet): HDF5 prints nothing of its own,
     * not even "infinite loop closing library" at exit after a damaged
     * object header was read */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dml-io-test.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return 99;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 99;
    s = CU_add_suite("io format", NULL, NULL);
    CU_add_test(s, "round trip and statistics", test_round_trip);
    CU_add_test(s, "existing and interrupted writes", test_existing_and_interrupted);
    CU_add_test(s, "only a writer's own .partial is removed", test_partial_ownership);
    CU_add_test(s, "datasets committed together move together", test_commit_all);
    CU_add_test(s, "writer rejects bad samples", test_writer_rejects);
    CU_add_test(s, "every corruption is found", test_corruptions);
    CU_add_test(s, "non-finite floats are found", test_float_nan_detected);
    CU_add_test(s, "IDX reader", test_idx_reader);
    CU_add_test(s, "CSV reader", test_csv_reader);
    CU_add_test(s, "CSV as RFC 4180 has it", test_csv_rfc4180);
    CU_add_test(s, "CSV header of 200,000 columns", test_csv_wide_header);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    failures = dml_test_run(argc, argv);
    CU_cleanup_registry();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        failures++;
    MPI_Finalize();
    return failures == 0 ? 0 : 1;
}
