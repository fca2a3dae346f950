/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ckpt_bench: checkpoint write bandwidth against a raw write of the same
 * bytes to the same file system, in one run (MPI; every rank holds the whole
 * state, as in data-parallel training).
 *
 *   mpirun -np R ckpt_bench DIR MIB REPEATS
 *
 * For each repeat, alternating: (1) dml_ckpt_begin/put/commit of one float
 * array of MIB MiB (CRC, the file written by rank 0 alone up to 64 MiB, by
 * every rank its slice above, large arrays with its own writes and small ones
 * with collective parallel-HDF5 writes; fsync, renames, "latest",
 * directory fsync); (2) the raw reference: the same bytes pwrite()n to one
 * new file and fsync()ed, once by rank 0 alone and once by every rank its
 * slice; the faster counts; (3) for context, the same bytes pwrite()n by
 * rank 0 over an existing file of that size and fsync()ed (no blocks to
 * allocate, as where the checkpoint is written into a pruned one's). Prints
 * one line per repeat on rank 0: repeat, checkpoint, raw reference, the
 * checkpoint's begin, put and commit, the two raw ways, the overwrite
 * (seconds); run-ckpt-bench turns them into the table.
 */
#include "config.h"

#include "ckpt_env.h"
#include "dml_ckpt.h"

#include <fcntl.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "dml_clock.h"

/* Lets the disk finish what the last measurement left it (the unlink of
 * its file, the checkpoint pruned in the background, both "discard"ing
 * blocks here), so that neither measurement pays for the other. */
static void settle(void)
{
    MPI_Barrier(MPI_COMM_WORLD);
    usleep(20000);
    MPI_Barrier(MPI_COMM_WORLD);
}

/* Writes len bytes of p at off into path, opened with flags, and fsyncs
 * it; a failure aborts the run (a benchmark of a failed write means
 * nothing). */
static void write_sync(const char *path, int flags, const void *p, size_t len, off_t off)
{
    int fd = open(path, flags, 0644);

    if (fd < 0 || pwrite(fd, p, len, off) != (ssize_t)len || fsync(fd) != 0)
        MPI_Abort(MPI_COMM_WORLD, 1);
    close(fd);
}

/* Every rank writes floats [lo, hi) of buf at their place in a new file
 * (none where lo == hi) and fsyncs it: seconds from the first rank's start
 * to the last rank's end. */
static double raw_write(const char *path, const float *buf, uint64_t lo, uint64_t hi)
{
    size_t len = (hi - lo) * sizeof(float);
    double t0;
    int rank;

    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    settle();
    t0 = dml__now();
    if (len > 0)
        write_sync(path, O_WRONLY | O_CREAT, buf + lo, len, (off_t)(lo * sizeof(float)));
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = dml__now() - t0;
    if (rank == 0)
        unlink(path);
    MPI_Barrier(MPI_COMM_WORLD);
    return t0;
}

/* Rank 0 writes all n floats over the existing file at path and fsyncs
 * it: seconds. */
static double raw_overwrite(const char *path, const float *buf, uint64_t n)
{
    double t0;
    int rank;

    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    settle();
    t0 = dml__now();
    if (rank == 0)
        write_sync(path, O_WRONLY, buf, n * sizeof(float), 0);
    MPI_Barrier(MPI_COMM_WORLD);
    return dml__now() - t0;
}

int main(int argc, char **argv)
{
    dml_ckpt_config_t cc;
    int rank, size, provided, r, reps;
    uint64_t n, dims[2] = {0, 0};
    float *buf;
    char raw[4096], old[4096];
    const char *dir;

    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 4) {
        if (rank == 0)
            fprintf(stderr, "usage: ckpt_bench DIR MIB REPEATS\n");
        MPI_Finalize();
        return 2;
    }
    dir = argv[1];
    n = (uint64_t)atol(argv[2]) * 1048576 / sizeof(float);
    reps = atoi(argv[3]);
    buf = malloc(n * sizeof(float));
    if (buf == NULL)
        MPI_Abort(MPI_COMM_WORLD, 1);
    for (uint64_t i = 0; i < n; i++)
        buf[i] = (float)(i % 9973) * 0.001f;
    dims[0] = n;
    dml_ckpt_config_init(&cc);
    dml_ckpt_config_env(&cc);
    if (rank == 0 && dml_ckpt_dir_prepare(dir) != DML_OK) {
        fprintf(stderr, "ckpt_bench: %s\n", dml_error_message());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    snprintf(raw, sizeof(raw), "%s/raw.bin", dir);
    snprintf(old, sizeof(old), "%s/raw-old.bin", dir);
    if (rank == 0)
        write_sync(old, O_WRONLY | O_CREAT | O_TRUNC, buf, n * sizeof(float), 0);

    for (r = 0; r < reps; r++) {
        dml_ckpt_writer_t *w;
        double t0, t_ckpt, t_raw, t_raw1, t_raw2, t_over, t_begin = 0, t_put = 0;
        uint64_t lo = n * (uint64_t)rank / (uint64_t)size,
                 hi = n * (uint64_t)(rank + 1) / (uint64_t)size;

        settle();
        t0 = dml__now();
        if (dml_ckpt_begin(MPI_COMM_WORLD, dir, (uint64_t)r + 1, n * sizeof(float), &cc, &w) !=
                DML_OK ||
            (t_begin = dml__now() - t0,
             dml_ckpt_put(w, dml_ckpt_file(w), "state", H5T_NATIVE_FLOAT, dims, buf)) != DML_OK ||
            (t_put = dml__now() - t0 - t_begin, dml_ckpt_commit(w, 1, NULL, 0)) != DML_OK) {
            if (rank == 0)
                fprintf(stderr, "ckpt_bench: %s\n", dml_error_message());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        t_ckpt = dml__now() - t0;

        /* The raw reference: the same bytes to the same file system, made
         * durable the same way (fsync), written the faster of two ways: by
         * rank 0 alone, and by every rank its slice of one file. */
        t_raw1 = raw_write(raw, buf, 0, rank == 0 ? n : 0);
        t_raw2 = raw_write(raw, buf, lo, hi);
        t_raw = t_raw1 < t_raw2 ? t_raw1 : t_raw2;
        t_over = raw_overwrite(old, buf, n);
        if (rank == 0) {
            /* then the checkpoint's phases: begin, put, commit */
            printf("%d %.6f %.6f %.6f %.6f %.6f %.6f %.6f %.6f\n", r, t_ckpt, t_raw, t_begin, t_put,
                   t_ckpt - t_begin - t_put, t_raw1, t_raw2, t_over);
            fflush(stdout);
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
    if (rank == 0)
        unlink(old);
    free(buf);
    MPI_Finalize();
    return 0;
}
