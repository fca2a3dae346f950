/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_mpi.h: agreeing on failure across MPI ranks.
 *
 * In MPI code an error on one rank must reach every rank before any of them
 * enters a collective the failed rank will never join. dml_mpi_agree() is that
 * meeting point: every rank brings its own status, and every rank leaves with
 * the same status and the same failure detail (that of the lowest failed rank),
 * so each can stop with the one clear message and no rank hangs.
 *
 * Kept out of libdml_common so that non-MPI code (the SPANK plugin) need not
 * link MPI.
 */
#ifndef DML_MPI_H
#define DML_MPI_H

#include "dml_status.h"

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports what this header declares, and nothing else (it is
 * built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

/*
 * Collective over comm. Returns DML_OK when every rank passed DML_OK; else the
 * status of the lowest-numbered failed rank, whose detail (dml_error_message)
 * is then this rank's detail too. *failed_rank (may be NULL) gets that rank, or
 * -1. Returns DML_ERR_MPI if the agreement itself failed.
 */
dml_status_t dml_mpi_agree(MPI_Comm comm, dml_status_t local, int *failed_rank);

/* The MPI error string of rc as a DML_ERR_MPI detail naming what failed. */
dml_status_t dml_mpi_error(int rc, const char *what);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DML_MPI_H */
