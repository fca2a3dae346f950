#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Checkpoints under mpirun (oversubscribed), what users rely on:
#  - a run killed (SIGKILL) after a checkpoint and resumed ends with the same
#    weights, bit for bit, as an uninterrupted run (same world size);
#  - a checkpoint saved at 4 ranks resumes at 2 and at 3, and training reaches
#    the accuracy of the uninterrupted run;
#  - a crash at each phase of the commit protocol, on each rank, never leaves
#    a partial checkpoint that is taken for a good one;
#  - truncated, corrupted and foreign checkpoints are reported and passed
#    over for the previous good one; dml-ckpt verify names them and fails;
#  - an unwritable directory and a full disk give a clear message and
#    the previous checkpoint still loads;
#  - a signal on one rank: every rank checkpoints and exits 75;
#  - --keep K leaves exactly the K newest checkpoints;
#  - dml-ckpt list/inspect/export: the exported model is the trained model.
# Kills and signals come at a chosen step (dml-train's DML_TEST_HOLD pauses
# rank 0 there) and go to the PIDs of the ranks this test started, so the
# outcome depends neither on the machine's speed nor on other processes.
. "$(dirname "$0")/../lib.sh"
need_test_hooks
: "${MPIRUN:?run this test through make check}"
make_work ckpt-test
# the runs this test killed or stopped, and their ranks, by the PIDs it
# recorded
at_exit 'kill_started "${pid:-}" "$work/kp" ${d:+"$d.pids"}'
run() { local n=$1; shift; timeout 300 "$MPIRUN" --oversubscribe -np "$n" "$train" "$@"; }
newest() { ls "$1" | grep -E '^ckpt-[0-9]+\.h5$' | sort | tail -n 1; }

"$data" synth --out "$work/ds" --samples 6000 --shape 32 --classes 4 --noise 0.8 --seed 2 \
    --dtype float32 --shards 4 >/dev/null
common=(--train "$work/ds" --test "$work/ds" --model mlp:32-64-4 --batch 16 --lr 0.03 --seed 9
        --log-every 0)

# ---- bit-identical resume after SIGKILL --------------------------------
run 2 "${common[@]}" --epochs 6 --output "$work/full.h5" >/dev/null 2>&1 || fail "reference run failed"
# Killed (SIGKILL, every rank) at step 250, after the checkpoint of step 194.
touch "$work/hold-k"
DML_TEST_HOLD="250:$work/hold-k" mpirun_pids 2 "$work/kp" "$train" "${common[@]}" --epochs 6 \
    --checkpoint-dir "$work/k" --checkpoint-every 97 --output "$work/killed.h5" >"$work/k.out" 2>&1 &
pid=$!
wait_held "$work/hold-k" $pid "the run to kill"
kill -9 $(cat "$work/kp"/pid.*)
rc=0
wait $pid || rc=$?
rm -f "$work/hold-k"
[ $rc -ne 0 ] || fail "the killed run exited 0: $(cat "$work/k.out")"
[ ! -e "$work/killed.h5" ] || fail "the killed run wrote its model"
[ "$(newest "$work/k")" = ckpt-000000194.h5 ] ||
    fail "after a kill at step 250 the newest checkpoint is '$(newest "$work/k")', not step 194: $(cat "$work/k.out")"
at=$(newest "$work/k")
run 2 "${common[@]}" --epochs 6 --checkpoint-dir "$work/k" --output "$work/resumed.h5" \
    >"$work/r.out" 2>&1 || fail "resume failed: $(cat "$work/r.out")"
grep -q "resumed from $work/k/$at: step [0-9]*, epoch [0-9]*, saved by 2 ranks, now 2" "$work/r.out" ||
    fail "no resume line: $(cat "$work/r.out")"
h5diff "$work/full.h5" "$work/resumed.h5" /weights /weights >/dev/null ||
    fail "killed at $at and resumed: weights differ from the uninterrupted run"
echo "ok: killed after $at, resumed, bit-identical weights"

# ---- a checkpoint of the allreduce way resumes in the shared way -----------
# (2 ranks: one addition per element either way, so the same bits)
run 2 "${common[@]}" --epochs 3 --grad-reduce allreduce --checkpoint-dir "$work/w" \
    >"$work/w1.out" 2>&1 || fail "allreduce run failed: $(cat "$work/w1.out")"
