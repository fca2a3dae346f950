/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_ckpt_api: what a caller of dml_ckpt.h writes it reads back, without
 * HDF5 (issue #41): attributes, groups and arrays through the typed calls,
 * and the header ckpt/ stamps (step, world size, time, version) from
 * dml_ckpt_open. The names that header owns are refused to callers; a
 * missing attribute or group is an error naming the file and the name.
 * Run at several rank counts, rank 0 alone writing (small) and every rank
 * through MPI-IO (argv[2] "parallel").
 */
#include "config.h"

#include "dml_ckpt.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi_check.h"

static int failures, rank;

static const double sums[3] = {1.5, 2.25, -3};
static const double rows[2 * 3] = {1, 2, 3, 4, 5, 6};
static const float arr[5] = {0.5f, -1, 2, 1e-3f, 7};

static dml_status_t write_one(const char *dir, const dml_ckpt_config_t *cfg, char *path, size_t len)
{
    const uint64_t d1[2] = {5, 0}, d2[2] = {2, 3};
    dml_ckpt_writer_t *w;
    dml_ckpt_loc_t g = -1;
    dml_status_t st;

    st = dml_ckpt_begin(MPI_COMM_WORLD, dir, 42, 4096, cfg, &w);
    if (st != DML_OK)
        return st;
    /* the header's names are ckpt/'s: refused, on every rank alike */
    CHECK(dml_ckpt_put_u64(w, "step", 7) == DML_ERR_INVALID_ARG, "put of 'step' not refused");
    CHECK(dml_ckpt_put_i32(w, "world_size", 9) == DML_ERR_INVALID_ARG,
          "put of 'world_size' not refused");
    CHECK(strstr(dml_error_message(), "world_size") != NULL, "refusal does not name it: %s",
          dml_error_message());
    if (st == DML_OK)
        st = dml_ckpt_put_str(w, "text", "a\nb");
    if (st == DML_OK)
        st = dml_ckpt_put_u64(w, "big", 1ULL << 40);
    if (st == DML_OK)
        st = dml_ckpt_put_i32(w, "small", -5);
    if (st == DML_OK)
        st = dml_ckpt_put_f64s(w, "sums", 3, sums);
    if (st == DML_OK)
        st = dml_ckpt_group_create(w, "grp", &g);
    if (st == DML_OK)
        st = dml_ckpt_put_floats(w, g, "arr", d1, arr);
    dml_ckpt_group_close(g);
    if (st == DML_OK)
        st = dml_ckpt_put_doubles(w, DML_CKPT_ROOT, "rows", d2, rows);
    if (st != DML_OK) {
        dml_ckpt_abort(w);
        return st;
    }
    return dml_ckpt_commit(w, 0, path, len);
}

static void read_one(const char *path, int size, int64_t t0)
{
    dml_ckpt_reader_t *r = NULL;
    dml_ckpt_header_t h;
    dml_ckpt_loc_t g = -1;
    char text[16] = "";
    uint64_t big = 0, dims[2] = {9, 9};
    int32_t small = 0;
    double s[3] = {0, 0, 0}, rw[6];
    float a[5];
    dml_status_t st;

    st = dml_ckpt_open(path, &h, &r);
    CHECK(st == DML_OK, "open: %s", dml_error_message());
    if (st != DML_OK)
        return;
    CHECK(h.step == 42, "header step %llu", (unsigned long long)h.step);
    CHECK(h.world_size == size, "header world size %d, ran at %d", (int)h.world_size, size);
    CHECK(h.version == DML_CKPT_VERSION, "header version %d", (int)h.version);
    CHECK(h.created >= t0 && h.created <= (int64_t)time(NULL), "header created %lld",
          (long long)h.created);
    CHECK(dml_ckpt_get_str(r, "text", text, sizeof(text)) == DML_OK && strcmp(text, "a\nb") == 0,
          "text: '%s'", text);
    CHECK(dml_ckpt_get_u64(r, "big", &big) == DML_OK && big == 1ULL << 40, "big: %llu",
          (unsigned long long)big);
    CHECK(dml_ckpt_get_i32(r, "small", &small) == DML_OK && small == -5, "small: %d", (int)small);
    CHECK(dml_ckpt_get_f64s(r, "sums", 3, s) == DML_OK && memcmp(s, sums, sizeof(s)) == 0,
          "sums differ");
    st = dml_ckpt_get_u64(r, "absent", &big);
    CHECK(st == DML_ERR_FORMAT && strstr(dml_error_message(), path) != NULL &&
              strstr(dml_error_message(), "'absent'") != NULL,
          "a missing attribute: %d %s", st, dml_error_message());
    CHECK(dml_ckpt_group_open(r, "nogroup", &g) == DML_ERR_FORMAT &&
              strstr(dml_error_message(), "'nogroup'") != NULL,
          "a missing group: %s", dml_error_message());
    st = dml_ckpt_group_open(r, "grp", &g);
    CHECK(st == DML_OK, "group: %s", dml_error_message());
    if (st == DML_OK) {
        CHECK(dml_ckpt_dims(r, g, "arr", dims) == DML_OK && dims[0] == 5 && dims[1] == 0,
              "arr dims %llu x %llu", (unsigned long long)dims[0], (unsigned long long)dims[1]);
        CHECK(dml_ckpt_get_floats(r, g, "arr", 5, a) == DML_OK && memcmp(a, arr, sizeof(a)) == 0,
              "arr: %s", dml_error_message());
        /* a wrong length is refused, the dataset named by its path */
        st = dml_ckpt_get_floats(r, g, "arr", 4, a);
        CHECK(st == DML_ERR_FORMAT && strstr(dml_error_message(), "'grp/arr'") != NULL,
              "arr as 4 values: %d %s", st, dml_error_message());
        dml_ckpt_group_close(g);
    }
    CHECK(dml_ckpt_dims(r, DML_CKPT_ROOT, "rows", dims) == DML_OK && dims[0] == 2 && dims[1] == 3,
          "rows dims %llu x %llu", (unsigned long long)dims[0], (unsigned long long)dims[1]);
    CHECK(dml_ckpt_get_doubles(r, DML_CKPT_ROOT, "rows", 6, rw) == DML_OK &&
              memcmp(rw, rows, sizeof(rw)) == 0,
          "rows: %s", dml_error_message());
    dml_ckpt_close(r);
    CHECK(dml_ckpt_verify(path) == DML_OK, "verify: %s", dml_error_message());
}

int main(int argc, char **argv)
{
    dml_ckpt_config_t cfg;
    char path[4096] = "";
    int size, all = 0;
    int64_t t0 = (int64_t)time(NULL);
    dml_status_t st;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 2) {
        if (rank == 0)
            fprintf(stderr, "usage: test_ckpt_api DIR [parallel]\n");
        MPI_Finalize();
        return 2;
    }
    dml_ckpt_config_init(&cfg);
    if (argc > 2 && strcmp(argv[2], "parallel") == 0)
        cfg.single_max = 0; /* every rank through MPI-IO */
    st = write_one(argv[1], &cfg, path, sizeof(path));
    CHECK(st == DML_OK, "write: %s", dml_error_message());
    if (st == DML_OK)
        read_one(path, size, t0);
    MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return all == 0 ? 0 : 1;
}
