#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# dml-infer under mpirun, without Slurm; what users rely on:
#  - parts computed one by one, on 1 or 2 ranks, merge into the same
#    predictions, bit for bit, as a single part (parts and ranks take whole
#    batches, so every sample is computed in the same batch; this holds on
#    any BLAS kernel: test-all runs it again under OpenBLAS's Haswell one);
#    a part computed again (on another number of ranks) has the first try's
#    bits; a complete part is not computed again; later parts take the run's
#    batch size, and another batch size, BLAS thread count or kind of device
#    is refused (--device cuda without a GPU too, before anything is made);
#  - the model may be a model file, a checkpoint or a checkpoint directory:
#    same model hash, same predictions;
#  - bad input: a model of another input size, a damaged or truncated model
#    file, a model file whose spec or statistics were edited (its checksum),
#    an input shard that fails validation, an output directory of another
#    model: a message naming the thing and the cause, exit 1, and no
#    complete part touched; a model file from before the checksum loads;
#  - status names missing, corrupt and stale parts and the --array= list,
#    and merge refuses until every part is complete; a merge that fails for
#    another cause (its report's directory missing) says only that.
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
make_work infer-test
mpi() { local n=$1; shift; timeout 300 "$MPIRUN" --oversubscribe -np "$n" "$@"; }
same() { # file-a file-b dataset: equal bytes
    h5dump -d "/$3" -b LE -o "$work/a.bin" "$1" >/dev/null && h5dump -d "/$3" -b LE -o "$work/b.bin" "$2" >/dev/null &&
        cmp -s "$work/a.bin" "$work/b.bin"
}
expect_fail() { # pattern command...: exits 1 with a message matching pattern
    local pat=$1 rc=0
    shift
    "$@" >"$work/err" 2>&1 || rc=$?
    [ $rc -eq 1 ] || fail "'$*' exited $rc, expected 1: $(cat "$work/err")"
    grep -q -E -- "$pat" "$work/err" || fail "'$*': message does not match '$pat': $(cat "$work/err")"
}

"$data" synth --out "$work/ds" --samples 5000 --shape 8x8 --classes 4 --noise 1 --seed 2 \
    --shards 3 >/dev/null
"$data" synth --out "$work/other" --samples 500 --shape 16 --classes 4 --seed 2 >/dev/null
mpi 2 "$train" --train "$work/ds" --test "$work/ds" --model mlp:64-32-4 --batch 32 --epochs 2 \
    --seed 1 --log-every 0 --checkpoint-dir "$work/ck" --checkpoint-every 50 --output "$work/model.h5" >"$work/train.out" 2>&1 ||
    fail "training failed: $(cat "$work/train.out")"
acc=$(grep -o 'test loss [0-9.]* acc [0-9.]*' "$work/train.out" | tail -n 1 | awk '{print $5}')

# ---- parts one by one == one part; a complete part is not redone -------------
run=(--model "$work/model.h5" --input "$work/ds" --batch 256)
"$infer" run "${run[@]}" --out "$work/o3" --task 0 --tasks 3 2>>"$work/o3.log" || fail "part 0 failed"
# the later parts without --batch: the run's 256, from its manifest
for t in 1 2; do
    "$infer" run --model "$work/model.h5" --input "$work/ds" --out "$work/o3" --task $t --tasks 3 \
        2>>"$work/o3.log" || fail "part $t failed: $(cat "$work/o3.log")"
done
grep -q "part 1 of 3: 1792 samples (1536+) in batches of 256" "$work/o3.log" ||
    fail "part 1 is not batches 6-12 of 256: $(cat "$work/o3.log")"
mpi 2 "$infer" run "${run[@]}" --out "$work/o3" --task 1 --tasks 3 2>"$work/again" || fail "rerun failed"
grep -q "part 1 of 3 (samples 1536+1792) is complete .*nothing to do" "$work/again" ||
    fail "a complete part was not recognised: $(cat "$work/again")"
