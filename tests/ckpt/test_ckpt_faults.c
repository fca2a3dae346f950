/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_ckpt_faults: a write that fails on one rank alone (that rank's file
 * size limit; on a cluster, its node's disk or quota) while the others
 * succeed. What users rely on: every rank returns the same error, naming the
 * file and the cause, nobody hangs, the temporary is gone, and the previous
 * checkpoint is still the newest, still "latest" and still sound.
 *
 *   mpirun -np N test_ckpt_faults DIR
 *
 * Run by test_ckpt_faults.sh with DML_CKPT_SINGLE_MAX=0 (every rank writes
 * its share of the array with its own writes, in pieces of DML_CKPT_PIECE).
 */
#include "ckpt_env.h"
#include "dml_ckpt.h"

#include <limits.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mpi_check.h"

static int failures;

/* One checkpoint at step of one array of n floats; every rank's status. */
static dml_status_t save(const char *dir, uint64_t step, const float *buf, uint64_t n)
{
    uint64_t dims[2] = {n, 0};
    dml_ckpt_writer_t *w;
    dml_ckpt_config_t cc;
    dml_status_t st;

    dml_ckpt_config_init(&cc);
    dml_ckpt_config_env(&cc);
    /* 1 byte expected: above DML_CKPT_SINGLE_MAX=0 (every rank writes), and
     * below any free-space or size-limit check, so that the write itself
     * fails */
    if ((st = dml_ckpt_begin(MPI_COMM_WORLD, dir, step, 1, &cc, &w)) != DML_OK)
        return st;
    if ((st = dml_ckpt_put(w, dml_ckpt_file(w), "state", H5T_NATIVE_FLOAT, dims, buf)) != DML_OK) {
        dml_ckpt_abort(w);
        return st;
    }
    return dml_ckpt_commit(w, 0, NULL, 0);
}

int main(int argc, char **argv)
{
    const uint64_t n = 2u << 20; /* 8 MiB of floats */
    int rank, size, same, all_same;
    char link[PATH_MAX], want[64], tmp[PATH_MAX];
    dml_ckpt_entry_t *e = NULL;
    size_t ne = 0;
    dml_status_t st;
    float *buf;
    ssize_t k;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 2 || size < 2) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -np N (N >= 2) test_ckpt_faults DIR\n");
        MPI_Finalize();
        return 2;
    }
    buf = malloc(n * sizeof(float));
    for (uint64_t i = 0; i < n; i++)
        buf[i] = (float)(i % 1009) * 0.5f;

    st = save(argv[1], 1, buf, n);
    CHECK(st == DML_OK, "the first checkpoint failed: %s", dml_error_message());

    /* The last rank may write no more than 6 MiB to a file: its share of the
     * second checkpoint lies beyond. */
    if (rank == size - 1) {
        struct rlimit rl = {6u << 20, 6u << 20};
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &rl);
    }
    st = save(argv[1], 2, buf, n);
    CHECK(st != DML_OK, "the second checkpoint succeeded past a rank's file size limit");
    CHECK(strstr(dml_error_message(), "ckpt-000000002.h5.tmp") != NULL &&
              strstr(dml_error_message(), "limit") != NULL,
          "the message names neither the file nor the cause: %s", dml_error_message());
    same = (int)st;
    MPI_Allreduce(&same, &all_same, 1, MPI_INT, MPI_BAND, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_BOR, MPI_COMM_WORLD);
    CHECK(same == all_same, "the ranks returned different statuses");

    if (rank == 0) {
        snprintf(tmp, sizeof(tmp), "%s/ckpt-000000002.h5.tmp", argv[1]);
        CHECK(access(tmp, F_OK) != 0, "the temporary %s is still there", tmp);
        CHECK(dml_ckpt_list(argv[1], &e, &ne) == DML_OK && ne == 1 && e[0].step == 1,
              "the committed checkpoints are not exactly step 1 (%zu listed)", ne);
        if (ne == 1)
            CHECK(dml_ckpt_verify(e[0].path) == DML_OK, "step 1 no longer verifies: %s",
                  dml_error_message());
        snprintf(tmp, sizeof(tmp), "%s/latest", argv[1]);
        k = readlink(tmp, link, sizeof(link) - 1);
        link[k > 0 ? k : 0] = '\0';
        snprintf(want, sizeof(want), "ckpt-000000001.h5");
        CHECK(strcmp(link, want) == 0, "latest points at '%s', not %s", link, want);
        free(e);
    }
    MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    free(buf);
    MPI_Finalize();
    return failures ? 1 : 0;
}
