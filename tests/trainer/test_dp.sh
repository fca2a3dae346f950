#!/bin/bash
# The data-parallel step at 1, 2, 3 and 4 MPI ranks (oversubscribed).
set -euo pipefail
# A command that fails under set -e says which, so that no failure is silent.
set -E
trap 'echo "FAIL: ${BASH_SOURCE[0]##*/} line $LINENO: \"$BASH_COMMAND\" exited $?" >&2' ERR
: "${abs_top_builddir:?run through make check}" "${MPIRUN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for n in 1 2 3 4; do
    timeout 300 "$MPIRUN" --oversubscribe -np "$n" "$abs_top_builddir/tests/trainer/test_dp" ||
        { echo "FAIL: test_dp at $n ranks" >&2; exit 1; }
done
echo PASS