# A part computed again, on 2 ranks this time: the first try's bits.
cp "$work/o3/part-00001.h5" "$work/first-try.h5"
rm "$work/o3/part-00001.h5"
mpi 2 "$infer" run "${run[@]}" --out "$work/o3" --task 1 --tasks 3 2>"$work/again" ||
    fail "recomputing part 1 failed: $(cat "$work/again")"
for d in id pred topk_class topk_prob; do
    same "$work/o3/part-00001.h5" "$work/first-try.h5" $d || fail "part 1 computed again on 2 ranks differs in $d"
done
expect_fail "was split into 3 parts with top-3, batch 256 and 1 BLAS thread.*now 3 parts, top-3, batch 512" \
    "$infer" run --model "$work/model.h5" --input "$work/ds" --batch 512 --out "$work/o3" --task 2 --tasks 3
expect_fail "batch 256 and 1 BLAS thread.*batch 256, 2 thread" \
    "$infer" run "${run[@]}" --blas-threads 2 --out "$work/o3" --task 2 --tasks 3
# The device: the manifest records its kind, which every part shares; a run
# from before the GPU path (no device line) is a CPU run.
grep -qx "device cpu" "$work/o3/manifest" || fail "the manifest does not record the device: $(cat "$work/o3/manifest")"
mkdir "$work/odev" && sed 's/^device cpu$/device cuda/' "$work/o3/manifest" >"$work/odev/manifest"
expect_fail "batch 256 and 1 BLAS thread\(s\) on cuda .*on cpu\)" \
    "$infer" run "${run[@]}" --out "$work/odev" --task 2 --tasks 3
mkdir "$work/oold" && grep -v '^device ' "$work/o3/manifest" >"$work/oold/manifest"
"$infer" run "${run[@]}" --out "$work/oold" --task 0 --tasks 3 2>"$work/err" ||
    fail "a manifest without a device line was not taken as a CPU run: $(cat "$work/err")"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    "$infer" run "${run[@]}" --device auto --out "$work/o3" --task 1 --tasks 3 2>"$work/err" ||
        fail "--device auto without a GPU: $(cat "$work/err")"
    grep -q "is complete .*nothing to do" "$work/err" || fail "--device auto without a GPU is not the CPU run: $(cat "$work/err")"
    expect_fail "device 'cuda': (no GPU is visible|this slurm-dml was built without the GPU path)" \
        mpi 2 "$infer" run "${run[@]}" --device cuda --out "$work/ocuda" --task 0 --tasks 1
    [ ! -e "$work/ocuda" ] || fail "--device cuda without a GPU created its output directory"
fi
"$infer" run "${run[@]}" --device gpu --out "$work/ogpu" --task 0 --tasks 1 >"$work/err" 2>&1 && fail "--device gpu accepted"
grep -q -- "--device 'gpu': expected cpu, cuda, cuda:N or auto" "$work/err" || fail "--device gpu: $(cat "$work/err")"
"$infer" run "${run[@]}" --out "$work/o1" --task 0 --tasks 1 2>/dev/null || fail "single part failed"
mpi 2 "$infer" run "${run[@]}" --out "$work/o1r2" --task 0 --tasks 1 2>/dev/null || fail "2-rank part failed"
for o in o3 o1 o1r2; do
    "$infer" merge --out "$work/$o" >"$work/$o.report" || fail "merge of $o failed"
done
for d in id pred label topk_class topk_prob; do
    same "$work/o3/predictions.h5" "$work/o1/predictions.h5" $d || fail "3 parts and 1 part differ in $d"
    same "$work/o1r2/predictions.h5" "$work/o1/predictions.h5" $d || fail "2 ranks and 1 rank differ in $d"