grep -q "gradients summed by bucketed MPI allreduce" "$work/w1.out" || fail "not allreduce: $(cat "$work/w1.out")"
run 2 "${common[@]}" --epochs 6 --checkpoint-dir "$work/w" --output "$work/ways.h5" \
    >"$work/w2.out" 2>&1 || fail "shared resume failed: $(cat "$work/w2.out")"
grep -q "gradients summed by shared memory" "$work/w2.out" || fail "not shared: $(cat "$work/w2.out")"
grep -q "resumed from" "$work/w2.out" || fail "no resume: $(cat "$work/w2.out")"
h5diff "$work/full.h5" "$work/ways.h5" /weights /weights >/dev/null ||
    fail "saved by allreduce, resumed shared: weights differ from the uninterrupted run"
echo "ok: saved by allreduce at epoch 3, resumed shared, bit-identical weights"

# ---- N -> M: save at 4 ranks, resume at 2 and 3 -------------------------
run 4 "${common[@]}" --epochs 4 --metrics "$work/m4.jsonl" >/dev/null 2>&1 || fail "4-rank run failed"
run 4 "${common[@]}" --epochs 2 --checkpoint-dir "$work/n4" >/dev/null 2>&1 || fail "4-rank save failed"
acc4=$(grep '"type": "epoch"' "$work/m4.jsonl" | tail -n 1 | sed 's/.*"test_accuracy": \([0-9.e-]*\).*/\1/')
for m in 2 3; do
    cp -r "$work/n4" "$work/n4to$m"
    run "$m" "${common[@]}" --epochs 4 --checkpoint-dir "$work/n4to$m" --metrics "$work/m$m.jsonl" \
        >"$work/n$m.out" 2>&1 || fail "resume at $m ranks failed: $(cat "$work/n$m.out")"
    grep -q "saved by 4 ranks, now $m" "$work/n$m.out" || fail "no 4 -> $m resume: $(cat "$work/n$m.out")"
    [ "$(grep -c '"type": "epoch"' "$work/m$m.jsonl")" -eq 2 ] || fail "4 -> $m: expected epochs 3 and 4 only"
    acc=$(grep '"type": "epoch"' "$work/m$m.jsonl" | tail -n 1 | sed 's/.*"test_accuracy": \([0-9.e-]*\).*/\1/')
    awk -v a="$acc" -v b="$acc4" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.02) }' ||
        fail "4 -> $m ranks: test accuracy $acc, uninterrupted 4-rank run $acc4"
    echo "ok: 4 -> $m ranks: accuracy $acc (4 ranks throughout: $acc4)"
done

# ---- a crash at each phase of the commit, on each rank ---------------------
for point in begin@0 begin@1 put@0 put@1 closed@0 closed@1 renamed@0 latest@0; do
    d=$work/crash-${point/@/-}
    run 2 "${common[@]}" --epochs 1 --checkpoint-dir "$d" >/dev/null 2>&1 || fail "setup for $point failed"
    before=$(newest "$d")
    if DML_CKPT_CRASH=$point run 2 "${common[@]}" --epochs 2 --checkpoint-dir "$d" --checkpoint-every 120 \
        >"$d.out" 2>&1; then
        fail "crash point $point did not crash"
    fi
    after=$(newest "$d")
    case $point in
        renamed@*|latest@*) [ "$after" != "$before" ] || fail "$point: the renamed checkpoint is missing" ;;
        *) [ "$after" = "$before" ] || fail "$point: $after was committed, though the crash came first" ;;
    esac
    "$ckpt" verify "$d" >/dev/null 2>&1 || fail "$point: a committed checkpoint does not verify: $("$ckpt" verify "$d" 2>&1)"
    run 2 "${common[@]}" --epochs 2 --checkpoint-dir "$d" >"$d.resume" 2>&1 ||
        fail "$point: the next start failed: $(cat "$d.resume")"
    grep -q "resumed from $d/$after" "$d.resume" || fail "$point: did not resume from $after: $(cat "$d.resume")"
    ! ls "$d" | grep -q '\.tmp' || fail "$point: a temporary was left behind after the next checkpoint"
done
echo "ok: crashes at begin, put, closed (ranks 0 and 1), renamed and latest"

