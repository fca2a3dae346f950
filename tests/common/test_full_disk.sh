#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# A nearly full disk at every output the tools write whole: dml-train
# --output, dml-ckpt export, dml-registry register, dml-infer run (its part)
# and dml-infer merge (predictions and reports). What users rely on, at every
# level of fullness from 100% to nearly enough room (a 2 MiB tmpfs):
#  - the tool exits 1, never a crash (HDF5 1.10 crashed in MPI_Finalize when
#    it met the full disk itself), naming the file and the OS's reason;
#  - nothing is left behind (no temporary), and the file there before (an
#    earlier model, predictions, a registry's versions) is unchanged;
#  - dml-train finds before training that the model file cannot fit, and a
#    disk that fills during training (held at a chosen step) costs only the
#    model file: exit 1 with the reason, the checkpoints kept.
. "$(dirname "$0")/../lib.sh"
need_test_hooks
: "${MPIRUN:?run this test through make check}"
[ "$(id -u)" -eq 0 ] || skip_or_fail "needs root (mounts a small tmpfs)"
make_work full-disk
full=$work/full
mkdir "$full"
mount -t tmpfs -o size=2m tmpfs "$full" || skip_or_fail "cannot mount a tmpfs"
at_exit 'umount "$full" 2>/dev/null || true'
cd "$work"

run() { local n=$1; shift; timeout 120 "$MPIRUN" --oversubscribe -np "$n" "$train" "$@"; }
# Leaves KB KiB free on the tmpfs (what is there stays).
fill() { # kb
    local free
    rm -f "$full/fill"
    free=$(df -k --output=avail "$full" | tail -n 1)
    [ "$free" -gt "$1" ] || return 0
    fallocate -l $(((free - $1) * 1024)) "$full/fill"
}
# refused WHAT FILE OUTFILE: the run whose output is in OUTFILE and exit status
# in $rc failed as a user needs: exit 1, one message naming FILE and ENOSPC,
# no temporary left on the tmpfs.
refused() {
    [ "$rc" -eq 1 ] || fail "$1: exit $rc, expected 1 (139: the crash): $(tail -n 5 "$3")"
    grep -q -- "$2.*No space left on device" "$3" || fail "$1: no message naming $2 and the cause: $(cat "$3")"
    [ -z "$(find "$full" -name '*.tmp*')" ] || fail "$1: left $(find "$full" -name '*.tmp*')"
}

"$data" synth --out ds --samples 2000 --shape 200 --classes 4 --seed 1 --dtype float32 --shards 2 >/dev/null
m=(--train ds --model mlp:200-256-4 --batch 64 --log-every 0)
run 2 "${m[@]}" --epochs 1 --checkpoint-dir ck --output m.h5 >setup.out 2>&1 || fail "setup: $(cat setup.out)"
"$infer" run --model m.h5 --input ds --out inf --task 0 --tasks 1 >/dev/null 2>&1 || fail "setup: inference failed"
"$infer" merge --out inf >/dev/null 2>&1 || fail "setup: merge failed"
size=$(($(stat -c %s m.h5) / 1024))

# The files already on the disk, each to be kept as it was.
cp m.h5 "$full/m.h5"
cp inf/predictions.h5 "$full/p.h5"
cp inf/report.txt "$full/rep.txt"
cp inf/report.json "$full/rep.json"
"$registry" --registry "$full/reg" register m.h5 >/dev/null || fail "setup: register failed"
"$infer" run --model m.h5 --input ds --out "$full/inf" --task 0 --tasks 1 >/dev/null 2>&1 ||
    fail "setup: inference on the tmpfs failed"
rm "$full/inf/part-00000.h5"
versions=$(ls "$full/reg/versions")
# A second model, so that registering it adds a version.
run 1 "${m[@]}" --epochs 1 --seed 7 --output m2.h5 >/dev/null 2>&1 || fail "setup: second model"

for kb in 0 4 64 $((size / 2)) $((size - 8)); do
    fill "$kb"
    rc=0; run 2 "${m[@]}" --epochs 1 --output "$full/m.h5" >out 2>&1 || rc=$?
    refused "dml-train --output ($kb KiB free)" "$full/m.h5: the model file needs" out
    ! grep -q "epoch 1 step" out || fail "dml-train ($kb KiB free): trained before refusing"
    rc=0; "$ckpt" export ck "$full/m.h5" >out 2>&1 || rc=$?
    refused "dml-ckpt export ($kb KiB free)" "$full/m.h5" out
    cmp -s m.h5 "$full/m.h5" || fail "($kb KiB free): the earlier model file changed"
    rc=0; "$registry" --registry "$full/reg" register m2.h5 >out 2>&1 || rc=$?
    refused "dml-registry register ($kb KiB free)" "$full/reg" out
    [ "$(ls "$full/reg/versions")" = "$versions" ] || fail "($kb KiB free): the registry's versions changed"
    "$registry" --registry "$full/reg" verify >out 2>&1 || fail "($kb KiB free): the registry no longer verifies: $(cat out)"
    if [ "$kb" -lt 64 ]; then # a part and the predictions are smaller than a model
        rc=0; "$infer" run --model m.h5 --input ds --out "$full/inf" --task 0 >out 2>&1 || rc=$?
        refused "dml-infer run ($kb KiB free)" "$full/inf/part-00000.h5" out
        [ ! -e "$full/inf/part-00000.h5" ] || fail "dml-infer run ($kb KiB free): a part was written"
        rc=0; "$infer" merge --out inf --predictions "$full/p.h5" >out 2>&1 || rc=$?
        refused "dml-infer merge ($kb KiB free)" "$full/p.h5" out
        cmp -s inf/predictions.h5 "$full/p.h5" || fail "($kb KiB free): the earlier predictions changed"
    fi
    if [ "$kb" -eq 0 ]; then # the reports are a few KiB
        rc=0; "$infer" merge --out inf --predictions p2.h5 --report "$full/rep" >out 2>&1 || rc=$?
        refused "dml-infer merge --report ($kb KiB free)" "$full/rep" out
        cmp -s inf/report.txt "$full/rep.txt" && cmp -s inf/report.json "$full/rep.json" ||
            fail "($kb KiB free): the earlier report changed"
    fi
done
echo "ok: at 0 to $((size - 8)) KiB free of a $size KiB model: every tool exits 1 naming the file and ENOSPC, nothing left behind, earlier files kept"

# A disk that fills while the model trains: held at step 3, the disk filled,
# released. The model file is refused at the end, the checkpoints stay.
fill 1024
rm -rf ck2
rc=0
DML_TEST_HOLD="3:$work/hold" run 2 "${m[@]}" --epochs 1 --checkpoint-dir ck2 --checkpoint-every 2 \
    --output "$full/m.h5" >out 2>&1 &
pid=$!
at_exit "kill_started $pid"
touch hold
wait_held hold $pid "filling during training"
fill 0
rm hold
wait $pid || rc=$?
refused "dml-train, the disk filled during training" "$full/m.h5" out
grep -q "epoch 1 step" out || fail "the run that filled the disk did not train: $(cat out)"
ls ck2/ckpt-*.h5 >/dev/null 2>&1 || fail "the checkpoints of the run were lost"
cmp -s m.h5 "$full/m.h5" || fail "the earlier model file changed when the disk filled during training"
echo "ok: the disk filled during training: exit 1 naming the model file and ENOSPC, checkpoints kept"
