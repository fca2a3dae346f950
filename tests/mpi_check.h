/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mpi_check.h: CHECK for the MPI test programs (not CUnit: each rank checks
 * on its own and the program's exit status is the count agreed over the
 * ranks). A failed check names its rank and line and goes on, so that one
 * run shows every failure. The program defines `rank` and `failures`.
 */
#ifndef DML_TESTS_MPI_CHECK_H
#define DML_TESTS_MPI_CHECK_H

#include <stdio.h>

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL (rank %d, line %d): ", rank, __LINE__);                          \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#endif /* DML_TESTS_MPI_CHECK_H */