done
grep -q "^accuracy $acc " "$work/o3.report" || fail "report accuracy is not the trainer's $acc: $(head -2 "$work/o3.report")"
json "$work/o3/report.json" >/dev/null || fail "the JSON report does not parse"
[ "$(json "$work/o3/report.json" 'd["drift"]["drifted"]')" = False ] || fail "the training data itself drifted"
# the JSON report holds what the text one says, consistently
[ "$(json "$work/o3/report.json" '"%.4f" % d["accuracy"]')" = "$acc" ] || fail "JSON report accuracy is not the trainer's $acc"
[ "$(json "$work/o3/report.json" '(d["correct"] / d["samples"] == d["accuracy"] and
    sum(map(sum, d["confusion"])) == sum(d["class_counts"].values()) == d["samples"] and
    sum(d["confusion"][i][i] for i in range(len(d["confusion"]))) == d["correct"])')" = True ] ||
    fail "the JSON report's counts, confusion and accuracy disagree: $(cat "$work/o3/report.json")"
echo "ok: 3 parts == 1 part == 2 ranks; a part redone has its first bits; accuracy $acc as the trainer's; complete part skipped"

# ---- a checkpoint as the model ------------------------------------------------
"$infer" run --model "$work/ck" --input "$work/ds" --batch 256 --out "$work/oc" --task 0 --tasks 1 \
    2>/dev/null || fail "inference from a checkpoint directory failed"
h1=$(sed -n 's/^model_hash //p' "$work/o1/manifest")
h2=$(sed -n 's/^model_hash //p' "$work/oc/manifest")
[ "$h1" = "$h2" ] || fail "checkpoint and model file differ: $h1 vs $h2"
echo "ok: the newest checkpoint is the model file's model ($h1)"

# ---- bad input ------------------------------------------------------------------
stamp() { stat -c '%Y %s' "$work"/o3/part-*.h5 | md5sum; }
before=$(stamp)
expect_fail "model .* takes 64 inputs, input .*other has 16 features" \
    "$infer" run --model "$work/model.h5" --input "$work/other" --out "$work/bad1" --task 0 --tasks 1
cp "$work/model.h5" "$work/damaged.h5"
off=$(h5dump -p -H -d /weights "$work/damaged.h5" | sed -n 's/.*OFFSET \([0-9]*\).*/\1/p' | head -n 1)
[ -n "$off" ] || fail "no offset for /weights"
printf '\xff\xff\xff\x7f' | dd of="$work/damaged.h5" bs=1 seek=$((off + 40)) conv=notrunc status=none
expect_fail "damaged.h5: weights have CRC-32 .* damaged" \
    "$infer" run --model "$work/damaged.h5" --input "$work/ds" --out "$work/o3" --task 0 --tasks 3 --replace
head -c 3000 "$work/model.h5" >"$work/trunc.h5"
expect_fail "trunc.h5: not a readable HDF5 file" \
    "$infer" run --model "$work/trunc.h5" --input "$work/ds" --out "$work/o3" --task 0 --tasks 3
# The model's checksum covers its spec and statistics, not only the arrays:
# maxpool edited into avgpool (the same weights, other predictions) and a
# doubled normalisation are refused; a file without the checksum (written
# before it) loads with the checks it had.
"$train" --train "$work/ds" --model "conv2d(4,3),relu,maxpool(2),flatten,dense(4)" --epochs 1 --batch 64 \
    --seed 1 --log-every 0 --output "$work/cnn.h5" >"$work/err" 2>&1 || fail "training the cnn failed: $(cat "$work/err")"
for e in spec std old; do cp "$work/cnn.h5" "$work/cnn-$e.h5"; done
/usr/bin/python3 - "$work" <<'PY' || fail "h5py could not edit the model files"
import h5py, sys
w = sys.argv[1]
with h5py.File(w + "/cnn-spec.h5", "r+") as f:
    s = f.attrs["model"].decode()
    assert "maxpool(2)" in s, s
    f.attrs.modify("model", s.replace("maxpool(2)", "avgpool(2)").encode())
with h5py.File(w + "/cnn-std.h5", "r+") as f:
    f["stats"].attrs.modify("global_std", f["stats"].attrs["global_std"] * 2)