# ---- damaged and foreign checkpoints are passed over ---------------------
d=$work/dmg
run 2 "${common[@]}" --epochs 2 --checkpoint-dir "$d" --checkpoint-every 100 --keep 0 >/dev/null 2>&1 ||
    fail "setup for damage failed"
mapfile -t all < <(ls "$d" | grep -E '^ckpt-[0-9]+\.h5$' | sort -r)
[ "${#all[@]}" -ge 3 ] || fail "expected at least 3 checkpoints, got ${all[*]}"
# --keep 2: the same run keeps exactly its two newest (pruned in the
# background, done by the time the process exits), and "latest" names the newest.
run 2 "${common[@]}" --epochs 2 --checkpoint-dir "$work/keep" --checkpoint-every 100 --keep 2 \
    >/dev/null 2>&1 || fail "the run with --keep 2 failed"
kept=$(ls "$work/keep" | grep -E '^ckpt-[0-9]+\.h5$' | sort -r | tr '\n' ' ')
[ "$kept" = "${all[0]} ${all[1]} " ] || fail "--keep 2 left '$kept', expected '${all[0]} ${all[1]} '"
[ "$(readlink "$work/keep/latest")" = "${all[0]}" ] || fail "latest is not ${all[0]}"
echo "ok: --keep 2 keeps the two newest"

# ---- a pruned checkpoint's blocks are written again -------------------
# --keep 2 kept the first checkpoint it pruned as .spare.h5 and wrote a later
# one into it: they verify and hold the same model and optimiser state as
# the --keep 0 run's, written to new files. Where every rank writes its share
# (test_ckpt_parallel.sh), the file is created through MPI-IO, and no spare
# is kept or left.
spare_kept() {
    if [ "${DML_CKPT_SINGLE_MAX:-}" = 0 ]; then
        [ ! -e "$1/.spare.h5" ] || fail "$2 kept a spare where every rank writes: $(ls -A "$1")"
    else
        [ -f "$1/.spare.h5" ] || fail "$2 left no .spare.h5: $(ls -A "$1")"
    fi
}
spare_kept "$work/keep" "--keep 2"
"$ckpt" verify "$work/keep" >/dev/null 2>&1 || fail "the checkpoints written into a spare do not verify"
for g in /model /optimizer; do
    h5diff "$d/${all[0]}" "$work/keep/${all[0]}" "$g" "$g" >/dev/null ||
        fail "$g differs between ${all[0]} written into a spare and into a new file"
done
# A spare of any content and size: random bytes, larger (3x) and smaller
# than a checkpoint. The run resumed from ${all[1]} writes ${all[0]} into it
# (where every rank writes, it removes the spare and writes a new file).
size=$(stat -c %s "$d/${all[0]}")
for spare in $((3 * size)) 100; do
    s=$work/spare$spare
    mkdir "$s" && cp "$d/${all[1]}" "$s/"
    head -c "$spare" /dev/urandom >"$s/.spare.h5"
    run 2 "${common[@]}" --epochs 2 --checkpoint-dir "$s" --checkpoint-every 100 --keep 0 \
        >"$s.log" 2>&1 || fail "the run writing into a $spare-byte spare failed: $(cat "$s.log")"
    grep -q "resumed from $s/${all[1]}" "$s.log" || fail "did not resume from ${all[1]}: $(cat "$s.log")"
    [ ! -e "$s/.spare.h5" ] || fail "the $spare-byte spare was neither written into nor removed"
    "$ckpt" verify "$s/${all[0]}" >/dev/null 2>&1 ||
        fail "${all[0]} written into a $spare-byte spare does not verify"
    [ "$(stat -c %s "$s/${all[0]}")" = "$size" ] ||
        fail "${all[0]} written into a $spare-byte spare has $(stat -c %s "$s/${all[0]}") bytes, not $size"
    for g in /model /optimizer; do
        h5diff "$d/${all[0]}" "$s/${all[0]}" "$g" "$g" >/dev/null ||
            fail "$g differs in ${all[0]} written into a $spare-byte spare"
    done
