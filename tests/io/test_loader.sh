#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The loader at 1, 2, 3 and 4 MPI ranks (oversubscribed): exactly once per
# epoch in the permutation's order, the same sequence at every world size,
# resume from state (also 4 -> 3 ranks), and a bad dataset stopping every
# rank with one message.
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
export OMPI_MCA_rmaps_base_oversubscribe=1
prog=$abs_top_builddir/tests/io/test_loader
make_work loader-test
run() { # ranks args...
    local n=$1
    shift
    timeout 300 "$MPIRUN" --oversubscribe -np "$n" "$prog" "$@"
}

run 2 create "$work/ds" || fail "creating the test dataset on 2 ranks"
ref=""
for n in 1 2 3 4; do
    out=$(run "$n" check "$work/ds") || fail "check at $n ranks: $out"
    echo "$out"
    # The global sequence depends on the seed alone, not on the world size.
    seq=$(grep '^variant' <<<"$out")
    [ -z "$ref" ] || [ "$seq" = "$ref" ] || fail "sequence at $n ranks differs from 1 rank"
    ref=$seq
done
# Two runs give the same order.
[ "$(run 2 check "$work/ds" | grep '^variant')" = "$ref" ] || fail "a second run gave another order"

# Save at 4 ranks mid-epoch (epoch 1), resume at 3 and at 2.
run 4 save "$work/ds" "$work/state" 20 || fail "save at 4 ranks"
grep -q '^42 1 ' "$work/state" || fail "unexpected saved state: $(cat "$work/state")"
run 3 resume "$work/ds" "$work/state" || fail "resume at 3 ranks"
run 2 resume "$work/ds" "$work/state" || fail "resume at 2 ranks"

# Bad datasets: every rank stops with the same message, nobody hangs.
cp -r "$work/ds" "$work/bad1"
rm "$work/bad1/shard-00002.h5"
out=$(run 3 bad "$work/bad1") && fail "a missing shard was accepted"
grep -q 'shard-00002.h5: shard 2 is missing' <<<"$out" || fail "missing shard: $out"
cp -r "$work/ds" "$work/bad2"
# Flip a byte inside the sample data (contiguous x, at the offset h5dump reports).
off=$(h5dump -p -H -d /x "$work/bad2/shard-00001.h5" | sed -n 's/^ *OFFSET \([0-9]*\)$/\1/p')
[ -n "$off" ] || fail "no offset for /x in shard-00001.h5"
printf '\x55' | dd of="$work/bad2/shard-00001.h5" bs=1 seek=$((off + 100)) conv=notrunc status=none
out=$(run 4 bad "$work/bad2") && fail "a corrupted shard was accepted"
grep -q 'shard-00001.h5: checksum mismatch' <<<"$out" || fail "corrupted shard: $out"
cp -r "$work/ds" "$work/bad3"
truncate -s 3000 "$work/bad3/shard-00003.h5"
out=$(run 2 bad "$work/bad3") && fail "a truncated shard was accepted"
grep -q 'shard-00003.h5: not a readable HDF5 file' <<<"$out" || fail "truncated shard: $out"
echo PASS
