/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_tool.h: what slurm-dml's command-line tools share and its libraries
 * must not do (read the environment, print): the launch check every MPI tool
 * makes before MPI_Init. Header-only, not installed.
 */
#ifndef DML_TOOL_H
#define DML_TOOL_H

#include "dml_log.h"

#include <stdlib.h>

/*
 * Started by srun without PMIx (srun's default --mpi=none on most sites),
 * Open MPI's MPI_Init fails in every task with a page of PMI text and
 * "OPAL ERROR: Unreachable". Say in one line what to do instead. srun sets
 * SLURM_STEP_ID in its tasks (a batch script itself has none); PMIx, PMI-2
 * and mpirun each set their own rank variable. Returns 1 after printing the
 * message when that is how the tool was started, else 0.
 */
static inline int dml_tool_launch_check(const char *tool)
{
    if (getenv("SLURM_STEP_ID") == NULL || getenv("PMIX_RANK") != NULL ||
        getenv("PMI_RANK") != NULL || getenv("PMI_FD") != NULL ||
        getenv("OMPI_COMM_WORLD_RANK") != NULL)
        return 0;
    dml_error("started by srun without PMIx, which MPI needs: run `srun --mpi=pmix %s ...` (or "
              "set SLURM_MPI_TYPE=pmix, or MpiDefault=pmix in slurm.conf), or use mpirun",
              tool);
    return 1;
}

#ifdef H5_VERS_MAJOR
/*
 * HDF5 prints its own error stack for every failed call. The libraries
 * report each failure themselves, naming the file and the cause, so a tool
 * turns HDF5's printing off for the whole process. That also keeps HDF5
 * from printing "infinite loop closing library" and a line of interface
 * names at exit after a failed open of a damaged file (it prints that only
 * while its error printing is on). Call it after MPI_Init.
 */
static inline void dml_tool_hdf5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
#endif

#endif /* DML_TOOL_H */
