#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The data-parallel step at 1, 2, 3 and 4 MPI ranks (oversubscribed), for an
# MLP and for a network with convolution and batch normalisation.
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
for model in mlp cnn; do
    for n in 1 2 3 4; do
        timeout 300 "$MPIRUN" --oversubscribe -np "$n" "$abs_top_builddir/tests/trainer/test_dp" $model ||
            { echo "FAIL: test_dp $model at $n ranks" >&2; exit 1; }
    done
done
echo PASS
