#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# mpirun (no Slurm) runs the same MPI check oversubscribed on this machine's cores.
set -euo pipefail
# A command that fails under set -e says which (in this shell; a subshell's
# failure is named by the command that ran it), so that no failure is silent.
set -E
trap 'e=$?; [ "$BASHPID" != "$$" ] || echo "FAIL: ${BASH_SOURCE[0]##*/} line $LINENO: \"$BASH_COMMAND\" exited $e" >&2' ERR
: "${abs_top_builddir:?run this test through make check}"
: "${MPIRUN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(timeout 120 "$MPIRUN" --oversubscribe -np 4 "$abs_top_builddir/tests/cluster/mpi_allreduce") ||
    { echo "FAIL: mpirun exited $?: $out" >&2; exit 1; }
echo "$out"
[ "$(echo "$out" | grep -c ' of 4 on .*: allreduce of 4096 doubles ok$')" -eq 4 ] ||
    { echo "FAIL: expected 4 ranks reporting a correct allreduce" >&2; exit 1; }
echo "PASS"
