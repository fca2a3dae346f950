#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# A checkpoint write that fails on one rank alone, at 2 and 3 ranks, where
# every rank writes its share with its own writes in pieces (a large
# checkpoint's arrays of 2 MiB or more; also in page-sized pieces). In one
# collective MPI-IO write (DML_CKPT_PIECE=0) MPI-IO picks the ranks that
# write, so no rank can be made to fail alone: there the free space and the
# file size limit are checked before anything is written (test_ckpt.sh).
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
make_work ckpt-faults
export DML_CKPT_SINGLE_MAX=0
for piece in default 4096; do
    for n in 2 3; do
        rm -rf "$work/d"
        if [ "$piece" = default ]; then unset DML_CKPT_PIECE; else export DML_CKPT_PIECE=$piece; fi
        timeout 120 "$MPIRUN" --oversubscribe -np "$n" "$abs_top_builddir/tests/ckpt/test_ckpt_faults" \
            "$work/d" || { echo "FAIL: test_ckpt_faults at $n ranks, piece $piece" >&2; exit 1; }
    done
done
echo PASS
