#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# dml_ckpt.h's typed calls and header (test_ckpt_api.c) at 1, 2 and 3 ranks,
# rank 0 writing alone and every rank through MPI-IO.
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
make_work ckpt-api
for mode in single parallel; do
    for n in 1 2 3; do
        rm -rf "$work/d"
        timeout 120 "$MPIRUN" --oversubscribe -np "$n" "$abs_top_builddir/tests/ckpt/test_ckpt_api" \
            "$work/d" $mode || fail "test_ckpt_api at $n ranks, $mode"
    done
done
echo PASS
