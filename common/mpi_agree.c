/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mpi_agree.c: one collective that turns "some rank failed" into "every rank
 * knows which failure, and why", with two small collectives on the success
 * path (one allreduce of an int pair) and one broadcast on the failure path.
 */
#include "config.h"

#include "dml_mpi.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

dml_status_t dml_mpi_error(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;

    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof(msg), "MPI error %d", rc);
    return dml_error_set(DML_ERR_MPI, "%s: %s", what, msg);
}

dml_status_t dml_mpi_agree(MPI_Comm comm, dml_status_t local, int *failed_rank)
{
    struct {
        int failed; /* rank number if failed, INT_MAX if not */
        int status;
    } mine, first;
    char detail[1024];
    int rank, rc;

    if (failed_rank != NULL)
        *failed_rank = -1;
    rc = MPI_Comm_rank(comm, &rank);
    if (rc != MPI_SUCCESS)
        return dml_mpi_error(rc, "MPI_Comm_rank in failure agreement");

    /* MINLOC over (failed rank, status) picks the lowest failed rank; the
     * "location" field carries its status along. */
    mine.failed = local == DML_OK ? INT_MAX : rank;
    mine.status = (int)local;
    rc = MPI_Allreduce(&mine, &first, 1, MPI_2INT, MPI_MINLOC, comm);
    if (rc != MPI_SUCCESS)
        return dml_mpi_error(rc, "MPI_Allreduce in failure agreement");
    if (first.failed == INT_MAX)
        return DML_OK;

    memset(detail, 0, sizeof(detail));
    if (rank == first.failed)
        snprintf(detail, sizeof(detail), "%s", dml_error_message());
    rc = MPI_Bcast(detail, (int)sizeof(detail), MPI_CHAR, first.failed, comm);
    if (rc != MPI_SUCCESS)
        return dml_mpi_error(rc, "MPI_Bcast in failure agreement");
    detail[sizeof(detail) - 1] = '\0';
    if (failed_rank != NULL)
        *failed_rank = first.failed;
    return dml_error_set((dml_status_t)first.status, "%s", detail);
}
