#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The checkpoint tests again with every rank writing its share (parallel
# HDF5), the mode of checkpoints above DML_CKPT_SINGLE_MAX (64 MiB by
# default); test_ckpt.sh's small states are otherwise written by rank 0.
export DML_CKPT_SINGLE_MAX=0
exec bash "$(dirname "$0")/test_ckpt.sh"