done
echo "ok: pruned checkpoints are written into again; a spare of any size gives a sound checkpoint"
truncate -s 2000 "$d/${all[0]}"
# Flip bytes inside the second one's weights (found by their offset).
off=$(h5dump -p -d /model/weights "$d/${all[1]}" | sed -n 's/.*OFFSET \([0-9]*\).*/\1/p' | head -n 1)
[ -n "$off" ] || fail "cannot find the weights' offset in ${all[1]}"
printf '\xff\xff\xff\xff' | dd of="$d/${all[1]}" bs=1 seek=$((off + 64)) conv=notrunc 2>/dev/null
if out=$("$ckpt" verify "$d" 2>&1); then fail "dml-ckpt verify passed a damaged directory: $out"; fi
grep -q "$d/${all[0]}: not a readable HDF5 file (truncated or damaged)" <<<"$out" || fail "truncation not named: $out"
grep -q "$d/${all[1]}: dataset 'model/weights': checksum mismatch" <<<"$out" || fail "corruption not named: $out"
grep -q "$d/${all[2]}: ok" <<<"$out" || fail "the sound checkpoint is not reported ok: $out"
run 2 "${common[@]}" --epochs 3 --checkpoint-dir "$d" >"$d.out" 2>&1 || fail "resume past damage failed: $(cat "$d.out")"
grep -q "passing over checkpoint $d/${all[0]}: not a readable HDF5 file" "$d.out" || fail "truncation not reported: $(cat "$d.out")"
grep -q "passing over checkpoint $d/${all[1]}: dataset 'model/weights': checksum mismatch" "$d.out" ||
    fail "corruption not reported: $(cat "$d.out")"
grep -q "resumed from $d/${all[2]}" "$d.out" || fail "did not fall back to ${all[2]}: $(cat "$d.out")"
# A checkpoint of another model, newer than the good one: passed over, named.
f=$work/foreign
run 2 --train "$work/ds" --model mlp:32-8-4 --seed 9 --epochs 1 --checkpoint-dir "$f" --log-every 0 >/dev/null 2>&1
cp "$f/$(newest "$f")" "$d/ckpt-999999999.h5"
run 2 "${common[@]}" --epochs 3 --checkpoint-dir "$d" >"$d.out2" 2>&1 || fail "resume past a foreign checkpoint failed"
grep -q "passing over checkpoint $d/ckpt-999999999.h5: saved for model mlp:32-8-4, this run trains mlp:32-64-4" \
    "$d.out2" || fail "foreign checkpoint not reported: $(cat "$d.out2")"
# Nothing loads: refused, not trained over.
e=$work/allbad
mkdir -p "$e" && cp "$d/ckpt-999999999.h5" "$e/"
if out=$(run 2 "${common[@]}" --epochs 3 --checkpoint-dir "$e" 2>&1); then fail "trained over a directory of unusable checkpoints"; fi
grep -q "$e: no checkpoint loads (.*saved for model mlp:32-8-4.*); move them away, or start a new run with --resume never (which keeps them in $e/earlier-run-\*)" <<<"$out" ||
    fail "unclear refusal: $out"
echo "ok: truncated, corrupted and foreign checkpoints named and passed over"

# ---- an unwritable directory, a file size limit ----------------------------
touch "$work/afile"
if out=$(run 2 "${common[@]}" --epochs 1 --checkpoint-dir "$work/afile/sub" 2>&1); then fail "accepted a checkpoint dir under a file"; fi
grep -q "$work/afile/sub: cannot create the checkpoint directory: Not a directory" <<<"$out" || fail "unclear: $out"
grep -q "epoch 1 step" <<<"$out" && fail "trained before refusing the checkpoint directory"
# A full disk: a 4 MiB tmpfs holds one checkpoint of this model, not two.
big=(--train "$work/ds" --model mlp:32-512-512-4 --batch 16 --lr 0.01 --seed 9 --log-every 0)
d=$work/small
mkdir -p "$d"
if ! mount -t tmpfs -o size=4m tmpfs "$d" 2>/dev/null; then
    [ -z "${CI:-}" ] || fail "cannot mount a small tmpfs (CI runs as root and must test a full disk)"
    echo "note: not root: full-disk case not run"