with h5py.File(w + "/cnn-old.h5", "r+") as f:
    del f.attrs["checksum"]
PY
expect_fail "model .*/cnn-spec.h5: checksum [0-9a-f]{16} over the spec \"conv2d\(4,3\),relu,avgpool\(2\),flatten,dense\(4\)\".*the file recorded [0-9a-f]{16}: the file was changed" \
    "$infer" run --model "$work/cnn-spec.h5" --input "$work/ds" --out "$work/ospec" --task 0 --tasks 1
expect_fail "model .*/cnn-std.h5: checksum .*: the file was changed" \
    "$infer" run --model "$work/cnn-std.h5" --input "$work/ds" --out "$work/ostd" --task 0 --tasks 1
[ ! -e "$work/ospec/part-00000.h5" ] && [ ! -e "$work/ostd/part-00000.h5" ] || fail "a part was written from an edited model"
"$infer" run --model "$work/cnn-old.h5" --input "$work/ds" --out "$work/oold2" --task 0 --tasks 1 2>"$work/err" ||
    fail "a model file without a checksum (an older one) does not load: $(cat "$work/err")"
expect_fail "holds the parts of another model" \
    "$infer" run --model "$work/ck/$(ls "$work/ck" | grep -E '^ckpt-.*h5$' | head -n 1)" \
    --input "$work/ds" --out "$work/o3" --task 0 --tasks 3
expect_fail "was split into 3 parts" "$infer" run "${run[@]}" --out "$work/o3" --task 0 --tasks 4
cp -r "$work/ds" "$work/ds-bad"
shard=$(ls "$work/ds-bad" | grep -v index | head -n 1)
off=$(h5dump -p -H -d /x "$work/ds-bad/$shard" | sed -n 's/.*OFFSET \([0-9]*\).*/\1/p' | head -n 1)
printf '\x01\x02\x03' | dd of="$work/ds-bad/$shard" bs=1 seek=$((off + 10)) conv=notrunc status=none
expect_fail "$shard.*checksum" \
    "$infer" run --model "$work/model.h5" --input "$work/ds-bad" --out "$work/bad2" --task 0 --tasks 2
[ ! -e "$work/bad2/part-00000.h5" ] || fail "a part was written from an input that fails validation"
[ "$(stamp)" = "$before" ] || fail "a complete part was touched by a bad run"
echo "ok: wrong input size, damaged and truncated model, foreign output directory, bad shard"

# ---- status and merge refusing --------------------------------------------------
rm "$work/o3/part-00001.h5"
printf 'garbage' | dd of="$work/o3/part-00002.h5" bs=1 seek=2000 conv=notrunc status=none
rc=0; "$infer" status --out "$work/o3" >"$work/st" || rc=$?
[ $rc -eq 3 ] || fail "status exited $rc with parts missing, expected 3"
grep -q "^part 0: complete" "$work/st" && grep -q "^part 1: missing" "$work/st" &&
    grep -q "^part 2: corrupt" "$work/st" && grep -q "^resubmit: --array=1,2$" "$work/st" ||
    fail "status output: $(cat "$work/st")"
[ "$("$infer" status --out "$work/o3" --array-list || true)" = "1,2" ] || fail "--array-list"
rm -f "$work/o3/predictions.h5"
rc=0; "$infer" merge --out "$work/o3" 2>"$work/m" || rc=$?
[ $rc -eq 3 ] && grep -q "part 1 is missing" "$work/m" && grep -q "part 2 is corrupt" "$work/m" ||
    fail "merge with parts missing: rc $rc, $(cat "$work/m")"
[ ! -e "$work/o3/predictions.h5" ] || fail "merge wrote predictions with parts missing"
# A replaced model makes every part stale; its tasks redo them.
cp "$work/ck/$(ls "$work/ck" | grep -E '^ckpt-.*h5$' | head -n 1)" "$work/older.h5"
"$infer" run --model "$work/older.h5" --input "$work/ds" --batch 256 --out "$work/o3" --task 0 \
    --tasks 3 --replace 2>"$work/r" || fail "--replace failed: $(cat "$work/r")"
