#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The training state's save and load mirror each other (test_train_state.c)
# at 1 and 2 ranks, rank 0 writing alone and every rank through MPI-IO.
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
make_work train-state
for mode in single parallel; do
    for n in 1 2; do
        rm -rf "$work/d"
        timeout 120 "$MPIRUN" --oversubscribe -np "$n" \
            "$abs_top_builddir/tests/trainer/test_train_state" "$work/d" $mode ||
            fail "test_train_state at $n ranks, $mode"
    done
done
echo PASS
