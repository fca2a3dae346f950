#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The checkpoint tests again in parallel mode (DML_CKPT_SINGLE_MAX=0) with
# every rank writing its rows of each array of 4 KiB or more itself, in
# pieces of a page, past MPI-IO (its path for arrays of 2 MiB and more by
# default, DML_CKPT_PIECE); smaller arrays go through collective HDF5 writes
# as before. The slices' offsets, the CRC combined from them, each rank's
# fsync and a full disk on one rank must all hold as in the other modes.
export DML_CKPT_SINGLE_MAX=0 DML_CKPT_PIECE=4096
exec bash "$(dirname "$0")/test_ckpt.sh"
