#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Checkpoints against damage and misuse, what users rely on:
#  - everything a resume reads is checked first: an attribute changed in a
#    way HDF5's own checksums cannot see (the loader's cursor, the step) or
#    an array the resume does not read (model/stats) fails dml-ckpt verify,
#    and the resume passes over that checkpoint, naming it, to the one
#    before it;
#  - a damaged file makes the tools say so in their own words: no HDF5 error
#    stack or "infinite loop closing library" junk, no crash;
#  - dml-ckpt export never writes over its input or over a file of another
#    kind;
#  - --resume never starts a new run: the checkpoints of the run before it
#    are kept in DIR/earlier-run-*, never resumed from or pruned as the new
#    run's, and a plain restart after it resumes the new run.
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
poke=$abs_top_builddir/tests/ckpt/h5poke
make_work ckpt-hostile
run() { local n=$1; shift; timeout 300 "$MPIRUN" --oversubscribe -np "$n" "$train" "$@"; }
newest() { ls "$1" | grep -E '^ckpt-[0-9]+\.h5$' | sort | tail -n 1; }
# Every line of a tool's stderr is its own: no HDF5 stack, no junk.
own_words() { # tool file
    ! grep -v -e "^$1: " -e "^$1\[" "$2" | grep -q . || fail "$1 printed lines not its own: $(cat "$2")"
    ! grep -q "infinite loop\|HDF5-DIAG" "$2" || fail "HDF5's own messages leaked: $(cat "$2")"
}

"$data" synth --out "$work/ds" --samples 3000 --shape 32 --classes 4 --noise 0.8 --seed 2 \
    --dtype float32 --shards 2 >/dev/null
common=(--train "$work/ds" --model mlp:32-64-4 --batch 16 --lr 0.03 --seed 9 --log-every 0)
d=$work/ck
run 2 "${common[@]}" --epochs 2 --checkpoint-dir "$d" --checkpoint-every 40 --keep 0 >/dev/null 2>&1 ||
    fail "the setup run failed"
mapfile -t all < <(ls "$d" | grep -E '^ckpt-[0-9]+\.h5$' | sort -r)
[ "${#all[@]}" -ge 3 ] || fail "expected 3 checkpoints or more, got ${all[*]}"

# ---- an attribute changed: verify fails, the resume passes over it ------------
cp "$d/${all[0]}" "$work/orig.h5"
"$poke" "$d/${all[0]}" attr loader_cursor 7 || fail "cannot change loader_cursor"
if out=$("$ckpt" verify "$d/${all[0]}" 2>&1); then fail "verify passed a changed loader_cursor: $out"; fi
grep -q "${all[0]}: attributes (step, loader position, configuration...): checksum mismatch" <<<"$out" ||
    fail "the changed attribute is not named: $out"
run 2 "${common[@]}" --epochs 3 --checkpoint-dir "$d" >"$work/r1.out" 2>&1 || fail "resume failed: $(cat "$work/r1.out")"
grep -q "passing over checkpoint $d/${all[0]}: attributes .*checksum mismatch" "$work/r1.out" ||
    fail "the resume did not pass over the changed checkpoint: $(cat "$work/r1.out")"
grep -q "resumed from $d/${all[1]}" "$work/r1.out" || fail "did not resume from ${all[1]}: $(cat "$work/r1.out")"
echo "ok: a changed loader_cursor fails verify; the resume passes over it to ${all[1]}"

# ---- an array the resume does not read (model/stats) --------------------------
rm -rf "$d" && run 2 "${common[@]}" --epochs 2 --checkpoint-dir "$d" --checkpoint-every 40 --keep 0 >/dev/null 2>&1
"$poke" "$d/${all[0]}" flip model/stats/mean || fail "cannot change model/stats/mean"
if out=$("$ckpt" verify "$d/${all[0]}" 2>&1); then fail "verify passed a changed model/stats/mean: $out"; fi
grep -q "dataset 'model/stats/mean': checksum mismatch" <<<"$out" || fail "model/stats/mean not named: $out"
run 2 "${common[@]}" --epochs 3 --checkpoint-dir "$d" >"$work/r2.out" 2>&1 || fail "resume failed: $(cat "$work/r2.out")"
grep -q "passing over checkpoint $d/${all[0]}: dataset 'model/stats/mean': checksum mismatch" "$work/r2.out" ||
    fail "the resume did not pass over the damaged statistics: $(cat "$work/r2.out")"