else
    at_exit 'umount "$work/small" 2>/dev/null || true'
    run 2 "${big[@]}" --epochs 1 --checkpoint-dir "$d" >/dev/null 2>&1 || fail "setup for the full disk failed"
    good=$(newest "$d")
    if out=$(run 2 "${big[@]}" --epochs 2 --checkpoint-dir "$d" 2>&1); then
        fail "a checkpoint on a full disk was reported written"
    fi
    grep -q "$d: no space left for a checkpoint (it needs about [0-9.]* MiB, the file system has [0-9.]* MiB free)" <<<"$out" ||
        fail "unclear full-disk error: $out"
    [ "$(newest "$d")" = "$good" ] || fail "the failed checkpoint replaced $good"
    ! ls "$d" | grep -q '\.tmp' || fail "the failed checkpoint's temporary was left on the full disk"
    "$ckpt" verify "$d/$good" >/dev/null || fail "$good no longer verifies"
    run 2 "${big[@]}" --epochs 1 --checkpoint-dir "$d" >"$d.out" 2>&1 || fail "$good does not load: $(cat "$d.out")"
    grep -q "resumed from $d/$good" "$d.out" || fail "did not resume from $good"
    umount "$d"
    # --keep 1 on a disk that holds two checkpoints of this model, not three
    # (with the room the check asks for): the one pruned stays as the spare,
    # and the next, written into its blocks, still fits.
    mount -t tmpfs -o size=6m tmpfs "$d"
    run 2 "${big[@]}" --epochs 1 --checkpoint-dir "$d" --checkpoint-every 50 --keep 1 >"$d.out" 2>&1 ||
        fail "--keep 1 on a disk for two checkpoints failed: $(cat "$d.out")"
    [ "$(grep -c "checkpoint at step" "$d.out")" -ge 4 ] || fail "expected 4 checkpoints: $(cat "$d.out")"
    spare_kept "$d" "--keep 1"
    "$ckpt" verify "$d" >/dev/null 2>&1 || fail "--keep 1 on a small disk: $(ls -A "$d") do not verify"
    umount "$d"
fi
echo "ok: unwritable directory and a full disk"

# ---- a signal on one rank stops all, after a checkpoint ---------------------
d=$work/sig
# Long enough never to end; held at step 300, signalled (its last rank, by
# the PID it started), released: the checkpoint is that step's.
touch "$d.hold"
DML_TEST_HOLD="300:$d.hold" mpirun_pids 2 "$d.pids" "$train" "${common[@]}" --epochs 100000 \
    --checkpoint-dir "$d" >"$d.out" 2>&1 &
pid=$!
wait_held "$d.hold" $pid "SIGUSR1"
kill -USR1 "$(cat "$d.pids/pid.1")"
rm "$d.hold"
rc=0
wait $pid || rc=$?
[ $rc -eq 75 ] || fail "after SIGUSR1: exit $rc, expected 75: $(cat "$d.out")"
grep -q "checkpoint at step 300 (stop requested (signal))" "$d.out" ||
    fail "no checkpoint at step 300 on the signal: $(cat "$d.out")"
"$ckpt" verify "$d" >/dev/null || fail "the signal's checkpoint does not verify"
echo "ok: SIGUSR1 on one rank -> checkpoint, exit 75"

# ---- dml-ckpt list, inspect, export ------------------------------------------
d=$work/tool
run 2 "${common[@]}" --epochs 2 --checkpoint-dir "$d" --checkpoint-every 100 --output "$work/trained.h5" \
    >/dev/null 2>&1 || fail "run for the tool failed"
out=$("$ckpt" list "$d")
echo "$out"
grep -qE "^$(newest "$d" | sed 's/ckpt-0*\([0-9]*\).h5/\1/') .* 2  ok \(latest\)$" <<<"$out" || fail "list: newest not ok (latest)"
"$ckpt" inspect "$d" | grep -q "model = mlp:32-64-4" || fail "inspect does not show the model"
"$ckpt" export "$d" "$work/exported.h5" >/dev/null || fail "export failed"
# (h5diff counts the export's extra crc32 attribute as a difference: compare the bytes)
h5dump -d /weights -b LE -o "$work/w1.bin" "$work/trained.h5" >/dev/null
h5dump -d /weights -b LE -o "$work/w2.bin" "$work/exported.h5" >/dev/null
cmp -s "$work/w1.bin" "$work/w2.bin" || fail "exported weights differ from the trained model"
h5dump -a format "$work/exported.h5" | grep -q '"slurm-dml model"' || fail "the export is not a model file"
if "$ckpt" verify "$work/none" 2>/dev/null; then fail "verify of a missing path passed"; fi
echo PASS
