#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# dml-train against hostile but realistic input, what users rely on:
#  - no output replaces an input or a file of another kind (the dataset's
#    index, a checkpoint, a file that is not a metrics file), a checkpoint
#    directory is never a dataset, and an unwritable output is found before
#    the first step, with the OS's reason;
#  - the configuration file is read as written or refused with its true line
#    number: a line too long for the INI reader (whose tail would be taken
#    for a setting, even in a comment), an indented line, a key given twice
#    (also once before any section and again under [train]),
#    a directory, bytes that are not text (never echoed to the terminal);
#  - ranks started with different options, or an option error on one rank
#    only: one clear message naming the rank and the values as typed, every
#    rank ends, none hangs;
#  - a metrics file that cannot be written (a full disk) stops training with
#    the file and the cause, exit 1;
#  - the stop line and the resume line name the same epoch;
#  - a checkpoint records the effective configuration as --print-config
#    writes it, with the world size and the reduction chosen.
. "$(dirname "$0")/../lib.sh"
need_test_hooks
: "${MPIRUN:?run this test through make check}"
make_work train-hostile
at_exit 'umount "$work/full" 2>/dev/null || true'
# Runs dml-train on n ranks (bounded: a hang is a failure, not a wait).
run() { local n=$1; shift; timeout 120 "$MPIRUN" --oversubscribe -np "$n" "$train" "$@"; }
# refused RC PATTERN args...: exits RC before training with one message matching PATTERN
refused() {
    local want=$1 pat=$2 rc=0
    shift 2
    run 2 "$@" >"$work/out" 2>&1 || rc=$?
    [ $rc -ne 124 ] || fail "hung: $*"
    [ $rc -eq "$want" ] || fail "exit $rc, expected $want: $*: $(cat "$work/out")"
    grep -q -- "$pat" "$work/out" || fail "message does not match '$pat': $*: $(cat "$work/out")"
    [ "$(grep -c -- "error:" "$work/out")" -eq 1 ] || fail "not one error message: $(cat "$work/out")"
    ! grep -q "epoch 1 step" "$work/out" || fail "trained before refusing: $*"
}

"$data" synth --out "$work/ds" --samples 2000 --shape 20 --classes 4 --noise 0.6 --seed 1 \
    --dtype float32 --shards 2 >/dev/null
m=(--train "$work/ds" --model mlp:20-16-4 --batch 32 --log-every 0)
run 2 "${m[@]}" --epochs 1 --checkpoint-dir "$work/ck" --output "$work/good.h5" >/dev/null 2>&1 ||
    fail "the setup run failed"
# the checkpoint records the effective configuration in --print-config's
# form (dml-ckpt inspect shows it): the trainer's settings, the way gradients
# were summed (never auto) and the world size
ck=$work/ck/$(ls "$work/ck" | grep -E '^ckpt-' | head -n 1)
cfg=$(h5dump -a /config "$ck" | tr -s ' \n"' '\n')
for kv in model=mlp:20-16-4 batch=32 weight_decay=0 step_every= grad_reduce=shared ranks=2 beta2=0.999 \
    stall_timeout=auto; do
    grep -qx -- "$kv" <<<"$cfg" || fail "the checkpoint's config lacks $kv: $cfg"
done

# ---- outputs ---------------------------------------------------------------------
cp "$work/ds/index.h5" "$work/index.before"
refused 1 "ds/index.h5: exists and is a slurm-dml dataset file, not a model file: refusing" \
    "${m[@]}" --output "$work/ds/index.h5"
cmp -s "$work/ds/index.h5" "$work/index.before" || fail "the dataset's index was written over"
ck=$work/ck/$(ls "$work/ck" | grep -E '^ckpt-' | head -n 1)
refused 1 "exists and is a slurm-dml checkpoint file, not a model file" "${m[@]}" --output "$ck"
echo "my notes" >"$work/notes.txt"
refused 1 "notes.txt: exists and is not a metrics file: refusing" "${m[@]}" --metrics "$work/notes.txt"
[ "$(cat "$work/notes.txt")" = "my notes" ] || fail "notes.txt was written over"
refused 1 "nodir/m.h5: cannot write the model file there (directory $work/nodir): No such file or directory" \
    "${m[@]}" --output "$work/nodir/m.h5"
refused 1 "checkpoint-dir $work/ds: is a dataset" "${m[@]}" --checkpoint-dir "$work/ds"
# an earlier model file of its own is replaced, as documented
run 2 "${m[@]}" --epochs 1 --output "$work/good.h5" >/dev/null 2>&1 || fail "replacing a model file failed"
echo "ok: outputs over the index, a checkpoint, notes, a missing directory, a dataset: refused before training"