grep -q "resumed from $d/${all[1]}" "$work/r2.out" || fail "did not resume from ${all[1]}"
echo "ok: damaged model/stats fail verify; the resume passes over them"

# ---- damaged files: the tools' own words, no crash ----------------------------
size=$(stat -c %s "$work/orig.h5")
for off in 20 100 600 1200 2000 $((size - 300)); do
    cp "$work/orig.h5" "$work/bad.h5"
    printf '\xde\xad\xbe\xef\xde\xad\xbe\xef' | dd of="$work/bad.h5" bs=1 seek="$off" conv=notrunc status=none
    for cmd in verify inspect; do
        rc=0
        "$ckpt" $cmd "$work/bad.h5" >/dev/null 2>"$work/err" || rc=$?
        [ $rc -lt 128 ] || fail "dml-ckpt $cmd crashed (signal $((rc - 128))) on damage at byte $off"
        own_words dml-ckpt "$work/err"
    done
done
echo "ok: damage at 6 places: dml-ckpt verify and inspect answer in their own words"

# ---- export: never over its input or a file of another kind -------------------
c=$d/${all[1]}
cp "$c" "$work/before.h5"
rc=0; "$ckpt" export "$c" "$c" 2>"$work/err" || rc=$?
[ $rc -eq 1 ] && grep -q "$c: is $c, an input of this run: refusing to write the model file over it" "$work/err" ||
    fail "export over its own checkpoint: rc $rc, $(cat "$work/err")"
cmp -s "$c" "$work/before.h5" || fail "export wrote over its checkpoint"
cp "$work/orig.h5" "$work/other.h5"
rc=0; "$ckpt" export "$c" "$work/other.h5" 2>"$work/err" || rc=$?
[ $rc -eq 1 ] && grep -q "other.h5: exists and is a slurm-dml checkpoint file, not a model file: refusing" "$work/err" ||
    fail "export over another checkpoint: rc $rc, $(cat "$work/err")"
cmp -s "$work/orig.h5" "$work/other.h5" || fail "export wrote over another checkpoint"
"$ckpt" export "$c" "$work/model.h5" >/dev/null || fail "export failed"
"$ckpt" export "$c" "$work/model.h5" >/dev/null || fail "export over an earlier model file of its own failed"
rc=0; "$ckpt" export "$work/model.h5" "$work/model.h5" 2>"$work/err" || rc=$?
[ $rc -eq 1 ] || fail "export of a file onto itself: rc $rc, $(cat "$work/err")"
echo "ok: export refuses its own input and a checkpoint as the output"

# ---- --resume never: a new run; the earlier run kept aside ----------------------
d=$work/rn
run 2 "${common[@]}" --epochs 2 --checkpoint-dir "$d" --checkpoint-every 40 --keep 0 >/dev/null 2>&1
old=$(newest "$d")
run 2 "${common[@]}" --seed 11 --epochs 1 --checkpoint-dir "$d" --checkpoint-every 30 --keep 2 \
    --resume never >"$work/n.out" 2>&1 || fail "--resume never failed: $(cat "$work/n.out")"
grep -q "a new run in $d; the checkpoints of the run before it are kept in $d/earlier-run-" "$work/n.out" ||
    fail "no word of the earlier run's checkpoints: $(cat "$work/n.out")"
aside=$(ls -d "$d"/earlier-run-* | head -n 1)
[ -f "$aside/$old" ] && [ -L "$aside/latest" ] || fail "$old and latest not kept in $aside: $(ls -A "$aside")"
kept=$(ls "$d" | grep -E '^ckpt-[0-9]+\.h5$' | tr '\n' ' ')
[ "$(echo "$kept" | wc -w)" -eq 2 ] || fail "--keep 2 of the new run left '$kept'"
new=$(newest "$d")
[ "$(readlink "$d/latest")" = "$new" ] || fail "latest is $(readlink "$d/latest"), not the new run's $new"
run 2 "${common[@]}" --seed 11 --epochs 2 --checkpoint-dir "$d" >"$work/n2.out" 2>&1 || fail "restart failed"
grep -q "resumed from $d/$new" "$work/n2.out" || fail "a plain restart did not resume the new run's $new: $(cat "$work/n2.out")"
echo "ok: --resume never keeps the earlier run in $(basename "$aside"); the restart resumes the new run's $new"
echo PASS