grep -q "redone: .*made by model" "$work/r" || fail "the stale part was not named: $(cat "$work/r")"
rc=0; "$infer" status --out "$work/o3" >"$work/st" || rc=$?
grep -q "^part 0: complete" "$work/st" && grep -q "^resubmit: --array=1,2$" "$work/st" || fail "after --replace: $(cat "$work/st")"
echo "ok: status names missing, corrupt and stale parts; merge refuses until complete"

# ---- outputs never over a part; usage errors exit 2 ----------------------------
"$infer" run "${run[@]}" --out "$work/o2" --task 0 --tasks 2 2>/dev/null &&
    "$infer" run "${run[@]}" --out "$work/o2" --task 1 --tasks 2 2>/dev/null || fail "the 2-part run failed"
cp "$work/o2/part-00000.h5" "$work/part0.before"
rc=0; "$infer" merge --out "$work/o2" --predictions "$work/o2/part-00000.h5" 2>"$work/err" || rc=$?
[ $rc -eq 1 ] && grep -q "part-00000.h5: exists and is a slurm-dml inference part file, not a predictions file: refusing" "$work/err" ||
    fail "merge over a part: exit $rc, $(cat "$work/err")"
cmp -s "$work/o2/part-00000.h5" "$work/part0.before" || fail "merge wrote over a part"
echo "my notes" >"$work/o2/notes.txt"
rc=0; "$infer" merge --out "$work/o2" --report "$work/o2/notes" 2>"$work/err" || rc=$?
[ $rc -eq 1 ] && grep -q "notes.txt: exists and is not a text inference report: refusing" "$work/err" ||
    fail "merge with its report over notes.txt: exit $rc, $(cat "$work/err")"
[ "$(cat "$work/o2/notes.txt")" = "my notes" ] && [ ! -e "$work/o2/notes.json" ] || fail "merge wrote a report over notes"
# a report into a directory that is not there: that is the failure, not the parts
rc=0; "$infer" merge --out "$work/o2" --report "$work/nodir/rep" 2>"$work/err" || rc=$?
[ $rc -eq 1 ] && grep -q "nodir" "$work/err" && ! grep -q "parts to rerun\|dml-infer status" "$work/err" ||
    fail "merge with --report in a missing directory: exit $rc, $(cat "$work/err")"
"$infer" merge --out "$work/o2" >/dev/null || fail "the merge of o2 failed"
"$infer" merge --out "$work/o2" >/dev/null || fail "a second merge over its own outputs failed"
for args in "frobnicate" "run --batch x --out $work/o2" "run --tasks 0 --out $work/o9 --task 0" "status"; do
    rc=0; "$infer" $args >"$work/err" 2>&1 || rc=$?
    [ $rc -eq 2 ] || fail "dml-infer $args: exit $rc for a usage error, expected 2: $(cat "$work/err")"
done
"$infer" run --tasks 0 --out "$work/o9" --task 0 >"$work/err" 2>&1 || true
grep -q -- "--tasks '0': expected 1 to 4294967295" "$work/err" || fail "--tasks 0 not explained: $(cat "$work/err")"
echo "ok: merge refuses a part or a file of the user's as its output; usage errors exit 2"

# Inference loads no Slurm: job control is dml-train's own (trainer/slurm_job.c),
# not the checkpoint library's, which inference links.
libs=$("$abs_top_builddir/libtool" --mode=execute ldd "$infer") || fail "ldd dml-infer failed"
grep -q 'libdml_ckpt' <<<"$libs" || fail "ldd shows no libdml_ckpt: the check below would prove nothing: $libs"
! grep -q 'libslurm' <<<"$libs" || fail "dml-infer loads libslurm: $(grep libslurm <<<"$libs")"
echo "ok: dml-infer (with the checkpoint library) loads no libslurm"
echo PASS