# ---- the configuration file ----------------------------------------------------------
long=$(printf '%0250d' 0 | tr 0 x)
printf 'model = mlp:20-16-4\n# old notes: %s lr = 0.9\n' "$long" >"$work/long.ini"
refused 2 "long.ini:2: a line of 2[0-9]* bytes; lines of up to 198 are read" --config "$work/long.ini" --train "$work/ds"
printf 'model = mlp:20-16-4\nlr = 0.1\nbatch = 32\nlr = 0.2\n' >"$work/dup.ini"
refused 2 "dup.ini:4: 'lr' is given twice (first on line 2)" --config "$work/dup.ini" --train "$work/ds"
# a key before any section is [train]'s: given again under [train], twice
printf 'lr = 0.1\n[train]\nmodel = mlp:20-16-4\nlr = 0.2\n' >"$work/dup2.ini"
refused 2 "dup2.ini:4: 'lr' is given twice (first on line 1)" --config "$work/dup2.ini" --train "$work/ds"
printf 'model = mlp:20-16-4\n  lr = 0.1\n' >"$work/indent.ini"
refused 2 "indent.ini:2: an indented line" --config "$work/indent.ini" --train "$work/ds"
refused 2 "config $work: is a directory" --config "$work" --train "$work/ds"
printf 'model = mlp:20-16-4\nlr\x01\x02\x1b[31m = 0.1\n' >"$work/bin.ini"
refused 2 "bin.ini:2: byte 0x01 at column 3: not a text file" --config "$work/bin.ini" --train "$work/ds"
! grep -q $'\x1b' "$work/out" || fail "the file's raw bytes were echoed: $(cat -v "$work/out")"
echo "ok: config: a long line, a key twice (also before [train] and in it), an indented line, a directory, binary bytes: refused with the true line"

# ---- ranks started differently -----------------------------------------------------
per_rank() { # option value-rank0 value-rank1
    timeout 120 "$MPIRUN" --oversubscribe -np 2 bash -c \
        'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then v=$2; else v=$1; fi; shift 2; exec "$0" "$@" "$v"' \
        "$train" "$2" "$3" "${m[@]}" --epochs 1 "$1"
}
# values as they were typed (0.02, not 0x1.47ae14p-6), names for choices
for case in "--model mlp:20-16-4 mlp:20-8-4 model" "--seed 1 2 seed" "--batch 32 16 batch" \
    "--lr 0.02 0.03 lr" "--optimizer sgd adamw optimizer"; do
    set -- $case
    rc=0; per_rank "$1" "$2" "$3" >"$work/out" 2>&1 || rc=$?
    [ $rc -ne 124 ] || fail "ranks given different $1 hung"
    [ $rc -eq 2 ] && grep -q "rank 1 was started with $4=$3, rank 0 with $4=$2: every rank must be given the same options" "$work/out" ||
        fail "ranks given different $1: exit $rc, $(cat "$work/out")"
done
# An option error on one rank only (either one): one message naming it, no hang.
for bad in 1 0; do
    rc=0
    timeout 120 "$MPIRUN" --oversubscribe -np 2 bash -c \
        '[ "$OMPI_COMM_WORLD_RANK" = "$1" ] && B=0 || B=32; shift; exec "$0" "$@" --batch $B' \
        "$train" "$bad" "${m[@]}" >"$work/out" 2>&1 || rc=$?
    [ $rc -ne 124 ] || fail "an option error on rank $bad alone: the others hung"
    want="--batch '0': expected a whole number from 1 to 1048576"
    [ "$bad" = 0 ] || want="rank 1: $want"
    [ $rc -eq 2 ] && grep -q -- "$want" "$work/out" || fail "an option error on rank $bad: exit $rc, $(cat "$work/out")"
done
echo "ok: ranks with different --model, --seed, --batch, --lr, --optimizer, and an option error on one rank: one message, no hang"

# ---- a metrics file that cannot be written ---------------------------------------------
mkdir -p "$work/full"
if ! mount -t tmpfs -o size=64k tmpfs "$work/full" 2>/dev/null; then
    [ -z "${CI:-}" ] || fail "cannot mount a small tmpfs (CI runs as root and must test a full disk)"
    echo "note: not root: the full-disk case is not run"
else
    head -c 65536 /dev/zero >"$work/full/filler" 2>/dev/null || true
    rc=0; run 2 "${m[@]}" --epochs 2 --log-every 5 --metrics "$work/full/m.jsonl" >"$work/out" 2>&1 || rc=$?
    [ $rc -eq 1 ] && grep -q "full/m.jsonl: cannot write the metrics: No space left on device" "$work/out" ||
        fail "metrics on a full disk: exit $rc, $(cat "$work/out")"
    echo "ok: metrics on a full disk: training stops naming the file and the cause"
fi

# ---- the stop and the resume name the same epoch --------------------------------------
d=$work/ep
touch "$d.hold"
DML_TEST_HOLD="90:$d.hold" mpirun_pids 2 "$d.pids" "$train" "${m[@]}" --epochs 3 \
    --checkpoint-dir "$d" >"$d.out" 2>&1 &
pid=$!
wait_held "$d.hold" $pid "the run to signal"
kill -USR1 "$(cat "$d.pids/pid.1")"
rm "$d.hold"
rc=0; wait $pid || rc=$?
[ $rc -eq 75 ] || fail "the signalled run exited $rc: $(cat "$d.out")"
stop=$(grep -o 'stopped at step [0-9]* (epoch [0-9]*)' "$d.out" | sed 's/.*(epoch \([0-9]*\))/\1/')
run 2 "${m[@]}" --epochs 3 --checkpoint-dir "$d" >"$d.resume" 2>&1 || fail "the resume failed: $(cat "$d.resume")"
again=$(grep -o 'resumed from .*: step [0-9]*, epoch [0-9]*' "$d.resume" | sed 's/.*epoch //')
[ -n "$stop" ] && [ "$stop" = "$again" ] || fail "stopped in epoch '$stop', resumed in epoch '$again'"
echo "ok: stopped and resumed in epoch $stop"
echo PASS
